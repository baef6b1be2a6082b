//! CLOSE and EXPUNGE (with UID EXPUNGE): removing messages marked
//! `\Deleted`.

use stratus_proto::imap::command;

use crate::conn::Conn;
use crate::imap::op::idle::report_expunged;
use crate::imap::session::*;

impl Session<'_> {
    /// CLOSE: expunges \\Deleted messages silently (unless read-only)
    /// and leaves the selected state.
    pub(in crate::imap) async fn close(&mut self) -> Reply {
        let selected = self.selected.take().expect("selected");
        if !selected.read_only {
            let uids: Vec<u32> = selected
                .msgs
                .iter()
                .filter(|m| m.has("\\Deleted"))
                .map(|m| m.uid)
                .collect();
            if !uids.is_empty() {
                self.store()
                    .expunge(self.account(), &selected.name, &uids, None)
                    .await
                    .map_err(Refusal::from)?;
            }
        }
        Ok("CLOSE completed".into())
    }

    pub(in crate::imap) async fn expunge<S>(
        &mut self,
        conn: &mut Conn<S>,
        uids: Option<command::SequenceSet>,
    ) -> Reply {
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let qresync = self.enabled.qresync;
        let selected = self.selected.as_mut().expect("selected");
        if selected.read_only {
            return Err(no("[READ-ONLY] the mailbox is read-only"));
        }
        let allowed = match &uids {
            Some(set) => Some(selected.resolve(set, true, &saved).map_err(bad)?),
            None => None,
        };
        let targets: Vec<u32> = selected
            .msgs
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                m.has("\\Deleted") && allowed.as_ref().is_none_or(|a| a.binary_search(i).is_ok())
            })
            .map(|(_, m)| m.uid)
            .collect();
        if targets.is_empty() {
            return Ok("EXPUNGE completed".into());
        }
        let removed = store
            .expunge(&account, &selected.name, &targets, None)
            .await
            .map_err(Refusal::from)?;
        // Whatever another session already removed goes too: the next
        // sync reports it, but these are gone now either way.
        let mut gone = Vec::new();
        for uid in targets {
            if let Some(i) = selected.index_of(uid) {
                selected.msgs_mut().remove(i);
                gone.push((i as u32 + 1, uid));
            }
        }
        report_expunged(conn.out(), &gone, qresync);
        let _ = removed;
        Ok("EXPUNGE completed".into())
    }
}
