//! The transport port: delivering a message to another mail server. The
//! send stage hands it a message's recipients at one domain; the adapter
//! (`stratus-outbound`: MX lookup, SMTP, STARTTLS, DKIM signing) says what
//! became of each.

use std::fmt;

use async_trait::async_trait;

use crate::address::{Address, Domain};
use crate::job::{Arrival, Envelope, Recipient};

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The remote server took responsibility (its reply).
    Delivered(String),
    /// Try again later (why).
    Temporary(String),
    /// Give up (the remote reply or our reason, with its status code).
    Permanent(String),
}

/// A forward of mail from outside, to seal with ARC (RFC 8617) under the
/// forwarding address's domain, with what its arrival showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub domain: Domain,
    pub arrival: Arrival,
    /// The envelope sender as the message arrived (before SRS).
    pub mail_from: Option<Address>,
}

/// Delivers a message to recipients at one domain.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// One outcome per recipient, in order. `sign_as` is the domain whose
    /// DKIM keys sign the message (`None`: sent unsigned); see
    /// [`crate::job::Accepted::sign_as`]. `seal`: an ARC seal to add
    /// first, when the message arrived with a result that passed.
    async fn deliver(
        &self,
        domain: &str,
        envelope: &Envelope,
        recipients: &[Recipient],
        body: &[u8],
        sign_as: Option<&Domain>,
        seal: Option<&Seal>,
    ) -> Vec<Outcome>;
}
