//! Delivery to other mail servers for the send stage: MX lookup (RFC 5321
//! §5.1, with the implicit MX and RFC 7505's null MX), hosts tried in
//! preference order, and one SMTP transaction per host with STARTTLS
//! (RFC 3207).
//!
//! TLS is opportunistic (certificates not verified, RFC 7435) unless the
//! recipient domain asks for more:
//!
//! - DANE ([`dane`]): a host whose MX, address and TLSA lookups are all
//!   DNSSEC-secure ([`dns`]) is used only over TLS its TLSA records
//!   authenticate; one whose TLSA lookup fails is not used at all. DANE
//!   decides for the hosts it covers, before MTA-STS (RFC 8461 §2).
//! - MTA-STS ([`mta_sts`]), a policy in `enforce` mode: only the MX hosts
//!   the policy lists are tried, and only over TLS with a certificate
//!   valid for the MX name (web PKI roots and `STRATUS_TLS_EXTRA_CA`). A
//!   policy in `testing` mode changes nothing but the log.
//!
//! A host that cannot do what is asked is skipped, and when none can, the
//! message waits and is retried (`451 4.7.5`).
//!
//! REQUIRETLS (RFC 8689) mail needs a DNSSEC-signed MX or a policy (a
//! `testing` one is held as enforced), a host authenticated by DANE or by
//! the web PKI, and a receiver that offers REQUIRETLS, which it is passed
//! on to; without them it bounces (`5.7.10`, `5.7.30`). A message that says
//! `TLS-Required: No` sets DANE and the policies aside.
//!
//! Before signing, lines over 998 octets are re-encoded; 8-bit mail for a
//! receiver without 8BITMIME is converted to 7 bits and signed again, once
//! per message and only when such a receiver turns up (RFC 6152 §3); see
//! [`reencode`].
//!
//! The client is small and our own: mail-send's client hides the
//! per-recipient replies the send stage needs.

pub mod dane;
pub mod dns;
pub mod https;
pub mod mta_sts;
pub mod reencode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use stratus_auth::dkim::{Algorithm, DkimKey};
use stratus_core::accounts::{Accounts, DkimKeyState};
use stratus_core::address::Domain;
use stratus_core::job::{Envelope, Recipient};
use stratus_core::ports::Index;
use stratus_core::ports::Transport;
use stratus_core::ports::transport::{Outcome, Seal};
use stratus_core::tlsrpt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5321 §4.5.3.2 asks for minutes; commands get one.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The reply to the end of DATA may take long (§4.5.3.2.6: 10 minutes).
const DATA_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_REPLY_LINES: usize = 100;
const MAX_HOSTS: usize = 10;

/// The SMTP transport of the send stage.
#[derive(Clone)]
pub struct SmtpTransport {
    dns: Arc<MessageAuthenticator>,
    /// The same resolver, for the checks an ARC seal reports.
    auth: stratus_auth::Authenticator,
    /// MX, address and TLSA lookups, with the AD bit (DANE).
    sdns: dns::SecureDns,
    port: u16,
    hostname: String,
    tls: TlsConnector,
    /// Where the DKIM keys of hosted domains are (`None`: no signing).
    keys: Option<Arc<dyn Index>>,
    /// Recipient domains' MTA-STS policies (`None`: not looked up), and
    /// the client that verifies certificates where a policy requires it.
    policies: Option<mta_sts::Policies>,
    /// Where TLS sessions are counted for reports (`None`: not counted).
    reports: Option<Reporter>,
}

/// Counts TLS sessions in the index for RFC 8460 reports.
#[derive(Clone)]
struct Reporter {
    index: Arc<dyn Index>,
    /// This process, so that processes count in rows of their own.
    writer: String,
    /// Days this process has already registered.
    days: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// One count at a time in this process: its rows are its own, so the
    /// compare-and-set in [`tlsrpt::record`] then never has to retry.
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

/// A TLS client that verifies server certificates against Mozilla's roots
/// (webpki-root-certs) and the PEM certificates in `extra_ca`.
pub fn verifying_tls(extra_ca: Option<&std::path::Path>) -> Result<TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let (_, unusable) =
        roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    if unusable > 0 {
        debug!(unusable, "some built-in root certificates are unusable");
    }
    if let Some(path) = extra_ca {
        let mut added = 0;
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{}: no certificate in it", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("port", &self.port)
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl SmtpTransport {
    /// Looks up MX hosts through `dns_server` (`None`: the system's), and
    /// connects to them on `port` (25 in production), saying EHLO as
    /// `hostname`.
    pub fn new(
        dns_server: Option<SocketAddr>,
        port: u16,
        hostname: &str,
    ) -> Result<SmtpTransport, String> {
        let auth = stratus_auth::Authenticator::new(dns_server).map_err(|e| e.to_string())?;
        let dns = auth.resolver().clone();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Opportunistic(provider)))
            .with_no_client_auth();
        Ok(SmtpTransport {
            dns: Arc::new(dns),
            auth,
            sdns: dns::SecureDns::new(dns_server)?,
            port,
            hostname: hostname.to_string(),
            tls: TlsConnector::from(Arc::new(config)),
            keys: None,
            policies: None,
            reports: None,
        })
    }

    /// Looks up and applies recipient domains' MTA-STS policies, fetched
    /// from `port` (443 but in tests) and cached in `cache`; `extra_ca`
    /// adds trust anchors for policy hosts and MX certificates.
    pub fn with_mta_sts(
        mut self,
        port: u16,
        extra_ca: Option<&std::path::Path>,
        cache: Option<Arc<dyn Index>>,
    ) -> Result<SmtpTransport, String> {
        let policies = mta_sts::Policies::new(self.dns.clone(), port, verifying_tls(extra_ca)?);
        self.policies = Some(match cache {
            Some(index) => policies.with_cache(index),
            None => policies,
        });
        Ok(self)
    }

    /// Counts TLS sessions per recipient domain and policy in `index`,
    /// for the daily TLS reports (RFC 8460).
    pub fn with_tls_reports(mut self, index: Arc<dyn Index>) -> SmtpTransport {
        self.reports = Some(Reporter {
            index,
            writer: stratus_core::ids::QueueId::generate().to_string(),
            days: Arc::default(),
            one_at_a_time: Arc::default(),
        });
        self
    }

    /// Counts one session, or one host passed over; a failure to count is
    /// logged, never a reason not to deliver.
    async fn report(&self, policy: &tlsrpt::Policy, outcome: Result<(), tlsrpt::Failure>) {
        let Some(r) = &self.reports else { return };
        let day = tlsrpt::day_of(stratus_core::mailstore::now());
        let new_day = r
            .days
            .lock()
            .map(|mut days| days.insert(day.clone()))
            .unwrap_or(true);
        if new_day && let Err(e) = tlsrpt::register_day(r.index.as_ref(), &day).await {
            warn!(error = %e, "cannot note the day for TLS reports");
        }
        let _turn = r.one_at_a_time.lock().await;
        if let Err(e) = tlsrpt::record(r.index.as_ref(), &r.writer, &day, policy, outcome).await {
            warn!(domain = %policy.domain, error = %e, "cannot count a TLS session for reports");
        }
    }

    /// Signs outgoing mail with the DKIM keys `stratus domain add` stored
    /// in `index`.
    pub fn with_dkim(mut self, index: Arc<dyn Index>) -> SmtpTransport {
        self.keys = Some(index);
        self
    }

    /// `body` with an ARC seal of a forward (see [`Self::seal`]) and DKIM
    /// signatures of `domain`, when they have keys here; unchanged
    /// otherwise.
    async fn sign(
        &self,
        domain: Option<&Domain>,
        seal: Option<(&Seal, &[u8])>,
        body: &[u8],
    ) -> Vec<u8> {
        let sealed = match seal {
            Some((seal, arrived)) => self.seal(seal, arrived, body).await,
            None => None,
        };
        let body = match &sealed {
            Some(set) => [set.as_bytes(), body].concat(),
            None => body.to_vec(),
        };
        let (Some(index), Some(domain)) = (&self.keys, domain) else {
            return body;
        };
        let keys = match Accounts::new(index.clone()).dkim_keys(domain).await {
            Ok(keys) => keys,
            Err(e) => {
                warn!(%domain, error = %e, "cannot read DKIM keys; sending unsigned");
                return body.to_vec();
            }
        };
        let mut headers = String::new();
        // The next keys of a rotation may not be published yet; retired
        // ones are on their way out.
        for key in keys.into_iter().filter(|k| k.state == DkimKeyState::Active) {
            let signed = loaded(&key).and_then(|k| k.sign(&body, domain.as_str(), &key.selector));
            match signed {
                Ok(header) => headers.push_str(&header),
                Err(e) => warn!(%domain, selector = %key.selector, error = %e, "cannot sign"),
            }
        }
        let mut out = headers.into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// The ARC set (RFC 8617) with which the forwarding address's domain
    /// seals `body`, a forward of mail from outside that `arrived` so,
    /// when it arrived with a result that passed and the domain has an RSA
    /// key here; `None` otherwise (the forward goes out unsealed, as
    /// before ARC).
    async fn seal(&self, seal: &Seal, arrived: &[u8], body: &[u8]) -> Option<String> {
        let index = self.keys.as_ref()?;
        let domain = &seal.domain;
        let keys = match Accounts::new(index.clone()).dkim_keys(domain).await {
            Ok(keys) => keys,
            Err(e) => {
                warn!(%domain, error = %e, "cannot read DKIM keys; forwarding unsealed");
                return None;
            }
        };
        // RFC 8617 defines rsa-sha256 only: a set signed otherwise would
        // read as a broken chain.
        let Some(stored) = keys
            .iter()
            .find(|k| k.algorithm == Algorithm::Rsa.tag() && k.state == DkimKeyState::Active)
        else {
            debug!(%domain, "no RSA key to seal with; forwarding unsealed");
            return None;
        };
        let key = match loaded(stored) {
            Ok(key) => key,
            Err(e) => {
                warn!(%domain, selector = %stored.selector, error = %e, "cannot seal");
                return None;
            }
        };
        let arrival = stratus_auth::arc::Arrival {
            ip: seal.arrival.ip,
            helo: &seal.arrival.helo,
            mail_from: seal.mail_from.as_ref(),
        };
        let sealer = stratus_auth::arc::Sealer {
            key: &key,
            domain: domain.as_str(),
            selector: &stored.selector,
            hostname: &self.hostname,
        };
        match self.auth.arc_seal(arrived, body, arrival, sealer).await {
            Ok(set) => Some(set),
            Err(e @ stratus_auth::arc::NotSealed::Error(_)) => {
                warn!(%domain, error = %e, "cannot seal; forwarding unsealed");
                None
            }
            Err(why) => {
                debug!(%domain, %why, "not sealed");
                None
            }
        }
    }

    /// The hosts to try, best first, and whether the MX lookup was
    /// DNSSEC-secure; the error is the outcome for every recipient when
    /// there is none.
    async fn hosts(&self, domain: &str) -> Result<(Vec<String>, bool), Outcome> {
        let answer = match self.sdns.query(domain, RecordType::MX).await {
            Ok(answer) => answer,
            // RFC 7672 §2.1.2: no falling back to the domain's address.
            Err(e) => {
                return Err(Outcome::Temporary(format!(
                    "451 4.4.3 cannot look up the MX of {domain}: {e}"
                )));
            }
        };
        if answer.nxdomain {
            return Err(Outcome::Permanent(format!(
                "550 5.1.2 the domain {domain} does not exist"
            )));
        }
        let mut mx: Vec<(u16, String)> = answer
            .records
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                )),
                _ => None,
            })
            .collect();
        if mx.len() == 1 && mx[0].1.is_empty() {
            // RFC 7505: this domain takes no mail.
            return Err(Outcome::Permanent(
                "556 5.1.10 the domain accepts no mail (null MX)".into(),
            ));
        }
        // Equal preferences in a random order would spread load (RFC 5321
        // §5.1); a stable order keeps retries and logs readable.
        mx.sort_by_key(|(preference, _)| *preference);
        let mut hosts: Vec<String> = mx
            .into_iter()
            .map(|(_, host)| host)
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            // No MX: the domain itself is the implicit MX (§5.1).
            hosts.push(domain.to_string());
        }
        hosts.dedup();
        hosts.truncate(MAX_HOSTS);
        Ok((hosts, answer.secure))
    }

    /// How DANE applies to `host` (RFC 7672 §2.2), given its MX and
    /// address lookups were secure.
    async fn dane(&self, host: &str) -> Dane {
        let name = format!("_25._tcp.{host}");
        let answer = match self.sdns.query(&name, RecordType::TLSA).await {
            Ok(answer) => answer,
            Err(e) => return Dane::Unknown(format!("cannot look up {name}: {e}")),
        };
        if !answer.secure || answer.records.is_empty() {
            return Dane::None;
        }
        let usable: Vec<dane::Tlsa> = answer
            .records
            .iter()
            .filter_map(dane::Tlsa::usable)
            .collect();
        let shown = answer
            .records
            .iter()
            .filter_map(dane::presentation)
            .collect();
        if usable.is_empty() {
            warn!(%host, records = answer.records.len(), "DANE: no TLSA record is usable; TLS without authentication");
            return Dane::TlsOnly(shown);
        }
        match dane::connector(usable) {
            Ok(tls) => Dane::Verify(tls, shown),
            Err(e) => Dane::Unknown(format!("cannot set up DANE TLS: {e}")),
        }
    }

    /// One SMTP session with one host: the per-recipient outcomes, or why
    /// the host could not be used (try the next).
    async fn session(
        &self,
        peer: Peer<'_>,
        envelope: &Envelope,
        recipients: &[Recipient],
        body: &Body,
        note: &mut TlsNote,
    ) -> Result<Vec<Outcome>, String> {
        let Peer {
            addr,
            host,
            required,
            plaintext,
        } = peer;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("{addr}: connection timed out"))?
            .map_err(|e| format!("{addr}: {e}"))?;
        note.local = stream.local_addr().ok().map(|a| a.ip());
        let mut c = BufReader::new(stream);
        let (code, text) = reply(&mut c, COMMAND_TIMEOUT).await?;
        if code != 220 {
            return Err(format!("{host} greeted with {code} {text}"));
        }
        let caps = ehlo(&mut c, &self.hostname).await?;
        // With `required`: TLS required, the certificate checked by it.
        let verified = required.is_some();
        if !has(&caps, "STARTTLS") {
            note.fail("starttls-not-supported", "STARTTLS not offered");
        }
        if verified && !has(&caps, "STARTTLS") {
            let _ = command(&mut c, "QUIT").await;
            return Err(format!("{host} does not offer STARTTLS"));
        }
        if has(&caps, "STARTTLS") && !plaintext {
            command(&mut c, "STARTTLS").await?;
            let (code, text) = reply(&mut c, COMMAND_TIMEOUT).await?;
            if code != 220 {
                note.fail(
                    "starttls-not-supported",
                    &format!("STARTTLS refused: {code}"),
                );
            }
            if code != 220 && verified {
                return Err(format!("{host} refused STARTTLS: {code} {text}"));
            }
            if code == 220 {
                let name = ServerName::try_from(host.to_string())
                    .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
                let connector = required.unwrap_or(&self.tls);
                note.handshake = true;
                let tls =
                    tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(name, c.into_inner()))
                        .await
                        .map_err(|_| {
                            note.fail("validation-failure", "TLS handshake timed out");
                            format!("{host}: TLS handshake timed out")
                        })?
                        .map_err(|e| {
                            let why = tls_error_text(&e);
                            note.fail(tls_result_type(&e), &why);
                            format!("{host}: TLS handshake failed: {why}")
                        })?;
                note.established = true;
                let mut c = BufReader::new(tls);
                let caps = ehlo(&mut c, &self.hostname).await?;
                debug!(%host, "STARTTLS");
                let (data, declare) = self.body_for(&caps, envelope, body).await;
                return transaction(&mut c, &caps, envelope, recipients, data, declare).await;
            }
            debug!(%host, code, %text, "STARTTLS refused; going on in the clear");
        }
        let (data, declare) = self.body_for(&caps, envelope, body).await;
        transaction(&mut c, &caps, envelope, recipients, data, declare).await
    }

    /// The form of `body` for a receiver offering `caps`, and whether to
    /// declare `BODY=8BITMIME`. The 7-bit form is made (and signed) the
    /// first time a receiver without 8BITMIME needs it.
    async fn body_for<'a>(
        &self,
        caps: &[String],
        envelope: &Envelope,
        body: &'a Body,
    ) -> (&'a [u8], bool) {
        // SMTPUTF8 mail only goes to SMTPUTF8 receivers, which take 8 bits.
        let eight_bit_mime = has(caps, "8BITMIME") || envelope.smtputf8;
        if eight_bit_mime || !body.eight_bit {
            let declare = eight_bit_mime && (body.eight_bit || envelope.eight_bit);
            return (&body.as_is, declare);
        }
        let seven = body
            .seven_bit
            .get_or_init(|| async {
                let seven = reencode::reencode(&body.unsigned, true);
                self.sign(
                    body.sign_as.as_ref(),
                    body.seal.as_ref().map(|s| (s, body.arrived.as_slice())),
                    seven.as_deref().unwrap_or(&body.unsigned),
                )
                .await
            })
            .await;
        (seven, false)
    }
}

#[async_trait]
impl Transport for SmtpTransport {
    async fn deliver(
        &self,
        domain: &str,
        envelope: &Envelope,
        recipients: &[Recipient],
        body: &[u8],
        sign_as: Option<&Domain>,
        seal: Option<&Seal>,
    ) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; recipients.len()];
        let fitted = reencode::reencode(body, false).unwrap_or_else(|| body.to_vec());
        let body = Body {
            as_is: self.sign(sign_as, seal.map(|s| (s, body)), &fitted).await,
            eight_bit: reencode::has_8bit(&fitted),
            sign_as: sign_as.cloned(),
            seal: seal.cloned(),
            arrived: if seal.is_some() {
                body.to_vec()
            } else {
                Vec::new()
            },
            unsigned: fitted,
            seven_bit: tokio::sync::OnceCell::new(),
        };
        let (hosts, mx_secure) = match self.hosts(domain).await {
            Ok(h) => h,
            Err(o) => return all(o),
        };
        let policy = match &self.policies {
            Some(policies) => policies.policy(domain).await,
            None => None,
        };
        // TLS-Required: No (RFC 8689 §5) sets DANE and an enforced MTA-STS
        // policy aside (read only then); REQUIRETLS needs a secure MX or a
        // policy, wins over the header, and holds a `testing` policy as if
        // it were enforced.
        let tls_optional =
            !envelope.requiretls && stratus_core::message::says_tls_not_required(&body.unsigned);
        let enforce = policy.as_ref().filter(|p| {
            !tls_optional
                && (p.mode == mta_sts::Mode::Enforce
                    || (envelope.requiretls && p.mode == mta_sts::Mode::Testing))
        });
        if envelope.requiretls && enforce.is_none() && !mx_secure {
            return all(Outcome::Permanent(format!(
                "550 5.7.10 REQUIRETLS: {domain} has neither a DNSSEC-signed MX nor an MTA-STS policy, so no server of it can be verified"
            )));
        }
        if tls_optional {
            info!(%domain, "TLS-Required: No; DANE and MTA-STS are set aside");
        }
        if let Some(p) = policy.as_ref().filter(|p| p.mode == mta_sts::Mode::Testing) {
            for host in hosts.iter().filter(|h| !p.allows(h)) {
                warn!(%domain, %host, "MTA-STS (testing): the MX is not in the policy; delivering anyway");
            }
        }
        // Web PKI, for MTA-STS and for REQUIRETLS to hosts without DANE.
        let pkix = self.policies.as_ref().map(|p| p.tls());
        let mut last = format!("no mail server of {domain} answered");
        // Whether a host was passed over because TLS could not be had as
        // DANE, MTA-STS or REQUIRETLS require: the wait is a security one.
        let mut tls_failed = false;
        for host in hosts {
            let (ips, addresses_secure) = match self.sdns.addresses(&host).await {
                Ok(found) => found,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            // RFC 7672 §2.2: DANE for hosts whose MX and address lookups
            // were secure (the implicit MX's too, §2.2.2).
            let dane = if mx_secure && addresses_secure && !tls_optional {
                self.dane(&host).await
            } else {
                Dane::None
            };
            // What TLS reports (RFC 8460) count this host's session under.
            let reported = match (&dane, &policy) {
                (Dane::Verify(_, records) | Dane::TlsOnly(records), _) => tlsrpt::Policy {
                    kind: "tlsa".into(),
                    strings: records.clone(),
                    domain: domain.to_string(),
                    mx_hosts: vec![host.clone()],
                },
                (Dane::Unknown(_), _) => tlsrpt::Policy {
                    kind: "tlsa".into(),
                    strings: Vec::new(),
                    domain: domain.to_string(),
                    mx_hosts: vec![host.clone()],
                },
                (Dane::None, Some(p)) if p.mode != mta_sts::Mode::None => tlsrpt::Policy {
                    kind: "sts".into(),
                    strings: p.lines(),
                    domain: domain.to_string(),
                    mx_hosts: p.mx.clone(),
                },
                (Dane::None, _) => tlsrpt::Policy::none(domain),
            };
            let passed_over = |kind: &str, why: &str| tlsrpt::Failure {
                result_type: kind.into(),
                sending_ip: None,
                mx: host.clone(),
                receiving_ip: None,
                reason: Some(why.into()),
            };
            // Not in the MTA-STS policy, for a host DANE does not cover: the
            // failure is counted once here, and with `testing` the session
            // that follows is not counted.
            let unlisted = matches!(dane, Dane::None)
                && policy
                    .as_ref()
                    .is_some_and(|p| p.mode != mta_sts::Mode::None && !p.allows(&host));
            // DANE decides for the hosts it covers; MTA-STS may never
            // override it (RFC 8461 §2).
            let tls: Option<&TlsConnector> = match &dane {
                Dane::Unknown(e) => {
                    warn!(%domain, %host, error = %e, "DANE: the TLSA lookup failed; the host is not used");
                    self.report(&reported, Err(passed_over("dnssec-invalid", e)))
                        .await;
                    last = format!("MX {host}: {e}");
                    tls_failed = true;
                    continue;
                }
                Dane::Verify(tls, _) => Some(tls),
                Dane::TlsOnly(_) if envelope.requiretls => {
                    last = format!(
                        "MX {host}: its TLSA records are all unusable, so REQUIRETLS cannot be met"
                    );
                    tls_failed = true;
                    continue;
                }
                Dane::TlsOnly(_) => Some(&self.tls),
                Dane::None => {
                    if unlisted {
                        self.report(
                            &reported,
                            Err(passed_over(
                                "validation-failure",
                                "the MX is not in the MTA-STS policy",
                            )),
                        )
                        .await;
                    }
                    if enforce.is_some() && unlisted {
                        warn!(%domain, %host, "MTA-STS: the MX is not in the policy; skipped");
                        last = format!("MX {host} is not in the MTA-STS policy of {domain}");
                        tls_failed = true;
                        continue;
                    }
                    if enforce.is_some() || envelope.requiretls {
                        pkix
                    } else {
                        None
                    }
                }
            };
            for ip in ips {
                let addr = SocketAddr::new(ip, self.port);
                let mut plaintext = false;
                loop {
                    let mut note = TlsNote::default();
                    let peer = Peer {
                        addr,
                        host: &host,
                        required: tls,
                        plaintext,
                    };
                    let result = self
                        .session(peer, envelope, recipients, &body, &mut note)
                        .await;
                    if !unlisted && !plaintext {
                        let failed = |(kind, why): (&'static str, String)| tlsrpt::Failure {
                            result_type: kind.into(),
                            sending_ip: note.local.map(|ip| ip.to_string()),
                            mx: host.clone(),
                            receiving_ip: Some(ip.to_string()),
                            reason: Some(why),
                        };
                        let outcome = match (note.failure.clone(), note.established, &dane) {
                            (_, true, Dane::TlsOnly(_)) => Some(Err(failed((
                                "tlsa-invalid",
                                "no TLSA record is usable; TLS was not authenticated".into(),
                            )))),
                            (_, true, _) => Some(Ok(())),
                            (Some(failure), false, _) => Some(Err(failed(failure))),
                            // No session to speak of (refused, timed out).
                            (None, false, _) => None,
                        };
                        if let Some(outcome) = outcome {
                            self.report(&reported, outcome).await;
                        }
                    }
                    match result {
                        Ok(outcomes) => {
                            let dane = matches!(dane, Dane::Verify(..));
                            info!(%domain, %host, %addr, dane, "SMTP session done");
                            return outcomes;
                        }
                        // Opportunistic TLS that broke in the handshake: once
                        // more in the clear, as Postfix does, or a server with
                        // a broken TLS set-up would never get its mail.
                        Err(e)
                            if tls.is_none()
                                && !plaintext
                                && note.handshake
                                && !note.established =>
                        {
                            warn!(%domain, %host, %addr, error = %e, "TLS failed; trying once more without TLS");
                            plaintext = true;
                        }
                        Err(e) => {
                            debug!(%domain, %host, error = %e, "host unusable; trying the next");
                            tls_failed |= tls.is_some();
                            last = e;
                            break;
                        }
                    }
                }
            }
        }
        if tls_failed {
            // RFC 3463: 4.7.5, a cryptographic failure.
            let why = match (enforce, mx_secure) {
                (Some(_), _) => format!("the MTA-STS policy of {domain} allows no other way"),
                (None, true) => format!("DANE for {domain} allows no other way"),
                (None, false) => "REQUIRETLS allows no other way".to_string(),
            };
            return all(Outcome::Temporary(format!("451 4.7.5 {last}; {why}")));
        }
        all(Outcome::Temporary(format!("451 4.4.1 {last}")))
    }
}

/// How DANE applies to one MX host (with the TLSA records, as TLS
/// reports show them).
enum Dane {
    /// Not at all: MTA-STS, or opportunistic TLS.
    None,
    /// TLS that these TLSA records authenticate.
    Verify(TlsConnector, Vec<String>),
    /// TLS, unauthenticated: the TLSA records are all unusable (§2.2).
    TlsOnly(Vec<String>),
    /// The TLSA lookup failed: the host must not be used (§2.2).
    Unknown(String),
}

/// Where one session goes: the address, the MX host's name, and the TLS
/// it requires (`None`: opportunistic).
struct Peer<'a> {
    addr: SocketAddr,
    host: &'a str,
    required: Option<&'a TlsConnector>,
    /// Not even STARTTLS: the opportunistic handshake failed before.
    plaintext: bool,
}

/// What one session's TLS came to, for TLS reports.
#[derive(Debug, Default)]
struct TlsNote {
    /// Our address on the connection.
    local: Option<std::net::IpAddr>,
    /// A TLS handshake was started.
    handshake: bool,
    /// TLS was negotiated.
    established: bool,
    /// Why not (RFC 8460 §4.3 result type, and words).
    failure: Option<(&'static str, String)>,
}

impl TlsNote {
    fn fail(&mut self, kind: &'static str, why: &str) {
        self.failure = Some((kind, why.to_string()));
    }
}

/// A failed handshake in words: rustls shows a certificate error of our
/// own verifiers (DANE) by its Debug form, which is no help in a bounce.
fn tls_error_text(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("invalid peer certificate: {other}")
        }
        _ => e.to_string(),
    }
}

/// The RFC 8460 §4.3 result type of a failed TLS handshake.
fn tls_result_type(e: &std::io::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => "certificate-host-mismatch",
            C::Expired | C::ExpiredContext { .. } => "certificate-expired",
            C::UnknownIssuer => "certificate-not-trusted",
            _ => "validation-failure",
        },
        _ => "validation-failure",
    }
}

/// A message ready to send, in the forms a receiver may need.
struct Body {
    /// Long lines re-encoded, not signed: what the 7-bit form is made from.
    unsigned: Vec<u8>,
    /// `unsigned`, signed: what receivers with 8BITMIME (or 7-bit mail) get.
    as_is: Vec<u8>,
    /// Whether `unsigned` has octets outside US-ASCII.
    eight_bit: bool,
    /// The domain whose keys sign it.
    sign_as: Option<Domain>,
    /// The ARC seal of a forward.
    seal: Option<Seal>,
    /// The forward as it arrived (before refitting), which the seal's
    /// results are about; empty when there is no seal.
    arrived: Vec<u8>,
    /// The signed 7-bit form, made when first needed.
    seven_bit: tokio::sync::OnceCell<Vec<u8>>,
}

/// A stored DKIM key, ready to sign.
fn loaded(key: &stratus_core::accounts::DkimKeyRecord) -> Result<DkimKey, String> {
    let algorithm = Algorithm::from_tag(&key.algorithm)
        .ok_or_else(|| format!("unknown algorithm {}", key.algorithm))?;
    let der = stratus_core::base64::decode(&key.private_pkcs8).ok_or("unreadable key")?;
    DkimKey::from_pkcs8(algorithm, der)
}

fn has(caps: &[String], name: &str) -> bool {
    caps.iter().any(|c| {
        c.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(name))
    })
}

async fn command<S: AsyncWrite + Unpin>(c: &mut S, line: &str) -> Result<(), String> {
    c.write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    c.flush().await.map_err(|e| format!("write failed: {e}"))
}

/// A reply: its code and its lines' text.
async fn reply_lines<S: AsyncRead + Unpin>(
    c: &mut BufReader<S>,
    timeout: Duration,
) -> Result<(u16, Vec<String>), String> {
    let read = async {
        let mut text = Vec::new();
        for _ in 0..MAX_REPLY_LINES {
            let mut line = String::new();
            let n = c
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            let line = line.trim_end();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("malformed reply `{line}`"))?;
            text.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
        Err("reply too long".to_string())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| "timed out waiting for a reply".to_string())?
}

/// A reply: its code and its text (lines joined).
async fn reply<S: AsyncRead + Unpin>(
    c: &mut BufReader<S>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let (code, lines) = reply_lines(c, timeout).await?;
    Ok((code, lines.join(" ")))
}

/// EHLO; the extension keywords (HELO when EHLO is refused).
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut BufReader<S>,
    hostname: &str,
) -> Result<Vec<String>, String> {
    command(c.get_mut(), &format!("EHLO {hostname}")).await?;
    let (code, lines) = reply_lines(c, COMMAND_TIMEOUT).await?;
    if code == 250 {
        // The first line is the server's name; the rest are extensions.
        return Ok(lines.into_iter().skip(1).collect());
    }
    command(c.get_mut(), &format!("HELO {hostname}")).await?;
    let (code, text) = reply(c, COMMAND_TIMEOUT).await?;
    if code != 250 {
        return Err(format!("HELO refused: {code} {text}"));
    }
    Ok(Vec::new())
}

/// MAIL, RCPT for each recipient, DATA, QUIT.
async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut BufReader<S>,
    caps: &[String],
    envelope: &Envelope,
    recipients: &[Recipient],
    body: &[u8],
    declare_8bit: bool,
) -> Result<Vec<Outcome>, String> {
    let n = recipients.len();
    if envelope.smtputf8 && !has(caps, "SMTPUTF8") {
        return Ok(vec![
            Outcome::Permanent(
                "553 5.6.7 the receiving server does not take SMTPUTF8 mail".into()
            );
            n
        ]);
    }
    let from = envelope
        .mail_from
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if envelope.requiretls && !has(caps, "REQUIRETLS") {
        return Ok(vec![
            Outcome::Permanent(
                "550 5.7.30 REQUIRETLS support required: the receiving server does not offer it"
                    .into()
            );
            n
        ]);
    }
    let mut mail = format!("MAIL FROM:<{from}>");
    if envelope.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    if envelope.requiretls {
        mail.push_str(" REQUIRETLS");
    }
    if declare_8bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if has(caps, "SIZE") {
        mail.push_str(&format!(" SIZE={}", body.len()));
    }
    command(c.get_mut(), &mail).await?;
    let (code, text) = reply(c, COMMAND_TIMEOUT).await?;
    let whole = |code: u16, text: &str| {
        let r = format!("{code} {text}");
        if code >= 500 {
            Outcome::Permanent(r)
        } else {
            Outcome::Temporary(r)
        }
    };
    if code != 250 {
        let _ = command(c.get_mut(), "QUIT").await;
        return Ok(vec![whole(code, &text); n]);
    }
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(n);
    for r in recipients {
        command(c.get_mut(), &format!("RCPT TO:<{}>", r.address)).await?;
        let (code, text) = reply(c, COMMAND_TIMEOUT).await?;
        outcomes.push((code / 100 != 2).then(|| whole(code, &text)));
    }
    if outcomes.iter().all(Option::is_some) {
        let _ = command(c.get_mut(), "QUIT").await;
        return Ok(outcomes.into_iter().flatten().collect());
    }
    command(c.get_mut(), "DATA").await?;
    let (code, text) = reply(c, COMMAND_TIMEOUT).await?;
    if code != 354 {
        let _ = command(c.get_mut(), "QUIT").await;
        return Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| whole(code, &text)))
            .collect());
    }
    let stuffed = dot_stuff(body);
    c.get_mut()
        .write_all(&stuffed)
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    c.get_mut()
        .flush()
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    let (code, text) = reply(c, DATA_TIMEOUT).await?;
    // Once the server has said 250, the message is its responsibility,
    // whatever happens to QUIT.
    let _ = command(c.get_mut(), "QUIT").await;
    let done = |o: Option<Outcome>| match o {
        Some(o) => o,
        None if code / 100 == 2 => Outcome::Delivered(format!("{code} {text}")),
        None => whole(code, &text),
    };
    Ok(outcomes.into_iter().map(done).collect())
}

/// The message for DATA: lines starting with `.` get another, CRLF line
/// ends throughout, and the `.` line at the end.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Accepts any certificate, but still checks the handshake signatures:
/// opportunistic TLS protects against passive eavesdroppers.
#[derive(Debug)]
pub(crate) struct Opportunistic(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\nb\n"), b"a\r\nb\r\n.\r\n");
    }

    /// A receiver that offers STARTTLS and then breaks every handshake
    /// (it answers with bytes that are not TLS): the message goes once
    /// more in the clear, and the failure is counted for TLS reports.
    #[tokio::test]
    async fn a_broken_tls_handshake_is_followed_by_a_session_in_the_clear() {
        use stratus_auth::fixture::DnsFixture;
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let server_log = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = server_log.clone();
                tokio::spawn(async move {
                    let mut c = BufReader::new(stream);
                    let _ = c.get_mut().write_all(b"220 broken.example ESMTP\r\n").await;
                    let mut line = String::new();
                    while c.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let cmd = line.trim_end().to_string();
                        line.clear();
                        log.lock().unwrap().push(cmd.clone());
                        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" => b"250-broken.example\r\n250-8BITMIME\r\n250 STARTTLS\r\n",
                            "STARTTLS" => {
                                let _ = c.get_mut().write_all(b"220 go ahead\r\n").await;
                                let mut hello = [0u8; 64];
                                let _ = c.get_mut().read(&mut hello).await;
                                let _ = c.get_mut().write_all(b"this is not TLS\r\n").await;
                                return;
                            }
                            "DATA" => b"354 go on\r\n",
                            "QUIT" => b"221 bye\r\n",
                            _ => b"250 ok\r\n",
                        };
                        let _ = c.get_mut().write_all(answer).await;
                        if verb == "DATA" {
                            while c.read_line(&mut line).await.unwrap_or(0) > 0 {
                                let end = line == ".\r\n";
                                line.clear();
                                if end {
                                    break;
                                }
                            }
                            let _ = c.get_mut().write_all(b"250 queued\r\n").await;
                        }
                    }
                });
            }
        });
        let dns = DnsFixture::start();
        dns.add_mx("broken.example", 10, "mx.broken.example");
        dns.add_a("mx.broken.example", std::net::Ipv4Addr::LOCALHOST);
        let dir = tempfile::tempdir().unwrap();
        let index: Arc<dyn Index> =
            Arc::new(stratus_store_local::SqliteIndex::open(&dir.path().join("i.db")).unwrap());
        let transport = SmtpTransport::new(Some(dns.addr()), port, "client.example")
            .unwrap()
            .with_tls_reports(index.clone());
        let envelope = Envelope {
            mail_from: Some("a@client.example".parse().unwrap()),
            recipients: Vec::new(),
            smtputf8: false,
            eight_bit: false,
            ret: None,
            envid: None,
            requiretls: false,
        };
        let rcpt = Recipient {
            address: "b@broken.example".parse().unwrap(),
            notify: None,
            orcpt: None,
            forwarded_by: None,
        };
        let outcomes = transport
            .deliver(
                "broken.example",
                &envelope,
                std::slice::from_ref(&rcpt),
                b"Subject: hi\r\n\r\nhello\r\n",
                None,
                None,
            )
            .await;
        assert!(
            matches!(&outcomes[..], [Outcome::Delivered(r)] if r.starts_with("250")),
            "{outcomes:?}"
        );
        let log = log.lock().unwrap().clone();
        let starttls = log.iter().filter(|c| *c == "STARTTLS").count();
        assert_eq!(starttls, 1, "one try at TLS, then none: {log:?}");
        assert!(
            log.iter()
                .any(|c| c.starts_with("RCPT TO:<b@broken.example>")),
            "{log:?}"
        );
        let day = tlsrpt::day_of(stratus_core::mailstore::now());
        let tallies = tlsrpt::tallies(index.as_ref(), &day).await.unwrap();
        let t = &tallies["broken.example"][0];
        assert_eq!(t.policy.kind, "no-policy-found");
        assert_eq!((t.ok, t.failures()), (0, 1), "{t:?}");
        assert_eq!(t.details[0].0.result_type, "validation-failure");
    }
}
