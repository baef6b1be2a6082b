//! The service's results and refusals, as the HTTP API will see them: typed
//! values, errors by kind, nothing secret in what is returned.

use stratus_runtime::config::{Config, Flags};

use super::*;
use crate::testutil::TempDir;

async fn service(name: &str) -> (TempDir, Service) {
    let dir = TempDir::new(name);
    let mut flags = Flags::default();
    flags.set("data_dir", dir.path().join("data").to_str().unwrap());
    flags.set("hostname", "mx.example.com");
    let config = Config::from_sources(&flags, &|_| None).unwrap();
    let service = Service::open(&config).await.unwrap();
    (dir, service)
}

fn domain(s: &str) -> stratus_core::Domain {
    parse_domain(s).unwrap()
}

fn address(s: &str) -> stratus_core::Address {
    parse_address(s).unwrap()
}

#[tokio::test]
async fn operations_return_values_and_refusals_have_a_kind() {
    let (_dir, s) = service("service-kinds").await;
    let books = domain("Bücher.Example");
    let added = s.add_domain(&books).await.unwrap();
    assert_eq!(added.domain.name, "xn--bcher-kva.example");
    assert_eq!(added.domain.unicode.as_deref(), Some("bücher.example"));
    assert_eq!(s.list_domains().await.unwrap(), vec![added.domain.clone()]);

    let records = s.dns_records(&books).await.unwrap();
    assert_eq!(records, added.records, "add returns what dns prints");
    let purposes: Vec<&str> = records.iter().map(|r| r.purpose).collect();
    assert_eq!(
        purposes,
        [
            "MX", "SPF", "DKIM", "DKIM", "DMARC", "TLS-RPT", "MTA-STS", "MTA-STS"
        ]
    );
    assert_eq!(
        records[7].zone_line(),
        "mta-sts.xn--bcher-kva.example.\tIN CNAME mx.example.com."
    );
    // The TXT id is the policy's, and the policy parses as senders read it.
    let policy = s.mta_sts_policy();
    assert!(
        records[6].value.starts_with("\"v=STSv1; id="),
        "{}",
        records[6].value
    );
    assert_eq!(records[6].value.len(), "\"v=STSv1; id=\"".len() + 16);
    let parsed = stratus_outbound::mta_sts::Policy::parse(&policy).unwrap();
    assert_eq!(parsed.mx, ["mx.example.com"]);
    assert_eq!(parsed.mode, stratus_outbound::mta_sts::Mode::Testing);
    assert_eq!(
        records[0].zone_line(),
        "xn--bcher-kva.example.\tIN MX 10 mx.example.com."
    );
    // A 2048-bit RSA key is longer than one TXT string may be.
    let rsa = &records[3];
    assert!(rsa.value.contains("\" \""), "{}", rsa.value);

    let alice = s
        .add_user(
            &address("alice@xn--bcher-kva.example"),
            "a passphrase".into(),
            Some(1 << 20),
        )
        .await
        .unwrap();
    assert_eq!(
        alice,
        UserInfo {
            address: "alice@xn--bcher-kva.example".into(),
            quota: Some(1 << 20),
            used: 0,
            mailboxes: 6,
            disabled: false,
            admin: None,
            app_passwords: 0,
        }
    );
    let json = serde_json::to_string(&s.list_users(None).await.unwrap()).unwrap();
    assert_eq!(
        json,
        r#"[{"address":"alice@xn--bcher-kva.example","quota":1048576,"used":0,"mailboxes":6,"disabled":false,"admin":null,"app_passwords":0}]"#
    );
    assert!(!json.contains("passphrase") && !json.contains("argon2"));

    let kinds = [
        parse_domain("not a domain").unwrap_err(),
        parse_address("no-at-sign").unwrap_err(),
        s.add_domain(&books).await.unwrap_err(),
        s.dns_records(&domain("other.example")).await.unwrap_err(),
        s.del_domain(&books).await.unwrap_err(),
        s.add_user(&address("bob@other.example"), "pw".into(), None)
            .await
            .unwrap_err(),
        s.add_user(&address("bob@bücher.example"), "pw\r".into(), None)
            .await
            .unwrap_err(),
        s.add_user(&address("bob@bücher.example"), "nine char".into(), None)
            .await
            .unwrap_err(),
        s.set_password(&address("alice@bücher.example"), "QWERTYUIOP".into())
            .await
            .unwrap_err(),
        s.set_password(&address("nobody@bücher.example"), "pw".into())
            .await
            .unwrap_err(),
        s.add_alias(&address("team@bücher.example"), Vec::new())
            .await
            .unwrap_err(),
        s.add_alias(
            &address("alice@bücher.example"),
            vec![address("x@y.example")],
        )
        .await
        .unwrap_err(),
    ];
    let kind = |e: &ServiceError| match e {
        ServiceError::Invalid(_) => "invalid",
        ServiceError::NotFound(_) => "not found",
        ServiceError::Conflict(_) => "conflict",
        ServiceError::Forbidden(_) => "forbidden",
        ServiceError::Unavailable(_) => "unavailable",
        ServiceError::Internal(_) => "internal",
    };
    assert_eq!(
        kinds.iter().map(kind).collect::<Vec<_>>(),
        [
            "invalid",   // not a domain
            "invalid",   // not an address
            "conflict",  // already hosted
            "not found", // not hosted
            "conflict",  // still has a user
            "not found", // domain not hosted
            "invalid",   // a control character in the password
            "invalid",   // a password shorter than ten characters
            "invalid",   // one of the thousand most common passwords
            "not found", // no such user
            "invalid",   // an alias without targets
            "conflict",  // an alias on a user's address
        ]
    );
    // Nothing was written by a refusal.
    assert_eq!(s.list_users(None).await.unwrap().len(), 1);
    assert!(s.list_aliases(None).await.unwrap().is_empty());
}

/// An alias must reach someone: targets here must exist, and no target
/// may lead back to the alias.
#[tokio::test]
async fn aliases_lead_somewhere_and_never_back() {
    let (_dir, s) = service("service-alias-targets").await;
    s.add_domain(&domain("example.com")).await.unwrap();
    s.add_user(&address("alice@example.com"), "a passphrase".into(), None)
        .await
        .unwrap();
    let refused = |e: ServiceError| match e {
        ServiceError::NotFound(t) => format!("not found: {t}"),
        ServiceError::Conflict(t) => format!("conflict: {t}"),
        other => panic!("{other:?}"),
    };
    let err = s
        .add_alias(
            &address("team@example.com"),
            vec![address("ghost@example.com")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(err),
        "not found: target ghost@example.com does not exist: no user or alias has that address here"
    );
    let err = s
        .add_alias(
            &address("self@example.com"),
            vec![address("self@example.com")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(err),
        "conflict: alias self@example.com would lead back to itself through self@example.com"
    );
    // Users (with a plus tag), other aliases, and addresses elsewhere.
    for (alias, target) in [
        ("l2@example.com", "alice+lists@example.com"),
        ("l1@example.com", "l2@example.com"),
        ("out@example.com", "friend@elsewhere.example"),
    ] {
        s.add_alias(&address(alias), vec![address(target)])
            .await
            .unwrap();
    }
    // l2 goes; l2 → l1 would close the circle l1 → l2 → l1.
    s.del_alias(&address("l2@example.com")).await.unwrap();
    let err = s
        .add_alias(&address("l2@example.com"), vec![address("l1@example.com")])
        .await
        .unwrap_err();
    assert_eq!(
        refused(err),
        "conflict: alias l2@example.com would lead back to itself through l1@example.com"
    );
    assert_eq!(s.list_aliases(None).await.unwrap().len(), 2);
}
