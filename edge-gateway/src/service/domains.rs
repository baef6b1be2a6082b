//! Hosted domains: add (with DKIM keys), list, delete, the DNS records to
//! publish, and a check of what is published.

use serde::Serialize;
use stratus_auth::dkim::{Algorithm, DkimKey};
use stratus_core::accounts::{AccountError, DkimKeyRecord, DkimKeyState};

use stratus_core::{Address, Domain};

use super::{Service, ServiceError, ServiceResult};

/// A hosted domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DomainInfo {
    /// As stored: lower case, internationalised names in A-labels.
    pub name: String,
    /// The same in Unicode, where it differs.
    pub unicode: Option<String>,
    /// Where mail to addresses nobody has here goes (a user or alias),
    /// if anywhere.
    pub catch_all: Option<String>,
}

/// A domain just added, and the DNS records to publish for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DomainAdded {
    pub domain: DomainInfo,
    pub records: Vec<DnsRecord>,
}

/// One DNS record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DnsRecord {
    /// What it is for: `MX`, `SPF`, `DKIM`, `DMARC`, `TLS-RPT`, `MTA-STS`.
    #[schema(value_type = String)]
    pub purpose: &'static str,
    /// The owner name, fully qualified, without the final dot.
    pub name: String,
    /// `MX`, `TXT` or `CNAME`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The record's data as a zone file writes it (TXT strings quoted,
    /// split at 255 bytes).
    pub value: String,
}

impl DnsRecord {
    /// The record as one zone file line.
    pub fn zone_line(&self) -> String {
        format!("{}.\tIN {} {}", self.name, self.kind, self.value)
    }
}

/// An MTA-STS policy id (1 to 32 letters and digits) that changes with the
/// policy: its FNV-1a hash in hex.
fn policy_id(policy: &str) -> String {
    use stratus_core::ids::{FNV_OFFSET, fnv1a};
    format!("{:016x}", fnv1a(policy.bytes(), FNV_OFFSET))
}

/// A TXT record's data: quoted strings of at most 255 bytes each.
/// A record to publish, and what the DNS has there now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DnsCheck {
    #[serde(flatten)]
    pub record: DnsRecord,
    /// Whether the record is published as it should be (`None`: the
    /// lookup failed, so nobody knows). Only with `check=true`.
    #[schema(required = false)]
    pub published: Option<bool>,
    /// What the DNS has at that name of that type (MX and CNAME: the host
    /// names; TXT: each record's text). Only with `check=true`.
    #[schema(required = false)]
    pub found: Vec<String>,
    /// Why the lookup failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DnsRecord {
    /// Whether `found` (as [`stratus_auth::Authenticator::published`]
    /// gives it) holds this record: a TXT record's text exactly (DKIM keys
    /// are case-sensitive), the host an MX or CNAME names without case.
    pub(super) fn is_in(&self, found: &[String]) -> bool {
        if self.kind == "TXT" {
            let text: String = self
                .value
                .split("\" \"")
                .map(|s| s.trim_matches('"'))
                .collect();
            return found.contains(&text);
        }
        let host = self
            .value
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .trim_end_matches('.');
        found.iter().any(|f| f.eq_ignore_ascii_case(host))
    }
}

fn txt(data: &str) -> String {
    data.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Service {
    /// Hosts a new domain and creates its DKIM keys (Ed25519 and RSA);
    /// returns the records to publish.
    pub async fn add_domain(&self, domain: &Domain) -> ServiceResult<DomainAdded> {
        self.accounts.add_domain(domain).await?;
        let keys = super::dkim::new_keys("", DkimKeyState::Active)?;
        self.accounts.put_dkim_keys(domain, keys).await?;
        Ok(DomainAdded {
            domain: info(domain, None),
            records: self.dns_records(domain).await?,
        })
    }

    pub async fn list_domains(&self) -> ServiceResult<Vec<DomainInfo>> {
        Ok(self
            .accounts
            .list_domains()
            .await?
            .iter()
            .map(|r| info(&r.name, r.catch_all.as_ref()))
            .collect())
    }

    /// One hosted domain.
    pub async fn domain_info(&self, domain: &Domain) -> ServiceResult<DomainInfo> {
        match self.accounts.domain(domain).await? {
            Some(r) => Ok(info(&r.name, r.catch_all.as_ref())),
            None => Err(not_hosted(domain)),
        }
    }

    /// Changes the SRS settings as asked (days SRS addresses are taken,
    /// a new signing secret); how many days and secrets there are now.
    pub async fn srs(&self, max_age: Option<u32>, rotate: bool) -> ServiceResult<(u32, usize)> {
        use stratus_core::srs::Srs;
        let index = self.accounts.index();
        if let Some(days) = max_age {
            Srs::set_max_age(index, days)
                .await
                .map_err(AccountError::from)?;
        }
        if rotate {
            Srs::rotate(index).await.map_err(AccountError::from)?;
        }
        let srs = Srs::load(index).await.map_err(AccountError::from)?;
        Ok((srs.max_age_days(), srs.secrets()))
    }

    /// Sends mail for addresses nobody has at `domain` to `target` (a
    /// user or alias here), or (None) refuses it again at RCPT.
    pub async fn set_catch_all(
        &self,
        domain: &Domain,
        target: Option<&Address>,
    ) -> ServiceResult<()> {
        match self.accounts.set_catch_all(domain, target).await {
            Err(AccountError::UnknownDomain(d)) => Err(not_hosted(&d)),
            Err(AccountError::UnknownTarget(t)) => Err(ServiceError::NotFound(format!(
                "{t} is neither a user nor an alias here"
            ))),
            other => Ok(other?),
        }
    }

    /// Stops hosting a domain that has no users, aliases or lists left.
    /// API keys that covered it stop covering it (a domain admin key left
    /// with no domain is revoked), so that whoever adds the name again
    /// later does not inherit the old keys.
    pub async fn del_domain(&self, domain: &Domain) -> ServiceResult<DomainInfo> {
        match self.accounts.del_domain(domain).await {
            Ok(()) => {
                self.forget_domain_in_keys(domain).await?;
                self.forget_domain_in_grants(domain).await?;
                Ok(info(domain, None))
            }
            // Core's message suggests adding the domain, which is no help
            // to someone deleting it.
            Err(AccountError::UnknownDomain(d)) => Err(not_hosted(&d)),
            Err(e) => Err(e.into()),
        }
    }

    /// The records to publish for a hosted domain: MX, SPF, one DKIM key
    /// per selector, DMARC, TLS-RPT, and MTA-STS (its TXT record and the
    /// host that serves the policy). (The PTR record of the sending
    /// address is the address owner's to set, not the domain's.)
    pub async fn dns_records(&self, domain: &Domain) -> ServiceResult<Vec<DnsRecord>> {
        if self.accounts.domain(domain).await?.is_none() {
            return Err(not_hosted(domain));
        }
        let host = &self.hostname;
        let mut records = vec![DnsRecord {
            purpose: "MX",
            name: domain.to_string(),
            kind: "MX",
            value: format!("10 {host}."),
        }];
        // The MX hosts send too; so do the outbound addresses when mail
        // leaves through others (a NAT gateway).
        let mut spf = String::from("v=spf1 mx");
        for ip in &self.outbound_addresses {
            match ip {
                std::net::IpAddr::V4(ip) => spf.push_str(&format!(" ip4:{ip}")),
                std::net::IpAddr::V6(ip) => spf.push_str(&format!(" ip6:{ip}")),
            }
        }
        spf.push_str(" -all");
        records.push(DnsRecord {
            purpose: "SPF",
            name: domain.to_string(),
            kind: "TXT",
            value: txt(&spf),
        });
        // Every key: the active ones sign, the next ones will, and the
        // retired ones did (mail signed with them is still checked).
        for key in self.accounts.dkim_keys(domain).await? {
            records.push(dkim_record(domain, &key)?);
        }
        records.push(DnsRecord {
            purpose: "DMARC",
            name: format!("_dmarc.{domain}"),
            kind: "TXT",
            value: txt(&format!(
                "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"
            )),
        });
        records.push(DnsRecord {
            purpose: "TLS-RPT",
            name: format!("_smtp._tls.{domain}"),
            kind: "TXT",
            value: txt(&format!("v=TLSRPTv1; rua=mailto:postmaster@{domain}")),
        });
        // The id changes whenever the policy does, so senders fetch it anew.
        records.push(DnsRecord {
            purpose: "MTA-STS",
            name: format!("_mta-sts.{domain}"),
            kind: "TXT",
            value: txt(&format!(
                "v=STSv1; id={}",
                policy_id(&self.mta_sts_policy())
            )),
        });
        records.push(DnsRecord {
            purpose: "MTA-STS",
            name: format!("mta-sts.{domain}"),
            kind: "CNAME",
            value: format!("{host}."),
        });
        Ok(records)
    }

    /// The records to publish, each with what the DNS has now: looked up
    /// afresh (a new resolver, no cache), all at once.
    pub async fn check_dns(&self, domain: &Domain) -> ServiceResult<Vec<DnsCheck>> {
        let records = self.dns_records(domain).await?;
        let resolver = self.dns_checker()?;
        // All at once: a slow name costs one deadline, not one each.
        let mut lookups = tokio::task::JoinSet::new();
        for (i, r) in records.iter().enumerate() {
            let (resolver, name, kind) = (resolver.clone(), r.name.clone(), r.kind);
            lookups.spawn(async move { (i, resolver.published(&name, kind).await) });
        }
        let mut answers = vec![Err("not looked up".to_string()); records.len()];
        while let Some(done) = lookups.join_next().await {
            if let Ok((i, answer)) = done {
                answers[i] = answer;
            }
        }
        Ok(records
            .into_iter()
            .zip(answers)
            .map(|(record, answer)| match answer {
                Ok(found) => DnsCheck {
                    published: Some(record.is_in(&found)),
                    record,
                    found,
                    error: None,
                },
                Err(e) => DnsCheck {
                    record,
                    published: None,
                    found: Vec::new(),
                    error: Some(e),
                },
            })
            .collect())
    }

    /// A resolver to check what is published: a new one, so no cache
    /// hides a record just published. A person waits on it: a dead name
    /// server costs seconds, not the 20 a message's SPF check may take.
    pub(super) fn dns_checker(&self) -> ServiceResult<stratus_auth::Authenticator> {
        Ok(stratus_auth::Authenticator::new(self.dns_resolver)
            .map_err(|e| ServiceError::Unavailable(format!("no DNS resolver: {e}")))?
            .with_deadline(std::time::Duration::from_secs(8)))
    }

    /// The MTA-STS policy (RFC 8461) every hosted domain publishes at
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`: our MX host, in
    /// `testing` mode (senders report failures but still deliver) until the
    /// operator has a certificate valid for the MX name and changes it to
    /// `enforce`.
    pub fn mta_sts_policy(&self) -> String {
        format!(
            "version: STSv1\r\nmode: testing\r\nmx: {}\r\nmax_age: 604800\r\n",
            self.hostname
        )
    }

    /// Our host name, which the MX record names and which the PTR record
    /// of the sending address should name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }
}

fn info(domain: &Domain, catch_all: Option<&Address>) -> DomainInfo {
    let unicode = domain.to_unicode();
    DomainInfo {
        name: domain.to_string(),
        unicode: (unicode != domain.as_str()).then_some(unicode),
        catch_all: catch_all.map(ToString::to_string),
    }
}

/// The TXT record that publishes a DKIM key.
pub(super) fn dkim_record(domain: &Domain, key: &DkimKeyRecord) -> ServiceResult<DnsRecord> {
    let unreadable = |why: String| {
        ServiceError::Internal(format!(
            "the stored DKIM key {} is unreadable: {why}",
            key.selector
        ))
    };
    let algorithm = Algorithm::from_tag(&key.algorithm)
        .ok_or_else(|| unreadable(format!("unknown algorithm {}", key.algorithm)))?;
    let pkcs8 = stratus_core::base64::decode(&key.private_pkcs8)
        .ok_or_else(|| unreadable("not base64".into()))?;
    let record = DkimKey::from_pkcs8(algorithm, pkcs8)
        .map_err(|e| unreadable(e.to_string()))?
        .dns_record();
    Ok(DnsRecord {
        purpose: "DKIM",
        name: format!("{}._domainkey.{domain}", key.selector),
        kind: "TXT",
        value: txt(&record),
    })
}

pub(super) fn not_hosted(domain: &Domain) -> ServiceError {
    ServiceError::NotFound(format!("domain {domain} is not hosted here"))
}
