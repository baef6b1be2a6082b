//! What an IMAP URL (RFC 5092) names, read for this session: the parts
//! CATENATE (RFC 4469) joins into a new message. A URL is only ever read
//! from the session user's own mailboxes; one that names another user, a
//! mailbox, UIDVALIDITY, message or part that is not there names nothing,
//! and the command says `NO [BADURL url]`.

use stratus_core::address::Address;
use stratus_core::mailbox::MailboxName;
use stratus_proto::imap::command::CatPart;
use stratus_proto::imap::url::{ImapUrl, parse_url};

use crate::imap::fetch::Renderer;
use crate::imap::session::*;

impl Session<'_> {
    /// The bytes `url` names in `account`'s mailboxes; `None` when it
    /// names nothing there. The host is not checked: whatever it says,
    /// the data can only come from this server.
    pub(in crate::imap) async fn url_data(
        &self,
        account: &Address,
        url: &ImapUrl,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let name = match &url.mailbox {
            Some(m) => match MailboxName::parse(m) {
                Ok(n) => n,
                Err(_) => return Ok(None),
            },
            None => match &self.selected {
                Some(s) if account == self.account() => s.name.clone(),
                _ => return Ok(None),
            },
        };
        let store = self.store();
        let Some((record, _)) = store.mailbox(account, &name).await.map_err(Refusal::from)? else {
            return Ok(None);
        };
        if url.uidvalidity.is_some_and(|v| v != record.uidvalidity) {
            return Ok(None);
        }
        let entries = store
            .entries_by_id(&record.id, url.uid, url.uid)
            .await
            .map_err(Refusal::from)?;
        let Some(entry) = entries.first().filter(|e| e.uid == url.uid) else {
            return Ok(None);
        };
        let meta = store.meta(entry).await.map_err(Refusal::from)?;
        let renderer = Renderer {
            blobs: self.ctx.shared.stores.blobs.as_ref(),
            utf8: true,
            recent: &[],
        };
        let data = match &url.section {
            Some(section) => renderer.section(entry, &meta, section, None).await,
            None => renderer.read(entry, 0, entry.size).await.map(Some),
        };
        let Some(mut data) =
            data.map_err(|_| no("[UNAVAILABLE] the message cannot be read now"))?
        else {
            return Ok(None);
        };
        if let Some((offset, length)) = url.partial {
            let start = (offset as usize).min(data.len());
            let end = length.map_or(data.len(), |l| {
                start.saturating_add(l as usize).min(data.len())
            });
            data = data[start..end].to_vec();
        }
        Ok(Some(data))
    }

    /// The message CATENATE puts together from `parts` (RFC 4469 §5):
    /// texts as sent, URLs for what they name in this user's mailboxes.
    pub(in crate::imap) async fn catenate(&self, parts: &[CatPart]) -> Result<Vec<u8>, Refusal> {
        let limit = self.append_limit();
        let mut message = Vec::new();
        for part in parts {
            match part {
                CatPart::Text(text) => message.extend_from_slice(text),
                CatPart::Url(text) => {
                    let bad_url = || no(format!("[BADURL {text}] the URL names nothing here"));
                    let url = parse_url(text).map_err(|_| bad_url())?;
                    // Only the user's own URLs; another user's, even with
                    // URLAUTH, is not read here.
                    let own = match &url.user {
                        None => true,
                        Some(u) => Address::parse(u).is_ok_and(|a| a == *self.account()),
                    };
                    if !own || url.urlauth.is_some() {
                        return Err(bad_url());
                    }
                    let data = self
                        .url_data(self.account(), &url)
                        .await?
                        .ok_or_else(bad_url)?;
                    message.extend_from_slice(&data);
                }
            }
            if message.len() as u64 > limit {
                return Err(no("[TOOBIG] the message is over APPENDLIMIT"));
            }
        }
        Ok(message)
    }
}
