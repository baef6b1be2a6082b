//! Password logins, the same for every protocol that takes them (POP3,
//! IMAP, and submission next): the shared failed-login throttle, the
//! Argon2id check off the async workers, and logs without secrets.

use std::net::SocketAddr;

use stratus_core::accounts::AccountError;
use stratus_core::address::Address;
use tracing::{info, warn};

use crate::session::Context;
use crate::throttle::Gate;

/// What a login attempt came to. Failures have already waited out their
/// throttling delay when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Ok(Address),
    /// Wrong name or password.
    Failed,
    /// Too many failures from this address: not even checked.
    Blocked,
    /// The account store could not be asked.
    Unavailable,
}

/// Checks `name` and `password` for a `protocol` session from `peer`.
pub async fn login(
    ctx: &Context,
    peer: SocketAddr,
    protocol: &'static str,
    name: &str,
    password: &str,
) -> Login {
    let ip = peer.ip().to_canonical();
    if let Gate::Blocked { delay } = ctx.throttle.check(ip, name) {
        warn!(protocol, user = name, %peer, "login refused: too many failures from this address");
        tokio::time::sleep(delay).await;
        return Login::Blocked;
    }
    match check_password(ctx, name, password).await {
        Ok(Some(account)) => {
            ctx.throttle.succeeded(ip, name);
            info!(protocol, user = %account, %peer, "login");
            Login::Ok(account)
        }
        Ok(None) => {
            let delay = ctx.throttle.failed(ip, name);
            info!(protocol, user = name, %peer, "login failed");
            tokio::time::sleep(delay).await;
            Login::Failed
        }
        Err(e) => {
            warn!(protocol, user = name, error = %e, "login could not be checked");
            Login::Unavailable
        }
    }
}

/// The account, when the password is right. Never logs the password.
async fn check_password(
    ctx: &Context,
    name: &str,
    password: &str,
) -> Result<Option<Address>, AccountError> {
    let Ok(address) = Address::parse(name) else {
        return Ok(None);
    };
    let Some(record) = ctx.stores.accounts().user(&address).await? else {
        return Ok(None);
    };
    let hash = record.password_hash;
    let password = password.to_string();
    // Argon2 is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || stratus_core::password::verify(&hash, &password))
        .await
        .unwrap_or(false);
    Ok(ok.then_some(record.address))
}

/// The SASL PLAIN message (RFC 4616), base64-decoded: `authzid NUL authcid
/// NUL passwd`. Returns (authcid, password) when the authorization identity
/// is empty or the same as the authentication identity (no proxy logins).
pub fn sasl_plain(b64: &str) -> Result<(String, String), &'static str> {
    let raw = base64_decode(b64).ok_or("invalid base64")?;
    let raw = String::from_utf8(raw).map_err(|_| "PLAIN message is not UTF-8")?;
    let mut parts = raw.split('\0');
    let (Some(authz), Some(authc), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed PLAIN message");
    };
    if authc.is_empty() || password.is_empty() {
        return Err("malformed PLAIN message");
    }
    if !authz.is_empty() && authz != authc {
        return Err("authorization identity must be the login name");
    }
    Ok((authc.to_string(), password.to_string()))
}

pub use stratus_core::base64::decode as base64_decode;

/// A base64 SASL response that must be UTF-8 text (AUTH LOGIN's user
/// name and password).
pub fn base64_text(response: &str) -> Option<String> {
    base64_decode(response.trim()).and_then(|b| String::from_utf8(b).ok())
}
