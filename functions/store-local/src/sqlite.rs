//! Shared SQLite plumbing: connection set-up, error mapping, and the
//! [`Db`] handle that every embedded store goes through.
//!
//! A [`Db`] has one writer connection, owned by a thread of its own, and a
//! few reader connections. Writes are **group-committed**: the writer takes
//! every write waiting when it is free, runs each inside a savepoint of one
//! transaction, and commits them together, so one WAL fsync serves many
//! callers. A write's result reaches its caller only after that commit,
//! so "acknowledged means durable" (`synchronous=FULL`) still holds. A
//! write that fails rolls back to its savepoint and fails alone. Reads run
//! on the reader connections, beside the writer, as WAL mode allows: a
//! read never waits for a commit's fsync.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use stratus_core::StoreError;
use tokio::sync::oneshot;

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

/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many writes one commit takes at most.
const MAX_GROUP: usize = 128;
/// Reader connections per database.
const READERS: usize = 4;

/// A write waiting for the writer: it runs on the writer's connection
/// inside the open transaction (or learns that none could be opened) and
/// returns how to answer its caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// One SQLite database: a group-committing writer and a pool of readers.
#[derive(Debug)]
pub struct Db {
    writer: mpsc::Sender<Job>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next: AtomicUsize,
    /// The file, for [`Db::reclaim`]'s own connection.
    path: std::path::PathBuf,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let op = "open database";
    let conn = Connection::open(path)
        .map_err(|e| StoreError::permanent(op, format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| map_err(op, e))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Db {
    /// Opens a database in WAL mode with full fsync on commit: a job or
    /// index entry the caller was told about survives a crash or power loss.
    pub fn open(path: &Path, schema: &str) -> Result<Arc<Db>, StoreError> {
        let op = "open database";
        let conn = connect(path)?;
        // Before any table exists (a new file), so that deleted pages can
        // be given back without rewriting the file; see [`Db::reclaim`].
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| conn.execute_batch(schema))
            .map_err(|e| {
                let err = map_err(op, e);
                StoreError::permanent(op, format!("{}: {err}", path.display()))
            })?;
        let readers = (0..READERS)
            .map(|_| connect(path).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(&conn, &rx))
            .map_err(|e| StoreError::permanent(op, format!("cannot start the writer: {e}")))?;
        Ok(Arc::new(Db {
            writer: tx,
            readers,
            next: AtomicUsize::new(0),
            path: path.to_path_buf(),
        }))
    }

    /// Gives the pages of deleted rows back to the file system: SQLite's
    /// incremental vacuum, then a checkpoint that truncates the WAL. A
    /// database made before auto-vacuum was turned on is converted once,
    /// by a full VACUUM. Runs on a connection of its own, so group commits
    /// go on meanwhile (a VACUUM makes them wait).
    pub async fn reclaim(&self) -> Result<(), StoreError> {
        let op = "reclaim space";
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = connect(&path)?;
            let mode: i64 = conn
                .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
                .map_err(|e| map_err(op, e))?;
            if mode != 2 {
                conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                    .and_then(|_| conn.execute_batch("VACUUM"))
                    .map_err(|e| map_err(op, e))?;
            }
            // Each step of incremental_vacuum frees one page: step it to
            // the end (a batch would run it once).
            let vacuum = |conn: &Connection| -> rusqlite::Result<()> {
                let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                Ok(())
            };
            vacuum(&conn)
                .and_then(|_| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
                .map_err(|e| map_err(op, e))
        })
        .await
        .map_err(|e| StoreError::retryable(op, format!("worker thread failed: {e}")))?
    }

    /// Runs `f` on a reader connection, on a blocking thread. Each
    /// statement sees every write committed before it started.
    pub async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self
            .readers
            .iter()
            .find(|c| c.try_lock().is_ok())
            .unwrap_or_else(|| {
                &self.readers[self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len()]
            })
            .clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::retryable(op, format!("worker thread failed: {e}")))?
    }

    /// Runs a read of a few pages (a primary-key lookup) on the calling
    /// thread when a reader connection is free, else as [`Db::read`] does.
    /// Such a read takes microseconds when its pages are cached, less than
    /// handing it to a blocking thread and back. Inline it never waits for
    /// a lock: if another connection holds one (WAL recovery, say), or the
    /// read fails in a way worth retrying, it runs again on a blocking
    /// thread, with the usual timeout.
    pub async fn read_point<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self.read_inline(&f) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) if !e.is_retryable() => Err(e),
            _ => self.read(op, move |c| f(c)).await,
        }
    }

    fn read_inline<T>(
        &self,
        f: &impl Fn(&Connection) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let conn = self.readers.iter().find_map(|c| c.try_lock().ok())?;
        let _ = conn.busy_timeout(Duration::ZERO);
        let result = f(&conn);
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        Some(result)
    }

    /// Runs `f` on the writer connection inside a transaction (its own
    /// savepoint of a group commit) and answers once that transaction is
    /// committed. When `f` fails, its writes are rolled back and the rest
    /// of the group is unaffected.
    pub async fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn: Result<&Connection, &StoreError>| {
            let result = match conn {
                Ok(conn) => in_savepoint(conn, op, f),
                Err(e) => Err(StoreError::retryable(op, e)),
            };
            Box::new(move |commit: Option<&StoreError>| {
                let answer = match (commit, result) {
                    (Some(e), Ok(_)) => Err(StoreError::retryable(op, e)),
                    (_, result) => result,
                };
                let _ = tx.send(answer);
            })
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::retryable(op, "the database writer has stopped"))?;
        rx.await
            .map_err(|_| StoreError::retryable(op, "the database writer failed"))?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    op: &'static str,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run(conn, "SAVEPOINT job").map_err(|e| map_err(op, e))?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(StoreError::permanent(op, "the write panicked")));
    let end = match result {
        Ok(_) => run(conn, "RELEASE job"),
        Err(_) => run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job")),
    };
    match end {
        Ok(()) => result,
        Err(e) => Err(map_err(op, e)),
    }
}

/// Runs one statement without parameters, prepared once per connection:
/// the writer runs these for every write.
pub(crate) fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread: one transaction per group of waiting writes, until
/// every handle is gone.
fn write_loop(conn: &Connection, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let op = "database commit";
        if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
            let err = map_err(op, e);
            tracing::warn!(error = %err, writes = group.len(), "database write could not begin");
            for job in group {
                job(Err(&err))(None);
            }
            continue;
        }
        let replies: Vec<Reply> = group.into_iter().map(|job| job(Ok(conn))).collect();
        let commit = run(conn, "COMMIT").map_err(|e| {
            let _ = run(conn, "ROLLBACK");
            map_err(op, e)
        });
        let failed = commit.as_ref().err();
        if let Some(e) = failed {
            tracing::warn!(error = %e, writes = replies.len(), "database commit failed");
        }
        for reply in replies {
            reply(failed);
        }
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    fn db() -> (Arc<Db>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "stratus-sqlite-{}",
            stratus_core::ids::random_hex(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(
            &dir.join("t.db"),
            "CREATE TABLE IF NOT EXISTS t (n INTEGER);",
        )
        .unwrap();
        (db, dir)
    }

    #[tokio::test]
    async fn a_point_read_retries_off_the_runtime_only_when_worth_it() {
        let (db, dir) = db();
        db.write("insert", |c| {
            c.execute("INSERT INTO t (n) VALUES (7)", [])
                .map_err(|e| map_err("insert", e))
        })
        .await
        .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let n = db
            .read_point("read", move |c| {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(StoreError::retryable("read", "busy"));
                }
                c.query_row("SELECT n FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(|e| map_err("read", e))
            })
            .await
            .unwrap();
        assert_eq!((n, calls.load(Ordering::SeqCst)), (7, 2));

        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let err = db
            .read_point("read", move |_| -> Result<(), StoreError> {
                seen.fetch_add(1, Ordering::SeqCst);
                Err(StoreError::permanent("read", "bad statement"))
            })
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a permanent error is not retried"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_point_read_waits_for_a_reader_when_all_are_busy() {
        let (db, dir) = db();
        let held: Vec<_> = db.readers.iter().map(|c| c.lock().unwrap()).collect();
        let task = tokio::spawn({
            let db = db.clone();
            async move {
                db.read_point("read", |c| {
                    c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                        .map_err(|e| map_err("read", e))
                })
                .await
            }
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "no reader was free");
        drop(held);
        assert_eq!(task.await.unwrap().unwrap(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
