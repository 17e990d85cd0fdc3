//! The statements behind `GET /Users?startIndex=R&count=N` on SQLite read only the partial index of
//! live resources: counting a connection's users (`totalResults`) is a covering-index scan, and
//! the rows skipped before a page are skipped in the index, without a table seek each. Before
//! migration 0005 SQLite chose `resources_all`, which lacks `deleted_us`, and read every row.

mod harness;

use harness::registry;
use rollcall_store::sqlite::SqliteStore;
use sqlx::{Connection as _, Row, SqliteConnection};

async fn plan(c: &mut SqliteConnection, sql: &str) -> String {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
        .bind("conn-1")
        .fetch_all(c)
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A migrated database in a temporary directory (kept while the directory lives), and a connection
/// to it that takes synthetic rows for made-up connections (no organization or connection rows
/// behind them).
async fn migrated_database() -> (tempfile::TempDir, SqliteConnection) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("explain.db").display());
    SqliteStore::open(&url, registry()).await.expect("open and migrate");
    let mut c = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut c).await.unwrap();
    (dir, c)
}

#[tokio::test]
async fn paging_and_counting_live_users_read_only_the_live_index() {
    let (_dir, mut c) = migrated_database().await;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO resources (connection_id, kind, id, user_name_ci, version, created_us, modified_us, doc, doc_ci,
                                deleted_us)
         SELECT printf('conn-%d', i % 3), 'User', printf('id-%d', i), printf('user-%d', i), 1, i, i, '{}', '{}',
                CASE WHEN i % 10 = 0 THEN i END
         FROM n",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&mut c).await.unwrap();
    // The shapes `list_resources` builds without a filter: the kind as a literal (so the partial
    // index applies), rows in `pk` order.
    let live = "r.connection_id = ? AND r.kind = 'User' AND r.deleted_us IS NULL";
    let count = plan(&mut c, &format!("SELECT COUNT(*) FROM resources r WHERE {live}")).await;
    assert!(
        count.contains("COVERING INDEX resources_live"),
        "counting live users reads the table:\n{count}"
    );
    let page = plan(
        &mut c,
        &format!(
            "SELECT r.pk, r.id, r.doc, r.version, r.created_us, r.modified_us FROM resources r WHERE {live}
             ORDER BY r.pk ASC LIMIT 100 OFFSET 1000"
        ),
    )
    .await;
    assert!(page.contains("INDEX resources_live"), "{page}");
    assert!(!page.contains("TEMP B-TREE"), "a page needs no sort:\n{page}");
}

/// `GET /Users?filter=userName eq "…"`, an identity provider's existence check, as `list_resources`
/// builds it (the offset bound, so the statement is prepared once, not once per page; the groups
/// of each user beside its row): it seeks the user-name index, and each user's groups by index.
#[tokio::test]
async fn a_user_name_filter_with_a_bound_offset_seeks_the_user_name_index() {
    let (_dir, mut c) = migrated_database().await;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO resources (connection_id, kind, id, user_name_ci, version, created_us, modified_us, doc, doc_ci)
         SELECT 'conn-1', 'User', printf('id-%d', i), printf('user-%d', i), 1, i, i, '{}', '{}' FROM n",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let filter = "SELECT r.pk, r.id, r.doc, (SELECT json_group_array(json_array(g.id, g.kind, json_extract(g.doc, '$.displayName')))
              FROM group_members m JOIN resources g ON g.pk = m.group_pk
              WHERE m.connection_id = r.connection_id AND m.member_pk = r.pk AND g.deleted_us IS NULL) AS related FROM resources r
         WHERE r.connection_id = ? AND r.kind = 'User' AND r.deleted_us IS NULL AND (r.user_name_ci = 'user-42')
         ORDER BY r.pk ASC LIMIT 100 OFFSET ?";
    let found = plan(&mut c, filter).await;
    assert!(found.contains("INDEX resources_user_name"), "{found}");
    assert!(found.contains("INDEX group_members_member"), "{found}");
}

/// A purged user or group (and every resource of a deleted connection) takes its memberships and
/// effective grants with it (`ON DELETE CASCADE`): each cascade seeks a key that leads with the
/// connection, as every other membership and grant statement does (docs/scaling.md).
#[tokio::test]
async fn a_purge_cascades_through_keys_that_lead_with_the_connection() {
    let (_dir, mut c) = migrated_database().await;
    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut c).await.unwrap();
    let found = plan(&mut c, "DELETE FROM resources WHERE pk = 5 AND connection_id = ?").await;
    for step in [
        "group_members USING COVERING INDEX sqlite_autoindex_group_members_1 (connection_id=? AND group_pk=?)",
        "group_members USING COVERING INDEX group_members_member (connection_id=? AND member_pk=?)",
        "user_roles USING PRIMARY KEY (connection_id=? AND user_pk=?)",
        "user_workspaces USING PRIMARY KEY (connection_id=? AND user_pk=?)",
    ] {
        assert!(found.contains(step), "missing {step}:\n{found}");
    }
    assert!(!found.contains("SCAN"), "a cascade scans a table:\n{found}");
}
