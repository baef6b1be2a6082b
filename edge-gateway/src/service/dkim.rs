//! DKIM key rotation. A domain signs with its active keys (one Ed25519,
//! one RSA). A rotation makes the next pair under new selectors; the
//! admin publishes their records; activation (once the records are
//! found in the DNS) makes them sign and retires the old pair, whose
//! records stay published until the admin drops them, so that mail
//! signed before still verifies (RFC 6376 §3.1; M3AAWG's key rotation
//! practice).

use serde::Serialize;
use stratus_auth::dkim::{Algorithm, DkimKey};
use stratus_core::Domain;
use stratus_core::accounts::{AccountError, DkimKeyRecord, DkimKeyState};

use super::domains::{DnsRecord, dkim_record};
use super::{Service, ServiceError, ServiceResult};

/// How long a retired key stays published before it may be dropped
/// without `force`: mail signed just before the rotation may sit in
/// queues, be forwarded, or be checked again, for days.
pub const RETIRED_KEEP_SECS: i64 = 7 * 86_400;

/// One DKIM key of a domain (never its private part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DkimKeyInfo {
    pub selector: String,
    /// `ed25519` or `rsa`.
    pub algorithm: String,
    /// `active` (signs), `next` (to publish, then activate) or `retired`
    /// (signed before the last rotation; still to be published).
    #[schema(value_type = String)]
    pub state: &'static str,
    /// When it was made (Unix seconds).
    pub created: i64,
    /// When it stopped signing (Unix seconds), for a retired key.
    pub retired: Option<i64>,
    /// The TXT record that publishes it.
    pub record: DnsRecord,
}

/// The keys a new domain, or a rotation, makes: one per algorithm, under
/// `stratus-<algorithm>` plus `suffix`.
pub(super) fn new_keys(suffix: &str, state: DkimKeyState) -> ServiceResult<Vec<DkimKeyRecord>> {
    let mut keys = Vec::new();
    for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
        let key = DkimKey::generate(algorithm)
            .map_err(|e| ServiceError::Internal(format!("cannot generate a DKIM key: {e}")))?;
        keys.push(DkimKeyRecord {
            selector: format!("stratus-{}{suffix}", algorithm.tag()),
            algorithm: algorithm.tag().to_string(),
            private_pkcs8: stratus_auth::dkim::base64(key.pkcs8()),
            created: stratus_core::mailstore::now(),
            state,
            retired: None,
        });
    }
    Ok(keys)
}

fn refused(text: String) -> AccountError {
    AccountError::DkimKeys(text)
}

impl Service {
    /// A hosted domain's DKIM keys, active first, then next, then retired.
    pub async fn dkim_keys(&self, domain: &Domain) -> ServiceResult<Vec<DkimKeyInfo>> {
        self.hosted(domain).await?;
        let mut keys = self.accounts.dkim_keys(domain).await?;
        keys.sort_by_key(|k| (rank(k.state), k.created, k.selector.clone()));
        keys.iter().map(|k| key_info(domain, k)).collect()
    }

    /// Makes the next pair of keys (to publish, then activate); refused
    /// while a rotation is under way.
    pub async fn rotate_dkim(&self, domain: &Domain) -> ServiceResult<Vec<DkimKeyInfo>> {
        self.hosted(domain).await?;
        let (y, m, d) = stratus_core::archive::civil_date(stratus_core::mailstore::now());
        // The day, and a random part: a selector is never used twice, so
        // no resolver's cache can hold an older key under it.
        let suffix = format!("-{y:04}{m:02}{d:02}-{}", stratus_core::ids::random_hex(2));
        // Generated before the transaction: an RSA key takes a while.
        let fresh = new_keys(&suffix, DkimKeyState::Next)?;
        let keys = self
            .accounts
            .update_dkim_keys(domain, |keys| {
                if keys.iter().any(|k| k.state == DkimKeyState::Next) {
                    return Err(refused(format!(
                        "a rotation of {domain}'s keys is under way: publish and activate its keys, or drop them, first"
                    )));
                }
                if fresh
                    .iter()
                    .any(|f| keys.iter().any(|k| k.selector == f.selector))
                {
                    return Err(refused(format!(
                        "the new selectors of {domain} are taken; rotate again"
                    )));
                }
                keys.extend(fresh.iter().cloned());
                Ok(())
            })
            .await?;
        keys.iter()
            .filter(|k| k.state == DkimKeyState::Next)
            .map(|k| key_info(domain, k))
            .collect()
    }

    /// Signs with the next keys from now on and retires the active ones
    /// of their algorithms. Unless `force`, only once every next key's
    /// record is found in the DNS: a signature with an unpublished key
    /// fails DKIM everywhere.
    pub async fn activate_dkim(
        &self,
        domain: &Domain,
        force: bool,
    ) -> ServiceResult<Vec<DkimKeyInfo>> {
        self.hosted(domain).await?;
        let next: Vec<DkimKeyRecord> = self
            .accounts
            .dkim_keys(domain)
            .await?
            .into_iter()
            .filter(|k| k.state == DkimKeyState::Next)
            .collect();
        if next.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "{domain} has no next keys: rotate first"
            )));
        }
        if !force {
            let checked = next
                .iter()
                .map(|k| key_info(domain, k))
                .collect::<ServiceResult<Vec<_>>>()?;
            let missing = self.unpublished(&checked).await?;
            if !missing.is_empty() {
                return Err(ServiceError::Conflict(format!(
                    "not found in the DNS yet: {}; publish the records (`stratus domain dkim list {domain}`) and try again, or force it",
                    missing.join(", ")
                )));
            }
        }
        // A key of an algorithm with no next key keeps signing: dropping
        // one of a pair must not leave the domain without RSA (which
        // every verifier and ARC need).
        let algorithms: Vec<String> = next.iter().map(|k| k.algorithm.clone()).collect();
        let now = stratus_core::mailstore::now();
        self.accounts
            .update_dkim_keys(domain, |keys| {
                // Exactly the keys checked: not a rotation made since,
                // even under the same selectors.
                let current: Vec<&DkimKeyRecord> = keys
                    .iter()
                    .filter(|k| k.state == DkimKeyState::Next)
                    .collect();
                if current.len() != next.len() || !current.iter().all(|k| next.contains(k)) {
                    return Err(refused(format!(
                        "the next keys of {domain} changed meanwhile; try again"
                    )));
                }
                for k in keys.iter_mut() {
                    if k.state == DkimKeyState::Next {
                        k.state = DkimKeyState::Active;
                    } else if k.state == DkimKeyState::Active && algorithms.contains(&k.algorithm) {
                        k.state = DkimKeyState::Retired;
                        k.retired = Some(now);
                    }
                }
                Ok(())
            })
            .await?;
        self.dkim_keys(domain).await
    }

    /// Deletes a next key (a rotation given up), or a retired one once
    /// it has been retired for [`RETIRED_KEEP_SECS`] (sooner with
    /// `force`). An active key is never dropped: rotate instead.
    pub async fn drop_dkim(
        &self,
        domain: &Domain,
        selector: &str,
        force: bool,
    ) -> ServiceResult<DkimKeyInfo> {
        self.hosted(domain).await?;
        let now = stratus_core::mailstore::now();
        let mut gone = None;
        self.accounts
            .update_dkim_keys(domain, |keys| {
                let Some(i) = keys.iter().position(|k| k.selector == selector) else {
                    return Ok(());
                };
                let key = &keys[i];
                match key.state {
                    DkimKeyState::Active => {
                        return Err(refused(format!(
                            "{selector} signs {domain}'s mail; rotate to replace it"
                        )));
                    }
                    DkimKeyState::Retired
                        if !force
                            && key.retired.unwrap_or(0) + RETIRED_KEEP_SECS > now =>
                    {
                        return Err(refused(format!(
                            "{selector} was retired less than {} days ago: mail signed with it may still be checked; keep it published, or force it",
                            RETIRED_KEEP_SECS / 86_400
                        )));
                    }
                    _ => {}
                }
                gone = Some(keys.remove(i));
                Ok(())
            })
            .await?;
        let gone = gone.ok_or_else(|| {
            ServiceError::NotFound(format!("{domain} has no DKIM key {selector}"))
        })?;
        key_info(domain, &gone)
    }

    /// The selectors of `keys` whose record the DNS does not have.
    async fn unpublished(&self, keys: &[DkimKeyInfo]) -> ServiceResult<Vec<String>> {
        let resolver = self.dns_checker()?;
        let mut missing = Vec::new();
        for key in keys {
            let found = resolver
                .published(&key.record.name, key.record.kind)
                .await
                .map_err(|e| {
                    ServiceError::Unavailable(format!("cannot look up {}: {e}", key.record.name))
                })?;
            if !key.record.is_in(&found) {
                missing.push(key.selector.clone());
            }
        }
        Ok(missing)
    }

    async fn hosted(&self, domain: &Domain) -> ServiceResult<()> {
        match self.accounts.domain(domain).await? {
            Some(_) => Ok(()),
            None => Err(super::domains::not_hosted(domain)),
        }
    }
}

fn rank(state: DkimKeyState) -> u8 {
    match state {
        DkimKeyState::Active => 0,
        DkimKeyState::Next => 1,
        DkimKeyState::Retired => 2,
    }
}

fn key_info(domain: &Domain, key: &DkimKeyRecord) -> ServiceResult<DkimKeyInfo> {
    Ok(DkimKeyInfo {
        selector: key.selector.clone(),
        algorithm: key.algorithm.clone(),
        state: key.state.as_str(),
        created: key.created,
        retired: key.retired,
        record: dkim_record(domain, key)?,
    })
}
