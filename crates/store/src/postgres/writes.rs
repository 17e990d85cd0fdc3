//! PostgreSQL writes in few round trips.
//!
//! A resource create (or all the creates of a `/Bulk` request) is one statement: data-modifying CTEs write the row, its e-mail rows and its
//! event (the events lock taken in the same statement), without a transaction of its own (`BEGIN`
//! and `COMMIT` are round trips too), so the events lock is held only while the statement runs and
//! commits. A group's member changes are one statement in a short transaction (below). Each
//! statement checks in SQL what the transactional write checks in Rust (that the organization has
//! no roles to recompute, `If-Match`, that the group's document is the one the mutation read, that
//! every member added exists); when a check fails it writes nothing and the write goes the
//! transactional way ([`crate::resource_rows`], as on SQLite),
//! which gives the exact answer for every case.
//!
//! Single creates of one connection that arrive while its create statement runs wait and are
//! written by the next statement together ([`PostgresStore::create_queued`]), each with its own
//! event and its own request's context; when that statement fails (one of them conflicts, say),
//! nothing was written and each runs again on its own, which gives its own answer. A statement,
//! its commit and its flush of the log then serve many creates: sixteen clients creating users in
//! one connection wrote 2,930-3,485 users/s (0.84-0.97 × the bare server's inserts, p50 4.2-5.2
//! ms) where a statement each wrote 1,729-1,803 (0.50-0.52, p50 8.5-8.7 ms).
//!
//! A group member PATCH takes no lock on the group until its last step. Adds and removes by id
//! have a final state per member that does not depend on the state before (the last operation on
//! a member decides: present after an add, absent after a remove), so the statement writes that
//! state directly (an upsert for a present member, a delete for an absent one) and learns from
//! what the writes return whether each member was in the group (the upsert inserted or found the
//! row; the delete found it or not). Those answers are taken on the latest committed rows (an
//! upsert waits for a concurrent insert of the same row; a delete re-reads a row changed under
//! it), so they do not depend on the statement's snapshot, and the events are the planned events
//! of the state each member was actually in. Only then does the statement bump the group's
//! version (the one row lock on the group, held for the rest of the statement and its commit,
//! taken after the member rows, so two such statements cannot wait for each other) and take the
//! events lock. The group is read `FOR KEY SHARE`, which does not wait for other member
//! statements but does wait for a delete of the group (which locks it `FOR UPDATE`). One round
//! trip, no transaction of its own. A PATCH with `If-Match`, other operations or a changed
//! document goes the transactional way.
//!
//! The PATCHes of one group that arrive while its statement runs wait and are then written by the
//! next statement together ([`PostgresStore::queue_members`]): their operations in the order they
//! arrived, each event with its own request's context, the version raised once per PATCH that
//! changed the group. A group's row lock is then taken once per statement, not once per PATCH:
//! sixteen clients on one group wrote 2,400 PATCHes/s, p99 13 ms, where one statement each queued
//! on the lock (about 500/s, p99 60 ms). (Before: the group locked by a statement of its own in a
//! transaction, then the member statement and the `COMMIT`, the lock held for three round trips:
//! sixteen clients on one group queued on it, 360 requests/s, p99 206 ms.)

use super::lane::Lane;
use super::notify::Announcer;
use super::statistics::Statistics;
use super::*;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use tokio::sync::oneshot;

/// What one run of the member statement did.
enum MembersRun {
    Done(Written),
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
    /// For each of `ids`: whether some operation adds it (it must exist, live, and not be the group).
    adds: Vec<bool>,
    /// Candidate events in operation order: (member, whether it applies when the member was in,
    /// type, the PATCH it comes from).
    events: Vec<(String, bool, &'static str, usize)>,
}

/// A member's outcome and its events (operation number, type), from one initial state.
type Simulated = (Outcome, Vec<(usize, &'static str)>);

/// The plan of `changes` (each with the PATCH it comes from, in order) when they are only adds
/// and removes by id.
fn members_plan<'a>(changes: impl IntoIterator<Item = (usize, &'a MemberChange)>) -> Option<MembersPlan> {
    // Elementary operations in order: (member, Some(display) for an add, None for a remove).
    let mut ops: Vec<(&str, Option<Option<&str>>)> = Vec::new();
    // The PATCH of each operation.
    let mut job_of: Vec<usize> = Vec::new();
    for (job, c) in changes {
        let before = ops.len();
        match c {
            MemberChange::Add(ms) => ops.extend(ms.iter().map(|m| (m.value.as_str(), Some(m.display.as_deref())))),
            MemberChange::Remove(ids) => ops.extend(ids.iter().map(|id| (id.as_str(), None))),
            MemberChange::RemoveWhere(_) | MemberChange::ReplaceAll(_) => return None,
        }
        job_of.resize(job_of.len() + ops.len() - before, job);
    }
    let mut plan = MembersPlan::default();
    // Each member's operations (their places in `ops`), members in order of first appearance.
    let mut ops_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for (n, (id, _)) in ops.iter().enumerate() {
        match ops_of.entry(id) {
            Entry::Occupied(mut e) => e.get_mut().push(n),
            Entry::Vacant(e) => {
                plan.ids.push(id.to_string());
                e.insert(vec![n]);
            }
        }
    }
    let mut per_member: Vec<[Simulated; 2]> = Vec::new();
    for id in &plan.ids {
        let mine = &ops_of[id.as_str()];
        let sim = |initially: bool| {
            let mut present = initially;
            let mut display: Option<Option<String>> = None;
            let mut evs = Vec::new();
            for &n in mine {
                match ops[n].1 {
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
        plan.adds.push(mine.iter().any(|&n| ops[n].1.is_some()));
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
    plan.events = events
        .into_iter()
        .map(|(n, id, when_in, k)| (id, when_in, k, job_of[n]))
        .collect();
    Some(plan)
}

/// A resource for the create statement: its row's columns and its event, computed by the
/// request that creates it.
pub(crate) struct CreateItem {
    id: String,
    doc: Value,
    fields: IndexFields,
    search: Value,
    /// `created_us` and `modified_us`.
    at: i64,
    event: PendingEvent,
}

/// What the create statement answers a queued create ([`PostgresStore::create_queued`]).
enum CreateRun {
    /// Written (`true`), or nothing written because a role computation or staging needs the
    /// transactional way (`false`).
    Done(bool),
    /// The statement written with others failed (one of them conflicts, say); nothing was
    /// written: the create runs again on its own, which gives its own answer.
    Alone,
}

/// The most creates of one connection written by one statement.
const MAX_CREATES: usize = 64;

/// Tasks writing one connection's queued creates at a time. One: with sixteen clients creating
/// users in one connection on two cores, one writer served 0.97 × the bare server's inserts and
/// four writers (fewer creates to a statement) 0.60-0.71 (`rollcall-bench --workloads create`).
/// An identity provider pushes a connection's changes a few requests at a time, far below what
/// one writer serves; other connections have writers of their own.
const CREATE_WRITERS: usize = 1;

/// Single creates waiting to be written, by (connection id, resource type).
pub(crate) type CreateQueues = WriteQueues<(String, ResourceKind), CreateJob>;

/// One create waiting in [`CreateQueues`].
pub(crate) struct CreateJob {
    org_id: String,
    item: CreateItem,
    reply: oneshot::Sender<StoreResult<CreateRun>>,
}

impl PostgresStore {
    /// What the create statement writes for `row`.
    fn create_item(&self, ctx: &WriteContext, kind: ResourceKind, row: &NewRow, at: i64) -> CreateItem {
        CreateItem {
            id: row.id.clone(),
            fields: IndexFields::of(kind, &row.doc),
            search: search_doc(&self.registry, self.rt(kind), &row.doc),
            event: PendingEvent::new(
                ctx,
                events::created(kind),
                Some((kind, &row.id)),
                json!({"attributes": row.doc}),
                now_us(),
            ),
            doc: row.doc.clone(),
            at,
        }
    }

    /// Creates resources (the creates of a `/Bulk` request, or one create on its own) in one
    /// statement with their e-mail rows and their events ([`create_statement`]). Returns false
    /// when nothing was written (a role computation or staging needs the transactional way).
    pub(super) async fn create_resources_one_statement(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        rows: &[NewRow],
        now: i64,
    ) -> StoreResult<bool> {
        let items: Vec<CreateItem> = rows.iter().map(|r| self.create_item(ctx, kind, r, now)).collect();
        create_statement(
            &self.lane,
            &self.announcer,
            &self.statistics,
            &ctx.org_id,
            &ctx.connection_id,
            kind,
            &items,
        )
        .await
    }

    /// Creates one resource by the create statement, together with the other single creates of
    /// its connection waiting at the time: when no statement is writing the connection's creates,
    /// this one starts one (in a task of its own, so that a cancelled request cannot leave the
    /// others without an answer), which takes up to [`MAX_CREATES`] waiting creates at a time until
    /// none is left. Under load a statement, its commit and its flush of the log then serve many
    /// creates. Returns false as [`PostgresStore::create_resources_one_statement`] does.
    pub(super) async fn create_queued(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        row: &NewRow,
        now: i64,
    ) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        let key = (ctx.connection_id.clone(), kind);
        let job = CreateJob {
            org_id: ctx.org_id.clone(),
            item: self.create_item(ctx, kind, row, now),
            reply,
        };
        if lead_queue(&self.create_queues, key.clone(), job, CREATE_WRITERS) {
            let (lane, queues) = (self.lane.clone(), self.create_queues.clone());
            let (announcer, statistics) = (self.announcer.clone(), self.statistics.clone());
            tokio::spawn(async move {
                let _unwind = ForgetOnPanic(&queues, &key);
                while let Some(jobs) = next_jobs(&queues, &key, MAX_CREATES) {
                    let org_id = jobs[0].org_id.clone();
                    let (items, replies): (Vec<CreateItem>, Vec<_>) =
                        jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
                    let run = create_statement(&lane, &announcer, &statistics, &org_id, &key.0, key.1, &items).await;
                    let answers: Vec<StoreResult<CreateRun>> = match run {
                        Ok(written) => replies.iter().map(|_| Ok(CreateRun::Done(written))).collect(),
                        Err(e) if replies.len() == 1 => vec![Err(e)],
                        Err(_) => replies.iter().map(|_| Ok(CreateRun::Alone)).collect(),
                    };
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
            });
        }
        match answer.await {
            Ok(Ok(CreateRun::Done(written))) => Ok(written),
            Ok(Ok(CreateRun::Alone)) => {
                self.create_resources_one_statement(ctx, kind, std::slice::from_ref(row), now)
                    .await
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Scim(ScimError::internal(
                "the create ended without an answer",
            ))),
        }
    }

    /// Writes an update: a group's member changes in one statement when they are adds and removes
    /// by id, the document is unchanged and there is no `If-Match` (see the module documentation),
    /// together with the other such PATCHes of the group waiting at the time; else
    /// [`PostgresStore::update_write_once`].
    pub(super) async fn write_update(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        if_match: Option<i64>,
        computed: &Computed,
    ) -> StoreResult<Written> {
        if kind == ResourceKind::Group
            && if_match.is_none()
            && !computed.doc_changed()
            && !computed.member_changes.is_empty()
            && computed
                .member_changes
                .iter()
                .all(|c| matches!(c, MemberChange::Add(_) | MemberChange::Remove(_)))
        {
            match self.queue_members(ctx, computed).await {
                Ok(Ok(MembersRun::Done(w))) => return Ok(w),
                Ok(Ok(MembersRun::Fallback)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StoreError::Scim(ScimError::internal(
                        "the group's member write ended without an answer",
                    )));
                }
            }
        }
        self.update_write_once(ctx, kind, if_match, computed).await
    }

    /// Queues a member PATCH of a group and, when no statement is writing that group's queue,
    /// starts one (in a task of its own, so that a cancelled request cannot leave the others
    /// without an answer): it takes up to [`MAX_MEMBER_PATCHES`] waiting PATCHes at a time and
    /// writes them in one statement, until the queue is empty.
    fn queue_members(&self, ctx: &WriteContext, computed: &Computed) -> oneshot::Receiver<StoreResult<MembersRun>> {
        let (reply, answer) = oneshot::channel();
        let key = (ctx.connection_id.clone(), computed.current.id.clone());
        let job = MemberJob {
            ctx: ctx.clone(),
            group_id: computed.current.id.clone(),
            changes: computed.member_changes.clone(),
            reply,
        };
        if lead_queue(&self.member_queues, key.clone(), job, 1) {
            let (lane, queues) = (self.lane.clone(), self.member_queues.clone());
            let (announcer, statistics) = (self.announcer.clone(), self.statistics.clone());
            tokio::spawn(async move {
                let _unwind = ForgetOnPanic(&queues, &key);
                while let Some(jobs) = next_jobs(&queues, &key, MAX_MEMBER_PATCHES) {
                    write_member_jobs(&lane, &announcer, &statistics, jobs).await;
                }
            });
        }
        answer
    }
}

/// Writes `items` (creates of one connection, of one resource type) in one statement with their
/// e-mail rows and their events, when no role computation is needed (users in an organization
/// without roles, groups without members) and the connection is not in staging
/// ([`crate::staging`]). Returns false when nothing was written (the organization has roles, or
/// the connection is in staging). The statement commits as it ends.
async fn create_statement(
    lane: &Lane,
    announcer: &Announcer,
    statistics: &Statistics,
    org_id: &str,
    connection_id: &str,
    kind: ResourceKind,
    items: &[CreateItem],
) -> StoreResult<bool> {
    let (mut email_ids, mut emails) = (Vec::new(), Vec::new());
    for i in items {
        for e in &i.fields.emails_ci {
            email_ids.push(i.id.as_str());
            emails.push(e.as_str());
        }
    }
    let sql = format!(
        "WITH gate AS (SELECT ($15::bool OR (NOT EXISTS (SELECT 1 FROM roles WHERE org_id = $14)
                                            AND NOT EXISTS (SELECT 1 FROM workspaces WHERE org_id = $14)))
                             AND NOT EXISTS (SELECT 1 FROM workspace_settings WHERE org_id = $14 AND auto_create)
                             AND NOT EXISTS (SELECT 1 FROM scim_connections WHERE id = $16 AND staged_us IS NOT NULL)
                             AS ok),
         r AS (INSERT INTO resources (connection_id, kind, id, external_id, user_name_ci, display_name_ci, active,
                   version, created_us, modified_us, doc, doc_ci)
               SELECT $16, $17, s.id, s.external_id, s.user_name_ci, s.display_name_ci, s.active, 1, s.at, s.at,
                      s.doc, s.doc_ci
               FROM gate, UNNEST($19::text[], $20::text[], $21::text[], $22::text[], $23::bool[], $24::json[],
                                 $25::jsonb[], $18::int8[]) WITH ORDINALITY
                      AS s(id, external_id, user_name_ci, display_name_ci, active, doc, doc_ci, at, n)
               WHERE gate.ok ORDER BY s.n RETURNING pk, id),
         em AS (INSERT INTO resource_emails (resource_pk, connection_id, value_ci)
                SELECT r.pk, $16, e.v FROM UNNEST($26::text[], $27::text[]) e(id, v) JOIN r ON r.id = e.id),
         lk AS ({}),
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT {} FROM lk, {} ORDER BY t.n)
         SELECT ok FROM gate",
        events_lock_cte(13, "EXISTS (SELECT 1 FROM r)"),
        events_select("t"),
        events_unnest(1, "t"),
    );
    let written = bind_events(sqlx::query(AssertSqlSafe(sql)), items.iter().map(|i| &i.event))
        .bind(EVENTS_LOCK)
        .bind(org_id)
        // A group without members grants no roles: no need to look.
        .bind(kind == ResourceKind::Group)
        .bind(connection_id)
        .bind(kind.as_str())
        .bind(items.iter().map(|i| i.at).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>())
        .bind(
            items
                .iter()
                .map(|i| i.fields.external_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|i| i.fields.user_name_ci.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|i| i.fields.display_name_ci.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(items.iter().map(|i| i.fields.active).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.doc.to_string()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| Json(&i.search)).collect::<Vec<_>>())
        .bind(&email_ids)
        .bind(&emails);
    let mut conn = lane.lease().await?;
    let written: bool = written
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| uniqueness(e.into(), kind, items.iter().map(|i| &i.doc)))?
        .get(0);
    conn.done();
    if written {
        announcer.committed();
        statistics.added(connection_id, items.len() as u64);
        crate::metrics::events_written(&[(events::created(kind).to_string(), items.len() as u64)]);
    }
    Ok(written)
}

/// Jobs waiting to be written, and how many tasks are writing them.
pub(crate) struct WriteQueue<J> {
    jobs: Vec<J>,
    writers: usize,
}

impl<J> Default for WriteQueue<J> {
    fn default() -> Self {
        WriteQueue {
            jobs: Vec::new(),
            writers: 0,
        }
    }
}

/// Write queues by key.
pub(crate) type WriteQueues<K, J> = Arc<std::sync::Mutex<HashMap<K, WriteQueue<J>>>>;

/// Puts `job` in its queue; true when fewer than `writers` tasks write the queue, so that the
/// caller must start one more ([`next_jobs`]).
fn lead_queue<K: std::hash::Hash + Eq, J>(queues: &WriteQueues<K, J>, key: K, job: J, writers: usize) -> bool {
    let mut queues = queues.lock().expect("write queues");
    let q = queues.entry(key).or_default();
    q.jobs.push(job);
    let lead = q.writers < writers;
    q.writers += usize::from(lead);
    lead
}

/// The next jobs of the queue `key` for one of its writers (at most `max`, in the order they
/// arrived); `None` when there are none, and the writer stops (the queue removed with its last
/// writer; the next job to come starts a new one).
fn next_jobs<K: std::hash::Hash + Eq, J>(queues: &WriteQueues<K, J>, key: &K, max: usize) -> Option<Vec<J>> {
    let mut all = queues.lock().expect("write queues");
    let q = all.get_mut(key)?;
    if q.jobs.is_empty() {
        q.writers -= 1;
        if q.writers == 0 {
            all.remove(key);
        }
        return None;
    }
    let n = q.jobs.len().min(max);
    Some(q.jobs.drain(..n).collect())
}

/// Held by a queue's writer: were the writer to panic, its queue is dropped (the jobs waiting in
/// it are answered with an error as their senders drop), so the next job starts a new writer
/// instead of waiting for this one forever.
struct ForgetOnPanic<'a, K: std::hash::Hash + Eq, J>(&'a WriteQueues<K, J>, &'a K);

impl<K: std::hash::Hash + Eq, J> Drop for ForgetOnPanic<'_, K, J> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut queues) = self.0.lock()
        {
            queues.remove(self.1);
        }
    }
}

/// The most member PATCHes of one group written by one statement.
const MAX_MEMBER_PATCHES: usize = 64;

/// Member PATCHes waiting to be written, by (connection id, group id).
pub(crate) type MemberQueues = WriteQueues<(String, String), MemberJob>;

/// One member PATCH waiting in [`MemberQueues`].
pub(crate) struct MemberJob {
    ctx: WriteContext,
    group_id: String,
    changes: Vec<MemberChange>,
    reply: oneshot::Sender<StoreResult<MembersRun>>,
}

/// Writes `jobs` (member PATCHes of one group, in the order they arrived) with one statement and
/// answers each: written, or to be written on its own (a check failed, or the statement met a
/// deadlock), or the error.
async fn write_member_jobs(lane: &Lane, announcer: &Announcer, statistics: &Statistics, jobs: Vec<MemberJob>) {
    let plan = members_plan(
        jobs.iter()
            .enumerate()
            .flat_map(|(j, job)| job.changes.iter().map(move |c| (j, c))),
    )
    .expect("each PATCH was planned before it was queued");
    match members_statement(lane, announcer, statistics, &jobs, &plan).await {
        Ok(Some((group, changed))) => {
            // Each PATCH answers with the version it made (or found): as if written in turn.
            let base = group.version - changed.len() as i64;
            for (j, job) in jobs.into_iter().enumerate() {
                let version = base + changed.iter().filter(|c| **c <= j).count() as i64;
                let written = StoredResource {
                    version,
                    ..group.clone()
                };
                let _ = job.reply.send(Ok(MembersRun::Done(Written::Done(Some(written)))));
            }
        }
        Ok(None) => {
            for job in jobs {
                let _ = job.reply.send(Ok(MembersRun::Fallback));
            }
        }
        // Nothing was written: each PATCH goes the transactional way, which retries.
        Err(e) if is_retryable(&e) => {
            for job in jobs {
                let _ = job.reply.send(Ok(MembersRun::Fallback));
            }
        }
        Err(e) => {
            let message = e.to_string();
            let mut first = Some(e);
            for job in jobs {
                let e = first
                    .take()
                    .unwrap_or_else(|| StoreError::Scim(ScimError::internal(message.clone())));
                let _ = job.reply.send(Err(e));
            }
        }
    }
}

/// Runs the member statement of `plan` (the changes of `jobs`) once, on its own (it commits as
/// it ends). Returns the group as written with the PATCHes (by position in `jobs`, ascending) that
/// changed it, or `None` when nothing was written (the group is missing or a check failed). The
/// version goes up once per PATCH that changed the group, as if they had been written one after
/// the other in the order they arrived.
async fn members_statement(
    lane: &Lane,
    announcer: &Announcer,
    statistics: &Statistics,
    jobs: &[MemberJob],
    plan: &MembersPlan,
) -> StoreResult<Option<(StoredResource, Vec<usize>)>> {
    let ctx = &jobs[0].ctx;
    let group_id = jobs[0].group_id.as_str();
    let now = now_us();
    let events: Vec<PendingEvent> = plan
        .events
        .iter()
        .map(|(member, _, kind, job)| {
            PendingEvent::new(
                &jobs[*job].ctx,
                kind,
                Some((ResourceKind::Group, group_id)),
                json!({"member": member}),
                now,
            )
        })
        .collect();
    // Members in a fixed order (by id), so two statements lock the member rows they share in
    // the same order. `count(*) FROM evs` reads every row the upsert and the delete return
    // before the group's row is locked.
    let mut order: Vec<usize> = (0..plan.ids.len()).collect();
    order.sort_by(|a, b| plan.ids[*a].cmp(&plan.ids[*b]));
    let sql = format!(
        "WITH g AS (SELECT pk, version, created_us, modified_us, doc FROM resources
                    WHERE connection_id = $13 AND id = $14 AND kind = 'Group' AND deleted_us IS NULL
                    FOR KEY SHARE),
         mem AS (SELECT pk, id, deleted_us IS NULL AS live FROM resources
                 WHERE connection_id = $13 AND id = ANY($18::text[]) FOR SHARE),
         pm AS (SELECT mem.pk, mem.live, p.id, p.present, p.in_set, p.display, p.added, p.n
                FROM UNNEST($18::text[], $19::bool[], $20::bool[], $21::text[], $22::bool[]) WITH ORDINALITY
                       AS p(id, present, in_set, display, added, n)
                JOIN mem ON mem.id = p.id),
         gate AS (SELECT g.pk,
                    (SELECT count(*) FROM pm WHERE pm.added AND pm.live AND pm.pk <> g.pk)
                      = (SELECT count(*) FROM UNNEST($22::bool[]) a WHERE a)
                    AND NOT EXISTS (SELECT 1 FROM roles WHERE org_id = $15)
                    AND NOT EXISTS (SELECT 1 FROM workspaces WHERE org_id = $15)
                    AND NOT EXISTS (SELECT 1 FROM scim_connections WHERE id = $13 AND staged_us IS NOT NULL) AS ok
                  FROM g),
         plan AS (SELECT pm.pk, pm.id, pm.present, pm.in_set, pm.display, pm.n FROM pm, gate WHERE gate.ok),
         del AS (DELETE FROM group_members gm USING plan p, gate
                 WHERE gm.connection_id = $13 AND gm.group_pk = gate.pk AND gm.member_pk = p.pk AND NOT p.present
                 RETURNING gm.member_pk, true AS was_in),
         ups AS (INSERT INTO group_members AS gm (connection_id, group_pk, member_pk, display)
                 SELECT $13, gate.pk, p.pk, p.display FROM plan p, gate WHERE p.present ORDER BY p.n
                 ON CONFLICT (connection_id, group_pk, member_pk) DO UPDATE
                   SET display = CASE WHEN (SELECT q.in_set FROM plan q WHERE q.pk = EXCLUDED.member_pk)
                                      THEN EXCLUDED.display ELSE gm.display END
                 RETURNING gm.member_pk, gm.xmax <> 0 AS was_in),
         was AS (SELECT * FROM del UNION ALL SELECT * FROM ups),
         evs AS (SELECT t.*, c.job FROM {unnest}
                 JOIN UNNEST($23::text[], $24::bool[], $25::int4[]) WITH ORDINALITY AS c(member, when_in, job, n)
                   ON c.n = t.n
                 JOIN plan p ON p.id = c.member
                 LEFT JOIN was w ON w.member_pk = p.pk
                 WHERE c.when_in = COALESCE(w.was_in, false)),
         bump AS (UPDATE resources SET version = version + (SELECT count(DISTINCT job) FROM evs), modified_us = $16
                  FROM gate
                  WHERE resources.connection_id = $13 AND resources.pk = gate.pk AND (SELECT count(*) FROM evs) > 0
                  RETURNING resources.version, resources.created_us, resources.doc),
         lk AS ({lock}),
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT {select} FROM lk, evs ORDER BY evs.n RETURNING type)
         SELECT (SELECT ok FROM gate), g.version, g.created_us, g.modified_us, g.doc,
                b.version, b.created_us, b.doc, (SELECT array_agg(type) FROM ev),
                (SELECT array_agg(DISTINCT job) FROM evs)
         FROM g LEFT JOIN bump b ON true",
        unnest = events_unnest(1, "t"),
        lock = events_lock_cte(17, "EXISTS (SELECT 1 FROM bump)"),
        select = events_select("evs"),
    );
    let ids: Vec<&String> = order.iter().map(|i| &plan.ids[*i]).collect();
    // The final state is the same from both initial states, and so is the display whenever
    // the operations set it (see `members_plan`'s tests).
    let present: Vec<bool> = order.iter().map(|i| plan.if_out[*i].present).collect();
    let in_set: Vec<bool> = order.iter().map(|i| plan.if_in[*i].display.is_some()).collect();
    let display: Vec<Option<String>> = order
        .iter()
        .map(|i| plan.if_out[*i].display.clone().flatten())
        .collect();
    let row = bind_events(sqlx::query(AssertSqlSafe(sql)), events.iter())
        .bind(&ctx.connection_id)
        .bind(group_id)
        .bind(&ctx.org_id)
        .bind(now)
        .bind(EVENTS_LOCK)
        .bind(&ids)
        .bind(&present)
        .bind(&in_set)
        .bind(&display)
        .bind(order.iter().map(|i| plan.adds[*i]).collect::<Vec<_>>())
        .bind(plan.events.iter().map(|e| e.0.clone()).collect::<Vec<_>>())
        .bind(plan.events.iter().map(|e| e.1).collect::<Vec<_>>())
        .bind(plan.events.iter().map(|e| e.3 as i32).collect::<Vec<_>>());
    let mut conn = lane.lease().await?;
    let row = row.fetch_optional(&mut *conn).await?;
    conn.done();
    drop(conn);
    // No row: the group is missing.
    let Some(row) = row else { return Ok(None) };
    if row.get::<Option<bool>, _>(0) != Some(true) {
        return Ok(None);
    }
    let types: Option<Vec<String>> = row.get(8);
    if types.as_ref().is_some_and(|t| !t.is_empty()) {
        announcer.committed();
        statistics.written(
            types
                .iter()
                .flatten()
                .map(|t| (t.as_str(), Some(ctx.connection_id.as_str()))),
        );
    }
    let mut written = Vec::new();
    for t in types.unwrap_or_default() {
        crate::metrics::note(&mut written, &t, 1);
    }
    // Counted now: the statement has committed.
    crate::metrics::events_written(&written);
    // The group as written (or as found, when the PATCHes changed nothing): its document as
    // stored, which a concurrent write may have changed since the PATCHes read it.
    let (version, created_us, modified_us, doc_col) = match row.get::<Option<i64>, _>(5) {
        Some(version) => (version, row.get(6), now, 7),
        None => (row.get(1), row.get(2), row.get(3), 4),
    };
    let Json(mut doc): Json<Value> = row.get(doc_col);
    put_id(&mut doc, group_id);
    let mut changed: Vec<usize> = row
        .get::<Option<Vec<i32>>, _>(9)
        .unwrap_or_default()
        .into_iter()
        .map(|j| j as usize)
        .collect();
    changed.sort_unstable();
    Ok(Some((
        StoredResource {
            id: group_id.to_string(),
            kind: ResourceKind::Group,
            doc: doc.into(),
            version,
            created_us,
            modified_us,
            related: None,
        },
        changed,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_written_in_order_by_at_most_its_writers_and_forgotten_when_empty() {
        let queues: WriteQueues<&str, u32> = Default::default();
        assert!(lead_queue(&queues, "c1", 1, 1), "the first job starts a writer");
        assert!(!lead_queue(&queues, "c1", 2, 1), "one writer at most");
        assert!(!lead_queue(&queues, "c1", 3, 1));
        assert!(lead_queue(&queues, "c2", 9, 1), "another queue has a writer of its own");
        assert_eq!(next_jobs(&queues, &"c1", 2), Some(vec![1, 2]));
        assert!(!lead_queue(&queues, "c1", 4, 1), "its writer still runs");
        assert_eq!(next_jobs(&queues, &"c1", 2), Some(vec![3, 4]));
        assert_eq!(next_jobs(&queues, &"c1", 2), None, "empty: the writer stops");
        assert!(!queues.lock().unwrap().contains_key("c1"));
        assert!(lead_queue(&queues, "c1", 5, 1), "the next job starts a new writer");
        assert!(lead_queue(&queues, "c3", 1, 2) && lead_queue(&queues, "c3", 2, 2));
        assert!(!lead_queue(&queues, "c3", 3, 2), "two writers at most");
        assert_eq!(next_jobs(&queues, &"c3", 8), Some(vec![1, 2, 3]));
        assert_eq!(next_jobs(&queues, &"c3", 8), None);
        assert!(queues.lock().unwrap().contains_key("c3"), "the other writer still runs");
        assert_eq!(next_jobs(&queues, &"c3", 8), None);
        assert!(!queues.lock().unwrap().contains_key("c3"));
    }

    #[test]
    fn a_writer_that_panics_leaves_its_queue_to_the_next_job() {
        let queues: WriteQueues<&str, u32> = Default::default();
        assert!(lead_queue(&queues, "c1", 1, 1));
        assert!(!lead_queue(&queues, "c1", 2, 1));
        let writer = {
            let queues = queues.clone();
            std::thread::spawn(move || {
                let _unwind = ForgetOnPanic(&queues, &"c1");
                let _ = next_jobs(&queues, &"c1", 1);
                panic!("the writer fails");
            })
        };
        assert!(writer.join().is_err());
        assert!(
            !queues.lock().unwrap().contains_key("c1"),
            "the waiting job went with it"
        );
        assert!(lead_queue(&queues, "c1", 3, 1), "the next job starts a new writer");
    }

    fn plan_of(changes: &[MemberChange]) -> MembersPlan {
        members_plan(changes.iter().map(|c| (0, c))).unwrap()
    }

    fn add(id: &str, display: Option<&str>) -> MemberChange {
        MemberChange::Add(vec![MemberRef {
            value: id.into(),
            kind: None,
            display: display.map(String::from),
        }])
    }

    #[test]
    fn a_remove_then_add_plans_both_events_for_a_member_and_one_for_a_stranger() {
        let plan = plan_of(&[MemberChange::Remove(vec!["u".into()]), add("u", Some("U"))]);
        assert_eq!(plan.ids, vec!["u"]);
        assert_eq!(plan.adds, vec![true]);
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
                ("u".into(), true, events::GROUP_MEMBER_REMOVED, 0),
                ("u".into(), true, events::GROUP_MEMBER_ADDED, 0),
                ("u".into(), false, events::GROUP_MEMBER_ADDED, 0),
            ]
        );
    }

    #[test]
    fn adding_a_member_again_only_sets_its_display_and_filters_are_not_planned() {
        let plan = plan_of(&[add("a", None), add("b", None), add("a", Some("A"))]);
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
                ("a".into(), false, events::GROUP_MEMBER_ADDED, 0),
                ("b".into(), false, events::GROUP_MEMBER_ADDED, 0),
            ]
        );
        assert!(members_plan([(0, &MemberChange::ReplaceAll(vec![]))]).is_none());
    }

    proptest::proptest! {
        /// The statement writes one final state per member whatever the state before, and sets
        /// the display it inserts whenever the operations set one: both must hold for every
        /// sequence of adds and removes.
        #[test]
        fn the_final_state_does_not_depend_on_the_state_before(
            ops in proptest::collection::vec((0..3usize, proptest::option::of(proptest::option::of("[A-C]"))), 1..8)
        ) {
            let changes: Vec<MemberChange> = ops
                .iter()
                .map(|(m, op)| {
                    let id = format!("m{m}");
                    match op {
                        None => MemberChange::Remove(vec![id]),
                        Some(d) => add(&id, d.as_deref()),
                    }
                })
                .collect();
            let plan = plan_of(&changes);
            for (i, o) in plan.if_in.iter().zip(&plan.if_out) {
                proptest::prop_assert_eq!(i.present, o.present);
                if o.present {
                    proptest::prop_assert!(o.display.is_some());
                    if i.display.is_some() {
                        proptest::prop_assert_eq!(&i.display, &o.display);
                    }
                }
            }
        }
    }
}
