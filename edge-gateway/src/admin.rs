//! The admin commands (`stratus domain ...`, `stratus user ...`): parse the
//! arguments, open the stores the configuration names, apply the change
//! through [`Accounts`], and print one short line per result.
//!
//! Arguments are validated before any store is opened, so a typo is a usage
//! error (exit code 2) that touches nothing. Passwords come from a
//! caller-supplied source and go straight into the Argon2id hash; neither
//! the password nor the hash is ever printed or logged.

use std::io::Write;

use anyhow::Context as _;
use stratus_auth::dkim::{Algorithm, DkimKey};
use stratus_core::accounts::DkimKeyRecord;
use stratus_core::accounts::{AccountError, Accounts, UserRecord};
use stratus_core::{Address, Domain, password};

use crate::cli::UsageError;
use crate::password_input::PasswordInputError;
use stratus_runtime::Stores;
use stratus_runtime::config::Config;
use stratus_runtime::size::HumanSize;

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
    /// DMARC, TLS-RPT)
    Dns { domain: String },
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

/// Runs an `alias` command.
pub async fn alias(
    command: &AliasCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        AliasCommand::Add { alias, targets } => {
            let alias = parse_address(alias)?;
            let targets = targets
                .iter()
                .map(|t| parse_address(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let shown = targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            accounts(config).await?.add_alias(&alias, targets).await?;
            writeln!(out, "added alias {alias} -> {shown}")?;
        }
        AliasCommand::List { domain } => {
            let accounts = accounts(config).await?;
            let domains = match domain {
                Some(d) => vec![parse_domain(d)?],
                None => accounts
                    .list_domains()
                    .await?
                    .into_iter()
                    .map(|d| d.name)
                    .collect(),
            };
            for domain in domains {
                for record in accounts.list_aliases(&domain).await? {
                    let targets = record
                        .targets
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    writeln!(out, "{} -> {targets}", record.alias)?;
                }
            }
        }
        AliasCommand::Del { alias } => {
            let alias = parse_address(alias)?;
            accounts(config).await?.del_alias(&alias).await?;
            writeln!(out, "deleted alias {alias}")?;
        }
    }
    Ok(())
}

fn parse_domain(input: &str) -> anyhow::Result<Domain> {
    Domain::parse(input).map_err(|e| UsageError(e.to_string()).into())
}

fn parse_address(input: &str) -> anyhow::Result<Address> {
    Address::parse(input).map_err(|e| UsageError(e.to_string()).into())
}

/// The DKIM selectors `domain add` creates keys for.
const DKIM_SELECTORS: [(Algorithm, &str); 2] = [
    (Algorithm::Ed25519, "stratus-ed25519"),
    (Algorithm::Rsa, "stratus-rsa"),
];

async fn accounts(config: &Config) -> anyhow::Result<Accounts> {
    let stores = Stores::open(config)
        .await
        .context("cannot open the stores")?;
    Ok(stores.accounts())
}

/// Runs a `domain` command.
pub async fn domain(
    command: &DomainCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        DomainCommand::Add { domain } => {
            let domain = parse_domain(domain)?;
            let accounts = accounts(config).await?;
            accounts.add_domain(&domain).await?;
            let mut keys = Vec::new();
            for (algorithm, selector) in DKIM_SELECTORS {
                let key = DkimKey::generate(algorithm)
                    .map_err(|e| anyhow::anyhow!("cannot generate a DKIM key: {e}"))?;
                keys.push(DkimKeyRecord {
                    selector: selector.to_string(),
                    algorithm: algorithm.tag().to_string(),
                    private_pkcs8: stratus_auth::dkim::base64(key.pkcs8()),
                    created: stratus_core::mailstore::now(),
                });
            }
            accounts.put_dkim_keys(&domain, keys).await?;
            writeln!(out, "added domain {domain}")?;
            writeln!(
                out,
                "publish its DNS records (MX, SPF, DKIM, DMARC): stratus domain dns {domain}"
            )?;
        }
        DomainCommand::Dns { domain } => {
            let domain = parse_domain(domain)?;
            let accounts = accounts(config).await?;
            if accounts.domain(&domain).await?.is_none() {
                anyhow::bail!("domain {domain} is not hosted here");
            }
            let host = &config.hostname;
            writeln!(out, "; DNS records for {domain} (zone file syntax)")?;
            writeln!(out, "{domain}.\tIN MX 10 {host}.")?;
            // The MX hosts send too; so do the outbound addresses when mail
            // leaves through others (a NAT gateway).
            let mut spf = String::from("v=spf1 mx");
            for ip in &config.outbound_addresses {
                match ip {
                    std::net::IpAddr::V4(ip) => spf.push_str(&format!(" ip4:{ip}")),
                    std::net::IpAddr::V6(ip) => spf.push_str(&format!(" ip6:{ip}")),
                }
            }
            writeln!(out, "{domain}.\tIN TXT \"{spf} -all\"")?;
            for key in accounts.dkim_keys(&domain).await? {
                let algorithm = Algorithm::from_tag(&key.algorithm)
                    .ok_or_else(|| anyhow::anyhow!("unknown DKIM algorithm {}", key.algorithm))?;
                let pkcs8 = stratus_core::base64::decode(&key.private_pkcs8)
                    .ok_or_else(|| anyhow::anyhow!("the stored DKIM key is unreadable"))?;
                let record = DkimKey::from_pkcs8(algorithm, pkcs8)
                    .map_err(|e| anyhow::anyhow!("the stored DKIM key is unreadable: {e}"))?
                    .dns_record();
                // TXT strings are at most 255 bytes: long keys are split.
                let strings: Vec<String> = record
                    .as_bytes()
                    .chunks(255)
                    .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                    .collect();
                writeln!(
                    out,
                    "{}._domainkey.{domain}.\tIN TXT {}",
                    key.selector,
                    strings.join(" ")
                )?;
            }
            writeln!(
                out,
                "_dmarc.{domain}.\tIN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\""
            )?;
            writeln!(
                out,
                "_smtp._tls.{domain}.\tIN TXT \"v=TLSRPTv1; rua=mailto:postmaster@{domain}\""
            )?;
            writeln!(
                out,
                "; and a PTR record for the address {host} sends from, naming {host}"
            )?;
        }
        DomainCommand::List => {
            for record in accounts(config).await?.list_domains().await? {
                let unicode = record.name.to_unicode();
                if unicode == record.name.as_str() {
                    writeln!(out, "{}", record.name)?;
                } else {
                    writeln!(out, "{} ({unicode})", record.name)?;
                }
            }
        }
        DomainCommand::Del { domain } => {
            let domain = parse_domain(domain)?;
            match accounts(config).await?.del_domain(&domain).await {
                Ok(()) => writeln!(out, "deleted domain {domain}")?,
                // Core's message suggests adding the domain, which is no
                // help to someone deleting it.
                Err(AccountError::UnknownDomain(d)) => {
                    anyhow::bail!("domain {d} is not hosted here")
                }
                Err(e) => return Err(e.into()),
            }
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
            let address = parse_address(address)?;
            let accounts = accounts(config).await?;
            // Refuse before asking for a password that would be thrown away.
            if accounts.domain(address.domain()).await?.is_none() {
                return Err(AccountError::UnknownDomain(address.domain().clone()).into());
            }
            if accounts.user(&address).await?.is_some() {
                return Err(AccountError::UserExists(address).into());
            }
            let hash = new_hash(&address, *password_stdin, password).await?;
            accounts.add_user(&address, hash, *quota).await?;
            let quota = quota.map_or("unlimited".to_string(), |q| HumanSize(q).to_string());
            writeln!(out, "added user {address} (quota {quota})")?;
        }
        UserCommand::List { domain } => {
            let accounts = accounts(config).await?;
            let domains = match domain {
                Some(d) => {
                    let d = parse_domain(d)?;
                    if accounts.domain(&d).await?.is_none() {
                        return Err(AccountError::UnknownDomain(d).into());
                    }
                    vec![d]
                }
                None => accounts
                    .list_domains()
                    .await?
                    .into_iter()
                    .map(|r| r.name)
                    .collect(),
            };
            let mut rows = Vec::new();
            for d in &domains {
                for user in accounts.list_users(d).await? {
                    rows.push(user_row(&accounts, &user).await?);
                }
            }
            let width = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
            for [address, quota, used, mailboxes] in rows {
                writeln!(
                    out,
                    "{address:width$}  quota {quota}  used {used}  {mailboxes}"
                )?;
            }
        }
        UserCommand::Del { address } => {
            let address = parse_address(address)?;
            accounts(config).await?.del_user(&address).await?;
            writeln!(out, "deleted user {address}")?;
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = parse_address(address)?;
            let accounts = accounts(config).await?;
            if accounts.user(&address).await?.is_none() {
                return Err(AccountError::UnknownUser(address).into());
            }
            let hash = new_hash(&address, *password_stdin, password).await?;
            accounts.set_password(&address, hash).await?;
            writeln!(out, "changed password of {address}")?;
        }
    }
    Ok(())
}

async fn user_row(accounts: &Accounts, user: &UserRecord) -> anyhow::Result<[String; 4]> {
    let mailboxes = accounts.mailboxes(&user.address).await?;
    let used: u64 = mailboxes.iter().map(|m| m.size).sum();
    let count = match mailboxes.len() {
        1 => "1 mailbox".to_string(),
        n => format!("{n} mailboxes"),
    };
    let quota = user
        .quota
        .map_or("unlimited".to_string(), |q| HumanSize(q).to_string());
    Ok([
        user.address.to_string(),
        quota,
        HumanSize(used).to_string(),
        count,
    ])
}

/// Gets the new password and hashes it off the async threads (Argon2id is
/// deliberately slow).
async fn new_hash(
    address: &Address,
    from_stdin: bool,
    source: PasswordSource<'_>,
) -> anyhow::Result<String> {
    let secret = source(&address.to_string(), from_stdin)?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&secret))
        .await
        .context("password hashing failed")??;
    Ok(hash)
}

#[cfg(test)]
mod tests {
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
            "added domain example.com\npublish its DNS records (MX, SPF, DKIM, DMARC): stratus domain dns example.com\n"
        );
        assert_eq!(
            domain_cmd(&c, DomainCommand::List).await.unwrap(),
            "example.com\n"
        );
        let dns = domain_cmd(
            &c,
            DomainCommand::Dns {
                domain: "example.com".into(),
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

        let out = user_cmd(&c, add("alice@example.com", Some(1 << 30)), "secret")
            .await
            .unwrap();
        assert_eq!(out, "added user alice@example.com (quota 1 GiB)\n");
        user_cmd(&c, add("bob@example.com", None), "hunter2")
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
        assert!(password::verify(&alice.password_hash, "secret"));
        assert!(!list.contains("argon2") && !list.contains("secret"));

        let out = user_cmd(
            &c,
            UserCommand::Passwd {
                address: "alice@example.com".into(),
                password_stdin: true,
            },
            "n3w",
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
        assert!(password::verify(&alice.password_hash, "n3w"));

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

        user_cmd(&c, add("carol@example.com", None), "pw")
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
