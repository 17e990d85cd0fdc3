//! # rollcall-server
//!
//! The HTTP layer: per-connection SCIM 2.0 endpoints under `/scim/v2/{connection_id}`, the
//! management API under `/api/v1` ([`api`]), health checks, and the middleware around them
//! (bearer-token authentication, body limits, request ids, the limits of [`limits`]), served by the
//! accept loop of [`mod@serve`] (connection cap, header and idle timeouts). Handlers are thin: they parse HTTP and
//! call [`service::Scim`] (SCIM) or [`admin::Admin`] (management).
//!
//! The application's state ([`state::AppState`]) is the SCIM service ([`service::Scim`]: store,
//! schemas, settings) beside this node's runtime state ([`node::Node`]: rate limiter, token cache,
//! the request log's buffer, webhook wake-up), which the middleware and [`background`] tasks use.
//! Imports point one way: the service knows no node and no HTTP layer; the node knows no service.

pub mod admin;
pub mod api;
pub mod auth;
pub mod background;
pub mod branding;
pub mod bulk;
pub mod console;
pub mod deadline;
pub mod directory_sync;
pub mod discovery;
pub mod explain;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod metrics_route;
pub mod node;
pub mod ratelimit;
pub mod render;
pub mod request_log;
pub mod response;
pub mod serve;
pub mod service;
pub mod state;
pub mod tls;
pub mod token_cache;
pub mod tokens;
pub mod webhook_wake;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{any, get, post};
use state::AppState;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use limits::HttpLimits;
pub use node::{Node, NodeSettings};
pub use serve::{serve, serve_tls_with, serve_with};
pub use service::{Scim, ScimConfig};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the whole HTTP application with the default [`HttpLimits`].
pub fn app(state: AppState) -> Router {
    app_with(state, HttpLimits::default())
}

/// Builds the whole HTTP application; `limits` are its per-request and per-connection limits (the
/// per-TCP-connection ones are [`serve_with`]'s).
pub fn app_with(state: AppState, limits: HttpLimits) -> Router {
    let AppState { scim, node } = &state;
    let share = limits::FairShare::new(
        node.rate_limiter.clone(),
        limits.max_in_flight_per_connection,
        limits.max_active_per_connection,
    );
    let guard = limits::Guard::new(limits, scim.config.max_body_bytes);
    let capture = request_log::Capture::new(node.request_log.clone(), scim.secrets.clone());
    let metrics = &node.settings.metrics;
    let scim_routes = Router::new()
        .route(
            "/Users",
            get(handlers::list_users)
                .post(handlers::create_user)
                .fallback(handlers::method_not_allowed),
        )
        .route(
            "/Users/.search",
            post(handlers::search_users).fallback(handlers::method_not_allowed),
        )
        .route(
            "/Users/{id}",
            get(handlers::get_user)
                .put(handlers::put_user)
                .patch(handlers::patch_user)
                .delete(handlers::delete_user)
                .fallback(handlers::method_not_allowed),
        )
        .route(
            "/Groups",
            get(handlers::list_groups)
                .post(handlers::create_group)
                .fallback(handlers::method_not_allowed),
        )
        .route(
            "/Groups/.search",
            post(handlers::search_groups).fallback(handlers::method_not_allowed),
        )
        .route(
            "/Groups/{id}",
            get(handlers::get_group)
                .put(handlers::put_group)
                .patch(handlers::patch_group)
                .delete(handlers::delete_group)
                .fallback(handlers::method_not_allowed),
        )
        .route(
            "/.search",
            post(handlers::search_root).fallback(handlers::method_not_allowed),
        )
        .route("/Bulk", post(bulk::bulk).fallback(handlers::method_not_allowed))
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config).fallback(handlers::method_not_allowed),
        )
        .route(
            "/ResourceTypes",
            get(discovery::resource_types).fallback(handlers::method_not_allowed),
        )
        .route(
            "/ResourceTypes/{id}",
            get(discovery::resource_type).fallback(handlers::method_not_allowed),
        )
        .route(
            "/Schemas",
            get(discovery::schemas).fallback(handlers::method_not_allowed),
        )
        .route(
            "/Schemas/{id}",
            get(discovery::schema).fallback(handlers::method_not_allowed),
        )
        .route("/Me", any(handlers::me))
        .fallback(handlers::not_found)
        // Inside authentication: the authenticated connection's rate limit and in-flight cap.
        .layer(axum::middleware::from_fn_with_state(share, limits::fair_share))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        // Outside authentication, so that refused requests are logged too.
        .layer(axum::middleware::from_fn_with_state(capture, request_log::capture));

    // The recorder is installed before the first request is counted (with metrics off, none is).
    metrics::install_if(metrics.on_main_listener);
    let mut router = Router::new()
        .nest("/scim/v2/{connection_id}", scim_routes)
        .merge(api::router(&state))
        .nest(console::BASE_PATH, console::router())
        .nest(console::setup::BASE_PATH, console::setup::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(handlers::ready));
    if metrics.on_main_listener {
        router = router.route("/metrics", get(metrics_route::serve_main));
    }
    router
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            webhook_wake::wake_after_writes,
        ))
        .layer(DefaultBodyLimit::disable())
        // A handler that panics answers 500 (in the route's error form, by the guard below) and is
        // logged, instead of the connection closing without an answer.
        .layer(CatchPanicLayer::custom(panicked))
        // URI and header limits, control characters, the node's in-flight cap, the body deadline,
        // and every error in the route's form; inside tracing and request ids, so that its refusals
        // have both.
        .layer(axum::middleware::from_fn_with_state(guard, limits::guard))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %tokens::redact_path(req.uri().path()))
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost, so that every answer is counted and timed, refusals included; a layer of the
        // router, so that it sees the route template.
        .layer(axum::middleware::from_fn_with_state(
            metrics::Track {
                per_connection: metrics.per_connection,
            },
            metrics::track,
        ))
        .with_state(state)
}

/// The answer to a request whose handler panicked: logged at ERROR with the panic's message (in
/// the request's span, so with its id); 500 in plain text, which the guard puts in the route's
/// error form.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %message, "a request's handler panicked; answered 500");
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "an internal error occurred; the server's log has it under this request's id",
    )
        .into_response()
}

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{ErrorForm, ensure_error_form};
    use tower::ServiceExt;

    /// A panicking handler is answered with 500 in the route's error form, not a dropped connection.
    #[tokio::test]
    async fn a_panic_is_a_500_in_the_routes_form() {
        async fn boom() -> &'static str {
            panic!("the handler broke")
        }
        let app: Router = Router::new()
            .route("/api/v1/boom", get(boom))
            .layer(CatchPanicLayer::custom(panicked));
        let req = Request::builder()
            .uri("/api/v1/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let resp = ensure_error_form(ErrorForm::of("/api/v1/boom"), resp).await;
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["detail"].as_str().unwrap().contains("internal error"), "{v}");
    }
}
