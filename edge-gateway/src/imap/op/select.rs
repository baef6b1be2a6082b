//! SELECT and EXAMINE, with CONDSTORE and QRESYNC (RFC 7162): the view of
//! the mailbox the session starts from, and what changed since the client's
//! last visit.

use std::fmt::Write as _;
use std::time::Instant;

use stratus_proto::imap::command;
use stratus_proto::imap::wire::Lossy;

use crate::conn::Conn;
use crate::imap::selected::{Selected, compact, flag_list};
use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn select<S>(
        &mut self,
        conn: &mut Conn<S>,
        raw: &[u8],
        read_only: bool,
        condstore: bool,
        qresync: Option<command::Qresync>,
    ) -> Reply {
        if qresync.is_some() && !self.enabled.qresync {
            return Err(bad("ENABLE QRESYNC before using it"));
        }
        if self.selected.take().is_some() {
            conn.line("* OK [CLOSED] previous mailbox closed");
        }
        self.saved.clear();
        if condstore {
            self.enabled.condstore = true;
        }
        let name = self.mailbox_name(raw)?;
        let store = self.store();
        let Some((mut selected, record, version)) =
            Selected::open(&store, &self.ctx.views, self.account(), &name, read_only)
                .await
                .map_err(Refusal::from)?
        else {
            return Err(no("[NONEXISTENT] no such mailbox"));
        };
        let keywords = selected.keywords();
        if !read_only && !same_keywords(record.keywords.as_deref(), &keywords) {
            // What the mailbox's limit counts follows what its messages
            // use: keywords no message has any more are dropped, and a
            // mailbox from before the count was kept gets one.
            let settled =
                store.settle_keywords(self.account(), &name, record.clone(), version, keywords);
            if let Err(e) = settled.await {
                tracing::warn!(error = %e, "IMAP: cannot settle the mailbox's keywords");
            }
        }
        flags_responses(conn.out(), &selected);
        conn.line(&format!("* {} EXISTS", selected.msgs.len()));
        if !self.enabled.rev2 {
            if let Err(e) = selected
                .take_recent(&store, &self.ctx.views, self.account(), Some(&record))
                .await
            {
                tracing::warn!(error = %e, "IMAP: cannot settle \\Recent");
            }
            conn.line(&format!("* {} RECENT", selected.recent_count()));
            if let Some(i) = selected.msgs.iter().position(|m| !m.has("\\Seen")) {
                conn.line(&format!("* OK [UNSEEN {}] first unseen message", i + 1));
            }
        }
        conn.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            selected.uidvalidity
        ));
        conn.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            record.uidnext
        ));
        conn.line(&format!(
            "* OK [HIGHESTMODSEQ {}] highest MODSEQ",
            record.highest_modseq
        ));
        if self.enabled.rev2 {
            let mut out = b"* LIST () \"/\" ".to_vec();
            self.write_mailbox(&mut out, name.as_str());
            out.extend_from_slice(b"\r\n");
            conn.out().extend_from_slice(&out);
        }
        if let Some(q) = qresync
            && q.uidvalidity == selected.uidvalidity
        {
            // What changed since the client's MODSEQ (RFC 7162 §3.2.5):
            // the UIDs it knew that are gone, then the flags that changed.
            let gone = if q.modseq < record.pruned_modseq {
                // The history the client asks about was pruned: every UID
                // it may know that is not here (RFC 7162 §3.2.5.2).
                selected.missing_uids()
            } else {
                store
                    .changes(&selected.id, q.modseq, record.highest_modseq)
                    .await
                    .map_err(Refusal::from)?
                    .1
            };
            let last = selected.uidnext.saturating_sub(1);
            let mut gone: Vec<u32> = gone
                .into_iter()
                .filter(|&u| match &q.known_uids {
                    Some(command::SequenceSet::Ranges(r)) => {
                        command::SequenceSet::contains(r, u, last)
                    }
                    _ => true,
                })
                .collect();
            gone.sort_unstable();
            gone.dedup();
            if !gone.is_empty() {
                conn.line(&format!("* VANISHED (EARLIER) {}", compact(&gone)));
            }
            let out = conn.out();
            for (i, m) in selected.msgs.iter().enumerate() {
                if m.modseq > q.modseq {
                    let _ = write!(Lossy(out), "* {} FETCH (UID {} FLAGS ", i + 1, m.uid);
                    flag_list(out, &m.flags, selected.is_recent(m.uid));
                    let _ = write!(Lossy(out), " MODSEQ ({}))\r\n", m.modseq);
                }
            }
        }
        self.selected = Some(selected);
        self.last_sync = Instant::now();
        Ok(if read_only {
            "[READ-ONLY] EXAMINE completed".into()
        } else {
            "[READ-WRITE] SELECT completed".into()
        })
    }
}

/// Whether the keywords a mailbox record keeps are `used`, in any case
/// and order.
fn same_keywords(kept: Option<&[String]>, used: &[String]) -> bool {
    kept.is_some_and(|kept| {
        kept.len() == used.len()
            && used
                .iter()
                .all(|u| kept.iter().any(|k| k.eq_ignore_ascii_case(u)))
    })
}
