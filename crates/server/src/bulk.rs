//! `/Bulk` (RFC 7644 §3.7): operations run in order, `bulkId` references resolved as resources are
//! created, `failOnErrors` honoured, and the advertised limits enforced.
//!
//! Consecutive creates of one resource type that refer to no other operation are written in one
//! transaction (up to [`CREATES_PER_TRANSACTION`] at a time; [`Scim::create_many`]), each still
//! answered on its own: when one of them fails they are written one at a time instead, so the
//! failure is that operation's and the others succeed as they would have alone. With
//! `failOnErrors` every operation is written on its own, so that the count stops exactly where it
//! should.

use crate::auth::Caller;
use crate::handlers::ScimBody;
use crate::response::{ApiError, ApiResult, ScimResponse, etag, parse_etag};
use crate::service::Scim;
use axum::Extension;
use axum::extract::State;
use rollcall_scim::{ScimError, ScimResult};
use rollcall_store::ResourceKind;
use serde_json::{Value, json};
use std::collections::HashMap;

pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// Replaces every `"bulkId:X"` string in `v` with the id created for X.
fn resolve_refs(v: &mut Value, ids: &HashMap<String, String>) -> ScimResult<()> {
    match v {
        Value::String(s) => {
            if let Some(bulk_id) = s.strip_prefix("bulkId:") {
                let id = ids.get(bulk_id).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "bulkId \"{bulk_id}\" does not refer to an earlier successful POST"
                    ))
                })?;
                *s = id.clone();
            }
        }
        Value::Array(a) => {
            for i in a {
                resolve_refs(i, ids)?;
            }
        }
        Value::Object(o) => {
            for (_, i) in o.iter_mut() {
                resolve_refs(i, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Resolves `bulkId:X` segments of an operation's path (`/Groups/bulkId:g`).
fn resolve_path_refs(path: &str, ids: &HashMap<String, String>) -> ScimResult<String> {
    let mut out = Vec::new();
    for seg in path.split('/') {
        let mut v = Value::String(seg.to_string());
        resolve_refs(&mut v, ids)?;
        out.push(v.as_str().unwrap_or_default().to_string());
    }
    Ok(out.join("/"))
}

/// The most creates of one request written in one transaction: a longer run is written as
/// several, so that one request holds SQLite's writer (or PostgreSQL's events lock) only briefly.
pub const CREATES_PER_TRANSACTION: usize = 50;

/// Whether `v` holds a `"bulkId:X"` reference.
fn has_refs(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with("bulkId:"),
        Value::Array(a) => a.iter().any(has_refs),
        Value::Object(o) => o.values().any(has_refs),
        _ => false,
    }
}

/// The resource type of `op` when it is a create that can share a transaction with its
/// neighbours: a `POST` with a `bulkId`, a path naming a resource type, no `version`, and data
/// referring to no other operation.
fn plain_create(op: &Value) -> Option<ResourceKind> {
    let method = op.get("method").and_then(Value::as_str)?;
    if !method.eq_ignore_ascii_case("POST")
        || op.get("bulkId").and_then(Value::as_str).is_none()
        || op.get("version").is_some()
        || !op.get("data").is_some_and(Value::is_object)
        || op.get("data").is_some_and(has_refs)
    {
        return None;
    }
    match parse_path(op.get("path").and_then(Value::as_str)?) {
        Ok((kind, None)) => Some(kind),
        _ => None,
    }
}

/// Status and, for writes, the resource written.
type OpOutcome = Result<(u16, Option<(ResourceKind, String, i64)>), ScimError>;

fn unapi(e: ApiError) -> ScimError {
    e.0
}

fn parse_path(path: &str) -> ScimResult<(ResourceKind, Option<&str>)> {
    let p = path.trim_start_matches('/');
    let (endpoint, rest) = p.split_once('/').map(|(a, b)| (a, Some(b))).unwrap_or((p, None));
    let kind = match endpoint {
        e if e.eq_ignore_ascii_case("Users") => ResourceKind::User,
        e if e.eq_ignore_ascii_case("Groups") => ResourceKind::Group,
        _ => {
            return Err(ScimError::invalid_path(format!(
                "\"{path}\" is not a /Users or /Groups path"
            )));
        }
    };
    Ok((kind, rest.filter(|r| !r.is_empty())))
}

/// Refuses a request in which two operations carry the same `bulkId` (RFC 7644 §3.7: a bulkId
/// identifies one operation, and references to it would be ambiguous), before any runs.
fn check_bulk_ids(ops: &[Value]) -> ScimResult<()> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        if let Some(id) = op.get("bulkId").and_then(Value::as_str)
            && !seen.insert(id)
        {
            return Err(ScimError::invalid_value(format!(
                "bulkId \"{id}\" is used by more than one operation (again by operation {}); \
                 each operation's bulkId must be unique; nothing was applied",
                i + 1
            )));
        }
    }
    Ok(())
}

pub async fn bulk(
    State(s): State<Scim>,
    Extension(c): Extension<Caller>,
    ScimBody(body): ScimBody,
) -> ApiResult<ScimResponse> {
    let schemas_ok = body["schemas"].as_array().is_some_and(|a| {
        a.iter()
            .any(|v| v.as_str().is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST)))
    });
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!("\"schemas\" must contain {BULK_REQUEST}")).into());
    }
    let ops = body
        .get("Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("\"Operations\" must be an array"))?;
    if ops.len() > s.config.bulk_max_operations {
        return Err(ScimError::new(
            413,
            None,
            format!(
                "{} operations exceed the maximum of {}",
                ops.len(),
                s.config.bulk_max_operations
            ),
        )
        .into());
    }
    let fail_on_errors = match body.get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().filter(|n| *n > 0),
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "\"failOnErrors\" must be a non-negative integer (the number of errors after which the \
                 remaining operations are skipped), not {other}"
            ))
            .into());
        }
    };
    check_bulk_ids(ops)?;
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results = Vec::new();
    let mut errors = 0u64;
    let ctx = c.write_context();
    let policy = &c.connection.policy;
    let dialect = c.dialect();
    let mut next = 0;
    while next < ops.len() {
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
        // A run of creates written together (see the module documentation).
        if fail_on_errors.is_none()
            && let Some(kind) = plain_create(&ops[next])
        {
            let run: Vec<&Value> = ops[next..]
                .iter()
                .take(CREATES_PER_TRANSACTION)
                .take_while(|op| plain_create(op) == Some(kind))
                .collect();
            if run.len() > 1 {
                let bodies: Vec<Value> = run.iter().map(|op| op["data"].clone()).collect();
                let created = s.create_many(&ctx, policy, kind, &bodies).await;
                for (op, outcome) in run.iter().zip(created) {
                    let bulk_id = op["bulkId"].as_str().expect("a plain create has a bulkId").to_string();
                    let mut result = json!({"method": "POST", "bulkId": bulk_id});
                    match outcome {
                        Ok(r) => {
                            result["location"] = json!(s.location(c.connection_id(), kind, &r.id));
                            result["version"] = json!(etag(r.version));
                            result["status"] = json!("201");
                            ids.insert(bulk_id, r.id);
                        }
                        Err(e) => {
                            let e = unapi(e);
                            errors += 1;
                            result["status"] = json!(e.status.to_string());
                            result["response"] = e.to_json();
                        }
                    }
                    results.push(result);
                }
                next += run.len();
                continue;
            }
        }
        let op = &ops[next];
        next += 1;
        let method = op
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_uppercase();
        let bulk_id = op.get("bulkId").and_then(Value::as_str).map(str::to_string);
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
        let outcome: OpOutcome = async {
            let path = resolve_path_refs(&path, &ids)?;
            let (kind, id) = parse_path(&path)?;
            let mut data = op.get("data").cloned().unwrap_or(Value::Null);
            resolve_refs(&mut data, &ids)?;
            let version = match op.get("version").and_then(Value::as_str) {
                Some(v) => parse_etag(v)?,
                None => None,
            };
            let need_id = || {
                id.map(str::to_string).ok_or_else(|| {
                    ScimError::invalid_path(format!("{method} needs a resource path such as /Users/{{id}}"))
                })
            };
            match method.as_str() {
                "POST" => {
                    if bulk_id.is_none() {
                        return Err(ScimError::invalid_syntax("a POST operation needs a bulkId"));
                    }
                    let r = s.create(&ctx, policy, kind, &data).await.map_err(unapi)?;
                    Ok((201, Some((kind, r.id, r.version))))
                }
                "PUT" => {
                    let r = s
                        .replace(&ctx, policy, kind, &need_id()?, &data, version)
                        .await
                        .map_err(unapi)?;
                    Ok((200, Some((kind, r.id, r.version))))
                }
                "PATCH" => {
                    let r = s
                        .patch(&ctx, policy, dialect, kind, &need_id()?, &data, version)
                        .await
                        .map_err(unapi)?;
                    Ok((200, Some((kind, r.id, r.version))))
                }
                "DELETE" => {
                    s.delete(&ctx, kind, &need_id()?, version).await.map_err(unapi)?;
                    Ok((204, None))
                }
                other => Err(ScimError::invalid_syntax(format!(
                    "unsupported bulk method \"{other}\""
                ))),
            }
        }
        .await;
        let mut result = json!({"method": method});
        if let Some(b) = &bulk_id {
            result["bulkId"] = json!(b);
        }
        match outcome {
            Ok((status, created)) => {
                if let Some((kind, id, version)) = created {
                    if let (Some(b), "POST") = (&bulk_id, method.as_str()) {
                        ids.insert(b.clone(), id.clone());
                    }
                    result["location"] = json!(s.location(c.connection_id(), kind, &id));
                    result["version"] = json!(etag(version));
                } else if let Ok((kind, Some(id))) = parse_path(&path) {
                    result["location"] = json!(s.location(c.connection_id(), kind, id));
                }
                result["status"] = json!(status.to_string());
            }
            Err(e) => {
                errors += 1;
                result["status"] = json!(e.status.to_string());
                result["response"] = e.to_json();
            }
        }
        results.push(result);
    }
    Ok(ScimResponse::ok(
        json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_ids_resolve() {
        let mut ids = HashMap::new();
        ids.insert("u1".to_string(), "abc".to_string());
        let mut v = json!({"members": [{"value": "bulkId:u1"}]});
        resolve_refs(&mut v, &ids).unwrap();
        assert_eq!(v["members"][0]["value"], "abc");
        let mut bad = json!("bulkId:nope");
        assert!(resolve_refs(&mut bad, &ids).is_err());
        assert_eq!(resolve_path_refs("/Users/bulkId:u1", &ids).unwrap(), "/Users/abc");
        assert_eq!(parse_path("/Users/x").unwrap(), (ResourceKind::User, Some("x")));
        assert!(parse_path("/Things").is_err());
    }
}
