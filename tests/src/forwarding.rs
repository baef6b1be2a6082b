//! Forwarding end to end: an alias, a user's forwarding and a Sieve
//! `redirect` send mail on to another server (a Python receiver standing
//! in for it) untouched, with an SRS envelope sender under our domain; a
//! bounce to that address comes back to the original sender; forged SRS
//! addresses are refused at RCPT; spam and loops are not forwarded; mail
//! that passed authentication here is sealed with ARC.

use std::time::Duration;

use stratus_auth::AuthResult;
use stratus_auth::fixture::sign_dkim;
use stratus_core::address::Address;

use crate::cli::{Env, stop};
use crate::outbound::python_server;
use crate::sieve::{entries, subjects, wait_for};
use crate::smtp::{Look, add_users};
use crate::spam::TEST_RULE;

/// A receiving SMTP server: prints its port, then appends each message
/// it accepts to the file in argv[1], after a `MAIL <sender>` and a
/// `RCPT <recipients>` line, ending with `=====`.
const RECEIVER: &str = r#"
import socket, sys, threading
out = sys.argv[1]
lock = threading.Lock()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(16)
print(srv.getsockname()[1], flush=True)
def serve(c):
    f = c.makefile("rb")
    def say(s): c.sendall(s.encode() + b"\r\n")
    say("220 receiver.example ESMTP")
    mail, rcpts = None, []
    while True:
        line = f.readline()
        if not line:
            break
        cmd = line.decode("utf-8", "replace").strip()
        up = cmd.upper()
        if up.startswith(("EHLO", "HELO")):
            say("250-receiver.example"); say("250-8BITMIME"); say("250-SMTPUTF8"); say("250 SIZE 100000000")
        elif up.startswith("MAIL FROM:"):
            mail, rcpts = cmd[10:].split()[0], []
            say("250 ok")
        elif up.startswith("RCPT TO:"):
            rcpts.append(cmd[8:].split()[0]); say("250 ok")
        elif up == "DATA":
            say("354 go on")
            body = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b""):
                    break
                body += l[1:] if l.startswith(b"..") else l
            with lock, open(out, "ab") as o:
                o.write(f"MAIL {mail}\nRCPT {' '.join(sorted(rcpts))}\n".encode() + body + b"=====\n")
            say("250 2.0.0 accepted")
        elif up == "RSET":
            mail, rcpts = None, []; say("250 ok")
        elif up == "QUIT":
            say("221 bye"); break
        else:
            say("502 5.5.1 not here")
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// dkimpy's ARC and DKIM verdicts on the message in argv[1], with the
/// TXT records in the JSON object argv[2] as the DNS.
const DKIMPY_ARC_VERIFY: &str = r#"
import dkim, json, sys
msg = open(sys.argv[1], "rb").read()
records = json.loads(sys.argv[2])
def txt(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    value = records.get(name.rstrip("."))
    return value.encode() if value else None
cv, results, reason = dkim.arc_verify(msg, dnsfunc=txt)
print(f"arc={cv.decode()} dkim={dkim.verify(msg, dnsfunc=txt)}", reason if cv != b"pass" else "")
"#;

/// Bob's script: a rejection for offers, too many redirects for one
/// subject (the script fails), a redirect with a copy for the rest.
const BOB_SCRIPT: &str = r#"require ["copy", "reject"];
if header :contains "subject" "offer" {
    reject "No offers, thanks.";
} elsif header :contains "subject" "many" {
    redirect "r1@elsewhere.example"; redirect "r2@elsewhere.example";
    redirect "r3@elsewhere.example"; redirect "r4@elsewhere.example";
    redirect "r5@elsewhere.example"; redirect "r6@elsewhere.example";
} else {
    redirect :copy "erin@elsewhere.example";
}
"#;

/// Alice submits an offer to Bob and Carol.
const ALICE_OFFERS: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=60) as s:
    s.starttls(context=ctx)
    s.login("alice@example.com", "alice password")
    s.sendmail("alice@example.com", ["bob@example.com", "carol@elsewhere.example"],
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: an offer from alice\r\nMessage-ID: <offer@example.com>\r\n\r\nbuy this\r\n")
print("sent")
"#;

fn message(subject: &str, to: &str, extra_header: &str) -> String {
    format!(
        "From: Xavier <x@outside.example>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{}.fwd@outside.example>\r\n{extra_header}\r\nThe text, as Xavier wrote it.\r\n",
        subject.replace(' ', "-")
    )
}

/// One message as the receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) mail: String,
    pub(crate) rcpt: String,
    pub(crate) text: String,
}

/// Starts [`RECEIVER`] as the MX of elsewhere.example and
/// outside.example; the process and the file it writes.
pub(crate) fn start_receiver(env: &mut Env) -> (std::process::Child, std::path::PathBuf) {
    let out = env.dir.path().join("receiver.mbox");
    let (receiver, port) = python_server(env, RECEIVER, &[out.as_os_str()]);
    env.set("STRATUS_OUTBOUND_SMTP_PORT", &port);
    for domain in ["elsewhere.example", "outside.example"] {
        env.dns.add_mx(domain, 10, &format!("mx.{domain}"));
        env.dns
            .add_a(&format!("mx.{domain}"), std::net::Ipv4Addr::LOCALHOST);
    }
    (receiver, out)
}

pub(crate) fn received(path: &std::path::Path) -> Vec<Received> {
    let all = std::fs::read_to_string(path).unwrap_or_default();
    all.split("=====\n")
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (mail, rest) = m.split_once('\n').unwrap();
            let (rcpt, text) = rest.split_once('\n').unwrap();
            Received {
                mail: mail.trim_start_matches("MAIL ").to_string(),
                rcpt: rcpt.trim_start_matches("RCPT ").to_string(),
                text: text.to_string(),
            }
        })
        .collect()
}

/// Waits (bounded) for the receiver's message to `rcpt` whose text
/// contains `needle`.
pub(crate) async fn wait_received(path: &std::path::Path, rcpt: &str, needle: &str) -> Received {
    crate::eventually(
        Duration::from_secs(60),
        &format!("a message for {rcpt} with `{needle}` at the receiver"),
        || async {
            received(path)
                .into_iter()
                .find(|r| r.rcpt.contains(rcpt) && r.text.contains(needle))
        },
    )
    .await
}

pub async fn forwards_with_srs(env: &mut Env, look: Look) {
    add_users(env);
    let rules = format!("{}\n{TEST_RULE}", stratus_filter::rules::SHIPPED);
    let path = env.data_dir().with_file_name("rules.toml");
    std::fs::write(&path, rules).unwrap();
    env.set("STRATUS_SPAM_RULES", &path.display().to_string());
    let (mut receiver, out) = start_receiver(env);

    // Forwarding is set up, and bad targets are refused with the reason.
    env.ok(
        &["alias", "add", "fwd@example.com", "carol@elsewhere.example"],
        b"",
    );
    for bad in [["alice@example.com"], ["nobody@example.com"]] {
        let run = env.run(
            &[&["user", "forward", "alice@example.com"][..], &bad[..]].concat(),
            b"",
        );
        assert_ne!(run.code, 0, "{bad:?}: {}", run.stdout);
    }
    assert_eq!(
        env.ok(&["user", "forward", "alice@example.com"], b""),
        "alice@example.com does not forward\n"
    );
    let said = env.ok(
        &[
            "user",
            "forward",
            "alice@example.com",
            "dan@elsewhere.example",
            "--keep",
        ],
        b"",
    );
    assert_eq!(
        said,
        "alice@example.com forwards to dan@elsewhere.example and keeps a copy\n"
    );
    env.ok(
        &[
            "sieve",
            "put",
            "bob@example.com",
            "redirects",
            "-",
            "--activate",
        ],
        BOB_SCRIPT.as_bytes(),
    );

    let said = env.ok(&["domain", "srs"], b"");
    assert_eq!(
        said,
        "SRS: bounces taken for 21 days; 1 secret (the first signs)\n"
    );
    // Alice is away too: her reply to a sender elsewhere leaves through
    // the send stage, DKIM-signed.
    env.ok(
        &[
            "vacation",
            "set",
            "alice@example.com",
            "--subject",
            "Away this week",
            "--body-file",
            "-",
        ],
        b"Back on Monday.\n",
    );
    let (child, listeners, mut c) = crate::spam::serve_and_greet(env).await;
    let plain = message("plain forward", "fwd@example.com", "");
    // Spam first: when everything after it has arrived, it had its turn.
    for (to, text) in [
        (
            "alice@example.com",
            message("junk-me spam", "alice@example.com", ""),
        ),
        ("fwd@example.com", plain.clone()),
        (
            "alice@example.com",
            message("for alice", "alice@example.com", ""),
        ),
        ("bob@example.com", message("for bob", "bob@example.com", "")),
        ("bob@example.com", message("many", "bob@example.com", "")),
        (
            "fwd@example.com",
            message(
                "looped",
                "fwd@example.com",
                "Delivered-To: fwd@example.com\r\n",
            ),
        ),
    ] {
        let r = c
            .transaction("x@outside.example", &[to], text.as_bytes())
            .await
            .unwrap();
        assert!(r.starts_with("250"), "{to}: {r}");
    }
    // Mail that passed SPF, DKIM and DMARC here is sealed with ARC when it
    // is forwarded: SPF fails for our address there, the seal says what
    // we saw.
    let key = crate::smtp::publish_signed_example(env);
    let published = crate::outbound::publish_dkim(env, &env.dns);
    let signed = sign_dkim(
        b"From: Yvonne <y@signed.example>\r\nTo: fwd@example.com\r\nSubject: sealed forward\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <sealed@signed.example>\r\n\r\nSigned by my domain.\r\n",
        "signed.example",
        "sel",
        &key,
    );
    let r = c
        .transaction("y@signed.example", &["fwd@example.com"], &signed)
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    // Bob's script rejects an offer for him alone at SMTP time, with its
    // reason. For Bob and Alice, it was accepted for Alice; Xavier's mail
    // passes no DMARC check, so a rejection to him could be backscatter:
    // Bob keeps it.
    let offer = message("offer from outside", "bob@example.com", "");
    c.cmd("MAIL FROM:<x@outside.example>").await.unwrap();
    c.cmd("RCPT TO:<bob@example.com>").await.unwrap();
    c.cmd("DATA").await.unwrap();
    c.send(format!("{offer}.\r\n").as_bytes()).await.unwrap();
    let r = c.reply().await.unwrap();
    assert_eq!(r.trim_end(), "550 5.7.1 No offers, thanks.");
    let r = c
        .transaction(
            "x@outside.example",
            &["bob@example.com", "alice@example.com"],
            offer.as_bytes(),
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");

    // The alias's forward: untouched, with an SRS sender of ours.
    let forward = wait_received(&out, "<carol@elsewhere.example>", "plain forward").await;
    assert!(
        forward.mail.starts_with("<SRS0=")
            && forward.mail.ends_with("=outside.example=x@example.com>"),
        "{forward:?}"
    );
    assert!(
        forward
            .text
            .starts_with("Delivered-To: fwd@example.com\r\n"),
        "{forward:?}"
    );
    assert!(
        forward.text.ends_with(&plain),
        "the original text is untouched: {forward:?}"
    );
    // Xavier's mail passed nothing here: no seal. Yvonne's is sealed by
    // example.com, and the seal verifies where SPF now fails.
    assert!(!forward.text.contains("ARC-Seal"), "{forward:?}");
    let sealed = wait_received(&out, "<carol@elsewhere.example>", "sealed forward").await;
    assert!(sealed.text.ends_with(std::str::from_utf8(&signed).unwrap()));
    let field = |name: &str| {
        let start = sealed.text.find(&format!("\r\n{name}: ")).map(|i| i + 2);
        let start = start.or(sealed.text.starts_with(name).then_some(0));
        let rest = &sealed.text[start.unwrap_or_else(|| panic!("{name} in {sealed:?}"))..];
        let end = rest.find("\r\n").map_or(rest.len(), |i| i);
        let mut value = rest[..end].to_string();
        for line in rest.get(end + 2..).unwrap_or("").split("\r\n") {
            if !line.starts_with([' ', '\t']) {
                break;
            }
            value.push_str(line);
        }
        value
    };
    let seal = field("ARC-Seal");
    for want in ["i=1", "a=rsa-sha256", "cv=none", "d=example.com"] {
        assert!(seal.contains(want), "{want} in {seal}");
    }
    let aar = field("ARC-Authentication-Results");
    for want in [
        "i=1;",
        "spf=pass",
        "dkim=pass",
        "header.d=signed.example",
        "dmarc=pass",
    ] {
        assert!(aar.contains(want), "{want} in {aar}");
    }
    let receiver_check = stratus_auth::Authenticator::new(Some(env.dns.addr())).unwrap();
    let srs_sender = Address::parse(sealed.mail.trim_matches(['<', '>'])).unwrap();
    let elsewhere: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let spf = receiver_check
        .check_mail_from(
            elsewhere,
            "mx.example.com",
            Some(&srs_sender),
            "mx.elsewhere.example",
        )
        .await;
    let outcome = receiver_check
        .check_message(
            sealed.text.as_bytes(),
            elsewhere,
            "mx.example.com",
            Some(&srs_sender),
            &spf,
            "mx.elsewhere.example",
        )
        .await;
    assert_eq!(outcome.arc, AuthResult::Pass, "{}", outcome.results);
    assert_eq!(outcome.dkim, AuthResult::Pass, "{}", outcome.results);
    // And by a verifier that is not ours (dkimpy, Debian's python3-dkim).
    let mut keys: std::collections::HashMap<String, String> = published
        .lines()
        .filter(|l| l.contains("._domainkey."))
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().trim_end_matches('.');
            (name.to_string(), l.split('"').skip(1).step_by(2).collect())
        })
        .collect();
    keys.insert("sel._domainkey.signed.example".into(), key.dns_record());
    let file = env.dir.path().join("sealed.eml");
    std::fs::write(&file, &sealed.text).unwrap();
    let said = std::process::Command::new("/usr/bin/python3")
        .args(["-c", DKIMPY_ARC_VERIFY])
        .arg(&file)
        .arg(serde_json::to_string(&keys).unwrap())
        .output()
        .expect("Debian's python3 with python3-dkim (tests/run.sh installs it)");
    let said =
        String::from_utf8_lossy(&said.stdout).into_owned() + &String::from_utf8_lossy(&said.stderr);
    assert_eq!(said.trim(), "arc=pass dkim=True", "{said}");
    // A user's forwarding, with a copy kept.
    let dan = wait_received(&out, "<dan@elsewhere.example>", "for alice").await;
    assert!(dan.mail.starts_with("<SRS0="), "{dan:?}");
    assert!(
        dan.text.starts_with("Delivered-To: alice@example.com\r\n"),
        "{dan:?}"
    );
    // Alice's away reply to Xavier: from the null sender, signed for
    // example.com.
    let away = wait_received(&out, "<x@outside.example>", "Subject: Away this week").await;
    assert_eq!(away.mail, "<>");
    for want in [
        "Auto-Submitted: auto-replied",
        "DKIM-Signature:",
        "d=example.com",
        "Back on Monday.",
    ] {
        assert!(away.text.contains(want), "{want} in {away:?}");
    }
    // A Sieve redirect with :copy; a script asking for more than four
    // redirects fails, and the message is kept instead.
    let erin = wait_received(&out, "<erin@elsewhere.example>", "for bob").await;
    assert!(erin.mail.starts_with("<SRS0="), "{erin:?}");
    assert!(
        erin.text.starts_with("Delivered-To: bob@example.com\r\n"),
        "{erin:?}"
    );
    // Alice (a local sender) gets Bob's rejection of her offer.
    let out_alice = crate::smtp::python(ALICE_OFFERS, &[listeners["submission"].as_str().unwrap()]);
    assert!(out_alice.contains("sent"), "{out_alice}");
    let inbox = wait_for(&look, "alice@example.com", "INBOX", 3).await;
    let mut texts = Vec::new();
    for entry in &inbox {
        texts.push(String::from_utf8_lossy(&look.full_message(entry).await).into_owned());
    }
    let mdn = texts
        .iter()
        .find(|t| t.contains("report-type=disposition-notification"))
        .unwrap_or_else(|| panic!("no rejection: {texts:?}"));
    for want in [
        "Disposition: automatic-action/MDN-sent-automatically; deleted",
        "No offers, thanks.",
        "Return-Path: <>",
        "Subject: an offer from alice",
    ] {
        assert!(mdn.contains(want), "{want} in {mdn}");
    }
    let bob = wait_for(&look, "bob@example.com", "INBOX", 3).await;
    assert_eq!(
        subjects(&look, &bob).await,
        [
            "Subject: for bob",
            "Subject: many",
            "Subject: offer from outside"
        ]
    );
    // The loop came back to the sender as a DSN.
    let dsn = wait_received(&out, "<x@outside.example>", "mail forwarding loop").await;
    assert_eq!(dsn.mail, "<>");
    assert!(
        !dsn.text.starts_with("Delivered-To"),
        "mail we make is not a forward: {dsn:?}"
    );
    assert!(dsn.text.contains("Status: 5.4.6"), "{dsn:?}");

    // A bounce to the SRS address goes back to the original sender.
    let srs = forward.mail.trim_start_matches('<').trim_end_matches('>');
    let bounce = "From: MAILER-DAEMON@elsewhere.example\r\nTo: x@outside.example\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\r\nThe mail for carol could not be delivered.\r\n";
    let r = c.transaction("", &[srs], bounce.as_bytes()).await.unwrap();
    assert!(r.starts_with("250"), "{r}");
    let back = wait_received(&out, "<x@outside.example>", "could not be delivered").await;
    assert_eq!(back.mail, "<>", "{back:?}");
    // Forged and altered SRS addresses are refused at RCPT.
    let (head, tail) = srs.split_at(5);
    let flipped = if tail.starts_with('A') { "B" } else { "A" };
    for forged in [
        format!("{head}{flipped}{}", &tail[1..]),
        srs.replace("=x@", "=mallory@"),
    ] {
        c.cmd("MAIL FROM:<>").await.unwrap();
        let r = c.cmd(&format!("RCPT TO:<{forged}>")).await.unwrap();
        assert!(r.starts_with("550 5.7.1"), "{forged}: {r}");
        c.cmd("RSET").await.unwrap();
    }
    // Only bounces: an SRS address relays nothing else.
    c.cmd("MAIL FROM:<spammer@outside.example>").await.unwrap();
    let r = c.cmd(&format!("RCPT TO:<{srs}>")).await.unwrap();
    assert!(r.starts_with("550 5.7.1"), "{r}");
    c.cmd("RSET").await.unwrap();
    // A new secret signs from now on; the old one still verifies.
    let said = env.ok(&["domain", "srs", "--rotate", "--max-age", "10"], b"");
    assert_eq!(
        said,
        "SRS: bounces taken for 10 days; 2 secrets (the first signs)\n"
    );
    c.cmd("MAIL FROM:<>").await.unwrap();
    let r = c.cmd(&format!("RCPT TO:<{srs}>")).await.unwrap();
    assert!(r.starts_with("250"), "{r}");
    c.cmd("RSET").await.unwrap();
    c.cmd("QUIT").await.unwrap();

    // Alice kept her copy; the spam went to her Junk and nowhere else.
    wait_for(&look, "alice@example.com", "INBOX", 3).await;
    wait_for(&look, "alice@example.com", "Junk", 1).await;
    let all = received(&out);
    assert!(
        !all.iter().any(|r| r.text.contains("junk-me")),
        "spam is not forwarded: {all:?}"
    );
    assert!(
        !all.iter()
            .any(|r| r.rcpt.contains("carol") && r.text.contains("looped")),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|r| r.text.contains("Subject: many")),
        "{all:?}"
    );
    assert_eq!(entries(&look, "bob@example.com", "INBOX").await.len(), 3);
    let _ = receiver.kill();
    let _ = receiver.wait();
    stop(child);
}
