//! Mailbox/get, /changes, /query and /set (RFC 8621 §2).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use stratus_core::accounts::{AccountError, MailboxRecord};
use stratus_core::mailbox::{DELIMITER, MailboxName, SpecialUse};

use super::view::{self, View};
use super::{Args, Call, Filter, MethodError, MethodResult, get_answer, set_error};

const PROPERTIES: &[&str] = &[
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

const COUNTS: &[&str] = &[
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
];

/// The JMAP role of a mailbox (RFC 8621 §2: the IANA names, in lower
/// case).
pub fn role(m: &MailboxRecord) -> Option<&'static str> {
    if m.name.is_inbox() {
        return Some("inbox");
    }
    Some(match m.special_use? {
        SpecialUse::All => "all",
        SpecialUse::Archive => "archive",
        SpecialUse::Drafts => "drafts",
        SpecialUse::Flagged => "flagged",
        SpecialUse::Junk => "junk",
        SpecialUse::Sent => "sent",
        SpecialUse::Trash => "trash",
    })
}

fn sort_order(m: &MailboxRecord) -> u32 {
    match role(m) {
        Some("inbox") => 1,
        Some("drafts") => 2,
        Some("sent") => 3,
        Some("archive") => 4,
        Some("junk") => 5,
        Some("trash") => 6,
        Some(_) => 7,
        None => 10,
    }
}

/// The last level of a mailbox's name.
fn leaf(m: &MailboxRecord) -> &str {
    let name = m.name.as_str();
    name.rsplit_once(DELIMITER).map_or(name, |(_, l)| l)
}

fn parent_id(view: &View, m: &MailboxRecord) -> Option<String> {
    let parent = m.name.parent()?;
    view.mailboxes
        .iter()
        .find(|p| p.name == parent)
        .map(|p| p.id.clone())
}

/// Each mailbox's Emails, unread Emails, threads and unread threads
/// (RFC 8621 §2), counted in one pass over the account.
fn counts(view: &View) -> HashMap<&str, (usize, usize, usize, usize)> {
    /// Emails, unread ones, and the threads of each.
    type Tally<'a> = (usize, usize, HashSet<&'a str>, HashSet<&'a str>);
    let mut seen: HashMap<&str, Tally> = HashMap::new();
    for e in view.emails.values() {
        let unread = !e.has_keyword("$seen");
        let mut boxes: Vec<&str> = e.entries.iter().map(|(m, _)| m.as_str()).collect();
        boxes.sort_unstable();
        boxes.dedup();
        for m in boxes {
            let c = seen.entry(m).or_default();
            c.0 += 1;
            c.2.insert(e.thread.as_str());
            if unread {
                c.1 += 1;
                c.3.insert(e.thread.as_str());
            }
        }
    }
    seen.into_iter()
        .map(|(m, (total, unread, threads, unread_threads))| {
            (m, (total, unread, threads.len(), unread_threads.len()))
        })
        .collect()
}

fn render(
    view: &View,
    counted: &HashMap<&str, (usize, usize, usize, usize)>,
    m: &MailboxRecord,
    props: Option<&[String]>,
) -> Value {
    let (total, unread, threads, unread_threads) =
        counted.get(m.id.as_str()).copied().unwrap_or_default();
    let all = json!({
        "id": m.id,
        "name": leaf(m),
        "parentId": parent_id(view, m),
        "role": role(m),
        "sortOrder": sort_order(m),
        "totalEmails": total,
        "unreadEmails": unread,
        "totalThreads": threads,
        "unreadThreads": unread_threads,
        "myRights": {
            "mayReadItems": true,
            "mayAddItems": true,
            "mayRemoveItems": true,
            "maySetSeen": true,
            "maySetKeywords": true,
            "mayCreateChild": true,
            "mayRename": !m.name.is_inbox(),
            "mayDelete": !m.name.is_inbox(),
            "maySubmit": true,
        },
        "isSubscribed": m.subscribed,
    });
    match props {
        None => all,
        Some(props) => {
            let mut out = Map::new();
            out.insert("id".into(), all["id"].clone());
            for p in props {
                out.insert(p.clone(), all[p.as_str()].clone());
            }
            Value::Object(out)
        }
    }
}

pub async fn get(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ids", "properties"])?;
    let props = args.properties("properties", PROPERTIES)?;
    let ids = call.ids_of(args.ids("ids")?);
    let view = view::load(call.ctx, call.user).await?;
    let all = view.mailboxes.iter().map(|m| m.id.clone()).collect();
    let wants_counts = props
        .as_ref()
        .is_none_or(|p| p.iter().any(|p| COUNTS.contains(&p.as_str())));
    let counted = if wants_counts {
        counts(&view)
    } else {
        HashMap::new()
    };
    get_answer(&call.user.account, &view.state(), ids, all, |id| {
        view.mailbox(id)
            .map(|m| render(&view, &counted, m, props.as_deref()))
    })
}

/// The old state's marks, or `cannotCalculateChanges`.
pub fn since_state(args: &Args) -> Result<Vec<view::MailboxMark>, MethodError> {
    let Some(since) = args.string("sinceState")? else {
        return Err(MethodError::invalid("`sinceState` is needed"));
    };
    view::decode_state(&since).ok_or_else(|| {
        MethodError::new(
            "cannotCalculateChanges",
            "that state is not one this server gave",
        )
    })
}

/// `maxChanges`, when given, is a positive number.
pub fn max_changes(args: &Args) -> Result<Option<usize>, MethodError> {
    match args.unsigned("maxChanges")? {
        Some(0) => Err(MethodError::invalid("`maxChanges` must be positive")),
        n => Ok(n.map(|n| n as usize)),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn changes_answer(
    account: &str,
    old: &str,
    new: &str,
    created: Vec<String>,
    updated: Vec<String>,
    destroyed: Vec<String>,
    max: Option<usize>,
    extra: Option<(&str, Value)>,
) -> MethodResult {
    if max.is_some_and(|max| created.len() + updated.len() + destroyed.len() > max) {
        return Err(MethodError::new(
            "cannotCalculateChanges",
            "more changes than maxChanges since that state: get the objects again",
        ));
    }
    let mut answer = json!({
        "accountId": account,
        "oldState": old,
        "newState": new,
        "hasMoreChanges": false,
        "created": created,
        "updated": updated,
        "destroyed": destroyed,
    });
    if let Some((name, value)) = extra {
        answer[name] = value;
    }
    Ok(answer)
}

pub async fn changes(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["sinceState", "maxChanges"])?;
    let old = since_state(&args)?;
    let max = max_changes(&args)?;
    let view = view::load(call.ctx, call.user).await?;
    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut destroyed = Vec::new();
    let mut only_counts = true;
    for m in &view.marks {
        match old.iter().find(|o| o.id == m.id) {
            None => created.push(m.id.clone()),
            Some(o) if o != m => {
                only_counts &= o.looks == m.looks;
                updated.push(m.id.clone());
            }
            Some(_) => {}
        }
    }
    for o in &old {
        if !view.marks.iter().any(|m| m.id == o.id) {
            destroyed.push(o.id.clone());
        }
    }
    let counts_only = if !updated.is_empty() && only_counts {
        json!(COUNTS)
    } else {
        Value::Null
    };
    changes_answer(
        &call.user.account,
        &view::encode_state(&old),
        &view.state(),
        created,
        updated,
        destroyed,
        max,
        Some(("updatedProperties", counts_only)),
    )
}

pub async fn query(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&[super::QUERY_ARGS, &["sortAsTree", "filterAsTree"]].concat())?;
    let view = view::load(call.ctx, call.user).await?;
    let filter = args.0.get("filter").cloned().unwrap_or(Value::Null);
    let mut found: Vec<&MailboxRecord> = Vec::new();
    for m in &view.mailboxes {
        if matches(&view, m, &filter)? {
            found.push(m);
        }
    }
    let mut sort_keys: Vec<(String, bool)> = Vec::new();
    if let Some(sort) = args.0.get("sort").filter(|v| !v.is_null()) {
        for c in sort
            .as_array()
            .ok_or_else(|| MethodError::invalid("`sort` must be a list"))?
        {
            let property = c
                .get("property")
                .and_then(Value::as_str)
                .ok_or_else(|| MethodError::invalid("a sort comparator names a property"))?;
            if !matches!(property, "name" | "sortOrder") {
                return Err(MethodError::new(
                    "unsupportedSort",
                    format!("mailboxes sort by name or sortOrder, not {property:?}"),
                ));
            }
            let ascending = c
                .get("isAscending")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            sort_keys.push((property.to_string(), ascending));
        }
    }
    found.sort_by(|a, b| {
        for (p, asc) in &sort_keys {
            let o = match p.as_str() {
                "name" => leaf(a).cmp(leaf(b)),
                _ => sort_order(a).cmp(&sort_order(b)),
            };
            let o = if *asc { o } else { o.reverse() };
            if o.is_ne() {
                return o;
            }
        }
        a.name.as_str().cmp(b.name.as_str())
    });
    if args.boolean("sortAsTree", false)? {
        // Parents before their children, siblings in the order above.
        found.sort_by_key(|m| m.name.as_str().matches(DELIMITER).count());
        let mut tree: Vec<&MailboxRecord> = Vec::new();
        fn place<'a>(
            out: &mut Vec<&'a MailboxRecord>,
            all: &[&'a MailboxRecord],
            parent: Option<&MailboxName>,
        ) {
            for m in all.iter().filter(|m| m.name.parent().as_ref() == parent) {
                out.push(m);
                place(out, all, Some(&m.name));
            }
        }
        place(&mut tree, &found, None);
        // A mailbox whose parent is filtered out still shows.
        for m in &found {
            if !tree.iter().any(|t| t.id == m.id) {
                tree.push(m);
            }
        }
        found = tree;
    }
    let ids: Vec<String> = found.iter().map(|m| m.id.clone()).collect();
    super::email::window(&call.user.account, &view.state(), &args, ids, false)
}

fn matches(view: &View, m: &MailboxRecord, filter: &Value) -> Result<bool, MethodError> {
    let f = match Filter::of(filter)? {
        Filter::All => return Ok(true),
        Filter::Condition(f) => f,
        Filter::Operator(op, conditions) => {
            let results = conditions
                .iter()
                .map(|c| matches(view, m, c))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Filter::combine(op, &results));
        }
    };
    for (k, v) in f {
        let ok = match k.as_str() {
            "parentId" => parent_id(view, m).as_deref() == v.as_str(),
            "name" => {
                let needle = v.as_str().unwrap_or_default().to_lowercase();
                leaf(m).to_lowercase().contains(&needle)
            }
            "role" => role(m) == v.as_str(),
            "hasAnyRole" => role(m).is_some() == v.as_bool().unwrap_or(false),
            "isSubscribed" => m.subscribed == v.as_bool().unwrap_or(false),
            _ => {
                return Err(MethodError::new(
                    "unsupportedFilter",
                    format!("no mailbox filter {k:?}"),
                ));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The full name a mailbox would have under `parent` (an id) with the
/// leaf `name`.
fn full_name(view: &View, parent: Option<&str>, name: &str) -> Result<MailboxName, Value> {
    if name.is_empty() || name.contains(DELIMITER) || name.chars().count() > 255 {
        return Err(set_error(
            "invalidProperties",
            format!("a name is 1 to 255 characters without {DELIMITER:?}"),
        ));
    }
    let full = match parent {
        None => name.to_string(),
        Some(p) => {
            let Some(parent) = view.mailbox(p) else {
                return Err(set_error("invalidProperties", "no such parentId"));
            };
            format!("{}{DELIMITER}{name}", parent.name.as_str())
        }
    };
    let parsed = MailboxName::parse(&full)
        .map_err(|e| set_error("invalidProperties", e.reason.to_string()))?;
    if view.mailboxes.iter().any(|m| m.name == parsed) {
        return Err(json!({
            "type": "alreadyExists",
            "description": format!("a mailbox {full:?} exists"),
        }));
    }
    Ok(parsed)
}

pub async fn set(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&[
        "ifInState",
        "create",
        "update",
        "destroy",
        "onDestroyRemoveEmails",
    ])?;
    let remove_emails = args.boolean("onDestroyRemoveEmails", false)?;
    let accounts = call.ctx.shared.stores.accounts();
    let store = call.ctx.shared.stores.mailstore();
    let address = call.user.address.clone();
    let mut view = view::load(call.ctx, call.user).await?;
    let old_state = view.state();
    if let Some(want) = args.string("ifInState")?
        && want != old_state
    {
        return Err(MethodError::new("stateMismatch", "the state has moved on"));
    }
    super::email::count_set(&args)?;
    let mut created = Map::new();
    let mut not_created = Map::new();
    if let Some(create) = args.object("create")? {
        // Parents first: a creation whose parentId names another
        // creation of this call waits for it.
        let mut pending: Vec<(&String, &Value)> = create.iter().collect();
        let mut order = Vec::new();
        while !pending.is_empty() {
            let ready = |props: &Value| match props.get("parentId").and_then(Value::as_str) {
                Some(p) => p.strip_prefix('#').is_none_or(|c| {
                    !create.contains_key(c)
                        || order.iter().any(|(o, _): &(&String, &Value)| *o == c)
                }),
                None => true,
            };
            let (now, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, p)| ready(p));
            if now.is_empty() {
                // A loop of parents: let each fail on its missing parent.
                order.extend(later);
                break;
            }
            order.extend(now);
            pending = later;
        }
        for (cid, props) in order {
            let Some(props) = props.as_object() else {
                not_created.insert(cid.clone(), set_error("invalidProperties", "not an object"));
                continue;
            };
            if let Some(bad) = props.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "name" | "parentId" | "isSubscribed" | "sortOrder"
                )
            }) {
                not_created.insert(
                    cid.clone(),
                    json!({"type": "invalidProperties", "properties": [bad],
                           "description": "only name, parentId, isSubscribed and sortOrder may be set"}),
                );
                continue;
            }
            let parent = match props.get("parentId") {
                Some(Value::String(p)) => match call.id_of(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        not_created
                            .insert(cid.clone(), set_error("invalidProperties", e.description));
                        continue;
                    }
                },
                _ => None,
            };
            let Some(name) = props.get("name").and_then(Value::as_str) else {
                not_created.insert(
                    cid.clone(),
                    json!({"type": "invalidProperties", "properties": ["name"]}),
                );
                continue;
            };
            let full = match full_name(&view, parent.as_deref(), name) {
                Ok(f) => f,
                Err(e) => {
                    not_created.insert(cid.clone(), e);
                    continue;
                }
            };
            match accounts.create_mailbox(&address, full.clone()).await {
                Ok(record) => {
                    if props.get("isSubscribed").and_then(Value::as_bool) == Some(true) {
                        accounts.set_subscribed(&address, &full, true).await?;
                    }
                    call.created.insert(cid.clone(), record.id.clone());
                    // The order is the role's (none: after the roles'),
                    // whatever was asked: say so.
                    created.insert(
                        cid.clone(),
                        json!({"id": record.id, "sortOrder": sort_order(&record)}),
                    );
                    view = view::load(call.ctx, call.user).await?;
                }
                Err(AccountError::MailboxExists(_)) => {
                    not_created.insert(
                        cid.clone(),
                        set_error("alreadyExists", "that mailbox exists"),
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    if let Some(update) = args.object("update")? {
        for (id, patch) in update {
            let id = call.id_of(id).unwrap_or_else(|_| id.clone());
            let Some(m) = view.mailbox(&id).cloned() else {
                not_updated.insert(id, set_error("notFound", "no such mailbox"));
                continue;
            };
            let Some(patch) = patch.as_object() else {
                not_updated.insert(id, set_error("invalidPatch", "not an object"));
                continue;
            };
            let mut name = leaf(&m).to_string();
            let mut parent = parent_id(&view, &m);
            let mut subscribe = None;
            let mut bad = None;
            for (k, v) in patch {
                match (k.as_str(), v) {
                    ("name", Value::String(n)) => name = n.clone(),
                    ("parentId", Value::Null) => parent = None,
                    ("parentId", Value::String(p)) => {
                        parent = Some(call.id_of(p).unwrap_or_else(|_| p.clone()))
                    }
                    ("isSubscribed", Value::Bool(b)) => subscribe = Some(*b),
                    ("sortOrder", _) => {}
                    _ => bad = Some(k.clone()),
                }
            }
            if let Some(bad) = bad {
                not_updated.insert(
                    id,
                    json!({"type": "invalidProperties", "properties": [bad]}),
                );
                continue;
            }
            let target = if name == leaf(&m) && parent == parent_id(&view, &m) {
                None
            } else if m.name.is_inbox() {
                not_updated.insert(id, set_error("forbidden", "the inbox keeps its name"));
                continue;
            } else {
                match full_name(&view, parent.as_deref(), &name) {
                    Ok(n)
                        if n.as_str()
                            .starts_with(&format!("{}{DELIMITER}", m.name.as_str())) =>
                    {
                        not_updated.insert(
                            id,
                            set_error("invalidProperties", "a mailbox cannot move under itself"),
                        );
                        continue;
                    }
                    Ok(n) => Some(n),
                    Err(e) => {
                        not_updated.insert(id, e);
                        continue;
                    }
                }
            };
            let mut current = m.name.clone();
            if let Some(to) = target {
                accounts.rename_mailbox(&address, &m.name, &to).await?;
                current = to;
            }
            if let Some(b) = subscribe {
                accounts.set_subscribed(&address, &current, b).await?;
            }
            // A sortOrder asked for is not kept: the answer says which holds.
            let order = patch
                .contains_key("sortOrder")
                .then(|| json!({"sortOrder": sort_order(&m)}));
            updated.insert(id, order.unwrap_or(Value::Null));
            view = view::load(call.ctx, call.user).await?;
        }
    }
    let mut destroyed = Vec::new();
    let mut not_destroyed = Map::new();
    if let Some(ids) = args.ids("destroy")? {
        for id in ids {
            let id = call.id_of(&id).unwrap_or(id);
            let Some(m) = view.mailbox(&id).cloned() else {
                not_destroyed.insert(id, set_error("notFound", "no such mailbox"));
                continue;
            };
            if m.name.is_inbox() {
                not_destroyed.insert(id, set_error("forbidden", "the inbox cannot be destroyed"));
                continue;
            }
            if view
                .mailboxes
                .iter()
                .any(|c| c.name.parent().as_ref() == Some(&m.name))
            {
                not_destroyed.insert(id, set_error("mailboxHasChild", "it has child mailboxes"));
                continue;
            }
            let uids: Vec<u32> = view
                .emails
                .values()
                .flat_map(|e| e.entries.iter())
                .filter(|(mbox, _)| *mbox == m.id)
                .map(|(_, e)| e.uid)
                .collect();
            if !uids.is_empty() && !remove_emails {
                not_destroyed.insert(id, set_error("mailboxHasEmail", "it holds Emails"));
                continue;
            }
            store.expunge(&address, &m.name, &uids, None).await?;
            accounts.delete_mailbox(&address, &m.name).await?;
            destroyed.push(Value::String(id));
            view = view::load(call.ctx, call.user).await?;
        }
    }
    let nulls = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    Ok(json!({
        "accountId": call.user.account,
        "oldState": old_state,
        "newState": view.state(),
        "created": nulls(created),
        "updated": nulls(updated),
        "destroyed": if destroyed.is_empty() { Value::Null } else { Value::Array(destroyed) },
        "notCreated": nulls(not_created),
        "notUpdated": nulls(not_updated),
        "notDestroyed": nulls(not_destroyed),
    }))
}
