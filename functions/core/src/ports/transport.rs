//! The transport port: delivering a message to another mail server. The
//! send stage hands it a message's recipients at one domain; the adapter
//! (`stratus-outbound`: MX lookup, SMTP, STARTTLS, DKIM signing) says what
//! became of each.

use std::fmt;

use async_trait::async_trait;

use crate::address::Domain;
use crate::job::{Envelope, Recipient};

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

/// Delivers a message to recipients at one domain.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// One outcome per recipient, in order. `sign_as` is the domain whose
    /// DKIM keys sign the message (`None`: sent unsigned); see
    /// [`crate::job::Accepted::sign_as`].
    async fn deliver(
        &self,
        domain: &str,
        envelope: &Envelope,
        recipients: &[Recipient],
        body: &[u8],
        sign_as: Option<&Domain>,
    ) -> Vec<Outcome>;
}
