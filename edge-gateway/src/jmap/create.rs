//! Making Emails: uploads (RFC 8620 §6.1), Email/import (RFC 8621
//! §4.8) from an uploaded message, and Email/set's create from parts
//! (§4.6), built with mail-builder.
//!
//! An upload is kept in the blob store under `jmapupload/<account>/` for
//! a day (its id carries the time it came), and whatever older the
//! account has is deleted at its next upload. An Email made here is
//! stored as IMAP's APPEND stores one: a body of its own, the account's
//! quota checked first.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuiltAddress;
use mail_builder::headers::raw::Raw;
use serde_json::{Map, Value, json};
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailstore::NewMessage;

use super::view::{self, View};
use super::{Call, MethodError, User, set_error};
use crate::http::Context;

/// The largest upload (and so the largest Email made from parts).
pub const MAX_UPLOAD: usize = 25 * 1024 * 1024;
/// The most an account's uploads of the last day may hold.
const MAX_KEPT: u64 = 200 * 1024 * 1024;
/// How long an upload is kept.
const UPLOAD_TTL: i64 = 24 * 3600;

fn upload_key(account: &str, id: &str) -> Option<BlobKey> {
    BlobKey::parse(&format!("jmapupload/{account}/{id}")).ok()
}

/// Whether `id` is an upload's id: `U`, ten digits of time, 16 hex.
fn upload_time(id: &str) -> Option<i64> {
    let rest = id.strip_prefix('U')?;
    if rest.len() != 26 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    rest[..10].parse().ok()
}

/// The bytes of an upload of this account, if it is still kept.
pub async fn uploaded(
    ctx: &Context,
    user: &User,
    id: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    let Some(at) = upload_time(id) else {
        return Ok(None);
    };
    if stratus_core::mailstore::now() - at > UPLOAD_TTL {
        return Ok(None);
    }
    let Some(key) = upload_key(&user.account, id) else {
        return Ok(None);
    };
    let bytes = ctx.shared.stores.blobs.get(&key, None).await.map_err(|e| {
        tracing::warn!(error = %e, "JMAP: an upload could not be read");
        MethodError::new("serverFail", "the upload could not be read")
    })?;
    Ok(bytes.map(|b| b.to_vec()))
}

/// `POST /jmap/upload/{accountId}`: the body, kept for a day.
pub async fn upload(
    State(ctx): State<Context>,
    Path(account): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let user = match super::authenticate(&ctx, &parts).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if account != user.account {
        return super::not_found("no such account");
    }
    // One upload at a time per account (maxConcurrentUpload), each under
    // the process's limit on requests in progress.
    let Some(_slot) = super::Slot::take_one(&format!("upload:{}", user.account)) else {
        return super::request_error(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            "one upload at a time",
            Some(("limit", "maxConcurrentUpload")),
        );
    };
    let Ok(_permit) = ctx.in_flight.clone().try_acquire_owned() else {
        return crate::http::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in progress; try again",
        );
    };
    let kind = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let bytes = match axum::body::to_bytes(body, MAX_UPLOAD).await {
        Ok(b) => b,
        Err(_) => {
            return super::request_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "limit",
                "the upload is larger than maxSizeUpload",
                Some(("limit", "maxSizeUpload")),
            );
        }
    };
    let now = stratus_core::mailstore::now();
    let id = format!("U{now:010}{}", stratus_core::ids::random_hex(8));
    let Some(key) = upload_key(&user.account, &id) else {
        return crate::http::problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let blobs = &ctx.shared.stores.blobs;
    let size = bytes.len();
    // What this account uploaded more than a day ago goes now; what it
    // keeps, with this, stays under MAX_KEPT.
    let prefix = format!("jmapupload/{}/", user.account);
    let mut kept = 0u64;
    let mut listed = 0;
    let mut after: Option<BlobKey> = None;
    loop {
        let Ok(page) = blobs.list(&prefix, after.as_ref(), 1000).await else {
            return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again");
        };
        let done = page.len() < 1000;
        for meta in &page {
            let name = meta.key.as_str().rsplit('/').next().unwrap_or_default();
            if upload_time(name).is_none_or(|at| now - at > UPLOAD_TTL) {
                let _ = blobs.delete(&meta.key).await;
            } else {
                kept += meta.size;
                listed += 1;
            }
        }
        after = page.last().map(|m| m.key.clone());
        if done || listed > 10_000 {
            break;
        }
    }
    if kept + size as u64 > MAX_KEPT {
        return super::request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
            "this account's uploads of the last day are as large as they may be",
            Some(("limit", "maxSizeUpload")),
        );
    }
    if let Err(e) = blobs.put(&key, bytes).await {
        tracing::warn!(error = %e, "JMAP: an upload could not be stored");
        return crate::http::problem(StatusCode::SERVICE_UNAVAILABLE, "try again");
    }
    let mut r = (
        StatusCode::CREATED,
        json!({"accountId": user.account, "blobId": id, "type": kind, "size": size}).to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The bytes of any blob this account may read: an upload, a stored
/// message, or a part of one.
pub async fn blob(
    ctx: &Context,
    user: &User,
    view: &View,
    id: &str,
) -> Result<Option<Vec<u8>>, MethodError> {
    if id.starts_with('U') {
        return uploaded(ctx, user, id).await;
    }
    let Some((email, part)) = super::parts::parse_blob(id) else {
        return Ok(None);
    };
    let Some(e) = view.emails.get(&email) else {
        return Ok(None);
    };
    let raw = super::parts::raw(ctx, e).await?;
    match part {
        None => Ok(Some(raw)),
        Some(i) => Ok(stratus_core::message::parse(&raw)
            .and_then(|m| m.parts.get(i).map(super::parts::contents))),
    }
}

/// Files `raw` as a new Email in these mailboxes with these keywords.
/// Returns its id, or the set error why not.
async fn store(
    call: &Call<'_>,
    view: &View,
    raw: Vec<u8>,
    mailboxes: &BTreeSet<String>,
    keywords: &BTreeSet<String>,
    received_at: Option<i64>,
) -> Result<String, Value> {
    let accounts = call.ctx.shared.stores.accounts();
    let address = &call.user.address;
    let fail = |e: stratus_core::accounts::AccountError| {
        tracing::warn!(error = %e, "JMAP: an Email could not be stored");
        set_error("serverFail", "the stores did not answer; try again")
    };
    if let Some(quota) = accounts
        .user(address)
        .await
        .map_err(fail)?
        .and_then(|u| u.quota)
    {
        let used = accounts.usage(address).await.map_err(fail)?;
        if used + raw.len() as u64 > quota {
            return Err(set_error(
                "overQuota",
                "the Email does not fit in the account's quota",
            ));
        }
    }
    let names = mailboxes
        .iter()
        .map(|id| view.mailbox(id).map(|m| m.name.clone()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| json!({"type": "invalidProperties", "properties": ["mailboxIds"]}))?;
    if names.is_empty() {
        return Err(
            json!({"type": "invalidProperties", "properties": ["mailboxIds"],
                          "description": "an Email is in at least one mailbox"}),
        );
    }
    let queue_id = QueueId::generate();
    let key = BlobKey::for_message(&queue_id);
    let meta = stratus_core::message::analyze(&raw);
    let size = raw.len() as u64;
    call.ctx
        .shared
        .stores
        .blobs
        .put(&key, raw.into())
        .await
        .map_err(|e| fail(e.into()))?;
    let store = call.ctx.shared.stores.mailstore();
    let message = NewMessage {
        queue_id,
        body: key.clone(),
        body_size: size,
        prefix: String::new(),
        meta,
        flags: keywords.iter().map(|k| view::flag_of_keyword(k)).collect(),
        internal_date: received_at.unwrap_or_else(stratus_core::mailstore::now),
        internal_tz: 0,
    };
    for name in names {
        match store.append(address, &name, message.clone()).await {
            Ok(_) => {}
            Err(stratus_core::accounts::AccountError::TooManyKeywords) => {
                return Err(set_error(
                    "tooManyKeywords",
                    "the mailbox has too many keywords",
                ));
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(view::email_id(key.as_str()))
}

/// Whether `raw` starts as an RFC 5322 message does: a header field
/// (a name of printable characters, a colon), and parses as one.
fn looks_like_a_message(raw: &[u8]) -> bool {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let named = first.iter().position(|&b| b == b':').is_some_and(|colon| {
        colon > 0
            && first[..colon]
                .iter()
                .all(|b| (0x21..=0x7e).contains(b) && *b != b':')
    });
    named && stratus_core::message::parse_headers(raw).is_some_and(|m| !m.headers().is_empty())
}

/// Mailbox ids (creation ids resolved) and keywords of a creation.
fn placement(
    call: &Call<'_>,
    props: &Map<String, Value>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), Value> {
    let bad = |p: &str| json!({"type": "invalidProperties", "properties": [p]});
    let mut mailboxes = BTreeSet::new();
    for (id, v) in props
        .get("mailboxIds")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("mailboxIds"))?
    {
        if v != &Value::Bool(true) {
            return Err(bad("mailboxIds"));
        }
        mailboxes.insert(call.id_of(id).map_err(|_| bad("mailboxIds"))?);
    }
    let mut keywords = BTreeSet::new();
    if let Some(k) = props.get("keywords") {
        for (k, v) in k.as_object().ok_or_else(|| bad("keywords"))? {
            if v != &Value::Bool(true) || !view::valid_keyword(k) {
                return Err(bad("keywords"));
            }
            keywords.insert(k.to_ascii_lowercase());
        }
    }
    Ok((mailboxes, keywords))
}

fn received(props: &Map<String, Value>) -> Result<Option<i64>, Value> {
    match props.get("receivedAt") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => super::email::parse_date(s)
            .map(Some)
            .ok_or_else(|| json!({"type": "invalidProperties", "properties": ["receivedAt"]})),
        Some(_) => Err(json!({"type": "invalidProperties", "properties": ["receivedAt"]})),
    }
}

/// What a creation answers: the new Email's id, blob, thread and size.
fn created(view: &View, id: &str) -> Value {
    match view.emails.get(id) {
        Some(e) => json!({
            "id": e.id,
            "blobId": super::parts::blob_of_email(&e.id),
            "threadId": e.thread,
            "size": e.size,
        }),
        None => json!({"id": id}),
    }
}

/// Email/import: messages uploaded as they are.
pub async fn import(call: &mut Call<'_>, args: Map<String, Value>) -> super::MethodResult {
    let args = super::Args(args);
    args.only(&["ifInState", "emails"])?;
    let mut view = view::load(call.ctx, call.user).await?;
    let old_state = view.state();
    if let Some(want) = args.string("ifInState")?
        && want != old_state
    {
        return Err(MethodError::new("stateMismatch", "the state has moved on"));
    }
    let emails = args
        .object("emails")?
        .ok_or_else(|| MethodError::invalid("`emails` is needed"))?
        .clone();
    if emails.len() > super::MAX_OBJECTS_IN_SET {
        return Err(MethodError::new("requestTooLarge", "too many emails"));
    }
    let mut made = Map::new();
    let mut not_created = Map::new();
    for (cid, props) in emails {
        let Some(props) = props.as_object() else {
            not_created.insert(cid, set_error("invalidProperties", "not an object"));
            continue;
        };
        let outcome = async {
            let (mailboxes, keywords) = placement(call, props)?;
            let at = received(props)?;
            let blob_id = props
                .get("blobId")
                .and_then(Value::as_str)
                .ok_or_else(|| json!({"type": "invalidProperties", "properties": ["blobId"]}))?;
            let raw = blob(call.ctx, call.user, &view, blob_id)
                .await
                .map_err(|e| set_error(e.kind, e.description))?
                .ok_or_else(|| json!({"type": "blobNotFound", "notFound": [blob_id]}))?;
            if !looks_like_a_message(&raw) {
                return Err(set_error(
                    "invalidEmail",
                    "the blob is not an RFC 5322 message",
                ));
            }
            store(call, &view, raw, &mailboxes, &keywords, at).await
        }
        .await;
        match outcome {
            Ok(id) => {
                view = view::load(call.ctx, call.user).await?;
                call.created.insert(cid.clone(), id.clone());
                made.insert(cid, created(&view, &id));
            }
            Err(e) => {
                not_created.insert(cid, e);
            }
        }
    }
    Ok(json!({
        "accountId": call.user.account,
        "oldState": old_state,
        "newState": view.state(),
        "created": if made.is_empty() { Value::Null } else { Value::Object(made) },
        "notCreated": if not_created.is_empty() { Value::Null } else { Value::Object(not_created) },
    }))
}

/// Addresses of an `EmailAddress[]` property.
fn addresses(v: &Value) -> Option<BuiltAddress<'static>> {
    let list = v.as_array()?;
    let mut out = Vec::new();
    for a in list {
        let email = a.get("email")?.as_str()?;
        if email.contains(['\r', '\n', '<', '>']) || !email.contains('@') {
            return None;
        }
        let name = a
            .get("name")
            .and_then(Value::as_str)
            .map(|n| n.replace(['\r', '\n'], " "));
        out.push(BuiltAddress::new_address(name, email.to_string()));
    }
    Some(BuiltAddress::new_list(out))
}

fn message_ids(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|id| {
            id.as_str()
                .filter(|s| {
                    !s.is_empty()
                        && !s.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
                })
                .map(str::to_string)
        })
        .collect()
}

/// The raw message an Email/set creation describes, from its parts.
pub async fn build(
    call: &Call<'_>,
    view: &View,
    props: &Map<String, Value>,
) -> Result<Vec<u8>, Value> {
    let bad = |p: &str, why: &str| json!({"type": "invalidProperties", "properties": [p], "description": why});
    let mut m = MessageBuilder::new();
    for (p, v) in props {
        if v.is_null() {
            continue;
        }
        match p.as_str() {
            "mailboxIds" | "keywords" | "receivedAt" | "bodyValues" | "textBody" | "htmlBody"
            | "attachments" => {}
            "from" => m = m.from(addresses(v).ok_or_else(|| bad(p, "name and email"))?),
            "to" => m = m.to(addresses(v).ok_or_else(|| bad(p, "name and email"))?),
            "cc" => m = m.cc(addresses(v).ok_or_else(|| bad(p, "name and email"))?),
            "bcc" => m = m.bcc(addresses(v).ok_or_else(|| bad(p, "name and email"))?),
            "replyTo" => m = m.reply_to(addresses(v).ok_or_else(|| bad(p, "name and email"))?),
            "sender" => m = m.sender(addresses(v).ok_or_else(|| bad(p, "name and email"))?),
            "subject" => {
                let s = v.as_str().ok_or_else(|| bad(p, "a string"))?;
                m = m.subject(s.replace(['\r', '\n'], " "));
            }
            "sentAt" => {
                let at = v
                    .as_str()
                    .and_then(super::email::parse_date)
                    .ok_or_else(|| bad(p, "a date"))?;
                m = m.date(at);
            }
            "messageId" => {
                let ids = message_ids(v)
                    .filter(|i| i.len() == 1)
                    .ok_or_else(|| bad(p, "one id"))?;
                m = m.message_id(ids[0].clone());
            }
            "inReplyTo" => {
                let ids = message_ids(v).ok_or_else(|| bad(p, "ids"))?;
                m = m.in_reply_to(ids);
            }
            "references" => {
                let ids = message_ids(v).ok_or_else(|| bad(p, "ids"))?;
                m = m.references(ids);
            }
            h if h.starts_with("header:") => {
                let mut pieces = h["header:".len()..].split(':');
                let name = pieces.next().unwrap_or_default();
                let form = pieces.next().unwrap_or("asRaw");
                let valid_name = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && !name.to_ascii_lowercase().starts_with("content-");
                // Line breaks only as folding (CRLF then a space or a
                // tab), never ending a field or the header.
                let folded_only = |t: &str| {
                    let b = t.as_bytes();
                    b.iter().enumerate().all(|(i, c)| match c {
                        b'\r' => {
                            b.get(i + 1) == Some(&b'\n')
                                && matches!(b.get(i + 2), Some(b' ' | b'\t'))
                        }
                        b'\n' => {
                            i > 0 && b[i - 1] == b'\r' && matches!(b.get(i + 1), Some(b' ' | b'\t'))
                        }
                        _ => true,
                    })
                };
                let text = v
                    .as_str()
                    .filter(|t| !t.contains(['\r', '\n']) || (form == "asRaw" && folded_only(t)));
                match (valid_name, form, text) {
                    (true, "asText" | "asRaw", Some(t)) => {
                        m = m.header(name.to_string(), Raw::new(format!(" {}", t.trim_start())));
                    }
                    _ => return Err(bad(p, "a header name, asText or asRaw, and a string")),
                }
            }
            "bodyStructure" => {
                return Err(bad(
                    p,
                    "make the body from textBody, htmlBody and attachments",
                ));
            }
            _ => return Err(bad(p, "not a property an Email is made with")),
        }
    }
    if !props.contains_key("sentAt") {
        m = m.date(stratus_core::mailstore::now());
    }
    if !props.contains_key("messageId") {
        m = m.message_id(format!(
            "{}@{}",
            stratus_core::ids::random_hex(12),
            call.ctx.shared.hostname
        ));
    }
    let values = props.get("bodyValues").and_then(Value::as_object);
    let text_of = |list: &str| -> Result<Option<String>, Value> {
        let Some(parts) = props.get(list).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let part = match parts.as_array().map(Vec::as_slice) {
            Some([one]) => one,
            _ => return Err(bad(list, "one part")),
        };
        let id = part
            .get("partId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(list, "a partId"))?;
        let value = values
            .and_then(|v| v.get(id))
            .and_then(|v| v.get("value"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("bodyValues", "a value for each partId"))?;
        Ok(Some(value.to_string()))
    };
    if let Some(text) = text_of("textBody")? {
        m = m.text_body(text);
    }
    if let Some(html) = text_of("htmlBody")? {
        m = m.html_body(html);
    }
    if let Some(list) = props.get("attachments").and_then(Value::as_array) {
        // Attachments are read one by one until they pass the limit, so
        // one large blob named many times is read no more than once past it.
        let mut total = 0usize;
        for a in list {
            let blob_id = a
                .get("blobId")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("attachments", "a blobId"))?;
            let bytes = blob(call.ctx, call.user, view, blob_id)
                .await
                .map_err(|e| set_error(e.kind, e.description))?
                .ok_or_else(|| json!({"type": "blobNotFound", "notFound": [blob_id]}))?;
            total += bytes.len();
            if total > MAX_UPLOAD {
                return Err(set_error(
                    "tooLarge",
                    "the attachments are larger than maxSizeUpload",
                ));
            }
            let kind = a
                .get("type")
                .and_then(Value::as_str)
                .filter(|t| t.split_once('/').is_some() && !t.contains(['\r', '\n', ';', '"']))
                .unwrap_or("application/octet-stream")
                .to_string();
            let name = a
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("attachment")
                .replace(['\r', '\n', '"', '/', '\\'], "_");
            let inline = a.get("disposition").and_then(Value::as_str) == Some("inline");
            let cid = a
                .get("cid")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty() && !c.contains(['\r', '\n', '<', '>', ' ']));
            m = match (inline, cid) {
                (true, Some(cid)) => m.inline(kind, cid.to_string(), bytes),
                _ => m.attachment(kind, name, bytes),
            };
        }
    }
    m.write_to_vec()
        .map_err(|_| set_error("invalidEmail", "the Email could not be written"))
}

/// Email/set's creations.
pub async fn create_all(
    call: &mut Call<'_>,
    create: &Map<String, Value>,
    view: &mut View,
    made: &mut Map<String, Value>,
    not_created: &mut Map<String, Value>,
) -> Result<(), MethodError> {
    for (cid, props) in create {
        let Some(props) = props.as_object() else {
            not_created.insert(cid.clone(), set_error("invalidProperties", "not an object"));
            continue;
        };
        let outcome = async {
            let (mailboxes, keywords) = placement(call, props)?;
            let at = received(props)?;
            let raw = build(call, view, props).await?;
            if raw.len() > MAX_UPLOAD {
                return Err(set_error(
                    "tooLarge",
                    "the Email is larger than maxSizeUpload",
                ));
            }
            store(call, view, raw, &mailboxes, &keywords, at).await
        }
        .await;
        match outcome {
            Ok(id) => {
                *view = view::load(call.ctx, call.user).await?;
                call.created.insert(cid.clone(), id.clone());
                made.insert(cid.clone(), created(view, &id));
            }
            Err(e) => {
                not_created.insert(cid.clone(), e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_are_imported() {
        assert!(looks_like_a_message(b"Subject: x\r\n\r\nbody"));
        assert!(!looks_like_a_message(b"\x89PNG\r\n\x1a\n"));
        assert!(!looks_like_a_message(b": no name\r\n\r\n"));
        assert!(!looks_like_a_message(b""));
    }

    #[test]
    fn upload_ids_carry_their_time() {
        assert_eq!(
            upload_time("U17000000000123456789abcdef0"),
            None,
            "too long"
        );
        assert_eq!(
            upload_time("U17000000000123456789abcdef"),
            Some(1_700_000_000)
        );
        assert_eq!(upload_time("U1700000000../../etc/passw"), None);
        assert_eq!(upload_time("B1700000000"), None);
    }
}
