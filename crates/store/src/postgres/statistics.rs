//! The planner's statistics kept up with a connection that grows fast.
//!
//! PostgreSQL plans each statement from the statistics the last `ANALYZE` of its tables left.
//! A connection that had no users then (a new tenant, or any tenant during its initial sync) is
//! estimated at one row, and for a lookup such as `connection_id = $1 AND id = $2` the planner may
//! then pick any index that leads with the connection (the partial index of its userNames, say)
//! and read every row of the connection to find one. Measured with statistics from before a sync
//! of 50,000 users: `GET /Users/{id}` 43 ms instead of 0.1 ms, a PATCH adding 50 members to a
//! group 60–120 ms, most of it two such reads. Autovacuum, when it runs at all, analyzes a table
//! once a tenth of it has changed, so a new tenant in a table of a million rows goes unseen until
//! it holds 100,000.
//!
//! So the store counts, per connection, the rows its writes add (users and groups created, members
//! added: the tables every SCIM statement plans against) and analyzes those tables in the
//! background once a connection has added, since this node last analyzed for it, as many rows as
//! before (and at least [`FIRST_ANALYZE`]): a connection growing from nothing to 100,000 users is
//! analyzed seven times. One `ANALYZE` at a time per node, on a pool connection, on the columns the
//! planner estimates row counts with (not the documents, whose statistics cost most to gather and
//! which no tenant's size depends on); each reads a sample of at most 30,000 rows (the default
//! statistics target), about 0.3 s of the database's time at 50,000 users. Writes do not wait for
//! it: `ANALYZE` takes a lock that only conflicts with schema changes, vacuum and other `ANALYZE`s.

use crate::events;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Rows a connection adds before its first `ANALYZE` (fewer are read quickly whatever the plan).
pub(crate) const FIRST_ANALYZE: u64 = 1_000;

/// What is analyzed: the tables of users, groups, e-mails and memberships, on the columns that
/// lookups and row-count estimates use.
const ANALYZE: &str = "ANALYZE resources (connection_id, kind, id, external_id, user_name_ci, display_name_ci, \
                       active, deleted_us), resource_emails, group_members";

/// Counts the rows added per connection and analyzes when one has doubled (see the module).
#[derive(Clone)]
pub(crate) struct Statistics {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    grown: Mutex<HashMap<String, Growth>>,
    /// An `ANALYZE` of this node is running.
    running: AtomicBool,
}

/// Rows one connection added before this node's last `ANALYZE` for it, and since.
#[derive(Default, Debug, Clone, Copy, PartialEq)]
struct Growth {
    before: u64,
    since: u64,
}

impl Growth {
    fn due(&self) -> bool {
        self.since >= self.before.max(FIRST_ANALYZE)
    }
}

impl Statistics {
    pub(crate) fn new(pool: PgPool) -> Statistics {
        Statistics {
            inner: Arc::new(Inner {
                pool,
                grown: Mutex::new(HashMap::new()),
                running: AtomicBool::new(false),
            }),
        }
    }

    /// Notes committed events (type, connection): those that add a row (a user or a group
    /// created, a member added) count toward their connection's growth.
    pub(crate) fn written<'a>(&self, events: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) {
        let mut due = false;
        {
            let mut grown = self.inner.grown.lock().expect("statistics");
            for (kind, connection) in events {
                if let Some(c) = connection.filter(|_| adds_a_row(kind)) {
                    // Every event counts (not `any`, which would stop at the first due).
                    due |= grow(&mut grown, c, 1);
                }
            }
        }
        if due {
            self.analyze();
        }
    }

    /// Notes `n` rows added to `connection`.
    pub(crate) fn added(&self, connection: &str, n: u64) {
        if grow(&mut self.inner.grown.lock().expect("statistics"), connection, n) {
            self.analyze();
        }
    }

    /// Starts an `ANALYZE` unless one is running (the connections still due start the next when
    /// they add a row).
    fn analyze(&self) {
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            // Taken before the sample is read: rows added meanwhile count toward the next.
            let analyzed = take_due(&mut inner.grown.lock().expect("statistics"));
            // A role that does not own the tables is not refused: PostgreSQL skips them with a
            // warning in its own log, and the statement succeeds having done nothing.
            match sqlx::raw_sql(ANALYZE).execute(&inner.pool).await {
                Ok(_) => tracing::debug!(connections = analyzed, "analyzed the resource tables"),
                Err(e) => tracing::warn!(error = %e, "cannot analyze the resource tables"),
            }
            inner.running.store(false, Ordering::Release);
        });
    }
}

/// Whether an event of type `kind` is the write of a new row in the analyzed tables.
fn adds_a_row(kind: &str) -> bool {
    kind == events::USER_CREATED || kind == events::GROUP_CREATED || kind == events::GROUP_MEMBER_ADDED
}

/// Counts `n` rows added to `connection`; returns whether it is due.
fn grow(grown: &mut HashMap<String, Growth>, connection: &str, n: u64) -> bool {
    let g = match grown.get_mut(connection) {
        Some(g) => g,
        None => grown.entry(connection.to_string()).or_default(),
    };
    g.since += n;
    g.due()
}

/// Marks every connection that is due as analyzed now; returns how many.
fn take_due(grown: &mut HashMap<String, Growth>) -> usize {
    let mut n = 0;
    for g in grown.values_mut().filter(|g| g.due()) {
        g.before += g.since;
        g.since = 0;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds `n` rows to `c` and takes the due ones as an `ANALYZE` would; returns whether one ran.
    fn analyzed_after(grown: &mut HashMap<String, Growth>, c: &str, n: u64) -> bool {
        grow(grown, c, n) && take_due(grown) > 0
    }

    #[test]
    fn a_connection_is_analyzed_each_time_it_doubles() {
        let mut grown = HashMap::new();
        let mut at = Vec::new();
        for i in 1..=100_000u64 {
            if analyzed_after(&mut grown, "c", 1) {
                at.push(i);
            }
        }
        assert_eq!(at, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000]);
    }

    #[test]
    fn connections_are_counted_apart_and_only_row_adding_events_count() {
        let mut grown = HashMap::new();
        assert!(!analyzed_after(&mut grown, "a", 999));
        assert!(!analyzed_after(&mut grown, "b", 999));
        assert!(analyzed_after(&mut grown, "a", 1));
        assert_eq!(
            grown["a"],
            Growth {
                before: 1_000,
                since: 0
            }
        );
        assert_eq!(grown["b"], Growth { before: 0, since: 999 });
        assert!(adds_a_row(events::GROUP_MEMBER_ADDED));
        assert!(!adds_a_row(events::USER_UPDATED));
        assert!(!adds_a_row(events::GROUP_MEMBER_REMOVED));
    }
}
