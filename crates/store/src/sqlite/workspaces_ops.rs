//! SQLite: workspaces, their mappings and settings ([`crate::workspaces`]), and the workspaces
//! created for groups, on the role engine ([`roles_ops`]).

use super::*;
use crate::roles::{GrantKind, RoleChange, RolePreview};
use crate::workspaces::{
    self, NewWorkspace, NewWorkspaceMapping, Workspace, WorkspaceGroup, WorkspaceMapping, WorkspaceSettings,
    WorkspaceSettingsUpdate, WorkspaceSql, WorkspaceStore, WorkspaceUpdate, group_workspace_key, group_workspace_name,
    workspace_mapping_of, workspace_of,
};
use resource_writes::insert_events;
use roles_ops::{preview_on, recompute_for_mapping, recompute_org};

const KIND: GrantKind = GrantKind::Workspace;

fn with_org(ctx: &WriteContext, org_id: &str) -> WriteContext {
    WriteContext {
        org_id: org_id.to_string(),
        ..ctx.clone()
    }
}

// --- the workspace of a group, in the writer's transaction of a group write ---------------------

/// The workspace created for group `group_id` of the write's connection, if any.
fn of_group(c: &rusqlite::Connection, connection_id: &str, group_id: &str) -> StoreResult<Option<Workspace>> {
    let mut stmt = c.prepare_cached(WorkspaceSql::OF_GROUP)?;
    let mut rows = stmt.query((connection_id, group_id))?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let group = match (
        row.get::<_, Option<String>>("group_connection_id")?,
        row.get::<_, Option<String>>("group_id")?,
    ) {
        (Some(connection_id), Some(group_id)) => Some(WorkspaceGroup {
            connection_id,
            group_id,
        }),
        _ => None,
    };
    Ok(Some(Workspace {
        id: row.get("id")?,
        org_id: row.get("org_id")?,
        key: row.get("key")?,
        name: row.get("name")?,
        group,
        created_us: row.get("created_us")?,
    }))
}

/// Creates the workspace of a group (recording `workspace.created`).
fn insert_group_workspace(
    c: &rusqlite::Connection,
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
        created_us: now_us(),
    };
    c.prepare_cached(WorkspaceSql::INSERT)?.execute(rusqlite::params![
        ws.id,
        ws.org_id,
        ws.key,
        workspaces::key_ci(&ws.key),
        ws.name,
        connection_id,
        group_id,
        ws.created_us
    ])?;
    let ctx = WriteContext {
        connection_id: connection_id.to_string(),
        ..ctx.clone()
    };
    insert_events(c, &ctx, events::WORKSPACE_CREATED, None, &[json!({"workspace": ws})])
}

/// Whether the organization creates a workspace for every group.
fn auto_create(c: &rusqlite::Connection, org_id: &str) -> StoreResult<bool> {
    Ok(c.prepare_cached(WorkspaceSql::AUTO_CREATE)?
        .query_row([org_id], |r| r.get(0))?)
}

/// After a group is created: its workspace, when the organization creates one for every group
/// (before its members' workspaces are computed).
pub(super) fn group_created(
    c: &rusqlite::Connection,
    ctx: &WriteContext,
    group_id: &str,
    doc: &Value,
) -> StoreResult<()> {
    if auto_create(c, &ctx.org_id)? && of_group(c, &ctx.connection_id, group_id)?.is_none() {
        insert_group_workspace(c, ctx, &ctx.connection_id, group_id, workspaces::display_name(doc))?;
    }
    Ok(())
}

/// After a group's document changed: its workspace follows its displayName (the key stays).
pub(super) fn group_renamed(
    c: &rusqlite::Connection,
    ctx: &WriteContext,
    group_id: &str,
    before: &Value,
    after: &Value,
) -> StoreResult<()> {
    if workspaces::display_name(before) == workspaces::display_name(after) {
        return Ok(());
    }
    let Some(ws) = of_group(c, &ctx.connection_id, group_id)? else {
        return Ok(());
    };
    let name = group_workspace_name(group_id, workspaces::display_name(after));
    if name == ws.name {
        return Ok(());
    }
    c.prepare_cached(WorkspaceSql::RENAME)?.execute((&name, &ws.id))?;
    let updated = Workspace { name, ..ws.clone() };
    insert_events(
        c,
        ctx,
        events::WORKSPACE_UPDATED,
        None,
        &[json!({"workspace": updated, "before": ws})],
    )
}

/// After a group was deleted and its members lost its workspace: the workspace goes too.
pub(super) fn group_deleted(c: &rusqlite::Connection, ctx: &WriteContext, group_id: &str) -> StoreResult<()> {
    let Some(ws) = of_group(c, &ctx.connection_id, group_id)? else {
        return Ok(());
    };
    c.prepare_cached(WorkspaceSql::DELETE)?.execute([&ws.id])?;
    insert_events(
        c,
        ctx,
        events::WORKSPACE_DELETED,
        None,
        &[json!({"workspace": ws, "reason": "group_deleted"})],
    )
}

fn no_connection(id: &str) -> StoreError {
    StoreError::Scim(ScimError::not_found(format!("connection \"{id}\" not found")))
}

async fn settings_in(c: &mut SqliteConnection, org_id: &str) -> StoreResult<WorkspaceSettings> {
    let row = sqlx::query(WorkspaceSql::SETTINGS)
        .bind(org_id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(row.map_or_else(WorkspaceSettings::default, |r| WorkspaceSettings {
        default_workspace_id: r.get("default_workspace_id"),
        default_workspace_key: r.get("default_workspace_key"),
        auto_create: r.get("auto_create"),
    }))
}

#[async_trait]
impl WorkspaceStore for SqliteStore {
    async fn create_workspace(&self, ctx: &WriteContext, new: NewWorkspace) -> StoreResult<Workspace> {
        let ws = Workspace {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: new.org_id,
            key: new.key,
            name: new.name,
            group: None,
            created_us: now_us(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(WorkspaceSql::INSERT)
            .bind(&ws.id)
            .bind(&ws.org_id)
            .bind(&ws.key)
            .bind(workspaces::key_ci(&ws.key))
            .bind(&ws.name)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(ws.created_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| workspaces::key_taken(e, &ws.key))?;
        let ctx = with_org(ctx, &ws.org_id);
        insert_event(&mut tx, &ctx, events::WORKSPACE_CREATED, None, json!({"workspace": ws})).await?;
        tx.commit().await?;
        Ok(ws)
    }

    async fn list_workspaces(&self, org_id: &str) -> StoreResult<Vec<Workspace>> {
        let rows = sqlx::query(WorkspaceSql::LIST)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(workspace_of).collect())
    }

    async fn get_workspace(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Workspace>> {
        let row = sqlx::query(WorkspaceSql::GET)
            .bind(org_id)
            .bind(id_or_key)
            .bind(workspaces::key_ci(id_or_key))
            .fetch_optional(&self.reader)
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
        let mut tx = self.begin_write().await?;
        let Some(before) = sqlx::query(WorkspaceSql::GET)
            .bind(org_id)
            .bind(id)
            .bind("")
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(workspace_of)
        else {
            return Ok(None);
        };
        let mut after = before.clone();
        if let Some(k) = update.key {
            after.key = k;
        }
        if let Some(n) = update.name {
            after.name = n;
        }
        if after == before {
            return Ok(Some(before));
        }
        sqlx::query(WorkspaceSql::UPDATE)
            .bind(&after.key)
            .bind(workspaces::key_ci(&after.key))
            .bind(&after.name)
            .bind(&before.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| workspaces::key_taken(e, &after.key))?;
        let ctx = with_org(ctx, org_id);
        insert_event(
            &mut tx,
            &ctx,
            events::WORKSPACE_UPDATED,
            None,
            json!({"workspace": after, "before": before}),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    async fn delete_workspace(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(ws) = sqlx::query(WorkspaceSql::GET)
            .bind(org_id)
            .bind(id)
            .bind("")
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(workspace_of)
        else {
            return Ok(false);
        };
        let ctx = with_org(ctx, org_id);
        // Members lose it (with their events) before it goes.
        recompute_org(&mut tx, KIND, &ctx, org_id, Some(&ws.id)).await?;
        sqlx::query(WorkspaceSql::DELETE).bind(&ws.id).execute(&mut *tx).await?;
        insert_event(&mut tx, &ctx, events::WORKSPACE_DELETED, None, json!({"workspace": ws})).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_workspace_mapping(
        &self,
        ctx: &WriteContext,
        new: NewWorkspaceMapping,
    ) -> StoreResult<WorkspaceMapping> {
        workspaces::check_match(&new.matches)?;
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, &new.connection_id).await? else {
            return Err(no_connection(&new.connection_id));
        };
        let Some(ws) = sqlx::query(WorkspaceSql::GET)
            .bind(&conn.org_id)
            .bind(&new.workspace_id)
            .bind("")
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(workspace_of)
        else {
            return Err(workspaces::foreign_workspace(&new.workspace_id));
        };
        let mapping = WorkspaceMapping {
            id: uuid::Uuid::now_v7().to_string(),
            connection_id: conn.id.clone(),
            workspace_id: ws.id.clone(),
            workspace_key: ws.key.clone(),
            matches: new.matches.clone(),
            created_us: now_us(),
        };
        sqlx::query(WorkspaceSql::INSERT_MAPPING)
            .bind(&mapping.id)
            .bind(&mapping.connection_id)
            .bind(&mapping.workspace_id)
            .bind(mapping.matches.kind())
            .bind(mapping.matches.folded())
            .bind(mapping.matches.value())
            .bind(mapping.created_us)
            .execute(&mut *tx)
            .await
            .map_err(workspaces::mapping_taken)?;
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        insert_event(
            &mut tx,
            &ctx,
            events::WORKSPACE_MAPPING_CREATED,
            None,
            json!({"mapping": mapping}),
        )
        .await?;
        recompute_for_mapping(&mut tx, KIND, &ctx, &conn.id, &mapping.matches).await?;
        tx.commit().await?;
        Ok(mapping)
    }

    async fn list_workspace_mappings(&self, connection_id: &str) -> StoreResult<Vec<WorkspaceMapping>> {
        let rows = sqlx::query(WorkspaceSql::LIST_MAPPINGS)
            .bind(connection_id)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(workspace_mapping_of).collect())
    }

    async fn delete_workspace_mapping(&self, ctx: &WriteContext, connection_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(mapping) = sqlx::query(WorkspaceSql::GET_MAPPING)
            .bind(connection_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(workspace_mapping_of)
        else {
            return Ok(false);
        };
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(false);
        };
        sqlx::query(WorkspaceSql::DELETE_MAPPING)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        insert_event(
            &mut tx,
            &ctx,
            events::WORKSPACE_MAPPING_DELETED,
            None,
            json!({"mapping": mapping}),
        )
        .await?;
        recompute_for_mapping(&mut tx, KIND, &ctx, &conn.id, &mapping.matches).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn preview_workspace_change(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        if let RoleChange::AddMapping { matches, .. } = change {
            workspaces::check_match(matches)?;
        }
        let (connection_id, change) = (connection_id.to_string(), change.clone());
        self.inline
            .read(move |c| preview_on(c, KIND, &connection_id, &change, sample))
            .await
    }

    async fn workspace_settings(&self, org_id: &str) -> StoreResult<WorkspaceSettings> {
        let mut c = self.reader.acquire().await?;
        settings_in(&mut c, org_id).await
    }

    async fn set_workspace_settings(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        update: WorkspaceSettingsUpdate,
    ) -> StoreResult<WorkspaceSettings> {
        let mut tx = self.begin_write().await?;
        let before = settings_in(&mut tx, org_id).await?;
        let mut after = before.clone();
        if let Some(d) = update.default_workspace_id {
            after.default_workspace_key = match &d {
                None => None,
                Some(id) => {
                    let ws = sqlx::query(WorkspaceSql::GET)
                        .bind(org_id)
                        .bind(id)
                        .bind("")
                        .fetch_optional(&mut *tx)
                        .await?
                        .as_ref()
                        .map(workspace_of)
                        .ok_or_else(|| workspaces::foreign_workspace(id))?;
                    Some(ws.key)
                }
            };
            after.default_workspace_id = d;
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
            .execute(&mut *tx)
            .await?;
        let ctx = with_org(ctx, org_id);
        insert_event(
            &mut tx,
            &ctx,
            events::ORGANIZATION_WORKSPACE_SETTINGS_SET,
            None,
            json!({"before": before, "after": after}),
        )
        .await?;
        if after.auto_create && !before.auto_create {
            let sql = WorkspaceSql::groups_without_workspace(Dialect::Sqlite);
            let groups: Vec<(String, String, Option<String>)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(org_id)
                .fetch_all(&mut *tx)
                .await?;
            let ctx = ctx.clone();
            group_commit::on_connection(&mut tx, |c| {
                for (connection_id, group_id, name) in &groups {
                    insert_group_workspace(c, &ctx, connection_id, group_id, name.as_deref())?;
                }
                Ok(())
            })
            .await?;
        }
        if after.default_workspace_id != before.default_workspace_id || (after.auto_create && !before.auto_create) {
            recompute_org(&mut tx, KIND, &ctx, org_id, None).await?;
        }
        tx.commit().await?;
        Ok(after)
    }
}
