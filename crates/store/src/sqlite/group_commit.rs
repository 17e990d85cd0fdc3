//! Group commit for the single SQLite writer.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every `COMMIT` waits for an
//! `fsync`. Writers that arrive while another one is working would each pay for their own `fsync` one
//! after the other. Here they share one: the first writer opens a transaction (`BEGIN IMMEDIATE`),
//! each writer runs inside its own `SAVEPOINT`, and when a writer finishes while others are waiting,
//! it releases its savepoint and hands the open transaction on instead of committing. The last writer
//! of the group commits for everyone, and every writer of the group learns the outcome of that one
//! `COMMIT` before it returns: nothing is acknowledged before it is on disk, and a writer whose work
//! failed is rolled back to its savepoint without touching the others.
//!
//! A writer's [`WriteTx`] dereferences to the connection, like an `sqlx::Transaction`, and ends with
//! [`WriteTx::commit`]; dropping it (an error path, a cancelled request) rolls its work back.

use crate::{StoreError, StoreResult};
use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

/// The most writers in one group, and the longest a group stays open, so that the first writer's
/// answer is not held back for long.
const MAX_GROUP: usize = 64;
const MAX_GROUP_AGE: Duration = Duration::from_millis(20);
/// How long a writer that handed the transaction on waits before it checks that someone is still
/// going to commit it (a writer that was queued may have been cancelled).
const HANDOFF_CHECK: Duration = Duration::from_millis(25);

/// The outcome of a group's `COMMIT`, shared by its writers.
type Outcome = Option<Result<(), String>>;

struct Group {
    members: usize,
    started: Instant,
    outcome: watch::Sender<Outcome>,
}

struct State {
    /// The writer connection while a group's transaction is open.
    conn: Option<PoolConnection<Sqlite>>,
    group: Option<Group>,
    /// Distinguishes groups, so that a writer can tell whether its group is still open.
    group_no: u64,
}

/// The writer side of the SQLite store.
pub(crate) struct GroupWriter {
    pool: SqlitePool,
    state: Arc<Mutex<State>>,
    /// Writers waiting for the state: when there are some, a finishing writer hands the transaction on.
    queued: Arc<AtomicUsize>,
}

/// Counts a writer as queued until it gets the state (or gives up waiting).
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GroupWriter {
    pub(crate) fn new(pool: SqlitePool) -> GroupWriter {
        GroupWriter {
            pool,
            state: Arc::new(Mutex::new(State {
                conn: None,
                group: None,
                group_no: 0,
            })),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Starts a write: joins the open group, or opens one.
    ///
    /// The steps that change the transaction's state run in a task of their own, so that a caller
    /// cancelled half-way (a dropped request) cannot leave the connection in a state nobody knows.
    pub(crate) async fn begin(&self) -> StoreResult<WriteTx> {
        let (pool, shared, queued) = (self.pool.clone(), self.state.clone(), self.queued.clone());
        tokio::spawn(async move {
            queued.fetch_add(1, Ordering::SeqCst);
            let waiting = Queued(queued.clone());
            let mut state = shared.clone().lock_owned().await;
            drop(waiting);
            if state.group.is_none() {
                let mut conn = pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let (outcome, _) = watch::channel(None);
                state.conn = Some(conn);
                state.group_no += 1;
                state.group = Some(Group {
                    members: 0,
                    started: Instant::now(),
                    outcome,
                });
            }
            if let Err(e) = exec(&mut state, "SAVEPOINT member").await {
                // The transaction is unusable: end the group with the error.
                finish(&mut state, Err(e.to_string())).await;
                return Err(e);
            }
            let group = state.group.as_mut().expect("a group is open");
            group.members += 1;
            let outcome = group.outcome.subscribe();
            let group_no = state.group_no;
            Ok(WriteTx {
                state: Some(state),
                shared,
                queued,
                outcome,
                group_no,
            })
        })
        .await
        .map_err(task_failed)?
    }
}

fn task_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!("the write task failed: {e}")))
}

async fn exec(state: &mut State, sql: &'static str) -> StoreResult<()> {
    let conn = state.conn.as_mut().expect("a group is open");
    sqlx::query(sql).execute(&mut **conn).await?;
    Ok(())
}

/// Commits (or, with an error, rolls back) the open group and tells its writers.
async fn finish(state: &mut State, result: Result<(), String>) {
    let result = match result {
        Ok(()) => exec(state, "COMMIT").await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if result.is_err() {
        // After a failed COMMIT (or an abandoned transaction) make sure nothing stays open.
        let _ = exec(state, "ROLLBACK").await;
    }
    if let Some(group) = state.group.take() {
        group.outcome.send_replace(Some(result));
    }
    // The connection goes back to the pool between groups.
    state.conn = None;
}

/// Ends a writer's part: releases or rolls back its savepoint, then commits the group unless other
/// writers are queued to join it.
async fn end_member(state: &mut State, queued: &AtomicUsize, keep: bool) {
    let step = if keep {
        exec(state, "RELEASE SAVEPOINT member").await
    } else {
        match exec(state, "ROLLBACK TO SAVEPOINT member").await {
            Ok(()) => exec(state, "RELEASE SAVEPOINT member").await,
            Err(e) => Err(e),
        }
    };
    if let Err(e) = step {
        // SQLite rolled the whole transaction back (an I/O error, a full disk): the group fails.
        finish(state, Err(e.to_string())).await;
        return;
    }
    let group = state.group.as_ref().expect("a group is open");
    let hand_on =
        queued.load(Ordering::SeqCst) > 0 && group.members < MAX_GROUP && group.started.elapsed() < MAX_GROUP_AGE;
    if !hand_on {
        finish(state, Ok(())).await;
    }
}

/// One writer's part of a group transaction.
pub(crate) struct WriteTx {
    state: Option<OwnedMutexGuard<State>>,
    shared: Arc<Mutex<State>>,
    queued: Arc<AtomicUsize>,
    outcome: watch::Receiver<Outcome>,
    group_no: u64,
}

impl WriteTx {
    /// Keeps this writer's work and returns once the group's `COMMIT` is done: `Ok` means on disk.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        let mut state = self.state.take().expect("not yet ended");
        let queued = self.queued.clone();
        // In a task of its own: the group's state must not be left half-changed by a cancelled caller.
        tokio::spawn(async move { end_member(&mut state, &queued, true).await })
            .await
            .map_err(task_failed)?;
        let mut outcome = self.outcome.clone();
        loop {
            let waited = tokio::time::timeout(HANDOFF_CHECK, async {
                outcome.wait_for(Option::is_some).await.map(|v| v.clone())
            })
            .await;
            match waited {
                Ok(Ok(v)) => return to_result(v),
                Ok(Err(_)) => return Err(group_lost()),
                Err(_) => {
                    // Nobody has committed yet: if the group is still open and idle, commit it here.
                    let (shared, group_no) = (self.shared.clone(), self.group_no);
                    tokio::spawn(async move {
                        let mut state = shared.lock_owned().await;
                        if state.group_no == group_no && state.group.is_some() {
                            finish(&mut state, Ok(())).await;
                        }
                    })
                    .await
                    .map_err(task_failed)?;
                }
            }
        }
    }
}

fn to_result(outcome: Outcome) -> StoreResult<()> {
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "the write transaction failed: {e}"
        )))),
        None => Err(group_lost()),
    }
}

fn group_lost() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol("the write transaction was lost".into()))
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Not committed: roll this writer's work back. That needs the database, so it runs as a task
        // that keeps the state locked until it is done (nobody else can write in between).
        if let Some(mut state) = self.state.take() {
            let queued = self.queued.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        end_member(&mut state, &queued, false).await;
                    });
                }
                Err(_) => {
                    // No runtime (shutting down): the pooled connection is closed, which rolls back.
                    if let Some(group) = state.group.take() {
                        group
                            .outcome
                            .send_replace(Some(Err("the store is shutting down".into())));
                    }
                    if let Some(mut conn) = state.conn.take() {
                        conn.close_on_drop();
                    }
                }
            }
        }
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.state
            .as_ref()
            .and_then(|s| s.conn.as_deref())
            .expect("the write is in progress")
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.state
            .as_mut()
            .and_then(|s| s.conn.as_deref_mut())
            .expect("the write is in progress")
    }
}
