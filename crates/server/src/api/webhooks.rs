//! Webhook endpoints: `/api/v1/webhooks/...`. Each endpoint receives the events of one organization
//! (or of all, when global) that it subscribes to, signed per Standard Webhooks with its own secret,
//! in event order, at least once; its delivery attempts are kept and can be replayed or redelivered.

use super::extract::{JsonBody, query_pairs, query_param};
use super::organizations::location;
use super::paging::{self, kinds};
use super::problem::{ApiResult, Problem};
use crate::admin::{Admin, IssuedWebhook, WebhookChange, WebhookInput};
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use rollcall_store::cursor;
use rollcall_store::{AttemptOrigin, Webhook, WebhookAttempt, WebhookStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::admin::{MAX_DESCRIPTION_CHARS, MAX_EVENT_TYPES, SECRET_OVERLAP_US};

/// Whether the dispatcher delivers to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    Active,
    /// Nothing is delivered; enabling again resumes from the cursor, so nothing is skipped.
    Disabled,
}

impl From<WebhookStatus> for EndpointStatus {
    fn from(s: WebhookStatus) -> Self {
        match s {
            WebhookStatus::Active => EndpointStatus::Active,
            WebhookStatus::Disabled => EndpointStatus::Disabled,
        }
    }
}

impl From<EndpointStatus> for WebhookStatus {
    fn from(s: EndpointStatus) -> Self {
        match s {
            EndpointStatus::Active => WebhookStatus::Active,
            EndpointStatus::Disabled => WebhookStatus::Disabled,
        }
    }
}

/// A webhook endpoint. Its secret is shown only when created or rotated.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    /// The organization whose events it receives; `null`: a global endpoint (every event).
    #[schema(required = true)]
    pub org_id: Option<String>,
    #[schema(example = "https://hooks.example.com/rollcall")]
    pub url: String,
    pub description: String,
    /// Subscribed event types and `prefix.*` patterns; empty: every event.
    #[schema(example = json!(["user.*", "group.member_added"]))]
    pub event_types: Vec<String>,
    pub status: EndpointStatus,
    /// Why it is disabled (by an operator, or after failing for the whole retry horizon).
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// The sequence number of the last event delivered (or skipped, when not subscribed).
    pub last_sequence: i64,
    /// When the current run of failed attempts began; `null` while deliveries succeed.
    #[schema(required = true, format = DateTime)]
    pub failing_since: Option<String>,
    pub consecutive_failures: i64,
    /// The error of the last failed attempt, while failing.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the next attempt may start (after a failure: the end of the backoff).
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    /// After a rotation: until when the previous secret also signs deliveries.
    #[schema(required = true, format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView {
            id: w.id.clone(),
            org_id: w.org_id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            event_types: w.event_types.clone(),
            status: w.status.into(),
            disabled_reason: w.disabled_reason.clone(),
            last_sequence: w.cursor_seq,
            failing_since: w.failing_since_us.map(rfc3339),
            consecutive_failures: w.consecutive_failures,
            last_error: w.last_error.clone(),
            next_attempt_at: rfc3339(w.next_attempt_us),
            previous_secret_expires_at: w
                .previous_secret_expires_us
                .filter(|_| w.previous_secret.is_some())
                .map(rfc3339),
            created_at: rfc3339(w.created_us),
            updated_at: rfc3339(w.updated_us),
        }
    }
}

/// An endpoint with its signing secret, shown only in this answer: store it now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    pub webhook: WebhookView,
    /// `whsec_<base64>`: verify deliveries with it using any Standard Webhooks library.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

impl From<IssuedWebhook> for WebhookWithSecret {
    fn from(i: IssuedWebhook) -> Self {
        WebhookWithSecret {
            webhook: WebhookView::from(&i.webhook),
            secret: i.secret,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<WebhookView>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://` (or `http://`) URL of a public address; private, loopback and link-local
    /// addresses are refused unless the server's configuration allows them.
    #[schema(example = "https://hooks.example.com/rollcall")]
    pub url: String,
    /// The organization whose events to receive; absent or `null`: every event (global).
    pub org_id: Option<String>,
    /// Event types (`user.created`) and prefixes (`user.*`); absent or empty: every event.
    pub event_types: Option<Vec<String>>,
    /// Up to 500 characters.
    pub description: Option<String>,
}

/// The fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// `disabled` stops deliveries; `active` resumes them from the cursor and clears the failures.
    pub status: Option<EndpointStatus>,
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Dispatch,
    Redeliver,
    Ping,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    pub id: i64,
    /// The `webhook-id` sent: the event's id (`ping_...` for a test message).
    pub event_id: String,
    #[schema(required = true)]
    pub event_sequence: Option<i64>,
    pub event_type: String,
    /// 1 for the first attempt at this event on this endpoint.
    pub attempt: i64,
    pub origin: Origin,
    /// Whether the endpoint answered 2xx.
    pub succeeded: bool,
    /// The HTTP status answered; `null` when there was no answer.
    #[schema(required = true)]
    pub status_code: Option<u16>,
    /// From sending the request to reading the answer, in milliseconds.
    pub latency_ms: f64,
    /// The first kilobyte of the answer's body.
    #[schema(required = true)]
    pub response_excerpt: Option<String>,
    /// Why the attempt failed.
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&WebhookAttempt> for AttemptView {
    fn from(a: &WebhookAttempt) -> Self {
        AttemptView {
            id: a.id,
            event_id: a.event_id.clone(),
            event_sequence: a.event_seq,
            event_type: a.event_type.clone(),
            attempt: a.attempt,
            origin: match a.origin {
                AttemptOrigin::Dispatch => Origin::Dispatch,
                AttemptOrigin::Redeliver => Origin::Redeliver,
                AttemptOrigin::Ping => Origin::Ping,
            },
            succeeded: a.succeeded,
            status_code: a.status_code,
            latency_ms: a.latency_us as f64 / 1000.0,
            response_excerpt: a.response_excerpt.clone(),
            error: a.error.clone(),
            created_at: rfc3339(a.created_us),
        }
    }
}

/// A page of attempts, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptList {
    pub data: Vec<AttemptView>,
    /// Pass as `cursor` to get older attempts; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeliver {
    /// The id of the event to send again (the `webhook-id` of its deliveries).
    pub event_id: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Deliver again every event from this sequence number on, in order. Only backwards: at most
    /// `last_sequence + 1`.
    pub from_sequence: i64,
}

/// Create a webhook endpoint.
///
/// It receives the events recorded from now on. The URL is checked against the server's network
/// policy on the addresses its host resolves to (and again at every delivery).
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; the secret is shown only in this answer", body = WebhookWithSecret,
            headers(("Location" = String, description = "The endpoint's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (named in the detail) or unknown field", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn create_webhook(
    State(admin): State<Admin>,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> ApiResult<(StatusCode, HeaderMap, Json<WebhookWithSecret>)> {
    let issued = admin
        .create_webhook(WebhookInput {
            org_id: body.org_id,
            url: body.url,
            description: body.description,
            event_types: body.event_types.unwrap_or_default(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        location("webhooks", &issued.webhook.id),
        Json(WebhookWithSecret::from(issued)),
    ))
}

/// List webhook endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    params(("org_id" = Option<String>, Query, description = "Only this organization's endpoints")),
    responses(
        (status = 200, description = "The endpoints", body = WebhookList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_webhooks(State(admin): State<Admin>, RawQuery(raw): RawQuery) -> ApiResult<Json<WebhookList>> {
    let pairs = query_pairs(raw.as_deref());
    let org = query_param(&pairs, "org_id").filter(|s| !s.is_empty());
    let list = admin.list_webhooks(org).await?;
    Ok(Json(WebhookList {
        data: list.iter().map(WebhookView::from).collect(),
    }))
}

/// Get a webhook endpoint, with its delivery state.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_webhook(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<WebhookView>> {
    Ok(Json(WebhookView::from(&admin.webhook(&id).await?)))
}

/// Change a webhook endpoint's URL, subscription, description or status.
///
/// Enabling a disabled endpoint clears its failures and resumes delivery from its cursor: nothing
/// recorded meanwhile is skipped.
#[utoipa::path(
    patch,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The endpoint, changed", body = WebhookView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (named in the detail) or unknown field", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn update_webhook(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> ApiResult<Json<WebhookView>> {
    let change = WebhookChange {
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        status: body.status.map(Into::into),
    };
    Ok(Json(WebhookView::from(&admin.update_webhook(&id, change).await?)))
}

/// Delete a webhook endpoint with its attempts.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_webhook(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    admin.delete_webhook(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the signing secret.
///
/// The new secret is shown only in this answer. For 24 hours deliveries carry two signatures, one
/// per secret, so receivers can switch to the new secret without missing a delivery.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/secret-rotation",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses(
        (status = 200, description = "The new secret, shown only in this answer", body = WebhookWithSecret),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<WebhookWithSecret>> {
    Ok(Json(WebhookWithSecret::from(admin.rotate_webhook_secret(&id).await?)))
}

/// List an endpoint's delivery attempts, newest first.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/attempts",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "Webhook endpoint id"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Largest number of attempts on the page, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of attempts", body = AttemptList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_attempts(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<AttemptList>> {
    let pairs = query_pairs(raw.as_deref());
    let limit = paging::limit(&pairs)?;
    // Attempts older than the cursor's (ids increase with time).
    let before = paging::number_cursor(&pairs, "cursor", kinds::ATTEMPTS)?;
    let (attempts, more) = admin.webhook_attempts(&id, before, limit).await?;
    let next_cursor = more
        .then(|| attempts.last().map(|a| cursor::encode_number(kinds::ATTEMPTS, a.id)))
        .flatten();
    Ok(Json(AttemptList {
        data: attempts.iter().map(AttemptView::from).collect(),
        next_cursor,
    }))
}

/// Send one event to the endpoint again, now.
///
/// Whatever the endpoint's status and cursor; the attempt is recorded and returned. The cursor does
/// not move (use `replay` to deliver everything again from an event on).
#[utoipa::path(
    post,
    path = "/webhooks/{id}/redeliver",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    request_body = Redeliver,
    responses(
        (status = 200, description = "The attempt (see `succeeded`)", body = AttemptView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such event, or not one of this endpoint's", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn redeliver(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Redeliver>,
) -> ApiResult<Json<AttemptView>> {
    let a = admin.redeliver_webhook(&id, &body.event_id).await?;
    Ok(Json(AttemptView::from(&a)))
}

/// Deliver every event again from a sequence number on, in order.
///
/// Moves the endpoint's cursor back; the dispatcher then sends the endpoint's events from there
/// (with their original `webhook-id`s, so receivers can recognise them).
#[utoipa::path(
    post,
    path = "/webhooks/{id}/replay",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    request_body = Replay,
    responses(
        (status = 200, description = "The endpoint, its cursor moved back", body = WebhookView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "from_sequence is below 1 or past the cursor", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn replay(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Replay>,
) -> ApiResult<Json<WebhookView>> {
    let w = admin.replay_webhook(&id, body.from_sequence).await?;
    Ok(Json(WebhookView::from(&w)))
}

/// Send a test message (`webhook.ping`) to the endpoint now.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/ping",
    tag = "webhooks",
    params(("id" = String, Path, description = "Webhook endpoint id")),
    responses(
        (status = 200, description = "The attempt (see `succeeded`)", body = AttemptView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ping(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<AttemptView>> {
    let a = admin.ping_webhook(&id).await?;
    Ok(Json(AttemptView::from(&a)))
}
