//! The seam between listeners and protocol sessions: a listener accepts a
//! connection and calls [`handle`] with its [`Role`]; `handle` picks the
//! session for the role's protocol. Sessions are generic over the stream, so
//! tests drive them over `tokio::io::duplex` without a socket.
//!
//! The SMTP roles (MX and submission) are served by [`crate::smtp`], the
//! POP3 roles by [`crate::pop3`], the IMAP roles by [`crate::imap`],
//! ManageSieve by [`crate::managesieve`] and HTTP(S) by [`crate::http`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stratus_runtime::role::{Protocol, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http;
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
    pub http: Arc<http::Context>,
}

/// Longest a refusal may take, so a client that never reads cannot hold
/// a connection slot.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves one connection from `peer` in the given role until the session
/// ends.
pub async fn handle<S>(role: Role, stream: S, peer: SocketAddr, ctx: &Context) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match role {
        Role::Smtp => smtp::serve(SessionKind::Mx, stream, peer, &ctx.smtp, false).await,
        Role::Submission => {
            smtp::serve(SessionKind::Submission, stream, peer, &ctx.smtp, false).await
        }
        Role::Submissions => {
            smtp::serve(SessionKind::Submission, stream, peer, &ctx.smtp, true).await
        }
        Role::Pop3 => pop3::serve(stream, peer, &ctx.pop3, false).await,
        Role::Pop3s => pop3::serve(stream, peer, &ctx.pop3, true).await,
        Role::Imap => imap::serve(stream, peer, &ctx.imap, false).await,
        Role::Imaps => imap::serve(stream, peer, &ctx.imap, true).await,
        Role::ManageSieve => managesieve::serve(stream, peer, &ctx.managesieve).await,
        Role::Http => http::serve(stream, peer, &ctx.http, false).await,
        Role::Https => http::serve(stream, peer, &ctx.http, true).await,
    }
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
    tokio::time::timeout(REFUSAL_TIMEOUT, say_and_close(stream, line.as_bytes()))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client too slow"))?
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio::sync::watch;

    use super::*;

    async fn test_context(name: &str) -> (Context, watch::Sender<bool>) {
        // These sessions never touch the stores: open them, then let the
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
            sessions: Arc::default(),
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
}
