//! Users' Sieve scripts: stored only once they parse (the parser's error,
//! with its line, is the refusal), listed, activated, read, renamed and
//! deleted. The CLI and ManageSieve both come through here.

use stratus_core::Address;
use stratus_core::sieve::{ScriptError, ScriptInfo};

use super::{Service, ServiceError, ServiceResult};

impl From<ScriptError> for ServiceError {
    fn from(e: ScriptError) -> Self {
        let text = e.to_string();
        match e {
            ScriptError::Unknown(_) => ServiceError::NotFound(text),
            ScriptError::Exists(_) | ScriptError::Active(_) => ServiceError::Conflict(text),
            ScriptError::TooMany | ScriptError::BadName => ServiceError::Invalid(text),
            ScriptError::Account(a) => a.into(),
        }
    }
}

/// The limits scripts are checked and run with.
pub fn limits() -> stratus_sieve::Limits {
    stratus_sieve::Limits::default()
}

/// Whether `text` is a script we can run: `Err` holds the parser's
/// line-numbered reason.
pub fn check_script(text: &str) -> ServiceResult<()> {
    stratus_sieve::parse(text, &limits())
        .map(|_| ())
        .map_err(|e| ServiceError::Invalid(format!("script refused: {e}")))
}

impl Service {
    pub async fn sieve_list(&self, user: &Address) -> ServiceResult<Vec<ScriptInfo>> {
        Ok(self.scripts.list(user).await?)
    }

    pub async fn sieve_get(&self, user: &Address, name: &str) -> ServiceResult<String> {
        Ok(self.scripts.get(user, name).await?)
    }

    /// Checks and stores a script (replacing one of the same name).
    pub async fn sieve_put(&self, user: &Address, name: &str, text: &str) -> ServiceResult<()> {
        check_script(text)?;
        Ok(self.scripts.put(user, name, text).await?)
    }

    pub async fn sieve_activate(&self, user: &Address, name: Option<&str>) -> ServiceResult<()> {
        Ok(self.scripts.activate(user, name).await?)
    }

    pub async fn sieve_delete(&self, user: &Address, name: &str) -> ServiceResult<()> {
        Ok(self.scripts.delete(user, name).await?)
    }

    pub async fn sieve_rename(&self, user: &Address, from: &str, to: &str) -> ServiceResult<()> {
        Ok(self.scripts.rename(user, from, to).await?)
    }
}
