//! The quarantine: messages the filter held back (a blocked attachment, a
//! symbol the rules file sends to quarantine) for the recipients it held
//! them for, with the verdict, until an operator releases or deletes them
//! or they expire.
//!
//! Layout: the row `quar` | `<queue id>` holds a [`Held`] record; the
//! body is copied to the blob `quarantine/<queue id>`, outside the message
//! bodies the sweeper collects. A release puts the body back where the
//! message's jobs read it and queues one delivery per recipient to their
//! INBOX, unchanged, with the verdict fields it had; deliveries are
//! idempotent by queue id, so a release delivers once. The sweeper deletes
//! expired entries ([`expire`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::ids::{BlobKey, QueueId};
use crate::job::{Accepted, Job, Recipient};
use crate::mailbox::MailboxName;
use crate::ports::{
    BlobStore, Condition, Index, IndexExt, Item, Key, Outcome, SkRange, StoreError,
};

const PK: &str = "quar";

/// A held message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// The message as accepted (its header lines added by the stages
    /// included, the per-recipient verdicts removed).
    pub message: Accepted,
    /// The local users it was held for, and the header lines (verdict
    /// fields) each would have had.
    pub recipients: Vec<HeldFor>,
    /// Addresses elsewhere it would have been forwarded to (through an
    /// alias of a recipient it was held for): held too, not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<Recipient>,
    /// Unix seconds.
    pub held_at: i64,
    pub expires: i64,
    /// Set once released (the entry stays until it expires, as a record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldFor {
    pub recipient: Address,
    pub headers: String,
}

impl Held {
    /// The symbols of the verdict that held it (from the first
    /// recipient's `X-Spam-Status`).
    pub fn reasons(&self) -> String {
        let status = self
            .recipients
            .first()
            .map(|r| r.headers.replace("\r\n\t", " "))
            .unwrap_or_default();
        status
            .split("tests=")
            .nth(1)
            .and_then(|t| t.split("\r\n").next())
            .unwrap_or("")
            .to_string()
    }
}

fn key(id: &QueueId) -> Key {
    Key::new(PK, id.as_str())
}

/// Where the held copy of a body lives.
pub fn body_key(id: &QueueId) -> BlobKey {
    BlobKey::parse(&format!("quarantine/{}", id.as_str())).expect("a queue id makes a key")
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("no message {0} in quarantine")]
    Unknown(String),
    #[error("message {0} was released already")]
    Released(String),
    #[error("the held copy of message {0} is missing")]
    BodyMissing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The quarantine over the index and blob ports.
#[derive(Debug, Clone)]
pub struct Quarantine {
    index: Arc<dyn Index>,
    blobs: Arc<dyn BlobStore>,
}

impl Quarantine {
    pub fn new(index: Arc<dyn Index>, blobs: Arc<dyn BlobStore>) -> Self {
        Quarantine { index, blobs }
    }

    /// Holds `message` for `recipients` (idempotent: holding the same
    /// message again adds the recipients not held yet).
    pub async fn hold(
        &self,
        message: &Accepted,
        recipients: Vec<HeldFor>,
        forwards: Vec<Recipient>,
        now: i64,
        keep_days: u32,
    ) -> Result<(), QuarantineError> {
        let body = self
            .blobs
            .get(&message.body, None)
            .await?
            .ok_or_else(|| QuarantineError::BodyMissing(message.queue_id.to_string()))?;
        self.blobs.put(&body_key(&message.queue_id), body).await?;
        loop {
            let existing = self.index.get(&key(&message.queue_id)).await?;
            let (mut held, condition) = match &existing {
                Some(item) => (decode(item)?, Condition::Version(item.version)),
                None => (
                    Held {
                        message: Accepted {
                            filings: Vec::new(),
                            ..message.clone()
                        },
                        recipients: Vec::new(),
                        forwards: Vec::new(),
                        held_at: now,
                        expires: now + i64::from(keep_days) * 86_400,
                        released_at: None,
                    },
                    Condition::Absent,
                ),
            };
            for r in &recipients {
                if !held.recipients.iter().any(|h| h.recipient == r.recipient) {
                    held.recipients.push(r.clone());
                }
            }
            for f in &forwards {
                if !held.forwards.iter().any(|h| h.address == f.address) {
                    held.forwards.push(f.clone());
                }
            }
            let value = serde_json::to_vec(&held).expect("serialises");
            if self
                .index
                .put(key(&message.queue_id), value, condition)
                .await?
                == Outcome::Applied
            {
                return Ok(());
            }
        }
    }

    /// Every held message, oldest queue id first.
    pub async fn list(&self) -> Result<Vec<Held>, QuarantineError> {
        let items = self
            .index
            .query(PK, SkRange::All, usize::MAX, false)
            .await?;
        items.iter().map(decode).collect()
    }

    pub async fn get(&self, id: &QueueId) -> Result<Held, QuarantineError> {
        match self.index.get(&key(id)).await? {
            Some(item) => decode(&item),
            None => Err(QuarantineError::Unknown(id.to_string())),
        }
    }

    /// The held message as it would be delivered to its first recipient.
    pub async fn body(&self, id: &QueueId) -> Result<bytes::Bytes, QuarantineError> {
        self.blobs
            .get(&body_key(id), None)
            .await?
            .ok_or_else(|| QuarantineError::BodyMissing(id.to_string()))
    }

    /// The jobs that deliver a held message to the INBOX of each of its
    /// recipients, unchanged; the body is put back where they read it.
    /// The caller queues them, then calls [`Quarantine::mark_released`]:
    /// a release whose jobs could not be queued can be tried again, and
    /// deliveries are idempotent by queue id, so a message is delivered
    /// once whatever happens in between.
    pub async fn release(&self, id: &QueueId) -> Result<Vec<Job>, QuarantineError> {
        let held = self.get(id).await?;
        if held.released_at.is_some() {
            return Err(QuarantineError::Released(id.to_string()));
        }
        let body = self.body(id).await?;
        self.blobs.put(&held.message.body, body).await?;
        let mut jobs: Vec<Job> = held
            .recipients
            .iter()
            .map(|r| {
                let mut message = held.message.clone();
                message.headers.push_str(&r.headers);
                Job::Deliver {
                    message,
                    recipient: r.recipient.clone(),
                    mailbox: MailboxName::inbox(),
                    attempt: 0,
                    not_before: 0,
                    filed: Default::default(),
                }
            })
            .collect();
        // Forwards go out as route would have sent them.
        for recipients in crate::job::send_groups(held.forwards.iter().cloned()) {
            jobs.push(Job::Send {
                message: held.message.clone(),
                recipients,
                attempt: 0,
                not_before: 0,
                generation: None,
                give_up: false,
            });
        }
        Ok(jobs)
    }

    /// Records that the message was released (its jobs are queued).
    pub async fn mark_released(&self, id: &QueueId, now: i64) -> Result<(), QuarantineError> {
        loop {
            let item = self
                .index
                .get(&key(id))
                .await?
                .ok_or_else(|| QuarantineError::Unknown(id.to_string()))?;
            let mut held = decode(&item)?;
            if held.released_at.is_some() {
                return Ok(());
            }
            held.released_at = Some(now);
            let value = serde_json::to_vec(&held).expect("serialises");
            let put = self
                .index
                .put(key(id), value, Condition::Version(item.version));
            if put.await? == Outcome::Applied {
                return Ok(());
            }
        }
    }

    /// Deletes a held message and its copy.
    pub async fn delete(&self, id: &QueueId) -> Result<(), QuarantineError> {
        if self.index.delete(key(id), Condition::Present).await? != Outcome::Applied {
            return Err(QuarantineError::Unknown(id.to_string()));
        }
        self.blobs.delete(&body_key(id)).await?;
        Ok(())
    }

    /// Deletes the entries that expired by `now`; how many.
    pub async fn expire(&self, now: i64) -> Result<usize, QuarantineError> {
        let mut gone = 0;
        for held in self.list().await? {
            if held.expires <= now {
                match self.delete(&held.message.queue_id).await {
                    Ok(()) | Err(QuarantineError::Unknown(_)) => gone += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(gone)
    }
}

fn decode(item: &Item) -> Result<Held, QuarantineError> {
    serde_json::from_slice(&item.value).map_err(|e| {
        QuarantineError::Store(StoreError::permanent(
            "quarantine entry",
            format!("{} is unreadable: {e}", item.key),
        ))
    })
}
