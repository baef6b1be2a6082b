//! Users' Sieve scripts, over the index and blob ports so every gateway
//! and function sees the same ones. Checking a script is the caller's
//! (stratus-sieve parses; this crate only stores text).
//!
//! Layout:
//! - row `sieve#<account key>` | `script:<name>`: the script's record,
//!   naming the blob that holds its text (`sieve/<account key in
//!   hex>/<random>`), so a script may be larger than an index item;
//! - row `sieve#<account key>` | `active`: the name of the active script.
//!
//! A new version of a script is a new blob; the row moves to it with a
//! conditional write and the old blob is deleted after, so a reader never
//! finds a row naming a blob that is not there yet.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, Accounts, decode, encode};
use crate::address::Address;
use crate::ids::{BlobKey, random_hex};
use crate::mailstore::now;
use crate::ports::{BlobStore, Condition, Index, IndexExt, Key, Outcome, SkRange, Write};

use std::sync::Arc;

/// At most this many scripts per user.
pub const MAX_SCRIPTS: usize = 32;
/// The longest script name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRecord {
    pub name: String,
    pub blob: BlobKey,
    pub size: u64,
    pub updated: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ActiveRecord {
    name: String,
}

/// A script as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptInfo {
    pub name: String,
    pub size: u64,
    pub updated: i64,
    pub active: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("no script named {0:?}")]
    Unknown(String),
    #[error("a script named {0:?} already exists")]
    Exists(String),
    #[error("{0:?} is the active script; deactivate it first")]
    Active(String),
    #[error("a user may have at most {MAX_SCRIPTS} scripts")]
    TooMany,
    #[error(
        "a script name has 1 to {MAX_NAME_CHARS} characters, none of them control characters or /"
    )]
    BadName,
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<crate::ports::StoreError> for ScriptError {
    fn from(e: crate::ports::StoreError) -> Self {
        ScriptError::Account(AccountError::Store(e))
    }
}

pub type ScriptResult<T> = Result<T, ScriptError>;

/// Whether `name` may name a script (ManageSieve allows any UTF-8 but
/// control characters; `/` is kept out for `include`).
pub fn valid_name(name: &str) -> bool {
    let chars = name.chars().count();
    chars > 0 && chars <= MAX_NAME_CHARS && !name.chars().any(|c| c.is_control() || c == '/')
}

#[derive(Debug, Clone)]
pub struct Scripts {
    index: Arc<dyn Index>,
    blobs: Arc<dyn BlobStore>,
}

/// Whose scripts: a user's, or the administrators' global ones (RFC 6609
/// `include :global`), which only `stratus sieve global` writes; no
/// user, over ManageSieve or otherwise, reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    User(&'a Address),
    Global,
}

impl<'a> From<&'a Address> for Owner<'a> {
    fn from(user: &'a Address) -> Self {
        Owner::User(user)
    }
}

/// `sieve#<account key>` for a user; `sieve@global` (no account key has
/// that form) for the global scripts.
fn pk(owner: Owner<'_>) -> String {
    match owner {
        Owner::User(user) => format!("sieve#{}", user.account_key()),
        Owner::Global => "sieve@global".to_string(),
    }
}

fn script_key(owner: Owner<'_>, name: &str) -> Key {
    Key::new(pk(owner), format!("script:{name}"))
}

fn active_key(owner: Owner<'_>) -> Key {
    Key::new(pk(owner), "active")
}

fn new_blob(owner: Owner<'_>) -> BlobKey {
    // An account key in hex never reads `global`.
    let dir = match owner {
        Owner::User(user) => user.account_key_hex(),
        Owner::Global => "global".to_string(),
    };
    BlobKey::parse(&format!("sieve/{dir}/{}", random_hex(8))).expect("hex makes a key")
}

impl Scripts {
    pub fn new(index: Arc<dyn Index>, blobs: Arc<dyn BlobStore>) -> Scripts {
        Scripts { index, blobs }
    }

    async fn check_user(&self, owner: Owner<'_>) -> ScriptResult<()> {
        let Owner::User(user) = owner else {
            return Ok(());
        };
        let accounts = Accounts::new(self.index.clone());
        if accounts.user(user).await?.is_none() {
            return Err(AccountError::UnknownUser(user.clone()).into());
        }
        Ok(())
    }

    async fn record(
        &self,
        user: Owner<'_>,
        name: &str,
    ) -> ScriptResult<Option<(ScriptRecord, u64)>> {
        // No script has a name no script may have: not worth a key the
        // stores may refuse (control characters).
        if !valid_name(name) {
            return Ok(None);
        }
        match self.index.get(&script_key(user, name)).await? {
            Some(item) => Ok(Some((decode(&item)?, item.version))),
            None => Ok(None),
        }
    }

    async fn active_name(&self, user: Owner<'_>) -> ScriptResult<Option<String>> {
        match self.index.get(&active_key(user)).await? {
            Some(item) => Ok(Some(decode::<ActiveRecord>(&item)?.name)),
            None => Ok(None),
        }
    }

    /// The user's scripts, by name.
    pub async fn list<'a>(&self, user: impl Into<Owner<'a>>) -> ScriptResult<Vec<ScriptInfo>> {
        let user = user.into();
        self.check_user(user).await?;
        let active = self.active_name(user).await?;
        let items = self
            .index
            .query(
                &pk(user),
                SkRange::Prefix("script:".into()),
                MAX_SCRIPTS * 2,
                false,
            )
            .await?;
        items
            .iter()
            .map(|item| {
                let r: ScriptRecord = decode(item)?;
                Ok(ScriptInfo {
                    active: active.as_deref() == Some(r.name.as_str()),
                    name: r.name,
                    size: r.size,
                    updated: r.updated,
                })
            })
            .collect()
    }

    /// The text of the script `name`.
    pub async fn get<'a>(&self, user: impl Into<Owner<'a>>, name: &str) -> ScriptResult<String> {
        let user = user.into();
        let Some((record, _)) = self.record(user, name).await? else {
            return Err(ScriptError::Unknown(name.to_string()));
        };
        self.text(&record).await
    }

    async fn text(&self, record: &ScriptRecord) -> ScriptResult<String> {
        let bytes =
            self.blobs
                .get(&record.blob, None)
                .await?
                .ok_or_else(|| AccountError::Corrupt {
                    key: record.blob.to_string(),
                    reason: "the script's text is missing".into(),
                })?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            AccountError::Corrupt {
                key: record.blob.to_string(),
                reason: "the script's text is not UTF-8".into(),
            }
            .into()
        })
    }

    /// Stores `text` as the script `name` (new, or replacing it).
    pub async fn put<'a>(
        &self,
        user: impl Into<Owner<'a>>,
        name: &str,
        text: &str,
    ) -> ScriptResult<()> {
        let user = user.into();
        if !valid_name(name) {
            return Err(ScriptError::BadName);
        }
        self.check_user(user).await?;
        let blob = new_blob(user);
        self.blobs
            .put(&blob, Bytes::copy_from_slice(text.as_bytes()))
            .await?;
        let record = ScriptRecord {
            name: name.to_string(),
            blob: blob.clone(),
            size: text.len() as u64,
            updated: now(),
        };
        let result = self.move_row(user, name, &record).await;
        match result {
            Ok(Some(old)) => {
                let _ = self.blobs.delete(&old).await;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                let _ = self.blobs.delete(&blob).await;
                Err(e)
            }
        }
    }

    /// Points the row at `record`'s blob; returns the blob it named before.
    async fn move_row(
        &self,
        user: Owner<'_>,
        name: &str,
        record: &ScriptRecord,
    ) -> ScriptResult<Option<BlobKey>> {
        loop {
            let (old, condition) = match self.record(user, name).await? {
                Some((old, version)) => (Some(old.blob), Condition::Version(version)),
                None => {
                    let count = self
                        .index
                        .query(
                            &pk(user),
                            SkRange::Prefix("script:".into()),
                            MAX_SCRIPTS,
                            false,
                        )
                        .await?
                        .len();
                    if count >= MAX_SCRIPTS {
                        return Err(ScriptError::TooMany);
                    }
                    (None, Condition::Absent)
                }
            };
            let put = self
                .index
                .put(script_key(user, name), encode(record), condition)
                .await?;
            if put == Outcome::Applied {
                return Ok(old);
            }
        }
    }

    /// Makes `name` the active script, or (None) leaves none active.
    pub async fn activate<'a>(
        &self,
        user: impl Into<Owner<'a>>,
        name: Option<&str>,
    ) -> ScriptResult<()> {
        let user = user.into();
        self.check_user(user).await?;
        let Some(name) = name else {
            let _ = self.index.delete(active_key(user), Condition::Any).await?;
            return Ok(());
        };
        let Some((_, version)) = self.record(user, name).await? else {
            return Err(ScriptError::Unknown(name.to_string()));
        };
        let writes = vec![
            Write::Check {
                key: script_key(user, name),
                condition: Condition::Version(version),
            },
            Write::Put {
                key: active_key(user),
                value: encode(&ActiveRecord {
                    name: name.to_string(),
                }),
                condition: Condition::Any,
            },
        ];
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(()),
            // Changed or deleted in between: say so rather than point at it.
            Outcome::Conflict => Err(ScriptError::Unknown(name.to_string())),
        }
    }

    /// Deletes the script `name`; the active script cannot be deleted.
    pub async fn delete<'a>(&self, user: impl Into<Owner<'a>>, name: &str) -> ScriptResult<()> {
        let user = user.into();
        let Some((record, version)) = self.record(user, name).await? else {
            return Err(ScriptError::Unknown(name.to_string()));
        };
        if self.active_name(user).await?.as_deref() == Some(name) {
            return Err(ScriptError::Active(name.to_string()));
        }
        match self
            .index
            .delete(script_key(user, name), Condition::Version(version))
            .await?
        {
            Outcome::Applied => {
                let _ = self.blobs.delete(&record.blob).await;
                Ok(())
            }
            Outcome::Conflict => Err(ScriptError::Unknown(name.to_string())),
        }
    }

    /// Renames a script (the active one stays active under its new name).
    pub async fn rename<'a>(
        &self,
        user: impl Into<Owner<'a>>,
        from: &str,
        to: &str,
    ) -> ScriptResult<()> {
        let user = user.into();
        if !valid_name(to) {
            return Err(ScriptError::BadName);
        }
        let Some((mut record, version)) = self.record(user, from).await? else {
            return Err(ScriptError::Unknown(from.to_string()));
        };
        if from == to {
            return Ok(());
        }
        let active = self.active_name(user).await?.as_deref() == Some(from);
        record.name = to.to_string();
        let mut writes = vec![
            Write::Delete {
                key: script_key(user, from),
                condition: Condition::Version(version),
            },
            Write::Put {
                key: script_key(user, to),
                value: encode(&record),
                condition: Condition::Absent,
            },
        ];
        if active {
            writes.push(Write::Put {
                key: active_key(user),
                value: encode(&ActiveRecord {
                    name: to.to_string(),
                }),
                condition: Condition::Any,
            });
        }
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(()),
            Outcome::Conflict => match self.record(user, to).await? {
                Some(_) => Err(ScriptError::Exists(to.to_string())),
                None => Err(ScriptError::Unknown(from.to_string())),
            },
        }
    }

    /// The active script's name and text, if the user has one: what the
    /// route stage runs for each message delivered to them.
    pub async fn active<'a>(
        &self,
        user: impl Into<Owner<'a>>,
    ) -> ScriptResult<Option<(String, String)>> {
        let user = user.into();
        let Some(name) = self.active_name(user).await? else {
            return Ok(None);
        };
        let Some((record, _)) = self.record(user, &name).await? else {
            return Ok(None);
        };
        Ok(Some((name, self.text(&record).await?)))
    }

    /// Every row and blob of `user`'s scripts (a deleted user).
    pub async fn delete_all<'a>(&self, user: impl Into<Owner<'a>>) -> ScriptResult<()> {
        let user = user.into();
        let items = self
            .index
            .query(&pk(user), SkRange::All, MAX_SCRIPTS * 4, false)
            .await?;
        for item in items {
            if let Ok(record) = decode::<ScriptRecord>(&item) {
                let _ = self.blobs.delete(&record.blob).await;
            }
            let _ = self.index.delete(item.key, Condition::Any).await?;
        }
        Ok(())
    }
}
