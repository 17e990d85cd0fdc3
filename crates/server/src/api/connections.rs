//! SCIM connections: `/api/v1/organizations/{id}/connections` and `/api/v1/connections/...`.

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::organizations::location;
use super::problem::{ApiResult, Problem};
use super::schemas::*;
use crate::admin::Admin;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use rollcall_store::{ConnectionUpdate, IdpKind};

/// Create a SCIM connection in an organization, with its first token.
#[utoipa::path(
    post,
    path = "/organizations/{id}/connections",
    tag = "connections",
    params(("id" = String, Path, description = "Organization id")),
    request_body = CreateConnection,
    responses(
        (status = 201, description = "Created; the token is shown only in this answer", body = ConnectionWithToken,
            headers(("Location" = String, description = "The connection's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_connection(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateConnection>,
) -> ApiResult<(StatusCode, HeaderMap, Json<ConnectionWithToken>)> {
    let idp = body.idp.map(IdpKind::from).unwrap_or(IdpKind::Generic);
    let mut issued = admin.create_connection(&by, &org_id, body.name.as_deref(), idp).await?;
    if body.staging == Some(true) {
        // Before the token is handed out: no SCIM request can come in between.
        issued.connection = admin.stage_connection(&by, &issued.connection.id).await?;
    }
    Ok((
        StatusCode::CREATED,
        location("connections", &issued.connection.id),
        Json(ConnectionWithToken {
            connection: ConnectionView::new(&admin, &issued.connection),
            token: issued.token,
        }),
    ))
}

/// List an organization's SCIM connections, oldest first.
#[utoipa::path(
    get,
    path = "/organizations/{id}/connections",
    tag = "connections",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The organization's connections", body = ConnectionList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_connections(
    State(admin): State<Admin>,
    Path(org_id): Path<String>,
) -> ApiResult<Json<ConnectionList>> {
    let list = admin.list_connections(Some(&org_id)).await?;
    Ok(Json(ConnectionList {
        data: list.iter().map(|c| ConnectionView::new(&admin, c)).collect(),
    }))
}

/// Get a SCIM connection.
#[utoipa::path(
    get,
    path = "/connections/{id}",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_connection(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<ConnectionView>> {
    let c = admin.connection(&id).await?;
    Ok(Json(ConnectionView::new(&admin, &c)))
}

/// Change a SCIM connection's name, identity provider, status or debug logging.
///
/// Disabling takes effect at once on the node that answers, and within a second on the others; so
/// does debug logging, which keeps the (redacted) bodies of SCIM requests and responses in the
/// connection's request log.
#[utoipa::path(
    patch,
    path = "/connections/{id}",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    request_body = UpdateConnection,
    responses(
        (status = 200, description = "The connection, changed", body = ConnectionView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or unknown field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_connection(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateConnection>,
) -> ApiResult<Json<ConnectionView>> {
    let c = admin
        .update_connection(
            &by,
            &id,
            ConnectionUpdate {
                name: body.name,
                idp: body.idp.map(IdpKind::from),
                status: body.status.map(Into::into),
                debug_logging: body.debug_logging,
            },
        )
        .await?;
    Ok(Json(ConnectionView::new(&admin, &c)))
}

/// Delete a SCIM connection with all its users, groups and membership.
#[utoipa::path(
    delete,
    path = "/connections/{id}",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_connection(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin.delete_connection(&by, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a token rotation: issue a new token that works beside the current one.
///
/// Configure the new token in the identity provider, check that it is used (`last_request_at`),
/// then complete the rotation. A connection without a token (after `revoke-tokens`) takes the new
/// token as its only token at once.
#[utoipa::path(
    post,
    path = "/connections/{id}/token-rotation",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The new token, shown only in this answer", body = ConnectionWithToken),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rotation is already in progress", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn start_token_rotation(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionWithToken>> {
    let issued = admin.start_token_rotation(&by, &id).await?;
    Ok(Json(ConnectionWithToken {
        connection: ConnectionView::new(&admin, &issued.connection),
        token: issued.token,
    }))
}

/// Complete a token rotation: the new token becomes the only one, the old one stops working.
#[utoipa::path(
    post,
    path = "/connections/{id}/token-rotation/complete",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection, with only the new token", body = ConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No rotation is in progress", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete_token_rotation(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let c = admin.complete_token_rotation(&by, &id).await?;
    Ok(Json(ConnectionView::new(&admin, &c)))
}

/// Cancel a token rotation: the new token stops working, the old one stays.
#[utoipa::path(
    post,
    path = "/connections/{id}/token-rotation/cancel",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection, with only the old token", body = ConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No rotation is in progress", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_token_rotation(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let c = admin.cancel_token_rotation(&by, &id).await?;
    Ok(Json(ConnectionView::new(&admin, &c)))
}

/// Revoke every token of a connection at once (for a leaked token).
///
/// The connection keeps its users and groups; no SCIM request is accepted until a new token is
/// issued with `token-rotation`.
#[utoipa::path(
    post,
    path = "/connections/{id}/revoke-tokens",
    tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection, without tokens", body = ConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_tokens(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let c = admin.revoke_tokens(&by, &id).await?;
    Ok(Json(ConnectionView::new(&admin, &c)))
}
