//! MTA-STS (RFC 8461) for outbound mail: a recipient domain that publishes
//! a policy says which MX hosts may receive its mail, and whether delivery
//! must use TLS with a certificate valid for the MX name.
//!
//! - Discovery: the TXT record `_mta-sts.<domain>` (`v=STSv1; id=...`).
//! - The policy: `https://mta-sts.<domain>/.well-known/mta-sts.txt`,
//!   fetched over TLS with the certificate verified (web PKI roots, plus
//!   `STRATUS_TLS_EXTRA_CA`), no redirects, `200` with `text/plain`, at
//!   most 64 KiB, within 20 seconds.
//! - The cache: in the index (`mtasts|<domain>`), shared by every process
//!   that sends, until `max_age`; fetched again when the TXT id changes or
//!   the policy expires. A failed fetch keeps an unexpired cached policy,
//!   and without one mail goes out as if there were no policy (§5).
//!
//! What `enforce` and `testing` change in delivery is the transport's
//! ([`crate::SmtpTransport`]); this module knows policies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use mail_auth::common::cache::NoCache;
use mail_auth::{IpLookupStrategy, MessageAuthenticator};
use serde::{Deserialize, Serialize};
use stratus_core::ports::{Condition, Index, Key, Write};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

/// The largest policy we read.
pub const MAX_POLICY: usize = 64 * 1024;
/// How long one policy fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest `max_age` a policy may give (§3.2: about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deliver only to listed MX hosts, over TLS with a valid certificate.
    Enforce,
    /// Deliver as without a policy; report what would have failed.
    Testing,
    /// The domain withdrew its policy.
    None,
}

/// A domain's MTA-STS policy (§3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: a host name, or `*.` and a parent (one label).
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

impl Policy {
    /// Parses a policy file: `key: value` lines (CRLF or LF), `version:
    /// STSv1`, `mode`, `max_age`, and one `mx` line per pattern (at least
    /// one unless the mode is `none`). Unknown keys are ignored (§3.2).
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("`{}` is not a `key: value` line", shorten(line)));
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode `{}`", shorten(other))),
                    })
                }
                "max_age" => {
                    let age = value
                        .parse::<u64>()
                        .ok()
                        .filter(|a| *a <= MAX_AGE_LIMIT && value.len() <= 10)
                        .ok_or_else(|| {
                            format!("max_age `{}` is not 0 to {MAX_AGE_LIMIT}", shorten(value))
                        })?;
                    max_age = Some(age);
                }
                "mx" => {
                    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
                    if pattern.is_empty() || pattern.contains(char::is_whitespace) {
                        return Err(format!("mx `{}` is not a host pattern", shorten(value)));
                    }
                    mx.push(pattern);
                }
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("the version is not STSv1".into());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("no mx".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether `host` (an MX name) matches one of the policy's patterns
    /// (§4.1): exactly, or `*.parent` for one label more than `parent`.
    /// The policy's lines, as TLS reports show it (RFC 8460 §4.4).
    pub fn lines(&self) -> Vec<String> {
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        };
        let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
        lines.extend(self.mx.iter().map(|mx| format!("mx: {mx}")));
        lines.push(format!("max_age: {}", self.max_age));
        lines
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The policy id of an `_mta-sts` TXT record (`v=STSv1; id=...;`, §3.1):
/// `v=STSv1` first, one `id` of 1 to 32 letters and digits.
pub fn txt_id(record: &str) -> Result<String, String> {
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=STSv1") {
        return Err("the record does not start with v=STSv1".into());
    }
    let mut id = None;
    for field in fields {
        if let Some(value) = field.strip_prefix("id=") {
            if id.is_some() {
                return Err("more than one id".into());
            }
            if value.is_empty()
                || value.len() > 32
                || !value.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(format!(
                    "id `{}` is not 1 to 32 letters and digits",
                    shorten(value)
                ));
            }
            id = Some(value.to_string());
        }
    }
    id.ok_or_else(|| "no id".into())
}

/// A policy as cached in the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    id: String,
    policy: Policy,
    /// Unix seconds.
    expires: i64,
}

fn cache_key(domain: &str) -> Key {
    Key::new("mtasts", domain)
}

fn now() -> i64 {
    stratus_core::mailstore::now()
}

/// Finds, fetches and caches recipient domains' policies.
#[derive(Clone)]
pub struct Policies {
    dns: Arc<MessageAuthenticator>,
    /// The port policies are fetched from (443; tests use another).
    port: u16,
    /// Verifies the policy host's certificate.
    tls: TlsConnector,
    /// Where policies are cached (`None`: fetched for every delivery).
    cache: Option<Arc<dyn Index>>,
    /// How long one fetch may take ([`FETCH_TIMEOUT`]).
    timeout: Duration,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("port", &self.port)
            .finish()
    }
}

impl Policies {
    pub fn new(dns: Arc<MessageAuthenticator>, port: u16, tls: TlsConnector) -> Policies {
        Policies {
            dns,
            port,
            tls,
            cache: None,
            timeout: FETCH_TIMEOUT,
        }
    }

    /// Gives up on a fetch after `timeout` instead of [`FETCH_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Policies {
        self.timeout = timeout;
        self
    }

    /// The client that verifies certificates against the trust anchors:
    /// for policy hosts, and for MX hosts where a policy is enforced.
    pub fn tls(&self) -> &TlsConnector {
        &self.tls
    }

    pub fn with_cache(mut self, index: Arc<dyn Index>) -> Policies {
        self.cache = Some(index);
        self
    }

    /// The policy that applies to mail for `domain` now, if any (§5).
    pub async fn policy(&self, domain: &str) -> Option<Policy> {
        let cached = self.cached(domain).await.filter(|c| c.expires > now());
        let record = match self.dns.txt_raw_lookup(format!("_mta-sts.{domain}.")).await {
            Ok(raw) => String::from_utf8_lossy(&raw).into_owned(),
            // No record (or DNS trouble): an unexpired cached policy still
            // applies (§5.1); without one, there is none.
            Err(e) => {
                debug!(%domain, error = %e, "no MTA-STS record");
                return cached.map(|c| c.policy);
            }
        };
        let id = match txt_id(&record) {
            Ok(id) => id,
            Err(e) => {
                debug!(%domain, error = %e, "MTA-STS record unusable");
                return cached.map(|c| c.policy);
            }
        };
        if let Some(c) = &cached
            && c.id == id
        {
            return Some(c.policy.clone());
        }
        match tokio::time::timeout(self.timeout, self.fetch(domain)).await {
            Ok(Ok(policy)) => {
                info!(%domain, %id, mode = ?policy.mode, max_age = policy.max_age, "MTA-STS policy fetched");
                self.store(domain, &id, &policy).await;
                Some(policy)
            }
            Ok(Err(e)) => {
                warn!(%domain, error = %e, "cannot fetch the MTA-STS policy");
                cached.map(|c| c.policy)
            }
            Err(_) => {
                warn!(%domain, "fetching the MTA-STS policy timed out");
                cached.map(|c| c.policy)
            }
        }
    }

    async fn cached(&self, domain: &str) -> Option<Cached> {
        let index = self.cache.as_ref()?;
        match index.get(&cache_key(domain)).await {
            Ok(Some(item)) => serde_json::from_slice(&item.value).ok(),
            Ok(None) => None,
            Err(e) => {
                warn!(%domain, error = %e, "cannot read the cached MTA-STS policy");
                None
            }
        }
    }

    async fn store(&self, domain: &str, id: &str, policy: &Policy) {
        let Some(index) = &self.cache else {
            return;
        };
        let cached = Cached {
            id: id.to_string(),
            policy: policy.clone(),
            expires: now().saturating_add(policy.max_age as i64),
        };
        let put = Write::Put {
            key: cache_key(domain),
            value: serde_json::to_vec(&cached).expect("policies serialise"),
            condition: Condition::Any,
        };
        if let Err(e) = index.transact(vec![put]).await {
            warn!(%domain, error = %e, "cannot cache the MTA-STS policy");
        }
    }

    /// GET `https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.3).
    async fn fetch(&self, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let ips = self
            .dns
            .ip_lookup(
                &host,
                IpLookupStrategy::Ipv4thenIpv6,
                4,
                None::<&NoCache<_, _>>,
                None::<&NoCache<_, _>>,
            )
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        let mut last = format!("{host} has no address");
        for ip in ips {
            match self
                .fetch_from(&host, std::net::SocketAddr::new(ip, self.port))
                .await
            {
                Ok(text) => return Policy::parse(&text),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn fetch_from(&self, host: &str, addr: std::net::SocketAddr) -> Result<String, String> {
        let (mut sender, driver) = crate::https::open(&self.tls, host, addr).await?;
        let request = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "Stratus MTA-STS")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let result = async {
            // Redirects are not followed (§3.3): anything but 200 fails.
            if response.status() != hyper::StatusCode::OK {
                return Err(format!("{host} answered {}", response.status()));
            }
            let media = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !media.trim().to_ascii_lowercase().starts_with("text/plain") {
                return Err(format!("{host} sent `{}`, not text/plain", shorten(media)));
            }
            let body = Limited::new(response.into_body(), MAX_POLICY)
                .collect()
                .await
                .map_err(|e| {
                    format!("{host}: the policy is unreadable or over {MAX_POLICY} bytes: {e}")
                })?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| format!("{host}: the policy is not UTF-8"))
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_the_rfc_writes_them() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\nmax_age: 604800\r\nextension: ignored\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"), "a wildcard needs one label");
        assert!(!p.allows("a.b.example.net"), "and only one");
        assert!(!p.allows("mail.example.com.evil.example"));
        assert!(!p.allows("evilmail.example.com"));
        let none = Policy::parse("version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
        assert_eq!(none.mode, Mode::None);
        for bad in [
            "",
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999999999999999\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n<html>\n",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn txt_records_give_an_id() {
        assert_eq!(
            txt_id("v=STSv1; id=20160831085700Z;").unwrap(),
            "20160831085700Z"
        );
        assert_eq!(txt_id("v=STSv1;id=1").unwrap(), "1");
        for bad in [
            "",
            "v=spf1 -all",
            "id=1; v=STSv1",
            "v=STSv1;",
            "v=STSv1; id=",
            "v=STSv1; id=has-dash",
            "v=STSv1; id=1; id=2",
            "v=STSv1; id=123456789012345678901234567890123",
        ] {
            assert!(txt_id(bad).is_err(), "{bad:?}");
        }
    }

    /// An HTTPS server on loopback that answers each connection with what
    /// `answer` gives for it (raw HTTP), or hangs when it gives `None`;
    /// its port, and how many requests it saw.
    async fn server(
        cert: rcgen::CertifiedKey<rcgen::KeyPair>,
        answer: impl Fn(usize) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (count, answer) = (seen.clone(), Arc::new(answer));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, count, answer) = (acceptor.clone(), count.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    match answer(n) {
                        Some(reply) => {
                            let _ = tls.write_all(&reply).await;
                            let _ = tls.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        (port, seen)
    }

    fn ok(body: &str, media: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {media}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    const POLICY: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n";

    /// Policies of `example.net` fetched from a server that answers with
    /// `answer`, trusting `trusted` (or its own certificate).
    struct Case {
        _dns: stratus_auth::fixture::DnsFixture,
        policies: Policies,
        seen: Arc<std::sync::atomic::AtomicUsize>,
    }

    async fn case(
        answer: impl Fn(usize) -> Option<Vec<u8>> + Send + Sync + 'static,
        trust_it: bool,
        cache: Option<Arc<dyn Index>>,
    ) -> Case {
        let cert = rcgen::generate_simple_self_signed(vec!["mta-sts.example.net".into()]).unwrap();
        let dir =
            std::env::temp_dir().join(format!("stratus-sts-{}", stratus_core::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let other = rcgen::generate_simple_self_signed(vec!["other.example".into()]).unwrap();
        let trusted = if trust_it {
            cert.cert.pem()
        } else {
            other.cert.pem()
        };
        std::fs::write(&ca, trusted).unwrap();
        let (port, seen) = server(cert, answer).await;
        let dns = stratus_auth::fixture::DnsFixture::start();
        dns.add_txt("_mta-sts.example.net", "v=STSv1; id=1;");
        dns.add_a("mta-sts.example.net", std::net::Ipv4Addr::LOCALHOST);
        let resolver = Arc::new(stratus_auth::dns_resolver(Some(dns.addr())).unwrap());
        let mut policies = Policies::new(resolver, port, crate::verifying_tls(Some(&ca)).unwrap())
            .with_timeout(Duration::from_secs(1));
        if let Some(index) = cache {
            policies = policies.with_cache(index);
        }
        Case {
            _dns: dns,
            policies,
            seen,
        }
    }

    #[tokio::test]
    async fn a_good_policy_is_fetched_once_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let stores = stratus_store_local::LocalStores::open(dir.path(), 5).unwrap();
        let index: Arc<dyn Index> = Arc::new(stores.index);
        let c = case(
            |_| Some(ok(POLICY, "text/plain; charset=utf-8")),
            true,
            Some(index.clone()),
        )
        .await;
        let p = c.policies.policy("example.net").await.expect("a policy");
        assert_eq!(
            (p.mode, p.mx.as_slice()),
            (Mode::Enforce, &["mx.example.net".to_string()][..])
        );
        assert_eq!(c.policies.policy("example.net").await, Some(p));
        assert_eq!(
            c.seen.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the TXT id is unchanged: cached"
        );
    }

    #[tokio::test]
    async fn hostile_or_broken_policy_hosts_give_no_policy() {
        let big = format!("{POLICY}{}", "x: y\r\n".repeat(20_000));
        type Answer = Box<dyn Fn(usize) -> Option<Vec<u8>> + Send + Sync>;
        let cases: Vec<(&str, Answer, bool)> = vec![
            (
                "over 64 KiB",
                Box::new(move |_| Some(ok(&big, "text/plain"))),
                true,
            ),
            (
                "not text/plain",
                Box::new(|_| Some(ok(POLICY, "text/html"))),
                true,
            ),
            (
                "a redirect",
                Box::new(|_| {
                    Some(b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.example/\r\nContent-Length: 0\r\n\r\n".to_vec())
                }),
                true,
            ),
            (
                "not a policy",
                Box::new(|_| Some(ok("<html>hello</html>", "text/plain"))),
                true,
            ),
            ("no answer", Box::new(|_| None), true),
            (
                "an untrusted certificate",
                Box::new(|_| Some(ok(POLICY, "text/plain"))),
                false,
            ),
        ];
        for (what, answer, trusted) in cases {
            let c = case(answer, trusted, None).await;
            let started = std::time::Instant::now();
            assert_eq!(c.policies.policy("example.net").await, None, "{what}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{what}: bounded in time"
            );
        }
    }
}
