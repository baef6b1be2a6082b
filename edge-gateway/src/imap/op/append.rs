//! APPEND and MULTIAPPEND (RFC 3502): messages stored, indexed and
//! announced like a delivery, all or none, with APPENDUID (UIDPLUS).

use stratus_core::accounts::{AccountError, MailboxRecord};
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailstore::{NewMessage, normalize_flags};
use stratus_proto::imap::command::AppendMessage;

use crate::imap::selected::in_order;

use crate::imap::session::*;

impl Session<'_> {
    /// APPEND, and MULTIAPPEND (RFC 3502): every message is filed, or none.
    pub(in crate::imap) async fn append(
        &mut self,
        raw: &[u8],
        messages: Vec<AppendMessage>,
    ) -> Reply {
        let name = self.mailbox_name(raw)?;
        let limit = self.append_limit();
        let mut messages = messages;
        let mut budget =
            limit.saturating_sub(messages.iter().map(|m| m.message.len() as u64).sum());
        for m in messages.iter_mut().filter(|m| !m.catenate.is_empty()) {
            m.message = self.catenate(&m.catenate, budget).await?;
            budget = budget.saturating_sub(m.message.len() as u64);
        }
        for m in &messages {
            if m.message.len() as u64 > limit {
                return Err(no("[TOOBIG] the message is over APPENDLIMIT"));
            }
            if m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
                return Err(bad("\\Recent cannot be set"));
            }
        }
        let store = self.store();
        let account = self.account().clone();
        let Some((target, _)) = store
            .mailbox(&account, &name)
            .await
            .map_err(Refusal::from)?
        else {
            return Err(no("[TRYCREATE] no such mailbox"));
        };
        for m in messages.iter_mut() {
            m.flags = normalize_flags(std::mem::take(&mut m.flags));
        }
        let all_flags: Vec<String> = messages.iter().flat_map(|m| m.flags.clone()).collect();
        check_keyword_room(&target, &all_flags)?;
        let size: u64 = messages.iter().map(|m| m.message.len() as u64).sum();
        if let Some((used, quota)) = self.quota_numbers().await?
            && used + size > quota
        {
            return Err(no("[OVERQUOTA] the message does not fit in your quota"));
        }
        let mut new = Vec::with_capacity(messages.len());
        for m in messages {
            let queue_id = QueueId::generate();
            let key = BlobKey::for_message(&queue_id);
            let meta = stratus_core::message::analyze(&m.message);
            let body_size = m.message.len() as u64;
            self.ctx
                .shared
                .stores
                .blobs
                .put(&key, m.message.into())
                .await
                .map_err(|e| Refusal::from(AccountError::from(e)))?;
            let (internal_date, internal_tz) = match m.date {
                Some(d) => (d.timestamp, d.zone),
                None => (stratus_core::mailstore::now(), 0),
            };
            new.push(NewMessage {
                queue_id,
                body: key,
                body_size,
                prefix: String::new(),
                meta,
                flags: m.flags,
                internal_date,
                internal_tz,
            });
        }
        let (uidvalidity, uids) = store
            .append_all(&account, &name, new)
            .await
            .map_err(Refusal::from)?;
        Ok(format!(
            "[APPENDUID {uidvalidity} {}] APPEND completed",
            in_order(&uids)
        ))
    }
}

/// Refuses, before anything is stored, flags that would take mailbox
/// `target` past its keyword limit (the store's transaction checks again).
pub(in crate::imap) fn check_keyword_room(
    target: &MailboxRecord,
    flags: &[String],
) -> Result<(), Refusal> {
    let kept = target.keywords.as_ref().map_or(0, Vec::len);
    let new = target.new_keywords(flags).len();
    if target.keywords.is_some() && new > 0 && kept + new > MAX_KEYWORDS {
        return Err(no(format!(
            "[LIMIT] a mailbox may have at most {MAX_KEYWORDS} keywords; {} has {kept}",
            target.name
        )));
    }
    Ok(())
}
