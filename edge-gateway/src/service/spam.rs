//! Spam settings of domains and users: thresholds, allow and block lists.
//! A target is a domain (`example.org`: every user there) or an address
//! (one user); a user's thresholds replace the domain's, and both lists
//! apply.

use serde::Serialize;

use stratus_core::accounts::AccountError;
use stratus_core::spam::{Scope, SpamSettings, list_entry};

use super::{Service, ServiceError, ServiceResult, parse_address, parse_domain};

/// A target's settings as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpamInfo {
    pub target: String,
    pub junk: Option<f64>,
    pub reject: Option<f64>,
    pub allow: Vec<String>,
    pub block: Vec<String>,
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamList {
    Allow,
    Block,
}

/// A threshold change: keep, set, or go back to the default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Keep,
    Set(f64),
    Default,
}

/// The scope a target names.
pub fn spam_scope(target: &str) -> ServiceResult<Scope> {
    if target.contains('@') {
        Ok(Scope::User(parse_address(target)?))
    } else {
        Ok(Scope::Domain(parse_domain(target)?))
    }
}

fn info(target: &Scope, s: SpamSettings) -> SpamInfo {
    SpamInfo {
        target: match target {
            Scope::Domain(d) => d.to_string(),
            Scope::User(a) => a.to_string(),
        },
        junk: s.junk,
        reject: s.reject,
        allow: s.allow,
        block: s.block,
    }
}

impl Service {
    pub async fn spam_settings(&self, target: &Scope) -> ServiceResult<SpamInfo> {
        match target {
            Scope::Domain(d) if self.accounts.domain(d).await?.is_none() => {
                return Err(AccountError::UnknownDomain(d.clone()).into());
            }
            Scope::User(a) if self.accounts.user(a).await?.is_none() => {
                return Err(AccountError::UnknownUser(a.clone()).into());
            }
            _ => {}
        }
        let settings = self.accounts.spam_settings(target).await?;
        Ok(info(target, settings))
    }

    /// Sets the thresholds of `target`; the junk threshold must stay below
    /// the reject threshold (where both are set).
    pub async fn set_spam_thresholds(
        &self,
        target: &Scope,
        junk: Threshold,
        reject: Threshold,
    ) -> ServiceResult<SpamInfo> {
        for t in [junk, reject] {
            if let Threshold::Set(v) = t
                && !(v.is_finite() && v.abs() <= 10_000.0)
            {
                return Err(ServiceError::Invalid(format!(
                    "{v} is not a threshold (a number from -10000 to 10000)"
                )));
            }
        }
        let settings = self
            .accounts
            .update_spam_settings(target, |s| {
                for (t, slot) in [(junk, &mut s.junk), (reject, &mut s.reject)] {
                    match t {
                        Threshold::Keep => {}
                        Threshold::Set(v) => *slot = Some(v),
                        Threshold::Default => *slot = None,
                    }
                }
                if let (Some(j), Some(r)) = (s.junk, s.reject)
                    && j >= r
                {
                    return Err(AccountError::InvalidSetting(format!(
                        "the junk threshold ({j}) must be below the reject threshold ({r})"
                    )));
                }
                Ok(())
            })
            .await?;
        Ok(info(target, settings))
    }

    /// Adds `entries` (addresses or domains) to a list of `target`, or
    /// removes them.
    pub async fn change_spam_list(
        &self,
        target: &Scope,
        list: SpamList,
        entries: &[String],
        remove: bool,
    ) -> ServiceResult<SpamInfo> {
        let entries: Vec<String> = entries
            .iter()
            .map(|e| list_entry(e).map_err(ServiceError::Invalid))
            .collect::<ServiceResult<_>>()?;
        let settings = self
            .accounts
            .update_spam_settings(target, |s| {
                let list = match list {
                    SpamList::Allow => &mut s.allow,
                    SpamList::Block => &mut s.block,
                };
                for e in &entries {
                    if remove {
                        list.retain(|x| x != e);
                    } else if !list.contains(e) {
                        list.push(e.clone());
                    }
                }
                Ok(())
            })
            .await?;
        Ok(info(target, settings))
    }
}
