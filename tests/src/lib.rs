//! Harness of the end-to-end tests: backends to run the port contract suites
//! on, the suites themselves ([`contract`]), and helpers that drive the
//! `stratus` binary as a user would.
//!
//! The AWS backend needs the emulators of `localstack/` (the test command
//! starts them and exports `STRATUS_AWS_ENDPOINT`). When that variable is
//! missing, AWS tests are skipped with a message, unless
//! `STRATUS_TEST_REQUIRE_AWS=1`, which the test command sets, turns the skip
//! into a failure.

pub mod accounts;
pub mod admin_ui;
pub mod chaos;
pub mod cli;
pub mod contract;
pub mod forwarding;
pub mod imap;
pub mod jmap;
pub mod lambda;
pub mod lists;
pub mod managesieve;
pub mod outbound;
pub mod pop3;
pub mod sieve;
pub mod smtp;
pub mod spam;
pub mod webmail;

use std::sync::Arc;

use stratus_core::ids::random_hex;
use stratus_core::ports::{ChangeFeed, InProcessFeed};
use stratus_core::{BlobStore, Index, Queue};
use stratus_store_aws::{AwsSettings, AwsStores};
use stratus_store_local::LocalStores;
use tempfile::TempDir;

/// One set of adapters, isolated from every other test.
pub struct Backend {
    pub name: &'static str,
    pub blobs: Arc<dyn BlobStore>,
    pub archive: Arc<dyn BlobStore>,
    pub index: Arc<dyn Index>,
    pub queue: Arc<dyn Queue>,
    pub changes: Arc<dyn ChangeFeed>,
    /// Reopens the queue as a restarted process would (embedded backend only).
    pub reopen_queue: Option<Box<dyn Fn() -> Arc<dyn Queue> + Send + Sync>>,
    _dir: Option<TempDir>,
}

impl Backend {
    pub fn from_aws(stores: AwsStores) -> Backend {
        Backend {
            name: "aws",
            blobs: Arc::new(stores.blobs),
            archive: Arc::new(stores.archive),
            index: Arc::new(stores.index),
            queue: Arc::new(stores.queue),
            changes: Arc::new(InProcessFeed::default()),
            reopen_queue: None,
            _dir: None,
        }
    }

    /// The ports the pipeline stages use.
    pub fn ports(&self) -> stratus_pipeline::Ports {
        stratus_pipeline::Ports {
            blobs: self.blobs.clone(),
            archive: self.archive.clone(),
            index: self.index.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Embedded adapters in a fresh temporary data directory.
pub fn local(max_receives: u32) -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let stores = LocalStores::open(&data, max_receives).expect("open local stores");
    let queue_path = data.join("queue.db");
    Backend {
        name: "local",
        blobs: Arc::new(stores.blobs),
        archive: Arc::new(stores.archive),
        index: Arc::new(stores.index),
        queue: Arc::new(stores.queue),
        changes: Arc::new(InProcessFeed::default()),
        reopen_queue: Some(Box::new(move || {
            Arc::new(
                stratus_store_local::SqliteQueue::open(&queue_path, max_receives)
                    .expect("reopen queue"),
            ) as Arc<dyn Queue>
        })),
        _dir: Some(dir),
    }
}

/// The emulator's settings with a fresh resource prefix, or `None` (after
/// saying why) when no emulator is configured and none is required.
pub fn aws_settings() -> Option<AwsSettings> {
    let Ok(endpoint) = std::env::var("STRATUS_AWS_ENDPOINT") else {
        if std::env::var("STRATUS_TEST_REQUIRE_AWS").as_deref() == Ok("1") {
            panic!(
                "STRATUS_TEST_REQUIRE_AWS=1 but STRATUS_AWS_ENDPOINT is not set: start the emulators with localstack/up.sh"
            );
        }
        eprintln!(
            "skipped: STRATUS_AWS_ENDPOINT is not set (run the whole suite with tests/run.sh)"
        );
        return None;
    };
    let prefix = format!("t{}", random_hex(5));
    Some(AwsSettings {
        endpoint: Some(endpoint),
        dynamodb_endpoint: std::env::var("STRATUS_DYNAMODB_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        bucket: format!("{prefix}-messages"),
        archive_bucket: format!("{prefix}-archive"),
        table: format!("{prefix}-index"),
        queue_prefix: format!("{prefix}-"),
    })
}

/// AWS adapters on freshly created emulator resources.
pub async fn aws(max_receives: u32) -> Option<Backend> {
    let settings = aws_settings()?;
    stratus_store_aws::provision::ensure(&settings, max_receives)
        .await
        .expect("provision emulator resources");
    let stores = AwsStores::connect(&settings)
        .await
        .expect("connect to the emulator");
    Some(Backend {
        name: "aws",
        blobs: Arc::new(stores.blobs),
        archive: Arc::new(stores.archive),
        index: Arc::new(stores.index),
        queue: Arc::new(stores.queue),
        changes: Arc::new(InProcessFeed::default()),
        reopen_queue: None,
        _dir: None,
    })
}

/// Polls `check` until it returns `Some`, or fails after `limit`. Waiting is
/// bounded and driven by the condition, never a fixed sleep.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
