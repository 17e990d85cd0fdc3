//! Reads of resources on the calling thread, with a budget.
//!
//! sqlx runs every SQLite statement on a worker thread of its own and sends each row back over a
//! channel. For the reads that SCIM clients make most (a user by id, an existence check by
//! `userName`, a page of users), that hand-off cost more CPU than the query: a profile of `GET
//! /Users/{id}` showed about a quarter of the server's CPU in waking threads, the channel and the
//! pool. These reads therefore run here, on the async task's own thread, over a small pool of
//! read-only connections (rusqlite, on the same bundled SQLite as sqlx).
//!
//! A read must not hold an async worker thread for long, so each one first runs with a budget of
//! SQLite virtual-machine steps ([`INLINE_BUDGET_TICKS`] × [`TICK_OPS`], well under a millisecond).
//! A read that runs out of budget (an unindexed filter over many users, a deep `startIndex`) is
//! interrupted and run again, without a budget, on tokio's blocking thread pool. Reads have no side
//! effects, so running one twice is safe; each run reads one consistent snapshot (one read
//! transaction).
//!
//! WAL mode lets these connections read while the writer (sqlx, [`super::group_commit`]) writes; they
//! see every transaction committed before the read began, as sqlx's reader pool did.

use crate::sql::Bind;
use crate::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// SQLite calls the progress handler every this many virtual-machine operations.
const TICK_OPS: i32 = 1_000;
/// Progress-handler calls an inline read may use before it moves to a blocking thread: about
/// 100,000 virtual-machine operations, a few hundred microseconds.
const INLINE_BUDGET_TICKS: u32 = 100;
/// Page cache of each reader connection (negative: KiB): small, since each connection keeps its
/// own copy of the pages it reads and the operating system caches the file anyway.
pub(crate) const READER_CACHE_KIB: &str = "-8192";
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// One read-only connection and the budget its progress handler counts down.
struct ReadConn {
    conn: Connection,
    ticks_left: Arc<AtomicU32>,
}

/// A pool of read-only connections to one database file.
pub(crate) struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<ReadConn>>,
    max_idle: usize,
}

impl InlineReader {
    /// Opens the pool (and one connection, to fail early) for the database file at `path`.
    pub(crate) fn open(path: &Path) -> StoreResult<Arc<InlineReader>> {
        let max_idle = std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
            .max(4);
        let reader = InlineReader {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            max_idle,
        };
        let first = reader.connect()?;
        reader.checkin(first);
        Ok(Arc::new(reader))
    }

    fn connect(&self) -> StoreResult<ReadConn> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(read_error)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(read_error)?;
        conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
            .map_err(read_error)?;
        conn.pragma_update(None, "temp_store", "memory").map_err(read_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let ticks_left = Arc::new(AtomicU32::new(u32::MAX));
        let ticks = ticks_left.clone();
        conn.progress_handler(
            TICK_OPS,
            Some(move || {
                // `true` interrupts the statement (SQLITE_INTERRUPT).
                let left = ticks.load(Ordering::Relaxed);
                if left == 0 {
                    return true;
                }
                ticks.store(left - 1, Ordering::Relaxed);
                false
            }),
        )
        .map_err(read_error)?;
        Ok(ReadConn { conn, ticks_left })
    }

    fn checkout(&self) -> StoreResult<ReadConn> {
        let idle = self.idle.lock().expect("reader pool lock").pop();
        match idle {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn checkin(&self, c: ReadConn) {
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }

    /// Runs `read` in one read transaction: first here, within the budget; if the budget runs out,
    /// again on a blocking thread without one.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + Sync + 'static,
    {
        let c = self.checkout()?;
        c.ticks_left.store(INLINE_BUDGET_TICKS, Ordering::Relaxed);
        let first = in_snapshot(&c.conn, &read);
        match first {
            Err(StoreError::Sqlite(e)) if is_interrupt(&e) => {
                let pool = self.clone();
                tokio::task::spawn_blocking(move || {
                    c.ticks_left.store(u32::MAX, Ordering::Relaxed);
                    let out = in_snapshot(&c.conn, &read);
                    pool.checkin(c);
                    out
                })
                .await
                .map_err(|e| StoreError::Scim(rollcall_scim::ScimError::internal(format!("read task failed: {e}"))))?
            }
            other => {
                self.checkin(c);
                other
            }
        }
    }
}

/// Runs `read` inside `BEGIN` … `COMMIT` (one snapshot for all its statements). Both are cached
/// statements: run as text, each was parsed again on every read (2 % of a filter's CPU).
fn in_snapshot<T>(conn: &Connection, read: &impl Fn(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let out = read(conn);
    // A read-only transaction: ending it cannot lose anything, so a failed read rolls it back.
    if conn.is_autocommit() {
        // SQLite ended the transaction itself (it does on some errors).
        return out;
    }
    let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.prepare_cached(end).and_then(|mut s| s.execute([]));
    if let Err(e) = ended {
        if out.is_ok() {
            return Err(read_error(e));
        }
        tracing::warn!(error = %e, "ending a failed read transaction");
    }
    out
}

fn is_interrupt(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
}

pub(crate) fn read_error(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(e)
}

impl ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Bind::Text(s) => s.to_sql(),
            Bind::Int(i) => i.to_sql(),
            Bind::Real(f) => f.to_sql(),
            Bind::Bool(b) => b.to_sql(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(rows: i64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for n in 0..rows {
            tx.execute("INSERT INTO t (n, v) VALUES (?1, ?2)", (n, format!("v{n}")))
                .unwrap();
        }
        tx.commit().unwrap();
        (dir, path)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_read_runs_inline_and_a_long_one_finishes_off_thread() {
        let (_dir, path) = database(200_000);
        let reader = InlineReader::open(&path).unwrap();
        let here = std::thread::current().id();
        let (v, thread) = reader
            .read(|c| {
                let v: String = c
                    .query_row("SELECT v FROM t WHERE n = ?1", [7], |r| r.get(0))
                    .map_err(read_error)?;
                Ok((v, std::thread::current().id()))
            })
            .await
            .unwrap();
        assert_eq!(v, "v7");
        assert_eq!(thread, here, "a point read runs on the calling thread");

        // A full scan with a string test on every row needs far more than the inline budget.
        let (n, thread) = reader
            .read(|c| {
                let n: i64 = c
                    .query_row("SELECT COUNT(*) FROM t WHERE v LIKE '%9%9%'", [], |r| r.get(0))
                    .map_err(read_error)?;
                Ok((n, std::thread::current().id()))
            })
            .await
            .unwrap();
        let expected = (0..200_000)
            .filter(|n| {
                let s = format!("v{n}");
                s.matches('9').count() >= 2
            })
            .count() as i64;
        assert_eq!(n, expected, "the interrupted read ran again to completion");
        assert_ne!(thread, here, "the long read finished on a blocking thread");

        // The connection that was interrupted is back in the pool with its budget restored.
        let v: String = reader
            .read(|c| {
                c.query_row("SELECT v FROM t WHERE n = 1", [], |r| r.get(0))
                    .map_err(read_error)
            })
            .await
            .unwrap();
        assert_eq!(v, "v1");
    }

    #[tokio::test]
    async fn a_failing_read_is_an_error_and_the_pool_goes_on() {
        let (_dir, path) = database(10);
        let reader = InlineReader::open(&path).unwrap();
        let err = reader
            .read(|c| {
                c.query_row("SELECT nope FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(read_error)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
        let n: i64 = reader
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                    .map_err(read_error)
            })
            .await
            .unwrap();
        assert_eq!(n, 10);
        let cache: i64 = reader
            .read(|c| c.query_row("PRAGMA cache_size", [], |r| r.get(0)).map_err(read_error))
            .await
            .unwrap();
        assert_eq!(cache.to_string(), READER_CACHE_KIB, "each reader's page cache is small");
    }
}
