//! The embedded runner: one consumer per stage queue inside `stratus serve`,
//! on either backend. A consumer receives a batch, runs the handler on each
//! job, enqueues what it returns, and only then acknowledges the job; a crash
//! anywhere in between means the job comes back and runs again, which the
//! handlers' idempotency makes harmless.
//!
//! With [`Settings::chain`] (the embedded backend), the route, deliver and
//! archive jobs a handler returns run at once in the same task, and so on
//! down the chain; only what does not chain (`send`) or what failed goes
//! through the queue, and the received job is acknowledged after all of
//! it. A crash before that ack runs the whole chain again, as it would run
//! a single stage again: the handlers are idempotent. One message then
//! costs the queue three writes (enqueue, receive, ack) instead of one
//! receive and one ack per stage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stratus_core::Queue;
use stratus_core::job::Job;
use stratus_core::ports::{Delivery, NewJob, QueueName};
use tokio::sync::watch;

use crate::{HandlerError, HandlerResult, Ports, Settings, handle};

/// The stages the embedded runner consumes. `send` has no handler yet.
pub const STAGES: [QueueName; 5] = [
    QueueName::Inbound,
    QueueName::Route,
    QueueName::Deliver,
    QueueName::Send,
    QueueName::Archive,
];

/// How long a received job stays hidden from other consumers, by default.
pub const VISIBILITY: Duration = Duration::from_secs(60);
/// How long one receive waits for work (an enqueue through the same queue
/// handle wakes it at once).
const WAIT: Duration = Duration::from_secs(1);

/// Delay before a job that failed for the `receive_count`-th time runs again:
/// 2, 4, 8 … seconds, at most 15 minutes.
pub fn backoff(receive_count: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(receive_count.clamp(1, 10)).min(900))
}

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    Done,
    Retry,
}

/// Runs one received job: handler (and, with [`Settings::chain`], the
/// chain of jobs it returns), then next jobs and ack. Failures put
/// the job back (permanent ones too: the queue's receive limit then moves it
/// to the dead-letter queue, as SQS with a redrive policy does under Lambda).
pub async fn process(
    queue: &dyn Queue,
    stage: QueueName,
    delivery: &Delivery,
    ports: &Ports,
    settings: &Settings,
) -> Processed {
    let received = tokio::time::Instant::now();
    let result = match Job::from_json(&delivery.body) {
        Ok(job) if job.queue() == stage => handle(job, ports, settings).await,
        Ok(job) => Err(HandlerError::Permanent(format!(
            "a {} job on the {stage} queue",
            job.queue()
        ))),
        Err(e) => Err(HandlerError::Permanent(format!("unreadable job: {e}"))),
    };
    let result = match result {
        Ok(next) if settings.chain => {
            Ok(run_chained(next, ports, settings, received + settings.visibility / 2).await)
        }
        Ok(next) => Ok(next.into_iter().map(|job| (job, Duration::ZERO)).collect()),
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(next) => {
            let now = stratus_core::mailstore::now();
            let next: Vec<NewJob> = next
                .iter()
                .map(|(job, retry_in)| NewJob {
                    queue: job.queue(),
                    body: job.to_json(),
                    delay: job.delay(now).max(*retry_in),
                })
                .collect();
            // On the embedded queue one transaction; elsewhere the sends,
            // then the ack. Either way a failure runs the job again.
            queue
                .send_and_ack(stage, &delivery.receipt, next)
                .await
                .map_err(HandlerError::from)
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => Processed::Done,
        Err(e) => {
            let delay = match e {
                HandlerError::Retryable(_) => backoff(delivery.receive_count),
                HandlerError::Permanent(_) => Duration::ZERO,
            };
            tracing::error!(%stage, job = %delivery.id, receives = delivery.receive_count, error = %e, retry_in = ?delay, "job failed");
            if let Err(e) = queue.retry_later(stage, &delivery.receipt, delay).await {
                tracing::warn!(%stage, job = %delivery.id, error = %e, "could not reschedule a failed job; it returns after its visibility timeout");
            }
            Processed::Retry
        }
    }
}

/// The stages whose jobs the runner runs as soon as a handler returns them,
/// when chaining: local work on the stores. `send` talks to other servers,
/// keeps its own retry schedule, and waits in its queue; so does a delivery
/// waiting for room in a mailbox.
fn chains(job: &Job) -> bool {
    matches!(
        job.queue(),
        QueueName::Route | QueueName::Deliver | QueueName::Archive
    ) && job.delay(stratus_core::mailstore::now()).is_zero()
}

/// At most this many jobs of one handler's output run chained; a bigger
/// fan-out (a large list) goes through the queue, whose consumers bound
/// how many run at once.
const MAX_FAN_OUT: usize = 16;

/// Runs the jobs that chain among `jobs`, side by side, and then the jobs
/// those return, until nothing chains. Returns the jobs left for the
/// queue, each with the delay before it may run: those that do not chain,
/// those whose handler failed or panicked (the queue runs them again, with
/// its backoff and dead-letter limit, as if they had failed there), and
/// those that would start after `deadline`: the chain must end well within
/// the received job's visibility timeout, or another consumer would take
/// that job again while this one still runs.
async fn run_chained(
    jobs: Vec<Job>,
    ports: &Ports,
    settings: &Settings,
    deadline: tokio::time::Instant,
) -> Vec<(Job, Duration)> {
    /// The handlers running, and the job each runs (to queue it again if
    /// its task panics).
    #[derive(Default)]
    struct Running {
        tasks: tokio::task::JoinSet<HandlerResult>,
        jobs: HashMap<tokio::task::Id, Job>,
    }
    let start = |jobs: Vec<Job>, running: &mut Running, queued: &mut Vec<(Job, Duration)>| {
        let fan_out = jobs.iter().filter(|job| chains(job)).count();
        let chain = fan_out <= MAX_FAN_OUT && tokio::time::Instant::now() < deadline;
        for job in jobs {
            if !(chain && chains(&job)) {
                queued.push((job, Duration::ZERO));
                continue;
            }
            let (ports, settings, run) = (ports.clone(), settings.clone(), job.clone());
            let task = running
                .tasks
                .spawn(async move { handle(run, &ports, &settings).await });
            running.jobs.insert(task.id(), job);
        }
    };
    let (mut running, mut queued) = (Running::default(), Vec::new());
    start(jobs, &mut running, &mut queued);
    while let Some(done) = running.tasks.join_next_with_id().await {
        let (id, result) = match done {
            Ok((id, result)) => (id, result),
            Err(e) => (
                e.id(),
                Err(HandlerError::Retryable(format!(
                    "the handler panicked: {e}"
                ))),
            ),
        };
        let Some(job) = running.jobs.remove(&id) else {
            continue;
        };
        match result {
            Ok(next) => start(next, &mut running, &mut queued),
            Err(e) => {
                let stage = job.queue();
                let retry_in = match e {
                    HandlerError::Retryable(_) => backoff(1),
                    HandlerError::Permanent(_) => Duration::ZERO,
                };
                let queue_id = job
                    .message()
                    .map(|m| m.queue_id.to_string())
                    .unwrap_or_default();
                tracing::warn!(%stage, %queue_id, error = %e, ?retry_in, "chained job failed; queued to run again");
                queued.push((job, retry_in));
            }
        }
    }
    queued
}

/// Consumes `stage` until `stop` turns true.
pub async fn run_stage(
    queue: Arc<dyn Queue>,
    stage: QueueName,
    ports: Ports,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let received = tokio::select! {
            r = queue.receive(stage, 10, settings.visibility, WAIT) => r,
            _ = stop.changed() => return,
        };
        match received {
            Ok(batch) => {
                // The jobs of a batch run side by side: handlers are
                // idempotent and wait mostly on storage, so one job's
                // fsync need not hold up the next.
                let mut running = tokio::task::JoinSet::new();
                for delivery in batch {
                    let (queue, ports, settings) = (queue.clone(), ports.clone(), settings.clone());
                    running.spawn(async move {
                        process(&*queue, stage, &delivery, &ports, &settings).await;
                    });
                }
                while let Some(done) = running.join_next().await {
                    if let Err(e) = done {
                        tracing::error!(%stage, error = %e, "a job's task failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%stage, error = %e, "receive failed; trying again shortly");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Consumers per stage: while one waits on its batch, another receives.
const CONSUMERS: usize = 2;

/// Consumers of `stage`. When chaining, the inbound queue's consumers do
/// the work of four stages, and a consumer waits for the slowest job of
/// its batch before it takes more: it gets as many consumers as the four
/// stages had together, so that as many messages are in the pipeline at
/// once as before and it keeps up with SMTP instead of building a backlog.
fn consumers(stage: QueueName, settings: &Settings) -> usize {
    match stage {
        QueueName::Inbound if settings.chain => 4 * CONSUMERS,
        _ => CONSUMERS,
    }
}

/// Starts consumers for every stage.
pub fn spawn_all(
    queue: Arc<dyn Queue>,
    ports: Ports,
    settings: Settings,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    STAGES
        .iter()
        .flat_map(|&stage| std::iter::repeat_n(stage, consumers(stage, &settings)))
        .map(|stage| {
            tokio::spawn(run_stage(
                queue.clone(),
                stage,
                ports.clone(),
                settings.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

/// Runs every stage until all queues are empty, for tests: no sleeping, no
/// background tasks. Returns how many jobs ran.
pub async fn drain(
    queue: &dyn Queue,
    ports: &Ports,
    settings: &Settings,
) -> Result<usize, stratus_core::StoreError> {
    let mut ran = 0;
    loop {
        let mut idle = true;
        for stage in STAGES {
            for delivery in queue
                .receive(stage, 10, settings.visibility, Duration::ZERO)
                .await?
            {
                idle = false;
                ran += 1;
                process(queue, stage, &delivery, ports, settings).await;
            }
        }
        if idle {
            return Ok(ran);
        }
    }
}
