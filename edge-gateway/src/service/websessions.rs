//! Web sessions: what a browser holds after signing in with the account
//! password (never an app password), for `/admin` and the API.
//!
//! The cookie holds 32 random bytes (hex); the index keeps only their
//! SHA-256 (`websession` | `<hash>`), with the user, the times and the
//! session's CSRF token, so that any gateway answers for any session (no
//! sticky sessions). A session lasts [`WEB_SESSION_LIFETIME`] from sign-in
//! and ends earlier when the user signs out, when the password changes or
//! the account is disabled or deleted: the session keeps the credential
//! generation it signed in under, and each request reads the user record,
//! so the end is immediate on every gateway (and an address deleted and
//! made again starts a generation no old session has).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratus_core::Address;
use stratus_core::credentials::{AdminGrant, now_ms};
use stratus_core::ids::{random_hex, secrets_match};
use stratus_core::ports::{Condition, Key, SkRange, Write};

use super::{Service, ServiceError, ServiceResult};

const PK: &str = "websession";

/// The cookie's name. `__Host-`: browsers accept it only with `Secure`,
/// `Path=/` and no `Domain`, so no other host or path can set it.
pub const WEB_SESSION_COOKIE: &str = "__Host-stratus_session";

/// How long a session lasts from sign-in.
pub const WEB_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    address: Address,
    /// Unix ms.
    created: i64,
    /// Unix ms.
    expires: i64,
    /// Sent back by the page on every change (`X-CSRF-Token`).
    csrf: String,
    /// The user's credential generation at sign-in.
    #[serde(default)]
    generation: u64,
}

/// A live session.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WebSession {
    #[schema(value_type = String)]
    pub address: Address,
    /// What the user may administer, as of this request.
    #[schema(value_type = Option<crate::http::openapi::GrantSchema>)]
    pub admin: Option<AdminGrant>,
    /// Unix seconds.
    pub expires: i64,
    /// The token every change must carry in `X-CSRF-Token`.
    pub csrf_token: String,
}

impl std::fmt::Debug for WebSession {
    /// Without the CSRF token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSession")
            .field("address", &self.address)
            .field("admin", &self.admin)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl WebSession {
    /// Whether `given` is this session's CSRF token.
    pub fn csrf_matches(&self, given: &str) -> bool {
        secrets_match(self.csrf_token.as_bytes(), given.as_bytes())
    }
}

fn sk(secret: &str) -> String {
    stratus_core::ids::sha256_hex(secret.as_bytes())
}

/// Whether `secret` can be one we made (64 hex digits).
fn well_formed(secret: &str) -> bool {
    secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Service {
    /// Starts a session for `address`, whose password the caller checked
    /// under credential `generation`: the cookie's value and the session.
    pub async fn start_web_session(
        &self,
        address: &Address,
        generation: u64,
    ) -> ServiceResult<(String, WebSession)> {
        let secret = random_hex(32);
        let created = now_ms();
        let record = Record {
            address: address.clone(),
            created,
            expires: created + WEB_SESSION_LIFETIME.as_millis() as i64,
            csrf: random_hex(32),
            generation,
        };
        let value =
            serde_json::to_vec(&record).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let _ = self
            .index
            .transact(vec![Write::Put {
                key: Key::new(PK, sk(&secret)),
                value,
                condition: Condition::Absent,
            }])
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let session = self.web_session(&secret).await?.ok_or_else(|| {
            ServiceError::Unavailable("the new session is not readable yet".into())
        })?;
        Ok((secret, session))
    }

    /// The session `secret` names, if it is live: not expired, not signed
    /// out, and begun after the user's last password change; the user
    /// exists and is not disabled.
    pub async fn web_session(&self, secret: &str) -> ServiceResult<Option<WebSession>> {
        if !well_formed(secret) {
            return Ok(None);
        }
        let Some(item) = self
            .index
            .get(&Key::new(PK, sk(secret)))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<Record>(&item.value) else {
            return Ok(None);
        };
        if record.expires <= now_ms() {
            return Ok(None);
        }
        let Some(user) = self.accounts.user(&record.address).await? else {
            return Ok(None);
        };
        if user.disabled || record.generation != user.generation {
            return Ok(None);
        }
        Ok(Some(WebSession {
            address: user.address,
            admin: user.admin,
            expires: record.expires / 1000,
            csrf_token: record.csrf,
        }))
    }

    /// Signs the session `secret` out.
    pub async fn end_web_session(&self, secret: &str) -> ServiceResult<()> {
        if !well_formed(secret) {
            return Ok(());
        }
        let _ = self
            .index
            .transact(vec![Write::Delete {
                key: Key::new(PK, sk(secret)),
                condition: Condition::Any,
            }])
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Deletes expired sessions (and unreadable rows); how many went.
    pub async fn prune_web_sessions(&self) -> ServiceResult<usize> {
        let items = self
            .index
            .query(PK, SkRange::All, usize::MAX, false)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let now = now_ms();
        let stale: Vec<Write> = items
            .into_iter()
            .filter(|i| {
                serde_json::from_slice::<Record>(&i.value).map_or(true, |r| r.expires <= now)
            })
            .map(|i| Write::Delete {
                key: i.key,
                condition: Condition::Any,
            })
            .collect();
        let n = stale.len();
        for chunk in stale.chunks(stratus_core::ports::MAX_TRANSACTION_ITEMS) {
            let _ = self
                .index
                .transact(chunk.to_vec())
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        }
        Ok(n)
    }
}
