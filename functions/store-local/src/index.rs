//! The index port on SQLite.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use stratus_core::ports::{
    Index, Item, Key, Outcome, SkRange, StoreResult, Write, validate_writes,
};

use crate::sqlite::{Db, map_err};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
";

#[derive(Debug, Clone)]
pub struct SqliteIndex {
    db: Arc<Db>,
}

impl SqliteIndex {
    pub fn open(path: &Path) -> StoreResult<Self> {
        Ok(SqliteIndex {
            db: Db::open(path, SCHEMA)?,
        })
    }
}

fn version_of(tx: &Connection, key: &Key) -> rusqlite::Result<Option<u64>> {
    tx.prepare_cached("SELECT version FROM items WHERE pk = ?1 AND sk = ?2")?
        .query_row(params![key.pk, key.sk], |r| r.get::<_, i64>(0))
        .optional()
        .map(|v| v.map(|v| v as u64))
}

/// The next sort key after every key that starts with `prefix`, for range scans.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // Skip the surrogate gap: U+D7FF is followed by U+E000.
        let code = if last as u32 == 0xD7FF {
            0xE000
        } else {
            last as u32 + 1
        };
        if let Some(next) = char::from_u32(code) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl Index for SqliteIndex {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        key.validate()?;
        let key = key.clone();
        self.db
            .read_point("index get", move |c| {
                c.prepare_cached("SELECT value, version FROM items WHERE pk = ?1 AND sk = ?2")
                    .and_then(|mut stmt| {
                        stmt.query_row(params![key.pk, key.sk], |r| {
                            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
                        })
                        .optional()
                    })
                    .map(|row| {
                        row.map(|(value, version)| Item {
                            key: key.clone(),
                            value,
                            version: version as u64,
                        })
                    })
                    .map_err(|e| map_err("index get", e))
            })
            .await
    }

    async fn query(
        &self,
        pk: &str,
        range: SkRange,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<Vec<Item>> {
        Key::new(pk, "x").validate()?;
        let pk = pk.to_string();
        self.db.read("index query", move |c| {
            let (lo, hi, hi_inclusive): (String, Option<String>, bool) = match range {
                SkRange::All => (String::new(), None, false),
                SkRange::Prefix(p) => {
                    let end = prefix_end(&p);
                    (p, end, false)
                }
                SkRange::Between(a, b) => (a, Some(b), true),
                SkRange::From(a) => (a, None, false),
            };
            let order = if reverse { "DESC" } else { "ASC" };
            let upper = match (&hi, hi_inclusive) {
                (None, _) => "",
                (Some(_), true) => "AND sk <= ?3",
                (Some(_), false) => "AND sk < ?3",
            };
            // No `LIMIT ?`: SQLite's planner looks at a bound LIMIT, so a
            // statement with one is recompiled on every call. Rows stream,
            // so taking `limit` of them stops the scan just as early.
            let sql = format!("SELECT sk, value, version FROM items WHERE pk = ?1 AND sk >= ?2 {upper} ORDER BY sk {order}");
            let params: Vec<String> = [Some(pk.clone()), Some(lo), hi].into_iter().flatten().collect();
            let mut stmt = c.prepare_cached(&sql).map_err(|e| map_err("index query", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    Ok(Item {
                        key: Key::new(pk.clone(), r.get::<_, String>(0)?),
                        value: r.get(1)?,
                        version: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(|e| map_err("index query", e))?;
            rows.take(limit)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| map_err("index query", e))
        })
        .await
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<Outcome> {
        validate_writes(&writes)?;
        self.db.write("index transact", move |tx| {
            let op = "index transact";
            let mut versions = Vec::with_capacity(writes.len());
            for w in &writes {
                let v = version_of(tx, w.key()).map_err(|e| map_err(op, e))?;
                if !w.condition().holds(v) {
                    return Ok(Outcome::Conflict); // nothing written yet
                }
                versions.push(v);
            }
            for (w, v) in writes.iter().zip(versions) {
                match w {
                    Write::Put { key, value, .. } => {
                        let next = v.unwrap_or(0) as i64 + 1;
                        tx.prepare_cached(
                            "INSERT INTO items (pk, sk, value, version) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (pk, sk) DO UPDATE SET value = excluded.value, version = excluded.version",
                        )
                        .and_then(|mut stmt| stmt.execute(params![key.pk, key.sk, value, next]))
                        .map_err(|e| map_err(op, e))?;
                    }
                    Write::Delete { key, .. } => {
                        tx.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
                            .and_then(|mut stmt| stmt.execute(params![key.pk, key.sk]))
                            .map_err(|e| map_err(op, e))?;
                    }
                    Write::Check { .. } => {}
                }
            }
            Ok(Outcome::Applied)
        })
        .await
    }

    async fn increment(&self, key: &Key, by: u64) -> StoreResult<u64> {
        key.validate()?;
        let key = key.clone();
        self.db
            .write("index increment", move |c| {
                c.prepare_cached(
                    "INSERT INTO counters (pk, sk, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pk, sk) DO UPDATE SET n = n + excluded.n RETURNING n",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![key.pk, key.sk, by as i64], |r| r.get::<_, i64>(0))
                })
                .map(|n| n as u64)
                .map_err(|e| map_err("index increment", e))
            })
            .await
    }

    async fn counter(&self, key: &Key) -> StoreResult<u64> {
        key.validate()?;
        let key = key.clone();
        self.db
            .read_point("index counter", move |c| {
                c.prepare_cached("SELECT n FROM counters WHERE pk = ?1 AND sk = ?2")
                    .and_then(|mut stmt| {
                        stmt.query_row(params![key.pk, key.sk], |r| r.get::<_, i64>(0))
                            .optional()
                    })
                    .map(|n| n.unwrap_or(0) as u64)
                    .map_err(|e| map_err("index counter", e))
            })
            .await
    }

    async fn reclaim(&self) -> StoreResult<()> {
        self.db.reclaim().await
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_string() {
        assert_eq!(prefix_end("uid#").as_deref(), Some("uid$"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
    }
}
