//! The connection layer every text protocol session (SMTP, POP3, and IMAP
//! next) uses: a buffered, idle-timed, shutdown-aware line connection.
//!
//! A [`Conn`] keeps the bytes of one connection — what was read and not yet
//! used, and replies queued but not yet written — and knows nothing of the
//! protocol on top. Replies are written out whenever the session is about to
//! wait for the client ([`Conn::fill`]), so pipelined commands get their
//! replies in order, in as few packets as possible, and a client never waits
//! on a reply we are sitting on. The session decides the protocol's parts:
//! the reply formats, the line length limit, the idle timeout, and when
//! queued replies are too many to keep back.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::info;

/// How long a closing session keeps reading what the client still sends,
/// so that closing with unread input does not reset the connection and
/// destroy our last reply before the client reads it.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 64 * 1024;

/// What a command loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
    /// The client asked for TLS: see [`Conn::start_tls`].
    StartTls,
    /// The client asked for compression (IMAP COMPRESS): see
    /// [`Conn::into_parts`].
    Compress,
}

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    Data,
    Eof,
    Idle,
    Shutdown,
}

/// A line read for a command loop.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line with its line ending.
    Command(Vec<u8>),
    /// Longer than the limit; read to its end and thrown away.
    TooLong,
    Eof,
    Idle,
    Shutdown,
}

/// The byte side of a session: a read buffer and the replies waiting to go.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    /// How much of `buf` is used up.
    pos: usize,
    out: Vec<u8>,
    /// Bytes asked of the stream per read.
    read_chunk: usize,
}

impl<S> Conn<S> {
    /// A connection over `stream` that asks for `read_chunk` bytes per read.
    pub(crate) fn new(stream: S, read_chunk: usize) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
            out: Vec::new(),
            read_chunk,
        }
    }

    /// What was read and not used yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks the first `n` buffered bytes used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// The replies queued and not written yet, to append to.
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// How many bytes of replies are queued.
    pub(crate) fn queued(&self) -> usize {
        self.out.len()
    }

    /// Queues one line and its CRLF.
    pub(crate) fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Writes the queued replies.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        self.stream.flush().await
    }

    /// Writes pending replies, then waits for more input, at most `idle`
    /// (and, given a shutdown signal, until it fires).
    pub(crate) async fn fill(
        &mut self,
        idle: Duration,
        shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> io::Result<Fill> {
        self.fill_or_wake(idle, shutdown, std::future::pending())
            .await
    }

    /// [`Conn::fill`], also ending (as [`Fill::Idle`]) when `wake` does.
    pub(crate) async fn fill_or_wake(
        &mut self,
        idle: Duration,
        shutdown: Option<&mut watch::Receiver<bool>>,
        wake: impl Future<Output = ()>,
    ) -> io::Result<Fill> {
        self.flush().await?;
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + self.read_chunk, 0);
        let read = tokio::time::timeout(idle, self.stream.read(&mut self.buf[len..]));
        enum Waited {
            Read(io::Result<usize>),
            /// The time ran out, or `wake` ended the wait.
            Quiet,
            Shutdown,
        }
        let waited = tokio::select! {
            r = read => r.map_or(Waited::Quiet, Waited::Read),
            () = shutdown_signal(shutdown) => Waited::Shutdown,
            () = wake => Waited::Quiet,
        };
        let outcome = match waited {
            Waited::Read(Ok(n)) if n > 0 => {
                self.buf.truncate(len + n);
                return Ok(Fill::Data);
            }
            Waited::Read(Ok(_)) => Ok(Fill::Eof),
            Waited::Read(Err(e)) => Err(e),
            Waited::Quiet => Ok(Fill::Idle),
            Waited::Shutdown => Ok(Fill::Shutdown),
        };
        self.buf.truncate(len);
        outcome
    }

    /// The next line (with its line ending), or why there is none. A line
    /// longer than `max` bytes is read to its end but kept nowhere.
    pub(crate) async fn read_line(
        &mut self,
        max: usize,
        idle: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<Line> {
        let mut discarding = false;
        loop {
            let buffered = self.buffered();
            if let Some(i) = buffered.iter().position(|&b| b == b'\n') {
                let too_long = discarding || i + 1 > max;
                let line = (!too_long).then(|| buffered[..=i].to_vec());
                self.consume(i + 1);
                return Ok(line.map_or(Line::TooLong, Line::Command));
            }
            if buffered.len() >= max {
                // Keep reading to the line's end, but keep none of it.
                discarding = true;
                let n = buffered.len();
                self.consume(n);
            }
            match self.fill(idle, Some(&mut *shutdown)).await? {
                Fill::Data => {}
                Fill::Eof => return Ok(Line::Eof),
                Fill::Idle => return Ok(Line::Idle),
                Fill::Shutdown => return Ok(Line::Shutdown),
            }
        }
    }

    /// Sends a SASL challenge line (`+ ...` in IMAP, `334 ...` in SMTP) and
    /// reads the client's response (RFC 4422 §3): `None` when the client
    /// cancels with `*`, sends an overlong line, or goes away.
    pub(crate) async fn sasl_response(
        &mut self,
        challenge: &str,
        max: usize,
        idle: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<Option<String>> {
        self.line(challenge);
        match self.read_line(max, idle, shutdown).await? {
            Line::Command(line) => {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                Ok((text != "*").then_some(text))
            }
            Line::TooLong | Line::Eof | Line::Idle | Line::Shutdown => Ok(None),
        }
    }

    /// Appends exactly `n` bytes of input to `out` (a literal); `false`
    /// when the client went away, stalled or the server is shutting down
    /// before they all came.
    pub(crate) async fn read_exact_into(
        &mut self,
        n: usize,
        out: &mut Vec<u8>,
        idle: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<bool> {
        let mut left = n;
        out.reserve(n.min(1 << 20));
        loop {
            let take = left.min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.consume(take);
            left -= take;
            if left == 0 {
                return Ok(true);
            }
            if self.fill(idle, Some(&mut *shutdown)).await? != Fill::Data {
                return Ok(false);
            }
        }
    }

    /// Writes the queued replies (the last one says to start TLS) and gives
    /// back the stream for the handshake. Input the client pipelined behind
    /// `command` is thrown away (RFC 3207 §5, RFC 2595 §4, CVE-2011-0411):
    /// plain-text commands must not run as if they had come over TLS.
    pub(crate) async fn start_tls(mut self, command: &str) -> io::Result<S> {
        self.flush().await?;
        let discarded = self.buf.len() - self.pos;
        if discarded > 0 {
            info!(
                bytes = discarded,
                "discarded plain-text input pipelined after {command}"
            );
        }
        Ok(self.stream)
    }

    /// Writes the queued replies and gives back the stream and the input
    /// already read from it (which, after COMPRESS, is compressed data the
    /// client sent right behind the command).
    pub(crate) async fn into_parts(mut self) -> io::Result<(S, Vec<u8>)> {
        self.flush().await?;
        let pending = self.buf[self.pos..].to_vec();
        Ok((self.stream, pending))
    }

    /// Writes what is pending, closes our side, and reads what the client
    /// still sends for a moment (see [`DRAIN_TIME`]).
    pub(crate) async fn close(&mut self) {
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.stream.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut left = DRAIN_BYTES;
            while left > 0 {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
}

/// Resolves when the server shuts down; never without a signal.
async fn shutdown_signal(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            if rx.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn pipelined_lines_come_one_at_a_time_then_eof() {
        let (mut client, server) = duplex(1024);
        let (_stop, mut shutdown) = watch::channel(false);
        client.write_all(b"NOOP\r\nQUIT\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut conn = Conn::new(server, 4);
        for want in [&b"NOOP\r\n"[..], b"QUIT\r\n"] {
            let line = conn.read_line(512, IDLE, &mut shutdown).await.unwrap();
            assert_eq!(line, Line::Command(want.to_vec()));
        }
        let line = conn.read_line(512, IDLE, &mut shutdown).await.unwrap();
        assert_eq!(line, Line::Eof);
    }

    #[tokio::test]
    async fn a_long_line_is_read_to_its_end_and_dropped() {
        let (mut client, server) = duplex(1 << 16);
        let (_stop, mut shutdown) = watch::channel(false);
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        client.write_all(&input).await.unwrap();
        let mut conn = Conn::new(server, 16);
        let line = conn.read_line(32, IDLE, &mut shutdown).await.unwrap();
        assert_eq!(line, Line::TooLong);
        let line = conn.read_line(32, IDLE, &mut shutdown).await.unwrap();
        assert_eq!(line, Line::Command(b"NOOP\r\n".to_vec()));
    }

    #[tokio::test]
    async fn waiting_writes_the_queued_replies_first() {
        let (mut client, server) = duplex(1024);
        let (_stop, mut shutdown) = watch::channel(false);
        let mut conn = Conn::new(server, 64);
        conn.line("+OK ready");
        assert_eq!(conn.queued(), 11);
        let reader = async {
            let mut got = [0u8; 11];
            client.read_exact(&mut got).await.unwrap();
            client.write_all(b"QUIT\r\n").await.unwrap();
            got
        };
        let (line, got) = tokio::join!(conn.read_line(512, IDLE, &mut shutdown), reader);
        assert_eq!(&got, b"+OK ready\r\n");
        assert_eq!(line.unwrap(), Line::Command(b"QUIT\r\n".to_vec()));
        assert_eq!(conn.queued(), 0);
    }

    #[tokio::test]
    async fn idle_and_shutdown_end_the_wait() {
        let (_client, server) = duplex(1024);
        let (stop, mut shutdown) = watch::channel(false);
        let mut conn = Conn::new(server, 64);
        let line = conn.read_line(512, Duration::from_millis(20), &mut shutdown);
        assert_eq!(line.await.unwrap(), Line::Idle);
        stop.send(true).unwrap();
        let line = conn.read_line(512, IDLE, &mut shutdown).await.unwrap();
        assert_eq!(line, Line::Shutdown);
        let fill = conn.fill(Duration::from_millis(20), None).await.unwrap();
        assert_eq!(
            fill,
            Fill::Idle,
            "without a signal only the timeout ends it"
        );
    }

    #[tokio::test]
    async fn start_tls_flushes_and_drops_pipelined_input() {
        let (mut client, server) = duplex(1024);
        let (_stop, mut shutdown) = watch::channel(false);
        client.write_all(b"STLS\r\nUSER evil\r\n").await.unwrap();
        let mut conn = Conn::new(server, 64);
        let line = conn.read_line(512, IDLE, &mut shutdown).await.unwrap();
        assert_eq!(line, Line::Command(b"STLS\r\n".to_vec()));
        conn.line("+OK Begin TLS negotiation");
        let mut server = conn.start_tls("STLS").await.unwrap();
        let mut got = [0u8; 27];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"+OK Begin TLS negotiation\r\n");
        // What the client sends next is all the new stream sees.
        client.write_all(b"TLS").await.unwrap();
        let mut next = [0u8; 3];
        server.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"TLS");
    }
}
