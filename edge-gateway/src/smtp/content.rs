//! Content checks before the final reply to DATA/BDAT: verdict header
//! fields that arrived from outside are removed, the message is scanned
//! for viruses when clamd is configured ([`clamd`]), and mail from
//! outside is scored for spam with the function the filter stage runs after
//! acceptance. A message every recipient would refuse is refused here
//! (`550 5.7.1` with the main reasons), so nothing is accepted and then
//! dropped; with recipients whose thresholds differ it is accepted, and
//! the filter stage files it per recipient.

use stratus_core::address::Address;
use stratus_core::job::{DmarcPolicy, Filing, Verdict};
use stratus_filter::{Action, Analysis, AuthFacts};
use stratus_pipeline::spam::{self, SpamEngine};
use stratus_proto::smtp::reply::Reply;
use tracing::{info, warn};

use super::{Context, clamd};

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

/// What the checks made of a message.
#[derive(Debug)]
pub struct Checked {
    /// The message, handed back (it moves to a blocking thread while it
    /// is read).
    pub body: Vec<u8>,
    /// Refuse the message with this, and why (`spam`, `virus`,
    /// `unavailable`: the reason label of `stratus_smtp_messages_total`).
    pub refusal: Option<(Reply, &'static str)>,
    /// A header line to put in front of it (`X-Virus-Status`).
    pub mark: Option<String>,
    /// How each recipient's copy is filed, when it was scored.
    pub filings: Vec<Filing>,
    /// The blocklist symbols that applied (the client's and the links').
    pub listed: Vec<String>,
}

fn count_verdict(action: &'static str) {
    stratus_core::metrics::metrics()
        .spam_verdicts
        .get_or_create(&stratus_core::metrics::VerdictLabel { action })
        .inc();
}

/// Scans `body` for viruses (with clamd configured) and, when `score`,
/// scores it for spam for its recipients.
pub async fn check(ctx: &Context, body: Vec<u8>, facts: &Facts<'_>, score: bool) -> Checked {
    let engine = ctx.spam.as_ref().filter(|_| score);
    let needs_analysis = engine.is_some() || ctx.clamd.as_ref().is_some_and(|c| !c.scan_all);
    let (analysis, body) = if needs_analysis {
        match tokio::task::spawn_blocking(move || (Analysis::new(&body), body)).await {
            Ok((a, body)) => (Some(a), body),
            Err(e) => {
                // The body went with the panicked thread; nothing was stored.
                warn!(error = %e, "reading a message for its checks failed");
                return Checked {
                    body: Vec::new(),
                    refusal: Some((
                        Reply::new(
                            451,
                            "4.3.0",
                            "temporary failure checking the message, try again later",
                        ),
                        "unavailable",
                    )),
                    mark: None,
                    filings: Vec::new(),
                    listed: Vec::new(),
                };
            }
        }
    } else {
        (None, body)
    };
    let mut checked = Checked {
        body,
        refusal: None,
        mark: None,
        filings: Vec::new(),
        listed: facts.listed.clone(),
    };
    if let Some(settings) = &ctx.clamd {
        let attached = analysis.as_ref().is_some_and(|a| !a.attachments.is_empty());
        if settings.scan_all || attached {
            let scan = clamd::scan(settings, &checked.body).await;
            let (refusal, mark) = clamd::verdict(settings, &scan);
            if let Some(reply) = refusal {
                // 554 for a virus; 451 while clamd does not answer.
                let why = if reply.code >= 500 {
                    "virus"
                } else {
                    "unavailable"
                };
                checked.refusal = Some((reply, why));
                return checked;
            }
            checked.mark = mark;
        }
    }
    if let (Some(engine), Some(analysis)) = (engine, &analysis) {
        if let Some(lists) = &ctx.dnsbl {
            checked
                .listed
                .extend(lists.check_links(&analysis.urls).await);
        }
        match refusal(ctx, engine, analysis, facts, &checked.listed).await {
            Ok(Ok(filings)) => {
                let worst = filings.iter().map(|f| f.verdict).max().unwrap_or_default();
                count_verdict(match worst {
                    Verdict::Deliver => "deliver",
                    Verdict::Junk => "junk",
                    Verdict::Quarantine => "quarantine",
                });
                checked.filings = filings;
            }
            Ok(Err(reply)) => {
                count_verdict("reject");
                checked.refusal = Some((reply, "spam"));
            }
            Err(e) => {
                // Settings unreadable: the filter stage scores again once
                // the store answers; a message is never refused for our
                // trouble.
                warn!(error = %e, "cannot read spam settings; the message is scored after acceptance");
            }
        }
    }
    checked
}

/// The refusal when every recipient would refuse the message, else each
/// recipient's filing.
async fn refusal(
    ctx: &Context,
    engine: &SpamEngine,
    analysis: &Analysis,
    facts: &Facts<'_>,
    listed: &[String],
) -> Result<Result<Vec<Filing>, Reply>, stratus_core::StoreError> {
    let context = stratus_filter::Context {
        mail_from: facts.mail_from.map(ToString::to_string),
        auth: AuthFacts::from_results(facts.auth_results, facts.dmarc_failure),
        listed: listed.to_vec(),
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
        return Ok(Err(Reply::new(
            550,
            "5.7.1",
            format!("message refused as spam ({})", v.reasons(3)),
        )));
    }
    Ok(Ok(facts
        .recipients
        .iter()
        .zip(&verdicts)
        .map(|(r, v)| spam::filing(r, v))
        .collect()))
}
