//! API keys for the admin API, and who a request is ([`Principal`]).
//!
//! A key is `stratus_<id>_<secret>`: the id names its row
//! (`apikey|<id>`), the secret (32 random bytes, hex) is kept only as its
//! SHA-256 (the key is random and long, so a fast hash is enough; it is
//! not a password a person chose). The key is shown once, when it is made.
//! An `admin` key may do everything; a `domain_admin` key sees and changes
//! only its domains, and everything outside them is "not found". A key
//! makes only keys of its own role and scope or less.

use serde::{Deserialize, Serialize};
use stratus_core::Domain;
use stratus_core::ids::{random_hex, secrets_match};
use stratus_core::ports::{Condition, Key, SkRange, Write};

use super::{Service, ServiceError, ServiceResult};

const PK: &str = "apikey";
const PREFIX: &str = "stratus_";

pub use stratus_core::credentials::AdminRole as Role;

/// A key as stored (the secret's hash, never the secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    role: Role,
    #[serde(default)]
    domains: Vec<String>,
    /// Hex SHA-256 of the secret.
    hash: String,
    created: i64,
    /// Who made it (`apikey:<id>`, `user:<address>`; `None`: the
    /// command line).
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    revoked: Option<i64>,
}

/// A key as shown: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    #[schema(value_type = crate::http::openapi::RoleSchema)]
    pub role: Role,
    pub domains: Vec<String>,
    pub created: i64,
    pub created_by: Option<String>,
    pub revoked: Option<i64>,
}

impl From<&Record> for ApiKeyInfo {
    fn from(r: &Record) -> Self {
        ApiKeyInfo {
            id: r.id.clone(),
            role: r.role,
            domains: r.domains.clone(),
            created: r.created,
            created_by: r.created_by.clone(),
            revoked: r.revoked,
        }
    }
}

/// Who makes a request: an API key or a signed-in user, with the role
/// and domains it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How the audit log names it: `apikey:<id>` or `user:<address>`.
    pub name: String,
    pub role: Role,
    pub domains: Vec<String>,
}

impl Principal {
    /// A user holding `grant`, as `user:<address>`.
    pub fn user(
        address: &stratus_core::Address,
        grant: &stratus_core::credentials::AdminGrant,
    ) -> Principal {
        Principal {
            name: format!("user:{address}"),
            role: grant.role,
            domains: grant
                .domains
                .iter()
                .map(|d| d.as_str().to_string())
                .collect(),
        }
    }

    /// Whether this principal may see and change `domain` and what is in it.
    pub fn covers(&self, domain: &Domain) -> bool {
        self.role == Role::Admin || self.domains.iter().any(|d| d == domain.as_str())
    }

    /// Whether a key or grant of `role` over `domains` is no more than
    /// this one.
    pub fn may_grant(&self, role: Role, domains: &[String]) -> bool {
        match self.role {
            Role::Admin => true,
            Role::DomainAdmin => {
                role == Role::DomainAdmin
                    && !domains.is_empty()
                    && domains.iter().all(|d| self.domains.contains(d))
            }
        }
    }
}

fn hash(secret: &str) -> String {
    stratus_core::ids::sha256_hex(secret.as_bytes())
}

/// Whether `id` can be a key's id (hex, as made): anything else names no
/// row, whatever the index would make of it.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn decode(item: &stratus_core::ports::Item) -> ServiceResult<Record> {
    serde_json::from_slice(&item.value)
        .map_err(|e| ServiceError::Internal(format!("unreadable API key {}: {e}", item.key.sk)))
}

impl Service {
    /// Makes a key of `role` (over `domains` for a domain admin); `by` is
    /// the key asking (`None`: the command line, which may make any).
    /// Returns the key's description and the key itself, shown only now.
    pub async fn create_api_key(
        &self,
        role: Role,
        domains: &[Domain],
        by: Option<&Principal>,
    ) -> ServiceResult<(ApiKeyInfo, String)> {
        let domains: Vec<String> = domains.iter().map(|d| d.as_str().to_string()).collect();
        match role {
            Role::Admin if !domains.is_empty() => {
                return Err(ServiceError::Invalid(
                    "an admin key covers every domain: give no domain".into(),
                ));
            }
            Role::DomainAdmin if domains.is_empty() => {
                return Err(ServiceError::Invalid(
                    "a domain admin key needs at least one domain".into(),
                ));
            }
            _ => {}
        }
        if let Some(by) = by
            && !by.may_grant(role, &domains)
        {
            return Err(ServiceError::Forbidden(
                "a key can make only keys of its own role and domains, or less".into(),
            ));
        }
        for domain in &domains {
            let domain = Domain::parse(domain).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            if self.accounts.domain(&domain).await?.is_none() {
                return Err(ServiceError::NotFound(format!(
                    "domain {domain} is not hosted here"
                )));
            }
        }
        let id = random_hex(8);
        let secret = random_hex(32);
        let record = Record {
            id: id.clone(),
            role,
            domains,
            hash: hash(&secret),
            created: stratus_core::mailstore::now(),
            created_by: by.map(|p| p.name.clone()),
            revoked: None,
        };
        self.put_key(&record, Condition::Absent).await?;
        Ok((ApiKeyInfo::from(&record), format!("{PREFIX}{id}_{secret}")))
    }

    async fn put_key(&self, record: &Record, condition: Condition) -> ServiceResult<()> {
        let value =
            serde_json::to_vec(record).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let write = Write::Put {
            key: Key::new(PK, record.id.as_str()),
            value,
            condition,
        };
        match self.index.transact(vec![write]).await {
            Ok(stratus_core::ports::Outcome::Applied) => Ok(()),
            Ok(_) => Err(ServiceError::Conflict(format!(
                "API key {} changed meanwhile; try again",
                record.id
            ))),
            Err(e) => Err(ServiceError::Unavailable(e.to_string())),
        }
    }

    async fn key_records(&self) -> ServiceResult<Vec<(Record, u64)>> {
        let items = self
            .index
            .query(PK, SkRange::All, usize::MAX, false)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        items
            .iter()
            .map(|item| Ok((decode(item)?, item.version)))
            .collect()
    }

    /// The keys `by` may see (a domain admin: keys within its domains).
    pub async fn list_api_keys(&self, by: Option<&Principal>) -> ServiceResult<Vec<ApiKeyInfo>> {
        Ok(self
            .key_records()
            .await?
            .iter()
            .filter(|(r, _)| by.is_none_or(|p| p.may_grant(r.role, &r.domains)))
            .map(|(r, _)| ApiKeyInfo::from(r))
            .collect())
    }

    /// Revokes the key `id`, which `by` must be able to see; at once, for
    /// every gateway (keys are read from the index on each request).
    pub async fn revoke_api_key(
        &self,
        id: &str,
        by: Option<&Principal>,
    ) -> ServiceResult<ApiKeyInfo> {
        let missing = || ServiceError::NotFound(format!("no API key {id}"));
        if !valid_id(id) {
            return Err(missing());
        }
        let item = self
            .index
            .get(&Key::new(PK, id))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .ok_or_else(missing)?;
        let mut record = decode(&item)?;
        if by.is_some_and(|p| !p.may_grant(record.role, &record.domains)) {
            return Err(missing());
        }
        if record.revoked.is_none() {
            record.revoked = Some(stratus_core::mailstore::now());
            self.put_key(&record, Condition::Version(item.version))
                .await?;
        }
        Ok(ApiKeyInfo::from(&record))
    }

    /// Takes `domain` out of every key that covers it; a domain admin key
    /// left with none is revoked.
    pub(super) async fn forget_domain_in_keys(&self, domain: &Domain) -> ServiceResult<()> {
        for _ in 0..5 {
            let mut clash = false;
            for (mut record, version) in self.key_records().await? {
                if !record.domains.iter().any(|d| d == domain.as_str()) {
                    continue;
                }
                record.domains.retain(|d| d != domain.as_str());
                if record.domains.is_empty() && record.revoked.is_none() {
                    record.revoked = Some(stratus_core::mailstore::now());
                }
                match self.put_key(&record, Condition::Version(version)).await {
                    Ok(()) => {}
                    Err(ServiceError::Conflict(_)) => clash = true,
                    Err(e) => return Err(e),
                }
            }
            if !clash {
                return Ok(());
            }
        }
        Err(ServiceError::Conflict(
            "API keys kept changing while the domain was taken out of them; try again".into(),
        ))
    }

    /// The key `id`, if there is one (an id of another shape names none).
    async fn key_record(&self, id: &str) -> ServiceResult<Option<Record>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let item = self
            .index
            .get(&Key::new(PK, id))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        item.as_ref().map(decode).transpose()
    }

    /// Whether whoever made `record` still holds what it grants: a key
    /// made by a user works while that user is enabled and keeps the role
    /// and domains; one made by a key, while that key is not revoked and
    /// its maker holds, and so on up to the command line.
    async fn creator_holds(&self, record: &Record) -> ServiceResult<bool> {
        /// Deeper chains are refused (a key cannot make a loop, but the
        /// stored rows are not ours to trust blindly).
        const MAX_DEPTH: usize = 16;
        let (mut role, mut domains) = (record.role, record.domains.clone());
        let mut maker = record.created_by.clone();
        for _ in 0..MAX_DEPTH {
            let Some(mut by) = maker.take() else {
                return Ok(true);
            };
            // Keys made before makers were named by kind name their maker
            // key by its bare id.
            if valid_id(&by) {
                by = format!("apikey:{by}");
            }
            if let Some(address) = by.strip_prefix("user:") {
                let Ok(address) = stratus_core::Address::parse(address) else {
                    return Ok(false);
                };
                let Some(user) = self.accounts.user(&address).await? else {
                    return Ok(false);
                };
                let Some(grant) = user.admin.filter(|_| !user.disabled) else {
                    return Ok(false);
                };
                return Ok(Principal::user(&user.address, &grant).may_grant(role, &domains));
            }
            let Some(id) = by.strip_prefix("apikey:") else {
                return Ok(false);
            };
            let Some(parent) = self.key_record(id).await? else {
                return Ok(false);
            };
            let holder = Principal {
                name: by.clone(),
                role: parent.role,
                domains: parent.domains.clone(),
            };
            if parent.revoked.is_some() || !holder.may_grant(role, &domains) {
                return Ok(false);
            }
            (role, domains, maker) = (parent.role, parent.domains, parent.created_by);
        }
        Ok(false)
    }

    /// Who `token` is, when it is a key that exists and is not revoked.
    pub async fn authenticate_api_key(&self, token: &str) -> ServiceResult<Option<Principal>> {
        let Some((id, secret)) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let Some(record) = self.key_record(id).await? else {
            return Ok(None);
        };
        if record.revoked.is_some()
            || !secrets_match(record.hash.as_bytes(), hash(secret).as_bytes())
            || !self.creator_holds(&record).await?
        {
            return Ok(None);
        }
        Ok(Some(Principal {
            name: format!("apikey:{}", record.id),
            role: record.role,
            domains: record.domains,
        }))
    }
}
