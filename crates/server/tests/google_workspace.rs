//! Google Workspace directory connections (#17) against an in-repo fake of Google's token endpoint
//! and Directory API (tests/common/google_fake.rs): paging, backoff on 429 and quota 403s, a token
//! expiring mid-sync, suspended and deleted users, groups with members, scope, the management API,
//! and the same events as SCIM writes.

mod common;
#[path = "common/google_fake.rs"]
mod google_fake;

use common::*;
use google_fake::*;
use rollcall_server::admin::{Admin, GoogleWorkspaceInput};
use rollcall_server::directory_sync::google::RetryPolicy;
use rollcall_server::directory_sync::{DirectorySync, SyncSettings};
use rollcall_store::{ConnectionPolicy, DirectorySource, EventQuery, OnDelete, SyncScope, SyncStatus, WriteContext};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn settings() -> SyncSettings {
    SyncSettings {
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        },
        request_timeout: Duration::from_secs(10),
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        concurrency: 2,
    }
}

fn admin(srv: &TestServer) -> Admin {
    Admin::new(srv.store.clone(), Arc::default(), &srv.base)
}

/// A Google Workspace connection in the server's organization, reading `fake`.
async fn connect(srv: &TestServer, fake: &FakeGoogle, scope: SyncScope) -> String {
    let (c, _) = admin(srv)
        .create_google_workspace_connection(
            &WriteContext::cli(),
            &srv.conn().org_id,
            GoogleWorkspaceInput {
                name: Some("Google".into()),
                customer: Some("my_customer".into()),
                admin_email: ADMIN_EMAIL.into(),
                credentials: fake.key().to_string(),
                scope,
                interval_s: None,
                api_base_url: Some(fake.base.clone()),
                token_url: None,
            },
        )
        .await
        .expect("create the connection");
    c.id
}

async fn sync(srv: &TestServer, connection_id: &str) -> DirectorySource {
    DirectorySync::new(srv.scim.clone(), settings())
        .sync_now(connection_id)
        .await
        .expect("a sync runs")
}

/// The connection's users by userName.
async fn users(srv: &TestServer, connection_id: &str) -> Vec<Value> {
    let page = srv
        .store
        .list_resources(
            connection_id,
            rollcall_store::ResourceKind::User,
            &rollcall_store::ListQuery {
                filter: None,
                sort: None,
                paging: rollcall_store::Paging::Index { start_index: 1 },
                count: 1000,
                with_members: true,
                max_bytes: rollcall_store::ListQuery::DEFAULT_MAX_BYTES,
            },
        )
        .await
        .unwrap();
    let mut out: Vec<Value> = page.resources.into_iter().map(|r| (*r.doc).clone()).collect();
    out.sort_by(|a, b| a["userName"].as_str().cmp(&b["userName"].as_str()));
    out
}

async fn groups(srv: &TestServer, connection_id: &str) -> Vec<rollcall_store::StoredResource> {
    srv.store
        .list_resources(
            connection_id,
            rollcall_store::ResourceKind::Group,
            &rollcall_store::ListQuery {
                filter: None,
                sort: None,
                paging: rollcall_store::Paging::Index { start_index: 1 },
                count: 1000,
                with_members: true,
                max_bytes: rollcall_store::ListQuery::DEFAULT_MAX_BYTES,
            },
        )
        .await
        .unwrap()
        .resources
}

async fn event_types(srv: &TestServer, connection_id: &str) -> Vec<String> {
    srv.store
        .query_events(&EventQuery {
            limit: 1000,
            connection_id: Some(connection_id.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn count(types: &[String], t: &str) -> usize {
    types.iter().filter(|x| *x == t).count()
}

/// Five users over three pages (two per page), two groups (one nested), a customer-wide member.
fn directory(fake: &FakeGoogle) {
    fake.with(|s| s.page_size = 2);
    for (id, email, given, family) in [
        ("u1", "ada@example.com", "Ada", "Lovelace"),
        ("u2", "alan@example.com", "Alan", "Turing"),
        ("u3", "grace@example.com", "Grace", "Hopper"),
        ("u4", "edsger@example.com", "Edsger", "Dijkstra"),
        ("u5", "barbara@example.com", "Barbara", "Liskov"),
    ] {
        fake.add_user(google_user(id, email, given, family));
    }
    fake.user_mut("u1", |u| u["orgUnitPath"] = json!("/Engineering"));
    fake.user_mut("u2", |u| u["orgUnitPath"] = json!("/Engineering/Research"));
    fake.add_group(
        google_group("g1", "engineering@example.com", "Engineering"),
        vec![
            google_member("u1", "ada@example.com", "USER"),
            google_member("u2", "alan@example.com", "USER"),
            google_member("g2", "compilers@example.com", "GROUP"),
            google_member("C03az79cb", "", "CUSTOMER"),
        ],
    );
    fake.add_group(
        google_group("g2", "compilers@example.com", "Compilers"),
        vec![google_member("u3", "grace@example.com", "USER")],
    );
}

async fn a_sync_reads_every_page_and_writes_users_groups_and_members() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    let id = connect(&srv, &fake, SyncScope::default()).await;
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded), "{:?}", s.last_error);
    let counts = s.last_counts.clone().unwrap();
    assert_eq!((counts.users_read, counts.groups_read), (5, 2));
    assert_eq!((counts.users_created, counts.groups_created), (5, 2));
    assert_eq!(counts.phase, "done");
    // Three pages of users, with Google's documented parameters.
    let requests = fake.with(|s| s.requests.clone());
    let user_pages: Vec<_> = requests.iter().filter(|(p, _)| p.ends_with("/users")).collect();
    assert_eq!(user_pages.len(), 3);
    assert_eq!(user_pages[0].1["customer"], "my_customer");
    assert_eq!(user_pages[0].1["maxResults"], "500");
    assert_eq!(user_pages[0].1["projection"], "full");
    assert_eq!(user_pages[1].1["pageToken"], "tok-2");
    assert_eq!(fake.with(|s| s.tokens_issued), 1, "one token for the whole run");

    let all = users(&srv, &id).await;
    assert_eq!(all.len(), 5);
    let ada = &all[0];
    assert_eq!(ada["userName"], "ada@example.com");
    assert_eq!(ada["externalId"], "u1");
    assert_eq!(ada["name"]["givenName"], "Ada");
    assert_eq!(ada["displayName"], "Ada Lovelace");
    assert_eq!(ada["active"], true);
    assert_eq!(ada["emails"][0]["value"], "ada@example.com");
    let gs = groups(&srv, &id).await;
    let eng = gs.iter().find(|g| g.doc["displayName"] == "Engineering").unwrap();
    let compilers = gs.iter().find(|g| g.doc["displayName"] == "Compilers").unwrap();
    let members: Vec<&str> = eng.related.iter().flatten().map(|m| m.id.as_str()).collect();
    assert_eq!(
        members.len(),
        3,
        "two users and the nested group, not the customer: {members:?}"
    );
    assert!(members.contains(&compilers.id.as_str()));
    assert_eq!(eng.doc["externalId"], "g1");

    let types = event_types(&srv, &id).await;
    assert_eq!(count(&types, "user.created"), 5);
    assert_eq!(count(&types, "group.created"), 2);
    assert_eq!(count(&types, "group.member_added"), 4);

    // Nothing changed in Google: the next run writes nothing.
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded));
    let c = s.last_counts.unwrap();
    assert_eq!(
        (c.users_created, c.users_updated, c.groups_created, c.groups_updated),
        (0, 0, 0, 0)
    );
    assert_eq!(event_types(&srv, &id).await.len(), types.len(), "no events");
}

async fn suspended_users_are_deactivated_and_deleted_ones_follow_the_policy() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    let id = connect(&srv, &fake, SyncScope::default()).await;
    sync(&srv, &id).await;
    fake.user_mut("u2", |u| u["suspended"] = json!(true));
    fake.user_mut("u3", |u| u["name"]["familyName"] = json!("Murray Hopper"));
    fake.remove_user("u4");
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded), "{:?}", s.last_error);
    let c = s.last_counts.unwrap();
    assert_eq!((c.users_deactivated, c.users_updated, c.users_deleted), (1, 1, 1));
    let all = users(&srv, &id).await;
    assert_eq!(all.len(), 4);
    let alan = all.iter().find(|u| u["userName"] == "alan@example.com").unwrap();
    assert_eq!(alan["active"], false);
    let types = event_types(&srv, &id).await;
    assert_eq!(count(&types, "user.deactivated"), 1);
    assert_eq!(count(&types, "user.updated"), 1);
    assert_eq!(count(&types, "user.deleted"), 1);

    // Purge: the next user gone from Google is erased.
    srv.store
        .set_connection_policy(
            &WriteContext::cli(),
            &id,
            &ConnectionPolicy {
                on_delete: OnDelete::Purge,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fake.remove_user("u5");
    fake.user_mut("u2", |u| u["suspended"] = json!(false));
    let s = sync(&srv, &id).await;
    let c = s.last_counts.unwrap();
    assert_eq!((c.users_deleted, c.users_updated), (1, 1), "reactivated is an update");
    assert_eq!(count(&event_types(&srv, &id).await, "user.reactivated"), 1);
    assert_eq!(users(&srv, &id).await.len(), 3);
}

async fn a_429_waits_for_retry_after_and_a_quota_403_is_retried() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    fake.fail_next(Failure::google("/users", 429, "rateLimitExceeded", Some("1")));
    fake.fail_next(Failure::google("/groups", 403, "rateLimitExceeded", None));
    fake.fail_next(Failure::google("/members", 503, "backendError", None));
    let id = connect(&srv, &fake, SyncScope::default()).await;
    let started = Instant::now();
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded), "{:?}", s.last_error);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(fake.with(|s| s.failed_at.len()), 3);
    assert_eq!(s.last_counts.unwrap().users_created, 5);
}

async fn a_permission_403_fails_the_run_and_changes_nothing() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    fake.fail_next(Failure::google("/users", 403, "forbidden", None));
    let id = connect(&srv, &fake, SyncScope::default()).await;
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Failed));
    let e = s.last_error.unwrap();
    assert!(e.contains("403") && e.contains("forbidden"), "{e}");
    assert_eq!(fake.with(|s| s.failed_at.len()), 1, "not retried");
    assert!(users(&srv, &id).await.is_empty());
    // The failed run is an event; nothing else was written.
    let types = event_types(&srv, &id).await;
    assert_eq!(count(&types, "connection.directory_sync_failed"), 1, "{types:?}");
    assert!(types.iter().all(|t| t.starts_with("connection.")), "{types:?}");
    // Retries that never end fail the run too.
    for _ in 0..4 {
        fake.fail_next(Failure::google("/users", 429, "rateLimitExceeded", Some("0")));
    }
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Failed));
    assert!(s.last_error.unwrap().contains("after 4 attempts"));
}

async fn a_token_expiring_mid_sync_is_fetched_again() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    // The token stops working after the second page of users.
    fake.expire_tokens_after(2);
    let id = connect(&srv, &fake, SyncScope::default()).await;
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded), "{:?}", s.last_error);
    assert_eq!(fake.with(|s| s.tokens_issued), 2);
    assert_eq!(s.last_counts.unwrap().users_created, 5);
    // A token about to expire is replaced before use: lifetimes under the margin give a new token
    // per request.
    fake.with(|s| s.token_lifetime_s = 30);
    let before = fake.with(|s| s.tokens_issued);
    sync(&srv, &id).await;
    assert!(fake.with(|s| s.tokens_issued) > before + 1);
}

async fn delegation_errors_say_what_to_fix() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    fake.with(|s| {
        s.token_error = Some((
            401,
            json!({"error": "unauthorized_client",
                "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}),
        ))
    });
    let id = connect(&srv, &fake, SyncScope::default()).await;
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Failed));
    let e = s.last_error.unwrap();
    assert!(
        e.contains("unauthorized_client") && e.contains("Domain-wide delegation"),
        "{e}"
    );
    // A wrong admin address.
    fake.with(|s| s.token_error = None);
    admin(&srv)
        .update_google_workspace(
            &WriteContext::cli(),
            &id,
            rollcall_server::admin::GoogleWorkspaceChange {
                admin_email: Some("nobody@example.com".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = sync(&srv, &id).await;
    let e = s.last_error.unwrap();
    assert!(
        e.contains("Invalid email or User ID") && e.contains("admin e-mail"),
        "{e}"
    );
}

async fn the_scope_limits_users_and_groups() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    let id = connect(
        &srv,
        &fake,
        SyncScope {
            org_units: vec!["/Engineering".into()],
            groups: vec!["compilers@example.com".into()],
        },
    )
    .await;
    let s = sync(&srv, &id).await;
    assert_eq!(s.last_status, Some(SyncStatus::Succeeded), "{:?}", s.last_error);
    let names: Vec<String> = users(&srv, &id)
        .await
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ada@example.com", "alan@example.com", "grace@example.com"]);
    let gs = groups(&srv, &id).await;
    assert_eq!(gs.len(), 1);
    assert_eq!(gs[0].doc["displayName"], "Compilers");
}

/// The same user and group written over SCIM and read from Google give the same events, with the
/// same data (ids aside): nothing downstream can tell the difference.
async fn a_sync_writes_the_same_events_as_scim() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    fake.add_user(google_user("u1", "ada@example.com", "Ada", "Lovelace"));
    fake.add_group(
        google_group("g1", "eng@example.com", "Engineering"),
        vec![google_member("u1", "ada@example.com", "USER")],
    );
    let id = connect(&srv, &fake, SyncScope::default()).await;
    sync(&srv, &id).await;
    // The documents the sync wrote, sent by an identity provider over SCIM.
    let doc = users(&srv, &id).await.remove(0);
    let mut body = doc.clone();
    body.as_object_mut().unwrap().remove("id");
    let created = srv.client().create_user(&body).await;
    srv.client()
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering", "externalId": "g1"}),
        )
        .await
        .expect(201);
    let group = srv
        .client()
        .fetch("/Groups?filter=displayName%20eq%20%22Engineering%22")
        .await["Resources"][0]
        .clone();
    srv.client()
        .patch(
            &format!("/Groups/{}", group["id"].as_str().unwrap()),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": created["id"]}]}]}),
        )
        .await
        .expect(204);
    let events = |connection: String| {
        let store = srv.store.clone();
        async move {
            store
                .query_events(&EventQuery {
                    limit: 100,
                    connection_id: Some(connection),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .filter(|e| !e.kind.starts_with("connection."))
                .map(|e| {
                    let mut data = e.data.clone();
                    strip_ids(&mut data);
                    (e.kind, data)
                })
                .collect::<Vec<_>>()
        }
    };
    let from_google = events(id.clone()).await;
    let from_scim = events(srv.conn().id.clone()).await;
    let kinds = |v: &[(String, Value)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&from_google), kinds(&from_scim));
    assert_eq!(
        kinds(&from_google),
        ["user.created", "group.created", "group.member_added"]
    );
    assert_eq!(from_google[0].1, from_scim[0].1, "user.created carries the same data");
    // The actor says who wrote.
    let e = srv
        .store
        .query_events(&EventQuery {
            limit: 1,
            connection_id: Some(id.clone()),
            types: vec!["user.created".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        e[0].actor,
        rollcall_store::Actor::DirectorySync {
            connection_id: id.clone()
        }
    );
    assert!(
        e[0].user_agent
            .as_deref()
            .unwrap()
            .starts_with("Rollcall-Directory-Sync/")
    );
}

fn strip_ids(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "id",
                "value",
                "$ref",
                "location",
                "member_id",
                "group_id",
                "resource_id",
            ] {
                m.remove(k);
            }
            m.retain(|k, _| k != "meta");
            for (_, x) in m.iter_mut() {
                strip_ids(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_ids),
        _ => {}
    }
}

/// The management API: create (no key in the answer), read the status, sync now through the
/// scheduler, refuse what a SCIM connection cannot do.
async fn the_management_api_creates_syncs_and_reports() {
    let srv = TestServer::start().await;
    let fake = FakeGoogle::start().await;
    directory(&fake);
    let key = admin(&srv)
        .create_api_key(&WriteContext::cli(), "tests")
        .await
        .unwrap()
        .secret;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1/{path}", srv.base);
    let org = &srv.conn().org_id;
    let r = http
        .post(api(&format!("organizations/{org}/google-workspace-connections")))
        .bearer_auth(&key)
        .json(&json!({
            "admin_email": ADMIN_EMAIL,
            "credentials": fake.key(),
            "scope": {"org_units": [], "groups": []},
            "api_base_url": fake.base,
            "interval_s": 3600
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains("PRIVATE KEY"), "the key is never returned");
    let body: Value = serde_json::from_str(&text).unwrap();
    let id = body["connection"]["id"].as_str().unwrap().to_string();
    assert_eq!(body["connection"]["kind"], "google_workspace");
    assert_eq!(body["connection"]["idp"], "google");
    assert_eq!(body["connection"]["token_prefix"], Value::Null);
    assert_eq!(body["sync"]["client_email"], CLIENT_EMAIL);
    assert_eq!(body["sync"]["client_id"], "109876543210987654321");
    assert_eq!(body["sync"]["customer"], "my_customer");
    assert_eq!(body["sync"]["interval_s"], 3600);
    assert_eq!(body["sync"]["last_status"], Value::Null);

    // A bad key, an unknown field, a SCIM token for it are refused.
    let bad = http
        .post(api(&format!("organizations/{org}/google-workspace-connections")))
        .bearer_auth(&key)
        .json(&json!({"admin_email": ADMIN_EMAIL, "credentials": {"type": "authorized_user"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let bad = http
        .post(api(&format!("organizations/{org}/google-workspace-connections")))
        .bearer_auth(&key)
        .json(&json!({"admin_email": ADMIN_EMAIL, "credentials": fake.key(), "api_base_url": "http://example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "plain http only to loopback");
    let r = http
        .post(api(&format!("connections/{id}/token-rotation")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = http
        .get(api(&format!("connections/{}/sync", srv.conn().id)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a SCIM connection has no sync");

    // The scheduler picks the first run up (due at creation), then "sync now" runs another.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(
        DirectorySync::new(srv.scim.clone(), settings())
            .with_wake(srv.node.directory_wake.clone())
            .run(stopped),
    );
    let status = |http: reqwest::Client, url: String, key: String| async move {
        http.get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let url = api(&format!("connections/{id}/sync"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let s = status(http.clone(), url.clone(), key.clone()).await;
        if s["last_status"] != Value::Null {
            break s;
        }
        assert!(Instant::now() < deadline, "the scheduler ran the first sync: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first["last_status"], "succeeded", "{first}");
    assert_eq!(first["last_counts"]["users_created"], 5);
    assert_eq!(first["running"], false);
    fake.add_user(google_user("u6", "katherine@example.com", "Katherine", "Johnson"));
    let r = http.post(url.clone()).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let second = loop {
        let s = status(http.clone(), url.clone(), key.clone()).await;
        if s["last_finished_at"] != first["last_finished_at"] {
            break s;
        }
        assert!(Instant::now() < deadline, "sync now ran: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(second["last_counts"]["users_created"], 1, "{second}");
    // The runs are in the metrics (the recorder is the process's: other tests' runs count too).
    let metrics = http
        .get(format!("{}/metrics", srv.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |name: &str, label: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains("kind=\"google_workspace\"") && l.contains(label)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        sample("rollcall_directory_sync_runs_total", "status=\"succeeded\"") >= 2.0,
        "{metrics}"
    );
    assert!(
        sample("rollcall_directory_sync_changes_total", "change=\"user_created\"") >= 6.0,
        "{metrics}"
    );
    assert!(
        sample("rollcall_directory_sync_read_total", "resource=\"user\"") >= 11.0,
        "{metrics}"
    );
    assert!(
        sample("rollcall_directory_sync_duration_seconds_count", "status=\"succeeded\"") >= 2.0,
        "{metrics}"
    );
    let next = time::OffsetDateTime::parse(
        second["next_run_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        next > time::OffsetDateTime::now_utc() + time::Duration::minutes(50),
        "an hour later"
    );
    let _ = stop.send(true);
    scheduler.await.unwrap();

    // Settings change; the OpenAPI document names the endpoints.
    let r = http
        .patch(api(&format!("connections/{id}/google-workspace")))
        .bearer_auth(&key)
        .json(&json!({"scope": {"org_units": ["/Engineering"]}, "interval_s": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["sync"]["scope"]["org_units"], json!(["/Engineering"]));
    assert_eq!(body["sync"]["interval_s"], 600);
    let doc: Value = http
        .get(api("openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/organizations/{id}/google-workspace-connections"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/connections/{id}/sync"]["post"].is_object());
}

backend_tests!(
    a_sync_reads_every_page_and_writes_users_groups_and_members,
    suspended_users_are_deactivated_and_deleted_ones_follow_the_policy,
    a_429_waits_for_retry_after_and_a_quota_403_is_retried,
    a_permission_403_fails_the_run_and_changes_nothing,
    a_token_expiring_mid_sync_is_fetched_again,
    delegation_errors_say_what_to_fix,
    the_scope_limits_users_and_groups,
    a_sync_writes_the_same_events_as_scim,
    the_management_api_creates_syncs_and_reports,
);
