//! The change feed: "mailbox X changed", for what waits on a mailbox (IMAP
//! IDLE today; JMAP push and DAV sync next).
//!
//! The [`super::super::mailstore::Mailstore`] tells the feed of every
//! change it commits ([`ChangeFeed::committed`]); a waiter subscribes to a
//! mailbox and is woken at the next change ([`Subscription::notified`]).
//! Two adapters, chosen by the composition root:
//! - [`InProcessFeed`] (embedded backend): every writer is in this process,
//!   so every change is pushed.
//! - [`PollingFeed`] (AWS backend): changes made here are pushed the same
//!   way; those made elsewhere (Lambda stages, other gateways) are not, so
//!   its subscriptions tell the waiter to stop waiting after a poll
//!   interval ([`Subscription::poll_interval`]) and read the index. A push adapter (a DynamoDB stream reader calling
//!   `committed`) can replace it behind the same trait.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// "Mailbox X changed": where committed changes are told, and where
/// waiters subscribe.
pub trait ChangeFeed: Send + Sync + fmt::Debug {
    /// Records `changes`, just committed to this mailbox (by id), and
    /// wakes everyone waiting on it.
    fn committed(&self, mailbox_id: &str, changes: Vec<Change>);
    /// A subscription to a mailbox's changes, live while the caller holds it.
    fn subscribe(&self, mailbox_id: &str) -> Arc<Subscription>;
}

/// The in-process adapter: wakes what waits on a mailbox in this process
/// as soon as a change to it commits here (in the embedded runner,
/// deliveries and every session's changes). Each subscription also keeps
/// the last changes committed here, so that a woken session can take them
/// in without reading them back. When a change made here follows one made
/// elsewhere, the MODSEQ that is missing here sends the session to the
/// index.
#[derive(Debug, Default)]
pub struct InProcessFeed {
    inner: Mutex<SignalMap>,
}

#[derive(Debug, Default)]
struct SignalMap {
    by_mailbox: HashMap<String, Weak<Subscription>>,
    /// Forgotten subscriptions are swept when the map grows past this.
    sweep_at: usize,
}

/// One change to a mailbox, as committed, with the MODSEQ it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Appended {
        uid: u32,
        modseq: u64,
        flags: Vec<String>,
    },
    Flags {
        uid: u32,
        modseq: u64,
        flags: Vec<String>,
    },
    Expunged {
        uid: u32,
        modseq: u64,
    },
}

impl Change {
    pub fn modseq(&self) -> u64 {
        match self {
            Change::Appended { modseq, .. }
            | Change::Flags { modseq, .. }
            | Change::Expunged { modseq, .. } => *modseq,
        }
    }
}

/// A subscription to one mailbox's changes, while it is held: wakes its
/// waiters, and remembers the last changes committed in this process.
#[derive(Debug, Default)]
pub struct Subscription {
    notify: Notify,
    /// Set by a feed that does not push every change: how often the waiter
    /// must look at the index itself.
    poll: OnceLock<Duration>,
    recent: Mutex<VecDeque<Change>>,
}

impl Subscription {
    /// How many changes a signal remembers.
    const KEPT: usize = 256;

    /// Completes at the next change after the future was created (or
    /// enabled); see [`Notify::notified`].
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// How long a waiter may wait for [`Self::notified`] before it must
    /// read the index, because changes made elsewhere are not pushed;
    /// `None` when every change is.
    pub fn poll_interval(&self) -> Option<Duration> {
        self.poll.get().copied()
    }

    fn poll_every(&self, interval: Duration) {
        let _ = self.poll.set(interval);
    }

    /// The changes committed in this process after MODSEQ `since`, in
    /// MODSEQ order, when they are all of them: they must follow `since`
    /// with no gap. `None` when there are none, or when one is missing
    /// (made elsewhere, forgotten, or not yet recorded), so that the caller
    /// reads what changed from the index instead.
    pub fn since(&self, since: u64) -> Option<Vec<Change>> {
        let mut after: Vec<Change> = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent
                .iter()
                .filter(|c| c.modseq() > since)
                .cloned()
                .collect()
        };
        after.sort_by_key(Change::modseq);
        let gapless = after
            .iter()
            .zip(since + 1..)
            .all(|(c, want)| c.modseq() == want);
        (gapless && !after.is_empty()).then_some(after)
    }
}

impl ChangeFeed for InProcessFeed {
    fn subscribe(&self, mailbox_id: &str) -> Arc<Subscription> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(signal) = map.by_mailbox.get(mailbox_id).and_then(Weak::upgrade) {
            return signal;
        }
        if map.by_mailbox.len() >= map.sweep_at {
            map.by_mailbox.retain(|_, w| w.strong_count() > 0);
            map.sweep_at = (map.by_mailbox.len() * 2).max(1024);
        }
        let signal = Arc::new(Subscription::default());
        map.by_mailbox
            .insert(mailbox_id.to_string(), Arc::downgrade(&signal));
        signal
    }

    /// Records `changes`, just committed to this mailbox, and wakes
    /// everyone waiting on it. Nothing is kept for a mailbox nobody holds.
    fn committed(&self, mailbox_id: &str, changes: Vec<Change>) {
        let signal = {
            let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.by_mailbox.get(mailbox_id).and_then(Weak::upgrade)
        };
        if let Some(signal) = signal {
            {
                let mut recent = signal.recent.lock().unwrap_or_else(|p| p.into_inner());
                recent.extend(changes);
                let excess = recent.len().saturating_sub(Subscription::KEPT);
                recent.drain(..excess);
            }
            signal.notify.notify_waiters();
        }
    }
}

/// The AWS adapter: [`InProcessFeed`] for changes made in this process, and
/// a wake-up every `interval` for those made elsewhere, which only the
/// index knows of.
#[derive(Debug)]
pub struct PollingFeed {
    local: InProcessFeed,
    interval: Duration,
}

impl PollingFeed {
    pub fn new(interval: Duration) -> Self {
        PollingFeed {
            local: InProcessFeed::default(),
            interval,
        }
    }
}

impl ChangeFeed for PollingFeed {
    fn committed(&self, mailbox_id: &str, changes: Vec<Change>) {
        self.local.committed(mailbox_id, changes);
    }

    fn subscribe(&self, mailbox_id: &str) -> Arc<Subscription> {
        let subscription = self.local.subscribe(mailbox_id);
        subscription.poll_every(self.interval);
        subscription
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(uid: u32, modseq: u64) -> Change {
        Change::Flags {
            uid,
            modseq,
            flags: vec!["\\Seen".into()],
        }
    }

    #[test]
    fn a_signal_hands_out_only_gapless_changes() {
        let signals = InProcessFeed::default();
        // Nobody holds this mailbox's signal: nothing is kept.
        signals.committed("m", vec![flags(1, 1)]);
        let signal = signals.subscribe("m");
        assert_eq!(signal.since(0), None);
        // Committed out of order, by two writers; MODSEQ 5 is missing.
        signals.committed("m", vec![flags(1, 3)]);
        signals.committed("m", vec![Change::Expunged { uid: 2, modseq: 2 }]);
        signals.committed("m", vec![flags(3, 6)]);
        assert_eq!(
            signal.since(1),
            None,
            "5 is missing, and the view cannot skip it"
        );
        signals.committed("m", vec![flags(4, 5), flags(4, 4)]);
        let after = signal.since(1).expect("2 to 6, all there");
        let modseqs: Vec<u64> = after.iter().map(Change::modseq).collect();
        assert_eq!(modseqs, [2, 3, 4, 5, 6]);
        assert_eq!(signal.since(4).map(|c| c.len()), Some(2));
        assert_eq!(signal.since(0), None, "1 was never recorded");
        assert_eq!(signal.since(6), None, "nothing after the last");
        // Another mailbox's signal is its own.
        assert_eq!(signals.subscribe("n").since(0), None);
        assert_eq!(signal.poll_interval(), None, "the embedded feed pushes all");
    }

    #[test]
    fn the_polling_feed_pushes_local_changes_and_asks_for_polls() {
        let feed = PollingFeed::new(Duration::from_secs(3));
        let signal = feed.subscribe("m");
        assert_eq!(signal.poll_interval(), Some(Duration::from_secs(3)));
        feed.committed("m", vec![flags(1, 1)]);
        assert_eq!(signal.since(0).map(|c| c.len()), Some(1));
    }

    #[test]
    fn a_signal_forgets_the_oldest_changes() {
        let signals = InProcessFeed::default();
        let signal = signals.subscribe("m");
        let n = Subscription::KEPT as u64 + 10;
        signals.committed("m", (1..=n).map(|m| flags(1, m)).collect());
        assert_eq!(signal.since(0), None, "the first ten are gone");
        assert_eq!(
            signal.since(10).map(|c| c.len()),
            Some(Subscription::KEPT),
            "the rest are all there"
        );
    }
}
