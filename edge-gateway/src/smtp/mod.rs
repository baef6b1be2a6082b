//! SMTP: the MX role and submission (RFC 5321 with PIPELINING, SIZE,
//! 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING/BINARYMIME, STARTTLS,
//! DSN and, on submission, AUTH), told apart by [`SessionKind`].
//!
//! Layout, protocol first and I/O last:
//! - commands are parsed by `smtp-proto`; the message bytes of DATA and
//!   BDAT (dot-unstuffing, the only end marker `<CRLF>.<CRLF>`, bare CR/LF
//!   refusal against SMTP smuggling, the size cap) and replies are
//!   `stratus_proto::smtp`: no I/O.
//! - [`received`]: the `Received:` field we prepend, and RFC 5322 dates.
//! - [`auth`]: the seam for SPF/DKIM/DMARC/ARC ([`auth::MessageAuth`]).
//! - [`trust`]: who may send as whom (submission), and mail claiming a
//!   hosted domain that fails DMARC (the MX).
//! - [`content`]: foreign verdict fields removed, the spam score (and
//!   refusal of what every recipient would refuse) before the final reply.
//! - [`accept`]: store the body, enqueue the job, only then 250.
//! - [`session`]: the command loop and transaction over any
//!   `AsyncRead + AsyncWrite` stream, STARTTLS included.

pub mod accept;
pub mod auth;
pub mod clamd;
pub mod content;
pub mod dnsbl;
pub mod received;
pub mod session;
pub mod trust;

use std::sync::Arc;

use stratus_runtime::config::SmtpLimits;

use crate::shared::Shared;
use crate::throttle::SendRate;

pub use session::{SessionKind, serve};

/// What SMTP sessions (MX and submission) are built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Shared,
    pub limits: SmtpLimits,
    /// SPF/DKIM/DMARC/ARC verification of incoming mail.
    pub auth: Arc<dyn auth::MessageAuth>,
    /// Per-user sending limits of submission.
    pub send_rate: Arc<SendRate>,
    /// Spam scoring of mail from outside before the final reply (`None`:
    /// off).
    pub spam: Option<Arc<stratus_pipeline::spam::SpamEngine>>,
    /// Virus scanning before the final reply (`None`: off).
    pub clamd: Option<stratus_runtime::config::ClamdSettings>,
    /// DNS blocklists (`None`: none configured, or filtering off).
    pub dnsbl: Option<dnsbl::Blocklists>,
}

#[cfg(test)]
mod tests;
