//! The command line records its changes with a `cli` actor, and the event retention and request log
//! settings of `serve` are checked before it starts.

use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{Actor, EventQuery, EventStore, ResourceStore, TenancyStore, WebhookStore};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("rollcall-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rollcall(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("DATABASE_URL")
        .env_remove("ROLLCALL_CONFIG")
        .env_remove("ROLLCALL_PUBLIC_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rollcall")
}

#[track_caller]
fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "rollcall failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn command_line_changes_are_recorded_as_cli() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("cli.db").display());
    ok(&rollcall(
        &["--database", &db, "--create", "org", "create", "--name", "Acme"],
        &[],
    ));
    ok(&rollcall(
        &[
            "--database",
            &db,
            "connection",
            "create",
            "--org",
            "Acme",
            "--idp",
            "okta",
        ],
        &[],
    ));
    ok(&rollcall(
        &["--database", &db, "api-key", "create", "--name", "ops"],
        &[],
    ));

    let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
        .await
        .expect("open the database");
    let events = store
        .query_events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(types, ["organization.created", "connection.created", "api_key.created"]);
    for e in &events {
        assert_eq!(e.actor, Actor::Cli, "{e:?}");
        assert_eq!((e.user_agent.as_deref(), e.request_id.as_deref()), (None, None));
    }
}

#[test]
fn bad_activity_settings_are_refused() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("serve.db").display());
    let serve = [
        "--database",
        db.as_str(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-bootstrap",
    ];
    for (var, value, needle) in [
        ("ROLLCALL_REQUEST_LOG_BUFFER", "0", "request_log_buffer"),
        (
            "ROLLCALL_REQUEST_LOG_PER_CONNECTION",
            "1000000",
            "request_log_per_connection",
        ),
        ("ROLLCALL_EVENT_RETENTION_DAYS", "100000", "event_retention_days"),
        ("ROLLCALL_EVENT_RETENTION_DAYS", "-1", "event_retention_days"),
    ] {
        let out = rollcall(&serve, &[(var, value)]);
        assert!(!out.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.to_lowercase().contains(needle), "{var}={value}: {stderr}");
    }
}

/// A command other than `serve`, run where there is no database, refuses and names the path it
/// looked at, and creates nothing; `--create` creates it.
#[test]
fn a_missing_database_is_refused_not_created() {
    let dir = TempDir::new();
    let file = dir.0.join("elsewhere.db");
    let db = format!("sqlite://{}", file.display());
    for args in [
        vec!["api-key", "create", "--name", "ops"],
        vec!["org", "list"],
        vec!["connection", "list"],
    ] {
        let out = rollcall(&[&["--database", db.as_str()], args.as_slice()].concat(), &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no database at") && stderr.contains(&file.display().to_string()),
            "{args:?}: {stderr}"
        );
        assert!(!file.exists(), "{args:?} created the database");
    }
    // Relative to the working directory, shown absolute.
    let out = Command::new(BIN)
        .args(["--database", "sqlite://relative.db", "org", "list"])
        .current_dir(&dir.0)
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("DATABASE_URL")
        .env_remove("ROLLCALL_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dir.0.join("relative.db").display().to_string()),
        "{stderr}"
    );
    ok(&rollcall(&["--database", &db, "--create", "org", "list"], &[]));
    assert!(file.exists());
}

/// Deleting a connection and revoking an API key are refused without `--yes` when there is no
/// terminal to ask on, and change nothing; with `--yes` they are done.
#[tokio::test]
async fn destructive_commands_need_confirmation() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("confirm.db").display());
    ok(&rollcall(
        &["--database", &db, "--create", "org", "create", "--name", "Acme"],
        &[],
    ));
    let conn = rollcall(
        &[
            "--database",
            &db,
            "connection",
            "create",
            "--org",
            "Acme",
            "--public-url",
            "https://scim.example.com",
            "--json",
        ],
        &[],
    );
    ok(&conn);
    let conn: serde_json::Value = serde_json::from_slice(&conn.stdout).unwrap();
    let id = conn["id"].as_str().unwrap();
    let key = rollcall(
        &["--database", &db, "api-key", "create", "--name", "ops", "--json"],
        &[],
    );
    ok(&key);
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap();
    let key_id = key["api_key"]["id"].as_str().unwrap();

    for args in [["connection", "delete", id], ["api-key", "revoke", key_id]] {
        let out = rollcall(&[&["--database", db.as_str()], args.as_slice()].concat(), &[]);
        assert!(!out.status.success(), "{args:?} went ahead without --yes");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--yes"), "{args:?}: {stderr}");
    }
    let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
        .await
        .unwrap();
    assert!(
        store.get_connection(id).await.unwrap().is_some(),
        "deleted without --yes"
    );
    let keys = store.list_api_keys().await.unwrap();
    assert!(keys.iter().all(|k| k.revoked_us.is_none()), "revoked without --yes");

    ok(&rollcall(
        &["--database", &db, "connection", "delete", id, "--yes"],
        &[],
    ));
    ok(&rollcall(
        &["--database", &db, "api-key", "revoke", key_id, "--yes"],
        &[],
    ));
    assert!(store.get_connection(id).await.unwrap().is_none());
    let keys = store.list_api_keys().await.unwrap();
    assert!(keys.iter().all(|k| k.revoked_us.is_some()));
}

/// `connection create` prints the base URL identity providers use: the public URL `rollcall serve`
/// recorded in the database (here the address it listened on, as it was given no public URL),
/// never a default port it did not listen on; before any server recorded one, it says it cannot
/// know.
#[test]
fn connection_create_prints_the_recorded_public_url() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("url.db").display());
    ok(&rollcall(
        &["--database", &db, "--create", "org", "create", "--name", "Acme"],
        &[],
    ));
    let create = |extra: &[&str]| {
        let out = rollcall(
            &[
                &[
                    "--database",
                    db.as_str(),
                    "connection",
                    "create",
                    "--org",
                    "Acme",
                    "--json",
                ],
                extra,
            ]
            .concat(),
            &[],
        );
        ok(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = create(&[]);
    assert_eq!(before["scim_base_url"], serde_json::Value::Null, "{before}");
    assert_eq!(
        before["scim_path"],
        format!("/scim/v2/{}", before["id"].as_str().unwrap())
    );
    let text = rollcall(&["--database", &db, "connection", "create", "--org", "Acme"], &[]);
    ok(&text);
    assert!(String::from_utf8_lossy(&text.stdout).contains("unknown here"));

    let mut serve = Command::new(BIN)
        .args(["--database", &db, "serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("ROLLCALL_PUBLIC_URL")
        .env("ROLLCALL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut listening = None;
    for line in BufReader::new(serve.stdout.take().unwrap()).lines() {
        if let Some(a) = line.unwrap().strip_prefix("Listening on ") {
            listening = Some(a.trim().to_string());
            break;
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let listening = listening.expect("serve printed its address");
    assert!(!listening.ends_with(":8080"), "{listening}");
    let after = create(&[]);
    let id = after["id"].as_str().unwrap();
    assert_eq!(after["scim_base_url"], format!("{listening}/scim/v2/{id}"), "{after}");
    // A URL given on the command line wins.
    let given = create(&["--public-url", "https://scim.example.com/"]);
    let id = given["id"].as_str().unwrap();
    assert_eq!(given["scim_base_url"], format!("https://scim.example.com/scim/v2/{id}"));
}

/// The operator's everyday commands: lists with a header or `--json` (the management API's views),
/// organizations renamed and deleted, connections disabled and enabled, roles and role mappings.
#[test]
fn operator_commands_cover_the_everyday_operations() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("ops.db").display());
    let run = |args: &[&str]| {
        let out = rollcall(&[&["--database", db.as_str()], args].concat(), &[]);
        ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json = |args: &[&str]| serde_json::from_str::<serde_json::Value>(&run(args)).unwrap();
    ok(&rollcall(
        &["--database", &db, "--create", "org", "create", "--name", "Acme"],
        &[],
    ));
    let orgs = run(&["org", "list"]);
    assert!(orgs.starts_with("ID\tNAME\tCREATED\n"), "{orgs}");
    let renamed = json(&["org", "rename", "Acme", "--name", "Acme Corp", "--json"]);
    assert_eq!(renamed["name"], "Acme Corp");
    assert!(renamed["created_at"].is_string(), "the API's view: {renamed}");
    assert_eq!(json(&["org", "list", "--json"])[0]["name"], "Acme Corp");

    let conn = json(&[
        "connection",
        "create",
        "--org",
        "Acme Corp",
        "--idp",
        "entra",
        "--public-url",
        "https://scim.example.com",
        "--json",
    ]);
    let id = conn["id"].as_str().unwrap().to_string();
    let disabled = json(&["connection", "disable", &id, "--json"]);
    assert_eq!(disabled["status"], "disabled");
    let listed = json(&[
        "connection",
        "list",
        "--json",
        "--public-url",
        "https://scim.example.com",
    ]);
    assert_eq!(listed[0]["status"], "disabled");
    assert_eq!(
        listed[0]["scim_base_url"],
        format!("https://scim.example.com/scim/v2/{id}")
    );
    assert_eq!(json(&["connection", "enable", &id, "--json"])["status"], "active");
    let table = run(&["connection", "list"]);
    assert!(
        table.starts_with("ID\tORGANIZATION\tIDP\tDETECTED IDP\tSTATUS"),
        "{table}"
    );
    // No request yet: nothing recognised.
    assert!(table.contains("\tentra\t-\tactive\t"), "{table}");

    let role = json(&[
        "role",
        "create",
        "--org",
        "Acme Corp",
        "--key",
        "admin",
        "--name",
        "Admin",
        "--json",
    ]);
    assert_eq!(role["key"], "admin");
    let mapping = json(&[
        "role-mapping",
        "create",
        "--connection",
        &id,
        "--role",
        "admin",
        "--app-role",
        "Admin",
        "--json",
    ]);
    assert_eq!(mapping["role_key"], "admin");
    assert_eq!(mapping["match"]["app_role"], "Admin", "{mapping}");
    let mapping_id = mapping["id"].as_str().unwrap().to_string();
    assert_eq!(
        json(&["role-mapping", "list", "--connection", &id, "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // One kind of match, no more, no less.
    let out = rollcall(
        &[
            "--database",
            &db,
            "role-mapping",
            "create",
            "--connection",
            &id,
            "--role",
            "admin",
        ],
        &[],
    );
    assert!(!out.status.success());
    run(&["role-mapping", "delete", "--connection", &id, &mapping_id, "--yes"]);
    assert!(
        json(&["role-mapping", "list", "--connection", &id, "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    run(&["role", "delete", "--org", "Acme Corp", "admin", "--yes"]);
    assert!(
        json(&["role", "list", "--org", "Acme Corp", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    let keys = run(&["api-key", "list"]);
    assert!(keys.starts_with("ID\tNAME\tPREFIX\tCREATED\tREVOKED"), "{keys}");
    // Deleting an organization needs --yes off a terminal, then deletes it with its connections.
    let out = rollcall(&["--database", &db, "org", "delete", "Acme Corp"], &[]);
    assert!(!out.status.success());
    run(&["org", "delete", "Acme Corp", "--yes"]);
    assert!(json(&["org", "list", "--json"]).as_array().unwrap().is_empty());
    assert!(json(&["connection", "list", "--json"]).as_array().unwrap().is_empty());
}

/// A failed webhook delivery is logged at WARN with the ids that find it (endpoint, event, its
/// sequence number) and when it is tried again.
#[tokio::test]
async fn failed_webhook_deliveries_are_logged_with_their_ids() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("hooks.db").display());
    let key = rollcall(
        &[
            "--database",
            &db,
            "--create",
            "api-key",
            "create",
            "--name",
            "t",
            "--json",
        ],
        &[],
    );
    ok(&key);
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap();
    let key = key["secret"].as_str().unwrap().to_string();
    let stderr_path = dir.0.join("stderr.log");
    let mut serve = Command::new(BIN)
        .args(["--database", &db, "serve", "--listen", "127.0.0.1:0"])
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("ROLLCALL_PUBLIC_URL")
        .env("ROLLCALL_LOG", "warn")
        .env("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let (mut base, mut token, mut listen) = (String::new(), String::new(), String::new());
    for line in BufReader::new(serve.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("SCIM base URL: ") {
            base = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("Bearer token:") {
            token = v.split_whitespace().next().unwrap().to_string();
        } else if let Some(v) = line.strip_prefix("Listening on ") {
            listen = v.trim().to_string();
            break;
        }
    }
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let hook: serde_json::Value = http
        .post(format!("{listen}/api/v1/webhooks"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"url": format!("http://{closed}/hook"), "event_types": ["user.created"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hook_id = hook["webhook"]["id"].as_str().expect("a webhook").to_string();
    let created = http
        .post(format!("{base}/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"hook@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let line = loop {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains("webhook delivery failed")) {
            break l.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no warning: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(line.contains("WARN"), "{line}");
    assert!(!line.contains('\u{1b}'), "no colour codes off a terminal: {line:?}");
    assert!(line.contains(&hook_id), "{line}");
    for field in [
        "event=",
        "event_sequence=",
        "event_type=user.created",
        "next_attempt_at=",
        "error=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

/// `serve --log-format json`: every line is JSON, the start-up lines included, and the first-start
/// token is in neither stream but in a file only the owner can read, whose path is logged; the
/// token in it works.
#[tokio::test]
async fn json_logs_keep_the_first_token_out_of_the_stream() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("json.db").display());
    let stdout_path = dir.0.join("stdout.log");
    let stderr_path = dir.0.join("stderr.log");
    let mut serve = Command::new(BIN)
        .args([
            "--database",
            &db,
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("ROLLCALL_PUBLIC_URL")
        .env_remove("ROLLCALL_LOG")
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (base, listen) = loop {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let base = lines
            .iter()
            .find_map(|l| l["fields"]["scim_base_url"].as_str().map(str::to_string));
        let listen = lines
            .iter()
            .find_map(|l| l["fields"]["listen"].as_str().map(str::to_string));
        if let (Some(b), Some(l)) = (base, listen) {
            break (b, l);
        }
        assert!(std::time::Instant::now() < deadline, "not started: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let token_file = dir.0.join("rollcall-first-token");
    let token = std::fs::read_to_string(&token_file)
        .expect("the token file")
        .trim()
        .to_string();
    assert!(token.starts_with("rc_scim_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{base}/Users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(&token), "the token is in {name}");
        for line in text.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{name}: not JSON: {line}"
            );
        }
    }
    assert!(stderr.contains(&token_file.display().to_string()), "{stderr}");
    assert!(listen.contains("127.0.0.1:"), "{listen}");
}

/// `rollcall webhook list / ping / redeliver / attempts`: thin calls of the management API's
/// operations, printing its views with `--json` and headed tables otherwise; a redelivery arrives
/// signed with the endpoint's secret and carries the event as the Events API gives it; an attempt
/// the endpoint does not accept (here: refused by the network policy) fails the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_commands_list_ping_redeliver_and_show_attempts() {
    use axum::http::HeaderMap;
    use std::sync::Mutex;
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("hooks.db").display());
    ok(&rollcall(
        &["--database", &db, "--create", "org", "create", "--name", "Acme"],
        &[],
    ));

    // A receiver on loopback that keeps what it is sent.
    type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;
    let received: Received = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |headers: HeaderMap, body: String| async move {
                received.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The key beside the database, where every command (and serve) looks for it.
    let key_file = dir.0.join("rollcall-secrets.key");
    ok(&rollcall(
        &["secrets", "generate-key", "--out", key_file.to_str().unwrap()],
        &[],
    ));
    let key = rollcall_store::secrets::SecretKey::read_file(&key_file).unwrap();
    let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
        .await
        .unwrap()
        .with_secrets(rollcall_store::secrets::SecretBox::new(key));
    let org = store.list_organizations().await.unwrap().remove(0);
    let org_created = store
        .query_events(&EventQuery {
            types: vec!["organization.created".into()],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let secret = rollcall_webhooks::signing::new_secret();
    let hook = store
        .create_webhook(rollcall_store::NewWebhook {
            org_id: Some(org.id.clone()),
            url: url.clone(),
            description: "crm".into(),
            event_types: vec!["organization.*".into()],
            secret: secret.clone(),
        })
        .await
        .unwrap();
    drop(store);
    const LOOPBACK: &[(&str, &str)] = &[("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true")];
    let run = |args: Vec<String>, env: &[(&str, &str)]| {
        let mut all = vec!["--database".to_string(), db.clone()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        rollcall(&refs, env)
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // The list: the API's view with --json, a headed table otherwise.
    let out = run(args(&["webhook", "list", "--org", "Acme", "--json"]), &[]);
    ok(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], hook.id.as_str());
    assert_eq!(list[0]["org_id"], org.id.as_str());
    assert_eq!(list[0]["url"], url.as_str());
    assert!(list[0]["last_sequence"].is_i64(), "{list}");
    assert!(list[0].get("secret").is_none(), "the secret is never listed: {list}");
    let out = run(args(&["webhook", "list"]), &[]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("ID\tORG_ID\tURL\tSTATUS\tLAST_SEQUENCE"), "{text}");
    assert!(text.contains(&hook.id) && text.contains("organization.*"), "{text}");

    // Ping and redeliver go out under the server's network policy: loopback is refused unless the
    // settings allow it, and the command fails with the attempt's error.
    let out = run(args(&["webhook", "ping", &hook.id]), &[]);
    assert!(!out.status.success(), "a refused ping must fail the command");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not accept"),
        "{out:?}"
    );
    assert!(received.lock().unwrap().is_empty());
    let out = run(args(&["webhook", "ping", &hook.id, "--json"]), LOOPBACK);
    ok(&out);
    let ping: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (ping["origin"].as_str(), ping["succeeded"].as_bool()),
        (Some("ping"), Some(true))
    );

    let out = run(
        args(&["webhook", "redeliver", &hook.id, "--event", &org_created.id, "--json"]),
        LOOPBACK,
    );
    ok(&out);
    let attempt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(attempt["origin"], "redeliver");
    assert_eq!(attempt["event_id"], org_created.id.as_str());
    assert_eq!(attempt["event_sequence"], org_created.seq);
    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 2, "the ping and the redelivery");
        let (headers, body) = &got[1];
        standardwebhooks::Webhook::new(&secret)
            .unwrap()
            .verify(body.as_bytes(), headers)
            .expect("signed with the endpoint's secret");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["type"], "organization.created");
        assert_eq!(body["data"]["id"], org_created.id.as_str());
        assert_eq!(body["data"]["sequence"], org_created.seq);
        assert_eq!(body["data"]["org_id"], org.id.as_str());
        assert_eq!(body["data"]["actor"]["type"], "cli");
    }
    // An event outside the endpoint's subscription is refused, naming the field.
    let out = run(args(&["webhook", "redeliver", &hook.id, "--event", "nope"]), LOOPBACK);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("event_id: no event"),
        "{out:?}"
    );

    // The attempts, newest first: the redelivery, the ping, the refused ping.
    let out = run(args(&["webhook", "attempts", &hook.id, "--json"]), &[]);
    ok(&out);
    let attempts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let origins: Vec<(&str, bool)> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["origin"].as_str().unwrap(), a["succeeded"].as_bool().unwrap()))
        .collect();
    assert_eq!(origins, [("redeliver", true), ("ping", true), ("ping", false)]);
    let out = run(args(&["webhook", "attempts", &hook.id, "--limit", "1"]), &[]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().count(), 2, "a header and one attempt: {text}");
    assert!(text.starts_with("ID\tAT\tEVENT_TYPE\tSEQUENCE"), "{text}");
    let out = run(args(&["webhook", "attempts", "no-such-hook"]), &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no webhook endpoint"),
        "{out:?}"
    );
}

/// `rollcall connection guard`: settings, what is held, and a release recorded with the `cli`
/// actor.
#[tokio::test]
async fn connection_guard_commands() {
    use rollcall_store::{ResourceKind, WriteContext};
    use serde_json::{Value, json};
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("guard.db").display());
    let run = |args: &[&str]| -> Value {
        let mut all = vec!["--database", db.as_str()];
        all.extend_from_slice(args);
        let out = rollcall(&all, &[]);
        ok(&out);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    run(&["--create", "org", "create", "--name", "Acme"]);
    let conn = run(&["connection", "create", "--org", "Acme", "--json"]);
    let id = conn["id"].as_str().unwrap().to_string();
    let g = run(&[
        "connection",
        "guard",
        "set",
        &id,
        "--max-users",
        "2",
        "--max-percent",
        "off",
        "--json",
    ]);
    assert_eq!(g["settings"]["max_users"], 2);
    assert_eq!(g["settings"]["max_percent"], Value::Null);
    assert_eq!(g["status"], "armed");

    // Three deactivations by the identity provider: the third is held.
    {
        let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
            .await
            .unwrap();
        let c = store.get_connection(&id).await.unwrap().unwrap();
        let ctx = WriteContext {
            org_id: c.org_id.clone(),
            connection_id: id.clone(),
            ..WriteContext::default()
        };
        for i in 0..3 {
            let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("u{i}"), "active": true});
            let u = store
                .create_resource(&ctx, ResourceKind::User, doc, vec![])
                .await
                .unwrap();
            let off: rollcall_store::Mutation = Arc::new(|d: &mut Value| {
                d["active"] = json!(false);
                Ok(vec![])
            });
            store
                .update_resource(&ctx, ResourceKind::User, &u.id, None, off)
                .await
                .unwrap();
        }
    }
    let g = run(&["connection", "guard", "show", &id, "--json"]);
    assert_eq!(
        (g["status"].as_str(), g["held_events"].as_i64()),
        (Some("tripped"), Some(1))
    );
    let held = run(&["connection", "guard", "held", &id, "--json"]);
    assert_eq!(held.as_array().map(Vec::len), Some(1));
    assert_eq!(held[0]["type"], "user.deactivated");
    // Without a terminal, the release needs --yes.
    let mut args = vec!["--database", db.as_str(), "connection", "guard", "approve", id.as_str()];
    assert!(!rollcall(&args, &[]).status.success());
    args.extend(["--yes", "--json"]);
    let out = rollcall(&args, &[]);
    ok(&out);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["events"].as_i64(), r["guard"]["status"].as_str()),
        (Some(1), Some("armed"))
    );

    let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
        .await
        .unwrap();
    let events = store
        .query_events(&EventQuery {
            types: vec!["connection.deprovision_guard_released".into()],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, Actor::Cli);
}

/// `rollcall connection create --staging`, `match-report upload|show|delete`, `activate` (asks
/// first) and `stage`: what the application receives, recorded with the `cli` actor.
#[tokio::test]
async fn connection_staging_commands() {
    use rollcall_store::{ResourceKind, WriteContext};
    use serde_json::{Value, json};
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("staging.db").display());
    let run = |args: &[&str]| -> Value {
        let mut all = vec!["--database", db.as_str()];
        all.extend_from_slice(args);
        let out = rollcall(&all, &[]);
        ok(&out);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    run(&["--create", "org", "create", "--name", "Acme"]);
    let conn = run(&["connection", "create", "--org", "Acme", "--staging", "--json"]);
    assert_eq!(conn["staging"], json!(true));
    let id = conn["id"].as_str().unwrap().to_string();
    {
        let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
            .await
            .unwrap();
        let c = store.get_connection(&id).await.unwrap().unwrap();
        let ctx = WriteContext {
            org_id: c.org_id.clone(),
            connection_id: id.clone(),
            ..WriteContext::default()
        };
        for name in ["ann@acme.example", "bob@acme.example"] {
            let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
            store
                .create_resource(&ctx, ResourceKind::User, doc, vec![])
                .await
                .unwrap();
        }
    }
    let csv = dir.0.join("accounts.csv");
    std::fs::write(&csv, "email,roles\nANN@acme.example,admin\nzed@acme.example,\n").unwrap();
    let r = run(&[
        "connection",
        "match-report",
        "upload",
        &id,
        csv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (
            r["counts"]["matched"].as_u64(),
            r["counts"]["idp_only"].as_u64(),
            r["counts"]["app_only"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let text = rollcall(&["--database", &db, "connection", "match-report", "show", &id], &[]);
    ok(&text);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("in the app only:   1"), "{text}");
    assert!(text.contains("app only   zed@acme.example"), "{text}");
    std::fs::write(&csv, "email,mail\nx,y\n").unwrap();
    let bad = rollcall(
        &[
            "--database",
            &db,
            "connection",
            "match-report",
            "upload",
            &id,
            csv.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown CSV column"));

    // Going live asks first.
    let mut args = vec!["--database", db.as_str(), "connection", "activate", id.as_str()];
    assert!(!rollcall(&args, &[]).status.success());
    args.extend(["--yes", "--json"]);
    let out = rollcall(&args, &[]);
    ok(&out);
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(live["connection"]["staging"], json!(false));
    assert_eq!(live["snapshot"]["users"], json!(2));
    let again = rollcall(&["--database", &db, "connection", "activate", &id, "--yes"], &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("live"));
    let staged = run(&["connection", "stage", &id, "--json"]);
    assert_eq!(staged["staging"], json!(true));
    let gone = rollcall(&["--database", &db, "connection", "match-report", "delete", &id], &[]);
    ok(&gone);

    let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
        .await
        .unwrap();
    let events = store
        .query_events(&EventQuery {
            types: vec![
                "connection.activated".into(),
                "connection.staged".into(),
                "user.created".into(),
                "connection.match_report_uploaded".into(),
                "connection.match_report_deleted".into(),
            ],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "connection.staged",
            "connection.match_report_uploaded",
            "connection.activated",
            "user.created",
            "user.created",
            "connection.staged",
            "connection.match_report_deleted"
        ]
    );
    assert!(
        events
            .iter()
            .filter(|e| e.kind.starts_with("connection."))
            .all(|e| e.actor == Actor::Cli)
    );
}
