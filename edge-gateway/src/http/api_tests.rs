//! The admin API over in-memory connections: keys, domains, users,
//! pagination, the audit log, a domain admin's view (everything outside
//! its domains is not found), and bad input.

use std::sync::Arc;

use serde_json::{Value, json};
use stratus_runtime::config::{Config, Flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tokio::sync::watch;

use super::*;
use crate::service::{Role, Service};
use crate::testutil::TempDir;

pub(crate) struct Api {
    /// Where requests come from (plain HTTP: the API wants loopback).
    peer: std::net::SocketAddr,
    _dir: TempDir,
    _stop: watch::Sender<bool>,
    pub(crate) ctx: Context,
    pub(crate) service: Service,
}

pub(crate) async fn api(name: &str) -> Api {
    let dir = TempDir::new(name);
    let data = dir.path().join("data");
    let mut flags = Flags::default();
    flags.set("data_dir", data.to_str().unwrap());
    flags.set("hostname", "mx.example.com");
    flags.set("password_min_length", "8");
    let config = Config::from_sources(&flags, &|_| None).unwrap();
    let service = Service::open(&config).await.unwrap();
    let local = stratus_store_local::LocalStores::open(&data, 5).unwrap();
    let (stop, shutdown) = watch::channel(false);
    let shared = Shared {
        hostname: "mx.example.com".into(),
        stores: stratus_runtime::Stores::from_local(local),
        shutdown,
        tls: None,
        throttle: Arc::default(),
        sessions: Arc::default(),
    };
    let ctx = Context {
        service: Some(service.clone()),
        ..Context::new(shared)
    };
    Api {
        peer: "127.0.0.1:40000".parse().unwrap(),
        _dir: dir,
        _stop: stop,
        ctx,
        service,
    }
}

/// A response: its status, its headers (lower case) and its body as JSON
/// (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Value,
}

impl Answer {
    /// The value of the first `name` header (lower-cased).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        self.send(method, path, &headers, body).await
    }

    /// A request with an API key.
    pub(crate) async fn call_key(&self, method: &str, path: &str, key: &str) -> Answer {
        self.call(method, path, Some(key), None).await
    }

    /// A request with these extra headers.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.raw(request.as_bytes()).await
    }

    /// The answer to `request`, bytes as they are.
    pub(crate) async fn raw(&self, request: &[u8]) -> Answer {
        let (mut client, server) = duplex(1 << 20);
        let ctx = self.ctx.clone();
        let peer = self.peer;
        let served = tokio::spawn(async move { serve(server, peer, &ctx, false).await });
        // The server may answer (413) and close before it has read it all.
        let _ = client.write_all(request).await;
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        served.await.unwrap().unwrap();
        let out = String::from_utf8(out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head[9..12].parse().unwrap();
        let json = head
            .to_ascii_lowercase()
            .split("\r\n")
            .any(|line| line.starts_with("content-type: application/") && line.contains("json"));
        let body = if body.is_empty() {
            Value::Null
        } else if json {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"))
        } else {
            Value::String(body.to_string())
        };
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body,
        }
    }

    /// An admin key, and a.example and b.example added with it.
    pub(crate) async fn two_domains(&self) -> String {
        let admin = self.key(Role::Admin, &[]).await;
        for domain in ["a.example", "b.example"] {
            let body = json!({"name": domain}).to_string();
            let a = self
                .call("POST", "/api/v1/domains", Some(&admin), Some(&body))
                .await;
            assert_eq!(a.status, 201, "{a:?}");
        }
        admin
    }

    pub(crate) async fn key(&self, role: Role, domains: &[&str]) -> String {
        let domains: Vec<_> = domains
            .iter()
            .map(|d| stratus_core::Domain::parse(d).unwrap())
            .collect();
        self.service
            .create_api_key(role, &domains, None)
            .await
            .unwrap()
            .1
    }
}

/// The `field` of every item of a list answer.
pub(crate) fn items(a: &Answer, field: &str) -> Vec<Value> {
    a.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {a:?}"))
        .iter()
        .map(|i| i[field].clone())
        .collect()
}

pub(crate) fn is_problem(a: &Answer, status: u16) -> bool {
    a.status == status
        && a.head
            .contains("\r\ncontent-type: application/problem+json")
        && a.body["status"] == status
}

#[tokio::test]
async fn the_api_needs_a_valid_key() {
    let api = api("api-keys").await;
    let a = api.call("GET", "/api/v1/domains", None, None).await;
    assert!(is_problem(&a, 401), "{a:?}");
    assert!(a.head.contains("\r\nwww-authenticate: bearer"), "{a:?}");
    let admin = api.key(Role::Admin, &[]).await;
    assert!(admin.starts_with("stratus_"), "{admin}");
    for wrong in [
        "stratus_0000_0000".to_string(),
        format!("{}x", admin),
        admin.replace("stratus_", "other_"),
        String::new(),
    ] {
        let a = api.call("GET", "/api/v1/domains", Some(&wrong), None).await;
        assert!(is_problem(&a, 401), "{wrong}: {a:?}");
    }
    let a = api.call("GET", "/api/v1/domains", Some(&admin), None).await;
    assert_eq!(
        (a.status, &a.body),
        (200, &json!({"items": [], "next": null}))
    );

    // Revoked: refused at once.
    let id = admin.split('_').nth(1).unwrap();
    api.service.revoke_api_key(id, None).await.unwrap();
    let a = api.call("GET", "/api/v1/domains", Some(&admin), None).await;
    assert!(is_problem(&a, 401), "{a:?}");
}

#[tokio::test]
async fn an_admin_manages_domains_and_users_and_each_change_is_audited() {
    let api = api("api-admin").await;
    let admin = api.key(Role::Admin, &[]).await;
    let k = Some(admin.as_str());
    let a = api
        .call(
            "POST",
            "/api/v1/domains",
            k,
            Some(r#"{"name": "Example.ORG"}"#),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["domain"]["name"], "example.org");
    assert!(a.body["records"].as_array().unwrap().len() >= 5, "{a:?}");
    let a = api
        .call("GET", "/api/v1/domains/example.org/dns", k, None)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["purpose"] == "DKIM")
    );
    let a = api
        .call(
            "POST",
            "/api/v1/domains",
            k,
            Some(r#"{"name": "example.org"}"#),
        )
        .await;
    assert!(is_problem(&a, 409), "{a:?}");

    for (user, quota) in [
        ("ann", json!("1G")),
        ("bob", json!(1000)),
        ("cat", Value::Null),
    ] {
        let body = json!({"address": format!("{user}@example.org"), "password": "a fine password", "quota": quota});
        let a = api
            .call("POST", "/api/v1/users", k, Some(&body.to_string()))
            .await;
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(a.body["mailboxes"], 6);
    }
    let a = api
        .call("GET", "/api/v1/users/ann@example.org", k, None)
        .await;
    assert_eq!(
        (a.status, &a.body["quota"]),
        (200, &json!(1u64 << 30)),
        "{a:?}"
    );
    assert!(a.body.get("password").is_none() && !a.head.contains("argon2"));

    // Pages of two.
    let a = api
        .call("GET", "/api/v1/users?domain=example.org&limit=2", k, None)
        .await;
    let names: Vec<_> = items(&a, "address");
    assert_eq!(names, [json!("ann@example.org"), json!("bob@example.org")]);
    let cursor = a.body["next"].as_str().unwrap().to_string();
    let a = api
        .call(
            "GET",
            &format!("/api/v1/users?limit=2&cursor={cursor}"),
            k,
            None,
        )
        .await;
    assert_eq!(a.body["items"][0]["address"], "cat@example.org", "{a:?}");
    assert_eq!(a.body["next"], Value::Null);

    let a = api
        .call(
            "PATCH",
            "/api/v1/users/bob@example.org",
            k,
            Some(r#"{"quota": "2M", "password": "another password"}"#),
        )
        .await;
    assert_eq!(
        (a.status, &a.body["quota"]),
        (200, &json!(2 << 20)),
        "{a:?}"
    );
    let a = api
        .call(
            "PATCH",
            "/api/v1/users/bob@example.org",
            k,
            Some(r#"{"quota": null}"#),
        )
        .await;
    assert_eq!((a.status, &a.body["quota"]), (200, &Value::Null), "{a:?}");
    let a = api
        .call("DELETE", "/api/v1/users/cat@example.org", k, None)
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = api
        .call("GET", "/api/v1/users/cat@example.org", k, None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");

    let a = api.call("GET", "/api/v1/audit", k, None).await;
    let actions: Vec<_> = items(&a, "action");
    assert_eq!(
        actions,
        [
            "user.delete",
            "user.quota",
            "user.quota",
            "user.password",
            "user.add",
            "user.add",
            "user.add",
            "domain.add"
        ],
        "{a:?}"
    );
    let newest = &a.body["items"][0];
    assert_eq!(newest["target"], "cat@example.org");
    assert_eq!(newest["from"], "127.0.0.1");
    assert!(newest["who"].as_str().unwrap().starts_with("apikey:"));
}

#[tokio::test]
async fn a_domain_admin_finds_nothing_outside_its_domains() {
    let api = api("api-tenants").await;
    let admin = api.key(Role::Admin, &[]).await;
    let k = Some(admin.as_str());
    for (domain, user) in [
        ("a.example", "ann@a.example"),
        ("b.example", "bob@b.example"),
    ] {
        let body = json!({"name": domain}).to_string();
        assert_eq!(
            api.call("POST", "/api/v1/domains", k, Some(&body))
                .await
                .status,
            201
        );
        let body = json!({"address": user, "password": "a fine password"}).to_string();
        assert_eq!(
            api.call("POST", "/api/v1/users", k, Some(&body))
                .await
                .status,
            201
        );
    }
    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;
    let m = Some(mine.as_str());

    let a = api.call("GET", "/api/v1/domains", m, None).await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 1, "{a:?}");
    assert_eq!(a.body["items"][0]["name"], "a.example");
    let a = api.call("GET", "/api/v1/users", m, None).await;
    let users: Vec<_> = items(&a, "address");
    assert_eq!(users, [json!("ann@a.example")]);

    // Every route, about the other domain: not found, and nothing changes.
    let probes = [
        ("GET", "/api/v1/domains/b.example", None),
        ("DELETE", "/api/v1/domains/b.example", None),
        ("GET", "/api/v1/domains/b.example/dns", None),
        ("GET", "/api/v1/users?domain=b.example", None),
        ("GET", "/api/v1/users/bob@b.example", None),
        (
            "PATCH",
            "/api/v1/users/bob@b.example",
            Some(r#"{"password": "taken over!"}"#),
        ),
        ("DELETE", "/api/v1/users/bob@b.example", None),
        (
            "POST",
            "/api/v1/users",
            Some(r#"{"address": "eve@b.example", "password": "a fine password"}"#),
        ),
        (
            "POST",
            "/api/v1/apikeys",
            Some(r#"{"role": "domain_admin", "domains": ["b.example"]}"#),
        ),
        ("GET", "/api/v1/domains/nowhere.example", None),
    ];
    for (method, path, body) in probes {
        let a = api.call(method, path, m, body).await;
        assert!(is_problem(&a, 404), "{method} {path}: {a:?}");
    }
    assert_eq!(
        api.service
            .user(&stratus_core::Address::parse("bob@b.example").unwrap())
            .await
            .unwrap()
            .address,
        "bob@b.example"
    );

    // More power than it has: forbidden.
    for (method, path, body) in [
        ("POST", "/api/v1/domains", Some(r#"{"name": "c.example"}"#)),
        ("DELETE", "/api/v1/domains/a.example", None),
        ("POST", "/api/v1/apikeys", Some(r#"{"role": "admin"}"#)),
    ] {
        let a = api.call(method, path, m, body).await;
        assert!(is_problem(&a, 403), "{method} {path}: {a:?}");
    }
    // Within its domains it works, and sees only its own keys and audit.
    let a = api
        .call(
            "POST",
            "/api/v1/apikeys",
            m,
            Some(r#"{"role": "domain_admin", "domains": ["a.example"]}"#),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert!(a.body["key"].as_str().unwrap().starts_with("stratus_"));
    assert!(a.body.get("hash").is_none());
    let a = api.call("GET", "/api/v1/apikeys", m, None).await;
    let roles: Vec<_> = items(&a, "role");
    assert_eq!(
        roles,
        [json!("domain_admin"), json!("domain_admin")],
        "{a:?}"
    );
    let admin_id = admin.split('_').nth(1).unwrap();
    let a = api
        .call("DELETE", &format!("/api/v1/apikeys/{admin_id}"), m, None)
        .await;
    assert!(is_problem(&a, 404), "{a:?}");
    let a = api.call("GET", "/api/v1/audit", m, None).await;
    let targets: Vec<_> = items(&a, "domain");
    assert!(
        !targets.is_empty() && targets.iter().all(|d| d == "a.example"),
        "{a:?}"
    );
}

#[tokio::test]
async fn bad_requests_get_problem_documents() {
    let api = api("api-bad").await;
    let admin = api.key(Role::Admin, &[]).await;
    let k = Some(admin.as_str());
    let big = format!(r#"{{"name": "{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    for (method, path, body, status) in [
        ("POST", "/api/v1/domains", Some("{not json"), 400),
        ("POST", "/api/v1/domains", Some(r#"{"name": 7}"#), 422),
        (
            "POST",
            "/api/v1/domains",
            Some(r#"{"name": "x.example", "admin": true}"#),
            422,
        ),
        (
            "POST",
            "/api/v1/domains",
            Some(r#"{"name": "not a domain"}"#),
            400,
        ),
        ("POST", "/api/v1/domains", Some(big.as_str()), 413),
        ("GET", "/api/v1/users/..%2F..%2Fetc%2Fpasswd", None, 400),
        ("GET", "/api/v1/users?limit=0", None, 400),
        ("GET", "/api/v1/users?cursor=zz", None, 400),
        ("GET", "/api/v1/users?sort=evil", None, 400),
        (
            "POST",
            "/api/v1/users",
            Some(r#"{"address": "x@nowhere.example", "password": "a fine password"}"#),
            404,
        ),
        ("POST", "/api/v1/apikeys", Some(r#"{"role": "root"}"#), 422),
        ("DELETE", "/api/v1/apikeys/..", None, 404),
    ] {
        let a = api.call(method, path, k, body).await;
        assert!(is_problem(&a, status), "{method} {path}: {a:?}");
    }
}

/// Holds a message for `to` in quarantine, as the filter would; its id.
async fn hold_for(api: &Api, to: &str) -> String {
    let id = stratus_core::QueueId::generate();
    let body = stratus_core::ids::BlobKey::for_message(&id);
    let stores = &api.ctx.shared.stores;
    stores
        .blobs
        .put(
            &body,
            bytes::Bytes::from_static(b"Subject: held\r\n\r\nspam\r\n"),
        )
        .await
        .unwrap();
    let message: stratus_core::job::Accepted = serde_json::from_value(json!({
        "queue_id": id.to_string(),
        "envelope": {"mail_from": "x@outside.example", "recipients": [{"address": to}]},
        "body": body.to_string(),
        "size": 24,
        "received_at": 0,
        "origin": "inbound",
    }))
    .unwrap();
    let held_for = stratus_core::quarantine::HeldFor {
        recipient: stratus_core::Address::parse(to).unwrap(),
        headers: "X-Spam-Status: Yes, score=20.0 tests=GTUBE(20.00)\r\n".into(),
    };
    stratus_core::quarantine::Quarantine::new(stores.index.clone(), stores.blobs.clone())
        .hold(
            &message,
            vec![held_for],
            Vec::new(),
            stratus_core::mailstore::now(),
            30,
        )
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test]
async fn aliases_and_quarantine_stay_within_a_domain_admins_domains() {
    let api = api("api-aliases").await;
    let admin = api.two_domains().await;
    let k = Some(admin.as_str());
    let body = r#"{"address": "ann@a.example", "password": "a fine password"}"#;
    assert_eq!(
        api.call("POST", "/api/v1/users", k, Some(body))
            .await
            .status,
        201
    );
    let body = r#"{"alias": "team@b.example", "targets": ["someone@elsewhere.example"]}"#;
    assert_eq!(
        api.call("POST", "/api/v1/aliases", k, Some(body))
            .await
            .status,
        201
    );
    let theirs = hold_for(&api, "bob@b.example").await;
    let ours = hold_for(&api, "ann@a.example").await;

    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;
    let m = Some(mine.as_str());
    let body =
        r#"{"alias": "info@a.example", "targets": ["ann@a.example", "x@elsewhere.example"]}"#;
    let a = api.call("POST", "/api/v1/aliases", m, Some(body)).await;
    assert_eq!(a.status, 201, "{a:?}");
    let a = api.call("GET", "/api/v1/aliases", m, None).await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 1, "{a:?}");
    assert_eq!(a.body["items"][0]["alias"], "info@a.example");
    let a = api.call("GET", "/api/v1/quarantine", m, None).await;
    let ids: Vec<_> = items(&a, "id");
    assert_eq!(ids, [json!(ours)], "{a:?}");
    let a = api
        .call(
            "GET",
            &format!("/api/v1/quarantine/{ours}/message"),
            m,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.head.contains("content-type: message/rfc822"), "{a:?}");
    assert!(
        a.body.as_str().unwrap().contains("Subject: held\r\n"),
        "{a:?}"
    );

    let probes = [
        ("GET", "/api/v1/aliases?domain=b.example".to_string(), None),
        ("GET", "/api/v1/aliases/team@b.example".to_string(), None),
        ("DELETE", "/api/v1/aliases/team@b.example".to_string(), None),
        (
            "POST",
            "/api/v1/aliases".to_string(),
            Some(r#"{"alias": "x@b.example", "targets": ["y@a.example"]}"#),
        ),
        ("GET", format!("/api/v1/quarantine/{theirs}"), None),
        ("GET", format!("/api/v1/quarantine/{theirs}/message"), None),
        ("POST", format!("/api/v1/quarantine/{theirs}/release"), None),
        ("DELETE", format!("/api/v1/quarantine/{theirs}"), None),
        ("GET", "/api/v1/quarantine/not-an-id".to_string(), None),
    ];
    for (method, path, body) in probes {
        let a = api.call(method, &path, m, body).await;
        assert!(is_problem(&a, 404), "{method} {path}: {a:?}");
    }
    // Theirs is untouched; ours is released once, then deleted.
    let a = api
        .call("GET", &format!("/api/v1/quarantine/{theirs}"), k, None)
        .await;
    assert_eq!(
        (a.status, &a.body["released_at"]),
        (200, &Value::Null),
        "{a:?}"
    );
    let a = api
        .call(
            "POST",
            &format!("/api/v1/quarantine/{ours}/release"),
            m,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body["released_at"].is_i64(), "{a:?}");
    let a = api
        .call("DELETE", &format!("/api/v1/quarantine/{ours}"), m, None)
        .await;
    assert_eq!(a.status, 204, "{a:?}");
    let a = api.call("GET", "/api/v1/audit", m, None).await;
    let actions: Vec<_> = items(&a, "action");
    assert_eq!(
        actions,
        [
            json!("quarantine.delete"),
            json!("quarantine.release"),
            json!("alias.add"),
            json!("user.add"),
            json!("domain.add")
        ],
        "a domain admin reads every change in its domain, and nothing of b.example: {a:?}"
    );
}

#[tokio::test]
async fn keys_do_not_travel_in_clear_text_over_the_network() {
    let mut api = api("api-plain").await;
    let admin = api.key(Role::Admin, &[]).await;
    api.peer = "192.0.2.9:40000".parse().unwrap();
    let a = api.call("GET", "/api/v1/domains", Some(&admin), None).await;
    assert!(is_problem(&a, 403), "{a:?}");
    assert!(
        a.body["detail"].as_str().unwrap().contains("HTTPS"),
        "{a:?}"
    );
}

#[tokio::test]
async fn domain_admins_cannot_reach_into_other_tenants_and_keys_die_with_their_domain() {
    let api = api("api-reach").await;
    let admin = api.two_domains().await;
    let k = Some(admin.as_str());
    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;
    let m = Some(mine.as_str());
    // An alias into b.example: refused whether or not the address exists
    // there; one to a remote address is fine.
    for target in ["bob@b.example", "nobody@b.example"] {
        let body = json!({"alias": "x@a.example", "targets": [target]}).to_string();
        let a = api.call("POST", "/api/v1/aliases", m, Some(&body)).await;
        assert!(is_problem(&a, 403), "{target}: {a:?}");
    }
    let body = r#"{"alias": "x@a.example", "targets": ["someone@elsewhere.example"]}"#;
    assert_eq!(
        api.call("POST", "/api/v1/aliases", m, Some(body))
            .await
            .status,
        201
    );
    let a = api
        .call("GET", "/api/v1/aliases/X@A.example", m, None)
        .await;
    assert_eq!(
        a.status, 200,
        "the local part's case does not matter: {a:?}"
    );
    // A query parameter an endpoint does not take is refused, not ignored.
    let a = api
        .call("GET", "/api/v1/quarantine?domain=a.example", m, None)
        .await;
    assert!(is_problem(&a, 400) || is_problem(&a, 422), "{a:?}");

    // The domain goes (its alias first): the key that covered only it is
    // revoked, so a later owner of the name does not inherit it.
    let a = api
        .call("DELETE", "/api/v1/domains/a.example", k, None)
        .await;
    assert!(is_problem(&a, 409), "an alias is left: {a:?}");
    assert_eq!(
        api.call("DELETE", "/api/v1/aliases/x@a.example", k, None)
            .await
            .status,
        204
    );
    assert_eq!(
        api.call("DELETE", "/api/v1/domains/a.example", k, None)
            .await
            .status,
        200
    );
    let body = json!({"name": "a.example"}).to_string();
    assert_eq!(
        api.call("POST", "/api/v1/domains", k, Some(&body))
            .await
            .status,
        201
    );
    let a = api.call("GET", "/api/v1/domains", m, None).await;
    assert!(is_problem(&a, 401), "{a:?}");
}
