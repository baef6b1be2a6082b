//! The queue port on SQLite, with SQS's semantics: a received job is hidden
//! for its visibility timeout and comes back if not acknowledged (also after
//! a crash, since the deadline is stored); a job received more than the limit
//! moves to the dead-letter queue on its next receive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use stratus_core::ids::random_hex;
use stratus_core::ports::{
    Delivery, Depth, NewJob, Queue, QueueName, StoreError, StoreResult, validate_receive,
    validate_send,
};
use tokio::sync::Notify;

use crate::sqlite::{Db, map_err, now_millis};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_receipt ON jobs (receipt);
";

/// How often a waiting `receive` looks again for jobs that another process
/// enqueued, or that became visible after a delay (jobs sent through this
/// handle wake it at once).
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Arc<Db>,
    max_receives: u32,
    /// One per queue, so that a send wakes only that queue's consumers.
    notify: Arc<[Notify; QueueName::ALL.len()]>,
}

fn dlq(queue: QueueName) -> String {
    format!("{queue}-dlq")
}

impl SqliteQueue {
    /// `max_receives`: a job received that many times without an ack goes to
    /// the dead-letter queue instead of being handed out again.
    pub fn open(path: &Path, max_receives: u32) -> StoreResult<Self> {
        Ok(SqliteQueue {
            db: Db::open(path, SCHEMA)?,
            max_receives: max_receives.max(1),
            notify: Arc::new(std::array::from_fn(|_| Notify::new())),
        })
    }

    fn notify(&self, queue: QueueName) -> &Notify {
        &self.notify[queue as usize]
    }

    /// Whether `queue` has a job to hand out, from a reader: an empty
    /// queue, the usual answer to a waiting consumer, costs no write.
    async fn has_visible(&self, queue: QueueName) -> StoreResult<bool> {
        self.db
            .read_point("queue receive", move |c| {
                c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = ?1 AND visible_at <= ?2)",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![queue.as_str(), now_millis()], |r| r.get(0))
                })
                .map_err(|e| map_err("queue receive", e))
            })
            .await
    }

    async fn take(
        &self,
        name: String,
        dead_letter_to: Option<String>,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        let max_receives = self.max_receives;
        self.db.write("queue receive", move |tx| {
            let op = "queue receive";
            let now = now_millis();
            let mut out = Vec::new();
            {
                let mut select = tx
                    .prepare_cached("SELECT id, body, receive_count FROM jobs WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id")
                    .map_err(|e| map_err(op, e))?;
                let rows = select
                    .query_map(params![name, now], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?)))
                    .map_err(|e| map_err(op, e))?
                    // No `LIMIT ?`: a bound LIMIT recompiles the statement
                    // on every call (see the index's query).
                    .take(max * 2)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| map_err(op, e))?;
                for (id, body, count) in rows {
                    if out.len() == max {
                        break;
                    }
                    if let Some(dead) = &dead_letter_to
                        && count >= max_receives as i64
                    {
                        tx.prepare_cached("UPDATE jobs SET queue = ?1, receive_count = 0, receipt = NULL, visible_at = ?2 WHERE id = ?3")
                            .and_then(|mut stmt| stmt.execute(params![dead, now, id]))
                            .map_err(|e| map_err(op, e))?;
                        tracing::warn!(queue = %name, job = id, receives = count, "job moved to the dead-letter queue");
                        continue;
                    }
                    let receipt = format!("{id}.{}", random_hex(12));
                    let visible_at = now + visibility.as_millis() as i64;
                    tx.prepare_cached("UPDATE jobs SET receive_count = receive_count + 1, receipt = ?1, visible_at = ?2 WHERE id = ?3")
                        .and_then(|mut stmt| stmt.execute(params![receipt, visible_at, id]))
                        .map_err(|e| map_err(op, e))?;
                    out.push(Delivery { id: id.to_string(), receipt, body, receive_count: count as u32 + 1 });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, name: String, receipt: &str) -> StoreResult<()> {
        let receipt = receipt.to_string();
        self.db
            .write("queue ack", move |c| remove(c, &name, &receipt).map(drop))
            .await
    }
}

fn insert(c: &Connection, queue: QueueName, body: &[u8], delay: Duration) -> StoreResult<()> {
    let now = now_millis();
    c.prepare_cached(
        "INSERT INTO jobs (queue, body, visible_at, enqueued_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            queue.as_str(),
            body,
            now + delay.as_millis() as i64,
            now
        ])
    })
    .map_err(|e| map_err("queue send", e))?;
    Ok(())
}

/// Removes a received job, and says whether it did: a stale receipt
/// removes nothing.
fn remove(c: &Connection, queue: &str, receipt: &str) -> StoreResult<usize> {
    c.prepare_cached("DELETE FROM jobs WHERE queue = ?1 AND receipt = ?2")
        .and_then(|mut stmt| stmt.execute(params![queue, receipt]))
        .map_err(|e| map_err("queue ack", e))
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: QueueName, body: &[u8], delay: Duration) -> StoreResult<()> {
        validate_send(body, delay)?;
        let body = body.to_vec();
        self.db
            .write("queue send", move |c| insert(c, queue, &body, delay))
            .await?;
        self.notify(queue).notify_waiters();
        Ok(())
    }

    /// One transaction: the next jobs and the ack commit together or not at
    /// all, so a stage's step happens exactly once. A stale receipt (the job
    /// came back after its visibility timeout and another consumer holds
    /// it) enqueues nothing and fails: the next jobs are that consumer's.
    async fn send_and_ack(
        &self,
        queue: QueueName,
        receipt: &str,
        next: Vec<NewJob>,
    ) -> StoreResult<()> {
        for job in &next {
            validate_send(&job.body, job.delay)?;
        }
        let woken: Vec<QueueName> = next.iter().map(|job| job.queue).collect();
        let (name, receipt, jobs) = (queue.as_str(), receipt.to_string(), next);
        self.db
            .write("queue ack", move |c| {
                for job in &jobs {
                    insert(c, job.queue, &job.body, job.delay)?;
                }
                if remove(c, name, &receipt)? == 0 {
                    // Rolls back the inserts with the rest of this write.
                    return Err(StoreError::permanent(
                        "queue ack",
                        "the job's receipt is stale: it was received again after its visibility timeout",
                    ));
                }
                Ok(())
            })
            .await?;
        for queue in woken {
            self.notify(queue).notify_waiters();
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        validate_receive(max, visibility)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify(queue).notified();
            let got = if self.has_visible(queue).await? {
                self.take(
                    queue.as_str().to_string(),
                    Some(dlq(queue)),
                    max,
                    visibility,
                )
                .await?
            } else {
                Vec::new()
            };
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout(POLL.min(deadline - now), notified).await;
        }
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> StoreResult<()> {
        self.delete(queue.as_str().to_string(), receipt).await
    }

    async fn retry_later(
        &self,
        queue: QueueName,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()> {
        validate_receive(1, delay)?;
        let receipt = receipt.to_string();
        self.db
            .write("queue retry", move |c| {
                c.prepare_cached(
                    "UPDATE jobs SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        now_millis() + delay.as_millis() as i64,
                        queue.as_str(),
                        receipt
                    ])
                })
                .map_err(|e| map_err("queue retry", e))?;
                Ok(())
            })
            .await
    }

    async fn receive_dead(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        validate_receive(max, visibility)?;
        self.take(dlq(queue), None, max, visibility).await
    }

    async fn ack_dead(&self, queue: QueueName, receipt: &str) -> StoreResult<()> {
        self.delete(dlq(queue), receipt).await
    }

    async fn depth(&self, queue: QueueName) -> StoreResult<Depth> {
        self.db
            .read("queue depth", move |c| {
                let now = now_millis();
                c.query_row(
                    "SELECT
                    COALESCE(SUM(queue = ?1 AND visible_at <= ?3), 0),
                    COALESCE(SUM(queue = ?1 AND visible_at > ?3 AND receipt IS NOT NULL), 0),
                    COALESCE(SUM(queue = ?1 AND visible_at > ?3 AND receipt IS NULL), 0),
                    COALESCE(SUM(queue = ?2), 0),
                    MIN(CASE WHEN queue = ?1 AND visible_at <= ?3 THEN visible_at END)
                 FROM jobs WHERE queue IN (?1, ?2)",
                    params![queue.as_str(), dlq(queue), now],
                    |r| {
                        let ready_since: Option<i64> = r.get(4)?;
                        Ok(Depth {
                            visible: r.get::<_, i64>(0)? as u64,
                            in_flight: r.get::<_, i64>(1)? as u64,
                            delayed: r.get::<_, i64>(2)? as u64,
                            dead: r.get::<_, i64>(3)? as u64,
                            // Nothing ready: nothing has waited.
                            oldest_ready: Some(Duration::from_millis(
                                ready_since.map_or(0, |t| now.saturating_sub(t).max(0) as u64),
                            )),
                        })
                    },
                )
                .map_err(|e| map_err("queue depth", e))
            })
            .await
    }
}
