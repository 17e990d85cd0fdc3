//! Setup links: `/api/v1/organizations/{id}/setup-links`. A link lets a customer's IT admin set up
//! SCIM for one organization on the setup page, without an account; its URL (with its token) is
//! answered once, at creation.

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::organizations::location;
use super::problem::{ApiProblem, ApiResult, Problem};
use crate::admin::{Admin, IssuedSetupLink, MAX_SETUP_LINK_TTL, MIN_SETUP_LINK_TTL};
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use rollcall_store::sqlite::now_us;
use rollcall_store::{SetupLink, SetupLinkStatus};
use rollcall_webhooks::event::ActorView;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// Whether a link works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// It opens the setup page until `expires_at`.
    Active,
    /// Past `expires_at`: opening it says so.
    Expired,
    /// Revoked by an operator: opening it says so, and the pages opened from it were signed out.
    Revoked,
}

impl From<SetupLinkStatus> for LinkStatus {
    fn from(s: SetupLinkStatus) -> Self {
        match s {
            SetupLinkStatus::Active => LinkStatus::Active,
            SetupLinkStatus::Expired => LinkStatus::Expired,
            SetupLinkStatus::Revoked => LinkStatus::Revoked,
        }
    }
}

/// A setup link. Its URL and token are answered only when it is created.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SetupLinkView {
    pub id: String,
    pub org_id: String,
    /// The first characters of the token, to recognise the link (never enough to use it).
    #[schema(example = "rc_setup_Ab12")]
    pub token_prefix: String,
    /// `revoked` whenever revoked, else `expired` after `expires_at`, else `active`.
    pub status: LinkStatus,
    /// Where the setup page sends the IT admin when done.
    #[schema(required = true, example = "https://app.example.com/settings/sso")]
    pub return_url: Option<String>,
    /// The SCIM connection the IT admin created through the link, if any.
    #[schema(required = true)]
    pub connection_id: Option<String>,
    /// Who created the link.
    pub created_by: ActorView,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// When the link was last opened to sign in to the setup page.
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
}

impl SetupLinkView {
    /// The view of a link, its status as of `now_us`.
    pub fn at(l: &SetupLink, now_us: i64) -> Self {
        SetupLinkView {
            id: l.id.clone(),
            org_id: l.org_id.clone(),
            token_prefix: l.token_prefix.clone(),
            status: l.status(now_us).into(),
            return_url: l.return_url.clone(),
            connection_id: l.connection_id.clone(),
            created_by: ActorView::from(&l.created_by),
            created_at: rfc3339(l.created_us),
            expires_at: rfc3339(l.expires_us),
            revoked_at: l.revoked_us.map(rfc3339),
            last_used_at: l.last_used_us.map(rfc3339),
        }
    }
}

impl From<&SetupLink> for SetupLinkView {
    fn from(l: &SetupLink) -> Self {
        SetupLinkView::at(l, now_us())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SetupLinkList {
    pub data: Vec<SetupLinkView>,
}

/// A link just created. Its URL and token are shown only here, once: give the URL to the IT admin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SetupLinkWithUrl {
    pub setup_link: SetupLinkView,
    /// The page to open: `{public_url}/setup/{token}`.
    #[schema(example = "https://rollcall.example.com/setup/rc_setup_...")]
    pub url: String,
    /// The token alone (the last segment of `url`).
    #[schema(example = "rc_setup_...")]
    pub token: String,
}

impl From<IssuedSetupLink> for SetupLinkWithUrl {
    fn from(i: IssuedSetupLink) -> Self {
        SetupLinkWithUrl {
            setup_link: SetupLinkView::from(&i.link),
            url: i.url,
            token: i.token,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSetupLink {
    /// How long the link works: 300 (5 minutes) to 7776000 (90 days); absent: 604800 (7 days).
    #[schema(minimum = 300, maximum = 7776000, example = 604800)]
    pub expires_in_seconds: Option<i64>,
    /// Where the setup page sends the IT admin when done: an absolute `https://` or `http://` URL
    /// without a user name or password, up to 2000 characters.
    #[schema(example = "https://app.example.com/settings/sso")]
    pub return_url: Option<String>,
}

/// Create a setup link for an organization.
///
/// The IT admin of the organization opens the URL, without an account, to set up SCIM for that
/// organization only: pick the identity provider, get a connection, follow its steps. The URL and
/// token are answered only now; Rollcall keeps a hash. Records `setup_link.created`.
#[utoipa::path(post, path = "/organizations/{id}/setup-links", tag = "setup-links",
    params(("id" = String, Path, description = "Organization id")),
    request_body = CreateSetupLink,
    responses(
        (status = 201, description = "Created; the URL and token are shown only in this answer", body = SetupLinkWithUrl,
            headers(("Location" = String, description = "The link's URL in this API"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (named in the detail) or unknown field", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create_setup_link(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateSetupLink>,
) -> ApiResult<(StatusCode, HeaderMap, Json<SetupLinkWithUrl>)> {
    let (min, max) = (MIN_SETUP_LINK_TTL.as_secs(), MAX_SETUP_LINK_TTL.as_secs());
    let expires_in = match body.expires_in_seconds {
        None => None,
        Some(n) if (min..=max).contains(&n.unsigned_abs()) && n > 0 => Some(Duration::from_secs(n.unsigned_abs())),
        Some(n) => {
            return Err(ApiProblem::new(
                422,
                format!(
                    "expires_in_seconds: a setup link expires from {min} (5 minutes) to {max} (90 days) seconds after it is created, not {n}"
                ),
            ));
        }
    };
    let issued = admin
        .create_setup_link(&by, &org_id, expires_in, body.return_url.as_deref())
        .await?;
    let path = format!("{}/setup-links", issued.link.org_id);
    let headers = location("organizations", &format!("{path}/{}", issued.link.id));
    Ok((StatusCode::CREATED, headers, Json(SetupLinkWithUrl::from(issued))))
}

/// List an organization's setup links, newest first, expired and revoked ones included.
#[utoipa::path(get, path = "/organizations/{id}/setup-links", tag = "setup-links",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The links (never their URLs or tokens)", body = SetupLinkList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_setup_links(
    State(admin): State<Admin>,
    Path(org_id): Path<String>,
) -> ApiResult<Json<SetupLinkList>> {
    let links = admin.list_setup_links(&org_id).await?;
    let now = now_us();
    Ok(Json(SetupLinkList {
        data: links.iter().map(|l| SetupLinkView::at(l, now)).collect(),
    }))
}

/// Get a setup link.
#[utoipa::path(get, path = "/organizations/{id}/setup-links/{link}", tag = "setup-links",
    params(("id" = String, Path, description = "Organization id"), ("link" = String, Path, description = "Setup link id")),
    responses(
        (status = 200, description = "The link (never its URL or token)", body = SetupLinkView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or no such link in it", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get_setup_link(
    State(admin): State<Admin>,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<Json<SetupLinkView>> {
    Ok(Json(SetupLinkView::from(&admin.setup_link(&org_id, &id).await?)))
}

/// Revoke a setup link.
///
/// It stops working at once: opening it says it was revoked, and setup pages opened from it are
/// signed out. A connection created through it keeps working. Records `setup_link.revoked` (once:
/// revoking a revoked link changes nothing).
#[utoipa::path(delete, path = "/organizations/{id}/setup-links/{link}", tag = "setup-links",
    params(("id" = String, Path, description = "Organization id"), ("link" = String, Path, description = "Setup link id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or no such link in it", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn revoke_setup_link(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.revoke_setup_link(&by, &org_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
