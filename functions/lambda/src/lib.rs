//! Runs a pipeline stage as an AWS Lambda function fed by SQS. Each record of
//! the batch is one job: the stage's handler runs, the jobs it returns go to
//! their queues, and the record counts as done. A record that fails is
//! reported in `batchItemFailures` (the event source mapping uses
//! `ReportBatchItemFailures`), so SQS retries only that one and, past the
//! queue's receive limit, moves it to the dead-letter queue.
//!
//! The binaries in `src/bin/` are the bootstraps, one per stage, and the
//! sweeper's ([`run_sweep`]), which a schedule invokes.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use stratus_core::Queue;
use stratus_core::job::Job;
use stratus_core::ports::QueueName;
use stratus_pipeline::{HandlerError, Ports, Settings, handle};
use stratus_runtime::{Config, Flags, Stores};

/// Handles one SQS batch for `stage`.
pub async fn handle_batch(
    event: SqsEvent,
    stage: QueueName,
    ports: &Ports,
    queue: &dyn Queue,
    settings: &Settings,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let result = match Job::from_json(record.body.as_deref().unwrap_or_default().as_bytes()) {
            Ok(job) if job.queue() == stage => handle(job, ports, settings).await,
            Ok(job) => Err(HandlerError::Permanent(format!(
                "a {} job on the {stage} queue",
                job.queue()
            ))),
            Err(e) => Err(HandlerError::Permanent(format!("unreadable job: {e}"))),
        };
        let sent = match result {
            Ok(next) => {
                let mut sent = Ok(());
                for job in &next {
                    if let Err(e) = queue
                        .send(
                            job.queue(),
                            &job.to_json(),
                            job.delay(stratus_core::mailstore::now()),
                        )
                        .await
                    {
                        sent = Err(HandlerError::from(e));
                        break;
                    }
                }
                sent
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::error!(%stage, message_id = %id, error = %e, "record failed");
            response.add_failure(id);
        }
    }
    response
}

/// What every function does once, at cold start: JSON logs, the
/// configuration (the same `STRATUS_*` settings as `stratus serve`, on the
/// AWS backend) and the clients of the stores.
async fn cold_start() -> Result<(Config, Stores), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let mut flags = Flags::default();
    flags.set("backend", "aws");
    let config = Config::load(&flags)?;
    let stores = Stores::open(&config).await?;
    Ok((config, stores))
}

/// The sweeper's bootstrap: each invocation (whatever its event; the
/// template's schedule sends one an hour) runs one pass over the stores
/// (see [`stratus_core::sweep`]), queues the TLS reports that are due
/// (see [`stratus_pipeline::tlsrpt`]), and returns what the sweep did.
pub async fn run_sweep() -> Result<(), Error> {
    let (config, stores) = cold_start().await?;
    let settings = stratus_runtime::root::sweep_settings(&config);
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let (stores, config) = (&stores, &config);
        async move {
            let now = stratus_core::mailstore::now();
            let report =
                stratus_core::sweep::sweep(&stores.index, &stores.blobs, settings, now).await?;
            tracing::info!(?report, "swept");
            // Once an hour is often enough to send yesterday's reports.
            let which = stratus_pipeline::tlsrpt::Which::Due;
            match stratus_runtime::root::send_tls_reports(config, stores, which, now).await {
                Ok(run) => tracing::info!(
                    sent = run.sent.len(),
                    skipped = run.skipped.len(),
                    "TLS reports"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send TLS reports; the next run tries again")
                }
            }
            Ok::<_, Error>(report)
        }
    }))
    .await
}

/// The whole bootstrap of a stage: configuration and clients built once,
/// at cold start, by the composition root (the same `STRATUS_*` settings
/// as `stratus serve`, on the AWS backend), then the runtime loop.
pub async fn run(stage: QueueName) -> Result<(), Error> {
    let (config, stores) = cold_start().await?;
    let mut settings = stratus_runtime::stage_settings(&config, &stores)?;
    if stage != QueueName::Send {
        settings.transport = None;
    }
    let ports = stores.ports();
    let queue = stores.queue;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (ports, settings, queue) = (&ports, &settings, &queue);
        async move {
            Ok::<_, Error>(
                handle_batch(event.payload, stage, ports, queue.as_ref(), settings).await,
            )
        }
    }))
    .await
}
