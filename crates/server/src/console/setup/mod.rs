//! The setup page, `/setup`: how a customer's IT admin connects their identity provider without
//! an account. The operator sends a setup link (`/setup/rc_setup_...`, one organization, expiring,
//! revocable); opening it starts a session (cookie scoped to `/setup`) and leads through:
//!
//! 1. picking the identity provider;
//! 2. a connection with its base URL and token, each with a copy button (the token shown once, and
//!    a confirmation that it was copied before going on);
//! 3. numbered steps in the identity provider's own words ([`guides`]);
//! 4. a live panel of the requests arriving from the identity provider (Server-Sent Events from the
//!    connection's request log), each failure explained with its fix;
//! 5. the first users as they arrived (profile and roles), and mapping the groups that arrived to
//!    roles, with the effect shown before it is saved;
//! 6. coming back later with a fresh link: the organization's connections, their health, and a
//!    token rotation.
//!
//! Every change goes through [`crate::admin::Admin`], recorded as made by the setup link.

pub mod guides;
mod live;
mod pages;

use crate::state::AppState;
use axum::Router;
use axum::routing::{get, post};

/// Where the setup page is mounted.
pub const BASE_PATH: &str = "/setup";

/// The setup page's routes (mounted at `/setup`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/{token}", get(pages::open))
        .route("/connections", post(pages::create_connection))
        .route("/connections/{connection_id}", get(pages::connection))
        .route("/connections/{connection_id}/live", get(live::stream))
        .route("/connections/{connection_id}/rotate", post(pages::rotate))
        .route(
            "/connections/{connection_id}/rotate-complete",
            post(pages::rotate_complete),
        )
        .route("/connections/{connection_id}/mappings", post(pages::map_group))
        .route("/done", post(pages::finish))
        .fallback(super::page::not_found)
        .layer(axum::middleware::from_fn(super::page::security_headers))
}
