//! The ports: every stage and the gateway reach the outside world only
//! through these traits, and adapters translate them to files + SQLite, to
//! S3 / DynamoDB / SQS, to SMTP or to clamd. No SDK type crosses them.
//!
//! Here, the three storage ports ([`BlobStore`], [`Index`], [`Queue`]);
//! beside them, [`transport`] (outbound delivery to other servers),
//! [`changes`] (the change feed IMAP IDLE waits on) and [`scanner`] (virus
//! verdicts for the filter stage).
//!
//! Every error is [`StoreError::Retryable`] (try again later: network, throttling,
//! full disk, a lock held too long) or [`StoreError::Permanent`] (the request
//! itself is wrong: it will never succeed). A failed write condition is not an
//! error: [`Index::transact`] returns [`Outcome::Conflict`].

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::BlobKey;

pub mod changes;
#[cfg(test)]
mod memory;
#[cfg(test)]
pub(crate) use memory::MemoryIndex;
pub mod scanner;
pub mod transport;

pub use changes::{Change, ChangeFeed, InProcessFeed, PollingFeed, Subscription};
pub use scanner::{ScanVerdict, Scanner};
pub use transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} failed, will retry: {reason}")]
    Retryable { op: &'static str, reason: String },
    #[error("{op} failed: {reason}")]
    Permanent { op: &'static str, reason: String },
}

impl StoreError {
    pub fn retryable(op: &'static str, reason: impl fmt::Display) -> Self {
        StoreError::Retryable {
            op,
            reason: reason.to_string(),
        }
    }

    pub fn permanent(op: &'static str, reason: impl fmt::Display) -> Self {
        StoreError::Permanent {
            op,
            reason: reason.to_string(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable { .. })
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

// ---------------------------------------------------------------- blob store

/// What the blob store knows about an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: BlobKey,
    pub size: u64,
}

/// Immutable objects (message bodies, archive copies). A `put` is atomic: a
/// reader sees the whole object or none of it, never a part.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Stores `body` under `key`, replacing any object there.
    async fn put(&self, key: &BlobKey, body: Bytes) -> StoreResult<()>;

    /// The object, or the bytes of `range` (end clamped to the object's size;
    /// a range that starts at or past the end is empty). `None` if missing.
    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> StoreResult<Option<Bytes>>;

    /// The object's size, without reading it. `None` if missing.
    async fn head(&self, key: &BlobKey) -> StoreResult<Option<u64>>;

    /// Removes the object; removing a missing object succeeds.
    async fn delete(&self, key: &BlobKey) -> StoreResult<()>;

    /// Objects whose key starts with `prefix`, in key order, after `start_after`,
    /// at most `limit` of them.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&BlobKey>,
        limit: usize,
    ) -> StoreResult<Vec<BlobMeta>>;

    /// Gives the space of deleted objects back to the system, where the
    /// adapter keeps it (the embedded small-object database); the sweeper
    /// calls it after deleting.
    async fn reclaim(&self) -> StoreResult<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- index

/// Largest value an index item may hold. DynamoDB allows 400 KB per item;
/// staying far below leaves room for keys and attributes and keeps reads cheap.
/// Anything bigger (a hostile message's structure) belongs in the blob store.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// DynamoDB's limits on key attributes (2048 bytes partition, 1024 sort).
pub const MAX_PK_BYTES: usize = 1024;
pub const MAX_SK_BYTES: usize = 1024;
/// DynamoDB's limit on items in one transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// An item's address: a partition key and a sort key within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    pub fn validate(&self) -> StoreResult<()> {
        // No control characters: adapters may use them to keep their own
        // key spaces apart from items (DynamoDB counters do).
        let ok = |s: &str, max| !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control);
        if ok(&self.pk, MAX_PK_BYTES) && ok(&self.sk, MAX_SK_BYTES) {
            Ok(())
        } else {
            Err(StoreError::permanent(
                "index key",
                format!("invalid key {self}"),
            ))
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.pk, self.sk)
    }
}

/// A stored item. `version` starts at 1 and grows by one on every put, so a
/// reader can write back only if nobody wrote in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: Key,
    pub value: Vec<u8>,
    pub version: u64,
}

/// A precondition on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// No precondition.
    Any,
    /// The item must not exist.
    Absent,
    /// The item must exist.
    Present,
    /// The item must exist with exactly this version.
    Version(u64),
}

impl Condition {
    /// Whether the condition holds for an item at `version` (`None`: absent).
    pub fn holds(self, version: Option<u64>) -> bool {
        match self {
            Condition::Any => true,
            Condition::Absent => version.is_none(),
            Condition::Present => version.is_some(),
            Condition::Version(want) => version == Some(want),
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        key: Key,
        value: Vec<u8>,
        condition: Condition,
    },
    Delete {
        key: Key,
        condition: Condition,
    },
    /// Writes nothing; the transaction fails unless the condition holds.
    Check {
        key: Key,
        condition: Condition,
    },
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } | Write::Check { key, .. } => key,
        }
    }

    pub fn condition(&self) -> Condition {
        match self {
            Write::Put { condition, .. }
            | Write::Delete { condition, .. }
            | Write::Check { condition, .. } => *condition,
        }
    }
}

/// Whether a transaction was applied.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// A condition did not hold; nothing was written.
    Conflict,
}

/// Which sort keys of a partition a query returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkRange {
    All,
    Prefix(String),
    /// Inclusive on both ends.
    Between(String, String),
    /// Sort keys `>=` the bound.
    From(String),
}

/// Checks the shape of a transaction the same way on every adapter.
pub fn validate_writes(writes: &[Write]) -> StoreResult<()> {
    if writes.is_empty() || writes.len() > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::permanent(
            "transact",
            format!(
                "{} writes (1 to {MAX_TRANSACTION_ITEMS} allowed)",
                writes.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for w in writes {
        w.key().validate()?;
        if !seen.insert(w.key()) {
            return Err(StoreError::permanent(
                "transact",
                format!("key {} appears twice", w.key()),
            ));
        }
        if let Write::Put { value, .. } = w
            && value.len() > MAX_VALUE_BYTES
        {
            return Err(StoreError::permanent(
                "transact",
                format!(
                    "value for {} is {} bytes (at most {MAX_VALUE_BYTES})",
                    w.key(),
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// A key-value index with conditional, transactional writes: accounts,
/// domains, mailboxes, message entries and counters all live here. Reads are
/// strongly consistent.
#[async_trait]
pub trait Index: Send + Sync + fmt::Debug {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>>;

    /// Items of partition `pk` in sort-key order (reversed if asked), at most
    /// `limit` of them.
    async fn query(
        &self,
        pk: &str,
        range: SkRange,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<Vec<Item>>;

    /// Applies every write or none. A `Conflict` means some condition failed.
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<Outcome>;

    /// Atomically adds `by` to the counter at `key` (created at 0) and returns
    /// the new value. Counters live apart from items.
    async fn increment(&self, key: &Key, by: u64) -> StoreResult<u64>;

    /// The counter's current value (0 if never incremented).
    async fn counter(&self, key: &Key) -> StoreResult<u64>;

    /// Gives the space of deleted items back to the system, where the
    /// adapter keeps it (SQLite); the sweeper calls it after deleting.
    async fn reclaim(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// Convenience calls over [`Index`].
#[async_trait]
pub trait IndexExt: Index {
    async fn put(&self, key: Key, value: Vec<u8>, condition: Condition) -> StoreResult<Outcome> {
        self.transact(vec![Write::Put {
            key,
            value,
            condition,
        }])
        .await
    }

    async fn delete(&self, key: Key, condition: Condition) -> StoreResult<Outcome> {
        self.transact(vec![Write::Delete { key, condition }]).await
    }
}

impl<T: Index + ?Sized> IndexExt for T {}

// ---------------------------------------------------------------- queue

/// The stage queues of the pipeline. Each has a dead-letter queue beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Inbound,
    Route,
    Deliver,
    Send,
    Archive,
}

impl QueueName {
    pub const ALL: [QueueName; 5] = [
        QueueName::Inbound,
        QueueName::Route,
        QueueName::Deliver,
        QueueName::Send,
        QueueName::Archive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Inbound => "inbound",
            QueueName::Route => "route",
            QueueName::Deliver => "deliver",
            QueueName::Send => "send",
            QueueName::Archive => "archive",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SQS's limits, which the embedded queue keeps too so that code tested on
/// one backend behaves the same on the other.
pub const MAX_JOB_BYTES: usize = 256 * 1024;
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
pub const MAX_RECEIVE_BATCH: usize = 10;

/// A job handed out by [`Queue::receive`]. It stays invisible to other
/// consumers until its visibility timeout ends; `ack` removes it for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Stable id of the queued job (the same on every redelivery).
    pub id: String,
    /// Opaque handle of this one receipt; a stale receipt acks nothing.
    pub receipt: String,
    pub body: Vec<u8>,
    /// How many times the job has been received, this time included.
    pub receive_count: u32,
}

/// A job to enqueue with [`Queue::send_and_ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub queue: QueueName,
    pub body: Vec<u8>,
    /// When it becomes visible, from now (at most [`MAX_DELAY`]).
    pub delay: Duration,
}

/// Approximate queue depth (exact on the embedded backend).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead: u64,
    /// How long the job that has been ready the longest has waited (zero
    /// when none is ready); `None` when the backend cannot tell: SQS,
    /// whose figure is CloudWatch's `ApproximateAgeOfOldestMessage`.
    pub oldest_ready: Option<Duration>,
}

/// Durable at-least-once queues with visibility timeouts, receive counts,
/// dead-lettering after too many receives, and delayed delivery.
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug {
    /// Enqueues `body`; it becomes visible after `delay` (at most 15 minutes).
    /// When this returns `Ok` the job is durable.
    async fn send(&self, queue: QueueName, body: &[u8], delay: Duration) -> StoreResult<()>;

    /// Up to `max` visible jobs (at most 10), each hidden for `visibility`.
    /// Waits up to `wait` for one to arrive. A job received more often than
    /// the queue's limit moves to the dead-letter queue instead.
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> StoreResult<Vec<Delivery>>;

    /// Removes a received job for good.
    async fn ack(&self, queue: QueueName, receipt: &str) -> StoreResult<()>;

    /// Enqueues the jobs that follow from a finished job, then removes the
    /// finished one: what a pipeline stage does when its handler succeeds.
    /// Here every job is checked first, then the sends come and the ack
    /// last, so a failure in between runs the finished job again (handlers
    /// are idempotent). A backend that can do both in one transaction
    /// overrides this, so that a step then happens exactly once and costs
    /// one write instead of several.
    async fn send_and_ack(
        &self,
        queue: QueueName,
        receipt: &str,
        next: Vec<NewJob>,
    ) -> StoreResult<()> {
        for job in &next {
            validate_send(&job.body, job.delay)?;
        }
        for job in &next {
            self.send(job.queue, &job.body, job.delay).await?;
        }
        self.ack(queue, receipt).await
    }

    /// Makes a received job visible again after `delay`.
    async fn retry_later(
        &self,
        queue: QueueName,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()>;

    /// Up to `max` jobs from the queue's dead-letter queue (received, and so
    /// hidden for `visibility`; ack them through [`Queue::ack_dead`]).
    async fn receive_dead(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Delivery>>;

    async fn ack_dead(&self, queue: QueueName, receipt: &str) -> StoreResult<()>;

    async fn depth(&self, queue: QueueName) -> StoreResult<Depth>;
}

/// Checks arguments the same way on every adapter.
pub fn validate_send(body: &[u8], delay: Duration) -> StoreResult<()> {
    if body.is_empty() || body.len() > MAX_JOB_BYTES {
        return Err(StoreError::permanent(
            "queue send",
            format!("job of {} bytes (1 to {MAX_JOB_BYTES} allowed)", body.len()),
        ));
    }
    // SQS accepts only these characters in a message body; refuse the rest
    // on every backend alike.
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    match std::str::from_utf8(body) {
        Ok(text) if text.chars().all(allowed) => {}
        _ => {
            return Err(StoreError::permanent(
                "queue send",
                "job is not UTF-8 text without control characters",
            ));
        }
    }
    if delay > MAX_DELAY {
        return Err(StoreError::permanent(
            "queue send",
            format!("delay {delay:?} exceeds 15 minutes"),
        ));
    }
    Ok(())
}

pub fn validate_receive(max: usize, visibility: Duration) -> StoreResult<()> {
    if max == 0 || max > MAX_RECEIVE_BATCH {
        return Err(StoreError::permanent(
            "queue receive",
            format!("batch of {max} (1 to {MAX_RECEIVE_BATCH} allowed)"),
        ));
    }
    if visibility > MAX_VISIBILITY {
        return Err(StoreError::permanent(
            "queue receive",
            "visibility timeout over 12 hours",
        ));
    }
    Ok(())
}
