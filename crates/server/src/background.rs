//! Background work of a serving node: writing the request log's buffer to the store
//! ([`crate::request_log::run_flusher`]), deleting events older than the retention period
//! ([`run_retention`]) and expired browser sessions ([`run_session_pruning`]). [`start`] spawns them; [`Background::shutdown`] stops them after the HTTP
//! server has stopped, writing what the request log still holds.
//!
//! Both are safe with several nodes on one PostgreSQL database: each node writes only its own
//! request log entries, and retention deletes in small batches that skip rows another node is
//! deleting (`FOR UPDATE SKIP LOCKED`).

use crate::node::Node;
use rollcall_store::{SessionStore, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Events deleted per statement: small, so that retention never holds the database (SQLite's one
/// writer) for long.
pub const RETENTION_BATCH: i64 = 1000;
/// Pause between two batches of one retention run, leaving room for SCIM writes.
const RETENTION_PAUSE: Duration = Duration::from_millis(50);
/// How long [`Background::shutdown`] waits for the tasks.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The running background tasks.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Spawns the background tasks of `node`, which write to `store`.
pub fn start(store: &Arc<dyn Store>, node: &Node) -> Background {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    if node.request_log.enabled() {
        tasks.push(tokio::spawn(crate::request_log::run_flusher(
            store.clone(),
            node.request_log.clone(),
            stopped.clone(),
        )));
    }
    let activity = node.settings.activity;
    tasks.push(tokio::spawn(run_session_pruning(
        store.clone(),
        activity.retention_interval,
        stopped.clone(),
    )));
    if let Some(retention) = activity.event_retention {
        tasks.push(tokio::spawn(run_retention(
            store.clone(),
            retention,
            activity.retention_interval,
            stopped,
        )));
    }
    Background { stop, tasks }
}

impl Background {
    /// Stops the tasks, waiting (at most ten seconds) for the request log's last entries to be
    /// written.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, t).await.is_err() {
                tracing::warn!("a background task did not stop in time");
            }
        }
    }
}

/// Every `interval`, deletes the events older than `retention`, in batches of
/// [`RETENTION_BATCH`], until none is left or `stop` turns true.
pub async fn run_retention(
    store: Arc<dyn Store>,
    retention: Duration,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let retention_us = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let cutoff = rollcall_store::sqlite::now_us().saturating_sub(retention_us);
        let mut deleted = 0u64;
        loop {
            match store.prune_events(cutoff, RETENTION_BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < RETENTION_BATCH as u64 {
                        crate::metrics::background_run("event_retention", true);
                        break;
                    }
                }
                Err(e) => {
                    crate::metrics::background_run("event_retention", false);
                    tracing::warn!(error = %e, "deleting expired events failed; retrying at the next run");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETENTION_PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                retention_days = retention.as_secs() / 86_400,
                "deleted expired events"
            );
        }
    }
}

/// Every `interval`, deletes the browser sessions (console, setup page) that have expired, in
/// batches of [`RETENTION_BATCH`], until none is left or `stop` turns true. Expired sessions already
/// do not work; this only keeps the table small.
pub async fn run_session_pruning(store: Arc<dyn SessionStore>, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let now = rollcall_store::sqlite::now_us();
        let mut deleted = 0u64;
        loop {
            match store.prune_browser_sessions(now, RETENTION_BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < RETENTION_BATCH as u64 {
                        crate::metrics::background_run("session_pruning", true);
                        break;
                    }
                }
                Err(e) => {
                    crate::metrics::background_run("session_pruning", false);
                    tracing::warn!(error = %e, "deleting expired sessions failed; retrying at the next run");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETENTION_PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
        if deleted > 0 {
            tracing::debug!(deleted, "deleted expired browser sessions");
        }
    }
}
