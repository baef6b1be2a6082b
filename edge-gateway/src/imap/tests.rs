//! IMAP session tests: real local stores in a temporary directory, a blob
//! store that records every read, the session driven over
//! `tokio::io::duplex`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stratus_core::address::Address;
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::{Appended, Mailstore, NewMessage};
use stratus_core::message::analyze;
use stratus_core::ports::{BlobStore, SkRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Context;
use super::serve;
use crate::shared::Shared;
use crate::testutil::{self, Counting, TempDir};
use crate::throttle::{LoginThrottle, ThrottlePolicy};
use stratus_runtime::config::ImapSettings;

const HOST: &str = "imap.test.example";
const ALICE: &str = "alice@example.test";
const PREFIX: &str = "Return-Path: <sender@remote.example>\r\n";
const MESSAGE: &[u8] = b"From: Ann <ann@remote.example>\r\nSubject: hello\r\nDate: Tue, 1 Jul 2025 10:00:00 +0200\r\n\r\nline one\r\nline two\r\n";

struct Harness {
    _dir: TempDir,
    ctx: Arc<Context>,
    blobs: Arc<Counting>,
    _stop: watch::Sender<bool>,
}

async fn harness(name: &str) -> Harness {
    let dir = TempDir::new(name);
    let users = ["alice", "bob"].map(|user| {
        let hash = stratus_core::password::hash(&format!("{user}-secret")).unwrap();
        (user, hash, None)
    });
    let (shared, stop) = testutil::context(&dir, HOST, users.to_vec()).await;
    let blobs = Arc::new(Counting::new(shared.stores.blobs.clone()));
    let mut stores = shared.stores.clone();
    stores.blobs = blobs.clone();
    let throttle = LoginThrottle::new(ThrottlePolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..ThrottlePolicy::default()
    });
    Harness {
        ctx: Arc::new(Context {
            settings: ImapSettings {
                poll_interval: Duration::from_millis(50),
                max_errors: 5,
                max_command: 4096,
                ..ImapSettings::default()
            },
            ..(*testutil::contexts(Shared {
                stores,
                throttle: Arc::new(throttle),
                sessions: Arc::default(),
                ..shared
            })
            .imap)
                .clone()
        }),
        blobs,
        _dir: dir,
        _stop: stop,
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn remote() -> SocketAddr {
    "192.0.2.1:40000".parse().unwrap()
}

impl Harness {
    fn with_poll_interval(self, poll_interval: Duration) -> Self {
        self.with_settings(|s| s.poll_interval = poll_interval)
    }

    fn with_max_command(self, max_command: usize) -> Self {
        self.with_settings(|s| s.max_command = max_command)
    }

    fn with_settings(mut self, change: impl FnOnce(&mut ImapSettings)) -> Self {
        let mut settings = self.ctx.settings.clone();
        change(&mut settings);
        self.ctx = Arc::new(Context {
            settings,
            ..(*self.ctx).clone()
        });
        self
    }

    fn store(&self) -> Mailstore {
        self.ctx.shared.stores.mailstore()
    }

    async fn append(&self, user: &str, body: &[u8]) -> u32 {
        self.append_with_flags(user, body, Vec::new()).await
    }

    /// Delivers `body` to `user`'s INBOX with `flags`, as a delivery does.
    async fn append_with_flags(&self, user: &str, body: &[u8], flags: Vec<String>) -> u32 {
        let queue_id = QueueId::generate();
        let key = BlobKey::parse(&format!("test/{queue_id}")).unwrap();
        self.blobs.put(&key, body.to_vec().into()).await.unwrap();
        let message = NewMessage {
            queue_id,
            body: key,
            body_size: body.len() as u64,
            prefix: PREFIX.into(),
            meta: analyze(body),
            flags,
            internal_date: 1_700_000_000,
            internal_tz: 60,
        };
        let user = Address::parse(user).unwrap();
        match self
            .store()
            .append(&user, &MailboxName::inbox(), message)
            .await
            .unwrap()
        {
            Appended::New { uid, .. } => uid,
            Appended::Duplicate => panic!("duplicate"),
        }
    }

    async fn connect(&self, peer: SocketAddr) -> Client {
        let (client, server) = duplex(1 << 20);
        let ctx = self.ctx.clone();
        let task = tokio::spawn(async move { serve(server, peer, &ctx, false).await });
        let mut c = Client {
            stream: client,
            task,
            next: 0,
        };
        let greeting = c.line().await;
        assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
        c
    }

    async fn alice(&self) -> Client {
        let mut c = self.connect(loopback()).await;
        let r = c.cmd(&format!("LOGIN {ALICE} alice-secret")).await;
        assert!(r.last().unwrap().contains("OK [CAPABILITY"), "{r:?}");
        c
    }

    /// Two of Alice's sessions, both with INBOX selected.
    async fn alice_twice_in_inbox(&self) -> (Client, Client) {
        let (mut a, mut b) = (self.alice().await, self.alice().await);
        a.cmd("SELECT INBOX").await;
        b.cmd("SELECT INBOX").await;
        (a, b)
    }

    fn reads(&self) -> usize {
        self.blobs.reads.lock().unwrap().len()
    }
}

struct Client {
    stream: DuplexStream,
    task: JoinHandle<std::io::Result<()>>,
    next: u32,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> String {
        testutil::read_line(&mut self.stream).await
    }

    /// Sends a tagged command; the lines up to and including its tagged
    /// reply.
    async fn cmd(&mut self, text: &str) -> Vec<String> {
        self.next += 1;
        let tag = format!("t{}", self.next);
        self.send(format!("{tag} {text}\r\n").as_bytes()).await;
        self.until(&tag).await
    }

    async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    async fn rest(&mut self) -> String {
        testutil::read_rest(&mut self.stream).await
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

#[tokio::test]
async fn passwords_need_tls_except_from_loopback() {
    let h = harness("plaintext").await;
    let mut c = h.connect(remote()).await;
    let caps = c.cmd("CAPABILITY").await;
    assert!(caps[0].contains("LOGINDISABLED") && caps[0].contains("STARTTLS"));
    assert!(!caps[0].contains("AUTH=PLAIN"), "{caps:?}");
    let r = c.cmd(&format!("LOGIN {ALICE} alice-secret")).await;
    assert!(last(&r).contains("NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c
        .cmd("AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=")
        .await;
    assert!(last(&r).contains("NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("SELECT INBOX").await;
    assert!(
        last(&r).contains("BAD") && last(&r).contains("log in first"),
        "{r:?}"
    );

    // From loopback both work; SASL-IR and the LOGIN mechanism too.
    let mut c = h.connect(loopback()).await;
    let r = c
        .cmd("AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=")
        .await;
    assert!(last(&r).contains("OK [CAPABILITY"), "{r:?}");
    let mut c = h.connect(loopback()).await;
    c.send(b"a AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(c.line().await, "+ VXNlcm5hbWU6");
    c.send(b"YWxpY2VAZXhhbXBsZS50ZXN0\r\n").await;
    assert_eq!(c.line().await, "+ UGFzc3dvcmQ6");
    c.send(b"d3Jvbmc=\r\n").await;
    let r = c.until("a").await;
    assert!(last(&r).contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
}

#[tokio::test]
async fn garbage_gets_bad_then_bye_and_others_are_unaffected() {
    let h = harness("garbage").await;
    h.append(ALICE, MESSAGE).await;
    let mut other = h.alice().await;
    let mut c = h.alice().await;
    for bad in [
        "a FETCH",
        "b FROB x",
        "c SEARCH (((",
        "\u{1}\u{2}",
        "e SELECT",
    ] {
        c.send(format!("{bad}\r\n").as_bytes()).await;
        let l = c.line().await;
        assert!(l.contains("BAD"), "{bad:?}: {l}");
    }
    assert_eq!(c.line().await, "* BYE too many bad commands");
    assert_eq!(c.rest().await, "");
    let r = other.cmd("SELECT INBOX").await;
    assert!(last(&r).contains("OK [READ-WRITE]"), "{r:?}");
}

#[tokio::test]
async fn oversized_literals_are_refused_and_the_session_goes_on() {
    let h = harness("literals").await;
    let mut c = h.alice().await;
    // A synchronising literal over the limit is refused before it is sent.
    c.send(b"a LOGIN {100000}\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("a NO [TOOBIG]"), "{l}");
    // A long line is refused too.
    let long = format!("c CREATE {}\r\n", "y".repeat(70_000));
    c.send(long.as_bytes()).await;
    assert!(c.line().await.contains("BAD command line too long"));
    // APPEND may take up to APPENDLIMIT, far above the command limit.
    c.send(format!("d APPEND INBOX {{{}}}\r\n", MESSAGE.len() * 100).as_bytes())
        .await;
    assert_eq!(c.line().await, "+ Ready for literal data");
    c.send(&MESSAGE.repeat(100)).await;
    c.send(b"\r\n").await;
    let r = c.until("d").await;
    assert!(last(&r).contains("OK [APPENDUID "), "{r:?}");
    // A non-synchronising literal over the limit is already on its way:
    // BAD and BYE at once (RFC 7888 §4), without waiting for its octets.
    c.send(b"e CREATE {4294967295+}\r\n").await;
    let l = c.line().await;
    assert!(l.starts_with("e BAD [TOOBIG]"), "{l}");
    assert!(c.line().await.starts_with("* BYE"));
    assert_eq!(c.rest().await, "", "closed without reading on");
}

#[tokio::test]
async fn users_see_only_their_own_mailboxes() {
    let h = harness("isolation").await;
    h.append("bob@example.test", MESSAGE).await;
    let mut bob = h.connect(loopback()).await;
    bob.cmd("LOGIN bob@example.test bob-secret").await;
    bob.cmd("CREATE Secret/Plans").await;
    let mut c = h.alice().await;
    for pattern in ["*", "%", "%/%", "../*", "*bob*", "Secret*"] {
        let r = c.cmd(&format!("LIST \"\" \"{pattern}\"")).await;
        assert!(
            r.iter()
                .all(|l| !l.contains("Secret") && !l.contains("bob")),
            "{pattern}: {r:?}"
        );
    }
    for name in [
        "../bob@example.test/INBOX",
        "bob@example.test/INBOX",
        "Secret",
        "Secret/Plans",
        "SECRET",
        "/INBOX",
        "Secret\u{200b}",
    ] {
        let r = c.cmd(&format!("SELECT \"{name}\"")).await;
        assert!(last(&r).contains(" NO "), "{name}: {r:?}");
        let r = c.cmd(&format!("APPEND \"{name}\" {{5+}}\r\nhello")).await;
        assert!(last(&r).contains(" NO "), "{name}: {r:?}");
        let r = c.cmd(&format!("STATUS \"{name}\" (MESSAGES)")).await;
        assert!(last(&r).contains(" NO "), "{name}: {r:?}");
    }
    // Alice's INBOX is her own, empty one.
    let r = c.cmd("SELECT inbox").await;
    assert!(r.contains(&"* 0 EXISTS".to_string()), "{r:?}");
}

#[tokio::test]
async fn metadata_fetches_read_no_body_and_partial_fetches_read_a_range() {
    let h = harness("cheap").await;
    for _ in 0..3 {
        h.append(ALICE, MESSAGE).await;
    }
    let mut c = h.alice().await;
    c.cmd("SELECT INBOX").await;
    let before = h.reads();
    let r = c
        .cmd("FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE INTERNALDATE UID MODSEQ)")
        .await;
    // Three FETCH, the HIGHESTMODSEQ of the command that enabled
    // CONDSTORE, the tagged OK.
    assert_eq!(r.len(), 5, "{r:?}");
    assert!(r[3].starts_with("* OK [HIGHESTMODSEQ "), "{r:?}");
    assert!(
        r[0].contains("INTERNALDATE \"14-Nov-2023 23:13:20 +0100\""),
        "the zone is kept: {r:?}"
    );
    assert!(r[0].contains(&format!("RFC822.SIZE {}", PREFIX.len() + MESSAGE.len())));
    let r = c.cmd("SEARCH FROM ann LARGER 10 SENTON 1-Jul-2025").await;
    assert_eq!(r[0], "* SEARCH 1 2 3");
    c.cmd("ENABLE IMAP4rev2").await;
    let r = c.cmd("UID SEARCH FROM ann").await;
    assert_eq!(
        r[0], "* ESEARCH (TAG \"t6\") UID ALL 1:3",
        "rev2 answers ESEARCH"
    );
    assert_eq!(h.reads(), before, "no body was read");

    let r = c.cmd("FETCH 2 (BODY.PEEK[TEXT]<5.3>)").await;
    assert!(r[0].ends_with("BODY[TEXT]<5> {3}"), "{r:?}");
    assert_eq!(r[1], "one)");
    let reads = h.blobs.reads.lock().unwrap().clone();
    let (_, range) = reads.last().unwrap();
    let range = range.clone().expect("a ranged read");
    assert_eq!(range.end - range.start, 3, "only the bytes asked for");
}

#[tokio::test]
async fn expunges_by_others_wait_for_a_command_that_allows_them() {
    let h = harness("expunge").await;
    for _ in 0..3 {
        h.append(ALICE, MESSAGE).await;
    }
    let (mut a, mut b) = h.alice_twice_in_inbox().await;
    b.cmd("STORE 1 +FLAGS (\\Deleted)").await;
    let r = b.cmd("EXPUNGE").await;
    assert_eq!(r[0], "* 1 EXPUNGE");
    // FETCH by sequence number: no EXPUNGE, numbers stay as A knows them.
    let r = a.cmd("FETCH 3 (UID)").await;
    assert!(r.iter().all(|l| !l.contains("EXPUNGE")), "{r:?}");
    assert!(r.contains(&"* 3 FETCH (UID 3)".to_string()), "{r:?}");
    // NOOP may: now message 3 is message 2.
    let r = a.cmd("NOOP").await;
    assert!(r.contains(&"* 1 EXPUNGE".to_string()), "{r:?}");
    let r = a.cmd("FETCH 2 (UID)").await;
    assert!(r.contains(&"* 2 FETCH (UID 3)".to_string()), "{r:?}");
    let r = a.cmd("FETCH 3 (UID)").await;
    assert!(last(&r).contains("BAD"), "{r:?}");
}

#[tokio::test]
async fn selecting_again_catches_up_from_the_gateways_view() {
    let h = harness("views").await;
    for _ in 0..4 {
        h.append(ALICE, MESSAGE).await;
    }
    let mut a = h.alice().await;
    let r = a.cmd("SELECT INBOX").await;
    assert!(r.contains(&"* 4 EXISTS".to_string()), "{r:?}");
    assert_eq!(h.ctx.views.held(), 4);
    // Another session changes flags and expunges; mail arrives.
    let mut b = h.alice().await;
    b.cmd("SELECT INBOX").await;
    b.cmd("STORE 2 +FLAGS (\\Flagged)").await;
    b.cmd("STORE 3 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    b.cmd("LOGOUT").await;
    h.append(ALICE, MESSAGE).await;
    h.append(ALICE, MESSAGE).await;
    // A third session starts from the view held since the first SELECT,
    // and its SELECT says only how things are now.
    let mut c = h.alice().await;
    let r = c.cmd("SELECT INBOX").await;
    let exists: Vec<&String> = r.iter().filter(|l| l.ends_with(" EXISTS")).collect();
    assert_eq!(exists, ["* 5 EXISTS"], "{r:?}");
    assert!(r.iter().all(|l| !l.contains("EXPUNGE")), "{r:?}");
    assert!(
        r.contains(&"* OK [UIDNEXT 7] predicted next UID".to_string()),
        "{r:?}"
    );
    let r = c.cmd("FETCH 1:* (UID FLAGS)").await;
    assert_eq!(
        r[..],
        [
            "* 1 FETCH (UID 1 FLAGS ())",
            "* 2 FETCH (UID 2 FLAGS (\\Flagged))",
            "* 3 FETCH (UID 4 FLAGS ())",
            // New since the other sessions: recent in this one.
            "* 4 FETCH (UID 5 FLAGS (\\Recent))",
            "* 5 FETCH (UID 6 FLAGS (\\Recent))",
            "t3 OK FETCH completed",
        ],
        "{r:?}"
    );
    // The view now held is the caught-up one.
    assert_eq!(h.ctx.views.held(), 5);
    // A mailbox deleted and made again under the same name is a new one.
    c.cmd("CREATE Lists").await;
    c.cmd("COPY 1 Lists").await;
    let r = c.cmd("SELECT Lists").await;
    assert!(r.contains(&"* 1 EXISTS".to_string()), "{r:?}");
    c.cmd("UNSELECT").await;
    c.cmd("DELETE Lists").await;
    c.cmd("CREATE Lists").await;
    let r = c.cmd("SELECT Lists").await;
    assert!(r.contains(&"* 0 EXISTS".to_string()), "{r:?}");
}

#[tokio::test]
async fn idle_reports_flags_new_mail_and_expunges() {
    let h = harness("idle").await;
    h.append(ALICE, MESSAGE).await;
    let mut a = h.alice().await;
    let mut b = h.alice().await;
    a.cmd("ENABLE CONDSTORE").await;
    a.cmd("SELECT INBOX").await;
    b.cmd("SELECT INBOX").await;
    a.send(b"i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling");
    b.cmd("STORE 1 +FLAGS ($Work)").await;
    // A keyword new to the mailbox is announced first.
    assert_eq!(
        a.line().await,
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"
    );
    assert!(a.line().await.starts_with("* OK [PERMANENTFLAGS ("));
    let l = a.line().await;
    assert!(
        l.starts_with("* 1 FETCH (UID 1 FLAGS ($Work \\Recent) MODSEQ ("),
        "{l}"
    );
    h.append(ALICE, MESSAGE).await;
    assert_eq!(a.line().await, "* 2 EXISTS");
    b.cmd("STORE 1 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let mut got = Vec::new();
    while !got.iter().any(|l: &String| l.contains("EXPUNGE")) {
        got.push(a.line().await);
    }
    assert!(got.contains(&"* 1 EXPUNGE".to_string()), "{got:?}");
    a.send(b"DONE\r\n").await;
    let r = a.until("i").await;
    assert!(last(&r).starts_with("i OK"), "{r:?}");
    let r = a.cmd("LOGOUT").await;
    assert!(r[0].starts_with("* BYE"));
    assert_eq!(a.rest().await, "");
    a.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_wakes_on_changes_in_this_process_without_polling() {
    // No poll for an hour: only the process's mailbox signal can wake IDLE.
    let h = harness("idle-wake")
        .await
        .with_poll_interval(Duration::from_secs(3600));
    h.append(ALICE, MESSAGE).await;
    let (mut a, mut b) = h.alice_twice_in_inbox().await;
    a.send(b"i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling");
    let soon = Duration::from_secs(10);
    // A delivery (the pipeline's append) ...
    h.append(ALICE, MESSAGE).await;
    let l = tokio::time::timeout(soon, a.line()).await;
    assert_eq!(
        l.as_deref().ok(),
        Some("* 2 EXISTS"),
        "woken by the delivery"
    );
    assert_eq!(a.line().await, "* 2 RECENT", "A selected first");
    // ... and another session's flag change.
    b.cmd("UID STORE 1 +FLAGS (\\Flagged)").await;
    let l = tokio::time::timeout(soon, a.line())
        .await
        .expect("woken by STORE");
    assert!(
        l.starts_with("* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent)"),
        "{l}"
    );
    // An expunge, and a delivery right after it: taken from the signal,
    // they must leave the same view a read of the index would.
    b.cmd("UID STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    h.append(ALICE, MESSAGE).await;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "* 2 EXISTS") {
        let l = tokio::time::timeout(soon, a.line())
            .await
            .unwrap_or_else(|_| panic!("no EXISTS for the delivery: {seen:?}"));
        seen.push(l);
    }
    assert_eq!(
        seen.iter().filter(|l| l.as_str() == "* 1 EXPUNGE").count(),
        1,
        "{seen:?}"
    );
    a.send(b"DONE\r\n").await;
    let r = a.until("i").await;
    assert!(last(&r).starts_with("i OK"), "{r:?}");
    let listed = a.cmd("FETCH 1:* (UID)").await;
    assert_eq!(
        listed[..2],
        ["* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)"],
        "{listed:?}"
    );
}

#[tokio::test]
async fn own_changes_never_hide_other_sessions_changes() {
    // Every command looks for changes (no poll interval to skip them).
    let h = harness("own-changes")
        .await
        .with_poll_interval(Duration::ZERO);
    for _ in 0..3 {
        h.append(ALICE, MESSAGE).await;
    }
    let (mut a, mut b) = h.alice_twice_in_inbox().await;
    // B's change comes between A's view and A's own STORE, and B expunges
    // a message, which A may not report after STORE or FETCH.
    b.cmd("STORE 2 +FLAGS (\\Seen)").await;
    b.cmd("STORE 3 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let mut seen = a.cmd("STORE 1 +FLAGS (\\Flagged)").await;
    seen.extend(a.cmd("FETCH 1 (FLAGS)").await);
    assert!(
        !seen.iter().any(|l| l.contains("EXPUNGE")),
        "no EXPUNGE after STORE or FETCH: {seen:?}"
    );
    seen.extend(a.cmd("NOOP").await);
    let reported = |what: &str| seen.iter().filter(|l| l.contains(what)).count();
    assert_eq!(
        reported("* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))"),
        1,
        "{seen:?}"
    );
    assert_eq!(reported("* 3 EXPUNGE"), 1, "{seen:?}");
    // Nothing is reported twice later.
    let again = a.cmd("NOOP").await;
    assert_eq!(again.len(), 1, "{again:?}");
}

#[tokio::test]
async fn mailboxes_keywords_and_uidvalidity() {
    let h = harness("mailboxes").await;
    h.append(ALICE, MESSAGE).await;
    let mut c = h.alice().await;
    let r = c.cmd("SELECT INBOX").await;
    assert!(
        r.iter()
            .any(|l| l.contains("PERMANENTFLAGS (") && l.contains("\\*"))
    );
    c.cmd("STORE 1 +FLAGS ($Custom)").await;
    let r = c.cmd("SELECT INBOX").await;
    assert!(
        r.iter()
            .any(|l| l.starts_with("* FLAGS (") && l.contains("$Custom")),
        "keywords persist: {r:?}"
    );
    c.cmd("CREATE Old").await;
    let first = c.cmd("STATUS Old (UIDVALIDITY)").await[0].clone();
    c.cmd("DELETE Old").await;
    c.cmd("CREATE Old").await;
    let second = c.cmd("STATUS Old (UIDVALIDITY)").await[0].clone();
    assert_ne!(first, second);
    let r = c.cmd("DELETE INBOX").await;
    assert!(last(&r).contains("NO"), "{r:?}");
    // RENAME INBOX moves its messages and leaves it empty.
    let r = c.cmd("RENAME INBOX Saved").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    let r = c.cmd("STATUS Saved (MESSAGES)").await;
    assert!(r[0].contains("MESSAGES 1"), "{r:?}");
    let r = c.cmd("STATUS INBOX (MESSAGES)").await;
    assert!(r[0].contains("MESSAGES 0"), "{r:?}");
    // Modified UTF-7 names for IMAP4rev1, UTF-8 once IMAP4rev2 is on.
    c.cmd("CREATE \"Gr&APw-n\"").await;
    let r = c.cmd("LIST \"\" \"Gr*\"").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" \"Gr&APw-n\"");
    c.cmd("ENABLE IMAP4rev2").await;
    let r = c.cmd("LIST \"\" \"Gr*\"").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" \"Grün\"");
    c.cmd("CREATE \"Entwürfe\"").await;
    let r = c.cmd("LIST \"\" \"Entw*\"").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"");
}

#[tokio::test]
async fn qresync_reports_vanished_uids_and_changed_flags() {
    let h = harness("qresync").await;
    for _ in 0..3 {
        h.append(ALICE, MESSAGE).await;
    }
    let mut a = h.alice().await;
    let r = a.cmd("SELECT INBOX (QRESYNC (1 1))").await;
    assert!(last(&r).contains("BAD"), "QRESYNC must be enabled: {r:?}");
    let r = a.cmd("ENABLE QRESYNC").await;
    assert_eq!(
        r[0], "* ENABLED CONDSTORE QRESYNC",
        "QRESYNC implies CONDSTORE"
    );
    let r = a.cmd("SELECT INBOX").await;
    let modseq: u64 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [HIGHESTMODSEQ "))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .parse()
        .unwrap();
    let uidvalidity: u32 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .parse()
        .unwrap();
    a.cmd("UNSELECT").await;

    let mut b = h.alice().await;
    b.cmd("SELECT INBOX").await;
    b.cmd("STORE 2 +FLAGS ($Seen2)").await;
    b.cmd("STORE 1 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;

    let r = a
        .cmd(&format!(
            "SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:3))"
        ))
        .await;
    assert!(r.contains(&"* VANISHED (EARLIER) 1".to_string()), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 1 FETCH (UID 2 FLAGS ($Seen2) MODSEQ (")),
        "{r:?}"
    );
    assert!(!r.iter().any(|l| l.contains("UID 3")), "unchanged: {r:?}");
    let r = a
        .cmd(&format!(
            "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"
        ))
        .await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 1");
    // Expunges are VANISHED now, also the session's own.
    a.cmd("STORE 2 +FLAGS (\\Deleted)").await;
    let r = a.cmd("EXPUNGE").await;
    assert_eq!(r[0], "* VANISHED 3");
}

/// Once the sweeper pruned the tombstones a client would need, QRESYNC,
/// CHANGEDSINCE with VANISHED and a session that stayed selected all fall
/// back to a full resync: every UID not held is vanished, nothing is lost.
#[tokio::test]
async fn pruned_history_gives_a_full_resync() {
    let h = harness("qresync-pruned").await;
    for _ in 0..4 {
        h.append(ALICE, MESSAGE).await;
    }
    let mut a = h.alice().await;
    a.cmd("ENABLE QRESYNC").await;
    let r = a.cmd("SELECT INBOX").await;
    let number = |r: &[String], code: &str| -> u64 {
        r.iter()
            .find_map(|l| l.strip_prefix(&format!("* OK [{code} ")[..]))
            .and_then(|l| l.split(']').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (modseq, uidvalidity) = (number(&r, "HIGHESTMODSEQ"), number(&r, "UIDVALIDITY"));
    let mut stayed = h.alice().await;
    stayed.cmd("SELECT INBOX").await;

    let mut b = h.alice().await;
    b.cmd("SELECT INBOX").await;
    b.cmd("STORE 2,3 +FLAGS (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    b.cmd("LOGOUT").await;
    a.cmd("UNSELECT").await;

    // Two passes a retention apart: the first records the watermark, the
    // second prunes up to it.
    let stores = &h.ctx.shared.stores;
    let settings = stratus_core::sweep::SweepSettings {
        grace: Duration::from_secs(3600),
        in_flight: Duration::from_secs(3600),
        keep_changes: Duration::from_secs(1),
    };
    let now = stratus_core::mailstore::now();
    for at in [now, now + 2] {
        stratus_core::sweep::sweep(&stores.index, &stores.blobs, settings, at)
            .await
            .unwrap();
    }
    let record = h
        .store()
        .mailbox(&Address::parse(ALICE).unwrap(), &MailboxName::inbox())
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(record.pruned_modseq > modseq, "{record:?}");
    let tombstones = stores
        .index
        .query(&format!("gone#{}", record.id), SkRange::All, 10, false)
        .await
        .unwrap();
    assert!(tombstones.is_empty(), "pruned: {tombstones:?}");

    let r = a
        .cmd(&format!(
            "SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:4))"
        ))
        .await;
    assert!(r.contains(&"* VANISHED (EARLIER) 2:3".to_string()), "{r:?}");
    assert!(r.contains(&"* 2 EXISTS".to_string()), "{r:?}");
    let r = a
        .cmd(&format!(
            "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"
        ))
        .await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 2:3", "{r:?}");
    // A session selected since before the expunge learns of it too.
    let r = stayed.cmd("NOOP").await;
    assert_eq!(
        r[..3],
        ["* 2 EXPUNGE", "* 2 EXPUNGE", "* 2 EXISTS"],
        "{r:?}"
    );
}

#[tokio::test]
async fn compress_deflate_after_login() {
    let h = harness("compress").await;
    h.append(ALICE, MESSAGE).await;
    let mut c = h.alice().await;
    let caps = c.cmd("CAPABILITY").await;
    assert!(caps[0].contains("COMPRESS=DEFLATE"), "{caps:?}");
    // The client pipelines a compressed command right behind COMPRESS.
    let mut compressed = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut pipelined = Vec::with_capacity(256);
    compressed
        .compress_vec(
            b"b SELECT INBOX\r\n",
            &mut pipelined,
            flate2::FlushCompress::Sync,
        )
        .unwrap();
    let mut wire = b"a COMPRESS DEFLATE\r\n".to_vec();
    wire.extend_from_slice(&pipelined);
    c.send(&wire).await;
    assert_eq!(c.line().await, "a OK DEFLATE active");
    let Client { stream, task, .. } = c;
    let mut z = crate::deflate::Deflate::new(stream, Vec::new());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("b OK") {
        let n = tokio::time::timeout(Duration::from_secs(10), z.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("* 1 EXISTS"));
    z.write_all(b"c COMPRESS DEFLATE\r\nd LOGOUT\r\n")
        .await
        .unwrap();
    z.flush().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), z.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("c NO [COMPRESSIONACTIVE]"), "{rest}");
    assert!(rest.contains("d OK LOGOUT"), "{rest}");
    task.await.unwrap().unwrap();
}

/// RFC 9051 §6.3.4 and §2.3.2, and names that look like paths.
#[tokio::test]
async fn hostile_names_and_flags_are_refused() {
    let h = harness("hostile-names").await;
    let mut c = h.alice().await;
    // A trailing separator declares children to come: it creates the name.
    let r = c.cmd("CREATE Projects/").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    let r = c.cmd("LIST \"\" Projects").await;
    assert!(r.iter().any(|l| l.ends_with(" \"Projects\"")), "{r:?}");
    for name in ["..", ".", "a/../b", "Projects/.", "./x"] {
        let r = c.cmd(&format!("CREATE \"{name}\"")).await;
        assert!(last(&r).contains("NO [CANNOT]"), "{name}: {r:?}");
    }
    let r = c.cmd("RENAME Projects \"Projects/..\"").await;
    assert!(last(&r).contains("NO [CANNOT]"), "{r:?}");
    let r = c.cmd("LIST \"\" *").await;
    assert!(
        !r.iter().any(|l| l.contains("..") || l.ends_with(" \".\"")),
        "{r:?}"
    );
    // Only the system flags start with a backslash.
    c.cmd("SELECT INBOX").await;
    h.append("alice@example.test", MESSAGE).await;
    c.cmd("NOOP").await;
    let r = c.cmd("STORE 1 +FLAGS (\\Important)").await;
    assert!(
        last(&r).contains("BAD") && last(&r).contains("not a system flag"),
        "{r:?}"
    );
    let r = c.cmd("STORE 1 +FLAGS (\\Flagged $Important)").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    let r = c.cmd("FETCH 1 FLAGS").await;
    assert!(
        r[0].contains("\\Flagged") && r[0].contains("$Important"),
        "{r:?}"
    );
}

/// Logged-in sessions are limited per user and address, not per address:
/// an office behind one address is many users.
#[tokio::test]
async fn sessions_are_limited_per_user_and_address() {
    let h = harness("user-ip").await;
    let h = Harness {
        ctx: Arc::new(Context {
            settings: ImapSettings {
                max_per_user_ip: 2,
                ..h.ctx.settings.clone()
            },
            ..(*h.ctx).clone()
        }),
        ..h
    };
    let a1 = h.alice().await;
    let _a2 = h.alice().await;
    let mut a3 = h.connect(loopback()).await;
    let r = a3.cmd(&format!("LOGIN {ALICE} alice-secret")).await;
    assert!(last(&r).contains("NO [LIMIT]"), "{r:?}");
    // Not logged in: the session may try again later.
    let r = a3.cmd("SELECT INBOX").await;
    assert!(last(&r).contains("BAD") || last(&r).contains("NO"), "{r:?}");
    // Another user from the same address has room.
    let mut bob = h.connect(loopback()).await;
    let r = bob.cmd("LOGIN bob@example.test bob-secret").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    // A session that ends gives its place back.
    let mut a1 = a1;
    a1.cmd("LOGOUT").await;
    a1.task.await.unwrap().unwrap();
    let r = a3.cmd(&format!("LOGIN {ALICE} alice-secret")).await;
    assert!(last(&r).contains("OK"), "{r:?}");
}

/// Issue 18 point 11: operations on many messages never hit a backend
/// limit (a transaction takes at most 100 writes).
#[tokio::test]
async fn bulk_operations_over_many_messages() {
    const N: u32 = 10_000;
    let h = harness("bulk").await;
    for _ in 0..N {
        h.append("alice@example.test", MESSAGE).await;
    }
    let mut c = h.alice().await;
    c.cmd("CREATE Other").await;
    c.cmd("SELECT INBOX").await;
    let half = N / 2;
    for cmd in [
        "STORE 1:* +FLAGS.SILENT (\\Seen $Bulk)".to_string(),
        "COPY 1:* Other".to_string(),
        "UID STORE 1:* -FLAGS.SILENT ($Bulk)".to_string(),
        format!("MOVE 1:{half} Other"),
        "STORE 1:* +FLAGS.SILENT (\\Deleted)".to_string(),
        "EXPUNGE".to_string(),
    ] {
        let r = c.cmd(&cmd).await;
        assert!(last(&r).contains("OK"), "{cmd}: {:?}", last(&r));
    }
    let r = c.cmd("STATUS Other (MESSAGES)").await;
    assert!(r[0].contains(&format!("MESSAGES {}", N + half)), "{r:?}");
    let r = c.cmd("RENAME Other Elsewhere").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    let r = c.cmd("SELECT Elsewhere").await;
    assert!(
        r.iter().any(|l| l == &format!("* {} EXISTS", N + half)),
        "{r:?}"
    );
    c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
    let r = c.cmd("UID EXPUNGE 1:*").await;
    assert!(last(&r).contains("OK"), "{:?}", last(&r));
    assert_eq!(
        r.iter().filter(|l| l.ends_with(" EXPUNGE")).count(),
        (N + half) as usize
    );
    let r = c.cmd("STATUS INBOX (MESSAGES)").await;
    assert!(r[0].contains("MESSAGES 0"), "{r:?}");
    c.cmd("UNSELECT").await;
    let r = c.cmd("DELETE Elsewhere").await;
    assert!(last(&r).contains("OK"), "{r:?}");
}

/// Issue 18 point 4: a new keyword is announced with FLAGS (and
/// PERMANENTFLAGS) before any FETCH shows it, to every session that has the
/// mailbox selected; and there may not be more than MAX_KEYWORDS of them.
#[tokio::test]
async fn new_keywords_are_announced_before_they_show() {
    let h = harness("keywords-announced").await;
    h.append("alice@example.test", MESSAGE).await;
    let (mut a, mut b) = h.alice_twice_in_inbox().await;
    let r = a.cmd("STORE 1 +FLAGS ($Urgent)").await;
    let flags = r
        .iter()
        .position(|l| l.starts_with("* FLAGS "))
        .expect("FLAGS");
    let fetch = r.iter().position(|l| l.contains("FETCH")).expect("FETCH");
    assert!(flags < fetch, "{r:?}");
    assert!(r[flags].contains("$Urgent"), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* OK [PERMANENTFLAGS (") && l.contains("$Urgent \\*)")),
        "{r:?}"
    );
    // The other session hears of it the same way.
    let r = b.cmd("NOOP").await;
    let flags = r
        .iter()
        .position(|l| l.starts_with("* FLAGS "))
        .expect("FLAGS");
    let fetch = r.iter().position(|l| l.contains("FETCH")).expect("FETCH");
    assert!(flags < fetch && r[flags].contains("$Urgent"), "{r:?}");
    // A keyword already announced is not announced again.
    let r = a.cmd("STORE 1 -FLAGS ($Urgent)").await;
    assert!(!r.iter().any(|l| l.starts_with("* FLAGS ")), "{r:?}");
    // New mail with a new keyword: FLAGS before the client can fetch it.
    h.append_with_flags(ALICE, MESSAGE, vec!["$Delivered".into()])
        .await;
    let r = b.cmd("NOOP").await;
    let flags = r
        .iter()
        .position(|l| l.starts_with("* FLAGS "))
        .expect("FLAGS");
    let exists = r
        .iter()
        .position(|l| l.ends_with(" EXISTS"))
        .expect("EXISTS");
    assert!(flags < exists && r[flags].contains("$Delivered"), "{r:?}");
    // At most MAX_KEYWORDS distinct keywords per mailbox.
    let many: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let r = a
        .cmd(&format!("STORE 1 +FLAGS.SILENT ({})", many.join(" ")))
        .await;
    assert!(last(&r).contains("OK"), "{:?}", last(&r));
    let more: Vec<String> = (200..300).map(|i| format!("k{i}")).collect();
    let r = a
        .cmd(&format!("STORE 1 +FLAGS.SILENT ({})", more.join(" ")))
        .await;
    assert!(last(&r).contains("NO [LIMIT]"), "{:?}", last(&r));
    // A keyword has a sane length.
    let long = "k".repeat(129);
    let r = a.cmd(&format!("STORE 1 +FLAGS ({long})")).await;
    assert!(last(&r).contains(" BAD "), "{:?}", last(&r));
    // Keywords already there may still be set.
    a.cmd("NOOP").await;
    let r = a.cmd("STORE 2 +FLAGS.SILENT (k1 k2 $Urgent)").await;
    assert!(last(&r).contains("OK"), "{:?}", last(&r));
}

/// Issue 18 point 5 (RFC 6851 §4.3): copies into the selected mailbox are
/// reported with EXISTS before the tagged reply, moved ones with EXPUNGE
/// as well, however recently the session last looked.
#[tokio::test]
async fn copy_and_move_into_the_selected_mailbox_report_exists() {
    let h = harness("copy-into-selected").await;
    h.append(ALICE, MESSAGE).await;
    h.append(ALICE, MESSAGE).await;
    let mut c = h.alice().await;
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("COPY 1:2 INBOX").await;
    assert!(r.iter().any(|l| l == "* 4 EXISTS"), "{r:?}");
    assert!(last(&r).contains("OK [COPYUID "), "{r:?}");
    let r = c.cmd("UID MOVE 1 INBOX").await;
    assert!(r.iter().any(|l| l == "* 1 EXPUNGE"), "{r:?}");
    assert!(r.iter().any(|l| l == "* 4 EXISTS"), "{r:?}");
    let r = c.cmd("FETCH 4 UID").await;
    assert!(r[0].contains("UID 5"), "{r:?}");
}

/// Issue 18 point 2: subscriptions are names, apart from mailboxes
/// (RFC 9051 §6.3.7, RFC 5258, RFC 3501 §6.3.9).
#[tokio::test]
async fn subscriptions_are_names_of_their_own() {
    let h = harness("subscriptions").await;
    let mut c = h.alice().await;
    // CREATE does not subscribe.
    c.cmd("CREATE Foo").await;
    let r = c.cmd("LSUB \"\" Foo").await;
    assert_eq!(r.len(), 1, "{r:?}");
    // DELETE does not unsubscribe.
    c.cmd("SUBSCRIBE Foo").await;
    c.cmd("DELETE Foo").await;
    let r = c.cmd("LSUB \"\" Foo").await;
    assert_eq!(r[0], "* LSUB () \"/\" \"Foo\"", "{r:?}");
    let r = c.cmd("LIST (SUBSCRIBED) \"\" Foo").await;
    assert_eq!(
        r[0], "* LIST (\\NonExistent \\Subscribed) \"/\" \"Foo\"",
        "{r:?}"
    );
    // A name that never existed may be subscribed to.
    let r = c.cmd("SUBSCRIBE Ghost").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    // A parent with a subscribed child, not itself subscribed.
    c.cmd("CREATE Parent/Child").await;
    c.cmd("SUBSCRIBE Parent/Child").await;
    let r = c.cmd("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %").await;
    let parent = r
        .iter()
        .find(|l| l.contains("\"Parent\""))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        parent.ends_with("(\"CHILDINFO\" (\"SUBSCRIBED\"))"),
        "{parent}"
    );
    assert!(!parent.contains("\\Subscribed"), "{parent}");
    let r = c.cmd("LSUB \"\" %").await;
    assert!(
        r.contains(&"* LSUB (\\Noselect) \"/\" \"Parent\"".to_string()),
        "{r:?}"
    );
    assert!(!r.iter().any(|l| l.contains("Parent/Child")), "{r:?}");
    let r = c.cmd("LSUB \"\" *").await;
    assert!(
        r.contains(&"* LSUB () \"/\" \"Parent/Child\"".to_string()),
        "{r:?}"
    );
    // Once the only subscribed child goes, so does the parent.
    c.cmd("UNSUBSCRIBE Parent/Child").await;
    let r = c.cmd("LSUB \"\" %").await;
    assert!(!r.iter().any(|l| l.contains("Parent")), "{r:?}");
    // The default mailboxes start subscribed.
    let r = c.cmd("LSUB \"\" INBOX").await;
    assert_eq!(r[0], "* LSUB () \"/\" \"INBOX\"", "{r:?}");
}

/// Issue 18 point 3 (RFC 7162 §3.1, RFC 4731 §3.2).
#[tokio::test]
async fn condstore_enabled_by_any_command_and_esearch_modseq() {
    let h = harness("condstore-enabling").await;
    for _ in 0..3 {
        h.append(ALICE, MESSAGE).await;
    }
    let mut c = h.alice().await;
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("STORE 3 +FLAGS.SILENT ($Later)").await;
    assert!(
        !r.iter().any(|l| l.contains("MODSEQ")),
        "not enabled yet: {r:?}"
    );
    // FETCH … MODSEQ enables CONDSTORE, and says HIGHESTMODSEQ once.
    let r = c.cmd("FETCH 1:3 (MODSEQ)").await;
    let modseq = |l: &str| -> u64 {
        let at = l.find("MODSEQ (").unwrap() + 8;
        l[at..].split(')').next().unwrap().parse().unwrap()
    };
    let m: Vec<u64> = r
        .iter()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH ("))
        .map(|l| modseq(l))
        .collect();
    assert_eq!(m.len(), 3, "{r:?}");
    assert!(
        r.contains(&format!("* OK [HIGHESTMODSEQ {}] highest MODSEQ", m[2])),
        "{r:?}"
    );
    let r = c.cmd("FETCH 1 (MODSEQ)").await;
    assert!(
        !r.iter().any(|l| l.contains("HIGHESTMODSEQ")),
        "once: {r:?}"
    );
    // From now on every FETCH a STORE causes has UID and MODSEQ.
    let r = c.cmd("STORE 1 +FLAGS (\\Seen)").await;
    assert!(
        r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ ("),
        "{r:?}"
    );
    // MIN/MAX report the MODSEQ of the messages returned, not of all.
    let r = c.cmd("SEARCH RETURN (MIN MAX) 2:3 MODSEQ 1").await;
    assert!(
        r[0].ends_with(&format!("MIN 2 MAX 3 MODSEQ {}", m[2])),
        "{r:?}"
    );
    let r = c.cmd("SEARCH RETURN (MAX) 2 MODSEQ 1").await;
    assert!(r[0].ends_with(&format!("MAX 2 MODSEQ {}", m[1])), "{r:?}");
    let r = c.cmd("SEARCH RETURN (COUNT) 2 MODSEQ 1").await;
    assert!(r[0].ends_with(&format!("COUNT 1 MODSEQ {}", m[1])), "{r:?}");
    // A SEARCH with a MODSEQ criterion enables CONDSTORE too.
    let mut d = h.alice().await;
    d.cmd("SELECT INBOX").await;
    let r = d.cmd("SEARCH MODSEQ 1").await;
    assert!(
        r.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")),
        "{r:?}"
    );
}

/// Issue 18 point 1 (RFC 3501 §2.3.2): a message is `\Recent` in exactly
/// one session, the first IMAP4rev1 session told of it; EXAMINE sees
/// unclaimed ones without claiming them; IMAP4rev2 sessions neither see
/// nor claim them. SELECT, NOOP, FETCH FLAGS, SEARCH RECENT/NEW/OLD and
/// STATUS RECENT agree.
#[tokio::test]
async fn recent_belongs_to_one_session() {
    let h = harness("recent").await.with_poll_interval(Duration::ZERO);
    let recent_line = |r: &[String]| {
        r.iter()
            .find(|l| l.ends_with(" RECENT"))
            .cloned()
            .unwrap_or_default()
    };
    h.append(ALICE, MESSAGE).await;
    h.append(ALICE, MESSAGE).await;
    let mut c = h.alice().await;
    let r = c.cmd("STATUS INBOX (RECENT MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 2 MESSAGES 2)", "{r:?}");
    // A selects first and has both.
    let mut a = h.alice().await;
    let r = a.cmd("SELECT INBOX").await;
    assert_eq!(recent_line(&r), "* 2 RECENT", "{r:?}");
    let r = a.cmd("FETCH 1:* (FLAGS)").await;
    assert_eq!(
        r[..2],
        [
            "* 1 FETCH (FLAGS (\\Recent))",
            "* 2 FETCH (FLAGS (\\Recent))"
        ]
    );
    a.cmd("STORE 1 +FLAGS.SILENT (\\Seen)").await;
    assert_eq!(a.cmd("SEARCH RECENT").await[0], "* SEARCH 1 2");
    assert_eq!(a.cmd("SEARCH NEW").await[0], "* SEARCH 2");
    assert_eq!(a.cmd("SEARCH OLD").await[0], "* SEARCH");
    // B comes second: nothing is recent for it, and nothing is left.
    let mut b = h.alice().await;
    let r = b.cmd("SELECT INBOX").await;
    assert_eq!(recent_line(&r), "* 0 RECENT", "{r:?}");
    assert_eq!(b.cmd("FETCH 2 (FLAGS)").await[0], "* 2 FETCH (FLAGS ())");
    assert_eq!(b.cmd("SEARCH OLD").await[0], "* SEARCH 1 2");
    assert_eq!(b.cmd("SEARCH RECENT").await[0], "* SEARCH");
    let r = c.cmd("STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 0)", "{r:?}");
    // New mail goes to whichever session hears of it first.
    h.append(ALICE, MESSAGE).await;
    let r = a.cmd("NOOP").await;
    assert_eq!(r[..2], ["* 3 EXISTS", "* 3 RECENT"], "{r:?}");
    let r = b.cmd("NOOP").await;
    assert_eq!(r[..2], ["* 3 EXISTS", "* 0 RECENT"], "{r:?}");
    // EXAMINE shows what nobody claimed, and leaves it unclaimed.
    h.append(ALICE, MESSAGE).await;
    let r = c.cmd("STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 1)", "{r:?}");
    let r = c.cmd("EXAMINE INBOX").await;
    assert_eq!(recent_line(&r), "* 1 RECENT", "{r:?}");
    assert_eq!(
        c.cmd("FETCH 4 (FLAGS)").await[0],
        "* 4 FETCH (FLAGS (\\Recent))"
    );
    let r = b.cmd("NOOP").await;
    assert_eq!(r[..2], ["* 4 EXISTS", "* 1 RECENT"], "{r:?}");
    assert_eq!(b.cmd("SEARCH RECENT").await[0], "* SEARCH 4");
    let r = a.cmd("NOOP").await;
    assert_eq!(r[..2], ["* 4 EXISTS", "* 3 RECENT"], "{r:?}");
    // An IMAP4rev2 session is told nothing of \Recent and claims nothing.
    let mut d = h.alice().await;
    d.cmd("ENABLE IMAP4rev2").await;
    h.append(ALICE, MESSAGE).await;
    let r = d.cmd("SELECT INBOX").await;
    assert_eq!(recent_line(&r), "", "{r:?}");
    assert_eq!(d.cmd("FETCH 5 (FLAGS)").await[0], "* 5 FETCH (FLAGS ())");
    let r = a.cmd("NOOP").await;
    assert_eq!(r[..2], ["* 5 EXISTS", "* 4 RECENT"], "{r:?}");
    // Expunged recent messages no longer count.
    a.cmd("STORE 1:2 +FLAGS.SILENT (\\Deleted)").await;
    a.cmd("EXPUNGE").await;
    let r = a.cmd("SEARCH RECENT").await;
    assert_eq!(r[0], "* SEARCH 1 3", "{r:?}");
    let r = a.cmd("STATUS INBOX (RECENT)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (RECENT 2)", "{r:?}");
}

/// Issue 18 point 8: BODY[n.TEXT] of a message/rfc822 part is the whole
/// body of the message inside, preamble and epilogue included; NUL goes
/// out only in BINARY's literal8, never in a BODY literal.
#[tokio::test]
async fn encapsulated_text_and_nul_bytes() {
    let h = harness("sections").await;
    let inner_body = "preamble\r\n--i\r\n\r\none\r\n--i--\r\nepilogue";
    let message = format!(
        "From: a@x.example\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n\
         --o\r\nContent-Type: text/plain\r\n\r\nbin\0ary\r\n\
         --o\r\nContent-Type: message/rfc822\r\n\r\n\
         Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n{inner_body}\r\n\
         --o--\r\n"
    );
    h.append(ALICE, message.as_bytes()).await;
    let mut c = h.alice().await;
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("FETCH 1 (BODY.PEEK[2.TEXT])").await;
    assert_eq!(
        r[0],
        format!("* 1 FETCH (BODY[2.TEXT] {{{}}}", inner_body.len()),
        "{r:?}"
    );
    assert_eq!(r[1..r.len() - 1].join("\r\n"), format!("{inner_body})"));
    // NUL: 0x80 in BODY sections, literal8 in BINARY.
    for fetch in [
        "BODY.PEEK[1]",
        "BODY.PEEK[]",
        "RFC822.TEXT",
        "BODY.PEEK[TEXT]",
    ] {
        let r = c.cmd(&format!("FETCH 1 ({fetch})")).await;
        assert!(r.iter().all(|l| !l.contains('\0')), "{fetch}: {r:?}");
        assert!(
            r.iter().any(|l| l.contains("bin\u{fffd}ary")),
            "{fetch}: {r:?}"
        );
    }
    let r = c.cmd("FETCH 1 (BINARY.PEEK[1])").await;
    assert_eq!(r[0], "* 1 FETCH (BINARY[1] ~{7}", "{r:?}");
    assert_eq!(r[1], "bin\0ary)");
}

/// Issue 18 point 12: the keyword limit holds for APPEND and COPY into
/// any mailbox, not only for STORE in the selected one; PERMANENTFLAGS
/// drops `\*` when no more fit; keywords no message uses any more stop
/// counting once the mailbox is selected again.
#[tokio::test]
async fn keyword_limit_holds_for_append_and_copy() {
    let h = harness("keyword-limit").await;
    h.append_with_flags(ALICE, MESSAGE, vec!["$Outside".into()])
        .await;
    let mut c = h.alice().await;
    c.cmd("CREATE Other").await;
    let list =
        |range: std::ops::Range<u32>| range.map(|i| format!("k{i}")).collect::<Vec<_>>().join(" ");
    let append = |flags: String| format!("APPEND Other ({flags}) {{5+}}\r\nhello");
    let r = c.cmd(&append(list(0..200))).await;
    assert!(last(&r).contains("OK [APPENDUID"), "{r:?}");
    let r = c.cmd(&append(list(150..300))).await;
    assert!(last(&r).contains("NO [LIMIT]"), "{r:?}");
    let r = c.cmd(&append(list(100..256))).await;
    assert!(last(&r).contains("OK [APPENDUID"), "{r:?}");
    // Full: old keywords still go, new ones do not, COPY included.
    let r = c.cmd(&append("k3 \\Seen".into())).await;
    assert!(last(&r).contains("OK [APPENDUID"), "{r:?}");
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("COPY 1 Other").await;
    assert!(last(&r).contains("NO [LIMIT]"), "{r:?}");
    let r = c.cmd("SELECT Other").await;
    let permanent = r
        .iter()
        .find(|l| l.starts_with("* OK [PERMANENTFLAGS"))
        .unwrap();
    assert!(!permanent.contains("\\*"), "{permanent}");
    // Once no message uses them, they no longer count.
    c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
    c.cmd("EXPUNGE").await;
    let r = c.cmd("SELECT Other").await;
    let permanent = r
        .iter()
        .find(|l| l.starts_with("* OK [PERMANENTFLAGS"))
        .unwrap();
    assert!(permanent.contains("\\*"), "{permanent}");
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("COPY 1 Other").await;
    assert!(last(&r).contains("OK [COPYUID"), "{r:?}");
}

/// Issue 18 point 9: ESORT (RFC 5267) answers SORT RETURN with ESEARCH,
/// MIN and MAX in sort order; PARTIAL (RFC 9394) windows SEARCH, SORT
/// and UID FETCH results; SORT=DISPLAY (RFC 5957) sorts by display name.
#[tokio::test]
async fn esort_partial_and_sort_display() {
    let h = harness("esort").await;
    // UIDs 1..=4, display names in the order 3, 1, 4, 2.
    for from in [
        "\"Bea\" <zed@x.example>",
        "dora@x.example",
        "Anna <yves@x.example>",
        "\"Cid\" <aaa@x.example>",
    ] {
        let message = format!("From: {from}\r\nSubject: s\r\n\r\nbody\r\n");
        h.append(ALICE, message.as_bytes()).await;
    }
    let mut c = h.alice().await;
    let r = c.cmd("CAPABILITY").await;
    for cap in ["ESORT", "SORT=DISPLAY", "PARTIAL"] {
        assert!(r[0].split(' ').any(|w| w == cap), "{cap}: {r:?}");
    }
    c.cmd("SELECT INBOX").await;
    assert_eq!(
        c.cmd("SORT (DISPLAYFROM) UTF-8 ALL").await[0],
        "* SORT 3 1 4 2"
    );
    // FROM sorts by mailbox: aaa, dora, yves, zed.
    assert_eq!(c.cmd("SORT (FROM) UTF-8 ALL").await[0], "* SORT 4 2 3 1");
    let r = c
        .cmd("UID SORT RETURN (MIN MAX COUNT ALL) (DISPLAYFROM) UTF-8 ALL")
        .await;
    assert_eq!(
        r[0], "* ESEARCH (TAG \"t6\") UID MIN 3 MAX 2 ALL 3,1,4,2 COUNT 4",
        "{r:?}"
    );
    let r = c
        .cmd("SORT RETURN (PARTIAL -1:-2) (DISPLAYFROM) UTF-8 ALL")
        .await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t7\") PARTIAL (-1:-2 4,2)", "{r:?}");
    let r = c.cmd("SEARCH RETURN (PARTIAL 2:3) ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t8\") PARTIAL (2:3 2:3)", "{r:?}");
    let r = c.cmd("SEARCH RETURN (PARTIAL 5:9) ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"t9\") PARTIAL (5:9 NIL)", "{r:?}");
    let r = c.cmd("UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)").await;
    assert_eq!(
        r[..2],
        [
            "* 3 FETCH (UID 3 FLAGS (\\Recent))",
            "* 4 FETCH (UID 4 FLAGS (\\Recent))"
        ],
        "{r:?}"
    );
    assert_eq!(r.len(), 3, "{r:?}");
    let r = c.cmd("SEARCH RETURN (ALL PARTIAL 1:2) ALL").await;
    assert!(last(&r).contains(" BAD "), "{r:?}");
}

/// Issue 18 point 9: MULTIAPPEND (RFC 3502) files every message or none.
#[tokio::test]
async fn multiappend_is_all_or_nothing() {
    let h = harness("multiappend").await;
    let mut c = h.alice().await;
    let r = c.cmd("CAPABILITY").await;
    assert!(r[0].split(' ').any(|w| w == "MULTIAPPEND"), "{r:?}");
    let r = c
        .cmd("APPEND INBOX (\\Seen) {5+}\r\nfirst \"01-Jul-2025 10:00:00 +0200\" {6+}\r\nsecond ($Work) {5+}\r\nthird")
        .await;
    let uidvalidity = {
        let l = last(&r);
        assert!(l.contains("OK [APPENDUID "), "{r:?}");
        l.split(' ').nth(3).unwrap().to_string()
    };
    assert!(
        last(&r).contains(&format!("[APPENDUID {uidvalidity} 1:3]")),
        "{r:?}"
    );
    c.cmd("SELECT INBOX").await;
    let r = c.cmd("FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE)").await;
    assert!(
        r[0].contains("FLAGS (\\Seen \\Recent)") && r[0].contains("RFC822.SIZE 5"),
        "{r:?}"
    );
    assert!(r[1].contains("01-Jul-2025 10:00:00 +0200"), "{r:?}");
    assert!(r[2].contains("$Work"), "{r:?}");
    // One bad message refuses them all.
    let r = c
        .cmd("APPEND INBOX {5+}\r\nfirst (\\Recent) {6+}\r\nsecond")
        .await;
    assert!(last(&r).contains(" BAD "), "{r:?}");
    let r = c.cmd("STATUS INBOX (MESSAGES)").await;
    assert!(r[0].ends_with("(MESSAGES 3)"), "{r:?}");
    // And a failure half-way through the store undoes what went in: the
    // 60th message's entry is too large to store, after the first batch of
    // 49 went in.
    let store = h.store();
    let alice = Address::parse(ALICE).unwrap();
    let mut messages = Vec::new();
    for i in 0..60 {
        let queue_id = QueueId::generate();
        let key = BlobKey::parse(&format!("test/{queue_id}")).unwrap();
        h.blobs.put(&key, MESSAGE.to_vec().into()).await.unwrap();
        messages.push(NewMessage {
            queue_id,
            body: key,
            body_size: MESSAGE.len() as u64,
            prefix: if i == 59 {
                "X: y\r\n".repeat(100_000)
            } else {
                String::new()
            },
            meta: analyze(MESSAGE),
            flags: Vec::new(),
            internal_date: 1_700_000_000,
            internal_tz: 0,
        });
    }
    let e = store
        .append_all(&alice, &MailboxName::inbox(), messages)
        .await;
    assert!(e.is_err(), "{e:?}");
    let r = c.cmd("NOOP").await;
    let r2 = c.cmd("STATUS INBOX (MESSAGES UIDNEXT)").await;
    assert!(r2[0].contains("MESSAGES 3 "), "{r:?} {r2:?}");
}

/// Issue 18 point 9: METADATA and METADATA-SERVER (RFC 5464), with its
/// limits, its bad input, and one user's entries out of another's reach.
#[tokio::test]
async fn metadata_of_mailboxes_and_the_server() {
    let h = harness("metadata").await.with_max_command(64 * 1024);
    let mut c = h.alice().await;
    let r = c.cmd("CAPABILITY").await;
    assert!(r[0].split(' ').any(|w| w == "METADATA"), "{r:?}");
    let r = c
        .cmd("SETMETADATA INBOX (/private/comment \"my inbox\" /shared/vendor/x/a \"1\" /shared/vendor/x/a/b \"2\")")
        .await;
    assert!(last(&r).contains("OK"), "{r:?}");
    let r = c.cmd("GETMETADATA INBOX /private/comment").await;
    assert_eq!(r[0], "* METADATA \"INBOX\" (/private/comment \"my inbox\")");
    let r = c
        .cmd("GETMETADATA (DEPTH 1) INBOX (/shared/vendor/x)")
        .await;
    assert_eq!(
        r[0], "* METADATA \"INBOX\" (/shared/vendor/x/a \"1\")",
        "{r:?}"
    );
    let r = c
        .cmd("GETMETADATA (DEPTH infinity) INBOX /shared/vendor/x")
        .await;
    assert_eq!(
        r[0],
        "* METADATA \"INBOX\" (/shared/vendor/x/a \"1\" /shared/vendor/x/a/b \"2\")"
    );
    let r = c
        .cmd("GETMETADATA (MAXSIZE 3) INBOX (/private/comment /shared/vendor/x/a)")
        .await;
    assert_eq!(
        r[0], "* METADATA \"INBOX\" (/shared/vendor/x/a \"1\")",
        "{r:?}"
    );
    assert!(last(&r).contains("OK [METADATA LONGENTRIES 8]"), "{r:?}");
    // NIL removes; an entry that is not there reads NIL.
    c.cmd("SETMETADATA INBOX (/private/comment NIL)").await;
    let r = c.cmd("GETMETADATA INBOX /private/comment").await;
    assert_eq!(r[0], "* METADATA \"INBOX\" (/private/comment NIL)");
    // The server's entries, and a binary value.
    let r = c
        .cmd("SETMETADATA \"\" (/private/vendor/test ~{3+}\r\na\0b)")
        .await;
    assert!(last(&r).contains("OK"), "{r:?}");
    let r = c.cmd("GETMETADATA \"\" /private/vendor/test").await;
    assert_eq!(r[0], "* METADATA \"\" (/private/vendor/test ~{3}");
    assert_eq!(r[1], "a\0b)");
    // Special use shows, and is not set here.
    let r = c.cmd("GETMETADATA Sent /private/specialuse").await;
    assert_eq!(
        r[0],
        "* METADATA \"Sent\" (/private/specialuse \"\\\\Sent\")"
    );
    let r = c
        .cmd("SETMETADATA Sent (/private/specialuse \"\\\\Junk\")")
        .await;
    assert!(last(&r).contains("NO [CANNOT]"), "{r:?}");
    // Limits and bad input.
    let big = "x".repeat(16 * 1024 + 1);
    let r = c
        .cmd(&format!(
            "SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})",
            big.len()
        ))
        .await;
    assert!(last(&r).contains("NO [METADATA MAXSIZE 16384]"), "{r:?}");
    for start in [0, 40, 80] {
        let many: Vec<String> = (start..start + 40)
            .map(|i| format!("/private/n{i} \"v\""))
            .collect();
        let r = c
            .cmd(&format!("SETMETADATA INBOX ({})", many.join(" ")))
            .await;
        if start < 80 {
            assert!(last(&r).contains("OK"), "{r:?}");
        } else {
            assert!(last(&r).contains("NO [METADATA TOOMANY]"), "{r:?}");
        }
    }
    for bad in [
        "GETMETADATA INBOX /comment",
        "GETMETADATA INBOX /private/a*",
        "GETMETADATA INBOX /private//a",
        "GETMETADATA INBOX /private/a/",
        "GETMETADATA (DEPTH 2) INBOX /private/a",
        "SETMETADATA INBOX (/private/a)",
    ] {
        // A session of its own: a session is closed after a few errors.
        let r = h.alice().await.cmd(bad).await;
        assert!(last(&r).contains(" BAD "), "{bad}: {r:?}");
    }
    let r = c.cmd("GETMETADATA Nowhere /private/comment").await;
    assert!(last(&r).contains("NO [NONEXISTENT]"), "{r:?}");
    // A mailbox's entries follow RENAME and go with DELETE.
    c.cmd("CREATE Box").await;
    c.cmd("SETMETADATA Box (/private/comment \"kept\")").await;
    c.cmd("RENAME Box Moved").await;
    let r = c.cmd("GETMETADATA Moved /private/comment").await;
    assert_eq!(r[0], "* METADATA \"Moved\" (/private/comment \"kept\")");
    c.cmd("DELETE Moved").await;
    c.cmd("CREATE Moved").await;
    let r = c.cmd("GETMETADATA Moved /private/comment").await;
    assert_eq!(r[0], "* METADATA \"Moved\" (/private/comment NIL)");
    // Bob sees his own INBOX and server entries, none of Alice's.
    let mut b = h.connect(loopback()).await;
    b.cmd("LOGIN bob@example.test bob-secret").await;
    let r = b.cmd("GETMETADATA INBOX /shared/vendor/x/a").await;
    assert_eq!(r[0], "* METADATA \"INBOX\" (/shared/vendor/x/a NIL)");
    let r = b.cmd("GETMETADATA \"\" /private/vendor/test").await;
    assert_eq!(r[0], "* METADATA \"\" (/private/vendor/test NIL)");
}

/// Issue 18 point 9: CATENATE (RFC 4469) joins texts and parts of the
/// user's own messages named by IMAP URLs; a URL to anything else (another
/// user's mail, a wrong UIDVALIDITY, a missing message, garbage) is
/// `NO [BADURL]` and nothing is stored.
#[tokio::test]
async fn catenate_joins_texts_and_own_urls() {
    let h = harness("catenate").await;
    h.append(ALICE, MESSAGE).await;
    h.append(
        "bob@example.test",
        b"Subject: bob's secret\r\n\r\nsecret\r\n",
    )
    .await;
    let mut c = h.alice().await;
    let r = c.cmd("CAPABILITY").await;
    assert!(r[0].split(' ').any(|w| w == "CATENATE"), "{r:?}");
    let r = c.cmd("STATUS INBOX (UIDVALIDITY)").await;
    let validity: String = r[0].chars().filter(char::is_ascii_digit).collect();
    let header = "Subject: forwarded\r\n\r\n";
    let r = c
        .cmd(&format!(
            "APPEND Drafts CATENATE (TEXT {{{}+}}\r\n{header} URL \"/INBOX;UIDVALIDITY={validity}/;UID=1/;SECTION=TEXT\" TEXT {{5+}}\r\n--end URL \"imap://alice%40example.test@elsewhere.example/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)/;PARTIAL=0.9\")",
            header.len()
        ))
        .await;
    assert!(last(&r).contains("OK [APPENDUID "), "{r:?}");
    c.cmd("SELECT Drafts").await;
    let r = c.cmd("FETCH 1 (BODY.PEEK[])").await;
    let body = r[1..r.len() - 1].join("\r\n");
    assert_eq!(
        body,
        "Subject: forwarded\r\n\r\nline one\r\nline two\r\n--endSubject: )"
    );
    // Relative to the selected mailbox, and inside a MULTIAPPEND.
    c.cmd("SELECT INBOX").await;
    let r = c
        .cmd("APPEND Drafts {5+}\r\nplain CATENATE (URL \";UID=1\")")
        .await;
    assert!(last(&r).contains("OK [APPENDUID "), "{r:?}");
    for url in [
        "imap://bob%40example.test@host/INBOX/;UID=1",
        &format!(
            "/INBOX;UIDVALIDITY={}/;UID=1",
            validity.parse::<u64>().unwrap() + 1
        ),
        "/INBOX/;UID=99",
        "/Nowhere/;UID=1",
        "/INBOX/;UID=1/;SECTION=9",
        "not a url",
        "imap://alice%40example.test@host/INBOX/;UID=1;URLAUTH=anonymous:internal:00",
    ] {
        let r = c
            .cmd(&format!(
                "APPEND Drafts CATENATE (TEXT {{2+}}\r\nhi URL \"{url}\")"
            ))
            .await;
        assert!(last(&r).contains("NO [BADURL "), "{url}: {r:?}");
    }
    let r = c.cmd("STATUS Drafts (MESSAGES)").await;
    assert!(r[0].ends_with("(MESSAGES 3)"), "{r:?}");
    // A URL sent as a literal cannot put lines of its own in the reply.
    let r = c
        .cmd("APPEND Drafts CATENATE (URL {16+}\r\nx\r\n* BYE forged])")
        .await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].contains("NO [BADURL x*BYEforged]"), "{r:?}");
}

/// Issue 18 point 9: URLAUTH (RFC 4467) with URLFETCH's BINARY and
/// BODYPARTSTRUCTURE (RFC 5524). Alice authorizes a URL for Bob; Bob
/// fetches it; nobody else, no forged or expired token, and nothing after
/// RESETKEY. Alice cannot authorize Bob's mail.
#[tokio::test]
async fn urlauth_lets_one_user_share_a_part() {
    let h = harness("urlauth").await;
    h.append(ALICE, b"Subject: shared\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8AYm9i\r\n")
        .await;
    let mut a = h.alice().await;
    let r = a.cmd("CAPABILITY").await;
    for cap in ["URLAUTH", "URLAUTH=BINARY"] {
        assert!(r[0].split(' ').any(|w| w == cap), "{cap}: {r:?}");
    }
    let r = a.cmd("STATUS INBOX (UIDVALIDITY)").await;
    let validity: String = r[0].chars().filter(char::is_ascii_digit).collect();
    let base = format!("imap://alice%40example.test@{HOST}/INBOX;UIDVALIDITY={validity}/;UID=1");
    let generate = |access: &str| format!("GENURLAUTH \"{base};URLAUTH={access}\" INTERNAL");
    let authorize = |r: Vec<String>| -> String {
        assert!(last(&r).contains("OK"), "{r:?}");
        r[0].strip_prefix("* GENURLAUTH \"")
            .and_then(|u| u.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{r:?}"))
            .to_string()
    };
    let for_bob = authorize(a.cmd(&generate("user+bob%40example.test")).await);
    assert!(
        for_bob.contains(";URLAUTH=user+bob%40example.test:internal:"),
        "{for_bob}"
    );
    let for_alice = authorize(a.cmd(&generate("user+alice%40example.test")).await);
    let expired = authorize(
        a.cmd(&format!(
            "GENURLAUTH \"{base};EXPIRE=2001-01-01T00:00:00Z;URLAUTH=authuser\" INTERNAL"
        ))
        .await,
    );
    let mut b = h.connect(loopback()).await;
    b.cmd("LOGIN bob@example.test bob-secret").await;
    let r = b.cmd(&format!("URLFETCH \"{for_bob}\"")).await;
    assert!(r[0].ends_with("{132}"), "the whole message: {r:?}");
    assert!(r.iter().any(|l| l == "aGVsbG8AYm9i"), "{r:?}");
    // The part, decoded: RFC 5524's BINARY.
    let part = authorize(
        a.cmd(&format!(
            "GENURLAUTH \"{base}/;SECTION=1;URLAUTH=user+bob%40example.test\" INTERNAL"
        ))
        .await,
    );
    let r = b
        .cmd(&format!("URLFETCH (\"{part}\" BINARY BODYPARTSTRUCTURE)"))
        .await;
    assert!(r[0].contains("(BINARY ~{9}"), "{r:?}");
    assert!(
        r[1].starts_with("hello\0bob BODYPARTSTRUCTURE (\"TEXT\" \"PLAIN\""),
        "{r:?}"
    );
    // Not for Bob, forged, expired: NIL, and no error to probe with.
    let mut forged = for_bob.clone();
    let last_char = forged.pop().unwrap();
    forged.push(if last_char == '0' { '1' } else { '0' });
    for url in [&for_alice, &forged, &expired, &base] {
        let r = b.cmd(&format!("URLFETCH \"{url}\"")).await;
        assert!(r[0].ends_with(" NIL"), "{url}: {r:?}");
        assert!(last(&r).contains("OK"), "{r:?}");
    }
    // Bob can CATENATE what Alice authorized for him.
    let r = b
        .cmd(&format!("APPEND INBOX CATENATE (URL \"{for_bob}\")"))
        .await;
    assert!(last(&r).contains("OK [APPENDUID"), "{r:?}");
    // Alice cannot authorize Bob's mail, nor use another mechanism.
    let r = a
        .cmd(&format!(
            "GENURLAUTH \"imap://bob%40example.test@{HOST}/INBOX/;UID=1;URLAUTH=anonymous\" INTERNAL"
        ))
        .await;
    assert!(last(&r).contains("NO [BADURL"), "{r:?}");
    let r = a
        .cmd(&format!("GENURLAUTH \"{base};URLAUTH=anonymous\" XSAMPLE"))
        .await;
    assert!(last(&r).contains("NO "), "{r:?}");
    // RESETKEY revokes.
    let r = a.cmd("RESETKEY INBOX").await;
    assert!(last(&r).contains("OK [URLMECH INTERNAL]"), "{r:?}");
    let r = b.cmd(&format!("URLFETCH \"{for_bob}\"")).await;
    assert!(r[0].ends_with(" NIL"), "{r:?}");
    let renewed = authorize(a.cmd(&generate("user+bob%40example.test")).await);
    assert_ne!(renewed, for_bob);
    a.cmd("RESETKEY").await;
    let r = b.cmd(&format!("URLFETCH \"{renewed}\"")).await;
    assert!(r[0].ends_with(" NIL"), "{r:?}");
}

/// Issue 18 point 9: NOTIFY (RFC 5465). Between commands, unasked: new
/// mail in the selected mailbox with MessageNew's fetch attributes,
/// STATUS for other mailboxes, LIST for created, renamed and deleted
/// mailboxes and for subscription changes; nothing after NOTIFY NONE; bad
/// and unsupported requests refused.
#[tokio::test]
async fn notify_reports_changes_unasked() {
    let h = harness("notify").await;
    let mut a = h.alice().await;
    let r = a.cmd("CAPABILITY").await;
    assert!(r[0].split(' ').any(|w| w == "NOTIFY"), "{r:?}");
    a.cmd("SELECT INBOX").await;
    let r = a
        .cmd("NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))")
        .await;
    assert!(last(&r).contains("OK"), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* STATUS \"Archive\" (MESSAGES 0 UIDNEXT 1 ")),
        "{r:?}"
    );
    assert!(
        !r.iter().any(|l| l.starts_with("* STATUS \"INBOX\"")),
        "selected: {r:?}"
    );
    let soon = Duration::from_secs(10);
    let next = async |a: &mut Client| {
        tokio::time::timeout(soon, a.line())
            .await
            .expect("a notification")
    };
    // New mail in the selected mailbox, fetched as asked.
    h.append(ALICE, MESSAGE).await;
    assert_eq!(next(&mut a).await, "* 1 EXISTS");
    assert_eq!(next(&mut a).await, "* 1 RECENT");
    assert_eq!(next(&mut a).await, "* 1 FETCH (UID 1 FLAGS (\\Recent))");
    // Another session's changes elsewhere.
    let mut b = h.alice().await;
    b.cmd("APPEND Archive {5+}\r\nhello").await;
    let l = next(&mut a).await;
    assert!(
        l.starts_with("* STATUS \"Archive\" (MESSAGES 1 UIDNEXT 2 "),
        "{l}"
    );
    b.cmd("CREATE New").await;
    assert_eq!(next(&mut a).await, "* LIST () \"/\" \"New\"");
    b.cmd("RENAME New Newer").await;
    assert_eq!(
        next(&mut a).await,
        "* LIST () \"/\" \"Newer\" (\"OLDNAME\" (\"New\"))"
    );
    b.cmd("DELETE Newer").await;
    assert_eq!(next(&mut a).await, "* LIST (\\NonExistent) \"/\" \"Newer\"");
    b.cmd("UNSUBSCRIBE Archive").await;
    assert_eq!(next(&mut a).await, "* LIST () \"/\" \"Archive\"");
    b.cmd("SUBSCRIBE Archive").await;
    assert_eq!(
        next(&mut a).await,
        "* LIST (\\Subscribed) \"/\" \"Archive\""
    );
    // NOTIFY NONE: commands still work, nothing comes unasked.
    let r = a.cmd("NOTIFY NONE").await;
    assert!(last(&r).contains("OK"), "{r:?}");
    b.cmd("CREATE Quiet").await;
    let r = a.cmd("NOOP").await;
    assert_eq!(r.len(), 1, "{r:?}");
    // Bad and unsupported requests.
    let r = a.cmd("NOTIFY SET (personal (MessageNew))").await;
    assert!(last(&r).contains(" BAD "), "{r:?}");
    let r = a
        .cmd("NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))")
        .await;
    assert!(last(&r).contains("NO [BADEVENT"), "{r:?}");
    let many: Vec<String> = (0..1001).map(|i| format!("m{i}")).collect();
    let r = h
        .alice()
        .await
        .cmd(&format!(
            "NOTIFY SET (mailboxes ({}) (MessageNew MessageExpunge))",
            many.join(" ")
        ))
        .await;
    assert!(last(&r).contains(" BAD "), "{r:?}");
}

/// Issue 18 point 9: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4). A
/// search with RETURN (UPDATE) tells of messages that leave or join its
/// result, whoever changed them; expunged ones leave silently; a SORT
/// gives positions; CANCELUPDATE stops it; searches of text are answered
/// once, with NOUPDATE.
#[tokio::test]
async fn live_searches_follow_the_mailbox() {
    let h = harness("context").await.with_poll_interval(Duration::ZERO);
    for _ in 0..3 {
        h.append(ALICE, MESSAGE).await;
    }
    let (mut a, mut b) = h.alice_twice_in_inbox().await;
    let esearch = |r: &[String], tag: &str| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with(&format!("* ESEARCH (TAG \"{tag}\")")))
            .cloned()
            .collect()
    };
    let r = a.cmd("UID SEARCH RETURN (UPDATE) UNSEEN").await;
    let tag = last(&r).split(' ').next().unwrap().to_string();
    assert_eq!(
        esearch(&r, &tag),
        [format!("* ESEARCH (TAG \"{tag}\") UID ALL 1:3")]
    );
    // Another session reads one: it leaves.
    b.cmd("STORE 2 +FLAGS (\\Seen)").await;
    let r = a.cmd("NOOP").await;
    assert_eq!(
        esearch(&r, &tag),
        [format!("* ESEARCH (TAG \"{tag}\") UID REMOVEFROM (0 2)")],
        "{r:?}"
    );
    // New mail joins.
    h.append(ALICE, MESSAGE).await;
    let r = a.cmd("NOOP").await;
    assert_eq!(
        esearch(&r, &tag),
        [format!("* ESEARCH (TAG \"{tag}\") UID ADDTO (0 4)")],
        "{r:?}"
    );
    // This session's own STORE counts too, and an expunge says nothing.
    let r = a.cmd("STORE 1 +FLAGS.SILENT (\\Seen)").await;
    assert_eq!(
        esearch(&r, &tag),
        [format!("* ESEARCH (TAG \"{tag}\") UID REMOVEFROM (0 1)")],
        "{r:?}"
    );
    b.cmd("UID STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("EXPUNGE").await;
    let r = a.cmd("NOOP").await;
    assert!(r.iter().any(|l| l.ends_with(" EXPUNGE")), "{r:?}");
    assert!(esearch(&r, &tag).is_empty(), "{r:?}");
    // A live SORT: positions in its order.
    let r = a.cmd("SORT RETURN (UPDATE) (ARRIVAL) UTF-8 UNSEEN").await;
    let sort_tag = last(&r).split(' ').next().unwrap().to_string();
    assert_eq!(
        esearch(&r, &sort_tag),
        [format!("* ESEARCH (TAG \"{sort_tag}\") ALL 3")]
    );
    h.append(ALICE, MESSAGE).await;
    let r = a.cmd("NOOP").await;
    assert!(
        r.contains(&format!("* ESEARCH (TAG \"{sort_tag}\") ADDTO (2 4)")),
        "{r:?}"
    );
    // CANCELUPDATE stops both; an unknown tag is BAD.
    let r = a
        .cmd(&format!("CANCELUPDATE \"{tag}\" \"{sort_tag}\""))
        .await;
    assert!(last(&r).contains("OK"), "{r:?}");
    h.append(ALICE, MESSAGE).await;
    let r = a.cmd("NOOP").await;
    assert!(!r.iter().any(|l| l.starts_with("* ESEARCH")), "{r:?}");
    let r = a.cmd("CANCELUPDATE \"nope\"").await;
    assert!(last(&r).contains(" BAD "), "{r:?}");
    // A new selection ends live searches, even of the same mailbox.
    let r = a.cmd("UID SEARCH RETURN (UPDATE) ALL").await;
    let old_tag = last(&r).split(' ').next().unwrap().to_string();
    a.cmd("SELECT INBOX").await;
    h.append(ALICE, MESSAGE).await;
    let r = a.cmd("NOOP").await;
    assert!(esearch(&r, &old_tag).is_empty(), "{r:?}");
    // A search of text is answered once.
    let r = a.cmd("SEARCH RETURN (UPDATE) BODY line").await;
    assert!(r.iter().any(|l| l.starts_with("* NO [NOUPDATE ")), "{r:?}");
    let r = a.cmd("CAPABILITY").await;
    for cap in ["CONTEXT=SEARCH", "CONTEXT=SORT"] {
        assert!(r[0].split(' ').any(|w| w == cap), "{cap}: {r:?}");
    }
}

#[tokio::test]
async fn app_passwords_log_in_and_revoked_credentials_end_sessions() {
    use stratus_core::credentials::{self, AppPassword};
    let h = harness("revoke").await;
    let accounts = h.ctx.shared.stores.accounts();
    let alice = Address::parse(ALICE).unwrap();
    let (id, shown) = credentials::new_app_password();
    let plain = credentials::normalise_app_password(&shown).unwrap();
    let app = AppPassword {
        id,
        name: "Phone".into(),
        hash: stratus_core::password::hash(&plain).unwrap(),
        created: 0,
    };
    accounts.add_app_password(&alice, app).await.unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(crate::sessions::follow(
        h.ctx.shared.sessions.clone(),
        h.ctx.shared.stores.index.clone(),
        shutdown,
        Duration::from_millis(20),
    ));

    // As typed on a phone: spaces, capitals.
    let mut phone = h.connect(loopback()).await;
    let typed = shown.replace('-', " ").to_uppercase();
    let r = phone.cmd(&format!("LOGIN {ALICE} \"{typed}\"")).await;
    assert!(last(&r).contains("OK [CAPABILITY"), "{r:?}");
    let mut desk = h.alice().await;
    assert_eq!(h.ctx.shared.sessions.count(&alice), 2);

    // The app password is deleted: the phone's session ends, the desk's
    // goes on, and the app password logs in no more.
    accounts.del_app_password(&alice, "Phone").await.unwrap();
    assert_eq!(
        phone.line().await,
        "* BYE [EXPIRED] your credentials changed; sign in again"
    );
    assert!(last(&desk.cmd("NOOP").await).contains("OK"));
    let mut again = h.connect(loopback()).await;
    let r = again.cmd(&format!("LOGIN {ALICE} {shown}")).await;
    assert!(last(&r).contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");

    // A new password ends the sessions begun before it, even in IDLE.
    desk.cmd("SELECT INBOX").await;
    desk.send(b"i IDLE\r\n").await;
    assert_eq!(desk.line().await, "+ idling");
    let hash = stratus_core::password::hash("alice-new-secret").unwrap();
    accounts.set_password(&alice, hash).await.unwrap();
    assert_eq!(
        desk.line().await,
        "* BYE [EXPIRED] your credentials changed; sign in again"
    );
    let mut fresh = h.connect(loopback()).await;
    let r = fresh.cmd(&format!("LOGIN {ALICE} alice-new-secret")).await;
    assert!(last(&r).contains("OK [CAPABILITY"), "{r:?}");

    // Disabled: the session ends, and the right password is refused.
    accounts.set_disabled(&alice, true).await.unwrap();
    assert_eq!(
        fresh.line().await,
        "* BYE [EXPIRED] your credentials changed; sign in again"
    );
    let mut refused = h.connect(loopback()).await;
    let r = refused
        .cmd(&format!("LOGIN {ALICE} alice-new-secret"))
        .await;
    assert!(last(&r).contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    // Bob was never touched.
    let mut bob = h.connect(loopback()).await;
    let r = bob.cmd("LOGIN bob@example.test bob-secret").await;
    assert!(last(&r).contains("OK [CAPABILITY"), "{r:?}");
}
