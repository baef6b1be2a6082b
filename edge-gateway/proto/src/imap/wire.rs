//! Writing IMAP data: strings (quoted or literal), mailbox names in
//! modified UTF-7 or UTF-8, dates, ENVELOPE and BODYSTRUCTURE from the
//! stored metadata. No I/O: everything appends to a byte buffer.

use std::fmt::Write as _;

use stratus_core::message::{EnvelopeAddress, EnvelopeMeta, PartMeta};

use stratus_core::time::civil_from_day;

/// Strings longer than this go out as literals even when quotable.
const MAX_QUOTED: usize = 1000;

/// Appends `s` as a quoted string when it can be one, else as a literal.
/// Without `utf8` (the client has not enabled UTF8=ACCEPT), 8-bit text is
/// sent as a literal, which IMAP4rev1 allows.
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && (utf8 || b < 0x80));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(Lossy(out), "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

pub fn nstring(out: &mut Vec<u8>, s: Option<&str>, utf8: bool) {
    match s {
        Some(s) => string(out, s.as_bytes(), utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Header text for ENVELOPE: as UTF-8 when the client takes it, else with
/// any non-ASCII text in an RFC 2047 encoded word, which every client
/// decodes.
fn text(out: &mut Vec<u8>, s: Option<&str>, utf8: bool) {
    match s {
        Some(s) if !utf8 && !s.is_ascii() => {
            string(out, encoded_word(s).as_bytes(), false);
        }
        other => nstring(out, other, utf8),
    }
}

/// `=?utf-8?b?...?=`, split so no word is longer than RFC 2047 allows.
pub fn encoded_word(s: &str) -> String {
    let mut out = String::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            push_word(&mut out, &chunk);
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        push_word(&mut out, &chunk);
    }
    out
}

fn push_word(out: &mut String, chunk: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str("=?utf-8?b?");
    out.push_str(&base64(chunk.as_bytes()));
    out.push_str("?=");
}

pub use stratus_core::base64::encode as base64;

/// A mailbox name for the client: UTF-8 when enabled, else modified UTF-7.
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 {
        string(out, name.as_bytes(), true);
    } else {
        string(out, utf7_encode(name).as_bytes(), false);
    }
}

/// Modified UTF-7 (RFC 3501 §5.1.3).
pub fn utf7_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |out: &mut String, pending: &mut Vec<u16>| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&base64(&bytes).trim_end_matches('=').replace('/', ","));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Decodes modified UTF-7; `None` when `name` is not valid modified UTF-7
/// (8-bit octets, bad base64, an encoded printable ASCII character).
pub fn utf7_decode(name: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if !(0x20..0x7f).contains(&b) {
            return None;
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let end = i + 1 + name[i + 1..].iter().position(|&c| c == b'-')?;
        let encoded = &name[i + 1..end];
        i = end + 1;
        if encoded.is_empty() {
            out.push('&');
            continue;
        }
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut units = Vec::new();
        for &c in encoded {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b',' => 63,
                _ => return None,
            };
            bits = (bits << 6) | u32::from(v);
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((bits >> nbits) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if bits != 0 {
            return None;
        }
        let decoded = String::from_utf16(&units).ok()?;
        if decoded.chars().any(|c| (' '..='~').contains(&c)) {
            return None;
        }
        out.push_str(&decoded);
    }
    Some(out)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `"dd-Mon-yyyy hh:mm:ss +zzzz"` in the given zone.
pub fn date_time(timestamp: i64, zone: i32) -> String {
    let local = timestamp + i64::from(zone) * 60;
    let (y, m, d) = civil_from_day(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let sign = if zone < 0 { '-' } else { '+' };
    let z = zone.unsigned_abs();
    format!(
        "\"{d:02}-{}-{y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}\"",
        MONTHS[m as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        z / 60,
        z % 60
    )
}

fn addresses(out: &mut Vec<u8>, list: &[EnvelopeAddress], utf8: bool) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        text(out, a.name.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.adl.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.mailbox.as_deref(), utf8);
        out.push(b' ');
        nstring(out, a.host.as_deref(), utf8);
        out.push(b')');
    }
    out.push(b')');
}

/// ENVELOPE (RFC 9051 §7.5.2). Sender and Reply-To default to From.
pub fn envelope(out: &mut Vec<u8>, e: &EnvelopeMeta, utf8: bool) {
    out.push(b'(');
    nstring(out, e.date.as_deref(), utf8);
    out.push(b' ');
    text(out, e.subject.as_deref(), utf8);
    out.push(b' ');
    addresses(out, &e.from, utf8);
    out.push(b' ');
    addresses(
        out,
        if e.sender.is_empty() {
            &e.from
        } else {
            &e.sender
        },
        utf8,
    );
    out.push(b' ');
    addresses(
        out,
        if e.reply_to.is_empty() {
            &e.from
        } else {
            &e.reply_to
        },
        utf8,
    );
    for list in [&e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        addresses(out, list, utf8);
    }
    out.push(b' ');
    nstring(out, e.in_reply_to.as_deref(), utf8);
    out.push(b' ');
    nstring(out, e.message_id.as_deref(), utf8);
    out.push(b')');
}

fn params(out: &mut Vec<u8>, params: &[(String, String)], utf8: bool) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k.as_bytes(), utf8);
        out.push(b' ');
        string(out, v.as_bytes(), utf8);
    }
    out.push(b')');
}

fn upper(out: &mut Vec<u8>, s: &str) {
    string(out, s.to_ascii_uppercase().as_bytes(), false);
}

/// BODYSTRUCTURE (`extended`) or BODY (RFC 9051 §7.5.2) of a part.
pub fn body_structure(out: &mut Vec<u8>, p: &PartMeta, extended: bool, utf8: bool) {
    out.push(b'(');
    if p.ctype == "multipart" {
        if p.parts.is_empty() {
            // A multipart without parts is not expressible; describe an
            // empty text part, as other servers do.
            out.extend_from_slice(b"\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0");
        }
        for child in &p.parts {
            body_structure(out, child, extended, utf8);
        }
        out.push(b' ');
        upper(out, &p.subtype);
        if extended {
            out.push(b' ');
            params(out, &p.params, utf8);
            extension(out, p, utf8);
        }
        out.push(b')');
        return;
    }
    upper(out, &p.ctype);
    out.push(b' ');
    upper(out, &p.subtype);
    out.push(b' ');
    params(out, &p.params, utf8);
    out.push(b' ');
    nstring(out, p.id.as_deref(), utf8);
    out.push(b' ');
    text(out, p.description.as_deref(), utf8);
    out.push(b' ');
    upper(out, &p.encoding);
    let _ = write!(Lossy(out), " {}", p.end.saturating_sub(p.body_start));
    if p.ctype == "message"
        && (p.subtype == "rfc822" || p.subtype == "global")
        && let Some(inner) = &p.message
    {
        out.push(b' ');
        envelope(out, &inner.0, utf8);
        out.push(b' ');
        body_structure(out, &inner.1, extended, utf8);
        let _ = write!(Lossy(out), " {}", p.lines);
    } else if p.ctype == "text" {
        let _ = write!(Lossy(out), " {}", p.lines);
    }
    if extended {
        out.extend_from_slice(b" NIL");
        extension(out, p, utf8);
    }
    out.push(b')');
}

/// Disposition, language and location: the extension data both kinds of
/// part end with.
fn extension(out: &mut Vec<u8>, p: &PartMeta, utf8: bool) {
    out.push(b' ');
    match &p.disposition {
        Some((kind, ps)) => {
            out.push(b'(');
            upper(out, kind);
            out.push(b' ');
            params(out, ps, utf8);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match p.language.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => string(out, one.as_bytes(), utf8),
        many => {
            out.push(b'(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, l.as_bytes(), utf8);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    nstring(out, p.location.as_deref(), utf8);
}

/// `fmt::Write` into a byte buffer.
#[derive(Debug)]
pub struct Lossy<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Lossy<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_round_trips() {
        for (utf8, utf7) in [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("日本語", "&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", "&2D3eAA-"),
        ] {
            assert_eq!(utf7_encode(utf8), utf7, "{utf8}");
            assert_eq!(utf7_decode(utf7.as_bytes()).as_deref(), Some(utf8));
        }
        assert_eq!(utf7_decode(b"&AGE-"), None, "encoded ASCII");
        assert_eq!(utf7_decode(b"caf\xc3\xa9"), None, "8-bit");
        assert_eq!(utf7_decode(b"&Jjo"), None, "unterminated");
    }

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c", false);
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        string(&mut out, b"two\r\nlines", false);
        assert_eq!(out, b"{10}\r\ntwo\r\nlines");
        out.clear();
        string(&mut out, "Grüße".as_bytes(), false);
        assert!(out.starts_with(b"{7}\r\n"));
        out.clear();
        string(&mut out, "Grüße".as_bytes(), true);
        assert_eq!(out, "\"Grüße\"".as_bytes());
    }

    /// Issue 18 point 7: a source route is the adl; group markers are
    /// `(NIL NIL "name" NIL)` and `(NIL NIL NIL NIL)`.
    #[test]
    fn envelope_addresses_carry_routes_and_groups() {
        let e = EnvelopeMeta {
            from: vec![EnvelopeAddress {
                name: Some("Joe".into()),
                adl: Some("@r1.example,@r2.example".into()),
                mailbox: Some("joe".into()),
                host: Some("h.example".into()),
            }],
            to: vec![
                EnvelopeAddress {
                    mailbox: Some("Team".into()),
                    ..Default::default()
                },
                EnvelopeAddress {
                    mailbox: Some("a".into()),
                    host: Some("x.example".into()),
                    ..Default::default()
                },
                EnvelopeAddress::default(),
            ],
            ..Default::default()
        };
        let mut out = Vec::new();
        envelope(&mut out, &e, false);
        let from = "((\"Joe\" \"@r1.example,@r2.example\" \"joe\" \"h.example\"))";
        let to = "((NIL NIL \"Team\" NIL)(NIL NIL \"a\" \"x.example\")(NIL NIL NIL NIL))";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("(NIL NIL {from} {from} {from} {to} NIL NIL NIL NIL)")
        );
    }

    #[test]
    fn dates_keep_their_zone() {
        assert_eq!(date_time(0, 0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(
            date_time(1_751_356_800, 120),
            "\"01-Jul-2025 10:00:00 +0200\""
        );
        assert_eq!(
            date_time(1_751_356_800, -330),
            "\"01-Jul-2025 02:30:00 -0530\""
        );
        assert_eq!(encoded_word("Grüße"), "=?utf-8?b?R3LDvMOfZQ==?=");
    }
}
