//! STATUS (with STATUS=SIZE), GETQUOTAROOT and GETQUOTA (RFC 9208).

use std::fmt::Write as _;

use stratus_proto::imap::command::StatusItem;
use stratus_proto::imap::wire::Lossy;

use crate::conn::Conn;
use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn status<S>(
        &mut self,
        conn: &mut Conn<S>,
        raw: &[u8],
        items: &[StatusItem],
    ) -> Reply {
        let name = self.mailbox_name(raw)?;
        let store = self.store();
        let Some((record, _)) = store
            .mailbox(self.account(), &name)
            .await
            .map_err(Refusal::from)?
        else {
            return Err(no("[NONEXISTENT] no such mailbox"));
        };
        let mut deleted = None;
        if items.contains(&StatusItem::Deleted) {
            let entries = store
                .entries(self.account(), &name, 1, u32::MAX)
                .await
                .map_err(Refusal::from)?;
            deleted = Some(
                entries
                    .iter()
                    .filter(|e| e.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
                    .count(),
            );
        }
        let mut recent = 0;
        if items.contains(&StatusItem::Recent) {
            // Those no session has claimed, and this session's own when it
            // has the mailbox selected.
            let (first, _) = store
                .first_unclaimed(&record)
                .await
                .map_err(Refusal::from)?;
            if first <= 1 {
                // Nothing claimed yet: every message is recent.
                recent = record.messages as usize;
            } else if first < record.uidnext {
                recent = store
                    .entries_by_id(&record.id, first, record.uidnext - 1)
                    .await
                    .map_err(Refusal::from)?
                    .len();
            }
            if let Some(selected) = self.selected.as_ref().filter(|s| s.id == record.id) {
                recent += selected.recent_count();
            }
        }
        let values: Vec<String> = items
            .iter()
            .map(|item| {
                let v = match item {
                    StatusItem::Messages => record.messages as u64,
                    StatusItem::UidNext => record.uidnext as u64,
                    StatusItem::UidValidity => record.uidvalidity as u64,
                    StatusItem::Unseen => record.unseen as u64,
                    StatusItem::Deleted => deleted.unwrap_or(0) as u64,
                    StatusItem::Size => record.size,
                    StatusItem::Recent => recent as u64,
                    StatusItem::HighestModSeq => record.highest_modseq,
                };
                format!("{} {v}", item.name())
            })
            .collect();
        let mut out = b"* STATUS ".to_vec();
        self.write_mailbox(&mut out, name.as_str());
        let _ = write!(Lossy(&mut out), " ({})\r\n", values.join(" "));
        conn.out().extend_from_slice(&out);
        Ok("STATUS completed".into())
    }

    pub(in crate::imap) async fn quota_numbers(&self) -> Result<Option<(u64, u64)>, Refusal> {
        let accounts = self.ctx.shared.stores.accounts();
        let Some(user) = accounts.user(self.account()).await.map_err(Refusal::from)? else {
            return Err(no("[UNAVAILABLE] the account is gone"));
        };
        let Some(quota) = user.quota else {
            return Ok(None);
        };
        let used = accounts
            .usage(self.account())
            .await
            .map_err(Refusal::from)?;
        Ok(Some((used, quota)))
    }

    pub(in crate::imap) async fn quota_root<S>(&mut self, conn: &mut Conn<S>, raw: &[u8]) -> Reply {
        let name = self.mailbox_name(raw)?;
        let mut out = b"* QUOTAROOT ".to_vec();
        self.write_mailbox(&mut out, name.as_str());
        match self.quota_numbers().await? {
            Some((used, quota)) => {
                let _ = write!(
                    Lossy(&mut out),
                    " \"\"\r\n* QUOTA \"\" (STORAGE {} {})\r\n",
                    used.div_ceil(1024),
                    quota / 1024
                );
            }
            None => out.extend_from_slice(b"\r\n"),
        }
        conn.out().extend_from_slice(&out);
        Ok("GETQUOTAROOT completed".into())
    }

    pub(in crate::imap) async fn quota<S>(&mut self, conn: &mut Conn<S>, root: &[u8]) -> Reply {
        if !root.is_empty() {
            return Err(no("[NONEXISTENT] no such quota root; the only one is \"\""));
        }
        match self.quota_numbers().await? {
            Some((used, quota)) => {
                conn.line(&format!(
                    "* QUOTA \"\" (STORAGE {} {})",
                    used.div_ceil(1024),
                    quota / 1024
                ));
                Ok("GETQUOTA completed".into())
            }
            None => Err(no("[NONEXISTENT] this account has no quota")),
        }
    }
}
