//! The scanner port: a virus verdict for a message, for the filter stage
//! (and the gateway, before the final reply to DATA). The embedded adapter
//! will speak clamd's protocol over a socket (`STRATUS_CLAMD`); on AWS,
//! clamd runs as an optional service reached the same way. No adapter is
//! configured yet: until then the filter stage does not scan.

use std::fmt;

use async_trait::async_trait;

use super::StoreResult;

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanVerdict {
    Clean,
    /// Infected, with the signature's name (`Eicar-Test-Signature`).
    Infected(String),
    /// The scanner would not judge it (too large, too deeply nested,
    /// encrypted), with its reason: policy decides what happens then.
    Unscannable(String),
}

/// Scans a message's bytes. A scanner that cannot be reached answers with
/// a retryable error, so the job is tried again rather than let through.
#[async_trait]
pub trait Scanner: Send + Sync + fmt::Debug {
    async fn scan(&self, message: &[u8]) -> StoreResult<ScanVerdict>;
}
