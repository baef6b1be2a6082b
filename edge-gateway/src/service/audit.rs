//! The admin audit log: every change made through the admin API, with
//! who made it (the key), from where, when, and what it touched. Rows
//! `audit|<time>#<nonce>`, in time order; kept until an operator deletes
//! them (changes are rare: one partition is enough).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use stratus_core::Domain;
use stratus_core::ports::{Condition, Key, SkRange, Write};

use super::apikeys::Principal;
use super::{Service, ServiceError, ServiceResult};

const PK: &str = "audit";

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// `apikey:<id>` or `user:<address>`.
    pub who: String,
    /// The client's address.
    pub from: Option<String>,
    /// `domain.add`, `user.delete`, ...
    pub action: String,
    /// What it touched: a domain, an address, a key id.
    pub target: String,
    /// The domain it falls under, for domain admins' view.
    pub domain: Option<String>,
}

impl Service {
    /// Writes one entry; `who` as [`Principal::name`] gives it.
    pub async fn audit(
        &self,
        who: &str,
        from: Option<IpAddr>,
        action: &str,
        target: &str,
        domain: Option<&Domain>,
    ) -> ServiceResult<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let sk = format!(
            "{:016x}#{}",
            now.as_millis(),
            stratus_core::ids::random_hex(4)
        );
        let entry = AuditEntry {
            at: now.as_secs() as i64,
            who: who.to_string(),
            from: from.map(|ip| ip.to_canonical().to_string()),
            action: action.to_string(),
            target: target.to_string(),
            domain: domain.map(|d| d.as_str().to_string()),
        };
        let value =
            serde_json::to_vec(&entry).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let write = Write::Put {
            key: Key::new(PK, sk),
            value,
            condition: Condition::Absent,
        };
        // Absent: a fresh time and nonce; a clash is as good as written.
        let _ = self
            .index
            .transact(vec![write])
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// The newest `limit` entries `by` may see (a domain admin: those of
    /// its domains), newest first.
    pub async fn audit_log(&self, by: &Principal, limit: usize) -> ServiceResult<Vec<AuditEntry>> {
        let mut out = Vec::new();
        let mut before: Option<String> = None;
        // Pages of the partition, newest first, until `limit` are seen.
        loop {
            let range = match &before {
                None => SkRange::All,
                // Sort keys are hex times: "0" is below them all (an
                // empty bound is not a valid DynamoDB key).
                Some(sk) => SkRange::Between("0".into(), sk.clone()),
            };
            let items = self
                .index
                .query(PK, range, 500, true)
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            let last_page = items.len() < 500;
            let items: Vec<_> = items
                .into_iter()
                .filter(|i| before.as_ref().is_none_or(|b| i.key.sk < *b))
                .collect();
            let Some(last) = items.last() else { break };
            before = Some(last.key.sk.clone());
            for item in &items {
                let entry: AuditEntry = serde_json::from_slice(&item.value)
                    .map_err(|e| ServiceError::Internal(format!("unreadable audit entry: {e}")))?;
                let visible = entry
                    .domain
                    .as_deref()
                    .and_then(|d| Domain::parse(d).ok())
                    .is_some_and(|d| by.covers(&d))
                    || by.role == super::apikeys::Role::Admin;
                if visible {
                    out.push(entry);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if last_page {
                break;
            }
        }
        Ok(out)
    }
}
