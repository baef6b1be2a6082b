//! Sieve's lexical tokens (RFC 5228 section 8.1): identifiers, tags,
//! numbers with their K/M/G quantifiers, quoted and multi-line strings,
//! and punctuation, each with the line it starts on. Comments and white
//! space are dropped.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Identifier(String),
    /// A tag, without its colon.
    Tag(String),
    Number(u64),
    String(String),
    LeftBracket,
    RightBracket,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    Comma,
    Semicolon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed {
    pub token: Token,
    pub line: u32,
}

/// The tokens of `script`.
pub fn lex(script: &str) -> Result<Vec<Lexed>, ParseError> {
    let mut lexer = Lexer {
        bytes: script.as_bytes(),
        text: script,
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some(t) = lexer.next()? {
        out.push(t);
    }
    Ok(out)
}

struct Lexer<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
    line: u32,
}

impl Lexer<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    /// Skips white space and comments.
    fn skip(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'#') => {
                    while let Some(b) = self.bump() {
                        if b == b'\n' {
                            break;
                        }
                    }
                }
                Some(b'/') if self.bytes.get(self.at + 1) == Some(&b'*') => {
                    let start = self.line;
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            Some(b'*') if self.peek() == Some(b'/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                            None => {
                                return Err(ParseError {
                                    line: start,
                                    message: "comment not closed with */".into(),
                                });
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next(&mut self) -> Result<Option<Lexed>, ParseError> {
        self.skip()?;
        let line = self.line;
        let Some(b) = self.peek() else {
            return Ok(None);
        };
        let token = match b {
            b'[' | b']' | b'(' | b')' | b'{' | b'}' | b',' | b';' => {
                self.bump();
                match b {
                    b'[' => Token::LeftBracket,
                    b']' => Token::RightBracket,
                    b'(' => Token::LeftParen,
                    b')' => Token::RightParen,
                    b'{' => Token::LeftBrace,
                    b'}' => Token::RightBrace,
                    b',' => Token::Comma,
                    _ => Token::Semicolon,
                }
            }
            b'"' => {
                self.bump();
                Token::String(self.quoted(line)?)
            }
            b':' => {
                self.bump();
                let name = self.identifier();
                if name.is_empty() {
                    return Err(self.error("a tag needs a name after the colon"));
                }
                Token::Tag(name.to_ascii_lowercase())
            }
            b'0'..=b'9' => Token::Number(self.number()?),
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let name = self.identifier();
                if name.eq_ignore_ascii_case("text") && self.peek() == Some(b':') {
                    self.bump();
                    Token::String(self.multiline()?)
                } else {
                    Token::Identifier(name.to_ascii_lowercase())
                }
            }
            _ => {
                let c = self.text[self.at..].chars().next().unwrap_or('?');
                return Err(self.error(format!("unexpected character {c:?}")));
            }
        };
        Ok(Some(Lexed { token, line }))
    }

    fn identifier(&mut self) -> String {
        let start = self.at;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                self.bump();
            } else {
                break;
            }
        }
        self.text[start..self.at].to_string()
    }

    fn number(&mut self) -> Result<u64, ParseError> {
        let mut n: u64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            self.bump();
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| self.error("number too large"))?;
        }
        let shift = match self.peek() {
            Some(b'k' | b'K') => 10,
            Some(b'm' | b'M') => 20,
            Some(b'g' | b'G') => 30,
            _ => 0,
        };
        if shift > 0 {
            self.bump();
            n = n
                .checked_mul(1 << shift)
                .ok_or_else(|| self.error("number too large"))?;
        }
        if self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(self.error("a number runs into a word"));
        }
        Ok(n)
    }

    /// A quoted string after its opening quote: `\"` and `\\` stand for
    /// themselves, and a backslash before anything else is dropped.
    fn quoted(&mut self, start: u32) -> Result<String, ParseError> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(b) => out.push(b),
                    None => break,
                },
                Some(b) => out.push(b),
                None => {
                    return Err(ParseError {
                        line: start,
                        message: "string not closed with a quote".into(),
                    });
                }
            }
        }
        // The input was a &str and only whole bytes of ASCII were dropped,
        // so this is still UTF-8.
        String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"))
    }

    /// A `text:` string after its colon: the rest of that line may hold
    /// only white space and a `#` comment; the lines up to one holding a
    /// lone `.` are the value, with a leading `..` read as `.`.
    fn multiline(&mut self) -> Result<String, ParseError> {
        let start = self.line;
        while let Some(b' ' | b'\t') = self.peek() {
            self.bump();
        }
        if self.peek() == Some(b'#') {
            while let Some(b) = self.peek() {
                if b == b'\n' {
                    break;
                }
                self.bump();
            }
        }
        if self.peek() == Some(b'\r') {
            self.bump();
        }
        if self.bump() != Some(b'\n') {
            return Err(self.error("text: must end its line"));
        }
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(end) = rest.find('\n') else {
                return Err(ParseError {
                    line: start,
                    message: "text: not ended by a line holding only \".\"".into(),
                });
            };
            let raw = &rest[..end];
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            for _ in 0..=end {
                self.bump();
            }
            if line == "." {
                break;
            }
            out.push_str(
                line.strip_prefix('.')
                    .filter(|_| line.starts_with(".."))
                    .unwrap_or(line),
            );
            out.push_str("\r\n");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<Token> {
        lex(s).unwrap().into_iter().map(|l| l.token).collect()
    }

    #[test]
    fn reads_every_kind_of_token() {
        assert_eq!(
            tokens("if header :Contains [\"Subject\", \"x\\\"y\\\\\"] 10K { keep; } # c\n/* b */"),
            vec![
                Token::Identifier("if".into()),
                Token::Identifier("header".into()),
                Token::Tag("contains".into()),
                Token::LeftBracket,
                Token::String("Subject".into()),
                Token::Comma,
                Token::String("x\"y\\".into()),
                Token::RightBracket,
                Token::Number(10 * 1024),
                Token::LeftBrace,
                Token::Identifier("keep".into()),
                Token::Semicolon,
                Token::RightBrace,
            ]
        );
    }

    #[test]
    fn multiline_strings_unstuff_dots() {
        let t = tokens("vacation text: # why\r\nI am away.\r\n..dot\r\n.\r\n;");
        assert_eq!(
            t,
            vec![
                Token::Identifier("vacation".into()),
                Token::String("I am away.\r\n.dot\r\n".into()),
                Token::Semicolon,
            ]
        );
    }

    #[test]
    fn errors_name_their_line() {
        let e = lex("keep;\n\n\"open").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("not closed"), "{e}");
        assert_eq!(lex("keep;\n/* x").unwrap_err().line, 2);
        assert_eq!(lex("a\n99999999999999999999999").unwrap_err().line, 2);
        assert_eq!(lex("a\n5G").unwrap(), lex("a\n5g").unwrap());
        assert!(lex("12ab").is_err());
        assert!(lex("text:x\n.\n").is_err());
        assert!(lex("@").is_err());
    }
}
