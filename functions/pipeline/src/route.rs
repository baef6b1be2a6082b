//! route: expands each recipient (plus-addressing, aliases, nested aliases
//! with loop detection) into one deliver job per local user, send jobs for
//! remote targets grouped per domain, and one archive job per message.
//! Mail from outside that claims a hosted domain and fails DMARC reaches
//! local users only: it is never forwarded elsewhere.

use std::collections::{BTreeMap, HashSet};

use stratus_core::accounts::Accounts;
use stratus_core::job::{Accepted, Job, Recipient, Verdict};
use stratus_core::mailstore::now;
use stratus_core::{Address, MailboxName};

use crate::{HandlerResult, Ports};

pub async fn handle(message: Accepted, verdict: Verdict, ports: &Ports) -> HandlerResult {
    let accounts = Accounts::new(ports.index.clone());
    let mailbox = match verdict {
        Verdict::Deliver => MailboxName::inbox(),
        // Quarantine has no mailbox of its own yet; Junk keeps it out of
        // the inbox without losing it.
        Verdict::Junk | Verdict::Quarantine => {
            MailboxName::parse("Junk").map_err(|e| crate::HandlerError::Permanent(e.to_string()))?
        }
    };
    let mut users: Vec<Address> = Vec::new();
    let mut seen = HashSet::new();
    let mut remote: BTreeMap<String, Vec<Recipient>> = BTreeMap::new();
    for rcpt in &message.envelope.recipients {
        let expansion = accounts.expand(&rcpt.address).await?;
        for user in expansion.users {
            if seen.insert(user.account_key()) {
                users.push(user);
            }
        }
        for address in expansion.remote {
            if let Some(domain) = &message.hosted_dmarc_failure {
                // Forwarded, it would reach the target under our domain's
                // name; the sender is unauthenticated, so no DSN either.
                tracing::warn!(queue_id = %message.queue_id, recipient = %rcpt.address, target = %address, %domain,
                    "not forwarded: the From domain is hosted here and the message failed DMARC");
                continue;
            }
            let list = remote.entry(address.domain().to_string()).or_default();
            if !list.iter().any(|r| r.address == address) {
                list.push(Recipient {
                    address,
                    notify: rcpt.notify.clone(),
                    orcpt: rcpt.orcpt.clone(),
                });
            }
        }
        for unknown in expansion.unknown {
            tracing::warn!(queue_id = %message.queue_id, recipient = %unknown, "recipient no longer exists; not delivered");
        }
        for alias in expansion.loops {
            tracing::warn!(queue_id = %message.queue_id, %alias, "alias reached twice or too deep; expanded once");
        }
    }
    let mut next: Vec<Job> = users
        .into_iter()
        .map(|recipient| Job::Deliver {
            message: message.clone(),
            recipient,
            mailbox: mailbox.clone(),
        })
        .collect();
    for (_, recipients) in remote {
        next.push(Job::Send {
            message: message.clone(),
            recipients,
            attempt: 0,
            not_before: now(),
        });
    }
    next.push(Job::Archive(message));
    Ok(next)
}
