//! The admin commands (`stratus domain ...`, `stratus user ...`, `stratus
//! alias ...`): the arguments as clap parses them, handed to the
//! [`Service`], and one short line printed per result. Everything they do
//! is the service layer's; this module only speaks to a terminal.
//!
//! Arguments are validated before any store is opened, so a malformed one
//! is a usage error (exit code 2) that touches nothing. Passwords come from a caller-supplied
//! source and go straight to the service, which hashes them; neither the
//! password nor the hash is ever printed or logged.

use std::io::Write;

use stratus_runtime::config::Config;
use stratus_runtime::size::HumanSize;

use crate::cli::UsageError;
use crate::password_input::PasswordInputError;
use stratus_core::{Address, Domain};

use crate::service::{self, Service, ServiceError};

/// Where a new password comes from: called with the account's address and
/// whether `--password-stdin` was given.
pub type PasswordSource<'a> = &'a mut dyn FnMut(&str, bool) -> Result<String, PasswordInputError>;

/// `stratus domain ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum DomainCommand {
    /// Host a new mail domain
    Add { domain: String },
    /// List hosted domains
    List,
    /// Stop hosting a domain (it must have no users left)
    #[command(visible_alias = "delete")]
    Del { domain: String },
    /// Print the DNS records to publish for a domain (MX, SPF, DKIM,
    /// DMARC, TLS-RPT, MTA-STS) and its MTA-STS policy
    Dns {
        domain: String,
        /// Look each record up now and say whether it is published
        #[arg(long)]
        check: bool,
    },
    /// Deliver mail for addresses nobody has at DOMAIN to TARGET (a user
    /// or alias here), after users, aliases and plus-addressing; `off`
    /// refuses such mail at RCPT again
    CatchAll { domain: String, target: String },
    /// The domain's DKIM keys, and their rotation: `rotate` makes the
    /// next keys, `activate` signs with them once published, `drop`
    /// deletes a retired key (or gives up a rotation)
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// Show or change the SRS return addresses forwarded mail leaves
    /// with (shared by every domain): how many days bounces to them are
    /// taken, and the secret that signs them
    Srs {
        /// Take bounces to an SRS address for this many days (default 21)
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_age: Option<u32>,
        /// Sign with a new secret from now on; the previous one still
        /// verifies, so bounces of mail forwarded before still come back
        #[arg(long)]
        rotate: bool,
    },
}

/// `stratus domain dkim ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum DkimCommand {
    /// The keys (active, next, retired) with the TXT record of each
    List { domain: String },
    /// Make the next keys under new selectors and print their records to
    /// publish; the active keys go on signing
    Rotate { domain: String },
    /// Sign with the next keys from now on (once their records are found
    /// in the DNS) and retire the active ones, whose records stay
    /// published until dropped
    Activate {
        domain: String,
        /// Even if the records are not found in the DNS
        #[arg(long)]
        force: bool,
    },
    /// Delete a next key, or a retired key retired a week ago or more
    #[command(visible_alias = "del")]
    Drop {
        domain: String,
        selector: String,
        /// A retired key retired less than a week ago too
        #[arg(long)]
        force: bool,
    },
}

/// `stratus user ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum UserCommand {
    /// Create an account with the default mailboxes (INBOX, Sent, Drafts, Junk, Trash, Archive)
    Add {
        address: String,
        /// Read the password as one line from stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
        /// Storage quota: bytes or K/M/G/T (binary, e.g. 500M, 1G, 10GiB); unlimited when absent
        #[arg(long, value_name = "SIZE", value_parser = stratus_runtime::size::parse_size)]
        quota: Option<u64>,
    },
    /// Invite someone: make the account without a password (or, for an
    /// existing one, let its owner set a new one) and print a link with
    /// which they choose it; the link works once, for 7 days
    Invite {
        address: String,
        /// Storage quota of a new account (as for `add`)
        #[arg(long, value_name = "SIZE", value_parser = stratus_runtime::size::parse_size)]
        quota: Option<u64>,
    },
    /// List accounts, of one domain or of all
    List { domain: Option<String> },
    /// Delete an account and its mailboxes
    #[command(visible_alias = "delete")]
    Del { address: String },
    /// Set a new password
    Passwd {
        address: String,
        /// Read the password as one line from stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// The account's mailboxes: messages, unseen, size (never the mail)
    Mailboxes { address: String },
    /// Set the storage quota: bytes or K/M/G/T (binary), or `none` for unlimited
    Quota {
        address: String,
        #[arg(value_name = "SIZE|none", value_parser = parse_quota)]
        quota: Quota,
    },
    /// Addresses the user may send as besides their own
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// What the user may administer in /admin: `admin`, `domain-admin
    /// DOMAIN...`, or `none`
    Role {
        address: String,
        #[arg(value_enum)]
        role: UserRoleArg,
        /// A domain admin's domains
        domains: Vec<String>,
    },
    /// Disable the account: its sessions end and it signs in nowhere (its
    /// mail still arrives)
    Disable { address: String },
    /// Enable a disabled account again
    Enable { address: String },
    /// Passwords for devices and programs (IMAP, POP3, SMTP, ManageSieve,
    /// JMAP, DAV; never the web sign-in)
    #[command(subcommand, name = "app-password")]
    AppPassword(AppPasswordCommand),
    /// Forward the user's mail to other addresses (with an SRS envelope
    /// sender, so the forward passes SPF); without targets, show it
    Forward {
        address: String,
        targets: Vec<String>,
        /// Keep a copy in the user's own mailbox too
        #[arg(long)]
        keep: bool,
        /// Stop forwarding
        #[arg(long, conflicts_with_all = ["targets", "keep"])]
        off: bool,
    },
}

/// A quota as given: a size, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota(pub Option<u64>);

fn parse_quota(input: &str) -> Result<Quota, stratus_runtime::size::SizeError> {
    if input.eq_ignore_ascii_case("none") || input.eq_ignore_ascii_case("unlimited") {
        return Ok(Quota(None));
    }
    stratus_runtime::size::parse_size(input).map(|q| Quota(Some(q)))
}

/// `stratus user role` roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UserRoleArg {
    Admin,
    DomainAdmin,
    None,
}

/// `stratus user app-password ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum AppPasswordCommand {
    /// Make an app password named NAME; the password alone is printed on
    /// standard output, this once
    Add { address: String, name: String },
    /// List the user's app passwords (names, ids, when made)
    List { address: String },
    /// Delete an app password; sessions signed in with it end
    #[command(visible_alias = "delete")]
    Del { address: String, name: String },
}

/// `stratus user identity ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum IdentityCommand {
    /// Let USER send as ADDRESS (in MAIL FROM, From: and Sender:)
    Add { user: String, address: String },
    /// Take an identity back
    #[command(visible_alias = "delete")]
    Del { user: String, address: String },
    /// List the addresses USER may send as besides their own
    List { user: String },
}

/// `stratus alias ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum AliasCommand {
    /// Send mail for ALIAS to every TARGET (users, other aliases, or remote addresses)
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// List aliases, of one domain or of all
    List { domain: Option<String> },
    /// Delete an alias
    #[command(visible_alias = "delete")]
    Del { alias: String },
}

async fn dkim(command: &DkimCommand, config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    let show = |out: &mut dyn Write, keys: &[service::DkimKeyInfo]| -> anyhow::Result<()> {
        for k in keys {
            let retired = k
                .retired
                .map(|t| format!(" since {}", day(t)))
                .unwrap_or_default();
            writeln!(
                out,
                "{}  {}  {}{retired}  made {}",
                k.selector,
                k.algorithm,
                k.state,
                day(k.created)
            )?;
            writeln!(out, "  {}", k.record.zone_line())?;
        }
        Ok(())
    };
    let service = Service::open(config).await.map_err(refused)?;
    match command {
        DkimCommand::List { domain } => {
            let domain = domain_arg(domain)?;
            show(out, &service.dkim_keys(&domain).await.map_err(refused)?)?;
        }
        DkimCommand::Rotate { domain } => {
            let domain = domain_arg(domain)?;
            let next = service.rotate_dkim(&domain).await.map_err(refused)?;
            writeln!(
                out,
                "made the next keys of {domain}; publish these records:"
            )?;
            show(out, &next)?;
            writeln!(
                out,
                "then: stratus domain dkim activate {domain} (the active keys sign until then)"
            )?;
        }
        DkimCommand::Activate { domain, force } => {
            let domain = domain_arg(domain)?;
            let keys = service
                .activate_dkim(&domain, *force)
                .await
                .map_err(refused)?;
            writeln!(
                out,
                "{domain} signs with its new keys; keep the retired ones published for a week:"
            )?;
            show(out, &keys)?;
        }
        DkimCommand::Drop {
            domain,
            selector,
            force,
        } => {
            let domain = domain_arg(domain)?;
            let gone = service
                .drop_dkim(&domain, selector, *force)
                .await
                .map_err(refused)?;
            writeln!(
                out,
                "dropped {} ({}); remove its record: {}",
                gone.selector, gone.state, gone.record.name
            )?;
        }
    }
    Ok(())
}

/// `stratus audit`: the newest `limit` entries of the audit log.
pub async fn audit_log(limit: u32, config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    let service = Service::open(config).await.map_err(refused)?;
    let everything = service::Principal {
        name: crate::cli_audit::who(),
        role: service::Role::Admin,
        domains: Vec::new(),
    };
    let entries = service
        .audit_log(&everything, limit as usize)
        .await
        .map_err(refused)?;
    for e in entries {
        let (y, mo, d) = stratus_core::archive::civil_date(e.at);
        let secs = e.at.rem_euclid(86_400);
        writeln!(
            out,
            "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}  {}  {}  {}  {}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            e.who,
            e.from.as_deref().unwrap_or("-"),
            e.action,
            e.target
        )?;
    }
    Ok(())
}

/// A Unix time's day, `YYYY-MM-DD` (UTC).
fn day(unix: i64) -> String {
    let (y, m, d) = stratus_core::archive::civil_date(unix);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A service refusal as the command line reports it: a malformed argument
/// is a usage error (exit code 2), anything else a failure (exit code 1).
pub(crate) fn refused(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Invalid(text) => UsageError(text).into(),
        other => other.into(),
    }
}

fn domain_arg(input: &str) -> anyhow::Result<Domain> {
    service::parse_domain(input).map_err(refused)
}

pub(crate) fn address_arg(input: &str) -> anyhow::Result<Address> {
    service::parse_address(input).map_err(refused)
}

/// Runs an `alias` command.
pub async fn alias(
    command: &AliasCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        AliasCommand::Add { alias, targets } => {
            let alias = address_arg(alias)?;
            let targets = targets
                .iter()
                .map(|t| address_arg(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let service = Service::open(config).await.map_err(refused)?;
            let added = service.add_alias(&alias, targets).await.map_err(refused)?;
            writeln!(
                out,
                "added alias {} -> {}",
                added.alias,
                added.targets.join(", ")
            )?;
        }
        AliasCommand::List { domain } => {
            let domain = domain.as_deref().map(domain_arg).transpose()?;
            let service = Service::open(config).await.map_err(refused)?;
            for alias in service
                .list_aliases(domain.as_ref())
                .await
                .map_err(refused)?
            {
                writeln!(out, "{} -> {}", alias.alias, alias.targets.join(", "))?;
            }
        }
        AliasCommand::Del { alias } => {
            let alias = address_arg(alias)?;
            let service = Service::open(config).await.map_err(refused)?;
            let alias = service.del_alias(&alias).await.map_err(refused)?;
            writeln!(out, "deleted alias {alias}")?;
        }
    }
    Ok(())
}

/// Runs a `domain` command.
pub async fn domain(
    command: &DomainCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        DomainCommand::Add { domain } => {
            let domain = domain_arg(domain)?;
            let service = Service::open(config).await.map_err(refused)?;
            let added = service.add_domain(&domain).await.map_err(refused)?;
            let mut purposes: Vec<&str> = added.records.iter().map(|r| r.purpose).collect();
            purposes.dedup();
            writeln!(out, "added domain {}", added.domain.name)?;
            writeln!(
                out,
                "publish its DNS records ({}, and PTR for the sending address): stratus domain dns {}",
                purposes.join(", "),
                added.domain.name
            )?;
        }
        DomainCommand::Dns {
            domain,
            check: true,
        } => {
            let domain = domain_arg(domain)?;
            let service = Service::open(config).await.map_err(refused)?;
            let checks = service.check_dns(&domain).await.map_err(refused)?;
            let mut missing = 0;
            for c in &checks {
                let state = match (c.published, &c.error) {
                    (Some(true), _) => "ok     ",
                    (Some(false), _) => {
                        missing += 1;
                        "MISSING"
                    }
                    (None, _) => {
                        missing += 1;
                        "UNKNOWN"
                    }
                };
                writeln!(out, "{state} {}", c.record.zone_line())?;
                match (&c.error, c.published) {
                    (Some(e), _) => writeln!(out, "        ; the lookup failed: {e}")?,
                    (None, Some(false)) if c.found.is_empty() => {
                        writeln!(out, "        ; nothing is published there")?;
                    }
                    (None, Some(false)) => {
                        for f in &c.found {
                            writeln!(out, "        ; found instead: {f}")?;
                        }
                    }
                    _ => {}
                }
            }
            if missing > 0 {
                anyhow::bail!(
                    "{missing} of {} records are not published as they should be",
                    checks.len()
                );
            }
        }
        DomainCommand::Dns {
            domain,
            check: false,
        } => {
            let domain = domain_arg(domain)?;
            let service = Service::open(config).await.map_err(refused)?;
            let records = service.dns_records(&domain).await.map_err(refused)?;
            writeln!(out, "; DNS records for {domain} (zone file syntax)")?;
            for record in &records {
                writeln!(out, "{}", record.zone_line())?;
            }
            let host = service.hostname();
            writeln!(
                out,
                "; and a PTR record for the address {host} sends from, naming {host}"
            )?;
            writeln!(
                out,
                "; MTA-STS: serve this policy as text/plain at https://mta-sts.{domain}/.well-known/mta-sts.txt\n\
                 ; (with a certificate valid for mta-sts.{domain}), and switch it to `mode: enforce` once\n\
                 ; {host} has a certificate clients trust:"
            )?;
            for line in service.mta_sts_policy().lines() {
                writeln!(out, ";   {line}")?;
            }
        }
        DomainCommand::Dkim(command) => dkim(command, config, out).await?,
        DomainCommand::CatchAll { domain, target } => {
            let domain = domain_arg(domain)?;
            let target = match target.as_str() {
                "off" => None,
                t => Some(address_arg(t)?),
            };
            let service = Service::open(config).await.map_err(refused)?;
            service
                .set_catch_all(&domain, target.as_ref())
                .await
                .map_err(refused)?;
            match target {
                Some(t) => writeln!(out, "catch-all of {domain}: {t}")?,
                None => writeln!(out, "no catch-all for {domain}")?,
            }
        }
        DomainCommand::Srs { max_age, rotate } => {
            let service = Service::open(config).await.map_err(refused)?;
            let (days, secrets) = service.srs(*max_age, *rotate).await.map_err(refused)?;
            writeln!(
                out,
                "SRS: bounces taken for {days} days; {secrets} secret{} (the first signs)",
                if secrets == 1 { "" } else { "s" }
            )?;
        }
        DomainCommand::List => {
            let service = Service::open(config).await.map_err(refused)?;
            for domain in service.list_domains().await.map_err(refused)? {
                match domain.unicode {
                    Some(unicode) => writeln!(out, "{} ({unicode})", domain.name)?,
                    None => writeln!(out, "{}", domain.name)?,
                }
            }
        }
        DomainCommand::Del { domain } => {
            let domain = domain_arg(domain)?;
            let service = Service::open(config).await.map_err(refused)?;
            let deleted = service.del_domain(&domain).await.map_err(refused)?;
            writeln!(out, "deleted domain {}", deleted.name)?;
        }
    }
    Ok(())
}

/// Runs a `user` command; `password` supplies new passwords.
pub async fn user(
    command: &UserCommand,
    config: &Config,
    out: &mut dyn Write,
    password: PasswordSource<'_>,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            address,
            password_stdin,
            quota,
        } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            // Refuse before asking for a password that would be thrown away.
            service.check_new_user(&address).await.map_err(refused)?;
            let secret = password(&address.to_string(), *password_stdin)?;
            let user = service
                .add_user(&address, secret, *quota)
                .await
                .map_err(refused)?;
            writeln!(
                out,
                "added user {} (quota {})",
                user.address,
                quota_text(user.quota)
            )?;
        }
        UserCommand::List { domain } => {
            let domain = domain.as_deref().map(domain_arg).transpose()?;
            let service = Service::open(config).await.map_err(refused)?;
            let users = service.list_users(domain.as_ref()).await.map_err(refused)?;
            let width = users
                .iter()
                .map(|u| u.address.chars().count())
                .max()
                .unwrap_or(0);
            for user in users {
                let mailboxes = match user.mailboxes {
                    1 => "1 mailbox".to_string(),
                    n => format!("{n} mailboxes"),
                };
                writeln!(
                    out,
                    "{:width$}  quota {}  used {}  {mailboxes}",
                    user.address,
                    quota_text(user.quota),
                    HumanSize(user.used)
                )?;
            }
        }
        UserCommand::Del { address } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let address = service.del_user(&address).await.map_err(refused)?;
            writeln!(out, "deleted user {address}")?;
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            service.check_user(&address).await.map_err(refused)?;
            let secret = password(&address.to_string(), *password_stdin)?;
            service
                .set_password(&address, secret)
                .await
                .map_err(refused)?;
            writeln!(out, "changed password of {address}")?;
        }
        UserCommand::Invite { address, quota } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let invitation = match service.check_user(&address).await {
                Ok(()) => {
                    if quota.is_some() {
                        return Err(UsageError(format!(
                            "{address} exists: set its quota with `stratus user quota`"
                        ))
                        .into());
                    }
                    service.invite(&address).await.map_err(refused)?
                }
                Err(ServiceError::NotFound(_)) => {
                    service
                        .invite_user(&address, *quota)
                        .await
                        .map_err(refused)?
                        .1
                }
                Err(e) => return Err(refused(e)),
            };
            eprintln!(
                "invited {address}: send them this link; it works once, for 7 days (an earlier one no longer does)"
            );
            writeln!(out, "{}", invitation.url)?;
        }
        UserCommand::Mailboxes { address } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let mailboxes = service.mailboxes(&address).await.map_err(refused)?;
            writeln!(
                out,
                "{:<30} {:>8} {:>8} {:>10}",
                "MAILBOX", "MESSAGES", "UNSEEN", "SIZE"
            )?;
            for m in &mailboxes {
                let name = match &m.special_use {
                    Some(u) if !m.name.eq_ignore_ascii_case(&u[1..]) => format!("{} ({u})", m.name),
                    _ => m.name.clone(),
                };
                writeln!(
                    out,
                    "{name:<30} {:>8} {:>8} {:>10}",
                    m.messages,
                    m.unseen,
                    HumanSize(m.size).to_string()
                )?;
            }
            let total: u64 = mailboxes.iter().map(|m| m.size).sum();
            writeln!(
                out,
                "{} mailboxes, {} in all",
                mailboxes.len(),
                HumanSize(total)
            )?;
        }
        UserCommand::Quota { address, quota } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let user = service
                .set_quota(&address, quota.0)
                .await
                .map_err(refused)?;
            writeln!(
                out,
                "quota of {} is {} (used {})",
                user.address,
                quota_text(user.quota),
                HumanSize(user.used)
            )?;
        }
        UserCommand::Identity(command) => identity(command, config, out).await?,
        UserCommand::Role {
            address,
            role,
            domains,
        } => {
            let address = address_arg(address)?;
            let domains = domains
                .iter()
                .map(|d| domain_arg(d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let grant = match role {
                UserRoleArg::None if !domains.is_empty() => {
                    return Err(UsageError("`none` takes no domain".into()).into());
                }
                UserRoleArg::None => None,
                UserRoleArg::Admin => Some(stratus_core::credentials::AdminGrant {
                    role: stratus_core::credentials::AdminRole::Admin,
                    domains,
                }),
                UserRoleArg::DomainAdmin => Some(stratus_core::credentials::AdminGrant {
                    role: stratus_core::credentials::AdminRole::DomainAdmin,
                    domains,
                }),
            };
            let service = Service::open(config).await.map_err(refused)?;
            let user = service
                .set_admin(&address, grant, None)
                .await
                .map_err(refused)?;
            match &user.admin {
                None => writeln!(out, "{} administers nothing", user.address)?,
                Some(g) if g.domains.is_empty() => writeln!(out, "{} is an admin", user.address)?,
                Some(g) => writeln!(
                    out,
                    "{} is a domain admin of {}",
                    user.address,
                    g.domains
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )?,
            }
        }
        UserCommand::Disable { address } | UserCommand::Enable { address } => {
            let disable = matches!(command, UserCommand::Disable { .. });
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let user = service
                .set_disabled(&address, disable)
                .await
                .map_err(refused)?;
            let state = if user.disabled { "disabled" } else { "enabled" };
            writeln!(out, "{} is {state}", user.address)?;
        }
        UserCommand::AppPassword(command) => app_password(command, config, out).await?,
        UserCommand::Forward {
            address,
            targets,
            keep,
            off,
        } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            if *off || !targets.is_empty() {
                let forward = if *off {
                    None
                } else {
                    let targets = targets
                        .iter()
                        .map(|t| address_arg(t))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    Some(stratus_core::accounts::Forward {
                        targets,
                        keep: *keep,
                    })
                };
                service
                    .set_forward(&address, forward)
                    .await
                    .map_err(refused)?;
            }
            match service.forward(&address).await.map_err(refused)? {
                Some(f) => writeln!(
                    out,
                    "{address} forwards to {}{}",
                    f.targets
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if f.keep { " and keeps a copy" } else { "" }
                )?,
                None => writeln!(out, "{address} does not forward")?,
            }
        }
    }
    Ok(())
}

async fn app_password(
    command: &AppPasswordCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        AppPasswordCommand::Add { address, name } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let (info, password) = service
                .add_app_password(&address, name)
                .await
                .map_err(refused)?;
            // The password alone on standard output, for scripts; the rest
            // for the person.
            writeln!(out, "{password}")?;
            eprintln!(
                "app password {:?} ({}) for {address}: shown this once",
                info.name, info.id
            );
        }
        AppPasswordCommand::List { address } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            for p in service
                .list_app_passwords(&address)
                .await
                .map_err(refused)?
            {
                writeln!(
                    out,
                    "{}  {}  made {}",
                    p.name,
                    p.id,
                    stratus_core::time::rfc5322_date(p.created)
                )?;
            }
        }
        AppPasswordCommand::Del { address, name } => {
            let address = address_arg(address)?;
            let service = Service::open(config).await.map_err(refused)?;
            let gone = service
                .del_app_password(&address, name)
                .await
                .map_err(refused)?;
            writeln!(out, "deleted app password {:?} of {address}", gone.name)?;
        }
    }
    Ok(())
}

async fn identity(
    command: &IdentityCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        IdentityCommand::Add { user, address } => {
            let (user, address) = (address_arg(user)?, address_arg(address)?);
            let service = Service::open(config).await.map_err(refused)?;
            let added = service
                .add_identity(&user, &address)
                .await
                .map_err(refused)?;
            writeln!(out, "{} may send as {}", added.user, added.identity)?;
        }
        IdentityCommand::Del { user, address } => {
            let (user, address) = (address_arg(user)?, address_arg(address)?);
            let service = Service::open(config).await.map_err(refused)?;
            let gone = service
                .del_identity(&user, &address)
                .await
                .map_err(refused)?;
            writeln!(out, "{} may no longer send as {}", gone.user, gone.identity)?;
        }
        IdentityCommand::List { user } => {
            let user = address_arg(user)?;
            let service = Service::open(config).await.map_err(refused)?;
            for identity in service.list_identities(&user).await.map_err(refused)? {
                writeln!(out, "{}", identity.identity)?;
            }
        }
    }
    Ok(())
}

fn quota_text(quota: Option<u64>) -> String {
    quota.map_or("unlimited".to_string(), |q| HumanSize(q).to_string())
}

/// `stratus sweep`: one pass of the sweeper (see [`stratus_core::sweep`]),
/// and what it did.
pub async fn sweep(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    let stores = stratus_runtime::Stores::open(config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the stores: {e}"))?;
    let settings = stratus_runtime::root::sweep_settings(config);
    let now = stratus_core::mailstore::now();
    let report = stratus_core::sweep::sweep(&stores.index, &stores.blobs, settings, now).await?;
    print_sweep(&report, settings, out)?;
    Ok(())
}

/// `stratus tlsrpt show|send`.
pub async fn tlsrpt(
    command: &crate::cli::TlsrptCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use crate::cli::TlsrptCommand;
    use stratus_core::tlsrpt;
    let stores = stratus_runtime::Stores::open(config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the stores: {e}"))?;
    let check_day = |day: &str| {
        let ok = day.len() == 10
            && day
                .split('-')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<_>>>()
                .is_some_and(|p| {
                    p.len() == 3
                        && stratus_core::time::civil_day(i64::from(p[0]), p[1], p[2]).is_some()
                });
        if ok {
            Ok(())
        } else {
            Err(UsageError(format!("{day:?} is not a day (YYYY-MM-DD)")))
        }
    };
    match command {
        TlsrptCommand::Show { day } => {
            let days = match day {
                Some(day) => {
                    check_day(day)?;
                    vec![day.clone()]
                }
                None => tlsrpt::days(stores.index.as_ref()).await?,
            };
            for day in days {
                for (domain, tallies) in tlsrpt::tallies(stores.index.as_ref(), &day).await? {
                    for t in tallies {
                        let shape = match (t.policy.kind.as_str(), t.policy.strings.len()) {
                            ("tlsa", 0) => " (no valid records)".to_string(),
                            ("tlsa", 1) => " (1 record)".to_string(),
                            ("tlsa", n) => format!(" ({n} records)"),
                            ("sts", _) => format!(" ({})", t.policy.mx_hosts.join(" ")),
                            _ => String::new(),
                        };
                        writeln!(
                            out,
                            "{day} {domain} {}{shape}: {} ok, {} failed",
                            t.policy.kind,
                            t.ok,
                            t.failures()
                        )?;
                        for (f, n) in &t.details {
                            writeln!(
                                out,
                                "  {n} x {} at {} ({}): {}",
                                f.result_type,
                                f.mx,
                                f.receiving_ip.as_deref().unwrap_or("no session"),
                                f.reason.as_deref().unwrap_or("")
                            )?;
                        }
                    }
                }
            }
        }
        TlsrptCommand::Send { day } => {
            let which = match day {
                Some(day) => {
                    check_day(day)?;
                    stratus_pipeline::tlsrpt::Which::Day(day.clone())
                }
                None => stratus_pipeline::tlsrpt::Which::Due,
            };
            let now = stratus_core::mailstore::now();
            let run = stratus_runtime::root::send_tls_reports(config, &stores, which, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (day, domain, to) in &run.sent {
                writeln!(
                    out,
                    "queued the report on {day} for {domain} to {}",
                    to.join(", ")
                )?;
            }
            for (day, domain, why) in &run.skipped {
                writeln!(out, "no report on {day} for {domain}: {why}")?;
            }
            if run.sent.is_empty() && run.skipped.is_empty() {
                writeln!(out, "no TLS report is due")?;
            }
        }
    }
    Ok(())
}

/// What `stratus sweep` prints of a pass.
fn print_sweep(
    report: &stratus_core::sweep::SweepReport,
    settings: stratus_core::sweep::SweepSettings,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "swept: {} message entries reference stored bodies; {} message blobs seen",
        report.entries, report.blobs
    )?;
    writeln!(
        out,
        "  {} newly unreferenced, deleted after the grace period ({}s) if still so",
        report.blobs_marked,
        settings.grace.as_secs()
    )?;
    writeln!(
        out,
        "  {} deleted ({} freed)",
        report.blobs_deleted,
        HumanSize(report.bytes_freed)
    )?;
    writeln!(
        out,
        "  {} deleted mailboxes reclaimed, {} index rows removed",
        report.mailboxes_reclaimed, report.rows_deleted
    )
}

#[cfg(test)]
mod tests {
    use stratus_core::{Address, password};
    use stratus_runtime::Stores;

    use super::*;
    use crate::testutil::TempDir;
    use stratus_runtime::config::Flags;

    fn config(name: &str) -> (TempDir, Config) {
        let dir = TempDir::new(name);
        let mut flags = Flags::default();
        flags.set("data_dir", dir.path().join("data").to_str().unwrap());
        let config = Config::from_sources(&flags, &|_| None).unwrap();
        (dir, config)
    }

    async fn domain_cmd(config: &Config, command: DomainCommand) -> anyhow::Result<String> {
        let mut out = Vec::new();
        domain(&command, config, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    async fn user_cmd(config: &Config, command: UserCommand, pw: &str) -> anyhow::Result<String> {
        let mut out = Vec::new();
        let mut source = |_: &str, _: bool| Ok(pw.to_string());
        user(&command, config, &mut out, &mut source).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn add(address: &str, quota: Option<u64>) -> UserCommand {
        UserCommand::Add {
            address: address.into(),
            password_stdin: true,
            quota,
        }
    }

    #[tokio::test]
    async fn domains_and_users_round_trip() {
        let (_dir, c) = config("round-trip");
        assert_eq!(
            domain_cmd(
                &c,
                DomainCommand::Add {
                    domain: "Example.COM".into()
                }
            )
            .await
            .unwrap(),
            "added domain example.com\npublish its DNS records (MX, SPF, DKIM, DMARC, TLS-RPT, MTA-STS, and PTR for the sending address): stratus domain dns example.com\n"
        );
        assert_eq!(
            domain_cmd(&c, DomainCommand::List).await.unwrap(),
            "example.com\n"
        );
        let dns = domain_cmd(
            &c,
            DomainCommand::Dns {
                domain: "example.com".into(),
                check: false,
            },
        )
        .await
        .unwrap();
        for record in [
            "example.com.\tIN MX 10 ",
            "example.com.\tIN TXT \"v=spf1 mx -all\"",
            "stratus-ed25519._domainkey.example.com.\tIN TXT \"v=DKIM1; k=ed25519; p=",
            "stratus-rsa._domainkey.example.com.\tIN TXT \"v=DKIM1; k=rsa; p=",
            "_dmarc.example.com.\tIN TXT \"v=DMARC1; p=quarantine;",
        ] {
            assert!(dns.contains(record), "`{record}` missing:\n{dns}");
        }
        let mut behind_nat = c.clone();
        behind_nat.outbound_addresses = vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ];
        let dns = domain_cmd(
            &behind_nat,
            DomainCommand::Dns {
                domain: "example.com".into(),
                check: false,
            },
        )
        .await
        .unwrap();
        assert!(
            dns.contains(
                "example.com.\tIN TXT \"v=spf1 mx ip4:203.0.113.7 ip6:2001:db8::25 -all\""
            ),
            "{dns}"
        );

        let out = user_cmd(&c, add("alice@example.com", Some(1 << 30)), "alice secret")
            .await
            .unwrap();
        assert_eq!(out, "added user alice@example.com (quota 1 GiB)\n");
        user_cmd(&c, add("bob@example.com", None), "bob hunter2 secret")
            .await
            .unwrap();

        let list = user_cmd(&c, UserCommand::List { domain: None }, "")
            .await
            .unwrap();
        assert_eq!(
            list,
            "alice@example.com  quota 1 GiB  used 0 B  6 mailboxes\nbob@example.com    quota unlimited  used 0 B  6 mailboxes\n"
        );
        let one = user_cmd(
            &c,
            UserCommand::List {
                domain: Some("example.com".into()),
            },
            "",
        )
        .await
        .unwrap();
        assert_eq!(one, list);

        // The stored hash verifies the password given, and is nowhere in the output.
        let stores = Stores::open(&c).await.unwrap();
        let alice = stores
            .accounts()
            .user(&Address::parse("alice@example.com").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(password::verify(&alice.password_hash, "alice secret"));
        assert!(!list.contains("argon2") && !list.contains("secret"));

        let out = user_cmd(
            &c,
            UserCommand::Passwd {
                address: "alice@example.com".into(),
                password_stdin: true,
            },
            "n3w alice secret",
        )
        .await
        .unwrap();
        assert_eq!(out, "changed password of alice@example.com\n");
        let alice = stores
            .accounts()
            .user(&alice.address)
            .await
            .unwrap()
            .unwrap();
        assert!(password::verify(&alice.password_hash, "n3w alice secret"));

        let err = domain_cmd(
            &c,
            DomainCommand::Del {
                domain: "example.com".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("still has 2 user(s)"), "{err}");
        for who in ["alice@example.com", "bob@example.com"] {
            assert_eq!(
                user_cmd(
                    &c,
                    UserCommand::Del {
                        address: who.into()
                    },
                    ""
                )
                .await
                .unwrap(),
                format!("deleted user {who}\n")
            );
        }
        assert_eq!(
            domain_cmd(
                &c,
                DomainCommand::Del {
                    domain: "example.com".into()
                }
            )
            .await
            .unwrap(),
            "deleted domain example.com\n"
        );
        assert_eq!(domain_cmd(&c, DomainCommand::List).await.unwrap(), "");
    }

    #[tokio::test]
    async fn a_malformed_argument_touches_nothing() {
        let (_dir, c) = config("malformed");
        let bad_domain = DomainCommand::Add {
            domain: "not a domain".into(),
        };
        let err = domain_cmd(&c, bad_domain).await.unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        let err = user_cmd(&c, add("no-at-sign", None), "pw")
            .await
            .unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        let bad_target = AliasCommand::Add {
            alias: "team@example.com".into(),
            targets: vec!["not an address".into()],
        };
        let err = alias(&bad_target, &c, &mut Vec::new()).await.unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        assert!(!c.data_dir.exists(), "no store was opened");
    }

    #[tokio::test]
    async fn refusals_say_why() {
        let (_dir, c) = config("refusals");
        let err = user_cmd(&c, add("bob@unknown.example", None), "pw")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "domain unknown.example is not hosted here; add it first with `stratus domain add unknown.example`"
        );
        assert!(
            err.downcast_ref::<UsageError>().is_none(),
            "a refusal, not a usage error"
        );

        let err = domain_cmd(
            &c,
            DomainCommand::Add {
                domain: "not a domain".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        assert!(
            err.to_string().contains("`not a domain` is invalid"),
            "{err}"
        );

        domain_cmd(
            &c,
            DomainCommand::Add {
                domain: "example.com".into(),
            },
        )
        .await
        .unwrap();
        let err = domain_cmd(
            &c,
            DomainCommand::Add {
                domain: "example.com".into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "domain example.com already exists");

        user_cmd(&c, add("carol@example.com", None), "carol secret")
            .await
            .unwrap();
        let err = user_cmd(&c, add("Carol@example.com", None), "pw")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");

        let err = user_cmd(
            &c,
            UserCommand::Del {
                address: "dave@example.com".into(),
            },
            "",
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "no such user: dave@example.com");
        let err = user_cmd(
            &c,
            UserCommand::Passwd {
                address: "dave@example.com".into(),
                password_stdin: true,
            },
            "pw",
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "no such user: dave@example.com");

        let err = user_cmd(&c, add("erin@example.com", None), "pw\r")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
        let err = domain_cmd(
            &c,
            DomainCommand::Del {
                domain: "other.example".into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "domain other.example is not hosted here");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Everything, every domain
    Admin,
    /// Only the domains given with --domain
    DomainAdmin,
}

/// `stratus apikey ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key for the admin API; the key alone is printed, once
    Create {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A domain a domain admin key covers (repeatable)
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
    },
    /// Every key: id, role, domains, made, revoked
    List,
    /// Revoke a key by its id; at once, on every gateway
    Revoke { id: String },
}

/// `stratus apikey ...`
pub async fn apikey(
    command: &ApiKeyCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let describe = |k: &service::ApiKeyInfo| {
        let role = match k.role {
            service::Role::Admin => "admin",
            service::Role::DomainAdmin => "domain-admin",
        };
        let state = match k.revoked {
            Some(t) => format!("revoked {}", stratus_core::time::rfc5322_date(t)),
            None => "active".to_string(),
        };
        format!(
            "{} {role} {} made {} {state}",
            k.id,
            if k.domains.is_empty() {
                "*".to_string()
            } else {
                k.domains.join(",")
            },
            stratus_core::time::rfc5322_date(k.created)
        )
    };
    match command {
        ApiKeyCommand::Create { role, domains } => {
            let domains = domains
                .iter()
                .map(|d| domain_arg(d))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let role = match role {
                RoleArg::Admin => service::Role::Admin,
                RoleArg::DomainAdmin => service::Role::DomainAdmin,
            };
            let service = Service::open(config).await.map_err(refused)?;
            let (info, key) = service
                .create_api_key(role, &domains, None)
                .await
                .map_err(refused)?;
            tracing::info!(id = %info.id, "API key made");
            writeln!(out, "{key}")?;
        }
        ApiKeyCommand::List => {
            let service = Service::open(config).await.map_err(refused)?;
            for key in service.list_api_keys(None).await.map_err(refused)? {
                writeln!(out, "{}", describe(&key))?;
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let service = Service::open(config).await.map_err(refused)?;
            let key = service.revoke_api_key(id, None).await.map_err(refused)?;
            writeln!(out, "{}", describe(&key))?;
        }
    }
    Ok(())
}

/// `stratus queue ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum QueueCommand {
    /// Messages waiting for another attempt, oldest first: id, sender,
    /// recipients, attempts, next attempt, last error
    List {
        /// Only those to this destination domain
        #[arg(long)]
        domain: Option<String>,
        /// Only those from this envelope sender (`<>`: the null sender)
        #[arg(long)]
        sender: Option<String>,
        /// Only those to this recipient
        #[arg(long)]
        recipient: Option<String>,
    },
    /// One waiting message
    Show { id: String },
    /// Try it again now
    Retry { id: String },
    /// Remove it: no more attempts, no DSN to its sender
    #[command(visible_alias = "del")]
    Delete { id: String },
    /// Give up on it now: its sender gets a DSN
    Bounce { id: String },
}

/// `stratus queue ...`
pub async fn queue(
    command: &QueueCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let when = stratus_core::time::rfc5322_date;
    let line = |m: &service::QueuedInfo| {
        format!(
            "{} from {} to {} attempts {} next {} [{}]",
            m.id,
            m.sender.as_deref().unwrap_or("<>"),
            m.recipients.join(","),
            m.attempts,
            when(m.next_attempt),
            m.last_error
        )
    };
    let service = Service::open(config).await.map_err(refused)?;
    match command {
        QueueCommand::List {
            domain,
            sender,
            recipient,
        } => {
            let filter = service::QueueFilter {
                domain: domain.clone(),
                sender: sender.clone(),
                recipient: recipient.clone(),
            };
            for (m, _) in service.list_queue(&filter).await.map_err(refused)? {
                writeln!(out, "{}", line(&m))?;
            }
        }
        QueueCommand::Show { id } => {
            let (m, _) = service.queued(id).await.map_err(refused)?;
            writeln!(out, "{}", line(&m))?;
            writeln!(
                out,
                "queue id {}, received {}",
                m.queue_id,
                when(m.received_at)
            )?;
            if let Some(by) = &m.forwarded_by {
                writeln!(out, "forwarded by {by}")?;
            }
        }
        QueueCommand::Retry { id } => {
            let m = service.retry_queued(id).await.map_err(refused)?;
            writeln!(out, "retrying {} now", m.id)?;
        }
        QueueCommand::Delete { id } => {
            let m = service.delete_queued(id).await.map_err(refused)?;
            writeln!(out, "deleted {}", m.id)?;
        }
        QueueCommand::Bounce { id } => {
            let m = service.bounce_queued(id).await.map_err(refused)?;
            writeln!(
                out,
                "bouncing {} to {}",
                m.id,
                m.sender.as_deref().unwrap_or("<> (nobody)")
            )?;
        }
    }
    Ok(())
}

/// `stratus quarantine ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum QuarantineCommand {
    /// List held messages: id, sender, recipients, reasons, expiry
    List,
    /// Print a held message as it would be delivered, after its summary
    Show { id: String },
    /// Deliver a held message unchanged to the recipients it was held
    /// for (to their INBOX), once
    Release { id: String },
    /// Delete a held message
    #[command(visible_alias = "del")]
    Delete { id: String },
}

/// `stratus quarantine ...`
pub async fn quarantine(
    command: &QuarantineCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let id = match command {
        QuarantineCommand::List => None,
        QuarantineCommand::Show { id }
        | QuarantineCommand::Release { id }
        | QuarantineCommand::Delete { id } => Some(service::parse_held_id(id).map_err(refused)?),
    };
    let service = Service::open(config).await.map_err(refused)?;
    let when = stratus_core::time::rfc5322_date;
    let line = |h: &service::HeldInfo| {
        let state = match h.released_at {
            Some(t) => format!("released {}", when(t)),
            None => format!("until {}", when(h.expires)),
        };
        format!(
            "{} {} from {} to {} [{}] {}",
            h.id,
            when(h.held_at),
            h.from,
            h.recipients.join(","),
            h.reasons,
            state
        )
    };
    match (command, id) {
        (QuarantineCommand::List, _) => {
            for held in service.list_held().await.map_err(refused)? {
                writeln!(out, "{}", line(&held))?;
            }
        }
        (QuarantineCommand::Show { .. }, Some(id)) => {
            let (held, raw) = service.show_held(&id).await.map_err(refused)?;
            writeln!(out, "{}\n", line(&held))?;
            out.write_all(&raw)?;
        }
        (QuarantineCommand::Release { .. }, Some(id)) => {
            let held = service.release_held(&id).await.map_err(refused)?;
            writeln!(
                out,
                "released {} to {}",
                held.id,
                held.recipients.join(", ")
            )?;
        }
        (QuarantineCommand::Delete { .. }, Some(id)) => {
            let id = service.delete_held(&id).await.map_err(refused)?;
            writeln!(out, "deleted {id}")?;
        }
        _ => {}
    }
    Ok(())
}
