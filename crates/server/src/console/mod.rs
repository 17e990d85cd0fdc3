//! The operator console, `/console`: server-rendered pages for the team that runs Rollcall. It is
//! the third client of the management operations ([`crate::admin::Admin`]), after the management
//! API and the command line, and reaches nothing else: no page touches the store.
//!
//! - Sign-in with an operator API key, exchanged for a session cookie (HttpOnly, SameSite=Strict,
//!   stored hashed, expiring) — [`session`].
//! - Every form carries a CSRF token derived from the session; every POST checks it.
//! - Every page is escaped by its template (askama), sent with a Content-Security-Policy that
//!   allows no inline script or style, `frame-ancestors 'none'` and `X-Frame-Options: DENY`.
//! - Every asset is embedded in the binary ([`assets`]): the pages work offline.
//!
//! The setup page for customers' IT admins, `/setup`, shares the chrome, assets and headers
//! ([`setup`]).

pub mod assets;
mod connections;
mod directory;
mod events;
mod orgs;
pub mod page;
pub mod session;
pub mod setup;
mod setup_links;
mod targets;
pub(crate) mod views;
mod webhooks;

use crate::state::AppState;
use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};

pub use crate::branding::Branding;

/// Where the console is mounted.
pub const BASE_PATH: &str = "/console";

/// The console's routes (mounted at `/console` by [`crate::app_with`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/organizations") }))
        .route("/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/sign-out", post(session::sign_out))
        .route("/organizations", get(orgs::list).post(orgs::create))
        .route("/organizations/{org_id}", get(orgs::show))
        .route("/organizations/{org_id}/rename", post(orgs::rename))
        .route("/organizations/{org_id}/delete", post(orgs::delete))
        .route("/organizations/{org_id}/connections", post(connections::create))
        .route(
            "/organizations/{org_id}/google-workspace-connections",
            post(connections::create_google_workspace),
        )
        .route("/organizations/{org_id}/roles", post(orgs::create_role))
        .route(
            "/organizations/{org_id}/roles/{role_id}/delete",
            post(orgs::delete_role),
        )
        .route("/organizations/{org_id}/workspaces", post(orgs::create_workspace))
        .route(
            "/organizations/{org_id}/workspaces/{workspace_id}/delete",
            post(orgs::delete_workspace),
        )
        .route(
            "/organizations/{org_id}/workspace-settings",
            post(orgs::set_workspace_settings),
        )
        .route("/organizations/{org_id}/protected-users", post(orgs::add_protected))
        .route(
            "/organizations/{org_id}/protected-users/remove",
            post(orgs::remove_protected),
        )
        .route(
            "/organizations/{org_id}/setup-links",
            get(setup_links::list).post(setup_links::create),
        )
        .route(
            "/organizations/{org_id}/setup-links/{link_id}/revoke",
            post(setup_links::revoke),
        )
        .route(
            "/organizations/{org_id}/provisioning-targets",
            get(targets::list).post(targets::create),
        )
        .route(
            "/organizations/{org_id}/provisioning-targets/{target_id}",
            get(targets::show),
        )
        .route(
            "/organizations/{org_id}/provisioning-targets/{target_id}/{action}",
            post(targets::act),
        )
        .route(
            "/organizations/{org_id}/provisioning-targets/{target_id}/objects/{object_id}/retry",
            post(targets::retry),
        )
        .route("/organizations/{org_id}/users", get(directory::users))
        .route("/organizations/{org_id}/users/{user_id}", get(directory::user))
        .route("/organizations/{org_id}/groups", get(directory::groups))
        .route("/organizations/{org_id}/groups/{group_id}", get(directory::group))
        .route("/connections/{connection_id}", get(connections::show))
        .route(
            "/connections/{connection_id}/match-report",
            get(connections::match_report).post(connections::upload_match_report),
        )
        .route("/connections/{connection_id}/{action}", post(connections::act))
        .route(
            "/connections/{connection_id}/mappings",
            post(connections::create_mapping),
        )
        .route(
            "/connections/{connection_id}/mappings/{mapping_id}/delete",
            post(connections::delete_mapping),
        )
        .route(
            "/connections/{connection_id}/workspace-mappings",
            post(connections::create_workspace_mapping),
        )
        .route(
            "/connections/{connection_id}/workspace-mappings/{mapping_id}/delete",
            post(connections::delete_workspace_mapping),
        )
        .route(
            "/connections/{connection_id}/default-roles",
            post(connections::set_default_roles),
        )
        .route("/connections/{connection_id}/policy", post(connections::set_policy))
        .route("/connections/{connection_id}/guard", post(connections::set_guard))
        .route("/events", get(events::list))
        .route("/events/{event_id}", get(events::show))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{webhook_id}", get(webhooks::show))
        .route("/webhooks/{webhook_id}/{action}", post(webhooks::act))
        .route("/assets/{name}", get(assets::serve))
        .fallback(page::not_found)
        .layer(axum::middleware::from_fn(page::security_headers))
}
