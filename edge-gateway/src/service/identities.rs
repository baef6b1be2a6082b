//! Identities: addresses other than their own that an admin lets a user
//! send as (in MAIL FROM, From: and Sender:), for a shared role address or
//! an address at another domain. Aliases that lead to the user and plus
//! tags of their address need none.

use serde::Serialize;
use stratus_core::Address;

use super::{Service, ServiceError, ServiceResult};

/// An address a user may send as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IdentityInfo {
    pub user: String,
    pub identity: String,
}

impl Service {
    pub async fn add_identity(
        &self,
        user: &Address,
        identity: &Address,
    ) -> ServiceResult<IdentityInfo> {
        if user.account_key() == identity.account_key() {
            return Err(ServiceError::Invalid(format!(
                "{identity} is the user's own address; it needs no identity"
            )));
        }
        self.accounts.add_identity(user, identity).await?;
        Ok(IdentityInfo {
            user: user.to_string(),
            identity: identity.to_string(),
        })
    }

    pub async fn del_identity(
        &self,
        user: &Address,
        identity: &Address,
    ) -> ServiceResult<IdentityInfo> {
        self.accounts.del_identity(user, identity).await?;
        Ok(IdentityInfo {
            user: user.to_string(),
            identity: identity.to_string(),
        })
    }

    /// The identities of `user` (who must exist).
    pub async fn list_identities(&self, user: &Address) -> ServiceResult<Vec<IdentityInfo>> {
        self.check_user(user).await?;
        Ok(self
            .accounts
            .identities(user)
            .await?
            .into_iter()
            .map(|r| IdentityInfo {
                user: r.user.to_string(),
                identity: r.identity.to_string(),
            })
            .collect())
    }
}
