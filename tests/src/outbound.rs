//! Submission and outbound delivery between two `stratus serve`
//! processes: gateway A hosts example.com, gateway B hosts
//! remote.example, and A's DNS fixture points remote.example's MX at B.
//! No test touches the internet.

use std::process::{Child, Command};
use std::time::Duration;

use crate::cli::{Env, wait_for_listeners};
use crate::smtp::{Look, add_users, python};

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

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
    s.login("alice@example.com", "alice pw")
    try:
        s.sendmail("bob@example.com", ["carol@remote.example"], "Subject: spoof\r\n\r\nx\r\n"); print("spoof accepted")
    except smtplib.SMTPSenderRefused as e:
        print("spoof", e.smtp_code)
    for rcpt, subject in [("carol@remote.example", "to carol"), ("nobody@remote.example", "to nobody"), ("someone@nullmx.example", "to null mx")]:
        s.sendmail("alice@example.com", [rcpt], f"From: alice@example.com\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nhello {rcpt}\r\n.dot line\r\n")
    print("submitted")
"#;

/// alice submits over STARTTLS with AUTH; mail for carol reaches gateway B
/// through the MX the DNS fixture gives; mail for an unknown user at B and
/// for a null-MX domain comes back to alice as DSNs.
pub async fn submission_and_delivery_to_another_server(
    a: &mut Env,
    a_look: Look,
    b: &Env,
    b_look: Look,
) {
    add_users(a);
    b.ok(&["domain", "add", "remote.example"], b"");
    b.ok(
        &["user", "add", "carol@remote.example", "--password-stdin"],
        b"carol pw\n",
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
    let mut a_child = a.serve(&[]);
    let a_listeners = wait_for_listeners(&a.data_dir(), &mut a_child).await;
    let out = python(SUBMIT, &[a_listeners["submission"].as_str().unwrap()]);
    assert!(out.contains("wrong password 535"), "{out}");
    assert!(out.contains("spoof 553"), "{out}");
    assert!(out.contains("submitted"), "{out}");

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
    assert_eq!(
        b_look.inbox("carol@remote.example").await.len(),
        1,
        "delivered once"
    );
    stop(a_child);
    stop(b_child);
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
