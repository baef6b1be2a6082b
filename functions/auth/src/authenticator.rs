//! The resolver configuration and the checks themselves.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    CLOUDFLARE, ConnectionConfig, GOOGLE, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts, ServerGroup,
};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use stratus_core::address::{Address, Domain};

use crate::guard::{Interrupted, guarded};
use crate::results::{
    AuthOutcome, AuthResult, DkimVerdict, DmarcVerdict, Report, SpfIdentity, SpfResult, arc_result,
    spf_result,
};

/// How long one check (SPF; DKIM and ARC together; DMARC) may take before
/// it is reported as `temperror`: the 20 seconds RFC 7208 §4.6.4 asks an
/// SPF evaluation to be allowed. With a dead resolver a message costs two
/// of them at the end of the data, well inside the 10 minutes a client
/// waits for the reply (RFC 5321 §4.5.3.2.6); most checks answer from the
/// cache or within milliseconds.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);

/// One DNS query's timeout; hickory tries each query twice.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const QUERY_ATTEMPTS: usize = 2;
/// Records hickory keeps (it honours TTLs). Enough for the keys and
/// policies of the senders a gateway sees in a few minutes, small enough
/// that many gateways or Lambda instances do not notice it.
const CACHE_SIZE: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(String),
}

/// Checks senders and messages. Build one per process and share it.
#[derive(Clone)]
pub struct Authenticator {
    pub(crate) inner: MessageAuthenticator,
    pub(crate) deadline: Duration,
    resolver: Option<SocketAddr>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("resolver", &self.resolver)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `Some(addr)` sends every lookup to that one server over UDP and TCP
    /// (`STRATUS_DNS_RESOLVER=IP:PORT`; tests point it at
    /// `fixture::DnsFixture`). `None` reads `/etc/resolv.conf`,
    /// falling back to public resolvers when it is missing or names no
    /// server.
    pub fn new(resolver: Option<SocketAddr>) -> Result<Self, Error> {
        let inner = dns_resolver(resolver)?;
        Ok(Authenticator {
            inner,
            deadline: DEFAULT_DEADLINE,
            resolver,
        })
    }

    /// The resolver behind the checks (with its cache), for callers that
    /// look up more (MX, MTA-STS).
    pub fn resolver(&self) -> &MessageAuthenticator {
        &self.inner
    }

    /// What the DNS publishes at `name` for `kind` (`MX`, `TXT` or
    /// `CNAME`), one entry per record: an MX's host, a TXT record's
    /// strings joined, a CNAME's target; host names in lower case without
    /// the final dot. `Ok(empty)` when there is none; `Err` with the
    /// reason when the lookup failed. Through this resolver's cache: build
    /// a new `Authenticator` to see a change at once.
    pub async fn published(&self, name: &str, kind: &str) -> Result<Vec<String>, String> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let rtype = match kind {
            "MX" => RecordType::MX,
            "TXT" => RecordType::TXT,
            "CNAME" => RecordType::CNAME,
            other => return Err(format!("cannot look up {other} records")),
        };
        let host = |n: &hickory_resolver::proto::rr::Name| {
            n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
        };
        let lookup = self.inner.0.lookup(format!("{name}."), rtype);
        let answers = match tokio::time::timeout(self.deadline, lookup).await {
            Ok(Ok(lookup)) => lookup,
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("the lookup timed out".into()),
        };
        // Only records of the type asked for: an answer may lead with the
        // CNAME it followed.
        Ok(answers
            .answers()
            .iter()
            .filter(|record| record.record_type() == rtype)
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some(host(&mx.exchange)),
                RData::CNAME(cname) => Some(host(&cname.0)),
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Bounds each check (SPF; DKIM and ARC; DMARC) by `deadline` instead
    /// of [`DEFAULT_DEADLINE`]; past it the check is `temperror`.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The A records of `name` (a DNS blocklist query), through the same
    /// resolver and its cache, within `deadline`: `Ok(empty)` when the
    /// name does not exist; `Err` with the reason when the lookup failed.
    pub async fn blocklist_lookup(
        &self,
        name: &str,
        deadline: Duration,
    ) -> Result<Vec<std::net::Ipv4Addr>, String> {
        use mail_auth::{DnsError, Error as AuthError};
        let lookup = self.inner.ipv4_lookup_raw(name);
        match tokio::time::timeout(deadline, lookup).await {
            Ok(Ok(entry)) => Ok(entry.entry.to_vec()),
            Ok(Err(AuthError::Dns(DnsError::RecordNotFound(_)))) => Ok(Vec::new()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
        }
    }

    /// SPF (RFC 7208) at MAIL FROM. `mail_from: None` is the null
    /// reverse-path: the HELO identity is checked instead (§2.4).
    /// `receiving_host` is our own name, the `%{r}` macro.
    pub async fn check_mail_from(
        &self,
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&Address>,
        receiving_host: &str,
    ) -> SpfResult {
        let helo = helo_domain(helo);
        let sender = mail_from.map(Address::to_string);
        let (identity, domain, params) = match (mail_from, &sender) {
            (Some(from), Some(sender)) => (
                SpfIdentity::MailFrom,
                from.domain().as_str().to_string(),
                SpfParameters::verify_mail_from(client_ip, helo, receiving_host, sender),
            ),
            _ => (
                SpfIdentity::Helo,
                helo.to_ascii_lowercase(),
                SpfParameters::verify_ehlo(client_ip, helo, receiving_host),
            ),
        };
        // RFC 7208 §4.3: a HELO name that is no domain (an address
        // literal, say) has no record to look up.
        let checkable = identity == SpfIdentity::MailFrom || Domain::parse(helo).is_ok();
        let result = if !checkable {
            AuthResult::None
        } else {
            match guarded(self.deadline, self.inner.verify_spf(params)).await {
                Ok(output) => spf_result(output.result()),
                Err(Interrupted::Deadline) => AuthResult::TempError,
                Err(Interrupted::Panic) => AuthResult::PermError,
            }
        };
        tracing::debug!(%client_ip, %domain, %result, "spf checked");
        SpfResult {
            result,
            identity,
            domain,
        }
    }

    /// DKIM (RFC 6376), ARC (RFC 8617) and DMARC (RFC 7489) on the message
    /// as received, with `spf` from [`Self::check_mail_from`] for DMARC's
    /// SPF alignment. Never fails: problems become results.
    pub async fn check_message(
        &self,
        raw: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: Option<&Address>,
        spf: &SpfResult,
        receiving_host: &str,
    ) -> AuthOutcome {
        let outcome = match guarded(self.deadline * 3, self.verify(raw, spf)).await {
            Ok(outcome) => outcome,
            // Only reachable if mail-auth panics outside the inner guards.
            Err(interrupted) => {
                let result = match interrupted {
                    Interrupted::Deadline => AuthResult::TempError,
                    Interrupted::Panic => AuthResult::PermError,
                };
                unverified(spf, result, "internal error")
            }
        };
        tracing::debug!(
            %client_ip,
            helo,
            mail_from = ?mail_from.map(Address::to_string),
            receiver = receiving_host,
            results = %outcome.results,
            "message checked"
        );
        outcome
    }

    async fn verify(&self, raw: &[u8], spf: &SpfResult) -> AuthOutcome {
        // Parsing hashes the body, so it is guarded like the lookups.
        let message = match std::panic::catch_unwind(|| AuthenticatedMessage::parse(raw)) {
            Ok(Some(message)) => message,
            Ok(None) => {
                return unverified(spf, AuthResult::PermError, "message could not be parsed");
            }
            Err(_) => {
                tracing::error!("parsing a message for authentication panicked");
                return unverified(spf, AuthResult::PermError, "message could not be parsed");
            }
        };

        let (dkim, arc) = tokio::join!(
            guarded(self.deadline, self.inner.verify_dkim(&message)),
            guarded(self.deadline, self.inner.verify_arc(&message)),
        );
        let arc = match &arc {
            Ok(output) => arc_result(output.result()),
            Err(Interrupted::Deadline) => (AuthResult::TempError, Some("dns timeout")),
            Err(Interrupted::Panic) => (AuthResult::PermError, Some("internal error")),
        };
        let (dkim_outputs, dkim_verdicts, dkim_unsure) = match dkim {
            Ok(outputs) => {
                let verdicts: Vec<_> = outputs.iter().map(DkimVerdict::from_output).collect();
                let unsure = outputs
                    .iter()
                    .any(|o| matches!(o.result(), DkimResult::TempError(_)));
                (outputs, verdicts, unsure)
            }
            Err(Interrupted::Deadline) => (
                Vec::new(),
                vec![DkimVerdict::without_signature(
                    AuthResult::TempError,
                    "dns timeout",
                )],
                true,
            ),
            // Unchecked signatures might have passed: DMARC must not fail.
            Err(Interrupted::Panic) => (
                Vec::new(),
                vec![DkimVerdict::without_signature(
                    AuthResult::PermError,
                    "internal error",
                )],
                true,
            ),
        };

        let spf_output = spf.to_mail_auth();
        let params = DmarcParameters::new(&message, &dkim_outputs, &spf.domain, &spf_output);
        let dmarc = match guarded(self.deadline, self.inner.verify_dmarc(params)).await {
            Ok(output) => {
                DmarcVerdict::from_output(&output, spf.result == AuthResult::TempError, dkim_unsure)
            }
            Err(interrupted) => DmarcVerdict {
                result: match interrupted {
                    Interrupted::Deadline => AuthResult::TempError,
                    Interrupted::Panic => AuthResult::PermError,
                },
                reason: Some(match interrupted {
                    Interrupted::Deadline => "dns timeout",
                    Interrupted::Panic => "internal error",
                }),
                header_from: message
                    .from
                    .first()
                    .and_then(|f| f.rsplit_once('@'))
                    .map(|(_, d)| d.to_ascii_lowercase()),
                policy: None,
            },
        };

        Report {
            spf,
            dkim: dkim_verdicts,
            dmarc,
            arc,
        }
        .into_outcome()
    }
}

/// The outcome when the message itself could not be looked at.
fn unverified(spf: &SpfResult, result: AuthResult, reason: &'static str) -> AuthOutcome {
    Report {
        spf,
        dkim: vec![DkimVerdict::without_signature(result, reason)],
        dmarc: DmarcVerdict {
            result,
            reason: Some(reason),
            header_from: None,
            policy: None,
        },
        arc: (AuthResult::None, None),
    }
    .into_outcome()
}

/// The HELO name as SPF wants it: no trailing dot, no surrounding blanks.
/// An address literal (`[192.0.2.1]`) is passed through; mail-auth answers
/// `none` for it, as RFC 7208 §2.3 asks.
fn helo_domain(helo: &str) -> &str {
    let helo = helo.trim();
    helo.strip_suffix('.').unwrap_or(helo)
}

/// The DNS resolver every part of Stratus uses (mail authentication here,
/// MX lookups for outbound mail): `Some(addr)` sends every lookup to that
/// one server over UDP and TCP (`STRATUS_DNS_RESOLVER`); `None` reads
/// `/etc/resolv.conf`, falling back to public resolvers.
pub fn dns_resolver(resolver: Option<SocketAddr>) -> Result<MessageAuthenticator, Error> {
    let (config, mut opts) = match resolver {
        Some(addr) => (single_server(addr), ResolverOpts::default()),
        None => system_or_fallback(),
    };
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = QUERY_ATTEMPTS;
    opts.cache_size = CACHE_SIZE;
    // Answers come from the DNS, not from whatever this machine's hosts
    // file says.
    opts.use_hosts_file = ResolveHosts::Never;
    MessageAuthenticator::new(config, opts).map_err(|e| Error::Resolver(e.to_string()))
}

fn single_server(addr: SocketAddr) -> ResolverConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])])
}

fn system_or_fallback() -> (ResolverConfig, ResolverOpts) {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, opts)) if !config.name_servers().is_empty() => (config, opts),
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(_) => "it names no server".to_string(),
            };
            tracing::warn!(
                error = %why,
                "cannot use /etc/resolv.conf; mail authentication uses public DNS resolvers"
            );
            (fallback(&[&CLOUDFLARE, &GOOGLE]), ResolverOpts::default())
        }
    }
}

fn fallback(groups: &[&ServerGroup<'_>]) -> ResolverConfig {
    ResolverConfig::from_name_servers(groups.iter().flat_map(|g| g.udp_and_tcp()).collect())
}
