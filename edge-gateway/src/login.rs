//! Password logins, the same for every protocol that takes them (POP3,
//! IMAP, and submission next): the shared failed-login throttle, the
//! Argon2id check off the async workers, and logs without secrets.

use std::net::SocketAddr;

use stratus_core::accounts::AccountError;
use stratus_core::address::Address;
use stratus_core::metrics::metrics;
use tracing::{info, warn};

use crate::shared::Shared;
use crate::throttle::Gate;

/// The protocol name of the web sign-in, which takes only the account
/// password (app passwords are for programs, not people at a browser).
pub const WEB: &str = "web";

/// Who signed in, with what, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub address: Address,
    /// The app password's id, when one was used.
    pub app_password: Option<String>,
    /// The account's credential generation the login read: a revocation
    /// of a later one ends the session.
    pub generation: u64,
}

/// What a login attempt came to. Failures have already waited out their
/// throttling delay when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Ok(Signed),
    /// Wrong name or password.
    Failed,
    /// Too many failures from this address: not even checked.
    Blocked,
    /// The account store could not be asked.
    Unavailable,
}

/// Checks `name` and `password` for a `protocol` session from `peer`.
pub async fn login(
    shared: &Shared,
    peer: SocketAddr,
    protocol: &'static str,
    name: &str,
    password: &str,
) -> Login {
    let ip = peer.ip().to_canonical();
    if let Gate::Blocked { delay } = shared.throttle.check(ip, name) {
        metrics().login(protocol, false);
        warn!(protocol, user = name, %peer, "login refused: too many failures from this address");
        tokio::time::sleep(delay).await;
        return Login::Blocked;
    }
    match check_password(shared, name, password, protocol != WEB).await {
        Ok(Some(signed)) => {
            metrics().login(protocol, true);
            shared.throttle.succeeded(ip, name);
            match &signed.app_password {
                Some(id) => {
                    info!(protocol, user = %signed.address, %peer, app_password = %id, "login")
                }
                None => info!(protocol, user = %signed.address, %peer, "login"),
            }
            Login::Ok(signed)
        }
        Ok(None) => {
            metrics().login(protocol, false);
            let delay = shared.throttle.failed(ip, name);
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

/// The account, when the password is right (the account's, or one of its
/// app passwords when `apps`) and the account is not disabled. One
/// Argon2id check either way: an app password's first characters name
/// the one hash to check. Never logs the password.
async fn check_password(
    shared: &Shared,
    name: &str,
    password: &str,
    apps: bool,
) -> Result<Option<Signed>, AccountError> {
    let record = match Address::parse(name) {
        Ok(address) => shared.stores.accounts().user(&address).await?,
        Err(_) => None,
    };
    let Some(record) = record else {
        // As slow as a wrong password, so that the time taken does not
        // tell which accounts exist.
        verify_off_thread(decoy_hash().to_string(), password.to_string()).await;
        return Ok(None);
    };
    let app = apps
        .then(|| stratus_core::credentials::app_password_id(password))
        .flatten()
        .and_then(|id| record.app_passwords.iter().find(|p| p.id == id));
    let (hash, given, app_password) = match app {
        Some(app) => (
            app.hash.clone(),
            stratus_core::credentials::normalise_app_password(password).unwrap_or_default(),
            Some(app.id.clone()),
        ),
        None => (record.password_hash, password.to_string(), None),
    };
    let ok = verify_off_thread(hash, given).await;
    if ok && record.disabled {
        info!(user = %record.address, "login refused: the account is disabled");
        return Ok(None);
    }
    Ok(ok.then_some(Signed {
        address: record.address,
        app_password,
        generation: record.generation,
    }))
}

/// An Argon2id hash of nothing anyone types, made once, checked for
/// names that are no account.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = stratus_core::ids::random_hex(16);
        stratus_core::password::hash(&secret).unwrap_or_default()
    })
}

type Check = (String, String, tokio::sync::oneshot::Sender<bool>);

/// Argon2 is deliberately slow, so checks run off the async workers: on a
/// few threads of their own (one per core, at most four), each reusing one
/// Argon2 memory area while logins come, and giving it back when they stop.
/// Through the blocking pool every login could leave 19 MiB behind in a
/// thread's allocator arena for good (1,000 idle sessions measured 2 MiB
/// each). Checks wait their turn in a queue.
async fn verify_off_thread(hash: String, password: String) -> bool {
    /// A thread with no check to do for this long frees its memory area.
    const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
    static CHECKS: std::sync::OnceLock<std::sync::mpsc::Sender<Check>> = std::sync::OnceLock::new();
    let checks = CHECKS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Check>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for n in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || {
                    let mut verifier = stratus_core::password::Verifier::default();
                    loop {
                        let next = rx.lock().map(|rx| rx.recv_timeout(RELEASE_AFTER));
                        match next {
                            Ok(Ok((hash, password, reply))) => {
                                let _ = reply.send(verifier.verify(&hash, &password));
                            }
                            Ok(Err(std::sync::mpsc::RecvTimeoutError::Timeout)) => {
                                if verifier.holds_memory() {
                                    verifier.release();
                                    return_freed_memory();
                                }
                            }
                            _ => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        tx
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    if checks.send((hash, password, reply)).is_err() {
        return false;
    }
    answer.await.unwrap_or(false)
}

/// Hands memory the allocator keeps after frees back to the system:
/// glibc keeps a thread's freed 19 MiB Argon2 area in that thread's arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_freed_memory() {
    // SAFETY: malloc_trim only returns unused memory of the allocator's
    // own arenas to the system; it touches no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory() {}
