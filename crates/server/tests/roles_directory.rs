//! Roles, group-to-role mappings, effective roles, protected users, attribute policy, the directory
//! API and the access check, driven over HTTP: SCIM changes on one side, the management API on the
//! other. Every test runs on SQLite and PostgreSQL.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::Admin;
use serde_json::{Value, json};
use std::sync::Arc;

/// A management API response, read completely.
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
    /// Asserts problem details with this status; returns the detail.
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

/// A management API client.
struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> R {
        let mut b = self.http.request(method, format!("{}/api/v1/{path}", self.base));
        if let Some(k) = &self.key {
            b = b.header("Authorization", format!("Bearer {k}"));
        }
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

async fn api_for(srv: &TestServer) -> Api {
    let key = Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_api_key(&rollcall_store::WriteContext::cli(), "tests")
        .await
        .expect("API key")
        .secret;
    Api {
        http: reqwest::Client::builder().no_proxy().build().expect("client"),
        base: srv.base.clone(),
        key: Some(key),
    }
}

async fn start() -> (TestServer, Api) {
    let srv = TestServer::start().await;
    let api = api_for(&srv).await;
    (srv, api)
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn new_role(api: &Api, org: &str, key: &str) -> Value {
    api.post(&format!("organizations/{org}/roles"), &json!({"key": key}))
        .await
        .expect(201)
        .body
}

/// The effective roles of a user as the access check reports them, and whether it may sign in.
async fn access(api: &Api, org: &str, query: &str) -> (bool, String, Vec<String>) {
    let b = api
        .get(&format!("organizations/{org}/access?{query}"))
        .await
        .expect(200)
        .body;
    let roles = b["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    (
        b["allowed"].as_bool().unwrap(),
        b["reason"].as_str().unwrap().to_string(),
        roles,
    )
}

async fn roles_of(api: &Api, org: &str, user_id: &str) -> Vec<String> {
    access(api, org, &format!("user_id={user_id}")).await.2
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn role_events(srv: &TestServer, user_id: &str) -> Vec<Value> {
    srv.store
        .events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "user.roles_changed" && e.resource_id.as_deref() == Some(user_id))
        .map(|e| e.data)
        .collect()
}

async fn roles_are_managed_with_clear_errors() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let created = new_role(&api, &org, "admin").await;
    assert_eq!(created["key"], "admin");
    assert_eq!(created["name"], "admin", "the name defaults to the key");
    let d = api
        .post(&format!("organizations/{org}/roles"), &json!({"key": "ADMIN"}))
        .await
        .problem(409);
    assert!(d.contains("already exists"), "{d}");
    api.post(&format!("organizations/{org}/roles"), &json!({"key": "  "}))
        .await
        .problem(422);
    api.post(
        &format!("organizations/{org}/roles"),
        &json!({"key": "x", "colour": "red"}),
    )
    .await
    .problem(422);
    api.post("organizations/nope/roles", &json!({"key": "x"}))
        .await
        .problem(404);
    // By key, ignoring case, or by id.
    let by_key = api
        .get(&format!("organizations/{org}/roles/Admin"))
        .await
        .expect(200)
        .body;
    assert_eq!(by_key["id"], created["id"]);
    let changed = api
        .patch(
            &format!("organizations/{org}/roles/admin"),
            &json!({"name": "Administrator", "description": "Everything"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(changed["name"], "Administrator");
    assert_eq!(changed["description"], "Everything");
    let cleared = api
        .patch(
            &format!("organizations/{org}/roles/admin"),
            &json!({"description": null}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(cleared["description"], Value::Null);
    let list = api.get(&format!("organizations/{org}/roles")).await.expect(200).body;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    api.delete(&format!("organizations/{org}/roles/admin"))
        .await
        .expect(204);
    api.get(&format!("organizations/{org}/roles/admin")).await.problem(404);
    // Authentication: no key, or a SCIM token, gets 401.
    let anonymous = Api {
        key: None,
        ..api_clone(&api)
    };
    anonymous.get(&format!("organizations/{org}/roles")).await.problem(401);
    let scim_token = Api {
        key: Some(srv.conn().token.clone()),
        ..api_clone(&api)
    };
    scim_token.get(&format!("organizations/{org}/roles")).await.problem(401);
}

fn api_clone(api: &Api) -> Api {
    Api {
        http: api.http.clone(),
        base: api.base.clone(),
        key: api.key.clone(),
    }
}

async fn groups_grant_roles_by_id_name_and_scim_convention() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let conn = srv.conn().id.clone();
    let c = srv.client();
    let ada = id(&c.user("ada@example.com").await);
    let bob = id(&c.user("bob@example.com").await);
    // The convention: a role keyed scim:<group name> needs no mapping.
    new_role(&api, &org, "scim:Engineering").await;
    new_role(&api, &org, "admin").await;
    new_role(&api, &org, "billing").await;
    let eng = c.group("engineering", &[&ada]).await;
    assert_eq!(roles_of(&api, &org, &ada).await, strings(&["scim:Engineering"]));
    assert!(roles_of(&api, &org, &bob).await.is_empty());

    // By name (ignoring case) and by the IdP's group id (externalId).
    api.post(
        &format!("connections/{conn}/role-mappings"),
        &json!({"role": "billing", "match": {"group_name": "FINANCE"}}),
    )
    .await
    .expect(201);
    let admins = c
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "Admins", "externalId": "00g-okta-1", "members": [{"value": bob}]}),
        )
        .await
        .expect(201)
        .body;
    assert!(roles_of(&api, &org, &bob).await.is_empty(), "no mapping yet");
    let mapping = api
        .post(
            &format!("connections/{conn}/role-mappings"),
            &json!({"role": "admin", "match": {"group_id": "00g-okta-1"}}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(mapping["role_key"], "admin");
    assert_eq!(
        roles_of(&api, &org, &bob).await,
        strings(&["admin"]),
        "a new mapping applies at once"
    );
    c.group("Finance", &[&bob]).await;
    assert_eq!(roles_of(&api, &org, &bob).await, strings(&["admin", "billing"]));

    // Membership changes: remove and add.
    c.patch(
        &format!("/Groups/{}", id(&admins)),
        &patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}])),
    )
    .await
    .expect_error_status_ok();
    assert_eq!(roles_of(&api, &org, &bob).await, strings(&["billing"]));
    c.patch(
        &format!("/Groups/{}", id(&eng)),
        &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": bob}]}])),
    )
    .await
    .expect_error_status_ok();
    assert_eq!(
        roles_of(&api, &org, &bob).await,
        strings(&["billing", "scim:Engineering"])
    );

    // A rename takes the convention's role away; a group delete takes what it granted.
    c.patch(
        &format!("/Groups/{}", id(&eng)),
        &patch_op(json!([{"op": "replace", "path": "displayName", "value": "R&D"}])),
    )
    .await
    .expect_error_status_ok();
    assert!(roles_of(&api, &org, &ada).await.is_empty());
    let finance = c.fetch(&filter_path("/Groups", "displayName eq \"Finance\"")).await["Resources"][0].clone();
    c.delete(&format!("/Groups/{}", id(&finance))).await.expect(204);
    assert!(roles_of(&api, &org, &bob).await.is_empty());

    // Deleting the mapping or the role takes them away too; every change was an event.
    c.patch(
        &format!("/Groups/{}", id(&admins)),
        &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": ada}]}])),
    )
    .await
    .expect_error_status_ok();
    assert_eq!(roles_of(&api, &org, &ada).await, strings(&["admin"]));
    api.delete(&format!(
        "connections/{conn}/role-mappings/{}",
        mapping["id"].as_str().unwrap()
    ))
    .await
    .expect(204);
    assert!(roles_of(&api, &org, &ada).await.is_empty());
    let events = role_events(&srv, &ada).await;
    assert_eq!(events.first().unwrap()["added"], json!(["scim:Engineering"]));
    assert_eq!(events.last().unwrap()["removed"], json!(["admin"]));
    assert_eq!(events.last().unwrap()["after"], json!([]));
}

async fn entra_app_roles_and_default_roles() {
    let srv = TestServer::start_for(rollcall_store::IdpKind::Entra).await;
    let api = api_for(&srv).await;
    let org = srv.conn().org_id.clone();
    let conn = srv.conn().id.clone();
    new_role(&api, &org, "member").await;
    new_role(&api, &org, "approver").await;
    api.put(
        &format!("connections/{conn}/default-roles"),
        &json!({"roles": ["member"]}),
    )
    .await
    .expect(200);
    api.post(
        &format!("connections/{conn}/role-mappings"),
        &json!({"role": "approver", "match": {"app_role": "Expense.Approver"}}),
    )
    .await
    .expect(201);
    let c = srv.client();
    // What Entra sends: app role assignments in `roles`, primary as the string "True".
    let user = c
        .create_user(&json!({
            "schemas": [USER_SCHEMA], "userName": "carol@contoso.example", "active": true,
            "roles": [{"primary": "True", "type": "WindowsAzureActiveDirectoryRole", "value": "Expense.Approver"}],
        }))
        .await;
    let carol = id(&user);
    assert_eq!(roles_of(&api, &org, &carol).await, strings(&["approver", "member"]));
    c.patch(
        &format!("/Users/{carol}"),
        &patch_op(
            json!([{"op": "Replace", "path": "roles", "value": [{"primary": "True", "value": "Expense.Viewer"}]}]),
        ),
    )
    .await
    .expect(200);
    assert_eq!(roles_of(&api, &org, &carol).await, strings(&["member"]));

    // Deactivation removes every role; reactivation restores them (Entra: PATCH active "False").
    c.patch(
        &format!("/Users/{carol}"),
        &patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])),
    )
    .await
    .expect(200);
    let (allowed, reason, roles) = access(&api, &org, "email=CAROL@contoso.example").await;
    assert!(!allowed);
    assert_eq!(
        reason, "unknown_user",
        "no e-mail attribute was sent: userName is not an e-mail lookup"
    );
    let (allowed, reason, roles2) = access(&api, &org, "user_name=CAROL@contoso.example").await;
    assert!(!allowed);
    assert_eq!(reason, "deactivated");
    assert!(roles.is_empty() && roles2.is_empty());
    c.patch(
        &format!("/Users/{carol}"),
        &patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}])),
    )
    .await
    .expect(200);
    let (allowed, reason, roles) = access(&api, &org, &format!("user_id={carol}")).await;
    assert!(allowed);
    assert_eq!(reason, "active");
    assert_eq!(roles, strings(&["member"]));
    // Default roles replaced: everyone follows.
    api.put(&format!("connections/{conn}/default-roles"), &json!({"roles": []}))
        .await
        .expect(200);
    assert!(roles_of(&api, &org, &carol).await.is_empty());
    api.put(
        &format!("connections/{conn}/default-roles"),
        &json!({"roles": ["nope"]}),
    )
    .await
    .problem(422);
    // A deleted user may not sign in.
    c.delete(&format!("/Users/{carol}")).await.expect(204);
    let (allowed, reason, _) = access(&api, &org, &format!("user_id={carol}")).await;
    assert!(!allowed);
    assert_eq!(reason, "deleted");
    api.get(&format!("organizations/{org}/access")).await.problem(400);
    api.get(&format!("organizations/{org}/access?email=a&user_name=b"))
        .await
        .problem(400);
    let (allowed, reason, _) = access(&api, &org, "email=nobody@example.com").await;
    assert!(!allowed);
    assert_eq!(reason, "unknown_user");
}

async fn protected_users_cannot_be_deprovisioned_by_scim() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let c = srv.client();
    let root = c
        .create_user(&json!({
            "schemas": [USER_SCHEMA], "userName": "root", "active": true,
            "emails": [{"value": "Root@Acme.example", "type": "work", "primary": true}],
        }))
        .await;
    let root_id = id(&root);
    api.post(
        &format!("organizations/{org}/protected-users"),
        &json!({"email": "root@acme.example"}),
    )
    .await
    .expect(201);
    api.post(
        &format!("organizations/{org}/protected-users"),
        &json!({"email": "ROOT@acme.example"}),
    )
    .await
    .problem(409);
    let r = c
        .patch(
            &format!("/Users/{root_id}"),
            &patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await;
    let detail = r.expect_error(403, None);
    assert!(detail.contains("protected"), "{detail}");
    let mut deactivated = root.clone();
    deactivated["active"] = json!(false);
    c.put(&format!("/Users/{root_id}"), &deactivated)
        .await
        .expect_error(403, None);
    c.delete(&format!("/Users/{root_id}")).await.expect_error(403, None);
    assert_eq!(
        c.fetch(&format!("/Users/{root_id}")).await["active"],
        json!(true),
        "nothing changed"
    );
    let refused: Vec<_> = srv
        .store
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "user.protected_change_refused")
        .collect();
    assert_eq!(refused.len(), 3, "each refusal is recorded");
    assert_eq!(refused[2].data["action"], "delete");
    // Other updates still work; once unprotected, deactivation does too.
    c.patch(
        &format!("/Users/{root_id}"),
        &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Root"}])),
    )
    .await
    .expect(200);
    let list = api
        .get(&format!("organizations/{org}/protected-users"))
        .await
        .expect(200)
        .body;
    assert_eq!(list["data"][0]["email"], "root@acme.example");
    api.delete(&format!("organizations/{org}/protected-users/root@acme.example"))
        .await
        .expect(204);
    api.delete(&format!("organizations/{org}/protected-users/root@acme.example"))
        .await
        .problem(404);
    c.patch(
        &format!("/Users/{root_id}"),
        &patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await
    .expect(200);
}

async fn attribute_policy_requires_filters_and_maps_attributes() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let conn = srv.conn().id.clone();
    let d = api
        .put(
            &format!("connections/{conn}/policy"),
            &json!({"required_attributes": ["name.middle_name"], "synced_attributes": null, "profile_mapping": null, "on_delete": "retain"}),
        )
        .await
        .problem(422);
    assert!(d.contains("name.middle_name"), "{d}");
    let policy = api
        .put(
            &format!("connections/{conn}/policy"),
            &json!({
                "required_attributes": ["emails", "name.givenName"],
                "synced_attributes": ["name.givenName", "name.familyName", "emails", ENTERPRISE.to_string() + ":department"],
                "profile_mapping": {"first": "name.givenName", "mail": "emails.value", "dept": ENTERPRISE.to_string() + ":department"},
                "on_delete": "retain",
            }),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(policy["on_delete"], "retain");
    assert_eq!(
        api.get(&format!("connections/{conn}/policy")).await.expect(200).body,
        policy
    );
    let c = srv.client();
    let detail = c
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "dan", "emails": [{"value": "dan@x.example"}]}),
        )
        .await
        .expect_error(400, Some("invalidValue"));
    assert!(detail.contains("name.givenName"), "{detail}");
    let user = c
        .create_user(&json!({
            "schemas": [USER_SCHEMA, ENTERPRISE], "userName": "dan", "title": "CFO",
            "name": {"givenName": "Dan", "familyName": "Brown", "middleName": "X"},
            "emails": [{"value": "dan@x.example", "primary": true}],
            ENTERPRISE: {"department": "Finance", "costCenter": "7"},
        }))
        .await;
    let dan = id(&user);
    assert!(user.get("title").is_none(), "unsynced attributes are dropped: {user}");
    assert!(user["name"].get("middleName").is_none(), "{user}");
    assert!(user[ENTERPRISE].get("costCenter").is_none(), "{user}");
    let entry = api
        .get(&format!("organizations/{org}/users/{dan}"))
        .await
        .expect(200)
        .body;
    assert_eq!(
        entry["profile"],
        json!({"dept": "Finance", "first": "Dan", "mail": "dan@x.example"})
    );
    assert_eq!(entry["user_name"], "dan");
    assert_eq!(entry["attributes"]["name"]["givenName"], "Dan");
    // A PATCH may not remove a required attribute.
    c.patch(
        &format!("/Users/{dan}"),
        &patch_op(json!([{"op": "remove", "path": "name.givenName"}])),
    )
    .await
    .expect_error(400, Some("invalidValue"));
    // Purge on delete: the directory forgets the user.
    let mut purge = policy.clone();
    purge["on_delete"] = json!("purge");
    api.put(&format!("connections/{conn}/policy"), &purge).await.expect(200);
    c.delete(&format!("/Users/{dan}")).await.expect(204);
    api.get(&format!("organizations/{org}/users/{dan}")).await.problem(404);
}

async fn policy_put_refuses_a_partial_body() {
    let (srv, api) = start().await;
    let path = format!("connections/{}/policy", srv.conn().id);
    let full = json!({
        "required_attributes": ["emails"],
        "synced_attributes": ["emails", "name.givenName"],
        "profile_mapping": {"mail": "emails.value"},
        "on_delete": "purge",
    });
    let policy = api.put(&path, &full).await.expect(200).body;
    assert_eq!(policy, full);

    // Each field left out is refused by name, and the policy stays as it was (a PUT replaces the
    // whole policy: leaving a field out must not reset it).
    for field in [
        "required_attributes",
        "synced_attributes",
        "profile_mapping",
        "on_delete",
    ] {
        let mut partial = full.clone();
        partial.as_object_mut().unwrap().remove(field);
        let d = api.put(&path, &partial).await.problem(422);
        assert!(d.contains(&format!("missing field `{field}`")), "{field}: {d}");
        assert_eq!(api.get(&path).await.expect(200).body, full, "{field}");
    }
    // Every field left out is named at once.
    let d = api
        .put(&path, &json!({"required_attributes": ["emails"]}))
        .await
        .problem(422);
    for field in ["synced_attributes", "profile_mapping", "on_delete"] {
        assert!(d.contains(&format!("missing field `{field}`")), "{field}: {d}");
    }
    assert!(!d.contains("missing field `required_attributes`"), "{d}");
    assert_eq!(api.get(&path).await.expect(200).body, full);

    // `null` is how to say "none" where a field allows it.
    let cleared = json!({
        "required_attributes": [],
        "synced_attributes": null,
        "profile_mapping": null,
        "on_delete": "retain",
    });
    assert_eq!(api.put(&path, &cleared).await.expect(200).body, cleared);
    assert_eq!(api.get(&path).await.expect(200).body, cleared);

    // The OpenAPI document says so.
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut required: Vec<&str> = doc["components"]["schemas"]["PolicyView"]["required"]
        .as_array()
        .expect("PolicyView lists its required fields")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(
        required,
        [
            "on_delete",
            "profile_mapping",
            "required_attributes",
            "synced_attributes"
        ]
    );
}

async fn access_answers_deleted_for_a_deleted_user_by_every_lookup() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let c = srv.client();
    let user = c
        .create_user(&json!({
            "schemas": [USER_SCHEMA],
            "userName": "erin",
            "externalId": "00u-erin",
            "emails": [{"value": "Erin@Example.com", "primary": true}, {"value": "e@alias.example.com"}],
        }))
        .await;
    let erin = id(&user);
    let lookups = [
        format!("user_id={erin}"),
        "email=erin@example.com".to_string(),
        "email=E@ALIAS.example.com".to_string(),
        "user_name=ERIN".to_string(),
        "external_id=00u-erin".to_string(),
    ];
    let check = |query: &str, b: &Value, allowed: bool, reason: &str, user: &str| {
        assert_eq!(b["allowed"], json!(allowed), "{query}: {b}");
        assert_eq!(b["reason"], json!(reason), "{query}: {b}");
        assert_eq!(b["user_id"], json!(user), "{query}: {b}");
        assert_eq!(b["connection_id"], json!(srv.conn().id), "{query}: {b}");
    };
    for q in &lookups {
        let b = api
            .get(&format!("organizations/{org}/access?{q}"))
            .await
            .expect(200)
            .body;
        check(q, &b, true, "active", &erin);
    }

    // Deleted: one answer, whichever way the user is looked up.
    c.delete(&format!("/Users/{erin}")).await.expect(204);
    for q in &lookups {
        let b = api
            .get(&format!("organizations/{org}/access?{q}"))
            .await
            .expect(200)
            .body;
        check(q, &b, false, "deleted", &erin);
        assert_eq!(b["roles"], json!([]), "{q}: {b}");
    }
    // The directory finds the deleted user by e-mail too, as by userName.
    for q in ["email=erin@example.com", "user_name=erin"] {
        let list = api
            .get(&format!("organizations/{org}/users?{q}&status=deleted"))
            .await
            .expect(200)
            .body;
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{q}: {list}");
        assert_eq!(list["data"][0]["id"], json!(erin), "{q}: {list}");
    }
    // SCIM no longer sees the user, by e-mail or otherwise.
    let found = c
        .get(&filter_path("/Users", "emails.value eq \"erin@example.com\""))
        .await
        .expect(200)
        .body;
    assert_eq!(found["totalResults"], json!(0), "{found}");

    // Provisioned again with the same e-mail address: the live user is the answer.
    let again = id(&c
        .create_user(&json!({
            "schemas": [USER_SCHEMA],
            "userName": "erin",
            "emails": [{"value": "erin@example.com"}],
        }))
        .await);
    for q in ["email=erin@example.com", "user_name=erin"] {
        let b = api
            .get(&format!("organizations/{org}/access?{q}"))
            .await
            .expect(200)
            .body;
        check(q, &b, true, "active", &again);
    }
    let b = api
        .get(&format!("organizations/{org}/access?user_id={erin}"))
        .await
        .expect(200)
        .body;
    check("user_id", &b, false, "deleted", &erin);
}

/// Users deleted before e-mail rows were kept had lost them; the migration puts them back from the
/// stored document.
async fn users_deleted_before_the_migration_get_their_emails_back() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let c = srv.client();
    let frank = id(&c
        .create_user(&json!({
            "schemas": [USER_SCHEMA],
            "userName": "frank",
            "emails": [{"value": "Frank@Example.com"}, {"value": "f@alias.example.com"}, {"type": "work"}],
        }))
        .await);
    let gina = id(&c
        .create_user(&json!({"schemas": [USER_SCHEMA], "userName": "gina"}))
        .await);
    c.delete(&format!("/Users/{frank}")).await.expect(204);
    c.delete(&format!("/Users/{gina}")).await.expect(204);
    let reason = |q: &'static str| {
        let api = &api;
        let org = &org;
        async move {
            api.get(&format!("organizations/{org}/access?{q}"))
                .await
                .expect(200)
                .body["reason"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(reason("email=frank@example.com").await, "deleted");
    // As a deletion before this version left it.
    srv.execute_sql("DELETE FROM resource_emails").await;
    assert_eq!(reason("email=frank@example.com").await, "unknown_user");

    let migration = match srv.backend {
        Backend::Sqlite => include_str!("../../store/migrations/sqlite/0006_deleted_user_emails.sql"),
        Backend::Postgres => include_str!("../../store/migrations/postgres/0005_deleted_user_emails.sql"),
    };
    srv.execute_sql(migration).await;
    assert_eq!(reason("email=frank@example.com").await, "deleted");
    assert_eq!(reason("email=F@ALIAS.example.com").await, "deleted");
    assert_eq!(reason("user_name=gina").await, "deleted");
    // Running it again is harmless.
    srv.execute_sql(migration).await;
    let list = api
        .get(&format!(
            "organizations/{org}/users?email=frank@example.com&status=deleted"
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

async fn directory_lists_filter_and_page() {
    let srv = TestServer::start_with(Setup {
        connections: vec![
            ("acme".into(), rollcall_store::IdpKind::Okta),
            ("acme".into(), rollcall_store::IdpKind::Entra),
            ("globex".into(), rollcall_store::IdpKind::Okta),
        ],
        ..Setup::default()
    })
    .await;
    let api = api_for(&srv).await;
    let org = srv.conns[0].org_id.clone();
    let okta = srv.client_for(&srv.conns[0]);
    let entra = srv.client_for(&srv.conns[1]);
    let globex = srv.client_for(&srv.conns[2]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = okta
            .create_user(&json!({
                "schemas": [USER_SCHEMA], "userName": format!("okta{i}@acme.example"), "externalId": format!("00u{i}"),
                "emails": [{"value": format!("okta{i}@acme.example"), "primary": true}], "active": true,
            }))
            .await;
        ids.push(id(&u));
    }
    let e = id(&entra.user("entra@acme.example").await);
    globex.user("stranger@globex.example").await;
    entra
        .patch(
            &format!("/Users/{e}"),
            &patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await
        .expect(200);
    okta.delete(&format!("/Users/{}", ids[2])).await.expect(204);
    let group = okta.group("Everyone", &[&ids[0], &ids[1]]).await;
    new_role(&api, &org, "scim:Everyone").await;

    let all = api.get(&format!("organizations/{org}/users")).await.expect(200).body;
    let listed: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![ids[0].as_str(), &ids[1], &ids[2], &e],
        "both connections, not the other organization"
    );
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(all["data"][2]["status"], "deleted");
    assert_eq!(all["data"][3]["status"], "deactivated");
    assert_eq!(all["data"][0]["roles"], json!(["scim:Everyone"]));
    assert!(all["data"][0].get("attributes").is_none());
    assert_eq!(all["data"][0]["profile"]["email"], "okta0@acme.example");

    // Cursor paging.
    let p1 = api
        .get(&format!("organizations/{org}/users?limit=3"))
        .await
        .expect(200)
        .body;
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_string();
    let p2 = api
        .get(&format!("organizations/{org}/users?limit=3&cursor={cursor}"))
        .await
        .expect(200)
        .body;
    assert_eq!(p2["data"][0]["id"], json!(e));
    assert_eq!(p2["next_cursor"], Value::Null);
    api.get(&format!("organizations/{org}/users?cursor=bogus"))
        .await
        .problem(400);
    api.get(&format!("organizations/{org}/users?limit=0"))
        .await
        .problem(400);
    api.get(&format!("organizations/{org}/users?status=gone"))
        .await
        .problem(400);

    // Filters.
    let one = |b: Value| -> Vec<String> {
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |s: &str| format!("organizations/{org}/users?{s}");
    assert_eq!(
        one(api.get(&q("status=active")).await.expect(200).body),
        vec![ids[0].clone(), ids[1].clone()]
    );
    assert_eq!(
        one(api.get(&q("status=deleted")).await.expect(200).body),
        vec![ids[2].clone()]
    );
    assert_eq!(
        one(api.get(&q("email=OKTA1@acme.example")).await.expect(200).body),
        vec![ids[1].clone()]
    );
    assert_eq!(
        one(api.get(&q("user_name=entra@ACME.example")).await.expect(200).body),
        vec![e.clone()]
    );
    assert_eq!(
        one(api.get(&q("external_id=00u0")).await.expect(200).body),
        vec![ids[0].clone()]
    );
    assert_eq!(one(api.get(&q("role=SCIM:everyone")).await.expect(200).body).len(), 2);
    assert_eq!(
        one(api.get(&q(&format!("group_id={}", id(&group)))).await.expect(200).body).len(),
        2
    );
    assert_eq!(
        one(api
            .get(&q(&format!("connection_id={}", srv.conns[1].id)))
            .await
            .expect(200)
            .body),
        vec![e.clone()]
    );
    assert!(one(api.get(&q("email=stranger@globex.example")).await.expect(200).body).is_empty());

    // One user, with its groups.
    let u = api
        .get(&format!("organizations/{org}/users/{}", ids[0]))
        .await
        .expect(200)
        .body;
    assert_eq!(u["groups"], json!([{"id": id(&group), "display_name": "Everyone"}]));
    assert_eq!(u["attributes"]["userName"], "okta0@acme.example");
    let other_org = srv.conns[2].org_id.clone();
    api.get(&format!("organizations/{other_org}/users/{}", ids[0]))
        .await
        .problem(404);

    // Groups and their members.
    let groups = api.get(&format!("organizations/{org}/groups")).await.expect(200).body;
    assert_eq!(groups["data"][0]["member_count"], 2);
    assert_eq!(groups["data"][0]["display_name"], "Everyone");
    let by_name = api
        .get(&format!("organizations/{org}/groups?display_name=everyone"))
        .await
        .expect(200)
        .body;
    assert_eq!(by_name["data"].as_array().unwrap().len(), 1);
    let gid = id(&group);
    api.get(&format!("organizations/{org}/groups/{gid}")).await.expect(200);
    api.get(&format!("organizations/{other_org}/groups/{gid}"))
        .await
        .problem(404);
    let m1 = api
        .get(&format!("organizations/{org}/groups/{gid}/members?limit=1"))
        .await
        .expect(200)
        .body;
    assert_eq!(m1["data"][0]["id"], json!(ids[0]));
    assert_eq!(m1["data"][0]["type"], "User");
    assert_eq!(m1["data"][0]["status"], "active");
    let next = m1["next_cursor"].as_str().unwrap();
    let m2 = api
        .get(&format!(
            "organizations/{org}/groups/{gid}/members?limit=1&cursor={next}"
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(m2["data"][0]["id"], json!(ids[1]));
    assert_eq!(m2["next_cursor"], Value::Null);
}

async fn api_keys_are_managed_through_the_api() {
    let (srv, api) = start().await;
    let created = api.post("api-keys", &json!({"name": "ci"})).await.expect(201).body;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("rc_key_"));
    let second = Api {
        key: Some(secret.clone()),
        ..api_clone(&api)
    };
    second.get("api-keys").await.expect(200);
    let list = api.get("api-keys").await.expect(200).body;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret), "secrets are shown once");
    let id = created["api_key"]["id"].as_str().unwrap();
    let revoked = api.delete(&format!("api-keys/{id}")).await.expect(200).body;
    assert!(revoked["revoked_at"].is_string());
    second.get("api-keys").await.problem(401);
    api.delete("api-keys/nope").await.problem(404);
    api.post("api-keys", &json!({"name": ""})).await.problem(422);
    // The new endpoints are documented.
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/organizations/{id}/roles",
        "/api/v1/connections/{id}/role-mappings",
        "/api/v1/connections/{id}/policy",
        "/api/v1/organizations/{id}/users",
        "/api/v1/organizations/{id}/access",
        "/api/v1/api-keys",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is not in the OpenAPI document"
        );
    }
}

fn filter_path(base: &str, f: &str) -> String {
    format!("{base}?filter={}", enc(f))
}

trait OkOrNoContent {
    fn expect_error_status_ok(self);
}

impl OkOrNoContent for Resp {
    /// A group PATCH answers 204 (or 200 when attributes are asked for).
    #[track_caller]
    fn expect_error_status_ok(self) {
        assert!(
            self.status.as_u16() == 204 || self.status.as_u16() == 200,
            "{}: {}",
            self.status,
            self.text
        );
    }
}

/// A policy cannot silently stop a role mapping: dropping `roles` from the synced attributes while
/// a mapping by app role reads them is refused (naming the mapping), and so is a mapping by app role
/// on a connection that drops them; a profile key reading an attribute that is not synced too.
async fn a_policy_cannot_silently_stop_a_mapping() {
    let srv = TestServer::start_for(rollcall_store::IdpKind::Entra).await;
    let api = api_for(&srv).await;
    let org = srv.conn().org_id.clone();
    let conn = srv.conn().id.clone();
    new_role(&api, &org, "approver").await;
    let mapping = api
        .post(
            &format!("connections/{conn}/role-mappings"),
            &json!({"role": "approver", "match": {"app_role": "Expense.Approver"}}),
        )
        .await
        .expect(201)
        .body;
    let path = format!("connections/{conn}/policy");
    let before = api.get(&path).await.expect(200).body;
    let policy = |synced: Value, profile: Value| json!({"required_attributes": [], "synced_attributes": synced, "profile_mapping": profile, "on_delete": "retain"});
    let d = api
        .put(&path, &policy(json!(["emails"]), Value::Null))
        .await
        .problem(422);
    assert!(
        d.contains("\"roles\"") && d.contains(mapping["id"].as_str().unwrap()) && d.contains("Expense.Approver"),
        "{d}"
    );
    assert_eq!(api.get(&path).await.expect(200).body, before, "unchanged");
    // With `roles` kept (or `roles.value`), the policy is taken.
    api.put(&path, &policy(json!(["emails", "roles"]), Value::Null))
        .await
        .expect(200);
    api.put(&path, &policy(json!(["emails", "roles.value"]), Value::Null))
        .await
        .expect(200);
    // A profile key must read a synced attribute.
    let d = api
        .put(&path, &policy(json!(["emails", "roles"]), json!({"job": "title"})))
        .await
        .problem(422);
    assert!(d.contains("profile_mapping.job") && d.contains("\"title\""), "{d}");
    // Once the mapping is gone, `roles` may be dropped; a new mapping by app role is then refused,
    // one by group is not.
    api.delete(&format!(
        "connections/{conn}/role-mappings/{}",
        mapping["id"].as_str().unwrap()
    ))
    .await
    .expect(204);
    api.put(&path, &policy(json!(["emails"]), Value::Null))
        .await
        .expect(200);
    let d = api
        .post(
            &format!("connections/{conn}/role-mappings"),
            &json!({"role": "approver", "match": {"app_role": "Expense.Approver"}}),
        )
        .await
        .problem(422);
    assert!(d.contains("\"roles\""), "{d}");
    api.post(
        &format!("connections/{conn}/role-mappings"),
        &json!({"role": "approver", "match": {"group_name": "Approvers"}}),
    )
    .await
    .expect(201);
}

/// The effect of a mapping or default-roles change is shown before it is made: counts per role,
/// the first users by name, one sentence; nothing changes until the change itself is sent, and
/// then exactly what the preview said changes.
async fn role_changes_are_previewed_before_they_are_made() {
    let (srv, api) = start().await;
    let org = srv.conn().org_id.clone();
    let conn = srv.conn().id.clone();
    let c = srv.client();
    api.post(
        &format!("organizations/{org}/roles"),
        &json!({"key": "admin", "name": "Administrator"}),
    )
    .await
    .expect(201);
    new_role(&api, &org, "viewer").await;
    let mut users = Vec::new();
    for name in ["ada", "bob", "cy", "dan"] {
        let u = c
            .create_user(&json!({
                "schemas": [USER_SCHEMA], "userName": name,
                "emails": [{"value": format!("{name}@acme.example"), "primary": true}],
            }))
            .await;
        users.push(id(&u));
    }
    c.group("Engineering", &[&users[0], &users[1], &users[2]]).await;
    api.put(
        &format!("connections/{conn}/default-roles"),
        &json!({"roles": ["viewer"]}),
    )
    .await
    .expect(200);
    let events = srv.store.events_after(0, 100_000).await.unwrap().len();

    // A mapping by group name: the three engineers would gain admin.
    let body = json!({"role": "admin", "match": {"group_name": "engineering"}});
    let p = api
        .post(&format!("connections/{conn}/role-mappings/preview"), &body)
        .await
        .expect(200)
        .body;
    assert_eq!(p["summary"], "3 users gain Administrator", "{p}");
    assert_eq!(p["users_considered"], 4);
    let change = &p["changes"][0];
    assert_eq!(p["changes"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            &change["role_key"],
            &change["role_name"],
            &change["gained"],
            &change["lost"]
        ),
        (&json!("admin"), &json!("Administrator"), &json!(3), &json!(0))
    );
    assert_eq!(
        change["gained_sample"],
        json!([
            {"id": users[0], "user_name": "ada", "email": "ada@acme.example"},
            {"id": users[1], "user_name": "bob", "email": "bob@acme.example"},
            {"id": users[2], "user_name": "cy", "email": "cy@acme.example"},
        ])
    );
    assert_eq!(change["lost_sample"], json!([]));
    // Nothing was written.
    assert_eq!(srv.store.events_after(0, 100_000).await.unwrap().len(), events);
    assert_eq!(roles_of(&api, &org, &users[0]).await, strings(&["viewer"]));
    assert!(
        api.get(&format!("connections/{conn}/role-mappings"))
            .await
            .expect(200)
            .body["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Made for real, it does what the preview said.
    let mapping = api
        .post(&format!("connections/{conn}/role-mappings"), &body)
        .await
        .expect(201)
        .body;
    for u in &users[..3] {
        assert_eq!(roles_of(&api, &org, u).await, strings(&["admin", "viewer"]));
    }
    assert_eq!(roles_of(&api, &org, &users[3]).await, strings(&["viewer"]));

    // The same mapping again is refused as its creation would be, and so are bad bodies.
    api.post(&format!("connections/{conn}/role-mappings/preview"), &body)
        .await
        .problem(409);
    let d = api
        .post(
            &format!("connections/{conn}/role-mappings/preview"),
            &json!({"role": "nope", "match": {"group_name": "x"}}),
        )
        .await
        .problem(422);
    assert!(d.contains("no role \"nope\""), "{d}");
    api.post(
        &format!("connections/{conn}/role-mappings/preview"),
        &json!({"role": "admin", "match": {"group_name": "x", "app_role": "y"}}),
    )
    .await
    .problem(422);
    api.post(
        &format!("connections/{conn}/role-mappings/preview"),
        &json!({"role": "admin", "match": {"group_name": "x"}, "confirm": true}),
    )
    .await
    .problem(422);
    api.post(
        "connections/nope/role-mappings/preview",
        &json!({"role": "admin", "match": {"group_name": "x"}}),
    )
    .await
    .problem(404);

    // Default roles: replacing viewer with admin gives dan admin and takes viewer from everyone.
    let p = api
        .post(
            &format!("connections/{conn}/default-roles/preview"),
            &json!({"roles": ["ADMIN"]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(p["summary"], "1 user gains Administrator, 4 users lose viewer", "{p}");
    assert_eq!(p["changes"][0]["gained_sample"][0]["user_name"], "dan");
    assert_eq!(p["changes"][1]["lost_sample"].as_array().unwrap().len(), 4);
    let same = api
        .post(
            &format!("connections/{conn}/default-roles/preview"),
            &json!({"roles": ["viewer"]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(same["summary"], "No user's roles change");
    assert_eq!(same["changes"], json!([]));
    api.post(
        &format!("connections/{conn}/default-roles/preview"),
        &json!({"roles": ["nope"]}),
    )
    .await
    .problem(422);
    assert_eq!(roles_of(&api, &org, &users[3]).await, strings(&["viewer"]));

    // Removing the mapping: the engineers would lose admin.
    let mapping_id = mapping["id"].as_str().unwrap();
    let p = api
        .call(
            Method::POST,
            &format!("connections/{conn}/role-mappings/{mapping_id}/preview-removal"),
            None,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(p["summary"], "3 users lose Administrator", "{p}");
    assert_eq!(roles_of(&api, &org, &users[0]).await, strings(&["admin", "viewer"]));
    api.call(
        Method::POST,
        &format!("connections/{conn}/role-mappings/nope/preview-removal"),
        None,
    )
    .await
    .problem(404);
    api.delete(&format!("connections/{conn}/role-mappings/{mapping_id}"))
        .await
        .expect(204);
    assert_eq!(roles_of(&api, &org, &users[0]).await, strings(&["viewer"]));

    // Previews need an API key like everything else.
    let anonymous = Api {
        key: None,
        ..api_clone(&api)
    };
    anonymous
        .post(&format!("connections/{conn}/role-mappings/preview"), &body)
        .await
        .problem(401);

    // Documented, with the request bodies of the changes they preview and the effect as answer.
    let doc = api.get("openapi.json").await.expect(200).body;
    for (path, request) in [
        ("role-mappings/preview", Some("CreateRoleMapping")),
        ("role-mappings/{mapping}/preview-removal", None),
        ("default-roles/preview", Some("SetDefaultRoles")),
    ] {
        let op = &doc["paths"][format!("/api/v1/connections/{{id}}/{path}")]["post"];
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/RoleEffectView",
            "{path}: {op}"
        );
        let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(
            body.as_str(),
            request.map(|r| format!("#/components/schemas/{r}")).as_deref(),
            "{path}"
        );
    }
    let effect = &doc["components"]["schemas"]["RoleEffectView"];
    assert_eq!(
        effect["required"],
        json!(["summary", "changes", "users_considered"]),
        "{effect}"
    );
}

backend_tests!(
    role_changes_are_previewed_before_they_are_made,
    roles_are_managed_with_clear_errors,
    groups_grant_roles_by_id_name_and_scim_convention,
    entra_app_roles_and_default_roles,
    a_policy_cannot_silently_stop_a_mapping,
    protected_users_cannot_be_deprovisioned_by_scim,
    attribute_policy_requires_filters_and_maps_attributes,
    policy_put_refuses_a_partial_body,
    directory_lists_filter_and_page,
    access_answers_deleted_for_a_deleted_user_by_every_lookup,
    users_deleted_before_the_migration_get_their_emails_back,
    api_keys_are_managed_through_the_api,
);
