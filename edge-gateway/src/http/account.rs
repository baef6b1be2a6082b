//! Signing in on the web, and what every user may do with their own
//! account there.
//!
//! - `POST /api/v1/session` `{"address", "password"}`: the account
//!   password (never an app password), checked like an IMAP login (the
//!   same Argon2id, the same failed-login throttle); answers the session
//!   with its CSRF token and sets the session cookie (`HttpOnly`,
//!   `Secure`, `SameSite=Strict`, `__Host-`).
//! - `GET /api/v1/session`: the session (`401` once it has ended);
//!   `DELETE`: signs out.
//! - `GET /api/v1/me`: the account; `PUT /api/v1/me/password`
//!   `{"current_password", "new_password"}`: every other session ends,
//!   this browser gets a new one.
//! - `GET|POST /api/v1/me/app-passwords`, `DELETE .../{name}`.
//!
//! A request made with the cookie that changes anything (any method but
//! GET and HEAD) carries the session's CSRF token in `X-CSRF-Token`; and
//! every body is JSON, which a cross-site form cannot send.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{Answer, ApiError, AppPasswordMade, created, refused, service_for, serving};
use super::openapi::Problems;
use super::{Client, Context};
use crate::login::{self, Login};
use crate::service::{Service, ServiceError, WEB_SESSION_COOKIE, WebSession};

/// The header a signed-in page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Signing in and users' own accounts, each route described by its
/// handler's `#[utoipa::path]`.
pub fn routes() -> OpenApiRouter<Context> {
    OpenApiRouter::new()
        .routes(routes!(show_session, sign_in, sign_out))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(my_app_passwords, add_my_app_password))
        .routes(routes!(del_my_app_password))
        .routes(routes!(show_invitation, accept_invitation))
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == WEB_SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

/// The live session of the request's cookie, with the CSRF token checked
/// when the request changes anything.
pub async fn signed_in(parts: &Parts, service: &Service) -> Result<WebSession, ApiError> {
    let Some(secret) = session_cookie(&parts.headers) else {
        return Err(ApiError::Unauthorized("sign in first"));
    };
    let Some(session) = service.web_session(secret).await.map_err(refused)? else {
        return Err(ApiError::Unauthorized(
            "the session has ended; sign in again",
        ));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let given = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !session.csrf_matches(given) {
            return Err(refused(ServiceError::Forbidden(
                "a change needs the session's CSRF token in X-CSRF-Token".into(),
            )));
        }
    }
    Ok(session)
}

/// A signed-in user acting on their own account.
#[derive(Debug)]
pub struct Me {
    service: Service,
    session: WebSession,
    client: Client,
}

impl FromRequestParts<Context> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Context) -> Result<Self, ApiError> {
        let (service, client) = service_for(parts, ctx)?;
        let session = signed_in(parts, &service).await?;
        Ok(Me {
            service,
            session,
            client,
        })
    }
}

impl Me {
    async fn audit(&self, action: &str, target: &str) {
        let who = format!("user:{}", self.session.address);
        let domain = self.session.address.domain();
        if let Err(e) = self
            .service
            .audit(
                &who,
                Some(self.client.addr.ip()),
                action,
                target,
                Some(domain),
            )
            .await
        {
            tracing::warn!(action, error = %e, "cannot write the audit log");
        }
    }
}

/// The `Set-Cookie` value that holds `secret` (or, empty, clears it).
fn cookie(secret: &str) -> HeaderValue {
    let max_age = if secret.is_empty() {
        0
    } else {
        crate::service::WEB_SESSION_LIFETIME.as_secs()
    };
    HeaderValue::from_str(&format!(
        "{WEB_SESSION_COOKIE}={secret}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `session` as an answer that also sets the cookie to `secret`.
fn with_cookie(status: StatusCode, session: &WebSession, secret: &str) -> Response {
    let mut r = (status, Json(session)).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie(secret));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    address: String,
    password: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Checks `address`'s account password the way every protocol does.
async fn check(
    ctx: &Context,
    client: Client,
    address: &str,
    password: &str,
) -> Result<login::Signed, ApiError> {
    match login::login(&ctx.shared, client.addr, login::WEB, address, password).await {
        Login::Ok(signed) => Ok(signed),
        Login::Failed => Err(ApiError::Unauthorized("wrong address or password")),
        Login::Blocked => Err(ApiError::Throttled),
        Login::Unavailable => Err(refused(ServiceError::Unavailable(
            "the account store did not answer".into(),
        ))),
    }
}

/// Checks a signed-in user's password again before a change that needs
/// it: a wrong one is `403` (the session itself is fine).
async fn confirm(ctx: &Context, me: &Me, password: &str) -> Result<(), ApiError> {
    match check(ctx, me.client, &me.session.address.to_string(), password).await {
        Ok(_) => Ok(()),
        Err(ApiError::Unauthorized(_)) => Err(refused(ServiceError::Forbidden(
            "the current password is wrong".into(),
        ))),
        Err(e) => Err(e),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    summary = "Sign in with the account password",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in; the session cookie is set", body = WebSession),
        Problems,
    ),
    security(())
)]
async fn sign_in(
    axum::extract::State(ctx): axum::extract::State<Context>,
    client: Option<axum::Extension<Client>>,
    Json(body): Json<SignIn>,
) -> Answer {
    let (service, client) = serving(&ctx, client.map(|c| c.0))?;
    let signed = check(&ctx, client, &body.address, &body.password).await?;
    let (secret, session) = service
        .start_web_session(&signed.address, signed.generation)
        .await
        .map_err(refused)?;
    Ok(with_cookie(StatusCode::CREATED, &session, &secret))
}

#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    summary = "The current web session",
    responses(
        (status = 200, description = "The session and its CSRF token", body = WebSession),
        Problems,
    ),
    security(("session" = []))
)]
async fn show_session(me: Me) -> Answer {
    let mut r = Json(&me.session).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    summary = "Sign out",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        Problems,
    ),
    security(("session" = []))
)]
async fn sign_out(me: Me, headers: HeaderMap) -> Answer {
    if let Some(secret) = session_cookie(&headers) {
        me.service.end_web_session(secret).await.map_err(refused)?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie(""));
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "me",
    summary = "Your own account",
    responses(
        (status = 200, description = "Your account", body = crate::service::UserInfo),
        Problems,
    ),
    security(("session" = []))
)]
async fn me(me: Me) -> Answer {
    let user = me
        .service
        .user(&me.session.address)
        .await
        .map_err(refused)?;
    Ok(Json(user).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChange").finish_non_exhaustive()
    }
}

/// A new app password of one's own: the account password again, so that
/// a stolen session cannot make itself a lasting way in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MyNewAppPassword {
    name: String,
    current_password: String,
}

impl std::fmt::Debug for MyNewAppPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MyNewAppPassword")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/me/password",
    tag = "me",
    summary = "Change your password",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; every other session ended, this one renewed", body = WebSession),
        Problems,
    ),
    security(("session" = []))
)]
async fn change_password(
    axum::extract::State(ctx): axum::extract::State<Context>,
    me: Me,
    Json(body): Json<PasswordChange>,
) -> Answer {
    let address = me.session.address.clone();
    confirm(&ctx, &me, &body.current_password).await?;
    let generation = me
        .service
        .set_password(&address, body.new_password)
        .await
        .map_err(refused)?;
    me.audit("user.password", &address.to_string()).await;
    // Every session signed in before has ended, this one too: a new one,
    // under the generation this change wrote.
    let (secret, session) = me
        .service
        .start_web_session(&address, generation)
        .await
        .map_err(refused)?;
    Ok(with_cookie(StatusCode::OK, &session, &secret))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

#[utoipa::path(
    get,
    path = "/api/v1/me/app-passwords",
    tag = "me",
    summary = "Your app passwords",
    responses(
        (status = 200, description = "Your app passwords", body = super::api::Page<crate::service::AppPasswordInfo>),
        Problems,
    ),
    security(("session" = []))
)]
async fn my_app_passwords(me: Me, Query(_): Query<NoQuery>) -> Answer {
    let all = me
        .service
        .list_app_passwords(&me.session.address)
        .await
        .map_err(refused)?;
    Ok(Json(serde_json::json!({ "items": all, "next": null })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/me/app-passwords",
    tag = "me",
    summary = "Make an app password",
    request_body = MyNewAppPassword,
    responses(
        (status = 201, description = "Made; shown only now", body = super::api::AppPasswordMade),
        Problems,
    ),
    security(("session" = []))
)]
async fn add_my_app_password(
    axum::extract::State(ctx): axum::extract::State<Context>,
    me: Me,
    Json(body): Json<MyNewAppPassword>,
) -> Answer {
    confirm(&ctx, &me, &body.current_password).await?;
    let (info, password) = me
        .service
        .add_app_password(&me.session.address, &body.name)
        .await
        .map_err(refused)?;
    me.audit(
        "user.app_password.add",
        &format!("{} {}", me.session.address, info.name),
    )
    .await;
    let mut r = created(AppPasswordMade { info, password });
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[utoipa::path(
    delete,
    path = "/api/v1/me/app-passwords/{name}",
    tag = "me",
    summary = "Delete one of your app passwords",
    params(("name" = String, Path, description = "An app password's name")),
    responses(
        (status = 204, description = "Deleted; its sessions end"),
        Problems,
    ),
    security(("session" = []))
)]
async fn del_my_app_password(me: Me, Path(name): Path<String>) -> Answer {
    let gone = me
        .service
        .del_app_password(&me.session.address, &name)
        .await
        .map_err(refused)?;
    me.audit(
        "user.app_password.delete",
        &format!("{} {}", me.session.address, gone.name),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/invitations/{token}",
    tag = "session",
    summary = "The account an invitation link is for",
    params(("token" = String, Path, description = "The invitation's token")),
    responses(
        (status = 200, description = "The account and when the link expires", body = crate::service::InvitationInfo),
        Problems,
    ),
    security(())
)]
async fn show_invitation(
    axum::extract::State(ctx): axum::extract::State<Context>,
    client: Option<axum::Extension<Client>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Answer {
    let (service, _) = serving(&ctx, client.map(|c| c.0))?;
    let info = service.invitation(&token).await.map_err(refused)?;
    Ok(Json(info).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChosenPassword {
    password: String,
}

impl std::fmt::Debug for ChosenPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChosenPassword")
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/invitations/{token}",
    tag = "session",
    summary = "Choose the account's password with an invitation (it is used up)",
    params(("token" = String, Path, description = "The invitation's token")),
    request_body = ChosenPassword,
    responses(
        (status = 200, description = "The password is set; sign in with it", body = crate::service::InvitationInfo),
        Problems,
    ),
    security(())
)]
async fn accept_invitation(
    axum::extract::State(ctx): axum::extract::State<Context>,
    client: Option<axum::Extension<Client>>,
    axum::extract::Path(token): axum::extract::Path<String>,
    Json(body): Json<ChosenPassword>,
) -> Answer {
    let (service, client) = serving(&ctx, client.map(|c| c.0))?;
    let info = service.invitation(&token).await.map_err(refused)?;
    let address = service
        .accept_invitation(&token, body.password)
        .await
        .map_err(refused)?;
    if let Err(e) = service
        .audit(
            &format!("invitation:{address}"),
            Some(client.addr.ip()),
            "user.invitation.accept",
            &address.to_string(),
            Some(address.domain()),
        )
        .await
    {
        tracing::warn!(error = %e, "cannot write the audit log");
    }
    Ok(Json(info).into_response())
}
