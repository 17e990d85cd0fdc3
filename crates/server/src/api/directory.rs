//! The directory, read-only for the application: `/api/v1/organizations/{id}/users`, `/groups`, and
//! the sign-in access check `/access`.

use super::extract::{query_pairs, query_param};
use super::paging::{self, kinds};
use super::problem::{ApiProblem, ApiResult, Problem};
use crate::admin::{Admin, Profiles, UserLookup};
use crate::service::{Scim, rfc3339};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use rollcall_store::cursor;
use rollcall_store::{
    Connection, DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, GroupRef, UserStatus,
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

fn text_param(pairs: &[(String, String)], name: &str) -> Option<String> {
    query_param(pairs, name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A `true`/`false` query parameter (absent: false).
fn bool_param(pairs: &[(String, String)], name: &str) -> Result<bool, ApiProblem> {
    match text_param(pairs, name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiProblem::new(
            400,
            format!("{name}: expected true or false, not \"{other}\""),
        )),
    }
}

/// A user's status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusView {
    Active,
    Deactivated,
    Deleted,
}

impl From<UserStatus> for StatusView {
    fn from(s: UserStatus) -> Self {
        match s {
            UserStatus::Active => StatusView::Active,
            UserStatus::Deactivated => StatusView::Deactivated,
            UserStatus::Deleted => StatusView::Deleted,
        }
    }
}

/// A group a user is a direct member of.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupRefView {
    pub id: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
}

impl From<&GroupRef> for GroupRefView {
    fn from(g: &GroupRef) -> Self {
        GroupRefView {
            id: g.id.clone(),
            display_name: g.display_name.clone(),
        }
    }
}

/// A user provisioned into the organization by one of its SCIM connections.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// The SCIM id.
    pub id: String,
    pub connection_id: String,
    #[schema(required = true)]
    pub external_id: Option<String>,
    #[schema(required = true)]
    pub user_name: Option<String>,
    pub status: StatusView,
    /// Flat profile, per the connection's profile mapping (missing attributes are `null`).
    #[schema(value_type = Object)]
    pub profile: Map<String, Value>,
    /// Effective role keys, sorted. Empty unless the user is active.
    pub roles: Vec<String>,
    /// Effective workspace keys, sorted. Empty unless the user is active.
    pub workspaces: Vec<String>,
    /// The groups it is a direct member of (single-user reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupRefView>>,
    /// The full SCIM document (single-user reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(required = true, format = DateTime)]
    pub deleted_at: Option<String>,
}

impl UserView {
    pub fn new(u: &DirectoryUser, profiles: &mut Profiles, connections: &[Connection], full: bool) -> UserView {
        UserView {
            id: u.id.clone(),
            connection_id: u.connection_id.clone(),
            external_id: u.external_id.clone(),
            user_name: u.doc.get("userName").and_then(Value::as_str).map(str::to_string),
            status: u.status.into(),
            profile: profiles.profile(connections, u),
            roles: u.roles.clone(),
            workspaces: u.workspaces.clone(),
            groups: u.groups.as_ref().map(|g| g.iter().map(GroupRefView::from).collect()),
            attributes: full.then(|| u.doc.clone()),
            created_at: rfc3339(u.created_us),
            updated_at: rfc3339(u.modified_us),
            deleted_at: u.deleted_us.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserList {
    pub data: Vec<UserView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Filters and paging of the user list; all filters are exact (e-mail address, userName, role and
/// workspace ignore case).
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UserListParams {
    /// `active`, `deactivated` or `deleted`.
    status: Option<String>,
    connection_id: Option<String>,
    email: Option<String>,
    user_name: Option<String>,
    external_id: Option<String>,
    /// Users with this effective role (key).
    role: Option<String>,
    /// Members of this workspace (key).
    workspace: Option<String>,
    /// Direct members of this group (id).
    group_id: Option<String>,
    /// `true`: also the users of connections in staging (left out by default, as from the access
    /// check; docs/go-live.md).
    include_staging: Option<bool>,
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// A group of the organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupView {
    pub id: String,
    pub connection_id: String,
    #[schema(required = true)]
    pub external_id: Option<String>,
    #[schema(required = true)]
    pub display_name: Option<String>,
    pub member_count: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&DirectoryGroup> for GroupView {
    fn from(g: &DirectoryGroup) -> Self {
        GroupView {
            id: g.id.clone(),
            connection_id: g.connection_id.clone(),
            external_id: g.external_id.clone(),
            display_name: g.display_name.clone(),
            member_count: g.member_count,
            created_at: rfc3339(g.created_us),
            updated_at: rfc3339(g.modified_us),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupList {
    pub data: Vec<GroupView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Filters and paging of the group list.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct GroupListParams {
    connection_id: Option<String>,
    /// Ignoring case.
    display_name: Option<String>,
    external_id: Option<String>,
    /// `true`: also the groups of connections in staging (left out by default).
    include_staging: Option<bool>,
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// A member of a group: a user or a group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    pub id: String,
    /// `User` or `Group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// userName of a user, displayName of a group.
    #[schema(required = true)]
    pub name: Option<String>,
    /// A user's status; `null` for a group.
    #[schema(required = true)]
    pub status: Option<StatusView>,
}

impl From<&DirectoryMember> for MemberView {
    fn from(m: &DirectoryMember) -> Self {
        MemberView {
            id: m.id.clone(),
            kind: m.kind.clone(),
            name: m.name.clone(),
            status: m.status.map(Into::into),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Paging.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CursorParams {
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Which user to check: exactly one.
#[derive(Debug, Clone, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AccessParams {
    user_id: Option<String>,
    /// Ignoring case.
    email: Option<String>,
    /// Ignoring case.
    user_name: Option<String>,
    external_id: Option<String>,
    /// Just-in-time provisioning: ids of the organization's provisioning targets the user must be
    /// on before the answer (comma-separated, or the parameter repeated; at most 10). Only for a
    /// user who is allowed; the answer's `provisioning` says how each went.
    provision: Option<String>,
    /// How long the check may wait for `provision`, in milliseconds (0–10000, default 5000). A
    /// push not done by then answers `pending` and goes on.
    wait_ms: Option<u32>,
}

/// Longest wait of a just-in-time access check, in milliseconds.
const MAX_JIT_WAIT_MS: u64 = 10_000;
/// The wait when `wait_ms` is not given.
const DEFAULT_JIT_WAIT_MS: u64 = 5_000;

/// Where the user stands on one provisioning target after a just-in-time access check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProvisioningView {
    pub target_id: String,
    /// `synced` (on the target, up to date), `pending` (asked for; not done when the wait ended:
    /// the push goes on), `failed` (see `error`; tried again on its own), `not_in_scope`,
    /// `not_approved` (the target's first push waits for approval) or `target_paused`.
    pub status: String,
    /// The user's id on the target, once there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a user may sign in, and with which roles and workspaces.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccessView {
    /// True only for an active user that is not deleted.
    pub allowed: bool,
    /// `active`, `deactivated`, `deleted` or `unknown_user`.
    pub reason: String,
    #[schema(required = true)]
    pub user_id: Option<String>,
    #[schema(required = true)]
    pub connection_id: Option<String>,
    /// Effective role keys; empty unless allowed.
    pub roles: Vec<String>,
    /// Effective workspace keys; empty unless allowed.
    pub workspaces: Vec<String>,
    /// With `provision` only: one entry per target asked for (empty unless allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Vec<ProvisioningView>>,
}

/// List the organization's users (from all its connections), a page at a time.
#[utoipa::path(get, path = "/organizations/{id}/users", tag = "directory",
    params(("id" = String, Path, description = "Organization id"), UserListParams),
    responses(
        (status = 200, description = "A page of users, in provisioning order", body = UserList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_users(
    State(admin): State<Admin>,
    State(scim): State<Scim>,
    Path(org_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<UserList>> {
    let pairs = query_pairs(raw.as_deref());
    let status = match text_param(&pairs, "status") {
        None => None,
        Some(s) => Some(
            s.parse::<UserStatus>()
                .map_err(|e| ApiProblem::new(400, format!("status: {e}")))?,
        ),
    };
    let query = DirectoryQuery {
        connection_id: text_param(&pairs, "connection_id"),
        status,
        id: None,
        email: text_param(&pairs, "email"),
        user_name: text_param(&pairs, "user_name"),
        external_id: text_param(&pairs, "external_id"),
        role: text_param(&pairs, "role"),
        workspace: text_param(&pairs, "workspace"),
        group_id: text_param(&pairs, "group_id"),
        include_staging: bool_param(&pairs, "include_staging")?,
        after_pk: paging::number_cursor(&pairs, "cursor", kinds::USERS)?.unwrap_or(0),
        limit: paging::limit(&pairs)?,
    };
    let page = admin.directory_users(&org_id, query).await?;
    let (connections, mut profiles) = admin.profiles(scim.registry.clone(), &org_id).await?;
    Ok(Json(UserList {
        data: page
            .items
            .iter()
            .map(|u| UserView::new(u, &mut profiles, &connections, false))
            .collect(),
        next_cursor: page.next_after.map(|pk| cursor::encode_number(kinds::USERS, pk)),
    }))
}

/// Get a user with its groups, effective roles, profile and SCIM attributes.
#[utoipa::path(get, path = "/organizations/{id}/users/{user_id}", tag = "directory",
    params(("id" = String, Path, description = "Organization id"), ("user_id" = String, Path, description = "User id (SCIM id)")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_user(
    State(admin): State<Admin>,
    State(scim): State<Scim>,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<UserView>> {
    let user = admin.directory_user(&org_id, &user_id).await?;
    let (connections, mut profiles) = admin.profiles(scim.registry.clone(), &org_id).await?;
    Ok(Json(UserView::new(&user, &mut profiles, &connections, true)))
}

/// List the organization's groups with their member counts, a page at a time.
#[utoipa::path(get, path = "/organizations/{id}/groups", tag = "directory",
    params(("id" = String, Path, description = "Organization id"), GroupListParams),
    responses(
        (status = 200, description = "A page of groups", body = GroupList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_groups(
    State(admin): State<Admin>,
    Path(org_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<GroupList>> {
    let pairs = query_pairs(raw.as_deref());
    let query = GroupQuery {
        connection_id: text_param(&pairs, "connection_id"),
        id: None,
        display_name: text_param(&pairs, "display_name"),
        external_id: text_param(&pairs, "external_id"),
        include_staging: bool_param(&pairs, "include_staging")?,
        after_pk: paging::number_cursor(&pairs, "cursor", kinds::GROUPS)?.unwrap_or(0),
        limit: paging::limit(&pairs)?,
    };
    let page = admin.directory_groups(&org_id, query).await?;
    Ok(Json(GroupList {
        data: page.items.iter().map(GroupView::from).collect(),
        next_cursor: page.next_after.map(|pk| cursor::encode_number(kinds::GROUPS, pk)),
    }))
}

/// Get a group with its member count.
#[utoipa::path(get, path = "/organizations/{id}/groups/{group_id}", tag = "directory",
    params(("id" = String, Path, description = "Organization id"), ("group_id" = String, Path, description = "Group id (SCIM id)")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or group", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_group(
    State(admin): State<Admin>,
    Path((org_id, group_id)): Path<(String, String)>,
) -> ApiResult<Json<GroupView>> {
    let g = admin.directory_group(&org_id, &group_id).await?;
    Ok(Json(GroupView::from(&g)))
}

/// List a group's members, a page at a time.
#[utoipa::path(get, path = "/organizations/{id}/groups/{group_id}/members", tag = "directory",
    params(("id" = String, Path, description = "Organization id"), ("group_id" = String, Path, description = "Group id (SCIM id)"), CursorParams),
    responses(
        (status = 200, description = "A page of members", body = MemberList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or group", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_group_members(
    State(admin): State<Admin>,
    Path((org_id, group_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<MemberList>> {
    let pairs = query_pairs(raw.as_deref());
    let after = paging::number_cursor(&pairs, "cursor", kinds::MEMBERS)?.unwrap_or(0);
    let limit = paging::limit(&pairs)?;
    let page = admin.directory_group_members(&org_id, &group_id, after, limit).await?;
    Ok(Json(MemberList {
        data: page.items.iter().map(MemberView::from).collect(),
        next_cursor: page.next_after.map(|pk| cursor::encode_number(kinds::MEMBERS, pk)),
    }))
}

/// May this user sign in, with which roles and in which workspaces? The call to make at sign-in:
/// one indexed query.
#[utoipa::path(get, path = "/organizations/{id}/access", tag = "directory",
    params(("id" = String, Path, description = "Organization id"), AccessParams),
    responses(
        (status = 200, description = "The decision", body = AccessView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Not exactly one of user_id, email, user_name, external_id; or a bad provision or wait_ms", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn access(
    State(admin): State<Admin>,
    Path(org_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<AccessView>> {
    let pairs = query_pairs(raw.as_deref());
    let given: Vec<UserLookup> = [
        text_param(&pairs, "user_id").map(UserLookup::Id),
        text_param(&pairs, "email").map(UserLookup::Email),
        text_param(&pairs, "user_name").map(UserLookup::UserName),
        text_param(&pairs, "external_id").map(UserLookup::ExternalId),
    ]
    .into_iter()
    .flatten()
    .collect();
    let [lookup] = <[UserLookup; 1]>::try_from(given).map_err(|_| {
        ApiProblem::new(
            400,
            "give exactly one of the query parameters user_id, email, user_name and external_id",
        )
    })?;
    let targets: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "provision")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if pairs.iter().any(|(k, _)| k == "provision") && targets.is_empty() {
        return Err(ApiProblem::new(
            400,
            "provision: give one or more provisioning target ids",
        ));
    }
    let wait_ms = match text_param(&pairs, "wait_ms") {
        None => DEFAULT_JIT_WAIT_MS,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= MAX_JIT_WAIT_MS)
            .ok_or_else(|| {
                ApiProblem::new(
                    400,
                    format!(
                        "wait_ms: expected a whole number of milliseconds from 0 to {MAX_JIT_WAIT_MS}, not \"{v}\""
                    ),
                )
            })?,
    };
    let a = admin.access(&org_id, lookup).await?;
    let provisioning = if targets.is_empty() {
        None
    } else {
        let user_id = a.user.as_ref().filter(|_| a.allowed).map(|u| u.id.as_str());
        let outcomes = admin
            .provision_for_access(&org_id, user_id, &targets, std::time::Duration::from_millis(wait_ms))
            .await?;
        Some(
            outcomes
                .into_iter()
                .map(|o| ProvisioningView {
                    target_id: o.target_id,
                    status: serde_json::to_value(o.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    remote_id: o.remote_id,
                    error: o.error,
                })
                .collect(),
        )
    };
    Ok(Json(AccessView {
        provisioning,
        allowed: a.allowed,
        reason: a.reason.to_string(),
        user_id: a.user.as_ref().map(|u| u.id.clone()),
        connection_id: a.user.as_ref().map(|u| u.connection_id.clone()),
        roles: a.roles,
        workspaces: a.workspaces,
    }))
}
