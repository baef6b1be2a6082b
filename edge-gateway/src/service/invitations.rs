//! Invitations: an account made without a password, and a link with which
//! its owner chooses one. Also a way to let someone set a new password
//! without an admin learning it (an invitation for an existing account).
//!
//! The link holds a token: a 16-hex id, then 32 random bytes in hex. The
//! index keeps `invite` | id with the address, the SHA-256 of the secret
//! part, when it expires and the account's credential generation when it
//! was made; `invitefor` | address names the one live invitation of an
//! address, so a new one replaces the old. Accepting sets the password
//! only while the generation and the account's role are unchanged: a
//! password set meanwhile, an account deleted and made again, or one
//! given a role since (which the inviter might not hold), voids the link.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratus_core::Address;
use stratus_core::accounts::AccountError;
use stratus_core::credentials::{AdminGrant, now_ms};
use stratus_core::ids::{random_hex, secrets_match, sha256_hex};
use stratus_core::ports::{Condition, Key, Write};

use super::{Service, ServiceError, ServiceResult, UserInfo};

const PK: &str = "invite";
const BY_ADDRESS: &str = "invitefor";
const ID_LEN: usize = 16;

/// How long an invitation link works.
pub const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    address: Address,
    secret_sha256: String,
    /// Unix ms.
    expires: i64,
    generation: u64,
    /// The account's role when the invitation was made: one given a role
    /// since is no longer the account the inviter could change.
    #[serde(default)]
    admin: Option<AdminGrant>,
}

/// An invitation just made: the only time its token is shown.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub address: String,
    /// What the link carries; the account's owner needs it, nobody else.
    pub token: String,
    /// The page where the owner chooses a password.
    pub url: String,
    /// Unix seconds.
    pub expires: i64,
}

impl std::fmt::Debug for Invitation {
    /// Without the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("address", &self.address)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// What a link's page may show before the password is chosen.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvitationInfo {
    pub address: String,
    /// Unix seconds.
    pub expires: i64,
}

fn unknown() -> ServiceError {
    ServiceError::NotFound("no such invitation, or it has expired or been used".into())
}

impl Service {
    /// Makes an account without a password anyone knows, and an
    /// invitation to choose one.
    pub async fn invite_user(
        &self,
        address: &Address,
        quota: Option<u64>,
    ) -> ServiceResult<(UserInfo, Invitation)> {
        self.check_new_user(address).await?;
        // A hash like any other, of a secret nobody keeps: a sign-in
        // costs the same and never works.
        let unknown = super::users::hash_unchecked(random_hex(32)).await?;
        self.accounts.add_user(address, unknown, quota).await?;
        let invitation = self.invite(address).await?;
        Ok((self.user(address).await?, invitation))
    }

    /// A new invitation for an existing account (the previous one stops
    /// working): accepting it sets the account's password.
    pub async fn invite(&self, address: &Address) -> ServiceResult<Invitation> {
        let user = self
            .accounts
            .user(address)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(address.clone()))?;
        let (id, secret) = (random_hex(ID_LEN / 2), random_hex(32));
        let expires = now_ms() + INVITATION_LIFETIME.as_millis() as i64;
        let record = Record {
            address: address.clone(),
            secret_sha256: sha256_hex(secret.as_bytes()),
            expires,
            generation: user.generation,
            admin: user.admin.clone(),
        };
        let by_address = Key::new(BY_ADDRESS, address.account_key());
        let old = self.index.get(&by_address).await.map_err(store)?;
        let mut writes = vec![
            Write::Put {
                key: Key::new(PK, id.as_str()),
                value: serde_json::to_vec(&record).expect("invitations serialise"),
                condition: Condition::Absent,
            },
            // Only over the invitation read: two made at once leave one.
            Write::Put {
                key: by_address.clone(),
                value: id.clone().into_bytes(),
                condition: old
                    .as_ref()
                    .map_or(Condition::Absent, |o| Condition::Version(o.version)),
            },
        ];
        if let Some(old) = &old {
            writes.push(Write::Delete {
                key: Key::new(PK, String::from_utf8_lossy(&old.value).into_owned()),
                condition: Condition::Any,
            });
        }
        if self.index.transact(writes).await.map_err(store)?
            == stratus_core::ports::Outcome::Conflict
        {
            return Err(ServiceError::Conflict(format!(
                "another invitation for {address} was made at the same moment; try again"
            )));
        }
        let token = format!("{id}{secret}");
        Ok(Invitation {
            address: address.to_string(),
            url: format!("{}/admin#/invite/{token}", self.public_url),
            token,
            expires: expires / 1000,
        })
    }

    /// The invitation `token` names, while it works.
    pub async fn invitation(&self, token: &str) -> ServiceResult<InvitationInfo> {
        let (_, record) = self.live(token).await?;
        Ok(InvitationInfo {
            address: record.address.to_string(),
            expires: record.expires / 1000,
        })
    }

    /// Sets the password the invitation `token` lets its owner choose; the
    /// invitation is used up. The account's address.
    pub async fn accept_invitation(&self, token: &str, password: String) -> ServiceResult<Address> {
        let (id, record) = self.live(token).await?;
        let hash = self.hash(password).await?;
        self.accounts
            .set_password_if(&record.address, hash, |u| {
                u.generation == record.generation && u.admin == record.admin
            })
            .await
            .map_err(|e| match e {
                AccountError::Superseded(_) | AccountError::UnknownUser(_) => unknown(),
                other => other.into(),
            })?;
        let mut writes = vec![Write::Delete {
            key: Key::new(PK, id.as_str()),
            condition: Condition::Any,
        }];
        // The address's pointer, if it still names this one (not a newer).
        let by_address = Key::new(BY_ADDRESS, record.address.account_key());
        if let Some(pointer) = self.index.get(&by_address).await.map_err(store)?
            && pointer.value == id.as_bytes()
        {
            writes.push(Write::Delete {
                key: by_address,
                condition: Condition::Version(pointer.version),
            });
        }
        let _ = self.index.transact(writes).await.map_err(store)?;
        Ok(record.address)
    }

    /// Deletes invitations that have expired (and the pointers that
    /// name them); how many went.
    pub async fn prune_invitations(&self) -> ServiceResult<usize> {
        let now = now_ms();
        let items = self
            .index
            .query(PK, stratus_core::ports::SkRange::All, usize::MAX, false)
            .await
            .map_err(store)?;
        let mut n = 0;
        for item in items {
            let record = serde_json::from_slice::<Record>(&item.value).ok();
            if record.as_ref().is_some_and(|r| r.expires > now) {
                continue;
            }
            let mut writes = vec![Write::Delete {
                key: item.key.clone(),
                condition: Condition::Version(item.version),
            }];
            if let Some(r) = &record {
                let by_address = Key::new(BY_ADDRESS, r.address.account_key());
                if let Some(pointer) = self.index.get(&by_address).await.map_err(store)?
                    && pointer.value == item.key.sk.as_bytes()
                {
                    writes.push(Write::Delete {
                        key: by_address,
                        condition: Condition::Version(pointer.version),
                    });
                }
            }
            if self.index.transact(writes).await.map_err(store)?
                == stratus_core::ports::Outcome::Applied
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The record of a token that works now, with its id.
    async fn live(&self, token: &str) -> ServiceResult<(String, Record)> {
        let token = token.trim();
        if token.len() != ID_LEN + 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let (id, secret) = token.split_at(ID_LEN);
        let item = self
            .index
            .get(&Key::new(PK, id))
            .await
            .map_err(store)?
            .ok_or_else(unknown)?;
        let record: Record = serde_json::from_slice(&item.value)
            .map_err(|e| ServiceError::Internal(format!("an unreadable invitation: {e}")))?;
        let given = sha256_hex(secret.to_ascii_lowercase().as_bytes());
        if !secrets_match(given.as_bytes(), record.secret_sha256.as_bytes())
            || record.expires < now_ms()
        {
            return Err(unknown());
        }
        Ok((id.to_string(), record))
    }
}

fn store(e: stratus_core::ports::StoreError) -> ServiceError {
    ServiceError::from(AccountError::from(e))
}
