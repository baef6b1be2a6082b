//! The sweeper on a backend: what nothing references any more is deleted
//! once it has stayed so for the grace period, what is referenced never,
//! and deleted mailboxes leave no rows behind. Time is given to each pass,
//! so nothing here waits.

use std::time::Duration;

use bytes::Bytes;
use stratus_core::accounts::Accounts;
use stratus_core::mailstore::{Mailstore, NewMessage};
use stratus_core::message::analyze;
use stratus_core::ports::SkRange;
use stratus_core::sweep::{SweepReport, SweepSettings, sweep};
use stratus_core::{Address, BlobKey, Domain, MailboxName, QueueId, password};

use crate::Backend;

const HOUR: i64 = 3600;

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// Stores a body and files it into each of `to`'s INBOXes; its blob key.
async fn deliver(b: &Backend, store: &Mailstore, to: &[&str]) -> BlobKey {
    let id = QueueId::generate();
    let key = BlobKey::for_message(&id);
    let body = format!("Subject: {id}\r\n\r\nhello\r\n").into_bytes();
    b.blobs.put(&key, Bytes::from(body.clone())).await.unwrap();
    for user in to {
        store
            .append(&addr(user), &MailboxName::inbox(), entry(&id, &key, &body))
            .await
            .unwrap();
    }
    key
}

/// A new entry for the body `key` (bytes `body`), delivered as `id`.
fn entry(id: &QueueId, key: &BlobKey, body: &[u8]) -> NewMessage {
    NewMessage {
        queue_id: id.clone(),
        body: key.clone(),
        body_size: body.len() as u64,
        prefix: String::new(),
        meta: analyze(body),
        flags: Vec::new(),
        internal_date: 0,
        internal_tz: 0,
    }
}

async fn exists(b: &Backend, key: &BlobKey) -> bool {
    b.blobs.head(key).await.unwrap().is_some()
}

pub async fn sweep_gives_storage_back(b: &Backend) {
    let accounts = Accounts::new(b.index.clone());
    accounts
        .add_domain(&Domain::parse("example.com").unwrap())
        .await
        .unwrap();
    for user in ["alice@example.com", "bob@example.com"] {
        accounts
            .add_user(&addr(user), password::hash("a passphrase").unwrap(), None)
            .await
            .unwrap();
    }
    let store = Mailstore::new(b.index.clone(), b.blobs.clone(), b.changes.clone());
    let shared = deliver(b, &store, &["alice@example.com", "bob@example.com"]).await;
    let alices = deliver(b, &store, &["alice@example.com"]).await;
    let bobs = deliver(b, &store, &["bob@example.com"]).await;
    let settings = SweepSettings {
        grace: Duration::from_secs(HOUR as u64),
        in_flight: Duration::from_secs(5 * 24 * HOUR as u64),
        keep_changes: Duration::from_secs(30 * 24 * HOUR as u64),
    };
    let pass = |now: i64| async move { sweep(&b.index, &b.blobs, settings, now).await.unwrap() };
    let now = stratus_core::mailstore::now();

    // Everything referenced: nothing marked, nothing deleted.
    let first = pass(now).await;
    assert_eq!((first.entries, first.blobs), (4, 3));
    assert_eq!((first.blobs_marked, first.blobs_deleted), (0, 0));

    // alice expunges both of hers and sixty more in one go (more than
    // one transaction holds): her own messages lose their last reference,
    // the shared one keeps bob's.
    let mut extra = Vec::new();
    for _ in 0..60 {
        extra.push(deliver(b, &store, &["alice@example.com"]).await);
    }
    let inbox = MailboxName::inbox();
    let alice = addr("alice@example.com");
    let uids: Vec<u32> = (1..=62).collect();
    assert_eq!(
        store.expunge(&alice, &inbox, &uids, None).await.unwrap(),
        uids
    );
    let (mailbox, _) = store.mailbox(&alice, &inbox).await.unwrap().unwrap();
    assert_eq!((mailbox.messages, mailbox.size), (0, 0));
    // Still in flight (a queue job may read it): left alone.
    let early = pass(now + HOUR).await;
    assert_eq!((early.blobs_marked, early.blobs_deleted), (0, 0));
    // Old enough: marked, then deleted once the grace period has passed.
    let later = now + 5 * 24 * HOUR + 2 * HOUR;
    let marked = pass(later).await;
    assert_eq!(
        (marked.entries, marked.blobs_marked, marked.blobs_deleted),
        (2, 61, 0)
    );
    assert_eq!(
        pass(later + HOUR / 2).await.blobs_deleted,
        0,
        "within the grace period"
    );
    assert!(exists(b, &alices).await);
    // A send mark of alice's own message (as if it also went out): it
    // goes with the body.
    let alices_id = alices.as_str().rsplit('/').next().unwrap().to_string();
    let sent = stratus_core::ports::Key::new(
        format!("sent#{alices_id}"),
        "remote.example#x@remote.example",
    );
    let _ = b
        .index
        .transact(vec![stratus_core::ports::Write::Put {
            key: sent.clone(),
            value: b"250 ok".to_vec(),
            condition: stratus_core::ports::Condition::Any,
        }])
        .await
        .unwrap();
    let swept = pass(later + HOUR).await;
    assert_eq!(swept.blobs_deleted, 61);
    assert!(
        b.index.get(&sent).await.unwrap().is_none(),
        "its send marks went with it"
    );
    assert!(swept.bytes_freed > 0);
    assert!(!exists(b, &alices).await, "gone");
    for key in &extra {
        assert!(!exists(b, key).await);
    }
    assert!(
        exists(b, &shared).await && exists(b, &bobs).await,
        "still referenced"
    );
    // Idempotent: the next pass finds nothing to do.
    let again = pass(later + HOUR).await;
    assert_eq!(
        (again.blobs, again.blobs_marked, again.blobs_deleted),
        (2, 0, 0)
    );

    // A body referenced again before its grace period ends (a COPY racing
    // the mark) stays.
    let bob = addr("bob@example.com");
    store.expunge(&bob, &inbox, &[2], None).await.unwrap();
    assert_eq!(pass(later + 2 * HOUR).await.blobs_marked, 1);
    let body = b.blobs.get(&bobs, None).await.unwrap().unwrap();
    let copy = entry(&QueueId::generate(), &bobs, &body);
    store.append(&alice, &inbox, copy).await.unwrap();
    let kept = pass(later + 4 * HOUR).await;
    assert_eq!(kept.blobs_deleted, 0);
    assert!(exists(b, &bobs).await);
    assert!(
        b.index
            .query("sweep", SkRange::All, 10, false)
            .await
            .unwrap()
            .is_empty(),
        "its mark is gone"
    );

    // A deleted user: its mailboxes' rows go at the next pass, and the
    // bodies only it referenced after the grace period.
    let bob_inbox = store.mailbox(&bob, &inbox).await.unwrap().unwrap().0.id;
    accounts.del_user(&bob).await.unwrap();
    let reclaimed: SweepReport = pass(later + 5 * HOUR).await;
    assert_eq!(reclaimed.mailboxes_reclaimed, 6, "bob's six mailboxes");
    assert_eq!(
        reclaimed.rows_deleted, 2,
        "bob's entry and tombstone: {reclaimed:?}"
    );
    for prefix in ["msg", "gone", "chg"] {
        let rows = b
            .index
            .query(&format!("{prefix}#{bob_inbox}"), SkRange::All, 10, false)
            .await
            .unwrap();
        assert!(
            rows.is_empty(),
            "{prefix} rows of bob's INBOX remain: {rows:?}"
        );
    }
    assert_eq!(
        reclaimed.blobs_marked, 1,
        "the shared body, now only bob's was"
    );
    let gone = pass(later + 6 * HOUR).await;
    assert_eq!(gone.blobs_deleted, 1);
    assert!(!exists(b, &shared).await);
    assert!(exists(b, &bobs).await, "alice's copy keeps it");
    // Delivery markers older than the in-flight window went too.
    assert!(
        b.index
            .query("dedup#alice@example.com", SkRange::All, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
}
