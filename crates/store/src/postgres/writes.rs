//! PostgreSQL writes in few round trips.
//!
//! A resource create is one statement: data-modifying CTEs write the row, its e-mail rows and its
//! event (the events lock taken in the same statement), without a transaction of its own (`BEGIN`
//! and `COMMIT` are round trips too), so the events lock is held only while the statement runs and
//! commits. A group's member changes are one statement in a short transaction (below). Each
//! statement checks in SQL what the transactional write checks in Rust (that the organization has
//! no roles to recompute, `If-Match`, that the group's document is the one the mutation read, that
//! every member added exists); when a check fails it writes nothing and the write goes the
//! transactional way ([`PostgresStore::create_resource_once`], [`PostgresStore::update_write_once`]),
//! which gives the exact answer for every case.
//!
//! A group member PATCH needs the membership as it is once the group is locked, and a statement
//! reads the snapshot it started with, which can be older than a lock it then waits for. So a
//! transaction takes the group's lock with a statement of its own, then runs the member statement
//! (whose snapshot is then taken holding the lock; it checks that all the same, by the version,
//! which every membership change bumps under that lock) and commits: the lock is held for the
//! lock's answer, one statement and the `COMMIT`, where the transactional write held it for about
//! eight round trips. (A first try without a transaction, `SKIP LOCKED`, committed in one round
//! trip when the group was free, but with sixteen clients on one group it cost every request a
//! statement more and lowered the throughput on two cores: 130 against 203 requests/s.)

use super::*;

/// What one run of the member statement did.
enum MembersRun {
    Done(Written),
    /// The group was changed between the statement's snapshot and its lock: nothing written
    /// (cannot happen when the lock was taken before the statement; checked all the same).
    Stale,
    /// Nothing written: the group is missing or a check failed; the transactional write decides.
    Fallback,
}

/// The final state of one member after the operations, from one initial state.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    present: bool,
    /// `Some(d)`: the row's display becomes `d` (for a member present before: when it is set).
    display: Option<Option<String>>,
}

/// A member PATCH as net effects per member, for both initial states.
#[derive(Debug, Default)]
struct MembersPlan {
    ids: Vec<String>,
    if_in: Vec<Outcome>,
    if_out: Vec<Outcome>,
    /// Members that some operation adds (they must exist, live, and not be the group).
    adds: Vec<String>,
    /// Candidate events in operation order: (member, whether it applies when the member was in).
    events: Vec<(String, bool, &'static str)>,
}

/// A member's outcome and its events (operation number, type), from one initial state.
type Simulated = (Outcome, Vec<(usize, &'static str)>);

/// The plan of `changes` when they are only adds and removes by id.
fn members_plan(changes: &[MemberChange]) -> Option<MembersPlan> {
    // Elementary operations in order: (member, Some(display) for an add, None for a remove).
    let mut ops: Vec<(&str, Option<Option<&str>>)> = Vec::new();
    for c in changes {
        match c {
            MemberChange::Add(ms) => ops.extend(ms.iter().map(|m| (m.value.as_str(), Some(m.display.as_deref())))),
            MemberChange::Remove(ids) => ops.extend(ids.iter().map(|id| (id.as_str(), None))),
            MemberChange::RemoveWhere(_) | MemberChange::ReplaceAll(_) => return None,
        }
    }
    let mut plan = MembersPlan::default();
    for (id, _) in &ops {
        if !plan.ids.iter().any(|i| i == id) {
            plan.ids.push(id.to_string());
        }
    }
    let mut per_member: Vec<[Simulated; 2]> = Vec::new();
    for id in &plan.ids {
        let sim = |initially: bool| {
            let mut present = initially;
            let mut display: Option<Option<String>> = None;
            let mut evs = Vec::new();
            for (n, (m, op)) in ops.iter().enumerate() {
                if m != id {
                    continue;
                }
                match op {
                    Some(d) if !present => {
                        present = true;
                        display = Some(d.map(str::to_string));
                        evs.push((n, events::GROUP_MEMBER_ADDED));
                    }
                    Some(Some(d)) => display = Some(Some(d.to_string())),
                    Some(None) => {}
                    None if present => {
                        present = false;
                        display = None;
                        evs.push((n, events::GROUP_MEMBER_REMOVED));
                    }
                    None => {}
                }
            }
            (Outcome { present, display }, evs)
        };
        if ops.iter().any(|(m, op)| m == id && op.is_some()) {
            plan.adds.push(id.clone());
        }
        per_member.push([sim(true), sim(false)]);
    }
    let mut events: Vec<(usize, String, bool, &'static str)> = Vec::new();
    for (id, [(in_out, in_evs), (out_out, out_evs)]) in plan.ids.iter().zip(per_member) {
        events.extend(in_evs.into_iter().map(|(n, k)| (n, id.clone(), true, k)));
        events.extend(out_evs.into_iter().map(|(n, k)| (n, id.clone(), false, k)));
        plan.if_in.push(in_out);
        plan.if_out.push(out_out);
    }
    events.sort_by_key(|e| (e.0, !e.2));
    plan.events = events.into_iter().map(|(_, id, when_in, k)| (id, when_in, k)).collect();
    Some(plan)
}

impl PostgresStore {
    /// Creates a resource in one statement with its e-mail rows and its event, when no role
    /// computation is needed (a user in an organization without roles, a group without members)
    /// and the connection is not in staging ([`crate::staging`]). Returns false when nothing was
    /// written (the organization has roles, or the connection is in staging).
    pub(super) async fn create_resource_one_statement(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        doc: &Value,
        now: i64,
    ) -> StoreResult<bool> {
        let fields = IndexFields::of(kind, doc);
        let search = search_doc(&self.registry, self.rt(kind), doc);
        let event = PendingEvent::new(
            ctx,
            events::created(kind),
            Some((kind, id)),
            json!({"attributes": doc}),
            now_us(),
        );
        let sql = format!(
            "WITH gate AS (SELECT ($15::bool OR (NOT EXISTS (SELECT 1 FROM roles WHERE org_id = $14)
                                                AND NOT EXISTS (SELECT 1 FROM workspaces WHERE org_id = $14)))
                                 AND NOT EXISTS (SELECT 1 FROM workspace_settings WHERE org_id = $14 AND auto_create)
                                 AND NOT EXISTS (SELECT 1 FROM scim_connections WHERE id = $16 AND staged_us IS NOT NULL)
                                 AS ok),
             r AS (INSERT INTO resources (connection_id, kind, id, external_id, user_name_ci, display_name_ci, active,
                       version, created_us, modified_us, doc, doc_ci)
                   SELECT $16, $17, $18, $19, $20, $21, $22, 1, $23, $23, $24, $25 FROM gate WHERE gate.ok RETURNING pk),
             em AS (INSERT INTO resource_emails (resource_pk, connection_id, value_ci)
                    SELECT r.pk, $16, v FROM r, UNNEST($26::text[]) v),
             lk AS ({}),
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT {} FROM lk, {} ORDER BY t.n)
             SELECT ok FROM gate",
            events_lock_cte(13, "EXISTS (SELECT 1 FROM r)"),
            events_select("t"),
            events_unnest(1, "t"),
        );
        let written: bool = bind_events(sqlx::query(AssertSqlSafe(sql)), std::slice::from_ref(&event))
            .bind(EVENTS_LOCK)
            .bind(&ctx.org_id)
            // A group without members grants no roles: no need to look.
            .bind(kind == ResourceKind::Group)
            .bind(&ctx.connection_id)
            .bind(kind.as_str())
            .bind(id)
            .bind(&fields.external_id)
            .bind(&fields.user_name_ci)
            .bind(&fields.display_name_ci)
            .bind(fields.active)
            .bind(now)
            .bind(Json(doc))
            .bind(Json(&search))
            .bind(&fields.emails_ci)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| uniqueness(e, kind, doc))?
            .get(0);
        if written {
            crate::metrics::events_written(&[(event.kind.to_string(), 1)]);
        }
        Ok(written)
    }

    /// Writes an update: a group's member changes in one statement when they are adds and removes
    /// by id and the document is unchanged (see the module documentation), else
    /// [`PostgresStore::update_write_once`].
    pub(super) async fn write_update(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        if_match: Option<i64>,
        computed: &Computed,
    ) -> StoreResult<Written> {
        if kind == ResourceKind::Group
            && !computed.doc_changed()
            && !computed.member_changes.is_empty()
            && let Some(plan) = members_plan(&computed.member_changes)
        {
            // In a transaction: wait for the lock with a statement of its own, so that the
            // member statement's snapshot is taken holding it.
            let mut tx = self.pool.begin().await?;
            let locked: Option<i64> = sqlx::query_scalar(
                "SELECT pk FROM resources WHERE connection_id = $1 AND id = $2 AND kind = 'Group'
                 AND deleted_us IS NULL FOR UPDATE",
            )
            .bind(&ctx.connection_id)
            .bind(&computed.current.id)
            .fetch_optional(&mut *tx)
            .await?;
            if locked.is_some()
                && let MembersRun::Done(w) = self.members_statement(&mut tx, ctx, if_match, computed, &plan).await?
            {
                tx.commit().await?;
                return Ok(w);
            }
            drop(tx);
        }
        self.update_write_once(ctx, kind, if_match, computed).await
    }

    /// Runs the member statement of `plan` once on `conn`, in a transaction holding the group's lock.
    async fn members_statement(
        &self,
        conn: &mut PgConnection,
        ctx: &WriteContext,
        if_match: Option<i64>,
        computed: &Computed,
        plan: &MembersPlan,
    ) -> StoreResult<MembersRun> {
        let group_id = computed.current.id.as_str();
        let now = now_us();
        let events: Vec<PendingEvent> = plan
            .events
            .iter()
            .map(|(member, _, kind)| {
                PendingEvent::new(
                    ctx,
                    kind,
                    Some((ResourceKind::Group, group_id)),
                    json!({"member": member}),
                    now,
                )
            })
            .collect();
        let mut before = computed.before().clone();
        if let Value::Object(m) = &mut before {
            m.remove("id");
        }
        let sql = format!(
            "WITH g AS (SELECT pk, version, created_us, modified_us, doc FROM resources
                        WHERE connection_id = $13 AND id = $14 AND kind = 'Group' AND deleted_us IS NULL
                        FOR UPDATE),
             mem AS (SELECT pk, id, deleted_us IS NULL AS live FROM resources
                     WHERE connection_id = $13 AND id = ANY($21::text[]) FOR SHARE),
             gate AS (SELECT g.pk,
                        g.version = (SELECT s.version FROM resources s WHERE s.pk = g.pk) AS fresh,
                        ($16::int8 IS NULL OR g.version = $16)
                        AND (g.version = $17 OR g.doc = $18::jsonb)
                        AND NOT EXISTS (SELECT 1 FROM UNNEST($27::text[]) a(id) WHERE NOT EXISTS
                              (SELECT 1 FROM mem WHERE mem.id = a.id AND mem.live AND mem.pk <> g.pk))
                        AND NOT EXISTS (SELECT 1 FROM roles WHERE org_id = $15)
                        AND NOT EXISTS (SELECT 1 FROM workspaces WHERE org_id = $15)
                        AND NOT EXISTS (SELECT 1 FROM scim_connections WHERE id = $13 AND staged_us IS NOT NULL) AS ok
                      FROM g),
             plan AS (SELECT mem.pk, p.id, p.in_present, p.in_set, p.in_display, p.out_present, p.out_display,
                        EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_pk = gate.pk AND gm.member_pk = mem.pk)
                          AS was_in
                      FROM gate, UNNEST($21::text[], $22::bool[], $23::bool[], $24::text[], $25::bool[], $26::text[])
                             AS p(id, in_present, in_set, in_display, out_present, out_display)
                      JOIN mem ON mem.id = p.id
                      WHERE gate.fresh AND gate.ok),
             del AS (DELETE FROM group_members gm USING plan p, gate
                     WHERE gm.group_pk = gate.pk AND gm.member_pk = p.pk AND p.was_in AND NOT p.in_present),
             ins AS (INSERT INTO group_members (group_pk, member_pk, display)
                     SELECT gate.pk, p.pk, p.out_display FROM plan p, gate WHERE NOT p.was_in AND p.out_present),
             upd AS (UPDATE group_members gm SET display = p.in_display FROM plan p, gate
                     WHERE gm.group_pk = gate.pk AND gm.member_pk = p.pk AND p.was_in AND p.in_present AND p.in_set),
             evs AS (SELECT t.* FROM {unnest}
                     JOIN UNNEST($28::text[], $29::bool[]) WITH ORDINALITY AS c(member, when_in, n) ON c.n = t.n
                     JOIN plan p ON p.id = c.member WHERE c.when_in = p.was_in),
             bump AS (UPDATE resources SET version = version + 1, modified_us = $19 FROM gate
                      WHERE resources.pk = gate.pk AND EXISTS (SELECT 1 FROM evs) RETURNING resources.version),
             lk AS ({lock}),
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT {select} FROM lk, evs ORDER BY evs.n RETURNING type)
             SELECT (SELECT fresh FROM gate), (SELECT ok FROM gate), (SELECT version FROM g),
                    (SELECT created_us FROM g), (SELECT modified_us FROM g), (SELECT version FROM bump),
                    (SELECT array_agg(type) FROM ev)",
            unnest = events_unnest(1, "t"),
            lock = events_lock_cte(20, "EXISTS (SELECT 1 FROM evs)"),
            select = events_select("evs"),
        );
        let display = |o: &Outcome| o.display.clone().flatten();
        let row = bind_events(sqlx::query(AssertSqlSafe(sql)), &events)
            .bind(&ctx.connection_id)
            .bind(group_id)
            .bind(&ctx.org_id)
            .bind(if_match)
            .bind(computed.current.version)
            .bind(Json(&before))
            .bind(now)
            .bind(EVENTS_LOCK)
            .bind(&plan.ids)
            .bind(plan.if_in.iter().map(|o| o.present).collect::<Vec<_>>())
            .bind(plan.if_in.iter().map(|o| o.display.is_some()).collect::<Vec<_>>())
            .bind(plan.if_in.iter().map(display).collect::<Vec<_>>())
            .bind(plan.if_out.iter().map(|o| o.present).collect::<Vec<_>>())
            .bind(plan.if_out.iter().map(display).collect::<Vec<_>>())
            .bind(&plan.adds)
            .bind(plan.events.iter().map(|e| e.0.clone()).collect::<Vec<_>>())
            .bind(plan.events.iter().map(|e| e.1).collect::<Vec<_>>())
            .fetch_one(&mut *conn)
            .await?;
        let fresh: Option<bool> = row.get(0);
        let ok: Option<bool> = row.get(1);
        let (Some(fresh), Some(version), Some(created_us), Some(modified_us)) = (
            fresh,
            row.get::<Option<i64>, _>(2),
            row.get::<Option<i64>, _>(3),
            row.get::<Option<i64>, _>(4),
        ) else {
            return Ok(MembersRun::Fallback);
        };
        if !fresh {
            return Ok(MembersRun::Stale);
        }
        if ok != Some(true) {
            return Ok(MembersRun::Fallback);
        }
        let bumped: Option<i64> = row.get(5);
        let types: Option<Vec<String>> = row.get(6);
        let mut written = Vec::new();
        for t in types.unwrap_or_default() {
            crate::metrics::note(&mut written, &t, 1);
        }
        // Counted now: outside a transaction the statement has committed; inside one, a failed
        // COMMIT is rare enough not to matter to a counter.
        crate::metrics::events_written(&written);
        Ok(MembersRun::Done(Written::Done(Some(match bumped {
            Some(version) => StoredResource {
                id: group_id.to_string(),
                kind: ResourceKind::Group,
                doc: computed.doc.clone().into(),
                version,
                created_us,
                modified_us: now,
                related: None,
            },
            None => StoredResource {
                version,
                created_us,
                modified_us,
                ..computed.current.clone()
            },
        }))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: &str, display: Option<&str>) -> MemberChange {
        MemberChange::Add(vec![MemberRef {
            value: id.into(),
            kind: None,
            display: display.map(String::from),
        }])
    }

    #[test]
    fn a_remove_then_add_plans_both_events_for_a_member_and_one_for_a_stranger() {
        let plan = members_plan(&[MemberChange::Remove(vec!["u".into()]), add("u", Some("U"))]).unwrap();
        assert_eq!(plan.ids, vec!["u"]);
        assert_eq!(plan.adds, vec!["u"]);
        assert_eq!(
            plan.if_in,
            vec![Outcome {
                present: true,
                display: Some(Some("U".into()))
            }]
        );
        assert_eq!(
            plan.if_out,
            vec![Outcome {
                present: true,
                display: Some(Some("U".into()))
            }]
        );
        assert_eq!(
            plan.events,
            vec![
                ("u".into(), true, events::GROUP_MEMBER_REMOVED),
                ("u".into(), true, events::GROUP_MEMBER_ADDED),
                ("u".into(), false, events::GROUP_MEMBER_ADDED),
            ]
        );
    }

    #[test]
    fn adding_a_member_again_only_sets_its_display_and_filters_are_not_planned() {
        let plan = members_plan(&[add("a", None), add("b", None), add("a", Some("A"))]).unwrap();
        assert_eq!(plan.ids, vec!["a", "b"]);
        assert_eq!(
            plan.if_in[0],
            Outcome {
                present: true,
                display: Some(Some("A".into()))
            }
        );
        assert_eq!(
            plan.if_in[1],
            Outcome {
                present: true,
                display: None
            }
        );
        assert_eq!(
            plan.events,
            vec![
                ("a".into(), false, events::GROUP_MEMBER_ADDED),
                ("b".into(), false, events::GROUP_MEMBER_ADDED),
            ]
        );
        assert!(members_plan(&[MemberChange::ReplaceAll(vec![])]).is_none());
    }
}
