//! Spam settings of domains and users: thresholds and allow/block lists,
//! over the index port so both backends keep them alike.
//!
//! Item layout (partition key | sort key):
//! - `spam#<domain>` | `@`: the domain's settings.
//! - `spam#<domain>` | `<local part, lower-cased>`: a user's settings.
//!
//! A user's thresholds, where set, replace the domain's; the lists of both
//! apply (a domain administrator's block list holds for every user).

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, AccountResult, Accounts};
use crate::address::{Address, Domain};
use crate::ports::{Condition, IndexExt, Key, Outcome};

/// At most this many entries in one allow or block list.
pub const MAX_LIST: usize = 1000;

/// Thresholds and lists; unset thresholds fall back to the domain's,
/// then to the rules file's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpamSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junk: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
}

/// Whose settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Domain(Domain),
    User(Address),
}

impl Scope {
    fn key(&self) -> Key {
        match self {
            Scope::Domain(d) => Key::new(format!("spam#{d}"), "@"),
            Scope::User(a) => Key::new(
                format!("spam#{}", a.domain()),
                a.local_part().to_lowercase(),
            ),
        }
    }
}

/// Checks a list entry: an address (`user@example.org`) or a domain
/// (`example.org`, which covers its subdomains); returns it lower-cased.
pub fn list_entry(entry: &str) -> Result<String, String> {
    let entry = entry.trim();
    let valid = match entry.split_once('@') {
        Some(_) => Address::parse(entry).is_ok(),
        None => Domain::parse(entry).is_ok(),
    };
    if valid {
        Ok(entry.to_lowercase())
    } else {
        Err(format!("{entry:?} is neither an address nor a domain"))
    }
}

impl Accounts {
    /// The settings of `scope` (empty when none were set).
    pub async fn spam_settings(&self, scope: &Scope) -> AccountResult<SpamSettings> {
        Ok(self.record(&scope.key()).await?.unwrap_or_default())
    }

    /// The domain's and the user's settings of `address`.
    pub async fn spam_settings_of(
        &self,
        address: &Address,
    ) -> AccountResult<(SpamSettings, SpamSettings)> {
        let domain = self
            .spam_settings(&Scope::Domain(address.domain().clone()))
            .await?;
        let user = self.spam_settings(&Scope::User(address.clone())).await?;
        Ok((domain, user))
    }

    /// Changes the settings of `scope` with `change`, written only if
    /// nobody wrote in between (tried again then). The domain, or the
    /// user, must exist.
    pub async fn update_spam_settings(
        &self,
        scope: &Scope,
        mut change: impl FnMut(&mut SpamSettings) -> AccountResult<()>,
    ) -> AccountResult<SpamSettings> {
        match scope {
            Scope::Domain(d) => {
                if self.domain(d).await?.is_none() {
                    return Err(AccountError::UnknownDomain(d.clone()));
                }
            }
            Scope::User(a) => {
                if self.user(a).await?.is_none() {
                    return Err(AccountError::UnknownUser(a.clone()));
                }
            }
        }
        let key = scope.key();
        loop {
            let item = self.index.get(&key).await?;
            let (mut settings, condition) = match &item {
                Some(item) => (
                    crate::accounts::decode::<SpamSettings>(item)?,
                    Condition::Version(item.version),
                ),
                None => (SpamSettings::default(), Condition::Absent),
            };
            change(&mut settings)?;
            if settings.allow.len() > MAX_LIST || settings.block.len() > MAX_LIST {
                return Err(AccountError::TooManyListEntries);
            }
            let value = crate::accounts::encode(&settings);
            if self.index.put(key.clone(), value, condition).await? == Outcome::Applied {
                return Ok(settings);
            }
        }
    }

    /// Removes the settings of `scope` (a deleted user or domain).
    pub async fn delete_spam_settings(&self, scope: &Scope) -> AccountResult<()> {
        let _ = self.index.delete(scope.key(), Condition::Any).await?;
        Ok(())
    }
}
