//! Store adapters that time each operation into
//! `stratus_store_operation_duration_seconds{backend, store, op}`: the
//! same figures for the embedded backend and for AWS, whatever the caller.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use stratus_core::ids::BlobKey;
use stratus_core::metrics::metrics;
use stratus_core::ports::{
    BlobMeta, BlobStore, Index, Item, Key, Outcome, SkRange, StoreResult, Write,
};

/// A blob store whose operations are timed.
#[derive(Debug)]
pub struct MeasuredBlobs {
    pub inner: Arc<dyn BlobStore>,
    pub backend: &'static str,
    /// `blob` (message bodies) or `archive`.
    pub store: &'static str,
}

/// An index whose operations are timed.
#[derive(Debug)]
pub struct MeasuredIndex {
    pub inner: Arc<dyn Index>,
    pub backend: &'static str,
}

async fn timed<T>(
    backend: &'static str,
    store: &'static str,
    op: &'static str,
    fut: impl Future<Output = T>,
) -> T {
    let started = Instant::now();
    let out = fut.await;
    metrics().store_op(backend, store, op, started.elapsed());
    out
}

#[async_trait]
impl BlobStore for MeasuredBlobs {
    async fn put(&self, key: &BlobKey, body: Bytes) -> StoreResult<()> {
        timed(self.backend, self.store, "put", self.inner.put(key, body)).await
    }
    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> StoreResult<Option<Bytes>> {
        timed(self.backend, self.store, "get", self.inner.get(key, range)).await
    }
    async fn head(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        timed(self.backend, self.store, "head", self.inner.head(key)).await
    }
    async fn delete(&self, key: &BlobKey) -> StoreResult<()> {
        timed(self.backend, self.store, "delete", self.inner.delete(key)).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&BlobKey>,
        limit: usize,
    ) -> StoreResult<Vec<BlobMeta>> {
        let list = self.inner.list(prefix, start_after, limit);
        timed(self.backend, self.store, "list", list).await
    }
    async fn reclaim(&self) -> StoreResult<()> {
        timed(self.backend, self.store, "reclaim", self.inner.reclaim()).await
    }
}

#[async_trait]
impl Index for MeasuredIndex {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        timed(self.backend, "index", "get", self.inner.get(key)).await
    }
    async fn query(
        &self,
        pk: &str,
        range: SkRange,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<Vec<Item>> {
        let query = self.inner.query(pk, range, limit, reverse);
        timed(self.backend, "index", "query", query).await
    }
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<Outcome> {
        timed(
            self.backend,
            "index",
            "transact",
            self.inner.transact(writes),
        )
        .await
    }
    async fn increment(&self, key: &Key, by: u64) -> StoreResult<u64> {
        timed(
            self.backend,
            "index",
            "increment",
            self.inner.increment(key, by),
        )
        .await
    }
    async fn counter(&self, key: &Key) -> StoreResult<u64> {
        timed(self.backend, "index", "counter", self.inner.counter(key)).await
    }
    async fn reclaim(&self) -> StoreResult<()> {
        timed(self.backend, "index", "reclaim", self.inner.reclaim()).await
    }
}

/// `blobs`, `archive` and `index` of one backend, timed.
pub fn measured(
    backend: &'static str,
    blobs: Arc<dyn BlobStore>,
    archive: Arc<dyn BlobStore>,
    index: Arc<dyn Index>,
) -> (Arc<dyn BlobStore>, Arc<dyn BlobStore>, Arc<dyn Index>) {
    (
        Arc::new(MeasuredBlobs {
            inner: blobs,
            backend,
            store: "blob",
        }),
        Arc::new(MeasuredBlobs {
            inner: archive,
            backend,
            store: "archive",
        }),
        Arc::new(MeasuredIndex {
            inner: index,
            backend,
        }),
    )
}
