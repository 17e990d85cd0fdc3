//! Upgrading a PostgreSQL database written while `resources.doc` was `jsonb` (migration 0019 makes
//! it `json`, kept as written): the documents stored before read back as the same values, as
//! compact text, in a GET and in a page of a list, with a user's groups named from the group's
//! document; a document written after is stored exactly as the store wrote it. SQLite always kept
//! the text, and has no such migration.

mod harness;

use harness::{Backend, TestDatabase, registry};
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::{ListQuery, Mutation, Paging, ResourceKind, ResourceStore, WriteContext};
use serde_json::{Value, json};
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, PgPool};
use std::sync::Arc;

/// A user whose strings hold what a compactor could trip on, and a group holding the user.
const USER_DOC: &str = r#"{"userName": "ann", "name": {"givenName": "Ann, \"A\": B", "familyName": "O'Neil"},
    "emails": [{"value": "ann@example.com", "primary": true}], "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "x": [1, 2.5, null, {"k": "v ,: "}]}"#;

const TENANT: &[&str] = &[
    "INSERT INTO organizations (id, name, created_us) VALUES ('o', 'Org', 1)",
    "INSERT INTO scim_connections (id, org_id, name, idp, created_us) VALUES ('c', 'o', 'C', 'generic', 1)",
];

const GROUP: &[&str] = &[
    "INSERT INTO resources (pk, connection_id, kind, id, display_name_ci, version, created_us, modified_us, doc, doc_ci)
     VALUES (2, 'c', 'Group', 'g2', 'staff', 1, 1, 1, '{\"displayName\": \"Staff\"}', '{}')",
    "INSERT INTO group_members (connection_id, group_pk, member_pk, display) VALUES ('c', 2, 1, 'Ann')",
];

#[tokio::test]
async fn postgres_documents_stored_as_jsonb_read_back_compact_after_the_upgrade() {
    if harness::pg_admin_url().is_none() {
        harness::skip_note("postgres_documents_stored_as_jsonb_read_back_compact_after_the_upgrade");
        return;
    }
    let db = TestDatabase::create(Backend::Postgres, "rollcall_upgrade").await;
    let pool = PgPool::connect(db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    harness::migrations_before("postgres", 19, dir.path());
    Migrator::new(dir.path()).await.unwrap().run(&pool).await.unwrap();
    for sql in TENANT {
        sqlx::query(AssertSqlSafe(*sql)).execute(&pool).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO resources (pk, connection_id, kind, id, user_name_ci, version, created_us, modified_us, doc, doc_ci)
         VALUES (1, 'c', 'User', 'u1', 'ann', 1, 1, 1, $1::jsonb, '{}')",
    )
    .bind(USER_DOC)
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("seed the user: {e}"));
    for sql in GROUP {
        sqlx::query(AssertSqlSafe(*sql)).execute(&pool).await.unwrap();
    }
    let stored = async |pk: i64| -> (String, String) {
        sqlx::query_as("SELECT pg_typeof(doc)::text, doc::text FROM resources WHERE pk = $1")
            .bind(pk)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let (before_type, before_text) = stored(1).await;
    assert_eq!(before_type, "jsonb");
    assert!(before_text.contains("\": "), "jsonb's own text: {before_text}");

    // Opening the store applies migration 0019.
    let store = PostgresStore::open(db.url(), registry(), PgSettings::default())
        .await
        .unwrap();
    let (after_type, after_text) = stored(1).await;
    assert_eq!(after_type, "json");
    assert_eq!(
        after_text, before_text,
        "the text is kept until the document is written"
    );

    let got = store
        .get_resource("c", ResourceKind::User, "u1", true)
        .await
        .unwrap()
        .expect("the user");
    let text = got.doc.stored_text().expect("read as text").to_string();
    // `jsonb`'s key order (shorter keys first), compacted outside strings only.
    assert_eq!(
        text,
        r#"{"x":[1,2.5,null,{"k":"v ,: "}],"name":{"givenName":"Ann, \"A\": B","familyName":"O'Neil"},"emails":[{"value":"ann@example.com","primary":true}],"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ann"}"#
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        serde_json::from_str::<Value>(USER_DOC).unwrap()
    );
    let groups: Vec<(String, Option<String>)> = got
        .related
        .expect("groups read")
        .into_iter()
        .map(|m| (m.id, m.display))
        .collect();
    assert_eq!(groups, [("g2".to_string(), Some("Staff".to_string()))]);

    // A later page of a list reads the document the same way, and the user's groups apart.
    for start_index in [1, 2] {
        let page = store
            .list_resources(
                "c",
                ResourceKind::User,
                &ListQuery {
                    filter: None,
                    sort: None,
                    paging: Paging::Index { start_index },
                    count: 10,
                    with_members: true,
                    max_bytes: ListQuery::DEFAULT_MAX_BYTES,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 1);
        if start_index == 1 {
            let r = &page.resources[0];
            assert_eq!(r.doc.stored_text(), Some(text.as_str()));
            assert_eq!(r.related.as_ref().map(Vec::len), Some(1));
        } else {
            assert!(page.resources.is_empty());
        }
    }

    // Written again, the document is stored as the store writes it: compact, read back as is.
    let ctx = WriteContext::cli().about("o", "c");
    let rename: Mutation = Arc::new(|d: &mut Value| {
        d["displayName"] = json!("Ann O'Neil");
        Ok(vec![])
    });
    store
        .update_resource(&ctx, ResourceKind::User, "u1", None, rename)
        .await
        .unwrap()
        .expect("the user");
    let (_, written) = stored(1).await;
    // Compact: as long as serde's compact text of the same value (whose key order may differ).
    let value: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(written.len(), value.to_string().len(), "written compact: {written}");
    let got = store
        .get_resource("c", ResourceKind::User, "u1", false)
        .await
        .unwrap()
        .expect("the user");
    assert_eq!(got.doc.stored_text(), Some(written.as_str()));
    assert_eq!(got.doc["displayName"], "Ann O'Neil");
    pool.close().await;
}
