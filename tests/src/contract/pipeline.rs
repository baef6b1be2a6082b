//! The pipeline stages on a backend: a message accepted by the gateway
//! (body in the blob store, job on the inbound queue) reaches the right
//! mailboxes and the archive, once, whatever is delivered twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stratus_core::accounts::Accounts;
use stratus_core::job::{Accepted, DmarcPolicy, Envelope, Job, Origin, Recipient};
use stratus_core::mailstore::{Appended, Mailstore, NewMessage};
use stratus_core::message::analyze;
use stratus_core::ports::{Key, QueueName, SkRange};
use stratus_core::{Address, BlobKey, BlobStore, Domain, MailboxName, QueueId, password};
use stratus_pipeline::runner::drain;
use stratus_pipeline::{Settings, handle};

use crate::Backend;

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn settings() -> Settings {
    Settings::new("mx.test.example")
}

async fn setup(b: &Backend) -> Accounts {
    let a = Accounts::new(b.index.clone());
    a.add_domain(&Domain::parse("example.com").unwrap())
        .await
        .unwrap();
    for user in ["alice@example.com", "bob@example.com"] {
        a.add_user(&addr(user), password::hash("pw").unwrap(), None)
            .await
            .unwrap();
    }
    a.add_alias(
        &addr("team@example.com"),
        vec![addr("alice@example.com"), addr("bob@example.com")],
    )
    .await
    .unwrap();
    a.add_alias(
        &addr("all@example.com"),
        vec![addr("team@example.com"), addr("alice@example.com")],
    )
    .await
    .unwrap();
    a
}

/// Stores a body and returns the inbound job the gateway would enqueue.
async fn accept(b: &Backend, body: &[u8], rcpts: &[&str]) -> Accepted {
    let queue_id = QueueId::generate();
    let key = BlobKey::for_message(&queue_id);
    b.blobs.put(&key, Bytes::from(body.to_vec())).await.unwrap();
    Accepted {
        queue_id,
        envelope: Envelope {
            mail_from: Some(addr("sender@remote.example")),
            recipients: rcpts
                .iter()
                .map(|r| Recipient {
                    address: addr(r),
                    notify: None,
                    orcpt: None,
                    forwarded_by: None,
                })
                .collect(),
            smtputf8: false,
            eight_bit: false,
            ret: None,
            envid: None,
            requiretls: false,
        },
        body: key,
        size: body.len() as u64,
        received_at: 1_751_356_800,
        origin: Origin::Inbound,
        auth_results: Some("spf=pass smtp.mailfrom=remote.example".into()),
        arrival: None,
        dmarc_failure: None,
        hosted_dmarc_failure: None,
        author_policy: None,
        sign_as: None,
        headers: String::new(),
        spam_listed: Vec::new(),
        filings: Vec::new(),
    }
}

/// Puts `message` on the inbound queue, as the gateway does after DATA.
async fn enqueue_inbound(b: &Backend, message: &Accepted) {
    b.queue
        .send(
            QueueName::Inbound,
            &Job::Inbound(message.clone()).to_json(),
            Duration::ZERO,
        )
        .await
        .unwrap();
}

/// The archive index's entries for the month of `accept`'s messages.
async fn archived(b: &Backend) -> Vec<stratus_core::ports::Item> {
    b.index
        .query("archive#2025-07", SkRange::All, 10, false)
        .await
        .unwrap()
}

async fn entries(
    b: &Backend,
    user: &str,
    mailbox: &str,
) -> Vec<stratus_core::mailstore::MessageEntry> {
    Mailstore::new(b.index.clone(), b.blobs.clone(), b.changes.clone())
        .entries(
            &addr(user),
            &MailboxName::parse(mailbox).unwrap(),
            1,
            u32::MAX,
        )
        .await
        .unwrap()
}

const BODY: &[u8] = b"From: Sender <sender@remote.example>\r\nTo: team@example.com\r\nSubject: Hello team\r\nMessage-ID: <hello@remote.example>\r\n\r\nHi all.\r\n";

pub async fn message_reaches_mailboxes_and_archive(b: &Backend) {
    setup(b).await;
    let message = accept(b, BODY, &["all@example.com", "bob+news@example.com"]).await;
    enqueue_inbound(b, &message).await;
    let ran = drain(&*b.queue, &b.ports(), &settings()).await.unwrap();
    assert_eq!(ran, 5, "filter, route, two deliveries, archive");

    for user in ["alice@example.com", "bob@example.com"] {
        let inbox = entries(b, user, "INBOX").await;
        assert_eq!(inbox.len(), 1, "{user}: one copy though reached three ways");
        let e = &inbox[0];
        assert_eq!((e.uid, e.modseq), (1, 2));
        assert_eq!(e.queue_id, message.queue_id);
        assert!(
            e.prefix
                .starts_with("Return-Path: <sender@remote.example>\r\nDelivered-To: "),
            "{}",
            e.prefix
        );
        assert!(e.prefix.contains(&format!("Delivered-To: {user}\r\n")));
        assert!(
            e.prefix
                .contains("Authentication-Results: mx.test.example; spf=pass"),
            "{}",
            e.prefix
        );
        assert_eq!(e.size, e.prefix.len() as u64 + BODY.len() as u64);
        assert_eq!(e.internal_date, 1_751_356_800);
        let meta = e.meta.as_ref().expect("inline metadata");
        assert_eq!(meta.envelope.subject.as_deref(), Some("Hello team"));
        assert_eq!(e.body, message.body, "the body is stored once and shared");
        assert!(entries(b, user, "Junk").await.is_empty());
    }
    let store = Mailstore::new(b.index.clone(), b.blobs.clone(), b.changes.clone());
    let (inbox, _) = store
        .mailbox(&addr("alice@example.com"), &MailboxName::inbox())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            inbox.messages,
            inbox.unseen,
            inbox.uidnext,
            inbox.highest_modseq
        ),
        (1, 1, 2, 2)
    );
    assert_eq!(
        inbox.size,
        entries(b, "alice@example.com", "INBOX").await[0].size
    );

    let month = archived(b).await;
    assert_eq!(month.len(), 1, "one archive entry");
    let entry: stratus_core::archive::ArchiveEntry =
        serde_json::from_slice(&month[0].value).unwrap();
    assert_eq!(entry.subject.as_deref(), Some("Hello team"));
    assert_eq!(entry.message_id.as_deref(), Some("<hello@remote.example>"));
    assert_eq!(entry.from.as_deref(), Some("sender@remote.example"));
    assert_eq!(entry.recipients.len(), 2);
    assert_eq!(
        b.archive.get(&entry.blob, None).await.unwrap().unwrap(),
        BODY,
        "journal copy"
    );
    assert!(entry.blob.as_str().starts_with("journal/2025/07/01/"));
}

pub async fn dmarc_quarantine_files_to_junk(b: &Backend) {
    setup(b).await;
    let mut message = accept(b, BODY, &["alice@example.com"]).await;
    message.dmarc_failure = Some(DmarcPolicy::Quarantine);
    message.auth_results = Some("dmarc=fail header.from=remote.example".into());
    enqueue_inbound(b, &message).await;
    drain(&*b.queue, &b.ports(), &settings()).await.unwrap();
    assert!(entries(b, "alice@example.com", "INBOX").await.is_empty());
    let junk = entries(b, "alice@example.com", "Junk").await;
    assert_eq!(junk.len(), 1);
    assert!(junk[0].prefix.contains("dmarc=fail"));

    // A user who deleted Junk gets quarantined mail in the inbox, once
    // however often the delivery runs.
    Accounts::new(b.index.clone())
        .delete_mailbox(
            &addr("alice@example.com"),
            &MailboxName::parse("Junk").unwrap(),
        )
        .await
        .unwrap();
    let mut message = accept(b, BODY, &["alice@example.com"]).await;
    message.dmarc_failure = Some(DmarcPolicy::Quarantine);
    let deliver = Job::Deliver {
        message,
        recipient: addr("alice@example.com"),
        mailbox: MailboxName::parse("Junk").unwrap(),
        attempt: 0,
        not_before: 0,
        filed: Default::default(),
    };
    for _ in 0..2 {
        handle(deliver.clone(), &b.ports(), &settings())
            .await
            .unwrap();
    }
    assert_eq!(entries(b, "alice@example.com", "INBOX").await.len(), 1);
}

/// Mail from outside that claims a hosted domain and fails DMARC reaches
/// the local users an alias leads to, never its targets elsewhere; the
/// same alias forwards mail that did not fail.
pub async fn dmarc_failing_hosted_mail_is_not_forwarded(b: &Backend) {
    let accounts = setup(b).await;
    accounts
        .add_alias(
            &addr("fwd@example.com"),
            vec![addr("carol@remote.example"), addr("alice@example.com")],
        )
        .await
        .unwrap();
    let route = |message: Accepted| Job::Route {
        message,
        verdict: stratus_core::job::Verdict::Deliver,
    };
    let kinds = |jobs: &[Job]| -> Vec<String> {
        jobs.iter()
            .map(|j| match j {
                Job::Deliver { recipient, .. } => format!("deliver {recipient}"),
                Job::Send { recipients, .. } => format!("send {}", recipients[0].address),
                other => format!("{:?}", other.queue()),
            })
            .collect()
    };
    let mut forged = accept(b, BODY, &["fwd@example.com"]).await;
    forged.dmarc_failure = Some(DmarcPolicy::None);
    forged.hosted_dmarc_failure = Some(Domain::parse("example.com").unwrap());
    let jobs = handle(route(forged), &b.ports(), &settings())
        .await
        .unwrap();
    assert_eq!(kinds(&jobs), ["deliver alice@example.com", "Archive"]);

    let honest = accept(b, BODY, &["fwd@example.com"]).await;
    let jobs = handle(route(honest), &b.ports(), &settings())
        .await
        .unwrap();
    assert_eq!(
        kinds(&jobs),
        [
            "deliver alice@example.com",
            "send carol@remote.example",
            "Archive"
        ]
    );
    for job in &jobs {
        assert_eq!(
            job.message().unwrap().sign_as,
            None,
            "mail from outside is never signed"
        );
    }
}

/// What fails after the gateway said 250 comes back to the sender as a
/// DSN: a recipient whose alias targets were deleted since, a user deleted
/// before delivery, a mailbox that stays over its quota; a mailbox over its
/// quota first makes the delivery wait.
pub async fn nothing_accepted_is_dropped_silently(b: &Backend) {
    let accounts = setup(b).await;
    let ports = b.ports();
    let dsn_text = |jobs: Vec<Job>| async move {
        let [Job::Route { message: dsn, .. }] = jobs.as_slice() else {
            panic!("one DSN expected: {jobs:?}")
        };
        assert_eq!(dsn.envelope.mail_from, None);
        assert_eq!(
            dsn.envelope.recipients[0].address,
            addr("sender@remote.example")
        );
        let body = b.blobs.get(&dsn.body, None).await.unwrap().unwrap();
        String::from_utf8_lossy(&body).into_owned()
    };

    // An alias whose only target was deleted after the message was accepted.
    accounts
        .add_user(
            &addr("carol@example.com"),
            password::hash("carol password").unwrap(),
            None,
        )
        .await
        .unwrap();
    accounts
        .add_alias(&addr("desk@example.com"), vec![addr("carol@example.com")])
        .await
        .unwrap();
    let message = accept(b, BODY, &["desk@example.com", "alice@example.com"]).await;
    accounts.del_user(&addr("carol@example.com")).await.unwrap();
    let jobs = handle(
        Job::Route {
            message,
            verdict: stratus_core::job::Verdict::Deliver,
        },
        &ports,
        &settings(),
    )
    .await
    .unwrap();
    let (dsn, rest): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| j.message().unwrap().envelope.mail_from.is_none());
    assert_eq!(rest.len(), 2, "alice's delivery and the archive: {rest:?}");
    let text = dsn_text(dsn).await;
    assert!(
        text.contains(
            "Final-Recipient: rfc822;desk@example.com\r\nAction: failed\r\nStatus: 5.1.1"
        ),
        "{text}"
    );

    // A user deleted between route and deliver.
    let message = accept(b, BODY, &["bob@example.com"]).await;
    let deliver = |message: Accepted, attempt: u32, not_before: i64| Job::Deliver {
        message,
        recipient: addr("bob@example.com"),
        mailbox: MailboxName::inbox(),
        attempt,
        not_before,
        filed: Default::default(),
    };
    accounts
        .set_quota(&addr("bob@example.com"), Some(10))
        .await
        .unwrap();
    // Over quota: a fresh message waits, with the next attempt due later.
    let mut fresh = message.clone();
    fresh.received_at = stratus_core::mailstore::now();
    let jobs = handle(deliver(fresh.clone(), 0, 0), &ports, &settings())
        .await
        .unwrap();
    let [
        Job::Deliver {
            attempt: 1,
            not_before,
            ..
        },
    ] = jobs.as_slice()
    else {
        panic!("{jobs:?}")
    };
    assert!(*not_before > stratus_core::mailstore::now(), "due later");
    assert!(!jobs[0].delay(stratus_core::mailstore::now()).is_zero());
    // Not due yet: passed on untouched, nothing delivered.
    let again = handle(jobs[0].clone(), &ports, &settings()).await.unwrap();
    assert_eq!(again, jobs);
    assert!(entries(b, "bob@example.com", "INBOX").await.is_empty());
    // Room again: the same attempt, once due, delivers.
    accounts
        .set_quota(&addr("bob@example.com"), None)
        .await
        .unwrap();
    let done = handle(deliver(fresh, 1, 0), &ports, &settings())
        .await
        .unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(entries(b, "bob@example.com", "INBOX").await.len(), 1);
    // Over quota past the message's lifetime (received in 2025): bounced.
    accounts
        .set_quota(&addr("bob@example.com"), Some(10))
        .await
        .unwrap();
    let text = dsn_text(
        handle(deliver(message.clone(), 3, 0), &ports, &settings())
            .await
            .unwrap(),
    )
    .await;
    assert!(text.contains("Status: 5.2.2"), "{text}");
    assert!(text.contains("mailbox full"), "{text}");
    // Deleted: bounced.
    accounts.del_user(&addr("bob@example.com")).await.unwrap();
    let text = dsn_text(
        handle(deliver(message, 0, 0), &ports, &settings())
            .await
            .unwrap(),
    )
    .await;
    assert!(
        text.contains("Final-Recipient: rfc822;bob@example.com"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
}

/// Every stage run twice on the same job: one mailbox entry, one archive
/// entry, one journal object.
pub async fn stages_are_idempotent(b: &Backend) {
    setup(b).await;
    let message = accept(b, BODY, &["alice@example.com"]).await;
    let (ports, s) = (b.ports(), settings());
    let routed = handle(Job::Inbound(message.clone()), &ports, &s)
        .await
        .unwrap();
    let next = handle(routed[0].clone(), &ports, &s).await.unwrap();
    assert_eq!(next.len(), 2, "deliver and archive: {next:?}");
    for job in next.iter().chain(next.iter()) {
        assert!(handle(job.clone(), &ports, &s).await.unwrap().is_empty());
    }
    assert_eq!(entries(b, "alice@example.com", "INBOX").await.len(), 1);
    assert_eq!(archived(b).await.len(), 1, "one archive entry");
    assert_eq!(b.archive.list("journal/", None, 10).await.unwrap().len(), 1);

    // The same job through the queue twice (a redelivery) changes nothing,
    // stage by stage or chained as the embedded runner runs it.
    for chain in [false, true] {
        for _ in 0..2 {
            enqueue_inbound(b, &message).await;
        }
        let s = Settings {
            chain,
            ..settings()
        };
        drain(&*b.queue, &ports, &s).await.unwrap();
        assert_eq!(entries(b, "alice@example.com", "INBOX").await.len(), 1);
        assert_eq!(archived(b).await.len(), 1, "one archive entry");
    }
}

/// Concurrent deliveries into one mailbox while a reader lists it: UIDs are
/// 1..=n with no duplicate and no gap, and no reader ever sees UID n+1
/// before n.
pub async fn concurrent_appends_keep_uids_dense(b: &Backend) {
    setup(b).await;
    let store = Arc::new(Mailstore::new(
        b.index.clone(),
        b.blobs.clone(),
        b.changes.clone(),
    ));
    let alice = addr("alice@example.com");
    let n = 20;
    let writers: Vec<_> = (0..n)
        .map(|i| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                let body = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
                let new = NewMessage {
                    queue_id: QueueId::generate(),
                    body: BlobKey::parse(&format!("msg/test/{i}")).unwrap(),
                    body_size: body.len() as u64,
                    prefix: String::new(),
                    meta: analyze(body.as_bytes()),
                    flags: vec![],
                    internal_date: 0,
                    internal_tz: 0,
                };
                match store
                    .append(&alice, &MailboxName::inbox(), new)
                    .await
                    .unwrap()
                {
                    Appended::New { uid, .. } => uid,
                    Appended::Duplicate => panic!("fresh queue ids are never duplicates"),
                }
            })
        })
        .collect();
    let reader = {
        let (store, alice) = (store.clone(), alice.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            loop {
                let uids: Vec<u32> = store
                    .entries(&alice, &MailboxName::inbox(), 1, u32::MAX)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.uid)
                    .collect();
                assert_eq!(
                    uids,
                    (1..=uids.len() as u32).collect::<Vec<_>>(),
                    "a reader saw a gap"
                );
                reads += 1;
                if uids.len() == n {
                    return reads;
                }
            }
        })
    };
    let mut uids = BTreeSet::new();
    for w in writers {
        assert!(uids.insert(w.await.unwrap()));
    }
    assert_eq!(uids, (1..=n as u32).collect());
    assert!(reader.await.unwrap() >= 1);
    let (mailbox, _) = store
        .mailbox(&alice, &MailboxName::inbox())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (mailbox.messages, mailbox.uidnext),
        (n as u32, n as u32 + 1)
    );
}

/// A message whose structure would not fit in an index item keeps its
/// metadata in the blob store; the index item stays small.
pub async fn huge_structures_spill_to_the_blob_store(b: &Backend) {
    setup(b).await;
    let mut body =
        String::from("Content-Type: multipart/mixed; boundary=x\r\nSubject: many parts\r\n\r\n");
    for i in 0..450 {
        body.push_str(&format!(
            "--x\r\nContent-Type: text/plain; name=\"part-{i}-{}\"\r\n\r\nbody\r\n",
            "n".repeat(60)
        ));
    }
    body.push_str("--x--\r\n");
    let message = accept(b, body.as_bytes(), &["alice@example.com"]).await;
    drain_one(b, message).await;
    let inbox = entries(b, "alice@example.com", "INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].meta.is_none() && inbox[0].meta_blob.is_some(),
        "metadata spilled"
    );
    let meta = Mailstore::new(b.index.clone(), b.blobs.clone(), b.changes.clone())
        .meta(&inbox[0])
        .await
        .unwrap();
    assert_eq!(meta.structure.parts.len(), 450);
    let item = b
        .index
        .get(&Key::new(
            format!("msg#{}", mailbox_id(b).await),
            "uid#0000000001",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(
        item.value.len() < 8 * 1024,
        "entry item is {} bytes",
        item.value.len()
    );
}

/// A message that is not MIME at all is delivered as it came.
pub async fn broken_messages_are_delivered(b: &Backend) {
    setup(b).await;
    let bodies: [&[u8]; 2] = [
        b"\x00\xff this is not a message\r\nno headers, 8-bit \xe9 junk\r\n--\r\n",
        // mail-parser panics on this one in a build with debug assertions
        // (the fuzz corpus has it as message_metadata/crash-4f08ae07...).
        include_bytes!(
            "../../../fuzz/corpus/message_metadata/crash-4f08ae07d44a72283ace5c1a5cff84c1f4fd1720"
        ),
    ];
    for (n, body) in bodies.into_iter().enumerate() {
        let message = accept(b, body, &["alice@example.com"]).await;
        drain_one(b, message).await;
        let inbox = entries(b, "alice@example.com", "INBOX").await;
        assert_eq!(inbox.len(), n + 1);
        assert_eq!(
            b.blobs.get(&inbox[n].body, None).await.unwrap().unwrap(),
            body
        );
    }
}

async fn drain_one(b: &Backend, message: Accepted) {
    enqueue_inbound(b, &message).await;
    drain(&*b.queue, &b.ports(), &settings()).await.unwrap();
}

async fn mailbox_id(b: &Backend) -> String {
    let store = Mailstore::new(b.index.clone(), b.blobs.clone(), b.changes.clone());
    store
        .mailbox(&addr("alice@example.com"), &MailboxName::inbox())
        .await
        .unwrap()
        .unwrap()
        .0
        .id
}

/// The stage binaries under a Lambda stand-in, on the emulated AWS backend:
/// SQS-shaped batches in, partial batch failures out.
pub async fn lambda_functions_run_the_pipeline(
    b: &Backend,
    settings: &stratus_store_aws::AwsSettings,
) {
    use crate::lambda::Function;

    setup(b).await;
    let mut env: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), settings.region.clone()),
        ("STRATUS_S3_BUCKET".into(), settings.bucket.clone()),
        (
            "STRATUS_ARCHIVE_BUCKET".into(),
            settings.archive_bucket.clone(),
        ),
        ("STRATUS_DYNAMODB_TABLE".into(), settings.table.clone()),
        ("STRATUS_QUEUE_PREFIX".into(), settings.queue_prefix.clone()),
        ("STRATUS_HOSTNAME".into(), "mx.test.example".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
    ];
    env.extend(
        settings
            .endpoint
            .clone()
            .map(|e| ("STRATUS_AWS_ENDPOINT".into(), e)),
    );
    env.extend(
        settings
            .dynamodb_endpoint
            .clone()
            .map(|e| ("STRATUS_DYNAMODB_ENDPOINT".into(), e)),
    );

    let message = accept(b, BODY, &["team@example.com"]).await;
    enqueue_inbound(b, &message).await;
    b.queue
        .send(QueueName::Inbound, br#"{"not":"a job"}"#, Duration::ZERO)
        .await
        .unwrap();

    let arn = |stage: QueueName| {
        format!(
            "arn:aws:sqs:us-east-1:123456789012:{}{stage}",
            settings.queue_prefix
        )
    };
    let stages = [
        ("stratus-filter", QueueName::Inbound),
        ("stratus-route", QueueName::Route),
        ("stratus-deliver", QueueName::Deliver),
        ("stratus-archive", QueueName::Archive),
    ];
    let mut functions = Vec::new();
    for (binary, _) in stages {
        functions.push(Function::start(binary, &env).await);
    }
    // The inbound batch holds the good job and the garbage; only the
    // garbage fails, and only it stays on the queue.
    let mut inbound_failures = Vec::new();
    let mut inbound_seen = 0;
    while inbound_seen < 2 {
        let (batch, failed) = functions[0]
            .poll_once(&*b.queue, QueueName::Inbound, &arn(QueueName::Inbound))
            .await;
        inbound_seen += batch.len();
        inbound_failures.extend(failed);
    }
    assert_eq!(
        inbound_failures.len(),
        1,
        "exactly the garbage record failed"
    );
    for ((_, stage), function) in stages.iter().zip(&functions).skip(1) {
        let mut ran = 0;
        let want = if *stage == QueueName::Deliver { 2 } else { 1 };
        while ran < want {
            let (batch, failed) = function.poll_once(&*b.queue, *stage, &arn(*stage)).await;
            assert!(failed.is_empty(), "{stage}: {failed:?}");
            ran += batch.len();
        }
    }
    for user in ["alice@example.com", "bob@example.com"] {
        let inbox = entries(b, user, "INBOX").await;
        assert_eq!(inbox.len(), 1, "{user}");
        assert!(
            inbox[0]
                .prefix
                .contains("Authentication-Results: mx.test.example; spf=pass")
        );
    }
    assert_eq!(archived(b).await.len(), 1, "one archive entry");
    let left = b
        .queue
        .receive(
            QueueName::Inbound,
            10,
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the failed record is back on its queue");
    assert_eq!(left[0].body, br#"{"not":"a job"}"#);

    // The sweeper's function, invoked as its hourly schedule does: it
    // sees the two entries and their shared body, and deletes nothing.
    let sweep = Function::start("stratus-sweep", &env).await;
    let report = sweep
        .api
        .invoke(serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}))
        .await
        .expect("the sweep succeeds");
    assert_eq!(report["entries"], 2, "{report}");
    assert_eq!(report["blobs_deleted"], 0, "{report}");
}

/// Expunge removes entries, leaves tombstones with new MODSEQs and keeps the
/// counters right; under a lease it commits only while the lease is held.
pub async fn expunge_and_leases(b: &Backend) {
    use stratus_core::mailstore::Leases;

    setup(b).await;
    for n in 0..3 {
        let message = accept(
            b,
            format!("Subject: {n}\r\n\r\nbody {n}\r\n").as_bytes(),
            &["alice@example.com"],
        )
        .await;
        drain_one(b, message).await;
    }
    let store = Mailstore::new(b.index.clone(), b.blobs.clone(), b.changes.clone());
    let alice = addr("alice@example.com");
    let inbox = MailboxName::inbox();
    let (before, _) = store.mailbox(&alice, &inbox).await.unwrap().unwrap();
    assert_eq!(before.messages, 3);

    let leases = Leases::new(b.index.clone());
    let ttl = Duration::from_secs(30);
    let mut lease = leases
        .acquire("pop3#alice@example.com", ttl)
        .await
        .unwrap()
        .expect("free");
    assert!(
        leases
            .acquire("pop3#alice@example.com", ttl)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(leases.renew(&mut lease, ttl).await.unwrap());

    let removed = store
        .expunge(
            &alice,
            &inbox,
            &[1, 3, 99],
            Some((&lease.key, lease.version)),
        )
        .await
        .unwrap();
    assert_eq!(removed, [1, 3]);
    let left: Vec<u32> = entries(b, "alice@example.com", "INBOX")
        .await
        .iter()
        .map(|e| e.uid)
        .collect();
    assert_eq!(left, [2]);
    let (after, _) = store.mailbox(&alice, &inbox).await.unwrap().unwrap();
    assert_eq!((after.messages, after.unseen, after.uidnext), (1, 1, 4));
    assert_eq!(after.highest_modseq, before.highest_modseq + 2);
    let tombstones = b
        .index
        .query(&format!("gone#{}", after.id), SkRange::All, 10, false)
        .await
        .unwrap();
    assert_eq!(tombstones.len(), 2);

    // A lease lost (expired and taken by someone else) guards nothing.
    leases.release(&lease).await.unwrap();
    let other = leases
        .acquire("pop3#alice@example.com", ttl)
        .await
        .unwrap()
        .expect("free again");
    assert!(
        !leases.renew(&mut lease, ttl).await.unwrap(),
        "the old holder lost it"
    );
    let err = store
        .expunge(&alice, &inbox, &[2], Some((&lease.key, lease.version)))
        .await;
    assert!(err.is_err(), "no commit without the lease");
    assert_eq!(entries(b, "alice@example.com", "INBOX").await.len(), 1);

    // A crashed holder's lease runs out.
    leases.release(&other).await.unwrap();
    let short = leases
        .acquire("pop3#bob@example.com", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    crate::eventually(Duration::from_secs(10), "the lease to expire", || async {
        leases.acquire("pop3#bob@example.com", ttl).await.unwrap()
    })
    .await;
    drop(short);
}

/// An archive store whose puts work, fail (as a full or unreachable store
/// would) or panic (as a bug would), as `mode` says.
#[derive(Debug)]
struct FailingPuts {
    inner: Arc<dyn BlobStore>,
    mode: std::sync::atomic::AtomicU8,
}

const PUTS_WORK: u8 = 0;
const PUTS_FAIL: u8 = 1;
const PUTS_PANIC: u8 = 2;

#[async_trait::async_trait]
impl BlobStore for FailingPuts {
    async fn put(&self, key: &BlobKey, body: Bytes) -> stratus_core::ports::StoreResult<()> {
        match self.mode.load(std::sync::atomic::Ordering::SeqCst) {
            PUTS_FAIL => Err(stratus_core::StoreError::retryable(
                "blob put",
                "the store is unreachable",
            )),
            PUTS_PANIC => panic!("a bug in the archive store"),
            _ => self.inner.put(key, body).await,
        }
    }
    async fn get(
        &self,
        key: &BlobKey,
        range: Option<std::ops::Range<u64>>,
    ) -> stratus_core::ports::StoreResult<Option<Bytes>> {
        self.inner.get(key, range).await
    }
    async fn head(&self, key: &BlobKey) -> stratus_core::ports::StoreResult<Option<u64>> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &BlobKey) -> stratus_core::ports::StoreResult<()> {
        self.inner.delete(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&BlobKey>,
        limit: usize,
    ) -> stratus_core::ports::StoreResult<Vec<stratus_core::ports::BlobMeta>> {
        self.inner.list(prefix, start_after, limit).await
    }
}

/// With chaining (the embedded runner's default), the inbound job carries
/// the message through route, deliver and archive in one step: the same
/// mailboxes as stage by stage, nothing left on the route and deliver
/// queues. A remote recipient's send job waits in its queue, and a chained
/// job that fails, or whose handler panics, is queued to run again on its
/// own while the rest of the chain is done and the inbound job is
/// acknowledged.
pub async fn chained_stages_take_one_step(b: &Backend) {
    use std::sync::atomic::Ordering::SeqCst;
    use stratus_pipeline::runner::{Processed, process};

    setup(b).await;
    let s = Settings {
        chain: true,
        ..settings()
    };
    let archive = Arc::new(FailingPuts {
        inner: b.archive.clone(),
        mode: PUTS_FAIL.into(),
    });
    let ports = stratus_pipeline::Ports {
        archive: archive.clone(),
        ..b.ports()
    };
    let depth = |q| {
        let queue = b.queue.clone();
        async move { queue.depth(q).await.unwrap() }
    };
    let first = accept(
        b,
        BODY,
        &["all@example.com", "carol@remote.example", "bob@example.com"],
    )
    .await;
    let second = accept(b, BODY, &["alice@example.com"]).await;
    for (message, mode) in [(&first, PUTS_FAIL), (&second, PUTS_PANIC)] {
        archive.mode.store(mode, SeqCst);
        enqueue_inbound(b, message).await;
        let jobs = b
            .queue
            .receive(QueueName::Inbound, 10, s.visibility, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            process(&*b.queue, QueueName::Inbound, &jobs[0], &ports, &s).await,
            Processed::Done,
            "the inbound job is done though its archive step was not"
        );
    }
    for (user, copies) in [("alice@example.com", 2), ("bob@example.com", 1)] {
        let inbox = entries(b, user, "INBOX").await;
        assert_eq!(inbox.len(), copies, "{user}");
        assert_eq!(inbox[0].queue_id, first.queue_id);
    }
    for q in [QueueName::Inbound, QueueName::Route, QueueName::Deliver] {
        let d = depth(q).await;
        assert_eq!(
            (d.visible, d.in_flight, d.delayed, d.dead),
            (0, 0, 0, 0),
            "{q}"
        );
    }
    let send = depth(QueueName::Send).await;
    assert_eq!(
        (send.visible, send.in_flight, send.delayed),
        (1, 0, 0),
        "the send job waits in its queue"
    );
    let retried = depth(QueueName::Archive).await;
    assert_eq!(
        (retried.visible + retried.delayed, retried.in_flight),
        (2, 0),
        "both archive jobs are queued again: {retried:?}"
    );
    assert!(archive.list("journal/", None, 10).await.unwrap().is_empty());

    // Once the store works, the queued archive jobs do their work (they
    // become visible after their backoff).
    archive.mode.store(PUTS_WORK, SeqCst);
    let mut done = 0;
    while done < 2 {
        let jobs = b
            .queue
            .receive(
                QueueName::Archive,
                10,
                s.visibility,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(!jobs.is_empty(), "the archive jobs come back");
        for job in &jobs {
            process(&*b.queue, QueueName::Archive, job, &ports, &s).await;
            done += 1;
        }
    }
    assert_eq!(archive.list("journal/", None, 10).await.unwrap().len(), 2);
    assert_eq!(archived(b).await.len(), 2, "two archive entries");
    let d = depth(QueueName::Archive).await;
    assert_eq!((d.visible, d.in_flight, d.delayed), (0, 0, 0));
}
