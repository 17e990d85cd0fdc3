//! Who has a SQLite database open: every [`super::SqliteStore`] holds a shared lock on a file
//! beside the database (`<database>-lock`, like SQLite's own `-wal` and `-shm`) for as long as it
//! lives; what must have the database to itself (`rollcall restore`, `rollcall secrets
//! rotate-key`) takes it exclusively, and so is refused while a server or another command has the
//! database open, and keeps them out until it is done. The locks are `flock(2)` locks: the
//! operating system drops them when a process ends, however it ends.

use crate::{StoreError, StoreResult};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// A lock on a database, held until dropped.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

/// The lock file of the database at `db`.
pub fn lock_file(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

fn open(db: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_file(db))
}

fn error(detail: String) -> StoreError {
    StoreError::Locked(detail)
}

/// The shared lock every store holds. `None` (with a warning) when the lock file cannot be
/// created, e.g. in a directory this user cannot write to: the database is then opened without it.
pub(crate) fn shared(db: &Path) -> StoreResult<Option<DatabaseLock>> {
    let file = match open(db) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %lock_file(db).display(), error = %e,
                "cannot create the database's lock file: `rollcall restore` will not see that this process has the database open");
            return Ok(None);
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(DatabaseLock { _file: file })),
        Err(TryLockError::WouldBlock) => Err(error(format!(
            "the database at {} is being restored or its secrets re-encrypted (`rollcall restore` or `rollcall \
             secrets rotate-key` has it to itself); try again when that has finished",
            db.display()
        ))),
        Err(TryLockError::Error(e)) => {
            tracing::warn!(path = %lock_file(db).display(), error = %e, "cannot lock the database's lock file");
            Ok(None)
        }
    }
}

/// The database to this process alone; refused while any store (a running `rollcall serve`, a
/// command) has it open.
pub fn exclusive(db: &Path) -> StoreResult<DatabaseLock> {
    let file = open(db).map_err(|e| error(format!("cannot create the lock file {}: {e}", lock_file(db).display())))?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(error(format!(
            "the database at {} is in use: a `rollcall serve` (or another rollcall command) has it open; stop it \
             first",
            db.display()
        ))),
        Err(TryLockError::Error(e)) => Err(error(format!("cannot lock {}: {e}", lock_file(db).display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_exclude_an_exclusive_one_and_the_other_way_round() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let a = shared(&db).unwrap().unwrap();
        let b = shared(&db).unwrap().unwrap();
        assert!(exclusive(&db).unwrap_err().to_string().contains("in use"));
        drop((a, b));
        let only = exclusive(&db).unwrap();
        assert!(shared(&db).unwrap_err().to_string().contains("being restored"));
        assert!(exclusive(&db).is_err());
        drop(only);
        assert!(shared(&db).unwrap().is_some());
        assert_eq!(lock_file(&db), dir.path().join("x.db-lock"));
    }
}
