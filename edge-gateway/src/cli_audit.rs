//! The audit log of changes made on the command line. What `stratus`
//! changes is written to the same log as the API's changes, as
//! `cli:<the shell user>` (no address: the command ran on the machine or
//! with the deployment's credentials). Whoever can run it can also reach
//! the stores directly, so this records honest work, not a defence.

use crate::admin::{
    AliasCommand, ApiKeyCommand, AppPasswordCommand, DkimCommand, DomainCommand, IdentityCommand,
    QuarantineCommand, QueueCommand, UserCommand,
};
use crate::cli::Command;
use crate::lists::ListCommand;
use crate::sieve::{GlobalCommand, SieveCommand, VacationCommand};
use crate::spam::SpamCommand;

/// One entry: what was done, to what, and the domain it falls under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub action: &'static str,
    pub target: String,
}

impl Entry {
    fn new(action: &'static str, target: impl Into<String>) -> Option<Entry> {
        Some(Entry {
            action,
            target: target.into(),
        })
    }

    /// The domain of the target (an address's, or a domain itself; ids
    /// of queued or held messages and of keys name none).
    pub fn domain(&self) -> Option<stratus_core::Domain> {
        let first = self.target.split_whitespace().next()?;
        let domain = first.rsplit_once('@').map_or(first, |(_, d)| d);
        if !domain.contains('.') {
            return None;
        }
        stratus_core::Domain::parse(domain).ok()
    }
}

/// Who ran the command: the shell's user (`USER`, `LOGNAME`, or the
/// process's user id by its name in `/etc/passwd`, or its number).
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(process_user);
    format!("cli:{user}")
}

fn process_user() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The entry a command that worked writes, if it changes anything.
pub fn entry(command: &Command) -> Option<Entry> {
    match command {
        Command::Domain(c) => domain(c),
        Command::User(c) => user(c),
        Command::Alias(AliasCommand::Add { alias, targets }) => {
            Entry::new("alias.add", format!("{alias} {}", targets.join(" ")))
        }
        Command::Alias(AliasCommand::Del { alias }) => Entry::new("alias.delete", alias.as_str()),
        Command::Apikey(ApiKeyCommand::Create { domains, .. }) => {
            Entry::new("apikey.create", domains.join(" "))
        }
        Command::Apikey(ApiKeyCommand::Revoke { id }) => Entry::new("apikey.revoke", id.as_str()),
        Command::Queue(QueueCommand::Retry { id }) => Entry::new("queue.retry", id.as_str()),
        Command::Queue(QueueCommand::Delete { id }) => Entry::new("queue.delete", id.as_str()),
        Command::Queue(QueueCommand::Bounce { id }) => Entry::new("queue.bounce", id.as_str()),
        Command::Quarantine(QuarantineCommand::Release { id }) => {
            Entry::new("quarantine.release", id.as_str())
        }
        Command::Quarantine(QuarantineCommand::Delete { id }) => {
            Entry::new("quarantine.delete", id.as_str())
        }
        Command::Lists(c) => list(c),
        Command::Sieve(c) => sieve(c),
        Command::Vacation(VacationCommand::Set { address, .. }) => {
            Entry::new("user.vacation", address.as_str())
        }
        Command::Vacation(VacationCommand::Off { address }) => {
            Entry::new("user.vacation.off", address.as_str())
        }
        Command::Spam(c) => spam(c),
        Command::Sweep => Entry::new("sweep", ""),
        Command::Tlsrpt(crate::cli::TlsrptCommand::Send { day }) => {
            Entry::new("tlsrpt.send", day.clone().unwrap_or_default())
        }
        _ => None,
    }
}

fn domain(c: &DomainCommand) -> Option<Entry> {
    match c {
        DomainCommand::Add { domain } => Entry::new("domain.add", domain.as_str()),
        DomainCommand::Del { domain } => Entry::new("domain.delete", domain.as_str()),
        DomainCommand::CatchAll { domain, target } if target == "off" => {
            Entry::new("domain.catch_all.off", domain.as_str())
        }
        DomainCommand::CatchAll { domain, target } => {
            Entry::new("domain.catch_all", format!("{domain} {target}"))
        }
        DomainCommand::Srs { max_age, rotate } if max_age.is_some() || *rotate => {
            let mut what = Vec::new();
            if let Some(days) = max_age {
                what.push(format!("max_age_days={days}"));
            }
            if *rotate {
                what.push("rotate".to_string());
            }
            Entry::new("srs.change", what.join(" "))
        }
        DomainCommand::Dkim(DkimCommand::Rotate { domain }) => {
            Entry::new("domain.dkim.rotate", domain.as_str())
        }
        DomainCommand::Dkim(DkimCommand::Activate { domain, force }) => Entry::new(
            if *force {
                "domain.dkim.activate.forced"
            } else {
                "domain.dkim.activate"
            },
            domain.as_str(),
        ),
        DomainCommand::Dkim(DkimCommand::Drop {
            domain, selector, ..
        }) => Entry::new("domain.dkim.drop", format!("{domain} {selector}")),
        _ => None,
    }
}

fn user(c: &UserCommand) -> Option<Entry> {
    match c {
        UserCommand::Add { address, .. } => Entry::new("user.add", address.as_str()),
        UserCommand::Invite { address, .. } => Entry::new("user.invite", address.as_str()),
        UserCommand::Del { address } => Entry::new("user.delete", address.as_str()),
        UserCommand::Passwd { address, .. } => Entry::new("user.password", address.as_str()),
        UserCommand::Quota { address, .. } => Entry::new("user.quota", address.as_str()),
        UserCommand::Role { address, .. } => Entry::new("user.role", address.as_str()),
        UserCommand::Disable { address } => Entry::new("user.disable", address.as_str()),
        UserCommand::Enable { address } => Entry::new("user.enable", address.as_str()),
        UserCommand::Identity(IdentityCommand::Add { user, address }) => {
            Entry::new("user.identity.add", format!("{user} {address}"))
        }
        UserCommand::Identity(IdentityCommand::Del { user, address }) => {
            Entry::new("user.identity.delete", format!("{user} {address}"))
        }
        UserCommand::AppPassword(AppPasswordCommand::Add { address, name }) => {
            Entry::new("user.app_password.add", format!("{address} {name}"))
        }
        UserCommand::AppPassword(AppPasswordCommand::Del { address, name }) => {
            Entry::new("user.app_password.delete", format!("{address} {name}"))
        }
        UserCommand::Forward {
            address, off: true, ..
        } => Entry::new("user.forward.off", address.as_str()),
        UserCommand::Forward {
            address, targets, ..
        } if !targets.is_empty() => {
            Entry::new("user.forward", format!("{address} {}", targets.join(" ")))
        }
        _ => None,
    }
}

fn list(c: &ListCommand) -> Option<Entry> {
    match c {
        ListCommand::Add { list, .. } => Entry::new("list.add", list.as_str()),
        ListCommand::Del { list } => Entry::new("list.delete", list.as_str()),
        ListCommand::Subscribe { list, addresses } => {
            Entry::new("list.subscribe", format!("{list} {}", addresses.join(" ")))
        }
        ListCommand::Unsubscribe { list, addresses } => Entry::new(
            "list.unsubscribe",
            format!("{list} {}", addresses.join(" ")),
        ),
        ListCommand::Approve { list, id } => Entry::new("list.approve", format!("{list} {id}")),
        ListCommand::Discard { list, id } => Entry::new("list.discard", format!("{list} {id}")),
        _ => None,
    }
}

fn sieve(c: &SieveCommand) -> Option<Entry> {
    match c {
        SieveCommand::Put { address, name, .. } => {
            Entry::new("user.sieve.put", format!("{address} {name}"))
        }
        SieveCommand::Activate { address, name } => {
            Entry::new("user.sieve.activate", format!("{address} {name}"))
        }
        SieveCommand::Deactivate { address } => Entry::new("user.sieve.activate", address.as_str()),
        SieveCommand::Del { address, name } => {
            Entry::new("user.sieve.delete", format!("{address} {name}"))
        }
        SieveCommand::Rename { address, from, to } => {
            Entry::new("user.sieve.rename", format!("{address} {from} {to}"))
        }
        SieveCommand::Global(GlobalCommand::Put { name, .. }) => {
            Entry::new("sieve.global.put", name.as_str())
        }
        SieveCommand::Global(GlobalCommand::Del { name }) => {
            Entry::new("sieve.global.delete", name.as_str())
        }
        _ => None,
    }
}

fn spam(c: &SpamCommand) -> Option<Entry> {
    match c {
        SpamCommand::Threshold { target, .. } => Entry::new("spam.thresholds", target.as_str()),
        SpamCommand::Allow(args) => Entry::new(
            if args.remove {
                "spam.allow.remove"
            } else {
                "spam.allow.add"
            },
            format!("{} {}", args.target, args.entries.join(" ")),
        ),
        SpamCommand::Block(args) => Entry::new(
            if args.remove {
                "spam.block.remove"
            } else {
                "spam.block.add"
            },
            format!("{} {}", args.target, args.entries.join(" ")),
        ),
        SpamCommand::Train { out: None, .. } => Entry::new("spam.train", ""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn entry_of(args: &[&str]) -> Option<Entry> {
        let cli = crate::cli::Cli::try_parse_from([&["stratus"], args].concat()).unwrap();
        entry(&cli.command)
    }

    #[test]
    fn the_process_user_is_named() {
        let name = process_user();
        assert!(name != "unknown" && !name.is_empty(), "{name}");
    }

    #[test]
    fn changes_are_named_as_the_api_names_them_and_reads_are_not() {
        for (args, action, domain) in [
            (
                &["domain", "add", "a.example"][..],
                "domain.add",
                Some("a.example"),
            ),
            (
                &["user", "quota", "ann@a.example", "1G"],
                "user.quota",
                Some("a.example"),
            ),
            (
                &["domain", "catch-all", "a.example", "off"],
                "domain.catch_all.off",
                Some("a.example"),
            ),
            (&["domain", "srs", "--rotate"], "srs.change", None),
            (&["queue", "retry", "01ABCDEFGH"], "queue.retry", None),
            (&["apikey", "revoke", "0123abcd"], "apikey.revoke", None),
            (
                &["spam", "block", "a.example", "spam.example", "--remove"],
                "spam.block.remove",
                Some("a.example"),
            ),
            (&["sweep"], "sweep", None),
        ] {
            let e = entry_of(args).unwrap_or_else(|| panic!("{args:?} not audited"));
            assert_eq!(e.action, action, "{args:?}");
            assert_eq!(
                e.domain().map(|d| d.to_string()).as_deref(),
                domain,
                "{args:?}"
            );
        }
        for args in [
            &["domain", "list"][..],
            &["domain", "dns", "a.example"],
            &["user", "forward", "ann@a.example"],
            &["queue", "list"],
            &["audit"],
            &["domain", "srs"],
            &["tlsrpt", "show"],
        ] {
            assert_eq!(entry_of(args), None, "{args:?} only reads");
        }
    }
}
