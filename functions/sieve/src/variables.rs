//! Variables (RFC 5229): `${...}` references, `set` modifiers, and the
//! encoded-character extension (RFC 5228 section 2.4.2.4).
//!
//! Each function makes one pass over its input: a failed reference or
//! encoded sequence is copied out up to the character that broke it, and
//! scanning resumes there, so nothing is read twice.

/// Encoded-character blank: WSP or CRLF (a lone CR or LF is accepted too).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

// ---------------------------------------------------------------------
// Encoded characters
// ---------------------------------------------------------------------

/// What a `${hex:...}` or `${unicode:...}` sequence turned out to be.
enum Encoded {
    /// Well formed: the decoded bytes and the length of the sequence.
    Decoded(Vec<u8>, usize),
    /// Not well formed: copy this many bytes literally and go on.
    Malformed(usize),
}

/// Decodes `${hex:...}` and `${unicode:...}` sequences in a string
/// literal (after escapes are processed, before variables are expanded).
///
/// The names ignore case; values are separated by blanks. Malformed
/// sequences stay as written (RFC 5228 section 2.4.2.4). A well-formed
/// `${unicode:...}` naming a surrogate or a value above 10FFFF is an
/// error, as is a result that is not UTF-8 (hex octets that do not form
/// characters): Err carries the reason for the parser to report.
pub fn decode_encoded_characters(s: &str) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(found) = find_from(bytes, i, b"${") {
        out.extend_from_slice(&bytes[i..found]);
        let consumed = match encoded_at(&bytes[found..])? {
            Encoded::Decoded(decoded, len) => {
                out.extend_from_slice(&decoded);
                len
            }
            Encoded::Malformed(len) => {
                out.extend_from_slice(&bytes[found..found + len]);
                len
            }
        };
        i = found + consumed;
    }
    out.extend_from_slice(&bytes[i..]);
    String::from_utf8(out).map_err(|_| "${hex:...} octets are not valid UTF-8".to_owned())
}

/// Index of the first `needle` in `haystack` at or after `from`.
fn find_from(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Reads an encoded sequence at the start of `s` (which starts "${").
fn encoded_at(s: &[u8]) -> Result<Encoded, String> {
    const HEX: &[u8] = b"hex:";
    const UNICODE: &[u8] = b"unicode:";
    let body = &s[2..];
    if starts_with_ignore_case(body, HEX) {
        Ok(hex_sequence(s, 2 + HEX.len()))
    } else if starts_with_ignore_case(body, UNICODE) {
        unicode_sequence(s, 2 + UNICODE.len())
    } else {
        // Copy the "$" alone: the "{" cannot start another sequence.
        Ok(Encoded::Malformed(1))
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The blank-separated runs of hex digits from `start` up to a closing
/// "}". Ok((runs, length including "}")) when well formed; Err(length)
/// of the literal prefix to copy when not (at least one run is needed,
/// and only blanks may separate runs).
fn hex_runs(s: &[u8], start: usize) -> Result<(Vec<&[u8]>, usize), usize> {
    let mut runs = Vec::new();
    let mut i = start;
    loop {
        while s.get(i).copied().is_some_and(is_blank) {
            i += 1;
        }
        match s.get(i) {
            Some(b'}') if !runs.is_empty() => return Ok((runs, i + 1)),
            Some(b) if b.is_ascii_hexdigit() => {
                let run_start = i;
                while s.get(i).is_some_and(u8::is_ascii_hexdigit) {
                    i += 1;
                }
                runs.push(&s[run_start..i]);
                // A run must end at a blank or the closing brace.
                if !s.get(i).is_some_and(|&b| b == b'}' || is_blank(b)) {
                    return Err(i);
                }
            }
            _ => return Err(i),
        }
    }
}

/// `${hex:` hex-pair-seq `}`: each run is one octet of one or two digits.
fn hex_sequence(s: &[u8], start: usize) -> Encoded {
    let (runs, len) = match hex_runs(s, start) {
        Ok(found) => found,
        Err(copy) => return Encoded::Malformed(copy),
    };
    let mut octets = Vec::with_capacity(runs.len());
    for run in runs {
        match run {
            [a] => octets.push(hex_value(*a)),
            [a, b] => octets.push((hex_value(*a) << 4) | hex_value(*b)),
            // Too long for a hex-pair: the whole thing stays literal.
            _ => return Encoded::Malformed(len),
        }
    }
    Encoded::Decoded(octets, len)
}

/// `${unicode:` unicode-hex-seq `}`: each run is a code point in any
/// number of digits. Well formed but out of range is an error.
fn unicode_sequence(s: &[u8], start: usize) -> Result<Encoded, String> {
    let (runs, len) = match hex_runs(s, start) {
        Ok(found) => found,
        Err(copy) => return Ok(Encoded::Malformed(copy)),
    };
    let mut out = String::new();
    for run in runs {
        let c = code_point(run).ok_or_else(|| {
            let shown = String::from_utf8_lossy(&run[..run.len().min(16)]).into_owned();
            format!("${{unicode:...}} value {shown} is not a Unicode scalar value")
        })?;
        out.push(c);
    }
    Ok(Encoded::Decoded(out.into_bytes(), len))
}

/// The character a run of hex digits names: 0-D7FF or E000-10FFFF.
/// Leading zeros are ignored, so the value never overflows.
fn code_point(run: &[u8]) -> Option<char> {
    let significant = run
        .iter()
        .position(|&b| b != b'0')
        .map_or(&[][..], |p| &run[p..]);
    if significant.len() > 6 {
        return None;
    }
    let value = significant
        .iter()
        .fold(0u32, |acc, &b| (acc << 4) | u32::from(hex_value(b)));
    char::from_u32(value)
}

/// The value of one ASCII hex digit (0 for anything else).
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

// ---------------------------------------------------------------------
// Variable references
// ---------------------------------------------------------------------

/// A variable reference, as passed to the lookup of [`expand`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarRef<'a> {
    /// A variable name, lower-cased, with any namespace ("env.name").
    Name(&'a str),
    /// A match variable `${N}` (leading zeros ignored; absurdly large
    /// numbers become `usize::MAX`, which no match list reaches).
    Match(usize),
}

/// A reference parsed from the text after "${".
enum Parsed {
    Name(String),
    Match(usize),
}

/// Length of the identifier at the start of `s`: `(ALPHA / "_")
/// *(ALPHA / DIGIT / "_")`, or 0.
fn identifier_len(s: &[u8]) -> usize {
    match s.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => s
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(s.len()),
        _ => 0,
    }
}

/// Length of the digit run at the start of `s`.
fn digits_len(s: &[u8]) -> usize {
    s.iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len())
}

/// Reads `[namespace] variable-name "}"` from the start of `s` (the text
/// after "${"), RFC 5229 section 3:
///
/// ```text
/// namespace     = identifier "." *sub-namespace
/// sub-namespace = variable-name "."
/// variable-name = num-variable / identifier
/// ```
///
/// Ok((reference, bytes used including "}")), or Err(bytes that were
/// name characters before the one that broke it).
fn parse_reference(s: &[u8]) -> Result<(Parsed, usize), usize> {
    let digits = digits_len(s);
    if digits > 0 {
        return match s.get(digits) {
            Some(b'}') => Ok((Parsed::Match(match_index(&s[..digits])), digits + 1)),
            _ => Err(digits),
        };
    }
    let mut i = identifier_len(s);
    if i == 0 {
        return Err(0);
    }
    loop {
        match s.get(i) {
            Some(b'}') => {
                let name = String::from_utf8_lossy(&s[..i]).to_ascii_lowercase();
                return Ok((Parsed::Name(name), i + 1));
            }
            Some(b'.') => {
                let rest = &s[i + 1..];
                let part = identifier_len(rest).max(digits_len(rest));
                if part == 0 {
                    return Err(i + 1);
                }
                i += 1 + part;
            }
            _ => return Err(i),
        }
    }
}

/// The index a match variable's digits name, saturating when too large.
fn match_index(digits: &[u8]) -> usize {
    digits.iter().fold(0usize, |acc, &b| {
        acc.saturating_mul(10).saturating_add(usize::from(b - b'0'))
    })
}

/// Appends as much of `piece` as fits in `max_len` bytes, cutting at a
/// character boundary. False once the output is full.
fn push_bounded(out: &mut String, piece: &str, max_len: usize) -> bool {
    let room = max_len.saturating_sub(out.len());
    if piece.len() <= room {
        out.push_str(piece);
        return true;
    }
    let mut end = room;
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&piece[..end]);
    false
}

/// Expands `${name}` and `${N}` references in one pass (RFC 5229 section
/// 3). `lookup` gets each name lower-cased (with its namespace, if any)
/// or each match-variable index, and returns its value; None expands to
/// the empty string. A "${" that does not start a valid reference closed
/// by "}" stays as written. The result is cut to at most `max_len` bytes,
/// at a character boundary.
pub fn expand(
    s: &str,
    max_len: usize,
    lookup: &mut dyn FnMut(VarRef<'_>) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(s.len().min(max_len));
    let mut i = 0;
    while let Some(found) = s.get(i..).and_then(|rest| rest.find("${")) {
        let at = i + found;
        if !push_bounded(&mut out, &s[i..at], max_len) {
            return out;
        }
        let body = &s[at + 2..];
        let (value, next) = match parse_reference(body.as_bytes()) {
            Ok((Parsed::Name(name), used)) => (lookup(VarRef::Name(&name)), at + 2 + used),
            Ok((Parsed::Match(index), used)) => (lookup(VarRef::Match(index)), at + 2 + used),
            Err(scanned) => (Some(s[at..at + 2 + scanned].to_owned()), at + 2 + scanned),
        };
        if !push_bounded(&mut out, value.as_deref().unwrap_or(""), max_len) {
            return out;
        }
        i = next;
    }
    push_bounded(&mut out, &s[i..], max_len);
    out
}

/// Whether `s` contains a variable reference at all, so constant strings
/// can skip expansion.
pub fn has_references(s: &str) -> bool {
    let mut i = 0;
    while let Some(found) = s.get(i..).and_then(|rest| rest.find("${")) {
        let at = i + found;
        match parse_reference(&s.as_bytes()[at + 2..]) {
            Ok(_) => return true,
            Err(scanned) => i = at + 2 + scanned,
        }
    }
    false
}

/// Whether `name` is a valid variable name for `set`: an identifier, so
/// neither a match variable (digits) nor namespaced (RFC 5229 section 4).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && identifier_len(name.as_bytes()) == name.len()
}

// ---------------------------------------------------------------------
// Modifiers
// ---------------------------------------------------------------------

/// A `set` modifier: RFC 5229 section 4.1, `:quoteregex` from
/// draft-ietf-sieve-regex and `:encodeurl` from RFC 5435 section 6.
/// Declared from highest precedence to lowest, so sorting puts them in
/// the order they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Modifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    QuoteRegex,
    EncodeUrl,
    Length,
}

impl Modifier {
    /// The modifier for a tag without its colon ("lower", "upper", ...),
    /// ignoring ASCII case.
    pub fn from_tag(tag: &str) -> Option<Modifier> {
        const TAGS: [(&str, Modifier); 8] = [
            ("lower", Modifier::Lower),
            ("upper", Modifier::Upper),
            ("lowerfirst", Modifier::LowerFirst),
            ("upperfirst", Modifier::UpperFirst),
            ("quotewildcard", Modifier::QuoteWildcard),
            ("quoteregex", Modifier::QuoteRegex),
            ("encodeurl", Modifier::EncodeUrl),
            ("length", Modifier::Length),
        ];
        TAGS.iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(tag))
            .map(|&(_, m)| m)
    }

    /// Precedence: higher applies first.
    pub fn precedence(self) -> u8 {
        match self {
            Modifier::Lower | Modifier::Upper => 40,
            Modifier::LowerFirst | Modifier::UpperFirst => 30,
            Modifier::QuoteWildcard | Modifier::QuoteRegex => 20,
            Modifier::EncodeUrl => 15,
            Modifier::Length => 10,
        }
    }

    fn apply(self, value: &str) -> String {
        match self {
            Modifier::Lower => value.to_ascii_lowercase(),
            Modifier::Upper => value.to_ascii_uppercase(),
            Modifier::LowerFirst => map_first(value, char::to_ascii_lowercase),
            Modifier::UpperFirst => map_first(value, char::to_ascii_uppercase),
            Modifier::QuoteWildcard => quote(value, |c| matches!(c, '*' | '?' | '\\')),
            Modifier::QuoteRegex => quote(value, is_regex_special),
            Modifier::EncodeUrl => encode_url(value),
            Modifier::Length => value.chars().count().to_string(),
        }
    }
}

/// Whether two modifiers of one `set` share a precedence (the same one
/// twice included), which RFC 5229 section 4.1 makes an error.
pub fn conflicting(modifiers: &[Modifier]) -> bool {
    modifiers.iter().enumerate().any(|(i, a)| {
        modifiers[i + 1..]
            .iter()
            .any(|b| a.precedence() == b.precedence())
    })
}

/// Applies the modifiers in precedence order, highest first, whatever
/// order they were written in. Case changes touch ASCII letters only.
pub fn apply_modifiers(value: &str, modifiers: &[Modifier]) -> String {
    let mut ordered = modifiers.to_vec();
    ordered.sort();
    ordered
        .into_iter()
        .fold(value.to_owned(), |acc, m| m.apply(&acc))
}

/// `value` with its first character mapped.
fn map_first(value: &str, map: fn(&char) -> char) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(first) => std::iter::once(map(&first)).chain(chars).collect(),
        None => String::new(),
    }
}

/// `value` with a backslash before each character `special` picks.
fn quote(value: &str, special: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// POSIX extended regular expression metacharacters.
fn is_regex_special(c: char) -> bool {
    matches!(
        c,
        '.' | '[' | ']' | '\\' | '(' | ')' | '*' | '+' | '?' | '{' | '}' | '|' | '^' | '$'
    )
}

/// Percent-encodes every octet of the UTF-8 form except the URI
/// unreserved characters `ALPHA / DIGIT / "-" / "." / "_" / "~"`
/// (RFC 3986 section 2.3), with upper-case hex.
fn encode_url(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn decode(s: &str) -> String {
        decode_encoded_characters(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Expands with "company" = "ACME", "name" = "Ethelbert", a namespaced
    /// "env.host" and match variables 0 and 1; records every lookup.
    fn expand_with(s: &str, max_len: usize) -> (String, Vec<String>) {
        let vars: HashMap<&str, &str> = [
            ("company", "ACME"),
            ("name", "Ethelbert"),
            ("env.host", "mx1"),
        ]
        .into_iter()
        .collect();
        let matches = ["whole", "first"];
        let mut seen = Vec::new();
        let out = expand(s, max_len, &mut |r| {
            seen.push(format!("{r:?}"));
            match r {
                VarRef::Name(n) => vars.get(n).map(|v| (*v).to_owned()),
                VarRef::Match(i) => matches.get(i).map(|v| (*v).to_owned()),
            }
        });
        (out, seen)
    }

    fn expanded(s: &str) -> String {
        expand_with(s, 4096).0
    }

    #[test]
    fn encoded_characters_rfc5228_examples() {
        assert_eq!(decode("$${hex:24 24}"), "$$$");
        assert_eq!(decode("$${hex:40}"), "$@");
        assert_eq!(decode("${hex: 40 }"), "@");
        assert_eq!(decode("${HEX: 40}"), "@");
        assert_eq!(decode("${hex:40"), "${hex:40");
        assert_eq!(decode("${hex:400}"), "${hex:400}");
        assert_eq!(decode("${hex:4${hex:30}}"), "${hex:40}");
        assert_eq!(decode("${unicode:40}"), "@");
        assert_eq!(decode("${ unicode:40}"), "${ unicode:40}");
        assert_eq!(decode("${UNICODE:40}"), "@");
        assert_eq!(decode("${UnICoDE:0000040}"), "@");
        assert_eq!(decode("${Unicode:40}"), "@");
        assert_eq!(decode("${Unicode:Cool}"), "${Unicode:Cool}");
        assert!(decode_encoded_characters("${unicode:200000}").is_err());
        assert!(decode_encoded_characters("${Unicode:DF01}").is_err());
    }

    #[test]
    fn encoded_characters_more_cases() {
        assert_eq!(decode("dear${hex:20 24 7b 4e}ame}"), "dear ${Name}");
        assert_eq!(decode("${hex:4}"), "\u{4}");
        assert_eq!(decode("${hex:4142}"), "${hex:4142}");
        assert_eq!(decode("${hex:c3 a9}"), "é");
        assert_eq!(decode("${hex:C3}${hex:A9}"), "é");
        assert_eq!(decode("${hex:}"), "${hex:}");
        assert_eq!(decode("${hex: }"), "${hex: }");
        assert_eq!(decode("${hex:\r\n41\t42 }"), "AB");
        assert_eq!(decode("${unicode:1F600 20 e9}"), "😀 é");
        assert_eq!(decode("${unicode:10FFFF}"), "\u{10FFFF}");
        assert_eq!(decode("${unicode:0}"), "\0");
        assert_eq!(decode("${unicode:41x}"), "${unicode:41x}");
        assert_eq!(decode("${unicode:41"), "${unicode:41");
        assert_eq!(decode("${other:41}"), "${other:41}");
        assert_eq!(decode("plain"), "plain");
        assert_eq!(decode("${"), "${");
        assert_eq!(decode("$"), "$");
        let long = format!("${{unicode:{}41}}", "0".repeat(10_000));
        assert_eq!(decode(&long), "A");
        assert!(decode_encoded_characters("${unicode:1000000}").is_err());
        assert!(decode_encoded_characters("${unicode:D800}").is_err());
        assert!(decode_encoded_characters("${unicode:41 FFFFFFFFFFFF}").is_err());
        // Malformed sequences are never errors, even with big numbers.
        assert_eq!(decode("${unicode:200000"), "${unicode:200000");
        // Octets that do not make UTF-8 cannot be held in a string.
        let err = decode_encoded_characters("${hex:ff}").unwrap_err();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn expand_rfc5229_examples() {
        assert_eq!(expanded("&%${}!"), "&%${}!");
        assert_eq!(expanded("${doh!}"), "${doh!}");
        assert_eq!(expanded("${full}"), "");
        assert_eq!(expanded("${company}"), "ACME");
        assert_eq!(expanded("${BAD${Company}"), "${BADACME");
        assert_eq!(
            expanded("${President, ${Company} Inc.}"),
            "${President, ACME Inc.}"
        );
        assert_eq!(expanded("dear ${Name}"), "dear Ethelbert");
    }

    #[test]
    fn expand_passes_lower_case_names_and_match_indexes() {
        let (out, seen) = expand_with("${NAME}:${0}:${01}:${2}:${Env.Host}", 4096);
        assert_eq!(out, "Ethelbert:whole:first::mx1");
        assert_eq!(
            seen,
            [
                "Name(\"name\")",
                "Match(0)",
                "Match(1)",
                "Match(2)",
                "Name(\"env.host\")"
            ]
        );
        let (_, seen) = expand_with("${99999999999999999999999999}", 4096);
        assert_eq!(seen, [format!("Match({})", usize::MAX)]);
    }

    #[test]
    fn expand_leaves_invalid_references() {
        for s in [
            "${1a}", "${a.}", "${.a}", "${a..b}", "${1.a}", "${a b}", "${a", "${", "$", "${-}",
            "${é}", "$ {a}",
        ] {
            assert_eq!(expanded(s), s, "{s:?}");
        }
        // Sub-namespaces may be numbers.
        let (_, seen) = expand_with("${a.1.b_2}", 4096);
        assert_eq!(seen, ["Name(\"a.1.b_2\")"]);
        // One pass: an expanded value is not expanded again.
        let (out, _) = expand_with("${company}{x}", 4096);
        assert_eq!(out, "ACME{x}");
    }

    #[test]
    fn expand_is_bounded() {
        assert_eq!(expand_with("${company}${company}", 6).0, "ACMEAC");
        assert_eq!(expand_with("abcdef", 3).0, "abc");
        assert_eq!(expand_with("é${company}", 1).0, "");
        assert_eq!(expand_with("aé", 2).0, "a");
        assert_eq!(expand_with("${company}", 0).0, "");
        let mut calls = 0;
        let big = "${x}".repeat(1000);
        let out = expand(&big, 10, &mut |_| {
            calls += 1;
            Some("0123456789".repeat(100))
        });
        assert_eq!(out, "0123456789");
        assert_eq!(calls, 1, "stops looking up once full");
    }

    #[test]
    fn references_are_detected() {
        assert!(has_references("${a}"));
        assert!(has_references("x ${1} y"));
        assert!(has_references("${bad ${good}"));
        assert!(has_references("${ns.name}"));
        assert!(!has_references("plain"));
        assert!(!has_references("${}"));
        assert!(!has_references("${doh!}"));
        assert!(!has_references("$ {a}"));
        assert!(!has_references("${a"));
    }

    #[test]
    fn set_names() {
        assert!(valid_name("a"));
        assert!(valid_name("_x9"));
        assert!(valid_name("First_Name"));
        assert!(!valid_name(""));
        assert!(!valid_name("1"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name("${a}"));
    }

    #[test]
    fn modifier_tags_and_precedence() {
        assert_eq!(Modifier::from_tag("lower"), Some(Modifier::Lower));
        assert_eq!(Modifier::from_tag("UPPER"), Some(Modifier::Upper));
        assert_eq!(Modifier::from_tag("lowerFirst"), Some(Modifier::LowerFirst));
        assert_eq!(Modifier::from_tag("upperfirst"), Some(Modifier::UpperFirst));
        assert_eq!(
            Modifier::from_tag("quotewildcard"),
            Some(Modifier::QuoteWildcard)
        );
        assert_eq!(Modifier::from_tag("quoteregex"), Some(Modifier::QuoteRegex));
        assert_eq!(Modifier::from_tag("encodeurl"), Some(Modifier::EncodeUrl));
        assert_eq!(Modifier::from_tag("length"), Some(Modifier::Length));
        assert_eq!(Modifier::from_tag(":lower"), None);
        assert_eq!(Modifier::from_tag("len"), None);
        let all = [
            Modifier::Lower,
            Modifier::Upper,
            Modifier::LowerFirst,
            Modifier::UpperFirst,
            Modifier::QuoteWildcard,
            Modifier::QuoteRegex,
            Modifier::EncodeUrl,
            Modifier::Length,
        ];
        let precedences: Vec<u8> = all.iter().map(|m| m.precedence()).collect();
        assert_eq!(precedences, [40, 40, 30, 30, 20, 20, 15, 10]);
        // Declaration order is application order.
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn modifiers_rfc5229_examples() {
        let a = "juMBlEd lETteRS";
        assert_eq!(apply_modifiers(a, &[]), a);
        assert_eq!(apply_modifiers(a, &[Modifier::Length]), "15");
        assert_eq!(apply_modifiers(a, &[Modifier::Lower]), "jumbled letters");
        assert_eq!(
            apply_modifiers(a, &[Modifier::UpperFirst]),
            "JuMBlEd lETteRS"
        );
        assert_eq!(
            apply_modifiers(a, &[Modifier::UpperFirst, Modifier::Lower]),
            "Jumbled letters"
        );
        assert_eq!(
            apply_modifiers("Rock*", &[Modifier::QuoteWildcard]),
            "Rock\\*"
        );
    }

    #[test]
    fn modifiers_apply_in_precedence_order() {
        // :length last whatever the written order.
        assert_eq!(
            apply_modifiers("a*b", &[Modifier::Length, Modifier::QuoteWildcard]),
            "4"
        );
        // :upper before :lowerfirst.
        assert_eq!(
            apply_modifiers("hello", &[Modifier::LowerFirst, Modifier::Upper]),
            "hELLO"
        );
        // :quotewildcard before :encodeurl.
        assert_eq!(
            apply_modifiers("a?", &[Modifier::EncodeUrl, Modifier::QuoteWildcard]),
            "a%5C%3F"
        );
        // :encodeurl before :length.
        assert_eq!(
            apply_modifiers(" ", &[Modifier::Length, Modifier::EncodeUrl]),
            "3"
        );
    }

    #[test]
    fn modifier_details() {
        assert_eq!(apply_modifiers("ÉTÉ Ab", &[Modifier::Lower]), "ÉtÉ ab");
        assert_eq!(apply_modifiers("été", &[Modifier::UpperFirst]), "été");
        assert_eq!(apply_modifiers("", &[Modifier::UpperFirst]), "");
        assert_eq!(apply_modifiers("ABC", &[Modifier::LowerFirst]), "aBC");
        assert_eq!(apply_modifiers("日本", &[Modifier::Length]), "2");
        assert_eq!(
            apply_modifiers("a\\b?c*", &[Modifier::QuoteWildcard]),
            "a\\\\b\\?c\\*"
        );
        assert_eq!(
            apply_modifiers("1.5+[x](y)|^$?*{2}\\", &[Modifier::QuoteRegex]),
            "1\\.5\\+\\[x\\]\\(y\\)\\|\\^\\$\\?\\*\\{2\\}\\\\"
        );
        assert_eq!(
            apply_modifiers("a b/é~-._", &[Modifier::EncodeUrl]),
            "a%20b%2F%C3%A9~-._"
        );
    }

    #[test]
    fn quoteregex_output_matches_literally() {
        let text = "price: $5.00 (approx.) [x]?";
        let quoted = apply_modifiers(text, &[Modifier::QuoteRegex]);
        let re = regex::Regex::new(&format!("^{quoted}$")).expect("valid regex");
        assert!(re.is_match(text));
        assert!(!re.is_match("price: $5x00 (approx.) [x]?"));
    }

    #[test]
    fn conflicts() {
        assert!(!conflicting(&[]));
        assert!(!conflicting(&[Modifier::Lower, Modifier::UpperFirst]));
        assert!(conflicting(&[Modifier::Lower, Modifier::Upper]));
        assert!(conflicting(&[Modifier::Length, Modifier::Length]));
        assert!(conflicting(&[
            Modifier::QuoteRegex,
            Modifier::Length,
            Modifier::QuoteWildcard
        ]));
        assert!(!conflicting(&[
            Modifier::Upper,
            Modifier::LowerFirst,
            Modifier::QuoteRegex,
            Modifier::EncodeUrl,
            Modifier::Length
        ]));
    }
}
