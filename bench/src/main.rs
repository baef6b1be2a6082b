//! `stratus-bench`: the load generator behind `bench/run.sh`, which runs
//! the same workload against Stratus and against Postfix + Dovecot.
//!
//! Each workload is a subcommand that prints one JSON object on stdout;
//! `report` joins the two servers' objects into the side-by-side table.
//! Protocol clients are raw SMTP and IMAP over loopback TCP (`smtp`,
//! `imap`), small enough that the generator is never the bottleneck.

mod delivery;
mod idle;
mod imap;
mod ops;
mod procs;
mod report;
mod smtp;
mod start;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stratus-bench",
    about = "Benchmark load generator (see bench/run.sh)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args, Clone)]
struct Users {
    /// Users are user1..userN@DOMAIN.
    #[arg(long, default_value = "bench.test")]
    domain: String,
    #[arg(long, default_value_t = 20)]
    user_count: usize,
    #[arg(long, default_value = "bench password 1")]
    password: String,
}

impl Users {
    fn list(&self) -> Vec<String> {
        (1..=self.user_count)
            .map(|i| format!("user{i}@{}", self.domain))
            .collect()
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve DNS on loopback (the tests' fixture) until killed; writes the
    /// address to --addr-file. --txt NAME=TEXT publishes a TXT record.
    Dns {
        #[arg(long)]
        addr_file: PathBuf,
        #[arg(long)]
        txt: Vec<String>,
    },
    /// Print the Argon2id hash of the password on stdin, exactly as
    /// `stratus user add` stores it (for Dovecot's passwd-file).
    Hash,
    /// SMTP accept rate and end-to-end delivery latency.
    Delivery {
        #[arg(long)]
        smtp: SocketAddr,
        #[arg(long)]
        imap: SocketAddr,
        #[command(flatten)]
        users: Users,
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        #[arg(long, default_value_t = 10 * 1024)]
        size: usize,
        /// Seconds without a new message before giving up.
        #[arg(long, default_value_t = 60)]
        stall: u64,
        /// Only send; no IDLE watchers and no end-to-end figures.
        #[arg(long)]
        send_only: bool,
    },
    /// IMAP operations per second, one operation after the other.
    Ops {
        #[arg(long)]
        imap: SocketAddr,
        #[command(flatten)]
        users: Users,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        /// Seconds per operation.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 10 * 1024)]
        size: usize,
        /// Run only these operations (login, select, fetch_headers,
        /// fetch_body, store_flags, append), e.g. under a profiler.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Memory per idle IMAP connection (the process tree of --pid).
    Idle {
        #[arg(long)]
        imap: SocketAddr,
        #[command(flatten)]
        users: Users,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 20)]
        parallel: usize,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
    /// Cold start: run the command, time until every listener accepts.
    Start {
        /// Stratus: read the listeners from this listeners.json.
        #[arg(long)]
        listeners_json: Option<PathBuf>,
        /// Or: these addresses must all accept.
        #[arg(long)]
        addr: Vec<SocketAddr>,
        /// The server's stdout and stderr go here.
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Join each server's JSON results into the side-by-side table.
    Report {
        #[arg(long)]
        stratus: PathBuf,
        #[arg(long)]
        baseline: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let value = match cli.cmd {
        Cmd::Dns { addr_file, txt } => return dns(&addr_file, &txt),
        Cmd::Hash => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            println!("{}", stratus_core::password::hash(password)?);
            return Ok(());
        }
        Cmd::Start {
            listeners_json,
            addr,
            log,
            timeout,
            command,
        } => start::run(start::Start {
            listeners_json,
            addrs: addr,
            log,
            command,
            timeout: Duration::from_secs(timeout),
        })?,
        Cmd::Report { stratus, baseline } => return report::run(&stratus, &baseline),
        cmd => runtime()?.block_on(async_cmd(cmd))?,
    };
    println!("{value}");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn async_cmd(cmd: Cmd) -> Result<serde_json::Value> {
    match cmd {
        Cmd::Delivery {
            smtp,
            imap,
            users,
            messages,
            sessions,
            size,
            stall,
            send_only,
        } => {
            delivery::run(delivery::Delivery {
                smtp,
                imap,
                users: users.list(),
                password: users.password,
                messages,
                sessions,
                size,
                stall: Duration::from_secs(stall),
                send_only,
            })
            .await
        }
        Cmd::Ops {
            imap,
            users,
            clients,
            seconds,
            size,
            only,
        } => {
            ops::run(ops::Ops {
                imap,
                users: users.list(),
                password: users.password,
                clients,
                duration: Duration::from_secs_f64(seconds),
                size,
                only,
            })
            .await
        }
        Cmd::Idle {
            imap,
            users,
            connections,
            parallel,
            pid,
            settle,
        } => {
            idle::run(idle::Idle {
                imap,
                users: users.list(),
                password: users.password,
                connections,
                parallel,
                pid,
                settle: Duration::from_secs_f64(settle),
            })
            .await
        }
        _ => unreachable!("synchronous commands are handled in main"),
    }
}

fn dns(addr_file: &PathBuf, txt: &[String]) -> Result<()> {
    let fixture = stratus_auth::fixture::DnsFixture::start();
    for t in txt {
        let (name, text) = t.split_once('=').context("--txt wants NAME=TEXT")?;
        fixture.add_txt(name, text);
    }
    let tmp = addr_file.with_extension("tmp");
    std::fs::write(&tmp, fixture.addr().to_string())?;
    std::fs::rename(&tmp, addr_file)?;
    loop {
        std::thread::park();
    }
}
