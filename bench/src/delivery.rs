//! SMTP accept rate and end-to-end delivery: `sessions` SMTP sessions send
//! `messages` messages (recipients round-robin over the users) while one
//! IMAP session per user sits in IDLE on its INBOX. Each `* n EXISTS` is
//! timestamped; afterwards a FETCH maps sequence numbers to the
//! `X-Bench-Id` header, so every message gets "250 → visible" latency.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use crate::imap::{Imap, untagged_number};
use crate::smtp::{Smtp, message};
use crate::stats::percentile;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub smtp: SocketAddr,
    pub imap: SocketAddr,
    pub users: Vec<String>,
    pub password: String,
    pub messages: u64,
    pub sessions: usize,
    pub size: usize,
    /// Give up waiting for messages to become visible after this long
    /// without progress.
    pub stall: Duration,
    /// Only send (no IDLE watchers, no end-to-end figures): for counting
    /// requests on the AWS backend, where watchers would add their own.
    pub send_only: bool,
}

const FROM: &str = "sender@bench-sender.test";

pub async fn run(d: Delivery) -> Result<serde_json::Value> {
    let d = Arc::new(d);
    let run_id = format!("{}", std::process::id());
    let origin = Instant::now();

    // Watchers first: in IDLE on every recipient's INBOX before any mail.
    let mut expected = vec![0u64; d.users.len()];
    for id in 0..d.messages {
        expected[(id % d.users.len() as u64) as usize] += 1;
    }
    let mut watchers = Vec::new();
    for (i, user) in d.users.iter().enumerate().filter(|_| !d.send_only) {
        let mut c = Imap::open(d.imap, user, &d.password)
            .await
            .with_context(|| format!("watcher for {user}"))?;
        c.idle().await?;
        let want = expected[i];
        let stall = d.stall;
        watchers.push(tokio::spawn(
            async move { watch(c, want, stall, origin).await },
        ));
    }

    // SMTP: sessions take the next id from a shared counter.
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..d.sessions {
        let (d, next, run_id) = (d.clone(), next.clone(), run_id.clone());
        senders.push(tokio::spawn(async move {
            let mut done: Vec<(u64, Duration)> = Vec::new();
            let mut c = Smtp::connect(d.smtp).await?;
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= d.messages {
                    break;
                }
                let to = &d.users[(id % d.users.len() as u64) as usize];
                let m = message(id, &run_id, FROM, to, d.size);
                c.send_message(FROM, to, &m)
                    .await
                    .with_context(|| format!("message {id} to {to}"))?;
                done.push((id, origin.elapsed()));
            }
            c.quit().await?;
            anyhow::Ok(done)
        }));
    }
    let mut accepted_at = vec![None; d.messages as usize];
    for s in senders {
        for (id, t) in s.await?? {
            accepted_at[id as usize] = Some(t);
        }
    }
    let accept_secs = start.elapsed().as_secs_f64();
    let accepted = accepted_at.iter().filter(|t| t.is_some()).count();
    eprintln!(
        "  smtp: {accepted} accepted in {accept_secs:.2} s ({:.1} msg/s); waiting for delivery",
        accepted as f64 / accept_secs
    );

    if d.send_only {
        return Ok(json!({
            "messages": d.messages,
            "accepted": accepted,
            "smtp_accept_per_s": accepted as f64 / accept_secs,
        }));
    }

    // Visible times per sequence number, per user; then seq → id.
    let mut latencies = Vec::new();
    let mut last_visible = Duration::ZERO;
    let mut visible = 0u64;
    for (i, w) in watchers.into_iter().enumerate() {
        let seen = w.await??;
        if seen.is_empty() {
            continue;
        }
        let mut c = Imap::open(d.imap, &d.users[i], &d.password).await?;
        let ids = seq_to_id(&mut c).await?;
        c.logout().await?;
        for (seq, t) in seen.iter().enumerate() {
            if let Some(Some(accepted)) = ids
                .get(&(seq as u32 + 1))
                .and_then(|id| accepted_at.get(*id as usize))
            {
                latencies.push(t.saturating_sub(*accepted).as_secs_f64() * 1000.0);
                last_visible = last_visible.max(*t);
                visible += 1;
            }
        }
    }
    let start_at = start.duration_since(origin);
    let e2e_secs = last_visible.saturating_sub(start_at).as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "messages": d.messages,
        "sessions": d.sessions,
        "size": d.size,
        "accepted": accepted,
        "smtp_accept_per_s": accepted as f64 / accept_secs,
        "visible": visible,
        "e2e_per_s": visible as f64 / e2e_secs,
        "e2e_secs": e2e_secs,
        "latency_p50_ms": percentile(&latencies, 0.50),
        "latency_p99_ms": percentile(&latencies, 0.99),
        "latency_max_ms": percentile(&latencies, 1.0),
    }))
}

/// Reads IDLE updates until `want` messages exist (or nothing changes for
/// `stall`); returns, for each sequence number, when it was first seen.
async fn watch(mut c: Imap, want: u64, stall: Duration, origin: Instant) -> Result<Vec<Duration>> {
    let mut seen: Vec<Duration> = Vec::with_capacity(want as usize);
    while (seen.len() as u64) < want {
        let line = match tokio::time::timeout(stall, c.read_line()).await {
            Ok(line) => line?,
            Err(_) => {
                eprintln!("  watcher: stalled at {} of {want}", seen.len());
                break;
            }
        };
        if let Some(n) = untagged_number(&line, b"EXISTS") {
            let now = origin.elapsed();
            while seen.len() < n as usize {
                seen.push(now);
            }
        }
    }
    // The connection may be mid-line after a timeout: just drop it.
    Ok(seen)
}

/// `FETCH 1:* (BODY.PEEK[HEADER.FIELDS (X-Bench-Id)])` → seq → id.
async fn seq_to_id(c: &mut Imap) -> Result<HashMap<u32, u64>> {
    let lines = c
        .command("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (X-Bench-Id)])")
        .await?;
    let mut map = HashMap::new();
    for line in lines {
        let Some(seq) = untagged_number(&line, b"FETCH") else {
            continue;
        };
        let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if let Some(at) = text.find("x-bench-id:") {
            let digits: String = text[at + 11..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(id) = digits.parse() {
                map.insert(seq, id);
            }
        }
    }
    Ok(map)
}
