//! Roles (`/api/v1/organizations/{id}/roles`), protected users, and per-connection role mappings,
//! default roles and attribute policy (`/api/v1/connections/{id}/...`).

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::problem::{ApiProblem, ApiResult, Problem};
use crate::admin::{Admin, RoleEffect};
use crate::service::{Scim, rfc3339};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use rollcall_store::{ConnectionPolicy, OnDelete, ProtectedUser, Role, RoleMapping, RoleMatch, RoleUpdate, UserRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

fn location(path: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/{path}")) {
        h.insert(header::LOCATION, v);
    }
    h
}

/// A role the application defines for an organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleView {
    pub id: String,
    pub org_id: String,
    /// What the application checks; unique in the organization, ignoring case. A role keyed
    /// `scim:<group name>` is granted to the members of the IdP group of that name without a mapping.
    #[schema(example = "scim:Engineering")]
    pub key: String,
    #[schema(example = "Engineering")]
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        RoleView {
            id: r.id.clone(),
            org_id: r.org_id.clone(),
            key: r.key.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            created_at: rfc3339(r.created_us),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleList {
    pub data: Vec<RoleView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// 1 to 200 characters.
    #[schema(example = "admin")]
    pub key: String,
    /// Defaults to the key.
    pub name: Option<String>,
    pub description: Option<String>,
}

/// The fields to change; absent fields stay as they are (`description: null` clears it).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub key: Option<String>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "serde_with_double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub(crate) mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// What grants a mapped role: exactly one of the three.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchView {
    /// Membership of the group with this IdP id (its `externalId`, as Entra and Okta send it) or
    /// Rollcall group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Membership of the group with this `displayName` (ignoring case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// This value in the user's `roles` attribute: Entra ID sends app role assignments there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role: Option<String>,
}

impl From<&RoleMatch> for MatchView {
    fn from(m: &RoleMatch) -> Self {
        let mut v = MatchView::default();
        match m {
            RoleMatch::GroupId(x) => v.group_id = Some(x.clone()),
            RoleMatch::GroupName(x) => v.group_name = Some(x.clone()),
            RoleMatch::AppRole(x) => v.app_role = Some(x.clone()),
        }
        v
    }
}

/// A mapping on a connection from a group or app role to a role.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleMappingView {
    pub id: String,
    pub connection_id: String,
    pub role_id: String,
    pub role_key: String,
    #[serde(rename = "match")]
    pub matches: MatchView,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&RoleMapping> for RoleMappingView {
    fn from(m: &RoleMapping) -> Self {
        RoleMappingView {
            id: m.id.clone(),
            connection_id: m.connection_id.clone(),
            role_id: m.role_id.clone(),
            role_key: m.role_key.clone(),
            matches: MatchView::from(&m.matches),
            created_at: rfc3339(m.created_us),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleMappingList {
    pub data: Vec<RoleMappingView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleMapping {
    /// The role, by id or key.
    #[schema(example = "admin")]
    pub role: String,
    #[serde(rename = "match")]
    pub matches: MatchView,
}

/// A connection's default roles: every active user it provisions has them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DefaultRoles {
    pub data: Vec<RoleView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDefaultRoles {
    /// Roles by id or key; replaces the current list.
    pub roles: Vec<String>,
}

/// A user named in a preview.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserRefView {
    /// The user's Rollcall id.
    pub id: String,
    #[schema(required = true, example = "ada@acme.example")]
    pub user_name: Option<String>,
    /// Its primary e-mail address, else its first.
    #[schema(required = true, example = "ada@acme.example")]
    pub email: Option<String>,
}

impl From<&UserRef> for UserRefView {
    fn from(u: &UserRef) -> Self {
        UserRefView {
            id: u.id.clone(),
            user_name: u.user_name.clone(),
            email: u.email.clone(),
        }
    }
}

/// How the holders of one role would change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleChangeView {
    pub role_id: String,
    #[schema(example = "admin")]
    pub role_key: String,
    #[schema(example = "Administrator")]
    pub role_name: String,
    /// How many users would gain the role.
    #[schema(example = 12)]
    pub gained: i64,
    /// How many users would lose it.
    #[schema(example = 0)]
    pub lost: i64,
    /// The first users (oldest first, at most 20) who would gain it.
    pub gained_sample: Vec<UserRefView>,
    /// The first users (oldest first, at most 20) who would lose it.
    pub lost_sample: Vec<UserRefView>,
}

/// What a change to a connection's role mappings or default roles would do to the effective roles
/// of its users, computed without making the change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleEffectView {
    /// The effect in one sentence, by role name, for a confirmation prompt.
    #[schema(example = "12 users gain Administrator, 3 users lose Viewer")]
    pub summary: String,
    /// One entry per role some user would gain or lose, by role key; empty when nothing changes.
    pub changes: Vec<RoleChangeView>,
    /// The connection's active users whose roles were computed (deactivated and deleted users hold
    /// no roles).
    pub users_considered: i64,
}

impl From<&RoleEffect> for RoleEffectView {
    fn from(e: &RoleEffect) -> Self {
        RoleEffectView {
            summary: e.sentence(),
            changes: e
                .changes
                .iter()
                .map(|c| RoleChangeView {
                    role_id: c.role_id.clone(),
                    role_key: c.role_key.clone(),
                    role_name: c.role_name.clone(),
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

/// What happens when the identity provider deletes a user.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnDeleteView {
    /// The directory keeps the user, with status `deleted` and no roles (default).
    Retain,
    /// The user's record and attributes are erased; only its events remain.
    Purge,
}

/// A connection's attribute and lifecycle policy for users. Attribute paths are SCIM paths such as
/// `userName`, `name.givenName`, `emails` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`. A PUT replaces the whole
/// policy: every field is required (`null` where allowed), so that a field left out is refused
/// rather than reset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyView {
    /// A create or replace without one of these is refused (400 naming it); a PATCH may not remove one.
    pub required_attributes: Vec<String>,
    /// When set, only these attributes (plus `userName`, `active` and `externalId`) are kept;
    /// `null` keeps every attribute.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub synced_attributes: Option<Vec<String>>,
    /// Profile key → attribute path, for the directory's flat `profile`; `null` for the default
    /// profile (user_name, display_name, given_name, family_name, email, phone_number, title, locale,
    /// department, employee_number, manager_id, organization).
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub profile_mapping: Option<BTreeMap<String, String>>,
    /// `retain` (the default of a new connection) or `purge`.
    pub on_delete: OnDeleteView,
}

/// The fields of a policy, each required by a PUT.
const POLICY_FIELDS: [&str; 4] = [
    "required_attributes",
    "synced_attributes",
    "profile_mapping",
    "on_delete",
];

impl From<&ConnectionPolicy> for PolicyView {
    fn from(p: &ConnectionPolicy) -> Self {
        PolicyView {
            required_attributes: p.required_attributes.clone(),
            synced_attributes: p.synced_attributes.clone(),
            profile_mapping: p.profile_mapping.clone(),
            on_delete: match p.on_delete {
                OnDelete::Retain => OnDeleteView::Retain,
                OnDelete::Purge => OnDeleteView::Purge,
            },
        }
    }
}

impl From<PolicyView> for ConnectionPolicy {
    fn from(p: PolicyView) -> Self {
        ConnectionPolicy {
            required_attributes: p.required_attributes,
            synced_attributes: p.synced_attributes,
            profile_mapping: p.profile_mapping,
            on_delete: match p.on_delete {
                OnDeleteView::Retain => OnDelete::Retain,
                OnDeleteView::Purge => OnDelete::Purge,
            },
        }
    }
}

/// A user SCIM may not deactivate or delete (a break-glass administrator).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProtectedUserView {
    /// Matched against the user's e-mail addresses and userName, ignoring case.
    #[schema(example = "root@acme.example")]
    pub email: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&ProtectedUser> for ProtectedUserView {
    fn from(p: &ProtectedUser) -> Self {
        ProtectedUserView {
            email: p.email.clone(),
            created_at: rfc3339(p.created_us),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProtectedUserList {
    pub data: Vec<ProtectedUserView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddProtectedUser {
    pub email: String,
}

// --- roles -----------------------------------------------------------------------------------------

/// Define a role for an organization.
#[utoipa::path(post, path = "/organizations/{id}/roles", tag = "roles",
    params(("id" = String, Path, description = "Organization id")),
    request_body = CreateRole,
    responses(
        (status = 201, description = "Created", body = RoleView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_role(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateRole>,
) -> ApiResult<(StatusCode, HeaderMap, Json<RoleView>)> {
    let role = admin
        .create_role(
            &by,
            &org_id,
            &body.key,
            body.name.as_deref(),
            body.description.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        location(&format!("organizations/{}/roles/{}", role.org_id, role.id)),
        Json(RoleView::from(&role)),
    ))
}

/// List an organization's roles, by key.
#[utoipa::path(get, path = "/organizations/{id}/roles", tag = "roles",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The roles", body = RoleList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_roles(State(admin): State<Admin>, Path(org_id): Path<String>) -> ApiResult<Json<RoleList>> {
    let roles = admin.list_roles(&org_id).await?;
    Ok(Json(RoleList {
        data: roles.iter().map(RoleView::from).collect(),
    }))
}

/// Get a role by id or key.
#[utoipa::path(get, path = "/organizations/{id}/roles/{role}", tag = "roles",
    params(("id" = String, Path, description = "Organization id"), ("role" = String, Path, description = "Role id or key")),
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_role(
    State(admin): State<Admin>,
    Path((org_id, role)): Path<(String, String)>,
) -> ApiResult<Json<RoleView>> {
    let role = admin.role(&org_id, &role).await?;
    Ok(Json(RoleView::from(&role)))
}

/// Change a role. Changing a `scim:` key recomputes who has it.
#[utoipa::path(patch, path = "/organizations/{id}/roles/{role}", tag = "roles",
    params(("id" = String, Path, description = "Organization id"), ("role" = String, Path, description = "Role id or key")),
    request_body = UpdateRole,
    responses(
        (status = 200, description = "The role, changed", body = RoleView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_role(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, role)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateRole>,
) -> ApiResult<Json<RoleView>> {
    let role = admin
        .update_role(
            &by,
            &org_id,
            &role,
            RoleUpdate {
                key: body.key,
                name: body.name,
                description: body.description,
            },
        )
        .await?;
    Ok(Json(RoleView::from(&role)))
}

/// Delete a role with its mappings; users who had it lose it.
#[utoipa::path(delete, path = "/organizations/{id}/roles/{role}", tag = "roles",
    params(("id" = String, Path, description = "Organization id"), ("role" = String, Path, description = "Role id or key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_role(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, role)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.delete_role(&by, &org_id, &role).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- protected users ---------------------------------------------------------------------------------

/// Protect a user from deactivation and deletion by SCIM.
///
/// SCIM requests that would deactivate or delete a user with this e-mail address or userName get
/// 403 and are recorded as `user.protected_change_refused` events.
#[utoipa::path(post, path = "/organizations/{id}/protected-users", tag = "roles",
    params(("id" = String, Path, description = "Organization id")),
    request_body = AddProtectedUser,
    responses(
        (status = 201, description = "Protected", body = ProtectedUserView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already protected", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_protected_user(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<AddProtectedUser>,
) -> ApiResult<(StatusCode, Json<ProtectedUserView>)> {
    let p = admin.add_protected_user(&by, &org_id, &body.email).await?;
    Ok((StatusCode::CREATED, Json(ProtectedUserView::from(&p))))
}

/// List an organization's protected users.
#[utoipa::path(get, path = "/organizations/{id}/protected-users", tag = "roles",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The protected users", body = ProtectedUserList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_protected_users(
    State(admin): State<Admin>,
    Path(org_id): Path<String>,
) -> ApiResult<Json<ProtectedUserList>> {
    let list = admin.list_protected_users(&org_id).await?;
    Ok(Json(ProtectedUserList {
        data: list.iter().map(ProtectedUserView::from).collect(),
    }))
}

/// Remove a protection.
#[utoipa::path(delete, path = "/organizations/{id}/protected-users/{email}", tag = "roles",
    params(("id" = String, Path, description = "Organization id"), ("email" = String, Path, description = "The protected e-mail address or userName")),
    responses(
        (status = 204, description = "No longer protected"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization or protected user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_protected_user(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, email)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.remove_protected_user(&by, &org_id, &email).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- per connection ----------------------------------------------------------------------------------

/// Map an IdP group (by id or name) or an Entra app role to a role on a connection.
///
/// The users it affects get their effective roles recomputed in the same transaction.
#[utoipa::path(post, path = "/connections/{id}/role-mappings", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    request_body = CreateRoleMapping,
    responses(
        (status = 201, description = "Created", body = RoleMappingView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mapping exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown role, not exactly one match, or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_role_mapping(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<CreateRoleMapping>,
) -> ApiResult<(StatusCode, Json<RoleMappingView>)> {
    let matches = match_of(body.matches)?;
    let mapping = admin
        .create_role_mapping(&by, &connection_id, &body.role, matches)
        .await?;
    Ok((StatusCode::CREATED, Json(RoleMappingView::from(&mapping))))
}

/// The match of a mapping: exactly one of its three fields.
fn match_of(m: MatchView) -> ApiResult<RoleMatch> {
    match (m.group_id, m.group_name, m.app_role) {
        (Some(v), None, None) => Ok(RoleMatch::GroupId(v)),
        (None, Some(v), None) => Ok(RoleMatch::GroupName(v)),
        (None, None, Some(v)) => Ok(RoleMatch::AppRole(v)),
        _ => Err(ApiProblem::new(
            422,
            "match must have exactly one of group_id, group_name and app_role",
        )),
    }
}

/// Preview a role mapping: what creating it would do to the connection's users, without creating it.
///
/// Takes the body of `POST /connections/{id}/role-mappings` and answers, per role, how many users
/// would gain or lose it and the first of them, with the effect in one sentence for a confirmation
/// prompt. Refused exactly as the creation would be (unknown role, duplicate mapping, ...).
/// Nothing is written.
#[utoipa::path(post, path = "/connections/{id}/role-mappings/preview", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    request_body = CreateRoleMapping,
    responses(
        (status = 200, description = "The effect the mapping would have", body = RoleEffectView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The mapping exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown role, not exactly one match, or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn preview_role_mapping(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<CreateRoleMapping>,
) -> ApiResult<Json<RoleEffectView>> {
    let matches = match_of(body.matches)?;
    let effect = admin.preview_role_mapping(&connection_id, &body.role, matches).await?;
    Ok(Json(RoleEffectView::from(&effect)))
}

/// Preview deleting a role mapping: what it would do to the connection's users, without deleting it.
#[utoipa::path(post, path = "/connections/{id}/role-mappings/{mapping}/preview-removal", tag = "roles",
    params(("id" = String, Path, description = "Connection id"), ("mapping" = String, Path, description = "Mapping id")),
    responses(
        (status = 200, description = "The effect deleting the mapping would have", body = RoleEffectView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection or mapping", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn preview_role_mapping_removal(
    State(admin): State<Admin>,
    Path((connection_id, mapping)): Path<(String, String)>,
) -> ApiResult<Json<RoleEffectView>> {
    let effect = admin.preview_role_mapping_removal(&connection_id, &mapping).await?;
    Ok(Json(RoleEffectView::from(&effect)))
}

/// List a connection's role mappings.
#[utoipa::path(get, path = "/connections/{id}/role-mappings", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The mappings, oldest first", body = RoleMappingList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_role_mappings(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<RoleMappingList>> {
    let list = admin.list_role_mappings(&connection_id).await?;
    Ok(Json(RoleMappingList {
        data: list.iter().map(RoleMappingView::from).collect(),
    }))
}

/// Delete a role mapping; users lose what it granted.
#[utoipa::path(delete, path = "/connections/{id}/role-mappings/{mapping}", tag = "roles",
    params(("id" = String, Path, description = "Connection id"), ("mapping" = String, Path, description = "Mapping id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection or mapping", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_role_mapping(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((connection_id, mapping)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.delete_role_mapping(&by, &connection_id, &mapping).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The roles every active user of the connection has.
#[utoipa::path(get, path = "/connections/{id}/default-roles", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The default roles", body = DefaultRoles),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_default_roles(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<DefaultRoles>> {
    let roles = admin.default_roles(&connection_id).await?;
    Ok(Json(DefaultRoles {
        data: roles.iter().map(RoleView::from).collect(),
    }))
}

/// Replace the connection's default roles; every user's effective roles follow.
#[utoipa::path(put, path = "/connections/{id}/default-roles", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    request_body = SetDefaultRoles,
    responses(
        (status = 200, description = "The default roles, replaced", body = DefaultRoles),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown role or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_default_roles(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<SetDefaultRoles>,
) -> ApiResult<Json<DefaultRoles>> {
    let roles = admin.set_default_roles(&by, &connection_id, &body.roles).await?;
    Ok(Json(DefaultRoles {
        data: roles.iter().map(RoleView::from).collect(),
    }))
}

/// Preview new default roles: what replacing the connection's default roles with these would do to
/// its users, without replacing them.
///
/// Takes the body of `PUT /connections/{id}/default-roles`; refused exactly as that would be.
/// Nothing is written.
#[utoipa::path(post, path = "/connections/{id}/default-roles/preview", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    request_body = SetDefaultRoles,
    responses(
        (status = 200, description = "The effect the new default roles would have", body = RoleEffectView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown role or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn preview_default_roles(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<SetDefaultRoles>,
) -> ApiResult<Json<RoleEffectView>> {
    let effect = admin.preview_default_roles(&connection_id, &body.roles).await?;
    Ok(Json(RoleEffectView::from(&effect)))
}

/// The connection's attribute and lifecycle policy.
#[utoipa::path(get, path = "/connections/{id}/policy", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_policy(State(admin): State<Admin>, Path(connection_id): Path<String>) -> ApiResult<Json<PolicyView>> {
    let c = admin.connection(&connection_id).await?;
    Ok(Json(PolicyView::from(&c.policy)))
}

/// Replace the connection's attribute and lifecycle policy. Every field is required (a field left
/// out is refused, the policy unchanged); every attribute path must be an attribute of the User
/// schema.
#[utoipa::path(put, path = "/connections/{id}/policy", tag = "roles",
    params(("id" = String, Path, description = "Connection id")),
    request_body = PolicyView,
    responses(
        (status = 200, description = "The policy, replaced", body = PolicyView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, or an attribute or field is unknown", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn set_policy(
    State(admin): State<Admin>,
    State(scim): State<Scim>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<PolicyView>> {
    // A PUT replaces the whole policy: every field left out is named at once.
    let missing: Vec<String> = POLICY_FIELDS
        .iter()
        .filter(|f| !body.contains_key(**f))
        .map(|f| format!("missing field `{f}`"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiProblem::new(
            422,
            format!(
                "{}: a PUT replaces the whole policy, so send every field ({}), null where none is meant",
                missing.join(", "),
                POLICY_FIELDS.join(", ")
            ),
        ));
    }
    let body: PolicyView = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiProblem::new(422, format!("the request body is not as expected: {e}")))?;
    let c = admin
        .set_connection_policy(&by, &scim.registry, &connection_id, body.into())
        .await?;
    Ok(Json(PolicyView::from(&c.policy)))
}
