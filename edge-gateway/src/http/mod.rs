//! The HTTP service: one axum router, served on the plain HTTP listener
//! (`STRATUS_HTTP_LISTEN`) and on the HTTPS one (`STRATUS_HTTPS_LISTEN`,
//! with the mail listeners' certificates), under the same accept loops,
//! connection limits and graceful shutdown as the mail protocols.
//!
//! - `/healthz`: the process answers (load balancers, liveness).
//! - `/readyz`: the index and the blob store answer within
//!   [`READY_TIMEOUT`] (readiness; the template's target groups use it).
//! - `/metrics`: the process's metrics ([`stratus_core::metrics`]) and the
//!   depth of every stage queue, in the OpenMetrics text format, for
//!   clients in `STRATUS_METRICS_ALLOW` or with `STRATUS_METRICS_TOKEN` as
//!   a bearer token.
//! - `/api/v1/...`: the admin API ([`api`]).
//!
//! Limits: request heads ([`MAX_HEAD_BYTES`], [`MAX_HEADERS`], read within
//! [`HEAD_TIMEOUT`]), bodies ([`MAX_BODY_BYTES`]), time per request
//! ([`REQUEST_TIMEOUT`]) and requests in progress in the process
//! ([`MAX_IN_FLIGHT`]; past it `503` at once). Every error is an RFC 9457
//! problem document (`application/problem+json`), whichever layer made
//! it. Logs carry the method, the path (never the query) and the status.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use stratus_core::ids::BlobKey;
use stratus_core::metrics::{QueueLabels, StageLabel, metrics};
use stratus_core::ports::{Key, QueueName};
use stratus_runtime::config::Secret;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt as _;
use tracing::debug;

use crate::shared::Shared;

pub mod account;
#[cfg(test)]
mod account_tests;
pub mod api;
mod api_domains;
#[cfg(test)]
pub(crate) mod api_fuzz_tests;
mod api_lists;
#[cfg(test)]
mod api_parity_tests;
mod api_spam;
#[cfg(test)]
pub(crate) mod api_tests;
mod api_users;
pub mod openapi;
#[cfg(test)]
mod tests;
pub mod ui;

/// Most bytes of a request head (request line and header fields).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 64;
/// A request head must arrive within this, and so must the next one on a
/// kept-alive connection: an idle or trickling client lets its slot go.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Most bytes of a request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest a request may take once its head is read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in progress at once in this process.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long `/readyz` waits for each store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a readiness answer is reused.
pub const READY_CACHE: Duration = Duration::from_secs(1);
/// The TLS handshake of the HTTPS listener must end within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the HTTP service shares between connections.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Shared,
    /// How long a request head may take ([`HEAD_TIMEOUT`]; shorter in
    /// tests).
    pub head_timeout: Duration,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// The operations the admin API calls (`None`: the API answers 503).
    pub service: Option<crate::service::Service>,
    /// Permits for requests in progress, shared by every connection
    /// ([`MAX_IN_FLIGHT`]; past them `503` at once).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The last readiness answer and when it was found, so that probes
    /// cost the stores at most one read each per [`READY_CACHE`].
    pub ready: ReadyCache,
    /// Whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub proxies: crate::proxy::Proxies,
    /// Where plain HTTP from elsewhere than this machine is sent: the
    /// public URL of the HTTPS listener (`None`: no HTTPS listener;
    /// nothing is redirected).
    pub https_url: Option<String>,
    /// The SMTP submission checks JMAP's EmailSubmission sends through
    /// (`None`: sending over JMAP is not offered).
    pub submission: Option<Arc<crate::smtp::Context>>,
}

/// The last readiness answer (`None`: ready; else what is not) and when
/// it was found.
pub type ReadyCache = Arc<std::sync::Mutex<Option<(std::time::Instant, Option<String>)>>>;

/// Who may read `/metrics`: clients from `allow`, or with the token.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    pub allow: Vec<ipnet::IpNet>,
    pub token: Option<Secret>,
}

impl Default for MetricsAccess {
    /// Loopback only, no token.
    fn default() -> Self {
        MetricsAccess {
            allow: vec![
                "127.0.0.0/8".parse().expect("a valid range"),
                "::1/128".parse().expect("a valid range"),
            ],
            token: None,
        }
    }
}

impl Context {
    pub fn new(shared: Shared) -> Context {
        Context {
            shared,
            head_timeout: HEAD_TIMEOUT,
            metrics: MetricsAccess::default(),
            service: None,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            ready: Arc::default(),
            proxies: crate::proxy::Proxies::default(),
            https_url: None,
            submission: None,
        }
    }
}

/// The client of one connection, for handlers that need it (throttles,
/// loopback-only routes).
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Serves one HTTP connection from `peer` until the client closes it, a
/// limit ends it, or the server shuts down (then in-progress requests are
/// answered first). `implicit_tls`: the HTTPS listener.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    ctx: &Context,
    implicit_tls: bool,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let client = Client {
        addr: peer,
        tls: implicit_tls,
    };
    if !implicit_tls {
        return connection(stream, client, ctx).await;
    }
    let tls = ctx.shared.tls.clone();
    match crate::tls::handshake(tls, stream, HANDSHAKE_TIMEOUT, "HTTPS").await {
        Some(stream) => connection(stream, client, ctx).await,
        // Failed, or no certificate: nothing a TLS client could be told.
        None => Ok(()),
    }
}

async fn connection<S>(stream: S, client: Client, ctx: &Context) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let proxies = ctx.proxies.clone();
    let app =
        router(ctx.clone()).map_request(move |mut request: Request<hyper::body::Incoming>| {
            // Behind a trusted proxy, the client it names.
            let (addr, tls) = proxies.http_client(client.addr, client.tls, request.headers());
            request.extensions_mut().insert(Client { addr, tls });
            request
        });
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.head_timeout)
        // A client that sends its request and closes its sending half
        // (`nc -N`, some probes) still gets the answer.
        .half_close(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutdown = ctx.shared.shutdown.clone();
    let stopping = async move {
        // The guard `wait_for` returns is not `Send`: drop it here.
        let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // A client that went away or sent garbage: hyper has answered
        // what could be answered.
        debug!(client = %client.addr, error = %e, "HTTP connection ended");
    }
    Ok(())
}

/// Every route, with the limits and the problem documents around them.
pub fn router(ctx: Context) -> Router {
    use tower::ServiceBuilder;
    use tower::limit::GlobalConcurrencyLimitLayer;
    use tower_http::compression::CompressionLayer;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    use tower_http::trace::TraceLayer;

    let in_flight = ctx.in_flight.clone();
    let overloaded = axum::error_handling::HandleErrorLayer::new(|_: tower::BoxError| async {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in progress; try again",
        )
    });
    // The limit on requests in progress guards the API; health checks and
    // scrapes stay answerable when it is reached.
    let api = openapi::routes().merge(crate::jmap::routes()).layer(
        ServiceBuilder::new()
            .layer(overloaded)
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight)),
    );
    let ctx_for_redirect = ctx.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route))
        .route("/api/v1/openapi.json", get(openapi_document))
        .merge(ui::routes())
        .merge(api)
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // JMAP uploads take more than any other request.
        .merge(
            Router::new().route(
                "/jmap/upload/{account}",
                axum::routing::post(crate::jmap::create::upload)
                    .layer(RequestBodyLimitLayer::new(crate::jmap::create::MAX_UPLOAD)),
            ),
        )
        .with_state(ctx)
        .layer(
            ServiceBuilder::new()
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        tracing::debug_span!(
                            "http",
                            method = %request.method(),
                            path = %logged_path(request.uri().path()),
                        )
                    }),
                )
                .layer(CompressionLayer::new())
                .layer(middleware::from_fn(problems))
                .layer(middleware::from_fn_with_state(ctx_for_redirect, to_https))
                // Our own slowness: 503, which clients do not take for
                // theirs (408 would be).
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    REQUEST_TIMEOUT,
                )),
        )
}

/// The API's OpenAPI 3.1 document (public: it describes, it holds
/// nothing).
async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the index and the blob store both answer a read. The answer
/// names the store that does not, never its error (which could name
/// buckets or paths on a public listener): that goes to the log.
async fn readyz(State(ctx): State<Context>) -> Response {
    let cached = ctx
        .ready
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .filter(|(at, _)| at.elapsed() < READY_CACHE);
    let fault = match cached {
        Some((_, fault)) => fault,
        None => {
            let fault = probe_stores(&ctx).await;
            if let Ok(mut c) = ctx.ready.lock() {
                *c = Some((std::time::Instant::now(), fault.clone()));
            }
            fault
        }
    };
    match fault {
        None => "ready\n".into_response(),
        Some(fault) => problem(StatusCode::SERVICE_UNAVAILABLE, fault),
    }
}

/// `None` when both stores answer; otherwise which do not.
async fn probe_stores(ctx: &Context) -> Option<String> {
    let stores = &ctx.shared.stores;
    let probe = Key::new("ready", "probe");
    let blob = BlobKey::parse("ready/probe").expect("a valid key");
    let (index, blobs) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, stores.index.get(&probe)),
        tokio::time::timeout(READY_TIMEOUT, stores.blobs.head(&blob)),
    );
    let fault = |what: &str, answer: Result<Result<(), stratus_core::ports::StoreError>, _>| {
        let why = match answer {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", READY_TIMEOUT.as_secs()),
        };
        tracing::warn!(store = what, error = %why, "not ready");
        Some(format!("the {what} does not answer"))
    };
    let faults: Vec<String> = [
        fault("index", index.map(|r| r.map(drop))),
        fault("blob store", blobs.map(|r| r.map(drop))),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!faults.is_empty()).then(|| faults.join("; "))
}

/// The metrics, with every queue's depth read now.
async fn metrics_route(
    State(ctx): State<Context>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
) -> Response {
    let ip = client.addr.ip().to_canonical();
    let from_allowed = ctx.metrics.allow.iter().any(|net| net.contains(&ip));
    let with_token = match (&ctx.metrics.token, bearer(&headers)) {
        (Some(token), Some(given)) => {
            stratus_core::ids::secrets_match(token.0.as_bytes(), given.as_bytes())
        }
        _ => false,
    };
    if !from_allowed && !with_token {
        debug!(client = %client.addr, "metrics refused");
        if ctx.metrics.token.is_none() {
            return problem(
                StatusCode::FORBIDDEN,
                "metrics are served to the addresses in STRATUS_METRICS_ALLOW",
            );
        }
        let mut refused = problem(StatusCode::UNAUTHORIZED, "a bearer token is needed");
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return refused;
    }
    let m = metrics();
    let queue = &ctx.shared.stores.queue;
    for stage in QueueName::ALL {
        match tokio::time::timeout(READY_TIMEOUT, queue.depth(stage)).await {
            Ok(Ok(depth)) => {
                for (state, n) in [
                    ("visible", depth.visible),
                    ("in_flight", depth.in_flight),
                    ("delayed", depth.delayed),
                    ("dead", depth.dead),
                ] {
                    let labels = QueueLabels {
                        stage: stage.as_str(),
                        state,
                    };
                    m.queue_depth
                        .get_or_create(&labels)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                let labels = StageLabel {
                    stage: stage.as_str(),
                };
                match depth.oldest_ready {
                    Some(age) => {
                        m.queue_oldest.get_or_create(&labels).set(age.as_secs_f64());
                    }
                    None => {
                        m.queue_oldest.remove(&labels);
                    }
                }
            }
            // The last figures stay; the scrape still answers.
            Ok(Err(e)) => debug!(%stage, error = %e, "cannot read a queue's depth"),
            Err(_) => debug!(%stage, "a queue's depth did not come in time"),
        }
    }
    let mut response = m.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// The credentials of an `Authorization: Bearer ...` field (the scheme
/// in any case, RFC 9110 §11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// A request's path as logs may show it: a segment that looks like a
/// token (32 or more hex digits, as an invitation's) is a credential, so
/// it is left out.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    let secret =
        |segment: &str| segment.len() >= 32 && segment.bytes().all(|b| b.is_ascii_hexdigit());
    if !path.split('/').any(secret) {
        return path.into();
    }
    path.split('/')
        .map(|segment| if secret(segment) { "…" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
        .into()
}

/// Plain HTTP from elsewhere than this machine is only sent to HTTPS
/// (`308`, so a method and body would be kept), at the public URL
/// (`STRATUS_PUBLIC_URL`), never at whatever name the request's `Host`
/// gives: nothing with a password, a key or a cookie is served over it,
/// and nobody can make us send a client elsewhere. Health checks and
/// scrapes stay answerable (their own rules apply), and so does plain
/// HTTP a trusted proxy received over TLS.
async fn to_https(State(ctx): State<Context>, request: Request, next: Next) -> Response {
    let Some(base) = ctx.https_url.as_deref() else {
        return next.run(request).await;
    };
    let exempt = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let secure_or_local = request
        .extensions()
        .get::<Client>()
        .is_none_or(|c| c.tls || c.addr.ip().to_canonical().is_loopback());
    if exempt || secure_or_local {
        return next.run(request).await;
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    match HeaderValue::from_str(&format!("{base}{path}")) {
        Ok(value) => {
            let mut r = problem(
                StatusCode::PERMANENT_REDIRECT,
                "this server answers over HTTPS only",
            );
            r.headers_mut().insert(header::LOCATION, value);
            r
        }
        Err(_) => problem(StatusCode::BAD_REQUEST, "an unusable request target"),
    }
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such resource")
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

/// A problem response: `about:blank` with the status's own title, and
/// what went wrong in `detail`.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail: detail.into(),
    };
    let mut response = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Longest text of another layer's error response kept as the detail.
const MAX_DETAIL: usize = 1024;

/// Turns every error response that is not a problem document yet (a
/// body too large, a timeout, axum's own rejections) into one, keeping a
/// short plain-text body as its detail.
async fn problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/plain"));
    let (parts, body) = response.into_parts();
    let mut detail = String::new();
    if is_text
        && !parts.headers.contains_key(header::CONTENT_ENCODING)
        && let Ok(bytes) = axum::body::to_bytes(body, MAX_DETAIL).await
    {
        detail = String::from_utf8_lossy(&bytes).trim().to_string();
    }
    let mut answer = problem(status, detail);
    // What else the answer said stays (`Allow` of a 405, say); only the
    // description of the body changes.
    for (name, value) in &parts.headers {
        let body_field = [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
        ]
        .contains(name);
        if !body_field {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}
