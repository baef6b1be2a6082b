//! SDK set-up (ring-only rustls, endpoint override) and the mapping of SDK
//! errors onto the port's `Retryable` / `Permanent`.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use stratus_core::StoreError;

use crate::AwsSettings;

pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(settings.region.clone()));
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

pub fn s3_client(config: &SdkConfig, settings: &AwsSettings) -> aws_sdk_s3::Client {
    // Emulators and most S3-compatible engines want path-style addressing.
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(settings.endpoint.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

pub fn dynamodb_client(config: &SdkConfig, settings: &AwsSettings) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(config);
    if let Some(endpoint) = &settings.dynamodb_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// Error codes that mean "try again later" whatever the HTTP status says.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "SlowDown",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",
    "KMS.ThrottlingException",
];

/// Network trouble, timeouts, throttling and 5xx are retryable; anything
/// else the service refused is permanent.
pub fn classify<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            status >= 500
                || status == 429
                || e.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c))
        }
        _ => false,
    };
    let reason = DisplayErrorContext(&err).to_string();
    if retryable {
        StoreError::retryable(op, reason)
    } else {
        StoreError::permanent(op, reason)
    }
}

/// The service's error code, if the error came from the service.
pub fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The HTTP status, if the service answered.
pub fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
        _ => None,
    }
}
