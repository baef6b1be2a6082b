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
pub mod submit;
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
    /// Users lately seen without an active Sieve script.
    pub sieve_idle: Arc<SieveIdle>,
}

/// Users seen without an active Sieve script lately, for whom the check
/// before the final reply (`reject` at SMTP time) is skipped for a few
/// seconds: most users have no script, and the check costs two index
/// reads. A script activated meanwhile still runs in route, which
/// answers a `reject` by mail.
#[derive(Debug, Default)]
pub struct SieveIdle(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl SieveIdle {
    const FOR: std::time::Duration = std::time::Duration::from_secs(10);
    const MAX: usize = 100_000;

    pub fn recently(&self, user: &str) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(user).is_some_and(|at| at.elapsed() < Self::FOR)
    }

    pub fn note(&self, user: &str) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= Self::MAX {
            seen.retain(|_, at| at.elapsed() < Self::FOR);
        }
        if seen.len() < Self::MAX {
            seen.insert(user.to_string(), std::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;
