//! HTML mail made safe to show: `GET /jmap/html/{accountId}/{emailId}`.
//!
//! The message's HTML body is parsed (html5ever, through ammonia) and
//! written out again from an allow-list: no script, style sheet, form,
//! frame, SVG, MathML, meta or base element survives; attributes are the
//! allow-list's, `style` keeps only properties that load nothing; links
//! are `http`, `https` or `mailto` and open elsewhere. Images from the
//! message itself (`cid:`) are pointed at its parts' download URLs and
//! `data:` images of raster types stay; any other image (remote content,
//! tracking pixels) is dropped, and the answer counts them in
//! `X-Blocked-Images`.
//!
//! Whatever the sanitiser misses cannot run: the document comes with a
//! Content-Security-Policy of `default-src 'none'` (images from here
//! and `data:`, inline style only) and `sandbox` (no scripts, an opaque
//! origin), and the webmail shows it in an `<iframe sandbox>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mail_parser::MimeHeaders;

use super::view;
use crate::http::Context;

/// The policy of a shown message.
pub const CSP: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; \
    form-action 'none'; base-uri 'none'; frame-ancestors 'self'; \
    sandbox allow-popups allow-popups-to-escape-sandbox";

/// Style properties that only lay out and colour: none of them takes a
/// URL.
const STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "border-radius",
    "width",
    "height",
    "max-width",
    "min-width",
    "display",
    "direction",
];

/// Raster images a `data:` URL may hold.
const DATA_IMAGES: &[&str] = &[
    "data:image/png;",
    "data:image/gif;",
    "data:image/jpeg;",
    "data:image/webp;",
];

/// The HTML of a message, sanitised, and how many images it named that
/// were dropped. `cids` maps a Content-ID to the URL its part downloads
/// from.
pub fn sanitise(html: &str, cids: HashMap<String, String>) -> (String, usize) {
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = blocked.clone();
    let cids = Arc::new(cids);
    let mut b = ammonia::Builder::default();
    b.url_schemes(["http", "https", "mailto", "cid", "data"].into())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .add_generic_attributes(["style"])
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .strip_comments(true)
        .attribute_filter(move |element, attribute, value| {
            let lower = value.trim().to_ascii_lowercase();
            match (element, attribute) {
                ("img", "src") => {
                    if let Some(cid) = lower.strip_prefix("cid:") {
                        return cids.get(cid).map(|url| url.clone().into());
                    }
                    if DATA_IMAGES.iter().any(|p| lower.starts_with(p)) {
                        return Some(value.into());
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                    None
                }
                (_, "href" | "src" | "cite" | "longdesc")
                    if lower.starts_with("cid:") || lower.starts_with("data:") =>
                {
                    None
                }
                // What a browser would load or run from a style: nothing
                // of it is kept (escapes could spell `url(` otherwise).
                (_, "style")
                    if [
                        "url",
                        "expression",
                        "\\",
                        "@import",
                        "image",
                        "var(",
                        "attr(",
                    ]
                    .iter()
                    .any(|bad| lower.contains(bad)) =>
                {
                    None
                }
                _ => Some(value.into()),
            }
        });
    let clean = b.clean(html).to_string();
    (clean, blocked.load(Ordering::Relaxed))
}

/// The whole document a sanitised body is shown in.
pub fn document(body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <style>body{{font-family:system-ui,sans-serif;margin:0;padding:12px;\
         overflow-wrap:anywhere;color-scheme:light dark}}img{{max-width:100%;height:auto}}\
         table{{max-width:100%}}</style></head><body>{body}</body></html>"
    )
}

/// `GET /jmap/html/{accountId}/{emailId}`.
pub async fn show(
    State(ctx): State<Context>,
    Path((account, email)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let user = match super::authenticate(&ctx, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if account != user.account {
        return super::not_found("no such Email");
    }
    let base = super::base_url(&parts);
    let Ok(view) = view::load(&ctx, &user).await else {
        return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again");
    };
    let Some(e) = view.emails.get(&email) else {
        return super::not_found("no such Email");
    };
    let Ok(raw) = super::parts::raw(&ctx, e).await else {
        return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again");
    };
    let (html, cids) = match stratus_core::message::parse(&raw) {
        Some(m) => {
            let html: String = (0..m.html_body_count())
                .filter_map(|i| m.body_html(i))
                .collect::<Vec<_>>()
                .join("\n");
            let cids: HashMap<String, String> = m
                .parts
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let cid = view::bare_id(p.content_id()?).to_ascii_lowercase();
                    let blob = format!("P{}.{i}", &email[1..]);
                    // Absolute: a relative URL in the message is refused.
                    Some((
                        cid,
                        format!("{base}/jmap/download/{account}/{blob}/inline?type=image/png"),
                    ))
                })
                .collect();
            (html, cids)
        }
        None => (String::new(), HashMap::new()),
    };
    // Long messages are sanitised off the async workers.
    let Ok((clean, blocked)) = tokio::task::spawn_blocking(move || sanitise(&html, cids)).await
    else {
        return crate::http::problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let mut r = (StatusCode::OK, document(&clean)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert(
        header::HeaderName::from_static("x-blocked-images"),
        HeaderValue::from(blocked),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        let cids = HashMap::from([(
            "pic@x".to_string(),
            "https://mail.example/jmap/download/A/Pm.2/inline".to_string(),
        )]);
        sanitise(html, cids).0
    }

    #[test]
    fn nothing_that_runs_or_loads_survives() {
        let hostile = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
            "<svg><script>alert(1)</script></svg>",
            "<svg><feImage href=\"https://evil.example/x\"/></svg>",
            "<svg><use href=\"data:image/svg+xml,<svg id=x><script>alert(1)</script></svg>#x\"/></svg>",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
            "<style>@import 'https://evil.example/x.css';</style>",
            "<p style=\"background:url(https://evil.example/t.gif)\">x</p>",
            "<p style=\"color:red;background-image:u\\72l(https://evil.example/t.gif)\">x</p>",
            "<div style=\"animation-name:x\" onanimationstart=alert(1)>x</div>",
            "<form action=https://evil.example><input name=p></form>",
            "<meta http-equiv=refresh content=\"0;url=https://evil.example\">",
            "<iframe src=https://evil.example></iframe>",
            "<object data=https://evil.example/x.swf></object>",
            "<base href=https://evil.example/>",
            "<link rel=stylesheet href=https://evil.example/x.css>",
            "<img src=https://evil.example/pixel.gif>",
            "<img srcset=\"https://evil.example/a.png 1x\">",
            "<video poster=https://evil.example/p.png></video>",
            "<table background=https://evil.example/b.png><tr><td>x</td></tr></table>",
        ];
        for h in hostile {
            let out = clean(h).to_ascii_lowercase();
            for bad in [
                "<script",
                "onerror",
                "javascript:",
                "evil.example",
                "<svg",
                "<style",
                "<form",
                "<meta",
                "<iframe",
                "<object",
                "<base",
                "<link",
                "onanimation",
                "url(",
                "<math",
            ] {
                assert!(!out.contains(bad), "{h:?} left {bad:?}: {out:?}");
            }
        }
    }

    #[test]
    fn what_mail_needs_stays() {
        let out = clean(
            "<p style=\"color: red; font-weight: bold\">Hi <a href=\"https://example.com/a\">there</a> <img src=\"cid:pic@x\" alt=\"pic\"></p>",
        );
        assert!(out.contains("color:red"), "{out}");
        assert!(out.contains("href=\"https://example.com/a\""), "{out}");
        assert!(out.contains("rel=\"noopener noreferrer\""), "{out}");
        assert!(out.contains("target=\"_blank\""), "{out}");
        assert!(
            out.contains("src=\"https://mail.example/jmap/download/A/Pm.2/inline\""),
            "{out}"
        );
        let (_, blocked) = sanitise(
            "<img src=https://a.example/1.png><img src=http://b.example/2.png>",
            HashMap::new(),
        );
        assert_eq!(blocked, 2);
    }
}
