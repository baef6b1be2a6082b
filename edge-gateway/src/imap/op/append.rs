//! APPEND: a message stored, indexed and announced like a delivery, with
//! APPENDUID (UIDPLUS).

use stratus_core::accounts::AccountError;
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
        if store
            .mailbox(&account, &name)
            .await
            .map_err(Refusal::from)?
            .is_none()
        {
            return Err(no("[TRYCREATE] no such mailbox"));
        }
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
            flags: normalize_flags(flags),
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
