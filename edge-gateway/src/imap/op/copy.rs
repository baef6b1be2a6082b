//! COPY and MOVE (RFC 6851), with COPYUID (UIDPLUS).

use stratus_proto::imap::command;

use crate::conn::Conn;
use crate::imap::op::append::check_keyword_room;
use crate::imap::op::idle::report_expunged;
use crate::imap::selected::in_order;
use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn copy<S>(
        &mut self,
        conn: &mut Conn<S>,
        uid: bool,
        set: &command::SequenceSet,
        raw: &[u8],
        is_move: bool,
    ) -> Reply {
        let target = self.mailbox_name(raw)?;
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let qresync = self.enabled.qresync;
        let quota = self.quota_numbers().await?;
        let selected = self.selected.as_mut().expect("selected");
        if is_move && selected.read_only {
            return Err(no("[READ-ONLY] the mailbox is read-only"));
        }
        let indices = selected.resolve(set, uid, &saved).map_err(bad)?;
        let Some((target_record, _)) = store
            .mailbox(&account, &target)
            .await
            .map_err(Refusal::from)?
        else {
            return Err(no("[TRYCREATE] no such mailbox"));
        };
        let verb = match (uid, is_move) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        if indices.is_empty() {
            return Ok(format!("{verb} completed"));
        }
        let entries = selected
            .entries(&store, &indices)
            .await
            .map_err(Refusal::from)?;
        let mut seen = std::collections::HashSet::new();
        let flags: Vec<String> = entries
            .iter()
            .flat_map(|e| e.flags.iter())
            .filter(|f| seen.insert(f.to_ascii_lowercase()))
            .cloned()
            .collect();
        check_keyword_room(&target_record, &flags)?;
        if let Some((used, limit)) = quota {
            let adding: u64 = entries.iter().map(|e| e.size).sum();
            if used + adding > limit {
                return Err(no("[OVERQUOTA] the messages do not fit in your quota"));
            }
        }
        let (uidvalidity, new_uids) = store
            .copy(&account, &entries, &target)
            .await
            .map_err(Refusal::from)?;
        // Copies into the selected mailbox are new messages for this
        // session too: EXISTS before the tagged reply (RFC 6851 §4.3).
        self.sync_now = target == selected.name;
        let source: Vec<u32> = entries.iter().map(|e| e.uid).collect();
        let code = format!(
            "[COPYUID {uidvalidity} {} {}]",
            in_order(&source),
            in_order(&new_uids)
        );
        if !is_move {
            return Ok(format!("{code} {verb} completed"));
        }
        conn.line(&format!("* OK {code} moved"));
        store
            .expunge(&account, &selected.name, &source, None)
            .await
            .map_err(Refusal::from)?;
        let mut gone = Vec::new();
        for uid in source {
            if let Some(i) = selected.index_of(uid) {
                selected.msgs_mut().remove(i);
                gone.push((i as u32 + 1, uid));
            }
        }
        report_expunged(conn.out(), &gone, qresync);
        Ok(format!("{verb} completed"))
    }
}
