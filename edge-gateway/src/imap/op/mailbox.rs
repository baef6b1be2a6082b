//! CREATE (with CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE and
//! UNSUBSCRIBE.

use stratus_core::accounts::AccountError;
use stratus_core::mailbox::{MailboxName, SpecialUse};

use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn create(&mut self, raw: &[u8], special_use: &[String]) -> Reply {
        // `name/` declares that children will follow: it creates `name`
        // (RFC 3501 §6.3.3, RFC 9051 §6.3.4).
        let raw = raw.strip_suffix(b"/").unwrap_or(raw);
        let name = self.mailbox_name(raw)?;
        let role = match special_use {
            [] => None,
            [one] => Some(
                SpecialUse::from_attribute(one)
                    .ok_or_else(|| no(format!("[USEATTR] {one} is not a special use we know")))?,
            ),
            _ => return Err(no("[USEATTR] only one special use per mailbox")),
        };
        let accounts = self.ctx.shared.stores.accounts();
        // Parents are created on the way (RFC 9051 §6.3.4).
        let mut parent = name.parent();
        let mut parents = Vec::new();
        while let Some(p) = parent {
            parent = p.parent();
            parents.push(p);
        }
        for p in parents.into_iter().rev() {
            match accounts.create_mailbox(self.account(), p).await {
                Ok(_) | Err(AccountError::MailboxExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        accounts
            .create_mailbox_with(self.account(), name, role)
            .await
            .map_err(Refusal::from)?;
        Ok("CREATE completed".into())
    }

    pub(in crate::imap) async fn delete(&mut self, raw: &[u8]) -> Reply {
        let name = self.mailbox_name(raw)?;
        if name.is_inbox() {
            return Err(no("[CANNOT] INBOX cannot be deleted"));
        }
        let accounts = self.ctx.shared.stores.accounts();
        let all = accounts
            .mailboxes(self.account())
            .await
            .map_err(Refusal::from)?;
        let prefix = format!("{name}/");
        if all.iter().any(|m| m.name.as_str().starts_with(&prefix)) {
            return Err(no(
                "[INUSE] the mailbox has mailboxes below it; delete those first",
            ));
        }
        let id = all.iter().find(|m| m.name == name).map(|m| m.id.clone());
        accounts
            .delete_mailbox(self.account(), &name)
            .await
            .map_err(Refusal::from)?;
        // Its METADATA entries go with it (kept by id, they would never be
        // seen again; this only frees the room).
        if let Some(id) = id
            && let Err(e) = accounts.delete_annotations(self.account(), &id).await
        {
            tracing::warn!(error = %e, "IMAP: cannot remove a deleted mailbox's metadata");
        }
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            self.selected = None;
        }
        Ok("DELETE completed".into())
    }

    pub(in crate::imap) async fn rename(&mut self, from: &[u8], to: &[u8]) -> Reply {
        let from = self.mailbox_name(from)?;
        let to = self.mailbox_name(to)?;
        if to.is_inbox() {
            return Err(no("[ALREADYEXISTS] INBOX already exists"));
        }
        let accounts = self.ctx.shared.stores.accounts();
        let mut parent = to.parent();
        while let Some(p) = parent {
            parent = p.parent();
            if accounts
                .mailboxes(self.account())
                .await
                .map_err(Refusal::from)?
                .iter()
                .all(|m| m.name != p)
            {
                match accounts.create_mailbox(self.account(), p).await {
                    Ok(_) | Err(AccountError::MailboxExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        accounts
            .rename_mailbox(self.account(), &from, &to)
            .await
            .map_err(Refusal::from)?;
        // The selected mailbox (or one below the renamed) stays selected
        // under its new name; INBOX's messages moved away from it.
        if let Some(selected) = self.selected.as_mut() {
            if selected.name == from && !from.is_inbox() {
                selected.name = to.clone();
            } else if let Some(rest) = selected.name.as_str().strip_prefix(&format!("{from}/"))
                && !from.is_inbox()
                && let Ok(name) = MailboxName::parse(&format!("{to}/{rest}"))
            {
                selected.name = name;
            }
        }
        Ok("RENAME completed".into())
    }

    pub(in crate::imap) async fn subscribe(&mut self, raw: &[u8], on: bool) -> Reply {
        let name = self.mailbox_name(raw)?;
        match self
            .ctx
            .shared
            .stores
            .accounts()
            .set_subscribed(self.account(), &name, on)
            .await
        {
            Ok(()) => {}
            // Unsubscribing from what does not exist is a no-op.
            Err(AccountError::UnknownMailbox(_)) if !on => {}
            Err(e) => return Err(e.into()),
        }
        Ok(if on {
            "SUBSCRIBE completed".into()
        } else {
            "UNSUBSCRIBE completed".into()
        })
    }
}
