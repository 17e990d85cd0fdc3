//! The PostgreSQL store, for running several Rollcall nodes against one database.
//!
//! Same behaviour as [`crate::sqlite::SqliteStore`], with concurrency handled by the database:
//! transactions run at READ COMMITTED; an update or delete locks its row (`SELECT ... FOR UPDATE`),
//! a member being added is locked `FOR SHARE` so it cannot be deleted under the new membership row,
//! and the partial unique indexes decide concurrent creates with the same `userName` (one wins, the
//! others answer 409 `uniqueness`). Write transactions that fail with a serialization failure or a
//! deadlock (SQLSTATE 40001, 40P01) are run again, up to [`PgSettings::serialization_retries`] times.
//!
//! Events are collected while a transaction runs and inserted just before it commits, holding the
//! events lock (a transaction-scoped advisory lock) in shared mode for that statement and the
//! `COMMIT`: transactions number and commit their events side by side, so numbers may commit out of
//! order. A reader of the log first takes the lock exclusively for one statement, which waits for
//! the transactions numbering events at that moment to end, and reads the highest number handed
//! out ([`PostgresStore::wait_events_ceiling`]); it then reads no event above that number. Every event
//! at or below it has committed or never will, so a reader paging through
//! [`crate::EventStore::events_after`] never skips an event that committed after a later-numbered
//! one, as with SQLite's single writer.

use crate::events;
use crate::index::{IndexFields, search_doc};
use crate::model::*;
use crate::resource_doc::{ResourceDoc, put_id};
use crate::resource_rows::{self, Guarded, uniqueness};
use crate::sql::{Bind, Dialect, ListPlan, SqlBuilder, bind_all, list_plan, live_kind};
use crate::sqlite::now_us;
use crate::update::{Computed, Written};
use crate::{Mutation, ResourceStore, Store, StoreError, StoreResult};
use async_trait::async_trait;
use futures::TryStreamExt;
use rollcall_scim::ScimError;
use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_scim::schema::{ResourceType, SchemaRegistry};
use serde_json::{Value, json};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Arguments, AssertSqlSafe, PgConnection, PgPool, Postgres, Row};
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod grant_db;
pub(crate) mod guard_ops;
pub(crate) mod lane;
pub mod notify;
pub(crate) mod request_log;
mod statistics;
mod writes;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock held (shared, per transaction) from numbering a transaction's events to its
/// commit, and taken exclusively by [`PostgresStore::wait_events_ceiling`].
const EVENTS_LOCK: i64 = 0x526f_6c6c_6576_0001;

/// [`PostgresStore::wait_events_ceiling`]'s statement: the events lock (`$1`) taken exclusively, then
/// the last number the events' sequence handed out (not read through the statement's snapshot, so
/// it counts numbers of transactions that committed while the lock was awaited). The sequence is
/// read in a subquery on the lock's row, so not before the lock is held; the lock is released when
/// the statement's own transaction ends.
const EVENTS_CEILING: &str = "SELECT s.high
     FROM (SELECT pg_advisory_xact_lock($1)::text AS locked) l,
          LATERAL (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS high
                   FROM events_seq_seq WHERE l.locked IS NULL OR l.locked IS NOT NULL) s";

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_PING_AFTER: Duration = Duration::from_secs(10);

/// Tuning for [`PostgresStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgSettings {
    /// Largest number of connections the pool opens.
    pub max_connections: u32,
    /// `statement_timeout` set on every pooled connection, in milliseconds (0: none).
    pub statement_timeout_ms: u64,
    /// How many times a write transaction is run again after a serialization failure or deadlock.
    pub serialization_retries: u32,
    /// The `application_name` of the connections: [`SERVE_APPLICATION_NAME`] for `rollcall serve`,
    /// so that commands that must not run beside a server can tell one is running
    /// ([`PostgresStore::serving_connections`]).
    pub application_name: &'static str,
}

/// The `application_name` of `rollcall serve`'s connections.
pub const SERVE_APPLICATION_NAME: &str = "rollcall serve";

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            max_connections: 16,
            statement_timeout_ms: 15_000,
            serialization_retries: 5,
            application_name: "rollcall",
        }
    }
}

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// Connections of the hot paths, given back without sqlx's ping ([`lane`]).
    pub(crate) lane: lane::Lane,
    registry: Arc<SchemaRegistry>,
    settings: PgSettings,
    /// The keys secrets are sealed and opened with ([`crate::secrets`]).
    pub(crate) secrets: crate::secrets::SecretKeys,
    /// Member PATCHes of each group waiting to be written together ([`writes`]).
    member_queues: writes::MemberQueues,
    /// Single creates of each connection waiting to be written together ([`writes`]).
    create_queues: writes::CreateQueues,
    /// Tells every node that events were recorded ([`notify::Announcer`]).
    pub(crate) announcer: notify::Announcer,
    /// Keeps the planner's statistics up with connections that grow fast ([`statistics`]).
    statistics: statistics::Statistics,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`; the database must exist) and applies
    /// the migrations. Nodes starting together are safe: sqlx's migrator holds a session advisory
    /// lock (`pg_advisory_lock`) while it migrates, and it runs in a one-connection pool that is
    /// closed afterwards, so the lock cannot outlive a failed migration.
    pub async fn open(url: &str, registry: Arc<SchemaRegistry>, settings: PgSettings) -> StoreResult<PostgresStore> {
        let opts = PgConnectOptions::from_str(url)?.application_name(settings.application_name);
        // One plain connection first: a pool would retry until its timeout and report only that,
        // where this reports why (refused, authentication, no such database) at once.
        let probe = <PgConnection as sqlx::Connection>::connect_with(&opts).await?;
        sqlx::Connection::close(probe).await?;
        let single = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        let migrated = MIGRATOR.run(&single).await;
        single.close().await;
        migrated?;
        let timeout = settings.statement_timeout_ms;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            // sqlx pings every connection it hands out by default: a round trip before each
            // statement or transaction. Only a connection that sat idle a while is checked (one
            // the server or a proxy may have closed); a busy one is used as it is (were it broken,
            // its statement fails and the pool drops it).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if timeout > 0 {
                        sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                            .bind(timeout.to_string())
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let lane = lane::Lane::new(pool.clone(), lane::lane_cap(settings.max_connections.max(1)));
        let announcer = notify::Announcer::start(pool.clone());
        let statistics = statistics::Statistics::new(pool.clone());
        Ok(PostgresStore {
            pool,
            lane,
            announcer,
            statistics,
            registry,
            settings,
            secrets: Default::default(),
            member_queues: Default::default(),
            create_queues: Default::default(),
        })
    }

    /// The store with the keys secrets are sealed and opened with (see [`Store::set_secret_keys`]).
    pub fn with_secrets(self, keys: crate::secrets::SecretBox) -> PostgresStore {
        self.secrets.set(keys);
        self
    }

    /// The connection pool (for health checks and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many connections `rollcall serve` nodes (other than this process) have open to this
    /// database, by their `application_name` in `pg_stat_activity`. Best effort: a node that has
    /// closed all its pooled connections is not seen.
    pub async fn serving_connections(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(SERVE_APPLICATION_NAME)
        .fetch_one(&self.pool)
        .await?)
    }

    fn rt(&self, kind: ResourceKind) -> &ResourceType {
        self.registry
            .resource_type(kind.as_str())
            .expect("standard resource types are registered")
    }

    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx> {
        let mut conn = self.lane.lease().await?;
        conn.in_transaction();
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        Ok(WriteTx {
            conn,
            announcer: self.announcer.clone(),
            statistics: self.statistics.clone(),
            events: Vec::new(),
            written: Vec::new(),
            connections: Vec::new(),
        })
    }

    /// Runs a write transaction, again after a serialization failure or deadlock.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if is_retryable(&e) && tries < self.settings.serialization_retries => {
                    tries += 1;
                    tracing::debug!(error = %e, attempt = tries, "retrying a write transaction");
                    tokio::time::sleep(backoff(tries)).await;
                }
                other => return other.map_err(finish_error),
            }
        }
    }
}

impl PostgresStore {
    /// The highest event number a reader may read up to (see the module's notes): waits for the
    /// transactions numbering events right now to commit or roll back. New ones wait behind it for
    /// the length of one statement. Run again if chosen as a deadlock's victim (a transaction
    /// holding the lock shared, waiting on a row of one queued behind this statement).
    pub(crate) async fn wait_events_ceiling(&self) -> StoreResult<i64> {
        self.retrying(|| async {
            let mut conn = self.lane.lease().await?;
            let high: i64 = sqlx::query_scalar(EVENTS_CEILING)
                .bind(EVENTS_LOCK)
                .fetch_one(&mut *conn)
                .await?;
            conn.done();
            Ok(high)
        })
        .await
    }
}

/// Whether a failed transaction may succeed when run again.
fn is_retryable(e: &StoreError) -> bool {
    sqlstate(e).is_some_and(|c| c == "40001" || c == "40P01")
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Database(e) => e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned()),
        _ => None,
    }
}

/// A short, jittered, growing pause between attempts.
fn backoff(attempt: u32) -> Duration {
    let jitter = now_us().unsigned_abs() % 7_000;
    Duration::from_micros(u64::from(attempt.min(8)) * 5_000 + jitter)
}

/// The SCIM answer for database failures that are not the client's or the server's fault:
/// contention that outlasted the retries, lock or statement timeouts → 503; strings PostgreSQL
/// cannot store (U+0000) → 400.
pub(crate) fn finish_error(e: StoreError) -> StoreError {
    match sqlstate(&e).as_deref() {
        Some("40001" | "40P01" | "55P03" | "57014") => {
            tracing::warn!(error = %e, "database contention");
            StoreError::Scim(ScimError::new(503, None, "the service is busy; retry shortly"))
        }
        Some("22P05" | "22021") => {
            StoreError::Scim(ScimError::invalid_value("strings cannot contain the character U+0000"))
        }
        _ => e,
    }
}

/// A write transaction and the events it will record.
pub(crate) struct WriteTx {
    /// The transaction's connection: `BEGIN` sent; rolled back if dropped before
    /// [`WriteTx::commit`] ([`lane::Lease`]).
    conn: lane::Lease,
    announcer: notify::Announcer,
    statistics: statistics::Statistics,
    events: Vec<PendingEvent>,
    /// The events' counts by type, for the metrics once committed.
    written: Vec<(String, u64)>,
    /// Connections changed by this transaction: announced to every node at commit
    /// ([`notify::CONNECTIONS`]), so that their token caches forget them.
    connections: Vec<String>,
}

pub(crate) struct PendingEvent {
    id: String,
    kind: &'static str,
    org_id: Option<String>,
    connection_id: Option<String>,
    resource_type: Option<&'static str>,
    resource_id: Option<String>,
    data: String,
    user_agent: Option<String>,
    request_id: Option<String>,
    created_us: i64,
    actor: String,
    member_id: Option<String>,
}

impl PendingEvent {
    pub(crate) fn new(
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Value,
        created_us: i64,
    ) -> PendingEvent {
        PendingEvent {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            org_id: Some(ctx.org_id.clone()).filter(|s| !s.is_empty()),
            connection_id: Some(ctx.connection_id.clone()).filter(|s| !s.is_empty()),
            resource_type: resource.map(|r| r.0.as_str()),
            resource_id: resource.map(|r| r.1.to_string()),
            member_id: events::member_of(kind, &data).map(str::to_string),
            data: data.to_string(),
            user_agent: ctx.user_agent.clone(),
            request_id: ctx.request_id.clone(),
            created_us,
            actor: ctx.actor.to_json(),
        }
    }
}

/// The columns of `events` a write fills, in the order of [`bind_events`]'s arrays.
const EVENT_COLUMNS: &str = "id, type, org_id, connection_id, resource_type, resource_id, data, user_agent, request_id, created_us, actor, member_id";

/// `UNNEST` of the twelve event arrays [`bind_events`] binds from parameter `$p` on, with the
/// alias `alias(<EVENT_COLUMNS>, n)` (`n`: the event's place, from 1).
fn events_unnest(p: usize, alias: &str) -> String {
    format!(
        "UNNEST(${p}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[], ${}::text[],
                ${}::text[], ${}::int8[], ${}::text[], ${}::text[]) WITH ORDINALITY AS {alias}({EVENT_COLUMNS}, n)",
        p + 1,
        p + 2,
        p + 3,
        p + 4,
        p + 5,
        p + 6,
        p + 7,
        p + 8,
        p + 9,
        p + 10,
        p + 11
    )
}

/// The `SELECT` list inserting the events of alias `t` (from [`events_unnest`]).
fn events_select(t: &str) -> String {
    format!(
        "{t}.id, {t}.type, {t}.org_id, {t}.connection_id, {t}.resource_type, {t}.resource_id, {t}.data::jsonb,
         {t}.user_agent, {t}.request_id, {t}.created_us, {t}.actor::jsonb, {t}.member_id"
    )
}

/// Binds the twelve arrays of `events` (see [`events_unnest`]).
fn bind_events<'q, 'e>(
    mut q: sqlx::query::Query<'q, Postgres, PgArguments>,
    ev: impl Iterator<Item = &'e PendingEvent> + Clone,
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    q = q
        .bind(ev.clone().map(|e| e.id.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.kind.to_string()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.org_id.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.connection_id.clone()).collect::<Vec<_>>())
        .bind(
            ev.clone()
                .map(|e| e.resource_type.map(str::to_string))
                .collect::<Vec<_>>(),
        )
        .bind(ev.clone().map(|e| e.resource_id.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.data.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.user_agent.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.request_id.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.created_us).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.actor.clone()).collect::<Vec<_>>())
        .bind(ev.clone().map(|e| e.member_id.clone()).collect::<Vec<_>>());
    q
}

/// A CTE body taking the events lock shared ([`EVENTS_LOCK`], bound as `$lock`), once, when `cond`
/// (an SQL condition) holds. Joined with the rows an `INSERT INTO events` reads, it runs before
/// the first of them is numbered.
fn events_lock_cte(lock: usize, cond: &str) -> String {
    format!("SELECT pg_advisory_xact_lock_shared(${lock}) AS locked WHERE {cond}")
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    pub(crate) fn event(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Value,
    ) {
        self.events.push(PendingEvent::new(ctx, kind, resource, data, now_us()));
    }

    /// Announces at commit that connection `id` changed (its tokens, status or policy).
    pub(crate) fn connection_changed(&mut self, id: &str) {
        self.connections.push(id.to_string());
    }

    /// Writes the events, numbered under the events lock (held shared until the commit), and
    /// commits; then has the events announced. The lock, the events and the connections'
    /// notifications are one statement: the lock is held for that statement and the `COMMIT`.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        let ev = std::mem::take(&mut self.events);
        let connections = std::mem::take(&mut self.connections);
        if !ev.is_empty() {
            for e in &ev {
                crate::metrics::note(&mut self.written, e.kind, 1);
            }
            // The connections whose user and group events these are: those in staging are locked
            // (`FOR SHARE`, before the events lock) and their events left out ([`crate::staging`]).
            let mut about: Vec<String> = ev
                .iter()
                .filter(|e| e.resource_type.is_some())
                .filter_map(|e| e.connection_id.clone())
                .collect();
            about.sort();
            about.dedup();
            let sql = if about.is_empty() {
                format!(
                    "WITH lk AS ({}),
                     cn AS (SELECT COUNT(pg_notify('{}', c)) AS n FROM UNNEST($14::text[]) c)
                     INSERT INTO events ({EVENT_COLUMNS})
                     SELECT {} FROM lk, cn, {} ORDER BY t.n",
                    events_lock_cte(13, "true"),
                    notify::CONNECTIONS,
                    events_select("t"),
                    events_unnest(1, "t"),
                )
            } else {
                format!(
                    "WITH st AS (SELECT id FROM scim_connections WHERE id = ANY($15::text[]) AND staged_us IS NOT NULL
                                 ORDER BY id FOR SHARE),
                     lk AS ({}),
                     cn AS (SELECT COUNT(pg_notify('{}', c)) AS n FROM UNNEST($14::text[]) c)
                     INSERT INTO events ({EVENT_COLUMNS})
                     SELECT {} FROM lk, cn, {}
                     WHERE t.resource_type IS NULL OR t.connection_id IS NULL
                       OR t.connection_id NOT IN (SELECT id FROM st)
                     ORDER BY t.n",
                    events_lock_cte(13, "(SELECT count(*) FROM st) >= 0"),
                    notify::CONNECTIONS,
                    events_select("t"),
                    events_unnest(1, "t"),
                )
            };
            let mut q = bind_events(sqlx::query(AssertSqlSafe(sql)), ev.iter())
                .bind(EVENTS_LOCK)
                .bind(&connections);
            if !about.is_empty() {
                q = q.bind(&about);
            }
            q.execute(&mut *self.conn).await?;
        } else if !connections.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT COUNT(pg_notify('{}', c)) FROM UNNEST($1::text[]) c",
                notify::CONNECTIONS
            )))
            .bind(&connections)
            .execute(&mut *self.conn)
            .await?;
        }
        sqlx::raw_sql("COMMIT").execute(&mut *self.conn).await?;
        self.conn.done();
        if !ev.is_empty() {
            self.announcer.committed();
            self.statistics
                .written(ev.iter().map(|e| (e.kind, e.connection_id.as_deref())));
        }
        crate::metrics::events_written(&self.written);
        Ok(())
    }
}

/// A row of [`RESOURCE_COLS`]: the document is kept as the JSON text PostgreSQL sent (a `json`
/// column sends its stored text as it is: migration 0019), so that a response with the default
/// projection is written from it without building a [`Value`]. PostgreSQL checked that text when
/// it was stored: it is JSON, and is not parsed to check it again.
fn resource_of(row: &PgRow, kind: ResourceKind) -> StoreResult<StoredResource> {
    let id: String = row.try_get("id")?;
    let doc = ResourceDoc::from_checked_text(doc_text(row, "doc")?, &id);
    Ok(StoredResource::with_doc(
        id,
        kind,
        doc,
        [
            row.try_get("version")?,
            row.try_get("created_us")?,
            row.try_get("modified_us")?,
        ],
    ))
}

/// The text of the JSON document column `col`, `json` or `jsonb` (in the binary format sqlx asks
/// for, a `jsonb` value is a version byte, 1, and the text), made compact ([`compact_json`]) when it
/// is `jsonb`'s text: a `jsonb` column's, or a document stored before migration 0019 made `doc`
/// `json`. `jsonb`'s text puts `": ` after every key; the store's own compact text has no `": `
/// outside strings, and within them compacting changes nothing, so the check needs no parse.
fn doc_text(row: &PgRow, col: &str) -> StoreResult<String> {
    use sqlx::{TypeInfo, ValueRef};
    let value = row.try_get_raw(col)?;
    let binary = matches!(value.format(), sqlx::postgres::PgValueFormat::Binary);
    let jsonb = value.type_info().name() == "JSONB";
    let bytes = if value.is_null() { None } else { value.as_bytes().ok() };
    let text = match bytes {
        Some([1, text @ ..]) if binary && jsonb => text,
        Some(text) if !(binary && jsonb) => text,
        _ => {
            return Err(StoreError::Scim(ScimError::internal(format!(
                "column {col} is not a JSON document"
            ))));
        }
    };
    let text = if memchr::memmem::find(text, b"\": ").is_some() {
        compact_json(text)
    } else {
        text.to_vec()
    };
    String::from_utf8(text)
        .map_err(|e| StoreError::Scim(ScimError::internal(format!("column {col} is not UTF-8: {e}"))))
}

/// `jsonb` as text has a space after each `:` and `,`; a response is written from that text, so it
/// is made as compact as the rest of the response (and as SQLite's stored text): whitespace outside
/// strings is left out. `text` is JSON.
fn compact_json(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b' ' | b'\n' | b'\t' | b'\r' => i += 1,
            b'"' => {
                // A string, copied to its closing quote (escapes included) in one piece.
                let mut end = i + 1;
                while let Some(j) = memchr::memchr2(b'"', b'\\', &text[end..]) {
                    end += j + 1;
                    if text[end - 1] == b'"' {
                        break;
                    }
                    end += 1; // the escaped character
                }
                let end = end.min(text.len());
                out.extend_from_slice(&text[i..end]);
                i = end;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A column expression giving a resource's group members (groups) or groups (users) as a JSON
/// array of `[id, kind, display]` beside its row (`r`), read by [`related_of`]; `NULL` when they are
/// not wanted. One indexed lookup per row, in the same statement. Built as `json` text, not `jsonb`:
/// PostgreSQL then writes it once instead of building a `jsonb` value and writing that out (a GET of
/// a 2,000-member group, 4.4 → 3.1 ms of PostgreSQL's time, benchmarks.md).
fn related_column(kind: ResourceKind, with_members: bool) -> &'static str {
    match (with_members, kind) {
        (false, _) => "NULL::json",
        (true, ResourceKind::Group) => {
            "(SELECT COALESCE(json_agg(json_build_array(u.id, u.kind, m.display) ORDER BY m.member_pk), '[]')
              FROM group_members m JOIN resources u ON u.pk = m.member_pk
              WHERE m.connection_id = r.connection_id AND m.group_pk = r.pk)"
        }
        (true, ResourceKind::User) => {
            "(SELECT COALESCE(json_agg(json_build_array(g.id, g.kind, g.doc ->> 'displayName') ORDER BY m.group_pk), '[]')
              FROM group_members m JOIN resources g ON g.pk = m.group_pk
              WHERE m.connection_id = r.connection_id AND m.member_pk = r.pk AND g.deleted_us IS NULL)"
        }
    }
}

/// The `related` column of [`related_column`].
fn related_of(row: &PgRow) -> Vec<MemberView> {
    let Json(items): Json<Vec<(String, String, Option<String>)>> = row.get("related");
    MemberView::from_rows(items)
}

/// The size on the wire of a column of a row (0 for NULL): what reading it into memory costs.
fn raw_len(row: &PgRow, col: &str) -> usize {
    row.try_get_raw(col)
        .ok()
        .and_then(|v| v.as_bytes().ok().map(<[u8]>::len))
        .unwrap_or(0)
}

const RESOURCE_COLS: &str = "r.pk, r.id, r.doc, r.version, r.created_us, r.modified_us";

/// A resource to insert: its new id, its document (without `id` and `meta`) and a group's
/// initial members.
pub(crate) struct NewRow {
    pub id: String,
    pub doc: Value,
    pub members: Vec<MemberRef>,
}

/// The SQL of a list request (see [`PostgresStore::list_sql`]).
#[derive(Debug, Clone)]
pub struct ListSql {
    /// `SELECT COUNT(*)` of the matching resources.
    pub count: SqlBuilder,
    /// The page of resources.
    pub page: SqlBuilder,
    /// The page's `LIMIT` (0: the page is not read).
    pub limit: i64,
    /// Whether the page's rows carry their members (groups) or groups (users) in a `related`
    /// column; when members are wanted and this is false, they are read afterwards.
    pub related_inline: bool,
    /// Whether the page's rows carry the count of every match in a `total` column: on pages after
    /// the first, which always need it, it comes with the page instead of a second round trip.
    pub total_inline: bool,
}

impl PostgresStore {
    /// Group members (for groups) or groups (for users) of the resources `pks` (a page, in its
    /// order), in one query read a row at a time: once they reach `budget` bytes, the resources
    /// from the next one on are left out (the first is always complete). Returns them and how many
    /// of `pks` they cover.
    async fn related_many(
        &self,
        connection_id: &str,
        pks: &[i64],
        kind: ResourceKind,
        budget: usize,
    ) -> StoreResult<(HashMap<i64, Vec<MemberView>>, usize)> {
        let mut out: HashMap<i64, Vec<MemberView>> = HashMap::new();
        if pks.is_empty() {
            return Ok((out, 0));
        }
        let sql = match kind {
            ResourceKind::Group => {
                "SELECT p.n, m.group_pk, u.id, u.kind, m.display
                 FROM UNNEST($1::bigint[]) WITH ORDINALITY AS p(pk, n)
                 JOIN group_members m ON m.connection_id = $2 AND m.group_pk = p.pk
                 JOIN resources u ON u.pk = m.member_pk
                 ORDER BY p.n, m.member_pk"
            }
            // A user's groups by the member index, looked up for each user in turn: the subquery
            // is kept apart (`OFFSET 0`), since joined to the keys unnested, a small connection's
            // generic plan read every membership into a hash for each page. (With the users' keys
            // as an `= ANY` condition instead, placing each row on the page by `array_position`
            // took as long as the lookup.) `n` is the user's place on the page, as above.
            ResourceKind::User => {
                "SELECT p.n, m.member_pk, g.id, g.kind, g.doc ->> 'displayName'
                 FROM UNNEST($1::bigint[]) WITH ORDINALITY AS p(pk, n)
                 CROSS JOIN LATERAL (SELECT m.member_pk, m.group_pk FROM group_members m
                                     WHERE m.connection_id = $2 AND m.member_pk = p.pk OFFSET 0) m
                 JOIN resources g ON g.connection_id = $2 AND g.pk = m.group_pk
                 WHERE g.deleted_us IS NULL
                 ORDER BY p.n, m.group_pk"
            }
        };
        let mut conn = self.lane.lease().await?;
        let mut rows = sqlx::query_as::<_, (i64, i64, String, String, Option<String>)>(sql)
            .bind(pks)
            .bind(connection_id)
            .fetch(&mut *conn);
        let (mut used, mut covered) = (0usize, pks.len());
        while let Some((n, owner, id, kind, display)) = rows.try_next().await? {
            // `n` is 1-based: the resource at index `n - 1` of the page.
            let at = (n - 1) as usize;
            if at > 0 && used >= budget && !out.contains_key(&owner) {
                covered = at;
                break;
            }
            used += id.len() + kind.len() + display.as_ref().map_or(0, String::len) + 8;
            out.entry(owner).or_default().push(MemberView {
                id,
                kind: ResourceKind::parse(&kind).unwrap_or(ResourceKind::User),
                display,
            });
        }
        drop(rows);
        if covered < pks.len() {
            // As in `list_resources`: the rest of the answer is not read, the connection goes.
            conn.discard();
        } else {
            conn.done();
        }
        Ok((out, covered))
    }

    /// The statements a list runs: the count and the page. Public so that tests can `EXPLAIN`
    /// exactly what the store executes. `after_pk`: for a cursor page, the row key of the resource
    /// the cursor names ([`PostgresStore::cursor_pk`]).
    pub fn list_sql(
        &self,
        connection_id: &str,
        kind: ResourceKind,
        query: &ListQuery,
        after_pk: Option<i64>,
    ) -> StoreResult<ListSql> {
        let ListPlan {
            matches,
            mut page,
            connection,
            order,
            limit,
            offset,
            ..
        } = list_plan(
            Dialect::Postgres,
            &self.registry,
            self.rt(kind),
            kind,
            connection_id,
            query,
            after_pk,
        )?;
        let mut count = matches.clone();
        count.sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", matches.sql);
        // The page's statement keeps the count's text and parameters as its first ones: the count
        // can be a column of the page (an uncorrelated subquery: PostgreSQL computes it once).
        let count_column = format!("(SELECT COUNT(*) FROM resources r WHERE {})", matches.sql);
        // The members come in the same statement when nothing is skipped (a filter, the first
        // page, a cursor page). A page with an offset reads them afterwards for its own rows only
        // (`related_many`): when it read its rows in one scan, a column subquery ran for every row
        // the OFFSET skipped; with the rows found by key (below) it would not, but as a column
        // each row's members are built as JSON and written out as text, which measured slower
        // than the second statement's plain columns (benchmarks.md, 7 Dec 2026, 03:45; again with
        // `json_agg`, 22:05: 0.93 ms against 0.45 + 0.33 with every user in a group).
        let related_inline = query.with_members && offset == 0;
        // The offset is bound, so that every page is the same prepared statement (written into the
        // text, each offset was a statement of its own for sqlx to prepare and cache); the limit, a
        // handful of values in practice, stays in the text for the planner.
        //
        // Without an offset (a filter, a first page) there is no OFFSET at all: with `OFFSET $n`
        // beside the members' subquery, the planner's estimate for an unknown offset made the cached
        // generic plan look dearer than one for the values at hand, so PostgreSQL planned the
        // statement again on every execution (0.2 ms of planning per filter, seen in `EXPLAIN`).
        page.push(&format!(" ORDER BY {order} LIMIT {limit}"));
        if offset > 0 {
            page.push(" OFFSET ").bind(Bind::Int(offset));
        }
        // A page after the first always needs the count (`Paging::holds_every_match`).
        let total_inline = !query.paging.holds_every_match(0, limit);
        let select = format!(
            "SELECT {RESOURCE_COLS}, {} AS related{}",
            related_column(kind, related_inline),
            if total_inline {
                format!(", {count_column} AS total")
            } else {
                String::new()
            },
        );
        page.sql = if offset > 0 {
            // The rows the OFFSET skips are found by their keys alone (an index-only scan of
            // `resources_live_users` when nothing else is asked), and only the page's own rows are then
            // read whole, by key, in the same order (the order ends with `r.pk`: it is total).
            // Read in one scan, each skipped row was fetched from the table: a thousand rows for
            // page 11. (The keys as an array, not a join: joined, a small table's generic plan
            // read the whole table into a hash.)
            format!(
                "{select} FROM resources r WHERE r.connection_id = {connection}
                 AND r.pk = ANY(ARRAY(SELECT r.pk FROM resources r WHERE {})) ORDER BY {order}",
                page.sql
            )
        } else {
            format!("{select} FROM resources r WHERE {}", page.sql)
        };
        Ok(ListSql {
            count,
            page,
            limit,
            related_inline,
            total_inline,
        })
    }

    /// The row key of the resource a list cursor names, looked up within the connection and
    /// resource type (soft-deleted resources keep theirs); 400 `invalidCursor` when it is not there.
    pub async fn cursor_pk(
        &self,
        conn: &mut PgConnection,
        connection_id: &str,
        kind: ResourceKind,
        id: &str,
    ) -> StoreResult<i64> {
        let pk: Option<i64> =
            sqlx::query_scalar("SELECT pk FROM resources WHERE connection_id = $1 AND id = $2 AND kind = $3")
                .bind(connection_id)
                .bind(id)
                .bind(kind.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(pk) = pk {
            return Ok(pk);
        }
        let erased: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE connection_id = $1 AND resource_id = $2 AND resource_type = $3)",
        )
        .bind(connection_id)
        .bind(id)
        .bind(kind.as_str())
        .fetch_one(&mut *conn)
        .await?;
        Err(crate::cursor_not_found(kind, erased))
    }

    /// Writes what a mutation computed ([`crate::update`]) in a transaction of its own
    /// ([`resource_rows::update`]). Run again as a whole after a serialization failure or
    /// deadlock ([`PostgresStore::retrying`]), with the same computation: the checks are redone.
    async fn update_write_once(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        if_match: Option<i64>,
        computed: &Computed,
    ) -> StoreResult<Written> {
        let mut tx = self.begin_write().await?;
        let guarded = resource_rows::update(&mut tx, &self.registry, ctx, kind, if_match, computed).await?;
        match &guarded {
            Guarded::Done(_) => tx.commit().await?,
            Guarded::Protected(_) => drop(tx),
        }
        guarded.answer(self, ctx, &computed.current.id, "deactivate").await
    }

    async fn delete_resource_once(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let guarded = resource_rows::delete(&mut tx, ctx, kind, id, if_match).await?;
        match &guarded {
            Guarded::Done(_) => tx.commit().await?,
            Guarded::Protected(_) => drop(tx),
        }
        guarded.answer(self, ctx, id, "delete").await
    }
}

#[async_trait]
impl ResourceStore for PostgresStore {
    async fn create_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        doc: Value,
        members: Vec<MemberRef>,
    ) -> StoreResult<StoredResource> {
        let mut created = self.create_resources(ctx, kind, vec![(doc, members)]).await?;
        Ok(created.pop().expect("one resource created"))
    }

    async fn create_resources(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        items: Vec<(Value, Vec<MemberRef>)>,
    ) -> StoreResult<Vec<StoredResource>> {
        let rows: Vec<NewRow> = items
            .into_iter()
            .map(|(mut doc, members)| {
                if let Value::Object(m) = &mut doc {
                    m.remove("id");
                    m.remove("meta");
                }
                NewRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    doc,
                    members,
                }
            })
            .collect();
        let now = now_us();
        // One statement when no role computation is needed (see `writes`); else a transaction.
        self.retrying(|| async {
            if rows.iter().all(|r| r.members.is_empty()) {
                let written = match rows.as_slice() {
                    [row] => self.create_queued(ctx, kind, row, now).await?,
                    _ => self.create_resources_one_statement(ctx, kind, &rows, now).await?,
                };
                if written {
                    return Ok(());
                }
            }
            let mut tx = self.begin_write().await?;
            for NewRow { id, doc, members } in &rows {
                resource_rows::create(&mut tx, &self.registry, ctx, kind, id, doc, members, now).await?;
            }
            tx.commit().await
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|NewRow { id, mut doc, .. }| {
                put_id(&mut doc, &id);
                StoredResource::created(id, kind, doc, now)
            })
            .collect())
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
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RESOURCE_COLS}, {related} AS related FROM resources r
             WHERE r.connection_id = $1 AND r.id = $2{}",
            live_kind(kind)
        )))
        .bind(connection_id)
        .bind(id);
        let mut conn = self.lane.lease().await.map_err(finish_error)?;
        let row = row
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| finish_error(e.into()))?;
        conn.done();
        drop(conn);
        let Some(row) = row else { return Ok(None) };
        let mut res = resource_of(&row, kind).map_err(finish_error)?;
        if with_members {
            res.related = Some(related_of(&row));
        }
        Ok(Some(res))
    }

    async fn update_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
        mutation: Mutation,
    ) -> StoreResult<Option<StoredResource>> {
        // Read and computed outside any transaction; only the write locks the row ([`crate::update`]).
        let read = || self.get_resource(&ctx.connection_id, kind, id, false);
        let write = |computed: Computed| async move {
            self.retrying(|| self.write_update(ctx, kind, if_match, &computed))
                .await
        };
        crate::update::run(&mutation, if_match, read, write)
            .await
            .map_err(finish_error)
    }

    async fn delete_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> StoreResult<bool> {
        self.retrying(|| self.delete_resource_once(ctx, kind, id, if_match))
            .await
    }

    async fn list_resources(&self, connection_id: &str, kind: ResourceKind, query: &ListQuery) -> StoreResult<Page> {
        let mut conn = self.lane.lease().await.map_err(finish_error)?;
        let after_pk = match &query.paging {
            Paging::Cursor { after: Some(id) } => Some(
                self.cursor_pk(&mut conn, connection_id, kind, id)
                    .await
                    .map_err(finish_error)?,
            ),
            _ => None,
        };
        let ListSql {
            count,
            page,
            limit,
            related_inline,
            total_inline,
        } = self.list_sql(connection_id, kind, query, after_pk)?;
        let mut total_read = None;
        // Rows are read one at a time, and the page ends once the documents (and membership) read
        // reach `max_bytes` (`cut`), with at least one resource.
        let mut rows: Vec<(i64, StoredResource)> = Vec::new();
        let (mut bytes, mut cut) = (0usize, false);
        if limit > 0 {
            let mut stream =
                sqlx::query_with(AssertSqlSafe(page.sql), bind_all::<Postgres>(&page.binds)).fetch(&mut *conn);
            while let Some(row) = stream.try_next().await.map_err(|e| finish_error(e.into()))? {
                if !rows.is_empty() && bytes >= query.max_bytes {
                    cut = true;
                    break;
                }
                if total_inline && total_read.is_none() {
                    total_read = Some(row.try_get::<i64, _>("total").map_err(|e| finish_error(e.into()))?);
                }
                bytes += raw_len(&row, "doc") + raw_len(&row, "related");
                let mut r = resource_of(&row, kind).map_err(finish_error)?;
                if related_inline {
                    r.related = Some(related_of(&row));
                }
                rows.push((row.get::<i64, _>("pk"), r));
            }
        }
        let mut conn = if cut {
            // The server is still sending the rest of the page: rather than read and drop it all
            // (up to `count` large documents), drop this connection's socket, which ends the query
            // (the server's next write fails); the pool opens another connection when it needs one.
            // (Not `close_hard`: its shutdown was seen to wait forever here, the server blocked on a
            // full socket.)
            conn.discard();
            None
        } else {
            Some(conn)
        };
        let total: i64 = if let Some(total) = total_read {
            total
        } else if !cut && query.paging.holds_every_match(rows.len(), limit) {
            rows.len() as i64
        } else {
            // A first page that is full, or a page past the last match (no row to carry the count).
            let q = sqlx::query_scalar_with(AssertSqlSafe(count.sql), bind_all::<Postgres>(&count.binds));
            match conn.as_mut() {
                Some(c) => q.fetch_one(&mut **c).await,
                None => q.fetch_one(&self.pool).await,
            }
            .map_err(|e| finish_error(e.into()))?
        };
        if let Some(mut c) = conn {
            c.done();
        }
        let mut next_after = None;
        if matches!(query.paging, Paging::Cursor { .. }) && (cut || rows.len() as i64 > query.count) {
            rows.truncate(query.count.max(0) as usize);
            next_after = rows.last().map(|(_, r)| r.id.clone());
        }
        if query.with_members && !related_inline {
            // (Only index pages after the first read members apart; their total is counted above.)
            let pks: Vec<i64> = rows.iter().map(|(pk, _)| *pk).collect();
            let (mut related, covered) = self
                .related_many(connection_id, &pks, kind, query.max_bytes.saturating_sub(bytes))
                .await
                .map_err(finish_error)?;
            rows.truncate(covered.max(1));
            for (pk, r) in &mut rows {
                r.related = Some(related.remove(pk).unwrap_or_default());
            }
        }
        Ok(Page {
            total,
            resources: rows.into_iter().map(|(_, r)| r).collect(),
            next_after,
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn pool_stats(&self) -> Vec<crate::metrics::PoolStats> {
        vec![crate::metrics::PoolStats {
            name: "postgres",
            size: self.pool.size(),
            // The lane's idle connections are lent out as far as the pool knows.
            idle: (self.pool.num_idle() + self.lane.stats().1) as u32,
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    #[test]
    fn jsonb_text_is_made_compact_outside_strings() {
        let text = r#"{"a": [1, 2], "b": {"c": "x, y: \"z\" \\", "d": null}, "e": "\\"}"#;
        let compact = compacted(text);
        assert_eq!(compact, r#"{"a":[1,2],"b":{"c":"x, y: \"z\" \\","d":null},"e":"\\"}"#);
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&compact).unwrap(), parsed);
        assert_eq!(compacted(r#"{"a":1}"#), r#"{"a":1}"#);
    }

    fn compacted(text: &str) -> String {
        String::from_utf8(super::compact_json(text.as_bytes())).unwrap()
    }

    /// Any JSON value, strings drawn to hold what a compactor could trip on (quotes, backslashes,
    /// whitespace, `:` and `,`, non-ASCII).
    fn any_json() -> impl Strategy<Value = Value> {
        let text = "[a-z \\\\\"\t\n:,{}\\[\\]é😀]{0,12}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((text, inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the whitespace between tokens (`jsonb`'s, or a pretty printer's), the
        /// compacted text is exactly the value's compact serialization.
        #[test]
        fn compacting_leaves_the_compact_serialization(v in any_json()) {
            let compact = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(compacted(&serde_json::to_string_pretty(&v).unwrap()), compact.clone());
            prop_assert_eq!(compacted(&compact), compact);
        }
    }
}

#[cfg(test)]
mod event_order_tests {
    use super::*;
    use crate::{EventStore, TenancyStore, WebhookStore};
    use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};

    async fn store(name: &str) -> Option<(TestDatabase, PostgresStore)> {
        if pg_admin_url().is_none() {
            skip_note(name);
            return None;
        }
        let db = TestDatabase::create(Backend::Postgres, "rollcall_event_order").await;
        let store = PostgresStore::open(db.url(), Arc::new(SchemaRegistry::standard()), PgSettings::default())
            .await
            .unwrap();
        Some((db, store))
    }

    /// Opens a transaction that numbers one event as a store write does (the events lock shared,
    /// then the row) and stops before its `COMMIT`; returns the connection and the number.
    async fn numbering(store: &PostgresStore) -> (sqlx::pool::PoolConnection<Postgres>, i64) {
        let mut conn = store.pool.acquire().await.unwrap();
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        let seq: i64 = sqlx::query_scalar(
            "WITH lk AS (SELECT pg_advisory_xact_lock_shared($1) AS locked)
             INSERT INTO events (id, type, data, created_us) SELECT 'slow', 'organization.created', '{}', 0 FROM lk
             RETURNING seq",
        )
        .bind(EVENTS_LOCK)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        (conn, seq)
    }

    /// Waits until a statement of the database waits for an advisory lock, or `task` ends.
    async fn until_waiting_on_the_lock<T>(store: &PostgresStore, task: &tokio::task::JoinHandle<T>) {
        while !task.is_finished() {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// An event numbered before another but committed after it is not skipped: the reader waits
    /// for the transaction numbering it, then reads both, in number order.
    #[tokio::test]
    async fn a_reader_waits_for_a_lower_number_still_committing() {
        let Some((_db, store)) = store("a_reader_waits_for_a_lower_number_still_committing").await else {
            return;
        };
        let (mut slow, slow_seq) = numbering(&store).await;
        // A later write numbers its event above and commits first (the lock is shared).
        store.create_organization(&WriteContext::cli(), "Acme").await.unwrap();
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.events_after(0, 100).await.unwrap() })
        };
        until_waiting_on_the_lock(&store, &reader).await;
        sqlx::raw_sql("COMMIT").execute(&mut *slow).await.unwrap();
        let seqs: Vec<(i64, String)> = reader.await.unwrap().into_iter().map(|e| (e.seq, e.kind)).collect();
        assert_eq!(seqs.len(), 2, "{seqs:?}");
        assert_eq!(seqs[0].0, slow_seq);
        assert!(seqs[1].0 > slow_seq);
        assert_eq!(seqs[1].1, "organization.created");
    }

    /// A number handed out to a transaction that rolls back is left behind; the ceiling passes it.
    /// Webhook deliveries and new webhooks start after the ceiling.
    #[tokio::test]
    async fn the_ceiling_passes_a_rolled_back_number() {
        let Some((_db, store)) = store("the_ceiling_passes_a_rolled_back_number").await else {
            return;
        };
        assert_eq!(store.wait_events_ceiling().await.unwrap(), 0);
        let (mut slow, slow_seq) = numbering(&store).await;
        let ceiling = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_events_ceiling().await.unwrap() })
        };
        until_waiting_on_the_lock(&store, &ceiling).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut *slow).await.unwrap();
        assert_eq!(ceiling.await.unwrap(), slow_seq);
        store.create_organization(&WriteContext::cli(), "Acme").await.unwrap();
        let events = store.webhook_events(None, 0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].seq > slow_seq);
        assert_eq!(store.wait_events_ceiling().await.unwrap(), events[0].seq);
    }
}
