//! Backing up and restoring a SQLite database (`rollcall backup`, `rollcall restore`).
//!
//! A backup is `VACUUM INTO` a new file: one read transaction, so a consistent copy of the
//! database as of one commit, taken while `rollcall serve` goes on writing (in WAL mode readers
//! and the writer do not wait for each other). It is written under a temporary name in the
//! target's directory, checked, flushed to disk and only then given its name, so a file with that
//! name is always a whole backup.
//!
//! A restore checks the file first (a SQLite database, intact, with Rollcall's tables and no
//! migration this version does not know), then copies it into the database with SQLite's online
//! backup API while holding the database to itself ([`super::lock`]): refused while a server or
//! another command has the database open.

use super::lock;
use crate::secrets::{COLUMNS, SecretInventory};
use crate::sql::Dialect;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a database (or a backup) holds, to show the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseSummary {
    /// The last migration applied.
    pub schema_version: i64,
    /// Migrations of this version not applied yet (`rollcall serve` applies them when it starts).
    pub migrations_pending: usize,
    pub organizations: i64,
    pub connections: i64,
    /// Users and groups not deleted.
    pub users: i64,
    pub groups: i64,
    pub events: i64,
    pub webhook_endpoints: i64,
    /// The secrets it holds and the keys they are sealed under ([`crate::secrets`]).
    pub secrets: SecretInventory,
    pub bytes: u64,
}

fn sqlite_error(what: &str, path: &Path, e: rusqlite::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

fn open_read_only(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_error("cannot open", path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| sqlite_error("cannot open", path, e))?;
    Ok(conn)
}

/// Checks that `path` is an intact Rollcall SQLite database whose migrations this version knows,
/// and says what it holds.
pub fn inspect(path: &Path) -> Result<DatabaseSummary, String> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let mut header = [0u8; 16];
    let head = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
    if head.is_err() || &header != b"SQLite format 3\0" {
        return Err(format!(
            "{} is not a SQLite database (a PostgreSQL dump is restored with pg_restore or psql, not here)",
            path.display()
        ));
    }
    let conn = open_read_only(path)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| sqlite_error("cannot check", path, e))?;
    if check != "ok" {
        return Err(format!("{} is damaged: {check}", path.display()));
    }
    let has_table = |name: &str| -> Result<bool, String> {
        conn.query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()
        .map(|r| r.is_some())
        .map_err(|e| sqlite_error("cannot read", path, e))
    };
    if !has_table("_sqlx_migrations")? || !has_table("organizations")? || !has_table("scim_connections")? {
        return Err(format!(
            "{} is a SQLite database but not Rollcall's (no Rollcall tables in it)",
            path.display()
        ));
    }
    let applied: Vec<(i64, Vec<u8>, bool)> = conn
        .prepare("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| sqlite_error("cannot read the migrations of", path, e))?;
    let known: HashMap<i64, &[u8]> = super::MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.as_ref()))
        .collect();
    for (version, checksum, success) in &applied {
        match known.get(version) {
            None => {
                return Err(format!(
                    "{} was written by a newer Rollcall: its migration {version} is unknown to this version ({}); \
                     use the Rollcall version that wrote it",
                    path.display(),
                    env!("CARGO_PKG_VERSION")
                ));
            }
            Some(c) if *c != checksum.as_slice() => {
                return Err(format!(
                    "{}: its migration {version} differs from this version's; it was written by another build of \
                     Rollcall",
                    path.display()
                ));
            }
            Some(_) if !success => {
                return Err(format!("{}: its migration {version} did not complete", path.display()));
            }
            Some(_) => {}
        }
    }
    let count = |sql: &str| -> Result<i64, String> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| sqlite_error("cannot read", path, e))
    };
    let mut secrets = SecretInventory::default();
    if has_table("webhook_endpoints")? {
        for column in COLUMNS {
            let mut st = conn
                .prepare(&column.select_sql(Dialect::Sqlite, false))
                .map_err(|e| sqlite_error("cannot read", path, e))?;
            let values = st
                .query_map([], |r| r.get::<_, String>(1))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| sqlite_error("cannot read", path, e))?;
            for v in values {
                secrets.add(column, &v);
            }
        }
    }
    Ok(DatabaseSummary {
        schema_version: applied.last().map_or(0, |a| a.0),
        migrations_pending: known.len().saturating_sub(applied.len()),
        organizations: count("SELECT COUNT(*) FROM organizations")?,
        connections: count("SELECT COUNT(*) FROM scim_connections")?,
        users: count("SELECT COUNT(*) FROM resources WHERE kind = 'User' AND deleted_us IS NULL")?,
        groups: count("SELECT COUNT(*) FROM resources WHERE kind = 'Group' AND deleted_us IS NULL")?,
        events: count("SELECT COUNT(*) FROM events")?,
        webhook_endpoints: if has_table("webhook_endpoints")? {
            count("SELECT COUNT(*) FROM webhook_endpoints")?
        } else {
            0
        },
        secrets,
        bytes,
    })
}

/// A file name beside `target` for work in progress.
fn temporary_beside(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rollcall".into());
    target.with_file_name(format!(".{name}.{what}-{}", uuid::Uuid::new_v4().simple()))
}

/// Flushes a directory's entries (a rename in it) to disk.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Removes a file when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Copies the database at `db` to a new file `to` while it is in use. Refuses an existing `to`
/// unless `force` (then replaces it whole, at once). The file is readable by its owner only.
pub fn backup(db: &Path, to: &Path, force: bool) -> Result<DatabaseSummary, String> {
    if !db.exists() {
        return Err(format!("no database at {}", db.display()));
    }
    if to.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it, or choose another name",
            to.display()
        ));
    }
    if to.is_dir() {
        return Err(format!("{} is a directory; give a file name", to.display()));
    }
    if same_file(db, to) || is_companion(db, to) {
        return Err(format!(
            "{} is the database itself (or one of its files); give the backup another name",
            to.display()
        ));
    }
    let temp = temporary_beside(to, "backup");
    // An empty file only the owner can read: `VACUUM INTO` writes into an empty file.
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    }
    let mut cleanup = RemoveOnDrop(Some(temp.clone()));
    let source = open_read_only(db)?;
    let temp_text = temp
        .to_str()
        .ok_or_else(|| format!("{} is not a UTF-8 path", temp.display()))?;
    source
        .execute("VACUUM INTO ?1", [temp_text])
        .map_err(|e| sqlite_error("cannot back up", db, e))?;
    drop(source);
    let summary = inspect(&temp).map_err(|e| format!("the backup did not check out: {e}"))?;
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot flush {}: {e}", temp.display()))?;
    if force {
        std::fs::rename(&temp, to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    } else {
        // A link fails if the name was taken meanwhile: never overwrites.
        std::fs::hard_link(&temp, to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        let _ = std::fs::remove_file(&temp);
    }
    cleanup.0 = None;
    sync_dir(to);
    Ok(summary)
}

/// The lock [`restore`] needs: the database to this process alone ([`lock::exclusive`]), refused
/// while any store has it open. Taken before asking the operator anything.
pub fn lock_for_restore(db: &Path) -> Result<lock::DatabaseLock, String> {
    lock::exclusive(db).map_err(|e| e.to_string())
}

/// Replaces the database at `db` (created when missing) with the backup `from`, after checking
/// it ([`inspect`]), holding `db` to this process alone ([`lock_for_restore`]). Returns what the
/// database now holds.
pub fn restore(db: &Path, from: &Path, _only_us: &lock::DatabaseLock) -> Result<DatabaseSummary, String> {
    let summary = inspect(from)?;
    if same_file(db, from) || is_companion(db, from) {
        return Err(format!("{} is the database itself", from.display()));
    }
    let source = open_read_only(from)?;
    let mut target = Connection::open(db).map_err(|e| sqlite_error("cannot open", db, e))?;
    target
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| sqlite_error("cannot open", db, e))?;
    {
        let copy = rusqlite::backup::Backup::new(&source, &mut target)
            .map_err(|e| sqlite_error("cannot restore into", db, e))?;
        // Every page in one step: the target changes in one transaction.
        match copy.step(-1).map_err(|e| sqlite_error("cannot restore into", db, e))? {
            rusqlite::backup::StepResult::Done => {}
            other => return Err(format!("cannot restore into {}: {other:?}; try again", db.display())),
        }
    }
    // Back in WAL mode, its changes in the main file.
    target
        .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(|e| sqlite_error("cannot restore into", db, e))?;
    target
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| sqlite_error("cannot restore into", db, e))?;
    drop(target);
    let now = inspect(db)?;
    if (now.organizations, now.users, now.events) != (summary.organizations, summary.users, summary.events) {
        return Err(format!(
            "the restored database at {} does not hold what the backup holds; restore again",
            db.display()
        ));
    }
    Ok(now)
}

/// Whether `other` is one of the files SQLite and Rollcall keep beside the database (`-wal`,
/// `-shm`, `-journal`, `-lock`).
fn is_companion(db: &Path, other: &Path) -> bool {
    let (Ok(db), Some(name), Some(dir)) = (
        std::path::absolute(db),
        other.file_name(),
        std::path::absolute(other)
            .ok()
            .and_then(|o| o.parent().map(Path::to_path_buf)),
    ) else {
        return false;
    };
    let prefix = db.file_name().map(|n| format!("{}-", n.to_string_lossy()));
    db.parent() == Some(dir.as_path()) && prefix.is_some_and(|p| name.to_string_lossy().starts_with(&p))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_rollcall_database() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("dump.sql");
        std::fs::write(&text, "CREATE TABLE x (y int);").unwrap();
        assert!(inspect(&text).unwrap_err().contains("not a SQLite database"));
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE x (y int);")
            .unwrap();
        assert!(inspect(&other).unwrap_err().contains("not Rollcall's"));
        let target = dir.path().join("r.db");
        assert!(restore(&target, &other, &lock_for_restore(&target).unwrap()).is_err());
        assert!(!dir.path().join("r.db").exists(), "nothing restored");
    }

    async fn populated(dir: &Path, name: &str) -> (PathBuf, crate::sqlite::SqliteStore) {
        use crate::TenancyStore;
        let path = dir.join(name);
        let store = crate::sqlite::SqliteStore::open(
            path.to_str().unwrap(),
            std::sync::Arc::new(rollcall_scim::schema::SchemaRegistry::standard()),
        )
        .await
        .unwrap();
        store
            .create_organization(&crate::WriteContext::cli(), name)
            .await
            .unwrap();
        (path, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_and_restore_round_trip_and_refuse_what_they_must() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = populated(dir.path(), "live.db").await;
        let copy = dir.path().join("copy.db");
        // While the store has the database open.
        let summary = backup(&db, &copy, false).unwrap();
        assert_eq!(
            (summary.organizations, summary.events, summary.migrations_pending),
            (1, 1, 0)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(backup(&db, &copy, false).unwrap_err().contains("--force"));
        assert!(backup(&db, &copy, true).is_ok());
        // No temporary file left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".backup-")), "{names:?}");

        // Not onto the database or its files.
        for name in ["live.db", "live.db-wal", "live.db-lock"] {
            assert!(
                backup(&db, &dir.path().join(name), true)
                    .unwrap_err()
                    .contains("the database itself")
            );
        }
        // Refused while a store has the target open.
        let (other, other_store) = populated(dir.path(), "other.db").await;
        assert!(lock_for_restore(&other).unwrap_err().contains("in use"));
        drop(other_store);
        let restored = restore(&other, &copy, &lock_for_restore(&other).unwrap()).unwrap();
        assert_eq!(restored.organizations, 1);
        let names = crate::sqlite::SqliteStore::open(
            other.to_str().unwrap(),
            std::sync::Arc::new(rollcall_scim::schema::SchemaRegistry::standard()),
        )
        .await
        .unwrap();
        let orgs = crate::TenancyStore::list_organizations(&names).await.unwrap();
        assert_eq!(orgs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["live.db"]);
        drop(names);

        // A backup written by a newer version is refused, and so is a restore of the database
        // onto itself.
        drop(store);
        let raw = Connection::open(&copy).unwrap();
        raw.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99999, 'future', 1, x'00', 0)",
            [],
        )
        .unwrap();
        drop(raw);
        assert!(inspect(&copy).unwrap_err().contains("newer Rollcall"));
        assert!(restore(&db, &db, &lock_for_restore(&db).unwrap()).is_err());
    }
}
