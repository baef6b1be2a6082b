//! POP3 session tests: real local stores in a temporary directory, users
//! with real password hashes, messages filed through `Mailstore::append`,
//! the session driven over `tokio::io::duplex`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use stratus_core::address::Address;
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::{Appended, Mailstore, NewMessage};
use stratus_core::message::analyze;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, duplex};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::Context;
use super::serve;
use crate::shared::Shared;
use crate::testutil::{self, TempDir};
use crate::throttle::{LoginThrottle, ThrottlePolicy};
use stratus_runtime::config::Pop3Settings;

const HOST: &str = "pop.test.example";
const ALICE: &str = "alice@example.test";
const PREFIX: &str = "Return-Path: <sender@remote.example>\r\n";

struct Harness {
    dir: TempDir,
    ctx: Arc<Context>,
    _stop: watch::Sender<bool>,
}

async fn harness(name: &str) -> Harness {
    harness_with(name, Pop3Settings::default()).await
}

async fn harness_with(name: &str, pop3: Pop3Settings) -> Harness {
    let dir = TempDir::new(name);
    let users = ["alice", "bob"].map(|user| {
        let hash = stratus_core::password::hash(&format!("{user}-secret")).unwrap();
        (user, hash, None)
    });
    let (shared, stop) = testutil::context(&dir, HOST, users.to_vec()).await;
    let throttle = LoginThrottle::new(ThrottlePolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..ThrottlePolicy::default()
    });
    Harness {
        ctx: Arc::new(Context {
            shared: Shared {
                throttle: Arc::new(throttle),
                sessions: Arc::default(),
                ..shared
            },
            settings: pop3,
        }),
        dir,
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
    fn store(&self) -> Mailstore {
        self.ctx.shared.stores.mailstore()
    }

    /// Files `body` into alice's INBOX; returns its UID.
    async fn append(&self, body: &[u8]) -> u32 {
        let queue_id = QueueId::generate();
        let key = BlobKey::parse(&format!("test/{queue_id}")).unwrap();
        self.ctx
            .shared
            .stores
            .blobs
            .put(&key, body.to_vec().into())
            .await
            .unwrap();
        let message = NewMessage {
            queue_id,
            body: key,
            body_size: body.len() as u64,
            prefix: PREFIX.into(),
            meta: analyze(body),
            flags: Vec::new(),
            internal_date: 1_700_000_000,
            internal_tz: 0,
        };
        let alice = Address::parse(ALICE).unwrap();
        match self
            .store()
            .append(&alice, &MailboxName::inbox(), message)
            .await
            .unwrap()
        {
            Appended::New { uid, .. } => uid,
            Appended::Duplicate => panic!("duplicate"),
        }
    }

    async fn inbox(&self) -> (u32, u64, Vec<u32>) {
        let alice = Address::parse(ALICE).unwrap();
        let store = self.store();
        let (mbox, _) = store
            .mailbox(&alice, &MailboxName::inbox())
            .await
            .unwrap()
            .unwrap();
        let uids = store
            .entries(&alice, &MailboxName::inbox(), 1, u32::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.uid)
            .collect();
        (mbox.messages, mbox.size, uids)
    }

    async fn uidvalidity(&self) -> u32 {
        let alice = Address::parse(ALICE).unwrap();
        self.store()
            .mailbox(&alice, &MailboxName::inbox())
            .await
            .unwrap()
            .unwrap()
            .0
            .uidvalidity
    }

    /// A session from `peer`, greeting read.
    async fn connect(&self, peer: SocketAddr) -> Client<DuplexStream> {
        let (client, server) = duplex(1 << 20);
        let ctx = self.ctx.clone();
        let task = tokio::spawn(async move { serve(server, peer, &ctx, false).await });
        let mut c = Client {
            stream: client,
            task,
        };
        assert_eq!(c.line().await, "+OK Stratus POP3 server ready");
        c
    }

    /// Alice logged in from loopback.
    async fn alice(&self) -> Client<DuplexStream> {
        let mut c = self.connect(loopback()).await;
        c.login(ALICE, "alice-secret").await;
        c
    }

    fn connector(&self) -> TlsConnector {
        testutil::tls_connector(&self.dir)
    }
}

struct Client<S> {
    stream: S,
    task: JoinHandle<std::io::Result<()>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> String {
        testutil::read_line(&mut self.stream).await
    }

    async fn cmd(&mut self, text: &str) -> String {
        self.send(&format!("{text}\r\n")).await;
        self.line().await
    }

    /// A multi-line answer: the status line and the raw (still stuffed)
    /// lines up to the terminating `.`.
    async fn multi(&mut self, text: &str) -> (String, Vec<String>) {
        let status = self.cmd(text).await;
        let mut lines = Vec::new();
        if status.starts_with("+OK") {
            loop {
                let l = self.line().await;
                if l == "." {
                    break;
                }
                lines.push(l);
            }
        }
        (status, lines)
    }

    async fn login(&mut self, user: &str, password: &str) {
        assert_eq!(self.cmd(&format!("USER {user}")).await, "+OK send PASS");
        let reply = self.cmd(&format!("PASS {password}")).await;
        assert!(reply.starts_with("+OK maildrop has"), "{reply}");
    }

    /// Reads until the server closes.
    async fn rest(&mut self) -> String {
        testutil::read_rest(&mut self.stream).await
    }

    async fn quit(mut self) -> String {
        let reply = self.cmd("QUIT").await;
        assert_eq!(self.rest().await, "");
        self.task.await.unwrap().unwrap();
        reply
    }

    /// The client goes away without QUIT.
    async fn drop_connection(self) {
        let Client { stream, task } = self;
        drop(stream);
        task.await.unwrap().unwrap();
    }
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const HELLO: &[u8] =
    b"From: a@remote.example\r\nSubject: hello\r\n\r\nline one\r\nline two\r\nline three\r\n";
const DOTS: &[u8] = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n.";

#[tokio::test]
async fn user_pass_login_stat_list_uidl() {
    let h = harness("pop3-basic").await;
    let u1 = h.append(HELLO).await;
    let u2 = h.append(DOTS).await;
    let v = h.uidvalidity().await;
    let s1 = PREFIX.len() + HELLO.len();
    let s2 = PREFIX.len() + DOTS.len();
    let mut c = h.alice().await;
    assert_eq!(c.cmd("STAT").await, format!("+OK 2 {}", s1 + s2));
    assert_eq!(
        c.multi("LIST").await,
        (
            format!("+OK 2 messages ({} octets)", s1 + s2),
            vec![format!("1 {s1}"), format!("2 {s2}")]
        )
    );
    assert_eq!(c.cmd("LIST 2").await, format!("+OK 2 {s2}"));
    assert_eq!(c.cmd("LIST 3").await, "-ERR no such message");
    assert_eq!(
        c.multi("UIDL").await.1,
        vec![format!("1 {v}.{u1}"), format!("2 {v}.{u2}")]
    );
    assert_eq!(c.cmd("UIDL 1").await, format!("+OK 1 {v}.{u1}"));
    assert_eq!(c.cmd("NOOP").await, "+OK");
    assert_eq!(c.cmd("USER again").await, "-ERR already logged in");
    assert!(c.quit().await.starts_with("+OK"));
}

#[tokio::test]
async fn retr_dot_stuffs_and_top_cuts() {
    let h = harness("pop3-retr").await;
    h.append(HELLO).await;
    h.append(DOTS).await;
    let mut c = h.alice().await;
    let (status, lines) = c.multi("RETR 2").await;
    assert_eq!(status, format!("+OK {} octets", PREFIX.len() + DOTS.len()));
    assert_eq!(
        lines,
        [
            "Return-Path: <sender@remote.example>",
            "Subject: dots",
            "",
            "..leading dot",
            "...two dots",
            "..",
            "middle . dot",
            "..",
        ]
    );
    let (_, lines) = c.multi("RETR 1").await;
    let unstuffed = lines.join("\r\n") + "\r\n";
    assert_eq!(
        unstuffed.as_bytes(),
        [PREFIX.as_bytes(), HELLO].concat().as_slice()
    );

    let (status, lines) = c.multi("TOP 1 1").await;
    assert!(status.starts_with("+OK"), "{status}");
    assert_eq!(
        lines,
        [
            "Return-Path: <sender@remote.example>",
            "From: a@remote.example",
            "Subject: hello",
            "",
            "line one",
        ]
    );
    assert_eq!(c.multi("TOP 1 0").await.1.len(), 4);
    assert_eq!(c.multi("TOP 2 99").await.1.len(), 8);
    assert_eq!(c.cmd("RETR 9").await, "-ERR no such message");
    assert_eq!(c.cmd("TOP 1").await, "-ERR usage: TOP msg lines");
    c.quit().await;
}

#[tokio::test]
async fn dele_then_quit_removes_and_counters_drop() {
    let h = harness("pop3-dele").await;
    let u1 = h.append(HELLO).await;
    let u2 = h.append(DOTS).await;
    let u3 = h.append(HELLO).await;
    let mut c = h.alice().await;
    assert_eq!(c.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 3").await, "+OK message 3 deleted");
    assert_eq!(c.cmd("DELE 1").await, "-ERR message is deleted");
    assert_eq!(c.cmd("RETR 1").await, "-ERR message is deleted");
    let s2 = PREFIX.len() + DOTS.len();
    assert_eq!(c.cmd("STAT").await, format!("+OK 1 {s2}"));
    assert_eq!(c.multi("LIST").await.1, vec![format!("2 {s2}")]);
    assert_eq!(c.multi("UIDL").await.1.len(), 1);
    // Nothing is gone before QUIT.
    assert_eq!(h.inbox().await.2, vec![u1, u2, u3]);
    assert_eq!(
        c.quit().await,
        "+OK Stratus POP3 server signing off (1 messages left)"
    );
    assert_eq!(h.inbox().await, (1, s2 as u64, vec![u2]));

    // The UIDL of what is left did not change.
    let v = h.uidvalidity().await;
    let mut c = h.alice().await;
    assert_eq!(c.multi("UIDL").await.1, vec![format!("1 {v}.{u2}")]);
    c.quit().await;
}

#[tokio::test]
async fn a_dropped_connection_deletes_nothing_and_rset_unmarks() {
    let h = harness("pop3-drop").await;
    let u1 = h.append(HELLO).await;
    let u2 = h.append(DOTS).await;
    let mut c = h.alice().await;
    c.cmd("DELE 1").await;
    c.cmd("DELE 2").await;
    c.drop_connection().await;
    assert_eq!(h.inbox().await.2, vec![u1, u2]);

    // The lease was released: alice gets straight back in.
    let mut c = h.alice().await;
    c.cmd("DELE 1").await;
    let total = 2 * PREFIX.len() + HELLO.len() + DOTS.len();
    assert_eq!(
        c.cmd("RSET").await,
        format!("+OK maildrop has 2 messages ({total} octets)")
    );
    assert!(c.quit().await.contains("(2 messages left)"));
    assert_eq!(h.inbox().await.2, vec![u1, u2]);
}

#[tokio::test]
async fn a_second_session_is_in_use_until_the_first_quits() {
    let h = harness("pop3-lock").await;
    h.append(HELLO).await;
    let first = h.alice().await;
    let mut second = h.connect(loopback()).await;
    second.cmd(&format!("USER {ALICE}")).await;
    assert_eq!(
        second.cmd("PASS alice-secret").await,
        "-ERR [IN-USE] maildrop already locked by another session"
    );
    // Still in AUTHORIZATION: bob is not locked out by alice.
    second.login("bob@example.test", "bob-secret").await;
    second.quit().await;

    first.quit().await;
    let c = h.alice().await;
    c.quit().await;
}

#[tokio::test]
async fn mail_arriving_after_login_is_not_listed() {
    let h = harness("pop3-fixed").await;
    h.append(HELLO).await;
    let mut c = h.alice().await;
    let late = h.append(DOTS).await;
    assert!(c.cmd("STAT").await.starts_with("+OK 1 "));
    assert_eq!(c.multi("LIST").await.1.len(), 1);
    assert_eq!(c.cmd("RETR 2").await, "-ERR no such message");
    c.cmd("DELE 1").await;
    c.quit().await;
    // Deleting the old one left the late one alone.
    assert_eq!(h.inbox().await.2, vec![late]);
}

#[tokio::test]
async fn auth_plain_with_initial_response_and_continuation() {
    let h = harness("pop3-sasl").await;
    h.append(HELLO).await;
    let mut c = h.connect(loopback()).await;
    let (status, mechs) = c.multi("AUTH").await;
    assert!(status.starts_with("+OK"));
    assert_eq!(mechs, ["PLAIN"]);
    let token = b64(format!("\0{ALICE}\0alice-secret").as_bytes());
    let reply = c.cmd(&format!("AUTH PLAIN {token}")).await;
    assert!(reply.starts_with("+OK maildrop has 1 messages"), "{reply}");
    c.quit().await;

    let mut c = h.connect(loopback()).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert!(c.cmd(&token).await.starts_with("+OK maildrop has 1"));
    c.quit().await;

    let mut c = h.connect(loopback()).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(c.cmd("*").await, "-ERR authentication cancelled");
    let wrong = b64(format!("\0{ALICE}\0nope").as_bytes());
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {wrong}")).await,
        "-ERR [AUTH] invalid credentials"
    );
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "-ERR unsupported SASL mechanism; use PLAIN"
    );
    c.quit().await;
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_are_the_same_refusal() {
    let h = harness("pop3-badlogin").await;
    let mut c = h.connect(loopback()).await;
    for (user, pass) in [
        (ALICE, "wrong"),
        ("nobody@example.test", "x"),
        ("not-an-address", "x"),
    ] {
        c.cmd(&format!("USER {user}")).await;
        assert_eq!(
            c.cmd(&format!("PASS {pass}")).await,
            "-ERR [AUTH] invalid credentials"
        );
    }
    assert_eq!(c.cmd("PASS alone").await, "-ERR send USER first");
    assert_eq!(c.cmd("STAT").await, "-ERR log in first");
    c.login(ALICE, "alice-secret").await;
    c.quit().await;
}

#[tokio::test]
async fn plaintext_is_refused_from_a_remote_peer_until_stls() {
    let h = harness("pop3-stls").await;
    h.append(HELLO).await;
    let mut c = h.connect(remote()).await;
    let (_, caps) = c.multi("CAPA").await;
    assert!(caps.contains(&"STLS".to_string()), "{caps:?}");
    assert!(!caps.contains(&"USER".to_string()), "{caps:?}");
    assert_eq!(
        c.cmd(&format!("USER {ALICE}")).await,
        "-ERR [AUTH] plaintext logins need TLS: use STLS"
    );
    let token = b64(format!("\0{ALICE}\0alice-secret").as_bytes());
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {token}")).await,
        "-ERR [AUTH] plaintext logins need TLS: use STLS"
    );
    // A command pipelined behind STLS is discarded, not run over TLS.
    c.send("STLS\r\nUSER injected@example.test\r\n").await;
    assert_eq!(c.line().await, "+OK Begin TLS negotiation");
    let Client { stream, task } = c;
    let name = ServerName::try_from(HOST).unwrap();
    let stream = h
        .connector()
        .connect(name, stream)
        .await
        .expect("handshake");
    let mut t = Client { stream, task };
    // No greeting after STLS; a fresh AUTHORIZATION state.
    assert_eq!(t.cmd("PASS alice-secret").await, "-ERR send USER first");
    let (_, caps) = t.multi("CAPA").await;
    assert!(!caps.contains(&"STLS".to_string()), "{caps:?}");
    assert!(caps.contains(&"USER".to_string()), "{caps:?}");
    assert!(caps.contains(&"SASL PLAIN".to_string()), "{caps:?}");
    assert_eq!(t.cmd("STLS").await, "-ERR TLS is already active");
    t.login(ALICE, "alice-secret").await;
    assert!(t.cmd("STAT").await.starts_with("+OK 1 "));
    t.quit().await;
}

#[tokio::test]
async fn implicit_tls_and_the_plaintext_switch() {
    let h = harness("pop3s").await;
    let (client, server) = duplex(1 << 20);
    let ctx = h.ctx.clone();
    let task = tokio::spawn(async move { serve(server, remote(), &ctx, true).await });
    let name = ServerName::try_from(HOST).unwrap();
    let stream = h
        .connector()
        .connect(name, client)
        .await
        .expect("handshake");
    let mut t = Client { stream, task };
    assert_eq!(t.line().await, "+OK Stratus POP3 server ready");
    let (_, caps) = t.multi("CAPA").await;
    assert!(!caps.contains(&"STLS".to_string()), "{caps:?}");
    t.login(ALICE, "alice-secret").await;
    t.quit().await;

    let h = harness_with(
        "pop3-plain-ok",
        Pop3Settings {
            allow_plaintext: true,
            ..Pop3Settings::default()
        },
    )
    .await;
    let mut c = h.connect(remote()).await;
    c.login(ALICE, "alice-secret").await;
    c.quit().await;
}

#[tokio::test]
async fn capa_lists_the_extensions() {
    let h = harness("pop3-capa").await;
    let mut c = h.connect(loopback()).await;
    let (status, caps) = c.multi("CAPA").await;
    assert_eq!(status, "+OK Capability list follows");
    assert_eq!(
        caps,
        [
            "TOP",
            "UIDL",
            "USER",
            "SASL PLAIN",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            "IMPLEMENTATION Stratus",
            "STLS",
        ]
    );
    c.login(ALICE, "alice-secret").await;
    let (_, caps) = c.multi("CAPA").await;
    assert!(!caps.contains(&"USER".to_string()) && !caps.contains(&"STLS".to_string()));
    c.quit().await;
}

#[tokio::test]
async fn bad_input_is_answered_and_too_much_closes() {
    let h = harness("pop3-bad").await;
    h.append(HELLO).await;
    let mut c = h.alice().await;
    assert_eq!(c.cmd("XYZZY").await, "-ERR unknown command XYZZY");
    let long = "NOOP ".to_string() + &"x".repeat(2000);
    assert_eq!(c.cmd(&long).await, "-ERR line too long");
    assert_eq!(
        c.cmd("RETR x").await,
        "-ERR message number must be a positive whole number"
    );
    // Pipelined commands are all answered, in order.
    c.send("STAT\r\nNOOP\r\nLIST 1\r\n").await;
    assert!(c.line().await.starts_with("+OK 1 "));
    assert_eq!(c.line().await, "+OK");
    assert!(c.line().await.starts_with("+OK 1 "));
    for _ in 0..6 {
        assert!(c.cmd("BOGUS").await.starts_with("-ERR"));
    }
    c.send("BOGUS\r\n").await;
    assert_eq!(
        c.rest().await,
        "-ERR unknown command BOGUS\r\n-ERR too many errors, closing connection\r\n"
    );
    c.task.await.unwrap().unwrap();
    // The session ended without QUIT: nothing deleted, lease released.
    h.alice().await.quit().await;
}

#[tokio::test]
async fn an_idle_client_is_disconnected() {
    let h = harness_with(
        "pop3-idle",
        Pop3Settings {
            idle_timeout: Duration::from_millis(200),
            ..Pop3Settings::default()
        },
    )
    .await;
    let mut c = h.alice().await;
    assert_eq!(
        c.rest().await,
        "-ERR [SYS/TEMP] idle timeout, closing connection\r\n"
    );
    c.task.await.unwrap().unwrap();
    h.alice().await.quit().await;
}

/// STAT, LIST and UIDL on a 10,000-message maildrop read no body: the
/// maildrop is seeded through the index port, and the blob store counts
/// every read.
#[tokio::test]
async fn ten_thousand_messages_listed_without_reading_a_body() {
    use stratus_core::mailstore::{MessageEntry, entry_key};
    use stratus_core::ports::{BlobStore, Condition, Key, Outcome, Write};

    let mut h = harness("ten-thousand").await;
    let counting = Arc::new(testutil::Counting::new(h.ctx.shared.stores.blobs.clone()));
    let mut stores = h.ctx.shared.stores.clone();
    stores.blobs = counting.clone();
    h.ctx = Arc::new(Context {
        shared: Shared {
            stores,
            ..h.ctx.shared.clone()
        },
        ..(*h.ctx).clone()
    });
    let alice = Address::parse(ALICE).unwrap();
    let index = h.ctx.shared.stores.index.clone();
    let (mut inbox, version) = h
        .store()
        .mailbox(&alice, &MailboxName::inbox())
        .await
        .unwrap()
        .unwrap();
    let body = b"Subject: many\r\n\r\n.dotted line\r\n";
    let key = BlobKey::parse("test/shared-body").unwrap();
    counting.put(&key, body.to_vec().into()).await.unwrap();
    const N: u32 = 10_000;
    let writes: Vec<Write> = (1..=N)
        .map(|uid| {
            let entry = MessageEntry {
                uid,
                modseq: u64::from(uid) + 1,
                flags: Vec::new(),
                internal_date: 1_700_000_000,
                internal_tz: 0,
                size: body.len() as u64,
                prefix: String::new(),
                body: key.clone(),
                meta: Some(analyze(body)),
                meta_blob: None,
                queue_id: QueueId::generate(),
            };
            Write::Put {
                key: entry_key(&inbox.id, uid),
                value: serde_json::to_vec(&entry).unwrap(),
                condition: Condition::Absent,
            }
        })
        .collect();
    for chunk in writes.chunks(100) {
        assert_eq!(
            index.transact(chunk.to_vec()).await.unwrap(),
            Outcome::Applied
        );
    }
    inbox.uidnext = N + 1;
    inbox.messages = N;
    inbox.unseen = N;
    inbox.highest_modseq = u64::from(N) + 1;
    inbox.size = u64::from(N) * body.len() as u64;
    let put = Write::Put {
        key: Key::new(format!("mbox#{}", alice.account_key()), "INBOX"),
        value: serde_json::to_vec(&inbox).unwrap(),
        condition: Condition::Version(version),
    };
    assert_eq!(index.transact(vec![put]).await.unwrap(), Outcome::Applied);

    let reads = || counting.reads.lock().unwrap().len();
    let before = reads();
    let mut c = h.alice().await;
    assert_eq!(
        c.cmd("STAT").await,
        format!("+OK {N} {}", u64::from(N) * body.len() as u64)
    );
    let (status, lines) = c.multi("LIST").await;
    assert!(status.starts_with("+OK 10000 messages"), "{status}");
    assert_eq!(lines.len(), N as usize);
    let (_, uidls) = c.multi("UIDL").await;
    assert_eq!(uidls.len(), N as usize);
    assert!(uidls[N as usize - 1].ends_with(&format!(".{N}")));
    assert_eq!(reads(), before, "STAT, LIST and UIDL read no body");
    let (status, lines) = c.multi(&format!("RETR {N}")).await;
    assert!(status.starts_with("+OK"), "{status}");
    assert_eq!(lines.last().unwrap(), "..dotted line", "dot-stuffed");
    assert!(reads() > before, "RETR reads the body");
    c.quit().await;
}
