//! One IMAP connection: the states of RFC 9051 (not authenticated,
//! authenticated, selected, logout) and the I/O.
//!
//! [`serve`] owns the connection's life: the TLS handshake first on the
//! imaps role, the greeting, [`Session::run`] over the stream, and on
//! STARTTLS the handshake and a second `run` over the TLS stream, with
//! plain-text input pipelined behind STARTTLS thrown away. Commands are
//! read whole, literals included ([`Session::read_command`]), parsed by
//! [`stratus_proto::imap::parse`] without I/O, and answered; untagged data and
//! the tagged reply are queued and written when the session next waits
//! for the client.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use stratus_core::accounts::{AccountError, MailboxRecord};
use stratus_core::address::Address;
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailbox::{MailboxName, SpecialUse};
use stratus_core::mailstore::{Appended, Mailstore, NewMessage, Signal, normalize_flags};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::fetch::{self, FetchError, Renderer};
use super::search::{self, Candidate, Need};
use super::selected::{Selected, compact, flag_list, in_order};
use super::sort;
use crate::config::ImapSettings;
use crate::conn::{Conn, Fill, Flow, Line};
use crate::deflate::Deflate;
use crate::login::{self, Login};
use crate::session::Context;
use crate::tls;
use stratus_proto::imap::command::{
    self, Command, Fetch, FetchAtt, List, Search, SearchKey, SortKey, StatusItem, Store, StoreMode,
    ThreadAlgorithm,
};
use stratus_proto::imap::framing::{is_append, literal_at_end, tag_of};
use stratus_proto::imap::pattern::{canonical_inbox, matches_pattern};
use stratus_proto::imap::wire::{self, Lossy};
use stratus_proto::sasl;

/// Bytes asked of the stream per read; small, so an idle connection
/// costs little.
const READ_CHUNK: usize = 4 * 1024;
/// Replies are written out once this much is queued.
const MAX_QUEUED: usize = 256 * 1024;
/// Messages rendered per index read in FETCH.
const FETCH_BATCH: usize = 200;

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// Serves one IMAP connection; `implicit_tls` for the imaps role.
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
    if implicit_tls {
        let Some(stream) = handshake(ctx, stream).await else {
            return Ok(());
        };
        session.tls = true;
        let mut conn = Conn::new(stream, READ_CHUNK);
        session.greet(&mut conn);
        return drive(&mut session, conn).await;
    }
    let mut conn = Conn::new(stream, READ_CHUNK);
    session.greet(&mut conn);
    match session.run(&mut conn).await? {
        Flow::StartTls => {
            let stream = conn.start_tls("STARTTLS").await?;
            let Some(stream) = handshake(ctx, stream).await else {
                return Ok(());
            };
            session.tls = true;
            drive(&mut session, Conn::new(stream, READ_CHUNK)).await
        }
        Flow::Compress => compressed(&mut session, conn).await,
        Flow::Continue | Flow::Close => {
            conn.close().await;
            Ok(())
        }
    }
}

/// Runs the session over `conn` (TLS already settled) to its end, through
/// COMPRESS if the client asks for it.
async fn drive<S>(session: &mut Session<'_>, mut conn: Conn<S>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if session.run(&mut conn).await? == Flow::Compress {
        return compressed(session, conn).await;
    }
    conn.close().await;
    Ok(())
}

/// The rest of the session over DEFLATE (RFC 4978): the tagged OK went
/// out plain, everything after it both ways is compressed.
async fn compressed<S>(session: &mut Session<'_>, conn: Conn<S>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (stream, pending) = conn.into_parts().await?;
    session.compressed = true;
    let mut conn = Conn::new(Deflate::new(stream, pending), READ_CHUNK);
    session.run(&mut conn).await?;
    conn.close().await;
    Ok(())
}

async fn handshake<S>(ctx: &Context, stream: S) -> Option<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tls::handshake(ctx.tls.clone(), stream, ctx.imap.idle_timeout, "IMAP").await
}

/// A command as read: whole, or why not.
enum Input {
    Command(Vec<u8>),
    /// Refused before it was all read; the reply is queued.
    Refused,
    Eof,
    Idle,
    Shutdown,
}

/// What a command handler tells the loop.
type Reply = Result<String, Refusal>;

/// A tagged NO or BAD, with its text (response code included).
enum Refusal {
    No(String),
    Bad(String),
}

fn no(text: impl Into<String>) -> Refusal {
    Refusal::No(text.into())
}

fn bad(text: impl Into<String>) -> Refusal {
    Refusal::Bad(text.into())
}

impl From<AccountError> for Refusal {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::MailboxExists(_) => no(format!("[ALREADYEXISTS] {e}")),
            AccountError::UnknownMailbox(_) => no(format!("[NONEXISTENT] {e}")),
            AccountError::InvalidMailbox(_) => no(format!("[CANNOT] {e}")),
            AccountError::TooManyMailboxes => no(format!("[LIMIT] {e}")),
            other => {
                warn!(error = %other, "IMAP: store error");
                no("[UNAVAILABLE] the mail store cannot be reached now; try again")
            }
        }
    }
}

/// Capabilities enabled with ENABLE.
#[derive(Debug, Default, Clone, Copy)]
struct Enabled {
    condstore: bool,
    qresync: bool,
    utf8: bool,
    rev2: bool,
}

struct Session<'a> {
    ctx: &'a Context,
    peer: SocketAddr,
    tls: bool,
    /// Bad or refused commands in a row.
    errors: u32,
    account: Option<Address>,
    selected: Option<Selected>,
    enabled: Enabled,
    /// The SEARCHRES result, as UIDs.
    saved: Vec<u32>,
    shutdown: watch::Receiver<bool>,
    /// When the view last caught up with the store.
    last_sync: Instant,
    /// BYE was sent: the connection closes after this command.
    closing: bool,
    /// COMPRESS=DEFLATE is on.
    compressed: bool,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a Context, peer: SocketAddr) -> Session<'a> {
        Session {
            ctx,
            peer,
            tls: false,
            errors: 0,
            account: None,
            selected: None,
            enabled: Enabled::default(),
            saved: Vec::new(),
            shutdown: ctx.shutdown.clone(),
            last_sync: Instant::now(),
            closing: false,
            compressed: false,
        }
    }

    fn settings(&self) -> &'a ImapSettings {
        &self.ctx.imap
    }

    fn store(&self) -> Mailstore {
        Mailstore::new(self.ctx.stores.index.clone(), self.ctx.stores.blobs.clone())
    }

    fn plaintext_ok(&self) -> bool {
        self.tls || self.peer.ip().to_canonical().is_loopback() || self.settings().allow_plaintext
    }

    fn append_limit(&self) -> u64 {
        self.ctx.smtp.max_message_size
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 IMAP4rev2");
        if self.account.is_none() {
            if !self.tls && self.ctx.tls.is_some() {
                caps.push_str(" STARTTLS");
            }
            if self.plaintext_ok() {
                caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps.push_str(
            " SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN \
             SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH \
             SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE BINARY UTF8=ACCEPT",
        );
        if self.account.is_some() && !self.compressed {
            caps.push_str(" COMPRESS=DEFLATE");
        }
        let _ = write!(caps, " APPENDLIMIT={}", self.append_limit());
        caps
    }

    fn greet<S>(&self, conn: &mut Conn<S>) {
        conn.line(&format!(
            "* OK [CAPABILITY {}] Stratus IMAP server ready",
            self.capabilities()
        ));
    }

    async fn run<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let line = match self.read_command(conn).await? {
                Input::Command(line) => line,
                Input::Refused => {
                    self.errors += 1;
                    if self.too_many_errors(conn) {
                        return Ok(Flow::Close);
                    }
                    continue;
                }
                Input::Eof => return Ok(Flow::Close),
                Input::Idle => {
                    conn.line("* BYE autologout: idle for too long");
                    return Ok(Flow::Close);
                }
                Input::Shutdown => {
                    conn.line("* BYE [UNAVAILABLE] server shutting down");
                    return Ok(Flow::Close);
                }
            };
            let tagged = match stratus_proto::imap::parse(&line) {
                Ok(t) => t,
                Err(invalid) => {
                    self.errors += 1;
                    match invalid.tag {
                        Some(tag) => conn.line(&format!("{tag} BAD {}", invalid.reason)),
                        None => conn.line(&format!("* BAD {}", invalid.reason)),
                    }
                    if self.too_many_errors(conn) {
                        return Ok(Flow::Close);
                    }
                    continue;
                }
            };
            let flow = self.command(conn, tagged.tag, tagged.command).await?;
            if flow != Flow::Continue || self.closing {
                return Ok(if self.closing { Flow::Close } else { flow });
            }
            if self.too_many_errors(conn) {
                return Ok(Flow::Close);
            }
            if conn.queued() >= MAX_QUEUED {
                conn.flush().await?;
            }
        }
    }

    fn too_many_errors<S>(&self, conn: &mut Conn<S>) -> bool {
        if self.errors >= self.settings().max_errors {
            debug!(errors = self.errors, peer = %self.peer, "too many bad IMAP commands; closing");
            conn.line("* BYE too many bad commands");
            return true;
        }
        false
    }

    /// Reads one command with its literals. A synchronising literal gets
    /// `+` before the client sends it; one that is too large is refused
    /// instead, which ends the command. A non-synchronising literal that
    /// is too large cannot be refused in time: it is read and dropped.
    async fn read_command<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Input>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let settings = self.settings();
        let mut command = Vec::new();
        let mut limit: Option<u64> = None;
        loop {
            let line = match conn
                .read_line(settings.max_line, settings.idle_timeout, &mut self.shutdown)
                .await?
            {
                Line::Command(line) => line,
                Line::TooLong => {
                    let tag = tag_of(&command);
                    conn.line(&format!("{tag} BAD command line too long"));
                    return Ok(Input::Refused);
                }
                Line::Eof => return Ok(Input::Eof),
                Line::Idle => return Ok(Input::Idle),
                Line::Shutdown => return Ok(Input::Shutdown),
            };
            if command.is_empty() && line.iter().all(|b| b.is_ascii_whitespace()) {
                // Blank lines between commands are harmless.
                continue;
            }
            command.extend_from_slice(&line);
            let Some((size, sync)) = literal_at_end(&line) else {
                return Ok(Input::Command(command));
            };
            let limit = *limit.get_or_insert_with(|| {
                if is_append(&command) {
                    self.append_limit()
                } else {
                    settings.max_command as u64
                }
            });
            let tag = tag_of(&command);
            if command.len() as u64 + size > limit {
                if sync {
                    conn.line(&format!(
                        "{tag} NO [TOOBIG] the literal of {size} octets is over the limit of {limit}"
                    ));
                    return Ok(Input::Refused);
                }
                if !conn
                    .discard(size, settings.idle_timeout, &mut self.shutdown)
                    .await?
                {
                    return Ok(Input::Eof);
                }
                // The rest of the command line follows the literal.
                let _ = conn
                    .read_line(settings.max_line, settings.idle_timeout, &mut self.shutdown)
                    .await?;
                conn.line(&format!(
                    "{tag} NO [TOOBIG] the literal of {size} octets is over the limit of {limit}"
                ));
                return Ok(Input::Refused);
            }
            if sync {
                conn.line("+ Ready for literal data");
            }
            if !conn
                .read_exact_into(
                    size as usize,
                    &mut command,
                    settings.idle_timeout,
                    &mut self.shutdown,
                )
                .await?
            {
                return Ok(Input::Eof);
            }
        }
    }

    async fn command<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: String,
        cmd: Command,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = cmd.name();
        let reply: Reply = match cmd {
            Command::Capability => {
                conn.line(&format!("* CAPABILITY {}", self.capabilities()));
                Ok("CAPABILITY completed".into())
            }
            Command::Noop => Ok("NOOP completed".into()),
            Command::Logout => {
                conn.line("* BYE Stratus IMAP server logging out");
                conn.line(&format!("{tag} OK LOGOUT completed"));
                return Ok(Flow::Close);
            }
            Command::Id(params) => {
                let client: Vec<String> = params
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                    .take(4)
                    .collect();
                debug!(peer = %self.peer, client = ?client, "IMAP ID");
                conn.line(&format!(
                    "* ID (\"name\" \"Stratus\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                Ok("ID completed".into())
            }
            Command::Enable(caps) => self.enable(conn, caps),
            Command::StartTls => {
                if self.tls || self.compressed {
                    Err(bad("TLS is already active"))
                } else if self.account.is_some() {
                    Err(bad("STARTTLS is only allowed before login"))
                } else if self.ctx.tls.is_none() {
                    Err(no("TLS is not available"))
                } else {
                    conn.line(&format!("{tag} OK Begin TLS negotiation now"));
                    return Ok(Flow::StartTls);
                }
            }
            Command::Login { user, password } => self.login_command(&user, &password).await,
            Command::Compress(mechanism) if self.account.is_some() => {
                if self.compressed {
                    Err(no("[COMPRESSIONACTIVE] DEFLATE is already active"))
                } else if mechanism != "DEFLATE" {
                    Err(bad(format!("unknown compression mechanism {mechanism}")))
                } else {
                    conn.line(&format!("{tag} OK DEFLATE active"));
                    return Ok(Flow::Compress);
                }
            }
            Command::Authenticate { mechanism, initial } => {
                self.authenticate(conn, &mechanism, initial).await?
            }
            _ if self.account.is_none() => Err(bad(format!("{name} needs you to log in first"))),
            other => self.authenticated(conn, &tag, other).await?,
        };
        // New mail and flag changes go out before the tagged reply;
        // expunges too, except after the commands by sequence number that
        // RFC 9051 §7.5.1 forbids them after.
        let expunges = !matches!(name, "FETCH" | "STORE" | "SEARCH" | "COPY" | "MOVE");
        if self.selected.is_some() && !matches!(name, "LOGOUT") {
            self.report_changes(conn, expunges, false, None).await;
        }
        match reply {
            Ok(text) => {
                self.errors = 0;
                conn.line(&format!("{tag} OK {text}"));
            }
            Err(Refusal::No(text)) => {
                conn.line(&format!("{tag} NO {text}"));
            }
            Err(Refusal::Bad(text)) => {
                self.errors += 1;
                conn.line(&format!("{tag} BAD {text}"));
            }
        }
        Ok(Flow::Continue)
    }

    fn enable<S>(&mut self, conn: &mut Conn<S>, caps: Vec<String>) -> Reply {
        if self.account.is_none() {
            return Err(bad("ENABLE needs you to log in first"));
        }
        let mut enabled = Vec::new();
        for cap in caps {
            let known = match cap.as_str() {
                "CONDSTORE" => Some(&mut self.enabled.condstore),
                "QRESYNC" => {
                    // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                    if !self.enabled.condstore {
                        self.enabled.condstore = true;
                        enabled.push("CONDSTORE".to_string());
                    }
                    Some(&mut self.enabled.qresync)
                }
                "UTF8=ACCEPT" => Some(&mut self.enabled.utf8),
                "IMAP4REV2" => Some(&mut self.enabled.rev2),
                _ => None,
            };
            if let Some(flag) = known
                && !*flag
            {
                *flag = true;
                enabled.push(if cap == "IMAP4REV2" {
                    "IMAP4rev2".to_string()
                } else {
                    cap
                });
            }
        }
        conn.line(format!("* ENABLED {}", enabled.join(" ")).trim_end());
        Ok("ENABLE completed".into())
    }

    async fn login_command(&mut self, user: &[u8], password: &[u8]) -> Reply {
        if self.account.is_some() {
            return Err(bad("already logged in"));
        }
        if !self.plaintext_ok() {
            return Err(no("[PRIVACYREQUIRED] LOGIN needs TLS: use STARTTLS first"));
        }
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return Err(no("[AUTHENTICATIONFAILED] invalid credentials"));
        };
        self.login(user, password).await
    }

    async fn login(&mut self, user: &str, password: &str) -> Reply {
        match login::login(self.ctx, self.peer, "imap", user, password).await {
            Login::Ok(account) => {
                self.account = Some(account);
                Ok(format!("[CAPABILITY {}] logged in", self.capabilities()))
            }
            Login::Failed => Err(no("[AUTHENTICATIONFAILED] invalid credentials")),
            Login::Blocked => Err(no(
                "[AUTHENTICATIONFAILED] too many failed logins from your address; try later",
            )),
            Login::Unavailable => Err(no("[UNAVAILABLE] cannot check credentials now; try later")),
        }
    }

    /// AUTHENTICATE PLAIN (with SASL-IR) and LOGIN.
    async fn authenticate<S>(
        &mut self,
        conn: &mut Conn<S>,
        mechanism: &str,
        initial: Option<String>,
    ) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.account.is_some() {
            return Ok(Err(bad("already logged in")));
        }
        if !matches!(mechanism, "PLAIN" | "LOGIN") {
            return Ok(Err(no("unsupported SASL mechanism; use PLAIN or LOGIN")));
        }
        if !self.plaintext_ok() {
            return Ok(Err(no(
                "[PRIVACYREQUIRED] plaintext authentication needs TLS: use STARTTLS first",
            )));
        }
        if mechanism == "PLAIN" {
            let response = match initial {
                Some(ir) if ir != "=" => ir,
                Some(_) => String::new(),
                None => match self.sasl_line(conn, "").await? {
                    Some(r) => r,
                    None => return Ok(Err(bad("authentication cancelled"))),
                },
            };
            return Ok(match sasl::sasl_plain(&response) {
                Ok((user, password)) => self.login(&user, &password).await,
                Err(e) => Err(bad(e)),
            });
        }
        // LOGIN: the user name (maybe as the initial response), then the
        // password, each base64.
        let user = match initial {
            Some(ir) => ir,
            None => match self.sasl_line(conn, "VXNlcm5hbWU6").await? {
                Some(r) => r,
                None => return Ok(Err(bad("authentication cancelled"))),
            },
        };
        let password = match self.sasl_line(conn, "UGFzc3dvcmQ6").await? {
            Some(r) => r,
            None => return Ok(Err(bad("authentication cancelled"))),
        };
        Ok(
            match (sasl::base64_text(&user), sasl::base64_text(&password)) {
                (Some(u), Some(p)) => self.login(&u, &p).await,
                _ => Err(bad("the SASL response is not valid base64")),
            },
        )
    }

    /// A SASL challenge and the client's response (see
    /// [`Conn::sasl_response`]).
    async fn sasl_line<S>(
        &mut self,
        conn: &mut Conn<S>,
        challenge: &str,
    ) -> io::Result<Option<String>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let settings = self.settings();
        conn.sasl_response(
            &format!("+ {challenge}"),
            settings.max_line,
            settings.idle_timeout,
            &mut self.shutdown,
        )
        .await
    }

    fn account(&self) -> &Address {
        self.account.as_ref().expect("authenticated state")
    }

    /// A mailbox name from the client: UTF-8 once UTF8=ACCEPT is enabled,
    /// else modified UTF-7 (raw UTF-8 is taken too: clients send it).
    fn mailbox_name(&self, raw: &[u8]) -> Result<MailboxName, Refusal> {
        let text = if self.utf8_names() {
            String::from_utf8(raw.to_vec()).ok()
        } else {
            wire::utf7_decode(raw).or_else(|| String::from_utf8(raw.to_vec()).ok())
        };
        let text = text.ok_or_else(|| bad("the mailbox name is not valid modified UTF-7"))?;
        MailboxName::parse(&text).map_err(|e| no(format!("[CANNOT] {e}")))
    }

    /// Mailbox names are UTF-8 once the client enabled UTF8=ACCEPT or
    /// IMAP4rev2 (RFC 9051 §5.1), modified UTF-7 before.
    fn utf8_names(&self) -> bool {
        self.enabled.utf8 || self.enabled.rev2
    }

    fn write_mailbox(&self, out: &mut Vec<u8>, name: &str) {
        wire::mailbox(out, name, self.utf8_names());
    }

    /// Commands of the authenticated and selected states.
    async fn authenticated<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: &str,
        cmd: Command,
    ) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = cmd.name();
        Ok(match cmd {
            Command::Namespace => {
                conn.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                Ok("NAMESPACE completed".into())
            }
            Command::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => {
                self.select(conn, &mailbox, read_only, condstore, qresync)
                    .await
            }
            Command::Create {
                mailbox,
                special_use,
            } => self.create(&mailbox, &special_use).await,
            Command::Delete(mailbox) => self.delete(&mailbox).await,
            Command::Rename { from, to } => self.rename(&from, &to).await,
            Command::Subscribe(mailbox) => self.subscribe(&mailbox, true).await,
            Command::Unsubscribe(mailbox) => self.subscribe(&mailbox, false).await,
            Command::List(list) => self.list(conn, list, false).await,
            Command::Lsub { reference, pattern } => {
                let list = List {
                    reference,
                    patterns: vec![pattern],
                    select: vec!["SUBSCRIBED".into()],
                    ..List::default()
                };
                self.list(conn, list, true).await
            }
            Command::Status { mailbox, items } => self.status(conn, &mailbox, &items).await,
            Command::Append {
                mailbox,
                flags,
                date,
                message,
                binary: _,
            } => self.append(&mailbox, flags, date, message).await,
            Command::GetQuotaRoot(mailbox) => self.quota_root(conn, &mailbox).await,
            Command::GetQuota(root) => self.quota(conn, &root).await,
            Command::Idle => return self.idle(conn, tag).await,
            // Handled before the authenticated commands.
            Command::Compress(_) => Ok(String::new()),
            _ if self.selected.is_none() => Err(bad(format!("{name} needs a selected mailbox"))),
            Command::Check => Ok("CHECK completed".into()),
            Command::Close => self.close().await,
            Command::Unselect => {
                self.selected = None;
                Ok("UNSELECT completed".into())
            }
            Command::Expunge { uids } => self.expunge(conn, uids).await,
            Command::Search(search) => self.search(conn, tag, search).await,
            Command::Fetch(fetch) => self.fetch(conn, fetch).await?,
            Command::Store(store) => self.store_flags(conn, store).await,
            Command::Copy { uid, set, mailbox } => {
                self.copy(conn, uid, &set, &mailbox, false).await
            }
            Command::Move { uid, set, mailbox } => self.copy(conn, uid, &set, &mailbox, true).await,
            Command::Sort {
                uid,
                criteria,
                charset,
                key,
            } => {
                self.sort_or_thread(conn, uid, &charset, &key, Ordering::Sort(criteria))
                    .await
            }
            Command::Thread {
                uid,
                algorithm,
                charset,
                key,
            } => {
                self.sort_or_thread(conn, uid, &charset, &key, Ordering::Thread(algorithm))
                    .await
            }
            Command::Capability
            | Command::Noop
            | Command::Logout
            | Command::StartTls
            | Command::Authenticate { .. }
            | Command::Login { .. }
            | Command::Enable(_)
            | Command::Id(_) => Ok(String::new()),
        })
    }

    /// Reports what other sessions changed: EXISTS, FETCH of changed
    /// flags, and (where allowed) EXPUNGE. `force` ignores the poll
    /// interval. With the mailbox's `signal` (IDLE), changes committed in
    /// this process are taken from it when they are all there is, and the
    /// index is read at least once per poll interval all the same (for
    /// what the signal cannot tell, such as a rename).
    async fn report_changes<S>(
        &mut self,
        conn: &mut Conn<S>,
        expunges: bool,
        force: bool,
        signal: Option<&Signal>,
    ) {
        let poll = self.settings().poll_interval;
        if !force && self.last_sync.elapsed() < poll / 2 && !expunges {
            return;
        }
        let store = self.store();
        let account = self.account.clone().expect("authenticated");
        let condstore = self.enabled.condstore;
        let read_lately = self.last_sync.elapsed() < poll;
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let signalled = signal
            .filter(|_| expunges && read_lately)
            .and_then(|signal| signal.since(selected.modseq))
            .and_then(|changes| selected.apply_signalled(&changes));
        let changes = match signalled {
            Some(changes) => changes,
            None => match selected.sync(&store, &account, expunges).await {
                Ok(c) => {
                    self.last_sync = Instant::now();
                    c
                }
                Err(e) => {
                    warn!(error = %e, "IMAP: cannot look for mailbox changes");
                    return;
                }
            },
        };
        let qresync = self.enabled.qresync;
        let out = conn.out();
        report_expunged(out, &changes.expunged, qresync);
        if let Some(n) = changes.exists {
            let _ = write!(Lossy(out), "* {n} EXISTS\r\n");
        }
        for &i in &changes.flags {
            let m = &selected.msgs[i];
            let _ = write!(Lossy(out), "* {} FETCH (UID {} FLAGS ", i + 1, m.uid);
            flag_list(out, &m.flags);
            if condstore {
                let _ = write!(Lossy(out), " MODSEQ ({})", m.modseq);
            }
            out.extend_from_slice(b")\r\n");
        }
        if selected.vanished {
            // Renamed elsewhere: the mailbox keeps its id, so follow it.
            let id = selected.id.clone();
            let renamed = match self.ctx.stores.accounts().mailboxes(&account).await {
                Ok(all) => all.into_iter().find(|m| m.id == id).map(|m| m.name),
                Err(_) => return,
            };
            let selected = self.selected.as_mut().expect("selected");
            match renamed {
                Some(name) => {
                    selected.name = name;
                    selected.vanished = false;
                }
                None => {
                    self.selected = None;
                    self.closing = true;
                    conn.line("* BYE the selected mailbox was deleted by another session");
                }
            }
        }
    }

    async fn select<S>(
        &mut self,
        conn: &mut Conn<S>,
        raw: &[u8],
        read_only: bool,
        condstore: bool,
        qresync: Option<command::Qresync>,
    ) -> Reply {
        if qresync.is_some() && !self.enabled.qresync {
            return Err(bad("ENABLE QRESYNC before using it"));
        }
        if self.selected.take().is_some() {
            conn.line("* OK [CLOSED] previous mailbox closed");
        }
        self.saved.clear();
        if condstore {
            self.enabled.condstore = true;
        }
        let name = self.mailbox_name(raw)?;
        let store = self.store();
        let Some((selected, record)) = Selected::open(
            &store,
            &self.ctx.imap_views,
            self.account(),
            &name,
            read_only,
        )
        .await
        .map_err(Refusal::from)?
        else {
            return Err(no("[NONEXISTENT] no such mailbox"));
        };
        let mut keywords = selected.keywords().join(" ");
        if !keywords.is_empty() {
            keywords.insert(0, ' ');
        }
        conn.line(&format!("* FLAGS ({SYSTEM_FLAGS}{keywords})"));
        if read_only {
            conn.line("* OK [PERMANENTFLAGS ()] read-only mailbox");
        } else {
            conn.line(&format!(
                "* OK [PERMANENTFLAGS ({SYSTEM_FLAGS} \\*)] flags and keywords persist"
            ));
        }
        conn.line(&format!("* {} EXISTS", selected.msgs.len()));
        if !self.enabled.rev2 {
            conn.line("* 0 RECENT");
            if let Some(i) = selected.msgs.iter().position(|m| !m.has("\\Seen")) {
                conn.line(&format!("* OK [UNSEEN {}] first unseen message", i + 1));
            }
        }
        conn.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            selected.uidvalidity
        ));
        conn.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            record.uidnext
        ));
        conn.line(&format!(
            "* OK [HIGHESTMODSEQ {}] highest MODSEQ",
            record.highest_modseq
        ));
        if self.enabled.rev2 {
            let mut out = b"* LIST () \"/\" ".to_vec();
            self.write_mailbox(&mut out, name.as_str());
            out.extend_from_slice(b"\r\n");
            conn.out().extend_from_slice(&out);
        }
        if let Some(q) = qresync
            && q.uidvalidity == selected.uidvalidity
        {
            // What changed since the client's MODSEQ (RFC 7162 §3.2.5):
            // the UIDs it knew that are gone, then the flags that changed.
            let (_, gone) = store
                .changes(&selected.id, q.modseq, record.highest_modseq)
                .await
                .map_err(Refusal::from)?;
            let last = selected.uidnext.saturating_sub(1);
            let mut gone: Vec<u32> = gone
                .into_iter()
                .filter(|&u| match &q.known_uids {
                    Some(command::SequenceSet::Ranges(r)) => {
                        command::SequenceSet::contains(r, u, last)
                    }
                    _ => true,
                })
                .collect();
            gone.sort_unstable();
            gone.dedup();
            if !gone.is_empty() {
                conn.line(&format!("* VANISHED (EARLIER) {}", compact(&gone)));
            }
            let out = conn.out();
            for (i, m) in selected.msgs.iter().enumerate() {
                if m.modseq > q.modseq {
                    let _ = write!(Lossy(out), "* {} FETCH (UID {} FLAGS ", i + 1, m.uid);
                    flag_list(out, &m.flags);
                    let _ = write!(Lossy(out), " MODSEQ ({}))\r\n", m.modseq);
                }
            }
        }
        self.selected = Some(selected);
        self.last_sync = Instant::now();
        Ok(if read_only {
            "[READ-ONLY] EXAMINE completed".into()
        } else {
            "[READ-WRITE] SELECT completed".into()
        })
    }

    async fn create(&mut self, raw: &[u8], special_use: &[String]) -> Reply {
        let name = self.mailbox_name(raw)?;
        let role = match special_use {
            [] => None,
            [one] => Some(
                SpecialUse::from_attribute(one)
                    .ok_or_else(|| no(format!("[USEATTR] {one} is not a special use we know")))?,
            ),
            _ => return Err(no("[USEATTR] only one special use per mailbox")),
        };
        let accounts = self.ctx.stores.accounts();
        // Parents are created on the way (RFC 9051 §6.3.4).
        let mut parent = name.parent();
        let mut parents = Vec::new();
        while let Some(p) = parent {
            parent = p.parent();
            parents.push(p);
        }
        for p in parents.into_iter().rev() {
            match accounts.create_mailbox(self.account(), p).await {
                Ok(_) | Err(AccountError::MailboxExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        accounts
            .create_mailbox_with(self.account(), name, role)
            .await
            .map_err(Refusal::from)?;
        Ok("CREATE completed".into())
    }

    async fn delete(&mut self, raw: &[u8]) -> Reply {
        let name = self.mailbox_name(raw)?;
        if name.is_inbox() {
            return Err(no("[CANNOT] INBOX cannot be deleted"));
        }
        let accounts = self.ctx.stores.accounts();
        let all = accounts
            .mailboxes(self.account())
            .await
            .map_err(Refusal::from)?;
        let prefix = format!("{name}/");
        if all.iter().any(|m| m.name.as_str().starts_with(&prefix)) {
            return Err(no(
                "[INUSE] the mailbox has mailboxes below it; delete those first",
            ));
        }
        accounts
            .delete_mailbox(self.account(), &name)
            .await
            .map_err(Refusal::from)?;
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            self.selected = None;
        }
        Ok("DELETE completed".into())
    }

    async fn rename(&mut self, from: &[u8], to: &[u8]) -> Reply {
        let from = self.mailbox_name(from)?;
        let to = self.mailbox_name(to)?;
        if to.is_inbox() {
            return Err(no("[ALREADYEXISTS] INBOX already exists"));
        }
        let accounts = self.ctx.stores.accounts();
        let mut parent = to.parent();
        while let Some(p) = parent {
            parent = p.parent();
            if accounts
                .mailboxes(self.account())
                .await
                .map_err(Refusal::from)?
                .iter()
                .all(|m| m.name != p)
            {
                match accounts.create_mailbox(self.account(), p).await {
                    Ok(_) | Err(AccountError::MailboxExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        accounts
            .rename_mailbox(self.account(), &from, &to)
            .await
            .map_err(Refusal::from)?;
        // The selected mailbox (or one below the renamed) stays selected
        // under its new name; INBOX's messages moved away from it.
        if let Some(selected) = self.selected.as_mut() {
            if selected.name == from && !from.is_inbox() {
                selected.name = to.clone();
            } else if let Some(rest) = selected.name.as_str().strip_prefix(&format!("{from}/"))
                && !from.is_inbox()
                && let Ok(name) = MailboxName::parse(&format!("{to}/{rest}"))
            {
                selected.name = name;
            }
        }
        Ok("RENAME completed".into())
    }

    async fn subscribe(&mut self, raw: &[u8], on: bool) -> Reply {
        let name = self.mailbox_name(raw)?;
        match self
            .ctx
            .stores
            .accounts()
            .set_subscribed(self.account(), &name, on)
            .await
        {
            Ok(()) => {}
            // Unsubscribing from what does not exist is a no-op.
            Err(AccountError::UnknownMailbox(_)) if !on => {}
            Err(e) => return Err(e.into()),
        }
        Ok(if on {
            "SUBSCRIBE completed".into()
        } else {
            "UNSUBSCRIBE completed".into()
        })
    }

    /// LIST (and LSUB): every mailbox of this account whose name matches a
    /// pattern, with the attributes asked for. Only this account's
    /// mailboxes are ever looked at.
    async fn list<S>(&mut self, conn: &mut Conn<S>, list: List, lsub: bool) -> Reply {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let reference = self.decode_pattern(&list.reference)?;
        let patterns: Vec<String> = list
            .patterns
            .iter()
            .map(|p| self.decode_pattern(p))
            .collect::<Result<_, _>>()?;
        if !list.extended && patterns.len() == 1 && patterns[0].is_empty() {
            // The hierarchy delimiter and root (RFC 9051 §6.3.9).
            conn.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Ok(format!("{verb} completed"));
        }
        let mailboxes = self
            .ctx
            .stores
            .accounts()
            .mailboxes(self.account())
            .await
            .map_err(Refusal::from)?;
        let subscribed_only = list.select.iter().any(|s| s == "SUBSCRIBED");
        let special_only = list.select.iter().any(|s| s == "SPECIAL-USE");
        let recursive = list.select.iter().any(|s| s == "RECURSIVEMATCH");
        let show_subscribed = subscribed_only || list.returns.iter().any(|r| r == "SUBSCRIBED");
        // Every name, with the parents that exist only as levels.
        let mut names: std::collections::BTreeMap<String, Option<&MailboxRecord>> =
            std::collections::BTreeMap::new();
        for m in &mailboxes {
            names.insert(m.name.to_string(), Some(m));
            let mut parent = m.name.parent();
            while let Some(p) = parent {
                parent = p.parent();
                names.entry(p.to_string()).or_insert(None);
            }
        }
        let full_patterns: Vec<String> = patterns
            .iter()
            .map(|p| canonical_inbox(&format!("{reference}{p}")))
            .collect();
        let has_children = |name: &str| {
            names
                .range(format!("{name}/")..)
                .next()
                .is_some_and(|(n, _)| n.starts_with(&format!("{name}/")))
        };
        let mut status_for = Vec::new();
        let filtered = subscribed_only || special_only;
        for (name, record) in &names {
            if !full_patterns.iter().any(|p| matches_pattern(p, name)) {
                continue;
            }
            let selects = |r: &MailboxRecord| {
                (!subscribed_only || r.subscribed) && (!special_only || r.special_use.is_some())
            };
            let selected_match = record.is_some_and(selects);
            // RECURSIVEMATCH: a parent of a match is listed with CHILDINFO
            // (RFC 5258 §3.5).
            let prefix = format!("{name}/");
            let child_info = recursive
                && subscribed_only
                && !selected_match
                && mailboxes
                    .iter()
                    .any(|m| m.name.as_str().starts_with(&prefix) && selects(m));
            let listed = selected_match || child_info || (!filtered && record.is_none());
            if !listed {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if record.is_none() {
                attrs.push(if self.enabled.rev2 && !lsub {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            if !lsub {
                attrs.push(if has_children(name) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some(r) = record {
                if !lsub && show_subscribed && r.subscribed {
                    attrs.push("\\Subscribed");
                }
                if !lsub && let Some(role) = r.special_use {
                    attrs.push(role.attribute());
                }
            }
            let mut out = Vec::new();
            let _ = write!(Lossy(&mut out), "* {verb} ({}) \"/\" ", attrs.join(" "));
            self.write_mailbox(&mut out, name);
            if child_info {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            out.extend_from_slice(b"\r\n");
            conn.out().extend_from_slice(&out);
            if list.status.is_some()
                && selected_match
                && let Some(r) = record
            {
                status_for.push(r.name.clone());
            }
        }
        if let Some(items) = &list.status {
            for name in status_for {
                let raw = name.as_str().as_bytes().to_vec();
                let raw = if self.utf8_names() {
                    raw
                } else {
                    wire::utf7_encode(name.as_str()).into_bytes()
                };
                if let Err(Refusal::No(e) | Refusal::Bad(e)) = self.status(conn, &raw, items).await
                {
                    debug!(mailbox = %name, error = e, "LIST-STATUS skipped a mailbox");
                }
            }
        }
        Ok(format!("{verb} completed"))
    }

    /// A LIST reference or pattern as UTF-8.
    fn decode_pattern(&self, raw: &[u8]) -> Result<String, Refusal> {
        let text = if self.utf8_names() {
            String::from_utf8(raw.to_vec()).ok()
        } else {
            wire::utf7_decode(raw).or_else(|| String::from_utf8(raw.to_vec()).ok())
        };
        text.ok_or_else(|| bad("the name is not valid modified UTF-7"))
    }

    async fn status<S>(&mut self, conn: &mut Conn<S>, raw: &[u8], items: &[StatusItem]) -> Reply {
        let name = self.mailbox_name(raw)?;
        let store = self.store();
        let Some((record, _)) = store
            .mailbox(self.account(), &name)
            .await
            .map_err(Refusal::from)?
        else {
            return Err(no("[NONEXISTENT] no such mailbox"));
        };
        let mut deleted = None;
        if items.contains(&StatusItem::Deleted) {
            let entries = store
                .entries(self.account(), &name, 1, u32::MAX)
                .await
                .map_err(Refusal::from)?;
            deleted = Some(
                entries
                    .iter()
                    .filter(|e| e.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
                    .count(),
            );
        }
        let values: Vec<String> = items
            .iter()
            .map(|item| {
                let v = match item {
                    StatusItem::Messages => record.messages as u64,
                    StatusItem::UidNext => record.uidnext as u64,
                    StatusItem::UidValidity => record.uidvalidity as u64,
                    StatusItem::Unseen => record.unseen as u64,
                    StatusItem::Deleted => deleted.unwrap_or(0) as u64,
                    StatusItem::Size => record.size,
                    StatusItem::Recent => 0,
                    StatusItem::HighestModSeq => record.highest_modseq,
                };
                format!("{} {v}", item.name())
            })
            .collect();
        let mut out = b"* STATUS ".to_vec();
        self.write_mailbox(&mut out, name.as_str());
        let _ = write!(Lossy(&mut out), " ({})\r\n", values.join(" "));
        conn.out().extend_from_slice(&out);
        Ok("STATUS completed".into())
    }

    async fn quota_numbers(&self) -> Result<Option<(u64, u64)>, Refusal> {
        let accounts = self.ctx.stores.accounts();
        let Some(user) = accounts.user(self.account()).await.map_err(Refusal::from)? else {
            return Err(no("[UNAVAILABLE] the account is gone"));
        };
        let Some(quota) = user.quota else {
            return Ok(None);
        };
        let used = accounts
            .usage(self.account())
            .await
            .map_err(Refusal::from)?;
        Ok(Some((used, quota)))
    }

    async fn quota_root<S>(&mut self, conn: &mut Conn<S>, raw: &[u8]) -> Reply {
        let name = self.mailbox_name(raw)?;
        let mut out = b"* QUOTAROOT ".to_vec();
        self.write_mailbox(&mut out, name.as_str());
        match self.quota_numbers().await? {
            Some((used, quota)) => {
                let _ = write!(
                    Lossy(&mut out),
                    " \"\"\r\n* QUOTA \"\" (STORAGE {} {})\r\n",
                    used.div_ceil(1024),
                    quota / 1024
                );
            }
            None => out.extend_from_slice(b"\r\n"),
        }
        conn.out().extend_from_slice(&out);
        Ok("GETQUOTAROOT completed".into())
    }

    async fn quota<S>(&mut self, conn: &mut Conn<S>, root: &[u8]) -> Reply {
        if !root.is_empty() {
            return Err(no("[NONEXISTENT] no such quota root; the only one is \"\""));
        }
        match self.quota_numbers().await? {
            Some((used, quota)) => {
                conn.line(&format!(
                    "* QUOTA \"\" (STORAGE {} {})",
                    used.div_ceil(1024),
                    quota / 1024
                ));
                Ok("GETQUOTA completed".into())
            }
            None => Err(no("[NONEXISTENT] this account has no quota")),
        }
    }

    async fn append(
        &mut self,
        raw: &[u8],
        flags: Vec<String>,
        date: Option<command::DateTime>,
        message: Vec<u8>,
    ) -> Reply {
        let name = self.mailbox_name(raw)?;
        if message.len() as u64 > self.append_limit() {
            return Err(no("[TOOBIG] the message is over APPENDLIMIT"));
        }
        let store = self.store();
        let account = self.account().clone();
        if store
            .mailbox(&account, &name)
            .await
            .map_err(Refusal::from)?
            .is_none()
        {
            return Err(no("[TRYCREATE] no such mailbox"));
        }
        if let Some((used, quota)) = self.quota_numbers().await?
            && used + message.len() as u64 > quota
        {
            return Err(no("[OVERQUOTA] the message does not fit in your quota"));
        }
        if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
            return Err(bad("\\Recent cannot be set"));
        }
        let queue_id = QueueId::generate();
        let key = BlobKey::for_message(&queue_id);
        let meta = stratus_core::message::analyze(&message);
        let size = message.len() as u64;
        self.ctx
            .stores
            .blobs
            .put(&key, message.into())
            .await
            .map_err(|e| Refusal::from(AccountError::from(e)))?;
        let (internal_date, internal_tz) = match date {
            Some(d) => (d.timestamp, d.zone),
            None => (stratus_core::mailstore::now(), 0),
        };
        let new = NewMessage {
            queue_id,
            body: key,
            body_size: size,
            prefix: String::new(),
            meta,
            flags: normalize_flags(flags),
            internal_date,
            internal_tz,
        };
        match store
            .append(&account, &name, new)
            .await
            .map_err(Refusal::from)?
        {
            Appended::New {
                uid, uidvalidity, ..
            } => Ok(format!("[APPENDUID {uidvalidity} {uid}] APPEND completed")),
            Appended::Duplicate => Err(no("[UNAVAILABLE] try again")),
        }
    }

    async fn idle<S>(&mut self, conn: &mut Conn<S>, tag: &str) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        conn.line("+ idling");
        let started = Instant::now();
        let poll = self.settings().poll_interval;
        // Changes committed in this process wake the session at once; the
        // poll finds the others (Lambda stages, other gateways).
        let signal = self
            .selected
            .as_ref()
            .map(|s| stratus_core::mailstore::signals().subscribe(&s.id));
        loop {
            // Listening before looking, so a change in between is not missed.
            let woken = signal.as_ref().map(|n| n.notified());
            let mut woken = std::pin::pin!(woken);
            if let Some(n) = woken.as_mut().as_pin_mut() {
                n.enable();
            }
            if self.selected.is_some() {
                self.report_changes(conn, true, true, signal.as_deref())
                    .await;
            }
            let idle_left = self
                .settings()
                .idle_timeout
                .saturating_sub(started.elapsed());
            if idle_left.is_zero() {
                conn.line("* BYE autologout: idle for too long");
                conn.flush().await?;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "IMAP IDLE timed out",
                ));
            }
            // A line may already be waiting in the buffer.
            if let Some(i) = conn.buffered().iter().position(|&b| b == b'\n') {
                let line = conn.buffered()[..=i].to_vec();
                conn.consume(i + 1);
                let text = String::from_utf8_lossy(&line);
                return Ok(if text.trim().eq_ignore_ascii_case("DONE") {
                    let _ = tag;
                    Ok("IDLE terminated".into())
                } else {
                    Err(bad("expected DONE to end IDLE"))
                });
            }
            if conn.buffered().len() > 1024 {
                return Ok(Err(bad("expected DONE to end IDLE")));
            }
            let wake = async {
                match woken.as_mut().as_pin_mut() {
                    Some(n) => n.await,
                    None => std::future::pending().await,
                }
            };
            match conn
                .fill_or_wake(poll.min(idle_left), Some(&mut self.shutdown), wake)
                .await?
            {
                Fill::Data | Fill::Idle => {}
                Fill::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                Fill::Shutdown => {
                    conn.line("* BYE [UNAVAILABLE] server shutting down");
                    conn.flush().await?;
                    return Err(io::Error::other("shutdown during IDLE"));
                }
            }
        }
    }

    /// CLOSE: expunges \\Deleted messages silently (unless read-only)
    /// and leaves the selected state.
    async fn close(&mut self) -> Reply {
        let selected = self.selected.take().expect("selected");
        if !selected.read_only {
            let uids: Vec<u32> = selected
                .msgs
                .iter()
                .filter(|m| m.has("\\Deleted"))
                .map(|m| m.uid)
                .collect();
            if !uids.is_empty() {
                self.store()
                    .expunge(self.account(), &selected.name, &uids, None)
                    .await
                    .map_err(Refusal::from)?;
            }
        }
        Ok("CLOSE completed".into())
    }

    async fn expunge<S>(
        &mut self,
        conn: &mut Conn<S>,
        uids: Option<command::SequenceSet>,
    ) -> Reply {
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let qresync = self.enabled.qresync;
        let selected = self.selected.as_mut().expect("selected");
        if selected.read_only {
            return Err(no("[READ-ONLY] the mailbox is read-only"));
        }
        let allowed = match &uids {
            Some(set) => Some(selected.resolve(set, true, &saved).map_err(bad)?),
            None => None,
        };
        let targets: Vec<u32> = selected
            .msgs
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                m.has("\\Deleted") && allowed.as_ref().is_none_or(|a| a.binary_search(i).is_ok())
            })
            .map(|(_, m)| m.uid)
            .collect();
        if targets.is_empty() {
            return Ok("EXPUNGE completed".into());
        }
        let removed = store
            .expunge(&account, &selected.name, &targets, None)
            .await
            .map_err(Refusal::from)?;
        // Whatever another session already removed goes too: the next
        // sync reports it, but these are gone now either way.
        let mut gone = Vec::new();
        for uid in targets {
            if let Some(i) = selected.index_of(uid) {
                selected.msgs_mut().remove(i);
                gone.push((i as u32 + 1, uid));
            }
        }
        report_expunged(conn.out(), &gone, qresync);
        let _ = removed;
        Ok("EXPUNGE completed".into())
    }

    /// The view's indices of the messages a search program matches.
    async fn matching(&self, key: &SearchKey) -> Result<Vec<usize>, Refusal> {
        let store = self.store();
        let selected = self.selected.as_ref().expect("selected");
        let need = search::need(key);
        let ctx = search::Context {
            view: selected,
            saved: &self.saved,
        };
        let mut matched: Vec<usize> = Vec::new();
        let all: Vec<usize> = (0..selected.msgs.len()).collect();
        if need == Need::View {
            for &i in &all {
                let c = Candidate {
                    seq: i as u32 + 1,
                    msg: &selected.msgs[i],
                    entry: None,
                    meta: None,
                    header: None,
                    raw: None,
                };
                if ctx.matches(key, &c) {
                    matched.push(i);
                }
            }
        } else {
            let renderer = Renderer {
                blobs: self.ctx.stores.blobs.as_ref(),
                utf8: self.enabled.utf8,
            };
            for chunk in all.chunks(FETCH_BATCH) {
                let entries = selected
                    .entries(&store, chunk)
                    .await
                    .map_err(Refusal::from)?;
                for entry in &entries {
                    let Some(i) = selected.index_of(entry.uid) else {
                        continue;
                    };
                    let meta = store.meta(entry).await.map_err(Refusal::from)?;
                    let mut header = None;
                    let mut raw = None;
                    if need >= Need::Header {
                        let end = entry.prefix.len() as u64 + meta.structure.body_start;
                        let data = if need == Need::Body {
                            renderer.read(entry, 0, entry.size).await
                        } else {
                            renderer.read(entry, 0, end).await
                        };
                        match data {
                            Ok(d) if need == Need::Body => raw = Some(d),
                            Ok(d) => header = Some(d),
                            Err(_) => continue,
                        }
                    }
                    let header_slice = match (&header, &raw) {
                        (Some(h), _) => Some(h.as_slice()),
                        (None, Some(r)) => {
                            let end = (entry.prefix.len() as u64 + meta.structure.body_start)
                                .min(r.len() as u64);
                            Some(&r[..end as usize])
                        }
                        _ => None,
                    };
                    let c = Candidate {
                        seq: i as u32 + 1,
                        msg: &selected.msgs[i],
                        entry: Some(entry),
                        meta: Some(&meta),
                        header: header_slice,
                        raw: raw.as_deref(),
                    };
                    if ctx.matches(key, &c) {
                        matched.push(i);
                    }
                }
            }
        }
        Ok(matched)
    }

    async fn search<S>(&mut self, conn: &mut Conn<S>, tag: &str, search: Search) -> Reply {
        check_charset(search.charset.as_deref())?;
        let matched = self.matching(&search.key).await?;
        let selected = self.selected.as_ref().expect("selected");
        let numbers: Vec<u32> = matched
            .iter()
            .map(|&i| {
                if search.uid {
                    selected.msgs[i].uid
                } else {
                    i as u32 + 1
                }
            })
            .collect();
        let has_modseq = contains_modseq(&search.key);
        let highest = matched.iter().map(|&i| selected.msgs[i].modseq).max();
        let uids: Vec<u32> = matched.iter().map(|&i| selected.msgs[i].uid).collect();
        // IMAP4rev2 has no untagged SEARCH: a plain SEARCH is RETURN (ALL).
        let returns = search.returns.or_else(|| {
            self.enabled.rev2.then(|| command::SearchReturn {
                all: true,
                ..Default::default()
            })
        });
        match returns {
            None => {
                let mut line = String::from("* SEARCH");
                for n in &numbers {
                    let _ = write!(line, " {n}");
                }
                if has_modseq && let Some(m) = highest {
                    let _ = write!(line, " (MODSEQ {m})");
                }
                conn.line(&line);
            }
            Some(r) => {
                if r.save {
                    self.saved = uids.clone();
                }
                let only_save = r.save && !(r.min || r.max || r.all || r.count);
                if !only_save {
                    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
                    if search.uid {
                        line.push_str(" UID");
                    }
                    if r.min
                        && let Some(n) = numbers.first()
                    {
                        let _ = write!(line, " MIN {n}");
                    }
                    if r.max
                        && let Some(n) = numbers.last()
                    {
                        let _ = write!(line, " MAX {n}");
                    }
                    if r.all && !numbers.is_empty() {
                        let _ = write!(line, " ALL {}", compact(&numbers));
                    }
                    if r.count {
                        let _ = write!(line, " COUNT {}", numbers.len());
                    }
                    if has_modseq && let Some(m) = highest {
                        let _ = write!(line, " MODSEQ {m}");
                    }
                    conn.line(&line);
                }
            }
        }
        Ok(format!(
            "{} completed",
            if search.uid { "UID SEARCH" } else { "SEARCH" }
        ))
    }

    /// SORT and THREAD (RFC 5256) over the messages a search matches.
    async fn sort_or_thread<S>(
        &mut self,
        conn: &mut Conn<S>,
        uid: bool,
        charset: &str,
        key: &SearchKey,
        ordering: Ordering,
    ) -> Reply {
        check_charset(Some(charset))?;
        let matched = self.matching(key).await?;
        let store = self.store();
        let renderer = Renderer {
            blobs: self.ctx.stores.blobs.as_ref(),
            utf8: self.enabled.utf8,
        };
        let selected = self.selected.as_ref().expect("selected");
        let want_references = matches!(ordering, Ordering::Thread(ThreadAlgorithm::References));
        let mut items = Vec::with_capacity(matched.len());
        for chunk in matched.chunks(FETCH_BATCH) {
            let entries = selected
                .entries(&store, chunk)
                .await
                .map_err(Refusal::from)?;
            for entry in entries {
                let Some(i) = selected.index_of(entry.uid) else {
                    continue;
                };
                let meta = store.meta(&entry).await.map_err(Refusal::from)?;
                let mut references = Vec::new();
                if want_references {
                    let end = entry.prefix.len() as u64 + meta.structure.body_start;
                    if let Ok(header) = renderer.read(&entry, 0, end).await {
                        let field = fetch::filter_header(&header, &["References".into()], false);
                        references = sort::message_ids(&String::from_utf8_lossy(&field));
                    }
                }
                items.push(sort::Item {
                    number: if uid { entry.uid } else { i as u32 + 1 },
                    seq: i as u32 + 1,
                    internal_date: entry.internal_date,
                    size: entry.size,
                    envelope: meta.envelope,
                    references,
                });
            }
        }
        let verb = match (&ordering, uid) {
            (Ordering::Sort(_), false) => "SORT",
            (Ordering::Sort(_), true) => "UID SORT",
            (Ordering::Thread(_), false) => "THREAD",
            (Ordering::Thread(_), true) => "UID THREAD",
        };
        match ordering {
            Ordering::Sort(criteria) => {
                sort::sort(&mut items, &criteria);
                let mut line = String::from("* SORT");
                for item in &items {
                    let _ = write!(line, " {}", item.number);
                }
                conn.line(&line);
            }
            Ordering::Thread(algorithm) => {
                let threads = match algorithm {
                    ThreadAlgorithm::OrderedSubject => sort::ordered_subject(&items),
                    ThreadAlgorithm::References => sort::references(&items),
                };
                conn.line(format!("* THREAD {threads}").trim_end());
            }
        }
        Ok(format!("{verb} completed"))
    }

    async fn fetch<S>(&mut self, conn: &mut Conn<S>, fetch: Fetch) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let mut atts = fetch.atts.clone();
        if (fetch.changed_since.is_some() || self.enabled.condstore)
            && !atts.contains(&FetchAtt::ModSeq)
            && fetch.changed_since.is_some()
        {
            atts.push(FetchAtt::ModSeq);
        }
        if fetch.changed_since.is_some() {
            self.enabled.condstore = true;
        }
        let selected = self.selected.as_mut().expect("selected");
        let mut indices = match selected.resolve(&fetch.set, fetch.uid, &saved) {
            Ok(i) => i,
            Err(e) => return Ok(Err(bad(e))),
        };
        if let Some(since) = fetch.changed_since {
            if fetch.vanished {
                if !self.enabled.qresync {
                    return Ok(Err(bad("ENABLE QRESYNC before using VANISHED")));
                }
                let (_, gone) = match store.changes(&selected.id, since, selected.modseq).await {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e.into())),
                };
                let last = selected.uidnext.saturating_sub(1);
                let mut gone: Vec<u32> = gone
                    .into_iter()
                    .filter(|&u| match &fetch.set {
                        command::SequenceSet::Ranges(r) => {
                            command::SequenceSet::contains(r, u, last)
                        }
                        command::SequenceSet::Saved => saved.contains(&u),
                    })
                    .filter(|&u| selected.index_of(u).is_none())
                    .collect();
                gone.sort_unstable();
                gone.dedup();
                if !gone.is_empty() {
                    conn.line(&format!("* VANISHED (EARLIER) {}", compact(&gone)));
                }
            }
            indices.retain(|&i| selected.msgs[i].modseq > since);
        }
        // Reading a body marks the message \Seen (unless read-only).
        if !selected.read_only && atts.iter().any(fetch::sets_seen) {
            let unseen: Vec<u32> = indices
                .iter()
                .map(|&i| &selected.msgs[i])
                .filter(|m| !m.has("\\Seen"))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let add = |flags: &[String]| {
                    let mut f = flags.to_vec();
                    f.push("\\Seen".into());
                    f
                };
                match store
                    .update_flags(&account, &selected.name, &unseen, None, &add)
                    .await
                {
                    Ok(update) => {
                        for (uid, flags, modseq) in update.changed {
                            if let Some(i) = selected.index_of(uid) {
                                selected.msgs_mut()[i].flags = flags;
                                selected.msgs_mut()[i].modseq = modseq;
                            }
                        }
                    }
                    Err(e) => return Ok(Err(e.into())),
                }
                if !atts.contains(&FetchAtt::Flags) {
                    atts.push(FetchAtt::Flags);
                }
            }
        }
        let renderer = Renderer {
            blobs: self.ctx.stores.blobs.as_ref(),
            utf8: self.enabled.utf8,
        };
        let needs_entry = atts.iter().any(fetch::needs_entry);
        let mut missing = false;
        for chunk in indices.chunks(FETCH_BATCH) {
            let entries = if needs_entry {
                match selected.entries(&store, chunk).await {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(e.into())),
                }
            } else {
                Vec::new()
            };
            let mut next = 0;
            for &i in chunk {
                let msg = &selected.msgs[i];
                let entry = if needs_entry {
                    while next < entries.len() && entries[next].uid < msg.uid {
                        next += 1;
                    }
                    match entries.get(next) {
                        Some(e) if e.uid == msg.uid => Some(e),
                        _ => {
                            missing = true;
                            continue;
                        }
                    }
                } else {
                    None
                };
                let meta = match entry {
                    Some(e) => match store.meta(e).await {
                        Ok(m) => Some(m),
                        Err(e) => return Ok(Err(e.into())),
                    },
                    None => None,
                };
                let pair = entry.zip(meta.as_ref());
                let mut out = Vec::new();
                match renderer.message(&mut out, i + 1, msg, pair, &atts).await {
                    Ok(()) => conn.out().extend_from_slice(&out),
                    Err(FetchError::UnknownCte) => {
                        return Ok(Err(no("[UNKNOWN-CTE] cannot decode this part")));
                    }
                    Err(FetchError::Store(e)) => {
                        warn!(error = %e, uid = msg.uid, "IMAP FETCH cannot read a message");
                        missing = true;
                    }
                }
                if conn.queued() >= MAX_QUEUED {
                    conn.flush().await?;
                }
            }
        }
        Ok(if missing {
            Err(no(
                "[EXPUNGEISSUED] some messages were expunged or could not be read",
            ))
        } else {
            Ok(format!(
                "{} completed",
                if fetch.uid { "UID FETCH" } else { "FETCH" }
            ))
        })
    }

    async fn store_flags<S>(&mut self, conn: &mut Conn<S>, store_cmd: Store) -> Reply {
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let condstore = self.enabled.condstore || store_cmd.unchanged_since.is_some();
        self.enabled.condstore = condstore;
        let selected = self.selected.as_mut().expect("selected");
        if selected.read_only {
            return Err(no("[READ-ONLY] the mailbox is read-only"));
        }
        let indices = selected
            .resolve(&store_cmd.set, store_cmd.uid, &saved)
            .map_err(bad)?;
        if store_cmd
            .flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Recent"))
        {
            return Err(bad("\\Recent cannot be stored"));
        }
        let given = normalize_flags(store_cmd.flags.clone());
        let mode = store_cmd.mode;
        let change = move |flags: &[String]| -> Vec<String> {
            match mode {
                StoreMode::Replace => given.clone(),
                StoreMode::Add => {
                    let mut f = flags.to_vec();
                    f.extend(given.iter().cloned());
                    f
                }
                StoreMode::Remove => flags
                    .iter()
                    .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
                    .cloned()
                    .collect(),
            }
        };
        let uids: Vec<u32> = indices.iter().map(|&i| selected.msgs[i].uid).collect();
        let update = store
            .update_flags(
                &account,
                &selected.name,
                &uids,
                store_cmd.unchanged_since,
                &change,
            )
            .await
            .map_err(Refusal::from)?;
        selected.apply_own(&update.changed);
        let mut report: Vec<(usize, bool)> = update
            .changed
            .iter()
            .filter_map(|(uid, ..)| selected.index_of(*uid))
            .map(|i| (i, true))
            .collect();
        for (uid, flags, modseq) in update.unchanged {
            if let Some(i) = selected.index_of(uid) {
                selected.msgs_mut()[i].flags = flags;
                selected.msgs_mut()[i].modseq = selected.msgs[i].modseq.max(modseq);
                report.push((i, false));
            }
        }
        report.sort_unstable();
        for (i, changed) in report {
            if store_cmd.silent && !(condstore && changed) {
                continue;
            }
            let m = &selected.msgs[i];
            let mut line = format!("* {} FETCH (", i + 1);
            let mut parts = Vec::new();
            if store_cmd.uid {
                parts.push(format!("UID {}", m.uid));
            }
            if !store_cmd.silent {
                let mut f = Vec::new();
                flag_list(&mut f, &m.flags);
                parts.push(format!("FLAGS {}", String::from_utf8_lossy(&f)));
            }
            if condstore {
                parts.push(format!("MODSEQ ({})", m.modseq));
            }
            line.push_str(&parts.join(" "));
            line.push(')');
            conn.line(&line);
        }
        let verb = if store_cmd.uid { "UID STORE" } else { "STORE" };
        if update.modified.is_empty() {
            Ok(format!("{verb} completed"))
        } else {
            let mut numbers: Vec<u32> = update
                .modified
                .iter()
                .filter_map(|&u| {
                    selected
                        .index_of(u)
                        .map(|i| if store_cmd.uid { u } else { i as u32 + 1 })
                })
                .collect();
            numbers.sort_unstable();
            Ok(format!(
                "[MODIFIED {}] {verb} completed, some messages changed meanwhile",
                compact(&numbers)
            ))
        }
    }

    async fn copy<S>(
        &mut self,
        conn: &mut Conn<S>,
        uid: bool,
        set: &command::SequenceSet,
        raw: &[u8],
        is_move: bool,
    ) -> Reply {
        let target = self.mailbox_name(raw)?;
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let qresync = self.enabled.qresync;
        let quota = self.quota_numbers().await?;
        let selected = self.selected.as_mut().expect("selected");
        if is_move && selected.read_only {
            return Err(no("[READ-ONLY] the mailbox is read-only"));
        }
        let indices = selected.resolve(set, uid, &saved).map_err(bad)?;
        if store
            .mailbox(&account, &target)
            .await
            .map_err(Refusal::from)?
            .is_none()
        {
            return Err(no("[TRYCREATE] no such mailbox"));
        }
        let verb = match (uid, is_move) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        if indices.is_empty() {
            return Ok(format!("{verb} completed"));
        }
        let entries = selected
            .entries(&store, &indices)
            .await
            .map_err(Refusal::from)?;
        if let Some((used, limit)) = quota {
            let adding: u64 = entries.iter().map(|e| e.size).sum();
            if used + adding > limit {
                return Err(no("[OVERQUOTA] the messages do not fit in your quota"));
            }
        }
        let (uidvalidity, new_uids) = store
            .copy(&account, &entries, &target)
            .await
            .map_err(Refusal::from)?;
        let source: Vec<u32> = entries.iter().map(|e| e.uid).collect();
        let code = format!(
            "[COPYUID {uidvalidity} {} {}]",
            in_order(&source),
            in_order(&new_uids)
        );
        if !is_move {
            return Ok(format!("{code} {verb} completed"));
        }
        conn.line(&format!("* OK {code} moved"));
        store
            .expunge(&account, &selected.name, &source, None)
            .await
            .map_err(Refusal::from)?;
        let mut gone = Vec::new();
        for uid in source {
            if let Some(i) = selected.index_of(uid) {
                selected.msgs_mut().remove(i);
                gone.push((i as u32 + 1, uid));
            }
        }
        report_expunged(conn.out(), &gone, qresync);
        Ok(format!("{verb} completed"))
    }
}

/// Tells the client about expunged messages: `* n EXPUNGE` for each, or
/// one `* VANISHED` with their UIDs once QRESYNC is enabled.
fn report_expunged(out: &mut Vec<u8>, gone: &[(u32, u32)], qresync: bool) {
    if gone.is_empty() {
        return;
    }
    if qresync {
        let mut uids: Vec<u32> = gone.iter().map(|&(_, u)| u).collect();
        uids.sort_unstable();
        let _ = write!(Lossy(out), "* VANISHED {}\r\n", compact(&uids));
    } else {
        for (seq, _) in gone {
            let _ = write!(Lossy(out), "* {seq} EXPUNGE\r\n");
        }
    }
}

/// What SORT or THREAD does with the matches.
enum Ordering {
    Sort(Vec<(bool, SortKey)>),
    Thread(ThreadAlgorithm),
}

/// SEARCH, SORT and THREAD take UTF-8 and US-ASCII.
fn check_charset(charset: Option<&str>) -> Result<(), Refusal> {
    match charset {
        None | Some("UTF-8" | "US-ASCII") => Ok(()),
        Some(_) => Err(no("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset")),
    }
}

fn contains_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(keys) => keys.iter().any(contains_modseq),
        SearchKey::Or(a, b) => contains_modseq(a) || contains_modseq(b),
        SearchKey::Not(k) => contains_modseq(k),
        _ => false,
    }
}
