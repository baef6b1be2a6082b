//! An account as JMAP sees it, read from the index and kept per gateway
//! for the next request.
//!
//! - A Mailbox is a mailbox record; its id is the record's stable id.
//! - An Email is a stored body (`M` and a digest of its blob key) with
//!   every mailbox entry that holds it: IMAP's COPY and MOVE, and a Sieve
//!   script filing into two mailboxes, share the body, so the Email keeps
//!   its id and gains or loses mailboxes.
//! - A Thread (`T` and a digest) is named by the Message-ID the
//!   conversation started with (the first of References, else
//!   In-Reply-To, else the message's own), which never changes for a
//!   message, so neither does its thread.
//! - Every state string is the list of each mailbox's id, UIDNEXT, MODSEQ
//!   and a digest of its name, role and subscription: anything a client
//!   could see change moves one of them, on every gateway alike, and two
//!   states are enough to tell what changed between them (the expunged
//!   messages' tombstones name their bodies).
//!
//! Reading is incremental: a mailbox whose MODSEQ and UIDNEXT did not
//! move is not read again; one that moved is read from its change rows
//! and new UIDs, unless they were pruned (then whole).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use stratus_core::accounts::MailboxRecord;
use stratus_core::mailstore::MessageEntry;
use stratus_core::message::MessageMeta;

use super::{MethodError, User};
use crate::http::Context;

/// Accounts whose entries are kept, at most.
const MAX_CACHED_ACCOUNTS: usize = 512;
/// Past this many changed messages a mailbox is read whole again.
const MAX_INCREMENTAL: usize = 256;

/// One Email of the account.
#[derive(Debug, Clone)]
pub struct Email {
    pub id: String,
    pub thread: String,
    /// Where it is: mailbox id and UID, one per entry, with the entry.
    pub entries: Vec<(String, Arc<MessageEntry>)>,
    pub meta: Arc<MessageMeta>,
    /// Unix seconds the first entry was received.
    pub received_at: i64,
    pub size: u64,
    /// JMAP keywords: each entry's IMAP flags, lower case, `$` names for
    /// the system flags; a keyword any entry has.
    pub keywords: BTreeSet<String>,
}

impl Email {
    fn keywords_of(entries: &[(String, Arc<MessageEntry>)]) -> BTreeSet<String> {
        entries
            .iter()
            .flat_map(|(_, e)| e.flags.iter())
            .filter_map(|f| keyword_of_flag(f))
            .collect()
    }

    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keywords.contains(&keyword.to_ascii_lowercase())
    }

    pub fn in_mailbox(&self, mailbox: &str) -> bool {
        self.entries.iter().any(|(m, _)| m == mailbox)
    }

    pub fn first(&self) -> &MessageEntry {
        &self.entries[0].1
    }
}

/// The JMAP keyword of an IMAP flag (`None`: `\Deleted`, `\Recent`, or
/// an unknown system flag, which JMAP does not show).
pub fn keyword_of_flag(flag: &str) -> Option<String> {
    let k = match flag.to_ascii_lowercase().as_str() {
        "\\seen" => "$seen".to_string(),
        "\\flagged" => "$flagged".to_string(),
        "\\answered" => "$answered".to_string(),
        "\\draft" => "$draft".to_string(),
        f if f.starts_with('\\') => return None,
        f => f.to_string(),
    };
    Some(k)
}

/// The IMAP flag a JMAP keyword is stored as.
pub fn flag_of_keyword(keyword: &str) -> String {
    match keyword.to_ascii_lowercase().as_str() {
        "$seen" => "\\Seen".into(),
        "$flagged" => "\\Flagged".into(),
        "$answered" => "\\Answered".into(),
        "$draft" => "\\Draft".into(),
        k => k.to_string(),
    }
}

/// Whether a keyword is one JMAP and IMAP both allow (RFC 8621 §4.1.1:
/// `%x21-7E` without `( ) { ] % * " \`).
pub fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

/// A mailbox's part of a state string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxMark {
    pub id: String,
    pub uidnext: u32,
    pub modseq: u64,
    /// Name, role and subscription, digested.
    pub looks: u32,
}

fn looks(m: &MailboxRecord) -> u32 {
    let text = format!("{}\0{:?}\0{}", m.name.as_str(), m.special_use, m.subscribed);
    stratus_core::ids::fnv1a(text.bytes(), 0xcbf2_9ce4_8422_2325) as u32
}

/// The most mailboxes a state string may name (far more than an account
/// keeps: [`stratus_core::accounts`] limits them).
const MAX_MARKS: usize = 5_000;

/// Encodes marks as a state string.
pub fn encode_state(marks: &[MailboxMark]) -> String {
    let mut out = Vec::new();
    for m in marks {
        let id = m.id.as_bytes();
        out.push(id.len().min(255) as u8);
        out.extend_from_slice(&id[..id.len().min(255)]);
        varint(&mut out, u64::from(m.uidnext));
        varint(&mut out, m.modseq);
        out.extend_from_slice(&m.looks.to_be_bytes());
    }
    format!("s{}", base64url(&out))
}

/// The marks of a state string this server made (`None`: not one).
pub fn decode_state(state: &str) -> Option<Vec<MailboxMark>> {
    let bytes = unbase64url(state.strip_prefix('s')?)?;
    let mut marks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let n = usize::from(bytes[i]);
        i += 1;
        let id = String::from_utf8(bytes.get(i..i + n)?.to_vec()).ok()?;
        i += n;
        let uidnext = u32::try_from(read_varint(&bytes, &mut i)?).ok()?;
        let modseq = read_varint(&bytes, &mut i)?;
        let looks = u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?);
        i += 4;
        if id.is_empty()
            || marks.len() >= MAX_MARKS
            || marks.iter().any(|m: &MailboxMark| m.id == id)
        {
            return None;
        }
        marks.push(MailboxMark {
            id,
            uidnext,
            modseq,
            looks,
        });
    }
    Some(marks)
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_varint(bytes: &[u8], i: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*i)?;
        *i += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
        }
    }
    out
}

fn unbase64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The Email id of a stored body.
pub fn email_id(body: &str) -> String {
    format!("M{}", &stratus_core::ids::sha256_hex(body.as_bytes())[..24])
}

fn thread_id(root: &str) -> String {
    format!("T{}", &stratus_core::ids::sha256_hex(root.as_bytes())[..24])
}

/// A Message-ID without its angle brackets and spaces.
pub fn bare_id(id: &str) -> String {
    id.split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(['<', '>'])
        .to_string()
}

/// The account, as of one read.
#[derive(Debug)]
pub struct View {
    pub mailboxes: Vec<MailboxRecord>,
    pub emails: HashMap<String, Email>,
    pub marks: Vec<MailboxMark>,
    /// Each thread's Emails, oldest first.
    pub threads: HashMap<String, Vec<String>>,
}

impl View {
    pub fn state(&self) -> String {
        encode_state(&self.marks)
    }

    pub fn mailbox(&self, id: &str) -> Option<&MailboxRecord> {
        self.mailboxes.iter().find(|m| m.id == id)
    }

    /// The Emails of a thread, oldest first.
    pub fn thread(&self, id: &str) -> Vec<&Email> {
        self.threads
            .get(id)
            .map(|ids| ids.iter().filter_map(|e| self.emails.get(e)).collect())
            .unwrap_or_default()
    }
}

/// A mailbox's entries as last read.
#[derive(Debug, Clone, Default)]
struct Entries {
    uidnext: u32,
    modseq: u64,
    by_uid: BTreeMap<u32, Arc<MessageEntry>>,
    /// Metadata read from the blob store, for entries that keep it there.
    metas: HashMap<u32, Arc<MessageMeta>>,
}

type Cached = Arc<tokio::sync::Mutex<HashMap<String, Entries>>>;

fn cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<String, Cached>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn cached(account: &str) -> Cached {
    let mut all = cache().lock().unwrap_or_else(|p| p.into_inner());
    if !all.contains_key(account) && all.len() >= MAX_CACHED_ACCOUNTS {
        // Whatever no request is reading now goes first.
        all.retain(|_, c| Arc::strong_count(c) > 1);
        if all.len() >= MAX_CACHED_ACCOUNTS {
            all.clear();
        }
    }
    all.entry(account.to_string()).or_default().clone()
}

/// Reads the account.
pub async fn load(ctx: &Context, user: &User) -> Result<View, MethodError> {
    let accounts = ctx.shared.stores.accounts();
    let store = ctx.shared.stores.mailstore();
    let mut mailboxes = accounts.mailboxes(&user.address).await?;
    mailboxes.sort_by(|a, b| a.id.cmp(&b.id));
    let cached = cached(&user.account);
    let mut kept = cached.lock().await;
    kept.retain(|id, _| mailboxes.iter().any(|m| &m.id == id));
    for m in &mailboxes {
        let entries = kept.entry(m.id.clone()).or_default();
        if entries.uidnext == m.uidnext && entries.modseq == m.highest_modseq {
            continue;
        }
        let whole = entries.uidnext == 0 || m.pruned_modseq > entries.modseq;
        let mut incremental = false;
        if !whole {
            let (changed, gone) = store
                .changes(&m.id, entries.modseq, m.highest_modseq)
                .await?;
            if changed.len() + gone.len() <= MAX_INCREMENTAL {
                for uid in gone {
                    entries.by_uid.remove(&uid);
                    entries.metas.remove(&uid);
                }
                for uid in changed {
                    if uid >= entries.uidnext {
                        continue;
                    }
                    match store.entries_by_id(&m.id, uid, uid).await?.pop() {
                        Some(e) => {
                            entries.by_uid.insert(uid, Arc::new(e));
                        }
                        None => {
                            entries.by_uid.remove(&uid);
                        }
                    }
                }
                let new = store
                    .entries_by_id(&m.id, entries.uidnext, m.uidnext.saturating_sub(1))
                    .await?;
                for e in new {
                    entries.by_uid.insert(e.uid, Arc::new(e));
                }
                incremental = true;
            }
        }
        if !incremental {
            let all = store
                .entries_by_id(&m.id, 1, m.uidnext.saturating_sub(1))
                .await?;
            entries.by_uid = all.into_iter().map(|e| (e.uid, Arc::new(e))).collect();
            entries
                .metas
                .retain(|uid, _| entries.by_uid.contains_key(uid));
        }
        for (uid, e) in &entries.by_uid {
            if e.meta.is_none() && !entries.metas.contains_key(uid) {
                let meta = store.meta(e).await?;
                entries.metas.insert(*uid, Arc::new(meta));
            }
        }
        entries.uidnext = m.uidnext;
        entries.modseq = m.highest_modseq;
    }
    let mut emails: HashMap<String, Email> = HashMap::new();
    for m in &mailboxes {
        let Some(entries) = kept.get(&m.id) else {
            continue;
        };
        for (uid, e) in &entries.by_uid {
            let id = email_id(e.body.as_str());
            if let Some(email) = emails.get_mut(&id) {
                email.entries.push((m.id.clone(), e.clone()));
                email.received_at = email.received_at.min(e.internal_date);
                continue;
            }
            let meta = match (&e.meta, entries.metas.get(uid)) {
                (Some(meta), _) => Arc::new(meta.clone()),
                (None, Some(meta)) => meta.clone(),
                (None, None) => Arc::new(MessageMeta::default()),
            };
            let root = meta
                .thread_root
                .clone()
                .or_else(|| meta.envelope.in_reply_to.as_deref().map(bare_id))
                .or_else(|| meta.envelope.message_id.as_deref().map(bare_id))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| id.clone());
            emails.insert(
                id.clone(),
                Email {
                    thread: thread_id(&root),
                    id,
                    entries: vec![(m.id.clone(), e.clone())],
                    meta,
                    received_at: e.internal_date,
                    size: e.size,
                    keywords: BTreeSet::new(),
                },
            );
        }
    }
    let mut threads: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for email in emails.values_mut() {
        email.keywords = Email::keywords_of(&email.entries);
        threads
            .entry(email.thread.clone())
            .or_default()
            .push((email.received_at, email.id.clone()));
    }
    let threads = threads
        .into_iter()
        .map(|(t, mut members)| {
            members.sort();
            (t, members.into_iter().map(|(_, id)| id).collect())
        })
        .collect();
    let marks = mailboxes
        .iter()
        .map(|m| MailboxMark {
            id: m.id.clone(),
            uidnext: m.uidnext,
            modseq: m.highest_modseq,
            looks: looks(m),
        })
        .collect();
    Ok(View {
        mailboxes,
        emails,
        marks,
        threads,
    })
}

/// What changed between two states, by Email id.
#[derive(Debug, Default)]
pub struct EmailChanges {
    pub created: BTreeSet<String>,
    pub updated: BTreeSet<String>,
    pub destroyed: BTreeSet<String>,
}

/// The Emails created, changed and destroyed since `old`; `None` when
/// that cannot be told (a mailbox deleted since, or its tombstones
/// pruned).
pub async fn email_changes(
    ctx: &Context,
    view: &View,
    old: &[MailboxMark],
) -> Result<Option<EmailChanges>, MethodError> {
    let store = ctx.shared.stores.mailstore();
    let old: HashMap<&str, &MailboxMark> = old.iter().map(|o| (o.id.as_str(), o)).collect();
    let now: BTreeSet<&str> = view.marks.iter().map(|m| m.id.as_str()).collect();
    if old
        .values()
        .any(|o| !now.contains(o.id.as_str()) && o.uidnext > 1)
    {
        return Ok(None);
    }
    // Email ids that had an entry in the old state, or may have.
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut existed: BTreeSet<String> = BTreeSet::new();
    for m in &view.mailboxes {
        let before = old.get(m.id.as_str());
        let (old_next, old_modseq) = before.map_or((1, 0), |o| (o.uidnext, o.modseq));
        if old_modseq == m.highest_modseq && old_next == m.uidnext {
            continue;
        }
        if before.is_some() && m.pruned_modseq > old_modseq {
            return Ok(None);
        }
        let (changed, _) = store.changes(&m.id, old_modseq, m.highest_modseq).await?;
        for (uid, body) in store.vanished(&m.id, old_modseq, m.highest_modseq).await? {
            let id = email_id(&body);
            if uid < old_next {
                existed.insert(id.clone());
            }
            touched.insert(id);
        }
        for email in view.emails.values() {
            for (mbox, entry) in &email.entries {
                if *mbox != m.id {
                    continue;
                }
                if entry.uid >= old_next || changed.contains(&entry.uid) {
                    touched.insert(email.id.clone());
                }
            }
        }
    }
    // An Email now present existed before when an entry of it is older
    // than its mailbox's old UIDNEXT.
    for email in view.emails.values() {
        let old_entry = email
            .entries
            .iter()
            .any(|(mbox, e)| old.get(mbox.as_str()).is_some_and(|o| e.uid < o.uidnext));
        if old_entry {
            existed.insert(email.id.clone());
        }
    }
    let mut out = EmailChanges::default();
    for id in touched {
        match (view.emails.contains_key(&id), existed.contains(&id)) {
            (true, true) => out.updated.insert(id),
            (true, false) => out.created.insert(id),
            (false, true) => out.destroyed.insert(id),
            (false, false) => false,
        };
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        let marks = vec![
            MailboxMark {
                id: "0123456789abcdef".into(),
                uidnext: 1,
                modseq: 0,
                looks: 7,
            },
            MailboxMark {
                id: "fedcba9876543210".into(),
                uidnext: 70_000,
                modseq: 1 << 40,
                looks: u32::MAX,
            },
        ];
        let s = encode_state(&marks);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_state(&s), Some(marks));
        assert_eq!(decode_state("s"), Some(Vec::new()));
        assert_eq!(decode_state("sAAAA"), None);
        assert_eq!(decode_state("x"), None);
        assert_eq!(decode_state("s!!"), None);
    }

    #[test]
    fn keywords_map_to_flags_and_back() {
        for (flag, keyword) in [
            ("\\Seen", "$seen"),
            ("\\Flagged", "$flagged"),
            ("\\Answered", "$answered"),
            ("\\Draft", "$draft"),
            ("$Forwarded", "$forwarded"),
        ] {
            assert_eq!(keyword_of_flag(flag).as_deref(), Some(keyword));
            assert!(flag_of_keyword(keyword).eq_ignore_ascii_case(flag));
        }
        assert_eq!(keyword_of_flag("\\Deleted"), None);
        assert!(valid_keyword("$label1"));
        assert!(!valid_keyword("a b"));
        assert!(!valid_keyword("\\Seen"));
        assert!(!valid_keyword(""));
    }

    #[test]
    fn message_ids_lose_their_brackets() {
        assert_eq!(bare_id(" <a@b> "), "a@b");
        assert_eq!(bare_id("<a@b> <c@d>"), "a@b");
    }
}
