//! The SIZE parameter of MAIL (RFC 1870), read exactly. smtp-proto 0.2
//! parses it into a `usize` that saturates and then starts again from the
//! next digit, so a value of more than twenty digits could come out small
//! and be accepted; this reads the same parameter with checked arithmetic,
//! so that every value over the limit is refused as too large.

/// What a MAIL command line says its message's size is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredSize {
    /// No SIZE parameter.
    Absent,
    Bytes(u64),
    /// More than 2^64 - 1 octets: larger than any limit.
    TooLarge,
    /// Not a number (smtp-proto refuses it first: 501).
    Invalid,
}

/// The SIZE parameter of a `MAIL FROM:<path> [params]` line. The path is
/// skipped whole, quoted local parts included, so that nothing inside it
/// is read as a parameter.
pub fn declared_size(line: &[u8]) -> DeclaredSize {
    let Some(params) = after_path(line) else {
        return DeclaredSize::Absent;
    };
    // CR and LF are whitespace too: the line ending splits off.
    for param in params.split(|b| b.is_ascii_whitespace()) {
        let Some(value) = param
            .get(..5)
            .filter(|k| k.eq_ignore_ascii_case(b"SIZE="))
            .map(|_| &param[5..])
        else {
            continue;
        };
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return DeclaredSize::Invalid;
        }
        let mut n: u64 = 0;
        for &d in value {
            match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
            {
                Some(next) => n = next,
                None => return DeclaredSize::TooLarge,
            }
        }
        return DeclaredSize::Bytes(n);
    }
    DeclaredSize::Absent
}

/// What follows the reverse-path's closing `>`, which may not be the
/// first `>` of the line: a quoted local part can hold one.
fn after_path(line: &[u8]) -> Option<&[u8]> {
    let open = line.iter().position(|&b| b == b'<')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in line.iter().enumerate().skip(open + 1) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(&line[i + 1..]),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_exactly() {
        for (line, want) in [
            (&b"MAIL FROM:<a@b.example>\r\n"[..], DeclaredSize::Absent),
            (
                b"MAIL FROM:<a@b.example> SIZE=500000\r\n",
                DeclaredSize::Bytes(500_000),
            ),
            (
                b"MAIL FROM:<> size=0 BODY=8BITMIME\r\n",
                DeclaredSize::Bytes(0),
            ),
            (
                b"MAIL FROM:<a@b.example> SIZE=18446744073709551615\r\n",
                DeclaredSize::Bytes(u64::MAX),
            ),
            (
                b"MAIL FROM:<a@b.example> SIZE=18446744073709551616\r\n",
                DeclaredSize::TooLarge,
            ),
            // What smtp-proto would have read as 5.
            (
                b"MAIL FROM:<a@b.example> SIZE=999999999999999999995\r\n",
                DeclaredSize::TooLarge,
            ),
            (
                b"MAIL FROM:<a@b.example> SIZE=12ab\r\n",
                DeclaredSize::Invalid,
            ),
            (b"MAIL FROM:<a@b.example> SIZE=\r\n", DeclaredSize::Invalid),
            // Inside the path, SIZE= is part of an address.
            (
                b"MAIL FROM:<\"x> SIZE=99999999999999999999999\"@b.example> SIZE=10\r\n",
                DeclaredSize::Bytes(10),
            ),
            (
                b"MAIL FROM:<\"unterminated> SIZE=1\r\n",
                DeclaredSize::Absent,
            ),
        ] {
            assert_eq!(
                declared_size(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
