//! The Stratus edge gateway and the `stratus` command: the sessions that
//! do the I/O of each protocol (whose parsers and writers, without I/O,
//! are the `stratus-proto` crate), the listeners, and the admin commands.
//! Configuration and the stores come from `stratus-runtime`, the one
//! composition root.
//!
//! Layout:
//! - [`cli`]: the command line (`serve`, `domain`, `user`, `alias`), exit
//!   codes and error printing; `main.rs` only calls [`cli::main`].
//! - [`server`]: listeners, connection limits, graceful shutdown and
//!   `listeners.json`; it builds each protocol's context.
//! - [`session`]: the seam where a listener hands a connection to its
//!   role's protocol ([`session::handle`]).
//! - [`shared`]: what every protocol's sessions share (stores, TLS,
//!   shutdown, login throttle, host name).
//! - [`smtp`]: MX and submission sessions (DATA/BDAT, STARTTLS, AUTH,
//!   durable acceptance, the message-authentication seam).
//! - [`imap`]: IMAP sessions; each command family in `imap/op/`.
//! - [`pop3`]: POP3 sessions over the user's INBOX.
//! - [`http`]: the HTTP service (health, readiness, metrics, the admin
//!   API, web sign-in and users' own accounts; DAV as it lands), plain
//!   and over TLS; [`jmap`]: JMAP for mail on the same service.
//! - [`conn`]: the buffered, idle-timed, shutdown-aware connection under
//!   every text protocol session; [`deflate`]: IMAP COMPRESS=DEFLATE.
//! - [`login`] and [`throttle`]: password checks (account and app
//!   passwords), failed-login counters and delays, shared by every
//!   protocol that takes passwords; [`sessions`]: the signed-in sessions,
//!   ended when their credentials are revoked.
//! - [`tls`]: the rustls server configuration every TLS listener shares,
//!   from configured PEM files or a generated self-signed certificate.
//! - [`service`]: the service layer (domains, users, aliases) with typed
//!   results and errors; [`admin`] prints them for the command line.
//! - [`password_input`], [`logging`]: small helpers.
//!
//! `main.rs` is the binary; the library target holds everything else, so
//! that the unit tests beside each module can reach the others.

pub mod admin;
pub mod cli;
pub mod cli_audit;
pub(crate) mod conn;
pub mod deflate;
pub mod http;
pub mod imap;
pub mod jmap;
pub mod lists;
pub mod logging;
pub mod login;
pub mod managesieve;
pub mod password_input;
pub mod pop3;
pub mod proxy;
pub mod server;
pub mod service;
pub mod session;
pub mod sessions;
pub mod shared;
pub mod sieve;
pub mod slots;
pub mod smtp;
pub mod spam;
pub mod throttle;
pub mod tls;

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers shared by the unit tests.

    use std::ops::Range;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bytes::Bytes;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use stratus_core::address::{Address, Domain};
    use stratus_core::ids::BlobKey;
    use stratus_core::ports::{BlobMeta, BlobStore, StoreResult};
    use tokio::sync::watch;
    use tokio_rustls::TlsConnector;

    use stratus_runtime::Stores;
    use stratus_runtime::config::{ImapSettings, Pop3Settings, SmtpLimits, TlsFiles};

    use crate::session::Context;
    use crate::shared::Shared;
    use crate::tls;

    /// A blob store that remembers every read of a message body.
    #[derive(Debug)]
    pub struct Counting {
        inner: Arc<dyn BlobStore>,
        pub reads: Mutex<Vec<(String, Option<Range<u64>>)>>,
    }

    impl Counting {
        pub fn new(inner: Arc<dyn BlobStore>) -> Counting {
            Counting {
                inner,
                reads: Mutex::default(),
            }
        }
    }

    #[async_trait]
    impl BlobStore for Counting {
        async fn put(&self, key: &BlobKey, body: Bytes) -> StoreResult<()> {
            self.inner.put(key, body).await
        }
        async fn get(
            &self,
            key: &BlobKey,
            range: Option<Range<u64>>,
        ) -> StoreResult<Option<Bytes>> {
            self.reads
                .lock()
                .unwrap()
                .push((key.to_string(), range.clone()));
            self.inner.get(key, range).await
        }
        async fn head(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
            self.inner.head(key).await
        }
        async fn delete(&self, key: &BlobKey) -> StoreResult<()> {
            self.inner.delete(key).await
        }
        async fn list(
            &self,
            prefix: &str,
            start_after: Option<&BlobKey>,
            limit: usize,
        ) -> StoreResult<Vec<BlobMeta>> {
            self.inner.list(prefix, start_after, limit).await
        }
    }

    /// One CRLF-terminated line from a test client's stream, without its
    /// CRLF, read a byte at a time so nothing after it is taken; fails
    /// the test if the server closes or stays silent for 10 s.
    pub async fn read_line<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
        use tokio::io::AsyncReadExt;
        let mut line = Vec::new();
        let mut byte = [0u8];
        loop {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut byte))
                    .await
                    .expect("server answers")
                    .unwrap();
            assert!(
                n == 1,
                "server closed; so far {:?}",
                String::from_utf8_lossy(&line)
            );
            line.push(byte[0]);
            if line.ends_with(b"\r\n") {
                line.truncate(line.len() - 2);
                return String::from_utf8_lossy(&line).into_owned();
            }
        }
    }

    /// Everything a test client's stream still gets until the server
    /// closes (at most 10 s).
    pub async fn read_rest<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut out),
        )
        .await
        .expect("server closes")
        .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

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

    /// The shared parts of a session context over fresh local stores in
    /// `<dir>/data`: the domain `example.test` with `users` (local part,
    /// password hash, quota) and a certificate generated for `host`.
    /// Sending `true` on the sender shuts the server down.
    pub async fn context(
        dir: &TempDir,
        host: &str,
        users: Vec<(&str, String, Option<u64>)>,
    ) -> (Shared, watch::Sender<bool>) {
        let data = dir.path().join("data");
        let local = stratus_store_local::LocalStores::open(&data, 5).unwrap();
        let stores = Stores::from_local(local);
        let accounts = stores.accounts();
        accounts
            .add_domain(&Domain::parse("example.test").unwrap())
            .await
            .unwrap();
        for (user, hash, quota) in users {
            let address = Address::parse(&format!("{user}@example.test")).unwrap();
            accounts.add_user(&address, hash, quota).await.unwrap();
        }
        let tls = tls::server_config(&TlsFiles::default(), &data, host).unwrap();
        let (stop, shutdown) = watch::channel(false);
        let shared = Shared {
            hostname: host.into(),
            stores,
            shutdown,
            tls: Some(tls),
            throttle: Arc::default(),
            sessions: Arc::default(),
        };
        (shared, stop)
    }

    /// Every protocol's context over `shared`, with default settings and
    /// no message authentication.
    pub fn contexts(shared: Shared) -> Context {
        Context {
            smtp: Arc::new(smtp_context(shared.clone(), SmtpLimits::default())),
            imap: Arc::new(crate::imap::Context {
                shared: shared.clone(),
                settings: ImapSettings::default(),
                append_limit: SmtpLimits::default().max_message_size,
                views: Arc::default(),
                user_ip: Arc::default(),
            }),
            pop3: Arc::new(crate::pop3::Context {
                shared: shared.clone(),
                settings: Pop3Settings::default(),
            }),
            managesieve: Arc::new(crate::managesieve::Context {
                shared: shared.clone(),
            }),
            http: Arc::new(crate::http::Context::new(shared)),
        }
    }

    /// An SMTP context over `shared` with `limits` and no message
    /// authentication.
    pub fn smtp_context(shared: Shared, limits: SmtpLimits) -> crate::smtp::Context {
        crate::smtp::Context {
            shared,
            limits,
            auth: Arc::new(crate::smtp::auth::Unverified),
            send_rate: Arc::default(),
            spam: None,
            clamd: None,
            dnsbl: None,
            sieve_idle: Arc::default(),
        }
    }

    /// A TLS client that trusts exactly the certificate [`context`]
    /// generated in `dir`.
    pub fn tls_connector(dir: &TempDir) -> TlsConnector {
        let pem = dir
            .path()
            .join("data")
            .join(tls::TLS_DIR)
            .join(tls::CERT_FILE);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pem).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}
