//! PostgreSQL: roles, mappings, effective roles, protected users, connection policy and the directory.

use super::*;
use crate::directory::{self, DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, GroupRef};
use crate::directory_sync::DirectorySql;
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

/// The role queries on an open write transaction.
pub(super) struct Rows<'a>(pub &'a mut WriteTx);

/// What the scope predicate binds (as `$2`, after the connection id).
enum ScopeBind {
    Pks(Vec<i64>),
    Group(i64),
    Nothing,
}

/// A predicate on `r` (a user row of the connection) selecting the scope.
fn scope_sql(scope: &RoleScope) -> (&'static str, ScopeBind) {
    match scope {
        RoleScope::Users(pks) => ("r.pk = ANY($2)", ScopeBind::Pks(pks.clone())),
        RoleScope::MembersOf(g) => (
            "r.pk IN (SELECT member_pk FROM group_members WHERE group_pk = $2)",
            ScopeBind::Group(*g),
        ),
        RoleScope::Connection => ("true", ScopeBind::Nothing),
    }
}

fn scope_args(connection_id: &str, bind: ScopeBind) -> PgArguments {
    let mut args = PgArguments::default();
    args.add(connection_id.to_string()).expect("bind");
    match bind {
        ScopeBind::Pks(p) => args.add(p).expect("bind"),
        ScopeBind::Group(g) => args.add(g).expect("bind"),
        ScopeBind::Nothing => {}
    }
    args
}

#[async_trait]
impl RoleRows for Rows<'_> {
    async fn role_config(&mut self, kind: GrantKind, org_id: &str, connection_id: &str) -> StoreResult<RoleConfig> {
        let [keys_sql, defaults_sql, mappings_sql] = kind.config_sql();
        let args = |binds: &[ConfigBind]| {
            let mut args = PgArguments::default();
            for b in binds {
                let v = match b {
                    ConfigBind::Org => org_id,
                    ConfigBind::Connection => connection_id,
                };
                args.add(v.to_string()).expect("bind");
            }
            args
        };
        let grants: Vec<(String, String)> =
            sqlx::query_as_with(AssertSqlSafe(DirectorySql::pg(keys_sql.0)), args(keys_sql.1))
                .fetch_all(self.0.conn())
                .await?;
        if grants.is_empty() {
            return Ok(RoleConfig::default());
        }
        let defaults: Vec<String> =
            sqlx::query_scalar_with(AssertSqlSafe(DirectorySql::pg(defaults_sql.0)), args(defaults_sql.1))
                .fetch_all(self.0.conn())
                .await?;
        let mappings: Vec<(String, String, String)> =
            sqlx::query_as_with(AssertSqlSafe(DirectorySql::pg(mappings_sql.0)), args(mappings_sql.1))
                .fetch_all(self.0.conn())
                .await?;
        Ok(RoleConfig::of_kind(kind, grants, defaults, mappings))
    }

    async fn user_facts(
        &mut self,
        connection_id: &str,
        scope: &RoleScope,
        with_app_roles: bool,
    ) -> StoreResult<Vec<UserFacts>> {
        let (pred, bind) = scope_sql(scope);
        let sql = format!(
            "SELECT r.pk, r.id, r.active, r.deleted_us, CASE WHEN {with_app_roles} THEN r.doc::text END AS doc
             FROM resources r WHERE r.connection_id = $1 AND r.kind = 'User' AND {pred} ORDER BY r.pk"
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), scope_args(connection_id, bind))
            .fetch_all(self.0.conn())
            .await?;
        let mut users: Vec<UserFacts> = rows
            .iter()
            .map(|row| {
                let active: Option<bool> = row.get("active");
                let deleted: Option<i64> = row.get("deleted_us");
                let doc: Option<String> = row.get("doc");
                UserFacts {
                    pk: row.get("pk"),
                    id: row.get("id"),
                    connection_id: connection_id.to_string(),
                    active: deleted.is_none() && active != Some(false),
                    app_roles: doc
                        .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                        .map(|d| app_roles_of(&d))
                        .unwrap_or_default(),
                    groups: Vec::new(),
                }
            })
            .collect();
        if users.is_empty() {
            return Ok(users);
        }
        let (pred, bind) = scope_sql(scope);
        let sql = format!(
            "SELECT m.member_pk, g.id, g.external_id, g.display_name_ci
             FROM group_members m JOIN resources g ON g.pk = m.group_pk AND g.deleted_us IS NULL
             WHERE m.member_pk IN (SELECT r.pk FROM resources r WHERE r.connection_id = $1 AND r.kind = 'User' AND {pred})"
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), scope_args(connection_id, bind))
            .fetch_all(self.0.conn())
            .await?;
        let index: HashMap<i64, usize> = users.iter().enumerate().map(|(i, u)| (u.pk, i)).collect();
        for row in rows {
            let pk: i64 = row.get(0);
            if let Some(&i) = index.get(&pk) {
                users[i].groups.push(GroupFacts {
                    id: row.get(1),
                    external_id: row.get(2),
                    name_ci: row.get(3),
                });
            }
        }
        Ok(users)
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
             WHERE ur.user_pk IN (SELECT r.pk FROM resources r WHERE r.connection_id = $1 AND r.kind = 'User' AND {pred})"
        );
        let rows: Vec<(i64, String)> = sqlx::query_as_with(AssertSqlSafe(sql), scope_args(connection_id, bind))
            .fetch_all(self.0.conn())
            .await?;
        let mut out: HashMap<i64, BTreeSet<String>> = HashMap::new();
        for (pk, role) in rows {
            out.entry(pk).or_default().insert(role);
        }
        Ok(out)
    }

    async fn grant(&mut self, kind: GrantKind, user_pk: i64, role_ids: &[String]) -> StoreResult<()> {
        if !role_ids.is_empty() {
            let (table, column) = kind.held();
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (user_pk, {column}) SELECT $1, r FROM UNNEST($2::text[]) r ON CONFLICT DO NOTHING"
            )))
            .bind(user_pk)
            .bind(role_ids)
            .execute(self.0.conn())
            .await?;
        }
        Ok(())
    }

    async fn revoke(&mut self, kind: GrantKind, user_pk: i64, role_ids: &[String]) -> StoreResult<()> {
        if !role_ids.is_empty() {
            let (table, column) = kind.held();
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_pk = $1 AND {column} = ANY($2)"
            )))
            .bind(user_pk)
            .bind(role_ids)
            .execute(self.0.conn())
            .await?;
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
        self.0.event(ctx, kind, Some(resource), data);
        Ok(())
    }
}

/// Recomputes effective roles and workspaces on one connection in the open transaction.
pub(super) async fn recompute_roles(
    tx: &mut WriteTx,
    ctx: &WriteContext,
    connection_id: &str,
    scope: RoleScope,
) -> StoreResult<usize> {
    let roles = recompute(
        &mut Rows(tx),
        GrantKind::Role,
        ctx,
        &ctx.org_id,
        connection_id,
        scope.clone(),
        None,
    )
    .await?;
    let workspaces = recompute(
        &mut Rows(tx),
        GrantKind::Workspace,
        ctx,
        &ctx.org_id,
        connection_id,
        scope,
        None,
    )
    .await?;
    Ok(roles + workspaces)
}

/// Recomputes the effective grants of `kind` of every user of every connection of an
/// organization, as if `without` (about to be deleted) granted nothing.
pub(super) async fn recompute_org(
    tx: &mut WriteTx,
    kind: GrantKind,
    ctx: &WriteContext,
    org_id: &str,
    without: Option<&str>,
) -> StoreResult<()> {
    let connections: Vec<String> = sqlx::query_scalar("SELECT id FROM scim_connections WHERE org_id = $1")
        .bind(org_id)
        .fetch_all(tx.conn())
        .await?;
    for c in connections {
        recompute(&mut Rows(tx), kind, ctx, org_id, &c, RoleScope::Connection, without).await?;
    }
    Ok(())
}

/// The groups of a connection a mapping can match (by id/externalId or by name), as row keys.
pub(super) async fn mapped_groups(
    tx: &mut WriteTx,
    connection_id: &str,
    m: &RoleMatch,
) -> StoreResult<Option<Vec<i64>>> {
    let value = m.folded();
    let pks: Vec<i64> = match m {
        RoleMatch::GroupId(raw) => {
            sqlx::query_scalar(
                "SELECT pk FROM resources WHERE connection_id = $1 AND kind = 'Group' AND deleted_us IS NULL
                 AND (id = $2 OR external_id = $3 OR lower(id) = $4 OR lower(external_id) = $5)",
            )
            .bind(connection_id)
            .bind(raw.trim())
            .bind(raw.trim())
            .bind(&value)
            .bind(&value)
            .fetch_all(tx.conn())
            .await?
        }
        RoleMatch::GroupName(_) => {
            sqlx::query_scalar(
                "SELECT pk FROM resources WHERE connection_id = $1 AND kind = 'Group' AND deleted_us IS NULL AND display_name_ci = $2",
            )
            .bind(connection_id)
            .bind(&value)
            .fetch_all(tx.conn())
            .await?
        }
        RoleMatch::AppRole(_) => return Ok(None),
    };
    Ok(Some(pks))
}

/// Recomputes the users a mapping can affect: members of the matching groups, or every user of the
/// connection for app-role mappings.
pub(super) async fn recompute_for_mapping(
    tx: &mut WriteTx,
    kind: GrantKind,
    ctx: &WriteContext,
    connection_id: &str,
    m: &RoleMatch,
) -> StoreResult<()> {
    match mapped_groups(tx, connection_id, m).await? {
        None => {
            recompute(
                &mut Rows(tx),
                kind,
                ctx,
                &ctx.org_id,
                connection_id,
                RoleScope::Connection,
                None,
            )
            .await?;
        }
        Some(groups) => {
            for g in groups {
                recompute(
                    &mut Rows(tx),
                    kind,
                    ctx,
                    &ctx.org_id,
                    connection_id,
                    RoleScope::MembersOf(g),
                    None,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// The protected e-mail address (or userName) that user `pk` of the organization matches, if any.
pub(super) async fn protected_match(
    tx: &mut PgConnection,
    org_id: &str,
    pk: i64,
    doc: &Value,
) -> StoreResult<Option<String>> {
    let user_name = crate::rows::folded_user_name(doc);
    Ok(sqlx::query_scalar(
        "SELECT email FROM protected_users WHERE org_id = $1
           AND (email_ci = $2 OR email_ci IN (SELECT value_ci FROM resource_emails WHERE resource_pk = $3)) LIMIT 1",
    )
    .bind(org_id)
    .bind(user_name)
    .bind(pk)
    .fetch_optional(&mut *tx)
    .await?)
}

const MAPPING_SELECT: &str = "SELECT m.id, m.connection_id, m.role_id, ro.key AS role_key, m.match_kind,
        m.match_display, m.created_us FROM role_mappings m JOIN roles ro ON ro.id = m.role_id";

impl PostgresStore {
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
            "INSERT INTO roles (id, org_id, key, key_ci, name, description, created_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&role.id)
        .bind(&role.org_id)
        .bind(&role.key)
        .bind(fold(&role.key))
        .bind(&role.name)
        .bind(&role.description)
        .bind(role.created_us)
        .execute(tx.conn())
        .await
        .map_err(|e| key_taken(e, &role.key))?;
        let ctx = WriteContext {
            org_id: role.org_id.clone(),
            ..ctx.clone()
        };
        tx.event(&ctx, events::ROLE_CREATED, None, json!({"role": role}));
        if is_scim_role(&role.key) {
            recompute_org(&mut tx, GrantKind::Role, &ctx, &role.org_id, None).await?;
        }
        tx.commit().await?;
        Ok(role)
    }

    pub(super) async fn list_roles_impl(&self, org_id: &str) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query("SELECT * FROM roles WHERE org_id = $1 ORDER BY key_ci")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(role_of).collect())
    }

    pub(super) async fn get_role_impl(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Role>> {
        let row = sqlx::query("SELECT * FROM roles WHERE org_id = $1 AND (id = $2 OR key_ci = $3)")
            .bind(org_id)
            .bind(id_or_key)
            .bind(fold(id_or_key))
            .fetch_optional(&self.pool)
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
        let Some(before) = sqlx::query("SELECT * FROM roles WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .fetch_optional(tx.conn())
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
        sqlx::query("UPDATE roles SET key = $1, key_ci = $2, name = $3, description = $4 WHERE id = $5")
            .bind(&after.key)
            .bind(fold(&after.key))
            .bind(&after.name)
            .bind(&after.description)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(|e| key_taken(e, &after.key))?;
        let ctx = WriteContext {
            org_id: org_id.to_string(),
            ..ctx.clone()
        };
        tx.event(
            &ctx,
            events::ROLE_UPDATED,
            None,
            json!({"role": after, "before": before}),
        );
        if fold(&before.key) != fold(&after.key) && (is_scim_role(&before.key) || is_scim_role(&after.key)) {
            recompute_org(&mut tx, GrantKind::Role, &ctx, org_id, None).await?;
        }
        tx.commit().await?;
        Ok(Some(after))
    }

    pub(super) async fn delete_role_impl(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(role) = sqlx::query("SELECT * FROM roles WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .fetch_optional(tx.conn())
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
        sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.event(&ctx, events::ROLE_DELETED, None, json!({"role": role}));
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn create_role_mapping_impl(
        &self,
        ctx: &WriteContext,
        new: NewRoleMapping,
    ) -> StoreResult<RoleMapping> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = lock_connection(tx.conn(), &new.connection_id).await? else {
            return Err(StoreError::Scim(ScimError::not_found(format!(
                "connection \"{}\" not found",
                new.connection_id
            ))));
        };
        let role_key: Option<String> = sqlx::query_scalar("SELECT key FROM roles WHERE id = $1 AND org_id = $2")
            .bind(&new.role_id)
            .bind(&conn.org_id)
            .fetch_optional(tx.conn())
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&mapping.id)
        .bind(&mapping.connection_id)
        .bind(&mapping.role_id)
        .bind(mapping.matches.kind())
        .bind(mapping.matches.folded())
        .bind(mapping.matches.value())
        .bind(mapping.created_us)
        .execute(tx.conn())
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
        tx.event(&ctx, events::ROLE_MAPPING_CREATED, None, json!({"mapping": mapping}));
        recompute_for_mapping(&mut tx, GrantKind::Role, &ctx, &conn.id, &mapping.matches).await?;
        tx.commit().await?;
        Ok(mapping)
    }

    pub(super) async fn list_role_mappings_impl(&self, connection_id: &str) -> StoreResult<Vec<RoleMapping>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{MAPPING_SELECT} WHERE m.connection_id = $1 ORDER BY m.created_us, m.id"
        )))
        .bind(connection_id)
        .fetch_all(&self.pool)
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
            "{MAPPING_SELECT} WHERE m.connection_id = $1 AND m.id = $2"
        )))
        .bind(connection_id)
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .as_ref()
        .map(mapping_of) else {
            return Ok(false);
        };
        let Some(conn) = lock_connection(tx.conn(), connection_id).await? else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM role_mappings WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        tx.event(&ctx, events::ROLE_MAPPING_DELETED, None, json!({"mapping": mapping}));
        recompute_for_mapping(&mut tx, GrantKind::Role, &ctx, &conn.id, &mapping.matches).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// See [`Store::preview_role_change`].
    pub(super) async fn preview_role_change_impl(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        self.preview_grant_change(GrantKind::Role, connection_id, change, sample)
            .await
    }

    /// What `change` would do to the effective grants of `kind` on a connection: one read-only
    /// transaction with one snapshot, rolled back.
    pub(super) async fn preview_grant_change(
        &self,
        kind: GrantKind,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(tx.conn())
            .await?;
        let org_id: Option<String> = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = $1")
            .bind(connection_id)
            .fetch_optional(tx.conn())
            .await?;
        let Some(org_id) = org_id else {
            return Ok(None);
        };
        let before = Rows(&mut tx).role_config(kind, &org_id, connection_id).await?;
        let removed = match change {
            RoleChange::RemoveMapping { mapping_id } => {
                let (_, grant_column) = kind.held();
                let m: Option<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT match_kind, match_value, {grant_column} FROM {} WHERE connection_id = $1 AND id = $2",
                    kind.mappings_table()
                )))
                .bind(connection_id)
                .bind(mapping_id)
                .fetch_optional(tx.conn())
                .await?;
                match m {
                    Some(m) => Some(m),
                    None => return Ok(None),
                }
            }
            _ => None,
        };
        let after = before.changed(change, removed.as_ref())?;
        let users = Rows(&mut tx)
            .user_facts(
                connection_id,
                &RoleScope::Connection,
                before.uses_app_roles() || after.uses_app_roles(),
            )
            .await?;
        let diff = diff_roles(&before, &after, users, sample);
        let pks = diff.sample_pks();
        let mut refs = HashMap::new();
        if !pks.is_empty() {
            let rows: Vec<(i64, String, String)> =
                sqlx::query_as("SELECT pk, id, doc::text FROM resources WHERE pk = ANY($1)")
                    .bind(&pks)
                    .fetch_all(tx.conn())
                    .await?;
            for (pk, id, doc) in rows {
                let doc = serde_json::from_str::<Value>(&doc).unwrap_or(Value::Null);
                refs.insert(pk, UserRef::of(id, &doc));
            }
        }
        // Nothing was written: the transaction ends with a rollback when dropped.
        drop(tx);
        Ok(Some(diff.named(&refs)))
    }

    pub(super) async fn default_roles_impl(&self, connection_id: &str) -> StoreResult<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT ro.* FROM connection_default_roles d JOIN roles ro ON ro.id = d.role_id
             WHERE d.connection_id = $1 ORDER BY ro.key_ci",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
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
        let Some(conn) = lock_connection(tx.conn(), connection_id).await? else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        for r in role_ids {
            let key: Option<String> = sqlx::query_scalar("SELECT key FROM roles WHERE id = $1 AND org_id = $2")
                .bind(r)
                .bind(&conn.org_id)
                .fetch_optional(tx.conn())
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
        sqlx::query("DELETE FROM connection_default_roles WHERE connection_id = $1")
            .bind(connection_id)
            .execute(tx.conn())
            .await?;
        for r in role_ids {
            sqlx::query(
                "INSERT INTO connection_default_roles (connection_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(connection_id)
            .bind(r)
            .execute(tx.conn())
            .await?;
        }
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        tx.event(
            &ctx,
            events::CONNECTION_DEFAULT_ROLES_SET,
            None,
            json!({"default_roles": keys}),
        );
        recompute(
            &mut Rows(&mut tx),
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
        let Some(mut conn) = lock_connection(tx.conn(), connection_id).await? else {
            return Ok(None);
        };
        let text = serde_json::to_string(policy).expect("a policy serializes");
        sqlx::query("UPDATE scim_connections SET policy = $1 WHERE id = $2")
            .bind(&text)
            .bind(connection_id)
            .execute(tx.conn())
            .await?;
        let ctx = WriteContext {
            org_id: conn.org_id.clone(),
            connection_id: conn.id.clone(),
            ..ctx.clone()
        };
        tx.event(
            &ctx,
            events::CONNECTION_POLICY_SET,
            None,
            json!({"before": conn.policy, "after": policy}),
        );
        tx.connection_changed(connection_id);
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
        sqlx::query("INSERT INTO protected_users (org_id, email_ci, email, created_us) VALUES ($1, $2, $3, $4)")
            .bind(org_id)
            .bind(fold(&p.email))
            .bind(&p.email)
            .bind(p.created_us)
            .execute(tx.conn())
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
        tx.event(&ctx, events::PROTECTED_USER_ADDED, None, json!({"email": p.email}));
        tx.commit().await?;
        Ok(p)
    }

    pub(super) async fn list_protected_users_impl(&self, org_id: &str) -> StoreResult<Vec<ProtectedUser>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT org_id, email, created_us FROM protected_users WHERE org_id = $1 ORDER BY email_ci")
                .bind(org_id)
                .fetch_all(&self.pool)
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
        let n = sqlx::query("DELETE FROM protected_users WHERE org_id = $1 AND email_ci = $2")
            .bind(org_id)
            .bind(fold(email.trim()))
            .execute(tx.conn())
            .await?
            .rows_affected();
        if n > 0 {
            let ctx = WriteContext {
                org_id: org_id.to_string(),
                ..ctx.clone()
            };
            tx.event(
                &ctx,
                events::PROTECTED_USER_REMOVED,
                None,
                json!({"email": email.trim()}),
            );
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
        let b = directory::users_sql(Dialect::Postgres, org_id, query);
        let rows = sqlx::query_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
            .fetch_all(&self.pool)
            .await?;
        let mut users: Vec<DirectoryUser> = rows.iter().map(directory_user_of).collect();
        if with_groups {
            for u in &mut users {
                let b = directory::user_groups_sql(Dialect::Postgres, u.pk);
                let groups: Vec<(String, Option<String>)> =
                    sqlx::query_as_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
                        .fetch_all(&self.pool)
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
        let b = directory::groups_sql(Dialect::Postgres, org_id, query);
        let rows = sqlx::query_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(directory_group_of).collect())
    }

    pub(super) async fn directory_group_members_impl(
        &self,
        group_pk: i64,
        after_pk: i64,
        limit: i64,
    ) -> StoreResult<Vec<DirectoryMember>> {
        let b = directory::members_sql(Dialect::Postgres, group_pk, after_pk, limit);
        let rows = sqlx::query_with(AssertSqlSafe(b.sql.clone()), bind_all(&b.binds))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(directory_member_of).collect())
    }
}
