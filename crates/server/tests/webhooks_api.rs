//! Webhooks through the management API, on a real server over a socket with its dispatcher running,
//! delivering to a receiver on loopback (allowed explicitly, as the configuration would): the
//! lifecycle of an endpoint, deliveries of SCIM changes verified with the `standardwebhooks` crate,
//! attempts, ping, redelivery, replay, secret rotation, disabling and enabling, and validation.

mod common;

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::*;
use reqwest::Method;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::admin::Admin;
use rollcall_server::node::{Node, NodeSettings};
use rollcall_server::service::{Scim, ScimConfig};
use rollcall_server::state::AppState;
use rollcall_server::tokens;
use rollcall_store::{IdpKind, NewConnection, Store};
use rollcall_webhooks::{Dispatcher, NetworkPolicy, WebhookConfig, Webhooks};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A server with a dispatcher, an API key, one organization with one SCIM connection, and a
/// receiver.
struct Fixture {
    base: String,
    key: String,
    org_id: String,
    conn_id: String,
    scim_token: String,
    http: reqwest::Client,
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    receiver: String,
    _stop: Vec<oneshot::Sender<()>>,
    _db: DbGuard,
}

impl Fixture {
    async fn start() -> Fixture {
        let registry = Arc::new(SchemaRegistry::standard());
        let (store, db): (Arc<dyn Store>, DbGuard) = open_store(current_backend(), registry.clone()).await;
        let org = store
            .create_organization(&rollcall_store::WriteContext::cli(), "acme")
            .await
            .unwrap();
        let token = tokens::issue();
        let conn = store
            .create_connection(
                &rollcall_store::WriteContext::cli(),
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
            .create_api_key(&rollcall_store::WriteContext::cli(), "tests")
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
                retry_base: Duration::from_millis(20),
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
        let node = Node::new(store.clone(), NodeSettings::default()).with_webhooks(hooks.clone());
        let state = AppState::new(scim, node);
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        tokio::spawn(rollcall_server::serve(listener, rollcall_server::app(state), async {
            let _ = server_stopped.await;
        }));
        let (stop_dispatcher, dispatcher_stopped) = oneshot::channel::<()>();
        tokio::spawn(Dispatcher::new(hooks, "test-node").run(async {
            let _ = dispatcher_stopped.await;
        }));

        let received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push((headers, body));
                    "ok"
                }
            }),
        );
        let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}/hook", rl.local_addr().unwrap());
        let (stop_receiver, receiver_stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(rl, app)
                .with_graceful_shutdown(async {
                    let _ = receiver_stopped.await;
                })
                .await
        });
        Fixture {
            base,
            key,
            org_id: org.id,
            conn_id: conn.id,
            scim_token: token.secret,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            received,
            receiver,
            _stop: vec![stop_server, stop_dispatcher, stop_receiver],
            _db: db,
        }
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Asserts a 422 problem whose detail starts with `field:`.
    async fn invalid(&self, method: Method, path: &str, body: Value, field: &str) -> String {
        let (status, problem) = self.api(method, path, Some(body)).await;
        assert_eq!(status, 422, "{problem}");
        let detail = problem["detail"].as_str().unwrap().to_string();
        assert!(detail.starts_with(&format!("{field}:")), "{detail}");
        detail
    }

    async fn create_user(&self, user_name: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/scim/v2/{}/Users", self.base, self.conn_id))
            .bearer_auth(&self.scim_token)
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": [USER_SCHEMA], "userName": user_name}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let doc: Value = resp.json().await.unwrap();
        doc["id"].as_str().unwrap().to_string()
    }

    /// Waits for the receiver to hold `n` deliveries; panics after a minute.
    async fn wait_received(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} deliveries arrived", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn verify(secret: &str, (headers, body): &(HeaderMap, Bytes)) -> Result<(), String> {
    standardwebhooks::Webhook::new(secret)
        .map_err(|e| e.to_string())?
        .verify(body, headers)
        .map_err(|e| e.to_string())
}

fn json_of((_, body): &(HeaderMap, Bytes)) -> Value {
    serde_json::from_slice(body).unwrap()
}

fn id_of((headers, _): &(HeaderMap, Bytes)) -> String {
    headers["webhook-id"].to_str().unwrap().to_string()
}

async fn an_endpoint_delivers_scim_changes_and_is_managed_over_http() {
    let f = Fixture::start().await;
    let (status, created) = f
        .api(
            Method::POST,
            "webhooks",
            Some(json!({"url": f.receiver, "org_id": f.org_id, "event_types": ["user.*"], "description": "CRM sync"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let w = &created["webhook"];
    let id = w["id"].as_str().unwrap().to_string();
    assert_eq!(w["status"], "active");
    assert_eq!(w["event_types"], json!(["user.*"]));
    assert_eq!(w["org_id"], f.org_id.as_str());
    let (_, got) = f.api(Method::GET, &format!("webhooks/{id}"), None).await;
    assert!(got.get("secret").is_none(), "the secret is shown only at creation");
    let (_, list) = f.api(Method::GET, &format!("webhooks?org_id={}", f.org_id), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, none) = f.api(Method::GET, "webhooks?org_id=elsewhere", None).await;
    assert_eq!(none["data"], json!([]));

    // A SCIM change arrives, signed for any Standard Webhooks library.
    let user_id = f.create_user("ada@example.com").await;
    let got = f.wait_received(1).await;
    verify(&secret, &got[0]).unwrap();
    let body = json_of(&got[0]);
    assert_eq!(body["type"], "user.created");
    assert_eq!(body["data"]["resource_id"], user_id.as_str());
    assert_eq!(body["data"]["connection_id"], f.conn_id.as_str());
    let event_id = id_of(&got[0]);
    let seq = body["data"]["sequence"].as_i64().unwrap();
    // The delivery's data is the event exactly as the Events API gives it: one vocabulary.
    let (status, from_feed) = f.api(Method::GET, &format!("events/{event_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], from_feed);
    assert_eq!(body["data"]["org_id"], f.org_id.as_str());
    assert_eq!(body["timestamp"], from_feed["occurred_at"]);
    conforms_to_the_document(&f, &body).await;

    // Its attempt is recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempts = loop {
        let (_, a) = f.api(Method::GET, &format!("webhooks/{id}/attempts"), None).await;
        if !a["data"].as_array().unwrap().is_empty() {
            break a;
        }
        assert!(Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let a = &attempts["data"][0];
    assert_eq!(
        (
            a["event_id"].as_str(),
            a["succeeded"].as_bool(),
            a["status_code"].as_u64()
        ),
        (Some(event_id.as_str()), Some(true), Some(200))
    );
    assert_eq!(
        (
            a["origin"].as_str(),
            a["attempt"].as_i64(),
            a["response_excerpt"].as_str()
        ),
        (Some("dispatch"), Some(1), Some("ok"))
    );

    // A test message.
    let (status, ping) = f.api(Method::POST, &format!("webhooks/{id}/ping"), None).await;
    assert_eq!(
        (status, ping["origin"].as_str(), ping["succeeded"].as_bool()),
        (200, Some("ping"), Some(true))
    );
    // Attempts page with `cursor` / `next_cursor`, like every other list.
    let (_, first) = f
        .api(Method::GET, &format!("webhooks/{id}/attempts?limit=1"), None)
        .await;
    assert_eq!(first["data"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["data"][0]["origin"], "ping", "newest first: {first}");
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();
    let (_, older) = f
        .api(
            Method::GET,
            &format!("webhooks/{id}/attempts?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(
        older["data"][0]["event_id"].as_str(),
        Some(event_id.as_str()),
        "{older}"
    );
    assert!(older["next_cursor"].is_null(), "{older}");
    let (status, _) = f
        .api(Method::GET, &format!("webhooks/{id}/attempts?cursor=nope"), None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = f
        .api(Method::GET, &format!("webhooks/{id}/attempts?before=1"), None)
        .await;
    assert_eq!(status, 400, "the old parameter is refused, not ignored");
    let got = f.wait_received(2).await;
    assert_eq!(json_of(&got[1])["type"], "webhook.ping");
    verify(&secret, &got[1]).unwrap();

    // Redelivery of the event, with its id.
    let (status, again) = f
        .api(
            Method::POST,
            &format!("webhooks/{id}/redeliver"),
            Some(json!({"event_id": event_id})),
        )
        .await;
    assert_eq!(
        (status, again["origin"].as_str(), again["attempt"].as_i64()),
        (200, Some("redeliver"), Some(2))
    );
    let got = f.wait_received(3).await;
    assert_eq!(id_of(&got[2]), event_id);

    // Rotation: both secrets verify during the overlap.
    let (status, rotated) = f
        .api(Method::POST, &format!("webhooks/{id}/secret-rotation"), None)
        .await;
    assert_eq!(status, 200);
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated["webhook"]["previous_secret_expires_at"].is_string());
    f.create_user("grace@example.com").await;
    let got = f.wait_received(4).await;
    verify(&new_secret, &got[3]).unwrap();
    verify(&secret, &got[3]).unwrap();

    // Replay from the first event: both user events again, in order, with their ids.
    let (status, replayed) = f
        .api(
            Method::POST,
            &format!("webhooks/{id}/replay"),
            Some(json!({"from_sequence": seq})),
        )
        .await;
    assert_eq!((status, replayed["last_sequence"].as_i64()), (200, Some(seq - 1)));
    let got = f.wait_received(6).await;
    assert_eq!(id_of(&got[4]), event_id);
    assert_eq!(id_of(&got[5]), id_of(&got[3]));

    // Disabled: the reason is shown; enabled again: what happened meanwhile arrives.
    let (status, off) = f
        .api(
            Method::PATCH,
            &format!("webhooks/{id}"),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!((status, off["status"].as_str()), (200, Some("disabled")));
    assert_eq!(off["disabled_reason"], "disabled through the management API");
    f.create_user("while-disabled@example.com").await;
    let (_, on) = f
        .api(
            Method::PATCH,
            &format!("webhooks/{id}"),
            Some(json!({"status": "active", "description": "CRM"})),
        )
        .await;
    assert_eq!(
        (
            on["status"].as_str(),
            on["disabled_reason"].clone(),
            on["description"].as_str()
        ),
        (Some("active"), Value::Null, Some("CRM"))
    );
    let got = f.wait_received(7).await;
    assert_eq!(json_of(&got[6])["type"], "user.created");

    // Deleted.
    let (status, _) = f.api(Method::DELETE, &format!("webhooks/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, problem) = f.api(Method::GET, &format!("webhooks/{id}"), None).await;
    assert_eq!(status, 404, "{problem}");
}

async fn bad_input_is_refused_with_the_field_named_and_changes_nothing() {
    let f = Fixture::start().await;
    let post = |body: Value, field: &'static str| {
        let f = &f;
        async move { f.invalid(Method::POST, "webhooks", body, field).await }
    };
    let d = post(json!({"url": "http://10.0.0.7/hook"}), "url").await;
    assert!(d.contains("private"), "{d}");
    let d = post(json!({"url": "http://169.254.169.254/latest/meta-data"}), "url").await;
    assert!(d.contains("link-local"), "{d}");
    post(json!({"url": "ftp://example.com/x"}), "url").await;
    post(json!({"url": "https://user:pw@example.com/x"}), "url").await;
    post(json!({"url": "no url"}), "url").await;
    let d = post(
        json!({"url": f.receiver, "event_types": ["user.created", "user.teleported"]}),
        "event_types[1]",
    )
    .await;
    assert!(d.contains("unknown event type"), "{d}");
    post(json!({"url": f.receiver, "org_id": "nope"}), "org_id").await;
    post(
        json!({"url": f.receiver, "description": "x".repeat(501)}),
        "description",
    )
    .await;
    let (status, _) = f
        .api(
            Method::POST,
            "webhooks",
            Some(json!({"url": f.receiver, "secret": "mine"})),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");
    let (_, list) = f.api(Method::GET, "webhooks", None).await;
    assert_eq!(list["data"], json!([]), "nothing was created");

    let (_, created) = f.api(Method::POST, "webhooks", Some(json!({"url": f.receiver}))).await;
    let id = created["webhook"]["id"].as_str().unwrap().to_string();
    // The settings, without the delivery cursor (the dispatcher moves it past the endpoint's own
    // `webhook.created` meanwhile).
    let settings = |mut v: Value| {
        v.as_object_mut().unwrap().remove("last_sequence");
        v
    };
    let before = settings(f.api(Method::GET, &format!("webhooks/{id}"), None).await.1);
    f.invalid(
        Method::PATCH,
        &format!("webhooks/{id}"),
        json!({"url": "http://192.168.1.1/"}),
        "url",
    )
    .await;
    f.invalid(
        Method::PATCH,
        &format!("webhooks/{id}"),
        json!({"event_types": ["*"]}),
        "event_types[0]",
    )
    .await;
    let d = f
        .invalid(
            Method::POST,
            &format!("webhooks/{id}/replay"),
            json!({"from_sequence": 1_000_000}),
            "from_sequence",
        )
        .await;
    assert!(d.contains("back only"), "{d}");
    f.invalid(
        Method::POST,
        &format!("webhooks/{id}/replay"),
        json!({"from_sequence": 0}),
        "from_sequence",
    )
    .await;
    f.invalid(
        Method::POST,
        &format!("webhooks/{id}/redeliver"),
        json!({"event_id": "nope"}),
        "event_id",
    )
    .await;
    let (status, p) = f
        .api(Method::GET, &format!("webhooks/{id}/attempts?limit=0"), None)
        .await;
    assert_eq!(status, 400);
    assert!(p["detail"].as_str().unwrap().starts_with("limit must be"), "{p}");
    let after = settings(f.api(Method::GET, &format!("webhooks/{id}"), None).await.1);
    assert_eq!(before, after, "refused changes changed nothing");
    let (status, _) = f.api(Method::GET, "webhooks/nope", None).await;
    assert_eq!(status, 404);
    let (status, _) = f.api(Method::POST, "webhooks/nope/ping", None).await;
    assert_eq!(status, 404);
}

/// `value` has exactly the properties the schema `$ref`'d or given has (every required one, no
/// other), recursively through objects and `$ref`s of the served OpenAPI document.
fn matches_schema(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return matches_schema(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        // A tagged enum (the actor): the variant whose `type` enumerates the value's.
        let variant = variants
            .iter()
            .find(|v| {
                v["properties"]["type"]["enum"]
                    .as_array()
                    .is_some_and(|e| e.contains(&value["type"]))
            })
            .unwrap_or_else(|| panic!("{at}: no variant of {schema} for {value}"));
        return matches_schema(doc, variant, value, at);
    }
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("{at}: {value} is not an object"));
    for k in obj.keys() {
        assert!(props.contains_key(k), "{at}.{k} is not in the document's schema");
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap();
        assert!(obj.contains_key(r), "{at}.{r} is required by the document but not sent");
    }
    for (k, v) in obj {
        matches_schema(doc, &props[k], v, &format!("{at}.{k}"));
    }
}

/// The delivery body conforms to the document's `webhooks.event` request body.
async fn conforms_to_the_document(f: &Fixture, body: &Value) {
    let doc: Value = f
        .http
        .get(format!("{}/api/v1/openapi.json", f.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["webhooks"]["event"]["post"];
    for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == h && p["in"] == "header"),
            "{h} is not documented"
        );
    }
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["$ref"], "#/components/schemas/Delivery");
    matches_schema(&doc, schema, body, "body");
    assert_eq!(
        doc["webhooks"]["ping"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Ping"
    );
}

async fn the_openapi_document_describes_webhooks() {
    let f = Fixture::start().await;
    let doc: Value = f
        .http
        .get(format!("{}/api/v1/openapi.json", f.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/api/v1/webhooks/{id}/secret-rotation",
        "/api/v1/webhooks/{id}/attempts",
        "/api/v1/webhooks/{id}/redeliver",
        "/api/v1/webhooks/{id}/replay",
        "/api/v1/webhooks/{id}/ping",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert!(doc["components"]["schemas"]["WebhookWithSecret"].is_object());
}

backend_tests!(
    bad_input_is_refused_with_the_field_named_and_changes_nothing,
    the_openapi_document_describes_webhooks,
    the_list_filter_is_org_id_and_a_misspelt_one_is_refused;
    multi_thread: an_endpoint_delivers_scim_changes_and_is_managed_over_http,
);

async fn the_list_filter_is_org_id_and_a_misspelt_one_is_refused() {
    let f = Fixture::start().await;
    let (status, other) = f
        .api(Method::POST, "organizations", Some(json!({"name": "globex"})))
        .await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for org in [Some(f.org_id.clone()), Some(other.clone()), None] {
        let (status, created) = f
            .api(
                Method::POST,
                "webhooks",
                Some(json!({"url": f.receiver, "org_id": org})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["webhook"]["id"].as_str().unwrap().to_string());
    }
    let listed = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, all) = f.api(Method::GET, "webhooks", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(listed(&all), ids);
    let (status, filtered) = f.api(Method::GET, &format!("webhooks?org_id={other}"), None).await;
    assert_eq!(status, 200, "{filtered}");
    assert_eq!(listed(&filtered), [ids[1].clone()]);

    // `organization_id` is not this endpoint's filter: refused, not ignored (which would list all).
    let (status, problem) = f
        .api(Method::GET, &format!("webhooks?organization_id={other}"), None)
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        problem["detail"],
        json!("unknown query parameter \"organization_id\"; this endpoint takes: org_id")
    );
}
