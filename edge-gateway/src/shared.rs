//! What the sessions of every protocol share: the stores, the TLS
//! configuration, the shutdown signal, the failed-login throttle, the
//! signed-in sessions and our host name. Each protocol's own context ([`crate::smtp::Context`],
//! [`crate::imap::Context`], [`crate::pop3::Context`]) holds one of these
//! beside its own settings.

use std::sync::Arc;

use stratus_runtime::Stores;
use tokio::sync::watch;

use crate::throttle::LoginThrottle;

#[derive(Debug, Clone)]
pub struct Shared {
    /// Our host name, for greetings and `Received:` lines.
    pub hostname: String,
    pub stores: Stores,
    /// Becomes `true` when the server shuts down, so that long sessions
    /// (IMAP IDLE) can say goodbye instead of being cut off.
    pub shutdown: watch::Receiver<bool>,
    /// The TLS configuration every TLS-speaking role shares (`None`: TLS
    /// is not offered).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Failed-login counters every password-taking protocol shares.
    pub throttle: Arc<LoginThrottle>,
    /// The signed-in sessions, so that revoked credentials end them.
    pub sessions: Arc<crate::sessions::Registry>,
}
