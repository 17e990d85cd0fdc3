//! Runs of provisioning targets.
//!
//! - **Event-driven sync**: each target has a durable cursor in the event log (as webhook
//!   endpoints do). A worker leases the targets with events after their cursor
//!   ([`OutboundStore::claim_targets`]: two nodes never push one target at once), works out which
//!   users and groups the events touch, pushes those, and moves the cursor. Events that touch
//!   nothing of the target only move the cursor: no run is recorded.
//! - **Full reconciliation**, on the target's schedule and on demand: every user in scope, the
//!   target read back where it can be listed (drift repaired: a remote user that differs from what
//!   Rollcall sends is updated; one that vanished is created again), every mapped user out of
//!   scope deprovisioned.
//! - **Matching and linking**: a user without a remote id is looked up by externalId, then
//!   userName, then email, and linked when exactly one is found; a 409 on create means search and
//!   link; a create whose answer was lost searches before anything else; a 404 on update means the
//!   mapping is stale: create again. The mapping table holds what was last sent, so an unchanged
//!   user costs no request at all.
//! - **Safety**: more deprovisions in one run than the target's deletion threshold allows pause
//!   the target (`provisioning.target_paused`) before any of them is made; a run where most calls
//!   fail for reasons of the target (down, throttling, refusing the credentials) quarantines it
//!   (`provisioning.target_quarantined`): it is retried on a longer schedule and shows why. One
//!   failing object never stops a run: it is recorded with its error, and retried.
//!
//! Everything decided here is decided by [`crate::plan`], so a plan is what a push does.

use crate::auth::{ClientAuthMethod, Credentials, OAuthClientCredentials, Secret};
use crate::client::{ClientError, TargetClient, TargetConfig, Transport};
use crate::plan::{
    self, AttributeChange, Found, MatchedBy, Plan, RemoteIndex, RemoteUser, UserAction, changed_attributes, covers,
    decide_user, lookup, match_keys, shape_user,
};
use crate::profile::{self, TargetProfile};
use crate::remote::Remote;
use rollcall_store::outbound::{
    AuthKind, ObjectQuery, ObjectState, Run, RunCounts, RunKind, RunStatus, Target, TargetObject, TargetRelease,
    TargetStatus,
};
use rollcall_store::sqlite::now_us;
use rollcall_store::{DirectoryQuery, GroupQuery, ResourceKind, Store, StoreError, UserStatus, WriteContext, events};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the worker looks for work when nothing woke it.
    pub poll_interval: Duration,
    /// How long a lease lasts (extended as a run makes progress).
    pub lease: Duration,
    /// Targets worked on at once.
    pub concurrency: usize,
    /// Events read per query.
    pub batch: i64,
    /// The pause after a first failed run; it doubles, up to `max_backoff`.
    pub retry_base: Duration,
    pub max_backoff: Duration,
    /// The pause before a quarantined target is tried again; it doubles, up to `max_backoff`.
    pub quarantine_base: Duration,
    /// The rate limit of every target instead of its profile's (`Some(vec![])`: none). For
    /// benchmarks against a local fake.
    pub rate_limits: Option<Vec<crate::profile::RateBucket>>,
    /// How one request to a target is retried (429, 5xx, timeouts), and its deadline.
    pub request_retry: crate::client::RetryPolicy,
    pub request_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            poll_interval: Duration::from_millis(500),
            // As webhook delivery: short enough that another node (or this one, restarted) takes
            // over soon after a crash; a running full run extends it as it goes.
            lease: Duration::from_secs(30),
            concurrency: 8,
            batch: 500,
            retry_base: Duration::from_secs(5),
            max_backoff: Duration::from_secs(6 * 3600),
            quarantine_base: Duration::from_secs(15 * 60),
            rate_limits: None,
            request_retry: crate::client::RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl EngineConfig {
    fn lease_us(&self) -> i64 {
        self.lease.as_micros() as i64
    }
}

/// Why a run or a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Target(#[from] ClientError),
    #[error("{0}")]
    Config(String),
    /// Another node took the target over (this one stalled past its lease): the run stops.
    #[error("the lease on the target was lost")]
    LeaseLost,
    /// So many calls in a row failed because of the target that the run stopped; what it had not
    /// pushed yet is pushed by the next run (the cursor stays).
    #[error("{0} objects in a row failed because of the target; the last: {1}")]
    TargetFailing(u64, String),
}

/// Where one user stands on one target after a just-in-time request ([`Outbound::provision_user`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JitOutcome {
    pub target_id: String,
    pub status: JitStatus,
    /// The user's id on the target, once it is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// Why the last push failed (`failed`), or why nothing was asked (`target_paused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The states of a just-in-time request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JitStatus {
    /// On the target, up to date.
    Synced,
    /// Asked for; not done when the wait ended (the push goes on).
    Pending,
    /// The push failed (it is tried again on its own, see `error`).
    Failed,
    /// The user is not in the target's scope (or not active): nothing asked.
    NotInScope,
    /// The target's first push is not approved yet: nothing asked.
    NotApproved,
    /// The target is paused: nothing asked.
    TargetPaused,
}

/// The outbound provisioning service of a node: plans, runs, and the worker.
pub struct Outbound {
    pub store: Arc<dyn Store>,
    pub config: EngineConfig,
    transport: Transport,
    wake: Notify,
    /// A client per target, kept across runs (its connections, OAuth token and rate-limit
    /// buckets), until the target changes; a generic profile read again at least every
    /// [`PROFILE_REFRESH`] and at every full run.
    remotes: std::sync::Mutex<HashMap<String, CachedRemote>>,
}

struct CachedRemote {
    /// The target's `updated_us` when the client was made.
    updated_us: i64,
    remote: Remote,
    refined_at: std::time::Instant,
}

/// How long a target's `/ServiceProviderConfig` is trusted between full runs.
const PROFILE_REFRESH: Duration = Duration::from_secs(600);

/// The credentials of a target for its client.
pub fn credentials_of(t: &Target) -> Credentials {
    match t.auth_kind {
        AuthKind::Bearer => Credentials::bearer(t.credentials.clone()),
        AuthKind::Basic => Credentials::basic(t.auth.username.clone().unwrap_or_default(), t.credentials.clone()),
        AuthKind::OauthClientCredentials => Credentials::OAuthClientCredentials(OAuthClientCredentials {
            token_url: t.auth.token_url.clone().unwrap_or_default(),
            client_id: t.auth.client_id.clone().unwrap_or_default(),
            client_secret: Secret::new(t.credentials.clone()),
            scope: t.auth.scope.clone(),
            client_auth: ClientAuthMethod::default(),
        }),
    }
}

/// The data of a target's events.
fn target_event(t: &Target, extra: Value) -> Value {
    let mut d = rollcall_store::outbound::target_data(t);
    if let (Some(o), Some(e)) = (d.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    d
}

/// What one object's push came to, for the counts and the quarantine rule.
#[derive(Debug, Default)]
struct Tally {
    counts: RunCounts,
    /// Objects that failed because of the target (not of the object).
    target_failures: u64,
    /// Objects pushed or attempted.
    attempted: u64,
    /// Target failures in a row (a run stops after too many).
    failing_streak: u64,
    /// The last failure, for the run's error when it stops.
    last_error: Option<String>,
}

impl Tally {
    /// Stops a run that the target keeps failing.
    fn check_streak(&self) -> Result<(), EngineError> {
        if self.failing_streak >= MAX_FAILING_STREAK {
            return Err(EngineError::TargetFailing(
                self.failing_streak,
                self.last_error.clone().unwrap_or_default(),
            ));
        }
        Ok(())
    }
}

/// Keeps a lease while a run makes progress: extended every [`LEASE_EVERY`] objects or when a
/// third of it has passed; a lost lease stops the run.
struct LeaseKeeper<'a> {
    ob: &'a dyn rollcall_store::outbound::OutboundStore,
    target_id: &'a str,
    owner: &'a str,
    lease_us: i64,
    since: u64,
    extended_us: i64,
}

impl<'a> LeaseKeeper<'a> {
    fn new(ob: &'a dyn rollcall_store::outbound::OutboundStore, t: &'a Target, owner: &'a str, lease_us: i64) -> Self {
        LeaseKeeper {
            ob,
            target_id: &t.id,
            owner,
            lease_us,
            since: 0,
            extended_us: now_us(),
        }
    }

    /// One object done; `cursor`: where the target's cursor is now (it does not move).
    async fn tick(&mut self, cursor: i64) -> Result<bool, EngineError> {
        self.since += 1;
        let now = now_us();
        if self.since < LEASE_EVERY && now - self.extended_us < self.lease_us / 3 {
            return Ok(false);
        }
        if !self
            .ob
            .advance_target(self.target_id, self.owner, cursor, cursor, now + self.lease_us)
            .await?
        {
            return Err(EngineError::LeaseLost);
        }
        self.since = 0;
        self.extended_us = now;
        Ok(true)
    }
}

/// Failed runs in a row after which a target is quarantined.
const QUARANTINE_AFTER_FAILED_RUNS: i64 = 3;

/// The shortest time between the start of a round of the worker and the next round started by a
/// wake-up ([`Outbound::run_worker`]).
pub const WAKE_GAP: Duration = Duration::from_millis(5);

/// A run stops after this many objects in a row failed because of the target.
const MAX_FAILING_STREAK: u64 = 20;

/// Automatic attempts at a failed object; after the last, it waits for a retry asked for (or the
/// next change to it, or the next full run).
pub const MAX_OBJECT_ATTEMPTS: i64 = 8;

/// Objects pushed between two extensions of the lease at most (it is also extended when a third of
/// it has passed).
const LEASE_EVERY: u64 = 100;

impl Outbound {
    pub fn new(store: Arc<dyn Store>, transport: Transport, config: EngineConfig) -> Arc<Outbound> {
        Arc::new(Outbound {
            store,
            config,
            transport,
            wake: Notify::new(),
            remotes: Default::default(),
        })
    }

    /// Tells the worker that events may have been written (kept until taken).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Checks a target URL against the network policy.
    pub fn check_url(&self, url: &str) -> Result<String, String> {
        self.transport.check_url(url).map(|u| u.to_string())
    }

    /// A client for a target, with its profile in force (for `generic`: refined from its
    /// `/ServiceProviderConfig`): the one kept for the target, unless it changed since.
    pub async fn connect(&self, t: &Target) -> Result<Remote, EngineError> {
        self.connect_with(t, false).await
    }

    /// `refresh`: read a generic target's `/ServiceProviderConfig` again (a full run).
    async fn connect_with(&self, t: &Target, refresh: bool) -> Result<Remote, EngineError> {
        let kept = {
            let remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
            remotes
                .get(&t.id)
                .filter(|c| c.updated_us == t.updated_us)
                .map(|c| (c.remote.session(), c.refined_at))
        };
        let remote = match kept {
            Some((remote, at)) if !refresh && at.elapsed() < PROFILE_REFRESH => return Ok(remote),
            Some((remote, _)) => remote,
            None => self.new_remote(t)?,
        };
        let remote = self.refine(t, remote).await?;
        self.remotes.lock().unwrap_or_else(|e| e.into_inner()).insert(
            t.id.clone(),
            CachedRemote {
                updated_us: t.updated_us,
                remote: remote.session(),
                refined_at: std::time::Instant::now(),
            },
        );
        Ok(remote)
    }

    fn new_remote(&self, t: &Target) -> Result<Remote, EngineError> {
        let profile: TargetProfile = profile::profile(&t.profile)
            .ok_or_else(|| EngineError::Config(format!("unknown target profile \"{}\"", t.profile)))?
            .clone();
        let mut config = TargetConfig::new(t.base_url.clone(), profile.clone(), credentials_of(t));
        // The node-wide override (benchmarks), else the target's own limit, else its profile's.
        config.rate_limits = self.config.rate_limits.clone().or_else(|| {
            t.rate_limit.map(|r| {
                vec![profile::RateBucket {
                    scope: profile::BucketScope::ALL,
                    requests: r.per_minute,
                    per_seconds: 60,
                    burst: r.burst(),
                    documented: false,
                }]
            })
        });
        config.retry = self.config.request_retry;
        config.timeout = self.config.request_timeout;
        let client = TargetClient::new(self.transport.clone(), config)?;
        Ok(Remote::new(client, profile))
    }

    /// A generic target's profile, refined from its `/ServiceProviderConfig`.
    async fn refine(&self, t: &Target, remote: Remote) -> Result<Remote, EngineError> {
        let Some(mut profile) = profile::profile(&t.profile).cloned() else {
            return Ok(remote);
        };
        if profile.id == profile::GENERIC {
            match remote.service_provider_config().await {
                Ok(spc) => {
                    if let Err(e) = profile.apply_service_provider_config(&spc) {
                        tracing::info!(target_id = %t.id, error = %e, "keeping the generic profile");
                    }
                }
                Err(e) if e.counts_against_target() => return Err(e.into()),
                Err(e) => tracing::info!(target_id = %t.id, error = %e, "no ServiceProviderConfig; generic profile"),
            }
            return Ok(remote.with_profile(profile));
        }
        Ok(remote)
    }

    // --- what should be there ---------------------------------------------------------------

    /// Every user in the target's scope: Rollcall id → (userName, the document the target gets).
    async fn desired_users(
        &self,
        t: &Target,
        profile: &TargetProfile,
    ) -> Result<BTreeMap<String, (Option<String>, Value)>, EngineError> {
        let mut out = BTreeMap::new();
        let mut queries: Vec<DirectoryQuery> = Vec::new();
        let base = DirectoryQuery {
            status: Some(UserStatus::Active),
            limit: 1000,
            ..Default::default()
        };
        if t.scope.is_everyone() {
            queries.push(base.clone());
        }
        for c in &t.scope.connections {
            queries.push(DirectoryQuery {
                connection_id: Some(c.clone()),
                ..base.clone()
            });
        }
        for g in &t.scope.groups {
            queries.push(DirectoryQuery {
                group_id: Some(g.clone()),
                ..base.clone()
            });
        }
        for mut q in queries {
            loop {
                let page = self.store.directory_users(&t.org_id, &q, false).await?;
                let Some(last) = page.last().map(|u| u.pk) else { break };
                for u in page {
                    let name = u.doc.get("userName").and_then(Value::as_str).map(str::to_string);
                    let doc = shape_user(&u.doc, &u.id, &t.mapping, profile);
                    out.insert(u.id, (name, doc));
                }
                q.after_pk = last;
            }
        }
        Ok(out)
    }

    /// One user as the target should have it (`None`: not in scope, or not active).
    async fn desired_user(
        &self,
        t: &Target,
        profile: &TargetProfile,
        user_id: &str,
    ) -> Result<(Option<String>, Option<Value>), EngineError> {
        let q = DirectoryQuery {
            id: Some(user_id.to_string()),
            limit: 1,
            ..Default::default()
        };
        let users = self
            .store
            .directory_users(&t.org_id, &q, !t.scope.groups.is_empty())
            .await?;
        let Some(u) = users.into_iter().next() else {
            return Ok((None, None));
        };
        let name = u.doc.get("userName").and_then(Value::as_str).map(str::to_string);
        let in_scope = u.status == UserStatus::Active
            && (t.scope.is_everyone()
                || t.scope.connections.contains(&u.connection_id)
                || u.groups
                    .as_ref()
                    .is_some_and(|gs| gs.iter().any(|g| t.scope.groups.contains(&g.id))));
        Ok((name, in_scope.then(|| shape_user(&u.doc, &u.id, &t.mapping, profile))))
    }

    /// The mapping table of a target, by kind and local id.
    async fn mapping(&self, t: &Target) -> Result<HashMap<(ResourceKind, String), TargetObject>, EngineError> {
        let mut out = HashMap::new();
        let mut q = ObjectQuery {
            limit: 1000,
            ..Default::default()
        };
        loop {
            let page = self.store.outbound().target_objects(&t.org_id, &t.id, &q).await?;
            let Some(last) = page.last() else { break };
            q.after = Some((last.kind, last.local_id.clone()));
            for o in page {
                out.insert((o.kind, o.local_id.clone()), o);
            }
        }
        Ok(out)
    }

    /// Looks a user up on the target by its keys, one request per key the target can filter on.
    async fn search(&self, remote: &Remote, desired: &Value) -> Result<(Found, Option<MatchedBy>), ClientError> {
        for (by, value) in match_keys(desired) {
            if !remote.can_find_by(by.attribute()) {
                continue;
            }
            let found = plan::found(Some(remote.find_users(by.attribute(), &value).await?));
            if found != Found::None {
                return Ok((found, Some(by)));
            }
        }
        Ok((Found::None, None))
    }

    // --- plans --------------------------------------------------------------------------------

    /// The full diff of a target, writing nothing: read from Rollcall, the mapping table and the
    /// target (listed once where it can be; else searched user by user for the users not linked).
    pub async fn plan(&self, t: &Target) -> Result<Plan, EngineError> {
        let remote = self.connect(t).await?;
        let desired = self.desired_users(t, remote.profile()).await?;
        let rows = self.mapping(t).await?;
        let index = match remote.list_users().await {
            Ok(Some(users)) => Some(RemoteIndex::new(users)),
            Ok(None) => None,
            Err(e) if e.counts_against_target() => return Err(e.into()),
            Err(_) => None,
        };
        let mut plan = Plan::new(desired.len() as u64, index.as_ref().map_or(0, |i| i.len() as u64));
        let known = rows
            .values()
            .filter(|o| o.kind == ResourceKind::User && o.remote_id.is_some() && o.state != ObjectState::Deactivated)
            .count() as u64;
        for (id, (name, doc)) in &desired {
            let row = rows.get(&(ResourceKind::User, id.clone()));
            let found = match (&index, row.and_then(|r| r.remote_id.as_ref())) {
                (_, Some(_)) => (Found::None, None),
                (Some(ix), None) => lookup(&match_keys(doc), |by, v| ix.find(by, v)),
                (None, None) => self.search(&remote, doc).await?,
            };
            let action = decide_user(Some(doc), row, t.deprovision, |_| found);
            if let Some(a) = action {
                plan.add(id, name.clone(), a);
            }
        }
        for ((kind, id), row) in &rows {
            if *kind != ResourceKind::User || desired.contains_key(id) {
                continue;
            }
            if let Some(a) = decide_user(None, Some(row), t.deprovision, |_| (Found::None, None)) {
                plan.add(id, None, a);
            }
        }
        plan.users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let removals = plan.summary.deactivate + plan.summary.delete;
        plan.summary.exceeds_deletion_threshold = t.deletion_threshold.exceeded(removals, known);
        Ok(plan)
    }

    /// Just in time: makes sure a user is on a target, waiting up to `wait` for it. A user already
    /// synced answers at once; otherwise the object is made due now and the worker (of this node
    /// or another, under the target's lease: never beside a run) pushes it; this waits for the
    /// mapping table to say how it went. A wait that ends first answers `pending`.
    pub async fn provision_user(&self, t: &Target, user_id: &str, wait: Duration) -> Result<JitOutcome, EngineError> {
        let outcome = |status, remote_id: Option<String>, error: Option<String>| JitOutcome {
            target_id: t.id.clone(),
            status,
            remote_id,
            error,
        };
        if t.approved_us.is_none() {
            return Ok(outcome(JitStatus::NotApproved, None, None));
        }
        if t.status == TargetStatus::Paused {
            return Ok(outcome(JitStatus::TargetPaused, None, t.status_reason.clone()));
        }
        let profile = profile::profile(&t.profile)
            .ok_or_else(|| EngineError::Config(format!("unknown target profile \"{}\"", t.profile)))?;
        let (_, desired) = self.desired_user(t, profile, user_id).await?;
        let Some(desired) = desired else {
            return Ok(outcome(JitStatus::NotInScope, None, None));
        };
        let ob = self.store.outbound();
        let row = ob.target_object(&t.org_id, &t.id, ResourceKind::User, user_id).await?;
        if let Some(r) = &row
            && r.state == ObjectState::Synced
            && r.remote_id.is_some()
            && changed_attributes(r.sent.as_ref(), &desired).is_empty()
        {
            return Ok(outcome(JitStatus::Synced, r.remote_id.clone(), None));
        }
        let asked = now_us();
        ob.request_push(&t.org_id, &t.id, ResourceKind::User, user_id, asked)
            .await?;
        self.wake();
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(r) = ob.target_object(&t.org_id, &t.id, ResourceKind::User, user_id).await?
                && r.updated_us > asked
            {
                match r.state {
                    ObjectState::Synced => return Ok(outcome(JitStatus::Synced, r.remote_id, None)),
                    ObjectState::Failed => return Ok(outcome(JitStatus::Failed, r.remote_id, r.error)),
                    _ => {}
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(outcome(JitStatus::Pending, None, None));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    // --- pushing one user -------------------------------------------------------------------

    fn ctx(t: &Target) -> WriteContext {
        WriteContext::system().about(&t.org_id, "")
    }

    async fn record_ok(
        &self,
        t: &Target,
        local_id: &str,
        remote_id: Option<&str>,
        sent: Option<&Value>,
        state: ObjectState,
        data: Value,
    ) -> Result<(), StoreError> {
        let o = TargetObject {
            target_id: t.id.clone(),
            kind: ResourceKind::User,
            local_id: local_id.to_string(),
            remote_id: remote_id.map(str::to_string),
            sent: sent.cloned(),
            state,
            error: None,
            attempts: 0,
            retry_at_us: None,
            updated_us: now_us(),
        };
        let mut data = data;
        data["target"] = json!(t.id);
        if let Some(r) = remote_id {
            data["remote_id"] = json!(r);
        }
        self.store
            .outbound()
            .record_object(&Self::ctx(t), &o, Some((events::PROVISIONING_OBJECT_PUSHED, data)))
            .await
    }

    async fn record_failed(
        &self,
        t: &Target,
        row: Option<&TargetObject>,
        local_id: &str,
        action: &str,
        error: String,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        let attempts = row.map_or(0, |r| r.attempts) + 1;
        let o = TargetObject {
            target_id: t.id.clone(),
            kind: ResourceKind::User,
            local_id: local_id.to_string(),
            remote_id: row.and_then(|r| r.remote_id.clone()),
            sent: row.and_then(|r| r.sent.clone()),
            state: ObjectState::Failed,
            error: Some(error.clone()),
            attempts,
            retry_at_us: self.retry_at(attempts),
            updated_us: now_us(),
        };
        let data = json!({"target": t.id, "action": action, "error": rollcall_store::outbound::clip_error(&error), "status": status});
        self.store
            .outbound()
            .record_object(&Self::ctx(t), &o, Some((events::PROVISIONING_OBJECT_FAILED, data)))
            .await
    }

    /// Creates a user, or links the one that exists: searched first (a create retried after a lost
    /// answer finds what the first one made), a 409 searched again.
    async fn create_or_link(
        &self,
        remote: &Remote,
        doc: &Value,
        searched: bool,
    ) -> Result<(String, Option<MatchedBy>, Vec<AttributeChange>), PushError> {
        if !searched {
            match self.search(remote, doc).await? {
                (Found::One(u), Some(by)) => return self.link(remote, u, by, doc).await,
                (Found::Many(c), Some(by)) => return Err(PushError::Ambiguous(by, c)),
                _ => {}
            }
        }
        match remote.create_user(doc).await {
            Ok(u) => Ok((u.id, None, Vec::new())),
            Err(e)
                if (e.is_conflict() && remote.profile().conflict_means_exists(e.detail.as_deref()))
                    || e.may_have_committed =>
            {
                match self.search(remote, doc).await? {
                    (Found::One(u), Some(by)) => self.link(remote, u, by, doc).await,
                    (Found::Many(c), Some(by)) => Err(PushError::Ambiguous(by, c)),
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn link(
        &self,
        remote: &Remote,
        u: RemoteUser,
        by: MatchedBy,
        doc: &Value,
    ) -> Result<(String, Option<MatchedBy>, Vec<AttributeChange>), PushError> {
        let changes: Vec<AttributeChange> = if covers(&u.doc, doc) {
            Vec::new()
        } else {
            changed_attributes(Some(&u.doc), doc)
                .into_iter()
                .filter(|c| !c.after.is_null())
                .collect()
        };
        if !changes.is_empty() {
            remote.update_user(&u.id, doc, &changes).await?;
        }
        Ok((u.id, Some(by), changes))
    }

    /// Carries out one decision and records it (one transaction with its event). `searched`: the
    /// target was listed just now and has no match (a create posts at once); else a create
    /// searches first.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        t: &Target,
        remote: &Remote,
        local_id: &str,
        row: Option<&TargetObject>,
        desired: Option<&Value>,
        action: UserAction,
        searched: bool,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        let name = action.name();
        if matches!(action, UserAction::Unchanged { .. }) {
            tally.counts.unchanged += 1;
            return Ok(());
        }
        tally.attempted += 1;
        let outcome: Result<(), PushError> = async {
            match action {
                UserAction::Unchanged { .. } => Ok(()),
                UserAction::Create { document } => {
                    let (id, by, changes) = self.create_or_link(remote, &document, searched).await?;
                    self.record_linked(t, local_id, &id, &document, by, &changes, tally).await?;
                    Ok(())
                }
                UserAction::Link {
                    remote_id, matched_by, ..
                } => {
                    let doc = desired.expect("a link is of a desired user");
                    let u = match remote.get_user(&remote_id).await? {
                        Some(d) => RemoteUser { id: remote_id, doc: d },
                        None => RemoteUser {
                            id: remote_id,
                            doc: json!({}),
                        },
                    };
                    let (id, by, changes) = self.link(remote, u, matched_by, doc).await?;
                    self.record_linked(t, local_id, &id, doc, by, &changes, tally).await?;
                    Ok(())
                }
                UserAction::Ambiguous { matched_by, candidates } => Err(PushError::Ambiguous(matched_by, candidates)),
                UserAction::Update { remote_id, changes } | UserAction::Reactivate { remote_id, changes } => {
                    let doc = desired.expect("an update is of a desired user");
                    match remote.update_user(&remote_id, doc, &changes).await {
                        Ok(()) => {
                            tally.counts.updated += 1;
                            let names: Vec<&str> = changes.iter().map(|c| c.attribute.as_str()).collect();
                            self.record_ok(
                                t,
                                local_id,
                                Some(&remote_id),
                                Some(doc),
                                ObjectState::Synced,
                                json!({"action": if name == "reactivate" { "reactivated" } else { "updated" }, "changed": names}),
                            )
                            .await?;
                            Ok(())
                        }
                        Err(e) if e.is_not_found() => {
                            // The mapping is stale: the remote user is gone. Create it again.
                            let (id, by, changes) = self.create_or_link(remote, doc, false).await?;
                            self.record_linked(t, local_id, &id, doc, by, &changes, tally).await?;
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                UserAction::Deactivate { remote_id } => {
                    let sent = row.and_then(|r| r.sent.clone());
                    let result = remote.set_active(&remote_id, false, sent.as_ref()).await;
                    match result {
                        Ok(()) => {
                            tally.counts.deactivated += 1;
                            let mut sent = sent.unwrap_or_else(|| json!({}));
                            sent["active"] = json!(false);
                            self.record_ok(
                                t,
                                local_id,
                                Some(&remote_id),
                                Some(&sent),
                                ObjectState::Deactivated,
                                json!({"action": "deactivated"}),
                            )
                            .await?;
                            Ok(())
                        }
                        Err(e) if e.is_not_found() => {
                            self.store
                                .outbound()
                                .forget_object(&t.org_id, &t.id, ResourceKind::User, local_id)
                                .await?;
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                UserAction::Delete { remote_id } => {
                    remote.delete_user(&remote_id).await?;
                    tally.counts.deleted += 1;
                    self.record_ok(t, local_id, Some(&remote_id), None, ObjectState::Deleted, json!({"action": "deleted"}))
                        .await?;
                    self.store
                        .outbound()
                        .forget_object(&t.org_id, &t.id, ResourceKind::User, local_id)
                        .await?;
                    Ok(())
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => {
                tally.failing_streak = 0;
                Ok(())
            }
            Err(PushError::Store(e)) => Err(e),
            Err(e) => {
                tally.counts.failed += 1;
                let (status, against_target) = match &e {
                    PushError::Target(c) => (c.status, c.counts_against_target()),
                    _ => (None, false),
                };
                if against_target {
                    tally.target_failures += 1;
                    tally.failing_streak += 1;
                    tally.last_error = Some(e.to_string());
                } else {
                    tally.failing_streak = 0;
                }
                self.record_failed(t, row, local_id, name, e.to_string(), status).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_linked(
        &self,
        t: &Target,
        local_id: &str,
        remote_id: &str,
        doc: &Value,
        by: Option<MatchedBy>,
        changes: &[AttributeChange],
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        let data = match by {
            None => {
                tally.counts.created += 1;
                json!({"action": "created"})
            }
            Some(by) => {
                tally.counts.linked += 1;
                json!({"action": "linked", "matched_by": by, "changed": changes.iter().map(|c| c.attribute.as_str()).collect::<Vec<_>>()})
            }
        };
        self.record_ok(t, local_id, Some(remote_id), Some(doc), ObjectState::Synced, data)
            .await
    }

    // --- runs ---------------------------------------------------------------------------------

    /// A full reconciliation of a leased target.
    pub async fn run_full(&self, t: &Target, owner: &str) -> Result<Run, EngineError> {
        let ob = self.store.outbound();
        // The events so far are covered by this run: move the cursor past them first.
        let mut cursor = t.cursor_seq;
        loop {
            let evs = self.store.webhook_events(Some(&t.org_id), cursor, 1000).await?;
            let Some(last) = evs.last().map(|e| e.seq) else { break };
            if !ob
                .advance_target(&t.id, owner, cursor, last, now_us() + self.config.lease_us())
                .await?
            {
                return Err(EngineError::LeaseLost);
            }
            cursor = last;
        }
        let mut run = ob.start_run(&Self::ctx(t), &t.id, RunKind::Full).await?;
        let result = self.full_body(t, owner, &mut run, cursor).await;
        self.finish(t, run, result).await
    }

    async fn full_body(&self, t: &Target, owner: &str, run: &mut Run, cursor: i64) -> Result<Tally, EngineError> {
        let remote = self.connect_with(t, true).await?;
        let desired = self.desired_users(t, remote.profile()).await?;
        let rows = self.mapping(t).await?;
        let mut tally = Tally::default();
        tally.counts.users_in_scope = desired.len() as u64;
        // Read back where the target can be listed: drift and vanished users are seen.
        let index = match remote.list_users().await {
            Ok(Some(users)) => Some(RemoteIndex::new(users)),
            Ok(None) => None,
            Err(e) if e.counts_against_target() => return Err(e.into()),
            Err(_) => None,
        };
        if let Some(ix) = &index {
            tally.counts.read_back = ix.len() as u64;
        }
        let known = rows
            .values()
            .filter(|o| o.kind == ResourceKind::User && o.remote_id.is_some() && o.state != ObjectState::Deactivated)
            .count() as u64;
        // Decide everything first (the deletion threshold looks at the whole run).
        let mut work: Vec<(String, Option<Value>, UserAction)> = Vec::new();
        for (id, (_, doc)) in &desired {
            let mut row = rows.get(&(ResourceKind::User, id.clone())).cloned();
            let mut repaired = false;
            if let (Some(ix), Some(r)) = (&index, row.as_mut())
                && let Some(remote_id) = r.remote_id.clone()
            {
                match ix.get(&remote_id) {
                    // Vanished: create (or link) again.
                    None => r.remote_id = None,
                    Some(u) if r.state == ObjectState::Synced && !covers(&u.doc, doc) => {
                        // Drift: what is there differs from what was sent.
                        r.sent = Some(u.doc.clone());
                        r.state = ObjectState::Pending;
                        repaired = true;
                    }
                    _ => {}
                }
            }
            // Not listed: a create searches before it posts (see `apply`).
            let found = match (&index, row.as_ref().and_then(|r| r.remote_id.as_ref())) {
                (Some(ix), None) => lookup(&match_keys(doc), |by, v| ix.find(by, v)),
                _ => (Found::None, None),
            };
            let action = decide_user(Some(doc), row.as_ref(), t.deprovision, |_| found);
            if let Some(mut a) = action {
                if let UserAction::Update { changes, .. } = &mut a
                    && repaired
                {
                    changes.retain(|c| !c.after.is_null());
                    tally.counts.repaired += 1;
                }
                work.push((id.clone(), Some(doc.clone()), a));
            }
        }
        let mut removals = 0u64;
        for ((kind, id), row) in &rows {
            if *kind != ResourceKind::User || desired.contains_key(id) {
                continue;
            }
            if let Some(a) = decide_user(None, Some(row), t.deprovision, |_| (Found::None, None)) {
                removals += 1;
                work.push((id.clone(), None, a));
            }
        }
        let paused = t.deletion_threshold.exceeded(removals, known);
        if paused {
            self.pause_for_threshold(t, removals, known).await?;
            work.retain(|(_, _, a)| !a.removes());
        }
        let mut lease = LeaseKeeper::new(self.store.outbound(), t, owner, self.config.lease_us());
        for (id, doc, action) in work {
            let row = rows.get(&(ResourceKind::User, id.clone()));
            self.apply(t, &remote, &id, row, doc.as_ref(), action, index.is_some(), &mut tally)
                .await?;
            // A target failing call after call stops the run: it stays due, and is tried again
            // after the backoff.
            tally.check_streak()?;
            if lease.tick(cursor).await? {
                tally.counts.requests = remote.requests();
                self.store
                    .outbound()
                    .run_progress(&t.org_id, &t.id, &run.id, &tally.counts)
                    .await?;
            }
        }
        self.push_groups(t, &remote, &mut tally).await?;
        tally.counts.requests = remote.requests();
        if paused {
            run.status = RunStatus::Paused;
        }
        Ok(tally)
    }

    async fn pause_for_threshold(&self, t: &Target, removals: u64, known: u64) -> Result<(), StoreError> {
        let reason = format!(
            "a run would have deprovisioned {removals} of the {known} users the target has from Rollcall, more than the deletion threshold allows; read the plan, then resume the target"
        );
        let data = target_event(
            t,
            json!({"status": "paused", "reason": reason, "removals": removals, "users_known": known, "threshold": t.deletion_threshold}),
        );
        self.store
            .outbound()
            .set_target_status(
                &Self::ctx(t),
                &t.id,
                TargetStatus::Paused,
                Some(&reason),
                events::PROVISIONING_TARGET_PAUSED,
                data,
            )
            .await?;
        Ok(())
    }

    /// Changes from the event log of a leased target: the users and groups they touch are pushed,
    /// then the cursor moves past them. `None` when nothing touched the target (no run recorded).
    pub async fn run_events(&self, t: &Target, owner: &str) -> Result<Option<Run>, EngineError> {
        let ob = self.store.outbound();
        let evs = self
            .store
            .webhook_events(Some(&t.org_id), t.cursor_seq, self.config.batch)
            .await?;
        let last = evs.last().map_or(t.cursor_seq, |e| e.seq);
        let mut users: BTreeSet<String> = BTreeSet::new();
        let mut groups_touched = false;
        for e in &evs {
            if e.kind.starts_with("provisioning.") {
                continue;
            }
            match (e.resource_type.as_deref(), e.resource_id.as_deref()) {
                (Some("User"), Some(id)) => {
                    users.insert(id.to_string());
                }
                (Some("Group"), Some(gid)) => {
                    let relevant =
                        t.scope.groups.iter().any(|g| g == gid) || t.scope.push_groups.iter().any(|g| g == gid);
                    if t.scope.push_groups.iter().any(|g| g == gid) {
                        groups_touched = true;
                    }
                    if let Some(m) = e.data.get("member").and_then(Value::as_str)
                        && relevant
                    {
                        users.insert(m.to_string());
                    }
                }
                _ => {}
            }
        }
        // Objects that failed (or whose retry was asked for) and are due again.
        for o in ob.due_objects(&t.org_id, &t.id, now_us(), self.config.batch).await? {
            match o.kind {
                ResourceKind::User => {
                    users.insert(o.local_id);
                }
                ResourceKind::Group => groups_touched = true,
            }
        }
        if users.is_empty() && !groups_touched {
            if last != t.cursor_seq {
                ob.advance_target(&t.id, owner, t.cursor_seq, last, now_us() + self.config.lease_us())
                    .await?;
            }
            return Ok(None);
        }
        let mut run = ob.start_run(&Self::ctx(t), &t.id, RunKind::Events).await?;
        let result = async {
            let remote = self.connect(t).await?;
            let mut tally = Tally::default();
            let mut work = Vec::new();
            for id in &users {
                let row = ob.target_object(&t.org_id, &t.id, ResourceKind::User, id).await?;
                let (_, desired) = self.desired_user(t, remote.profile(), id).await?;
                // No read-back: the mapping table knows what the target has.
                match decide_user(desired.as_ref(), row.as_ref(), t.deprovision, |_| (Found::None, None)) {
                    Some(a) => work.push((id.clone(), row, desired, a)),
                    // Failed before it reached the target, and no longer wanted there: forgotten
                    // (else it would stay due).
                    None if row.as_ref().is_some_and(|r| r.remote_id.is_none()) => {
                        ob.forget_object(&t.org_id, &t.id, ResourceKind::User, id).await?;
                    }
                    None => {}
                }
            }
            let removals = work.iter().filter(|w| w.3.removes()).count() as u64;
            let mut paused = false;
            if removals > 0 {
                let known = self.known_users(t).await?;
                if t.deletion_threshold.exceeded(removals, known) {
                    self.pause_for_threshold(t, removals, known).await?;
                    work.retain(|w| !w.3.removes());
                    paused = true;
                }
            }
            let mut lease = LeaseKeeper::new(ob, t, owner, self.config.lease_us());
            for (id, row, desired, action) in work {
                // A create searches before it posts (searched: false), so a lost answer links.
                self.apply(
                    t,
                    &remote,
                    &id,
                    row.as_ref(),
                    desired.as_ref(),
                    action,
                    false,
                    &mut tally,
                )
                .await?;
                // A target failing call after call stops the run before the cursor moves: the
                // events are read again after the backoff (what was pushed is unchanged then).
                tally.check_streak()?;
                lease.tick(t.cursor_seq).await?;
            }
            if groups_touched {
                self.push_groups(t, &remote, &mut tally).await?;
            }
            tally.counts.requests = remote.requests();
            Ok::<_, EngineError>((tally, paused))
        }
        .await;
        let result = match result {
            Ok((tally, paused)) => {
                if paused {
                    run.status = RunStatus::Paused;
                }
                Ok(tally)
            }
            Err(e) => Err(e),
        };
        let failed = result.is_err();
        let run = self.finish(t, run, result).await?;
        if !failed {
            ob.advance_target(&t.id, owner, t.cursor_seq, last, now_us() + self.config.lease_us())
                .await?;
        }
        Ok(Some(run))
    }

    async fn known_users(&self, t: &Target) -> Result<u64, EngineError> {
        Ok(self
            .mapping(t)
            .await?
            .values()
            .filter(|o| o.kind == ResourceKind::User && o.remote_id.is_some() && o.state != ObjectState::Deactivated)
            .count() as u64)
    }

    /// Records how a run ended, and quarantines a target most of whose calls failed (or takes a
    /// quarantined target out of quarantine when its run succeeded).
    async fn finish(&self, t: &Target, mut run: Run, result: Result<Tally, EngineError>) -> Result<Run, EngineError> {
        let ob = self.store.outbound();
        run.finished_us = Some(now_us());
        match result {
            Ok(tally) => {
                run.counts = tally.counts;
                if run.status == RunStatus::Running {
                    run.status = if run.counts.failed > 0 {
                        RunStatus::Partial
                    } else {
                        RunStatus::Succeeded
                    };
                }
                let quarantine = tally.attempted >= 5 && tally.target_failures * 2 > tally.attempted;
                if quarantine && t.status != TargetStatus::Quarantined {
                    run.error = Some(format!(
                        "{} of {} objects failed because of the target",
                        tally.target_failures, tally.attempted
                    ));
                    self.quarantine(
                        t,
                        run.error.clone().unwrap_or_default(),
                        tally.target_failures,
                        run.counts.requests,
                    )
                    .await?;
                } else if !quarantine && t.status == TargetStatus::Quarantined {
                    ob.set_target_status(
                        &Self::ctx(t),
                        &t.id,
                        TargetStatus::Enabled,
                        None,
                        events::PROVISIONING_TARGET_RESUMED,
                        target_event(t, json!({"status": "enabled", "status_before": "quarantined"})),
                    )
                    .await?;
                }
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
                if let EngineError::Store(_) = e {
                    ob.finish_run(&Self::ctx(t), &run).await.ok();
                    return Err(e);
                }
            }
        }
        ob.finish_run(&Self::ctx(t), &run).await?;
        Ok(run)
    }

    async fn quarantine(&self, t: &Target, reason: String, failed: u64, requests: u64) -> Result<(), StoreError> {
        let next = now_us() + self.config.quarantine_base.as_micros() as i64;
        let data = target_event(
            t,
            json!({"status": "quarantined", "reason": reason, "failed": failed, "requests": requests,
                   "next_attempt_us": next}),
        );
        self.store
            .outbound()
            .set_target_status(
                &Self::ctx(t),
                &t.id,
                TargetStatus::Quarantined,
                Some(&reason),
                events::PROVISIONING_TARGET_QUARANTINED,
                data,
            )
            .await?;
        Ok(())
    }

    // --- groups -------------------------------------------------------------------------------

    /// Pushes the target's groups: each with its members that are on the target (from the mapping
    /// table: never read back, so targets that do not return members work the same), created or
    /// linked by displayName, members added and removed in chunks; groups no longer pushed are
    /// deleted.
    async fn push_groups(&self, t: &Target, remote: &Remote, tally: &mut Tally) -> Result<(), EngineError> {
        if !remote.profile().groups.supported {
            return Ok(());
        }
        let ob = self.store.outbound();
        let rows = self.mapping(t).await?;
        let user_remote: HashMap<&str, &str> = rows
            .values()
            .filter(|o| o.kind == ResourceKind::User && o.state == ObjectState::Synced)
            .filter_map(|o| o.remote_id.as_deref().map(|r| (o.local_id.as_str(), r)))
            .collect();
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for gid in &t.scope.push_groups {
            let gs = self
                .store
                .directory_groups(
                    &t.org_id,
                    &GroupQuery {
                        id: Some(gid.clone()),
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await?;
            let Some(g) = gs.into_iter().next() else { continue };
            wanted.insert(g.id.clone());
            let mut members: Vec<String> = Vec::new();
            let mut after = 0;
            loop {
                let page = self.store.directory_group_members(&g, after, 1000).await?;
                let Some(last) = page.last().map(|m| m.pk) else { break };
                after = last;
                members.extend(
                    page.iter()
                        .filter(|m| m.kind == "User")
                        .filter_map(|m| user_remote.get(m.id.as_str()).map(|r| r.to_string())),
                );
            }
            members.sort();
            members.dedup();
            let doc =
                json!({"displayName": g.display_name.clone().unwrap_or_else(|| g.id.clone()), "externalId": g.id});
            let row = rows.get(&(ResourceKind::Group, g.id.clone()));
            tally.attempted += 1;
            let outcome: Result<(), PushError> = async {
                let (remote_id, before): (String, Vec<String>) = match row.and_then(|r| r.remote_id.clone()) {
                    Some(id) => {
                        let sent = row.and_then(|r| r.sent.clone()).unwrap_or_default();
                        let changes: Vec<AttributeChange> = ["displayName", "externalId"]
                            .iter()
                            .filter(|k| sent.get(**k) != doc.get(**k))
                            .map(|k| AttributeChange {
                                attribute: k.to_string(),
                                before: sent.get(*k).cloned().unwrap_or(Value::Null),
                                after: doc[*k].clone(),
                            })
                            .collect();
                        if !changes.is_empty() {
                            remote.update_group(&id, &changes).await?;
                            tally.counts.groups_updated += 1;
                        }
                        let before = sent
                            .get("members")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                            .unwrap_or_default();
                        (id, before)
                    }
                    None => {
                        let found = if remote.profile().filter.can_find_groups_by("displayName") {
                            remote.find_groups("displayName", doc["displayName"].as_str().unwrap_or("")).await?
                        } else {
                            Vec::new()
                        };
                        match found.len() {
                            0 => {
                                let g = remote.create_group(&doc, &members).await?;
                                tally.counts.groups_created += 1;
                                let on_create = if remote.profile().groups.members_on_create {
                                    members.clone()
                                } else {
                                    Vec::new()
                                };
                                (g.id, on_create)
                            }
                            1 => {
                                // Linked: its members as read, where the target returns them.
                                let g = &found[0];
                                let before = if remote.profile().groups.members_read_back {
                                    g.doc
                                        .get("members")
                                        .and_then(Value::as_array)
                                        .map(|a| {
                                            a.iter()
                                                .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_string))
                                                .collect()
                                        })
                                        .unwrap_or_default()
                                } else {
                                    Vec::new()
                                };
                                (g.id.clone(), before)
                            }
                            _ => {
                                return Err(PushError::Other(format!(
                                    "{} groups named \"{}\" on the target",
                                    found.len(),
                                    doc["displayName"].as_str().unwrap_or("")
                                )));
                            }
                        }
                    }
                };
                let before: BTreeSet<&String> = before.iter().collect();
                let after: BTreeSet<&String> = members.iter().collect();
                let add: Vec<String> = after.difference(&before).map(|s| s.to_string()).collect();
                let remove: Vec<String> = before.difference(&after).map(|s| s.to_string()).collect();
                if !add.is_empty() || !remove.is_empty() {
                    remote.change_members(&remote_id, &add, &remove).await?;
                    if row.is_some() {
                        tally.counts.groups_updated += 1;
                    }
                }
                let mut sent = doc.clone();
                sent["members"] = json!(members);
                let o = TargetObject {
                    target_id: t.id.clone(),
                    kind: ResourceKind::Group,
                    local_id: g.id.clone(),
                    remote_id: Some(remote_id.clone()),
                    sent: Some(sent),
                    state: ObjectState::Synced,
                    error: None,
                    attempts: 0,
                    retry_at_us: None,
                    updated_us: now_us(),
                };
                let changed = row.is_none() || !add.is_empty() || !remove.is_empty();
                let event = changed.then(|| {
                    (
                        events::PROVISIONING_OBJECT_PUSHED,
                        json!({"target": t.id, "action": if row.is_none() { "created" } else { "updated" }, "remote_id": remote_id,
                               "members_added": add.len(), "members_removed": remove.len()}),
                    )
                });
                ob.record_object(&Self::ctx(t), &o, event).await?;
                Ok(())
            }
            .await;
            match outcome {
                Ok(()) => {}
                Err(PushError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    tally.counts.failed += 1;
                    let o = TargetObject {
                        target_id: t.id.clone(),
                        kind: ResourceKind::Group,
                        local_id: g.id.clone(),
                        remote_id: row.and_then(|r| r.remote_id.clone()),
                        sent: row.and_then(|r| r.sent.clone()),
                        state: ObjectState::Failed,
                        error: Some(e.to_string()),
                        attempts: row.map_or(0, |r| r.attempts) + 1,
                        retry_at_us: self.retry_at(row.map_or(0, |r| r.attempts) + 1),
                        updated_us: now_us(),
                    };
                    ob.record_object(
                        &Self::ctx(t),
                        &o,
                        Some((
                            events::PROVISIONING_OBJECT_FAILED,
                            json!({"target": t.id, "action": "push", "error": e.to_string()}),
                        )),
                    )
                    .await?;
                }
            }
        }
        // Groups pushed before and no longer: deleted on the target.
        for ((kind, id), row) in &rows {
            if *kind != ResourceKind::Group || wanted.contains(id) {
                continue;
            }
            match &row.remote_id {
                Some(r) => match remote.delete_group(r).await {
                    Ok(()) => {
                        tally.counts.groups_deleted += 1;
                        ob.forget_object(&t.org_id, &t.id, ResourceKind::Group, id).await?;
                    }
                    Err(e) => tracing::warn!(target_id = %t.id, group = %id, error = %e, "deleting a group failed"),
                },
                // Never reached the target (its push failed): nothing to delete there.
                None => {
                    ob.forget_object(&t.org_id, &t.id, ResourceKind::Group, id).await?;
                }
            }
        }
        Ok(())
    }

    // --- the worker ---------------------------------------------------------------------------

    /// Works on one leased target: a full run when one is due, else the events after its cursor.
    pub async fn work(&self, t: Target, owner: &str) {
        let ob = self.store.outbound();
        let now = now_us();
        let full = t.next_full_us <= now;
        let outcome = if full {
            self.run_full(&t, owner).await.map(Some)
        } else {
            self.run_events(&t, owner).await
        };
        let failed_with = match &outcome {
            Ok(Some(run)) if run.status == RunStatus::Failed => Some(run.error.clone().unwrap_or_default()),
            Err(e) => Some(e.to_string()),
            _ => None,
        };
        let release = match failed_with {
            // Runs failing again and again (the target down, refusing the credentials): quarantined,
            // retried on the longer schedule, with the reason shown.
            Some(error) if t.failures + 1 >= QUARANTINE_AFTER_FAILED_RUNS => {
                if t.status != TargetStatus::Quarantined {
                    let reason = format!("{} runs in a row failed; the last: {error}", t.failures + 1);
                    if let Err(e) = self.quarantine(&t, reason, 0, 0).await {
                        tracing::warn!(target_id = %t.id, error = %e, "quarantining a target failed");
                    }
                }
                TargetRelease {
                    failures: t.failures + 1,
                    next_attempt_us: now_us() + self.quarantine_delay(t.failures + 1).as_micros() as i64,
                    next_full_us: None,
                }
            }
            Some(_) => self.backoff(&t),
            _ => {
                let quarantined = matches!(
                    ob.get_target(&t.org_id, &t.id).await,
                    Ok(Some(cur)) if cur.status == TargetStatus::Quarantined
                );
                TargetRelease {
                    failures: if quarantined { t.failures + 1 } else { 0 },
                    next_attempt_us: if quarantined {
                        now_us() + self.quarantine_delay(t.failures + 1).as_micros() as i64
                    } else {
                        0
                    },
                    next_full_us: full.then(|| now_us() + t.interval_s * 1_000_000),
                }
            }
        };
        if let Err(e) = &outcome {
            tracing::warn!(target_id = %t.id, error = %e, "provisioning run failed");
        }
        if let Err(e) = ob.release_target(&t.id, owner, &release).await {
            tracing::warn!(target_id = %t.id, error = %e, "releasing a provisioning target failed");
        }
    }

    fn backoff(&self, t: &Target) -> TargetRelease {
        let failures = t.failures + 1;
        let exp = (failures.clamp(1, 20) - 1) as u32;
        let delay = self
            .config
            .retry_base
            .saturating_mul(1 << exp.min(16))
            .min(self.config.max_backoff);
        TargetRelease {
            failures,
            next_attempt_us: now_us() + delay.as_micros() as i64,
            // A failed full run stays due: it is tried again when the backoff ends.
            next_full_us: None,
        }
    }

    /// When a failed object is pushed again on its own after `attempts` failures: `retry_base`
    /// doubled per attempt up to `max_backoff`; `None` after the last automatic attempt.
    fn retry_at(&self, attempts: i64) -> Option<i64> {
        if attempts >= MAX_OBJECT_ATTEMPTS {
            return None;
        }
        let exp = (attempts.clamp(1, 20) - 1) as u32;
        let delay = self
            .config
            .retry_base
            .saturating_mul(1 << exp.min(16))
            .min(self.config.max_backoff);
        Some(now_us() + delay.as_micros() as i64)
    }

    fn quarantine_delay(&self, failures: i64) -> Duration {
        let exp = (failures.clamp(1, 20) - 1) as u32;
        self.config
            .quarantine_base
            .saturating_mul(1 << exp.min(10))
            .min(self.config.max_backoff)
    }

    /// Runs the worker until `shutdown` completes: leases targets with work and runs them. Every
    /// write on this node wakes the worker, and every round is a claim statement; as in the webhook
    /// dispatcher, wake-ups within [`WAKE_GAP`] of a round's start start one round when it has
    /// passed (a wake-up after a quiet moment starts one at once).
    pub async fn run_worker(self: Arc<Self>, node: String, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(node = %node, "outbound provisioning worker running");
        loop {
            let round = tokio::time::Instant::now();
            let free = self.config.concurrency.saturating_sub(tasks.len());
            if free > 0 {
                let now = now_us();
                match self
                    .store
                    .outbound()
                    .claim_targets(&node, now, now + self.config.lease_us(), free as i64)
                    .await
                {
                    Ok(claimed) => {
                        for t in claimed {
                            let me = self.clone();
                            let owner = node.clone();
                            tasks.spawn(async move { me.work(t, &owner).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming provisioning targets failed"),
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => tokio::time::sleep_until(round + WAKE_GAP).await,
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
        tracing::info!(node = %node, "outbound provisioning worker stopped");
    }

    /// Claims one target now (if its lease is free and it has work) and runs it here: for tests
    /// and the command line.
    pub async fn run_once(&self, node: &str) -> Result<usize, EngineError> {
        let now = now_us();
        let claimed = self
            .store
            .outbound()
            .claim_targets(node, now, now + self.config.lease_us(), 100)
            .await?;
        let n = claimed.len();
        for t in claimed {
            self.work(t, node).await;
        }
        Ok(n)
    }
}

/// Why pushing one object failed.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("{0}")]
    Target(#[from] ClientError),
    #[error("{} remote users match by {}: {}; link one by hand or remove the duplicates", .1.len(), .0.attribute(), .1.join(", "))]
    Ambiguous(MatchedBy, Vec<String>),
    #[error("{0}")]
    Other(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}
