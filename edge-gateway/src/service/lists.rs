//! Distribution lists: create and delete them, manage members, and
//! approve or discard the posts held for their owners.

use stratus_core::Address;
use stratus_core::accounts::AccountError;
use stratus_core::ids::QueueId;
use stratus_core::job::{Job, Verdict};
use stratus_core::lists::{HeldPost, ListRecord, Member, Policy};

use super::{Service, ServiceError, ServiceResult};

/// A list as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ListInfo {
    pub address: String,
    /// Who may post: `members`, `anyone` or `moderated`.
    #[schema(value_type = String)]
    pub policy: &'static str,
    /// Who is told of held posts.
    pub owners: Vec<String>,
    pub members: usize,
    /// The envelope sender of the list's mail, where bounces come back.
    pub bounces: String,
    /// Mail here unsubscribes its sender.
    pub unsubscribe: String,
}

impl ListInfo {
    pub fn of(list: &ListRecord, members: usize) -> Self {
        ListInfo {
            address: list.address.to_string(),
            policy: list.policy.as_str(),
            owners: list.owners.iter().map(ToString::to_string).collect(),
            members,
            bounces: list.bounce_address().to_string(),
            unsubscribe: list.unsubscribe_address().to_string(),
        }
    }
}

/// A member of a list, with its bounces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MemberInfo {
    pub address: String,
    /// Bounces since the last delivery that did not bounce.
    pub bounces: u32,
    /// No more mail until subscribed again (after too many bounces).
    pub disabled: bool,
}

impl From<&Member> for MemberInfo {
    fn from(m: &Member) -> Self {
        MemberInfo {
            address: m.address.to_string(),
            bounces: m.bounces,
            disabled: m.disabled,
        }
    }
}

/// A post held for a list's owners.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct HeldPostInfo {
    /// Its queue id: what approve and discard take.
    pub id: String,
    /// The envelope sender (`null`: a bounce).
    pub from: Option<String>,
    /// Why it is held.
    pub why: String,
    /// When (Unix seconds).
    pub held_at: i64,
    /// Approved, and on its way to the members.
    pub approved: bool,
}

impl From<&HeldPost> for HeldPostInfo {
    fn from(h: &HeldPost) -> Self {
        HeldPostInfo {
            id: h.message.queue_id.to_string(),
            from: h
                .message
                .envelope
                .mail_from
                .as_ref()
                .map(ToString::to_string),
            why: h.why.clone(),
            held_at: h.held_at,
            approved: h.approved,
        }
    }
}

impl Service {
    pub async fn add_list(
        &self,
        list: &Address,
        policy: Policy,
        owners: Vec<Address>,
    ) -> ServiceResult<ListRecord> {
        Ok(self.accounts.add_list(list, policy, owners).await?)
    }

    pub async fn lists(&self) -> ServiceResult<Vec<(ListRecord, usize)>> {
        let mut out = Vec::new();
        for list in self.accounts.lists(None).await? {
            let members = self.accounts.members(&list.address).await?.len();
            out.push((list, members));
        }
        Ok(out)
    }

    /// One list, with how many members it has.
    pub async fn list_info(&self, list: &Address) -> ServiceResult<ListInfo> {
        let record = self.known_list(list).await?;
        let members = self.accounts.members(list).await?.len();
        Ok(ListInfo::of(&record, members))
    }

    pub async fn del_list(&self, list: &Address) -> ServiceResult<()> {
        Ok(self.accounts.del_list(list, self.blobs.as_ref()).await?)
    }

    pub async fn subscribe(&self, list: &Address, members: &[Address]) -> ServiceResult<usize> {
        Ok(self.accounts.subscribe(list, members).await?)
    }

    pub async fn unsubscribe(&self, list: &Address, members: &[Address]) -> ServiceResult<usize> {
        self.known_list(list).await?;
        Ok(self.accounts.unsubscribe(list, members).await?)
    }

    pub async fn members(&self, list: &Address) -> ServiceResult<Vec<Member>> {
        self.known_list(list).await?;
        Ok(self.accounts.members(list).await?)
    }

    pub async fn held_posts(&self, list: &Address) -> ServiceResult<Vec<HeldPost>> {
        self.known_list(list).await?;
        Ok(self.accounts.held_posts(list).await?)
    }

    /// Approves a held post: it goes to the list's members.
    pub async fn approve_post(&self, list: &Address, id: &QueueId) -> ServiceResult<HeldPost> {
        let held = self.accounts.approve_post(list, id).await?;
        let mut message = held.message.clone();
        // To the list alone: its other recipients had their copies.
        message.envelope.recipients.retain(|r| r.address == *list);
        if message.envelope.recipients.is_empty() {
            message
                .envelope
                .recipients
                .push(stratus_core::job::Recipient {
                    address: list.clone(),
                    notify: None,
                    orcpt: None,
                    forwarded_by: None,
                });
        }
        let job = Job::Route {
            message,
            verdict: Verdict::Deliver,
        };
        self.queue
            .send(job.queue(), &job.to_json(), std::time::Duration::ZERO)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(held)
    }

    pub async fn discard_post(&self, list: &Address, id: &QueueId) -> ServiceResult<()> {
        if self
            .accounts
            .drop_post(self.blobs.as_ref(), list, id)
            .await?
        {
            Ok(())
        } else {
            Err(AccountError::UnknownHeld(list.clone(), id.to_string()).into())
        }
    }

    async fn known_list(&self, list: &Address) -> ServiceResult<ListRecord> {
        Ok(self
            .accounts
            .list(list)
            .await?
            .ok_or_else(|| AccountError::UnknownList(list.clone()))?)
    }
}
