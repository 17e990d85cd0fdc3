//! The Events API's queries, event retention and the request log, written once for both databases
//! ([`Backend`]). What differs: the statement of a type-only query (SQLite's planner is steered to
//! the type index), the row lock of retention (PostgreSQL's nodes prune side by side), and how a
//! batch of request log entries is inserted ([`Backend::insert_request_log`]).

use crate::audit::{EventQuery, RequestLogEntry};
use crate::backend::{Backend, Tx, locking};
use crate::model::Event;
use crate::rows::request_log_of;
use crate::sql::{Bind, Dialect, SqlBuilder};
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use sqlx::AssertSqlSafe;
use std::collections::BTreeSet;

/// The statement [`EventStore::query_events`] runs, with its parameters. Each filter is an
/// equality on an indexed column ending in seq (see 0003_events.sql).
///
/// On SQLite, types alone are read one index range per type, merged: its planner, judging by
/// average counts, would otherwise walk the whole log by `seq` looking for a rare type. With another
/// filter the planner picks that filter's index and checks the type on each row.
///
/// `ceiling` is [`Backend::events_ceiling`]: no event numbered above it is read.
pub(crate) fn query_events_sql(d: Dialect, q: &EventQuery, ceiling: Option<i64>) -> SqlBuilder {
    let mut b = SqlBuilder::new(d);
    let limit = q.limit.max(0);
    let other_filters = q.org_id.is_some() || q.connection_id.is_some() || q.resource_id.is_some();
    if d == Dialect::Sqlite && !q.types.is_empty() && !other_filters {
        for (i, t) in q.types.iter().enumerate() {
            if i > 0 {
                b.push(" UNION ALL ");
            }
            b.push("SELECT * FROM (SELECT * FROM events INDEXED BY events_type WHERE type = ")
                .text(t.clone())
                .push(" AND seq > ")
                .bind(Bind::Int(q.after_seq))
                .push(" ORDER BY seq LIMIT ")
                .bind(Bind::Int(limit))
                .push(")");
        }
        b.push(" ORDER BY seq LIMIT ").bind(Bind::Int(limit));
        return b;
    }
    b.push("SELECT * FROM events WHERE seq > ").bind(Bind::Int(q.after_seq));
    if let Some(c) = ceiling {
        b.push(" AND seq <= ").bind(Bind::Int(c));
    }
    if !q.types.is_empty() {
        b.push(" AND type IN (");
        for (i, t) in q.types.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.text(t.clone());
        }
        b.push(")");
    }
    if let Some(org) = &q.org_id {
        b.push(" AND org_id = ").text(org.clone());
    }
    if let Some(c) = &q.connection_id {
        b.push(" AND connection_id = ").text(c.clone());
    }
    if let Some(r) = &q.resource_id {
        b.push(" AND (resource_id = ")
            .text(r.clone())
            .push(" OR member_id = ")
            .text(r.clone())
            .push(")");
    }
    b.push(" ORDER BY seq LIMIT ").bind(Bind::Int(limit));
    b
}

/// [`query_events_sql`] for a backend, with its arguments.
pub(crate) fn query_events_statement<S: Backend>(
    q: &EventQuery,
    ceiling: Option<i64>,
) -> (String, <S::Db as sqlx::Database>::Arguments) {
    let b = query_events_sql(S::DIALECT, q, ceiling);
    let args = S::args(&b.binds);
    (b.sql, args)
}

/// The event log: reading it, the Events API, event retention and the request log.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// Events recorded after `after` (sequence number), oldest first.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;

    // --- the Events API, event retention and the request log (issue #6) ------------------------
    /// Events matching `query`, oldest first (each filter is served by an index).
    async fn query_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>>;
    /// One event by its id.
    async fn get_event(&self, id: &str) -> StoreResult<Option<Event>>;
    /// Deletes up to `batch` of the oldest events recorded before `before_us`; returns how many.
    /// Safe to run on several nodes at once (PostgreSQL: rows another node is deleting are skipped).
    async fn prune_events(&self, before_us: i64, batch: i64) -> StoreResult<u64>;
    /// Appends request log entries in one transaction (entries of connections that do not exist
    /// are dropped), then trims each connection written to down to its newest `keep` entries.
    async fn append_request_log(&self, entries: &[RequestLogEntry], keep: i64) -> StoreResult<()>;
    /// A connection's request log, newest first: up to `limit` entries with `seq` below `before`
    /// (from the newest, without it).
    async fn request_log(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RequestLogEntry>>;
}

/// The events and the request log for a [`Backend`].
macro_rules! event_log {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl EventStore for $store {
            async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>> {
                let ceiling = self.events_ceiling().await?;
                let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 AND seq <= $3 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .bind(crate::backend::or_all(ceiling))
                    .fetch_all(self.reads())
                    .await
                    .map_err(<$store as Backend>::read_error)?;
                Ok(rows.iter().map(<$store as Backend>::event_of).collect())
            }

            async fn query_events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
                let ceiling = self.events_ceiling().await?;
                let (sql, args) = query_events_statement::<$store>(q, ceiling);
                let rows = sqlx::query_with(AssertSqlSafe(sql), args)
                    .fetch_all(self.reads())
                    .await
                    .map_err(<$store as Backend>::read_error)?;
                Ok(rows.iter().map(<$store as Backend>::event_of).collect())
            }

            async fn get_event(&self, id: &str) -> StoreResult<Option<Event>> {
                let row = sqlx::query("SELECT * FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(<$store as Backend>::read_error)?;
                Ok(row.as_ref().map(<$store as Backend>::event_of))
            }

            async fn prune_events(&self, before_us: i64, batch: i64) -> StoreResult<u64> {
                // SKIP LOCKED: PostgreSQL nodes pruning at the same time take different rows instead
                // of waiting on (or deadlocking with) each other.
                let sql = locking!(
                    <$store as Backend>::DIALECT,
                    "DELETE FROM events WHERE seq IN
                       (SELECT seq FROM events WHERE created_us < $1 ORDER BY created_us LIMIT $2",
                    "FOR UPDATE SKIP LOCKED",
                    ")"
                );
                self.write_one(sqlx::query(sql).bind(before_us).bind(batch.max(0)))
                    .await
            }

            async fn append_request_log(&self, entries: &[RequestLogEntry], keep: i64) -> StoreResult<()> {
                if entries.is_empty() {
                    return Ok(());
                }
                if keep < 1 {
                    return Err(StoreError::Scim(ScimError::internal(
                        "the request log must keep at least one entry",
                    )));
                }
                let connections: BTreeSet<&str> = entries.iter().map(|e| e.connection_id.as_str()).collect();
                let connections = &connections;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    <$store as Backend>::insert_request_log(tx.conn(), entries).await?;
                    for c in connections {
                        // Everything older than the connection's `keep`-th newest entry goes (an
                        // index range).
                        sqlx::query(
                            "DELETE FROM request_log WHERE connection_id = $1 AND seq <=
                               (SELECT seq FROM request_log WHERE connection_id = $1
                                ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                        )
                        .bind(*c)
                        .bind(keep)
                        .execute(tx.conn())
                        .await?;
                    }
                    tx.commit().await
                })
                .await
            }

            async fn request_log(
                &self,
                connection_id: &str,
                before: Option<i64>,
                limit: i64,
            ) -> StoreResult<Vec<RequestLogEntry>> {
                let rows = sqlx::query(
                    "SELECT * FROM request_log WHERE connection_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                )
                .bind(connection_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit.max(0))
                .fetch_all(self.reads())
                .await
                .map_err(<$store as Backend>::read_error)?;
                Ok(rows.iter().map(request_log_of).collect())
            }
        }
    };
}

event_log!(crate::sqlite::SqliteStore);
event_log!(crate::postgres::PostgresStore);
