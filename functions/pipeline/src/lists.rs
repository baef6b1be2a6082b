//! Mail to a distribution list's addresses (see [`stratus_core::lists`]),
//! in the route stage:
//! - a post goes out to the members as a new message of the list's own:
//!   `List-Id`, `List-Post`, `List-Unsubscribe` (RFC 2369, 2919) and
//!   `Precedence: list` in front, the list's bounce address as its
//!   envelope sender, DKIM-signed for the list's domain, and its From
//!   rewritten to the list (`"Alice via team" <team@…>`, with
//!   `Reply-To`) when the author's domain asks receivers to quarantine or
//!   reject mail that fails DMARC, which a changed message would. Members
//!   who got the message directly (they were recipients too) are left
//!   out; disabled members too. Posts the policy does not let through
//!   (moderated lists, non-members, mail judged spam) are held for the
//!   owners (`stratus list held|approve|discard`).
//! - a bounce (to `LIST-bounces@`) counts a bounce for each member its
//!   report names as failed; a member is disabled after
//!   [`stratus_core::lists::BOUNCE_LIMIT`].
//! - mail to `LIST-unsubscribe@` unsubscribes its sender, when the sender
//!   is known to be real (local, or passing DMARC).

use std::collections::HashSet;

use bytes::Bytes;
use stratus_core::Address;
use stratus_core::accounts::Accounts;
use stratus_core::job::{Accepted, DmarcPolicy, Job, Origin, Verdict};
use stratus_core::lists::{ListRecord, Policy, Role};

use crate::route::stored;
use crate::{HandlerError, Ports, Settings};

/// Members per list message (one job each).
const CHUNK: usize = 200;

/// Handles mail for `list` in `role`. `reached`: the account keys and
/// remote addresses the message reaches without the list.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    ports: &Ports,
    settings: &Settings,
    message: &Accepted,
    verdict: Verdict,
    list: &Address,
    role: Role,
    reached: &HashSet<String>,
    body: &mut Option<Bytes>,
) -> Result<Vec<Job>, HandlerError> {
    let accounts = Accounts::new(ports.index.clone());
    let Some(record) = accounts.list(list).await? else {
        tracing::warn!(queue_id = %message.queue_id, %list, "the list is gone; nothing sent");
        return Ok(Vec::new());
    };
    match role {
        Role::Post => post(ports, settings, message, verdict, &record, reached, body).await,
        Role::Bounces => {
            bounces(ports, &accounts, message, &record, body).await?;
            Ok(Vec::new())
        }
        Role::Unsubscribe => {
            if let Some(sender) = message
                .envelope
                .mail_from
                .as_ref()
                .filter(|_| real_sender(message))
            {
                let removed = accounts
                    .unsubscribe(&record.address, std::slice::from_ref(sender))
                    .await?;
                tracing::info!(queue_id = %message.queue_id, list = %record.address, %sender, removed, "unsubscribe by mail");
            } else {
                tracing::warn!(queue_id = %message.queue_id, list = %record.address, "unsubscribe request from a sender that may be forged; ignored");
            }
            Ok(Vec::new())
        }
    }
}

/// Whether the envelope sender is known to be real: a local one, or one
/// whose own domain vouched for this message: SPF passed for it, or
/// DMARC passed for a From at the same domain. (A DMARC pass for some
/// other From says nothing of the envelope sender.)
pub(crate) fn real_sender(message: &Accepted) -> bool {
    let Some(sender) = &message.envelope.mail_from else {
        return false;
    };
    match message.origin {
        Origin::Submission | Origin::Local => true,
        Origin::Inbound => stratus_filter::AuthFacts::from_results(
            message.auth_results.as_deref().unwrap_or(""),
            None,
        )
        .vouches_for_sender(sender.domain().as_str()),
    }
}

async fn post(
    ports: &Ports,
    settings: &Settings,
    message: &Accepted,
    verdict: Verdict,
    list: &ListRecord,
    reached: &HashSet<String>,
    body: &mut Option<Bytes>,
) -> Result<Vec<Job>, HandlerError> {
    let accounts = &Accounts::new(ports.index.clone());
    let raw = stored(message, ports, body).await?;
    let held = accounts.held_post(&list.address, &message.queue_id).await?;
    let approved = held.as_ref().is_some_and(|h| h.approved);
    let own_list_id = format!("<{}>", list.list_id());
    let looped = message.envelope.mail_from.as_ref() == Some(&list.bounce_address())
        || stratus_core::message::parse_headers(&raw)
            .and_then(|h| h.header_raw("List-Id").map(|v| v.contains(&own_list_id)))
            .unwrap_or(false);
    if looped {
        // The list's own copy came back (a member forwards to the list):
        // sent once is enough.
        tracing::warn!(queue_id = %message.queue_id, list = %list.address, "the list's own mail came back to it; not sent again");
        return Ok(Vec::new());
    }
    if !approved {
        let why = if verdict != Verdict::Deliver {
            Some("judged spam")
        } else if message.hosted_dmarc_failure.is_some() || message.dmarc_failure.is_some() {
            // Sent on, signed for the list's domain, it would pass.
            Some("it fails its From domain's DMARC check")
        } else if message.envelope.mail_from.is_none() {
            Some("it is from the null sender")
        } else if let Some(why) = stratus_sieve::vacation::automated(&raw) {
            Some(why)
        } else {
            match list.policy {
                Policy::Anyone => None,
                Policy::Moderated => Some("the list is moderated"),
                Policy::Members => match &message.envelope.mail_from {
                    Some(s) if accounts.member(&list.address, s).await?.is_some() => None,
                    _ => Some("the sender is not a member"),
                },
            }
        };
        if let Some(why) = why {
            let parsed = stratus_core::message::envelope(&raw);
            accounts
                .hold_post(ports.blobs.as_ref(), &list.address, message, raw, why)
                .await?;
            tracing::info!(queue_id = %message.queue_id, list = %list.address, why, "held for the list's owners");
            return tell_owners(ports, settings, message, list, why, &parsed).await;
        }
    }
    let members: Vec<Address> = accounts
        .members(&list.address)
        .await?
        .into_iter()
        .filter(|m| !m.disabled)
        .map(|m| m.address)
        .filter(|a| !reached.contains(&a.account_key()))
        .collect();
    let text = list_text(list, &raw, message, accounts).await?;
    let mut next = Vec::new();
    for (i, chunk) in members.chunks(CHUNK).enumerate() {
        let id = message
            .queue_id
            .derived(&format!("list|{}|{i}", list.address.account_key()));
        let mut copy = crate::bounce::store_made(
            ports,
            id,
            text.clone(),
            chunk,
            message.envelope.smtputf8,
            Some(list.address.domain().clone()),
        )
        .await?;
        copy.envelope.mail_from = Some(list.bounce_address());
        next.push(Job::Route {
            message: copy,
            verdict: Verdict::Deliver,
        });
    }
    tracing::info!(queue_id = %message.queue_id, list = %list.address, members = members.len(), "list post");
    if approved {
        accounts
            .post_distributed(&list.address, &message.queue_id)
            .await?;
    }
    Ok(next)
}

/// Tells `list`'s owners (if it has any) that `message` is held, and
/// how to approve or discard it.
async fn tell_owners(
    ports: &Ports,
    settings: &Settings,
    message: &Accepted,
    list: &ListRecord,
    why: &str,
    parsed: &stratus_core::message::EnvelopeMeta,
) -> Result<Vec<Job>, HandlerError> {
    if list.owners.is_empty() {
        return Ok(Vec::new());
    }
    let sender = message
        .envelope
        .mail_from
        .as_ref()
        .map_or("<>".to_string(), ToString::to_string);
    let id = message
        .queue_id
        .derived(&format!("held|{}", list.address.account_key()));
    let text = format!(
        "A message to {list} is held: {why}.\n\n\
         From: {sender}\nSubject: {subject}\n\n\
         To send it to the members:\n  stratus list approve {list} {queue}\n\
         To delete it:\n  stratus list discard {list} {queue}\n",
        list = list.address,
        subject = parsed.subject.as_deref().unwrap_or("(none)"),
        queue = message.queue_id,
    );
    let body = stratus_compose::reply::notice(
        &list.bounce_address(),
        &list.owners,
        &format!("Held for approval: a message to {}", list.address),
        &text,
        &settings.hostname,
        &id,
        stratus_core::mailstore::now(),
    );
    let notice = crate::bounce::store_made(
        ports,
        id,
        body,
        &list.owners,
        false,
        Some(list.address.domain().clone()),
    )
    .await?;
    Ok(vec![Job::Route {
        message: notice,
        verdict: Verdict::Deliver,
    }])
}

/// The header fields a list sets; any the message had are dropped.
const LIST_FIELDS: [&str; 7] = [
    "list-id",
    "list-post",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-help",
    "list-subscribe",
    "precedence",
];

/// The message as the list sends it: its header fields, the list's in
/// front, the From rewritten when DMARC asks for it.
async fn list_text(
    list: &ListRecord,
    raw: &[u8],
    message: &Accepted,
    accounts: &Accounts,
) -> Result<Vec<u8>, HandlerError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 2);
    let (head, rest) = raw.split_at(end);
    let fields = split_fields(head);
    let author = stratus_core::authors::authors(raw)
        .ok()
        .and_then(|a| a.from.into_iter().next());
    let rewrite = match &author {
        Some(a) if a.domain() != list.address.domain() => {
            // Our own domains publish p=quarantine (`stratus domain dns`).
            matches!(
                message.author_policy,
                Some(DmarcPolicy::Quarantine | DmarcPolicy::Reject)
            ) || accounts.domain(a.domain()).await?.is_some()
        }
        _ => false,
    };
    let mut out = format!(
        "List-Id: <{id}>\r\nList-Post: <mailto:{post}>\r\nList-Unsubscribe: <mailto:{unsub}?subject=unsubscribe>\r\nPrecedence: list\r\n",
        id = list.list_id(),
        post = list.address,
        unsub = list.unsubscribe_address(),
    )
    .into_bytes();
    let has_reply_to = fields.iter().any(|f| name_is(f, "reply-to"));
    for field in &fields {
        if LIST_FIELDS.iter().any(|n| name_is(field, n)) {
            continue;
        }
        if rewrite && name_is(field, "from") {
            let author = author.as_ref().expect("rewrite needs an author");
            let display = format!("{} via {}", author.local_part(), list.address.local_part())
                .replace(['"', '\\'], "");
            out.extend_from_slice(format!("From: \"{display}\" <{}>\r\n", list.address).as_bytes());
            if !has_reply_to {
                out.extend_from_slice(format!("Reply-To: <{author}>\r\n").as_bytes());
            }
            continue;
        }
        out.extend_from_slice(field);
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// The header fields of `head`, each with its continuation lines.
fn split_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let line_end = head[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |p| i + p + 1);
        let continues = head
            .get(line_end)
            .is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continues {
            out.push(&head[start..line_end]);
            start = line_end;
        }
        i = line_end;
    }
    out
}

fn name_is(field: &[u8], name: &str) -> bool {
    field.iter().position(|&b| b == b':').is_some_and(|p| {
        field[..p]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
    })
}

/// Counts the bounces a report to the list's bounce address names.
async fn bounces(
    ports: &Ports,
    accounts: &Accounts,
    message: &Accepted,
    list: &ListRecord,
    body: &mut Option<Bytes>,
) -> Result<(), HandlerError> {
    let raw = stored(message, ports, body).await?;
    let text = String::from_utf8_lossy(&raw);
    // Per-recipient blocks of the delivery-status part (RFC 3464):
    // Final-Recipient, then Action. Not the returned message, which may
    // quote anything.
    let Some(start) = text
        .to_ascii_lowercase()
        .find("content-type: message/delivery-status")
    else {
        return Ok(());
    };
    let part = &text[start..];
    let part = part[1..].find("\n--").map_or(part, |end| &part[..end + 1]);
    let mut failed: Vec<String> = Vec::new();
    let mut recipient: Option<String> = None;
    for line in part.lines() {
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => continue,
        };
        if name.eq_ignore_ascii_case("Final-Recipient") {
            recipient = value.split_once(';').map(|(_, a)| a.trim().to_string());
        } else if name.eq_ignore_ascii_case("Action")
            && value.eq_ignore_ascii_case("failed")
            && let Some(r) = recipient.take()
            && !failed.iter().any(|f| f.eq_ignore_ascii_case(&r))
        {
            failed.push(r);
        }
    }
    for address in failed.iter().filter_map(|a| Address::parse(a).ok()) {
        if let Some(member) = accounts.record_bounce(&list.address, &address).await? {
            tracing::info!(queue_id = %message.queue_id, list = %list.address, member = %address,
                bounces = member.bounces, disabled = member.disabled, "list member bounced");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_continuation_lines() {
        let head = b"From: a@b.example\r\nSubject: one\r\n two\r\nList-Id: <x>\r\n";
        let fields = split_fields(head);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[1], b"Subject: one\r\n two\r\n");
        assert!(name_is(fields[2], "list-id"));
        assert!(!name_is(fields[0], "fro"));
    }
}
