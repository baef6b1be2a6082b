//! The quarantine: list, show, release (delivered unchanged to the
//! recipients it was held for, once) and delete held messages.

use serde::Serialize;

use stratus_core::ids::QueueId;
use stratus_core::quarantine::{Held, QuarantineError};

use super::{Service, ServiceError, ServiceResult};

/// A held message as listed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HeldInfo {
    pub id: String,
    pub from: String,
    pub recipients: Vec<String>,
    pub reasons: String,
    pub held_at: i64,
    pub expires: i64,
    pub released_at: Option<i64>,
    pub size: u64,
}

impl From<&Held> for HeldInfo {
    fn from(h: &Held) -> Self {
        HeldInfo {
            id: h.message.queue_id.to_string(),
            from: h
                .message
                .envelope
                .mail_from
                .as_ref()
                .map_or_else(|| "<>".into(), ToString::to_string),
            recipients: h
                .recipients
                .iter()
                .map(|r| r.recipient.to_string())
                .chain(
                    h.forwards
                        .iter()
                        .map(|f| format!("{} (forward)", f.address)),
                )
                .collect(),
            reasons: h.reasons(),
            held_at: h.held_at,
            expires: h.expires,
            released_at: h.released_at,
            size: h.message.size,
        }
    }
}

impl From<QuarantineError> for ServiceError {
    fn from(e: QuarantineError) -> Self {
        let text = e.to_string();
        match e {
            QuarantineError::Unknown(_) => ServiceError::NotFound(text),
            QuarantineError::Released(_) => ServiceError::Conflict(text),
            QuarantineError::BodyMissing(_) => ServiceError::Internal(text),
            QuarantineError::Store(s) if s.is_retryable() => ServiceError::Unavailable(text),
            QuarantineError::Store(_) => ServiceError::Internal(text),
        }
    }
}

/// A quarantine id as given.
pub fn parse_held_id(input: &str) -> ServiceResult<QueueId> {
    QueueId::parse(input).map_err(|e| ServiceError::Invalid(e.to_string()))
}

impl Service {
    pub async fn list_held(&self) -> ServiceResult<Vec<HeldInfo>> {
        Ok(self
            .quarantine
            .list()
            .await?
            .iter()
            .map(HeldInfo::from)
            .collect())
    }

    /// A held message's summary and its bytes as held.
    pub async fn show_held(&self, id: &QueueId) -> ServiceResult<(HeldInfo, Vec<u8>)> {
        let held = self.quarantine.get(id).await?;
        let body = self.quarantine.body(id).await?;
        let mut raw = held
            .recipients
            .first()
            .map(|r| r.headers.clone())
            .unwrap_or_default()
            .into_bytes();
        raw.extend_from_slice(held.message.headers.as_bytes());
        raw.extend_from_slice(&body);
        Ok((HeldInfo::from(&held), raw))
    }

    /// Releases a held message: it is delivered to the INBOX of each
    /// recipient it was held for, unchanged, once.
    pub async fn release_held(&self, id: &QueueId) -> ServiceResult<HeldInfo> {
        let now = stratus_core::mailstore::now();
        let jobs = self.quarantine.release(id).await?;
        for job in &jobs {
            self.queue
                .send(job.queue(), &job.to_json(), std::time::Duration::ZERO)
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        }
        self.quarantine.mark_released(id, now).await?;
        Ok(HeldInfo::from(&self.quarantine.get(id).await?))
    }

    pub async fn delete_held(&self, id: &QueueId) -> ServiceResult<String> {
        self.quarantine.delete(id).await?;
        Ok(id.to_string())
    }
}
