//! The blob store port on S3. Bodies over 8 MiB go up as multipart uploads
//! (aborted on failure, so no orphaned parts pile up); either way the object
//! becomes visible only when complete.

use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use stratus_core::ids::BlobKey;
use stratus_core::ports::{BlobMeta, BlobStore, StoreError, StoreResult};

use crate::sdk::{classify, code, status};

/// Bodies larger than this are uploaded in parts of this size.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: String) -> Self {
        S3BlobStore { client, bucket }
    }

    async fn put_multipart(&self, key: &str, body: Bytes) -> StoreResult<()> {
        let op = "s3 multipart put";
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| StoreError::retryable(op, "no upload id in the reply"))?
            .to_string();
        let result = async {
            let mut parts = Vec::new();
            for (i, chunk) in body.chunks(MULTIPART_THRESHOLD).enumerate() {
                let number = i as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(body.slice_ref(chunk)))
                    .send()
                    .await
                    .map_err(|e| classify(op, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify(op, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Best effort; the bucket's lifecycle rule aborts what this misses.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &BlobKey, body: Bytes) -> StoreResult<()> {
        if body.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key.as_str(), body).await;
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify("s3 put", e))?;
        Ok(())
    }

    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> StoreResult<Option<Bytes>> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str());
        if let Some(r) = &range {
            if r.start >= r.end {
                return Ok(self.head(key).await?.map(|_| Bytes::new()));
            }
            request = request.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        match request.send().await {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::retryable("s3 get", e))?;
                Ok(Some(body.into_bytes()))
            }
            Err(e) if code(&e) == Some("NoSuchKey") => Ok(None),
            // A range starting past the end of an existing object.
            Err(e) if status(&e) == Some(416) || code(&e) == Some("InvalidRange") => {
                Ok(Some(Bytes::new()))
            }
            Err(e) => Err(classify("s3 get", e)),
        }
    }

    async fn head(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(classify("s3 head", e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> StoreResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| classify("s3 delete", e))?;
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&BlobKey>,
        limit: usize,
    ) -> StoreResult<Vec<BlobMeta>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < limit {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(|k| k.as_str().to_string()))
                .set_continuation_token(token.take())
                .max_keys((limit - out.len()).min(1000) as i32)
                .send()
                .await
                .map_err(|e| classify("s3 list", e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| BlobKey::parse(k).ok()) {
                    out.push(BlobMeta {
                        key,
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}
