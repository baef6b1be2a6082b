//! What an account has besides its password and quota: the addresses it
//! may send as, its forwarding, a read-only view of its mailboxes, its
//! Sieve scripts and away reply; and the administrators' global scripts.
//! A domain admin reaches these only for accounts of its domains, and
//! grants identities only within them.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use stratus_core::Address;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Context;
use super::api::{Answer, ApiError, Caller, Page, PageQuery, address_of, created, page, refused};
use super::openapi::Problems;
use crate::service::{self, ServiceError};

pub fn routes() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list_identities, add_identity))
        .routes(routes!(del_identity))
        .routes(routes!(get_forward, set_forward, del_forward))
        .routes(routes!(list_mailboxes))
        .routes(routes!(list_scripts, choose_script))
        .routes(routes!(get_script, put_script, rename_script, del_script))
        .routes(routes!(get_vacation, set_vacation, del_vacation))
        .routes(routes!(list_global_scripts))
        .routes(routes!(
            get_global_script,
            put_global_script,
            del_global_script
        ))
        .routes(routes!(check_script))
}

/// The account at `input`, which the caller sees and which exists.
async fn account(c: &Caller, input: &str) -> Result<Address, ApiError> {
    let address = address_of(input)?;
    c.sees(address.domain())?;
    c.service.check_user(&address).await.map_err(refused)?;
    Ok(address)
}

/// [`account`], which the caller may also change.
async fn managed(c: &Caller, input: &str) -> Result<Address, ApiError> {
    let address = account(c, input).await?;
    c.may_manage(&address).await?;
    Ok(address)
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/identities",
    tag = "users",
    summary = "The addresses a user may send as besides their own",
    params(("address" = String, Path, description = "An account's address"), PageQuery),
    responses(
        (status = 200, description = "The identities", body = Page<service::IdentityInfo>),
        Problems,
    )
)]
async fn list_identities(
    c: Caller,
    Path(input): Path<String>,
    Query(q): Query<PageQuery>,
) -> Answer {
    let user = account(&c, &input).await?;
    let all = c.service.list_identities(&user).await.map_err(refused)?;
    page(all, |i| i.identity.clone(), &q)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewIdentity {
    /// The address the user may send as (a domain admin: one of its
    /// domains).
    address: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{address}/identities",
    tag = "users",
    summary = "Let a user send as another address (in MAIL FROM, From: and Sender:)",
    params(("address" = String, Path, description = "An account's address")),
    request_body = NewIdentity,
    responses(
        (status = 201, description = "Granted", body = service::IdentityInfo),
        Problems,
    )
)]
async fn add_identity(
    c: Caller,
    Path(input): Path<String>,
    Json(body): Json<NewIdentity>,
) -> Answer {
    let user = managed(&c, &input).await?;
    let identity = address_of(&body.address)?;
    // A domain admin cannot let its users speak for another tenant.
    c.sees(identity.domain())?;
    let added = c
        .service
        .add_identity(&user, &identity)
        .await
        .map_err(refused)?;
    c.audit(
        "user.identity.add",
        &format!("{user} {identity}"),
        Some(user.domain()),
    )
    .await;
    Ok(created(added))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{address}/identities/{identity}",
    tag = "users",
    summary = "Take an identity back",
    params(
        ("address" = String, Path, description = "An account's address"),
        ("identity" = String, Path, description = "The address it may send as"),
    ),
    responses(
        (status = 204, description = "Taken back"),
        Problems,
    )
)]
async fn del_identity(c: Caller, Path((input, other)): Path<(String, String)>) -> Answer {
    let user = managed(&c, &input).await?;
    let identity = address_of(&other)?;
    c.service
        .del_identity(&user, &identity)
        .await
        .map_err(refused)?;
    c.audit(
        "user.identity.delete",
        &format!("{user} {identity}"),
        Some(user.domain()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Where a user's mail is forwarded.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Forwarding {
    /// Where to (none: not forwarded).
    targets: Vec<String>,
    /// Whether the user keeps a copy too (always, when not forwarded).
    #[serde(default)]
    keep: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/forward",
    tag = "users",
    summary = "Where a user's mail is forwarded",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 200, description = "The forwarding (no targets: none)", body = Forwarding),
        Problems,
    )
)]
async fn get_forward(c: Caller, Path(input): Path<String>) -> Answer {
    let user = account(&c, &input).await?;
    let forward = c.service.forward(&user).await.map_err(refused)?;
    Ok(Json(forwarding(forward)).into_response())
}

fn forwarding(forward: Option<stratus_core::accounts::Forward>) -> Forwarding {
    match forward {
        Some(f) => Forwarding {
            targets: f.targets.iter().map(ToString::to_string).collect(),
            keep: f.keep,
        },
        None => Forwarding {
            targets: Vec::new(),
            keep: true,
        },
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{address}/forward",
    tag = "users",
    summary = "Forward a user's mail (with an SRS envelope sender)",
    params(("address" = String, Path, description = "An account's address")),
    request_body = Forwarding,
    responses(
        (status = 200, description = "Forwarded", body = Forwarding),
        Problems,
    )
)]
async fn set_forward(c: Caller, Path(input): Path<String>, Json(body): Json<Forwarding>) -> Answer {
    let user = managed(&c, &input).await?;
    if body.targets.is_empty() {
        return Err(refused(ServiceError::Invalid(
            "targets: at least one address (DELETE stops forwarding)".into(),
        )));
    }
    let targets = body
        .targets
        .iter()
        .map(|t| address_of(t))
        .collect::<Result<Vec<_>, _>>()?;
    let forward = stratus_core::accounts::Forward {
        targets,
        keep: body.keep,
    };
    c.service
        .set_forward(&user, Some(forward))
        .await
        .map_err(refused)?;
    c.audit(
        "user.forward",
        &format!("{user} {}", body.targets.join(" ")),
        Some(user.domain()),
    )
    .await;
    let now = c.service.forward(&user).await.map_err(refused)?;
    Ok(Json(forwarding(now)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{address}/forward",
    tag = "users",
    summary = "Stop forwarding a user's mail",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 204, description = "Not forwarded"),
        Problems,
    )
)]
async fn del_forward(c: Caller, Path(input): Path<String>) -> Answer {
    let user = managed(&c, &input).await?;
    c.service.set_forward(&user, None).await.map_err(refused)?;
    c.audit("user.forward.off", &user.to_string(), Some(user.domain()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/mailboxes",
    tag = "users",
    summary = "A user's mailboxes and what is in them (never the messages)",
    params(("address" = String, Path, description = "An account's address"), PageQuery),
    responses(
        (status = 200, description = "The mailboxes", body = Page<service::MailboxInfo>),
        Problems,
    )
)]
async fn list_mailboxes(
    c: Caller,
    Path(input): Path<String>,
    Query(q): Query<PageQuery>,
) -> Answer {
    let user = account(&c, &input).await?;
    let all = c.service.mailboxes(&user).await.map_err(refused)?;
    page(all, |m| m.name.clone(), &q)
}

/// A Sieve script as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ScriptInfo {
    name: String,
    /// Bytes.
    size: u64,
    /// When it was last stored (Unix seconds).
    updated: i64,
    /// Whether it runs on the user's incoming mail.
    active: bool,
}

fn script_infos(all: Vec<stratus_core::sieve::ScriptInfo>) -> Vec<ScriptInfo> {
    all.into_iter()
        .map(|s| ScriptInfo {
            name: s.name,
            size: s.size,
            updated: s.updated,
            active: s.active,
        })
        .collect()
}

/// A script's text.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Script {
    script: String,
    /// Make it the active script too (storing only).
    #[serde(default, skip_serializing)]
    activate: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/sieve",
    tag = "sieve",
    summary = "A user's Sieve scripts",
    params(("address" = String, Path, description = "An account's address"), PageQuery),
    responses(
        (status = 200, description = "The scripts, and which one is active", body = Page<ScriptInfo>),
        Problems,
    )
)]
async fn list_scripts(c: Caller, Path(input): Path<String>, Query(q): Query<PageQuery>) -> Answer {
    let user = account(&c, &input).await?;
    let all = c.service.sieve_list(&user).await.map_err(refused)?;
    page(script_infos(all), |s| s.name.clone(), &q)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Active {
    /// The script that runs on incoming mail; `null`: none.
    active: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{address}/sieve",
    tag = "sieve",
    summary = "Choose the script that runs on a user's mail, or none",
    params(("address" = String, Path, description = "An account's address")),
    request_body = Active,
    responses(
        (status = 200, description = "The scripts now", body = Page<ScriptInfo>),
        Problems,
    )
)]
async fn choose_script(c: Caller, Path(input): Path<String>, Json(body): Json<Active>) -> Answer {
    let user = managed(&c, &input).await?;
    c.service
        .sieve_activate(&user, body.active.as_deref())
        .await
        .map_err(refused)?;
    let target = match &body.active {
        Some(name) => format!("{user} {name}"),
        None => user.to_string(),
    };
    c.audit("user.sieve.activate", &target, Some(user.domain()))
        .await;
    let all = c.service.sieve_list(&user).await.map_err(refused)?;
    Ok(Json(serde_json::json!({ "items": script_infos(all), "next": null })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/sieve/{name}",
    tag = "sieve",
    summary = "A user's Sieve script",
    params(
        ("address" = String, Path, description = "An account's address"),
        ("name" = String, Path, description = "The script's name"),
    ),
    responses(
        (status = 200, description = "Its text", body = Script),
        Problems,
    )
)]
async fn get_script(c: Caller, Path((input, name)): Path<(String, String)>) -> Answer {
    let user = account(&c, &input).await?;
    let script = c.service.sieve_get(&user, &name).await.map_err(refused)?;
    Ok(Json(Script {
        script,
        activate: false,
    })
    .into_response())
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{address}/sieve/{name}",
    tag = "sieve",
    summary = "Store a user's Sieve script (it must parse), replacing one of that name",
    params(
        ("address" = String, Path, description = "An account's address"),
        ("name" = String, Path, description = "The script's name"),
    ),
    request_body = Script,
    responses(
        (status = 204, description = "Stored"),
        Problems,
    )
)]
async fn put_script(
    c: Caller,
    Path((input, name)): Path<(String, String)>,
    Json(body): Json<Script>,
) -> Answer {
    let user = managed(&c, &input).await?;
    c.service
        .sieve_put(&user, &name, &body.script)
        .await
        .map_err(refused)?;
    c.audit(
        "user.sieve.put",
        &format!("{user} {name}"),
        Some(user.domain()),
    )
    .await;
    if body.activate {
        c.service
            .sieve_activate(&user, Some(&name))
            .await
            .map_err(refused)?;
        c.audit(
            "user.sieve.activate",
            &format!("{user} {name}"),
            Some(user.domain()),
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Rename {
    /// The new name.
    name: String,
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{address}/sieve/{name}",
    tag = "sieve",
    summary = "Rename a user's Sieve script",
    params(
        ("address" = String, Path, description = "An account's address"),
        ("name" = String, Path, description = "The script's name"),
    ),
    request_body = Rename,
    responses(
        (status = 204, description = "Renamed"),
        Problems,
    )
)]
async fn rename_script(
    c: Caller,
    Path((input, name)): Path<(String, String)>,
    Json(body): Json<Rename>,
) -> Answer {
    let user = managed(&c, &input).await?;
    c.service
        .sieve_rename(&user, &name, &body.name)
        .await
        .map_err(refused)?;
    c.audit(
        "user.sieve.rename",
        &format!("{user} {name} {}", body.name),
        Some(user.domain()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{address}/sieve/{name}",
    tag = "sieve",
    summary = "Delete a user's Sieve script (not the active one)",
    params(
        ("address" = String, Path, description = "An account's address"),
        ("name" = String, Path, description = "The script's name"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        Problems,
    )
)]
async fn del_script(c: Caller, Path((input, name)): Path<(String, String)>) -> Answer {
    let user = managed(&c, &input).await?;
    c.service
        .sieve_delete(&user, &name)
        .await
        .map_err(refused)?;
    c.audit(
        "user.sieve.delete",
        &format!("{user} {name}"),
        Some(user.domain()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An away reply.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Vacation {
    /// The reply's subject (default: "Auto: " and the original's).
    subject: Option<String>,
    /// The reply's text.
    body: String,
    /// Reply from this address: the user's own or one of their
    /// identities (default: the user's).
    from: Option<String>,
    /// The last day to reply, `YYYY-MM-DD` (UTC); default: until turned
    /// off.
    until: Option<String>,
    /// Days between two replies to one sender (1 to 60, default 7).
    days: Option<u32>,
}

/// The away reply's script and whether it runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VacationState {
    active: bool,
    script: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/vacation",
    tag = "sieve",
    summary = "A user's away reply",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 200, description = "Its script, and whether it is on", body = VacationState),
        Problems,
    )
)]
async fn get_vacation(c: Caller, Path(input): Path<String>) -> Answer {
    let user = account(&c, &input).await?;
    match c.service.vacation_show(&user).await.map_err(refused)? {
        Some((script, active)) => Ok(Json(VacationState { active, script }).into_response()),
        None => Err(refused(ServiceError::NotFound(format!(
            "{user} has no away reply"
        )))),
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{address}/vacation",
    tag = "sieve",
    summary = "Turn on a user's away reply (the script active before keeps filtering)",
    params(("address" = String, Path, description = "An account's address")),
    request_body = Vacation,
    responses(
        (status = 200, description = "On", body = VacationState),
        Problems,
    )
)]
async fn set_vacation(c: Caller, Path(input): Path<String>, Json(body): Json<Vacation>) -> Answer {
    let user = managed(&c, &input).await?;
    let days = body.days.unwrap_or(7);
    if !(1..=60).contains(&days) {
        return Err(refused(ServiceError::Invalid(
            "days must be from 1 to 60".into(),
        )));
    }
    let from = body.from.as_deref().map(address_of).transpose()?;
    let settings = service::VacationSettings {
        subject: body.subject,
        body: body.body,
        from,
        until: body.until,
        days,
    };
    c.service
        .vacation_set(&user, &settings)
        .await
        .map_err(refused)?;
    c.audit("user.vacation", &user.to_string(), Some(user.domain()))
        .await;
    get_vacation(c, Path(input)).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{address}/vacation",
    tag = "sieve",
    summary = "Turn a user's away reply off (the script active before is active again)",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 204, description = "Off"),
        Problems,
    )
)]
async fn del_vacation(c: Caller, Path(input): Path<String>) -> Answer {
    let user = managed(&c, &input).await?;
    c.service.vacation_off(&user).await.map_err(refused)?;
    c.audit("user.vacation.off", &user.to_string(), Some(user.domain()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/sieve/global",
    tag = "sieve",
    summary = "The global scripts users' scripts may include (admin)",
    params(PageQuery),
    responses(
        (status = 200, description = "The scripts", body = Page<ScriptInfo>),
        Problems,
    )
)]
async fn list_global_scripts(c: Caller, Query(q): Query<PageQuery>) -> Answer {
    c.admin_only()?;
    let all = c.service.sieve_global_list().await.map_err(refused)?;
    page(script_infos(all), |s| s.name.clone(), &q)
}

#[utoipa::path(
    get,
    path = "/api/v1/sieve/global/{name}",
    tag = "sieve",
    summary = "A global script (admin)",
    params(("name" = String, Path, description = "The script's name")),
    responses(
        (status = 200, description = "Its text", body = Script),
        Problems,
    )
)]
async fn get_global_script(c: Caller, Path(name): Path<String>) -> Answer {
    c.admin_only()?;
    let script = c.service.sieve_global_get(&name).await.map_err(refused)?;
    Ok(Json(Script {
        script,
        activate: false,
    })
    .into_response())
}

#[utoipa::path(
    put,
    path = "/api/v1/sieve/global/{name}",
    tag = "sieve",
    summary = "Store a global script (admin; it must parse)",
    params(("name" = String, Path, description = "The script's name")),
    request_body = Script,
    responses(
        (status = 204, description = "Stored"),
        Problems,
    )
)]
async fn put_global_script(
    c: Caller,
    Path(name): Path<String>,
    Json(body): Json<Script>,
) -> Answer {
    c.admin_only()?;
    if body.activate {
        return Err(refused(ServiceError::Invalid(
            "a global script is not activated: users' scripts include it".into(),
        )));
    }
    c.service
        .sieve_global_put(&name, &body.script)
        .await
        .map_err(refused)?;
    c.audit("sieve.global.put", &name, None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/sieve/global/{name}",
    tag = "sieve",
    summary = "Delete a global script (admin)",
    params(("name" = String, Path, description = "The script's name")),
    responses(
        (status = 204, description = "Deleted"),
        Problems,
    )
)]
async fn del_global_script(c: Caller, Path(name): Path<String>) -> Answer {
    c.admin_only()?;
    c.service
        .sieve_global_delete(&name)
        .await
        .map_err(refused)?;
    c.audit("sieve.global.delete", &name, None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ToCheck {
    script: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/sieve/check",
    tag = "sieve",
    summary = "Check a Sieve script without storing it",
    request_body = ToCheck,
    responses(
        (status = 204, description = "It parses"),
        Problems,
    )
)]
async fn check_script(_c: Caller, Json(body): Json<ToCheck>) -> Answer {
    service::check_script(&body.script).map_err(refused)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
