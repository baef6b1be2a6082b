//! Session tests: real local stores in a temporary directory, the session
//! driven over an in-memory stream (`tokio::io::duplex`), no socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stratus_core::StoreError;
use stratus_core::address::Address;
use stratus_core::job::{Accepted, DmarcPolicy, Job, Notify, Origin, Ret};
use stratus_core::ports::{Delivery, Depth, Queue, QueueName, StoreResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, duplex};
use tokio::sync::watch;

use super::Context;
use super::auth::{Client, MessageAuth, MessageVerdict, Verification};
use super::{SessionKind, serve};
use crate::testutil::{self, TempDir};
use stratus_proto::smtp::reply::Reply;
use stratus_runtime::config::SmtpLimits;

const HOST: &str = "mx.test.example";

/// A context over fresh local stores with domain `example.test` and users
/// alice, bob and full (quota 10 bytes).
struct Harness {
    dir: TempDir,
    ctx: Context,
    stop: watch::Sender<bool>,
}

async fn harness(name: &str, limits: SmtpLimits) -> Harness {
    let dir = TempDir::new(name);
    let users = [("alice", None), ("bob", None), ("full", Some(10))]
        .map(|(user, quota)| (user, "not-a-hash".to_string(), quota));
    let (shared, stop) = testutil::context(&dir, HOST, users.to_vec()).await;
    Harness {
        ctx: testutil::smtp_context(shared, limits),
        dir,
        stop,
    }
}

fn peer() -> SocketAddr {
    "192.0.2.1:40000".parse().unwrap()
}

impl Harness {
    /// Sends `input` in one go, closes our side, and returns every byte the
    /// server wrote until it closed.
    async fn converse(&self, input: &[u8]) -> String {
        let (mut client, server) = duplex(1 << 20);
        let session = serve(SessionKind::Mx, server, peer(), &self.ctx, false);
        let talk = async {
            // The server may hang up before it has read everything.
            let _ = client.write_all(input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            out
        };
        let (served, out) = tokio::join!(session, talk);
        served.unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Starts a session in a task and returns the client's end.
    fn connect(&self) -> (DuplexStream, tokio::task::JoinHandle<std::io::Result<()>>) {
        let (client, server) = duplex(1 << 20);
        let ctx = self.ctx.clone();
        let task =
            tokio::spawn(async move { serve(SessionKind::Mx, server, peer(), &ctx, false).await });
        (client, task)
    }

    /// Every job on the inbound queue (received, so hidden for a while).
    async fn jobs(&self) -> Vec<Accepted> {
        let mut out = Vec::new();
        loop {
            let batch = self
                .ctx
                .shared
                .stores
                .queue
                .receive(
                    QueueName::Inbound,
                    10,
                    Duration::from_secs(600),
                    Duration::ZERO,
                )
                .await
                .unwrap();
            if batch.is_empty() {
                return out;
            }
            for d in batch {
                match Job::from_json(&d.body).unwrap() {
                    Job::Inbound(a) => out.push(a),
                    other => panic!("unexpected job {other:?}"),
                }
            }
        }
    }

    async fn blob(&self, accepted: &Accepted) -> Vec<u8> {
        self.ctx
            .shared
            .stores
            .blobs
            .get(&accepted.body, None)
            .await
            .unwrap()
            .expect("body stored")
            .to_vec()
    }

    async fn stored_bodies(&self) -> usize {
        self.ctx
            .shared
            .stores
            .blobs
            .list("msg/", None, 1000)
            .await
            .unwrap()
            .len()
    }
}

/// The replies of a transcript, one string per reply line.
fn lines(out: &str) -> Vec<&str> {
    out.split_terminator("\r\n").collect()
}

/// Reads one reply (all its lines) byte by byte, so nothing after it is
/// taken from the stream (the TLS handshake follows a 220).
async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let read = async {
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            loop {
                let mut b = [0u8; 1];
                if s.read(&mut b).await.unwrap() == 0 {
                    return all;
                }
                line.push(b[0]);
                if line.ends_with(b"\r\n") {
                    break;
                }
            }
            let line = String::from_utf8(line).unwrap();
            let last = line.as_bytes().get(3) == Some(&b' ');
            all.push_str(&line);
            if last {
                return all;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a reply in time")
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, text: &str) {
    s.write_all(text.as_bytes()).await.unwrap();
}

const EHLO_REPLY: &str = "250-mx.test.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250-STARTTLS\r\n250 DSN\r\n";

fn queued_id(reply: &str) -> String {
    let id = reply
        .trim_end()
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a queued reply: {reply:?}"));
    assert_eq!(id.len(), 26, "{id}");
    id.to_string()
}

#[tokio::test]
async fn a_full_transaction_lands_one_job_with_the_body_byte_exact() {
    let h = harness("full", SmtpLimits::default()).await;
    let (mut c, task) = h.connect();
    assert_eq!(
        read_reply(&mut c).await,
        "220 mx.test.example ESMTP Stratus\r\n"
    );
    send(&mut c, "EHLO client.example\r\n").await;
    assert_eq!(read_reply(&mut c).await, EHLO_REPLY);
    send(&mut c, "MAIL FROM:<sender@remote.example>\r\n").await;
    assert_eq!(read_reply(&mut c).await, "250 2.1.0 Ok\r\n");
    send(&mut c, "RCPT TO:<alice@example.test>\r\n").await;
    assert_eq!(read_reply(&mut c).await, "250 2.1.5 Ok\r\n");
    send(&mut c, "DATA\r\n").await;
    assert_eq!(
        read_reply(&mut c).await,
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    send(
        &mut c,
        "Subject: hello\r\nFrom: <sender@remote.example>\r\n\r\n..a line that began with a dot\r\n..\r\nthe end\r\n.\r\n",
    )
    .await;
    let queued = read_reply(&mut c).await;
    let id = queued_id(&queued);
    send(&mut c, "QUIT\r\n").await;
    assert_eq!(
        read_reply(&mut c).await,
        "221 2.0.0 mx.test.example closing connection\r\n"
    );
    drop(c);
    task.await.unwrap().unwrap();

    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.queue_id.as_str(), id);
    assert_eq!(job.origin, Origin::Inbound);
    assert_eq!(
        job.envelope.mail_from,
        Some(Address::parse("sender@remote.example").unwrap())
    );
    assert_eq!(job.envelope.recipients.len(), 1);
    assert_eq!(
        job.envelope.recipients[0].address,
        Address::parse("alice@example.test").unwrap()
    );
    assert!(!job.envelope.smtputf8 && !job.envelope.eight_bit);
    assert_eq!(
        job.auth_results.as_deref(),
        Some("spf=none smtp.mailfrom=remote.example; dkim=none; arc=none; dmarc=none")
    );
    assert_eq!(job.dmarc_failure, None);

    let blob = h.blob(job).await;
    assert_eq!(job.size, blob.len() as u64);
    let text = String::from_utf8(blob).unwrap();
    let prefix = format!(
        "Received: from client.example (unknown [192.0.2.1])\r\n\tby mx.test.example (Stratus) with ESMTP id {id}\r\n\tfor <alice@example.test>;\r\n\t"
    );
    assert!(text.starts_with(&prefix), "{text}");
    let (received, body) = text.split_once(" +0000\r\n").unwrap();
    assert!(received.len() < prefix.len() + 32, "{received}");
    assert_eq!(
        body,
        "Subject: hello\r\nFrom: <sender@remote.example>\r\n\r\n.a line that began with a dot\r\n.\r\nthe end\r\n"
    );
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let h = harness("pipelined", SmtpLimits::default()).await;
    let out = h
        .converse(
            b"EHLO client.example\r\n\
              MAIL FROM:<sender@remote.example> BODY=8BITMIME SIZE=100\r\n\
              RCPT TO:<alice@example.test>\r\n\
              RCPT TO:<nobody@example.test>\r\n\
              RCPT TO:<bob@example.test>\r\n\
              DATA\r\n\
              Subject: one\r\n\r\nfirst\r\n.\r\n\
              MAIL FROM:<>\r\n\
              RCPT TO:<Bob@Example.TEST>\r\n\
              DATA\r\n\
              Subject: two\r\n\r\nsecond\r\n.\r\n\
              QUIT\r\n",
        )
        .await;
    let l = lines(&out);
    assert_eq!(l[0], "220 mx.test.example ESMTP Stratus");
    assert_eq!(l[10], "250 DSN");
    assert_eq!(
        &l[11..16],
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "550 5.1.1 <nobody@example.test>: no such user here",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
        ]
    );
    let first = queued_id(l[16]);
    assert_eq!(
        &l[17..20],
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>"
        ]
    );
    let second = queued_id(l[20]);
    assert_eq!(l[21], "221 2.0.0 mx.test.example closing connection");
    assert_eq!(l.len(), 22, "{out}");

    let mut jobs = h.jobs().await;
    // In the order they were acknowledged: queue ids made in the same
    // millisecond do not sort by time.
    jobs.sort_by_key(|j| j.queue_id.as_str() != first);
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].queue_id.as_str(), first);
    assert_eq!(jobs[1].queue_id.as_str(), second);
    let rcpts: Vec<String> = jobs[0]
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.to_string())
        .collect();
    assert_eq!(rcpts, ["alice@example.test", "bob@example.test"]);
    assert!(jobs[0].envelope.eight_bit);
    assert_eq!(jobs[1].envelope.mail_from, None);
    let first_blob = String::from_utf8(h.blob(&jobs[0]).await).unwrap();
    assert!(
        !first_blob.contains("\tfor <"),
        "two recipients are not named"
    );
    assert!(first_blob.ends_with("\r\nSubject: one\r\n\r\nfirst\r\n"));
}

#[tokio::test]
async fn replies_are_flushed_before_the_server_waits() {
    let h = harness("flush", SmtpLimits::default()).await;
    let (mut c, task) = h.connect();
    read_reply(&mut c).await;
    send(
        &mut c,
        "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    .await;
    // All four replies arrive without the client sending anything more.
    assert!(read_reply(&mut c).await.starts_with("250-mx.test.example"));
    assert_eq!(read_reply(&mut c).await, "250 2.1.0 Ok\r\n");
    assert_eq!(read_reply(&mut c).await, "250 2.1.5 Ok\r\n");
    assert!(read_reply(&mut c).await.starts_with("354 "));
    send(&mut c, "x\r\n.\r\n").await;
    queued_id(&read_reply(&mut c).await);
    drop(c);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bdat_chunks_are_stored_verbatim() {
    let h = harness("bdat", SmtpLimits::default()).await;
    let chunk1 = "Subject: chunks\r\n\r\nline\r\n.\r\n";
    let chunk2 = "bare\nlf and \r cr, binary \u{0}\r\n";
    let input = format!(
        "EHLO c\r\nBDAT 3\r\nabcMAIL FROM:<a@remote.example> BODY=BINARYMIME\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
         BDAT {}\r\n{chunk1}BDAT {}\r\n{chunk2}BDAT 0 LAST\r\nQUIT\r\n",
        chunk1.len(),
        chunk2.len()
    );
    let out = h.converse(input.as_bytes()).await;
    let l = lines(&out);
    assert_eq!(
        &l[11..16],
        [
            "503 5.5.1 need MAIL command",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "503 5.5.1 BODY=BINARYMIME needs BDAT, not DATA",
            &format!("250 2.0.0 {} octets received", chunk1.len()),
        ]
    );
    assert_eq!(l[16], format!("250 2.0.0 {} octets received", chunk2.len()));
    queued_id(l[17]);
    assert_eq!(l[18], "221 2.0.0 mx.test.example closing connection");

    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].envelope.eight_bit);
    let blob = h.blob(&jobs[0]).await;
    let body = format!("{chunk1}{chunk2}");
    assert!(blob.ends_with(body.as_bytes()));
    assert!(blob.starts_with(b"Received: from c (unknown [192.0.2.1])\r\n"));

    // The last chunk may carry data too; an oversized total is refused and
    // ends the transaction, and the rest stays in step.
    let limits = SmtpLimits {
        max_message_size: 10,
        ..SmtpLimits::default()
    };
    let h = harness("bdat-size", limits).await;
    let out = h
        .converse(
            b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nBDAT 6\r\n123456BDAT 6 LAST\r\n789012NOOP\r\n\
              MAIL FROM:<a@remote.example>\r\nRCPT TO:<bob@example.test>\r\nBDAT 4 LAST\r\nabcdQUIT\r\n",
        )
        .await;
    let l = lines(&out);
    assert_eq!(
        &l[11..16],
        [
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 6 octets received",
            "552 5.3.4 message size exceeds fixed maximum message size (10 bytes)",
            "250 2.0.0 Ok",
        ]
    );
    assert_eq!(&l[16..18], ["250 2.1.0 Ok", "250 2.1.5 Ok"]);
    queued_id(l[18]);
    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert!(h.blob(&jobs[0]).await.ends_with(b"\r\nabcd"));
}

#[tokio::test]
async fn recipients_and_commands_get_the_right_codes() {
    let limits = SmtpLimits {
        max_recipients: 2,
        max_errors: 100,
        ..SmtpLimits::default()
    };
    let h = harness("codes", limits).await;
    let long = format!("NOOP {}\r\n", "x".repeat(5000));
    let script: Vec<(&str, &str)> = vec![
        (
            "MAIL FROM:<a@remote.example>",
            "503 5.5.1 send EHLO or HELO first",
        ),
        ("EHLO", "501 5.5.2 syntax: EHLO domain"),
        ("HELO client.example", "250 mx.test.example"),
        (
            "RCPT TO:<alice@example.test>",
            "503 5.5.1 need MAIL command",
        ),
        ("DATA", "503 5.5.1 need MAIL command"),
        ("FOO bar", "500 5.5.1 command unrecognized"),
        (
            "MAIL FROM:bad",
            "501 5.5.2 syntax: MAIL FROM:<reverse-path> [parameters]",
        ),
        (
            "MAIL FROM:<a@remote.example> SIZE=52428801",
            "552 5.3.4 message size exceeds fixed maximum message size (52428800 bytes)",
        ),
        // Past 64 bits too: smtp-proto alone would have read this as 5.
        (
            "MAIL FROM:<a@remote.example> SIZE=999999999999999999995",
            "552 5.3.4 message size exceeds fixed maximum message size (52428800 bytes)",
        ),
        (
            "MAIL FROM:<a@remote.example> SIZE=18446744073709551616",
            "552 5.3.4 message size exceeds fixed maximum message size (52428800 bytes)",
        ),
        (
            "MAIL FROM:<a@remote.example> SIZE=100 FOO=bar",
            "555 5.5.4 unsupported parameter FOO=BAR",
        ),
        ("MAIL FROM:<a@remote.example> SIZE=100", "250 2.1.0 Ok"),
        (
            "MAIL FROM:<a@remote.example>",
            "503 5.5.1 nested MAIL command",
        ),
        ("DATA", "554 5.5.1 no valid recipients"),
        (
            "RCPT TO:<nobody@example.test>",
            "550 5.1.1 <nobody@example.test>: no such user here",
        ),
        (
            "RCPT TO:<full@example.test>",
            "452 4.2.2 <full@example.test>: mailbox full",
        ),
        (
            "RCPT TO:<someone@elsewhere.example>",
            "554 5.7.1 <someone@elsewhere.example>: relay access denied",
        ),
        (
            "RCPT TO:<not an address>",
            "501 5.1.3 bad recipient address syntax",
        ),
        ("RCPT TO:<alice+news@example.test>", "250 2.1.5 Ok"),
        ("RCPT TO:<bob@example.test>", "250 2.1.5 Ok"),
        (
            "RCPT TO:<alice@example.test>",
            "452 4.5.3 too many recipients",
        ),
        (
            "VRFY alice",
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
        ),
        ("EXPN staff", "502 5.5.1 command not implemented"),
        (
            "AUTH PLAIN",
            "503 5.5.1 authentication is not available on this port",
        ),
        ("NOOP", "250 2.0.0 Ok"),
        ("RSET", "250 2.0.0 Ok"),
        ("DATA", "503 5.5.1 need MAIL command"),
        (long.trim_end(), "500 5.5.2 line too long"),
        ("NOOP", "250 2.0.0 Ok"),
        (
            "HELP",
            "214 2.0.0 Stratus ESMTP; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
        ),
        (
            "MAIL FROM:<jörg@bücher.example>",
            "553 5.6.7 non-ASCII sender address needs SMTPUTF8",
        ),
        ("QUIT", "221 2.0.0 mx.test.example closing connection"),
    ];
    let input: String = script.iter().map(|(c, _)| format!("{c}\r\n")).collect();
    let out = h.converse(input.as_bytes()).await;
    let l = lines(&out);
    assert_eq!(l[0], "220 mx.test.example ESMTP Stratus");
    for (i, (command, want)) in script.iter().enumerate() {
        assert_eq!(l.get(i + 1).copied(), Some(*want), "after {:.40}", command);
    }
    assert_eq!(l.len(), script.len() + 1);
    assert!(h.jobs().await.is_empty());
}

#[tokio::test]
async fn too_many_received_headers_are_refused() {
    let limits = SmtpLimits {
        max_hops: 3,
        ..SmtpLimits::default()
    };
    let h = harness("hops", limits).await;
    let message = |hops: usize| {
        let mut m = String::new();
        for i in 0..hops {
            m.push_str(&format!(
                "Received: from hop{i}\r\n\tby somewhere; date\r\n"
            ));
        }
        m.push_str("Subject: loop\r\n\r\nReceived: in the body does not count\r\n.\r\n");
        m
    };
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{}\
         MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{}QUIT\r\n",
        message(4),
        message(3)
    );
    let out = h.converse(input.as_bytes()).await;
    let l = lines(&out);
    assert_eq!(
        l[14],
        "554 5.4.6 too many hops (4 Received headers): mail loop?"
    );
    queued_id(l[18]);
    assert_eq!(h.jobs().await.len(), 1);
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let limits = SmtpLimits {
        max_errors: 3,
        ..SmtpLimits::default()
    };
    let h = harness("errors", limits).await;
    let out = h
        .converse(b"EHLO c\r\nFOO\r\nBAR\r\nNOOP\r\nRCPT TO:<x@y.example>\r\nNOOP\r\nNOOP\r\n")
        .await;
    let l = lines(&out);
    assert_eq!(
        &l[11..],
        [
            "500 5.5.1 command unrecognized",
            "500 5.5.1 command unrecognized",
            "250 2.0.0 Ok",
            "503 5.5.1 need MAIL command",
            "421 4.7.0 mx.test.example too many errors, closing connection",
        ]
    );
}

#[tokio::test]
async fn an_idle_client_is_timed_out() {
    let limits = SmtpLimits {
        idle_timeout: Duration::from_millis(200),
        ..SmtpLimits::default()
    };
    let h = harness("idle", limits).await;
    let (mut c, task) = h.connect();
    read_reply(&mut c).await;
    assert_eq!(
        read_reply(&mut c).await,
        "421 4.4.2 mx.test.example idle timeout, closing connection\r\n"
    );
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    task.await.unwrap().unwrap();

    // A client that stalls in the middle of DATA leaves nothing behind.
    let (mut c, task) = h.connect();
    read_reply(&mut c).await;
    send(
        &mut c,
        "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: half\r\n\r\nsome",
    )
    .await;
    for _ in 0..4 {
        read_reply(&mut c).await;
    }
    assert_eq!(
        read_reply(&mut c).await,
        "421 4.4.2 mx.test.example timeout while receiving data, closing connection\r\n"
    );
    drop(c);
    task.await.unwrap().unwrap();
    assert!(h.jobs().await.is_empty());
    assert_eq!(h.stored_bodies().await, 0);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_data_leaves_no_message() {
    let h = harness("disconnect", SmtpLimits::default()).await;
    for tail in [
        "Subject: cut\r\n\r\nhalf a message\r\n",
        "x\r\n.",
        "x\r\n.\r",
    ] {
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{tail}"
        );
        let out = h.converse(input.as_bytes()).await;
        assert!(
            out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
            "{out}"
        );
    }
    let input = "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 100 LAST\r\nonly some";
    h.converse(input.as_bytes()).await;
    assert!(h.jobs().await.is_empty());
    assert_eq!(h.stored_bodies().await, 0);
}

/// The CVE-2023-51764 family: an end-of-data marker that is not
/// `<CRLF>.<CRLF>`, followed by the commands of a smuggled message.
#[tokio::test]
async fn smuggling_payloads_never_queue_the_smuggled_message() {
    let h = harness("smuggling", SmtpLimits::default()).await;
    let markers: [&str; 9] = [
        "\n.\n",
        "\r.\r",
        "\r\n.\n",
        "\n.\r\n",
        "\r\n.\r",
        "\r.\r\n",
        "\n.\r",
        "\r\n.\r\r\n",
        "\r\n\x00.\r\n",
    ];
    for marker in markers {
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
             Subject: legit\r\n\r\nlegit body{marker}\
             MAIL FROM:<spoofed@victim.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
             Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n\
             DATA\r\nanother try\r\n.\r\nQUIT\r\n"
        );
        let out = h.converse(input.as_bytes()).await;
        let l = lines(&out);
        let jobs = h.jobs().await;
        for job in &jobs {
            let blob = h.blob(job).await;
            assert!(
                !String::from_utf8_lossy(&blob).contains("smuggled body")
                    || blob
                        .windows(b"legit body".len())
                        .any(|w| w == b"legit body"),
                "{marker:?}"
            );
            assert!(
                job.envelope.mail_from != Some(Address::parse("spoofed@victim.example").unwrap()),
                "{marker:?}: the smuggled envelope was queued"
            );
        }
        if marker == "\r\n\x00.\r\n" {
            // Not a smuggling marker at all: one legitimate message whose
            // body holds the rest as text.
            assert_eq!(jobs.len(), 1, "{marker:?}: {out}");
            queued_id(l[14]);
        } else {
            assert!(jobs.is_empty(), "{marker:?} queued {jobs:?}");
            assert_eq!(l[14], "550 5.5.2 bare LF/CR not allowed", "{marker:?}");
            // The bytes after the refusal are no second message: DATA has
            // no transaction, and the text is mere unknown commands.
            assert_eq!(l[15], "503 5.5.1 need MAIL command", "{marker:?}");
            assert_eq!(
                &l[16..],
                [
                    "500 5.5.1 command unrecognized",
                    "500 5.5.1 command unrecognized",
                    "221 2.0.0 mx.test.example closing connection"
                ],
                "{marker:?}"
            );
        }
    }
    assert_eq!(h.stored_bodies().await, 1);
}

/// A bare LF refusal keeps the session in step even when the smuggled
/// commands come in separate packets.
#[tokio::test]
async fn a_refused_message_does_not_desynchronise_the_session() {
    let h = harness("smuggling-split", SmtpLimits::default()).await;
    let (mut c, task) = h.connect();
    read_reply(&mut c).await;
    send(
        &mut c,
        "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    .await;
    for _ in 0..4 {
        read_reply(&mut c).await;
    }
    for part in [
        "Subject: legit\r\n\r\nbody\n",
        ".\n",
        "MAIL FROM:<spoofed@victim.example>\r\n",
        "RCPT TO:<bob@example.test>\r\n",
        "DATA\r\n",
        "smuggled\r\n",
    ] {
        send(&mut c, part).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send(&mut c, ".\r\n").await;
    assert_eq!(
        read_reply(&mut c).await,
        "550 5.5.2 bare LF/CR not allowed\r\n"
    );
    send(
        &mut c,
        "MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nclean\r\n.\r\n",
    )
    .await;
    assert_eq!(read_reply(&mut c).await, "250 2.1.0 Ok\r\n");
    assert_eq!(read_reply(&mut c).await, "250 2.1.5 Ok\r\n");
    read_reply(&mut c).await;
    queued_id(&read_reply(&mut c).await);
    drop(c);
    task.await.unwrap().unwrap();
    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert!(h.blob(&jobs[0]).await.ends_with(b"\r\nclean\r\n"));
}

#[tokio::test]
async fn eight_bit_and_smtputf8_messages_travel_as_they_came() {
    let h = harness("utf8", SmtpLimits::default()).await;
    let body =
        "Subject: Grüße aus Köln\r\nFrom: Jörg <jörg@bücher.example>\r\n\r\nÄÖÜ ß 日本語\r\n";
    let mut input = format!(
        "EHLO c\r\nMAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{body}"
    )
    .into_bytes();
    input.extend_from_slice(b"latin-1: \xe9\r\n.\r\nQUIT\r\n");
    let out = h.converse(&input).await;
    let l = lines(&out);
    assert_eq!(&l[11..13], ["250 2.1.0 Ok", "250 2.1.5 Ok"]);
    queued_id(l[14]);
    let jobs = h.jobs().await;
    let job = &jobs[0];
    assert!(job.envelope.smtputf8 && job.envelope.eight_bit);
    assert_eq!(
        job.envelope.mail_from,
        Some(Address::parse("jörg@xn--bcher-kva.example").unwrap())
    );
    let blob = h.blob(job).await;
    let mut want = body.as_bytes().to_vec();
    want.extend_from_slice(b"latin-1: \xe9\r\n");
    assert!(blob.ends_with(&want));
    assert!(
        String::from_utf8_lossy(&blob).contains(" with UTF8SMTP id "),
        "RFC 6531 protocol name"
    );
}

#[tokio::test]
async fn dsn_parameters_travel_with_the_envelope() {
    let h = harness("dsn", SmtpLimits::default()).await;
    let out = h
        .converse(
            b"EHLO c\r\nMAIL FROM:<a@remote.example> RET=HDRS ENVID=abc+2Bdef\r\n\
              RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice@example.test\r\n\
              RCPT TO:<bob@example.test> NOTIFY=NEVER\r\nRCPT TO:<BOB@example.test>\r\nDATA\r\nx\r\n.\r\n",
        )
        .await;
    queued_id(lines(&out)[16]);
    let job = &h.jobs().await[0];
    assert_eq!(job.envelope.ret, Some(Ret::Hdrs));
    assert_eq!(job.envelope.envid.as_deref(), Some("abc+def"));
    let r = &job.envelope.recipients;
    assert_eq!(r.len(), 2, "the same mailbox twice is one recipient");
    assert_eq!(
        r[0].notify,
        Some(Notify {
            success: true,
            failure: true,
            delay: false,
            never: false
        })
    );
    assert_eq!(r[0].orcpt.as_deref(), Some("rfc822;Alice@example.test"));
    assert_eq!(r[1].notify.as_ref().map(|n| n.never), Some(true));
    assert_eq!(r[1].orcpt, None);
}

#[tokio::test]
async fn a_30_mib_message_is_accepted_and_a_51_mib_one_refused() {
    let h = harness("big", SmtpLimits::default()).await;
    let line = format!("{}\r\n", "0123456789".repeat(7));
    let body_of = |bytes: usize| {
        let mut b = String::from("Subject: big\r\n\r\n");
        while b.len() < bytes {
            b.push_str(&line);
        }
        b
    };
    let send_big = |body: String| {
        let mut input =
            b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
                .to_vec();
        input.extend_from_slice(body.as_bytes());
        input.extend_from_slice(b".\r\nNOOP\r\nQUIT\r\n");
        input
    };

    let big = body_of(30 << 20);
    let out = h.converse(&send_big(big.clone())).await;
    let l = lines(&out);
    queued_id(l[14]);
    assert_eq!(l[15], "250 2.0.0 Ok");
    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 1);
    let blob = h.blob(&jobs[0]).await;
    assert!(blob.ends_with(big.as_bytes()));
    assert!(blob.len() < big.len() + 300);

    let too_big = body_of(51 << 20);
    let out = h.converse(&send_big(too_big)).await;
    let l = lines(&out);
    assert_eq!(
        l[14],
        "552 5.3.4 message size exceeds fixed maximum message size (52428800 bytes)"
    );
    assert_eq!(l[15], "250 2.0.0 Ok", "the session stays in step");
    assert!(h.jobs().await.is_empty());
    assert_eq!(h.stored_bodies().await, 1);
}

#[tokio::test]
async fn a_message_far_over_the_limit_is_cut_off() {
    let limits = SmtpLimits {
        max_message_size: 1024,
        ..SmtpLimits::default()
    };
    let h = harness("cutoff", limits).await;
    let mut input =
        b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
            .to_vec();
    input.extend(std::iter::repeat_n(b'x', 4 << 20));
    let out = h.converse(&input).await;
    assert!(
        out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 message size exceeds fixed maximum message size (1024 bytes)\r\n"),
        "{}",
        &out[out.len().saturating_sub(200)..]
    );
    let out = h.converse(b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 99999999\r\n").await;
    assert!(
        out.ends_with("552 5.3.4 message size exceeds fixed maximum message size (1024 bytes)\r\n")
    );
    assert!(h.jobs().await.is_empty());
}

/// A queue that is down.
#[derive(Debug)]
struct DownQueue;

#[async_trait]
impl Queue for DownQueue {
    async fn send(&self, _: QueueName, _: &[u8], _: Duration) -> StoreResult<()> {
        Err(StoreError::retryable("queue send", "connection refused"))
    }
    async fn receive(
        &self,
        _: QueueName,
        _: usize,
        _: Duration,
        _: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        Ok(vec![])
    }
    async fn ack(&self, _: QueueName, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn retry_later(&self, _: QueueName, _: &str, _: Duration) -> StoreResult<()> {
        Ok(())
    }
    async fn receive_dead(
        &self,
        _: QueueName,
        _: usize,
        _: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        Ok(vec![])
    }
    async fn ack_dead(&self, _: QueueName, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn depth(&self, _: QueueName) -> StoreResult<Depth> {
        Ok(Depth::default())
    }
}

#[tokio::test]
async fn a_store_failure_is_a_451_and_leaves_nothing_behind() {
    let mut h = harness("down", SmtpLimits::default()).await;
    h.ctx.shared.stores.queue = Arc::new(DownQueue);
    let out = h
        .converse(b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
        .await;
    assert_eq!(
        lines(&out)[14],
        "451 4.3.0 temporary failure storing the message, try again later"
    );
    assert_eq!(h.stored_bodies().await, 0, "the orphan body was removed");
}

/// Refuses senders at spf-fail.example; answers DMARC `fail` with the
/// policy named in the Subject; remembers what it saw at MAIL FROM.
#[derive(Debug, Default)]
struct FakeDmarc {
    spf: Option<&'static str>,
}

impl MessageAuth for FakeDmarc {
    fn start(&self) -> Box<dyn Verification> {
        Box::new(FakeDmarc::default())
    }
}

#[async_trait]
impl Verification for FakeDmarc {
    async fn mail_from(&mut self, c: Client<'_>, from: Option<&Address>) -> Option<Reply> {
        assert_eq!((c.helo, c.hostname), ("c", HOST));
        if from.is_some_and(|a| a.domain().as_str() == "spf-fail.example") {
            self.spf = Some("fail");
            return Some(Reply::new(550, "5.7.23", "SPF validation failed"));
        }
        self.spf = Some("pass");
        None
    }

    async fn message(
        &mut self,
        _: Client<'_>,
        _: Option<&Address>,
        message: &[u8],
    ) -> MessageVerdict {
        let text = String::from_utf8_lossy(message);
        let policy = if text.contains("Subject: reject") {
            Some(DmarcPolicy::Reject)
        } else if text.contains("Subject: quarantine") {
            Some(DmarcPolicy::Quarantine)
        } else {
            None
        };
        let dmarc = if policy.is_some() { "fail" } else { "pass" };
        MessageVerdict {
            results: format!(
                "spf={} smtp.mailfrom=remote.example; dmarc={dmarc} header.from=sender.example",
                self.spf.expect("MAIL FROM came first")
            ),
            dmarc_failure: policy,
            author_policy: policy,
            refuse: None,
        }
    }
}

#[tokio::test]
async fn the_auth_seam_can_refuse_and_its_results_travel() {
    let mut h = harness("auth", SmtpLimits::default()).await;
    h.ctx.auth = Arc::new(FakeDmarc::default());
    let tx = |subject: &str| {
        format!(
            "MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: {subject}\r\n\r\nx\r\n.\r\n"
        )
    };
    let input = format!(
        "EHLO c\r\nMAIL FROM:<x@spf-fail.example>\r\n{}{}{}QUIT\r\n",
        tx("reject"),
        tx("quarantine"),
        tx("fine")
    );
    let out = h.converse(input.as_bytes()).await;
    let l = lines(&out);
    assert_eq!(l[11], "550 5.7.23 SPF validation failed");
    assert_eq!(
        l[15],
        "550 5.7.1 message rejected by the sender domain's DMARC policy"
    );
    queued_id(l[19]);
    queued_id(l[23]);
    let mut jobs = h.jobs().await;
    jobs.sort_by(|a, b| a.queue_id.cmp(&b.queue_id));
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].dmarc_failure, Some(DmarcPolicy::Quarantine));
    assert_eq!(
        jobs[0].auth_results.as_deref(),
        Some("spf=pass smtp.mailfrom=remote.example; dmarc=fail header.from=sender.example")
    );
    assert_eq!(jobs[1].dmarc_failure, None);

    // Configured to accept DMARC rejects, they travel as a failure instead.
    h.ctx.limits.reject_dmarc_failures = false;
    let out = h
        .converse(format!("EHLO c\r\n{}", tx("reject")).as_bytes())
        .await;
    queued_id(lines(&out)[14]);
    assert_eq!(h.jobs().await[0].dmarc_failure, Some(DmarcPolicy::Reject));
}

/// Mail from outside that claims a hosted domain and fails DMARC is never
/// forwarded: refused when it would reach nobody here, marked for the route
/// stage otherwise. Mail from outside is never to be signed.
#[tokio::test]
async fn dmarc_failing_mail_from_a_hosted_domain_is_not_forwarded() {
    let mut h = harness("hosted-dmarc", SmtpLimits::default()).await;
    h.ctx.auth = Arc::new(FakeDmarc::default());
    let accounts = h.ctx.shared.stores.accounts();
    let addr = |s: &str| Address::parse(s).unwrap();
    accounts
        .add_alias(
            &addr("fwd@example.test"),
            vec![addr("friend@remote.example")],
        )
        .await
        .unwrap();
    accounts
        .add_alias(
            &addr("mixed@example.test"),
            vec![addr("friend@remote.example"), addr("alice@example.test")],
        )
        .await
        .unwrap();
    let tx = |from: &str, to: &str, subject: &str| {
        format!(
            "MAIL FROM:<a@remote.example>\r\nRCPT TO:<{to}>\r\nDATA\r\nFrom: {from}\r\nSubject: {subject}\r\n\r\nx\r\n.\r\n"
        )
    };
    let input = format!(
        "EHLO c\r\n{}{}{}{}QUIT\r\n",
        tx("CEO <ceo@Example.TEST>", "fwd@example.test", "quarantine"),
        tx("ceo@example.test", "mixed@example.test", "quarantine"),
        tx("x@sender.example", "fwd@example.test", "quarantine"),
        tx("ceo@example.test", "fwd@example.test", "fine"),
    );
    let out = h.converse(input.as_bytes()).await;
    let l = lines(&out);
    assert_eq!(
        l[14],
        "550 5.7.1 mail from example.test that fails its DMARC check is not forwarded"
    );
    for line in [l[18], l[22], l[26]] {
        queued_id(line);
    }
    let jobs = h.jobs().await;
    assert_eq!(jobs.len(), 3);
    let hosted = |to: &str, dmarc: Option<DmarcPolicy>| {
        let job = jobs
            .iter()
            .find(|j| {
                j.envelope.recipients[0].address.to_string() == to && j.dmarc_failure == dmarc
            })
            .unwrap();
        assert_eq!(job.sign_as, None, "mail from outside is not signed");
        job.hosted_dmarc_failure.as_ref().map(|d| d.to_string())
    };
    assert_eq!(
        hosted("mixed@example.test", Some(DmarcPolicy::Quarantine)).as_deref(),
        Some("example.test")
    );
    assert_eq!(
        hosted("fwd@example.test", Some(DmarcPolicy::Quarantine)),
        None
    );
    assert_eq!(hosted("fwd@example.test", None), None);
}

/// An alias whose targets are all gone is refused at RCPT, like an
/// unknown user: accepted, the message would reach nobody.
#[tokio::test]
async fn an_alias_that_leads_nowhere_is_refused_at_rcpt() {
    let h = harness("alias-nowhere", SmtpLimits::default()).await;
    let accounts = h.ctx.shared.stores.accounts();
    let addr = |s: &str| Address::parse(s).unwrap();
    accounts
        .add_alias(&addr("desk@example.test"), vec![addr("bob@example.test")])
        .await
        .unwrap();
    let rcpt = "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<desk@example.test>\r\nQUIT\r\n";
    let out = h.converse(rcpt.as_bytes()).await;
    assert_eq!(lines(&out)[12], "250 2.1.5 Ok");
    accounts.del_user(&addr("bob@example.test")).await.unwrap();
    let out = h.converse(rcpt.as_bytes()).await;
    assert_eq!(
        lines(&out)[12],
        "550 5.1.1 <desk@example.test>: no such user here"
    );
}

/// Without TLS, REQUIRETLS is neither offered nor accepted.
#[tokio::test]
async fn requiretls_needs_tls() {
    let h = harness("requiretls-plain", SmtpLimits::default()).await;
    let out = h
        .converse(b"EHLO c\r\nMAIL FROM:<a@remote.example> REQUIRETLS\r\nQUIT\r\n")
        .await;
    assert!(!out.contains("REQUIRETLS\r\n"), "{out}");
    assert!(
        out.contains("530 5.7.10 REQUIRETLS needs a TLS session: STARTTLS first\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn shutdown_says_goodbye_between_commands() {
    let h = harness("shutdown", SmtpLimits::default()).await;
    let (mut c, task) = h.connect();
    read_reply(&mut c).await;
    send(&mut c, "EHLO c\r\n").await;
    read_reply(&mut c).await;
    h.stop.send(true).unwrap();
    assert_eq!(
        read_reply(&mut c).await,
        "421 4.3.2 mx.test.example service shutting down, closing connection\r\n"
    );
    task.await.unwrap().unwrap();
}

mod starttls {
    use rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;

    use super::*;

    /// A client that trusts exactly the certificate the server generated.
    fn connector(h: &Harness) -> TlsConnector {
        testutil::tls_connector(&h.dir)
    }

    #[tokio::test]
    async fn starttls_resets_the_session_and_discards_pipelined_input() {
        let h = harness("starttls", SmtpLimits::default()).await;
        let (mut c, task) = h.connect();
        read_reply(&mut c).await;
        send(&mut c, "EHLO client.example\r\n").await;
        assert!(read_reply(&mut c).await.contains("\r\n250-STARTTLS\r\n"));
        // Commands injected behind STARTTLS, in the same packet.
        send(
            &mut c,
            "STARTTLS\r\nEHLO injected\r\nMAIL FROM:<evil@attacker.example>\r\n",
        )
        .await;
        assert_eq!(read_reply(&mut c).await, "220 2.0.0 Ready to start TLS\r\n");

        let name = ServerName::try_from(HOST).unwrap();
        let mut t = connector(&h).connect(name, c).await.expect("handshake");
        let (_, conn) = t.get_ref();
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );

        // Nothing injected was executed: the first reply over TLS answers
        // our NOOP, and the session has forgotten the EHLO.
        send(&mut t, "NOOP\r\n").await;
        assert_eq!(read_reply(&mut t).await, "250 2.0.0 Ok\r\n");
        send(&mut t, "MAIL FROM:<a@remote.example>\r\n").await;
        assert_eq!(
            read_reply(&mut t).await,
            "503 5.5.1 send EHLO or HELO first\r\n"
        );
        send(&mut t, "EHLO client.example\r\n").await;
        let ehlo = read_reply(&mut t).await;
        // Inside TLS: no STARTTLS any more, and REQUIRETLS (RFC 8689).
        assert_eq!(
            ehlo,
            EHLO_REPLY
                .replace("250-STARTTLS\r\n", "")
                .replace("250 DSN\r\n", "250-DSN\r\n250 REQUIRETLS\r\n")
        );
        send(&mut t, "STARTTLS\r\n").await;
        assert_eq!(read_reply(&mut t).await, "503 5.5.1 TLS already active\r\n");

        send(
            &mut t,
            "MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
        )
        .await;
        for _ in 0..3 {
            read_reply(&mut t).await;
        }
        send(&mut t, "Subject: secret\r\n\r\nover TLS\r\n.\r\nQUIT\r\n").await;
        let id = queued_id(&read_reply(&mut t).await);
        assert!(read_reply(&mut t).await.starts_with("221 "));
        drop(t);
        task.await.unwrap().unwrap();

        let jobs = h.jobs().await;
        assert_eq!(jobs.len(), 1);
        let blob = String::from_utf8(h.blob(&jobs[0]).await).unwrap();
        assert!(
            blob.starts_with("Received: from client.example (unknown [192.0.2.1])\r\n\t(version=TLSv1.3 cipher=TLS13_"),
            "{blob}"
        );
        assert!(blob.contains(&format!("with ESMTPS id {id}\r\n")), "{blob}");
        assert!(blob.ends_with("\r\nSubject: secret\r\n\r\nover TLS\r\n"));
    }

    #[tokio::test]
    async fn starttls_is_refused_where_it_cannot_work() {
        let mut h = harness("starttls-refused", SmtpLimits::default()).await;
        let out = h
            .converse(b"EHLO c\r\nMAIL FROM:<a@remote.example>\r\nSTARTTLS\r\nQUIT\r\n")
            .await;
        assert_eq!(
            lines(&out)[12],
            "503 5.5.1 STARTTLS not allowed during a mail transaction"
        );
        h.ctx.shared.tls = None;
        let out = h.converse(b"EHLO c\r\nSTARTTLS\r\nQUIT\r\n").await;
        assert!(!out.contains("STARTTLS\r\n"), "not advertised: {out}");
        assert!(out.contains("\r\n454 4.7.0 TLS not available\r\n"), "{out}");

        // A client that says STARTTLS and then garbage gets no session.
        let h = harness("starttls-garbage", SmtpLimits::default()).await;
        let out = h
            .converse(b"EHLO c\r\nSTARTTLS\r\nthis is not a TLS handshake\r\n")
            .await;
        assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{out}");
    }
}

/// A client that pipelines endlessly without reading is held back by its
/// own receive window: the server writes its replies before it reads more,
/// so it stops reading once they back up.
#[tokio::test]
async fn a_client_that_never_reads_cannot_grow_the_reply_queue() {
    let h = harness("backpressure", SmtpLimits::default()).await;
    let (mut client, server) = duplex(4096);
    let ctx = h.ctx.clone();
    let task =
        tokio::spawn(async move { serve(SessionKind::Mx, server, peer(), &ctx, false).await });
    let chunk = "NOOP\r\n".repeat(1000);
    let mut accepted = 0;
    while accepted < 10 << 20 {
        let write = client.write_all(chunk.as_bytes());
        if tokio::time::timeout(Duration::from_millis(300), write)
            .await
            .is_err()
        {
            break;
        }
        accepted += chunk.len();
    }
    // A read's worth of commands plus the pipes' buffers, not megabytes.
    assert!(
        accepted < 100_000,
        "the server read {accepted} bytes without writing"
    );
    drop(client);
    task.await.unwrap().unwrap_err();
}

mod submission {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use stratus_core::address::Address;
    use tokio::io::{AsyncWriteExt, duplex};

    use super::*;
    use crate::throttle::SendRate;

    async fn harness_with_passwords(name: &str, per_hour: u32) -> Harness {
        let dir = TempDir::new(name);
        let users = ["alice", "bob"].map(|user| {
            let hash = stratus_core::password::hash(&format!("{user}-secret")).unwrap();
            (user, hash, None)
        });
        let (shared, stop) = testutil::context(&dir, HOST, users.to_vec()).await;
        let accounts = shared.stores.accounts();
        let alias = Address::parse("team@example.test").unwrap();
        let alice = Address::parse("alice@example.test").unwrap();
        accounts.add_alias(&alias, vec![alice]).await.unwrap();
        Harness {
            ctx: Context {
                send_rate: Arc::new(SendRate::new(per_hour)),
                ..testutil::smtp_context(shared, SmtpLimits::default())
            },
            dir,
            stop,
        }
    }

    /// A submissions (implicit TLS) session, greeting read.
    async fn connect_tls(h: &Harness) -> tokio_rustls::client::TlsStream<tokio::io::DuplexStream> {
        let (client, server) = duplex(1 << 20);
        let ctx = h.ctx.clone();
        tokio::spawn(
            async move { serve(SessionKind::Submission, server, peer(), &ctx, true).await },
        );
        let name = ServerName::try_from(HOST).unwrap();
        let mut t = testutil::tls_connector(&h.dir)
            .connect(name, client)
            .await
            .expect("handshake");
        assert!(read_reply(&mut t).await.starts_with("220 "));
        t
    }

    async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, line: &str) -> String {
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        read_reply(s).await
    }

    /// One message from alice to friend@remote.example, MAIL FROM with
    /// `params`; the reply to its end of data.
    async fn submit<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        params: &str,
        message: &str,
    ) -> String {
        let r = cmd(s, &format!("MAIL FROM:<alice@example.test>{params}")).await;
        assert!(r.starts_with("250"), "MAIL{params}: {r}");
        let r = cmd(s, "RCPT TO:<friend@remote.example>").await;
        assert!(r.starts_with("250"), "RCPT: {r}");
        assert!(cmd(s, "DATA").await.starts_with("354"));
        cmd(s, &format!("{message}.")).await
    }

    #[tokio::test]
    async fn authenticated_users_send_as_themselves_only() {
        let h = harness_with_passwords("submission", 100).await;
        let mut t = connect_tls(&h).await;
        let ehlo = cmd(&mut t, "EHLO client").await;
        assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
        assert!(
            cmd(&mut t, "MAIL FROM:<alice@example.test>")
                .await
                .starts_with("530 5.7.0")
        );
        // "\0alice@example.test\0wrong"
        let wrong = stratus_core::base64::encode(b"\0alice@example.test\0wrong");
        assert!(
            cmd(&mut t, &format!("AUTH PLAIN {wrong}"))
                .await
                .starts_with("535 5.7.8")
        );
        let right = stratus_core::base64::encode(b"\0alice@example.test\0alice-secret");
        assert!(
            cmd(&mut t, &format!("AUTH PLAIN {right}"))
                .await
                .starts_with("235 2.7.0")
        );
        for spoof in ["bob@example.test", "ceo@elsewhere.example", ""] {
            let r = cmd(&mut t, &format!("MAIL FROM:<{spoof}>")).await;
            assert!(r.starts_with("550 5.7.1"), "{spoof}: {r}");
        }
        // An alias that leads to alice, and a plus address, are hers.
        assert!(
            cmd(&mut t, "MAIL FROM:<team@example.test>")
                .await
                .starts_with("250")
        );
        cmd(&mut t, "RSET").await;
        assert!(
            cmd(&mut t, "MAIL FROM:<alice+lists@example.test>")
                .await
                .starts_with("250")
        );
        // Authenticated: mail to other domains is accepted (relayed).
        assert!(
            cmd(&mut t, "RCPT TO:<friend@remote.example>")
                .await
                .starts_with("250")
        );
        assert!(cmd(&mut t, "DATA").await.starts_with("354"));
        let r = cmd(&mut t, "Subject: hi\r\n\r\nno id, no date\r\n.").await;
        assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
        let jobs = h.jobs().await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].origin, stratus_core::job::Origin::Submission);
        let body = String::from_utf8(h.blob(&jobs[0]).await).unwrap();
        assert!(
            body.contains(&format!("Message-ID: <{}@{HOST}>\r\n", jobs[0].queue_id)),
            "{body}"
        );
        assert!(body.contains("\r\nDate: "), "{body}");
    }

    /// Every author (From, Sender) must be the user's too; the job names
    /// the domain whose keys sign it.
    #[tokio::test]
    async fn authors_must_be_addresses_the_user_may_send_as() {
        let h = harness_with_passwords("submission-authors", 100).await;
        let accounts = h.ctx.shared.stores.accounts();
        let alice = Address::parse("alice@example.test").unwrap();
        let ceo = Address::parse("ceo@elsewhere.example").unwrap();
        accounts.add_identity(&alice, &ceo).await.unwrap();
        let mut t = connect_tls(&h).await;
        cmd(&mut t, "EHLO client").await;
        let right = stratus_core::base64::encode(b"\0alice@example.test\0alice-secret");
        assert!(
            cmd(&mut t, &format!("AUTH PLAIN {right}"))
                .await
                .starts_with("235")
        );
        let cases = [
            (
                "From: bob@example.test\r\n",
                Err("550 5.7.1 <bob@example.test>: you may not send as this address"),
            ),
            (
                "From: \"alice@example.test\" <bob@example.test>\r\n",
                Err("550 5.7.1 <bob@example.test>"),
            ),
            (
                "From: alice@example.test, bob@example.test\r\nSender: alice@example.test\r\n",
                Err("550 5.7.1 <bob@example.test>"),
            ),
            (
                "From: alice@example.test\r\nSender: bob@example.test\r\n",
                Err("550 5.7.1 <bob@example.test>"),
            ),
            (
                "From: alice@example.test\r\nFrom: alice@example.test\r\n",
                Err("550 5.7.1 the message has 2 From: fields"),
            ),
            (
                "From: Undisclosed\r\n",
                Err("550 5.7.1 From: `Undisclosed` is not an address"),
            ),
            (
                "From: Alice <ALICE@example.test>\r\n",
                Ok(Some("example.test")),
            ),
            (
                "From: alice+news@example.test\r\n",
                Ok(Some("example.test")),
            ),
            (
                "From: team@example.test\r\nSender: alice@example.test\r\n",
                Ok(Some("example.test")),
            ),
            (
                "From: The CEO <ceo@elsewhere.example>\r\n",
                Ok(Some("elsewhere.example")),
            ),
            ("", Ok(Some("example.test"))),
        ];
        for (header, want) in cases {
            let r = submit(&mut t, "", &format!("{header}Subject: hi\r\n\r\nx\r\n")).await;
            match want {
                Err(prefix) => assert!(r.starts_with(prefix), "{header:?}: {r}"),
                Ok(domain) => {
                    assert!(r.starts_with("250 2.0.0"), "{header:?}: {r}");
                    let jobs = h.jobs().await;
                    assert_eq!(jobs.len(), 1, "{header:?}");
                    assert_eq!(
                        jobs[0].sign_as.as_ref().map(|d| d.as_str()),
                        domain,
                        "{header:?}"
                    );
                }
            }
        }
        assert!(h.jobs().await.is_empty(), "nothing refused was queued");
        // The identity is the user's alone, and can be taken back.
        accounts.del_identity(&alice, &ceo).await.unwrap();
        let r = cmd(&mut t, "MAIL FROM:<ceo@elsewhere.example>").await;
        assert!(r.starts_with("550 5.7.1 <ceo@elsewhere.example>"), "{r}");
    }

    /// REQUIRETLS is offered inside TLS only and travels with the job
    /// (`TLS-Required: No` is read from the message when it is sent).
    #[tokio::test]
    async fn requiretls_and_tls_required_no_travel_with_the_job() {
        let h = harness_with_passwords("submission-requiretls", 100).await;
        let mut t = connect_tls(&h).await;
        let ehlo = cmd(&mut t, "EHLO client").await;
        assert!(ehlo.contains("REQUIRETLS"), "{ehlo}");
        let right = stratus_core::base64::encode(b"\0alice@example.test\0alice-secret");
        assert!(
            cmd(&mut t, &format!("AUTH PLAIN {right}"))
                .await
                .starts_with("235")
        );
        for (mail, header, want) in [
            (" REQUIRETLS", "", true),
            ("", "TLS-Required: No\r\n", false),
            (" REQUIRETLS", "TLS-Required: No\r\n", true),
            ("", "", false),
        ] {
            let message = format!("From: alice@example.test\r\n{header}Subject: hi\r\n\r\nx\r\n");
            let r = submit(&mut t, mail, &message).await;
            assert!(r.starts_with("250"), "{r}");
            let jobs = h.jobs().await;
            let e = &jobs[0].envelope;
            assert_eq!(e.requiretls, want, "{mail:?} {header:?}");
        }
    }

    #[tokio::test]
    async fn sending_rate_is_limited_per_user() {
        let h = harness_with_passwords("submission-rate", 2).await;
        let mut t = connect_tls(&h).await;
        cmd(&mut t, "EHLO client").await;
        let right = stratus_core::base64::encode(b"\0alice@example.test\0alice-secret");
        cmd(&mut t, &format!("AUTH PLAIN {right}")).await;
        for _ in 0..2 {
            assert!(
                cmd(&mut t, "MAIL FROM:<alice@example.test>")
                    .await
                    .starts_with("250")
            );
            cmd(&mut t, "RSET").await;
        }
        let r = cmd(&mut t, "MAIL FROM:<alice@example.test>").await;
        assert!(r.starts_with("450 4.7.0"), "{r}");
    }

    #[tokio::test]
    async fn auth_login_works_and_plaintext_auth_is_refused() {
        let h = harness_with_passwords("submission-login", 100).await;
        let mut t = connect_tls(&h).await;
        cmd(&mut t, "EHLO client").await;
        assert!(
            cmd(&mut t, "AUTH LOGIN")
                .await
                .starts_with("334 VXNlcm5hbWU6")
        );
        let user = stratus_core::base64::encode(b"alice@example.test");
        assert!(cmd(&mut t, &user).await.starts_with("334 UGFzc3dvcmQ6"));
        let pass = stratus_core::base64::encode(b"alice-secret");
        assert!(cmd(&mut t, &pass).await.starts_with("235"));
        assert!(cmd(&mut t, "AUTH LOGIN").await.starts_with("503"));
    }
}
