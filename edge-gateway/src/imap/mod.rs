//! IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) for the imap (STARTTLS)
//! and imaps (implicit TLS) roles, over the same mailboxes the pipeline
//! delivers to and POP3 reads.
//!
//! Commands are parsed and IMAP data written by `stratus_proto::imap`,
//! without I/O. Here, [`selected`] keeps a session's view of its
//! mailbox in step with other sessions, [`fetch`] and [`search`] answer
//! from the index where they can and from the blob store where they must,
//! and [`session`] does the talking.

pub mod fetch;
mod op;
pub mod search;
pub mod selected;
mod session;
pub mod sort;

use std::sync::Arc;

use stratus_runtime::config::ImapSettings;

use crate::shared::Shared;

pub use session::serve;

/// What IMAP sessions are built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Shared,
    pub settings: ImapSettings,
    /// The largest message APPEND takes (the SMTP message size limit).
    pub append_limit: u64,
    /// The mailbox views sessions start from when they select.
    pub views: Arc<selected::Views>,
    /// Logged-in sessions per user and client address, against
    /// `settings.max_per_user_ip`.
    pub user_ip: Arc<crate::slots::Slots<(stratus_core::address::Address, std::net::IpAddr)>>,
}

#[cfg(test)]
mod tests;
