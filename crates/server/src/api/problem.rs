//! Errors of the management API as RFC 9457 problem details (`application/problem+json`).

use crate::admin::AdminError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An error, as RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:rollcall:problem:not-found",
    "title": "Not found",
    "status": 404,
    "detail": "no organization with id \"0190c7d2-5b7e-7000-8000-000000000000\""
}))]
pub struct Problem {
    /// Identifies the kind of problem: `urn:rollcall:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, and how to fix it.
    pub detail: String,
}

/// The kind (last part of `type`) and title of a status.
fn kind_and_title(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("bad-request", "Bad request"),
        401 => ("unauthorized", "Unauthorized"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not-found", "Not found"),
        405 => ("method-not-allowed", "Method not allowed"),
        406 => ("not-acceptable", "Not acceptable"),
        408 => ("request-timeout", "Request timeout"),
        409 => ("conflict", "Conflict"),
        410 => ("gone", "Gone"),
        413 => ("payload-too-large", "Request body too large"),
        414 => ("uri-too-long", "URI too long"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        422 => ("validation-failed", "Invalid request"),
        429 => ("too-many-requests", "Too many requests"),
        431 => ("headers-too-large", "Request headers too large"),
        503 => ("unavailable", "Service unavailable"),
        s if s >= 500 => ("internal", "Internal error"),
        _ => ("bad-request", "Bad request"),
    }
}

fn title_of_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "confirmation-required" => Some("Confirmation required"),
        "not-signed-in" => Some("Not signed in"),
        "link-not-found" => Some("Setup link not found"),
        "link-expired" => Some("Setup link expired"),
        "link-revoked" => Some("Setup link revoked"),
        "guard-not-tripped" => Some("Guard not tripped"),
        _ => None,
    }
}

/// An error response of the management API.
#[derive(Debug, Clone)]
pub struct ApiProblem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl ApiProblem {
    pub fn new(status: u16, detail: impl Into<String>) -> ApiProblem {
        let (kind, title) = kind_and_title(status);
        ApiProblem {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            title,
            detail: detail.into(),
        }
    }

    pub fn body(&self) -> Problem {
        Problem {
            kind: format!("urn:rollcall:problem:{}", self.kind),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl From<AdminError> for ApiProblem {
    fn from(e: AdminError) -> Self {
        let mut p = ApiProblem::new(e.status, e.detail);
        if let Some(kind) = e.kind {
            p.kind = kind;
            p.title = title_of_kind(kind).unwrap_or(p.title);
        }
        p
    }
}

impl IntoResponse for ApiProblem {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut r = (self.status, bytes).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rollcall-management\""),
            );
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiProblem>;

/// Turns any error response that is not yet problem details (the router's own 405, a rejection)
/// into one, keeping its status and headers (such as `Allow`).
pub async fn ensure_problem(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_CONTENT_TYPE));
    if is_problem {
        return resp;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = resp
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("this method is not allowed on this path; allowed: {allowed}")
        }
        StatusCode::NOT_FOUND => "no such endpoint in the management API; see /api/v1/openapi.json".to_string(),
        s => format!(
            "the request failed: {}",
            s.canonical_reason().unwrap_or("unknown error").to_lowercase()
        ),
    };
    let (mut parts, _) = resp.into_parts();
    let mut fresh = ApiProblem::new(status.as_u16(), detail).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (k, v) in parts.headers.drain().filter_map(|(k, v)| k.map(|k| (k, v))) {
        fresh.headers_mut().entry(k).or_insert(v);
    }
    fresh
}

/// The answer to a path that is not part of the management API.
pub async fn not_found() -> ApiProblem {
    ApiProblem::new(404, "no such endpoint in the management API; see /api/v1/openapi.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_titles() {
        let p = ApiProblem::from(AdminError::invalid("x").with_kind("confirmation-required")).body();
        assert_eq!(p.kind, "urn:rollcall:problem:confirmation-required");
        assert_eq!(p.title, "Confirmation required");
        assert_eq!(p.status, 422);
        let p = ApiProblem::new(409, "taken").body();
        assert_eq!(
            (p.kind.as_str(), p.title.as_str()),
            ("urn:rollcall:problem:conflict", "Conflict")
        );
    }
}
