//! The queue port on SQS. Visibility timeouts, receive counts, redrive to the
//! dead-letter queue and delays are SQS's own; this adapter maps names to
//! queue URLs (looked up once) and SQS's whole-second granularity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use stratus_core::ports::{
    Delivery, Depth, Queue, QueueName, StoreError, StoreResult, validate_receive, validate_send,
};

use crate::sdk::{classify, code};

/// SQS long polling waits at most 20 seconds per call.
const MAX_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    prefix: String,
    urls: Arc<Mutex<HashMap<String, String>>>,
}

/// Whole seconds, rounded up (SQS takes integers).
fn secs(d: Duration) -> i32 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .min(i32::MAX as u64) as i32
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, prefix: String) -> Self {
        SqsQueue {
            client,
            prefix,
            urls: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The name of a stage queue (`dead` for its dead-letter queue).
    pub fn queue_name(&self, queue: QueueName, dead: bool) -> String {
        format!("{}{}{}", self.prefix, queue, if dead { "-dlq" } else { "" })
    }

    async fn url(&self, queue: QueueName, dead: bool) -> StoreResult<String> {
        let name = self.queue_name(queue, dead);
        if let Some(url) = self
            .urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Ok(url.clone());
        }
        let out = self.client.get_queue_url().queue_name(&name).send().await.map_err(|e| {
            if code(&e).is_some_and(|c| c.contains("NonExistentQueue")) {
                StoreError::permanent("sqs", format!("queue {name} does not exist (is the stack deployed and STRATUS_QUEUE_PREFIX right?)"))
            } else {
                classify("sqs get queue url", e)
            }
        })?;
        let url = out
            .queue_url()
            .ok_or_else(|| StoreError::retryable("sqs get queue url", "no URL in the reply"))?
            .to_string();
        self.urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, url.clone());
        Ok(url)
    }

    async fn take(
        &self,
        url: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max as i32)
            .visibility_timeout(secs(visibility))
            .wait_time_seconds(secs(wait.min(MAX_WAIT)))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify("sqs receive", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Delivery {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().as_bytes().to_vec(),
                    receive_count: count,
                })
            })
            .collect())
    }

    async fn delete(&self, url: &str, receipt: &str) -> StoreResult<()> {
        match self
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A stale receipt acks nothing, as on the embedded queue.
            Err(e) if code(&e).is_some_and(|c| c.contains("ReceiptHandleIsInvalid")) => Ok(()),
            Err(e) => Err(classify("sqs delete", e)),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: QueueName, body: &[u8], delay: Duration) -> StoreResult<()> {
        validate_send(body, delay)?;
        let url = self.url(queue, false).await?;
        let text = String::from_utf8_lossy(body).into_owned();
        self.client
            .send_message()
            .queue_url(url)
            .message_body(text)
            .delay_seconds(secs(delay))
            .send()
            .await
            .map_err(|e| classify("sqs send", e))?;
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
        let url = self.url(queue, false).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = self.take(&url, max, visibility, left).await?;
            if !got.is_empty() || left <= MAX_WAIT {
                return Ok(got);
            }
        }
    }

    async fn ack(&self, queue: QueueName, receipt: &str) -> StoreResult<()> {
        let url = self.url(queue, false).await?;
        self.delete(&url, receipt).await
    }

    async fn retry_later(
        &self,
        queue: QueueName,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()> {
        validate_receive(1, delay)?;
        let url = self.url(queue, false).await?;
        match self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(delay))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if code(&e).is_some_and(|c| {
                    c.contains("ReceiptHandleIsInvalid") || c.contains("MessageNotInflight")
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("sqs change visibility", e)),
        }
    }

    async fn receive_dead(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Delivery>> {
        validate_receive(max, visibility)?;
        let url = self.url(queue, true).await?;
        self.take(&url, max, visibility, Duration::ZERO).await
    }

    async fn ack_dead(&self, queue: QueueName, receipt: &str) -> StoreResult<()> {
        let url = self.url(queue, true).await?;
        self.delete(&url, receipt).await
    }

    async fn depth(&self, queue: QueueName) -> StoreResult<Depth> {
        let count = |attrs: Option<&HashMap<QueueAttributeName, String>>,
                     name: QueueAttributeName| {
            attrs
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let url = self.url(queue, false).await?;
        let main = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| classify("sqs attributes", e))?;
        let dead_url = self.url(queue, true).await?;
        let dead = self
            .client
            .get_queue_attributes()
            .queue_url(dead_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| classify("sqs attributes", e))?;
        Ok(Depth {
            visible: count(
                main.attributes(),
                QueueAttributeName::ApproximateNumberOfMessages,
            ),
            in_flight: count(
                main.attributes(),
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ),
            delayed: count(
                main.attributes(),
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ),
            dead: count(
                dead.attributes(),
                QueueAttributeName::ApproximateNumberOfMessages,
            ),
            // Not an SQS attribute; CloudWatch has it.
            oldest_ready: None,
        })
    }
}
