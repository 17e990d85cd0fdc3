//! Secrets at rest and SQLite backups against the real binary (#18):
//!
//! - a webhook signing secret created through a running `rollcall serve` is nowhere in the
//!   database's files in clear; `serve` refuses to start without the key its secrets are encrypted
//!   under, or with another; `rollcall secrets rotate-key` (refused while a server runs)
//!   re-encrypts them and deliveries still verify with the same `whsec_`; a secret left in clear
//!   by an older version is encrypted when `serve` starts;
//! - `rollcall backup` copies the database while a server writes users through SCIM; `rollcall
//!   restore` puts the copy at a fresh path, where a server (given the key) has the users, their
//!   events, and the SCIM token that worked before;
//! - on PostgreSQL (when `ROLLCALL_TEST_DATABASE_URL` names a server) `serve` needs a key, and a
//!   rotation is refused while a node is connected.

use axum::body::Bytes;
use axum::http::HeaderMap;
use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use serde_json::{Value, json};
use sqlx::Connection as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A `rollcall` command on `database` with only the settings the test gives.
fn command(database: &str, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ROLLCALL_") || k == "DATABASE_URL" {
            c.env_remove(k);
        }
    }
    c.env("ROLLCALL_LOG", "error")
        .env("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")
        .env("ROLLCALL_WEBHOOK_POLL_INTERVAL_MS", "50")
        .env("ROLLCALL_RATE_LIMIT_PER_SECOND", "0")
        .env("ROLLCALL_MAX_IN_FLIGHT_PER_CONNECTION", "1000")
        .arg("--database")
        .arg(database)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn rollcall(database: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(database, env).args(args).output().expect("run rollcall")
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "rollcall failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "rollcall succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A running `rollcall serve`; killed when dropped.
struct Server {
    child: Child,
    origin: String,
    stderr: PathBuf,
}

impl Server {
    fn start(database: &str, env: &[(&str, &str)], stderr: PathBuf) -> Server {
        let mut child = command(database, env)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start rollcall serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut origin = None;
        for line in lines.by_ref() {
            if let Some(a) = line.unwrap().strip_prefix("Listening on ") {
                origin = Some(a.trim().to_string());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let Some(origin) = origin else {
            let _ = child.kill();
            panic!(
                "rollcall serve did not start: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        Server { child, origin, stderr }
    }

    /// SIGTERM, and waits for the process to end.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rollcall serve` that must refuse to start: its error output.
fn serve_refused(database: &str, env: &[(&str, &str)]) -> String {
    let out = command(database, env)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    failed(out)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The deliveries a receiver got: (event type, whether the signature verified with the secret).
type Deliveries = Arc<Mutex<Vec<(String, bool)>>>;

async fn start_receiver(secret: Arc<Mutex<String>>) -> (String, Deliveries) {
    let got: Deliveries = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (sink, secret) = (sink.clone(), secret.lock().unwrap().clone());
            async move {
                let verified = standardwebhooks::Webhook::new(&secret)
                    .and_then(|w| w.verify(&body, &headers))
                    .is_ok();
                let kind = serde_json::from_slice::<Value>(&body).unwrap()["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                sink.lock().unwrap().push((kind, verified));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// Creates an organization through the API and waits for its `organization.created` delivery,
/// which must verify with the receiver's secret.
async fn org_delivered(srv: &Server, key: &str, name: &str, got: &Deliveries) {
    let before = got.lock().unwrap().len();
    let r = http()
        .post(format!("{}/api/v1/organizations", srv.origin))
        .bearer_auth(key)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Longer than a webhook lease (at least 30 s): a server stopped between a delivery's arrival
    // and the release of its lease leaves the lease to expire before the next server may deliver.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let g = got.lock().unwrap().clone();
        if g.len() > before {
            assert_eq!(g[before], ("organization.created".to_string(), true), "{g:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery for {name}: {}",
            std::fs::read_to_string(&srv.stderr).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The bytes of a SQLite database's files (main file, WAL, shared memory), after a checkpoint.
async fn database_bytes(db: &Path) -> Vec<u8> {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        bytes.extend(std::fs::read(PathBuf::from(p)).unwrap_or_default());
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_are_encrypted_at_rest_and_survive_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("r.db");
    let db = format!("sqlite://{}", db_path.display());
    let key_file = dir.path().join("rollcall-secrets.key");
    let log = |n: &str| dir.path().join(format!("serve-{n}.log"));
    let api_key = json_of(rollcall(
        &db,
        &["--create", "api-key", "create", "--name", "t", "--json"],
        &[],
    ))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!key_file.exists(), "only serve creates a key");

    // First start without a key: one is created beside the database, for its owner only.
    let srv = Server::start(&db, &[], log("1"));
    let first_key = std::fs::read_to_string(&key_file).expect("serve created the key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let secret = Arc::new(Mutex::new(String::new()));
    let (hook_url, got) = start_receiver(secret.clone()).await;
    let created: Value = http()
        .post(format!("{}/api/v1/webhooks", srv.origin))
        .bearer_auth(&api_key)
        .json(&json!({ "url": hook_url, "event_types": ["organization.*"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let whsec = created["secret"].as_str().expect("the secret").to_string();
    assert!(whsec.starts_with("whsec_"), "{created}");
    *secret.lock().unwrap() = whsec.clone();
    org_delivered(&srv, &api_key, "one", &got).await;
    srv.stop();

    // The secret is in none of the database's files, in clear; what is there is sealed.
    let bytes = database_bytes(&db_path).await;
    let body = whsec.trim_start_matches("whsec_");
    assert!(
        !contains(&bytes, &whsec) && !contains(&bytes, body),
        "the signing secret is in the database in clear"
    );
    assert!(
        contains(&bytes, "enc:v1:"),
        "the sealed secret is stored (the search works)"
    );

    // Without the key (moved away), serve refuses to start, says what to set, and makes no new key.
    let status = json_of(rollcall(&db, &["secrets", "status", "--json"], &[]));
    let first_id = status["key_id"].as_str().unwrap().to_string();
    assert_eq!(status["secrets"]["by_key"][&first_id], 1, "{status}");
    let saved = dir.path().join("saved.key");
    std::fs::rename(&key_file, &saved).unwrap();
    let refused = serve_refused(&db, &[]);
    assert!(
        refused.contains("ROLLCALL_SECRETS_KEY") && refused.contains(&first_id) && refused.contains("no secrets key"),
        "{refused}"
    );
    assert!(!key_file.exists(), "serve made a new key over encrypted secrets");
    // With another key, it refuses too, naming both keys.
    let other = ok(rollcall(&db, &["secrets", "generate-key"], &[]));
    let refused = serve_refused(&db, &[("ROLLCALL_SECRETS_KEY", other.trim())]);
    assert!(
        refused.contains(&first_id) && refused.contains("but the configured key"),
        "{refused}"
    );
    // With the key given as a file, it starts.
    let srv = Server::start(&db, &[("ROLLCALL_SECRETS_KEY_FILE", saved.to_str().unwrap())], log("2"));
    srv.stop();
    std::fs::rename(&saved, &key_file).unwrap();

    // Rotation: refused while a server has the database open, then every secret re-encrypted.
    let new_key = dir.path().join("new.key");
    ok(rollcall(
        &db,
        &["secrets", "generate-key", "--out", new_key.to_str().unwrap()],
        &[],
    ));
    let srv = Server::start(&db, &[], log("3"));
    let refused = failed(rollcall(
        &db,
        &["secrets", "rotate-key", "--new-key-file", new_key.to_str().unwrap()],
        &[],
    ));
    assert!(refused.contains("in use"), "{refused}");
    srv.stop();
    let rotated = json_of(rollcall(
        &db,
        &[
            "secrets",
            "rotate-key",
            "--new-key-file",
            new_key.to_str().unwrap(),
            "--json",
        ],
        &[],
    ));
    assert_eq!(rotated["resealed"], 1, "{rotated}");
    let new_id = rotated["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, first_id);
    // The default key file now holds the new key; the old one is kept aside for old backups.
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        std::fs::read_to_string(&new_key).unwrap()
    );
    let aside = PathBuf::from(rotated["previous_key_file"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&aside).unwrap(), first_key);
    let status = json_of(rollcall(&db, &["secrets", "status", "--json"], &[]));
    assert_eq!(
        (status["key_id"].as_str(), status["secrets"]["by_key"][&new_id].as_u64()),
        (Some(new_id.as_str()), Some(1)),
        "{status}"
    );
    assert!(status["secrets"]["by_key"].get(&first_id).is_none(), "{status}");
    // The same whsec still signs the deliveries.
    let srv = Server::start(&db, &[], log("4"));
    org_delivered(&srv, &api_key, "two", &got).await;
    srv.stop();

    // A secret left in clear by an older version is read, then encrypted when serve starts.
    {
        let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::query("UPDATE webhook_endpoints SET secret = ?")
            .bind(&whsec)
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let status = json_of(rollcall(&db, &["secrets", "status", "--json"], &[]));
    assert_eq!(status["secrets"]["clear"], 1, "{status}");
    let srv = Server::start(&db, &[], log("5"));
    let status = json_of(rollcall(&db, &["secrets", "status", "--json"], &[]));
    assert_eq!(
        (
            status["secrets"]["clear"].as_u64(),
            status["secrets"]["by_key"][&new_id].as_u64()
        ),
        (Some(0), Some(1)),
        "{status}"
    );
    org_delivered(&srv, &api_key, "three", &got).await;
    srv.stop();
    let bytes = database_bytes(&db_path).await;
    assert!(
        !contains(&bytes, &whsec),
        "the secret is still in the database in clear after its migration"
    );
}

/// Backs up while SCIM writes go on, restores at a fresh path, and serves from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_while_serving_then_restore_and_serve_elsewhere() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", a.path().join("live.db").display());
    let api_key = json_of(rollcall(
        &db,
        &["--create", "api-key", "create", "--name", "t", "--json"],
        &[],
    ))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    ok(rollcall(&db, &["org", "create", "--name", "acme"], &[]));
    let conn = json_of(rollcall(&db, &["connection", "create", "--org", "acme", "--json"], &[]));
    let (conn_id, token) = (
        conn["id"].as_str().unwrap().to_string(),
        conn["token"].as_str().unwrap().to_string(),
    );
    let srv = Server::start(&db, &[], a.path().join("serve.log"));
    // A webhook endpoint, so that the database holds an encrypted secret.
    let r = http()
        .post(format!("{}/api/v1/webhooks", srv.origin))
        .bearer_auth(&api_key)
        .json(&json!({ "url": "http://127.0.0.1:9/hook", "event_types": ["organization.*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Writers create users before, during and after the backup.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    let created = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: usize = 4;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (base, token, created, stop) = (
            format!("{}/scim/v2/{conn_id}", srv.origin),
            token.clone(),
            created.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let client = http();
            let mut i = 0;
            while !stop.load(SeqCst) {
                let r = client
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .json(&json!({"schemas": [USER_SCHEMA], "userName": format!("u{w}-{i}@example.com")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                created.fetch_add(1, SeqCst);
                i += 1;
            }
        }));
    }
    while created.load(SeqCst) < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backup = b.path().join("backup.db");
    let before = created.load(SeqCst);
    let (db2, backup2) = (db.clone(), backup.clone());
    let out =
        tokio::task::spawn_blocking(move || rollcall(&db2, &["backup", backup2.to_str().unwrap(), "--json"], &[]))
            .await
            .unwrap();
    let during = created.load(SeqCst);
    let summary = json_of(out);
    while created.load(SeqCst) < during + 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let total = created.load(SeqCst);
    let users = summary["summary"]["users"].as_u64().unwrap() as usize;
    assert!(
        // A create the backup saw may not be counted yet when the backup ends (its 201 still on the
        // way): at most one per writer.
        (before..=during + WRITERS).contains(&users) && users < total,
        "the backup has {users} users; {before} were created before it started, {during} when it ended, {total} in all"
    );
    assert_eq!(summary["summary"]["secrets"]["total"], 1, "{summary}");
    assert_eq!(
        summary["summary"]["secrets"]["by_key"].as_object().unwrap().len(),
        1,
        "{summary}"
    );
    // An existing file is not overwritten without --force.
    let refused = failed(rollcall(&db, &["backup", backup.to_str().unwrap()], &[]));
    assert!(refused.contains("--force"), "{refused}");
    srv.stop();

    // Restore at a fresh path (nothing to confirm), then serve from there.
    let c = tempfile::tempdir().unwrap();
    let restored = format!("sqlite://{}", c.path().join("restored.db").display());
    let said = ok(rollcall(&restored, &["restore", backup.to_str().unwrap()], &[]));
    assert!(said.contains("not configured here"), "{said}");
    // Its webhook secret is encrypted under the key beside the original database.
    let refused = serve_refused(&restored, &[]);
    assert!(refused.contains("no secrets key is configured"), "{refused}");
    let key_file = a.path().join("rollcall-secrets.key");
    let key_env = [("ROLLCALL_SECRETS_KEY_FILE", key_file.to_str().unwrap())];
    let srv = Server::start(&restored, &key_env, c.path().join("serve.log"));
    let list: Value = http()
        .get(format!("{}/scim/v2/{conn_id}/Users?count=1", srv.origin))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["totalResults"].as_u64(), Some(users as u64), "{list}");
    // Every user has its event, and no event is without its user: one consistent moment.
    let mut events = 0;
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/api/v1/events?type=user.created&limit=1000", srv.origin);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = http()
            .get(url)
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        events += page["data"].as_array().unwrap().len();
        after = page["next_cursor"].as_str().map(str::to_string);
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(events, users);
    // Refused while that server runs; and on PostgreSQL, which has tools of its own.
    let refused = failed(rollcall(
        &restored,
        &["restore", backup.to_str().unwrap(), "--yes"],
        &key_env,
    ));
    assert!(refused.contains("in use"), "{refused}");
    srv.stop();
    let pg = "postgres://rollcall@127.0.0.1:1/rollcall";
    assert!(failed(rollcall(pg, &["backup", "x.db"], &[])).contains("pg_dump"));
    assert!(failed(rollcall(pg, &["restore", backup.to_str().unwrap(), "--yes"], &[])).contains("pg_restore"));
    // Over an existing database only with --yes (no terminal here to ask on).
    let refused = failed(rollcall(&restored, &["restore", backup.to_str().unwrap()], &[]));
    assert!(refused.contains("--yes"), "{refused}");
    ok(rollcall(
        &restored,
        &["restore", backup.to_str().unwrap(), "--yes"],
        &[],
    ));
}

/// On PostgreSQL a key is required, and a rotation is refused while a node is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_requires_a_key_and_rotates_with_the_nodes_stopped() {
    if pg_admin_url().is_none() {
        skip_note("postgres_requires_a_key_and_rotates_with_the_nodes_stopped");
        return;
    }
    let pg = TestDatabase::create(Backend::Postgres, "rollcall_secrets").await;
    let db = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let api_key = json_of(rollcall(db, &["api-key", "create", "--name", "t", "--json"], &[]))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = serve_refused(db, &[]);
    assert!(refused.contains("every node must be given the same key"), "{refused}");

    let old_key = ok(rollcall(db, &["secrets", "generate-key"], &[])).trim().to_string();
    let old = [("ROLLCALL_SECRETS_KEY", old_key.as_str())];
    let srv = Server::start(db, &old, dir.path().join("serve-1.log"));
    let secret = Arc::new(Mutex::new(String::new()));
    let (hook_url, got) = start_receiver(secret.clone()).await;
    let created: Value = http()
        .post(format!("{}/api/v1/webhooks", srv.origin))
        .bearer_auth(&api_key)
        .json(&json!({ "url": hook_url, "event_types": ["organization.*"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    *secret.lock().unwrap() = created["secret"].as_str().unwrap().to_string();
    org_delivered(&srv, &api_key, "one", &got).await;

    let new_key = dir.path().join("new.key");
    ok(rollcall(
        db,
        &["secrets", "generate-key", "--out", new_key.to_str().unwrap()],
        &[],
    ));
    let rotate = [
        "secrets",
        "rotate-key",
        "--new-key-file",
        new_key.to_str().unwrap(),
        "--json",
    ];
    let refused = failed(rollcall(db, &rotate, &old));
    assert!(refused.contains("stop every node"), "{refused}");
    srv.stop();
    let rotated = json_of(rollcall(db, &rotate, &old));
    assert_eq!(rotated["resealed"], 1, "{rotated}");
    // The old key no longer opens them; the new one does, and the same whsec signs.
    let refused = serve_refused(db, &old);
    assert!(refused.contains("but the configured key"), "{refused}");
    let new = [("ROLLCALL_SECRETS_KEY_FILE", new_key.to_str().unwrap())];
    let srv = Server::start(db, &new, dir.path().join("serve-2.log"));
    org_delivered(&srv, &api_key, "two", &got).await;
    srv.stop();
}

/// Where the key comes from: the TOML file names a key file (never the key), the variable and a key
/// file together are refused, and a malformed key is named as such.
#[test]
fn key_settings_are_read_and_misuse_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    ok(rollcall(&db, &["--create", "org", "create", "--name", "acme"], &[]));
    let key_file = dir.path().join("my.key");
    ok(rollcall(
        &db,
        &["secrets", "generate-key", "--out", key_file.to_str().unwrap()],
        &[],
    ));
    let refused = failed(rollcall(
        &db,
        &["secrets", "generate-key", "--out", key_file.to_str().unwrap()],
        &[],
    ));
    assert!(refused.contains("exists"), "{refused}");
    let toml = dir.path().join("rollcall.toml");
    std::fs::write(&toml, format!("secrets_key_file = {:?}\n", key_file.to_str().unwrap())).unwrap();
    let status = json_of(rollcall(
        &db,
        &["--config", toml.to_str().unwrap(), "secrets", "status", "--json"],
        &[],
    ));
    assert!(status["key_source"].as_str().unwrap().contains("my.key"), "{status}");
    std::fs::write(&toml, "secrets_key = \"c2VjcmV0\"\n").unwrap();
    let refused = failed(rollcall(&db, &["--config", toml.to_str().unwrap(), "org", "list"], &[]));
    assert!(refused.contains("secrets_key_file"), "{refused}");
    let both = [
        ("ROLLCALL_SECRETS_KEY", "55".repeat(32)),
        ("ROLLCALL_SECRETS_KEY_FILE", key_file.to_str().unwrap().to_string()),
    ];
    let both: Vec<(&str, &str)> = both.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(failed(rollcall(&db, &["secrets", "status"], &both)).contains("set one of them"));
    let refused = failed(rollcall(
        &db,
        &["org", "list"],
        &[("ROLLCALL_SECRETS_KEY", "not-a-key")],
    ));
    assert!(
        refused.contains("ROLLCALL_SECRETS_KEY") && refused.contains("32 bytes"),
        "{refused}"
    );
}

/// GET `path` of the management API, as JSON.
async fn api_get(srv: &Server, key: &str, path: &str) -> Value {
    let r = http()
        .get(format!("{}/api/v1/{path}", srv.origin))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// What the application sees of a database: organizations, connections, the directory with
/// memberships and roles, roles and mappings, webhook endpoints and every event.
async fn snapshot(srv: &Server, key: &str, org: &str, conn: &str) -> Value {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let page = api_get(srv, key, &format!("events?limit=1000&after={after}")).await;
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        after = page["next_cursor"].as_str().unwrap().to_string();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    let groups = api_get(srv, key, &format!("organizations/{org}/groups?limit=1000")).await;
    let mut members = Vec::new();
    for g in groups["data"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        members.push(api_get(srv, key, &format!("organizations/{org}/groups/{id}/members?limit=1000")).await);
    }
    let mut connections = api_get(srv, key, &format!("organizations/{org}/connections")).await;
    for c in connections["data"].as_array_mut().unwrap() {
        // When it was last called changes with this very check.
        c.as_object_mut().unwrap().remove("last_request_at");
        c.as_object_mut().unwrap().remove("last_user_agent");
    }
    json!({
        "organizations": api_get(srv, key, "organizations").await,
        "connections": connections,
        "users": api_get(srv, key, &format!("organizations/{org}/users?limit=1000")).await,
        "groups": groups,
        "members": members,
        "roles": api_get(srv, key, &format!("organizations/{org}/roles")).await,
        "mappings": api_get(srv, key, &format!("connections/{conn}/role-mappings")).await,
        "workspaces": api_get(srv, key, &format!("organizations/{org}/workspaces")).await,
        "workspace_mappings": api_get(srv, key, &format!("connections/{conn}/workspace-mappings")).await,
        "workspace_settings": api_get(srv, key, &format!("organizations/{org}/workspace-settings")).await,
        "webhooks": api_get(srv, key, "webhooks").await,
        "match_report": api_get(srv, key, &format!("connections/{conn}/match-report")).await,
        "events": events,
    })
}

/// `rollcall migrate-store` moves a populated SQLite database to PostgreSQL without the identity
/// provider, the application or the webhook consumers noticing: the same answers from the API,
/// the same SCIM token and API key, the same events with their sequence numbers (new ones after
/// them), the same webhook secret; a second copy into a database with data is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_everything_to_postgres() {
    if pg_admin_url().is_none() {
        skip_note("migrate_store_moves_everything_to_postgres");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("small.db").display());
    let key = json_of(rollcall(
        &db,
        &["--create", "api-key", "create", "--name", "app", "--json"],
        &[],
    ))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let org = json_of(rollcall(&db, &["org", "create", "--name", "acme", "--json"], &[]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let conn = json_of(rollcall(&db, &["connection", "create", "--org", "acme", "--json"], &[]));
    let (conn_id, token) = (
        conn["id"].as_str().unwrap().to_string(),
        conn["token"].as_str().unwrap().to_string(),
    );
    ok(rollcall(
        &db,
        &["role", "create", "--org", "acme", "--key", "admin"],
        &[],
    ));
    ok(rollcall(
        &db,
        &[
            "role-mapping",
            "create",
            "--connection",
            &conn_id,
            "--role",
            "admin",
            "--group-name",
            "Eng",
        ],
        &[],
    ));
    // Workspaces too: one mapped from the group, a default one, one for every group.
    ok(rollcall(
        &db,
        &["workspace", "create", "--org", "acme", "--key", "eng"],
        &[],
    ));
    ok(rollcall(
        &db,
        &["workspace", "create", "--org", "acme", "--key", "everyone"],
        &[],
    ));
    ok(rollcall(
        &db,
        &[
            "workspace-mapping",
            "create",
            "--connection",
            &conn_id,
            "--workspace",
            "eng",
            "--group-name",
            "Eng",
        ],
        &[],
    ));
    ok(rollcall(
        &db,
        &[
            "workspace-settings",
            "set",
            "--org",
            "acme",
            "--default",
            "everyone",
            "--auto-create",
            "on",
        ],
        &[],
    ));
    // Both nodes answer under the same public URL, as a move behind one load balancer would.
    const PUBLIC: (&str, &str) = ("ROLLCALL_PUBLIC_URL", "https://scim.acme-app.example");
    let srv = Server::start(&db, &[PUBLIC], dir.path().join("sqlite.log"));
    let scim = format!("{}/scim/v2/{conn_id}", srv.origin);
    let client = http();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = client
            .post(format!("{scim}/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .json(
                &json!({"schemas": [USER_SCHEMA], "userName": format!("u{i}@acme.example"),
                "emails": [{"value": format!("u{i}@acme.example"), "primary": true}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    let r = client
        .post(format!("{scim}/Groups"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Eng",
            "members": [{"value": ids[0]}, {"value": ids[1]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .delete(format!("{scim}/Users/{}", ids[4]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .post(format!("{}/api/v1/connections/{conn_id}/match-report", srv.origin))
        .bearer_auth(&key)
        .json(&json!({"accounts": [{"email": "u0@acme.example", "roles": ["admin"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{}/api/v1/webhooks", srv.origin))
        .bearer_auth(&key)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "org_id": org, "event_types": ["user.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The dispatcher moves the endpoint's cursor past the events it is not subscribed to (its own
    // creation among them): let it settle first, so that the copy is taken of a still state.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last_event = api_get(&srv, &key, "events?limit=1000").await["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["sequence"].as_i64().unwrap())
            .max()
            .unwrap();
        let hooks = api_get(&srv, &key, "webhooks").await;
        if hooks["data"][0]["last_sequence"].as_i64() == Some(last_event) {
            break;
        }
        assert!(Instant::now() < deadline, "the dispatcher did not catch up: {hooks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = snapshot(&srv, &key, &org, &conn_id).await;
    assert!(before["events"].as_array().unwrap().len() > 10, "{before}");
    srv.stop();

    let pg = TestDatabase::create(Backend::Postgres, "rollcall_secrets").await;
    let out = json_of(rollcall(
        &db,
        &["migrate-store", "--from", &db, "--to", pg.url(), "--json"],
        &[],
    ));
    assert_eq!(out["tables"]["resources"], 6, "{out}");
    assert_eq!(out["tables"]["group_members"], 2, "{out}");
    assert_eq!(out["tables"]["webhook_endpoints"], 1, "{out}");
    assert_eq!(out["tables"]["match_reports"], 1, "{out}");
    // The four users left (one was deleted) in the default workspace, the group's two members in
    // its mapped one and in its own.
    assert_eq!(out["tables"]["user_workspaces"], 8, "{out}");
    assert_eq!(out["tables"]["workspaces"], 3, "{out}");
    assert_eq!(out["secrets_key_ids"].as_array().unwrap().len(), 1, "{out}");

    // The PostgreSQL node, with the key that was beside the SQLite database.
    let key_file = dir.path().join("rollcall-secrets.key");
    let key_env = [("ROLLCALL_SECRETS_KEY_FILE", key_file.to_str().unwrap()), PUBLIC];
    let srv = Server::start(pg.url(), &key_env, dir.path().join("pg.log"));
    let after = snapshot(&srv, &key, &org, &conn_id).await;
    for (part, b) in before.as_object().unwrap() {
        let a = &after[part];
        if a != b {
            let (ba, aa) = (b.to_string(), a.to_string());
            let at = ba.bytes().zip(aa.bytes()).position(|(x, y)| x != y).unwrap_or(0);
            panic!(
                "{part} differs after the move, at {at}: before ...{} / after ...{}",
                &ba[at.saturating_sub(200)..(at + 200).min(ba.len())],
                &aa[at.saturating_sub(200)..(at + 200).min(aa.len())]
            );
        }
    }
    // The identity provider's token works, and what it writes continues the event log.
    let scim = format!("{}/scim/v2/{conn_id}", srv.origin);
    let r = client
        .get(format!("{scim}/Users/{}", ids[0]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{scim}/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .json(&json!({"schemas": [USER_SCHEMA], "userName": "new@acme.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let last_before = before["events"].as_array().unwrap().last().unwrap()["sequence"]
        .as_i64()
        .unwrap();
    let newest = api_get(&srv, &key, "events?type=user.created&limit=1000").await;
    let newest = newest["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(newest["data"]["attributes"]["userName"], "new@acme.example");
    assert!(newest["sequence"].as_i64().unwrap() > last_before, "{newest}");
    // The webhook secret opens with the same key: its endpoint still signs (a test message is
    // attempted, refused by the network only because nothing listens on port 9).
    let wh = api_get(&srv, &key, "webhooks").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .post(format!("{}/api/v1/webhooks/{wh}/ping", srv.origin))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop();

    // A second copy into a database that has data is refused and changes nothing.
    let err = failed(rollcall(&db, &["migrate-store", "--from", &db, "--to", pg.url()], &[]));
    assert!(err.contains("not empty"), "{err}");
}

/// `rollcall export --org` writes one organization as JSON, while `serve` runs: its users with
/// attributes and roles, groups with members, every event of it, its webhook endpoints without
/// secrets; nothing of another organization; to a new file only the owner can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_one_organization() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("export.db").display());
    let key = json_of(rollcall(
        &db,
        &["--create", "api-key", "create", "--name", "app", "--json"],
        &[],
    ))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let mut orgs = Vec::new();
    for name in ["acme", "other"] {
        let org = json_of(rollcall(&db, &["org", "create", "--name", name, "--json"], &[]))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let conn = json_of(rollcall(&db, &["connection", "create", "--org", name, "--json"], &[]));
        orgs.push((
            org,
            conn["id"].as_str().unwrap().to_string(),
            conn["token"].as_str().unwrap().to_string(),
        ));
    }
    let srv = Server::start(&db, &[], dir.path().join("serve.log"));
    let client = http();
    for (i, (_, conn, token)) in orgs.iter().enumerate() {
        let scim = format!("{}/scim/v2/{conn}", srv.origin);
        let mut ids = Vec::new();
        for u in 0..3 {
            let r = client
                .post(format!("{scim}/Users"))
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .json(
                    &json!({"schemas": [USER_SCHEMA], "userName": format!("org{i}-user{u}@example.com"),
                    "name": {"givenName": format!("G{u}")}}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        }
        let r = client
            .post(format!("{scim}/Groups"))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .json(
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Eng",
                "members": [{"value": ids[0]}, {"value": ids[1]}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (acme, ..) = orgs[0].clone();
    let r = client
        .post(format!("{}/api/v1/webhooks", srv.origin))
        .bearer_auth(&key)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "org_id": acme}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let secret = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();

    // While serve runs.
    let text = ok(rollcall(&db, &["export", "--org", "acme"], &[]));
    let doc: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(doc["format"], "rollcall-export/1");
    assert_eq!(doc["organization"]["id"], acme.as_str());
    assert_eq!(doc["connections"].as_array().unwrap().len(), 1);
    assert!(doc["connections"][0]["policy"].is_object());
    assert_eq!(
        doc["workspace_settings"],
        json!({"default_workspace": null, "auto_create": false})
    );
    assert!(doc["workspaces"].as_array().unwrap().is_empty());
    assert!(doc["connections"][0]["workspace_mappings"].is_array());
    let users = doc["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert!(
        users
            .iter()
            .all(|u| u["user_name"].as_str().unwrap().starts_with("org0-"))
    );
    assert_eq!(
        users[0]["attributes"]["name"]["givenName"], "G0",
        "full attributes: {}",
        users[0]
    );
    assert_eq!(doc["groups"][0]["members"].as_array().unwrap().len(), 2);
    // Every event of the organization, as the Events API gives them, and only those.
    let feed = client
        .get(format!("{}/api/v1/events?org_id={acme}&limit=1000", srv.origin))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(doc["events"], feed["data"]);
    assert_eq!(doc["webhooks"].as_array().unwrap().len(), 1);
    assert!(!text.contains("org1-"), "another organization's data");
    assert!(!text.contains(&secret), "a webhook secret in the export");
    assert!(!text.contains("token_hash"), "{text}");

    // To a new private file; an existing one is refused.
    let out = dir.path().join("acme.json");
    let said = rollcall(&db, &["export", "--org", "acme", "--out", out.to_str().unwrap()], &[]);
    assert!(
        String::from_utf8_lossy(&said.stderr).contains("3 users, 1 groups (2 memberships)"),
        "{said:?}"
    );
    ok(said);
    let from_file: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(from_file["users"], doc["users"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let err = failed(rollcall(
        &db,
        &["export", "--org", "acme", "--out", out.to_str().unwrap()],
        &[],
    ));
    assert!(err.contains("exists"), "{err}");
    let err = failed(rollcall(&db, &["export", "--org", "nope"], &[]));
    assert!(err.contains("no organization"), "{err}");
    srv.stop();
}
