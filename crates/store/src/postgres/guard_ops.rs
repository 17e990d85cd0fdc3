//! PostgreSQL: the guard against mass deprovisioning ([`crate::guard`]): the step every resource
//! write runs before it commits (on the events it is about to record, still in memory), and the
//! operator's reads and decisions.

use super::*;
use crate::guard::{self, EventView, GuardResolution, GuardSettings};

/// Serializes the guard's steps of one connection (a transaction-scoped advisory lock, taken after
/// the write's row locks and before the events lock, so it joins no cycle).
async fn lock_guard(tx: &mut WriteTx, connection_id: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('rollcall.deprovision_guard:' || $1, 0))")
        .bind(connection_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// A connection, read without a row lock: the resource writes' foreign keys take a share lock on it
/// while they hold the guard's lock, so waiting for its row lock here could close a cycle.
async fn connection_of(tx: &mut WriteTx, id: &str) -> StoreResult<Option<Connection>> {
    let row = sqlx::query("SELECT * FROM scim_connections WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(row.as_ref().map(conn_of))
}

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
    lock_guard(tx, &ctx.connection_id).await?;
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

/// A held row as the event it will become (its kind and resource type among the known ones).
fn pending_of(row: &PgRow) -> PendingEvent {
    let kind: String = row.get("type");
    let resource_type: Option<String> = row.get("resource_type");
    PendingEvent {
        id: row.get("id"),
        kind: events::ALL
            .iter()
            .copied()
            .find(|k| *k == kind)
            .unwrap_or(events::USER_UPDATED),
        org_id: row.get("org_id"),
        connection_id: row.get("connection_id"),
        resource_type: resource_type
            .as_deref()
            .and_then(ResourceKind::parse)
            .map(ResourceKind::as_str),
        resource_id: row.get("resource_id"),
        data: row.get("data_text"),
        user_agent: row.get("user_agent"),
        request_id: row.get("request_id"),
        created_us: row.get("created_us"),
        actor: row
            .get::<Option<String>, _>("actor_text")
            .unwrap_or_else(|| r#"{"type":"system"}"#.to_string()),
        member_id: row.get("member_id"),
    }
}

impl PostgresStore {
    async fn resolve_once(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        release: bool,
    ) -> StoreResult<Option<GuardResolution>> {
        let mut tx = self.begin_write().await?;
        lock_guard(&mut tx, connection_id).await?;
        let Some(conn) = connection_of(&mut tx, connection_id).await? else {
            return Ok(None);
        };
        let (_, tripped_us) = guard_row(&mut tx, connection_id).await?;
        let rows = sqlx::query(
            "DELETE FROM held_events WHERE connection_id = $1
             RETURNING seq, user_id, id, type, org_id, connection_id, resource_type, resource_id, data::text AS data_text,
               user_agent, request_id, created_us, actor::text AS actor_text, member_id",
        )
        .bind(connection_id)
        .fetch_all(tx.conn())
        .await?;
        let mut held: Vec<(i64, String, PendingEvent)> = rows
            .iter()
            .map(|r| (r.get("seq"), r.get("user_id"), pending_of(r)))
            .collect();
        held.sort_by_key(|h| h.0);
        let users: std::collections::BTreeSet<&str> = held.iter().map(|h| h.1.as_str()).collect();
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
        tx.event(
            &ctx.about(&conn.org_id, &conn.id),
            kind,
            None,
            guard::resolved_data(&resolution),
        );
        if release {
            tx.events.extend(held.into_iter().map(|h| h.2));
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
    }

    pub(crate) async fn resolve_deprovision_guard_impl(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        release: bool,
    ) -> StoreResult<Option<GuardResolution>> {
        self.retrying(|| self.resolve_once(ctx, connection_id, release)).await
    }
}
