//! Distribution lists end to end: posting policies, the list's header
//! fields and envelope, the DMARC-safe From rewrite, one copy per member
//! when members were recipients too, held posts approved by an owner,
//! bounces counted until a member is disabled, unsubscribe by mail.

use std::time::Duration;

use crate::cli::{Env, stop};
use crate::forwarding::{start_receiver, wait_received};
use crate::sieve::{subjects, wait_for};
use crate::smtp::{Look, add_users};
use crate::spam::serve_and_greet;

fn post(subject: &str, from: &str, to: &str) -> String {
    format!(
        "From: Xavier <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{}.list@outside.example>\r\n\r\nNews for the team.\r\n",
        subject.replace(' ', "-")
    )
}

fn bounce_of(member: &str, n: usize) -> String {
    format!(
        "From: MAILER-DAEMON@elsewhere.example\r\nTo: crew-bounces@example.com\r\nSubject: Undelivered Mail {n}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nNo such user.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;mx.elsewhere.example\r\n\r\nFinal-Recipient: rfc822;{member}\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n"
    )
}

/// Waits (bounded) until `list members LIST` prints something that
/// passes `check`; what it printed.
async fn wait_members(env: &Env, list: &str, check: impl Fn(&str) -> bool) -> String {
    crate::eventually(
        Duration::from_secs(30),
        &format!("the members of {list}"),
        || async {
            let out = env.ok(&["list", "members", list], b"");
            check(&out).then_some(out)
        },
    )
    .await
}

pub async fn lists_distribute_hold_and_count_bounces(env: &mut Env, look: Look) {
    add_users(env);
    let (mut receiver, out) = start_receiver(env);
    // Xavier's domain passes DMARC (SPF, aligned) and asks receivers to
    // reject what fails it: the list rewrites his From.
    env.dns
        .add_txt("outside.example", "v=spf1 ip4:127.0.0.1 -all");
    env.dns
        .add_txt("_dmarc.outside.example", "v=DMARC1; p=reject");

    // A list needs an owner; a name too long for its bounce address is
    // refused.
    env.refuses(&["list", "add", "crew@example.com"], 2, "needs an owner");
    let long = format!("{}@example.com", "l".repeat(60));
    env.refuses(
        &["list", "add", &long, "--owner", "alice@example.com"],
        2,
        "too long a name",
    );
    let said = env.ok(
        &[
            "list",
            "add",
            "crew@example.com",
            "--owner",
            "alice@example.com",
        ],
        b"",
    );
    assert_eq!(
        said,
        "added list crew@example.com (members); bounces to crew-bounces@example.com, unsubscribe at crew-unsubscribe@example.com\n"
    );
    env.ok(
        &[
            "list",
            "add",
            "board@example.com",
            "--policy",
            "moderated",
            "--owner",
            "alice@example.com",
        ],
        b"",
    );
    // Bad input is refused with the reason.
    for taken in ["alice@example.com", "team@example.com"] {
        env.refuses(
            &["list", "add", taken, "--owner", "alice@example.com"],
            1,
            "already a user or an alias",
        );
    }
    env.refuses(
        &["list", "subscribe", "crew@example.com", "board@example.com"],
        1,
        "cannot be a member",
    );
    // Nor an alias that leads to a list (its copies would come back).
    env.ok(
        &["alias", "add", "loop@example.com", "crew@example.com"],
        b"",
    );
    env.refuses(
        &["list", "subscribe", "board@example.com", "loop@example.com"],
        1,
        "cannot be a member",
    );
    // Nor may a user or alias take a list's addresses.
    env.refuses(
        &[
            "alias",
            "add",
            "crew-bounces@example.com",
            "alice@example.com",
        ],
        1,
        "already a user or an alias",
    );
    env.refuses(
        &["list", "members", "nobody@example.com"],
        1,
        "no such list",
    );
    let said = env.ok(
        &[
            "list",
            "subscribe",
            "crew@example.com",
            "alice@example.com",
            "bob@example.com",
            "carol@elsewhere.example",
            "dave@elsewhere.example",
            "x@outside.example",
        ],
        b"",
    );
    assert_eq!(said, "5 subscribed to crew@example.com\n");
    env.ok(
        &["list", "subscribe", "board@example.com", "bob@example.com"],
        b"",
    );
    let lists = env.ok(&["list", "list"], b"");
    assert!(
        lists.contains("crew@example.com  members  5 members")
            && lists.contains("board@example.com  moderated  1 member"),
        "{lists}"
    );

    let (child, _, mut c) = serve_and_greet(env).await;
    // A member posts to the list and to Alice, a member too.
    let r = c
        .transaction(
            "x@outside.example",
            &["crew@example.com", "alice@example.com"],
            post("team news", "x@outside.example", "crew@example.com").as_bytes(),
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    // Someone else may not post; nor send a bounce from a sender, nor
    // an unsubscribe request from nobody.
    for (from, to) in [
        ("stranger@outside.example", "crew@example.com"),
        ("someone@outside.example", "crew-bounces@example.com"),
        ("", "crew-unsubscribe@example.com"),
    ] {
        c.cmd(&format!("MAIL FROM:<{from}>")).await.unwrap();
        let r = c.cmd(&format!("RCPT TO:<{to}>")).await.unwrap();
        assert!(r.starts_with("550 5.7.1"), "{from} -> {to}: {r}");
        c.cmd("RSET").await.unwrap();
    }

    // Bob's copy is the list's: its fields, the From rewritten.
    let bob = wait_for(&look, "bob@example.com", "INBOX", 1).await;
    let text = String::from_utf8_lossy(&look.full_message(&bob[0]).await).into_owned();
    for want in [
        "List-Id: <crew.example.com>",
        "List-Post: <mailto:crew@example.com>",
        "List-Unsubscribe: <mailto:crew-unsubscribe@example.com?subject=unsubscribe>",
        "Precedence: list",
        "From: \"x via crew\" <crew@example.com>",
        "Reply-To: <x@outside.example>",
        "Return-Path: <crew-bounces@example.com>",
        "News for the team.",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // Alice was a recipient too: one copy, not two.
    let alice = wait_for(&look, "alice@example.com", "INBOX", 1).await;
    let text = String::from_utf8_lossy(&look.full_message(&alice[0]).await).into_owned();
    assert!(text.contains("Subject: team news"), "{text}");
    // The remote members' copies leave from the bounce address, signed
    // for the list's domain.
    let carol = wait_received(&out, "<carol@elsewhere.example>", "Subject: team news").await;
    assert_eq!(carol.mail, "<crew-bounces@example.com>");
    assert!(carol.rcpt.contains("<dave@elsewhere.example>"), "{carol:?}");
    assert!(
        carol.text.contains("DKIM-Signature:") && carol.text.contains("d=example.com"),
        "{carol:?}"
    );

    // A moderated list holds every post until an owner approves it.
    let r = c
        .transaction(
            "x@outside.example",
            &["board@example.com"],
            post("board minutes", "x@outside.example", "board@example.com").as_bytes(),
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let held = crate::eventually(Duration::from_secs(30), "a held post", || async {
        let out = env.ok(&["list", "held", "board@example.com"], b"");
        out.contains("the list is moderated").then_some(out)
    })
    .await;
    let id = held.split_whitespace().next().unwrap().to_string();
    // Its owner was told how to approve it.
    let inbox = wait_for(&look, "alice@example.com", "INBOX", 2).await;
    let mut told = false;
    for e in &inbox {
        let t = String::from_utf8_lossy(&look.full_message(e).await).into_owned();
        told |= t.contains("Subject: Held for approval: a message to board@example.com")
            && t.contains(&format!("stratus list approve board@example.com {id}"))
            && t.contains("Auto-Submitted: auto-generated");
    }
    assert!(told, "the owner's notice");
    assert_eq!(
        entries_of(&look, "bob@example.com").await,
        1,
        "not before approval"
    );
    let said = env.ok(&["list", "approve", "board@example.com", &id], b"");
    assert!(said.contains("on its way"), "{said}");
    env.refuses(
        &["list", "approve", "board@example.com", &id],
        2,
        "approved already",
    );
    crate::eventually(Duration::from_secs(30), "the post sent", || async {
        env.ok(&["list", "held", "board@example.com"], b"")
            .is_empty()
            .then_some(())
    })
    .await;
    let bob = wait_for(&look, "bob@example.com", "INBOX", 2).await;
    assert_eq!(
        subjects(&look, &bob).await,
        ["Subject: board minutes", "Subject: team news"]
    );

    // Dave bounces: counted, and disabled after five.
    for n in 0..5 {
        let r = c
            .transaction(
                "",
                &["crew-bounces@example.com"],
                bounce_of("dave@elsewhere.example", n).as_bytes(),
            )
            .await
            .unwrap();
        assert!(r.starts_with("250"), "{r}");
    }
    wait_members(env, "crew@example.com", |m| {
        m.contains("dave@elsewhere.example  disabled after 5 bounces")
    })
    .await;
    // Xavier unsubscribes by mail.
    let r = c
        .transaction(
            "x@outside.example",
            &["crew-unsubscribe@example.com"],
            b"From: x@outside.example\r\nSubject: unsubscribe\r\n\r\n",
        )
        .await
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    wait_members(env, "crew@example.com", |m| {
        !m.contains("x@outside.example")
    })
    .await;
    c.cmd("QUIT").await.unwrap();

    // Deleted, with its members.
    assert_eq!(
        env.ok(&["list", "del", "board@example.com"], b""),
        "deleted list board@example.com\n"
    );
    assert!(!env.ok(&["list", "list"], b"").contains("board@"));
    // A domain with lists is not deleted under them.
    env.ok(&["domain", "add", "lists.example"], b"");
    env.ok(
        &[
            "list",
            "add",
            "news@lists.example",
            "--owner",
            "alice@example.com",
        ],
        b"",
    );
    env.refuses(&["domain", "del", "lists.example"], 1, "still has lists");
    env.ok(&["list", "del", "news@lists.example"], b"");
    env.ok(&["domain", "del", "lists.example"], b"");
    let _ = receiver.kill();
    let _ = receiver.wait();
    stop(child);
}

async fn entries_of(look: &Look, user: &str) -> usize {
    crate::sieve::entries(look, user, "INBOX").await.len()
}
