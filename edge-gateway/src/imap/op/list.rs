//! LIST and LSUB, with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and
//! SPECIAL-USE (RFC 6154).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use stratus_core::accounts::MailboxRecord;
use stratus_proto::imap::command::List;
use stratus_proto::imap::pattern::{canonical_inbox, matches_pattern};
use stratus_proto::imap::wire::{self, Lossy};
use tracing::debug;

use crate::conn::Conn;
use crate::imap::session::*;

impl Session<'_> {
    /// LIST (and LSUB): every mailbox of this account whose name matches a
    /// pattern, with the attributes asked for. Only this account's
    /// mailboxes are ever looked at.
    pub(in crate::imap) async fn list<S>(
        &mut self,
        conn: &mut Conn<S>,
        list: List,
        lsub: bool,
    ) -> Reply {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let reference = self.decode_pattern(&list.reference)?;
        let patterns: Vec<String> = list
            .patterns
            .iter()
            .map(|p| self.decode_pattern(p))
            .collect::<Result<_, _>>()?;
        if !list.extended && patterns.len() == 1 && patterns[0].is_empty() {
            // The hierarchy delimiter and root (RFC 9051 §6.3.9).
            conn.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Ok(format!("{verb} completed"));
        }
        let accounts = self.ctx.shared.stores.accounts();
        let mailboxes = accounts
            .mailboxes(self.account())
            .await
            .map_err(Refusal::from)?;
        let subscribed_only = list.select.iter().any(|s| s == "SUBSCRIBED");
        let special_only = list.select.iter().any(|s| s == "SPECIAL-USE");
        let recursive = list.select.iter().any(|s| s == "RECURSIVEMATCH");
        let show_subscribed = subscribed_only || list.returns.iter().any(|r| r == "SUBSCRIBED");
        let subs: BTreeSet<String> = if show_subscribed {
            accounts
                .subscriptions(self.account(), &mailboxes)
                .await
                .map_err(Refusal::from)?
                .into_iter()
                .map(|n| n.to_string())
                .collect()
        } else {
            BTreeSet::new()
        };
        // Every name, with the parents that exist only as levels; for the
        // subscribed, also the names subscribed to that do not exist (RFC
        // 9051 §6.3.7) and their parents.
        let mut names: BTreeMap<String, Option<&MailboxRecord>> = BTreeMap::new();
        let mut existing: BTreeSet<String> = BTreeSet::new();
        let with_parents = |names: &mut BTreeMap<String, Option<&MailboxRecord>>, name: &str| {
            let mut parent = name.rsplit_once('/').map(|(p, _)| p.to_string());
            while let Some(p) = parent {
                parent = p.rsplit_once('/').map(|(p, _)| p.to_string());
                names.entry(p).or_insert(None);
            }
        };
        for m in &mailboxes {
            names.insert(m.name.to_string(), Some(m));
            existing.insert(m.name.to_string());
            with_parents(&mut names, m.name.as_str());
        }
        if subscribed_only {
            for sub in &subs {
                names.entry(sub.clone()).or_insert(None);
                with_parents(&mut names, sub);
            }
        }
        let full_patterns: Vec<String> = patterns
            .iter()
            .map(|p| canonical_inbox(&format!("{reference}{p}")))
            .collect();
        let below = |set: &BTreeSet<String>, name: &str| -> Vec<String> {
            let prefix = format!("{name}/");
            set.range(prefix.clone()..)
                .take_while(|n| n.starts_with(&prefix))
                .cloned()
                .collect()
        };
        // Children are mailboxes that exist, not names subscribed to.
        let has_children = |name: &str| !below(&existing, name).is_empty();
        let mut status_for = Vec::new();
        for (name, record) in &names {
            if !full_patterns.iter().any(|p| matches_pattern(p, name)) {
                continue;
            }
            let subscribed = subs.contains(name);
            let special = record.is_some_and(|r| r.special_use.is_some());
            let selected_match = (!subscribed_only || subscribed) && (!special_only || special);
            let (listed, child_info, noselect) = if subscribed_only {
                // Subscribed names below this one that the patterns do not
                // reach themselves (`%` stops at a level).
                let subs_below = below(&subs, name);
                let hidden_subs = subs_below
                    .iter()
                    .any(|d| !full_patterns.iter().any(|p| matches_pattern(p, d)));
                let any_subs_below = !subs_below.is_empty();
                if selected_match {
                    (true, false, false)
                } else if lsub && hidden_subs {
                    // RFC 3501 §6.3.9: `foo` for a subscribed `foo/bar`
                    // that `%` hides, as \Noselect.
                    (true, false, true)
                } else if recursive && any_subs_below {
                    // RFC 5258 §3.5: CHILDINFO, not \Subscribed.
                    (true, true, false)
                } else {
                    (false, false, false)
                }
            } else if special_only {
                (selected_match, false, false)
            } else {
                (true, false, false)
            };
            if !listed {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if lsub {
                if noselect || (record.is_none() && !subscribed) {
                    attrs.push("\\Noselect");
                }
            } else {
                if record.is_none() {
                    attrs.push(if self.enabled.rev2 || list.extended {
                        "\\NonExistent"
                    } else {
                        "\\Noselect"
                    });
                }
                if has_children(name) {
                    attrs.push("\\HasChildren");
                } else if record.is_some() {
                    attrs.push("\\HasNoChildren");
                }
                if show_subscribed && subscribed {
                    attrs.push("\\Subscribed");
                }
                if let Some(role) = record.and_then(|r| r.special_use) {
                    attrs.push(role.attribute());
                }
            }
            let mut out = Vec::new();
            let _ = write!(Lossy(&mut out), "* {verb} ({}) \"/\" ", attrs.join(" "));
            self.write_mailbox(&mut out, name);
            if child_info {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            out.extend_from_slice(b"\r\n");
            conn.out().extend_from_slice(&out);
            if list.status.is_some()
                && selected_match
                && let Some(r) = record
            {
                status_for.push(r.name.clone());
            }
        }
        if let Some(items) = &list.status {
            for name in status_for {
                let raw = name.as_str().as_bytes().to_vec();
                let raw = if self.utf8_names() {
                    raw
                } else {
                    wire::utf7_encode(name.as_str()).into_bytes()
                };
                if let Err(Refusal::No(e) | Refusal::Bad(e)) = self.status(conn, &raw, items).await
                {
                    debug!(mailbox = %name, error = e, "LIST-STATUS skipped a mailbox");
                }
            }
        }
        Ok(format!("{verb} completed"))
    }

    /// A LIST reference or pattern as UTF-8.
    pub(in crate::imap) fn decode_pattern(&self, raw: &[u8]) -> Result<String, Refusal> {
        let text = if self.utf8_names() {
            String::from_utf8(raw.to_vec()).ok()
        } else {
            wire::utf7_decode(raw).or_else(|| String::from_utf8(raw.to_vec()).ok())
        };
        text.ok_or_else(|| bad("the name is not valid modified UTF-7"))
    }
}
