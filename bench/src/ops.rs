//! IMAP operations per second: `clients` concurrent clients each repeat
//! one operation for a fixed time. Client k uses user k mod users; the
//! operations that need a message pick a random UID of its INBOX.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use tokio::sync::Barrier;

use crate::imap::{Imap, search_numbers};
use crate::smtp::message;

#[derive(Debug, Clone)]
pub struct Ops {
    pub imap: SocketAddr,
    pub users: Vec<String>,
    pub password: String,
    pub clients: usize,
    pub duration: Duration,
    pub size: usize,
    /// Operation names to run; empty means all of them.
    pub only: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Connect, greeting, LOGIN, LOGOUT.
    Login,
    /// SELECT INBOX again in a logged-in session.
    Select,
    /// UID FETCH of one message's header section.
    FetchHeaders,
    /// UID FETCH of one whole message.
    FetchBody,
    /// UID STORE +FLAGS / -FLAGS (\Flagged), alternating.
    Store,
    /// APPEND of one message (LITERAL+) to INBOX.
    Append,
}

pub const ALL: [Op; 6] = [
    Op::Login,
    Op::Select,
    Op::FetchHeaders,
    Op::FetchBody,
    Op::Store,
    Op::Append,
];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Select => "select",
            Op::FetchHeaders => "fetch_headers",
            Op::FetchBody => "fetch_body",
            Op::Store => "store_flags",
            Op::Append => "append",
        }
    }
}

pub async fn run(o: Ops) -> Result<Value> {
    let mut out = Map::new();
    if let Some(bad) = o
        .only
        .iter()
        .find(|n| !ALL.iter().any(|op| op.name() == *n))
    {
        anyhow::bail!("unknown operation {bad:?}");
    }
    for op in ALL {
        if !o.only.is_empty() && !o.only.iter().any(|n| n == op.name()) {
            continue;
        }
        let rate = measure(&o, op)
            .await
            .with_context(|| format!("IMAP {}", op.name()))?;
        eprintln!("  imap {}: {rate:.1} ops/s", op.name());
        out.insert(format!("imap_{}_per_s", op.name()), json!(rate));
    }
    Ok(Value::Object(out))
}

async fn measure(o: &Ops, op: Op) -> Result<f64> {
    let barrier = Arc::new(Barrier::new(o.clients + 1));
    let mut tasks = Vec::new();
    for k in 0..o.clients {
        let (o, barrier) = (o.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move { client(o, op, k, barrier).await }));
    }
    // Everyone is connected and has its UIDs: go.
    barrier.wait().await;
    let start = Instant::now();
    let mut total = 0u64;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn client(o: Ops, op: Op, k: usize, barrier: Arc<Barrier>) -> Result<u64> {
    let user = &o.users[k % o.users.len()];
    let mut c = match op {
        Op::Login => None,
        _ => Some(Imap::open(o.imap, user, &o.password).await?),
    };
    let uids = match c.as_mut() {
        Some(c) if matches!(op, Op::FetchHeaders | Op::FetchBody | Op::Store) => {
            search_numbers(&c.command("UID SEARCH ALL").await?)
        }
        _ => Vec::new(),
    };
    if uids.is_empty() && matches!(op, Op::FetchHeaders | Op::FetchBody | Op::Store) {
        anyhow::bail!("{user} has an empty INBOX; run the delivery workload first");
    }
    let append = message(k as u64, "append", "sender@bench-sender.test", user, o.size);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15 ^ (k as u64 + 1);
    barrier.wait().await;
    let deadline = Instant::now() + o.duration;
    let mut n = 0u64;
    while Instant::now() < deadline {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let uid = uids.get((rng % uids.len().max(1) as u64) as usize).copied();
        match op {
            Op::Login => {
                let mut s = Imap::connect(o.imap).await?;
                s.login(user, &o.password).await?;
                s.logout().await?;
            }
            Op::Select => {
                c.as_mut().expect("session").command("SELECT INBOX").await?;
            }
            Op::FetchHeaders => {
                let uid = uid.expect("uids");
                c.as_mut()
                    .expect("session")
                    .command(&format!("UID FETCH {uid} (UID FLAGS BODY.PEEK[HEADER])"))
                    .await?;
            }
            Op::FetchBody => {
                let uid = uid.expect("uids");
                c.as_mut()
                    .expect("session")
                    .command(&format!("UID FETCH {uid} (UID BODY.PEEK[])"))
                    .await?;
            }
            Op::Store => {
                let uid = uid.expect("uids");
                let sign = if n.is_multiple_of(2) { '+' } else { '-' };
                c.as_mut()
                    .expect("session")
                    .command(&format!("UID STORE {uid} {sign}FLAGS (\\Flagged)"))
                    .await?;
            }
            Op::Append => {
                c.as_mut()
                    .expect("session")
                    .append("INBOX", &append)
                    .await?;
            }
        }
        n += 1;
    }
    if let Some(c) = c {
        c.logout().await?;
    }
    Ok(n)
}
