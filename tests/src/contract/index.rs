//! The index contract.

use std::collections::BTreeSet;
use std::sync::Arc;

use stratus_core::Index;
use stratus_core::ports::{Condition, IndexExt, Key, MAX_VALUE_BYTES, Outcome, SkRange, Write};

use crate::Backend;

fn k(pk: &str, sk: &str) -> Key {
    Key::new(pk, sk)
}

pub async fn round_trip_and_versions(b: &Backend) {
    let i = &b.index;
    assert_eq!(i.get(&k("p", "missing")).await.unwrap(), None);
    assert_eq!(
        i.put(k("p", "a"), b"one".to_vec(), Condition::Any)
            .await
            .unwrap(),
        Outcome::Applied
    );
    let first = i.get(&k("p", "a")).await.unwrap().unwrap();
    assert_eq!((first.value.as_slice(), first.version), (&b"one"[..], 1));
    assert_eq!(
        i.put(k("p", "a"), vec![0, 255, 1], Condition::Any)
            .await
            .unwrap(),
        Outcome::Applied
    );
    let second = i.get(&k("p", "a")).await.unwrap().unwrap();
    assert_eq!(
        (second.value.as_slice(), second.version),
        (&[0u8, 255, 1][..], 2),
        "binary values and a new version"
    );
    assert_eq!(
        i.delete(k("p", "a"), Condition::Any).await.unwrap(),
        Outcome::Applied
    );
    assert_eq!(i.get(&k("p", "a")).await.unwrap(), None);
    assert_eq!(
        i.delete(k("p", "a"), Condition::Any).await.unwrap(),
        Outcome::Applied,
        "deleting a missing item is fine"
    );
    let unicode = k("mbox#jörg@bücher.example", "Projekte/Übersicht");
    assert_eq!(
        i.put(unicode.clone(), b"x".to_vec(), Condition::Absent)
            .await
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(i.get(&unicode).await.unwrap().unwrap().key, unicode);
}

pub async fn conditional_write_conflicts(b: &Backend) {
    let i = &b.index;
    let key = k("cond", "x");
    assert_eq!(
        i.put(key.clone(), b"1".to_vec(), Condition::Present)
            .await
            .unwrap(),
        Outcome::Conflict
    );
    assert_eq!(
        i.put(key.clone(), b"1".to_vec(), Condition::Version(1))
            .await
            .unwrap(),
        Outcome::Conflict
    );
    assert_eq!(
        i.put(key.clone(), b"1".to_vec(), Condition::Absent)
            .await
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        i.put(key.clone(), b"2".to_vec(), Condition::Absent)
            .await
            .unwrap(),
        Outcome::Conflict,
        "uniqueness"
    );
    assert_eq!(
        i.put(key.clone(), b"2".to_vec(), Condition::Version(7))
            .await
            .unwrap(),
        Outcome::Conflict,
        "stale version"
    );
    assert_eq!(
        i.put(key.clone(), b"2".to_vec(), Condition::Version(1))
            .await
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        i.delete(key.clone(), Condition::Version(1)).await.unwrap(),
        Outcome::Conflict
    );
    assert_eq!(i.get(&key).await.unwrap().unwrap().value, b"2");

    // A transaction with one failing condition writes nothing at all.
    let txn = vec![
        Write::Put {
            key: k("cond", "y"),
            value: b"y".to_vec(),
            condition: Condition::Absent,
        },
        Write::Delete {
            key: key.clone(),
            condition: Condition::Any,
        },
        Write::Check {
            key: k("cond", "nothing"),
            condition: Condition::Present,
        },
    ];
    assert_eq!(i.transact(txn).await.unwrap(), Outcome::Conflict);
    assert_eq!(i.get(&k("cond", "y")).await.unwrap(), None);
    assert!(i.get(&key).await.unwrap().is_some());

    let txn = vec![
        Write::Put {
            key: k("cond", "y"),
            value: b"y".to_vec(),
            condition: Condition::Absent,
        },
        Write::Delete {
            key: key.clone(),
            condition: Condition::Version(2),
        },
        Write::Check {
            key: k("cond", "nothing"),
            condition: Condition::Absent,
        },
        Write::Check {
            key: k("cond", "other"),
            condition: Condition::Any,
        },
    ];
    assert_eq!(i.transact(txn).await.unwrap(), Outcome::Applied);
    assert!(i.get(&k("cond", "y")).await.unwrap().is_some());
    assert_eq!(i.get(&key).await.unwrap(), None);
}

pub async fn bad_requests_are_permanent(b: &Backend) {
    let i = &b.index;
    let too_big = vec![b'x'; MAX_VALUE_BYTES + 1];
    let err = i
        .put(k("big", "x"), too_big, Condition::Any)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        i.put(k("big", "x"), vec![b'x'; MAX_VALUE_BYTES], Condition::Any)
            .await
            .is_ok(),
        "the limit itself fits"
    );
    for bad in [
        k("", "x"),
        k("p", ""),
        k("p\u{1}", "x"),
        k("p", &"s".repeat(2000)),
    ] {
        let err = i.get(&bad).await.unwrap_err();
        assert!(!err.is_retryable(), "{bad:?}: {err}");
    }
    let dup = vec![
        Write::Check {
            key: k("a", "b"),
            condition: Condition::Any,
        },
        Write::Check {
            key: k("a", "b"),
            condition: Condition::Any,
        },
    ];
    assert!(!i.transact(dup).await.unwrap_err().is_retryable());
    assert!(!i.transact(vec![]).await.unwrap_err().is_retryable());
}

pub async fn queries(b: &Backend) {
    let i = &b.index;
    // 1,200 items, written 100 per transaction, so a query spans pages.
    for chunk in 0..12 {
        let writes = (0..100)
            .map(|n| {
                let uid = chunk * 100 + n + 1;
                Write::Put {
                    key: k("q", &format!("uid#{uid:010}")),
                    value: uid.to_string().into_bytes(),
                    condition: Condition::Absent,
                }
            })
            .collect();
        assert_eq!(i.transact(writes).await.unwrap(), Outcome::Applied);
    }
    assert_eq!(
        i.put(k("q", "meta"), b"m".to_vec(), Condition::Any)
            .await
            .unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        i.put(
            k("q-other", "uid#0000000001"),
            b"o".to_vec(),
            Condition::Any
        )
        .await
        .unwrap(),
        Outcome::Applied
    );

    let uids = |items: Vec<stratus_core::ports::Item>| {
        items
            .into_iter()
            .map(|it| String::from_utf8(it.value).unwrap())
            .collect::<Vec<_>>()
    };
    let all = i
        .query("q", SkRange::Prefix("uid#".into()), usize::MAX, false)
        .await
        .unwrap();
    assert_eq!(all.len(), 1200);
    assert!(
        all.windows(2).all(|w| w[0].key.sk < w[1].key.sk),
        "sort-key order"
    );
    assert_eq!(
        i.query("q", SkRange::All, usize::MAX, false)
            .await
            .unwrap()
            .len(),
        1201
    );
    assert_eq!(
        uids(
            i.query(
                "q",
                SkRange::Between("uid#0000000005".into(), "uid#0000000007".into()),
                10,
                false
            )
            .await
            .unwrap()
        ),
        ["5", "6", "7"]
    );
    assert_eq!(
        uids(
            i.query("q", SkRange::Prefix("uid#".into()), 3, true)
                .await
                .unwrap()
        ),
        ["1200", "1199", "1198"]
    );
    assert_eq!(
        uids(
            i.query("q", SkRange::From("uid#0000001199".into()), 10, false)
                .await
                .unwrap()
        ),
        ["1199", "1200"]
    );
    assert_eq!(
        uids(
            i.query("q", SkRange::Prefix("uid#".into()), 2, false)
                .await
                .unwrap()
        ),
        ["1", "2"]
    );
    assert!(
        i.query("nobody", SkRange::All, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
}

/// 50 tasks take numbers from one counter, and 50 more allocate UIDs by
/// compare-and-set on one item (as mailbox UID allocation does): no number is
/// handed out twice and none is skipped.
pub async fn concurrent_allocation(b: &Backend) {
    let counter = k("alloc", "counter");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let i = b.index.clone();
            let counter = counter.clone();
            tokio::spawn(async move { i.increment(&counter, 1).await.unwrap() })
        })
        .collect();
    let mut got = BTreeSet::new();
    for t in tasks {
        assert!(got.insert(t.await.unwrap()), "duplicate counter value");
    }
    assert_eq!(got, (1..=50).collect::<BTreeSet<u64>>(), "no gaps");
    assert_eq!(b.index.counter(&counter).await.unwrap(), 50);
    assert_eq!(b.index.increment(&counter, 10).await.unwrap(), 60);
    assert_eq!(b.index.counter(&k("alloc", "never")).await.unwrap(), 0);
    assert_eq!(
        b.index.get(&counter).await.unwrap(),
        None,
        "counters live apart from items"
    );

    let mailbox = k("alloc", "mailbox");
    assert_eq!(
        b.index
            .put(mailbox.clone(), b"0".to_vec(), Condition::Absent)
            .await
            .unwrap(),
        Outcome::Applied
    );
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let i: Arc<dyn Index> = b.index.clone();
            let mailbox = mailbox.clone();
            tokio::spawn(async move { allocate_uid(&*i, &mailbox, n).await })
        })
        .collect();
    let mut uids = BTreeSet::new();
    for t in tasks {
        assert!(uids.insert(t.await.unwrap()), "duplicate UID");
    }
    assert_eq!(uids, (1..=50).collect::<BTreeSet<u64>>(), "no gaps");
    for uid in 1..=50u64 {
        assert!(
            b.index
                .get(&k("alloc", &format!("uid#{uid:010}")))
                .await
                .unwrap()
                .is_some(),
            "entry for UID {uid}"
        );
    }
}

/// The mailbox pattern: read the last UID, then in one transaction bump it
/// (only if nobody else did) and create the entry (only if absent).
async fn allocate_uid(i: &dyn Index, mailbox: &Key, n: u32) -> u64 {
    loop {
        let current = i.get(mailbox).await.unwrap().unwrap();
        let last: u64 = String::from_utf8(current.value.clone())
            .unwrap()
            .parse()
            .unwrap();
        let uid = last + 1;
        let writes = vec![
            Write::Put {
                key: mailbox.clone(),
                value: uid.to_string().into_bytes(),
                condition: Condition::Version(current.version),
            },
            Write::Put {
                key: k("alloc", &format!("uid#{uid:010}")),
                value: n.to_string().into_bytes(),
                condition: Condition::Absent,
            },
        ];
        if i.transact(writes).await.unwrap() == Outcome::Applied {
            return uid;
        }
    }
}
