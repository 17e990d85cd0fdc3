//! Operator API keys: `/api/v1/api-keys`. A key can create and revoke keys (including itself), like
//! `rollcall api-key` on the command line.

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::problem::{ApiResult, Problem};
use crate::admin::Admin;
use crate::service::rfc3339;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rollcall_store::ApiKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An operator API key. Only its first characters are ever shown after creation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    #[schema(example = "deploy pipeline")]
    pub name: String,
    #[schema(example = "rc_key_Ab12")]
    pub key_prefix: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was revoked; a revoked key no longer authenticates.
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            key_prefix: k.key_prefix.clone(),
            created_at: rfc3339(k.created_us),
            revoked_at: k.revoked_us.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKeyView>,
}

/// A key just created. The secret is shown only here, once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyWithSecret {
    pub api_key: ApiKeyView,
    #[schema(example = "rc_key_...")]
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1 to 200 characters, to recognise the key in lists.
    pub name: String,
}

/// Create an API key.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is shown only in this answer", body = ApiKeyWithSecret),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or unknown field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_api_key(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKeyWithSecret>)> {
    let issued = admin.create_api_key(&by, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyWithSecret {
            api_key: ApiKeyView::from(&issued.key),
            secret: issued.secret,
        }),
    ))
}

/// List API keys, revoked ones included, oldest first.
#[utoipa::path(get, path = "/api-keys", tag = "api-keys",
    responses(
        (status = 200, description = "The keys", body = ApiKeyList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_api_keys(State(admin): State<Admin>) -> ApiResult<Json<ApiKeyList>> {
    let keys = admin.list_api_keys().await?;
    Ok(Json(ApiKeyList {
        data: keys.iter().map(ApiKeyView::from).collect(),
    }))
}

/// Revoke an API key: it stops working at once.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_api_key(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    let key = admin.revoke_api_key(&by, &id).await?;
    Ok(Json(ApiKeyView::from(&key)))
}
