//! POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), SASL PLAIN
//! (RFC 5034) and response codes (RFC 2449, 3206), over the user's INBOX
//! as IMAP sees it.
//!
//! Layout, protocol first and I/O last:
//! - `stratus_proto::pop3`: commands parsed from a line, SASL PLAIN, and
//!   the byte filters of multi-line answers (dot-stuffing, TOP) — no I/O.
//! - [`session`]: the AUTHORIZATION / TRANSACTION / UPDATE states over any
//!   `AsyncRead + AsyncWrite` stream, STLS and implicit TLS included.
//!
//! The maildrop is fixed at login: the session takes a lease on it
//! (`pop3#<account key>`, renewed while the session lives), reads the INBOX
//! entries once (never a body: STAT, LIST and UIDL come from the index),
//! and at QUIT removes the messages marked with DELE through
//! `Mailstore::expunge`, guarded by the lease, so deletions commit only
//! while the session still holds it. UIDL is `<uidvalidity>.<uid>`, stable
//! for as long as the message exists.

pub mod session;

use stratus_runtime::config::Pop3Settings;

use crate::shared::Shared;

pub use session::serve;

/// What POP3 sessions are built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Shared,
    pub settings: Pop3Settings,
}

#[cfg(test)]
mod tests;
