//! Nothing acknowledged is lost, across crashes: the real `rollcall serve` is killed with SIGKILL
//! several times while SCIM writes are arriving and webhook deliveries are in flight (the receiver
//! answers slowly), and restarted on the same database. Afterwards:
//!
//! - every SCIM create that was acknowledged (201) produced exactly one `user.created` event, and no
//!   user has two;
//! - every event recorded after the endpoint was created reached the receiver at least once
//!   (deduplicated by `webhook-id`), with a signature the `standardwebhooks` crate verifies.
//!
//! Runs on SQLite always, and on PostgreSQL when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`)
//! names a server (in a database of its own, dropped afterwards).

mod serving;

use axum::body::Bytes;
use axum::http::HeaderMap;
use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use serde_json::{Value, json};
use serving::{Server, cli_json, free_address, rand_ms};
use sqlx::{Connection as _, PgConnection, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Server crashes during the run.
const KILLS: usize = 3;
/// Concurrent SCIM writers.
const WRITERS: usize = 4;

/// The test's database: a SQLite file, or a PostgreSQL database dropped afterwards.
struct Database {
    url: String,
    db: TestDatabase,
}

impl Database {
    async fn create(backend: Backend) -> Database {
        let db = TestDatabase::create(backend, "rollcall_durable").await;
        Database {
            url: db.url().to_string(),
            db,
        }
    }

    /// Every event after `after`: (seq, id, type, resource_id).
    async fn events(&self, after: i64) -> Vec<(i64, String, String, Option<String>)> {
        if self.db.backend() == Backend::Postgres {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            let sql = "SELECT seq, id, type, resource_id FROM events WHERE seq > $1 ORDER BY seq";
            let rows = sqlx::query(sql).bind(after).fetch_all(&mut c).await.unwrap();
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let sql = "SELECT seq, id, type, resource_id FROM events WHERE seq > ? ORDER BY seq";
            let rows = sqlx::query(sql).bind(after).fetch_all(&mut c).await.unwrap();
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
        }
    }
}

/// What the receiver got: per `webhook-id`, how many times, and whether every signature verified.
#[derive(Default)]
struct Received {
    count: HashMap<String, usize>,
    bad_signatures: Vec<String>,
}

/// A slow receiver (2-8 ms per delivery), so that deliveries are in flight when the server dies.
async fn start_receiver(secret: Arc<Mutex<String>>) -> (String, Arc<Mutex<Received>>) {
    let got: Arc<Mutex<Received>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            let secret = secret.lock().unwrap().clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2 + rand_ms(6))).await;
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let verified = standardwebhooks::Webhook::new(&secret)
                    .and_then(|w| w.verify(&body, &headers))
                    .is_ok();
                let mut g = sink.lock().unwrap();
                if !verified {
                    g.bad_signatures.push(id.clone());
                }
                *g.count.entry(id).or_default() += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn crash_and_recover(db: Database) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let key = cli_json(
        &db.url,
        &["--create", "api-key", "create", "--name", "durability", "--json"],
    )["secret"]
        .as_str()
        .unwrap()
        .to_string();
    cli_json(&db.url, &["org", "create", "--name", "acme", "--json"]);
    let conn = cli_json(&db.url, &["connection", "create", "--org", "acme", "--json"]);
    let (conn_id, token) = (
        conn["id"].as_str().unwrap().to_string(),
        conn["token"].as_str().unwrap().to_string(),
    );
    let listen = free_address();
    let mut server = Server::start(&db.url, &listen, &http).await;

    let secret = Arc::new(Mutex::new(String::new()));
    let (hook_url, received) = start_receiver(secret.clone()).await;
    let created: Value = http
        .post(format!("http://{listen}/api/v1/webhooks"))
        .bearer_auth(&key)
        .json(&json!({"url": hook_url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    *secret.lock().unwrap() = created["secret"].as_str().unwrap().to_string();
    let start_seq = created["webhook"]["last_sequence"].as_i64().unwrap();

    // Writers: each creates users one after another; a 201 is an acknowledged change, anything
    // else (the server died under the request) is not.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let unacknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, stop, acked, unacked) = (http.clone(), stop.clone(), acknowledged.clone(), unacknowledged.clone());
        let url = format!("http://{listen}/scim/v2/{conn_id}/Users");
        let token = token.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({"schemas": [USER_SCHEMA], "userName": format!("w{w}-{i}@example.com")});
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 201 => match r.json::<Value>().await {
                        Ok(doc) => acked.lock().unwrap().push(doc["id"].as_str().unwrap().to_string()),
                        Err(_) => {
                            unacked.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Ok(r) => {
                        assert!(!r.status().is_client_error(), "unexpected answer {}", r.status());
                        unacked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        unacked.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    for _ in 0..KILLS {
        // Let writes and deliveries run, then kill the server mid-way.
        tokio::time::sleep(Duration::from_millis(700 + rand_ms(400))).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
        server = Server::start(&db.url, &listen, &http).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // Every acknowledged create is in the log exactly once, and no user was created twice.
    let events = db.events(start_seq).await;
    let mut created_per_user: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, kind, resource) in &events {
        if kind == "user.created" {
            *created_per_user.entry(resource.clone().unwrap()).or_default() += 1;
        }
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() > 50, "too few writes to mean anything: {}", acked.len());
    for id in &acked {
        assert_eq!(created_per_user.get(id), Some(&1), "acknowledged user {id}");
    }
    assert!(created_per_user.values().all(|n| *n == 1), "a user.created event twice");

    // Every event after the endpoint's creation reaches the receiver (at least once).
    let expected: BTreeSet<String> = events.iter().map(|e| e.1.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing: Vec<String> = {
            let g = received.lock().unwrap();
            expected
                .iter()
                .filter(|id| !g.count.contains_key(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events never arrived, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let g = received.lock().unwrap();
    assert!(
        g.bad_signatures.is_empty(),
        "signatures that did not verify: {:?}",
        g.bad_signatures
    );
    let duplicates: usize = g.count.values().map(|n| n - 1).sum();
    eprintln!(
        "{} acknowledged creates, {} unacknowledged requests, {} events delivered ({} duplicate deliveries) across {KILLS} SIGKILLs",
        acked.len(),
        unacknowledged.load(Ordering::Relaxed),
        expected.len(),
        duplicates
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_without_losing_events_or_deliveries() {
    crash_and_recover(Database::create(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill_without_losing_events_or_deliveries() {
    if pg_admin_url().is_none() {
        skip_note("postgres_survives_sigkill_without_losing_events_or_deliveries");
        return;
    }
    crash_and_recover(Database::create(Backend::Postgres).await).await;
}
