//! Query parameters of the management API (`/api/v1`): an endpoint refuses one it does not take
//! (400 problem details naming it and listing those it takes) instead of ignoring it, on every
//! endpoint, on SQLite and PostgreSQL.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::Admin;
use rollcall_store::WriteContext;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

const PROBLEM: &str = "application/problem+json";

backend_tests!(
    every_get_endpoint_refuses_an_unknown_query_parameter,
    a_misspelt_directory_filter_is_refused_not_ignored,
    writes_refuse_an_unknown_query_parameter_and_change_nothing,
);

/// A management API client with an operator API key.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn start(srv: &TestServer) -> Api {
        let key = Admin::new(srv.store.clone(), Arc::default(), &srv.base)
            .create_api_key(&WriteContext::cli(), "tests")
            .await
            .expect("create API key")
            .secret;
        Api {
            http: reqwest::Client::builder().no_proxy().build().expect("client"),
            base: srv.base.clone(),
            key,
        }
    }

    /// `(status, content type, body)` of a request to `/api/v1/{path}`.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, String, Value) {
        let mut b = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            b = b.json(body);
        }
        let r = b.send().await.expect("request sent");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = r.text().await.expect("body");
        (status, content_type, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, _, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Asserts that the request is refused for the unknown query parameter `name`; returns the
    /// problem's detail.
    async fn refused(&self, method: Method, path: &str, body: Option<&Value>, name: &str) -> String {
        let (status, content_type, problem) = self.call(method.clone(), path, body).await;
        assert_eq!(status, 400, "{method} {path}: {problem}");
        assert!(content_type.starts_with(PROBLEM), "{method} {path}: {content_type}");
        assert_eq!(problem["status"], json!(400), "{problem}");
        assert_eq!(problem["type"], json!("urn:rollcall:problem:bad-request"), "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default().to_string();
        assert!(
            detail.starts_with(&format!("unknown query parameter \"{name}\"; this endpoint takes")),
            "{method} {path}: {detail}"
        );
        detail
    }
}

/// Every GET operation of the management API, with the query parameters it takes (from its
/// documentation, in its order): `{org}` and `{conn}` stand for a real organization and connection.
const GET_ENDPOINTS: &[(&str, &[&str])] = &[
    ("/organizations", &["cursor", "limit"]),
    ("/organizations/{org}", &[]),
    ("/organizations/{org}/connections", &[]),
    ("/organizations/{org}/roles", &[]),
    ("/organizations/{org}/roles/{role}", &[]),
    ("/organizations/{org}/protected-users", &[]),
    ("/organizations/{org}/workspaces", &[]),
    ("/organizations/{org}/workspaces/{workspace}", &[]),
    ("/organizations/{org}/workspace-settings", &[]),
    (
        "/organizations/{org}/users",
        &[
            "status",
            "connection_id",
            "email",
            "user_name",
            "external_id",
            "role",
            "workspace",
            "group_id",
            "include_staging",
            "cursor",
            "limit",
        ],
    ),
    ("/organizations/{org}/users/{user_id}", &[]),
    (
        "/organizations/{org}/groups",
        &[
            "connection_id",
            "display_name",
            "external_id",
            "include_staging",
            "cursor",
            "limit",
        ],
    ),
    ("/organizations/{org}/groups/{group_id}", &[]),
    ("/organizations/{org}/groups/{group_id}/members", &["cursor", "limit"]),
    (
        "/organizations/{org}/access",
        &["user_id", "email", "user_name", "external_id", "provision", "wait_ms"],
    ),
    ("/connections/{conn}", &[]),
    ("/connections/{conn}/role-mappings", &[]),
    ("/connections/{conn}/default-roles", &[]),
    ("/connections/{conn}/workspace-mappings", &[]),
    ("/connections/{conn}/policy", &[]),
    ("/connections/{conn}/requests", &["cursor", "limit"]),
    ("/connections/{conn}/deprovision-guard", &[]),
    ("/connections/{conn}/deprovision-guard/held", &["cursor", "limit"]),
    ("/connections/{conn}/match-report", &[]),
    ("/connections/{conn}/google-workspace", &[]),
    ("/connections/{conn}/sync", &[]),
    ("/api-keys", &[]),
    ("/organizations/{org}/setup-links", &[]),
    ("/organizations/{org}/setup-links/{link}", &[]),
    (
        "/events",
        &["after", "limit", "type", "org_id", "connection_id", "resource_id"],
    ),
    ("/events/{id}", &[]),
    ("/webhooks", &["org_id"]),
    ("/webhooks/{id}", &[]),
    ("/webhooks/{id}/attempts", &["cursor", "limit"]),
    ("/organizations/{org}/provisioning-targets", &[]),
    ("/organizations/{org}/provisioning-targets/{target}", &[]),
    ("/organizations/{org}/provisioning-targets/{target}/plan", &[]),
    (
        "/organizations/{org}/provisioning-targets/{target}/runs",
        &["cursor", "limit"],
    ),
    (
        "/organizations/{org}/provisioning-targets/{target}/objects",
        &["state", "cursor", "limit"],
    ),
];

async fn every_get_endpoint_refuses_an_unknown_query_parameter() {
    let srv = TestServer::start().await;
    let api = Api::start(&srv).await;

    // The table is every GET operation of the OpenAPI document, with the query parameters it lists.
    let doc = api.get("openapi.json").await;
    let documented: BTreeSet<(String, Vec<String>)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter_map(|(path, item)| {
            let get = item.get("get")?;
            let mut params: Vec<String> = get["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            params.sort();
            Some((path.strip_prefix("/api/v1").unwrap_or(path).to_string(), params))
        })
        .collect();
    let template = |p: &str| p.replace("{org}", "{id}").replace("{conn}", "{id}");
    let table: BTreeSet<(String, Vec<String>)> = GET_ENDPOINTS
        .iter()
        .map(|(p, params)| {
            let mut params: Vec<String> = params.iter().map(|s| s.to_string()).collect();
            params.sort();
            (template(p), params)
        })
        .collect();
    assert_eq!(
        table, documented,
        "the table of GET endpoints is not the documented one"
    );

    let conn = srv.conn();
    for (path, params) in GET_ENDPOINTS {
        let path = path
            .trim_start_matches('/')
            .replace("{org}", &conn.org_id)
            .replace("{conn}", &conn.id);
        // Alone, and after parameters the endpoint takes.
        let detail = api
            .refused(Method::GET, &format!("{path}?emial=x"), None, "emial")
            .await;
        if params.is_empty() {
            assert!(
                detail.ends_with("this endpoint takes no query parameters"),
                "{path}: {detail}"
            );
        } else {
            assert!(
                detail.ends_with(&format!("this endpoint takes: {}", params.join(", "))),
                "{path}: {detail}"
            );
        }
        let known = params.first().map(|p| format!("{p}=&")).unwrap_or_default();
        api.refused(Method::GET, &format!("{path}?{known}typo"), None, "typo")
            .await;
    }
}

async fn a_misspelt_directory_filter_is_refused_not_ignored() {
    let srv = TestServer::start().await;
    let api = Api::start(&srv).await;
    let client = srv.client();
    for name in ["ada", "grace"] {
        client
            .create_user(&json!({
                "schemas": [USER_SCHEMA],
                "userName": name,
                "emails": [{"value": format!("{name}@example.com"), "primary": true}],
            }))
            .await;
    }
    let org = &srv.conn().org_id;

    let users = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|u| u["user_name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = api.get(&format!("organizations/{org}/users")).await;
    assert_eq!(users(&all).len(), 2, "{all}");
    let one = api
        .get(&format!("organizations/{org}/users?email=ada@example.com"))
        .await;
    assert_eq!(users(&one), ["ada"], "{one}");

    // A typo is refused rather than answered with every user.
    let detail = api
        .refused(
            Method::GET,
            &format!("organizations/{org}/users?emial=ada@example.com"),
            None,
            "emial",
        )
        .await;
    assert!(detail.contains("email"), "{detail}");
}

async fn writes_refuse_an_unknown_query_parameter_and_change_nothing() {
    let srv = TestServer::start().await;
    let api = Api::start(&srv).await;
    let org = srv.conn().org_id.clone();
    let orgs_before = api.get("organizations").await;

    api.refused(
        Method::POST,
        "organizations?dry_run=true",
        Some(&json!({"name": "globex"})),
        "dry_run",
    )
    .await;
    api.refused(
        Method::PATCH,
        &format!("organizations/{org}?force=1"),
        Some(&json!({"name": "renamed"})),
        "force",
    )
    .await;
    let detail = api
        .refused(
            Method::DELETE,
            &format!("organizations/{org}?confirm=acme&cascade=true"),
            None,
            "cascade",
        )
        .await;
    assert!(detail.ends_with("this endpoint takes: confirm"), "{detail}");
    api.refused(
        Method::POST,
        &format!("connections/{}/revoke-tokens?all", srv.conn().id),
        None,
        "all",
    )
    .await;

    assert_eq!(api.get("organizations").await, orgs_before);
    assert_eq!(srv.client().get("/Users").await.status.as_u16(), 200);
}
