//! Request parsing for the management API, answering with problem details: JSON bodies (content
//! type checked, size limited, unknown fields refused) and query parameters.

use super::problem::ApiProblem;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// Largest accepted request body of the management API, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
        let too_large = || {
            ApiProblem::new(
                413,
                format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|e| {
                if let Some(t) = crate::limits::body_timeout(&e) {
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
    fn query_parsing() {
        let p = query_pairs(Some("limit=2&cursor=a%20b&limit=3"));
        assert_eq!(query_param(&p, "limit"), Some("3"));
        assert_eq!(query_param(&p, "cursor"), Some("a b"));
        assert_eq!(query_param(&p, "x"), None);
    }
}
