//! The POP3 wire layer, without I/O: commands parsed from a line, the
//! SASL PLAIN message, and the byte filters of a multi-line answer
//! (dot-stuffing, and TOP's "header plus n lines").

/// One client command (RFC 1939, 2449, 2595, 5034).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The rest of the line: passwords may contain spaces.
    Pass(String),
    /// `AUTH` alone lists mechanisms; `AUTH mech [initial-response]`.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Capa,
    Stls,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top(u32, u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Apop,
    /// A keyword we do not know.
    Unknown(String),
}

/// Why a line is not a valid command; the text goes after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// Parses one command line (its CRLF or LF may still be attached).
pub fn parse(line: &[u8]) -> Result<Command, Invalid> {
    let line = strip_eol(line);
    let line = std::str::from_utf8(line).map_err(|_| Invalid("command is not UTF-8"))?;
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(Invalid("control character in command"));
    }
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    if keyword.is_empty() {
        return Err(Invalid("empty command"));
    }
    let args: Vec<&str> = rest.map_or_else(Vec::new, |r| r.split(' ').collect());
    if args.iter().any(|a| a.is_empty()) && !keyword.eq_ignore_ascii_case("PASS") {
        return Err(Invalid("arguments are separated by one space"));
    }
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(Invalid("this command takes no argument"))
        }
    };
    match keyword.to_ascii_uppercase().as_str() {
        "USER" => match args.as_slice() {
            [name] => Ok(Command::User((*name).to_string())),
            _ => Err(Invalid("usage: USER name")),
        },
        "PASS" => match rest {
            Some(pw) if !pw.is_empty() => Ok(Command::Pass(pw.to_string())),
            _ => Err(Invalid("usage: PASS password")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: None,
            }),
            [m, ir] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: Some((*ir).to_string()),
            }),
            _ => Err(Invalid("usage: AUTH mechanism [initial-response]")),
        },
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "LIST" => optional_number(&args).map(Command::List),
        "UIDL" => optional_number(&args).map(Command::Uidl),
        "RETR" => one_number(&args).map(Command::Retr),
        "DELE" => one_number(&args).map(Command::Dele),
        "TOP" => match args.as_slice() {
            [n, k] => Ok(Command::Top(number(n)?, lines(k)?)),
            _ => Err(Invalid("usage: TOP msg lines")),
        },
        "APOP" => Ok(Command::Apop),
        other => Ok(Command::Unknown(other.chars().take(40).collect())),
    }
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A message number: 1 or more.
fn number(s: &str) -> Result<u32, Invalid> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(Invalid("message number must be a positive whole number")),
    }
}

fn lines(s: &str) -> Result<u32, Invalid> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid("line count must be a whole number"));
    }
    // A huge count just means "the whole body".
    Ok(s.parse::<u32>().unwrap_or(u32::MAX))
}

fn optional_number(args: &[&str]) -> Result<Option<u32>, Invalid> {
    match args {
        [] => Ok(None),
        [n] => number(n).map(Some),
        _ => Err(Invalid("too many arguments")),
    }
}

fn one_number(args: &[&str]) -> Result<u32, Invalid> {
    match args {
        [n] => number(n),
        _ => Err(Invalid("expected one message number")),
    }
}

/// SASL PLAIN for AUTH (RFC 5034), as every protocol decodes it.
pub fn sasl_plain(b64: &str) -> Result<(String, String), Invalid> {
    crate::sasl::sasl_plain(b64).map_err(Invalid)
}

/// Dot-stuffs a message for a multi-line answer (RFC 1939 §3), fed in
/// chunks of any size: a line starting with `.` gets another `.`, a bare
/// LF becomes CRLF, and [`DotStuffer::finish`] ends the last line and adds
/// the terminating `.` line.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    after_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            after_cr: false,
        }
    }
}

impl DotStuffer {
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 8);
        for &b in input {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            if b == b'\n' && !self.after_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
            self.after_cr = b == b'\r';
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if !self.after_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
        *self = DotStuffer::default();
    }
}

/// What TOP sends of a message: the header, the blank line after it, and
/// at most `lines` lines of the body (RFC 1939 §7). Fed in chunks; says
/// how much of each chunk to send and when the rest is not needed.
#[derive(Debug, Clone)]
pub struct TopFilter {
    in_header: bool,
    lines_left: u64,
    /// Bytes of the current line seen so far, CR not counted.
    line_len: usize,
    done: bool,
}

impl TopFilter {
    pub fn new(lines: u32) -> Self {
        TopFilter {
            in_header: true,
            lines_left: u64::from(lines),
            line_len: 0,
            done: false,
        }
    }

    /// True once nothing more is to be sent.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The part of `chunk` to send.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        if self.done {
            return &[];
        }
        if !self.in_header && self.lines_left == 0 {
            self.done = true;
            return &[];
        }
        for (i, &b) in chunk.iter().enumerate() {
            if b != b'\n' {
                if b != b'\r' {
                    self.line_len += 1;
                }
                continue;
            }
            let empty = self.line_len == 0;
            self.line_len = 0;
            if self.in_header {
                if empty {
                    self.in_header = false;
                    if self.lines_left == 0 {
                        self.done = true;
                        return &chunk[..=i];
                    }
                }
            } else {
                self.lines_left -= 1;
                if self.lines_left == 0 {
                    self.done = true;
                    return &chunk[..=i];
                }
            }
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::base64_decode;

    #[test]
    fn commands_parse() {
        let table: &[(&[u8], Result<Command, Invalid>)] = &[
            (
                b"user alice@example.test\r\n",
                Ok(Command::User("alice@example.test".into())),
            ),
            (
                b"PASS pass with spaces\r\n",
                Ok(Command::Pass("pass with spaces".into())),
            ),
            (b"PASS  lead\r\n", Ok(Command::Pass(" lead".into()))),
            (b"PASS\r\n", Err(Invalid("usage: PASS password"))),
            (
                b"AUTH\r\n",
                Ok(Command::Auth {
                    mechanism: None,
                    initial: None,
                }),
            ),
            (
                b"auth plain\r\n",
                Ok(Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: None,
                }),
            ),
            (
                b"AUTH PLAIN AGFAYg==\r\n",
                Ok(Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: Some("AGFAYg==".into()),
                }),
            ),
            (b"capa\n", Ok(Command::Capa)),
            (b"STAT\r\n", Ok(Command::Stat)),
            (
                b"STAT 1\r\n",
                Err(Invalid("this command takes no argument")),
            ),
            (b"LIST\r\n", Ok(Command::List(None))),
            (b"LIST 3\r\n", Ok(Command::List(Some(3)))),
            (
                b"LIST 0\r\n",
                Err(Invalid("message number must be a positive whole number")),
            ),
            (
                b"LIST -1\r\n",
                Err(Invalid("message number must be a positive whole number")),
            ),
            (
                b"LIST +1\r\n",
                Err(Invalid("message number must be a positive whole number")),
            ),
            (
                b"LIST 99999999999\r\n",
                Err(Invalid("message number must be a positive whole number")),
            ),
            (b"UIDL 2\r\n", Ok(Command::Uidl(Some(2)))),
            (b"RETR\r\n", Err(Invalid("expected one message number"))),
            (b"RETR 1 2\r\n", Err(Invalid("expected one message number"))),
            (b"TOP 1 0\r\n", Ok(Command::Top(1, 0))),
            (b"TOP 1 99999999999\r\n", Ok(Command::Top(1, u32::MAX))),
            (b"TOP 1\r\n", Err(Invalid("usage: TOP msg lines"))),
            (b"DELE 7\r\n", Ok(Command::Dele(7))),
            (
                b"LIST  1\r\n",
                Err(Invalid("arguments are separated by one space")),
            ),
            (b"\r\n", Err(Invalid("empty command"))),
            (b"XYZZY\r\n", Ok(Command::Unknown("XYZZY".into()))),
            (
                b"RETR \x001\r\n",
                Err(Invalid("control character in command")),
            ),
            (b"\xff\r\n", Err(Invalid("command is not UTF-8"))),
            (b"QUIT", Ok(Command::Quit)),
        ];
        for (line, expected) in table {
            assert_eq!(&parse(line), expected, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn sasl_plain_decodes() {
        // "\0alice@x\0secret"
        assert_eq!(
            sasl_plain("AGFsaWNlQHgAc2VjcmV0"),
            Ok(("alice@x".into(), "secret".into()))
        );
        // "alice@x\0alice@x\0pw"
        assert_eq!(
            sasl_plain("YWxpY2VAeABhbGljZUB4AHB3"),
            Ok(("alice@x".into(), "pw".into()))
        );
        // "bob\0alice@x\0pw": proxy login refused.
        assert!(sasl_plain("Ym9iAGFsaWNlQHgAcHc=").is_err());
        assert!(sasl_plain("not base64!").is_err());
        assert!(sasl_plain("YWJj").is_err(), "no NULs");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("YQ==YQ==").is_none());
        assert!(base64_decode("Y===").is_none());
    }

    fn stuff_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            s.push(chunk, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn dot_stuffing_works_across_any_chunking() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"a\r\n.b\r\n..c\r\n.\r\n",
                b"a\r\n..b\r\n...c\r\n..\r\n.\r\n",
            ),
            (b".start", b"..start\r\n.\r\n"),
            (b"bare\nlf\n.x", b"bare\r\nlf\r\n..x\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"no dot. here\r\n", b"no dot. here\r\n.\r\n"),
            (b"ends in cr\r", b"ends in cr\r\n.\r\n"),
        ];
        for (input, expected) in cases {
            for piece in [1, 2, 3, 7, 1000] {
                assert_eq!(
                    stuff_in_pieces(input, piece),
                    *expected,
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    fn top(input: &[u8], lines: u32, piece: usize) -> Vec<u8> {
        let mut f = TopFilter::new(lines);
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            out.extend_from_slice(f.take(chunk));
            if f.done() {
                break;
            }
        }
        out
    }

    #[test]
    fn top_sends_the_header_and_n_body_lines() {
        let msg = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree\r\n";
        for piece in [1, 2, 5, 1000] {
            assert_eq!(top(msg, 0, piece), b"A: 1\r\nB: 2\r\n\r\n");
            assert_eq!(top(msg, 2, piece), b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n");
            assert_eq!(top(msg, 10, piece), msg);
            // No body separator: everything is header.
            assert_eq!(top(b"A: 1\r\nB: 2", 1, piece), b"A: 1\r\nB: 2");
            // Bare LF endings count as line ends too.
            assert_eq!(top(b"A: 1\n\nx\ny\n", 1, piece), b"A: 1\n\nx\n");
        }
    }
}
