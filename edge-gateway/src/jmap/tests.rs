//! JMAP over the HTTP service: the session resource, the request-level
//! and method-level errors, result references, and mail read and changed
//! over JMAP and IMAP's store alike.

use serde_json::{Value, json};
use stratus_core::address::Address;
use stratus_core::ids::{BlobKey, QueueId};
use stratus_core::mailbox::MailboxName;
use stratus_core::mailstore::NewMessage;

use super::view;
use crate::http::api_tests::{Answer, Api, api};
use crate::service::Role;

const ALICE: &str = "alice@a.example";
const BOB: &str = "bob@a.example";
const PASSWORD: &str = "correct horse";

fn basic(address: &str, password: &str) -> String {
    format!(
        "Basic {}",
        stratus_core::base64::encode(format!("{address}:{password}").as_bytes())
    )
}

/// A server with alice and bob on a.example.
async fn server(name: &str) -> Api {
    let api = api(name).await;
    let admin = api.key(Role::Admin, &[]).await;
    let a = api
        .call(
            "POST",
            "/api/v1/domains",
            Some(&admin),
            Some(&json!({"name": "a.example"}).to_string()),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    for user in [ALICE, BOB] {
        let body = json!({"address": user, "password": PASSWORD}).to_string();
        let a = api
            .call("POST", "/api/v1/users", Some(&admin), Some(&body))
            .await;
        assert_eq!(a.status, 201, "{a:?}");
    }
    api
}

static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Files `raw` in `mailbox` of `user`, as delivery does.
async fn deliver(api: &Api, user: &str, mailbox: &str, raw: &str, flags: &[&str]) {
    let stores = &api.ctx.shared.stores;
    let id = QueueId::generate();
    let key = BlobKey::for_message(&id);
    stores
        .blobs
        .put(&key, bytes::Bytes::from(raw.as_bytes().to_vec()))
        .await
        .unwrap();
    let message = NewMessage {
        queue_id: id,
        body: key,
        body_size: raw.len() as u64,
        prefix: String::new(),
        meta: stratus_core::message::analyze(raw.as_bytes()),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        // Each later than the last, so that "newest first" is defined.
        internal_date: 1_700_000_000 + NEXT.fetch_add(60, std::sync::atomic::Ordering::Relaxed),
        internal_tz: 0,
    };
    stores
        .mailstore()
        .append(
            &Address::parse(user).unwrap(),
            &MailboxName::parse(mailbox).unwrap(),
            message,
        )
        .await
        .unwrap();
}

impl Api {
    async fn jmap(&self, user: &str, body: &Value) -> Answer {
        let auth = basic(user, PASSWORD);
        self.send(
            "POST",
            "/jmap/api",
            &[("Authorization", &auth)],
            Some(&body.to_string()),
        )
        .await
    }

    /// The method responses of a request with `calls`, which asserts
    /// it was answered.
    async fn calls(&self, user: &str, calls: Value) -> Vec<Value> {
        let a = self
            .jmap(
                user,
                &json!({"using": [super::CORE, super::MAIL, super::SUBMISSION, super::VACATION], "methodCalls": calls}),
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        a.body["methodResponses"].as_array().unwrap().clone()
    }

    /// The session resource, with `user`'s Basic credentials if any.
    async fn session(&self, user: Option<(&str, &str)>) -> Answer {
        let auth = user.map(|(u, p)| basic(u, p));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        self.send("GET", "/.well-known/jmap", &headers, None).await
    }

    async fn account(&self, user: &str) -> String {
        let a = self.session(Some((user, PASSWORD))).await;
        assert_eq!(a.status, 200, "{a:?}");
        a.body["primaryAccounts"][super::MAIL]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn error_type(a: &Answer) -> &str {
    a.body["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_session_resource_needs_credentials_and_states_its_limits() {
    let api = server("jmap-session").await;
    let a = api.session(None).await;
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.header("www-authenticate").unwrap().starts_with("basic"),
        "{a:?}"
    );
    let a = api.session(Some((ALICE, "wrong password"))).await;
    assert_eq!(a.status, 401, "{a:?}");
    let a = api.session(Some((ALICE, PASSWORD))).await;
    assert_eq!(a.status, 200, "{a:?}");
    let core = &a.body["capabilities"][super::CORE];
    assert_eq!(core["maxCallsInRequest"], super::MAX_CALLS_IN_REQUEST);
    assert_eq!(core["maxObjectsInGet"], super::MAX_OBJECTS_IN_GET);
    assert_eq!(a.body["username"], ALICE);
    let account = a.body["primaryAccounts"][super::MAIL].as_str().unwrap();
    assert_eq!(a.body["accounts"][account]["name"], ALICE);
    assert_eq!(a.body["apiUrl"], "http://x/jmap/api");
    // Each user has an account of their own.
    assert_ne!(api.account(BOB).await, account);
}

#[tokio::test]
async fn malformed_requests_get_the_rfc_errors() {
    let api = server("jmap-errors").await;
    let auth = basic(ALICE, PASSWORD);
    let raw = |body: &'static str| {
        let auth = auth.clone();
        let api = &api;
        async move {
            api.send("POST", "/jmap/api", &[("Authorization", &auth)], Some(body))
                .await
        }
    };
    let a = raw("{not json").await;
    assert_eq!(
        (a.status, error_type(&a)),
        (400, "urn:ietf:params:jmap:error:notJSON")
    );
    let a = raw("[1, 2]").await;
    assert_eq!(
        (a.status, error_type(&a)),
        (400, "urn:ietf:params:jmap:error:notRequest")
    );
    let a = raw(r#"{"using": [], "methodCalls": [["Core/echo", {}, 7]]}"#).await;
    assert_eq!(
        error_type(&a),
        "urn:ietf:params:jmap:error:notRequest",
        "{a:?}"
    );
    let a = raw(r#"{"using": ["urn:example:nothing"], "methodCalls": []}"#).await;
    assert_eq!(
        error_type(&a),
        "urn:ietf:params:jmap:error:unknownCapability",
        "{a:?}"
    );
    let many: Vec<Value> = (0..=super::MAX_CALLS_IN_REQUEST)
        .map(|i| json!(["Core/echo", {}, i.to_string()]))
        .collect();
    let a = api
        .jmap(ALICE, &json!({"using": [super::CORE], "methodCalls": many}))
        .await;
    assert_eq!(error_type(&a), "urn:ietf:params:jmap:error:limit", "{a:?}");
    assert_eq!(a.body["limit"], "maxCallsInRequest");

    let account = api.account(ALICE).await;
    let bob = api.account(BOB).await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["Core/echo", {"hello": [1, 2]}, "e"],
                ["Nothing/get", {"accountId": account}, "u"],
                ["Mailbox/get", {"accountId": account, "ids": "x"}, "i"],
                ["Mailbox/get", {"accountId": bob}, "b"],
                ["Mailbox/get", {"accountId": account, "bogus": 1}, "k"],
                ["Email/get", {"accountId": account, "#ids": {"resultOf": "nope", "name": "Email/query", "path": "/ids"}}, "r"],
                ["Email/query", {"accountId": account, "filter": {"nonsense": 1}}, "f"],
                ["Email/query", {"accountId": account, "sort": [{"property": "color"}]}, "s"],
            ]),
        )
        .await;
    assert_eq!(r[0], json!(["Core/echo", {"hello": [1, 2]}, "e"]));
    let kinds: Vec<&str> = r[1..]
        .iter()
        .map(|x| x[1]["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "unknownMethod",
            "invalidArguments",
            "accountNotFound",
            "invalidArguments",
            "invalidResultReference",
            "unsupportedFilter",
            "unsupportedSort"
        ],
        "{r:?}"
    );
    // Without the mail capability in `using`, mail methods are unknown.
    let a = api
        .jmap(
            ALICE,
            &json!({"using": [super::CORE], "methodCalls": [["Mailbox/get", {"accountId": account}, "0"]]}),
        )
        .await;
    assert_eq!(
        a.body["methodResponses"][0][1]["type"], "unknownMethod",
        "{a:?}"
    );
}

#[tokio::test]
async fn mail_is_read_searched_flagged_and_moved() {
    let api = server("jmap-mail").await;
    deliver(
        &api,
        ALICE,
        "INBOX",
        "From: Carol <carol@c.example>\r\nTo: alice@a.example\r\nSubject: Lunch plans\r\nMessage-ID: <one@c.example>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nShall we meet at noon?\r\n",
        &[],
    )
    .await;
    deliver(
        &api,
        ALICE,
        "INBOX",
        "From: Dave <dave@d.example>\r\nTo: alice@a.example\r\nSubject: Re: Lunch plans\r\nMessage-ID: <two@d.example>\r\nIn-Reply-To: <one@c.example>\r\nReferences: <one@c.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Count me <b>in</b></p>\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=menu.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n",
        &["\\Seen"],
    )
    .await;
    deliver(
        &api,
        BOB,
        "INBOX",
        "Subject: for bob only\r\n\r\nsecret\r\n",
        &[],
    )
    .await;
    let account = api.account(ALICE).await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["Mailbox/query", {"accountId": account, "filter": {"role": "inbox"}}, "q"],
                ["Mailbox/get", {"accountId": account, "#ids": {"resultOf": "q", "name": "Mailbox/query", "path": "/ids"}}, "m"],
                ["Email/query", {"accountId": account, "filter": {"inMailbox": "#q"}, "sort": [{"property": "receivedAt", "isAscending": true}], "calculateTotal": true}, "e"],
            ]),
        )
        .await;
    let inbox = r[1][1]["list"][0].clone();
    assert_eq!(inbox["role"], "inbox", "{r:?}");
    assert_eq!(
        (inbox["totalEmails"].clone(), inbox["unreadEmails"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(
        inbox["totalThreads"], 1,
        "a reply joins its thread: {inbox}"
    );
    let inbox_id = inbox["id"].as_str().unwrap().to_string();
    // "#q" is not a result reference in a filter: no mailbox has that id.
    assert_eq!(r[2][1]["total"], 0, "{r:?}");

    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/query", {"accountId": account, "filter": {"inMailbox": inbox_id}, "calculateTotal": true}, "q"],
                ["Email/get", {"accountId": account, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject", "from", "keywords", "threadId", "hasAttachment", "htmlBody", "attachments", "bodyValues", "preview", "references", "header:Subject:asText"],
                    "fetchHTMLBodyValues": true}, "g"],
                ["Email/query", {"accountId": account, "filter": {"text": "noon"}}, "t"],
                ["Email/query", {"accountId": account, "filter": {"hasAttachment": true}}, "h"],
                ["Email/query", {"accountId": account, "filter": {"from": "carol"}}, "f"],
                ["Email/query", {"accountId": account, "filter": {"subject": "secret"}}, "x"],
                ["Email/query", {"accountId": account, "collapseThreads": true, "calculateTotal": true}, "c"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["total"], 2, "{r:?}");
    let emails = r[1][1]["list"].as_array().unwrap().clone();
    assert_eq!(emails.len(), 2, "{r:?}");
    // Newest first by default.
    let (reply, first) = (&emails[0], &emails[1]);
    assert_eq!(reply["subject"], "Re: Lunch plans");
    assert_eq!(reply["threadId"], first["threadId"]);
    assert_eq!(reply["keywords"], json!({"$seen": true}));
    assert_eq!(reply["hasAttachment"], true);
    assert_eq!(reply["references"], json!(["one@c.example"]));
    assert_eq!(reply["header:Subject:asText"], "Re: Lunch plans");
    assert_eq!(reply["attachments"][0]["name"], "menu.pdf");
    assert_eq!(reply["attachments"][0]["type"], "application/pdf");
    let html_part = reply["htmlBody"][0]["partId"].as_str().unwrap();
    assert!(
        reply["bodyValues"][html_part]["value"]
            .as_str()
            .unwrap()
            .contains("<b>in</b>"),
        "{reply}"
    );
    assert_eq!(
        first["from"],
        json!([{"name": "Carol", "email": "carol@c.example"}])
    );
    assert_eq!(first["preview"], "Shall we meet at noon?");
    let first_id = first["id"].as_str().unwrap().to_string();
    let reply_id = reply["id"].as_str().unwrap().to_string();
    assert_eq!(r[2][1]["ids"], json!([first_id]), "text search: {r:?}");
    assert_eq!(r[3][1]["ids"], json!([reply_id]), "attachments: {r:?}");
    assert_eq!(r[4][1]["ids"], json!([first_id]), "from: {r:?}");
    assert_eq!(
        r[5][1]["ids"],
        json!([]),
        "bob's mail is not alice's: {r:?}"
    );
    assert_eq!(r[6][1]["total"], 1, "one thread: {r:?}");

    // The attachment downloads as an attachment, never rendered.
    let blob = reply["attachments"][0]["blobId"].as_str().unwrap();
    let auth = basic(ALICE, PASSWORD);
    let path = format!("/jmap/download/{account}/{blob}/menu.pdf?type=text/html");
    let a = api
        .send("GET", &path, &[("Authorization", &auth)], None)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, Value::String("%PDF-1.4\n".into()));
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert!(
        a.header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    assert!(
        a.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    // Bob can neither download it nor name alice's account.
    let bob_auth = basic(BOB, PASSWORD);
    let a = api
        .send("GET", &path, &[("Authorization", &bob_auth)], None)
        .await;
    assert_eq!(a.status, 404, "{a:?}");
    let bob_account = api.account(BOB).await;
    let a = api
        .send(
            "GET",
            &format!("/jmap/download/{bob_account}/{blob}/menu.pdf"),
            &[("Authorization", &bob_auth)],
            None,
        )
        .await;
    assert_eq!(a.status, 404, "{a:?}");

    // Flag the first, move it to Archive; IMAP's store sees both.
    let r = api
        .calls(
            ALICE,
            json!([["Mailbox/query", {"accountId": account, "filter": {"role": "archive"}}, "a"]]),
        )
        .await;
    let archive = r[0][1]["ids"][0].as_str().unwrap().to_string();
    let state = api
        .calls(
            ALICE,
            json!([["Email/get", {"accountId": account, "ids": [], "properties": ["id"]}, "s"]]),
        )
        .await[0][1]["state"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/set", {"accountId": account, "ifInState": state, "update": {
                    first_id.clone(): {"keywords/$flagged": true, "keywords/$seen": true, "mailboxIds": {archive.clone(): true}},
                    "Mnothing": {"keywords/$seen": true},
                }}, "s"],
                ["Email/set", {"accountId": account, "update": {reply_id.clone(): {"mailboxIds": {}}}}, "empty"],
                ["Email/set", {"accountId": account, "ifInState": state, "destroy": [reply_id.clone()]}, "stale"],
                ["Email/changes", {"accountId": account, "sinceState": state}, "c"],
            ]),
        )
        .await;
    assert!(r[0][1]["updated"].get(&first_id).is_some(), "{r:?}");
    assert_eq!(r[0][1]["notUpdated"]["Mnothing"]["type"], "notFound");
    assert_eq!(
        r[1][1]["notUpdated"][&reply_id]["type"],
        "invalidProperties"
    );
    assert_eq!(r[2][1]["type"], "stateMismatch", "{r:?}");
    assert_eq!(r[3][1]["updated"], json!([first_id]), "{r:?}");
    assert_eq!(r[3][1]["created"], json!([]));
    let store = api.ctx.shared.stores.mailstore();
    let alice = Address::parse(ALICE).unwrap();
    let archived = store
        .entries(&alice, &MailboxName::parse("Archive").unwrap(), 1, u32::MAX)
        .await
        .unwrap();
    assert_eq!(archived.len(), 1);
    assert!(
        archived[0].flags.contains(&"\\Flagged".to_string()),
        "{archived:?}"
    );
    let inbox_entries = store
        .entries(&alice, &MailboxName::inbox(), 1, u32::MAX)
        .await
        .unwrap();
    assert_eq!(inbox_entries.len(), 1, "moved out of the inbox");

    // A change made the IMAP way is a JMAP change.
    let state = r[3][1]["newState"].as_str().unwrap().to_string();
    store
        .update_flags(
            &alice,
            &MailboxName::inbox(),
            &[inbox_entries[0].uid],
            None,
            &|_| vec!["\\Flagged".into()],
        )
        .await
        .unwrap();
    deliver(&api, ALICE, "INBOX", "Subject: third\r\n\r\nnew\r\n", &[]).await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/changes", {"accountId": account, "sinceState": state}, "c"],
                ["Mailbox/changes", {"accountId": account, "sinceState": state}, "m"],
                ["Email/changes", {"accountId": account, "sinceState": "garbage"}, "g"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["updated"], json!([reply_id]), "{r:?}");
    assert_eq!(r[0][1]["created"].as_array().unwrap().len(), 1, "{r:?}");
    assert_eq!(r[1][1]["updated"], json!([inbox_id]), "{r:?}");
    assert_eq!(r[1][1]["updatedProperties"][0], "totalEmails");
    assert_eq!(r[2][1]["type"], "cannotCalculateChanges");

    // Destroyed: gone from every mailbox, and reported so.
    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/set", {"accountId": account, "destroy": [first_id.clone()]}, "d"],
                ["Email/changes", {"accountId": account, "sinceState": r[0][1]["newState"]}, "c"],
                ["Email/get", {"accountId": account, "ids": [first_id.clone()], "properties": ["id"]}, "g"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([first_id]), "{r:?}");
    assert_eq!(r[1][1]["destroyed"], json!([first_id]), "{r:?}");
    assert_eq!(r[2][1]["notFound"], json!([first_id]), "{r:?}");
}

#[tokio::test]
async fn mailboxes_are_made_renamed_and_destroyed() {
    let api = server("jmap-mailboxes").await;
    let account = api.account(ALICE).await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["Mailbox/set", {"accountId": account, "create": {
                    "p": {"name": "Projects"},
                    "c": {"name": "Apollo", "parentId": "#p"},
                    "bad": {"name": "a/b"},
                    "dup": {"name": "Archive"},
                }}, "s"],
                ["Mailbox/get", {"accountId": account, "ids": ["#c"]}, "g"],
            ]),
        )
        .await;
    let created = &r[0][1]["created"];
    assert!(
        created["p"]["id"].is_string() && created["c"]["id"].is_string(),
        "{r:?}"
    );
    assert_eq!(r[0][1]["notCreated"]["bad"]["type"], "invalidProperties");
    assert_eq!(r[0][1]["notCreated"]["dup"]["type"], "alreadyExists");
    let child = &r[1][1]["list"][0];
    assert_eq!(child["name"], "Apollo", "{r:?}");
    assert_eq!(child["parentId"], created["p"]["id"]);
    let (p, c) = (created["p"]["id"].clone(), created["c"]["id"].clone());
    let pid = p.as_str().unwrap().to_string();
    let cid = c.as_str().unwrap().to_string();
    deliver(
        &api,
        ALICE,
        "Projects/Apollo",
        "Subject: in apollo\r\n\r\nx\r\n",
        &[],
    )
    .await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["Mailbox/set", {"accountId": account, "update": {cid.clone(): {"name": "Artemis", "parentId": null}}}, "u"],
                ["Mailbox/set", {"accountId": account, "destroy": [cid.clone()]}, "d1"],
                ["Mailbox/set", {"accountId": account, "destroy": [cid.clone()], "onDestroyRemoveEmails": true}, "d2"],
                ["Mailbox/set", {"accountId": account, "destroy": [pid.clone()]}, "d3"],
                ["Mailbox/query", {"accountId": account, "filter": {"name": "artemis"}}, "q"],
            ]),
        )
        .await;
    assert!(r[0][1]["updated"].get(&cid).is_some(), "{r:?}");
    assert_eq!(
        r[1][1]["notDestroyed"][&cid]["type"], "mailboxHasEmail",
        "{r:?}"
    );
    assert_eq!(r[2][1]["destroyed"], json!([cid]), "{r:?}");
    assert_eq!(r[3][1]["destroyed"], json!([pid]), "{r:?}");
    assert_eq!(r[4][1]["ids"], json!([]), "{r:?}");
    let names: Vec<String> = api
        .ctx
        .shared
        .stores
        .accounts()
        .mailboxes(&Address::parse(ALICE).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name.to_string())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("Artemis") || n.contains("Projects")),
        "{names:?}"
    );
    // Bob's mailboxes are his: alice's ids mean nothing to him.
    let bob = api.account(BOB).await;
    let r = api
        .calls(
            BOB,
            json!([["Mailbox/set", {"accountId": bob, "destroy": [pid]}, "x"]]),
        )
        .await;
    assert_eq!(r[0][1]["notDestroyed"][&pid]["type"], "notFound", "{r:?}");
}

#[tokio::test]
async fn result_references_follow_the_rfc_pointer_rules() {
    let v =
        json!({"list": [{"ids": ["a", "b"]}, {"ids": ["c"]}, {"x": 1}], "n": {"a/b": 5, "m~n": 6}});
    assert_eq!(
        super::pointer(&v, "/list/*/ids"),
        None,
        "an element without ids"
    );
    let v2 = json!({"list": [{"ids": ["a", "b"]}, {"ids": ["c"]}]});
    assert_eq!(
        super::pointer(&v2, "/list/*/ids"),
        Some(json!(["a", "b", "c"]))
    );
    assert_eq!(super::pointer(&v2, "/list/1/ids/0"), Some(json!("c")));
    assert_eq!(super::pointer(&v, "/n/a~1b"), Some(json!(5)));
    assert_eq!(super::pointer(&v, "/n/m~0n"), Some(json!(6)));
    assert_eq!(super::pointer(&v, "list"), None);
    assert_eq!(super::pointer(&v, ""), Some(v.clone()));
}

/// Random JMAP requests: real and unknown methods, arguments of every
/// shape with the names the RFCs use, result references good and bad,
/// and broken bodies. Every answer is below 500; a refused request is a
/// problem document of a JMAP error type; an answered one has a response
/// per call, each a known method's or an error of a known type.
/// `STRATUS_FUZZ_SEED` and `STRATUS_FUZZ_CASES` replay or widen a run.
#[tokio::test]
async fn random_requests_get_jmap_errors_never_a_failure() {
    use crate::http::api_fuzz_tests::{Rng, value};

    let seed: u64 = std::env::var("STRATUS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1a9a_2026);
    let cases: usize = std::env::var("STRATUS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let api = server("jmap-fuzz").await;
    for i in 0..5 {
        deliver(
            &api,
            ALICE,
            "INBOX",
            &format!("Subject: message {i}\r\nMessage-ID: <m{i}@x>\r\nIn-Reply-To: <m0@x>\r\n\r\nbody {i}\r\n"),
            &[],
        )
        .await;
    }
    let account = api.account(ALICE).await;
    let bob = api.account(BOB).await;
    const METHODS: &[&str] = &[
        "Core/echo",
        "Mailbox/get",
        "Mailbox/changes",
        "Mailbox/query",
        "Mailbox/queryChanges",
        "Mailbox/set",
        "Email/get",
        "Email/changes",
        "Email/query",
        "Email/queryChanges",
        "Email/set",
        "Thread/get",
        "Thread/changes",
        "Identity/get",
        "SearchSnippet/get",
        "Email/import",
        "Nope/get",
        "",
    ];
    const ARGS: &[&str] = &[
        "ids",
        "properties",
        "bodyProperties",
        "filter",
        "sort",
        "position",
        "anchor",
        "anchorOffset",
        "limit",
        "calculateTotal",
        "collapseThreads",
        "sinceState",
        "maxChanges",
        "ifInState",
        "create",
        "update",
        "destroy",
        "onDestroyRemoveEmails",
        "fetchAllBodyValues",
        "maxBodyValueBytes",
        "emailIds",
        "#ids",
        "sortAsTree",
    ];
    const KINDS: &[&str] = &[
        "unknownMethod",
        "invalidArguments",
        "invalidResultReference",
        "accountNotFound",
        "requestTooLarge",
        "cannotCalculateChanges",
        "stateMismatch",
        "unsupportedFilter",
        "unsupportedSort",
        "anchorNotFound",
        "serverFail",
    ];
    let mut rng = Rng(seed);
    // Method calls answered, and answered with something else than an
    // error: a generator that only ever made errors would test little.
    let (mut answered, mut succeeded) = (0usize, 0usize);
    for case in 0..cases {
        let body = match rng.below(10) {
            0 => value(&mut rng, 3).to_string(),
            1 => "{\"using\": [\"urn:ietf:params:jmap:core\"], \"methodCalls\": [[".into(),
            _ => {
                let mut calls = Vec::new();
                for n in 0..1 + rng.below(4) {
                    let mut args = serde_json::Map::new();
                    let id = match rng.below(8) {
                        0 => bob.clone(),
                        1 => value(&mut rng, 0).to_string(),
                        _ => account.clone(),
                    };
                    if !rng.chance(1) {
                        args.insert("accountId".into(), json!(id));
                    }
                    for _ in 0..rng.below(5) {
                        let name = rng.pick(ARGS).to_string();
                        let v = match (name.as_str(), rng.below(3)) {
                            ("#ids", 0) => {
                                json!({"resultOf": "c0", "name": "Email/query", "path": "/ids"})
                            }
                            ("filter", 0) => {
                                json!({"operator": *rng.pick(&["AND", "OR", "NOT", "XOR"]), "conditions": [{"text": "body"}, {"inMailbox": value(&mut rng, 0)}]})
                            }
                            ("sort", 0) => {
                                json!([{"property": *rng.pick(&["receivedAt", "subject", "size", "name", "hasKeyword"]), "isAscending": rng.chance(5)}])
                            }
                            ("update", 0) => {
                                json!({"Mnope": {"keywords/$seen": true, "mailboxIds": value(&mut rng, 1)}})
                            }
                            ("create", 0) => {
                                json!({"k": {"name": value(&mut rng, 0), "parentId": value(&mut rng, 0)}})
                            }
                            _ => value(&mut rng, 2),
                        };
                        args.insert(name, v);
                    }
                    calls.push(json!([*rng.pick(METHODS), args, format!("c{n}")]));
                }
                let using = if rng.chance(1) {
                    json!([super::CORE])
                } else {
                    json!([super::CORE, super::MAIL, super::SUBMISSION])
                };
                json!({"using": using, "methodCalls": calls}).to_string()
            }
        };
        let auth = basic(ALICE, PASSWORD);
        let a = api
            .send(
                "POST",
                "/jmap/api",
                &[("Authorization", &auth)],
                Some(&body),
            )
            .await;
        let context = format!("seed {seed}, case {case}: {body}\n{a:?}");
        assert!(a.status < 500, "{context}");
        if a.status != 200 {
            assert!(
                error_type(&a).starts_with("urn:ietf:params:jmap:error:"),
                "{context}"
            );
            continue;
        }
        let sent: Value = serde_json::from_str(&body).unwrap();
        let responses = a.body["methodResponses"].as_array().expect(&context);
        assert!(
            responses.len() >= sent["methodCalls"].as_array().unwrap().len(),
            "{context}"
        );
        for r in responses {
            let name = r[0].as_str().expect(&context);
            answered += 1;
            succeeded += usize::from(name != "error");
            assert!(r[1].is_object() && r[2].is_string(), "{context}");
            if name == "error" {
                let kind = r[1]["type"].as_str().unwrap_or_default();
                assert!(KINDS.contains(&kind), "{kind}: {context}");
                assert_ne!(kind, "serverFail", "{context}");
            } else {
                assert!(METHODS.contains(&name), "{context}");
            }
        }
    }
    assert!(
        succeeded * 20 >= answered && answered > cases,
        "seed {seed}: {succeeded} of {answered} calls succeeded"
    );
}

impl Api {
    /// Uploads `bytes` as `user` to `account`.
    async fn upload(&self, user: &str, account: &str, kind: &str, bytes: &[u8]) -> Answer {
        let mut request = format!(
            "POST /jmap/upload/{account} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            basic(user, PASSWORD),
            bytes.len()
        )
        .into_bytes();
        request.extend_from_slice(bytes);
        self.raw(&request).await
    }
}

#[tokio::test]
async fn emails_are_made_from_uploads_and_from_parts() {
    let api = server("jmap-create").await;
    let account = api.account(ALICE).await;
    let bob = api.account(BOB).await;
    let message = b"From: alice@a.example\r\nTo: carol@c.example\r\nSubject: imported\r\nMessage-ID: <imp@a.example>\r\n\r\nAn old message.\r\n";
    let a = api.upload(ALICE, &account, "message/rfc822", message).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["size"], message.len());
    let upload = a.body["blobId"].as_str().unwrap().to_string();
    let a = api
        .upload(ALICE, &account, "image/png", b"PNG fake image")
        .await;
    let image = a.body["blobId"].as_str().unwrap().to_string();
    // Nobody uploads to another's account, or uses another's upload.
    let a = api.upload(BOB, &account, "text/plain", b"x").await;
    assert_eq!(a.status, 404, "{a:?}");
    let r = api
        .calls(
            ALICE,
            json!([
                ["Mailbox/query", {"accountId": account, "filter": {"role": "drafts"}}, "d"],
            ]),
        )
        .await;
    let drafts = r[0][1]["ids"][0].as_str().unwrap().to_string();
    let r = api
        .calls(
            BOB,
            json!([["Email/import", {"accountId": bob, "emails": {"x": {"blobId": upload.clone(), "mailboxIds": {"any": true}}}}, "i"]]),
        )
        .await;
    assert_eq!(r[0][1]["notCreated"]["x"]["type"], "blobNotFound", "{r:?}");

    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/import", {"accountId": account, "emails": {
                    "old": {"blobId": upload.clone(), "mailboxIds": {drafts.clone(): true}, "keywords": {"$seen": true}, "receivedAt": "2020-01-02T03:04:05Z"},
                    "notmail": {"blobId": image.clone(), "mailboxIds": {drafts.clone(): true}},
                    "gone": {"blobId": "U0000000000aaaaaaaaaaaaaaaa", "mailboxIds": {drafts.clone(): true}},
                }}, "i"],
                ["Email/set", {"accountId": account, "create": {
                    "draft": {
                        "mailboxIds": {drafts.clone(): true},
                        "keywords": {"$draft": true},
                        "from": [{"name": "Alice", "email": "alice@a.example"}],
                        "to": [{"name": null, "email": "carol@c.example"}],
                        "subject": "With a picture",
                        "inReplyTo": ["imp@a.example"],
                        "references": ["imp@a.example"],
                        "header:X-Mailer:asText": "stratus test",
                        "textBody": [{"partId": "t", "type": "text/plain"}],
                        "htmlBody": [{"partId": "h", "type": "text/html"}],
                        "bodyValues": {"t": {"value": "See the picture."}, "h": {"value": "<p>See the <b>picture</b>.</p>"}},
                        "attachments": [{"blobId": image.clone(), "type": "image/png", "name": "pic.png"}],
                    },
                    "injected": {"mailboxIds": {drafts.clone(): true}, "subject": "x", "header:X-A\r\nBcc:asText": "y"},
                    "nowhere": {"mailboxIds": {}, "subject": "x"},
                }}, "c"],
                ["Email/get", {"accountId": account, "ids": ["#old", "#draft"],
                    "properties": ["subject", "keywords", "receivedAt", "threadId", "attachments", "textBody", "bodyValues", "header:X-Mailer:asText", "references"],
                    "fetchTextBodyValues": true}, "g"],
            ]),
        )
        .await;
    let imported = &r[0][1]["created"]["old"];
    assert!(
        imported["id"].is_string() && imported["threadId"].is_string(),
        "{r:?}"
    );
    assert_eq!(
        r[0][1]["notCreated"]["notmail"]["type"], "invalidEmail",
        "{r:?}"
    );
    assert_eq!(
        r[0][1]["notCreated"]["gone"]["type"], "blobNotFound",
        "{r:?}"
    );
    assert!(r[1][1]["created"]["draft"]["id"].is_string(), "{r:?}");
    assert_eq!(
        r[1][1]["notCreated"]["injected"]["type"], "invalidProperties",
        "{r:?}"
    );
    assert_eq!(
        r[1][1]["notCreated"]["nowhere"]["type"], "invalidProperties",
        "{r:?}"
    );
    let got = r[2][1]["list"].as_array().unwrap();
    assert_eq!(got.len(), 2, "{r:?}");
    assert_eq!(got[0]["subject"], "imported");
    assert_eq!(got[0]["keywords"], json!({"$seen": true}));
    assert_eq!(got[0]["receivedAt"], "2020-01-02T03:04:05Z");
    let draft = &got[1];
    assert_eq!(draft["keywords"], json!({"$draft": true}));
    assert_eq!(
        draft["threadId"], got[0]["threadId"],
        "a reply joins its thread"
    );
    assert_eq!(draft["header:X-Mailer:asText"], "stratus test");
    assert_eq!(draft["references"], json!(["imp@a.example"]));
    assert_eq!(draft["attachments"][0]["name"], "pic.png");
    let text_part = draft["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(draft["bodyValues"][text_part]["value"], "See the picture.");
    // The attachment comes back as uploaded; the upload downloads too.
    let auth = basic(ALICE, PASSWORD);
    for blob in [
        draft["attachments"][0]["blobId"].as_str().unwrap(),
        image.as_str(),
    ] {
        let a = api
            .send(
                "GET",
                &format!("/jmap/download/{account}/{blob}/p.png?type=image/png"),
                &[("Authorization", &auth)],
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.body, Value::String("PNG fake image".into()));
        assert_eq!(a.header("content-type"), Some("image/png"));
    }
    // IMAP's store has the draft, flagged \Draft, in Drafts.
    let drafts_box = api
        .ctx
        .shared
        .stores
        .mailstore()
        .entries(
            &Address::parse(ALICE).unwrap(),
            &MailboxName::parse("Drafts").unwrap(),
            1,
            u32::MAX,
        )
        .await
        .unwrap();
    assert_eq!(drafts_box.len(), 2);
    assert!(
        drafts_box.iter().any(|e| e.flags == ["\\Draft"]),
        "{drafts_box:?}"
    );
    // Too large an upload is refused with the limit named.
    let big = vec![b'x'; super::create::MAX_UPLOAD + 1];
    let a = api.upload(ALICE, &account, "text/plain", &big).await;
    assert_eq!(a.status, 413, "{a:?}");
}

#[tokio::test]
async fn emails_are_sent_through_the_submission_checks() {
    use stratus_core::job::Job;
    use stratus_core::ports::QueueName;

    let mut api = server("jmap-send").await;
    api.ctx.submission = Some(std::sync::Arc::new(crate::smtp::Context {
        send_rate: std::sync::Arc::new(crate::throttle::SendRate::new(3)),
        ..crate::testutil::smtp_context(
            api.ctx.shared.clone(),
            stratus_runtime::config::SmtpLimits::default(),
        )
    }));
    let account = api.account(ALICE).await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["Mailbox/query", {"accountId": account, "filter": {"role": "drafts"}}, "d"],
                ["Mailbox/query", {"accountId": account, "filter": {"role": "sent"}}, "s"],
                ["Identity/get", {"accountId": account}, "i"],
            ]),
        )
        .await;
    let drafts = r[0][1]["ids"][0].as_str().unwrap().to_string();
    let sent = r[1][1]["ids"][0].as_str().unwrap().to_string();
    let identity = r[2][1]["list"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(r[2][1]["list"][0]["email"], ALICE);
    let draft = |from: &str, subject: &str| {
        json!({
            "mailboxIds": {drafts.clone(): true},
            "keywords": {"$draft": true},
            "from": [{"email": from}],
            "to": [{"email": "carol@c.example"}],
            "bcc": [{"email": "dan@d.example"}],
            "subject": subject,
            "textBody": [{"partId": "t"}],
            "bodyValues": {"t": {"value": "Hello."}},
        })
    };
    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/set", {"accountId": account, "create": {
                    "ok": draft(ALICE, "Sent properly"),
                    "forged": draft(BOB, "Pretending"),
                }}, "c"],
                ["EmailSubmission/set", {"accountId": account,
                    "create": {
                        "s1": {"identityId": identity, "emailId": "#ok"},
                        "s2": {"identityId": identity, "emailId": "#forged"},
                        "s3": {"identityId": identity, "emailId": "#ok",
                               "envelope": {"mailFrom": {"email": BOB}, "rcptTo": [{"email": "carol@c.example"}]}},
                        "s4": {"identityId": "Inobody", "emailId": "#ok"},
                    },
                    "onSuccessUpdateEmail": {"#s1": {
                        format!("mailboxIds/{drafts}"): null,
                        format!("mailboxIds/{sent}"): true,
                        "keywords/$draft": null,
                    }},
                }, "s"],
                ["Email/get", {"accountId": account, "ids": ["#ok"], "properties": ["mailboxIds", "keywords"]}, "g"],
                ["EmailSubmission/get", {"accountId": account, "ids": ["#s1"]}, "sg"],
            ]),
        )
        .await;
    let names: Vec<&str> = r.iter().map(|x| x[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Email/set",
            "EmailSubmission/set",
            "Email/set",
            "Email/get",
            "EmailSubmission/get"
        ],
        "{r:?}"
    );
    let s = &r[1][1];
    assert_eq!(s["created"]["s1"]["undoStatus"], "final", "{r:?}");
    assert_eq!(s["notCreated"]["s2"]["type"], "forbiddenFrom", "{r:?}");
    assert_eq!(s["notCreated"]["s3"]["type"], "forbiddenMailFrom", "{r:?}");
    assert_eq!(s["notCreated"]["s4"]["type"], "invalidProperties", "{r:?}");
    assert_eq!(
        r[3][1]["list"][0]["mailboxIds"],
        json!({sent.clone(): true}),
        "{r:?}"
    );
    assert_eq!(r[3][1]["list"][0]["keywords"], json!({}), "{r:?}");
    let record = &r[4][1]["list"][0];
    assert_eq!(record["envelope"]["mailFrom"]["email"], ALICE, "{r:?}");
    assert_eq!(
        record["envelope"]["rcptTo"],
        json!([{"email": "carol@c.example", "parameters": null}, {"email": "dan@d.example", "parameters": null}])
    );
    // One job in the inbound queue, as SMTP submission makes: both
    // recipients, signed for a.example, and no Bcc field left.
    let queue = &api.ctx.shared.stores.queue;
    let jobs = queue
        .receive(
            QueueName::Inbound,
            10,
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let Job::Inbound(accepted) = Job::from_json(&jobs[0].body).unwrap() else {
        panic!("not an inbound job");
    };
    assert_eq!(
        accepted.sign_as.map(|d| d.to_string()).as_deref(),
        Some("a.example")
    );
    let rcpts: Vec<String> = accepted
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.to_string())
        .collect();
    assert_eq!(rcpts, ["carol@c.example", "dan@d.example"]);
    let body = api
        .ctx
        .shared
        .stores
        .blobs
        .get(&accepted.body, None)
        .await
        .unwrap()
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with("Received: from jmap"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("\nbcc:"), "{body}");
    assert!(body.contains("Subject: Sent properly"), "{body}");
    // The sending rate is SMTP's, counted as MAIL FROM counts it (the
    // forged one too, refused after): three an hour here, two used.
    let ok = r[0][1]["created"]["ok"]["id"].as_str().unwrap().to_string();
    let r = api
        .calls(
            ALICE,
            json!([
                ["EmailSubmission/set", {"accountId": account, "create": {
                    "again": {"identityId": identity, "emailId": ok},
                    "more": {"identityId": identity, "emailId": ok},
                }}, "s"],
            ]),
        )
        .await;
    let made = r[0][1]["created"].as_object().map_or(0, |m| m.len());
    let refused: Vec<&Value> = r[0][1]["notCreated"]
        .as_object()
        .map(|m| m.values().collect())
        .unwrap_or_default();
    assert_eq!((made, refused.len()), (1, 1), "{r:?}");
    assert_eq!(refused[0]["type"], "forbiddenToSend", "{r:?}");
}

#[tokio::test]
async fn push_tells_of_new_mail_over_eventsource() {
    let api = server("jmap-push").await;
    let account = api.account(ALICE).await;
    let auth = basic(ALICE, PASSWORD);
    let a = api
        .send(
            "GET",
            "/jmap/eventsource?types=*&closeafter=sometimes&ping=0",
            &[("Authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = api
        .send("GET", "/jmap/eventsource?types=*", &[], None)
        .await;
    assert_eq!(a.status, 401, "{a:?}");
    // The stream ends after its first state event; mail keeps coming
    // until it does.
    let headers = [("Authorization", auth.as_str())];
    let stream = api.send(
        "GET",
        "/jmap/eventsource?types=Email,Mailbox&closeafter=state&ping=0",
        &headers,
        None,
    );
    let mail = async {
        for i in 0.. {
            deliver(
                &api,
                ALICE,
                "INBOX",
                &format!("Subject: push {i}\r\n\r\nx\r\n"),
                &[],
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let a = tokio::select! {
        a = stream => a,
        () = mail => unreachable!(),
    };
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.head.contains("content-type: text/event-stream"), "{a:?}");
    let text = a.body.as_str().unwrap().to_string();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data in {text:?}"));
    // (Chunked: the chunk's size comes first.)
    assert!(text.contains("\r\nevent: state\ndata: "), "{text:?}");
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["@type"], "StateChange");
    let changed = event["changed"][&account].as_object().unwrap();
    let mut types: Vec<&String> = changed.keys().collect();
    types.sort();
    assert_eq!(
        types,
        ["Email", "Mailbox"],
        "only the types asked for: {event}"
    );
    // The state it names is one Email/changes takes.
    let r = api
        .calls(
            ALICE,
            json!([["Email/changes", {"accountId": account, "sinceState": changed["Email"]}, "c"]]),
        )
        .await;
    assert_eq!(r[0][0], "Email/changes", "{r:?}");
}

#[tokio::test]
async fn the_away_reply_is_the_sieve_vacation() {
    let api = server("jmap-vacation").await;
    let account = api.account(ALICE).await;
    let r = api
        .calls(
            ALICE,
            json!([
                ["VacationResponse/get", {"accountId": account}, "g"],
                ["VacationResponse/set", {"accountId": account, "update": {"singleton": {
                    "isEnabled": true, "subject": "Away", "textBody": "Back on Monday.\n", "toDate": "2027-01-04T12:00:00Z",
                }}}, "s"],
                ["VacationResponse/get", {"accountId": account}, "g2"],
                ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"fromDate": "2999-01-01T00:00:00Z"}}}, "future"],
                ["VacationResponse/set", {"accountId": account, "create": {"x": {}}, "destroy": ["singleton"]}, "c"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["list"][0]["isEnabled"], false, "{r:?}");
    assert!(r[1][1]["updated"].get("singleton").is_some(), "{r:?}");
    let v = &r[2][1]["list"][0];
    assert_eq!(
        (
            v["isEnabled"].clone(),
            v["subject"].clone(),
            v["textBody"].clone(),
            v["toDate"].clone()
        ),
        (
            json!(true),
            json!("Away"),
            json!("Back on Monday.\n"),
            json!("2027-01-04T23:59:59Z")
        ),
        "{r:?}"
    );
    assert_eq!(
        r[3][1]["notUpdated"]["singleton"]["type"], "invalidProperties",
        "{r:?}"
    );
    assert_eq!(r[4][1]["notCreated"]["x"]["type"], "singleton", "{r:?}");
    assert_eq!(
        r[4][1]["notDestroyed"]["singleton"]["type"], "singleton",
        "{r:?}"
    );
    // It is the Sieve vacation the command line and the API show.
    let alice = Address::parse(ALICE).unwrap();
    let (script, active) = api.service.vacation_show(&alice).await.unwrap().unwrap();
    assert!(active && script.contains("Back on Monday."), "{script}");
    let r = api
        .calls(
            ALICE,
            json!([
                ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"isEnabled": false}}}, "off"],
                ["VacationResponse/get", {"accountId": account}, "g"],
            ]),
        )
        .await;
    assert_eq!(r[1][1]["list"][0]["isEnabled"], false, "{r:?}");
    assert_eq!(api.service.vacation_show(&alice).await.unwrap(), None);
}

/// What a review found a client could do to the server, each refused.
#[tokio::test]
async fn hostile_requests_are_bounded() {
    let api = server("jmap-hostile").await;
    let account = api.account(ALICE).await;
    // Echoes referring to echoes cannot grow past maxSizeRequest.
    let big = "x".repeat(300_000);
    let mut calls = vec![json!(["Core/echo", {"a": big}, "0"])];
    for i in 1..8 {
        let refs: serde_json::Map<String, Value> = (0..3)
            .map(|k| {
                (
                    format!("#k{k}"),
                    json!({"resultOf": (i - 1).to_string(), "name": "Core/echo", "path": ""}),
                )
            })
            .collect();
        calls.push(json!(["Core/echo", refs, i.to_string()]));
    }
    let r = api.calls(ALICE, Value::Array(calls)).await;
    assert_eq!(r[1][0], "Core/echo", "three copies of 300 kB fit");
    assert_eq!(
        r[2][1]["type"],
        "invalidResultReference",
        "{:?}",
        &r[2].to_string()[..200]
    );
    // Header fields: folding may break a line, nothing else may.
    let r = api
        .calls(
            ALICE,
            json!([
                ["Mailbox/query", {"accountId": account, "filter": {"role": "drafts"}}, "d"],
                ["Email/set", {"accountId": account, "create": {
                    "folded": {"mailboxIds": {"#d": true}, "subject": "x", "header:X-Long:asRaw": " one\r\n two"},
                    "injected": {"mailboxIds": {"#d": true}, "subject": "x", "header:X-A:asRaw": "v\r\nBcc: x@y.example"},
                    "ended": {"mailboxIds": {"#d": true}, "subject": "x", "header:X-A:asRaw": "v\r\n\r\nbody"},
                }}, "c"],
            ]),
        )
        .await;
    // (`#d` is not a creation id: the mailbox is named by its id below.)
    assert!(r[1][1]["notCreated"].is_object(), "{r:?}");
    let drafts = r[0][1]["ids"][0].as_str().unwrap().to_string();
    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/set", {"accountId": account, "create": {
                    "folded": {"mailboxIds": {drafts.clone(): true}, "subject": "x", "header:X-Long:asRaw": " one\r\n two"},
                    "injected": {"mailboxIds": {drafts.clone(): true}, "subject": "x", "header:X-A:asRaw": "v\r\nBcc: x@y.example"},
                    "ended": {"mailboxIds": {drafts.clone(): true}, "subject": "x", "header:X-A:asRaw": "v\r\n\r\nbody"},
                }}, "c"],
            ]),
        )
        .await;
    assert!(r[0][1]["created"]["folded"]["id"].is_string(), "{r:?}");
    assert_eq!(
        r[0][1]["notCreated"]["injected"]["type"], "invalidProperties",
        "{r:?}"
    );
    assert_eq!(
        r[0][1]["notCreated"]["ended"]["type"], "invalidProperties",
        "{r:?}"
    );
    // One blob named as many attachments as would pass the limit: refused
    // once the total passes it.
    let mb = vec![b'a'; 1024 * 1024];
    let blob = api.upload(ALICE, &account, "text/plain", &mb).await.body["blobId"]
        .as_str()
        .unwrap()
        .to_string();
    let many: Vec<Value> = (0..40)
        .map(|_| json!({"blobId": blob, "type": "text/plain", "name": "a.txt"}))
        .collect();
    let r = api
        .calls(
            ALICE,
            json!([["Email/set", {"accountId": account, "create": {
                "huge": {"mailboxIds": {drafts.clone(): true}, "subject": "x", "attachments": many},
            }}, "c"]]),
        )
        .await;
    assert_eq!(r[0][1]["notCreated"]["huge"]["type"], "tooLarge", "{r:?}");
    // A forged state naming the same mailbox many times is not a state.
    let mark = view::MailboxMark {
        id: "m".into(),
        uidnext: 1,
        modseq: 0,
        looks: 0,
    };
    let forged = view::encode_state(&vec![mark; 3]);
    let r = api
        .calls(
            ALICE,
            json!([["Email/changes", {"accountId": account, "sinceState": forged}, "c"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "cannotCalculateChanges", "{r:?}");
    // A huge anchor offset is a position past the end, not a failure.
    let r = api
        .calls(
            ALICE,
            json!([
                ["Email/query", {"accountId": account}, "q"],
                ["Email/query", {"accountId": account, "anchor": r#"x"#, "anchorOffset": i64::MAX}, "a"],
            ]),
        )
        .await;
    assert_eq!(r[1][1]["type"], "anchorNotFound", "{r:?}");
}
