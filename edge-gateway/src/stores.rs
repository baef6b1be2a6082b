//! The composition root of storage: the backend named in the [`Config`] is
//! turned into the three ports, once, and everything else sees only
//! `Arc<dyn BlobStore>`, `Arc<dyn Index>` and `Arc<dyn Queue>`.

use std::sync::Arc;

use stratus_core::accounts::Accounts;
use stratus_core::{BlobStore, Index, Queue, StoreError};
use stratus_store_aws::AwsStores;
use stratus_store_local::LocalStores;

use crate::config::{Backend, Config};

/// The three ports, whichever backend implements them.
#[derive(Debug, Clone)]
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    /// The compliance journal.
    pub archive: Arc<dyn BlobStore>,
    pub index: Arc<dyn Index>,
    pub queue: Arc<dyn Queue>,
}

impl Stores {
    /// Opens the backend the configuration names: the data directory
    /// (created if missing; its parent must exist) or the AWS resources.
    pub async fn open(config: &Config) -> Result<Stores, StoreError> {
        match &config.backend {
            Backend::Local => {
                let dir = config.data_dir.clone();
                let max_receives = config.max_receives;
                // Opening creates directories and SQLite schemas: blocking work.
                let local =
                    tokio::task::spawn_blocking(move || LocalStores::open(&dir, max_receives))
                        .await
                        .map_err(|e| StoreError::permanent("open local stores", e))??;
                Ok(Stores::from_local(local))
            }
            Backend::Aws(settings) => {
                let aws = AwsStores::connect(settings).await?;
                Ok(Stores {
                    blobs: Arc::new(aws.blobs),
                    archive: Arc::new(aws.archive),
                    index: Arc::new(aws.index),
                    queue: Arc::new(aws.queue),
                })
            }
        }
    }

    pub fn from_local(local: LocalStores) -> Stores {
        Stores {
            blobs: Arc::new(local.blobs),
            archive: Arc::new(local.archive),
            index: Arc::new(local.index),
            queue: Arc::new(local.queue),
        }
    }

    /// The ports the pipeline stages use.
    pub fn ports(&self) -> stratus_pipeline::Ports {
        stratus_pipeline::Ports {
            blobs: self.blobs.clone(),
            archive: self.archive.clone(),
            index: self.index.clone(),
        }
    }

    /// Domains, users and mailboxes over this index.
    pub fn accounts(&self) -> Accounts {
        Accounts::new(self.index.clone())
    }
}
