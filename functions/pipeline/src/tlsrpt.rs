//! The daily TLS reports (RFC 8460): for every recipient domain the send
//! stage had sessions with, a report of the day's counts
//! ([`stratus_core::tlsrpt`]) to the `mailto:` addresses of the domain's
//! `_smtp._tls` TXT record, as a message that goes out through the route
//! and send stages like any other (DKIM-signed with the keys of the hosted
//! domain our host name belongs to, when there is one).
//!
//! A finished day is reported once: each domain is marked when its report
//! is queued, and the day's counts are deleted once every domain is done.
//! A domain whose record cannot be looked up waits for the next run (for
//! up to [`GIVE_UP_DAYS`]). `https:` report URIs are not served yet: they
//! are logged and skipped.

use async_trait::async_trait;
use stratus_core::BlobKey;
use stratus_core::accounts::Accounts;
use stratus_core::address::{Address, Domain};
use stratus_core::ids::QueueId;
use stratus_core::job::{Job, Recipient, Verdict};
use stratus_core::ports::{Condition, IndexExt, Key, Queue};
use stratus_core::tlsrpt::{self, ReportMeta};
use tracing::{info, warn};

use crate::{HandlerError, Ports, Settings};

/// After this many days a domain whose record could not be looked up is
/// given up on.
pub const GIVE_UP_DAYS: i64 = 3;

/// Looks up TXT records (the `_smtp._tls` record of a domain).
#[async_trait]
pub trait TxtLookup: Send + Sync {
    /// The records' texts; empty when there is none (NXDOMAIN, NODATA);
    /// an error when the lookup failed.
    async fn txt(&self, name: &str) -> Result<Vec<String>, String>;
}

/// Which counts to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every finished day not reported yet; reported days are forgotten.
    Due,
    /// One day's counts so far (today's too), again if it was reported;
    /// nothing is marked or forgotten.
    Day(String),
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Run {
    /// Reports queued: day, domain, addresses.
    pub sent: Vec<(String, String, Vec<String>)>,
    /// Domains not reported to: day, domain, why.
    pub skipped: Vec<(String, String, String)>,
}

/// Sends the reports `which` asks for, as of `now`.
pub async fn send_reports(
    ports: &Ports,
    queue: &dyn Queue,
    settings: &Settings,
    dns: &dyn TxtLookup,
    which: Which,
    now: i64,
) -> Result<Run, HandlerError> {
    let today = tlsrpt::day_of(now);
    let (days, mark) = match which {
        Which::Due => (
            tlsrpt::days(ports.index.as_ref())
                .await?
                .into_iter()
                .filter(|d| *d < today)
                .collect::<Vec<_>>(),
            true,
        ),
        Which::Day(day) => (vec![day], false),
    };
    let author = author_domain(ports, &settings.hostname).await;
    let mut run = Run::default();
    for day in days {
        let Some(start) = day_start(&day) else {
            run.skipped
                .push((day.clone(), String::new(), "not a date".into()));
            continue;
        };
        let mut all_done = true;
        for (domain, tallies) in tlsrpt::tallies(ports.index.as_ref(), &day).await? {
            let done_key = Key::new(format!("tlsrpt|{day}"), format!("~sent|{domain}"));
            if mark && ports.index.get(&done_key).await?.is_some() {
                continue;
            }
            let skip = |why: String| (day.clone(), domain.clone(), why);
            let records = match dns.txt(&format!("_smtp._tls.{domain}")).await {
                Ok(records) => records,
                Err(e) if now - start < GIVE_UP_DAYS * 86_400 => {
                    run.skipped.push(skip(format!("{e}; tried again later")));
                    all_done = false;
                    continue;
                }
                Err(e) => {
                    run.skipped.push(skip(format!("{e}; given up")));
                    Vec::new()
                }
            };
            let rua: Vec<String> = records
                .iter()
                .filter_map(|r| tlsrpt::parse_record(r).ok())
                .flatten()
                .collect();
            let (mailto, other): (Vec<String>, Vec<String>) =
                rua.into_iter().partition(|u| u.starts_with("mailto:"));
            for uri in &other {
                warn!(%domain, %uri, "TLS report URI not supported (only mailto:); skipped");
            }
            let to: Vec<Address> = mailto
                .iter()
                .filter_map(|u| Address::parse(u.trim_start_matches("mailto:")).ok())
                .collect();
            if to.is_empty() {
                if records.is_empty() {
                    run.skipped
                        .push(skip("publishes no _smtp._tls record".into()));
                } else {
                    run.skipped.push(skip(
                        "its _smtp._tls record names no mailto: address".into(),
                    ));
                }
            } else {
                let report_id = format!("{day}T00:00:00Z_{domain}@{}", settings.hostname);
                let meta = ReportMeta {
                    organization: &settings.hostname,
                    contact: &format!(
                        "postmaster@{}",
                        author
                            .as_ref()
                            .map_or(settings.hostname.as_str(), |d| d.as_str())
                    ),
                    report_id: &report_id,
                    day: &day,
                };
                let json = serde_json::to_vec_pretty(&tlsrpt::report_json(&meta, &tallies))
                    .unwrap_or_default();
                queue_report(
                    ports,
                    queue,
                    settings,
                    author.clone(),
                    &to,
                    &domain,
                    &report_id,
                    start,
                    &json,
                )
                .await?;
                info!(%day, %domain, to = to.len(), "TLS report queued");
                run.sent.push((
                    day.clone(),
                    domain.clone(),
                    to.iter().map(|a| a.to_string()).collect(),
                ));
            }
            if mark {
                let _ = ports
                    .index
                    .put(done_key, Vec::new(), Condition::Any)
                    .await?;
            }
        }
        if mark && all_done {
            tlsrpt::forget_day(ports.index.as_ref(), &day).await?;
        }
    }
    Ok(run)
}

/// Stores the report message and queues it for the route stage.
#[allow(clippy::too_many_arguments)]
async fn queue_report(
    ports: &Ports,
    queue: &dyn Queue,
    settings: &Settings,
    author: Option<Domain>,
    to: &[Address],
    domain: &str,
    report_id: &str,
    start: i64,
    json: &[u8],
) -> Result<(), HandlerError> {
    let id = QueueId::generate();
    let from = format!(
        "tlsrpt-noreply@{}",
        author
            .as_ref()
            .map_or(settings.hostname.as_str(), |d| d.as_str())
    );
    let addresses: Vec<String> = to.iter().map(|a| a.to_string()).collect();
    let body = stratus_compose::tlsrpt::tls_report(&stratus_compose::tlsrpt::TlsReport {
        submitter: &settings.hostname,
        from: &from,
        to: &addresses,
        policy_domain: domain,
        report_id,
        start,
        end: start + 86_399,
        json,
        id: &id,
    });
    let key = BlobKey::for_message(&id);
    ports.blobs.put(&key, body.clone().into()).await?;
    let mut accepted = stratus_compose::from_null_sender(
        id,
        key,
        body.len() as u64,
        to[0].clone(),
        false,
        stratus_core::mailstore::now(),
        author,
    );
    accepted
        .envelope
        .recipients
        .extend(to[1..].iter().map(|a| Recipient {
            address: a.clone(),
            notify: None,
            orcpt: None,
        }));
    let job = Job::Route {
        message: accepted,
        verdict: Verdict::Deliver,
    };
    queue
        .send(job.queue(), &job.to_json(), std::time::Duration::ZERO)
        .await?;
    Ok(())
}

/// The hosted domain our host name is in (`example.com` for
/// `mx.example.com`), whose keys sign the reports; `None` when there is
/// none.
async fn author_domain(ports: &Ports, hostname: &str) -> Option<Domain> {
    let accounts = Accounts::new(ports.index.clone());
    let mut name = hostname;
    loop {
        if let Ok(domain) = Domain::parse(name)
            && let Ok(Some(_)) = accounts.domain(&domain).await
        {
            return Some(domain);
        }
        name = name.split_once('.')?.1;
        if !name.contains('.') {
            return None;
        }
    }
}

/// Unix seconds at the start of a `YYYY-MM-DD` day.
fn day_start(day: &str) -> Option<i64> {
    let mut parts = day.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    Some(stratus_core::time::civil_day(y, m, d)? * 86_400)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use stratus_core::ports::QueueName;
    use stratus_core::tlsrpt::{Failure, Policy};

    use super::*;

    type Answer = Result<Vec<String>, String>;

    /// Answers from a table; a name it lacks has no record.
    struct Table(Mutex<Vec<(String, Answer)>>);

    #[async_trait]
    impl TxtLookup for Table {
        async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
            let table = self.0.lock().unwrap();
            table
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Ok(Vec::new()), |(_, r)| r.clone())
        }
    }

    const DAY: i64 = 86_400;

    #[tokio::test]
    async fn finished_days_are_reported_once_each_domain_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, queue) = crate::test_ports(dir.path());
        let settings = Settings::new("mx.test.example");
        let now = 1_796_601_600 + 3600; // 2026-12-07 01:00 UTC
        let yesterday = tlsrpt::day_of(now - DAY);
        let index = ports.index.as_ref();
        tlsrpt::register_day(index, &yesterday).await.unwrap();
        // Two processes count at once, each in its own rows.
        let policy = |domain: &str| Policy::none(domain);
        let count = |writer: &'static str, domain: &'static str, ok: bool| {
            let (index, day, policy) = (ports.index.clone(), yesterday.clone(), policy(domain));
            async move {
                let outcome = if ok {
                    Ok(())
                } else {
                    Err(Failure {
                        result_type: "starttls-not-supported".into(),
                        sending_ip: None,
                        mx: format!("mx.{domain}"),
                        receiving_ip: Some("192.0.2.9".into()),
                        reason: None,
                    })
                };
                tlsrpt::record(index.as_ref(), writer, &day, &policy, outcome)
                    .await
                    .unwrap();
            }
        };
        // (Within a process the transport counts one session at a time.)
        let w1 = async {
            for i in 0..20 {
                count("w1", "a.example", i % 4 != 0).await;
            }
            for domain in ["b.example", "c.example"] {
                count("w1", domain, true).await;
            }
        };
        let w2 = async {
            for _ in 0..20 {
                count("w2", "a.example", true).await;
            }
        };
        tokio::join!(w1, w2);
        // Today's counts are not due yet.
        tlsrpt::register_day(index, &tlsrpt::day_of(now))
            .await
            .unwrap();
        tlsrpt::record(
            index,
            "w1",
            &tlsrpt::day_of(now),
            &policy("a.example"),
            Ok(()),
        )
        .await
        .unwrap();

        let dns = Table(Mutex::new(vec![
            (
                "_smtp._tls.a.example".into(),
                Ok(vec![
                    "v=TLSRPTv1; rua=mailto:tls@a.example,https://r.example/x".into(),
                ]),
            ),
            ("_smtp._tls.c.example".into(), Err("SERVFAIL".into())),
        ]));
        let run = send_reports(&ports, &queue, &settings, &dns, Which::Due, now)
            .await
            .unwrap();
        assert_eq!(run.sent.len(), 1, "{run:?}");
        assert_eq!(run.sent[0].1, "a.example");
        assert_eq!(run.sent[0].2, ["tls@a.example"]);
        assert!(
            run.skipped
                .iter()
                .any(|(_, d, why)| d == "b.example" && why.contains("no _smtp._tls"))
        );
        assert!(
            run.skipped
                .iter()
                .any(|(_, d, why)| d == "c.example" && why.contains("again later"))
        );

        let jobs = queue
            .receive(
                QueueName::Route,
                10,
                Duration::from_secs(30),
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        let job: Job = serde_json::from_slice(&jobs[0].body).unwrap();
        let message = job.message();
        assert_eq!(message.envelope.mail_from, None);
        assert_eq!(
            message.envelope.recipients[0].address.to_string(),
            "tls@a.example"
        );
        let body = ports.blobs.get(&message.body, None).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("TLS-Report-Domain: a.example\r\n"), "{text}");

        // c.example still waits, so the day stays; a.example is not sent twice.
        let run = send_reports(&ports, &queue, &settings, &dns, Which::Due, now)
            .await
            .unwrap();
        assert!(run.sent.is_empty(), "{run:?}");
        assert_eq!(tlsrpt::days(index).await.unwrap().len(), 2);
        let a = &tlsrpt::tallies(index, &yesterday).await.unwrap()["a.example"][0];
        assert_eq!(
            (a.ok, a.failures()),
            (35, 5),
            "both writers' counts, merged"
        );

        *dns.0.lock().unwrap() = vec![(
            "_smtp._tls.c.example".into(),
            Ok(vec!["v=TLSRPTv1; rua=mailto:r@c.example".into()]),
        )];
        let run = send_reports(&ports, &queue, &settings, &dns, Which::Due, now)
            .await
            .unwrap();
        assert_eq!(run.sent.len(), 1, "{run:?}");
        assert_eq!(run.sent[0].1, "c.example");
        assert_eq!(
            tlsrpt::days(index).await.unwrap(),
            [tlsrpt::day_of(now)],
            "yesterday forgotten"
        );
        assert!(tlsrpt::tallies(index, &yesterday).await.unwrap().is_empty());
    }
}
