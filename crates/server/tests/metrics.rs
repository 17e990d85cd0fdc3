//! `GET /metrics` (#18) on a real server over a socket, with its dispatcher delivering to a
//! receiver on loopback: after a SCIM write, a SCIM error and a webhook delivery the counters have
//! moved, under route templates; no id, token or secret appears in the text; who may scrape on the
//! main listener (an API key or the metrics token) and on a listener of its own (anyone).

mod common;

use common::*;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::admin::Admin;
use rollcall_server::metrics::MetricsSettings;
use rollcall_server::node::{Node, NodeSettings};
use rollcall_server::service::{Scim, ScimConfig};
use rollcall_server::state::AppState;
use rollcall_server::tokens;
use rollcall_store::{IdpKind, NewConnection, Store};
use rollcall_webhooks::{Dispatcher, NetworkPolicy, WebhookConfig, Webhooks};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef";

struct Fixture {
    base: String,
    metrics_base: String,
    key: String,
    conn_id: String,
    scim_token: String,
    http: reqwest::Client,
    received: Arc<AtomicUsize>,
    receiver: String,
    _stop: Vec<oneshot::Sender<()>>,
    _db: DbGuard,
}

impl Fixture {
    async fn start(per_connection: bool) -> Fixture {
        let registry = Arc::new(SchemaRegistry::standard());
        let (store, db): (Arc<dyn Store>, DbGuard) = open_store(current_backend(), registry.clone()).await;
        let by = rollcall_store::WriteContext::cli();
        let org = store.create_organization(&by, "acme").await.unwrap();
        let token = tokens::issue();
        let conn = store
            .create_connection(
                &by,
                NewConnection {
                    org_id: org.id.clone(),
                    name: "okta".into(),
                    idp: IdpKind::Okta,
                    token_hash: token.hash,
                    token_prefix: token.display_prefix.clone(),
                },
            )
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let key = Admin::new(store.clone(), Arc::default(), &base)
            .create_api_key(&by, "tests")
            .await
            .unwrap()
            .secret;
        let hooks = Webhooks::new(
            store.clone(),
            WebhookConfig {
                policy: NetworkPolicy {
                    allow_loopback: true,
                    ..Default::default()
                },
                poll_interval: Duration::from_millis(100),
                ..Default::default()
            },
        );
        let scim = Scim::new(
            store.clone(),
            registry,
            ScimConfig {
                public_url: base.clone(),
                ..ScimConfig::default()
            },
        );
        let node = Node::new(
            store.clone(),
            NodeSettings {
                metrics: MetricsSettings {
                    on_main_listener: true,
                    token: Some(METRICS_TOKEN.into()),
                    per_connection,
                },
                ..NodeSettings::default()
            },
        )
        .with_webhooks(hooks.clone());
        let state = AppState::new(scim, node);
        let mut stop = Vec::new();
        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        tokio::spawn(rollcall_server::serve(
            listener,
            rollcall_server::app(state.clone()),
            async {
                let _ = rx.await;
            },
        ));
        // The same registry on a listener of its own, as `--metrics-listen` serves it.
        let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_base = format!("http://{}", ml.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        tokio::spawn(rollcall_server::serve(
            ml,
            rollcall_server::metrics_route::router(state),
            async {
                let _ = rx.await;
            },
        ));
        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        tokio::spawn(Dispatcher::new(hooks, "test-node").run(async {
            let _ = rx.await;
        }));
        let received = Arc::new(AtomicUsize::new(0));
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let sink = sink.clone();
                async move {
                    sink.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}/hook", rl.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        tokio::spawn(async move {
            axum::serve(rl, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Fixture {
            base,
            metrics_base,
            key,
            conn_id: conn.id,
            scim_token: token.secret,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            received,
            receiver,
            _stop: stop,
            _db: db,
        }
    }

    async fn create_user(&self, user_name: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/scim/v2/{}/Users", self.base, self.conn_id))
            .bearer_auth(&self.scim_token)
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": [USER_SCHEMA], "userName": user_name}).to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// `/metrics` on the main listener with `bearer` (or none): status and text.
    async fn scrape_main(&self, bearer: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}/metrics", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// `/metrics` on its own listener, with no credentials.
    async fn scrape(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{:?}",
            resp.headers()
        );
        resp.text().await.unwrap()
    }
}

/// The samples of the Prometheus text: (name, labels) -> value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {l}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a value: {l}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap()),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").unwrap_or_else(|| panic!("a label: {p} in {l}"));
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value)
        })
        .collect()
}

/// The value of the sample named `name` whose labels include `with` (0 when there is none).
fn value(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, labels, _)| n == name && with.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

async fn counters_move_under_route_templates_and_no_secret_shows() {
    let f = Fixture::start(false).await;
    let before = f.scrape().await;
    let route = "/scim/v2/{connection_id}/Users";
    let created_before = value(
        &before,
        "rollcall_http_requests_total",
        &[("route", route), ("status", "201")],
    );

    let (status, hook) = {
        let resp = f
            .http
            .post(format!("{}/api/v1/webhooks", f.base))
            .bearer_auth(&f.key)
            .json(&json!({"url": f.receiver, "event_types": ["user.*"]}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 201, "{hook}");
    let hook_secret = hook["secret"].as_str().unwrap().to_string();
    let hook_id = hook["webhook"]["id"].as_str().unwrap().to_string();

    let (status, user) = f.create_user("metrics.person@example.com").await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_str().unwrap().to_string();
    let (status, err) = f.create_user("metrics.person@example.com").await;
    assert_eq!(status, 409, "{err}");

    let resp = f
        .http
        .get(format!("{}/api/v1/webhooks/{hook_id}", f.base))
        .bearer_auth(&f.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // The delivery, and the dispatcher's cursor past it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = f.scrape().await;
        let delivered = value(&text, "rollcall_webhook_deliveries_total", &[("outcome", "success")]);
        let backlog = value(&text, "rollcall_webhook_backlog_events", &[("endpoint", &hook_id)]);
        if f.received.load(Ordering::SeqCst) >= 1 && delivered >= 1.0 && backlog == 0.0 && text.contains(&hook_id) {
            break text;
        }
        assert!(Instant::now() < deadline, "no delivery counted in a minute:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Requests by route template, method and status; their latency.
    assert!(
        value(
            &text,
            "rollcall_http_requests_total",
            &[("route", route), ("method", "POST"), ("status", "201")]
        ) >= created_before + 1.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "rollcall_http_requests_total",
            &[("route", route), ("status", "409")]
        ) >= 1.0
    );
    assert!(
        value(
            &text,
            "rollcall_http_requests_total",
            &[("route", "/api/v1/webhooks"), ("status", "201")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "rollcall_http_request_duration_seconds_count",
            &[("route", route), ("method", "POST")]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        text.contains("rollcall_http_request_duration_seconds_bucket{"),
        "latency is a histogram: {text}"
    );
    // SCIM errors by scimType; events by type; deliveries and their latency.
    assert!(
        value(
            &text,
            "rollcall_scim_errors_total",
            &[("scim_type", "uniqueness"), ("status", "409")]
        ) >= 1.0
    );
    assert!(
        value(&text, "rollcall_events_written_total", &[("type", "user.created")]) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "rollcall_events_written_total", &[("type", "webhook.created")]) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "rollcall_webhook_delivery_duration_seconds_count",
            &[("outcome", "success")]
        ) >= 1.0
    );
    // Build info; the pool; SQLite's group commits.
    assert_eq!(
        value(&text, "rollcall_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert!(
        value(&text, "rollcall_db_pool_connections", &[("state", "open")]) >= 1.0,
        "{text}"
    );
    if current_backend() == Backend::Sqlite {
        assert!(
            value(&text, "rollcall_sqlite_group_commit_writers_count", &[]) >= 1.0,
            "{text}"
        );
        assert!(value(&text, "rollcall_sqlite_group_commits_total", &[("outcome", "ok")]) >= 1.0);
    }
    // Bounded labels: no id, token, key or secret; no raw path.
    for secret in [
        f.conn_id.as_str(),
        &user_id,
        &f.scim_token,
        &f.key,
        &hook_secret,
        "metrics.person",
    ] {
        assert!(!text.contains(secret), "{secret} is in the metrics:\n{text}");
    }
    assert!(!text.contains(METRICS_TOKEN));
    assert!(
        value(
            &text,
            "rollcall_http_requests_total",
            &[("route", "/api/v1/webhooks/{id}"), ("method", "GET"), ("status", "200")]
        ) >= 1.0,
        "{text}"
    );
    // The endpoint's id labels its backlog (one series per endpoint) and nothing else.
    for (name, labels, _) in samples(&text) {
        for (k, v) in &labels {
            assert!(
                !v.contains(&hook_id) || (name == "rollcall_webhook_backlog_events" && k == "endpoint"),
                "{name} {labels:?}"
            );
        }
    }

    // On the main listener: an API key or the metrics token; not a SCIM token, not nothing.
    let (status, body) = f.scrape_main(None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = f.scrape_main(Some(&f.scim_token)).await;
    assert_eq!(status, 401);
    let (status, _) = f.scrape_main(Some("metrics-token-0123456789abcdeX")).await;
    assert_eq!(status, 401);
    let (status, body) = f.scrape_main(Some(&f.key)).await;
    assert_eq!(status, 200);
    assert!(
        value(
            &body,
            "rollcall_http_requests_total",
            &[("route", route), ("status", "201")]
        ) >= 1.0
    );
    let (status, body) = f.scrape_main(Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    // The refused scrapes were counted too, under the /metrics route.
    assert!(
        value(
            &body,
            "rollcall_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ) >= 3.0
    );
}

/// With `metrics_per_connection` the SCIM request metrics name their connection, and only those.
async fn connection_ids_only_with_the_option() {
    let f = Fixture::start(true).await;
    let (status, _) = f.create_user("per.connection@example.com").await;
    assert_eq!(status, 201);
    let text = f.scrape().await;
    assert!(
        value(
            &text,
            "rollcall_http_requests_total",
            &[("route", "/scim/v2/{connection_id}/Users"), ("connection", &f.conn_id)]
        ) >= 1.0,
        "{text}"
    );
    for (name, labels, _) in samples(&text) {
        if labels.contains_key("connection") {
            assert!(labels["route"].starts_with("/scim/v2/"), "{name} {labels:?}");
        }
    }
}

backend_tests!(connection_ids_only_with_the_option; multi_thread: counters_move_under_route_templates_and_no_secret_shows);
