//! archive: the journal copy of every accepted message, and its entry in the
//! archive index, each written once per queue id, where
//! [`stratus_core::archive`] says they live.

use stratus_core::archive::{ArchiveEntry, entry_key, journal_key};
use stratus_core::job::Accepted;
use stratus_core::message::envelope;
use stratus_core::ports::{Condition, IndexExt};

use crate::{HandlerError, HandlerResult, Ports};

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
    let journal = journal_key(&message).map_err(|e| HandlerError::Permanent(e.to_string()))?;
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
