//! Prometheus metrics (#18): the recorder and the HTTP request metrics; `GET /metrics` serves them
//! ([`crate::metrics_route`]).
//!
//! The crates record through the `metrics` facade (cheap macros; the store and webhooks crates use
//! it too, without an exporter). The process has one recorder, installed the first time a server
//! asks for it ([`handle`]): tests build many servers in one process, and they all render the one
//! registry. Its text is served by our own route, on the main listener or on a listener of its
//! own (see [`MetricsSettings`] and the README's "Metrics").
//!
//! Label values are bounded: routes are axum's route templates (`/scim/v2/{connection_id}/Users`),
//! never the path that was asked for; a request that matched no route is `route="unmatched"`.
//! Connection ids appear only with [`MetricsSettings::per_connection`]. No secret, token or
//! resource id is ever a label.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Requests answered, by route template, method and status.
pub const HTTP_REQUESTS: &str = "rollcall_http_requests_total";
/// Time from the request's arrival at the router to its response head, by route template and method.
pub const HTTP_DURATION: &str = "rollcall_http_request_duration_seconds";
/// SCIM error responses, by `scimType` (`none` when the error has none) and status.
pub const SCIM_ERRORS: &str = "rollcall_scim_errors_total";
/// Requests refused to shed load, by reason (`rate_limit` and `in_flight_per_connection`: 429;
/// `node_in_flight`: 503).
pub const SHED: &str = "rollcall_http_requests_shed_total";
/// Background task runs, by task and outcome (`ok`, `error`).
pub const BACKGROUND_RUNS: &str = "rollcall_background_task_runs_total";
/// Always 1, with the version as a label.
pub const BUILD_INFO: &str = "rollcall_build_info";
/// Database pool connections, by pool and state (`open`, `idle`): set at every scrape.
pub const DB_POOL: &str = "rollcall_db_pool_connections";
/// Time each database statement run through sqlx took, by its first keyword (`select`, `insert`,
/// `update`, `delete`, `with`, `begin`, `commit`, …, `other`); recorded by `serve`'s statement
/// layer (crates/cli/src/statements.rs).
pub const DB_STATEMENT_SECONDS: &str = "rollcall_db_statement_seconds";
/// Events after each webhook endpoint's cursor in its scope (capped), set at every scrape.
pub const WEBHOOK_BACKLOG: &str = "rollcall_webhook_backlog_events";

/// Directory sync runs (Google Workspace connections), by connection `kind` (`google_workspace`)
/// and `status` (`succeeded`, `partial`, `failed`).
pub const DIRECTORY_SYNC_RUNS: &str = "rollcall_directory_sync_runs_total";
/// How long a directory sync run took, from its claim to its outcome, by `kind` and `status`.
pub const DIRECTORY_SYNC_SECONDS: &str = "rollcall_directory_sync_duration_seconds";
/// Users and groups directory syncs read from the directory, by `kind` and `resource` (`user`,
/// `group`).
pub const DIRECTORY_SYNC_READ: &str = "rollcall_directory_sync_read_total";
/// What directory syncs wrote, by `kind` and `change` (`user_created`, `user_updated`,
/// `user_deactivated`, `user_deleted`, `group_created`, `group_updated`, `group_deleted`, and
/// `failed` for a user or group that could not be written).
pub const DIRECTORY_SYNC_CHANGES: &str = "rollcall_directory_sync_changes_total";

/// Records one directory sync run's outcome (no connection id: the labels stay bounded).
pub fn directory_sync_run(kind: &'static str, status: &'static str, seconds: f64, counts: &rollcall_store::SyncCounts) {
    metrics::counter!(DIRECTORY_SYNC_RUNS, "kind" => kind, "status" => status).increment(1);
    metrics::histogram!(DIRECTORY_SYNC_SECONDS, "kind" => kind, "status" => status).record(seconds);
    for (resource, n) in [("user", counts.users_read), ("group", counts.groups_read)] {
        metrics::counter!(DIRECTORY_SYNC_READ, "kind" => kind, "resource" => resource).increment(n);
    }
    for (change, n) in [
        ("user_created", counts.users_created),
        ("user_updated", counts.users_updated),
        ("user_deactivated", counts.users_deactivated),
        ("user_deleted", counts.users_deleted),
        ("group_created", counts.groups_created),
        ("group_updated", counts.groups_updated),
        ("group_deleted", counts.groups_deleted),
        ("failed", counts.failed),
    ] {
        metrics::counter!(DIRECTORY_SYNC_CHANGES, "kind" => kind, "change" => change).increment(n);
    }
}

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Buckets of the latency histograms, in seconds (1 ms to 30 s).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the group-commit batch size histogram (writers per `COMMIT`; at most 64).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Where and how `/metrics` is served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Serve `/metrics` on the main listener (off when it has a listener of its own, or when
    /// metrics are switched off).
    pub on_main_listener: bool,
    /// On the main listener, a bearer token that is accepted besides an operator API key (for a
    /// Prometheus that should not hold an API key). Never logged, never a label.
    pub token: Option<String>,
    /// Label the HTTP request metrics of SCIM routes with the connection id (one series per
    /// connection: off by default).
    pub per_connection: bool,
}

impl MetricsSettings {
    /// `/metrics` on the main listener, no token, no per-connection labels.
    pub fn on_main() -> MetricsSettings {
        MetricsSettings {
            on_main_listener: true,
            ..MetricsSettings::default()
        }
    }
}

/// The process's Prometheus recorder, installed on first use. When another recorder was
/// installed first (an embedding program's), a private one is used: `/metrics` then shows
/// nothing recorded through the facade, which is logged.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(rollcall_store::metrics::GROUP_COMMIT_WRITERS.into()),
                        BATCH_BUCKETS,
                    )
                })
                .expect("the buckets are not empty")
        };
        let handle = match builder().install_recorder() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed: /metrics shows only its own");
                builder().build_recorder().handle()
            }
        };
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Histogram samples wait in the recorder until upkeep folds them into their buckets: done
        // at every scrape, and here, so that memory stays flat when nobody scrapes.
        let kept = handle.clone();
        let upkeep = std::thread::Builder::new()
            .name("rollcall-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    kept.run_upkeep();
                }
            });
        if let Err(e) = upkeep {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread: histograms are folded at scrapes only");
        }
        handle
    })
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the recorder when metrics are on (the CLI calls it at start, so that the store's first
/// writes are counted; [`crate::app_with`] and [`crate::metrics_route::router`] call it too). With metrics off nothing
/// is installed, and recording costs nothing.
pub fn install_if(on: bool) {
    if on {
        handle();
    }
}

/// How [`track`] labels requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Track {
    /// [`MetricsSettings::per_connection`].
    pub per_connection: bool,
}

/// Middleware (on the whole router, so it sees the route template): counts and times every request.
pub async fn track(State(t): State<Track>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = method_label(req.method());
    let connection = (t.per_connection && route.starts_with("/scim/v2/"))
        .then(|| {
            req.uri()
                .path()
                .strip_prefix("/scim/v2/")
                .and_then(|p| p.split('/').next())
        })
        .flatten()
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .map(str::to_string);
    let resp = next.run(req).await;
    // A router mounted as a service (the management API) reports its own template.
    let route = match resp.extensions().get::<RouteTemplate>() {
        Some(t) => t.0.clone(),
        None => route,
    };
    let status = resp.status().as_u16().to_string();
    let elapsed = started.elapsed().as_secs_f64();
    match connection {
        Some(c) => {
            metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status, "connection" => c.clone())
                .increment(1);
            metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method, "connection" => c).record(elapsed);
        }
        None => {
            metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
                .increment(1);
            metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed);
        }
    }
    resp
}

/// The route template a router mounted as a service matched, passed back to [`track`] in the
/// response's extensions (the outer router sees no template for such a router's routes).
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Route middleware of a router mounted as a service under `prefix`: passes its route template
/// back in the response.
pub async fn expose_route(State(prefix): State<&'static str>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str())
        .map(|m| match m.starts_with(prefix) {
            true => m.to_string(),
            false => format!("{prefix}{m}"),
        });
    let mut resp = next.run(req).await;
    if let Some(t) = template {
        resp.extensions_mut().insert(RouteTemplate(t));
    }
    resp
}

/// The route label: the template the router matched, never the path itself.
pub fn route_label(matched: Option<&MatchedPath>) -> String {
    matched.map_or_else(|| UNMATCHED.to_string(), |m| m.as_str().to_string())
}

/// The method label: the standard methods by name, anything else as `other` (a client may send
/// any token as a method).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts a SCIM error response.
pub fn scim_error(e: &rollcall_scim::ScimError) {
    let scim_type = e.scim_type.map_or("none", |t| t.as_str());
    metrics::counter!(SCIM_ERRORS, "scim_type" => scim_type, "status" => e.status.to_string()).increment(1);
}

/// Counts a request refused to shed load.
pub fn shed(reason: &'static str, status: StatusCode) {
    metrics::counter!(SHED, "reason" => reason, "status" => status.as_u16().to_string()).increment(1);
}

/// Counts a run of a background task.
pub fn background_run(task: &'static str, ok: bool) {
    metrics::counter!(BACKGROUND_RUNS, "task" => task, "outcome" => if ok { "ok" } else { "error" }).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderValue;
    use axum::routing::get;
    use tower::ServiceExt;

    /// What the middleware sees as the route: the template, for nested routes too, and
    /// `unmatched` for a path no route has.
    #[tokio::test]
    async fn route_labels_are_templates() {
        async fn seen(req: Request, next: Next) -> Response {
            let label = route_label(req.extensions().get::<MatchedPath>());
            let mut r = next.run(req).await;
            r.headers_mut()
                .insert("x-route", HeaderValue::from_str(&label).unwrap());
            r
        }
        let inner = Router::new()
            .route("/Users/{id}", get(|| async { "u" }))
            .fallback(|| async { StatusCode::NOT_FOUND });
        let app: Router = Router::new()
            .nest("/scim/v2/{connection_id}", inner)
            .route("/api/v1/webhooks/{id}", get(|| async { "w" }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn(seen));
        let route = |path: &'static str| {
            let app = app.clone();
            async move {
                let req = Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();
                let resp = app.oneshot(req).await.unwrap();
                resp.headers()["x-route"].to_str().unwrap().to_string()
            }
        };
        let conn = "0190a8f2-0000-7000-8000-000000000001";
        assert_eq!(
            route("/scim/v2/0190a8f2-0000-7000-8000-000000000001/Users/secret-id-42").await,
            "/scim/v2/{connection_id}/Users/{id}"
        );
        assert_eq!(route("/api/v1/webhooks/abc123").await, "/api/v1/webhooks/{id}");
        assert_eq!(route("/no/such/path/abc123").await, UNMATCHED);
        let nested_miss = route("/scim/v2/0190a8f2-0000-7000-8000-000000000001/Nope/xyz").await;
        assert!(
            !nested_miss.contains(conn) && !nested_miss.contains("xyz"),
            "{nested_miss}"
        );
    }

    #[test]
    fn unknown_methods_are_one_label() {
        let m = axum::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&m), "other");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
    }
}
