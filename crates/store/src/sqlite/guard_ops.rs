//! SQLite: the guard against mass deprovisioning ([`crate::guard`]): the step every resource write
//! runs before it is kept, and how a release writes held events back.

use super::*;
use crate::guard::{self, EventView};

/// The last event sequence number so far: the events a write records after it are its own (the
/// writer is alone, and earlier members of its group commit have lower numbers).
pub(super) fn events_high(c: &rusqlite::Connection) -> StoreResult<i64> {
    Ok(c.prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))?)
}

/// The guard's step ([`guard::step`]) on the events written since `since` (the log's highest number
/// before the write): the events of the users it holds are moved to `held_events`.
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
    let held = grant_db::block(guard::step(&mut grant_db::Inline(c), ctx, classified))?;
    if held.is_empty() {
        return Ok(());
    }
    let mut hold = c.prepare_cached(
        "INSERT INTO held_events (connection_id, user_id, held_us, id, type, org_id, resource_type, resource_id, data,
           user_agent, request_id, created_us, actor, member_id)
         SELECT ?, ?, ?, id, type, org_id, resource_type, resource_id, data, user_agent, request_id, created_us, actor, member_id
         FROM events WHERE seq = ?",
    )?;
    let mut remove = c.prepare_cached("DELETE FROM events WHERE seq = ?")?;
    let now = now_us();
    for (row, view) in rows.iter().zip(&views) {
        if let Some(user) = guard::held_subject(view, &held) {
            hold.execute((&ctx.connection_id, user, now, row.0))?;
            remove.execute([row.0])?;
        }
    }
    Ok(())
}

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
