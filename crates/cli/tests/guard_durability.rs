//! The guard against mass deprovisioning keeps what it holds across a crash (issue #19): a real
//! `rollcall serve` trips the guard on an identity provider's burst of deactivations, is killed
//! with SIGKILL while the events are held, and is started again on the same database. Afterwards
//! the guard is still tripped with every held event, none of them reached the event log, a user
//! reactivated during the hold produces no deactivation at all, and releasing lets exactly the rest
//! through.
//!
//! Runs on SQLite always, and on PostgreSQL when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`)
//! names a server (in a database of its own, dropped afterwards).

mod serving;

use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use serde_json::{Value, json};
use serving::{Server, cli_json, free_address};
use sqlx::{Connection as _, PgConnection, Row};
use std::collections::BTreeSet;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The users that have a `user.deactivated` event in the log.
async fn deactivated_in_log(db: &TestDatabase) -> BTreeSet<String> {
    let sql = "SELECT resource_id FROM events WHERE type = 'user.deactivated'";
    match db.backend() {
        Backend::Postgres => {
            let mut c = PgConnection::connect(db.url()).await.unwrap();
            sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect()
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::query(sql)
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect()
        }
    }
}

async fn set_active(http: &reqwest::Client, base: &str, token: &str, id: &str, active: bool) {
    let r = http
        .patch(format!("{base}/Users/{id}"))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .json(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": active}]}))
        .send()
        .await
        .unwrap();
    // The identity provider is answered as without the guard.
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn held_across_a_crash(backend: Backend) {
    let db = TestDatabase::create(backend, "rollcall_guard").await;
    let url = db.url().to_string();
    let listen = free_address();
    cli_json(&url, &["--create", "org", "create", "--name", "acme", "--json"]);
    let conn = cli_json(
        &url,
        &[
            "connection",
            "create",
            "--org",
            "acme",
            "--public-url",
            &format!("http://{listen}"),
            "--json",
        ],
    );
    let (id, token) = (
        conn["id"].as_str().unwrap().to_string(),
        conn["token"].as_str().unwrap().to_string(),
    );
    let base = conn["scim_base_url"].as_str().unwrap().to_string();
    cli_json(
        &url,
        &[
            "connection",
            "guard",
            "set",
            &id,
            "--max-users",
            "2",
            "--max-percent",
            "off",
            "--json",
        ],
    );

    let server = Server::start(&url, &listen, &reqwest::Client::new()).await;
    let http = reqwest::Client::new();
    let mut users = Vec::new();
    for i in 0..6 {
        let r = http
            .post(format!("{base}/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .json(&json!({"schemas": [USER_SCHEMA], "userName": format!("u{i}@acme.example")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        users.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    // A burst of five deactivations: two pass, the third trips the guard, three are held.
    for u in &users[..5] {
        set_active(&http, &base, &token, u, false).await;
    }
    server.kill();

    // After the crash: still tripped, still holding all three, none of them in the log.
    let g = cli_json(&url, &["connection", "guard", "show", &id, "--json"]);
    assert_eq!(
        (g["status"].as_str(), g["held_events"].as_i64()),
        (Some("tripped"), Some(3)),
        "{g}"
    );
    let passed: BTreeSet<String> = users[..2].iter().cloned().collect();
    assert_eq!(deactivated_in_log(&db).await, passed);

    // Started again: the identity provider reactivates one of the held users, then the operator
    // releases the hold. The reactivated user never shows as deactivated.
    // (The command line opens the database itself: on SQLite, with the server stopped.)
    let server = Server::start(&url, &listen, &reqwest::Client::new()).await;
    set_active(&http, &base, &token, &users[2], true).await;
    server.kill();
    let g = cli_json(&url, &["connection", "guard", "show", &id, "--json"]);
    assert_eq!(g["status"], "tripped", "{g}");
    let released = cli_json(&url, &["connection", "guard", "release", &id, "--yes", "--json"]);
    assert_eq!(released["guard"]["status"], "armed", "{released}");
    let expected: BTreeSet<String> = [0, 1, 3, 4].iter().map(|i| users[*i].clone()).collect();
    assert_eq!(deactivated_in_log(&db).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_guard_holds_across_sigkill() {
    held_across_a_crash(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_guard_holds_across_sigkill() {
    if pg_admin_url().is_none() {
        skip_note("postgres_guard_holds_across_sigkill");
        return;
    }
    held_across_a_crash(Backend::Postgres).await;
}
