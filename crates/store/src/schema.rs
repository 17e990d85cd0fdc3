//! The database's migrations against this build's, read without applying any (`rollcall doctor`):
//! opening a store applies them, which a check must not do.

use crate::StoreResult;
use sqlx::Row;
use std::str::FromStr;

/// The migrations a database has applied, compared with the ones this build knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaStatus {
    /// The highest migration this build knows.
    pub latest_known: i64,
    /// The highest migration the database has applied (0: none, an empty database).
    pub applied: i64,
    /// Migrations of this build not applied yet (`rollcall serve` applies them when it starts).
    pub pending: Vec<i64>,
    /// Migrations the database has applied that this build does not know: written by a newer
    /// Rollcall.
    pub unknown: Vec<i64>,
    /// Migrations applied with another content than this build's, or that did not complete.
    pub damaged: Vec<i64>,
}

/// Reads the migrations `database` (a SQLite or PostgreSQL URL) has applied, changing nothing:
/// a SQLite file is opened read-only and never created.
pub async fn schema_status(database: &str) -> StoreResult<SchemaStatus> {
    let postgres = database.starts_with("postgres://") || database.starts_with("postgresql://");
    let rows: Vec<(i64, bool, Vec<u8>)> = if postgres {
        let opts = sqlx::postgres::PgConnectOptions::from_str(database)?.application_name("rollcall doctor");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts).await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut conn)
            .await?;
        let rows = if exists {
            sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await?
                .iter()
                .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1), r.get::<Vec<u8>, _>(2)))
                .collect()
        } else {
            Vec::new()
        };
        sqlx::Connection::close(conn).await?;
        rows
    } else {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(database)?
            .read_only(true)
            .create_if_missing(false);
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts).await?;
        let exists: bool = sqlx::query_scalar(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&mut conn)
        .await?;
        let rows = if exists {
            sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await?
                .iter()
                .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1), r.get::<Vec<u8>, _>(2)))
                .collect()
        } else {
            Vec::new()
        };
        sqlx::Connection::close(conn).await?;
        rows
    };
    let migrator = if postgres {
        &crate::postgres::MIGRATOR
    } else {
        &crate::sqlite::MIGRATOR
    };
    Ok(compare(
        migrator.iter().map(|m| (m.version, m.checksum.as_ref())),
        &rows,
    ))
}

fn compare<'a>(known: impl Iterator<Item = (i64, &'a [u8])>, applied: &[(i64, bool, Vec<u8>)]) -> SchemaStatus {
    let known: std::collections::BTreeMap<i64, &[u8]> = known.collect();
    let mut status = SchemaStatus {
        latest_known: known.keys().next_back().copied().unwrap_or(0),
        applied: applied.iter().map(|a| a.0).max().unwrap_or(0),
        ..SchemaStatus::default()
    };
    for (version, success, checksum) in applied {
        match known.get(version) {
            None => status.unknown.push(*version),
            Some(c) if !success || *c != checksum.as_slice() => status.damaged.push(*version),
            Some(_) => {}
        }
    }
    status.pending = known
        .keys()
        .filter(|v| !applied.iter().any(|a| a.0 == **v))
        .copied()
        .collect();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_applied_with_known() {
        let known = [(1, b"a".as_slice()), (2, b"b".as_slice()), (3, b"c".as_slice())];
        let s = compare(known.into_iter(), &[(1, true, b"a".to_vec()), (2, true, b"b".to_vec())]);
        assert_eq!((s.latest_known, s.applied, s.pending.clone()), (3, 2, vec![3]));
        assert!(s.unknown.is_empty() && s.damaged.is_empty());
        let s = compare(
            known.into_iter(),
            &[
                (1, true, b"a".to_vec()),
                (2, false, b"b".to_vec()),
                (3, true, b"x".to_vec()),
                (4, true, b"d".to_vec()),
            ],
        );
        assert_eq!((s.unknown, s.damaged, s.pending), (vec![4], vec![2, 3], vec![]));
    }
}
