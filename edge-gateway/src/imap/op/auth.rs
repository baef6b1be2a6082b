//! LOGIN and AUTHENTICATE (PLAIN and LOGIN, with SASL-IR): password checks
//! through the shared login throttle, only over TLS or from loopback unless
//! plain text is allowed.

use std::io;

use stratus_proto::sasl;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::Conn;
use crate::imap::session::*;
use crate::login::{self, Login};

impl Session<'_> {
    pub(in crate::imap) async fn login_command(&mut self, user: &[u8], password: &[u8]) -> Reply {
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

    pub(in crate::imap) async fn login(&mut self, user: &str, password: &str) -> Reply {
        match login::login(&self.ctx.shared, self.peer, "imap", user, password).await {
            Login::Ok(signed) => {
                let account = signed.address.clone();
                let limit = self.settings().max_per_user_ip;
                let key = (account.clone(), self.peer.ip().to_canonical());
                let Some(slot) = self.ctx.user_ip.acquire(key, limit) else {
                    tracing::info!(user = %account, peer = %self.peer, limit, "IMAP login refused: too many sessions for this user from this address");
                    return Err(no(format!(
                        "[LIMIT] {account} already has {limit} sessions from your address; close one first"
                    )));
                };
                self.user_slot = Some(slot);
                self.ticket = Some(crate::sessions::sign_in(
                    &self.ctx.shared,
                    &signed,
                    &mut self.shutdown,
                ));
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
    pub(in crate::imap) async fn authenticate<S>(
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
    pub(in crate::imap) async fn sasl_line<S>(
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
}
