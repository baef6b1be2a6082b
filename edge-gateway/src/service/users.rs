//! User accounts: add (with the default mailboxes), list with their usage,
//! delete, change passwords, disable, grant admin roles, and app
//! passwords. Passwords go straight into the Argon2id hash, off the async
//! threads; neither a password nor a hash is ever returned (an app
//! password is shown once, when it is made).

use serde::Serialize;
use stratus_core::accounts::{AccountError, Forward, UserRecord};
use stratus_core::credentials::{self, AdminGrant, AdminRole, AppPassword};
use stratus_core::{Address, Domain, password};

use super::{Service, ServiceError, ServiceResult};

/// An account, with what it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub address: String,
    /// Bytes; `None`: unlimited.
    pub quota: Option<u64>,
    /// Bytes stored, over all mailboxes.
    pub used: u64,
    pub mailboxes: usize,
    /// A disabled account signs in nowhere; its mail still arrives.
    pub disabled: bool,
    /// What the user may administer (`null`: nothing).
    #[schema(value_type = Option<crate::http::openapi::GrantSchema>)]
    pub admin: Option<AdminGrant>,
    /// How many app passwords the user has.
    pub app_passwords: usize,
}

/// One mailbox of an account and what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MailboxInfo {
    /// As IMAP names it (`/` between levels).
    pub name: String,
    /// Its special use (RFC 6154), e.g. `\Sent`.
    pub special_use: Option<String>,
    pub messages: u32,
    pub unseen: u32,
    /// Bytes.
    pub size: u64,
    pub subscribed: bool,
}

/// An app password as shown: never the password (but once, when made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AppPasswordInfo {
    pub name: String,
    /// The password's first four characters, to tell which one a device
    /// holds.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
}

impl From<&AppPassword> for AppPasswordInfo {
    fn from(p: &AppPassword) -> Self {
        AppPasswordInfo {
            name: p.name.clone(),
            id: p.id.clone(),
            created: p.created,
        }
    }
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

    /// Sets a new password: every session ends and the app passwords go.
    /// Returns the account's new credential generation.
    pub async fn set_password(&self, address: &Address, password: String) -> ServiceResult<u64> {
        self.check_user(address).await?;
        let hash = self.hash(password).await?;
        Ok(self.accounts.set_password(address, hash).await?)
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

    /// An account's mailboxes with what is in them: the read-only view
    /// an admin gets (never the messages).
    pub async fn mailboxes(&self, address: &Address) -> ServiceResult<Vec<MailboxInfo>> {
        self.check_user(address).await?;
        Ok(self
            .accounts
            .mailboxes(address)
            .await?
            .into_iter()
            .map(|m| MailboxInfo {
                name: m.name.to_string(),
                special_use: m.special_use.map(|s| s.attribute().to_string()),
                messages: m.messages,
                unseen: m.unseen,
                size: m.size,
                subscribed: m.subscribed,
            })
            .collect())
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
            disabled: user.disabled,
            admin: user.admin.clone(),
            app_passwords: user.app_passwords.len(),
        })
    }

    fn record(&self, user: Option<UserRecord>, address: &Address) -> ServiceResult<UserRecord> {
        user.ok_or_else(|| AccountError::UnknownUser(address.clone()).into())
    }

    /// Disables the account (its sessions end everywhere; it signs in
    /// nowhere; its mail still arrives) or enables it again.
    pub async fn set_disabled(&self, address: &Address, disabled: bool) -> ServiceResult<UserInfo> {
        self.accounts.set_disabled(address, disabled).await?;
        self.user(address).await
    }

    /// The fewest characters a new password may have.
    pub fn password_min_length(&self) -> usize {
        self.password_min_length
    }

    /// Makes the user an admin, a domain admin of `domains`, or (`None`)
    /// neither. `by` (an admin or domain admin; `None`: the command line)
    /// grants only what it holds itself.
    pub async fn set_admin(
        &self,
        address: &Address,
        grant: Option<AdminGrant>,
        by: Option<&super::Principal>,
    ) -> ServiceResult<UserInfo> {
        self.check_admin(address, grant.as_ref(), by).await?;
        self.accounts.set_admin(address, grant).await?;
        self.user(address).await
    }

    /// Whether [`Service::set_admin`] would take this grant, without
    /// changing anything: so that a request that changes more than the
    /// role is refused before any of it is made.
    pub async fn check_admin(
        &self,
        address: &Address,
        grant: Option<&AdminGrant>,
        by: Option<&super::Principal>,
    ) -> ServiceResult<()> {
        if let Some(g) = &grant {
            match g.role {
                AdminRole::Admin if !g.domains.is_empty() => {
                    return Err(ServiceError::Invalid(
                        "an admin covers every domain: give no domain".into(),
                    ));
                }
                AdminRole::DomainAdmin if g.domains.is_empty() => {
                    return Err(ServiceError::Invalid(
                        "a domain admin needs at least one domain".into(),
                    ));
                }
                _ => {}
            }
        }
        if let Some(g) = grant {
            for d in &g.domains {
                if self.accounts.domain(d).await?.is_none() {
                    return Err(AccountError::UnknownDomain(d.clone()).into());
                }
            }
        }
        if let Some(by) = by {
            let current = self.record(self.accounts.user(address).await?, address)?;
            for g in [grant, current.admin.as_ref()].into_iter().flatten() {
                let domains: Vec<String> =
                    g.domains.iter().map(|d| d.as_str().to_string()).collect();
                if !by.may_grant(g.role, &domains) {
                    return Err(ServiceError::Forbidden(
                        "only roles and domains the granter holds can be granted or taken".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Makes an app password named `name`: its description and the
    /// password, shown only now.
    pub async fn add_app_password(
        &self,
        address: &Address,
        name: &str,
    ) -> ServiceResult<(AppPasswordInfo, String)> {
        credentials::check_app_password_name(name).map_err(ServiceError::Invalid)?;
        let user = self.record(self.accounts.user(address).await?, address)?;
        if user.app_passwords.iter().any(|p| p.name == name) {
            return Err(AccountError::AppPasswordExists {
                user: address.clone(),
                name: name.to_string(),
            }
            .into());
        }
        // An id the user already has would make a login ambiguous.
        let (id, shown) = loop {
            let (id, shown) = credentials::new_app_password();
            if !user.app_passwords.iter().any(|p| p.id == id) {
                break (id, shown);
            }
        };
        let plain = credentials::normalise_app_password(&shown).ok_or_else(|| {
            ServiceError::Internal("a new app password has the wrong shape".into())
        })?;
        let record = AppPassword {
            id,
            name: name.to_string(),
            hash: hash(plain).await?,
            created: stratus_core::mailstore::now(),
        };
        self.accounts
            .add_app_password(address, record.clone())
            .await?;
        Ok((AppPasswordInfo::from(&record), shown))
    }

    pub async fn list_app_passwords(
        &self,
        address: &Address,
    ) -> ServiceResult<Vec<AppPasswordInfo>> {
        let user = self.record(self.accounts.user(address).await?, address)?;
        Ok(user
            .app_passwords
            .iter()
            .map(AppPasswordInfo::from)
            .collect())
    }

    /// Deletes the app password `name`; sessions signed in with it end.
    pub async fn del_app_password(
        &self,
        address: &Address,
        name: &str,
    ) -> ServiceResult<AppPasswordInfo> {
        let gone = self.accounts.del_app_password(address, name).await?;
        Ok(AppPasswordInfo::from(&gone))
    }

    /// Takes `domain` out of every user's domain-admin grant (a grant left
    /// with no domain goes).
    pub(super) async fn forget_domain_in_grants(&self, domain: &Domain) -> ServiceResult<()> {
        for d in self.accounts.list_domains().await? {
            for user in self.accounts.list_users(&d.name).await? {
                let Some(grant) = &user.admin else { continue };
                if !grant.domains.contains(domain) {
                    continue;
                }
                let mut grant = grant.clone();
                grant.domains.retain(|x| x != domain);
                let grant = (!grant.domains.is_empty()).then_some(grant);
                self.accounts.set_admin(&user.address, grant).await?;
            }
        }
        Ok(())
    }
}

impl Service {
    /// Hashes a new password off the async threads (Argon2id is
    /// deliberately slow). A password that cannot be one (empty, too long,
    /// with control characters) or that the policy refuses (too short, too
    /// common) is [`ServiceError::Invalid`].
    pub(super) async fn hash(&self, secret: String) -> ServiceResult<String> {
        password::check_new(&secret, self.password_min_length)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        hash(secret).await
    }
}

/// Hashes a secret that is not a password anyone chose (no policy).
pub(super) async fn hash_unchecked(secret: String) -> ServiceResult<String> {
    hash(secret).await
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
