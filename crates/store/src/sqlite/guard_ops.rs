//! SQLite: the guard against mass deprovisioning ([`crate::guard`]): the step every resource write
//! runs before it is kept, and how a release writes held events back.

use super::*;
use crate::guard::{self, EventView, GuardSettings};
use rusqlite::OptionalExtension;

/// The last event sequence number so far: the events a write records after it are its own (the
/// writer is alone, and earlier members of its group commit have lower numbers).
pub(super) fn events_high(c: &rusqlite::Connection) -> StoreResult<i64> {
    Ok(c.prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))?)
}

/// A connection's guard settings and when it tripped (no row: the defaults, armed).
fn guard_row(c: &rusqlite::Connection, connection_id: &str) -> StoreResult<(GuardSettings, Option<i64>)> {
    let row: Option<(Option<String>, Option<i64>)> = c
        .prepare_cached("SELECT settings, tripped_us FROM deprovision_guards WHERE connection_id = ?")?
        .query_row([connection_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (settings, tripped) = row.unwrap_or((None, None));
    Ok((GuardSettings::from_stored(settings.as_deref()), tripped))
}

/// The guard's step at the end of a resource write, in its transaction: the events the write
/// recorded after `since` are sorted ([`guard::classify`]); held events of users it restored are
/// dropped; its deprovisions are counted in the window, and when they trip the guard (or it had
/// tripped) their events move from `events` to `held_events`, with `connection.deprovision_guard_tripped`
/// recorded when it trips now.
pub(super) fn after_write(c: &rusqlite::Connection, ctx: &WriteContext, since: i64) -> StoreResult<()> {
    type Row = (i64, String, Option<String>, Option<String>, Option<String>, String);
    let rows: Vec<Row> = c
        .prepare_cached(
            "SELECT seq, type, resource_type, resource_id, member_id, data FROM events WHERE seq > ? ORDER BY seq",
        )?
        .query_map([since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    let data: Vec<Value> = rows
        .iter()
        .map(|r| match r.1.as_str() {
            events::USER_ROLES_CHANGED => serde_json::from_str(&r.5).unwrap_or(Value::Null),
            _ => Value::Null,
        })
        .collect();
    let views: Vec<EventView> = rows
        .iter()
        .zip(&data)
        .map(|(r, d)| EventView {
            kind: &r.1,
            resource_type: r.2.as_deref(),
            resource_id: r.3.as_deref(),
            member_id: r.4.as_deref(),
            data: d,
        })
        .collect();
    let classified = guard::classify(views.iter().copied());
    if !classified.restored.is_empty() {
        let mut stmt = c.prepare_cached("DELETE FROM held_events WHERE connection_id = ? AND user_id = ?")?;
        for u in &classified.restored {
            stmt.execute((&ctx.connection_id, u))?;
        }
    }
    if classified.deprovisioned.is_empty() {
        return Ok(());
    }
    let (settings, tripped) = guard_row(c, &ctx.connection_id)?;
    if !settings.enabled {
        return Ok(());
    }
    let now = now_us();
    if tripped.is_none() {
        c.prepare_cached("DELETE FROM deprovision_window WHERE connection_id = ? AND at_us <= ?")?
            .execute((&ctx.connection_id, now - settings.window_us()))?;
        let mut ins =
            c.prepare_cached("INSERT INTO deprovision_window (connection_id, at_us, user_id) VALUES (?, ?, ?)")?;
        for u in &classified.deprovisioned {
            ins.execute((&ctx.connection_id, now, u))?;
        }
        let count: i64 = c
            .prepare_cached("SELECT count(DISTINCT user_id) FROM deprovision_window WHERE connection_id = ?")?
            .query_row([&ctx.connection_id], |r| r.get(0))?;
        let count = count.max(0) as u64;
        let active: Option<u64> = if settings.needs_active_count(count) {
            let n: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM resources WHERE connection_id = ? AND kind = 'User' AND deleted_us IS NULL
                       AND coalesce(active, 1)",
                )?
                .query_row([&ctx.connection_id], |r| r.get(0))?;
            Some(n.max(0) as u64)
        } else {
            None
        };
        let active_before = active.map(|a| a + count);
        let Some(rule) = settings.trips(count, active_before.unwrap_or(u64::MAX)) else {
            return Ok(());
        };
        c.prepare_cached(
            "INSERT INTO deprovision_guards (connection_id, tripped_us) VALUES (?, ?)
             ON CONFLICT (connection_id) DO UPDATE SET tripped_us = excluded.tripped_us",
        )?
        .execute((&ctx.connection_id, now))?;
        event_rows::insert_events(
            c,
            ctx,
            events::CONNECTION_DEPROVISION_GUARD_TRIPPED,
            None,
            &[guard::tripped_data(rule, count, active_before, &settings)],
        )?;
    }
    let mut hold = c.prepare_cached(
        "INSERT INTO held_events (connection_id, user_id, held_us, id, type, org_id, resource_type, resource_id, data,
           user_agent, request_id, created_us, actor, member_id)
         SELECT ?, ?, ?, id, type, org_id, resource_type, resource_id, data, user_agent, request_id, created_us, actor, member_id
         FROM events WHERE seq = ?",
    )?;
    let mut remove = c.prepare_cached("DELETE FROM events WHERE seq = ?")?;
    for (row, view) in rows.iter().zip(&views) {
        if let Some(user) = guard::held_subject(view, &classified.deprovisioned) {
            hold.execute((&ctx.connection_id, user, now, row.0))?;
            remove.execute([row.0])?;
        }
    }
    Ok(())
}

/// Writes events the guard held back to the log, in order, as they were recorded (a release).
pub(crate) async fn release(tx: &mut group_commit::WriteTx, held: Vec<guard::HeldRow>) -> StoreResult<()> {
    group_commit::on_connection(tx, |c| {
        let mut insert = c.prepare_cached(
            "INSERT INTO events (id, type, org_id, connection_id, resource_type, resource_id, data, user_agent,
               request_id, created_us, actor, member_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for h in &held {
            insert.execute(rusqlite::params![
                h.id,
                h.kind,
                h.org_id,
                h.connection_id,
                h.resource_type,
                h.resource_id,
                h.data,
                h.user_agent,
                h.request_id,
                h.created_us,
                h.actor,
                h.member_id
            ])?;
        }
        Ok(())
    })
    .await
}
