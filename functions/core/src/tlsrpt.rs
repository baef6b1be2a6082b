//! TLS reporting (RFC 8460): what the send stage counts of its TLS
//! sessions, per UTC day, recipient domain and policy, kept in the index
//! until the day is reported; and the report's JSON (§4.4).
//!
//! Layout: `tlsrpt` holds one row per day that has counts (sort key
//! `YYYY-MM-DD`); `tlsrpt|<day>` one row per recipient domain, policy and
//! writing process (`<domain>|<policy hash>|<writer>`), so that processes
//! sending at once do not contend for one row. Each row is a [`Tally`]
//! updated by compare-and-set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ports::{Condition, Index, IndexExt, Key, Outcome, SkRange, StoreError, StoreResult};

const DAYS: &str = "tlsrpt";
/// Distinct failure details kept per row; further kinds are counted in
/// the summary only.
const MAX_DETAILS: usize = 100;
/// Longest `failure-reason-code` kept.
const MAX_REASON: usize = 200;
const CAS_ATTEMPTS: usize = 16;
const PAGE: usize = 100;

/// The policy a session was held to (§4.4 `policy`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Policy {
    /// `sts`, `tlsa` or `no-policy-found`.
    #[serde(rename = "policy-type")]
    pub kind: String,
    /// The policy as published: the MTA-STS policy's lines, or the TLSA
    /// records in presentation form.
    #[serde(
        rename = "policy-string",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub strings: Vec<String>,
    /// The recipient domain.
    #[serde(rename = "policy-domain")]
    pub domain: String,
    /// The MX patterns of an MTA-STS policy; the MX host of a TLSA set.
    #[serde(rename = "mx-host", default, skip_serializing_if = "Vec::is_empty")]
    pub mx_hosts: Vec<String>,
}

impl Policy {
    /// No policy: opportunistic TLS.
    pub fn none(domain: &str) -> Policy {
        Policy {
            kind: "no-policy-found".into(),
            strings: Vec::new(),
            domain: domain.to_string(),
            mx_hosts: Vec::new(),
        }
    }
}

/// One failed session (§4.4 `failure-details`, without the count).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure {
    /// §4.3: `starttls-not-supported`, `certificate-host-mismatch`,
    /// `certificate-expired`, `certificate-not-trusted`,
    /// `validation-failure`, `tlsa-invalid`, `dnssec-invalid`, ...
    #[serde(rename = "result-type")]
    pub result_type: String,
    #[serde(
        rename = "sending-mta-ip",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sending_ip: Option<String>,
    #[serde(rename = "receiving-mx-hostname")]
    pub mx: String,
    #[serde(
        rename = "receiving-ip",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub receiving_ip: Option<String>,
    /// What went wrong, in words.
    #[serde(
        rename = "failure-reason-code",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

/// The counts of one policy (of one writer, or merged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub policy: Policy,
    pub ok: u64,
    /// Failures not itemised in `details` (beyond [`MAX_DETAILS`] kinds).
    #[serde(default)]
    pub other_failures: u64,
    pub details: Vec<(Failure, u64)>,
}

impl Tally {
    fn new(policy: Policy) -> Tally {
        Tally {
            policy,
            ok: 0,
            other_failures: 0,
            details: Vec::new(),
        }
    }

    fn fail(&mut self, failure: Failure, n: u64) {
        if let Some((_, count)) = self.details.iter_mut().find(|(f, _)| *f == failure) {
            *count += n;
        } else if self.details.len() < MAX_DETAILS {
            self.details.push((failure, n));
        } else {
            self.other_failures += n;
        }
    }

    pub fn failures(&self) -> u64 {
        self.other_failures + self.details.iter().map(|(_, n)| n).sum::<u64>()
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.other_failures += other.other_failures;
        for (failure, n) in other.details {
            self.fail(failure, n);
        }
    }
}

/// `YYYY-MM-DD` of a Unix time, in UTC.
pub fn day_of(unix: i64) -> String {
    let (y, m, d) = crate::time::civil_from_day(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Counts one session (or one host passed over) to `policy`'s domain on
/// `day`: a success, or the failure. `writer` names the process.
pub async fn record(
    index: &dyn Index,
    writer: &str,
    day: &str,
    policy: &Policy,
    outcome: Result<(), Failure>,
) -> StoreResult<()> {
    let shape = serde_json::to_vec(policy).unwrap_or_default();
    let hash = crate::ids::fnv1a(shape, crate::ids::FNV_OFFSET);
    let key = Key::new(
        format!("{DAYS}|{day}"),
        format!("{}|{hash:016x}|{writer}", policy.domain),
    );
    let outcome = outcome.map_err(|mut f| {
        if let Some(reason) = f.reason.as_mut() {
            reason.truncate(reason.floor_char_boundary(MAX_REASON));
        }
        f
    });
    for _ in 0..CAS_ATTEMPTS {
        let (mut tally, condition) = match index.get(&key).await? {
            Some(item) => (
                serde_json::from_slice(&item.value).unwrap_or_else(|_| Tally::new(policy.clone())),
                Condition::Version(item.version),
            ),
            None => (Tally::new(policy.clone()), Condition::Absent),
        };
        match &outcome {
            Ok(()) => tally.ok += 1,
            Err(failure) => tally.fail(failure.clone(), 1),
        }
        let value = serde_json::to_vec(&tally).map_err(|e| StoreError::permanent("tlsrpt", e))?;
        if index.put(key.clone(), value, condition).await? == Outcome::Applied {
            return Ok(());
        }
    }
    Err(StoreError::retryable(
        "tlsrpt record",
        "the count kept changing under us",
    ))
}

/// Notes that `day` has counts (once per day and process is enough).
pub async fn register_day(index: &dyn Index, day: &str) -> StoreResult<()> {
    index
        .put(Key::new(DAYS, day), Vec::new(), Condition::Absent)
        .await
        .map(|_| ())
}

/// The days with counts, oldest first.
pub async fn days(index: &dyn Index) -> StoreResult<Vec<String>> {
    let mut days = Vec::new();
    let mut range = SkRange::All;
    loop {
        let page = index.query(DAYS, range, PAGE, false).await?;
        let n = page.len();
        let Some(last) = page.last().map(|i| i.key.sk.clone()) else {
            break;
        };
        days.extend(page.into_iter().map(|i| i.key.sk));
        if n < PAGE {
            break;
        }
        range = SkRange::From(format!("{last}\u{0}"));
    }
    Ok(days)
}

/// `day`'s counts, by recipient domain, each writer's rows merged.
pub async fn tallies(index: &dyn Index, day: &str) -> StoreResult<BTreeMap<String, Vec<Tally>>> {
    let mut by_domain: BTreeMap<String, Vec<Tally>> = BTreeMap::new();
    let pk = format!("{DAYS}|{day}");
    let mut range = SkRange::All;
    loop {
        let page = index.query(&pk, range, PAGE, false).await?;
        let n = page.len();
        let last = page.last().map(|i| i.key.sk.clone());
        for item in page {
            let Ok(tally) = serde_json::from_slice::<Tally>(&item.value) else {
                continue;
            };
            let tallies = by_domain.entry(tally.policy.domain.clone()).or_default();
            match tallies.iter_mut().find(|t| t.policy == tally.policy) {
                Some(existing) => existing.merge(tally),
                None => tallies.push(tally),
            }
        }
        match last {
            Some(last) if n == PAGE => range = SkRange::From(format!("{last}\u{0}")),
            _ => break,
        }
    }
    Ok(by_domain)
}

/// Deletes `day`'s counts, once reported.
pub async fn forget_day(index: &dyn Index, day: &str) -> StoreResult<()> {
    let pk = format!("{DAYS}|{day}");
    loop {
        let page = index.query(&pk, SkRange::All, PAGE, false).await?;
        if page.is_empty() {
            break;
        }
        crate::sweep::delete(index, page).await?;
    }
    index
        .delete(Key::new(DAYS, day), Condition::Any)
        .await
        .map(|_| ())
}

/// Who sends a report, and about what.
#[derive(Debug, Clone)]
pub struct ReportMeta<'a> {
    pub organization: &'a str,
    pub contact: &'a str,
    pub report_id: &'a str,
    /// The UTC day reported, `YYYY-MM-DD`.
    pub day: &'a str,
}

/// The report (§4.4) of one recipient domain's `tallies`.
pub fn report_json(meta: &ReportMeta<'_>, tallies: &[Tally]) -> serde_json::Value {
    let policies: Vec<serde_json::Value> = tallies
        .iter()
        .map(|t| {
            let details: Vec<serde_json::Value> = t
                .details
                .iter()
                .map(|(failure, n)| {
                    let mut v = serde_json::to_value(failure).unwrap_or_default();
                    v["failed-session-count"] = (*n).into();
                    v
                })
                .collect();
            serde_json::json!({
                "policy": t.policy,
                "summary": {
                    "total-successful-session-count": t.ok,
                    "total-failure-session-count": t.failures(),
                },
                "failure-details": details,
            })
        })
        .collect();
    serde_json::json!({
        "organization-name": meta.organization,
        "date-range": {
            "start-datetime": format!("{}T00:00:00Z", meta.day),
            "end-datetime": format!("{}T23:59:59Z", meta.day),
        },
        "contact-info": meta.contact,
        "report-id": meta.report_id,
        "policies": policies,
    })
}

/// The `rua` URIs of a `_smtp._tls` TXT record (§3): `v=TLSRPTv1;
/// rua=mailto:a@example.com,https://...`. An error when it is not one.
pub fn parse_record(txt: &str) -> Result<Vec<String>, String> {
    let mut fields = txt.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next() != Some("v=TLSRPTv1") {
        return Err("not a TLSRPTv1 record".into());
    }
    let mut rua = Vec::new();
    for field in fields {
        let Some((name, value)) = field.split_once('=') else {
            return Err(format!("`{field}` is not `name=value`"));
        };
        if name.trim() == "rua" {
            rua.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string),
            );
        }
    }
    if rua.is_empty() {
        return Err("the record names no rua".into());
    }
    Ok(rua)
}

#[cfg(test)]
mod tests;
