//! The admin web UI at `/admin`, and the webmail at `/` and `/mail`: a
//! page, a script and a style sheet each, embedded in the binary (no Node
//! or npm step to build or run them). The webmail is a JMAP client
//! ([`crate::jmap`]) on the same web session.
//!
//! Why a small client over the API rather than server-rendered pages: the
//! page can do nothing a script with the same session could not, because
//! it *is* such a script. Every check (roles, domains, CSRF tokens, the
//! audit log) lives once, in the API, and the UI cannot drift from it.
//! The script builds the page with DOM calls and `textContent` only (never
//! markup from data), and the Content-Security-Policy allows no inline
//! script or style and nothing from elsewhere, so a name or subject with
//! markup in it stays text.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Context;

const PAGE: &str = include_str!("ui/admin.html");
const MAIL_PAGE: &str = include_str!("ui/mail.html");
const MAIL_SCRIPT: &str = include_str!("ui/mail.js");
const MAIL_STYLE: &str = include_str!("ui/mail.css");
const SCRIPT: &str = include_str!("ui/admin.js");
const STYLE: &str = include_str!("ui/admin.css");

/// Nothing but our own script, style and API; no framing, no inline code.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'none'; \
    frame-ancestors 'none'; base-uri 'none'";

/// The webmail's: the admin pages' policy, and frames from here (the
/// sanitised HTML of a message, under its own policy).
pub const MAIL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'none'; \
    frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Context> {
    let page = || async { asset_with(MAIL_PAGE, "text/html; charset=utf-8", MAIL_CSP) };
    Router::new()
        .route("/", get(page))
        .route("/mail", get(page))
        .route("/mail/", get(page))
        .route(
            "/mail/mail.js",
            get(|| async { asset_with(MAIL_SCRIPT, "text/javascript; charset=utf-8", MAIL_CSP) }),
        )
        .route(
            "/mail/mail.css",
            get(|| async { asset_with(MAIL_STYLE, "text/css; charset=utf-8", MAIL_CSP) }),
        )
        .route(
            "/admin",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/admin/",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/admin/admin.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/admin/admin.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    asset_with(body, kind, CSP)
}

fn asset_with(body: &'static str, kind: &'static str, csp: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The assets change with the binary: revalidate each time.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
