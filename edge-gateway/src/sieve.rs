//! `stratus sieve ...`: users' Sieve scripts from the command line, the
//! same operations ManageSieve offers. A script is stored only if it
//! parses; otherwise the parser's reason, with its line, is printed and
//! the command exits 2.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use stratus_runtime::config::Config;

use crate::admin::refused;
use crate::service::{self, Service};

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum SieveCommand {
    /// Store a script for a user (replacing one of the same name); it must
    /// parse. FILE `-` (or none) reads standard input
    Put {
        address: String,
        name: String,
        file: Option<PathBuf>,
        /// Make it the active script too
        #[arg(long)]
        activate: bool,
    },
    /// A user's scripts: name, size, and which one is active
    List { address: String },
    /// Make a script the one that runs on the user's incoming mail
    Activate { address: String, name: String },
    /// Run no script on the user's mail any more (the scripts stay)
    Deactivate { address: String },
    /// Print a script
    Get { address: String, name: String },
    /// Delete a script (not the active one)
    #[command(visible_alias = "delete")]
    Del { address: String, name: String },
    /// Rename a script
    Rename {
        address: String,
        from: String,
        to: String,
    },
    /// Check a script without storing it: prints `ok`, or the error and
    /// its line (exit 2). FILE `-` (or none) reads standard input
    Check { file: Option<PathBuf> },
    /// The administrators' scripts, which users' scripts may
    /// `include :global` (no user can change them)
    #[command(subcommand)]
    Global(GlobalCommand),
}

/// `stratus sieve global ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum GlobalCommand {
    /// Store a global script (it must parse). FILE `-` (or none) reads
    /// standard input
    Put { name: String, file: Option<PathBuf> },
    /// The global scripts
    List,
    /// Print a global script
    Get { name: String },
    /// Delete a global script
    #[command(visible_alias = "delete")]
    Del { name: String },
}

async fn global(
    command: &GlobalCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let text = match command {
        GlobalCommand::Put { file, .. } => {
            let text = read_script(file.as_ref())?;
            service::check_script(&text).map_err(refused)?;
            text
        }
        _ => String::new(),
    };
    let service = Service::open(config).await.map_err(refused)?;
    match command {
        GlobalCommand::Put { name, .. } => {
            service
                .sieve_global_put(name, &text)
                .await
                .map_err(refused)?;
            writeln!(out, "stored global script {name} ({} bytes)", text.len())?;
        }
        GlobalCommand::List => {
            for s in service.sieve_global_list().await.map_err(refused)? {
                writeln!(out, "{} {} bytes", s.name, s.size)?;
            }
        }
        GlobalCommand::Get { name } => {
            let text = service.sieve_global_get(name).await.map_err(refused)?;
            out.write_all(text.as_bytes())?;
        }
        GlobalCommand::Del { name } => {
            service.sieve_global_delete(name).await.map_err(refused)?;
            writeln!(out, "deleted global script {name}")?;
        }
    }
    Ok(())
}

fn read_script(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let mut text = String::new();
    match file {
        Some(path) if path.as_os_str() != "-" => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the script from standard input")?;
        }
    }
    Ok(text)
}

/// Runs a `sieve` command.
pub async fn run(
    command: &SieveCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if let SieveCommand::Check { file } = command {
        service::check_script(&read_script(file.as_ref())?).map_err(refused)?;
        writeln!(out, "ok")?;
        return Ok(());
    }
    if let SieveCommand::Global(command) = command {
        return global(command, config, out).await;
    }
    let address = match command {
        SieveCommand::Put { address, .. }
        | SieveCommand::List { address }
        | SieveCommand::Activate { address, .. }
        | SieveCommand::Deactivate { address }
        | SieveCommand::Get { address, .. }
        | SieveCommand::Del { address, .. }
        | SieveCommand::Rename { address, .. } => address,
        SieveCommand::Check { .. } | SieveCommand::Global(_) => unreachable!("handled above"),
    };
    let user = service::parse_address(address).map_err(refused)?;
    // Read (and check) a script before opening the stores.
    let text = match command {
        SieveCommand::Put { file, .. } => {
            let text = read_script(file.as_ref())?;
            service::check_script(&text).map_err(refused)?;
            Some(text)
        }
        _ => None,
    };
    let service = Service::open(config).await.map_err(refused)?;
    match command {
        SieveCommand::Put { name, activate, .. } => {
            let text = text.unwrap_or_default();
            service
                .sieve_put(&user, name, &text)
                .await
                .map_err(refused)?;
            if *activate {
                service
                    .sieve_activate(&user, Some(name))
                    .await
                    .map_err(refused)?;
            }
            let state = if *activate { ", active" } else { "" };
            writeln!(
                out,
                "stored {name} for {user} ({} bytes{state})",
                text.len()
            )?;
        }
        SieveCommand::List { .. } => {
            for s in service.sieve_list(&user).await.map_err(refused)? {
                let active = if s.active { " (active)" } else { "" };
                writeln!(out, "{} {} bytes{active}", s.name, s.size)?;
            }
        }
        SieveCommand::Activate { name, .. } => {
            service
                .sieve_activate(&user, Some(name))
                .await
                .map_err(refused)?;
            writeln!(out, "{name} is active for {user}")?;
        }
        SieveCommand::Deactivate { .. } => {
            service.sieve_activate(&user, None).await.map_err(refused)?;
            writeln!(out, "no script is active for {user}")?;
        }
        SieveCommand::Get { name, .. } => {
            let text = service.sieve_get(&user, name).await.map_err(refused)?;
            out.write_all(text.as_bytes())?;
        }
        SieveCommand::Del { name, .. } => {
            service.sieve_delete(&user, name).await.map_err(refused)?;
            writeln!(out, "deleted {name} of {user}")?;
        }
        SieveCommand::Rename { from, to, .. } => {
            service
                .sieve_rename(&user, from, to)
                .await
                .map_err(refused)?;
            writeln!(out, "renamed {from} to {to} for {user}")?;
        }
        SieveCommand::Check { .. } | SieveCommand::Global(_) => {}
    }
    Ok(())
}

/// `stratus vacation ...`: an away reply for users who never write Sieve.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum VacationCommand {
    /// Turn on an away reply (a Sieve script of its own, active; the
    /// script active before keeps filtering after it)
    Set {
        address: String,
        /// The reply's subject [default: "Auto: " and the original's]
        #[arg(long)]
        subject: Option<String>,
        /// The reply's text, from a file (`-`: standard input)
        #[arg(long, value_name = "FILE")]
        body_file: PathBuf,
        /// Reply from this address (the user's own or one of their
        /// identities) [default: the user's]
        #[arg(long)]
        from: Option<String>,
        /// The last day to reply (YYYY-MM-DD, UTC) [default: until off]
        #[arg(long, value_name = "DAY")]
        until: Option<String>,
        /// Days between two replies to one sender
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=60))]
        days: u32,
    },
    /// Show the away reply's script, and whether it is on
    Show { address: String },
    /// Turn the away reply off (the script active before is active again)
    Off { address: String },
}

/// Runs a `vacation` command.
pub async fn vacation(
    command: &VacationCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let address = match command {
        VacationCommand::Set { address, .. }
        | VacationCommand::Show { address }
        | VacationCommand::Off { address } => address,
    };
    let user = service::parse_address(address).map_err(refused)?;
    match command {
        VacationCommand::Set {
            subject,
            body_file,
            from,
            until,
            days,
            ..
        } => {
            let body = read_script(Some(body_file))?;
            let from = from
                .as_deref()
                .map(service::parse_address)
                .transpose()
                .map_err(refused)?;
            let settings = service::VacationSettings {
                subject: subject.clone(),
                body,
                from,
                until: until.clone(),
                days: *days,
            };
            let service = Service::open(config).await.map_err(refused)?;
            service
                .vacation_set(&user, &settings)
                .await
                .map_err(refused)?;
            let until = until
                .as_deref()
                .map_or(String::new(), |d| format!(" until {d}"));
            writeln!(out, "away reply on for {user}{until}")?;
        }
        VacationCommand::Show { .. } => {
            let service = Service::open(config).await.map_err(refused)?;
            match service.vacation_show(&user).await.map_err(refused)? {
                Some((text, active)) => {
                    let state = if active { "on" } else { "off (script kept)" };
                    writeln!(out, "away reply {state} for {user}:\n")?;
                    out.write_all(text.as_bytes())?;
                }
                None => writeln!(out, "no away reply for {user}")?,
            }
        }
        VacationCommand::Off { .. } => {
            let service = Service::open(config).await.map_err(refused)?;
            let previous = service.vacation_off(&user).await.map_err(refused)?;
            match previous {
                Some(p) => writeln!(out, "away reply off for {user}; {p} is active again")?,
                None => writeln!(out, "away reply off for {user}")?,
            }
        }
    }
    Ok(())
}
