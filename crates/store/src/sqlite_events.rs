//! SQLite: the Events API's queries, event retention and the request log.

use crate::audit::{Actor, EventQuery, RequestLogEntry};
use crate::model::Event;
use crate::sqlite::SqliteStore;
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::Value;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Row};
use std::collections::BTreeSet;

/// Request log rows per INSERT statement (13 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

/// An `events` row.
pub(crate) fn event_of(row: &SqliteRow) -> Event {
    let data: String = row.get("data");
    let actor: Option<String> = row.get("actor");
    Event {
        seq: row.get("seq"),
        id: row.get("id"),
        kind: row.get("type"),
        org_id: row.get("org_id"),
        connection_id: row.get("connection_id"),
        resource_type: row.get("resource_type"),
        resource_id: row.get("resource_id"),
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
        created_us: row.get("created_us"),
        actor: Actor::from_json(actor.as_deref()),
        user_agent: row.get("user_agent"),
        request_id: row.get("request_id"),
    }
}

fn request_log_of(row: &SqliteRow) -> RequestLogEntry {
    let status: i64 = row.get("status");
    RequestLogEntry {
        seq: row.get("seq"),
        connection_id: row.get("connection_id"),
        at_us: row.get("at_us"),
        method: row.get("method"),
        path: row.get("path"),
        status: u16::try_from(status).unwrap_or(0),
        latency_us: row.get("latency_us"),
        scim_type: row.get("scim_type"),
        error_detail: row.get("error_detail"),
        user_agent: row.get("user_agent"),
        request_id: row.get("request_id"),
        token_prefix: row.get("token_prefix"),
        auth_scheme: row.get("auth_scheme"),
        request_body: row.get("request_body"),
        response_body: row.get("response_body"),
    }
}

fn arg<'q, T: sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + 'q>(args: &mut SqliteArguments, v: T) {
    args.add(v).expect("binding a plain value cannot fail");
}

/// The statement and arguments [`crate::Store::query_events`] runs (public for the EXPLAIN tests).
/// Each filter is an equality on an indexed column ending in seq (see 0003_events.sql).
///
/// Types alone are read one index range per type, merged: SQLite's planner, judging by average
/// counts, would otherwise walk the whole log by `seq` looking for a rare type. With another filter
/// the planner picks that filter's index and checks the type on each row.
pub fn query_events_sql(q: &EventQuery) -> (String, SqliteArguments) {
    let mut args = SqliteArguments::default();
    let limit = q.limit.max(0);
    let other_filters = q.org_id.is_some() || q.connection_id.is_some() || q.resource_id.is_some();
    if !q.types.is_empty() && !other_filters {
        let branch = "SELECT * FROM (SELECT * FROM events INDEXED BY events_type
                        WHERE type = ? AND seq > ? ORDER BY seq LIMIT ?)";
        let sql = format!(
            "{} ORDER BY seq LIMIT ?",
            vec![branch; q.types.len()].join(" UNION ALL ")
        );
        for t in &q.types {
            arg(&mut args, t.clone());
            arg(&mut args, q.after_seq);
            arg(&mut args, limit);
        }
        arg(&mut args, limit);
        return (sql, args);
    }
    let mut sql = String::from("SELECT * FROM events WHERE seq > ?");
    arg(&mut args, q.after_seq);
    if !q.types.is_empty() {
        sql.push_str(" AND type IN (");
        sql.push_str(&vec!["?"; q.types.len()].join(", "));
        sql.push(')');
        for t in &q.types {
            arg(&mut args, t.clone());
        }
    }
    if let Some(org) = &q.org_id {
        sql.push_str(" AND org_id = ?");
        arg(&mut args, org.clone());
    }
    if let Some(c) = &q.connection_id {
        sql.push_str(" AND connection_id = ?");
        arg(&mut args, c.clone());
    }
    if let Some(r) = &q.resource_id {
        sql.push_str(" AND (resource_id = ? OR member_id = ?)");
        arg(&mut args, r.clone());
        arg(&mut args, r.clone());
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    arg(&mut args, limit);
    (sql, args)
}

impl SqliteStore {
    pub(crate) async fn query_events_impl(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let (sql, args) = query_events_sql(q);
        let rows = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(event_of).collect())
    }

    pub(crate) async fn get_event_impl(&self, id: &str) -> StoreResult<Option<Event>> {
        let row = sqlx::query("SELECT * FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(event_of))
    }

    pub(crate) async fn prune_events_impl(&self, before_us: i64, batch: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "DELETE FROM events WHERE seq IN
               (SELECT seq FROM events WHERE created_us < ? ORDER BY created_us LIMIT ?)",
        )
        .bind(before_us)
        .bind(batch.max(0))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    pub(crate) async fn append_request_log_impl(&self, entries: &[RequestLogEntry], keep: i64) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if keep < 1 {
            return Err(StoreError::Scim(ScimError::internal(
                "the request log must keep at least one entry",
            )));
        }
        let mut tx = self.begin_write().await?;
        // Many rows per statement: each statement is a round trip to SQLite's worker thread.
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO request_log (connection_id, at_us, method, path, status, latency_us, scim_type, error_detail,
                   user_agent, request_id, token_prefix, request_body, response_body, auth_scheme)
                 SELECT * FROM (VALUES {rows}) AS v
                 WHERE EXISTS (SELECT 1 FROM scim_connections c WHERE c.id = v.column1)"
            );
            let mut args = SqliteArguments::default();
            for e in chunk {
                arg(&mut args, e.connection_id.clone());
                arg(&mut args, e.at_us);
                arg(&mut args, e.method.clone());
                arg(&mut args, e.path.clone());
                arg(&mut args, i64::from(e.status));
                arg(&mut args, e.latency_us);
                arg(&mut args, e.scim_type.clone());
                arg(&mut args, e.error_detail.clone());
                arg(&mut args, e.user_agent.clone());
                arg(&mut args, e.request_id.clone());
                arg(&mut args, e.token_prefix.clone());
                arg(&mut args, e.request_body.clone());
                arg(&mut args, e.response_body.clone());
                arg(&mut args, e.auth_scheme.clone());
            }
            sqlx::query_with(AssertSqlSafe(sql), args).execute(&mut *tx).await?;
        }
        let connections: BTreeSet<&str> = entries.iter().map(|e| e.connection_id.as_str()).collect();
        for c in connections {
            // Everything older than the connection's `keep`-th newest entry goes (an index range).
            sqlx::query(
                "DELETE FROM request_log WHERE connection_id = ?1 AND seq <=
                   (SELECT seq FROM request_log WHERE connection_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            )
            .bind(c)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn request_log_impl(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RequestLogEntry>> {
        let rows =
            sqlx::query("SELECT * FROM request_log WHERE connection_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?")
                .bind(connection_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit.max(0))
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.iter().map(request_log_of).collect())
    }
}
