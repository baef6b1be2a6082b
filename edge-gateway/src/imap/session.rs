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

use stratus_core::accounts::AccountError;
use stratus_core::address::Address;
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::Mailstore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::Context;
use super::selected::Selected;
use crate::conn::{Conn, Flow, Line};
use crate::deflate::Deflate;
use crate::tls;
use stratus_runtime::config::ImapSettings;

use super::op::search::Ordering;
use stratus_proto::imap::command::{Command, List};
use stratus_proto::imap::framing::{is_append, literal_at_end, tag_of};
use stratus_proto::imap::wire::{self};

/// Bytes asked of the stream per read; small, so an idle connection
/// costs little.
pub(super) const READ_CHUNK: usize = 4 * 1024;
/// Replies are written out once this much is queued.
pub(super) const MAX_QUEUED: usize = 256 * 1024;
/// Messages rendered per index read in FETCH.
pub(super) const FETCH_BATCH: usize = 200;

pub(super) const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

pub(super) use stratus_core::accounts::MAX_KEYWORDS;

/// `* FLAGS` and `* OK [PERMANENTFLAGS]` for `selected`: the system flags
/// and the keywords announced, which clients may also keep creating
/// (`\*`) unless the mailbox is read-only.
pub(super) fn flags_responses(out: &mut Vec<u8>, selected: &crate::imap::selected::Selected) {
    use std::fmt::Write as _;
    use stratus_proto::imap::wire::Lossy;
    let mut keywords = String::new();
    for k in &selected.announced {
        keywords.push(' ');
        keywords.push_str(k);
    }
    let _ = write!(Lossy(out), "* FLAGS ({SYSTEM_FLAGS}{keywords})\r\n");
    if selected.read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] read-only mailbox\r\n");
    } else if selected.announced.len() >= MAX_KEYWORDS {
        // No room for another keyword: no `\*` (RFC 9051 §7.1).
        let _ = write!(
            Lossy(out),
            "* OK [PERMANENTFLAGS ({SYSTEM_FLAGS}{keywords})] no more keywords fit\r\n"
        );
    } else {
        let _ = write!(
            Lossy(out),
            "* OK [PERMANENTFLAGS ({SYSTEM_FLAGS}{keywords} \\*)] flags and keywords persist\r\n"
        );
    }
}

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
    tls::handshake(
        ctx.shared.tls.clone(),
        stream,
        ctx.settings.idle_timeout,
        "IMAP",
    )
    .await
}

/// A command as read: whole, or why not.
pub(super) enum Input {
    Command(Vec<u8>),
    /// Refused before it was all read; the reply is queued.
    Refused,
    /// Refused so that the connection must end (the reply is queued).
    Fatal,
    Eof,
    Idle,
    Shutdown,
}

/// What a command handler tells the loop.
pub(super) type Reply = Result<String, Refusal>;

/// A tagged NO or BAD, with its text (response code included).
pub(super) enum Refusal {
    No(String),
    Bad(String),
}

/// Client text fit to go back in a response code: printable ASCII without
/// `]`, at most 200 characters (a URL may come as a literal holding CRLF).
pub(super) fn echo(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() && *c != ']')
        .take(200)
        .collect()
}

pub(super) fn no(text: impl Into<String>) -> Refusal {
    Refusal::No(text.into())
}

pub(super) fn bad(text: impl Into<String>) -> Refusal {
    Refusal::Bad(text.into())
}

impl From<AccountError> for Refusal {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::MailboxExists(_) => no(format!("[ALREADYEXISTS] {e}")),
            AccountError::UnknownMailbox(_) => no(format!("[NONEXISTENT] {e}")),
            AccountError::InvalidMailbox(_) => no(format!("[CANNOT] {e}")),
            AccountError::TooManyMailboxes
            | AccountError::TooManySubscriptions
            | AccountError::TooManyKeywords => no(format!("[LIMIT] {e}")),
            other => {
                warn!(error = %other, "IMAP: store error");
                no("[UNAVAILABLE] the mail store cannot be reached now; try again")
            }
        }
    }
}

/// Capabilities enabled with ENABLE.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Enabled {
    pub(super) condstore: bool,
    pub(super) qresync: bool,
    pub(super) utf8: bool,
    pub(super) rev2: bool,
}

pub(super) struct Session<'a> {
    pub(super) ctx: &'a Context,
    pub(super) peer: SocketAddr,
    pub(super) tls: bool,
    /// Bad or refused commands in a row.
    pub(super) errors: u32,
    pub(super) account: Option<Address>,
    pub(super) selected: Option<Selected>,
    pub(super) enabled: Enabled,
    /// The SEARCHRES result, as UIDs.
    pub(super) saved: Vec<u32>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// When the view last caught up with the store.
    pub(super) last_sync: Instant,
    /// BYE was sent: the connection closes after this command.
    pub(super) closing: bool,
    /// COMPRESS=DEFLATE is on.
    pub(super) compressed: bool,
    /// The selected mailbox surely changed (a COPY or MOVE into it): look
    /// before the tagged reply, whenever the last look was.
    pub(super) sync_now: bool,
    /// This session counted against its user and address once logged in.
    pub(super) user_slot: Option<crate::slots::Slot<(Address, std::net::IpAddr)>>,
    /// Signed in: the session's place among the user's sessions, whose
    /// signal `shutdown` now is.
    pub(super) ticket: Option<crate::sessions::Ticket>,
    /// The NOTIFY SET in force (RFC 5465).
    pub(super) notify: Option<super::op::notify::Notify>,
    /// Searches kept live with RETURN (UPDATE) (RFC 5267).
    pub(super) live: Vec<super::op::context::LiveSearch>,
}

impl<'a> Session<'a> {
    pub(super) fn new(ctx: &'a Context, peer: SocketAddr) -> Session<'a> {
        Session {
            ctx,
            peer,
            tls: false,
            errors: 0,
            account: None,
            selected: None,
            enabled: Enabled::default(),
            saved: Vec::new(),
            shutdown: ctx.shared.shutdown.clone(),
            last_sync: Instant::now(),
            closing: false,
            compressed: false,
            sync_now: false,
            user_slot: None,
            ticket: None,
            notify: None,
            live: Vec::new(),
        }
    }

    /// The BYE of a session cut short: by the server shutting down, or by
    /// its credentials being revoked (a new password, a disabled account).
    pub(super) fn goodbye(&self) -> &'static str {
        if crate::sessions::revoked(self.ticket.as_ref()) {
            "* BYE [EXPIRED] your credentials changed; sign in again"
        } else {
            "* BYE [UNAVAILABLE] server shutting down"
        }
    }

    pub(super) fn settings(&self) -> &'a ImapSettings {
        &self.ctx.settings
    }

    pub(super) fn store(&self) -> Mailstore {
        self.ctx.shared.stores.mailstore()
    }

    pub(super) fn plaintext_ok(&self) -> bool {
        self.tls || self.peer.ip().to_canonical().is_loopback() || self.settings().allow_plaintext
    }

    pub(super) fn append_limit(&self) -> u64 {
        self.ctx.append_limit
    }

    pub(super) fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 IMAP4rev2");
        if self.account.is_none() {
            if !self.tls && self.ctx.shared.tls.is_some() {
                caps.push_str(" STARTTLS");
            }
            if self.plaintext_ok() {
                caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps.push_str(concat!(
            " SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MULTIAPPEND",
            " CATENATE URLAUTH URLAUTH=BINARY MOVE CHILDREN SPECIAL-USE",
            " CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS STATUS=SIZE ESEARCH",
            " SEARCHRES METADATA NOTIFY SORT SORT=DISPLAY ESORT CONTEXT=SEARCH",
            " CONTEXT=SORT PARTIAL THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE",
            " QRESYNC QUOTA QUOTA=RES-STORAGE BINARY UTF8=ACCEPT",
        ));
        if self.account.is_some() && !self.compressed {
            caps.push_str(" COMPRESS=DEFLATE");
        }
        let _ = write!(caps, " APPENDLIMIT={}", self.append_limit());
        caps
    }

    pub(super) fn greet<S>(&self, conn: &mut Conn<S>) {
        conn.line(&format!(
            "* OK [CAPABILITY {}] Stratus IMAP server ready",
            self.capabilities()
        ));
    }

    pub(super) async fn run<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if self.notify.is_some()
                && let Some(flow) = self.wait_notifying(conn).await?
            {
                return Ok(flow);
            }
            let line = match self.read_command(conn).await? {
                Input::Command(line) => line,
                Input::Refused => {
                    self.errors += 1;
                    if self.too_many_errors(conn) {
                        return Ok(Flow::Close);
                    }
                    continue;
                }
                Input::Eof | Input::Fatal => return Ok(Flow::Close),
                Input::Idle => {
                    conn.line("* BYE autologout: idle for too long");
                    return Ok(Flow::Close);
                }
                Input::Shutdown => {
                    conn.line(self.goodbye());
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

    pub(super) fn too_many_errors<S>(&self, conn: &mut Conn<S>) -> bool {
        if self.errors >= self.settings().max_errors {
            debug!(errors = self.errors, peer = %self.peer, "too many bad IMAP commands; closing");
            conn.line("* BYE too many bad commands");
            return true;
        }
        false
    }

    /// Reads one command with its literals. A synchronising literal gets
    /// `+` before the client sends it; one that is too large is refused
    /// instead, which ends the command. A non-synchronising literal that is
    /// too large is already on its way: RFC 7888 §4 has it answered `BAD`
    /// and the connection closed, rather than read (up to 4 GiB) for
    /// nothing.
    pub(super) async fn read_command<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Input>
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
                conn.line(&format!(
                    "{tag} BAD [TOOBIG] the non-synchronising literal of {size} octets is over the limit of {limit}"
                ));
                conn.line("* BYE the rest of that command cannot be read; reconnect");
                return Ok(Input::Fatal);
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

    pub(super) async fn command<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: String,
        cmd: Command,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = cmd.name();
        let condstore_before = self.enabled.condstore;
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
                } else if self.ctx.shared.tls.is_none() {
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
            let force = std::mem::take(&mut self.sync_now);
            self.report_changes(conn, expunges, force, None).await;
        }
        // The command that enabled CONDSTORE with a mailbox selected tells
        // its HIGHESTMODSEQ (RFC 7162 §3.1; SELECT and EXAMINE say it
        // themselves).
        if !condstore_before
            && self.enabled.condstore
            && !matches!(name, "SELECT" | "EXAMINE")
            && let Some(selected) = &self.selected
        {
            conn.line(&format!(
                "* OK [HIGHESTMODSEQ {}] highest MODSEQ",
                selected.modseq
            ));
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

    pub(super) fn enable<S>(&mut self, conn: &mut Conn<S>, caps: Vec<String>) -> Reply {
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

    pub(super) fn account(&self) -> &Address {
        self.account.as_ref().expect("authenticated state")
    }

    /// A mailbox name from the client: UTF-8 once UTF8=ACCEPT is enabled,
    /// else modified UTF-7 (raw UTF-8 is taken too: clients send it).
    pub(super) fn mailbox_name(&self, raw: &[u8]) -> Result<MailboxName, Refusal> {
        let text = if self.utf8_names() {
            String::from_utf8(raw.to_vec()).ok()
        } else {
            wire::utf7_decode(raw).or_else(|| String::from_utf8(raw.to_vec()).ok())
        };
        let text = text.ok_or_else(|| bad("the mailbox name is not valid modified UTF-7"))?;
        MailboxName::parse(&text).map_err(|e| no(format!("[CANNOT] {e}")))
    }

    /// The record of the user's mailbox named `raw`; NO [NONEXISTENT]
    /// when there is none.
    pub(super) async fn existing_mailbox(
        &self,
        raw: &[u8],
    ) -> Result<stratus_core::accounts::MailboxRecord, Refusal> {
        let name = self.mailbox_name(raw)?;
        match self
            .store()
            .mailbox(self.account(), &name)
            .await
            .map_err(Refusal::from)?
        {
            Some((record, _)) => Ok(record),
            None => Err(no("[NONEXISTENT] no such mailbox")),
        }
    }

    /// Mailbox names are UTF-8 once the client enabled UTF8=ACCEPT or
    /// IMAP4rev2 (RFC 9051 §5.1), modified UTF-7 before.
    pub(super) fn utf8_names(&self) -> bool {
        self.enabled.utf8 || self.enabled.rev2
    }

    pub(super) fn write_mailbox(&self, out: &mut Vec<u8>, name: &str) {
        wire::mailbox(out, name, self.utf8_names());
    }

    /// Commands of the authenticated and selected states.
    pub(super) async fn authenticated<S>(
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
            Command::Append { mailbox, messages } => self.append(&mailbox, messages).await,
            Command::GetQuotaRoot(mailbox) => self.quota_root(conn, &mailbox).await,
            Command::GetMetadata {
                mailbox,
                entries,
                max_size,
                depth,
            } => {
                self.get_metadata(conn, &mailbox, &entries, max_size, depth)
                    .await
            }
            Command::GenUrlAuth(urls) => self.gen_url_auth(conn, &urls).await,
            Command::Notify(set) => self.notify(conn, set).await,
            Command::CancelUpdate(tags) => self.cancel_update(&tags),
            Command::ResetKey {
                mailbox,
                mechanisms,
            } => self.reset_key(mailbox.as_deref(), &mechanisms).await,
            Command::UrlFetch(args) => self.url_fetch(conn, &args).await?,
            Command::SetMetadata { mailbox, entries } => {
                self.set_metadata(&mailbox, &entries).await
            }
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
                returns,
                criteria,
                charset,
                key,
            } => {
                let ordering = Ordering::Sort(criteria, returns);
                self.sort_or_thread(conn, tag, uid, &charset, &key, ordering)
                    .await
            }
            Command::Thread {
                uid,
                algorithm,
                charset,
                key,
            } => {
                let ordering = Ordering::Thread(algorithm);
                self.sort_or_thread(conn, tag, uid, &charset, &key, ordering)
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
}
