//! The guard against mass deprovisioning over a real socket, on SQLite and PostgreSQL: an identity
//! provider deactivates 30 users through SCIM, the guard trips, the management API lists what it
//! holds, and a release delivers it to the events feed while a discard drops it.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::Admin;
use rollcall_store::WriteContext;
use serde_json::{Value, json};
use std::sync::Arc;

const PROBLEM: &str = "application/problem+json";

backend_tests!(
    thirty_deactivations_trip_the_guard_and_a_release_delivers_them,
    a_discard_drops_the_held_deactivations,
    the_guard_endpoints_refuse_bad_input,
);

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

struct R {
    status: u16,
    content_type: String,
    text: String,
    body: Value,
}

impl R {
    #[track_caller]
    fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        self.body
    }

    #[track_caller]
    fn problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}: {}", self.text);
        assert!(self.content_type.starts_with(PROBLEM), "{}", self.content_type);
        assert_eq!(self.body["status"], json!(status));
        self.body["detail"].as_str().unwrap_or_default().to_string()
    }
}

impl Api {
    async fn start(srv: &TestServer) -> Api {
        let key = Admin::new(srv.store.clone(), Arc::default(), &srv.base)
            .create_api_key(&WriteContext::cli(), "ops")
            .await
            .expect("create API key")
            .secret;
        Api {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: srv.base.clone(),
            key,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> R {
        let mut b = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.key));
        if let Some(body) = body {
            b = b.header("Content-Type", "application/json").body(body.to_string());
        }
        let r = b.send().await.expect("request sent");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        R {
            status,
            content_type,
            text,
            body,
        }
    }

    async fn get(&self, path: &str) -> R {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str) -> R {
        self.call(Method::POST, path, None).await
    }

    /// Every event of `types` on the connection, following the cursor.
    async fn events(&self, conn: &Conn, types: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .get(&format!(
                    "events?connection_id={}&type={types}&limit=100{after}",
                    conn.id
                ))
                .await
                .ok();
            let data = page["data"].as_array().cloned().unwrap_or_default();
            out.extend(data);
            // The feed always answers a cursor to poll with; `has_more` tells whether to.
            if page["has_more"] != json!(true) {
                return out;
            }
            after = format!("&after={}", page["next_cursor"].as_str().expect("next_cursor"));
        }
    }
}

/// Creates `n` users through SCIM; their ids.
async fn users(client: &Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let u = client.user(&format!("person{i:02}@acme.example")).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    ids
}

/// What Okta sends to deactivate a user (and Entra, to disable one).
async fn set_active(client: &Client, id: &str, active: bool) {
    let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]});
    let r = client.patch(&format!("/Users/{id}"), &body).await.expect(200);
    assert_eq!(
        r.body["active"],
        json!(active),
        "the identity provider is answered normally"
    );
}

async fn thirty_deactivations_trip_the_guard_and_a_release_delivers_them() {
    let srv = TestServer::start().await;
    let (conn, client) = (srv.conn().clone(), srv.client());
    let api = Api::start(&srv).await;
    let ids = users(&client, 60).await;
    let guard_path = format!("connections/{}/deprovision-guard", conn.id);
    let g = api.get(&guard_path).await.ok();
    assert_eq!(g["status"], "armed");
    assert_eq!(
        g["settings"],
        json!({"enabled": true, "max_users": 25, "max_percent": 10, "min_users": 10, "window_minutes": 60})
    );

    for id in &ids[..30] {
        set_active(&client, id, false).await;
    }
    // The SCIM view follows the identity provider for all 30.
    let inactive = client.total(&format!("/Users?{}", filter("active eq false"))).await;
    assert_eq!(inactive, 30);
    // 60 active users: the 11th deactivation is more than 10 % (and more than 10 users).
    assert_eq!(api.events(&conn, "user.deactivated").await.len(), 10);
    let tripped = api.events(&conn, "connection.deprovision_guard_tripped").await;
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0]["data"]["rule"], "max_percent");
    assert_eq!(tripped[0]["actor"]["type"], "scim_token");
    let g = api.get(&guard_path).await.ok();
    assert_eq!(g["status"], "tripped");
    assert!(g["tripped_at"].is_string());
    assert_eq!(
        (g["held_events"].as_i64(), g["held_users"].as_i64()),
        (Some(20), Some(20))
    );

    // The held changes, paged.
    let first = api.get(&format!("{guard_path}/held?limit=15")).await.ok();
    let page1 = first["data"].as_array().unwrap().clone();
    assert_eq!(page1.len(), 15);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();
    let second = api
        .get(&format!("{guard_path}/held?limit=15&cursor={cursor}"))
        .await
        .ok();
    let page2 = second["data"].as_array().unwrap().clone();
    assert_eq!(page2.len(), 5);
    assert!(second["next_cursor"].is_null());
    let held_users: Vec<&str> = page1
        .iter()
        .chain(&page2)
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(held_users, ids[10..30].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        page1
            .iter()
            .all(|h| h["type"] == "user.deactivated" && h["actor"]["type"] == "scim_token")
    );

    // A creation keeps flowing while tripped.
    let newcomer = client.user("newcomer@acme.example").await;
    assert!(
        api.events(&conn, "user.created")
            .await
            .iter()
            .any(|e| e["resource_id"] == newcomer["id"])
    );

    // Release: the 20 deactivations reach the feed after the release event, which names the key.
    let r = api.post(&format!("{guard_path}/release")).await.ok();
    assert_eq!((r["events"].as_i64(), r["users"].as_i64()), (Some(20), Some(20)));
    assert_eq!(r["guard"]["status"], "armed");
    assert_eq!(r["guard"]["held_events"], 0);
    let deactivated = api.events(&conn, "user.deactivated").await;
    assert_eq!(deactivated.len(), 30);
    let released = api.events(&conn, "connection.deprovision_guard_released").await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0]["actor"]["type"], "api_key");
    assert_eq!(released[0]["actor"]["name"], "ops");
    assert_eq!(released[0]["data"]["events"], 20);
    let released_seq = released[0]["sequence"].as_i64().unwrap();
    assert!(
        deactivated[10..]
            .iter()
            .all(|e| e["sequence"].as_i64().unwrap() > released_seq)
    );
    assert_eq!(deactivated[10]["id"], page1[0]["id"], "released with its own id");
    // Nothing left to decide.
    let again = api.post(&format!("{guard_path}/release")).await;
    assert!(again.problem(409).contains("has not tripped"));
    assert_eq!(again.body["type"], "urn:rollcall:problem:guard-not-tripped");
}

async fn a_discard_drops_the_held_deactivations() {
    let srv = TestServer::start().await;
    let (conn, client) = (srv.conn().clone(), srv.client());
    let api = Api::start(&srv).await;
    let ids = users(&client, 30).await;
    let guard_path = format!("connections/{}/deprovision-guard", conn.id);
    // A stricter policy: more than 5 users, no percentage rule.
    let settings = json!({"enabled": true, "max_users": 5, "max_percent": null, "min_users": 10, "window_minutes": 30});
    let g = api.call(Method::PUT, &guard_path, Some(&settings)).await.ok();
    assert_eq!(g["settings"], settings);
    let set = api.events(&conn, "connection.deprovision_guard_set").await;
    assert_eq!(set[0]["data"]["after"]["max_users"], 5);

    for id in &ids[..12] {
        set_active(&client, id, false).await;
    }
    assert_eq!(api.events(&conn, "user.deactivated").await.len(), 5);
    assert_eq!(api.get(&guard_path).await.ok()["held_users"], 7);
    // The IdP reactivates one held user: it never produces a deactivation.
    set_active(&client, &ids[8], true).await;
    assert_eq!(api.get(&guard_path).await.ok()["held_users"], 6);
    // A deletion while tripped is held too.
    client.delete(&format!("/Users/{}", ids[20])).await.expect(204);
    assert_eq!(api.get(&guard_path).await.ok()["held_users"], 7);

    let r = api.post(&format!("{guard_path}/discard")).await.ok();
    assert_eq!((r["events"].as_i64(), r["users"].as_i64()), (Some(7), Some(7)));
    let discarded = api.events(&conn, "connection.deprovision_guard_discarded").await;
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0]["actor"]["type"], "api_key");
    assert_eq!(api.events(&conn, "user.deactivated").await.len(), 5);
    assert!(api.events(&conn, "user.deleted").await.is_empty());
    let held = api.get(&format!("{guard_path}/held")).await.ok();
    assert_eq!(held["data"], json!([]));
    // Rollcall's own view still follows the identity provider.
    client.get(&format!("/Users/{}", ids[20])).await.expect(404);
    assert_eq!(client.fetch(&format!("/Users/{}", ids[11])).await["active"], false);
    // Re-armed: the next deactivation flows.
    set_active(&client, &ids[25], false).await;
    assert_eq!(api.events(&conn, "user.deactivated").await.len(), 6);
}

async fn the_guard_endpoints_refuse_bad_input() {
    let srv = TestServer::start().await;
    let conn = srv.conn().clone();
    let api = Api::start(&srv).await;
    let path = format!("connections/{}/deprovision-guard", conn.id);
    let full = json!({"enabled": true, "max_users": 25, "max_percent": 10, "min_users": 10, "window_minutes": 60});
    let mut missing = full.clone();
    missing.as_object_mut().unwrap().remove("max_percent");
    let d = api.call(Method::PUT, &path, Some(&missing)).await.problem(422);
    assert!(d.contains("max_percent"), "{d}");
    let mut unknown = full.clone();
    unknown["maxUsers"] = json!(3);
    let d = api.call(Method::PUT, &path, Some(&unknown)).await.problem(422);
    assert!(d.contains("maxUsers"), "{d}");
    let mut bad = full.clone();
    bad["max_percent"] = json!(0);
    assert!(
        api.call(Method::PUT, &path, Some(&bad))
            .await
            .problem(422)
            .contains("max_percent")
    );
    bad["max_percent"] = json!(10);
    bad["window_minutes"] = json!(0);
    assert!(
        api.call(Method::PUT, &path, Some(&bad))
            .await
            .problem(422)
            .contains("window_minutes")
    );
    assert!(
        api.get(&format!("{path}/held?sort=x"))
            .await
            .problem(400)
            .contains("sort")
    );
    assert!(
        api.get(&format!("{path}/held?cursor=nope"))
            .await
            .problem(400)
            .contains("cursor")
    );
    assert!(
        api.get(&format!("{path}/held?limit=0"))
            .await
            .problem(400)
            .contains("limit")
    );
    api.get("connections/nope/deprovision-guard").await.problem(404);
    api.get("connections/nope/deprovision-guard/held").await.problem(404);
    api.post("connections/nope/deprovision-guard/release")
        .await
        .problem(404);
    api.post(&format!("{path}/discard")).await.problem(409);
    // Nothing was changed by the refusals.
    assert_eq!(api.get(&path).await.ok()["settings"], full);
    // The endpoints are in the OpenAPI document.
    let doc = api.get("openapi.json").await.ok();
    for p in [
        "/connections/{id}/deprovision-guard",
        "/connections/{id}/deprovision-guard/held",
        "/connections/{id}/deprovision-guard/release",
        "/connections/{id}/deprovision-guard/discard",
    ] {
        let full = format!("/api/v1{p}");
        assert!(
            doc["paths"][p].is_object() || doc["paths"][full.as_str()].is_object(),
            "{p} is documented"
        );
    }
}
