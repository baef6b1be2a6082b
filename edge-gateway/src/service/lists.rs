//! Distribution lists: create and delete them, manage members, and
//! approve or discard the posts held for their owners.

use stratus_core::Address;
use stratus_core::accounts::AccountError;
use stratus_core::ids::QueueId;
use stratus_core::job::{Job, Verdict};
use stratus_core::lists::{HeldPost, ListRecord, Member, Policy};

use super::{Service, ServiceError, ServiceResult};

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
