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

/// A timer for a task that runs every `every` until shutdown: a tick
/// late under load is taken late, not twice.
pub fn ticks(every: std::time::Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Waits for the next tick; `false` once the server shuts down.
pub async fn next_tick(
    ticks: &mut tokio::time::Interval,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = ticks.tick() => {}
        _ = shutdown.changed() => return false,
    }
    !*shutdown.borrow()
}
