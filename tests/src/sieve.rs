//! Sieve end to end: scripts stored with `stratus sieve` (refused with the
//! parser's line when they do not parse), and the active one filing each
//! message delivered to its user, after the spam verdict.

use std::time::Duration;

use stratus_core::mailstore::MessageEntry;

use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, RawSmtp, add_users};
use crate::spam::TEST_RULE;

const SCRIPT: &str = r#"# Alice's filters
require ["fileinto", "imap4flags", "variables", "mailbox", "envelope",
         "subaddress", "copy"];
if header :matches "List-Id" "*<*.example.org>*" {
    addflag "\\Seen";
    fileinto :create "Lists/${2}";
    stop;
}
if header :matches "X-Spam-Status" "Yes*" {
    fileinto :create "Caught";
    stop;
}
if envelope :detail "to" "drop" {
    discard;
    stop;
}
if header :contains "subject" "missing" {
    fileinto "Nowhere";
    stop;
}
if header :contains "subject" "twice" {
    fileinto :copy :flags "$Archived" "Archive";
}
"#;

fn message(subject: &str, extra_header: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@remote.example>\r\nTo: alice@example.com\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{}.sieve@remote.example>\r\n{extra_header}\r\nHello Alice, the minutes of the meeting are below.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// The messages of `user`'s mailbox `name`; none while it does not exist.
pub(crate) async fn entries(look: &Look, user: &str, name: &str) -> Vec<MessageEntry> {
    look.try_mailbox(user, name).await.unwrap_or_default()
}

/// The Subject lines of `entries`, sorted.
pub(crate) async fn subjects(look: &Look, entries: &[MessageEntry]) -> Vec<String> {
    let mut out = Vec::new();
    for entry in entries {
        let text = String::from_utf8_lossy(&look.full_message(entry).await).into_owned();
        out.extend(
            text.lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_string),
        );
    }
    out.sort();
    out
}

/// Waits (bounded) until `user`'s mailbox `name` holds `n` messages.
pub(crate) async fn wait_for(look: &Look, user: &str, name: &str, n: usize) -> Vec<MessageEntry> {
    crate::eventually(
        Duration::from_secs(30),
        &format!("{n} messages in {user}'s {name}"),
        || async {
            let got = entries(look, user, name).await;
            assert!(got.len() <= n, "{} messages in {name}", got.len());
            (got.len() == n).then_some(got)
        },
    )
    .await
}

pub async fn sieve_files_delivered_mail(env: &mut Env, look: Look) {
    add_users(env);
    let rules = format!("{}\n{TEST_RULE}", stratus_filter::rules::SHIPPED);
    let path = env.data_dir().with_file_name("rules.toml");
    std::fs::write(&path, rules).unwrap();
    env.set("STRATUS_SPAM_RULES", &path.display().to_string());

    // A script that does not parse is refused with its line; nothing is
    // stored.
    let bad = env.run(
        &["sieve", "put", "alice@example.com", "bad", "-"],
        b"require \"fileinto\";\nif header :is \"x\" \"y\" {\n  fileinto;\n}\n",
    );
    assert_eq!(bad.code, 2, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("line 3") && bad.stderr.contains("mailbox"),
        "{}",
        bad.stderr
    );
    let checked = env.run(&["sieve", "check", "-"], b"keep;\nfrobnicate;\n");
    assert_eq!(checked.code, 2);
    assert!(
        checked.stderr.contains("line 2: unknown command"),
        "{}",
        checked.stderr
    );
    assert_eq!(env.ok(&["sieve", "check", "-"], SCRIPT.as_bytes()), "ok\n");
    // Not a user here: refused.
    let nobody = env.run(&["sieve", "put", "nobody@example.com", "x", "-"], b"keep;");
    assert_eq!(nobody.code, 1, "{}", nobody.stderr);

    let said = env.ok(
        &[
            "sieve",
            "put",
            "alice@example.com",
            "rules",
            "-",
            "--activate",
        ],
        SCRIPT.as_bytes(),
    );
    assert!(
        said.contains("stored rules") && said.contains("active"),
        "{said}"
    );
    env.ok(
        &["sieve", "put", "alice@example.com", "spare", "-"],
        b"keep;\n",
    );
    let listed = env.ok(&["sieve", "list", "alice@example.com"], b"");
    assert!(
        listed.contains("rules") && listed.contains("(active)"),
        "{listed}"
    );
    assert!(listed.contains("spare 6 bytes\n"), "{listed}");
    assert_eq!(
        env.ok(&["sieve", "get", "alice@example.com", "rules"], b""),
        SCRIPT
    );
    let busy = env.run(&["sieve", "del", "alice@example.com", "rules"], b"");
    assert_eq!(busy.code, 1);
    assert!(
        busy.stderr.contains("deactivate it first"),
        "{}",
        busy.stderr
    );
    env.ok(
        &["sieve", "rename", "alice@example.com", "spare", "old"],
        b"",
    );
    env.ok(&["sieve", "del", "alice@example.com", "old"], b"");
    let gone = env.run(&["sieve", "get", "alice@example.com", "old"], b"");
    assert_eq!(gone.code, 1);

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let smtp = listeners["smtp"].as_str().unwrap().to_string();
    let (mut c, _) = RawSmtp::connect(&smtp).await.unwrap();
    c.cmd("EHLO client.example").await.unwrap();
    let send = async |c: &mut RawSmtp, to: &[&str], body: Vec<u8>| {
        let r = c
            .transaction("carol@remote.example", to, &body)
            .await
            .unwrap();
        assert!(r.starts_with("250"), "{r}");
    };
    // To alice, and to bob, who has no script.
    send(
        &mut c,
        &["alice@example.com", "bob@example.com"],
        message("team news", "List-Id: Team list <team.example.org>\r\n"),
    )
    .await;
    send(
        &mut c,
        &["alice@example.com"],
        message("junk-me please", ""),
    )
    .await;
    send(&mut c, &["alice+drop@example.com"], message("dropped", "")).await;
    send(&mut c, &["alice@example.com"], message("missing box", "")).await;
    send(&mut c, &["alice@example.com"], message("twice over", "")).await;

    let lists = wait_for(&look, "alice@example.com", "Lists/team", 1).await;
    assert!(
        lists[0].flags.iter().any(|f| f == "\\Seen"),
        "{:?}",
        lists[0].flags
    );
    // Scored as junk, filed by the script where it said, not to Junk.
    let caught = wait_for(&look, "alice@example.com", "Caught", 1).await;
    let raw = String::from_utf8_lossy(&look.full_message(&caught[0]).await).into_owned();
    assert!(raw.contains("X-Spam-Status: Yes"), "{raw}");
    let archived = wait_for(&look, "alice@example.com", "Archive", 1).await;
    assert_eq!(archived[0].flags, ["$Archived"]);
    // INBOX: "missing box" (no such mailbox) and the copy of "twice over".
    let inbox = wait_for(&look, "alice@example.com", "INBOX", 2).await;
    let subjects: Vec<String> = inbox
        .iter()
        .filter_map(|e| e.meta.as_ref()?.envelope.subject.clone())
        .collect();
    assert!(
        subjects.contains(&"missing box".to_string())
            && subjects.contains(&"twice over".to_string()),
        "{subjects:?}"
    );
    // Bob has no script: the list mail is in his INBOX.
    look.wait_inbox("bob@example.com", 1).await;
    assert!(entries(&look, "alice@example.com", "Junk").await.is_empty());
    assert!(
        entries(&look, "alice@example.com", "Nowhere")
            .await
            .is_empty()
    );

    // Deactivated, the next list message stays in INBOX.
    env.ok(&["sieve", "deactivate", "alice@example.com"], b"");
    send(
        &mut c,
        &["alice@example.com"],
        message("more news", "List-Id: Team list <team.example.org>\r\n"),
    )
    .await;
    wait_for(&look, "alice@example.com", "INBOX", 3).await;
    assert_eq!(
        entries(&look, "alice@example.com", "Lists/team")
            .await
            .len(),
        1
    );
    // The dropped message went nowhere: 1 + 1 + 1 + 3 filings in all.
    let mut total = 0;
    for name in ["INBOX", "Lists/team", "Caught", "Archive", "Junk"] {
        total += entries(&look, "alice@example.com", name).await.len();
    }
    assert_eq!(total, 6);
    c.cmd("QUIT").await.unwrap();
    stop(child);
}

/// Bob submits (STARTTLS, AUTH) three messages to Alice: one addressed to
/// her, one more in the same period, one from a list; then one to her
/// alias. argv: host:port of submission.
const BOB_WRITES: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=60) as s:
    s.starttls(context=ctx)
    s.login("bob@example.com", "bob password")
    for subject, extra in [("lunch?", ""), ("lunch, again?", ""), ("list news", "List-Id: <team.example.org>\r\n")]:
        s.sendmail("bob@example.com", ["alice@example.com"],
            f"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.').replace(',', '').replace('?', '')}@example.com>\r\n{extra}\r\nhello\r\n")
print("sent")
"#;

pub async fn vacation_replies(env: &mut Env, look: Look) {
    add_users(env);
    env.ok(
        &["sieve", "put", "alice@example.com", "rules", "-", "--activate"],
        b"require [\"fileinto\", \"mailbox\"];\nif header :contains \"subject\" \"list news\" { fileinto :create \"Lists\"; }\n",
    );
    // Bad settings are refused, with the reason.
    let big = vec![b'x'; 1 << 20];
    let refused = env.run(
        &["vacation", "set", "alice@example.com", "--body-file", "-"],
        &big,
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("at most"), "{}", refused.stderr);
    let spoof = env.run(
        &[
            "vacation",
            "set",
            "alice@example.com",
            "--body-file",
            "-",
            "--from",
            "ceo@example.com",
        ],
        b"away",
    );
    assert_eq!(spoof.code, 2, "{}", spoof.stderr);
    assert!(spoof.stderr.contains("may not send as"), "{}", spoof.stderr);
    let day = env.run(
        &[
            "vacation",
            "set",
            "alice@example.com",
            "--body-file",
            "-",
            "--until",
            "soon",
        ],
        b"away",
    );
    assert_eq!(day.code, 2, "{}", day.stderr);

    let said = env.ok(
        &[
            "vacation",
            "set",
            "alice@example.com",
            "--subject",
            "Away \"until\" Monday",
            "--body-file",
            "-",
            "--until",
            "2099-12-31",
        ],
        b"I am away until Monday.\n.A line with a dot.\n",
    );
    assert!(
        said.contains("away reply on for alice@example.com until 2099-12-31"),
        "{said}"
    );
    let shown = env.ok(&["vacation", "show", "alice@example.com"], b"");
    assert!(
        shown.contains("away reply on") && shown.contains("include :personal :optional \"rules\""),
        "{shown}"
    );
    let listed = env.ok(&["sieve", "list", "alice@example.com"], b"");
    assert!(
        listed.contains("stratus-vacation") && listed.contains("(active)"),
        "{listed}"
    );

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let out = crate::smtp::python(BOB_WRITES, &[listeners["submission"].as_str().unwrap()]);
    assert!(out.contains("sent"), "{out}");

    // Alice got all three (the list mail filed by her own script, which
    // still runs after the vacation).
    wait_for(&look, "alice@example.com", "INBOX", 2).await;
    wait_for(&look, "alice@example.com", "Lists", 1).await;
    // Bob got one reply: not a second in the period, none to list mail.
    let replies = wait_for(&look, "bob@example.com", "INBOX", 1).await;
    let raw = String::from_utf8_lossy(&look.full_message(&replies[0]).await).into_owned();
    for want in [
        "Return-Path: <>",
        "Auto-Submitted: auto-replied",
        "Subject: Away \"until\" Monday",
        "From: <alice@example.com>",
    ] {
        assert!(raw.contains(want), "{want} in {raw}");
    }
    // To whichever of Bob's two messages was routed first: the stages
    // may take them in either order.
    assert!(
        raw.contains("In-Reply-To: <lunch@example.com>")
            || raw.contains("In-Reply-To: <lunch.again@example.com>"),
        "{raw}"
    );
    assert!(
        raw.contains("I am away until Monday.\r\n.A line with a dot."),
        "{raw}"
    );
    // The same again: no second reply in the period. Each reply is
    // decided before the copy it answers is delivered, and writes the
    // sender's row (a new version each time), so once Alice has the new
    // copies, the row says whether another reply went out.
    let out = crate::smtp::python(BOB_WRITES, &[listeners["submission"].as_str().unwrap()]);
    assert!(out.contains("sent"), "{out}");
    wait_for(&look, "alice@example.com", "INBOX", 4).await;
    let rows = look
        .index
        .query(
            "vacation#alice@example.com",
            stratus_core::ports::SkRange::All,
            10,
            false,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one sender answered: {rows:?}");
    assert!(rows[0].key.sk.ends_with("#bob@example.com"), "{rows:?}");
    assert_eq!(rows[0].version, 1, "answered once");
    assert_eq!(entries(&look, "bob@example.com", "INBOX").await.len(), 1);

    // Off: the filters are active again, and the vacation script is gone.
    let off = env.ok(&["vacation", "off", "alice@example.com"], b"");
    assert!(off.contains("rules is active again"), "{off}");
    let listed = env.ok(&["sieve", "list", "alice@example.com"], b"");
    assert!(
        listed.contains("rules") && listed.contains("(active)"),
        "{listed}"
    );
    assert!(!listed.contains("stratus-vacation"), "{listed}");
    stop(child);
}

/// A domain's catch-all takes mail for addresses nobody has there, after
/// users, aliases and plus-addressing; `off` refuses it at RCPT again.
pub async fn catch_all_takes_unknown_addresses(env: &mut Env, look: Look) {
    add_users(env);
    env.ok(&["domain", "add", "other.example"], b"");
    // Bad targets and domains are refused, with the reason.
    let nobody = env.run(
        &["domain", "catch-all", "example.com", "nobody@example.com"],
        b"",
    );
    assert_eq!(nobody.code, 1, "{}", nobody.stderr);
    assert!(
        nobody.stderr.contains("neither a user nor an alias"),
        "{}",
        nobody.stderr
    );
    let remote = env.run(
        &[
            "domain",
            "catch-all",
            "example.com",
            "someone@remote.example",
        ],
        b"",
    );
    assert_eq!(remote.code, 1, "{}", remote.stderr);
    let unhosted = env.run(
        &[
            "domain",
            "catch-all",
            "nowhere.example",
            "alice@example.com",
        ],
        b"",
    );
    assert_eq!(unhosted.code, 1, "{}", unhosted.stderr);
    let said = env.ok(
        &["domain", "catch-all", "example.com", "alice@example.com"],
        b"",
    );
    assert_eq!(said, "catch-all of example.com: alice@example.com\n");

    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let smtp = listeners["smtp"].as_str().unwrap().to_string();
    let (mut c, _) = RawSmtp::connect(&smtp).await.unwrap();
    c.cmd("EHLO client.example").await.unwrap();
    // An exact user still gets their own mail; an unknown address goes
    // to the catch-all; another domain has none.
    for (to, subject) in [
        ("bob@example.com", "to bob"),
        ("whoever@example.com", "to whoever"),
        ("bob+tag@example.com", "to bob plus"),
    ] {
        let r = c
            .transaction("carol@remote.example", &[to], &message(subject, ""))
            .await
            .unwrap();
        assert!(r.starts_with("250"), "{to}: {r}");
    }
    c.cmd("MAIL FROM:<carol@remote.example>").await.unwrap();
    let r = c.cmd("RCPT TO:<whoever@other.example>").await.unwrap();
    assert!(r.starts_with("550 5.1.1"), "{r}");
    c.cmd("RSET").await.unwrap();
    let alice = wait_for(&look, "alice@example.com", "INBOX", 1).await;
    let raw = String::from_utf8_lossy(&look.full_message(&alice[0]).await).into_owned();
    assert!(raw.contains("Subject: to whoever"), "{raw}");
    wait_for(&look, "bob@example.com", "INBOX", 2).await;

    env.ok(&["domain", "catch-all", "example.com", "off"], b"");
    c.cmd("MAIL FROM:<carol@remote.example>").await.unwrap();
    let r = c.cmd("RCPT TO:<whoever@example.com>").await.unwrap();
    assert!(r.starts_with("550 5.1.1"), "{r}");
    c.cmd("RSET").await.unwrap();

    // An administrator's global script, which a user's script includes
    // with :global; :personal does not reach it.
    let said = env.ok(
        &["sieve", "global", "put", "house-rules", "-"],
        b"require [\"fileinto\", \"mailbox\"];\nif header :contains \"subject\" \"invoice\" { fileinto :create \"Invoices\"; }\n",
    );
    assert!(said.contains("stored global script house-rules"), "{said}");
    assert!(
        env.ok(&["sieve", "global", "list"], b"")
            .contains("house-rules"),
        "listed"
    );
    let bad = env.run(&["sieve", "global", "put", "bad", "-"], b"if true {");
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("line 1"), "{}", bad.stderr);
    env.ok(
        &["sieve", "put", "bob@example.com", "mine", "-", "--activate"],
        b"require \"include\";\ninclude :global \"house-rules\";\n",
    );
    assert!(
        env.ok(&["sieve", "list", "bob@example.com"], b"")
            .lines()
            .count()
            == 1,
        "the global script is not one of bob's"
    );
    let r = c
        .transaction(
            "carol@remote.example",
            &["bob@example.com"],
            &message("invoice 42", ""),
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    wait_for(&look, "bob@example.com", "Invoices", 1).await;
    // The same name, :personal: bob has no such script, so his script
    // fails and the message is kept in INBOX.
    env.ok(
        &["sieve", "put", "bob@example.com", "mine", "-"],
        b"require \"include\";\ninclude :personal \"house-rules\";\n",
    );
    let r = c
        .transaction(
            "carol@remote.example",
            &["bob@example.com"],
            &message("invoice 43", ""),
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    wait_for(&look, "bob@example.com", "INBOX", 3).await;
    assert_eq!(entries(&look, "bob@example.com", "Invoices").await.len(), 1);
    c.cmd("QUIT").await.unwrap();
    stop(child);
}
