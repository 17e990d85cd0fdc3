//! SQLite: the writes of users and groups, their membership rows, e-mail index rows and events, run
//! synchronously on the writer's handle through rusqlite ([`group_commit`]): a resource write is one
//! hand-off to the writer, however many statements it takes.
//!
//! The sqlx-side writes (organizations, connections, roles, webhooks) reach the event insert and the
//! role computation here through [`group_commit::on_connection`].

use super::*;
use crate::grant_rows::{protected_match, recompute_grants};
use crate::update::{Computed, Written, precondition_failed};
use crate::workspaces;
use grant_db::{Inline, block};
use rusqlite::OptionalExtension;
use rusqlite::params_from_iter;
use std::collections::HashSet;

/// How a write that may touch a protected user ended: done, or refused before anything was changed
/// (the refusal is recorded in a transaction of its own, [`SqliteStore::refuse_protected`]).
pub(super) enum Guarded<T> {
    Done(T),
    Protected(String),
}

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

/// Maps a unique-index violation on resources to the SCIM 409.
fn uniqueness(e: rusqlite::Error, kind: ResourceKind, doc: &Value) -> StoreError {
    let unique = e.sqlite_error().is_some_and(|f| {
        matches!(
            f.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    });
    if !unique {
        return StoreError::Sqlite(e);
    }
    let detail = match kind {
        ResourceKind::User => format!(
            "userName \"{}\" is already taken in this connection",
            doc.get("userName").and_then(Value::as_str).unwrap_or_default()
        ),
        ResourceKind::Group => format!(
            "a group named \"{}\" already exists in this connection",
            doc.get("displayName").and_then(Value::as_str).unwrap_or_default()
        ),
    };
    StoreError::Scim(ScimError::uniqueness(detail))
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

/// Writes a resource's e-mail index rows; `replace` first removes the old ones (a new resource
/// has none, so a create skips that statement).
fn write_emails(
    c: &rusqlite::Connection,
    pk: i64,
    connection_id: &str,
    emails: &[String],
    replace: bool,
) -> StoreResult<()> {
    if replace {
        c.prepare_cached("DELETE FROM resource_emails WHERE resource_pk = ?")?
            .execute([pk])?;
    }
    if !emails.is_empty() {
        let mut stmt =
            c.prepare_cached("INSERT INTO resource_emails (resource_pk, connection_id, value_ci) VALUES (?, ?, ?)")?;
        for e in emails {
            stmt.execute((pk, connection_id, e))?;
        }
    }
    Ok(())
}

/// Creates a user or group (with its first members) and records the events.
pub(super) fn create(
    c: &mut rusqlite::Connection,
    registry: &SchemaRegistry,
    ctx: &WriteContext,
    kind: ResourceKind,
    mut doc: Value,
    members: Vec<MemberRef>,
) -> StoreResult<StoredResource> {
    let id = uuid::Uuid::new_v4().to_string();
    store_order(&mut doc);
    let fields = IndexFields::of(kind, &doc);
    let search = search_doc(registry, resource_type(registry, kind), &doc);
    let now = now_us();
    let pk: i64 = c
        .prepare_cached(
            "INSERT INTO resources (connection_id, kind, id, external_id, user_name_ci, display_name_ci, active, version, created_us, modified_us, doc, doc_ci)
             VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING pk",
        )?
        .query_row(
            rusqlite::params![
                ctx.connection_id,
                kind.as_str(),
                id,
                fields.external_id,
                fields.user_name_ci,
                fields.display_name_ci,
                fields.active,
                now,
                now,
                doc.to_string(),
                search.to_string(),
            ],
            |r| r.get(0),
        )
        .map_err(|e| uniqueness(e, kind, &doc))?;
    write_emails(c, pk, &ctx.connection_id, &fields.emails_ci, false)?;
    insert_events(
        c,
        ctx,
        events::created(kind),
        Some((kind, &id)),
        &[json!({"attributes": doc})],
    )?;
    let affected = match kind {
        ResourceKind::User => vec![pk],
        ResourceKind::Group if !members.is_empty() => add_members(c, ctx, pk, &id, &members)?,
        ResourceKind::Group => Vec::new(),
    };
    if kind == ResourceKind::Group {
        block(workspaces::group_created(&mut Inline(c), ctx, &id, &doc))?;
    }
    block(recompute_grants(&mut Inline(c), ctx, RoleScope::Users(affected)))?;
    crate::resource_doc::put_id(&mut doc, &id);
    Ok(StoredResource::created(id, kind, doc, now))
}

fn resource_type(registry: &SchemaRegistry, kind: ResourceKind) -> &ResourceType {
    registry
        .resource_type(kind.as_str())
        .expect("standard resource types are registered")
}

/// Writes what a mutation computed ([`crate::update`]) to a user or group: the document, its
/// membership rows, the events, and the effective roles of whoever it affects. `Changed` when the
/// stored document is no longer the one the mutation read; `Done(None)` when the resource is gone.
pub(super) fn update(
    c: &mut rusqlite::Connection,
    registry: &SchemaRegistry,
    ctx: &WriteContext,
    kind: ResourceKind,
    if_match: Option<i64>,
    computed: Computed,
) -> StoreResult<Guarded<Written>> {
    let id = computed.current.id.clone();
    let id = id.as_str();
    let found: Option<(i64, i64, i64, i64)> = c
        .prepare_cached(
            "SELECT pk, version, created_us, modified_us FROM resources
             WHERE connection_id = ? AND id = ? AND kind = ? AND deleted_us IS NULL",
        )?
        .query_row((&ctx.connection_id, id, kind.as_str()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((pk, current_version, created_us, modified_us)) = found else {
        return Ok(Guarded::Done(Written::Done(None)));
    };
    if let Some(v) = if_match
        && v != current_version
    {
        return Err(precondition_failed(current_version, v));
    }
    if current_version != computed.current.version {
        // Written since it was read: still good if the document is the same (a membership change
        // bumps a group's version only), compared as stored text.
        let same = match computed.current.doc.stored_text() {
            Some(text) => c
                .prepare_cached("SELECT doc = ? FROM resources WHERE connection_id = ? AND pk = ?")?
                .query_row((text, &ctx.connection_id, pk), |r| r.get::<_, bool>(0))?,
            None => false,
        };
        if !same {
            return Ok(Guarded::Done(Written::Changed));
        }
    }
    let doc_changed = computed.doc_changed();
    let Computed {
        current,
        doc,
        member_changes,
    } = computed;
    let before: &Value = &current.doc;
    if kind == ResourceKind::User
        && doc.get("active").and_then(Value::as_bool) == Some(false)
        && before.get("active").and_then(Value::as_bool) != Some(false)
        && let Some(email) = block(protected_match(&mut Inline(c), &ctx.org_id, pk, before))?
    {
        return Ok(Guarded::Protected(email));
    }
    // The events this write records are the guard's to look at ([`guard_ops::after_write`]).
    let since = if (kind == ResourceKind::User && doc_changed) || !member_changes.is_empty() {
        Some(guard_ops::events_high(c)?)
    } else {
        None
    };
    let touched = if kind == ResourceKind::Group && !member_changes.is_empty() {
        apply_member_changes(c, ctx, registry, pk, id, member_changes)?
    } else {
        Vec::new()
    };
    let members_changed = !touched.is_empty();
    let role_scope = RoleScope::after_update(kind, pk, before, &doc, touched);
    if !doc_changed && !members_changed {
        return Ok(Guarded::Done(Written::Done(Some(StoredResource {
            version: current_version,
            created_us,
            modified_us,
            ..current
        }))));
    }
    let now = now_us();
    let version = current_version + 1;
    if doc_changed {
        let mut stored = doc.clone();
        store_order(&mut stored);
        let fields = IndexFields::of(kind, &stored);
        let search = search_doc(registry, resource_type(registry, kind), &stored);
        c.prepare_cached(
            "UPDATE resources SET external_id = ?, user_name_ci = ?, display_name_ci = ?, active = ?, version = ?, modified_us = ?, doc = ?, doc_ci = ?
             WHERE connection_id = ? AND pk = ?",
        )?
        .execute(rusqlite::params![
            fields.external_id,
            fields.user_name_ci,
            fields.display_name_ci,
            fields.active,
            version,
            now,
            stored.to_string(),
            search.to_string(),
            ctx.connection_id,
            pk,
        ])
        .map_err(|e| uniqueness(e, kind, &stored))?;
        write_emails(c, pk, &ctx.connection_id, &fields.emails_ci, true)?;
        let ev = events::updated(kind, before, &doc);
        insert_events(c, ctx, ev, Some((kind, id)), &[events::diff(before, &doc)])?;
        if kind == ResourceKind::Group {
            block(workspaces::group_renamed(&mut Inline(c), ctx, id, before, &doc))?;
        }
    } else {
        c.prepare_cached("UPDATE resources SET version = ?, modified_us = ? WHERE connection_id = ? AND pk = ?")?
            .execute((version, now, &ctx.connection_id, pk))?;
    }
    // After the row is written: the computation reads the stored status, app roles and names.
    if let Some(scope) = role_scope {
        block(recompute_grants(&mut Inline(c), ctx, scope))?;
    }
    if let Some(since) = since {
        guard_ops::after_write(c, ctx, since)?;
    }
    Ok(Guarded::Done(Written::Done(Some(StoredResource {
        id: id.to_string(),
        kind,
        doc: doc.into(),
        version,
        created_us,
        modified_us: now,
        related: None,
    }))))
}

/// Deletes a user or group: marks it deleted (or purges it, as the connection's policy says),
/// removes its membership rows with an event each, and recomputes the roles it affected. `false`
/// when there is no such resource.
pub(super) fn delete(
    c: &mut rusqlite::Connection,
    ctx: &WriteContext,
    kind: ResourceKind,
    id: &str,
    if_match: Option<i64>,
) -> StoreResult<Guarded<bool>> {
    let row: Option<(i64, i64, String)> = c
        .prepare_cached(
            "SELECT pk, version, doc FROM resources WHERE connection_id = ? AND id = ? AND kind = ? AND deleted_us IS NULL",
        )?
        .query_row((&ctx.connection_id, id, kind.as_str()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((pk, version, doc)) = row else {
        return Ok(Guarded::Done(false));
    };
    if let Some(v) = if_match
        && v != version
    {
        return Err(precondition_failed(version, v));
    }
    let mut purge = false;
    if kind == ResourceKind::User {
        let doc: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
        if let Some(email) = block(protected_match(&mut Inline(c), &ctx.org_id, pk, &doc))? {
            return Ok(Guarded::Protected(email));
        }
        let policy: Option<String> = c
            .prepare_cached("SELECT policy FROM scim_connections WHERE id = ?")?
            .query_row([&ctx.connection_id], |r| r.get(0))
            .optional()?
            .flatten();
        purge = ConnectionPolicy::from_stored(policy.as_deref()).on_delete == OnDelete::Purge;
    }
    let since = guard_ops::events_high(c)?;
    let now = now_us();
    // Membership goes with the resource, each removal recorded (so the event log alone tells who
    // is in each group); groups the member was in change version; a deleted group's members may
    // lose roles.
    let groups: Vec<String> = c
        .prepare_cached(
            "SELECT g.id FROM group_members m JOIN resources g ON g.pk = m.group_pk
             WHERE m.connection_id = ? AND m.member_pk = ? AND g.deleted_us IS NULL ORDER BY g.pk",
        )?
        .query_map((&ctx.connection_id, pk), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for group_id in &groups {
        insert_events(
            c,
            ctx,
            events::GROUP_MEMBER_REMOVED,
            Some((ResourceKind::Group, group_id)),
            &[json!({"member": id, "reason": "member_deleted"})],
        )?;
    }
    c.prepare_cached(
        "UPDATE resources SET version = version + 1, modified_us = ?1
         WHERE connection_id = ?2 AND pk IN (SELECT group_pk FROM group_members WHERE connection_id = ?2 AND member_pk = ?3)",
    )?
    .execute((now, &ctx.connection_id, pk))?;
    let members: Vec<i64> = if kind == ResourceKind::Group {
        c.prepare_cached("SELECT member_pk FROM group_members WHERE connection_id = ? AND group_pk = ?")?
            .query_map((&ctx.connection_id, pk), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    if purge {
        // Emails, membership and effective roles go with the row (ON DELETE CASCADE).
        c.prepare_cached("DELETE FROM resources WHERE connection_id = ? AND pk = ?")?
            .execute((&ctx.connection_id, pk))?;
    } else {
        // The e-mail rows stay, so that the directory and the access check find a deleted user by
        // e-mail as they do by userName or externalId (SCIM reads skip deleted rows).
        c.prepare_cached(
            "UPDATE resources SET deleted_us = ?, modified_us = ?, version = version + 1 WHERE connection_id = ? AND pk = ?",
        )?
        .execute((now, now, &ctx.connection_id, pk))?;
        // Two statements, each by its own index (SQLite would serve an OR of the two by the
        // connection alone).
        c.prepare_cached("DELETE FROM group_members WHERE connection_id = ? AND member_pk = ?")?
            .execute((&ctx.connection_id, pk))?;
        c.prepare_cached("DELETE FROM group_members WHERE connection_id = ? AND group_pk = ?")?
            .execute((&ctx.connection_id, pk))?;
    }
    let data = if purge { json!({"purged": true}) } else { json!({}) };
    insert_events(c, ctx, events::deleted(kind), Some((kind, id)), &[data])?;
    let affected = match kind {
        ResourceKind::User if !purge => vec![pk],
        ResourceKind::User => Vec::new(),
        ResourceKind::Group => members,
    };
    block(recompute_grants(&mut Inline(c), ctx, RoleScope::Users(affected)))?;
    if kind == ResourceKind::Group {
        // After its members lost it (with their events).
        block(workspaces::group_deleted(&mut Inline(c), ctx, id))?;
    }
    guard_ops::after_write(c, ctx, since)?;
    Ok(Guarded::Done(true))
}

fn unknown_member(id: &str) -> StoreError {
    StoreError::Scim(ScimError::invalid_value(format!(
        "member \"{id}\" is not a user or group of this SCIM connection"
    )))
}

/// Applies membership changes to a group, recording one event per member added or removed.
/// Returns the row keys of the members added or removed.
fn apply_member_changes(
    c: &rusqlite::Connection,
    ctx: &WriteContext,
    registry: &SchemaRegistry,
    group_pk: i64,
    group_id: &str,
    changes: Vec<MemberChange>,
) -> StoreResult<Vec<i64>> {
    let mut touched = Vec::new();
    for change in changes {
        match change {
            MemberChange::Add(members) => {
                touched.extend(add_members(c, ctx, group_pk, group_id, &members)?);
            }
            MemberChange::Remove(ids) => {
                let mut stmt = c.prepare_cached(
                    "DELETE FROM group_members WHERE connection_id = ?1 AND group_pk = ?2 AND member_pk =
                       (SELECT pk FROM resources WHERE connection_id = ?1 AND id = ?3) RETURNING member_pk",
                )?;
                for id in ids {
                    let removed: Option<i64> = stmt
                        .query_row((&ctx.connection_id, group_pk, &id), |r| r.get(0))
                        .optional()?;
                    if let Some(pk) = removed {
                        touched.push(pk);
                        member_removed(c, ctx, group_id, &id)?;
                    }
                }
            }
            MemberChange::RemoveWhere(filter) => {
                let rt = resource_type(registry, ResourceKind::Group);
                let mut b = SqlBuilder::new(Dialect::Sqlite);
                b.push(
                    "SELECT u.pk, u.id FROM group_members m JOIN resources u ON u.pk = m.member_pk WHERE m.connection_id = ",
                );
                b.bind(Bind::Text(ctx.connection_id.clone()));
                b.push(" AND m.group_pk = ");
                b.bind(Bind::Int(group_pk));
                b.push(" AND ");
                crate::sql::compile_member_filter(&mut b, registry, rt, &filter)?;
                let rows: Vec<(i64, String)> = c
                    .prepare(&b.sql)?
                    .query_map(params_from_iter(b.binds.iter()), |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                for (pk, id) in rows {
                    remove_member_pk(c, &ctx.connection_id, group_pk, pk)?;
                    touched.push(pk);
                    member_removed(c, ctx, group_id, &id)?;
                }
            }
            MemberChange::ReplaceAll(members) => {
                let current: Vec<(i64, String)> = c
                    .prepare_cached(
                        "SELECT u.pk, u.id FROM group_members m JOIN resources u ON u.pk = m.member_pk
                         WHERE m.connection_id = ? AND m.group_pk = ?",
                    )?
                    .query_map((&ctx.connection_id, group_pk), |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let wanted: HashSet<&str> = members.iter().map(|m| m.value.as_str()).collect();
                for (pk, id) in &current {
                    if !wanted.contains(id.as_str()) {
                        remove_member_pk(c, &ctx.connection_id, group_pk, *pk)?;
                        touched.push(*pk);
                        member_removed(c, ctx, group_id, id)?;
                    }
                }
                touched.extend(add_members(c, ctx, group_pk, group_id, &members)?);
            }
        }
    }
    Ok(touched)
}

fn remove_member_pk(c: &rusqlite::Connection, connection_id: &str, group_pk: i64, member_pk: i64) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM group_members WHERE connection_id = ? AND group_pk = ? AND member_pk = ?")?
        .execute((connection_id, group_pk, member_pk))?;
    Ok(())
}

fn member_removed(c: &rusqlite::Connection, ctx: &WriteContext, group_id: &str, member_id: &str) -> StoreResult<()> {
    insert_events(
        c,
        ctx,
        events::GROUP_MEMBER_REMOVED,
        Some((ResourceKind::Group, group_id)),
        &[json!({"member": member_id})],
    )
}

/// Rows per multi-row statement when adding members (4 parameters each; SQLite allows 32,766).
const MEMBER_ROWS_PER_STATEMENT: usize = 500;

/// Adds `members` to the group in a few statements whatever their number: one lookup of their row
/// keys, one multi-row `INSERT OR IGNORE` and one multi-row insert of their `group.member_added`
/// events per 500 members. A member that is already in the group is left as it is, but keeps the
/// `display` the client sent last. Returns the row keys of the members added, in order.
fn add_members(
    c: &rusqlite::Connection,
    ctx: &WriteContext,
    group_pk: i64,
    group_id: &str,
    members: &[MemberRef],
) -> StoreResult<Vec<i64>> {
    let mut pks: HashMap<String, i64> = HashMap::with_capacity(members.len());
    for chunk in members.chunks(MEMBER_ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT id, pk FROM resources WHERE connection_id = ? AND deleted_us IS NULL AND id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let ids = std::iter::once(ctx.connection_id.as_str()).chain(chunk.iter().map(|m| m.value.as_str()));
        let found = stmt.query_map(params_from_iter(ids), |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in found {
            let (id, pk): (String, i64) = row?;
            pks.insert(id, pk);
        }
    }
    let mut rows: Vec<(i64, &MemberRef)> = Vec::with_capacity(members.len());
    for m in members {
        let Some(&pk) = pks.get(m.value.as_str()) else {
            return Err(unknown_member(&m.value));
        };
        if pk == group_pk {
            return Err(StoreError::Scim(ScimError::invalid_value(
                "a group cannot be a member of itself",
            )));
        }
        rows.push((pk, m));
    }
    let mut inserted: HashSet<i64> = HashSet::new();
    for chunk in rows.chunks(MEMBER_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT OR IGNORE INTO group_members (connection_id, group_pk, member_pk, display) VALUES {} RETURNING member_pk",
            vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut stmt = c.prepare_cached(&sql)?;
        let mut at = 0;
        for (pk, m) in chunk {
            stmt.raw_bind_parameter(at + 1, ctx.connection_id.as_str())?;
            stmt.raw_bind_parameter(at + 2, group_pk)?;
            stmt.raw_bind_parameter(at + 3, pk)?;
            stmt.raw_bind_parameter(at + 4, m.display.as_deref())?;
            at += 4;
        }
        let mut out = stmt.raw_query();
        while let Some(row) = out.next()? {
            inserted.insert(row.get(0)?);
        }
    }
    // In request order: the first occurrence of each inserted member is an addition; any other
    // occurrence with a display (already a member, or named twice) updates the display.
    let mut added = Vec::new();
    let mut seen = HashSet::new();
    for (pk, m) in &rows {
        let first = seen.insert(*pk);
        if first && inserted.contains(pk) {
            added.push((*pk, m.value.as_str()));
        } else if let Some(display) = &m.display {
            c.prepare_cached(
                "UPDATE group_members SET display = ? WHERE connection_id = ? AND group_pk = ? AND member_pk = ?",
            )?
            .execute((display, &ctx.connection_id, group_pk, *pk))?;
        }
    }
    for chunk in added.chunks(MEMBER_ROWS_PER_STATEMENT) {
        let data: Vec<Value> = chunk.iter().map(|(_, id)| json!({"member": id})).collect();
        insert_events(
            c,
            ctx,
            events::GROUP_MEMBER_ADDED,
            Some((ResourceKind::Group, group_id)),
            &data,
        )?;
    }
    Ok(added.into_iter().map(|(pk, _)| pk).collect())
}
