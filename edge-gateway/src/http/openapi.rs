//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers
//! themselves: every API route is registered through
//! `utoipa_axum::routes!`, which takes each handler's `#[utoipa::path]`
//! description, so a route cannot be served without being described (and
//! a test fails the build if an API route is added any other way).
//! Served at `/api/v1/openapi.json` and printed by `stratus openapi`.

use std::sync::OnceLock;

use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::Context;

/// An RFC 9457 problem document: every error the API answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
}

/// What every operation may answer besides its success.
#[derive(Debug, utoipa::IntoResponses)]
pub enum Problems {
    /// Refused: bad input, no or wrong credentials, not found, a conflict.
    #[response(status = "4XX", content_type = "application/problem+json")]
    Refused(Problem),
    /// The stores did not answer, or an internal error.
    #[response(status = "5XX", content_type = "application/problem+json")]
    Failed(Problem),
}

/// The roles of the admin API, for users and keys alike.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleSchema {
    /// Everything, on every domain.
    Admin,
    /// Only what is in its domains.
    DomainAdmin,
}

/// What a user may administer.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantSchema {
    pub role: RoleSchema,
    /// A domain admin's domains (none for an admin).
    pub domains: Vec<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stratus admin API",
        description = "Domains, users, aliases, the outbound queue, the quarantine, API keys and the audit log of a Stratus mail server; web sign-in and users' own accounts. JSON in and out (snake_case); errors are RFC 9457 problem documents; lists answer {\"items\": [...], \"next\": cursor-or-null}.",
        license(name = "Apache-2.0 OR MIT")
    ),
    modifiers(&Credentials),
    // Every operation takes a key or a session, but where it says otherwise.
    security(("api_key" = []), ("session" = [])),
    components(schemas(Problem, RoleSchema, GrantSchema))
)]
struct ApiDoc;

/// The two ways to call the API: a key, or a signed-in session.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`stratus apikey create`), over HTTPS or from the machine itself",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::service::WEB_SESSION_COOKIE,
                "The session cookie `POST /api/v1/session` sets; every change also sends the session's CSRF token as X-CSRF-Token",
            ))),
        );
    }
}

/// The API's routes, without state, and its document as JSON: made once.
fn built() -> &'static (Router<Context>, String) {
    static BUILT: OnceLock<(Router<Context>, String)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (router, doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
            .merge(super::api::routes())
            .merge(super::account::routes())
            .split_for_parts();
        let json = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
        (router, json)
    })
}

/// Every API route (each described in [`document`]).
pub fn routes() -> Router<Context> {
    built().0.clone()
}

/// The OpenAPI document, as JSON.
pub fn document() -> &'static str {
    &built().1
}
