//! Email/get, /changes, /query and /set, Thread/get and /changes,
//! Identity/get and SearchSnippet/get (RFC 8621 §3–§7).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};
use stratus_core::message::{EnvelopeAddress, PartMeta};

use super::mailbox::{changes_answer, max_changes, since_state};
use super::parts;
use super::view::{self, Email, View};
use super::{
    Args, Call, Filter, MAX_OBJECTS_IN_SET, MAX_QUERY_LIMIT, MethodError, MethodResult, get_answer,
    set_error,
};

/// What Email/query sorts by.
pub const SORT_PROPERTIES: &[&str] = &[
    "receivedAt",
    "sentAt",
    "size",
    "from",
    "to",
    "subject",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

const METADATA: &[&str] = &[
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
];

/// Properties that need the message itself.
const CONTENT: &[&str] = &[
    "references",
    "preview",
    "headers",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

const DEFAULT_PROPERTIES: &[&str] = &[
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

const BODY_PROPERTIES: &[&str] = &[
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
];

const DEFAULT_BODY_PROPERTIES: &[&str] = &[
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
];

/// RFC 3339 in UTC.
pub fn utc_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = stratus_core::time::civil_from_day(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix seconds of an RFC 3339 date-time (`Z` or an offset).
pub fn parse_date(s: &str) -> Option<i64> {
    stratus_proto::imap::url::rfc3339(s)
}

fn addresses(list: &[EnvelopeAddress]) -> Value {
    let out: Vec<Value> = list
        .iter()
        .filter(|a| a.host.is_some())
        .map(|a| {
            json!({
                "name": a.name,
                "email": format!("{}@{}", a.mailbox.as_deref().unwrap_or_default(), a.host.as_deref().unwrap_or_default()),
            })
        })
        .collect();
    if out.is_empty() {
        Value::Null
    } else {
        Value::Array(out)
    }
}

fn address_text(list: &[EnvelopeAddress]) -> String {
    list.iter()
        .map(|a| {
            format!(
                "{} {}@{}",
                a.name.as_deref().unwrap_or_default(),
                a.mailbox.as_deref().unwrap_or_default(),
                a.host.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn ids_of(raw: Option<&str>) -> Value {
    match raw {
        Some(r) => {
            let ids: Vec<String> = r
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(view::bare_id)
                .filter(|s| !s.is_empty())
                .collect();
            if ids.is_empty() {
                Value::Null
            } else {
                json!(ids)
            }
        }
        None => Value::Null,
    }
}

/// Whether a message has an attachment, by its stored structure: a part
/// with an attachment disposition, or a leaf that is not text.
pub fn has_attachment(part: &PartMeta) -> bool {
    let attached = part
        .disposition
        .as_ref()
        .is_some_and(|(d, _)| d.eq_ignore_ascii_case("attachment"));
    if attached {
        return true;
    }
    if part.ctype.eq_ignore_ascii_case("multipart") {
        return part.parts.iter().any(has_attachment);
    }
    !part.ctype.eq_ignore_ascii_case("text") && part.parts.is_empty() && part.message.is_none()
        || part.message.is_some()
}

fn metadata(view: &View, e: &Email, p: &str) -> Value {
    let env = &e.meta.envelope;
    match p {
        "id" => json!(e.id),
        "blobId" => json!(parts::blob_of_email(&e.id)),
        "threadId" => json!(e.thread),
        "mailboxIds" => Value::Object(
            e.entries
                .iter()
                .filter(|(m, _)| view.mailbox(m).is_some())
                .map(|(m, _)| (m.clone(), Value::Bool(true)))
                .collect(),
        ),
        "keywords" => Value::Object(
            e.keywords
                .iter()
                .cloned()
                .map(|k| (k, Value::Bool(true)))
                .collect(),
        ),
        "size" => json!(e.size),
        "receivedAt" => json!(utc_date(e.received_at)),
        "messageId" => ids_of(env.message_id.as_deref()),
        "inReplyTo" => ids_of(env.in_reply_to.as_deref()),
        "sender" => addresses(&env.sender),
        "from" => addresses(&env.from),
        "to" => addresses(&env.to),
        "cc" => addresses(&env.cc),
        "bcc" => addresses(&env.bcc),
        "replyTo" => addresses(&env.reply_to),
        "subject" => json!(env.subject),
        "sentAt" => env.sent.map(utc_date).map_or(Value::Null, Value::String),
        "hasAttachment" => json!(has_attachment(&e.meta.structure)),
        _ => Value::Null,
    }
}

/// `header:Name[:form][:all]` of a message (RFC 8621 §4.1.2).
fn header_property(message: &mail_parser::Message, property: &str) -> Result<Value, MethodError> {
    let rest = &property["header:".len()..];
    let mut pieces: Vec<&str> = rest.split(':').collect();
    let all = pieces.last() == Some(&"all");
    if all {
        pieces.pop();
    }
    let (name, form) = match pieces.as_slice() {
        [name] => (*name, "asRaw"),
        [name, form] => (*name, *form),
        _ => {
            return Err(MethodError::invalid(format!(
                "bad header property {property:?}"
            )));
        }
    };
    if name.is_empty() {
        return Err(MethodError::invalid(format!(
            "bad header property {property:?}"
        )));
    }
    let headers: Vec<&mail_parser::Header> = message
        .root_part()
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .collect();
    let raw = |h: &mail_parser::Header| parts::header_raw(message, h);
    let one = |h: &mail_parser::Header| -> Result<Value, MethodError> {
        let r = raw(h);
        Ok(match form {
            "asRaw" => json!(r),
            "asText" => json!(unfold(&r).trim()),
            "asMessageIds" => ids_of(Some(&r)),
            "asDate" => h
                .value()
                .as_datetime()
                .map_or(Value::Null, |d| json!(utc_date(d.to_timestamp()))),
            "asURLs" => {
                let urls: Vec<String> = r
                    .split(',')
                    .filter_map(|u| {
                        let u = u.trim();
                        Some(u.strip_prefix('<')?.split('>').next()?.trim().to_string())
                    })
                    .collect();
                if urls.is_empty() {
                    Value::Null
                } else {
                    json!(urls)
                }
            }
            "asAddresses" | "asGroupedAddresses" => {
                let list = match h.value().as_address() {
                    Some(mail_parser::Address::List(l)) => l
                        .iter()
                        .map(|a| json!({"name": a.name(), "email": a.address()}))
                        .collect(),
                    Some(mail_parser::Address::Group(groups)) => groups
                        .iter()
                        .flat_map(|g| g.addresses.iter())
                        .map(|a| json!({"name": a.name(), "email": a.address()}))
                        .collect(),
                    None => Vec::new(),
                };
                if form == "asGroupedAddresses" {
                    json!([{"name": null, "addresses": list}])
                } else {
                    Value::Array(list)
                }
            }
            _ => {
                return Err(MethodError::invalid(format!(
                    "no header form {form:?} (asRaw, asText, asAddresses, asGroupedAddresses, asMessageIds, asDate, asURLs)"
                )));
            }
        })
    };
    if all {
        Ok(Value::Array(
            headers.iter().map(|h| one(h)).collect::<Result<_, _>>()?,
        ))
    } else {
        match headers.last() {
            Some(h) => one(h),
            None => Ok(Value::Null),
        }
    }
}

fn unfold(s: &str) -> String {
    s.replace("\r\n", "").replace('\n', "")
}

/// Which body values to fetch, and how long each may be.
struct BodyValues {
    text: bool,
    html: bool,
    all: bool,
    max: usize,
}

fn content(
    message: &mail_parser::Message,
    e: &Email,
    p: &str,
    body_props: &[String],
    values: &BodyValues,
) -> Result<Value, MethodError> {
    let list = |indices: &[u32]| {
        Value::Array(
            indices
                .iter()
                .map(|i| parts::body_part(message, &e.id, *i as usize, body_props, false))
                .collect(),
        )
    };
    Ok(match p {
        "references" => ids_of(message.header_raw("References")),
        "preview" => json!(parts::preview(message)),
        "headers" => Value::Array(
            message
                .root_part()
                .headers
                .iter()
                .map(|h| json!({"name": h.name(), "value": parts::header_raw(message, h)}))
                .collect(),
        ),
        "bodyStructure" => parts::body_part(message, &e.id, 0, body_props, true),
        "textBody" => list(&message.text_body),
        "htmlBody" => list(&message.html_body),
        "attachments" => list(&message.attachments),
        "bodyValues" => {
            let mut wanted: BTreeSet<u32> = BTreeSet::new();
            if values.text || values.all {
                wanted.extend(message.text_body.iter().copied());
            }
            if values.html || values.all {
                wanted.extend(message.html_body.iter().copied());
            }
            if values.all {
                wanted.extend(
                    (0..message.parts.len() as u32)
                        .filter(|i| parts::text_of(&message.parts[*i as usize]).is_some()),
                );
            }
            let mut out = Map::new();
            for i in wanted {
                let Some(text) = message.parts.get(i as usize).and_then(parts::text_of) else {
                    continue;
                };
                let truncated = values.max > 0 && text.len() > values.max;
                let value = if truncated {
                    let mut end = values.max;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    &text[..end]
                } else {
                    text
                };
                out.insert(
                    i.to_string(),
                    json!({"value": value, "isEncodingProblem": false, "isTruncated": truncated}),
                );
            }
            Value::Object(out)
        }
        _ => header_property(message, p)?,
    })
}

pub async fn get(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&[
        "ids",
        "properties",
        "bodyProperties",
        "fetchTextBodyValues",
        "fetchHTMLBodyValues",
        "fetchAllBodyValues",
        "maxBodyValueBytes",
    ])?;
    let known: Vec<&str> = METADATA.iter().chain(CONTENT).copied().collect();
    let props = args
        .properties("properties", &known)?
        .unwrap_or_else(|| DEFAULT_PROPERTIES.iter().map(|s| s.to_string()).collect());
    let body_props = args
        .properties("bodyProperties", BODY_PROPERTIES)?
        .unwrap_or_else(|| {
            DEFAULT_BODY_PROPERTIES
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
    let values = BodyValues {
        text: args.boolean("fetchTextBodyValues", false)?,
        html: args.boolean("fetchHTMLBodyValues", false)?,
        all: args.boolean("fetchAllBodyValues", false)?,
        max: args.unsigned("maxBodyValueBytes")?.unwrap_or(0) as usize,
    };
    let Some(ids) = call.ids_of(args.ids("ids")?) else {
        return Err(MethodError::new(
            "requestTooLarge",
            "Email/get needs ids (an account's every Email is too many)",
        ));
    };
    let view = view::load(call.ctx, call.user).await?;
    let needs_message = props
        .iter()
        .any(|p| CONTENT.contains(&p.as_str()) || p.starts_with("header:"));
    let mut rendered = BTreeMap::new();
    if ids.len() <= super::MAX_OBJECTS_IN_GET {
        for id in &ids {
            let Some(e) = view.emails.get(id) else {
                continue;
            };
            let mut out = Map::new();
            out.insert("id".into(), json!(e.id));
            let raw = if needs_message {
                Some(parts::raw(call.ctx, e).await?)
            } else {
                None
            };
            let message = raw.as_deref().and_then(stratus_core::message::parse);
            for p in &props {
                let v = if METADATA.contains(&p.as_str()) {
                    metadata(&view, e, p)
                } else {
                    match &message {
                        Some(m) => content(m, e, p, &body_props, &values)?,
                        None => Value::Null,
                    }
                };
                out.insert(p.clone(), v);
            }
            rendered.insert(id.clone(), Value::Object(out));
        }
    }
    get_answer(
        &call.user.account,
        &view.state(),
        Some(ids),
        Vec::new(),
        |id| rendered.get(id).cloned(),
    )
}

/// The Email changes since `sinceState`, with the view they lead to.
async fn email_changes_since(
    call: &Call<'_>,
    args: Map<String, Value>,
    what: &str,
) -> Result<
    (
        Vec<view::MailboxMark>,
        Option<usize>,
        View,
        view::EmailChanges,
    ),
    MethodError,
> {
    let args = Args(args);
    args.only(&["sinceState", "maxChanges"])?;
    let old = since_state(&args)?;
    let max = max_changes(&args)?;
    let view = view::load(call.ctx, call.user).await?;
    match view::email_changes(call.ctx, &view, &old).await? {
        Some(c) => Ok((old, max, view, c)),
        None => Err(MethodError::new(
            "cannotCalculateChanges",
            format!("the changes since that state are no longer kept: get the {what} again"),
        )),
    }
}

pub async fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let (old, max, view, c) = email_changes_since(call, args, "Emails").await?;
    changes_answer(
        &call.user.account,
        &view::encode_state(&old),
        &view.state(),
        c.created.into_iter().collect(),
        c.updated.into_iter().collect(),
        c.destroyed.into_iter().collect(),
        max,
        None,
    )
}

pub async fn thread_changes(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let (old, max, view, c) = email_changes_since(call, args, "Threads").await?;
    // A destroyed Email's thread is not known once the Email is gone.
    if !c.destroyed.is_empty() {
        return Err(MethodError::new(
            "cannotCalculateChanges",
            "Emails were destroyed since that state: get the Threads again",
        ));
    }
    let mut created = BTreeSet::new();
    let mut updated = BTreeSet::new();
    for id in c.created.iter().chain(&c.updated) {
        let Some(e) = view.emails.get(id) else {
            continue;
        };
        let all_new = view
            .emails
            .values()
            .filter(|x| x.thread == e.thread)
            .all(|x| c.created.contains(&x.id));
        if all_new {
            created.insert(e.thread.clone());
        } else {
            updated.insert(e.thread.clone());
        }
    }
    changes_answer(
        &call.user.account,
        &view::encode_state(&old),
        &view.state(),
        created.into_iter().collect(),
        updated.into_iter().collect(),
        Vec::new(),
        max,
        None,
    )
}

pub async fn thread_get(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ids", "properties"])?;
    args.properties("properties", &["id", "emailIds"])?;
    let Some(ids) = call.ids_of(args.ids("ids")?) else {
        return Err(MethodError::new("requestTooLarge", "Thread/get needs ids"));
    };
    let view = view::load(call.ctx, call.user).await?;
    get_answer(
        &call.user.account,
        &view.state(),
        Some(ids),
        Vec::new(),
        |id| {
            let emails = view.thread(id);
            (!emails.is_empty()).then(|| {
            json!({"id": id, "emailIds": emails.iter().map(|e| e.id.clone()).collect::<Vec<_>>()})
        })
        },
    )
}

/// Messages a search reads at once.
const READ_AHEAD: usize = 32;

/// Whether a filter has a condition on the message itself.
fn needs_message(filter: &Value) -> bool {
    match filter {
        Value::Object(f) => f.iter().any(|(k, v)| {
            matches!(k.as_str(), "text" | "body" | "header")
                || (k == "conditions" && v.as_array().is_some_and(|l| l.iter().any(needs_message)))
        }),
        _ => false,
    }
}

/// The messages of `emails`, read concurrently.
async fn read_all(
    call: &Call<'_>,
    emails: &[&Email],
) -> Result<HashMap<String, Vec<u8>>, MethodError> {
    let mut tasks = tokio::task::JoinSet::new();
    for e in emails {
        let ctx = call.ctx.clone();
        let e = (*e).clone();
        tasks.spawn(async move { parts::raw(&ctx, &e).await.map(|raw| (e.id, raw)) });
    }
    let mut out = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (id, raw) = done.map_err(|_| MethodError::new("serverFail", "a read failed"))??;
        out.insert(id, raw);
    }
    Ok(out)
}

/// What a query read of one message, so that each condition on it
/// reads it once.
#[derive(Debug, Default)]
struct Read {
    raw: Option<Vec<u8>>,
    text: Option<String>,
}

impl Read {
    async fn raw(&mut self, call: &Call<'_>, e: &Email) -> Result<&[u8], MethodError> {
        if self.raw.is_none() {
            self.raw = Some(parts::raw(call.ctx, e).await?);
        }
        Ok(self.raw.as_deref().unwrap_or_default())
    }

    /// The text of a message for `text` and `body` conditions: its text
    /// parts, lower case.
    async fn text(&mut self, call: &Call<'_>, e: &Email) -> Result<&str, MethodError> {
        if self.text.is_none() {
            let text = body_text(self.raw(call, e).await?);
            self.text = Some(text);
        }
        Ok(self.text.as_deref().unwrap_or_default())
    }
}

fn body_text(raw: &[u8]) -> String {
    let Some(message) = stratus_core::message::parse(raw) else {
        return String::new();
    };
    let mut text = String::new();
    for i in 0..message.text_body_count() {
        if let Some(t) = message.body_text(i) {
            text.push_str(&t);
            text.push('\n');
        }
    }
    text.to_lowercase()
}

/// Evaluates a filter on an Email. Conditions on the body read it once.
fn matches<'a>(
    call: &'a Call<'_>,
    view: &'a View,
    e: &'a Email,
    filter: &'a Value,
    read: &'a mut Read,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, MethodError>> + Send + 'a>> {
    Box::pin(async move {
        let f = match Filter::of(filter)? {
            Filter::All => return Ok(true),
            Filter::Condition(f) => f,
            Filter::Operator(op, conditions) => {
                let mut results = Vec::with_capacity(conditions.len());
                for c in conditions {
                    results.push(matches(call, view, e, c, read).await?);
                }
                return Ok(Filter::combine(op, &results));
            }
        };
        let env = &e.meta.envelope;
        let text = |v: &Value| -> Result<String, MethodError> {
            v.as_str().map(str::to_lowercase).ok_or_else(|| {
                MethodError::new("unsupportedFilter", "a text condition takes a string")
            })
        };
        let date = |v: &Value| -> Result<i64, MethodError> {
            v.as_str().and_then(parse_date).ok_or_else(|| {
                MethodError::new(
                    "unsupportedFilter",
                    "a date condition takes an RFC 3339 date",
                )
            })
        };
        let number = |v: &Value| -> Result<u64, MethodError> {
            v.as_u64().ok_or_else(|| {
                MethodError::new("unsupportedFilter", "a size condition takes a number")
            })
        };
        let keyword = |v: &Value| -> Result<String, MethodError> {
            v.as_str()
                .filter(|k| view::valid_keyword(k))
                .map(str::to_ascii_lowercase)
                .ok_or_else(|| MethodError::new("unsupportedFilter", "not a keyword"))
        };
        let in_thread = |k: String| {
            view.thread(&e.thread)
                .into_iter()
                .map(move |x| x.has_keyword(&k))
        };
        for (k, v) in f {
            let ok = match k.as_str() {
                "inMailbox" => e.in_mailbox(v.as_str().unwrap_or_default()),
                "inMailboxOtherThan" => {
                    let others: Vec<&str> = v
                        .as_array()
                        .ok_or_else(|| {
                            MethodError::new("unsupportedFilter", "inMailboxOtherThan takes ids")
                        })?
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    e.entries.iter().any(|(m, _)| !others.contains(&m.as_str()))
                }
                "before" => e.received_at < date(v)?,
                "after" => e.received_at >= date(v)?,
                "minSize" => e.size >= number(v)?,
                "maxSize" => e.size < number(v)?,
                "hasKeyword" => e.has_keyword(&keyword(v)?),
                "notKeyword" => !e.has_keyword(&keyword(v)?),
                "allInThreadHaveKeyword" => in_thread(keyword(v)?).all(|b| b),
                "someInThreadHaveKeyword" => in_thread(keyword(v)?).any(|b| b),
                "noneInThreadHaveKeyword" => !in_thread(keyword(v)?).any(|b| b),
                "hasAttachment" => {
                    has_attachment(&e.meta.structure) == v.as_bool().unwrap_or(false)
                }
                "from" => address_text(&env.from).contains(&text(v)?),
                "to" => address_text(&env.to).contains(&text(v)?),
                "cc" => address_text(&env.cc).contains(&text(v)?),
                "bcc" => address_text(&env.bcc).contains(&text(v)?),
                "subject" => env
                    .subject
                    .as_deref()
                    .unwrap_or_default()
                    .to_lowercase()
                    .contains(&text(v)?),
                "body" | "text" => {
                    let needle = text(v)?;
                    let header_hit = k == "text"
                        && ([&env.from, &env.to, &env.cc, &env.bcc]
                            .iter()
                            .any(|l| address_text(l).contains(&needle))
                            || env
                                .subject
                                .as_deref()
                                .unwrap_or_default()
                                .to_lowercase()
                                .contains(&needle));
                    header_hit || read.text(call, e).await?.contains(&needle)
                }
                "header" => {
                    let pair = v.as_array().ok_or_else(|| {
                        MethodError::new(
                            "unsupportedFilter",
                            "header takes [name] or [name, value]",
                        )
                    })?;
                    let name = pair.first().and_then(Value::as_str).unwrap_or_default();
                    let value = pair.get(1).and_then(Value::as_str).map(str::to_lowercase);
                    let raw = read.raw(call, e).await?;
                    let header = stratus_core::message::parse_headers(raw)
                        .and_then(|m| m.header_raw(name).map(|h| unfold(h).to_lowercase()));
                    match (header, value) {
                        (Some(h), Some(v)) => h.contains(&v),
                        (Some(_), None) => true,
                        (None, _) => false,
                    }
                }
                _ => {
                    return Err(MethodError::new(
                        "unsupportedFilter",
                        format!("no Email filter {k:?}"),
                    ));
                }
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

const CONDITIONS: &[&str] = &[
    "inMailbox",
    "inMailboxOtherThan",
    "before",
    "after",
    "minSize",
    "maxSize",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
    "noneInThreadHaveKeyword",
    "hasKeyword",
    "notKeyword",
    "hasAttachment",
    "text",
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "body",
    "header",
];

/// Refuses a filter with an unknown condition or operator, whether or
/// not any Email would reach it.
fn check_filter(filter: &Value) -> Result<(), MethodError> {
    match Filter::of(filter)? {
        Filter::All => Ok(()),
        Filter::Operator(_, list) => list.iter().try_for_each(check_filter),
        Filter::Condition(f) => match f.keys().find(|k| !CONDITIONS.contains(&k.as_str())) {
            Some(k) => Err(MethodError::new(
                "unsupportedFilter",
                format!("no Email filter {k:?}"),
            )),
            None => Ok(()),
        },
    }
}

fn first_address(list: &[EnvelopeAddress]) -> String {
    list.first()
        .map(|a| {
            format!(
                "{}{}@{}",
                a.name.as_deref().unwrap_or_default(),
                a.mailbox.as_deref().unwrap_or_default(),
                a.host.as_deref().unwrap_or_default()
            )
            .to_lowercase()
        })
        .unwrap_or_default()
}

/// A subject without `Re:`/`Fwd:` prefixes, for sorting.
fn base_subject(s: &str) -> String {
    let mut s = s.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let cut = ["re:", "fwd:", "fw:"]
            .iter()
            .find(|p| lower.starts_with(*p));
        match cut {
            Some(p) => s = s[p.len()..].trim_start(),
            None => return s.to_lowercase(),
        }
    }
}

pub async fn query(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&[super::QUERY_ARGS, &["collapseThreads"]].concat())?;
    let view = view::load(call.ctx, call.user).await?;
    let filter = args.0.get("filter").cloned().unwrap_or(Value::Null);
    let mut comparators: Vec<(String, bool, Option<String>)> = Vec::new();
    if let Some(sort) = args.0.get("sort").filter(|v| !v.is_null()) {
        for c in sort
            .as_array()
            .ok_or_else(|| MethodError::invalid("`sort` must be a list"))?
        {
            let property = c
                .get("property")
                .and_then(Value::as_str)
                .ok_or_else(|| MethodError::invalid("a sort comparator names a property"))?;
            if !SORT_PROPERTIES.contains(&property) {
                return Err(MethodError::new(
                    "unsupportedSort",
                    format!("Emails do not sort by {property:?}"),
                ));
            }
            let keyword = c
                .get("keyword")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            if property.contains("eyword") && keyword.is_none() {
                return Err(MethodError::invalid(format!(
                    "sorting by {property} needs a keyword"
                )));
            }
            let ascending = c
                .get("isAscending")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            comparators.push((property.to_string(), ascending, keyword));
        }
    }
    if comparators.is_empty() {
        comparators.push(("receivedAt".into(), false, None));
    }
    check_filter(&filter)?;
    let mut found: Vec<&Email> = Vec::new();
    let mut candidates: Vec<&Email> = view.emails.values().collect();
    candidates.sort_by(|a, b| a.id.cmp(&b.id));
    // Conditions on the message itself read it: a chunk of messages at a
    // time, concurrently (the blob store's latency, not its throughput,
    // is what a search waits on), and dropped after.
    let reads_messages = needs_message(&filter);
    for chunk in candidates.chunks(if reads_messages {
        READ_AHEAD
    } else {
        usize::MAX
    }) {
        let mut raws = if reads_messages {
            read_all(call, chunk).await?
        } else {
            HashMap::new()
        };
        for e in chunk {
            let mut read = Read {
                raw: raws.remove(&e.id),
                text: None,
            };
            if matches(call, &view, e, &filter, &mut read).await? {
                found.push(e);
            }
        }
    }
    let thread_has = |e: &Email, k: &str, all: bool| {
        let mut it = view.thread(&e.thread).into_iter();
        if all {
            it.all(|x| x.has_keyword(k))
        } else {
            it.any(|x| x.has_keyword(k))
        }
    };
    found.sort_by(|a, b| {
        for (p, asc, k) in &comparators {
            let k = k.as_deref().unwrap_or_default();
            let o = match p.as_str() {
                "receivedAt" => a.received_at.cmp(&b.received_at),
                "sentAt" => a.meta.envelope.sent.cmp(&b.meta.envelope.sent),
                "size" => a.size.cmp(&b.size),
                "from" => {
                    first_address(&a.meta.envelope.from).cmp(&first_address(&b.meta.envelope.from))
                }
                "to" => first_address(&a.meta.envelope.to).cmp(&first_address(&b.meta.envelope.to)),
                "subject" => base_subject(a.meta.envelope.subject.as_deref().unwrap_or_default())
                    .cmp(&base_subject(
                        b.meta.envelope.subject.as_deref().unwrap_or_default(),
                    )),
                "hasKeyword" => a.has_keyword(k).cmp(&b.has_keyword(k)),
                "allInThreadHaveKeyword" => thread_has(a, k, true).cmp(&thread_has(b, k, true)),
                _ => thread_has(a, k, false).cmp(&thread_has(b, k, false)),
            };
            let o = if *asc { o } else { o.reverse() };
            if o.is_ne() {
                return o;
            }
        }
        a.id.cmp(&b.id)
    });
    if args.boolean("collapseThreads", false)? {
        let mut seen = BTreeSet::new();
        found.retain(|e| seen.insert(e.thread.clone()));
    }
    let ids = found.iter().map(|e| e.id.clone()).collect();
    window(
        &call.user.account,
        &view.state(),
        &args,
        ids,
        args.boolean("collapseThreads", false)?,
    )
}

/// The part of a query's results asked for (RFC 8620 §5.5): by position
/// or anchor, at most `limit`.
pub fn window(
    account: &str,
    state: &str,
    args: &Args,
    ids: Vec<String>,
    collapse: bool,
) -> MethodResult {
    let total = ids.len();
    let limit = match args.unsigned("limit")? {
        Some(l) => (l as usize).min(MAX_QUERY_LIMIT),
        None => MAX_QUERY_LIMIT,
    };
    let mut start = match args.string("anchor")? {
        Some(anchor) => {
            let Some(at) = ids.iter().position(|id| *id == anchor) else {
                return Err(MethodError::new(
                    "anchorNotFound",
                    "the anchor is not in the results",
                ));
            };
            let offset = args.int("anchorOffset")?.unwrap_or(0);
            (at as i64).saturating_add(offset).max(0) as usize
        }
        None => {
            let position = args.int("position")?.unwrap_or(0);
            if position < 0 {
                (total as i64 + position).max(0) as usize
            } else {
                position as usize
            }
        }
    };
    start = start.min(total);
    let end = (start + limit).min(total);
    let mut answer = json!({
        "accountId": account,
        "queryState": state,
        "canCalculateChanges": false,
        "position": start,
        "ids": ids[start..end],
        "collapseThreads": collapse,
    });
    if args.boolean("calculateTotal", false)? {
        answer["total"] = json!(total);
    }
    if args
        .unsigned("limit")?
        .is_some_and(|l| l as usize > MAX_QUERY_LIMIT)
    {
        answer["limit"] = json!(MAX_QUERY_LIMIT);
    }
    Ok(answer)
}

/// Refuses a /set with more objects than `maxObjectsInSet`.
pub fn count_set(args: &Args) -> Result<(), MethodError> {
    let n = args.object("create")?.map_or(0, Map::len)
        + args.object("update")?.map_or(0, Map::len)
        + args.ids("destroy")?.map_or(0, |d| d.len());
    if n > MAX_OBJECTS_IN_SET {
        return Err(MethodError::new(
            "requestTooLarge",
            format!("at most {MAX_OBJECTS_IN_SET} objects in one /set"),
        ));
    }
    Ok(())
}

/// The keywords and mailboxes an update asks for, from the Email's own.
fn patched(
    call: &Call<'_>,
    view: &View,
    e: &Email,
    patch: &Map<String, Value>,
) -> Result<(BTreeSet<String>, BTreeSet<String>), Value> {
    let mut keywords = e.keywords.clone();
    let mut mailboxes: BTreeSet<String> = e.entries.iter().map(|(m, _)| m.clone()).collect();
    let bad = |p: &str, why: &str| json!({"type": "invalidProperties", "properties": [p], "description": why});
    for (path, value) in patch {
        let mut pieces = path.splitn(2, '/');
        let head = pieces.next().unwrap_or_default();
        // A JSON pointer's escapes (RFC 6901): `~1` is `/`, `~0` is `~`.
        let tail = pieces
            .next()
            .map(|t| t.replace("~1", "/").replace("~0", "~"));
        let tail = tail.as_deref();
        match (head, tail, value) {
            ("keywords", None, Value::Object(all)) => {
                keywords.clear();
                for (k, v) in all {
                    if v != &Value::Bool(true) || !view::valid_keyword(k) {
                        return Err(bad(path, "keywords map valid keywords to true"));
                    }
                    keywords.insert(k.to_ascii_lowercase());
                }
            }
            ("keywords", Some(k), v) => {
                if !view::valid_keyword(k) {
                    return Err(bad(path, "not a valid keyword"));
                }
                match v {
                    Value::Bool(true) => {
                        keywords.insert(k.to_ascii_lowercase());
                    }
                    Value::Null | Value::Bool(false) => {
                        keywords.remove(&k.to_ascii_lowercase());
                    }
                    _ => return Err(bad(path, "true or null")),
                }
            }
            ("mailboxIds", None, Value::Object(all)) => {
                mailboxes.clear();
                for (m, v) in all {
                    let id = call.id_of(m).map_err(|_| bad(path, "no such mailbox"))?;
                    if v != &Value::Bool(true) || view.mailbox(&id).is_none() {
                        return Err(bad(path, "mailboxIds map existing mailboxes to true"));
                    }
                    mailboxes.insert(id);
                }
            }
            ("mailboxIds", Some(m), v) => {
                let id = call.id_of(m).map_err(|_| bad(path, "no such mailbox"))?;
                match v {
                    Value::Bool(true) if view.mailbox(&id).is_some() => {
                        mailboxes.insert(id);
                    }
                    Value::Null | Value::Bool(false) => {
                        mailboxes.remove(&id);
                    }
                    _ => return Err(bad(path, "an existing mailbox, to true or null")),
                }
            }
            _ => return Err(bad(path, "only keywords and mailboxIds may change")),
        }
    }
    if mailboxes.is_empty() {
        return Err(bad("mailboxIds", "an Email is in at least one mailbox"));
    }
    Ok((keywords, mailboxes))
}

pub async fn set(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ifInState", "create", "update", "destroy"])?;
    count_set(&args)?;
    let store = call.ctx.shared.stores.mailstore();
    let address = call.user.address.clone();
    let mut view = view::load(call.ctx, call.user).await?;
    let old_state = view.state();
    if let Some(want) = args.string("ifInState")?
        && want != old_state
    {
        return Err(MethodError::new("stateMismatch", "the state has moved on"));
    }
    let mut made = Map::new();
    let mut not_created = Map::new();
    if let Some(create) = args.object("create")? {
        super::create::create_all(call, create, &mut view, &mut made, &mut not_created).await?;
    }
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    if let Some(update) = args.object("update")? {
        for (id, patch) in update {
            let id = call.id_of(id).unwrap_or_else(|_| id.clone());
            let Some(e) = view.emails.get(&id).cloned() else {
                not_updated.insert(id, set_error("notFound", "no such Email"));
                continue;
            };
            let Some(patch) = patch.as_object() else {
                not_updated.insert(id, set_error("invalidPatch", "not an object"));
                continue;
            };
            let (keywords, mailboxes) = match patched(call, &view, &e, patch) {
                Ok(x) => x,
                Err(err) => {
                    not_updated.insert(id, err);
                    continue;
                }
            };
            // Keywords first, on every entry; then new mailboxes get a
            // copy (with the new keywords), then old ones lose theirs, so
            // the Email is never in no mailbox.
            if keywords != e.keywords {
                for (mbox, entry) in &e.entries {
                    let Some(m) = view.mailbox(mbox) else {
                        continue;
                    };
                    let wanted = keywords.clone();
                    let change = move |flags: &[String]| {
                        let mut out: Vec<String> = flags
                            .iter()
                            .filter(|f| view::keyword_of_flag(f).is_none())
                            .cloned()
                            .collect();
                        out.extend(wanted.iter().map(|k| view::flag_of_keyword(k)));
                        out
                    };
                    match store
                        .update_flags(&address, &m.name, &[entry.uid], None, &change)
                        .await
                    {
                        Ok(_) => {}
                        Err(stratus_core::accounts::AccountError::TooManyKeywords) => {
                            not_updated.insert(
                                id.clone(),
                                set_error("tooManyKeywords", "the mailbox has too many keywords"),
                            );
                            break;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                if not_updated.contains_key(&id) {
                    continue;
                }
                view = view::load(call.ctx, call.user).await?;
            }
            let e = view.emails.get(&id).cloned().unwrap_or(e);
            let current: BTreeSet<String> = e.entries.iter().map(|(m, _)| m.clone()).collect();
            for add in mailboxes.difference(&current) {
                let Some(m) = view.mailbox(add) else { continue };
                store.copy(&address, &[e.first().clone()], &m.name).await?;
            }
            for remove in current.difference(&mailboxes) {
                let Some(m) = view.mailbox(remove) else {
                    continue;
                };
                let uids: Vec<u32> = e
                    .entries
                    .iter()
                    .filter(|(mb, _)| mb == remove)
                    .map(|(_, en)| en.uid)
                    .collect();
                store.expunge(&address, &m.name, &uids, None).await?;
            }
            if mailboxes != current {
                view = view::load(call.ctx, call.user).await?;
            }
            updated.insert(id, Value::Null);
        }
    }
    let mut destroyed = Vec::new();
    let mut not_destroyed = Map::new();
    if let Some(ids) = args.ids("destroy")? {
        for id in ids {
            let id = call.id_of(&id).unwrap_or(id);
            let Some(e) = view.emails.get(&id).cloned() else {
                not_destroyed.insert(id, set_error("notFound", "no such Email"));
                continue;
            };
            for (mbox, entry) in &e.entries {
                if let Some(m) = view.mailbox(mbox) {
                    store.expunge(&address, &m.name, &[entry.uid], None).await?;
                }
            }
            destroyed.push(Value::String(id));
        }
        if !destroyed.is_empty() {
            view = view::load(call.ctx, call.user).await?;
        }
    }
    let nulls = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    Ok(json!({
        "accountId": call.user.account,
        "oldState": old_state,
        "newState": view.state(),
        "created": nulls(made),
        "updated": nulls(updated),
        "destroyed": if destroyed.is_empty() { Value::Null } else { Value::Array(destroyed) },
        "notCreated": nulls(not_created),
        "notUpdated": nulls(not_updated),
        "notDestroyed": nulls(not_destroyed),
    }))
}

/// The addresses the user sends as, by Identity id: their own, then
/// the identities an admin granted.
pub async fn identities(
    call: &Call<'_>,
) -> Result<BTreeMap<String, stratus_core::address::Address>, MethodError> {
    let accounts = call.ctx.shared.stores.accounts();
    let mut addresses = vec![call.user.address.clone()];
    for i in accounts.identities(&call.user.address).await? {
        addresses.push(i.identity);
    }
    Ok(addresses
        .into_iter()
        .map(|a| {
            let id = format!(
                "I{}",
                &stratus_core::ids::sha256_hex(a.to_string().as_bytes())[..16]
            );
            (id, a)
        })
        .collect())
}

pub async fn identity_get(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ids", "properties"])?;
    let all: BTreeMap<String, Value> = identities(call)
        .await?
        .into_iter()
        .map(|(id, a)| {
            let identity = json!({
                "id": id,
                "name": "",
                "email": a.to_string(),
                "replyTo": null,
                "bcc": null,
                "textSignature": "",
                "htmlSignature": "",
                "mayDelete": false,
            });
            (id, identity)
        })
        .collect();
    let state = format!(
        "i{}",
        &stratus_core::ids::sha256_hex(
            all.keys().cloned().collect::<Vec<_>>().join(",").as_bytes()
        )[..16]
    );
    get_answer(
        &call.user.account,
        &state,
        args.ids("ids")?,
        all.keys().cloned().collect(),
        |id| all.get(id).cloned(),
    )
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s`, HTML-escaped, with every `term` (lower case) in `<mark>`.
/// Matching folds case a character at a time and keeps each match's
/// bounds at characters of `s`, whatever lower-casing does to lengths.
fn highlight(s: &str, terms: &[String]) -> Option<String> {
    // Each lower-cased char, with the bounds of the char of `s` it is of.
    let folded: Vec<(usize, usize, char)> = s
        .char_indices()
        .flat_map(|(i, c)| c.to_lowercase().map(move |l| (i, i + c.len_utf8(), l)))
        .collect();
    let mut marks: Vec<(usize, usize)> = Vec::new();
    for term in terms.iter().filter(|t| !t.is_empty()) {
        let want: Vec<char> = term.chars().collect();
        let mut k = 0;
        while k + want.len() <= folded.len() {
            if folded[k..k + want.len()]
                .iter()
                .zip(&want)
                .all(|((_, _, c), w)| c == w)
            {
                marks.push((folded[k].0, folded[k + want.len() - 1].1));
                k += want.len();
            } else {
                k += 1;
            }
        }
    }
    if marks.is_empty() {
        return None;
    }
    marks.sort();
    let mut out = String::new();
    let mut at = 0;
    for (start, end) in marks {
        if start < at {
            continue;
        }
        out.push_str(&escape_html(&s[at..start]));
        out.push_str("<mark>");
        out.push_str(&escape_html(&s[start..end]));
        out.push_str("</mark>");
        at = end;
    }
    out.push_str(&escape_html(&s[at..]));
    Some(out)
}

fn filter_terms(filter: &Value, out: &mut Vec<String>) {
    let Value::Object(f) = filter else {
        return;
    };
    for (k, v) in f {
        match (k.as_str(), v) {
            ("text" | "subject" | "body", Value::String(s)) => out.push(s.to_lowercase()),
            ("conditions", Value::Array(list)) => list.iter().for_each(|c| filter_terms(c, out)),
            _ => {}
        }
    }
}

pub async fn snippets(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["filter", "emailIds"])?;
    let ids = args.ids("emailIds")?.unwrap_or_default();
    if ids.len() > super::MAX_OBJECTS_IN_GET {
        return Err(MethodError::new("requestTooLarge", "too many emailIds"));
    }
    let mut terms = Vec::new();
    filter_terms(args.0.get("filter").unwrap_or(&Value::Null), &mut terms);
    let view = view::load(call.ctx, call.user).await?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        let Some(e) = view.emails.get(&id) else {
            not_found.push(id);
            continue;
        };
        let subject = e.meta.envelope.subject.as_deref().unwrap_or_default();
        let raw = parts::raw(call.ctx, e).await?;
        let preview = stratus_core::message::parse(&raw)
            .map(|m| parts::preview(&m))
            .unwrap_or_default();
        list.push(json!({
            "emailId": id,
            "subject": highlight(subject, &terms),
            "preview": highlight(&preview, &terms),
        }));
    }
    Ok(json!({
        "accountId": call.user.account,
        "list": list,
        "notFound": if not_found.is_empty() { Value::Null } else { json!(not_found) },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-15T00:13:20+02:00"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20.123Z"), Some(1_700_000_000));
        assert_eq!(parse_date("2023-11-14 22:13:20Z"), None);
        assert_eq!(parse_date("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn snippets_escape_what_they_do_not_mark() {
        let s = highlight("<b>Lunch</b> at noon & lunch", &["lunch".into()]).unwrap();
        assert_eq!(
            s,
            "&lt;b&gt;<mark>Lunch</mark>&lt;/b&gt; at noon &amp; <mark>lunch</mark>"
        );
        assert_eq!(highlight("nothing", &["x".into()]), None);
        // Lower-casing changes these characters' lengths; bounds stay
        // on characters of the subject.
        assert_eq!(
            highlight("ȺxȺ\u{212A}", &["x".into()]).as_deref(),
            Some("Ⱥ<mark>x</mark>Ⱥ\u{212A}")
        );
        assert_eq!(
            highlight("\u{212A}elvin", &["kelvin".into()]).as_deref(),
            Some("<mark>\u{212A}elvin</mark>")
        );
    }

    #[test]
    fn base_subjects_lose_reply_prefixes() {
        assert_eq!(base_subject("Re: Fwd: RE: Hello"), "hello");
    }
}
