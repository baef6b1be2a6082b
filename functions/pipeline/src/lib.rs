//! The pipeline stages of Stratus as plain async handlers over ports:
//! [`filter`] → [`route`] → [`deliver`] / `send` / [`archive`]. A handler
//! takes a job and the ports it needs and returns the jobs to enqueue next;
//! the same handler runs in the embedded [`runner`] inside `stratus serve`,
//! under AWS Lambda, and directly in tests.
//!
//! Every handler is idempotent, keyed by the queue id assigned when the
//! gateway accepted the message (plus recipient and stage), so a job
//! delivered twice changes nothing the second time.

pub mod archive;
mod bounce;
pub mod deliver;
pub mod filter;
pub mod lists;
pub mod route;
pub mod runner;
pub mod send;
pub mod sieve;
pub mod spam;
pub mod tlsrpt;

use std::sync::Arc;

use stratus_core::accounts::AccountError;
use stratus_core::job::Job;
use stratus_core::ports::{ChangeFeed, Transport};
use stratus_core::{BlobStore, Index, StoreError};

/// The ports the stages use.
#[derive(Debug, Clone)]
pub struct Ports {
    /// Message bodies.
    pub blobs: Arc<dyn BlobStore>,
    /// The compliance journal (Object Lock on AWS).
    pub archive: Arc<dyn BlobStore>,
    pub index: Arc<dyn Index>,
    /// Told of every mailbox change a delivery commits.
    pub changes: Arc<dyn ChangeFeed>,
}

/// Settings the stages share.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The authserv-id of Authentication-Results and the host in logs.
    pub hostname: String,
    /// How long a job the embedded runner took stays hidden from other
    /// consumers; after a crash, it comes back when this ends.
    pub visibility: std::time::Duration,
    /// Spam scoring of mail from outside (`None`: off).
    pub spam: Option<Arc<spam::SpamEngine>>,
    /// Days a quarantined message is kept before the sweeper deletes it.
    pub quarantine_days: u32,
    /// How the send stage reaches other servers (`None`: send jobs wait).
    pub transport: Option<Arc<dyn Transport>>,
    /// How long the send stage keeps retrying a message before it bounces.
    pub send_lifetime: std::time::Duration,
    /// The delay before the first retry; later ones grow from it.
    pub first_retry: std::time::Duration,
    /// How old a message still being retried is when its sender gets a
    /// "delayed" DSN (`None`: never).
    pub delay_warning: Option<std::time::Duration>,
    /// A user's sending allowance per hour (as for submission): Sieve
    /// redirects count against it.
    pub max_per_hour: u32,
    /// Whether the embedded runner runs the route, deliver and archive jobs
    /// a handler returns straight away, in the same task, instead of
    /// through their queues (see [`runner`]). `stratus serve` turns it on
    /// for the embedded backend; on AWS every stage is its own function.
    pub chain: bool,
}

impl Settings {
    pub fn new(hostname: impl Into<String>) -> Self {
        Settings {
            hostname: hostname.into(),
            visibility: runner::VISIBILITY,
            spam: None,
            quarantine_days: 30,
            transport: None,
            send_lifetime: std::time::Duration::from_secs(5 * 24 * 3600),
            first_retry: std::time::Duration::from_secs(60),
            delay_warning: Some(std::time::Duration::from_secs(4 * 3600)),
            max_per_hour: 500,
            chain: false,
        }
    }
}

/// Why a handler failed: `Retryable` jobs come back later (with backoff);
/// `Permanent` ones end in the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            HandlerError::Retryable(e.to_string())
        } else {
            HandlerError::Permanent(e.to_string())
        }
    }
}

impl From<AccountError> for HandlerError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(s) => s.into(),
            other => HandlerError::Permanent(other.to_string()),
        }
    }
}

pub type HandlerResult = Result<Vec<Job>, HandlerError>;

/// Runs the stage a job belongs to.
pub async fn handle(job: Job, ports: &Ports, settings: &Settings) -> HandlerResult {
    let stage = match &job {
        Job::Learn { .. } => "learn",
        other => other.queue().as_str(),
    };
    // A job not due yet is only passed on: not a run of its stage.
    let waiting = !job.delay(stratus_core::mailstore::now()).is_zero();
    let started = std::time::Instant::now();
    let result = dispatch(job, ports, settings).await;
    if waiting {
        return result;
    }
    let outcome = match &result {
        Ok(_) => "ok",
        Err(HandlerError::Retryable(_)) => "retry",
        Err(HandlerError::Permanent(_)) => "failed",
    };
    stratus_core::metrics::metrics().stage_job(stage, outcome, started.elapsed());
    result
}

async fn dispatch(job: Job, ports: &Ports, settings: &Settings) -> HandlerResult {
    match job {
        Job::Inbound(message) => filter::handle(message, ports, settings).await,
        Job::Route { message, verdict } => route::handle(message, verdict, ports, settings).await,
        Job::Deliver {
            message,
            recipient,
            mailbox,
            attempt,
            not_before,
            filed,
        } => {
            let delivery = deliver::Delivery {
                message,
                recipient,
                mailbox,
                attempt,
                not_before,
                filed,
            };
            deliver::handle(delivery, ports, settings).await
        }
        Job::Archive(message) => archive::handle(message, ports).await,
        Job::Learn {
            account,
            bodies,
            spam,
        } => {
            if settings.spam.is_some() {
                let learnt = spam::learn(&account, &bodies, spam, ports).await?;
                tracing::info!(%account, learnt, of = bodies.len(), spam, "spam model taught");
            }
            Ok(Vec::new())
        }
        send @ Job::Send { .. } => match send::SendJob::of(send) {
            Some(job) => send::run(job, ports, settings).await,
            None => Ok(Vec::new()),
        },
    }
}

/// Ports on the embedded stores in `dir`, and their queue, for tests.
#[cfg(test)]
pub(crate) fn test_ports(dir: &std::path::Path) -> (Ports, stratus_store_local::SqliteQueue) {
    let stores = stratus_store_local::LocalStores::open(dir, 5).unwrap();
    let ports = Ports {
        blobs: Arc::new(stores.blobs),
        archive: Arc::new(stores.archive),
        index: Arc::new(stores.index),
        changes: Arc::new(stratus_core::ports::InProcessFeed::default()),
    };
    (ports, stores.queue)
}
