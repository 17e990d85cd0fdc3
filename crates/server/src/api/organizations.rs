//! `/api/v1/organizations`.

use super::auth::ApiCaller;
use super::extract::{JsonBody, query_pairs, query_param};
use super::paging::{self, kinds};
use super::problem::{ApiResult, Problem};
use super::schemas::*;
use crate::admin::Admin;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use rollcall_store::cursor;

/// A `Location` header for `/api/v1/{kind}/{id}`.
pub(super) fn location(kind: &str, id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/{kind}/{id}")) {
        h.insert(header::LOCATION, v);
    }
    h
}

/// Reads `cursor` (an organization id inside) and `limit`.
fn page_params(raw: Option<&str>) -> ApiResult<(Option<String>, i64)> {
    let pairs = query_pairs(raw);
    Ok((
        paging::text_cursor(&pairs, "cursor", kinds::ORGANIZATIONS)?,
        paging::limit(&pairs)?,
    ))
}

/// Create an organization.
#[utoipa::path(
    post,
    path = "/organizations",
    tag = "organizations",
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "Created", body = OrganizationView,
            headers(("Location" = String, description = "The organization's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or unknown field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_organization(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    JsonBody(body): JsonBody<CreateOrganization>,
) -> ApiResult<(StatusCode, HeaderMap, Json<OrganizationView>)> {
    let org = admin.create_organization(&by, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        location("organizations", &org.id),
        Json(OrganizationView::from(&org)),
    ))
}

/// List organizations, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/organizations",
    tag = "organizations",
    params(PageParams),
    responses(
        (status = 200, description = "A page of organizations", body = OrganizationList),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_organizations(
    State(admin): State<Admin>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<OrganizationList>> {
    let (cursor, limit) = page_params(raw.as_deref())?;
    let (orgs, next) = admin.list_organizations(cursor.as_deref(), limit).await?;
    Ok(Json(OrganizationList {
        data: orgs.iter().map(OrganizationView::from).collect(),
        next_cursor: next.map(|id| cursor::encode(kinds::ORGANIZATIONS, &id)),
    }))
}

/// Get an organization.
#[utoipa::path(
    get,
    path = "/organizations/{id}",
    tag = "organizations",
    params(("id" = String, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The organization", body = OrganizationView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_organization(State(admin): State<Admin>, Path(id): Path<String>) -> ApiResult<Json<OrganizationView>> {
    let org = admin.organization(&id).await?;
    Ok(Json(OrganizationView::from(&org)))
}

/// Change an organization (its name).
#[utoipa::path(
    patch,
    path = "/organizations/{id}",
    tag = "organizations",
    params(("id" = String, Path, description = "Organization id")),
    request_body = UpdateOrganization,
    responses(
        (status = 200, description = "The organization, changed", body = OrganizationView),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or unknown field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_organization(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateOrganization>,
) -> ApiResult<Json<OrganizationView>> {
    let org = match body.name {
        Some(name) => admin.rename_organization(&by, &id, &name).await?,
        None => admin.organization(&id).await?,
    };
    Ok(Json(OrganizationView::from(&org)))
}

/// Delete an organization with its connections and all their users, groups and membership.
///
/// The organization's name must be repeated in `confirm`; without it (or with another name) nothing
/// is deleted and the answer (422) explains what would be.
#[utoipa::path(
    delete,
    path = "/organizations/{id}",
    tag = "organizations",
    params(("id" = String, Path, description = "Organization id"), DeleteOrganizationParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`confirm` is missing or is not the organization's name", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn delete_organization(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let pairs = query_pairs(raw.as_deref());
    admin
        .delete_organization(&by, &id, query_param(&pairs, "confirm"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
