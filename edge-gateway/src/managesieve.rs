//! ManageSieve (RFC 5804): users manage their Sieve scripts from a client
//! (Thunderbird's Sieve add-on, Roundcube, sieve-connect) on
//! `STRATUS_MANAGESIEVE_LISTEN` (port 4190).
//!
//! The session reads a command line, and when it ends with a literal
//! (`{n+}`), the literal's octets and the rest of the command, then parses
//! it with `stratus_proto::managesieve`. Passwords are taken only over TLS
//! or from loopback, like IMAP, through the same failed-login throttle.
//! Scripts are stored only if they parse: PUTSCRIPT and CHECKSCRIPT answer
//! with the parser's line and reason otherwise.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stratus_core::Address;
use stratus_core::sieve::{ScriptError, Scripts};
use stratus_proto::managesieve::{self as wire, Command, literal_at_end};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::conn::{Conn, Flow, Line};
use crate::login::{self, Login};
use crate::shared::Shared;

/// What ManageSieve sessions are built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Shared,
}

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 16 * 1024;
/// The longest command line (literals apart).
const MAX_LINE: usize = 8 * 1024;
/// A session waiting longer than this for a command is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Errors before the session is closed.
const MAX_ERRORS: u32 = 20;
/// A literal larger than this is not even read: the session ends.
const MAX_LITERAL_READ: u64 = 16 * 1024 * 1024;
/// Literals in one command (PUTSCRIPT and RENAMESCRIPT take two strings).
const MAX_LITERALS: u32 = 3;

/// Serves one ManageSieve connection.
pub async fn serve<S>(stream: S, peer: SocketAddr, ctx: &Arc<Context>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session {
        ctx: ctx.clone(),
        peer,
        tls: false,
        user: None,
        ticket: None,
        errors: 0,
        shutdown: ctx.shared.shutdown.clone(),
        scripts: Scripts::new(
            ctx.shared.stores.index.clone(),
            ctx.shared.stores.blobs.clone(),
        ),
    };
    let mut conn = Conn::new(stream, READ_CHUNK);
    session.capabilities(&mut conn);
    conn.line("OK \"Stratus ManageSieve ready\"");
    if session.run(&mut conn).await? != Flow::StartTls {
        conn.close().await;
        return Ok(());
    }
    let stream = conn.start_tls("STARTTLS").await?;
    let Some(stream) =
        crate::tls::handshake(ctx.shared.tls.clone(), stream, IDLE_TIMEOUT, "ManageSieve").await
    else {
        return Ok(());
    };
    session.tls = true;
    let mut conn = Conn::new(stream, READ_CHUNK);
    // RFC 5804 section 2.2: the capabilities again, then OK.
    session.capabilities(&mut conn);
    conn.line("OK \"TLS negotiation successful\"");
    session.run(&mut conn).await?;
    conn.close().await;
    Ok(())
}

/// What a read of one command produced.
enum Read {
    Command(Vec<u8>),
    /// A line or literal over the limits; already answered or closing.
    Refused,
    End(Flow),
}

struct Session {
    ctx: Arc<Context>,
    peer: SocketAddr,
    tls: bool,
    user: Option<Address>,
    /// Signed in: the session's place among the user's sessions, whose
    /// signal `shutdown` now is.
    ticket: Option<crate::sessions::Ticket>,
    errors: u32,
    shutdown: watch::Receiver<bool>,
    scripts: Scripts,
}

/// The limit on a script's size, as HAVESPACE and PUTSCRIPT apply it.
fn max_script_size() -> u64 {
    crate::service::sieve_limits().max_script_size as u64
}

impl Session {
    fn plaintext_ok(&self) -> bool {
        self.tls || self.peer.ip().to_canonical().is_loopback()
    }

    fn capabilities<S>(&self, conn: &mut Conn<S>) {
        conn.line("\"IMPLEMENTATION\" \"Stratus\"");
        let sasl = if self.plaintext_ok() { "PLAIN" } else { "" };
        conn.line(&format!("\"SASL\" \"{sasl}\""));
        conn.line(&format!(
            "\"SIEVE\" {}",
            wire::string(&stratus_sieve::CAPABILITIES.join(" "))
        ));
        if !self.tls && self.ctx.shared.tls.is_some() {
            conn.line("\"STARTTLS\"");
        }
        conn.line(&format!(
            "\"MAXREDIRECTS\" \"{}\"",
            crate::service::sieve_limits().max_redirects
        ));
        if let Some(user) = &self.user {
            conn.line(&format!("\"OWNER\" {}", wire::string(&user.to_string())));
        }
        conn.line("\"UNAUTHENTICATE\"");
        conn.line("\"VERSION\" \"1.0\"");
    }

    fn no<S>(&mut self, conn: &mut Conn<S>, code: Option<&str>, text: &str) {
        self.errors += 1;
        conn.line(&wire::response("NO", code, text));
    }

    fn ok<S>(&self, conn: &mut Conn<S>, text: &str) {
        conn.line(&wire::response("OK", None, text));
    }

    async fn run<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let flow = match self.read(conn).await? {
                Read::Command(bytes) => self.command(&bytes, conn).await?,
                Read::Refused => Flow::Continue,
                Read::End(flow) => return Ok(flow),
            };
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.errors >= MAX_ERRORS {
                conn.line("BYE \"too many errors\"");
                return Ok(Flow::Close);
            }
            conn.flush().await?;
        }
    }

    /// One whole command: its line, and any literals with the lines after
    /// them.
    async fn read<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Read>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut command = Vec::new();
        let mut literals = 0;
        loop {
            let line = match conn
                .read_line(MAX_LINE, IDLE_TIMEOUT, &mut self.shutdown)
                .await?
            {
                Line::Command(line) => line,
                Line::TooLong => {
                    self.no(conn, None, "line too long");
                    return Ok(Read::Refused);
                }
                Line::Eof => return Ok(Read::End(Flow::Close)),
                Line::Idle => {
                    conn.line("BYE \"idle timeout\"");
                    return Ok(Read::End(Flow::Close));
                }
                Line::Shutdown => {
                    if crate::sessions::revoked(self.ticket.as_ref()) {
                        conn.line("BYE \"your credentials changed; sign in again\"");
                    } else {
                        conn.line("BYE \"server shutting down\"");
                    }
                    return Ok(Read::End(Flow::Close));
                }
            };
            command.extend_from_slice(&line);
            let Some(n) = literal_at_end(&line) else {
                return Ok(Read::Command(command));
            };
            // No command takes more than two strings: a client that sends
            // literal after literal is not sending a command.
            literals += 1;
            let limit = max_script_size();
            if literals > MAX_LITERALS
                || (n <= limit && command.len() as u64 + n > limit + MAX_LINE as u64 * 4)
            {
                conn.line("BYE \"command too large\"");
                return Ok(Read::End(Flow::Close));
            }
            if n > limit {
                if n > MAX_LITERAL_READ {
                    conn.line("BYE \"literal too large\"");
                    return Ok(Read::End(Flow::Close));
                }
                // Read it and throw it away, so the connection stays in step.
                let mut left = n as usize;
                let mut scratch = Vec::new();
                while left > 0 {
                    let take = left.min(64 * 1024);
                    scratch.clear();
                    if !conn
                        .read_exact_into(take, &mut scratch, IDLE_TIMEOUT, &mut self.shutdown)
                        .await?
                    {
                        return Ok(Read::End(Flow::Close));
                    }
                    left -= take;
                }
                // The rest of the command's line.
                let _ = conn
                    .read_line(MAX_LINE, IDLE_TIMEOUT, &mut self.shutdown)
                    .await?;
                self.no(
                    conn,
                    Some("QUOTA/MAXSIZE"),
                    &format!("a script may have at most {limit} bytes"),
                );
                return Ok(Read::Refused);
            }
            if !conn
                .read_exact_into(n as usize, &mut command, IDLE_TIMEOUT, &mut self.shutdown)
                .await?
            {
                return Ok(Read::End(Flow::Close));
            }
        }
    }

    async fn command<S>(&mut self, bytes: &[u8], conn: &mut Conn<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let command = match wire::parse(bytes) {
            Ok(c) => c,
            Err(e) => {
                self.no(conn, None, &e.0);
                return Ok(Flow::Continue);
            }
        };
        match command {
            Command::Capability => {
                self.capabilities(conn);
                self.ok(conn, "");
            }
            Command::Logout => {
                self.ok(conn, "bye");
                return Ok(Flow::Close);
            }
            Command::Noop(tag) => match tag {
                Some(tag) => conn.line(&format!("OK (TAG {}) \"Done\"", wire::string(&tag))),
                None => self.ok(conn, "Done"),
            },
            Command::StartTls => {
                if self.tls {
                    self.no(conn, None, "TLS is already active");
                } else if self.ctx.shared.tls.is_none() {
                    self.no(conn, None, "TLS is not available");
                } else if self.user.is_some() {
                    self.no(conn, None, "STARTTLS only before AUTHENTICATE");
                } else {
                    self.ok(conn, "Begin TLS negotiation now");
                    return Ok(Flow::StartTls);
                }
            }
            Command::Authenticate { mechanism, initial } => {
                self.authenticate(conn, &mechanism, initial).await?;
            }
            other => match self.user.clone() {
                None => self.no(conn, None, "authenticate first"),
                Some(user) => self.scripts_command(conn, &user, other).await,
            },
        }
        Ok(Flow::Continue)
    }

    /// AUTHENTICATE "PLAIN" (RFC 5804 section 2.1), with the initial
    /// response or after an empty challenge.
    async fn authenticate<S>(
        &mut self,
        conn: &mut Conn<S>,
        mechanism: &str,
        initial: Option<String>,
    ) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.user.is_some() {
            self.no(conn, None, "already authenticated");
            return Ok(());
        }
        if mechanism != "PLAIN" {
            self.no(conn, None, "unsupported SASL mechanism; use PLAIN");
            return Ok(());
        }
        if !self.plaintext_ok() {
            self.no(
                conn,
                Some("ENCRYPT-NEEDED"),
                "passwords only over TLS: use STARTTLS",
            );
            return Ok(());
        }
        let response = match initial {
            Some(r) => r,
            None => {
                conn.line("\"\"");
                conn.flush().await?;
                let bytes = match self.read(conn).await? {
                    Read::Command(b) => b,
                    Read::Refused => return Ok(()),
                    Read::End(_) => return Ok(()),
                };
                match wire::sasl_response(&bytes) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        self.no(conn, None, "authentication cancelled");
                        return Ok(());
                    }
                    Err(e) => {
                        self.no(conn, None, &e.0);
                        return Ok(());
                    }
                }
            }
        };
        let (name, password) = match stratus_proto::sasl::sasl_plain(&response) {
            Ok(p) => p,
            Err(e) => {
                self.no(conn, None, e);
                return Ok(());
            }
        };
        match login::login(&self.ctx.shared, self.peer, "managesieve", &name, &password).await {
            Login::Ok(signed) => {
                info!(user = %signed.address, peer = %self.peer, "ManageSieve login");
                self.ticket = Some(crate::sessions::sign_in(
                    &self.ctx.shared,
                    &signed,
                    &mut self.shutdown,
                ));
                self.user = Some(signed.address);
                self.ok(conn, "Logged in");
            }
            Login::Failed => self.no(conn, None, "invalid credentials"),
            Login::Blocked => self.no(
                conn,
                Some("TRYLATER"),
                "too many failed logins from your address; try later",
            ),
            Login::Unavailable => self.no(conn, Some("TRYLATER"), "cannot check credentials now"),
        }
        Ok(())
    }

    async fn scripts_command<S>(&mut self, conn: &mut Conn<S>, user: &Address, command: Command) {
        let result: Result<(), ScriptError> = async {
            match command {
                Command::ListScripts => {
                    for s in self.scripts.list(user).await? {
                        let active = if s.active { " ACTIVE" } else { "" };
                        conn.line(&format!("{}{active}", wire::string(&s.name)));
                    }
                    self.ok(conn, "");
                }
                Command::GetScript(name) => {
                    let text = self.scripts.get(user, &name).await?;
                    conn.line(&format!("{{{}}}\r\n{text}", text.len()));
                    self.ok(conn, "");
                }
                Command::SetActive(name) => {
                    let name = (!name.is_empty()).then_some(name);
                    self.scripts.activate(user, name.as_deref()).await?;
                    self.ok(conn, "");
                }
                Command::DeleteScript(name) => {
                    self.scripts.delete(user, &name).await?;
                    self.ok(conn, "");
                }
                Command::RenameScript(from, to) => {
                    self.scripts.rename(user, &from, &to).await?;
                    self.ok(conn, "");
                }
                Command::HaveSpace { name, size } => {
                    if !stratus_core::sieve::valid_name(&name) {
                        self.no(conn, None, "invalid script name");
                    } else if size > max_script_size() {
                        self.no(
                            conn,
                            Some("QUOTA/MAXSIZE"),
                            &format!("a script may have at most {} bytes", max_script_size()),
                        );
                    } else {
                        let scripts = self.scripts.list(user).await?;
                        let exists = scripts.iter().any(|s| s.name == name);
                        if !exists && scripts.len() >= stratus_core::sieve::MAX_SCRIPTS {
                            self.no(conn, Some("QUOTA/MAXSCRIPTS"), "too many scripts");
                        } else {
                            self.ok(conn, "");
                        }
                    }
                }
                Command::PutScript { name, script } => match checked(&script) {
                    Ok(text) => {
                        self.scripts.put(user, &name, &text).await?;
                        debug!(user = %user, script = %name, bytes = text.len(), "ManageSieve PUTSCRIPT");
                        self.ok(conn, "");
                    }
                    Err(why) => self.no(conn, None, &why),
                },
                Command::CheckScript(script) => match checked(&script) {
                    Ok(_) => self.ok(conn, ""),
                    Err(why) => self.no(conn, None, &why),
                },
                Command::Unauthenticate => {
                    self.user = None;
                    self.ticket = None;
                    self.shutdown = self.ctx.shared.shutdown.clone();
                    self.ok(conn, "");
                }
                Command::Capability
                | Command::Logout
                | Command::Noop(_)
                | Command::StartTls
                | Command::Authenticate { .. } => {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let code = match &e {
                ScriptError::Unknown(_) => Some("NONEXISTENT"),
                ScriptError::Exists(_) => Some("ALREADYEXISTS"),
                ScriptError::Active(_) => Some("ACTIVE"),
                ScriptError::TooMany => Some("QUOTA/MAXSCRIPTS"),
                ScriptError::BadName => None,
                ScriptError::Account(_) => {
                    warn!(user = %user, error = %e, "ManageSieve command failed");
                    Some("TRYLATER")
                }
            };
            self.no(conn, code, &e.to_string());
        }
    }
}

/// A script's text, if it is UTF-8 and parses; the parser's reason
/// (with its line) if not.
fn checked(script: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(script).map_err(|_| "the script is not UTF-8".to_string())?;
    stratus_sieve::parse(text, &crate::service::sieve_limits()).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}
