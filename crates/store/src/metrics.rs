//! Metric names the store records through the `metrics` facade (the server installs the
//! recorder; without one, recording costs next to nothing), and what it reports for `/metrics`.

/// Events written, by type, counted once their transaction is committed.
pub const EVENTS_WRITTEN: &str = "rollcall_events_written_total";
/// Writers per SQLite group `COMMIT` (histogram).
pub const GROUP_COMMIT_WRITERS: &str = "rollcall_sqlite_group_commit_writers";
/// SQLite group `COMMIT`s, by outcome (`ok`, `error`).
pub const GROUP_COMMITS: &str = "rollcall_sqlite_group_commits_total";
/// The most events counted per endpoint for the backlog gauge (a count, not a scan of the log).
pub const BACKLOG_CAP: i64 = 100_000;

/// One database pool's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// `sqlite_read` (SQLite's readers; its one writer connection is not pooled) or `postgres`.
    pub name: &'static str,
    /// Connections open.
    pub size: u32,
    /// Of those, idle.
    pub idle: u32,
}

/// Counts committed events: `(type, count)` pairs.
pub(crate) fn events_written(events: &[(String, u64)]) {
    for (kind, n) in events {
        metrics::counter!(EVENTS_WRITTEN, "type" => kind.clone()).increment(*n);
    }
}

/// Adds `n` events of `kind` to `pending`.
pub(crate) fn note(pending: &mut Vec<(String, u64)>, kind: &str, n: u64) {
    match pending.iter_mut().find(|(k, _)| k == kind) {
        Some((_, c)) => *c += n,
        None => pending.push((kind.to_string(), n)),
    }
}

std::thread_local! {
    /// Events inserted by the SQLite writer's current synchronous step (see `group_commit`): taken
    /// by that step when it ends, kept with its transaction, and counted when it commits.
    static PENDING: std::cell::RefCell<Vec<(String, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes events inserted on the SQLite writer by the current step.
pub(crate) fn note_pending(kind: &str, n: u64) {
    PENDING.with(|p| note(&mut p.borrow_mut(), kind, n));
}

/// Takes the events noted by the current step.
pub(crate) fn take_pending() -> Vec<(String, u64)> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
}
