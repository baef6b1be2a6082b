//! route: expands each recipient (plus-addressing, aliases, nested aliases
//! with loop detection, users' forwarding, SRS addresses) into deliver
//! jobs for each local user (one per mailbox their Sieve script files to,
//! or their verdict's mailbox), send jobs for remote targets grouped per
//! domain and forwarder, and one archive job per message.
//!
//! Forwards (through an alias, a user's forwarding, a Sieve `redirect`)
//! leave with the message untouched, an SRS envelope sender and a
//! `Delivered-To` field (the send stage adds both). Not forwarded:
//! - mail from outside that claims a hosted domain and fails DMARC (it
//!   reaches local users only);
//! - mail judged spam;
//! - mail that already carries `Delivered-To` of the forwarding address:
//!   a forwarding loop, bounced when nobody here got a copy.
//!
//! A recipient that leads to nobody any more (the gateway checked it at
//! RCPT, but the user or an alias target was deleted since) is bounced to
//! the sender with a DSN, never dropped in silence.

use std::collections::HashSet;

use bytes::Bytes;

use stratus_core::accounts::Accounts;
use stratus_core::job::{Accepted, Filing, Job, Recipient, Verdict, send_groups};
use stratus_core::mailstore::now;
use stratus_core::quarantine::{HeldFor, Quarantine, QuarantineError};
use stratus_core::{Address, MailboxName};

use stratus_compose::dsn::Report;

use crate::bounce::notify;
use crate::{HandlerError, HandlerResult, Ports, Settings};

pub async fn handle(
    message: Accepted,
    verdict: Verdict,
    ports: &Ports,
    settings: &Settings,
) -> HandlerResult {
    let accounts = Accounts::new(ports.index.clone());
    // Each local user once: with their verdict's filing and the address
    // that reached them (the envelope recipient their Sieve script sees).
    let mut users: Vec<(Address, Option<&Filing>, Address)> = Vec::new();
    let mut seen = HashSet::new();
    let mut remote: Vec<Recipient> = Vec::new();
    // The stored message, read once, when a check needs it.
    let mut body: Option<Bytes> = None;
    // Lists reached, what for, and the verdict of the recipient that
    // reached them.
    let mut lists: Vec<(Address, stratus_core::lists::Role, Verdict)> = Vec::new();
    // Forwards of recipients whose copies are quarantined: held with them.
    let mut held_forwards: Vec<Recipient> = Vec::new();
    let mut failed: Vec<(Recipient, String)> = Vec::new();
    for rcpt in &message.envelope.recipients {
        let expansion = accounts.expand(&rcpt.address).await?;
        if expansion.is_empty() {
            tracing::warn!(queue_id = %message.queue_id, recipient = %rcpt.address, "recipient leads to nobody any more; bounced");
            failed.push((
                rcpt.clone(),
                format!("550 5.1.1 <{}>: no such user here", rcpt.address),
            ));
            continue;
        }
        let filing = message
            .filings
            .iter()
            .find(|f| f.recipient == rcpt.address.account_key());
        let local_copy = !expansion.users.is_empty();
        for (list, role) in &expansion.lists {
            if !lists.iter().any(|(l, r, _)| l == list && r == role) {
                let v = filing.map_or(verdict, |f| f.verdict.max(verdict));
                lists.push((list.clone(), *role, v));
            }
        }
        for user in expansion.users {
            if seen.insert(user.account_key()) {
                users.push((user, filing, rcpt.address.clone()));
            }
        }
        // A remote recipient of submitted mail is not a forward.
        let (direct, forwards): (Vec<Address>, Vec<Address>) = expansion
            .remote
            .into_iter()
            .partition(|a| *a == rcpt.address);
        remote.extend(direct.into_iter().map(|address| Recipient {
            address,
            notify: rcpt.notify.clone(),
            orcpt: rcpt.orcpt.clone(),
            forwarded_by: None,
        }));
        if !forwards.is_empty() {
            let rcpt_verdict = filing.map_or(verdict, |f| f.verdict.max(verdict));
            let why_not = if let Some(domain) = &message.hosted_dmarc_failure {
                // Forwarded, it would reach the target under our domain's
                // name; the sender is unauthenticated, so no DSN either.
                Some(format!(
                    "the From domain {domain} is hosted here and the message failed DMARC"
                ))
            } else if rcpt_verdict == Verdict::Junk && local_copy {
                // The local copy is filed to Junk.
                Some("judged spam".to_string())
            } else if forwarded_here_before(&message, &rcpt.address, ports, &mut body).await? {
                if !local_copy {
                    failed.push((
                        rcpt.clone(),
                        format!("554 5.4.6 <{}>: mail forwarding loop", rcpt.address),
                    ));
                }
                Some("a forwarding loop: it was forwarded here before".to_string())
            } else {
                None
            };
            if let Some(why) = why_not {
                tracing::warn!(queue_id = %message.queue_id, recipient = %rcpt.address, targets = forwards.len(), %why, "not forwarded");
            } else {
                for address in forwards {
                    let target = Recipient {
                        address,
                        notify: rcpt.notify.clone(),
                        orcpt: rcpt.orcpt.clone(),
                        forwarded_by: Some(rcpt.address.clone()),
                    };
                    // Spam that reaches nobody here is held in quarantine,
                    // not forwarded and not lost.
                    if rcpt_verdict >= Verdict::Junk {
                        held_forwards.push(target);
                    } else {
                        remote.push(target);
                    }
                }
            }
        }
        for unknown in expansion.unknown {
            // The address itself was delivered (to its other targets): the
            // dead target is the alias owner's to fix, not the sender's.
            tracing::warn!(queue_id = %message.queue_id, recipient = %rcpt.address, target = %unknown, "alias target no longer exists; delivered to the other targets");
        }
        for alias in expansion.loops {
            tracing::warn!(queue_id = %message.queue_id, %alias, "alias reached twice or too deep; expanded once");
        }
    }
    let mut next: Vec<Job> = Vec::new();
    let mut held: Vec<HeldFor> = Vec::new();
    // A worklist: Sieve redirects to local users add to it, each user once.
    let mut i = 0;
    while i < users.len() {
        let (recipient, filing, rcpt) = users[i].clone();
        i += 1;
        let mut copy = message.clone();
        copy.filings = Vec::new();
        let verdict = match filing {
            Some(f) => {
                copy.headers.push_str(&f.headers);
                f.verdict.max(verdict)
            }
            None => verdict,
        };
        if verdict == Verdict::Quarantine {
            held.push(HeldFor {
                recipient,
                headers: filing.map(|f| f.headers.clone()).unwrap_or_default(),
            });
            continue;
        }
        let default = mailbox_for(verdict)?;
        let decision = crate::sieve::decide(
            ports,
            settings,
            &copy,
            verdict,
            &recipient,
            &rcpt,
            default.clone(),
            &mut body,
        )
        .await?;
        let mut filings = decision.filings;
        next.extend(decision.reply);
        for target in decision.redirects {
            let expansion = accounts.expand(&target).await?;
            let mut reached = !expansion.remote.is_empty() || !expansion.lists.is_empty();
            for (list, role) in &expansion.lists {
                if !lists.iter().any(|(l, r, _)| l == list && r == role) {
                    lists.push((list.clone(), *role, verdict));
                }
            }
            for user in expansion.users {
                if seen.insert(user.account_key()) {
                    users.push((user, None, target.clone()));
                    reached = true;
                }
            }
            remote.extend(expansion.remote.into_iter().map(|address| Recipient {
                address,
                notify: None,
                orcpt: None,
                forwarded_by: Some(recipient.clone()),
            }));
            // Nobody new (an unknown address, or someone who has it
            // already): kept here rather than lost.
            if !reached && !filings.iter().any(|f| f.mailbox == default) {
                tracing::warn!(queue_id = %message.queue_id, recipient = %recipient, %target, "sieve redirect reached nobody new; the message is kept");
                filings.push(crate::sieve::Filing {
                    mailbox: default.clone(),
                    filed: Default::default(),
                });
            }
        }
        for filing in filings {
            next.push(Job::Deliver {
                message: copy.clone(),
                recipient: recipient.clone(),
                mailbox: filing.mailbox,
                attempt: 0,
                not_before: 0,
                filed: filing.filed,
            });
        }
    }
    if !held.is_empty() || !held_forwards.is_empty() {
        let quarantine = Quarantine::new(ports.index.clone(), ports.blobs.clone());
        let who: Vec<String> = held
            .iter()
            .map(|h| h.recipient.to_string())
            .chain(held_forwards.iter().map(|r| r.address.to_string()))
            .collect();
        quarantine
            .hold(
                &message,
                held,
                held_forwards,
                now(),
                settings.quarantine_days,
            )
            .await
            .map_err(|e| match e {
                QuarantineError::Store(s) => HandlerError::from(s),
                other => HandlerError::Retryable(other.to_string()),
            })?;
        tracing::info!(queue_id = %message.queue_id, recipients = %who.join(","), "quarantined");
    }
    // A list reaches its members, but not those the message reached
    // without it.
    let reached: HashSet<String> = seen
        .iter()
        .cloned()
        .chain(remote.iter().map(|r| r.address.account_key()))
        .collect();
    for (list, role, v) in &lists {
        next.extend(
            crate::lists::handle(
                ports, settings, &message, *v, list, *role, &reached, &mut body,
            )
            .await?,
        );
    }
    for recipients in send_groups(remote) {
        next.push(Job::Send {
            message: message.clone(),
            recipients,
            attempt: 0,
            not_before: now(),
            generation: None,
            give_up: false,
        });
    }
    if !failed.is_empty() {
        let body = stored(&message, ports, &mut body).await?;
        let report = Report::Failed;
        if let Some(dsn) = notify(
            &message,
            &failed,
            "failed|route",
            report,
            &body,
            ports,
            settings,
        )
        .await?
        {
            next.push(dsn);
        }
    }
    next.push(Job::Archive(message));
    Ok(next)
}

/// The stored message, read on first use.
pub(crate) async fn stored(
    message: &Accepted,
    ports: &Ports,
    body: &mut Option<Bytes>,
) -> Result<Bytes, HandlerError> {
    if let Some(b) = body {
        return Ok(b.clone());
    }
    let bytes = ports
        .blobs
        .get(&message.body, None)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("body {} missing", message.body)))?;
    *body = Some(bytes.clone());
    Ok(bytes)
}

/// Whether the message already carries a `Delivered-To` field naming
/// `forwarder`: it was forwarded from here before and came back.
pub(crate) async fn forwarded_here_before(
    message: &Accepted,
    forwarder: &Address,
    ports: &Ports,
    body: &mut Option<Bytes>,
) -> Result<bool, HandlerError> {
    let raw = stored(message, ports, body).await?;
    Ok(stratus_core::message::delivered_to_includes(
        &raw, forwarder,
    ))
}

/// The mailbox a verdict files to.
fn mailbox_for(verdict: Verdict) -> Result<MailboxName, HandlerError> {
    match verdict {
        Verdict::Deliver => Ok(MailboxName::inbox()),
        // Quarantined recipients are held apart (above); this is for a
        // verdict that reaches here without a filing.
        Verdict::Junk | Verdict::Quarantine => {
            MailboxName::parse("Junk").map_err(|e| HandlerError::Permanent(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use stratus_core::Address;
    use stratus_core::ids::{BlobKey, QueueId};
    use stratus_core::job::{Envelope, Origin};
    use stratus_core::quarantine::{HeldFor, Quarantine, body_key};

    use super::*;

    fn accepted(id: &QueueId, recipients: Vec<stratus_core::job::Recipient>) -> Accepted {
        Accepted {
            queue_id: id.clone(),
            envelope: Envelope {
                mail_from: None,
                recipients,
                smtputf8: false,
                eight_bit: false,
                ret: None,
                envid: None,
                requiretls: false,
            },
            body: BlobKey::for_message(id),
            size: 10,
            received_at: 0,
            origin: Origin::Inbound,
            auth_results: None,
            arrival: None,
            dmarc_failure: None,
            hosted_dmarc_failure: None,
            author_policy: None,
            sign_as: None,
            headers: String::new(),
            spam_listed: Vec::new(),
            filings: Vec::new(),
        }
    }

    #[tokio::test]
    async fn forwards_of_a_quarantined_recipient_are_held_too() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _queue) = crate::test_ports(dir.path());
        let accounts = Accounts::new(ports.index.clone());
        let domain = stratus_core::Domain::parse("example.org").unwrap();
        accounts.add_domain(&domain).await.unwrap();
        let alice = Address::parse("alice@example.org").unwrap();
        accounts.add_user(&alice, "x".into(), None).await.unwrap();
        let team = Address::parse("team@example.org").unwrap();
        let outside = Address::parse("bob@elsewhere.example").unwrap();
        accounts
            .add_alias(&team, vec![alice.clone(), outside.clone()])
            .await
            .unwrap();
        let id = QueueId::generate();
        let to = |a: &Address| stratus_core::job::Recipient {
            address: a.clone(),
            notify: None,
            orcpt: None,
            forwarded_by: None,
        };
        let mut message = accepted(&id, vec![to(&team)]);
        message.filings = vec![Filing {
            recipient: team.account_key(),
            verdict: Verdict::Quarantine,
            headers: "X-Spam-Status: Yes, score=5.0 required=5.0 tests=ATTACH_EXECUTABLE(5.00)\r\n"
                .into(),
        }];
        ports
            .blobs
            .put(&message.body, b"Subject: x\r\n\r\nx\r\n".to_vec().into())
            .await
            .unwrap();
        let jobs = handle(
            message,
            Verdict::Deliver,
            &ports,
            &Settings::new("mx.example.org"),
        )
        .await
        .unwrap();
        // Only the journal copy goes on: nothing delivered, nothing sent.
        assert!(
            jobs.iter().all(|j| matches!(j, Job::Archive(_))),
            "{jobs:?}"
        );
        let q = Quarantine::new(ports.index.clone(), ports.blobs.clone());
        let held = q.get(&id).await.unwrap();
        assert_eq!(held.recipients.len(), 1);
        assert_eq!(
            held.forwards.iter().map(|f| &f.address).collect::<Vec<_>>(),
            [&outside]
        );
        let released = q.release(&id).await.unwrap();
        assert!(
            released
                .iter()
                .any(|j| matches!(j, Job::Deliver { recipient, .. } if recipient == &alice))
        );
        assert!(released.iter().any(
            |j| matches!(j, Job::Send { recipients, .. } if recipients[0].address == outside)
        ));
    }

    #[tokio::test]
    async fn a_disabled_accounts_forwarding_pauses_and_its_mail_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _queue) = crate::test_ports(dir.path());
        let accounts = Accounts::new(ports.index.clone());
        let domain = stratus_core::Domain::parse("example.org").unwrap();
        accounts.add_domain(&domain).await.unwrap();
        let alice = Address::parse("alice@example.org").unwrap();
        accounts.add_user(&alice, "x".into(), None).await.unwrap();
        let outside = Address::parse("alice@elsewhere.example").unwrap();
        accounts
            .set_forward(
                &alice,
                Some(stratus_core::accounts::Forward {
                    targets: vec![outside.clone()],
                    keep: false,
                }),
            )
            .await
            .unwrap();
        let route = |id: &QueueId| {
            let message = accepted(
                id,
                vec![stratus_core::job::Recipient {
                    address: alice.clone(),
                    notify: None,
                    orcpt: None,
                    forwarded_by: None,
                }],
            );
            let ports = &ports;
            async move {
                ports
                    .blobs
                    .put(&message.body, b"Subject: x\r\n\r\nx\r\n".to_vec().into())
                    .await
                    .unwrap();
                handle(
                    message,
                    Verdict::Deliver,
                    ports,
                    &Settings::new("mx.example.org"),
                )
                .await
                .unwrap()
            }
        };
        let sent = |jobs: &[Job]| jobs.iter().any(|j| matches!(j, Job::Send { .. }));
        let kept = |jobs: &[Job]| {
            jobs.iter()
                .any(|j| matches!(j, Job::Deliver { recipient, .. } if recipient == &alice))
        };
        let jobs = route(&QueueId::generate()).await;
        assert!(sent(&jobs) && !kept(&jobs), "{jobs:?}");
        accounts.set_disabled(&alice, true).await.unwrap();
        let jobs = route(&QueueId::generate()).await;
        assert!(!sent(&jobs) && kept(&jobs), "{jobs:?}");
    }

    #[tokio::test]
    async fn only_forwards_are_forwarded_and_spam_or_loops_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _queue) = crate::test_ports(dir.path());
        let accounts = Accounts::new(ports.index.clone());
        let domain = stratus_core::Domain::parse("example.org").unwrap();
        accounts.add_domain(&domain).await.unwrap();
        let team = Address::parse("team@example.org").unwrap();
        let bob = Address::parse("bob@elsewhere.example").unwrap();
        let carol = Address::parse("carol@remote.example").unwrap();
        accounts.add_alias(&team, vec![bob.clone()]).await.unwrap();
        let to = |a: &Address| stratus_core::job::Recipient {
            address: a.clone(),
            notify: None,
            orcpt: None,
            forwarded_by: None,
        };
        let settings = Settings::new("mx.example.org");
        let sends = |jobs: &[Job]| -> Vec<(Address, Option<Address>)> {
            jobs.iter()
                .filter_map(|j| match j {
                    Job::Send { recipients, .. } => Some(recipients.clone()),
                    _ => None,
                })
                .flatten()
                .map(|r| (r.address, r.forwarded_by))
                .collect()
        };
        let run = |header: &'static str, junk: bool| {
            let (ports, team, carol) = (ports.clone(), team.clone(), carol.clone());
            let settings = settings.clone();
            async move {
                let id = QueueId::generate();
                let mut message = accepted(&id, vec![to(&team), to(&carol)]);
                message.envelope.mail_from = Some(Address::parse("x@outside.example").unwrap());
                if junk {
                    message.filings = vec![Filing {
                        recipient: team.account_key(),
                        verdict: Verdict::Junk,
                        headers: "X-Spam-Status: Yes, score=8.0\r\n".into(),
                    }];
                }
                let text = format!("{header}Subject: x\r\n\r\nx\r\n");
                ports
                    .blobs
                    .put(&message.body, text.into_bytes().into())
                    .await
                    .unwrap();
                (
                    id,
                    handle(message, Verdict::Deliver, &ports, &settings)
                        .await
                        .unwrap(),
                )
            }
        };
        // The alias's target is a forward; a remote recipient is not.
        let (_, jobs) = run("", false).await;
        let mut sent = sends(&jobs);
        sent.sort_by_key(|(a, _)| a.to_string());
        assert_eq!(
            sent,
            [(bob.clone(), Some(team.clone())), (carol.clone(), None)]
        );
        // Spam is not forwarded: with nobody here to file it for, it is
        // held.
        let (id, jobs) = run("", true).await;
        assert_eq!(sends(&jobs), [(carol.clone(), None)]);
        let held = Quarantine::new(ports.index.clone(), ports.blobs.clone())
            .get(&id)
            .await
            .unwrap();
        assert_eq!(held.forwards.len(), 1);
        assert_eq!(held.forwards[0].forwarded_by.as_ref(), Some(&team));
        // A loop: forwarded from here before. Bounced, not sent again.
        let (_, jobs) = run("Delivered-To: <Team@example.org>\r\n", false).await;
        assert_eq!(sends(&jobs), [(carol.clone(), None)]);
        assert!(
            jobs.iter().any(|j| matches!(j, Job::Route { message, .. }
                if message.envelope.recipients[0].address.to_string() == "x@outside.example")),
            "a DSN to the sender: {jobs:?}"
        );
    }

    #[tokio::test]
    async fn held_messages_expire_and_are_released_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _queue) = crate::test_ports(dir.path());
        let id = QueueId::generate();
        let message = accepted(&id, Vec::new());
        ports
            .blobs
            .put(&message.body, b"Subject: x\r\n\r\nx\r\n".to_vec().into())
            .await
            .unwrap();
        let q = Quarantine::new(ports.index.clone(), ports.blobs.clone());
        let alice = Address::parse("alice@example.org").unwrap();
        let held = vec![HeldFor {
            recipient: alice.clone(),
            headers: "X-Spam-Status: Yes, score=5.0 required=5.0 tests=ATTACH_EXECUTABLE(5.00)\r\n"
                .into(),
        }];
        q.hold(&message, held.clone(), Vec::new(), 1000, 30)
            .await
            .unwrap();
        // Held again (a retried job): still one entry, one recipient.
        q.hold(&message, held, Vec::new(), 1000, 30).await.unwrap();
        let list = q.list().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].recipients.len(), 1);
        assert_eq!(list[0].reasons(), "ATTACH_EXECUTABLE(5.00)");
        // The message's own body may go (the sweeper); the held copy stays.
        ports.blobs.delete(&message.body).await.unwrap();
        let jobs = q.release(&id).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(
            ports
                .blobs
                .get(&message.body, None)
                .await
                .unwrap()
                .is_some()
        );
        // Jobs that could not be queued: the release can be tried again.
        assert_eq!(q.release(&id).await.unwrap().len(), 1);
        q.mark_released(&id, 2000).await.unwrap();
        assert!(q.release(&id).await.is_err());
        assert_eq!(q.get(&id).await.unwrap().released_at, Some(2000));
        assert_eq!(q.expire(1000 + 29 * 86_400).await.unwrap(), 0);
        assert_eq!(q.expire(1000 + 30 * 86_400).await.unwrap(), 1);
        assert!(q.list().await.unwrap().is_empty());
        assert!(
            ports
                .blobs
                .get(&body_key(&id), None)
                .await
                .unwrap()
                .is_none()
        );
    }
}
