//! The outbound queue as an administrator sees it: one entry per message
//! and destination (a send job's recipients) that is waiting for another
//! attempt after a temporary failure, written by the send stage in the
//! same breath as the retry job, so that it can be listed, retried now,
//! deleted or bounced (`stratus queue`, `/api/v1/queue`) on both
//! backends, though the jobs themselves sit in a queue nobody can list.
//!
//! Entries are `outq` | `<entry id>`. Each has a **generation**; every
//! retry job carries the generation it belongs to, and a job whose
//! generation is no longer the entry's does nothing: a retry-now or a
//! bounce makes a new generation (and a new job) and the old job, when it
//! comes due, finds itself superseded; a deletion marks the entry deleted
//! and the job drops. A job that ran, wrote the next generation and was
//! killed before its retry job (and DSNs) were queued finds its own
//! transition (`made_by`) when it runs again, and queues them instead of
//! trying again.
//!
//! A job claims its entry before it tries (`lease_until`, a conditional
//! write): of two copies of one job running at once, one goes on; and an
//! administrator cannot take over a message while an attempt is under
//! way, so a retry-now never races an attempt into a second delivery.
//!
//! Finished and deleted entries stay as markers until the sweeper removes
//! them, a send lifetime later (a job cannot outlive that).

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::ids::QueueId;
use crate::job::Job;
use crate::ports::{Condition, Index, Key, SkRange, StoreResult, Write};

pub const PK: &str = "outq";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A retry is due at `next_attempt`.
    Waiting,
    /// Every recipient was delivered or bounced.
    Finished,
    /// An administrator removed it: no more attempts, no DSN.
    Deleted,
}

/// One message's recipients at one destination, waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub state: EntryState,
    pub generation: u64,
    /// The generation whose job wrote this one (`None`: an
    /// administrator's retry or bounce).
    pub made_by: Option<u64>,
    pub queue_id: QueueId,
    /// The destination domain.
    pub domain: String,
    /// The envelope sender (`None`: the null sender, a DSN of ours).
    pub sender: Option<Address>,
    /// The local address that forwarded it, for a forward.
    pub forwarded_by: Option<Address>,
    pub recipients: Vec<Address>,
    /// The attempt that comes next (0 was the first).
    pub attempt: u32,
    /// Unix seconds.
    pub next_attempt: i64,
    /// What the last attempt was told.
    pub last_error: String,
    /// When the message was accepted (Unix seconds).
    pub received_at: i64,
    /// When this entry last changed (Unix seconds).
    pub updated: i64,
    /// The job that makes the next attempt.
    pub job: Job,
    /// The DSNs the attempt that wrote this entry sent, queued again with
    /// the job when that attempt is cut off before they were queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Job>,
    /// An attempt of this generation is under way until then (Unix
    /// seconds; 0: none has started).
    #[serde(default)]
    pub lease_until: i64,
}

/// How long an attempt holds its entry: longer than any attempt (every
/// MX host's connect timeout and a 10-minute DATA).
pub const LEASE_SECS: i64 = 1800;

impl QueueEntry {
    /// The domain whose administrators see it: the forwarder's for a
    /// forward, else the sender's; none for the null sender.
    pub fn owner_domain(&self) -> Option<&crate::Domain> {
        self.forwarded_by
            .as_ref()
            .or(self.sender.as_ref())
            .map(Address::domain)
    }
}

/// The id of the entry for `queue_id`'s recipients at `domain` (forwarded
/// by `forwarder`, if so): the queue id and 8 hex digits of the rest.
pub fn entry_id(queue_id: &QueueId, domain: &str, forwarder: Option<&Address>) -> String {
    let rest = format!(
        "{}|{}",
        domain.to_ascii_lowercase(),
        forwarder.map(Address::account_key).unwrap_or_default()
    );
    let hex = crate::ids::sha256_hex(rest.as_bytes());
    format!("{queue_id}-{}", &hex[..8])
}

/// `id` as entry ids are written (queue id in capitals, hex in small
/// letters), when it has the shape of one; anything else names none.
pub fn parse_id(id: &str) -> Option<String> {
    let (q, h) = id.split_once('-')?;
    let q = QueueId::parse(q).ok()?;
    (h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{q}-{}", h.to_ascii_lowercase()))
}

pub fn key(id: &str) -> Key {
    Key::new(PK, id)
}

/// The entry `id` and its version.
pub async fn get(index: &dyn Index, id: &str) -> StoreResult<Option<(QueueEntry, u64)>> {
    Ok(index
        .get(&key(id))
        .await?
        .and_then(|item| Some((serde_json::from_slice(&item.value).ok()?, item.version))))
}

/// Every entry (unreadable ones skipped), in id order: the queue ids sort
/// by acceptance time.
pub async fn all(index: &dyn Index) -> StoreResult<Vec<QueueEntry>> {
    Ok(index
        .query(PK, SkRange::All, usize::MAX, false)
        .await?
        .iter()
        .filter_map(|item| serde_json::from_slice(&item.value).ok())
        .collect())
}

/// The write that stores `entry` under `condition`.
pub fn put(entry: &QueueEntry, condition: Condition) -> Write {
    Write::Put {
        key: key(&entry.id),
        value: serde_json::to_vec(entry).expect("queue entries serialise"),
        condition,
    }
}

/// The condition that `entry` is still what was read: `version` of it,
/// or absent when there was none.
pub fn unchanged(version: Option<u64>) -> Condition {
    version.map_or(Condition::Absent, Condition::Version)
}
