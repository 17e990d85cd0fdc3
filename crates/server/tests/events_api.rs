//! The Events API (`/api/v1/events`), actors on events, event retention and the per-connection
//! request log (`/api/v1/connections/{id}/requests`), driven over HTTP on SQLite and PostgreSQL.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::Admin;
use rollcall_server::node::{ActivitySettings, NodeSettings};
use rollcall_server::request_log::RequestLogSettings;
use rollcall_store::{IdpKind, WriteContext};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROBLEM: &str = "application/problem+json";
const UA: &str = "rollcall-events-test/1.0";

backend_tests!(
    endpoints_need_an_api_key,
    bad_input_is_a_400_problem,
    api_key_changes_show_their_actor,
    scim_changes_show_their_token_and_the_feed_reconstructs_them,
    rotation_tells_the_next_token_apart,
    scim_errors_show_in_the_request_log,
    refused_requests_are_explained_in_plain_words,
    debug_logging_keeps_bodies_with_the_password_redacted,
    secret_values_in_filters_and_paths_are_redacted,
    the_request_log_keeps_the_newest_entries,
    retention_deletes_expired_events,
);

// --- helpers ---------------------------------------------------------------------------------------

/// A management API answer.
#[derive(Debug)]
struct R {
    status: u16,
    content_type: String,
    text: String,
    body: Value,
}

impl R {
    #[track_caller]
    fn expect(self, status: u16) -> R {
        assert_eq!(self.status, status, "expected {status}: {}", self.text);
        self
    }

    /// Asserts problem details with `status`; returns the detail.
    #[track_caller]
    fn problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}: {}", self.text);
        assert!(
            self.content_type.starts_with(PROBLEM),
            "{}: {}",
            self.content_type,
            self.text
        );
        assert_eq!(self.body["status"], json!(status));
        assert!(
            self.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:rollcall:problem:"))
        );
        self.body["detail"].as_str().unwrap_or_default().to_string()
    }

    fn data(&self) -> Vec<Value> {
        self.body["data"].as_array().cloned().unwrap_or_default()
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(srv: &TestServer, key: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: srv.base.clone(),
            key: key.map(str::to_string),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, request_id: Option<&str>) -> R {
        let mut b = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.base))
            .header("User-Agent", UA);
        if let Some(k) = &self.key {
            b = b.header("Authorization", format!("Bearer {k}"));
        }
        if let Some(id) = request_id {
            b = b.header("X-Request-Id", id);
        }
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
        self.call(Method::GET, path, None, None).await
    }
}

async fn new_key(srv: &TestServer, name: &str) -> String {
    Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_api_key(&WriteContext::cli(), name)
        .await
        .expect("create API key")
        .secret
}

/// A server and a management API client with a key named "deploy".
async fn start_with(setup: Setup) -> (TestServer, Api) {
    let srv = TestServer::start_with(setup).await;
    let key = new_key(&srv, "deploy").await;
    let api = Api::new(&srv, Some(&key));
    (srv, api)
}

async fn start() -> (TestServer, Api) {
    start_with(Setup::default()).await
}

/// Waits for `probe` to give a value: the request log and retention work in the background. Gives
/// up (failing the test) after half a minute.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every event matching `query`, following `next_cursor` a page of `limit` at a time.
async fn all_events(api: &Api, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let r = api
            .get(&format!("events?limit={limit}{sep}{query}{after}"))
            .await
            .expect(200);
        let page = r.data();
        assert!(page.len() <= limit);
        out.extend(page);
        after = format!("&after={}", r.body["next_cursor"].as_str().expect("next_cursor"));
        if !r.body["has_more"].as_bool().expect("has_more") {
            return out;
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The request log of a connection, newest first (first page).
async fn request_log(api: &Api, connection_id: &str) -> Vec<Value> {
    api.get(&format!("connections/{connection_id}/requests"))
        .await
        .expect(200)
        .data()
}

/// Waits for the request log to hold an entry with this request id.
async fn logged(api: &Api, connection_id: &str, request_id: &str) -> Value {
    eventually(&format!("request {request_id} in the request log"), || async {
        request_log(api, connection_id)
            .await
            .into_iter()
            .find(|e| e["request_id"] == request_id)
    })
    .await
}

// --- authentication and bad input ----------------------------------------------------------------

async fn endpoints_need_an_api_key() {
    let (srv, _api) = start().await;
    let conn = srv.conn().clone();
    for path in [
        "events".to_string(),
        "events/0190c7d2-5b7e-7000-8000-000000000000".to_string(),
        format!("connections/{}/requests", conn.id),
    ] {
        let none = Api::new(&srv, None).get(&path).await;
        assert!(none.problem(401).contains("API key"), "{path}: {}", none.text);
        // A SCIM connection token is refused here.
        let scim = Api::new(&srv, Some(&conn.token)).get(&path).await;
        assert!(
            scim.problem(401).contains("SCIM connection tokens"),
            "{path}: {}",
            scim.text
        );
        let wrong = Api::new(&srv, Some("rc_key_not-a-key")).get(&path).await;
        wrong.problem(401);
    }
}

async fn bad_input_is_a_400_problem() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let cases = [
        ("events?after=not-a-cursor", "not a cursor"),
        ("events?type=user.create", "user.created"),
        ("events?type=*", "type"),
        ("events?type=", "type"),
        ("events?type=user.created,nothing.*", "nothing"),
        ("events?limit=0", "limit"),
        ("events?limit=5000", "limit"),
        ("events?organisation_id=x", "unknown query parameter"),
        ("events?resource_id=", "resource_id"),
        ("events?after=a&after=b", "once"),
    ];
    for (path, needle) in cases {
        let detail = api.get(path).await.problem(400);
        assert!(detail.contains(needle), "{path}: {detail}");
    }
    // A request log cursor is not an events cursor, and the other way round.
    let r = api.get("events?limit=1").await.expect(200);
    let events_cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let detail = api
        .get(&format!("connections/{}/requests?cursor={events_cursor}", conn.id))
        .await
        .problem(400);
    assert!(detail.contains("not a cursor"), "{detail}");
    api.get(&format!("connections/{}/requests?limit=-1", conn.id))
        .await
        .problem(400);
    api.get(&format!("connections/{}/requests?page=2", conn.id))
        .await
        .problem(400);
    // Unknown things are 404s.
    api.get("connections/0190c7d2-5b7e-7000-8000-000000000000/requests")
        .await
        .problem(404);
    api.get("events/0190c7d2-5b7e-7000-8000-000000000000")
        .await
        .problem(404);
}

// --- actors ----------------------------------------------------------------------------------------

async fn api_key_changes_show_their_actor() {
    let (srv, api) = start().await;
    let key_id = srv
        .store
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "deploy")
        .unwrap()
        .id;
    let org = api
        .call(
            Method::POST,
            "organizations",
            Some(&json!({"name": "Initech"})),
            Some("req-org-1"),
        )
        .await
        .expect(201)
        .body;
    let org_id = org["id"].as_str().unwrap().to_string();
    let conn = api
        .call(
            Method::POST,
            &format!("organizations/{org_id}/connections"),
            Some(&json!({"idp": "okta"})),
            Some("req-conn-1"),
        )
        .await
        .expect(201)
        .body;
    let conn_id = conn["connection"]["id"].as_str().unwrap().to_string();
    api.call(
        Method::PATCH,
        &format!("connections/{conn_id}"),
        Some(&json!({"status": "disabled"})),
        Some("req-conn-2"),
    )
    .await
    .expect(200);

    let ev = all_events(&api, &format!("org_id={org_id}"), 100).await;
    assert_eq!(
        types(&ev),
        ["organization.created", "connection.created", "connection.disabled"]
    );
    let expected_actor = json!({"type": "api_key", "id": key_id, "name": "deploy"});
    for (e, request_id) in ev.iter().zip(["req-org-1", "req-conn-1", "req-conn-2"]) {
        assert_eq!(e["actor"], expected_actor, "{e}");
        assert_eq!(e["user_agent"], UA, "{e}");
        assert_eq!(e["request_id"], request_id, "{e}");
        assert_eq!(e["org_id"], org_id.as_str());
        assert!(e["occurred_at"].as_str().is_some_and(|t| t.contains('T')), "{e}");
    }
    assert_eq!(ev[1]["connection_id"], conn_id.as_str());
    assert_eq!(ev[0]["data"], json!({"name": "Initech"}));
    // One event by id, the same as in the list.
    let one = api
        .get(&format!("events/{}", ev[1]["id"].as_str().unwrap()))
        .await
        .expect(200)
        .body;
    assert_eq!(one, ev[1]);
    // The operator's key, created with the command line, shows as such.
    let key_created = all_events(&api, "type=api_key.created", 100).await;
    assert_eq!(key_created.len(), 1);
    assert_eq!(key_created[0]["actor"], json!({"type": "cli"}));
}

async fn scim_changes_show_their_token_and_the_feed_reconstructs_them() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let client = srv.client();
    let alice = client.user("alice").await;
    let alice_id = id(&alice);
    let bob = client.user("bob").await;
    let group = client.group("Engineering", &[&alice_id]).await;
    let group_id = id(&group);
    client
        .patch(
            &format!("/Users/{alice_id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]}),
        )
        .await
        .expect(200);
    client.delete(&format!("/Users/{}", id(&bob))).await.expect(204);
    client.delete(&format!("/Users/{alice_id}")).await.expect(204);

    let scim_types = [
        "user.created",
        "user.created",
        "group.created",
        "group.member_added",
        "user.deactivated",
        "user.deleted",
        "group.member_removed",
        "user.deleted",
    ];
    // The whole feed of the connection, one page and two at a time: the same events in order.
    let all = all_events(&api, &format!("connection_id={}", conn.id), 1000).await;
    assert_eq!(types(&all)[1..], scim_types, "{all:?}");
    assert_eq!(all[0]["type"], "connection.created");
    let paged = all_events(&api, &format!("connection_id={}", conn.id), 2).await;
    assert_eq!(paged, all);
    assert!(
        all.windows(2)
            .all(|w| w[0]["sequence"].as_i64() < w[1]["sequence"].as_i64())
    );

    let scim_events = &all[1..];
    for e in scim_events {
        let actor = &e["actor"];
        assert_eq!(actor["type"], "scim_token", "{e}");
        assert_eq!(actor["connection_id"], conn.id.as_str());
        let prefix = actor["token_prefix"].as_str().unwrap();
        assert!(prefix.len() >= 8 && conn.token.starts_with(prefix), "{prefix}");
        assert!(e["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
        assert_eq!(e["org_id"], conn.org_id.as_str());
    }
    // Reconstructing from the feed: alice was created, joined Engineering, was deactivated, left it
    // when deleted.
    assert_eq!(scim_events[0]["data"]["attributes"]["userName"], "alice");
    assert_eq!(scim_events[3]["data"], json!({"member": alice_id}));
    assert_eq!(
        scim_events[4]["data"]["changed"]["active"],
        json!({"before": true, "after": false})
    );
    assert_eq!(
        scim_events[6]["data"],
        json!({"member": alice_id, "reason": "member_deleted"})
    );
    assert_eq!(scim_events[6]["resource_id"], group_id.as_str());

    // Filters: by type prefix, several types, and a user's audit log.
    let users = all_events(&api, "type=user.*", 100).await;
    assert!(types(&users).iter().all(|t| t.starts_with("user.")));
    assert_eq!(users.len(), 5);
    let members = all_events(&api, "type=group.member_added&type=group.member_removed", 100).await;
    assert_eq!(types(&members), ["group.member_added", "group.member_removed"]);
    let audit = all_events(&api, &format!("resource_id={alice_id}"), 100).await;
    assert_eq!(
        types(&audit),
        [
            "user.created",
            "group.member_added",
            "user.deactivated",
            "group.member_removed",
            "user.deleted"
        ]
    );

    // Polling from the last cursor returns only what happened since.
    let last = api.get("events?limit=1000").await.expect(200);
    assert_eq!(last.body["has_more"], false);
    let cursor = last.body["next_cursor"].as_str().unwrap().to_string();
    let empty = api.get(&format!("events?after={cursor}")).await.expect(200);
    assert!(empty.data().is_empty());
    assert_eq!(empty.body["next_cursor"], cursor.as_str());
    client.user("carol").await;
    let since = api.get(&format!("events?after={cursor}")).await.expect(200).data();
    assert_eq!(types(&since), ["user.created"]);
    assert_eq!(since[0]["data"]["attributes"]["userName"], "carol");
    // An event's own cursor resumes after it.
    let from_event = api
        .get(&format!("events?after={}", all[7]["cursor"].as_str().unwrap()))
        .await
        .expect(200)
        .data();
    assert_eq!(from_event[0]["id"], all[8]["id"]);
}

async fn rotation_tells_the_next_token_apart() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let rotated = api
        .call(
            Method::POST,
            &format!("connections/{}/token-rotation", conn.id),
            None,
            None,
        )
        .await
        .expect(200)
        .body;
    let next_token = rotated["token"].as_str().unwrap().to_string();
    let next_prefix = rotated["connection"]["next_token_prefix"].as_str().unwrap().to_string();
    let current_prefix = rotated["connection"]["token_prefix"].as_str().unwrap().to_string();
    let with_next = srv.client_with_token(&conn, Some(&next_token));
    let u1 = with_next.user("via-next").await;
    let u2 = srv.client().user("via-current").await;
    for (u, prefix) in [(&u1, &next_prefix), (&u2, &current_prefix)] {
        let ev = all_events(&api, &format!("resource_id={}", id(u)), 10).await;
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0]["actor"],
            json!({"type": "scim_token", "connection_id": conn.id, "token_prefix": prefix})
        );
    }
}

// --- request log -----------------------------------------------------------------------------------

async fn scim_errors_show_in_the_request_log() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let client = srv.client();
    // A SCIM error: a user without userName.
    let r = client
        .send_with(
            Method::POST,
            "/Users?attributes=userName",
            Some(&json!({"schemas": [USER_SCHEMA], "displayName": "No Name"})),
            &[
                ("User-Agent", "Okta SCIM Client 1.0.0"),
                ("X-Request-Id", "req-bad-user"),
            ],
        )
        .await;
    r.expect_error_status(400);
    let (scim_type, detail) = (r.body["scimType"].clone(), r.body["detail"].clone());
    // A success, and a request with a wrong token.
    client
        .send_with(Method::GET, "/Users", None, &[("X-Request-Id", "req-list")])
        .await;
    let wrong = srv.client_with_token(&conn, Some("rc_scim_wrong"));
    wrong
        .send_with(Method::GET, "/Users", None, &[("X-Request-Id", "req-wrong-token")])
        .await
        .expect_error_status(401);

    let e = logged(&api, &conn.id, "req-bad-user").await;
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], format!("/scim/v2/{}/Users?attributes=userName", conn.id));
    assert_eq!(e["status"], 400);
    assert_eq!(e["scim_type"], scim_type);
    assert_eq!(e["error_detail"], detail);
    assert!(detail.as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(e["user_agent"], "Okta SCIM Client 1.0.0");
    assert!(conn.token.starts_with(e["token_prefix"].as_str().unwrap()));
    assert!(e["latency_ms"].as_f64().is_some_and(|l| l >= 0.0));
    assert!(e["at"].as_str().is_some_and(|t| t.contains('T')));
    // Debug logging is off: no bodies.
    assert_eq!(
        (e["request_body"].clone(), e["response_body"].clone()),
        (Value::Null, Value::Null)
    );

    let ok = logged(&api, &conn.id, "req-list").await;
    assert_eq!(
        (ok["status"].clone(), ok["scim_type"].clone()),
        (json!(200), Value::Null)
    );
    let refused = logged(&api, &conn.id, "req-wrong-token").await;
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["token_prefix"], Value::Null);
    assert!(refused["error_detail"].as_str().unwrap().contains("not valid"));
    // The log never holds the token itself.
    let text = api.get(&format!("connections/{}/requests", conn.id)).await.text;
    assert!(!text.contains(&conn.token) && !text.contains("rc_scim_wrong"));

    // Newest first, paged with cursors.
    let log = request_log(&api, &conn.id).await;
    let ids: Vec<&str> = log.iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["req-wrong-token", "req-list", "req-bad-user"]);
    let first = api
        .get(&format!("connections/{}/requests?limit=2", conn.id))
        .await
        .expect(200);
    assert_eq!(first.data().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = api
        .get(&format!("connections/{}/requests?limit=2&cursor={cursor}", conn.id))
        .await
        .expect(200);
    assert_eq!(rest.data()[0]["request_id"], "req-bad-user");
    assert_eq!(rest.body["next_cursor"], Value::Null);
}

/// A token pasted without "Bearer ", and one given as "Bearer Bearer <token>": each 401 in the
/// request log says what was wrong and how to fix it, without keeping the token; a success has no
/// explanation, and the OpenAPI document describes the field.
async fn refused_requests_are_explained_in_plain_words() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let anonymous = srv.client_with_token(&conn, None);
    anonymous
        .send_with(
            Method::GET,
            "/Users",
            None,
            &[
                ("Authorization", conn.token.as_str()),
                ("User-Agent", "Azure AD SCIM Client"),
                ("X-Request-Id", "req-no-bearer"),
            ],
        )
        .await
        .expect_error_status(401);
    let doubled = format!("Bearer Bearer {}", conn.token);
    anonymous
        .send_with(
            Method::GET,
            "/Users",
            None,
            &[("Authorization", doubled.as_str()), ("X-Request-Id", "req-doubled")],
        )
        .await
        .expect_error_status(401);
    srv.client()
        .send_with(Method::GET, "/Users", None, &[("X-Request-Id", "req-fine")])
        .await
        .expect(200);

    let e = logged(&api, &conn.id, "req-no-bearer").await;
    assert_eq!(
        (e["status"].clone(), e["auth_scheme"].clone()),
        (json!(401), json!("bare"))
    );
    let x = &e["explanation"];
    assert_eq!(x["kind"], "bearer_missing", "{e}");
    assert!(
        x["summary"].as_str().unwrap().contains("without the word \"Bearer\""),
        "{x}"
    );
    assert!(x["fix"].as_str().unwrap().contains("Bearer "), "{x}");

    let e = logged(&api, &conn.id, "req-doubled").await;
    assert_eq!(e["auth_scheme"], "bearer_doubled");
    assert_eq!(e["explanation"]["kind"], "bearer_doubled", "{e}");
    assert!(
        e["explanation"]["fix"]
            .as_str()
            .unwrap()
            .contains("without \"Bearer \"")
    );

    let ok = logged(&api, &conn.id, "req-fine").await;
    assert_eq!(
        (ok["auth_scheme"].clone(), ok["explanation"].clone()),
        (json!("bearer"), Value::Null)
    );
    // The token is in no entry.
    let text = api.get(&format!("connections/{}/requests", conn.id)).await.text;
    assert!(!text.contains(&conn.token));

    let doc = api.get("openapi.json").await.expect(200).body;
    let schemas = &doc["components"]["schemas"];
    let props = &schemas["RequestView"]["properties"];
    assert!(
        props["explanation"].is_object() && props["auth_scheme"].is_object(),
        "{props}"
    );
    let view = &schemas["ExplanationView"];
    assert_eq!(view["required"], json!(["kind", "summary", "fix"]), "{view}");
}

async fn secret_values_in_filters_and_paths_are_redacted() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let client = srv.client();
    let secret = "hunter2-s3cret";
    let user_id = id(&client.user("bjensen").await);

    // A filter comparing the password: answered, logged without the value.
    client
        .send_with(
            Method::GET,
            &format!(
                "/Users?{}",
                filter(&format!("userName eq \"bjensen\" or password eq \"{secret}\""))
            ),
            None,
            &[("X-Request-Id", "req-secret-filter")],
        )
        .await
        .expect(200);
    // An invalid filter that quotes the password: the error detail does not hold it either.
    let bad = client
        .send_with(
            Method::GET,
            &format!("/Users?{}", filter(&format!("password eq \"{secret}\" and"))),
            None,
            &[("X-Request-Id", "req-secret-bad-filter")],
        )
        .await;
    let detail = bad.expect_error(400, Some("invalidFilter"));
    assert!(!detail.contains(secret), "{detail}");
    // A PATCH path with a value filter on the password: refused, the detail quotes the path
    // without the value.
    let patch = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": format!("password[value eq \"{secret}\"]")}
    ]});
    let r = client
        .send_with(
            Method::PATCH,
            &format!("/Users/{user_id}"),
            Some(&patch),
            &[("X-Request-Id", "req-secret-path")],
        )
        .await;
    let detail = r.expect_error(400, Some("invalidPath"));
    assert!(!detail.contains(secret) && detail.contains("[redacted]"), "{detail}");
    // A search body: the detail of its error.
    let r = client
        .send_with(
            Method::POST,
            "/.search",
            Some(&json!({"schemas": [SEARCH_REQUEST], "filter": format!("password eq \"{secret}\" or")})),
            &[("X-Request-Id", "req-secret-search")],
        )
        .await;
    assert!(!r.expect_error(400, Some("invalidFilter")).contains(secret));

    let e = logged(&api, &conn.id, "req-secret-filter").await;
    let path = e["path"].as_str().unwrap();
    assert!(!path.contains(secret) && path.contains("redacted"), "{path}");
    assert!(
        path.contains("bjensen"),
        "only the password's value is redacted: {path}"
    );
    for request in ["req-secret-bad-filter", "req-secret-path", "req-secret-search"] {
        let e = logged(&api, &conn.id, request).await;
        assert_eq!(e["status"], 400, "{e}");
        let detail = e["error_detail"].as_str().unwrap();
        assert!(!detail.contains(secret), "{request}: {detail}");
    }

    // With debug logging, the bodies keep the paths and filters, without the value.
    api.call(
        Method::PATCH,
        &format!("connections/{}", conn.id),
        Some(&json!({"debug_logging": true})),
        None,
    )
    .await
    .expect(200);
    client
        .send_with(
            Method::PATCH,
            &format!("/Users/{user_id}"),
            Some(&patch),
            &[("X-Request-Id", "req-secret-debug")],
        )
        .await
        .expect_error(400, Some("invalidPath"));
    let e = logged(&api, &conn.id, "req-secret-debug").await;
    assert_eq!(
        e["request_body"]["Operations"][0]["path"],
        "password[value eq \"[redacted]\"]"
    );
    let text = api.get(&format!("connections/{}/requests", conn.id)).await.text;
    assert!(!text.contains(secret), "a password reached the request log: {text}");
}

async fn debug_logging_keeps_bodies_with_the_password_redacted() {
    let (srv, api) = start().await;
    let conn = srv.conn().clone();
    let client = srv.client();
    let on = api
        .call(
            Method::PATCH,
            &format!("connections/{}", conn.id),
            Some(&json!({"debug_logging": true})),
            None,
        )
        .await
        .expect(200);
    assert_eq!(on.body["debug_logging"], true);
    let password = "t1meMach1ne-s3cret";
    let created = client
        .send_with(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER_SCHEMA], "userName": "bjensen", "password": password})),
            &[("X-Request-Id", "req-debug-create")],
        )
        .await
        .expect(201);
    let user_id = id(&created.body);
    client
        .send_with(
            Method::PATCH,
            &format!("/Users/{user_id}"),
            Some(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "password", "value": password}]})),
            &[("X-Request-Id", "req-debug-patch")],
        )
        .await
        .expect(200);
    let e = logged(&api, &conn.id, "req-debug-create").await;
    assert_eq!(e["request_body"]["userName"], "bjensen");
    assert_eq!(e["request_body"]["password"], "[redacted]");
    assert_eq!(e["response_body"]["id"], user_id.as_str());
    let p = logged(&api, &conn.id, "req-debug-patch").await;
    assert_eq!(p["request_body"]["Operations"][0]["value"], "[redacted]");
    assert_eq!(p["request_body"]["Operations"][0]["path"], "password");
    let text = api.get(&format!("connections/{}/requests", conn.id)).await.text;
    assert!(!text.contains(password), "the password reached the request log");

    // Switching it on is a recorded change; switching it off stops keeping bodies.
    let ev = all_events(&api, "type=connection.updated", 10).await;
    assert_eq!(
        ev[0]["data"],
        json!({"changed": {"debug_logging": {"before": false, "after": true}}})
    );
    api.call(
        Method::PATCH,
        &format!("connections/{}", conn.id),
        Some(&json!({"debug_logging": false})),
        None,
    )
    .await
    .expect(200);
    client
        .send_with(
            Method::GET,
            &format!("/Users/{user_id}"),
            None,
            &[("X-Request-Id", "req-after")],
        )
        .await
        .expect(200);
    let after = logged(&api, &conn.id, "req-after").await;
    assert_eq!(after["response_body"], Value::Null);
    // A wrong type for the setting changes nothing.
    api.call(
        Method::PATCH,
        &format!("connections/{}", conn.id),
        Some(&json!({"debug_logging": "yes"})),
        None,
    )
    .await
    .problem(422);
    let c = api.get(&format!("connections/{}", conn.id)).await.expect(200);
    assert_eq!(c.body["debug_logging"], false);
}

async fn the_request_log_keeps_the_newest_entries() {
    let (srv, api) = start_with(Setup {
        node: NodeSettings {
            activity: ActivitySettings {
                request_log: RequestLogSettings {
                    keep_per_connection: 3,
                    buffer: 100,
                },
                ..ActivitySettings::default()
            },
            ..NodeSettings::default()
        },
        ..Setup::default()
    })
    .await;
    let conn = srv.conn().clone();
    let client = srv.client();
    for i in 0..6 {
        client
            .send_with(Method::GET, "/Users", None, &[("X-Request-Id", &format!("req-{i}"))])
            .await
            .expect(200);
    }
    logged(&api, &conn.id, "req-5").await;
    let ids: Vec<String> = request_log(&api, &conn.id)
        .await
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["req-5", "req-4", "req-3"]);
}

async fn retention_deletes_expired_events() {
    let (srv, api) = start_with(Setup {
        connections: vec![("acme".into(), IdpKind::Okta)],
        node: NodeSettings {
            activity: ActivitySettings {
                event_retention: Some(Duration::from_millis(1)),
                retention_interval: Duration::from_millis(20),
                ..ActivitySettings::default()
            },
            ..NodeSettings::default()
        },
        ..Setup::default()
    })
    .await;
    // The creation was acknowledged, so its event was committed; retention then deletes it.
    let u = srv.client().user("short-lived").await;
    eventually("retention to delete the user's events", || async {
        let r = api.get(&format!("events?resource_id={}", id(&u))).await.expect(200);
        r.data().is_empty().then_some(())
    })
    .await;
}
