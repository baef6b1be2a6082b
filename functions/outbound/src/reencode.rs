//! Making a message fit the wire before it is signed and sent.
//!
//! RFC 5322 §2.1.1 caps lines at 998 octets, and a receiver may cut or
//! refuse longer ones — after the DKIM signature was made, which breaks it.
//! RFC 6152 §3 lets a relay hand 8-bit mail to a server without 8BITMIME
//! only after converting it to 7 bits. Both are done the same way: the
//! MIME leaf parts that do not fit get a quoted-printable (text) or base64
//! (anything else) body and a Content-Transfer-Encoding header to match,
//! everything else is left byte for byte as it was, and unstructured header
//! fields carrying 8-bit text become RFC 2047 encoded words.
//!
//! Parsing is mail-parser's; the encoders are mail-builder's. Only the
//! splicing of re-encoded parts back into the original bytes is ours, as
//! neither crate rewrites a message in place.

use mail_builder::encoders::base64::base64_encode_mime;
use mail_builder::encoders::quoted_printable::quoted_printable_encode;
use mail_parser::{MimeHeaders, PartType};

/// RFC 5322 §2.1.1: at most 998 octets on a line, CRLF excluded.
const MAX_LINE: usize = 998;
/// Nested messages deeper than this are left alone.
const MAX_DEPTH: usize = 8;

/// Whether any octet of `raw` is outside US-ASCII.
pub fn has_8bit(raw: &[u8]) -> bool {
    raw.iter().any(|&b| b >= 0x80)
}

/// `raw` with every part that has a line over 998 octets re-encoded and,
/// when `seven_bit`, every part and unstructured header with 8-bit octets
/// too. `None` when nothing needed changing.
pub fn reencode(raw: &[u8], seven_bit: bool) -> Option<Vec<u8>> {
    // Most mail fits as it is: say so without parsing it.
    if !(too_long(raw) || (seven_bit && has_8bit(raw))) {
        return None;
    }
    rewrite(raw, seven_bit, 0)
}

/// Whether a line of `content` is over 998 octets (its CRLF not counted).
fn too_long(content: &[u8]) -> bool {
    content
        .split(|&b| b == b'\n')
        .any(|l| l.strip_suffix(b"\r").unwrap_or(l).len() > MAX_LINE)
}

fn rewrite(raw: &[u8], seven_bit: bool, depth: usize) -> Option<Vec<u8>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let message = stratus_core::message::parse(raw)?;
    // (start, end, replacement), never overlapping: header blocks and leaf
    // bodies only.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for (i, part) in message.parts.iter().enumerate() {
        let (head, body, end) = (
            part.offset_header as usize,
            part.offset_body as usize,
            (part.offset_end as usize).min(raw.len()),
        );
        if head > body || body > end {
            continue;
        }
        let header_block = &raw[head..body];
        let fields = header_fields(header_block);
        let mut new_fields: Option<Vec<Vec<u8>>> = None;
        if i == 0 && seven_bit && has_8bit(header_block) {
            let encoded: Vec<Vec<u8>> = fields.iter().map(|f| encode_unstructured(f)).collect();
            if encoded != fields {
                new_fields = Some(encoded);
            }
        }
        let content = &raw[body..end];
        match &part.body {
            PartType::Multipart(_) => {}
            PartType::Message(_) => {
                // RFC 2046 §5.2.1: a message/rfc822 body is never encoded
                // itself; its own parts are.
                if let Some(inner) = rewrite(content, seven_bit, depth + 1) {
                    if seven_bit && !has_8bit(&inner) {
                        let fields = new_fields.take().unwrap_or_else(|| fields.clone());
                        new_fields = Some(with_encoding(fields, "7bit", false));
                    }
                    edits.push((body, end, inner));
                }
            }
            _ => {
                let encoded = part.encoding != mail_parser::Encoding::None;
                if !encoded && (too_long(content) || (seven_bit && has_8bit(content))) {
                    let text = match part.content_type() {
                        Some(ct) => ct.ctype().eq_ignore_ascii_case("text"),
                        None => true,
                    };
                    let mut out = Vec::with_capacity(content.len() * 4 / 3 + 8);
                    let cte = if text {
                        let _ = quoted_printable_encode(content, &mut out, true);
                        "quoted-printable"
                    } else {
                        let _ = base64_encode_mime(content, &mut out, false);
                        "base64"
                    };
                    if !out.ends_with(b"\r\n") && content.ends_with(b"\n") {
                        out.extend_from_slice(b"\r\n");
                    }
                    let fields = new_fields.take().unwrap_or_else(|| fields.clone());
                    let bare = i == 0 && part.content_type().is_none();
                    let charset = if std::str::from_utf8(content).is_ok() {
                        "utf-8"
                    } else {
                        "unknown-8bit"
                    };
                    let mut fields = with_encoding(fields, cte, bare);
                    if bare {
                        let at = fields.len();
                        fields.insert(
                            at,
                            format!("Content-Type: text/plain; charset={charset}\r\n").into_bytes(),
                        );
                    }
                    new_fields = Some(fields);
                    edits.push((body, end, out));
                }
            }
        }
        if let Some(fields) = new_fields {
            let mut block: Vec<u8> = fields.concat();
            block.extend_from_slice(&header_block[separator_start(header_block)..]);
            edits.push((head, body, block));
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 3);
    let mut at = 0;
    for (start, end, replacement) in edits {
        if start < at {
            continue;
        }
        out.extend_from_slice(&raw[at..start]);
        out.extend_from_slice(&replacement);
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}

/// The fields of a header block, each with its continuation lines and
/// line ends; the blank line that ends the block is not among them.
fn header_fields(block: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in block[..separator_start(block)].split_inclusive(|&b| b == b'\n') {
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    fields
}

/// Where the blank line ending a header block starts (its length when
/// there is none).
fn separator_start(block: &[u8]) -> usize {
    if block.ends_with(b"\r\n\r\n") {
        block.len() - 2
    } else if block.ends_with(b"\n\n") {
        block.len() - 1
    } else if block == b"\r\n" || block == b"\n" {
        0
    } else {
        block.len()
    }
}

fn name_of(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == b':').unwrap_or(0);
    field[..end].trim_ascii()
}

/// `fields` without any Content-Transfer-Encoding, then one saying `cte`
/// (and a MIME-Version when `add_version` and none is there).
fn with_encoding(fields: Vec<Vec<u8>>, cte: &str, add_version: bool) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = fields
        .into_iter()
        .filter(|f| !name_of(f).eq_ignore_ascii_case(b"content-transfer-encoding"))
        .collect();
    if add_version
        && !fields
            .iter()
            .any(|f| name_of(f).eq_ignore_ascii_case(b"mime-version"))
    {
        fields.push(b"MIME-Version: 1.0\r\n".to_vec());
    }
    fields.push(format!("Content-Transfer-Encoding: {cte}\r\n").into_bytes());
    fields
}

/// An unstructured field (RFC 5322 §3.6.5) with 8-bit text as RFC 2047
/// encoded words; any other field unchanged. Structured fields (addresses,
/// message ids, MIME parameters) have their own rules and are left alone.
fn encode_unstructured(field: &[u8]) -> Vec<u8> {
    let name = name_of(field);
    let unstructured = [&b"subject"[..], b"comments", b"keywords", b"thread-topic"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
    if !unstructured || !has_8bit(field) {
        return field.to_vec();
    }
    let colon = name.len() + 1;
    let Ok(value) = std::str::from_utf8(&field[colon..]) else {
        return field.to_vec();
    };
    // Unfold, then encode in words of at most 39 input octets so every
    // line stays under 78 characters.
    let value: String = value
        .split(['\r', '\n'])
        .collect::<String>()
        .trim()
        .to_string();
    let mut out = Vec::with_capacity(field.len() * 2);
    out.extend_from_slice(&field[..colon]);
    let mut chunk = String::new();
    let mut words = Vec::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 39 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    for (n, word) in words.iter().enumerate() {
        out.extend_from_slice(if n == 0 { b" " } else { b"\r\n " });
        out.extend_from_slice(b"=?utf-8?b?");
        out.extend_from_slice(stratus_core::base64::encode(word.as_bytes()).as_bytes());
        out.extend_from_slice(b"?=");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn parsed_text(raw: &[u8], part: usize) -> String {
        let m = MessageParser::default().parse(raw).unwrap();
        m.body_text(part).unwrap().into_owned()
    }

    fn longest_line(raw: &[u8]) -> usize {
        raw.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap()
    }

    #[test]
    fn plain_seven_bit_mail_is_untouched() {
        let raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nshort line\r\n";
        assert_eq!(reencode(raw, true), None);
        assert_eq!(reencode(raw, false), None);
    }

    #[test]
    fn a_long_line_becomes_quoted_printable_and_reads_back_the_same() {
        let long = "x".repeat(3000);
        let raw = format!("From: a@example.com\r\nSubject: long\r\n\r\n{long}\r\nend\r\n");
        let out = reencode(raw.as_bytes(), false).expect("rewritten");
        assert!(longest_line(&out) <= 78, "{}", longest_line(&out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        assert!(text.contains("MIME-Version: 1.0\r\n"));
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.starts_with("From: a@example.com\r\nSubject: long\r\n"));
        assert_eq!(parsed_text(&out, 0), format!("{long}\r\nend\r\n"));
    }

    #[test]
    fn eight_bit_parts_become_seven_bit_and_others_stay_as_they_were() {
        let raw = "From: a@example.com\r\n\
            Subject: Grüße aus Köln\r\n\
            MIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"b\"\r\n\
            \r\n\
            preamble\r\n\
            --b\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: 8bit\r\n\
            \r\n\
            Schöne Grüße\r\n\
            --b\r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            plain ascii\r\n\
            --b\r\n\
            Content-Type: application/octet-stream\r\n\
            Content-Transfer-Encoding: 8bit\r\n\
            \r\n\
            \u{e9}t\u{e9}\r\n\
            --b--\r\n";
        assert_eq!(reencode(raw.as_bytes(), false), None, "fits 8BITMIME");
        let out = reencode(raw.as_bytes(), true).expect("rewritten");
        assert!(!has_8bit(&out), "{}", String::from_utf8_lossy(&out));
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("Grüße aus Köln"));
        // The line end before a boundary belongs to the boundary.
        assert_eq!(m.body_text(0).unwrap(), "Schöne Grüße");
        assert_eq!(m.body_text(1).unwrap(), "plain ascii");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b"));
        assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        assert!(text.contains("Content-Transfer-Encoding: base64\r\n"));
        assert_eq!(text.matches("Content-Transfer-Encoding").count(), 2);
        let attachment = m.attachment(0).unwrap();
        assert_eq!(attachment.contents(), "\u{e9}t\u{e9}".as_bytes());
        assert!(text.ends_with("--b--\r\n"));
    }

    #[test]
    fn a_forwarded_message_is_converted_inside() {
        let raw = "From: a@example.com\r\n\
            Content-Type: multipart/mixed; boundary=\"o\"\r\n\
            \r\n\
            --o\r\n\
            Content-Type: message/rfc822\r\n\
            Content-Transfer-Encoding: 8bit\r\n\
            \r\n\
            From: b@example.com\r\n\
            Subject: inner\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            \r\n\
            naïve café\r\n\
            --o--\r\n";
        let out = reencode(raw.as_bytes(), true).expect("rewritten");
        assert!(!has_8bit(&out), "{}", String::from_utf8_lossy(&out));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            )
        );
        let m = MessageParser::default().parse(&out).unwrap();
        let inner = m.attachment(0).unwrap().message().unwrap();
        assert_eq!(inner.body_text(0).unwrap(), "naïve café");
    }

    #[test]
    fn long_subjects_fold_into_several_encoded_words() {
        let subject = "ü".repeat(100);
        let raw = format!("Subject: {subject}\r\nTo: b@example.com\r\n\r\nhi\r\n");
        let out = reencode(raw.as_bytes(), true).unwrap();
        assert!(longest_line(&out) < 78);
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some(subject.as_str()));
        assert_eq!(
            m.to().unwrap().first().unwrap().address(),
            Some("b@example.com")
        );
    }
}
