//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463,
//! RFC 2034). A reply is a value; the session queues its bytes and flushes
//! them before it next waits for the client.

use std::borrow::Cow;
use std::fmt;

/// One reply: a three-digit code, an enhanced status code (absent on the
/// greeting, EHLO/HELO and 354, as RFC 2034 §3 has it) and one or more
/// lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<&'static str>,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced status code.
    pub fn plain(code: u16, lines: Vec<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    /// 5xx: the client should not try this again as it is.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The wire form: every line but the last as `code-`, the last as
    /// `code `, each with the enhanced code, each ending in CRLF. Text never
    /// carries a control character, whatever was put into it.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        let empty = [Cow::Borrowed("")];
        let lines = if self.lines.is_empty() {
            &empty[..]
        } else {
            &self.lines[..]
        };
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{sep}", self.code).as_bytes());
            if let Some(status) = self.status {
                out.extend_from_slice(status.as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            for c in line.chars() {
                if c.is_control() {
                    out.push(b'?');
                } else {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(String::from_utf8_lossy(&out).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn replies_carry_their_codes_on_every_line() {
        assert_eq!(wire(&Reply::new(250, "2.0.0", "Ok")), "250 2.0.0 Ok\r\n");
        assert_eq!(
            wire(&Reply::plain(250, vec!["mx".into(), "PIPELINING".into()])),
            "250-mx\r\n250 PIPELINING\r\n"
        );
        let help = Reply {
            code: 214,
            status: Some("2.0.0"),
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(wire(&help), "214-2.0.0 a\r\n214 2.0.0 b\r\n");
        assert_eq!(wire(&Reply::plain(354, vec![])), "354 \r\n");
    }

    #[test]
    fn text_cannot_break_the_line() {
        let r = Reply::new(250, "2.0.0", "evil\r\n250 injected".to_string());
        assert_eq!(wire(&r), "250 2.0.0 evil??250 injected\r\n");
        assert_eq!(r.to_string(), "250 2.0.0 evil??250 injected");
    }
}
