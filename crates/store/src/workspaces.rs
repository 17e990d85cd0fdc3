//! Workspaces: IdP groups as memberships of the application's workspaces (issue #19).
//!
//! An organization defines workspaces (key, name), like roles. A user of one of its SCIM
//! connections is, while it is active and not deleted, a member of:
//! - the organization's default workspace, when it has one;
//! - the workspaces mapped on the connection to a group it is a direct member of, by the group's
//!   IdP id (`externalId`, or its Rollcall id) or by its `displayName` (as role mappings);
//! - the workspace created for a group it is a direct member of, when the organization creates a
//!   workspace for every pushed group ([`WorkspaceSettings::auto_create`]).
//!
//! Effective workspaces are computed by the role engine ([`crate::roles::recompute`] with
//! [`GrantKind::Workspace`]), stored as rows (`user_workspaces`) in the transaction of every change
//! that can affect them, with one `user.workspaces_changed` event per user whose set changed.
//!
//! A workspace created for a group has the key `group:<the group's Rollcall id>` (stable: the
//! application can keep data under it), is named after the group's `displayName` (renamed with
//! it), is granted to the group's members, and is deleted with the group (its members lose it
//! first, with their events). Turning the setting on creates one for every live group of the
//! organization; turning it off creates no more, and leaves the existing ones as they are.

use crate::StoreResult;
use crate::index::fold;
use crate::model::WriteContext;
use crate::roles::{GrantKind, RoleChange, RoleMatch, RolePreview};
use crate::rows::Cols;
use crate::sql::Dialect;
use async_trait::async_trait;
use serde::Serialize;

/// The key prefix of a workspace created for a group.
pub const GROUP_WORKSPACE_PREFIX: &str = "group:";

/// The key of the workspace created for the group with this Rollcall id.
pub fn group_workspace_key(group_id: &str) -> String {
    format!("{GROUP_WORKSPACE_PREFIX}{group_id}")
}

/// A workspace of one organization.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Workspace {
    pub id: String,
    pub org_id: String,
    /// What the application checks; unique per organization, ignoring case.
    pub key: String,
    pub name: String,
    /// The group it was created for (auto-create), if any.
    pub group: Option<WorkspaceGroup>,
    pub created_us: i64,
}

/// The group a workspace was created for.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkspaceGroup {
    pub connection_id: String,
    /// The group's Rollcall id.
    pub group_id: String,
}

/// What is needed to create a workspace.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    pub org_id: String,
    pub key: String,
    pub name: String,
}

/// A change to a workspace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceUpdate {
    pub key: Option<String>,
    pub name: Option<String>,
}

/// A group → workspace mapping on one connection (by group id or name; never an app role).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkspaceMapping {
    pub id: String,
    pub connection_id: String,
    pub workspace_id: String,
    pub workspace_key: String,
    #[serde(rename = "match")]
    pub matches: RoleMatch,
    pub created_us: i64,
}

/// What is needed to create a mapping.
#[derive(Debug, Clone)]
pub struct NewWorkspaceMapping {
    pub connection_id: String,
    pub workspace_id: String,
    pub matches: RoleMatch,
}

/// An organization's workspace settings.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct WorkspaceSettings {
    /// The workspace every active user of the organization is a member of.
    pub default_workspace_id: Option<String>,
    pub default_workspace_key: Option<String>,
    /// Whether every group pushed by a connection of the organization gets a workspace.
    pub auto_create: bool,
}

/// A change to the settings: `None` leaves a field as it is (`Some(None)` clears the default).
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSettingsUpdate {
    pub default_workspace_id: Option<Option<String>>,
    pub auto_create: Option<bool>,
}

/// Workspaces, their mappings and the organization's settings. Every change recomputes the
/// effective workspaces it affects, with their events, in its transaction.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates a workspace; 409 when its key is taken in the organization (ignoring case).
    async fn create_workspace(&self, ctx: &WriteContext, new: NewWorkspace) -> StoreResult<Workspace>;
    async fn list_workspaces(&self, org_id: &str) -> StoreResult<Vec<Workspace>>;
    /// A workspace of the organization by id or key (ignoring case).
    async fn get_workspace(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Workspace>>;
    async fn update_workspace(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        id: &str,
        update: WorkspaceUpdate,
    ) -> StoreResult<Option<Workspace>>;
    /// Deletes a workspace with its mappings (and as the default); its members lose it first,
    /// with their events.
    async fn delete_workspace(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool>;
    /// Maps a group to a workspace on a connection; 404 for an unknown connection, 400 for a
    /// workspace of another organization or an app-role match, 409 for a duplicate.
    async fn create_workspace_mapping(
        &self,
        ctx: &WriteContext,
        new: NewWorkspaceMapping,
    ) -> StoreResult<WorkspaceMapping>;
    async fn list_workspace_mappings(&self, connection_id: &str) -> StoreResult<Vec<WorkspaceMapping>>;
    async fn delete_workspace_mapping(&self, ctx: &WriteContext, connection_id: &str, id: &str) -> StoreResult<bool>;
    /// What `change` (workspaces by id in `role_id`) would do to the effective workspaces of the
    /// connection's users, computed as [`crate::Store::preview_role_change`] computes roles.
    async fn preview_workspace_change(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>>;
    async fn workspace_settings(&self, org_id: &str) -> StoreResult<WorkspaceSettings>;
    /// Changes the settings, recording `organization.workspace_settings_set`; 400 for a default
    /// workspace of another organization.
    async fn set_workspace_settings(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        update: WorkspaceSettingsUpdate,
    ) -> StoreResult<WorkspaceSettings>;
}

/// The engine's kind for workspaces.
pub const KIND: GrantKind = GrantKind::Workspace;

/// The statements, `?` placeholders (PostgreSQL's numbered by
/// [`crate::directory_sync::DirectorySql::pg`]).
pub(crate) struct WorkspaceSql;

impl WorkspaceSql {
    /// Binds: id, org_id, key, key_ci, name, group_connection_id, group_id, created_us.
    pub(crate) const INSERT: &'static str = "INSERT INTO workspaces (id, org_id, key, key_ci, name, \
         group_connection_id, group_id, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    /// Binds: org_id.
    pub(crate) const LIST: &'static str = "SELECT * FROM workspaces WHERE org_id = ? ORDER BY key_ci";
    /// Binds: org_id, id, folded key.
    pub(crate) const GET: &'static str = "SELECT * FROM workspaces WHERE org_id = ? AND (id = ? OR key_ci = ?)";
    /// Binds: key, key_ci, name, id.
    pub(crate) const UPDATE: &'static str = "UPDATE workspaces SET key = ?, key_ci = ?, name = ? WHERE id = ?";
    /// Binds: id.
    pub(crate) const DELETE: &'static str = "DELETE FROM workspaces WHERE id = ?";
    /// Binds: connection id, group id: the workspace created for a group.
    pub(crate) const OF_GROUP: &'static str = "SELECT * FROM workspaces WHERE group_connection_id = ? AND group_id = ?";
    /// Binds: name, id.
    pub(crate) const RENAME: &'static str = "UPDATE workspaces SET name = ? WHERE id = ?";
    /// Binds: id, connection_id, workspace_id, match_kind, match_value, match_display, created_us.
    pub(crate) const INSERT_MAPPING: &'static str = "INSERT INTO workspace_mappings (id, connection_id, \
         workspace_id, match_kind, match_value, match_display, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)";
    /// Binds: connection id.
    pub(crate) const LIST_MAPPINGS: &'static str = "SELECT m.id, m.connection_id, m.workspace_id, \
         w.key AS workspace_key, m.match_kind, m.match_display, m.created_us \
         FROM workspace_mappings m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.connection_id = ? ORDER BY m.created_us, m.id";
    /// Binds: connection id, mapping id.
    pub(crate) const GET_MAPPING: &'static str = "SELECT m.id, m.connection_id, m.workspace_id, \
         w.key AS workspace_key, m.match_kind, m.match_display, m.created_us \
         FROM workspace_mappings m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.connection_id = ? AND m.id = ?";
    /// Binds: id.
    pub(crate) const DELETE_MAPPING: &'static str = "DELETE FROM workspace_mappings WHERE id = ?";
    /// Binds: org_id.
    pub(crate) const SETTINGS: &'static str = "SELECT s.default_workspace_id, w.key AS default_workspace_key, \
         s.auto_create FROM workspace_settings s LEFT JOIN workspaces w ON w.id = s.default_workspace_id \
         WHERE s.org_id = ?";
    /// Binds: org_id, default_workspace_id, auto_create.
    pub(crate) const UPSERT_SETTINGS: &'static str = "INSERT INTO workspace_settings (org_id, \
         default_workspace_id, auto_create) VALUES (?, ?, ?) ON CONFLICT (org_id) DO UPDATE SET \
         default_workspace_id = excluded.default_workspace_id, auto_create = excluded.auto_create";
    /// Binds: org_id: whether the organization creates a workspace for every group.
    pub(crate) const AUTO_CREATE: &'static str =
        "SELECT EXISTS (SELECT 1 FROM workspace_settings WHERE org_id = ? AND auto_create)";
    /// Binds: org_id: the live groups of the organization without a workspace of their own
    /// (`connection_id, id, display_name`), oldest first.
    pub(crate) fn groups_without_workspace(dialect: Dialect) -> String {
        let display_name = match dialect {
            Dialect::Sqlite => "json_extract(g.doc, '$.displayName')",
            Dialect::Postgres => "g.doc->>'displayName'",
        };
        format!(
            "SELECT g.connection_id, g.id, {display_name} AS display_name \
             FROM resources g JOIN scim_connections c ON c.id = g.connection_id \
             WHERE c.org_id = ? AND g.kind = 'Group' AND g.deleted_us IS NULL \
             AND NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.group_connection_id = g.connection_id AND w.group_id = g.id) \
             ORDER BY g.pk"
        )
    }
}

/// A workspace row (`SELECT * FROM workspaces`).
pub(crate) fn workspace_of(row: &impl Cols) -> Workspace {
    let group = match (row.opt_text("group_connection_id"), row.opt_text("group_id")) {
        (Some(connection_id), Some(group_id)) => Some(WorkspaceGroup {
            connection_id,
            group_id,
        }),
        _ => None,
    };
    Workspace {
        id: row.text("id"),
        org_id: row.text("org_id"),
        key: row.text("key"),
        name: row.text("name"),
        group,
        created_us: row.int("created_us"),
    }
}

/// A mapping row ([`WorkspaceSql::LIST_MAPPINGS`]).
pub(crate) fn workspace_mapping_of(row: &impl Cols) -> WorkspaceMapping {
    let kind = row.text("match_kind");
    WorkspaceMapping {
        id: row.text("id"),
        connection_id: row.text("connection_id"),
        workspace_id: row.text("workspace_id"),
        workspace_key: row.text("workspace_key"),
        matches: RoleMatch::from_parts(&kind, row.text("match_display")).unwrap_or(RoleMatch::GroupName(String::new())),
        created_us: row.int("created_us"),
    }
}

/// 409 for a workspace key taken in the organization.
pub(crate) fn key_taken(e: sqlx::Error, key: &str) -> crate::StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => crate::StoreError::Scim(rollcall_scim::ScimError::conflict(format!(
            "a workspace with key \"{key}\" already exists in this organization"
        ))),
        _ => crate::StoreError::Database(e),
    }
}

/// 409 for a duplicate mapping.
pub(crate) fn mapping_taken(e: sqlx::Error) -> crate::StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => crate::StoreError::Scim(rollcall_scim::ScimError::conflict(
            "this mapping already exists on the connection",
        )),
        _ => crate::StoreError::Database(e),
    }
}

/// 400: workspaces are mapped from groups only.
pub(crate) fn check_match(m: &RoleMatch) -> StoreResult<()> {
    match m {
        RoleMatch::AppRole(_) => Err(crate::StoreError::Scim(rollcall_scim::ScimError::invalid_value(
            "workspaces are mapped from groups (group_id or group_name), not from app roles",
        ))),
        _ => Ok(()),
    }
}

/// 400 for a workspace id that is not one of the organization's.
pub(crate) fn foreign_workspace(id: &str) -> crate::StoreError {
    crate::StoreError::Scim(rollcall_scim::ScimError::invalid_value(format!(
        "workspace \"{id}\" is not a workspace of this organization"
    )))
}

/// The name of the workspace created for a group: its `displayName`, else its id.
pub fn group_workspace_name(group_id: &str, display_name: Option<&str>) -> String {
    display_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map_or_else(|| group_id.to_string(), String::from)
}

/// The folded key, for lookups.
pub(crate) fn key_ci(key: &str) -> String {
    fold(key)
}

/// The displayName of a group document.
pub(crate) fn display_name(doc: &serde_json::Value) -> Option<&str> {
    doc.get("displayName").and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_workspace_is_keyed_by_the_group_and_named_after_it() {
        assert_eq!(group_workspace_key("0193-ab"), "group:0193-ab");
        assert_eq!(group_workspace_name("g1", Some(" Sales ")), "Sales");
        assert_eq!(group_workspace_name("g1", Some("")), "g1");
        assert_eq!(group_workspace_name("g1", None), "g1");
    }

    #[test]
    fn app_roles_do_not_map_to_workspaces() {
        assert!(check_match(&RoleMatch::AppRole("admin".into())).is_err());
        assert!(check_match(&RoleMatch::GroupName("Sales".into())).is_ok());
    }
}
