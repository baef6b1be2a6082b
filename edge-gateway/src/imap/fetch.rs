//! FETCH data items from a message entry: metadata items from the index
//! alone (FLAGS, UID, MODSEQ, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY,
//! BODYSTRUCTURE never read a body), body sections from the blob store,
//! reading only the byte range a section and partial need.
//!
//! A stored message is virtually `prefix` (the header lines Stratus added
//! for this recipient) followed by the body blob; the structure's offsets
//! are relative to the blob.

use std::fmt::Write as _;

use stratus_core::mailstore::MessageEntry;
use stratus_core::message::{MessageMeta, PartMeta};
use stratus_core::ports::{BlobStore, StoreError};

use super::selected::{Msg, flag_list, is_recent};
use stratus_proto::imap::command::{FetchAtt, Section, SectionText};
use stratus_proto::imap::wire::{self, Lossy};

/// Why a section cannot be given.
#[derive(Debug)]
pub enum FetchError {
    /// The body is missing or the store failed.
    Store(StoreError),
    /// BINARY of a part in an encoding we cannot decode.
    UnknownCte,
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        FetchError::Store(e)
    }
}

/// Whether an item needs the entry (beyond the view's UID, flags and
/// MODSEQ).
pub fn needs_entry(att: &FetchAtt) -> bool {
    !matches!(att, FetchAtt::Flags | FetchAtt::Uid | FetchAtt::ModSeq)
}

/// Whether an item marks the message \Seen.
pub fn sets_seen(att: &FetchAtt) -> bool {
    matches!(
        att,
        FetchAtt::Rfc822
            | FetchAtt::Rfc822Text
            | FetchAtt::Section { peek: false, .. }
            | FetchAtt::Binary { peek: false, .. }
    )
}

/// What a session renders with.
#[derive(Debug)]
pub struct Renderer<'a> {
    pub blobs: &'a dyn BlobStore,
    pub utf8: bool,
    /// The UIDs `\Recent` in this session, for FLAGS.
    pub recent: &'a [std::ops::Range<u32>],
}

impl Renderer<'_> {
    /// Appends `* seq FETCH (...)` for one message.
    pub async fn message(
        &self,
        out: &mut Vec<u8>,
        seq: usize,
        msg: &Msg,
        entry: Option<(&MessageEntry, &MessageMeta)>,
        atts: &[FetchAtt],
    ) -> Result<(), FetchError> {
        let mut body = Vec::new();
        for (i, att) in atts.iter().enumerate() {
            if i > 0 {
                body.push(b' ');
            }
            self.item(&mut body, msg, entry, att).await?;
        }
        let _ = write!(Lossy(out), "* {seq} FETCH (");
        out.extend_from_slice(&body);
        out.extend_from_slice(b")\r\n");
        Ok(())
    }

    async fn item(
        &self,
        out: &mut Vec<u8>,
        msg: &Msg,
        entry: Option<(&MessageEntry, &MessageMeta)>,
        att: &FetchAtt,
    ) -> Result<(), FetchError> {
        match att {
            FetchAtt::Flags => {
                out.extend_from_slice(b"FLAGS ");
                flag_list(out, &msg.flags, is_recent(self.recent, msg.uid));
                return Ok(());
            }
            FetchAtt::Uid => {
                let _ = write!(Lossy(out), "UID {}", msg.uid);
                return Ok(());
            }
            FetchAtt::ModSeq => {
                let _ = write!(Lossy(out), "MODSEQ ({})", msg.modseq);
                return Ok(());
            }
            _ => {}
        }
        let Some((entry, meta)) = entry else {
            return Ok(());
        };
        match att {
            FetchAtt::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(
                    wire::date_time(entry.internal_date, entry.internal_tz).as_bytes(),
                );
            }
            FetchAtt::Rfc822Size => {
                let _ = write!(Lossy(out), "RFC822.SIZE {}", entry.size);
            }
            FetchAtt::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                wire::envelope(out, &meta.envelope, self.utf8);
            }
            FetchAtt::Body => {
                out.extend_from_slice(b"BODY ");
                wire::body_structure(out, &meta.structure, false, self.utf8);
            }
            FetchAtt::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                wire::body_structure(out, &meta.structure, true, self.utf8);
            }
            FetchAtt::Rfc822 => {
                let data = self.read(entry, 0, entry.size).await?;
                out.extend_from_slice(b"RFC822 ");
                text_literal(out, data);
            }
            FetchAtt::Rfc822Header => {
                let end = entry.prefix.len() as u64 + meta.structure.body_start;
                let data = self.read(entry, 0, end).await?;
                out.extend_from_slice(b"RFC822.HEADER ");
                text_literal(out, data);
            }
            FetchAtt::Rfc822Text => {
                let p = entry.prefix.len() as u64;
                let data = self
                    .read(entry, p + meta.structure.body_start, p + meta.structure.end)
                    .await?;
                out.extend_from_slice(b"RFC822.TEXT ");
                text_literal(out, data);
            }
            FetchAtt::Section {
                section, partial, ..
            } => {
                let data = self.section(entry, meta, section, *partial).await?;
                out.extend_from_slice(b"BODY[");
                section_label(out, section);
                out.push(b']');
                if let Some((origin, _)) = partial {
                    let _ = write!(Lossy(out), "<{origin}>");
                }
                out.push(b' ');
                match data {
                    Some(d) => text_literal(out, d),
                    None => out.extend_from_slice(b"NIL"),
                }
            }
            FetchAtt::Binary { part, partial, .. } => {
                let data = self.binary(entry, meta, part).await?;
                out.extend_from_slice(b"BINARY[");
                out.extend_from_slice(dotted(part).as_bytes());
                out.push(b']');
                let data = data.map(|d| match partial {
                    Some((origin, length)) => slice(&d, *origin as u64, *length as u64).to_vec(),
                    None => d,
                });
                if let Some((origin, _)) = partial {
                    let _ = write!(Lossy(out), "<{origin}>");
                }
                out.push(b' ');
                match data {
                    Some(d) if d.contains(&0) => {
                        let _ = write!(Lossy(out), "~{{{}}}\r\n", d.len());
                        out.extend_from_slice(&d);
                    }
                    Some(d) => wire::literal(out, &d),
                    None => out.extend_from_slice(b"NIL"),
                }
            }
            FetchAtt::BinarySize(part) => {
                let size = self.binary(entry, meta, part).await?.map_or(0, |d| d.len());
                let _ = write!(Lossy(out), "BINARY.SIZE[{}] {size}", dotted(part));
            }
            FetchAtt::Flags | FetchAtt::Uid | FetchAtt::ModSeq => {}
        }
        Ok(())
    }

    /// Bytes `start..end` of the message as the client sees it.
    pub async fn read(
        &self,
        entry: &MessageEntry,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let end = end.min(entry.size);
        if start >= end {
            return Ok(Vec::new());
        }
        let prefix = entry.prefix.as_bytes();
        let p = prefix.len() as u64;
        let mut out = Vec::with_capacity((end - start) as usize);
        if start < p {
            out.extend_from_slice(&prefix[start as usize..end.min(p) as usize]);
        }
        if end > p {
            let from = start.max(p) - p;
            let to = end - p;
            let data = self
                .blobs
                .get(&entry.body, Some(from..to))
                .await?
                .ok_or_else(|| {
                    StoreError::retryable("fetch", format!("message body {} missing", entry.body))
                })?;
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// A BODY[section]<partial>; `None` when the part does not exist.
    pub(in crate::imap) async fn section(
        &self,
        entry: &MessageEntry,
        meta: &MessageMeta,
        section: &Section,
        partial: Option<(u32, u32)>,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let p = entry.prefix.len() as u64;
        let root = &meta.structure;
        // The message whose header/text a section names, and the part a
        // part path names.
        let (range, fields) = if section.part.is_empty() {
            match &section.text {
                None => ((0, entry.size), None),
                Some(SectionText::Header) => ((0, p + root.body_start), None),
                Some(SectionText::Text) => ((p + root.body_start, p + root.end), None),
                Some(SectionText::HeaderFields(f)) => {
                    ((0, p + root.body_start), Some((f.as_slice(), false)))
                }
                Some(SectionText::HeaderFieldsNot(f)) => {
                    ((0, p + root.body_start), Some((f.as_slice(), true)))
                }
                Some(SectionText::Mime) => return Ok(None),
            }
        } else {
            let Some(part) = find_part(root, &section.part) else {
                return Ok(None);
            };
            let inner = part.message.as_deref().map(|(_, s)| s);
            let r = match (&section.text, inner) {
                (None, _) => (p + part.body_start, p + part.end),
                (Some(SectionText::Mime), _) => (p + part.header_start, p + part.body_start),
                (Some(SectionText::Header), Some(m)) => (p + m.header_start, p + m.body_start),
                (Some(SectionText::Text), Some(m)) => (p + m.body_start, p + m.end),
                (Some(SectionText::HeaderFields(f)), Some(m)) => {
                    let r = (p + m.header_start, p + m.body_start);
                    return self.filtered(entry, r, f, false, partial).await.map(Some);
                }
                (Some(SectionText::HeaderFieldsNot(f)), Some(m)) => {
                    let r = (p + m.header_start, p + m.body_start);
                    return self.filtered(entry, r, f, true, partial).await.map(Some);
                }
                // HEADER and TEXT of a part that is not a message.
                (Some(_), None) => return Ok(None),
            };
            (r, None)
        };
        if let Some((f, not)) = fields {
            return self.filtered(entry, range, f, not, partial).await.map(Some);
        }
        let (mut start, mut end) = range;
        if let Some((origin, length)) = partial {
            start = (start + origin as u64).min(end);
            end = (start + length as u64).min(end);
        }
        self.read(entry, start, end).await.map(Some)
    }

    async fn filtered(
        &self,
        entry: &MessageEntry,
        (start, end): (u64, u64),
        fields: &[String],
        not: bool,
        partial: Option<(u32, u32)>,
    ) -> Result<Vec<u8>, FetchError> {
        let header = self.read(entry, start, end).await?;
        let data = filter_header(&header, fields, not);
        Ok(match partial {
            Some((origin, length)) => slice(&data, origin as u64, length as u64).to_vec(),
            None => data,
        })
    }

    /// The decoded content of a part (BINARY, RFC 3516); `None` when the
    /// part does not exist.
    pub(in crate::imap) async fn binary(
        &self,
        entry: &MessageEntry,
        meta: &MessageMeta,
        part: &[u32],
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let p = entry.prefix.len() as u64;
        if part.is_empty() {
            return self.read(entry, 0, entry.size).await.map(Some);
        }
        let Some(found) = find_part(&meta.structure, part) else {
            return Ok(None);
        };
        let raw = self
            .read(entry, p + found.body_start, p + found.end)
            .await?;
        let decoded = match found.encoding.as_str() {
            "7bit" | "8bit" | "binary" | "" => raw,
            "base64" => mail_parser::decoders::base64::base64_decode(&raw).unwrap_or_default(),
            "quoted-printable" => {
                mail_parser::decoders::quoted_printable::quoted_printable_decode(&raw)
                    .unwrap_or_default()
            }
            _ => return Err(FetchError::UnknownCte),
        };
        Ok(Some(decoded))
    }
}

/// A BODY or RFC822 item's data as a literal. Only BINARY may send NUL
/// (in a literal8, RFC 9051 §4.3.1); here each NUL (a message that came
/// in binary, by BDAT or APPEND) becomes 0x80, as Dovecot does, which
/// keeps every length and offset the client was told.
pub(in crate::imap) fn text_literal(out: &mut Vec<u8>, mut data: Vec<u8>) {
    for b in data.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
    wire::literal(out, &data);
}

fn slice(data: &[u8], origin: u64, length: u64) -> &[u8] {
    let start = (origin as usize).min(data.len());
    let end = start.saturating_add(length as usize).min(data.len());
    &data[start..end]
}

fn dotted(part: &[u32]) -> String {
    part.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// The section as the response names it: `1.2.HEADER.FIELDS (FROM TO)`.
fn section_label(out: &mut Vec<u8>, section: &Section) {
    out.extend_from_slice(dotted(&section.part).as_bytes());
    let Some(text) = &section.text else {
        return;
    };
    if !section.part.is_empty() {
        out.push(b'.');
    }
    let (name, fields) = match text {
        SectionText::Header => ("HEADER", None),
        SectionText::Text => ("TEXT", None),
        SectionText::Mime => ("MIME", None),
        SectionText::HeaderFields(f) => ("HEADER.FIELDS", Some(f)),
        SectionText::HeaderFieldsNot(f) => ("HEADER.FIELDS.NOT", Some(f)),
    };
    out.extend_from_slice(name.as_bytes());
    if let Some(fields) = fields {
        out.extend_from_slice(b" (");
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            let f = f.to_ascii_uppercase();
            if !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
            {
                out.extend_from_slice(f.as_bytes());
            } else {
                wire::string(out, f.as_bytes(), false);
            }
        }
        out.push(b')');
    }
}

/// The part a part path names (RFC 9051 §6.4.5): numbers index the parts
/// of a multipart; the part of a non-multipart is 1; through a
/// message/rfc822 part, numbers apply to the enclosed message.
pub fn find_part<'a>(root: &'a PartMeta, path: &[u32]) -> Option<&'a PartMeta> {
    let mut current = root;
    for (depth, &n) in path.iter().enumerate() {
        let container = if depth > 0 {
            match current.message.as_deref() {
                Some((_, inner)) => inner,
                None => current,
            }
        } else {
            current
        };
        current = if container.ctype == "multipart" {
            container.parts.get(n as usize - 1)?
        } else if n == 1 && (depth == 0 || !std::ptr::eq(container, current)) {
            container
        } else {
            return None;
        };
    }
    Some(current)
}

/// The header fields named (or all but those, with `not`), each with its
/// continuation lines, and the blank line that ends a header.
pub fn filter_header(header: &[u8], fields: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| &line[..i])
                .unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let name = name.trim();
            let listed = fields.iter().any(|f| f.eq_ignore_ascii_case(name));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_filtered_with_their_continuations() {
        let header = b"From: a@x\r\nSubject: one\r\n two\r\nTo: b@y\r\n\r\n";
        assert_eq!(
            filter_header(header, &["subject".into()], false),
            b"Subject: one\r\n two\r\n\r\n"
        );
        assert_eq!(
            filter_header(header, &["SUBJECT".into()], true),
            b"From: a@x\r\nTo: b@y\r\n\r\n"
        );
        assert_eq!(filter_header(header, &["cc".into()], false), b"\r\n");
    }

    #[test]
    fn part_paths_follow_multiparts_and_enclosed_messages() {
        let meta = stratus_core::message::analyze(
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/plain\r\n\r\ninner\r\n--c\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--c--\r\n--b--\r\n",
        );
        let root = &meta.structure;
        assert_eq!(find_part(root, &[1]).unwrap().subtype, "plain");
        assert_eq!(find_part(root, &[2]).unwrap().subtype, "rfc822");
        assert_eq!(find_part(root, &[2, 2]).unwrap().subtype, "html");
        assert!(find_part(root, &[3]).is_none());
        assert!(
            find_part(root, &[1, 1]).is_none(),
            "a text part has no parts"
        );
        let single = stratus_core::message::analyze(b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(find_part(&single.structure, &[1]).unwrap().subtype, "plain");
        assert!(find_part(&single.structure, &[2]).is_none());
    }
}
