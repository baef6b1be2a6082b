//! One POP3 connection: the states of RFC 1939 and the I/O.
//!
//! [`serve`] owns the connection's life: the TLS handshake first on the
//! implicit-TLS role, the greeting, [`Session::run`] over the stream, and
//! on STLS the handshake and a second `run` over the TLS stream in a fresh
//! AUTHORIZATION state (RFC 2595 §4), with plain-text input pipelined
//! behind STLS thrown away. Whatever way the session ends, a maildrop
//! lease still held is released; a dropped connection deletes nothing.
//!
//! Replies are queued and written whenever the session is about to wait
//! for the client (PIPELINING, RFC 2449 §6.6).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stratus_core::address::Address;
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::{Lease, Leases, Mailstore, MessageEntry};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use super::Context;
use crate::conn::{Conn, Flow, Line};
use crate::login::{self, Login};
use crate::tls;
use stratus_proto::pop3::{self as command, Command, DotStuffer, TopFilter};
use stratus_runtime::config::Pop3Settings;

const GREETING: &str = "+OK Stratus POP3 server ready";
/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes of a body read from the blob store at a time.
const BODY_CHUNK: u64 = 256 * 1024;
/// Replies are written out once this much is queued.
const MAX_QUEUED: usize = 64 * 1024;

/// Serves one POP3 connection; `implicit_tls` for the pop3s role.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    ctx: &Context,
    implicit_tls: bool,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session::new(ctx, peer);
    let result = converse(&mut session, stream, implicit_tls).await;
    session.end().await;
    result
}

async fn converse<S>(session: &mut Session<'_>, stream: S, implicit_tls: bool) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let ctx = session.ctx;
    if implicit_tls {
        let Some(stream) = handshake(ctx, stream).await else {
            return Ok(());
        };
        session.tls = true;
        let mut conn = Conn::new(stream, READ_CHUNK);
        conn.line(GREETING);
        session.run(&mut conn).await?;
        conn.close().await;
        return Ok(());
    }
    let mut conn = Conn::new(stream, READ_CHUNK);
    conn.line(GREETING);
    if session.run(&mut conn).await? != Flow::StartTls {
        conn.close().await;
        return Ok(());
    }
    let stream = conn.start_tls("STLS").await?;
    let Some(stream) = handshake(ctx, stream).await else {
        return Ok(());
    };
    session.tls_started();
    let mut conn = Conn::new(stream, READ_CHUNK);
    session.run(&mut conn).await?;
    conn.close().await;
    Ok(())
}

/// The TLS handshake, bounded by the idle timeout; `None` (logged) when
/// it fails or TLS is not configured.
async fn handshake<S>(ctx: &Context, stream: S) -> Option<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tls::handshake(
        ctx.shared.tls.clone(),
        stream,
        ctx.settings.idle_timeout,
        "POP3",
    )
    .await
}

/// The TRANSACTION state: the maildrop as it was at login, the marks, and
/// the lease that locks it.
#[derive(Debug)]
struct Maildrop {
    account: Address,
    uidvalidity: u32,
    messages: Vec<MessageEntry>,
    deleted: Vec<bool>,
    lock: Lock,
}

impl Maildrop {
    fn live(&self) -> impl Iterator<Item = (usize, &MessageEntry)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
            .map(|(i, m)| (i + 1, m))
    }

    fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, size), (_, m)| (n + 1, size + m.size))
    }

    /// The message numbered `n`, unless out of range or marked deleted.
    fn get(&self, n: u32) -> Result<&MessageEntry, &'static str> {
        let i = (n as usize).wrapping_sub(1);
        match self.messages.get(i) {
            None => Err("no such message"),
            Some(_) if self.deleted[i] => Err("message is deleted"),
            Some(m) => Ok(m),
        }
    }
}

/// A held maildrop lease and the task that renews it.
#[derive(Debug)]
struct Lock {
    leases: Leases,
    lease: Arc<Mutex<Lease>>,
    lost: Arc<AtomicBool>,
    renewer: JoinHandle<()>,
    released: bool,
}

impl Lock {
    fn start(leases: Leases, lease: Lease, settings: &Pop3Settings) -> Lock {
        let lease = Arc::new(Mutex::new(lease));
        let lost = Arc::new(AtomicBool::new(false));
        let (every, ttl) = (settings.lease_renew, settings.lease_ttl);
        let renewer = tokio::spawn({
            let (leases, lease, lost) = (leases.clone(), lease.clone(), lost.clone());
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    let mut held = lease.lock().await;
                    match leases.renew(&mut held, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(lease = %held.key, "POP3 maildrop lease lost");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // Try again at the next tick; the TTL covers a few.
                        Err(e) => warn!(error = %e, "cannot renew the POP3 maildrop lease"),
                    }
                }
            }
        });
        Lock {
            leases,
            lease,
            lost,
            renewer,
            released: false,
        }
    }

    /// Stops renewing and renews once more, so the lease is fresh for a
    /// commit; the lease at its current version, or `None` when lost.
    async fn freshen(&mut self, ttl: Duration) -> Option<Lease> {
        self.renewer.abort();
        let mut lease = self.lease.lock().await;
        if self.lost.load(Ordering::SeqCst) {
            return None;
        }
        match self.leases.renew(&mut lease, ttl).await {
            Ok(true) => Some(lease.clone()),
            Ok(false) => None,
            Err(e) => {
                warn!(error = %e, "cannot renew the POP3 maildrop lease");
                None
            }
        }
    }

    async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        let lease = self.lease.lock().await.clone();
        if let Err(e) = self.leases.release(&lease).await {
            warn!(error = %e, "cannot release the POP3 maildrop lease; it will expire");
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        // The session was cut off mid-way (server shutdown dropped it):
        // release in the background, or let the lease expire.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (leases, lease) = (self.leases.clone(), self.lease.clone());
            handle.spawn(async move {
                let lease = lease.lock().await.clone();
                let _ = leases.release(&lease).await;
            });
        }
    }
}

/// The state of one POP3 session.
#[derive(Debug)]
struct Session<'a> {
    ctx: &'a Context,
    peer: SocketAddr,
    tls: bool,
    errors: u32,
    /// The name given with USER, waiting for PASS.
    user: Option<String>,
    /// `Some` in the TRANSACTION state.
    maildrop: Option<Maildrop>,
    /// Signed in: the session's place among the user's sessions, whose
    /// signal `shutdown` now is.
    ticket: Option<crate::sessions::Ticket>,
    shutdown: watch::Receiver<bool>,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a Context, peer: SocketAddr) -> Session<'a> {
        Session {
            ctx,
            peer,
            tls: false,
            errors: 0,
            user: None,
            maildrop: None,
            ticket: None,
            shutdown: ctx.shared.shutdown.clone(),
        }
    }

    fn settings(&self) -> &'a Pop3Settings {
        &self.ctx.settings
    }

    fn ip(&self) -> IpAddr {
        self.peer.ip().to_canonical()
    }

    /// RFC 2595 §4: after STLS the client starts a fresh AUTHORIZATION.
    fn tls_started(&mut self) {
        self.tls = true;
        self.user = None;
    }

    /// Whether passwords may be sent on this connection.
    fn plaintext_ok(&self) -> bool {
        self.tls || self.ip().is_loopback() || self.settings().allow_plaintext
    }

    /// Releases a maildrop lease still held; deletes nothing.
    async fn end(&mut self) {
        if let Some(maildrop) = self.maildrop.take() {
            debug!(account = %maildrop.account, "POP3 session ended without QUIT; nothing deleted");
            maildrop.lock.release().await;
        }
    }

    fn err<S>(&mut self, conn: &mut Conn<S>, text: &str) {
        self.errors += 1;
        conn.line(&format!("-ERR {text}"));
    }

    async fn run<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let flow = match self.read_line(conn).await? {
                Line::Command(line) => self.command(&line, conn).await?,
                Line::TooLong => {
                    self.err(conn, "line too long");
                    Flow::Continue
                }
                Line::Eof => return Ok(Flow::Close),
                Line::Idle => {
                    conn.line("-ERR [SYS/TEMP] idle timeout, closing connection");
                    return Ok(Flow::Close);
                }
                Line::Shutdown => {
                    if crate::sessions::revoked(self.ticket.as_ref()) {
                        conn.line("-ERR [AUTH] your credentials changed; sign in again");
                    } else {
                        conn.line("-ERR [SYS/TEMP] server shutting down, closing connection");
                    }
                    return Ok(Flow::Close);
                }
            };
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.errors >= self.settings().max_errors {
                debug!(errors = self.errors, "too many POP3 errors; closing");
                conn.line("-ERR too many errors, closing connection");
                return Ok(Flow::Close);
            }
            if conn.queued() >= MAX_QUEUED {
                conn.flush().await?;
            }
        }
    }

    /// The next command line (with its line ending), or why there is none.
    async fn read_line<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Line>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let settings = self.settings();
        conn.read_line(settings.max_line, settings.idle_timeout, &mut self.shutdown)
            .await
    }

    async fn command<S>(&mut self, line: &[u8], conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let command = match command::parse(line) {
            Ok(c) => c,
            Err(invalid) => {
                self.err(conn, invalid.0);
                return Ok(Flow::Continue);
            }
        };
        match command {
            Command::Capa => {
                self.capa(conn);
                return Ok(Flow::Continue);
            }
            Command::Noop if self.maildrop.is_some() => conn.line("+OK"),
            Command::Quit => {
                self.quit(conn).await;
                return Ok(Flow::Close);
            }
            Command::Unknown(word) => self.err(conn, &format!("unknown command {word}")),
            _ if self.maildrop.is_none() => return self.authorization(command, conn).await,
            _ => self.transaction(command, conn).await?,
        }
        Ok(Flow::Continue)
    }

    fn capa<S>(&mut self, conn: &mut Conn<S>) {
        conn.line("+OK Capability list follows");
        let authorization = self.maildrop.is_none();
        for cap in ["TOP", "UIDL"] {
            conn.line(cap);
        }
        // Offer passwords only where they would be accepted (RFC 2595 §4):
        // a client that sees no USER or SASL knows to use STLS first.
        if authorization && self.plaintext_ok() {
            conn.line("USER");
            conn.line("SASL PLAIN");
        }
        for cap in [
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            "IMPLEMENTATION Stratus",
        ] {
            conn.line(cap);
        }
        if authorization && !self.tls && self.ctx.shared.tls.is_some() {
            conn.line("STLS");
        }
        conn.line(".");
    }

    /// Commands of the AUTHORIZATION state.
    async fn authorization<S>(&mut self, command: Command, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match command {
            Command::Stls => {
                if self.tls {
                    self.err(conn, "TLS is already active");
                } else if self.ctx.shared.tls.is_none() {
                    self.err(conn, "TLS is not available");
                } else {
                    conn.line("+OK Begin TLS negotiation");
                    return Ok(Flow::StartTls);
                }
            }
            Command::User(name) => {
                if !self.plaintext_ok() {
                    self.user = None;
                    self.err(conn, "[AUTH] plaintext logins need TLS: use STLS");
                } else {
                    conn.line("+OK send PASS");
                    self.user = Some(name);
                }
            }
            Command::Pass(password) => match self.user.take() {
                None => self.err(conn, "send USER first"),
                Some(_) if !self.plaintext_ok() => {
                    self.err(conn, "[AUTH] plaintext logins need TLS: use STLS");
                }
                Some(name) => self.login(conn, &name, &password).await,
            },
            Command::Auth {
                mechanism: None, ..
            } => {
                conn.line("+OK SASL mechanisms follow");
                conn.line("PLAIN");
                conn.line(".");
            }
            Command::Auth {
                mechanism: Some(mechanism),
                initial,
            } => {
                if mechanism != "PLAIN" {
                    self.err(conn, "unsupported SASL mechanism; use PLAIN");
                } else if !self.plaintext_ok() {
                    self.err(conn, "[AUTH] plaintext logins need TLS: use STLS");
                } else {
                    self.auth_plain(conn, initial).await?;
                }
            }
            Command::Apop => self.err(conn, "APOP is not supported; use USER/PASS or AUTH"),
            Command::Noop
            | Command::Stat
            | Command::List(_)
            | Command::Uidl(_)
            | Command::Retr(_)
            | Command::Top(..)
            | Command::Dele(_)
            | Command::Rset => self.err(conn, "log in first"),
            Command::Capa | Command::Quit | Command::Unknown(_) => {}
        }
        Ok(Flow::Continue)
    }

    /// AUTH PLAIN (RFC 5034), with the initial response or after `+ `.
    async fn auth_plain<S>(&mut self, conn: &mut Conn<S>, initial: Option<String>) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let response = match initial {
            // "=" is an empty initial response (RFC 5034 §4).
            Some(ir) if ir != "=" => ir,
            _ => {
                let settings = self.settings();
                let response = conn
                    .sasl_response(
                        "+ ",
                        settings.max_line,
                        settings.idle_timeout,
                        &mut self.shutdown,
                    )
                    .await?;
                match response {
                    Some(r) => r,
                    None => {
                        self.err(conn, "authentication cancelled");
                        return Ok(());
                    }
                }
            }
        };
        match command::sasl_plain(&response) {
            Ok((name, password)) => self.login(conn, &name, &password).await,
            Err(invalid) => self.err(conn, invalid.0),
        }
        Ok(())
    }

    /// Checks a password and, if it is right, locks and opens the maildrop.
    async fn login<S>(&mut self, conn: &mut Conn<S>, name: &str, password: &str) {
        let signed = match login::login(&self.ctx.shared, self.peer, "pop3", name, password).await {
            Login::Ok(signed) => signed,
            Login::Failed => return self.err(conn, "[AUTH] invalid credentials"),
            Login::Blocked => {
                return self.err(
                    conn,
                    "[AUTH] too many failed logins from your address; try later",
                );
            }
            Login::Unavailable => {
                return self.err(conn, "[SYS/TEMP] cannot check credentials now; try later");
            }
        };
        let account = signed.address.clone();
        match self.open(&account).await {
            Ok(Some(maildrop)) => {
                let (n, size) = maildrop.stat();
                info!(user = %account, peer = %self.peer, messages = n, "POP3 maildrop open");
                conn.line(&format!("+OK maildrop has {n} messages ({size} octets)"));
                self.maildrop = Some(maildrop);
                // Signed in only now that the maildrop is open.
                self.ticket = Some(crate::sessions::sign_in(
                    &self.ctx.shared,
                    &signed,
                    &mut self.shutdown,
                ));
            }
            Ok(None) => {
                info!(user = %account, "POP3 maildrop in use");
                conn.line("-ERR [IN-USE] maildrop already locked by another session");
            }
            Err(e) => {
                warn!(user = %account, error = %e, "cannot open the POP3 maildrop");
                conn.line("-ERR [SYS/TEMP] cannot open the maildrop now; try later");
            }
        }
    }

    /// Takes the lease and reads the maildrop; `None` when locked.
    async fn open(
        &self,
        account: &Address,
    ) -> Result<Option<Maildrop>, stratus_core::accounts::AccountError> {
        let leases = Leases::new(self.ctx.shared.stores.index.clone());
        let name = format!("pop3#{}", account.account_key());
        let Some(lease) = leases.acquire(&name, self.settings().lease_ttl).await? else {
            return Ok(None);
        };
        let lock = Lock::start(leases, lease, self.settings());
        let store = self.mailstore();
        let inbox = MailboxName::inbox();
        let read = async {
            let uidvalidity = store
                .mailbox(account, &inbox)
                .await?
                .map_or(0, |(m, _)| m.uidvalidity);
            let messages = store.entries(account, &inbox, 1, u32::MAX).await?;
            Ok::<_, stratus_core::accounts::AccountError>((uidvalidity, messages))
        };
        match read.await {
            Ok((uidvalidity, messages)) => Ok(Some(Maildrop {
                account: account.clone(),
                uidvalidity,
                deleted: vec![false; messages.len()],
                messages,
                lock,
            })),
            Err(e) => {
                lock.release().await;
                Err(e)
            }
        }
    }

    fn mailstore(&self) -> Mailstore {
        self.ctx.shared.stores.mailstore()
    }

    /// Commands of the TRANSACTION state.
    async fn transaction<S>(&mut self, command: Command, conn: &mut Conn<S>) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(md) = self.maildrop.as_mut() else {
            return Ok(());
        };
        let result: Result<(), &str> = match command {
            Command::Stat => {
                let (n, size) = md.stat();
                conn.line(&format!("+OK {n} {size}"));
                Ok(())
            }
            Command::List(None) => {
                let (n, size) = md.stat();
                conn.line(&format!("+OK {n} messages ({size} octets)"));
                for (i, m) in md.live() {
                    conn.line(&format!("{i} {}", m.size));
                }
                conn.line(".");
                Ok(())
            }
            Command::List(Some(n)) => md.get(n).map(|m| {
                conn.line(&format!("+OK {n} {}", m.size));
            }),
            Command::Uidl(None) => {
                conn.line("+OK unique-id listing follows");
                for (i, m) in md.live() {
                    conn.line(&format!("{i} {}.{}", md.uidvalidity, m.uid));
                }
                conn.line(".");
                Ok(())
            }
            Command::Uidl(Some(n)) => md.get(n).map(|m| {
                conn.line(&format!("+OK {n} {}.{}", md.uidvalidity, m.uid));
            }),
            Command::Retr(n) => match md.get(n) {
                Ok(m) => {
                    let m = m.clone();
                    return self.send_message(conn, &m, None).await;
                }
                Err(e) => Err(e),
            },
            Command::Top(n, lines) => match md.get(n) {
                Ok(m) => {
                    let m = m.clone();
                    return self.send_message(conn, &m, Some(lines)).await;
                }
                Err(e) => Err(e),
            },
            Command::Dele(n) => md.get(n).map(|_| ()).map(|()| {
                md.deleted[n as usize - 1] = true;
                conn.line(&format!("+OK message {n} deleted"));
            }),
            Command::Rset => {
                md.deleted.fill(false);
                let (n, size) = md.stat();
                conn.line(&format!("+OK maildrop has {n} messages ({size} octets)"));
                Ok(())
            }
            Command::Noop => {
                conn.line("+OK");
                Ok(())
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop => {
                Err("already logged in")
            }
            Command::Stls => Err("STLS is only allowed before login"),
            Command::Capa | Command::Quit | Command::Unknown(_) => Ok(()),
        };
        if let Err(e) = result {
            self.err(conn, e);
        }
        Ok(())
    }

    /// RETR (whole message) or TOP (`Some(lines)`): `+OK`, the message
    /// dot-stuffed, and the terminating `.`, streamed from the blob store.
    async fn send_message<S>(
        &mut self,
        conn: &mut Conn<S>,
        m: &MessageEntry,
        top: Option<u32>,
    ) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let blobs = self.ctx.shared.stores.blobs.clone();
        let body_size = m.size.saturating_sub(m.prefix.len() as u64);
        let first = match blobs.get(&m.body, Some(0..BODY_CHUNK.min(body_size))).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                warn!(blob = %m.body, uid = m.uid, "POP3: message body missing");
                self.err(conn, "[SYS/PERM] message body is missing");
                return Ok(());
            }
            Err(e) => {
                warn!(blob = %m.body, error = %e, "POP3: cannot read a message body");
                self.err(conn, "[SYS/TEMP] cannot read the message now; try later");
                return Ok(());
            }
        };
        conn.line(&format!("+OK {} octets", m.size));
        let mut stuffer = DotStuffer::default();
        let mut filter = top.map(TopFilter::new);
        let mut send = |conn: &mut Conn<S>, bytes: &[u8]| match filter.as_mut() {
            Some(f) => {
                let part = f.take(bytes);
                stuffer.push(part, conn.out());
                f.done()
            }
            None => {
                stuffer.push(bytes, conn.out());
                false
            }
        };
        let mut done = send(conn, m.prefix.as_bytes()) || send(conn, &first);
        let mut offset = first.len() as u64;
        while !done && offset < body_size {
            if conn.queued() >= MAX_QUEUED {
                conn.flush().await?;
            }
            let end = (offset + BODY_CHUNK).min(body_size);
            let chunk = match blobs.get(&m.body, Some(offset..end)).await {
                Ok(Some(chunk)) if !chunk.is_empty() => chunk,
                other => {
                    // The answer is half sent: the only honest way out is
                    // to close, so the client cannot take it as complete.
                    let error = other.err().map(|e| e.to_string());
                    warn!(blob = %m.body, offset, error, "POP3: message body ended early");
                    return Err(io::Error::other("message body ended early"));
                }
            };
            offset += chunk.len() as u64;
            done = send(conn, &chunk);
        }
        stuffer.finish(conn.out());
        Ok(())
    }

    /// QUIT: in TRANSACTION, the UPDATE state commits the deletions under
    /// the lease, then releases it.
    async fn quit<S>(&mut self, conn: &mut Conn<S>) {
        let Some(mut maildrop) = self.maildrop.take() else {
            conn.line("+OK Stratus POP3 server signing off");
            return;
        };
        let uids: Vec<u32> = maildrop
            .messages
            .iter()
            .zip(&maildrop.deleted)
            .filter(|(_, d)| **d)
            .map(|(m, _)| m.uid)
            .collect();
        let left = maildrop.messages.len() - uids.len();
        let outcome = if uids.is_empty() {
            Ok(())
        } else {
            match maildrop.lock.freshen(self.settings().lease_ttl).await {
                None => Err("the maildrop lock was lost".to_string()),
                Some(lease) => self
                    .mailstore()
                    .expunge(
                        &maildrop.account,
                        &MailboxName::inbox(),
                        &uids,
                        Some((&lease.key, lease.version)),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            }
        };
        maildrop.lock.release().await;
        match outcome {
            Ok(()) => {
                info!(user = %maildrop.account, deleted = uids.len(), "POP3 session committed");
                conn.line(&format!(
                    "+OK Stratus POP3 server signing off ({left} messages left)"
                ));
            }
            Err(e) => {
                warn!(user = %maildrop.account, error = %e, "POP3 deletions not committed");
                conn.line("-ERR [SYS/TEMP] marked messages could not all be deleted; try again");
            }
        }
    }
}
