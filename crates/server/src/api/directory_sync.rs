//! Directory connections (Google Workspace): `POST /organizations/{id}/google-workspace-connections`,
//! `GET|PATCH /connections/{id}/google-workspace`, `GET|POST /connections/{id}/sync`.
//!
//! A Google Workspace connection is created on an endpoint of its own rather than through
//! `POST /organizations/{id}/connections`: it takes different fields (a service account key, the
//! admin to act as), and its answer carries no token, so each endpoint has one request and one
//! answer shape. Once created it is a connection like the others (`GET /connections/{id}`, its
//! users, groups, roles, events), with `kind: google_workspace`.

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::organizations::location;
use super::problem::{ApiResult, Problem};
use super::schemas::ConnectionView;
use crate::admin::{Admin, GoogleWorkspaceChange, GoogleWorkspaceInput};
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use rollcall_store::{Connection, DirectorySource, SyncCounts, SyncScope, SyncStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which part of the directory is read; empty lists: all of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeView {
    /// Organizational unit paths; a unit includes those below it. A user is read when it is in one
    /// of these units or a member (directly or through nested groups) of one of `groups`.
    #[serde(default)]
    #[schema(example = json!(["/Engineering"]))]
    pub org_units: Vec<String>,
    /// Group e-mail addresses: only these groups are read (all groups when empty).
    #[serde(default)]
    #[schema(example = json!(["engineering@example.com"]))]
    pub groups: Vec<String>,
}

impl From<&SyncScope> for ScopeView {
    fn from(s: &SyncScope) -> Self {
        ScopeView {
            org_units: s.org_units.clone(),
            groups: s.groups.clone(),
        }
    }
}

impl From<ScopeView> for SyncScope {
    fn from(s: ScopeView) -> Self {
        SyncScope {
            org_units: s.org_units,
            groups: s.groups,
        }
    }
}

/// A new Google Workspace connection.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGoogleWorkspaceConnection {
    /// 1 to 200 characters; defaults to "Google Workspace".
    pub name: Option<String>,
    /// The Google customer id (Admin console › Account › Account settings), or `my_customer` (the
    /// default): the admin's own account.
    #[schema(example = "my_customer")]
    pub customer: Option<String>,
    /// An administrator of the Google Workspace the service account acts as (domain-wide delegation).
    #[schema(example = "it-admin@example.com")]
    pub admin_email: String,
    /// The service account key: the JSON file Google Cloud gives (`type: service_account`, with
    /// `client_email`, `private_key`, `token_uri`). Stored encrypted; never returned.
    #[schema(value_type = Object)]
    pub credentials: serde_json::Value,
    #[serde(default)]
    pub scope: ScopeView,
    /// Seconds between two syncs, 60 to 604800; default 600.
    #[schema(example = 600)]
    pub interval_s: Option<i64>,
    /// The Directory API's base URL, for a test double; default Google's.
    pub api_base_url: Option<String>,
    /// The token endpoint, for a test double; default the key's `token_uri`.
    pub token_url: Option<String>,
}

/// Changes to a Google Workspace connection; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGoogleWorkspace {
    pub customer: Option<String>,
    pub admin_email: Option<String>,
    /// A new service account key (replaces the stored one).
    #[schema(value_type = Object)]
    pub credentials: Option<serde_json::Value>,
    pub scope: Option<ScopeView>,
    pub interval_s: Option<i64>,
    /// `null` or `""`: Google's again.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub api_base_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub token_url: Option<Option<String>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// What a run did (and, while it runs, how far it is).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncCountsView {
    /// While running: `users`, `groups`, `members` (reading), `apply` (writing); `done` after.
    pub phase: String,
    pub users_read: u64,
    pub groups_read: u64,
    pub users_created: u64,
    pub users_updated: u64,
    /// Suspended or archived in Google.
    pub users_deactivated: u64,
    /// Gone from Google (or from the scope): retained as deleted or erased, as the connection's
    /// `on_delete` policy says.
    pub users_deleted: u64,
    pub groups_created: u64,
    pub groups_updated: u64,
    pub groups_deleted: u64,
    /// Users or groups that could not be written (see `last_error`).
    pub failed: u64,
}

impl From<&SyncCounts> for SyncCountsView {
    fn from(c: &SyncCounts) -> Self {
        SyncCountsView {
            phase: c.phase.clone(),
            users_read: c.users_read,
            groups_read: c.groups_read,
            users_created: c.users_created,
            users_updated: c.users_updated,
            users_deactivated: c.users_deactivated,
            users_deleted: c.users_deleted,
            groups_created: c.groups_created,
            groups_updated: c.groups_updated,
            groups_deleted: c.groups_deleted,
            failed: c.failed,
        }
    }
}

/// How the last run ended.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatusView {
    Succeeded,
    /// The directory was read, but some users or groups could not be written.
    Partial,
    /// The directory could not be read; nothing was changed.
    Failed,
}

/// A directory connection's settings (never its key) and the state of its sync.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DirectorySyncView {
    pub connection_id: String,
    pub customer: String,
    pub admin_email: String,
    /// The service account (from its key).
    pub client_email: String,
    /// The service account's OAuth client id: what the Google admin authorises in Admin console ›
    /// Security › Access and data control › API controls › Domain-wide delegation.
    #[schema(required = true)]
    pub client_id: Option<String>,
    pub scope: ScopeView,
    pub interval_s: i64,
    #[schema(required = true)]
    pub api_base_url: Option<String>,
    #[schema(required = true)]
    pub token_url: Option<String>,
    /// Whether a run is in progress (on any node).
    pub running: bool,
    /// When the run in progress started.
    #[schema(required = true, format = DateTime)]
    pub running_since: Option<String>,
    /// The run in progress's counts.
    #[schema(required = true)]
    pub progress: Option<SyncCountsView>,
    /// When the next run is due (a run asked for with `POST .../sync` is due at once).
    #[schema(format = DateTime)]
    pub next_run_at: String,
    #[schema(required = true, format = DateTime)]
    pub last_started_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub last_finished_at: Option<String>,
    #[schema(required = true)]
    pub last_status: Option<SyncStatusView>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
    pub last_counts: Option<SyncCountsView>,
}

impl DirectorySyncView {
    pub fn new(s: &DirectorySource) -> DirectorySyncView {
        let now = rollcall_store::sqlite::now_us();
        let running = s.running_since_us.is_some() && s.lease_until_us.is_some_and(|u| u >= now);
        DirectorySyncView {
            connection_id: s.connection_id.clone(),
            customer: s.settings.customer.clone(),
            admin_email: s.settings.admin_email.clone(),
            client_email: s.settings.client_email.clone(),
            client_id: s.settings.client_id.clone(),
            scope: (&s.settings.scope).into(),
            interval_s: s.interval_s,
            api_base_url: s.settings.api_base_url.clone(),
            token_url: s.settings.token_url.clone(),
            running,
            running_since: s.running_since_us.filter(|_| running).map(rfc3339),
            progress: s.progress.as_ref().filter(|_| running).map(Into::into),
            next_run_at: rfc3339(s.next_run_us),
            last_started_at: s.last_started_us.map(rfc3339),
            last_finished_at: s.last_finished_us.map(rfc3339),
            last_status: s.last_status.map(|st| match st {
                SyncStatus::Succeeded => SyncStatusView::Succeeded,
                SyncStatus::Partial => SyncStatusView::Partial,
                SyncStatus::Failed => SyncStatusView::Failed,
            }),
            last_error: s.last_error.clone(),
            last_counts: s.last_counts.as_ref().map(Into::into),
        }
    }
}

/// A Google Workspace connection with its settings and sync status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GoogleWorkspaceConnectionView {
    pub connection: ConnectionView,
    pub sync: DirectorySyncView,
}

impl GoogleWorkspaceConnectionView {
    fn new(admin: &Admin, c: &Connection, s: &DirectorySource) -> Self {
        GoogleWorkspaceConnectionView {
            connection: ConnectionView::new(admin, c),
            sync: DirectorySyncView::new(s),
        }
    }
}

fn key_text(v: serde_json::Value) -> String {
    match v {
        // A key pasted as a string of JSON.
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Create a Google Workspace connection: Rollcall reads the customer's users, groups and memberships
/// from the Google Admin SDK Directory API as a service account with domain-wide delegation.
///
/// The Google admin authorises the service account's client id for the scopes
/// `admin.directory.user.readonly`, `admin.directory.group.readonly` and
/// `admin.directory.group.member.readonly` (Admin console › Security › Access and data control ›
/// API controls › Domain-wide delegation). The first sync is due at once, then every `interval_s`.
#[utoipa::path(
    post,
    path = "/organizations/{id}/google-workspace-connections",
    tag = "connections",
    params(("id" = String, Path, description = "Organization id")),
    request_body = CreateGoogleWorkspaceConnection,
    responses(
        (status = 201, description = "Created (no token: nothing calls Rollcall)", body = GoogleWorkspaceConnectionView,
            headers(("Location" = String, description = "The connection's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (a key that is not a service account's, an address, a scope)", body = Problem,
            content_type = "application/problem+json"),
        (status = 500, description = "No secrets key is configured to store the service account key", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn create_google_workspace_connection(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateGoogleWorkspaceConnection>,
) -> ApiResult<(StatusCode, HeaderMap, Json<GoogleWorkspaceConnectionView>)> {
    let (c, s) = admin
        .create_google_workspace_connection(
            &by,
            &org_id,
            GoogleWorkspaceInput {
                name: body.name,
                customer: body.customer,
                admin_email: body.admin_email,
                credentials: key_text(body.credentials),
                scope: body.scope.into(),
                interval_s: body.interval_s,
                api_base_url: body.api_base_url,
                token_url: body.token_url,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        location("connections", &c.id),
        Json(GoogleWorkspaceConnectionView::new(&admin, &c, &s)),
    ))
}

/// Get a Google Workspace connection's settings (never its key) and sync status.
#[utoipa::path(
    get,
    path = "/connections/{id}/google-workspace",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection and its sync", body = GoogleWorkspaceConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A SCIM connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_google_workspace(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<GoogleWorkspaceConnectionView>> {
    let (c, s) = admin.directory_source(&id).await?;
    Ok(Json(GoogleWorkspaceConnectionView::new(&admin, &c, &s)))
}

/// Change a Google Workspace connection's settings or replace its key.
#[utoipa::path(
    patch,
    path = "/connections/{id}/google-workspace",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    request_body = UpdateGoogleWorkspace,
    responses(
        (status = 200, description = "The connection, changed", body = GoogleWorkspaceConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A SCIM connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_google_workspace(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateGoogleWorkspace>,
) -> ApiResult<Json<GoogleWorkspaceConnectionView>> {
    let (c, s) = admin
        .update_google_workspace(
            &by,
            &id,
            GoogleWorkspaceChange {
                customer: body.customer,
                admin_email: body.admin_email,
                credentials: body.credentials.map(key_text),
                scope: body.scope.map(Into::into),
                interval_s: body.interval_s,
                api_base_url: body.api_base_url,
                token_url: body.token_url,
            },
        )
        .await?;
    Ok(Json(GoogleWorkspaceConnectionView::new(&admin, &c, &s)))
}

/// A directory connection's sync status: the run in progress, the last run, the next.
#[utoipa::path(
    get,
    path = "/connections/{id}/sync",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The sync status", body = DirectorySyncView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A SCIM connection (nothing is synced)", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn get_sync(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<DirectorySyncView>> {
    let (_, s) = admin.directory_source(&id).await?;
    Ok(Json(DirectorySyncView::new(&s)))
}

/// Sync a directory connection now: the run starts within moments on a serving node (after the one
/// in progress, if any). Follow it with `GET /connections/{id}/sync`.
#[utoipa::path(
    post,
    path = "/connections/{id}/sync",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 202, description = "Asked for; the sync status", body = DirectorySyncView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A SCIM connection, or a disabled one", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn request_sync(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DirectorySyncView>)> {
    let (_, s) = admin.request_directory_sync(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(DirectorySyncView::new(&s))))
}
