//! Every filter of the Events API is served by an index, on SQLite and on PostgreSQL: fills the
//! event log with tens of thousands of synthetic events over many organizations, connections,
//! resources and types, `ANALYZE`s, and `EXPLAIN`s the statement the store runs for each filter.
//! The PostgreSQL half runs only when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a
//! server.

mod harness;

use harness::{pg_database, registry, skip_note};
use rollcall_store::EventQuery;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::sqlite::SqliteStore;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row, SqliteConnection};

/// (what, query, index names the plan must use).
fn cases() -> Vec<(&'static str, EventQuery, &'static [&'static str])> {
    let q = |f: &dyn Fn(&mut EventQuery)| {
        let mut q = EventQuery {
            after_seq: 0,
            limit: 101,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    vec![
        ("organization", q(&|q| q.org_id = Some("org-7".into())), &["events_org"]),
        (
            "connection",
            q(&|q| q.connection_id = Some("conn-7".into())),
            &["events_connection"],
        ),
        (
            "resource",
            q(&|q| q.resource_id = Some("res-77".into())),
            &["events_resource_id", "events_member_id"],
        ),
        (
            "rare type",
            q(&|q| q.types = vec!["api_key.revoked".into()]),
            &["events_type"],
        ),
        (
            "several types",
            q(&|q| q.types = vec!["api_key.revoked".into(), "connection.deleted".into()]),
            &["events_type"],
        ),
        (
            "common type",
            q(&|q| q.types = vec!["user.created".into(), "group.member_added".into()]),
            &[],
        ),
        (
            "organization after a cursor",
            q(&|q| {
                q.after_seq = 15_000;
                q.org_id = Some("org-7".into());
            }),
            &["events_org"],
        ),
    ]
}

#[tokio::test]
async fn sqlite_event_filters_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("explain.db").display());
    let _store = SqliteStore::open(&url, registry()).await.expect("open and migrate");
    let mut c = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO events (id, type, org_id, connection_id, resource_type, resource_id, data, created_us, actor, member_id)
         SELECT printf('ev-%d', i),
                CASE WHEN i % 1000 = 0 THEN 'api_key.revoked' WHEN i % 3 = 0 THEN 'group.member_added' ELSE 'user.created' END,
                printf('org-%d', i % 100), printf('conn-%d', i % 200), 'User', printf('res-%d', i / 4), '{}', i,
                '{\"type\":\"system\"}', CASE WHEN i % 3 = 0 THEN printf('res-%d', (i * 7) % 5000) END
         FROM n",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&mut c).await.unwrap();
    for (what, q, indexes) in cases() {
        let (sql, args) = rollcall_store::sqlite_events::query_events_sql(&q);
        let rows = sqlx::query_with(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")), args)
            .fetch_all(&mut c)
            .await
            .unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
        let text = plan.join("\n");
        for index in indexes {
            assert!(text.contains(index), "{what}: {index} not used:\n{text}");
        }
        assert!(
            !plan
                .iter()
                .any(|l| l.starts_with("SCAN events") && !l.contains("USING")),
            "{what}: full scan:\n{text}"
        );
    }
    // Retention finds the oldest events through its index too.
    let rows =
        sqlx::query("EXPLAIN QUERY PLAN SELECT seq FROM events WHERE created_us < 100 ORDER BY created_us LIMIT 1000")
            .fetch_all(&mut c)
            .await
            .unwrap();
    let text: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
    assert!(text.join("\n").contains("events_created"), "{text:?}");
}

#[tokio::test]
async fn postgres_event_filters_use_indexes() {
    let Some(db) = pg_database().await else {
        skip_note("postgres_event_filters_use_indexes");
        return;
    };
    let url = db.url().to_string();
    let _store = PostgresStore::open(&url, registry(), PgSettings::default())
        .await
        .expect("open and migrate");
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO events (id, type, org_id, connection_id, resource_type, resource_id, data, created_us, actor, member_id)
         SELECT 'ev-' || i,
                CASE WHEN i % 1000 = 0 THEN 'api_key.revoked' WHEN i % 3 = 0 THEN 'group.member_added' ELSE 'user.created' END,
                'org-' || (i % 100), 'conn-' || (i % 200), 'User', 'res-' || (i / 4), '{}'::jsonb, i,
                '{\"type\":\"system\"}'::jsonb, CASE WHEN i % 3 = 0 THEN 'res-' || ((i * 7) % 5000) END
         FROM generate_series(1, 50000) AS i",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("ANALYZE events").execute(&mut c).await.unwrap();
    for (what, q, indexes) in cases() {
        let (sql, args) = rollcall_store::postgres_events::query_events_sql(&q);
        let rows = sqlx::query_with(AssertSqlSafe(format!("EXPLAIN {sql}")), args)
            .fetch_all(&mut c)
            .await
            .unwrap();
        let text: String = rows
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
            .join("\n");
        for index in indexes {
            assert!(text.contains(index), "{what}: {index} not used:\n{text}");
        }
        assert!(!text.contains("Seq Scan"), "{what}: full scan:\n{text}");
    }
    let rows = sqlx::query(
        "EXPLAIN SELECT seq FROM events WHERE created_us < 100 ORDER BY created_us LIMIT 1000 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let text: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    assert!(text.join("\n").contains("events_created"), "{text:?}");
    let _ = c.close().await;
}
