//! SQLite: a batch of request log entries inserted ([`crate::event_log`]), many rows per statement:
//! each statement is a round trip to SQLite's worker thread.

use crate::StoreResult;
use crate::audit::RequestLogEntry;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, SqliteConnection};

/// Rows per INSERT statement (14 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

fn arg<'q, T: sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + 'q>(args: &mut SqliteArguments, v: T) {
    args.add(v).expect("binding a plain value cannot fail");
}

/// Inserts the entries of connections that exist, in order.
pub(crate) async fn insert(c: &mut SqliteConnection, entries: &[RequestLogEntry]) -> StoreResult<()> {
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
        sqlx::query_with(AssertSqlSafe(sql), args).execute(&mut *c).await?;
    }
    Ok(())
}
