//! The envelope of an accepted message and the jobs that carry it from stage
//! to stage. Jobs travel as JSON, so the queue contents stay readable when an
//! operator inspects a dead-letter queue.
//!
//! Every job carries the [`QueueId`] assigned at acceptance; together with the
//! recipient and the stage it keys idempotency.

use serde::{Deserialize, Serialize};

use crate::address::{Address, Domain};
use crate::ids::{BlobKey, QueueId};
use crate::mailbox::MailboxName;
use crate::ports::QueueName;

/// DSN `NOTIFY` values of one recipient (RFC 3461 §4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
    /// `NOTIFY=NEVER`.
    pub never: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// DSN `ORCPT`, as given (`addr-type;xtext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// Set on a forward (an alias, a user's forwarding, a Sieve
    /// `redirect`): the local address that forwarded the message here.
    /// The send stage sends it with an SRS envelope sender under that
    /// address's domain and a `Delivered-To` field naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_by: Option<Address>,
}

/// Remote recipients grouped into send jobs: one per destination domain
/// and forwarding address (a transaction has one envelope sender), each
/// address once (the first forward that reached it sends it).
pub fn send_groups(recipients: impl IntoIterator<Item = Recipient>) -> Vec<Vec<Recipient>> {
    let mut groups: std::collections::BTreeMap<(String, String), Vec<Recipient>> =
        std::collections::BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in recipients {
        if !seen.insert(r.address.account_key()) {
            continue;
        }
        let by = r
            .forwarded_by
            .as_ref()
            .map(Address::account_key)
            .unwrap_or_default();
        groups
            .entry((r.address.domain().to_string(), by))
            .or_default()
            .push(r);
    }
    groups.into_values().collect()
}

/// DSN `RET` (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    Full,
    Hdrs,
}

/// The SMTP envelope of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `None` is the null reverse-path `<>` (bounces).
    pub mail_from: Option<Address>,
    pub recipients: Vec<Recipient>,
    #[serde(default)]
    pub smtputf8: bool,
    #[serde(default)]
    pub eight_bit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// `MAIL FROM ... REQUIRETLS` (RFC 8689): deliver only over TLS that
    /// an MTA-STS policy (or DANE) lets us verify, to servers that take
    /// REQUIRETLS too; otherwise bounce.
    #[serde(default, skip_serializing_if = "is_false")]
    pub requiretls: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Received by the MX role from another server.
    Inbound,
    /// Submitted by an authenticated user.
    Submission,
    /// Produced by Stratus itself (DSNs, auto-replies).
    Local,
}

/// The filter's verdict, which decides the mailbox a message is filed to
/// (ordered from mildest to strictest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    #[default]
    Deliver,
    Junk,
    Quarantine,
}

/// What every stage knows about an accepted message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub queue_id: QueueId,
    pub envelope: Envelope,
    pub body: BlobKey,
    pub size: u64,
    /// Unix seconds when the gateway acknowledged the message.
    pub received_at: i64,
    pub origin: Origin,
    /// The gateway's SPF/DKIM/DMARC/ARC results, as the value of an
    /// Authentication-Results header (without the authserv-id), for the
    /// filter to record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_results: Option<String>,
    /// Where mail from outside came from, for the ARC seal (RFC 8617) the
    /// send stage adds when it forwards it; `None` for what our users
    /// submit and what Stratus writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<Arrival>,
    /// Set when DMARC failed: the policy the sender's domain publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_failure: Option<DmarcPolicy>,
    /// Set when mail from outside claims a hosted domain in its From and
    /// fails DMARC: such mail reaches local users, but is never forwarded
    /// to targets elsewhere, where it would carry our domain's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_dmarc_failure: Option<Domain>,
    /// The DMARC policy the From domain publishes (whether the message
    /// passed or not), when the gateway found one: a list that rewrites
    /// a message rewrites its From too under `quarantine` or `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_policy: Option<DmarcPolicy>,
    /// The domain whose DKIM keys the send stage signs this message with,
    /// if it has any: the From domain of mail a user submitted (after
    /// submission checked they may send as every author), or of mail
    /// Stratus wrote itself. `None` for mail that came from outside, so a
    /// forward through an alias is never signed with a hosted domain's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_as: Option<Domain>,
    /// Header lines the stages add (CRLF-terminated), delivered in front of
    /// the stored body; the body is never rewritten once stored (the
    /// gateway, before storing it, removes foreign verdict fields and puts
    /// its own `Received` and `X-Virus-Status` in front).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub headers: String,
    /// The symbols of the DNS blocklists that listed the client (or a
    /// link), as the gateway found them, for the filter's score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spam_listed: Vec<String>,
    /// The filter's verdict for each envelope recipient it scored, which
    /// route files by (recipients not listed take the job's verdict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filings: Vec<Filing>,
}

/// The client that handed the gateway a message from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    pub ip: std::net::IpAddr,
    /// The name it gave in HELO/EHLO.
    pub helo: String,
}

/// The filter's verdict for one envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filing {
    /// The envelope recipient's account key (`local@domain`, lower-cased
    /// local part).
    pub recipient: String,
    pub verdict: Verdict,
    /// The header lines that say so (`X-Spam-Status`...), CRLF-terminated,
    /// delivered in front of the message for this recipient.
    pub headers: String,
}

/// A DMARC policy (RFC 7489 §6.3 `p=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// How a Sieve script filed a message, besides the mailbox: the flags
/// to set (`:flags`, imap4flags) and whether to create a missing mailbox
/// (`:create`). Plain filings leave both empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filed {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

impl Filed {
    pub fn is_plain(&self) -> bool {
        self.flags.is_empty() && !self.create
    }
}

/// A job on one of the stage queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "lowercase")]
pub enum Job {
    /// To the filter: a freshly accepted message.
    Inbound(Accepted),
    /// To route: a filtered message and its verdict.
    Route { message: Accepted, verdict: Verdict },
    /// To deliver: one local recipient, and the mailbox to file into.
    Deliver {
        message: Accepted,
        recipient: Address,
        mailbox: MailboxName,
        /// 0 for the first try; a mailbox over its quota is tried again
        /// later by a new job with the next number.
        #[serde(default, skip_serializing_if = "is_zero")]
        attempt: u32,
        /// Unix seconds before which this attempt must not run (0: now).
        #[serde(default, skip_serializing_if = "is_zero")]
        not_before: i64,
        /// What the recipient's Sieve script asked for besides the mailbox.
        #[serde(default, skip_serializing_if = "Filed::is_plain")]
        filed: Filed,
    },
    /// To send: recipients at one remote domain.
    Send {
        message: Accepted,
        recipients: Vec<Recipient>,
        /// 0 for the first try; each retry is a new job with the next number.
        attempt: u32,
        /// Unix seconds before which this attempt must not run (retries chain
        /// delays of at most 15 minutes until this time).
        not_before: i64,
        /// The outbound-queue entry's generation this attempt belongs to
        /// ([`crate::outqueue`]); `None` for a first attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        /// Bounce every recipient without trying (`stratus queue bounce`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        give_up: bool,
    },
    /// To archive: the journal copy of every accepted message.
    Archive(Accepted),
    /// To the filter: teach `account`'s spam model that these messages
    /// are spam (moved or copied into Junk) or ham (moved out of it).
    Learn {
        account: Address,
        bodies: Vec<BlobKey>,
        spam: bool,
    },
}

/// At most this many messages in one [`Job::Learn`].
pub const LEARN_BATCH: usize = 100;

impl Job {
    /// The queue this job belongs on.
    pub fn queue(&self) -> QueueName {
        match self {
            Job::Inbound(_) | Job::Learn { .. } => QueueName::Inbound,
            Job::Route { .. } => QueueName::Route,
            Job::Deliver { .. } => QueueName::Deliver,
            Job::Send { .. } => QueueName::Send,
            Job::Archive(_) => QueueName::Archive,
        }
    }

    /// The accepted message the job carries (a learning job carries
    /// none).
    pub fn message(&self) -> Option<&Accepted> {
        match self {
            Job::Inbound(m) | Job::Archive(m) => Some(m),
            Job::Route { message, .. }
            | Job::Deliver { message, .. }
            | Job::Send { message, .. } => Some(message),
            Job::Learn { .. } => None,
        }
    }

    /// How long the queue should hold this job back: a send or deliver
    /// job that is not due yet, at most [`crate::ports::MAX_DELAY`]
    /// (longer waits chain); nothing for the rest.
    pub fn delay(&self, now: i64) -> std::time::Duration {
        match self {
            Job::Send { not_before, .. } | Job::Deliver { not_before, .. } if *not_before > now => {
                std::time::Duration::from_secs((*not_before - now) as u64)
                    .min(crate::ports::MAX_DELAY)
            }
            _ => std::time::Duration::ZERO,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).expect("job serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(job: &Job) -> Accepted {
        job.message().expect("a message").clone()
    }

    #[test]
    fn jobs_round_trip_through_json_and_name_their_queue() {
        let id = QueueId::generate();
        let message = Accepted {
            body: BlobKey::for_message(&id),
            queue_id: id,
            envelope: Envelope {
                mail_from: None,
                recipients: vec![Recipient {
                    address: Address::parse("jörg@bücher.example").unwrap(),
                    notify: None,
                    orcpt: None,
                    forwarded_by: None,
                }],
                smtputf8: true,
                eight_bit: true,
                ret: Some(Ret::Hdrs),
                envid: Some("x".into()),
                requiretls: true,
            },
            size: 10,
            received_at: 1_700_000_000,
            origin: Origin::Inbound,
            auth_results: None,
            arrival: None,
            dmarc_failure: Some(DmarcPolicy::Quarantine),
            hosted_dmarc_failure: Some(Domain::parse("example.com").unwrap()),
            author_policy: None,
            sign_as: Some(Domain::parse("bücher.example").unwrap()),
            headers: "Authentication-Results: x; none\r\n".into(),
            spam_listed: Vec::new(),
            filings: Vec::new(),
        };
        let jobs = [
            Job::Inbound(message.clone()),
            Job::Route {
                message: message.clone(),
                verdict: Verdict::Junk,
            },
            Job::Deliver {
                message: message.clone(),
                recipient: Address::parse("a@b.example").unwrap(),
                mailbox: MailboxName::inbox(),
                attempt: 1,
                not_before: 7,
                filed: Filed {
                    flags: vec!["\\Seen".into()],
                    create: true,
                },
            },
            Job::Send {
                message: message.clone(),
                recipients: vec![],
                attempt: 2,
                not_before: 5,
                generation: Some(3),
                give_up: false,
            },
            Job::Archive(message),
        ];
        for (job, q) in jobs.iter().zip(QueueName::ALL) {
            assert_eq!(job.queue(), q);
            let json = job.to_json();
            assert!(crate::ports::validate_send(&json, std::time::Duration::ZERO).is_ok());
            assert_eq!(&Job::from_json(&json).unwrap(), job);
        }
        assert!(Job::from_json(br#"{"stage":"inbound","queue_id":"bad"}"#).is_err());
        assert_eq!(jobs[2].delay(5), std::time::Duration::from_secs(2));
        // A deliver job of an older version (no attempt) still reads.
        let first = Job::Deliver {
            message: message_of(&jobs[0]),
            recipient: Address::parse("a@b.example").unwrap(),
            mailbox: MailboxName::inbox(),
            attempt: 0,
            not_before: 0,
            filed: Filed::default(),
        };
        let json = String::from_utf8(first.to_json()).unwrap();
        assert!(
            !json.contains("attempt") && !json.contains("not_before") && !json.contains("filed"),
            "{json}"
        );
        assert_eq!(Job::from_json(json.as_bytes()).unwrap(), first);
    }
}
