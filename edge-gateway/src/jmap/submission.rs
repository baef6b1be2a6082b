//! EmailSubmission (RFC 8621 §7): sending an Email through the same
//! checks and queue as SMTP submission ([`crate::smtp::submit`]), then
//! `onSuccessUpdateEmail` / `onSuccessDestroyEmail` as an implicit
//! Email/set.
//!
//! A submission is recorded under `jmapsub#<account>` for
//! EmailSubmission/get and /query; once accepted it is `final` (this
//! server holds no delayed sends to undo).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use stratus_core::address::Address;
use stratus_core::ports::{Condition, IndexExt, Key, SkRange};
use stratus_proto::smtp::reply::Reply;

use super::view::{self, View};
use super::{Args, Call, MethodError, MethodResult, get_answer, set_error};
use crate::smtp::submit::{Submission, submit};

/// A submission as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    id: String,
    identity_id: String,
    email_id: String,
    thread_id: String,
    envelope: Value,
    send_at: String,
}

fn partition(call: &Call<'_>) -> String {
    format!("jmapsub#{}", call.user.address.account_key())
}

fn render(r: &Record) -> Value {
    json!({
        "id": r.id,
        "identityId": r.identity_id,
        "emailId": r.email_id,
        "threadId": r.thread_id,
        "envelope": r.envelope,
        "sendAt": r.send_at,
        "undoStatus": "final",
        "deliveryStatus": null,
        "dsnBlobIds": [],
        "mdnBlobIds": [],
    })
}

async fn records(call: &Call<'_>) -> Result<Vec<Record>, MethodError> {
    let items = call
        .ctx
        .shared
        .stores
        .index
        .query(&partition(call), SkRange::All, KEPT + 100, true)
        .await
        .map_err(|e| MethodError::from(stratus_core::accounts::AccountError::from(e)))?;
    Ok(items
        .iter()
        .filter_map(|i| serde_json::from_slice(&i.value).ok())
        .collect())
}

/// How many submissions are kept (the newest; older ones are pruned at
/// the next submission).
const KEPT: usize = 1000;

fn state_of(records: &[Record]) -> String {
    let newest = records.first().map_or("", |r| r.id.as_str());
    let digest = stratus_core::ids::sha256_hex(format!("{}:{newest}", records.len()).as_bytes());
    format!("u{}", &digest[..16])
}

pub async fn get(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ids", "properties"])?;
    let all = records(call).await?;
    get_answer(
        &call.user.account,
        &state_of(&all),
        call.ids_of(args.ids("ids")?),
        all.iter().map(|r| r.id.clone()).collect(),
        |id| all.iter().find(|r| r.id == id).map(render),
    )
}

pub async fn query(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(super::QUERY_ARGS)?;
    let all = records(call).await?;
    let filter = args.object("filter")?.cloned().unwrap_or_default();
    let listed = |name: &str| {
        filter.get(name).and_then(Value::as_array).map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
    };
    let (emails, identities, threads) = (
        listed("emailIds"),
        listed("identityIds"),
        listed("threadIds"),
    );
    if let Some(k) = filter.keys().find(|k| {
        !matches!(
            k.as_str(),
            "emailIds" | "identityIds" | "threadIds" | "undoStatus" | "before" | "after"
        )
    }) {
        return Err(MethodError::new(
            "unsupportedFilter",
            format!("no EmailSubmission filter {k:?}"),
        ));
    }
    let ids = all
        .iter()
        .filter(|r| emails.as_ref().is_none_or(|l| l.contains(&r.email_id)))
        .filter(|r| {
            identities
                .as_ref()
                .is_none_or(|l| l.contains(&r.identity_id))
        })
        .filter(|r| threads.as_ref().is_none_or(|l| l.contains(&r.thread_id)))
        .map(|r| r.id.clone())
        .collect();
    super::email::window(&call.user.account, &state_of(&all), &args, ids, false)
}

/// The set error a refused submission gets, from the SMTP reply.
fn refusal(reply: &Reply, stage: &str) -> Value {
    let text = reply.to_string();
    let kind = match stage {
        "sender" => "forbiddenMailFrom",
        _ if text.contains("may not send as") => "forbiddenFrom",
        _ if text.contains("too many recipients") => "tooManyRecipients",
        _ if text.contains("no valid recipients") => "noRecipients",
        _ if text.contains("size exceeds") => "tooLarge",
        _ if text.starts_with("451") => "serverFail",
        _ => "forbiddenToSend",
    };
    set_error(kind, text.trim().to_string())
}

fn address_of(v: &Value) -> Option<Address> {
    Address::parse(v.get("email")?.as_str()?).ok()
}

/// The recipients an Email names (To, Cc, Bcc), once each.
fn recipients_of(view: &View, email: &str) -> Vec<Address> {
    let Some(e) = view.emails.get(email) else {
        return Vec::new();
    };
    let env = &e.meta.envelope;
    let mut seen = BTreeSet::new();
    env.to
        .iter()
        .chain(&env.cc)
        .chain(&env.bcc)
        .filter_map(|a| {
            Address::parse(&format!("{}@{}", a.mailbox.as_deref()?, a.host.as_deref()?)).ok()
        })
        .filter(|a| seen.insert(a.to_string().to_ascii_lowercase()))
        .collect()
}

/// EmailSubmission/set: creations send; `onSuccess…` change the Emails
/// after (the implicit Email/set answer is the second value).
pub async fn set(
    call: &mut Call<'_>,
    args: Map<String, Value>,
) -> Result<(Value, Option<Value>), MethodError> {
    let args = Args(args);
    args.only(&[
        "ifInState",
        "create",
        "update",
        "destroy",
        "onSuccessUpdateEmail",
        "onSuccessDestroyEmail",
    ])?;
    super::email::count_set(&args)?;
    let Some(smtp) = call.ctx.submission.clone() else {
        return Err(MethodError::new(
            "forbidden",
            "this server does not send over JMAP",
        ));
    };
    let before = records(call).await?;
    let old_state = state_of(&before);
    if let Some(want) = args.string("ifInState")?
        && want != old_state
    {
        return Err(MethodError::new("stateMismatch", "the state has moved on"));
    }
    let identities = super::email::identities(call).await?;
    let view = view::load(call.ctx, call.user).await?;
    let client = call
        .client
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.addr.ip());
    let mut created = Map::new();
    let mut not_created = Map::new();
    let mut sent: Vec<(String, String, String)> = Vec::new();
    for (cid, props) in args.object("create")?.cloned().unwrap_or_default() {
        let Some(props) = props.as_object() else {
            not_created.insert(cid, set_error("invalidProperties", "not an object"));
            continue;
        };
        let outcome: Result<Record, Value> = async {
            let bad = |p: &str| json!({"type": "invalidProperties", "properties": [p]});
            let identity_id = props.get("identityId").and_then(Value::as_str).ok_or_else(|| bad("identityId"))?;
            let identity = identities.get(identity_id).ok_or_else(|| bad("identityId"))?;
            let email_id = props
                .get("emailId")
                .and_then(Value::as_str)
                .map(|id| call.id_of(id).unwrap_or_else(|_| id.to_string()))
                .ok_or_else(|| bad("emailId"))?;
            let Some(e) = view.emails.get(&email_id) else {
                return Err(set_error("invalidEmail", "no such Email"));
            };
            let (mail_from, recipients) = match props.get("envelope").filter(|v| !v.is_null()) {
                Some(env) => {
                    let from = env.get("mailFrom").and_then(address_of).ok_or_else(|| bad("envelope"))?;
                    let to = env
                        .get("rcptTo")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad("envelope"))?
                        .iter()
                        .map(address_of)
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| set_error("invalidRecipients", "an rcptTo is not an address"))?;
                    (from, to)
                }
                None => (identity.clone(), recipients_of(&view, &email_id)),
            };
            let raw = super::parts::raw(call.ctx, e).await.map_err(|err| set_error(err.kind, err.description))?;
            let envelope = json!({
                "mailFrom": {"email": mail_from.to_string(), "parameters": null},
                "rcptTo": recipients.iter().map(|r| json!({"email": r.to_string(), "parameters": null})).collect::<Vec<_>>(),
            });
            let sender_ok = call
                .ctx
                .shared
                .stores
                .accounts()
                .may_send_as(&call.user.address, &mail_from)
                .await
                .unwrap_or(false);
            let submission = Submission {
                user: &call.user.address,
                mail_from,
                recipients,
                body: raw,
                client,
                protocol: if call.client.is_some_and(|c| c.tls) { "HTTPS" } else { "HTTP" },
            };
            match submit(&smtp, submission).await {
                Ok(queue_id) => Ok(Record {
                    id: format!("S{}", queue_id.as_str().replace(|c: char| !c.is_ascii_alphanumeric(), "")),
                    identity_id: identity_id.to_string(),
                    email_id: email_id.clone(),
                    thread_id: e.thread.clone(),
                    envelope,
                    send_at: super::email::utc_date(stratus_core::mailstore::now()),
                }),
                Err(reply) => Err(refusal(&reply, if sender_ok { "content" } else { "sender" })),
            }
        }
        .await;
        match outcome {
            Ok(record) => {
                let key = Key::new(partition(call), record.id.clone());
                let value = serde_json::to_vec(&record).unwrap_or_default();
                if let Err(e) = call
                    .ctx
                    .shared
                    .stores
                    .index
                    .put(key, value, Condition::Any)
                    .await
                {
                    // Sent all the same: only the record of it is missing.
                    tracing::warn!(error = %e, "JMAP: a submission's record could not be kept");
                }
                call.created.insert(cid.clone(), record.id.clone());
                sent.push((cid.clone(), record.id.clone(), record.email_id.clone()));
                created.insert(
                    cid,
                    json!({"id": record.id, "sendAt": record.send_at, "undoStatus": "final"}),
                );
            }
            Err(e) => {
                not_created.insert(cid, e);
            }
        }
    }
    let mut not_updated = Map::new();
    for id in args
        .object("update")?
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        not_updated.insert(
            id,
            set_error("cannotUnsend", "a sent message cannot be called back"),
        );
    }
    let mut not_destroyed = Map::new();
    for id in args.ids("destroy")?.unwrap_or_default() {
        not_destroyed.insert(
            id,
            set_error(
                "forbidden",
                "submissions are kept as a record of what was sent",
            ),
        );
    }
    let mut after = records(call).await?;
    if after.len() > KEPT {
        for old in after.split_off(KEPT) {
            let key = Key::new(partition(call), old.id);
            let _ = call
                .ctx
                .shared
                .stores
                .index
                .delete(key, Condition::Any)
                .await;
        }
    }
    let nulls = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    let answer = json!({
        "accountId": call.user.account,
        "oldState": old_state,
        "newState": state_of(&after),
        "created": nulls(created),
        "updated": null,
        "destroyed": null,
        "notCreated": nulls(not_created),
        "notUpdated": nulls(not_updated),
        "notDestroyed": nulls(not_destroyed),
    });
    // What the client asked to change in the sent Emails: each key is a
    // submission (`#cid`: the one made as cid), and names its Email; only
    // submissions made by this call count, as RFC 8621 §7.5 has it.
    let email_of = |reference: &str| -> Option<String> {
        let found = match reference.strip_prefix('#') {
            Some(cid) => sent.iter().find(|(c, _, _)| c == cid),
            None => sent.iter().find(|(_, id, _)| id == reference),
        };
        found.map(|(_, _, email)| email.clone())
    };
    let mut update = Map::new();
    if let Some(patches) = args.object("onSuccessUpdateEmail")? {
        for (reference, patch) in patches {
            if let Some(email) = email_of(reference) {
                update.insert(email, patch.clone());
            }
        }
    }
    let destroy: Vec<Value> = args
        .ids("onSuccessDestroyEmail")?
        .unwrap_or_default()
        .iter()
        .filter_map(|r| email_of(r))
        .map(Value::String)
        .collect();
    if update.is_empty() && destroy.is_empty() {
        return Ok((answer, None));
    }
    let mut email_args = Map::new();
    email_args.insert("accountId".into(), json!(call.user.account));
    if !update.is_empty() {
        email_args.insert("update".into(), Value::Object(update));
    }
    if !destroy.is_empty() {
        email_args.insert("destroy".into(), Value::Array(destroy));
    }
    // The mail has left: whatever befalls the Emails after, the client is
    // told it was sent.
    let implicit = match super::email::set(call, email_args).await {
        Ok(v) => v,
        Err(e) => json!({"type": e.kind, "description": e.description, "@error": true}),
    };
    Ok((answer, Some(implicit)))
}
