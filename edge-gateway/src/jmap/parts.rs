//! Message bodies: reading them, JMAP's body parts (RFC 8621 §4.1.4),
//! and downloads.
//!
//! A blob id is `B` and an Email id (the message as stored), or `P`, an
//! Email id, `.` and a part id (that part's content, transfer-decoded).
//! A part id is the index mail-parser gives the part.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mail_parser::{MessagePart, MimeHeaders, PartType};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::view::{self, Email};

use super::{MethodError, User};
use crate::http::Context;

/// The message as stored: the header lines Stratus added, then the body.
pub async fn raw(ctx: &Context, email: &Email) -> Result<Vec<u8>, MethodError> {
    let entry = email.first();
    let body = ctx
        .shared
        .stores
        .blobs
        .get(&entry.body, None)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "JMAP: a body could not be read");
            MethodError::new("serverFail", "the message's body could not be read")
        })?
        .ok_or_else(|| MethodError::new("serverFail", "the message's body is missing"))?;
    let mut out = Vec::with_capacity(entry.prefix.len() + body.len());
    out.extend_from_slice(entry.prefix.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn blob_of_email(id: &str) -> String {
    format!("B{}", &id[1..])
}

fn blob_of_part(email: &str, part: usize) -> String {
    format!("P{}.{part}", &email[1..])
}

/// What a blob id names: the Email id and, for a part, its index.
pub fn parse_blob(id: &str) -> Option<(String, Option<usize>)> {
    if let Some(rest) = id.strip_prefix('B') {
        return Some((format!("M{rest}"), None));
    }
    let rest = id.strip_prefix('P')?;
    let (email, part) = rest.split_once('.')?;
    Some((format!("M{email}"), Some(part.parse().ok()?)))
}

/// The content type of a part, as `type/subtype` in lower case.
fn content_type(part: &MessagePart) -> String {
    match part.content_type() {
        Some(ct) => format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("plain").to_ascii_lowercase()
        )
        .replace(char::is_whitespace, ""),
        None => match part.body {
            PartType::Message(_) => "message/rfc822".into(),
            _ => "text/plain".into(),
        },
    }
}

/// The decoded size of a part's content.
fn part_size(part: &MessagePart) -> usize {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.len(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.len(),
        PartType::Message(m) => m.raw_message().len(),
        PartType::Multipart(_) => 0,
    }
}

/// A JMAP EmailBodyPart of part `index` (with its sub-parts for
/// `bodyStructure`), limited to `props`.
pub fn body_part(
    message: &mail_parser::Message,
    email: &str,
    index: usize,
    props: &[String],
    deep: bool,
) -> Value {
    let Some(part) = message.parts.get(index) else {
        return Value::Null;
    };
    let multipart = matches!(part.body, PartType::Multipart(_));
    let ctype = content_type(part);
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_string)
        .or_else(|| ctype.starts_with("text/").then(|| "us-ascii".to_string()));
    let mut out = Map::new();
    for p in props {
        let v = match p.as_str() {
            "partId" if !multipart => json!(index.to_string()),
            "blobId" if !multipart => json!(blob_of_part(email, index)),
            "partId" | "blobId" => Value::Null,
            "size" => json!(part_size(part)),
            "headers" => Value::Array(
                part.headers
                    .iter()
                    .map(|h| {
                        let raw = header_raw(message, h);
                        json!({"name": h.name(), "value": raw})
                    })
                    .collect(),
            ),
            "name" => json!(part.attachment_name()),
            "type" => json!(ctype),
            "charset" => json!(if multipart { None } else { charset.clone() }),
            "disposition" => json!(
                part.content_disposition()
                    .map(|d| d.ctype().to_ascii_lowercase())
            ),
            "cid" => json!(part.content_id().map(view::bare_id)),
            "language" => json!(
                part.content_language()
                    .as_text_list()
                    .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            ),
            "location" => json!(part.content_location()),
            "subParts" => match (&part.body, deep) {
                (PartType::Multipart(children), true) => Value::Array(
                    children
                        .iter()
                        .map(|c| body_part(message, email, *c as usize, props, true))
                        .collect(),
                ),
                _ => Value::Null,
            },
            _ => continue,
        };
        out.insert(p.clone(), v);
    }
    if deep
        && !out.contains_key("subParts")
        && let PartType::Multipart(children) = &part.body
    {
        // bodyStructure shows the tree whether or not subParts was asked.
        out.insert(
            "subParts".into(),
            Value::Array(
                children
                    .iter()
                    .map(|c| body_part(message, email, *c as usize, props, true))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}

/// A header field's value as it is in the message (RFC 8621 `Raw`).
pub fn header_raw(message: &mail_parser::Message, h: &mail_parser::Header) -> String {
    let raw = message.raw_message();
    let (start, end) = (h.offset_start() as usize, h.offset_end() as usize);
    raw.get(start..end)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// The text of a text part, `None` for anything else.
pub fn text_of<'a>(part: &'a MessagePart<'a>) -> Option<&'a str> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => Some(t.as_ref()),
        _ => None,
    }
}

/// A part's content, transfer-decoded (a text part in UTF-8).
pub fn contents(part: &MessagePart) -> Vec<u8> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
        PartType::Message(m) => m.raw_message().to_vec(),
        PartType::Multipart(_) => Vec::new(),
    }
}

/// A short plain-text preview of the message (at most 256 characters).
pub fn preview(message: &mail_parser::Message) -> String {
    let text = message
        .body_preview(512)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(256).collect()
}

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Whether a media type given for a download is one we may echo: a
/// plain `type/subtype`, and never one a browser would render as a page
/// or script from our origin.
fn safe_type(kind: &str) -> Option<String> {
    let kind = kind.trim().to_ascii_lowercase();
    let (t, s) = kind.split_once('/')?;
    let token = |x: &str| {
        !x.is_empty()
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    if !token(t) || !token(s) {
        return None;
    }
    let active = kind.contains("html")
        || kind.contains("xml")
        || kind.contains("javascript")
        || kind.contains("ecmascript")
        || kind == "text/css";
    (!active).then_some(kind)
}

/// `GET /jmap/download/{accountId}/{blobId}/{name}?type=`: always an
/// attachment, never sniffed, sandboxed if a browser shows it anyway.
pub async fn download(
    State(ctx): State<Context>,
    Path((account, blob, name)): Path<(String, String, String)>,
    Query(q): Query<DownloadQuery>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let user: User = match super::authenticate(&ctx, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if account != user.account {
        return super::not_found("no such blob");
    }
    let view = match view::load(&ctx, &user).await {
        Ok(v) => v,
        Err(_) => {
            return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    let bytes = match super::create::blob(&ctx, &user, &view, &blob).await {
        Ok(Some(b)) => b,
        Ok(None) => return super::not_found("no such blob"),
        Err(_) => return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again"),
    };
    let kind = q
        .kind
        .as_deref()
        .and_then(safe_type)
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&kind)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition(&name))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, immutable, max-age=604800"),
    );
    r
}

/// `attachment` with the name (RFC 6266, RFC 8187 for what is not
/// plain ASCII).
fn disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_name_emails_and_parts() {
        let email = "Mabc123";
        assert_eq!(
            parse_blob(&blob_of_email(email)),
            Some((email.into(), None))
        );
        assert_eq!(
            parse_blob(&blob_of_part(email, 3)),
            Some((email.into(), Some(3)))
        );
        assert_eq!(parse_blob("Pabc"), None);
        assert_eq!(parse_blob("Pabc.x"), None);
        assert_eq!(parse_blob("Xabc"), None);
    }

    #[test]
    fn downloads_never_echo_an_active_type() {
        assert_eq!(safe_type("image/png").as_deref(), Some("image/png"));
        assert_eq!(safe_type("text/html"), None);
        assert_eq!(safe_type("image/svg+xml"), None);
        assert_eq!(safe_type("application/xhtml+xml"), None);
        assert_eq!(safe_type("text/javascript"), None);
        assert_eq!(safe_type("text/plain\r\nX: y"), None);
        assert_eq!(safe_type("nonsense"), None);
    }

    #[test]
    fn dispositions_quote_nothing_hostile() {
        let d = disposition("a\"b\r\n.txt");
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert!(d.starts_with("attachment; filename=\"a_b__.txt\""));
        assert!(d.ends_with("a%22b%0D%0A.txt"));
    }
}
