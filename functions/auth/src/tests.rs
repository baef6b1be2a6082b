//! The checks end to end against the DNS fixture. No test leaves the
//! machine: every resolver here points at a fixture on 127.0.0.1 (or at a
//! closed loopback port).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use mail_auth::AuthenticatedMessage;
use mail_auth::arc::ArcSealer;
use mail_auth::common::headers::HeaderWriter;
use stratus_core::address::Address;
use stratus_core::job::DmarcPolicy;

use crate::fixture::{DkimTestKey, DnsFixture, sign_dkim};
use crate::{AuthOutcome, AuthResult, Authenticator, SpfIdentity, SpfResult};

/// A 2048-bit RSA key made for these tests with `openssl genpkey`.
const RSA_PEM: &str = include_str!("testdata/dkim-rsa-2048.pem");

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HELO: &str = "mx.sender.example";
const US: &str = "mx.stratus.example";

fn setup() -> (DnsFixture, Authenticator) {
    let dns = DnsFixture::start();
    let auth = Authenticator::new(Some(dns.addr())).expect("resolver builds");
    (dns, auth)
}

fn address(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn message(from_domain: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@{from_domain}>\r\n\
         To: bob@stratus.example\r\n\
         Subject: hello\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <1@{from_domain}>\r\n\
         \r\n\
         Hello, world.\r\n"
    )
    .into_bytes()
}

/// SPF for `bounce@sender.example` from `client`, then the message checks.
async fn check(auth: &Authenticator, client: IpAddr, raw: &[u8]) -> (SpfResult, AuthOutcome) {
    let from = address("bounce@sender.example");
    let spf = auth.check_mail_from(client, HELO, Some(&from), US).await;
    let outcome = auth
        .check_message(raw, client, HELO, Some(&from), &spf, US)
        .await;
    (spf, outcome)
}

#[tokio::test]
async fn spf_passes_fails_and_is_none_without_a_record() {
    let (dns, auth) = setup();
    dns.add_txt("sender.example", "v=spf1 ip4:127.0.0.1 -all");
    let from = address("bounce@sender.example");

    let pass = auth.check_mail_from(CLIENT, HELO, Some(&from), US).await;
    assert_eq!(
        pass,
        SpfResult {
            result: AuthResult::Pass,
            identity: SpfIdentity::MailFrom,
            domain: "sender.example".into(),
        }
    );
    assert_eq!(pass.resinfo(), "spf=pass smtp.mailfrom=sender.example");

    let fail = auth
        .check_mail_from(OTHER_CLIENT, HELO, Some(&from), US)
        .await;
    assert_eq!(fail.result, AuthResult::Fail);

    let elsewhere = address("someone@no-record.example");
    let none = auth
        .check_mail_from(CLIENT, HELO, Some(&elsewhere), US)
        .await;
    assert_eq!(none.result, AuthResult::None);
    assert_eq!(none.domain, "no-record.example");

    assert!(
        dns.queries().iter().any(|q| q == "sender.example TXT"),
        "lookups went to the fixture: {:?}",
        dns.queries()
    );
}

#[tokio::test]
async fn spf_for_the_null_sender_checks_the_helo_name() {
    let (dns, auth) = setup();
    dns.add_txt("mx.sender.example", "v=spf1 ip4:127.0.0.1 -all");
    let spf = auth
        .check_mail_from(CLIENT, "mx.sender.example.", None, US)
        .await;
    assert_eq!(spf.result, AuthResult::Pass);
    assert_eq!(spf.identity, SpfIdentity::Helo);
    assert_eq!(spf.resinfo(), "spf=pass smtp.helo=mx.sender.example");

    // An address literal has no SPF record to check.
    let literal = auth.check_mail_from(CLIENT, "[127.0.0.1]", None, US).await;
    assert_eq!(literal.result, AuthResult::None);
    assert_eq!(literal.resinfo(), "spf=none smtp.helo=\"[127.0.0.1]\"");
}

#[tokio::test]
async fn spf_permerror_and_softfail() {
    let (dns, auth) = setup();
    dns.add_txt(
        "sender.example",
        "v=spf1 ip4:127.0.0.1 include:loop.example -all",
    );
    dns.add_txt("loop.example", "v=spf1 include:loop.example -all");
    dns.add_txt("soft.example", "v=spf1 ~all");
    let from = address("bounce@sender.example");
    let looped = auth
        .check_mail_from(OTHER_CLIENT, HELO, Some(&from), US)
        .await;
    assert_eq!(looped.result, AuthResult::PermError);
    let soft = address("x@soft.example");
    let softfail = auth.check_mail_from(CLIENT, HELO, Some(&soft), US).await;
    assert_eq!(softfail.result, AuthResult::SoftFail);
}

#[tokio::test]
async fn an_ed25519_signature_passes_dkim_and_an_aligned_one_passes_dmarc() {
    let (dns, auth) = setup();
    let key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("sender.example", "sel", &key);
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);

    // SPF has no record here, so DMARC passes on DKIM alone.
    let (_, outcome) = check(&auth, CLIENT, &signed).await;
    assert_eq!(
        outcome.results,
        "spf=none smtp.mailfrom=sender.example; \
         dkim=pass header.d=sender.example header.s=sel; \
         dmarc=pass header.from=sender.example; arc=none"
    );
    assert_eq!(outcome.dkim, AuthResult::Pass);
    assert_eq!(outcome.dmarc, AuthResult::Pass);
    assert_eq!(outcome.arc, AuthResult::None);
    assert_eq!(outcome.dmarc_failure, None);
    assert_eq!(outcome.header_from.as_deref(), Some("sender.example"));
}

#[tokio::test]
async fn an_rsa_key_longer_than_one_txt_string_verifies() {
    let (dns, auth) = setup();
    let key = DkimTestKey::rsa_from_pem(RSA_PEM).expect("test key parses");
    assert!(key.dns_record().len() > 255, "{}", key.dns_record());
    dns.add_dkim_key("sender.example", "rsa", &key);
    let signed = sign_dkim(&message("sender.example"), "sender.example", "rsa", &key);
    let (_, outcome) = check(&auth, CLIENT, &signed).await;
    assert_eq!(outcome.dkim, AuthResult::Pass, "{}", outcome.results);
    assert!(
        outcome
            .results
            .contains("dkim=pass header.d=sender.example header.s=rsa"),
        "{}",
        outcome.results
    );
}

#[tokio::test]
async fn an_altered_body_fails_dkim_and_dmarc_reject_applies() {
    let (dns, auth) = setup();
    let key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("sender.example", "sel", &key);
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);
    let altered = String::from_utf8(signed)
        .unwrap()
        .replace("Hello, world.", "Hello, wallet.");

    let (_, outcome) = check(&auth, CLIENT, altered.as_bytes()).await;
    assert_eq!(outcome.dkim, AuthResult::Fail);
    assert_eq!(outcome.dmarc, AuthResult::Fail);
    assert_eq!(outcome.dmarc_failure, Some(DmarcPolicy::Reject));
    assert_eq!(
        outcome.results,
        "spf=none smtp.mailfrom=sender.example; \
         dkim=fail (body hash did not verify) header.d=sender.example header.s=sel; \
         dmarc=fail (p=reject) header.from=sender.example; arc=none"
    );
}

#[tokio::test]
async fn an_altered_header_fails_the_signature() {
    let (dns, auth) = setup();
    let key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("sender.example", "sel", &key);
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);
    let altered = String::from_utf8(signed)
        .unwrap()
        .replace("Subject: hello", "Subject: invoice");
    let (_, outcome) = check(&auth, CLIENT, altered.as_bytes()).await;
    assert_eq!(outcome.dkim, AuthResult::Fail, "{}", outcome.results);
    assert!(
        outcome
            .results
            .contains("dkim=fail (signature did not verify)")
    );
}

#[tokio::test]
async fn a_signature_whose_key_is_not_published_is_a_permerror() {
    let (_dns, auth) = setup();
    let key = DkimTestKey::generate_ed25519();
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);
    let (_, outcome) = check(&auth, CLIENT, &signed).await;
    assert_eq!(outcome.dkim, AuthResult::PermError, "{}", outcome.results);
    assert_eq!(outcome.dmarc, AuthResult::None);
}

#[tokio::test]
async fn dmarc_passes_on_aligned_spf_without_dkim() {
    let (dns, auth) = setup();
    dns.add_txt("sender.example", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let (spf, outcome) = check(&auth, CLIENT, &message("sender.example")).await;
    assert_eq!(spf.result, AuthResult::Pass);
    assert_eq!(
        outcome.results,
        "spf=pass smtp.mailfrom=sender.example; dkim=none; \
         dmarc=pass header.from=sender.example; arc=none"
    );
    assert_eq!(outcome.dmarc_failure, None);
}

#[tokio::test]
async fn dmarc_fails_when_nothing_aligns() {
    let (dns, auth) = setup();
    // SPF passes for the envelope domain and DKIM passes for a third
    // party, but the From domain is neither.
    dns.add_txt("bulk.example", "v=spf1 ip4:127.0.0.1 -all");
    let key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("bulk.example", "s1", &key);
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let signed = sign_dkim(&message("sender.example"), "bulk.example", "s1", &key);
    let from = address("bounce@bulk.example");
    let spf = auth.check_mail_from(CLIENT, HELO, Some(&from), US).await;
    let outcome = auth
        .check_message(&signed, CLIENT, HELO, Some(&from), &spf, US)
        .await;
    assert_eq!(
        outcome.results,
        "spf=pass smtp.mailfrom=bulk.example; dkim=pass header.d=bulk.example header.s=s1; \
         dmarc=fail (p=reject) header.from=sender.example; arc=none"
    );
    assert_eq!(outcome.dmarc_failure, Some(DmarcPolicy::Reject));
}

#[tokio::test]
async fn dmarc_quarantine_and_none_policies_travel_as_failures() {
    let (dns, auth) = setup();
    dns.add_txt("sender.example", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=quarantine");
    let (spf, outcome) = check(&auth, OTHER_CLIENT, &message("sender.example")).await;
    assert_eq!(spf.result, AuthResult::Fail);
    assert_eq!(outcome.dmarc, AuthResult::Fail);
    assert_eq!(outcome.dmarc_failure, Some(DmarcPolicy::Quarantine));
    assert!(outcome.results.contains("dmarc=fail (p=quarantine)"));

    dns.add_txt(
        "_dmarc.monitor.example",
        "v=DMARC1; p=none; rua=mailto:d@monitor.example",
    );
    let (_, outcome) = check(&auth, OTHER_CLIENT, &message("monitor.example")).await;
    assert_eq!(outcome.dmarc_failure, Some(DmarcPolicy::None));
}

#[tokio::test]
async fn without_a_dmarc_record_there_is_no_failure() {
    let (dns, auth) = setup();
    dns.add_txt("sender.example", "v=spf1 ip4:127.0.0.1 -all");
    let (_, outcome) = check(&auth, OTHER_CLIENT, &message("sender.example")).await;
    assert_eq!(outcome.dmarc, AuthResult::None);
    assert_eq!(outcome.dmarc_failure, None);
    assert_eq!(
        outcome.results,
        "spf=fail smtp.mailfrom=sender.example; dkim=none; \
         dmarc=none header.from=sender.example; arc=none"
    );
}

#[tokio::test]
async fn a_subdomain_gets_the_sp_policy_and_test_mode_lowers_it() {
    let (dns, auth) = setup();
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject; sp=quarantine");
    dns.add_a("news.sender.example", Ipv4Addr::new(192, 0, 2, 1));
    let (_, outcome) = check(&auth, OTHER_CLIENT, &message("news.sender.example")).await;
    assert_eq!(
        outcome.dmarc_failure,
        Some(DmarcPolicy::Quarantine),
        "{}",
        outcome.results
    );
    assert_eq!(outcome.header_from.as_deref(), Some("news.sender.example"));

    dns.add_txt("_dmarc.testing.example", "v=DMARC1; p=reject; t=y");
    let (_, outcome) = check(&auth, OTHER_CLIENT, &message("testing.example")).await;
    assert_eq!(outcome.dmarc_failure, Some(DmarcPolicy::Quarantine));
}

#[tokio::test]
async fn an_arc_chain_sealed_by_a_forwarder_passes_and_a_broken_one_fails() {
    let (dns, auth) = setup();
    let sender_key = DkimTestKey::generate_ed25519();
    let arc_key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("sender.example", "sel", &sender_key);
    dns.add_dkim_key("forwarder.example", "arc", &arc_key);
    let signed = sign_dkim(
        &message("sender.example"),
        "sender.example",
        "sel",
        &sender_key,
    );

    // What a forwarder does: verify, record its results, seal.
    let parsed = AuthenticatedMessage::parse(&signed).unwrap();
    let dkim = auth.inner.verify_dkim(&parsed).await;
    let arc = auth.inner.verify_arc(&parsed).await;
    let results = mail_auth::AuthenticationResults::new("mx.forwarder.example")
        .with_dkim_results(&dkim, "sender.example");
    let set = ArcSealer::from_key(arc_key.signing_key())
        .domain("forwarder.example")
        .selector("arc")
        .headers(["From", "To", "Subject", "DKIM-Signature"])
        .seal(&parsed, &results, &arc)
        .expect("mail-auth seals");
    let mut sealed = set.to_header().into_bytes();
    sealed.extend_from_slice(&signed);

    let (_, outcome) = check(&auth, CLIENT, &sealed).await;
    assert_eq!(outcome.arc, AuthResult::Pass, "{}", outcome.results);
    assert!(
        outcome.results.ends_with("; arc=pass"),
        "{}",
        outcome.results
    );

    // The same set without its ARC-Authentication-Results: a broken chain.
    let headers = set.to_header();
    let broken = without_results(&headers);
    assert!(broken.len() < headers.len());
    let broken = [broken.as_bytes(), &signed].concat();
    let (_, outcome) = check(&auth, CLIENT, &broken).await;
    assert_eq!(outcome.arc, AuthResult::Fail, "{}", outcome.results);
    assert_eq!(outcome.dkim, AuthResult::Pass);
}

#[tokio::test]
async fn garbage_never_panics() {
    let (dns, auth) = setup();
    let key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("sender.example", "sel", &key);
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    dns.add_txt("sender.example", "v=spf1 ip4:127.0.0.1 -all");
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);

    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n".to_vec(),
        b"\x00\xff\xfe garbage \x80\x81".to_vec(),
        b"no headers at all, just text".to_vec(),
        b"From:\r\n\r\n".to_vec(),
        b"From: <>\r\nFrom: a@x.example, b@y.example\r\n\r\nbody".to_vec(),
        b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=; b=!!!; bh=???\r\nFrom: a@sender.example\r\n\r\n"
            .to_vec(),
        b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=sender.example; s=sel; \
          h=From; bh=AAAA; b=AAAA; l=99999999999999999999\r\nFrom: a@sender.example\r\n\r\nx"
            .to_vec(),
        b"ARC-Seal: i=0\r\nARC-Message-Signature: i=99999999999\r\nARC-Authentication-Results: \
          i=-1\r\nFrom: a@sender.example\r\n\r\n"
            .to_vec(),
        [b"From: a@sender.example\r\nSubject: ".as_slice(), &[b'x'; 100_000], b"\r\n\r\n"].concat(),
    ];
    // Many signatures (the same one, re-added).
    let signature_len = (0..signed.len() - 2)
        .find(|&i| &signed[i..i + 2] == b"\r\n" && !matches!(signed[i + 2], b' ' | b'\t'))
        .unwrap()
        + 2;
    let mut many = Vec::new();
    for _ in 0..30 {
        many.extend_from_slice(&signed[..signature_len]);
    }
    many.extend_from_slice(&signed);
    let (_, outcome) = check(&auth, CLIENT, &many).await;
    assert_eq!(
        outcome.results.matches("dkim=pass").count(),
        10,
        "{}",
        outcome.results
    );
    inputs.push(many);
    // Deterministic mutations of a signed message: flipped, dropped and
    // duplicated bytes, truncations.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..150 {
        let mut m = signed.clone();
        for _ in 0..(1 + round % 5) {
            let at = (next() as usize) % m.len();
            match next() % 4 {
                0 => m[at] ^= (next() % 255 + 1) as u8,
                1 => {
                    m.remove(at);
                }
                2 => m.insert(at, m[at]),
                _ => m.truncate(at.max(1)),
            }
        }
        inputs.push(m);
    }

    for raw in &inputs {
        let (_, outcome) = check(&auth, CLIENT, raw).await;
        assert!(
            outcome
                .results
                .starts_with("spf=pass smtp.mailfrom=sender.example; dkim=")
        );
        assert!(
            !outcome.results.contains(['\r', '\n']),
            "{}",
            outcome.results
        );
        assert!(
            outcome.results.matches("dkim=").count() <= 10,
            "{}",
            outcome.results
        );
    }

    let (_, empty) = check(&auth, CLIENT, b"").await;
    assert_eq!(
        empty.results,
        "spf=pass smtp.mailfrom=sender.example; dkim=permerror (message could not be parsed); \
         dmarc=permerror (message could not be parsed); arc=none"
    );
    assert_eq!(empty.dmarc_failure, None);
}

#[tokio::test]
async fn an_unreachable_resolver_gives_temperror_not_fail() {
    // A loopback port nobody listens on.
    let closed: SocketAddr = {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let auth = Authenticator::new(Some(closed))
        .unwrap()
        .with_deadline(Duration::from_millis(500));
    let key = DkimTestKey::generate_ed25519();
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);
    let started = std::time::Instant::now();
    let (spf, outcome) = check(&auth, CLIENT, &signed).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(spf.result, AuthResult::TempError);
    assert_eq!(outcome.dkim, AuthResult::TempError, "{}", outcome.results);
    assert_eq!(outcome.dmarc, AuthResult::TempError, "{}", outcome.results);
    assert_eq!(outcome.dmarc_failure, None);
}

#[tokio::test]
async fn a_silent_resolver_hits_the_deadline_and_never_turns_into_a_dmarc_failure() {
    let (dns, auth) = setup();
    let auth = auth.with_deadline(Duration::from_millis(500));
    let key = DkimTestKey::generate_ed25519();
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    dns.add_unresponsive("sel._domainkey.sender.example");
    dns.add_unresponsive("sender.example");
    let signed = sign_dkim(&message("sender.example"), "sender.example", "sel", &key);

    let started = std::time::Instant::now();
    let (spf, outcome) = check(&auth, CLIENT, &signed).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(spf.result, AuthResult::TempError);
    assert_eq!(outcome.dkim, AuthResult::TempError, "{}", outcome.results);
    assert_eq!(outcome.dmarc, AuthResult::TempError, "{}", outcome.results);
    assert_eq!(outcome.dmarc_failure, None);
}

#[tokio::test]
async fn the_fixture_serves_long_txt_over_tcp_and_answers_nxdomain_and_nodata() {
    let (dns, auth) = setup();
    // Too long for one UDP answer: the resolver must come back over TCP.
    let long: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    dns.add_txt("long.example", &long);
    dns.add_mx("sender.example", 10, "mx.sender.example");
    dns.add_a("mx.sender.example", Ipv4Addr::new(192, 0, 2, 25));
    dns.add_aaaa("mx.sender.example", "2001:db8::25".parse().unwrap());

    let txt = auth.inner.txt_raw_lookup("long.example").await.unwrap();
    assert_eq!(txt, long.as_bytes());

    let resolver = auth.inner.resolver();
    let mx = resolver.mx_lookup("sender.example.").await.unwrap();
    let exchanges: Vec<_> = mx.answers().iter().map(|r| r.data.to_string()).collect();
    assert_eq!(exchanges, ["10 mx.sender.example."]);
    let a = resolver.ipv4_lookup("MX.Sender.Example.").await.unwrap();
    assert_eq!(a.answers().len(), 1);
    let aaaa = resolver.ipv6_lookup("mx.sender.example.").await.unwrap();
    assert_eq!(aaaa.answers().len(), 1);

    // Known name, other type: NOERROR, no answers. Unknown: NXDOMAIN.
    // `example` only has names below it: an empty non-terminal.
    use hickory_resolver::proto::op::ResponseCode;
    for (name, code) in [
        ("long.example.", ResponseCode::NoError),
        ("example.", ResponseCode::NoError),
        ("nothing.example.", ResponseCode::NXDomain),
    ] {
        let err = resolver.ipv4_lookup(name).await.unwrap_err();
        let got = match mail_auth::Error::from(err) {
            mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code)) => code,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(got, code, "{name}");
    }
}

#[test]
fn the_checks_can_run_in_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let auth = Authenticator::new(Some("127.0.0.1:9".parse().unwrap())).unwrap();
    let spf = SpfResult {
        result: AuthResult::None,
        identity: SpfIdentity::Helo,
        domain: String::new(),
    };
    // Never polled: only the futures' types matter.
    assert_send(&auth.check_mail_from(CLIENT, HELO, None, US));
    assert_send(&auth.check_message(b"", CLIENT, HELO, None, &spf, US));
}

#[test]
fn both_resolver_configurations_build_outside_a_runtime() {
    // Builds only: no lookup, so no test depends on this machine's DNS.
    Authenticator::new(Some("127.0.0.1:9".parse().unwrap())).expect("fixed server");
    Authenticator::new(None).expect("system resolver or the fallback");
}

/// Our own RSA key (the test PEM), as `stratus domain add` would store it,
/// published at `arc._domainkey.<domain>`.
fn forwarder_key(dns: &DnsFixture, domain: &str) -> crate::dkim::DkimKey {
    let base64: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = stratus_core::base64::decode(&base64).expect("test key is base64");
    let key =
        crate::dkim::DkimKey::from_pkcs8(crate::dkim::Algorithm::Rsa, der).expect("test key loads");
    dns.add_txt(&format!("arc._domainkey.{domain}"), &key.dns_record());
    key
}

/// `headers` (an ARC set) without its ARC-Authentication-Results: a
/// broken chain.
fn without_results(headers: &str) -> String {
    let mut kept = String::new();
    let mut skipping = false;
    for line in headers.split_inclusive("\r\n") {
        if !line.starts_with([' ', '\t']) {
            skipping = line.starts_with("ARC-Authentication-Results:");
        }
        if !skipping {
            kept.push_str(line);
        }
    }
    kept
}

/// A message from sender.example signed with a key published in `dns`.
fn signed_by_sender(dns: &DnsFixture) -> Vec<u8> {
    let key = DkimTestKey::generate_ed25519();
    dns.add_dkim_key("sender.example", "sel", &key);
    sign_dkim(&message("sender.example"), "sender.example", "sel", &key)
}

/// A message from 127.0.0.1 with `from` as its envelope sender.
fn arrival(from: &Address) -> crate::arc::Arrival<'_> {
    crate::arc::Arrival {
        ip: CLIENT,
        helo: HELO,
        mail_from: Some(from),
    }
}

/// forwarder.example sealing with `key`.
fn sealer(key: &crate::dkim::DkimKey) -> crate::arc::Sealer<'_> {
    crate::arc::Sealer {
        key,
        domain: "forwarder.example",
        selector: "arc",
        hostname: "mx.forwarder.example",
    }
}

/// The value of the first `name:` field in `headers`, unfolded.
fn field(headers: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in headers.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if inside {
                out.push_str(line.trim_end());
            }
            continue;
        }
        if inside {
            break;
        }
        if let Some(value) = line.strip_prefix(&format!("{name}:")) {
            inside = true;
            out.push_str(value.trim_end());
        }
    }
    out
}

#[tokio::test]
async fn a_forward_is_sealed_and_a_second_forwarder_extends_the_chain() {
    use crate::arc::{Arrival, Sealer};
    let (dns, auth) = setup();
    dns.add_txt("sender.example", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let key = forwarder_key(&dns, "forwarder.example");
    let signed = signed_by_sender(&dns);
    let from = address("bounce@sender.example");

    let (arrival, sealer) = (arrival(&from), sealer(&key));
    let set = auth
        .arc_seal(&signed, &signed, arrival, sealer)
        .await
        .expect("sealed");
    let seal = field(&set, "ARC-Seal");
    assert!(seal.contains("i=1;") && seal.contains("cv=none"), "{set}");
    assert!(
        seal.contains("a=rsa-sha256") && seal.contains("d=forwarder.example"),
        "{set}"
    );
    let aar = field(&set, "ARC-Authentication-Results");
    assert!(aar.starts_with(" i=1; mx.forwarder.example;"), "{aar}");
    for result in ["spf=pass", "dkim=pass", "dmarc=pass", "arc=none"] {
        assert!(aar.contains(result), "{result} in {aar}");
    }
    assert!(
        field(&set, "ARC-Message-Signature").contains(":DKIM-Signature:"),
        "{set}"
    );

    // Forwarded from another address, with a field in front: SPF fails
    // there, the chain passes.
    let forwarded = [
        b"Delivered-To: alias@forwarder.example\r\n".as_slice(),
        set.as_bytes(),
        &signed,
    ]
    .concat();
    let (spf, outcome) = check(&auth, OTHER_CLIENT, &forwarded).await;
    assert_eq!(spf.result, AuthResult::Fail);
    assert_eq!(outcome.arc, AuthResult::Pass, "{}", outcome.results);

    // A second forwarder reached from there: SPF fails, DKIM and the chain
    // pass, so it seals too, as instance 2 with cv=pass.
    let second_key = forwarder_key(&dns, "second.example");
    let sealer = Sealer {
        key: &second_key,
        domain: "second.example",
        ..sealer
    };
    let arrival = Arrival {
        ip: OTHER_CLIENT,
        ..arrival
    };
    let second = auth
        .arc_seal(&forwarded, &forwarded, arrival, sealer)
        .await
        .expect("sealed again");
    let seal = field(&second, "ARC-Seal");
    assert!(
        seal.contains("i=2;") && seal.contains("cv=pass"),
        "{second}"
    );
    assert!(
        field(&second, "ARC-Authentication-Results").contains("spf=fail"),
        "{second}"
    );
    let twice = [second.as_bytes(), &forwarded].concat();
    let (_, outcome) = check(&auth, OTHER_CLIENT, &twice).await;
    assert_eq!(outcome.arc, AuthResult::Pass, "{}", outcome.results);

    // A body changed after the seal breaks it.
    let mut altered = twice.clone();
    altered.extend_from_slice(b"P.S. pay here\r\n");
    let (_, outcome) = check(&auth, OTHER_CLIENT, &altered).await;
    assert_eq!(outcome.arc, AuthResult::Fail, "{}", outcome.results);
}

#[tokio::test]
async fn mail_with_nothing_that_passed_is_not_sealed() {
    use crate::arc::NotSealed;
    let (dns, auth) = setup();
    let key = forwarder_key(&dns, "forwarder.example");
    let from = address("bounce@sender.example");
    let (arrival, sealer) = (arrival(&from), sealer(&key));
    // No SPF record, no signature.
    let plain = message("sender.example");
    let outcome = auth.arc_seal(&plain, &plain, arrival, sealer).await;
    assert_eq!(outcome, Err(NotSealed::NothingPassed));
    // SPF that fails for the client.
    dns.add_txt("sender.example", "v=spf1 ip4:192.0.2.1 -all");
    let outcome = auth.arc_seal(&plain, &plain, arrival, sealer).await;
    assert_eq!(outcome, Err(NotSealed::NothingPassed));
    // Garbage is an error, never a panic.
    let outcome = auth
        .arc_seal(b"\x00\xff", b"\x00\xff", arrival, sealer)
        .await;
    assert!(outcome.is_err());
}

#[tokio::test]
async fn the_seal_signs_what_is_sent_and_reports_what_arrived() {
    use crate::arc::NotSealed;
    let (dns, auth) = setup();
    let key = forwarder_key(&dns, "forwarder.example");
    let signed = signed_by_sender(&dns);
    let from = address("bounce@sender.example");
    // The body as sent differs (a re-encoding, say): DKIM of the sender
    // fails on it, but the seal reports the signature as it arrived and
    // covers the message as sent.
    let mut sent = signed.clone();
    sent.extend_from_slice(b"Re-encoded.\r\n");
    let set = auth
        .arc_seal(&signed, &sent, arrival(&from), sealer(&key))
        .await
        .expect("sealed");
    assert!(
        field(&set, "ARC-Authentication-Results").contains("dkim=pass"),
        "{set}"
    );
    let forwarded = [set.as_bytes(), &sent].concat();
    let (_, outcome) = check(&auth, OTHER_CLIENT, &forwarded).await;
    assert_eq!(outcome.arc, AuthResult::Pass, "{}", outcome.results);
    assert_eq!(outcome.dkim, AuthResult::Fail, "{}", outcome.results);

    // A chain that arrived broken gets no further set.
    let broken = without_results(&set);
    let broken = [broken.as_bytes(), &sent].concat();
    let outcome = auth
        .arc_seal(&broken, &broken, arrival(&from), sealer(&key))
        .await;
    assert_eq!(outcome, Err(NotSealed::ChainFailed));
}

#[tokio::test]
async fn published_records_are_read_as_an_admin_checks_them() {
    let (dns, auth) = setup();
    dns.add_mx("shop.example", 10, "MX.Host.Example");
    dns.add_txt("shop.example", "v=spf1 mx -all");
    dns.add_txt("shop.example", "google-site-verification=x");
    let long = "k".repeat(400);
    dns.add_txt("s1._domainkey.shop.example", &long);
    dns.add_cname("mta-sts.shop.example", "mx.host.example");
    dns.add_unresponsive("slow.example");

    assert_eq!(
        auth.published("shop.example", "MX").await.unwrap(),
        ["mx.host.example"]
    );
    let mut txt = auth.published("shop.example", "TXT").await.unwrap();
    txt.sort();
    assert_eq!(txt, ["google-site-verification=x", "v=spf1 mx -all"]);
    assert_eq!(
        auth.published("s1._domainkey.shop.example", "TXT")
            .await
            .unwrap(),
        [long],
        "strings of one record are joined"
    );
    assert_eq!(
        auth.published("mta-sts.shop.example", "CNAME")
            .await
            .unwrap(),
        ["mx.host.example"]
    );
    assert!(
        auth.published("none.example", "TXT")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        auth.published("shop.example", "CNAME")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(auth.published("shop.example", "A").await.is_err());
    let slow = auth
        .clone()
        .with_deadline(std::time::Duration::from_millis(300));
    assert!(slow.published("slow.example", "TXT").await.is_err());
}
