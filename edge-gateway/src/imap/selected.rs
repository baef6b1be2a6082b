//! The selected mailbox as one session sees it: message sequence numbers,
//! each message's UID, flags and MODSEQ, and how it catches up with what
//! other sessions and processes changed.
//!
//! The session's view changes only at points RFC 9051 §7.5.1 allows it to
//! tell the client: new messages and flag changes after any command,
//! expunges only where [`Selected::sync`] is told it may send them (never
//! during FETCH, STORE or SEARCH by sequence number, so numbers the client
//! holds never shift under it). Catching up costs one index read when
//! nothing changed: the mailbox record's UIDNEXT and HIGHESTMODSEQ say
//! whether anything did; flag changes and expunges since a MODSEQ are then
//! read from their change records, new messages from UIDNEXT on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use stratus_core::accounts::{AccountResult, MailboxRecord};
use stratus_core::address::Address;
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::{Mailstore, MessageEntry};
use stratus_core::ports::Change;

use std::fmt::Write as _;
use stratus_proto::imap::command::SequenceSet;
use stratus_proto::imap::wire::Lossy;

/// One message of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub uid: u32,
    pub flags: Vec<String>,
    pub modseq: u64,
}

impl Msg {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

#[derive(Debug)]
pub struct Selected {
    pub name: MailboxName,
    pub id: String,
    pub uidvalidity: u32,
    pub read_only: bool,
    /// The mailbox's UIDNEXT as last seen.
    pub uidnext: u32,
    /// Every change up to this MODSEQ has been taken in.
    pub modseq: u64,
    /// By UID, ascending; a message's sequence number is its index + 1.
    /// Shared with the gateway's [`Views`] and the sessions that selected
    /// the same state, and copied only when this session's view changes.
    pub msgs: Arc<Vec<Msg>>,
    /// The mailbox record was gone or replaced at the last look.
    pub vanished: bool,
    /// Changes at or below this MODSEQ may be forgotten (the sweeper
    /// pruned their tombstones): asked about them, answer with everything.
    pub pruned_modseq: u64,
    /// The keywords the client was told of in the last FLAGS response; a
    /// message showing another needs a new FLAGS first.
    pub announced: BTreeSet<String>,
    /// Messages up to this UID have been looked at for keywords.
    pub scanned_uid: u32,
    /// Which opening of a mailbox this is, unique in the process: a live
    /// search belongs to one (selecting the mailbox again ends it).
    pub opened: u64,
    /// Counts the changes to `msgs` (see [`Selected::msgs_mut`]): what a
    /// live search (CONTEXT=SEARCH) compares to know whether to look again.
    pub changes: u64,
    /// The mailbox is the account's Junk (special use `\Junk`): moving
    /// messages out of it teaches the spam filter they are ham.
    pub junk: bool,
    /// The UIDs `\Recent` in this session (IMAP4rev1 only), ascending.
    pub recent: Vec<std::ops::Range<u32>>,
    /// Whether messages below this UID are recent here is settled.
    pub recent_upto: u32,
}

/// The views of the mailboxes this gateway's sessions opened last, by
/// mailbox id, so that selecting a mailbox again costs a read of its
/// record plus what changed since, not a read of every message. Bounded
/// by the number of messages held; the least recently used go first.
#[derive(Debug, Default)]
pub struct Views {
    inner: Mutex<ViewMap>,
    /// Per mailbox id, its `\Recent` claim row as last seen here: the
    /// first unclaimed UID (every message below it is claimed; claims
    /// only grow) and the row's version. A session that finds no newer
    /// message reads nothing; one that claims tries its write with this
    /// version before reading the row.
    claimed: Mutex<HashMap<String, (u32, Option<u64>)>>,
}

#[derive(Debug, Default)]
struct ViewMap {
    by_id: HashMap<String, (u64, Arc<View>)>,
    /// Messages held over all views.
    held: usize,
    /// A counter, for the age of each view.
    clock: u64,
}

#[derive(Debug)]
struct View {
    uidnext: u32,
    modseq: u64,
    msgs: Arc<Vec<Msg>>,
}

impl Views {
    /// Messages kept over all views (a message costs some 60 bytes plus
    /// its keywords).
    const MAX_HELD: usize = 250_000;

    /// Messages held over all views.
    pub fn held(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).held
    }

    /// Mailboxes whose claims are remembered, at most.
    const MAX_CLAIMED: usize = 100_000;

    fn claimed(&self, id: &str) -> Option<(u32, Option<u64>)> {
        let map = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).copied()
    }

    /// Remembers the claim row of mailbox `id` as seen, unless a newer
    /// state is remembered already.
    fn set_claimed(&self, id: &str, row: (u32, Option<u64>)) {
        let mut map = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX_CLAIMED && !map.contains_key(id) {
            map.clear();
        }
        let c = map.entry(id.to_string()).or_insert(row);
        if row.1 >= c.1 {
            *c = row;
        }
    }

    /// The view of mailbox `id`, which becomes the newest.
    fn get(&self, id: &str) -> Option<Arc<View>> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.clock += 1;
        let now = map.clock;
        map.by_id.get_mut(id).map(|(age, v)| {
            *age = now;
            v.clone()
        })
    }

    fn put(&self, selected: &Selected) {
        if selected.msgs.len() > Self::MAX_HELD / 4 {
            return;
        }
        let view = Arc::new(View {
            uidnext: selected.uidnext,
            modseq: selected.modseq,
            msgs: selected.msgs.clone(),
        });
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.clock += 1;
        let age = map.clock;
        let held = view.msgs.len();
        if let Some((_, old)) = map.by_id.insert(selected.id.clone(), (age, view)) {
            map.held -= old.msgs.len();
        }
        map.held += held;
        while map.held > Self::MAX_HELD {
            let Some(oldest) = map
                .by_id
                .iter()
                .min_by_key(|(_, (age, _))| *age)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some((_, gone)) = map.by_id.remove(&oldest) {
                map.held -= gone.msgs.len();
            }
        }
    }
}

/// What the client must be told after a sync, in order.
#[derive(Debug, Default)]
pub struct Changes {
    /// Sequence numbers to report as EXPUNGE, in the order to send them,
    /// with the UIDs they had (for VANISHED).
    pub expunged: Vec<(u32, u32)>,
    /// The new message count, when it grew.
    pub exists: Option<usize>,
    /// Indices of messages whose flags changed.
    pub flags: Vec<usize>,
}

impl Selected {
    /// Opens mailbox `name` of `account`: `None` when it does not exist.
    /// A mailbox some session of this gateway opened before starts from
    /// that view in `views` and catches up with what changed since, like a
    /// session that stayed selected; any other is read whole.
    pub async fn open(
        store: &Mailstore,
        views: &Views,
        account: &Address,
        name: &MailboxName,
        read_only: bool,
    ) -> AccountResult<Option<(Selected, MailboxRecord, u64)>> {
        let Some((record, version)) = store.mailbox(account, name).await? else {
            return Ok(None);
        };
        let mut selected = Selected {
            name: name.clone(),
            id: record.id.clone(),
            uidvalidity: record.uidvalidity,
            read_only,
            uidnext: 1,
            modseq: 0,
            msgs: Arc::default(),
            vanished: false,
            pruned_modseq: record.pruned_modseq,
            junk: record.special_use == Some(stratus_core::mailbox::SpecialUse::Junk),
            announced: BTreeSet::new(),
            scanned_uid: 0,
            recent: Vec::new(),
            recent_upto: 0,
            opened: next_opening(),
            changes: 0,
        };
        match views.get(&record.id) {
            Some(view) => {
                selected.uidnext = view.uidnext;
                selected.modseq = view.modseq;
                selected.msgs = view.msgs.clone();
                selected.catch_up(store, account, &record, true).await?;
                // Unchanged since: the view held is this one.
                if !Arc::ptr_eq(&selected.msgs, &view.msgs)
                    || (selected.uidnext, selected.modseq) != (view.uidnext, view.modseq)
                {
                    views.put(&selected);
                }
            }
            None => {
                let entries = store
                    .entries(account, name, 1, record.uidnext.saturating_sub(1))
                    .await?;
                selected.msgs = Arc::new(entries.iter().map(msg_of).collect());
                selected.uidnext = record.uidnext;
                selected.modseq = record.highest_modseq;
                views.put(&selected);
            }
        }
        Ok(Some((selected, record, version)))
    }

    /// Settles `\Recent` (RFC 3501 §2.3.2) for the messages the view
    /// gained since the last call: a read-write session claims them, so
    /// they are recent here and in no other session; a read-only one
    /// (EXAMINE) sees as recent those no session has claimed, and claims
    /// nothing. `record`, when the caller has just read this mailbox's
    /// record, spares a read when nothing is left to claim.
    pub async fn take_recent(
        &mut self,
        store: &Mailstore,
        views: &Views,
        account: &Address,
        record: Option<&MailboxRecord>,
    ) -> AccountResult<()> {
        let up_to = self.uidnext;
        if up_to <= self.recent_upto {
            return Ok(());
        }
        let known = views.claimed(&self.id);
        if known.is_some_and(|(first, _)| first >= up_to) {
            // Claimed already, by this session or another.
            self.recent_upto = up_to;
            return Ok(());
        }
        if !self.read_only
            && let Some(known) = known
        {
            // The claim row as this gateway last saw it: write first.
            let (range, row) = store.claim_recent_known(&self.id, up_to, known).await?;
            if let Some(row) = row {
                views.set_claimed(&self.id, row);
            }
            self.note_recent(range, up_to);
            return Ok(());
        }
        let read;
        let record = match record {
            Some(r) if r.id == self.id => r,
            _ => match store.mailbox(account, &self.name).await? {
                Some((r, _)) if r.id == self.id => {
                    read = r;
                    &read
                }
                _ => return Ok(()),
            },
        };
        let range = if self.read_only {
            let row = store.first_unclaimed(record).await?;
            views.set_claimed(&self.id, row);
            row.0..up_to
        } else {
            let (range, row) = store.claim_recent(record, up_to, known).await?;
            if let Some(row) = row {
                views.set_claimed(&self.id, row);
            }
            range
        };
        self.note_recent(range, up_to);
        Ok(())
    }

    /// Takes in the UIDs `range` as recent here, and everything below
    /// `up_to` as settled.
    fn note_recent(&mut self, range: std::ops::Range<u32>, up_to: u32) {
        let range = range.start.max(self.recent_upto)..range.end;
        self.recent_upto = up_to;
        if !range.is_empty() {
            match self.recent.last_mut() {
                Some(last) if last.end == range.start => last.end = range.end,
                _ => self.recent.push(range),
            }
        }
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        is_recent(&self.recent, uid)
    }

    /// The messages of the view that are `\Recent` in this session.
    pub fn recent_count(&self) -> usize {
        self.recent
            .iter()
            .map(|r| {
                self.msgs.partition_point(|m| m.uid < r.end)
                    - self.msgs.partition_point(|m| m.uid < r.start)
            })
            .sum()
    }

    /// The view's messages, to change: copied first when shared.
    pub fn msgs_mut(&mut self) -> &mut Vec<Msg> {
        self.changes += 1;
        Arc::make_mut(&mut self.msgs)
    }

    /// The UIDs below UIDNEXT the view does not hold: what a client that
    /// asks about pruned history may have missed (sent as VANISHED).
    pub fn missing_uids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut next = 1;
        for m in self.msgs.iter() {
            out.extend(next..m.uid);
            next = m.uid + 1;
        }
        out.extend(next..self.uidnext);
        out
    }

    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Takes in what changed since the last look. With `expunges`, removed
    /// messages leave the view (and are reported); without, they stay until
    /// a later sync may report them.
    pub async fn sync(
        &mut self,
        store: &Mailstore,
        account: &Address,
        expunges: bool,
    ) -> AccountResult<Changes> {
        let record = match store.mailbox(account, &self.name).await? {
            Some((record, _)) if record.id == self.id => record,
            _ => {
                self.vanished = true;
                return Ok(Changes::default());
            }
        };
        self.catch_up(store, account, &record, expunges).await
    }

    /// Takes in what changed between the view and `record`, this
    /// mailbox's record as just read.
    async fn catch_up(
        &mut self,
        store: &Mailstore,
        account: &Address,
        record: &MailboxRecord,
        expunges: bool,
    ) -> AccountResult<Changes> {
        let mut changes = Changes::default();
        self.pruned_modseq = record.pruned_modseq;
        if record.highest_modseq == self.modseq && record.uidnext == self.uidnext {
            return Ok(changes);
        }
        let (changed, gone) = if self.modseq < record.pruned_modseq {
            // The history since this view was pruned: compare with every
            // entry instead.
            let all = store
                .entries(account, &self.name, 1, record.uidnext.saturating_sub(1))
                .await?;
            let present: HashSet<u32> = all.iter().map(|e| e.uid).collect();
            let gone = self
                .msgs
                .iter()
                .map(|m| m.uid)
                .filter(|u| !present.contains(u))
                .collect();
            let changed = all
                .iter()
                .filter(|e| e.modseq > self.modseq)
                .map(|e| e.uid)
                .collect();
            (changed, gone)
        } else {
            store
                .changes(&self.id, self.modseq, record.highest_modseq)
                .await?
        };
        let gone_pending = gone.iter().filter(|&&u| self.index_of(u).is_some()).count();
        if expunges {
            let gone: BTreeSet<u32> = gone.into_iter().collect();
            for uid in gone {
                if let Some(i) = self.index_of(uid) {
                    self.msgs_mut().remove(i);
                    changes.expunged.push((i as u32 + 1, uid));
                }
            }
        }
        let before = self.msgs.len();
        if record.uidnext > self.uidnext {
            let new = store
                .entries(account, &self.name, self.uidnext, record.uidnext - 1)
                .await?;
            self.msgs_mut().extend(new.iter().map(msg_of));
        }
        if self.msgs.len() != before || !changes.expunged.is_empty() {
            changes.exists = Some(self.msgs.len());
        }
        let changed: BTreeSet<u32> = changed
            .into_iter()
            .filter(|&u| u < self.uidnext && self.index_of(u).is_some())
            .collect();
        if !changed.is_empty() {
            let indices: Vec<usize> = changed.iter().filter_map(|&u| self.index_of(u)).collect();
            for entry in self.entries(store, &indices).await? {
                if let Some(i) = self.index_of(entry.uid)
                    && entry.modseq > self.msgs[i].modseq
                {
                    let msg = &mut self.msgs_mut()[i];
                    msg.flags = entry.flags.clone();
                    msg.modseq = entry.modseq;
                    changes.flags.push(i);
                }
            }
        }
        self.uidnext = record.uidnext;
        // Expunges that may not be reported yet keep the view below them,
        // so that they are found again; with none, everything is in.
        if expunges || gone_pending == 0 {
            self.modseq = record.highest_modseq;
        }
        Ok(changes)
    }

    /// Takes in this session's own flag changes (UID, flags, MODSEQ), as
    /// committed. When their MODSEQs follow the view's without a gap, no
    /// other change came in between, so the view is current up to the
    /// last of them and the next look for changes need not read them back.
    pub fn apply_own(&mut self, changed: &[(u32, Vec<String>, u64)]) {
        for (uid, flags, modseq) in changed {
            if let Some(i) = self.index_of(*uid) {
                let msg = &mut self.msgs_mut()[i];
                msg.flags = flags.clone();
                msg.modseq = *modseq;
            }
        }
        let mut modseqs: Vec<u64> = changed.iter().map(|c| c.2).collect();
        modseqs.sort_unstable();
        let gapless = modseqs
            .iter()
            .enumerate()
            .all(|(k, &m)| m == self.modseq + 1 + k as u64);
        if gapless && let Some(&last) = modseqs.last() {
            self.modseq = last;
        }
    }

    /// Takes in `changes`, committed in this process after the view and
    /// following its MODSEQ with no gap (see [`Subscription::since`]), without
    /// reading the index; expunges included, so only where they may be
    /// reported. `None`, with the view untouched, when they do not fit the
    /// view (a new UID below UIDNEXT): [`Selected::sync`] must read them.
    ///
    /// [`Subscription::since`]: stratus_core::ports::Subscription::since
    pub fn apply_signalled(&mut self, changes: &[Change]) -> Option<Changes> {
        let mut uidnext = self.uidnext;
        for change in changes {
            if let Change::Appended { uid, .. } = change {
                if *uid < uidnext {
                    return None;
                }
                uidnext = uid + 1;
            }
        }
        let mut out = Changes::default();
        let before = self.msgs.len();
        let mut flagged = BTreeSet::new();
        for change in changes {
            match change {
                Change::Appended { uid, modseq, flags } => self.msgs_mut().push(Msg {
                    uid: *uid,
                    flags: flags.clone(),
                    modseq: *modseq,
                }),
                Change::Flags { uid, modseq, flags } => {
                    if let Some(i) = self.index_of(*uid)
                        && *modseq > self.msgs[i].modseq
                    {
                        let msg = &mut self.msgs_mut()[i];
                        msg.flags = flags.clone();
                        msg.modseq = *modseq;
                        flagged.insert(*uid);
                    }
                }
                Change::Expunged { uid, .. } => {
                    if let Some(i) = self.index_of(*uid) {
                        self.msgs_mut().remove(i);
                        // One that came and went since the last look was
                        // never announced: the client hears of neither.
                        if *uid < self.uidnext {
                            out.expunged.push((i as u32 + 1, *uid));
                        }
                    }
                }
            }
        }
        if self.msgs.len() != before || !out.expunged.is_empty() {
            out.exists = Some(self.msgs.len());
        }
        // New messages are reported by EXISTS, with the flags they have.
        out.flags = flagged
            .into_iter()
            .filter(|&u| u < self.uidnext)
            .filter_map(|u| self.index_of(u))
            .collect();
        self.uidnext = uidnext;
        self.modseq = changes.last().map_or(self.modseq, Change::modseq);
        Some(out)
    }

    /// The view's indices a sequence set names, ascending, each once.
    /// `saved` is the SEARCHRES result (UIDs). By sequence number, a
    /// number past the end is an error.
    pub fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
        saved: &[u32],
    ) -> Result<Vec<usize>, String> {
        let ranges = match set {
            SequenceSet::Saved => {
                let mut out: Vec<usize> = saved.iter().filter_map(|&u| self.index_of(u)).collect();
                out.sort_unstable();
                out.dedup();
                return Ok(out);
            }
            SequenceSet::Ranges(r) => r,
        };
        let mut out = Vec::new();
        let n = self.msgs.len() as u32;
        if uid {
            let last = self.msgs.last().map_or(0, |m| m.uid);
            for &(a, b) in ranges {
                let (a, b) = (a.resolve(last), b.resolve(last));
                let (lo, hi) = (a.min(b), a.max(b));
                let start = self.msgs.partition_point(|m| m.uid < lo);
                let end = self.msgs.partition_point(|m| m.uid <= hi);
                out.extend(start..end);
            }
        } else {
            for &(a, b) in ranges {
                let (a, b) = (a.resolve(n), b.resolve(n));
                if a > n || b > n || a == 0 || b == 0 {
                    return Err(if n == 0 {
                        "the mailbox is empty".into()
                    } else {
                        format!("no such message: the mailbox has {n} messages")
                    });
                }
                let (lo, hi) = (a.min(b), a.max(b));
                out.extend(lo as usize - 1..hi as usize);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The entries of the messages at these indices (ascending), read in
    /// UID ranges. Messages expunged meanwhile are missing from the result.
    pub async fn entries(
        &self,
        store: &Mailstore,
        indices: &[usize],
    ) -> AccountResult<Vec<MessageEntry>> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(250) {
            let lo = self.msgs[chunk[0]].uid;
            let hi = self.msgs[chunk[chunk.len() - 1]].uid;
            let wanted: BTreeSet<u32> = chunk.iter().map(|&i| self.msgs[i].uid).collect();
            let entries = store.entries_by_id(&self.id, lo, hi).await?;
            out.extend(entries.into_iter().filter(|e| wanted.contains(&e.uid)));
        }
        Ok(out)
    }

    /// Every keyword in use, for the FLAGS response at SELECT; they count
    /// as announced from then on.
    pub fn keywords(&mut self) -> Vec<String> {
        let mut set: BTreeSet<String> = BTreeSet::new();
        for m in self.msgs.iter() {
            for f in &m.flags {
                if !f.starts_with('\\') && !set.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                    set.insert(f.clone());
                }
            }
        }
        self.scanned_uid = self.msgs.last().map_or(0, |m| m.uid);
        self.announced = set.clone();
        set.into_iter().collect()
    }

    /// Whether the flags of the messages at `changed`, or of messages
    /// new since the last look, hold keywords the client was not told of
    /// (they are announced from now on: send FLAGS before any FETCH that
    /// shows them, RFC 9051 §7.3.5).
    pub fn new_keywords(&mut self, changed: &[usize]) -> bool {
        let scanned = self.scanned_uid;
        let fresh = self.msgs.iter().rev().take_while(|m| m.uid > scanned);
        let mut found = Vec::new();
        for m in changed
            .iter()
            .filter_map(|&i| self.msgs.get(i))
            .chain(fresh)
        {
            for f in &m.flags {
                if !f.starts_with('\\')
                    && !self.announced.iter().any(|k| k.eq_ignore_ascii_case(f))
                    && !found.iter().any(|k: &String| k.eq_ignore_ascii_case(f))
                {
                    found.push(f.clone());
                }
            }
        }
        self.scanned_uid = self.scanned_uid.max(self.msgs.last().map_or(0, |m| m.uid));
        let any = !found.is_empty();
        self.announced.extend(found);
        any
    }
}

fn msg_of(e: &MessageEntry) -> Msg {
    Msg {
        uid: e.uid,
        flags: e.flags.clone(),
        modseq: e.modseq,
    }
}

/// `(\Seen foo)`.
fn next_opening() -> u64 {
    static OPENINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    OPENINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Whether `uid` is in one of the session's `\Recent` ranges.
pub fn is_recent(recent: &[std::ops::Range<u32>], uid: u32) -> bool {
    let i = recent.partition_point(|r| r.end <= uid);
    recent.get(i).is_some_and(|r| r.contains(&uid))
}

/// A flag list, with `\Recent` after the stored flags when `recent`.
pub fn flag_list(out: &mut Vec<u8>, flags: &[String], recent: bool) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_bytes());
    }
    if recent {
        if !flags.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}

/// A compact sequence set of ascending numbers: `1:3,7,9:10`.
pub fn compact(numbers: &[u32]) -> String {
    in_order(numbers)
}

/// Numbers in the order given, as a sequence set (for COPYUID, whose two
/// sets pair up element by element, so no sorting).
pub fn in_order(numbers: &[u32]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(b',');
        }
        if start == end {
            let _ = write!(Lossy(&mut out), "{start}");
        } else {
            let _ = write!(Lossy(&mut out), "{start}:{end}");
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_proto::imap::command::SeqNum;

    fn view(uids: &[u32]) -> Selected {
        Selected {
            name: MailboxName::inbox(),
            id: "x".into(),
            uidvalidity: 1,
            read_only: false,
            uidnext: uids.last().map_or(1, |u| u + 1),
            modseq: 1,
            msgs: Arc::new(
                uids.iter()
                    .map(|&uid| Msg {
                        uid,
                        flags: Vec::new(),
                        modseq: 1,
                    })
                    .collect(),
            ),
            vanished: false,
            pruned_modseq: 0,
            junk: false,
            announced: BTreeSet::new(),
            scanned_uid: 0,
            recent: Vec::new(),
            recent_upto: 0,
            opened: 0,
            changes: 0,
        }
    }

    #[test]
    fn sequence_sets_resolve_by_number_and_by_uid() {
        let v = view(&[3, 5, 9, 10, 20]);
        let r = |s: Vec<(SeqNum, SeqNum)>, uid| v.resolve(&SequenceSet::Ranges(s), uid, &[]);
        use SeqNum::{Last, Value};
        assert_eq!(r(vec![(Value(2), Value(4))], false), Ok(vec![1, 2, 3]));
        assert_eq!(r(vec![(Last, Value(4))], false), Ok(vec![3, 4]));
        assert!(r(vec![(Value(6), Value(6))], false).is_err());
        assert_eq!(r(vec![(Value(4), Value(10))], true), Ok(vec![1, 2, 3]));
        assert_eq!(r(vec![(Value(21), Last)], true), Ok(vec![4]), "* is 20");
        assert_eq!(r(vec![(Value(100), Value(200))], true), Ok(vec![]));
        assert_eq!(
            v.resolve(&SequenceSet::Saved, true, &[9, 4, 20]),
            Ok(vec![2, 4])
        );
    }

    #[test]
    fn compact_sets() {
        assert_eq!(compact(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(in_order(&[5, 6, 2]), "5:6,2");
        assert_eq!(compact(&[]), "");
    }

    fn view_by_modseq(uids: &[u32]) -> Selected {
        let mut v = view(uids);
        v.id = "m".into();
        v.modseq = uids.len() as u64;
        for (m, modseq) in v.msgs_mut().iter_mut().zip(1..) {
            m.modseq = modseq;
        }
        v
    }

    #[test]
    fn signalled_changes_are_taken_in_as_a_read_would() {
        let mut s = view_by_modseq(&[1, 2, 3]);
        let seen = vec!["\\Seen".to_string()];
        let changes = s
            .apply_signalled(&[
                Change::Flags {
                    uid: 2,
                    modseq: 4,
                    flags: seen.clone(),
                },
                Change::Expunged { uid: 1, modseq: 5 },
                Change::Appended {
                    uid: 4,
                    modseq: 6,
                    flags: Vec::new(),
                },
                Change::Flags {
                    uid: 4,
                    modseq: 7,
                    flags: seen.clone(),
                },
                // Already gone: nothing to report.
                Change::Expunged { uid: 9, modseq: 8 },
                // Came and went since the last look: never announced.
                Change::Appended {
                    uid: 5,
                    modseq: 9,
                    flags: Vec::new(),
                },
                Change::Expunged { uid: 5, modseq: 10 },
            ])
            .expect("fits the view");
        assert_eq!(changes.expunged, [(1, 1)]);
        assert_eq!(changes.exists, Some(3));
        // UID 2, now the first; UID 4 is new, reported by EXISTS.
        assert_eq!(changes.flags, [0]);
        let uids: Vec<(u32, u64)> = s.msgs.iter().map(|m| (m.uid, m.modseq)).collect();
        assert_eq!(uids, [(2, 4), (3, 3), (4, 7)]);
        assert_eq!(s.msgs[2].flags, seen);
        assert_eq!((s.uidnext, s.modseq), (6, 10));
    }

    #[test]
    fn a_new_uid_below_uidnext_is_left_to_a_read() {
        let mut s = view_by_modseq(&[1, 2, 3]);
        let appended = |uid, modseq| Change::Appended {
            uid,
            modseq,
            flags: Vec::new(),
        };
        assert!(
            s.apply_signalled(&[appended(4, 4), appended(3, 5)])
                .is_none()
        );
        assert_eq!((s.msgs.len(), s.uidnext, s.modseq), (3, 4, 3), "untouched");
    }
}
