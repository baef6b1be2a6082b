//! Lambda bootstrap of the sweeper, run on a schedule (EventBridge).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stratus_lambda::run_sweep().await
}
