//! APPEND: a message stored, indexed and announced like a delivery, with
//! APPENDUID (UIDPLUS).

use stratus_core::accounts::{AccountError, MailboxRecord};
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailstore::{Appended, NewMessage, normalize_flags};
use stratus_proto::imap::command;

use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn append(
        &mut self,
        raw: &[u8],
        flags: Vec<String>,
        date: Option<command::DateTime>,
        message: Vec<u8>,
    ) -> Reply {
        let name = self.mailbox_name(raw)?;
        if message.len() as u64 > self.append_limit() {
            return Err(no("[TOOBIG] the message is over APPENDLIMIT"));
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
        let flags = normalize_flags(flags);
        check_keyword_room(&target, &flags)?;
        if let Some((used, quota)) = self.quota_numbers().await?
            && used + message.len() as u64 > quota
        {
            return Err(no("[OVERQUOTA] the message does not fit in your quota"));
        }
        if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
            return Err(bad("\\Recent cannot be set"));
        }
        let queue_id = QueueId::generate();
        let key = BlobKey::for_message(&queue_id);
        let meta = stratus_core::message::analyze(&message);
        let size = message.len() as u64;
        self.ctx
            .shared
            .stores
            .blobs
            .put(&key, message.into())
            .await
            .map_err(|e| Refusal::from(AccountError::from(e)))?;
        let (internal_date, internal_tz) = match date {
            Some(d) => (d.timestamp, d.zone),
            None => (stratus_core::mailstore::now(), 0),
        };
        let new = NewMessage {
            queue_id,
            body: key,
            body_size: size,
            prefix: String::new(),
            meta,
            flags,
            internal_date,
            internal_tz,
        };
        match store
            .append(&account, &name, new)
            .await
            .map_err(Refusal::from)?
        {
            Appended::New {
                uid, uidvalidity, ..
            } => Ok(format!("[APPENDUID {uidvalidity} {uid}] APPEND completed")),
            Appended::Duplicate => Err(no("[UNAVAILABLE] try again")),
        }
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
