//! PostgreSQL: the guard against mass deprovisioning ([`crate::guard`]): the step every resource
//! write runs before it commits (on the events it is about to record, still in memory), and how a
//! release writes held events back.

use super::*;
use crate::guard::{self, EventView, GuardSettings};

async fn guard_row(tx: &mut WriteTx, connection_id: &str) -> StoreResult<(GuardSettings, Option<i64>)> {
    let row: Option<(Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT settings, tripped_us FROM deprovision_guards WHERE connection_id = $1")
            .bind(connection_id)
            .fetch_optional(tx.conn())
            .await?;
    let (settings, tripped) = row.unwrap_or((None, None));
    Ok((GuardSettings::from_stored(settings.as_deref()), tripped))
}

/// The guard's step at the end of a resource write: the events the write is about to record are
/// sorted ([`guard::classify`]); held events of users it restored are dropped; its deprovisions
/// are counted in the window, and when they trip the guard (or it had tripped) their events are
/// written to `held_events` instead of the log, with `connection.deprovision_guard_tripped`
/// recorded when it trips now. A write that deprovisions nobody costs no round trip.
pub(super) async fn after_write(tx: &mut WriteTx, ctx: &WriteContext) -> StoreResult<()> {
    let data: Vec<Value> = tx
        .events
        .iter()
        .map(|e| match e.kind {
            events::USER_ROLES_CHANGED => serde_json::from_str(&e.data).unwrap_or(Value::Null),
            _ => Value::Null,
        })
        .collect();
    let classified = {
        let views = tx.events.iter().zip(&data).map(|(e, d)| view(e, d));
        guard::classify(views)
    };
    if !classified.restored.is_empty() {
        sqlx::query("DELETE FROM held_events WHERE connection_id = $1 AND user_id = ANY($2)")
            .bind(&ctx.connection_id)
            .bind(classified.restored.iter().cloned().collect::<Vec<_>>())
            .execute(tx.conn())
            .await?;
    }
    if classified.deprovisioned.is_empty() {
        return Ok(());
    }
    // A staging connection's user events never reach the log ([`crate::staging`]): nothing to hold.
    let staged: Option<bool> = sqlx::query_scalar("SELECT staged_us IS NOT NULL FROM scim_connections WHERE id = $1")
        .bind(&ctx.connection_id)
        .fetch_optional(tx.conn())
        .await?;
    if staged == Some(true) {
        return Ok(());
    }
    sqlx::query(guard::PG_GUARD_LOCK)
        .bind(&ctx.connection_id)
        .execute(tx.conn())
        .await?;
    let (settings, tripped) = guard_row(tx, &ctx.connection_id).await?;
    if !settings.enabled {
        return Ok(());
    }
    let now = now_us();
    if tripped.is_none() {
        // Prune, add this write's users and count, in one round trip (the count sees the table as
        // the statement started, so the new rows are counted from the array).
        let users: Vec<String> = classified.deprovisioned.iter().cloned().collect();
        let count: i64 = sqlx::query_scalar(
            "WITH pruned AS (DELETE FROM deprovision_window WHERE connection_id = $1 AND at_us <= $2),
                  added AS (INSERT INTO deprovision_window (connection_id, at_us, user_id)
                            SELECT $1, $3, u FROM UNNEST($4::text[]) AS u)
             SELECT count(DISTINCT u) FROM (
               SELECT user_id AS u FROM deprovision_window WHERE connection_id = $1 AND at_us > $2
               UNION ALL SELECT u FROM UNNEST($4::text[]) AS u) x",
        )
        .bind(&ctx.connection_id)
        .bind(now - settings.window_us())
        .bind(now)
        .bind(&users)
        .fetch_one(tx.conn())
        .await?;
        let count = count.max(0) as u64;
        let active: Option<u64> = if settings.needs_active_count(count) {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM resources WHERE connection_id = $1 AND kind = 'User' AND deleted_us IS NULL
                   AND active IS NOT FALSE",
            )
            .bind(&ctx.connection_id)
            .fetch_one(tx.conn())
            .await?;
            Some(n.max(0) as u64)
        } else {
            None
        };
        let active_before = active.map(|a| a + count);
        let Some(rule) = settings.trips(count, active_before.unwrap_or(u64::MAX)) else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO deprovision_guards (connection_id, tripped_us) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO UPDATE SET tripped_us = excluded.tripped_us",
        )
        .bind(&ctx.connection_id)
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.event(
            ctx,
            events::CONNECTION_DEPROVISION_GUARD_TRIPPED,
            None,
            guard::tripped_data(rule, count, active_before, &settings),
        );
    }
    let pending = std::mem::take(&mut tx.events);
    let mut held: Vec<(String, PendingEvent)> = Vec::new();
    for (i, e) in pending.into_iter().enumerate() {
        let d = data.get(i).unwrap_or(&Value::Null);
        match guard::held_subject(&view(&e, d), &classified.deprovisioned).map(str::to_string) {
            Some(user) => held.push((user, e)),
            None => tx.events.push(e),
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO held_events (connection_id, user_id, held_us, id, type, org_id, resource_type, resource_id, data,
           user_agent, request_id, created_us, actor, member_id)
         SELECT $1, t.user_id, $2, t.id, t.type, t.org_id, t.resource_type, t.resource_id, t.data::jsonb, t.user_agent,
           t.request_id, t.created_us, t.actor::jsonb, t.member_id
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::text[], $12::int8[], $13::text[], $14::text[])
              WITH ORDINALITY AS t(user_id, id, type, org_id, resource_type, resource_id, data, user_agent, request_id,
                                   created_us, actor, member_id, n)
         ORDER BY t.n",
    )
    .bind(&ctx.connection_id)
    .bind(now)
    .bind(held.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.id.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.kind.to_string()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.org_id.clone()).collect::<Vec<_>>())
    .bind(
        held.iter()
            .map(|(_, e)| e.resource_type.map(str::to_string))
            .collect::<Vec<_>>(),
    )
    .bind(held.iter().map(|(_, e)| e.resource_id.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.data.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.user_agent.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.request_id.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.created_us).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.actor.clone()).collect::<Vec<_>>())
    .bind(held.iter().map(|(_, e)| e.member_id.clone()).collect::<Vec<_>>())
    .execute(tx.conn())
    .await?;
    Ok(())
}

fn view<'a>(e: &'a PendingEvent, data: &'a Value) -> EventView<'a> {
    EventView {
        kind: e.kind,
        resource_type: e.resource_type,
        resource_id: e.resource_id.as_deref(),
        member_id: e.member_id.as_deref(),
        data,
    }
}

/// A held event as the event it will become (its kind and resource type among the known ones).
fn pending_of(h: guard::HeldRow) -> PendingEvent {
    PendingEvent {
        id: h.id,
        kind: events::ALL
            .iter()
            .copied()
            .find(|k| *k == h.kind)
            .unwrap_or(events::USER_UPDATED),
        org_id: h.org_id,
        connection_id: h.connection_id,
        resource_type: h
            .resource_type
            .as_deref()
            .and_then(ResourceKind::parse)
            .map(ResourceKind::as_str),
        resource_id: h.resource_id,
        data: h.data,
        user_agent: h.user_agent,
        request_id: h.request_id,
        created_us: h.created_us,
        actor: h.actor.unwrap_or_else(|| r#"{"type":"system"}"#.to_string()),
        member_id: h.member_id,
    }
}

/// Writes events the guard held back to the log, in order (numbered at the commit, like every
/// event of the transaction).
pub(crate) fn release(tx: &mut WriteTx, held: Vec<guard::HeldRow>) {
    tx.events.extend(held.into_iter().map(pending_of));
}
