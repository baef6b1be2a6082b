//! Lambda bootstrap of the send stage (queue `send`): delivery to other
//! mail servers.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stratus_lambda::run(stratus_core::ports::QueueName::Send).await
}
