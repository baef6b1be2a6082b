//! The webmail in a real browser (`tests/browser/mail.mjs`): two users
//! write to each other and see mail arrive without a reload, attach,
//! search, mark spam, walk by keyboard, open a thousand-message mailbox
//! (the time is printed, for BENCHMARKS.md), and open a corpus of hostile
//! messages (`tests/jmap/hostile.py`) during which no script may run, no
//! dialog open and no request leave for elsewhere.
//!
//! Screenshots go to `STRATUS_TEST_SHOTS` when it is set.

use std::path::PathBuf;
use std::process::Command;

use crate::admin_ui::{browser_dir, missing};
use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, python};

const QUARTERLY: &str = r#"
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1].rsplit(":", 1)
m = EmailMessage()
m["From"] = "Carol <carol@remote.example>"
m["To"] = "alice@example.com"
m["Subject"] = "Quarterly numbers"
m.set_content("The quarterly numbers are in.\n")
with smtplib.SMTP(host, int(port)) as s:
    s.send_message(m)
"#;

/// A thousand messages in alice's "Big" mailbox, over IMAP APPEND.
const BULK: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
M = imaplib.IMAP4(host, int(port))
M.login("alice@example.com", "alice passphrase 1")
M.create("Big")
for i in range(1000):
    msg = (f"From: sender{i % 37}@remote.example\r\nTo: alice@example.com\r\n"
           f"Subject: Bulk message {i}\r\nMessage-ID: <bulk{i}@remote.example>\r\n"
           f"Date: Mon, 7 Dec 2026 10:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n\r\nBody {i}\r\n")
    M.append("Big", "(\\Seen)" if i % 3 else "()", imaplib.Time2Internaldate(1796630400 + i), msg.encode())
print(M.select("Big")[1][0].decode())
"#;

const INBOX_COUNT: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
M = imaplib.IMAP4(host, int(port))
M.login("alice@example.com", "alice passphrase 1")
print(M.select("INBOX")[1][0].decode())
"#;

pub async fn two_users_mail_each_other_in_the_browser(env: &mut Env, _look: Look) {
    if let Some(why) = missing() {
        assert!(
            std::env::var("STRATUS_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "the browser test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    env.ok(&["domain", "add", "example.com"], b"");
    for (user, password) in [
        ("alice@example.com", "alice passphrase 1\n"),
        ("bob@example.com", "bob passphrase 1\n"),
    ] {
        env.ok(
            &["user", "add", user, "--password-stdin"],
            password.as_bytes(),
        );
    }
    // The corpus is spam to the filter, rightly: alice keeps all of it in
    // her INBOX, to open it there.
    env.ok(
        &[
            "spam",
            "threshold",
            "alice@example.com",
            "--junk",
            "100",
            "--reject",
            "200",
        ],
        b"",
    );
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let https = listeners["https"].as_str().unwrap().to_string();
    let smtp = listeners["smtp"].as_str().unwrap().to_string();
    let imap = listeners["imap"].as_str().unwrap().to_string();
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jmap/hostile.py");
    let out = Command::new("python3")
        .arg(corpus)
        .args([smtp.as_str(), "alice@example.com"])
        .output()
        .expect("python3");
    let sent = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{sent}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hostile: usize = sent
        .trim()
        .strip_prefix("sent ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    eprintln!("webmail: {hostile} hostile messages sent");
    python(QUARTERLY, &[&smtp]);
    let bulk = python(BULK, &[&imap]);
    eprintln!("webmail: a thousand messages appended");
    assert_eq!(bulk.trim(), "1000", "{bulk}");
    crate::eventually(
        std::time::Duration::from_secs(90),
        "the corpus in alice's INBOX",
        || async {
            let n: usize = python(INBOX_COUNT, &[&imap]).trim().parse().unwrap_or(0);
            (n == hostile + 1).then_some(())
        },
    )
    .await;

    eprintln!("webmail: the corpus is in alice's INBOX");
    let shots = env.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(browser_dir().join("mail.mjs"))
        .args([&format!("https://{https}"), shots.to_str().unwrap()])
        .output()
        .expect("node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    if let Ok(dir) = std::env::var("STRATUS_TEST_SHOTS") {
        for shot in [
            "compose.png",
            "reader.png",
            "hostile.png",
            "phone-dark.png",
            "failure.png",
        ] {
            let _ = std::fs::copy(shots.join(shot), PathBuf::from(&dir).join(shot));
        }
    }
    assert!(out.status.success(), "the webmail walk failed:\n{text}");
    assert!(
        text.contains(&format!("ok: opened {hostile} hostile messages")),
        "{text}"
    );
    assert!(text.contains("ok: no script ran, no dialog"), "{text}");
    stop(child);
}
