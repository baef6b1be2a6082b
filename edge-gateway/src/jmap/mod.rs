//! JMAP (RFC 8620) for mail (RFC 8621), on the HTTP service.
//!
//! - `GET /.well-known/jmap`: the session resource (capabilities with the
//!   limits this module enforces, the user's one account, the URLs).
//! - `POST /jmap/api`: method calls, with result references.
//! - `GET /jmap/download/{accountId}/{blobId}/{name}?type=`: a message as
//!   stored, or one of its parts decoded; always as an attachment.
//!
//! Who: HTTP Basic with the account password or an app password (over
//! TLS or from this machine, under the failed-login throttle IMAP uses),
//! or the web session's cookie (a request that changes anything carries
//! the session's CSRF token, as the admin API's do).
//!
//! The objects are the index's: a mailbox is a mailbox record, an Email
//! is a stored body with every mailbox entry that holds it, and every
//! state string is made of the mailboxes' MODSEQs ([`view`]), so what
//! IMAP changes is a JMAP change and the other way round, on every
//! gateway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use stratus_core::address::Address;

use crate::http::{Client, Context};
use crate::login::{self, Login};

pub mod create;
mod email;
pub mod html;
mod mailbox;
mod parts;
mod push;
mod submission;
#[cfg(test)]
mod tests;
mod vacation;
pub mod view;

/// The capabilities this server has.
pub const CORE: &str = "urn:ietf:params:jmap:core";
pub const MAIL: &str = "urn:ietf:params:jmap:mail";
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
pub const VACATION: &str = "urn:ietf:params:jmap:vacationresponse";

/// The session's state: what the session resource says changes only
/// with the server's capabilities and the user's account, which this
/// names.
fn session_state(user: &User) -> String {
    let digest = stratus_core::ids::sha256_hex(
        format!("{CORE} {MAIL} {SUBMISSION} {VACATION} {}", user.account).as_bytes(),
    );
    format!("c{}", &digest[..16])
}

/// Limits, as the session resource states them.
pub const MAX_SIZE_REQUEST: usize = 1_000_000;
pub const MAX_CALLS_IN_REQUEST: usize = 32;
pub const MAX_OBJECTS_IN_GET: usize = 500;
pub const MAX_OBJECTS_IN_SET: usize = 500;
pub const MAX_CONCURRENT_REQUESTS: usize = 4;
/// Past this many bytes of answers, a request's later calls are refused.
pub const MAX_SIZE_RESPONSE: usize = 16 * 1024 * 1024;
/// Results a query returns at most in one answer.
pub const MAX_QUERY_LIMIT: usize = 1000;
/// How long a checked Basic password is reused before Argon2id runs
/// again (the account's generation is read on every request).
const BASIC_CACHE_TTL: Duration = Duration::from_secs(300);
const BASIC_CACHE_MAX: usize = 4096;

/// JMAP's routes.
pub fn routes() -> Router<Context> {
    Router::new()
        .route("/.well-known/jmap", get(session_resource))
        .route("/jmap/session", get(session_resource))
        .route("/jmap/api", post(api).options(preflight))
        .route(
            "/jmap/download/{account}/{blob}/{name}",
            get(parts::download),
        )
        .route("/jmap/eventsource", get(push::eventsource))
        .route("/jmap/html/{account}/{email}", get(html::show))
}

/// Who a request is from.
#[derive(Debug, Clone)]
pub struct User {
    pub address: Address,
    /// The one account's id.
    pub account: String,
}

/// The account id of `address`: stable, and of the characters RFC 8620
/// §1.2 allows.
pub fn account_id(address: &Address) -> String {
    let digest = stratus_core::ids::sha256_hex(address.account_key().as_bytes());
    format!("A{}", &digest[..20])
}

/// Who a Basic login was: the address, the app password's id, the
/// credential generation, and when it was checked.
type Checked = (Address, Option<String>, u64, Instant);

/// Basic credentials checked lately: a digest of name and password to
/// the address and credential generation they signed in under.
#[derive(Debug, Default)]
pub struct BasicCache {
    seen: Mutex<HashMap<String, Checked>>,
}

/// The process's cache of checked Basic credentials.
fn basic_cache() -> &'static BasicCache {
    static CACHE: std::sync::OnceLock<BasicCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(BasicCache::default)
}

/// A JMAP request-level error (RFC 8620 §3.6.1) as a problem document.
pub fn request_error(
    status: StatusCode,
    kind: &str,
    detail: &str,
    extra: Option<(&str, &str)>,
) -> Response {
    let mut body = json!({
        "type": format!("urn:ietf:params:jmap:error:{kind}"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some((name, value)) = extra {
        body[name] = Value::String(value.to_string());
    }
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

fn unauthorized(detail: &str) -> Response {
    let mut r = crate::http::problem(StatusCode::UNAUTHORIZED, detail);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"jmap\", charset=\"UTF-8\""),
    );
    r
}

/// The user of a request: Basic credentials, or the web session (whose
/// CSRF token a changing request carries).
async fn authenticate(ctx: &Context, parts: &Parts) -> Result<User, Response> {
    let Some(client) = parts.extensions.get::<Client>().copied() else {
        return Err(crate::http::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a request without its connection",
        ));
    };
    if !client.tls && !client.addr.ip().to_canonical().is_loopback() {
        return Err(crate::http::problem(
            StatusCode::FORBIDDEN,
            "JMAP answers over HTTPS only (or on this machine)",
        ));
    }
    if let Some((name, password)) = basic(&parts.headers) {
        let address = basic_login(ctx, client, &name, &password).await?;
        return Ok(User {
            account: account_id(&address),
            address,
        });
    }
    if crate::http::account::session_cookie(&parts.headers).is_some() {
        let Some(service) = ctx.service.as_ref() else {
            return Err(crate::http::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "sessions are not served here",
            ));
        };
        return match crate::http::account::signed_in(parts, service).await {
            Ok(session) => Ok(User {
                account: account_id(&session.address),
                address: session.address,
            }),
            Err(e) => Err(e.into_response()),
        };
    }
    Err(unauthorized(
        "credentials are needed: HTTP Basic with your address and password (or an app password)",
    ))
}

/// The name and password of an `Authorization: Basic` field.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = stratus_core::base64::decode(credentials.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

async fn basic_login(
    ctx: &Context,
    client: Client,
    name: &str,
    password: &str,
) -> Result<Address, Response> {
    let digest = stratus_core::ids::sha256_hex(format!("{name}\0{password}").as_bytes());
    let cached = basic_cache()
        .seen
        .lock()
        .ok()
        .and_then(|seen| seen.get(&digest).cloned())
        .filter(|(_, _, _, at)| at.elapsed() < BASIC_CACHE_TTL);
    if let Some((address, app, generation, _)) = cached {
        // Still the same credentials: not disabled, the password not
        // changed, the app password not revoked.
        let record = ctx.shared.stores.accounts().user(&address).await;
        let current = match record {
            Ok(Some(r)) => {
                !r.disabled
                    && r.generation == generation
                    && app
                        .as_ref()
                        .is_none_or(|id| r.app_passwords.iter().any(|p| &p.id == id))
            }
            Ok(None) => false,
            Err(_) => {
                return Err(crate::http::problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the account store did not answer; try again",
                ));
            }
        };
        if current {
            return Ok(address);
        }
        if let Ok(mut seen) = basic_cache().seen.lock() {
            seen.remove(&digest);
        }
    }
    match login::login(&ctx.shared, client.addr, "jmap", name, password).await {
        Login::Ok(signed) => {
            if let Ok(mut seen) = basic_cache().seen.lock() {
                if seen.len() >= BASIC_CACHE_MAX {
                    seen.retain(|_, (_, _, _, at)| at.elapsed() < BASIC_CACHE_TTL);
                    if seen.len() >= BASIC_CACHE_MAX {
                        seen.clear();
                    }
                }
                seen.insert(
                    digest,
                    (
                        signed.address.clone(),
                        signed.app_password.clone(),
                        signed.generation,
                        Instant::now(),
                    ),
                );
            }
            Ok(signed.address)
        }
        Login::Failed => Err(unauthorized("wrong address or password")),
        Login::Blocked => Err(crate::http::problem(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from your address; try later",
        )),
        Login::Unavailable => Err(crate::http::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the account store did not answer; try again",
        )),
    }
}

/// Where the client reached us, for the session resource's URLs: the
/// request's scheme and `Host`.
fn base_url(parts: &Parts) -> String {
    let tls = parts.extensions.get::<Client>().is_some_and(|c| c.tls);
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

async fn session_resource(State(ctx): State<Context>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    let user = match authenticate(&ctx, &parts).await {
        Ok(user) => user,
        Err(r) => return r,
    };
    let base = base_url(&parts);
    let body = json!({
        "capabilities": {
            CORE: {
                "maxSizeUpload": create::MAX_UPLOAD,
                "maxConcurrentUpload": 1,
                "maxSizeRequest": MAX_SIZE_REQUEST,
                "maxConcurrentRequests": MAX_CONCURRENT_REQUESTS,
                "maxCallsInRequest": MAX_CALLS_IN_REQUEST,
                "maxObjectsInGet": MAX_OBJECTS_IN_GET,
                "maxObjectsInSet": MAX_OBJECTS_IN_SET,
                "collationAlgorithms": ["i;ascii-casemap", "i;ascii-numeric", "i;unicode-casemap"],
            },
            MAIL: {},
            SUBMISSION: {},
            VACATION: {},
        },
        "accounts": {
            user.account.clone(): {
                "name": user.address.to_string(),
                "isPersonal": true,
                "isReadOnly": false,
                "accountCapabilities": {
                    MAIL: {
                        "maxMailboxesPerEmail": null,
                        "maxMailboxDepth": 32,
                        "maxSizeMailboxName": 255,
                        "maxSizeAttachmentsPerEmail": 50_000_000,
                        "emailQuerySortOptions": email::SORT_PROPERTIES,
                        "mayCreateTopLevelMailbox": true,
                    },
                    SUBMISSION: {
                        "maxDelayedSend": 0,
                        "submissionExtensions": {},
                    },
                    VACATION: {},
                },
            },
        },
        "primaryAccounts": {
            MAIL: user.account.clone(),
            SUBMISSION: user.account.clone(),
            VACATION: user.account.clone(),
        },
        "username": user.address.to_string(),
        "apiUrl": format!("{base}/jmap/api"),
        "downloadUrl": format!("{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"),
        "uploadUrl": format!("{base}/jmap/upload/{{accountId}}"),
        "eventSourceUrl": format!("{base}/jmap/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"),
        "state": session_state(&user),
    });
    json_response(StatusCode::OK, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// No cross-origin use: a preflight is answered without any
/// `Access-Control-Allow-*`, so a browser never sends the request.
async fn preflight() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Requests in progress per user (RFC 8620 `maxConcurrentRequests`).
fn in_progress() -> &'static Mutex<HashMap<String, usize>> {
    static IN: std::sync::OnceLock<Mutex<HashMap<String, usize>>> = std::sync::OnceLock::new();
    IN.get_or_init(Mutex::default)
}

/// Holds one of a user's concurrent-request slots until dropped.
struct Slot(String);

impl Slot {
    fn take(account: &str) -> Option<Slot> {
        Slot::take_of(account, MAX_CONCURRENT_REQUESTS)
    }

    /// The one slot of `name` (an upload's).
    fn take_one(name: &str) -> Option<Slot> {
        Slot::take_of(name, 1)
    }

    fn take_of(name: &str, most: usize) -> Option<Slot> {
        let mut map = in_progress().lock().ok()?;
        let n = map.entry(name.to_string()).or_insert(0);
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(Slot(name.to_string()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = in_progress().lock()
            && let Some(n) = map.get_mut(&self.0)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.0);
            }
        }
    }
}

async fn api(
    State(ctx): State<Context>,
    Extension(client): Extension<Client>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let user = match authenticate(&ctx, &parts).await {
        Ok(user) => user,
        Err(r) => return r,
    };
    let json_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return request_error(
            StatusCode::BAD_REQUEST,
            "notJSON",
            "the request's Content-Type must be application/json",
            None,
        );
    }
    let body: Bytes = match axum::body::to_bytes(body, MAX_SIZE_REQUEST).await {
        Ok(b) => b,
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "limit",
                "the request is larger than maxSizeRequest",
                Some(("limit", "maxSizeRequest")),
            );
        }
    };
    let Some(_slot) = Slot::take(&user.account) else {
        return request_error(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            "too many requests in progress for this account",
            Some(("limit", "maxConcurrentRequests")),
        );
    };
    match run(&ctx, &user, Some(client), &body).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(r) => r,
    }
}

/// Parses and runs one JMAP request, the whole of it.
pub async fn run(
    ctx: &Context,
    user: &User,
    client: Option<Client>,
    body: &[u8],
) -> Result<Value, Response> {
    let request: Value = serde_json::from_slice(body).map_err(|_| {
        request_error(
            StatusCode::BAD_REQUEST,
            "notJSON",
            "the request is not valid JSON (I-JSON, RFC 7493)",
            None,
        )
    })?;
    let not_request = |why: &str| request_error(StatusCode::BAD_REQUEST, "notRequest", why, None);
    let Some(object) = request.as_object() else {
        return Err(not_request("the request is not a JSON object"));
    };
    let Some(using) = object.get("using").and_then(Value::as_array) else {
        return Err(not_request("`using` must be an array of capabilities"));
    };
    let mut capabilities = Vec::new();
    for c in using {
        let Some(c) = c.as_str() else {
            return Err(not_request("`using` must be an array of strings"));
        };
        if ![CORE, MAIL, SUBMISSION, VACATION].contains(&c) {
            return Err(request_error(
                StatusCode::BAD_REQUEST,
                "unknownCapability",
                &format!("this server does not know the capability {c:?}"),
                None,
            ));
        }
        capabilities.push(c.to_string());
    }
    let Some(calls) = object.get("methodCalls").and_then(Value::as_array) else {
        return Err(not_request("`methodCalls` must be an array"));
    };
    let mut parsed = Vec::with_capacity(calls.len());
    for call in calls {
        match call.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::Object(args), Value::String(id)]) => {
                parsed.push((name.clone(), args.clone(), id.clone()));
            }
            _ => {
                return Err(not_request(
                    "each method call is [name (string), arguments (object), call id (string)]",
                ));
            }
        }
    }
    if parsed.len() > MAX_CALLS_IN_REQUEST {
        return Err(request_error(
            StatusCode::BAD_REQUEST,
            "limit",
            &format!("at most {MAX_CALLS_IN_REQUEST} method calls in one request"),
            Some(("limit", "maxCallsInRequest")),
        ));
    }
    let created_ids: Map<String, Value> = match object.get("createdIds") {
        None => Map::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m.clone(),
        Some(_) => return Err(not_request("`createdIds` must map creation ids to ids")),
    };
    let send_created = object.contains_key("createdIds");
    let mut call = Call {
        ctx,
        user,
        client,
        capabilities,
        created: created_ids
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
            .collect(),
        responses: Vec::new(),
    };
    let mut answered = 0usize;
    for (name, args, id) in parsed {
        let answers = if answered > MAX_SIZE_RESPONSE {
            // The answers so far are all a client may be sent at once.
            let e = MethodError::new(
                "requestTooLarge",
                "the answers to the calls before this one are as large as one response may be",
            );
            vec![("error".to_string(), e.to_value())]
        } else {
            match call.resolve_references(args) {
                Ok(args) => call.dispatch(&name, args).await,
                Err(e) => vec![("error".to_string(), e.to_value())],
            }
        };
        for (name, value) in answers {
            answered += serde_json::to_string(&value).map_or(usize::MAX / 2, |t| t.len());
            call.responses.push((name, value, id.clone()));
        }
    }
    let mut answer = json!({
        "methodResponses": call
            .responses
            .iter()
            .map(|(n, v, id)| json!([n, v, id]))
            .collect::<Vec<_>>(),
        "sessionState": session_state(user),
    });
    if send_created {
        answer["createdIds"] = Value::Object(
            call.created
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
    }
    Ok(answer)
}

/// A method-level error (RFC 8620 §3.6.2 and the types' own).
#[derive(Debug, Clone)]
pub struct MethodError {
    pub kind: &'static str,
    pub description: String,
}

impl MethodError {
    pub fn new(kind: &'static str, description: impl Into<String>) -> Self {
        MethodError {
            kind,
            description: description.into(),
        }
    }

    pub fn invalid(description: impl Into<String>) -> Self {
        MethodError::new("invalidArguments", description)
    }

    fn to_value(&self) -> Value {
        json!({"type": self.kind, "description": self.description})
    }
}

impl From<stratus_core::accounts::AccountError> for MethodError {
    fn from(e: stratus_core::accounts::AccountError) -> Self {
        tracing::warn!(error = %e, "JMAP: the stores failed a method");
        MethodError::new("serverFail", "the stores did not answer; try again")
    }
}

pub type MethodResult = Result<Value, MethodError>;

/// One request in progress: who, with what, and the answers so far.
pub struct Call<'a> {
    pub ctx: &'a Context,
    pub user: &'a User,
    /// Where the request came from (the `Received` field of a message
    /// sent).
    pub client: Option<Client>,
    capabilities: Vec<String>,
    /// Creation ids to the ids they made, this request's and the
    /// client's `createdIds`.
    pub created: HashMap<String, String>,
    responses: Vec<(String, Value, String)>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("user", &self.user.address)
            .finish()
    }
}

impl Call<'_> {
    /// Replaces every `#name` argument by what its result reference
    /// (RFC 8620 §3.7) points at.
    fn resolve_references(
        &self,
        args: Map<String, Value>,
    ) -> Result<Map<String, Value>, MethodError> {
        let mut out = Map::new();
        let mut resolved = 0usize;
        for (key, value) in &args {
            let Some(name) = key.strip_prefix('#') else {
                continue;
            };
            if args.contains_key(name) {
                return Err(MethodError::invalid(format!(
                    "both {name:?} and {key:?} are given"
                )));
            }
            let bad = || {
                MethodError::new(
                    "invalidResultReference",
                    format!("{key}: not a usable result reference"),
                )
            };
            let reference = value.as_object().ok_or_else(bad)?;
            let result_of = reference
                .get("resultOf")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            let of_name = reference
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            let path = reference
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            let Some((_, result, _)) = self
                .responses
                .iter()
                .find(|(n, _, id)| id == result_of && n == of_name)
            else {
                return Err(MethodError::new(
                    "invalidResultReference",
                    format!("{key}: no {of_name} answer with call id {result_of:?}"),
                ));
            };
            let found = pointer(result, path).ok_or_else(|| {
                MethodError::new(
                    "invalidResultReference",
                    format!("{key}: the path {path:?} leads nowhere"),
                )
            })?;
            // What references copy is bounded as a request is: echoed
            // answers referring to answers cannot grow without end.
            resolved += serde_json::to_string(&found).map_or(usize::MAX, |t| t.len());
            if resolved > MAX_SIZE_REQUEST {
                return Err(MethodError::new(
                    "invalidResultReference",
                    format!("{key}: the values referred to are larger than maxSizeRequest"),
                ));
            }
            out.insert(name.to_string(), found);
        }
        for (key, value) in args {
            if !key.starts_with('#') {
                out.insert(key, value);
            }
        }
        Ok(out)
    }

    async fn dispatch(&mut self, name: &str, args: Map<String, Value>) -> Vec<(String, Value)> {
        // Identities and submissions are the submission capability's;
        // the rest, mail's.
        let needs = match name.split('/').next() {
            Some("Core") => CORE,
            Some("Identity" | "EmailSubmission") => SUBMISSION,
            Some("VacationResponse") => VACATION,
            _ => MAIL,
        };
        let result = if name == "Core/echo" {
            Ok(Value::Object(args))
        } else if needs != CORE && !self.capabilities.iter().any(|c| c == needs) {
            Err(MethodError::new(
                "unknownMethod",
                format!("{name}: the request's `using` lacks {needs}"),
            ))
        } else {
            match self.check_account(&args) {
                Err(e) => Err(e),
                Ok(()) if name == "EmailSubmission/set" => {
                    // Its onSuccess… changes answer as an Email/set after it.
                    return match submission::set(self, args).await {
                        Ok((answer, implicit)) => {
                            let mut out = vec![(name.to_string(), answer)];
                            out.extend(implicit.map(|mut v| match v.get("@error") {
                                Some(_) => {
                                    v.as_object_mut().map(|m| m.remove("@error"));
                                    ("error".to_string(), v)
                                }
                                None => ("Email/set".to_string(), v),
                            }));
                            out
                        }
                        Err(e) => vec![("error".to_string(), e.to_value())],
                    };
                }
                Ok(()) => self.method(name, args).await,
            }
        };
        match result {
            Ok(value) => vec![(name.to_string(), value)],
            Err(e) => vec![("error".to_string(), e.to_value())],
        }
    }

    /// Every method but `Core/echo` names the account it works on.
    fn check_account(&self, args: &Map<String, Value>) -> Result<(), MethodError> {
        match args.get("accountId") {
            Some(Value::String(id)) if *id == self.user.account => Ok(()),
            Some(Value::String(_)) => Err(MethodError::new(
                "accountNotFound",
                "no such account for these credentials",
            )),
            _ => Err(MethodError::invalid("`accountId` (a string) is needed")),
        }
    }

    async fn method(&mut self, name: &str, args: Map<String, Value>) -> MethodResult {
        match name {
            "Mailbox/get" => mailbox::get(self, args).await,
            "Mailbox/changes" => mailbox::changes(self, args).await,
            "Mailbox/query" => mailbox::query(self, args).await,
            "Mailbox/queryChanges" | "Email/queryChanges" => Err(MethodError::new(
                "cannotCalculateChanges",
                "query changes are not kept: query again",
            )),
            "Mailbox/set" => mailbox::set(self, args).await,
            "Email/get" => email::get(self, args).await,
            "Email/changes" => email::changes(self, args).await,
            "Email/query" => email::query(self, args).await,
            "Email/set" => email::set(self, args).await,
            "Email/import" => create::import(self, args).await,
            "Thread/get" => email::thread_get(self, args).await,
            "Thread/changes" => email::thread_changes(self, args).await,
            "Identity/get" => email::identity_get(self, args).await,
            "VacationResponse/get" => vacation::get(self, args).await,
            "VacationResponse/set" => vacation::set(self, args).await,
            "EmailSubmission/get" => submission::get(self, args).await,
            "EmailSubmission/query" => submission::query(self, args).await,
            "EmailSubmission/changes" | "EmailSubmission/queryChanges" => Err(MethodError::new(
                "cannotCalculateChanges",
                "submission changes are not kept: get them again",
            )),
            "SearchSnippet/get" => email::snippets(self, args).await,
            _ => Err(MethodError::new(
                "unknownMethod",
                format!("{name}: no such method here"),
            )),
        }
    }

    /// Ids as given, with `#creation-id`s replaced by the ids they made.
    pub fn ids_of(&self, ids: Option<Vec<String>>) -> Option<Vec<String>> {
        ids.map(|ids| {
            ids.into_iter()
                .map(|id| self.id_of(&id).unwrap_or(id))
                .collect()
        })
    }

    /// An id given as `#creation-id` (RFC 8620 §5.3): the id it made.
    pub fn id_of(&self, given: &str) -> Result<String, MethodError> {
        match given.strip_prefix('#') {
            Some(creation) => {
                self.created.get(creation).cloned().ok_or_else(|| {
                    MethodError::invalid(format!("no object was created as {given:?}"))
                })
            }
            None => Ok(given.to_string()),
        }
    }
}

/// Evaluates a JSON pointer with RFC 8620 §3.7's `*`: applied to an
/// array, the rest of the path is evaluated on each element, and arrays
/// that result are flattened.
pub fn pointer(value: &Value, path: &str) -> Option<Value> {
    if path.is_empty() {
        return Some(value.clone());
    }
    let rest = path.strip_prefix('/')?;
    let (token, tail) = match rest.split_once('/') {
        Some((t, _)) => (t, &rest[t.len()..]),
        None => (rest, ""),
    };
    let token = token.replace("~1", "/").replace("~0", "~");
    match value {
        Value::Array(items) if token == "*" => {
            let mut out = Vec::new();
            for item in items {
                match pointer(item, tail)? {
                    Value::Array(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            Some(Value::Array(out))
        }
        Value::Array(items) => {
            let i: usize = token.parse().ok()?;
            pointer(items.get(i)?, tail)
        }
        Value::Object(map) => pointer(map.get(&token)?, tail),
        _ => None,
    }
}

/// Arguments read the RFCs' way: what is absent takes its default; what
/// has the wrong type is `invalidArguments`.
#[derive(Debug)]
pub struct Args(pub Map<String, Value>);

impl Args {
    pub fn ids(&self, name: &str) -> Result<Option<Vec<String>>, MethodError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| MethodError::invalid(format!("`{name}` must hold strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(MethodError::invalid(format!(
                "`{name}` must be a list of ids"
            ))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, MethodError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(MethodError::invalid(format!("`{name}` must be a string"))),
        }
    }

    pub fn boolean(&self, name: &str, default: bool) -> Result<bool, MethodError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(MethodError::invalid(format!(
                "`{name}` must be true or false"
            ))),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, MethodError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| MethodError::invalid(format!("`{name}` must be an integer"))),
        }
    }

    pub fn unsigned(&self, name: &str) -> Result<Option<u64>, MethodError> {
        match self.int(name)? {
            Some(n) if n < 0 => Err(MethodError::invalid(format!(
                "`{name}` must not be negative"
            ))),
            n => Ok(n.map(|n| n as u64)),
        }
    }

    pub fn object(&self, name: &str) -> Result<Option<&Map<String, Value>>, MethodError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(MethodError::invalid(format!("`{name}` must be an object"))),
        }
    }

    /// Refuses any argument not in `known` (besides `accountId`).
    pub fn only(&self, known: &[&str]) -> Result<(), MethodError> {
        match self
            .0
            .keys()
            .find(|k| *k != "accountId" && !known.contains(&k.as_str()))
        {
            Some(k) => Err(MethodError::invalid(format!("unknown argument {k:?}"))),
            None => Ok(()),
        }
    }

    /// The `properties` argument: `None` for all of them; an unknown one
    /// is `invalidArguments`.
    pub fn properties(
        &self,
        name: &str,
        known: &[&str],
    ) -> Result<Option<Vec<String>>, MethodError> {
        let Some(props) = self.ids(name)? else {
            return Ok(None);
        };
        if let Some(p) = props
            .iter()
            .find(|p| !known.contains(&p.as_str()) && !p.starts_with("header:"))
        {
            return Err(MethodError::invalid(format!("unknown property {p:?}")));
        }
        Ok(Some(props))
    }
}

/// The arguments every /query takes (RFC 8620 §5.5).
pub const QUERY_ARGS: &[&str] = &[
    "filter",
    "sort",
    "position",
    "anchor",
    "anchorOffset",
    "limit",
    "calculateTotal",
];

/// A filter (RFC 8620 §5.5): nothing, an operator over conditions, or
/// one condition's properties.
#[derive(Debug)]
pub enum Filter<'a> {
    All,
    Operator(&'a str, &'a [Value]),
    Condition(&'a Map<String, Value>),
}

impl<'a> Filter<'a> {
    pub fn of(filter: &'a Value) -> Result<Filter<'a>, MethodError> {
        let unsupported = |why: &str| MethodError::new("unsupportedFilter", why);
        let f = match filter {
            Value::Null => return Ok(Filter::All),
            Value::Object(f) => f,
            _ => return Err(unsupported("a filter is an object")),
        };
        let Some(op) = f.get("operator") else {
            return Ok(Filter::Condition(f));
        };
        let op = op
            .as_str()
            .filter(|op| matches!(*op, "AND" | "OR" | "NOT"))
            .ok_or_else(|| unsupported("operators are AND, OR and NOT"))?;
        let conditions = f
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| unsupported("an operator needs conditions"))?;
        Ok(Filter::Operator(op, conditions))
    }

    /// What an operator makes of its conditions' results.
    pub fn combine(op: &str, results: &[bool]) -> bool {
        match op {
            "AND" => results.iter().all(|r| *r),
            "OR" => results.iter().any(|r| *r),
            _ => !results.iter().any(|r| *r),
        }
    }
}

/// `/get`'s shape: the objects asked for (or all), and the ids not found.
pub fn get_answer(
    account: &str,
    state: &str,
    ids: Option<Vec<String>>,
    all: Vec<String>,
    mut render: impl FnMut(&str) -> Option<Value>,
) -> MethodResult {
    if ids
        .as_ref()
        .is_some_and(|ids| ids.len() > MAX_OBJECTS_IN_GET)
    {
        return Err(MethodError::new(
            "requestTooLarge",
            format!("at most {MAX_OBJECTS_IN_GET} ids in one /get"),
        ));
    }
    let wanted = ids.unwrap_or(all);
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in wanted {
        match render(&id) {
            Some(v) => list.push(v),
            None => not_found.push(Value::String(id)),
        }
    }
    Ok(json!({
        "accountId": account,
        "state": state,
        "list": list,
        "notFound": not_found,
    }))
}

/// A set error (RFC 8620 §5.3).
pub fn set_error(kind: &str, description: impl Into<String>) -> Value {
    json!({"type": kind, "description": description.into()})
}

/// Answers the download URL's errors with problem documents.
pub fn not_found(detail: &str) -> Response {
    crate::http::problem(StatusCode::NOT_FOUND, detail)
}
