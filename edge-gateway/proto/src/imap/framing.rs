//! Reading a command off the wire before it can be parsed: the literal
//! marker that ends a line (so the reader knows how many octets follow and
//! whether to send `+`), and the tag and verb of a command that has not
//! been read whole (to refuse it by tag, or to allow an APPEND literal the
//! size of a message).

/// The tag of a partly read command, for refusing it (`*` if none).
pub fn tag_of(command: &[u8]) -> String {
    let tag: Vec<u8> = command
        .iter()
        .take_while(|&&b| b > b' ' && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\'))
        .take(64)
        .copied()
        .collect();
    if tag.is_empty() {
        "*".into()
    } else {
        String::from_utf8_lossy(&tag).into_owned()
    }
}

/// Whether the command being read is APPEND (so its literal may be as
/// large as a message).
pub fn is_append(command: &[u8]) -> bool {
    let mut words = command.split(|&b| b == b' ');
    words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
}

/// `{n}`, `{n+}` or `~{n}` ending a line: the size, and whether the
/// client waits for `+` (a synchronising literal).
pub fn literal_at_end(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, sync))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_markers() {
        assert_eq!(literal_at_end(b"a APPEND x {12}\r\n"), Some((12, true)));
        assert_eq!(literal_at_end(b"a APPEND x {12+}\r\n"), Some((12, false)));
        assert_eq!(literal_at_end(b"a APPEND x ~{3}\r\n"), Some((3, true)));
        assert_eq!(literal_at_end(b"a LOGIN {x}\r\n"), None);
        assert_eq!(literal_at_end(b"a NOOP\r\n"), None);
        assert_eq!(literal_at_end(b"a X {}\r\n"), None);
    }

    #[test]
    fn tags_and_verbs_of_partial_commands() {
        assert_eq!(tag_of(b"a1 APPEND INBOX {5}"), "a1");
        assert_eq!(tag_of(b"{5}"), "*");
        assert!(is_append(b"x append INBOX {5}"));
        assert!(!is_append(b"x LOGIN {5}"));
    }
}
