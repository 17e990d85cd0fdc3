//! SCIM responses: `application/scim+json` bodies, error bodies on every error, ETags.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollcall_scim::ScimError;
use serde_json::Value;

pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// A SCIM JSON response.
pub struct ScimResponse {
    pub status: StatusCode,
    pub body: Option<Body>,
    pub headers: HeaderMap,
}

/// A response body: a value to serialize, or JSON written already.
pub enum Body {
    Value(Value),
    Json(Vec<u8>),
}

impl ScimResponse {
    pub fn ok(body: Value) -> Self {
        Self::with_status(StatusCode::OK, body)
    }
    pub fn with_status(status: StatusCode, body: Value) -> Self {
        ScimResponse {
            status,
            body: Some(Body::Value(body)),
            headers: HeaderMap::new(),
        }
    }
    /// A response whose body is `json`, JSON text written already.
    pub fn json(status: StatusCode, json: Vec<u8>) -> Self {
        ScimResponse {
            status,
            body: Some(Body::Json(json)),
            headers: HeaderMap::new(),
        }
    }
    pub fn no_content() -> Self {
        ScimResponse {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: HeaderMap::new(),
        }
    }
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

impl IntoResponse for ScimResponse {
    fn into_response(self) -> Response {
        let mut resp = match self.body {
            Some(b) => {
                let bytes = match b {
                    Body::Value(v) => serde_json::to_vec(&v).unwrap_or_default(),
                    Body::Json(bytes) => bytes,
                };
                let mut r = (self.status, bytes).into_response();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
                r
            }
            None => self.status.into_response(),
        };
        resp.headers_mut().extend(self.headers);
        resp
    }
}

/// A SCIM error as an HTTP response.
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl From<rollcall_store::StoreError> for ApiError {
    fn from(e: rollcall_store::StoreError) -> Self {
        ApiError(e.into_scim())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// Renders a SCIM error (RFC 7644 §3.12), adding `WWW-Authenticate` to 401s.
pub fn error_response(e: &ScimError) -> Response {
    crate::metrics::scim_error(e);
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = ScimResponse::with_status(status, e.to_json());
    if e.status == 401 {
        r = r.header(header::WWW_AUTHENTICATE, "Bearer realm=\"rollcall\"");
    }
    r.into_response()
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The weak ETag of a resource version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Reads a version from an `If-Match`/`If-None-Match` value: `W/"3"`, `"3"`, or `*` (any).
/// Returns `Ok(None)` for `*`.
pub fn parse_etag(v: &str) -> Result<Option<i64>, ScimError> {
    let v = v.trim();
    if v == "*" {
        return Ok(None);
    }
    let inner = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    inner
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ScimError::precondition_failed(format!("{v} is not a version of this resource")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip() {
        assert_eq!(parse_etag(&etag(7)).unwrap(), Some(7));
        assert_eq!(parse_etag("\"7\"").unwrap(), Some(7));
        assert_eq!(parse_etag("*").unwrap(), None);
        assert_eq!(parse_etag("W/\"abc\"").unwrap_err().status, 412);
    }
}
