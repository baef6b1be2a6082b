//! Shared SQLite plumbing: connection set-up and error mapping.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use stratus_core::StoreError;

/// Maps a SQLite error to the port's error kinds: contention, a full disk
/// and I/O trouble can clear up; a corrupt file or a bad statement cannot.
pub fn map_err(op: &'static str, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::OutOfMemory => StoreError::retryable(op, e),
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => StoreError::permanent(
                op,
                format!("{e} (the database file is corrupt or not a SQLite database)"),
            ),
            ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => {
                StoreError::permanent(op, e)
            }
            _ => StoreError::permanent(op, e),
        },
        _ => StoreError::permanent(op, e),
    }
}

/// Opens a database in WAL mode with full fsync on commit: a job or index
/// entry the caller was told about survives a crash or power loss.
pub fn open(path: &Path, schema: &str) -> Result<Arc<Mutex<Connection>>, StoreError> {
    let op = "open database";
    let conn = Connection::open(path)
        .map_err(|e| StoreError::permanent(op, format!("{}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| map_err(op, e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
        .and_then(|_| conn.execute_batch(schema))
        .map_err(|e| {
            let err = map_err(op, e);
            StoreError::permanent(op, format!("{}: {err}", path.display()))
        })?;
    Ok(Arc::new(Mutex::new(conn)))
}

/// Runs `f` on the connection on a blocking thread.
pub async fn with_conn<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    op: &'static str,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| StoreError::retryable(op, format!("worker thread failed: {e}")))?
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
