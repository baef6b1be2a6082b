//! TLS for every listener that speaks it: SMTP and submission (STARTTLS and
//! implicit TLS), IMAP and POP3 (STARTTLS/STLS and implicit TLS). One rustls
//! [`ServerConfig`] with the ring provider is built at start-up, from the
//! configured PEM files (`STRATUS_TLS_CERT` / `STRATUS_TLS_KEY`) or, when
//! none are configured, from a self-signed certificate kept in
//! `<data dir>/tls/` (generated once and reused on every restart). Its
//! subject alternative names are the host name, `localhost`, `127.0.0.1`
//! and `::1`, so that a local client that trusts the file can verify it
//! whichever of these it connects to.
//!
//! Sessions wrap their stream with [`handshake`] and describe the result
//! with [`TlsInfo`] (for `Received:` lines and logs).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use stratus_runtime::config::TlsFiles;

/// The server side of a TLS handshake over `stream`, bounded by `timeout`;
/// `None` (logged, with `protocol`) when it fails or TLS is not configured.
pub(crate) async fn handshake<S>(
    config: Option<Arc<ServerConfig>>,
    stream: S,
    timeout: Duration,
    protocol: &str,
) -> Option<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let accept = TlsAcceptor::from(config?).accept(stream);
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            debug!(protocol, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(protocol, "TLS handshake timed out");
            None
        }
    }
}

/// The directory in the data directory that holds the generated certificate.
pub const TLS_DIR: &str = "tls";
/// File names of the generated certificate and its key inside [`TLS_DIR`].
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("the TLS certificate and key are not usable together: {0}")]
    Config(String),
}

/// The server configuration every TLS listener shares: from `files` when
/// configured, else from the self-signed certificate in `data_dir/tls/`
/// (generated for `hostname` if missing); with `files.dir`, the
/// certificates there are chosen by SNI ([`SniCerts`]) and this one is
/// the default.
pub fn server_config(
    files: &TlsFiles,
    data_dir: &Path,
    hostname: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => self_signed(&data_dir.join(TLS_DIR), hostname)?,
    };
    let (certs, key) = load_pem(&cert, &key)?;
    let Some(dir) = &files.dir else {
        return build(certs, key);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let default = certified(&provider, certs, key)?;
    let resolver = SniCerts::load(dir, default, provider.clone())?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}

/// A chain and its key, ready to present; an error when they do not match.
fn certified(
    provider: &rustls::crypto::CryptoProvider,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let certified = CertifiedKey::new(certs, key);
    certified
        .keys_match()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// How often the certificate directory is read again, so that renewed
/// certificates are served without a restart.
const RELOAD: Duration = Duration::from_secs(600);

/// Certificates chosen by the name the client asks for (SNI): each one
/// under the DNS names of its subject alternative names (`*.example.com`
/// covers one label), the default certificate for any other name or none.
/// The directory is read again every [`RELOAD`]; a subdirectory that cannot
/// be read then is logged and keeps its last good certificate.
#[derive(Debug)]
pub struct SniCerts {
    dir: PathBuf,
    default: Arc<CertifiedKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: std::sync::RwLock<SniState>,
}

#[derive(Debug)]
struct SniState {
    read_at: std::time::Instant,
    /// What each subdirectory gave: the certificate's names, and it.
    by_dir: HashMap<PathBuf, Loaded>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

type Loaded = (Vec<String>, Arc<CertifiedKey>);

impl SniState {
    fn new(by_dir: HashMap<PathBuf, Loaded>) -> SniState {
        let mut dirs: Vec<&PathBuf> = by_dir.keys().collect();
        // Where two certificates name the same host, the first directory
        // in name order wins, every time.
        dirs.sort();
        let mut by_name = HashMap::new();
        for dir in dirs {
            let (names, key) = &by_dir[dir];
            for name in names {
                by_name.entry(name.clone()).or_insert_with(|| key.clone());
            }
        }
        SniState {
            read_at: std::time::Instant::now(),
            by_dir,
            by_name,
        }
    }
}

impl SniCerts {
    /// Reads `dir`; an error when it cannot be read at all.
    pub fn load(
        dir: &Path,
        default: Arc<CertifiedKey>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<SniCerts, TlsError> {
        let state = SniState::new(read_cert_dir(dir, &provider, &HashMap::new())?);
        info!(dir = %dir.display(), names = state.by_name.len(), "certificates chosen by SNI");
        Ok(SniCerts {
            dir: dir.to_path_buf(),
            default,
            provider,
            state: std::sync::RwLock::new(state),
        })
    }

    /// The certificate for `name` (lower case), if one names it.
    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.reload_if_due();
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let wildcard = name
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        state
            .by_name
            .get(name)
            .or_else(|| wildcard.and_then(|w| state.by_name.get(&w)))
            .cloned()
    }

    fn reload_if_due(&self) {
        let due = self
            .state
            .read()
            .map(|s| s.read_at.elapsed() >= RELOAD)
            .unwrap_or(false);
        if !due {
            return;
        }
        // One handshake reloads; the others go on with what there is.
        let Ok(mut state) = self.state.try_write() else {
            return;
        };
        match read_cert_dir(&self.dir, &self.provider, &state.by_dir) {
            Ok(fresh) => *state = SniState::new(fresh),
            Err(e) => {
                state.read_at = std::time::Instant::now();
                warn!(error = %e, "cannot read the certificate directory again; keeping what was read");
            }
        }
    }
}

impl rustls::server::ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello
            .server_name()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        Some(
            name.and_then(|n| self.lookup(&n))
                .unwrap_or_else(|| self.default.clone()),
        )
    }
}

/// The certificates in the subdirectories of `dir`; a subdirectory whose
/// certificate cannot be read keeps what `before` had for it.
fn read_cert_dir(
    dir: &Path,
    provider: &rustls::crypto::CryptoProvider,
    before: &HashMap<PathBuf, Loaded>,
) -> Result<HashMap<PathBuf, Loaded>, TlsError> {
    let entries = fs::read_dir(dir).map_err(|e| TlsError::Read {
        what: "certificate directory",
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut by_dir = HashMap::new();
    for sub in entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
    {
        let pick = |names: [&str; 2]| names.iter().map(|n| sub.join(n)).find(|p| p.exists());
        let (Some(cert), Some(key)) = (
            pick(["fullchain.pem", "cert.pem"]),
            pick(["privkey.pem", "key.pem"]),
        ) else {
            debug!(dir = %sub.display(), "no certificate and key here; skipped");
            continue;
        };
        let loaded = load_pem(&cert, &key).and_then(|(certs, key)| {
            let names: Vec<String> = webpki::EndEntityCert::try_from(&certs[0])
                .map(|ee| ee.valid_dns_names().map(str::to_ascii_lowercase).collect())
                .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
            Ok((names, certified(provider, certs, key)?))
        });
        match loaded {
            Ok(loaded) => {
                by_dir.insert(sub, loaded);
            }
            Err(e) => {
                warn!(dir = %sub.display(), error = %e, "certificate not usable; skipped");
                if let Some(old) = before.get(&sub) {
                    by_dir.insert(sub, old.clone());
                }
            }
        }
    }
    Ok(by_dir)
}

/// Reads a certificate chain and its private key from PEM files.
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let read_err = |what, path: &Path, reason: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err("certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(read_err(
            "certificate",
            cert,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("key", key, e.to_string()))?;
    Ok((certs, key))
}

/// A server configuration (TLS 1.2 and 1.3, ring, no client certificates).
pub fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The paths of the self-signed certificate and key in `dir`, generated
/// for `hostname` when they do not both exist yet.
pub fn self_signed(dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok((cert, key)),
        (false, false) => {}
        _ => warn!(
            dir = %dir.display(),
            "half of the generated TLS certificate is missing; generating a new one"
        ),
    }
    let generate_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = CertificateParams::default();
    params.subject_alt_names = subject_alt_names(hostname)?;
    let signing_key = KeyPair::generate().map_err(generate_err)?;
    let generated = params.self_signed(&signing_key).map_err(generate_err)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    // The key first: a certificate on disk always has its key beside it.
    write_atomically(&key, signing_key.serialize_pem().as_bytes(), 0o600)
        .map_err(write_err(&key))?;
    write_atomically(&cert, generated.pem().as_bytes(), 0o644).map_err(write_err(&cert))?;
    info!(
        cert = %cert.display(),
        hostname,
        "generated a self-signed TLS certificate; configure STRATUS_TLS_CERT and STRATUS_TLS_KEY for a trusted one"
    );
    Ok((cert, key))
}

/// The subject alternative names of the generated certificate: the host
/// name, and the loopback name and addresses local clients are told to use.
/// An address is an `iPAddress` name: clients match an address only
/// against those, never against a DNS name that spells it.
fn subject_alt_names(hostname: &str) -> Result<Vec<SanType>, TlsError> {
    let dns = |name: &str| {
        name.try_into()
            .map(SanType::DnsName)
            .map_err(|e: rcgen::Error| TlsError::Generate(format!("{name}: {e}")))
    };
    let mut names = vec![match hostname.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => dns(hostname)?,
    }];
    for san in [
        dns("localhost")?,
        SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
        SanType::IpAddress(Ipv6Addr::LOCALHOST.into()),
    ] {
        if !names.contains(&san) {
            names.push(san);
        }
    }
    Ok(names)
}

/// Writes `bytes` to a temporary file created with `mode`, syncs it and
/// renames it over `path`, so a crash leaves the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What was negotiated on a TLS connection, for `Received:` lines and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The IANA-style cipher suite name rustls reports, e.g.
    /// `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsInfo {
    /// Describes a connection whose handshake is complete.
    pub fn of(conn: &rustls::ServerConnection) -> TlsInfo {
        use rustls::ProtocolVersion;
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map_or_else(|| format!("{suite:?}"), str::to_string)
            })
            .unwrap_or_else(|| "unknown".to_string());
        TlsInfo { version, cipher }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn a_self_signed_certificate_is_generated_once_and_reused() {
        let dir = TempDir::new("tls-self-signed");
        let data = dir.path().join("data");
        let config = server_config(&TlsFiles::default(), &data, "mx.test.example").unwrap();
        assert!(config.alpn_protocols.is_empty());
        let tls = data.join(TLS_DIR);
        let cert = fs::read(tls.join(CERT_FILE)).unwrap();
        let key_meta = fs::metadata(tls.join(KEY_FILE)).unwrap();
        assert_eq!(key_meta.permissions().mode() & 0o777, 0o600);
        assert!(String::from_utf8_lossy(&cert).starts_with("-----BEGIN CERTIFICATE-----"));

        // A restart (another host name even) keeps the same certificate.
        server_config(&TlsFiles::default(), &data, "other.example").unwrap();
        assert_eq!(fs::read(tls.join(CERT_FILE)).unwrap(), cert);
        let leftovers: Vec<_> = fs::read_dir(&tls)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Half a pair is replaced by a fresh pair.
        fs::remove_file(tls.join(KEY_FILE)).unwrap();
        server_config(&TlsFiles::default(), &data, "mx.test.example").unwrap();
        assert_ne!(fs::read(tls.join(CERT_FILE)).unwrap(), cert);
    }

    /// What a client that trusts only `pem` (the generated certificate)
    /// says of it when it connects to `name`.
    fn verify(pem: &[u8], name: &str) -> Result<(), rustls::Error> {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};
        let cert = CertificateDer::from_pem_slice(pem).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn the_generated_certificate_names_the_host_and_loopback() {
        let dir = TempDir::new("tls-names");
        let (cert, _) = self_signed(dir.path(), "mx.test.example").unwrap();
        let pem = fs::read(cert).unwrap();
        for name in ["mx.test.example", "localhost", "127.0.0.1", "::1"] {
            if let Err(e) = verify(&pem, name) {
                panic!("not valid for {name}: {e}");
            }
        }
        for name in ["other.example", "192.0.2.1", "::2"] {
            let result = verify(&pem, name);
            assert!(
                matches!(result, Err(rustls::Error::InvalidCertificate(_))),
                "{name}: {result:?}"
            );
        }

        // The addresses are iPAddress names ([7], 4 or 16 octets) and the
        // names dNSName ([2]); no address is spelt as a DNS name.
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let has = |tag: u8, value: &[u8]| {
            let mut needle = vec![tag, u8::try_from(value.len()).unwrap()];
            needle.extend_from_slice(value);
            der.windows(needle.len()).any(|w| w == needle)
        };
        assert!(has(0x87, &Ipv4Addr::LOCALHOST.octets()));
        assert!(has(0x87, &Ipv6Addr::LOCALHOST.octets()));
        assert!(has(0x82, b"localhost"));
        assert!(has(0x82, b"mx.test.example"));
        assert!(!has(0x82, b"127.0.0.1") && !has(0x82, b"::1"));

        // A host name that is one of the loopback names is named once.
        let loopback = [
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
            SanType::IpAddress(Ipv6Addr::LOCALHOST.into()),
        ];
        assert_eq!(subject_alt_names("localhost").unwrap(), loopback);
        let [localhost, v4, v6] = loopback;
        assert_eq!(subject_alt_names("127.0.0.1").unwrap(), [v4, localhost, v6]);
    }

    #[test]
    fn configured_files_are_used_and_bad_ones_are_named() {
        let dir = TempDir::new("tls-configured");
        let generated = rcgen::generate_simple_self_signed(vec!["mail.example".into()]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        fs::write(&cert, generated.cert.pem()).unwrap();
        fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let files = TlsFiles {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            dir: None,
        };
        server_config(&files, &dir.path().join("data"), "mx.example").unwrap();
        assert!(
            !dir.path().join("data").join(TLS_DIR).exists(),
            "nothing generated when files are configured"
        );

        let missing = TlsFiles {
            cert: Some(dir.path().join("nope.pem")),
            key: Some(key.clone()),
            dir: None,
        };
        let err = server_config(&missing, dir.path(), "mx")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("certificate") && err.contains("nope.pem"),
            "{err}"
        );

        fs::write(dir.path().join("empty.pem"), "not pem\n").unwrap();
        let empty = TlsFiles {
            cert: Some(dir.path().join("empty.pem")),
            key: Some(key),
            dir: None,
        };
        let err = server_config(&empty, dir.path(), "mx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty.pem"), "{err}");

        let swapped = TlsFiles {
            cert: Some(cert.clone()),
            key: Some(cert),
            dir: None,
        };
        let err = server_config(&swapped, dir.path(), "mx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key"), "{err}");
    }

    /// Accepts any certificate and keeps the one presented.
    #[derive(Debug)]
    struct Capture(std::sync::Mutex<Option<Vec<u8>>>);

    impl rustls::client::danger::ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap() = Some(end_entity.to_vec());
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.verify_tls12_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// The certificate `config` presents to a client asking for `name`.
    async fn presented(config: Arc<ServerConfig>, name: &str) -> Vec<u8> {
        let capture = Arc::new(Capture(std::sync::Mutex::default()));
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move { TlsAcceptor::from(config).accept(b).await });
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let _client = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, a)
            .await
            .unwrap();
        server.await.unwrap().unwrap();
        capture.0.lock().unwrap().take().unwrap()
    }

    /// Writes a self-signed certificate for `names` into `dir/sub` as
    /// certbot does; its DER.
    fn cert_in(dir: &Path, sub: &str, names: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let sub = dir.join(sub);
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("fullchain.pem"), cert.pem()).unwrap();
        fs::write(sub.join("privkey.pem"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    #[tokio::test]
    async fn certificates_in_the_directory_are_chosen_by_sni() {
        let dir = TempDir::new("tls-sni");
        let certs = dir.path().join("live");
        let a = cert_in(&certs, "a.example", &["a.example", "mta-sts.a.example"]);
        let wild = cert_in(&certs, "wild", &["*.wild.example"]);
        // Unusable: a key that is not the certificate's, and a directory
        // without files. Both are skipped; the rest is served.
        cert_in(&certs, "broken", &["broken.example"]);
        let other = KeyPair::generate().unwrap();
        fs::write(certs.join("broken/privkey.pem"), other.serialize_pem()).unwrap();
        fs::create_dir_all(certs.join("empty")).unwrap();
        let files = TlsFiles {
            dir: Some(certs.clone()),
            ..TlsFiles::default()
        };
        let data = dir.path().join("data");
        let config = server_config(&files, &data, "mx.test.example").unwrap();
        let default = CertificateDer::from_pem_file(data.join(TLS_DIR).join(CERT_FILE))
            .unwrap()
            .to_vec();
        for (name, want) in [
            ("a.example", &a),
            ("MTA-STS.A.example", &a),
            ("imap.wild.example", &wild),
            ("deeper.imap.wild.example", &default),
            ("wild.example", &default),
            ("broken.example", &default),
            ("mx.test.example", &default),
        ] {
            assert!(presented(config.clone(), name).await == *want, "{name}");
        }
        // No such directory: an error at start, not a silent default.
        let missing = TlsFiles {
            dir: Some(dir.path().join("nope")),
            ..TlsFiles::default()
        };
        let err = server_config(&missing, &data, "mx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
