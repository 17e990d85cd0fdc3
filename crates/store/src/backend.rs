//! What the store bodies written once for both databases need of a backend, and nothing more: its
//! readers, its write transactions and the events they record, and how a write runs (run again
//! after a serialization failure and its errors mapped on PostgreSQL; once on SQLite, whose writes
//! queue for the one writer). The bodies are macros ([`crate::webhooks`], [`crate::sessions`])
//! instantiated once per backend with its concrete types, so every statement is written once, with
//! `$n` placeholders (sqlx's SQLite driver numbers them too) and the few real differences behind
//! [`Dialect`] ([`locking!`]).

use crate::audit::RequestLogEntry;
use crate::guard::HeldRow;
use crate::model::{Event, ResourceKind, WriteContext};
use crate::postgres::PostgresStore;
use crate::rows::{self, Cols};
use crate::sql::{Bind, Dialect};
use crate::sqlite::SqliteStore;
use crate::staging::SnapshotEvent;
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::Value;
use std::future::Future;

/// One backend, as the shared store bodies see it.
pub(crate) trait Backend: Sync {
    type Db: sqlx::Database;
    type Tx: Tx<Conn = <Self::Db as sqlx::Database>::Connection> + Send;
    const DIALECT: Dialect;
    /// The pool reads run on.
    fn reads(&self) -> &sqlx::Pool<Self::Db>;
    /// Starts a write transaction.
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send;
    /// Runs a write transaction (`f` begins and commits it); the one place writes are retried and
    /// their errors mapped.
    fn writing<T, F, Fut>(&self, f: F) -> impl Future<Output = StoreResult<T>> + Send
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = StoreResult<T>> + Send,
        T: Send;
    /// Runs one statement as a write of its own (one round trip on PostgreSQL); returns the number
    /// of rows it changed.
    fn write_one(&self, q: SqlQuery<Self>) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Runs one statement as a write of its own; returns the rows it returned.
    fn write_rows(&self, q: SqlQuery<Self>) -> impl Future<Output = StoreResult<Vec<Row<Self>>>> + Send;
    /// The highest sequence number the event log may be read up to: every event numbered at or
    /// below it has committed or never will. PostgreSQL numbers events before they commit, several
    /// transactions at once, so a reader first waits for those numbering to commit
    /// ([`PostgresStore::wait_events_ceiling`]). `None` where events are numbered in commit order
    /// (SQLite's one writer): whatever has committed may be read.
    fn events_ceiling(&self) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// An `events` row.
    fn event_of(row: &<Self::Db as sqlx::Database>::Row) -> Event;
    /// The arguments of a built statement ([`crate::sql::SqlBuilder`]).
    fn args(binds: &[Bind]) -> <Self::Db as sqlx::Database>::Arguments;
    /// The error a failed read answers with.
    fn read_error(e: sqlx::Error) -> StoreError {
        e.into()
    }
    /// Inserts a batch of request log entries in a write transaction ([`crate::event_log`]).
    fn insert_request_log(
        conn: &mut <Self::Db as sqlx::Database>::Connection,
        entries: &[RequestLogEntry],
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The bound of `seq <= $n` for a [`Backend::events_ceiling`]: every number when there is none.
pub(crate) fn or_all(ceiling: Option<i64>) -> i64 {
    ceiling.unwrap_or(i64::MAX)
}

/// A statement of a backend with its arguments.
pub(crate) type SqlQuery<S> =
    sqlx::query::Query<'static, <S as Backend>::Db, <<S as Backend>::Db as sqlx::Database>::Arguments>;

/// A row of a backend.
pub(crate) type Row<S> = <<S as Backend>::Db as sqlx::Database>::Row;

/// A write transaction of a backend.
pub(crate) trait Tx {
    type Conn;
    fn conn(&mut self) -> &mut Self::Conn;
    /// Records an event in this transaction.
    fn record(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Value,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Writes events a guard held back to the log, in order, as they were recorded.
    fn release(&mut self, held: Vec<HeldRow>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Announces at commit that connection `id` changed (its tokens, status or policy), so that
    /// every node's token cache forgets it (PostgreSQL; SQLite has one node).
    fn connection_changed(&mut self, _id: &str) {}
    /// Commits the transaction.
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records events in this transaction, in order.
    fn record_all(
        &mut self,
        ctx: &WriteContext,
        events: Vec<SnapshotEvent>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// A statement with a row-locking clause that only PostgreSQL has (SQLite writes one at a time):
/// `locking!(dialect, "SELECT … WHERE id = $1", "FOR UPDATE")`, with an optional tail after the clause.
macro_rules! locking {
    ($d:expr, $head:literal, $lock:literal $(, $tail:literal)?) => {
        match $d {
            $crate::sql::Dialect::Sqlite => concat!($head $(, $tail)?),
            $crate::sql::Dialect::Postgres => concat!($head, " ", $lock $(, $tail)?),
        }
    };
}
pub(crate) use locking;

/// The 404 of a write naming an organization that does not exist.
pub(crate) fn no_organization(org_id: &str) -> StoreError {
    StoreError::Scim(ScimError::new(
        404,
        None,
        format!("no organization with id \"{org_id}\""),
    ))
}

impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;
    type Tx = crate::sqlite::group_commit::WriteTx;
    const DIALECT: Dialect = Dialect::Sqlite;
    fn reads(&self) -> &sqlx::SqlitePool {
        &self.reader
    }
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send {
        self.begin_write()
    }
    async fn writing<T, F, Fut>(&self, mut f: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = StoreResult<T>> + Send,
        T: Send,
    {
        f().await
    }
    async fn write_one(&self, q: SqlQuery<Self>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let n = q.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }
    async fn write_rows(&self, q: SqlQuery<Self>) -> StoreResult<Vec<sqlx::sqlite::SqliteRow>> {
        let mut tx = self.begin_write().await?;
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }
    async fn events_ceiling(&self) -> StoreResult<Option<i64>> {
        Ok(None)
    }
    fn event_of(row: &sqlx::sqlite::SqliteRow) -> Event {
        let data = serde_json::from_str(&row.text("data")).unwrap_or(Value::Null);
        rows::event_of(row, data, row.opt_text("actor"))
    }
    fn args(binds: &[Bind]) -> sqlx::sqlite::SqliteArguments {
        crate::sql::bind_all::<sqlx::Sqlite>(binds)
    }
    fn insert_request_log(
        conn: &mut sqlx::SqliteConnection,
        entries: &[RequestLogEntry],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        crate::sqlite::request_log::insert(conn, entries)
    }
}

impl Tx for crate::sqlite::group_commit::WriteTx {
    type Conn = sqlx::SqliteConnection;
    fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        self
    }
    fn record(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Value,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        crate::sqlite::insert_event(self, ctx, kind, resource, data)
    }
    async fn record_all(&mut self, ctx: &WriteContext, events: Vec<SnapshotEvent>) -> StoreResult<()> {
        crate::sqlite::insert_all(self, ctx, &events).await
    }
    fn release(&mut self, held: Vec<HeldRow>) -> impl Future<Output = StoreResult<()>> + Send {
        crate::sqlite::guard_ops::release(self, held)
    }
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send {
        crate::sqlite::group_commit::WriteTx::commit(self)
    }
}

impl Backend for PostgresStore {
    type Db = sqlx::Postgres;
    type Tx = crate::postgres::WriteTx;
    const DIALECT: Dialect = Dialect::Postgres;
    fn reads(&self) -> &sqlx::PgPool {
        self.pool()
    }
    fn begin(&self) -> impl Future<Output = StoreResult<Self::Tx>> + Send {
        self.begin_write()
    }
    fn writing<T, F, Fut>(&self, f: F) -> impl Future<Output = StoreResult<T>> + Send
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = StoreResult<T>> + Send,
        T: Send,
    {
        self.retrying(f)
    }
    async fn write_one(&self, q: SqlQuery<Self>) -> StoreResult<u64> {
        let mut conn = self.lane.lease().await.map_err(crate::postgres::finish_error)?;
        let done = q.execute(&mut *conn).await;
        let n = done
            .map_err(|e| crate::postgres::finish_error(e.into()))?
            .rows_affected();
        conn.done();
        Ok(n)
    }
    async fn write_rows(&self, q: SqlQuery<Self>) -> StoreResult<Vec<sqlx::postgres::PgRow>> {
        let mut conn = self.lane.lease().await.map_err(crate::postgres::finish_error)?;
        let done = q.fetch_all(&mut *conn).await;
        let rows = done.map_err(|e| crate::postgres::finish_error(e.into()))?;
        conn.done();
        Ok(rows)
    }
    async fn events_ceiling(&self) -> StoreResult<Option<i64>> {
        self.wait_events_ceiling().await.map(Some)
    }
    fn event_of(row: &sqlx::postgres::PgRow) -> Event {
        use sqlx::Row;
        let sqlx::types::Json(data) = row.get("data");
        let actor: Option<sqlx::types::Json<Value>> = row.get("actor");
        rows::event_of(row, data, actor.map(|a| a.0.to_string()))
    }
    fn args(binds: &[Bind]) -> sqlx::postgres::PgArguments {
        crate::sql::bind_all::<sqlx::Postgres>(binds)
    }
    fn read_error(e: sqlx::Error) -> StoreError {
        crate::postgres::finish_error(e.into())
    }
    fn insert_request_log(
        conn: &mut sqlx::PgConnection,
        entries: &[RequestLogEntry],
    ) -> impl Future<Output = StoreResult<()>> + Send {
        crate::postgres::request_log::insert(conn, entries)
    }
}

impl Tx for crate::postgres::WriteTx {
    type Conn = sqlx::PgConnection;
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        crate::postgres::WriteTx::conn(self)
    }
    fn record(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Value,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.event(ctx, kind, resource, data);
        std::future::ready(Ok(()))
    }
    fn release(&mut self, held: Vec<HeldRow>) -> impl Future<Output = StoreResult<()>> + Send {
        crate::postgres::guard_ops::release(self, held);
        std::future::ready(Ok(()))
    }
    fn connection_changed(&mut self, id: &str) {
        crate::postgres::WriteTx::connection_changed(self, id);
    }
    fn commit(self) -> impl Future<Output = StoreResult<()>> + Send {
        crate::postgres::WriteTx::commit(self)
    }
    fn record_all(
        &mut self,
        ctx: &WriteContext,
        events: Vec<SnapshotEvent>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        for (kind, resource, data) in events {
            self.event(ctx, kind, resource.as_ref().map(|(k, id)| (*k, id.as_str())), data);
        }
        std::future::ready(Ok(()))
    }
}
