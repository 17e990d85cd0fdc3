//! The embedded SQLite store: WAL mode, one writer connection taking `BEGIN IMMEDIATE` transactions
//! that concurrent writes share (group commit, [`group_commit`]), a pool of reader connections.

use crate::connection_ops::{self, TokenOp};
use crate::events;
use crate::index::{IndexFields, search_doc};
use crate::model::*;
use crate::roles::{
    NewRole, NewRoleMapping, ProtectedUser, Role, RoleChange, RoleMapping, RolePreview, RoleScope, RoleUpdate,
};
use crate::rows::{conn_of, hash_col};
use crate::sql::{Bind, Dialect, SqlBuilder, compile_filter, order_by};
use crate::{DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery};
use crate::{EventQuery, Mutation, RequestLogEntry, Store, StoreError, StoreResult};

pub mod backup;
mod grant_db;
pub(crate) mod group_commit;
pub(crate) mod guard_ops;
mod inline_read;
pub mod lock;
pub(crate) mod request_log;
mod resource_writes;
use async_trait::async_trait;
use resource_writes::Guarded;
use rollcall_scim::ScimError;
use rollcall_scim::filter::Filter;
use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_scim::schema::{ResourceType, SchemaRegistry};
use rusqlite::OptionalExtension;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Row, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Page cache of the writer connection (negative: KiB). Every connection has a cache of its own,
/// holding copies of the same pages, so the readers' are small ([`inline_read::READER_CACHE_KIB`])
/// and the operating system's file cache does the rest. The writer's is 8 MiB, as large as a
/// reader's: at the end of every write transaction SQLite walks the whole hash table of the
/// writer's cache (`pcache1TruncateUnsafe`, on the single commit path), and with 32 MiB that walk
/// was 5 % of the server's CPU in a sync; a 100,000-user Okta sync took 52.2 s with 8 MiB against
/// 55.1 s with 32 MiB (Entra, the next 100,000 users: 48.3 against 61.3 s). At most 8 + 6 × 8 MiB
/// of page cache in all.
const WRITER_CACHE_KIB: &str = "-8192";

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Current time in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) reader: SqlitePool,
    /// Resource reads on the calling thread (see [`inline_read`]).
    inline: Arc<inline_read::InlineReader>,
    /// Runs every write transaction on the writer connection, committing concurrent writes together.
    group: Arc<group_commit::GroupWriter>,
    registry: Arc<SchemaRegistry>,
    /// The keys secrets are sealed and opened with ([`crate::secrets`]).
    pub(crate) secrets: crate::secrets::SecretKeys,
    /// For `sqlite::memory:`: the temporary directory of the database, removed on drop.
    _temporary: Option<Arc<TemporaryDatabase>>,
    /// Held while the store lives ([`lock`]): shared, or exclusive ([`SqliteStore::open_exclusive`]).
    _lock: Option<Arc<lock::DatabaseLock>>,
}

/// A database file in a directory of its own under the system's temporary directory.
struct TemporaryDatabase {
    dir: std::path::PathBuf,
    file: std::path::PathBuf,
}

impl TemporaryDatabase {
    fn create() -> StoreResult<TemporaryDatabase> {
        let dir = std::env::temp_dir().join(format!("rollcall-memory-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Scim(ScimError::internal(format!(
                "cannot create a temporary database in {}: {e}",
                dir.display()
            )))
        })?;
        let file = dir.join("rollcall.db");
        Ok(TemporaryDatabase { dir, file })
    }
}

impl Drop for TemporaryDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url` (`sqlite://path` or a plain
    /// path). `sqlite::memory:` is a throwaway database in a temporary file, removed when the last
    /// clone of the store is dropped (the inline readers need a file to share with the writer).
    pub async fn open(url: &str, registry: Arc<SchemaRegistry>) -> StoreResult<SqliteStore> {
        SqliteStore::open_locked(url, registry, false).await
    }

    /// Opens the database as [`SqliteStore::open`] does, but to this store alone: refused while
    /// any other store (a running `rollcall serve`, another command) has it open, and keeps them
    /// out until it is dropped. For work that running servers must not see half done.
    pub async fn open_exclusive(url: &str, registry: Arc<SchemaRegistry>) -> StoreResult<SqliteStore> {
        SqliteStore::open_locked(url, registry, true).await
    }

    async fn open_locked(url: &str, registry: Arc<SchemaRegistry>, exclusive: bool) -> StoreResult<SqliteStore> {
        let (url, temporary) = if url.contains(":memory:") {
            let temp = TemporaryDatabase::create()?;
            (format!("sqlite://{}", temp.file.display()), Some(Arc::new(temp)))
        } else if url.starts_with("sqlite:") {
            (url.to_string(), None)
        } else {
            (format!("sqlite://{url}"), None)
        };
        let opts = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: every acknowledged write is on disk before the response goes out.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", WRITER_CACHE_KIB)
            .pragma("temp_store", "memory")
            // Deleted and overwritten content is zeroed, so that what was deleted (a webhook's
            // signing secret, an erased user) leaves the file once the WAL is checkpointed. `ON`,
            // not `FAST`: `FAST` skips pages that it would cost a write to clear (overflow pages,
            // pages put on the free list), where deleted values were found to stay.
            .pragma("secure_delete", "ON");
        let db_file = opts.get_filename().to_path_buf();
        let held = if exclusive {
            Some(lock::exclusive(&db_file)?)
        } else {
            lock::shared(&db_file)?
        };
        // The one writer connection, kept by the group writer for the life of the store.
        let mut writer = opts.connect().await?;
        MIGRATOR.run(&mut writer).await?;
        let inline = inline_read::InlineReader::open(opts.get_filename())?;
        // Resource reads go through `inline`; this pool serves the event feed, webhooks and
        // management reads.
        let reader = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(1)
            .connect_with(opts.read_only(true).pragma("cache_size", inline_read::READER_CACHE_KIB))
            .await?;
        Ok(SqliteStore {
            reader,
            inline,
            group: Arc::new(group_commit::GroupWriter::new(writer)),
            registry,
            secrets: Default::default(),
            _temporary: temporary,
            _lock: held.map(Arc::new),
        })
    }

    /// The store with the keys secrets are sealed and opened with (see [`Store::set_secret_keys`]).
    pub fn with_secrets(self, keys: crate::secrets::SecretBox) -> SqliteStore {
        self.secrets.set(keys);
        self
    }

    fn rt(&self, kind: ResourceKind) -> &ResourceType {
        self.registry
            .resource_type(kind.as_str())
            .expect("standard resource types are registered")
    }

    /// Starts a write transaction (see [`group_commit`]): dereferences to the connection; ends with
    /// `commit()`, or rolls back when dropped.
    pub(crate) async fn begin_write(&self) -> StoreResult<group_commit::WriteTx> {
        self.group.begin().await
    }
}

fn org_of(row: &SqliteRow) -> Organization {
    Organization {
        id: row.get("id"),
        name: row.get("name"),
        created_us: row.get("created_us"),
    }
}

fn api_key_of(row: &SqliteRow) -> ApiKey {
    ApiKey {
        id: row.get("id"),
        name: row.get("name"),
        key_prefix: row.get("key_prefix"),
        key_hash: hash_col(row, "key_hash").unwrap_or_default(),
        created_us: row.get("created_us"),
        revoked_us: row.get("revoked_us"),
    }
}

/// The write context of an event about a connection, made by `by`.
fn connection_ctx(by: &WriteContext, c: &Connection) -> WriteContext {
    by.about(&c.org_id, &c.id)
}

/// Reads a connection inside a write transaction.
async fn connection_in(tx: &mut SqliteConnection, id: &str) -> StoreResult<Option<Connection>> {
    let row = sqlx::query("SELECT * FROM scim_connections WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.as_ref().map(conn_of))
}

fn org_name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Scim(ScimError::conflict(format!(
            "an organization named \"{name}\" already exists"
        ))),
        _ => StoreError::Database(e),
    }
}

/// A row of [`RESOURCE_COLS`] read by the inline reader: its `pk` and the resource.
fn resource_of_inline(row: &rusqlite::Row<'_>, kind: ResourceKind) -> StoreResult<(i64, StoredResource)> {
    let doc = row.get_ref(2)?;
    let doc = doc
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, doc.data_type(), Box::new(e)))?;
    let res = stored_resource(row.get(1)?, kind, doc, [row.get(3)?, row.get(4)?, row.get(5)?])?;
    Ok((row.get(0)?, res))
}

/// The document as stored: without `id` and `meta`, keys in canonical order.
fn store_order(doc: &mut Value) {
    if let Value::Object(m) = doc {
        m.remove("id");
        m.remove("meta");
        *m = rollcall_scim::resource::canonical_key_order(std::mem::take(m));
    }
}

/// A resource from its stored columns; `[version, created_us, modified_us]`. The document stays
/// text until something reads it ([`ResourceDoc`]).
fn stored_resource(id: String, kind: ResourceKind, doc: &str, times: [i64; 3]) -> StoreResult<StoredResource> {
    let doc = ResourceDoc::from_stored_text(doc.to_string(), &id)
        .map_err(|e| ScimError::internal(format!("stored document is not JSON: {e}")))?;
    let [version, created_us, modified_us] = times;
    Ok(StoredResource {
        id,
        kind,
        doc,
        version,
        created_us,
        modified_us,
        related: None,
    })
}

/// Reads `[[id, kind, display], ...]` as built by `json_group_array` in [`related_column`].
fn parse_related(text: Option<&str>) -> Vec<MemberView> {
    MemberView::from_rows(text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default())
}

const RESOURCE_COLS: &str = "r.pk, r.id, r.doc, r.version, r.created_us, r.modified_us";

/// Inserts one event from a sqlx-side write transaction (see [`resource_writes::insert_events`]).
pub(crate) async fn insert_event(
    tx: &mut group_commit::WriteTx,
    ctx: &WriteContext,
    kind: &str,
    resource: Option<(ResourceKind, &str)>,
    data: Value,
) -> StoreResult<()> {
    group_commit::on_connection(tx, |c| {
        resource_writes::insert_events(c, ctx, kind, resource, std::slice::from_ref(&data))
    })
    .await
}

/// Inserts events, in order, from a sqlx-side write transaction, in one hand-off to the writer.
pub(crate) async fn insert_all(
    tx: &mut group_commit::WriteTx,
    ctx: &WriteContext,
    events: &[crate::staging::SnapshotEvent],
) -> StoreResult<()> {
    group_commit::on_connection(tx, |c| {
        for (kind, resource, data) in events {
            let resource = resource.as_ref().map(|(k, id)| (*k, id.as_str()));
            resource_writes::insert_events(c, ctx, kind, resource, std::slice::from_ref(data))?;
        }
        Ok(())
    })
    .await
}

impl SqliteStore {
    /// Records (in its own transaction: the change itself was rolled back) that SCIM tried to
    /// deactivate or delete a protected user, and returns the error to answer with.
    async fn refuse_protected(&self, ctx: &WriteContext, id: &str, email: &str, action: &str) -> StoreError {
        let error = StoreError::Scim(crate::roles::protected_error(email, action));
        let recorded = async {
            let mut tx = self.begin_write().await?;
            insert_event(
                &mut tx,
                ctx,
                events::USER_PROTECTION_REFUSED,
                Some((ResourceKind::User, id)),
                json!({"action": action, "protected": email}),
            )
            .await?;
            tx.commit().await?;
            StoreResult::Ok(())
        };
        match recorded.await {
            Ok(()) => error,
            Err(e) => e,
        }
    }

    /// Applies a token change to a connection in one write transaction.
    async fn token_op(&self, by: &WriteContext, id: &str, op: TokenOp<'_>) -> StoreResult<Option<Connection>> {
        let mut tx = self.begin_write().await?;
        let Some(mut c) = connection_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let (kind, data) = connection_ops::apply_token_op(&mut c, op, now_us())?;
        sqlx::query(
            "UPDATE scim_connections SET token_hash = ?, token_prefix = ?, next_token_hash = ?, next_token_prefix = ?,
               rotation_started_us = ? WHERE id = ?",
        )
        .bind(c.token_hash.as_ref().map(|h| h.as_slice()))
        .bind(&c.token_prefix)
        .bind(c.next_token_hash.as_ref().map(|h| h.as_slice()))
        .bind(&c.next_token_prefix)
        .bind(c.rotation_started_us)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, &connection_ctx(by, &c), kind, None, data).await?;
        tx.commit().await?;
        Ok(Some(c))
    }
}

/// A column expression giving a resource's group members (groups) or groups (users) as
/// `[[id, kind, display], ...]` JSON beside its row (`r`), read by [`parse_related`]; `NULL` when
/// they are not wanted.
fn related_column(kind: ResourceKind, with_members: bool) -> &'static str {
    match (with_members, kind) {
        (false, _) => "NULL",
        (true, ResourceKind::Group) => {
            "(SELECT json_group_array(json_array(u.id, u.kind, m.display))
              FROM group_members m JOIN resources u ON u.pk = m.member_pk WHERE m.group_pk = r.pk)"
        }
        (true, ResourceKind::User) => {
            "(SELECT json_group_array(json_array(g.id, g.kind, json_extract(g.doc, '$.displayName')))
              FROM group_members m JOIN resources g ON g.pk = m.group_pk
              WHERE m.member_pk = r.pk AND g.deleted_us IS NULL)"
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_organization(&self, by: &WriteContext, name: &str) -> StoreResult<Organization> {
        let org = Organization {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_string(),
            created_us: now_us(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO organizations (id, name, created_us) VALUES (?, ?, ?)")
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_us)
            .execute(&mut *tx)
            .await
            .map_err(|e| org_name_taken(e, name))?;
        let ctx = by.about(&org.id, "");
        insert_event(&mut tx, &ctx, events::ORGANIZATION_CREATED, None, json!({"name": name})).await?;
        tx.commit().await?;
        Ok(org)
    }

    async fn list_organizations(&self) -> StoreResult<Vec<Organization>> {
        let rows = sqlx::query("SELECT id, name, created_us FROM organizations ORDER BY created_us, id")
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(org_of).collect())
    }

    async fn get_organization(&self, id_or_name: &str) -> StoreResult<Option<Organization>> {
        let row = sqlx::query("SELECT id, name, created_us FROM organizations WHERE id = ? OR name = ? LIMIT 1")
            .bind(id_or_name)
            .bind(id_or_name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(org_of))
    }

    async fn count_organizations(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn list_organizations_after(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<Organization>> {
        let rows = sqlx::query(
            "SELECT id, name, created_us FROM organizations WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
        )
        .bind(after)
        .bind(limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(org_of).collect())
    }

    async fn rename_organization(&self, by: &WriteContext, id: &str, name: &str) -> StoreResult<Option<Organization>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT id, name, created_us FROM organizations WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut org) = row.as_ref().map(org_of) else {
            return Ok(None);
        };
        if org.name != name {
            sqlx::query("UPDATE organizations SET name = ? WHERE id = ?")
                .bind(name)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| org_name_taken(e, name))?;
            let ctx = by.about(&org.id, "");
            insert_event(
                &mut tx,
                &ctx,
                events::ORGANIZATION_UPDATED,
                None,
                json!({"changed": {"name": {"before": org.name, "after": name}}}),
            )
            .await?;
            org.name = name.to_string();
        }
        tx.commit().await?;
        Ok(Some(org))
    }

    async fn delete_organization(&self, by: &WriteContext, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM organizations WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(name) = name else { return Ok(false) };
        let connections: Vec<String> =
            sqlx::query_scalar("SELECT id FROM scim_connections WHERE org_id = ? ORDER BY created_us, id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        // Connections, resources, e-mail rows and membership go by cascade.
        sqlx::query("DELETE FROM organizations WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for connection_id in connections {
            let ctx = by.about(id, &connection_id);
            insert_event(&mut tx, &ctx, events::CONNECTION_DELETED, None, json!({})).await?;
        }
        let ctx = by.about(id, "");
        insert_event(&mut tx, &ctx, events::ORGANIZATION_DELETED, None, json!({"name": name})).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_connection(&self, by: &WriteContext, new: NewConnection) -> StoreResult<Connection> {
        let c = Connection {
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
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO scim_connections (id, org_id, name, idp, status, token_hash, token_prefix, created_us)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.org_id)
        .bind(&c.name)
        .bind(c.idp.as_str())
        .bind(c.status.as_str())
        .bind(c.token_hash.as_ref().map(|h| h.as_slice()))
        .bind(&c.token_prefix)
        .bind(c.created_us)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            &connection_ctx(by, &c),
            events::CONNECTION_CREATED,
            None,
            json!({"name": c.name, "idp": c.idp}),
        )
        .await?;
        tx.commit().await?;
        Ok(c)
    }

    async fn list_connections(&self, org_id: Option<&str>) -> StoreResult<Vec<Connection>> {
        let rows =
            sqlx::query("SELECT * FROM scim_connections WHERE (? IS NULL OR org_id = ?) ORDER BY created_us, id")
                .bind(org_id)
                .bind(org_id)
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.iter().map(conn_of).collect())
    }

    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        let row = sqlx::query("SELECT * FROM scim_connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(conn_of))
    }

    async fn connection_by_token_hash(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Connection>> {
        let row = sqlx::query("SELECT * FROM scim_connections WHERE token_hash = ?1 OR next_token_hash = ?1 LIMIT 1")
            .bind(token_hash.as_slice())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(conn_of))
    }

    async fn set_connection_token(
        &self,
        by: &WriteContext,
        id: &str,
        token_hash: &[u8; 32],
        token_prefix: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(org_id) = org else { return Ok(false) };
        sqlx::query(
            "UPDATE scim_connections SET token_hash = ?, token_prefix = ?, next_token_hash = NULL,
               next_token_prefix = NULL, rotation_started_us = NULL WHERE id = ?",
        )
        .bind(token_hash.as_slice())
        .bind(token_prefix)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let ctx = by.about(&org_id, id);
        insert_event(
            &mut tx,
            &ctx,
            events::CONNECTION_TOKEN_ROTATED,
            None,
            json!({"token_prefix": token_prefix}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_connection(&self, by: &WriteContext, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(org_id) = org else { return Ok(false) };
        sqlx::query("DELETE FROM scim_connections WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ctx = by.about(&org_id, id);
        insert_event(&mut tx, &ctx, events::CONNECTION_DELETED, None, json!({})).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn update_connection(
        &self,
        by: &WriteContext,
        id: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Option<Connection>> {
        let mut tx = self.begin_write().await?;
        let Some(mut c) = connection_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let changes = connection_ops::apply_update(&mut c, &update);
        if !changes.is_empty() {
            sqlx::query("UPDATE scim_connections SET name = ?, idp = ?, status = ?, debug_logging = ? WHERE id = ?")
                .bind(&c.name)
                .bind(c.idp.as_str())
                .bind(c.status.as_str())
                .bind(c.debug_logging)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for (kind, data) in changes {
                insert_event(&mut tx, &connection_ctx(by, &c), kind, None, data).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(c))
    }

    async fn start_token_rotation(
        &self,
        by: &WriteContext,
        id: &str,
        next_hash: &[u8; 32],
        next_prefix: &str,
    ) -> StoreResult<Option<Connection>> {
        self.token_op(
            by,
            id,
            TokenOp::Start {
                hash: next_hash,
                prefix: next_prefix,
            },
        )
        .await
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
        // Never moves backwards (several nodes record the same connection).
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE scim_connections SET last_request_us = ?1, last_user_agent = ?2
             WHERE id = ?3 AND (last_request_us IS NULL OR last_request_us < ?1)",
        )
        .bind(at_us)
        .bind(user_agent)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(detected) = detected
            && let Some(mut c) = connection_in(&mut tx, id).await?
        {
            let event = connection_ops::apply_detection(&mut c, detected, at_us, user_agent);
            sqlx::query(
                "UPDATE scim_connections SET detected_idp = ?, detected_idp_first_seen_us = ?,
                 detected_idp_last_seen_us = ? WHERE id = ?",
            )
            .bind(c.detected_idp.map(IdpKind::as_str))
            .bind(c.detected_idp_first_seen_us)
            .bind(c.detected_idp_last_seen_us)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if let Some((kind, data)) = event {
                insert_event(&mut tx, &connection_ctx(&WriteContext::system(), &c), kind, None, data).await?;
            }
        }
        tx.commit().await
    }

    async fn service_setting(&self, key: &str) -> StoreResult<Option<crate::service_settings::ServiceSetting>> {
        let row = sqlx::query(AssertSqlSafe(crate::service_settings::get_sql(Dialect::Sqlite)))
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| crate::service_settings::ServiceSetting {
            value: r.get("value"),
            updated_us: r.get("updated_us"),
        }))
    }

    async fn create_directory_connection(
        &self,
        by: &WriteContext,
        new: crate::NewDirectoryConnection,
    ) -> StoreResult<(Connection, crate::DirectorySource)> {
        self.create_directory_connection_impl(by, new).await
    }

    async fn directory_source(&self, connection_id: &str) -> StoreResult<Option<crate::DirectorySource>> {
        self.directory_source_impl(connection_id).await
    }

    async fn update_directory_source(
        &self,
        by: &WriteContext,
        connection_id: &str,
        update: crate::DirectorySourceUpdate,
    ) -> StoreResult<Option<crate::DirectorySource>> {
        self.update_directory_source_impl(by, connection_id, update).await
    }

    async fn request_directory_sync(&self, connection_id: &str, now_us: i64) -> StoreResult<bool> {
        self.request_directory_sync_impl(connection_id, now_us).await
    }

    async fn claim_directory_syncs(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
        only: Option<&str>,
    ) -> StoreResult<Vec<crate::DirectorySource>> {
        self.claim_directory_syncs_impl(owner, now_us, lease_until_us, limit, only)
            .await
    }

    async fn directory_sync_progress(
        &self,
        connection_id: &str,
        owner: &str,
        progress: &crate::SyncCounts,
        lease_until_us: i64,
    ) -> StoreResult<bool> {
        self.directory_sync_progress_impl(connection_id, owner, progress, lease_until_us)
            .await
    }

    async fn finish_directory_sync(
        &self,
        connection_id: &str,
        owner: &str,
        outcome: &crate::SyncOutcome,
    ) -> StoreResult<bool> {
        self.finish_directory_sync_impl(connection_id, owner, outcome).await
    }

    async fn set_service_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(AssertSqlSafe(crate::service_settings::put_sql(Dialect::Sqlite)))
            .bind(key)
            .bind(value)
            .bind(now_us())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
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
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO api_keys (id, name, key_hash, key_prefix, created_us) VALUES (?, ?, ?, ?, ?)")
            .bind(&key.id)
            .bind(&key.name)
            .bind(key.key_hash.as_slice())
            .bind(&key.key_prefix)
            .bind(key.created_us)
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
            &by.about("", ""),
            events::API_KEY_CREATED,
            None,
            json!({"api_key_id": key.id, "name": key.name, "key_prefix": key.key_prefix}),
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(key_hash.as_slice())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(api_key_of))
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_us, id")
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(api_key_of).collect())
    }

    async fn revoke_api_key(&self, by: &WriteContext, id: &str) -> StoreResult<Option<ApiKey>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut key) = row.as_ref().map(api_key_of) else {
            return Ok(None);
        };
        if key.revoked_us.is_none() {
            let now = now_us();
            sqlx::query("UPDATE api_keys SET revoked_us = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            insert_event(
                &mut tx,
                &by.about("", ""),
                events::API_KEY_REVOKED,
                None,
                json!({"api_key_id": key.id, "name": key.name, "key_prefix": key.key_prefix}),
            )
            .await?;
            key.revoked_us = Some(now);
        }
        // Also for a key revoked before: no console session of it may outlive this call.
        sqlx::query("DELETE FROM browser_sessions WHERE kind = 'console' AND subject_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    async fn create_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        doc: Value,
        members: Vec<MemberRef>,
    ) -> StoreResult<StoredResource> {
        let (registry, ctx) = (self.registry.clone(), ctx.clone());
        self.group
            .write(move |c| resource_writes::create(c, &registry, &ctx, kind, doc, members))
            .await
    }

    async fn get_resource(
        &self,
        connection_id: &str,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> StoreResult<Option<StoredResource>> {
        // One round trip: the related resources come back as a JSON array beside the row.
        let related = related_column(kind, with_members);
        let sql = format!(
            "SELECT {RESOURCE_COLS}, {related} AS related FROM resources r
             WHERE r.connection_id = ?1 AND r.id = ?2 AND r.kind = ?3 AND r.deleted_us IS NULL"
        );
        let (connection_id, id) = (connection_id.to_string(), id.to_string());
        self.inline
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query((&connection_id, &id, kind.as_str()))?;
                let Some(row) = rows.next()? else { return Ok(None) };
                let (_, mut res) = resource_of_inline(row, kind)?;
                if with_members {
                    let text: Option<String> = row.get(6)?;
                    res.related = Some(parse_related(text.as_deref()));
                }
                Ok(Some(res))
            })
            .await
    }

    async fn update_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
        mutation: Mutation,
    ) -> StoreResult<Option<StoredResource>> {
        // Read and computed outside the writer; only the write takes its turn ([`crate::update`]).
        let read = || self.get_resource(&ctx.connection_id, kind, id, false);
        let write = |computed: crate::update::Computed| async move {
            let (registry, write_ctx) = (self.registry.clone(), ctx.clone());
            let written = self
                .group
                .write(move |c| resource_writes::update(c, &registry, &write_ctx, kind, if_match, computed))
                .await?;
            match written {
                Guarded::Done(w) => Ok(w),
                Guarded::Protected(email) => Err(self.refuse_protected(ctx, id, &email, "deactivate").await),
            }
        };
        crate::update::run(&mutation, if_match, read, write).await
    }

    async fn delete_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> StoreResult<bool> {
        let (write_ctx, write_id) = (ctx.clone(), id.to_string());
        let written = self
            .group
            .write(move |c| resource_writes::delete(c, &write_ctx, kind, &write_id, if_match))
            .await?;
        match written {
            Guarded::Done(deleted) => Ok(deleted),
            Guarded::Protected(email) => Err(self.refuse_protected(ctx, id, &email, "delete").await),
        }
    }

    async fn list_resources(&self, connection_id: &str, kind: ResourceKind, query: &ListQuery) -> StoreResult<Page> {
        let rt = self.rt(kind);
        let mut where_ = SqlBuilder::new(Dialect::Sqlite);
        // The kind is written as a literal, not bound: only then can SQLite see that the partial
        // indexes (`WHERE kind = 'User' AND deleted_us IS NULL`) apply.
        where_
            .push("r.connection_id = ")
            .text(connection_id)
            .push(match kind {
                ResourceKind::User => " AND r.kind = 'User'",
                ResourceKind::Group => " AND r.kind = 'Group'",
            })
            .push(" AND r.deleted_us IS NULL");
        if let Some(f) = &query.filter {
            where_.push(" AND (");
            compile_filter(&mut where_, &self.registry, rt, kind, f)?;
            where_.push(")");
        }
        let count_sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", where_.sql);
        let mut sql = where_.clone();
        // For a cursor page: where the row key of the resource the cursor names goes among the
        // binds, once it is looked up (in the read's snapshot).
        let mut after: Option<(usize, String)> = None;
        let (order, limit, offset) = match &query.paging {
            Paging::Cursor { after: after_id } => {
                if let Some(id) = after_id {
                    after = Some((sql.binds.len(), id.clone()));
                    sql.push(" AND r.pk > ").bind(Bind::Int(0));
                }
                ("r.pk ASC".to_string(), query.count + 1, 0)
            }
            Paging::Index { start_index } => {
                let order = match &query.sort {
                    Some(s) => order_by(Dialect::Sqlite, &self.registry, rt, kind, &s.path, s.order)?,
                    None => "r.pk ASC".to_string(),
                };
                (order, query.count, start_index.saturating_sub(1).max(0))
            }
        };
        // The offset is bound, not written into the text, so the statement stays the same from page to
        // page and is prepared once per reader, not once per request (preparing was 8 % of a page's
        // CPU). The limit (a handful of values in practice) stays in the text: SQLite's planner uses
        // a bound limit's value, so each new binding made it prepare the statement again
        // (`sqlite3Reprepare` in the profile; a filter's CPU per request doubled).
        sql.push(&format!(" ORDER BY {order} LIMIT {limit} OFFSET "))
            .bind(Bind::Int(offset));
        // The members (or groups) of each resource come in the same statement (`related_column`).
        let full = format!(
            "SELECT {RESOURCE_COLS}, {} AS related FROM resources r WHERE {}",
            related_column(kind, query.with_members),
            sql.sql
        );
        let (paging, count, with_members) = (query.paging.clone(), query.count, query.with_members);
        let max_bytes = query.max_bytes;
        let (count_binds, page_binds) = (where_.binds, sql.binds);
        let connection_id = connection_id.to_string();
        self.inline
            .read(move |conn| {
                let mut binds = std::borrow::Cow::Borrowed(&page_binds);
                if let Some((at, id)) = &after {
                    let pk: Option<i64> = conn
                        .prepare_cached("SELECT pk FROM resources WHERE connection_id = ?1 AND id = ?2 AND kind = ?3")?
                        .query_row((&connection_id, id, kind.as_str()), |r| r.get(0))
                        .optional()?;
                    let Some(pk) = pk else {
                        let erased: bool = conn
                            .prepare_cached(
                                "SELECT EXISTS (SELECT 1 FROM events
                                 WHERE connection_id = ?1 AND resource_id = ?2 AND resource_type = ?3)",
                            )?
                            .query_row((&connection_id, id, kind.as_str()), |r| r.get(0))?;
                        return Err(crate::cursor_not_found(kind, erased));
                    };
                    binds.to_mut()[*at] = Bind::Int(pk);
                }
                let mut rows = Vec::new();
                // Bytes of documents and membership read so far; once they reach `max_bytes`, the
                // page ends (`cut`) before the next row, which is not read into memory here.
                let (mut bytes, mut cut) = (0usize, false);
                if limit > 0 {
                    let mut stmt = conn.prepare_cached(&full)?;
                    let mut cursor = stmt.query(rusqlite::params_from_iter(binds.iter()))?;
                    while let Some(row) = cursor.next()? {
                        if !rows.is_empty() && bytes >= max_bytes {
                            cut = true;
                            break;
                        }
                        let (_, mut res) = resource_of_inline(row, kind)?;
                        bytes += res.doc.stored_text().map_or(0, str::len);
                        if with_members {
                            let text: Option<String> = row.get(6)?;
                            bytes += text.as_ref().map_or(0, String::len);
                            res.related = Some(parse_related(text.as_deref()));
                        }
                        rows.push(res);
                    }
                }
                let total = if !cut && paging.holds_every_match(rows.len(), limit) {
                    rows.len() as i64
                } else {
                    conn.prepare_cached(&count_sql)?
                        .query_row(rusqlite::params_from_iter(&count_binds), |r| r.get(0))?
                };
                let mut next_after = None;
                if matches!(paging, Paging::Cursor { .. }) && (cut || rows.len() as i64 > count) {
                    rows.truncate(count.max(0) as usize);
                    next_after = rows.last().map(|r| r.id.clone());
                }
                Ok(Page {
                    total,
                    resources: rows,
                    next_after,
                })
            })
            .await
    }

    async fn create_role(&self, ctx: &WriteContext, new: NewRole) -> StoreResult<Role> {
        self.create_role_impl(ctx, new).await
    }
    async fn list_roles(&self, org_id: &str) -> StoreResult<Vec<Role>> {
        self.list_roles_impl(org_id).await
    }
    async fn get_role(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Role>> {
        self.get_role_impl(org_id, id_or_key).await
    }
    async fn update_role(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        id: &str,
        update: RoleUpdate,
    ) -> StoreResult<Option<Role>> {
        self.update_role_impl(ctx, org_id, id, update).await
    }
    async fn delete_role(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool> {
        self.delete_role_impl(ctx, org_id, id).await
    }
    async fn create_role_mapping(&self, ctx: &WriteContext, new: NewRoleMapping) -> StoreResult<RoleMapping> {
        self.create_role_mapping_impl(ctx, new).await
    }
    async fn list_role_mappings(&self, connection_id: &str) -> StoreResult<Vec<RoleMapping>> {
        self.list_role_mappings_impl(connection_id).await
    }
    async fn delete_role_mapping(&self, ctx: &WriteContext, connection_id: &str, id: &str) -> StoreResult<bool> {
        self.delete_role_mapping_impl(ctx, connection_id, id).await
    }
    async fn default_roles(&self, connection_id: &str) -> StoreResult<Vec<Role>> {
        self.default_roles_impl(connection_id).await
    }
    async fn preview_role_change(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        self.preview_role_change_impl(connection_id, change, sample).await
    }
    async fn set_default_roles(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        role_ids: &[String],
    ) -> StoreResult<Option<Vec<Role>>> {
        self.set_default_roles_impl(ctx, connection_id, role_ids).await
    }
    async fn set_connection_policy(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        policy: &ConnectionPolicy,
    ) -> StoreResult<Option<Connection>> {
        self.set_connection_policy_impl(ctx, connection_id, policy).await
    }
    async fn add_protected_user(&self, ctx: &WriteContext, org_id: &str, email: &str) -> StoreResult<ProtectedUser> {
        self.add_protected_user_impl(ctx, org_id, email).await
    }
    async fn list_protected_users(&self, org_id: &str) -> StoreResult<Vec<ProtectedUser>> {
        self.list_protected_users_impl(org_id).await
    }
    async fn remove_protected_user(&self, ctx: &WriteContext, org_id: &str, email: &str) -> StoreResult<bool> {
        self.remove_protected_user_impl(ctx, org_id, email).await
    }
    async fn directory_users(
        &self,
        org_id: &str,
        query: &DirectoryQuery,
        with_groups: bool,
    ) -> StoreResult<Vec<DirectoryUser>> {
        self.directory_users_impl(org_id, query, with_groups).await
    }
    async fn directory_groups(&self, org_id: &str, query: &GroupQuery) -> StoreResult<Vec<DirectoryGroup>> {
        self.directory_groups_impl(org_id, query).await
    }
    async fn directory_group_members(
        &self,
        group_pk: i64,
        after_pk: i64,
        limit: i64,
    ) -> StoreResult<Vec<DirectoryMember>> {
        self.directory_group_members_impl(group_pk, after_pk, limit).await
    }

    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
        self.events_after_impl(after, limit).await
    }

    async fn query_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        self.query_events_impl(query).await
    }

    async fn get_event(&self, id: &str) -> StoreResult<Option<Event>> {
        self.get_event_impl(id).await
    }

    async fn prune_events(&self, before_us: i64, batch: i64) -> StoreResult<u64> {
        self.prune_events_impl(before_us, batch).await
    }

    async fn append_request_log(&self, entries: &[RequestLogEntry], keep: i64) -> StoreResult<()> {
        self.append_request_log_impl(entries, keep).await
    }

    async fn request_log(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RequestLogEntry>> {
        self.request_log_impl(connection_id, before, limit).await
    }

    fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        vec![crate::metrics::PoolStats {
            name: "sqlite_read",
            size: self.reader.size(),
            idle: self.reader.num_idle() as u32,
        }]
    }

    fn outbound(&self) -> &dyn crate::outbound::OutboundStore {
        self
    }
    fn set_secret_keys(&self, keys: crate::secrets::SecretBox) -> bool {
        self.secrets.set(keys)
    }

    async fn secret_inventory(&self) -> StoreResult<crate::secrets::SecretInventory> {
        self.secret_inventory_impl().await
    }

    async fn reseal_secrets(&self, to: &crate::secrets::SecretBox, which: crate::secrets::Reseal) -> StoreResult<u64> {
        self.reseal_secrets_impl(to, which).await
    }
}

/// Validates a filter for a resource type before it is compiled (used by callers that want the
/// error before any I/O).
pub fn check_filter(registry: &SchemaRegistry, kind: ResourceKind, filter: &Filter) -> Result<(), ScimError> {
    let rt = registry
        .resource_type(kind.as_str())
        .expect("standard resource types are registered");
    filter.validate(registry, rt)
}
