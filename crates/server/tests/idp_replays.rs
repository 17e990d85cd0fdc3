//! The request sequences identity providers document, replayed over a real socket on SQLite and
//! PostgreSQL: each vendor's fixture under `tests/replays/<vendor>/` names the documentation it was
//! built from and lists its requests as the vendor sends them (method, path and query as written,
//! headers including the User-Agent, body), what each must be answered, and the values to carry to
//! later requests (the ids Rollcall assigns).
//!
//! Fixture format (JSON):
//!
//! ```text
//! { "vendor": "...", "sources": ["https://..."], "about": "...",
//!   "connection_idp": "okta",              // the connection's configured identity provider
//!   "headers": {"User-Agent": "..."},      // sent with every request
//!   "steps": [
//!     { "name": "...", "method": "GET", "path": "/Users?filter=userName eq \"x\"",
//!       "headers": {...}, "body": {...},   // optional
//!       "status": 200,
//!       "expect": {"/totalResults": 0},    // JSON pointer → value; "$absent", "$present",
//!                                          // "${var}" (a captured value), "$members:a,b" (the
//!                                          // sorted member ids are those of the captured a, b)
//!       "capture": {"user": "/id"} } ] }
//! ```
//!
//! `${var}` in a path, header or body string is replaced by the value captured as `var`. The query
//! of a path is percent-encoded here, as the vendor's HTTP client does.
//!
//! Okta and Entra ID have deeper flow tests (`okta_flow.rs`, `entra_flow.rs`); their fixtures here
//! replay the documented requests with the documented headers, and the second Entra generation
//! (`aadOptscim062020`) besides.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::Admin;
use rollcall_store::{IdpKind, WriteContext};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(vendor: &str, name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/replays")
        .join(vendor)
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        v["sources"].as_array().is_some_and(|s| !s.is_empty()),
        "{}: a fixture names the documentation it comes from",
        path.display()
    );
    v
}

/// `s` with every `${var}` replaced by its captured value.
fn substitute(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {s}"));
        let name = &after[..end];
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("nothing captured as {name} (in {s})")),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn substitute_json(v: &Value, vars: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_json(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (substitute(k, vars), substitute_json(x, vars)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// A path as written in a vendor's documentation (`/Users?filter=userName eq "x"&count=100`) with
/// its query values percent-encoded. Values already encoded (containing `%`) are left alone.
fn encode_path(path: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_string();
    };
    let pairs: Vec<String> = q
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if v.contains('%') => format!("{k}={v}"),
            Some((k, v)) => format!("{k}={}", enc(v)),
            None => pair.to_string(),
        })
        .collect();
    format!("{p}?{}", pairs.join("&"))
}

fn idp_of(name: &str) -> IdpKind {
    name.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// Replays a fixture against a fresh server with one connection for its identity provider, and
/// answers the server (for checks after the replay) and the captured values.
async fn replay(vendor: &str, name: &str) -> (TestServer, HashMap<String, String>) {
    let fx = fixture(vendor, name);
    let srv = TestServer::start_for(idp_of(fx["connection_idp"].as_str().expect("connection_idp"))).await;
    let vars = replay_on(&srv, &fx, &format!("{vendor}/{name}")).await;
    (srv, vars)
}

async fn replay_on(srv: &TestServer, fx: &Value, label: &str) -> HashMap<String, String> {
    let client = srv.client();
    let mut vars: HashMap<String, String> = HashMap::new();
    let common_headers: Vec<(String, String)> = fx["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_string()))
                .collect()
        })
        .unwrap_or_default();
    for (i, step) in fx["steps"].as_array().expect("steps").iter().enumerate() {
        let what = format!("{label} step {} ({})", i + 1, step["name"].as_str().unwrap_or_default());
        let method = Method::from_bytes(step["method"].as_str().expect("method").as_bytes()).unwrap();
        let path = encode_path(&substitute(step["path"].as_str().expect("path"), &vars));
        let mut b = client.bare(method, &path);
        let mut headers = common_headers.clone();
        if let Some(h) = step["headers"].as_object() {
            for (k, v) in h {
                headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
                headers.push((k.clone(), v.as_str().expect("header value").to_string()));
            }
        }
        for (k, v) in &headers {
            b = b.header(k.as_str(), substitute(v, &vars));
        }
        if let Some(body) = step.get("body") {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                b = b.header("Content-Type", SCIM_JSON);
            }
            b = b.body(substitute_json(body, &vars).to_string());
        }
        let r = client.send(b).await;
        let want = step["status"].as_u64().expect("status") as u16;
        assert_eq!(r.status.as_u16(), want, "{what}: {} {}", path, r.text);
        for (pointer, expected) in step["expect"].as_object().into_iter().flatten() {
            let got = r.body.pointer(pointer);
            match expected.as_str() {
                Some("$absent") => assert!(
                    got.is_none_or(|v| v.is_null() || v == &Value::Array(vec![])),
                    "{what}: {pointer} should be absent: {}",
                    r.text
                ),
                Some("$present") => assert!(got.is_some(), "{what}: {pointer} missing: {}", r.text),
                Some(s) if s.starts_with("$members:") => {
                    let mut want: Vec<String> = s["$members:".len()..]
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(|n| {
                            vars.get(n)
                                .unwrap_or_else(|| panic!("{what}: nothing captured as {n}"))
                                .clone()
                        })
                        .collect();
                    want.sort();
                    let mut have: Vec<String> = got
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| m["value"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    have.sort();
                    assert_eq!(have, want, "{what}: {pointer}: {}", r.text);
                }
                _ => {
                    let expected = substitute_json(expected, &vars);
                    assert_eq!(got, Some(&expected), "{what}: {pointer}: {}", r.text);
                }
            }
        }
        for (var, pointer) in step["capture"].as_object().into_iter().flatten() {
            let v = r
                .body
                .pointer(pointer.as_str().expect("pointer"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{what}: nothing at {pointer}: {}", r.text));
            vars.insert(var.clone(), v.to_string());
        }
    }
    vars
}

async fn okta_users_and_groups() {
    replay("okta", "users_and_groups").await;
}

async fn entra_without_the_flag() {
    replay("entra", "default_patch").await;
}

async fn entra_with_the_flag() {
    replay("entra", "aadoptscim062020").await;
}

async fn onelogin_users_and_groups() {
    replay("onelogin", "users_and_groups").await;
}

/// JumpCloud's Test Connection round trip succeeds, and the request log shows its requests as
/// JumpCloud's connection test, and the provisioning that follows as what it is.
async fn jumpcloud_users_and_groups() {
    let (srv, _) = replay("jumpcloud", "users_and_groups").await;
    let steps = fixture("jumpcloud", "users_and_groups")["steps"]
        .as_array()
        .unwrap()
        .len();
    let key = Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_api_key(&WriteContext::cli(), "replay")
        .await
        .expect("create API key")
        .secret;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/api/v1/connections/{}/requests?limit=100", srv.base, srv.conn().id);
    // The request log is written in the background: wait until every request is in it.
    let started = std::time::Instant::now();
    let log: Vec<Value> = loop {
        let r = http.get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        let data = body["data"].as_array().cloned().unwrap_or_default();
        if data.len() >= steps {
            break data;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "request log: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Oldest first: the four writes of the test are marked, the provisioning after them is not.
    let marked: Vec<(String, bool)> = log
        .iter()
        .rev()
        .map(|e| {
            let path = e["path"].as_str().unwrap();
            let endpoint = path
                .split('?')
                .next()
                .unwrap()
                .split('/')
                .nth(4)
                .unwrap_or_default()
                .to_string();
            (
                format!("{} {endpoint}", e["method"].as_str().unwrap()),
                e["activity"]["kind"] == "connection_test",
            )
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("POST Users", true),
        ("POST Groups", true),
        ("DELETE Groups", true),
        ("DELETE Users", true),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_string(), t))
    .collect();
    assert_eq!(marked[..4], expected[..], "{log:?}");
    assert!(marked[4..].iter().all(|(_, t)| !t), "{marked:?}");
    let first = log.last().unwrap();
    assert_eq!(first["activity"]["name"], "JumpCloud's Test Connection");
    assert_eq!(first["activity"]["idp"], "jumpcloud");
    assert_eq!(first["status"], 201);
    assert_eq!(first["explanation"], Value::Null);
}

async fn pingone_users_and_groups() {
    replay("pingone", "users_and_groups").await;
}

/// The PATCH requests Entra ID and the RFC read differently, on an Okta connection: read the RFC's
/// way (refused, nothing changed) unless the request's User-Agent says Entra ID sent it; on a
/// generic connection, Entra's way.
async fn readings_follow_the_calling_identity_provider() {
    let srv = TestServer::start_with(Setup {
        connections: vec![("acme".into(), IdpKind::Okta), ("acme".into(), IdpKind::Generic)],
        ..Setup::default()
    })
    .await;
    let patch = |ops: Value| serde_json::json!({"schemas": [PATCH_OP], "Operations": ops});
    for (conn, okta) in [(&srv.conns[0], true), (&srv.conns[1], false)] {
        let c = srv.client_for(conn);
        let u = id(&c
            .create_user(&serde_json::json!({"schemas": [USER_SCHEMA], "userName": "ada"}))
            .await);
        let g = id(&c.group("Engineers", &[u.as_str()]).await);
        let remove = patch(serde_json::json!([{"op": "Remove", "path": "members", "value": [{"value": u}]}]));
        let work_mail = patch(
            serde_json::json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ada@example.com"}]),
        );
        if okta {
            let detail = c
                .patch(&format!("/Groups/{g}"), &remove)
                .await
                .expect_error(400, Some("invalidValue"));
            assert!(detail.contains("okta"), "{detail}");
            assert_eq!(
                member_ids(&c.fetch(&format!("/Groups/{g}")).await),
                vec![u.clone()],
                "nothing changed"
            );
            c.patch(&format!("/Users/{u}"), &work_mail)
                .await
                .expect_error(400, Some("noTarget"));
            assert!(c.fetch(&format!("/Users/{u}")).await.get("emails").is_none());
            // The same requests from Entra ID's provisioning service are read its way.
            let entra = c.with_user_agent("Azure AD SCIM Client");
            entra.patch(&format!("/Groups/{g}"), &remove).await.expect(204);
            entra.patch(&format!("/Users/{u}"), &work_mail).await.expect(200);
        } else {
            c.patch(&format!("/Groups/{g}"), &remove).await.expect(204);
            c.patch(&format!("/Users/{u}"), &work_mail).await.expect(200);
        }
        assert_eq!(
            member_ids(&c.fetch(&format!("/Groups/{g}")).await),
            Vec::<String>::new()
        );
        assert_eq!(
            c.fetch(&format!("/Users/{u}")).await["emails"][0]["value"],
            "ada@example.com"
        );
    }
}

backend_tests!(
    readings_follow_the_calling_identity_provider,
    okta_users_and_groups,
    entra_without_the_flag,
    entra_with_the_flag,
    onelogin_users_and_groups,
    jumpcloud_users_and_groups,
    pingone_users_and_groups,
);

#[test]
fn paths_are_encoded_as_clients_send_them() {
    assert_eq!(
        encode_path("/Users?filter=userName eq \"a@b.c\"&count=100"),
        "/Users?filter=userName%20eq%20%22a%40b.c%22&count=100"
    );
    assert_eq!(
        encode_path("/Users?filter=userName%20eq%20%22x%22"),
        "/Users?filter=userName%20eq%20%22x%22"
    );
    assert_eq!(encode_path("/Users/abc"), "/Users/abc");
    let vars = HashMap::from([("u".to_string(), "42".to_string())]);
    assert_eq!(substitute("/Users/${u}?x=${u}", &vars), "/Users/42?x=42");
}
