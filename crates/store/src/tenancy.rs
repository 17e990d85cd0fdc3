//! Tenancy and keys: organizations, SCIM connections and their tokens, operator API keys and the
//! settings of the service ([`TenancyStore`]), written once for both databases on [`Backend`].
//! What a change to a connection means (its events, the token rotation rules) is
//! [`crate::connection_ops`]; this module reads and writes the rows.

use crate::backend::{Backend, Tx, locking};
use crate::connection_ops::{self, TokenOp};
use crate::events;
use crate::model::{
    ApiKey, Connection, ConnectionStatus, ConnectionUpdate, IdpKind, NewApiKey, NewConnection, Organization,
    WriteContext,
};
use crate::rows::{Cols, conn_of};
use crate::service_settings::{self, ServiceSetting};
use crate::sessions::api_key_of;
use crate::sqlite::now_us;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use rollcall_scim::ScimError;
use serde_json::json;

/// Organizations, connections, operator API keys and the settings of the service. The writes take
/// the caller's context (`by`) for the actor, User-Agent and request id of the events they record;
/// the events name the organization and connection of the object.
#[async_trait]
pub trait TenancyStore: Send + Sync {
    /// Creates an organization; 409 when the name is taken.
    async fn create_organization(&self, by: &WriteContext, name: &str) -> StoreResult<Organization>;
    async fn list_organizations(&self) -> StoreResult<Vec<Organization>>;
    /// Up to `limit` organizations with an id greater than `after` (all, without it), by id: ids are
    /// UUIDv7, so this is creation order.
    async fn list_organizations_after(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<Organization>>;
    async fn get_organization(&self, id_or_name: &str) -> StoreResult<Option<Organization>>;
    async fn count_organizations(&self) -> StoreResult<i64>;
    /// Renames an organization; `None` when it does not exist, 409 when the name is taken.
    async fn rename_organization(&self, by: &WriteContext, id: &str, name: &str) -> StoreResult<Option<Organization>>;
    /// Deletes an organization with its connections, their users, groups and membership. Returns
    /// false when it does not exist.
    async fn delete_organization(&self, by: &WriteContext, id: &str) -> StoreResult<bool>;

    /// Creates a connection whose bearer token hashes to `token_hash`.
    async fn create_connection(&self, by: &WriteContext, new: NewConnection) -> StoreResult<Connection>;
    async fn list_connections(&self, org_id: Option<&str>) -> StoreResult<Vec<Connection>>;
    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>>;
    /// The connection one of whose tokens (current, or next during a rotation) hashes to
    /// `token_hash`, whatever its status: the caller refuses disabled connections.
    async fn connection_by_token_hash(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Connection>>;
    /// Replaces every token of a connection (and ends a rotation in progress) with this one.
    /// Returns false when the connection does not exist.
    async fn set_connection_token(
        &self,
        by: &WriteContext,
        id: &str,
        token_hash: &[u8; 32],
        token_prefix: &str,
    ) -> StoreResult<bool>;
    /// Deletes a connection with all its users, groups and membership.
    async fn delete_connection(&self, by: &WriteContext, id: &str) -> StoreResult<bool>;
    /// Changes a connection's name, identity provider or status. `None` when it does not exist.
    async fn update_connection(
        &self,
        by: &WriteContext,
        id: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Option<Connection>>;
    /// Starts a token rotation: `next_hash` works beside the current token until the rotation is
    /// completed or cancelled. A connection without a token (after
    /// [`TenancyStore::revoke_connection_tokens`]) takes it as its token at once. 409 when a
    /// rotation is already in progress.
    async fn start_token_rotation(
        &self,
        by: &WriteContext,
        id: &str,
        next_hash: &[u8; 32],
        next_prefix: &str,
    ) -> StoreResult<Option<Connection>>;
    /// Ends a rotation: the next token becomes the only one. 409 when no rotation is in progress.
    async fn complete_token_rotation(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>>;
    /// Abandons a rotation: the next token stops working. 409 when no rotation is in progress.
    async fn cancel_token_rotation(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>>;
    /// Removes every token of a connection at once; it keeps its users and groups, and no request
    /// is accepted until a new token is issued.
    async fn revoke_connection_tokens(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>>;
    /// Records that a SCIM request authenticated on the connection, and the identity provider
    /// recognised from it (`detected`, if any). Activity raises no event; a recognised identity
    /// provider other than the one recorded, and other than the configured one, raises
    /// `connection.idp_detected` once. Callers throttle it.
    async fn record_connection_request(
        &self,
        id: &str,
        at_us: i64,
        user_agent: Option<&str>,
        detected: Option<IdpKind>,
    ) -> StoreResult<()>;

    /// A setting of the service ([`service_settings`]), `None` when never written.
    async fn service_setting(&self, key: &str) -> StoreResult<Option<ServiceSetting>>;
    /// Writes a setting of the service (no event: it is configuration a node reports, not a change
    /// of the directory).
    async fn set_service_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    async fn create_api_key(&self, by: &WriteContext, new: NewApiKey) -> StoreResult<ApiKey>;
    /// The key whose hash is `key_hash`, revoked or not.
    async fn api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a key (a no-op for a revoked one) and ends its console sessions, in one transaction.
    /// `None` when it does not exist.
    async fn revoke_api_key(&self, by: &WriteContext, id: &str) -> StoreResult<Option<ApiKey>>;
}

fn org_of(row: &impl Cols) -> Organization {
    Organization {
        id: row.text("id"),
        name: row.text("name"),
        created_us: row.int("created_us"),
    }
}

fn org_name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Scim(ScimError::conflict(format!(
            "an organization named \"{name}\" already exists"
        ))),
        _ => StoreError::Database(e),
    }
}

/// The write context of an event about a connection, made by `by`.
fn connection_ctx(by: &WriteContext, c: &Connection) -> WriteContext {
    by.about(&c.org_id, &c.id)
}

/// A new connection's row, as created.
fn new_connection(new: NewConnection) -> Connection {
    Connection {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: new.org_id,
        name: new.name,
        idp: new.idp,
        kind: Default::default(),
        status: ConnectionStatus::Active,
        token_prefix: Some(new.token_prefix),
        token_hash: Some(new.token_hash),
        next_token_prefix: None,
        next_token_hash: None,
        rotation_started_us: None,
        created_us: now_us(),
        last_request_us: None,
        last_user_agent: None,
        detected_idp: None,
        detected_idp_first_seen_us: None,
        detected_idp_last_seen_us: None,
        policy: Default::default(),
        debug_logging: false,
        staged_us: None,
    }
}

/// [`TenancyStore`] for a [`Backend`]: the same statements and steps on both databases.
macro_rules! tenancy_store {
    ($store:ty) => {
        impl $store {
            /// Applies a token change to a connection in one write transaction.
            async fn token_op(&self, by: &WriteContext, id: &str, op: TokenOp<'_>) -> StoreResult<Option<Connection>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut c) = <$store>::connection_locked(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    let (kind, data) = connection_ops::apply_token_op(&mut c, op, now_us())?;
                    sqlx::query(
                        "UPDATE scim_connections SET token_hash = $1, token_prefix = $2, next_token_hash = $3,
                           next_token_prefix = $4, rotation_started_us = $5 WHERE id = $6",
                    )
                    .bind(c.token_hash.as_ref().map(|h| h.as_slice()))
                    .bind(&c.token_prefix)
                    .bind(c.next_token_hash.as_ref().map(|h| h.as_slice()))
                    .bind(&c.next_token_prefix)
                    .bind(c.rotation_started_us)
                    .bind(id)
                    .execute(tx.conn())
                    .await?;
                    tx.record(&connection_ctx(by, &c), kind, None, data).await?;
                    tx.connection_changed(id);
                    tx.commit().await?;
                    Ok(Some(c))
                })
                .await
            }
        }

        #[async_trait]
        impl TenancyStore for $store {
            async fn create_organization(&self, by: &WriteContext, name: &str) -> StoreResult<Organization> {
                let org = Organization {
                    id: uuid::Uuid::now_v7().to_string(),
                    name: name.to_string(),
                    created_us: now_us(),
                };
                let o = &org;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query("INSERT INTO organizations (id, name, created_us) VALUES ($1, $2, $3)")
                        .bind(&o.id)
                        .bind(&o.name)
                        .bind(o.created_us)
                        .execute(tx.conn())
                        .await
                        .map_err(|e| org_name_taken(e, &o.name))?;
                    let ctx = by.about(&o.id, "");
                    tx.record(&ctx, events::ORGANIZATION_CREATED, None, json!({"name": o.name}))
                        .await?;
                    tx.commit().await
                })
                .await?;
                Ok(org)
            }

            async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
                let rows = sqlx::query(concat!("SELECT id, name, created_us FROM organizations", " ORDER BY created_us, id"))
                    .fetch_all(self.reads())
                    .await?;
                Ok(rows.iter().map(org_of).collect())
            }

            async fn get_organization(&self, id_or_name: &str) -> StoreResult<Option<Organization>> {
                let row = sqlx::query(concat!(
                    "SELECT id, name, created_us FROM organizations",
                    " WHERE id = $1 OR name = $1 LIMIT 1"
                ))
                .bind(id_or_name)
                .fetch_optional(self.reads())
                .await?;
                Ok(row.as_ref().map(org_of))
            }

            async fn count_organizations(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
                    .fetch_one(self.reads())
                    .await?)
            }

            async fn list_organizations_after(
                &self,
                after: Option<&str>,
                limit: i64,
            ) -> StoreResult<Vec<Organization>> {
                let rows = sqlx::query(concat!(
                    "SELECT id, name, created_us FROM organizations",
                    " WHERE (CAST($1 AS TEXT) IS NULL OR id > CAST($1 AS TEXT)) ORDER BY id LIMIT $2"
                ))
                .bind(after)
                .bind(limit.max(0))
                .fetch_all(self.reads())
                .await
                .map_err(<$store as Backend>::read_error)?;
                Ok(rows.iter().map(org_of).collect())
            }

            async fn rename_organization(
                &self,
                by: &WriteContext,
                id: &str,
                name: &str,
            ) -> StoreResult<Option<Organization>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let sql = locking!(
                        <$store as Backend>::DIALECT,
                        "SELECT id, name, created_us FROM organizations WHERE id = $1",
                        "FOR UPDATE"
                    );
                    let row = sqlx::query(sql).bind(id).fetch_optional(tx.conn()).await?;
                    let Some(mut org) = row.as_ref().map(org_of) else {
                        return Ok(None);
                    };
                    if org.name != name {
                        sqlx::query("UPDATE organizations SET name = $1 WHERE id = $2")
                            .bind(name)
                            .bind(id)
                            .execute(tx.conn())
                            .await
                            .map_err(|e| org_name_taken(e, name))?;
                        let data = json!({"changed": {"name": {"before": org.name, "after": name}}});
                        tx.record(&by.about(&org.id, ""), events::ORGANIZATION_UPDATED, None, data)
                            .await?;
                        org.name = name.to_string();
                    }
                    tx.commit().await?;
                    Ok(Some(org))
                })
                .await
            }

            async fn delete_organization(&self, by: &WriteContext, id: &str) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let sql = locking!(
                        <$store as Backend>::DIALECT,
                        "SELECT name FROM organizations WHERE id = $1",
                        "FOR UPDATE"
                    );
                    let name: Option<String> = sqlx::query_scalar(sql).bind(id).fetch_optional(tx.conn()).await?;
                    let Some(name) = name else { return Ok(false) };
                    let sql = locking!(
                        <$store as Backend>::DIALECT,
                        "SELECT id FROM scim_connections WHERE org_id = $1 ORDER BY created_us, id",
                        "FOR UPDATE"
                    );
                    let connections: Vec<String> =
                        sqlx::query_scalar(sql).bind(id).fetch_all(tx.conn()).await?;
                    // Connections, resources, e-mail rows and membership go by cascade.
                    sqlx::query("DELETE FROM organizations WHERE id = $1")
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    for connection_id in connections {
                        let ctx = by.about(id, &connection_id);
                        tx.record(&ctx, events::CONNECTION_DELETED, None, json!({})).await?;
                        tx.connection_changed(&connection_id);
                    }
                    let ctx = by.about(id, "");
                    tx.record(&ctx, events::ORGANIZATION_DELETED, None, json!({"name": name}))
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn create_connection(&self, by: &WriteContext, new: NewConnection) -> StoreResult<Connection> {
                let c = new_connection(new);
                let cr = &c;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query(
                        "INSERT INTO scim_connections (id, org_id, name, idp, status, token_hash, token_prefix,
                             created_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&cr.id)
                    .bind(&cr.org_id)
                    .bind(&cr.name)
                    .bind(cr.idp.as_str())
                    .bind(cr.status.as_str())
                    .bind(cr.token_hash.as_ref().map(|h| h.as_slice()))
                    .bind(&cr.token_prefix)
                    .bind(cr.created_us)
                    .execute(tx.conn())
                    .await?;
                    let data = json!({"name": cr.name, "idp": cr.idp});
                    tx.record(&connection_ctx(by, cr), events::CONNECTION_CREATED, None, data)
                        .await?;
                    tx.commit().await
                })
                .await?;
                Ok(c)
            }

            async fn list_connections(&self, org_id: Option<&str>) -> StoreResult<Vec<Connection>> {
                let rows = sqlx::query(
                    "SELECT * FROM scim_connections WHERE (CAST($1 AS TEXT) IS NULL OR org_id = CAST($1 AS TEXT))
                     ORDER BY created_us, id",
                )
                .bind(org_id)
                .fetch_all(self.reads())
                .await?;
                Ok(rows.iter().map(conn_of).collect())
            }

            async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
                let row = sqlx::query("SELECT * FROM scim_connections WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.as_ref().map(conn_of))
            }

            async fn connection_by_token_hash(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Connection>> {
                let row =
                    sqlx::query("SELECT * FROM scim_connections WHERE token_hash = $1 OR next_token_hash = $1 LIMIT 1")
                        .bind(token_hash.as_slice())
                        .fetch_optional(self.reads())
                        .await
                        .map_err(<$store as Backend>::read_error)?;
                Ok(row.as_ref().map(conn_of))
            }

            async fn set_connection_token(
                &self,
                by: &WriteContext,
                id: &str,
                token_hash: &[u8; 32],
                token_prefix: &str,
            ) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(c) = <$store>::connection_locked(&mut tx, id).await? else {
                        return Ok(false);
                    };
                    sqlx::query(
                        "UPDATE scim_connections SET token_hash = $1, token_prefix = $2, next_token_hash = NULL,
                           next_token_prefix = NULL, rotation_started_us = NULL WHERE id = $3",
                    )
                    .bind(token_hash.as_slice())
                    .bind(token_prefix)
                    .bind(id)
                    .execute(tx.conn())
                    .await?;
                    let data = json!({"token_prefix": token_prefix});
                    tx.record(&connection_ctx(by, &c), events::CONNECTION_TOKEN_ROTATED, None, data)
                        .await?;
                    tx.connection_changed(id);
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn delete_connection(&self, by: &WriteContext, id: &str) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(c) = <$store>::connection_locked(&mut tx, id).await? else {
                        return Ok(false);
                    };
                    sqlx::query("DELETE FROM scim_connections WHERE id = $1")
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    tx.record(&connection_ctx(by, &c), events::CONNECTION_DELETED, None, json!({}))
                        .await?;
                    tx.connection_changed(id);
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn update_connection(
                &self,
                by: &WriteContext,
                id: &str,
                update: ConnectionUpdate,
            ) -> StoreResult<Option<Connection>> {
                let update = &update;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut c) = <$store>::connection_locked(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    let changes = connection_ops::apply_update(&mut c, update);
                    if !changes.is_empty() {
                        sqlx::query(
                            "UPDATE scim_connections SET name = $1, idp = $2, status = $3, debug_logging = $4
                             WHERE id = $5",
                        )
                        .bind(&c.name)
                        .bind(c.idp.as_str())
                        .bind(c.status.as_str())
                        .bind(c.debug_logging)
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                        for (kind, data) in changes {
                            tx.record(&connection_ctx(by, &c), kind, None, data).await?;
                        }
                        tx.connection_changed(id);
                    }
                    tx.commit().await?;
                    Ok(Some(c))
                })
                .await
            }

            async fn start_token_rotation(
                &self,
                by: &WriteContext,
                id: &str,
                next_hash: &[u8; 32],
                next_prefix: &str,
            ) -> StoreResult<Option<Connection>> {
                let op = TokenOp::Start {
                    hash: next_hash,
                    prefix: next_prefix,
                };
                self.token_op(by, id, op).await
            }

            async fn complete_token_rotation(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>> {
                self.token_op(by, id, TokenOp::Complete).await
            }

            async fn cancel_token_rotation(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>> {
                self.token_op(by, id, TokenOp::Cancel).await
            }

            async fn revoke_connection_tokens(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>> {
                self.token_op(by, id, TokenOp::Revoke).await
            }

            async fn record_connection_request(
                &self,
                id: &str,
                at_us: i64,
                user_agent: Option<&str>,
                detected: Option<IdpKind>,
            ) -> StoreResult<()> {
                let Some(detected) = detected else {
                    // Never moves backwards (several nodes record the same connection). One
                    // statement, no explicit lock: a concurrent writer of the same row only delays it.
                    let q = sqlx::query(
                        "UPDATE scim_connections SET last_request_us = $1, last_user_agent = $2
                         WHERE id = $3 AND (last_request_us IS NULL OR last_request_us < $1)",
                    )
                    .bind(at_us)
                    .bind(user_agent.map(str::to_string))
                    .bind(id.to_string());
                    return self.write_one(q).await.map(drop);
                };
                // The row locked, the last request and the detection written, and
                // `connection.idp_detected` when it changed, in one transaction.
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut c) = <$store>::connection_locked(&mut tx, id).await? else {
                        return Ok(());
                    };
                    let event = connection_ops::apply_detection(&mut c, detected, at_us, user_agent);
                    sqlx::query(
                        "UPDATE scim_connections SET
                            last_request_us = CASE WHEN last_request_us IS NULL OR last_request_us < $1 THEN $1
                                                   ELSE last_request_us END,
                            last_user_agent = CASE WHEN last_request_us IS NULL OR last_request_us < $1 THEN $2
                                                   ELSE last_user_agent END,
                            detected_idp = $3, detected_idp_first_seen_us = $4, detected_idp_last_seen_us = $5
                         WHERE id = $6",
                    )
                    .bind(at_us)
                    .bind(user_agent)
                    .bind(c.detected_idp.map(IdpKind::as_str))
                    .bind(c.detected_idp_first_seen_us)
                    .bind(c.detected_idp_last_seen_us)
                    .bind(id)
                    .execute(tx.conn())
                    .await?;
                    if let Some((kind, data)) = event {
                        let ctx = connection_ctx(&WriteContext::system(), &c);
                        tx.record(&ctx, kind, None, data).await?;
                    }
                    tx.commit().await
                })
                .await
            }

            async fn service_setting(&self, key: &str) -> StoreResult<Option<ServiceSetting>> {
                let row = sqlx::query(service_settings::GET)
                    .bind(key)
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.map(|r| ServiceSetting {
                    value: r.text("value"),
                    updated_us: r.int("updated_us"),
                }))
            }

            async fn set_service_setting(&self, key: &str, value: &str) -> StoreResult<()> {
                let q = sqlx::query(service_settings::PUT)
                    .bind(key.to_string())
                    .bind(value.to_string())
                    .bind(now_us());
                self.write_one(q).await.map(drop)
            }

            async fn create_api_key(&self, by: &WriteContext, new: NewApiKey) -> StoreResult<ApiKey> {
                let key = ApiKey {
                    id: uuid::Uuid::now_v7().to_string(),
                    name: new.name,
                    key_prefix: new.key_prefix,
                    key_hash: new.key_hash,
                    created_us: now_us(),
                    revoked_us: None,
                };
                let k = &key;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query(
                        "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_us) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&k.id)
                    .bind(&k.name)
                    .bind(k.key_hash.as_slice())
                    .bind(&k.key_prefix)
                    .bind(k.created_us)
                    .execute(tx.conn())
                    .await?;
                    let data = json!({"api_key_id": k.id, "name": k.name, "key_prefix": k.key_prefix});
                    tx.record(&by.about("", ""), events::API_KEY_CREATED, None, data).await?;
                    tx.commit().await
                })
                .await?;
                Ok(key)
            }

            async fn api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
                let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
                    .bind(key_hash.as_slice())
                    .fetch_optional(self.reads())
                    .await
                    .map_err(<$store as Backend>::read_error)?;
                Ok(row.map(|r| api_key_of(&r, "")))
            }

            async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
                let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_us, id")
                    .fetch_all(self.reads())
                    .await?;
                Ok(rows.iter().map(|r| api_key_of(r, "")).collect())
            }

            async fn revoke_api_key(&self, by: &WriteContext, id: &str) -> StoreResult<Option<ApiKey>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let sql = locking!(<$store as Backend>::DIALECT, "SELECT * FROM api_keys WHERE id = $1", "FOR UPDATE");
                    let row = sqlx::query(sql).bind(id).fetch_optional(tx.conn()).await?;
                    let Some(mut key) = row.map(|r| api_key_of(&r, "")) else {
                        return Ok(None);
                    };
                    if key.revoked_us.is_none() {
                        let now = now_us();
                        sqlx::query("UPDATE api_keys SET revoked_us = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(tx.conn())
                            .await?;
                        let data = json!({"api_key_id": key.id, "name": key.name, "key_prefix": key.key_prefix});
                        tx.record(&by.about("", ""), events::API_KEY_REVOKED, None, data).await?;
                        key.revoked_us = Some(now);
                    }
                    // Also for a key revoked before: no console session of it may outlive this call.
                    sqlx::query("DELETE FROM browser_sessions WHERE kind = 'console' AND subject_id = $1")
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await?;
                    Ok(Some(key))
                })
                .await
            }
        }
    };
}

tenancy_store!(crate::sqlite::SqliteStore);
tenancy_store!(crate::postgres::PostgresStore);
