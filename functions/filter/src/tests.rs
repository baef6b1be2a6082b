use super::*;

fn verdict(raw: &str, ctx: &Context, policy: &Policy) -> Verdict {
    let rules = Rules::shipped();
    let model = Model::default();
    let a = Analysis::new(raw.as_bytes());
    score(
        &a,
        ctx,
        &rules,
        Classifier {
            global: &model,
            user: None,
        },
        policy,
    )
}

fn names(v: &Verdict) -> Vec<&str> {
    v.hits.iter().map(|h| h.name.as_str()).collect()
}

const PLAIN: &str = "From: Ann <ann@example.org>\r\nTo: bob@example.com\r\nSubject: lunch\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nShall we meet at noon?\r\n";

fn default_policy() -> Policy {
    Policy::from_rules(&Rules::shipped())
}

#[test]
fn plain_mail_is_delivered() {
    let v = verdict(PLAIN, &Context::default(), &default_policy());
    assert_eq!(v.action, Action::Deliver, "{v:?}");
    assert!(
        v.status_header().starts_with("No, score="),
        "{}",
        v.status_header()
    );
}

#[test]
fn gtube_is_always_spam() {
    let raw = PLAIN.replace("Shall we", analysis::GTUBE);
    let mut policy = default_policy();
    // Not even an allow list or a generous threshold lets it through.
    policy.allow.push("example.org".into());
    policy.junk = 50.0;
    policy.reject = 500.0;
    let ctx = Context {
        auth: AuthFacts::from_results(
            "spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org; dmarc=pass",
            None,
        ),
        mail_from: Some("ann@example.org".into()),
        ..Context::default()
    };
    let v = verdict(&raw, &ctx, &policy);
    assert_eq!(v.action, Action::Reject, "{v:?}");
    assert_eq!(v.hits[0].name, "GTUBE");
    assert!(v.reasons(3).starts_with("GTUBE"));
    // Base64-encoded in a MIME part, it is found too.
    let encoded = format!(
        "From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        stratus_core::base64::encode(analysis::GTUBE.as_bytes())
    );
    assert!(names(&verdict(&encoded, &Context::default(), &default_policy())).contains(&"GTUBE"));
}

#[test]
fn thresholds_decide_the_action() {
    let raw = "From: x@example.net\r\nSubject: hi\r\n\r\n<html><body>Buy <a href=\"http://192.0.2.1/x\">now</a></body></html>\r\n";
    let v = verdict(raw, &Context::default(), &default_policy());
    assert!(names(&v).contains(&"URL_IP"), "{v:?}");
    assert!(names(&v).contains(&"MISSING_DATE"), "{v:?}");
    let strict = Policy {
        junk: 1.0,
        reject: 3.0,
        ..default_policy()
    };
    let v2 = verdict(raw, &Context::default(), &strict);
    assert!(v2.score >= 3.0, "{v2:?}");
    assert_eq!(v2.action, Action::Reject);
    let lenient = Policy {
        junk: 100.0,
        reject: 200.0,
        ..default_policy()
    };
    assert_eq!(
        verdict(raw, &Context::default(), &lenient).action,
        Action::Deliver
    );
}

#[test]
fn allow_list_needs_authentication_and_block_list_does_not() {
    let mut policy = default_policy();
    policy.allow.push("example.org".into());
    policy.junk = -1.0; // everything is junk unless allowed
    let unauthenticated = verdict(PLAIN, &Context::default(), &policy);
    assert!(!names(&unauthenticated).contains(&"USER_ALLOWLIST"));
    assert_eq!(unauthenticated.action, Action::Junk);
    let ctx = Context {
        auth: AuthFacts::from_results(
            "spf=none; dkim=pass header.d=mail.example.org; dkim=fail header.d=other.example; arc=none; dmarc=none",
            None,
        ),
        ..Context::default()
    };
    // A signature by a subdomain does not vouch for the parent...
    assert!(!names(&verdict(PLAIN, &ctx, &policy)).contains(&"USER_ALLOWLIST"));
    let ctx = Context {
        auth: AuthFacts::from_results("spf=none; dkim=pass header.d=example.org; dmarc=none", None),
        ..Context::default()
    };
    let allowed = verdict(PLAIN, &ctx, &policy);
    assert!(names(&allowed).contains(&"USER_ALLOWLIST"), "{allowed:?}");
    assert_eq!(allowed.action, Action::Deliver);

    let mut policy = default_policy();
    policy.block.push("ann@example.org".into());
    let blocked = verdict(PLAIN, &Context::default(), &policy);
    assert!(names(&blocked).contains(&"USER_BLOCKLIST"));
    assert_eq!(blocked.action, Action::Reject);
    // An entry for another address at the same domain does not match.
    let mut policy = default_policy();
    policy.block.push("bob@example.org".into());
    assert_eq!(
        verdict(PLAIN, &Context::default(), &policy).action,
        Action::Deliver
    );
}

#[test]
fn authentication_symbols() {
    use stratus_core::job::DmarcPolicy;
    let ctx = Context {
        auth: AuthFacts::from_results(
            "spf=fail smtp.mailfrom=example.org; dkim=fail (body hash did not verify) header.d=example.org header.s=s; arc=none; dmarc=fail (p=reject) header.from=example.org",
            Some(DmarcPolicy::Reject),
        ),
        ..Context::default()
    };
    let v = verdict(PLAIN, &ctx, &default_policy());
    for s in ["SPF_FAIL", "DKIM_INVALID", "DMARC_POLICY_REJECT"] {
        assert!(names(&v).contains(&s), "{s}: {v:?}");
    }
    assert_eq!(v.action, Action::Junk);
}

#[test]
fn headers_and_obfuscation() {
    let raw = "From: \"service@bank.example\" <x@evil.example>\r\nReply-To: y@other.example\r\nSubject: Verify\r\nDate: Mon, 7 Dec 2099 10:00:00 +0000\r\nMessage-ID: <nodomain>\r\nTo: a@b.example\r\n\r\nYour \u{0430}ccount, p\u{0430}ypal, l\u{043e}gin, now\u{200b}here http://bank.example@evil.example/login and http://bit.ly/abc\r\n";
    let ctx = Context {
        now: 1_796_000_000,
        ..Context::default()
    };
    let v = verdict(raw, &ctx, &default_policy());
    for s in [
        "FROM_NAME_ADDRESS",
        "FROM_REPLYTO_DIFF",
        "DATE_IN_FUTURE",
        "INVALID_MSGID",
        "MIXED_SCRIPT",
        "ZERO_WIDTH",
        "URL_USERINFO",
        "URL_SHORTENER",
    ] {
        assert!(names(&v).contains(&s), "{s}: {v:?}");
    }
    let h = v.headers();
    assert!(h.starts_with("X-Spam-Status: "), "{h}");
    assert!(h.lines().all(|l| l.len() <= 78), "{h}");
    assert!(h.contains("X-Spam-Score: "), "{h}");
}

#[test]
fn image_only_and_html_only() {
    let raw = "From: a@example.net\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<html><img src=\"http://img.example/a.gif\"></html>\r\n";
    let v = verdict(raw, &Context::default(), &default_policy());
    assert!(
        names(&v).contains(&"HTML_ONLY") && names(&v).contains(&"IMAGE_ONLY"),
        "{v:?}"
    );
}

#[test]
fn attachments_are_quarantined() {
    let raw = format!(
        "From: a@example.net\r\nTo: b@example.com\r\nSubject: invoice\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <2@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        stratus_core::base64::encode(b"MZ\x90\x00\x03")
    );
    let v = verdict(&raw, &Context::default(), &default_policy());
    assert!(names(&v).contains(&"ATTACH_DOUBLE_EXT"), "{v:?}");
    assert_eq!(v.action, Action::Quarantine, "{v:?}");
}

#[test]
fn foreign_verdict_headers_are_removed() {
    let raw = b"Received: x\r\nX-Spam-Status: No, score=-100\r\n  tests=FAKE\r\nSubject: s\r\nx-spam-score:  -5\r\nX-Virus-Status: clean\r\n\r\nX-Spam-Status: in the body stays\r\n";
    let out = strip_our_headers(raw).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Received: x\r\nSubject: s\r\n\r\nX-Spam-Status: in the body stays\r\n"
    );
    assert_eq!(strip_our_headers(PLAIN.as_bytes()), None);
}

#[test]
fn hostile_messages_get_a_verdict() {
    // 10,000 tiny parts, broken base64, a wrong charset, no header end.
    let mut many = String::from(
        "From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n",
    );
    for _ in 0..10_000 {
        many.push_str("--z\r\nContent-Type: text/plain\r\n\r\nx\r\n");
    }
    many.push_str("--z--\r\n");
    let v = verdict(&many, &Context::default(), &default_policy());
    assert!(names(&v).contains(&"MIME_MANY_PARTS"), "{:?}", &v.hits);
    let bad = "From: a@b.example\r\nContent-Type: text/plain; charset=no-such-charset\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n";
    let _ = verdict(bad, &Context::default(), &default_policy());
    let _ = verdict(
        "garbage without header end",
        &Context::default(),
        &default_policy(),
    );
    let _ = verdict("", &Context::default(), &default_policy());
}

#[test]
fn shipped_model_reads() {
    let _ = shipped_model();
}

/// The fuzz target's corpus (fuzz/corpus/spam_score), replayed on stable:
/// every input gets a verdict with a finite score (fuzz/run.sh checks
/// more, on nightly).
#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/spam_score");
    let rules = Rules::shipped();
    let model = shipped_model();
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let a = Analysis::new(&data);
        let classifier = Classifier {
            global: &model,
            user: None,
        };
        let v = score(
            &a,
            &Context::default(),
            &rules,
            classifier,
            &Policy::from_rules(&rules),
        );
        assert!(v.score.is_finite());
        replayed += 1;
    }
    assert!(replayed >= 100, "{replayed} inputs in {}", dir.display());
}

#[test]
fn client_chosen_text_in_results_is_not_a_result() {
    // A HELO name as the gateway quotes it, with a `;` and a space that
    // is not ASCII, posing as a passing DKIM result.
    let results = "spf=none smtp.helo=\"a;dkim=pass\u{2003}header.d=bank.example;\"; dkim=none (no signature; none at all); arc=none; dmarc=none";
    let facts = AuthFacts::from_results(results, None);
    assert_eq!(facts.spf, "none");
    assert_eq!(facts.dkim, [("none".to_string(), None)]);
    assert!(!facts.vouches_for("bank.example", None));
    // DMARC vouches only for the From domain it judged.
    let facts = AuthFacts::from_results(
        "spf=none; dkim=none; dmarc=pass header.from=example.org",
        None,
    );
    assert!(facts.vouches_for("example.org", None));
    assert!(!facts.vouches_for("bank.example", None));
}

#[test]
fn links_in_any_script_and_hostile_runs_end() {
    for raw in [
        "From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<a href=\"\u{65e5}\u{672c}\u{8a9e}.html\">x</a> http://\u{4f8b}\u{3048}.jp/ http://a\u{20ac}b/ www.\u{20ac}\r\n",
        &format!(
            "From: a@b.example\r\n\r\n{}\r\n",
            "www. http:// ".repeat(200_000)
        ),
    ] {
        // No panic on any of them, and one pass over the hostile run
        // (quadratic work here would hold the test for hours).
        let v = verdict(raw, &Context::default(), &default_policy());
        assert!(v.score.is_finite());
    }
}

#[test]
fn a_fifty_megabyte_attachment_gets_a_verdict() {
    // 50 MB of binary data, base64 in a MIME part, as a 50M message limit
    // lets in: read once, its text and token work bounded.
    let data: Vec<u8> = (0..50_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let raw = format!(
        "From: a@b.example\r\nTo: c@d.example\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe report\r\n--b\r\nContent-Type: application/octet-stream; name=\"report.bin\"\r\nContent-Disposition: attachment; filename=\"report.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        stratus_core::base64::encode(&data)
    );
    let a = Analysis::new(raw.as_bytes());
    assert_eq!(a.attachments.len(), 1);
    assert_eq!(a.attachments[0].data.len(), data.len());
    assert!(a.text.len() <= analysis::MAX_TEXT);
    assert!(a.tokens.len() <= tokens::MAX_TOKENS);
    let v = verdict(&raw, &Context::default(), &default_policy());
    assert_eq!(v.action, Action::Deliver, "{v:?}");
}
