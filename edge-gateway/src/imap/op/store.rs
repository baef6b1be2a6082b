//! STORE: flags and keywords set, added or removed, with UNCHANGEDSINCE
//! (CONDSTORE).

use stratus_core::mailstore::normalize_flags;
use stratus_proto::imap::command::{Store, StoreMode};

use crate::conn::Conn;
use crate::imap::selected::{compact, flag_list};
use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn store_flags<S>(
        &mut self,
        conn: &mut Conn<S>,
        store_cmd: Store,
    ) -> Reply {
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let condstore = self.enabled.condstore || store_cmd.unchanged_since.is_some();
        self.enabled.condstore = condstore;
        let selected = self.selected.as_mut().expect("selected");
        if selected.read_only {
            return Err(no("[READ-ONLY] the mailbox is read-only"));
        }
        let indices = selected
            .resolve(&store_cmd.set, store_cmd.uid, &saved)
            .map_err(bad)?;
        if store_cmd
            .flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Recent"))
        {
            return Err(bad("\\Recent cannot be stored"));
        }
        let given = normalize_flags(store_cmd.flags.clone());
        let mode = store_cmd.mode;
        if mode != StoreMode::Remove {
            let new = given
                .iter()
                .filter(|f| !f.starts_with('\\'))
                .filter(|f| !selected.announced.iter().any(|k| k.eq_ignore_ascii_case(f)))
                .count();
            if new > 0 && selected.announced.len() + new > MAX_KEYWORDS {
                return Err(no(format!(
                    "[LIMIT] a mailbox may have at most {MAX_KEYWORDS} keywords; this one has {}",
                    selected.announced.len()
                )));
            }
        }
        let change = move |flags: &[String]| -> Vec<String> {
            match mode {
                StoreMode::Replace => given.clone(),
                StoreMode::Add => {
                    let mut f = flags.to_vec();
                    f.extend(given.iter().cloned());
                    f
                }
                StoreMode::Remove => flags
                    .iter()
                    .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
                    .cloned()
                    .collect(),
            }
        };
        let uids: Vec<u32> = indices.iter().map(|&i| selected.msgs[i].uid).collect();
        let update = store
            .update_flags(
                &account,
                &selected.name,
                &uids,
                store_cmd.unchanged_since,
                &change,
            )
            .await
            .map_err(Refusal::from)?;
        selected.apply_own(&update.changed);
        let mut report: Vec<(usize, bool)> = update
            .changed
            .iter()
            .filter_map(|(uid, ..)| selected.index_of(*uid))
            .map(|i| (i, true))
            .collect();
        for (uid, flags, modseq) in update.unchanged {
            if let Some(i) = selected.index_of(uid) {
                selected.msgs_mut()[i].flags = flags;
                selected.msgs_mut()[i].modseq = selected.msgs[i].modseq.max(modseq);
                report.push((i, false));
            }
        }
        report.sort_unstable();
        let changed: Vec<usize> = report.iter().map(|&(i, _)| i).collect();
        if selected.new_keywords(&changed) {
            flags_responses(conn.out(), selected);
        }
        for (i, changed) in report {
            if store_cmd.silent && !(condstore && changed) {
                continue;
            }
            let m = &selected.msgs[i];
            let mut line = format!("* {} FETCH (", i + 1);
            let mut parts = Vec::new();
            // With CONDSTORE, every FETCH carries UID and MODSEQ (RFC 7162
            // §3.1).
            if store_cmd.uid || condstore {
                parts.push(format!("UID {}", m.uid));
            }
            if !store_cmd.silent {
                let mut f = Vec::new();
                flag_list(&mut f, &m.flags, selected.is_recent(m.uid));
                parts.push(format!("FLAGS {}", String::from_utf8_lossy(&f)));
            }
            if condstore {
                parts.push(format!("MODSEQ ({})", m.modseq));
            }
            line.push_str(&parts.join(" "));
            line.push(')');
            conn.line(&line);
        }
        let verb = if store_cmd.uid { "UID STORE" } else { "STORE" };
        if update.modified.is_empty() {
            Ok(format!("{verb} completed"))
        } else {
            let mut numbers: Vec<u32> = update
                .modified
                .iter()
                .filter_map(|&u| {
                    selected
                        .index_of(u)
                        .map(|i| if store_cmd.uid { u } else { i as u32 + 1 })
                })
                .collect();
            numbers.sort_unstable();
            Ok(format!(
                "[MODIFIED {}] {verb} completed, some messages changed meanwhile",
                compact(&numbers)
            ))
        }
    }
}
