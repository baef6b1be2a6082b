//! deliver: files the message into a user's mailbox: the entry (with
//! Return-Path and Delivered-To in front of the shared body), its UID and
//! MODSEQ and the mailbox counters in one transaction, once per queue id.
//! A user deleted since RCPT gets the sender a DSN; a mailbox over its
//! quota makes the delivery wait and retry, and bounce at the end of the
//! message's lifetime: nothing accepted is dropped in silence.

use stratus_compose::dsn::Report;
use stratus_core::accounts::{AccountError, Accounts};
use stratus_core::job::{Accepted, Filed, Job, Recipient};
use stratus_core::mailstore::{Appended, Mailstore, NewMessage, now};
use stratus_core::message::analyze;
use stratus_core::{Address, MailboxName};

use crate::bounce::notify;
use crate::{HandlerError, HandlerResult, Ports, Settings};

/// One delivery attempt (`attempt`, due at `not_before`) of `message` to
/// `recipient`'s `mailbox`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Accepted,
    pub recipient: Address,
    pub mailbox: MailboxName,
    pub attempt: u32,
    pub not_before: i64,
    /// Flags and `:create` from the recipient's Sieve script.
    pub filed: Filed,
}

pub async fn handle(delivery: Delivery, ports: &Ports, settings: &Settings) -> HandlerResult {
    let Delivery {
        message,
        recipient,
        mailbox,
        attempt,
        not_before,
        filed,
    } = delivery;
    if not_before > now() {
        // Not due yet: pass it on (the queue delays it up to 15 minutes).
        return Ok(vec![Job::Deliver {
            message,
            recipient,
            mailbox,
            attempt,
            not_before,
            filed,
        }]);
    }
    let body = ports
        .blobs
        .get(&message.body, None)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("body {} not found", message.body)))?;
    let accounts = Accounts::new(ports.index.clone());
    let Some(user) = accounts.user(&recipient).await? else {
        tracing::warn!(queue_id = %message.queue_id, %recipient, "user deleted before delivery; bounced");
        let why = format!("550 5.1.1 <{recipient}>: no such user here");
        return bounce(&message, &recipient, why, &body, ports, settings).await;
    };
    // The quota was checked at RCPT; mail accepted since may have filled
    // the mailbox. Over it, the message waits for room on the send
    // stage's schedule and bounces when its lifetime ends.
    let size = body.len() as u64 + message.headers.len() as u64;
    if let Some(quota) = user.quota
        && accounts.usage(&user.address).await?.saturating_add(size) > quota
    {
        let due = now() + crate::send::retry_wait(settings, attempt);
        let expires = message.received_at + settings.send_lifetime.as_secs() as i64;
        if due >= expires {
            tracing::warn!(queue_id = %message.queue_id, recipient = %user.address, attempt, "mailbox still over quota; bounced");
            let why = format!("552 5.2.2 <{}>: mailbox full", user.address);
            return bounce(&message, &recipient, why, &body, ports, settings).await;
        }
        tracing::info!(queue_id = %message.queue_id, recipient = %user.address, attempt, "mailbox over quota; delivery waits");
        return Ok(vec![Job::Deliver {
            message,
            recipient,
            mailbox,
            attempt: attempt + 1,
            not_before: due,
            filed,
        }]);
    }
    let store = Mailstore::new(
        ports.index.clone(),
        ports.blobs.clone(),
        ports.changes.clone(),
    );
    let return_path = message
        .envelope
        .mail_from
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let prefix = format!(
        "Return-Path: <{return_path}>\r\nDelivered-To: {}\r\n{}",
        user.address, message.headers
    );
    let flags = settable_flags(&filed.flags);
    if filed.create && mailbox != MailboxName::inbox() {
        match accounts
            .create_mailbox(&user.address, mailbox.clone())
            .await
        {
            Ok(_) | Err(AccountError::MailboxExists(_)) => {}
            Err(e @ AccountError::Store(_)) => return Err(e.into()),
            // Not a name we can create (a limit, a bad hierarchy): the
            // append below files to INBOX.
            Err(e) => {
                tracing::info!(queue_id = %message.queue_id, recipient = %user.address, %mailbox, error = %e, "cannot create the mailbox the script named");
            }
        }
    }
    let new = |flags: &[String]| NewMessage {
        queue_id: message.queue_id.clone(),
        body: message.body.clone(),
        body_size: body.len() as u64,
        prefix: prefix.clone(),
        meta: analyze(&body),
        flags: flags.to_vec(),
        internal_date: message.received_at,
        internal_tz: 0,
    };
    // A mailbox may have all the keywords it can hold: a script's
    // keywords then go, its system flags stay, and the message is filed.
    let system: Vec<String> = flags
        .iter()
        .filter(|f| !stratus_core::accounts::is_keyword(f))
        .cloned()
        .collect();
    let append = async |name: &MailboxName| match store
        .append(&user.address, name, new(&flags))
        .await
    {
        Err(AccountError::TooManyKeywords) => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, mailbox = %name, "mailbox has too many keywords; filed without the script's");
            store.append(&user.address, name, new(&system)).await
        }
        other => other,
    };
    let appended = match append(&mailbox).await {
        // A user may have deleted Junk; the inbox always exists.
        Err(AccountError::UnknownMailbox(_)) if mailbox != MailboxName::inbox() => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, %mailbox, "no such mailbox; filed to INBOX");
            let inbox = MailboxName::inbox();
            let appended = append(&inbox).await?;
            (appended, inbox)
        }
        other => (other?, mailbox),
    };
    match appended {
        (Appended::New { uid, modseq, .. }, mailbox) => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, %mailbox, uid, modseq, "delivered");
            count("delivered");
        }
        (Appended::Duplicate, _) => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, "already delivered; nothing to do");
        }
    }
    Ok(Vec::new())
}

/// Counts one local delivery in `stratus_deliveries_total`.
fn count(result: &'static str) {
    stratus_core::metrics::metrics()
        .deliveries
        .get_or_create(&stratus_core::metrics::ResultLabel { result })
        .inc();
}

/// A DSN to the sender saying `recipient` failed (`why`), with the NOTIFY
/// and ORCPT the sender gave when the recipient is one they named.
async fn bounce(
    message: &Accepted,
    recipient: &Address,
    why: String,
    body: &[u8],
    ports: &Ports,
    settings: &Settings,
) -> HandlerResult {
    let given = message
        .envelope
        .recipients
        .iter()
        .find(|r| r.address.account_key() == recipient.account_key())
        .cloned()
        .unwrap_or_else(|| Recipient {
            address: recipient.clone(),
            notify: None,
            orcpt: None,
            forwarded_by: None,
        });
    let tag = format!("failed|deliver|{}", recipient.account_key());
    let failed = [(given, why)];
    let dsn = notify(
        message,
        &failed,
        &tag,
        Report::Failed,
        body,
        ports,
        settings,
    )
    .await?;
    count("failed");
    Ok(dsn.into_iter().collect())
}

/// The flags a script may set on delivery: system flags but \Recent,
/// and keywords (IMAP atoms), each once; anything else is dropped.
fn settable_flags(flags: &[String]) -> Vec<String> {
    const SYSTEM: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];
    let mut out: Vec<String> = Vec::new();
    for f in flags {
        let flag = match SYSTEM.iter().find(|s| s.eq_ignore_ascii_case(f)) {
            Some(s) => s.to_string(),
            None if !f.is_empty()
                && f.len() <= 64
                && f.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"]\\".contains(&b)) =>
            {
                f.clone()
            }
            None => continue,
        };
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&flag)) {
            out.push(flag);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_set_only_flags_imap_allows() {
        let given: Vec<String> = [
            "\\seen",
            "\\Seen",
            "$Work",
            "\\Recent",
            "bad flag",
            "(x",
            "",
            "\\Flagged",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(settable_flags(&given), ["\\Seen", "$Work", "\\Flagged"]);
    }
}
