//! Roles, mappings, default roles, connection policy, protected users and the directory
//! ([`crate::roles`], [`crate::directory`]), written once for both stores: the bodies of their
//! [`crate::Store`] methods, on the grant engine of [`crate::grant_rows`].

use crate::backend::{Backend, SqlQuery, Tx, locking};
use crate::directory::{self, DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, GroupRef};
use crate::events;
use crate::grant_rows::{GrantBackend, GrantJob};
use crate::index::fold;
use crate::model::{Connection, ConnectionPolicy, WriteContext};
use crate::roles::{
    GrantKind, NewRole, NewRoleMapping, ProtectedUser, Role, RoleChange, RoleMapping, RolePreview, RoleUpdate,
};
use crate::rows::{
    Cols, conn_of, directory_group_of, directory_member_of, directory_user_of, is_scim_role, key_taken, mapping_of,
    mapping_taken, role_of, taken,
};
use crate::sql::SqlBuilder;
use crate::sqlite::now_us;
use crate::workspaces::{on_connection, with_org};
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::json;
use sqlx::AssertSqlSafe;

const MAPPING_SELECT: &str = "SELECT m.id, m.connection_id, m.role_id, ro.key AS role_key, m.match_kind,
        m.match_display, m.created_us FROM role_mappings m JOIN roles ro ON ro.id = m.role_id";

fn foreign_role(id: &str) -> StoreError {
    StoreError::Scim(ScimError::invalid_value(format!(
        "role \"{id}\" is not a role of this connection's organization"
    )))
}

/// Roles, their mappings, default roles, a connection's policy, protected users and the directory of
/// each organization ([`crate::roles`], [`crate::directory`]).
#[async_trait::async_trait]
pub trait RoleStore: Send + Sync {
    // --- roles, mappings, protected users and policy ([`roles`]) --------------------------------
    // Every change here recomputes the effective roles it affects in the same transaction.
    /// Creates a role; 409 when its key is taken in the organization (ignoring case).
    async fn create_role(&self, ctx: &WriteContext, new: NewRole) -> StoreResult<Role>;
    async fn list_roles(&self, org_id: &str) -> StoreResult<Vec<Role>>;
    /// A role of the organization by id or key (ignoring case).
    async fn get_role(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Role>>;
    async fn update_role(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        id: &str,
        update: RoleUpdate,
    ) -> StoreResult<Option<Role>>;
    /// Deletes a role with its mappings; users who had it lose it (with their events).
    async fn delete_role(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool>;
    /// Maps a group or app role to a role on a connection; 404 for an unknown connection, 400 for a
    /// role of another organization, 409 for a duplicate.
    async fn create_role_mapping(&self, ctx: &WriteContext, new: NewRoleMapping) -> StoreResult<RoleMapping>;
    async fn list_role_mappings(&self, connection_id: &str) -> StoreResult<Vec<RoleMapping>>;
    async fn delete_role_mapping(&self, ctx: &WriteContext, connection_id: &str, id: &str) -> StoreResult<bool>;
    async fn default_roles(&self, connection_id: &str) -> StoreResult<Vec<Role>>;
    /// What `change` would do to the effective roles of the connection's users, computed from one
    /// consistent read with the same rules as the change itself, writing nothing: per role, the
    /// users who would gain and lose it (counts, and the first `sample` of each by creation).
    /// `None` when the connection, or the mapping to remove, does not exist; 400 for a role of
    /// another organization and 409 for a mapping the connection has, as the change would answer.
    async fn preview_role_change(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>>;
    /// Replaces a connection's default roles. `None` when the connection does not exist; 400 for a
    /// role of another organization.
    async fn set_default_roles(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        role_ids: &[String],
    ) -> StoreResult<Option<Vec<Role>>>;
    /// Replaces a connection's attribute and lifecycle policy (validated by the caller).
    async fn set_connection_policy(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        policy: &ConnectionPolicy,
    ) -> StoreResult<Option<Connection>>;
    /// Protects a user (by e-mail address or userName) from deactivation and deletion by SCIM; 409
    /// when it already is.
    async fn add_protected_user(&self, ctx: &WriteContext, org_id: &str, email: &str) -> StoreResult<ProtectedUser>;
    async fn list_protected_users(&self, org_id: &str) -> StoreResult<Vec<ProtectedUser>>;
    async fn remove_protected_user(&self, ctx: &WriteContext, org_id: &str, email: &str) -> StoreResult<bool>;

    // --- the directory ([`directory`]) ----------------------------------------------------------
    /// Users of an organization (all its connections) matching `query`, by row key, with their
    /// effective roles (and groups, when asked).
    async fn directory_users(
        &self,
        org_id: &str,
        query: &DirectoryQuery,
        with_groups: bool,
    ) -> StoreResult<Vec<DirectoryUser>>;
    /// Live groups of an organization matching `query`, with member counts.
    async fn directory_groups(&self, org_id: &str, query: &GroupQuery) -> StoreResult<Vec<DirectoryGroup>>;
    /// Members of a group (from [`RoleStore::directory_groups`]) after `after_pk`.
    async fn directory_group_members(
        &self,
        group: &DirectoryGroup,
        after_pk: i64,
        limit: i64,
    ) -> StoreResult<Vec<DirectoryMember>>;
}

/// [`RoleStore`] for a [`Backend`]: the same statements and steps on both databases.
macro_rules! role_store {
    ($store:ty) => {
        impl $store {
            /// A statement built with its parameters ([`SqlBuilder`]).
            fn built(b: SqlBuilder) -> SqlQuery<$store> {
                sqlx::query_with(AssertSqlSafe(b.sql), <$store as Backend>::args(&b.binds))
            }

            /// A connection's row, locked for the write on PostgreSQL.
            pub(crate) async fn connection_locked(
                tx: &mut <$store as Backend>::Tx,
                id: &str,
            ) -> StoreResult<Option<Connection>> {
                let sql = locking!(
                    <$store as Backend>::DIALECT,
                    "SELECT * FROM scim_connections WHERE id = $1",
                    "FOR UPDATE"
                );
                let row = sqlx::query(sql).bind(id).fetch_optional(tx.conn()).await?;
                Ok(row.as_ref().map(conn_of))
            }

            async fn role_in(tx: &mut <$store as Backend>::Tx, org_id: &str, id: &str) -> StoreResult<Option<Role>> {
                let row = sqlx::query("SELECT * FROM roles WHERE org_id = $1 AND id = $2")
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
                Ok(row.as_ref().map(role_of))
            }

            async fn role_key(tx: &mut <$store as Backend>::Tx, org_id: &str, id: &str) -> StoreResult<String> {
                let key: Option<String> = sqlx::query_scalar("SELECT key FROM roles WHERE id = $1 AND org_id = $2")
                    .bind(id)
                    .bind(org_id)
                    .fetch_optional(tx.conn())
                    .await?;
                key.ok_or_else(|| foreign_role(id))
            }

        }

        #[async_trait::async_trait]
        impl RoleStore for $store {
            async fn create_role(&self, ctx: &WriteContext, new: NewRole) -> StoreResult<Role> {
                let role = Role {
                    id: uuid::Uuid::now_v7().to_string(),
                    org_id: new.org_id,
                    key: new.key,
                    name: new.name,
                    description: new.description,
                    created_us: now_us(),
                };
                let role = &role;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query(
                        "INSERT INTO roles (id, org_id, key, key_ci, name, description, created_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
                    .map_err(|e| key_taken(e, "role", &role.key))?;
                    let ctx = with_org(ctx, &role.org_id);
                    tx.record(&ctx, events::ROLE_CREATED, None, json!({"role": role})).await?;
                    if is_scim_role(&role.key) {
                        let job = GrantJob::Org { kind: GrantKind::Role, without: None };
                        <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    }
                    tx.commit().await?;
                    Ok(role.clone())
                })
                .await
            }

            async fn list_roles(&self, org_id: &str) -> StoreResult<Vec<Role>> {
                let rows = sqlx::query("SELECT * FROM roles WHERE org_id = $1 ORDER BY key_ci")
                    .bind(org_id)
                    .fetch_all(self.reads())
                    .await?;
                Ok(rows.iter().map(role_of).collect())
            }

            async fn get_role(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Role>> {
                let row = sqlx::query("SELECT * FROM roles WHERE org_id = $1 AND (id = $2 OR key_ci = $3)")
                    .bind(org_id)
                    .bind(id_or_key)
                    .bind(fold(id_or_key))
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.as_ref().map(role_of))
            }

            async fn update_role(
                &self,
                ctx: &WriteContext,
                org_id: &str,
                id: &str,
                update: RoleUpdate,
            ) -> StoreResult<Option<Role>> {
                let update = &update;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(before) = Self::role_in(&mut tx, org_id, id).await? else {
                        return Ok(None);
                    };
                    let mut after = before.clone();
                    if let Some(k) = &update.key {
                        after.key = k.clone();
                    }
                    if let Some(n) = &update.name {
                        after.name = n.clone();
                    }
                    if let Some(d) = &update.description {
                        after.description = d.clone();
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
                        .map_err(|e| key_taken(e, "role", &after.key))?;
                    let ctx = with_org(ctx, org_id);
                    let data = json!({"role": after, "before": before});
                    tx.record(&ctx, events::ROLE_UPDATED, None, data).await?;
                    let scim = is_scim_role(&before.key) || is_scim_role(&after.key);
                    if scim && fold(&before.key) != fold(&after.key) {
                        let job = GrantJob::Org { kind: GrantKind::Role, without: None };
                        <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    }
                    tx.commit().await?;
                    Ok(Some(after))
                })
                .await
            }

            async fn delete_role(
                &self,
                ctx: &WriteContext,
                org_id: &str,
                id: &str,
            ) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(role) = Self::role_in(&mut tx, org_id, id).await? else {
                        return Ok(false);
                    };
                    let ctx = with_org(ctx, org_id);
                    // Users lose the role (with their events) before it goes.
                    let job = GrantJob::Org { kind: GrantKind::Role, without: Some(id) };
                    <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    sqlx::query("DELETE FROM roles WHERE id = $1").bind(id).execute(tx.conn()).await?;
                    tx.record(&ctx, events::ROLE_DELETED, None, json!({"role": role})).await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn create_role_mapping(
                &self,
                ctx: &WriteContext,
                new: NewRoleMapping,
            ) -> StoreResult<RoleMapping> {
                let new = &new;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(conn) = Self::connection_locked(&mut tx, &new.connection_id).await? else {
                        return Err(StoreError::Scim(ScimError::not_found(format!(
                            "connection \"{}\" not found",
                            new.connection_id
                        ))));
                    };
                    let role_key = Self::role_key(&mut tx, &conn.org_id, &new.role_id).await?;
                    let mapping = RoleMapping {
                        id: uuid::Uuid::now_v7().to_string(),
                        connection_id: new.connection_id.clone(),
                        role_id: new.role_id.clone(),
                        role_key,
                        matches: new.matches.clone(),
                        created_us: now_us(),
                    };
                    sqlx::query(
                        "INSERT INTO role_mappings (id, connection_id, role_id, match_kind, match_value, match_display,
                         created_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
                    .map_err(mapping_taken)?;
                    let ctx = on_connection(ctx, &conn);
                    tx.record(&ctx, events::ROLE_MAPPING_CREATED, None, json!({"mapping": mapping})).await?;
                    let job = GrantJob::Mapping { kind: GrantKind::Role, matches: &mapping.matches };
                    <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    tx.commit().await?;
                    Ok(mapping)
                })
                .await
            }

            async fn list_role_mappings(&self, connection_id: &str) -> StoreResult<Vec<RoleMapping>> {
                let sql = format!("{MAPPING_SELECT} WHERE m.connection_id = $1 ORDER BY m.created_us, m.id");
                let rows = sqlx::query(AssertSqlSafe(sql)).bind(connection_id).fetch_all(self.reads()).await?;
                Ok(rows.iter().map(mapping_of).collect())
            }

            async fn delete_role_mapping(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                id: &str,
            ) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let sql = format!("{MAPPING_SELECT} WHERE m.connection_id = $1 AND m.id = $2");
                    let row = sqlx::query(AssertSqlSafe(sql))
                        .bind(connection_id)
                        .bind(id)
                        .fetch_optional(tx.conn())
                        .await?;
                    let Some(mapping) = row.as_ref().map(mapping_of) else {
                        return Ok(false);
                    };
                    let Some(conn) = Self::connection_locked(&mut tx, connection_id).await? else {
                        return Ok(false);
                    };
                    sqlx::query("DELETE FROM role_mappings WHERE id = $1").bind(id).execute(tx.conn()).await?;
                    let ctx = on_connection(ctx, &conn);
                    tx.record(&ctx, events::ROLE_MAPPING_DELETED, None, json!({"mapping": mapping})).await?;
                    let job = GrantJob::Mapping { kind: GrantKind::Role, matches: &mapping.matches };
                    <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn preview_role_change(
                &self,
                connection_id: &str,
                change: &RoleChange,
                sample: usize,
            ) -> StoreResult<Option<RolePreview>> {
                self.preview_grants(GrantKind::Role, connection_id, change, sample).await
            }

            async fn default_roles(&self, connection_id: &str) -> StoreResult<Vec<Role>> {
                let rows = sqlx::query(
                    "SELECT ro.* FROM connection_default_roles d JOIN roles ro ON ro.id = d.role_id
                     WHERE d.connection_id = $1 ORDER BY ro.key_ci",
                )
                .bind(connection_id)
                .fetch_all(self.reads())
                .await?;
                Ok(rows.iter().map(role_of).collect())
            }

            async fn set_default_roles(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                role_ids: &[String],
            ) -> StoreResult<Option<Vec<Role>>> {
                let done = self
                    .writing(move || async move {
                        let mut tx = self.begin().await?;
                        let Some(conn) = Self::connection_locked(&mut tx, connection_id).await? else {
                            return Ok(false);
                        };
                        let mut keys = Vec::new();
                        for r in role_ids {
                            keys.push(Self::role_key(&mut tx, &conn.org_id, r).await?);
                        }
                        sqlx::query("DELETE FROM connection_default_roles WHERE connection_id = $1")
                            .bind(connection_id)
                            .execute(tx.conn())
                            .await?;
                        for r in role_ids {
                            sqlx::query(
                                "INSERT INTO connection_default_roles (connection_id, role_id) VALUES ($1, $2)
                                 ON CONFLICT DO NOTHING",
                            )
                            .bind(connection_id)
                            .bind(r)
                            .execute(tx.conn())
                            .await?;
                        }
                        let ctx = on_connection(ctx, &conn);
                        let data = json!({"default_roles": keys});
                        tx.record(&ctx, events::CONNECTION_DEFAULT_ROLES_SET, None, data).await?;
                        let job = GrantJob::Connection { kind: GrantKind::Role };
                        <$store as GrantBackend>::grant_job(&mut tx, &ctx, job).await?;
                        tx.commit().await?;
                        Ok(true)
                    })
                    .await?;
                if !done {
                    return Ok(None);
                }
                Ok(Some(self.default_roles(connection_id).await?))
            }

            async fn set_connection_policy(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                policy: &ConnectionPolicy,
            ) -> StoreResult<Option<Connection>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut conn) = Self::connection_locked(&mut tx, connection_id).await? else {
                        return Ok(None);
                    };
                    let text = serde_json::to_string(policy).expect("a policy serializes");
                    sqlx::query("UPDATE scim_connections SET policy = $1 WHERE id = $2")
                        .bind(&text)
                        .bind(connection_id)
                        .execute(tx.conn())
                        .await?;
                    let ctx = on_connection(ctx, &conn);
                    let data = json!({"before": conn.policy, "after": policy});
                    tx.record(&ctx, events::CONNECTION_POLICY_SET, None, data).await?;
                    tx.connection_changed(connection_id);
                    tx.commit().await?;
                    conn.policy = policy.clone();
                    Ok(Some(conn))
                })
                .await
            }

            async fn add_protected_user(
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
                let p = &p;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query(
                        "INSERT INTO protected_users (org_id, email_ci, email, created_us) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(org_id)
                    .bind(fold(&p.email))
                    .bind(&p.email)
                    .bind(p.created_us)
                    .execute(tx.conn())
                    .await
                    .map_err(|e| {
                        taken(e, || {
                            format!("\"{}\" is already a protected user of this organization", p.email)
                        })
                    })?;
                    let data = json!({"email": p.email});
                    tx.record(&with_org(ctx, org_id), events::PROTECTED_USER_ADDED, None, data).await?;
                    tx.commit().await?;
                    Ok(p.clone())
                })
                .await
            }

            async fn list_protected_users(&self, org_id: &str) -> StoreResult<Vec<ProtectedUser>> {
                let rows = sqlx::query(
                    "SELECT org_id, email, created_us FROM protected_users WHERE org_id = $1 ORDER BY email_ci",
                )
                .bind(org_id)
                .fetch_all(self.reads())
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| ProtectedUser {
                        org_id: r.text("org_id"),
                        email: r.text("email"),
                        created_us: r.int("created_us"),
                    })
                    .collect())
            }

            async fn remove_protected_user(
                &self,
                ctx: &WriteContext,
                org_id: &str,
                email: &str,
            ) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let n = sqlx::query("DELETE FROM protected_users WHERE org_id = $1 AND email_ci = $2")
                        .bind(org_id)
                        .bind(fold(email.trim()))
                        .execute(tx.conn())
                        .await?
                        .rows_affected();
                    if n > 0 {
                        let data = json!({"email": email.trim()});
                        tx.record(&with_org(ctx, org_id), events::PROTECTED_USER_REMOVED, None, data).await?;
                    }
                    tx.commit().await?;
                    Ok(n > 0)
                })
                .await
            }

            async fn directory_users(
                &self,
                org_id: &str,
                query: &DirectoryQuery,
                with_groups: bool,
            ) -> StoreResult<Vec<DirectoryUser>> {
                let d = <$store as Backend>::DIALECT;
                let rows = Self::built(directory::users_sql(d, org_id, query)).fetch_all(self.reads()).await?;
                let mut users: Vec<DirectoryUser> = rows.iter().map(directory_user_of).collect();
                if with_groups {
                    for u in &mut users {
                        let rows = Self::built(directory::user_groups_sql(d, &u.connection_id, u.pk)).fetch_all(self.reads()).await?;
                        u.groups = Some(
                            rows.iter()
                                .map(|r| GroupRef {
                                    id: r.text("id"),
                                    display_name: r.opt_text("display_name"),
                                })
                                .collect(),
                        );
                    }
                }
                Ok(users)
            }

            async fn directory_groups(
                &self,
                org_id: &str,
                query: &GroupQuery,
            ) -> StoreResult<Vec<DirectoryGroup>> {
                let b = directory::groups_sql(<$store as Backend>::DIALECT, org_id, query);
                let rows = Self::built(b).fetch_all(self.reads()).await?;
                Ok(rows.iter().map(directory_group_of).collect())
            }

            async fn directory_group_members(
                &self,
                group: &DirectoryGroup,
                after_pk: i64,
                limit: i64,
            ) -> StoreResult<Vec<DirectoryMember>> {
                let d = <$store as Backend>::DIALECT;
                let b = directory::members_sql(d, &group.connection_id, group.pk, after_pk, limit);
                let rows = Self::built(b).fetch_all(self.reads()).await?;
                Ok(rows.iter().map(directory_member_of).collect())
            }
        }
    };
}

role_store!(crate::sqlite::SqliteStore);
role_store!(crate::postgres::PostgresStore);
