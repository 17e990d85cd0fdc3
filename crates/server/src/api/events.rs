//! The Events API, `/api/v1/events`: every change to organizations, connections, tokens, API keys,
//! users, groups and membership, in the order it was committed, with who made it; and a
//! connection's request log, `/api/v1/connections/{id}/requests`.
//!
//! Both page with opaque cursors. The events cursor is durable: events are numbered in commit order
//! and numbers are never reused, so a consumer that stores `next_cursor` resumes exactly where it
//! stopped, and reading from the start reconstructs every change still retained.

use super::extract::query_pairs;
use super::paging::{self, kinds, single};
use super::problem::{ApiProblem, ApiResult, Problem};
use crate::admin::Admin;
use crate::explain::{Explanation, explain};
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use rollcall_store::{EventQuery, RequestLogEntry, cursor, events};
use rollcall_webhooks::event::{EVENTS_CURSOR, EventView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Longest id accepted in a filter.
const MAX_ID_CHARS: usize = 200;

fn id_filter(pairs: &[(String, String)], name: &str) -> ApiResult<Option<String>> {
    match single(pairs, name)?.map(str::trim) {
        None => Ok(None),
        Some("") => Err(ApiProblem::new(400, format!("{name} must not be empty"))),
        Some(v) if v.chars().count() > MAX_ID_CHARS || v.chars().any(char::is_control) => Err(ApiProblem::new(
            400,
            format!("{name} is not an id: at most {MAX_ID_CHARS} characters, no control characters"),
        )),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// A page of events, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<EventView>,
    /// Pass as `after` for the next page. Always present: on the last page it is where to poll
    /// from for events recorded later.
    pub next_cursor: String,
    /// Whether more events matched than this page holds.
    pub has_more: bool,
}

/// Filters and paging of the event feed.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// A `next_cursor` (or an event's `cursor`): events after it. Absent: from the oldest retained.
    pub after: Option<String>,
    /// Largest number of events on the page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
    /// Event types, comma-separated or repeated; a trailing `*` matches a prefix (`user.*`,
    /// `group.member_*`). An unknown type is refused.
    #[param(example = "user.*,group.member_added")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only events of this organization.
    pub org_id: Option<String>,
    /// Only events of this SCIM connection (its audit log).
    pub connection_id: Option<String>,
    /// Only events about this user or group, including its membership changes (its audit log).
    pub resource_id: Option<String>,
}

/// The feed's query from the query string.
fn event_query(raw: Option<&str>) -> ApiResult<EventQuery> {
    let pairs = query_pairs(raw);
    let after_seq = paging::number_cursor(&pairs, "after", EVENTS_CURSOR)?.unwrap_or(0);
    let mut types: Vec<String> = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "type") {
        for term in v.split(',') {
            let expanded = events::expand_type_filter(term).map_err(|e| ApiProblem::new(400, format!("type: {e}")))?;
            for t in expanded {
                if !types.iter().any(|x| x == t) {
                    types.push(t.to_string());
                }
            }
        }
    }
    Ok(EventQuery {
        after_seq,
        limit: paging::limit(&pairs)?,
        types,
        org_id: id_filter(&pairs, "org_id")?,
        connection_id: id_filter(&pairs, "connection_id")?,
        resource_id: id_filter(&pairs, "resource_id")?,
    })
}

/// List events, oldest first: the change feed and the audit log.
///
/// Filter by type, organization, connection or resource (filters combine). Page with `after` and
/// `next_cursor`; reading from the start reconstructs every change still retained (events are kept
/// for the retention period, 30 days by default).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(EventParams),
    responses(
        (status = 200, description = "A page of events", body = EventList),
        (status = 400, description = "Invalid cursor, limit or filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_events(State(admin): State<Admin>, RawQuery(raw): RawQuery) -> ApiResult<Json<EventList>> {
    let q = event_query(raw.as_deref())?;
    let page = admin.events(&q).await?;
    let next = page.events.last().map_or(q.after_seq, |e| e.seq);
    Ok(Json(EventList {
        data: page.events.iter().map(EventView::from).collect(),
        next_cursor: cursor::encode_number(EVENTS_CURSOR, next),
        has_more: page.has_more,
    }))
}

/// Get one event.
#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event (or no longer retained)", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn get_event(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<EventView>> {
    Ok(Json(EventView::from(&admin.event(&id).await?)))
}

/// One SCIM request in a connection's request log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestView {
    /// When the request arrived (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    #[schema(example = "POST")]
    pub method: String,
    /// Path and query string as sent (secret-named query parameters redacted).
    #[schema(example = "/scim/v2/0190c7d2-5b7e-7000-8000-000000000001/Users")]
    pub path: String,
    pub status: u16,
    /// From arrival to the response being ready, in milliseconds.
    pub latency_ms: f64,
    /// The `scimType` of a SCIM error answer.
    #[schema(required = true)]
    pub scim_type: Option<String>,
    /// The `detail` of a SCIM error answer.
    #[schema(required = true)]
    pub error_detail: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// The prefix of the token that authenticated the request; `null` when none did.
    #[schema(required = true)]
    pub token_prefix: Option<String>,
    /// How the request presented its credentials (never the credentials themselves): `none` (no
    /// `Authorization` header), `empty`, `bearer`, `bearer_empty`, `bearer_doubled` (`Bearer Bearer
    /// ...`), `bearer_api_key` (an operator API key), `bearer_other` (not a SCIM token), `basic`,
    /// `bare` (a token without `Bearer `), `other` (another scheme); `null` for requests logged
    /// before this was recorded.
    #[schema(required = true, example = "bearer")]
    pub auth_scheme: Option<String>,
    /// A failed request explained in plain words, with a suggested fix; `null` for a success.
    #[schema(required = true)]
    pub explanation: Option<ExplanationView>,
    /// What the request was part of, when an identity provider sends a run of requests that means
    /// something as a whole (JumpCloud's Test Connection); `null` otherwise. Recognised among the
    /// requests of the same page.
    #[schema(required = true)]
    pub activity: Option<ActivityView>,
    /// With debug logging on: the request body, passwords and tokens redacted (JSON, or a string
    /// when it was not JSON). Otherwise `null`.
    #[schema(required = true, value_type = Object)]
    pub request_body: Option<Value>,
    /// With debug logging on: the response body. Otherwise `null`.
    #[schema(required = true, value_type = Object)]
    pub response_body: Option<Value>,
}

/// A failed SCIM request explained: what happened and what to change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExplanationView {
    /// The class of the failure, a stable word: `missing_authorization`, `basic_auth`,
    /// `bearer_missing`, `bearer_doubled`, `empty_token`, `unsupported_scheme`, `api_key_used`,
    /// `invalid_token`, `not_a_scim_token`, `no_bearer_token`, `connection_disabled`,
    /// `wrong_base_url`, `resource_not_found`, `uniqueness`, `invalid_filter`, `invalid_syntax`,
    /// `invalid_value`, `invalid_path`, `no_target`, `mutability`, `too_many`, `invalid_version`,
    /// `invalid_cursor`, `sensitive`, `method_not_allowed`, `request_timeout`,
    /// `precondition_failed`, `too_large`, `unsupported_media_type`, `rate_limited`,
    /// `server_error`, `unavailable`, `bad_request` or `other`.
    #[schema(example = "bearer_missing")]
    pub kind: String,
    /// What happened.
    #[schema(example = "The Authorization header held the token alone, without the word \"Bearer\" before it.")]
    pub summary: String,
    /// What to change, and where.
    pub fix: String,
}

/// A run of requests that is, as a whole, something an identity provider does.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActivityView {
    /// `connection_test`: the identity provider's connection test (JumpCloud creates a test user
    /// and group and removes them again).
    #[schema(example = "connection_test")]
    pub kind: String,
    /// The identity provider, as a connection's `idp` names it.
    #[schema(example = "jumpcloud")]
    pub idp: String,
    #[schema(example = "JumpCloud's Test Connection")]
    pub name: String,
    /// What the run does.
    pub summary: String,
}

impl From<crate::explain::Activity> for ActivityView {
    fn from(a: crate::explain::Activity) -> Self {
        ActivityView {
            kind: a.kind.to_string(),
            idp: a.idp.to_string(),
            name: a.name.to_string(),
            summary: a.summary.to_string(),
        }
    }
}

impl From<Explanation> for ExplanationView {
    fn from(x: Explanation) -> Self {
        ExplanationView {
            kind: x.kind.to_string(),
            summary: x.summary,
            fix: x.fix,
        }
    }
}

fn body_view(text: &Option<String>) -> Option<Value> {
    text.as_ref()
        .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())))
}

impl From<&RequestLogEntry> for RequestView {
    fn from(e: &RequestLogEntry) -> Self {
        RequestView {
            at: rfc3339(e.at_us),
            method: e.method.clone(),
            path: e.path.clone(),
            status: e.status,
            latency_ms: e.latency_us as f64 / 1000.0,
            scim_type: e.scim_type.clone(),
            error_detail: e.error_detail.clone(),
            user_agent: e.user_agent.clone(),
            request_id: e.request_id.clone(),
            token_prefix: e.token_prefix.clone(),
            auth_scheme: e.auth_scheme.clone(),
            explanation: explain(e).map(ExplanationView::from),
            activity: None,
            request_body: body_view(&e.request_body),
            response_body: body_view(&e.response_body),
        }
    }
}

/// A page of a connection's request log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestList {
    pub data: Vec<RequestView>,
    /// Pass as `cursor` to get older requests; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Paging of the request log.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestParams {
    /// The `next_cursor` of the previous page; absent for the newest requests.
    pub cursor: Option<String>,
    /// Largest number of requests on the page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// A SCIM connection's request log: its last SCIM requests (1000 by default), newest first.
///
/// Each shows the method, path, status, latency and, for errors, the SCIM `scimType` and `detail`
/// answered, with the failure explained in plain words and a suggested fix (`explanation`); with the connection's `debug_logging` on, also the request and response bodies with
/// passwords and tokens redacted. Requests are written in the background within about a second.
#[utoipa::path(
    get,
    path = "/connections/{id}/requests",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id"), RequestParams),
    responses(
        (status = 200, description = "A page of requests, newest first", body = RequestList),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_requests(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<RequestList>> {
    let pairs = query_pairs(raw.as_deref());
    let before = paging::number_cursor(&pairs, "cursor", kinds::REQUESTS)?;
    let limit = paging::limit(&pairs)?;
    let (found, more) = admin.request_log(&id, before, limit).await?;
    let next_cursor = more
        .then(|| found.last().map(|e| cursor::encode_number(kinds::REQUESTS, e.seq)))
        .flatten();
    let idp = admin.connection(&id).await?.idp;
    let activities = crate::explain::activities(&found, idp.as_str());
    Ok(Json(RequestList {
        data: found
            .iter()
            .zip(activities)
            .map(|(e, a)| RequestView {
                activity: a.map(ActivityView::from),
                ..RequestView::from(e)
            })
            .collect(),
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_from_the_query_string() {
        let q = event_query(Some(
            "type=user.*,group.member_added&type=user.created&limit=5&resource_id=u1",
        ))
        .unwrap();
        assert_eq!(q.limit, 5);
        assert!(
            q.types
                .iter()
                .all(|t| t.starts_with("user.") || t == "group.member_added")
        );
        assert_eq!(q.types.iter().filter(|t| *t == "user.created").count(), 1);
        assert_eq!(q.resource_id.as_deref(), Some("u1"));
        assert_eq!(q.after_seq, 0);
        for bad in [
            "type=user.create",
            "type=",
            "type=*",
            "limit=0",
            "limit=1001",
            "limit=x",
            "after=zzz",
            "resource_id=",
            "connection_id=a&connection_id=b",
        ] {
            let e = event_query(Some(bad)).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
    }
}
