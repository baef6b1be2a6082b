//! The HTTP service over in-memory streams: routes, limits, problem
//! documents, keep-alive and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tokio::sync::watch;

use super::*;
use crate::testutil::TempDir;
use stratus_runtime::config::Secret;

fn peer() -> SocketAddr {
    "192.0.2.1:40000".parse().unwrap()
}

/// A context over fresh local stores; keep the directory and the
/// shutdown sender alive for the test's length.
fn context(name: &str) -> (TempDir, Context, watch::Sender<bool>) {
    let dir = TempDir::new(name);
    let local = stratus_store_local::LocalStores::open(&dir.path().join("data"), 5).unwrap();
    let (tx, rx) = watch::channel(false);
    let shared = Shared {
        hostname: "mx.test.example".into(),
        stores: stratus_runtime::Stores::from_local(local),
        shutdown: rx,
        tls: None,
        throttle: Arc::default(),
        sessions: Arc::default(),
    };
    (dir, Context::new(shared), tx)
}

/// Sends `input` on one connection (then closes our sending half) and
/// returns all the server wrote.
async fn exchange(ctx: &Context, input: &[u8]) -> String {
    exchange_from(ctx, &peer().to_string(), input).await
}

/// The status line's code and the body of a single response.
fn status_and_body(response: &str) -> (u16, &str) {
    let code = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body)
}

fn problem_of(response: &str) -> serde_json::Value {
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\ncontent-type: application/problem+json\r\n"),
        "{response}"
    );
    let (_, body) = status_and_body(response);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let (_dir, ctx, _stop) = context("http-health");
    let out = exchange(
        &ctx,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&out), (200, "ok\n"), "{out}");
    let out = exchange(
        &ctx,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&out), (200, "ready\n"), "{out}");
    // HEAD: the same status, no body; a query string changes nothing.
    let out = exchange(
        &ctx,
        b"HEAD /healthz?probe=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&out), (200, ""), "{out}");
}

#[tokio::test]
async fn two_requests_on_one_connection() {
    let (_dir, ctx, _stop) = context("http-keepalive");
    let out = exchange(
        &ctx,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 2, "{out}");
    let second = &out[out.rfind("HTTP/1.1 ").unwrap()..];
    assert_eq!(status_and_body(second).0, 404, "{out}");
}

#[tokio::test]
async fn errors_are_problem_documents() {
    let (_dir, ctx, _stop) = context("http-problems");
    let out = exchange(
        &ctx,
        b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&out).0, 404, "{out}");
    let problem = problem_of(&out);
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["title"], "Not Found");
    assert_eq!(problem["type"], "about:blank");

    // A method the route does not have: axum's plain-text 405 becomes a
    // problem document.
    let out = exchange(
        &ctx,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert_eq!(status_and_body(&out).0, 405, "{out}");
    assert_eq!(problem_of(&out)["status"], 405);
    assert!(
        out.contains("\r\nallow: GET,HEAD\r\n"),
        "the Allow field stays: {out}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let (_dir, ctx, _stop) = context("http-body");
    let head = format!(
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let out = exchange(&ctx, head.as_bytes()).await;
    assert_eq!(status_and_body(&out).0, 413, "{out}");
    assert_eq!(problem_of(&out)["status"], 413);
}

#[tokio::test]
async fn oversized_or_broken_heads_get_4xx_and_the_connection_ends() {
    let (_dir, ctx, _stop) = context("http-heads");
    let mut long = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES * 2));
    long.extend_from_slice(b"\r\n\r\n");
    let out = exchange(&ctx, &long).await;
    assert_eq!(status_and_body(&out).0, 431, "{out}");

    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..MAX_HEADERS + 1 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let out = exchange(&ctx, &many).await;
    assert_eq!(status_and_body(&out).0, 431, "{out}");

    for garbage in [&b"garbage\r\n\r\n"[..], b"\x16\x03\x01\x02\x00\x01\x00"] {
        let out = exchange(&ctx, garbage).await;
        assert_eq!(status_and_body(&out).0, 400, "{out}");
    }
    // Nothing at all: closed without a word.
    assert_eq!(exchange(&ctx, b"").await, "");
}

#[tokio::test]
async fn shutdown_lets_the_connection_go() {
    let (_dir, ctx, stop) = context("http-shutdown");
    let (mut client, server) = duplex(64 * 1024);
    let served = tokio::spawn(async move { serve(server, peer(), &ctx, false).await });
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = client.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // The connection is idle and kept alive; shutting down closes it.
    stop.send(true).unwrap();
    served.await.unwrap().unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

/// A blob store that is down.
#[derive(Debug)]
struct Down;

#[async_trait::async_trait]
impl stratus_core::ports::BlobStore for Down {
    async fn put(&self, _: &BlobKey, _: bytes::Bytes) -> stratus_core::ports::StoreResult<()> {
        Err(down())
    }
    async fn get(
        &self,
        _: &BlobKey,
        _: Option<std::ops::Range<u64>>,
    ) -> stratus_core::ports::StoreResult<Option<bytes::Bytes>> {
        Err(down())
    }
    async fn head(&self, _: &BlobKey) -> stratus_core::ports::StoreResult<Option<u64>> {
        Err(down())
    }
    async fn delete(&self, _: &BlobKey) -> stratus_core::ports::StoreResult<()> {
        Err(down())
    }
    async fn list(
        &self,
        _: &str,
        _: Option<&BlobKey>,
        _: usize,
    ) -> stratus_core::ports::StoreResult<Vec<stratus_core::ports::BlobMeta>> {
        Err(down())
    }
}

fn down() -> stratus_core::ports::StoreError {
    stratus_core::ports::StoreError::retryable("blob", "connection refused")
}

#[tokio::test]
async fn readiness_fails_when_a_store_does_not_answer() {
    let (_dir, mut ctx, _stop) = context("http-unready");
    ctx.shared.stores.blobs = Arc::new(Down);
    let out = exchange(
        &ctx,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&out).0, 503, "{out}");
    let detail = problem_of(&out)["detail"].as_str().unwrap().to_string();
    // Which store, not its error (logged instead).
    assert_eq!(detail, "the blob store does not answer");
    // Alive all the same.
    let out = exchange(
        &ctx,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_body(&out).0, 200, "{out}");
}

#[tokio::test]
async fn https_serves_the_same_routes_with_the_mail_certificate() {
    let dir = TempDir::new("http-tls");
    let (shared, _stop) = crate::testutil::context(&dir, "mx.test.example", Vec::new()).await;
    let ctx = Context::new(shared);
    let plain_ctx = ctx.clone();
    let (client, server) = duplex(64 * 1024);
    let served = tokio::spawn(async move { serve(server, peer(), &ctx, true).await });
    let name = rustls::pki_types::ServerName::try_from("mx.test.example").unwrap();
    let mut tls = crate::testutil::tls_connector(&dir)
        .connect(name, client)
        .await
        .expect("the handshake succeeds with the mail listeners' certificate");
    tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: mx.test.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status_and_body(&out), (200, "ready\n"), "{out}");
    served.await.unwrap().unwrap();

    // Plain text on the TLS listener: no handshake, closed.
    let (mut client, server) = duplex(64 * 1024);
    let served = tokio::spawn(async move { serve(server, peer(), &plain_ctx, true).await });
    client
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_let_go() {
    let (_dir, mut ctx, _stop) = context("http-slow");
    ctx.head_timeout = Duration::from_millis(300);
    let timeout = ctx.head_timeout;
    let (mut client, server) = duplex(64 * 1024);
    let served = tokio::spawn(async move { serve(server, peer(), &ctx, false).await });
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Past the head timeout the server answers 408 and closes, without
    // waiting for the rest (the test's own bound is far longer).
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut out))
        .await
        .expect("the server let the client go")
        .unwrap();
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    let out = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_only_for_allowed_addresses_or_the_token() {
    let (_dir, mut ctx, _stop) = context("http-metrics");
    let get = |auth: &str| {
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").into_bytes()
    };
    // 192.0.2.1 is not loopback: refused, and no token is configured.
    let out = exchange(&ctx, &get("")).await;
    assert_eq!(status_and_body(&out).0, 403, "{out}");
    assert_eq!(problem_of(&out)["status"], 403);

    ctx.metrics.token = Some(Secret("a-token-of-24-characters".into()));
    let out = exchange(&ctx, &get("")).await;
    assert_eq!(status_and_body(&out).0, 401, "{out}");
    assert!(
        out.contains("\r\nwww-authenticate: Bearer realm=\"metrics\"\r\n"),
        "{out}"
    );
    for wrong in [
        "Bearer a-token-of-24-characterz",
        "Bearer a-token",
        "Basic Zm9v",
    ] {
        let out = exchange(&ctx, &get(&format!("Authorization: {wrong}\r\n"))).await;
        assert_eq!(status_and_body(&out).0, 401, "{wrong}: {out}");
    }
    let out = exchange(
        &ctx,
        &get("Authorization: Bearer a-token-of-24-characters\r\n"),
    )
    .await;
    let (status, body) = status_and_body(&out);
    assert_eq!(status, 200, "{out}");
    assert!(
        out.contains(
            "\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{out}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    for stage in ["inbound", "route", "deliver", "send", "archive"] {
        let line = format!("stratus_queue_depth{{stage=\"{stage}\",state=\"visible\"}} 0");
        assert!(body.lines().any(|l| l == line), "{line} in {body}");
        // The embedded queue knows ages: nothing waits.
        let line = format!("stratus_queue_oldest_ready_age_seconds{{stage=\"{stage}\"}} 0.0");
        assert!(body.lines().any(|l| l == line), "{line} in {body}");
    }

    // From an allowed range, no token needed.
    ctx.metrics.token = None;
    ctx.metrics.allow = vec!["192.0.2.0/24".parse().unwrap()];
    let out = exchange(&ctx, &get("")).await;
    assert_eq!(status_and_body(&out).0, 200, "{out}");
}

#[tokio::test]
async fn past_the_requests_in_progress_limit_the_answer_is_503_at_once() {
    let (_dir, mut ctx, _stop) = context("http-busy");
    ctx.in_flight = Arc::new(tokio::sync::Semaphore::new(1));
    let held = ctx.in_flight.clone().try_acquire_owned().unwrap();
    let request = b"GET /api/v1/domains HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let out = exchange(&ctx, request).await;
    assert_eq!(status_and_body(&out).0, 503, "{out}");
    assert!(
        problem_of(&out)["detail"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{out}"
    );
    // Health checks are not held up by it.
    let health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let out = exchange(&ctx, health).await;
    assert_eq!(status_and_body(&out), (200, "ok\n"), "{out}");
    drop(held);
    let out = exchange(&ctx, request).await;
    // Past the limiter now (this context has no API behind it).
    assert_eq!(
        problem_of(&out)["detail"],
        "the admin API is not configured here",
        "{out}"
    );
}

#[tokio::test]
async fn the_admin_pages_come_with_a_strict_policy_and_no_inline_code() {
    let (_dir, ctx, _stop) = context("http-ui");
    for (path, kind) in [
        ("/admin", "text/html"),
        ("/admin/", "text/html"),
        ("/admin/admin.js", "text/javascript"),
        ("/admin/admin.css", "text/css"),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = exchange(&ctx, request.as_bytes()).await;
        let head = out.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(out.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(
            head.contains(
                "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';"
            ),
            "{head}"
        );
        assert!(head.contains("frame-ancestors 'none'") && head.contains("x-frame-options: deny"));
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    }
    // The page holds no inline script, style or handler (the policy would
    // refuse them anyway), and the script writes no markup from data.
    let html = include_str!("ui/admin.html");
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script type="module" src="/admin/admin.js"></script>"#));
    assert!(!html.contains("style=") && !html.contains("<style") && !html.contains(" on"));
    let script = include_str!("ui/admin.js");
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(forbidden), "{forbidden}");
    }
    // Anything else under /admin is not found.
    let out = exchange(
        &ctx,
        b"GET /admin/../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[tokio::test]
async fn every_api_route_is_described_and_every_description_is_served() {
    let doc: serde_json::Value =
        serde_json::from_str(super::openapi::document()).expect("the document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    // Every `$ref` names a schema the document holds.
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => out.push(r.to_string()),
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} is not in the document"
        );
    }
    // Every described operation is served: not 404, not 405.
    let (_dir, ctx, _stop) = context("http-openapi");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{domain}", "example.com")
            .replace("{address}", "a@example.com")
            .replace("{alias}", "team@example.com")
            .replace("{id}", "x")
            .replace("{name}", "Phone");
        for (method, op) in item.as_object().expect("a path item") {
            operations += 1;
            assert!(
                op["summary"].is_string() && op["tags"].is_array(),
                "{method} {path}"
            );
            assert!(
                op["responses"]["4XX"]["content"]["application/problem+json"].is_object(),
                "{method} {path} describes its problems"
            );
            let request = format!(
                "{} {concrete} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
                method.to_uppercase()
            );
            let out = exchange(&ctx, request.as_bytes()).await;
            let (status, _) = status_and_body(&out);
            assert!(
                status != 404 && status != 405,
                "{method} {path} is described but not served: {out}"
            );
        }
    }
    assert!(operations >= 35, "{operations} operations");
    // And no API route is added any other way than through `routes!`,
    // which takes each handler's description: in no source file does an
    // API path appear but in a description, and the routers the document
    // is made from register nothing by hand.
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("a source directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 50, "{} files", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        let routers = ["api.rs", "account.rs", "openapi.rs"].contains(&name.as_ref())
            && file.parent().is_some_and(|p| p.ends_with("http"));
        let test = name.ends_with("tests.rs");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if test || code.starts_with("//") {
                continue;
            }
            let described = code.starts_with("path = \"/api/")
                || code == ".route(\"/api/v1/openapi.json\", get(openapi_document))";
            assert!(
                !line.contains("\"/api/") || described,
                "{}:{}: an API path outside a #[utoipa::path]: {line}",
                file.display(),
                n + 1
            );
            assert!(
                !routers || !(code.contains(".route(") || code.contains(".nest(")),
                "{}:{}: a route registered by hand: {line}",
                file.display(),
                n + 1
            );
        }
    }
}

/// [`exchange`] from `from`.
async fn exchange_from(ctx: &Context, from: &str, input: &[u8]) -> String {
    let (mut client, server) = duplex(256 * 1024);
    let ctx = ctx.clone();
    let from: SocketAddr = from.parse().unwrap();
    let served = tokio::spawn(async move { serve(server, from, &ctx, false).await });
    client.write_all(input).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    served.await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn location(response: &str) -> Option<&str> {
    response.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("location").then(|| v.trim())
    })
}

#[tokio::test]
async fn plain_http_from_elsewhere_is_only_sent_to_https() {
    let (_dir, mut ctx, _stop) = context("http-redirect");
    ctx.https_url = Some("https://mail.example.com:8443".into());
    let get = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    // Always to the public URL, whatever the Host says.
    for (path, host, to) in [
        (
            "/admin",
            "mail.example.com:8080",
            "https://mail.example.com:8443/admin",
        ),
        (
            "/api/v1/domains?limit=5",
            "evil.example",
            "https://mail.example.com:8443/api/v1/domains?limit=5",
        ),
        ("/", "[2001:db8::1]:80", "https://mail.example.com:8443/"),
    ] {
        let out = exchange(&ctx, &get(path, host)).await;
        assert_eq!(status_and_body(&out).0, 308, "{out}");
        assert_eq!(location(&out), Some(to), "{host}: {out}");
        assert_eq!(problem_of(&out)["status"], 308);
    }
    // A POST is redirected too, never served: its password stays unread.
    let out = exchange(
        &ctx,
        b"POST /api/v1/session HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(status_and_body(&out).0, 308, "{out}");
    // Health checks and scrapes keep their own rules.
    let out = exchange(&ctx, &get("/healthz", "m")).await;
    assert_eq!(status_and_body(&out), (200, "ok\n"), "{out}");
    let out = exchange(&ctx, &get("/metrics", "m")).await;
    assert_eq!(status_and_body(&out).0, 403, "{out}");
    // This machine is served over plain HTTP.
    let out = exchange_from(&ctx, "127.0.0.1:5000", &get("/api/v1/openapi.json", "m")).await;
    assert_eq!(status_and_body(&out).0, 200, "{out}");
    // Without an HTTPS listener, nothing is redirected.
    ctx.https_url = None;
    let out = exchange(&ctx, &get("/api/v1/openapi.json", "m")).await;
    assert_eq!(status_and_body(&out).0, 200, "{out}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_counts() {
    let (_dir, mut ctx, _stop) = context("http-proxy");
    ctx.https_url = Some("https://mail.example.com".into());
    ctx.proxies = crate::proxy::Proxies {
        trusted: vec!["127.0.0.1/32".parse().unwrap()],
        protocol: false,
    };
    let request = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: mail.example.com\r\n{extra}Connection: close\r\n\r\n")
            .into_bytes()
    };
    // A proxy on this machine no longer makes everyone local: metrics and
    // plain HTTP go by the client it names.
    let from_outside = "X-Forwarded-For: 203.0.113.9\r\n";
    let out = exchange_from(&ctx, "127.0.0.1:5000", &request("/metrics", from_outside)).await;
    assert_eq!(status_and_body(&out).0, 403, "{out}");
    let out = exchange_from(&ctx, "127.0.0.1:5000", &request("/admin", from_outside)).await;
    assert_eq!(status_and_body(&out).0, 308, "{out}");
    // The client spoke TLS to the proxy: served.
    let over_tls = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n";
    let out = exchange_from(&ctx, "127.0.0.1:5000", &request("/admin", over_tls)).await;
    assert_eq!(status_and_body(&out).0, 200, "{out}");
    // The proxy's own requests are local.
    let out = exchange_from(&ctx, "127.0.0.1:5000", &request("/metrics", "")).await;
    assert_eq!(status_and_body(&out).0, 200, "{out}");
    // Anyone else's headers are not believed.
    let out = exchange(
        &ctx,
        &request(
            "/admin",
            "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n",
        ),
    )
    .await;
    assert_eq!(status_and_body(&out).0, 308, "{out}");
    let out = exchange(&ctx, &request("/metrics", "X-Forwarded-For: 127.0.0.1\r\n")).await;
    assert_eq!(status_and_body(&out).0, 403, "{out}");
}

/// What the logs got, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_in_requests_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_dir, ctx, _stop) = context("http-no-secrets");
    let token = format!("{}{}", "1".repeat(16), "ab".repeat(32));
    let body = r#"{"password": "the secret passphrase"}"#;
    for request in [
        format!("GET /api/v1/invitations/{token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        format!(
            "POST /api/v1/invitations/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        "GET /api/v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer stratus_0123_secretkeypart\r\nCookie: __Host-stratus_session=cookiesecret\r\nConnection: close\r\n\r\n".to_string(),
    ] {
        let out = exchange(&ctx, request.as_bytes()).await;
        assert!(status_and_body(&out).0 >= 400, "{out}");
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // (Whether the debug spans were on depends on what else the test
    // run's threads set up: the path itself is checked below.)
    for secret in [
        token.as_str(),
        "the secret passphrase",
        "secretkeypart",
        "cookiesecret",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

#[test]
fn paths_are_logged_without_tokens() {
    let token = "0123456789abcdef".repeat(5);
    assert_eq!(
        logged_path(&format!("/api/v1/invitations/{token}")),
        "/api/v1/invitations/…"
    );
    assert_eq!(
        logged_path("/api/v1/users/ann@a.example"),
        "/api/v1/users/ann@a.example"
    );
    assert_eq!(
        logged_path("/api/v1/quarantine/01ABCDEF/message"),
        "/api/v1/quarantine/01ABCDEF/message"
    );
}
