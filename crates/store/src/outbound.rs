//! Outbound provisioning (issue #15): what the store keeps for pushing an organization's directory
//! on to downstream SCIM applications ("provisioning targets").
//!
//! - A [`Target`] per downstream application: its base URL, how Rollcall authenticates to it (the
//!   secret part sealed with [`crate::secrets`], context `provisioning_credentials:<target id>`,
//!   never returned), its profile key (the vendor's rules, in `rollcall-outbound`), what is pushed
//!   ([`TargetScope`], [`AttributeMapping`]), what deprovisioning means, its status, the deletion
//!   threshold of a run, whether its push is approved, and the state of its synchronisation: the
//!   event-log cursor and a lease (a node pushes a target only while it holds it, so two nodes
//!   never push the same target at once, as webhook delivery does).
//! - The mapping table ([`TargetObject`]): (target, local object) → remote id, with the
//!   attributes last sent and the object's state and last error.
//! - Run history ([`Run`]).
//!
//! Every change is recorded with its `provisioning.*` event in the same transaction. The
//! statements are written once for both databases ([`OutboundSql`]), and so is the store that runs
//! them (`outbound_stores.rs`, instantiated per backend).

use crate::model::{ResourceKind, WriteContext};
use crate::secrets::SecretKeys;
use crate::sql::Dialect;
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use rollcall_scim::ScimError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The purpose of provisioning credentials in the sealed values' associated data.
pub const PROVISIONING_CREDENTIALS: &str = "provisioning_credentials";

/// The context of a target's credentials.
pub fn credentials_context(target_id: &str) -> String {
    format!("{PROVISIONING_CREDENTIALS}:{target_id}")
}

/// The default time between two full reconciliations: one hour.
pub const DEFAULT_INTERVAL_S: i64 = 3600;
pub const MIN_INTERVAL_S: i64 = 60;
pub const MAX_INTERVAL_S: i64 = 7 * 24 * 3600;
/// The longest error kept with an object or a run.
pub const MAX_ERROR_BYTES: usize = 2000;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? } $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let folded = s.to_ascii_lowercase().replace('-', "_");
                $(if folded == $text { return Ok($name::$variant); })+
                Err(format!(
                    concat!("unknown ", $what, " \"{}\"; expected one of: {}"),
                    s,
                    [$($text),+].join(", ")
                ))
            }
        }
    };
}

text_enum!(
    /// How Rollcall authenticates to a target.
    AuthKind {
        /// `Authorization: Bearer <token>`; the token is the credential.
        Bearer = "bearer",
        /// HTTP Basic; the password is the credential.
        Basic = "basic",
        /// OAuth 2.0 client credentials; the client secret is the credential.
        OauthClientCredentials = "oauth_client_credentials",
    } "auth kind"
);

text_enum!(
    /// What deprovisioning a user means on a target.
    Deprovision {
        /// `active: false` (the default: reversible).
        Deactivate = "deactivate",
        /// `DELETE` (what that means is the target's: see its profile).
        Delete = "delete",
    } "deprovision mode"
);

text_enum!(
    /// Whether a target is pushed to.
    TargetStatus {
        Enabled = "enabled",
        /// By an operator, or by the deletion threshold: nothing is pushed until it is resumed.
        Paused = "paused",
        /// Most calls failed: retried on a longer schedule until a run succeeds.
        Quarantined = "quarantined",
    } "target status"
);

text_enum!(
    /// The state of one object in the mapping table.
    ObjectState {
        /// Pushed: the target has what `sent` says.
        Synced = "synced",
        /// To push at the next run (an operator's retry, or a change not pushed yet).
        Pending = "pending",
        /// The last push failed (see the error); retried at the next full run, or on demand.
        Failed = "failed",
        /// Deprovisioned by deactivation.
        Deactivated = "deactivated",
        /// Deprovisioned by deletion.
        Deleted = "deleted",
    } "object state"
);

text_enum!(
    /// What a run does.
    RunKind {
        /// Changes from the event log.
        Events = "events",
        /// Full reconciliation: every object in scope, read back where the profile allows.
        Full = "full",
    } "run kind"
);

text_enum!(
    /// How a run ended.
    RunStatus {
        Running = "running",
        Succeeded = "succeeded",
        /// Some objects failed (see the objects' errors).
        Partial = "partial",
        Failed = "failed",
        /// Stopped by the deletion threshold: the target is paused.
        Paused = "paused",
    } "run status"
);

/// The parts of a target's authentication that are not secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Basic: the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// OAuth 2.0: the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth 2.0: the client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth 2.0: the scope asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl AuthSettings {
    /// Refuses settings that do not fit the kind.
    pub fn validate(&self, kind: AuthKind) -> Result<(), String> {
        match kind {
            AuthKind::Bearer => Ok(()),
            AuthKind::Basic if self.username.as_deref().is_none_or(str::is_empty) => {
                Err("Basic authentication needs a username".into())
            }
            AuthKind::Basic => Ok(()),
            AuthKind::OauthClientCredentials => {
                if self.token_url.as_deref().is_none_or(str::is_empty)
                    || self.client_id.as_deref().is_none_or(str::is_empty)
                {
                    Err("OAuth 2.0 client credentials need a token_url and a client_id".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// What a target receives. Users: the active users of `connections` and the active members of
/// `groups` (both empty: every active user of the organization). Groups: those of `push_groups`,
/// with their members that are in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetScope {
    /// Connection ids.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Group ids (Rollcall's).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Group ids (Rollcall's) pushed as groups.
    #[serde(default)]
    pub push_groups: Vec<String>,
}

impl TargetScope {
    pub fn is_everyone(&self) -> bool {
        self.connections.is_empty() && self.groups.is_empty()
    }
}

/// The attributes sent, beside the defaults: target attribute path → where its value comes from
/// (`None`: do not send that attribute).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributeMapping(pub BTreeMap<String, Option<MappingSource>>);

impl AttributeMapping {
    /// Sends `target` from the attribute at `source` of the user's document.
    pub fn path(mut self, target: &str, source: &str) -> Self {
        self.0.insert(target.into(), Some(MappingSource::Path(source.into())));
        self
    }

    /// Sends `value` as `target` for every user.
    pub fn constant(mut self, target: &str, value: Value) -> Self {
        self.0
            .insert(target.into(), Some(MappingSource::Constant(ConstantValue { value })));
        self
    }
}

/// Where a mapped attribute's value comes from: an attribute path of the user's SCIM document
/// (`"department"`, `"name.givenName"`), or a constant, the same for every user
/// (`{"value": [{"value": "00e5g000001AbCd"}]}`: Salesforce's profile entitlement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MappingSource {
    Path(String),
    Constant(ConstantValue),
}

impl From<&str> for MappingSource {
    fn from(path: &str) -> MappingSource {
        MappingSource::Path(path.to_string())
    }
}

/// A constant mapped value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantValue {
    pub value: Value,
}

/// A target's own rate limit, in place of its profile's (a token bucket over every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests a minute, sustained (1–100,000).
    pub per_minute: u32,
    /// Requests at once after a pause (1–10,000; default: a tenth of `per_minute`, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.per_minute) {
            return Err("rate_limit.per_minute must be from 1 to 100000".into());
        }
        if self.burst.is_some_and(|b| !(1..=10_000).contains(&b)) {
            return Err("rate_limit.burst must be from 1 to 10000".into());
        }
        Ok(())
    }

    /// The burst in force.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or((self.per_minute / 10).max(1))
    }
}

/// When a run stops: more than `max_percent` % of the users in scope, or more than `max_users`,
/// deactivated or deleted in one run pauses the target (`None`: that rule is off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionThreshold {
    #[serde(default = "default_max_percent")]
    pub max_percent: Option<u32>,
    #[serde(default = "default_max_users")]
    pub max_users: Option<u32>,
}

fn default_max_percent() -> Option<u32> {
    Some(10)
}
fn default_max_users() -> Option<u32> {
    Some(50)
}

impl Default for DeletionThreshold {
    fn default() -> Self {
        DeletionThreshold {
            max_percent: default_max_percent(),
            max_users: default_max_users(),
        }
    }
}

impl DeletionThreshold {
    pub fn validate(&self) -> Result<(), String> {
        match self.max_percent {
            Some(p) if !(1..=100).contains(&p) => Err(format!(
                "max_percent must be between 1 and 100 (or null for no percentage rule), not {p}"
            )),
            _ => Ok(()),
        }
    }

    /// Whether `removals` deactivations or deletions in one run, out of `known` users the target
    /// had from Rollcall before it, are too many.
    pub fn exceeded(&self, removals: u64, known: u64) -> bool {
        if removals == 0 {
            return false;
        }
        self.max_users.is_some_and(|m| removals > u64::from(m))
            || self
                .max_percent
                .is_some_and(|p| removals.saturating_mul(100) > u64::from(p).saturating_mul(known))
    }
}

/// A provisioning target.
#[derive(Clone, PartialEq)]
pub struct Target {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub base_url: String,
    pub auth_kind: AuthKind,
    pub auth: AuthSettings,
    /// The secret (token, password or client secret), opened. Never serialized, never printed.
    pub credentials: String,
    /// The profile key (`generic`, `aws`, `github`, …).
    pub profile: String,
    pub scope: TargetScope,
    pub mapping: AttributeMapping,
    pub deprovision: Deprovision,
    pub status: TargetStatus,
    pub status_reason: Option<String>,
    pub deletion_threshold: DeletionThreshold,
    /// The target's own rate limit (`None`: its profile's).
    pub rate_limit: Option<RateLimit>,
    /// When the push was approved; `None`: it waits for approval (new target, or its scope or
    /// mapping changed since).
    pub approved_us: Option<i64>,
    /// The last event of the log this target has seen.
    pub cursor_seq: i64,
    /// Time between full reconciliations.
    pub interval_s: i64,
    pub next_full_us: i64,
    /// Failed runs in a row, and when the next may start.
    pub failures: i64,
    pub next_attempt_us: i64,
    pub lease_owner: Option<String>,
    pub lease_until_us: Option<i64>,
    pub created_us: i64,
    pub updated_us: i64,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("auth_kind", &self.auth_kind)
            .field("auth", &self.auth)
            .field("credentials", &"<redacted>")
            .field("profile", &self.profile)
            .field("status", &self.status)
            .field("approved_us", &self.approved_us)
            .field("cursor_seq", &self.cursor_seq)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Whether runs may push to it.
    pub fn approved(&self) -> bool {
        self.approved_us.is_some()
    }
}

/// What is needed to create a target.
#[derive(Clone)]
pub struct NewTarget {
    pub org_id: String,
    pub name: String,
    pub base_url: String,
    pub auth_kind: AuthKind,
    pub auth: AuthSettings,
    /// In clear: sealed before it is written.
    pub credentials: String,
    pub profile: String,
    pub scope: TargetScope,
    pub mapping: AttributeMapping,
    pub deprovision: Deprovision,
    pub deletion_threshold: DeletionThreshold,
    /// The target's own rate limit (`None`: its profile's).
    pub rate_limit: Option<RateLimit>,
    pub interval_s: i64,
    /// Approved at creation (the operator has seen the plan, or asks for no approval).
    pub approved: bool,
}

/// A change to a target; `None` leaves a field as it is. A new scope or mapping withdraws the
/// approval: the next push waits for the operator again.
#[derive(Clone, Default)]
pub struct TargetUpdate {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub auth: Option<(AuthKind, AuthSettings)>,
    pub credentials: Option<String>,
    pub profile: Option<String>,
    pub scope: Option<TargetScope>,
    pub mapping: Option<AttributeMapping>,
    pub deprovision: Option<Deprovision>,
    pub deletion_threshold: Option<DeletionThreshold>,
    /// `Some(None)`: back to the profile's rate limit.
    pub rate_limit: Option<Option<RateLimit>>,
    pub interval_s: Option<i64>,
    /// `Enabled` resumes a paused or quarantined target; `Paused` pauses it (`Quarantined` is
    /// refused: only runs quarantine).
    pub status: Option<TargetStatus>,
}

/// One object in the mapping table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetObject {
    pub target_id: String,
    /// `User` or `Group`.
    pub kind: ResourceKind,
    pub local_id: String,
    /// `None` while the object is not (yet) on the target.
    pub remote_id: Option<String>,
    /// The attributes last sent (the remote document as Rollcall shaped it).
    pub sent: Option<Value>,
    pub state: ObjectState,
    pub error: Option<String>,
    /// Failed pushes in a row.
    pub attempts: i64,
    /// When a failed (or retried) object is pushed again on its own; `None` once synced, or after
    /// the last automatic attempt.
    pub retry_at_us: Option<i64>,
    pub updated_us: i64,
}

/// Which objects to list.
#[derive(Debug, Clone, Default)]
pub struct ObjectQuery {
    pub state: Option<ObjectState>,
    pub kind: Option<ResourceKind>,
    /// Objects after this `(kind, local id)`, in that order.
    pub after: Option<(ResourceKind, String)>,
    pub limit: i64,
}

/// What a run did, and (while it runs) how far it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    pub users_in_scope: u64,
    pub created: u64,
    pub linked: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub groups_created: u64,
    pub groups_updated: u64,
    pub groups_deleted: u64,
    /// Remote objects read back (full runs, where the profile allows).
    pub read_back: u64,
    /// Drift repaired: a remote object that differed from what was sent.
    pub repaired: u64,
    pub failed: u64,
    /// HTTP requests made to the target.
    pub requests: u64,
}

/// A run of a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: String,
    pub target_id: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub started_us: i64,
    pub finished_us: Option<i64>,
    pub counts: RunCounts,
    pub error: Option<String>,
}

/// How a leased target is given back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetRelease {
    /// Failed runs in a row (0: the run succeeded).
    pub failures: i64,
    /// When the next run may start (0: at once).
    pub next_attempt_us: i64,
    /// A full run ended: the next is due at this time (unless asked for meanwhile).
    pub next_full_us: Option<i64>,
}

/// The storage of outbound provisioning, implemented by both stores.
#[async_trait]
pub trait OutboundStore: Send + Sync {
    /// Creates a target (its cursor at the end of the log, its first full run due at once — it
    /// runs once approved), recording `provisioning.target_created`; 404 when the organization
    /// does not exist, 409 when the name is taken in it.
    async fn create_target(&self, by: &WriteContext, new: NewTarget) -> StoreResult<Target>;
    /// The targets of an organization, by name.
    async fn list_targets(&self, org_id: &str) -> StoreResult<Vec<Target>>;
    async fn get_target(&self, org_id: &str, id: &str) -> StoreResult<Option<Target>>;
    /// Changes a target, recording `provisioning.target_updated` (credentials: only that they were
    /// replaced), or `provisioning.target_paused` / `provisioning.target_resumed` for a status
    /// change. `None` when it does not exist.
    async fn update_target(
        &self,
        by: &WriteContext,
        org_id: &str,
        id: &str,
        update: TargetUpdate,
    ) -> StoreResult<Option<Target>>;
    /// Deletes a target with its mapping table and runs (the remote objects stay), recording
    /// `provisioning.target_deleted`.
    async fn delete_target(&self, by: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool>;
    /// Approves the push (a full run due at once), recording `provisioning.target_approved`.
    async fn approve_target(&self, by: &WriteContext, org_id: &str, id: &str) -> StoreResult<Option<Target>>;
    /// Sets a target's status from a run (`paused` by the deletion threshold, `quarantined`, or
    /// `enabled` again after a quarantine), with the reason and the event `kind` with `data`.
    async fn set_target_status(
        &self,
        by: &WriteContext,
        id: &str,
        status: TargetStatus,
        reason: Option<&str>,
        kind: &'static str,
        data: Value,
    ) -> StoreResult<bool>;
    /// Makes a full run due at `now_us` (or earlier, as it was). False when the target does not
    /// exist.
    async fn request_target_sync(&self, org_id: &str, id: &str, now_us: i64) -> StoreResult<bool>;
    /// Leases to `owner` until `lease_until_us` up to `limit` approved targets, enabled (or
    /// quarantined) and due (`next_attempt_us <= now_us`), whose lease is free, and that have work:
    /// events of their organization after their cursor, a full run due, or objects due to be pushed
    /// again.
    /// Concurrent callers never receive the same target.
    async fn claim_targets(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> StoreResult<Vec<Target>>;
    /// Moves a target's cursor from `from_seq` to `to_seq` and extends the lease. False (nothing
    /// changed) unless `owner` holds the lease and the cursor is at `from_seq`.
    async fn advance_target(
        &self,
        id: &str,
        owner: &str,
        from_seq: i64,
        to_seq: i64,
        lease_until_us: i64,
    ) -> StoreResult<bool>;
    /// Gives the lease back (if `owner` holds it) with the outcome of the work done under it.
    async fn release_target(&self, id: &str, owner: &str, release: &TargetRelease) -> StoreResult<bool>;

    // The methods below name the target's organization (`org_id`) beside its id: the mapping table
    // and the runs lead with it (docs/scaling.md).
    /// The mapping table of a target, by (kind, local id).
    async fn target_objects(
        &self,
        org_id: &str,
        target_id: &str,
        query: &ObjectQuery,
    ) -> StoreResult<Vec<TargetObject>>;
    async fn target_object(
        &self,
        org_id: &str,
        target_id: &str,
        kind: ResourceKind,
        local_id: &str,
    ) -> StoreResult<Option<TargetObject>>;
    /// Writes one object of the mapping table (insert or replace) and, if given, its event
    /// (`provisioning.object_pushed`, `provisioning.object_failed`) in one transaction.
    async fn record_object(
        &self,
        by: &WriteContext,
        object: &TargetObject,
        event: Option<(&'static str, Value)>,
    ) -> StoreResult<()>;
    /// Removes an object from the mapping table (it is no longer on the target).
    async fn forget_object(
        &self,
        org_id: &str,
        target_id: &str,
        kind: ResourceKind,
        local_id: &str,
    ) -> StoreResult<bool>;
    /// Marks an object to push again at once (state `pending`, due now): the worker claims its
    /// target for it. False when it is not in the mapping table.
    async fn retry_object(
        &self,
        org_id: &str,
        target_id: &str,
        kind: ResourceKind,
        local_id: &str,
    ) -> StoreResult<bool>;
    /// Asks for an object to be pushed soon (due at `now_us`), for just-in-time provisioning: a
    /// row `pending` without a remote id when the mapping table has none; a `synced` one becomes
    /// `pending` (pushed whole again); another keeps its state and attempts.
    async fn request_push(
        &self,
        org_id: &str,
        target_id: &str,
        kind: ResourceKind,
        local_id: &str,
        now_us: i64,
    ) -> StoreResult<()>;
    /// Up to `limit` objects of a target due to be pushed again (`retry_at_us <= now_us`), the
    /// longest waiting first.
    async fn due_objects(
        &self,
        org_id: &str,
        target_id: &str,
        now_us: i64,
        limit: i64,
    ) -> StoreResult<Vec<TargetObject>>;

    /// Starts a run (status `running`), recording `provisioning.run_started`.
    async fn start_run(&self, by: &WriteContext, target_id: &str, kind: RunKind) -> StoreResult<Run>;
    /// Records a running run's counts.
    async fn run_progress(&self, org_id: &str, target_id: &str, run_id: &str, counts: &RunCounts) -> StoreResult<()>;
    /// Records how a run ended, with `provisioning.run_finished`.
    async fn finish_run(&self, by: &WriteContext, run: &Run) -> StoreResult<()>;
    /// Up to `limit` runs of a target started before run `before` (all, without it), newest first.
    async fn list_runs(&self, org_id: &str, target_id: &str, before: Option<&str>, limit: i64)
    -> StoreResult<Vec<Run>>;
}

pub(crate) fn invalid(detail: impl Into<String>) -> StoreError {
    StoreError::Scim(ScimError::invalid_value(detail.into()))
}

pub(crate) fn not_found(what: &str) -> StoreError {
    StoreError::Scim(ScimError::new(404, None, what.to_string()))
}

pub(crate) fn name_taken(name: &str) -> StoreError {
    StoreError::Scim(ScimError::new(
        409,
        Some(rollcall_scim::error::ScimType::Uniqueness),
        format!("the organization already has a provisioning target named \"{name}\""),
    ))
}

/// The error text kept: at most [`MAX_ERROR_BYTES`].
pub fn clip_error(e: &str) -> String {
    crate::webhooks::truncate_utf8(e, MAX_ERROR_BYTES).to_string()
}

pub(crate) fn check_interval(interval_s: i64) -> StoreResult<()> {
    if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&interval_s) {
        return Err(invalid(format!(
            "the reconciliation interval must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} seconds, not {interval_s}"
        )));
    }
    Ok(())
}

pub(crate) fn check_new(new: &NewTarget) -> StoreResult<()> {
    if new.name.trim().is_empty() {
        return Err(invalid("a provisioning target needs a name"));
    }
    check_interval(new.interval_s)?;
    new.auth.validate(new.auth_kind).map_err(invalid)?;
    new.deletion_threshold.validate().map_err(invalid)?;
    if let Some(r) = &new.rate_limit {
        r.validate().map_err(invalid)?;
    }
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// The public view of a target, for events: everything but the credentials.
pub fn target_data(t: &Target) -> Value {
    json!({
        "target": t.id,
        "name": t.name,
        "base_url": t.base_url,
        "auth_kind": t.auth_kind,
        "profile": t.profile,
        "scope": t.scope,
        "deprovision": t.deprovision,
        "status": t.status,
        "rate_limit": t.rate_limit,
    })
}

/// Applies `update` to `t`; returns the data of the event it records (`None`: nothing changed).
pub(crate) fn apply_update(
    t: &mut Target,
    update: TargetUpdate,
    now: i64,
) -> StoreResult<Option<(&'static str, Value)>> {
    let mut changed = serde_json::Map::new();
    macro_rules! set {
        ($field:ident, $key:literal) => {
            if let Some(v) = update.$field
                && v != t.$field
            {
                changed.insert($key.into(), json!({"before": t.$field, "after": v}));
                t.$field = v;
            }
        };
    }
    if let Some(name) = &update.name
        && name.trim().is_empty()
    {
        return Err(invalid("a provisioning target needs a name"));
    }
    set!(name, "name");
    set!(base_url, "base_url");
    set!(profile, "profile");
    set!(deprovision, "deprovision");
    if let Some(th) = &update.deletion_threshold {
        th.validate().map_err(invalid)?;
    }
    set!(deletion_threshold, "deletion_threshold");
    if let Some(Some(r)) = &update.rate_limit {
        r.validate().map_err(invalid)?;
    }
    set!(rate_limit, "rate_limit");
    if let Some(i) = update.interval_s {
        check_interval(i)?;
    }
    set!(interval_s, "interval_s");
    let mut needs_approval = false;
    if let Some(scope) = update.scope
        && scope != t.scope
    {
        changed.insert("scope".into(), json!({"before": t.scope, "after": scope}));
        t.scope = scope;
        needs_approval = true;
    }
    if let Some(mapping) = update.mapping
        && mapping != t.mapping
    {
        changed.insert("mapping".into(), json!({"before": t.mapping, "after": mapping}));
        t.mapping = mapping;
        needs_approval = true;
    }
    if let Some((kind, auth)) = update.auth
        && (kind != t.auth_kind || auth != t.auth)
    {
        auth.validate(kind).map_err(invalid)?;
        changed.insert(
            "auth".into(),
            json!({"before": {"kind": t.auth_kind, "settings": t.auth}, "after": {"kind": kind, "settings": auth}}),
        );
        t.auth_kind = kind;
        t.auth = auth;
    }
    if let Some(c) = update.credentials
        && c != t.credentials
    {
        changed.insert("credentials".into(), json!({"replaced": true}));
        t.credentials = c;
    }
    if needs_approval && t.approved_us.is_some() {
        t.approved_us = None;
        changed.insert("approval".into(), json!({"withdrawn": true}));
    }
    let status_event = match update.status {
        Some(TargetStatus::Quarantined) => {
            return Err(invalid(
                "a target is quarantined by its runs, not by an operator: set \"paused\" or \"enabled\"",
            ));
        }
        Some(s) if s != t.status => {
            let before = t.status;
            t.status = s;
            t.status_reason = (s == TargetStatus::Paused).then(|| "paused by an operator".to_string());
            if s == TargetStatus::Enabled {
                t.failures = 0;
                t.next_attempt_us = 0;
            }
            Some((before, s))
        }
        _ => None,
    };
    if changed.is_empty() && status_event.is_none() {
        return Ok(None);
    }
    t.updated_us = now;
    let mut data = target_data(t);
    if let Some((before, after)) = status_event {
        data["status_before"] = json!(before);
        if changed.is_empty() {
            let kind = if after == TargetStatus::Paused {
                crate::events::PROVISIONING_TARGET_PAUSED
            } else {
                crate::events::PROVISIONING_TARGET_RESUMED
            };
            data["reason"] = json!(t.status_reason);
            return Ok(Some((kind, data)));
        }
    }
    data["changed"] = Value::Object(changed);
    Ok(Some((crate::events::PROVISIONING_TARGET_UPDATED, data)))
}

/// Reads a row of `provisioning_targets`, opening the credentials.
pub(crate) fn target_of<R: sqlx::Row>(row: &R, keys: &SecretKeys) -> StoreResult<Target>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let json = |col: &str| -> StoreResult<Value> {
        let text: String = row.try_get(col)?;
        serde_json::from_str(&text).map_err(|e| invalid(format!("the stored {col} of target {id} is unreadable: {e}")))
    };
    let parse = |col: &str| -> StoreResult<String> { Ok(row.try_get::<String, _>(col)?) };
    let sealed: String = row.try_get("credentials")?;
    Ok(Target {
        credentials: keys.open(&sealed, &credentials_context(&id))?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        base_url: row.try_get("base_url")?,
        auth_kind: parse("auth_kind")?.parse().map_err(invalid)?,
        auth: serde_json::from_value(json("auth")?).unwrap_or_default(),
        profile: row.try_get("profile")?,
        scope: serde_json::from_value(json("scope")?).unwrap_or_default(),
        mapping: serde_json::from_value(json("mapping")?).unwrap_or_default(),
        deprovision: parse("deprovision")?.parse().map_err(invalid)?,
        status: parse("status")?.parse().map_err(invalid)?,
        status_reason: row.try_get("status_reason")?,
        deletion_threshold: serde_json::from_value(json("deletion_threshold")?).unwrap_or_default(),
        rate_limit: {
            let raw: Option<String> = row.try_get("rate_limit")?;
            raw.and_then(|r| serde_json::from_str(&r).ok())
        },
        approved_us: row.try_get("approved_us")?,
        cursor_seq: row.try_get("cursor_seq")?,
        interval_s: row.try_get("interval_s")?,
        next_full_us: row.try_get("next_full_us")?,
        failures: row.try_get("failures")?,
        next_attempt_us: row.try_get("next_attempt_us")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until_us: row.try_get("lease_until_us")?,
        created_us: row.try_get("created_us")?,
        updated_us: row.try_get("updated_us")?,
        id,
    })
}

pub(crate) fn object_of<R: sqlx::Row>(row: &R) -> StoreResult<TargetObject>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let sent: Option<String> = row.try_get("sent")?;
    Ok(TargetObject {
        target_id: row.try_get("target_id")?,
        kind: ResourceKind::parse(&kind).ok_or_else(|| invalid(format!("unknown object kind {kind}")))?,
        local_id: row.try_get("local_id")?,
        remote_id: row.try_get("remote_id")?,
        sent: sent.and_then(|s| serde_json::from_str(&s).ok()),
        state: state.parse().map_err(invalid)?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        retry_at_us: row.try_get("retry_at_us")?,
        updated_us: row.try_get("updated_us")?,
    })
}

pub(crate) fn run_of<R: sqlx::Row>(row: &R) -> StoreResult<Run>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let counts: String = row.try_get("counts")?;
    Ok(Run {
        id: row.try_get("id")?,
        target_id: row.try_get("target_id")?,
        kind: kind.parse().map_err(invalid)?,
        status: status.parse().map_err(invalid)?,
        started_us: row.try_get("started_us")?,
        finished_us: row.try_get("finished_us")?,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        error: row.try_get("error")?,
    })
}

/// The data of `provisioning.run_started` and `provisioning.run_finished`.
pub fn run_data(r: &Run) -> Value {
    json!({
        "target": r.target_id,
        "run": r.id,
        "kind": r.kind,
        "status": r.status,
        "counts": r.counts,
        "error": r.error,
        "duration_ms": r.finished_us.map(|f| (f - r.started_us) / 1000),
    })
}

/// A new target as it is first stored.
pub(crate) fn prepared(new: &NewTarget, cursor_seq: i64, now: i64) -> Target {
    Target {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: new.org_id.clone(),
        name: new.name.trim().to_string(),
        base_url: new.base_url.clone(),
        auth_kind: new.auth_kind,
        auth: new.auth.clone(),
        credentials: new.credentials.clone(),
        profile: new.profile.clone(),
        scope: new.scope.clone(),
        mapping: new.mapping.clone(),
        deprovision: new.deprovision,
        status: TargetStatus::Enabled,
        status_reason: None,
        deletion_threshold: new.deletion_threshold.clone(),
        rate_limit: new.rate_limit,
        approved_us: new.approved.then_some(now),
        cursor_seq,
        interval_s: new.interval_s,
        next_full_us: now,
        failures: 0,
        next_attempt_us: 0,
        lease_owner: None,
        lease_until_us: None,
        created_us: now,
        updated_us: now,
    }
}

/// The statements, with `$n` placeholders (both databases take them).
pub(crate) struct OutboundSql;

impl OutboundSql {
    /// The binds of [`OutboundSql::UPDATE`] ($1–$20), then cursor_seq, next_full_us, created_us.
    pub(crate) const INSERT: &'static str = "INSERT INTO provisioning_targets (name, base_url, auth_kind, auth, \
         credentials, profile, scope, mapping, deprovision, status, status_reason, deletion_threshold, rate_limit, \
         approved_us, interval_s, failures, next_attempt_us, updated_us, org_id, id, cursor_seq, next_full_us, created_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)";

    /// The cursor a new target starts from: the log's ceiling (`$1`, PostgreSQL), or the highest
    /// number committed.
    pub(crate) const HIGH_SEQ: &'static str =
        "SELECT COALESCE(CAST($1 AS BIGINT), (SELECT coalesce(max(seq), 0) FROM events))";
    pub(crate) const ORG_EXISTS: &'static str = "SELECT 1 FROM organizations WHERE id = $1";
    pub(crate) const NAME_TAKEN: &'static str =
        "SELECT 1 FROM provisioning_targets WHERE org_id = $1 AND name = $2 AND id <> $3";
    pub(crate) const LIST: &'static str = "SELECT * FROM provisioning_targets WHERE org_id = $1 ORDER BY name, id";
    pub(crate) const GET: &'static str = "SELECT * FROM provisioning_targets WHERE org_id = $1 AND id = $2";

    /// Binds: every column an update may change, then org_id, id.
    pub(crate) const UPDATE: &'static str = "UPDATE provisioning_targets SET name = $1, base_url = $2, auth_kind = $3, \
         auth = $4, credentials = $5, profile = $6, scope = $7, mapping = $8, deprovision = $9, status = $10, \
         status_reason = $11, deletion_threshold = $12, rate_limit = $13, approved_us = $14, interval_s = $15, failures = $16, \
         next_attempt_us = $17, updated_us = $18 WHERE org_id = $19 AND id = $20";

    pub(crate) const DELETE: &'static str = "DELETE FROM provisioning_targets WHERE org_id = $1 AND id = $2";

    /// Binds: now (approved), now (next full run), now (updated), org_id, id.
    pub(crate) const APPROVE: &'static str = "UPDATE provisioning_targets SET approved_us = $1, \
         next_full_us = $2, updated_us = $3 WHERE org_id = $4 AND id = $5";

    /// Binds: status, reason, now, id.
    pub(crate) const SET_STATUS: &'static str = "UPDATE provisioning_targets SET status = $1, status_reason = $2, \
         updated_us = $3 WHERE id = $4";

    /// Binds: now, org_id, id.
    pub(crate) const REQUEST: &'static str = "UPDATE provisioning_targets SET next_full_us = CASE WHEN next_full_us < $1 \
         THEN next_full_us ELSE $2 END WHERE org_id = $3 AND id = $4";

    /// Binds: owner, lease_until, now (lease), now (attempt), now (full), now (retry), limit. The PostgreSQL form
    /// locks the rows it picks (`FOR UPDATE SKIP LOCKED`).
    pub(crate) fn claim(dialect: Dialect) -> String {
        let lock = match dialect {
            Dialect::Postgres => " FOR UPDATE OF t SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        format!(
            "UPDATE provisioning_targets SET lease_owner = $1, lease_until_us = $2
             WHERE id IN (
                 SELECT t.id FROM provisioning_targets t
                 WHERE t.approved_us IS NOT NULL AND t.status IN ('enabled', 'quarantined')
                   AND (t.lease_until_us IS NULL OR t.lease_until_us < $3)
                   AND t.next_attempt_us <= $4
                   AND (t.next_full_us <= $5
                        OR EXISTS (SELECT 1 FROM events e WHERE e.org_id = t.org_id AND e.seq > t.cursor_seq)
                        OR EXISTS (SELECT 1 FROM provisioning_objects o
                                   WHERE o.org_id = t.org_id AND o.target_id = t.id AND o.retry_at_us <= $6))
                 ORDER BY t.next_attempt_us, t.id LIMIT $7{lock})
             RETURNING *"
        )
    }

    /// Binds: to_seq, lease_until, id, owner, from_seq.
    pub(crate) const ADVANCE: &'static str = "UPDATE provisioning_targets SET cursor_seq = $1, lease_until_us = $2 \
         WHERE id = $3 AND lease_owner = $4 AND cursor_seq = $5";

    /// Binds: failures, next_attempt, next_full (NULL: unchanged), id, owner.
    pub(crate) const RELEASE: &'static str = "UPDATE provisioning_targets SET lease_owner = NULL, lease_until_us = NULL, \
         failures = $1, next_attempt_us = $2, next_full_us = coalesce($3, next_full_us) \
         WHERE id = $4 AND lease_owner = $5";

    // The mapping table and the runs lead with the organization (docs/scaling.md): every statement
    // names it, as the last parameter where it is not the first.
    pub(crate) const OBJECTS: &'static str = "SELECT * FROM provisioning_objects WHERE org_id = $11 AND target_id = $1 \
         AND (CAST($2 AS TEXT) IS NULL OR state = CAST($3 AS TEXT)) AND (CAST($4 AS TEXT) IS NULL OR kind = CAST($5 AS TEXT)) \
         AND (CAST($6 AS TEXT) IS NULL OR kind > CAST($7 AS TEXT) OR (kind = CAST($8 AS TEXT) AND local_id > CAST($9 AS TEXT))) \
         ORDER BY kind, local_id LIMIT $10";
    pub(crate) const OBJECT: &'static str =
        "SELECT * FROM provisioning_objects WHERE org_id = $4 AND target_id = $1 AND kind = $2 AND local_id = $3";
    pub(crate) const UPSERT_OBJECT: &'static str = "INSERT INTO provisioning_objects (org_id, target_id, kind, local_id, \
         remote_id, sent, state, error, attempts, retry_at_us, updated_us) VALUES ($11, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (org_id, target_id, kind, local_id) DO UPDATE SET remote_id = excluded.remote_id, sent = excluded.sent, \
         state = excluded.state, error = excluded.error, attempts = excluded.attempts, \
         retry_at_us = excluded.retry_at_us, updated_us = excluded.updated_us";
    /// Binds: target, kind, local_id, now (retry), now (updated), organization.
    pub(crate) const REQUEST_PUSH: &'static str = "INSERT INTO provisioning_objects (org_id, target_id, kind, local_id, \
         remote_id, sent, state, error, attempts, retry_at_us, updated_us) VALUES ($6, $1, $2, $3, NULL, NULL, 'pending', NULL, 0, $4, $5) \
         ON CONFLICT (org_id, target_id, kind, local_id) DO UPDATE SET retry_at_us = excluded.retry_at_us, \
         state = CASE WHEN provisioning_objects.state = 'synced' THEN 'pending' ELSE provisioning_objects.state END";
    /// Binds: target, now, limit, organization. The objects due to be pushed again, the longest
    /// waiting first.
    pub(crate) const DUE_OBJECTS: &'static str = "SELECT * FROM provisioning_objects WHERE org_id = $4 AND target_id = $1 \
         AND retry_at_us <= $2 ORDER BY retry_at_us, kind, local_id LIMIT $3";
    pub(crate) const FORGET_OBJECT: &'static str =
        "DELETE FROM provisioning_objects WHERE org_id = $4 AND target_id = $1 AND kind = $2 AND local_id = $3";
    /// Binds: now (retry), now (updated), target, kind, local_id, organization.
    pub(crate) const RETRY_OBJECT: &'static str = "UPDATE provisioning_objects SET state = 'pending', \
         retry_at_us = $1, updated_us = $2 WHERE org_id = $6 AND target_id = $3 AND kind = $4 AND local_id = $5";
    pub(crate) const TARGET_ORG: &'static str = "SELECT org_id FROM provisioning_targets WHERE id = $1";

    pub(crate) const INSERT_RUN: &'static str = "INSERT INTO provisioning_runs (org_id, target_id, id, kind, status, \
         started_us, finished_us, counts, error) VALUES ($7, $1, $2, $3, $4, $5, NULL, $6, NULL)";
    pub(crate) const RUN_PROGRESS: &'static str =
        "UPDATE provisioning_runs SET counts = $1 WHERE org_id = $4 AND target_id = $2 AND id = $3";
    pub(crate) const FINISH_RUN: &'static str = "UPDATE provisioning_runs SET status = $1, finished_us = $2, counts = $3, \
         error = $4 WHERE org_id = $7 AND target_id = $5 AND id = $6";
    pub(crate) const RUNS: &'static str = "SELECT * FROM provisioning_runs WHERE org_id = $5 AND target_id = $1 \
         AND (CAST($2 AS TEXT) IS NULL OR id < CAST($3 AS TEXT)) ORDER BY id DESC LIMIT $4";
}

/// Values of a target bound to [`OutboundSql::INSERT`] and [`OutboundSql::UPDATE`], as text and
/// integers (both databases take them).
pub(crate) struct TargetBinds {
    pub auth: String,
    pub scope: String,
    pub mapping: String,
    pub threshold: String,
    pub rate_limit: Option<String>,
    pub sealed: String,
}

impl TargetBinds {
    pub(crate) fn of(t: &Target, keys: &SecretKeys) -> StoreResult<TargetBinds> {
        Ok(TargetBinds {
            auth: to_json(&t.auth),
            scope: to_json(&t.scope),
            mapping: to_json(&t.mapping),
            threshold: to_json(&t.deletion_threshold),
            rate_limit: t.rate_limit.as_ref().map(to_json),
            sealed: keys.seal(&t.credentials, &credentials_context(&t.id))?,
        })
    }
}

pub(crate) fn counts_json(c: &RunCounts) -> String {
    to_json(c)
}

pub(crate) fn sent_json(o: &TargetObject) -> Option<String> {
    o.sent.as_ref().map(Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_defaults_and_arithmetic() {
        let t = DeletionThreshold::default();
        assert_eq!((t.max_percent, t.max_users), (Some(10), Some(50)));
        assert!(!t.exceeded(0, 0));
        assert!(!t.exceeded(10, 100), "exactly 10 % is not more than");
        assert!(t.exceeded(11, 100));
        assert!(!t.exceeded(50, 100_000));
        assert!(t.exceeded(51, 100_000));
        assert!(
            t.exceeded(1, 0),
            "removing users a target never had from Rollcall is more than 10 %"
        );
        let off = DeletionThreshold {
            max_percent: None,
            max_users: None,
        };
        assert!(!off.exceeded(1_000_000, 1));
        assert!(
            DeletionThreshold {
                max_percent: Some(0),
                max_users: None
            }
            .validate()
            .is_err()
        );
        let parsed: DeletionThreshold = serde_json::from_str(r#"{"max_users": null}"#).unwrap();
        assert_eq!(parsed.max_percent, Some(10));
        assert_eq!(parsed.max_users, None);
        assert!(serde_json::from_str::<DeletionThreshold>(r#"{"maxUsers": 3}"#).is_err());
    }

    #[test]
    fn names_parse_and_print() {
        for k in AuthKind::ALL {
            assert_eq!(k.as_str().parse::<AuthKind>().unwrap(), *k);
        }
        assert_eq!(
            "oauth-client-credentials".parse::<AuthKind>().unwrap(),
            AuthKind::OauthClientCredentials
        );
        assert!("digest".parse::<AuthKind>().unwrap_err().contains("bearer"));
        assert_eq!(
            serde_json::to_value(ObjectState::Deactivated).unwrap(),
            json!("deactivated")
        );
        assert!(AuthSettings::default().validate(AuthKind::Basic).is_err());
        assert!(
            AuthSettings::default()
                .validate(AuthKind::OauthClientCredentials)
                .is_err()
        );
        assert!(AuthSettings::default().validate(AuthKind::Bearer).is_ok());
    }
}
