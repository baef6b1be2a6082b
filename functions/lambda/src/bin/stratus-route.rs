//! Lambda bootstrap of the route stage (queue `route`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stratus_lambda::run(stratus_core::ports::QueueName::Route).await
}
