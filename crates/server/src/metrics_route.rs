//! `GET /metrics`: the Prometheus text of [`crate::metrics`]' recorder, on the main listener (an
//! operator API key or the `metrics_token`) or on a listener of its own ([`router`], open).

use crate::metrics::{DB_POOL, WEBHOOK_BACKLOG, handle};
use crate::state::AppState;
use crate::tokens;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rollcall_store::Store;

/// The Prometheus text: the registry, with the gauges read at scrape time set first.
pub async fn render(store: &dyn Store) -> String {
    for p in store.pool_stats() {
        metrics::gauge!(DB_POOL, "pool" => p.name, "state" => "open").set(p.size as f64);
        metrics::gauge!(DB_POOL, "pool" => p.name, "state" => "idle").set(p.idle as f64);
    }
    match store.webhook_backlog(rollcall_store::metrics::BACKLOG_CAP).await {
        Ok(backlog) => {
            // An endpoint deleted or disabled since the last scrape reads 0 (the registry keeps
            // every series it has seen).
            static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
            for gone in seen.iter().filter(|e| !backlog.iter().any(|(id, _)| id == *e)) {
                metrics::gauge!(WEBHOOK_BACKLOG, "endpoint" => gone.clone()).set(0.0);
            }
            *seen = backlog.iter().map(|(id, _)| id.clone()).collect();
            drop(seen);
            for (endpoint, n) in backlog {
                metrics::gauge!(WEBHOOK_BACKLOG, "endpoint" => endpoint).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the webhook backlog for /metrics failed"),
    }
    let h = handle();
    h.run_upkeep();
    h.render()
}

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// `GET /metrics` on the main listener: an operator API key, or the `metrics_token` when one is set.
pub async fn serve_main(State(state): State<AppState>, req: Request) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(tokens::bearer)
        .map(str::to_string);
    let Some(presented) = presented else {
        return crate::api::problem::ApiProblem::new(
            401,
            "/metrics on the main listener needs \"Authorization: Bearer <API key or metrics_token>\"; \
             or serve it on a listener of its own (metrics_listen)",
        )
        .into_response();
    };
    let by_token = state.node.settings.metrics.token.as_deref().is_some_and(|t| {
        use subtle::ConstantTimeEq;
        t.len() == presented.len() && bool::from(t.as_bytes().ct_eq(presented.as_bytes()))
    });
    if !by_token && let Err(e) = state.admin().authenticate_api_key(&presented).await {
        return crate::api::problem::ApiProblem::from(e).into_response();
    }
    text(render(&*state.scim.store).await)
}

/// The application of a listener of its own: `GET /metrics`, open (bind it to a private address).
pub fn router(state: AppState) -> axum::Router {
    handle();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { text(render(&*state.scim.store).await) }),
        )
        .with_state(state)
}
