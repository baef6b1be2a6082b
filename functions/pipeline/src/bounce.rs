//! Telling a sender what became of their message after we accepted it:
//! delivery status notifications (RFC 3464) from the null sender, for the
//! send stage's failures and delays and for local recipients that could
//! not be reached after all (an alias target deleted since, a mailbox that
//! stayed full).

use stratus_core::BlobKey;
use stratus_core::address::{Address, Domain};
use stratus_core::ids::QueueId;
use stratus_core::job::{Accepted, Job, Recipient, Verdict};

use stratus_compose::dsn::{self, Report};

use crate::{HandlerError, Ports, Settings};

/// Stores `body`, a message Stratus made, under `id`; the accepted message
/// that takes it from the null sender to `to` (at least one), signed as
/// `author` when that domain is hosted here.
pub(crate) async fn store_made(
    ports: &Ports,
    id: QueueId,
    body: Vec<u8>,
    to: &[Address],
    smtputf8: bool,
    author: Option<Domain>,
) -> Result<Accepted, HandlerError> {
    let key = BlobKey::for_message(&id);
    let size = body.len() as u64;
    ports.blobs.put(&key, body.into()).await?;
    let mut accepted = stratus_compose::from_null_sender(
        id,
        key,
        size,
        to[0].clone(),
        smtputf8,
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
            forwarded_by: None,
        }));
    Ok(accepted)
}

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
    // The DSN is from MAILER-DAEMON@<hostname>.
    let author = stratus_core::Domain::parse(&settings.hostname).ok();
    let mut accepted = store_made(
        ports,
        id,
        body,
        &[sender],
        message.envelope.smtputf8,
        author,
    )
    .await?;
    // RFC 8689 §5: a report on REQUIRETLS mail (it carries the original's
    // header) is itself sent with REQUIRETLS.
    accepted.envelope.requiretls = message.envelope.requiretls;
    Ok(Some(Job::Route {
        message: accepted,
        verdict: Verdict::Deliver,
    }))
}
