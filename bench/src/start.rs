//! Cold start: spawn the server and time until every listener accepts a
//! connection. For Stratus the listeners are read from `listeners.json`
//! (written once it accepts); for the baseline they are given.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Start {
    pub listeners_json: Option<PathBuf>,
    pub addrs: Vec<SocketAddr>,
    pub log: PathBuf,
    pub command: Vec<String>,
    pub timeout: Duration,
}

pub fn run(s: Start) -> Result<Value> {
    if let Some(p) = &s.listeners_json {
        let _ = std::fs::remove_file(p);
    }
    let log = File::options()
        .create(true)
        .append(true)
        .open(&s.log)
        .with_context(|| format!("open {}", s.log.display()))?;
    let (prog, args) = s.command.split_first().context("no command to start")?;
    let t0 = Instant::now();
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawn {prog}"))?;
    let mut pending: Option<Vec<SocketAddr>> = if s.listeners_json.is_some() {
        None
    } else {
        Some(s.addrs.clone())
    };
    let mut listeners = 0;
    loop {
        if t0.elapsed() > s.timeout {
            bail!("listeners not all accepting after {:?}", s.timeout);
        }
        if pending.is_none()
            && let Some(p) = &s.listeners_json
            && let Ok(text) = std::fs::read_to_string(p)
            && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text)
        {
            let addrs: Vec<SocketAddr> = map
                .values()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect();
            listeners = addrs.len();
            pending = Some(addrs);
        }
        if let Some(addrs) = pending.as_mut() {
            addrs.retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err());
            if addrs.is_empty() {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if listeners == 0 {
        listeners = s.addrs.len();
    }
    Ok(json!({ "cold_start_ms": ms, "pid": child.id(), "listeners": listeners }))
}
