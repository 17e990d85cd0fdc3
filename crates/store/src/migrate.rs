//! Moving from the embedded SQLite database to PostgreSQL (`rollcall migrate-store`): every row of
//! every table copied into an empty, migrated PostgreSQL database in one transaction, with the same
//! ids, token and key hashes, encrypted secrets (under the same key), event sequence numbers and
//! webhook cursors, so identity providers and webhook consumers do not notice the move.
//!
//! The columns of each table are PostgreSQL's, read from its catalogue, and each is read from SQLite
//! as the PostgreSQL type needs it; a table the copy does not know refuses the copy, so a table added
//! later cannot be left behind silently. Identity columns are set past the highest value copied.

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use sqlx::{Postgres, QueryBuilder, Row};

/// Every table, parents before children (foreign keys hold at each insert).
pub const TABLES: &[&str] = &[
    "organizations",
    "scim_connections",
    "directory_sources",
    "api_keys",
    "resources",
    "resource_emails",
    "group_members",
    "roles",
    "role_mappings",
    "connection_default_roles",
    "user_roles",
    "protected_users",
    "workspaces",
    "workspace_mappings",
    "workspace_settings",
    "user_workspaces",
    "events",
    "deprovision_guards",
    "deprovision_window",
    "held_events",
    "match_reports",
    "request_log",
    "webhook_endpoints",
    "webhook_attempts",
    "service_settings",
    "setup_links",
    "browser_sessions",
    "provisioning_targets",
    "provisioning_objects",
    "provisioning_runs",
];

/// Rows copied, per table, in [`TABLES`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
}

fn refused(detail: impl Into<String>) -> StoreError {
    StoreError::Scim(ScimError::new(400, None, detail.into()))
}

/// A column of the target table and how its values travel.
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Bool,
    Float,
    Text,
    /// JSON text, cast to the column's type (`json` or `jsonb`): a `json` column keeps the text
    /// SQLite holds as it is.
    Json(&'static str),
    Bytes,
}

/// One value read from SQLite.
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

async fn columns(dst: &PostgresStore, table: &str) -> StoreResult<Vec<Column>> {
    let rows = sqlx::query(
        "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(dst.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.get("name");
            let ty: String = r.get("type");
            let kind = match ty.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Int,
                "boolean" => Kind::Bool,
                "double precision" | "real" => Kind::Float,
                "text" | "character varying" => Kind::Text,
                "jsonb" => Kind::Json("::jsonb"),
                "json" => Kind::Json("::json"),
                "bytea" => Kind::Bytes,
                other => {
                    return Err(refused(format!(
                        "{table}.{name} has the PostgreSQL type {other}, which the copy does not know"
                    )));
                }
            };
            Ok(Column { name, kind })
        })
        .collect()
}

fn read(row: &sqlx::sqlite::SqliteRow, i: usize, c: &Column, table: &str) -> StoreResult<Value> {
    let wrong = |e: sqlx::Error| refused(format!("{table}.{}: a value SQLite holds cannot be read: {e}", c.name));
    Ok(match c.kind {
        Kind::Int => Value::Int(row.try_get(i).map_err(wrong)?),
        Kind::Bool => Value::Bool(row.try_get(i).map_err(wrong)?),
        Kind::Float => Value::Float(row.try_get(i).map_err(wrong)?),
        Kind::Text | Kind::Json(_) => Value::Text(row.try_get(i).map_err(wrong)?),
        Kind::Bytes => Value::Bytes(row.try_get(i).map_err(wrong)?),
    })
}

/// Copies every row of `src` into `dst`, which must be migrated and hold no data; in one
/// transaction, so a failed copy leaves `dst` empty.
pub async fn sqlite_to_postgres(src: &SqliteStore, dst: &PostgresStore) -> StoreResult<CopyReport> {
    // Every table of the target is one the copy knows.
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(dst.pool())
    .await?;
    if let Some(unknown) = present.iter().find(|t| !TABLES.contains(&t.as_str())) {
        return Err(refused(format!(
            "the PostgreSQL database has a table \"{unknown}\" that this copy does not know; use the \
             rollcall binary that matches the database"
        )));
    }
    let mut tx = dst.pool().begin().await?;
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(refused(format!(
                "the PostgreSQL database is not empty ({table} has {n} rows); migrate-store copies into a \
                 new database only"
            )));
        }
    }
    let mut report = Vec::new();
    for table in TABLES {
        let cols = columns(dst, table).await?;
        if cols.is_empty() {
            return Err(refused(format!(
                "the PostgreSQL database has no table {table}: is it migrated?"
            )));
        }
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let select = format!("SELECT {} FROM {table}", names.join(", "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .fetch_all(&src.reader)
            .await
            .map_err(|e| refused(format!("reading {table} from SQLite failed: {e}")))?;
        // At most 65535 parameters in one statement.
        let per_batch = (60_000 / cols.len()).max(1);
        for chunk in rows.chunks(per_batch) {
            let mut values = Vec::with_capacity(chunk.len());
            for row in chunk {
                let mut v = Vec::with_capacity(cols.len());
                for (i, c) in cols.iter().enumerate() {
                    v.push(read(row, i, c, table)?);
                }
                values.push(v);
            }
            let mut q: QueryBuilder<Postgres> =
                QueryBuilder::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
            q.push_values(values, |mut b, row| {
                for (v, c) in row.into_iter().zip(&cols) {
                    match (v, c.kind) {
                        (Value::Text(t), Kind::Json(cast)) => {
                            b.push_bind(t).push_unseparated(cast);
                        }
                        (Value::Int(x), _) => {
                            b.push_bind(x);
                        }
                        (Value::Bool(x), _) => {
                            b.push_bind(x);
                        }
                        (Value::Float(x), _) => {
                            b.push_bind(x);
                        }
                        (Value::Text(x), _) => {
                            b.push_bind(x);
                        }
                        (Value::Bytes(x), _) => {
                            b.push_bind(x);
                        }
                    }
                }
            });
            q.build().execute(&mut *tx).await?;
        }
        report.push((table.to_string(), rows.len() as u64));
    }
    // Identity columns continue after the highest value copied (event sequence numbers above all).
    let serial: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in serial {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE((SELECT max({column}) FROM {table}), 0) + 1, false)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(CopyReport { tables: report })
}
