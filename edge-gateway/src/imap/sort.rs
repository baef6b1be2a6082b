//! SORT and THREAD (RFC 5256): ordering and threading the messages a
//! search matched, from the stored envelope and, for THREAD=REFERENCES,
//! the References header.

use std::cmp::Ordering;
use std::collections::HashMap;

use stratus_core::message::{EnvelopeAddress, EnvelopeMeta};

pub use stratus_proto::imap::command::SortKey;

/// What a message brings to sorting and threading.
#[derive(Debug, Clone)]
pub struct Item {
    /// What the response carries: a sequence number or a UID.
    pub number: u32,
    /// Sequence number (the final tie-breaker).
    pub seq: u32,
    pub internal_date: i64,
    pub size: u64,
    pub envelope: EnvelopeMeta,
    /// Message-IDs of the References header, oldest first.
    pub references: Vec<String>,
}

impl Item {
    /// The sent date: the Date header, else the internal date (§2.2).
    fn sent(&self) -> i64 {
        self.envelope.sent.unwrap_or(self.internal_date)
    }
}

fn first_mailbox(list: &[EnvelopeAddress]) -> String {
    list.iter()
        .find_map(|a| a.mailbox.clone().filter(|_| a.host.is_some()))
        .unwrap_or_default()
        .to_uppercase()
}

fn compare(a: &Item, b: &Item, key: SortKey) -> Ordering {
    match key {
        SortKey::Arrival => a.internal_date.cmp(&b.internal_date),
        SortKey::Date => a.sent().cmp(&b.sent()),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::Subject => base_subject(a.envelope.subject.as_deref().unwrap_or(""))
            .cmp(&base_subject(b.envelope.subject.as_deref().unwrap_or(""))),
        SortKey::From => first_mailbox(&a.envelope.from).cmp(&first_mailbox(&b.envelope.from)),
        SortKey::To => first_mailbox(&a.envelope.to).cmp(&first_mailbox(&b.envelope.to)),
        SortKey::Cc => first_mailbox(&a.envelope.cc).cmp(&first_mailbox(&b.envelope.cc)),
    }
}

/// Sorts by the criteria (`true`: REVERSE), ties by sequence number.
pub fn sort(items: &mut [Item], criteria: &[(bool, SortKey)]) {
    items.sort_by(|a, b| {
        for &(reverse, key) in criteria {
            let o = compare(a, b, key);
            let o = if reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// The base subject (RFC 5256 §2.1): reply and forward markers, list tags
/// and `(fwd)` trailers stripped, white space collapsed, upper-cased for
/// i;ascii-casemap comparison.
pub fn base_subject(subject: &str) -> String {
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = s.clone();
        // Trailing "(fwd)".
        loop {
            let t = s.trim_end();
            if t.len() >= 5 && t[t.len() - 5..].eq_ignore_ascii_case("(fwd)") {
                s = t[..t.len() - 5].trim_end().to_string();
            } else {
                s = t.to_string();
                break;
            }
        }
        // Leading "re:", "fw:", "fwd:" (with an optional [blob]) and
        // leading [blob]s that leave something behind.
        loop {
            let t = s.trim_start().to_string();
            let lower = t.to_ascii_lowercase();
            let marker = ["re", "fwd", "fw"].iter().find_map(|m| {
                let rest = lower.strip_prefix(m)?;
                let rest_t = rest.trim_start();
                let after_blob = if rest_t.starts_with('[') {
                    rest_t.find(']').map(|i| rest_t[i + 1..].trim_start())?
                } else {
                    rest_t
                };
                after_blob.strip_prefix(':').map(|r| t.len() - r.len())
            });
            if let Some(cut) = marker {
                s = t[cut..].to_string();
                continue;
            }
            if t.starts_with('[')
                && let Some(i) = t.find(']')
                && !t[i + 1..].trim().is_empty()
            {
                s = t[i + 1..].to_string();
                continue;
            }
            s = t;
            break;
        }
        // "[fwd: ... ]".
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].trim().to_string();
        }
        if s == before {
            break;
        }
    }
    s.to_uppercase()
}

/// Whether a subject was a reply or forward (the marker test of §2.1).
fn is_reply(subject: &str) -> bool {
    let t = subject.trim_start().to_ascii_lowercase();
    t.starts_with("re:")
        || t.starts_with("re[")
        || t.starts_with("fw:")
        || t.starts_with("fwd:")
        || t.starts_with("fw[")
        || t.starts_with("fwd[")
        || t.starts_with("[fwd:")
}

/// A thread node: a message (index into the items) or a dummy.
#[derive(Debug, Default, Clone)]
struct Node {
    item: Option<usize>,
    children: Vec<usize>,
    parent: Option<usize>,
}

/// THREAD=ORDEREDSUBJECT: threads by base subject; each thread's first
/// message (by sent date) is the parent of the rest; threads ordered by
/// their first message.
pub fn ordered_subject(items: &[Item]) -> String {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[a]
            .sent()
            .cmp(&items[b].sent())
            .then(items[a].seq.cmp(&items[b].seq))
    });
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    for i in order {
        let subject = base_subject(items[i].envelope.subject.as_deref().unwrap_or(""));
        match by_subject.get(&subject) {
            Some(&g) => groups[g].1.push(i),
            None => {
                by_subject.insert(subject.clone(), groups.len());
                groups.push((subject, vec![i]));
            }
        }
    }
    let mut out = String::new();
    for (_, members) in groups {
        out.push('(');
        out.push_str(&items[members[0]].number.to_string());
        match &members[1..] {
            [] => {}
            [one] => {
                out.push(' ');
                out.push_str(&items[*one].number.to_string());
            }
            rest => {
                out.push(' ');
                for &m in rest {
                    out.push('(');
                    out.push_str(&items[m].number.to_string());
                    out.push(')');
                }
            }
        }
        out.push(')');
    }
    out
}

/// THREAD=REFERENCES (RFC 5256 §3, after J. Zawinski's algorithm).
pub fn references(items: &[Item]) -> String {
    let mut nodes: Vec<Node> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut node_for = |id: &str, nodes: &mut Vec<Node>| -> usize {
        *by_id.entry(id.to_string()).or_insert_with(|| {
            nodes.push(Node::default());
            nodes.len() - 1
        })
    };
    let is_ancestor = |nodes: &[Node], ancestor: usize, mut n: usize| -> bool {
        let mut steps = 0;
        loop {
            if n == ancestor {
                return true;
            }
            match nodes[n].parent {
                Some(p) if steps < 10_000 => {
                    n = p;
                    steps += 1;
                }
                _ => return false,
            }
        }
    };
    let link = |nodes: &mut Vec<Node>, parent: usize, child: usize| {
        if let Some(old) = nodes[child].parent {
            nodes[old].children.retain(|&c| c != child);
        }
        nodes[child].parent = Some(parent);
        nodes[parent].children.push(child);
    };
    for (i, item) in items.iter().enumerate() {
        // (1A) A node for the message; a missing or duplicate Message-ID
        // gets a unique one.
        let id = item
            .envelope
            .message_id
            .as_deref()
            .and_then(first_id)
            .unwrap_or_default();
        let mut me = node_for(&id, &mut nodes);
        if id.is_empty() || nodes[me].item.is_some() {
            me = node_for(&format!("\u{0}unique-{i}"), &mut nodes);
        }
        nodes[me].item = Some(i);
        // (1B) Link the references in order.
        let mut refs = item.references.clone();
        // (1B) without References: In-Reply-To's first id (RFC 5256 §3).
        if refs.is_empty()
            && let Some(first) = item.envelope.in_reply_to.as_deref().and_then(first_id)
        {
            refs.push(first);
        }
        let mut prev: Option<usize> = None;
        for r in &refs {
            let n = node_for(r, &mut nodes);
            if let Some(p) = prev
                && nodes[n].parent.is_none()
                && p != n
                && !is_ancestor(&nodes, n, p)
            {
                link(&mut nodes, p, n);
            }
            prev = Some(n);
        }
        // (1C) The last reference is the message's parent.
        if let Some(p) = prev {
            if p != me && !is_ancestor(&nodes, me, p) {
                link(&mut nodes, p, me);
            }
        } else if let Some(old) = nodes[me].parent.take() {
            nodes[old].children.retain(|&c| c != me);
        }
    }
    // (2) The root set; (3) prune dummies.
    let roots: Vec<usize> = (0..nodes.len())
        .filter(|&n| nodes[n].parent.is_none())
        .collect();
    let mut roots = prune(&mut nodes, roots, true);
    // (4) Sort siblings by sent date of their (first) message.
    let date = |nodes: &[Node], n: usize| -> (i64, u32) {
        let mut n = n;
        loop {
            if let Some(i) = nodes[n].item {
                return (items[i].sent(), items[i].seq);
            }
            match nodes[n].children.first() {
                Some(&c) => n = c,
                None => return (i64::MAX, u32::MAX),
            }
        }
    };
    sort_tree(&mut nodes, &mut roots, &date);
    // (5) Merge roots by base subject.
    let subject_of = |nodes: &[Node], n: usize| -> Option<(String, bool)> {
        let mut n = n;
        loop {
            if let Some(i) = nodes[n].item {
                let s = items[i].envelope.subject.clone().unwrap_or_default();
                return Some((base_subject(&s), is_reply(&s)));
            }
            n = *nodes[n].children.first()?;
        }
    };
    let mut merged: Vec<usize> = Vec::new();
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let Some((subject, reply)) = subject_of(&nodes, r) else {
            merged.push(r);
            continue;
        };
        if subject.is_empty() {
            merged.push(r);
            continue;
        }
        match table.get(&subject).copied() {
            None => {
                table.insert(subject, r);
                merged.push(r);
            }
            Some(existing) => {
                let existing_dummy = nodes[existing].item.is_none();
                let existing_reply = subject_of(&nodes, existing).is_some_and(|(_, r)| r);
                if existing_dummy || (reply && !existing_reply) {
                    link(&mut nodes, existing, r);
                } else {
                    // Both (or neither) replies: a new dummy holds both.
                    nodes.push(Node::default());
                    let dummy = nodes.len() - 1;
                    let pos = merged.iter().position(|&m| m == existing).unwrap_or(0);
                    link(&mut nodes, dummy, existing);
                    link(&mut nodes, dummy, r);
                    merged[pos] = dummy;
                    table.insert(subject, dummy);
                }
            }
        }
    }
    let mut roots = merged;
    sort_tree(&mut nodes, &mut roots, &date);
    let mut out = String::new();
    for r in roots {
        out.push('(');
        write_thread(&nodes, items, r, &mut out);
        out.push(')');
    }
    out
}

/// Removes empty dummies and promotes the children of dummies, except a
/// root dummy with several children (RFC 5256 §3 step 3).
fn prune(nodes: &mut Vec<Node>, list: Vec<usize>, root: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for n in list {
        let children = std::mem::take(&mut nodes[n].children);
        let children = prune(nodes, children, false);
        if nodes[n].item.is_none() {
            if children.is_empty() {
                continue;
            }
            if !(root && children.len() > 1) {
                let parent = nodes[n].parent;
                for &c in &children {
                    nodes[c].parent = parent;
                }
                out.extend(children);
                continue;
            }
        }
        for &c in &children {
            nodes[c].parent = Some(n);
        }
        nodes[n].children = children;
        out.push(n);
    }
    out
}

/// A node's sort key: the sent date and sequence number of its message.
type DateOf<'a> = dyn Fn(&[Node], usize) -> (i64, u32) + 'a;

fn sort_tree(nodes: &mut Vec<Node>, list: &mut [usize], date: &DateOf<'_>) {
    for &n in list.iter() {
        let mut children = std::mem::take(&mut nodes[n].children);
        sort_tree(nodes, &mut children, date);
        nodes[n].children = children;
    }
    list.sort_by_key(|&n| date(nodes, n));
}

/// Writes a thread's members: a message, then its one child in a chain,
/// or its several children each in parentheses (RFC 5256 §4).
fn write_thread(nodes: &[Node], items: &[Item], n: usize, out: &mut String) {
    match nodes[n].item {
        Some(i) => {
            out.push_str(&items[i].number.to_string());
            match nodes[n].children.as_slice() {
                [] => {}
                [one] => {
                    out.push(' ');
                    write_thread(nodes, items, *one, out);
                }
                many => {
                    out.push(' ');
                    for &c in many {
                        out.push('(');
                        write_thread(nodes, items, c, out);
                        out.push(')');
                    }
                }
            }
        }
        None => {
            for &c in &nodes[n].children {
                out.push('(');
                write_thread(nodes, items, c, out);
                out.push(')');
            }
        }
    }
}

/// The first message id of a Message-ID or In-Reply-To value, in angle
/// brackets: metadata stored by older versions kept a single id without
/// them, and a sender may leave them out.
fn first_id(value: &str) -> Option<String> {
    let value = value.trim();
    message_ids(value).into_iter().next().or_else(|| {
        (!value.is_empty() && !value.contains(char::is_whitespace)).then(|| format!("<{value}>"))
    })
}

/// The `<...>` message ids in a header value.
pub fn message_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        out.push(rest[start..start + len + 1].to_string());
        rest = &rest[start + len + 1..];
        if out.len() >= 1000 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u32, subject: &str, id: &str, refs: &[&str], sent: i64) -> Item {
        Item {
            number: n,
            seq: n,
            internal_date: sent,
            size: u64::from(n),
            envelope: EnvelopeMeta {
                subject: Some(subject.into()),
                message_id: (!id.is_empty()).then(|| id.to_string()),
                sent: Some(sent),
                ..Default::default()
            },
            references: refs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: Fwd: [list] Hello  world (fwd)"),
            "HELLO WORLD"
        );
        assert_eq!(base_subject("RE[2]: hi"), "HI");
        assert_eq!(base_subject("[Fwd: plans]"), "PLANS");
        assert_eq!(base_subject("[only a tag]"), "[ONLY A TAG]");
        assert_eq!(base_subject("re: re: re:"), "");
    }

    #[test]
    fn sorting() {
        let mut items = vec![
            item(1, "b", "", &[], 30),
            item(2, "Re: a", "", &[], 10),
            item(3, "c", "", &[], 20),
        ];
        sort(&mut items, &[(false, SortKey::Subject)]);
        assert_eq!(
            items.iter().map(|i| i.number).collect::<Vec<_>>(),
            [2, 1, 3]
        );
        sort(&mut items, &[(true, SortKey::Date)]);
        assert_eq!(
            items.iter().map(|i| i.number).collect::<Vec<_>>(),
            [1, 3, 2]
        );
    }

    #[test]
    fn threads_by_subject_and_references() {
        let items = vec![
            item(1, "Plans", "<a@x>", &[], 10),
            item(2, "Re: Plans", "<b@x>", &["<a@x>"], 20),
            item(3, "Other", "<c@x>", &[], 15),
            item(4, "Re: Plans", "<d@x>", &["<a@x>", "<b@x>"], 30),
            item(5, "Re: Plans", "<e@x>", &["<a@x>"], 40),
        ];
        assert_eq!(ordered_subject(&items), "(1 (2)(4)(5))(3)");
        assert_eq!(references(&items), "(1 (2 4)(5))(3)");
        // A reply whose parent is missing hangs under a dummy, merged by
        // subject with its siblings.
        let orphans = vec![
            item(1, "Re: lost", "<x@x>", &["<gone@x>"], 10),
            item(2, "Re: lost", "<y@x>", &["<gone@x>"], 20),
        ];
        assert_eq!(references(&orphans), "((1)(2))");
    }

    /// Issue 18 point 6: without References, In-Reply-To places a reply,
    /// whether its id has brackets (as sent) or not (metadata of older
    /// versions); different subjects show the link is not by subject.
    #[test]
    fn in_reply_to_threads_when_references_are_absent() {
        let reply = |n: u32, subject: &str, id: &str, parent: &str| {
            let mut i = item(n, subject, id, &[], i64::from(n) * 10);
            i.envelope.in_reply_to = Some(parent.into());
            i
        };
        let items = vec![
            item(1, "Question", "<q@x>", &[], 10),
            reply(2, "An answer", "<r@x>", "<q@x>"),
            reply(3, "Another", "<s@x>", "q@x"),
            reply(4, "Third", "<t@x>", "<r@x> (in reply to r)"),
            item(5, "Unrelated", "<u@x>", &[], 50),
        ];
        assert_eq!(references(&items), "(1 (2 4)(3))(5)");
    }
}
