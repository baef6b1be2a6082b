//! The queue contract. Backends are opened with at most 2 receives before
//! dead-lettering.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use stratus_core::Queue;
use stratus_core::ports::{MAX_JOB_BYTES, NewJob, QueueName};

use crate::{Backend, eventually};

const Q: QueueName = QueueName::Deliver;
const LONG: Duration = Duration::from_secs(60);
const PATIENCE: Duration = Duration::from_secs(20);

async fn receive_one(q: &dyn Queue, visibility: Duration) -> Option<stratus_core::ports::Delivery> {
    let mut got = q
        .receive(Q, 1, visibility, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(got.len() <= 1);
    got.pop()
}

pub async fn send_receive_ack(b: &Backend) {
    let q = &*b.queue;
    assert!(
        q.receive(Q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let empty = q.depth(Q).await.unwrap();
    q.send(Q, br#"{"job":1}"#, Duration::ZERO).await.unwrap();
    let waiting = q.depth(Q).await.unwrap();
    // The age of the oldest ready job: the embedded queue knows it (zero
    // when none waits), SQS does not say.
    if b.name == "aws" {
        assert_eq!((empty.oldest_ready, waiting.oldest_ready), (None, None));
    } else {
        assert_eq!(empty.oldest_ready, Some(Duration::ZERO));
        let age = waiting.oldest_ready.expect("the embedded queue knows");
        assert!(age < Duration::from_secs(60), "{age:?}");
    }
    let d = receive_one(q, LONG).await.expect("job delivered");
    assert_eq!(d.body, br#"{"job":1}"#);
    assert_eq!(d.receive_count, 1);
    assert!(
        receive_one(q, LONG).await.is_none(),
        "hidden while in flight"
    );
    q.ack(Q, &d.receipt).await.unwrap();
    assert!(
        q.receive(Q, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    // Other queues are separate.
    q.send(QueueName::Route, b"r", Duration::ZERO)
        .await
        .unwrap();
    assert!(
        q.receive(Q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(receive_one(q, LONG).await, None);
}

pub async fn redelivery_after_visibility_timeout(b: &Backend) {
    let q = &*b.queue;
    q.send(Q, b"again", Duration::ZERO).await.unwrap();
    let first = receive_one(q, Duration::from_secs(2))
        .await
        .expect("delivered");
    let taken = Instant::now();
    let second = eventually(PATIENCE, "redelivery", || async {
        receive_one(q, LONG).await
    })
    .await;
    assert!(
        taken.elapsed() >= Duration::from_millis(1500),
        "came back after {:?}, before its timeout",
        taken.elapsed()
    );
    assert_eq!(second.body, b"again");
    assert_eq!(second.id, first.id, "the same job");
    assert_eq!(second.receive_count, 2);
    q.ack(Q, &second.receipt).await.unwrap();
    assert!(
        q.receive(Q, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    // retry_later hides a job for the given time.
    q.send(Q, b"later", Duration::ZERO).await.unwrap();
    let d = receive_one(q, LONG).await.unwrap();
    q.retry_later(Q, &d.receipt, Duration::from_secs(1))
        .await
        .unwrap();
    let back = eventually(PATIENCE, "retry", || async { receive_one(q, LONG).await }).await;
    assert_eq!(
        (back.body.as_slice(), back.receive_count),
        (&b"later"[..], 2)
    );
    q.ack(Q, &back.receipt).await.unwrap();
}

/// A stage's finish: the jobs that follow are enqueued and the finished
/// job is gone.
pub async fn send_and_ack(b: &Backend) {
    let q = &*b.queue;
    q.send(Q, b"stage", Duration::ZERO).await.unwrap();
    let d = receive_one(q, LONG).await.expect("delivered");
    let next = |queue, body: &[u8], delay| NewJob {
        queue,
        body: body.to_vec(),
        delay,
    };
    // A job the queue refuses fails the whole step before anything is
    // enqueued or acknowledged.
    let err = q
        .send_and_ack(
            Q,
            &d.receipt,
            vec![next(QueueName::Route, b"", Duration::ZERO)],
        )
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(q.depth(Q).await.unwrap().in_flight, 1, "not acknowledged");
    q.send_and_ack(
        Q,
        &d.receipt,
        vec![
            next(QueueName::Route, b"routed", Duration::ZERO),
            next(Q, b"later", Duration::from_secs(1)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(q.depth(Q).await.unwrap().in_flight, 0, "acknowledged");
    let routed = eventually(PATIENCE, "the routed job", || async {
        q.receive(QueueName::Route, 10, LONG, Duration::from_secs(1))
            .await
            .unwrap()
            .pop()
    })
    .await;
    assert_eq!(routed.body, b"routed");
    q.ack(QueueName::Route, &routed.receipt).await.unwrap();
    let later = eventually(PATIENCE, "the delayed job", || async {
        receive_one(q, LONG).await
    })
    .await;
    assert_eq!(
        (later.body.as_slice(), later.receive_count),
        (&b"later"[..], 1),
        "the finished job is gone; only the new one comes"
    );
    q.ack(Q, &later.receipt).await.unwrap();
    assert!(receive_one(q, LONG).await.is_none());

    // A receipt gone stale (the job came back and another consumer has
    // it) enqueues nothing on the embedded queue, which commits the two
    // at once; SQS promises at least once, and ignores a stale receipt.
    if b.name == "local" {
        q.send(Q, b"slow", Duration::ZERO).await.unwrap();
        let first = receive_one(q, Duration::ZERO).await.expect("delivered");
        let again = receive_one(q, LONG).await.expect("back at once");
        assert_ne!(first.receipt, again.receipt);
        let err = q
            .send_and_ack(
                Q,
                &first.receipt,
                vec![next(QueueName::Route, b"twice", Duration::ZERO)],
            )
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(
            q.receive(QueueName::Route, 10, LONG, Duration::ZERO)
                .await
                .unwrap()
                .is_empty(),
            "nothing enqueued for the stale receipt"
        );
        q.send_and_ack(Q, &again.receipt, Vec::new()).await.unwrap();
        assert_eq!(q.depth(Q).await.unwrap().in_flight, 0);
    }
}

pub async fn dead_lettering(b: &Backend) {
    let q = &*b.queue;
    q.send(Q, b"poison", Duration::ZERO).await.unwrap();
    let mut receives = 0;
    let deadline = Instant::now() + PATIENCE;
    // Visibility 0: every receive fails to ack, as a crashing handler would.
    let dead = loop {
        for d in q
            .receive(Q, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
        {
            assert_eq!(d.body, b"poison");
            receives += 1;
        }
        let dead = q.receive_dead(Q, 10, LONG).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached the dead-letter queue ({receives} receives)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        receives, 2,
        "received exactly the limit before dead-lettering"
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, b"poison");
    assert!(
        q.receive(Q, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "gone from the main queue"
    );
    q.ack_dead(Q, &dead[0].receipt).await.unwrap();
    assert!(
        q.receive_dead(Q, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn delayed_jobs(b: &Backend) {
    let q = &*b.queue;
    let sent = Instant::now();
    q.send(Q, b"delayed", Duration::from_secs(2)).await.unwrap();
    q.send(Q, b"now", Duration::ZERO).await.unwrap();
    let first = receive_one(q, LONG).await.expect("the undelayed job");
    assert_eq!(first.body, b"now");
    let d = eventually(PATIENCE, "the delayed job", || async {
        receive_one(q, LONG).await
    })
    .await;
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "delayed job came after {:?}",
        sent.elapsed()
    );
    assert_eq!(d.body, b"delayed");
}

pub async fn bad_requests_are_permanent(b: &Backend) {
    let q = &*b.queue;
    for (body, delay) in [
        (vec![b'x'; MAX_JOB_BYTES + 1], Duration::ZERO),
        (Vec::new(), Duration::ZERO),
        (vec![0xff, 0xfe], Duration::ZERO),
        (b"nul\0byte".to_vec(), Duration::ZERO),
        (b"ok".to_vec(), Duration::from_secs(16 * 60)),
    ] {
        let err = q.send(Q, &body, delay).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }
    assert!(
        !q.receive(Q, 11, LONG, Duration::ZERO)
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert!(
        q.send(Q, &vec![b'x'; MAX_JOB_BYTES], Duration::ZERO)
            .await
            .is_ok(),
        "the limit itself fits"
    );
}

/// Several consumers share a queue; every job is processed. The embedded
/// queue hands each job to one consumer only; SQS standard queues promise
/// at-least-once delivery (and moto, under load, shows it), which is why
/// every stage is idempotent: there a duplicate is allowed, a loss not.
pub async fn competing_consumers(b: &Backend) {
    let jobs = 40;
    for n in 0..jobs {
        b.queue
            .send(Q, format!("job-{n}").as_bytes(), Duration::ZERO)
            .await
            .unwrap();
    }
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = b.queue.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = q
                        .receive(Q, 5, LONG, Duration::from_millis(500))
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    for d in got {
                        q.ack(Q, &d.receipt).await.unwrap();
                        mine.push(String::from_utf8(d.body).unwrap());
                    }
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let exactly_once = b.name == "local";
    for c in consumers {
        for body in c.await.unwrap() {
            let first = seen.insert(body.clone());
            assert!(first || !exactly_once, "{body} delivered twice");
        }
    }
    assert_eq!(seen.len(), jobs);
    let depth = b.queue.depth(Q).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 0));
}

/// A process that dies holding a job: after a restart the job comes back once
/// its visibility timeout ends (embedded backend; SQS does this by itself).
pub async fn in_flight_jobs_survive_a_crash(b: &Backend) {
    let reopen = b.reopen_queue.as_ref().expect("embedded backend");
    b.queue.send(Q, b"survivor", Duration::ZERO).await.unwrap();
    let d = receive_one(&*b.queue, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(d.body, b"survivor");
    let restarted = reopen();
    let back = eventually(PATIENCE, "the job after restart", || async {
        receive_one(&*restarted, LONG).await
    })
    .await;
    assert_eq!(
        (back.body.as_slice(), back.receive_count),
        (&b"survivor"[..], 2)
    );
    let depth = restarted.depth(Q).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (0, 1, 0));
}
