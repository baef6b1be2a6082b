//! FETCH: message data from the index (flags, envelope, structure) and
//! the blob store (bodies, sections, BINARY), in batches.

use std::io;

use stratus_proto::imap::command::{self, Fetch, FetchAtt};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::conn::Conn;
use crate::imap::fetch::{self, FetchError, Renderer};
use crate::imap::selected::compact;
use crate::imap::session::*;

impl Session<'_> {
    pub(in crate::imap) async fn fetch<S>(
        &mut self,
        conn: &mut Conn<S>,
        fetch: Fetch,
    ) -> io::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let account = self.account().clone();
        let store = self.store();
        let saved = self.saved.clone();
        let mut atts = fetch.atts.clone();
        if (fetch.changed_since.is_some() || self.enabled.condstore)
            && !atts.contains(&FetchAtt::ModSeq)
            && fetch.changed_since.is_some()
        {
            atts.push(FetchAtt::ModSeq);
        }
        // CHANGEDSINCE and the MODSEQ item enable CONDSTORE (RFC 7162 §3.1).
        if fetch.changed_since.is_some() || atts.contains(&FetchAtt::ModSeq) {
            self.enabled.condstore = true;
        }
        let selected = self.selected.as_mut().expect("selected");
        let mut indices = match selected.resolve(&fetch.set, fetch.uid, &saved) {
            Ok(i) => i,
            Err(e) => return Ok(Err(bad(e))),
        };
        if let Some(since) = fetch.changed_since {
            if fetch.vanished {
                if !self.enabled.qresync {
                    return Ok(Err(bad("ENABLE QRESYNC before using VANISHED")));
                }
                let gone = if since < selected.pruned_modseq {
                    // Pruned history: every UID not held (RFC 7162 §3.2.5.2).
                    selected.missing_uids()
                } else {
                    match store.changes(&selected.id, since, selected.modseq).await {
                        Ok(c) => c.1,
                        Err(e) => return Ok(Err(e.into())),
                    }
                };
                let last = selected.uidnext.saturating_sub(1);
                let mut gone: Vec<u32> = gone
                    .into_iter()
                    .filter(|&u| match &fetch.set {
                        command::SequenceSet::Ranges(r) => {
                            command::SequenceSet::contains(r, u, last)
                        }
                        command::SequenceSet::Saved => saved.contains(&u),
                    })
                    .filter(|&u| selected.index_of(u).is_none())
                    .collect();
                gone.sort_unstable();
                gone.dedup();
                if !gone.is_empty() {
                    conn.line(&format!("* VANISHED (EARLIER) {}", compact(&gone)));
                }
            }
            indices.retain(|&i| selected.msgs[i].modseq > since);
        }
        // PARTIAL (RFC 9394): a window of what is left, in UID order.
        if let Some(window) = fetch.partial {
            indices.sort_unstable();
            indices = indices[window.window(indices.len())].to_vec();
        }
        // Reading a body marks the message \Seen (unless read-only).
        if !selected.read_only && atts.iter().any(fetch::sets_seen) {
            let unseen: Vec<u32> = indices
                .iter()
                .map(|&i| &selected.msgs[i])
                .filter(|m| !m.has("\\Seen"))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let add = |flags: &[String]| {
                    let mut f = flags.to_vec();
                    f.push("\\Seen".into());
                    f
                };
                match store
                    .update_flags(&account, &selected.name, &unseen, None, &add)
                    .await
                {
                    Ok(update) => {
                        for (uid, flags, modseq) in update.changed {
                            if let Some(i) = selected.index_of(uid) {
                                selected.msgs_mut()[i].flags = flags;
                                selected.msgs_mut()[i].modseq = modseq;
                            }
                        }
                    }
                    Err(e) => return Ok(Err(e.into())),
                }
                if !atts.contains(&FetchAtt::Flags) {
                    atts.push(FetchAtt::Flags);
                }
            }
        }
        let recent = selected.recent.clone();
        let renderer = Renderer {
            blobs: self.ctx.shared.stores.blobs.as_ref(),
            utf8: self.enabled.utf8,
            recent: &recent,
        };
        let needs_entry = atts.iter().any(fetch::needs_entry);
        let mut missing = false;
        for chunk in indices.chunks(FETCH_BATCH) {
            let entries = if needs_entry {
                match selected.entries(&store, chunk).await {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(e.into())),
                }
            } else {
                Vec::new()
            };
            let mut next = 0;
            for &i in chunk {
                let msg = &selected.msgs[i];
                let entry = if needs_entry {
                    while next < entries.len() && entries[next].uid < msg.uid {
                        next += 1;
                    }
                    match entries.get(next) {
                        Some(e) if e.uid == msg.uid => Some(e),
                        _ => {
                            missing = true;
                            continue;
                        }
                    }
                } else {
                    None
                };
                let meta = match entry {
                    Some(e) => match store.meta(e).await {
                        Ok(m) => Some(m),
                        Err(e) => return Ok(Err(e.into())),
                    },
                    None => None,
                };
                let pair = entry.zip(meta.as_ref());
                let mut out = Vec::new();
                match renderer.message(&mut out, i + 1, msg, pair, &atts).await {
                    Ok(()) => conn.out().extend_from_slice(&out),
                    Err(FetchError::UnknownCte) => {
                        return Ok(Err(no("[UNKNOWN-CTE] cannot decode this part")));
                    }
                    Err(FetchError::Store(e)) => {
                        warn!(error = %e, uid = msg.uid, "IMAP FETCH cannot read a message");
                        missing = true;
                    }
                }
                if conn.queued() >= MAX_QUEUED {
                    conn.flush().await?;
                }
            }
        }
        Ok(if missing {
            Err(no(
                "[EXPUNGEISSUED] some messages were expunged or could not be read",
            ))
        } else {
            Ok(format!(
                "{} completed",
                if fetch.uid { "UID FETCH" } else { "FETCH" }
            ))
        })
    }
}
