//! Content checks before the final reply to DATA/BDAT: verdict header
//! fields that arrived from outside are removed, and mail from outside is
//! scored for spam with the function the filter stage runs after
//! acceptance. A message every recipient would refuse is refused here
//! (`550 5.7.1` with the main reasons), so nothing is accepted and then
//! dropped; with recipients whose thresholds differ it is accepted, and
//! the filter stage files it per recipient.

use stratus_core::address::Address;
use stratus_core::job::DmarcPolicy;
use stratus_filter::{Action, Analysis, AuthFacts};
use stratus_pipeline::spam::{self, SpamEngine};
use stratus_proto::smtp::reply::Reply;
use tracing::{info, warn};

use super::Context;

/// What the checks know of the transaction besides the message.
#[derive(Debug)]
pub struct Facts<'a> {
    pub mail_from: Option<&'a Address>,
    pub recipients: Vec<&'a Address>,
    /// The Authentication-Results value the gateway computed.
    pub auth_results: &'a str,
    pub dmarc_failure: Option<DmarcPolicy>,
    pub listed: Vec<String>,
    pub now: i64,
}

/// Removes foreign verdict fields from `body`.
pub fn strip(body: &mut Vec<u8>) {
    if let Some(stripped) = stratus_filter::strip_our_headers(body) {
        *body = stripped;
    }
}

/// Scores `body` for its recipients; `Some(reply)` refuses it. `body` is
/// handed back (it moves to a blocking thread while it is read).
pub async fn score(ctx: &Context, body: Vec<u8>, facts: &Facts<'_>) -> (Vec<u8>, Option<Reply>) {
    let Some(engine) = &ctx.spam else {
        return (body, None);
    };
    let (analysis, body) =
        match tokio::task::spawn_blocking(move || (Analysis::new(&body), body)).await {
            Ok(done) => done,
            Err(e) => {
                // The body went with the panicked thread; nothing was stored.
                warn!(error = %e, "reading a message for its spam score failed");
                return (
                    Vec::new(),
                    Some(Reply::new(
                        451,
                        "4.3.0",
                        "temporary failure checking the message, try again later",
                    )),
                );
            }
        };
    match refusal(ctx, engine, &analysis, facts).await {
        Ok(reply) => (body, reply),
        Err(e) => {
            // Settings unreadable: the filter stage scores again once the
            // store answers; a message is never refused for our trouble.
            warn!(error = %e, "cannot read spam settings; the message is scored after acceptance");
            (body, None)
        }
    }
}

async fn refusal(
    ctx: &Context,
    engine: &SpamEngine,
    analysis: &Analysis,
    facts: &Facts<'_>,
) -> Result<Option<Reply>, stratus_core::StoreError> {
    let context = stratus_filter::Context {
        mail_from: facts.mail_from.map(ToString::to_string),
        auth: AuthFacts::from_results(facts.auth_results, facts.dmarc_failure),
        listed: facts.listed.clone(),
        now: facts.now,
    };
    let verdicts = spam::verdicts(
        engine,
        &ctx.shared.stores.index,
        ctx.shared.stores.blobs.as_ref(),
        analysis,
        &context,
        facts.recipients.iter().copied(),
    )
    .await?;
    if !verdicts.is_empty() && verdicts.iter().all(|v| v.action == Action::Reject) {
        let v = &verdicts[0];
        info!(score = v.score, symbols = %v.reasons(5), "refused as spam");
        return Ok(Some(Reply::new(
            550,
            "5.7.1",
            format!("message refused as spam ({})", v.reasons(3)),
        )));
    }
    Ok(None)
}
