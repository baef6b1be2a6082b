//! JMAP with a client library that is not ours: `jmapc` from PyPI (in
//! `.emu/clients`, which the test command makes) reads, searches, flags,
//! moves and sends mail over HTTPS on a running `stratus serve`; what it
//! changed is what IMAP sees, and the other way round.
//!
//! Run alone without the library, the test says so and passes, unless
//! `STRATUS_TEST_REQUIRE_CLIENTS=1` (as in the test command).

use std::path::PathBuf;
use std::process::Command;

use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, python};

fn client_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.emu/clients/bin/python")
}

fn walk(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jmap/walk.py");
    let out = Command::new(client_python())
        .arg(script)
        .args(args)
        .output()
        .expect("the clients' python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "jmapc failed:\n{text}");
    text
}

/// The value of the `name: value` line.
fn finding<'a>(text: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{text}"))
}

const SEND: &str = r#"
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1].rsplit(":", 1)
report = EmailMessage()
report["From"] = "Carol <carol@remote.example>"
report["To"] = "alice@example.com"
report["Subject"] = "Quarterly report"
report["Message-ID"] = "<report@remote.example>"
report.set_content("The quarterly numbers are attached.\n")
report.add_attachment(b"1,2,3\n", maintype="text", subtype="csv", filename="numbers.csv")
lunch = EmailMessage()
lunch["From"] = "Dave <dave@remote.example>"
lunch["To"] = "alice@example.com"
lunch["Subject"] = "Lunch"
lunch.set_content("Noon at the usual place?\n")
with smtplib.SMTP(host, int(port)) as s:
    s.send_message(report)
    s.send_message(lunch)
"#;

const IMAP: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
M = imaplib.IMAP4(host, int(port))
M.login("alice@example.com", "alice passphrase 1")
for box in ("INBOX", "Archive"):
    n = M.select(box)[1][0].decode()
    flags = M.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1] if n != "0" else []
    print(box, n, [x[0].decode().split("FLAGS ")[1].split(")")[0] + ")" for x in flags if isinstance(x, tuple)])
if sys.argv[2] == "answer":
    M.select("INBOX")
    print(M.store("1", "+FLAGS", "(\\Answered)")[0])
"#;

const BOB_INBOX: &str = r#"
import imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
M = imaplib.IMAP4(host, int(port))
M.login("bob@example.com", "bob passphrase 1")
n = M.select("INBOX")[1][0].decode()
if n != "0":
    for x in M.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DKIM-SIGNATURE)])")[1]:
        if isinstance(x, tuple):
            print(x[1].decode())
"#;

pub async fn a_jmap_client_reads_searches_flags_and_moves(env: &mut Env, _look: Look) {
    if !client_python().exists() {
        assert!(
            std::env::var("STRATUS_TEST_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "the JMAP test cannot run: no {}",
            client_python().display()
        );
        eprintln!("skipped: no jmapc in .emu/clients (tests/run.sh makes it)");
        return;
    }
    env.ok(&["domain", "add", "example.com"], b"");
    env.ok(
        &["user", "add", "alice@example.com", "--password-stdin"],
        b"alice passphrase 1\n",
    );
    env.ok(
        &["user", "add", "bob@example.com", "--password-stdin"],
        b"bob passphrase 1\n",
    );
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let https = listeners["https"].as_str().unwrap().to_string();
    let imap = listeners["imap"].as_str().unwrap().to_string();
    python(SEND, &[listeners["smtp"].as_str().unwrap()]);
    crate::eventually(
        std::time::Duration::from_secs(60),
        "both messages in alice's INBOX",
        || async {
            python(IMAP, &[&imap, "look"])
                .contains("INBOX 2")
                .then_some(())
        },
    )
    .await;

    let read = walk(&[&https, "alice@example.com", "alice passphrase 1", "read"]);
    assert_eq!(
        finding(&read, "inbox"),
        r#"{"threads": 2, "total": 2, "unread": 2}"#
    );
    assert!(
        read.contains(r#"email: {"attachment": false, "from": "dave@remote.example", "names": [], "subject": "Lunch", "text": "Noon at the usual place?"}"#),
        "{read}"
    );
    assert!(
        read.contains(r#"email: {"attachment": true, "from": "carol@remote.example", "names": ["numbers.csv"], "subject": "Quarterly report", "text": "The quarterly numbers are attached."}"#),
        "{read}"
    );
    assert_eq!(finding(&read, "threads"), "[1, 1]");
    assert_eq!(finding(&read, "search"), r#"["Quarterly report"]"#);
    assert_eq!(finding(&read, "search-none"), "[]");
    assert_eq!(finding(&read, "identities"), r#"["alice@example.com"]"#);
    assert_eq!(finding(&read, "updated"), "true");
    let changes: serde_json::Value = serde_json::from_str(finding(&read, "changes")).expect("JSON");
    assert_eq!(changes["updated"], serde_json::json!([changes["moved"]]));
    assert_eq!(changes["created"], serde_json::json!([]));

    // What JMAP did, IMAP sees: the report flagged, read, and archived.
    let seen = python(IMAP, &[&imap, "answer"]);
    assert!(seen.contains("INBOX 1"), "{seen}");
    assert!(seen.contains("Archive 1"), "{seen}");
    let archive_line = seen.lines().find(|l| l.starts_with("Archive")).unwrap();
    assert!(
        archive_line.contains("\\\\Seen") && archive_line.contains("\\\\Flagged"),
        "{seen}"
    );
    // What IMAP did, JMAP sees as a change since its last state.
    let state: String = serde_json::from_str(finding(&read, "state")).unwrap();
    let after = walk(&[
        &https,
        "alice@example.com",
        "alice passphrase 1",
        "changes",
        &state,
    ]);
    assert_eq!(
        finding(&after, "imap-changes"),
        r#"[["Lunch", ["$answered"]]]"#
    );

    // Sent over JMAP: through submission's checks and queue to bob, and
    // filed in alice's Sent.
    let sent = walk(&[
        &https,
        "alice@example.com",
        "alice passphrase 1",
        "send",
        "bob@example.com",
    ]);
    assert_eq!(finding(&sent, "sent"), r#"["send"]"#);
    assert_eq!(finding(&sent, "in-sent"), "1");
    crate::eventually(
        std::time::Duration::from_secs(60),
        "the message sent over JMAP in bob's INBOX",
        || async {
            let out = python(BOB_INBOX, &[&imap]);
            out.contains("Sent over JMAP").then_some(out)
        },
    )
    .await;

    // A wrong password is refused like IMAP's, with nothing read.
    let out = Command::new(client_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jmap/walk.py"))
        .args([&https, "alice@example.com", "wrong passphrase", "read"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop(child);
}
