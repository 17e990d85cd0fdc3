//! Outbound provisioning survives crashes: the real `rollcall serve` is killed with SIGKILL several
//! times while SCIM writes arrive and its outbound worker pushes them on to a real SCIM server
//! (scim2-server), and restarted on the same database. Afterwards, once the worker has caught up:
//!
//! - every user Rollcall has is on the target exactly once (by its externalId, Rollcall's id): no
//!   create cut by the crash made a second one;
//! - no change was lost: every acknowledged title change is there;
//! - the mapping table has every user synced, none failed.
//!
//! Runs on SQLite always, and on PostgreSQL when `ROLLCALL_TEST_DATABASE_URL` names a server.

#[path = "../../outbound/tests/downstream/mod.rs"]
mod downstream;

use downstream::{Downstream, TOKEN};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const KILLS: usize = 3;
const WRITERS: usize = 2;

fn pg_admin_url() -> Option<String> {
    ["ROLLCALL_TEST_DATABASE_URL", "DATABASE_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// The test's database: a SQLite file, or a PostgreSQL database dropped afterwards.
struct Database {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Database {
    async fn sqlite() -> Database {
        let dir = tempfile::tempdir().unwrap();
        Database {
            url: format!("sqlite://{}", dir.path().join("durable.db").display()),
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres(admin: &str) -> Database {
        let name = format!("rollcall_durable_{}", uuid::Uuid::new_v4().simple());
        let mut c = PgConnection::connect(admin).await.expect("connect to PostgreSQL");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await
            .expect("create database");
        let _ = c.close().await;
        let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
        let start = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[start..].find('/').map_or(base.len(), |i| start + i);
        let mut url = format!("{}/{name}", &base[..host_end]);
        if let Some(q) = query {
            url = format!("{url}?{q}");
        }
        Database {
            url,
            _dir: None,
            pg: Some((admin.to_string(), name)),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut c).await;
                        let _ = c.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A `rollcall` command on `database`, with the settings the test controls and nothing else.
fn rollcall(database: &str) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
            cmd.env_remove(k);
        }
    }
    // Every node of one database has the same secrets key (required on PostgreSQL).
    cmd.env("ROLLCALL_SECRETS_KEY", "44".repeat(32));
    cmd.env("ROLLCALL_LOG", "warn")
        .env("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")
        .env("ROLLCALL_WEBHOOK_POLL_INTERVAL_MS", "100")
        .env("ROLLCALL_WEBHOOK_TIMEOUT_MS", "3000")
        // Writers as fast as the server goes: without the fair-share limits.
        .env("ROLLCALL_RATE_LIMIT_PER_SECOND", "0")
        .env("ROLLCALL_MAX_IN_FLIGHT_PER_CONNECTION", "1000")
        .arg("--database")
        .arg(database);
    cmd
}

fn cli_json(database: &str, args: &[&str]) -> Value {
    let out = rollcall(database).args(args).output().expect("run rollcall");
    assert!(
        out.status.success(),
        "rollcall {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `rollcall serve` on a fixed address, killed with SIGKILL when dropped.
struct Server(Child);

impl Server {
    async fn start(database: &str, listen: &str, http: &reqwest::Client) -> Server {
        let child = rollcall(database)
            .args(["serve", "--listen", listen, "--no-bootstrap"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollcall serve");
        let mut server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("http://{listen}/readyz")).send().await
                && r.status().is_success()
            {
                return server;
            }
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("rollcall serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "rollcall serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, requests and deliveries cut mid-way.
    fn kill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rand_ms(max: u64) -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64)
        % max
}

/// A free loopback address for the server (kept across restarts).
fn free_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn crash_and_recover(db: Database) {
    let down = Downstream::start().await;
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
    let org = cli_json(&db.url, &["org", "create", "--name", "acme", "--json"]);
    let org_id = org["id"].as_str().unwrap().to_string();
    let conn = cli_json(&db.url, &["connection", "create", "--org", "acme", "--json"]);
    let (conn_id, token) = (
        conn["id"].as_str().unwrap().to_string(),
        conn["token"].as_str().unwrap().to_string(),
    );
    let listen = free_address();
    let mut server = Server::start(&db.url, &listen, &http).await;
    let targets = format!("http://{listen}/api/v1/organizations/{org_id}/provisioning-targets");
    let t: Value = http
        .post(&targets)
        .bearer_auth(&key)
        .json(
            &json!({"name": "Downstream", "base_url": down.url, "auth": {"kind": "bearer", "token": TOKEN},
                      "deletion_threshold": {"max_percent": null, "max_users": null}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target_id = t["id"].as_str().expect("a target").to_string();
    let r = http
        .post(format!("{targets}/{target_id}/approve"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Writers: each creates a user, then changes its title; a 2xx is an acknowledged change.
    let stop = Arc::new(AtomicBool::new(false));
    let titles: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, stop, titles) = (http.clone(), stop.clone(), titles.clone());
        let base = format!("http://{listen}/scim/v2/{conn_id}");
        let token = token.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({"schemas": [USER_SCHEMA], "userName": format!("w{w}-{i}@example.com"),
                                  "emails": [{"value": format!("w{w}-{i}@example.com"), "primary": true}]});
                let created = http
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await;
                let id = match created {
                    Ok(r) if r.status().as_u16() == 201 => match r.json::<Value>().await {
                        Ok(doc) => doc["id"].as_str().unwrap().to_string(),
                        Err(_) => continue,
                    },
                    _ => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let title = format!("title {i}");
                let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                   "Operations": [{"op": "replace", "path": "title", "value": title}]});
                let changed = http
                    .patch(format!("{base}/Users/{id}"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(patch.to_string())
                    .send()
                    .await;
                if matches!(changed, Ok(ref r) if r.status().is_success()) {
                    titles.lock().unwrap().insert(id, title);
                }
            }
        }));
    }
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(800 + rand_ms(400))).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
        server = Server::start(&db.url, &listen, &http).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let titles = titles.lock().unwrap().clone();
    assert!(titles.len() > 20, "too few writes to mean anything: {}", titles.len());

    // Every user of Rollcall ends up on the target once, with its last acknowledged title.
    let mut rollcall_users: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://{listen}/api/v1/organizations/{org_id}/users?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rollcall_users.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // A crashed node's lease (30 s) must expire before the target is pushed again, and then the
    // backlog goes to a Python server on a loaded machine: the deadline is generous (this is not a
    // measure of speed; rollcall-bench outbound is).
    let caught_up = Instant::now();
    let deadline = caught_up + Duration::from_secs(300);
    loop {
        let remote = down.users().await;
        let mut by_external: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for u in &remote {
            if let Some(x) = u["externalId"].as_str() {
                by_external.entry(x.to_string()).or_default().push(u);
            }
        }
        let dups: Vec<&String> = by_external
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| k)
            .collect();
        assert!(dups.is_empty(), "users made twice on the target: {dups:?}");
        let missing = rollcall_users
            .iter()
            .filter(|id| !by_external.contains_key(*id))
            .count();
        let stale = titles
            .iter()
            .filter(|(id, title)| {
                by_external
                    .get(*id)
                    .is_none_or(|v| v[0]["title"].as_str() != Some(title.as_str()))
            })
            .count();
        if missing == 0 && stale == 0 && remote.len() == rollcall_users.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} users never reached the target, {stale} title changes lost ({} remote users)",
            rollcall_users.len(),
            remote.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Value = http
        .get(format!("{targets}/{target_id}/objects?state=failed"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed["data"], json!([]), "no object failed");
    eprintln!(
        "{} users, {} acknowledged title changes, all on the target once across {KILLS} SIGKILLs \
         ({:.1} s after the writers stopped)",
        rollcall_users.len(),
        titles.len(),
        caught_up.elapsed().as_secs_f64()
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbound_survives_sigkill_without_duplicates_or_lost_changes() {
    crash_and_recover(Database::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbound_survives_sigkill_without_duplicates_or_lost_changes() {
    let Some(admin) = pg_admin_url() else {
        eprintln!("skipped: set ROLLCALL_TEST_DATABASE_URL to a postgres:// URL");
        return;
    };
    crash_and_recover(Database::postgres(&admin).await).await;
}
