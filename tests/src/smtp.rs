//! End-to-end mail flow: real clients (raw sockets, Python smtplib, swaks)
//! send to a running `stratus serve`, and the message is looked for where a
//! user would find it.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A minimal SMTP client over a raw socket, for exact control of bytes.
#[derive(Debug)]
pub struct RawSmtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawSmtp {
    pub async fn connect(addr: &str) -> std::io::Result<(RawSmtp, String)> {
        let stream = TcpStream::connect(addr).await?;
        let (r, w) = stream.into_split();
        let mut c = RawSmtp {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = c.reply().await?;
        Ok((c, greeting))
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(60), self.reader.read_line(&mut line))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))??;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed after {all:?}"),
                ));
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Sends a command line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// A whole transaction; returns the final reply to DATA.
    pub async fn transaction(
        &mut self,
        from: &str,
        to: &[&str],
        body: &[u8],
    ) -> std::io::Result<String> {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await?;
        assert!(r.starts_with("250"), "MAIL: {r}");
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
            assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
        }
        let r = self.cmd("DATA").await?;
        assert!(r.starts_with("354"), "DATA: {r}");
        let mut data = Vec::with_capacity(body.len() + 8);
        for line in body.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.send(&data).await?;
        self.reply().await
    }
}

/// The queue id in a `250 ... queued as <id>` reply.
pub fn queue_id(reply: &str) -> Option<String> {
    reply
        .split_whitespace()
        .last()
        .map(|s| {
            s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .filter(|s| s.len() == 26)
}

use std::process::Command;

use stratus_core::MailboxName;
use stratus_core::mailstore::{Mailstore, MessageEntry};
use stratus_core::{Address, BlobStore, Index};

use crate::cli::{Env, stop, wait_for_listeners};

/// The stores of a running server, opened beside it, to look at mailboxes.
#[derive(Debug, Clone)]
pub struct Look {
    pub index: std::sync::Arc<dyn Index>,
    pub blobs: std::sync::Arc<dyn BlobStore>,
}

impl Look {
    /// The stores of the embedded backend in `env`'s data directory.
    pub fn local(env: &Env) -> Look {
        std::fs::create_dir_all(env.data_dir()).unwrap();
        let stores = stratus_store_local::LocalStores::open(&env.data_dir(), 5).unwrap();
        Look {
            index: std::sync::Arc::new(stores.index),
            blobs: std::sync::Arc::new(stores.blobs),
        }
    }

    /// An environment on freshly provisioned emulator resources, the
    /// stores to look at them, and their settings (for a second gateway);
    /// `None` when no emulator is configured.
    pub async fn aws() -> Option<(Env, Look, stratus_store_aws::AwsSettings)> {
        let settings = crate::aws_settings()?;
        stratus_store_aws::provision::ensure(&settings, 5)
            .await
            .unwrap();
        let stores = stratus_store_aws::AwsStores::connect(&settings)
            .await
            .unwrap();
        let look = Look {
            index: std::sync::Arc::new(stores.index),
            blobs: std::sync::Arc::new(stores.blobs),
        };
        Some((Env::aws(&settings), look, settings))
    }

    pub async fn inbox(&self, user: &str) -> Vec<MessageEntry> {
        self.mailbox(user, "INBOX").await
    }

    pub async fn mailbox(&self, user: &str, name: &str) -> Vec<MessageEntry> {
        self.try_mailbox(user, name).await.unwrap()
    }

    /// The messages of `user`'s mailbox `name`, or why they cannot be
    /// read (no such mailbox).
    pub async fn try_mailbox(
        &self,
        user: &str,
        name: &str,
    ) -> stratus_core::accounts::AccountResult<Vec<MessageEntry>> {
        Mailstore::new(
            self.index.clone(),
            self.blobs.clone(),
            std::sync::Arc::new(stratus_core::ports::InProcessFeed::default()),
        )
        .entries(
            &Address::parse(user).unwrap(),
            &MailboxName::parse(name).unwrap(),
            1,
            u32::MAX,
        )
        .await
    }

    /// Waits (bounded) until `user`'s INBOX holds `n` messages.
    pub async fn wait_inbox(&self, user: &str, n: usize) -> Vec<MessageEntry> {
        crate::eventually(
            Duration::from_secs(30),
            &format!("{n} messages in {user}'s INBOX"),
            || async {
                let got = self.inbox(user).await;
                assert!(got.len() <= n, "more messages than sent: {}", got.len());
                (got.len() == n).then_some(got)
            },
        )
        .await
    }

    /// The whole message as IMAP will serve it: prefix plus body.
    pub async fn full_message(&self, entry: &MessageEntry) -> Vec<u8> {
        let mut out = entry.prefix.as_bytes().to_vec();
        out.extend_from_slice(&self.blobs.get(&entry.body, None).await.unwrap().unwrap());
        out
    }
}

/// Adds example.com with alice and bob through the CLI.
pub fn add_users(env: &Env) {
    env.ok(&["domain", "add", "example.com"], b"");
    env.ok(
        &["user", "add", "alice@example.com", "--password-stdin"],
        b"alice password\n",
    );
    env.ok(
        &[
            "user",
            "add",
            "bob@example.com",
            "--password-stdin",
            "--quota",
            "10K",
        ],
        b"bob password\n",
    );
    env.ok(
        &[
            "alias",
            "add",
            "team@example.com",
            "alice@example.com",
            "bob@example.com",
        ],
        b"",
    );
}

/// Runs a Python script; fails the test if it fails. Its output.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python failed:\n{text}");
    text
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
host, port = sys.argv[1].rsplit(":", 1)
big = int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=120) as s:
    s.ehlo("client.example")
    assert s.has_extn("starttls") and s.has_extn("smtputf8") and s.has_extn("chunking"), s.esmtp_features
    s.starttls(context=ctx)
    s.ehlo("client.example")
    m = EmailMessage()
    m["From"] = "Jörg <jörg@bücher.example>"
    m["To"] = "alice@example.com"
    m["Subject"] = "Grüße über SMTPUTF8"
    m["Message-ID"] = "<utf8@bücher.example>"
    m.set_content("8-bit body: äöü ✓\n.leading dot\n")
    print(s.send_message(m, mail_options=["SMTPUTF8"]) or "ok")
    if big:
        b = EmailMessage()
        b["From"] = "sender@remote.example"
        b["To"] = "alice@example.com"
        b["Subject"] = "big"
        b.set_content("x" * 70 + "\n")
        b.add_attachment(b"\x00\x01" * (big // 2), maintype="application", subtype="octet-stream", filename="big.bin")
        print(s.send_message(b) or "ok")
    try:
        s.sendmail("sender@remote.example", ["nobody@example.com"], "Subject: x\r\n\r\nx\r\n")
        print("accepted an unknown user")
    except smtplib.SMTPRecipientsRefused as e:
        print("refused", e.recipients)
"#;

/// Real clients send to `serve`; the messages land where they belong.
pub async fn clients_deliver_to_mailboxes(env: &Env, look: Look) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let smtp = listeners["smtp"].as_str().unwrap().to_string();

    // Python smtplib: STARTTLS, SMTPUTF8 + 8-bit, a 30 MiB message, a refusal.
    let out = python(SMTPLIB, &[&smtp, &(30 << 20).to_string()]);
    assert!(
        out.contains("refused {'nobody@example.com': (550, b'5.1.1"),
        "{out}"
    );
    let inbox = look.wait_inbox("alice@example.com", 2).await;
    let utf8 = inbox
        .iter()
        .find(|e| {
            e.meta
                .as_ref()
                .is_some_and(|m| m.envelope.subject.as_deref() == Some("Grüße über SMTPUTF8"))
        })
        .expect("the UTF-8 message");
    let full = look.full_message(utf8).await;
    let text = String::from_utf8_lossy(&full);
    assert!(
        text.starts_with(
            "Return-Path: <jörg@xn--bcher-kva.example>\r\nDelivered-To: alice@example.com\r\n"
        ),
        "{text}"
    );
    assert!(text.contains("Authentication-Results: "), "{text}");
    assert!(
        text.contains("Received: from client.example") && text.contains("with UTF8SMTPS"),
        "{text}"
    );
    assert!(
        text.contains("äöü ✓") && text.contains("\n.leading dot"),
        "8-bit body and dot-unstuffing: {text}"
    );
    let big = inbox
        .iter()
        .find(|e| e.size > 30 << 20)
        .expect("the 30 MiB message");
    assert!(big.meta.as_ref().unwrap().structure.parts.len() == 2);

    // swaks: pipelining, to an alias (both users get it; bob's quota is 10K).
    let out = Command::new("swaks")
        .args([
            "--server",
            &smtp,
            "--pipeline",
            "--to",
            "team@example.com",
            "--from",
            "sender@remote.example",
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
            "--ehlo",
            "swaks.example",
        ])
        .output()
        .expect("swaks (apt-get install swaks)");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(
        transcript.contains("250 2.0.0 Ok: queued as"),
        "{transcript}"
    );
    look.wait_inbox("alice@example.com", 3).await;
    let bob = look.wait_inbox("bob@example.com", 1).await;
    let bob_text = String::from_utf8_lossy(&look.full_message(&bob[0]).await).into_owned();
    assert!(
        bob_text.contains("Delivered-To: bob@example.com") && bob_text.contains("hello from swaks"),
        "{bob_text}"
    );

    // Raw BDAT in two chunks, pipelined with the envelope.
    let (mut c, _) = RawSmtp::connect(&smtp).await.unwrap();
    assert!(
        c.cmd("EHLO raw.example")
            .await
            .unwrap()
            .contains("CHUNKING")
    );
    let part1 = b"Subject: chunked\r\n\r\nfirst ";
    let part2 = b"second\r\n";
    let mut wire = format!(
        "MAIL FROM:<sender@remote.example>\r\nRCPT TO:<alice@example.com>\r\nBDAT {}\r\n",
        part1.len()
    )
    .into_bytes();
    wire.extend_from_slice(part1);
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    wire.extend_from_slice(part2);
    c.send(&wire).await.unwrap();
    for want in ["250", "250", "250", "250 2.0.0 Ok: queued as"] {
        let r = c.reply().await.unwrap();
        assert!(r.starts_with(want), "wanted {want}, got {r}");
    }
    let inbox = look.wait_inbox("alice@example.com", 4).await;
    let chunked = inbox
        .iter()
        .find(|e| {
            e.meta
                .as_ref()
                .is_some_and(|m| m.envelope.subject.as_deref() == Some("chunked"))
        })
        .unwrap();
    assert!(
        look.full_message(chunked)
            .await
            .ends_with(b"first second\r\n")
    );

    // Bob's quota (10K) refuses a message that would not fit.
    let big_rcpt = c
        .cmd("MAIL FROM:<sender@remote.example> SIZE=20000")
        .await
        .unwrap();
    assert!(big_rcpt.starts_with("250"), "{big_rcpt}");
    let r = c.cmd("RCPT TO:<bob@example.com>").await.unwrap();
    assert!(r.starts_with("452 4.2.2"), "{r}");
    c.cmd("QUIT").await.unwrap();

    stop(child);
}

/// `kill -9` in the middle of a load: every message that got 250 is
/// delivered exactly once after a restart.
pub async fn crash_loses_no_acknowledged_message(
    env: &Env,
    look: Look,
    senders: usize,
    per_sender: usize,
) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let smtp = listeners["smtp"].as_str().unwrap().to_string();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let (smtp, acked) = (smtp.clone(), acked.clone());
            tokio::spawn(async move {
                let Ok((mut c, _)) = RawSmtp::connect(&smtp).await else {
                    return;
                };
                if c.cmd("EHLO load.example").await.is_err() {
                    return;
                }
                for n in 0..per_sender {
                    let body = format!("Subject: load {s}-{n}\r\n\r\nmessage {s}-{n}\r\n");
                    match c
                        .transaction(
                            "sender@remote.example",
                            &["alice@example.com"],
                            body.as_bytes(),
                        )
                        .await
                    {
                        Ok(reply) if reply.starts_with("250") => acked
                            .lock()
                            .unwrap()
                            .push(queue_id(&reply).expect("queue id in 250")),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let half = senders * per_sender / 2;
    crate::eventually(
        Duration::from_secs(120),
        "half the messages acknowledged",
        || {
            let n = acked.lock().unwrap().len();
            async move { (n >= half).then_some(()) }
        },
    )
    .await;
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= half);

    let _ = std::fs::remove_file(env.data_dir().join("listeners.json"));
    let mut child = env.serve(&[]);
    wait_for_listeners(&env.data_dir(), &mut child).await;
    let delivered = crate::eventually(
        Duration::from_secs(120),
        "every acknowledged message delivered",
        || async {
            let ids: Vec<String> = look
                .inbox("alice@example.com")
                .await
                .iter()
                .map(|e| e.queue_id.to_string())
                .collect();
            acked.iter().all(|a| ids.contains(a)).then_some(ids)
        },
    )
    .await;
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "a message was delivered twice"
    );
    stop(child);
    eprintln!(
        "crash test: {} acknowledged before kill -9, {} delivered after restart, none twice",
        acked.len(),
        delivered.len()
    );
}

/// Publishes SPF (127.0.0.1), a DKIM key (selector `sel`) and DMARC
/// `p=reject` for signed.example; the key, to sign its mail with.
pub(crate) fn publish_signed_example(env: &Env) -> stratus_auth::fixture::DkimTestKey {
    let key = stratus_auth::fixture::DkimTestKey::generate_ed25519();
    env.dns
        .add_txt("signed.example", "v=spf1 ip4:127.0.0.1 -all");
    env.dns.add_dkim_key("signed.example", "sel", &key);
    env.dns
        .add_txt("_dmarc.signed.example", "v=DMARC1; p=reject");
    key
}

/// SPF, DKIM and DMARC answered by the DNS fixture: a signed message passes,
/// a p=reject failure is refused before 250, a p=quarantine failure lands in
/// Junk, and the results are recorded in Authentication-Results.
pub async fn authentication_before_the_final_reply(env: &Env, look: Look) {
    use stratus_auth::fixture::sign_dkim;

    add_users(env);
    let key = publish_signed_example(env);
    env.dns.add_txt("reject.example", "v=spf1 -all");
    env.dns
        .add_txt("_dmarc.reject.example", "v=DMARC1; p=reject");
    env.dns.add_txt("quarantine.example", "v=spf1 -all");
    env.dns
        .add_txt("_dmarc.quarantine.example", "v=DMARC1; p=quarantine");

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let (mut c, _) = RawSmtp::connect(listeners["smtp"].as_str().unwrap())
        .await
        .unwrap();
    c.cmd("EHLO client.example").await.unwrap();

    let signed = sign_dkim(
        b"From: ann@signed.example\r\nTo: alice@example.com\r\nSubject: signed\r\n\r\nAuthentic.\r\n",
        "signed.example",
        "sel",
        &key,
    );
    let r = c
        .transaction("ann@signed.example", &["alice@example.com"], &signed)
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");

    let r = c
        .transaction(
            "x@reject.example",
            &["alice@example.com"],
            b"From: x@reject.example\r\nSubject: forged\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(
        r.starts_with("550 5.7.1"),
        "DMARC p=reject refused before 250: {r}"
    );

    let r = c
        .transaction(
            "x@quarantine.example",
            &["alice@example.com"],
            b"From: x@quarantine.example\r\nSubject: doubtful\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT").await.unwrap();

    let inbox = look.wait_inbox("alice@example.com", 1).await;
    let text = String::from_utf8_lossy(&look.full_message(&inbox[0]).await).into_owned();
    let results = text
        .lines()
        .find(|l| l.starts_with("Authentication-Results:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        results.starts_with("Authentication-Results: mx.test.example; spf=pass"),
        "{results}"
    );
    assert!(
        results.contains("dkim=pass header.d=signed.example header.s=sel"),
        "{results}"
    );
    assert!(
        results.contains("dmarc=pass header.from=signed.example"),
        "{results}"
    );

    let junk = crate::eventually(
        Duration::from_secs(30),
        "the quarantined message in Junk",
        || async {
            let junk = look.mailbox("alice@example.com", "Junk").await;
            (!junk.is_empty()).then_some(junk)
        },
    )
    .await;
    assert!(junk[0].prefix.contains("dmarc=fail"), "{}", junk[0].prefix);
    assert_eq!(
        look.inbox("alice@example.com").await.len(),
        1,
        "nothing else reached the inbox"
    );
    assert!(
        env.dns
            .queries()
            .iter()
            .any(|q| q.contains("_dmarc.reject.example")),
        "DNS went to the fixture"
    );

    stop(child);
}

const SEND_THREE: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port)) as s:
    for i in range(3):
        s.sendmail("sender@remote.example", ["alice@example.com"], f"Subject: pop {i}\r\n\r\n.dot line {i}\r\nend\r\n")
"#;

const POPLIB: &str = r#"
import poplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3(host, int(port))
caps = p.capa()
assert "STLS" in caps and "UIDL" in caps and "TOP" in caps, caps
p.stls(context=ctx)
p.user("alice@example.com"); p.pass_("alice password")
count, size = p.stat()
print("stat", count, size)
print("uidl", " ".join(u.decode().split()[1] for u in p.uidl()[1]))
# Deliveries run in parallel: message 1 is any of the three. Its dot
# line arrives unstuffed, whichever it is.
lines = p.retr(1)[1]
n = next(l for l in lines if l.startswith(b"Subject: pop "))[-1:]
assert b".dot line " + n in lines, lines
q = poplib.POP3(host, int(port)); q.stls(context=ctx); q.user("alice@example.com")
try:
    q.pass_("alice password"); print("second session got in")
except poplib.error_proto as e:
    print("second", e.args[0].decode())
q.quit()
p.dele(1); p.dele(2)
print("quit", p.quit())
r = poplib.POP3(host, int(port)); r.stls(context=ctx); r.user("alice@example.com"); r.pass_("alice password")
print("after", r.stat()[0], " ".join(u.decode().split()[1] for u in r.uidl()[1]))
r.quit()
"#;

/// Python poplib on the same INBOX: STLS, STAT/UIDL/RETR, the maildrop lock,
/// and deletions committed at QUIT.
pub async fn poplib_reads_and_deletes(env: &Env, look: Look) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    python(SEND_THREE, &[listeners["smtp"].as_str().unwrap()]);
    look.wait_inbox("alice@example.com", 3).await;
    let out = python(POPLIB, &[listeners["pop3"].as_str().unwrap()]);
    assert!(out.contains("stat 3 "), "{out}");
    assert!(out.contains("second -ERR [IN-USE]"), "{out}");
    let uidls: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("uidl "))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    assert_eq!(uidls.len(), 3);
    let after = out.lines().find(|l| l.starts_with("after ")).unwrap();
    assert_eq!(
        after,
        format!("after 1 {}", uidls[2]),
        "two deleted at QUIT; the third keeps its UIDL"
    );
    assert_eq!(
        look.inbox("alice@example.com").await.len(),
        1,
        "deletions show in the mailbox"
    );
    stop(child);
}

/// Clients of a proxy that speaks the PROXY protocol: SMTP with a v1
/// header, IMAP with a v2 header, then a connection from the proxy
/// without one.
const PROXIED: &str = r#"
import imaplib, smtplib, socket, struct, sys
smtp = sys.argv[1].rsplit(":", 1); imap = sys.argv[2].rsplit(":", 1)
class ProxiedSMTP(smtplib.SMTP):
    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout)
        s.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n")
        return s
with ProxiedSMTP(smtp[0], int(smtp[1]), timeout=60) as s:
    s.sendmail("someone@outside.example", ["alice@example.com"], "From: someone@outside.example\r\nSubject: through the proxy\r\n\r\nhello\r\n")
print("sent through the proxy")
class ProxiedIMAP(imaplib.IMAP4):
    def _create_socket(self, timeout):
        s = socket.create_connection((self.host, self.port), timeout)
        v2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
        v2 += socket.inet_aton("198.51.100.4") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 50000, 143)
        s.sendall(v2)
        return s
m = ProxiedIMAP(imap[0], int(imap[1]), timeout=60)
# The client is not on this machine any more: no password before TLS.
print("capabilities before TLS", " ".join(m.capabilities))
import ssl; ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m.starttls(ssl_context=ctx)
print("imap login", m.login("alice@example.com", "alice password")[0])
m.logout()
s = socket.create_connection((smtp[0], int(smtp[1])), timeout=60)
s.sendall(b"EHLO client.example\r\n")
try:
    answer = s.recv(100)
except ConnectionResetError:
    answer = b""
print("without a header:", repr(answer))
"#;

/// With `STRATUS_PROXY_PROTOCOL`, connections from the trusted proxy
/// (here: this machine) must begin with a PROXY header, and the client it
/// names is the client: in the `Received:` line, for the limits and SPF.
/// One without a header is closed unanswered.
pub async fn proxy_protocol_names_the_client(env: &mut Env, look: Look) {
    add_users(env);
    env.set("STRATUS_TRUSTED_PROXIES", "127.0.0.1");
    env.set("STRATUS_PROXY_PROTOCOL", "true");
    let mut child = env.serve(&[]);
    let listeners = crate::cli::wait_for_listeners(&env.data_dir(), &mut child).await;
    let out = python(
        PROXIED,
        &[
            listeners["smtp"].as_str().unwrap(),
            listeners["imap"].as_str().unwrap(),
        ],
    );
    assert!(out.contains("sent through the proxy"), "{out}");
    assert!(out.contains("LOGINDISABLED"), "a remote client: {out}");
    assert!(out.contains("imap login OK"), "{out}");
    assert!(
        out.contains("without a header: b''"),
        "closed unanswered: {out}"
    );
    let message =
        crate::outbound::wait_for_message(&look, "alice@example.com", "Subject: through the proxy")
            .await;
    let received = message
        .split("\r\n")
        .find(|l| l.starts_with("Received:"))
        .unwrap_or_default();
    assert!(
        message.contains("[203.0.113.7]"),
        "the proxy's client is the client: {received} / {message}"
    );
    crate::cli::stop(child);
}
