//! Runs a pipeline stage as an AWS Lambda function fed by SQS. Each record of
//! the batch is one job: the stage's handler runs, the jobs it returns go to
//! their queues, and the record counts as done. A record that fails is
//! reported in `batchItemFailures` (the event source mapping uses
//! `ReportBatchItemFailures`), so SQS retries only that one and, past the
//! queue's receive limit, moves it to the dead-letter queue.
//!
//! The binaries in `src/bin/` are the bootstraps, one per stage.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use stratus_core::Queue;
use stratus_core::job::Job;
use stratus_core::ports::QueueName;
use stratus_pipeline::{HandlerError, Ports, Settings, handle};
use stratus_store_aws::{AwsSettings, AwsStores};

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

/// The whole bootstrap of a stage: clients built once at cold start, then
/// the runtime loop.
pub async fn run(stage: QueueName) -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let aws = AwsSettings::from_env(|k| std::env::var(k).ok());
    let stores = AwsStores::connect(&aws).await?;
    let ports = Ports {
        blobs: Arc::new(stores.blobs),
        archive: Arc::new(stores.archive),
        index: Arc::new(stores.index),
    };
    let hostname = std::env::var("STRATUS_HOSTNAME").unwrap_or_else(|_| "stratus".into());
    let mut settings = Settings::new(hostname.clone());
    if stage == QueueName::Send {
        // The same settings as the gateway's: STRATUS_DNS_RESOLVER and
        // STRATUS_OUTBOUND_SMTP_PORT.
        let dns = std::env::var("STRATUS_DNS_RESOLVER")
            .ok()
            .and_then(|v| v.parse().ok());
        let port = std::env::var("STRATUS_OUTBOUND_SMTP_PORT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(25);
        let transport = stratus_outbound::SmtpTransport::new(dns, port, &hostname)?
            .with_dkim(ports.index.clone());
        settings.transport = Some(Arc::new(transport));
        send_timing(&mut settings, |k| std::env::var(k).ok())?;
    }
    let queue = stores.queue;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (ports, settings, queue) = (&ports, &settings, &queue);
        async move { Ok::<_, Error>(handle_batch(event.payload, stage, ports, queue, settings).await) }
    }))
    .await
}

/// The send stage's timing from the gateway's settings of the same names:
/// STRATUS_SEND_LIFETIME, STRATUS_SEND_FIRST_RETRY (bare numbers are
/// seconds) and STRATUS_SEND_DELAY_WARNING (`off`: none).
fn send_timing(settings: &mut Settings, env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    let seconds = std::time::Duration::from_secs(1);
    let parse = |name: &str| -> Result<Option<std::time::Duration>, Error> {
        match env(name) {
            None => Ok(None),
            Some(v) => stratus_core::time::parse_duration(&v, seconds)
                .filter(|d| !d.is_zero())
                .map(Some)
                .ok_or_else(|| {
                    format!("{name}={v}: expected a duration such as 5d, 12h or 300").into()
                }),
        }
    };
    if let Some(d) = parse("STRATUS_SEND_LIFETIME")? {
        settings.send_lifetime = d;
    }
    if let Some(d) = parse("STRATUS_SEND_FIRST_RETRY")? {
        settings.first_retry = d;
    }
    if env("STRATUS_SEND_DELAY_WARNING").is_some_and(|v| stratus_core::time::is_off(&v)) {
        settings.delay_warning = None;
    } else if let Some(d) = parse("STRATUS_SEND_DELAY_WARNING")? {
        settings.delay_warning = Some(d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let mut settings = Settings::new("mx.test.example");
        send_timing(&mut settings, |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })?;
        Ok(settings)
    }

    #[test]
    fn send_timing_follows_the_gateway_settings() {
        let defaults = with(&[]).unwrap();
        assert_eq!(defaults.send_lifetime, Duration::from_secs(5 * 86_400));
        assert_eq!(defaults.delay_warning, Some(Duration::from_secs(4 * 3600)));
        let set = with(&[
            ("STRATUS_SEND_LIFETIME", "2d"),
            ("STRATUS_SEND_FIRST_RETRY", "30"),
            ("STRATUS_SEND_DELAY_WARNING", "off"),
        ])
        .unwrap();
        assert_eq!(set.send_lifetime, Duration::from_secs(2 * 86_400));
        assert_eq!(set.first_retry, Duration::from_secs(30));
        assert_eq!(set.delay_warning, None);
        let err = with(&[("STRATUS_SEND_LIFETIME", "forever")]).err().unwrap();
        assert!(err.to_string().contains("STRATUS_SEND_LIFETIME"), "{err}");
    }
}
