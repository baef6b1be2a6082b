//! What IMAP needs to know about a message without reading its body: the
//! envelope and the MIME structure with byte offsets (so a partial fetch
//! reads only its range), computed once at delivery with mail-parser.
//!
//! The record is bounded whatever the message looks like: strings are cut at
//! [`MAX_STRING`] bytes, address lists at [`MAX_ADDRESSES`], the part tree at
//! [`MAX_PARTS`] parts and [`MAX_DEPTH`] levels (the rest is folded into
//! its parent as opaque bytes), and `truncated` says so. A message
//! mail-parser cannot make sense of still gets a record: one opaque part.

use mail_parser::{
    Address as MpAddress, HeaderValue, MessageParser, MessagePart, MimeHeaders, PartType,
};
use serde::{Deserialize, Serialize};

pub const MAX_STRING: usize = 1000;
pub const MAX_ADDRESSES: usize = 200;
pub const MAX_PARTS: usize = 500;
pub const MAX_DEPTH: usize = 16;

/// One address of an envelope field; `group` opens (with its name) or closes
/// (`None` mailbox and host) an RFC 5322 group, as IMAP's ENVELOPE does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An obsolete source route (`@a.example,@b.example`), IMAP's `adl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The RFC 5322 header fields of IMAP's ENVELOPE, decoded to UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The Date header as Unix seconds (for SENTBEFORE and friends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<EnvelopeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sender: Vec<EnvelopeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<EnvelopeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<EnvelopeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<EnvelopeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<EnvelopeAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// One MIME part. Offsets are absolute byte positions in the stored body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Lower-case type and subtype (`text`, `plain`).
    pub ctype: String,
    pub subtype: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Content-Transfer-Encoding as written (`7bit` when absent).
    pub encoding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<(String, Vec<(String, String)>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub language: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub header_start: u64,
    pub body_start: u64,
    pub end: u64,
    /// Lines of the body (text and message/rfc822 parts).
    pub lines: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartMeta>,
    /// For message/rfc822: the enclosed message's envelope and structure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Box<(EnvelopeMeta, PartMeta)>>,
}

impl PartMeta {
    /// The first part (this one or one inside it) whose offsets are out of
    /// order or run past a message of `len` bytes, if any: what a partial
    /// FETCH relies on. The fuzz target and the corpus replay check it.
    pub fn misplaced(&self, len: u64) -> Option<&PartMeta> {
        if self.header_start > self.body_start || self.body_start > self.end || self.end > len {
            return Some(self);
        }
        self.parts
            .iter()
            .chain(self.message.as_deref().map(|inner| &inner.1))
            .find_map(|part| part.misplaced(len))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub envelope: EnvelopeMeta,
    pub structure: PartMeta,
    /// Some limit above cut the record short.
    #[serde(default)]
    pub truncated: bool,
    /// The Message-ID a conversation started with, without angle
    /// brackets: the first of References, else In-Reply-To's (JMAP's
    /// thread of the message). `None`: the message answers none, or was
    /// stored before Stratus kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_root: Option<String>,
}

fn cut(s: &str, truncated: &mut bool) -> String {
    if s.len() <= MAX_STRING {
        return s.to_string();
    }
    *truncated = true;
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

struct Builder<'a> {
    raw: &'a [u8],
    parts: usize,
    truncated: bool,
}

impl<'a> Builder<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Builder {
            raw,
            parts: 0,
            truncated: false,
        }
    }

    fn addresses(&mut self, value: Option<&MpAddress>) -> Vec<EnvelopeAddress> {
        let mut out = Vec::new();
        let push = |out: &mut Vec<EnvelopeAddress>,
                    name: Option<&str>,
                    address: Option<&str>,
                    t: &mut bool| {
            if address.is_none() {
                // A comment alone (`To: (nobody)`) is not an address; as
                // one it would read like a group's end marker.
                return;
            }
            if out.len() >= MAX_ADDRESSES {
                *t = true;
                return;
            }
            let (route, address) = split_route(address.unwrap_or_default());
            let (mailbox, host) = address
                .rsplit_once('@')
                .map_or((address, None), |(l, h)| (l, Some(h)));
            out.push(EnvelopeAddress {
                name: name.map(|n| cut(n, t)),
                adl: route.map(|r| cut(r, t)),
                mailbox: Some(cut(mailbox, t)),
                host: host.map(|h| cut(h, t)),
            });
        };
        match value {
            Some(MpAddress::List(list)) => {
                for a in list {
                    push(
                        &mut out,
                        a.name.as_deref(),
                        a.address.as_deref(),
                        &mut self.truncated,
                    );
                }
            }
            Some(MpAddress::Group(groups)) => {
                for g in groups {
                    let named = g.name.is_some();
                    if named {
                        // Group start: mailbox holds the group name, no host.
                        out.push(EnvelopeAddress {
                            mailbox: g.name.as_deref().map(|n| cut(n, &mut self.truncated)),
                            ..Default::default()
                        });
                    }
                    for a in &g.addresses {
                        push(
                            &mut out,
                            a.name.as_deref(),
                            a.address.as_deref(),
                            &mut self.truncated,
                        );
                    }
                    if named {
                        out.push(EnvelopeAddress::default());
                    }
                }
            }
            None => {}
        }
        out
    }

    /// The envelope of the message's top-level header, parsed alone. Not
    /// taken from the full parse: on some malformed multiparts mail-parser's
    /// full parse puts an inner part's header at the root (the
    /// `message_metadata` fuzz target found one), and the archive, which
    /// reads only the header, must agree with IMAP's ENVELOPE.
    fn top_envelope(&mut self) -> EnvelopeMeta {
        match parse_headers(self.raw) {
            Some(m) if !m.parts.is_empty() => self.envelope(&m),
            _ => EnvelopeMeta::default(),
        }
    }

    fn envelope(&mut self, m: &mail_parser::Message) -> EnvelopeMeta {
        let t = &mut self.truncated;
        // In-Reply-To and Message-ID as sent, angle brackets and all (RFC
        // 9051 §7.5.2): a parsed id has lost them, and a client compares
        // them with the References it threads by. Unfolded and trimmed.
        let raw = |name: &str| {
            m.header_raw(name)
                .map(|v| v.replace(['\r', '\n'], "").trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let date_raw = m.header_raw("Date").map(|d| d.trim().to_string());
        let mut env = EnvelopeMeta {
            date: date_raw.map(|d| cut(&d, t)),
            sent: m.date().map(|d| d.to_timestamp()),
            subject: m.subject().map(|s| cut(s, t)),
            in_reply_to: raw("In-Reply-To").map(|s| cut(&s, t)),
            message_id: raw("Message-ID").map(|s| cut(&s, t)),
            ..Default::default()
        };
        env.from = self.addresses(m.from());
        env.sender = self.addresses(m.sender());
        env.reply_to = self.addresses(m.reply_to());
        env.to = self.addresses(m.to());
        env.cc = self.addresses(m.cc());
        env.bcc = self.addresses(m.bcc());
        env
    }

    fn part(
        &mut self,
        m: &mail_parser::Message,
        part: &MessagePart,
        base: u64,
        depth: usize,
    ) -> PartMeta {
        self.parts += 1;
        let t = &mut self.truncated;
        let (ctype, subtype, params) = match part.content_type() {
            Some(ct) => (
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().map(str::to_ascii_lowercase),
                ct.attributes()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.name.to_ascii_lowercase(), cut(&a.value, t)))
                    .collect(),
            ),
            None => (
                "text".to_string(),
                None,
                vec![("charset".to_string(), "us-ascii".to_string())],
            ),
        };
        let subtype = subtype.unwrap_or_else(|| {
            if ctype == "text" {
                "plain".into()
            } else {
                "octet-stream".into()
            }
        });
        let (header_start, body_start, end) = (
            base + part.offset_header as u64,
            base + part.offset_body as u64,
            base + part.offset_end as u64,
        );
        let body = self
            .raw
            .get(body_start as usize..end as usize)
            .unwrap_or_default();
        let mut meta = PartMeta {
            ctype,
            subtype,
            params,
            id: part.content_id().map(|s| cut(&format!("<{s}>"), t)),
            description: part.content_description().map(|s| cut(s, t)),
            encoding: part
                .content_transfer_encoding()
                .map(|e| e.to_ascii_lowercase())
                .unwrap_or_else(|| "7bit".into()),
            disposition: part.content_disposition().map(|d| {
                (
                    d.ctype().to_ascii_lowercase(),
                    d.attributes()
                        .unwrap_or_default()
                        .iter()
                        .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                        .collect(),
                )
            }),
            language: match part.content_language() {
                HeaderValue::Text(s) => vec![s.to_string()],
                HeaderValue::TextList(l) => l.iter().map(|s| s.to_string()).collect(),
                _ => Vec::new(),
            },
            location: part.content_location().map(|s| cut(s, t)),
            header_start,
            body_start,
            end,
            lines: 0,
            parts: Vec::new(),
            message: None,
        };
        if meta.ctype == "text" || (meta.ctype == "message" && meta.subtype == "rfc822") {
            meta.lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        match &part.body {
            PartType::Multipart(children) => {
                for &child in children {
                    if depth >= MAX_DEPTH || self.parts >= MAX_PARTS {
                        self.truncated = true;
                        break;
                    }
                    if let Some(p) = m.parts.get(child as usize) {
                        let child_meta = self.part(m, p, base, depth + 1);
                        meta.parts.push(child_meta);
                    }
                }
            }
            PartType::Message(inner) if depth < MAX_DEPTH && self.parts < MAX_PARTS => {
                // mail-parser gives the enclosed message's offsets relative
                // to the outer message already.
                let env = self.envelope(inner);
                let structure = self.part(inner, inner.root_part(), base, depth + 1);
                meta.message = Some(Box::new((env, structure)));
            }
            _ => {}
        }
        meta
    }
}

/// Parses `raw` with mail-parser, or says it cannot. mail-parser 0.11.9
/// has a `debug_assert!` that some malformed multiparts reach (nested
/// message/rfc822 parts whose boundaries overlap; found by the
/// `message_metadata` fuzz target). In a build with debug assertions it
/// panics; whatever mail-parser panics on is a message it could not parse.
pub fn parse(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    guarded(raw, |raw| MessageParser::default().parse(raw))
}

/// [`parse`] of the header only.
pub fn parse_headers(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    guarded(raw, |raw| MessageParser::default().parse_headers(raw))
}

fn guarded<'a>(
    raw: &'a [u8],
    f: impl FnOnce(&'a [u8]) -> Option<mail_parser::Message<'a>>,
) -> Option<mail_parser::Message<'a>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(raw))).unwrap_or_else(|_| {
        tracing::warn!(
            bytes = raw.len(),
            "mail-parser panicked on a message; it is handled as unparsed"
        );
        None
    })
}

/// Whether the header of `raw` says `TLS-Required: No` (RFC 8689 §5):
/// the sender asks that the recipient domains' TLS policies be set aside.
pub fn says_tls_not_required(raw: &[u8]) -> bool {
    parse_headers(raw)
        .and_then(|m| {
            m.header_raw("TLS-Required")
                .map(|v| v.trim().eq_ignore_ascii_case("no"))
        })
        .unwrap_or(false)
}

/// Whether a `Delivered-To` field of `raw`'s header names `address`: it
/// was delivered or forwarded there before (a forward's loop check).
pub fn delivered_to_includes(raw: &[u8], address: &crate::Address) -> bool {
    let own = address.account_key();
    delivered_to(raw)
        .iter()
        .filter_map(|a| crate::Address::parse(a).ok())
        .any(|a| a.account_key() == own)
}

/// The addresses in the `Delivered-To` fields of `raw`'s header.
fn delivered_to(raw: &[u8]) -> Vec<String> {
    parse_headers(raw)
        .map(|m| {
            m.headers_raw()
                .filter(|(name, _)| name.eq_ignore_ascii_case("Delivered-To"))
                .map(|(_, value)| {
                    let v = value.trim();
                    let v = v.strip_prefix('<').unwrap_or(v);
                    v.strip_suffix('>').unwrap_or(v).trim().to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Splits an obsolete source route (RFC 5322 §4.4 `obs-route`,
/// `@a.example,@b.example:user@host`) off an address as mail-parser leaves
/// it, so that ENVELOPE puts it in `adl` and not in the mailbox name.
fn split_route(address: &str) -> (Option<&str>, &str) {
    if address.starts_with('@')
        && let Some((route, rest)) = address.split_once(':')
    {
        let route = route.trim_end_matches(|c: char| c == ',' || c.is_whitespace());
        return (Some(route), rest.trim_start());
    }
    (None, address)
}

/// The envelope of `raw`, from its header alone: what [`analyze`] gives,
/// without parsing and decoding the body.
pub fn envelope(raw: &[u8]) -> EnvelopeMeta {
    Builder::new(raw).top_envelope()
}

/// Computes the metadata of `raw` (the message as stored).
pub fn analyze(raw: &[u8]) -> MessageMeta {
    let mut b = Builder::new(raw);
    let envelope = b.top_envelope();
    match parse(raw) {
        Some(m) if !m.parts.is_empty() => {
            let structure = b.part(&m, m.root_part(), 0, 0);
            // An id longer than the limit is no id anyone threads by.
            let first_id = |v: &mail_parser::HeaderValue| {
                v.as_text_list()
                    .and_then(|ids| ids.first().map(|id| id.to_string()))
                    .or_else(|| v.as_text().map(str::to_string))
                    .map(|id| id.trim().trim_matches(['<', '>']).to_string())
                    .filter(|id| !id.is_empty() && id.len() <= MAX_STRING)
            };
            let thread_root = first_id(m.references()).or_else(|| first_id(m.in_reply_to()));
            MessageMeta {
                envelope,
                structure,
                truncated: b.truncated,
                thread_root,
            }
        }
        _ => MessageMeta {
            envelope,
            structure: PartMeta {
                ctype: "text".into(),
                subtype: "plain".into(),
                encoding: "7bit".into(),
                body_start: 0,
                end: raw.len() as u64,
                lines: raw.iter().filter(|&&c| c == b'\n').count() as u64,
                ..Default::default()
            },
            truncated: b.truncated,
            thread_root: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_required_no_is_read_from_the_header_only() {
        assert!(says_tls_not_required(
            b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"
        ));
        assert!(says_tls_not_required(b"tls-required:\r\n  no \r\n\r\n"));
        assert!(!says_tls_not_required(b"TLS-Required: yes\r\n\r\n"));
        assert!(!says_tls_not_required(
            b"Subject: x\r\n\r\nTLS-Required: No\r\n"
        ));
        assert!(!says_tls_not_required(b"X-TLS-Required: No\r\n\r\n"));
    }

    const NESTED: &[u8] = b"From: \"Ann Example\" <ann@example.com>\r\n\
To: bob@example.org, Team: c@x.example, d@y.example;\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Tue, 1 Jul 2025 10:00:00 +0200\r\n\
Message-ID: <m1@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello\r\n\
world\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.net\r\n\
Subject: inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>hi</p>\r\n\
--b1--\r\n";

    #[test]
    fn the_envelope_alone_is_the_same() {
        for raw in [NESTED, b"Subject: x\r\n\r\nbody\r\n", b"\xff\xfe garbage"] {
            assert_eq!(envelope(raw), analyze(raw).envelope);
        }
    }

    /// Found by the `message_metadata` fuzz target on 2026-12-04: nested
    /// message/rfc822 parts sharing a boundary reach a `debug_assert!` in
    /// mail-parser 0.11.9. The message gets the unparsed record (tests run
    /// with debug assertions, so without the guard this test panics).
    #[test]
    fn a_message_mail_parser_panics_on_is_one_opaque_part() {
        let raw: &[u8] =
            b"Subject: top\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/pl\x9a\x96n\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
S\nContent-Type: text/plpart/mixed;--b\r\nContent-Type: message/rfc822\r\n\r\n\
Subject: in\r\n\r\nx\r\n--b--\r\n";
        let meta = analyze(raw);
        // A release build skips the assertion, and mail-parser makes what
        // it can of the message.
        if cfg!(debug_assertions) {
            assert!(parse(raw).is_none());
            assert_eq!(
                (meta.structure.ctype.as_str(), meta.structure.end),
                ("text", raw.len() as u64)
            );
            assert!(meta.structure.parts.is_empty());
        }
        assert_eq!(meta.envelope.subject.as_deref(), Some("top"));
        assert_eq!(envelope(raw), meta.envelope);
    }

    /// Found by the `message_metadata` fuzz target on 2026-12-04: on this
    /// garbled multipart, mail-parser's full parse puts an inner part's
    /// header at the root and loses the top-level `To:`. The envelope still
    /// comes from the top-level header, as the archive reads it.
    #[test]
    fn the_envelope_is_the_top_level_header_whatever_the_structure() {
        let raw = include_bytes!(
            "../../../fuzz/corpus/message_metadata/crash-95efca7f21a13783a7a04518dd85c06baf3a6640"
        );
        let full = parse(raw).expect("mail-parser makes something of it");
        assert!(
            full.root_part()
                .headers
                .iter()
                .all(|h| h.name.as_str() != "To"),
            "mail-parser now keeps the top-level header: this test shows nothing any more"
        );
        let meta = analyze(raw);
        // The group's start and end markers; its one member is a bare
        // phrase, no address.
        assert_eq!(meta.envelope.to.len(), 2, "{:?}", meta.envelope.to);
        assert_eq!(meta.envelope, envelope(raw));
    }

    #[test]
    fn a_misplaced_part_is_found_at_any_depth() {
        let meta = analyze(NESTED);
        let len = NESTED.len() as u64;
        assert!(meta.structure.misplaced(len).is_none());
        let mut bad = meta.structure.clone();
        let inner = &mut bad.parts[1].message.as_mut().unwrap().1;
        inner.end = len + 1;
        assert_eq!(bad.misplaced(len).map(|p| p.end), Some(len + 1));
        let mut bad = meta.structure;
        bad.parts[0].body_start = bad.parts[0].end + 1;
        assert!(bad.misplaced(len).is_some());
    }

    /// RFC 9051 §7.5.2: a source route goes in `adl`; a group gives its
    /// start marker, the members and the end marker; a comment alone is
    /// not an address.
    #[test]
    fn envelope_routes_groups_and_comments() {
        let a =
            |name: Option<&str>, adl: Option<&str>, mailbox: Option<&str>, host: Option<&str>| {
                EnvelopeAddress {
                    name: name.map(Into::into),
                    adl: adl.map(Into::into),
                    mailbox: mailbox.map(Into::into),
                    host: host.map(Into::into),
                }
            };
        let to = |field: &str| {
            envelope(format!("To: {field}\r\nSubject: x\r\n\r\nbody\r\n").as_bytes()).to
        };
        assert_eq!(
            to("<@r1.example,@r2.example:user@host.example>"),
            [a(
                None,
                Some("@r1.example,@r2.example"),
                Some("user"),
                Some("host.example")
            )]
        );
        assert_eq!(
            to("Joe <@r1.example:joe@host.example>"),
            [a(
                Some("Joe"),
                Some("@r1.example"),
                Some("joe"),
                Some("host.example")
            )]
        );
        assert_eq!(
            to("Team: a@x.example, \"Bob\" <b@y.example>, (nobody) ;, c@z.example"),
            [
                a(None, None, Some("Team"), None),
                a(None, None, Some("a"), Some("x.example")),
                a(Some("Bob"), None, Some("b"), Some("y.example")),
                a(None, None, None, None),
                a(None, None, Some("c"), Some("z.example")),
            ]
        );
        assert_eq!(
            to("undisclosed-recipients:;"),
            [
                a(None, None, Some("undisclosed-recipients"), None),
                a(None, None, None, None)
            ]
        );
        assert_eq!(to("(just a comment)"), []);
    }

    #[test]
    fn envelope_and_structure_with_offsets() {
        let meta = analyze(NESTED);
        let e = &meta.envelope;
        assert_eq!(e.subject.as_deref(), Some("Grüße"));
        assert_eq!(
            e.from[0],
            EnvelopeAddress {
                name: Some("Ann Example".into()),
                mailbox: Some("ann".into()),
                host: Some("example.com".into()),
                ..Default::default()
            }
        );
        assert_eq!(e.message_id.as_deref(), Some("<m1@example.com>"));
        assert_eq!(e.date.as_deref(), Some("Tue, 1 Jul 2025 10:00:00 +0200"));
        // As sent: brackets kept on one id or several, folding undone.
        for (field, want) in [
            ("In-Reply-To: <p1@example.com>", "<p1@example.com>"),
            (
                "In-Reply-To: <p1@example.com>\r\n <p2@example.com>",
                "<p1@example.com> <p2@example.com>",
            ),
            ("In-Reply-To: p3@example.com", "p3@example.com"),
        ] {
            let raw =
                format!("From: a@example.com\r\n{field}\r\nMessage-ID:  <q@x> \r\n\r\nhi\r\n");
            let e = envelope(raw.as_bytes());
            assert_eq!(e.in_reply_to.as_deref(), Some(want), "{field}");
            assert_eq!(e.message_id.as_deref(), Some("<q@x>"));
        }
        assert_eq!(e.sent, Some(1_751_356_800));
        assert!(e.to.len() >= 3, "{:?}", e.to);

        let s = &meta.structure;
        assert_eq!(
            (s.ctype.as_str(), s.subtype.as_str()),
            ("multipart", "mixed")
        );
        assert_eq!(s.parts.len(), 2);
        let text = &s.parts[0];
        assert_eq!(
            (text.ctype.as_str(), text.subtype.as_str()),
            ("text", "plain")
        );
        assert!(NESTED[text.body_start as usize..].starts_with(b"hello\r\nworld"));
        let rfc822 = &s.parts[1];
        let (inner_env, inner) = rfc822.message.as_deref().expect("enclosed message");
        assert_eq!(inner_env.subject.as_deref(), Some("inner"));
        assert_eq!(
            (inner.ctype.as_str(), inner.subtype.as_str()),
            ("text", "html")
        );
        assert!(
            NESTED[inner.body_start as usize..].starts_with(b"<p>hi</p>"),
            "offsets of the enclosed message are absolute"
        );
        assert!(NESTED[inner.header_start as usize..].starts_with(b"From: inner@"));
        assert!(!meta.truncated);
    }

    #[test]
    fn broken_and_hostile_messages_still_get_bounded_records() {
        let meta = analyze(b"\xff\xfe garbage without headers");
        assert_eq!(meta.structure.end, 26);

        let mut many = String::from("Content-Type: multipart/mixed; boundary=x\r\nSubject: ");
        many.push_str(&"s".repeat(5000));
        many.push_str("\r\n\r\n");
        for _ in 0..2000 {
            many.push_str("--x\r\nContent-Type: text/plain\r\n\r\nbody\r\n");
        }
        many.push_str("--x--\r\n");
        let meta = analyze(many.as_bytes());
        assert!(meta.truncated);
        assert!(meta.structure.parts.len() < MAX_PARTS);
        assert!(meta.envelope.subject.as_ref().unwrap().len() <= MAX_STRING);
        let json = serde_json::to_vec(&meta).unwrap();
        assert!(json.len() < 200 * 1024, "{} bytes", json.len());
    }
}
