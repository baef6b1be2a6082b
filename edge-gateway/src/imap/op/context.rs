//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): a SEARCH or SORT with
//! `RETURN (UPDATE)` stays live while its mailbox is selected. Whenever the
//! view changes (other sessions' or this session's own doing), the session
//! looks again and tells the client which messages left the result
//! (`REMOVEFROM`) and which joined it (`ADDTO`), under the search's tag;
//! `CANCELUPDATE` ends it. Expunged messages leave without REMOVEFROM (the
//! client hears EXPUNGE). An unsorted SEARCH reports position 0; a SORT
//! the position in its order, one message at a time.
//!
//! Looking again is a whole search (and, for SORT, a read of the
//! messages' envelopes), so only searches on what the index holds (flags,
//! dates, sizes, envelope fields) are kept live, on mailboxes of at most
//! [`MAX_LIVE_MESSAGES`] messages, at most [`MAX_LIVE`] at a time: any other
//! is answered once, with `* NO [NOUPDATE "tag"]`.

use std::collections::HashSet;
use std::fmt::Write as _;

use stratus_proto::imap::command::{SearchKey, SearchReturn, SortKey};

use crate::conn::Conn;
use crate::imap::search::{self, Need};
use crate::imap::selected::in_order;
use crate::imap::session::*;
use crate::imap::sort;

/// Live searches one session may hold.
pub(in crate::imap) const MAX_LIVE: usize = 8;
/// The largest mailbox a search is kept live on.
pub(in crate::imap) const MAX_LIVE_MESSAGES: usize = 10_000;

#[derive(Debug)]
pub(in crate::imap) struct LiveSearch {
    tag: String,
    uid: bool,
    key: SearchKey,
    sort: Option<Vec<(bool, SortKey)>>,
    /// The opening of the mailbox it searches ([`Selected::opened`]).
    ///
    /// [`Selected::opened`]: crate::imap::selected::Selected::opened
    opened: u64,
    /// The result as the client has it, as UIDs in result order.
    uids: Vec<u32>,
    /// The view's change count it was computed at.
    seen: u64,
}

impl Session<'_> {
    /// Keeps a search live after its first answer, or says why not.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::imap) fn start_update<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: &str,
        uid: bool,
        key: &SearchKey,
        sort: Option<Vec<(bool, SortKey)>>,
        uids: Vec<u32>,
        r: SearchReturn,
    ) {
        let Some(selected) = &self.selected else {
            return;
        };
        let refuse = |why: &str| format!("* NO [NOUPDATE \"{tag}\"] {why}");
        let refused = if r.partial.is_some() {
            Some(refuse("no updates for a PARTIAL result"))
        } else if search::need(key) > Need::Entry {
            Some(refuse("no updates for a search of headers or text"))
        } else if selected.msgs.len() > MAX_LIVE_MESSAGES {
            Some(refuse("the mailbox is too large to keep the search live"))
        } else if self
            .live
            .iter()
            .filter(|l| l.opened == selected.opened)
            .count()
            >= MAX_LIVE
        {
            Some(refuse("too many live searches; CANCELUPDATE one"))
        } else {
            None
        };
        if let Some(line) = refused {
            conn.line(&line);
            return;
        }
        let opened = selected.opened;
        self.live.retain(|l| l.tag != tag && l.opened == opened);
        self.live.push(LiveSearch {
            tag: tag.to_string(),
            uid,
            key: key.clone(),
            sort,
            opened: selected.opened,
            uids,
            seen: selected.changes,
        });
    }

    pub(in crate::imap) fn cancel_update(&mut self, tags: &[String]) -> Reply {
        if let Some(unknown) = tags
            .iter()
            .find(|t| !self.live.iter().any(|l| &l.tag == *t))
        {
            return Err(bad(format!("no live search has tag {}", echo(unknown))));
        }
        self.live.retain(|l| !tags.contains(&l.tag));
        Ok("CANCELUPDATE completed".into())
    }

    /// Tells the client how the results of its live searches changed since
    /// the view last changed.
    pub(in crate::imap) async fn update_live<S>(&mut self, conn: &mut Conn<S>) {
        let Some(selected) = &self.selected else {
            self.live.clear();
            return;
        };
        let (opened, changes) = (selected.opened, selected.changes);
        self.live.retain(|l| l.opened == opened);
        if self.live.iter().all(|l| l.seen == changes) {
            return;
        }
        let mut live = std::mem::take(&mut self.live);
        for l in &mut live {
            if l.seen == changes {
                continue;
            }
            l.seen = changes;
            let Ok(matched) = self.matching(&l.key).await else {
                continue;
            };
            let selected = self.selected.as_ref().expect("selected");
            let now: Vec<u32> = match &l.sort {
                None => matched.iter().map(|&i| selected.msgs[i].uid).collect(),
                Some(criteria) => match self.sort_items(&matched, true, false).await {
                    Ok(mut items) => {
                        sort::sort(&mut items, criteria);
                        items.iter().map(|i| i.number).collect()
                    }
                    Err(_) => continue,
                },
            };
            let selected = self.selected.as_ref().expect("selected");
            let number = |uid: u32| {
                if l.uid {
                    uid
                } else {
                    selected.index_of(uid).map_or(0, |i| i as u32 + 1)
                }
            };
            // What the client holds: the old result less what it saw
            // expunged.
            let held: Vec<u32> = l
                .uids
                .iter()
                .copied()
                .filter(|&u| selected.index_of(u).is_some())
                .collect();
            let now_set: HashSet<u32> = now.iter().copied().collect();
            let held_set: HashSet<u32> = held.iter().copied().collect();
            let mut line = format!("* ESEARCH (TAG \"{}\")", l.tag);
            if l.uid {
                line.push_str(" UID");
            }
            let before = line.len();
            match l.sort {
                None => {
                    let mut gone: Vec<u32> = held
                        .iter()
                        .filter(|u| !now_set.contains(u))
                        .map(|&u| number(u))
                        .collect();
                    let mut came: Vec<u32> = now
                        .iter()
                        .filter(|u| !held_set.contains(u))
                        .map(|&u| number(u))
                        .collect();
                    gone.sort_unstable();
                    came.sort_unstable();
                    if !gone.is_empty() {
                        let _ = write!(line, " REMOVEFROM (0 {})", in_order(&gone));
                    }
                    if !came.is_empty() {
                        let _ = write!(line, " ADDTO (0 {})", in_order(&came));
                    }
                }
                Some(_) => {
                    // Removals from the end (positions before them hold),
                    // then additions in order (the order of the others does
                    // not change: sort keys do not).
                    for (pos, &u) in held.iter().enumerate().rev() {
                        if !now_set.contains(&u) {
                            let _ = write!(line, " REMOVEFROM ({} {})", pos + 1, number(u));
                        }
                    }
                    for (pos, &u) in now.iter().enumerate() {
                        if !held_set.contains(&u) {
                            let _ = write!(line, " ADDTO ({} {})", pos + 1, number(u));
                        }
                    }
                }
            }
            if line.len() > before {
                conn.line(&line);
            }
            l.uids = now;
        }
        self.live = live;
    }
}
