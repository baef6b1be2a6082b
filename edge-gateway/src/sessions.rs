//! The signed-in sessions of this gateway (IMAP, POP3, ManageSieve, SMTP
//! submission), by user, so that a new password, a disabled or deleted
//! account, or a deleted app password ends them here, whichever gateway or
//! `stratus` command made the change.
//!
//! A session that signs in takes a [`Ticket`]: from then on it waits on the
//! ticket's signal instead of the server's shutdown signal; the signal fires
//! at shutdown or when a revocation names the session. [`follow`] reads the
//! revocations the index publishes ([`stratus_core::credentials`]) every
//! [`POLL`] and ends the sessions they name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stratus_core::Address;
use stratus_core::credentials::{
    REVOCATION_KEPT, Revocation, now_ms, prune_revocations, revocations_from, revocations_since,
};
use stratus_core::ports::Index;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::login::Signed;

/// How often the revocations are read.
pub const POLL: Duration = Duration::from_secs(2);

/// Revocations are read from this long before the last read that worked,
/// so that a row written by a gateway whose clock is a little behind, or
/// committed a little late, is still seen. Ending a session twice is
/// harmless, and sessions signed in under the new generation are not
/// touched.
const OVERLAP: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Registry {
    open: Mutex<HashMap<Address, Vec<Entry>>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    generation: u64,
    app_password: Option<String>,
    end: Arc<watch::Sender<bool>>,
    revoked: Arc<AtomicBool>,
}

/// A signed-in session's place in the registry; dropping it leaves.
#[derive(Debug)]
pub struct Ticket {
    registry: Arc<Registry>,
    address: Address,
    id: u64,
    end: watch::Receiver<bool>,
    revoked: Arc<AtomicBool>,
}

impl Ticket {
    /// Becomes `true` at shutdown or when the session's credentials are
    /// revoked: what the session waits on instead of the shutdown signal.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.end.clone()
    }

    /// Whether the session ends because its credentials were revoked (not
    /// because the server shuts down).
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = open.get_mut(&self.address) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                open.remove(&self.address);
            }
        }
    }
}

/// Registers a session of `shared`'s server that just signed in: from now
/// on it waits on its ticket's signal, which this puts in `shutdown`.
pub fn sign_in(
    shared: &crate::shared::Shared,
    signed: &Signed,
    shutdown: &mut watch::Receiver<bool>,
) -> Ticket {
    let ticket = shared.sessions.enter(signed, &shared.shutdown);
    *shutdown = ticket.signal();
    ticket
}

/// Whether a session holding `ticket` ends because its credentials were
/// revoked.
pub fn revoked(ticket: Option<&Ticket>) -> bool {
    ticket.is_some_and(Ticket::revoked)
}

impl Registry {
    /// Registers a session that just signed in; its ticket's signal also
    /// fires when `shutdown` does.
    pub fn enter(self: &Arc<Self>, signed: &Signed, shutdown: &watch::Receiver<bool>) -> Ticket {
        let (tx, rx) = watch::channel(*shutdown.borrow());
        let tx = Arc::new(tx);
        let revoked = Arc::new(AtomicBool::new(false));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Forwards the server's shutdown to this session until it ends.
        let forward = tx.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            forward.send_replace(true);
                            return;
                        }
                    }
                    () = forward.closed() => return,
                }
            }
        });
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(signed.address.clone())
            .or_default()
            .push(Entry {
                id,
                generation: signed.generation,
                app_password: signed.app_password.clone(),
                end: tx,
                revoked: revoked.clone(),
            });
        Ticket {
            registry: self.clone(),
            address: signed.address.clone(),
            id,
            end: rx,
            revoked,
        }
    }

    /// Ends the sessions `revocation` names; how many there were.
    pub fn end(&self, revocation: &Revocation) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entries) = open.get(&revocation.address) else {
            return 0;
        };
        let mut n = 0;
        for e in entries {
            let named = e.generation < revocation.below
                && (revocation.app_password.is_none() || revocation.app_password == e.app_password);
            if named && !e.revoked.swap(true, Ordering::AcqRel) {
                e.end.send_replace(true);
                n += 1;
            }
        }
        n
    }

    /// How many sessions `address` has open here.
    pub fn count(&self, address: &Address) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(address)
            .map_or(0, Vec::len)
    }
}

/// Reads the revocations every `every` and ends the sessions they name,
/// until `shutdown`; now and then prunes rows older than
/// [`REVOCATION_KEPT`].
pub async fn follow(
    registry: Arc<Registry>,
    index: Arc<dyn Index>,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
) {
    let overlap = OVERLAP.as_millis() as i64;
    let mut read_at = now_ms();
    let mut pruned_at = 0;
    let mut ticks = crate::shared::ticks(every);
    while crate::shared::next_tick(&mut ticks, &mut shutdown).await {
        let now = now_ms();
        match revocations_since(index.as_ref(), &revocations_from(read_at - overlap)).await {
            Ok(revocations) => {
                read_at = now;
                for r in &revocations {
                    let n = registry.end(r);
                    if n > 0 {
                        info!(user = %r.address, sessions = n, "sessions ended: credentials changed");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read the session revocations"),
        }
        if now - pruned_at > REVOCATION_KEPT.as_millis() as i64 / 6 {
            pruned_at = now;
            if let Err(e) =
                prune_revocations(index.as_ref(), now - REVOCATION_KEPT.as_millis() as i64).await
            {
                warn!(error = %e, "cannot prune the session revocations");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(address: &str, generation: u64, app: Option<&str>) -> Signed {
        Signed {
            address: Address::parse(address).expect("address"),
            app_password: app.map(str::to_string),
            generation,
        }
    }

    fn revocation(address: &str, below: u64, app: Option<&str>) -> Revocation {
        Revocation {
            address: Address::parse(address).expect("address"),
            below,
            app_password: app.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn a_revocation_ends_only_the_sessions_it_names() {
        let registry = Arc::new(Registry::default());
        let (_stop, shutdown) = watch::channel(false);
        let old = registry.enter(&signed("a@example.com", 100, None), &shutdown);
        let phone = registry.enter(&signed("a@example.com", 100, Some("abcd")), &shutdown);
        let laptop = registry.enter(&signed("a@example.com", 100, Some("efgh")), &shutdown);
        let later = registry.enter(&signed("a@example.com", 300, None), &shutdown);
        let other = registry.enter(&signed("b@example.com", 100, None), &shutdown);

        assert_eq!(
            registry.end(&revocation("a@example.com", 200, Some("abcd"))),
            1
        );
        assert!(phone.revoked() && *phone.signal().borrow());
        assert!(!laptop.revoked() && !*laptop.signal().borrow());

        assert_eq!(registry.end(&revocation("a@example.com", 200, None)), 2);
        assert!(old.revoked() && laptop.revoked());
        assert!(!later.revoked(), "a session begun after the change stays");
        assert!(!other.revoked());
        // Read again (the overlap): nothing more ends.
        assert_eq!(registry.end(&revocation("a@example.com", 200, None)), 0);

        assert_eq!(registry.count(&Address::parse("a@example.com").unwrap()), 4);
        drop((old, phone, laptop));
        assert_eq!(registry.count(&Address::parse("a@example.com").unwrap()), 1);
    }

    #[tokio::test]
    async fn shutdown_reaches_signed_in_sessions() {
        let registry = Arc::new(Registry::default());
        let (stop, shutdown) = watch::channel(false);
        let ticket = registry.enter(&signed("a@example.com", 1, None), &shutdown);
        let mut signal = ticket.signal();
        stop.send_replace(true);
        signal.wait_for(|v| *v).await.expect("signal");
        assert!(!ticket.revoked());
        // A session signing in during shutdown starts ended.
        let late = registry.enter(&signed("a@example.com", 2, None), &shutdown);
        assert!(*late.signal().borrow());
    }
}
