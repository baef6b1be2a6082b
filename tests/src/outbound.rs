//! Submission and outbound delivery between two `stratus serve`
//! processes: gateway A hosts example.com, gateway B hosts
//! remote.example, and A's DNS fixture points remote.example's MX at B.
//! No test touches the internet.

use std::process::Command;
use std::time::Duration;

use crate::cli::{Env, stop, wait_for_listeners};
use crate::smtp::{Look, add_users, python};

const SUBMIT: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=60) as s:
    s.ehlo("client.example")
    assert not s.has_extn("auth"), "AUTH before TLS"
    s.starttls(context=ctx)
    s.ehlo("client.example")
    try:
        s.login("alice@example.com", "wrong"); print("wrong password accepted")
    except smtplib.SMTPAuthenticationError as e:
        print("wrong password", e.smtp_code)
    s.login("alice@example.com", "alice password")
    try:
        s.sendmail("bob@example.com", ["carol@remote.example"], "Subject: spoof\r\n\r\nx\r\n"); print("spoof accepted")
    except smtplib.SMTPSenderRefused as e:
        print("spoof", e.smtp_code)
    try:
        s.sendmail("alice@example.com", ["carol@remote.example"], "From: Bob <bob@example.com>\r\nSubject: header spoof\r\n\r\nx\r\n"); print("header spoof accepted")
    except smtplib.SMTPDataError as e:
        print("header spoof", e.smtp_code, e.smtp_error.decode())
    s.sendmail("alice@example.com", ["carol@remote.example"], "From: The CEO <ceo@example.com>\r\nSubject: as the ceo\r\n\r\ngranted\r\n")
    for rcpt, subject in [("carol@remote.example", "to carol"), ("nobody@remote.example", "to nobody"), ("someone@nullmx.example", "to null mx")]:
        s.sendmail("alice@example.com", [rcpt], f"From: alice@example.com\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nhello {rcpt}\r\n.dot line\r\n")
    print("submitted")
"#;

/// Mail from outside to A's MX, claiming example.com without passing its
/// DMARC check, to an alias of A that forwards to carol at B; then honest
/// mail from outside to the same alias.
const FORGE: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=60) as s:
    try:
        s.sendmail("x@outside.example", ["fwd@example.com"], "From: ceo@example.com\r\nSubject: forged\r\n\r\npay this invoice\r\n"); print("forged accepted")
    except smtplib.SMTPDataError as e:
        print("forged", e.smtp_code, e.smtp_error.decode())
    s.sendmail("x@outside.example", ["fwd@example.com"], "From: x@outside.example\r\nSubject: honest forward\r\n\r\nhi\r\n")
    print("sent")
"#;

/// alice submits over STARTTLS with AUTH; mail for carol reaches gateway B
/// through the MX the DNS fixture gives; mail for an unknown user at B and
/// for a null-MX domain comes back to alice as DSNs. alice may send only as
/// herself and the identity an admin granted her, and only her mail is
/// signed with example.com's keys: mail from outside forwarded by an alias
/// is not, and mail that forges example.com is not forwarded at all.
pub async fn submission_and_delivery_to_another_server(
    a: &mut Env,
    a_look: Look,
    b: &Env,
    b_look: Look,
) {
    add_users(a);
    // B sees example.com's DNS as `stratus domain dns` tells its operator
    // to publish it: the DKIM keys, SPF (for this loopback test: 127.0.0.1)
    // and DMARC.
    let records = publish_dkim(a, &b.dns);
    assert!(records.contains("_dmarc.example.com."), "{records}");
    b.dns.add_txt("example.com", "v=spf1 ip4:127.0.0.1 -all");
    b.dns.add_txt("_dmarc.example.com", "v=DMARC1; p=reject");
    b.ok(&["domain", "add", "remote.example"], b"");
    b.ok(
        &["user", "add", "carol@remote.example", "--password-stdin"],
        b"carol password\n",
    );
    let mut b_child = b.serve(&[]);
    let b_listeners = wait_for_listeners(&b.data_dir(), &mut b_child).await;
    let b_smtp: std::net::SocketAddr = b_listeners["smtp"].as_str().unwrap().parse().unwrap();
    a.dns.add_mx("remote.example", 10, "mx.remote.example");
    a.dns
        .add_a("mx.remote.example", std::net::Ipv4Addr::LOCALHOST);
    a.dns.add_mx("nullmx.example", 0, ".");
    // Gateway A's outbound port is B's MX listener.
    a.set("STRATUS_OUTBOUND_SMTP_PORT", &b_smtp.port().to_string());
    // A publishes a DMARC policy for example.com that asks for nothing
    // (p=none), so failing it refuses nothing by itself.
    a.dns.add_txt("_dmarc.example.com", "v=DMARC1; p=none");
    a.ok(
        &["alias", "add", "fwd@example.com", "carol@remote.example"],
        b"",
    );
    a.ok(
        &[
            "user",
            "identity",
            "add",
            "alice@example.com",
            "ceo@example.com",
        ],
        b"",
    );
    let mut a_child = a.serve(&[]);
    let a_listeners = wait_for_listeners(&a.data_dir(), &mut a_child).await;
    let out = python(SUBMIT, &[a_listeners["submission"].as_str().unwrap()]);
    assert!(out.contains("wrong password 535"), "{out}");
    assert!(out.contains("spoof 550"), "{out}");
    assert!(
        out.contains("header spoof 550 5.7.1 <bob@example.com>: you may not send as this address"),
        "{out}"
    );
    assert!(out.contains("submitted"), "{out}");
    let forge = python(FORGE, &[a_listeners["smtp"].as_str().unwrap()]);
    assert!(
        forge.contains(
            "forged 550 5.7.1 mail from example.com that fails its DMARC check is not forwarded"
        ),
        "{forge}"
    );
    assert!(forge.contains("sent"), "{forge}");

    let ceo = wait_for_message(&b_look, "carol@remote.example", "Subject: as the ceo").await;
    assert!(
        ceo.contains("dkim=pass header.d=example.com") && ceo.contains("dmarc=pass"),
        "an identity's mail is signed: {ceo}"
    );
    let forwarded =
        wait_for_message(&b_look, "carol@remote.example", "Subject: honest forward").await;
    assert!(
        !forwarded.contains("DKIM-Signature") && !forwarded.contains("header.d=example.com"),
        "mail from outside is forwarded unsigned: {forwarded}"
    );

    let carol = wait_for_message(&b_look, "carol@remote.example", "Subject: to carol").await;
    assert!(
        carol.contains("\r\n.dot line\r\n"),
        "dot-stuffing undone: {carol}"
    );
    assert!(
        carol.contains("Message-ID: <"),
        "submission added a Message-ID: {carol}"
    );
    assert!(
        carol.contains("by mx.test.example (Stratus) with ESMTPS"),
        "B received it over STARTTLS: {carol}"
    );
    for pass in [
        "dkim=pass header.d=example.com header.s=stratus-ed25519",
        "dkim=pass header.d=example.com header.s=stratus-rsa",
        "spf=pass",
        "dmarc=pass",
    ] {
        assert!(carol.contains(pass), "`{pass}` missing: {carol}");
    }

    let unknown = wait_for_message(&a_look, "alice@example.com", "nobody@remote.example").await;
    assert!(unknown.contains("Content-Type: multipart/report; report-type=delivery-status"));
    assert!(unknown.contains("Status: 5.1.1"), "{unknown}");
    assert!(unknown.contains("Auto-Submitted: auto-replied"));
    assert!(
        unknown.contains("Subject: to nobody"),
        "the original is attached"
    );
    let null_mx = wait_for_message(&a_look, "alice@example.com", "someone@nullmx.example").await;
    assert!(null_mx.contains("Status: 5.1.10"), "{null_mx}");
    let carols = b_look.inbox("carol@remote.example").await;
    let subjects = crate::sieve::subjects(&b_look, &carols).await;
    assert_eq!(
        subjects,
        [
            "Subject: as the ceo",
            "Subject: honest forward",
            "Subject: to carol"
        ],
        "each delivered once; nothing forged or refused arrived"
    );

    // A key rotation: the next keys sign only once published and
    // activated; the retired ones stay listed for the DNS.
    let rotated = a.ok(&["domain", "dkim", "rotate", "example.com"], b"");
    let selector = |algorithm: &str| {
        rotated
            .lines()
            .find_map(|l| {
                l.split_whitespace()
                    .next()
                    .filter(|s| s.starts_with(&format!("stratus-{algorithm}-")))
            })
            .unwrap_or_else(|| panic!("no new {algorithm} selector: {rotated}"))
            .to_string()
    };
    let (ed25519, rsa) = (selector("ed25519"), selector("rsa"));
    a.refuses(
        &["domain", "dkim", "rotate", "example.com"],
        1,
        "a rotation of example.com's keys is under way",
    );
    a.refuses(
        &["domain", "dkim", "activate", "example.com"],
        1,
        "not found in the DNS yet",
    );
    publish_dkim_lines(&rotated, &[&a.dns, &b.dns]);
    let active = a.ok(&["domain", "dkim", "activate", "example.com"], b"");
    assert!(
        active.contains(&format!("{ed25519}  ed25519  active"))
            && active.contains("stratus-rsa  rsa  retired since"),
        "{active}"
    );
    a.refuses(
        &["domain", "dkim", "drop", "example.com", "stratus-rsa"],
        1,
        "was retired less than 7 days ago",
    );
    a.refuses(
        &["domain", "dkim", "drop", "example.com", &rsa],
        1,
        "signs example.com's mail",
    );
    python(SEND_ONE, &[a_listeners["submission"].as_str().unwrap()]);
    let after = wait_for_message(
        &b_look,
        "carol@remote.example",
        "Subject: after the rotation",
    )
    .await;
    for pass in [
        format!("dkim=pass header.d=example.com header.s={ed25519}"),
        format!("dkim=pass header.d=example.com header.s={rsa}"),
    ] {
        assert!(after.contains(&pass), "`{pass}` missing: {after}");
    }
    let selectors: Vec<&str> = after
        .split("header.s=")
        .skip(1)
        .filter_map(|rest| rest.split([' ', ';', '\r', '\n']).next())
        .collect();
    assert!(
        !selectors.contains(&"stratus-rsa") && !selectors.contains(&"stratus-ed25519"),
        "the retired keys sign no more: {selectors:?}"
    );
    let dns = a.ok(&["domain", "dns", "example.com"], b"");
    assert!(
        dns.contains("stratus-rsa._domainkey.example.com.")
            && dns.contains(&format!("{rsa}._domainkey")),
        "retired and active keys are both to publish: {dns}"
    );
    stop(a_child);
    stop(b_child);
}

/// alice submits one message to carol, after the key rotation.
const SEND_ONE: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=60) as s:
    s.starttls(context=ctx)
    s.login("alice@example.com", "alice password")
    s.sendmail("alice@example.com", ["carol@remote.example"], "From: alice@example.com\r\nTo: carol@remote.example\r\nSubject: after the rotation\r\n\r\nsigned anew\r\n")
"#;

/// Publishes in `dns` the DKIM records `stratus domain dns example.com`
/// prints for `a`; all the records it printed.
pub(crate) fn publish_dkim(a: &Env, dns: &stratus_auth::fixture::DnsFixture) -> String {
    let records = a.ok(&["domain", "dns", "example.com"], b"");
    publish_dkim_lines(&records, &[dns]);
    records
}

/// Publishes in each of `dnss` the DKIM records among the zone file
/// lines of `text` (as `stratus domain dns` or `domain dkim` print them).
fn publish_dkim_lines(text: &str, dnss: &[&stratus_auth::fixture::DnsFixture]) {
    for line in text.lines().filter(|l| l.contains("._domainkey.")) {
        let name = line
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('.');
        let text: String = line.split('"').skip(1).step_by(2).collect();
        for dns in dnss {
            dns.add_txt(name, &text);
        }
    }
}

/// Waits (bounded) for a message whose text contains `needle` in `user`'s
/// INBOX as `look` sees it; its full text.
pub async fn wait_for_message(look: &Look, user: &str, needle: &str) -> String {
    crate::eventually(
        Duration::from_secs(60),
        &format!("a message with `{needle}` for {user}"),
        || async {
            for entry in look.inbox(user).await {
                let text = String::from_utf8_lossy(&look.full_message(&entry).await).into_owned();
                if text.contains(needle) {
                    return Some(text);
                }
            }
            None
        },
    )
    .await
}

/// A receiving SMTP server for failure cases, in Python, without 8BITMIME:
/// it prints its port, then answers the first connection's RCPT with 451
/// and accepts on the second, hanging up right after its 250 to DATA
/// (before QUIT). Each message it accepts is appended to the file in
/// argv[1]; each connection and each MAIL command adds a line to
/// argv[1].log.
const FLAKY: &str = r#"
import socket, sys
out = sys.argv[1]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(5)
print(srv.getsockname()[1], flush=True)
n = 0
while True:
    c, _ = srv.accept(); n += 1
    open(out + ".log", "a").write(f"connection {n}\n")
    f = c.makefile("rb")
    def say(s): c.sendall(s.encode() + b"\r\n")
    say("220 flaky.example ESMTP")
    data = None
    while True:
        line = f.readline()
        if not line:
            break
        cmd = line.decode().strip().upper()
        if cmd.startswith("EHLO"):
            say("250-flaky.example"); say("250 SIZE 100000000")
        elif cmd.startswith("MAIL"):
            open(out + ".log", "a").write(cmd + "\n")
            say("250 ok")
        elif cmd.startswith("RCPT"):
            say("451 4.3.0 try again later" if n == 1 else "250 ok")
        elif cmd == "DATA":
            say("354 go on")
            body = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b""):
                    break
                body += l
            open(out, "ab").write(body + b"=====\n")
            say("250 2.0.0 accepted")
            break  # hang up without waiting for QUIT
        elif cmd == "QUIT":
            say("221 bye"); break
        else:
            say("500 what")
    c.close()
"#;

const SEND_TWO: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port)) as s:
    s.starttls(context=ctx); s.login("alice@example.com", "alice password")
    flaky = ("From: alice@example.com\r\nSubject: flaky Grüße\r\n\r\nonce, schöne Grüße\r\n"
             + "x" * 2000 + "\r\n").encode()
    s.sendmail("alice@example.com", ["bob@flaky.example"], flaky, mail_options=["BODY=8BITMIME"])
    s.sendmail("alice@example.com", ["carol@down.example"], "Subject: down\r\n\r\nnever\r\n")
"#;

/// A 4xx is retried and then delivered, once, even though the receiving
/// server hangs up right after its 250; an unreachable MX is retried until
/// the (short) lifetime ends, with a "delayed" DSN on the way and a
/// "failed" one at the end. The receiver has
/// no 8BITMIME, so the 8-bit message reaches it in 7 bits, its 2,000-octet
/// line re-encoded, with DKIM signatures that verify.
pub async fn retries_then_delivery_or_expiry(a: &mut Env, a_look: Look) {
    add_users(a);
    publish_dkim(a, &a.dns);
    let out = a.dir.path().join("flaky.mbox");
    let (mut flaky, port) = python_server(a, FLAKY, &[out.as_os_str()]);
    a.dns.add_mx("flaky.example", 10, "mx.flaky.example");
    a.dns
        .add_a("mx.flaky.example", std::net::Ipv4Addr::LOCALHOST);
    // Nothing listens on 127.0.0.2 at that port: connections are refused.
    a.dns.add_mx("down.example", 10, "mx.down.example");
    a.dns
        .add_a("mx.down.example", std::net::Ipv4Addr::new(127, 0, 0, 2));
    a.set("STRATUS_OUTBOUND_SMTP_PORT", &port);
    a.set("STRATUS_SEND_FIRST_RETRY", "1");
    // Attempts at 0, 1, 6 and 21 s: the third, past the warning time,
    // sends a "delayed" DSN; the fourth gives up (the next would be late).
    a.set("STRATUS_SEND_LIFETIME", "25s");
    a.set("STRATUS_SEND_DELAY_WARNING", "2s");
    let mut child = a.serve(&[]);
    let listeners = wait_for_listeners(&a.data_dir(), &mut child).await;
    python(SEND_TWO, &[listeners["submission"].as_str().unwrap()]);
    let delayed = wait_for_message(&a_look, "alice@example.com", "Action: delayed").await;
    assert!(
        delayed.contains("Final-Recipient: rfc822;carol@down.example"),
        "{delayed}"
    );
    assert!(delayed.contains("Will-Retry-Until: "), "{delayed}");
    assert!(delayed.contains("Subject: Delayed Mail"), "{delayed}");
    let dsn = wait_for_message(&a_look, "alice@example.com", "Action: failed").await;
    assert!(
        dsn.contains("Final-Recipient: rfc822;carol@down.example"),
        "{dsn}"
    );
    assert!(dsn.contains("gave up after"), "{dsn}");
    let delivered = crate::eventually(
        Duration::from_secs(30),
        "the flaky server's copy",
        || async {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.contains("=====").then_some(text)
        },
    )
    .await;
    let log = std::fs::read_to_string(format!("{}.log", out.display())).unwrap();
    assert_eq!(
        delivered.matches("=====").count(),
        1,
        "delivered once: {delivered}"
    );
    let connections = log.lines().filter(|l| l.starts_with("connection")).count();
    assert_eq!(connections, 2, "a 4xx, then one delivery: {log}");
    assert!(!log.contains("BODY=8BITMIME"), "{log}");

    let message = delivered.split("=====").next().unwrap();
    assert!(message.is_ascii(), "converted to 7 bits: {message}");
    assert!(
        message.lines().all(|l| l.len() <= 998),
        "no line over 998 octets"
    );
    assert!(message.contains("Content-Transfer-Encoding: quoted-printable"));
    assert!(message.contains("Subject: =?utf-8?b?"), "{message}");
    let dkim = stratus_auth::Authenticator::new(Some(a.dns.addr()))
        .unwrap()
        .check_message(
            message.as_bytes(),
            std::net::Ipv4Addr::LOCALHOST.into(),
            "a.example",
            None,
            &stratus_auth::SpfResult {
                result: stratus_auth::AuthResult::None,
                identity: stratus_auth::SpfIdentity::MailFrom,
                domain: "example.com".into(),
            },
            "flaky.example",
        )
        .await;
    for selector in ["stratus-ed25519", "stratus-rsa"] {
        let pass = format!("dkim=pass header.d=example.com header.s={selector}");
        assert!(dkim.results.contains(&pass), "{}", dkim.results);
    }
    let _ = flaky.kill();
    let _ = flaky.wait();
    stop(child);
}

/// swaks and neomutt submit as a user would: swaks with AUTH PLAIN over
/// STARTTLS on the submission port and AUTH LOGIN over implicit TLS on the
/// submissions port, refused for a wrong password and for a sender alice
/// does not own; neomutt sends through the submission port (STARTTLS,
/// AUTH, the gateway's certificate trusted as a user would trust it).
pub async fn swaks_and_neomutt_submit(env: &Env, look: Look) {
    add_users(env);
    let mut child = env.serve(&[]);
    let listeners = wait_for_listeners(&env.data_dir(), &mut child).await;
    let submission = listeners["submission"].as_str().unwrap().to_string();
    let submissions = listeners["submissions"].as_str().unwrap().to_string();
    let swaks = |server: &str, tls: &str, auth: &str, password: &str, from: &str, subject: &str| {
        let out = Command::new("swaks")
            .args(["--server", server, tls, "--auth", auth])
            .args([
                "--auth-user",
                "alice@example.com",
                "--auth-password",
                password,
            ])
            .args(["--from", from, "--to", "bob@example.com"])
            .args(["--header", &format!("Subject: {subject}")])
            .args(["--body", "submitted with swaks", "--ehlo", "client.example"])
            .output()
            .expect("swaks (apt-get install swaks)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, transcript) = swaks(
        &submission,
        "--tls",
        "PLAIN",
        "alice password",
        "alice@example.com",
        "swaks plain",
    );
    assert!(ok, "{transcript}");
    assert!(transcript.contains("235 2.7.0"), "{transcript}");
    assert!(
        transcript.contains("250 2.0.0 Ok: queued as"),
        "{transcript}"
    );
    let (ok, transcript) = swaks(
        &submissions,
        "--tlsc",
        "LOGIN",
        "alice password",
        "alice@example.com",
        "swaks login",
    );
    assert!(ok, "{transcript}");
    assert!(
        transcript.contains("334 "),
        "AUTH LOGIN challenges: {transcript}"
    );
    let (ok, transcript) = swaks(
        &submission,
        "--tls",
        "PLAIN",
        "wrong",
        "alice@example.com",
        "never",
    );
    assert!(!ok, "{transcript}");
    assert!(transcript.contains("535 5.7.8"), "{transcript}");
    let (ok, transcript) = swaks(
        &submission,
        "--tls",
        "PLAIN",
        "alice password",
        "bob@example.com",
        "spoofed",
    );
    assert!(!ok, "{transcript}");
    assert!(transcript.contains("550 5.7.1"), "{transcript}");

    // neomutt in batch mode: it sends and exits 0 only if the server took it.
    let dir = env.dir.path();
    let rc = dir.join("muttrc-send");
    std::fs::write(
        &rc,
        format!(
            "set smtp_url = \"smtp://alice%40example.com@{submission}/\"\nset smtp_pass = \"alice password\"\n\
             set ssl_starttls = yes\nset ssl_force_tls = yes\n\
             set certificate_file = \"{}\"\nset ssl_verify_host = no\n\
             set from = \"alice@example.com\"\nset copy = no\nset header_cache = \"\"\n",
            env.data_dir().join("tls/cert.pem").display()
        ),
    )
    .unwrap();
    let mut neomutt = Command::new("neomutt")
        .args(["-n", "-F"])
        .arg(&rc)
        .args(["-s", "from neomutt", "--", "bob@example.com"])
        .env("HOME", dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("neomutt (apt-get install neomutt)");
    {
        use std::io::Write;
        let mut stdin = neomutt.stdin.take().unwrap();
        stdin.write_all(b"hello bob, from neomutt\n").unwrap();
    }
    let out = neomutt.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "neomutt: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for subject in ["swaks plain", "swaks login", "from neomutt"] {
        let text = wait_for_message(&look, "bob@example.com", &format!("Subject: {subject}")).await;
        assert!(
            text.lines()
                .any(|l| l.starts_with("From: ") && l.contains("alice@example.com")),
            "{text}"
        );
        assert!(
            text.contains("with ESMTPSA"),
            "authenticated over TLS: {text}"
        );
    }
    let inbox = look.inbox("bob@example.com").await;
    assert_eq!(inbox.len(), 3, "nothing refused got through");
    stop(child);
}

/// An HTTPS server for MTA-STS policies and TLS reports: argv[1] and
/// argv[2] are its certificate and key; it prints its port, then serves one
/// enforce policy per `mta-sts.` host, listing the MX patterns below, and
/// writes the body of each POST to argv[3] (its Content-Type to
/// argv[3].type).
const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
MX = {
    "mta-sts.remote.example": "mx.remote.example",
    "mta-sts.strict.example": "mail.strict.example",
    "mta-sts.badcert.example": "mx.badcert.example",
}
class Policy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        if self.path != "/.well-known/mta-sts.txt" or host not in MX:
            self.send_response(404); self.end_headers(); return
        body = f"version: STSv1\r\nmode: enforce\r\nmx: {MX[host]}\r\nmax_age: 86400\r\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        open(sys.argv[3], "wb").write(body)
        open(sys.argv[3] + ".type", "w").write(self.headers.get("Content-Type") or "")
        self.send_response(201); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Policy)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

const SUBMIT_THREE: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=60) as s:
    s.starttls(context=ctx); s.login("alice@example.com", "alice password")
    for rcpt in ["carol@remote.example", "dave@strict.example", "erin@badcert.example"]:
        s.sendmail("alice@example.com", [rcpt], f"From: alice@example.com\r\nSubject: sts to {rcpt}\r\n\r\nhello\r\n")
    for rcpt in ["carol@remote.example", "frank@nopolicy.example"]:
        s.sendmail("alice@example.com", [rcpt], f"From: alice@example.com\r\nSubject: requiretls to {rcpt}\r\n\r\nhello\r\n", mail_options=["REQUIRETLS"])
    s.sendmail("alice@example.com", ["erin@badcert.example"], "From: alice@example.com\r\nTLS-Required: No\r\nSubject: tls optional\r\n\r\nhello\r\n")
    print("submitted")
"#;

/// Starts a Python server (`script` with `args`) that prints its port
/// first; the process and that port. It is killed with `env`, should the
/// test fail.
pub(crate) fn python_server(
    env: &Env,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.servers.lock().unwrap().push(child.id());
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

/// A test CA and a certificate it signed.
struct TestPki {
    ca_pem: String,
    leaf_pem: String,
    key_pem: String,
    /// The CA certificate, DER.
    ca_der: Vec<u8>,
    /// The leaf's public key (SubjectPublicKeyInfo, DER).
    leaf_spki: Vec<u8>,
}

/// A test CA, and a certificate it signed for `names`.
fn test_pki(names: &[&str]) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Stratus test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        ca_der: ca_cert.der().to_vec(),
        leaf_spki: leaf_key.subject_public_key_info(),
    }
}

/// Gateway A sends to three domains that publish MTA-STS policies in
/// `enforce` mode, all served by gateway B: remote.example lists B's MX
/// name and B's certificate (from a CA A trusts through
/// STRATUS_TLS_EXTRA_CA) is valid for it, so mail is delivered over
/// verified TLS; strict.example's policy does not list the MX its DNS
/// gives, and badcert.example's MX name is not in B's certificate, so
/// neither is ever handed to B: they are retried and then bounced to the
/// sender (5.7.5, from the 451 4.7.5 of each attempt). REQUIRETLS mail
/// goes where a policy lets TLS be verified and bounces where none does;
/// `TLS-Required: No` sets a policy aside.
pub async fn mta_sts_is_enforced(a: &mut Env, a_look: Look, b: &mut Env, b_look: Look) {
    add_users(a);
    let pki = test_pki(&[
        "mx.remote.example",
        "mta-sts.remote.example",
        "mta-sts.strict.example",
        "mta-sts.badcert.example",
    ]);
    let dir = a.dir.path().to_path_buf();
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, pki.ca_pem).unwrap();
    std::fs::write(&cert_file, pki.leaf_pem).unwrap();
    std::fs::write(&key_file, pki.key_pem).unwrap();

    let users = [
        "carol@remote.example",
        "dave@strict.example",
        "erin@badcert.example",
        "frank@nopolicy.example",
    ]
    .map(String::from);
    let (b_child, b_smtp) = serve_receiver(b, &users, &cert_file, &key_file).await;

    let (mut policies, policy_port) = python_server(
        a,
        HTTPS_SERVER,
        &[cert_file.as_os_str(), key_file.as_os_str()],
    );
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    for domain in ["remote.example", "strict.example", "badcert.example"] {
        a.dns
            .add_txt(&format!("_mta-sts.{domain}"), "v=STSv1; id=2026120601;");
        a.dns.add_a(&format!("mta-sts.{domain}"), localhost);
    }
    a.dns.add_mx("remote.example", 10, "mx.remote.example");
    a.dns.add_a("mx.remote.example", localhost);
    // strict.example's MX is B too, but its policy lists another name.
    a.dns.add_mx("strict.example", 10, "mx.remote.example");
    a.dns.add_mx("badcert.example", 10, "mx.badcert.example");
    // No MTA-STS policy: fine for mail, not for REQUIRETLS mail.
    a.dns.add_mx("nopolicy.example", 10, "mx.remote.example");
    a.dns.add_a("mx.badcert.example", localhost);
    a.set("STRATUS_MTA_STS_PORT", &policy_port);
    a.set("STRATUS_TLS_EXTRA_CA", ca_file.to_str().unwrap());
    let (a_child, submission) = serve_sender(a, b_smtp).await;
    let out = python(SUBMIT_THREE, &[&submission]);
    assert!(out.contains("submitted"), "{out}");

    let carol = wait_for_message(&b_look, "carol@remote.example", "Subject: sts to carol").await;
    assert!(carol.contains("with ESMTPS"), "over TLS: {carol}");
    let strict = wait_for_message(&a_look, "alice@example.com", "dave@strict.example").await;
    assert!(strict.contains("Status: 5.7.5"), "{strict}");
    assert!(
        strict.contains("MX mx.remote.example is not in the MTA-STS policy of strict.example"),
        "{strict}"
    );
    let badcert = wait_for_message(&a_look, "alice@example.com", "erin@badcert.example").await;
    assert!(badcert.contains("Status: 5.7.5"), "{badcert}");
    assert!(badcert.contains("TLS handshake failed"), "{badcert}");
    assert!(b_look.inbox("dave@strict.example").await.is_empty());

    // REQUIRETLS: delivered where a policy lets TLS be verified and the
    // receiver offers REQUIRETLS (B does, inside TLS); bounced at once
    // where there is no policy.
    wait_for_message(
        &b_look,
        "carol@remote.example",
        "Subject: requiretls to carol",
    )
    .await;
    let nopolicy = wait_for_message(&a_look, "alice@example.com", "frank@nopolicy.example").await;
    assert!(nopolicy.contains("Status: 5.7.10"), "{nopolicy}");
    assert!(b_look.inbox("frank@nopolicy.example").await.is_empty());
    // TLS-Required: No sets badcert.example's policy aside.
    let optional = wait_for_message(&b_look, "erin@badcert.example", "Subject: tls optional").await;
    assert!(optional.contains("TLS-Required: No"), "{optional}");
    assert_eq!(
        b_look.inbox("erin@badcert.example").await.len(),
        1,
        "only the message that set the policy aside"
    );
    stop(a_child);
    stop(b_child);
    let _ = policies.kill();
    let _ = policies.wait();
}

/// Gateway B for the transport-security tests: each of `users` (with the
/// password "a long passphrase") in a domain of its own, the certificate chain and
/// key in `cert` and `key`; the running process and its SMTP address.
async fn serve_receiver(
    b: &mut Env,
    users: &[String],
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (std::process::Child, std::net::SocketAddr) {
    for user in users {
        let domain = user.split_once('@').map(|(_, d)| d).unwrap();
        b.ok(&["domain", "add", domain], b"");
        b.ok(
            &["user", "add", user, "--password-stdin"],
            b"a long passphrase\n",
        );
    }
    b.set("STRATUS_TLS_CERT", cert.to_str().unwrap());
    b.set("STRATUS_TLS_KEY", key.to_str().unwrap());
    let mut child = b.serve(&[]);
    let listeners = wait_for_listeners(&b.data_dir(), &mut child).await;
    let smtp = listeners["smtp"].as_str().unwrap().parse().unwrap();
    (child, smtp)
}

/// Gateway A, the sender, delivering to `receiver` (gateway B) with quick
/// retries and a ten-second lifetime; the process and its submission
/// address.
async fn serve_sender(
    a: &mut Env,
    receiver: std::net::SocketAddr,
) -> (std::process::Child, String) {
    a.set("STRATUS_OUTBOUND_SMTP_PORT", &receiver.port().to_string());
    a.set("STRATUS_SEND_FIRST_RETRY", "1");
    a.set("STRATUS_SEND_LIFETIME", "10s");
    let mut child = a.serve(&[]);
    let listeners = wait_for_listeners(&a.data_dir(), &mut child).await;
    let submission = listeners["submission"].as_str().unwrap().to_string();
    (child, submission)
}

/// Submits as alice to A's submission listener (argv[1]) one message per
/// line of argv[2]: `recipient|subject|REQUIRETLS or -|extra header or -`.
const SUBMIT_LIST: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port), timeout=60) as s:
    s.starttls(context=ctx); s.login("alice@example.com", "alice password")
    for line in sys.argv[2].splitlines():
        rcpt, subject, opt, header = line.split("|")
        extra = "" if header == "-" else header + "\r\n"
        options = [] if opt == "-" else [opt]
        s.sendmail("alice@example.com", [rcpt], f"From: alice@example.com\r\n{extra}Subject: {subject}\r\n\r\nhello\r\n", mail_options=options)
    print("submitted")
"#;

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Gateway A sends to domains whose MX records, addresses and TLSA records
/// its resolver (the DNS fixture, as a validating resolver) calls
/// DNSSEC-secure or not; all are served by gateway B, whose certificate A
/// does not trust by the web PKI (no STRATUS_TLS_EXTRA_CA). DANE-EE and
/// DANE-TA records that match get the mail through over TLS; a record that
/// does not match, or a TLSA lookup that fails validation, keeps it from B
/// until it bounces (5.7.5); the same records unsigned change nothing; a
/// secure set of only unusable records asks for TLS without
/// authentication. REQUIRETLS mail goes where DANE verifies the server and
/// bounces where the MX is unsigned and there is no MTA-STS; `TLS-Required:
/// No` sets DANE aside.
pub async fn dane_is_enforced(a: &mut Env, a_look: Look, b: &mut Env, b_look: Look) {
    add_users(a);
    let hosts = [
        "mx.ee.example",
        "mx.ta.example",
        "mx.wrongkey.example",
        "mx.bogus.example",
        "mx.unsigned.example",
        "mx.unusable.example",
    ];
    let pki = test_pki(&["mx.ta.example", "reports.example"]);
    let dir = b.dir.path().to_path_buf();
    let (cert_file, key_file) = (dir.join("chain.pem"), dir.join("key.pem"));
    // The chain B sends ends with the CA, as DANE-TA asks (RFC 7671 §5.2.2).
    std::fs::write(&cert_file, format!("{}{}", pki.leaf_pem, pki.ca_pem)).unwrap();
    std::fs::write(&key_file, &pki.key_pem).unwrap();
    let domains = ["ee", "ta", "wrongkey", "bogus", "unsigned", "unusable"];
    for name in domains {
        let domain = format!("{name}.example");
        a.dns.add_mx(&domain, 10, &format!("mx.{domain}"));
        a.dns
            .add_a(&format!("mx.{domain}"), std::net::Ipv4Addr::LOCALHOST);
        if name != "unsigned" {
            a.dns.set_secure(&domain);
            a.dns.set_secure(&format!("mx.{domain}"));
            a.dns.set_secure(&format!("_25._tcp.mx.{domain}"));
        }
    }
    let tlsa = |host: &str| format!("_25._tcp.{host}");
    a.dns
        .add_tlsa(&tlsa(hosts[0]), 3, 1, 1, &sha256(&pki.leaf_spki));
    a.dns
        .add_tlsa(&tlsa(hosts[1]), 2, 0, 1, &sha256(&pki.ca_der));
    a.dns.add_tlsa(&tlsa(hosts[2]), 3, 1, 1, &[0x5a; 32]);
    a.dns
        .add_tlsa(&tlsa(hosts[3]), 3, 1, 1, &sha256(&pki.leaf_spki));
    a.dns.set_bogus(&tlsa(hosts[3]));
    a.dns.add_tlsa(&tlsa(hosts[4]), 3, 1, 1, &[0x5a; 32]);
    // PKIX-EE (1) is not for SMTP: unusable.
    a.dns
        .add_tlsa(&tlsa(hosts[5]), 1, 1, 1, &sha256(&pki.leaf_spki));

    let users: Vec<String> = domains.iter().map(|d| format!("u@{d}.example")).collect();
    let (b_child, b_smtp) = serve_receiver(b, &users, &cert_file, &key_file).await;
    let (a_child, submission) = serve_sender(a, b_smtp).await;
    let mut list: Vec<String> = domains
        .iter()
        .map(|d| format!("u@{d}.example|dane to {d}|-|-"))
        .collect();
    list.push("u@ee.example|requiretls to ee|REQUIRETLS|-".into());
    list.push("u@unsigned.example|requiretls to unsigned|REQUIRETLS|-".into());
    list.push("u@wrongkey.example|tls optional|-|TLS-Required: No".into());
    let out = python(SUBMIT_LIST, &[&submission, &list.join("\n")]);
    assert!(out.contains("submitted"), "{out}");

    for d in ["ee", "ta", "unusable", "unsigned"] {
        let got = wait_for_message(
            &b_look,
            &format!("u@{d}.example"),
            &format!("Subject: dane to {d}"),
        )
        .await;
        if d != "unsigned" {
            assert!(got.contains("with ESMTPS"), "over TLS: {got}");
        }
    }
    let wrongkey = wait_for_message(&a_look, "alice@example.com", "u@wrongkey.example").await;
    assert!(wrongkey.contains("Status: 5.7.5"), "{wrongkey}");
    assert!(
        wrongkey.contains("invalid peer certificate: no TLSA record matches the certificate chain"),
        "{wrongkey}"
    );
    assert!(
        wrongkey.contains("DANE for wrongkey.example allows no other way"),
        "{wrongkey}"
    );
    let bogus = wait_for_message(&a_look, "alice@example.com", "u@bogus.example").await;
    assert!(bogus.contains("Status: 5.7.5"), "{bogus}");
    assert!(
        bogus.contains("cannot look up _25._tcp.mx.bogus.example"),
        "{bogus}"
    );
    assert!(b_look.inbox("u@bogus.example").await.is_empty());

    wait_for_message(&b_look, "u@ee.example", "Subject: requiretls to ee").await;
    let unsigned = wait_for_message(
        &a_look,
        "alice@example.com",
        "Subject: requiretls to unsigned",
    )
    .await;
    assert!(unsigned.contains("Status: 5.7.10"), "{unsigned}");
    let optional = wait_for_message(&b_look, "u@wrongkey.example", "Subject: tls optional").await;
    assert!(optional.contains("TLS-Required: No"), "{optional}");
    assert_eq!(
        b_look.inbox("u@wrongkey.example").await.len(),
        1,
        "only the message that set DANE aside"
    );
    assert_eq!(b_look.inbox("u@unsigned.example").await.len(), 1);

    // TLS reports (RFC 8460): A counted every session; wrongkey.example
    // asks for reports by mail (to a mailbox B hosts), ee.example does not.
    a.dns.add_txt(
        "_smtp._tls.wrongkey.example",
        "v=TLSRPTv1; rua=mailto:u@ee.example",
    );
    let shown = a.ok(&["tlsrpt", "show"], b"");
    assert!(
        shown.contains("ee.example tlsa (1 record): 2 ok, 0 failed"),
        "{shown}"
    );
    assert!(
        shown.contains("validation-failure at mx.wrongkey.example (127.0.0.1)"),
        "{shown}"
    );
    assert!(
        shown.contains("dnssec-invalid at mx.bogus.example (no session)"),
        "{shown}"
    );
    assert!(
        shown.contains("unusable.example tlsa (1 record): 0 ok, 1 failed"),
        "{shown}"
    );
    assert!(shown.contains("tlsa-invalid"), "{shown}");
    // ta.example takes its reports by HTTPS POST.
    let posted = dir.join("posted.gz");
    let (ca_file, report_key) = (dir.join("ca.pem"), dir.join("reports-key.pem"));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    std::fs::write(&report_key, &pki.key_pem).unwrap();
    let (mut reports, reports_port) = python_server(
        a,
        HTTPS_SERVER,
        &[
            cert_file.as_os_str(),
            report_key.as_os_str(),
            posted.as_os_str(),
        ],
    );
    a.dns
        .add_a("reports.example", std::net::Ipv4Addr::LOCALHOST);
    a.dns.add_txt(
        "_smtp._tls.ta.example",
        &format!("v=TLSRPTv1; rua=https://reports.example:{reports_port}/tls"),
    );
    a.set("STRATUS_TLS_EXTRA_CA", ca_file.to_str().unwrap());
    let due = a.ok(&["tlsrpt", "send"], b"");
    assert!(
        due.contains("no TLS report is due"),
        "today is not over: {due}"
    );
    let today = stratus_core::tlsrpt::day_of(stratus_core::mailstore::now());
    let sent = a.ok(&["tlsrpt", "send", "--day", &today], b"");
    assert!(
        sent.contains(&format!(
            "queued the report on {today} for wrongkey.example to u@ee.example"
        )),
        "{sent}"
    );
    assert!(
        sent.contains("no report on")
            && sent.contains("ee.example: publishes no _smtp._tls record"),
        "{sent}"
    );
    assert!(
        sent.contains(&format!(
            "queued the report on {today} for ta.example to https://reports.example:{reports_port}/tls"
        )),
        "{sent}"
    );
    let gz = std::fs::read(&posted).expect("the report was posted");
    assert_eq!(
        std::fs::read_to_string(dir.join("posted.gz.type")).unwrap(),
        "application/tlsrpt+gzip"
    );
    let json = gunzip_json(&gz);
    assert_eq!(json["policies"][0]["policy"]["policy-domain"], "ta.example");
    assert_eq!(json["policies"][0]["policy"]["policy-type"], "tlsa");
    assert_eq!(
        json["policies"][0]["summary"]["total-successful-session-count"],
        1
    );
    let _ = reports.kill();
    let _ = reports.wait();
    let report = wait_for_message(&b_look, "u@ee.example", "Report Domain: wrongkey.example").await;
    assert!(report.contains("TLS-Report-Submitter: "), "{report}");
    let json = tls_report_json(&report);
    assert_eq!(
        json["date-range"]["start-datetime"],
        format!("{today}T00:00:00Z")
    );
    let policies = json["policies"].as_array().unwrap();
    let tlsa = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "tlsa")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(tlsa["policy"]["policy-domain"], "wrongkey.example");
    assert_eq!(tlsa["policy"]["mx-host"][0], "mx.wrongkey.example");
    assert_eq!(
        tlsa["policy"]["policy-string"][0],
        format!("3 1 1 {}", "5a".repeat(32))
    );
    assert_eq!(tlsa["summary"]["total-successful-session-count"], 0);
    let failures = tlsa["summary"]["total-failure-session-count"]
        .as_u64()
        .unwrap();
    assert!(failures >= 2, "every attempt until the bounce: {json}");
    let detail = &tlsa["failure-details"][0];
    assert_eq!(detail["result-type"], "validation-failure");
    assert_eq!(detail["receiving-ip"], "127.0.0.1");
    assert_eq!(detail["failed-session-count"].as_u64(), Some(failures));
    // The message that said TLS-Required: No went without DANE.
    let none = policies
        .iter()
        .find(|p| p["policy"]["policy-type"] == "no-policy-found")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(none["summary"]["total-successful-session-count"], 1);
    stop(a_child);
    stop(b_child);
}

/// The JSON of the gzipped report attached to a TLS report message.
fn tls_report_json(message: &str) -> serde_json::Value {
    let part = message
        .split("Content-Type: application/tlsrpt+gzip")
        .nth(1)
        .unwrap_or_else(|| panic!("no report attached: {message}"));
    let encoded: String = part
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("--")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    gunzip_json(&stratus_core::base64::decode(&encoded).expect("base64"))
}

fn gunzip_json(gz: &[u8]) -> serde_json::Value {
    use std::io::Read;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut json)
        .expect("gzip");
    serde_json::from_slice(&json).expect("JSON")
}

/// A free port on 127.0.0.1 for both UDP and TCP (a DNS server's).
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for UDP and TCP");
}

/// Runs `program` with `args` in `dir`; its standard output, or a panic
/// that says what failed.
fn run_in(dir: &std::path::Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (tests/run.sh installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// DANE against real DNSSEC: zones signed with ldns-signzone and served by
/// NSD, and Unbound validating them from a trust anchor as the resolver A
/// asks (STRATUS_DNS_RESOLVER). dane.test's MX has a TLSA record of B's
/// key: delivered over TLS; bad.dane.test's does not match: bounced
/// (5.7.5); bogus.dane.test's TLSA record was changed after signing, so
/// Unbound answers SERVFAIL: bounced without a session (5.7.5); plain.test
/// is not signed, so its (wrong) TLSA record is ignored: delivered, but not
/// REQUIRETLS mail (5.7.10). What the DNS fixture plays in
/// [`dane_is_enforced`], here for real, to show Stratus reads a validating
/// resolver's AD bit as it should.
pub async fn dane_with_a_validating_resolver(a: &mut Env, a_look: Look, b: &mut Env, b_look: Look) {
    add_users(a);
    let dir = a.dir.path().join("dnssec");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = test_pki(&["mx.dane.test"]);
    let (cert_file, key_file) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, format!("{}{}", pki.leaf_pem, pki.ca_pem)).unwrap();
    std::fs::write(&key_file, &pki.key_pem).unwrap();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let good = hex(&sha256(&pki.leaf_spki));
    let wrong = "5a".repeat(32);
    let soa = |zone: &str| {
        format!(
            "$ORIGIN {zone}.\n$TTL 60\n@ IN SOA ns.{zone}. host.{zone}. 1 3600 600 86400 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"
        )
    };
    let mut signed = soa("dane.test");
    for (label, tlsa) in [("", &good), ("bad.", &wrong), ("bogus.", &good)] {
        signed.push_str(&format!(
            "{label}dane.test. IN MX 10 mx.{label}dane.test.\nmx.{label}dane.test. IN A 127.0.0.1\n_25._tcp.mx.{label}dane.test. IN TLSA 3 1 1 {tlsa}\n"
        ));
    }
    std::fs::write(dir.join("dane.test.zone"), signed).unwrap();
    let plain = format!(
        "{}@ IN MX 10 mx.plain.test.\nmx IN A 127.0.0.1\n_25._tcp.mx IN TLSA 3 1 1 {wrong}\n",
        soa("plain.test")
    );
    std::fs::write(dir.join("plain.test.zone"), plain).unwrap();
    let zsk = run_in(&dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", "dane.test"]);
    let ksk = run_in(
        &dir,
        "ldns-keygen",
        &["-a", "ECDSAP256SHA256", "-k", "dane.test"],
    );
    run_in(&dir, "ldns-signzone", &["-n", "dane.test.zone", &zsk, &ksk]);
    // Tampered after signing: its signature no longer holds.
    let zone = std::fs::read_to_string(dir.join("dane.test.zone.signed")).unwrap();
    let tampered: Vec<String> = zone
        .lines()
        .map(|l| {
            if l.starts_with("_25._tcp.mx.bogus.dane.test.") && l.contains("\tTLSA\t") {
                l.replace(&good, &format!("00{}", &good[2..]))
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_ne!(
        tampered.join("\n"),
        zone.trim_end(),
        "the record to tamper with is there"
    );
    std::fs::write(
        dir.join("dane.test.zone.signed"),
        tampered.join("\n") + "\n",
    )
    .unwrap();

    let (nsd_port, unbound_port) = (free_dns_port(), free_dns_port());
    let d = dir.display();
    std::fs::write(
        dir.join("nsd.conf"),
        format!(
            "server:\n  ip-address: 127.0.0.1@{nsd_port}\n  port: {nsd_port}\n  username: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\nremote-control:\n  control-enable: no\nzone:\n  name: \"dane.test\"\n  zonefile: \"dane.test.zone.signed\"\nzone:\n  name: \"plain.test\"\n  zonefile: \"plain.test.zone\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("unbound.conf"),
        format!(
            "server:\n  interface: 127.0.0.1@{unbound_port}\n  port: {unbound_port}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  logfile: \"{d}/unbound.log\"\n  use-syslog: no\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n  module-config: \"validator iterator\"\n  trust-anchor-file: \"{d}/{ksk}.key\"\n  domain-insecure: \"plain.test\"\n  local-zone: \"test.\" nodefault\nstub-zone:\n  name: \"dane.test\"\n  stub-addr: 127.0.0.1@{nsd_port}\nstub-zone:\n  name: \"plain.test\"\n  stub-addr: 127.0.0.1@{nsd_port}\n"
        ),
    )
    .unwrap();
    let mut dns_servers = Vec::new();
    for (program, conf) in [("nsd", "nsd.conf"), ("unbound", "unbound.conf")] {
        // Daemons live in /usr/sbin, which not every PATH has.
        let sbin = std::path::Path::new("/usr/sbin").join(program);
        let path = if sbin.exists() { sbin } else { program.into() };
        let child = Command::new(path)
            .args(["-d", "-c"])
            .arg(dir.join(conf))
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (tests/run.sh installs it)"));
        a.servers.lock().unwrap().push(child.id());
        dns_servers.push(child);
    }
    let port = unbound_port.to_string();
    // Unbound's first validation of the signed zone takes seconds; with
    // every other end-to-end test running (clamd loading its database
    // among them) it took more than 30 s once in CI.
    crate::eventually(
        Duration::from_secs(90),
        "Unbound validating dane.test",
        || {
            let port = port.clone();
            async move {
                let out = Command::new("drill")
                    .args(["-D", "-p", &port, "mx.dane.test", "@127.0.0.1", "A"])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.lines()
                    .any(|l| l.starts_with(";; flags:") && l.contains(" ad "))
                    .then_some(())
            }
        },
    )
    .await;

    let users = [
        "dane.test",
        "bad.dane.test",
        "bogus.dane.test",
        "plain.test",
    ]
    .map(|d| format!("u@{d}"));
    let (b_child, b_smtp) = serve_receiver(b, &users, &cert_file, &key_file).await;
    a.set("STRATUS_DNS_RESOLVER", &format!("127.0.0.1:{unbound_port}"));
    let (a_child, submission) = serve_sender(a, b_smtp).await;
    let list = [
        "u@dane.test|to dane|-|-",
        "u@bad.dane.test|to bad|-|-",
        "u@bogus.dane.test|to bogus|-|-",
        "u@plain.test|to plain|-|-",
        "u@plain.test|requiretls to plain|REQUIRETLS|-",
    ];
    let out = python(SUBMIT_LIST, &[&submission, &list.join("\n")]);
    assert!(out.contains("submitted"), "{out}");

    let got = wait_for_message(&b_look, "u@dane.test", "Subject: to dane").await;
    assert!(got.contains("with ESMTPS"), "{got}");
    wait_for_message(&b_look, "u@plain.test", "Subject: to plain").await;
    let bad = wait_for_message(&a_look, "alice@example.com", "u@bad.dane.test").await;
    assert!(bad.contains("Status: 5.7.5"), "{bad}");
    assert!(bad.contains("no TLSA record matches"), "{bad}");
    let bogus = wait_for_message(&a_look, "alice@example.com", "u@bogus.dane.test").await;
    assert!(bogus.contains("Status: 5.7.5"), "{bogus}");
    assert!(
        bogus.contains("cannot look up _25._tcp.mx.bogus.dane.test"),
        "{bogus}"
    );
    let requiretls =
        wait_for_message(&a_look, "alice@example.com", "Subject: requiretls to plain").await;
    assert!(requiretls.contains("Status: 5.7.10"), "{requiretls}");
    for user in ["u@bad.dane.test", "u@bogus.dane.test"] {
        assert!(b_look.inbox(user).await.is_empty(), "{user}");
    }
    assert_eq!(
        b_look.inbox("u@plain.test").await.len(),
        1,
        "not the REQUIRETLS one"
    );
    stop(a_child);
    stop(b_child);
    for mut server in dns_servers {
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// Alice submits three messages to a domain whose MX refuses connections.
const SEND_THREE_DOWN: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(port)) as s:
    s.starttls(context=ctx); s.login("alice@example.com", "alice password")
    for who in ["carol", "dave", "erin"]:
        s.sendmail("alice@example.com", [who + "@down.example"], "Subject: to " + who + "\r\n\r\nwaiting\r\n")
"#;

/// The outbound queue as an administrator works it: messages to a dead
/// MX wait; `stratus queue list` (with filters) and the API show them
/// (a domain admin of another domain sees none); a retry makes another
/// attempt at once; a bounce sends Alice a DSN saying so; a deletion
/// removes one without a DSN.
pub async fn queue_list_retry_bounce_delete(a: &mut Env, a_look: Look) {
    add_users(a);
    a.ok(&["domain", "add", "other.example"], b"");
    a.dns.add_mx("down.example", 10, "mx.down.example");
    a.dns
        .add_a("mx.down.example", std::net::Ipv4Addr::new(127, 0, 0, 2));
    // No retry comes by itself while the test runs.
    a.set("STRATUS_SEND_FIRST_RETRY", "3600");
    let mut child = a.serve(&[]);
    let listeners = wait_for_listeners(&a.data_dir(), &mut child).await;
    python(
        SEND_THREE_DOWN,
        &[listeners["submission"].as_str().unwrap()],
    );
    let listed = crate::eventually(
        Duration::from_secs(30),
        "three waiting messages",
        || async {
            let out = a.ok(&["queue", "list"], b"");
            (out.lines().count() == 3).then_some(out)
        },
    )
    .await;
    assert!(
        listed.contains("from alice@example.com to carol@down.example attempts 1"),
        "{listed}"
    );
    let id_of = |who: &str| {
        listed
            .lines()
            .find(|l| l.contains(&format!(" to {who}@down.example ")))
            .and_then(|l| l.split(' ').next())
            .unwrap()
            .to_string()
    };
    let (carol, dave, erin) = (id_of("carol"), id_of("dave"), id_of("erin"));
    let one = a.ok(&["queue", "list", "--recipient", "DAVE@down.example"], b"");
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(
        a.ok(&["queue", "list", "--domain", "elsewhere.example"], b"")
            .is_empty()
    );
    assert!(a.ok(&["queue", "list", "--sender", "<>"], b"").is_empty());

    // The API: an admin sees all three; another domain's admin none, and
    // not one by its id either.
    let http = listeners["http"].as_str().unwrap();
    let admin = a.ok(&["apikey", "create", "--role", "admin"], b"");
    let other = a.ok(
        &[
            "apikey",
            "create",
            "--role",
            "domain-admin",
            "--domain",
            "other.example",
        ],
        b"",
    );
    let auth = |key: &str| format!("Authorization: Bearer {}\r\n", key.trim());
    let all = crate::cli::http_call(
        http,
        "GET",
        "/api/v1/queue?recipient=carol@down.example",
        &auth(&admin),
        "",
    )
    .await;
    assert!(
        all.starts_with("HTTP/1.1 200") && all.contains(&carol),
        "{all}"
    );
    let none = crate::cli::http_call(http, "GET", "/api/v1/queue", &auth(&other), "").await;
    assert!(none.contains(r#"{"items":[],"next":null}"#), "{none}");
    let hidden = crate::cli::http_call(
        http,
        "GET",
        &format!("/api/v1/queue/{carol}"),
        &auth(&other),
        "",
    )
    .await;
    assert!(hidden.starts_with("HTTP/1.1 404"), "{hidden}");
    let forged = crate::cli::http_call(
        http,
        "POST",
        "/api/v1/queue/..%2F..%2Fx/retry",
        &auth(&admin),
        "",
    )
    .await;
    assert!(forged.starts_with("HTTP/1.1 404"), "{forged}");

    // Retry now: another attempt at once (it fails again: 2 attempts).
    assert!(a.ok(&["queue", "retry", &carol], b"").contains("retrying"));
    crate::eventually(Duration::from_secs(30), "the second attempt", || async {
        a.ok(&["queue", "show", &carol], b"")
            .contains("attempts 2")
            .then_some(())
    })
    .await;

    // Bounce (through the API): Alice hears why.
    let bounced = crate::cli::http_call(
        http,
        "POST",
        &format!("/api/v1/queue/{dave}/bounce"),
        &auth(&admin),
        "",
    )
    .await;
    assert!(bounced.starts_with("HTTP/1.1 200"), "{bounced}");
    let dsn = wait_for_message(&a_look, "alice@example.com", "dave@down.example").await;
    assert!(
        dsn.contains("removed from the queue by the administrator"),
        "{dsn}"
    );

    // Delete: gone without a word.
    assert!(a.ok(&["queue", "delete", &erin], b"").contains("deleted"));
    let left = crate::eventually(Duration::from_secs(30), "one waiting message", || async {
        let out = a.ok(&["queue", "list"], b"");
        (out.lines().count() == 1).then_some(out)
    })
    .await;
    assert!(left.contains(&carol), "{left}");
    let gone = a.run(&["queue", "show", &erin], b"");
    assert_eq!(gone.code, 1, "{gone:?}");
    let audit = crate::cli::http_call(http, "GET", "/api/v1/audit", &auth(&admin), "").await;
    assert!(audit.contains(r#""action":"queue.bounce""#), "{audit}");
    stop(child);
}
