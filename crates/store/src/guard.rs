//! The guard against mass deprovisioning (issue #19).
//!
//! Each SCIM connection has a policy ([`GuardSettings`], on by default): when more users than it
//! allows are *deprovisioned* within a sliding window, the guard trips. A user is deprovisioned by
//! a SCIM write that deactivates it, deletes it, or takes away its last effective role (removed
//! from every mapped group, or the mapped group deleted).
//!
//! The identity provider is answered as always and the SCIM view, the directory and the access
//! check follow it at once (security does not wait). What the guard holds is the
//! application-facing effect of the deprovisions past the threshold: their events (and so their
//! webhooks) go to `held_events` instead of the event log, in the same transaction as the write,
//! until an operator releases them (moved into the log, after a
//! `connection.deprovision_guard_released` event) or discards them. A user reactivated (or given a
//! role again) while its deprovision is held has its held events dropped: the application never
//! hears of the deactivation.
//!
//! The stores run the same steps ([`classify`], [`GuardSettings::trips`]) inside their write
//! transactions; the window is a small table of recent deprovisions per connection
//! (`deprovision_window`), pruned as it is written.

use crate::StoreResult;
use crate::backend::{Backend, Tx};
use crate::events;
use crate::grant_rows::{Arg, Cell, GrantDb, elements, first, in_list};
use crate::model::{Event, WriteContext};
use crate::rows::Cols;
use crate::sql::Dialect;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A connection's guard policy.
///
/// The guard trips when the distinct users deprovisioned within the last `window_minutes` number
/// more than `max_users`, or more than `min_users` and more than `max_percent` % of the
/// connection's active users (those active now plus those deprovisioned in the window). A rule set
/// to `None` is off; `enabled: false` turns the guard off altogether.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_max_users")]
    pub max_users: Option<u32>,
    #[serde(default = "default_max_percent")]
    pub max_percent: Option<u32>,
    #[serde(default = "default_min_users")]
    pub min_users: u32,
    #[serde(default = "default_window_minutes")]
    pub window_minutes: u32,
}

fn yes() -> bool {
    true
}
fn default_max_users() -> Option<u32> {
    Some(25)
}
fn default_max_percent() -> Option<u32> {
    Some(10)
}
fn default_min_users() -> u32 {
    10
}
fn default_window_minutes() -> u32 {
    60
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            enabled: true,
            max_users: default_max_users(),
            max_percent: default_max_percent(),
            min_users: default_min_users(),
            window_minutes: default_window_minutes(),
        }
    }
}

/// The longest window: a week.
pub const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;

/// Which rule tripped the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TripRule {
    MaxUsers,
    MaxPercent,
}

impl GuardSettings {
    /// From the stored JSON (`NULL` or unreadable: the defaults).
    pub fn from_stored(text: Option<&str>) -> GuardSettings {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }

    /// Refuses settings that cannot mean anything.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.max_percent
            && !(1..=100).contains(&p)
        {
            return Err(format!(
                "max_percent must be between 1 and 100 (or null for no percentage rule), not {p}"
            ));
        }
        if !(1..=MAX_WINDOW_MINUTES).contains(&self.window_minutes) {
            return Err(format!(
                "window_minutes must be between 1 and {MAX_WINDOW_MINUTES}, not {}",
                self.window_minutes
            ));
        }
        Ok(())
    }

    /// The window in microseconds.
    pub fn window_us(&self) -> i64 {
        i64::from(self.window_minutes) * 60_000_000
    }

    /// Whether the percentage rule may need the connection's active users for `count` deprovisions
    /// (so that the count is read only when it can matter).
    pub fn needs_active_count(&self, count: u64) -> bool {
        self.enabled && self.max_percent.is_some() && count > u64::from(self.min_users)
    }

    /// Whether `count` distinct users deprovisioned within the window trip the guard, out of
    /// `active_before` users active before them (active now plus the `count`). `None`: it does not.
    pub fn trips(&self, count: u64, active_before: u64) -> Option<TripRule> {
        if !self.enabled {
            return None;
        }
        if let Some(max) = self.max_users
            && count > u64::from(max)
        {
            return Some(TripRule::MaxUsers);
        }
        if let Some(pct) = self.max_percent
            && count > u64::from(self.min_users)
            && count.saturating_mul(100) > u64::from(pct).saturating_mul(active_before)
        {
            return Some(TripRule::MaxPercent);
        }
        None
    }
}

/// One event of a write, as far as the guard looks at it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub kind: &'a str,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub member_id: Option<&'a str>,
    pub data: &'a Value,
}

/// The users one write deprovisioned, and those it gave access back to.
#[derive(Debug, Default, PartialEq)]
pub struct Classified {
    pub deprovisioned: BTreeSet<String>,
    /// Reactivated, or given a role after having none: their held events are dropped.
    pub restored: BTreeSet<String>,
}

fn roles_len(data: &Value, key: &str) -> Option<usize> {
    data.get(key).and_then(Value::as_array).map(Vec::len)
}

/// Sorts a write's events into the users it deprovisioned and those it restored.
pub fn classify<'a>(evs: impl IntoIterator<Item = EventView<'a>>) -> Classified {
    let mut out = Classified::default();
    for e in evs {
        let Some(user) = e.resource_id.filter(|_| e.resource_type == Some("User")) else {
            continue;
        };
        match e.kind {
            events::USER_DEACTIVATED | events::USER_DELETED => {
                out.deprovisioned.insert(user.to_string());
            }
            events::USER_REACTIVATED => {
                out.restored.insert(user.to_string());
            }
            events::USER_ROLES_CHANGED => {
                let (before, after) = (roles_len(e.data, "before"), roles_len(e.data, "after"));
                if before.is_some_and(|n| n > 0) && after == Some(0) {
                    out.deprovisioned.insert(user.to_string());
                } else if before == Some(0) && after.is_some_and(|n| n > 0) {
                    out.restored.insert(user.to_string());
                }
            }
            _ => {}
        }
    }
    // A write that both takes and gives (cannot happen in one SCIM write, but): giving wins.
    out.deprovisioned.retain(|u| !out.restored.contains(u));
    out
}

/// The deprovisioned user an event belongs to, when the guard would hold it: the user's
/// deactivation, deletion, role and workspace change events, and its removals from groups.
pub fn held_subject<'a>(e: &EventView<'a>, deprovisioned: &BTreeSet<String>) -> Option<&'a str> {
    let subject = match e.kind {
        events::USER_DEACTIVATED
        | events::USER_DELETED
        | events::USER_ROLES_CHANGED
        | events::USER_WORKSPACES_CHANGED
            if e.resource_type == Some("User") =>
        {
            e.resource_id
        }
        events::GROUP_MEMBER_REMOVED => e.member_id,
        _ => None,
    }?;
    deprovisioned.contains(subject).then_some(subject)
}

/// A connection's guard: its settings and state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardState {
    pub connection_id: String,
    pub settings: GuardSettings,
    /// When it tripped; `None` while armed (or off).
    pub tripped_us: Option<i64>,
    /// Events held, and the distinct users they are about.
    pub held_events: i64,
    pub held_users: i64,
    /// Distinct users deprovisioned within the current window.
    pub window_deprovisions: i64,
}

/// An event the guard holds.
#[derive(Debug, Clone, Serialize)]
pub struct HeldEvent {
    /// Position among the connection's held events (for paging).
    pub seq: i64,
    /// The deprovisioned user it belongs to.
    pub user_id: String,
    pub held_us: i64,
    /// The event as it will be recorded on release (its `seq` is 0 until then).
    pub event: crate::model::Event,
}

/// What a release or discard did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardResolution {
    pub events: i64,
    pub users: i64,
    /// When the guard had tripped (`None`: it had not, and nothing was held).
    pub tripped_us: Option<i64>,
}

/// The data of `connection.deprovision_guard_tripped`.
pub fn tripped_data(rule: TripRule, count: u64, active_before: Option<u64>, settings: &GuardSettings) -> Value {
    serde_json::json!({
        "rule": rule,
        "deprovisioned_users": count,
        "active_users": active_before,
        "settings": settings,
    })
}

/// The data of `connection.deprovision_guard_released` and `..._discarded`.
pub fn resolved_data(r: &GuardResolution) -> Value {
    serde_json::json!({
        "events": r.events,
        "users": r.users,
        "tripped_at": r.tripped_us.map(crate::sessions::rfc3339),
    })
}

/// The guard's step on what a resource write's events did ([`classify`]), in its transaction, on
/// both databases: forgets the held changes of the users it restored; when it deprovisioned users and the
/// connection's guard is on (and not in staging, whose user events never reach the log), adds them
/// to the window, and trips the guard when a rule says so. Returns the users whose events are to be
/// held (none, when the guard is off or has not tripped); the caller moves their events
/// ([`held_subject`]) to `held_events`.
pub(crate) async fn step<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    classified: Classified,
) -> StoreResult<BTreeSet<String>> {
    let connection_id = ctx.connection_id.as_str();
    if !classified.restored.is_empty() {
        let restored: Vec<String> = classified.restored.into_iter().collect();
        let sql = format!(
            "DELETE FROM held_events WHERE connection_id = $1 AND {}",
            in_list(D::DIALECT, "user_id", 2, "text")
        );
        db.run(&sql, &[Arg::Text(connection_id), Arg::Texts(&restored)]).await?;
    }
    let none = Ok(BTreeSet::new());
    if classified.deprovisioned.is_empty() {
        return none;
    }
    let staged = first(
        db,
        "SELECT staged_us FROM scim_connections WHERE id = $1",
        &[Arg::Text(connection_id)],
    )
    .await?;
    if staged.is_some_and(|r| r[0] != Cell::Null) {
        return none;
    }
    if D::DIALECT == Dialect::Postgres {
        db.run(PG_GUARD_LOCK, &[Arg::Text(connection_id)]).await?;
    }
    let sql = "SELECT settings, tripped_us FROM deprovision_guards WHERE connection_id = $1";
    let (settings, tripped) = match first(db, sql, &[Arg::Text(connection_id)]).await? {
        Some(mut r) => (GuardSettings::from_stored(r[0].opt_text().as_deref()), r[1].opt_int()),
        None => (GuardSettings::from_stored(None), None),
    };
    if !settings.enabled {
        return none;
    }
    if tripped.is_none() {
        let now = crate::sqlite::now_us();
        let users: Vec<String> = classified.deprovisioned.iter().cloned().collect();
        let window = "DELETE FROM deprovision_window WHERE connection_id = $1 AND at_us <= $2";
        db.run(
            window,
            &[Arg::Text(connection_id), Arg::Int(now - settings.window_us())],
        )
        .await?;
        let add = format!(
            "INSERT INTO deprovision_window (connection_id, at_us, user_id) SELECT $1, $2, e.v FROM {}",
            elements(D::DIALECT, 3, "text")
        );
        db.run(&add, &[Arg::Text(connection_id), Arg::Int(now), Arg::Texts(&users)])
            .await?;
        let count = "SELECT count(DISTINCT user_id) FROM deprovision_window WHERE connection_id = $1";
        let count = first(db, count, &[Arg::Text(connection_id)])
            .await?
            .map_or(0, |r| r[0].int())
            .max(0) as u64;
        let active = if settings.needs_active_count(count) {
            let sql = "SELECT count(*) FROM resources
                       WHERE connection_id = $1 AND kind = 'User' AND deleted_us IS NULL AND active IS NOT FALSE";
            Some(
                first(db, sql, &[Arg::Text(connection_id)])
                    .await?
                    .map_or(0, |r| r[0].int())
                    .max(0) as u64,
            )
        } else {
            None
        };
        let active_before = active.map(|a| a + count);
        let Some(rule) = settings.trips(count, active_before.unwrap_or(u64::MAX)) else {
            return none;
        };
        let sql = "INSERT INTO deprovision_guards (connection_id, tripped_us) VALUES ($1, $2)
                   ON CONFLICT (connection_id) DO UPDATE SET tripped_us = excluded.tripped_us";
        db.run(sql, &[Arg::Text(connection_id), Arg::Int(now)]).await?;
        let data = tripped_data(rule, count, active_before, &settings);
        db.grant_event(ctx, events::CONNECTION_DEPROVISION_GUARD_TRIPPED, None, data)
            .await?;
    }
    Ok(classified.deprovisioned)
}

/// Serializes the guard's steps of one connection on PostgreSQL: a transaction-scoped advisory
/// lock, taken after a write's row locks and before the events lock, so it joins no cycle (SQLite's
/// writer is alone).
pub(crate) const PG_GUARD_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('rollcall.deprovision_guard:' || $1, 0))";

/// A held event taken out of `held_events` by a release, to be written back to the log as it was
/// recorded ([`crate::backend::Tx::release`]); `data` and `actor` as JSON text.
pub(crate) struct HeldRow {
    pub seq: i64,
    pub user_id: String,
    pub id: String,
    pub kind: String,
    pub org_id: Option<String>,
    pub connection_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub data: String,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub created_us: i64,
    pub actor: Option<String>,
    pub member_id: Option<String>,
}

impl HeldRow {
    fn of(row: &impl Cols) -> HeldRow {
        HeldRow {
            seq: row.int("seq"),
            user_id: row.text("user_id"),
            id: row.text("id"),
            kind: row.text("type"),
            org_id: row.opt_text("org_id"),
            connection_id: row.opt_text("connection_id"),
            resource_type: row.opt_text("resource_type"),
            resource_id: row.opt_text("resource_id"),
            data: row.text("data"),
            user_agent: row.opt_text("user_agent"),
            request_id: row.opt_text("request_id"),
            created_us: row.int("created_us"),
            actor: row.opt_text("actor"),
            member_id: row.opt_text("member_id"),
        }
    }
}

/// A connection's guard, as the operator sees and resolves it; [`crate::Store`] includes it. (The
/// guard's step inside every resource write is each backend's own: `*/guard_ops.rs`.)
#[async_trait::async_trait]
pub trait GuardStore: Send + Sync {
    /// A connection's guard: settings, whether it tripped, what it holds. `None`: no connection.
    async fn deprovision_guard(&self, connection_id: &str) -> StoreResult<Option<GuardState>>;
    /// Replaces a connection's guard settings (validated by the caller), recording
    /// `connection.deprovision_guard_set`. A tripped guard stays tripped. `None`: no connection.
    async fn set_deprovision_guard(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        settings: &GuardSettings,
    ) -> StoreResult<Option<GuardState>>;
    /// Up to `limit` of the events a connection's guard holds, after `after_seq` (their position
    /// among the held events), oldest first.
    async fn held_events(&self, connection_id: &str, after_seq: i64, limit: i64) -> StoreResult<Vec<HeldEvent>>;
    /// Releases (`release`: into the event log, after a `connection.deprovision_guard_released`
    /// event) or discards (recording `connection.deprovision_guard_discarded`) every held event of a
    /// connection, re-arms the guard and empties its window, in one transaction. Writes nothing
    /// when the guard had not tripped and held nothing (`tripped_us` is `None`, counts 0).
    /// `None`: no connection.
    async fn resolve_deprovision_guard(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        release: bool,
    ) -> StoreResult<Option<GuardResolution>>;
}

/// [`GuardStore`] for a [`Backend`]; a release writes the held events back the way each backend's
/// writes record events ([`crate::backend::Tx::release`]).
macro_rules! guard_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl GuardStore for $store {
            async fn deprovision_guard(&self, connection_id: &str) -> StoreResult<Option<GuardState>> {
                let row = sqlx::query(
                    "SELECT c.id, g.settings, g.tripped_us,
                       (SELECT count(*) FROM held_events h WHERE h.connection_id = c.id) AS held_events,
                       (SELECT count(DISTINCT user_id) FROM held_events h WHERE h.connection_id = c.id) AS held_users
                     FROM scim_connections c LEFT JOIN deprovision_guards g ON g.connection_id = c.id WHERE c.id = $1",
                )
                .bind(connection_id)
                .fetch_optional(self.reads())
                .await?;
                let Some(row) = row else { return Ok(None) };
                let settings = GuardSettings::from_stored(row.opt_text("settings").as_deref());
                let window: i64 = sqlx::query_scalar(
                    "SELECT count(DISTINCT user_id) FROM deprovision_window WHERE connection_id = $1 AND at_us > $2",
                )
                .bind(connection_id)
                .bind(crate::sqlite::now_us() - settings.window_us())
                .fetch_one(self.reads())
                .await?;
                Ok(Some(GuardState {
                    connection_id: row.text("id"),
                    settings,
                    tripped_us: row.opt_int("tripped_us"),
                    held_events: row.int("held_events"),
                    held_users: row.int("held_users"),
                    window_deprovisions: window,
                }))
            }

            async fn set_deprovision_guard(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                settings: &GuardSettings,
            ) -> StoreResult<Option<GuardState>> {
                let found = self
                    .writing(move || async move {
                        let mut tx = self.begin().await?;
                        // Without a row lock: the resource writes' foreign keys take a share lock on
                        // the connection while they hold the guard's lock (PostgreSQL).
                        let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = $1")
                            .bind(connection_id)
                            .fetch_optional(tx.conn())
                            .await?;
                        let Some(org) = org else { return Ok(false) };
                        let before: Option<String> =
                            sqlx::query_scalar("SELECT settings FROM deprovision_guards WHERE connection_id = $1")
                                .bind(connection_id)
                                .fetch_optional(tx.conn())
                                .await?
                                .flatten();
                        let before = GuardSettings::from_stored(before.as_deref());
                        sqlx::query(
                            "INSERT INTO deprovision_guards (connection_id, settings) VALUES ($1, $2)
                             ON CONFLICT (connection_id) DO UPDATE SET settings = excluded.settings",
                        )
                        .bind(connection_id)
                        .bind(serde_json::to_string(settings).expect("settings serialize"))
                        .execute(tx.conn())
                        .await?;
                        tx.record(
                            &ctx.about(&org, connection_id),
                            events::CONNECTION_DEPROVISION_GUARD_SET,
                            None,
                            json!({"before": before, "after": settings}),
                        )
                        .await?;
                        tx.commit().await?;
                        Ok(true)
                    })
                    .await?;
                if !found {
                    return Ok(None);
                }
                self.deprovision_guard(connection_id).await
            }

            async fn held_events(&self, connection_id: &str, after_seq: i64, limit: i64) -> StoreResult<Vec<HeldEvent>> {
                let rows =
                    sqlx::query("SELECT * FROM held_events WHERE connection_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                        .bind(connection_id)
                        .bind(after_seq)
                        .bind(limit.max(0))
                        .fetch_all(self.reads())
                        .await?;
                Ok(rows
                    .iter()
                    .map(|row| HeldEvent {
                        seq: row.int("seq"),
                        user_id: row.text("user_id"),
                        held_us: row.int("held_us"),
                        event: Event {
                            seq: 0,
                            ..<$store as Backend>::event_of(row)
                        },
                    })
                    .collect())
            }

            async fn resolve_deprovision_guard(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                release: bool,
            ) -> StoreResult<Option<GuardResolution>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    if <$store as Backend>::DIALECT == Dialect::Postgres {
                        sqlx::query(PG_GUARD_LOCK).bind(connection_id).execute(tx.conn()).await?;
                    }
                    // Without a row lock (as in `set_deprovision_guard`).
                    let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = $1")
                        .bind(connection_id)
                        .fetch_optional(tx.conn())
                        .await?;
                    let Some(org) = org else { return Ok(None) };
                    let tripped_us: Option<i64> =
                        sqlx::query_scalar("SELECT tripped_us FROM deprovision_guards WHERE connection_id = $1")
                            .bind(connection_id)
                            .fetch_optional(tx.conn())
                            .await?
                            .flatten();
                    let rows = sqlx::query(
                        "DELETE FROM held_events WHERE connection_id = $1
                         RETURNING seq, user_id, id, type, org_id, connection_id, resource_type, resource_id,
                           CAST(data AS TEXT) AS data, user_agent, request_id, created_us,
                           CAST(actor AS TEXT) AS actor, member_id",
                    )
                    .bind(connection_id)
                    .fetch_all(tx.conn())
                    .await?;
                    let mut held: Vec<HeldRow> = rows.iter().map(HeldRow::of).collect();
                    held.sort_by_key(|h| h.seq);
                    let users: BTreeSet<&str> = held.iter().map(|h| h.user_id.as_str()).collect();
                    let resolution = GuardResolution {
                        events: held.len() as i64,
                        users: users.len() as i64,
                        tripped_us,
                    };
                    if tripped_us.is_none() && held.is_empty() {
                        return Ok(Some(resolution));
                    }
                    let kind = if release {
                        events::CONNECTION_DEPROVISION_GUARD_RELEASED
                    } else {
                        events::CONNECTION_DEPROVISION_GUARD_DISCARDED
                    };
                    let data = resolved_data(&resolution);
                    tx.record(&ctx.about(&org, connection_id), kind, None, data).await?;
                    if release {
                        tx.release(held).await?;
                    }
                    sqlx::query("DELETE FROM deprovision_window WHERE connection_id = $1")
                        .bind(connection_id)
                        .execute(tx.conn())
                        .await?;
                    sqlx::query("UPDATE deprovision_guards SET tripped_us = NULL WHERE connection_id = $1")
                        .bind(connection_id)
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await?;
                    Ok(Some(resolution))
                })
                .await
            }
        }
    };
}

guard_store!(crate::sqlite::SqliteStore);
guard_store!(crate::postgres::PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn threshold_arithmetic() {
        let s = GuardSettings::default();
        // Few users: the percentage rule waits for more than min_users (10).
        assert_eq!(s.trips(3, 5), None, "3 of 5 deactivated does not trip");
        assert_eq!(s.trips(10, 10), None);
        assert!(!s.needs_active_count(10));
        assert!(s.needs_active_count(11));
        // 11 of 100 active before (11 %) > 10 %: trips.
        assert_eq!(s.trips(11, 100), Some(TripRule::MaxPercent));
        // 11 of 110 is exactly 10 %: not more than.
        assert_eq!(s.trips(11, 110), None);
        assert_eq!(s.trips(12, 110), Some(TripRule::MaxPercent));
        // The absolute rule: more than 25 of any number.
        assert_eq!(s.trips(25, 100_000), None);
        assert_eq!(s.trips(26, 100_000), Some(TripRule::MaxUsers));
        // Rules off one by one, then the guard.
        let no_pct = GuardSettings {
            max_percent: None,
            ..s.clone()
        };
        assert_eq!(no_pct.trips(20, 21), None);
        assert!(!no_pct.needs_active_count(1000));
        let no_abs = GuardSettings {
            max_users: None,
            ..s.clone()
        };
        assert_eq!(no_abs.trips(1000, 100_000), None);
        assert_eq!(no_abs.trips(10_001, 100_000), Some(TripRule::MaxPercent));
        let off = GuardSettings {
            enabled: false,
            ..s.clone()
        };
        assert_eq!(off.trips(u64::MAX, 1), None);
        assert!(!off.needs_active_count(1000));
        // max_users 0: every deprovision trips.
        let strict = GuardSettings {
            max_users: Some(0),
            ..s
        };
        assert_eq!(strict.trips(1, 1000), Some(TripRule::MaxUsers));
    }

    #[test]
    fn settings_default_and_validate() {
        let s = GuardSettings::from_stored(None);
        assert_eq!(s, GuardSettings::default());
        assert!(s.enabled && s.max_users == Some(25) && s.max_percent == Some(10) && s.window_minutes == 60);
        let partial = GuardSettings::from_stored(Some(r#"{"max_users": null}"#));
        assert_eq!(partial.max_users, None);
        assert_eq!(partial.max_percent, Some(10));
        assert!(serde_json::from_str::<GuardSettings>(r#"{"maxUsers": 3}"#).is_err());
        assert!(
            GuardSettings {
                max_percent: Some(0),
                ..s.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            GuardSettings {
                max_percent: Some(101),
                ..s.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            GuardSettings {
                window_minutes: 0,
                ..s.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            GuardSettings {
                window_minutes: MAX_WINDOW_MINUTES + 1,
                ..s.clone()
            }
            .validate()
            .is_err()
        );
        assert!(s.validate().is_ok());
        assert_eq!(s.window_us(), 3_600_000_000);
    }

    fn ev<'a>(kind: &'a str, rt: &'a str, id: &'a str, member: Option<&'a str>, data: &'a Value) -> EventView<'a> {
        EventView {
            kind,
            resource_type: Some(rt),
            resource_id: Some(id),
            member_id: member,
            data,
        }
    }

    #[test]
    fn classify_and_hold() {
        let empty = json!({});
        let lost = json!({"before": ["eng"], "after": []});
        let kept = json!({"before": ["eng", "admin"], "after": ["eng"]});
        let regained = json!({"before": [], "after": ["eng"]});
        let member = json!({"member": "u3"});
        let evs = vec![
            ev(events::USER_DEACTIVATED, "User", "u1", None, &empty),
            ev(events::USER_ROLES_CHANGED, "User", "u1", None, &lost),
            ev(events::GROUP_MEMBER_REMOVED, "Group", "g1", Some("u3"), &member),
            ev(events::USER_ROLES_CHANGED, "User", "u3", None, &lost),
            ev(events::USER_ROLES_CHANGED, "User", "u4", None, &kept),
            ev(events::USER_DELETED, "User", "u5", None, &empty),
            ev(events::USER_REACTIVATED, "User", "u6", None, &empty),
            ev(events::USER_ROLES_CHANGED, "User", "u7", None, &regained),
            ev(events::USER_UPDATED, "User", "u8", None, &empty),
        ];
        let c = classify(evs.iter().copied());
        let d: Vec<&str> = c.deprovisioned.iter().map(String::as_str).collect();
        assert_eq!(d, ["u1", "u3", "u5"]);
        let r: Vec<&str> = c.restored.iter().map(String::as_str).collect();
        assert_eq!(r, ["u6", "u7"]);
        let held: Vec<Option<&str>> = evs.iter().map(|e| held_subject(e, &c.deprovisioned)).collect();
        assert_eq!(
            held,
            [
                Some("u1"),
                Some("u1"),
                Some("u3"),
                Some("u3"),
                None,
                Some("u5"),
                None,
                None,
                None
            ]
        );
    }
}
