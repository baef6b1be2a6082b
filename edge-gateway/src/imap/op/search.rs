//! SEARCH (with ESEARCH and SEARCHRES), SORT and THREAD (RFC 5256): the
//! matching messages from the index where it can, the bodies where it must.

use std::fmt::Write as _;

use stratus_proto::imap::command::{self, Search, SearchKey, SortKey, ThreadAlgorithm};

use crate::conn::Conn;
use crate::imap::fetch::{self, Renderer};
use crate::imap::search::{self, Candidate, Need};
use crate::imap::selected::in_order;
use crate::imap::session::*;
use crate::imap::sort;

impl Session<'_> {
    /// The view's indices of the messages a search program matches.
    pub(in crate::imap) async fn matching(&self, key: &SearchKey) -> Result<Vec<usize>, Refusal> {
        let store = self.store();
        let selected = self.selected.as_ref().expect("selected");
        let need = search::need(key);
        let ctx = search::Context {
            view: selected,
            saved: &self.saved,
        };
        let mut matched: Vec<usize> = Vec::new();
        let all: Vec<usize> = (0..selected.msgs.len()).collect();
        if need == Need::View {
            for &i in &all {
                let c = Candidate {
                    seq: i as u32 + 1,
                    msg: &selected.msgs[i],
                    entry: None,
                    meta: None,
                    header: None,
                    raw: None,
                };
                if ctx.matches(key, &c) {
                    matched.push(i);
                }
            }
        } else {
            let renderer = Renderer {
                blobs: self.ctx.shared.stores.blobs.as_ref(),
                utf8: self.enabled.utf8,
                recent: &[],
            };
            for chunk in all.chunks(FETCH_BATCH) {
                let entries = selected
                    .entries(&store, chunk)
                    .await
                    .map_err(Refusal::from)?;
                for entry in &entries {
                    let Some(i) = selected.index_of(entry.uid) else {
                        continue;
                    };
                    let meta = store.meta(entry).await.map_err(Refusal::from)?;
                    let mut header = None;
                    let mut raw = None;
                    if need >= Need::Header {
                        let end = entry.prefix.len() as u64 + meta.structure.body_start;
                        let data = if need == Need::Body {
                            renderer.read(entry, 0, entry.size).await
                        } else {
                            renderer.read(entry, 0, end).await
                        };
                        match data {
                            Ok(d) if need == Need::Body => raw = Some(d),
                            Ok(d) => header = Some(d),
                            Err(_) => continue,
                        }
                    }
                    let header_slice = match (&header, &raw) {
                        (Some(h), _) => Some(h.as_slice()),
                        (None, Some(r)) => {
                            let end = (entry.prefix.len() as u64 + meta.structure.body_start)
                                .min(r.len() as u64);
                            Some(&r[..end as usize])
                        }
                        _ => None,
                    };
                    let c = Candidate {
                        seq: i as u32 + 1,
                        msg: &selected.msgs[i],
                        entry: Some(entry),
                        meta: Some(&meta),
                        header: header_slice,
                        raw: raw.as_deref(),
                    };
                    if ctx.matches(key, &c) {
                        matched.push(i);
                    }
                }
            }
        }
        Ok(matched)
    }

    pub(in crate::imap) async fn search<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: &str,
        search: Search,
    ) -> Reply {
        check_charset(search.charset.as_deref())?;
        // A MODSEQ criterion enables CONDSTORE (RFC 7162 §3.1).
        if contains_modseq(&search.key) {
            self.enabled.condstore = true;
        }
        let matched = self.matching(&search.key).await?;
        let selected = self.selected.as_ref().expect("selected");
        let numbers: Vec<u32> = matched
            .iter()
            .map(|&i| {
                if search.uid {
                    selected.msgs[i].uid
                } else {
                    i as u32 + 1
                }
            })
            .collect();
        let has_modseq = contains_modseq(&search.key);
        let uids: Vec<u32> = matched.iter().map(|&i| selected.msgs[i].uid).collect();
        // IMAP4rev2 has no untagged SEARCH: a plain SEARCH is RETURN (ALL).
        let returns = search.returns.or_else(|| {
            self.enabled.rev2.then(|| command::SearchReturn {
                all: true,
                ..Default::default()
            })
        });
        match returns {
            None => {
                let mut line = String::from("* SEARCH");
                for n in &numbers {
                    let _ = write!(line, " {n}");
                }
                let highest = matched.iter().map(|&i| selected.msgs[i].modseq).max();
                if has_modseq && let Some(m) = highest {
                    let _ = write!(line, " (MODSEQ {m})");
                }
                conn.line(&line);
            }
            Some(r) => {
                if r.save {
                    self.saved = uids.clone();
                }
                let selected = self.selected.as_ref().expect("selected");
                let only_save =
                    r.save && !(r.min || r.max || r.all || r.count || r.partial.is_some());
                if !only_save {
                    let found: Vec<(u32, u64)> = matched
                        .iter()
                        .zip(&numbers)
                        .map(|(&i, &n)| (n, selected.msgs[i].modseq))
                        .collect();
                    conn.line(&esearch(tag, search.uid, &r, &found, has_modseq));
                }
                if r.update {
                    let key = search.key.clone();
                    self.start_update(conn, tag, search.uid, &key, None, uids.clone(), r);
                }
            }
        }
        Ok(format!(
            "{} completed",
            if search.uid { "UID SEARCH" } else { "SEARCH" }
        ))
    }

    /// SORT and THREAD (RFC 5256) over the messages a search matches.
    pub(in crate::imap) async fn sort_or_thread<S>(
        &mut self,
        conn: &mut Conn<S>,
        tag: &str,
        uid: bool,
        charset: &str,
        key: &SearchKey,
        ordering: Ordering,
    ) -> Reply {
        check_charset(Some(charset))?;
        let matched = self.matching(key).await?;
        let want_references = matches!(ordering, Ordering::Thread(ThreadAlgorithm::References));
        let mut items = self.sort_items(&matched, uid, want_references).await?;
        let verb = match (&ordering, uid) {
            (Ordering::Sort(..), false) => "SORT",
            (Ordering::Sort(..), true) => "UID SORT",
            (Ordering::Thread(_), false) => "THREAD",
            (Ordering::Thread(_), true) => "UID THREAD",
        };
        match ordering {
            Ordering::Sort(criteria, returns) => {
                sort::sort(&mut items, &criteria);
                if let Some(r) = returns {
                    // ESORT (RFC 5267): MIN and MAX are the first and last
                    // in sort order, ALL is the order.
                    let found: Vec<(u32, u64)> =
                        items.iter().map(|i| (i.number, i.modseq)).collect();
                    let has_modseq = contains_modseq(key);
                    conn.line(&esearch(tag, uid, &r, &found, has_modseq));
                    if r.update {
                        let selected = self.selected.as_ref().expect("selected");
                        let uids = items
                            .iter()
                            .map(|i| selected.msgs[i.seq as usize - 1].uid)
                            .collect();
                        self.start_update(conn, tag, uid, key, Some(criteria), uids, r);
                    }
                } else {
                    let mut line = String::from("* SORT");
                    for item in &items {
                        let _ = write!(line, " {}", item.number);
                    }
                    conn.line(&line);
                }
            }
            Ordering::Thread(algorithm) => {
                let threads = match algorithm {
                    ThreadAlgorithm::OrderedSubject => sort::ordered_subject(&items),
                    ThreadAlgorithm::References => sort::references(&items),
                };
                conn.line(format!("* THREAD {threads}").trim_end());
            }
        }
        Ok(format!("{verb} completed"))
    }

    /// What SORT and THREAD need of the messages at `matched` (view
    /// indices), numbered by UID or sequence number.
    pub(in crate::imap) async fn sort_items(
        &self,
        matched: &[usize],
        uid: bool,
        want_references: bool,
    ) -> Result<Vec<sort::Item>, Refusal> {
        let store = self.store();
        let renderer = Renderer {
            blobs: self.ctx.shared.stores.blobs.as_ref(),
            utf8: self.enabled.utf8,
            recent: &[],
        };
        let selected = self.selected.as_ref().expect("selected");
        let mut items = Vec::with_capacity(matched.len());
        for chunk in matched.chunks(FETCH_BATCH) {
            let entries = selected
                .entries(&store, chunk)
                .await
                .map_err(Refusal::from)?;
            for entry in entries {
                let Some(i) = selected.index_of(entry.uid) else {
                    continue;
                };
                let meta = store.meta(&entry).await.map_err(Refusal::from)?;
                let mut references = Vec::new();
                if want_references {
                    let end = entry.prefix.len() as u64 + meta.structure.body_start;
                    if let Ok(header) = renderer.read(&entry, 0, end).await {
                        let field = fetch::filter_header(&header, &["References".into()], false);
                        references = sort::message_ids(&String::from_utf8_lossy(&field));
                    }
                }
                items.push(sort::Item {
                    number: if uid { entry.uid } else { i as u32 + 1 },
                    seq: i as u32 + 1,
                    internal_date: entry.internal_date,
                    size: entry.size,
                    modseq: selected.msgs[i].modseq,
                    envelope: meta.envelope,
                    references,
                });
            }
        }
        Ok(items)
    }
}

/// The ESEARCH response (RFC 4731; ESORT and PARTIAL, RFC 5267 and 9394)
/// for `found`, the matches as (number, MODSEQ) in result order: ascending
/// for SEARCH, sort order for SORT.
fn esearch(
    tag: &str,
    uid: bool,
    r: &command::SearchReturn,
    found: &[(u32, u64)],
    has_modseq: bool,
) -> String {
    let numbers: Vec<u32> = found.iter().map(|f| f.0).collect();
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    if r.min
        && let Some(n) = numbers.first()
    {
        let _ = write!(line, " MIN {n}");
    }
    if r.max
        && let Some(n) = numbers.last()
    {
        let _ = write!(line, " MAX {n}");
    }
    if r.all && !numbers.is_empty() {
        let _ = write!(line, " ALL {}", in_order(&numbers));
    }
    if r.count {
        let _ = write!(line, " COUNT {}", numbers.len());
    }
    let window = r.partial.map(|p| (p, p.window(found.len())));
    if let Some((p, w)) = &window {
        let part = &numbers[w.clone()];
        if part.is_empty() {
            let _ = write!(line, " PARTIAL ({p} NIL)");
        } else {
            let _ = write!(line, " PARTIAL ({p} {})", in_order(part));
        }
    }
    // RFC 4731 §3.2: the highest MODSEQ of the messages returned: all
    // matches for ALL or COUNT, those in the window for PARTIAL, else just
    // the MIN and MAX ones.
    let returned = if r.all || r.count {
        found.iter().map(|f| f.1).max()
    } else {
        let ends = [
            found.first().filter(|_| r.min),
            found.last().filter(|_| r.max),
        ];
        let part = window.map_or(&[][..], |(_, w)| &found[w]);
        ends.into_iter().flatten().chain(part).map(|f| f.1).max()
    };
    if has_modseq && let Some(m) = returned {
        let _ = write!(line, " MODSEQ {m}");
    }
    line
}

/// What SORT or THREAD does with the matches.
pub(in crate::imap) enum Ordering {
    Sort(Vec<(bool, SortKey)>, Option<command::SearchReturn>),
    Thread(ThreadAlgorithm),
}

/// SEARCH, SORT and THREAD take UTF-8 and US-ASCII.
pub(in crate::imap) fn check_charset(charset: Option<&str>) -> Result<(), Refusal> {
    match charset {
        None | Some("UTF-8" | "US-ASCII") => Ok(()),
        Some(_) => Err(no("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset")),
    }
}

pub(in crate::imap) fn contains_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(keys) => keys.iter().any(contains_modseq),
        SearchKey::Or(a, b) => contains_modseq(a) || contains_modseq(b),
        SearchKey::Not(k) => contains_modseq(k),
        _ => false,
    }
}
