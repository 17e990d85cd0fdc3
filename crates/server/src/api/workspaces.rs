//! Workspaces (`/api/v1/organizations/{id}/workspaces`), the organization's workspace settings
//! (default workspace, a workspace for every group) and per-connection workspace mappings
//! (`/api/v1/connections/{id}/workspace-mappings`), previewed as role mappings are.

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::problem::{ApiProblem, ApiResult, Problem};
use super::roles::UserRefView;
use crate::admin::{Admin, RoleEffect};
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use rollcall_store::{RoleMatch, Workspace, WorkspaceMapping, WorkspaceSettings, WorkspaceUpdate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn location(path: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/{path}")) {
        h.insert(header::LOCATION, v);
    }
    h
}

/// The group a workspace was created for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceGroupView {
    pub connection_id: String,
    /// The group's Rollcall id.
    pub group_id: String,
}

/// A workspace of an organization: IdP groups grant its membership.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceView {
    pub id: String,
    pub org_id: String,
    /// What the application checks; unique in the organization, ignoring case. A workspace created
    /// for a group is keyed `group:<the group's Rollcall id>`.
    #[schema(example = "sales")]
    pub key: String,
    #[schema(example = "Sales")]
    pub name: String,
    /// The group it was created for (the organization's `auto_create` setting); `null` for a
    /// workspace defined through the API.
    #[schema(required = true)]
    pub group: Option<WorkspaceGroupView>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Workspace> for WorkspaceView {
    fn from(w: &Workspace) -> Self {
        WorkspaceView {
            id: w.id.clone(),
            org_id: w.org_id.clone(),
            key: w.key.clone(),
            name: w.name.clone(),
            group: w.group.as_ref().map(|g| WorkspaceGroupView {
                connection_id: g.connection_id.clone(),
                group_id: g.group_id.clone(),
            }),
            created_at: rfc3339(w.created_us),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceList {
    pub data: Vec<WorkspaceView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// 1 to 200 characters.
    #[schema(example = "sales")]
    pub key: String,
    /// Defaults to the key.
    pub name: Option<String>,
}

/// The fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    pub key: Option<String>,
    pub name: Option<String>,
}

/// What grants a mapped workspace: exactly one of the two.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupMatchView {
    /// Membership of the group with this IdP id (its `externalId`) or Rollcall group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Membership of the group with this `displayName` (ignoring case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
}

impl From<&RoleMatch> for GroupMatchView {
    fn from(m: &RoleMatch) -> Self {
        let mut v = GroupMatchView::default();
        match m {
            RoleMatch::GroupId(x) => v.group_id = Some(x.clone()),
            RoleMatch::GroupName(x) | RoleMatch::AppRole(x) => v.group_name = Some(x.clone()),
        }
        v
    }
}

/// The match of a workspace mapping: exactly one of its two fields.
fn match_of(m: GroupMatchView) -> ApiResult<RoleMatch> {
    match (m.group_id, m.group_name) {
        (Some(v), None) => Ok(RoleMatch::GroupId(v)),
        (None, Some(v)) => Ok(RoleMatch::GroupName(v)),
        _ => Err(ApiProblem::new(
            422,
            "match must have exactly one of group_id and group_name",
        )),
    }
}

/// A mapping on a connection from a group to a workspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceMappingView {
    pub id: String,
    pub connection_id: String,
    pub workspace_id: String,
    pub workspace_key: String,
    #[serde(rename = "match")]
    pub matches: GroupMatchView,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&WorkspaceMapping> for WorkspaceMappingView {
    fn from(m: &WorkspaceMapping) -> Self {
        WorkspaceMappingView {
            id: m.id.clone(),
            connection_id: m.connection_id.clone(),
            workspace_id: m.workspace_id.clone(),
            workspace_key: m.workspace_key.clone(),
            matches: GroupMatchView::from(&m.matches),
            created_at: rfc3339(m.created_us),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceMappingList {
    pub data: Vec<WorkspaceMappingView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceMapping {
    /// The workspace, by id or key.
    #[schema(example = "sales")]
    pub workspace: String,
    #[serde(rename = "match")]
    pub matches: GroupMatchView,
}

/// How the members of one workspace would change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceChangeView {
    pub workspace_id: String,
    #[schema(example = "sales")]
    pub workspace_key: String,
    #[schema(example = "Sales")]
    pub workspace_name: String,
    /// How many users would join the workspace.
    #[schema(example = 12)]
    pub gained: i64,
    /// How many users would leave it.
    #[schema(example = 0)]
    pub lost: i64,
    /// The first users (oldest first, at most 20) who would join it.
    pub gained_sample: Vec<UserRefView>,
    /// The first users (oldest first, at most 20) who would leave it.
    pub lost_sample: Vec<UserRefView>,
}

/// What a change to a connection's workspace mappings would do to the effective workspaces of its
/// users, computed without making the change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceEffectView {
    /// The effect in one sentence, by workspace name, for a confirmation prompt.
    #[schema(example = "12 users gain Sales")]
    pub summary: String,
    /// One entry per workspace some user would join or leave, by key; empty when nothing changes.
    pub changes: Vec<WorkspaceChangeView>,
    /// The connection's active users whose workspaces were computed.
    pub users_considered: i64,
}

impl From<&RoleEffect> for WorkspaceEffectView {
    fn from(e: &RoleEffect) -> Self {
        WorkspaceEffectView {
            summary: e.sentence_of("workspaces"),
            changes: e
                .changes
                .iter()
                .map(|c| WorkspaceChangeView {
                    workspace_id: c.role_id.clone(),
                    workspace_key: c.role_key.clone(),
                    workspace_name: c.role_name.clone(),
                    gained: c.gained,
                    lost: c.lost,
                    gained_sample: c.gained_sample.iter().map(UserRefView::from).collect(),
                    lost_sample: c.lost_sample.iter().map(UserRefView::from).collect(),
                })
                .collect(),
            users_considered: e.users_considered,
        }
    }
}

/// An organization's workspace settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceSettingsView {
    /// The key of the workspace every active user of the organization is a member of; `null` for
    /// none.
    #[schema(required = true, example = "everyone")]
    pub default_workspace: Option<String>,
    /// Whether every group a connection of the organization pushes gets a workspace of its own
    /// (keyed `group:<group id>`, named and deleted with the group).
    pub auto_create: bool,
}

impl From<&WorkspaceSettings> for WorkspaceSettingsView {
    fn from(s: &WorkspaceSettings) -> Self {
        WorkspaceSettingsView {
            default_workspace: s.default_workspace_key.clone(),
            auto_create: s.auto_create,
        }
    }
}

/// New workspace settings. A PUT replaces both: each field is required (`default_workspace` may be
/// `null`), so that a field left out is refused rather than reset.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWorkspaceSettings {
    /// The default workspace, by id or key; `null` for none.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub default_workspace: Option<String>,
    pub auto_create: bool,
}

// --- workspaces ------------------------------------------------------------------------------------

/// Define a workspace for an organization.
#[utoipa::path(post, path = "/organizations/{id}/workspaces", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id")),
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "Created", body = WorkspaceView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_workspace(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateWorkspace>,
) -> ApiResult<(StatusCode, HeaderMap, Json<WorkspaceView>)> {
    let ws = admin
        .create_workspace(&by, &org_id, &body.key, body.name.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        location(&format!("organizations/{}/workspaces/{}", ws.org_id, ws.id)),
        Json(WorkspaceView::from(&ws)),
    ))
}

/// List an organization's workspaces, by key.
#[utoipa::path(get, path = "/organizations/{id}/workspaces", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The workspaces", body = WorkspaceList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_workspaces(State(admin): State<Admin>, Path(org_id): Path<String>) -> ApiResult<Json<WorkspaceList>> {
    let list = admin.list_workspaces(&org_id).await?;
    Ok(Json(WorkspaceList {
        data: list.iter().map(WorkspaceView::from).collect(),
    }))
}

/// Get a workspace by id or key.
#[utoipa::path(get, path = "/organizations/{id}/workspaces/{workspace}", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id"), ("workspace" = String, Path, description = "Workspace id or key")),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or workspace", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_workspace(
    State(admin): State<Admin>,
    Path((org_id, workspace)): Path<(String, String)>,
) -> ApiResult<Json<WorkspaceView>> {
    let ws = admin.workspace(&org_id, &workspace).await?;
    Ok(Json(WorkspaceView::from(&ws)))
}

/// Change a workspace's key or name. Its members stay; their next `user.workspaces_changed` names
/// the new key.
#[utoipa::path(patch, path = "/organizations/{id}/workspaces/{workspace}", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id"), ("workspace" = String, Path, description = "Workspace id or key")),
    request_body = UpdateWorkspace,
    responses(
        (status = 200, description = "The workspace, changed", body = WorkspaceView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or workspace", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_workspace(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, workspace)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateWorkspace>,
) -> ApiResult<Json<WorkspaceView>> {
    let ws = admin
        .update_workspace(
            &by,
            &org_id,
            &workspace,
            WorkspaceUpdate {
                key: body.key,
                name: body.name,
            },
        )
        .await?;
    Ok(Json(WorkspaceView::from(&ws)))
}

/// Delete a workspace with its mappings; its members leave it (with their events).
#[utoipa::path(delete, path = "/organizations/{id}/workspaces/{workspace}", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id"), ("workspace" = String, Path, description = "Workspace id or key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or workspace", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_workspace(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, workspace)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.delete_workspace(&by, &org_id, &workspace).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organization's default workspace and whether every pushed group gets a workspace.
#[utoipa::path(get, path = "/organizations/{id}/workspace-settings", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The settings", body = WorkspaceSettingsView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_workspace_settings(
    State(admin): State<Admin>,
    Path(org_id): Path<String>,
) -> ApiResult<Json<WorkspaceSettingsView>> {
    let s = admin.workspace_settings(&org_id).await?;
    Ok(Json(WorkspaceSettingsView::from(&s)))
}

/// Replace the organization's workspace settings. A new default workspace, or turning
/// `auto_create` on (which creates a workspace for every live group), recomputes every user's
/// workspaces in the same transaction; turning it off creates no more and keeps those created.
#[utoipa::path(put, path = "/organizations/{id}/workspace-settings", tag = "workspaces",
    params(("id" = String, Path, description = "Organization id")),
    request_body = SetWorkspaceSettings,
    responses(
        (status = 200, description = "The settings, replaced", body = WorkspaceSettingsView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown workspace, missing or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_workspace_settings(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<SetWorkspaceSettings>,
) -> ApiResult<Json<WorkspaceSettingsView>> {
    let s = admin
        .set_workspace_settings(
            &by,
            &org_id,
            Some(body.default_workspace.as_deref()),
            Some(body.auto_create),
        )
        .await?;
    Ok(Json(WorkspaceSettingsView::from(&s)))
}

// --- per connection ----------------------------------------------------------------------------------

/// Map an IdP group (by id or name) to a workspace on a connection.
///
/// The users it affects get their effective workspaces recomputed in the same transaction.
#[utoipa::path(post, path = "/connections/{id}/workspace-mappings", tag = "workspaces",
    params(("id" = String, Path, description = "Connection id")),
    request_body = CreateWorkspaceMapping,
    responses(
        (status = 201, description = "Created", body = WorkspaceMappingView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mapping exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown workspace, not exactly one match, or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_workspace_mapping(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<CreateWorkspaceMapping>,
) -> ApiResult<(StatusCode, Json<WorkspaceMappingView>)> {
    let matches = match_of(body.matches)?;
    let mapping = admin
        .create_workspace_mapping(&by, &connection_id, &body.workspace, matches)
        .await?;
    Ok((StatusCode::CREATED, Json(WorkspaceMappingView::from(&mapping))))
}

/// Preview a workspace mapping: what creating it would do to the connection's users, without
/// creating it. Refused exactly as the creation would be. Nothing is written.
#[utoipa::path(post, path = "/connections/{id}/workspace-mappings/preview", tag = "workspaces",
    params(("id" = String, Path, description = "Connection id")),
    request_body = CreateWorkspaceMapping,
    responses(
        (status = 200, description = "The effect the mapping would have", body = WorkspaceEffectView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mapping exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown workspace, not exactly one match, or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn preview_workspace_mapping(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<CreateWorkspaceMapping>,
) -> ApiResult<Json<WorkspaceEffectView>> {
    let matches = match_of(body.matches)?;
    let effect = admin
        .preview_workspace_mapping(&connection_id, &body.workspace, matches)
        .await?;
    Ok(Json(WorkspaceEffectView::from(&effect)))
}

/// Preview deleting a workspace mapping, without deleting it.
#[utoipa::path(post, path = "/connections/{id}/workspace-mappings/{mapping}/preview-removal", tag = "workspaces",
    params(("id" = String, Path, description = "Connection id"), ("mapping" = String, Path, description = "Mapping id")),
    responses(
        (status = 200, description = "The effect deleting the mapping would have", body = WorkspaceEffectView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection or mapping", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn preview_workspace_mapping_removal(
    State(admin): State<Admin>,
    Path((connection_id, mapping)): Path<(String, String)>,
) -> ApiResult<Json<WorkspaceEffectView>> {
    let effect = admin
        .preview_workspace_mapping_removal(&connection_id, &mapping)
        .await?;
    Ok(Json(WorkspaceEffectView::from(&effect)))
}

/// List a connection's workspace mappings.
#[utoipa::path(get, path = "/connections/{id}/workspace-mappings", tag = "workspaces",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The mappings, oldest first", body = WorkspaceMappingList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_workspace_mappings(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<WorkspaceMappingList>> {
    let list = admin.list_workspace_mappings(&connection_id).await?;
    Ok(Json(WorkspaceMappingList {
        data: list.iter().map(WorkspaceMappingView::from).collect(),
    }))
}

/// Delete a workspace mapping; users leave what it granted.
#[utoipa::path(delete, path = "/connections/{id}/workspace-mappings/{mapping}", tag = "workspaces",
    params(("id" = String, Path, description = "Connection id"), ("mapping" = String, Path, description = "Mapping id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection or mapping", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_workspace_mapping(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((connection_id, mapping)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.delete_workspace_mapping(&by, &connection_id, &mapping).await?;
    Ok(StatusCode::NO_CONTENT)
}
