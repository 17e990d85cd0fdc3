//! `rollcall workspace`, `workspace-mapping` and `workspace-settings`: workspaces defined, groups
//! mapped (with a dry run that changes nothing), the default workspace and a workspace for every
//! group, read back from the database.

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

async fn open(db: &str) -> SqliteStore {
    SqliteStore::open(db, Arc::new(SchemaRegistry::standard()))
        .await
        .expect("open")
}

/// userName → effective workspace keys, read from the database.
async fn workspaces(db: &str, org_id: &str) -> BTreeMap<String, Vec<String>> {
    let store = open(db).await;
    store
        .directory_users(
            org_id,
            &DirectoryQuery {
                limit: 100,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.doc["userName"].as_str().unwrap().to_string(), u.workspaces))
        .collect()
}

fn keys(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn workspace_commands_define_map_preview_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ws.db").display());
    let db = db.as_str();
    let run = |args: &[&str]| stdout(rollcall(db, args));
    let json = |args: &[&str]| serde_json::from_str::<Value>(&run(args)).unwrap();
    stdout(rollcall(db, &["--create", "org", "create", "--name", "Acme"]));
    let conn = json(&["connection", "create", "--org", "Acme", "--idp", "okta", "--json"]);
    let (org_id, conn) = (
        conn["org_id"].as_str().unwrap().to_string(),
        conn["id"].as_str().unwrap().to_string(),
    );

    // ada and bob in Sales, as the identity provider would send them; cy in no group.
    let sales_group = {
        let store = open(db).await;
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
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Sales"});
        store
            .create_resource(&ctx, ResourceKind::Group, group, members)
            .await
            .unwrap()
            .id
    };

    let sales = json(&[
        "workspace",
        "create",
        "--org",
        "Acme",
        "--key",
        "sales",
        "--name",
        "Sales",
        "--json",
    ]);
    assert_eq!(sales["key"], "sales");
    assert_eq!(sales["group"], Value::Null);
    run(&["workspace", "create", "--org", "Acme", "--key", "everyone"]);
    let table = run(&["workspace", "list", "--org", "Acme"]);
    assert!(table.starts_with("ID\tKEY\tNAME\tGROUP\n"), "{table}");
    assert!(table.contains("\tsales\tSales\t-\n"), "{table}");

    // A dry run prints the effect and changes nothing.
    let dry = run(&[
        "workspace-mapping",
        "create",
        "--connection",
        &conn,
        "--workspace",
        "sales",
        "--group-name",
        "SALES",
        "--dry-run",
    ]);
    assert!(
        dry.starts_with("Dry run, nothing changed: 2 users gain Sales (3 active users considered)"),
        "{dry}"
    );
    assert!(dry.contains("gains\tsales\t"), "{dry}");
    let preview = json(&[
        "workspace-mapping",
        "create",
        "--connection",
        &conn,
        "--workspace",
        "sales",
        "--group-name",
        "SALES",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(preview["changes"][0]["workspace_key"], "sales");
    assert_eq!(preview["changes"][0]["gained"], 2);
    assert!(workspaces(db, &org_id).await.values().all(Vec::is_empty));

    let mapping = json(&[
        "workspace-mapping",
        "create",
        "--connection",
        &conn,
        "--workspace",
        "sales",
        "--group-name",
        "SALES",
        "--json",
    ]);
    assert_eq!(mapping["match"]["group_name"], "SALES");
    let mapping_id = mapping["id"].as_str().unwrap().to_string();
    let w = workspaces(db, &org_id).await;
    assert_eq!(w["ada"], keys(&["sales"]));
    assert!(w["cy"].is_empty());
    let listed = run(&["workspace-mapping", "list", "--connection", &conn]);
    assert!(listed.contains("\tsales\tgroup_name\tSALES"), "{listed}");
    // App roles do not map to workspaces: clap refuses the flag.
    let out = rollcall(
        db,
        &[
            "workspace-mapping",
            "create",
            "--connection",
            &conn,
            "--workspace",
            "sales",
            "--app-role",
            "x",
        ],
    );
    assert!(!out.status.success());

    // The default workspace and a workspace for every group.
    let set = json(&[
        "workspace-settings",
        "set",
        "--org",
        "Acme",
        "--default",
        "everyone",
        "--auto-create",
        "on",
        "--json",
    ]);
    assert_eq!(set, json!({"default_workspace": "everyone", "auto_create": true}));
    let shown = run(&["workspace-settings", "show", "--org", "Acme"]);
    assert_eq!(
        shown,
        "Acme: default workspace everyone, a workspace for every group on\n"
    );
    let group_key = format!("group:{sales_group}");
    let w = workspaces(db, &org_id).await;
    let mut ada = keys(&["everyone", "sales", &group_key]);
    ada.sort();
    let mut got = w["ada"].clone();
    got.sort();
    assert_eq!(got, ada);
    assert_eq!(w["cy"], keys(&["everyone"]));
    let list = json(&["workspace", "list", "--org", "Acme", "--json"]);
    let created = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["key"] == group_key.as_str())
        .expect("a workspace for the group");
    assert_eq!(created["name"], "Sales");
    assert_eq!(created["group"]["group_id"], sales_group.as_str());

    // Renamed, then the mapping and the workspace deleted (--yes, no terminal).
    let renamed = json(&[
        "workspace",
        "update",
        "--org",
        "Acme",
        "sales",
        "--name",
        "Sales EMEA",
        "--json",
    ]);
    assert_eq!(renamed["name"], "Sales EMEA");
    let dry = run(&[
        "workspace-mapping",
        "delete",
        "--connection",
        &conn,
        &mapping_id,
        "--dry-run",
    ]);
    assert!(dry.contains("2 users lose Sales EMEA"), "{dry}");
    run(&[
        "workspace-mapping",
        "delete",
        "--connection",
        &conn,
        &mapping_id,
        "--yes",
    ]);
    assert!(!workspaces(db, &org_id).await["ada"].contains(&"sales".to_string()));
    let out = rollcall(db, &["workspace", "delete", "--org", "Acme", "everyone"]);
    assert!(!out.status.success(), "asks first; without a terminal, refuses");
    run(&["workspace", "delete", "--org", "Acme", "everyone", "--yes"]);
    assert_eq!(workspaces(db, &org_id).await["cy"], Vec::<String>::new());
    let shown = run(&["workspace-settings", "show", "--org", "Acme"]);
    assert_eq!(shown, "Acme: default workspace -, a workspace for every group on\n");
}
