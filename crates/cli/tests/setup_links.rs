//! `rollcall setup-link create|list|revoke`: the same operations and views as the management API,
//! recorded as made by the command line, the URL printed once (and only under a public URL the
//! command line knows), bad input refused with a message.

use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{Actor, EventQuery, EventStore};
use serde_json::Value;
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

fn rollcall(db: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--database", db])
        .args(args)
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("DATABASE_URL")
        .env_remove("ROLLCALL_CONFIG")
        .env_remove("ROLLCALL_PUBLIC_URL")
        .output()
        .expect("run rollcall")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rollcall failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn fails(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

#[tokio::test]
async fn setup_links_from_the_command_line() {
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("cli.db").display());
    ok(&rollcall(&db, &["--create", "org", "create", "--name", "Acme"]));

    // Created with a public URL: the URL is printed once, with the API's view.
    let out = ok(&rollcall(
        &db,
        &[
            "setup-link",
            "create",
            "--org",
            "Acme",
            "--expires-in",
            "2h",
            "--return-url",
            "https://app.example.com/done",
            "--public-url",
            "https://rollcall.example.com",
            "--json",
        ],
    ));
    let created: Value = serde_json::from_str(out.trim()).expect("JSON");
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["setup_link"]["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("rc_setup_"), "{token}");
    assert_eq!(created["url"], format!("https://rollcall.example.com/setup/{token}"));
    assert_eq!(created["path"], format!("/setup/{token}"));
    assert_eq!(created["setup_link"]["status"], "active");
    assert_eq!(created["setup_link"]["return_url"], "https://app.example.com/done");
    assert_eq!(created["setup_link"]["created_by"]["type"], "cli");

    // Without a public URL (none given, configured or recorded), it says it cannot know the URL
    // and prints the path.
    let text = ok(&rollcall(&db, &["setup-link", "create", "--org", "Acme"]));
    assert!(text.contains("unknown here"), "{text}");
    assert!(text.contains("/setup/rc_setup_"), "{text}");

    // Listed newest first, never with a token.
    let listed = ok(&rollcall(&db, &["setup-link", "list", "--org", "Acme", "--json"]));
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], id);
    let table = ok(&rollcall(&db, &["setup-link", "list", "--org", "Acme"]));
    assert!(table.starts_with("ID\tTOKEN\tSTATUS\tEXPIRES"), "{table}");
    assert!(!table.contains(&token), "{table}");
    assert!(table.contains(&id) && table.contains("active"), "{table}");

    // Revoked.
    let text = ok(&rollcall(&db, &["setup-link", "revoke", "--org", "Acme", &id]));
    assert!(text.contains("revoked"), "{text}");
    let listed = ok(&rollcall(&db, &["setup-link", "list", "--org", "Acme", "--json"]));
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed[1]["status"], "revoked");

    // Bad input says what is wrong.
    fails(
        &rollcall(&db, &["setup-link", "create", "--org", "Acme", "--expires-in", "1m"]),
        "5 minutes",
    );
    fails(
        &rollcall(&db, &["setup-link", "create", "--org", "Acme", "--expires-in", "100d"]),
        "90 days",
    );
    fails(
        &rollcall(&db, &["setup-link", "create", "--org", "Acme", "--expires-in", "7x"]),
        "unknown unit",
    );
    fails(
        &rollcall(
            &db,
            &[
                "setup-link",
                "create",
                "--org",
                "Acme",
                "--return-url",
                "javascript:alert(1)",
            ],
        ),
        "return_url",
    );
    fails(
        &rollcall(&db, &["setup-link", "create", "--org", "Nobody"]),
        "no organization",
    );
    fails(
        &rollcall(&db, &["setup-link", "revoke", "--org", "Acme", "no-such-link"]),
        "no setup link",
    );

    // Recorded as the command line's, without the token.
    let store = SqliteStore::open(&db, Arc::new(SchemaRegistry::standard()))
        .await
        .expect("open the database");
    let events = store
        .query_events(&EventQuery {
            limit: 100,
            types: vec!["setup_link.created".into(), "setup_link.revoked".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        types,
        ["setup_link.created", "setup_link.created", "setup_link.revoked"]
    );
    for e in &events {
        assert_eq!(e.actor, Actor::Cli, "{e:?}");
        assert!(!e.data.to_string().contains(&token));
    }
}
