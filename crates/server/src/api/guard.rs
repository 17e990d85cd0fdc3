//! The guard against mass deprovisioning of a SCIM connection:
//! `/api/v1/connections/{id}/deprovision-guard` (settings and state), `.../held` (what it holds),
//! `.../release` and `.../discard` (the operator's decision). See docs/operations.md.

use super::auth::ApiCaller;
use super::extract::{JsonBody, query_pairs};
use super::paging::{self, kinds};
use super::problem::{ApiProblem, ApiResult, Problem};
use crate::admin::Admin;
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use rollcall_store::{GuardResolution, GuardSettings, GuardState, HeldEvent, cursor};
use rollcall_webhooks::event::ActorView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The guard's policy. It trips when the distinct users deprovisioned (deactivated, deleted, or
/// left without any role) by the connection within the last `window_minutes` number more than
/// `max_users`, or more than `min_users` and more than `max_percent` % of the connection's active
/// users. A PUT replaces every field (`null` where allowed turns that rule off).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardSettingsView {
    /// `false` turns the guard off: nothing is held (what is held already stays until released
    /// or discarded).
    #[schema(example = true)]
    pub enabled: bool,
    /// The absolute rule: trips when more than this many users are deprovisioned within the
    /// window; `null`: no absolute rule. Default 25.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, example = 25)]
    pub max_users: Option<u32>,
    /// The percentage rule (1 to 100): trips when the users deprovisioned within the window are
    /// more than `min_users` and more than this percentage of the active users; `null`: no
    /// percentage rule. Default 10.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true, example = 10, minimum = 1, maximum = 100)]
    pub max_percent: Option<u32>,
    /// The percentage rule applies only past this many users (so that 3 of 5 users leaving does
    /// not trip it). Default 10.
    #[schema(example = 10)]
    pub min_users: u32,
    /// The sliding window, 1 to 10080 minutes (a week). Default 60.
    #[schema(example = 60, minimum = 1, maximum = 10080)]
    pub window_minutes: u32,
}

const SETTINGS_FIELDS: [&str; 5] = ["enabled", "max_users", "max_percent", "min_users", "window_minutes"];

impl From<&GuardSettings> for GuardSettingsView {
    fn from(s: &GuardSettings) -> Self {
        GuardSettingsView {
            enabled: s.enabled,
            max_users: s.max_users,
            max_percent: s.max_percent,
            min_users: s.min_users,
            window_minutes: s.window_minutes,
        }
    }
}

impl From<GuardSettingsView> for GuardSettings {
    fn from(s: GuardSettingsView) -> Self {
        GuardSettings {
            enabled: s.enabled,
            max_users: s.max_users,
            max_percent: s.max_percent,
            min_users: s.min_users,
            window_minutes: s.window_minutes,
        }
    }
}

/// Whether the guard holds deprovisions.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardStatus {
    /// Counting; deprovisions reach the application.
    Armed,
    /// Tripped: deprovisions are held until an operator releases or discards them.
    Tripped,
    /// Turned off (and not tripped).
    Off,
}

/// A connection's guard against mass deprovisioning.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuardView {
    pub connection_id: String,
    pub status: GuardStatus,
    pub settings: GuardSettingsView,
    /// When it tripped; `null` unless tripped.
    #[schema(required = true, format = DateTime)]
    pub tripped_at: Option<String>,
    /// Events held back from the log and webhooks.
    pub held_events: i64,
    /// The distinct users the held events are about.
    pub held_users: i64,
    /// Distinct users deprovisioned within the current window (while armed).
    pub window_deprovisions: i64,
}

impl From<&GuardState> for GuardView {
    fn from(g: &GuardState) -> Self {
        let status = if g.tripped_us.is_some() {
            GuardStatus::Tripped
        } else if g.settings.enabled {
            GuardStatus::Armed
        } else {
            GuardStatus::Off
        };
        GuardView {
            connection_id: g.connection_id.clone(),
            status,
            settings: (&g.settings).into(),
            tripped_at: g.tripped_us.map(rfc3339),
            held_events: g.held_events,
            held_users: g.held_users,
            window_deprovisions: g.window_deprovisions,
        }
    }
}

/// An event the guard holds: it reaches the log (with this id, time and actor) on release.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldEventView {
    /// The event's id, kept on release.
    pub id: String,
    #[serde(rename = "type")]
    #[schema(example = "user.deactivated")]
    pub kind: String,
    /// The deprovisioned user the event belongs to.
    pub user_id: String,
    /// When the identity provider made the change.
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// When it was held.
    #[schema(format = DateTime)]
    pub held_at: String,
    #[schema(required = true)]
    pub resource_type: Option<String>,
    #[schema(required = true)]
    pub resource_id: Option<String>,
    pub actor: ActorView,
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// As in the event log (docs/events.md).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&HeldEvent> for HeldEventView {
    fn from(h: &HeldEvent) -> Self {
        HeldEventView {
            id: h.event.id.clone(),
            kind: h.event.kind.clone(),
            user_id: h.user_id.clone(),
            occurred_at: rfc3339(h.event.created_us),
            held_at: rfc3339(h.held_us),
            resource_type: h.event.resource_type.clone(),
            resource_id: h.event.resource_id.clone(),
            actor: (&h.event.actor).into(),
            request_id: h.event.request_id.clone(),
            data: h.event.data.clone(),
        }
    }
}

/// A page of held events, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldEventList {
    pub data: Vec<HeldEventView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Paging of the held events.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeldParams {
    /// The `next_cursor` of the previous page; absent for the first.
    pub cursor: Option<String>,
    /// Largest number of events on the page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// What a release or discard did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuardResolutionView {
    /// Held events released into the log, or discarded.
    pub events: i64,
    /// The distinct users they were about.
    pub users: i64,
    /// When the guard had tripped; `null` if it had not (it held events of a guard turned off).
    #[schema(required = true, format = DateTime)]
    pub tripped_at: Option<String>,
    /// The guard now (armed again).
    pub guard: GuardView,
}

fn resolution(r: &GuardResolution, g: &GuardState) -> GuardResolutionView {
    GuardResolutionView {
        events: r.events,
        users: r.users,
        tripped_at: r.tripped_us.map(rfc3339),
        guard: g.into(),
    }
}

/// A connection's guard against mass deprovisioning: its settings, whether it tripped, and how
/// much it holds.
#[utoipa::path(get, path = "/connections/{id}/deprovision-guard", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The guard", body = GuardView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_guard(State(admin): State<Admin>, Path(connection_id): Path<String>) -> ApiResult<Json<GuardView>> {
    Ok(Json(GuardView::from(&admin.deprovision_guard(&connection_id).await?)))
}

/// Replace the guard's settings. Every field is required (`null` where allowed), so that a field
/// left out is refused rather than reset. A tripped guard stays tripped until released or
/// discarded. Records `connection.deprovision_guard_set`.
#[utoipa::path(put, path = "/connections/{id}/deprovision-guard", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    request_body = GuardSettingsView,
    responses(
        (status = 200, description = "The guard with its new settings", body = GuardView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or out of range", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn set_guard(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<GuardView>> {
    let missing: Vec<String> = SETTINGS_FIELDS
        .iter()
        .filter(|f| !body.contains_key(**f))
        .map(|f| format!("missing field `{f}`"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiProblem::new(
            422,
            format!(
                "{}: a PUT replaces every setting, so send every field ({}), null where a rule is off",
                missing.join(", "),
                SETTINGS_FIELDS.join(", ")
            ),
        ));
    }
    let body: GuardSettingsView = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiProblem::new(422, format!("the request body is not as expected: {e}")))?;
    let g = admin.set_deprovision_guard(&by, &connection_id, body.into()).await?;
    Ok(Json(GuardView::from(&g)))
}

/// The events the guard holds, oldest first: each deprovisioned user's deactivation, deletion,
/// removals from groups and role change, as they will reach the log on release.
#[utoipa::path(get, path = "/connections/{id}/deprovision-guard/held", tag = "connections",
    params(("id" = String, Path, description = "Connection id"), HeldParams),
    responses(
        (status = 200, description = "A page of held events", body = HeldEventList),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_held(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<HeldEventList>> {
    let pairs = query_pairs(raw.as_deref());
    let after = paging::number_cursor(&pairs, "cursor", kinds::HELD)?;
    let limit = paging::limit(&pairs)?;
    let (found, more) = admin.held_events(&connection_id, after, limit).await?;
    let next_cursor = more
        .then(|| found.last().map(|h| cursor::encode_number(kinds::HELD, h.seq)))
        .flatten();
    Ok(Json(HeldEventList {
        data: found.iter().map(HeldEventView::from).collect(),
        next_cursor,
    }))
}

async fn resolve(
    admin: &Admin,
    by: &rollcall_store::WriteContext,
    id: &str,
    release: bool,
) -> ApiResult<Json<GuardResolutionView>> {
    let r = admin.resolve_deprovision_guard(by, id, release).await?;
    let g = admin.deprovision_guard(id).await?;
    Ok(Json(resolution(&r, &g)))
}

/// Release what the guard holds: every held event goes into the log (and so to webhooks), after
/// a `connection.deprovision_guard_released` event naming who released it and how many; the
/// guard is armed again with an empty window.
#[utoipa::path(post, path = "/connections/{id}/deprovision-guard/release", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "Released", body = GuardResolutionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The guard has not tripped and holds nothing", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn release(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<GuardResolutionView>> {
    resolve(&admin, &by, &connection_id, true).await
}

/// Discard what the guard holds: the held events are dropped and the application is never told
/// of them (Rollcall's SCIM view, directory and access check already follow the identity
/// provider); records `connection.deprovision_guard_discarded`. The guard is armed again with an
/// empty window.
#[utoipa::path(post, path = "/connections/{id}/deprovision-guard/discard", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "Discarded", body = GuardResolutionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The guard has not tripped and holds nothing", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn discard(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<GuardResolutionView>> {
    resolve(&admin, &by, &connection_id, false).await
}
