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
    let address = match command {
        SieveCommand::Put { address, .. }
        | SieveCommand::List { address }
        | SieveCommand::Activate { address, .. }
        | SieveCommand::Deactivate { address }
        | SieveCommand::Get { address, .. }
        | SieveCommand::Del { address, .. }
        | SieveCommand::Rename { address, .. } => address,
        SieveCommand::Check { .. } => unreachable!("handled above"),
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
        SieveCommand::Check { .. } => {}
    }
    Ok(())
}
