//! Embedded adapters for the Stratus ports, for one machine:
//! - [`FsBlobStore`]: message bodies up to 128 KiB in a SQLite table (one
//!   group-committed database per store), bigger ones as files, written to
//!   a temporary name, fsynced, then renamed into place, so no partial
//!   object is ever visible;
//! - [`SqliteIndex`]: the index in SQLite (WAL);
//! - [`SqliteQueue`]: the stage queues in SQLite (WAL), with visibility
//!   timeouts, receive counts, dead-lettering and delayed delivery.
//!
//! Several processes may open the same data directory at once (the admin
//! commands run while `stratus serve` does); SQLite's locking and the
//! rename-into-place of blobs keep them consistent.

mod blob;
mod index;
mod queue;
mod small;
mod sqlite;

use std::path::{Path, PathBuf};

pub use blob::FsBlobStore;
pub use index::SqliteIndex;
pub use queue::SqliteQueue;
use stratus_core::StoreError;

/// The three embedded adapters over one data directory.
#[derive(Debug)]
pub struct LocalStores {
    pub blobs: FsBlobStore,
    /// The compliance journal, apart from the bodies that mailboxes share.
    pub archive: FsBlobStore,
    pub index: SqliteIndex,
    pub queue: SqliteQueue,
}

/// Default receive count after which a job moves to the dead-letter queue.
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

impl LocalStores {
    /// Opens (creating when missing) the data directory and the stores in it.
    /// The directory's parent must exist: a typo in a path should not
    /// silently create a tree somewhere unexpected.
    pub fn open(data_dir: &Path, max_receives: u32) -> Result<Self, StoreError> {
        prepare_data_dir(data_dir)?;
        Ok(LocalStores {
            blobs: FsBlobStore::open(&data_dir.join("blobs"))?,
            archive: FsBlobStore::open(&data_dir.join("archive"))?,
            index: SqliteIndex::open(&data_dir.join("index.db"))?,
            queue: SqliteQueue::open(&data_dir.join("queue.db"), max_receives)?,
        })
    }
}

/// Creates the data directory if missing and checks it is a writable directory.
pub fn prepare_data_dir(dir: &Path) -> Result<PathBuf, StoreError> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(StoreError::permanent(
                "data directory",
                format!("{shown} exists and is not a directory"),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(|e| {
                StoreError::permanent(
                    "data directory",
                    format!("cannot create {shown}: {e} (its parent directory must exist)"),
                )
            })?;
        }
        Err(e) => {
            return Err(StoreError::permanent(
                "data directory",
                format!("cannot read {shown}: {e}"),
            ));
        }
    }
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            StoreError::permanent("data directory", format!("{shown} is not writable: {e}"))
        })?;
    Ok(dir.to_path_buf())
}
