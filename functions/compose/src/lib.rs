//! Mail that Stratus writes itself, built in one place for every feature
//! that sends it: the send stage's delivery status notifications
//! ([`dsn`]), auto-replies ([`reply`]) for vacation responses, Sieve
//! rejections ([`mdn`]); list
//! notices will join them; and the daily TLS reports ([`tlsrpt`]). Nothing here does I/O: each
//! function returns the message's bytes, and [`from_null_sender`] the job
//! that carries it, for the caller to store and enqueue.
//!
//! Everything made here is sent from the null sender (`MAIL FROM:<>`) and
//! says it was made by a machine (`Auto-Submitted:`), so that no other
//! auto-responder answers it and no bounce of it loops (RFC 3834, RFC 5321
//! §4.5.5).

pub mod dsn;
pub mod mdn;
pub mod reply;
pub mod tlsrpt;

use stratus_core::address::{Address, Domain};
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::job::{Accepted, Envelope, Origin, Recipient};

/// The header of `original` (through the blank line that ends it), as a
/// report returns it (`text/rfc822-headers`).
pub(crate) fn header_of(original: &[u8]) -> &[u8] {
    let end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(original.len(), |i| i + 4);
    &original[..end]
}

/// Ends a `multipart/report` whose last part, `returned`, is still open.
pub(crate) fn close_report(out: &mut Vec<u8>, returned: &[u8], boundary: &str) {
    out.extend_from_slice(returned);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
}

/// The accepted message of something we made, stored at `body` (`size`
/// bytes) under `id`: from the null sender to `to`, received `now`, and
/// written with a From address at `author_domain`, whose DKIM keys sign it
/// when it leaves (if that domain is hosted here).
pub fn from_null_sender(
    id: QueueId,
    body: BlobKey,
    size: u64,
    to: Address,
    smtputf8: bool,
    now: i64,
    author_domain: Option<Domain>,
) -> Accepted {
    Accepted {
        queue_id: id,
        envelope: Envelope {
            mail_from: None,
            recipients: vec![Recipient {
                address: to,
                notify: None,
                orcpt: None,
                forwarded_by: None,
            }],
            smtputf8,
            eight_bit: true,
            ret: None,
            envid: None,
            requiretls: false,
        },
        body,
        size,
        received_at: now,
        origin: Origin::Local,
        auth_results: None,
        arrival: None,
        dmarc_failure: None,
        hosted_dmarc_failure: None,
        author_policy: None,
        sign_as: author_domain,
        headers: String::new(),
        spam_listed: Vec::new(),
        filings: Vec::new(),
    }
}
