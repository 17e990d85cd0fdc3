//! Outbound provisioning through the management API, on a real server over a socket with its
//! outbound worker running, pushing to a real SCIM server (scim2-server) on loopback (allowed
//! explicitly, as the configuration would): a target is created (its credentials never returned),
//! its plan read, nothing pushed before approval; approved, the users reach the target; a SCIM
//! change to Rollcall reaches it within the worker's rounds; runs and objects are listed; bad
//! input changes nothing.

mod common;

#[path = "../../outbound/tests/downstream/mod.rs"]
mod downstream;

use common::*;
use downstream::{Downstream, TOKEN};
use reqwest::Method;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::admin::Admin;
use rollcall_server::node::{Node, NodeSettings};
use rollcall_server::service::{Scim, ScimConfig};
use rollcall_server::state::AppState;
use rollcall_server::tokens;
use rollcall_store::{IdpKind, NewConnection, Store};
use rollcall_webhooks::NetworkPolicy;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Fixture {
    base: String,
    key: String,
    org_id: String,
    conn_id: String,
    scim_token: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    _stop: Vec<oneshot::Sender<()>>,
    _db: DbGuard,
}

impl Fixture {
    async fn start() -> Fixture {
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
        let outbound = rollcall_outbound::Outbound::new(
            store.clone(),
            rollcall_outbound::Transport::new(NetworkPolicy {
                allow_loopback: true,
                ..Default::default()
            }),
            rollcall_outbound::EngineConfig {
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
        let node = Node::new(store.clone(), NodeSettings::default()).with_outbound(outbound.clone());
        let state = AppState::new(scim, node);
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        tokio::spawn(rollcall_server::serve(listener, rollcall_server::app(state), async {
            let _ = server_stopped.await;
        }));
        let (stop_worker, worker_stopped) = oneshot::channel::<()>();
        tokio::spawn(outbound.run_worker("test-node".into(), async {
            let _ = worker_stopped.await;
        }));
        Fixture {
            base,
            key,
            org_id: org.id,
            conn_id: conn.id,
            scim_token: token.secret,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            store,
            _stop: vec![stop_server, stop_worker],
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

    async fn scim(&self, method: Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}/scim/v2/{}/{path}", self.base, self.conn_id))
            .bearer_auth(&self.scim_token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json().await.unwrap()
    }

    async fn create_user(&self, name: &str) -> String {
        let doc = self
            .scim(
                Method::POST,
                "Users",
                json!({"schemas": [USER_SCHEMA], "userName": name, "name": {"givenName": "G", "familyName": "F"},
                       "emails": [{"value": name, "primary": true}], "active": true}),
            )
            .await;
        doc["id"].as_str().unwrap().to_string()
    }
}

/// Waits (up to a minute) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn a_target_is_planned_approved_and_pushed_over_http() {
    let f = Fixture::start().await;
    let down = Downstream::start().await;
    let ann = f.create_user("ann@acme.test").await;
    f.create_user("bob@acme.test").await;
    let path = format!("organizations/{}/provisioning-targets", f.org_id);

    let (status, t) = f
        .api(
            Method::POST,
            &path,
            Some(json!({"name": "Downstream", "base_url": down.url, "auth": {"kind": "bearer", "token": TOKEN}})),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    assert!(!t.to_string().contains(TOKEN), "credentials are never returned: {t}");
    assert_eq!(t["approved"], json!(false));
    assert_eq!(t["profile"], json!("generic"));
    assert_eq!(t["auth"], json!({"kind": "bearer"}));
    let id = t["id"].as_str().unwrap().to_string();
    let (status, got) = f.api(Method::GET, &format!("{path}/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(!got.to_string().contains(TOKEN));
    let (_, list) = f.api(Method::GET, &path, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // The plan, before anything is pushed.
    let (status, plan) = f.api(Method::GET, &format!("{path}/{id}/plan"), None).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["approval_required"], json!(true));
    assert_eq!(plan["summary"]["create"], json!(2));
    assert_eq!(plan["users"].as_array().unwrap().len(), 2);
    assert_eq!(plan["users"][0]["action"], json!("create"));
    // Not approved: a sync is refused and nothing reaches the target.
    let (status, problem) = f.api(Method::POST, &format!("{path}/{id}/sync"), None).await;
    assert_eq!(status, 409, "{problem}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(down.users().await.is_empty());

    // Approved: the worker pushes.
    let (status, approved) = f.api(Method::POST, &format!("{path}/{id}/approve"), None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["approved"], json!(true));
    let (status, _) = f.api(Method::POST, &format!("{path}/{id}/approve"), None).await;
    assert_eq!(status, 409);
    eventually("two users downstream", || async { down.users().await.len() == 2 }).await;

    // A SCIM change to Rollcall reaches the target.
    f.scim(
        Method::PATCH,
        &format!("Users/{ann}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "title", "value": "Manager"}]}),
    )
    .await;
    eventually("the change downstream", || async {
        down.user_named("ann@acme.test")
            .await
            .first()
            .is_some_and(|u| u["title"] == json!("Manager"))
    })
    .await;

    // Runs and objects.
    let (status, runs) = f.api(Method::GET, &format!("{path}/{id}/runs?limit=10"), None).await;
    assert_eq!(status, 200, "{runs}");
    let runs = runs["data"].as_array().unwrap().clone();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(
        runs.iter()
            .any(|r| r["kind"] == json!("full") && r["counts"]["created"] == json!(2))
    );
    let (status, objs) = f.api(Method::GET, &format!("{path}/{id}/objects"), None).await;
    assert_eq!(status, 200);
    assert_eq!(objs["data"].as_array().unwrap().len(), 2);
    assert!(
        objs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["state"] == json!("synced"))
    );
    let (_, failed) = f
        .api(Method::GET, &format!("{path}/{id}/objects?state=failed"), None)
        .await;
    assert!(failed["data"].as_array().unwrap().is_empty());
    let (status, _) = f
        .api(Method::GET, &format!("{path}/{id}/objects?state=nope"), None)
        .await;
    assert_eq!(status, 400);
    let (status, retried) = f
        .api(Method::POST, &format!("{path}/{id}/objects/{ann}/retry"), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    let (status, _) = f
        .api(Method::POST, &format!("{path}/{id}/objects/nobody/retry"), None)
        .await;
    assert_eq!(status, 404);

    // Pause, then delete: the users stay downstream.
    let (status, paused) = f
        .api(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"status": "paused"})),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], json!("paused"));
    let (status, _) = f.api(Method::DELETE, &format!("{path}/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = f.api(Method::GET, &format!("{path}/{id}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(down.users().await.len(), 2);
}

async fn bad_input_is_refused_and_changes_nothing() {
    let f = Fixture::start().await;
    let path = format!("organizations/{}/provisioning-targets", f.org_id);
    let ok = json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}});
    let cases = [
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}, "extra": 1}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "digest", "token": "x"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "profile": "nope", "auth": {"kind": "bearer", "token": "x"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "profile": "aws-iam-identity-center", "auth": {"kind": "basic", "username": "u", "password": "p"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "http://169.254.169.254/scim", "auth": {"kind": "bearer", "token": "x"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "not a url", "auth": {"kind": "bearer", "token": "x"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}, "scope": {"connections": ["nope"]}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}, "mapping": {"id": "userName"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}, "deletion_threshold": {"max_percent": 0}}),
            422,
        ),
        (
            json!({"name": "", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}, "rate_limit": {"per_minute": 0}}),
            422,
        ),
        (
            json!({"name": "T", "base_url": "https://scim.example.com/v2", "auth": {"kind": "bearer", "token": "x"}, "rate_limit": {"per_minute": 60, "per_hour": 1}}),
            422,
        ),
    ];
    for (body, want) in cases {
        let (status, problem) = f.api(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, want, "{body}: {problem}");
    }
    let (_, list) = f.api(Method::GET, &path, None).await;
    assert!(list["data"].as_array().unwrap().is_empty(), "nothing was created");
    assert!(
        f.store
            .events_after(0, 1000)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.kind.starts_with("provisioning.")),
        "no event either"
    );
    // With the connection in scope it is accepted; the same name again is a 409.
    let mut good = ok.clone();
    good["scope"] = json!({"connections": [f.conn_id]});
    good["rate_limit"] = json!({"per_minute": 600});
    let (status, t) = f.api(Method::POST, &path, Some(good.clone())).await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["rate_limit"], json!({"per_minute": 600, "burst": 60}));
    let (status, _) = f.api(Method::POST, &path, Some(good)).await;
    assert_eq!(status, 409);
    let id = t["id"].as_str().unwrap();
    // The rate limit: changed, refused when out of range, back to the profile's with null.
    let (status, t2) = f
        .api(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"rate_limit": {"per_minute": 60, "burst": 5}})),
        )
        .await;
    assert_eq!(
        (status, t2["rate_limit"].clone()),
        (200, json!({"per_minute": 60, "burst": 5}))
    );
    let (status, _) = f
        .api(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"rate_limit": {"per_minute": 100001}})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, t2) = f
        .api(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"rate_limit": null})),
        )
        .await;
    assert_eq!((status, t2["rate_limit"].clone()), (200, Value::Null));
    let (_, t2) = f
        .api(Method::PATCH, &format!("{path}/{id}"), Some(json!({"name": "Renamed"})))
        .await;
    assert_eq!(t2["rate_limit"], Value::Null, "absent leaves it");
    let (status, _) = f
        .api(
            Method::PATCH,
            &format!("{path}/{id}"),
            Some(json!({"status": "quarantined"})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = f
        .api(Method::PATCH, &format!("{path}/{id}"), Some(json!({"colour": "red"})))
        .await;
    assert_eq!(status, 422);
    let (status, _) = f
        .api(Method::GET, "organizations/nope/provisioning-targets", None)
        .await;
    assert_eq!(status, 404);
}

/// The access check provisions just in time: the user is on the target when the answer comes
/// (once, whatever the worker was doing), and says so; a user who may not sign in is not pushed;
/// a paused, unapproved or out-of-scope target asks nothing; bad parameters are refused.
async fn the_access_check_provisions_just_in_time() {
    let f = Fixture::start().await;
    let down = Downstream::start().await;
    let path = format!("organizations/{}/provisioning-targets", f.org_id);
    // No deletion threshold: deactivating one of two users must not pause the target.
    let create = |name: &str, scope: Value| {
        json!({"name": name, "base_url": down.url, "auth": {"kind": "bearer", "token": TOKEN}, "scope": scope,
               "deletion_threshold": {"max_percent": null, "max_users": null}})
    };
    let (status, t) = f.api(Method::POST, &path, Some(create("Downstream", json!({})))).await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    let (status, _) = f.api(Method::POST, &format!("{path}/{id}/approve"), None).await;
    assert_eq!(status, 200);

    // A user who has just arrived from the IdP signs in: on the target before the answer.
    let cy = f.create_user("cy@acme.test").await;
    let access = format!("organizations/{}/access", f.org_id);
    let (status, a) = f
        .api(
            Method::GET,
            &format!("{access}?user_id={cy}&provision={id}&wait_ms=10000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["allowed"], json!(true));
    let p = &a["provisioning"][0];
    assert_eq!(
        (p["target_id"].as_str(), p["status"].as_str()),
        (Some(id.as_str()), Some("synced")),
        "{a}"
    );
    let remote = down.user_named("cy@acme.test").await;
    assert_eq!(remote.len(), 1, "on the target once");
    assert_eq!(p["remote_id"], remote[0]["id"]);
    assert_eq!(remote[0]["externalId"], json!(cy));
    // Asked again: answered from the mapping table at once.
    let (_, again) = f
        .api(
            Method::GET,
            &format!("{access}?email=cy@acme.test&provision={id}"),
            None,
        )
        .await;
    assert_eq!(again["provisioning"][0]["status"], json!("synced"));
    // Without `provision`, the answer has no provisioning part.
    let (_, plain) = f.api(Method::GET, &format!("{access}?user_id={cy}"), None).await;
    assert!(plain.get("provisioning").is_none(), "{plain}");

    // A deactivated user is not pushed.
    let dee = f.create_user("dee@acme.test").await;
    f.scim(
        Method::PATCH,
        &format!("Users/{dee}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await;
    let (status, a) = f
        .api(
            Method::GET,
            &format!("{access}?user_id={dee}&provision={id}&wait_ms=0"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (a["allowed"].clone(), a["provisioning"].clone()),
        (json!(false), json!([]))
    );
    // (The worker may have pushed dee from the log before the deactivation; then it deactivates
    // it there too. The access check itself asked for nothing.)
    eventually("dee inactive or absent on the target", || async {
        down.user_named("dee@acme.test")
            .await
            .iter()
            .all(|u| u["active"] == json!(false))
    })
    .await;

    // An unapproved target, a target scoped to a group the user is not in, a paused target.
    let group = f
        .scim(
            Method::POST,
            "Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins"}),
        )
        .await;
    let (_, waiting) = f.api(Method::POST, &path, Some(create("Waiting", json!({})))).await;
    let (_, scoped) = f
        .api(
            Method::POST,
            &path,
            Some(create("Admins only", json!({"groups": [group["id"]]}))),
        )
        .await;
    let scoped_id = scoped["id"].as_str().unwrap().to_string();
    f.api(Method::POST, &format!("{path}/{scoped_id}/approve"), None).await;
    f.api(
        Method::PATCH,
        &format!("{path}/{id}"),
        Some(json!({"status": "paused"})),
    )
    .await;
    let ids = format!("{},{scoped_id}&provision={id}", waiting["id"].as_str().unwrap());
    let (status, a) = f
        .api(
            Method::GET,
            &format!("{access}?user_id={cy}&provision={ids}&wait_ms=0"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let statuses: Vec<&str> = a["provisioning"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["not_approved", "not_in_scope", "target_paused"]);

    // Bad parameters: refused, with what was wrong.
    for (query, want) in [
        (format!("user_id={cy}&provision=nope"), 404),
        (format!("user_id={cy}&provision="), 400),
        (format!("user_id={cy}&provision={id}&wait_ms=10001"), 400),
        (format!("user_id={cy}&provision={id}&wait_ms=soon"), 400),
        (format!("user_id={cy}&provision={}", [id.as_str(); 11].join(",")), 422),
    ] {
        let (status, problem) = f.api(Method::GET, &format!("{access}?{query}"), None).await;
        assert_eq!(status, want, "{query}: {problem}");
    }
}

backend_tests!(
    bad_input_is_refused_and_changes_nothing;
    multi_thread: a_target_is_planned_approved_and_pushed_over_http, the_access_check_provisions_just_in_time,
);
