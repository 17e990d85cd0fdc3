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
//! Effective workspaces are computed by the role engine ([`crate::grant_rows::recompute`] with
//! [`GrantKind::Workspace`]), stored as rows (`user_workspaces`) in the transaction of every change
//! that can affect them, with one `user.workspaces_changed` event per user whose set changed.
//!
//! A workspace created for a group has the key `group:<the group's Rollcall id>` (stable: the
//! application can keep data under it), is named after the group's `displayName` (renamed with
//! it), is granted to the group's members, and is deleted with the group (its members lose it
//! first, with their events). Turning the setting on creates one for every live group of the
//! organization; turning it off creates no more, and leaves the existing ones as they are.

use crate::backend::{Backend, Tx};
use crate::events;
use crate::grant_rows::{Arg, GrantBackend, GrantDb, GrantJob, first};
use crate::index::fold;
use crate::model::WriteContext;
use crate::roles::{GrantKind, RoleChange, RoleMatch, RolePreview};
use crate::rows::{Cols, key_taken, mapping_taken};
use crate::sql::Dialect;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};

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
    /// connection's users, computed as [`crate::RoleStore::preview_role_change`] computes roles.
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

/// The statements, with `$n` placeholders.
pub(crate) struct WorkspaceSql;

impl WorkspaceSql {
    /// Binds: id, org_id, key, key_ci, name, group_connection_id, group_id, created_us.
    pub(crate) const INSERT: &'static str = "INSERT INTO workspaces (id, org_id, key, key_ci, name, \
         group_connection_id, group_id, created_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// Binds: org_id.
    pub(crate) const LIST: &'static str = "SELECT * FROM workspaces WHERE org_id = $1 ORDER BY key_ci";
    /// Binds: org_id, id, folded key.
    pub(crate) const GET: &'static str = "SELECT * FROM workspaces WHERE org_id = $1 AND (id = $2 OR key_ci = $3)";
    /// Binds: key, key_ci, name, id.
    pub(crate) const UPDATE: &'static str = "UPDATE workspaces SET key = $1, key_ci = $2, name = $3 WHERE id = $4";
    /// Binds: id.
    pub(crate) const DELETE: &'static str = "DELETE FROM workspaces WHERE id = $1";
    /// Binds: connection id, group id: the workspace created for a group.
    pub(crate) const OF_GROUP: &'static str = "SELECT id, org_id, key, name, created_us FROM workspaces \
         WHERE group_connection_id = $1 AND group_id = $2";
    /// Binds: name, id.
    pub(crate) const RENAME: &'static str = "UPDATE workspaces SET name = $1 WHERE id = $2";
    /// Binds: id, connection_id, workspace_id, match_kind, match_value, match_display, created_us.
    pub(crate) const INSERT_MAPPING: &'static str = "INSERT INTO workspace_mappings (id, connection_id, \
         workspace_id, match_kind, match_value, match_display, created_us) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// Binds: connection id.
    pub(crate) const LIST_MAPPINGS: &'static str = "SELECT m.id, m.connection_id, m.workspace_id, \
         w.key AS workspace_key, m.match_kind, m.match_display, m.created_us \
         FROM workspace_mappings m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.connection_id = $1 ORDER BY m.created_us, m.id";
    /// Binds: connection id, mapping id.
    pub(crate) const GET_MAPPING: &'static str = "SELECT m.id, m.connection_id, m.workspace_id, \
         w.key AS workspace_key, m.match_kind, m.match_display, m.created_us \
         FROM workspace_mappings m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.connection_id = $1 AND m.id = $2";
    /// Binds: id.
    pub(crate) const DELETE_MAPPING: &'static str = "DELETE FROM workspace_mappings WHERE id = $1";
    /// Binds: org_id.
    pub(crate) const SETTINGS: &'static str = "SELECT s.default_workspace_id, w.key AS default_workspace_key, \
         s.auto_create FROM workspace_settings s LEFT JOIN workspaces w ON w.id = s.default_workspace_id \
         WHERE s.org_id = $1";
    /// Binds: org_id, default_workspace_id, auto_create.
    pub(crate) const UPSERT_SETTINGS: &'static str = "INSERT INTO workspace_settings (org_id, \
         default_workspace_id, auto_create) VALUES ($1, $2, $3) ON CONFLICT (org_id) DO UPDATE SET \
         default_workspace_id = excluded.default_workspace_id, auto_create = excluded.auto_create";
    /// Binds: org_id: whether the organization creates a workspace for every group.
    pub(crate) const AUTO_CREATE: &'static str =
        "SELECT EXISTS (SELECT 1 FROM workspace_settings WHERE org_id = $1 AND auto_create)";
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
             WHERE c.org_id = $1 AND g.kind = 'Group' AND g.deleted_us IS NULL \
             AND NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.group_connection_id = g.connection_id AND w.group_id = g.id) \
             ORDER BY g.pk"
        )
    }
}

// --- the workspace of a group, in the transaction of a group write ------------------------------

/// The workspace created for group `group_id` of connection `connection_id`, if any.
async fn of_group<D: GrantDb>(db: &mut D, connection_id: &str, group_id: &str) -> StoreResult<Option<Workspace>> {
    let row = first(
        db,
        WorkspaceSql::OF_GROUP,
        &[Arg::Text(connection_id), Arg::Text(group_id)],
    )
    .await?;
    Ok(row.map(|mut r| Workspace {
        id: r[0].text(),
        org_id: r[1].text(),
        key: r[2].text(),
        name: r[3].text(),
        group: Some(WorkspaceGroup {
            connection_id: connection_id.to_string(),
            group_id: group_id.to_string(),
        }),
        created_us: r[4].int(),
    }))
}

/// Creates the workspace of a group of `connection_id` (recording `workspace.created`).
async fn insert_group_workspace<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    connection_id: &str,
    group_id: &str,
    display_name: Option<&str>,
) -> StoreResult<()> {
    let ws = Workspace {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: ctx.org_id.clone(),
        key: group_workspace_key(group_id),
        name: group_workspace_name(group_id, display_name),
        group: Some(WorkspaceGroup {
            connection_id: connection_id.to_string(),
            group_id: group_id.to_string(),
        }),
        created_us: crate::sqlite::now_us(),
    };
    let key_ci = key_ci(&ws.key);
    let args = [
        Arg::Text(&ws.id),
        Arg::Text(&ws.org_id),
        Arg::Text(&ws.key),
        Arg::Text(&key_ci),
        Arg::Text(&ws.name),
        Arg::Text(connection_id),
        Arg::Text(group_id),
        Arg::Int(ws.created_us),
    ];
    db.run(WorkspaceSql::INSERT, &args).await?;
    let ctx = WriteContext {
        connection_id: connection_id.to_string(),
        ..ctx.clone()
    };
    db.grant_event(&ctx, events::WORKSPACE_CREATED, None, json!({"workspace": ws}))
        .await
}

/// After a group of the write's connection is created: its workspace, when the organization
/// creates one for every group (before its members' workspaces are computed).
pub(crate) async fn group_created<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    group_id: &str,
    doc: &Value,
) -> StoreResult<()> {
    let auto = first(db, WorkspaceSql::AUTO_CREATE, &[Arg::Text(&ctx.org_id)]).await?;
    if auto.is_some_and(|r| r[0].int() != 0) && of_group(db, &ctx.connection_id, group_id).await?.is_none() {
        insert_group_workspace(db, ctx, &ctx.connection_id, group_id, display_name(doc)).await?;
    }
    Ok(())
}

/// After a group's document changed: its workspace follows its displayName (the key stays).
pub(crate) async fn group_renamed<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    group_id: &str,
    before: &Value,
    after: &Value,
) -> StoreResult<()> {
    if display_name(before) == display_name(after) {
        return Ok(());
    }
    let Some(ws) = of_group(db, &ctx.connection_id, group_id).await? else {
        return Ok(());
    };
    let name = group_workspace_name(group_id, display_name(after));
    if name == ws.name {
        return Ok(());
    }
    db.run(WorkspaceSql::RENAME, &[Arg::Text(&name), Arg::Text(&ws.id)])
        .await?;
    let updated = Workspace { name, ..ws.clone() };
    let data = json!({"workspace": updated, "before": ws});
    db.grant_event(ctx, events::WORKSPACE_UPDATED, None, data).await
}

/// After a group was deleted and its members lost its workspace: the workspace goes too.
pub(crate) async fn group_deleted<D: GrantDb>(db: &mut D, ctx: &WriteContext, group_id: &str) -> StoreResult<()> {
    let Some(ws) = of_group(db, &ctx.connection_id, group_id).await? else {
        return Ok(());
    };
    db.run(WorkspaceSql::DELETE, &[Arg::Text(&ws.id)]).await?;
    let data = json!({"workspace": ws, "reason": "group_deleted"});
    db.grant_event(ctx, events::WORKSPACE_DELETED, None, data).await
}

/// A workspace for every live group of the organization that has none, oldest first.
pub(crate) async fn create_group_workspaces<D: GrantDb>(db: &mut D, ctx: &WriteContext) -> StoreResult<()> {
    let sql = WorkspaceSql::groups_without_workspace(D::DIALECT);
    for mut g in db.rows(&sql, &[Arg::Text(&ctx.org_id)]).await? {
        let (connection_id, group_id, name) = (g[0].text(), g[1].text(), g[2].opt_text());
        insert_group_workspace(db, ctx, &connection_id, &group_id, name.as_deref()).await?;
    }
    Ok(())
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

fn no_connection(id: &str) -> StoreError {
    StoreError::Scim(rollcall_scim::ScimError::not_found(format!(
        "connection \"{id}\" not found"
    )))
}

pub(crate) fn with_org(ctx: &WriteContext, org_id: &str) -> WriteContext {
    WriteContext {
        org_id: org_id.to_string(),
        ..ctx.clone()
    }
}

/// `ctx` for a write on connection `c`.
pub(crate) fn on_connection(ctx: &WriteContext, c: &crate::Connection) -> WriteContext {
    WriteContext {
        org_id: c.org_id.clone(),
        connection_id: c.id.clone(),
        ..ctx.clone()
    }
}

/// [`WorkspaceStore`] for a [`Backend`]: the same statements and steps on both databases.
macro_rules! workspace_store {
    ($store:ty) => {
        impl $store {
            async fn workspace_in(
                c: &mut <<$store as Backend>::Db as sqlx::Database>::Connection,
                org_id: &str,
                id: &str,
            ) -> StoreResult<Option<Workspace>> {
                let row = sqlx::query(WorkspaceSql::GET)
                    .bind(org_id)
                    .bind(id)
                    .bind("")
                    .fetch_optional(c)
                    .await?;
                Ok(row.as_ref().map(workspace_of))
            }

            async fn settings_in(
                c: &mut <<$store as Backend>::Db as sqlx::Database>::Connection,
                org_id: &str,
            ) -> StoreResult<WorkspaceSettings> {
                let row = sqlx::query(WorkspaceSql::SETTINGS).bind(org_id).fetch_optional(c).await?;
                Ok(row.map_or_else(WorkspaceSettings::default, |r| WorkspaceSettings {
                    default_workspace_id: r.opt_text("default_workspace_id"),
                    default_workspace_key: r.opt_text("default_workspace_key"),
                    auto_create: r.flag("auto_create"),
                }))
            }
        }

        #[async_trait]
        impl WorkspaceStore for $store {
            async fn create_workspace(&self, ctx: &WriteContext, new: NewWorkspace) -> StoreResult<Workspace> {
                let ws = Workspace {
                    id: uuid::Uuid::now_v7().to_string(),
                    org_id: new.org_id,
                    key: new.key,
                    name: new.name,
                    group: None,
                    created_us: crate::sqlite::now_us(),
                };
                let ws = &ws;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query(WorkspaceSql::INSERT)
                        .bind(&ws.id)
                        .bind(&ws.org_id)
                        .bind(&ws.key)
                        .bind(key_ci(&ws.key))
                        .bind(&ws.name)
                        .bind(None::<String>)
                        .bind(None::<String>)
                        .bind(ws.created_us)
                        .execute(tx.conn())
                        .await
                        .map_err(|e| key_taken(e, "workspace", &ws.key))?;
                    let ctx = with_org(ctx, &ws.org_id);
                    tx.record(&ctx, events::WORKSPACE_CREATED, None, json!({"workspace": ws})).await?;
                    tx.commit().await?;
                    Ok(ws.clone())
                })
                .await
            }

            async fn list_workspaces(&self, org_id: &str) -> StoreResult<Vec<Workspace>> {
                let rows = sqlx::query(WorkspaceSql::LIST).bind(org_id).fetch_all(self.reads()).await?;
                Ok(rows.iter().map(workspace_of).collect())
            }

            async fn get_workspace(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Workspace>> {
                let row = sqlx::query(WorkspaceSql::GET)
                    .bind(org_id)
                    .bind(id_or_key)
                    .bind(key_ci(id_or_key))
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.as_ref().map(workspace_of))
            }

            async fn update_workspace(
                &self,
                ctx: &WriteContext,
                org_id: &str,
                id: &str,
                update: WorkspaceUpdate,
            ) -> StoreResult<Option<Workspace>> {
                let update = &update;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(before) = Self::workspace_in(tx.conn(), org_id, id).await? else {
                        return Ok(None);
                    };
                    let mut after = before.clone();
                    if let Some(k) = &update.key {
                        after.key = k.clone();
                    }
                    if let Some(n) = &update.name {
                        after.name = n.clone();
                    }
                    if after == before {
                        return Ok(Some(before));
                    }
                    sqlx::query(WorkspaceSql::UPDATE)
                        .bind(&after.key)
                        .bind(key_ci(&after.key))
                        .bind(&after.name)
                        .bind(&before.id)
                        .execute(tx.conn())
                        .await
                        .map_err(|e| key_taken(e, "workspace", &after.key))?;
                    let data = json!({"workspace": after, "before": before});
                    tx.record(&with_org(ctx, org_id), events::WORKSPACE_UPDATED, None, data).await?;
                    tx.commit().await?;
                    Ok(Some(after))
                })
                .await
            }

            async fn delete_workspace(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(ws) = Self::workspace_in(tx.conn(), org_id, id).await? else {
                        return Ok(false);
                    };
                    let ctx = with_org(ctx, org_id);
                    // Members lose it (with their events) before it goes.
                    let job = GrantJob::Org { kind: KIND, without: Some(&ws.id) };
                    <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    sqlx::query(WorkspaceSql::DELETE).bind(&ws.id).execute(tx.conn()).await?;
                    tx.record(&ctx, events::WORKSPACE_DELETED, None, json!({"workspace": ws})).await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn create_workspace_mapping(
                &self,
                ctx: &WriteContext,
                new: NewWorkspaceMapping,
            ) -> StoreResult<WorkspaceMapping> {
                check_match(&new.matches)?;
                let new = &new;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(conn) = Self::connection_locked(&mut tx, &new.connection_id).await? else {
                        return Err(no_connection(&new.connection_id));
                    };
                    let Some(ws) = Self::workspace_in(tx.conn(), &conn.org_id, &new.workspace_id).await? else {
                        return Err(foreign_workspace(&new.workspace_id));
                    };
                    let mapping = WorkspaceMapping {
                        id: uuid::Uuid::now_v7().to_string(),
                        connection_id: conn.id.clone(),
                        workspace_id: ws.id.clone(),
                        workspace_key: ws.key.clone(),
                        matches: new.matches.clone(),
                        created_us: crate::sqlite::now_us(),
                    };
                    sqlx::query(WorkspaceSql::INSERT_MAPPING)
                        .bind(&mapping.id)
                        .bind(&mapping.connection_id)
                        .bind(&mapping.workspace_id)
                        .bind(mapping.matches.kind())
                        .bind(mapping.matches.folded())
                        .bind(mapping.matches.value())
                        .bind(mapping.created_us)
                        .execute(tx.conn())
                        .await
                        .map_err(mapping_taken)?;
                    let ctx = on_connection(ctx, &conn);
                    let data = json!({"mapping": mapping});
                    tx.record(&ctx, events::WORKSPACE_MAPPING_CREATED, None, data).await?;
                    let job = GrantJob::Mapping { kind: KIND, matches: &mapping.matches };
                    <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    tx.commit().await?;
                    Ok(mapping)
                })
                .await
            }

            async fn list_workspace_mappings(&self, connection_id: &str) -> StoreResult<Vec<WorkspaceMapping>> {
                let rows = sqlx::query(WorkspaceSql::LIST_MAPPINGS)
                    .bind(connection_id)
                    .fetch_all(self.reads())
                    .await?;
                Ok(rows.iter().map(workspace_mapping_of).collect())
            }

            async fn delete_workspace_mapping(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                id: &str,
            ) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let row = sqlx::query(WorkspaceSql::GET_MAPPING)
                        .bind(connection_id)
                        .bind(id)
                        .fetch_optional(tx.conn())
                        .await?;
                    let Some(mapping) = row.as_ref().map(workspace_mapping_of) else {
                        return Ok(false);
                    };
                    let Some(conn) = Self::connection_locked(&mut tx, connection_id).await? else {
                        return Ok(false);
                    };
                    sqlx::query(WorkspaceSql::DELETE_MAPPING).bind(id).execute(tx.conn()).await?;
                    let ctx = on_connection(ctx, &conn);
                    let data = json!({"mapping": mapping});
                    tx.record(&ctx, events::WORKSPACE_MAPPING_DELETED, None, data).await?;
                    let job = GrantJob::Mapping { kind: KIND, matches: &mapping.matches };
                    <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn preview_workspace_change(
                &self,
                connection_id: &str,
                change: &RoleChange,
                sample: usize,
            ) -> StoreResult<Option<RolePreview>> {
                if let RoleChange::AddMapping { matches, .. } = change {
                    check_match(matches)?;
                }
                self.preview_grants(KIND, connection_id, change, sample).await
            }

            async fn workspace_settings(&self, org_id: &str) -> StoreResult<WorkspaceSettings> {
                let mut c = self.reads().acquire().await?;
                Self::settings_in(&mut c, org_id).await
            }

            async fn set_workspace_settings(
                &self,
                ctx: &WriteContext,
                org_id: &str,
                update: WorkspaceSettingsUpdate,
            ) -> StoreResult<WorkspaceSettings> {
                let update = &update;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let before = Self::settings_in(tx.conn(), org_id).await?;
                    let mut after = before.clone();
                    if let Some(d) = &update.default_workspace_id {
                        after.default_workspace_key = match d {
                            None => None,
                            Some(id) => {
                                let ws = Self::workspace_in(tx.conn(), org_id, id).await?;
                                Some(ws.ok_or_else(|| foreign_workspace(id))?.key)
                            }
                        };
                        after.default_workspace_id = d.clone();
                    }
                    if let Some(a) = update.auto_create {
                        after.auto_create = a;
                    }
                    if after == before {
                        return Ok(before);
                    }
                    sqlx::query(WorkspaceSql::UPSERT_SETTINGS)
                        .bind(org_id)
                        .bind(&after.default_workspace_id)
                        .bind(after.auto_create)
                        .execute(tx.conn())
                        .await?;
                    let ctx = with_org(ctx, org_id);
                    let data = json!({"before": before, "after": after});
                    tx.record(&ctx, events::ORGANIZATION_WORKSPACE_SETTINGS_SET, None, data).await?;
                    let turned_on = after.auto_create && !before.auto_create;
                    if turned_on {
                        <$store as GrantBackend>::grant_job(&mut tx, &ctx, GrantJob::GroupWorkspaces).await?;
                    }
                    if after.default_workspace_id != before.default_workspace_id || turned_on {
                        let job = GrantJob::Org { kind: KIND, without: None };
                        <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    }
                    tx.commit().await?;
                    Ok(after)
                })
                .await
            }
        }
    };
}

workspace_store!(crate::sqlite::SqliteStore);
workspace_store!(crate::postgres::PostgresStore);

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
