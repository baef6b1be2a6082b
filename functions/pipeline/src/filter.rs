//! filter: records the gateway's authentication results and decides where
//! the message is filed. After the gateway said 250, nothing here bounces a
//! message for its content: it is delivered, filed to Junk or quarantined.
//!
//! Mail from outside is scored for each envelope recipient with the same
//! function (`stratus-filter`), with that recipient's thresholds, lists
//! and model: by the gateway before its final reply, which puts its
//! verdicts in [`Accepted::filings`], or here when the gateway did not
//! (scoring off there, or its store did not answer). The verdict and its
//! `X-Spam-*` header lines travel to route. A recipient the gateway would
//! have refused (another recipient took the message) has it filed to
//! Junk.

use stratus_core::job::{Accepted, DmarcPolicy, Filing, Job, Verdict};
use stratus_filter::Analysis;

use crate::spam::{self, SpamEngine};
use crate::{HandlerError, HandlerResult, Ports, Settings};

pub async fn handle(mut message: Accepted, ports: &Ports, settings: &Settings) -> HandlerResult {
    let results = message.auth_results.as_deref().unwrap_or("none");
    message.headers = format!(
        "{}{}",
        results_field(&settings.hostname, results),
        message.headers
    );
    // A DMARC failure under p=quarantine goes to Junk; so does p=reject when
    // the gateway was configured to accept such mail rather than refuse it.
    let verdict = match message.dmarc_failure {
        Some(DmarcPolicy::Quarantine | DmarcPolicy::Reject) => Verdict::Junk,
        Some(DmarcPolicy::None) | None => Verdict::Deliver,
    };
    // The gateway scored it before its final reply (and filed each
    // recipient); a message it could not score is scored here.
    if let Some(engine) = &settings.spam
        && spam::scored(message.origin)
        && message.filings.is_empty()
    {
        message.filings = score(&message, engine, ports).await?;
    }
    Ok(vec![Job::Route { message, verdict }])
}

/// The Authentication-Results field the filter puts in front of a
/// message (the gateway shows the same to a Sieve script it runs before
/// accepting).
pub fn results_field(hostname: &str, results: &str) -> String {
    format!("Authentication-Results: {hostname}; {results}\r\n")
}

/// The filing of each envelope recipient.
async fn score(
    message: &Accepted,
    engine: &SpamEngine,
    ports: &Ports,
) -> Result<Vec<Filing>, HandlerError> {
    let body = ports
        .blobs
        .get(&message.body, None)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("body {} not found", message.body)))?;
    // Reading a large message is CPU work: off the async threads.
    let analysis = tokio::task::spawn_blocking(move || Analysis::new(&body))
        .await
        .map_err(|e| HandlerError::Retryable(format!("analysis failed: {e}")))?;
    let ctx = spam::context(message);
    let recipients = message.envelope.recipients.iter().map(|r| &r.address);
    let verdicts = spam::verdicts(
        engine,
        &ports.index,
        ports.blobs.as_ref(),
        &analysis,
        &ctx,
        recipients,
    )
    .await?;
    let mut filings = Vec::new();
    for (rcpt, v) in message.envelope.recipients.iter().zip(verdicts) {
        tracing::info!(queue_id = %message.queue_id, recipient = %rcpt.address, score = v.score,
            action = v.action.as_str(), symbols = %v.reasons(5), "spam verdict");
        // Route files by the stricter of this and the job's verdict.
        filings.push(spam::filing(&rcpt.address, &v));
    }
    Ok(filings)
}
