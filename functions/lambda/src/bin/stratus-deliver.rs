//! Lambda bootstrap of the deliver stage (queue `deliver`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stratus_lambda::run(stratus_core::ports::QueueName::Deliver).await
}
