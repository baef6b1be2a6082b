//! The daily TLS reports (RFC 8460): for every recipient domain the send
//! stage had sessions with, a report of the day's counts
//! ([`stratus_core::tlsrpt`]) to the `mailto:` addresses of the domain's
//! `_smtp._tls` TXT record, as a message that goes out through the route
//! and send stages like any other (DKIM-signed with the keys of the hosted
//! domain our host name belongs to, when there is one).
//!
//! `https:` addresses get the gzipped JSON by POST (RFC 8460 §3).
//!
//! A finished day is reported once: each way of reporting to a domain is
//! marked when it is done, and the day's counts are deleted once every
//! domain is done. A domain whose record cannot be looked up, or whose
//! `https:` address fails, waits for the next run (for up to
//! [`GIVE_UP_DAYS`]).

use async_trait::async_trait;

use stratus_core::accounts::Accounts;
use stratus_core::address::{Address, Domain};
use stratus_core::ids::QueueId;
use stratus_core::job::{Job, Verdict};
use stratus_core::ports::{Condition, IndexExt, Key, Queue};
use stratus_core::tlsrpt::{self, ReportMeta};
use tracing::{info, warn};

use crate::{HandlerError, Ports, Settings};

/// After this many days a domain whose record could not be looked up is
/// given up on.
pub const GIVE_UP_DAYS: i64 = 3;

/// What sending reports needs of the network.
#[async_trait]
pub trait ReportNet: Send + Sync {
    /// The texts of the TXT records at `name` (a domain's `_smtp._tls`);
    /// empty when there is none (NXDOMAIN, NODATA); an error when the
    /// lookup failed.
    async fn txt(&self, name: &str) -> Result<Vec<String>, String>;

    /// POSTs a gzipped report to an `https:` address (RFC 8460 §3:
    /// `application/tlsrpt+gzip`), with the server's certificate verified;
    /// `Ok` for a 2xx answer.
    async fn post(&self, url: &str, gzipped: Vec<u8>) -> Result<(), String>;
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
    net: &dyn ReportNet,
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
        let young = now - start < GIVE_UP_DAYS * 86_400;
        for (domain, tallies) in tlsrpt::tallies(ports.index.as_ref(), &day).await? {
            let skip = |why: String| (day.clone(), domain.clone(), why);
            let records = match net.txt(&format!("_smtp._tls.{domain}")).await {
                Ok(records) => records,
                Err(e) if young => {
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
            if rua.is_empty() {
                let why = if records.is_empty() {
                    "publishes no _smtp._tls record"
                } else {
                    "its _smtp._tls record is not a TLSRPTv1 record with a rua"
                };
                run.skipped.push(skip(why.into()));
                continue;
            }
            let report_id = format!("{day}T00:00:00Z_{domain}@{}", settings.hostname);
            let contact = format!(
                "postmaster@{}",
                author
                    .as_ref()
                    .map_or(settings.hostname.as_str(), |d| d.as_str())
            );
            let meta = ReportMeta {
                organization: &settings.hostname,
                contact: &contact,
                report_id: &report_id,
                day: &day,
            };
            let json = serde_json::to_vec_pretty(&tlsrpt::report_json(&meta, &tallies))
                .unwrap_or_default();
            // Each way of reporting is marked apart, so that one that
            // failed is tried again without repeating the others.
            let done = |channel: &str| {
                Key::new(format!("tlsrpt|{day}"), format!("~sent|{domain}|{channel}"))
            };
            let to: Vec<Address> = rua
                .iter()
                .filter_map(|u| u.strip_prefix("mailto:"))
                .filter_map(|a| Address::parse(a).ok())
                .collect();
            let mailed = mark && ports.index.get(&done("mailto")).await?.is_some();
            if !to.is_empty() && !mailed {
                let report = Report {
                    author: author.clone(),
                    to: &to,
                    domain: &domain,
                    report_id: &report_id,
                    start,
                    json: &json,
                };
                queue_report(ports, queue, settings, &report).await?;
                info!(%day, %domain, to = to.len(), "TLS report queued");
                run.sent.push((
                    day.clone(),
                    domain.clone(),
                    to.iter().map(|a| a.to_string()).collect(),
                ));
                if mark {
                    let _ = ports
                        .index
                        .put(done("mailto"), Vec::new(), Condition::Any)
                        .await?;
                }
            }
            for uri in rua.iter().filter(|u| !u.starts_with("mailto:")) {
                if !uri.starts_with("https://") {
                    run.skipped
                        .push(skip(format!("{uri}: only mailto: and https: are used")));
                    continue;
                }
                if mark && ports.index.get(&done(uri)).await?.is_some() {
                    continue;
                }
                match net.post(uri, stratus_compose::tlsrpt::gzip(&json)).await {
                    Ok(()) => {
                        info!(%day, %domain, %uri, "TLS report posted");
                        run.sent
                            .push((day.clone(), domain.clone(), vec![uri.clone()]));
                        if mark {
                            let _ = ports
                                .index
                                .put(done(uri), Vec::new(), Condition::Any)
                                .await?;
                        }
                    }
                    Err(e) if young => {
                        warn!(%day, %domain, %uri, error = %e, "cannot post a TLS report; tried again later");
                        run.skipped
                            .push(skip(format!("{uri}: {e}; tried again later")));
                        all_done = false;
                    }
                    Err(e) => run.skipped.push(skip(format!("{uri}: {e}; given up"))),
                }
            }
        }
        if mark && all_done {
            tlsrpt::forget_day(ports.index.as_ref(), &day).await?;
        }
    }
    Ok(run)
}

/// One report by mail.
struct Report<'a> {
    /// The hosted domain whose keys sign it.
    author: Option<Domain>,
    to: &'a [Address],
    /// The recipient domain it is about.
    domain: &'a str,
    report_id: &'a str,
    /// The day's start, Unix seconds.
    start: i64,
    json: &'a [u8],
}

/// Stores the report message and queues it for the route stage.
async fn queue_report(
    ports: &Ports,
    queue: &dyn Queue,
    settings: &Settings,
    r: &Report<'_>,
) -> Result<(), HandlerError> {
    let id = QueueId::generate();
    let from = format!(
        "tlsrpt-noreply@{}",
        r.author
            .as_ref()
            .map_or(settings.hostname.as_str(), |d| d.as_str())
    );
    let addresses: Vec<String> = r.to.iter().map(|a| a.to_string()).collect();
    let body = stratus_compose::tlsrpt::tls_report(&stratus_compose::tlsrpt::TlsReport {
        submitter: &settings.hostname,
        from: &from,
        to: &addresses,
        policy_domain: r.domain,
        report_id: r.report_id,
        start: r.start,
        end: r.start + 86_399,
        json: r.json,
        id: &id,
    });
    let accepted =
        crate::bounce::store_made(ports, id, body, r.to, false, r.author.clone()).await?;
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

    /// Answers from a table (a name it lacks has no record); posts are
    /// kept, and succeed once `post_ok` is set.
    #[derive(Default)]
    struct Table {
        answers: Mutex<Vec<(String, Answer)>>,
        post_ok: std::sync::atomic::AtomicBool,
        posts: Mutex<Vec<(String, Vec<u8>)>>,
    }

    #[async_trait]
    impl ReportNet for Table {
        async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
            let table = self.answers.lock().unwrap();
            table
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Ok(Vec::new()), |(_, r)| r.clone())
        }

        async fn post(&self, url: &str, gzipped: Vec<u8>) -> Result<(), String> {
            if !self.post_ok.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            self.posts.lock().unwrap().push((url.to_string(), gzipped));
            Ok(())
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

        let net = Table::default();
        *net.answers.lock().unwrap() = vec![
            (
                "_smtp._tls.a.example".into(),
                Ok(vec![
                    "v=TLSRPTv1; rua=mailto:tls@a.example,https://r.example/x,ftp://no".into(),
                ]),
            ),
            ("_smtp._tls.c.example".into(), Err("SERVFAIL".into())),
        ];
        let run = send_reports(&ports, &queue, &settings, &net, Which::Due, now)
            .await
            .unwrap();
        assert_eq!(run.sent.len(), 1, "{run:?}");
        assert_eq!(run.sent[0].1, "a.example");
        assert_eq!(run.sent[0].2, ["tls@a.example"]);
        let skipped = |run: &Run, domain: &str, why: &str| {
            run.skipped
                .iter()
                .any(|(_, d, w)| d == domain && w.contains(why))
        };
        assert!(skipped(&run, "b.example", "no _smtp._tls"), "{run:?}");
        assert!(skipped(&run, "c.example", "again later"), "{run:?}");
        assert!(
            skipped(
                &run,
                "a.example",
                "https://r.example/x: connection refused; tried again later"
            ),
            "{run:?}"
        );
        assert!(skipped(&run, "a.example", "ftp://no"), "{run:?}");

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
        let message = job.message().unwrap();
        assert_eq!(message.envelope.mail_from, None);
        assert_eq!(
            message.envelope.recipients[0].address.to_string(),
            "tls@a.example"
        );
        let body = ports.blobs.get(&message.body, None).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("TLS-Report-Domain: a.example\r\n"), "{text}");

        // The https: address works now: posted, and the mail not sent twice;
        // c.example still waits, so the day stays.
        net.post_ok.store(true, std::sync::atomic::Ordering::SeqCst);
        let run = send_reports(&ports, &queue, &settings, &net, Which::Due, now)
            .await
            .unwrap();
        assert_eq!(run.sent.len(), 1, "{run:?}");
        assert_eq!(run.sent[0].2, ["https://r.example/x"]);
        let posts = net.posts.lock().unwrap().clone();
        assert_eq!(posts.len(), 1);
        let mut json = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&posts[0].1[..]),
            &mut json,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["policies"][0]["policy"]["policy-domain"], "a.example");
        assert_eq!(tlsrpt::days(index).await.unwrap().len(), 2);
        let a = &tlsrpt::tallies(index, &yesterday).await.unwrap()["a.example"][0];
        assert_eq!(
            (a.ok, a.failures()),
            (35, 5),
            "both writers' counts, merged"
        );
        let run = send_reports(&ports, &queue, &settings, &net, Which::Due, now)
            .await
            .unwrap();
        assert!(run.sent.is_empty(), "nothing twice: {run:?}");

        *net.answers.lock().unwrap() = vec![(
            "_smtp._tls.c.example".into(),
            Ok(vec!["v=TLSRPTv1; rua=mailto:r@c.example".into()]),
        )];
        let run = send_reports(&ports, &queue, &settings, &net, Which::Due, now)
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
