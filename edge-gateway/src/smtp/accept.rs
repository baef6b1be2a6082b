//! Durable acceptance (DESIGN.md invariant 1): the body goes to the blob
//! store, then the job to the `inbound` queue, and only then may the
//! session say 250. Nothing half-done becomes a job: when the enqueue
//! fails, the body is deleted again (best effort; an orphan body without a
//! job is harmless and left to a sweeper, a job without its body is not).

use bytes::Bytes;
use stratus_core::StoreError;
use stratus_core::job::{Accepted, Job};
use stratus_core::ports::QueueName;
use tracing::warn;

use stratus_runtime::Stores;

/// Stores `body` under `accepted.body` and enqueues the inbound job.
pub async fn accept(stores: &Stores, accepted: Accepted, body: Bytes) -> Result<(), StoreError> {
    stores.blobs.put(&accepted.body, body).await?;
    let key = accepted.body.clone();
    let job = Job::Inbound(accepted).to_json();
    if let Err(e) = stores
        .queue
        .send(QueueName::Inbound, &job, std::time::Duration::ZERO)
        .await
    {
        if let Err(cleanup) = stores.blobs.delete(&key).await {
            warn!(blob = %key, error = %cleanup, "cannot remove the body of a message that was not enqueued");
        }
        return Err(e);
    }
    Ok(())
}
