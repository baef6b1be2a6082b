//! The ManageSieve wire layer (RFC 5804), without I/O: a command's bytes
//! (its line, with any literals `{n+}` already read into it by the
//! session) parsed into a [`Command`], and the strings and responses the
//! server writes.
//!
//! Arguments are atoms, numbers, quoted strings (`"..."` with `\"` and
//! `\\`) or literals (`{n+}` CRLF and n octets; `{n}` is read the same
//! way, as clients send it too). Keywords are case-insensitive.

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    StartTls,
    Logout,
    Capability,
    HaveSpace {
        name: String,
        size: u64,
    },
    PutScript {
        name: String,
        script: Vec<u8>,
    },
    ListScripts,
    /// The empty name deactivates.
    SetActive(String),
    GetScript(String),
    DeleteScript(String),
    RenameScript(String, String),
    CheckScript(Vec<u8>),
    Noop(Option<String>),
    Unauthenticate,
}

/// Why bytes are not a command; the text goes into a `NO` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(text: impl Into<String>) -> Invalid {
    Invalid(text.into())
}

/// The literal a line announces at its end (`{n+}` or `{n}` before the
/// line ending): its length. The session reads that many octets, then the
/// rest of the command, before parsing.
pub fn literal_at_end(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(b"}")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Atom(String),
    Number(u64),
    String(Vec<u8>),
}

/// Parses one whole command.
pub fn parse(input: &[u8]) -> Result<Command, Invalid> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let input = input.strip_suffix(b"\r").unwrap_or(input);
    let mut args = Reader { input, at: 0 }.args()?;
    if args.is_empty() {
        return Err(invalid("empty command"));
    }
    let keyword = match args.remove(0) {
        Arg::Atom(a) => a.to_ascii_uppercase(),
        _ => return Err(invalid("a command starts with its name")),
    };
    let text = |a: Arg, what: &str| -> Result<String, Invalid> {
        match a {
            Arg::String(s) => {
                String::from_utf8(s).map_err(|_| invalid(format!("{what} is not UTF-8")))
            }
            _ => Err(invalid(format!("{what} must be a string"))),
        }
    };
    let bytes = |a: Arg, what: &str| -> Result<Vec<u8>, Invalid> {
        match a {
            Arg::String(s) => Ok(s),
            _ => Err(invalid(format!("{what} must be a string"))),
        }
    };
    let mut it = args.into_iter();
    let command = match keyword.as_str() {
        "AUTHENTICATE" => {
            let mechanism = text(
                it.next()
                    .ok_or_else(|| invalid("AUTHENTICATE needs a mechanism"))?,
                "the mechanism",
            )?
            .to_ascii_uppercase();
            let initial = it
                .next()
                .map(|a| text(a, "the initial response"))
                .transpose()?;
            Command::Authenticate { mechanism, initial }
        }
        "STARTTLS" => Command::StartTls,
        "LOGOUT" => Command::Logout,
        "CAPABILITY" => Command::Capability,
        "HAVESPACE" => {
            let name = text(
                it.next()
                    .ok_or_else(|| invalid("HAVESPACE needs a script name"))?,
                "the script name",
            )?;
            let size = match it.next() {
                Some(Arg::Number(n)) => n,
                _ => return Err(invalid("HAVESPACE needs a size")),
            };
            Command::HaveSpace { name, size }
        }
        "PUTSCRIPT" => {
            let name = text(
                it.next()
                    .ok_or_else(|| invalid("PUTSCRIPT needs a script name"))?,
                "the script name",
            )?;
            let script = bytes(
                it.next()
                    .ok_or_else(|| invalid("PUTSCRIPT needs a script"))?,
                "the script",
            )?;
            Command::PutScript { name, script }
        }
        "LISTSCRIPTS" => Command::ListScripts,
        "SETACTIVE" | "GETSCRIPT" | "DELETESCRIPT" => {
            let name = text(
                it.next()
                    .ok_or_else(|| invalid(format!("{keyword} needs a script name")))?,
                "the script name",
            )?;
            match keyword.as_str() {
                "SETACTIVE" => Command::SetActive(name),
                "GETSCRIPT" => Command::GetScript(name),
                _ => Command::DeleteScript(name),
            }
        }
        "RENAMESCRIPT" => {
            let mut name = || -> Result<String, Invalid> {
                text(
                    it.next()
                        .ok_or_else(|| invalid("RENAMESCRIPT needs two script names"))?,
                    "the script name",
                )
            };
            let from = name()?;
            let to = name()?;
            Command::RenameScript(from, to)
        }
        "CHECKSCRIPT" => Command::CheckScript(bytes(
            it.next()
                .ok_or_else(|| invalid("CHECKSCRIPT needs a script"))?,
            "the script",
        )?),
        "NOOP" => Command::Noop(it.next().map(|a| text(a, "the tag")).transpose()?),
        "UNAUTHENTICATE" => Command::Unauthenticate,
        _ => return Err(invalid(format!("unknown command {keyword}"))),
    };
    if it.next().is_some() {
        return Err(invalid(format!("too many arguments for {keyword}")));
    }
    Ok(command)
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn args(&mut self) -> Result<Vec<Arg>, Invalid> {
        let mut out = Vec::new();
        loop {
            while self.input.get(self.at) == Some(&b' ') {
                self.at += 1;
            }
            let Some(&b) = self.input.get(self.at) else {
                return Ok(out);
            };
            if out.len() >= 8 {
                return Err(invalid("too many arguments"));
            }
            out.push(match b {
                b'"' => self.quoted()?,
                b'{' => self.literal()?,
                b'0'..=b'9' => self.number()?,
                b if b.is_ascii_alphabetic() => self.atom(),
                _ => return Err(invalid("unexpected character in command")),
            });
            match self.input.get(self.at) {
                None | Some(b' ') => {}
                Some(_) => return Err(invalid("arguments are separated by spaces")),
            }
        }
    }

    fn atom(&mut self) -> Arg {
        let start = self.at;
        while self
            .input
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            self.at += 1;
        }
        Arg::Atom(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    fn number(&mut self) -> Result<Arg, Invalid> {
        let start = self.at;
        while self.input.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.input[start..self.at]).unwrap_or("");
        digits
            .parse()
            .map(Arg::Number)
            .map_err(|_| invalid("number too large"))
    }

    fn quoted(&mut self) -> Result<Arg, Invalid> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.input.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Arg::String(out));
                }
                Some(b'\\') => match self.input.get(self.at + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push(c);
                        self.at += 2;
                    }
                    _ => return Err(invalid("in a quoted string, \\ escapes only \" and \\")),
                },
                Some(b'\r' | b'\n' | 0) => {
                    return Err(invalid("a quoted string cannot hold CR, LF or NUL"));
                }
                Some(&c) => {
                    out.push(c);
                    self.at += 1;
                }
                None => return Err(invalid("quoted string not closed")),
            }
        }
    }

    fn literal(&mut self) -> Result<Arg, Invalid> {
        let rest = &self.input[self.at..];
        let close = rest
            .iter()
            .position(|&b| b == b'}')
            .ok_or_else(|| invalid("literal not closed with }"))?;
        let spec = &rest[1..close];
        let spec = spec.strip_suffix(b"+").unwrap_or(spec);
        let n: usize = std::str::from_utf8(spec)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("a literal's length is a number"))?;
        let after = &rest[close + 1..];
        let data_start: usize = if after.starts_with(b"\r\n") {
            2
        } else if after.starts_with(b"\n") {
            1
        } else {
            return Err(invalid("a literal's length ends its line"));
        };
        let end = data_start
            .checked_add(n)
            .ok_or_else(|| invalid("literal shorter than announced"))?;
        let data = after
            .get(data_start..end)
            .ok_or_else(|| invalid("literal shorter than announced"))?;
        self.at += close + 1 + data_start + n;
        Ok(Arg::String(data.to_vec()))
    }
}

/// A client's answer to a SASL challenge: one string (quoted or
/// literal); `None` when it is `"*"`, which cancels (RFC 5804 2.1).
pub fn sasl_response(input: &[u8]) -> Result<Option<String>, Invalid> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let input = input.strip_suffix(b"\r").unwrap_or(input);
    let mut args = Reader { input, at: 0 }.args()?;
    match (args.pop(), args.is_empty()) {
        (Some(Arg::String(s)), true) => {
            let s = String::from_utf8(s).map_err(|_| invalid("the response is not UTF-8"))?;
            Ok((s != "*").then_some(s))
        }
        _ => Err(invalid("a SASL response is one string")),
    }
}

/// `s` as a ManageSieve string: quoted when it can be, a literal when it
/// holds CR, LF, NUL or is long.
pub fn string(s: &str) -> String {
    if s.len() <= 1024 && !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    } else {
        format!("{{{}}}\r\n{s}", s.len())
    }
}

/// A response line: `OK`, `NO` or `BYE`, an optional response code
/// (`(QUOTA/MAXSIZE)`), and human-readable text.
pub fn response(kind: &str, code: Option<&str>, text: &str) -> String {
    let mut out = kind.to_string();
    if let Some(code) = code {
        out.push_str(" (");
        out.push_str(code);
        out.push(')');
    }
    if !text.is_empty() {
        out.push(' ');
        out.push_str(&string(text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_with_quoted_strings_and_literals() {
        assert_eq!(
            parse(b"authenticate \"plain\" \"AGFsaWNlAHB3\"\r\n").unwrap(),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some("AGFsaWNlAHB3".into())
            }
        );
        assert_eq!(
            parse(b"PUTSCRIPT \"my \\\"rules\\\"\" {6+}\r\nkeep;\n\r\n").unwrap(),
            Command::PutScript {
                name: "my \"rules\"".into(),
                script: b"keep;\n".to_vec()
            }
        );
        assert_eq!(
            parse(b"RENAMESCRIPT {1}\r\na {3+}\r\nb c\r\n").unwrap(),
            Command::RenameScript("a".into(), "b c".into())
        );
        assert_eq!(
            parse(b"HAVESPACE \"x\" 1024\r\n").unwrap(),
            Command::HaveSpace {
                name: "x".into(),
                size: 1024
            }
        );
        assert_eq!(
            parse(b"SetActive \"\"\r\n").unwrap(),
            Command::SetActive(String::new())
        );
        assert_eq!(parse(b"NOOP\r\n").unwrap(), Command::Noop(None));
        assert_eq!(parse(b"listscripts\r\n").unwrap(), Command::ListScripts);
    }

    #[test]
    fn bad_commands_say_why() {
        for (input, says) in [
            (&b"\r\n"[..], "empty"),
            (b"FROB\r\n", "unknown command FROB"),
            (b"GETSCRIPT\r\n", "needs a script name"),
            (b"GETSCRIPT 12\r\n", "must be a string"),
            (b"GETSCRIPT \"a\" \"b\"\r\n", "too many arguments"),
            (b"GETSCRIPT \"a\r\n", "not closed"),
            (b"GETSCRIPT \"a\\x\"\r\n", "escapes only"),
            (
                b"PUTSCRIPT \"a\" {10+}\r\nshort\r\n",
                "shorter than announced",
            ),
            (b"HAVESPACE \"a\" 99999999999999999999999\r\n", "too large"),
            (b"GETSCRIPT \"\xff\"\r\n", "not UTF-8"),
        ] {
            let e = parse(input).unwrap_err();
            assert!(e.0.contains(says), "{input:?}: {}", e.0);
        }
    }

    #[test]
    fn sasl_responses() {
        assert_eq!(sasl_response(b"\"AGE=\"\r\n").unwrap(), Some("AGE=".into()));
        assert_eq!(
            sasl_response(b"{4+}\r\nAGE=\r\n").unwrap(),
            Some("AGE=".into())
        );
        assert_eq!(sasl_response(b"\"*\"\r\n").unwrap(), None);
        assert!(sasl_response(b"AGE=\r\n").is_err());
        assert!(sasl_response(b"\"a\" \"b\"\r\n").is_err());
    }

    #[test]
    fn literals_are_found_at_line_ends() {
        assert_eq!(literal_at_end(b"PUTSCRIPT \"a\" {120+}\r\n"), Some(120));
        assert_eq!(literal_at_end(b"PUTSCRIPT \"a\" {7}\r\n"), Some(7));
        assert_eq!(literal_at_end(b"PUTSCRIPT \"a\" \"{7}\"\r\n"), None);
        assert_eq!(literal_at_end(b"NOOP\r\n"), None);
        assert_eq!(literal_at_end(b"X {99999999999999999999}\r\n"), None);
    }

    #[test]
    fn strings_and_responses_are_written_safely() {
        assert_eq!(string("a \"b\" \\"), "\"a \\\"b\\\" \\\\\"");
        assert_eq!(string("two\r\nlines"), "{10}\r\ntwo\r\nlines");
        assert_eq!(
            response("NO", Some("QUOTA/MAXSIZE"), "too big"),
            "NO (QUOTA/MAXSIZE) \"too big\""
        );
        assert_eq!(response("OK", None, ""), "OK");
    }
}
