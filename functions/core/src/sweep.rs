//! The sweeper: gives back the storage that deletion leaves behind, the
//! same way on both backends (it only uses the ports).
//!
//! One pass ([`sweep`]):
//! 1. **Deleted mailboxes** (a `trash` record, written with the deletion):
//!    their message entries, tombstones and change rows are removed, then
//!    the record.
//! 2. **Mark**: every message entry of every mailbox of every user names
//!    the bodies (and spilled metadata) still referenced.
//! 3. **Sweep** the message blobs (`msg/...`): a blob younger than the
//!    in-flight window (the send lifetime, during which queue jobs may
//!    still read it) plus the grace period is left alone. An older one that
//!    nothing references is marked with the time it was first seen so
//!    (`sweep` | `<blob key>`); one still unreferenced a grace period after
//!    its mark is deleted; a marked one referenced again is unmarked. So a
//!    body must be seen unreferenced by two passes at least a grace period
//!    apart, which covers sessions that still read an expunged message and
//!    a COPY racing the mark.
//! 4. **Dedup markers** of deliveries older than the in-flight window (no
//!    job can run again for them) are removed, and with a deleted body the
//!    send stage's marks of its recipients (`sent#<queue id>`).
//! 5. **Change history**: each pass records every mailbox's highest MODSEQ
//!    and the time (`prune` | `<mailbox id>`); once such a watermark is
//!    older than the retention, the mailbox record says so
//!    (`pruned_modseq`) and the tombstones and change rows up to it go. A
//!    client that comes back with an older MODSEQ gets a full resync (every
//!    UID it may know and the mailbox lacks is reported vanished).
//! 6. The stores give back freed space ([`crate::ports::Index::reclaim`],
//!    [`crate::ports::BlobStore::reclaim`]: SQLite's incremental vacuum on
//!    the embedded backend; nothing to do on AWS).
//!
//! Every step is idempotent: a pass killed anywhere leaves work the next
//! pass finishes, and never deletes what is still referenced.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, AccountResult, Accounts, MailboxRecord};
use crate::address::Address;
use crate::ids::QueueId;
use crate::mailstore::MessageEntry;
use crate::ports::{BlobStore, Condition, Index, IndexExt, Item, Key, SkRange, Write};

/// How many rows or blobs one request handles.
const PAGE: usize = 100;

/// How a pass decides what may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    /// How long something stays unreferenced before it is deleted.
    pub grace: Duration,
    /// How long after acceptance a queue job may still read a body (the
    /// send stage's lifetime).
    pub in_flight: Duration,
    /// How long tombstones and change rows are kept for clients that
    /// resynchronise (QRESYNC, CONDSTORE) before they are pruned.
    pub keep_changes: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Deleted mailboxes whose rows were removed.
    pub mailboxes_reclaimed: usize,
    /// Index rows removed: entries, tombstones and change rows of deleted
    /// mailboxes, and old dedup markers.
    pub rows_deleted: usize,
    /// Message entries that reference a blob.
    pub entries: usize,
    /// Message blobs looked at.
    pub blobs: usize,
    /// Blobs found unreferenced this pass, waiting out the grace period.
    pub blobs_marked: usize,
    /// Blobs deleted, and their bytes.
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    /// Quarantined messages deleted at the end of their keep.
    pub quarantine_expired: usize,
    /// Outbound queue entries removed: finished or deleted ones, and any
    /// no job can still be retrying (older than the send lifetime).
    pub queue_entries_pruned: usize,
}

fn sweep_key(blob: &str) -> Key {
    Key::new("sweep", blob)
}

/// When the blob `key` (`msg/<prefix>/<queue id>[.meta]`) was made, from
/// its queue id; `None` for a key of another shape, which is never deleted.
fn blob_time(key: &str) -> Option<i64> {
    let name = key.strip_prefix("msg/")?.split('/').nth(1)?;
    let id = name.strip_suffix(".meta").unwrap_or(name);
    QueueId::parse(id).ok().map(|id| id.unix_seconds())
}

/// Runs one pass at time `now` (Unix seconds).
pub async fn sweep(
    index: &Arc<dyn Index>,
    blobs: &Arc<dyn BlobStore>,
    settings: SweepSettings,
    now: i64,
) -> AccountResult<SweepReport> {
    let mut report = SweepReport::default();
    reclaim_deleted_mailboxes(index, &mut report).await?;
    let keep = settings.keep_changes.as_secs() as i64;
    let (referenced, accounts) = mark(index, keep, now, &mut report).await?;
    let grace = settings.grace.as_secs() as i64;
    let young = now - settings.in_flight.as_secs() as i64 - grace;
    sweep_blobs(index, blobs, &referenced, young, grace, now, &mut report).await?;
    for account in accounts {
        delete_rows_before(index, &format!("dedup#{account}"), young, &mut report).await?;
    }
    prune_outqueue(index, young, &mut report).await?;
    let quarantine = crate::quarantine::Quarantine::new(index.clone(), blobs.clone());
    report.quarantine_expired = quarantine.expire(now).await.map_err(|e| match e {
        crate::quarantine::QuarantineError::Store(s) => AccountError::Store(s),
        other => AccountError::Corrupt {
            key: "quar".into(),
            reason: other.to_string(),
        },
    })?;
    index.reclaim().await?;
    blobs.reclaim().await?;
    Ok(report)
}

/// Removes outbound queue entries that are done with ([`crate::outqueue`]):
/// finished or deleted before `young`, or of a message accepted before it
/// (no job can still be retrying that).
async fn prune_outqueue(
    index: &Arc<dyn Index>,
    young: i64,
    report: &mut SweepReport,
) -> AccountResult<()> {
    use crate::outqueue::{EntryState, QueueEntry};
    let mut stale = Vec::new();
    for item in index
        .query(crate::outqueue::PK, SkRange::All, usize::MAX, false)
        .await?
    {
        let done = match serde_json::from_slice::<QueueEntry>(&item.value) {
            Ok(e) => (e.state != EntryState::Waiting && e.updated < young) || e.received_at < young,
            // Unreadable: nothing can use it.
            Err(_) => true,
        };
        if done {
            stale.push(item);
        }
    }
    for page in stale.chunks(PAGE) {
        report.queue_entries_pruned += page.len();
        delete(index.as_ref(), page.to_vec()).await?;
    }
    Ok(())
}

/// Deletes the rows of `pk` whose sort keys are in `range`, a page at a
/// time.
async fn delete_all(
    index: &Arc<dyn Index>,
    pk: &str,
    range: SkRange,
    report: &mut SweepReport,
) -> AccountResult<()> {
    loop {
        let page = index.query(pk, range.clone(), PAGE, false).await?;
        if page.is_empty() {
            return Ok(());
        }
        report.rows_deleted += page.len();
        delete(index.as_ref(), page).await?;
    }
}

/// Deletes `items` (one page: at most what one transaction takes).
pub(crate) async fn delete(index: &dyn Index, items: Vec<Item>) -> crate::ports::StoreResult<()> {
    let writes = items
        .into_iter()
        .map(|i| Write::Delete {
            key: i.key,
            condition: Condition::Any,
        })
        .collect();
    let _ = index.transact(writes).await?;
    Ok(())
}

async fn reclaim_deleted_mailboxes(
    index: &Arc<dyn Index>,
    report: &mut SweepReport,
) -> AccountResult<()> {
    loop {
        let trash = index.query("trash", SkRange::All, PAGE, false).await?;
        if trash.is_empty() {
            return Ok(());
        }
        for item in trash {
            let id = &item.key.sk;
            for prefix in ["msg", "gone", "chg", "recent"] {
                delete_all(index, &format!("{prefix}#{id}"), SkRange::All, report).await?;
            }
            let _ = index.delete(watermark_key(id), Condition::Any).await?;
            report.mailboxes_reclaimed += 1;
            delete(index.as_ref(), vec![item]).await?;
        }
    }
}

/// The blob keys every mailbox entry references, and every account key.
async fn mark(
    index: &Arc<dyn Index>,
    keep_changes: i64,
    now: i64,
    report: &mut SweepReport,
) -> AccountResult<(HashSet<String>, Vec<String>)> {
    let accounts = Accounts::new(index.clone());
    let mut referenced = HashSet::new();
    let mut keys = Vec::new();
    for domain in accounts.list_domains().await? {
        for user in accounts.list_users(&domain.name).await? {
            keys.push(user.address.account_key());
            for mailbox in accounts.mailboxes(&user.address).await? {
                prune_changes(index, &user.address, &mailbox, keep_changes, now, report).await?;
                for item in all_rows(index, &format!("msg#{}", mailbox.id)).await? {
                    let entry: MessageEntry =
                        serde_json::from_slice(&item.value).map_err(|e| AccountError::Corrupt {
                            key: item.key.to_string(),
                            reason: e.to_string(),
                        })?;
                    report.entries += 1;
                    referenced.insert(entry.body.as_str().to_string());
                    if let Some(meta) = entry.meta_blob {
                        referenced.insert(meta.as_str().to_string());
                    }
                }
            }
        }
    }
    Ok((referenced, keys))
}

/// A mailbox's highest MODSEQ as a pass saw it, and when.
#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    modseq: u64,
    at: i64,
}

fn watermark_key(mailbox_id: &str) -> Key {
    Key::new("prune", mailbox_id)
}

/// Prunes the tombstones and change rows of `mailbox` up to the watermark
/// recorded at least `keep` seconds ago, then records a new one.
async fn prune_changes(
    index: &Arc<dyn Index>,
    account: &Address,
    mailbox: &MailboxRecord,
    keep: i64,
    now: i64,
    report: &mut SweepReport,
) -> AccountResult<()> {
    let key = watermark_key(&mailbox.id);
    let old: Option<Watermark> = index
        .get(&key)
        .await?
        .and_then(|i| serde_json::from_slice(&i.value).ok());
    if let Some(w) = &old {
        if now - w.at < keep {
            return Ok(());
        }
        if w.modseq > mailbox.pruned_modseq {
            // Readers learn that history is gone before it goes.
            if !record_pruned(index, account, mailbox, w.modseq).await? {
                return Ok(());
            }
            let upto = format!("{:020}#9999999999", w.modseq);
            for prefix in ["gone", "chg"] {
                let pk = format!("{prefix}#{}", mailbox.id);
                let range = SkRange::Between(String::new(), upto.clone());
                delete_all(index, &pk, range, report).await?;
            }
        }
    }
    let mark = Watermark {
        modseq: mailbox.highest_modseq,
        at: now,
    };
    let value = serde_json::to_vec(&mark).expect("watermarks serialise");
    let _ = index.put(key, value, Condition::Any).await?;
    Ok(())
}

/// Sets `pruned_modseq` of `mailbox` to `modseq`; false when the mailbox
/// was replaced or stayed contended (the next pass tries again).
async fn record_pruned(
    index: &Arc<dyn Index>,
    account: &Address,
    mailbox: &MailboxRecord,
    modseq: u64,
) -> AccountResult<bool> {
    let key = Key::new(
        format!("mbox#{}", account.account_key()),
        mailbox.name.as_str(),
    );
    for _ in 0..5 {
        let Some(item) = index.get(&key).await? else {
            return Ok(false);
        };
        let mut record: MailboxRecord =
            serde_json::from_slice(&item.value).map_err(|e| AccountError::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
        if record.id != mailbox.id {
            return Ok(false);
        }
        record.pruned_modseq = record.pruned_modseq.max(modseq);
        let put = Write::Put {
            key: key.clone(),
            value: serde_json::to_vec(&record).expect("records serialise"),
            condition: Condition::Version(item.version),
        };
        if index.transact(vec![put]).await? == crate::ports::Outcome::Applied {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn sweep_blobs(
    index: &Arc<dyn Index>,
    blobs: &Arc<dyn BlobStore>,
    referenced: &HashSet<String>,
    young: i64,
    grace: i64,
    now: i64,
    report: &mut SweepReport,
) -> AccountResult<()> {
    // The marks, read once: only blobs found unreferenced have one.
    let mut marks: HashMap<String, i64> = HashMap::new();
    for item in all_rows(index, "sweep").await? {
        let first = String::from_utf8_lossy(&item.value)
            .parse::<i64>()
            .unwrap_or(now);
        marks.insert(item.key.sk, first);
    }
    let mut after = None;
    loop {
        let page = blobs.list("msg/", after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.key.clone());
        for blob in page {
            report.blobs += 1;
            let key = blob.key.as_str();
            let marked = marks.remove(key);
            if referenced.contains(key) {
                // Referenced again: the mark goes.
                if marked.is_some() {
                    let _ = index.delete(sweep_key(key), Condition::Any).await?;
                }
                continue;
            }
            match blob_time(key) {
                Some(made) if made < young => {}
                // In flight, or not a message blob.
                _ => continue,
            }
            match marked {
                None => {
                    // `Any` always applies.
                    let _ = index
                        .put(sweep_key(key), now.to_string().into_bytes(), Condition::Any)
                        .await?;
                    report.blobs_marked += 1;
                }
                Some(first) if now - first >= grace => {
                    blobs.delete(&blob.key).await?;
                    // The send stage's per-recipient marks of the message
                    // (`sent#<queue id>`) are of no use once its body is.
                    if let Some(id) = key.rsplit('/').next().filter(|n| !n.ends_with(".meta")) {
                        delete_all(index, &format!("sent#{id}"), SkRange::All, report).await?;
                    }
                    let _ = index.delete(sweep_key(key), Condition::Any).await?;
                    report.blobs_deleted += 1;
                    report.bytes_freed += blob.size;
                }
                Some(_) => {}
            }
        }
    }
    // Marks of blobs that are gone (deleted by a pass killed before it
    // removed the mark).
    for key in marks.into_keys() {
        let _ = index.delete(sweep_key(&key), Condition::Any).await?;
    }
    Ok(())
}

/// Every row of partition `pk`, read in pages.
async fn all_rows(index: &Arc<dyn Index>, pk: &str) -> AccountResult<Vec<Item>> {
    let mut out: Vec<Item> = Vec::new();
    loop {
        let range = match out.last() {
            // The next page starts just past the last sort key read.
            Some(last) => SkRange::From(format!("{}\u{0}", last.key.sk)),
            None => SkRange::All,
        };
        let page = index.query(pk, range, PAGE, false).await?;
        let full = page.len() == PAGE;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Removes the rows of `pk` whose sort key is a queue id made before
/// `before` (Unix seconds).
async fn delete_rows_before(
    index: &Arc<dyn Index>,
    pk: &str,
    before: i64,
    report: &mut SweepReport,
) -> AccountResult<()> {
    loop {
        let page = index.query(pk, SkRange::All, PAGE, false).await?;
        // Queue ids sort by time: the old ones come first. A delivery
        // marker's sort key may go on after the queue id (`/<mailbox>`).
        let old: Vec<Item> = page
            .into_iter()
            .take_while(|i| {
                let id = i.key.sk.split('/').next().unwrap_or_default();
                QueueId::parse(id).is_ok_and(|id| id.unix_seconds() < before)
            })
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let full = old.len() == PAGE;
        report.rows_deleted += old.len();
        delete(index.as_ref(), old).await?;
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_times_come_from_their_queue_ids() {
        let id = QueueId::generate();
        let body = crate::ids::BlobKey::for_message(&id);
        assert_eq!(blob_time(body.as_str()), Some(id.unix_seconds()));
        assert_eq!(
            blob_time(&format!("{}.meta", body.as_str())),
            Some(id.unix_seconds())
        );
        for other in [
            "journal/2025/07/01/x",
            "msg/01M8H1",
            "msg/01M8H1/not-an-id",
            "msg/a/b/c",
        ] {
            assert_eq!(blob_time(other), None, "{other}");
        }
    }
}
