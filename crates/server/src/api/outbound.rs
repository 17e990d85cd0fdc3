//! Outbound provisioning: `/api/v1/organizations/{id}/provisioning-targets` — the downstream SCIM
//! applications an organization's directory is pushed to, their plans, approval, runs and the
//! state of each object pushed. See docs/outbound.md.

use super::auth::ApiCaller;
use super::extract::{JsonBody, query_pairs};
use super::paging::{self, single};
use super::problem::{ApiProblem, ApiResult, Problem};
use crate::admin::{Admin, TargetInput};
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use rollcall_store::outbound::{
    AttributeMapping, AuthKind, AuthSettings, DeletionThreshold, Deprovision, MappingSource, ObjectState, RateLimit,
    Run, RunCounts, Target, TargetObject, TargetScope, TargetStatus, TargetUpdate,
};
use rollcall_store::{ResourceKind, cursor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Cursor kinds of the lists here.
const RUNS_CURSOR: &str = "pr1:";
const OBJECTS_CURSOR: &str = "po1:";

/// Which users a target receives, and which groups.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeView {
    /// The active users of these connections (ids). With `groups` also empty: every active user
    /// of the organization.
    #[serde(default)]
    pub connections: Vec<String>,
    /// The active members of these groups (Rollcall group ids).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Groups (Rollcall ids) pushed as groups, with their members that are in scope.
    #[serde(default)]
    pub push_groups: Vec<String>,
}

impl From<ScopeView> for TargetScope {
    fn from(s: ScopeView) -> Self {
        TargetScope {
            connections: s.connections,
            groups: s.groups,
            push_groups: s.push_groups,
        }
    }
}

impl From<&TargetScope> for ScopeView {
    fn from(s: &TargetScope) -> Self {
        ScopeView {
            connections: s.connections.clone(),
            groups: s.groups.clone(),
            push_groups: s.push_groups.clone(),
        }
    }
}

/// How Rollcall authenticates to the target. The secret (`token`, `password` or
/// `client_secret`) is written, never read back.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    /// `bearer`, `basic` or `oauth_client_credentials`.
    #[schema(value_type = String, example = "bearer")]
    pub kind: AuthKind,
    /// Bearer: the token.
    pub token: Option<String>,
    /// Basic: the user name and password.
    pub username: Option<String>,
    pub password: Option<String>,
    /// OAuth 2.0 client credentials: the token endpoint, client id and secret, scope.
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

impl AuthInput {
    fn split(self) -> ApiResult<(AuthKind, AuthSettings, String)> {
        let (secret, what) = match self.kind {
            AuthKind::Bearer => (self.token, "auth.token"),
            AuthKind::Basic => (self.password, "auth.password"),
            AuthKind::OauthClientCredentials => (self.client_secret, "auth.client_secret"),
        };
        let secret = secret
            .ok_or_else(|| ApiProblem::new(422, format!("{what} is required for {} authentication", self.kind)))?;
        Ok((
            self.kind,
            AuthSettings {
                username: self.username,
                token_url: self.token_url,
                client_id: self.client_id,
                scope: self.scope,
            },
            secret,
        ))
    }
}

/// The authentication of a target, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthView {
    #[schema(value_type = String, example = "bearer")]
    pub kind: AuthKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// When a run stops: more than `max_percent` % of the users the target has from Rollcall, or
/// more than `max_users`, deactivated or deleted in one run pauses the target (`null`: that rule
/// is off). Defaults: 10 % and 50.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdView {
    #[serde(default = "ten")]
    pub max_percent: Option<u32>,
    #[serde(default = "fifty")]
    pub max_users: Option<u32>,
}

fn ten() -> Option<u32> {
    Some(10)
}
fn fifty() -> Option<u32> {
    Some(50)
}

/// A new provisioning target.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTarget {
    #[schema(example = "Slack")]
    pub name: String,
    /// The target's SCIM base URL.
    #[schema(example = "https://api.slack.com/scim/v2/")]
    pub base_url: String,
    /// The target's rules: `generic` (read from its /ServiceProviderConfig),
    /// `aws-iam-identity-center`, `github-emu`, `github-organization`, `salesforce`, `slack`.
    #[serde(default = "generic")]
    #[schema(example = "generic")]
    pub profile: String,
    pub auth: AuthInput,
    #[serde(default)]
    pub scope: ScopeView,
    /// Attributes beside the defaults: target attribute → a source attribute path of the user's
    /// SCIM document (`"department"`), a constant sent for every user (`{"value": …}`, such as
    /// Salesforce's profile entitlement), or `null` (not sent).
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"title": "department", "entitlements": {"value": [{"value": "00e5g000001AbCd"}]}, "nickName": null}))]
    pub mapping: BTreeMap<String, Option<MappingSource>>,
    /// What deprovisioning means: `deactivate` (default) or `delete`.
    #[serde(default = "deactivate")]
    #[schema(value_type = String, example = "deactivate")]
    pub deprovision: Deprovision,
    pub deletion_threshold: Option<ThresholdView>,
    /// The target's own rate limit, in place of its profile's (absent or `null`: the profile's,
    /// from the vendor's published limits).
    pub rate_limit: Option<RateLimitView>,
    /// Seconds between full reconciliations, 60 to 604800. Default 3600.
    #[serde(default = "hour")]
    pub reconcile_interval_s: i64,
}

/// A target's own rate limit: a token bucket over every request to it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitView {
    /// Requests a minute, sustained (1–100000).
    #[schema(example = 600)]
    pub per_minute: u32,
    /// Requests at once after a pause (1–10000; default a tenth of `per_minute`).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl From<RateLimitView> for RateLimit {
    fn from(v: RateLimitView) -> RateLimit {
        RateLimit {
            per_minute: v.per_minute,
            burst: v.burst,
        }
    }
}

impl From<RateLimit> for RateLimitView {
    fn from(r: RateLimit) -> RateLimitView {
        RateLimitView {
            per_minute: r.per_minute,
            burst: Some(r.burst()),
        }
    }
}

fn generic() -> String {
    "generic".into()
}
fn deactivate() -> Deprovision {
    Deprovision::Deactivate
}
fn hour() -> i64 {
    rollcall_store::outbound::DEFAULT_INTERVAL_S
}

/// A change to a target; fields left out stay as they are. A new `scope` or `mapping` withdraws
/// the approval (read the plan again, then approve). `status`: `paused` or `enabled`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTarget {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub profile: Option<String>,
    pub auth: Option<AuthInput>,
    pub scope: Option<ScopeView>,
    #[schema(value_type = Option<Object>)]
    pub mapping: Option<BTreeMap<String, Option<MappingSource>>>,
    #[schema(value_type = Option<String>)]
    pub deprovision: Option<Deprovision>,
    pub deletion_threshold: Option<ThresholdView>,
    /// `null`: back to the profile's rate limit.
    #[serde(default, deserialize_with = "super::roles::serde_with_double_option::deserialize")]
    pub rate_limit: Option<Option<RateLimitView>>,
    pub reconcile_interval_s: Option<i64>,
    #[schema(value_type = Option<String>, example = "paused")]
    pub status: Option<TargetStatus>,
}

/// A provisioning target. Its credentials are never returned.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TargetView {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub base_url: String,
    pub profile: String,
    pub auth: AuthView,
    pub scope: ScopeView,
    #[schema(value_type = Object)]
    pub mapping: BTreeMap<String, Option<MappingSource>>,
    #[schema(value_type = String)]
    pub deprovision: Deprovision,
    /// `enabled`, `paused` or `quarantined`.
    #[schema(value_type = String, example = "enabled")]
    pub status: TargetStatus,
    /// Why it is paused or quarantined.
    #[schema(required = true)]
    pub status_reason: Option<String>,
    pub deletion_threshold: ThresholdView,
    /// Its own rate limit (`null`: the profile's).
    #[schema(required = true)]
    pub rate_limit: Option<RateLimitView>,
    /// Whether its push is approved (a new target, or one whose scope or mapping changed, waits
    /// for approval after its plan is read).
    pub approved: bool,
    #[schema(required = true, format = DateTime)]
    pub approved_at: Option<String>,
    pub reconcile_interval_s: i64,
    /// When the next full reconciliation is due.
    #[schema(format = DateTime)]
    pub next_reconcile_at: String,
    /// Failed runs in a row, and when the next may start.
    pub failures: i64,
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// Whether a node is working on it now.
    pub running: bool,
    /// The last event of the log it has seen.
    pub cursor_sequence: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Target> for TargetView {
    fn from(t: &Target) -> Self {
        let now = rollcall_store::sqlite::now_us();
        TargetView {
            id: t.id.clone(),
            organization_id: t.org_id.clone(),
            name: t.name.clone(),
            base_url: t.base_url.clone(),
            profile: t.profile.clone(),
            auth: AuthView {
                kind: t.auth_kind,
                username: t.auth.username.clone(),
                token_url: t.auth.token_url.clone(),
                client_id: t.auth.client_id.clone(),
                scope: t.auth.scope.clone(),
            },
            scope: (&t.scope).into(),
            mapping: t.mapping.0.clone(),
            deprovision: t.deprovision,
            status: t.status,
            status_reason: t.status_reason.clone(),
            deletion_threshold: ThresholdView {
                max_percent: t.deletion_threshold.max_percent,
                max_users: t.deletion_threshold.max_users,
            },
            rate_limit: t.rate_limit.map(Into::into),
            approved: t.approved(),
            approved_at: t.approved_us.map(rfc3339),
            reconcile_interval_s: t.interval_s,
            next_reconcile_at: rfc3339(t.next_full_us),
            failures: t.failures,
            next_attempt_at: (t.next_attempt_us > now).then(|| rfc3339(t.next_attempt_us)),
            running: t.lease_until_us.is_some_and(|u| u > now),
            cursor_sequence: t.cursor_seq,
            created_at: rfc3339(t.created_us),
            updated_at: rfc3339(t.updated_us),
        }
    }
}

/// The targets of an organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TargetList {
    pub data: Vec<TargetView>,
}

/// A run of a target.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    /// `events` (changes from the event log) or `full` (reconciliation).
    #[schema(example = "full")]
    pub kind: String,
    /// `running`, `succeeded`, `partial`, `failed`, `paused`.
    #[schema(example = "succeeded")]
    pub status: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(required = true)]
    pub duration_ms: Option<i64>,
    /// Counts (for a running run: so far): `users_in_scope`, `created`, `linked`, `updated`,
    /// `unchanged`, `deactivated`, `deleted`, `groups_*`, `read_back`, `repaired`, `failed`,
    /// `requests`.
    #[schema(value_type = Object)]
    pub counts: RunCounts,
    #[schema(required = true)]
    pub error: Option<String>,
}

impl From<&Run> for RunView {
    fn from(r: &Run) -> Self {
        RunView {
            id: r.id.clone(),
            kind: r.kind.as_str().into(),
            status: r.status.as_str().into(),
            started_at: rfc3339(r.started_us),
            finished_at: r.finished_us.map(rfc3339),
            duration_ms: r.finished_us.map(|f| (f - r.started_us) / 1000),
            counts: r.counts.clone(),
            error: r.error.clone(),
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    pub data: Vec<RunView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One object of the target's mapping table.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObjectView {
    /// Rollcall's id of the user or group.
    pub id: String,
    /// `User` or `Group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id on the target.
    #[schema(required = true)]
    pub remote_id: Option<String>,
    /// `synced`, `pending`, `failed`, `deactivated`, `deleted`.
    pub state: String,
    /// Why the last push failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Failed pushes in a row.
    pub attempts: i64,
    /// What was last sent.
    #[schema(value_type = Object)]
    pub sent: Option<serde_json::Value>,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&TargetObject> for ObjectView {
    fn from(o: &TargetObject) -> Self {
        ObjectView {
            id: o.local_id.clone(),
            kind: o.kind.as_str().into(),
            remote_id: o.remote_id.clone(),
            state: o.state.as_str().into(),
            error: o.error.clone(),
            attempts: o.attempts,
            sent: o.sent.clone(),
            updated_at: rfc3339(o.updated_us),
        }
    }
}

/// A page of the mapping table.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObjectList {
    pub data: Vec<ObjectView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Paging of the runs.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// Paging and filter of the mapping table.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectParams {
    /// Only objects in this state (`failed` lists the errors).
    pub state: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// The plan: the full diff a push would make now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanView {
    pub target_id: String,
    /// Whether the target waits for approval (the plan is then what approving starts).
    pub approval_required: bool,
    /// Counts by action, and whether the deprovisions are more than the deletion threshold allows.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Every user with something to do: `action` is `create` (with the `document`), `link` (with
    /// `matched_by` and the `changes`), `ambiguous` (with the `candidates`), `update` (with the
    /// `changes`), `deactivate`, `delete`, `reactivate`.
    #[schema(value_type = Vec<Object>)]
    pub users: serde_json::Value,
    /// Remote users read to match (0 when the target was searched user by user).
    pub remote_users_read: u64,
}

fn problems_422(e: impl std::fmt::Display) -> ApiProblem {
    ApiProblem::new(422, e.to_string())
}

/// The provisioning targets of an organization.
#[utoipa::path(get, path = "/organizations/{id}/provisioning-targets", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The targets, by name", body = TargetList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_targets(State(admin): State<Admin>, Path(org_id): Path<String>) -> ApiResult<Json<TargetList>> {
    let ts = admin.list_targets(&org_id).await?;
    Ok(Json(TargetList {
        data: ts.iter().map(TargetView::from).collect(),
    }))
}

/// Create a provisioning target. It pushes nothing until approved: read its plan
/// (`GET .../plan`), then `POST .../approve`. The credentials are sealed and never returned.
/// Records `provisioning.target_created`.
#[utoipa::path(post, path = "/organizations/{id}/provisioning-targets", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id")),
    request_body = CreateTarget,
    responses(
        (status = 201, description = "Created (waiting for approval)", body = TargetView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken in the organization", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_target(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateTarget>,
) -> ApiResult<(StatusCode, Json<TargetView>)> {
    let (auth_kind, auth, credentials) = body.auth.split()?;
    let th = body.deletion_threshold.unwrap_or(ThresholdView {
        max_percent: ten(),
        max_users: fifty(),
    });
    let t = admin
        .create_target(
            &by,
            &org_id,
            TargetInput {
                name: body.name,
                base_url: body.base_url,
                profile: body.profile,
                auth_kind,
                auth,
                credentials,
                scope: body.scope.into(),
                mapping: AttributeMapping(body.mapping),
                deprovision: body.deprovision,
                deletion_threshold: DeletionThreshold {
                    max_percent: th.max_percent,
                    max_users: th.max_users,
                },
                rate_limit: body.rate_limit.map(Into::into),
                interval_s: body.reconcile_interval_s,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(TargetView::from(&t))))
}

/// A provisioning target (never its credentials).
#[utoipa::path(get, path = "/organizations/{id}/provisioning-targets/{target}", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id")),
    responses(
        (status = 200, description = "The target", body = TargetView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_target(
    State(admin): State<Admin>,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<Json<TargetView>> {
    Ok(Json(TargetView::from(&admin.target(&org_id, &id).await?)))
}

/// Change a target. A new scope or mapping withdraws its approval; `status` pauses (`paused`) or
/// resumes (`enabled`) it. Records `provisioning.target_updated`, `provisioning.target_paused` or
/// `provisioning.target_resumed`.
#[utoipa::path(patch, path = "/organizations/{id}/provisioning-targets/{target}", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id")),
    request_body = UpdateTarget,
    responses(
        (status = 200, description = "The target as it is now", body = TargetView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken in the organization", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is unknown or invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_target(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateTarget>,
) -> ApiResult<Json<TargetView>> {
    let (auth, credentials) = match body.auth {
        Some(a) => {
            let (k, s, c) = a.split()?;
            (Some((k, s)), Some(c))
        }
        None => (None, None),
    };
    let update = TargetUpdate {
        name: body.name,
        base_url: body.base_url,
        auth,
        credentials,
        profile: body.profile,
        scope: body.scope.map(Into::into),
        mapping: body.mapping.map(AttributeMapping),
        deprovision: body.deprovision,
        deletion_threshold: body.deletion_threshold.map(|t| DeletionThreshold {
            max_percent: t.max_percent,
            max_users: t.max_users,
        }),
        rate_limit: body.rate_limit.map(|r| r.map(Into::into)),
        interval_s: body.reconcile_interval_s,
        status: body.status,
    };
    Ok(Json(TargetView::from(
        &admin.update_target(&by, &org_id, &id, update).await?,
    )))
}

/// Delete a target with its mapping table and run history. The users and groups it pushed stay
/// on the target. Records `provisioning.target_deleted`.
#[utoipa::path(delete, path = "/organizations/{id}/provisioning-targets/{target}", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_target(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    admin.delete_target(&by, &org_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The plan: every action a push would take now — creates, links (with ambiguous and duplicate
/// matches), updates with the attributes that change, deactivations, deletions — computed from
/// Rollcall's directory, the mapping table and the target (read, never written). The dry-run
/// mode, and what an operator approves before the first push.
#[utoipa::path(get, path = "/organizations/{id}/provisioning-targets/{target}/plan", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id")),
    responses(
        (status = 200, description = "The plan", body = PlanView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The target could not be read", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn plan(State(admin): State<Admin>, Path((org_id, id)): Path<(String, String)>) -> ApiResult<Json<PlanView>> {
    let t = admin.target(&org_id, &id).await?;
    let p = admin.target_plan(&org_id, &id).await?;
    Ok(Json(PlanView {
        target_id: id,
        approval_required: !t.approved(),
        summary: serde_json::to_value(&p.summary).map_err(problems_422)?,
        users: serde_json::to_value(&p.users).map_err(problems_422)?,
        remote_users_read: p.remote_users_read,
    }))
}

/// Approve the push (after reading the plan): a full run starts at once. Records
/// `provisioning.target_approved`.
#[utoipa::path(post, path = "/organizations/{id}/provisioning-targets/{target}/approve", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id")),
    responses(
        (status = 200, description = "Approved", body = TargetView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Approved already", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn approve(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<Json<TargetView>> {
    Ok(Json(TargetView::from(&admin.approve_target(&by, &org_id, &id).await?)))
}

/// Start a full reconciliation now: every user in scope, the target read back where it can be
/// listed, drift repaired.
#[utoipa::path(post, path = "/organizations/{id}/provisioning-targets/{target}/sync", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id")),
    responses(
        (status = 202, description = "Asked for; see the runs", body = TargetView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The target waits for approval", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sync(
    State(admin): State<Admin>,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<TargetView>)> {
    let t = admin.sync_target(&org_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(TargetView::from(&t))))
}

/// The runs of a target, newest first, with counts and durations (a running run: its progress).
#[utoipa::path(get, path = "/organizations/{id}/provisioning-targets/{target}/runs", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id"), RunParams),
    responses(
        (status = 200, description = "A page of runs", body = RunList),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_runs(
    State(admin): State<Admin>,
    Path((org_id, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<RunList>> {
    let pairs = query_pairs(raw.as_deref());
    let before = paging::text_cursor(&pairs, "cursor", RUNS_CURSOR)?;
    let limit = paging::limit(&pairs)?;
    let (runs, more) = admin.target_runs(&org_id, &id, before.as_deref(), limit).await?;
    let next_cursor = more
        .then(|| runs.last().map(|r| cursor::encode(RUNS_CURSOR, &r.id)))
        .flatten();
    Ok(Json(RunList {
        data: runs.iter().map(RunView::from).collect(),
        next_cursor,
    }))
}

/// The target's mapping table: each user and group pushed, its id on the target, its state and
/// its last error (`state=failed` lists the errors).
#[utoipa::path(get, path = "/organizations/{id}/provisioning-targets/{target}/objects", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id"), ObjectParams),
    responses(
        (status = 200, description = "A page of objects", body = ObjectList),
        (status = 400, description = "Invalid state, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target in the organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_objects(
    State(admin): State<Admin>,
    Path((org_id, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ObjectList>> {
    let pairs = query_pairs(raw.as_deref());
    let state = match single(&pairs, "state")?.map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<ObjectState>().map_err(|e| ApiProblem::new(400, e))?),
    };
    let after = paging::text_cursor(&pairs, "cursor", OBJECTS_CURSOR)?
        .map(|c| {
            c.split_once('/')
                .and_then(|(k, id)| ResourceKind::parse(k).map(|k| (k, id.to_string())))
                .ok_or_else(|| ApiProblem::new(400, "cursor is not a cursor this list returned"))
        })
        .transpose()?;
    let limit = paging::limit(&pairs)?;
    let (found, more) = admin.target_objects(&org_id, &id, state, after, limit).await?;
    let next_cursor = more
        .then(|| {
            found
                .last()
                .map(|o| cursor::encode(OBJECTS_CURSOR, &format!("{}/{}", o.kind.as_str(), o.local_id)))
        })
        .flatten();
    Ok(Json(ObjectList {
        data: found.iter().map(ObjectView::from).collect(),
        next_cursor,
    }))
}

/// Push one object (a user or group of the mapping table, by its Rollcall id) again: it is
/// marked `pending` and a run starts.
#[utoipa::path(post, path = "/organizations/{id}/provisioning-targets/{target}/objects/{object}/retry", tag = "provisioning",
    params(("id" = String, Path, description = "Organization id"), ("target" = String, Path, description = "Target id"),
        ("object" = String, Path, description = "Rollcall id of the user or group")),
    responses(
        (status = 202, description = "Marked to push again", body = ObjectView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such target, or no such object in its mapping table", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn retry_object(
    State(admin): State<Admin>,
    Path((org_id, id, object)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<ObjectView>)> {
    let o = admin.retry_target_object(&org_id, &id, &object).await?;
    Ok((StatusCode::ACCEPTED, Json(ObjectView::from(&o))))
}
