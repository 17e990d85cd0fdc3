//! Connections kept out of sqlx's pool between the statements of the hot paths (resource reads,
//! lists and writes), so that giving one back costs nothing.
//!
//! sqlx's pool tests every connection it takes back with a ping (`Sync`, a round trip to the
//! server: sqlx-core 0.9 `pool/connection.rs`, `return_to_pool`), to flush a rollback a dropped
//! transaction queued and to find connections left broken by a cancelled statement. A request
//! that runs one statement then costs two round trips. The lane keeps up to `cap` connections
//! taken from the pool (so the pool's limit still counts them) and takes back, with no round
//! trip, those whose last use ended cleanly: the holder said so ([`Lease::done`]) after its
//! statement or `COMMIT` was answered. Anything else (an error, a cancelled future, a
//! transaction left open) goes back to sqlx's pool as before, after a `ROLLBACK` when a
//! transaction may be open, and sqlx's ping checks it there.
//!
//! The pool keeps `max_connections - cap` connections for everything else (webhooks, tenancy,
//! roles, events), and a lease that finds the lane full borrows from the pool like any other
//! caller; so the lane changes how often a connection is tested, never how many are open.

use crate::StoreResult;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection idle in the lane this long is pinged before it is lent again (the server or a
/// proxy may have closed it); one idle twice as long goes back to the pool, which closes
/// connections idle past its own timeout.
const IDLE_PING_AFTER: Duration = super::IDLE_PING_AFTER;

/// How many of `max_connections` the lane may keep: all but a quarter (at least one) left to the
/// pool for the stores that read through it.
pub(crate) fn lane_cap(max_connections: u32) -> usize {
    let reserve = (max_connections / 4).max(1);
    max_connections.saturating_sub(reserve) as usize
}

/// The connections kept out of the pool.
#[derive(Clone)]
pub(crate) struct Lane {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    cap: usize,
    /// Idle connections, the most recently used last, and how many the lane holds in all
    /// (idle and lent).
    state: Mutex<State>,
}

struct State {
    idle: Vec<(PoolConnection<Postgres>, Instant)>,
    held: usize,
}

impl Lane {
    pub(crate) fn new(pool: PgPool, cap: usize) -> Lane {
        Lane {
            inner: Arc::new(Inner {
                pool,
                cap,
                state: Mutex::new(State {
                    idle: Vec::new(),
                    held: 0,
                }),
            }),
        }
    }

    /// Connections the lane holds, and of those, idle.
    pub(crate) fn stats(&self) -> (usize, usize) {
        let st = self.inner.state.lock().expect("lane lock");
        (st.held, st.idle.len())
    }

    /// Lends a connection: the most recently used idle one (pinged first if it sat idle a
    /// while), else a new one from the pool, kept by the lane when it has room.
    pub(crate) async fn lease(&self) -> StoreResult<Lease> {
        loop {
            let (taken, keep) = {
                let mut st = self.inner.state.lock().expect("lane lock");
                match st.idle.pop() {
                    Some(c) => (Some(c), true),
                    None if st.held < self.inner.cap => {
                        st.held += 1;
                        (None, true)
                    }
                    None => (None, false),
                }
            };
            let lease = |conn, kept| Lease {
                conn: Some(conn),
                lane: self.inner.clone(),
                kept,
                clean: false,
                in_tx: false,
            };
            match taken {
                Some((conn, since)) => {
                    let mut lease = lease(conn, true);
                    let idle = since.elapsed();
                    if idle < IDLE_PING_AFTER {
                        return Ok(lease);
                    }
                    if idle < 2 * IDLE_PING_AFTER && sqlx::Connection::ping(&mut *lease).await.is_ok() {
                        return Ok(lease);
                    }
                    // Back to the pool (dropped unclean), and the next one tried.
                }
                None => match self.inner.pool.acquire().await {
                    Ok(conn) => return Ok(lease(conn, keep)),
                    Err(e) => {
                        if keep {
                            self.inner.state.lock().expect("lane lock").held -= 1;
                        }
                        return Err(e.into());
                    }
                },
            }
        }
    }
}

/// A connection lent by the [`Lane`]. Dropped after [`Lease::done`], it is idle in the lane at
/// once; dropped otherwise, it goes back to sqlx's pool (after a `ROLLBACK` if a transaction
/// may be open: [`Lease::in_transaction`]), which tests it.
pub(crate) struct Lease {
    conn: Option<PoolConnection<Postgres>>,
    lane: Arc<Inner>,
    /// Whether the lane counts this connection (else it is the pool's, lent past the lane's cap).
    kept: bool,
    clean: bool,
    /// A `BEGIN` was sent and no `COMMIT` answered.
    in_tx: bool,
}

impl Lease {
    /// The last statement was answered and no transaction is open: the connection can be lent
    /// again as it is.
    pub(crate) fn done(&mut self) {
        self.clean = true;
        self.in_tx = false;
    }

    /// Closes the connection (its socket), leaving an answer unread: the server ends the
    /// statement when its next write fails. The pool opens another connection when it needs one.
    pub(crate) fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            if self.kept {
                self.lane.state.lock().expect("lane lock").held -= 1;
            }
            drop(conn.detach());
        }
    }

    /// Marks that a transaction may be open from here until [`Lease::done`]: dropped before, the
    /// connection is rolled back.
    pub(crate) fn in_transaction(&mut self) {
        self.in_tx = true;
    }
}

impl Deref for Lease {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.clean = false;
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.clean && self.kept {
            self.lane
                .state
                .lock()
                .expect("lane lock")
                .idle
                .push((conn, Instant::now()));
            return;
        }
        if self.kept {
            self.lane.state.lock().expect("lane lock").held -= 1;
        }
        if !self.in_tx {
            // The pool's own connection lent past the cap, or one whose statement failed or was
            // cut off: the pool tests it (reading the cut-off statement's answer first).
            return;
        }
        // A transaction may be open: roll it back (after the answer of a cut-off statement,
        // which sqlx reads first), then the pool tests it as usual. Without a runtime to do that
        // on, the connection is closed and the server rolls back.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let mut conn = conn;
                    if sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.is_err() {
                        drop(conn.detach());
                    }
                });
            }
            Err(_) => drop(conn.detach()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::{PgSettings, PostgresStore};
    use rollcall_scim::schema::SchemaRegistry;
    use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};

    /// A store whose lane keeps one connection (two in all, one left to the pool), on a database
    /// with a table `t`.
    async fn store(name: &str) -> Option<(TestDatabase, PostgresStore)> {
        if pg_admin_url().is_none() {
            skip_note(name);
            return None;
        }
        let db = TestDatabase::create(Backend::Postgres, "rollcall_lane").await;
        let settings = PgSettings {
            max_connections: 2,
            ..PgSettings::default()
        };
        let store = PostgresStore::open(db.url(), Arc::new(SchemaRegistry::standard()), settings)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (k int PRIMARY KEY)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(store.lane.inner.cap, 1);
        Some((db, store))
    }

    async fn backend_pid(lease: &mut Lease) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **lease)
            .await
            .unwrap()
    }

    /// Transactions of the database still open (other than the asking one's).
    async fn open_transactions(store: &PostgresStore) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_lease_ended_cleanly_is_lent_again_from_the_lane() {
        let Some((_db, store)) = store("a_lease_ended_cleanly_is_lent_again_from_the_lane").await else {
            return;
        };
        let mut a = store.lane.lease().await.unwrap();
        let pid = backend_pid(&mut a).await;
        a.done();
        drop(a);
        assert_eq!(store.lane.stats(), (1, 1), "held and idle in the lane");
        let mut b = store.lane.lease().await.unwrap();
        assert_eq!(store.lane.stats(), (1, 0));
        assert_eq!(backend_pid(&mut b).await, pid, "the same connection");
        // The lane is full: the next lease is the pool's, and goes back to the pool.
        let mut c = store.lane.lease().await.unwrap();
        assert_ne!(backend_pid(&mut c).await, pid);
        c.done();
        drop(c);
        assert_eq!(store.lane.stats(), (1, 0), "the pool's connection is not kept");
        // Used after `done`, a lease is no longer clean: dropped, it leaves the lane.
        b.done();
        let _ = backend_pid(&mut b).await;
        drop(b);
        assert_eq!(store.lane.stats(), (0, 0));
    }

    #[tokio::test]
    async fn a_write_dropped_before_its_commit_is_rolled_back_and_leaves_the_lane() {
        let Some((_db, store)) = store("a_write_dropped_before_its_commit_is_rolled_back_and_leaves_the_lane").await
        else {
            return;
        };
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(tx.conn())
            .await
            .unwrap();
        sqlx::query("SELECT k FROM t WHERE k = 1 FOR UPDATE")
            .execute(tx.conn())
            .await
            .unwrap();
        drop(tx);
        assert_eq!(store.lane.stats(), (0, 0), "not kept by the lane");
        // The rollback runs in a task of its own: wait for it.
        for _ in 0..200 {
            if open_transactions(&store).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(open_transactions(&store).await, 0, "no transaction left open");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "the insert was rolled back");
        // A committed write keeps its connection in the lane, outside any transaction.
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.lane.stats(), (1, 1));
        let mut lease = store.lane.lease().await.unwrap();
        let k: i32 = sqlx::query_scalar("SELECT k FROM t")
            .fetch_one(&mut *lease)
            .await
            .unwrap();
        assert_eq!(k, 2);
        assert_eq!(
            open_transactions(&store).await,
            0,
            "the lent connection is not in a transaction"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_cut_off_does_not_come_back_through_the_lane() {
        let Some((_db, store)) = store("a_statement_cut_off_does_not_come_back_through_the_lane").await else {
            return;
        };
        let mut a = store.lane.lease().await.unwrap();
        let pid = backend_pid(&mut a).await;
        a.done();
        drop(a);
        let mut a = store.lane.lease().await.unwrap();
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            sqlx::query("SELECT pg_sleep(2)").execute(&mut *a),
        )
        .await;
        assert!(cut.is_err(), "the statement was cut off");
        drop(a);
        assert_eq!(store.lane.stats(), (0, 0));
        // The next lease is another connection, answering at once.
        let mut b = store.lane.lease().await.unwrap();
        assert_ne!(backend_pid(&mut b).await, pid);
    }
}
