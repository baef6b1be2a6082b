//! deliver: files the message into a user's mailbox: the entry (with
//! Return-Path and Delivered-To in front of the shared body), its UID and
//! MODSEQ and the mailbox counters in one transaction, once per queue id.

use stratus_core::accounts::{AccountError, Accounts};
use stratus_core::job::Accepted;
use stratus_core::mailstore::{Appended, Mailstore, NewMessage};
use stratus_core::message::analyze;
use stratus_core::{Address, MailboxName};

use crate::{HandlerError, HandlerResult, Ports};

pub async fn handle(
    message: Accepted,
    recipient: Address,
    mailbox: MailboxName,
    ports: &Ports,
) -> HandlerResult {
    let accounts = Accounts::new(ports.index.clone());
    let Some(user) = accounts.user(&recipient).await? else {
        tracing::warn!(queue_id = %message.queue_id, %recipient, "user deleted before delivery; not delivered");
        return Ok(Vec::new());
    };
    let store = Mailstore::new(
        ports.index.clone(),
        ports.blobs.clone(),
        ports.changes.clone(),
    );
    let body = ports
        .blobs
        .get(&message.body, None)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("body {} not found", message.body)))?;
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
    let new = |meta| NewMessage {
        queue_id: message.queue_id.clone(),
        body: message.body.clone(),
        body_size: body.len() as u64,
        prefix: prefix.clone(),
        meta,
        flags: Vec::new(),
        internal_date: message.received_at,
        internal_tz: 0,
    };
    let appended = match store
        .append(&user.address, &mailbox, new(analyze(&body)))
        .await
    {
        // A user may have deleted Junk; the inbox always exists.
        Err(AccountError::UnknownMailbox(_)) if mailbox != MailboxName::inbox() => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, %mailbox, "no such mailbox; filed to INBOX");
            let inbox = MailboxName::inbox();
            let appended = store
                .append(&user.address, &inbox, new(analyze(&body)))
                .await?;
            (appended, inbox)
        }
        other => (other?, mailbox),
    };
    match appended {
        (Appended::New { uid, modseq, .. }, mailbox) => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, %mailbox, uid, modseq, "delivered");
        }
        (Appended::Duplicate, _) => {
            tracing::info!(queue_id = %message.queue_id, recipient = %user.address, "already delivered; nothing to do");
        }
    }
    Ok(Vec::new())
}
