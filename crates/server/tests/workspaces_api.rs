//! Workspaces over HTTP (issue #19): an identity provider pushes users and groups over SCIM; the
//! management API defines workspaces, maps groups, previews, sets the default workspace and a
//! workspace for every group; the access check, the directory and the events feed follow. Every
//! test runs on SQLite and PostgreSQL.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::Admin;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
struct R {
    status: u16,
    text: String,
    body: Value,
}

impl R {
    #[track_caller]
    fn expect(self, status: u16) -> R {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.text
        );
        self
    }
    #[track_caller]
    fn problem(&self, status: u16) -> String {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.text
        );
        assert_eq!(self.body["status"], json!(status), "{}", self.text);
        self.body["detail"].as_str().unwrap_or_default().to_string()
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
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
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        R { status, text, body }
    }
    async fn get(&self, path: &str) -> R {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: &Value) -> R {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: &Value) -> R {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: &Value) -> R {
        self.call(Method::PATCH, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> R {
        self.call(Method::DELETE, path, None).await
    }
}

async fn start() -> (TestServer, Api) {
    let srv = TestServer::start().await;
    let key = Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_api_key(&rollcall_store::WriteContext::cli(), "tests")
        .await
        .expect("API key")
        .secret;
    let api = Api {
        http: reqwest::Client::builder().no_proxy().build().expect("client"),
        base: srv.base.clone(),
        key,
    };
    (srv, api)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// The access check for a user: (allowed, roles, workspaces).
async fn access(api: &Api, org: &str, user_id: &str) -> (bool, Vec<String>, Vec<String>) {
    let b = api
        .get(&format!("organizations/{org}/access?user_id={user_id}"))
        .await
        .expect(200)
        .body;
    (
        b["allowed"].as_bool().unwrap(),
        list(&b["roles"]),
        list(&b["workspaces"]),
    )
}

async fn workspaces_of(api: &Api, org: &str, user_id: &str) -> Vec<String> {
    access(api, org, user_id).await.2
}

/// `after=<cursor>` for the Events API, or nothing (from the oldest).
fn after(cursor: &Option<String>) -> String {
    cursor.as_ref().map(|c| format!("&after={c}")).unwrap_or_default()
}

/// The events of `types` from the Events API (what the application reads) after `cursor`: (user
/// id, data); and the cursor of the end of the log.
async fn events_of(api: &Api, types: &str, cursor: &Option<String>) -> (Vec<(String, Value)>, Option<String>) {
    let b = api
        .get(&format!("events?type={types}&limit=1000{}", after(cursor)))
        .await
        .expect(200)
        .body;
    let out = b["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| {
            (
                e["resource_id"].as_str().unwrap_or_default().to_string(),
                e["data"].clone(),
            )
        })
        .collect();
    (out, end(api).await)
}

async fn workspace_events(api: &Api, cursor: &Option<String>) -> (Vec<(String, Value)>, Option<String>) {
    events_of(api, "user.workspaces_changed", cursor).await
}

/// The cursor of the end of the event log.
async fn end(api: &Api) -> Option<String> {
    let mut cursor = None;
    loop {
        let b = api
            .get(&format!("events?limit=1000{}", after(&cursor)))
            .await
            .expect(200)
            .body;
        cursor = b["next_cursor"].as_str().map(String::from);
        if b["has_more"] != json!(true) {
            return cursor;
        }
    }
}

/// A SCIM write answered 200 (with the resource) or 204.
trait Success {
    fn expect_success(self);
}

impl Success for Resp {
    #[track_caller]
    fn expect_success(self) {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            self.text
        );
    }
}

fn remove_member(id: &str) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]})
}

async fn an_idp_pushes_groups_and_workspaces_follow() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let conn = srv.conn().id.clone();
    let c = srv.client();

    // Workspaces: defined, refused clearly.
    let sales = api
        .post(
            &format!("organizations/{org}/workspaces"),
            &json!({"key": "sales", "name": "Sales"}),
        )
        .await
        .expect(201);
    assert!(sales.text.contains("\"group\":null"), "{}", sales.text);
    api.post(&format!("organizations/{org}/workspaces"), &json!({"key": "everyone"}))
        .await
        .expect(201);
    let d = api
        .post(&format!("organizations/{org}/workspaces"), &json!({"key": "SALES"}))
        .await
        .problem(409);
    assert!(d.contains("already exists"), "{d}");
    api.post(
        &format!("organizations/{org}/workspaces"),
        &json!({"key": "x", "colour": "red"}),
    )
    .await
    .problem(422);
    api.get(&format!("organizations/{org}/workspaces/nope"))
        .await
        .problem(404);
    let by_key = api
        .get(&format!("organizations/{org}/workspaces/Sales"))
        .await
        .expect(200)
        .body;
    assert_eq!(by_key["id"], sales.body["id"]);

    // The identity provider pushes three users and a group.
    let ada = id(&c.user("ada@example.com").await);
    let bob = id(&c.user("bob@example.com").await);
    let cy = id(&c.user("cy@example.com").await);
    let group = c
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "Sales", "externalId": "00g-sales",
                    "members": [{"value": ada}, {"value": bob}]}),
        )
        .await
        .expect(201)
        .body;
    let group_id = id(&group);
    assert!(workspaces_of(&api, &org, &ada).await.is_empty());

    // A mapping is previewed (nothing written), then made.
    let seq = end(&api).await;
    let body = json!({"workspace": "sales", "match": {"group_name": "sales"}});
    let preview = api
        .post(&format!("connections/{conn}/workspace-mappings/preview"), &body)
        .await
        .expect(200)
        .body;
    assert_eq!(preview["summary"], "2 users gain Sales");
    assert_eq!(preview["users_considered"], 3);
    assert_eq!(preview["changes"][0]["workspace_key"], "sales");
    assert_eq!(preview["changes"][0]["gained_sample"][0]["id"], ada.as_str());
    assert_eq!(end(&api).await, seq, "a preview writes nothing");
    let mapping = api
        .post(&format!("connections/{conn}/workspace-mappings"), &body)
        .await
        .expect(201)
        .body;
    assert_eq!(mapping["workspace_key"], "sales");
    assert_eq!(mapping["match"], json!({"group_name": "sales"}));
    api.post(&format!("connections/{conn}/workspace-mappings"), &body)
        .await
        .problem(409);
    api.post(
        &format!("connections/{conn}/workspace-mappings"),
        &json!({"workspace": "sales", "match": {"app_role": "Admin"}}),
    )
    .await
    .problem(422);
    api.post(
        &format!("connections/{conn}/workspace-mappings"),
        &json!({"workspace": "sales", "match": {"group_id": "a", "group_name": "b"}}),
    )
    .await
    .problem(422);
    api.post(
        &format!("connections/{conn}/workspace-mappings"),
        &json!({"workspace": "nope", "match": {"group_id": "a"}}),
    )
    .await
    .problem(422);
    let (evs, seq) = workspace_events(&api, &seq).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(
        evs[0].1,
        json!({"before": [], "after": ["sales"], "added": ["sales"], "removed": []})
    );
    let (allowed, roles, ws) = access(&api, &org, &ada).await;
    assert!(allowed);
    assert!(roles.is_empty());
    assert_eq!(ws, strings(&["sales"]));

    // The default workspace.
    let d = api
        .put(
            &format!("organizations/{org}/workspace-settings"),
            &json!({"default_workspace": "everyone"}),
        )
        .await
        .problem(422);
    assert!(d.contains("auto_create"), "a PUT gives both fields: {d}");
    let settings = api
        .put(
            &format!("organizations/{org}/workspace-settings"),
            &json!({"default_workspace": "Everyone", "auto_create": false}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(settings, json!({"default_workspace": "everyone", "auto_create": false}));
    assert_eq!(
        api.get(&format!("organizations/{org}/workspace-settings"))
            .await
            .expect(200)
            .body,
        settings
    );
    assert_eq!(workspaces_of(&api, &org, &cy).await, strings(&["everyone"]));
    let (evs, seq) = workspace_events(&api, &seq).await;
    assert_eq!(evs.len(), 3);

    // The identity provider takes bob out of the group: he leaves the workspace, with an event.
    c.patch(&format!("/Groups/{group_id}"), &remove_member(&bob))
        .await
        .expect_success();
    assert_eq!(workspaces_of(&api, &org, &bob).await, strings(&["everyone"]));
    let (evs, seq) = workspace_events(&api, &seq).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, bob);
    assert_eq!(evs[0].1["removed"], json!(["sales"]));

    // The directory filters by workspace, and lists each user's workspaces.
    let page = api
        .get(&format!("organizations/{org}/users?workspace=SALES"))
        .await
        .expect(200)
        .body;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], ada.as_str());
    assert_eq!(data[0]["workspaces"], json!(["everyone", "sales"]));

    // Deactivated: not allowed, and in no workspace.
    c.patch(
        &format!("/Users/{ada}"),
        &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await
    .expect(200);
    let (allowed, _, ws) = access(&api, &org, &ada).await;
    assert!(!allowed);
    assert!(ws.is_empty());
    let (evs, seq) = workspace_events(&api, &seq).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].1["after"], json!([]));

    // Removing the mapping: previewed, then done.
    let mapping_id = mapping["id"].as_str().unwrap();
    c.patch(
        &format!("/Users/{ada}"),
        &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": true}]}),
    )
    .await
    .expect(200);
    let removal = api
        .call(
            Method::POST,
            &format!("connections/{conn}/workspace-mappings/{mapping_id}/preview-removal"),
            None,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(removal["summary"], "1 user loses Sales");
    api.delete(&format!("connections/{conn}/workspace-mappings/{mapping_id}"))
        .await
        .expect(204);
    api.delete(&format!("connections/{conn}/workspace-mappings/{mapping_id}"))
        .await
        .problem(404);
    assert_eq!(workspaces_of(&api, &org, &ada).await, strings(&["everyone"]));
    assert!(
        api.get(&format!("connections/{conn}/workspace-mappings"))
            .await
            .expect(200)
            .body["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Deleting the default workspace: everyone leaves it, and the setting is cleared.
    api.delete(&format!("organizations/{org}/workspaces/everyone"))
        .await
        .expect(204);
    let (evs, _) = workspace_events(&api, &seq).await;
    assert_eq!(
        evs.len(),
        1 + 1 + 3,
        "ada reactivated, ada out of sales with the mapping, then the three members out of everyone: {evs:?}"
    );
    assert!(evs[2..].iter().all(|(_, d)| d["removed"] == json!(["everyone"])));
    assert_eq!(
        api.get(&format!("organizations/{org}/workspace-settings"))
            .await
            .expect(200)
            .body,
        json!({"default_workspace": null, "auto_create": false})
    );
}

async fn a_workspace_for_every_pushed_group() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let c = srv.client();
    let ada = id(&c.user("ada@example.com").await);
    let early = id(&c.group("Early", &[&ada]).await);
    api.put(
        &format!("organizations/{org}/workspace-settings"),
        &json!({"default_workspace": null, "auto_create": true}),
    )
    .await
    .expect(200);
    // Groups pushed before the setting got one too.
    let early_key = format!("group:{early}");
    assert_eq!(workspaces_of(&api, &org, &ada).await, vec![early_key.clone()]);

    // A group pushed now gets a workspace named after it, its members in it.
    let seq = end(&api).await;
    let eng = id(&c.group("Engineering", &[&ada]).await);
    let key = format!("group:{eng}");
    let ws = api
        .get(&format!("organizations/{org}/workspaces/{key}"))
        .await
        .expect(200)
        .body;
    assert_eq!(ws["name"], "Engineering");
    assert_eq!(ws["group"]["group_id"], eng.as_str());
    assert_eq!(ws["group"]["connection_id"], srv.conn().id.as_str());
    assert!(workspaces_of(&api, &org, &ada).await.contains(&key));
    let (evs, seq) = workspace_events(&api, &seq).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].1["added"], json!([key]));

    // A group pushed without members gets one too (PostgreSQL's one-statement create steps aside).
    let empty = id(&c.group("Empty", &[]).await);
    let w = api
        .get(&format!("organizations/{org}/workspaces/group:{empty}"))
        .await
        .expect(200)
        .body;
    assert_eq!(w["name"], "Empty");

    // Renamed in the IdP: the workspace's name follows, its key stays.
    c.patch(
        &format!("/Groups/{eng}"),
        &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "R&D"}]}),
    )
    .await
    .expect_success();
    let ws = api
        .get(&format!("organizations/{org}/workspaces/{key}"))
        .await
        .expect(200)
        .body;
    assert_eq!(ws["name"], "R&D");

    // Deleted in the IdP: its members leave it, then it goes.
    c.delete(&format!("/Groups/{eng}")).await.expect(204);
    api.get(&format!("organizations/{org}/workspaces/{key}"))
        .await
        .problem(404);
    assert_eq!(workspaces_of(&api, &org, &ada).await, vec![early_key.clone()]);
    let (evs, _) = workspace_events(&api, &seq).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].1["removed"], json!([key]));
    let (deleted, _) = events_of(&api, "workspace.deleted", &seq).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].1["reason"], "group_deleted");

    // The settings are validated like the rest of the API.
    api.put(
        &format!("organizations/{org}/workspace-settings"),
        &json!({"default_workspace": "nope", "auto_create": true}),
    )
    .await
    .problem(422);
    api.patch(
        &format!("organizations/{org}/workspaces/{early_key}"),
        &json!({"name": "First"}),
    )
    .await
    .expect(200);
}

backend_tests!(
    an_idp_pushes_groups_and_workspaces_follow,
    a_workspace_for_every_pushed_group,
);
