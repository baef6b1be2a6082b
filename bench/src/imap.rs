//! A minimal IMAP client over plain TCP: just what the workload needs
//! (LOGIN, SELECT, FETCH, STORE, APPEND, IDLE), with literals read inline.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Imap {
    stream: BufReader<TcpStream>,
    tag: u32,
}

impl Imap {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> Result<Imap> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to IMAP {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut c = Imap {
            stream: BufReader::with_capacity(64 * 1024, tcp),
            tag: 0,
        };
        let greeting = c.read_line().await?;
        if !greeting.starts_with(b"* OK") {
            bail!("IMAP greeting: {}", String::from_utf8_lossy(&greeting));
        }
        Ok(c)
    }

    /// Connects, logs in and selects INBOX.
    pub async fn open(addr: SocketAddr, user: &str, password: &str) -> Result<Imap> {
        let mut c = Imap::connect(addr).await?;
        c.login(user, password).await?;
        c.command("SELECT INBOX").await?;
        Ok(c)
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .await
            .map(drop)
    }

    /// Reads one response line, with any literals it carries inlined, and
    /// without the final CRLF.
    pub async fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let n = self.stream.read_until(b'\n', &mut line).await?;
            if n == 0 {
                bail!("IMAP server closed the connection");
            }
            // A literal: "{n}\r\n" (or "{n+}") at the end, then n octets.
            let end = line.len().saturating_sub(2);
            if line.ends_with(b"}\r\n")
                && let Some(open) = line[..end].iter().rposition(|&b| b == b'{')
            {
                let digits = &line[open + 1..end - 1];
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                if let Ok(len) = std::str::from_utf8(digits).unwrap_or("x").parse::<usize>() {
                    line.truncate(open);
                    let start = line.len();
                    line.resize(start + len, 0);
                    self.stream.read_exact(&mut line[start..]).await?;
                    continue;
                }
            }
            line.truncate(line.len() - 1);
            if line.ends_with(b"\r") {
                line.pop();
            }
            return Ok(line);
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("b{}", self.tag)
    }

    /// Sends one command and returns the untagged lines before its tagged
    /// OK; a NO or BAD is an error.
    pub async fn command(&mut self, cmd: &str) -> Result<Vec<Vec<u8>>> {
        let tag = self.next_tag();
        let wire = format!("{tag} {cmd}\r\n");
        self.stream.get_mut().write_all(wire.as_bytes()).await?;
        self.finish(&tag, cmd).await
    }

    /// APPEND with a non-synchronising literal (LITERAL+, both servers).
    pub async fn append(&mut self, mailbox: &str, message: &[u8]) -> Result<()> {
        let tag = self.next_tag();
        let mut wire = format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).into_bytes();
        wire.extend_from_slice(message);
        wire.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&wire).await?;
        self.finish(&tag, "APPEND").await.map(drop)
    }

    async fn finish(&mut self, tag: &str, what: &str) -> Result<Vec<Vec<u8>>> {
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line().await?;
            if let Some(rest) = line.strip_prefix(tag.as_bytes())
                && rest.first() == Some(&b' ')
            {
                if rest[1..].starts_with(b"OK") {
                    return Ok(untagged);
                }
                let verb = what.split(' ').next().unwrap_or(what);
                bail!("{verb}: {}", String::from_utf8_lossy(&line));
            }
            untagged.push(line);
        }
    }

    /// Starts IDLE and waits for the continuation.
    pub async fn idle(&mut self) -> Result<()> {
        let tag = self.next_tag();
        self.stream
            .get_mut()
            .write_all(format!("{tag} IDLE\r\n").as_bytes())
            .await?;
        loop {
            let line = self.read_line().await?;
            if line.starts_with(b"+") {
                return Ok(());
            }
            if line.starts_with(tag.as_bytes()) {
                bail!("IDLE: {}", String::from_utf8_lossy(&line));
            }
        }
    }

    /// LOGOUT, tolerating a server that closes first.
    pub async fn logout(mut self) -> Result<()> {
        let _ = self.command("LOGOUT").await;
        Ok(())
    }
}

/// An IMAP quoted string (the workload's names and passwords are ASCII).
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// `* <n> <word>` → n, for EXISTS and FETCH lines.
pub fn untagged_number(line: &[u8], word: &[u8]) -> Option<u32> {
    let rest = line.strip_prefix(b"* ")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let after = &rest[sp + 1..];
    if after.len() >= word.len() && after[..word.len()].eq_ignore_ascii_case(word) {
        std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()
    } else {
        None
    }
}

/// The numbers of `* SEARCH 1 2 3` lines.
pub fn search_numbers(lines: &[Vec<u8>]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(b"* SEARCH"))
        .flat_map(|rest| {
            String::from_utf8_lossy(rest)
                .split_ascii_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_untagged_lines() {
        assert_eq!(untagged_number(b"* 12 EXISTS", b"EXISTS"), Some(12));
        assert_eq!(untagged_number(b"* 3 exists", b"EXISTS"), Some(3));
        assert_eq!(untagged_number(b"* 3 RECENT", b"EXISTS"), None);
        assert_eq!(untagged_number(b"* OK still here", b"EXISTS"), None);
        assert_eq!(
            search_numbers(&[b"* SEARCH 1 5 9".to_vec(), b"* OK".to_vec()]),
            vec![1, 5, 9]
        );
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
