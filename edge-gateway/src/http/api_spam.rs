//! Spam settings of a domain (every user there) or of one user:
//! thresholds, allow and block lists. A user's thresholds replace the
//! domain's; both lists apply.

use axum::Json;
use axum::extract::Path;
use axum::response::IntoResponse;
use serde::Deserialize;
use stratus_core::spam::Scope;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Context;
use super::api::{Answer, ApiError, Caller, present, refused};
use super::openapi::Problems;
use crate::service::{self, SpamList, Threshold};

pub fn routes() -> OpenApiRouter<Context> {
    OpenApiRouter::new().routes(routes!(get_spam, change_spam))
}

/// The scope `target` names (a domain or an address), which the caller
/// sees.
fn scope(c: &Caller, target: &str) -> Result<Scope, ApiError> {
    let scope = service::spam_scope(target).map_err(refused)?;
    let domain = match &scope {
        Scope::Domain(d) => d,
        Scope::User(a) => a.domain(),
    };
    c.sees(domain)?;
    Ok(scope)
}

/// A target's settings.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct SpamSettings {
    /// The domain or address.
    target: String,
    /// At or above: filed to Junk (`null`: the default).
    junk: Option<f64>,
    /// At or above: refused before the final reply to DATA (`null`: the
    /// default).
    reject: Option<f64>,
    /// Senders (addresses, or domains with their subdomains) whose mail
    /// is not junk once SPF, DKIM or DMARC vouches for it.
    allow: Vec<String>,
    /// Senders whose mail is refused or filed to Junk.
    block: Vec<String>,
}

fn shown(info: service::SpamInfo) -> SpamSettings {
    SpamSettings {
        target: info.target,
        junk: info.junk,
        reject: info.reject,
        allow: info.allow,
        block: info.block,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/spam/{target}",
    tag = "spam",
    summary = "The spam settings of a domain or a user",
    params(("target" = String, Path, description = "A domain, or a user's address")),
    responses(
        (status = 200, description = "The settings as stored", body = SpamSettings),
        Problems,
    )
)]
async fn get_spam(c: Caller, Path(target): Path<String>) -> Answer {
    let scope = scope(&c, &target)?;
    let info = c.service.spam_settings(&scope).await.map_err(refused)?;
    Ok(Json(shown(info)).into_response())
}

/// Entries to add to or remove from a list.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ListChange {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SpamChange {
    /// A number, or `null` for the default; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    junk: Option<Option<f64>>,
    /// A number, or `null` for the default; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    reject: Option<Option<f64>>,
    allow: Option<ListChange>,
    block: Option<ListChange>,
}

fn threshold(t: Option<Option<f64>>) -> Threshold {
    match t {
        None => Threshold::Keep,
        Some(None) => Threshold::Default,
        Some(Some(v)) => Threshold::Set(v),
    }
}

#[utoipa::path(
    patch,
    path = "/api/v1/spam/{target}",
    tag = "spam",
    summary = "Change the thresholds and lists of a domain or a user",
    params(("target" = String, Path, description = "A domain, or a user's address")),
    request_body = SpamChange,
    responses(
        (status = 200, description = "The settings now", body = SpamSettings),
        Problems,
    )
)]
async fn change_spam(
    c: Caller,
    Path(target): Path<String>,
    Json(body): Json<SpamChange>,
) -> Answer {
    let scope = scope(&c, &target)?;
    let domain = match &scope {
        Scope::Domain(d) => d.clone(),
        Scope::User(a) => {
            // An account holding more than the caller is not its to
            // change: refusing all its mail would be a change too.
            c.may_manage(a).await?;
            a.domain().clone()
        }
    };
    // The target must exist before anything changes.
    let mut info = c.service.spam_settings(&scope).await.map_err(refused)?;
    let (junk, reject) = (threshold(body.junk), threshold(body.reject));
    if junk != Threshold::Keep || reject != Threshold::Keep {
        info = c
            .service
            .set_spam_thresholds(&scope, junk, reject)
            .await
            .map_err(refused)?;
        c.audit("spam.thresholds", &info.target, Some(&domain))
            .await;
    }
    for (list, change, name) in [
        (SpamList::Allow, &body.allow, "allow"),
        (SpamList::Block, &body.block, "block"),
    ] {
        let Some(change) = change else { continue };
        for (entries, remove) in [(&change.add, false), (&change.remove, true)] {
            if entries.is_empty() {
                continue;
            }
            info = c
                .service
                .change_spam_list(&scope, list, entries, remove)
                .await
                .map_err(refused)?;
            let verb = if remove { "remove" } else { "add" };
            c.audit(
                &format!("spam.{name}.{verb}"),
                &format!("{} {}", info.target, entries.join(" ")),
                Some(&domain),
            )
            .await;
        }
    }
    Ok(Json(shown(info)).into_response())
}
