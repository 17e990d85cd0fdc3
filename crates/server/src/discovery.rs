//! Discovery endpoints: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7644 §4).

use crate::auth::Caller;
use crate::response::{ApiResult, ScimResponse};
use crate::service::{LIST_RESPONSE, Scim};
use axum::Extension;
use axum::extract::{Path, State};
use rollcall_scim::ScimError;
use rollcall_scim::schema::SERVICE_PROVIDER_CONFIG;
use serde_json::{Value, json};
use std::collections::HashMap;

fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

fn with_location(mut v: Value, location: String) -> Value {
    v["meta"]["location"] = Value::String(location);
    v
}

pub async fn service_provider_config(State(s): State<Scim>, Extension(c): Extension<Caller>) -> ScimResponse {
    let cfg = &s.config;
    ScimResponse::ok(json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "documentationUri": "https://github.com/rollcall/rollcall#readme",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": cfg.bulk_max_operations, "maxPayloadSize": cfg.max_body_bytes},
        "filter": {"supported": true, "maxResults": cfg.max_page_size},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": cfg.default_page_size,
            "maxPageSize": cfg.max_page_size,
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The SCIM connection's bearer token, sent as \"Authorization: Bearer <token>\".",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", s.base_url(c.connection_id())),
        },
    }))
}

pub async fn resource_types(State(s): State<Scim>, Extension(c): Extension<Caller>) -> ScimResponse {
    let base = s.base_url(c.connection_id());
    let items = s
        .registry
        .resource_types()
        .iter()
        .map(|rt| with_location(rt.to_json(), format!("{base}/ResourceTypes/{}", rt.id)))
        .collect();
    ScimResponse::ok(list(items))
}

pub async fn resource_type(
    State(s): State<Scim>,
    Extension(c): Extension<Caller>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<ScimResponse> {
    let id = p.get("id").map(String::as_str).unwrap_or_default();
    let rt = s
        .registry
        .resource_types()
        .iter()
        .find(|rt| rt.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| ScimError::not_found(format!("resource type \"{id}\" not found")))?;
    let base = s.base_url(c.connection_id());
    Ok(ScimResponse::ok(with_location(
        rt.to_json(),
        format!("{base}/ResourceTypes/{}", rt.id),
    )))
}

pub async fn schemas(State(s): State<Scim>, Extension(c): Extension<Caller>) -> ScimResponse {
    let base = s.base_url(c.connection_id());
    let items = s
        .registry
        .schemas()
        .iter()
        .map(|sc| with_location(sc.to_json(), format!("{base}/Schemas/{}", sc.id)))
        .collect();
    ScimResponse::ok(list(items))
}

pub async fn schema(
    State(s): State<Scim>,
    Extension(c): Extension<Caller>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<ScimResponse> {
    let id = p.get("id").map(String::as_str).unwrap_or_default();
    let sc = s
        .registry
        .schema(id)
        .ok_or_else(|| ScimError::not_found(format!("schema \"{id}\" not found")))?;
    let base = s.base_url(c.connection_id());
    Ok(ScimResponse::ok(with_location(
        sc.to_json(),
        format!("{base}/Schemas/{}", sc.id),
    )))
}
