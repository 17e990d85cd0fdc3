//! SQLite: events inserted on the writer's handle through rusqlite, inside the group commit
//! ([`group_commit`]): by the resource writes ([`crate::resource_rows`], through the grant
//! engine's [`grant_db::Inline`]), and by the sqlx-side writes (organizations, connections, roles,
//! webhooks) through [`group_commit::on_connection`].

use super::*;
use rusqlite::OptionalExtension;

/// Whether connection `id` is in staging ([`crate::staging`]), read in the writer's transaction
/// (the writer is alone, so this is the state the write commits with).
fn is_staged(c: &rusqlite::Connection, id: &str) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT staged_us IS NOT NULL FROM scim_connections WHERE id = ?")?
            .query_row([id], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false),
    )
}

/// Inserts one event per item of `data`, all of the same type and resource, in one statement.
pub(crate) fn insert_events(
    c: &rusqlite::Connection,
    ctx: &WriteContext,
    kind: &str,
    resource: Option<(ResourceKind, &str)>,
    data: &[Value],
) -> StoreResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    // A staging connection's user and group events are not written ([`crate::staging`]).
    if resource.is_some() && !ctx.connection_id.is_empty() && is_staged(c, &ctx.connection_id)? {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO events (id, type, org_id, connection_id, resource_type, resource_id, data, user_agent, request_id, created_us, actor, member_id)
         VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; data.len()].join(", ")
    );
    let (now, actor) = (now_us(), ctx.actor.to_json());
    let org = Some(ctx.org_id.as_str()).filter(|s| !s.is_empty());
    let connection = Some(ctx.connection_id.as_str()).filter(|s| !s.is_empty());
    let mut stmt = c.prepare_cached(&sql)?;
    let mut at = 0;
    let mut bind = |v: &dyn rusqlite::ToSql| -> rusqlite::Result<()> {
        at += 1;
        stmt.raw_bind_parameter(at, v)
    };
    for d in data {
        bind(&uuid::Uuid::now_v7().to_string())?;
        bind(&kind)?;
        bind(&org)?;
        bind(&connection)?;
        bind(&resource.map(|r| r.0.as_str()))?;
        bind(&resource.map(|r| r.1))?;
        bind(&d.to_string())?;
        bind(&ctx.user_agent)?;
        bind(&ctx.request_id)?;
        bind(&now)?;
        bind(&actor)?;
        bind(&events::member_of(kind, d))?;
    }
    stmt.raw_execute()?;
    crate::metrics::note_pending(kind, data.len() as u64);
    Ok(())
}
