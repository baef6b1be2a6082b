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
    /// For ESORT's MODSEQ.
    pub modseq: u64,
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

/// The `addr-mailbox` of the first address (RFC 5256 §3): for a list
/// that starts with a group, the group's name, as ENVELOPE shows it.
fn first_mailbox(list: &[EnvelopeAddress]) -> String {
    list.first()
        .and_then(|a| a.mailbox.as_deref())
        .unwrap_or_default()
        .to_uppercase()
}

/// The display name of the first address (RFC 5957 §3): its name if it
/// has a non-empty one, a group's name, else its `mailbox@host`; compared
/// without regard to case.
fn display(list: &[EnvelopeAddress]) -> String {
    let Some(a) = list.first() else {
        return String::new();
    };
    let shown = match (a.name.as_deref().map(str::trim), &a.mailbox, &a.host) {
        (Some(name), _, _) if !name.is_empty() => name.to_string(),
        (_, Some(mailbox), Some(host)) => format!("{mailbox}@{host}"),
        (_, Some(group), None) => group.clone(),
        _ => String::new(),
    };
    shown.to_uppercase()
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
        SortKey::DisplayFrom => display(&a.envelope.from).cmp(&display(&b.envelope.from)),
        SortKey::DisplayTo => display(&a.envelope.to).cmp(&display(&b.envelope.to)),
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

/// The base subject (RFC 5256 §2.1), step by step: white space collapsed
/// (1); `(fwd)` trailers removed (2); leaders (`re:`, `fw:`, `fwd:`, each
/// with optional `[blob]`s before and after the marker) and leading blobs
/// that leave a non-empty subject removed until none is left (3-5); a
/// `[fwd: …]` wrapper removed, and back to step 2 (6). Upper-cased for
/// comparison.
pub fn base_subject(subject: &str) -> String {
    subject_key(subject).0
}

/// The base subject and whether the message is a reply or forward: one
/// whose subject lost a `(fwd)` trailer, a `re:`/`fw:`/`fwd:` marker or a
/// `[fwd: …]` wrapper on the way (what THREAD=REFERENCES step 5 asks).
fn subject_key(subject: &str) -> (String, bool) {
    let mut s: &str = &subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        let trimmed = strip_trailers(s);
        reply |= trimmed.len() < s.trim_end().len();
        s = trimmed;
        loop {
            if let Some((rest, marker)) = strip_leader(s) {
                reply |= marker;
                s = rest;
            } else if let Some(rest) = blob(s).filter(|rest| !rest.trim().is_empty()) {
                s = rest;
            } else {
                break;
            }
        }
        let b = s.as_bytes();
        if b.len() >= 6 && b[..5].eq_ignore_ascii_case(b"[fwd:") && b[b.len() - 1] == b']' {
            s = &s[5..s.len() - 1];
            reply = true;
            continue;
        }
        break;
    }
    (s.to_uppercase(), reply)
}

/// Step 2: `*WSP "(fwd)"` at the end, as often as it is there.
fn strip_trailers(mut s: &str) -> &str {
    loop {
        s = s.trim_end();
        let b = s.as_bytes();
        if b.len() >= 5 && b[b.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
            s = &s[..s.len() - 5];
        } else {
            return s;
        }
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: what follows one at the start.
fn blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(['[', ']'])?;
    (inner.as_bytes()[end] == b']').then(|| inner[end + 1..].trim_start())
}

/// One `subj-leader = (*subj-blob subj-refwd) / WSP` at the start: what
/// follows it, and whether it was a reply or forward marker.
fn strip_leader(s: &str) -> Option<(&str, bool)> {
    if s.starts_with(' ') {
        return Some((s.trim_start(), false));
    }
    let mut rest = s;
    while let Some(after) = blob(rest) {
        rest = after;
    }
    // subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    let b = rest.as_bytes();
    let marker = if b.len() >= 3 && b[..3].eq_ignore_ascii_case(b"fwd") {
        3
    } else if b.len() >= 2
        && (b[..2].eq_ignore_ascii_case(b"re") || b[..2].eq_ignore_ascii_case(b"fw"))
    {
        2
    } else {
        return None;
    };
    let mut after = rest[marker..].trim_start();
    if let Some(a) = blob(after) {
        after = a;
    }
    after.strip_prefix(':').map(|rest| (rest, true))
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

/// How far up the tree a loop check looks: a link whose parent chain is
/// deeper is refused as if it made a loop, which keeps a hostile chain of
/// 100,000 replies to linear time.
const MAX_CHAIN: usize = 1000;

/// THREAD=REFERENCES (RFC 5256 §3, after J. Zawinski's algorithm), step
/// by step. Every walk over the tree is iterative: a thread may be as deep
/// as the mailbox is large.
pub fn references(items: &[Item]) -> String {
    let mut nodes: Vec<Node> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut node_for = |id: &str, nodes: &mut Vec<Node>| -> usize {
        *by_id.entry(id.to_string()).or_insert_with(|| {
            nodes.push(Node::default());
            nodes.len() - 1
        })
    };
    // Whether linking `child` under `parent` would make a loop (or the
    // parent's chain is too deep to tell).
    let would_loop = |nodes: &[Node], child: usize, parent: usize| -> bool {
        let mut n = parent;
        for _ in 0..MAX_CHAIN {
            if n == child {
                return true;
            }
            match nodes[n].parent {
                Some(p) => n = p,
                None => return false,
            }
        }
        true
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
        // (1B) Link the references in order, leaving existing links and
        // any that would make a loop; without References, In-Reply-To's
        // first id is the one reference.
        let mut refs = item.references.clone();
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
                && !would_loop(&nodes, n, p)
            {
                link(&mut nodes, p, n);
            }
            prev = Some(n);
        }
        // (1C) The last reference is the message's parent, replacing a
        // parent a truncated References gave it; none, and it has none.
        match prev {
            Some(p) => {
                if !would_loop(&nodes, me, p) {
                    link(&mut nodes, p, me);
                }
            }
            None => unlink(&mut nodes, me),
        }
    }
    // (2) The root set; (3) prune dummies.
    let roots: Vec<usize> = (0..nodes.len())
        .filter(|&n| nodes[n].parent.is_none())
        .collect();
    let roots = prune(&mut nodes, roots);
    // (4) Sort (the children of dummies first, for their sort key).
    let date = |i: usize| (items[i].sent(), items[i].seq);
    let roots = sort_tree(&mut nodes, roots, &date);
    // (5) Merge the threads under the root by base subject.
    let subjects: Vec<(String, bool)> = items
        .iter()
        .map(|i| subject_key(i.envelope.subject.as_deref().unwrap_or("")))
        .collect();
    let roots = merge_by_subject(&mut nodes, roots, &subjects);
    // (6) Sort every set of siblings.
    let roots = sort_tree(&mut nodes, roots, &date);
    let mut out = String::new();
    for r in roots {
        write_thread(&nodes, items, r, &mut out);
    }
    out
}

fn unlink(nodes: &mut [Node], child: usize) {
    if let Some(old) = nodes[child].parent.take() {
        nodes[old].children.retain(|&c| c != child);
    }
}

fn link(nodes: &mut [Node], parent: usize, child: usize) {
    unlink(nodes, child);
    nodes[child].parent = Some(parent);
    nodes[parent].children.push(child);
}

/// The nodes under `roots`, every parent before its children.
fn preorder(nodes: &[Node], roots: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
    while let Some(n) = stack.pop() {
        out.push(n);
        stack.extend(nodes[n].children.iter().rev());
    }
    out
}

/// Step 3: dummies without children go; dummies with children give way to
/// them, except under the root, where a dummy with several children stays.
fn prune(nodes: &mut [Node], roots: Vec<usize>) -> Vec<usize> {
    for n in preorder(nodes, &roots).into_iter().rev() {
        // Children first: theirs are pruned already.
        let mut kept = Vec::new();
        for c in std::mem::take(&mut nodes[n].children) {
            if nodes[c].item.is_some() {
                kept.push(c);
            } else {
                kept.append(&mut nodes[c].children);
            }
        }
        for &c in &kept {
            nodes[c].parent = Some(n);
        }
        nodes[n].children = kept;
    }
    let mut top = Vec::new();
    for r in roots {
        if nodes[r].item.is_some() || nodes[r].children.len() > 1 {
            top.push(r);
        } else if let Some(only) = nodes[r].children.pop() {
            nodes[only].parent = None;
            top.push(only);
        }
    }
    top
}

/// Sorts every set of siblings by sent date (ties by sequence number),
/// children before parents, a dummy by its first child (steps 4 and 6).
fn sort_tree(
    nodes: &mut [Node],
    mut roots: Vec<usize>,
    date: &dyn Fn(usize) -> (i64, u32),
) -> Vec<usize> {
    let mut key = vec![(i64::MAX, u32::MAX); nodes.len()];
    for n in preorder(nodes, &roots).into_iter().rev() {
        let mut children = std::mem::take(&mut nodes[n].children);
        children.sort_by_key(|&c| key[c]);
        key[n] = match nodes[n].item {
            Some(i) => date(i),
            None => children.first().map_or(key[n], |&c| key[c]),
        };
        nodes[n].children = children;
    }
    roots.sort_by_key(|&r| key[r]);
    roots
}

/// Step 5: threads under the root whose subjects match are merged. The
/// subject table holds, per base subject, a dummy if there is one, else a
/// message that is not a reply if there is one.
fn merge_by_subject(
    nodes: &mut Vec<Node>,
    roots: Vec<usize>,
    subjects: &[(String, bool)],
) -> Vec<usize> {
    // The thread subject: the message's, or a dummy's first child's.
    let thread_subject = |nodes: &[Node], n: usize| -> Option<(String, bool)> {
        let m = match nodes[n].item {
            Some(i) => i,
            None => nodes[*nodes[n].children.first()?].item?,
        };
        let (subject, reply) = &subjects[m];
        (!subject.is_empty()).then(|| (subject.clone(), *reply))
    };
    let dummy = |nodes: &[Node], n: usize| nodes[n].item.is_none();
    // (5B) Populate the table.
    let mut table: HashMap<String, (usize, bool)> = HashMap::new();
    for &r in &roots {
        let Some((subject, reply)) = thread_subject(nodes, r) else {
            continue;
        };
        match table.get(&subject) {
            None => {
                table.insert(subject, (r, reply));
            }
            Some(&(m, m_reply)) => {
                if !dummy(nodes, m) && (dummy(nodes, r) || (m_reply && !reply)) {
                    table.insert(subject, (r, reply));
                }
            }
        }
    }
    // (5C) Merge.
    let mut out: Vec<usize> = Vec::new();
    let mut gone = vec![false; nodes.len()];
    for &r in &roots {
        let Some((subject, reply)) = thread_subject(nodes, r) else {
            out.push(r);
            continue;
        };
        let (m, m_reply) = table[&subject];
        if m == r {
            out.push(r);
            continue;
        }
        match (dummy(nodes, m), dummy(nodes, r)) {
            (true, true) => {
                let children = std::mem::take(&mut nodes[r].children);
                for c in children {
                    nodes[c].parent = None;
                    link(nodes, m, c);
                }
            }
            (true, false) => link(nodes, m, r),
            _ if reply && !m_reply => link(nodes, m, r),
            _ => {
                nodes.push(Node::default());
                gone.push(false);
                let d = nodes.len() - 1;
                link(nodes, d, m);
                link(nodes, d, r);
                gone[m] = true;
                out.push(d);
                table.insert(subject, (d, false));
            }
        }
    }
    out.retain(|&n| !gone[n] && nodes[n].parent.is_none());
    out
}

/// Writes a thread: a message, then its one child in a chain, or its
/// several children each in parentheses; a dummy, its children each in
/// parentheses (RFC 5256 §4).
fn write_thread(nodes: &[Node], items: &[Item], root: usize, out: &mut String) {
    enum Step {
        Node(usize),
        Text(&'static str),
    }
    let mut stack = vec![Step::Text(")"), Step::Node(root), Step::Text("(")];
    while let Some(step) = stack.pop() {
        let n = match step {
            Step::Text(t) => {
                out.push_str(t);
                continue;
            }
            Step::Node(n) => n,
        };
        let children = &nodes[n].children;
        if let Some(i) = nodes[n].item {
            out.push_str(&items[i].number.to_string());
            if let [one] = children.as_slice() {
                stack.push(Step::Node(*one));
                stack.push(Step::Text(" "));
                continue;
            }
        }
        for &c in children.iter().rev() {
            stack.extend([Step::Text(")"), Step::Node(c), Step::Text("(")]);
        }
        if nodes[n].item.is_some() && !children.is_empty() {
            stack.push(Step::Text(" "));
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
            modseq: u64::from(n),
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
        // Issue 18 point 6: nested markers, blobs before and after them,
        // wrappers inside leaders and the other way round.
        for (subject, base) in [
            ("[list] [tag] Re: [2] Fwd [x]: [y] hello", "HELLO"),
            ("Fwd : [x]: hello", ": HELLO"),
            ("Re: [Fwd: Re: [list] deal (fwd)] (fwd)", "DEAL"),
            ("[Fwd: [Fwd: Re: nested]]", "NESTED"),
            ("Fwd: [fwd: Re[3]: a  \t  b ]", "A B"),
            ("[a[b] c", "[A[B] C"),
            ("Rescue: me", "RESCUE: ME"),
            ("re [x] : deal", "DEAL"),
            ("[blob] (fwd)", "[BLOB]"),
            ("Grüße (fwd)", "GRÜSSE"),
            ("ééé", "ÉÉÉ"),
            ("[fwd: ]", ""),
        ] {
            assert_eq!(base_subject(subject), base, "{subject:?}");
        }
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

    /// Issue 18 point 6: a list that starts with a group sorts by the
    /// group's name, not by its first member.
    #[test]
    fn address_keys_of_groups() {
        let from = |n: u32, header: &str| {
            let mut i = item(n, "s", "", &[], 10);
            i.envelope = stratus_core::message::envelope(
                format!("From: {header}\r\nTo: {header}\r\n\r\nx\r\n").as_bytes(),
            );
            i
        };
        let mut items = vec![
            from(1, "zed@a.example"),
            from(2, "Alpha: yves@b.example;"),
            from(3, "Mid: ;"),
            from(4, "bob@c.example"),
        ];
        for key in [SortKey::From, SortKey::To] {
            sort(&mut items, &[(false, key)]);
            assert_eq!(
                items.iter().map(|i| i.number).collect::<Vec<_>>(),
                [2, 4, 3, 1],
                "{key:?}"
            );
        }
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

    /// Issue 18 point 6, RFC 5256 §3 step 5: the subject table prefers a
    /// dummy, then a message that is not a reply; a reply goes under the
    /// original whatever came first; two originals share a dummy.
    #[test]
    fn threads_merge_by_subject_as_step_5_says() {
        let items = vec![
            item(1, "Re: plans", "<r@x>", &[], 10),
            item(2, "Plans", "<p@x>", &[], 20),
        ];
        assert_eq!(references(&items), "(2 1)");
        let items = vec![
            item(1, "Plans", "<p@x>", &[], 10),
            item(2, "Plans", "<q@x>", &[], 20),
            item(3, "Re: plans", "<r@x>", &[], 30),
        ];
        assert_eq!(references(&items), "((1)(2)(3))");
        // Orphan replies under a dummy; the original, older, joins them.
        let items = vec![
            item(1, "Re: lost", "<x@x>", &["<gone@x>"], 10),
            item(2, "Re: lost", "<y@x>", &["<gone@x>"], 20),
            item(3, "Lost", "<z@x>", &[], 5),
        ];
        assert_eq!(references(&items), "((3)(1)(2))");
        // Two dummies with one subject become one.
        let items = vec![
            item(1, "Re: lost", "<x@x>", &["<gone@x>"], 10),
            item(2, "Re: lost", "<y@x>", &["<gone@x>"], 20),
            item(3, "Re: lost", "<v@x>", &["<other@x>"], 30),
            item(4, "Re: lost", "<w@x>", &["<other@x>"], 40),
        ];
        assert_eq!(references(&items), "((1)(2)(3)(4))");
        // A `(fwd)` trailer makes a forward too.
        let items = vec![
            item(1, "deal (fwd)", "<f@x>", &[], 10),
            item(2, "deal", "<d@x>", &[], 20),
        ];
        assert_eq!(references(&items), "(2 1)");
    }

    /// Reference loops are broken (steps 1B and 1C): a link that would
    /// make one is not made.
    #[test]
    fn reference_loops_are_broken() {
        let items = vec![
            item(1, "a", "<a@x>", &["<b@x>"], 10),
            item(2, "b", "<b@x>", &["<a@x>"], 20),
            item(3, "c", "<c@x>", &["<c@x>"], 30),
        ];
        assert_eq!(references(&items), "(2 1)(3)");
    }

    /// Issue 18 bad input: a chain of 100,000 replies, in either order,
    /// threads without overflowing the stack, every message once.
    #[test]
    fn a_hundred_thousand_deep_chain_threads() {
        const N: u32 = 100_000;
        let chain = |n: u32| {
            let parent = format!("<m{}@x>", n - 1);
            item(
                n,
                &format!("s{n}"),
                &format!("<m{n}@x>"),
                &[&parent],
                i64::from(n),
            )
        };
        for reversed in [false, true] {
            let mut items: Vec<Item> = (1..=N).map(chain).collect();
            if reversed {
                items.reverse();
            }
            let out = references(&items);
            let mut numbers: Vec<u32> = out
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect();
            numbers.sort_unstable();
            assert_eq!(numbers, (1..=N).collect::<Vec<_>>(), "reversed: {reversed}");
            assert!(out.starts_with("(1 2 3 "), "{}", &out[..40]);
        }
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
