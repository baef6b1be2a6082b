//! Lambda bootstrap of the filter stage (queue `inbound`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stratus_lambda::run(stratus_core::ports::QueueName::Inbound).await
}
