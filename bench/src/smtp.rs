//! A minimal SMTP client over plain TCP: EHLO, then MAIL/RCPT/DATA in
//! lock-step (no pipelining), so both servers see the same conversation.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Smtp {
    stream: BufReader<TcpStream>,
}

impl Smtp {
    pub async fn connect(addr: SocketAddr) -> Result<Smtp> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to SMTP {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut c = Smtp {
            stream: BufReader::new(tcp),
        };
        c.expect(220).await.context("SMTP greeting")?;
        c.send(b"EHLO bench-client.test\r\n").await?;
        c.expect(250).await.context("EHLO")?;
        Ok(c)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Reads a (multi-line) reply and checks its code.
    async fn expect(&mut self, code: u16) -> Result<()> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("SMTP server closed the connection");
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                break;
            }
        }
        let got: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if got != code {
            bail!("expected {code}, got: {}", line.trim_end());
        }
        Ok(())
    }

    /// Sends one message; returns once the server said 250 to the data.
    /// `data` is already dot-stuffed and ends with CRLF.
    pub async fn send_message(&mut self, from: &str, to: &str, data: &[u8]) -> Result<()> {
        self.send(format!("MAIL FROM:<{from}>\r\n").as_bytes())
            .await?;
        self.expect(250).await.context("MAIL")?;
        self.send(format!("RCPT TO:<{to}>\r\n").as_bytes()).await?;
        self.expect(250).await.context("RCPT")?;
        self.send(b"DATA\r\n").await?;
        self.expect(354).await.context("DATA")?;
        let mut wire = Vec::with_capacity(data.len() + 5);
        wire.extend_from_slice(data);
        wire.extend_from_slice(b".\r\n");
        self.send(&wire).await?;
        self.expect(250).await.context("end of data")
    }

    pub async fn quit(mut self) -> Result<()> {
        self.send(b"QUIT\r\n").await?;
        let _ = self.expect(221).await;
        Ok(())
    }
}

/// The body every message carries: printable text in 72-column lines, no
/// line starting with a dot, deterministic.
pub fn body_text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "stratus",
        "mail",
        "queue",
        "archive",
        "message",
        "mailbox",
        "delivery",
        "index",
        "blob",
        "route",
        "filter",
        "benchmark",
        "postfix",
        "dovecot",
        "latency",
        "throughput",
    ];
    let mut out = Vec::with_capacity(len + 80);
    let mut line = String::new();
    let mut x: u32 = 0x2545_f491;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let w = WORDS[(x % 16) as usize];
        if line.len() + w.len() + 1 > 72 {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out
}

/// A message of about `size` octets with the benchmark id in `X-Bench-Id`.
pub fn message(id: u64, run: &str, from: &str, to: &str, size: usize) -> Vec<u8> {
    let head = format!(
        "From: Bench Sender <{from}>\r\nTo: <{to}>\r\nSubject: bench message {id}\r\n\
         Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <bench-{run}-{id}@bench-sender.test>\r\n\
         X-Bench-Id: {id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    );
    let mut m = head.into_bytes();
    let body = body_text(size.saturating_sub(m.len()));
    let mut cut = body.len().min(size.saturating_sub(m.len()));
    // End on a whole line.
    while cut > 0 && !body[..cut].ends_with(b"\r\n") {
        cut -= 1;
    }
    m.extend_from_slice(&body[..cut]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_size_and_the_id() {
        let m = message(42, "r", "s@a.test", "u@b.test", 10 * 1024);
        assert!(
            m.len() <= 10 * 1024 && m.len() > 10 * 1024 - 80,
            "{}",
            m.len()
        );
        assert!(m.ends_with(b"\r\n"));
        let text = String::from_utf8(m).unwrap();
        assert!(text.contains("X-Bench-Id: 42\r\n"));
        assert!(text.lines().all(|l| !l.starts_with('.') && l.len() <= 78));
    }
}
