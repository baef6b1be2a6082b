//! Distribution lists: an address of ours whose mail goes to its members,
//! under a posting policy, with a bounce address that counts members'
//! bounces and an unsubscribe address.
//!
//! Layout:
//! - row `list#<domain>` | `<local part>`: the list ([`ListRecord`]);
//! - row `member#<list account key>` | `<member account key>`: a member
//!   ([`Member`]), with the bounces counted;
//! - row `listheld#<list account key>` | `<queue id>`: a message held for
//!   the owners ([`HeldPost`]); its text is kept at blob
//!   `listheld/<list hash>/<queue id>` (the record names it) until it is
//!   approved or discarded. One message held by two lists is two bodies:
//!   what one list's owner does to it leaves the other's alone.
//!
//! `LIST-bounces@domain` takes the members' bounces (the list's envelope
//! sender) and `LIST-unsubscribe@domain` unsubscribes whoever writes to it.

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, AccountResult, Accounts, decode, encode};
use crate::address::{Address, Domain};
use crate::ids::{BlobKey, QueueId};
use crate::job::Accepted;
use crate::ports::{BlobStore, Condition, Key, Outcome, SkRange, Write};

/// A member who bounced this many times in a row is disabled.
pub const BOUNCE_LIMIT: u32 = 5;

/// Who may post to a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Members only (by envelope sender); others are held for the owners.
    #[default]
    Members,
    Anyone,
    /// Every post is held until an owner approves it.
    Moderated,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Members => "members",
            Policy::Anyone => "anyone",
            Policy::Moderated => "moderated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRecord {
    pub address: Address,
    pub policy: Policy,
    pub owners: Vec<Address>,
    pub created: i64,
}

impl ListRecord {
    /// `LIST-bounces@domain`: the envelope sender of the list's mail.
    pub fn bounce_address(&self) -> Address {
        self.suffixed("bounces")
    }

    /// `LIST-unsubscribe@domain`.
    pub fn unsubscribe_address(&self) -> Address {
        self.suffixed("unsubscribe")
    }

    fn suffixed(&self, suffix: &str) -> Address {
        suffixed(&self.address, suffix).unwrap_or_else(|| self.address.clone())
    }

    /// The `List-Id` (RFC 2919): the address with `.` for `@`.
    pub fn list_id(&self) -> String {
        format!(
            "{}.{}",
            self.address.local_part().to_lowercase(),
            self.address.domain()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub address: Address,
    /// Bounces since the last delivery that did not bounce.
    #[serde(default)]
    pub bounces: u32,
    /// Set after [`BOUNCE_LIMIT`] bounces: no more mail until subscribed
    /// again.
    #[serde(default)]
    pub disabled: bool,
}

/// What mail to an address of a list is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Post,
    Bounces,
    Unsubscribe,
}

/// A post held for the owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPost {
    /// The message, its body at [`held_body`].
    pub message: Accepted,
    pub why: String,
    pub held_at: i64,
    /// Set when an owner approved it: route then distributes it.
    #[serde(default)]
    pub approved: bool,
    /// Set once route sent it to the members (the row and its text stay,
    /// so that a route job run again sends the same copies, until the
    /// list is deleted).
    #[serde(default)]
    pub distributed: bool,
}

/// `local-suffix@domain`, if that is an address.
fn suffixed(list: &Address, suffix: &str) -> Option<Address> {
    Address::parse(&format!("{}-{suffix}@{}", list.local_part(), list.domain())).ok()
}

fn list_key(address: &Address) -> Key {
    Key::new(
        format!("list#{}", address.domain()),
        address.local_part().to_lowercase(),
    )
}

fn member_pk(list: &Address) -> String {
    format!("member#{}", list.account_key())
}

fn held_pk(list: &Address) -> String {
    format!("listheld#{}", list.account_key())
}

/// Where `list`'s held post `id` has its text (posts held before the
/// list was part of the key name theirs in their record).
pub fn held_body(list: &Address, id: &QueueId) -> BlobKey {
    let list = &crate::ids::sha256_hex(list.account_key().as_bytes())[..16];
    BlobKey::parse(&format!("listheld/{list}/{}", id.as_str())).expect("a queue id makes a key")
}

impl Accounts {
    /// Creates a list; its address (and its `-bounces` and `-unsubscribe`
    /// addresses) must not be a user or an alias.
    pub async fn add_list(
        &self,
        list: &Address,
        policy: Policy,
        owners: Vec<Address>,
    ) -> AccountResult<ListRecord> {
        if owners.is_empty() {
            return Err(AccountError::InvalidSetting(
                "a list needs an owner, who is told of held posts".into(),
            ));
        }
        for suffix in ["bounces", "unsubscribe"] {
            if suffixed(list, suffix).is_none() {
                return Err(AccountError::InvalidSetting(format!(
                    "{list} is too long a name for a list: {}-{suffix}@{} must be an address too",
                    list.local_part(),
                    list.domain()
                )));
            }
        }
        let record = ListRecord {
            address: list.clone(),
            policy,
            owners,
            created: crate::mailstore::now(),
        };
        for taken in [
            list.clone(),
            record.bounce_address(),
            record.unsubscribe_address(),
        ] {
            if self.user(&taken).await?.is_some() || self.alias(&taken).await?.is_some() {
                return Err(AccountError::AddressTaken(taken));
            }
        }
        let writes = vec![
            Write::Check {
                key: Key::new("domain", list.domain().as_str()),
                condition: Condition::Present,
            },
            Write::Put {
                key: list_key(list),
                value: encode(&record),
                condition: Condition::Absent,
            },
        ];
        match self.index.transact(writes).await? {
            Outcome::Applied => Ok(record),
            Outcome::Conflict if self.domain(list.domain()).await?.is_none() => {
                Err(AccountError::UnknownDomain(list.domain().clone()))
            }
            Outcome::Conflict => Err(AccountError::ListExists(list.clone())),
        }
    }

    pub async fn list(&self, list: &Address) -> AccountResult<Option<ListRecord>> {
        self.record(&list_key(list)).await
    }

    /// The lists of `domain`, or of every domain.
    pub async fn lists(&self, domain: Option<&Domain>) -> AccountResult<Vec<ListRecord>> {
        let mut out = Vec::new();
        for d in self.domains_or_all(domain).await? {
            out.extend(self.records::<ListRecord>(&format!("list#{d}")).await?);
        }
        Ok(out)
    }

    /// The list and what mail to `address` is for, if it is one of a
    /// list's addresses.
    pub async fn list_role(&self, address: &Address) -> AccountResult<Option<(ListRecord, Role)>> {
        if let Some(list) = self.list(address).await? {
            return Ok(Some((list, Role::Post)));
        }
        let local = address.local_part();
        for (suffix, role) in [
            ("-bounces", Role::Bounces),
            ("-unsubscribe", Role::Unsubscribe),
        ] {
            // By bytes, and only at a character boundary (`get`): a
            // local part may be UTF-8.
            let Some(base) = local
                .len()
                .checked_sub(suffix.len())
                .filter(|&n| n > 0)
                .and_then(|n| Some((local.get(..n)?, local.get(n..)?)))
                .filter(|(_, tail)| tail.eq_ignore_ascii_case(suffix))
                .map(|(base, _)| base)
            else {
                continue;
            };
            let Ok(list) = Address::parse(&format!("{base}@{}", address.domain())) else {
                continue;
            };
            if let Some(list) = self.list(&list).await? {
                return Ok(Some((list, role)));
            }
        }
        Ok(None)
    }

    /// Deletes a list, its members and held posts.
    pub async fn del_list(&self, list: &Address, blobs: &dyn BlobStore) -> AccountResult<()> {
        if self.list(list).await?.is_none() {
            return Err(AccountError::UnknownList(list.clone()));
        }
        for pk in [member_pk(list), held_pk(list)] {
            for item in self
                .index
                .query(&pk, SkRange::All, usize::MAX, false)
                .await?
            {
                if pk.starts_with("listheld#")
                    && let Ok(held) = decode::<HeldPost>(&item)
                {
                    blobs.delete(&held.message.body).await?;
                }
                let _ = self
                    .index
                    .transact(vec![Write::Delete {
                        key: item.key,
                        condition: Condition::Any,
                    }])
                    .await?;
            }
        }
        let _ = self
            .index
            .transact(vec![Write::Delete {
                key: list_key(list),
                condition: Condition::Any,
            }])
            .await?;
        Ok(())
    }

    /// Subscribes `members` (again: a disabled member is enabled); how
    /// many were not members before. A list cannot be a member.
    pub async fn subscribe(&self, list: &Address, members: &[Address]) -> AccountResult<usize> {
        if self.list(list).await?.is_none() {
            return Err(AccountError::UnknownList(list.clone()));
        }
        let mut added = 0;
        for m in members {
            // Not a list, nor an address that leads to one: a list's copy
            // would come back to a list.
            if self.list_role(m).await?.is_some() || !self.expand(m).await?.lists.is_empty() {
                return Err(AccountError::ListInList(m.clone()));
            }
            let key = Key::new(member_pk(list), m.account_key());
            if self.index.get(&key).await?.is_none() {
                added += 1;
            }
            let member = Member {
                address: m.clone(),
                bounces: 0,
                disabled: false,
            };
            let _ = self
                .index
                .transact(vec![Write::Put {
                    key,
                    value: encode(&member),
                    condition: Condition::Any,
                }])
                .await?;
        }
        Ok(added)
    }

    /// Unsubscribes `members`; how many were members.
    pub async fn unsubscribe(&self, list: &Address, members: &[Address]) -> AccountResult<usize> {
        let mut removed = 0;
        for m in members {
            let outcome = self
                .index
                .transact(vec![Write::Delete {
                    key: Key::new(member_pk(list), m.account_key()),
                    condition: Condition::Present,
                }])
                .await?;
            if outcome == Outcome::Applied {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub async fn members(&self, list: &Address) -> AccountResult<Vec<Member>> {
        self.records(&member_pk(list)).await
    }

    pub async fn member(&self, list: &Address, address: &Address) -> AccountResult<Option<Member>> {
        self.record(&Key::new(member_pk(list), address.account_key()))
            .await
    }

    /// Counts a bounce of `address`'s copy; the member as it is now
    /// (`None`: not a member).
    pub async fn record_bounce(
        &self,
        list: &Address,
        address: &Address,
    ) -> AccountResult<Option<Member>> {
        let key = Key::new(member_pk(list), address.account_key());
        loop {
            let Some(item) = self.index.get(&key).await? else {
                return Ok(None);
            };
            let mut member: Member = decode(&item)?;
            member.bounces += 1;
            member.disabled |= member.bounces >= BOUNCE_LIMIT;
            let put = Write::Put {
                key: key.clone(),
                value: encode(&member),
                condition: Condition::Version(item.version),
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                return Ok(Some(member));
            }
        }
    }

    /// Holds `message` (its text `body`) for `list`'s owners; idempotent.
    pub async fn hold_post(
        &self,
        blobs: &dyn BlobStore,
        list: &Address,
        message: &Accepted,
        body: bytes::Bytes,
        why: &str,
    ) -> AccountResult<()> {
        let key = held_body(list, &message.queue_id);
        blobs.put(&key, body).await?;
        let held = HeldPost {
            message: Accepted {
                body: key,
                ..message.clone()
            },
            why: why.to_string(),
            held_at: crate::mailstore::now(),
            approved: false,
            distributed: false,
        };
        let _ = self
            .index
            .transact(vec![Write::Put {
                key: Key::new(held_pk(list), message.queue_id.as_str()),
                value: encode(&held),
                condition: Condition::Absent,
            }])
            .await?;
        Ok(())
    }

    pub async fn held_posts(&self, list: &Address) -> AccountResult<Vec<HeldPost>> {
        self.records(&held_pk(list)).await
    }

    pub async fn held_post(&self, list: &Address, id: &QueueId) -> AccountResult<Option<HeldPost>> {
        self.record(&Key::new(held_pk(list), id.as_str())).await
    }

    /// Marks a held post approved; the post, to route again (its
    /// recipient the list).
    pub async fn approve_post(&self, list: &Address, id: &QueueId) -> AccountResult<HeldPost> {
        let key = Key::new(held_pk(list), id.as_str());
        loop {
            let item = self
                .index
                .get(&key)
                .await?
                .ok_or_else(|| AccountError::UnknownHeld(list.clone(), id.to_string()))?;
            let mut held: HeldPost = decode(&item)?;
            if held.approved {
                return Err(AccountError::InvalidSetting(format!(
                    "{id} is approved already"
                )));
            }
            held.approved = true;
            let put = Write::Put {
                key: key.clone(),
                value: encode(&held),
                condition: Condition::Version(item.version),
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                return Ok(held);
            }
        }
    }

    /// Marks an approved post sent to the members.
    pub async fn post_distributed(&self, list: &Address, id: &QueueId) -> AccountResult<()> {
        let key = Key::new(held_pk(list), id.as_str());
        loop {
            let Some(item) = self.index.get(&key).await? else {
                return Ok(());
            };
            let mut held: HeldPost = decode(&item)?;
            held.distributed = true;
            let put = Write::Put {
                key: key.clone(),
                value: encode(&held),
                condition: Condition::Version(item.version),
            };
            if self.index.transact(vec![put]).await? == Outcome::Applied {
                return Ok(());
            }
        }
    }

    /// Forgets a held post (discarded).
    pub async fn drop_post(
        &self,
        blobs: &dyn BlobStore,
        list: &Address,
        id: &QueueId,
    ) -> AccountResult<bool> {
        let key = Key::new(held_pk(list), id.as_str());
        let Some(item) = self.index.get(&key).await? else {
            return Ok(false);
        };
        let held: HeldPost = decode(&item)?;
        let outcome = self
            .index
            .transact(vec![Write::Delete {
                key,
                condition: Condition::Version(item.version),
            }])
            .await?;
        // Only the text of the post this list held, once it is gone.
        if outcome == Outcome::Applied {
            blobs.delete(&held.message.body).await?;
        }
        Ok(outcome == Outcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn list_addresses_are_found_by_their_role_and_utf8_is_safe() {
        let accounts = Accounts::new(std::sync::Arc::new(crate::ports::MemoryIndex::default()));
        let domain = Domain::parse("example.com").unwrap();
        accounts.add_domain(&domain).await.unwrap();
        let owner = Address::parse("owner@example.com").unwrap();
        let crew = Address::parse("crew@example.com").unwrap();
        accounts
            .add_list(&crew, Policy::Members, vec![owner])
            .await
            .unwrap();
        let role = |s: &str| {
            let accounts = accounts.clone();
            let a = Address::parse(s).unwrap();
            async move {
                accounts
                    .list_role(&a)
                    .await
                    .unwrap()
                    .map(|(l, r)| (l.address.to_string(), r))
            }
        };
        assert_eq!(
            role("crew@example.com").await,
            Some(("crew@example.com".into(), Role::Post))
        );
        assert_eq!(
            role("CREW-Bounces@example.com").await,
            Some(("crew@example.com".into(), Role::Bounces))
        );
        assert_eq!(
            role("crew-unsubscribe@example.com").await,
            Some(("crew@example.com".into(), Role::Unsubscribe))
        );
        // A multi-byte character where a suffix would start: no panic.
        for other in [
            "aébounces@example.com",
            "éé-bounces@example.com",
            "-bounces@example.com",
            "x@example.com",
        ] {
            assert_eq!(role(other).await, None, "{other}");
        }
    }
}
