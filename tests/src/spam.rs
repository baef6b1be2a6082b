//! Spam filtering end to end: refused before the final reply when every
//! recipient would refuse it, filed to Junk per recipient otherwise,
//! verdict fields of our own only, thresholds and lists set with
//! `stratus spam`.

use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, RawSmtp, add_users};

/// A rule that makes a message with `junk-me` in its subject score 8:
/// above the junk threshold (5), below the reject threshold (15).
pub const TEST_RULE: &str = r#"
[[rule]]
name = "TEST_JUNK_ME"
on = "subject"
pattern = 'junk-me'
score = 8.0
describe = "a test message meant for Junk"
"#;

/// Starts `serve` and opens an SMTP session to its MX port, past EHLO.
pub(crate) async fn serve_and_greet(
    env: &Env,
) -> (std::process::Child, serde_json::Value, RawSmtp) {
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let smtp = listeners["smtp"].as_str().unwrap().to_string();
    let (mut c, _) = RawSmtp::connect(&smtp).await.unwrap();
    c.cmd("EHLO client.example").await.unwrap();
    (child, listeners, c)
}

fn message(from: &str, subject: &str, extra_header: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: alice@example.com\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}.{}@remote.example>\r\n{extra_header}\r\n{body}\r\n",
        body.len()
    )
    .into_bytes()
}

fn header<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .collect()
}

pub async fn spam_before_and_after_acceptance(env: &mut Env, look: Look) {
    add_users(env);
    let rules = format!("{}\n{TEST_RULE}", stratus_filter::rules::SHIPPED);
    let path = env.data_dir().with_file_name("rules.toml");
    std::fs::write(&path, rules).unwrap();
    env.set("STRATUS_SPAM_RULES", &path.display().to_string());
    let listed = env.ok(&["spam", "rules"], b"");
    assert!(
        listed.contains("TEST_JUNK_ME") && listed.contains("GTUBE"),
        "{listed}"
    );

    // Settings: bad input and other tenants are refused, with the reason.
    let run = env.run(
        &["spam", "threshold", "nobody@example.com", "--junk", "3"],
        b"",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no such user"), "{run:?}");
    let run = env.run(
        &["spam", "threshold", "nowhere.example", "--junk", "3"],
        b"",
    );
    assert_eq!(run.code, 1, "{run:?}");
    let run = env.run(
        &[
            "spam",
            "threshold",
            "example.com",
            "--junk",
            "20",
            "--reject",
            "10",
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("below the reject threshold"), "{run:?}");
    let run = env.run(
        &["spam", "block", "alice@example.com", "not an address"],
        b"",
    );
    assert_eq!(run.code, 2, "{run:?}");
    let run = env.run(&["spam", "threshold", "example.com", "--junk", "NaN"], b"");
    assert_eq!(run.code, 2, "{run:?}");
    env.ok(
        &["spam", "block", "alice@example.com", "spammer.example"],
        b"",
    );
    let shown = env.ok(&["spam", "show", "alice@example.com"], b"");
    assert!(shown.contains("block:     spammer.example"), "{shown}");
    assert!(shown.contains("junk at:   default (5)"), "{shown}");

    // A model trained from the operator's own mail goes to the blob store.
    let corpus = env.data_dir().with_file_name("corpus");
    for (kind, words) in [
        ("ham", "meeting agenda notes"),
        ("spam", "cheap pills winner"),
    ] {
        std::fs::create_dir_all(corpus.join(kind)).unwrap();
        for n in 0..3 {
            let m = format!("From: a@b.example\r\nSubject: {words} {n}\r\n\r\n{words}\r\n");
            std::fs::write(corpus.join(kind).join(format!("{n}.eml")), m).unwrap();
        }
    }
    let (ham, spam) = (corpus.join("ham"), corpus.join("spam"));
    let said = env.ok(
        &[
            "spam",
            "train",
            "--ham",
            &ham.display().to_string(),
            "--spam",
            &spam.display().to_string(),
        ],
        b"",
    );
    assert!(said.contains("trained on 3 ham and 3 spam"), "{said}");
    let key = stratus_core::ids::BlobKey::parse(stratus_pipeline::spam::MODEL_KEY).unwrap();
    let stored = look
        .blobs
        .get(&key, None)
        .await
        .unwrap()
        .expect("a stored model");
    let model = stratus_filter::Model::from_bytes(&stored).unwrap();
    // Each of so few messages is judged narrowly had the model not seen
    // it, so each is learnt twice (train on error).
    assert_eq!((model.spam_messages, model.ham_messages), (6, 6));
    // Too small to judge by (the classifier abstains below 50 of each),
    // so the verdicts below come from the rules alone.
    let run = env.run(
        &[
            "spam",
            "train",
            "--ham",
            "/nonexistent",
            "--spam",
            "/nonexistent",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "{run:?}");

    let (child, listeners, mut c) = serve_and_greet(env).await;

    // GTUBE to one recipient: refused before the final reply.
    let gtube = message(
        "sender@remote.example",
        "test",
        "",
        stratus_filter::analysis::GTUBE,
    );
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &gtube)
        .await
        .unwrap();
    assert!(r.starts_with("550 5.7.1") && r.contains("GTUBE"), "{r}");

    // A sender on alice's block list: refused too.
    let plain = message("x@spammer.example", "hello", "", "Lunch at noon?");
    let r = c
        .transaction("x@spammer.example", &["alice@example.com"], &plain)
        .await
        .unwrap();
    assert!(
        r.starts_with("550 5.7.1") && r.contains("USER_BLOCKLIST"),
        "{r}"
    );

    // Above the junk threshold, below the reject one: accepted, in Junk,
    // with our verdict fields; the forged ones it came with are gone.
    let forged = "X-Spam-Status: No, score=-100.0 tests=FORGED\r\nX-Spam-Score: -100\r\n";
    let junk = message("sender@remote.example", "junk-me", forged, "Lunch at noon?");
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &junk)
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let filed = crate::eventually(
        std::time::Duration::from_secs(30),
        "a message in Junk",
        || async {
            let got = look.mailbox("alice@example.com", "Junk").await;
            (got.len() == 1).then_some(got)
        },
    )
    .await;
    let raw = String::from_utf8_lossy(&look.full_message(&filed[0]).await).into_owned();
    let status = header(&raw, "X-Spam-Status");
    assert_eq!(status.len(), 1, "{raw}");
    assert!(status[0].starts_with("X-Spam-Status: Yes, score="), "{raw}");
    assert!(raw.contains("TEST_JUNK_ME(8.00)"), "{raw}");
    assert!(!raw.contains("FORGED") && !raw.contains("-100"), "{raw}");
    assert_eq!(header(&raw, "X-Spam-Score").len(), 1, "{raw}");

    // Plain mail: INBOX, marked as not spam.
    let ham = message(
        "sender@remote.example",
        "lunch",
        forged,
        "Shall we meet at noon for lunch?",
    );
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &ham)
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let inbox = look.wait_inbox("alice@example.com", 1).await;
    let raw = String::from_utf8_lossy(&look.full_message(&inbox[0]).await).into_owned();
    let status = header(&raw, "X-Spam-Status");
    assert_eq!(status.len(), 1, "{raw}");
    assert!(status[0].starts_with("X-Spam-Status: No, score="), "{raw}");
    assert!(!raw.contains("FORGED"), "{raw}");

    // Two recipients whose thresholds differ: bob would take GTUBE (his
    // reject threshold is higher than its score), so the message is
    // accepted, and filed to Junk for both.
    env.ok(
        &["spam", "threshold", "bob@example.com", "--reject", "2000"],
        b"",
    );
    let r = c
        .transaction(
            "sender@remote.example",
            &["alice@example.com", "bob@example.com"],
            &gtube,
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    for user in ["alice@example.com", "bob@example.com"] {
        let filed = crate::eventually(
            std::time::Duration::from_secs(30),
            "GTUBE in Junk",
            || async {
                let got = look.mailbox(user, "Junk").await;
                got.iter()
                    .any(|e| e.prefix.contains("GTUBE("))
                    .then_some(got)
            },
        )
        .await;
        assert!(!filed.is_empty());
    }
    assert_eq!(look.inbox("alice@example.com").await.len(), 1);
    assert_eq!(look.inbox("bob@example.com").await.len(), 0);
    c.cmd("QUIT").await.unwrap();

    // A real client moves the ham into Junk: the filter learns it as
    // spam for alice; moved back out, as ham. Each lesson counts once.
    let imap = listeners["imap"].as_str().unwrap();
    let body = inbox[0].body.as_str().to_string();
    crate::smtp::python(IMAP_MOVES, &[imap, "INBOX", "Junk", "lunch"]);
    learned(&look, &body, "spam").await;
    crate::smtp::python(IMAP_MOVES, &[imap, "Junk", "INBOX", "lunch"]);
    learned(&look, &body, "ham").await;
    stop(child);
}

/// Waits until alice's spam model learnt the message with `body` as
/// `class`.
async fn learned(look: &Look, body: &str, class: &str) {
    let key = stratus_core::ports::Key::new("spamlearned#alice@example.com", body);
    crate::eventually(std::time::Duration::from_secs(30), class, || async {
        let item = look.index.get(&key).await.unwrap()?;
        (item.value == class.as_bytes()).then_some(())
    })
    .await
}

/// Logs in as alice and moves the message with a subject from one
/// mailbox to another.
const IMAP_MOVES: &str = r#"
import imaplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
imaplib.Commands.setdefault("MOVE", ("SELECTED",))
M = imaplib.IMAP4(host, int(port))
M.starttls(ssl_context=ctx)
assert M.login("alice@example.com", "alice password")[0] == "OK"
assert M.select(sys.argv[2])[0] == "OK"
typ, data = M.uid("SEARCH", "SUBJECT", sys.argv[4])
uids = data[0].decode().split()
assert len(uids) == 1, uids
typ, data = M.uid("MOVE", uids[0], sys.argv[3])
assert typ == "OK", (typ, data)
M.logout()
"#;

/// The EICAR test file: every virus scanner reports it, none is harmed.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A clamd of Debian's clamav-daemon whose only signature is the EICAR
/// file's hash (no freshclam, no internet), on a unix socket; stopped when
/// dropped.
#[derive(Debug)]
pub struct Clamd {
    child: std::process::Child,
    pub socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Clamd {
    pub async fn start() -> Clamd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).unwrap();
        // MD5:size:name, a hash signature of the whole file.
        std::fs::write(
            d.join("db/eicar.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
        )
        .unwrap();
        let socket = d.join("clamd.sock");
        std::fs::write(
            d.join("clamd.conf"),
            format!(
                "LocalSocket {sock}\nDatabaseDirectory {db}\nForeground yes\nLogFile {log}\nLogVerbose yes\nPidFile {pid}\nTemporaryDirectory {tmp}\nStreamMaxLength 60M\nMaxThreads 4\n",
                sock = socket.display(),
                db = d.join("db").display(),
                log = d.join("clamd.log").display(),
                pid = d.join("clamd.pid").display(),
                tmp = d.display(),
            ),
        )
        .unwrap();
        let sbin = std::path::Path::new("/usr/sbin/clamd");
        let program = if sbin.exists() {
            sbin.to_path_buf()
        } else {
            "clamd".into()
        };
        let child = std::process::Command::new(program)
            .arg(format!("--config-file={}", d.join("clamd.conf").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("clamd: {e} (tests/run.sh installs clamav-daemon)"));
        let log = d.join("clamd.log");
        let sock = socket.clone();
        crate::eventually(
            std::time::Duration::from_secs(60),
            "clamd listening",
            || {
                let (sock, log) = (sock.clone(), log.clone());
                async move {
                    let mut s = tokio::net::UnixStream::connect(&sock).await.ok()?;
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    s.write_all(b"zPING\0").await.ok()?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).await.ok()?;
                    let _ = log;
                    (answer == b"PONG\0").then_some(())
                }
            },
        )
        .await;
        Clamd {
            child,
            socket,
            _dir: dir,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn with_attachment(subject: &str, part: &str) -> Vec<u8> {
    format!(
        "From: <sender@remote.example>\r\nTo: alice@example.com\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@remote.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n--outer\r\n{part}\r\n--outer--\r\n"
    )
    .into_bytes()
}

fn base64_part(name: &str, content_type: &str, data: &[u8]) -> String {
    format!(
        "Content-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        stratus_core::base64::encode(data)
    )
}

/// A zip holding one file.
fn zipped(name: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

pub async fn viruses_before_acceptance(env: &mut Env, look: Look) {
    add_users(env);
    let mut clamd = Clamd::start().await;
    env.set("STRATUS_CLAMD", &format!("unix:{}", clamd.socket.display()));
    let (child, _, mut c) = serve_and_greet(env).await;
    let plain = with_attachment(
        "plain",
        &base64_part("eicar.com", "application/octet-stream", EICAR.as_bytes()),
    );
    let zipped = with_attachment(
        "zipped",
        &base64_part(
            "files.zip",
            "application/zip",
            &zipped("eicar.com", EICAR.as_bytes()),
        ),
    );
    let nested = with_attachment(
        "nested",
        &format!(
            "Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--inner\r\n{}\r\n--inner--",
            base64_part("readme.txt", "text/plain", EICAR.as_bytes())
        ),
    );
    for (what, body) in [("plain", &plain), ("zip", &zipped), ("nested", &nested)] {
        let r = c
            .transaction("sender@remote.example", &["alice@example.com"], body)
            .await
            .unwrap();
        assert!(
            r.starts_with("554 5.7.1") && r.contains("Eicar-Test-Signature"),
            "{what}: {r}"
        );
    }
    let clean = with_attachment(
        "clean",
        &base64_part("notes.txt", "text/plain", b"Minutes of the meeting.\r\n"),
    );
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &clean)
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let inbox = look.wait_inbox("alice@example.com", 1).await;
    let raw = String::from_utf8_lossy(&look.full_message(&inbox[0]).await).into_owned();
    assert_eq!(
        header(&raw, "X-Virus-Status"),
        ["X-Virus-Status: clean (ClamAV)"],
        "{raw}"
    );

    // clamd gone: the message is deferred, not passed as clean.
    clamd.stop();
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &clean)
        .await
        .unwrap();
    assert!(r.starts_with("451 4.7.1"), "{r}");
    c.cmd("QUIT").await.unwrap();
    stop(child);

    // Set to accept then, it is delivered marked unchecked.
    env.set("STRATUS_CLAMD_UNAVAILABLE", "accept");
    let (child, _, mut c) = serve_and_greet(env).await;
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &clean)
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let inbox = look.wait_inbox("alice@example.com", 2).await;
    let raw = String::from_utf8_lossy(&look.full_message(&inbox[1]).await).into_owned();
    assert_eq!(
        header(&raw, "X-Virus-Status"),
        ["X-Virus-Status: unchecked (the scanner did not answer)"],
        "{raw}"
    );
    c.cmd("QUIT").await.unwrap();
    stop(child);
}

pub async fn quarantine_holds_and_releases(env: &mut Env, look: Look) {
    add_users(env);
    let (child, _, mut c) = serve_and_greet(env).await;
    // An executable behind a document's name, for alice and bob.
    let invoice = with_attachment(
        "invoice",
        &base64_part(
            "invoice.pdf.exe",
            "application/octet-stream",
            b"MZ\x90\x00\x03\x00",
        ),
    );
    let r = c
        .transaction(
            "sender@remote.example",
            &["alice@example.com", "bob@example.com"],
            &invoice,
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let id = crate::smtp::queue_id(&r).unwrap();
    let listed = crate::eventually(
        std::time::Duration::from_secs(30),
        "a held message",
        || async {
            let out = env.ok(&["quarantine", "list"], b"");
            out.contains(&id).then_some(out)
        },
    )
    .await;
    assert!(listed.contains("ATTACH_DOUBLE_EXT"), "{listed}");
    assert!(
        listed.contains("alice@example.com,bob@example.com"),
        "{listed}"
    );
    // Neither Junk nor INBOX has it.
    for user in ["alice@example.com", "bob@example.com"] {
        assert!(look.inbox(user).await.is_empty());
        assert!(look.mailbox(user, "Junk").await.is_empty());
    }
    let shown = env.ok(&["quarantine", "show", &id], b"");
    assert!(
        shown.contains("Subject: invoice") && shown.contains("X-Spam-Status: Yes"),
        "{shown}"
    );

    // Bad ids and unknown ones are refused with the reason.
    let run = env.run(&["quarantine", "show", "../../etc/passwd"], b"");
    assert_eq!(run.code, 2, "{run:?}");
    let run = env.run(
        &["quarantine", "release", "01ARZ3NDEKTSV4RRFFQ69G5FAV"],
        b"",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no message"), "{run:?}");

    let released = env.ok(&["quarantine", "release", &id], b"");
    assert!(released.contains("alice@example.com"), "{released}");
    for user in ["alice@example.com", "bob@example.com"] {
        let inbox = look.wait_inbox(user, 1).await;
        let raw = String::from_utf8_lossy(&look.full_message(&inbox[0]).await).into_owned();
        assert!(
            raw.contains("invoice.pdf.exe") && raw.contains("X-Spam-Status: Yes"),
            "{raw}"
        );
    }
    // Once: a second release is refused, and nothing more is delivered.
    let run = env.run(&["quarantine", "release", &id], b"");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("released already"), "{run:?}");
    let listed = env.ok(&["quarantine", "list"], b"");
    assert!(listed.contains("released"), "{listed}");
    env.ok(&["quarantine", "delete", &id], b"");
    assert!(!env.ok(&["quarantine", "list"], b"").contains(&id));
    let run = env.run(&["quarantine", "delete", &id], b"");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(look.inbox("alice@example.com").await.len(), 1);
    c.cmd("QUIT").await.unwrap();
    stop(child);
}

pub async fn blocklists_are_asked(env: &mut Env, look: Look) {
    add_users(env);
    let zones = r#"
[[dnsbl]]
name = "RBL_TEST"
zone = "bl.test"
kind = "ip"
score = 3.0

[[dnsbl]]
name = "URIBL_TEST"
zone = "dbl.test"
kind = "domain"
score = 4.0

[[dnsbl]]
name = "RBL_REFUSING"
zone = "refusing.test"
kind = "ip"
score = 50.0

[[dnsbl]]
name = "URIBL_SLOW"
zone = "slow.test"
kind = "domain"
score = 50.0
"#;
    let rules = format!("{}\n{zones}", stratus_filter::rules::SHIPPED);
    let path = env.data_dir().with_file_name("rules.toml");
    std::fs::write(&path, rules).unwrap();
    env.set("STRATUS_SPAM_RULES", &path.display().to_string());
    // The client (127.0.0.1) is listed; a list that refuses our resolver
    // answers 127.255.255.254; a link's domain is listed; one list never
    // answers.
    env.dns
        .add_a("1.0.0.127.bl.test", "127.0.0.2".parse().unwrap());
    env.dns.add_a(
        "1.0.0.127.refusing.test",
        "127.255.255.254".parse().unwrap(),
    );
    env.dns
        .add_a("evil.example.dbl.test", "127.0.1.2".parse().unwrap());
    env.dns.add_unresponsive("evil.example.slow.test");
    env.dns.add_unresponsive("www.evil.example.slow.test");

    let (child, _, mut c) = serve_and_greet(env).await;
    let body = message(
        "sender@remote.example",
        "links",
        "",
        "Have a look at http://www.evil.example/offer today.",
    );
    let started = std::time::Instant::now();
    let r = c
        .transaction("sender@remote.example", &["alice@example.com"], &body)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(r.starts_with("250"), "{r}");
    // The list that never answers costs at most the deadline, once.
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let filed = crate::eventually(
        std::time::Duration::from_secs(30),
        "the message filed",
        || async {
            let mut all = look.inbox("alice@example.com").await;
            all.extend(look.mailbox("alice@example.com", "Junk").await);
            (all.len() == 1).then_some(all)
        },
    )
    .await;
    let raw = String::from_utf8_lossy(&look.full_message(&filed[0]).await).into_owned();
    // (The field is folded: the symbols may be on its continuation line.)
    assert!(raw.contains("RBL_TEST(3.00)"), "{raw}");
    assert!(raw.contains("URIBL_TEST(4.00)"), "{raw}");
    assert!(
        !raw.contains("RBL_REFUSING") && !raw.contains("URIBL_SLOW"),
        "{raw}"
    );
    c.cmd("QUIT").await.unwrap();
    stop(child);
}
