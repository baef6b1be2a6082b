//! archive: the journal copy of every accepted message, and its entry in the
//! archive index, each written once per queue id.
//!
//! Journal objects live at `journal/<yyyy>/<mm>/<dd>/<queue id>` in the
//! archive store (Object Lock on AWS, so a copy cannot be altered once
//! written); index entries at `archive#<yyyy-mm>` | `<received at>#<queue id>`.

use serde::{Deserialize, Serialize};
use stratus_core::job::{Accepted, Origin};
use stratus_core::message::envelope;
use stratus_core::ports::{Condition, IndexExt, Key};
use stratus_core::{Address, BlobKey, QueueId};

use crate::{HandlerError, HandlerResult, Ports};

/// One archived message, as compliance searches see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEntry {
    pub queue_id: QueueId,
    pub received_at: i64,
    pub origin: Origin,
    pub mail_from: Option<Address>,
    pub recipients: Vec<Address>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: u64,
    pub blob: BlobKey,
}

/// Civil date (year, month, day) of a Unix time, in UTC.
pub fn civil_date(unix: i64) -> (i64, u32, u32) {
    stratus_core::time::civil_from_day(unix.div_euclid(86_400))
}

pub fn journal_key(message: &Accepted) -> Result<BlobKey, HandlerError> {
    let (y, m, d) = civil_date(message.received_at);
    BlobKey::parse(&format!(
        "journal/{y:04}/{m:02}/{d:02}/{}",
        message.queue_id
    ))
    .map_err(|e| HandlerError::Permanent(e.to_string()))
}

pub fn entry_key(message: &Accepted) -> Key {
    let (y, m, _) = civil_date(message.received_at);
    Key::new(
        format!("archive#{y:04}-{m:02}"),
        format!("{:012}#{}", message.received_at, message.queue_id),
    )
}

pub async fn handle(message: Accepted, ports: &Ports) -> HandlerResult {
    let key = entry_key(&message);
    if ports.index.get(&key).await?.is_some() {
        return Ok(Vec::new());
    }
    let body = ports
        .blobs
        .get(&message.body, None)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("body {} not found", message.body)))?;
    let journal = journal_key(&message)?;
    // Under Object Lock a second put would add a version: write only once.
    if ports.archive.head(&journal).await?.is_none() {
        ports.archive.put(&journal, body.clone()).await?;
    }
    // The journal entry needs the header only.
    let envelope = envelope(&body);
    let from = envelope.from.first().map(|a| match (&a.mailbox, &a.host) {
        (Some(m), Some(h)) => format!("{m}@{h}"),
        (Some(m), None) => m.clone(),
        _ => a.name.clone().unwrap_or_default(),
    });
    let entry = ArchiveEntry {
        queue_id: message.queue_id.clone(),
        received_at: message.received_at,
        origin: message.origin,
        mail_from: message.envelope.mail_from.clone(),
        recipients: message
            .envelope
            .recipients
            .iter()
            .map(|r| r.address.clone())
            .collect(),
        from,
        subject: envelope.subject,
        message_id: envelope.message_id,
        size: body.len() as u64,
        blob: journal,
    };
    let value = serde_json::to_vec(&entry).map_err(|e| HandlerError::Permanent(e.to_string()))?;
    // Absent: a second run finds the entry and writes nothing.
    let _ = ports.index.put(key, value, Condition::Absent).await?;
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::civil_date;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_751_356_800), (2025, 7, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }
}
