//! Memory per idle IMAP connection: open `connections` sessions (LOGIN,
//! SELECT INBOX, then nothing), and divide the growth of the server's
//! process tree by their number.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::imap::Imap;
use crate::procs::memory;

#[derive(Debug, Clone)]
pub struct Idle {
    pub imap: SocketAddr,
    pub users: Vec<String>,
    pub password: String,
    pub connections: usize,
    /// Logins in flight at once while opening.
    pub parallel: usize,
    pub pid: u32,
    pub settle: Duration,
}

pub async fn run(o: Idle) -> Result<Value> {
    tokio::time::sleep(o.settle).await;
    let (procs0, rss0, pss0) = memory(o.pid);
    let gate = Arc::new(Semaphore::new(o.parallel.max(1)));
    let mut tasks = Vec::new();
    for k in 0..o.connections {
        let (imap, user, password, gate) = (
            o.imap,
            o.users[k % o.users.len()].clone(),
            o.password.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            Imap::open(imap, &user, &password)
                .await
                .with_context(|| format!("idle connection {k} as {user}"))
        }));
    }
    let mut open = Vec::with_capacity(o.connections);
    for t in tasks {
        open.push(t.await??);
    }
    tokio::time::sleep(o.settle).await;
    let (procs1, rss1, pss1) = memory(o.pid);
    let n = open.len() as f64;
    eprintln!(
        "  idle: {} connections; RSS {rss0} → {rss1} KiB, PSS {pss0} → {pss1} KiB, processes {procs0} → {procs1}",
        open.len()
    );
    drop(open);
    Ok(json!({
        "idle_connections": o.connections,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "pss_before_kib": pss0,
        "pss_after_kib": pss1,
        "processes_before": procs0,
        "processes_after": procs1,
        "idle_rss_kib_per_conn": (rss1 as f64 - rss0 as f64) / n,
        "idle_pss_kib_per_conn": (pss1 as f64 - pss0 as f64) / n,
    }))
}
