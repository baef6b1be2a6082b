//! Creates an isolated set of resources (bucket, table, queues with
//! dead-letter queues) for tests and development against an emulator. Real
//! deployments, and the emulator set-up of `localstack/`, use
//! `infra/template.yaml`; this mirrors the data-plane shape of that template
//! (key schema `pk`/`sk`, `<prefix><stage>` queues redriving to
//! `<prefix><stage>-dlq`), so each test can have resources of its own.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use stratus_core::StoreError;
use stratus_core::ports::QueueName;

use crate::AwsSettings;
use crate::sdk::{classify, code, dynamodb_client, load, s3_client};

/// Creates the resources named in `settings` if missing. Queues dead-letter
/// after `max_receives` receives.
pub async fn ensure(settings: &AwsSettings, max_receives: u32) -> Result<(), StoreError> {
    let config = load(settings).await;
    let s3 = s3_client(&config, settings);
    for bucket in [&settings.bucket, &settings.archive_bucket] {
        if bucket.is_empty() {
            continue;
        }
        if let Err(e) = s3.create_bucket().bucket(bucket).send().await
            && !code(&e).is_some_and(|c| c.starts_with("BucketAlready"))
        {
            return Err(classify("create bucket", e));
        }
    }

    let dynamo = dynamodb_client(&config, settings);
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let created = dynamo
        .create_table()
        .table_name(&settings.table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk").map_err(|e| StoreError::permanent("create table", e))?)
        .attribute_definitions(attr("sk").map_err(|e| StoreError::permanent("create table", e))?)
        .key_schema(key("pk", KeyType::Hash).map_err(|e| StoreError::permanent("create table", e))?)
        .key_schema(
            key("sk", KeyType::Range).map_err(|e| StoreError::permanent("create table", e))?,
        )
        .send()
        .await;
    if let Err(e) = created
        && code(&e) != Some("ResourceInUseException")
    {
        return Err(classify("create table", e));
    }

    let sqs = aws_sdk_sqs::Client::new(&config);
    for stage in QueueName::ALL {
        let dead_name = format!("{}{stage}-dlq", settings.queue_prefix);
        let dead = sqs
            .create_queue()
            .queue_name(&dead_name)
            .send()
            .await
            .map_err(|e| classify("create queue", e))?;
        let dead_url = dead.queue_url().unwrap_or_default().to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dead_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| classify("queue attributes", e))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| {
                StoreError::permanent("create queue", "dead-letter queue without an ARN")
            })?;
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max_receives}"}}"#);
        sqs.create_queue()
            .queue_name(format!("{}{stage}", settings.queue_prefix))
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, "60")
            .send()
            .await
            .map_err(|e| classify("create queue", e))?;
    }
    Ok(())
}
