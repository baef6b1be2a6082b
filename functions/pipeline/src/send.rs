//! The send stage: a message's recipients at one remote domain, handed to
//! a [`stratus_core::ports::Transport`] (MX lookup and SMTP in
//! `stratus-outbound`), with
//! per-recipient state, retries and delivery status notifications.
//!
//! - A recipient the remote server accepted (250 after DATA) is recorded
//!   at once (`sent#<queue id>|<domain>#<address>`), so a job that runs
//!   again — after a crash, or because the server hung up after its 250 —
//!   never sends to it twice.
//! - Temporary failures are retried by a new job carrying the next attempt
//!   number and the time it is due (exponential backoff); queue delays are
//!   at most 15 minutes, so a job that is not due yet is passed on again
//!   (see [`stratus_core::job::Job::delay`]). The queue's own receive count
//!   then only counts crashes.
//! - A permanent failure, or a temporary one past the message's lifetime,
//!   sends a DSN (RFC 3464) to the envelope sender from the null sender —
//!   never for a message from the null sender, so DSNs cannot loop.
//! - A message still being retried when it is older than the delay-warning
//!   time gets one "delayed" DSN per destination domain (headers only),
//!   for recipients whose NOTIFY allows it (absent NOTIFY does).
//! - A forward (recipients with `forwarded_by`) goes out untouched but for
//!   a `Delivered-To` field in front, with an SRS envelope sender under
//!   the forwarding address's domain ([`stratus_core::srs`]) when it came
//!   from outside with a sender; DSNs of a forward still go straight to
//!   the original sender.

use stratus_core::address::Address;
use stratus_core::job::{Accepted, Envelope, Job, Origin, Recipient};
use stratus_core::outqueue::{self, EntryState, QueueEntry};
use stratus_core::ports::transport::{Outcome, Seal};
use stratus_core::ports::{Condition, Key, Outcome as IndexOutcome, Write};
use stratus_core::srs::Srs;
use tracing::{info, warn};

use stratus_compose::dsn::Report;

use crate::bounce::notify;
use crate::{HandlerError, HandlerResult, Ports, Settings};

/// How long to wait before attempt `n + 1` after attempt `n` failed, in
/// multiples of the first retry's delay (1 minute by default: then 5, 15,
/// 30 minutes, 1, 2, 4 and 8 hours).
pub fn backoff_steps(attempt: u32) -> u32 {
    const STEPS: [u32; 8] = [1, 5, 15, 30, 60, 120, 240, 480];
    STEPS[(attempt as usize).min(STEPS.len() - 1)]
}

fn sent_key(message: &Accepted, domain: &str, recipient: &Address) -> Key {
    Key::new(
        format!("sent#{}", message.queue_id),
        format!("{domain}#{}", recipient.account_key()),
    )
}

/// What tells apart the DSNs of two send jobs to one domain: the
/// forwarder, when there is one (empty for plain mail, as before).
fn group(forwarder: &Option<Address>) -> String {
    forwarder
        .as_ref()
        .map(|a| format!("|{}", a.account_key()))
        .unwrap_or_default()
}

/// Counts one attempt for one recipient in
/// `stratus_outbound_attempts_total`: `delivered`, `deferred` (tried
/// again later) or `failed` (bounced).
fn count_attempt(result: &'static str) {
    stratus_core::metrics::metrics()
        .outbound
        .get_or_create(&stratus_core::metrics::ResultLabel { result })
        .inc();
}

/// The envelope and text of `message` forwarded by `by`, and the ARC seal
/// the transport adds to mail from outside.
async fn forwarded(
    message: &Accepted,
    by: &Address,
    body: &[u8],
    ports: &Ports,
    now: i64,
) -> Result<(Envelope, bytes::Bytes, Option<Seal>), HandlerError> {
    let mut envelope = message.envelope.clone();
    // Mail from outside, whatever domain its sender names (one of ours
    // too: it was not authenticated as ours); what our users submit and
    // what we make already comes from us.
    if let Some(sender) = &envelope.mail_from
        && message.origin == Origin::Inbound
    {
        let srs = Srs::load(ports.index.as_ref()).await?;
        match srs
            .forward(ports.index.as_ref(), sender, by.domain(), now)
            .await?
        {
            Some(rewritten) => envelope.mail_from = Some(rewritten),
            None => {
                warn!(queue_id = %message.queue_id, %sender, "cannot rewrite the sender with SRS; forwarded with it as it is")
            }
        }
    }
    let mut text = format!("Delivered-To: {by}\r\n").into_bytes();
    text.extend_from_slice(body);
    let seal = match (&message.arrival, message.origin) {
        (Some(arrival), Origin::Inbound) => Some(Seal {
            domain: by.domain().clone(),
            arrival: arrival.clone(),
            mail_from: message.envelope.mail_from.clone(),
        }),
        _ => None,
    };
    Ok((envelope, text.into(), seal))
}

/// A send job's parts.
#[derive(Debug, Clone)]
pub struct SendJob {
    pub message: Accepted,
    pub recipients: Vec<Recipient>,
    pub attempt: u32,
    pub not_before: i64,
    pub generation: Option<u64>,
    pub give_up: bool,
}

impl SendJob {
    /// The parts of a send job (`None` for a job of another kind).
    pub fn of(job: Job) -> Option<SendJob> {
        match job {
            Job::Send {
                message,
                recipients,
                attempt,
                not_before,
                generation,
                give_up,
            } => Some(SendJob {
                message,
                recipients,
                attempt,
                not_before,
                generation,
                give_up,
            }),
            _ => None,
        }
    }

    fn into_job(self) -> Job {
        Job::Send {
            message: self.message,
            recipients: self.recipients,
            attempt: self.attempt,
            not_before: self.not_before,
            generation: self.generation,
            give_up: self.give_up,
        }
    }
}

/// A first attempt (or one outside the outbound queue's bookkeeping).
pub async fn handle(
    message: Accepted,
    recipients: Vec<Recipient>,
    attempt: u32,
    not_before: i64,
    ports: &Ports,
    settings: &Settings,
) -> HandlerResult {
    let job = SendJob {
        message,
        recipients,
        attempt,
        not_before,
        generation: None,
        give_up: false,
    };
    run(job, ports, settings).await
}

/// How long an administrator's job waits for the entry that names it
/// (written just after it was queued) before it takes itself for one whose
/// entry was never written.
const ADMIN_WRITE_GRACE: i64 = 120;

/// What a bounce by an administrator tells the sender.
const REMOVED: &str = "5.0.0 removed from the queue by the administrator";

pub async fn run(job: SendJob, ports: &Ports, settings: &Settings) -> HandlerResult {
    let now = stratus_core::mailstore::now();
    let Some(first) = job.recipients.first() else {
        return Ok(Vec::new());
    };
    let domain = first.address.domain().to_string();
    let forwarder = first.forwarded_by.clone();
    let message = &job.message;
    let entry_id = outqueue::entry_id(&message.queue_id, &domain, forwarder.as_ref());
    // Whether this job is still the queue's (see `stratus_core::outqueue`).
    let generation = job.generation.unwrap_or(0);
    let entry = outqueue::get(ports.index.as_ref(), &entry_id).await?;
    let entry = match entry {
        // A first attempt; or one whose entry the sweeper removed long
        // after its time: it goes on, to deliver or give up with a DSN.
        None => None,
        Some((e, v)) if e.generation == generation && e.state != EntryState::Deleted => {
            Some((e, v))
        }
        // An administrator's job, running before the entry naming it was
        // written: again in a moment. One whose entry was never written
        // (the administrator was told of a conflict) is dropped once it
        // is clearly not coming.
        Some((e, _)) if e.generation < generation && e.state == EntryState::Waiting => {
            if now - job.not_before > ADMIN_WRITE_GRACE {
                info!(queue_id = %message.queue_id, entry = %entry_id, generation, "an administrator's job whose entry was never written: dropped");
                return Ok(Vec::new());
            }
            return Err(HandlerError::Retryable(format!(
                "queue entry {entry_id} is being changed"
            )));
        }
        Some((e, _))
            if e.made_by == Some(generation)
                && e.state == EntryState::Waiting
                && e.lease_until == 0 =>
        {
            // This job ran before, wrote the next generation and was cut
            // off before its retry and DSNs were queued.
            let mut jobs = vec![e.job];
            jobs.extend(e.also);
            return Ok(jobs);
        }
        _ => {
            info!(queue_id = %message.queue_id, entry = %entry_id, generation, "send job superseded or removed from the queue: dropped");
            return Ok(Vec::new());
        }
    };
    if job.not_before > now && !job.give_up {
        // Not due yet: pass it on (the queue delays it up to 15 minutes).
        return Ok(vec![job.into_job()]);
    }
    // Claim the entry: a copy of this job running at once finds it
    // changed and drops; an administrator waits until the attempt ends.
    // An attempt under way (the queue handed this job out again while it
    // ran, or it was cut off): this copy waits until its lease ends, and
    // then finds whatever that attempt left.
    let entry = match entry {
        Some((e, _)) if e.state == EntryState::Waiting && e.lease_until > now && !job.give_up => {
            info!(queue_id = %message.queue_id, entry = %entry_id, "an attempt is under way: this copy waits for its end");
            let mut later = job.clone();
            later.not_before = e.lease_until;
            return Ok(vec![later.into_job()]);
        }
        Some((mut e, version)) => {
            e.lease_until = now + outqueue::LEASE_SECS;
            let claim = outqueue::put(&e, Condition::Version(version));
            if ports.index.transact(vec![claim]).await? == IndexOutcome::Conflict {
                info!(queue_id = %message.queue_id, entry = %entry_id, "the queue entry changed as this attempt began: dropped");
                return Ok(Vec::new());
            }
            Some((e, version + 1))
        }
        None => None,
    };
    let mut pending = Vec::new();
    for r in &job.recipients {
        if ports
            .index
            .get(&sent_key(message, &domain, &r.address))
            .await?
            .is_none()
        {
            pending.push(r.clone());
        }
    }
    if pending.is_empty() {
        finish(ports, entry, now).await?;
        return Ok(Vec::new());
    }
    let body = ports
        .blobs
        .get(&message.body, None)
        .await?
        .ok_or_else(|| HandlerError::Retryable(format!("body {} missing", message.body)))?;
    let outcomes = if job.give_up {
        info!(queue_id = %message.queue_id, entry = %entry_id, "bounced by the administrator");
        pending
            .iter()
            .map(|_| Outcome::Permanent(REMOVED.into()))
            .collect()
    } else {
        let Some(transport) = settings.transport.as_ref() else {
            return Err(HandlerError::Retryable(
                "no outbound transport is configured".into(),
            ));
        };
        let (envelope, text, seal) = match &forwarder {
            Some(by) => forwarded(message, by, &body, ports, now).await?,
            None => (message.envelope.clone(), body.clone(), None),
        };
        transport
            .deliver(
                &domain,
                &envelope,
                &pending,
                &text,
                message.sign_as.as_ref(),
                seal.as_ref(),
            )
            .await
    };
    let attempt = job.attempt;
    let mut retry = Vec::new();
    let mut failed: Vec<(Recipient, String)> = Vec::new();
    for (r, outcome) in pending.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Delivered(reply) => {
                let mark = Write::Put {
                    key: sent_key(message, &domain, &r.address),
                    value: reply.clone().into_bytes(),
                    condition: Condition::Any,
                };
                // `Any` always applies.
                let _ = ports.index.transact(vec![mark]).await?;
                count_attempt("delivered");
                info!(queue_id = %message.queue_id, recipient = %r.address, attempt, %reply, "sent");
            }
            Outcome::Temporary(why) => {
                warn!(queue_id = %message.queue_id, recipient = %r.address, attempt, %why, "temporary failure");
                retry.push((r, why));
            }
            Outcome::Permanent(why) => {
                if !job.give_up {
                    count_attempt("failed");
                }
                warn!(queue_id = %message.queue_id, recipient = %r.address, attempt, %why, "permanent failure");
                failed.push((r, why));
            }
        }
    }
    let mut next = Vec::new();
    // The retry, written to the queue once every DSN is made.
    let mut retry_next: Option<(SendJob, String)> = None;
    if !retry.is_empty() {
        let due = now + retry_wait(settings, attempt);
        let expires = message.received_at + settings.send_lifetime.as_secs() as i64;
        if due >= expires {
            for _ in &retry {
                count_attempt("failed");
            }
            for (r, why) in retry {
                failed.push((r, format!("{why}; gave up after {} attempts", attempt + 1)));
            }
        } else {
            for _ in &retry {
                count_attempt("deferred");
            }
            // One warning: on the first attempt past the warning time.
            // The attempt before this one ran when it set this one's due
            // time, `retry_wait` earlier; a job that runs again decides
            // the same, and the DSN's id makes it one message.
            if let Some(after) = settings.delay_warning.map(|d| d.as_secs() as i64) {
                let age = |t: i64| t - message.received_at;
                let before =
                    (attempt > 0).then(|| job.not_before - retry_wait(settings, attempt - 1));
                if age(now) >= after && before.is_none_or(|t| age(t) < after) {
                    let tag = format!("delayed|{domain}{}", group(&forwarder));
                    let report = Report::Delayed { until: expires };
                    if let Some(dsn) =
                        notify(message, &retry, &tag, report, &body, ports, settings).await?
                    {
                        next.push(dsn);
                    }
                }
            }
            let last_error = retry
                .first()
                .map(|(_, why)| why.clone())
                .unwrap_or_default();
            let retry_job = SendJob {
                message: message.clone(),
                recipients: retry.into_iter().map(|(r, _)| r).collect(),
                attempt: attempt + 1,
                not_before: due,
                generation: Some(generation + 1),
                give_up: false,
            };
            retry_next = Some((retry_job, last_error));
        }
    }
    if !failed.is_empty() {
        // The generation tells apart the DSNs of an administrator's job and
        // of the job it superseded, which share an attempt number.
        let generation_tag = if generation > 0 {
            format!("|g{generation}")
        } else {
            String::new()
        };
        let tag = format!(
            "failed|{domain}|{attempt}{}{generation_tag}",
            group(&forwarder)
        );
        let report = Report::Failed;
        if let Some(dsn) = notify(message, &failed, &tag, report, &body, ports, settings).await? {
            next.push(dsn);
        }
    }
    let mut waiting = false;
    if let Some((retry_job, last_error)) = retry_next {
        let waits = QueueEntry {
            id: entry_id.clone(),
            state: EntryState::Waiting,
            generation: generation + 1,
            made_by: Some(generation),
            queue_id: message.queue_id.clone(),
            domain: domain.clone(),
            sender: message.envelope.mail_from.clone(),
            forwarded_by: forwarder.clone(),
            recipients: retry_job
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect(),
            attempt: attempt + 1,
            next_attempt: retry_job.not_before,
            last_error,
            received_at: message.received_at,
            updated: now,
            job: retry_job.clone().into_job(),
            // Queued again with the retry if this job is cut off first.
            also: next.clone(),
            lease_until: 0,
        };
        let write = outqueue::put(&waits, outqueue::unchanged(entry.as_ref().map(|e| e.1)));
        match ports.index.transact(vec![write]).await? {
            IndexOutcome::Applied => {
                waiting = true;
                next.push(retry_job.into_job());
            }
            IndexOutcome::Conflict => {
                info!(queue_id = %message.queue_id, entry = %entry_id, "the queue entry changed meanwhile (by an administrator): its own job makes the next attempt");
            }
        }
    }
    if !waiting {
        finish(ports, entry, now).await?;
    }
    Ok(next)
}

/// Marks the queue entry this job belonged to finished, unless it changed
/// meanwhile (then whoever changed it decides).
async fn finish(
    ports: &Ports,
    entry: Option<(QueueEntry, u64)>,
    now: i64,
) -> Result<(), HandlerError> {
    if let Some((mut e, version)) = entry {
        e.state = EntryState::Finished;
        e.updated = now;
        e.lease_until = 0;
        let _ = ports
            .index
            .transact(vec![outqueue::put(&e, Condition::Version(version))])
            .await?;
    }
    Ok(())
}

/// Seconds between attempt `attempt` and the next (at least one).
pub(crate) fn retry_wait(settings: &Settings, attempt: u32) -> i64 {
    let wait = settings.first_retry.saturating_mul(backoff_steps(attempt));
    wait.as_secs().max(1) as i64
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use stratus_core::Domain;
    use stratus_core::ids::{BlobKey, QueueId};
    use stratus_core::job::Notify;
    use stratus_core::job::{Envelope, Origin, Ret};
    use stratus_core::ports::Transport;

    use super::*;

    #[test]
    fn backoff_grows_and_stops_growing() {
        assert_eq!(backoff_steps(0), 1);
        assert_eq!(backoff_steps(100), 480);
    }

    /// A transport that answers from a script and counts its calls.
    #[derive(Debug)]
    struct Scripted {
        outcomes: Mutex<Vec<Vec<Outcome>>>,
        calls: Mutex<Vec<Vec<String>>>,
        /// The signing domain of each call.
        signed: Mutex<Vec<Option<Domain>>>,
        /// The ARC seal asked for in each call.
        sealed: Mutex<Vec<Option<Seal>>>,
    }

    #[async_trait]
    impl Transport for Scripted {
        async fn deliver(
            &self,
            _domain: &str,
            _envelope: &Envelope,
            recipients: &[Recipient],
            _body: &[u8],
            sign_as: Option<&Domain>,
            seal: Option<&Seal>,
        ) -> Vec<Outcome> {
            self.signed.lock().unwrap().push(sign_as.cloned());
            self.sealed.lock().unwrap().push(seal.cloned());
            self.calls
                .lock()
                .unwrap()
                .push(recipients.iter().map(|r| r.address.to_string()).collect());
            self.outcomes.lock().unwrap().remove(0)
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        ports: Ports,
        settings: Settings,
        transport: Arc<Scripted>,
        message: Accepted,
    }

    async fn setup(script: Vec<Vec<Outcome>>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (ports, _) = crate::test_ports(dir.path());
        let transport = Arc::new(Scripted {
            outcomes: Mutex::new(script),
            calls: Mutex::default(),
            signed: Mutex::default(),
            sealed: Mutex::default(),
        });
        let mut settings = Settings::new("mx.test.example");
        settings.transport = Some(transport.clone());
        let id = QueueId::generate();
        let body = BlobKey::for_message(&id);
        ports
            .blobs
            .put(&body, Bytes::from_static(b"Subject: hi\r\n\r\nbody\r\n"))
            .await
            .unwrap();
        let message = Accepted {
            queue_id: id,
            envelope: Envelope {
                mail_from: Some(Address::parse("alice@example.com").unwrap()),
                recipients: Vec::new(),
                smtputf8: false,
                eight_bit: false,
                ret: Some(Ret::Hdrs),
                envid: Some("env-1".into()),
                requiretls: false,
            },
            body,
            size: 21,
            received_at: stratus_core::mailstore::now(),
            origin: Origin::Submission,
            auth_results: None,
            arrival: None,
            dmarc_failure: None,
            hosted_dmarc_failure: None,
            author_policy: None,
            sign_as: Some(Domain::parse("example.com").unwrap()),
            headers: String::new(),
            spam_listed: Vec::new(),
            filings: Vec::new(),
        };
        Setup {
            _dir: dir,
            ports,
            settings,
            transport,
            message,
        }
    }

    fn rcpt(address: &str) -> Recipient {
        Recipient {
            address: Address::parse(address).unwrap(),
            notify: None,
            orcpt: None,
            forwarded_by: None,
        }
    }

    #[tokio::test]
    async fn a_job_that_runs_again_sends_nobody_twice() {
        let s = setup(vec![
            vec![
                Outcome::Delivered("250 ok".into()),
                Outcome::Temporary("451 4.3.0 busy".into()),
            ],
            vec![Outcome::Delivered("250 ok".into())],
        ])
        .await;
        let recipients = vec![rcpt("a@remote.example"), rcpt("b@remote.example")];
        let next = handle(
            s.message.clone(),
            recipients.clone(),
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        let [
            Job::Send {
                recipients: retry,
                attempt,
                not_before,
                ..
            },
        ] = next.as_slice()
        else {
            panic!("{next:?}")
        };
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].address.to_string(), "b@remote.example");
        assert_eq!(*attempt, 1);
        assert!(*not_before >= stratus_core::mailstore::now() + 59);
        assert_eq!(
            next[0].delay(stratus_core::mailstore::now()),
            Duration::from_secs((*not_before - stratus_core::mailstore::now()) as u64)
        );
        // b waits in the outbound queue, under the retry's generation.
        let id = outqueue::entry_id(&s.message.queue_id, "remote.example", None);
        let (entry, _) = outqueue::get(s.ports.index.as_ref(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (entry.state, entry.generation, entry.made_by, entry.attempt),
            (EntryState::Waiting, 1, Some(0), 1)
        );
        assert_eq!(entry.last_error, "451 4.3.0 busy");
        assert_eq!(entry.job, next[0]);
        // The same job again (a crash before its ack): its retry was
        // written, so that retry is queued again and nobody is tried.
        let again = handle(s.message.clone(), recipients, 0, 0, &s.ports, &s.settings)
            .await
            .unwrap();
        assert_eq!(again, next);
        // The retry, due: only b is tried, and the entry is finished.
        let Job::Send {
            recipients,
            generation,
            ..
        } = next[0].clone()
        else {
            unreachable!()
        };
        let retry = SendJob {
            message: s.message.clone(),
            recipients,
            attempt: 1,
            not_before: 0,
            generation,
            give_up: false,
        };
        let next = run(retry.clone(), &s.ports, &s.settings).await.unwrap();
        assert!(next.is_empty(), "{next:?}");
        let calls = s.transport.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                vec!["a@remote.example", "b@remote.example"],
                vec!["b@remote.example"]
            ]
        );
        let (entry, _) = outqueue::get(s.ports.index.as_ref(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.state, EntryState::Finished);
        // Once more (a crash again): b was sent, so nobody is tried.
        assert!(run(retry, &s.ports, &s.settings).await.unwrap().is_empty());
        assert_eq!(s.transport.calls.lock().unwrap().len(), 2);
    }

    /// What an administrator's retry, bounce or deletion writes (as the
    /// gateway's service does): a new generation, or the entry deleted.
    async fn take_over(s: &Setup, id: &str, give_up: bool, delete: bool) -> Option<Job> {
        let (mut e, version) = outqueue::get(s.ports.index.as_ref(), id)
            .await
            .unwrap()
            .unwrap();
        let job = match e.job.clone() {
            Job::Send {
                message,
                recipients,
                attempt,
                ..
            } => Job::Send {
                message,
                recipients,
                attempt,
                not_before: 0,
                generation: Some(e.generation + 1),
                give_up,
            },
            other => panic!("{other:?}"),
        };
        if delete {
            e.state = EntryState::Deleted;
        } else {
            e.generation += 1;
            e.made_by = None;
            e.job = job.clone();
        }
        let applied = s
            .ports
            .index
            .transact(vec![outqueue::put(&e, Condition::Version(version))])
            .await
            .unwrap();
        assert_eq!(applied, IndexOutcome::Applied);
        (!delete).then_some(job)
    }

    fn parts(job: &Job) -> SendJob {
        SendJob::of(job.clone()).expect("a send job")
    }

    #[tokio::test]
    async fn a_copy_waits_for_an_attempt_under_way_and_a_stray_admin_job_drops() {
        let busy = || vec![Outcome::Temporary("451 4.3.0 busy".into())];
        let s = setup(vec![busy()]).await;
        let id = outqueue::entry_id(&s.message.queue_id, "remote.example", None);
        let first = handle(
            s.message.clone(),
            vec![rcpt("a@remote.example")],
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        // Another worker holds the entry: its attempt is under way.
        let (mut e, version) = outqueue::get(s.ports.index.as_ref(), &id)
            .await
            .unwrap()
            .unwrap();
        let until = stratus_core::mailstore::now() + 100;
        e.lease_until = until;
        let held = s
            .ports
            .index
            .transact(vec![outqueue::put(&e, Condition::Version(version))])
            .await
            .unwrap();
        assert_eq!(held, IndexOutcome::Applied);
        let mut copy = parts(&first[0]);
        copy.not_before = 0;
        let next = run(copy.clone(), &s.ports, &s.settings).await.unwrap();
        let [
            Job::Send {
                not_before,
                generation,
                ..
            },
        ] = next.as_slice()
        else {
            panic!("{next:?}")
        };
        assert_eq!((*not_before, *generation), (until, copy.generation));
        assert_eq!(
            s.transport.calls.lock().unwrap().len(),
            1,
            "the copy sent nothing"
        );

        // A job of a generation the entry never reached (an administrator's
        // change that failed): tried again at first, dropped once stale.
        let mut stray = copy.clone();
        stray.generation = Some(50);
        stray.not_before = stratus_core::mailstore::now();
        assert!(matches!(
            run(stray.clone(), &s.ports, &s.settings).await,
            Err(HandlerError::Retryable(_))
        ));
        stray.not_before -= ADMIN_WRITE_GRACE + 1;
        assert!(run(stray, &s.ports, &s.settings).await.unwrap().is_empty());
        assert_eq!(s.transport.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_administrator_retries_bounces_or_deletes_a_waiting_message() {
        let busy = || vec![Outcome::Temporary("451 4.3.0 busy".into())];
        let s = setup(vec![
            busy(),
            vec![Outcome::Delivered("250 ok".into())],
            busy(),
        ])
        .await;
        let id = outqueue::entry_id(&s.message.queue_id, "remote.example", None);
        let first = handle(
            s.message.clone(),
            vec![rcpt("a@remote.example")],
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        let [waiting] = first.as_slice() else {
            panic!("{first:?}")
        };

        // Retry now: the new job sends at once; the old one, when it
        // comes due, finds itself superseded and does nothing.
        let now_job = take_over(&s, &id, false, false).await.unwrap();
        assert!(
            run(parts(&now_job), &s.ports, &s.settings)
                .await
                .unwrap()
                .is_empty()
        );
        let mut old = parts(waiting);
        old.not_before = 0;
        assert!(
            run(old.clone(), &s.ports, &s.settings)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.transport.calls.lock().unwrap().len(),
            2,
            "the old job sent nothing"
        );

        // Another message, deleted: its job drops without a word.
        let mut s = s;
        s.message.queue_id = QueueId::generate();
        let id = outqueue::entry_id(&s.message.queue_id, "remote.example", None);
        let first = handle(
            s.message.clone(),
            vec![rcpt("b@remote.example")],
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        assert!(take_over(&s, &id, false, true).await.is_none());
        let mut waiting = parts(&first[0]);
        waiting.not_before = 0;
        assert!(
            run(waiting, &s.ports, &s.settings)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.transport.calls.lock().unwrap().len(), 3);

        // A third, bounced: a DSN to the sender, nothing sent, finished.
        s.message.queue_id = QueueId::generate();
        let id = outqueue::entry_id(&s.message.queue_id, "remote.example", None);
        s.transport.outcomes.lock().unwrap().push(busy());
        handle(
            s.message.clone(),
            vec![rcpt("c@remote.example")],
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        let bounce = take_over(&s, &id, true, false).await.unwrap();
        let next = run(parts(&bounce), &s.ports, &s.settings).await.unwrap();
        let [Job::Route { message: dsn, .. }] = next.as_slice() else {
            panic!("{next:?}")
        };
        assert_eq!(dsn.envelope.mail_from, None);
        let text = s.ports.blobs.get(&dsn.body, None).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("removed from the queue by the administrator"),
            "{text}"
        );
        assert_eq!(
            s.transport.calls.lock().unwrap().len(),
            4,
            "bounced without a try"
        );
        let (entry, _) = outqueue::get(s.ports.index.as_ref(), &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.state, EntryState::Finished);
    }

    #[tokio::test]
    async fn forwards_of_mail_from_outside_are_sealed_under_the_forwarder() {
        let s = setup(vec![vec![Outcome::Delivered("250 ok".into())]; 3]).await;
        let arrival = stratus_core::job::Arrival {
            ip: "192.0.2.7".parse().unwrap(),
            helo: "mx.sender.example".into(),
        };
        let inbound = Accepted {
            origin: Origin::Inbound,
            arrival: Some(arrival.clone()),
            sign_as: None,
            ..s.message.clone()
        };
        let forward = |to: &str| Recipient {
            forwarded_by: Some(Address::parse("alias@hosted.example").unwrap()),
            ..rcpt(to)
        };
        for (message, recipient) in [
            (inbound.clone(), forward("one@remote.example")),
            // Not a forward: mail to a remote address among the recipients.
            (inbound, rcpt("two@remote.example")),
            // A forward of what a user submitted: it came from us.
            (s.message.clone(), forward("three@remote.example")),
        ] {
            handle(message, vec![recipient], 0, 0, &s.ports, &s.settings)
                .await
                .unwrap();
        }
        let sealed = s.transport.sealed.lock().unwrap().clone();
        assert_eq!(
            sealed,
            [
                Some(Seal {
                    domain: Domain::parse("hosted.example").unwrap(),
                    arrival,
                    mail_from: Some(Address::parse("alice@example.com").unwrap()),
                }),
                None,
                None
            ]
        );
    }

    #[tokio::test]
    async fn a_job_not_due_is_passed_on_untouched() {
        let s = setup(vec![]).await;
        let later = stratus_core::mailstore::now() + 3600;
        let next = handle(
            s.message.clone(),
            vec![rcpt("a@remote.example")],
            3,
            later,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        assert!(
            matches!(next.as_slice(), [Job::Send { attempt: 3, not_before, .. }] if *not_before == later)
        );
        assert_eq!(
            next[0].delay(stratus_core::mailstore::now()),
            stratus_core::ports::MAX_DELAY,
            "an hour away: the queue holds it 15 minutes, then it comes back"
        );
        assert!(s.transport.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn failures_bounce_to_the_sender_with_a_dsn() {
        let mut s = setup(vec![vec![
            Outcome::Permanent("550 5.1.1 no such user".into()),
            Outcome::Temporary("451 4.4.1 no answer".into()),
            Outcome::Permanent("550 5.7.1 refused".into()),
        ]])
        .await;
        // A lifetime of a minute: the temporary failure expires at once.
        s.settings.send_lifetime = Duration::from_secs(60);
        let quiet = Recipient {
            notify: Some(Notify {
                success: false,
                failure: false,
                delay: false,
                never: true,
            }),
            ..rcpt("quiet@remote.example")
        };
        let next = handle(
            s.message.clone(),
            vec![
                rcpt("gone@remote.example"),
                rcpt("slow@remote.example"),
                quiet,
            ],
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        let [Job::Route { message: dsn, .. }] = next.as_slice() else {
            panic!("{next:?}")
        };
        assert_eq!(dsn.envelope.mail_from, None, "from the null sender");
        assert_eq!(
            s.transport.signed.lock().unwrap().clone(),
            [Some(Domain::parse("example.com").unwrap())],
            "the message is signed as the domain submission checked"
        );
        assert_eq!(
            dsn.sign_as.as_ref().map(|d| d.as_str()),
            Some("mx.test.example"),
            "a DSN is signed as the domain of its From, MAILER-DAEMON@<hostname>"
        );
        assert_eq!(
            dsn.envelope.recipients[0].address.to_string(),
            "alice@example.com"
        );
        let body = s.ports.blobs.get(&dsn.body, None).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(
            "Final-Recipient: rfc822;gone@remote.example\r\nAction: failed\r\nStatus: 5.1.1"
        ));
        assert!(text.contains(
            "Final-Recipient: rfc822;slow@remote.example\r\nAction: failed\r\nStatus: 5.4.1"
        ));
        assert!(!text.contains("quiet@remote.example"), "NOTIFY=NEVER");
        assert!(text.contains("Original-Envelope-Id: env-1"));
        assert!(
            text.contains("Content-Type: text/rfc822-headers"),
            "RET=HDRS"
        );
        assert!(text.contains("Auto-Submitted: auto-replied"));
        // Running the job again stores the same DSN, not a second one.
        let again = s.message.queue_id.derived("failed|remote.example|0");
        assert_eq!(dsn.queue_id, again);
    }

    /// The DSN (and its text) when the one recipient of `message`, as
    /// `edit` leaves it, fails with `reply`.
    async fn bounce_of(reply: &str, edit: impl FnOnce(&mut Accepted)) -> (Accepted, String) {
        let s = setup(vec![vec![Outcome::Permanent(reply.into())]]).await;
        let mut message = s.message.clone();
        edit(&mut message);
        let rcpts = vec![rcpt("gone@remote.example")];
        let next = handle(message, rcpts, 0, 0, &s.ports, &s.settings)
            .await
            .unwrap();
        let [Job::Route { message: dsn, .. }] = next.as_slice() else {
            panic!("{next:?}")
        };
        let body = s.ports.blobs.get(&dsn.body, None).await.unwrap().unwrap();
        (dsn.clone(), String::from_utf8_lossy(&body).into_owned())
    }

    /// RFC 8689 §5: the report on REQUIRETLS mail asks for REQUIRETLS too
    /// and returns only the header, whatever RET said.
    #[tokio::test]
    async fn a_requiretls_bounce_is_sent_with_requiretls_and_headers_only() {
        let (dsn, text) = bounce_of("550 5.7.30 REQUIRETLS support required", |m| {
            m.envelope.requiretls = true;
            m.envelope.ret = Some(Ret::Full);
        })
        .await;
        assert!(dsn.envelope.requiretls);
        assert!(text.contains("Status: 5.7.30"), "{text}");
        assert!(text.contains("Content-Type: text/rfc822-headers"), "{text}");
        assert!(!text.contains("\r\nbody\r\n"), "no body returned: {text}");
        // Without REQUIRETLS, RET=FULL returns the whole message.
        let (dsn, text) = bounce_of("550 5.1.1 no", |m| m.envelope.ret = Some(Ret::Full)).await;
        assert!(!dsn.envelope.requiretls);
        assert!(text.contains("\r\nbody\r\n"), "{text}");
    }

    #[tokio::test]
    async fn a_message_retried_past_the_warning_time_gets_one_delay_dsn() {
        let mut s = setup(vec![
            vec![
                Outcome::Temporary("451 4.4.1 no answer".into()),
                Outcome::Temporary("451 4.4.1 no answer".into()),
            ],
            vec![
                Outcome::Temporary("451 4.4.1 no answer".into()),
                Outcome::Temporary("451 4.4.1 no answer".into()),
            ],
        ])
        .await;
        // Five hours old: past the default warning time of four.
        s.message.received_at -= 5 * 3600;
        let no_delay = Recipient {
            notify: Some(Notify {
                success: false,
                failure: true,
                delay: false,
                never: false,
            }),
            ..rcpt("nodelay@remote.example")
        };
        let recipients = vec![rcpt("slow@remote.example"), no_delay];
        let next = handle(
            s.message.clone(),
            recipients.clone(),
            3,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        let [
            Job::Route { message: dsn, .. },
            Job::Send {
                attempt: 4,
                not_before,
                generation,
                ..
            },
        ] = next.as_slice()
        else {
            panic!("{next:?}")
        };
        assert_eq!(dsn.envelope.mail_from, None, "from the null sender");
        assert_eq!(
            dsn.queue_id,
            s.message.queue_id.derived("delayed|remote.example")
        );
        let body = s.ports.blobs.get(&dsn.body, None).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("Subject: Delayed Mail (still being retried)"),
            "{text}"
        );
        assert!(text.contains(
            "Final-Recipient: rfc822;slow@remote.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        ));
        assert!(text.contains("Will-Retry-Until: "), "{text}");
        assert!(
            !text.contains("nodelay@remote.example"),
            "NOTIFY without DELAY"
        );
        assert!(
            text.contains("Content-Type: text/rfc822-headers"),
            "headers only"
        );

        // The next retry, when it is due (30 minutes later: everything
        // moves back by that much), was past the warning time already.
        let mut later = s.message.clone();
        later.received_at -= 1800;
        let retry = SendJob {
            message: later,
            recipients,
            attempt: 4,
            not_before: not_before - 1800,
            generation: *generation,
            give_up: false,
        };
        let next = run(retry, &s.ports, &s.settings).await.unwrap();
        assert!(
            matches!(next.as_slice(), [Job::Send { attempt: 5, .. }]),
            "{next:?}"
        );
    }

    #[tokio::test]
    async fn no_delay_dsn_before_the_warning_time_or_when_disabled() {
        let script = || vec![vec![Outcome::Temporary("451 4.4.1 no answer".into())]];
        let young = setup(script()).await;
        let next = handle(
            young.message.clone(),
            vec![rcpt("a@remote.example")],
            0,
            0,
            &young.ports,
            &young.settings,
        )
        .await
        .unwrap();
        assert!(matches!(next.as_slice(), [Job::Send { .. }]), "{next:?}");
        let mut off = setup(script()).await;
        off.message.received_at -= 5 * 3600;
        off.settings.delay_warning = None;
        let next = handle(
            off.message.clone(),
            vec![rcpt("a@remote.example")],
            0,
            0,
            &off.ports,
            &off.settings,
        )
        .await
        .unwrap();
        assert!(matches!(next.as_slice(), [Job::Send { .. }]), "{next:?}");
    }

    #[tokio::test]
    async fn no_dsn_for_a_message_from_the_null_sender() {
        let mut s = setup(vec![vec![Outcome::Permanent("550 5.1.1 no".into())]]).await;
        s.message.envelope.mail_from = None;
        let next = handle(
            s.message.clone(),
            vec![rcpt("x@remote.example")],
            0,
            0,
            &s.ports,
            &s.settings,
        )
        .await
        .unwrap();
        assert!(next.is_empty(), "{next:?}");
    }
}
