//! One SMTP connection: the command loop, the mail transaction and the I/O.
//!
//! [`serve`] owns the connection's life: greeting, [`Session::run`] over the
//! plain stream, and — when the client asks for STARTTLS — the handshake
//! and a second `run` over the TLS stream with the session reset
//! (RFC 3207 §4.2). The [`Session`] keeps what survives between commands
//! (HELO name, TLS, error count, the [`Transaction`]); [`Conn`] keeps the
//! bytes (what was read and not yet used, replies not yet written).
//!
//! Pipelining (RFC 2920): replies are queued, and written out whenever the
//! session is about to wait for the client, so a client that sends
//! MAIL/RCPT/RCPT/DATA in one packet gets its replies in order, in as few
//! packets as possible, and never waits on a reply we are sitting on.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use smtp_proto::{
    Error as ParseError, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_BY_NOTIFY, MAIL_BY_RETURN,
    MAIL_BY_TRACE, MAIL_CONPERM, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8,
    MailFrom, RCPT_CONNEG, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER,
    RCPT_NOTIFY_SUCCESS, RCPT_RRVS_CONTINUE, RCPT_RRVS_REJECT, RcptTo, Request,
};
use stratus_core::accounts::RecipientCheck;
use stratus_core::address::Address;
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::job::{Accepted, Arrival, Envelope, Notify, Origin, Recipient, Ret};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Context;
use super::accept::accept;
use super::auth::{self, Client, Verification};
use super::content;
use super::received::{self, Trace};
use super::trust;
use crate::conn::{Conn, Fill, Flow, Line};
use crate::tls::{self, TlsInfo};
use stratus_pipeline::sieve::SmtpSieve;
use stratus_proto::smtp::data::{Chunk, DotReader, count_received};
use stratus_proto::smtp::mail::{DeclaredSize, declared_size};
use stratus_proto::smtp::reply::Reply;
use stratus_runtime::config::SmtpLimits;

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;
/// Replies held back for pipelining are written out once they reach this
/// size, so a client that sends commands without reading the replies is
/// slowed down by its own receive window instead of growing our memory.
const MAX_QUEUED_REPLIES: usize = 16 * 1024;

/// Which service a session provides; decides relaying, AUTH and the job's
/// [`Origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Port 25: mail from anyone for the domains hosted here; no AUTH;
    /// never relays.
    Mx,
    /// Ports 587/465: authenticated users sending anywhere, as addresses
    /// they own (RFC 6409).
    Submission,
}

impl SessionKind {
    fn origin(self) -> Origin {
        match self {
            SessionKind::Mx => Origin::Inbound,
            SessionKind::Submission => Origin::Submission,
        }
    }

    /// Whether mail for a domain not hosted here may be accepted.
    fn may_relay(self, authenticated: bool) -> bool {
        self == SessionKind::Submission && authenticated
    }

    fn requires_auth(self) -> bool {
        self == SessionKind::Submission
    }
}

/// Serves one SMTP connection from greeting to close; `implicit_tls` for
/// the submissions role (port 465), where TLS comes before the greeting.
pub async fn serve<S>(
    kind: SessionKind,
    stream: S,
    peer: SocketAddr,
    ctx: &Context,
    implicit_tls: bool,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session::new(ctx, kind, peer);
    let greeting = Reply::plain(
        220,
        vec![format!("{} ESMTP Stratus", ctx.shared.hostname).into()],
    );
    if implicit_tls {
        let handshake = tls::handshake(
            ctx.shared.tls.clone(),
            stream,
            ctx.limits.idle_timeout,
            "SMTP",
        );
        let Some(stream) = handshake.await else {
            return Ok(());
        };
        session.tls_started(TlsInfo::of(stream.get_ref().1));
        let mut conn = Conn::new(stream, READ_CHUNK);
        conn.queue(&greeting);
        session.run(&mut conn).await?;
        conn.close().await;
        return Ok(());
    }
    let mut conn = Conn::new(stream, READ_CHUNK);
    conn.queue(&greeting);
    if session.run(&mut conn).await? != Flow::StartTls {
        conn.close().await;
        return Ok(());
    }

    let stream = conn.start_tls("STARTTLS").await?;
    let handshake = tls::handshake(
        ctx.shared.tls.clone(),
        stream,
        ctx.limits.idle_timeout,
        "SMTP",
    );
    let Some(stream) = handshake.await else {
        return Ok(());
    };
    let info = TlsInfo::of(stream.get_ref().1);
    debug!(version = %info.version, cipher = %info.cipher, "TLS started");
    session.tls_started(info);
    let mut conn = Conn::new(stream, READ_CHUNK);
    session.run(&mut conn).await?;
    conn.close().await;
    Ok(())
}

/// The client's greeting.
#[derive(Debug)]
struct Helo {
    name: String,
    /// EHLO rather than HELO.
    extended: bool,
}

/// A mail transaction, from MAIL to the final reply.
#[derive(Debug)]
struct Transaction {
    mail_from: Option<Address>,
    /// SIZE= from MAIL, 0 when not given.
    declared_size: u64,
    smtputf8: bool,
    eight_bit: bool,
    /// BODY=BINARYMIME: only BDAT may carry the message.
    binary: bool,
    ret: Option<Ret>,
    envid: Option<String>,
    /// MAIL FROM ... REQUIRETLS (RFC 8689).
    requiretls: bool,
    recipients: Vec<Recipient>,
    /// The local user each recipient reached at RCPT, if it was one.
    users: Vec<Option<Address>>,
    /// SPF/DKIM/DMARC/ARC for this transaction.
    auth: Box<dyn Verification>,
    /// BDAT chunks received so far.
    chunks: Option<Chunks>,
}

#[derive(Debug, Default)]
struct Chunks {
    body: Vec<u8>,
    size: u64,
    over_cap: bool,
}

/// The state of one SMTP session that survives between commands.
#[derive(Debug)]
pub struct Session<'a> {
    ctx: &'a Context,
    kind: SessionKind,
    peer: SocketAddr,
    helo: Option<Helo>,
    tls: Option<TlsInfo>,
    /// The authenticated user (submission; always `None` on the MX).
    authenticated: Option<Address>,
    /// Signed in: the session's place among the user's sessions, whose
    /// signal `shutdown` now is.
    ticket: Option<crate::sessions::Ticket>,
    tx: Option<Transaction>,
    errors: u32,
    shutdown: watch::Receiver<bool>,
    /// The IP blocklists' answer about the client, looked up once when it
    /// connected (MX only); `None` inside until it is in.
    ip_listed: Option<watch::Receiver<Option<Vec<String>>>>,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a Context, kind: SessionKind, peer: SocketAddr) -> Session<'a> {
        Session {
            ctx,
            kind,
            peer,
            helo: None,
            tls: None,
            authenticated: None,
            ticket: None,
            tx: None,
            errors: 0,
            shutdown: ctx.shared.shutdown.clone(),
            ip_listed: match (&ctx.dnsbl, kind) {
                (Some(lists), SessionKind::Mx) => {
                    let (tx, rx) = watch::channel(None);
                    let lists = lists.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(Some(lists.check_ip(peer.ip()).await));
                    });
                    Some(rx)
                }
                _ => None,
            },
        }
    }

    /// The IP blocklists that list the client: waits for the lookup
    /// started at connection time, within the blocklists' deadline.
    async fn ip_listings(&self) -> Vec<String> {
        let Some(mut rx) = self.ip_listed.clone() else {
            return Vec::new();
        };
        let answer =
            tokio::time::timeout(super::dnsbl::DEADLINE, rx.wait_for(Option::is_some)).await;
        match answer {
            Ok(Ok(listed)) => listed.clone().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn limits(&self) -> &'a SmtpLimits {
        &self.ctx.limits
    }

    /// RFC 3207 §4.2: after the handshake the client starts over with EHLO.
    fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.tx = None;
    }

    /// Queues a reply, counting refusals towards the error limit.
    fn respond<S>(&mut self, conn: &mut Conn<S>, reply: Reply) {
        if reply.is_permanent() {
            self.errors += 1;
        }
        conn.queue(&reply);
    }

    /// Reads and executes commands until the session ends or STARTTLS.
    async fn run<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = self.limits();
        loop {
            let line = conn.read_line(limits.max_line, limits.idle_timeout, &mut self.shutdown);
            let line = match line.await? {
                Line::Command(line) => line,
                Line::TooLong => {
                    self.respond(conn, Reply::new(500, "5.5.2", "line too long"));
                    if self.over_error_limit(conn) {
                        return Ok(Flow::Close);
                    }
                    continue;
                }
                Line::Eof => return Ok(Flow::Close),
                Line::Idle => {
                    conn.queue(&self.closing("4.4.2", "idle timeout"));
                    return Ok(Flow::Close);
                }
                Line::Shutdown => {
                    // Revoked credentials are a security matter (RFC 3463
                    // X.7.0), not the service going away.
                    let (code, why) = if crate::sessions::revoked(self.ticket.as_ref()) {
                        ("4.7.0", "your credentials changed; sign in again")
                    } else {
                        ("4.3.2", "service shutting down")
                    };
                    conn.queue(&self.closing(code, why));
                    return Ok(Flow::Close);
                }
            };
            let flow = self.command(&line, conn).await?;
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.over_error_limit(conn) {
                return Ok(Flow::Close);
            }
            if conn.queued() >= MAX_QUEUED_REPLIES {
                conn.flush().await?;
            }
        }
    }

    fn closing(&self, status: &'static str, why: &str) -> Reply {
        Reply::new(
            421,
            status,
            format!("{} {why}, closing connection", self.ctx.shared.hostname),
        )
    }

    fn over_error_limit<S>(&self, conn: &mut Conn<S>) -> bool {
        if self.errors < self.limits().max_errors {
            return false;
        }
        debug!(errors = self.errors, "too many errors; closing");
        conn.queue(&self.closing("4.7.0", "too many errors"));
        true
    }

    async fn command<S>(&mut self, line: &[u8], conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = match parse(line) {
            Ok(request) => request,
            Err(reply) => {
                // smtp-proto calls a SIZE past its integers invalid; it is
                // a size over the limit like any other (RFC 1870: 552).
                let too_large = line
                    .get(..4)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"MAIL"))
                    && declared_size(line) == DeclaredSize::TooLarge;
                let reply = if too_large {
                    too_big(self.limits().max_message_size)
                } else {
                    reply
                };
                self.respond(conn, reply);
                return Ok(Flow::Continue);
            }
        };
        let reply = match request {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Mail { from } => self.mail(from, line).await,
            Request::Rcpt { to } => self.rcpt(to, line).await,
            Request::Data => return self.data(conn).await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => return self.bdat(conn, chunk_size as u64, is_last).await,
            Request::Rset => {
                self.tx = None;
                Reply::new(250, "2.0.0", "Ok")
            }
            Request::Noop { .. } => Reply::new(250, "2.0.0", "Ok"),
            Request::Quit => {
                conn.queue(&Reply::new(
                    221,
                    "2.0.0",
                    format!("{} closing connection", self.ctx.shared.hostname),
                ));
                return Ok(Flow::Close);
            }
            Request::Vrfy { .. } => Reply::new(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Request::Help { .. } => Reply::new(
                214,
                "2.0.0",
                "Stratus ESMTP; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
            ),
            Request::StartTls => match self.starttls() {
                Ok(reply) => {
                    conn.queue(&reply);
                    return Ok(Flow::StartTls);
                }
                Err(reply) => reply,
            },
            Request::Auth {
                mechanism,
                initial_response,
            } if self.kind == SessionKind::Submission => {
                let reply = self.auth(conn, mechanism, initial_response).await?;
                self.respond(conn, reply);
                return Ok(Flow::Continue);
            }
            Request::Auth { .. } => {
                Reply::new(503, "5.5.1", "authentication is not available on this port")
            }
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Reply::new(502, "5.5.1", "command not implemented"),
            Request::Lhlo { .. } => Reply::new(500, "5.5.1", "command unrecognized"),
        };
        self.respond(conn, reply);
        Ok(Flow::Continue)
    }

    /// EHLO / HELO: a fresh start (RFC 5321 §4.1.4), and our extensions.
    fn hello(&mut self, name: String, extended: bool) -> Reply {
        self.tx = None;
        self.helo = Some(Helo { name, extended });
        let host = self.ctx.shared.hostname.clone();
        if !extended {
            return Reply::plain(250, vec![host.into()]);
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            host.into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.limits().max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "BINARYMIME".into(),
        ];
        if self.tls.is_none() && self.ctx.shared.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        // Passwords only over TLS (RFC 4954 §4, RFC 8314).
        if self.kind == SessionKind::Submission
            && self.tls.is_some()
            && self.authenticated.is_none()
        {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("DSN".into());
        // RFC 8689 §4: only inside TLS.
        if self.tls.is_some() {
            lines.push("REQUIRETLS".into());
        }
        Reply::plain(250, lines)
    }

    fn client(&self) -> Client<'_> {
        Client {
            ip: self.peer.ip(),
            helo: self.helo.as_ref().map_or("", |h| h.name.as_str()),
            hostname: &self.ctx.shared.hostname,
        }
    }

    async fn mail(&mut self, from: MailFrom<String>, line: &[u8]) -> Reply {
        if self.helo.is_none() {
            return Reply::new(503, "5.5.1", "send EHLO or HELO first");
        }
        if self.tx.is_some() {
            return Reply::new(503, "5.5.1", "nested MAIL command");
        }
        if self.kind.requires_auth() && self.authenticated.is_none() {
            return Reply::new(530, "5.7.0", "authentication required");
        }
        if let Some(user) = self.authenticated.clone() {
            let accounts = self.ctx.shared.stores.accounts();
            if let Err(reply) = trust::check_envelope_sender(&accounts, &user, &from.address).await
            {
                return reply;
            }
            if !self.ctx.send_rate.allow(&user.account_key()) {
                info!(user = %user, "submission rate limit reached");
                return Reply::new(450, "4.7.0", "sending rate limit reached; try again later");
            }
        }
        let requiretls = from.flags & MAIL_REQUIRETLS != 0;
        if requiretls && self.tls.is_none() {
            return Reply::new(
                530,
                "5.7.10",
                "REQUIRETLS needs a TLS session: STARTTLS first",
            );
        }
        let unsupported = MAIL_CONPERM | MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE;
        if from.flags & unsupported != 0
            || from.trans_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0
            || from.by != 0
        {
            return Reply::new(555, "5.5.4", "unsupported MAIL FROM parameter");
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let max = self.limits().max_message_size;
        let declared_size = match declared_size(line) {
            DeclaredSize::Bytes(n) => n,
            DeclaredSize::TooLarge => u64::MAX,
            DeclaredSize::Absent | DeclaredSize::Invalid => from.size as u64,
        };
        if declared_size > max {
            return Reply::new(
                552,
                "5.3.4",
                format!("message size exceeds fixed maximum message size ({max} bytes)"),
            );
        }
        let mail_from = if from.address.is_empty() {
            None
        } else {
            match Address::parse(&from.address) {
                Ok(a) => Some(a),
                Err(_) => return Reply::new(501, "5.1.7", "bad sender address syntax"),
            }
        };
        if !from.address.is_ascii() && !smtputf8 {
            return Reply::new(553, "5.6.7", "non-ASCII sender address needs SMTPUTF8");
        }
        // Submission: the user is known; SPF and friends judge other
        // servers, not our own users.
        let mut auth = if self.kind == SessionKind::Submission {
            super::auth::MessageAuth::start(&super::auth::Unverified)
        } else {
            self.ctx.auth.start()
        };
        if let Some(reply) = auth.mail_from(self.client(), mail_from.as_ref()).await {
            return reply;
        }
        let ret = if from.flags & MAIL_RET_FULL != 0 {
            Some(Ret::Full)
        } else if from.flags & MAIL_RET_HDRS != 0 {
            Some(Ret::Hdrs)
        } else {
            None
        };
        self.tx = Some(Transaction {
            mail_from,
            declared_size,
            smtputf8,
            eight_bit: from.flags & (MAIL_BODY_8BITMIME | MAIL_BODY_BINARYMIME) != 0,
            binary: from.flags & MAIL_BODY_BINARYMIME != 0,
            ret,
            envid: from.env_id,
            requiretls,
            recipients: Vec::new(),
            users: Vec::new(),
            auth,
            chunks: None,
        });
        Reply::new(250, "2.1.0", "Ok")
    }

    async fn rcpt(&mut self, to: RcptTo<String>, line: &[u8]) -> Reply {
        let Some(tx) = self.tx.as_ref() else {
            return Reply::new(503, "5.5.1", "need MAIL command");
        };
        if tx.chunks.is_some() {
            return Reply::new(503, "5.5.1", "RCPT not allowed during BDAT");
        }
        if to.flags & (RCPT_CONNEG | RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE) != 0 {
            return Reply::new(555, "5.5.4", "unsupported RCPT TO parameter");
        }
        if tx.recipients.len() >= self.limits().max_recipients {
            return Reply::new(452, "4.5.3", "too many recipients");
        }
        // `RCPT TO:<Postmaster>` without a domain must work (RFC 5321 §4.5.1).
        let bare_postmaster = to.address.is_empty()
            && line
                .windows(b"postmaster".len())
                .any(|w| w.eq_ignore_ascii_case(b"postmaster"));
        let raw = if bare_postmaster {
            format!("postmaster@{}", self.ctx.shared.hostname)
        } else {
            to.address.clone()
        };
        let Ok(address) = Address::parse(&raw) else {
            return Reply::new(501, "5.1.3", "bad recipient address syntax");
        };
        if !raw.is_ascii() && !tx.smtputf8 {
            return Reply::new(553, "5.6.7", "non-ASCII recipient address needs SMTPUTF8");
        }
        let size = tx.declared_size;
        let accounts = self.ctx.shared.stores.accounts();
        let check = accounts.check_recipient(&address, size).await;
        let mut resolved = None;
        let refused =
            |code, status, why: &str| Reply::new(code, status, format!("<{address}>: {why}"));
        match check {
            Ok(RecipientCheck::User(user)) => resolved = Some(user),
            // A bounce (or reply) to an address we forwarded with.
            // Only bounces: anything else would make the address a relay
            // to its original sender.
            Ok(RecipientCheck::Srs(_)) if tx.mail_from.is_some() => {
                info!(recipient = %address, "SRS address refused: not a bounce");
                return refused(550, "5.7.1", "an SRS address takes bounces only");
            }
            Ok(RecipientCheck::Srs(sender)) => {
                info!(recipient = %address, %sender, "SRS address verified");
            }
            Ok(RecipientCheck::List(list, role)) => {
                match list_recipient(&accounts, &list, role, tx.mail_from.as_ref()).await {
                    Ok(None) => {}
                    Ok(Some(why)) => {
                        info!(recipient = %address, why, "refused by the list");
                        return refused(550, "5.7.1", why);
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot check a list");
                        return Reply::new(451, "4.3.0", "temporary failure, try again later");
                    }
                }
            }
            Ok(RecipientCheck::BadSrs(why)) => {
                info!(recipient = %address, %why, "SRS address refused");
                return refused(550, "5.7.1", &why);
            }
            // An alias whose targets are all gone would take the message
            // and deliver it nowhere.
            Ok(RecipientCheck::Alias(_) | RecipientCheck::CatchAll(_)) => {
                match accounts.expand(&address).await {
                    Ok(e) if e.is_empty() => {
                        info!(recipient = %address, "alias leads to nobody; refused");
                        return refused(550, "5.1.1", "no such user here");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "cannot expand an alias");
                        return Reply::new(451, "4.3.0", "temporary failure, try again later");
                    }
                }
            }
            Ok(RecipientCheck::NotLocal) if self.kind.may_relay(self.authenticated.is_some()) => {}
            Ok(RecipientCheck::NotLocal) if bare_postmaster => {
                return refused(550, "5.1.1", "no postmaster mailbox here");
            }
            Ok(RecipientCheck::NotLocal) => return refused(554, "5.7.1", "relay access denied"),
            Ok(RecipientCheck::UnknownUser) => {
                return refused(550, "5.1.1", "no such user here");
            }
            Ok(RecipientCheck::OverQuota(_)) => return refused(452, "4.2.2", "mailbox full"),
            Err(e) => {
                warn!(error = %e, "cannot check a recipient");
                return Reply::new(451, "4.3.0", "temporary failure, try again later");
            }
        }
        let notify = (to.flags
            & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER)
            != 0)
            .then_some(Notify {
                success: to.flags & RCPT_NOTIFY_SUCCESS != 0,
                failure: to.flags & RCPT_NOTIFY_FAILURE != 0,
                delay: to.flags & RCPT_NOTIFY_DELAY != 0,
                never: to.flags & RCPT_NOTIFY_NEVER != 0,
            });
        let recipient = Recipient {
            orcpt: to.orcpt.map(|a| format!("rfc822;{}", xtext(&a))),
            forwarded_by: None,
            notify,
            address,
        };
        let tx = self.tx.as_mut().expect("checked above");
        let key = recipient.address.account_key();
        if !tx.recipients.iter().any(|r| r.address.account_key() == key) {
            tx.recipients.push(recipient);
            tx.users.push(resolved);
        }
        Reply::new(250, "2.1.5", "Ok")
    }

    /// Whether the transaction may take message data now.
    fn ready_for_data(&self, bdat: bool) -> Result<(), Reply> {
        let Some(tx) = &self.tx else {
            return Err(Reply::new(503, "5.5.1", "need MAIL command"));
        };
        if tx.recipients.is_empty() {
            return Err(Reply::new(554, "5.5.1", "no valid recipients"));
        }
        if !bdat && tx.chunks.is_some() {
            return Err(Reply::new(503, "5.5.1", "DATA not allowed during BDAT"));
        }
        if !bdat && tx.binary {
            return Err(Reply::new(
                503,
                "5.5.1",
                "BODY=BINARYMIME needs BDAT, not DATA",
            ));
        }
        Ok(())
    }

    /// Far past the size limit there is no point in staying in sync: the
    /// client is answered and cut off.
    fn hard_cap(&self) -> u64 {
        self.limits()
            .max_message_size
            .saturating_mul(2)
            .saturating_add(1 << 20)
    }

    async fn data<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Err(reply) = self.ready_for_data(false) {
            self.respond(conn, reply);
            return Ok(Flow::Continue);
        }
        conn.queue(&Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        let limits = self.limits();
        let mut reader = DotReader::new(limits.max_message_size);
        let mut body = Vec::new();
        loop {
            let (used, done) = reader.feed(conn.buffered(), &mut body);
            conn.consume(used);
            if done {
                break;
            }
            if reader.size() > self.hard_cap() {
                self.tx = None;
                let reply = self.counted(too_big(limits.max_message_size), "size");
                self.respond(conn, reply);
                return Ok(Flow::Close);
            }
            match conn.fill(limits.idle_timeout, None).await? {
                Fill::Data => {}
                // A client gone mid-message leaves nothing behind.
                Fill::Eof | Fill::Shutdown => {
                    self.tx = None;
                    return Ok(Flow::Close);
                }
                Fill::Idle => {
                    self.tx = None;
                    conn.queue(&self.closing("4.4.2", "timeout while receiving data"));
                    return Ok(Flow::Close);
                }
            }
        }
        let tx = self.tx.take().expect("checked by ready_for_data");
        let reply = if reader.saw_bare_line_ending() {
            info!("refused a message with a bare LF or CR");
            self.counted(Reply::new(550, "5.5.2", "bare LF/CR not allowed"), "syntax")
        } else if reader.over_cap() {
            self.counted(too_big(limits.max_message_size), "size")
        } else {
            self.finish(tx, body).await
        };
        self.respond(conn, reply);
        Ok(Flow::Continue)
    }

    async fn bdat<S>(&mut self, conn: &mut Conn<S>, size: u64, last: bool) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = self.limits();
        if size > self.hard_cap() {
            self.tx = None;
            let reply = self.counted(too_big(limits.max_message_size), "size");
            self.respond(conn, reply);
            return Ok(Flow::Close);
        }
        // The chunk is read whatever happens to it, to stay in step.
        let ready = self.ready_for_data(true);
        let mut keep = None;
        if ready.is_ok()
            && let Some(tx) = self.tx.as_mut()
        {
            let chunks = tx.chunks.get_or_insert_with(Chunks::default);
            chunks.size = chunks.size.saturating_add(size);
            if chunks.size > limits.max_message_size && !chunks.over_cap {
                chunks.over_cap = true;
                chunks.body = Vec::new();
            }
            if !chunks.over_cap {
                keep = Some(&mut chunks.body);
            }
        }
        let mut chunk = Chunk::new(size);
        while chunk.left() > 0 {
            if conn.buffered().is_empty() {
                match conn.fill(limits.idle_timeout, None).await? {
                    Fill::Data => {}
                    Fill::Eof | Fill::Shutdown => {
                        self.tx = None;
                        return Ok(Flow::Close);
                    }
                    Fill::Idle => {
                        self.tx = None;
                        conn.queue(&self.closing("4.4.2", "timeout while receiving data"));
                        return Ok(Flow::Close);
                    }
                }
            }
            let n = chunk.feed(conn.buffered(), keep.as_deref_mut());
            conn.consume(n);
        }
        if let Err(reply) = ready {
            self.respond(conn, reply);
            return Ok(Flow::Continue);
        }
        let tx = self.tx.as_mut().expect("checked by ready_for_data");
        let chunks = tx.chunks.as_mut().expect("created above");
        let reply = if chunks.over_cap {
            // The transaction is over; later chunks get 503.
            self.tx = None;
            self.counted(too_big(limits.max_message_size), "size")
        } else if !last {
            Reply::new(250, "2.0.0", format!("{size} octets received"))
        } else {
            let body = std::mem::take(&mut chunks.body);
            let tx = self.tx.take().expect("present");
            self.finish(tx, body).await
        };
        self.respond(conn, reply);
        Ok(Flow::Continue)
    }

    /// The refusal a local recipient's Sieve script asks for (`reject`,
    /// `ereject`; RFC 5429 §2.1.1 prefers it at SMTP time), when the
    /// message is for that user alone: the sender's server tells the
    /// sender, and we send nothing. With more recipients, route answers
    /// after acceptance. A script we cannot read refuses nothing.
    async fn sieve_refusal(
        &self,
        tx: &Transaction,
        body: &[u8],
        filings: &[stratus_core::job::Filing],
        results: &str,
    ) -> Option<Reply> {
        let ([only], [Some(user)]) = (tx.recipients.as_slice(), tx.users.as_slice()) else {
            return None;
        };
        let key = user.account_key();
        if self.ctx.sieve_idle.recently(&key) {
            return None;
        }
        let stores = &self.ctx.shared.stores;
        // The message as the script sees it after acceptance: the filter's
        // Authentication-Results and this recipient's verdict in front.
        let mut raw = stratus_pipeline::filter::results_field(&self.ctx.shared.hostname, results);
        let rcpt_key = only.address.account_key();
        for f in filings.iter().filter(|f| f.recipient == rcpt_key) {
            raw.push_str(&f.headers);
        }
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        match stratus_pipeline::sieve::rejects(
            &stores.index,
            &stores.blobs,
            user,
            &only.address,
            tx.mail_from.as_ref(),
            raw,
        )
        .await
        {
            Ok(SmtpSieve::NoScript) => {
                self.ctx.sieve_idle.note(&key);
                None
            }
            Ok(SmtpSieve::Passes) => None,
            Ok(SmtpSieve::Rejects(reason)) => {
                info!(recipient = %only.address, "refused by the recipient's sieve script");
                // One line, printable: the reason is the user's text.
                let reason: String = reason
                    .chars()
                    .map(|c| match c {
                        c if c.is_ascii_control() => ' ',
                        c if !c.is_ascii() => '?',
                        c => c,
                    })
                    .take(200)
                    .collect();
                let reason = match reason.trim() {
                    "" => "rejected by the recipient's filter",
                    r => r,
                };
                Some(Reply::new(550, "5.7.1", reason.to_string()))
            }
            Err(e) => {
                warn!(error = %e, "cannot run the recipient's sieve script before accepting; route runs it");
                None
            }
        }
    }

    /// The end of the message ([`Self::decide`]), counted in
    /// `stratus_smtp_messages_total`.
    async fn finish(&self, tx: Transaction, body: Vec<u8>) -> Reply {
        let (reply, reason) = self.decide(tx, body).await;
        self.counted(reply, reason)
    }

    /// `reply` to the end of a message, counted with `reason`.
    fn counted(&self, reply: Reply, reason: &'static str) -> Reply {
        let role = match self.kind {
            SessionKind::Mx => "mx",
            SessionKind::Submission => "submission",
        };
        let result = match reply.code {
            200..=299 => "accepted",
            400..=499 => "deferred",
            _ => "refused",
        };
        stratus_core::metrics::metrics().smtp_message(role, result, reason);
        reply
    }

    /// The end of the message: loop check, authentication, then durable
    /// acceptance — and only then 250; with the reason label of a refusal
    /// (`none` when accepted).
    async fn decide(&self, mut tx: Transaction, mut body: Vec<u8>) -> (Reply, &'static str) {
        let limits = self.limits();
        let hops = count_received(&body);
        if hops > limits.max_hops {
            info!(hops, "refused a message with too many Received headers");
            let reply = Reply::new(
                554,
                "5.4.6",
                format!("too many hops ({hops} Received headers): mail loop?"),
            );
            return (reply, "loop");
        }
        let verdict = tx
            .auth
            .message(self.client(), tx.mail_from.as_ref(), &body)
            .await;
        if let Some(reply) = auth::refusal(&verdict, limits.reject_dmarc_failures) {
            info!(reply = %reply, "refused by message authentication");
            return (reply, "dmarc");
        }
        let accounts = self.ctx.shared.stores.accounts();
        let mut sign_as = None;
        let mut hosted_dmarc_failure = None;
        if let Some(user) = &self.authenticated {
            match trust::check_authors(&accounts, user, tx.mail_from.as_ref(), &body).await {
                Ok(domain) => sign_as = domain,
                Err(reply) => {
                    info!(user = %user, reply = %reply, "refused a message with an author the user may not send as");
                    return (reply, "sender");
                }
            }
        } else if verdict.dmarc_failure.is_some() {
            match trust::hosted_author(&accounts, &body).await {
                Ok(Some(domain)) => {
                    match trust::reaches_no_local_user(&accounts, &tx.recipients).await {
                        Ok(true) => {
                            info!(%domain, "refused to forward a message that claims a hosted domain and fails DMARC");
                            let reply = Reply::new(
                                550,
                                "5.7.1",
                                format!(
                                    "mail from {domain} that fails its DMARC check is not forwarded"
                                ),
                            );
                            return (reply, "dmarc");
                        }
                        Ok(false) => hosted_dmarc_failure = Some(domain),
                        Err(reply) => return (reply, "unavailable"),
                    }
                }
                Ok(None) => {}
                Err(reply) => return (reply, "unavailable"),
            }
        }

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        content::strip(&mut body);
        let from_outside = self.kind == SessionKind::Mx && self.authenticated.is_none();
        let ip_listed = if from_outside {
            self.ip_listings().await
        } else {
            Vec::new()
        };
        let facts = content::Facts {
            mail_from: tx.mail_from.as_ref(),
            recipients: tx.recipients.iter().map(|r| &r.address).collect(),
            auth_results: &verdict.results,
            dmarc_failure: verdict.dmarc_failure,
            listed: ip_listed,
            now,
        };
        let checked = content::check(self.ctx, body, &facts, from_outside).await;
        body = checked.body;
        let filings = checked.filings;
        let spam_listed = checked.listed;
        if let Some(refusal) = checked.refusal {
            return refusal;
        }
        if let Some(reply) = self
            .sieve_refusal(&tx, &body, &filings, &verdict.results)
            .await
        {
            return (reply, "sieve");
        }
        if let Some(mark) = checked.mark {
            body.splice(0..0, mark.into_bytes());
        }
        let queue_id = QueueId::generate();
        if self.kind == SessionKind::Submission {
            complete_header(&mut body, &queue_id, &self.ctx.shared.hostname, now);
        }
        let helo = self.helo.as_ref();
        let protocol = received::protocol(
            helo.is_some_and(|h| h.extended),
            self.tls.is_some(),
            tx.smtputf8,
            self.authenticated.is_some(),
        );
        let single = match tx.recipients.as_slice() {
            [only] => Some(&only.address),
            _ => None,
        };
        let trace = Trace {
            helo: helo.map_or("", |h| h.name.as_str()),
            rdns: None,
            ip: self.peer.ip(),
            hostname: &self.ctx.shared.hostname,
            protocol: &protocol,
            queue_id: &queue_id,
            tls: self.tls.as_ref(),
            single_recipient: single,
            time: now,
        }
        .header();
        body.reserve_exact(trace.len());
        body.splice(0..0, trace.into_bytes());

        let recipients = tx.recipients.len();
        let accepted = Accepted {
            body: BlobKey::for_message(&queue_id),
            queue_id: queue_id.clone(),
            size: body.len() as u64,
            received_at: now,
            origin: self.kind.origin(),
            auth_results: Some(verdict.results),
            arrival: (self.kind.origin() == Origin::Inbound).then(|| Arrival {
                ip: self.peer.ip(),
                helo: helo.map_or("", |h| h.name.as_str()).to_string(),
            }),
            dmarc_failure: verdict.dmarc_failure,
            hosted_dmarc_failure,
            author_policy: verdict.author_policy,
            sign_as,
            headers: String::new(),
            spam_listed,
            filings,
            envelope: Envelope {
                mail_from: tx.mail_from,
                recipients: tx.recipients,
                smtputf8: tx.smtputf8,
                eight_bit: tx.eight_bit,
                ret: tx.ret,
                envid: tx.envid,
                requiretls: tx.requiretls,
            },
        };
        let size = body.len();
        match accept(&self.ctx.shared.stores, accepted, Bytes::from(body)).await {
            Ok(()) => {
                info!(queue_id = %queue_id, size, recipients, tls = self.tls.is_some(), "accepted");
                let reply = Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}"));
                (reply, "none")
            }
            Err(e) => {
                warn!(error = %e, "cannot store an incoming message");
                let reply = Reply::new(
                    451,
                    "4.3.0",
                    "temporary failure storing the message, try again later",
                );
                (reply, "unavailable")
            }
        }
    }

    /// AUTH PLAIN and LOGIN (RFC 4954) on submission, over TLS only,
    /// through the login throttle every protocol shares.
    async fn auth<S>(
        &mut self,
        conn: &mut Conn<S>,
        mechanism: u64,
        initial: String,
    ) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.authenticated.is_some() {
            return Ok(Reply::new(503, "5.5.1", "already authenticated"));
        }
        if self.tx.is_some() {
            return Ok(Reply::new(
                503,
                "5.5.1",
                "AUTH not allowed during a mail transaction",
            ));
        }
        if self.tls.is_none() {
            return Ok(Reply::new(
                538,
                "5.7.11",
                "encryption required: use STARTTLS first",
            ));
        }
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = match initial.as_str() {
                "" => match self.sasl_line(conn, "").await? {
                    Some(r) => r,
                    None => return Ok(Reply::new(501, "5.0.0", "authentication cancelled")),
                },
                "=" => String::new(),
                ir => ir.to_string(),
            };
            match stratus_proto::sasl::sasl_plain(&response) {
                Ok(c) => c,
                Err(e) => return Ok(Reply::new(501, "5.5.2", e)),
            }
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            let user = match initial.as_str() {
                "" => match self.sasl_line(conn, "VXNlcm5hbWU6").await? {
                    Some(r) => r,
                    None => return Ok(Reply::new(501, "5.0.0", "authentication cancelled")),
                },
                ir => ir.to_string(),
            };
            let Some(password) = self.sasl_line(conn, "UGFzc3dvcmQ6").await? else {
                return Ok(Reply::new(501, "5.0.0", "authentication cancelled"));
            };
            match (
                stratus_proto::sasl::base64_text(&user),
                stratus_proto::sasl::base64_text(&password),
            ) {
                (Some(u), Some(p)) => (u, p),
                _ => return Ok(Reply::new(501, "5.5.2", "invalid base64")),
            }
        } else {
            return Ok(Reply::new(
                504,
                "5.5.4",
                "unsupported mechanism; use PLAIN or LOGIN",
            ));
        };
        let (user, password) = credentials;
        Ok(
            match crate::login::login(&self.ctx.shared, self.peer, "submission", &user, &password)
                .await
            {
                crate::login::Login::Ok(signed) => {
                    self.ticket = Some(crate::sessions::sign_in(
                        &self.ctx.shared,
                        &signed,
                        &mut self.shutdown,
                    ));
                    self.authenticated = Some(signed.address);
                    Reply::new(235, "2.7.0", "authentication successful")
                }
                crate::login::Login::Failed | crate::login::Login::Blocked => {
                    Reply::new(535, "5.7.8", "authentication credentials invalid")
                }
                crate::login::Login::Unavailable => {
                    Reply::new(454, "4.7.0", "temporary authentication failure")
                }
            },
        )
    }

    /// A SASL challenge (`334`) and the client's response (see
    /// [`Conn::sasl_response`]).
    async fn sasl_line<S>(
        &mut self,
        conn: &mut Conn<S>,
        challenge: &str,
    ) -> io::Result<Option<String>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = self.limits();
        conn.sasl_response(
            &format!("334 {challenge}"),
            limits.max_line,
            limits.idle_timeout,
            &mut self.shutdown,
        )
        .await
    }

    fn starttls(&self) -> Result<Reply, Reply> {
        if self.tls.is_some() {
            return Err(Reply::new(503, "5.5.1", "TLS already active"));
        }
        if self.ctx.shared.tls.is_none() {
            return Err(Reply::new(454, "4.7.0", "TLS not available"));
        }
        if self.tx.is_some() {
            return Err(Reply::new(
                503,
                "5.5.1",
                "STARTTLS not allowed during a mail transaction",
            ));
        }
        Ok(Reply::new(220, "2.0.0", "Ready to start TLS"))
    }
}

/// RFC 6409 §8: a submitted message gets the Message-ID and Date fields
/// it lacks, at the top of its header.
pub(crate) fn complete_header(body: &mut Vec<u8>, queue_id: &QueueId, hostname: &str, now: i64) {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(body.len(), |i| i + 2);
    let header = &body[..end];
    let has = |name: &[u8]| {
        header
            .split(|&b| b == b'\n')
            .any(|line| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name))
    };
    let mut added = String::new();
    if !has(b"message-id:") {
        added.push_str(&format!("Message-ID: <{queue_id}@{hostname}>\r\n"));
    }
    if !has(b"date:") {
        added.push_str(&format!("Date: {}\r\n", received::rfc5322_date(now)));
    }
    body.splice(0..0, added.into_bytes());
}

fn too_big(max: u64) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!("message size exceeds fixed maximum message size ({max} bytes)"),
    )
}

/// Parses one command line (with its line ending) into a request, or the
/// reply that refuses it.
fn parse(line: &[u8]) -> Result<Request<String>, Reply> {
    if std::str::from_utf8(line).is_err() {
        return Err(Reply::new(500, "5.5.2", "command is not valid UTF-8"));
    }
    Request::parse(&mut line.iter())
        .map(Request::into_owned)
        .map_err(|e| match e {
            ParseError::UnknownCommand => Reply::new(500, "5.5.1", "command unrecognized"),
            ParseError::InvalidSenderAddress => {
                Reply::new(501, "5.1.7", "bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                Reply::new(501, "5.1.3", "bad recipient address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                Reply::new(501, "5.5.2", format!("syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                Reply::new(501, "5.5.4", format!("invalid {param} parameter"))
            }
            ParseError::UnsupportedParameter { param } => {
                Reply::new(555, "5.5.4", format!("unsupported parameter {param}"))
            }
            _ => Reply::new(500, "5.5.2", "syntax error"),
        })
}

/// RFC 3461 §4 xtext: printable ASCII but `+` and `=` as is, the rest `+HH`.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// SMTP replies on the shared connection.
impl<S> Conn<S> {
    fn queue(&mut self, reply: &Reply) {
        reply.write_to(self.out());
    }
}

/// Why mail from `sender` to `list`'s address for `role` is refused at
/// RCPT, if it is: posts to a members-only list from a non-member (mail
/// that reaches the list through an alias is held for its owners
/// instead), bounces that are not from the null sender, unsubscribe
/// requests that are.
async fn list_recipient(
    accounts: &stratus_core::accounts::Accounts,
    list: &Address,
    role: stratus_core::lists::Role,
    sender: Option<&Address>,
) -> Result<Option<&'static str>, stratus_core::accounts::AccountError> {
    use stratus_core::lists::{Policy, Role};
    Ok(match (role, sender) {
        (Role::Bounces, Some(_)) => Some("this address takes bounces only"),
        (Role::Bounces, None) => None,
        (Role::Unsubscribe, None) => Some("an unsubscribe request needs a sender"),
        (Role::Unsubscribe, Some(_)) => None,
        (Role::Post, sender) => {
            let policy = accounts.list(list).await?.map(|l| l.policy);
            match (policy, sender) {
                (Some(Policy::Members), None) => Some("only members may post to this list"),
                (Some(Policy::Members), Some(s)) if accounts.member(list, s).await?.is_none() => {
                    Some("only members may post to this list")
                }
                _ => None,
            }
        }
    })
}
