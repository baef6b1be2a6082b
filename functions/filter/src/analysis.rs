//! What the checks look at, taken out of a message once: header fields,
//! the readable text (plain parts, and HTML parts with their markup taken
//! off), the links, the attachments, and the classifier's tokens. All of it
//! is bounded, so a hostile message costs a bounded amount of work.

use std::collections::BTreeSet;

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use crate::html;
use crate::tokens::Tokens;

/// The GTUBE test string (SpamAssassin's generic test for unsolicited bulk
/// email): any message containing it is spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// At most this much decoded text is looked at.
pub const MAX_TEXT: usize = 256 * 1024;
/// At most this many MIME parts are looked at.
pub const MAX_PARTS: usize = 1000;
/// At most this many header fields are kept for the rules.
pub const MAX_HEADERS: usize = 200;
/// At most this many links are kept.
pub const MAX_URLS: usize = 500;

/// A link found in the text or the markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Lower-cased, without user information or port.
    pub host: String,
    /// The path and query, as written (bounded).
    pub path: String,
    /// A user name stood before the host: `http://bank.example@evil/`.
    pub userinfo: bool,
}

impl Url {
    /// Whether the host is an IP address written as such (dotted quad,
    /// a bare number, hexadecimal or bracketed IPv6).
    pub fn is_ip(&self) -> bool {
        let h = self.host.trim_end_matches('.');
        if h.starts_with('[') || h.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
        // Forms browsers accept and people read less easily: 3232235777,
        // 0xC0A80101, 0300.0250.01.01.
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && (label.bytes().all(|b| b.is_ascii_digit())
                        || (label.len() > 2
                            && label.as_bytes()[..2].eq_ignore_ascii_case(b"0x")
                            && label.bytes().skip(2).all(|b| b.is_ascii_hexdigit())))
            })
    }
}

/// A part that is an attachment (or an inline binary part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name it gives, if any.
    pub name: Option<String>,
    /// `type/subtype`, lower-cased, as declared.
    pub content_type: String,
    /// The decoded bytes.
    pub data: Vec<u8>,
}

/// What the checks read from one message.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Header fields of the top-level message, names lower-cased, values
    /// unfolded as received (at most [`MAX_HEADERS`]).
    pub headers: Vec<(String, String)>,
    pub subject: String,
    /// The From address and its display name.
    pub from: Option<(String, String)>,
    pub reply_to: Option<String>,
    pub has_date: bool,
    /// The Date field, in Unix seconds, when it parses.
    pub date: Option<i64>,
    pub has_message_id: bool,
    /// The Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub has_to: bool,
    /// The readable text: plain parts and HTML parts without markup.
    pub text: String,
    /// Characters of text that came from plain-text parts.
    pub plain_chars: usize,
    /// Characters of text that came from HTML parts.
    pub html_chars: usize,
    /// Number of HTML parts, and of text/plain parts.
    pub html_parts: usize,
    pub plain_parts: usize,
    /// `<img>` elements in HTML parts, plus image attachments.
    pub images: usize,
    pub urls: Vec<Url>,
    pub attachments: Vec<Attachment>,
    /// A part's transfer encoding could not be decoded (bad base64...).
    pub encoding_problem: bool,
    /// The message did not parse as MIME at all.
    pub unparsed: bool,
    /// More parts than [`MAX_PARTS`].
    pub too_many_parts: bool,
    pub gtube: bool,
    /// The classifier's tokens (hashes, sorted, each once).
    pub tokens: Vec<u32>,
}

impl Analysis {
    /// Reads `raw` (the message as received).
    pub fn new(raw: &[u8]) -> Analysis {
        let mut a = Analysis {
            gtube: memfind(raw, GTUBE.as_bytes()),
            ..Analysis::default()
        };
        let mut tokens = Tokens::default();
        let Some(message) = stratus_core::message::parse(raw) else {
            a.unparsed = true;
            let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_TEXT)]);
            tokens.text(&text, "");
            a.text = text.into_owned();
            a.tokens = tokens.finish();
            return a;
        };
        a.read_header(&message, &mut tokens);
        let mut seen_parts = 0usize;
        a.read_parts(&message, &mut tokens, &mut seen_parts, 0);
        if !a.gtube && a.text.contains(GTUBE) {
            a.gtube = true;
        }
        for url in &a.urls {
            tokens.url(url);
        }
        tokens.text(&a.text, "");
        tokens.shape(&a.text);
        a.tokens = tokens.finish();
        a
    }

    fn read_header(&mut self, m: &Message<'_>, tokens: &mut Tokens) {
        for (name, value) in m.headers_raw().take(MAX_HEADERS) {
            let value = unfold(value);
            tokens.header(name, &value);
            self.headers.push((name.to_ascii_lowercase(), value));
        }
        self.subject = m.subject().unwrap_or_default().to_string();
        tokens.text(&self.subject, "s:");
        self.from = m.from().and_then(|f| f.first()).map(|a| {
            (
                a.address().unwrap_or_default().to_ascii_lowercase(),
                a.name().unwrap_or_default().to_string(),
            )
        });
        self.reply_to = m
            .reply_to()
            .and_then(|r| r.first())
            .and_then(|a| a.address())
            .map(|a| a.to_ascii_lowercase());
        self.has_date = m.header_raw("Date").is_some();
        self.date = m.date().map(|d| d.to_timestamp());
        self.has_message_id = m.header_raw("Message-ID").is_some();
        self.message_id = m.message_id().map(str::to_string);
        self.has_to = m.header_raw("To").is_some() || m.header_raw("Cc").is_some();
    }

    fn read_parts(&mut self, m: &Message<'_>, tokens: &mut Tokens, seen: &mut usize, depth: usize) {
        for part in &m.parts {
            *seen += 1;
            if *seen > MAX_PARTS {
                self.too_many_parts = true;
                return;
            }
            if part.is_encoding_problem {
                self.encoding_problem = true;
            }
            let ct = content_type(part);
            tokens.add(&format!("ct:{ct}"));
            if let Some(cs) = part.content_type().and_then(|c| c.attribute("charset")) {
                tokens.add(&format!("charset:{}", cs.to_ascii_lowercase()));
            }
            let attached = part.attachment_name().is_some()
                || part
                    .content_disposition()
                    .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
            match &part.body {
                PartType::Text(text) if !attached => {
                    self.plain_parts += 1;
                    let before = self.text.len();
                    self.push_text(text);
                    self.plain_chars += self.text.len() - before;
                    find_urls(text, &mut self.urls);
                }
                PartType::Html(markup) if !attached => {
                    self.html_parts += 1;
                    let doc = html::read(markup);
                    for tag in &doc.tags {
                        tokens.add(&format!("tag:{tag}"));
                    }
                    self.images += doc.images;
                    let before = self.text.len();
                    self.push_text(&doc.text);
                    self.html_chars += self.text.len() - before;
                    for link in &doc.links {
                        if self.urls.len() < MAX_URLS
                            && let Some(url) = parse_url(link)
                        {
                            self.urls.push(url);
                        }
                    }
                    find_urls(&doc.text, &mut self.urls);
                }
                PartType::Message(inner) if depth < 3 => {
                    self.read_parts(inner, tokens, seen, depth + 1);
                }
                PartType::Multipart(_) => {}
                _ => {
                    if ct.starts_with("image/") {
                        self.images += 1;
                    }
                    let name = part.attachment_name().map(str::to_string);
                    if let Some(n) = &name
                        && let Some((_, ext)) = n.rsplit_once('.')
                    {
                        tokens.add(&format!("ext:{}", ext.to_ascii_lowercase()));
                    }
                    self.attachments.push(Attachment {
                        name,
                        content_type: ct,
                        data: part.contents().to_vec(),
                    });
                }
            }
        }
    }

    fn push_text(&mut self, text: &str) {
        let room = MAX_TEXT.saturating_sub(self.text.len());
        if room == 0 {
            return;
        }
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(&text[..end]);
    }

    /// The values of header field `name` (lower-case).
    pub fn header(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => match part.body {
            PartType::Html(_) => "text/html".into(),
            PartType::Text(_) => "text/plain".into(),
            _ => "application/octet-stream".into(),
        },
    }
}

fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for piece in value.split(['\r', '\n']) {
        if !piece.is_empty() {
            if !out.is_empty() && !piece.starts_with([' ', '\t']) {
                out.push(' ');
            }
            out.push_str(piece);
        }
    }
    out.trim().to_string()
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Finds `http://`, `https://` and `www.` links in plain text (its
/// first [`MAX_TEXT`] bytes), in one pass over its words.
pub fn find_urls(text: &str, out: &mut Vec<Url>) {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let separators =
        |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']');
    for word in text[..end].split(separators) {
        if out.len() >= MAX_URLS {
            return;
        }
        let b = word.as_bytes();
        let starts = |prefix: &[u8]| {
            b.len() > prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
        };
        if (starts(b"http://") || starts(b"https://") || starts(b"www."))
            && let Some(url) = parse_url(word)
        {
            out.push(url);
        }
    }
}

/// Reads a link: `scheme://[user@]host[:port]/path`, or `www.host/path`.
pub fn parse_url(link: &str) -> Option<Url> {
    let link = link.trim();
    let rest = match link.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return None;
            }
            rest
        }
        None if link.len() > 4 && link.as_bytes()[..4].eq_ignore_ascii_case(b"www.") => link,
        None => return None,
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    // `http://www.bank.example@evil.example/` goes to evil.example.
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((_, host)) => (true, host),
        None => (false, authority),
    };
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let host = host.trim_end_matches(['.', ',', ';']).to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 || host.contains(['\\', '%', ' ']) {
        return None;
    }
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    Some(Url {
        host,
        path: path[..end].to_string(),
        userinfo,
    })
}

/// The distinct registrable-looking suffixes of a host, longest first:
/// `a.b.example.com` gives `a.b.example.com`, `b.example.com`,
/// `example.com`.
pub fn host_suffixes(host: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = host;
    while rest.contains('.') {
        out.push(rest);
        rest = match rest.split_once('.') {
            Some((_, r)) => r,
            None => break,
        };
    }
    out
}

/// The distinct hosts of `urls`, in the order first seen.
pub fn distinct_hosts(urls: &[Url]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    urls.iter()
        .map(|u| u.host.as_str())
        .filter(|h| seen.insert(*h))
        .collect()
}
