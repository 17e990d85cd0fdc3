//! Every table, on both databases, is classified by how it reaches its tenant (issue #16, "Past one
//! database"; docs/scaling.md): a table whose rows belong to one organization or connection must
//! have an index (its primary key or another) that leads with that tenant column, so its hot queries
//! can lead with the tenant and the table could be distributed by tenant. Tables without a tenant
//! column are listed with the reason (service-wide by design).
//!
//! The list is exact both ways: a new table fails this test until it is classified here and in
//! docs/scaling.md, and a gap that gets fixed fails it until it is reclassified.

use sqlx::{Connection as _, PgConnection, Row, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet};

mod harness;

/// How a table reaches its tenant.
#[derive(Debug, Clone, Copy)]
enum Keyed {
    /// The tenant itself.
    Root,
    /// Its rows carry this tenant column, and an index leads with it.
    Leads(&'static str),
    /// Service-wide, not per tenant (why).
    Global(&'static str),
}

const TABLES: &[(&str, Keyed)] = &[
    ("organizations", Keyed::Root),
    ("scim_connections", Keyed::Leads("org_id")),
    ("resources", Keyed::Leads("connection_id")),
    ("resource_emails", Keyed::Leads("connection_id")),
    ("events", Keyed::Leads("org_id")),
    ("held_events", Keyed::Leads("connection_id")),
    ("request_log", Keyed::Leads("connection_id")),
    ("roles", Keyed::Leads("org_id")),
    ("role_mappings", Keyed::Leads("connection_id")),
    ("connection_default_roles", Keyed::Leads("connection_id")),
    ("protected_users", Keyed::Leads("org_id")),
    ("webhook_endpoints", Keyed::Leads("org_id")),
    ("webhook_attempts", Keyed::Leads("org_id")),
    ("setup_links", Keyed::Leads("org_id")),
    ("deprovision_guards", Keyed::Leads("connection_id")),
    ("deprovision_window", Keyed::Leads("connection_id")),
    ("directory_sources", Keyed::Leads("connection_id")),
    ("match_reports", Keyed::Leads("connection_id")),
    ("workspaces", Keyed::Leads("org_id")),
    ("workspace_settings", Keyed::Leads("org_id")),
    ("workspace_mappings", Keyed::Leads("connection_id")),
    ("provisioning_targets", Keyed::Leads("org_id")),
    ("provisioning_objects", Keyed::Leads("org_id")),
    ("provisioning_runs", Keyed::Leads("org_id")),
    ("api_keys", Keyed::Global("operator API keys act on every organization")),
    (
        "browser_sessions",
        Keyed::Global("console sessions belong to operators; a setup-page session names its organization in org_id"),
    ),
    (
        "service_settings",
        Keyed::Global("settings of the service, shared by every node"),
    ),
    ("group_members", Keyed::Leads("connection_id")),
    ("user_roles", Keyed::Leads("connection_id")),
    ("user_workspaces", Keyed::Leads("connection_id")),
];

/// What one database holds: each table's columns and the column lists of its indexes (primary key
/// included), in key order.
struct Shape {
    columns: BTreeMap<String, BTreeSet<String>>,
    indexes: BTreeMap<String, Vec<Vec<String>>>,
}

async fn sqlite_shape(url: &str) -> Shape {
    let mut c = SqliteConnection::connect(url).await.expect("open the SQLite database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    let mut shape = Shape {
        columns: BTreeMap::new(),
        indexes: BTreeMap::new(),
    };
    for t in tables {
        let cols = sqlx::query("SELECT name, pk FROM pragma_table_info($1) ORDER BY cid")
            .bind(&t)
            .fetch_all(&mut c)
            .await
            .expect("columns");
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut names = BTreeSet::new();
        for r in cols {
            let name: String = r.get("name");
            let n: i64 = r.get("pk");
            if n > 0 {
                pk.push((n, name.clone()));
            }
            names.insert(name);
        }
        pk.sort();
        let mut idx: Vec<Vec<String>> = vec![pk.into_iter().map(|(_, n)| n).collect()];
        let index_names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_list($1)")
            .bind(&t)
            .fetch_all(&mut c)
            .await
            .expect("indexes");
        for i in index_names {
            let cols: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                .bind(&i)
                .fetch_all(&mut c)
                .await
                .expect("index columns");
            idx.push(cols);
        }
        shape.columns.insert(t.clone(), names);
        shape.indexes.insert(t, idx);
    }
    shape
}

async fn pg_shape(url: &str) -> Shape {
    let mut c = PgConnection::connect(url).await.expect("connect to PostgreSQL");
    let cols = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name != '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .expect("columns");
    let mut shape = Shape {
        columns: BTreeMap::new(),
        indexes: BTreeMap::new(),
    };
    for r in cols {
        shape.columns.entry(r.get("t")).or_default().insert(r.get("c"));
    }
    let idx = sqlx::query(
        "SELECT t.relname::text AS t, i.relname::text AS i,
                array_agg(a.attname::text ORDER BY k.ord) AS cols
         FROM pg_index x
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
         WHERE n.nspname = 'public'
         GROUP BY t.relname, i.relname",
    )
    .fetch_all(&mut c)
    .await
    .expect("indexes");
    for r in idx {
        shape
            .indexes
            .entry(r.get("t"))
            .or_default()
            .push(r.get::<Vec<String>, _>("cols"));
    }
    shape
}

const TENANT_COLUMNS: [&str; 2] = ["org_id", "connection_id"];

fn check(shape: &Shape, backend: &str) {
    let listed: BTreeSet<&str> = TABLES.iter().map(|(t, _)| *t).collect();
    let present: BTreeSet<&str> = shape.columns.keys().map(String::as_str).collect();
    let unlisted: Vec<_> = present.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "{backend}: tables not classified by tenant in tests/tenant_keys.rs and docs/scaling.md: {unlisted:?}"
    );
    let missing: Vec<_> = listed.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "{backend}: classified tables that do not exist: {missing:?}"
    );
    let no_index = Vec::new();
    for (table, keyed) in TABLES {
        let indexes = shape.indexes.get(*table).unwrap_or(&no_index);
        let led_by = |col: &str| indexes.iter().any(|cols| cols.first().is_some_and(|c| c == col));
        match keyed {
            Keyed::Root | Keyed::Global(_) => {}
            Keyed::Leads(col) => {
                assert!(TENANT_COLUMNS.contains(col), "{table}: {col} is not a tenant column");
                assert!(
                    shape.columns[*table].contains(*col),
                    "{backend}: {table} has no column {col}"
                );
                assert!(
                    led_by(col),
                    "{backend}: no index of {table} leads with {col}: {indexes:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn sqlite_tables_lead_with_their_tenant() {
    let db = harness::sqlite_db().await;
    check(&sqlite_shape(&db.url).await, "SQLite");
}

#[tokio::test]
async fn postgres_tables_lead_with_their_tenant() {
    let Some(db) = harness::pg_db().await else {
        harness::skip_note("postgres_tables_lead_with_their_tenant");
        return;
    };
    check(&pg_shape(&db.url).await, "PostgreSQL");
}

#[test]
fn the_classification_names_each_table_once_with_its_reasons() {
    let mut seen = BTreeSet::new();
    for (t, keyed) in TABLES {
        assert!(seen.insert(*t), "{t} is classified twice");
        if let Keyed::Global(why) = keyed {
            assert!(why.len() > 20, "{t}: say why it has no tenant index");
        }
    }
}
