//! VacationResponse (RFC 8621 §8): the same away reply as `stratus
//! vacation` and the admin API's, a Sieve script of the user's
//! ([`crate::service::VACATION_SCRIPT`]), read back from the script.

use serde_json::{Map, Value, json};

use super::{Args, Call, MethodError, MethodResult, get_answer, set_error};
use crate::service::VacationSettings;

/// The one VacationResponse's id.
const SINGLETON: &str = "singleton";
/// Days between two replies to the same sender (`vacation :days`).
const DAYS: u32 = 7;

/// What a vacation script says: subject, text and last day.
fn parse(script: &str) -> (Option<String>, String, Option<String>) {
    let unquote = |s: &str| -> Option<String> {
        let s = s.trim_start().strip_prefix('"')?;
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    };
    let subject = script
        .split_once(":subject ")
        .and_then(|(_, rest)| unquote(rest));
    let until = script
        .split_once("currentdate :value \"le\" \"date\" ")
        .and_then(|(_, rest)| unquote(rest));
    let mut body = String::new();
    let mut inside = false;
    for line in script.lines() {
        if !inside {
            inside = line.trim_start().starts_with("vacation ") && line.ends_with("text:");
            continue;
        }
        if line == "." {
            break;
        }
        body.push_str(
            line.strip_prefix('.')
                .filter(|_| line.starts_with(".."))
                .unwrap_or(line),
        );
        body.push('\n');
    }
    (subject, body, until)
}

async fn current(call: &Call<'_>) -> Result<Value, MethodError> {
    let service = call
        .ctx
        .service
        .as_ref()
        .ok_or_else(|| MethodError::new("forbidden", "away replies are not served here"))?;
    let shown = service
        .vacation_show(&call.user.address)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "JMAP: the away reply could not be read");
            MethodError::new("serverFail", "the away reply could not be read")
        })?;
    Ok(match shown {
        Some((script, active)) => {
            let (subject, body, until) = parse(&script);
            json!({
                "id": SINGLETON,
                "isEnabled": active,
                "fromDate": null,
                "toDate": until.map(|d| format!("{d}T23:59:59Z")),
                "subject": subject,
                "textBody": body,
                "htmlBody": null,
            })
        }
        None => json!({
            "id": SINGLETON,
            "isEnabled": false,
            "fromDate": null,
            "toDate": null,
            "subject": null,
            "textBody": null,
            "htmlBody": null,
        }),
    })
}

fn state_of(v: &Value) -> String {
    format!(
        "v{}",
        &stratus_core::ids::sha256_hex(v.to_string().as_bytes())[..16]
    )
}

pub async fn get(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ids", "properties"])?;
    let v = current(call).await?;
    get_answer(
        &call.user.account,
        &state_of(&v),
        args.ids("ids")?,
        vec![SINGLETON.into()],
        |id| (id == SINGLETON).then(|| v.clone()),
    )
}

pub async fn set(call: &mut Call<'_>, args: Map<String, Value>) -> MethodResult {
    let args = Args(args);
    args.only(&["ifInState", "create", "update", "destroy"])?;
    let before = current(call).await?;
    let old_state = state_of(&before);
    if let Some(want) = args.string("ifInState")?
        && want != old_state
    {
        return Err(MethodError::new("stateMismatch", "the state has moved on"));
    }
    let mut not_created = Map::new();
    for cid in args
        .object("create")?
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        not_created.insert(
            cid,
            set_error("singleton", "there is one VacationResponse; update it"),
        );
    }
    let mut not_destroyed = Map::new();
    for id in args.ids("destroy")?.unwrap_or_default() {
        not_destroyed.insert(
            id,
            set_error("singleton", "there is one VacationResponse; disable it"),
        );
    }
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    for (id, patch) in args.object("update")?.cloned().unwrap_or_default() {
        if id != SINGLETON {
            not_updated.insert(
                id,
                set_error("notFound", "the VacationResponse is `singleton`"),
            );
            continue;
        }
        let Some(patch) = patch.as_object() else {
            not_updated.insert(id, set_error("invalidPatch", "not an object"));
            continue;
        };
        let mut want = before.clone();
        let mut bad = None;
        for (k, v) in patch {
            let ok = match k.as_str() {
                "isEnabled" => v.is_boolean(),
                "subject" | "textBody" | "htmlBody" => v.is_null() || v.is_string(),
                "fromDate" => match v.as_str() {
                    None => v.is_null(),
                    // Replies start when enabled: a start to come is not kept.
                    Some(d) => super::email::parse_date(d)
                        .is_some_and(|at| at <= stratus_core::mailstore::now()),
                },
                "toDate" => v.is_null() || v.as_str().and_then(super::email::parse_date).is_some(),
                _ => false,
            };
            if !ok {
                bad = Some(k.clone());
                break;
            }
            want[k.as_str()] = v.clone();
        }
        if let Some(bad) = bad {
            not_updated.insert(
                id,
                json!({"type": "invalidProperties", "properties": [bad]}),
            );
            continue;
        }
        let Some(service) = call.ctx.service.as_ref() else {
            return Err(MethodError::new(
                "forbidden",
                "away replies are not served here",
            ));
        };
        let outcome = if want["isEnabled"] == Value::Bool(true) {
            let text = want["textBody"]
                .as_str()
                .or_else(|| want["htmlBody"].as_str())
                .unwrap_or_default()
                .to_string();
            let until = want["toDate"]
                .as_str()
                .and_then(super::email::parse_date)
                .map(|at| super::email::utc_date(at)[..10].to_string());
            let settings = VacationSettings {
                subject: want["subject"].as_str().map(str::to_string),
                body: if text.is_empty() {
                    "I am away.".into()
                } else {
                    text
                },
                from: None,
                until,
                days: DAYS,
            };
            service
                .vacation_set(&call.user.address, &settings)
                .await
                .map(drop)
        } else {
            service.vacation_off(&call.user.address).await.map(drop)
        };
        match outcome {
            Ok(()) => {
                updated.insert(id, Value::Null);
            }
            Err(e) => {
                not_updated.insert(id, set_error("invalidProperties", e.to_string()));
            }
        }
    }
    let after = current(call).await?;
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
        "newState": state_of(&after),
        "created": null,
        "updated": nulls(updated),
        "destroyed": null,
        "notCreated": nulls(not_created),
        "notUpdated": nulls(not_updated),
        "notDestroyed": nulls(not_destroyed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::vacation_script;

    #[test]
    fn a_vacation_script_reads_back() {
        let v = VacationSettings {
            subject: Some("Away \"now\"".into()),
            body: "Back on Monday.\n.dotted line\n".into(),
            from: None,
            until: Some("2027-01-04".into()),
            days: 7,
        };
        let script = vacation_script(&v, Some("filters"));
        let (subject, body, until) = parse(&script);
        assert_eq!(subject.as_deref(), Some("Away \"now\""));
        assert_eq!(body, "Back on Monday.\n.dotted line\n");
        assert_eq!(until.as_deref(), Some("2027-01-04"));
    }
}
