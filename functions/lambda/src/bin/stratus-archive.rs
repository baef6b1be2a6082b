//! Lambda bootstrap of the archive stage (queue `archive`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stratus_lambda::run(stratus_core::ports::QueueName::Archive).await
}
