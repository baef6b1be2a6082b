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

pub use crate::sasl::{base64_text, sasl_plain};
