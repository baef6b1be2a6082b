//! The admin web UI at `/admin`: one page and its script and style sheet,
//! embedded in the binary (no Node or npm step to build or run it).
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
const SCRIPT: &str = include_str!("ui/admin.js");
const STYLE: &str = include_str!("ui/admin.css");

/// Nothing but our own script, style and API; no framing, no inline code.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'none'; \
    frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Context> {
    Router::new()
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
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
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
