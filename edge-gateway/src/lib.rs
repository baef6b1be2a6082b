//! The Stratus edge gateway and the `stratus` command.
//!
//! Layout:
//! - [`cli`]: the command line (`serve`, `domain`, `user`), exit codes and
//!   error printing; `main.rs` only calls [`cli::main`].
//! - [`config`]: typed configuration from defaults, a TOML file, `STRATUS_*`
//!   variables and flags — the one place settings are read.
//! - [`stores`]: the composition root of storage; the configured backend
//!   becomes `Arc<dyn BlobStore>`, `Arc<dyn Index>`, `Arc<dyn Queue>`.
//! - [`server`]: listeners, connection limits, graceful shutdown and
//!   `listeners.json`.
//! - [`session`]: the seam where protocol sessions plug in ([`session::handle`]),
//!   with placeholder answers for the protocols that have not landed.
//! - [`smtp`]: the SMTP server of the MX role (sessions, DATA/BDAT, STARTTLS,
//!   durable acceptance, the message-authentication seam).
//! - [`pop3`]: the POP3 server of the `pop3` (STLS) and `pop3s` (implicit
//!   TLS) roles, over the user's INBOX.
//! - [`throttle`]: failed-login counters and delays, shared by every
//!   protocol that takes passwords.
//! - [`tls`]: the rustls server configuration every TLS listener shares,
//!   from configured PEM files or a generated self-signed certificate.
//! - [`role`]: the listener roles (`smtp`, `submission`, ..., `http`).
//! - [`admin`]: the domain and user commands.
//! - [`password_input`], [`size`], [`hostname`], [`logging`]: small helpers.
//!
//! The library target exists so that the end-to-end tests can reuse the
//! configuration, role names and the listeners file format.

pub mod admin;
pub mod cli;
pub mod config;
pub mod hostname;
pub mod logging;
pub mod password_input;
pub mod pop3;
pub mod role;
pub mod server;
pub mod session;
pub mod size;
pub mod smtp;
pub mod stores;
pub mod throttle;
pub mod tls;

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers shared by the unit tests.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("stratus-gw-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
