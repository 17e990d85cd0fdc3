//! Directory connectors (issue #17): Rollcall *reads* an identity provider's directory instead of
//! waiting for SCIM requests. Google Workspace provisions over SCIM only to applications of its own
//! catalog, so its users, groups and memberships are read from the Admin SDK Directory API
//! ([`google`]) as a service account with domain-wide delegation.
//!
//! A run ([`DirectorySync::run_claimed`]):
//!
//! 1. reads every user, group and membership of the customer, page by page, reporting progress
//!    and extending the connection's lease as it goes;
//! 2. keeps what the connection's scope selects (organizational units, groups) and maps it to
//!    SCIM documents ([`mapping`]);
//! 3. diffs that against what the connection holds (by `externalId`, Google's id) and writes the
//!    differences through the SCIM service ([`crate::service::Scim`]): the same validation, the
//!    same events (`user.created`, `user.deactivated`, `group.member_added`, …), role
//!    recomputation and webhooks as a SCIM client's requests, with the actor `directory_sync`.
//!    Users suspended or archived in Google are deactivated; users gone from Google are deleted,
//!    which the connection's lifecycle policy (`on_delete`) turns into retention or erasure;
//! 4. records the outcome (counts, the error) and when the next run is due.
//!
//! The scheduler ([`DirectorySync::run`]) runs in `rollcall serve`: it claims due connections
//! (a lease in the database: with several nodes on one PostgreSQL database, one node syncs a
//! connection at a time), runs them, and wakes up early when "sync now" is asked for on this node.

pub mod google;
pub mod http;
pub mod mapping;

use crate::service::Scim;
use futures::StreamExt;
use google::{GoogleDirectory, GoogleGroup, GoogleMember, GoogleTarget, GoogleUser, RetryPolicy, ServiceAccountKey};
use rollcall_scim::ScimError;
use rollcall_store::sqlite::now_us;
use rollcall_store::{
    Actor, Connection, ConnectionKind, DirectorySource, ListQuery, Paging, ResourceKind, StoredResource, SyncCounts,
    SyncOutcome, SyncStatus, WriteContext,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// User writes of a run in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

/// Settings of directory syncs on a node.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Retries of Google's requests.
    pub retry: RetryPolicy,
    /// The longest one request to Google may take.
    pub request_timeout: Duration,
    /// How long a claim holds a connection without news from its run (each page read extends it).
    pub lease: Duration,
    /// How often the scheduler looks for due connections when nothing woke it.
    pub poll_interval: Duration,
    /// Connections synced at once by this node.
    pub concurrency: usize,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(15),
            concurrency: 2,
        }
    }
}

/// Runs directory syncs: the scheduler of a serving node, or one run on demand (the command line).
#[derive(Clone)]
pub struct DirectorySync {
    scim: Scim,
    http: http::HttpClient,
    settings: SyncSettings,
    /// The lease owner: this node.
    owner: String,
    /// Woken by "sync now" on this node.
    wake: Arc<Notify>,
    /// Woken after a run that wrote, so webhook deliveries start at once.
    webhooks: Option<Arc<rollcall_webhooks::Webhooks>>,
}

/// The write context of a sync's changes: the connection's tenant, the actor `directory_sync`.
fn write_context(c: &Connection, request_id: &str) -> WriteContext {
    WriteContext {
        org_id: c.org_id.clone(),
        connection_id: c.id.clone(),
        user_agent: Some(http::USER_AGENT.to_string()),
        request_id: Some(request_id.to_string()),
        actor: Actor::DirectorySync {
            connection_id: c.id.clone(),
        },
    }
}

/// Reports a run's progress, extending its lease; fails the run once the lease is lost.
struct Progress<'a> {
    sync: &'a DirectorySync,
    connection_id: &'a str,
    counts: SyncCounts,
    last: Instant,
}

/// What went wrong with one user or group (the run goes on).
struct ItemFailures {
    count: u64,
    first: Vec<String>,
}

impl ItemFailures {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(what);
        }
    }
}

impl Progress<'_> {
    async fn phase(&mut self, phase: &str) -> Result<(), String> {
        self.counts.phase = phase.to_string();
        self.report(true).await
    }

    /// Records the counts (at most every half second unless `now`), extending the lease.
    async fn report(&mut self, now: bool) -> Result<(), String> {
        if !now && self.last.elapsed() < Duration::from_millis(500) {
            return Ok(());
        }
        self.last = Instant::now();
        let until = now_us() + self.sync.settings.lease.as_micros() as i64;
        let held = self
            .sync
            .scim
            .store
            .directory_sync_progress(self.connection_id, &self.sync.owner, &self.counts, until)
            .await
            .map_err(|e| format!("recording progress: {e}"))?;
        if held {
            Ok(())
        } else {
            Err(
                "this node lost the connection's lease (the run took longer than the lease without news); another \
                 run takes over"
                    .into(),
            )
        }
    }
}

/// What was read from Google.
struct Read {
    users: Vec<GoogleUser>,
    groups: Vec<GoogleGroup>,
    members: HashMap<String, Vec<GoogleMember>>,
}

impl DirectorySync {
    pub fn new(scim: Scim, settings: SyncSettings) -> DirectorySync {
        DirectorySync {
            scim,
            http: http::HttpClient::new(settings.request_timeout),
            settings,
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            wake: Arc::new(Notify::new()),
            webhooks: None,
        }
    }

    /// Wakes up on `wake` ("sync now" on this node).
    pub fn with_wake(mut self, wake: Arc<Notify>) -> DirectorySync {
        self.wake = wake;
        self
    }

    /// Wakes this webhook dispatcher after runs that wrote.
    pub fn with_webhooks(mut self, webhooks: Arc<rollcall_webhooks::Webhooks>) -> DirectorySync {
        self.webhooks = Some(webhooks);
        self
    }

    /// The scheduler: claims due connections and syncs them (up to `concurrency` at once) until
    /// `stop` turns true; runs still going then are stopped and recorded as interrupted, due again.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut running: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        let mut ids: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            while let Some(done) = running.try_join_next_with_id() {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                ids.remove(&id);
            }
            let free = self.settings.concurrency.saturating_sub(running.len());
            if free > 0 {
                let now = now_us();
                let until = now + self.settings.lease.as_micros() as i64;
                match self
                    .scim
                    .store
                    .claim_directory_syncs(&self.owner, now, until, free as i64, None)
                    .await
                {
                    Ok(claimed) => {
                        for source in claimed {
                            let connection_id = source.connection_id.clone();
                            let this = self.clone();
                            let handle = running.spawn(async move {
                                this.run_claimed(source).await;
                            });
                            ids.insert(handle.id(), connection_id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "directory sync: cannot claim due connections"),
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    ids.remove(&match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    });
                }
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
        for connection_id in ids.into_values() {
            let outcome = SyncOutcome {
                finished_us: now_us(),
                status: SyncStatus::Failed,
                error: Some("interrupted: the node running it shut down".into()),
                counts: SyncCounts::default(),
            };
            let store = &self.scim.store;
            if let Ok(true) = store.finish_directory_sync(&connection_id, &self.owner, &outcome).await {
                let _ = store.request_directory_sync(&connection_id, now_us()).await;
            }
        }
    }

    /// Syncs one connection now, here (the command line's `connection sync`): claims it whether due
    /// or not; an error when another node is syncing it, or it is disabled or not a directory
    /// connection.
    pub async fn sync_now(&self, connection_id: &str) -> Result<DirectorySource, String> {
        let now = now_us();
        let until = now + self.settings.lease.as_micros() as i64;
        let claimed = self
            .scim
            .store
            .claim_directory_syncs(&self.owner, now, until, 1, Some(connection_id))
            .await
            .map_err(|e| e.to_string())?;
        let Some(source) = claimed.into_iter().next() else {
            return Err(match self.scim.store.directory_source(connection_id).await {
                Ok(Some(s)) if s.lease_owner.is_some() => {
                    "a sync of this connection is running (on a serving node); see its progress with `rollcall \
                     connection show`"
                        .into()
                }
                Ok(Some(_)) => "the connection is disabled: enable it to sync".into(),
                Ok(None) => format!("\"{connection_id}\" is not a directory connection"),
                Err(e) => e.to_string(),
            });
        };
        self.run_claimed(source).await;
        self.scim
            .store
            .directory_source(connection_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the connection was deleted during the sync".to_string())
    }

    /// Runs a claimed connection's sync and records its outcome.
    pub async fn run_claimed(&self, source: DirectorySource) {
        let started = Instant::now();
        let connection_id = source.connection_id.clone();
        let mut progress = Progress {
            sync: self,
            connection_id: &connection_id,
            counts: SyncCounts::default(),
            last: Instant::now(),
        };
        let result = self.sync(&source, &mut progress).await;
        let mut counts = progress.counts;
        counts.phase = "done".into();
        let (status, error) = match result {
            Ok(None) => (SyncStatus::Succeeded, None),
            Ok(Some(partial)) => (SyncStatus::Partial, Some(partial)),
            Err(e) => (SyncStatus::Failed, Some(e)),
        };
        let wrote = counts.users_created
            + counts.users_updated
            + counts.users_deactivated
            + counts.users_deleted
            + counts.groups_created
            + counts.groups_updated
            + counts.groups_deleted
            > 0;
        match status {
            SyncStatus::Failed => tracing::warn!(
                connection_id,
                error = error.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "directory sync failed"
            ),
            _ => tracing::info!(
                connection_id,
                status = status.as_str(),
                users_read = counts.users_read,
                groups_read = counts.groups_read,
                created = counts.users_created,
                updated = counts.users_updated,
                deactivated = counts.users_deactivated,
                deleted = counts.users_deleted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "directory sync finished"
            ),
        }
        crate::metrics::directory_sync_run(
            source.kind.as_str(),
            status.as_str(),
            started.elapsed().as_secs_f64(),
            &counts,
        );
        let outcome = SyncOutcome {
            finished_us: now_us(),
            status,
            error,
            counts,
        };
        match self
            .scim
            .store
            .finish_directory_sync(&connection_id, &self.owner, &outcome)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(connection_id, "directory sync: the lease was lost before the run ended"),
            Err(e) => tracing::warn!(connection_id, error = %e, "directory sync: cannot record the outcome"),
        }
        if wrote && let Some(w) = &self.webhooks {
            w.wake();
        }
    }

    /// One run: `Ok(None)` when everything was written, `Ok(Some(why))` when some users or groups
    /// were not, `Err` when the directory could not be read (nothing was written then).
    async fn sync(&self, source: &DirectorySource, progress: &mut Progress<'_>) -> Result<Option<String>, String> {
        let connection = self
            .scim
            .store
            .get_connection(&source.connection_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the connection was deleted")?;
        if connection.kind != ConnectionKind::GoogleWorkspace {
            return Err(format!(
                "connections of kind {} are not read by this version",
                connection.kind
            ));
        }
        let key = ServiceAccountKey::parse(&source.credentials)?;
        let settings = &source.settings;
        let token_url = settings
            .token_url
            .clone()
            .or_else(|| key.token_uri.clone())
            .unwrap_or_else(|| google::DEFAULT_TOKEN_URL.to_string());
        let target = GoogleTarget {
            api_base_url: settings
                .api_base_url
                .clone()
                .unwrap_or_else(|| google::DEFAULT_API_BASE_URL.to_string()),
            token_url,
            customer: settings.customer.clone(),
            admin_email: settings.admin_email.clone(),
        };
        let mut google = GoogleDirectory::new(self.http.clone(), key, target, self.settings.retry);
        let read = self.read(&mut google, source, progress).await?;
        let request_id = uuid::Uuid::now_v7().to_string();
        let ctx = write_context(&connection, &request_id);
        self.apply(&connection, &ctx, source, read, progress).await
    }

    async fn read(
        &self,
        google: &mut GoogleDirectory,
        source: &DirectorySource,
        progress: &mut Progress<'_>,
    ) -> Result<Read, String> {
        progress.phase("users").await?;
        let mut users = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = google.users(token.as_deref()).await.map_err(|e| e.0)?;
            users.extend(page.items);
            progress.counts.users_read = users.len() as u64;
            progress.report(false).await?;
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        progress.phase("groups").await?;
        let mut groups = Vec::new();
        token = None;
        loop {
            let page = google.groups(token.as_deref()).await.map_err(|e| e.0)?;
            groups.extend(page.items);
            progress.counts.groups_read = groups.len() as u64;
            progress.report(false).await?;
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        progress.phase("members").await?;
        // Members of the groups synced; with a group scope, of the groups inside them too (their
        // users are in scope).
        let scope = &source.settings.scope;
        let mut todo: Vec<String> = groups
            .iter()
            .filter(|g| scope.groups.is_empty() || scope.groups.iter().any(|s| s.eq_ignore_ascii_case(&g.email)))
            .map(|g| g.id.clone())
            .collect();
        let mut members: HashMap<String, Vec<GoogleMember>> = HashMap::new();
        while let Some(group_id) = todo.pop() {
            if members.contains_key(&group_id) {
                continue;
            }
            let mut list = Vec::new();
            token = None;
            loop {
                let page = google.members(&group_id, token.as_deref()).await.map_err(|e| e.0)?;
                list.extend(page.items);
                match page.next_page_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            if !scope.groups.is_empty() {
                for m in &list {
                    if mapping::member_type(m) == Some("Group") && !members.contains_key(&m.id) {
                        todo.push(m.id.clone());
                    }
                }
            }
            members.insert(group_id, list);
            progress.report(false).await?;
        }
        tracing::debug!(
            tokens = google.tokens_fetched,
            retries = google.retries,
            "directory sync: read the directory"
        );
        Ok(Read { users, groups, members })
    }

    /// Every live resource of a kind on the connection, with membership for groups.
    async fn held(&self, connection_id: &str, kind: ResourceKind) -> Result<Vec<StoredResource>, String> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let query = ListQuery {
                filter: None,
                sort: None,
                paging: Paging::Cursor { after: after.clone() },
                count: 1000,
                with_members: kind == ResourceKind::Group,
                max_bytes: ListQuery::DEFAULT_MAX_BYTES,
            };
            let page = self
                .scim
                .store
                .list_resources(connection_id, kind, &query)
                .await
                .map_err(|e| e.to_string())?;
            out.extend(page.resources);
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        Ok(out)
    }

    async fn apply(
        &self,
        connection: &Connection,
        ctx: &WriteContext,
        source: &DirectorySource,
        read: Read,
        progress: &mut Progress<'_>,
    ) -> Result<Option<String>, String> {
        progress.phase("apply").await?;
        let scim = &self.scim;
        let policy = &connection.policy;
        let scoped = mapping::apply_scope(&source.settings.scope, &read.users, &read.groups, &read.members);
        let mut failures = ItemFailures {
            count: 0,
            first: Vec::new(),
        };
        let fail = |failures: &mut ItemFailures, what: String, e: ScimError| {
            failures.add(format!("{what}: {}", e.detail));
        };

        // Users: by externalId (Google's id).
        let held_users = self.held(&connection.id, ResourceKind::User).await?;
        let mut by_external: HashMap<String, StoredResource> = HashMap::new();
        for r in held_users {
            if let Some(x) = r.doc.get("externalId").and_then(Value::as_str) {
                by_external.insert(x.to_string(), r);
            } else {
                by_external.insert(format!("rollcall:{}", r.id), r);
            }
        }
        // Google id → Rollcall id, for memberships.
        let mut user_ids: HashMap<String, String> = HashMap::new();
        // The writes, computed first, then run a few at a time (SQLite commits them together,
        // PostgreSQL on several connections).
        let mut writes = Vec::new();
        for u in read.users.iter().filter(|u| scoped.user_ids.contains(&u.id)) {
            let body = mapping::user_document(u);
            let target = match by_external.remove(&u.id) {
                Some(existing) => {
                    user_ids.insert(u.id.clone(), existing.id.clone());
                    let desired = match scim.canonical(ResourceKind::User, policy, &body) {
                        Ok(d) => d,
                        Err(e) => {
                            fail(&mut failures, format!("user {}", u.primary_email), e.0);
                            continue;
                        }
                    };
                    if same_document(&desired, &existing.doc) {
                        continue;
                    }
                    let was_active = existing.doc.get("active").and_then(Value::as_bool) != Some(false);
                    Some((existing.id.clone(), was_active))
                }
                None => None,
            };
            writes.push(UserWrite {
                google_id: u.id.clone(),
                email: u.primary_email.clone(),
                deactivates: target.as_ref().is_some_and(|(_, was)| *was) && !mapping::is_active(u),
                target: target.map(|(id, _)| id),
                body,
            });
        }
        let mut done = futures::stream::iter(writes)
            .map(|w| write_user(scim, ctx, policy, w))
            .buffer_unordered(WRITES_IN_FLIGHT);
        while let Some((w, result)) = done.next().await {
            match (&w.target, result) {
                (None, Ok(created)) => {
                    user_ids.insert(w.google_id, created.id);
                    progress.counts.users_created += 1;
                }
                (Some(_), Ok(_)) if w.deactivates => progress.counts.users_deactivated += 1,
                (Some(_), Ok(_)) => progress.counts.users_updated += 1,
                (_, Err(e)) => fail(&mut failures, format!("user {}", w.email), e.0),
            }
            progress.report(false).await?;
        }
        drop(done);

        // Groups: created first without group members (a group may contain one not created yet),
        // then given their members.
        let names = mapping::group_display_names(&read.groups);
        let held_groups = self.held(&connection.id, ResourceKind::Group).await?;
        let mut groups_by_external: HashMap<String, StoredResource> = HashMap::new();
        for r in held_groups {
            let key = r
                .doc
                .get("externalId")
                .and_then(Value::as_str)
                .map_or_else(|| format!("rollcall:{}", r.id), str::to_string);
            groups_by_external.insert(key, r);
        }
        let synced: Vec<&GoogleGroup> = read
            .groups
            .iter()
            .filter(|g| scoped.group_ids.contains(&g.id))
            .collect();
        let mut group_ids: HashMap<String, String> = HashMap::new();
        let mut created_in_run: HashSet<String> = HashSet::new();
        let mut existing_groups: HashMap<String, StoredResource> = HashMap::new();
        for g in &synced {
            if let Some(r) = groups_by_external.remove(&g.id) {
                group_ids.insert(g.id.clone(), r.id.clone());
                existing_groups.insert(g.id.clone(), r);
            }
        }
        for g in &synced {
            if group_ids.contains_key(&g.id) {
                continue;
            }
            let body = mapping::group_document(g, &names[&g.id]);
            match scim.create(ctx, policy, ResourceKind::Group, &body).await {
                Ok(created) => {
                    group_ids.insert(g.id.clone(), created.id.clone());
                    created_in_run.insert(g.id.clone());
                    existing_groups.insert(g.id.clone(), created);
                    progress.counts.groups_created += 1;
                }
                Err(e) => fail(&mut failures, format!("group {}", g.email), e.0),
            }
            progress.report(false).await?;
        }
        for g in &synced {
            let Some(existing) = existing_groups.get(&g.id) else {
                continue;
            };
            let mut members: Vec<(String, &str)> = Vec::new();
            let mut seen = HashSet::new();
            for m in read.members.get(&g.id).into_iter().flatten() {
                let target = match mapping::member_type(m) {
                    Some("User") => user_ids.get(&m.id),
                    Some("Group") => group_ids.get(&m.id),
                    _ => None,
                };
                if let (Some(id), Some(kind)) = (target, mapping::member_type(m))
                    && seen.insert(id.clone())
                {
                    members.push((id.clone(), kind));
                }
            }
            let mut body = mapping::group_document(g, &names[&g.id]);
            body["members"] = Value::Array(
                members
                    .iter()
                    .map(|(id, kind)| serde_json::json!({"value": id, "type": kind}))
                    .collect(),
            );
            let desired = match scim.canonical(ResourceKind::Group, policy, &body) {
                Ok(d) => d,
                Err(e) => {
                    fail(&mut failures, format!("group {}", g.email), e.0);
                    continue;
                }
            };
            let held_members: HashSet<&str> = existing.related.iter().flatten().map(|m| m.id.as_str()).collect();
            let wanted: HashSet<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
            if same_document(&desired, &existing.doc) && held_members == wanted {
                continue;
            }
            match scim
                .replace(ctx, policy, ResourceKind::Group, &existing.id, &body, None)
                .await
            {
                // Members given to a group created in this run: not an update.
                Ok(_) if created_in_run.contains(&g.id) => {}
                Ok(_) => progress.counts.groups_updated += 1,
                Err(e) => fail(&mut failures, format!("group {}", g.email), e.0),
            }
            progress.report(false).await?;
        }

        // Gone from Google (or out of scope): deleted, as the connection's lifecycle policy says.
        let mut partial = None;
        if read.users.is_empty() && !by_external.is_empty() {
            partial = Some(format!(
                "Google returned no users at all; the {} users this connection holds were kept (check the customer id \
                 and the admin's access)",
                by_external.len()
            ));
        } else {
            let mut deleted = futures::stream::iter(by_external.into_values())
                .map(|r| delete_user(scim, ctx, r))
                .buffer_unordered(WRITES_IN_FLIGHT);
            while let Some((r, result)) = deleted.next().await {
                match result {
                    Ok(()) => progress.counts.users_deleted += 1,
                    Err(e) => {
                        let name = r
                            .doc
                            .get("userName")
                            .and_then(Value::as_str)
                            .unwrap_or(&r.id)
                            .to_string();
                        fail(&mut failures, format!("user {name}"), e.0)
                    }
                }
                progress.report(false).await?;
            }
        }
        for (_, r) in groups_by_external {
            match scim.delete(ctx, ResourceKind::Group, &r.id, None).await {
                Ok(()) => progress.counts.groups_deleted += 1,
                Err(e) => {
                    let name = r
                        .doc
                        .get("displayName")
                        .and_then(Value::as_str)
                        .unwrap_or(&r.id)
                        .to_string();
                    fail(&mut failures, format!("group {name}"), e.0)
                }
            }
            progress.report(false).await?;
        }
        progress.counts.failed = failures.count;
        progress.report(true).await?;
        if failures.count > 0 {
            let mut why = format!(
                "{} user(s) or group(s) could not be written: {}",
                failures.count,
                failures.first.join("; ")
            );
            if let Some(p) = partial {
                why = format!("{p}; {why}");
            }
            return Ok(Some(why));
        }
        Ok(partial)
    }
}

/// A user write a run makes: a create (no `target`) or a replace of `target`.
struct UserWrite {
    google_id: String,
    email: String,
    target: Option<String>,
    /// The replace makes an active user inactive.
    deactivates: bool,
    body: Value,
}

async fn write_user(
    scim: &Scim,
    ctx: &WriteContext,
    policy: &rollcall_store::ConnectionPolicy,
    w: UserWrite,
) -> (UserWrite, crate::response::ApiResult<StoredResource>) {
    let result = match &w.target {
        None => scim.create(ctx, policy, ResourceKind::User, &w.body).await,
        Some(id) => scim.replace(ctx, policy, ResourceKind::User, id, &w.body, None).await,
    };
    (w, result)
}

async fn delete_user(
    scim: &Scim,
    ctx: &WriteContext,
    r: StoredResource,
) -> (StoredResource, crate::response::ApiResult<()>) {
    let result = scim.delete(ctx, ResourceKind::User, &r.id, None).await;
    (r, result)
}

/// Whether a canonical document (without `id`) is the one stored (with `id`).
fn same_document(desired: &Value, stored: &Value) -> bool {
    let (Some(d), Some(s)) = (desired.as_object(), stored.as_object()) else {
        return false;
    };
    let stored_len = s.len() - usize::from(s.contains_key("id"));
    d.len() == stored_len && d.iter().all(|(k, v)| s.get(k) == Some(v))
}
