//! Setup links over the management API on a real server (create, list, read, revoke, validation,
//! events), and the setup page's side of them through the application layer (opening a link, the
//! setup session, a connection created through the link, expiry and revocation), on SQLite and
//! PostgreSQL.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::admin::{Admin, DEFAULT_SESSION_TTL, LINK_EXPIRED, LINK_NOT_FOUND, LINK_REVOKED, NOT_SIGNED_IN};
use rollcall_store::{Actor, IdpKind, WriteContext};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

backend_tests!(
    setup_links_over_the_api,
    links_refuse_bad_input,
    opening_a_link_and_its_session,
    expired_and_revoked_links_say_so,
);

/// A management API response, read completely.
#[derive(Debug)]
struct R {
    status: u16,
    location: Option<String>,
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
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        R {
            status,
            location,
            text,
            body,
        }
    }
    async fn get(&self, path: &str) -> R {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: &Value) -> R {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> R {
        self.call(Method::DELETE, path, None).await
    }
}

fn admin_for(srv: &TestServer) -> Admin {
    Admin::new(srv.store.clone(), Arc::default(), &srv.base)
}

async fn start() -> (TestServer, Api, String) {
    let srv = TestServer::start().await;
    let key = admin_for(&srv)
        .create_api_key(&WriteContext::cli(), "ops")
        .await
        .expect("API key");
    let api = Api {
        http: reqwest::Client::builder().no_proxy().build().expect("client"),
        base: srv.base.clone(),
        key: key.secret,
    };
    (srv, api, key.key.id)
}

fn rfc3339_us(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    (t.unix_timestamp_nanos() / 1000) as i64
}

async fn setup_links_over_the_api() {
    let (srv, api, key_id) = start().await;
    let org = srv.conn().org_id.clone();
    let links = format!("organizations/{org}/setup-links");

    let before = rollcall_store::sqlite::now_us();
    let r = api.post(&links, &json!({})).await.expect(201);
    let first = r.body.clone();
    let token = first["token"].as_str().unwrap().to_string();
    let id = first["setup_link"]["id"].as_str().unwrap().to_string();
    assert!(
        token.starts_with("rc_setup_") && token.len() == "rc_setup_".len() + 43,
        "{token}"
    );
    assert_eq!(first["url"], json!(format!("{}/setup/{token}", srv.base)));
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/api/v1/organizations/{org}/setup-links/{id}").as_str())
    );
    let view = &first["setup_link"];
    assert_eq!(view["org_id"], json!(org));
    assert_eq!(view["status"], "active");
    assert_eq!(view["return_url"], Value::Null);
    assert_eq!(view["connection_id"], Value::Null);
    assert_eq!(view["revoked_at"], Value::Null);
    assert_eq!(view["last_used_at"], Value::Null);
    assert_eq!(view["token_prefix"], json!(&token[..13]));
    assert_eq!(
        view["created_by"],
        json!({"type": "api_key", "id": key_id, "name": "ops"})
    );
    // Seven days by default.
    let ttl = rfc3339_us(view["expires_at"].as_str().unwrap()) - before;
    let week = 7 * 24 * 3600 * 1_000_000i64;
    assert!((week..week + 10_000_000).contains(&ttl), "{ttl}");
    // The view never holds the token or its hash.
    for k in view.as_object().unwrap().keys() {
        assert!(!k.contains("hash") && k != "token" && k != "url", "{k}");
    }

    let second = api
        .post(
            &links,
            &json!({"expires_in_seconds": 3600, "return_url": "https://App.example.com/settings/sso?tab=scim"}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(
        second["setup_link"]["return_url"],
        "https://app.example.com/settings/sso?tab=scim"
    );
    let second_id = second["setup_link"]["id"].as_str().unwrap().to_string();
    let second_token = second["token"].as_str().unwrap().to_string();
    assert_ne!(second_token, token);

    // Listed newest first, without tokens or URLs; read one by id.
    let list = api.get(&links).await.expect(200);
    let data = list.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], json!(second_id));
    assert_eq!(data[1]["id"], json!(id));
    assert!(!list.text.contains(&token) && !list.text.contains(&second_token));
    assert!(!list.text.contains("\"url\""));
    let one = api.get(&format!("{links}/{id}")).await.expect(200);
    assert_eq!(&one.body, view);

    // Another organization's links are not reachable through this one.
    let other = admin_for(&srv)
        .create_organization(&WriteContext::cli(), "globex")
        .await
        .unwrap();
    let theirs = format!("organizations/{}/setup-links", other.id);
    assert_eq!(api.get(&theirs).await.expect(200).body["data"], json!([]));
    api.get(&format!("{theirs}/{id}")).await.problem(404);
    api.delete(&format!("{theirs}/{id}")).await.problem(404);
    api.get(&format!("{links}/no-such-link")).await.problem(404);

    // Revoke: 204; the view says so; again is fine; an unknown link is a 404.
    api.delete(&format!("{links}/{id}")).await.expect(204);
    let revoked = api.get(&format!("{links}/{id}")).await.expect(200).body;
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    api.delete(&format!("{links}/{id}")).await.expect(204);
    api.delete(&format!("{links}/nope")).await.problem(404);

    // The events: created twice, revoked once, in the organization, by the key, without the token.
    let events = api.get("events?type=setup_link.*").await.expect(200);
    let kinds: Vec<&str> = events.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["setup_link.created", "setup_link.created", "setup_link.revoked"]
    );
    let created = &events.body["data"][0];
    assert_eq!(created["org_id"], json!(org));
    assert_eq!(created["actor"]["type"], "api_key");
    assert_eq!(created["data"]["setup_link_id"], json!(id));
    assert_eq!(created["data"]["expires_at"], view["expires_at"]);
    assert!(!events.text.contains(&token) && !events.text.contains(&second_token));

    // Deleting the organization takes its links with it.
    admin_for(&srv)
        .delete_organization(&WriteContext::cli(), &org, Some("acme"))
        .await
        .unwrap();
    api.get(&links).await.problem(404);
}

async fn links_refuse_bad_input() {
    let (srv, api, _) = start().await;
    let links = format!("organizations/{}/setup-links", srv.conn().org_id);
    let cases = [
        (json!({"expires_in_seconds": 299}), "expires_in"),
        (json!({"expires_in_seconds": 7_776_001}), "expires_in"),
        (json!({"expires_in_seconds": -1}), "expires_in_seconds"),
        (json!({"return_url": "javascript:alert(1)"}), "return_url"),
        (json!({"return_url": "/settings"}), "return_url"),
        (
            json!({"return_url": "https://user:secret@app.example.com/"}),
            "return_url",
        ),
        (
            json!({"return_url": format!("https://app.example.com/{}", "a".repeat(2000))}),
            "return_url",
        ),
        (json!({"expires_in": 3600}), "expires_in"),
        (json!({"token": "rc_setup_mine"}), "token"),
    ];
    for (body, named) in cases {
        let detail = api.post(&links, &body).await.problem(422);
        assert!(detail.contains(named), "{body}: {detail}");
    }
    // A value of the wrong type (the shared body reader's message).
    let detail = api
        .post(&links, &json!({"expires_in_seconds": "7d"}))
        .await
        .problem(422);
    assert!(detail.contains("expected i64"), "{detail}");
    api.post("organizations/no-such-org/setup-links", &json!({}))
        .await
        .problem(404);
    // Nothing was created, and no event recorded.
    assert_eq!(api.get(&links).await.expect(200).body["data"], json!([]));
    let events = api.get("events?type=setup_link.*").await.expect(200);
    assert_eq!(events.body["data"], json!([]));
    // Bounds are inclusive.
    api.post(&links, &json!({"expires_in_seconds": 300})).await.expect(201);
    api.post(&links, &json!({"expires_in_seconds": 7_776_000}))
        .await
        .expect(201);
}

async fn opening_a_link_and_its_session() {
    let (srv, api, _) = start().await;
    let admin = admin_for(&srv);
    let org = srv.conn().org_id.clone();
    let links = format!("organizations/{org}/setup-links");
    let created = api
        .post(&links, &json!({"expires_in_seconds": 600}))
        .await
        .expect(201)
        .body;
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["setup_link"]["id"].as_str().unwrap().to_string();

    // Opening reads the link; it does not sign in.
    let link = admin.open_setup_link(&token).await.unwrap();
    assert_eq!((link.id.as_str(), link.org_id.as_str()), (id.as_str(), org.as_str()));
    assert_eq!(link.last_used_us, None);

    // Signing in: the session lasts no longer than the link (600 s here, not 12 hours).
    let issued = admin.setup_sign_in(&token, DEFAULT_SESSION_TTL).await.unwrap();
    assert!(issued.token.starts_with("rc_ses_"));
    assert_eq!(issued.session.expires_us, link.expires_us);
    assert_eq!(issued.session.org_id, org);
    assert_eq!(issued.session.org_name, "acme");
    let s = admin.setup_session(&issued.token).await.unwrap();
    assert_eq!(s.link.id, id);
    assert_eq!(s.org_name, "acme");
    assert!(s.link.last_used_us.is_some());
    let used = api.get(&format!("{links}/{id}")).await.expect(200).body;
    assert!(used["last_used_at"].is_string());

    // A setup session is not a console session, and the reverse.
    let e = admin.console_session(&issued.token).await.unwrap_err();
    assert_eq!((e.status, e.kind), (401, Some(NOT_SIGNED_IN)));
    let key = admin.create_api_key(&WriteContext::cli(), "x").await.unwrap();
    let console = admin.console_sign_in(&key.secret, DEFAULT_SESSION_TTL).await.unwrap();
    let e = admin.setup_session(&console.token).await.unwrap_err();
    assert_eq!((e.status, e.kind), (401, Some(NOT_SIGNED_IN)));

    // A connection created on the setup page is recorded as made through the link, and the link
    // remembers it.
    let by = s.write_context(Some("Mozilla/5.0"), Some("req-setup"));
    assert_eq!(by.org_id, org);
    let conn = admin
        .create_connection(&by, &s.org_id, None, IdpKind::Entra)
        .await
        .unwrap();
    let attached = admin
        .attach_setup_connection(&s.link.id, &conn.connection.id)
        .await
        .unwrap();
    assert_eq!(attached.connection_id.as_deref(), Some(conn.connection.id.as_str()));
    let view = api.get(&format!("{links}/{id}")).await.expect(200).body;
    assert_eq!(view["connection_id"], json!(conn.connection.id));
    let events = api
        .get(&format!(
            "events?type=connection.created&connection_id={}",
            conn.connection.id
        ))
        .await
        .expect(200);
    assert_eq!(events.body["data"][0]["actor"], json!({"type": "setup_link", "id": id}));
    assert_eq!(events.body["data"][0]["user_agent"], "Mozilla/5.0");
    // Only a connection of the link's organization can be attached.
    let other = admin.create_organization(&WriteContext::cli(), "globex").await.unwrap();
    let theirs = admin
        .create_connection(&WriteContext::cli(), &other.id, None, IdpKind::Okta)
        .await
        .unwrap();
    let e = admin
        .attach_setup_connection(&id, &theirs.connection.id)
        .await
        .unwrap_err();
    assert_eq!(e.status, 422, "{e:?}");
    assert_eq!(
        admin
            .attach_setup_connection("nope", &conn.connection.id)
            .await
            .unwrap_err()
            .status,
        404
    );

    // Signing out ends the session; the link still opens.
    admin.end_session(&issued.token).await.unwrap();
    let e = admin.setup_session(&issued.token).await.unwrap_err();
    assert_eq!((e.status, e.kind), (401, Some(NOT_SIGNED_IN)));
    admin.open_setup_link(&token).await.unwrap();
    assert_eq!(s.write_context(None, None).actor, Actor::SetupLink { id: id.clone() });
}

async fn expired_and_revoked_links_say_so() {
    let (srv, api, _) = start().await;
    let admin = admin_for(&srv);
    let links = format!("organizations/{}/setup-links", srv.conn().org_id);
    let make = || async {
        let b = api.post(&links, &json!({})).await.expect(201).body;
        (
            b["setup_link"]["id"].as_str().unwrap().to_string(),
            b["token"].as_str().unwrap().to_string(),
        )
    };

    // Unknown and malformed tokens: 404, and nothing said about any link.
    for bad in ["", "rc_setup_doesnotexist", "rc_key_abc", "../../etc"] {
        let e = admin.open_setup_link(bad).await.unwrap_err();
        assert_eq!((e.status, e.kind), (404, Some(LINK_NOT_FOUND)), "{bad:?}");
        let e = admin.setup_sign_in(bad, DEFAULT_SESSION_TTL).await.unwrap_err();
        assert_eq!(e.status, 404);
    }

    // Revoked: 410 link-revoked, and its open sessions end.
    let (id, token) = make().await;
    let s1 = admin.setup_sign_in(&token, DEFAULT_SESSION_TTL).await.unwrap();
    let s2 = admin.setup_sign_in(&token, DEFAULT_SESSION_TTL).await.unwrap();
    api.delete(&format!("{links}/{id}")).await.expect(204);
    let e = admin.open_setup_link(&token).await.unwrap_err();
    assert_eq!((e.status, e.kind), (410, Some(LINK_REVOKED)));
    let e = admin.setup_sign_in(&token, DEFAULT_SESSION_TTL).await.unwrap_err();
    assert_eq!((e.status, e.kind), (410, Some(LINK_REVOKED)));
    for s in [&s1, &s2] {
        let e = admin.setup_session(&s.token).await.unwrap_err();
        assert_eq!((e.status, e.kind), (401, Some(NOT_SIGNED_IN)));
    }

    // Expired (moved into the past behind the store's back): 410 link-expired, listed as expired,
    // and a session opened before does not outlive it.
    let (id, token) = make().await;
    let s = admin.setup_sign_in(&token, DEFAULT_SESSION_TTL).await.unwrap();
    srv.execute_sql(&format!(
        "UPDATE setup_links SET expires_us = 1 WHERE id = '{id}'; UPDATE browser_sessions SET expires_us = 1 WHERE subject_id = '{id}'"
    ))
    .await;
    let e = admin.open_setup_link(&token).await.unwrap_err();
    assert_eq!((e.status, e.kind), (410, Some(LINK_EXPIRED)));
    assert!(e.detail.contains("1970-01-01T00:00:00.000001Z"), "{e:?}");
    let e = admin.setup_session(&s.token).await.unwrap_err();
    assert_eq!(e.status, 401);
    let listed = api.get(&format!("{links}/{id}")).await.expect(200).body;
    assert_eq!(listed["status"], "expired");

    // A session whose link expired while the session had not (the link's expiry was moved):
    // refused with the link's reason.
    let (id, token) = make().await;
    let s = admin.setup_sign_in(&token, Duration::from_secs(3600)).await.unwrap();
    srv.execute_sql(&format!("UPDATE setup_links SET expires_us = 1 WHERE id = '{id}'"))
        .await;
    let e = admin.setup_session(&s.token).await.unwrap_err();
    assert_eq!((e.status, e.kind), (410, Some(LINK_EXPIRED)));
}
