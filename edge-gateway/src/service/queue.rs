//! The outbound queue: the messages waiting for another attempt at a
//! remote domain ([`stratus_core::outqueue`]), listed with filters,
//! retried now, deleted (no more attempts, no DSN) or bounced (a DSN to
//! the sender now).

use serde::Serialize;
use stratus_core::Domain;
use stratus_core::job::Job;
use stratus_core::outqueue::{self, EntryState, QueueEntry};
use stratus_core::ports::{Condition, Outcome};

use super::{Service, ServiceError, ServiceResult};

/// A waiting message, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueuedInfo {
    pub id: String,
    pub queue_id: String,
    /// `null`: the null sender (a DSN of ours).
    pub sender: Option<String>,
    pub forwarded_by: Option<String>,
    /// The destination domain.
    pub domain: String,
    pub recipients: Vec<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix seconds.
    pub next_attempt: i64,
    pub last_error: String,
    /// Unix seconds.
    pub received_at: i64,
}

impl From<&QueueEntry> for QueuedInfo {
    fn from(e: &QueueEntry) -> Self {
        QueuedInfo {
            id: e.id.clone(),
            queue_id: e.queue_id.to_string(),
            sender: e.sender.as_ref().map(ToString::to_string),
            forwarded_by: e.forwarded_by.as_ref().map(ToString::to_string),
            domain: e.domain.clone(),
            recipients: e.recipients.iter().map(ToString::to_string).collect(),
            attempts: e.attempt,
            next_attempt: e.next_attempt,
            last_error: e.last_error.clone(),
            received_at: e.received_at,
        }
    }
}

/// Which waiting messages to list: each given part must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// The destination domain.
    pub domain: Option<String>,
    /// The envelope sender (`<>` for the null sender), without case.
    pub sender: Option<String>,
    /// One of the recipients, without case.
    pub recipient: Option<String>,
}

impl QueueFilter {
    fn matches(&self, e: &QueueEntry) -> bool {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        self.domain.as_deref().is_none_or(|d| same(d, &e.domain))
            && self.sender.as_deref().is_none_or(|s| match &e.sender {
                None => s == "<>",
                Some(a) => same(s, &a.to_string()),
            })
            && self
                .recipient
                .as_deref()
                .is_none_or(|r| e.recipients.iter().any(|a| same(r, &a.to_string())))
    }
}

/// What an administrator does to a waiting message.
enum Action {
    Retry,
    Bounce,
}

impl Service {
    /// The waiting messages `filter` lets through, oldest first, with the
    /// domain each belongs to (see [`QueueEntry::owner_domain`]).
    pub async fn list_queue(
        &self,
        filter: &QueueFilter,
    ) -> ServiceResult<Vec<(QueuedInfo, Option<Domain>)>> {
        let all = outqueue::all(self.index.as_ref())
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(all
            .iter()
            .filter(|e| e.state == EntryState::Waiting && filter.matches(e))
            .map(|e| (QueuedInfo::from(e), e.owner_domain().cloned()))
            .collect())
    }

    /// The waiting message `id`, its version, and the domain it belongs to.
    async fn waiting(&self, id: &str) -> ServiceResult<(QueueEntry, u64)> {
        let missing = || ServiceError::NotFound(format!("no message {id} is waiting in the queue"));
        let id = outqueue::parse_id(id).ok_or_else(missing)?;
        match outqueue::get(self.index.as_ref(), &id)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
        {
            Some((e, v)) if e.state == EntryState::Waiting => Ok((e, v)),
            _ => Err(missing()),
        }
    }

    /// The waiting message `id` and the domain it belongs to.
    pub async fn queued(&self, id: &str) -> ServiceResult<(QueuedInfo, Option<Domain>)> {
        let (e, _) = self.waiting(id).await?;
        Ok((QueuedInfo::from(&e), e.owner_domain().cloned()))
    }

    /// Tries the message again now (on every gateway: a new job, and the
    /// one that was waiting steps aside).
    pub async fn retry_queued(&self, id: &str) -> ServiceResult<QueuedInfo> {
        self.take_over(id, Action::Retry).await
    }

    /// Gives up on the message now: its sender gets a DSN saying so.
    pub async fn bounce_queued(&self, id: &str) -> ServiceResult<QueuedInfo> {
        self.take_over(id, Action::Bounce).await
    }

    /// Removes the message from the queue: no more attempts, no DSN.
    pub async fn delete_queued(&self, id: &str) -> ServiceResult<QueuedInfo> {
        let (mut e, version) = self.waiting(id).await?;
        // No more attempts; but the DSNs the last one made still go.
        for dsn in &e.also {
            self.queue
                .send(dsn.queue(), &dsn.to_json(), std::time::Duration::ZERO)
                .await
                .map_err(|err| ServiceError::Unavailable(err.to_string()))?;
        }
        e.also = Vec::new();
        e.state = EntryState::Deleted;
        e.updated = stratus_core::mailstore::now();
        self.replace(&e, version).await?;
        Ok(QueuedInfo::from(&e))
    }

    /// A new generation of the entry with a job of its own, due now. The
    /// job is queued first: if the entry then cannot be written, the job
    /// finds itself superseded and does nothing; if the job runs before
    /// the entry is written, it tries again a moment later. Refused while
    /// an attempt is under way, so that it cannot race that attempt into a
    /// second delivery.
    async fn take_over(&self, id: &str, action: Action) -> ServiceResult<QueuedInfo> {
        let (mut e, version) = self.waiting(id).await?;
        let now = stratus_core::mailstore::now();
        if e.lease_until > now {
            return Err(ServiceError::Conflict(format!(
                "an attempt to deliver {id} is under way; try again in a minute"
            )));
        }
        let Job::Send {
            message,
            recipients,
            attempt,
            ..
        } = e.job.clone()
        else {
            return Err(ServiceError::Internal(format!(
                "queue entry {id} holds no send job"
            )));
        };
        // A generation of its own, beyond any the send stage would write
        // next: a job queued for a change that then failed (409) matches
        // no entry and drops, and of two quick retries only the last lives.
        let mut bump = [0u8; 2];
        stratus_core::ids::fill_random(&mut bump);
        let generation = e.generation + 2 + u64::from(u16::from_le_bytes(bump));
        let job = Job::Send {
            message,
            recipients,
            attempt,
            not_before: now,
            generation: Some(generation),
            give_up: matches!(action, Action::Bounce),
        };
        // DSNs the last attempt made but may not have queued (their ids
        // make a second copy harmless), then the job.
        for dsn in e.also.iter().chain(std::iter::once(&job)) {
            self.queue
                .send(dsn.queue(), &dsn.to_json(), std::time::Duration::ZERO)
                .await
                .map_err(|err| ServiceError::Unavailable(err.to_string()))?;
        }
        e.generation = generation;
        e.made_by = None;
        e.next_attempt = now;
        e.updated = now;
        e.job = job;
        e.also = Vec::new();
        e.lease_until = 0;
        self.replace(&e, version).await?;
        Ok(QueuedInfo::from(&e))
    }

    async fn replace(&self, e: &QueueEntry, version: u64) -> ServiceResult<()> {
        let write = outqueue::put(e, Condition::Version(version));
        match self.index.transact(vec![write]).await {
            Ok(Outcome::Applied) => Ok(()),
            Ok(Outcome::Conflict) => Err(ServiceError::Conflict(format!(
                "message {} changed in the queue meanwhile; look again",
                e.id
            ))),
            Err(err) => Err(ServiceError::Unavailable(err.to_string())),
        }
    }
}
