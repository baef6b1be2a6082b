//! The service layer: every administrative operation (domains, users and
//! aliases today; lists, quarantine and the archive as they land) as one
//! typed call with a typed result and a typed [`ServiceError`]. The command
//! line ([`crate::admin`]) prints the results; the HTTP admin API will
//! serialise them (every result is `Serialize`). Nothing here prints, and
//! nothing here knows which of the two called it, so there is no operation
//! one has and the other lacks.
//!
//! Operations take validated values ([`Domain`], [`Address`]): a caller
//! parses what a person or a request gave it with [`parse_domain`] and
//! [`parse_address`] first, so that a malformed argument is refused
//! ([`ServiceError::Invalid`]) before any store is opened.

use std::net::IpAddr;

use stratus_core::accounts::{AccountError, Accounts};
use stratus_core::{Address, Domain};
use stratus_runtime::Stores;
use stratus_runtime::config::Config;

mod aliases;
pub mod apikeys;
mod audit;
mod dkim;
mod domains;
mod identities;
mod invitations;
mod lists;
mod quarantine;
mod queue;
mod sieve;
mod spam;
mod users;
mod websessions;

pub use aliases::AliasInfo;
pub use apikeys::{ApiKeyInfo, Principal, Role};
pub use audit::AuditEntry;
pub use dkim::{DkimKeyInfo, RETIRED_KEEP_SECS};
pub use domains::{DnsCheck, DnsRecord, DomainAdded, DomainInfo};
pub use identities::IdentityInfo;
pub use invitations::{INVITATION_LIFETIME, Invitation, InvitationInfo};
pub use lists::{HeldPostInfo, ListInfo, MemberInfo};
pub use quarantine::{HeldInfo, parse_held_id};
pub use queue::{QueueFilter, QueuedInfo};
pub use sieve::{
    VACATION_SCRIPT, VacationSettings, check_script, limits as sieve_limits, vacation_script,
};
pub use spam::{SpamInfo, SpamList, Threshold, spam_scope};
pub use users::{AppPasswordInfo, MailboxInfo, UserInfo};
pub use websessions::{WEB_SESSION_COOKIE, WEB_SESSION_LIFETIME, WebSession};

/// Why an operation was refused, by kind: the command line turns
/// [`ServiceError::Invalid`] into exit code 2 and the rest into 1; HTTP
/// will answer 400, 404, 409, 503 and 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed: a bad address, domain or password.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (already there, not empty).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (a key's role or domains).
    #[error("{0}")]
    Forbidden(String),
    /// The stores could not be reached; trying again may work.
    #[error("{0}")]
    Unavailable(String),
    /// Something stored is broken, or a key could not be made.
    #[error("{0}")]
    Internal(String),
}

impl From<AccountError> for ServiceError {
    fn from(e: AccountError) -> Self {
        let text = e.to_string();
        match e {
            AccountError::UnknownDomain(_)
            | AccountError::UnknownUser(_)
            | AccountError::UnknownAlias(_)
            | AccountError::UnknownMailbox(_)
            | AccountError::UnknownIdentity { .. }
            | AccountError::UnknownTarget(_)
            | AccountError::UnknownList(_)
            | AccountError::UnknownHeld(..)
            | AccountError::UnknownAppPassword { .. } => ServiceError::NotFound(text),
            AccountError::DomainExists(_)
            | AccountError::DomainNotEmpty { .. }
            | AccountError::UserExists(_)
            | AccountError::AliasIsUser(_)
            | AccountError::AliasExists(_)
            | AccountError::IdentityExists { .. }
            | AccountError::AliasLoop { .. }
            | AccountError::MailboxExists(_)
            | AccountError::TooManyMailboxes
            | AccountError::TooManySubscriptions
            | AccountError::TooManyKeywords
            | AccountError::TooManyAnnotations
            | AccountError::TooManyListEntries
            | AccountError::AddressTaken(_)
            | AccountError::ListExists(_)
            | AccountError::DomainHasLists(_)
            | AccountError::ListInList(_)
            | AccountError::DomainHasAliases { .. }
            | AccountError::AppPasswordExists { .. }
            | AccountError::TooManyAppPasswords
            | AccountError::DkimKeys(_)
            | AccountError::Superseded(_) => ServiceError::Conflict(text),
            AccountError::NoTargets
            | AccountError::InvalidMailbox(_)
            | AccountError::InvalidSetting(_) => ServiceError::Invalid(text),
            AccountError::Corrupt { .. } => ServiceError::Internal(text),
            AccountError::Store(s) if s.is_retryable() => ServiceError::Unavailable(text),
            AccountError::Store(_) => ServiceError::Internal(text),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// The operations, over one set of stores.
#[derive(Debug, Clone)]
pub struct Service {
    accounts: Accounts,
    /// The index itself, for API keys and the audit log.
    index: std::sync::Arc<dyn stratus_core::Index>,
    quarantine: stratus_core::quarantine::Quarantine,
    /// Users' Sieve scripts.
    scripts: stratus_core::sieve::Scripts,
    /// Where released messages' deliveries are queued.
    queue: std::sync::Arc<dyn stratus_core::Queue>,
    /// Message bodies (held list posts).
    blobs: std::sync::Arc<dyn stratus_core::BlobStore>,
    /// Our host name: the MX that DNS records name.
    hostname: String,
    /// Where outbound mail leaves from when not from the MX (SPF).
    outbound_addresses: Vec<IpAddr>,
    /// The fewest characters a new password may have.
    password_min_length: usize,
    /// Where DNS checks ask (`None`: the system's resolvers).
    dns_resolver: Option<std::net::SocketAddr>,
    /// Where people reach the HTTPS listener (invitation links).
    public_url: String,
}

impl Service {
    pub fn new(stores: &Stores, config: &Config) -> Service {
        Service {
            accounts: stores.accounts(),
            index: stores.index.clone(),
            quarantine: stratus_core::quarantine::Quarantine::new(
                stores.index.clone(),
                stores.blobs.clone(),
            ),
            scripts: stratus_core::sieve::Scripts::new(stores.index.clone(), stores.blobs.clone()),
            queue: stores.queue.clone(),
            blobs: stores.blobs.clone(),
            hostname: config.hostname.clone(),
            outbound_addresses: config.outbound_addresses.clone(),
            password_min_length: config.password_min_length,
            dns_resolver: config.dns_resolver,
            public_url: config.public_url.clone(),
        }
    }

    /// Opens the stores `config` names and serves over them.
    pub async fn open(config: &Config) -> ServiceResult<Service> {
        let stores = Stores::open(config)
            .await
            .map_err(|e| ServiceError::Unavailable(format!("cannot open the stores: {e}")))?;
        Ok(Service::new(&stores, config))
    }
}

/// A domain as given, or why it is not one.
pub fn parse_domain(input: &str) -> ServiceResult<Domain> {
    Domain::parse(input).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// An address as given, or why it is not one.
pub fn parse_address(input: &str) -> ServiceResult<Address> {
    Address::parse(input).map_err(|e| ServiceError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests;
