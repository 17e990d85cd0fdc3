//! PostgreSQL: a batch of request log entries inserted ([`crate::event_log`]) in one statement,
//! one array per column.

use crate::StoreResult;
use crate::audit::RequestLogEntry;
use sqlx::PgConnection;

/// Inserts the entries of connections that exist, in order.
pub(crate) async fn insert(c: &mut PgConnection, entries: &[RequestLogEntry]) -> StoreResult<()> {
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
    .execute(c)
    .await?;
    Ok(())
}
