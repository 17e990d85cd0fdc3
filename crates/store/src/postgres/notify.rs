//! Nodes that hear each other: PostgreSQL `LISTEN/NOTIFY`.
//!
//! Each node announces on [`EVENTS`] that events were recorded once the transactions that recorded
//! them have committed ([`Announcer`]: one notification for the commits of a moment), and a write
//! transaction that changes a connection (its tokens, status, policy, or deletes it) sends the
//! connection's id on [`CONNECTIONS`] in the transaction (delivered when it commits). Each `rollcall
//! serve` node runs a [`listen`] task on a connection of its own, which wakes its webhook
//! dispatcher and makes its token cache forget the connection at once, instead of at the next poll
//! or when the cache entry expires. Notifications are a shortcut, not the record: a node that
//! misses some (its listening connection dropped) still sees the changes at the next poll and
//! expiry, and after reconnecting it hears [`Heard::Reconnected`] so it can catch up at once.

use super::PostgresStore;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::time::Duration;
use tokio::sync::mpsc;

/// The channel announcing that events were recorded (empty payload).
pub const EVENTS: &str = "rollcall_events";
/// The channel announcing that a connection changed (payload: its id).
pub const CONNECTIONS: &str = "rollcall_connections";

/// Announces on [`EVENTS`] that events were recorded, after the transactions that recorded them
/// committed: one notification for every commit announced while the previous one was being sent.
///
/// Not a `NOTIFY` in each write's transaction: PostgreSQL serializes the commits of notifying
/// transactions (a database-wide lock held from before the commit record is written until the
/// transaction ends, so that notifications queue in commit order), which would make every write
/// commit one after another.
#[derive(Clone)]
pub(crate) struct Announcer {
    /// Holds at most one waiting announcement: one more sent after the one in flight covers all.
    poke: mpsc::Sender<()>,
}

impl Announcer {
    /// Starts the task sending the announcements on `pool`; it ends when the last clone is dropped.
    pub(crate) fn start(pool: PgPool) -> Announcer {
        let (poke, mut pokes) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while pokes.recv().await.is_some() {
                let sent = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(EVENTS)
                    .execute(&pool)
                    .await;
                if let Err(e) = sent {
                    // Nodes still see the events at their next poll.
                    tracing::warn!(error = %e, "cannot announce new events to the other nodes");
                }
            }
        });
        Announcer { poke }
    }

    /// Called once a transaction that recorded events has committed.
    pub(crate) fn committed(&self) {
        // Full: an announcement is waiting, and it will be sent after this commit.
        let _ = self.poke.try_send(());
    }
}

/// What a node heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Events were recorded (by any node).
    Events,
    /// Connection `id` changed or was deleted.
    Connection(String),
    /// The listening connection was (re)established: notifications sent while it was down are lost,
    /// so anything derived from them should be refreshed.
    Reconnected,
}

/// The pause before connecting again after the listening connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Listens on [`EVENTS`] and [`CONNECTIONS`] until the task is aborted, calling `on` for each
    /// notification, on a connection of its own (not one of the pool's), reconnecting after a
    /// failure. `on` is called with [`Heard::Reconnected`] each time listening (re)starts, the first
    /// time included.
    pub fn listen<F>(&self, on: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Heard) + Send + Sync + 'static,
    {
        let options = (*self.pool.connect_options()).clone();
        tokio::spawn(async move {
            // A pool of one, used only by the listener (PgListener takes its connection from a pool
            // and holds it).
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(options);
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect to listen for other nodes' changes; retrying");
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen_all([EVENTS, CONNECTIONS]).await {
                    tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
                tracing::debug!("listening for other nodes' changes");
                on(Heard::Reconnected);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => match n.channel() {
                            EVENTS => on(Heard::Events),
                            CONNECTIONS => on(Heard::Connection(n.payload().to_string())),
                            _ => {}
                        },
                        // The connection was lost and established again (sqlx re-listens): what was
                        // sent meanwhile is lost.
                        Ok(None) => {
                            tracing::info!("the listening connection was re-established");
                            on(Heard::Reconnected);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for other nodes' changes failed; reconnecting");
                            break;
                        }
                    }
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        })
    }

    /// Sends a notification on `channel` now (tests).
    pub async fn notify(&self, channel: &str, payload: &str) -> crate::StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
