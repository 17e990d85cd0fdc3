//! `rollcall connection create --kind google-workspace` and `rollcall connection sync`: a Google
//! Workspace connection created from a service account key file and synced from the command line
//! against the fake of Google's token endpoint and Directory API.

#[path = "../../server/tests/common/google_fake.rs"]
mod google_fake;

use google_fake::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

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

async fn rollcall(db: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--database", db])
        .args(args)
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("DATABASE_URL")
        .env_remove("ROLLCALL_CONFIG")
        .env_remove("ROLLCALL_PUBLIC_URL");
    tokio::task::spawn_blocking(move || cmd.output().expect("run rollcall"))
        .await
        .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_workspace_connection_from_the_command_line() {
    let fake = FakeGoogle::start().await;
    fake.add_user(google_user("u1", "ada@example.com", "Ada", "Lovelace"));
    fake.add_user(google_user("u2", "alan@example.com", "Alan", "Turing"));
    fake.add_group(
        google_group("g1", "eng@example.com", "Engineering"),
        vec![google_member("u1", "ada@example.com", "USER")],
    );
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("cli.db").display());
    let key_file = dir.0.join("sa.json");
    std::fs::write(&key_file, fake.key().to_string()).unwrap();
    // The key the service account's key is sealed with, beside the database.
    let secrets_key = dir.0.join("rollcall-secrets.key");
    ok(&rollcall(
        &db,
        &["secrets", "generate-key", "--out", secrets_key.to_str().unwrap()],
    )
    .await);
    ok(&rollcall(&db, &["--create", "org", "create", "--name", "Acme"]).await);

    // Missing the admin: refused with a message.
    let out = rollcall(
        &db,
        &[
            "connection",
            "create",
            "--org",
            "Acme",
            "--kind",
            "google-workspace",
            "--credentials-file",
            key_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-email"));

    let text = ok(&rollcall(
        &db,
        &[
            "connection",
            "create",
            "--org",
            "Acme",
            "--kind",
            "google-workspace",
            "--credentials-file",
            key_file.to_str().unwrap(),
            "--admin-email",
            ADMIN_EMAIL,
            "--customer",
            "my_customer",
            "--api-base-url",
            &fake.base,
        ],
    )
    .await);
    assert!(text.contains("Domain-wide delegation"), "{text}");
    assert!(
        text.contains("109876543210987654321"),
        "the client id to authorise: {text}"
    );
    assert!(text.contains("admin.directory.user.readonly"), "{text}");
    let id = text.split_whitespace().nth(3).expect("the connection id").to_string();

    let out = ok(&rollcall(&db, &["connection", "sync", &id, "--json"]).await);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["last_status"], "succeeded", "{report}");
    assert_eq!(report["last_counts"]["users_created"], 2);
    assert_eq!(report["last_counts"]["groups_created"], 1);
    let text = ok(&rollcall(&db, &["connection", "sync", &id]).await);
    assert!(text.contains("sync succeeded: read 2 users and 1 groups"), "{text}");

    let list = ok(&rollcall(&db, &["connection", "list"]).await);
    assert!(list.contains("(reads google_workspace)"), "{list}");
    // A SCIM token cannot be issued for it; the key is nowhere in the database in clear.
    let out = rollcall(&db, &["connection", "rotate-token", &id]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SCIM token"));
    let raw = std::fs::read(dir.0.join("cli.db")).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("BEGIN PRIVATE KEY"));

    // A failing sync exits non-zero and says why.
    fake.fail_next(Failure::google("/users", 403, "forbidden", None));
    let out = rollcall(&db, &["connection", "sync", &id]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("forbidden"));
}
