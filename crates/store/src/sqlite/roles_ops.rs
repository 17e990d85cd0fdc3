//! SQLite: roles, mappings, effective roles, protected users, connection policy and the directory.

use super::*;
use crate::directory::{self, DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, GroupRef};
use crate::index::fold;
use crate::roles::{
    ConfigBind, GrantKind, GroupFacts, NewRole, NewRoleMapping, ProtectedUser, Role, RoleChange, RoleConfig,
    RoleMapping, RoleMatch, RolePreview, RoleRows, RoleScope, RoleUpdate, UserFacts, UserRef, app_roles_of, diff_roles,
    recompute,
};
use crate::rows::{
    directory_group_of, directory_member_of, directory_user_of, is_scim_role, key_taken, mapping_of, role_of,
};
use std::collections::BTreeSet;

/// The role queries, run synchronously on the writer's handle inside its open transaction
/// ([`group_commit`]). The methods are `async` for the shared [`recompute`], but never wait, so
/// [`recompute_roles`] runs it to completion in one poll.
pub(super) struct Rows<'a>(pub &'a mut rusqlite::Connection);

/// A predicate on `r` (a user row of the connection) selecting the scope.
fn scope_sql(scope: &RoleScope) -> (&'static str, Option<Bind>) {
    match scope {
        RoleScope::Users(pks) => (
            "r.pk IN (SELECT value FROM json_each(?))",
            Some(Bind::Text(serde_json::to_string(pks).expect("integers serialize"))),
        ),
        RoleScope::MembersOf(g) => (
            "r.pk IN (SELECT member_pk FROM group_members WHERE group_pk = ?)",
            Some(Bind::Int(*g)),
        ),
        RoleScope::Connection => ("1 = 1", None),
    }
}

/// The connection id, then the scope's parameter if it has one.
fn scope_params<'a>(connection_id: &'a &'a str, bind: &'a Option<Bind>) -> Vec<&'a dyn rusqlite::ToSql> {
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![connection_id];
    if let Some(b) = bind {
        params.push(b);
    }
    params
}

/// The organization's grants of `kind` and the defaults and mappings that apply on the connection
/// (see [`RoleRows::role_config`]).
pub(super) fn role_config_on(
    c: &rusqlite::Connection,
    kind: GrantKind,
    org_id: &str,
    connection_id: &str,
) -> StoreResult<RoleConfig> {
    let [keys_sql, defaults_sql, mappings_sql] = kind.config_sql();
    let params = |binds: &[ConfigBind]| -> Vec<String> {
        binds
            .iter()
            .map(|b| match b {
                ConfigBind::Org => org_id.to_string(),
                ConfigBind::Connection => connection_id.to_string(),
            })
            .collect()
    };
    let grants: Vec<(String, String)> = c
        .prepare_cached(keys_sql.0)?
        .query_map(rusqlite::params_from_iter(params(keys_sql.1)), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if grants.is_empty() {
        return Ok(RoleConfig::default());
    }
    let defaults: Vec<String> = c
        .prepare_cached(defaults_sql.0)?
        .query_map(rusqlite::params_from_iter(params(defaults_sql.1)), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mappings: Vec<(String, String, String)> = c
        .prepare_cached(mappings_sql.0)?
        .query_map(rusqlite::params_from_iter(params(mappings_sql.1)), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(RoleConfig::of_kind(kind, grants, defaults, mappings))
}

/// The users in scope with their live groups (see [`RoleRows::user_facts`]).
fn user_facts_on(
    c: &rusqlite::Connection,
    connection_id: &str,
    scope: &RoleScope,
    with_app_roles: bool,
) -> StoreResult<Vec<UserFacts>> {
    let (pred, bind) = scope_sql(scope);
    let sql = format!(
        "SELECT r.pk, r.id, r.active, r.deleted_us, CASE WHEN {with_app_roles} THEN r.doc END AS doc
         FROM resources r WHERE r.connection_id = ? AND r.kind = 'User' AND {pred}"
    );
    let mut users: Vec<UserFacts> = c
        .prepare_cached(&sql)?
        .query_map(&scope_params(&connection_id, &bind)[..], |row| {
            let active: Option<i64> = row.get(2)?;
            let deleted: Option<i64> = row.get(3)?;
            let doc: Option<String> = row.get(4)?;
            Ok(UserFacts {
                pk: row.get(0)?,
                id: row.get(1)?,
                connection_id: connection_id.to_string(),
                active: deleted.is_none() && active != Some(0),
                app_roles: doc
                    .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                    .map(|d| app_roles_of(&d))
                    .unwrap_or_default(),
                groups: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    if users.is_empty() {
        return Ok(users);
    }
    let sql = format!(
        "SELECT m.member_pk, g.id, g.external_id, g.display_name_ci
         FROM group_members m JOIN resources g ON g.pk = m.group_pk AND g.deleted_us IS NULL
         WHERE m.member_pk IN (SELECT r.pk FROM resources r WHERE r.connection_id = ? AND r.kind = 'User' AND {pred})"
    );
    let index: HashMap<i64, usize> = users.iter().enumerate().map(|(i, u)| (u.pk, i)).collect();
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(&scope_params(&connection_id, &bind)[..])?;
    while let Some(row) = rows.next()? {
        let pk: i64 = row.get(0)?;
        if let Some(&i) = index.get(&pk) {
            users[i].groups.push(GroupFacts {
                id: row.get(1)?,
                external_id: row.get(2)?,
                name_ci: row.get(3)?,
            });
        }
    }
    Ok(users)
}

/// What `change` would do to the effective roles of the users of a connection, computed in one read
/// transaction on `c` (see [`crate::Store::preview_role_change`]).
pub(super) fn preview_on(
    c: &rusqlite::Connection,
    kind: GrantKind,
    connection_id: &str,
    change: &RoleChange,
    sample: usize,
) -> StoreResult<Option<RolePreview>> {
    use rusqlite::OptionalExtension;
    let Some(org_id) = c
        .prepare_cached("SELECT org_id FROM scim_connections WHERE id = ?")?
        .query_row([connection_id], |r| r.get::<_, String>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let before = role_config_on(c, kind, &org_id, connection_id)?;
    let removed = match change {
        RoleChange::RemoveMapping { mapping_id } => {
            let (_, grant_column) = kind.held();
            let m: Option<(String, String, String)> = c
                .prepare_cached(&format!(
                    "SELECT match_kind, match_value, {grant_column} FROM {} WHERE connection_id = ? AND id = ?",
                    kind.mappings_table()
                ))?
                .query_row([connection_id, mapping_id.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            match m {
                Some(m) => Some(m),
                None => return Ok(None),
            }
        }
        _ => None,
    };
    let after = before.changed(change, removed.as_ref())?;
    let users = user_facts_on(
        c,
        connection_id,
        &RoleScope::Connection,
        before.uses_app_roles() || after.uses_app_roles(),
    )?;
    let diff = diff_roles(&before, &after, users, sample);
    let pks = diff.sample_pks();
    let mut refs = HashMap::new();
    if !pks.is_empty() {
        let pks = serde_json::to_string(&pks).expect("integers serialize");
        let mut stmt =
            c.prepare_cached("SELECT pk, id, doc FROM resources WHERE pk IN (SELECT value FROM json_each(?))")?;
        let mut rows = stmt.query([pks])?;
        while let Some(row) = rows.next()? {
            let doc: String = row.get(2)?;
            let doc = serde_json::from_str::<Value>(&doc).unwrap_or(Value::Null);
            refs.insert(row.get::<_, i64>(0)?, UserRef::of(row.get(1)?, &doc));
        }
    }
    Ok(Some(diff.named(&refs)))
}

#[async_trait]
impl RoleRows for Rows<'_> {
    async fn role_config(&mut self, kind: GrantKind, org_id: &str, connection_id: &str) -> StoreResult<RoleConfig> {
        role_config_on(self.0, kind, org_id, connection_id)
    }

    async fn user_facts(
        &mut self,
        connection_id: &str,
        scope: &RoleScope,
        with_app_roles: bool,
    ) -> StoreResult<Vec<UserFacts>> {
        user_facts_on(self.0, connection_id, scope, with_app_roles)
    }

    async fn stored_roles(
        &mut self,
        kind: GrantKind,
        connection_id: &str,
        scope: &RoleScope,
    ) -> StoreResult<HashMap<i64, BTreeSet<String>>> {
        let (pred, bind) = scope_sql(scope);
        let (table, column) = kind.held();
        let sql = format!(
            "SELECT ur.user_pk, ur.{column} FROM {table} ur
             WHERE ur.user_pk IN (SELECT r.pk FROM resources r WHERE r.connection_id = ? AND r.kind = 'User' AND {pred})"
        );
        let mut out: HashMap<i64, BTreeSet<String>> = HashMap::new();
        let mut stmt = self.0.prepare_cached(&sql)?;
        let mut rows = stmt.query(&scope_params(&connection_id, &bind)[..])?;
        while let Some(row) = rows.next()? {
            out.entry(row.get(0)?).or_default().insert(row.get(1)?);
        }
        Ok(out)
    }

    async fn grant(&mut self, kind: GrantKind, user_pk: i64, role_ids: &[String]) -> StoreResult<()> {
        let (table, column) = kind.held();
        let mut stmt = self.0.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {table} (user_pk, {column}) VALUES (?, ?)"
        ))?;
        for r in role_ids {
            stmt.execute((user_pk, r))?;
        }
        Ok(())
    }

    async fn revoke(&mut self, kind: GrantKind, user_pk: i64, role_ids: &[String]) -> StoreResult<()> {
        let (table, column) = kind.held();
        let mut stmt = self
            .0
            .prepare_cached(&format!("DELETE FROM {table} WHERE user_pk = ? AND {column} = ?"))?;
        for r in role_ids {
            stmt.execute((user_pk, r))?;
        }
        Ok(())
    }

    async fn event(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: (ResourceKind, &str),
        data: Value,
    ) -> StoreResult<()> {
        resource_writes::insert_events(self.0, ctx, kind, Some(resource), &[data])
    }
}

/// Recomputes the effective grants of `kind` of the users in `scope` on one connection,
/// synchronously on the writer's handle (as if `without` granted nothing).
pub(super) fn recompute_sync(
    c: &mut rusqlite::Connection,
    kind: GrantKind,
    ctx: &WriteContext,
    org_id: &str,
    connection_id: &str,
    scope: RoleScope,
    without: Option<&str>,
) -> StoreResult<usize> {
    use futures::FutureExt;
    recompute(&mut Rows(c), kind, ctx, org_id, connection_id, scope, without)
        .now_or_never()
        .unwrap_or_else(|| {
            Err(StoreError::Scim(ScimError::internal(
                "role computation waited on the writer",
            )))
        })
}

/// Recomputes effective roles and workspaces on the writer's connection in its open transaction.
pub(super) fn recompute_roles(
    c: &mut rusqlite::Connection,
    ctx: &WriteContext,
    connection_id: &str,
    scope: RoleScope,
) -> StoreResult<usize> {
    let roles = recompute_sync(c, GrantKind::Role, ctx, &ctx.org_id, connection_id, scope.clone(), None)?;
    let workspaces = recompute_sync(c, GrantKind::Workspace, ctx, &ctx.org_id, connection_id, scope, None)?;
    Ok(roles + workspaces)
}

/// [`recompute_sync`] from a sqlx-side write transaction.
pub(super) async fn recompute_on(
    tx: &mut group_commit::WriteTx,
    kind: GrantKind,
    ctx: &WriteContext,
    org_id: &str,
    connection_id: &str,
    scope: RoleScope,
    without: Option<&str>,
) -> StoreResult<usize> {
    group_commit::on_connection(tx, |c| {
        recompute_sync(c, kind, ctx, org_id, connection_id, scope, without)
    })
    .await
}

/// Recomputes the effective grants of `kind` of every user of every connection of an
/// organization, as if `without` (about to be deleted) granted nothing.
pub(super) async fn recompute_org(
    tx: &mut group_commit::WriteTx,
    kind: GrantKind,
    ctx: &WriteContext,
    org_id: &str,
    without: Option<&str>,
) -> StoreResult<()> {
    let connections: Vec<String> = sqlx::query_scalar("SELECT id FROM scim_connections WHERE org_id = ?")
        .bind(org_id)
        .fetch_all(&mut **tx)
        .await?;
    for c in connections {
        recompute_on(tx, kind, ctx, org_id, &c, RoleScope::Connection, without).await?;
    }
    Ok(())
}

/// The groups of a connection a mapping can match (by id/externalId or by name), as row keys.
pub(super) async fn mapped_groups(
    tx: &mut SqliteConnection,
    connection_id: &str,
    m: &RoleMatch,
) -> StoreResult<Option<Vec<i64>>> {
    let value = m.folded();
    let pks: Vec<i64> = match m {
        RoleMatch::GroupId(raw) => {
            sqlx::query_scalar(
                "SELECT pk FROM resources WHERE connection_id = ? AND kind = 'Group' AND deleted_us IS NULL
                 AND (id = ? OR external_id = ? OR lower(id) = ? OR lower(external_id) = ?)",
            )
            .bind(connection_id)
            .bind(raw.trim())
            .bind(raw.trim())
            .bind(&value)
            .bind(&value)
            .fetch_all(&mut *tx)
            .await?
        }
        RoleMatch::GroupName(_) => {
            sqlx::query_scalar(
                "SELECT pk FROM resources WHERE connection_id = ? AND kind = 'Group' AND deleted_us IS NULL AND display_name_ci = ?",
            )
            .bind(connection_id)
            .bind(&value)
            .fetch_all(&mut *tx)
            .await?
        }
        RoleMatch::AppRole(_) => return Ok(None),
    };
    Ok(Some(pks))
}

/// Recomputes the users a mapping can affect: members of the matching groups, or every user of the
/// connection for app-role mappings.
pub(super) async fn recompute_for_mapping(
    tx: &mut group_commit::WriteTx,
    kind: GrantKind,
    ctx: &WriteContext,
    connection_id: &str,
    m: &RoleMatch,
) -> StoreResult<()> {
    match mapped_groups(tx, connection_id, m).await? {
        None => {
            recompute_on(tx, kind, ctx, &ctx.org_id, connection_id, RoleScope::Connection, None).await?;
        }
        Some(groups) => {
            for g in groups {
                recompute_on(tx, kind, ctx, &ctx.org_id, connection_id, RoleScope::MembersOf(g), None).await?;
            }
        }
    }
    Ok(())
}

const MAPPING_SELECT: &str = "SELECT m.id, m.connection_id, m.role_id, ro.key AS role_key, m.match_kind,
        m.match_display, m.created_us FROM role_mappings m JOIN roles ro ON ro.id = m.role_id";

impl SqliteStore {
    pub(super) async fn create_role_impl(&self, ctx: &WriteContext, new: NewRole) -> StoreResult<Role> {
        let role = Role {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: new.org_id,
            key: new.key,
            name: new.name,
            description: new.description,
            created_us: now_us(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO roles (id, org_id, key, key_ci, name, description, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&role.id)
        .bind(&role.org_id)
        .bind(&role.key)
        .bind(fold(&role.key))
        .bind(&role.name)
        .bind(&role.description)
        .bind(role.created_us)
        .execute(&mut *tx)
        .await
        .map_err(|e| key_taken(e, &role.key))?;
        let ctx = WriteContext {
            org_id: role.org_id.clone(),
            ..ctx.clone()
        };
        insert_event(&mut tx, &ctx, events::ROLE_CREATED, None, json!({"role": role})).await?;
        if is_scim_role(&role.key) {
            recompute_org(&mut tx, GrantKind::Role, &ctx, &role.org_id, None).await?;
        }
        tx.commit().await?;
        Ok(role)
    }

    pub(super) async fn list_roles_impl(&self, org_id: &str) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query("SELECT * FROM roles WHERE org_id = ? ORDER BY key_ci")
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(role_of).collect())
    }

    pub(super) async fn get_role_impl(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Role>> {
        let row = sqlx::query("SELECT * FROM roles WHERE org_id = ? AND (id = ? OR key_ci = ?)")
            .bind(org_id)
            .bind(id_or_key)
            .bind(fold(id_or_key))
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(role_of))
    }

    pub(super) async fn update_role_impl(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        id: &str,
        update: RoleUpdate,
    ) -> StoreResult<Option<Role>> {
        let mut tx = self.begin_write().await?;
        let Some(before) = sqlx::query("SELECT * FROM roles WHERE org_id = ? AND id = ?")
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(role_of)
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
        if let Some(d) = update.description {
            after.description = d;
        }
        if after == before {
            return Ok(Some(before));
        }
        sqlx::query("UPDATE roles SET key = ?, key_ci = ?, name = ?, description = ? WHERE id = ?")
            .bind(&after.key)
            .bind(fold(&after.key))
            .bind(&after.name)
            .bind(&after.description)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| key_taken(e, &after.key))?;
        let ctx = WriteContext {
            org_id: org_id.to_string(),
            ..ctx.clone()
        };
        insert_event(
            &mut tx,
            &ctx,
            events::ROLE_UPDATED,
            None,
            json!({"role": after, "before": before}),
        )
        .await?;
        if fold(&before.key) != fold(&after.key) && (is_scim_role(&before.key) || is_scim_role(&after.key)) {
            recompute_org(&mut tx, GrantKind::Role, &ctx, org_id, None).await?;
        }
        tx.commit().await?;
        Ok(Some(after))
    }

    pub(super) async fn delete_role_impl(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(role) = sqlx::query("SELECT * FROM roles WHERE org_id = ? AND id = ?")
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(role_of)
        else {
            return Ok(false);
        };
        let ctx = WriteContext {
            org_id: org_id.to_string(),
            ..ctx.clone()
        };
        // Users lose the role (with their events) before it goes.
        recompute_org(&mut tx, GrantKind::Role, &ctx, org_id, Some(id)).await?;
        sqlx::query("DELETE FROM roles WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_event(&mut tx, &ctx, events::ROLE_DELETED, None, json!({"role": role})).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn create_role_mapping_impl(
        &self,
        ctx: &WriteContext,
        new: NewRoleMapping,
    ) -> StoreResult<RoleMapping> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, &new.connection_id).await? else {
            return Err(StoreError::Scim(ScimError::not_found(format!(
                "connection \"{}\" not found",
                new.connection_id
            ))));
        };
        let role_key: Option<String> = sqlx::query_scalar("SELECT key FROM roles WHERE id = ? AND org_id = ?")
            .bind(&new.role_id)
            .bind(&conn.org_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(role_key) = role_key else {
            return Err(StoreError::Scim(ScimError::invalid_value(format!(
                "role \"{}\" is not a role of this connection's organization",
                new.role_id
            ))));
        };
        let mapping = RoleMapping {
            id: uuid::Uuid::now_v7().to_string(),
            connection_id: new.connection_id.clone(),
            role_id: new.role_id.clone(),
            role_key,
            matches: new.matches.clone(),
            created_us: now_us(),
        };
        sqlx::query(
            "INSERT INTO role_mappings (id, connection_id, role_id, match_kind, match_value, match_display, created_us)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&mapping.id)
        .bind(&mapping.connection_id)
        .bind(&mapping.role_id)
        .bind(mapping.matches.kind())
        .bind(mapping.matches.folded())
        .bind(mapping.matches.value())
        .bind(mapping.created_us)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e.as_database_error() {
            Some(d) if d.is_unique_violation() => {
                StoreError::Scim(ScimError::conflict("this mapping already exists on the connection"))
            }
            _ => StoreError::Database(e),
        })?;
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        insert_event(
            &mut tx,
            &ctx,
            events::ROLE_MAPPING_CREATED,
            None,
            json!({"mapping": mapping}),
        )
        .await?;
        recompute_for_mapping(&mut tx, GrantKind::Role, &ctx, &conn.id, &mapping.matches).await?;
        tx.commit().await?;
        Ok(mapping)
    }

    pub(super) async fn list_role_mappings_impl(&self, connection_id: &str) -> StoreResult<Vec<RoleMapping>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{MAPPING_SELECT} WHERE m.connection_id = ? ORDER BY m.created_us, m.id"
        )))
        .bind(connection_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(mapping_of).collect())
    }

    pub(super) async fn delete_role_mapping_impl(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(mapping) = sqlx::query(AssertSqlSafe(format!(
            "{MAPPING_SELECT} WHERE m.connection_id = ? AND m.id = ?"
        )))
        .bind(connection_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(mapping_of) else {
            return Ok(false);
        };
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM role_mappings WHERE id = ?")
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
            events::ROLE_MAPPING_DELETED,
            None,
            json!({"mapping": mapping}),
        )
        .await?;
        recompute_for_mapping(&mut tx, GrantKind::Role, &ctx, &conn.id, &mapping.matches).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn preview_role_change_impl(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        let (connection_id, change) = (connection_id.to_string(), change.clone());
        self.inline
            .read(move |c| preview_on(c, GrantKind::Role, &connection_id, &change, sample))
            .await
    }

    pub(super) async fn default_roles_impl(&self, connection_id: &str) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT ro.* FROM connection_default_roles d JOIN roles ro ON ro.id = d.role_id
             WHERE d.connection_id = ? ORDER BY ro.key_ci",
        )
        .bind(connection_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(role_of).collect())
    }

    pub(super) async fn set_default_roles_impl(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        role_ids: &[String],
    ) -> StoreResult<Option<Vec<Role>>> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        for r in role_ids {
            let key: Option<String> = sqlx::query_scalar("SELECT key FROM roles WHERE id = ? AND org_id = ?")
                .bind(r)
                .bind(&conn.org_id)
                .fetch_optional(&mut *tx)
                .await?;
            match key {
                Some(k) => keys.push(k),
                None => {
                    return Err(StoreError::Scim(ScimError::invalid_value(format!(
                        "role \"{r}\" is not a role of this connection's organization"
                    ))));
                }
            }
        }
        sqlx::query("DELETE FROM connection_default_roles WHERE connection_id = ?")
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        for r in role_ids {
            sqlx::query("INSERT OR IGNORE INTO connection_default_roles (connection_id, role_id) VALUES (?, ?)")
                .bind(connection_id)
                .bind(r)
                .execute(&mut *tx)
                .await?;
        }
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        insert_event(
            &mut tx,
            &ctx,
            events::CONNECTION_DEFAULT_ROLES_SET,
            None,
            json!({"default_roles": keys}),
        )
        .await?;
        recompute_on(
            &mut tx,
            GrantKind::Role,
            &ctx,
            &conn.org_id,
            &conn.id,
            RoleScope::Connection,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(self.default_roles_impl(connection_id).await?))
    }

    pub(super) async fn set_connection_policy_impl(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        policy: &ConnectionPolicy,
    ) -> StoreResult<Option<Connection>> {
        let mut tx = self.begin_write().await?;
        let Some(mut conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(None);
        };
        let text = serde_json::to_string(policy).expect("a policy serializes");
        sqlx::query("UPDATE scim_connections SET policy = ? WHERE id = ?")
            .bind(&text)
            .bind(connection_id)
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
            events::CONNECTION_POLICY_SET,
            None,
            json!({"before": conn.policy, "after": policy}),
        )
        .await?;
        tx.commit().await?;
        conn.policy = policy.clone();
        Ok(Some(conn))
    }

    pub(super) async fn add_protected_user_impl(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        email: &str,
    ) -> StoreResult<ProtectedUser> {
        let p = ProtectedUser {
            org_id: org_id.to_string(),
            email: email.trim().to_string(),
            created_us: now_us(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO protected_users (org_id, email_ci, email, created_us) VALUES (?, ?, ?, ?)")
            .bind(org_id)
            .bind(fold(&p.email))
            .bind(&p.email)
            .bind(p.created_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e.as_database_error() {
                Some(d) if d.is_unique_violation() => StoreError::Scim(ScimError::conflict(format!(
                    "\"{}\" is already a protected user of this organization",
                    p.email
                ))),
                _ => StoreError::Database(e),
            })?;
        let ctx = WriteContext {
            org_id: org_id.to_string(),
            ..ctx.clone()
        };
        insert_event(
            &mut tx,
            &ctx,
            events::PROTECTED_USER_ADDED,
            None,
            json!({"email": p.email}),
        )
        .await?;
        tx.commit().await?;
        Ok(p)
    }

    pub(super) async fn list_protected_users_impl(&self, org_id: &str) -> StoreResult<Vec<ProtectedUser>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT org_id, email, created_us FROM protected_users WHERE org_id = ? ORDER BY email_ci")
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(org_id, email, created_us)| ProtectedUser {
                org_id,
                email,
                created_us,
            })
            .collect())
    }

    pub(super) async fn remove_protected_user_impl(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        email: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM protected_users WHERE org_id = ? AND email_ci = ?")
            .bind(org_id)
            .bind(fold(email.trim()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            let ctx = WriteContext {
                org_id: org_id.to_string(),
                ..ctx.clone()
            };
            insert_event(
                &mut tx,
                &ctx,
                events::PROTECTED_USER_REMOVED,
                None,
                json!({"email": email.trim()}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    pub(super) async fn directory_users_impl(
        &self,
        org_id: &str,
        query: &DirectoryQuery,
        with_groups: bool,
    ) -> StoreResult<Vec<DirectoryUser>> {
        let b = directory::users_sql(Dialect::Sqlite, org_id, query);
        let rows = sqlx::query_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
            .fetch_all(&self.reader)
            .await?;
        let mut users: Vec<DirectoryUser> = rows.iter().map(directory_user_of).collect();
        if with_groups {
            for u in &mut users {
                let b = directory::user_groups_sql(Dialect::Sqlite, u.pk);
                let groups: Vec<(String, Option<String>)> =
                    sqlx::query_as_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
                        .fetch_all(&self.reader)
                        .await?;
                u.groups = Some(
                    groups
                        .into_iter()
                        .map(|(id, display_name)| GroupRef { id, display_name })
                        .collect(),
                );
            }
        }
        Ok(users)
    }

    pub(super) async fn directory_groups_impl(
        &self,
        org_id: &str,
        query: &GroupQuery,
    ) -> StoreResult<Vec<DirectoryGroup>> {
        let b = directory::groups_sql(Dialect::Sqlite, org_id, query);
        let rows = sqlx::query_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(directory_group_of).collect())
    }

    pub(super) async fn directory_group_members_impl(
        &self,
        group_pk: i64,
        after_pk: i64,
        limit: i64,
    ) -> StoreResult<Vec<DirectoryMember>> {
        let b = directory::members_sql(Dialect::Sqlite, group_pk, after_pk, limit);
        let rows = sqlx::query_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(directory_member_of).collect())
    }
}
