//! Aliases: an address whose mail goes to every one of its targets
//! (users, other aliases, or remote addresses).

use serde::Serialize;

use stratus_core::{Address, Domain};

use super::{Service, ServiceResult};

/// An alias and its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AliasInfo {
    pub alias: String,
    pub targets: Vec<String>,
}

impl Service {
    pub async fn add_alias(
        &self,
        alias: &Address,
        targets: Vec<Address>,
    ) -> ServiceResult<AliasInfo> {
        let info = AliasInfo {
            alias: alias.to_string(),
            targets: targets.iter().map(ToString::to_string).collect(),
        };
        self.accounts.add_alias(alias, targets).await?;
        Ok(info)
    }

    /// The aliases of one domain, or of every hosted domain.
    pub async fn list_aliases(&self, domain: Option<&Domain>) -> ServiceResult<Vec<AliasInfo>> {
        let mut out = Vec::new();
        for domain in self.accounts.domains_or_all(domain).await? {
            for record in self.accounts.list_aliases(&domain).await? {
                out.push(AliasInfo {
                    alias: record.alias.to_string(),
                    targets: record.targets.iter().map(ToString::to_string).collect(),
                });
            }
        }
        Ok(out)
    }

    pub async fn del_alias(&self, alias: &Address) -> ServiceResult<String> {
        self.accounts.del_alias(alias).await?;
        Ok(alias.to_string())
    }
}
