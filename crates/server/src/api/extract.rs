//! Request parsing for the management API, answering with problem details: JSON bodies (content
//! type checked, size limited, unknown fields refused) and query parameters (unknown ones refused
//! on every endpoint, by [`refuse_unknown_query_params`]).

use super::problem::ApiProblem;
use axum::extract::{FromRequest, MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Largest accepted request body of the management API, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest body of a match report upload (`POST /connections/{id}/match-report`: up to 10,000
/// accounts).
pub const MAX_MATCH_REPORT_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The body limit of a management API path.
pub fn max_body_bytes(path: &str) -> usize {
    if path.ends_with("/match-report") {
        MAX_MATCH_REPORT_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// A JSON request body.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiProblem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiProblem> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !is_json(content_type) {
            let got = if content_type.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("Content-Type \"{content_type}\"")
            };
            return Err(ApiProblem::new(
                415,
                format!("the request body must be JSON, sent with \"Content-Type: application/json\" (got {got})"),
            ));
        }
        let limit = max_body_bytes(req.uri().path());
        let too_large = || {
            ApiProblem::new(
                413,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
            if let Some(t) = crate::deadline::body_timeout(&e) {
                return ApiProblem::new(408, t.to_string());
            }
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                if s.to_string().contains("length limit") {
                    return too_large();
                }
                source = s.source();
            }
            ApiProblem::new(400, "the request body could not be read")
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiProblem::new(422, "the request body is empty; send a JSON object"));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiProblem::new(400, format!("the request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiProblem::new(422, "the request body must be a JSON object"));
        }
        if let Some(at) = nul_in(&value, &mut String::new()) {
            return Err(ApiProblem::new(
                400,
                format!("the request body holds a NUL character (U+0000) in {at}; no field may contain one"),
            ));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiProblem::new(422, format!("the request body is not as expected: {e}")))
    }
}

/// Where a JSON value holds U+0000 (which PostgreSQL text cannot store), in a string or a key: the
/// JSON path of the first one (`"name"`, `"event_types[2]"`), or `None`.
fn nul_in(v: &serde_json::Value, path: &mut String) -> Option<String> {
    use serde_json::Value;
    let name = |p: &str| {
        if p.is_empty() {
            "the body".to_string()
        } else {
            format!("\"{p}\"")
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => Some(name(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_in(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&k.replace('\0', "\\u0000"));
            let found = if k.contains('\0') {
                Some(format!("the field name {}", name(path)))
            } else {
                nul_in(item, path)
            };
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// Query parameters, decoded, in order.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The last value of a query parameter.
pub fn query_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The query parameters each operation takes, by method and path template relative to
/// [`super::BASE_PATH`]: those its OpenAPI document lists, so that what is documented and what is
/// accepted are one list.
fn query_params_by_operation() -> &'static HashMap<(String, String), Vec<String>> {
    static TABLE: OnceLock<HashMap<(String, String), Vec<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::path::ParameterIn;
        let doc = super::openapi();
        let mut table = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let relative = path.strip_prefix(super::BASE_PATH).unwrap_or(path).to_string();
            let operations = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, op) in operations {
                let Some(op) = op else { continue };
                let names = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query) => Some(p.name.clone()),
                        _ => None,
                    })
                    .collect();
                table.insert((method.to_string(), relative.clone()), names);
            }
        }
        table
    })
}

/// The answer to a query string holding a parameter that is not in `known`: a misspelt filter
/// would otherwise widen the answer silently.
pub fn check_query_params(pairs: &[(String, String)], known: &[String]) -> Result<(), ApiProblem> {
    let Some((unknown, _)) = pairs.iter().find(|(k, _)| !known.contains(k)) else {
        return Ok(());
    };
    let takes = if known.is_empty() {
        "this endpoint takes no query parameters".to_string()
    } else {
        format!("this endpoint takes: {}", known.join(", "))
    };
    Err(ApiProblem::new(
        400,
        format!("unknown query parameter \"{unknown}\"; {takes}"),
    ))
}

/// Middleware of every management route: refuses a query parameter the operation does not
/// document (400 problem details naming it and listing those it takes).
pub async fn refuse_unknown_query_params(req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>() else {
        tracing::error!("a management route ran without its matched path");
        return ApiProblem::new(500, "the route of the request is not known").into_response();
    };
    let relative = route.as_str().strip_prefix(super::BASE_PATH).unwrap_or(route.as_str());
    // HEAD is answered by the GET handler; a method the route has no operation for is the
    // router's 405.
    let method = if req.method() == axum::http::Method::HEAD {
        "GET"
    } else {
        req.method().as_str()
    };
    let Some(known) = query_params_by_operation().get(&(method.to_string(), relative.to_string())) else {
        return next.run(req).await;
    };
    if let Err(problem) = check_query_params(&query_pairs(req.uri().query()), known) {
        return problem.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }

    #[test]
    fn nul_characters_are_found_with_their_path() {
        use serde_json::json;
        let find = |v: serde_json::Value| nul_in(&v, &mut String::new());
        assert_eq!(find(json!({"name": "Acme", "tags": ["a", "b"]})), None);
        assert_eq!(find(json!({"name": "Ac\0me"})).as_deref(), Some("\"name\""));
        assert_eq!(
            find(json!({"match": {"group_name": "x\0"}})).as_deref(),
            Some("\"match.group_name\"")
        );
        assert_eq!(
            find(json!({"event_types": ["user.*", "\0"]})).as_deref(),
            Some("\"event_types[1]\"")
        );
        assert_eq!(find(json!({"a\0": 1})).as_deref(), Some("the field name \"a\\u0000\""));
    }

    #[test]
    fn unknown_query_params_are_named() {
        let known = ["cursor".to_string(), "limit".to_string()];
        assert!(check_query_params(&query_pairs(Some("limit=2&cursor=x")), &known).is_ok());
        assert!(check_query_params(&[], &[]).is_ok());
        let e = check_query_params(&query_pairs(Some("limit=2&emial=x")), &known).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(
            e.detail,
            "unknown query parameter \"emial\"; this endpoint takes: cursor, limit"
        );
        let e = check_query_params(&query_pairs(Some("x")), &[]).unwrap_err();
        assert_eq!(
            e.detail,
            "unknown query parameter \"x\"; this endpoint takes no query parameters"
        );
    }

    #[test]
    fn every_documented_operation_has_its_query_params() {
        let table = query_params_by_operation();
        let get = |m: &str, p: &str| table.get(&(m.to_string(), p.to_string())).cloned();
        assert_eq!(get("GET", "/webhooks"), Some(vec!["org_id".to_string()]));
        assert_eq!(get("GET", "/organizations/{id}"), Some(vec![]));
        assert!(
            get("GET", "/organizations/{id}/users")
                .unwrap()
                .contains(&"email".to_string())
        );
    }

    #[test]
    fn query_parsing() {
        let p = query_pairs(Some("limit=2&cursor=a%20b&limit=3"));
        assert_eq!(query_param(&p, "limit"), Some("3"));
        assert_eq!(query_param(&p, "cursor"), Some("a b"));
        assert_eq!(query_param(&p, "x"), None);
    }
}
