//! Small blobs in SQLite, beside the files of the blob store.
//!
//! A file costs a put two fsyncs of its own (the file, then its directory)
//! and several metadata operations; under SMTP load those were a third of
//! the gateway's CPU. Objects up to [`SMALL_MAX`] (most mail) go instead
//! into a table of one SQLite database per store, through its
//! group-committing writer: concurrent puts share one WAL fsync, and a put
//! is acknowledged only after its commit, as before. SQLite's own
//! measurements put reads and writes of blobs this size faster than
//! separate files. Bigger objects stay files.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{MAIN_DB, OptionalExtension, params};
use stratus_core::BlobKey;
use stratus_core::ports::{BlobMeta, StoreResult};

use crate::sqlite::{Db, map_err, run};

/// The largest object kept in the database.
pub const SMALL_MAX: usize = 128 * 1024;

/// The database's file name in the store's root. Blob keys cannot start
/// with `.tmp`, so it never collides with an object's file.
pub const DB_FILE: &str = ".tmp-objects.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    key TEXT NOT NULL PRIMARY KEY,
    body BLOB NOT NULL
);
";

#[derive(Debug, Clone)]
pub struct SmallObjects {
    db: Arc<Db>,
}

impl SmallObjects {
    pub fn open(path: &Path) -> StoreResult<Self> {
        Ok(SmallObjects {
            db: Db::open(path, SCHEMA)?,
        })
    }

    pub async fn put(&self, key: &BlobKey, body: Bytes) -> StoreResult<()> {
        let key = key.as_str().to_string();
        self.db
            .write("blob put", move |c| {
                c.prepare_cached(
                    "INSERT INTO objects (key, body) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET body = excluded.body",
                )
                .and_then(|mut s| s.execute(params![key, &body[..]]))
                .map(drop)
                .map_err(|e| map_err("blob put", e))
            })
            .await
    }

    /// The object's bytes in `range` (clamped as the port says), or
    /// `None` when it is not here. A range reads only the pages it covers.
    pub async fn get(
        &self,
        key: &BlobKey,
        range: Option<(u64, u64)>,
    ) -> StoreResult<Option<Bytes>> {
        let key = key.as_str().to_string();
        let op = "blob get";
        self.db
            .read_point(op, move |c| {
                let Some((start, end)) = range else {
                    return c
                        .prepare_cached("SELECT body FROM objects WHERE key = ?1")
                        .and_then(|mut s| {
                            s.query_row(params![key], |r| Ok(Bytes::from(r.get::<_, Vec<u8>>(0)?)))
                                .optional()
                        })
                        .map_err(|e| map_err(op, e));
                };
                // The row and its blob handle in one read transaction.
                run(c, "BEGIN").map_err(|e| map_err(op, e))?;
                let read = (|| {
                    let Some((rowid, size)) = c
                        .prepare_cached("SELECT rowid, length(body) FROM objects WHERE key = ?1")?
                        .query_row(params![key], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                        })
                        .optional()?
                    else {
                        return Ok(None);
                    };
                    let end = end.min(size as u64);
                    if start >= end {
                        return Ok(Some(Bytes::new()));
                    }
                    let blob = c.blob_open(MAIN_DB, c"objects", c"body", rowid, true)?;
                    let mut buf = vec![0u8; (end - start) as usize];
                    blob.read_at_exact(&mut buf, start as usize)?;
                    Ok(Some(Bytes::from(buf)))
                })();
                let _ = run(c, "COMMIT");
                read.map_err(|e: rusqlite::Error| map_err(op, e))
            })
            .await
    }

    /// Gives the space of deleted objects back (see [`crate::sqlite::Db::reclaim`]).
    pub async fn reclaim(&self) -> StoreResult<()> {
        self.db.reclaim().await
    }

    pub async fn head(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        let key = key.as_str().to_string();
        self.db
            .read_point("blob head", move |c| {
                c.prepare_cached("SELECT length(body) FROM objects WHERE key = ?1")
                    .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, i64>(0)).optional())
                    .map(|n| n.map(|n| n as u64))
                    .map_err(|e| map_err("blob head", e))
            })
            .await
    }

    pub async fn delete(&self, key: &BlobKey) -> StoreResult<()> {
        let key = key.as_str().to_string();
        self.db
            .write("blob delete", move |c| {
                c.prepare_cached("DELETE FROM objects WHERE key = ?1")
                    .and_then(|mut s| s.execute(params![key]))
                    .map(drop)
                    .map_err(|e| map_err("blob delete", e))
            })
            .await
    }

    /// Objects whose key starts with `prefix`, after `start_after`, in key
    /// order, at most `limit`.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<BlobMeta>> {
        let (prefix, after) = (prefix.to_string(), start_after.unwrap_or("").to_string());
        self.db
            .read("blob list", move |c| {
                let mut s = c
                    .prepare_cached(
                        "SELECT key, length(body) FROM objects
                         WHERE key >= ?1 AND key > ?2 ORDER BY key",
                    )
                    .map_err(|e| map_err("blob list", e))?;
                let rows = s
                    .query_map(params![prefix, after], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(|e| map_err("blob list", e))?;
                let mut out = Vec::new();
                for row in rows {
                    let (key, size) = row.map_err(|e| map_err("blob list", e))?;
                    if !key.starts_with(&prefix) || out.len() == limit {
                        break;
                    }
                    if let Ok(key) = BlobKey::parse(&key) {
                        out.push(BlobMeta {
                            key,
                            size: size as u64,
                        });
                    }
                }
                Ok(out)
            })
            .await
    }
}
