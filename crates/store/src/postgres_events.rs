//! PostgreSQL: the Events API's queries, event retention and the request log.

use crate::audit::{Actor, EventQuery, RequestLogEntry};
use crate::model::Event;
use crate::postgres::{PostgresStore, finish_error};
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::types::Json;
use sqlx::{Arguments, AssertSqlSafe, Row};
use std::collections::BTreeSet;

/// An `events` row.
pub(crate) fn event_of(row: &PgRow) -> Event {
    let Json(data): Json<Value> = row.get("data");
    let actor: Option<Json<Value>> = row.get("actor");
    let actor = actor.map(|Json(v)| v.to_string());
    Event {
        seq: row.get("seq"),
        id: row.get("id"),
        kind: row.get("type"),
        org_id: row.get("org_id"),
        connection_id: row.get("connection_id"),
        resource_type: row.get("resource_type"),
        resource_id: row.get("resource_id"),
        data,
        created_us: row.get("created_us"),
        actor: Actor::from_json(actor.as_deref()),
        user_agent: row.get("user_agent"),
        request_id: row.get("request_id"),
    }
}

fn request_log_of(row: &PgRow) -> RequestLogEntry {
    let status: i32 = row.get("status");
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

fn arg<'q, T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'q>(
    args: &mut PgArguments,
    n: &mut usize,
    v: T,
) -> String {
    args.add(v).expect("binding a plain value cannot fail");
    *n += 1;
    format!("${n}")
}

/// The statement and arguments [`crate::Store::query_events`] runs (public for the EXPLAIN tests).
/// Each filter is an equality on an indexed column ending in seq (see 0003_events.sql).
pub fn query_events_sql(q: &EventQuery) -> (String, PgArguments) {
    let mut args = PgArguments::default();
    let mut n = 0;
    let mut sql = format!(
        "SELECT * FROM events WHERE seq > {}",
        arg(&mut args, &mut n, q.after_seq)
    );
    if !q.types.is_empty() {
        let p = arg(&mut args, &mut n, q.types.clone());
        sql.push_str(&format!(" AND type = ANY({p}::text[])"));
    }
    if let Some(org) = &q.org_id {
        let p = arg(&mut args, &mut n, org.clone());
        sql.push_str(&format!(" AND org_id = {p}"));
    }
    if let Some(c) = &q.connection_id {
        let p = arg(&mut args, &mut n, c.clone());
        sql.push_str(&format!(" AND connection_id = {p}"));
    }
    if let Some(r) = &q.resource_id {
        let p = arg(&mut args, &mut n, r.clone());
        sql.push_str(&format!(" AND (resource_id = {p} OR member_id = {p})"));
    }
    let p = arg(&mut args, &mut n, q.limit.max(0));
    sql.push_str(&format!(" ORDER BY seq LIMIT {p}"));
    (sql, args)
}

impl PostgresStore {
    pub(crate) async fn query_events_impl(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let (sql, args) = query_events_sql(q);
        let rows = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| finish_error(e.into()))?;
        Ok(rows.iter().map(event_of).collect())
    }

    pub(crate) async fn get_event_impl(&self, id: &str) -> StoreResult<Option<Event>> {
        let row = sqlx::query("SELECT * FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| finish_error(e.into()))?;
        Ok(row.as_ref().map(event_of))
    }

    pub(crate) async fn prune_events_impl(&self, before_us: i64, batch: i64) -> StoreResult<u64> {
        // SKIP LOCKED: nodes pruning at the same time take different rows instead of waiting on
        // (or deadlocking with) each other.
        let n = sqlx::query(
            "DELETE FROM events WHERE seq IN
               (SELECT seq FROM events WHERE created_us < $1 ORDER BY created_us LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before_us)
        .bind(batch.max(0))
        .execute(&self.pool)
        .await
        .map_err(|e| finish_error(e.into()))?
        .rows_affected();
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
        let mut tx = self.pool.begin().await?;
        let col = |f: &dyn Fn(&RequestLogEntry) -> Option<String>| entries.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO request_log (connection_id, at_us, method, path, status, latency_us, scim_type, error_detail,
               user_agent, request_id, token_prefix, request_body, response_body, auth_scheme)
             SELECT t.connection_id, t.at_us, t.method, t.path, t.status, t.latency_us, t.scim_type, t.error_detail,
               t.user_agent, t.request_id, t.token_prefix, t.request_body, t.response_body, t.auth_scheme
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int4[], $6::int8[], $7::text[], $8::text[],
                         $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
                  WITH ORDINALITY AS t(connection_id, at_us, method, path, status, latency_us, scim_type, error_detail,
                         user_agent, request_id, token_prefix, request_body, response_body, auth_scheme, n)
             WHERE EXISTS (SELECT 1 FROM scim_connections c WHERE c.id = t.connection_id)
             ORDER BY t.n",
        )
        .bind(entries.iter().map(|e| e.connection_id.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.at_us).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.method.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.path.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| i32::from(e.status)).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.latency_us).collect::<Vec<_>>())
        .bind(col(&|e| e.scim_type.clone()))
        .bind(col(&|e| e.error_detail.clone()))
        .bind(col(&|e| e.user_agent.clone()))
        .bind(col(&|e| e.request_id.clone()))
        .bind(col(&|e| e.token_prefix.clone()))
        .bind(col(&|e| e.request_body.clone()))
        .bind(col(&|e| e.response_body.clone()))
        .bind(col(&|e| e.auth_scheme.clone()))
        .execute(&mut *tx)
        .await?;
        let connections: BTreeSet<&str> = entries.iter().map(|e| e.connection_id.as_str()).collect();
        for c in connections {
            // Everything older than the connection's `keep`-th newest entry goes (an index range).
            sqlx::query(
                "DELETE FROM request_log WHERE connection_id = $1 AND seq <=
                   (SELECT seq FROM request_log WHERE connection_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
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
            sqlx::query("SELECT * FROM request_log WHERE connection_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3")
                .bind(connection_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| finish_error(e.into()))?;
        Ok(rows.iter().map(request_log_of).collect())
    }
}
