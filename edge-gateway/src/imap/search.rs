//! SEARCH: which messages of the view a search program matches.
//!
//! Keys on flags, UIDs, sequence numbers and MODSEQ use the view alone;
//! dates, sizes and the envelope's header fields use the entry (no body
//! read); other header fields read the message's header; BODY and TEXT
//! read and decode the whole message (so a base64 or quoted-printable text
//! matches on its content) with mail-parser. Strings match as
//! case-insensitive substrings (RFC 9051 §6.4.4).

use mail_parser::MimeHeaders;
use stratus_core::mailstore::MessageEntry;
use stratus_core::message::{EnvelopeAddress, MessageMeta};

use super::selected::{Msg, Selected};
use stratus_proto::imap::command::{SearchKey, SequenceSet};

/// How much of a message a program needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    View,
    Entry,
    Header,
    Body,
}

pub fn need(key: &SearchKey) -> Need {
    match key {
        SearchKey::And(keys) => keys.iter().map(need).max().unwrap_or(Need::View),
        SearchKey::Or(a, b) => need(a).max(need(b)),
        SearchKey::Not(k) => need(k),
        SearchKey::Before(_)
        | SearchKey::On(_)
        | SearchKey::Since(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Larger(_)
        | SearchKey::Smaller(_) => Need::Entry,
        SearchKey::Header(name, _) if envelope_field(name) => Need::Entry,
        SearchKey::Header(..) => Need::Header,
        SearchKey::Body(_) | SearchKey::Text(_) => Need::Body,
        _ => Need::View,
    }
}

fn envelope_field(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
        "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" | "MESSAGE-ID" | "IN-REPLY-TO"
    )
}

/// One message as a search sees it.
#[derive(Debug)]
pub struct Candidate<'a> {
    pub seq: u32,
    pub msg: &'a Msg,
    pub entry: Option<&'a MessageEntry>,
    pub meta: Option<&'a MessageMeta>,
    /// The header block (prefix included), when the program needs it.
    pub header: Option<&'a [u8]>,
    /// The whole message, when the program needs it.
    pub raw: Option<&'a [u8]>,
}

#[derive(Debug)]
pub struct Context<'a> {
    pub view: &'a Selected,
    pub saved: &'a [u32],
}

impl Context<'_> {
    pub fn matches(&self, key: &SearchKey, c: &Candidate<'_>) -> bool {
        let last_seq = self.view.msgs.len() as u32;
        let last_uid = self.view.msgs.last().map_or(0, |m| m.uid);
        match key {
            SearchKey::All => true,
            SearchKey::And(keys) => keys.iter().all(|k| self.matches(k, c)),
            SearchKey::Or(a, b) => self.matches(a, c) || self.matches(b, c),
            SearchKey::Not(k) => !self.matches(k, c),
            SearchKey::Sequence(SequenceSet::Ranges(r)) => {
                SequenceSet::contains(r, c.seq, last_seq)
            }
            SearchKey::Uid(SequenceSet::Ranges(r)) => SequenceSet::contains(r, c.msg.uid, last_uid),
            SearchKey::Sequence(SequenceSet::Saved) | SearchKey::Uid(SequenceSet::Saved) => {
                self.saved.contains(&c.msg.uid)
            }
            SearchKey::Flag(f) => c.msg.has(f),
            SearchKey::NoFlag(f) => !c.msg.has(f),
            // \Recent is this session's (none after ENABLE IMAP4rev2).
            SearchKey::Recent => self.view.is_recent(c.msg.uid),
            SearchKey::New => self.view.is_recent(c.msg.uid) && !c.msg.has("\\Seen"),
            SearchKey::Old => !self.view.is_recent(c.msg.uid),
            SearchKey::ModSeq(m) => c.msg.modseq >= *m,
            SearchKey::Before(d) => self.internal_day(c).is_some_and(|x| x < *d),
            SearchKey::On(d) => self.internal_day(c) == Some(*d),
            SearchKey::Since(d) => self.internal_day(c).is_some_and(|x| x >= *d),
            SearchKey::SentBefore(d) => sent_day(c).is_some_and(|x| x < *d),
            SearchKey::SentOn(d) => sent_day(c) == Some(*d),
            SearchKey::SentSince(d) => sent_day(c).is_some_and(|x| x >= *d),
            SearchKey::Larger(n) => c.entry.is_some_and(|e| e.size > *n),
            SearchKey::Smaller(n) => c.entry.is_some_and(|e| e.size < *n),
            SearchKey::Header(name, value) => header_matches(c, name, value),
            SearchKey::Body(s) => c.raw.is_some_and(|raw| body_contains(raw, s, false)),
            SearchKey::Text(s) => c.raw.is_some_and(|raw| body_contains(raw, s, true)),
        }
    }

    fn internal_day(&self, c: &Candidate<'_>) -> Option<i64> {
        c.entry
            .map(|e| (e.internal_date + i64::from(e.internal_tz) * 60).div_euclid(86_400))
    }
}

/// The day of the Date header, in the header's own zone.
fn sent_day(c: &Candidate<'_>) -> Option<i64> {
    let env = &c.meta?.envelope;
    let sent = env.sent?;
    let zone = env.date.as_deref().and_then(zone_of).unwrap_or(0);
    Some((sent + i64::from(zone) * 60).div_euclid(86_400))
}

/// The `+hhmm` zone at the end of a date, in minutes.
fn zone_of(date: &str) -> Option<i32> {
    let token = date.split_whitespace().rev().find(|t| {
        t.len() == 5
            && (t.starts_with('+') || t.starts_with('-'))
            && t[1..].bytes().all(|b| b.is_ascii_digit())
    })?;
    let n: i32 = token[1..].parse().ok()?;
    let minutes = n / 100 * 60 + n % 100;
    Some(if token.starts_with('-') {
        -minutes
    } else {
        minutes
    })
}

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn addresses_contain(list: &[EnvelopeAddress], needle: &str) -> bool {
    list.iter().any(|a| {
        let text = format!(
            "{} <{}@{}>",
            a.name.as_deref().unwrap_or(""),
            a.mailbox.as_deref().unwrap_or(""),
            a.host.as_deref().unwrap_or("")
        );
        contains(&text, needle)
    })
}

fn header_matches(c: &Candidate<'_>, name: &str, value: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if let Some(meta) = c.meta
        && envelope_field(&upper)
    {
        let e = &meta.envelope;
        return match upper.as_str() {
            "FROM" => addresses_contain(&e.from, value),
            "TO" => addresses_contain(&e.to, value),
            "CC" => addresses_contain(&e.cc, value),
            "BCC" => addresses_contain(&e.bcc, value),
            "SUBJECT" => e.subject.as_deref().is_some_and(|s| contains(s, value)),
            "MESSAGE-ID" => e.message_id.as_deref().is_some_and(|s| contains(s, value)),
            _ => e.in_reply_to.as_deref().is_some_and(|s| contains(s, value)),
        };
    }
    let Some(header) = c.header else {
        return false;
    };
    let Some(parsed) = stratus_core::message::parse_headers(header) else {
        return false;
    };
    parsed
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .any(|h| {
            let raw = header
                .get(h.offset_start() as usize..h.offset_end() as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let unfolded = raw.replace("\r\n", "").replace('\n', "");
            let decoded = h.value().as_text().map(str::to_string).unwrap_or_default();
            contains(&unfolded, value) || contains(&decoded, value)
        })
}

/// Whether the decoded text of a message (and, for TEXT, its headers)
/// contains `needle`.
fn body_contains(raw: &[u8], needle: &str, with_headers: bool) -> bool {
    let Some(message) = stratus_core::message::parse(raw) else {
        return contains(&String::from_utf8_lossy(raw), needle);
    };
    if with_headers {
        let end = message.root_part().offset_body as usize;
        if contains(&String::from_utf8_lossy(&raw[..end.min(raw.len())]), needle) {
            return true;
        }
        if message.subject().is_some_and(|s| contains(s, needle)) {
            return true;
        }
    }
    for part in &message.parts {
        let is_text = part
            .content_type()
            .is_none_or(|ct| ct.ctype().eq_ignore_ascii_case("text"));
        if !is_text {
            continue;
        }
        if let Some(text) = part.text_contents()
            && contains(text, needle)
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_text_is_searched() {
        let raw = b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgQmVybGlu\r\n";
        assert!(body_contains(
            raw,
            "GRÜSSE AUS"
                .to_lowercase()
                .as_str()
                .replace("ss", "ß")
                .as_str(),
            false
        ));
        assert!(body_contains(raw, "berlin", false));
        assert!(
            !body_contains(raw, "R3LD", false),
            "the encoded form does not match"
        );
        assert!(body_contains(raw, "subject: hi", true));
        assert!(!body_contains(raw, "subject: hi", false));
    }

    #[test]
    fn zones_of_dates() {
        assert_eq!(zone_of("Tue, 1 Jul 2025 10:00:00 +0200"), Some(120));
        assert_eq!(zone_of("1 Jul 2025 10:00:00 -0530 (EST)"), Some(-330));
        assert_eq!(zone_of("garbage"), None);
    }
}
