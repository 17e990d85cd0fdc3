//! PostgreSQL: the guard against mass deprovisioning ([`crate::guard`]): the step every resource
//! write runs before it commits (on the events it is about to record, still in memory), and how a
//! release writes held events back.

use super::*;
use crate::guard::{self, EventView};

/// The guard's step ([`guard::step`]) on the events the transaction is about to record, still in
/// memory: the events of the users it holds go to `held_events` instead of the log.
pub(super) async fn after_write(tx: &mut WriteTx, ctx: &WriteContext) -> StoreResult<()> {
    let data: Vec<Value> = tx
        .events
        .iter()
        .map(|e| match e.kind {
            events::USER_ROLES_CHANGED => serde_json::from_str(&e.data).unwrap_or(Value::Null),
            _ => Value::Null,
        })
        .collect();
    let classified = guard::classify(tx.events.iter().zip(&data).map(|(e, d)| view(e, d)));
    if classified == guard::Classified::default() {
        return Ok(());
    }
    let users = guard::step(tx, ctx, classified).await?;
    if users.is_empty() {
        return Ok(());
    }
    let now = now_us();
    let pending = std::mem::take(&mut tx.events);
    let mut held: Vec<(String, PendingEvent)> = Vec::new();
    for (i, e) in pending.into_iter().enumerate() {
        let d = data.get(i).unwrap_or(&Value::Null);
        match guard::held_subject(&view(&e, d), &users).map(str::to_string) {
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
