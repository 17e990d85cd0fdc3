//! Staging connections (shadow mode) and go-live: `/api/v1/connections/{id}/stage`, `.../activate`
//! and `.../match-report`. See docs/go-live.md.

use super::auth::ApiCaller;
use super::extract::JsonBody;
use super::problem::{ApiResult, Problem};
use super::schemas::ConnectionView;
use crate::admin::Admin;
use crate::admin::staging::MatchReport;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rollcall_store::{MatchAccount, Snapshot};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the application received when the connection went live, after `connection.activated`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotView {
    /// `user.created` events (every user that is not deleted, deactivated ones included).
    pub users: u64,
    /// `group.created` events.
    pub groups: u64,
    /// `group.member_added` events.
    pub memberships: u64,
    /// `user.roles_changed` events (users with at least one role).
    pub users_with_roles: u64,
    /// `user.workspaces_changed` events (users in at least one workspace).
    pub users_with_workspaces: u64,
}

impl From<&Snapshot> for SnapshotView {
    fn from(s: &Snapshot) -> Self {
        SnapshotView {
            users: s.users,
            groups: s.groups,
            memberships: s.memberships,
            users_with_roles: s.users_with_roles,
            users_with_workspaces: s.users_with_workspaces,
        }
    }
}

/// A connection that just went live.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Activation {
    pub connection: ConnectionView,
    pub snapshot: SnapshotView,
}

/// One account the application already has. At least one of `email` and `external_id`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchAccountInput {
    /// Compared with the users' e-mail addresses (and e-mail-like userNames), ignoring case.
    #[schema(example = "ann@example.com")]
    pub email: Option<String>,
    /// Compared with the users' `externalId` (the identity provider's id), exactly.
    pub external_id: Option<String>,
    /// The account's role keys in the application, to compare with the effective roles Rollcall
    /// computes; leave out to not compare.
    pub roles: Option<Vec<String>>,
}

/// The accounts the application already has for the connection's organization (at most 10,000;
/// the body at most 2 MiB). Replaces any earlier upload.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchAccountsInput {
    pub accounts: Vec<MatchAccountInput>,
}

/// Put a live connection into staging (shadow mode).
///
/// The identity provider is still answered and its changes stored, but from now on the
/// application hears nothing of the connection's users and groups: no events or webhooks, and the
/// directory and the access check leave them out (the directory shows them with
/// `include_staging=true`). Records `connection.staged`. An application that mirrors the directory
/// should set aside what it holds for this connection: activation sends the whole state again.
#[utoipa::path(post, path = "/connections/{id}/stage", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection, in staging", body = ConnectionView),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already in staging, or the deprovisioning guard holds events", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn stage(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    let c = admin.stage_connection(&by, &connection_id).await?;
    Ok(Json(ConnectionView::new(&admin, &c)))
}

/// Take a staging connection live (go-live).
///
/// In one transaction the connection becomes live and its current state is written to the event
/// log after a `connection.activated` event: every user (`user.created`), then every group
/// (`group.created`), then every membership (`group.member_added`), then every user's roles
/// (`user.roles_changed`), each with `"reason": "connection_activated"`. Changes after it follow as
/// usual.
#[utoipa::path(post, path = "/connections/{id}/activate", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The connection, live, and what was sent", body = Activation),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The connection is live already", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn activate(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<Activation>> {
    let (c, snapshot) = admin.activate_connection(&by, &connection_id).await?;
    Ok(Json(Activation {
        connection: ConnectionView::new(&admin, &c),
        snapshot: (&snapshot).into(),
    }))
}

/// The match report, computed now: the uploaded accounts against the connection's users (matched,
/// in the identity provider only, in the application only, ambiguous, role differences). It
/// follows the identity provider as it keeps pushing. Each list holds at most 1000 items.
#[utoipa::path(get, path = "/connections/{id}/match-report", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 200, description = "The report (without an upload, every user is `idp_only`)", body = MatchReport),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_match_report(
    State(admin): State<Admin>,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<MatchReport>> {
    Ok(Json(admin.match_report(&connection_id).await?))
}

/// Upload the accounts the application already has, replacing any earlier upload, and get the
/// report. Records `connection.match_report_uploaded`.
#[utoipa::path(post, path = "/connections/{id}/match-report", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    request_body = MatchAccountsInput,
    responses(
        (status = 200, description = "The report", body = MatchReport),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 2 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An account without email and external_id, more than 10,000 accounts, or an unknown field",
            body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload_match_report(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
    JsonBody(body): JsonBody<MatchAccountsInput>,
) -> ApiResult<Json<MatchReport>> {
    let accounts = body
        .accounts
        .into_iter()
        .map(|a| MatchAccount {
            email: a.email,
            external_id: a.external_id,
            roles: a.roles,
        })
        .collect();
    Ok(Json(admin.upload_match_accounts(&by, &connection_id, accounts).await?))
}

/// Forget the uploaded accounts. Records `connection.match_report_deleted`.
#[utoipa::path(delete, path = "/connections/{id}/match-report", tag = "connections",
    params(("id" = String, Path, description = "Connection id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection, or nothing uploaded", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn delete_match_report(
    State(admin): State<Admin>,
    ApiCaller(by): ApiCaller,
    Path(connection_id): Path<String>,
) -> ApiResult<StatusCode> {
    admin.delete_match_accounts(&by, &connection_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
