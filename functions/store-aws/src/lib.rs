//! AWS adapters for the Stratus ports: S3 (blob store), DynamoDB (index) and
//! SQS (queues). Endpoints are overridable, so the same code talks to AWS,
//! LocalStack, moto, MinIO or any other API-compatible engine.
//!
//! Layout: [`S3BlobStore`], [`DynamoIndex`], [`SqsQueue`], the shared SDK set-up
//! and error mapping (`sdk`), and [`provision`], which creates isolated
//! resources for tests and development (deployments use `infra/template.yaml`).

mod dynamo;
pub mod provision;
mod s3;
mod sdk;
mod sqs;

pub use dynamo::DynamoIndex;
pub use s3::S3BlobStore;
pub use sqs::SqsQueue;
use stratus_core::StoreError;

/// Where the AWS resources are. Each field maps onto one `STRATUS_*`
/// setting, read by `stratus-runtime`'s configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// `STRATUS_AWS_ENDPOINT`: one endpoint for S3, DynamoDB and SQS (emulators).
    pub endpoint: Option<String>,
    /// `STRATUS_DYNAMODB_ENDPOINT`: DynamoDB elsewhere than `endpoint` (the
    /// emulators run DynamoDB Local beside moto).
    pub dynamodb_endpoint: Option<String>,
    /// `AWS_REGION`.
    pub region: String,
    /// `STRATUS_S3_BUCKET`: message bodies.
    pub bucket: String,
    /// `STRATUS_ARCHIVE_BUCKET`: the compliance archive.
    pub archive_bucket: String,
    /// `STRATUS_DYNAMODB_TABLE`.
    pub table: String,
    /// `STRATUS_QUEUE_PREFIX`: queue `<prefix><stage>`, dead letters `<prefix><stage>-dlq`.
    pub queue_prefix: String,
}

/// The three AWS adapters, sharing one SDK configuration.
#[derive(Debug, Clone)]
pub struct AwsStores {
    pub blobs: S3BlobStore,
    pub archive: S3BlobStore,
    pub index: DynamoIndex,
    pub queue: SqsQueue,
}

impl AwsStores {
    /// Builds the clients (no request is made until first use).
    pub async fn connect(settings: &AwsSettings) -> Result<Self, StoreError> {
        for (name, value) in [
            ("STRATUS_S3_BUCKET", &settings.bucket),
            ("STRATUS_DYNAMODB_TABLE", &settings.table),
            ("AWS_REGION", &settings.region),
        ] {
            if value.is_empty() {
                return Err(StoreError::permanent(
                    "aws configuration",
                    format!("{name} is not set"),
                ));
            }
        }
        let config = sdk::load(settings).await;
        let s3 = sdk::s3_client(&config, settings);
        Ok(AwsStores {
            blobs: S3BlobStore::new(s3.clone(), settings.bucket.clone()),
            archive: S3BlobStore::new(s3, settings.archive_bucket.clone()),
            index: DynamoIndex::new(
                sdk::dynamodb_client(&config, settings),
                settings.table.clone(),
            ),
            queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(&config),
                settings.queue_prefix.clone(),
            ),
        })
    }
}
