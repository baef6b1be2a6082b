//! User accounts: add (with the default mailboxes), list with their usage,
//! delete, and change passwords. Passwords go straight into the Argon2id
//! hash, off the async threads; neither the password nor the hash is ever
//! returned.

use serde::Serialize;
use stratus_core::accounts::{AccountError, Forward, UserRecord};
use stratus_core::{Address, Domain, password};

use super::{Service, ServiceError, ServiceResult};

/// An account, with what it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub address: String,
    /// Bytes; `None`: unlimited.
    pub quota: Option<u64>,
    /// Bytes stored, over all mailboxes.
    pub used: u64,
    pub mailboxes: usize,
}

impl Service {
    /// Checks that `address` can become a new account (valid, its domain
    /// hosted, not taken), so that a caller can refuse before asking for
    /// a password it would throw away.
    pub async fn check_new_user(&self, address: &Address) -> ServiceResult<()> {
        if self.accounts.domain(address.domain()).await?.is_none() {
            return Err(AccountError::UnknownDomain(address.domain().clone()).into());
        }
        if self.accounts.user(address).await?.is_some() {
            return Err(AccountError::UserExists(address.clone()).into());
        }
        Ok(())
    }

    /// Creates an account with the default mailboxes (INBOX, Sent, Drafts,
    /// Junk, Trash, Archive).
    pub async fn add_user(
        &self,
        address: &Address,
        password: String,
        quota: Option<u64>,
    ) -> ServiceResult<UserInfo> {
        self.check_new_user(address).await?;
        let hash = self.hash(password).await?;
        self.accounts.add_user(address, hash, quota).await?;
        self.user_info(&self.accounts.user(address).await?.ok_or_else(|| {
            ServiceError::Unavailable(format!("user {address} vanished after it was added"))
        })?)
        .await
    }

    /// The accounts of one domain, or of every hosted domain.
    pub async fn list_users(&self, domain: Option<&Domain>) -> ServiceResult<Vec<UserInfo>> {
        let domains = match domain {
            Some(d) => {
                if self.accounts.domain(d).await?.is_none() {
                    return Err(AccountError::UnknownDomain(d.clone()).into());
                }
                vec![d.clone()]
            }
            None => self
                .accounts
                .list_domains()
                .await?
                .into_iter()
                .map(|r| r.name)
                .collect(),
        };
        let mut out = Vec::new();
        for d in &domains {
            for user in self.accounts.list_users(d).await? {
                out.push(self.user_info(&user).await?);
            }
        }
        Ok(out)
    }

    /// Deletes an account and its mailboxes.
    pub async fn del_user(&self, address: &Address) -> ServiceResult<String> {
        self.accounts.del_user(address).await?;
        self.scripts.delete_all(address).await?;
        Ok(address.to_string())
    }

    /// Checks that `address` is an account, before asking for a password.
    pub async fn check_user(&self, address: &Address) -> ServiceResult<()> {
        if self.accounts.user(address).await?.is_none() {
            return Err(AccountError::UnknownUser(address.clone()).into());
        }
        Ok(())
    }

    pub async fn set_password(&self, address: &Address, password: String) -> ServiceResult<String> {
        self.check_user(address).await?;
        let hash = self.hash(password).await?;
        self.accounts.set_password(address, hash).await?;
        Ok(address.to_string())
    }

    /// Sets (or with `None` removes) the storage quota; the account with
    /// what it uses now.
    pub async fn set_quota(
        &self,
        address: &Address,
        quota: Option<u64>,
    ) -> ServiceResult<UserInfo> {
        self.accounts.set_quota(address, quota).await?;
        self.user(address).await
    }

    /// Forwards `address`'s mail (`None`: stops forwarding).
    pub async fn set_forward(
        &self,
        address: &Address,
        forward: Option<Forward>,
    ) -> ServiceResult<()> {
        Ok(self.accounts.set_forward(address, forward).await?)
    }

    /// One account, with what it uses.
    pub async fn user(&self, address: &Address) -> ServiceResult<UserInfo> {
        let user = self
            .accounts
            .user(address)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(address.clone()))?;
        self.user_info(&user).await
    }

    /// Where `address`'s mail is forwarded, if anywhere.
    pub async fn forward(&self, address: &Address) -> ServiceResult<Option<Forward>> {
        let user = self
            .accounts
            .user(address)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(address.clone()))?;
        Ok(user.forward)
    }

    async fn user_info(&self, user: &UserRecord) -> ServiceResult<UserInfo> {
        let mailboxes = self.accounts.mailboxes(&user.address).await?;
        Ok(UserInfo {
            address: user.address.to_string(),
            quota: user.quota,
            used: mailboxes.iter().map(|m| m.size).sum(),
            mailboxes: mailboxes.len(),
        })
    }
}

impl Service {
    /// Hashes a new password off the async threads (Argon2id is
    /// deliberately slow). A password that cannot be one (empty, too long,
    /// with control characters) or that the policy refuses (too short, too
    /// common) is [`ServiceError::Invalid`].
    async fn hash(&self, secret: String) -> ServiceResult<String> {
        password::check_new(&secret, self.password_min_length)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        hash(secret).await
    }
}

async fn hash(secret: String) -> ServiceResult<String> {
    tokio::task::spawn_blocking(move || password::hash(&secret))
        .await
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))?
        .map_err(|e| match e {
            password::PasswordError::Hash(_) => ServiceError::Internal(e.to_string()),
            _ => ServiceError::Invalid(e.to_string()),
        })
}
