//! Settings of the service kept in the database, so that every node and the command line read the
//! same value: the public URL identity providers reach the service at ([`PUBLIC_URL`]), recorded
//! by `rollcall serve` when it starts. The statements are written once for both databases.

use crate::sql::Dialect;

/// The public base URL `rollcall serve` was last started with.
pub const PUBLIC_URL: &str = "public_url";

const GET: &str = "SELECT value, updated_us FROM service_settings WHERE key = $1";
const PUT: &str = "INSERT INTO service_settings (key, value, updated_us) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_us = excluded.updated_us";

/// The statement reading a setting, in `dialect`'s parameter style.
pub(crate) fn get_sql(dialect: Dialect) -> String {
    numbered(GET, dialect)
}

/// The statement writing a setting (`key`, `value`, `updated_us`).
pub(crate) fn put_sql(dialect: Dialect) -> String {
    numbered(PUT, dialect)
}

/// `$n` parameters as SQLite's `?n` (the same numbering).
fn numbered(sql: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => sql.to_string(),
        Dialect::Sqlite => sql.replace('$', "?"),
    }
}

/// One setting as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSetting {
    pub value: String,
    /// When it was last written, in microseconds since the epoch.
    pub updated_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_per_dialect() {
        assert!(get_sql(Dialect::Sqlite).ends_with("key = ?1"));
        assert!(get_sql(Dialect::Postgres).ends_with("key = $1"));
        assert!(put_sql(Dialect::Sqlite).contains("VALUES (?1, ?2, ?3)"));
    }
}
