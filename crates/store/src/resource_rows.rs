//! The transactional writes of users and groups, written once for both databases over
//! [`GrantDb`]: a create with its e-mail index rows, first members, workspace and roles; an update
//! (what [`crate::update`] computed) with its membership rows; a delete. Every statement of a write
//! is the caller's transaction's: on SQLite the writer's handle, run synchronously inside the group
//! commit ([`crate::sqlite`]); on PostgreSQL the write transaction, where a row written is locked
//! first (`FOR UPDATE`, the members added `FOR SHARE`). PostgreSQL's single creates and member
//! PATCHes take a shorter way when they can ([`crate::postgres`]'s write queues) and come here
//! when they cannot.

use crate::backend::{Backend, Tx};
use crate::grant_rows::{Arg, GrantDb, doc_text, elements, first, in_list, protected_match, recompute_grants};
use crate::index::{IndexFields, search_doc};
use crate::model::{ConnectionPolicy, OnDelete, ResourceKind, StoredResource, WriteContext};
use crate::roles::RoleScope;
use crate::sql::{Bind, Dialect, SqlBuilder, compile_member_filter};
use crate::sqlite::now_us;
use crate::update::{Computed, Written, precondition_failed};
use crate::{StoreError, StoreResult, events, workspaces};
use rollcall_scim::ScimError;
use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_scim::schema::{ResourceType, SchemaRegistry};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// How a write that may touch a protected user ended: done, or refused before anything was changed
/// (the caller rolls back and records the refusal in a transaction of its own).
pub(crate) enum Guarded<T> {
    Done(T),
    Protected(String),
}

impl<T> Guarded<T> {
    /// What the write answers: its result, or the refusal to `action` (`deactivate`, `delete`) a
    /// protected user, recorded as an event in a transaction of its own (the write's was rolled back).
    pub(crate) async fn answer<B: Backend>(self, b: &B, ctx: &WriteContext, id: &str, action: &str) -> StoreResult<T> {
        let email = match self {
            Guarded::Done(t) => return Ok(t),
            Guarded::Protected(email) => email,
        };
        let mut tx = b.begin().await?;
        let data = json!({"action": action, "protected": email});
        tx.record(
            ctx,
            events::USER_PROTECTION_REFUSED,
            Some((ResourceKind::User, id)),
            data,
        )
        .await?;
        tx.commit().await?;
        Err(StoreError::Scim(crate::roles::protected_error(&email, action)))
    }
}

/// The document as stored: without `id` and `meta`, keys in canonical order.
pub(crate) fn store_order(doc: &mut Value) {
    if let Value::Object(m) = doc {
        m.remove("id");
        m.remove("meta");
        *m = rollcall_scim::resource::canonical_key_order(std::mem::take(m));
    }
}

/// Whether a statement failed on a unique index.
pub(crate) fn is_unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Database(e) => e.as_database_error().is_some_and(|d| d.is_unique_violation()),
        StoreError::Sqlite(e) => e.sqlite_error().is_some_and(|f| {
            matches!(
                f.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            )
        }),
        _ => false,
    }
}

/// `e`, or the SCIM 409 `uniqueness` when it is a unique-index violation on the resources of
/// `docs`: naming the value taken when there is one document.
pub(crate) fn uniqueness<'a>(
    e: StoreError,
    kind: ResourceKind,
    docs: impl IntoIterator<Item = &'a Value>,
) -> StoreError {
    if !is_unique_violation(&e) {
        return e;
    }
    let value = |doc: &Value, attribute: &str| {
        doc.get(attribute)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut docs = docs.into_iter();
    let detail = match (docs.next(), docs.next(), kind) {
        (Some(doc), None, ResourceKind::User) => {
            format!(
                "userName \"{}\" is already taken in this connection",
                value(doc, "userName")
            )
        }
        (Some(doc), None, ResourceKind::Group) => {
            format!(
                "a group named \"{}\" already exists in this connection",
                value(doc, "displayName")
            )
        }
        (_, _, ResourceKind::User) => "one of the userNames is already taken in this connection".to_string(),
        (_, _, ResourceKind::Group) => "one of the group displayNames is already taken in this connection".to_string(),
    };
    StoreError::Scim(ScimError::uniqueness(detail))
}

fn unknown_member(id: &str) -> StoreError {
    StoreError::Scim(ScimError::invalid_value(format!(
        "member \"{id}\" is not a user or group of this SCIM connection"
    )))
}

/// Parameter `$n` as a resource's `doc` (bound as its text). On PostgreSQL the document is `json`,
/// kept as written (migration 0019); its search form `doc_ci` is `jsonb` ([`search_param`]).
fn doc_param(d: Dialect, n: u8) -> String {
    match d {
        Dialect::Sqlite => format!("${n}"),
        Dialect::Postgres => format!("${n}::json"),
    }
}

/// Parameter `$n` as a resource's `doc_ci`, which filters and sorts read (bound as its text).
fn search_param(d: Dialect, n: u8) -> String {
    match d {
        Dialect::Sqlite => format!("${n}"),
        Dialect::Postgres => format!("${n}::jsonb"),
    }
}

/// `clause` (a row lock) on PostgreSQL; SQLite's writer is alone.
fn locking(d: Dialect, clause: &str) -> &str {
    match d {
        Dialect::Sqlite => "",
        Dialect::Postgres => clause,
    }
}

fn resource_type(registry: &SchemaRegistry, kind: ResourceKind) -> &ResourceType {
    registry
        .resource_type(kind.as_str())
        .expect("standard resource types are registered")
}

/// Writes a resource's e-mail index rows; `replace` first removes the old ones (a new resource
/// has none, so a create skips that statement).
async fn write_emails<D: GrantDb>(
    db: &mut D,
    pk: i64,
    connection_id: &str,
    emails: &[String],
    replace: bool,
) -> StoreResult<()> {
    if replace {
        db.run("DELETE FROM resource_emails WHERE resource_pk = $1", &[Arg::Int(pk)])
            .await?;
    }
    if emails.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO resource_emails (resource_pk, connection_id, value_ci) SELECT $1, $2, e.v FROM {}",
        elements(D::DIALECT, 3, "text")
    );
    db.run(&sql, &[Arg::Int(pk), Arg::Text(connection_id), Arg::Texts(emails)])
        .await
}

/// Creates a user or group `id` from `doc` (as stored: [`store_order`]) with its first members,
/// records its events, and computes the roles and workspaces it grants.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create<D: GrantDb>(
    db: &mut D,
    registry: &SchemaRegistry,
    ctx: &WriteContext,
    kind: ResourceKind,
    id: &str,
    doc: &Value,
    members: &[MemberRef],
    now: i64,
) -> StoreResult<()> {
    let d = D::DIALECT;
    let fields = IndexFields::of(kind, doc);
    let (doc_json, search) = (
        doc.to_string(),
        search_doc(registry, resource_type(registry, kind), doc).to_string(),
    );
    let sql = format!(
        "INSERT INTO resources (connection_id, kind, id, external_id, user_name_ci, display_name_ci, active, version,
           created_us, modified_us, doc, doc_ci)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, {}, {}) RETURNING pk",
        doc_param(d, 9),
        search_param(d, 10)
    );
    let args = [
        Arg::Text(&ctx.connection_id),
        Arg::Text(kind.as_str()),
        Arg::Text(id),
        Arg::OptText(fields.external_id.as_deref()),
        Arg::OptText(fields.user_name_ci.as_deref()),
        Arg::OptText(fields.display_name_ci.as_deref()),
        Arg::OptBool(fields.active),
        Arg::Int(now),
        Arg::Text(&doc_json),
        Arg::Text(&search),
    ];
    let row = first(db, &sql, &args).await.map_err(|e| uniqueness(e, kind, [doc]))?;
    let pk = row.map_or(0, |r| r[0].int());
    write_emails(db, pk, &ctx.connection_id, &fields.emails_ci, false).await?;
    let data = json!({"attributes": doc});
    db.grant_event(ctx, events::created(kind), Some((kind, id)), data)
        .await?;
    let affected = match kind {
        ResourceKind::User => vec![pk],
        ResourceKind::Group if !members.is_empty() => add_members(db, ctx, pk, id, members).await?,
        ResourceKind::Group => Vec::new(),
    };
    if kind == ResourceKind::Group {
        workspaces::group_created(db, ctx, id, doc).await?;
    }
    recompute_grants(db, ctx, RoleScope::Users(affected)).await?;
    Ok(())
}

/// Writes what a mutation computed ([`crate::update`]) to a user or group: checks `if_match` and
/// that the stored document is still the one the mutation read (`Changed` when it is not), then
/// writes the document, its membership rows, the events, and the effective roles of whoever it
/// affects. `Done(None)` when the resource is gone.
pub(crate) async fn update<D: GrantDb>(
    db: &mut D,
    registry: &SchemaRegistry,
    ctx: &WriteContext,
    kind: ResourceKind,
    if_match: Option<i64>,
    computed: &Computed,
) -> StoreResult<Guarded<Written>> {
    let (d, connection_id) = (D::DIALECT, ctx.connection_id.as_str());
    let id = computed.current.id.as_str();
    let sql = format!(
        "SELECT pk, version, created_us, modified_us FROM resources
         WHERE connection_id = $1 AND id = $2 AND kind = $3 AND deleted_us IS NULL{}",
        locking(d, " FOR UPDATE")
    );
    let args = [Arg::Text(connection_id), Arg::Text(id), Arg::Text(kind.as_str())];
    let Some(row) = first(db, &sql, &args).await? else {
        return Ok(Guarded::Done(Written::Done(None)));
    };
    let (pk, current_version, created_us, modified_us) = (row[0].int(), row[1].int(), row[2].int(), row[3].int());
    if let Some(v) = if_match
        && v != current_version
    {
        return Err(precondition_failed(current_version, v));
    }
    let before = computed.before();
    if current_version != computed.current.version {
        // Written since it was read: still good if the document is the same (a membership change
        // bumps a group's version only).
        let text = match computed.current.doc.stored_text() {
            Some(text) => text.to_string(),
            None => {
                let mut stored = before.clone();
                store_order(&mut stored);
                stored.to_string()
            }
        };
        // Compared as values on PostgreSQL: a document stored before migration 0019 keeps
        // `jsonb`'s text, which the store read compacted.
        let same_doc = match d {
            Dialect::Sqlite => "doc = $1",
            Dialect::Postgres => "doc::jsonb = $1::jsonb",
        };
        let sql = format!("SELECT {same_doc} FROM resources WHERE connection_id = $2 AND pk = $3");
        let same = first(db, &sql, &[Arg::Text(&text), Arg::Text(connection_id), Arg::Int(pk)]).await?;
        if same.is_none_or(|r| r[0].int() == 0) {
            return Ok(Guarded::Done(Written::Changed));
        }
    }
    let doc = &computed.doc;
    let doc_changed = computed.doc_changed();
    if kind == ResourceKind::User
        && doc.get("active").and_then(Value::as_bool) == Some(false)
        && before.get("active").and_then(Value::as_bool) != Some(false)
        && let Some(email) = protected_match(db, &ctx.org_id, pk, before).await?
    {
        return Ok(Guarded::Protected(email));
    }
    // The events this write records are the guard's to look at.
    let mark = db.events_mark().await?;
    let touched = if kind == ResourceKind::Group && !computed.member_changes.is_empty() {
        apply_member_changes(db, ctx, registry, pk, id, &computed.member_changes).await?
    } else {
        Vec::new()
    };
    let members_changed = !touched.is_empty();
    let role_scope = RoleScope::after_update(kind, pk, before, doc, touched);
    if !doc_changed && !members_changed {
        return Ok(Guarded::Done(Written::Done(Some(StoredResource {
            version: current_version,
            created_us,
            modified_us,
            ..computed.current.clone()
        }))));
    }
    let now = now_us();
    let version = current_version + 1;
    if doc_changed {
        let mut stored = doc.clone();
        store_order(&mut stored);
        let fields = IndexFields::of(kind, &stored);
        let search = search_doc(registry, resource_type(registry, kind), &stored).to_string();
        let stored_json = stored.to_string();
        let sql = format!(
            "UPDATE resources SET external_id = $1, user_name_ci = $2, display_name_ci = $3, active = $4, version = $5,
               modified_us = $6, doc = {}, doc_ci = {} WHERE connection_id = $9 AND pk = $10",
            doc_param(d, 7),
            search_param(d, 8)
        );
        let args = [
            Arg::OptText(fields.external_id.as_deref()),
            Arg::OptText(fields.user_name_ci.as_deref()),
            Arg::OptText(fields.display_name_ci.as_deref()),
            Arg::OptBool(fields.active),
            Arg::Int(version),
            Arg::Int(now),
            Arg::Text(&stored_json),
            Arg::Text(&search),
            Arg::Text(connection_id),
            Arg::Int(pk),
        ];
        db.run(&sql, &args).await.map_err(|e| uniqueness(e, kind, [&stored]))?;
        write_emails(db, pk, connection_id, &fields.emails_ci, true).await?;
        let ev = events::updated(kind, before, doc);
        db.grant_event(ctx, ev, Some((kind, id)), events::diff(before, doc))
            .await?;
        if kind == ResourceKind::Group {
            workspaces::group_renamed(db, ctx, id, before, doc).await?;
        }
    } else {
        let sql = "UPDATE resources SET version = $1, modified_us = $2 WHERE connection_id = $3 AND pk = $4";
        let args = [Arg::Int(version), Arg::Int(now), Arg::Text(connection_id), Arg::Int(pk)];
        db.run(sql, &args).await?;
    }
    // After the row is written: the computation reads the stored status, app roles and names.
    if let Some(scope) = role_scope {
        recompute_grants(db, ctx, scope).await?;
    }
    db.guard(ctx, mark).await?;
    Ok(Guarded::Done(Written::Done(Some(StoredResource {
        id: id.to_string(),
        kind,
        doc: doc.clone().into(),
        version,
        created_us,
        modified_us: now,
        related: None,
    }))))
}

/// Deletes a user or group: marks it deleted (or purges it, as the connection's policy says),
/// removes its membership rows with an event each, and recomputes the roles it affected. `false`
/// when there is no such resource.
pub(crate) async fn delete<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    kind: ResourceKind,
    id: &str,
    if_match: Option<i64>,
) -> StoreResult<Guarded<bool>> {
    let (d, connection_id) = (D::DIALECT, ctx.connection_id.as_str());
    let sql = format!(
        "SELECT r.pk, r.version, {} FROM resources r
         WHERE r.connection_id = $1 AND r.id = $2 AND r.kind = $3 AND r.deleted_us IS NULL{}",
        doc_text(d, "r"),
        locking(d, " FOR UPDATE")
    );
    let args = [Arg::Text(connection_id), Arg::Text(id), Arg::Text(kind.as_str())];
    let Some(mut row) = first(db, &sql, &args).await? else {
        return Ok(Guarded::Done(false));
    };
    let (pk, version) = (row[0].int(), row[1].int());
    if let Some(v) = if_match
        && v != version
    {
        return Err(precondition_failed(version, v));
    }
    let on_connection = [Arg::Text(connection_id), Arg::Int(pk)];
    let mut purge = false;
    if kind == ResourceKind::User {
        let doc: Value = serde_json::from_str(&row[2].text()).unwrap_or(Value::Null);
        if let Some(email) = protected_match(db, &ctx.org_id, pk, &doc).await? {
            return Ok(Guarded::Protected(email));
        }
        let policy = first(
            db,
            "SELECT policy FROM scim_connections WHERE id = $1",
            &on_connection[..1],
        )
        .await?;
        let policy = policy.and_then(|mut r| r[0].opt_text());
        purge = ConnectionPolicy::from_stored(policy.as_deref()).on_delete == OnDelete::Purge;
    }
    let mark = db.events_mark().await?;
    let now = now_us();
    // Membership goes with the resource, each removal recorded (so the event log alone tells who
    // is in each group); groups the member was in change version; a deleted group's members may
    // lose roles.
    let groups = db
        .rows(
            "SELECT g.id FROM group_members m JOIN resources g ON g.pk = m.group_pk
             WHERE m.connection_id = $1 AND m.member_pk = $2 AND g.deleted_us IS NULL ORDER BY g.pk",
            &on_connection,
        )
        .await?;
    for mut g in groups {
        let (group_id, data) = (g[0].text(), json!({"member": id, "reason": "member_deleted"}));
        let group = Some((ResourceKind::Group, group_id.as_str()));
        db.grant_event(ctx, events::GROUP_MEMBER_REMOVED, group, data).await?;
    }
    db.run(
        "UPDATE resources SET version = version + 1, modified_us = $3
         WHERE connection_id = $1 AND pk IN (SELECT group_pk FROM group_members WHERE connection_id = $1 AND member_pk = $2)",
        &[on_connection[0], on_connection[1], Arg::Int(now)],
    )
    .await?;
    let members: Vec<i64> = if kind == ResourceKind::Group {
        let sql = "SELECT member_pk FROM group_members WHERE connection_id = $1 AND group_pk = $2 ORDER BY member_pk";
        db.rows(sql, &on_connection).await?.iter().map(|r| r[0].int()).collect()
    } else {
        Vec::new()
    };
    if purge {
        // Emails, membership and effective roles go with the row (ON DELETE CASCADE).
        db.run(
            "DELETE FROM resources WHERE connection_id = $1 AND pk = $2",
            &on_connection,
        )
        .await?;
    } else {
        // The e-mail rows stay, so that the directory and the access check find a deleted user by
        // e-mail as they do by userName or externalId (SCIM reads skip deleted rows).
        db.run(
            "UPDATE resources SET deleted_us = $3, modified_us = $3, version = version + 1
             WHERE connection_id = $1 AND pk = $2",
            &[on_connection[0], on_connection[1], Arg::Int(now)],
        )
        .await?;
        // Two statements, each by its own index (SQLite would serve an OR of the two by the
        // connection alone).
        for side in ["member_pk", "group_pk"] {
            let sql = format!("DELETE FROM group_members WHERE connection_id = $1 AND {side} = $2");
            db.run(&sql, &on_connection).await?;
        }
    }
    let data = if purge { json!({"purged": true}) } else { json!({}) };
    db.grant_event(ctx, events::deleted(kind), Some((kind, id)), data)
        .await?;
    let affected = match kind {
        ResourceKind::User if !purge => vec![pk],
        ResourceKind::User => Vec::new(),
        ResourceKind::Group => members,
    };
    recompute_grants(db, ctx, RoleScope::Users(affected)).await?;
    if kind == ResourceKind::Group {
        // After its members lost it (with their events).
        workspaces::group_deleted(db, ctx, id).await?;
    }
    db.guard(ctx, mark).await?;
    Ok(Guarded::Done(true))
}

/// Applies membership changes to a group, recording one event per member added or removed.
/// Returns the row keys of the members added or removed.
async fn apply_member_changes<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    registry: &SchemaRegistry,
    group_pk: i64,
    group_id: &str,
    changes: &[MemberChange],
) -> StoreResult<Vec<i64>> {
    let connection_id = ctx.connection_id.as_str();
    let mut touched = Vec::new();
    for change in changes {
        // The members to remove (row key and id), in order, and those to add after.
        let (remove, add): (Vec<(i64, String)>, &[MemberRef]) = match change {
            MemberChange::Add(members) => (Vec::new(), members),
            MemberChange::Remove(ids) => {
                // One by one, each by the member index.
                let sql = "DELETE FROM group_members WHERE connection_id = $1 AND group_pk = $2
                             AND member_pk = (SELECT pk FROM resources WHERE connection_id = $1 AND id = $3)
                           RETURNING member_pk";
                let mut removed: Vec<(i64, String)> = Vec::new();
                for id in ids {
                    let args = [Arg::Text(connection_id), Arg::Int(group_pk), Arg::Text(id)];
                    if let Some(r) = first(db, sql, &args).await? {
                        removed.push((r[0].int(), id.clone()));
                    }
                }
                member_events(db, ctx, events::GROUP_MEMBER_REMOVED, group_id, &removed).await?;
                touched.extend(removed.into_iter().map(|(pk, _)| pk));
                continue;
            }
            MemberChange::RemoveWhere(filter) => {
                let mut b = SqlBuilder::new(D::DIALECT);
                b.push("SELECT u.pk, u.id FROM group_members m JOIN resources u ON u.pk = m.member_pk WHERE m.connection_id = ");
                b.bind(Bind::Text(connection_id.to_string()));
                b.push(" AND m.group_pk = ");
                b.bind(Bind::Int(group_pk));
                b.push(" AND ");
                compile_member_filter(&mut b, registry, resource_type(registry, ResourceKind::Group), filter)?;
                b.push(" ORDER BY m.member_pk");
                let args: Vec<Arg<'_>> = b.binds.iter().map(arg_of).collect();
                let rows = db.rows(&b.sql, &args).await?;
                (rows.into_iter().map(|mut r| (r[0].int(), r[1].text())).collect(), &[])
            }
            MemberChange::ReplaceAll(members) => {
                let sql = "SELECT u.pk, u.id FROM group_members m JOIN resources u ON u.pk = m.member_pk
                           WHERE m.connection_id = $1 AND m.group_pk = $2 ORDER BY m.member_pk";
                let current = db.rows(sql, &[Arg::Text(connection_id), Arg::Int(group_pk)]).await?;
                let wanted: HashSet<&str> = members.iter().map(|m| m.value.as_str()).collect();
                let remove = current
                    .into_iter()
                    .map(|mut r| (r[0].int(), r[1].text()))
                    .filter(|(_, id)| !wanted.contains(id.as_str()))
                    .collect();
                (remove, members)
            }
        };
        if !remove.is_empty() {
            let pks: Vec<i64> = remove.iter().map(|(pk, _)| *pk).collect();
            let sql = format!(
                "DELETE FROM group_members WHERE connection_id = $1 AND group_pk = $2 AND {}",
                in_list(D::DIALECT, "member_pk", 3, "bigint")
            );
            db.run(&sql, &[Arg::Text(connection_id), Arg::Int(group_pk), Arg::Ints(&pks)])
                .await?;
            touched.extend(pks);
            member_events(db, ctx, events::GROUP_MEMBER_REMOVED, group_id, &remove).await?;
        }
        if !add.is_empty() {
            touched.extend(add_members(db, ctx, group_pk, group_id, add).await?);
        }
    }
    Ok(touched)
}

fn arg_of(b: &Bind) -> Arg<'_> {
    match b {
        Bind::Text(s) => Arg::Text(s),
        Bind::Int(i) => Arg::Int(*i),
        Bind::Real(f) => Arg::Real(*f),
        Bind::Bool(v) => Arg::OptBool(Some(*v)),
    }
}

/// Adds `members` to the group in a few statements whatever their number: one lookup of their row
/// keys, one insert of the membership rows and one of their `group.member_added` events. A member
/// that is already in the group is left as it is, but keeps the `display` the client sent last.
/// Returns the row keys of the members added, in order.
async fn add_members<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    group_pk: i64,
    group_id: &str,
    members: &[MemberRef],
) -> StoreResult<Vec<i64>> {
    let (d, connection_id) = (D::DIALECT, ctx.connection_id.as_str());
    let ids: Vec<String> = members.iter().map(|m| m.value.clone()).collect();
    // The list first, each member then found by its index (`CROSS JOIN` fixes that order on SQLite).
    let sql = format!(
        "SELECT r.id, r.pk FROM {} CROSS JOIN resources r WHERE r.connection_id = $1 AND r.id = e.v
           AND r.deleted_us IS NULL{}",
        elements(d, 2, "text"),
        locking(d, " FOR SHARE OF r")
    );
    let found = db.rows(&sql, &[Arg::Text(connection_id), Arg::Texts(&ids)]).await?;
    let pks: HashMap<String, i64> = found.into_iter().map(|mut r| (r[0].text(), r[1].int())).collect();
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
    let member_pks: Vec<i64> = rows.iter().map(|(pk, _)| *pk).collect();
    let displays: Vec<Option<String>> = rows.iter().map(|(_, m)| m.display.clone()).collect();
    let pairs = match d {
        Dialect::Sqlite => {
            "(SELECT p.value AS pk, s.value AS display FROM json_each($3) p JOIN json_each($4) s ON s.key = p.key) AS e"
        }
        Dialect::Postgres => "UNNEST($3::int8[], $4::text[]) AS e(pk, display)",
    };
    let sql = format!(
        "INSERT INTO group_members (connection_id, group_pk, member_pk, display) SELECT $1, $2, e.pk, e.display FROM {pairs}
         WHERE true ON CONFLICT DO NOTHING RETURNING member_pk"
    );
    let args = [
        Arg::Text(connection_id),
        Arg::Int(group_pk),
        Arg::Ints(&member_pks),
        Arg::OptTexts(&displays),
    ];
    let inserted: HashSet<i64> = db.rows(&sql, &args).await?.iter().map(|r| r[0].int()).collect();
    // In request order: the first occurrence of each inserted member is an addition; any other
    // occurrence with a display (already a member, or named twice) updates the display.
    let mut added = Vec::new();
    let mut seen = HashSet::new();
    for (pk, m) in &rows {
        if seen.insert(*pk) && inserted.contains(pk) {
            added.push((*pk, m.value.as_str()));
        } else if let Some(display) = &m.display {
            let sql =
                "UPDATE group_members SET display = $1 WHERE connection_id = $2 AND group_pk = $3 AND member_pk = $4";
            let args = [
                Arg::Text(display),
                Arg::Text(connection_id),
                Arg::Int(group_pk),
                Arg::Int(*pk),
            ];
            db.run(sql, &args).await?;
        }
    }
    member_events(db, ctx, events::GROUP_MEMBER_ADDED, group_id, &added).await?;
    Ok(added.into_iter().map(|(pk, _)| pk).collect())
}

/// Records one `kind` event of the group per member (row key and id).
async fn member_events<D: GrantDb>(
    db: &mut D,
    ctx: &WriteContext,
    kind: &'static str,
    group_id: &str,
    members: &[(i64, impl AsRef<str>)],
) -> StoreResult<()> {
    let data = members.iter().map(|(_, id)| json!({"member": id.as_ref()})).collect();
    db.record_events(ctx, kind, Some((ResourceKind::Group, group_id)), data)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_violation() -> StoreError {
        let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE);
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, None))
    }

    fn detail(e: StoreError) -> String {
        match e {
            StoreError::Scim(e) => e.to_string(),
            other => panic!("not a SCIM error: {other}"),
        }
    }

    #[test]
    fn a_taken_name_answers_409_naming_it_and_other_errors_pass() {
        let user = json!({"userName": "bjensen"});
        let group = json!({"displayName": "Admins"});
        let one_user = detail(uniqueness(unique_violation(), ResourceKind::User, [&user]));
        assert!(one_user.contains("userName \"bjensen\" is already taken"), "{one_user}");
        let one_group = detail(uniqueness(unique_violation(), ResourceKind::Group, [&group]));
        assert!(
            one_group.contains("a group named \"Admins\" already exists"),
            "{one_group}"
        );
        let two = detail(uniqueness(unique_violation(), ResourceKind::User, [&user, &user]));
        assert!(two.contains("one of the userNames is already taken"), "{two}");
        let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
        let other = uniqueness(
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(busy, None)),
            ResourceKind::User,
            [&user],
        );
        assert!(matches!(other, StoreError::Sqlite(_)));
    }
}
