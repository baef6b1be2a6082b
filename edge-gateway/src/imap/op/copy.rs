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
        let queue = self.ctx.shared.stores.queue.clone();
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
        // Into Junk: spam to this user. Moved out of Junk (not to the
        // Trash, where spam goes to die): ham.
        use stratus_core::mailbox::SpecialUse;
        let lesson = match (target_record.special_use, selected.junk, is_move) {
            (Some(SpecialUse::Junk), false, _) => Some(true),
            (Some(SpecialUse::Junk | SpecialUse::Trash), true, _) | (_, true, false) => None,
            (_, true, true) => Some(false),
            _ => None,
        };
        if let Some(spam) = lesson {
            let bodies: Vec<stratus_core::ids::BlobKey> =
                entries.iter().map(|e| e.body.clone()).collect();
            teach(queue.as_ref(), &account, bodies, spam).await;
        }
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

/// Queues the jobs that teach `account`'s spam model. A queue that does
/// not answer loses the lesson, not the command.
async fn teach(
    queue: &dyn stratus_core::Queue,
    account: &stratus_core::Address,
    bodies: Vec<stratus_core::ids::BlobKey>,
    spam: bool,
) {
    use stratus_core::job::{Job, LEARN_BATCH};
    for chunk in bodies.chunks(LEARN_BATCH) {
        let job = Job::Learn {
            account: account.clone(),
            bodies: chunk.to_vec(),
            spam,
        };
        if let Err(e) = queue
            .send(job.queue(), &job.to_json(), std::time::Duration::ZERO)
            .await
        {
            tracing::warn!(%account, error = %e, "cannot queue a spam lesson; it is lost");
        }
    }
}
