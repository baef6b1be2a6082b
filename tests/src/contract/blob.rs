//! The blob store contract.

use std::sync::Arc;

use bytes::Bytes;
use stratus_core::{BlobKey, BlobStore, StoreError};

use crate::Backend;

fn key(s: &str) -> BlobKey {
    BlobKey::parse(s).expect("valid key")
}

pub async fn round_trip_and_missing_keys(b: &Backend) {
    let s = &b.blobs;
    let k = key("msg/round/trip");
    assert_eq!(
        s.get(&k, None).await.unwrap(),
        None,
        "missing key reads as None"
    );
    assert_eq!(s.head(&k).await.unwrap(), None);
    s.delete(&k).await.expect("deleting a missing key succeeds");

    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.put(&k, Bytes::from(body.clone())).await.unwrap();
    assert_eq!(s.get(&k, None).await.unwrap().unwrap(), body);
    assert_eq!(s.head(&k).await.unwrap(), Some(70_000));

    s.put(&k, Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(s.get(&k, None).await.unwrap().unwrap(), &b"replaced"[..]);
    s.put(&k, Bytes::new()).await.unwrap();
    assert_eq!(s.head(&k).await.unwrap(), Some(0), "empty objects exist");

    s.delete(&k).await.unwrap();
    assert_eq!(s.get(&k, None).await.unwrap(), None);
}

pub async fn byte_ranges(b: &Backend) {
    let s = &b.blobs;
    let k = key("msg/ranges");
    s.put(&k, Bytes::from_static(b"0123456789")).await.unwrap();
    let get = |r: std::ops::Range<u64>| {
        let (s, k) = (s.clone(), k.clone());
        async move { s.get(&k, Some(r)).await.unwrap().unwrap() }
    };
    assert_eq!(get(0..4).await, &b"0123"[..]);
    assert_eq!(get(4..10).await, &b"456789"[..]);
    assert_eq!(get(9..10).await, &b"9"[..]);
    assert_eq!(get(7..100).await, &b"789"[..], "end is clamped to the size");
    assert_eq!(get(10..20).await, &b""[..], "a range past the end is empty");
    assert_eq!(get(3..3).await, &b""[..]);
    assert_eq!(s.get(&key("msg/none"), Some(0..4)).await.unwrap(), None);
}

/// Bodies over 8 MiB take the multipart path on S3; a range inside the second
/// part proves the parts were joined in order.
pub async fn large_bodies(b: &Backend) {
    let s = &b.blobs;
    let k = key("msg/large");
    let size = 9 * 1024 * 1024 + 123;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    s.put(&k, Bytes::from(body.clone())).await.unwrap();
    assert_eq!(s.head(&k).await.unwrap(), Some(size as u64));
    let start = 8 * 1024 * 1024 - 10;
    let part = s
        .get(&k, Some(start as u64..start as u64 + 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(part, &body[start..start + 100]);
    assert_eq!(s.get(&k, None).await.unwrap().unwrap(), body);
}

pub async fn listing(b: &Backend) {
    let s = &b.blobs;
    for k in ["list/a/2", "list/a/1", "list/a/3", "list/b/1", "listing/x"] {
        s.put(&key(k), Bytes::from(k.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let names = |v: Vec<stratus_core::ports::BlobMeta>| {
        v.into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(s.list("list/a/", None, 100).await.unwrap()),
        ["list/a/1", "list/a/2", "list/a/3"]
    );
    assert_eq!(
        names(s.list("list/", None, 100).await.unwrap()),
        ["list/a/1", "list/a/2", "list/a/3", "list/b/1"]
    );
    assert_eq!(
        names(s.list("list", None, 2).await.unwrap()),
        ["list/a/1", "list/a/2"]
    );
    assert_eq!(
        names(s.list("list/", Some(&key("list/a/2")), 100).await.unwrap()),
        ["list/a/3", "list/b/1"]
    );
    let sizes: Vec<u64> = s
        .list("list/a/", None, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.size)
        .collect();
    assert_eq!(sizes, [8, 8, 8]);
    assert!(s.list("nothing/", None, 100).await.unwrap().is_empty());
}

/// Readers racing a writer see a whole old or a whole new object, never a mix.
pub async fn puts_are_atomic(b: &Backend) {
    let k = key("msg/atomic");
    let size = 512 * 1024;
    b.blobs
        .put(&k, Bytes::from(vec![b'a'; size]))
        .await
        .unwrap();
    let writer = {
        let (s, k) = (b.blobs.clone(), k.clone());
        tokio::spawn(async move {
            for i in 0..10u8 {
                s.put(&k, Bytes::from(vec![b'b' + i; size])).await.unwrap();
            }
        })
    };
    let reader = {
        let (s, k): (Arc<dyn BlobStore>, _) = (b.blobs.clone(), k.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..20 {
                let body = s.get(&k, None).await.unwrap().expect("never missing");
                assert_eq!(body.len(), size, "partial object visible");
                assert!(body.iter().all(|&c| c == body[0]), "mixed object visible");
                reads += 1;
            }
            reads
        })
    };
    writer.await.unwrap();
    assert_eq!(reader.await.unwrap(), 20);
}

pub async fn bad_keys_are_refused(_b: &Backend) {
    for bad in ["../etc/passwd", "/abs", "a//b", "sp ace"] {
        assert!(BlobKey::parse(bad).is_err(), "{bad}");
    }
    // An error from a port says whether to retry.
    let e = StoreError::permanent("x", "y");
    assert!(!e.is_retryable());
}
