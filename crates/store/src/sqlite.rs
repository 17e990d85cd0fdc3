//! The embedded SQLite store: WAL mode, one writer connection taking `BEGIN IMMEDIATE` transactions
//! that concurrent writes share (group commit, [`group_commit`]), a pool of reader connections.

use crate::events;
use crate::model::*;
use crate::sql::{Bind, Dialect, ListPlan, list_plan};
use crate::{Mutation, ResourceStore, Store, StoreError, StoreResult};

pub mod backup;
mod event_rows;
mod grant_db;
pub(crate) mod group_commit;
pub(crate) mod guard_ops;
mod inline_read;
pub mod lock;
pub(crate) mod request_log;
use crate::resource_rows::{self, store_order};
use async_trait::async_trait;
use grant_db::{Inline, block};
use rollcall_scim::ScimError;
use rollcall_scim::filter::Filter;
use rollcall_scim::patch::MemberRef;
use rollcall_scim::schema::{ResourceType, SchemaRegistry};
use rusqlite::OptionalExtension;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
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

/// A row of [`RESOURCE_COLS`] read by the inline reader: its `pk` and the resource.
fn resource_of_inline(row: &rusqlite::Row<'_>, kind: ResourceKind) -> StoreResult<(i64, StoredResource)> {
    let doc = row.get_ref(2)?;
    let doc = doc
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, doc.data_type(), Box::new(e)))?;
    let res = StoredResource::read(
        row.get(1)?,
        kind,
        doc.to_string(),
        [row.get(3)?, row.get(4)?, row.get(5)?],
    )?;
    Ok((row.get(0)?, res))
}

/// Creates a user or group on the writer's handle ([`resource_rows::create`]).
fn create_on(
    c: &rusqlite::Connection,
    registry: &SchemaRegistry,
    ctx: &WriteContext,
    kind: ResourceKind,
    mut doc: Value,
    members: Vec<MemberRef>,
) -> StoreResult<StoredResource> {
    let (id, now) = (uuid::Uuid::new_v4().to_string(), now_us());
    store_order(&mut doc);
    block(resource_rows::create(
        &mut Inline(c),
        registry,
        ctx,
        kind,
        &id,
        &doc,
        &members,
        now,
    ))?;
    crate::resource_doc::put_id(&mut doc, &id);
    Ok(StoredResource::created(id, kind, doc, now))
}

/// Reads `[[id, kind, display], ...]` as built by `json_group_array` in [`related_column`].
fn parse_related(text: Option<&str>) -> Vec<MemberView> {
    MemberView::from_rows(text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default())
}

const RESOURCE_COLS: &str = "r.pk, r.id, r.doc, r.version, r.created_us, r.modified_us";

/// Inserts one event from a sqlx-side write transaction (see [`event_rows::insert_events`]).
pub(crate) async fn insert_event(
    tx: &mut group_commit::WriteTx,
    ctx: &WriteContext,
    kind: &str,
    resource: Option<(ResourceKind, &str)>,
    data: Value,
) -> StoreResult<()> {
    group_commit::on_connection(tx, |c| {
        event_rows::insert_events(c, ctx, kind, resource, std::slice::from_ref(&data))
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
            event_rows::insert_events(c, ctx, kind, resource, std::slice::from_ref(data))?;
        }
        Ok(())
    })
    .await
}

/// A column expression giving a resource's group members (groups) or groups (users) as
/// `[[id, kind, display], ...]` JSON beside its row (`r`), read by [`parse_related`]; `NULL` when
/// they are not wanted.
fn related_column(kind: ResourceKind, with_members: bool) -> &'static str {
    match (with_members, kind) {
        (false, _) => "NULL",
        (true, ResourceKind::Group) => {
            "(SELECT json_group_array(json_array(u.id, u.kind, m.display))
              FROM group_members m JOIN resources u ON u.pk = m.member_pk
              WHERE m.connection_id = r.connection_id AND m.group_pk = r.pk)"
        }
        (true, ResourceKind::User) => {
            "(SELECT json_group_array(json_array(g.id, g.kind, json_extract(g.doc, '$.displayName')))
              FROM group_members m JOIN resources g ON g.pk = m.group_pk
              WHERE m.connection_id = r.connection_id AND m.member_pk = r.pk AND g.deleted_us IS NULL)"
        }
    }
}

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn create_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        doc: Value,
        members: Vec<MemberRef>,
    ) -> StoreResult<StoredResource> {
        let (registry, ctx) = (self.registry.clone(), ctx.clone());
        self.group
            .write(move |c| create_on(c, &registry, &ctx, kind, doc, members))
            .await
    }

    async fn create_resources(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        items: Vec<(Value, Vec<MemberRef>)>,
    ) -> StoreResult<Vec<StoredResource>> {
        // One writer turn, in one savepoint of the group's transaction: a failure rolls back all.
        let (registry, ctx) = (self.registry.clone(), ctx.clone());
        self.group
            .write(move |c| {
                items
                    .into_iter()
                    .map(|(doc, members)| create_on(c, &registry, &ctx, kind, doc, members))
                    .collect()
            })
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
                .write(move |c| {
                    block(resource_rows::update(
                        &mut Inline(c),
                        &registry,
                        &write_ctx,
                        kind,
                        if_match,
                        &computed,
                    ))
                })
                .await?;
            written.answer(self, ctx, id, "deactivate").await
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
            .write(move |c| {
                block(resource_rows::delete(
                    &mut Inline(c),
                    &write_ctx,
                    kind,
                    &write_id,
                    if_match,
                ))
            })
            .await?;
        written.answer(self, ctx, id, "delete").await
    }

    async fn list_resources(&self, connection_id: &str, kind: ResourceKind, query: &ListQuery) -> StoreResult<Page> {
        // A cursor's row key is looked up in the read's snapshot, then bound at `after_at`.
        let after = match &query.paging {
            Paging::Cursor { after: Some(id) } => Some(id.clone()),
            _ => None,
        };
        let ListPlan {
            matches,
            mut page,
            after_at,
            order,
            limit,
            offset,
            ..
        } = list_plan(
            Dialect::Sqlite,
            &self.registry,
            self.rt(kind),
            kind,
            connection_id,
            query,
            after.as_ref().map(|_| 0),
        )?;
        let count_sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", matches.sql);
        // The offset is bound, not written into the text, so the statement stays the same from page to
        // page and is prepared once per reader, not once per request (preparing was 8 % of a page's
        // CPU). The limit (a handful of values in practice) stays in the text: SQLite's planner uses
        // a bound limit's value, so each new binding made it prepare the statement again
        // (`sqlite3Reprepare` in the profile; a filter's CPU per request doubled).
        page.push(&format!(" ORDER BY {order} LIMIT {limit} OFFSET "))
            .bind(Bind::Int(offset));
        // The members (or groups) of each resource come in the same statement (`related_column`).
        let full = format!(
            "SELECT {RESOURCE_COLS}, {} AS related FROM resources r WHERE {}",
            related_column(kind, query.with_members),
            page.sql
        );
        let (paging, count, with_members) = (query.paging.clone(), query.count, query.with_members);
        let max_bytes = query.max_bytes;
        let (count_binds, page_binds) = (matches.binds, page.binds);
        let connection_id = connection_id.to_string();
        self.inline
            .read(move |conn| {
                let mut binds = std::borrow::Cow::Borrowed(&page_binds);
                if let (Some(at), Some(id)) = (after_at, &after) {
                    let pk: Option<i64> = conn
                        .prepare_cached("SELECT pk FROM resources WHERE connection_id = ?1 AND id = ?2 AND kind = ?3")?
                        .query_row((&connection_id, id, kind.as_str()), |r| r.get(0))
                        .optional()?;
                    let Some(pk) = pk else {
                        let erased: bool = conn
                            .prepare_cached(
                                "SELECT EXISTS (SELECT 1 FROM events INDEXED BY events_resource_id
                                 WHERE connection_id = ?1 AND resource_id = ?2 AND resource_type = ?3)",
                            )?
                            .query_row((&connection_id, id, kind.as_str()), |r| r.get(0))?;
                        return Err(crate::cursor_not_found(kind, erased));
                    };
                    binds.to_mut()[at] = Bind::Int(pk);
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
}

#[async_trait]
impl Store for SqliteStore {
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
