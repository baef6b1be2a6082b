//! The IMAP command parser: bytes of one complete command, literals
//! inline, in; a [`Tagged`] command or an [`Invalid`] with a reason a
//! person can read out. No I/O.
//!
//! The session's reader gathers a command's lines and literals (`{n}`,
//! `{n+}`, `~{n}`) into one buffer, each literal's octets right after its
//! marker's CRLF, exactly as they came over the wire; this parser walks
//! that buffer. [`Parser`]'s primitives (atoms, strings, literals, sets,
//! dates) are here; the grammar of the verbs is in `commands`, and that of
//! SEARCH, SORT, THREAD and FETCH in `search`.

use stratus_core::time::civil_day;

use super::command::*;

mod commands;
mod search;
#[cfg(test)]
mod tests;

/// Parses one complete command (its last line's CRLF included).
pub fn parse(input: &[u8]) -> Result<Tagged, Invalid> {
    let mut p = Parser { buf: input, pos: 0 };
    let tag = match p.tag() {
        Ok(tag) => tag,
        Err(reason) => return Err(Invalid { tag: None, reason }),
    };
    let bad = |reason: String| Invalid {
        tag: Some(tag.clone()),
        reason,
    };
    p.sp()
        .map_err(|_| bad("expected a command after the tag".into()))?;
    let command = p.command().map_err(bad)?;
    p.crlf().map_err(bad)?;
    Ok(Tagged {
        tag: tag.clone(),
        command,
    })
}

/// A body section as written inside `BODY[...]` (`1.2.MIME`,
/// `HEADER.FIELDS (TO)`), for IMAP URLs' `;SECTION=`.
pub fn parse_section(text: &[u8]) -> Result<Section, String> {
    let mut buf = Vec::with_capacity(text.len() + 2);
    buf.push(b'[');
    buf.extend_from_slice(text);
    buf.push(b']');
    let mut p = Parser { buf: &buf, pos: 0 };
    let section = p.section()?;
    if !p.at_end() {
        return Err(format!("unexpected {}", p.here()));
    }
    Ok(section)
}

pub(super) type PResult<T> = Result<T, String>;

/// The longest keyword STORE and APPEND take.
pub const MAX_KEYWORD_LEN: usize = 128;

pub(super) struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected `{}` {}", b as char, self.here()))
        }
    }

    /// Where the parser is, for error messages.
    fn here(&self) -> String {
        match self.peek() {
            None => "at the end of the command".into(),
            Some(b'\r' | b'\n') => "at the end of the line".into(),
            Some(_) => {
                let mut end = (self.pos + 20).min(self.buf.len());
                if let Some(i) = self.rest().iter().position(|&b| b == b'\r' || b == b'\n') {
                    end = end.min(self.pos + i);
                }
                format!("at `{}`", String::from_utf8_lossy(&self.buf[self.pos..end]))
            }
        }
    }

    fn sp(&mut self) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else {
            Err(format!("expected a space {}", self.here()))
        }
    }

    fn crlf(&mut self) -> PResult<()> {
        if self.rest() == b"\r\n" || self.rest() == b"\n" {
            self.pos = self.buf.len();
            Ok(())
        } else {
            Err(format!("unexpected text {}", self.here()))
        }
    }

    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    fn tag(&mut self) -> PResult<String> {
        let tag = self.take_while(is_tag_char);
        if tag.is_empty() {
            return Err("a command must start with a tag".into());
        }
        if tag.len() > 64 {
            return Err("the tag is longer than 64 characters".into());
        }
        Ok(String::from_utf8_lossy(tag).into_owned())
    }

    fn atom(&mut self) -> PResult<String> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(format!("expected an atom {}", self.here()));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    /// A keyword, compared without regard to case.
    fn keyword(&mut self) -> PResult<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    fn number(&mut self) -> PResult<u32> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("expected a number {}", self.here()))
    }

    fn number64(&mut self) -> PResult<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("expected a number {}", self.here()))
    }

    fn nz_number(&mut self) -> PResult<u32> {
        match self.number()? {
            0 => Err("0 is not a valid message number or UID".into()),
            n => Ok(n),
        }
    }

    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("only \\\" and \\\\ may be escaped".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}`, `{n+}` or (with `binary`) `~{n}`, its CRLF and its octets.
    fn literal(&mut self, binary: bool) -> PResult<Vec<u8>> {
        if binary {
            self.eat(b'~');
        }
        self.expect(b'{')?;
        let n = self.number64()?;
        self.eat(b'+');
        self.expect(b'}')?;
        if !self.rest().starts_with(b"\r\n") {
            return Err("a literal's size must end the line".into());
        }
        self.pos += 2;
        let n = usize::try_from(n).map_err(|_| "literal too large".to_string())?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err("the literal is shorter than announced".into());
        };
        let data = self.buf[self.pos..end].to_vec();
        self.pos = end;
        if !binary && data.contains(&0) {
            return Err("NUL is not allowed in a literal; use BINARY".into());
        }
        Ok(data)
    }

    fn string(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false),
            _ => Err(format!("expected a string {}", self.here())),
        }
    }

    fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let s = self.take_while(|b| is_astring_char(b) || b >= 0x80);
                if s.is_empty() {
                    Err(format!("expected a string {}", self.here()))
                } else {
                    Ok(s.to_vec())
                }
            }
        }
    }

    fn astring_utf8(&mut self) -> PResult<String> {
        String::from_utf8(self.astring()?).map_err(|_| "the string is not valid UTF-8".into())
    }

    fn nil(&mut self) -> bool {
        if self.rest().len() >= 3 && self.rest()[..3].eq_ignore_ascii_case(b"NIL") {
            let after = self.rest().get(3).copied();
            if !after.is_some_and(is_atom_char) {
                self.pos += 3;
                return true;
            }
        }
        false
    }

    fn nstring(&mut self) -> PResult<Option<String>> {
        if self.nil() {
            return Ok(None);
        }
        let s = self.string()?;
        Ok(Some(String::from_utf8_lossy(&s).into_owned()))
    }

    fn mailbox(&mut self) -> PResult<Vec<u8>> {
        self.astring()
    }

    /// A LIST pattern: an astring, or atom characters with `%` and `*`.
    fn list_mailbox(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let s =
                    self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*' || b >= 0x80);
                if s.is_empty() {
                    Err(format!("expected a mailbox pattern {}", self.here()))
                } else {
                    Ok(s.to_vec())
                }
            }
        }
    }

    fn seq_num(&mut self) -> PResult<SeqNum> {
        if self.eat(b'*') {
            Ok(SeqNum::Last)
        } else {
            Ok(SeqNum::Value(self.nz_number()?))
        }
    }

    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let a = self.seq_num()?;
            let b = if self.eat(b':') { self.seq_num()? } else { a };
            ranges.push((a, b));
            if ranges.len() > MAX_ITEMS {
                return Err("sequence set too long".into());
            }
            if !self.eat(b',') {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    /// A flag: `\Word` or a keyword atom.
    fn flag(&mut self) -> PResult<String> {
        let backslash = self.eat(b'\\');
        let atom = self.atom()?;
        Ok(if backslash { format!("\\{atom}") } else { atom })
    }

    /// The flags of messages (STORE, APPEND): keywords, and of the flags
    /// that start with `\` only the system flags, which are all there are
    /// (RFC 9051 §2.3.2: clients cannot make new ones). `\Recent` passes,
    /// for the command to refuse in its own words.
    fn message_flags(&mut self, parens_optional: bool) -> PResult<Vec<String>> {
        const SYSTEM: [&str; 6] = [
            "\\Seen",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Draft",
            "\\Recent",
        ];
        let flags = self.flag_list(parens_optional)?;
        for flag in &flags {
            // Every keyword is kept in its mailbox's record and sent in
            // FLAGS: a sane length keeps those small.
            if flag.len() > MAX_KEYWORD_LEN {
                return Err(format!("a keyword is at most {MAX_KEYWORD_LEN} characters"));
            }
            if flag.starts_with('\\') && !SYSTEM.iter().any(|s| s.eq_ignore_ascii_case(flag)) {
                return Err(format!(
                    "{flag} is not a system flag (\\Seen \\Answered \\Flagged \\Deleted \\Draft); keywords do not start with \\"
                ));
            }
        }
        Ok(flags)
    }

    /// `(flag flag ...)`, or (for STORE) flags without parentheses.
    fn flag_list(&mut self, parens_optional: bool) -> PResult<Vec<String>> {
        let parens = self.eat(b'(');
        if !parens && !parens_optional {
            return Err(format!("expected a flag list {}", self.here()));
        }
        let mut flags = Vec::new();
        loop {
            if parens && self.eat(b')') {
                return Ok(flags);
            }
            if !flags.is_empty() {
                if !parens && self.at_end() {
                    return Ok(flags);
                }
                self.sp()?;
            }
            flags.push(self.flag()?);
            if flags.len() > MAX_ITEMS {
                return Err("too many flags".into());
            }
            if !parens && self.at_end() {
                return Ok(flags);
            }
        }
    }

    /// `(item item ...)` of atoms, upper-cased; `()` allowed.
    fn atom_list(&mut self) -> PResult<Vec<String>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(out);
            }
            if !out.is_empty() {
                self.sp()?;
            }
            out.push(self.keyword()?);
            if out.len() > MAX_ITEMS {
                return Err("list too long".into());
            }
        }
    }

    fn date(&mut self) -> PResult<i64> {
        let quoted = self.eat(b'"');
        let day = self.number()?;
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.number()?;
        if quoted {
            self.expect(b'"')?;
        }
        civil_day(year as i64, month, day).ok_or_else(|| "no such date".into())
    }

    fn month(&mut self) -> PResult<u32> {
        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        let rest = self.rest();
        if rest.len() >= 3 {
            let name = String::from_utf8_lossy(&rest[..3]).to_ascii_uppercase();
            if let Some(i) = MONTHS.iter().position(|m| *m == name) {
                self.pos += 3;
                return Ok(i as u32 + 1);
            }
        }
        Err(format!("expected a month name {}", self.here()))
    }

    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"` (the day may be space-padded).
    fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"')?;
        self.eat(b' ');
        let day = self.number()?;
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.number()?;
        self.sp()?;
        let hour = self.two_digits()?;
        self.expect(b':')?;
        let minute = self.two_digits()?;
        self.expect(b':')?;
        let second = self.two_digits()?;
        self.sp()?;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err("expected a zone like +0100".into()),
        };
        self.pos += 1;
        let zh = self.two_digits()?;
        let zm = self.two_digits()?;
        self.expect(b'"')?;
        if hour > 23 || minute > 59 || second > 60 || zm > 59 {
            return Err("no such time".into());
        }
        let days = civil_day(year as i64, month, day).ok_or("no such date")?;
        let zone = sign * (zh as i32 * 60 + zm as i32);
        let local = days * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64;
        Ok(DateTime {
            timestamp: local - zone as i64 * 60,
            zone,
        })
    }

    fn two_digits(&mut self) -> PResult<u32> {
        let rest = self.rest();
        if rest.len() >= 2 && rest[0].is_ascii_digit() && rest[1].is_ascii_digit() {
            let n = u32::from(rest[0] - b'0') * 10 + u32::from(rest[1] - b'0');
            self.pos += 2;
            Ok(n)
        } else {
            Err(format!("expected two digits {}", self.here()))
        }
    }
}
