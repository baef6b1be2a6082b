//! The admin API at `/api/v1`: JSON in and out (snake_case), RFC 9457
//! problem documents for errors, and lists as
//! `{"items": [...], "next": cursor-or-null}`. Every operation is a call
//! of the service layer, the same the command line makes; every change is
//! written to the audit log.
//!
//! Callers are API keys (`Authorization: Bearer <key>`) or users signed
//! in on the web ([`super::account`]) whose account holds an admin role;
//! a signed-in browser sends its session's CSRF token with every change.
//! A domain admin sees only its domains: another domain, its users and
//! what else is in it answer `404`, as if they did not exist.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use stratus_core::{Address, Domain};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::Problems;
use super::{Client, Context, problem};
use crate::service::{self, Principal, Role, Service, ServiceError};

/// Most items one list page holds.
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Every admin route, each described by its handler's `#[utoipa::path]`.
pub fn routes() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(list_domains, add_domain))
        .routes(routes!(get_domain, del_domain))
        .routes(routes!(domain_dns))
        .routes(routes!(list_users, add_user))
        .routes(routes!(get_user, change_user, del_user))
        .routes(routes!(list_app_passwords, add_app_password))
        .routes(routes!(del_app_password))
        .routes(routes!(invite_user))
        .routes(routes!(list_aliases, add_alias))
        .routes(routes!(get_alias, del_alias))
        .routes(routes!(list_queue))
        .routes(routes!(get_queued, del_queued))
        .routes(routes!(retry_queued))
        .routes(routes!(bounce_queued))
        .routes(routes!(list_held))
        .routes(routes!(get_held, del_held))
        .routes(routes!(held_message))
        .routes(routes!(release_held))
        .routes(routes!(list_keys, add_key))
        .routes(routes!(revoke_key))
        .routes(routes!(audit_log))
        .merge(super::api_domains::routes())
        .merge(super::api_users::routes())
        .merge(super::api_lists::routes())
        .merge(super::api_spam::routes())
}

/// An API answer: a value, or why not.
pub(super) type Answer = Result<Response, ApiError>;

/// Why a request was not carried out, as a problem document.
#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// No key or session, or one that is unknown, revoked or ended.
    Unauthorized(&'static str),
    /// Too many failed sign-ins from the client's address.
    Throttled,
    /// This process serves no admin API.
    NotConfigured,
}

pub(super) fn refused(e: ServiceError) -> ApiError {
    ApiError::Service(e)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Service(e) => e,
            ApiError::NotConfigured => {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the admin API is not configured here",
                );
            }
            ApiError::Throttled => {
                return problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed sign-ins from your address; try later",
                );
            }
            ApiError::Unauthorized(detail) => {
                let mut r = problem(StatusCode::UNAUTHORIZED, detail);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"stratus\""),
                );
                return r;
            }
        };
        let status = match &e {
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            // What the stores said (endpoints, tables, buckets) goes to
            // the log, not to the client.
            ServiceError::Unavailable(why) => {
                tracing::warn!(error = %why, "admin API: the stores did not answer");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the stores did not answer; try again",
                );
            }
            ServiceError::Internal(why) => {
                tracing::error!(error = %why, "admin API: internal error");
                return problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        problem(status, e.to_string())
    }
}

/// The service and who makes the request (an API key, or a signed-in
/// user with an admin role): every admin handler's first extractor, so
/// nothing is read before the credentials are checked.
#[derive(Debug)]
pub struct Caller {
    pub(super) service: Service,
    pub(super) who: Principal,
    pub(super) from: IpAddr,
}

impl Caller {
    /// `domain`, when the caller may see it; otherwise not found.
    pub(super) fn sees(&self, domain: &Domain) -> Result<(), ApiError> {
        if self.who.covers(domain) {
            Ok(())
        } else {
            Err(refused(ServiceError::NotFound(format!(
                "domain {domain} is not hosted here"
            ))))
        }
    }

    /// Whether the caller may change the account `address` (which it
    /// sees): one that holds an admin role only a caller holding as much
    /// may change, or a domain admin could take over an admin's account
    /// by resetting its password.
    pub(super) async fn may_manage(&self, address: &Address) -> Result<(), ApiError> {
        let user = self.service.user(address).await.map_err(refused)?;
        match &user.admin {
            Some(g) => {
                let domains: Vec<String> =
                    g.domains.iter().map(|d| d.as_str().to_string()).collect();
                if self.who.may_grant(g.role, &domains) {
                    Ok(())
                } else {
                    Err(refused(ServiceError::Forbidden(format!(
                        "{address} holds a role this caller does not; only a caller holding as much may change it"
                    ))))
                }
            }
            None => Ok(()),
        }
    }

    pub(super) fn admin_only(&self) -> Result<(), ApiError> {
        match self.who.role {
            Role::Admin => Ok(()),
            Role::DomainAdmin => Err(refused(ServiceError::Forbidden(
                "only an admin key may do this".into(),
            ))),
        }
    }

    pub(super) async fn audit(&self, action: &str, target: &str, domain: Option<&Domain>) {
        if let Err(e) = self
            .service
            .audit(&self.who.name, Some(self.from), action, target, domain)
            .await
        {
            tracing::warn!(action, target, error = %e, "cannot write the audit log");
        }
    }
}

/// The service and the client, for a request that carries credentials:
/// only over TLS, or on this machine.
pub(super) fn service_for(parts: &Parts, ctx: &Context) -> Result<(Service, Client), ApiError> {
    serving(ctx, parts.extensions.get::<Client>().copied())
}

/// [`service_for`], given the connection's client.
pub(super) fn serving(
    ctx: &Context,
    client: Option<Client>,
) -> Result<(Service, Client), ApiError> {
    let Some(service) = ctx.service.clone() else {
        return Err(ApiError::NotConfigured);
    };
    let Some(client) = client else {
        return Err(refused(ServiceError::Internal(
            "a request without its connection".into(),
        )));
    };
    if !client.tls && !client.addr.ip().to_canonical().is_loopback() {
        return Err(refused(ServiceError::Forbidden(
            "the API answers over HTTPS only (or from this machine)".into(),
        )));
    }
    Ok((service, client))
}

impl FromRequestParts<Context> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, ApiError> {
        let (service, client) = service_for(parts, ctx)?;
        let who = if let Some(token) = super::bearer(&parts.headers) {
            match service.authenticate_api_key(token).await {
                Ok(Some(who)) => who,
                Ok(None) => {
                    return Err(ApiError::Unauthorized("the API key is unknown or revoked"));
                }
                Err(e) => return Err(refused(e)),
            }
        } else if super::account::session_cookie(&parts.headers).is_some() {
            let session = super::account::signed_in(parts, &service).await?;
            let Some(grant) = session.admin else {
                return Err(refused(ServiceError::Forbidden(format!(
                    "{} may not administer this server",
                    session.address
                ))));
            };
            Principal::user(&session.address, &grant)
        } else {
            return Err(ApiError::Unauthorized(
                "an API key (Authorization: Bearer <key>) or a signed-in session is needed",
            ));
        };
        Ok(Caller {
            service,
            who,
            from: client.addr.ip(),
        })
    }
}

/// A page request: `?cursor=...&limit=...`. Lists that can be narrowed
/// to one domain (users, aliases) take `domain=` too ([`DomainPageQuery`]);
/// anything else is refused, so a script never acts on a list it did not
/// ask for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The audit log answers its newest entries, up to `limit`: no cursor.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    limit: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DomainPageQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    /// Only this domain.
    pub(super) domain: Option<String>,
}

impl DomainPageQuery {
    pub(super) fn page(&self) -> PageQuery {
        PageQuery {
            cursor: self.cursor.clone(),
            limit: self.limit,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// One page of `items` (in their order, each named by `key`), after the
/// cursor: the hex of the last key of the page before.
pub(super) fn page<T: Serialize>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    q: &PageQuery,
) -> Answer {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(refused(ServiceError::Invalid(format!(
            "limit must be from 1 to {MAX_PAGE}"
        ))));
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(unhex(c).ok_or_else(|| {
            refused(ServiceError::Invalid(
                "the cursor is not one we gave".into(),
            ))
        })?),
    };
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .map(|i| (key(&i), i))
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    // In the cursor's order, whatever order the store gave.
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    let next = (rest.len() > limit).then(|| hex(&rest[limit - 1].0));
    rest.truncate(limit);
    let items = rest.into_iter().map(|(_, i)| i).collect();
    Ok(Json(Page { items, next }).into_response())
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || s.len() > 2048 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

pub(super) fn domain_of(input: &str) -> Result<Domain, ApiError> {
    service::parse_domain(input).map_err(refused)
}

pub(super) fn address_of(input: &str) -> Result<Address, ApiError> {
    service::parse_address(input).map_err(refused)
}

pub(super) fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/domains",
    tag = "domains",
    summary = "List domains",
    params(PageQuery),
    responses(
        (status = 200, description = "The domains the caller sees", body = Page<service::DomainInfo>),
        Problems,
    )
)]
async fn list_domains(c: Caller, Query(q): Query<PageQuery>) -> Answer {
    let domains = c.service.list_domains().await.map_err(refused)?;
    let visible: Vec<_> = domains
        .into_iter()
        .filter(|d| Domain::parse(&d.name).is_ok_and(|d| c.who.covers(&d)))
        .collect();
    page(visible, |d| d.name.clone(), &q)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/domains",
    tag = "domains",
    summary = "Add a domain (admin)",
    request_body = NewDomain,
    responses(
        (status = 201, description = "Added, with the DNS records to publish", body = service::DomainAdded),
        Problems,
    )
)]
async fn add_domain(c: Caller, Json(body): Json<NewDomain>) -> Answer {
    c.admin_only()?;
    let domain = domain_of(&body.name)?;
    let added = c.service.add_domain(&domain).await.map_err(refused)?;
    c.audit("domain.add", domain.as_str(), Some(&domain)).await;
    Ok(created(added))
}

#[utoipa::path(
    get,
    path = "/api/v1/domains/{domain}",
    tag = "domains",
    summary = "One domain",
    params(("domain" = String, Path, description = "A hosted domain")),
    responses(
        (status = 200, description = "The domain", body = service::DomainInfo),
        Problems,
    )
)]
async fn get_domain(c: Caller, Path(name): Path<String>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    let found = c.service.domain_info(&domain).await.map_err(refused)?;
    Ok(Json(found).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/domains/{domain}",
    tag = "domains",
    summary = "Delete a domain (admin; its users, aliases and lists must be gone)",
    params(("domain" = String, Path, description = "A hosted domain")),
    responses(
        (status = 200, description = "Deleted", body = service::DomainInfo),
        Problems,
    )
)]
async fn del_domain(c: Caller, Path(name): Path<String>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    c.admin_only()?;
    let gone = c.service.del_domain(&domain).await.map_err(refused)?;
    c.audit("domain.delete", domain.as_str(), Some(&domain))
        .await;
    Ok(Json(gone).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DnsQuery {
    /// Look each record up now: each item says whether it is published.
    #[serde(default)]
    check: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/domains/{domain}/dns",
    tag = "domains",
    summary = "DNS records of a domain",
    params(("domain" = String, Path, description = "A hosted domain"), DnsQuery),
    responses(
        (status = 200, description = "The records to publish; with check=true each says whether it is published", body = Page<service::DnsCheck>),
        Problems,
    )
)]
async fn domain_dns(c: Caller, Path(name): Path<String>, Query(q): Query<DnsQuery>) -> Answer {
    let domain = domain_of(&name)?;
    c.sees(&domain)?;
    if q.check {
        let checks = c.service.check_dns(&domain).await.map_err(refused)?;
        return Ok(Json(serde_json::json!({ "items": checks, "next": null })).into_response());
    }
    let records = c.service.dns_records(&domain).await.map_err(refused)?;
    Ok(Json(serde_json::json!({ "items": records, "next": null })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    summary = "List users",
    params(DomainPageQuery),
    responses(
        (status = 200, description = "The accounts the caller sees", body = Page<service::UserInfo>),
        Problems,
    )
)]
async fn list_users(c: Caller, Query(q): Query<DomainPageQuery>) -> Answer {
    let users = match &q.domain {
        Some(name) => {
            let domain = domain_of(name)?;
            c.sees(&domain)?;
            c.service.list_users(Some(&domain)).await.map_err(refused)?
        }
        None if c.who.role == Role::Admin => c.service.list_users(None).await.map_err(refused)?,
        None => {
            let mut all = Vec::new();
            for name in &c.who.domains {
                let domain = domain_of(name)?;
                match c.service.list_users(Some(&domain)).await {
                    Ok(users) => all.extend(users),
                    // A domain deleted since the key was made.
                    Err(ServiceError::NotFound(_)) => {}
                    Err(e) => return Err(refused(e)),
                }
            }
            all
        }
    };
    page(users, |u| u.address.clone(), &q.page())
}

/// A size as the command line takes it (`1G`, `500M`) or a byte count.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, ApiError> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(t) => stratus_runtime::size::parse_size(t)
                .map_err(|e| refused(ServiceError::Invalid(format!("quota: {e}")))),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    address: String,
    /// The account's password; or leave it out and set `invite`.
    password: Option<String>,
    quota: Option<Size>,
    /// Make the account without a password, and answer an invitation
    /// link with which its owner chooses one.
    #[serde(default)]
    invite: bool,
}

impl std::fmt::Debug for NewUser {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("address", &self.address)
            .field("quota", &self.quota)
            .field("invite", &self.invite)
            .finish_non_exhaustive()
    }
}

/// A user just added; with `invite`, the invitation (shown only now).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct UserAdded {
    #[serde(flatten)]
    user: service::UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    invitation: Option<service::Invitation>,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    summary = "Add a user",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created with the default mailboxes (and, with invite, the invitation)", body = UserAdded),
        Problems,
    )
)]
async fn add_user(c: Caller, Json(body): Json<NewUser>) -> Answer {
    let address = address_of(&body.address)?;
    c.sees(address.domain())?;
    let quota = body.quota.as_ref().map(Size::bytes).transpose()?;
    let (user, invitation) = match (body.password, body.invite) {
        (Some(password), false) => (
            c.service
                .add_user(&address, password, quota)
                .await
                .map_err(refused)?,
            None,
        ),
        (None, true) => {
            let (user, invitation) = c
                .service
                .invite_user(&address, quota)
                .await
                .map_err(refused)?;
            (user, Some(invitation))
        }
        _ => {
            return Err(refused(ServiceError::Invalid(
                "give a password, or \"invite\": true (not both)".into(),
            )));
        }
    };
    let action = if invitation.is_some() {
        "user.invite"
    } else {
        "user.add"
    };
    c.audit(action, &user.address, Some(address.domain())).await;
    Ok(created(UserAdded { user, invitation }))
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{address}/invitation",
    tag = "users",
    summary = "A new invitation link for a user, to choose a (new) password; the last one stops working",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 201, description = "The invitation (shown only now)", body = service::Invitation),
        Problems,
    )
)]
async fn invite_user(c: Caller, Path(input): Path<String>) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    c.may_manage(&address).await?;
    let invitation = c.service.invite(&address).await.map_err(refused)?;
    c.audit("user.invite", &address.to_string(), Some(address.domain()))
        .await;
    Ok(created(invitation))
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}",
    tag = "users",
    summary = "One user",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 200, description = "The account and what it uses", body = service::UserInfo),
        Problems,
    )
)]
async fn get_user(c: Caller, Path(input): Path<String>) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    let user = c.service.user(&address).await.map_err(refused)?;
    Ok(Json(user).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UserChange {
    password: Option<String>,
    /// A size, or `null` for unlimited; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Size>)]
    quota: Option<Option<Size>>,
    /// `true` disables the account (its sessions end), `false` enables it.
    disabled: Option<bool>,
    /// What the user may administer, or `null` for nothing; absent:
    /// unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Grant>)]
    admin: Option<Option<Grant>>,
}

impl std::fmt::Debug for UserChange {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserChange")
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("quota", &self.quota)
            .field("disabled", &self.disabled)
            .field("admin", &self.admin)
            .finish()
    }
}

/// An admin role as the API takes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Grant {
    #[schema(value_type = super::openapi::RoleSchema)]
    role: Role,
    #[serde(default)]
    domains: Vec<String>,
}

/// Tells a `null` apart from an absent field.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{address}",
    tag = "users",
    summary = "Change a user's password, quota, state or role",
    params(("address" = String, Path, description = "An account's address")),
    request_body = UserChange,
    responses(
        (status = 200, description = "Changed", body = service::UserInfo),
        Problems,
    )
)]
async fn change_user(c: Caller, Path(input): Path<String>, Json(body): Json<UserChange>) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    c.may_manage(&address).await?;
    let quota = match &body.quota {
        None => None,
        Some(q) => Some(q.as_ref().map(Size::bytes).transpose()?),
    };
    let admin = match &body.admin {
        None => None,
        Some(None) => Some(None),
        Some(Some(g)) => {
            let domains = g
                .domains
                .iter()
                .map(|d| domain_of(d))
                .collect::<Result<Vec<_>, _>>()?;
            for domain in &domains {
                c.sees(domain)?;
            }
            Some(Some(stratus_core::credentials::AdminGrant {
                role: g.role,
                domains,
            }))
        }
    };
    // Everything is checked before anything changes.
    if let Some(grant) = &admin {
        c.service
            .check_admin(&address, grant.as_ref(), Some(&c.who))
            .await
            .map_err(refused)?;
    }
    if let Some(password) = &body.password {
        stratus_core::password::check_new(password, c.service.password_min_length())
            .map_err(|e| refused(ServiceError::Invalid(e.to_string())))?;
    }
    if let Some(password) = body.password {
        c.service
            .set_password(&address, password)
            .await
            .map_err(refused)?;
        c.audit(
            "user.password",
            &address.to_string(),
            Some(address.domain()),
        )
        .await;
    }
    if let Some(quota) = quota {
        c.service
            .set_quota(&address, quota)
            .await
            .map_err(refused)?;
        c.audit("user.quota", &address.to_string(), Some(address.domain()))
            .await;
    }
    if let Some(disabled) = body.disabled {
        c.service
            .set_disabled(&address, disabled)
            .await
            .map_err(refused)?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        c.audit(action, &address.to_string(), Some(address.domain()))
            .await;
    }
    if let Some(grant) = admin {
        c.service
            .set_admin(&address, grant, Some(&c.who))
            .await
            .map_err(refused)?;
        c.audit("user.role", &address.to_string(), Some(address.domain()))
            .await;
    }
    let user = c.service.user(&address).await.map_err(refused)?;
    Ok(Json(user).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{address}",
    tag = "users",
    summary = "Delete a user",
    params(("address" = String, Path, description = "An account's address")),
    responses(
        (status = 204, description = "Deleted with its mail"),
        Problems,
    )
)]
async fn del_user(c: Caller, Path(input): Path<String>) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    c.may_manage(&address).await?;
    c.service.del_user(&address).await.map_err(refused)?;
    c.audit("user.delete", &address.to_string(), Some(address.domain()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{address}/app-passwords",
    tag = "users",
    summary = "A user's app passwords",
    params(("address" = String, Path, description = "An account's address"), PageQuery),
    responses(
        (status = 200, description = "The user's app passwords (never the passwords)", body = Page<service::AppPasswordInfo>),
        Problems,
    )
)]
async fn list_app_passwords(
    c: Caller,
    Path(input): Path<String>,
    Query(q): Query<PageQuery>,
) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    let all = c
        .service
        .list_app_passwords(&address)
        .await
        .map_err(refused)?;
    page(all, |p| p.name.clone(), &q)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAppPassword {
    pub(super) name: String,
}

/// An app password just made: the only time the password is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AppPasswordMade {
    #[serde(flatten)]
    pub(super) info: service::AppPasswordInfo,
    pub(super) password: String,
}

impl std::fmt::Debug for AppPasswordMade {
    /// Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPasswordMade")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{address}/app-passwords",
    tag = "users",
    summary = "Make an app password for a user",
    params(("address" = String, Path, description = "An account's address")),
    request_body = NewAppPassword,
    responses(
        (status = 201, description = "Made; the password is shown only now", body = AppPasswordMade),
        Problems,
    )
)]
async fn add_app_password(
    c: Caller,
    Path(input): Path<String>,
    Json(body): Json<NewAppPassword>,
) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    c.may_manage(&address).await?;
    let (info, password) = c
        .service
        .add_app_password(&address, &body.name)
        .await
        .map_err(refused)?;
    c.audit(
        "user.app_password.add",
        &format!("{address} {}", info.name),
        Some(address.domain()),
    )
    .await;
    Ok(created(AppPasswordMade { info, password }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{address}/app-passwords/{name}",
    tag = "users",
    summary = "Delete a user's app password",
    params(("address" = String, Path, description = "An account's address"), ("name" = String, Path, description = "An app password's name")),
    responses(
        (status = 204, description = "Deleted; sessions signed in with it end"),
        Problems,
    )
)]
async fn del_app_password(c: Caller, Path((input, name)): Path<(String, String)>) -> Answer {
    let address = address_of(&input)?;
    c.sees(address.domain())?;
    c.may_manage(&address).await?;
    let gone = c
        .service
        .del_app_password(&address, &name)
        .await
        .map_err(refused)?;
    c.audit(
        "user.app_password.delete",
        &format!("{address} {}", gone.name),
        Some(address.domain()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/apikeys",
    tag = "apikeys",
    summary = "List API keys",
    params(PageQuery),
    responses(
        (status = 200, description = "The keys the caller may see", body = Page<service::ApiKeyInfo>),
        Problems,
    )
)]
async fn list_keys(c: Caller, Query(q): Query<PageQuery>) -> Answer {
    let keys = c
        .service
        .list_api_keys(Some(&c.who))
        .await
        .map_err(refused)?;
    page(keys, |k| k.id.clone(), &q)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[schema(value_type = super::openapi::RoleSchema)]
    role: Role,
    #[serde(default)]
    domains: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct KeyMade {
    #[serde(flatten)]
    info: service::ApiKeyInfo,
    /// The key itself: shown this once.
    key: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/apikeys",
    tag = "apikeys",
    summary = "Make an API key",
    request_body = NewKey,
    responses(
        (status = 201, description = "Made; the key is shown only now", body = KeyMade),
        Problems,
    )
)]
async fn add_key(c: Caller, Json(body): Json<NewKey>) -> Answer {
    let domains = body
        .domains
        .iter()
        .map(|d| domain_of(d))
        .collect::<Result<Vec<_>, _>>()?;
    for domain in &domains {
        c.sees(domain)?;
    }
    let (info, key) = c
        .service
        .create_api_key(body.role, &domains, Some(&c.who))
        .await
        .map_err(refused)?;
    c.audit("apikey.create", &info.id, domains.first()).await;
    Ok(created(KeyMade { info, key }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/apikeys/{id}",
    tag = "apikeys",
    summary = "Revoke an API key",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "Revoked, at once, on every gateway", body = service::ApiKeyInfo),
        Problems,
    )
)]
async fn revoke_key(c: Caller, Path(id): Path<String>) -> Answer {
    let info = c
        .service
        .revoke_api_key(&id, Some(&c.who))
        .await
        .map_err(refused)?;
    let domain = info.domains.first().and_then(|d| Domain::parse(d).ok());
    c.audit("apikey.revoke", &info.id, domain.as_ref()).await;
    Ok(Json(info).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    summary = "The audit log",
    params(AuditQuery),
    responses(
        (status = 200, description = "The newest changes, newest first", body = Page<service::AuditEntry>),
        Problems,
    )
)]
async fn audit_log(c: Caller, Query(q): Query<AuditQuery>) -> Answer {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(refused(ServiceError::Invalid(format!(
            "limit must be from 1 to {MAX_PAGE}"
        ))));
    }
    let entries = c.service.audit_log(&c.who, limit).await.map_err(refused)?;
    Ok(Json(serde_json::json!({ "items": entries, "next": null })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases",
    tag = "aliases",
    summary = "List aliases",
    params(DomainPageQuery),
    responses(
        (status = 200, description = "The aliases the caller sees", body = Page<service::AliasInfo>),
        Problems,
    )
)]
async fn list_aliases(c: Caller, Query(q): Query<DomainPageQuery>) -> Answer {
    let aliases = match &q.domain {
        Some(name) => {
            let domain = domain_of(name)?;
            c.sees(&domain)?;
            c.service
                .list_aliases(Some(&domain))
                .await
                .map_err(refused)?
        }
        None => {
            let all = c.service.list_aliases(None).await.map_err(refused)?;
            all.into_iter()
                .filter(|a| Address::parse(&a.alias).is_ok_and(|a| c.who.covers(a.domain())))
                .collect()
        }
    };
    page(aliases, |a| a.alias.clone(), &q.page())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAlias {
    alias: String,
    targets: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/aliases",
    tag = "aliases",
    summary = "Add an alias",
    request_body = NewAlias,
    responses(
        (status = 201, description = "Added", body = service::AliasInfo),
        Problems,
    )
)]
async fn add_alias(c: Caller, Json(body): Json<NewAlias>) -> Answer {
    let alias = address_of(&body.alias)?;
    c.sees(alias.domain())?;
    if body.targets.is_empty() || body.targets.len() > 100 {
        return Err(refused(ServiceError::Invalid(
            "an alias needs 1 to 100 targets".into(),
        )));
    }
    let targets = body
        .targets
        .iter()
        .map(|t| address_of(t))
        .collect::<Result<Vec<_>, _>>()?;
    // A domain admin's alias may lead outside (a remote address) but not
    // into another tenant's domain here: it could route mail there, and
    // the answer would tell which addresses exist. Whether a target is
    // hosted decides, not whether it exists.
    if c.who.role == Role::DomainAdmin {
        let hosted = c.service.list_domains().await.map_err(refused)?;
        for target in &targets {
            let theirs = hosted.iter().any(|d| d.name == target.domain().as_str())
                && !c.who.covers(target.domain());
            if theirs {
                return Err(refused(ServiceError::Forbidden(format!(
                    "{target} is in a domain this key does not cover"
                ))));
            }
        }
    }
    let info = c
        .service
        .add_alias(&alias, targets)
        .await
        .map_err(refused)?;
    c.audit("alias.add", &info.alias, Some(alias.domain()))
        .await;
    Ok(created(info))
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases/{alias}",
    tag = "aliases",
    summary = "One alias",
    params(("alias" = String, Path, description = "An alias's address")),
    responses(
        (status = 200, description = "The alias", body = service::AliasInfo),
        Problems,
    )
)]
async fn get_alias(c: Caller, Path(input): Path<String>) -> Answer {
    let alias = address_of(&input)?;
    c.sees(alias.domain())?;
    let found = c
        .service
        .list_aliases(Some(alias.domain()))
        .await
        .map_err(refused)?
        .into_iter()
        .find(|a| Address::parse(&a.alias).is_ok_and(|a| a.account_key() == alias.account_key()))
        .ok_or_else(|| refused(ServiceError::NotFound(format!("no alias {alias}"))))?;
    Ok(Json(found).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/aliases/{alias}",
    tag = "aliases",
    summary = "Delete an alias",
    params(("alias" = String, Path, description = "An alias's address")),
    responses(
        (status = 204, description = "Deleted"),
        Problems,
    )
)]
async fn del_alias(c: Caller, Path(input): Path<String>) -> Answer {
    let alias = address_of(&input)?;
    c.sees(alias.domain())?;
    c.service.del_alias(&alias).await.map_err(refused)?;
    c.audit("alias.delete", &alias.to_string(), Some(alias.domain()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct QueueQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    /// The destination domain.
    domain: Option<String>,
    /// The envelope sender (`<>`: the null sender).
    sender: Option<String>,
    /// One of the recipients.
    recipient: Option<String>,
}

/// Whether the caller sees a waiting message of `owner`'s: a domain
/// admin only its domains' senders' (and forwarders'), never our own
/// DSNs (null sender).
fn sees_queued(c: &Caller, owner: Option<&Domain>) -> bool {
    c.who.role == Role::Admin || owner.is_some_and(|d| c.who.covers(d))
}

#[utoipa::path(
    get,
    path = "/api/v1/queue",
    tag = "queue",
    summary = "List the outbound queue",
    params(QueueQuery),
    responses(
        (status = 200, description = "Messages waiting for another attempt, oldest first", body = Page<service::QueuedInfo>),
        Problems,
    )
)]
async fn list_queue(c: Caller, Query(q): Query<QueueQuery>) -> Answer {
    let filter = service::QueueFilter {
        domain: q.domain.clone(),
        sender: q.sender.clone(),
        recipient: q.recipient.clone(),
    };
    let all = c.service.list_queue(&filter).await.map_err(refused)?;
    let visible: Vec<_> = all
        .into_iter()
        .filter(|(_, owner)| sees_queued(&c, owner.as_ref()))
        .map(|(info, _)| info)
        .collect();
    let page_query = PageQuery {
        cursor: q.cursor,
        limit: q.limit,
    };
    page(visible, |m| m.id.clone(), &page_query)
}

/// The waiting message `id`, when the caller sees it.
async fn queued(c: &Caller, id: &str) -> Result<(service::QueuedInfo, Option<Domain>), ApiError> {
    let (info, owner) = c.service.queued(id).await.map_err(refused)?;
    if !sees_queued(c, owner.as_ref()) {
        return Err(refused(ServiceError::NotFound(format!(
            "no message {id} is waiting in the queue"
        ))));
    }
    Ok((info, owner))
}

#[utoipa::path(
    get,
    path = "/api/v1/queue/{id}",
    tag = "queue",
    summary = "One waiting message",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "The waiting message", body = service::QueuedInfo),
        Problems,
    )
)]
async fn get_queued(c: Caller, Path(id): Path<String>) -> Answer {
    let (info, _) = queued(&c, &id).await?;
    Ok(Json(info).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/{id}/retry",
    tag = "queue",
    summary = "Retry a waiting message now",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "Another attempt is made now", body = service::QueuedInfo),
        Problems,
    )
)]
async fn retry_queued(c: Caller, Path(id): Path<String>) -> Answer {
    let (_, owner) = queued(&c, &id).await?;
    let info = c.service.retry_queued(&id).await.map_err(refused)?;
    c.audit("queue.retry", &id, owner.as_ref()).await;
    Ok(Json(info).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/queue/{id}/bounce",
    tag = "queue",
    summary = "Bounce a waiting message",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "Given up; the sender gets a DSN", body = service::QueuedInfo),
        Problems,
    )
)]
async fn bounce_queued(c: Caller, Path(id): Path<String>) -> Answer {
    let (_, owner) = queued(&c, &id).await?;
    let info = c.service.bounce_queued(&id).await.map_err(refused)?;
    c.audit("queue.bounce", &id, owner.as_ref()).await;
    Ok(Json(info).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/queue/{id}",
    tag = "queue",
    summary = "Delete a waiting message",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 204, description = "Removed: no more attempts, no DSN"),
        Problems,
    )
)]
async fn del_queued(c: Caller, Path(id): Path<String>) -> Answer {
    let (_, owner) = queued(&c, &id).await?;
    c.service.delete_queued(&id).await.map_err(refused)?;
    c.audit("queue.delete", &id, owner.as_ref()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether every recipient a message was held for is in the caller's
/// domains: a held message also for another tenant is that tenant's too,
/// and only an admin sees it.
fn sees_held(c: &Caller, held: &service::HeldInfo) -> bool {
    c.who.role == Role::Admin
        || (!held.recipients.is_empty()
            && held
                .recipients
                .iter()
                .all(|r| Address::parse(r).is_ok_and(|r| c.who.covers(r.domain()))))
}

/// The held message `id`, when the caller may see it.
async fn held(c: &Caller, id: &str) -> Result<(service::HeldInfo, Vec<u8>), ApiError> {
    let id = service::parse_held_id(id)
        .map_err(|_| refused(ServiceError::NotFound(format!("no held message {id}"))))?;
    let (info, raw) = c.service.show_held(&id).await.map_err(refused)?;
    if !sees_held(c, &info) {
        return Err(refused(ServiceError::NotFound(format!(
            "no held message {id}"
        ))));
    }
    Ok((info, raw))
}

#[utoipa::path(
    get,
    path = "/api/v1/quarantine",
    tag = "quarantine",
    summary = "List the quarantine",
    params(PageQuery),
    responses(
        (status = 200, description = "Held messages the caller sees", body = Page<service::HeldInfo>),
        Problems,
    )
)]
async fn list_held(c: Caller, Query(q): Query<PageQuery>) -> Answer {
    let all = c.service.list_held().await.map_err(refused)?;
    let visible: Vec<_> = all.into_iter().filter(|h| sees_held(&c, h)).collect();
    page(visible, |h| h.id.clone(), &q)
}

#[utoipa::path(
    get,
    path = "/api/v1/quarantine/{id}",
    tag = "quarantine",
    summary = "One held message",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "The held message's summary", body = service::HeldInfo),
        Problems,
    )
)]
async fn get_held(c: Caller, Path(id): Path<String>) -> Answer {
    let (info, _) = held(&c, &id).await?;
    Ok(Json(info).into_response())
}

/// The message as it was held (`message/rfc822`).
#[utoipa::path(
    get,
    path = "/api/v1/quarantine/{id}/message",
    tag = "quarantine",
    summary = "A held message itself",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "The message as held (message/rfc822)", body = String, content_type = "message/rfc822"),
        Problems,
    )
)]
async fn held_message(c: Caller, Path(id): Path<String>) -> Answer {
    let (_, raw) = held(&c, &id).await?;
    let mut response = raw.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/api/v1/quarantine/{id}/release",
    tag = "quarantine",
    summary = "Release a held message",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 200, description = "Delivered to the recipients it was held for", body = service::HeldInfo),
        Problems,
    )
)]
async fn release_held(c: Caller, Path(id): Path<String>) -> Answer {
    let (info, _) = held(&c, &id).await?;
    let id = service::parse_held_id(&info.id).map_err(refused)?;
    let released = c.service.release_held(&id).await.map_err(refused)?;
    c.audit(
        "quarantine.release",
        &released.id,
        held_domain(&released).as_ref(),
    )
    .await;
    Ok(Json(released).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/quarantine/{id}",
    tag = "quarantine",
    summary = "Delete a held message",
    params(("id" = String, Path, description = "The id the list gave")),
    responses(
        (status = 204, description = "Deleted"),
        Problems,
    )
)]
async fn del_held(c: Caller, Path(id): Path<String>) -> Answer {
    let (info, _) = held(&c, &id).await?;
    let id = service::parse_held_id(&info.id).map_err(refused)?;
    c.service.delete_held(&id).await.map_err(refused)?;
    c.audit("quarantine.delete", &info.id, held_domain(&info).as_ref())
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The domain of a held message's first recipient, for the audit log.
fn held_domain(held: &service::HeldInfo) -> Option<Domain> {
    held.recipients
        .first()
        .and_then(|r| Address::parse(r).ok())
        .map(|a| a.domain().clone())
}
