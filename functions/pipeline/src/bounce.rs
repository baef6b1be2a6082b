//! Telling a sender what became of their message after we accepted it:
//! delivery status notifications (RFC 3464) from the null sender, for the
//! send stage's failures and delays and for local recipients that could
//! not be reached after all (an alias target deleted since, a mailbox that
//! stayed full).

use stratus_core::BlobKey;
use stratus_core::job::{Accepted, Job, Recipient, Verdict};

use stratus_compose::dsn::{self, Report};

use crate::{HandlerError, Ports, Settings};

/// A DSN (RFC 3464) about `recipients` to the envelope sender, as a new
/// message from the null sender; `None` when there is nobody to tell (a
/// message from the null sender, or recipients that asked not to be).
/// `tag` names this report among the message's others.
pub(crate) async fn notify(
    message: &Accepted,
    recipients: &[(Recipient, String)],
    tag: &str,
    report: Report,
    original: &[u8],
    ports: &Ports,
    settings: &Settings,
) -> Result<Option<Job>, HandlerError> {
    let Some(sender) = message.envelope.mail_from.clone() else {
        return Ok(None);
    };
    let recipients: Vec<&(Recipient, String)> = recipients
        .iter()
        .filter(|(r, _)| match (&r.notify, report) {
            (None, _) => true,
            (Some(n), Report::Failed) => n.failure && !n.never,
            (Some(n), Report::Delayed { .. }) => n.delay && !n.never,
        })
        .collect();
    if recipients.is_empty() {
        return Ok(None);
    }
    // The DSN's queue id derives from the message's and the report's, so
    // a job that runs twice stores (and delivers) one DSN, and reports
    // about other domains or attempts are other messages.
    let id = message.queue_id.derived(tag);
    let body = dsn::dsn(
        message,
        &recipients,
        report,
        original,
        &settings.hostname,
        &id,
    );
    let key = BlobKey::for_message(&id);
    ports.blobs.put(&key, body.clone().into()).await?;
    let mut accepted = stratus_compose::from_null_sender(
        id,
        key,
        body.len() as u64,
        sender,
        message.envelope.smtputf8,
        stratus_core::mailstore::now(),
        // The DSN is from MAILER-DAEMON@<hostname>.
        stratus_core::Domain::parse(&settings.hostname).ok(),
    );
    // RFC 8689 §5: a report on REQUIRETLS mail (it carries the original's
    // header) is itself sent with REQUIRETLS.
    accepted.envelope.requiretls = message.envelope.requiretls;
    Ok(Some(Job::Route {
        message: accepted,
        verdict: Verdict::Deliver,
    }))
}
