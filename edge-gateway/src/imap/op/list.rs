//! LIST and LSUB, with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and
//! SPECIAL-USE (RFC 6154).

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
        let mailboxes = self
            .ctx
            .shared
            .stores
            .accounts()
            .mailboxes(self.account())
            .await
            .map_err(Refusal::from)?;
        let subscribed_only = list.select.iter().any(|s| s == "SUBSCRIBED");
        let special_only = list.select.iter().any(|s| s == "SPECIAL-USE");
        let recursive = list.select.iter().any(|s| s == "RECURSIVEMATCH");
        let show_subscribed = subscribed_only || list.returns.iter().any(|r| r == "SUBSCRIBED");
        // Every name, with the parents that exist only as levels.
        let mut names: std::collections::BTreeMap<String, Option<&MailboxRecord>> =
            std::collections::BTreeMap::new();
        for m in &mailboxes {
            names.insert(m.name.to_string(), Some(m));
            let mut parent = m.name.parent();
            while let Some(p) = parent {
                parent = p.parent();
                names.entry(p.to_string()).or_insert(None);
            }
        }
        let full_patterns: Vec<String> = patterns
            .iter()
            .map(|p| canonical_inbox(&format!("{reference}{p}")))
            .collect();
        let has_children = |name: &str| {
            names
                .range(format!("{name}/")..)
                .next()
                .is_some_and(|(n, _)| n.starts_with(&format!("{name}/")))
        };
        let mut status_for = Vec::new();
        let filtered = subscribed_only || special_only;
        for (name, record) in &names {
            if !full_patterns.iter().any(|p| matches_pattern(p, name)) {
                continue;
            }
            let selects = |r: &MailboxRecord| {
                (!subscribed_only || r.subscribed) && (!special_only || r.special_use.is_some())
            };
            let selected_match = record.is_some_and(selects);
            // RECURSIVEMATCH: a parent of a match is listed with CHILDINFO
            // (RFC 5258 §3.5).
            let prefix = format!("{name}/");
            let child_info = recursive
                && subscribed_only
                && !selected_match
                && mailboxes
                    .iter()
                    .any(|m| m.name.as_str().starts_with(&prefix) && selects(m));
            let listed = selected_match || child_info || (!filtered && record.is_none());
            if !listed {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if record.is_none() {
                attrs.push(if self.enabled.rev2 && !lsub {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            if !lsub {
                attrs.push(if has_children(name) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some(r) = record {
                if !lsub && show_subscribed && r.subscribed {
                    attrs.push("\\Subscribed");
                }
                if !lsub && let Some(role) = r.special_use {
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
