//! What a domain has besides users and aliases: its catch-all, its DKIM
//! keys and their rotation; and the SRS settings every domain shares.

use axum::Json;
use axum::extract::Path;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Context;
use super::api::{Answer, Caller, Page, address_of, created, domain_of, refused};
use super::openapi::Problems;
use crate::service::{self, ServiceError};

pub fn routes() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(set_catch_all, del_catch_all))
        .routes(routes!(list_dkim))
        .routes(routes!(rotate_dkim))
        .routes(routes!(activate_dkim))
        .routes(routes!(drop_dkim))
        .routes(routes!(get_srs, change_srs))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CatchAll {
    /// A user or alias of this server.
    target: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/domains/{domain}/catch-all",
    tag = "domains",
    summary = "Deliver mail for addresses nobody has at the domain to a user or alias",
    params(("domain" = String, Path, description = "A hosted domain")),
    request_body = CatchAll,
    responses(
        (status = 200, description = "Set", body = service::DomainInfo),
        Problems,
    )
)]
async fn set_catch_all(c: Caller, Path(name): Path<String>, Json(body): Json<CatchAll>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    let target = address_of(&body.target)?;
    // A domain admin's mail may not be caught into another tenant.
    c.sees(target.domain())?;
    c.service
        .set_catch_all(&domain, Some(&target))
        .await
        .map_err(refused)?;
    c.audit(
        "domain.catch_all",
        &format!("{domain} {target}"),
        Some(&domain),
    )
    .await;
    domain_info(&c, &domain).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/domains/{domain}/catch-all",
    tag = "domains",
    summary = "Refuse mail for addresses nobody has at the domain again",
    params(("domain" = String, Path, description = "A hosted domain")),
    responses(
        (status = 200, description = "No catch-all", body = service::DomainInfo),
        Problems,
    )
)]
async fn del_catch_all(c: Caller, Path(name): Path<String>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    c.service
        .set_catch_all(&domain, None)
        .await
        .map_err(refused)?;
    c.audit("domain.catch_all.off", domain.as_str(), Some(&domain))
        .await;
    domain_info(&c, &domain).await
}

async fn domain_info(c: &Caller, domain: &stratus_core::Domain) -> Answer {
    let found = c.service.domain_info(domain).await.map_err(refused)?;
    Ok(Json(found).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/domains/{domain}/dkim",
    tag = "domains",
    summary = "A domain's DKIM keys: active, next and retired, each with its record",
    params(("domain" = String, Path, description = "A hosted domain")),
    responses(
        (status = 200, description = "The keys (never their private parts)", body = Page<service::DkimKeyInfo>),
        Problems,
    )
)]
async fn list_dkim(c: Caller, Path(name): Path<String>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    let keys = c.service.dkim_keys(&domain).await.map_err(refused)?;
    Ok(Json(serde_json::json!({ "items": keys, "next": null })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/domains/{domain}/dkim/rotate",
    tag = "domains",
    summary = "Make the next DKIM keys, to publish and then activate",
    params(("domain" = String, Path, description = "A hosted domain")),
    responses(
        (status = 201, description = "The next keys, with the records to publish", body = Page<service::DkimKeyInfo>),
        Problems,
    )
)]
async fn rotate_dkim(c: Caller, Path(name): Path<String>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    let next = c.service.rotate_dkim(&domain).await.map_err(refused)?;
    let selectors: Vec<&str> = next.iter().map(|k| k.selector.as_str()).collect();
    c.audit(
        "domain.dkim.rotate",
        &format!("{domain} {}", selectors.join(" ")),
        Some(&domain),
    )
    .await;
    Ok(created(serde_json::json!({ "items": next, "next": null })))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Force {
    /// Even when the DNS does not show the records (activate), or the key
    /// was retired less than a week ago (drop).
    #[serde(default)]
    force: bool,
}

/// An optional JSON body: none means the defaults.
fn force(body: Option<Json<Force>>) -> bool {
    body.map(|Json(f)| f.force).unwrap_or_default()
}

#[utoipa::path(
    post,
    path = "/api/v1/domains/{domain}/dkim/activate",
    tag = "domains",
    summary = "Sign with the next DKIM keys (once published) and retire the active ones",
    params(("domain" = String, Path, description = "A hosted domain")),
    request_body(content = Option<Force>, description = "Optional"),
    responses(
        (status = 200, description = "Every key of the domain now", body = Page<service::DkimKeyInfo>),
        Problems,
    )
)]
async fn activate_dkim(c: Caller, Path(name): Path<String>, body: Option<Json<Force>>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    let forced = force(body);
    let keys = c
        .service
        .activate_dkim(&domain, forced)
        .await
        .map_err(refused)?;
    let action = if forced {
        "domain.dkim.activate.forced"
    } else {
        "domain.dkim.activate"
    };
    c.audit(action, domain.as_str(), Some(&domain)).await;
    Ok(Json(serde_json::json!({ "items": keys, "next": null })).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/domains/{domain}/dkim/{selector}",
    tag = "domains",
    summary = "Drop a next DKIM key, or a retired one",
    params(
        ("domain" = String, Path, description = "A hosted domain"),
        ("selector" = String, Path, description = "The key's selector"),
    ),
    request_body(content = Option<Force>, description = "Optional"),
    responses(
        (status = 200, description = "Dropped; remove its record from the DNS", body = service::DkimKeyInfo),
        Problems,
    )
)]
async fn drop_dkim(
    c: Caller,
    Path((name, selector)): Path<(String, String)>,
    body: Option<Json<Force>>,
) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    let gone = c
        .service
        .drop_dkim(&domain, &selector, force(body))
        .await
        .map_err(refused)?;
    c.audit(
        "domain.dkim.drop",
        &format!("{domain} {}", gone.selector),
        Some(&domain),
    )
    .await;
    Ok(Json(gone).into_response())
}

/// The SRS settings (shared by every domain).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Srs {
    /// Bounces to an SRS address are taken for this many days.
    max_age_days: u32,
    /// Secrets that verify (the first signs).
    secrets: usize,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SrsChange {
    /// Take bounces for this many days (1 to 1000).
    max_age_days: Option<u32>,
    /// Sign with a new secret from now on; the previous one still
    /// verifies.
    #[serde(default)]
    rotate: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/srs",
    tag = "domains",
    summary = "The SRS settings of forwarded mail (admin)",
    responses(
        (status = 200, description = "The settings (never the secrets)", body = Srs),
        Problems,
    )
)]
async fn get_srs(c: Caller) -> Answer {
    c.admin_only()?;
    let (max_age_days, secrets) = c.service.srs(None, false).await.map_err(refused)?;
    Ok(Json(Srs {
        max_age_days,
        secrets,
    })
    .into_response())
}

#[utoipa::path(
    patch,
    path = "/api/v1/srs",
    tag = "domains",
    summary = "Change the SRS settings, or sign with a new secret (admin)",
    request_body = SrsChange,
    responses(
        (status = 200, description = "The settings now", body = Srs),
        Problems,
    )
)]
async fn change_srs(c: Caller, Json(body): Json<SrsChange>) -> Answer {
    c.admin_only()?;
    if let Some(days) = body.max_age_days
        && !(1..=1000).contains(&days)
    {
        return Err(refused(ServiceError::Invalid(
            "max_age_days must be from 1 to 1000".into(),
        )));
    }
    let (max_age_days, secrets) = c
        .service
        .srs(body.max_age_days, body.rotate)
        .await
        .map_err(refused)?;
    let what = match (body.max_age_days, body.rotate) {
        (Some(d), true) => format!("max_age_days={d} rotate"),
        (Some(d), false) => format!("max_age_days={d}"),
        (None, true) => "rotate".into(),
        (None, false) => "unchanged".into(),
    };
    c.audit("srs.change", &what, None).await;
    Ok(Json(Srs {
        max_age_days,
        secrets,
    })
    .into_response())
}
