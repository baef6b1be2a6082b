//! The seam between listeners and protocol sessions: a listener accepts a
//! connection and calls [`handle`] with its [`Role`]; `handle` picks the
//! session for the role's protocol. Sessions are generic over the stream, so
//! tests drive them over `tokio::io::duplex` without a socket.
//!
//! The SMTP roles (MX and submission) are served by [`crate::smtp`], the
//! POP3 roles by [`crate::pop3`], the IMAP roles by [`crate::imap`]; HTTP
//! still gets a [`placeholder`] (a health check, and 503 for the rest).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stratus_runtime::role::{Protocol, Role};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::imap;
use crate::managesieve;
use crate::pop3;
use crate::smtp::{self, SessionKind};

/// Each protocol's context, for the listeners to hand connections to.
#[derive(Debug, Clone)]
pub struct Context {
    pub smtp: Arc<smtp::Context>,
    pub imap: Arc<imap::Context>,
    pub pop3: Arc<pop3::Context>,
    pub managesieve: Arc<managesieve::Context>,
}

/// Longest a placeholder session may take, so a client that never reads
/// cannot hold a connection slot.
const PLACEHOLDER_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves one connection from `peer` in the given role until the session
/// ends.
pub async fn handle<S>(role: Role, stream: S, peer: SocketAddr, ctx: &Context) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match role {
        Role::Smtp => return smtp::serve(SessionKind::Mx, stream, peer, &ctx.smtp, false).await,
        Role::Submission => {
            return smtp::serve(SessionKind::Submission, stream, peer, &ctx.smtp, false).await;
        }
        Role::Submissions => {
            return smtp::serve(SessionKind::Submission, stream, peer, &ctx.smtp, true).await;
        }
        Role::Pop3 => return pop3::serve(stream, peer, &ctx.pop3, false).await,
        Role::Pop3s => return pop3::serve(stream, peer, &ctx.pop3, true).await,
        Role::Imap => return imap::serve(stream, peer, &ctx.imap, false).await,
        Role::Imaps => return imap::serve(stream, peer, &ctx.imap, true).await,
        Role::ManageSieve => return managesieve::serve(stream, peer, &ctx.managesieve).await,
        _ => {}
    }
    if role.implicit_tls() {
        // No HTTPS yet: a client expecting a TLS handshake can make nothing
        // of a plain-text refusal, so the connection is accepted and closed.
        return Ok(());
    }
    let session = async move {
        match role.protocol() {
            // Served above.
            Protocol::Smtp | Protocol::Imap | Protocol::Pop3 | Protocol::ManageSieve => Ok(()),
            Protocol::Http => placeholder::http(stream).await,
        }
    };
    tokio::time::timeout(PLACEHOLDER_TIMEOUT, session)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client too slow"))?
}

/// Answers a client that already holds as many connections as one address
/// may, in its protocol's words, and closes.
pub async fn refuse_busy<S>(role: Role, stream: S, ctx: &Context) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let line = match role.protocol() {
        _ if role.implicit_tls() => return Ok(()),
        Protocol::Smtp => format!(
            "421 4.7.0 {} too many connections from your address\r\n",
            ctx.smtp.shared.hostname
        ),
        Protocol::Imap => "* BYE [UNAVAILABLE] too many connections from your address\r\n".into(),
        Protocol::Pop3 => "-ERR [SYS/TEMP] too many connections from your address\r\n".into(),
        Protocol::ManageSieve => "BYE \"too many connections from your address\"\r\n".into(),
        Protocol::Http => {
            let body = "too many connections from your address\n";
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    };
    tokio::time::timeout(
        PLACEHOLDER_TIMEOUT,
        placeholder::say_and_close(stream, line.as_bytes()),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client too slow"))?
}

/// Honest refusals until the HTTP service lands.
pub mod placeholder {
    use std::io;
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Most bytes of an HTTP request head we read before answering.
    const MAX_HTTP_HEAD: usize = 8 * 1024;

    /// HTTP: `GET /healthz` (or `HEAD`) answers 200 `ok`, so a load
    /// balancer can tell the process is up; everything else answers 503.
    pub async fn http<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
        let head = read_http_head(&mut stream).await?;
        if head.is_empty() {
            return Ok(());
        }
        let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let request_line = String::from_utf8_lossy(request_line);
        let mut words = request_line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        let (status, body) = match (method, path) {
            ("GET" | "HEAD", "/healthz") => ("200 OK", "ok"),
            _ => ("503 Service Unavailable", "service not available yet\n"),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            response.push_str(body);
        }
        say_and_close(stream, response.as_bytes()).await
    }

    /// Reads up to the blank line that ends a request head, at most
    /// [`MAX_HTTP_HEAD`] bytes, or whatever came before the client closed.
    async fn read_http_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < MAX_HTTP_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                break;
            }
        }
        Ok(head)
    }

    /// Writes `line`, closes our half and drains what the client still
    /// sends for a moment: closing a socket with unread input makes the
    /// kernel send a reset, which can destroy our reply before it is read.
    pub(crate) async fn say_and_close<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        line: &[u8],
    ) -> io::Result<()> {
        stream.write_all(line).await?;
        stream.flush().await?;
        stream.shutdown().await?;
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut left = 64 * 1024usize;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio::sync::watch;

    use super::*;

    async fn test_context(name: &str) -> (Context, watch::Sender<bool>) {
        // The placeholders never touch the stores: open them, then let the
        // directory go (open files stay usable).
        let dir = crate::testutil::TempDir::new(name);
        let local = stratus_store_local::LocalStores::open(&dir.path().join("data"), 5).unwrap();
        let (tx, rx) = watch::channel(false);
        let shared = crate::shared::Shared {
            hostname: "mx.test.example".into(),
            stores: stratus_runtime::Stores::from_local(local),
            shutdown: rx,
            tls: None,
            throttle: Arc::default(),
        };
        (crate::testutil::contexts(shared), tx)
    }

    fn peer() -> SocketAddr {
        "192.0.2.1:40000".parse().unwrap()
    }

    /// Runs `handle` on one end of an in-memory stream, sends `input` from
    /// the other end (then closes that direction) and returns everything
    /// the server wrote before closing.
    async fn converse(role: Role, input: &[u8]) -> String {
        converse_with(role, input, true).await
    }

    async fn converse_with(role: Role, input: &[u8], half_close: bool) -> String {
        let (ctx, _tx) = test_context(role.name()).await;
        let (mut client, server): (DuplexStream, DuplexStream) = duplex(64 * 1024);
        let server = tokio::spawn(async move { handle(role, server, peer(), &ctx).await });
        client.write_all(input).await.unwrap();
        if half_close {
            client.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        drop(client);
        server.await.unwrap().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn submission_speaks_smtp_and_wants_tls_before_auth() {
        let out = converse(
            Role::Submission,
            b"EHLO client\r\nAUTH PLAIN AGEAYg==\r\nQUIT\r\n",
        )
        .await;
        assert!(
            out.starts_with("220 mx.test.example ESMTP Stratus\r\n"),
            "{out}"
        );
        assert!(!out.contains("AUTH PLAIN"), "no AUTH before TLS: {out}");
        assert!(out.contains("538 5.7.11"), "{out}");
    }

    #[tokio::test]
    async fn the_mx_role_speaks_smtp() {
        let out = converse(Role::Smtp, b"EHLO client\r\nQUIT\r\n").await;
        assert!(
            out.starts_with("220 mx.test.example ESMTP Stratus\r\n250-mx.test.example\r\n"),
            "{out}"
        );
        assert!(
            out.ends_with("221 2.0.0 mx.test.example closing connection\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn busy_refusals_speak_each_protocol() {
        let (ctx, _tx) = test_context("busy").await;
        for (role, start) in [
            (Role::Smtp, "421 4.7.0 mx.test.example too many connections"),
            (Role::Imap, "* BYE [UNAVAILABLE] too many connections"),
            (Role::Pop3, "-ERR [SYS/TEMP] too many connections"),
            (Role::Http, "HTTP/1.1 503 Service Unavailable\r\n"),
            (Role::Imaps, ""),
        ] {
            let (mut client, server) = duplex(4096);
            client.shutdown().await.unwrap();
            refuse_busy(role, server, &ctx).await.unwrap();
            let mut out = String::new();
            client.read_to_string(&mut out).await.unwrap();
            assert!(out.starts_with(start), "{role}: {out}");
            assert_eq!(out.is_empty(), start.is_empty(), "{role}");
        }
    }

    #[tokio::test]
    async fn the_imap_role_speaks_imap() {
        let out = converse(Role::Imap, b"a LOGOUT\r\n").await;
        assert!(
            out.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 "),
            "{out}"
        );
        assert!(
            out.ends_with("* BYE Stratus IMAP server logging out\r\na OK LOGOUT completed\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn the_pop3_role_speaks_pop3() {
        assert_eq!(
            converse(Role::Pop3, b"QUIT\r\n").await,
            "+OK Stratus POP3 server ready\r\n+OK Stratus POP3 server signing off\r\n"
        );
    }

    #[tokio::test]
    async fn tls_roles_close_without_a_word() {
        for role in [Role::Submissions, Role::Imaps, Role::Pop3s] {
            assert_eq!(converse(role, b"").await, "", "{role}");
        }
    }

    #[tokio::test]
    async fn http_health_is_ok_and_everything_else_is_503() {
        let ok = converse(Role::Http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
        let head = converse(Role::Http, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );

        for request in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /healthzz HTTP/1.0\n\n",
            b"garbage\r\n\r\n",
            b"GET /", // client closes mid-head
        ] {
            let out = converse(Role::Http, request).await;
            assert!(
                out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{out}"
            );
            assert!(
                out.contains("\r\nContent-Length: 26\r\n")
                    && out.contains("\r\nConnection: close\r\n"),
                "{out}"
            );
            assert!(
                out.ends_with("\r\n\r\nservice not available yet\n"),
                "{out}"
            );
        }
        // A health check with a query string is still a health check.
        assert!(
            converse(Role::Http, b"GET /healthz?probe=1 HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
    }

    #[tokio::test]
    async fn greetings_do_not_wait_for_the_client() {
        let out = converse_with(Role::Http, b"GET /healthz HTTP/1.1\r\n\r\n", false).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    }

    #[tokio::test]
    async fn http_without_a_request_closes_quietly() {
        assert_eq!(converse(Role::Http, b"").await, "");
    }

    #[tokio::test]
    async fn an_endless_http_head_is_cut_off_and_answered() {
        let mut request = b"GET /healthz HTTP/1.1\r\n".to_vec();
        request.extend(std::iter::repeat_n(b'a', 20 * 1024));
        let out = converse(Role::Http, &request).await;
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    }
}
