//! Staging connections and go-live over a real socket, on SQLite and PostgreSQL, with the webhook
//! dispatcher running and a receiver on loopback: a connection created in staging is answered and
//! stored as usual but nothing of it reaches the events feed, webhooks, the directory or the access
//! check; the match report compares uploaded accounts; after go-live a webhook consumer that
//! applies what it receives from `connection.activated` on holds exactly the directory's state.

mod common;

use axum::body::Bytes;
use common::*;
use reqwest::Method;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::admin::Admin;
use rollcall_server::node::{Node, NodeSettings};
use rollcall_server::service::{Scim, ScimConfig};
use rollcall_server::state::AppState;
use rollcall_store::Store;
use rollcall_webhooks::{Dispatcher, NetworkPolicy, WebhookConfig, Webhooks};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

backend_tests!(
    a_webhook_consumer_that_starts_at_go_live_ends_with_the_directory,
    staging_endpoints_refuse_what_they_cannot_do,
);

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Fixture {
    base: String,
    key: String,
    org_id: String,
    http: reqwest::Client,
    received: Arc<Mutex<Vec<Bytes>>>,
    receiver: String,
    _stop: Vec<oneshot::Sender<()>>,
    _db: DbGuard,
}

/// A connection and its token.
struct Scim2 {
    id: String,
    token: String,
}

impl Fixture {
    async fn start() -> Fixture {
        let registry = Arc::new(SchemaRegistry::standard());
        let (store, db): (Arc<dyn Store>, DbGuard) = open_store(current_backend(), registry.clone()).await;
        let org = store
            .create_organization(&rollcall_store::WriteContext::cli(), "acme")
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let key = Admin::new(store.clone(), Arc::default(), &base)
            .create_api_key(&rollcall_store::WriteContext::cli(), "ops")
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
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        tokio::spawn(rollcall_server::serve(
            listener,
            rollcall_server::app(AppState::new(scim, node)),
            async {
                let _ = server_stopped.await;
            },
        ));
        let (stop_dispatcher, dispatcher_stopped) = oneshot::channel::<()>();
        tokio::spawn(Dispatcher::new(hooks, "test-node").run(async {
            let _ = dispatcher_stopped.await;
        }));
        let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(body);
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

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    async fn scim(&self, c: &Scim2, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/scim/v2/{}{path}", self.base, c.id))
            .bearer_auth(&c.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert!((200..300).contains(&status), "SCIM {path}: {status}");
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn user(&self, c: &Scim2, name: &str) -> String {
        let u = self
            .scim(
                c,
                Method::POST,
                "/Users",
                Some(json!({"schemas": [USER], "userName": format!("{name}@acme.example"),
                    "emails": [{"value": format!("{name}@acme.example"), "primary": true}], "active": true})),
            )
            .await;
        u["id"].as_str().unwrap().to_string()
    }

    async fn group(&self, c: &Scim2, name: &str, members: &[&String]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let g = self
            .scim(
                c,
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": name, "members": members})),
            )
            .await;
        g["id"].as_str().unwrap().to_string()
    }

    async fn patch(&self, c: &Scim2, path: &str, ops: Value) {
        self.scim(
            c,
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH], "Operations": ops})),
        )
        .await;
    }

    /// Every event of the connection in the feed.
    async fn feed(&self, c: &Scim2) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .ok(
                    Method::GET,
                    &format!("events?connection_id={}&limit=1000{after}", c.id),
                    None,
                )
                .await;
            out.extend(page["data"].as_array().cloned().unwrap_or_default());
            if page["has_more"] != json!(true) {
                return out;
            }
            after = format!("&after={}", page["next_cursor"].as_str().unwrap());
        }
    }

    /// The deliveries received so far, as (type, event) by sequence, once one has `sequence >= seq`.
    async fn deliveries_through(&self, seq: i64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut got: Vec<Value> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .map(|b| serde_json::from_slice::<Value>(b).unwrap()["data"].clone())
                .collect();
            got.sort_by_key(|e| e["sequence"].as_i64());
            if got.last().is_some_and(|e| e["sequence"].as_i64() >= Some(seq)) {
                return got;
            }
            assert!(Instant::now() < deadline, "the deliveries did not reach sequence {seq}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn users(&self, query: &str) -> Vec<Value> {
        let v = self
            .ok(
                Method::GET,
                &format!("organizations/{}/users?limit=1000{query}", self.org_id),
                None,
            )
            .await;
        v["data"].as_array().cloned().unwrap()
    }
}

/// What a consumer keeps: users (userName, active, roles) and groups (displayName, members).
#[derive(Debug, Default, PartialEq)]
struct Mirror {
    users: BTreeMap<String, (String, bool, BTreeSet<String>)>,
    groups: BTreeMap<String, (String, BTreeSet<String>)>,
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

impl Mirror {
    /// Applies one delivered event, as docs/go-live.md tells a consumer to.
    fn apply(&mut self, e: &Value) {
        let id = e["resource_id"].as_str().unwrap_or_default().to_string();
        let d = &e["data"];
        match e["type"].as_str().unwrap() {
            "user.created" => {
                let a = &d["attributes"];
                let name = a["userName"].as_str().unwrap().to_string();
                let active = a["active"].as_bool().unwrap_or(true);
                self.users.insert(id, (name, active, BTreeSet::new()));
            }
            "user.updated" | "user.deactivated" | "user.reactivated" => {
                let u = self.users.get_mut(&id).expect("an update of a known user");
                if let Some(n) = d["changed"]["userName"]["after"].as_str() {
                    u.0 = n.to_string();
                }
                if let Some(a) = d["changed"]["active"]["after"].as_bool() {
                    u.1 = a;
                }
            }
            "user.deleted" => {
                self.users.remove(&id);
                for g in self.groups.values_mut() {
                    g.1.remove(&id);
                }
            }
            "user.roles_changed" => {
                // A deleted user's roles go to none after its `user.deleted`.
                match self.users.get_mut(&id) {
                    Some(u) => u.2 = strings(&d["after"]),
                    None => assert_eq!(d["after"], json!([]), "roles of an unknown user"),
                }
            }
            "group.created" => {
                let name = d["attributes"]["displayName"].as_str().unwrap().to_string();
                self.groups.insert(id, (name, BTreeSet::new()));
            }
            "group.updated" => {
                if let Some(n) = d["changed"]["displayName"]["after"].as_str() {
                    self.groups.get_mut(&id).unwrap().0 = n.to_string();
                }
            }
            "group.deleted" => {
                self.groups.remove(&id);
            }
            "group.member_added" => {
                let m = d["member"].as_str().unwrap().to_string();
                self.groups.get_mut(&id).expect("a member of a known group").1.insert(m);
            }
            "group.member_removed" => {
                let m = d["member"].as_str().unwrap();
                if let Some(g) = self.groups.get_mut(&id) {
                    g.1.remove(m);
                }
            }
            _ => {}
        }
    }
}

async fn a_webhook_consumer_that_starts_at_go_live_ends_with_the_directory() {
    let f = Fixture::start().await;
    let created = f
        .ok(
            Method::POST,
            &format!("organizations/{}/connections", f.org_id),
            Some(json!({"name": "Okta", "idp": "okta", "staging": true})),
        )
        .await;
    assert_eq!(created["connection"]["staging"], json!(true));
    assert!(created["connection"]["staged_at"].is_string());
    let c = Scim2 {
        id: created["connection"]["id"].as_str().unwrap().to_string(),
        token: created["token"].as_str().unwrap().to_string(),
    };
    f.ok(
        Method::POST,
        "webhooks",
        Some(json!({"url": f.receiver, "org_id": f.org_id, "description": "mirror"})),
    )
    .await;
    f.ok(
        Method::POST,
        &format!("organizations/{}/roles", f.org_id),
        Some(json!({"key": "eng", "name": "Engineering"})),
    )
    .await;
    f.ok(
        Method::POST,
        &format!("connections/{}/role-mappings", c.id),
        Some(json!({"role": "eng", "match": {"group_name": "Engineering"}})),
    )
    .await;

    // The identity provider's first sync, while staging.
    let mut u = Vec::new();
    for n in ["ann", "bob", "cat", "dan", "eve", "fay"] {
        u.push(f.user(&c, n).await);
    }
    let eng = f.group(&c, "Engineering", &[&u[0], &u[1], &u[2]]).await;
    let sales = f.group(&c, "Sales", &[&u[3]]).await;
    f.patch(
        &c,
        &format!("/Users/{}", u[4]),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    f.patch(
        &c,
        &format!("/Users/{}", u[1]),
        json!([{"op": "replace", "path": "userName", "value": "robert@acme.example"}]),
    )
    .await;
    f.patch(
        &c,
        &format!("/Groups/{eng}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", u[2])}]),
    )
    .await;
    f.scim(&c, Method::DELETE, &format!("/Users/{}", u[5]), None).await;
    // Answered as usual: the SCIM view follows.
    let eng_doc = f.scim(&c, Method::GET, &format!("/Groups/{eng}"), None).await;
    assert_eq!(eng_doc["members"].as_array().unwrap().len(), 2);

    // Nothing reached the application.
    let feed: Vec<String> = f
        .feed(&c)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        feed,
        ["connection.created", "connection.staged", "role_mapping.created"]
    );
    assert!(f.users("").await.is_empty(), "the directory leaves staging out");
    assert!(f.users(&format!("&connection_id={}", c.id)).await.is_empty());
    // Shown when asked (the directory lists deleted users too, with their status).
    assert_eq!(f.users("&include_staging=true").await.len(), 6, "shown when asked");
    let groups = f
        .ok(Method::GET, &format!("organizations/{}/groups", f.org_id), None)
        .await;
    assert_eq!(groups["data"], json!([]));
    let access = f
        .ok(
            Method::GET,
            &format!("organizations/{}/access?email=ann@acme.example", f.org_id),
            None,
        )
        .await;
    assert_eq!(
        (access["allowed"].clone(), access["reason"].clone()),
        (json!(false), json!("unknown_user"))
    );
    let conn = f.ok(Method::GET, &format!("connections/{}", c.id), None).await;
    assert_eq!(conn["staging"], json!(true));

    // The match report: the application's accounts against what the IdP pushed.
    let report = f
        .ok(
            Method::POST,
            &format!("connections/{}/match-report", c.id),
            Some(json!({"accounts": [
                {"email": "ANN@acme.example", "roles": ["eng"]},
                {"email": "robert@acme.example", "roles": ["admin"]},
                {"email": "zed@acme.example"},
                {"external_id": "nobody"}
            ]})),
        )
        .await;
    assert_eq!(
        report["counts"],
        json!({"matched": 2, "idp_only": 3, "app_only": 2, "ambiguous": 0, "role_differences": 1})
    );
    assert_eq!(report["staging"], json!(true));
    assert_eq!(report["role_differences"][0]["would_gain"], json!(["eng"]));
    assert_eq!(report["role_differences"][0]["would_lose"], json!(["admin"]));
    // Kept, and recomputed as the identity provider keeps pushing.
    let zed = f.user(&c, "zed").await;
    let again = f
        .ok(Method::GET, &format!("connections/{}/match-report", c.id), None)
        .await;
    assert_eq!(again["counts"]["matched"], json!(3));
    assert_eq!(again["counts"]["app_only"], json!(1));
    assert_eq!(again["uploaded_at"], report["uploaded_at"]);

    // Go-live.
    let live = f
        .ok(Method::POST, &format!("connections/{}/activate", c.id), None)
        .await;
    assert_eq!(live["connection"]["staging"], json!(false));
    assert_eq!(
        live["snapshot"],
        json!({"users": 6, "groups": 2, "memberships": 3, "users_with_roles": 2, "users_with_workspaces": 0})
    );
    // Then changes as usual.
    let gus = f.user(&c, "gus").await;
    f.patch(
        &c,
        &format!("/Groups/{sales}"),
        json!([{"op": "add", "path": "members", "value": [{"value": gus}]}]),
    )
    .await;
    f.patch(
        &c,
        &format!("/Groups/{eng}"),
        json!([{"op": "add", "path": "members", "value": [{"value": zed}]}]),
    )
    .await;
    f.patch(
        &c,
        &format!("/Users/{}", u[3]),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    f.patch(
        &c,
        &format!("/Groups/{sales}"),
        json!([{"op": "replace", "path": "displayName", "value": "Sales EMEA"}]),
    )
    .await;
    f.scim(&c, Method::DELETE, &format!("/Users/{}", u[0]), None).await;

    let last = f.feed(&c).await.last().unwrap()["sequence"].as_i64().unwrap();
    let delivered = f.deliveries_through(last).await;
    let start = delivered
        .iter()
        .position(|e| e["type"] == "connection.activated")
        .expect("connection.activated delivered");
    assert!(
        delivered[..start].iter().all(|e| {
            let t = e["type"].as_str().unwrap();
            !t.starts_with("user.") && !t.starts_with("group.")
        }),
        "nothing of the staging connection was delivered before go-live"
    );
    let mut mirror = Mirror::default();
    for e in &delivered[start..] {
        mirror.apply(e);
    }

    // The directory as the application reads it.
    let mut directory = Mirror::default();
    for user in f.users("").await {
        if user["status"] == "deleted" {
            continue;
        }
        directory.users.insert(
            user["id"].as_str().unwrap().to_string(),
            (
                user["user_name"].as_str().unwrap().to_string(),
                user["status"] == "active",
                strings(&user["roles"]),
            ),
        );
    }
    let groups = f
        .ok(Method::GET, &format!("organizations/{}/groups", f.org_id), None)
        .await;
    for g in groups["data"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        let members = f
            .ok(
                Method::GET,
                &format!("organizations/{}/groups/{id}/members?limit=1000", f.org_id),
                None,
            )
            .await;
        let ids = members["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        directory
            .groups
            .insert(id.to_string(), (g["display_name"].as_str().unwrap().to_string(), ids));
    }
    assert_eq!(directory.users.len(), 6, "{directory:?}");
    assert_eq!(directory.groups.len(), 2);
    assert_eq!(mirror, directory, "the consumer holds exactly the directory's state");
}

async fn staging_endpoints_refuse_what_they_cannot_do() {
    let f = Fixture::start().await;
    let created = f
        .ok(
            Method::POST,
            &format!("organizations/{}/connections", f.org_id),
            Some(json!({"idp": "okta"})),
        )
        .await;
    assert_eq!(created["connection"]["staging"], json!(false));
    let c = Scim2 {
        id: created["connection"]["id"].as_str().unwrap().to_string(),
        token: created["token"].as_str().unwrap().to_string(),
    };
    let ann = f.user(&c, "ann").await;
    let problem = |(status, body): (u16, Value), want: u16| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["status"], json!(want));
        body["detail"].as_str().unwrap_or_default().to_string()
    };
    let activate = format!("connections/{}/activate", c.id);
    let stage = format!("connections/{}/stage", c.id);
    let report = format!("connections/{}/match-report", c.id);
    assert!(problem(f.api(Method::POST, &activate, None).await, 409).contains("live"));
    assert!(problem(f.api(Method::POST, "connections/nope/stage", None).await, 404).contains("nope"));
    problem(f.api(Method::POST, "connections/nope/activate", None).await, 404);
    problem(f.api(Method::GET, "connections/nope/match-report", None).await, 404);

    // Put back into staging: the connection's users leave the directory, and its changes the feed.
    let staged = f.ok(Method::POST, &stage, None).await;
    assert_eq!(staged["staging"], json!(true));
    assert!(problem(f.api(Method::POST, &stage, None).await, 409).contains("already in staging"));
    assert!(f.users("").await.is_empty());
    f.patch(
        &c,
        &format!("/Users/{ann}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    let feed = f.feed(&c).await;
    assert_eq!(feed.last().unwrap()["type"], "connection.staged");
    assert_eq!(feed.last().unwrap()["data"], json!({"users": 1, "groups": 0}));
    assert_eq!(feed.last().unwrap()["actor"]["type"], "api_key");
    problem(
        f.api(
            Method::GET,
            &format!("organizations/{}/users?include_staging=yes", f.org_id),
            None,
        )
        .await,
        400,
    );

    // Match report input.
    let empty = f.ok(Method::GET, &report, None).await;
    assert_eq!(empty["uploaded_at"], Value::Null);
    assert_eq!(empty["counts"]["idp_only"], json!(1));
    problem(f.api(Method::DELETE, &report, None).await, 404);
    problem(
        f.api(Method::POST, &report, Some(json!({"accounts": [{"mail": "a@b.c"}]})))
            .await,
        422,
    );
    assert!(
        problem(
            f.api(Method::POST, &report, Some(json!({"accounts": [{"roles": ["x"]}]})))
                .await,
            422
        )
        .contains("neither an email nor an external_id")
    );
    let many: Vec<Value> = (0..10_001).map(|i| json!({"external_id": format!("{i}")})).collect();
    assert!(problem(f.api(Method::POST, &report, Some(json!({"accounts": many}))).await, 422).contains("10000"));
    // Bad input changed nothing.
    assert_eq!(f.ok(Method::GET, &report, None).await["uploaded_at"], Value::Null);
    f.ok(
        Method::POST,
        &report,
        Some(json!({"accounts": [{"email": "ann@acme.example"}]})),
    )
    .await;
    let (status, _) = f.api(Method::DELETE, &report, None).await;
    assert_eq!(status, 204);

    // Live again: the deactivation made while staging arrives as the user's state.
    let live = f.ok(Method::POST, &activate, None).await;
    assert_eq!(live["snapshot"]["users"], json!(1));
    let feed = f.feed(&c).await;
    let n = feed.len();
    assert_eq!(feed[n - 2]["type"], "connection.activated");
    assert_eq!(feed[n - 1]["type"], "user.created");
    assert_eq!(feed[n - 1]["data"]["attributes"]["active"], json!(false));
    assert_eq!(feed[n - 1]["data"]["reason"], json!("connection_activated"));
    let users = f.users("").await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["status"], "deactivated");
}
