//! Distribution lists: create and delete them, their members, and the
//! posts held for their owners. A domain admin sees only the lists of
//! its domains.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use stratus_core::Address;
use stratus_core::lists::Policy;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Context;
use super::api::{
    Answer, ApiError, Caller, DomainPageQuery, Page, PageQuery, address_of, created, domain_of,
    page, refused,
};
use super::openapi::Problems;
use crate::service::{self, ServiceError};

pub fn routes() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(all_lists, add_list))
        .routes(routes!(get_list, del_list))
        .routes(routes!(list_members, subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(held_posts))
        .routes(routes!(approve_post))
        .routes(routes!(discard_post))
}

/// The list at `input`, which the caller sees.
fn list_of(c: &Caller, input: &str) -> Result<Address, ApiError> {
    let list = address_of(input)?;
    c.sees(list.domain())?;
    Ok(list)
}

#[utoipa::path(
    get,
    path = "/api/v1/lists",
    tag = "lists",
    summary = "Distribution lists",
    params(DomainPageQuery),
    responses(
        (status = 200, description = "The lists the caller sees", body = Page<service::ListInfo>),
        Problems,
    )
)]
async fn all_lists(c: Caller, Query(q): Query<DomainPageQuery>) -> Answer {
    let only = q.domain.as_deref().map(domain_of).transpose()?;
    if let Some(domain) = &only {
        c.sees(domain)?;
    }
    let lists: Vec<service::ListInfo> = c
        .service
        .lists()
        .await
        .map_err(refused)?
        .into_iter()
        .filter(|(l, _)| c.who.covers(l.address.domain()))
        .filter(|(l, _)| only.as_ref().is_none_or(|d| l.address.domain() == d))
        .map(|(l, members)| service::ListInfo::of(&l, members))
        .collect();
    page(lists, |l| l.address.clone(), &q.page())
}

/// Who may post, as the API takes it.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum PolicyIn {
    /// Members only (by envelope sender).
    #[default]
    Members,
    Anyone,
    /// Every post waits for an owner's approval.
    Moderated,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewList {
    address: String,
    #[serde(default)]
    policy: PolicyIn,
    /// Who is told of held posts.
    #[serde(default)]
    owners: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/lists",
    tag = "lists",
    summary = "Create a list (its -bounces and -unsubscribe addresses come with it)",
    request_body = NewList,
    responses(
        (status = 201, description = "Created", body = service::ListInfo),
        Problems,
    )
)]
async fn add_list(c: Caller, Json(body): Json<NewList>) -> Answer {
    let list = list_of(&c, &body.address)?;
    let owners = body
        .owners
        .iter()
        .map(|o| address_of(o))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = match body.policy {
        PolicyIn::Members => Policy::Members,
        PolicyIn::Anyone => Policy::Anyone,
        PolicyIn::Moderated => Policy::Moderated,
    };
    let added = c
        .service
        .add_list(&list, policy, owners)
        .await
        .map_err(refused)?;
    c.audit("list.add", &list.to_string(), Some(list.domain()))
        .await;
    Ok(created(service::ListInfo::of(&added, 0)))
}

#[utoipa::path(
    get,
    path = "/api/v1/lists/{list}",
    tag = "lists",
    summary = "One list",
    params(("list" = String, Path, description = "The list's address")),
    responses(
        (status = 200, description = "The list", body = service::ListInfo),
        Problems,
    )
)]
async fn get_list(c: Caller, Path(input): Path<String>) -> Answer {
    let list = list_of(&c, &input)?;
    let info = c.service.list_info(&list).await.map_err(refused)?;
    Ok(Json(info).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/lists/{list}",
    tag = "lists",
    summary = "Delete a list, its members and held posts",
    params(("list" = String, Path, description = "The list's address")),
    responses(
        (status = 204, description = "Deleted"),
        Problems,
    )
)]
async fn del_list(c: Caller, Path(input): Path<String>) -> Answer {
    let list = list_of(&c, &input)?;
    c.service.del_list(&list).await.map_err(refused)?;
    c.audit("list.delete", &list.to_string(), Some(list.domain()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/lists/{list}/members",
    tag = "lists",
    summary = "A list's members, with their bounces",
    params(("list" = String, Path, description = "The list's address"), PageQuery),
    responses(
        (status = 200, description = "The members", body = Page<service::MemberInfo>),
        Problems,
    )
)]
async fn list_members(c: Caller, Path(input): Path<String>, Query(q): Query<PageQuery>) -> Answer {
    let list = list_of(&c, &input)?;
    let members: Vec<service::MemberInfo> = c
        .service
        .members(&list)
        .await
        .map_err(refused)?
        .iter()
        .map(Into::into)
        .collect();
    page(members, |m| m.address.clone(), &q)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Members {
    addresses: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/lists/{list}/members",
    tag = "lists",
    summary = "Subscribe addresses (again: a member disabled by bounces is enabled)",
    params(("list" = String, Path, description = "The list's address")),
    request_body = Members,
    responses(
        (status = 200, description = "How many were subscribed", body = serde_json::Value),
        Problems,
    )
)]
async fn subscribe(c: Caller, Path(input): Path<String>, Json(body): Json<Members>) -> Answer {
    let list = list_of(&c, &input)?;
    if body.addresses.is_empty() {
        return Err(refused(ServiceError::Invalid(
            "addresses: at least one".into(),
        )));
    }
    let members = body
        .addresses
        .iter()
        .map(|a| address_of(a))
        .collect::<Result<Vec<_>, _>>()?;
    let n = c
        .service
        .subscribe(&list, &members)
        .await
        .map_err(refused)?;
    c.audit(
        "list.subscribe",
        &format!("{list} {}", body.addresses.join(" ")),
        Some(list.domain()),
    )
    .await;
    Ok(Json(serde_json::json!({ "subscribed": n })).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/lists/{list}/members/{address}",
    tag = "lists",
    summary = "Unsubscribe an address",
    params(
        ("list" = String, Path, description = "The list's address"),
        ("address" = String, Path, description = "A member's address"),
    ),
    responses(
        (status = 204, description = "Unsubscribed"),
        Problems,
    )
)]
async fn unsubscribe(c: Caller, Path((input, member)): Path<(String, String)>) -> Answer {
    let list = list_of(&c, &input)?;
    let member = address_of(&member)?;
    let n = c
        .service
        .unsubscribe(&list, std::slice::from_ref(&member))
        .await
        .map_err(refused)?;
    if n == 0 {
        return Err(refused(ServiceError::NotFound(format!(
            "{member} is not a member of {list}"
        ))));
    }
    c.audit(
        "list.unsubscribe",
        &format!("{list} {member}"),
        Some(list.domain()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/lists/{list}/held",
    tag = "lists",
    summary = "Posts held for a list's owners (not yet sent)",
    params(("list" = String, Path, description = "The list's address"), PageQuery),
    responses(
        (status = 200, description = "The held posts", body = Page<service::HeldPostInfo>),
        Problems,
    )
)]
async fn held_posts(c: Caller, Path(input): Path<String>, Query(q): Query<PageQuery>) -> Answer {
    let list = list_of(&c, &input)?;
    let held: Vec<service::HeldPostInfo> = c
        .service
        .held_posts(&list)
        .await
        .map_err(refused)?
        .iter()
        .filter(|h| !h.distributed)
        .map(Into::into)
        .collect();
    page(held, |h| h.id.clone(), &q)
}

#[utoipa::path(
    post,
    path = "/api/v1/lists/{list}/held/{id}/approve",
    tag = "lists",
    summary = "Send a held post to the members",
    params(
        ("list" = String, Path, description = "The list's address"),
        ("id" = String, Path, description = "The held post's id"),
    ),
    responses(
        (status = 200, description = "On its way", body = service::HeldPostInfo),
        Problems,
    )
)]
async fn approve_post(c: Caller, Path((input, id)): Path<(String, String)>) -> Answer {
    let list = list_of(&c, &input)?;
    let id = service::parse_held_id(&id).map_err(refused)?;
    let held = c.service.approve_post(&list, &id).await.map_err(refused)?;
    c.audit("list.approve", &format!("{list} {id}"), Some(list.domain()))
        .await;
    let mut info = service::HeldPostInfo::from(&held);
    info.approved = true;
    Ok(Json(info).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/lists/{list}/held/{id}",
    tag = "lists",
    summary = "Discard a held post",
    params(
        ("list" = String, Path, description = "The list's address"),
        ("id" = String, Path, description = "The held post's id"),
    ),
    responses(
        (status = 204, description = "Discarded"),
        Problems,
    )
)]
async fn discard_post(c: Caller, Path((input, id)): Path<(String, String)>) -> Answer {
    let list = list_of(&c, &input)?;
    let id = service::parse_held_id(&id).map_err(refused)?;
    c.service.discard_post(&list, &id).await.map_err(refused)?;
    c.audit("list.discard", &format!("{list} {id}"), Some(list.domain()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
