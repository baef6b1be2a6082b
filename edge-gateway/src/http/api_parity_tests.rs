//! The admin API's routes for what the command line also does: catch-all,
//! DKIM rotation, SRS, identities, forwarding, the mailbox view, Sieve
//! and the away reply, lists, spam settings. Each works for an admin;
//! a domain admin finds nothing of another domain (404) and cannot
//! reach into it through a target (an identity, a catch-all).

use serde_json::{Value, json};

use super::api_tests::{Api, api, is_problem, items};
use crate::service::Role;

/// a.example with ann (and b.example with bob and the list
/// news@b.example); an admin key.
async fn tenants(name: &str) -> (Api, String) {
    let api = api(name).await;
    let admin = api.two_domains().await;
    let k = Some(admin.as_str());
    for user in ["ann@a.example", "bob@b.example"] {
        let body = json!({"address": user, "password": "a fine password"}).to_string();
        let a = api.call("POST", "/api/v1/users", k, Some(&body)).await;
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = api
        .call(
            "POST",
            "/api/v1/lists",
            k,
            Some(r#"{"address": "news@b.example", "owners": ["bob@b.example"]}"#),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    (api, admin)
}

async fn ok(api: &Api, key: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let a = api.call(method, path, Some(key), body).await;
    assert!((200..300).contains(&a.status), "{method} {path}: {a:?}");
    a.body
}

#[tokio::test]
async fn a_domain_admin_reaches_nothing_of_another_domain_through_the_new_routes() {
    let (api, admin) = tenants("api-parity-tenants").await;
    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;
    let m = Some(mine.as_str());
    let probes: &[(&str, &str, Option<&str>)] = &[
        (
            "PUT",
            "/api/v1/domains/b.example/catch-all",
            Some(r#"{"target": "bob@b.example"}"#),
        ),
        ("DELETE", "/api/v1/domains/b.example/catch-all", None),
        ("GET", "/api/v1/domains/b.example/dkim", None),
        ("POST", "/api/v1/domains/b.example/dkim/rotate", None),
        ("POST", "/api/v1/domains/b.example/dkim/activate", None),
        ("DELETE", "/api/v1/domains/b.example/dkim/stratus-rsa", None),
        ("GET", "/api/v1/users/bob@b.example/identities", None),
        (
            "POST",
            "/api/v1/users/bob@b.example/identities",
            Some(r#"{"address": "x@a.example"}"#),
        ),
        (
            "DELETE",
            "/api/v1/users/bob@b.example/identities/x@a.example",
            None,
        ),
        ("GET", "/api/v1/users/bob@b.example/forward", None),
        (
            "PUT",
            "/api/v1/users/bob@b.example/forward",
            Some(r#"{"targets": ["eve@a.example"]}"#),
        ),
        ("DELETE", "/api/v1/users/bob@b.example/forward", None),
        ("GET", "/api/v1/users/bob@b.example/mailboxes", None),
        ("GET", "/api/v1/users/bob@b.example/sieve", None),
        (
            "PATCH",
            "/api/v1/users/bob@b.example/sieve",
            Some(r#"{"active": null}"#),
        ),
        ("GET", "/api/v1/users/bob@b.example/sieve/s", None),
        (
            "PUT",
            "/api/v1/users/bob@b.example/sieve/s",
            Some(r#"{"script": "keep;"}"#),
        ),
        (
            "PATCH",
            "/api/v1/users/bob@b.example/sieve/s",
            Some(r#"{"name": "t"}"#),
        ),
        ("DELETE", "/api/v1/users/bob@b.example/sieve/s", None),
        ("GET", "/api/v1/users/bob@b.example/vacation", None),
        (
            "PUT",
            "/api/v1/users/bob@b.example/vacation",
            Some(r#"{"body": "away"}"#),
        ),
        ("DELETE", "/api/v1/users/bob@b.example/vacation", None),
        ("GET", "/api/v1/lists?domain=b.example", None),
        (
            "POST",
            "/api/v1/lists",
            Some(r#"{"address": "x@b.example"}"#),
        ),
        ("GET", "/api/v1/lists/news@b.example", None),
        ("DELETE", "/api/v1/lists/news@b.example", None),
        ("GET", "/api/v1/lists/news@b.example/members", None),
        (
            "POST",
            "/api/v1/lists/news@b.example/members",
            Some(r#"{"addresses": ["eve@a.example"]}"#),
        ),
        (
            "DELETE",
            "/api/v1/lists/news@b.example/members/bob@b.example",
            None,
        ),
        ("GET", "/api/v1/lists/news@b.example/held", None),
        (
            "POST",
            "/api/v1/lists/news@b.example/held/0123456789abcdef/approve",
            None,
        ),
        (
            "DELETE",
            "/api/v1/lists/news@b.example/held/0123456789abcdef",
            None,
        ),
        ("GET", "/api/v1/spam/b.example", None),
        ("GET", "/api/v1/spam/bob@b.example", None),
        ("PATCH", "/api/v1/spam/b.example", Some(r#"{"junk": 1}"#)),
        (
            "PATCH",
            "/api/v1/spam/bob@b.example",
            Some(r#"{"allow": {"add": ["a.example"]}}"#),
        ),
        // Reaching out of its domains from inside them.
        (
            "POST",
            "/api/v1/users/ann@a.example/identities",
            Some(r#"{"address": "boss@b.example"}"#),
        ),
        (
            "PUT",
            "/api/v1/domains/a.example/catch-all",
            Some(r#"{"target": "bob@b.example"}"#),
        ),
    ];
    for (method, path, body) in probes {
        let a = api.call(method, path, m, *body).await;
        assert!(is_problem(&a, 404), "{method} {path}: {a:?}");
    }
    // Admin-wide settings are an admin's.
    for (method, path, body) in [
        ("GET", "/api/v1/srs", None),
        ("PATCH", "/api/v1/srs", Some(r#"{"rotate": true}"#)),
        ("GET", "/api/v1/sieve/global", None),
        (
            "PUT",
            "/api/v1/sieve/global/g",
            Some(r#"{"script": "keep;"}"#),
        ),
        ("DELETE", "/api/v1/sieve/global/g", None),
    ] {
        let a = api.call(method, path, m, body).await;
        assert!(is_problem(&a, 403), "{method} {path}: {a:?}");
    }
    // Nothing of b.example changed.
    let k = admin.as_str();
    let list = ok(&api, k, "GET", "/api/v1/lists/news@b.example", None).await;
    assert_eq!(list["members"], 0, "{list}");
    let fwd = ok(&api, k, "GET", "/api/v1/users/bob@b.example/forward", None).await;
    assert_eq!(fwd, json!({"targets": [], "keep": true}));
    let spam = ok(&api, k, "GET", "/api/v1/spam/b.example", None).await;
    assert_eq!(spam["junk"], Value::Null, "{spam}");
    let domain = ok(&api, k, "GET", "/api/v1/domains/b.example", None).await;
    assert_eq!(domain["catch_all"], Value::Null, "{domain}");
    let keys = ok(&api, k, "GET", "/api/v1/domains/b.example/dkim", None).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 2, "{keys}");

    // Within its domain, a domain admin does all of it.
    let m = mine.as_str();
    ok(
        &api,
        m,
        "POST",
        "/api/v1/users/ann@a.example/identities",
        Some(r#"{"address": "sales@a.example"}"#),
    )
    .await;
    ok(
        &api,
        m,
        "PUT",
        "/api/v1/domains/a.example/catch-all",
        Some(r#"{"target": "ann@a.example"}"#),
    )
    .await;
    ok(
        &api,
        m,
        "POST",
        "/api/v1/lists",
        Some(
            r#"{"address": "team@a.example", "policy": "moderated", "owners": ["ann@a.example"]}"#,
        ),
    )
    .await;
    let lists = api.call("GET", "/api/v1/lists", Some(m), None).await;
    assert_eq!(
        items(&lists, "address"),
        [json!("team@a.example")],
        "{lists:?}"
    );
}

#[tokio::test]
async fn an_admin_does_through_the_api_what_the_command_line_does() {
    let (api, admin) = tenants("api-parity-admin").await;
    let k = admin.as_str();

    // Catch-all.
    let d = ok(
        &api,
        k,
        "PUT",
        "/api/v1/domains/a.example/catch-all",
        Some(r#"{"target": "ann@a.example"}"#),
    )
    .await;
    assert_eq!(d["catch_all"], "ann@a.example");
    let a = api
        .call(
            "PUT",
            "/api/v1/domains/a.example/catch-all",
            Some(k),
            Some(r#"{"target": "nobody@a.example"}"#),
        )
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    let d = ok(
        &api,
        k,
        "DELETE",
        "/api/v1/domains/a.example/catch-all",
        None,
    )
    .await;
    assert_eq!(d["catch_all"], Value::Null);

    // Identities.
    ok(
        &api,
        k,
        "POST",
        "/api/v1/users/ann@a.example/identities",
        Some(r#"{"address": "ceo@b.example"}"#),
    )
    .await;
    let a = api
        .call(
            "POST",
            "/api/v1/users/ann@a.example/identities",
            Some(k),
            Some(r#"{"address": "ceo@b.example"}"#),
        )
        .await;
    assert!(is_problem(&a, 409), "{a:?}");
    let ids = api
        .call(
            "GET",
            "/api/v1/users/ann@a.example/identities",
            Some(k),
            None,
        )
        .await;
    assert_eq!(items(&ids, "identity"), [json!("ceo@b.example")]);
    ok(
        &api,
        k,
        "DELETE",
        "/api/v1/users/ann@a.example/identities/ceo@b.example",
        None,
    )
    .await;

    // Forwarding.
    let f = ok(
        &api,
        k,
        "PUT",
        "/api/v1/users/ann@a.example/forward",
        Some(r#"{"targets": ["ann@elsewhere.example"], "keep": true}"#),
    )
    .await;
    assert_eq!(
        f,
        json!({"targets": ["ann@elsewhere.example"], "keep": true})
    );
    let a = api
        .call(
            "PUT",
            "/api/v1/users/ann@a.example/forward",
            Some(k),
            Some(r#"{"targets": []}"#),
        )
        .await;
    assert!(is_problem(&a, 400), "{a:?}");
    ok(
        &api,
        k,
        "DELETE",
        "/api/v1/users/ann@a.example/forward",
        None,
    )
    .await;

    // The mailbox view.
    let a = api
        .call(
            "GET",
            "/api/v1/users/ann@a.example/mailboxes",
            Some(k),
            None,
        )
        .await;
    let names = items(&a, "name");
    assert!(
        names.contains(&json!("INBOX")) && names.contains(&json!("Sent")),
        "{a:?}"
    );
    let sent = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Sent")
        .unwrap();
    assert_eq!(
        (&sent["special_use"], &sent["messages"]),
        (&json!("\\Sent"), &json!(0)),
        "{sent}"
    );

    // Sieve and the away reply.
    let a = api
        .call(
            "PUT",
            "/api/v1/users/ann@a.example/sieve/broken",
            Some(k),
            Some(r#"{"script": "if true {"}"#),
        )
        .await;
    assert!(is_problem(&a, 400), "{a:?}");
    let script =
        r#"{"script": "require \"fileinto\";\nfileinto \"Archive\";\n", "activate": true}"#;
    ok(
        &api,
        k,
        "PUT",
        "/api/v1/users/ann@a.example/sieve/filters",
        Some(script),
    )
    .await;
    let s = ok(
        &api,
        k,
        "GET",
        "/api/v1/users/ann@a.example/sieve/filters",
        None,
    )
    .await;
    assert!(s["script"].as_str().unwrap().contains("fileinto"), "{s}");
    let v = ok(
        &api,
        k,
        "PUT",
        "/api/v1/users/ann@a.example/vacation",
        Some(r#"{"body": "Away until Monday.", "days": 3}"#),
    )
    .await;
    assert!(
        v["active"] == true && v["script"].as_str().unwrap().contains(":days 3"),
        "{v}"
    );
    let a = api
        .call(
            "PUT",
            "/api/v1/users/ann@a.example/vacation",
            Some(k),
            Some(r#"{"body": "x", "days": 0}"#),
        )
        .await;
    assert!(is_problem(&a, 400), "{a:?}");
    ok(
        &api,
        k,
        "DELETE",
        "/api/v1/users/ann@a.example/vacation",
        None,
    )
    .await;
    let a = api
        .call("GET", "/api/v1/users/ann@a.example/sieve", Some(k), None)
        .await;
    let active: Vec<_> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["active"] == true)
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(
        active,
        [json!("filters")],
        "the script active before is active again: {a:?}"
    );
    ok(
        &api,
        k,
        "PATCH",
        "/api/v1/users/ann@a.example/sieve",
        Some(r#"{"active": null}"#),
    )
    .await;
    ok(
        &api,
        k,
        "PATCH",
        "/api/v1/users/ann@a.example/sieve/filters",
        Some(r#"{"name": "rules"}"#),
    )
    .await;
    ok(
        &api,
        k,
        "DELETE",
        "/api/v1/users/ann@a.example/sieve/rules",
        None,
    )
    .await;
    ok(
        &api,
        k,
        "PUT",
        "/api/v1/sieve/global/spam",
        Some(r#"{"script": "keep;"}"#),
    )
    .await;
    let g = api.call("GET", "/api/v1/sieve/global", Some(k), None).await;
    assert_eq!(items(&g, "name"), [json!("spam")]);
    let a = api
        .call(
            "POST",
            "/api/v1/sieve/check",
            Some(k),
            Some(r#"{"script": "frobnicate;"}"#),
        )
        .await;
    assert!(is_problem(&a, 400), "{a:?}");

    // Lists.
    let a = api
        .call(
            "POST",
            "/api/v1/lists/news@b.example/members",
            Some(k),
            Some(r#"{"addresses": ["ann@a.example", "x@elsewhere.example"]}"#),
        )
        .await;
    assert_eq!((a.status, &a.body["subscribed"]), (200, &json!(2)), "{a:?}");
    let members = api
        .call("GET", "/api/v1/lists/news@b.example/members", Some(k), None)
        .await;
    assert_eq!(
        items(&members, "address"),
        [json!("ann@a.example"), json!("x@elsewhere.example")]
    );
    ok(
        &api,
        k,
        "DELETE",
        "/api/v1/lists/news@b.example/members/x@elsewhere.example",
        None,
    )
    .await;
    let a = api
        .call(
            "DELETE",
            "/api/v1/lists/news@b.example/members/x@elsewhere.example",
            Some(k),
            None,
        )
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    let held = ok(&api, k, "GET", "/api/v1/lists/news@b.example/held", None).await;
    assert_eq!(held, json!({"items": [], "next": null}));
    let a = api
        .call(
            "POST",
            "/api/v1/lists",
            Some(k),
            Some(r#"{"address": "x@a.example", "policy": "everyone"}"#),
        )
        .await;
    assert!(is_problem(&a, 400) || is_problem(&a, 422), "{a:?}");
    ok(&api, k, "DELETE", "/api/v1/lists/news@b.example", None).await;

    // Spam settings.
    let s = ok(
        &api,
        k,
        "PATCH",
        "/api/v1/spam/a.example",
        Some(r#"{"junk": 4.5, "reject": 12, "block": {"add": ["spam.example"]}}"#),
    )
    .await;
    assert_eq!(
        (&s["junk"], &s["reject"], &s["block"]),
        (&json!(4.5), &json!(12.0), &json!(["spam.example"])),
        "{s}"
    );
    let a = api
        .call(
            "PATCH",
            "/api/v1/spam/a.example",
            Some(k),
            Some(r#"{"junk": 20}"#),
        )
        .await;
    assert!(
        is_problem(&a, 400),
        "the junk threshold stays below the reject one: {a:?}"
    );
    let s = ok(
        &api,
        k,
        "PATCH",
        "/api/v1/spam/ann@a.example",
        Some(r#"{"junk": null, "allow": {"add": ["friend@x.example"]}}"#),
    )
    .await;
    assert_eq!(
        (&s["junk"], &s["allow"]),
        (&Value::Null, &json!(["friend@x.example"])),
        "{s}"
    );
    let a = api
        .call("GET", "/api/v1/spam/nobody@a.example", Some(k), None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");

    // SRS.
    let s = ok(
        &api,
        k,
        "PATCH",
        "/api/v1/srs",
        Some(r#"{"max_age_days": 30, "rotate": true}"#),
    )
    .await;
    assert_eq!(
        (&s["max_age_days"], &s["secrets"]),
        (&json!(30), &json!(2)),
        "{s}"
    );
    let a = api
        .call(
            "PATCH",
            "/api/v1/srs",
            Some(k),
            Some(r#"{"max_age_days": 0}"#),
        )
        .await;
    assert!(is_problem(&a, 400), "{a:?}");

    // Every change is in the audit log.
    let log = api
        .call("GET", "/api/v1/audit?limit=1000", Some(k), None)
        .await;
    let actions = items(&log, "action");
    for action in [
        "domain.catch_all",
        "domain.catch_all.off",
        "user.identity.add",
        "user.identity.delete",
        "user.forward",
        "user.forward.off",
        "user.sieve.put",
        "user.sieve.activate",
        "user.vacation",
        "user.vacation.off",
        "user.sieve.rename",
        "user.sieve.delete",
        "sieve.global.put",
        "list.subscribe",
        "list.unsubscribe",
        "list.delete",
        "spam.thresholds",
        "spam.block.add",
        "spam.allow.add",
        "srs.change",
    ] {
        assert!(
            actions.contains(&json!(action)),
            "{action} not audited: {actions:?}"
        );
    }
}

#[tokio::test]
async fn dkim_keys_rotate_under_new_selectors_and_the_old_ones_retire() {
    let (api, admin) = tenants("api-parity-dkim").await;
    let k = admin.as_str();
    let path = "/api/v1/domains/a.example/dkim";
    let keys = ok(&api, k, "GET", path, None).await;
    let states: Vec<_> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["selector"].clone(), k["state"].clone()))
        .collect();
    assert_eq!(
        states,
        [
            (json!("stratus-ed25519"), json!("active")),
            (json!("stratus-rsa"), json!("active"))
        ]
    );
    assert!(
        keys["items"][0]["record"]["value"]
            .as_str()
            .unwrap()
            .contains("k=ed25519"),
        "{keys}"
    );
    assert!(
        !keys.to_string().contains("private"),
        "no private key leaves: {keys}"
    );

    let a = api
        .call("POST", &format!("{path}/rotate"), Some(k), None)
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let next: Vec<String> = items(&a, "selector")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(next.len(), 2, "{a:?}");
    assert!(
        next.iter()
            .all(|s| s.starts_with("stratus-ed25519-") || s.starts_with("stratus-rsa-")),
        "{next:?}"
    );
    assert!(items(&a, "state").iter().all(|s| s == "next"), "{a:?}");
    let a = api
        .call("POST", &format!("{path}/rotate"), Some(k), None)
        .await;
    assert!(is_problem(&a, 409), "one rotation at a time: {a:?}");
    // The DNS records list the next keys, to publish before activation.
    let dns = ok(&api, k, "GET", "/api/v1/domains/a.example/dns", None).await;
    for s in &next {
        assert!(
            dns.to_string()
                .contains(&format!("{s}._domainkey.a.example")),
            "{dns}"
        );
    }

    // (Nothing is published here: the DNS check is the e2e test's.)
    let keys = ok(
        &api,
        k,
        "POST",
        &format!("{path}/activate"),
        Some(r#"{"force": true}"#),
    )
    .await;
    let state = |s: &str| {
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["selector"] == s)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state(&next[0]), Some(json!("active")), "{keys}");
    assert_eq!(state("stratus-rsa"), Some(json!("retired")), "{keys}");
    let a = api
        .call(
            "POST",
            &format!("{path}/activate"),
            Some(k),
            Some(r#"{"force": true}"#),
        )
        .await;
    assert!(is_problem(&a, 409), "nothing to activate: {a:?}");
    let a = api
        .call("DELETE", &format!("{path}/{}", next[1]), Some(k), None)
        .await;
    assert!(is_problem(&a, 409), "an active key is not dropped: {a:?}");
    let a = api
        .call("DELETE", &format!("{path}/stratus-rsa"), Some(k), None)
        .await;
    assert!(is_problem(&a, 409), "a key retired today stays: {a:?}");
    let gone = ok(
        &api,
        k,
        "DELETE",
        &format!("{path}/stratus-rsa"),
        Some(r#"{"force": true}"#),
    )
    .await;
    assert_eq!(gone["selector"], "stratus-rsa");
    let a = api
        .call("DELETE", &format!("{path}/stratus-rsa"), Some(k), None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    // A rotation given up: its next keys are dropped, the active stay.
    let a = api
        .call("POST", &format!("{path}/rotate"), Some(k), None)
        .await;
    let again: Vec<String> = items(&a, "selector")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(
        again.iter().all(|s| !next.contains(s)),
        "new selectors each time: {again:?} {next:?}"
    );
    for s in &again {
        ok(&api, k, "DELETE", &format!("{path}/{s}"), None).await;
    }
    let keys = ok(&api, k, "GET", path, None).await;
    let left: Vec<_> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["selector"].as_str().unwrap().to_string(),
                k["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(
        left.iter().filter(|(_, s)| s == "active").count(),
        2,
        "{left:?}"
    );

    // A rotation with its RSA key dropped retires only Ed25519: the
    // domain never loses its RSA signature (or ARC).
    let a = api
        .call("POST", &format!("{path}/rotate"), Some(k), None)
        .await;
    let pair: Vec<String> = items(&a, "selector")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let rsa = pair.iter().find(|s| s.starts_with("stratus-rsa-")).unwrap();
    ok(&api, k, "DELETE", &format!("{path}/{rsa}"), None).await;
    let keys = ok(
        &api,
        k,
        "POST",
        &format!("{path}/activate"),
        Some(r#"{"force": true}"#),
    )
    .await;
    let active: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "active")
        .map(|k| k["algorithm"].as_str().unwrap())
        .collect();
    assert_eq!(active.len(), 2, "{keys}");
    assert!(
        active.contains(&"rsa") && active.contains(&"ed25519"),
        "{keys}"
    );

    // Deleting the domain takes its keys: added again, it gets new ones.
    ok(&api, k, "DELETE", "/api/v1/users/ann@a.example", None).await;
    ok(&api, k, "DELETE", "/api/v1/domains/a.example", None).await;
    let a = api
        .call(
            "POST",
            "/api/v1/domains",
            Some(k),
            Some(r#"{"name": "a.example"}"#),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let keys = ok(&api, k, "GET", path, None).await;
    let selectors: Vec<_> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["selector"].clone())
        .collect();
    assert_eq!(
        selectors,
        [json!("stratus-ed25519"), json!("stratus-rsa")],
        "{keys}"
    );
}

/// The token of an invitation answer.
fn token_of(v: &Value) -> String {
    let url = v["url"].as_str().unwrap_or_else(|| panic!("no url: {v}"));
    let token = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(v["token"], token.as_str(), "{v}");
    assert!(
        url.starts_with("https://mx.example.com/admin#/invite/"),
        "{url}"
    );
    token
}

#[tokio::test]
async fn an_invited_user_chooses_a_password_once_with_the_link() {
    let (api, admin) = tenants("api-invitations").await;
    let k = Some(admin.as_str());
    for body in [
        r#"{"address": "new@a.example"}"#,
        r#"{"address": "new@a.example", "password": "a fine password", "invite": true}"#,
    ] {
        let a = api.call("POST", "/api/v1/users", k, Some(body)).await;
        assert!(is_problem(&a, 400), "a password or an invitation: {a:?}");
    }
    let a = api
        .call(
            "POST",
            "/api/v1/users",
            k,
            Some(r#"{"address": "new@a.example", "invite": true, "quota": "1G"}"#),
        )
        .await;
    assert_eq!(
        (a.status, &a.body["quota"]),
        (201, &json!(1u64 << 30)),
        "{a:?}"
    );
    let token = token_of(&a.body["invitation"]);
    assert_eq!(token.len(), 80, "{token}");
    let sign_in =
        |password: &str| json!({"address": "new@a.example", "password": password}).to_string();

    // No password works before the invitation is used.
    let s = api
        .call(
            "POST",
            "/api/v1/session",
            None,
            Some(&sign_in("a fine new password")),
        )
        .await;
    assert!(is_problem(&s, 401), "{s:?}");

    // The link's page needs no key; a wrong or malformed token is unknown.
    let path = format!("/api/v1/invitations/{token}");
    let a = api.call("GET", &path, None, None).await;
    assert_eq!(
        (a.status, &a.body["address"]),
        (200, &json!("new@a.example")),
        "{a:?}"
    );
    let mut tampered = token.clone();
    tampered.replace_range(79.., if token.ends_with('0') { "1" } else { "0" });
    for bad in [tampered.as_str(), "0123", "..", &"f".repeat(80)] {
        let a = api
            .call("GET", &format!("/api/v1/invitations/{bad}"), None, None)
            .await;
        assert!(is_problem(&a, 404), "{bad}: {a:?}");
    }
    let a = api
        .call("POST", &path, None, Some(r#"{"password": "short"}"#))
        .await;
    assert!(is_problem(&a, 400), "the password rules hold: {a:?}");
    let a = api
        .call(
            "POST",
            &path,
            None,
            Some(r#"{"password": "a fine new password"}"#),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let s = api
        .call(
            "POST",
            "/api/v1/session",
            None,
            Some(&sign_in("a fine new password")),
        )
        .await;
    assert_eq!(s.status, 201, "signed in with the chosen password: {s:?}");
    let a = api
        .call(
            "POST",
            &path,
            None,
            Some(r#"{"password": "another fine one"}"#),
        )
        .await;
    assert!(is_problem(&a, 404), "used up: {a:?}");

    // A new link replaces the last one; a password set meanwhile voids it.
    let first = api
        .call("POST", "/api/v1/users/new@a.example/invitation", k, None)
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let second = api
        .call("POST", "/api/v1/users/new@a.example/invitation", k, None)
        .await;
    let (first, second) = (token_of(&first.body), token_of(&second.body));
    let a = api
        .call("GET", &format!("/api/v1/invitations/{first}"), None, None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    let a = api
        .call(
            "PATCH",
            "/api/v1/users/new@a.example",
            k,
            Some(r#"{"password": "set by the admin"}"#),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = api
        .call(
            "POST",
            &format!("/api/v1/invitations/{second}"),
            None,
            Some(r#"{"password": "too late now"}"#),
        )
        .await;
    assert!(
        is_problem(&a, 404),
        "a password changed since voids it: {a:?}"
    );
    // Deleted and made again: an old link does nothing to the new account.
    let third = api
        .call("POST", "/api/v1/users/new@a.example/invitation", k, None)
        .await;
    let third = token_of(&third.body);
    ok(&api, &admin, "DELETE", "/api/v1/users/new@a.example", None).await;
    let again = r#"{"address": "new@a.example", "password": "the new owner's"}"#;
    assert_eq!(
        api.call("POST", "/api/v1/users", k, Some(again))
            .await
            .status,
        201
    );
    let a = api
        .call(
            "POST",
            &format!("/api/v1/invitations/{third}"),
            None,
            Some(r#"{"password": "taken over?"}"#),
        )
        .await;
    assert!(is_problem(&a, 404), "{a:?}");

    // A domain admin invites only in its domains.
    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;
    let a = api
        .call(
            "POST",
            "/api/v1/users/bob@b.example/invitation",
            Some(&mine),
            None,
        )
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    let log = api.call("GET", "/api/v1/audit", k, None).await;
    let entries = log.body["items"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "user.invitation.accept"
                && e["who"] == "invitation:new@a.example"),
        "{log:?}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "user.invite"),
        "{log:?}"
    );
}

#[tokio::test]
async fn discarding_a_post_held_by_two_lists_leaves_the_other_lists_copy() {
    let (api, admin) = tenants("api-held-twice").await;
    let k = Some(admin.as_str());
    let body =
        r#"{"address": "crew@a.example", "owners": ["ann@a.example"], "policy": "moderated"}"#;
    assert_eq!(
        api.call("POST", "/api/v1/lists", k, Some(body))
            .await
            .status,
        201
    );
    // One message, sent to both tenants' lists, held by both.
    let id = stratus_core::QueueId::generate();
    let message: stratus_core::job::Accepted = serde_json::from_value(json!({
        "queue_id": id.to_string(),
        "envelope": {"mail_from": "x@outside.example", "recipients": [
            {"address": "crew@a.example"}, {"address": "news@b.example"}]},
        "body": stratus_core::ids::BlobKey::for_message(&id).to_string(),
        "size": 20,
        "received_at": 0,
        "origin": "inbound",
    }))
    .unwrap();
    let stores = &api.ctx.shared.stores;
    let accounts = stratus_core::accounts::Accounts::new(stores.index.clone());
    for list in ["crew@a.example", "news@b.example"] {
        let list = stratus_core::Address::parse(list).unwrap();
        accounts
            .hold_post(
                stores.blobs.as_ref(),
                &list,
                &message,
                bytes::Bytes::from_static(b"Subject: both\r\n\r\nx\r\n"),
                "moderated",
            )
            .await
            .unwrap();
    }
    // a.example's domain admin discards its copy.
    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;
    let a = api
        .call(
            "DELETE",
            &format!("/api/v1/lists/crew@a.example/held/{id}"),
            Some(&mine),
            None,
        )
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = api
        .call(
            "DELETE",
            &format!("/api/v1/lists/news@b.example/held/{id}"),
            Some(&mine),
            None,
        )
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    // b.example's copy and its text are intact.
    let news = stratus_core::Address::parse("news@b.example").unwrap();
    let theirs = accounts
        .held_post(&news, &id)
        .await
        .unwrap()
        .expect("still held");
    let text = stores.blobs.get(&theirs.message.body, None).await.unwrap();
    assert_eq!(text.as_deref(), Some(&b"Subject: both\r\n\r\nx\r\n"[..]));
}

#[tokio::test]
async fn expired_invitations_are_pruned_and_live_ones_kept() {
    let (api, admin) = tenants("api-invite-prune").await;
    let k = Some(admin.as_str());
    let a = api
        .call(
            "POST",
            "/api/v1/users",
            k,
            Some(r#"{"address": "old@a.example", "invite": true}"#),
        )
        .await;
    let old = token_of(&a.body["invitation"]);
    let a = api
        .call("POST", "/api/v1/users/ann@a.example/invitation", k, None)
        .await;
    let live = token_of(&a.body);
    // old@'s invitation expires: its record is rewritten with a past time.
    let stores = &api.ctx.shared.stores;
    let key = stratus_core::ports::Key::new("invite", &old[..16]);
    let item = stores.index.get(&key).await.unwrap().unwrap();
    let mut record: Value = serde_json::from_slice(&item.value).unwrap();
    record["expires"] = json!(1);
    let _ = stores
        .index
        .transact(vec![stratus_core::ports::Write::Put {
            key: key.clone(),
            value: serde_json::to_vec(&record).unwrap(),
            condition: stratus_core::ports::Condition::Any,
        }])
        .await
        .unwrap();
    assert_eq!(api.service.prune_invitations().await.unwrap(), 1);
    assert!(stores.index.get(&key).await.unwrap().is_none());
    let pointer = stratus_core::ports::Key::new("invitefor", "old@a.example");
    assert!(
        stores.index.get(&pointer).await.unwrap().is_none(),
        "its pointer went too"
    );
    let a = api
        .call("GET", &format!("/api/v1/invitations/{live}"), None, None)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
}
