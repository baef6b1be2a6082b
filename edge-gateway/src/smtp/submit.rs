//! Submission without an SMTP session (JMAP's EmailSubmission): a
//! signed-in user's message goes through what SMTP AUTH submission
//! checks (the envelope sender and every author must be the user's to
//! send as, the sending rate, the size and recipient limits, the virus
//! scan) and is accepted durably into the same `inbound` queue, signed
//! for its From domain by the send stage.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stratus_core::address::Address;
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::job::{Accepted, Envelope, Origin, Recipient};
use stratus_proto::smtp::reply::Reply;
use tracing::{info, warn};

use super::Context;
use super::received::Trace;
use super::{content, trust};

/// A message a signed-in user sends.
#[derive(Debug)]
pub struct Submission<'a> {
    pub user: &'a Address,
    pub mail_from: Address,
    pub recipients: Vec<Address>,
    /// The message as the user wrote it (a `Bcc` field is taken out).
    pub body: Vec<u8>,
    /// Where the user is, for the `Received` field.
    pub client: IpAddr,
    /// The `with` of the `Received` field (`HTTPS`).
    pub protocol: &'static str,
}

/// Accepts `s` for delivery; its queue id, or the SMTP reply that says
/// why not (the same refusals an SMTP client would get).
pub async fn submit(ctx: &Context, s: Submission<'_>) -> Result<QueueId, Reply> {
    let limits = &ctx.limits;
    if s.recipients.is_empty() {
        return Err(Reply::new(554, "5.5.1", "no valid recipients"));
    }
    if s.recipients.len() > limits.max_recipients {
        return Err(Reply::new(452, "4.5.3", "too many recipients"));
    }
    let accounts = ctx.shared.stores.accounts();
    trust::check_envelope_sender(&accounts, s.user, &s.mail_from.to_string()).await?;
    if !ctx.send_rate.allow(&s.user.account_key()) {
        info!(user = %s.user, "submission rate limit reached");
        return Err(Reply::new(
            450,
            "4.7.0",
            "sending rate limit reached; try again later",
        ));
    }
    let mut body = without_bcc(s.body);
    if body.len() as u64 > limits.max_message_size {
        return Err(Reply::new(
            552,
            "5.3.4",
            "message size exceeds fixed maximum message size",
        ));
    }
    let sign_as = trust::check_authors(&accounts, s.user, Some(&s.mail_from), &body).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    content::strip(&mut body);
    let facts = content::Facts {
        mail_from: Some(&s.mail_from),
        recipients: s.recipients.iter().collect(),
        auth_results: "",
        dmarc_failure: None,
        listed: Vec::new(),
        now,
    };
    let checked = content::check(ctx, body, &facts, false).await;
    if let Some((reply, _)) = checked.refusal {
        return Err(reply);
    }
    let mut body = checked.body;
    if let Some(mark) = checked.mark {
        body.splice(0..0, mark.into_bytes());
    }
    let queue_id = QueueId::generate();
    super::session::complete_header(&mut body, &queue_id, &ctx.shared.hostname, now);
    let single = match s.recipients.as_slice() {
        [only] => Some(only),
        _ => None,
    };
    let trace = Trace {
        helo: "jmap",
        rdns: None,
        ip: s.client,
        hostname: &ctx.shared.hostname,
        protocol: s.protocol,
        queue_id: &queue_id,
        tls: None,
        single_recipient: single,
        time: now,
    }
    .header();
    body.splice(0..0, trace.into_bytes());
    let smtputf8 = !s.mail_from.to_string().is_ascii()
        || s.recipients.iter().any(|r| !r.to_string().is_ascii());
    let eight_bit = body.iter().any(|b| !b.is_ascii());
    let accepted = Accepted {
        body: BlobKey::for_message(&queue_id),
        queue_id: queue_id.clone(),
        size: body.len() as u64,
        received_at: now,
        origin: Origin::Submission,
        auth_results: None,
        arrival: None,
        dmarc_failure: None,
        hosted_dmarc_failure: None,
        author_policy: None,
        sign_as,
        headers: String::new(),
        spam_listed: Vec::new(),
        filings: Vec::new(),
        envelope: Envelope {
            mail_from: Some(s.mail_from),
            recipients: s
                .recipients
                .into_iter()
                .map(|address| Recipient {
                    address,
                    notify: None,
                    orcpt: None,
                    forwarded_by: None,
                })
                .collect(),
            smtputf8,
            eight_bit,
            ret: None,
            envid: None,
            requiretls: false,
        },
    };
    let size = body.len();
    match super::accept::accept(&ctx.shared.stores, accepted, Bytes::from(body)).await {
        Ok(()) => {
            info!(queue_id = %queue_id, size, user = %s.user, "accepted from JMAP");
            Ok(queue_id)
        }
        Err(e) => {
            warn!(error = %e, "cannot store a submitted message");
            Err(Reply::new(
                451,
                "4.3.0",
                "temporary failure storing the message, try again later",
            ))
        }
    }
}

/// The message without the `Bcc` fields of its header: recipients must
/// not learn who else was sent a blind copy.
pub fn without_bcc(body: Vec<u8>) -> Vec<u8> {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(body.len(), |i| i + 2);
    let mut out = Vec::with_capacity(body.len());
    let mut skipping = false;
    let mut at = 0;
    while at < end {
        let line_end = body[at..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |i| at + i + 1);
        let line = &body[at..line_end];
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        at = line_end;
    }
    out.extend_from_slice(&body[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blind_copies_stay_blind() {
        let m = b"From: a@x\r\nBcc: secret@y,\r\n  other@z\r\nTo: b@x\r\n\r\nBcc: in the body stays\r\n".to_vec();
        let out = String::from_utf8(without_bcc(m)).unwrap();
        assert_eq!(
            out,
            "From: a@x\r\nTo: b@x\r\n\r\nBcc: in the body stays\r\n"
        );
    }
}
