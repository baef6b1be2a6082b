//! Message entries in mailboxes, over the index port.
//!
//! Item layout (partition key | sort key):
//! - `msg#<mailbox id>` | `uid#<uid, 10 digits>`: a [`MessageEntry`].
//! - `dedup#<account key>` | `<queue id>` (INBOX) or `<queue id>/<mailbox>`:
//!   marks a delivery done, so a job delivered twice files one entry
//!   (invariant 2).
//! - `gone#<mailbox id>` | `<modseq, 20 digits>#<uid, 10 digits>`: a
//!   tombstone of an expunged message, carrying its MODSEQ, for QRESYNC's
//!   VANISHED and for sessions that must report the expunge.
//! - `lease#<name>` | `lease`: a lease one session holds (the POP3 maildrop
//!   lock), see [`Leases`].
//!
//! Every change committed is told to the [`ChangeFeed`] the store was
//! built with, so that sessions waiting on the mailbox hear of it.
//!
//! Appending commits the entry, its UID and MODSEQ, the mailbox counters and
//! the dedup marker in one transaction: a compare-and-set on the mailbox
//! record plus `Absent` puts. Readers take the mailbox record first and read
//! entries only below its UIDNEXT, so no reader ever sees UID n+1 without n.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, AccountResult, MailboxRecord};
use crate::address::Address;
use crate::ids::{BlobKey, QueueId};
use crate::mailbox::MailboxName;
use crate::message::MessageMeta;
use crate::ports::changes::{Change, ChangeFeed};
use crate::ports::{
    BlobStore, Condition, Index, Item, Key, MAX_VALUE_BYTES, Outcome, SkRange, StoreError,
    StoreResult, Write,
};

/// Metadata larger than this goes to the blob store beside the body, so an
/// index item stays far below DynamoDB's 400 KB whatever the message is.
pub const META_INLINE_MAX: usize = 32 * 1024;
/// How often an append retries after losing a race for the mailbox record.
const APPEND_TRIES: usize = 200;

/// A message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEntry {
    pub uid: u32,
    pub modseq: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Unix seconds and the zone offset in minutes, as IMAP INTERNALDATE
    /// keeps them.
    pub internal_date: i64,
    #[serde(default)]
    pub internal_tz: i32,
    /// RFC822.SIZE: `prefix` plus the body.
    pub size: u64,
    /// Header lines Stratus adds for this recipient (Return-Path,
    /// Delivered-To, Authentication-Results), virtually in front of `body`,
    /// which is shared by every recipient.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    pub body: BlobKey,
    /// Envelope and structure (offsets relative to `body`); `None` when it
    /// was too large and lives in the blob `meta_blob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<MessageMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_blob: Option<BlobKey>,
    pub queue_id: QueueId,
}

/// What [`Mailstore::update_flags`] did: per message its UID, flags and
/// MODSEQ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagUpdate {
    pub changed: Vec<(u32, Vec<String>, u64)>,
    /// Messages whose flags were already as asked.
    pub unchanged: Vec<(u32, Vec<String>, u64)>,
    /// Messages left alone because their MODSEQ was above UNCHANGEDSINCE.
    pub modified: Vec<u32>,
}

fn change_key(mailbox_id: &str, modseq: u64, uid: u32) -> Key {
    Key::new(
        format!("chg#{mailbox_id}"),
        format!("{modseq:020}#{uid:010}"),
    )
}

fn has_seen(flags: &[String]) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen"))
}

/// Flags in a canonical form: system flags capitalised as RFC 9051 writes
/// them, duplicates (ignoring case) dropped, order kept.
pub fn normalize_flags(flags: Vec<String>) -> Vec<String> {
    const SYSTEM: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];
    let mut out: Vec<String> = Vec::with_capacity(flags.len());
    for flag in flags {
        let flag = SYSTEM
            .iter()
            .find(|s| s.eq_ignore_ascii_case(&flag))
            .map_or(flag, |s| s.to_string());
        if !out.iter().any(|f| f.eq_ignore_ascii_case(&flag)) {
            out.push(flag);
        }
    }
    out
}

/// A short wait after losing a race for a mailbox record, growing with
/// the attempt, with jitter so racing writers spread out.
async fn backoff(attempt: usize) {
    let mut jitter = [0u8; 1];
    crate::ids::fill_random(&mut jitter);
    let wait = (attempt as u64).min(20) * 2 + u64::from(jitter[0] % 8);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New {
        uid: u32,
        modseq: u64,
        /// The mailbox's UIDVALIDITY, for APPENDUID and COPYUID.
        uidvalidity: u32,
    },
    /// This queue id was already delivered to this account.
    Duplicate,
}

/// Messages filed in one transaction by [`Mailstore::append_all`]: each
/// takes two writes (entry and delivery marker), the mailbox record one.
pub const APPEND_BATCH: usize = (crate::ports::MAX_TRANSACTION_ITEMS - 1) / 2;

pub fn entry_key(mailbox_id: &str, uid: u32) -> Key {
    Key::new(format!("msg#{mailbox_id}"), format!("uid#{uid:010}"))
}

/// A delivery's marker: the queue id for INBOX, the queue id and the
/// mailbox for any other (a Sieve script may file one message into
/// several mailboxes, each once).
fn dedup_key(account: &Address, queue_id: &QueueId, mailbox: &MailboxName) -> Key {
    let sk = if *mailbox == MailboxName::inbox() {
        queue_id.to_string()
    } else {
        format!("{queue_id}/{mailbox}")
    };
    Key::new(format!("dedup#{}", account.account_key()), sk)
}

fn recent_key(mailbox_id: &str) -> Key {
    Key::new(format!("recent#{mailbox_id}"), "first")
}

fn mailbox_key(account: &Address, name: &MailboxName) -> Key {
    Key::new(format!("mbox#{}", account.account_key()), name.as_str())
}

fn corrupt(key: &Key, e: impl std::fmt::Display) -> AccountError {
    AccountError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub queue_id: QueueId,
    pub body: BlobKey,
    pub body_size: u64,
    pub prefix: String,
    pub meta: MessageMeta,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub internal_tz: i32,
}

#[derive(Debug, Clone)]
pub struct Mailstore {
    index: Arc<dyn Index>,
    blobs: Arc<dyn BlobStore>,
    /// Told of every change this store commits, so that what waits on the
    /// mailbox (IMAP IDLE) hears of it at once.
    changes: Arc<dyn ChangeFeed>,
}

impl Mailstore {
    pub fn new(
        index: Arc<dyn Index>,
        blobs: Arc<dyn BlobStore>,
        changes: Arc<dyn ChangeFeed>,
    ) -> Self {
        Mailstore {
            index,
            blobs,
            changes,
        }
    }

    pub async fn mailbox(
        &self,
        account: &Address,
        name: &MailboxName,
    ) -> AccountResult<Option<(MailboxRecord, u64)>> {
        let key = mailbox_key(account, name);
        match self.index.get(&key).await? {
            Some(item) => Ok(Some((
                serde_json::from_slice(&item.value).map_err(|e| corrupt(&key, e))?,
                item.version,
            ))),
            None => Ok(None),
        }
    }

    /// Files a message into `account`'s mailbox `name`, once per queue id:
    /// the transaction also writes a marker for the queue id, which fails
    /// it when the message was filed before (found out then, not read
    /// ahead: a second delivery is rare).
    pub async fn append(
        &self,
        account: &Address,
        name: &MailboxName,
        message: NewMessage,
    ) -> AccountResult<Appended> {
        let mut batch = vec![self.prepare(account, name, message).await?];
        match self.commit(account, name, &mut batch).await? {
            Some(uidvalidity) => Ok(Appended::New {
                uid: batch[0].0.uid,
                modseq: batch[0].0.modseq,
                uidvalidity,
            }),
            None => Ok(Appended::Duplicate),
        }
    }

    /// Files several messages into mailbox `name` all or none (IMAP
    /// MULTIAPPEND, RFC 3502): one transaction per [`APPEND_BATCH`]
    /// messages; if a later one fails, those already filed are expunged
    /// again before the error is returned. The new UIDs in order, and the
    /// mailbox's UIDVALIDITY.
    pub async fn append_all(
        &self,
        account: &Address,
        name: &MailboxName,
        messages: Vec<NewMessage>,
    ) -> AccountResult<(u32, Vec<u32>)> {
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            prepared.push(self.prepare(account, name, m).await?);
        }
        let mut uids = Vec::with_capacity(prepared.len());
        let mut uidvalidity = 0;
        for chunk in prepared.chunks_mut(APPEND_BATCH) {
            let committed = match self.commit(account, name, chunk).await {
                Ok(Some(v)) => Ok(v),
                Ok(None) => {
                    Err(StoreError::permanent("append", "fresh queue id seen twice").into())
                }
                Err(e) => Err(e),
            };
            match committed {
                Ok(v) => {
                    uidvalidity = v;
                    uids.extend(chunk.iter().map(|(e, _)| e.uid));
                }
                Err(e) => {
                    if !uids.is_empty() {
                        self.expunge(account, name, &uids, None).await?;
                    }
                    return Err(e);
                }
            }
        }
        Ok((uidvalidity, uids))
    }

    /// An entry for `message`, its metadata in a blob of its own when too
    /// large to go inline, and the key of its delivery marker.
    async fn prepare(
        &self,
        account: &Address,
        mailbox: &MailboxName,
        message: NewMessage,
    ) -> AccountResult<(MessageEntry, Key)> {
        let dedup = dedup_key(account, &message.queue_id, mailbox);
        let mut entry = MessageEntry {
            uid: 0,
            modseq: 0,
            flags: message.flags,
            internal_date: message.internal_date,
            internal_tz: message.internal_tz,
            size: message.prefix.len() as u64 + message.body_size,
            prefix: message.prefix,
            body: message.body.clone(),
            meta: Some(message.meta),
            meta_blob: None,
            queue_id: message.queue_id.clone(),
        };
        let meta_json = serde_json::to_vec(&entry.meta)
            .map_err(|e| StoreError::permanent("encode metadata", e))?;
        if meta_json.len() > META_INLINE_MAX {
            let key = BlobKey::parse(&format!("{}.meta", message.body))
                .map_err(|e| StoreError::permanent("metadata blob", e))?;
            self.blobs.put(&key, meta_json.into()).await?;
            entry.meta = None;
            entry.meta_blob = Some(key);
        }
        Ok((entry, dedup))
    }

    /// Files prepared entries into mailbox `name` in one transaction,
    /// giving each its UID and MODSEQ; the mailbox's UIDVALIDITY, or
    /// `None` when a delivery marker shows one was filed before.
    async fn commit(
        &self,
        account: &Address,
        name: &MailboxName,
        batch: &mut [(MessageEntry, Key)],
    ) -> AccountResult<Option<u32>> {
        let mbox_key = mailbox_key(account, name);
        for attempt in 0..APPEND_TRIES {
            let Some((mut mailbox, version)) = self.mailbox(account, name).await? else {
                return Err(AccountError::UnknownMailbox(name.clone()));
            };
            let mut writes = Vec::with_capacity(1 + 2 * batch.len());
            for (entry, dedup) in batch.iter_mut() {
                mailbox.add_keywords(&entry.flags)?;
                entry.uid = mailbox.uidnext;
                entry.modseq = mailbox.highest_modseq + 1;
                mailbox.uidnext += 1;
                mailbox.highest_modseq += 1;
                mailbox.messages += 1;
                mailbox.unseen += u32::from(!has_seen(&entry.flags));
                mailbox.size += entry.size;
                let entry_json = serde_json::to_vec(&*entry)
                    .map_err(|e| StoreError::permanent("encode entry", e))?;
                if entry_json.len() > MAX_VALUE_BYTES {
                    return Err(StoreError::permanent(
                        "append",
                        format!("entry of {} bytes", entry_json.len()),
                    )
                    .into());
                }
                writes.push(Write::Put {
                    key: entry_key(&mailbox.id, entry.uid),
                    value: entry_json,
                    condition: Condition::Absent,
                });
                writes.push(Write::Put {
                    key: dedup.clone(),
                    value: format!("{}:{}", mailbox.id, entry.uid).into_bytes(),
                    condition: Condition::Absent,
                });
            }
            writes.push(Write::Put {
                key: mbox_key.clone(),
                value: serde_json::to_vec(&mailbox)
                    .map_err(|e| StoreError::permanent("encode mailbox", e))?,
                condition: Condition::Version(version),
            });
            match self.index.transact(writes).await? {
                Outcome::Applied => {
                    self.changes.committed(
                        &mailbox.id,
                        batch
                            .iter()
                            .map(|(entry, _)| Change::Appended {
                                uid: entry.uid,
                                modseq: entry.modseq,
                                flags: entry.flags.clone(),
                            })
                            .collect(),
                    );
                    return Ok(Some(mailbox.uidvalidity));
                }
                Outcome::Conflict => {
                    for (_, dedup) in batch.iter() {
                        if self.index.get(dedup).await?.is_some() {
                            return Ok(None);
                        }
                    }
                    // Another writer took these UIDs: back off and retry.
                    backoff(attempt).await;
                }
            }
        }
        Err(StoreError::retryable(
            "append",
            format!("mailbox {name} of {account} stayed contended"),
        )
        .into())
    }

    /// Sets the keywords mailbox `name` keeps for its limit to `keywords`,
    /// those its messages use as a SELECT found them in the record of
    /// version `version`: only if the record is still that version (the
    /// next SELECT tries again otherwise).
    pub async fn settle_keywords(
        &self,
        account: &Address,
        name: &MailboxName,
        mut record: MailboxRecord,
        version: u64,
        keywords: Vec<String>,
    ) -> AccountResult<()> {
        record.keywords = Some(keywords);
        let put = Write::Put {
            key: mailbox_key(account, name),
            value: serde_json::to_vec(&record)
                .map_err(|e| StoreError::permanent("encode mailbox", e))?,
            condition: Condition::Version(version),
        };
        // Applied, or the record moved on: either is fine.
        let _ = self.index.transact(vec![put]).await?;
        Ok(())
    }

    /// The first UID of mailbox `record` that no session has claimed as
    /// `\Recent`, and the version of its claim row (none yet: `None`).
    pub async fn first_unclaimed(
        &self,
        record: &MailboxRecord,
    ) -> AccountResult<(u32, Option<u64>)> {
        self.claim_row(&record.id, Some(record.first_recent()))
            .await
    }

    /// The claim row of mailbox `id`: `initial` (none known: nothing is
    /// unclaimed) when there is none yet.
    async fn claim_row(&self, id: &str, initial: Option<u32>) -> AccountResult<(u32, Option<u64>)> {
        match self.index.get(&recent_key(id)).await? {
            Some(item) => {
                let first = std::str::from_utf8(&item.value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| corrupt(&item.key, "not a UID"))?;
                Ok((first, Some(item.version)))
            }
            None => Ok((initial.unwrap_or(u32::MAX), None)),
        }
    }

    /// Claims the `\Recent` messages of mailbox `record` below `up_to`
    /// for the calling session (RFC 3501 §2.3.2: a message is recent in
    /// the one session first told of it): the UIDs it gets, none when
    /// another session was first. The claim is a row of its own, so it
    /// never contends with appends to the mailbox: one read, and one
    /// conditional write when there is something to claim. If the row
    /// stays contended, the session simply gets none.
    ///
    /// `known` is the claim row as the caller last saw it (first unclaimed
    /// UID and version): the write is tried with it before anything is
    /// read. Returns the claimed UIDs and the row as it now is, for the
    /// next call.
    pub async fn claim_recent(
        &self,
        record: &MailboxRecord,
        up_to: u32,
        known: Option<(u32, Option<u64>)>,
    ) -> AccountResult<(std::ops::Range<u32>, Option<(u32, Option<u64>)>)> {
        self.claim(&record.id, Some(record.first_recent()), up_to, known)
            .await
    }

    /// [`Mailstore::claim_recent`] for mailbox `id` when its claim row was
    /// seen (`known`), so its record need not be read.
    pub async fn claim_recent_known(
        &self,
        id: &str,
        up_to: u32,
        known: (u32, Option<u64>),
    ) -> AccountResult<(std::ops::Range<u32>, Option<(u32, Option<u64>)>)> {
        self.claim(id, None, up_to, Some(known)).await
    }

    async fn claim(
        &self,
        id: &str,
        initial: Option<u32>,
        up_to: u32,
        known: Option<(u32, Option<u64>)>,
    ) -> AccountResult<(std::ops::Range<u32>, Option<(u32, Option<u64>)>)> {
        let mut row = known;
        for attempt in 0..APPEND_TRIES {
            let (from, version) = match row.take() {
                Some(r) => r,
                None => self.claim_row(id, initial).await?,
            };
            if from >= up_to {
                return Ok((up_to..up_to, Some((from, version))));
            }
            let put = Write::Put {
                key: recent_key(id),
                value: up_to.to_string().into_bytes(),
                condition: version.map_or(Condition::Absent, Condition::Version),
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                // Versions start at 1 and grow by one with every put.
                let now = version.map_or(1, |v| v + 1);
                return Ok((from..up_to, Some((up_to, Some(now)))));
            }
            if attempt > 0 {
                backoff(attempt).await;
            }
        }
        Ok((up_to..up_to, None))
    }

    /// The entries of a mailbox with UIDs in `from..=to`, in UID order. Only
    /// entries below the mailbox's UIDNEXT, read first, are returned, so
    /// every UID up to the highest returned one is committed.
    pub async fn entries(
        &self,
        account: &Address,
        name: &MailboxName,
        from: u32,
        to: u32,
    ) -> AccountResult<Vec<MessageEntry>> {
        let Some((mailbox, _)) = self.mailbox(account, name).await? else {
            return Ok(Vec::new());
        };
        let to = to.min(mailbox.uidnext.saturating_sub(1));
        self.entries_by_id(&mailbox.id, from, to).await
    }

    /// The entries with UIDs in `from..=to` of the mailbox with this id, in
    /// UID order, without reading its record first: for a caller whose
    /// UIDs come from a view it read earlier, so every one is committed (a
    /// selected IMAP session). A mailbox deleted meanwhile has no entries.
    pub async fn entries_by_id(
        &self,
        mailbox_id: &str,
        from: u32,
        to: u32,
    ) -> AccountResult<Vec<MessageEntry>> {
        if from > to {
            return Ok(Vec::new());
        }
        self.entry_items(mailbox_id, from, to)
            .await?
            .iter()
            .map(|i| serde_json::from_slice(&i.value).map_err(|e| corrupt(&i.key, e)))
            .collect()
    }

    /// The index items of a mailbox's entries with UIDs in `from..=to`: one
    /// UID is a point read, which the stores serve faster than a range.
    async fn entry_items(&self, mailbox_id: &str, from: u32, to: u32) -> StoreResult<Vec<Item>> {
        if from == to {
            let key = entry_key(mailbox_id, from);
            return Ok(self.index.get(&key).await?.into_iter().collect());
        }
        self.index
            .query(
                &format!("msg#{mailbox_id}"),
                SkRange::Between(format!("uid#{from:010}"), format!("uid#{to:010}")),
                usize::MAX,
                false,
            )
            .await
    }

    /// Removes the messages with these UIDs from a mailbox: the entries go,
    /// tombstones with a new MODSEQ take their place, and the mailbox
    /// counters follow, in one transaction per 49 messages. With `guard`,
    /// each transaction also requires that item to still be at that version
    /// (a lease still held), and nothing is removed once it is not. Returns
    /// the UIDs removed (UIDs already gone are skipped).
    pub async fn expunge(
        &self,
        account: &Address,
        name: &MailboxName,
        uids: &[u32],
        guard: Option<(&Key, u64)>,
    ) -> AccountResult<Vec<u32>> {
        let mut removed = Vec::new();
        let mbox_key = mailbox_key(account, name);
        // Two writes per message (the entry, its tombstone), the mailbox
        // record and the guard must fit in one transaction.
        for chunk in uids.chunks((crate::ports::MAX_TRANSACTION_ITEMS - 2) / 2) {
            let mut tries = 0;
            loop {
                tries += 1;
                let Some((mut mailbox, version)) = self.mailbox(account, name).await? else {
                    return Ok(removed);
                };
                let mut writes = Vec::new();
                let mut done = Vec::new();
                let mut gone = Vec::new();
                for &uid in chunk {
                    let key = entry_key(&mailbox.id, uid);
                    let Some(item) = self.index.get(&key).await? else {
                        continue;
                    };
                    let entry: MessageEntry =
                        serde_json::from_slice(&item.value).map_err(|e| corrupt(&key, e))?;
                    mailbox.highest_modseq += 1;
                    gone.push(Change::Expunged {
                        uid,
                        modseq: mailbox.highest_modseq,
                    });
                    mailbox.messages = mailbox.messages.saturating_sub(1);
                    if !entry.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")) {
                        mailbox.unseen = mailbox.unseen.saturating_sub(1);
                    }
                    mailbox.size = mailbox.size.saturating_sub(entry.size);
                    writes.push(Write::Delete {
                        key,
                        condition: Condition::Version(item.version),
                    });
                    writes.push(Write::Put {
                        key: Key::new(
                            format!("gone#{}", mailbox.id),
                            format!("{:020}#{uid:010}", mailbox.highest_modseq),
                        ),
                        value: entry.body.as_str().as_bytes().to_vec(),
                        condition: Condition::Absent,
                    });
                    done.push(uid);
                }
                if writes.is_empty() {
                    break;
                }
                writes.push(Write::Put {
                    key: mbox_key.clone(),
                    value: serde_json::to_vec(&mailbox)
                        .map_err(|e| StoreError::permanent("encode mailbox", e))?,
                    condition: Condition::Version(version),
                });
                if let Some((key, version)) = guard {
                    writes.push(Write::Check {
                        key: key.clone(),
                        condition: Condition::Version(version),
                    });
                }
                match self.index.transact(writes).await? {
                    Outcome::Applied => {
                        self.changes.committed(&mailbox.id, gone);
                        removed.extend(done);
                        break;
                    }
                    Outcome::Conflict => {
                        if let Some((key, version)) = guard
                            && self.index.get(key).await?.map(|i| i.version) != Some(version)
                        {
                            return Err(StoreError::permanent(
                                "expunge",
                                "the lease guarding this change was lost",
                            )
                            .into());
                        }
                        if tries >= APPEND_TRIES {
                            return Err(StoreError::retryable(
                                "expunge",
                                format!("mailbox {name} of {account} stayed contended"),
                            )
                            .into());
                        }
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Changes the flags of the messages with these UIDs: `change` maps a
    /// message's flags to its new ones. Each changed message gets a new
    /// MODSEQ and a change record (`chg#`), so other sessions learn of it
    /// cheaply; the mailbox counters follow, in one transaction per 40
    /// messages. With `unchanged_since` (CONDSTORE), a message whose MODSEQ
    /// is higher is left alone and reported in `modified`.
    pub async fn update_flags(
        &self,
        account: &Address,
        name: &MailboxName,
        uids: &[u32],
        unchanged_since: Option<u64>,
        change: &(dyn Fn(&[String]) -> Vec<String> + Send + Sync),
    ) -> AccountResult<FlagUpdate> {
        let mut result = FlagUpdate::default();
        let mbox_key = mailbox_key(account, name);
        for chunk in uids.chunks(40) {
            let mut tries = 0;
            loop {
                tries += 1;
                let Some((mut mailbox, version)) = self.mailbox(account, name).await? else {
                    return Ok(result);
                };
                let lo = chunk.iter().copied().min().unwrap_or(0);
                let hi = chunk.iter().copied().max().unwrap_or(0);
                let items = self.entry_items(&mailbox.id, lo, hi).await?;
                let mut writes = Vec::new();
                let mut changed = Vec::new();
                let mut unchanged = Vec::new();
                let mut modified = Vec::new();
                for item in &items {
                    let mut entry: MessageEntry =
                        serde_json::from_slice(&item.value).map_err(|e| corrupt(&item.key, e))?;
                    if !chunk.contains(&entry.uid) {
                        continue;
                    }
                    if unchanged_since.is_some_and(|m| entry.modseq > m) {
                        modified.push(entry.uid);
                        continue;
                    }
                    let flags = normalize_flags(change(&entry.flags));
                    if flags == entry.flags {
                        unchanged.push((entry.uid, entry.flags, entry.modseq));
                        continue;
                    }
                    let was_seen = has_seen(&entry.flags);
                    let now_seen = has_seen(&flags);
                    if was_seen && !now_seen {
                        mailbox.unseen += 1;
                    } else if !was_seen && now_seen {
                        mailbox.unseen = mailbox.unseen.saturating_sub(1);
                    }
                    mailbox.add_keywords(&flags)?;
                    mailbox.highest_modseq += 1;
                    entry.flags = flags;
                    entry.modseq = mailbox.highest_modseq;
                    writes.push(Write::Put {
                        key: item.key.clone(),
                        value: serde_json::to_vec(&entry)
                            .map_err(|e| StoreError::permanent("encode entry", e))?,
                        condition: Condition::Version(item.version),
                    });
                    writes.push(Write::Put {
                        key: change_key(&mailbox.id, entry.modseq, entry.uid),
                        value: Vec::new(),
                        condition: Condition::Absent,
                    });
                    changed.push((entry.uid, entry.flags, entry.modseq));
                }
                if writes.is_empty() {
                    result.unchanged.extend(unchanged);
                    result.modified.extend(modified);
                    break;
                }
                writes.push(Write::Put {
                    key: mbox_key.clone(),
                    value: serde_json::to_vec(&mailbox)
                        .map_err(|e| StoreError::permanent("encode mailbox", e))?,
                    condition: Condition::Version(version),
                });
                match self.index.transact(writes).await? {
                    Outcome::Applied => {
                        self.changes.committed(
                            &mailbox.id,
                            changed
                                .iter()
                                .map(|(uid, flags, modseq)| Change::Flags {
                                    uid: *uid,
                                    modseq: *modseq,
                                    flags: flags.clone(),
                                })
                                .collect(),
                        );
                        result.changed.extend(changed);
                        result.unchanged.extend(unchanged);
                        result.modified.extend(modified);
                        break;
                    }
                    Outcome::Conflict if tries < APPEND_TRIES => backoff(tries).await,
                    Outcome::Conflict => {
                        return Err(StoreError::retryable(
                            "store flags",
                            format!("mailbox {name} of {account} stayed contended"),
                        )
                        .into());
                    }
                }
            }
        }
        Ok(result)
    }

    /// What changed in a mailbox after MODSEQ `since`, up to and including
    /// `upto`: UIDs whose flags changed, and UIDs expunged.
    pub async fn changes(
        &self,
        mailbox_id: &str,
        since: u64,
        upto: u64,
    ) -> AccountResult<(Vec<u32>, Vec<u32>)> {
        if since >= upto {
            return Ok((Vec::new(), Vec::new()));
        }
        let range = || {
            SkRange::Between(
                format!("{:020}#", since + 1),
                format!("{upto:020}#9999999999"),
            )
        };
        let uid_of = |item: &crate::ports::Item| {
            item.key
                .sk
                .rsplit_once('#')
                .and_then(|(_, u)| u.parse::<u32>().ok())
        };
        let changed = self
            .index
            .query(&format!("chg#{mailbox_id}"), range(), usize::MAX, false)
            .await?;
        let gone = self
            .index
            .query(&format!("gone#{mailbox_id}"), range(), usize::MAX, false)
            .await?;
        Ok((
            changed.iter().filter_map(uid_of).collect(),
            gone.iter().filter_map(uid_of).collect(),
        ))
    }

    /// The messages expunged from a mailbox after MODSEQ `since`, up to and
    /// including `upto`: each one's UID and stored body (which JMAP names
    /// its Email by).
    pub async fn vanished(
        &self,
        mailbox_id: &str,
        since: u64,
        upto: u64,
    ) -> AccountResult<Vec<(u32, String)>> {
        if since >= upto {
            return Ok(Vec::new());
        }
        let gone = self
            .index
            .query(
                &format!("gone#{mailbox_id}"),
                SkRange::Between(
                    format!("{:020}#", since + 1),
                    format!("{upto:020}#9999999999"),
                ),
                usize::MAX,
                false,
            )
            .await?;
        Ok(gone
            .iter()
            .filter_map(|item| {
                let uid = item.key.sk.rsplit_once('#')?.1.parse::<u32>().ok()?;
                Some((uid, String::from_utf8_lossy(&item.value).into_owned()))
            })
            .collect())
    }

    /// Copies messages (entries of `from`, as read) into mailbox `to`:
    /// new entries sharing the stored bodies, all or none (RFC 9051
    /// §6.4.7: a failed COPY leaves the target as it was). Returns the new
    /// UIDs in the order given, and the target's UIDVALIDITY.
    pub async fn copy(
        &self,
        account: &Address,
        entries: &[MessageEntry],
        to: &MailboxName,
    ) -> AccountResult<(u32, Vec<u32>)> {
        let mut messages = Vec::with_capacity(entries.len());
        for entry in entries {
            messages.push(NewMessage {
                queue_id: QueueId::generate(),
                body: entry.body.clone(),
                body_size: entry.size.saturating_sub(entry.prefix.len() as u64),
                prefix: entry.prefix.clone(),
                meta: self.meta(entry).await?,
                flags: entry.flags.clone(),
                internal_date: entry.internal_date,
                internal_tz: entry.internal_tz,
            });
        }
        if messages.is_empty() {
            let uidvalidity = self
                .mailbox(account, to)
                .await?
                .map_or(0, |(m, _)| m.uidvalidity);
            return Ok((uidvalidity, Vec::new()));
        }
        self.append_all(account, to, messages).await
    }

    /// The metadata of an entry, wherever it is stored.
    pub async fn meta(&self, entry: &MessageEntry) -> AccountResult<MessageMeta> {
        if let Some(meta) = &entry.meta {
            return Ok(meta.clone());
        }
        let key = entry
            .meta_blob
            .as_ref()
            .ok_or_else(|| StoreError::permanent("metadata", "entry without metadata"))?;
        let bytes = self
            .blobs
            .get(key, None)
            .await?
            .ok_or_else(|| StoreError::retryable("metadata", format!("blob {key} missing")))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::permanent("metadata", e).into())
    }
}

/// Now, as Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Leases: one holder at a time for a named resource (a POP3 maildrop),
/// across processes and gateways, expiring if the holder dies. A holder
/// renews its lease while it lives; a change that must happen only under the
/// lease checks the lease item's version in the same transaction.
#[derive(Debug, Clone)]
pub struct Leases {
    index: Arc<dyn Index>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    /// Unix milliseconds.
    expires: i64,
}

/// A lease held: its item and the version that proves it is still ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: Key,
    pub version: u64,
    pub holder: String,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Leases {
    pub fn new(index: Arc<dyn Index>) -> Self {
        Leases { index }
    }

    /// Takes the lease on `name` for `ttl` if nobody holds it (or the holder's
    /// lease ran out). `None` when someone else holds it.
    pub async fn acquire(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> AccountResult<Option<Lease>> {
        let key = Key::new(format!("lease#{name}"), "lease");
        let holder = crate::ids::random_hex(12);
        let record = LeaseRecord {
            holder: holder.clone(),
            expires: now_millis() + ttl.as_millis() as i64,
        };
        let value =
            serde_json::to_vec(&record).map_err(|e| StoreError::permanent("encode lease", e))?;
        let (condition, old_version) = match self.index.get(&key).await? {
            None => (Condition::Absent, 0),
            Some(item) => {
                let current: LeaseRecord =
                    serde_json::from_slice(&item.value).map_err(|e| corrupt(&key, e))?;
                if current.expires > now_millis() {
                    return Ok(None);
                }
                (Condition::Version(item.version), item.version)
            }
        };
        match self
            .index
            .transact(vec![Write::Put {
                key: key.clone(),
                value,
                condition,
            }])
            .await?
        {
            Outcome::Applied => Ok(Some(Lease {
                key,
                version: old_version + 1,
                holder,
            })),
            Outcome::Conflict => Ok(None),
        }
    }

    /// Extends a held lease; `false` when it was lost (expired and taken).
    pub async fn renew(&self, lease: &mut Lease, ttl: std::time::Duration) -> AccountResult<bool> {
        let record = LeaseRecord {
            holder: lease.holder.clone(),
            expires: now_millis() + ttl.as_millis() as i64,
        };
        let value =
            serde_json::to_vec(&record).map_err(|e| StoreError::permanent("encode lease", e))?;
        let put = Write::Put {
            key: lease.key.clone(),
            value,
            condition: Condition::Version(lease.version),
        };
        match self.index.transact(vec![put]).await? {
            Outcome::Applied => {
                lease.version += 1;
                Ok(true)
            }
            Outcome::Conflict => Ok(false),
        }
    }

    /// Gives the lease up (if still held).
    pub async fn release(&self, lease: &Lease) -> AccountResult<()> {
        let _ = self
            .index
            .transact(vec![Write::Delete {
                key: lease.key.clone(),
                condition: Condition::Version(lease.version),
            }])
            .await?;
        Ok(())
    }
}
