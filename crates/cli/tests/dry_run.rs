//! `--dry-run` on the commands that change who has which role (`role-mapping create`,
//! `role-mapping delete`, `default-roles set`): the effect is printed and nothing changes.

use rollcall_scim::patch::MemberRef;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{DirectoryQuery, ResourceKind, ResourceStore, RoleStore, WriteContext};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_rollcall");

fn rollcall(db: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args([&["--database", db], args].concat())
        .env_remove("ROLLCALL_DATABASE")
        .env_remove("DATABASE_URL")
        .env_remove("ROLLCALL_CONFIG")
        .env_remove("ROLLCALL_PUBLIC_URL")
        .output()
        .expect("run rollcall")
}

#[track_caller]
fn stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "rollcall failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// userName → effective role keys, read from the database.
async fn roles(db: &str, org_id: &str) -> BTreeMap<String, Vec<String>> {
    let store = SqliteStore::open(db, Arc::new(SchemaRegistry::standard()))
        .await
        .expect("open");
    let users = store
        .directory_users(
            org_id,
            &DirectoryQuery {
                limit: 100,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    users
        .into_iter()
        .map(|u| (u.doc["userName"].as_str().unwrap().to_string(), u.roles))
        .collect()
}

#[tokio::test]
async fn dry_runs_print_the_effect_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("dry.db").display());
    let db = db.as_str();
    let run = |args: &[&str]| stdout(rollcall(db, args));
    let json = |args: &[&str]| serde_json::from_str::<Value>(&run(args)).unwrap();
    stdout(rollcall(db, &["--create", "org", "create", "--name", "Acme"]));
    let conn = json(&["connection", "create", "--org", "Acme", "--idp", "okta", "--json"]);
    let (org_id, conn) = (
        conn["org_id"].as_str().unwrap().to_string(),
        conn["id"].as_str().unwrap().to_string(),
    );
    run(&[
        "role",
        "create",
        "--org",
        "Acme",
        "--key",
        "admin",
        "--name",
        "Administrator",
    ]);
    run(&["role", "create", "--org", "Acme", "--key", "viewer"]);

    // Three users as the identity provider would send them, ada and bob in Engineering.
    {
        let store = SqliteStore::open(db, Arc::new(SchemaRegistry::standard()))
            .await
            .expect("open");
        let ctx = WriteContext {
            org_id: org_id.clone(),
            connection_id: conn.clone(),
            ..WriteContext::cli()
        };
        let mut ids = Vec::new();
        for name in ["ada", "bob", "cy"] {
            let doc = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "emails": [{"value": format!("{name}@acme.example")}],
            });
            ids.push(
                store
                    .create_resource(&ctx, ResourceKind::User, doc, vec![])
                    .await
                    .unwrap()
                    .id,
            );
        }
        let members = ids[..2]
            .iter()
            .map(|id| MemberRef {
                value: id.clone(),
                kind: None,
                display: None,
            })
            .collect();
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"});
        store
            .create_resource(&ctx, ResourceKind::Group, group, members)
            .await
            .unwrap();
    }
    let set = json(&[
        "default-roles",
        "set",
        "--connection",
        &conn,
        "--role",
        "viewer",
        "--json",
    ]);
    assert_eq!(set[0]["key"], "viewer");
    let viewers: BTreeMap<String, Vec<String>> = ["ada", "bob", "cy"]
        .iter()
        .map(|n| (n.to_string(), vec!["viewer".to_string()]))
        .collect();
    assert_eq!(roles(db, &org_id).await, viewers);

    // A mapping, dry: the sentence, the counts, the users; no mapping, no roles granted.
    let create = [
        "role-mapping",
        "create",
        "--connection",
        &conn,
        "--role",
        "admin",
        "--group-name",
        "engineering",
    ];
    let out = run(&[&create[..], &["--dry-run"]].concat());
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("Dry run, nothing changed: 2 users gain Administrator (3 active users considered)"),
        "{out}"
    );
    assert_eq!(lines.next(), Some("ROLE\tNAME\tGAINED\tLOST"), "{out}");
    assert_eq!(lines.next(), Some("admin\tAdministrator\t2\t0"), "{out}");
    assert!(out.contains("CHANGE\tROLE\tUSER ID\tUSERNAME\tEMAIL\n"), "{out}");
    assert!(out.contains("\tada\tada@acme.example\n"), "{out}");
    assert!(out.contains("\tbob\tbob@acme.example\n"), "{out}");
    assert!(!out.contains("\tcy\t"), "{out}");
    let effect = json(&[&create[..], &["--dry-run", "--json"]].concat());
    assert_eq!(effect["summary"], "2 users gain Administrator");
    assert_eq!(effect["changes"][0]["gained"], 2);
    assert_eq!(effect["changes"][0]["gained_sample"][0]["user_name"], "ada");
    assert_eq!(
        json(&["role-mapping", "list", "--connection", &conn, "--json"]),
        json!([]),
        "the dry run created nothing"
    );
    assert_eq!(roles(db, &org_id).await, viewers);

    // Default roles, dry.
    let out = run(&["default-roles", "set", "--connection", &conn, "--none", "--dry-run"]);
    assert!(
        out.starts_with("Dry run, nothing changed: 3 users lose viewer (3 active users considered)\n"),
        "{out}"
    );
    let out = run(&[
        "default-roles",
        "set",
        "--connection",
        &conn,
        "--role",
        "viewer",
        "--dry-run",
    ]);
    assert_eq!(
        out,
        "Dry run, nothing changed: No user's roles change (3 active users considered)\n"
    );
    assert_eq!(
        json(&["default-roles", "show", "--connection", &conn, "--json"])[0]["key"],
        "viewer"
    );
    assert_eq!(roles(db, &org_id).await, viewers);

    // Refused as the real change would be.
    let out = rollcall(
        db,
        &[
            "default-roles",
            "set",
            "--connection",
            &conn,
            "--role",
            "nope",
            "--dry-run",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no role \"nope\""));
    assert!(
        !rollcall(db, &["default-roles", "set", "--connection", &conn])
            .status
            .success()
    );

    // Made for real, the mapping does what the dry run said; deleting it, dry, says what goes.
    let mapping = json(&[&create[..], &["--json"]].concat());
    let after = roles(db, &org_id).await;
    assert_eq!(after["ada"], ["admin", "viewer"]);
    assert_eq!(after["bob"], ["admin", "viewer"]);
    assert_eq!(after["cy"], ["viewer"]);
    let id = mapping["id"].as_str().unwrap();
    let out = run(&["role-mapping", "delete", "--connection", &conn, id, "--dry-run"]);
    assert!(
        out.starts_with("Dry run, nothing changed: 2 users lose Administrator (3 active users considered)\n"),
        "{out}"
    );
    assert!(out.contains("loses\tadmin\t"), "{out}");
    assert_eq!(roles(db, &org_id).await, after);
    let out = rollcall(
        db,
        &["role-mapping", "delete", "--connection", &conn, "nope", "--dry-run"],
    );
    assert!(!out.status.success());
}
