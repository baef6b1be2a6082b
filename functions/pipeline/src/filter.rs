//! filter: records the gateway's authentication results and decides where
//! the message is filed. After the gateway said 250, nothing here bounces a
//! message for its content: it is delivered, filed to Junk or quarantined.

use stratus_core::job::{Accepted, DmarcPolicy, Job, Verdict};

use crate::{HandlerResult, Ports, Settings};

/// Where spam and virus scanners plug in: each looks at the message and
/// may raise the verdict (never lower it). None is configured yet.
fn scan(_message: &Accepted, verdict: Verdict) -> Verdict {
    verdict
}

pub async fn handle(mut message: Accepted, _ports: &Ports, settings: &Settings) -> HandlerResult {
    let results = message.auth_results.as_deref().unwrap_or("none");
    message.headers = format!(
        "Authentication-Results: {}; {}\r\n{}",
        settings.hostname, results, message.headers
    );
    // A DMARC failure under p=quarantine goes to Junk; so does p=reject when
    // the gateway was configured to accept such mail rather than refuse it.
    let verdict = match message.dmarc_failure {
        Some(DmarcPolicy::Quarantine | DmarcPolicy::Reject) => Verdict::Junk,
        Some(DmarcPolicy::None) | None => Verdict::Deliver,
    };
    let verdict = scan(&message, verdict);
    Ok(vec![Job::Route { message, verdict }])
}
