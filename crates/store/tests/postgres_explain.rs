//! The hot lookups of the identity providers' flows must be index scans on PostgreSQL: seeds a few
//! thousand users, `ANALYZE`s, and `EXPLAIN`s the statements the store runs for `userName eq`,
//! `externalId eq`, `id eq`, `displayName eq` (groups) and `emails.value eq`, with the parameters
//! bound (custom plan) and as a prepared statement with a generic plan (what a cached statement
//! may get). Runs only when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a PostgreSQL
//! server; otherwise it prints a note and passes.

use rollcall_scim::filter::Filter;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::sql::bind_all;
use rollcall_store::sql::{Bind, SqlBuilder};
use rollcall_store::*;
use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use serde_json::json;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use std::sync::Arc;

async fn tenant(store: &PostgresStore, name: &str) -> WriteContext {
    let org = store.create_organization(&WriteContext::cli(), name).await.unwrap();
    let mut hash = [0u8; 32];
    hash[..name.len()].copy_from_slice(name.as_bytes());
    let c = store
        .create_connection(
            &WriteContext::cli(),
            NewConnection {
                org_id: org.id.clone(),
                name: name.into(),
                idp: IdpKind::Okta,
                token_hash: hash,
                token_prefix: name.into(),
            },
        )
        .await
        .unwrap();
    WriteContext {
        org_id: org.id,
        connection_id: c.id,
        ..Default::default()
    }
}

/// Creates `n` users (and, with `groups`, a group for every tenth) in parallel.
async fn seed(store: &PostgresStore, ctx: &WriteContext, prefix: &str, n: usize, groups: bool) {
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (store, ctx, prefix) = (store.clone(), ctx.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                let doc = json!({
                    "userName": format!("{prefix}user{i}@example.com"),
                    "externalId": format!("{prefix}ext-{i}"),
                    "displayName": format!("User {i}"),
                    "active": i % 10 != 0,
                    "name": {"givenName": "Given", "familyName": format!("Family{}", i % 50)},
                    "emails": [{"value": format!("{prefix}user{i}@example.com"), "type": "work", "primary": true},
                               {"value": format!("{prefix}u{i}@home.example"), "type": "home"}],
                });
                store
                    .create_resource(&ctx, ResourceKind::User, doc, vec![])
                    .await
                    .unwrap();
                if groups && i % 10 == 0 {
                    let g = json!({"displayName": format!("{prefix}Group {i}")});
                    store
                        .create_resource(&ctx, ResourceKind::Group, g, vec![])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// `b` as an `EXECUTE` argument list.
fn literals(binds: &[Bind]) -> String {
    binds
        .iter()
        .map(|b| match b {
            Bind::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Bind::Int(i) => i.to_string(),
            Bind::Real(f) => format!("{f:?}"),
            Bind::Bool(v) => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn plan_lines(conn: &mut PgConnection, sql: &str, args: sqlx::postgres::PgArguments) -> String {
    let rows = sqlx::query_with(AssertSqlSafe(format!("EXPLAIN {sql}")), args)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    rows.iter()
        .map(|r| r.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The plans of `stmt`: with its parameters bound, and generic.
async fn plans(conn: &mut PgConnection, stmt: &SqlBuilder) -> Vec<(&'static str, String)> {
    let custom = plan_lines(conn, &stmt.sql, bind_all::<sqlx::Postgres>(&stmt.binds)).await;
    sqlx::query(AssertSqlSafe(format!("PREPARE rollcall_explain AS {}", stmt.sql)))
        .execute(&mut *conn)
        .await
        .unwrap();
    let generic = plan_lines(
        conn,
        &format!("EXECUTE rollcall_explain({})", literals(&stmt.binds)),
        Default::default(),
    )
    .await;
    sqlx::query("DEALLOCATE rollcall_explain")
        .execute(&mut *conn)
        .await
        .unwrap();
    vec![("custom", custom), ("generic", generic)]
}

/// A store on a fresh PostgreSQL database (kept while the returned database lives), or `None`
/// with a note when there is no PostgreSQL server to test on.
async fn pg_store(test: &str) -> Option<(TestDatabase, PostgresStore, Arc<SchemaRegistry>)> {
    if pg_admin_url().is_none() {
        skip_note(test);
        return None;
    }
    let db = TestDatabase::create(Backend::Postgres, "rollcall_test").await;
    let registry = Arc::new(SchemaRegistry::standard());
    let store = PostgresStore::open(db.url(), registry.clone(), PgSettings::default())
        .await
        .unwrap();
    Some((db, store, registry))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_lookups_are_index_scans() {
    let Some((_db, store, registry)) = pg_store("hot_lookups_are_index_scans").await else {
        return;
    };

    // Two tenants, so that the connection id is selective too; some deleted users.
    let a = tenant(&store, "a").await;
    let b = tenant(&store, "b").await;
    seed(&store, &a, "", 3000, true).await;
    seed(&store, &b, "", 1000, true).await;
    for i in 0..50 {
        let id = store
            .list_resources(
                &a.connection_id,
                ResourceKind::User,
                &ListQuery {
                    filter: Some(Filter::parse(&format!("externalId eq \"ext-{i}\"")).unwrap()),
                    sort: None,
                    paging: Paging::Index { start_index: 1 },
                    count: 1,
                    with_members: false,
                    max_bytes: ListQuery::DEFAULT_MAX_BYTES,
                },
            )
            .await
            .unwrap()
            .resources[0]
            .id
            .clone();
        store.delete_resource(&a, ResourceKind::User, &id, None).await.unwrap();
    }
    // Every user of `a` in one group, so that reading a user's groups has rows to find (through
    // `group_members_member`, not a scan of every membership).
    sqlx::query(
        "INSERT INTO group_members (connection_id, group_pk, member_pk)
         SELECT $1, (SELECT min(pk) FROM resources WHERE connection_id = $1 AND kind = 'Group'), pk
         FROM resources WHERE connection_id = $1 AND kind = 'User'",
    )
    .bind(&a.connection_id)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    let some_id: String =
        sqlx::query_scalar("SELECT id FROM resources WHERE connection_id = $1 AND external_id = 'ext-2000'")
            .bind(&a.connection_id)
            .fetch_one(store.pool())
            .await
            .unwrap();

    let cases: Vec<(ResourceKind, String, &str)> = vec![
        (
            ResourceKind::User,
            "userName eq \"User1234@Example.com\"".into(),
            "resources_user_name",
        ),
        (
            ResourceKind::User,
            "externalId eq \"ext-1234\"".into(),
            "resources_external_id",
        ),
        (ResourceKind::User, format!("id eq \"{some_id}\""), "resources_id"),
        (
            ResourceKind::Group,
            "displayName eq \"group 1230\"".into(),
            "resources_group_name",
        ),
        (
            ResourceKind::User,
            "emails.value eq \"USER1234@example.com\"".into(),
            "resource_emails_value",
        ),
    ];
    let mut conn = store.pool().acquire().await.unwrap();
    let mut failures = Vec::new();
    for (kind, filter, index) in &cases {
        let f = Filter::parse(filter).unwrap();
        f.validate(&registry, registry.resource_type(kind.as_str()).unwrap())
            .unwrap();
        let query = ListQuery {
            filter: Some(f),
            sort: None,
            paging: Paging::Index { start_index: 1 },
            count: 100,
            // A user's groups are read in the same statement, through `group_members_member`.
            // (A group's members are all read: a scan of them is a fair plan for a big group.)
            with_members: *kind == ResourceKind::User,
            max_bytes: ListQuery::DEFAULT_MAX_BYTES,
        };
        // The filter finds what it should.
        let page = store.list_resources(&a.connection_id, *kind, &query).await.unwrap();
        assert_eq!(page.total, 1, "{filter}");
        let sql = store.list_sql(&a.connection_id, *kind, &query, None).unwrap();
        for (what, stmt) in [("count", &sql.count), ("page", &sql.page)] {
            for (mode, plan) in plans(&mut conn, stmt).await {
                println!("--- {filter} ({what}, {mode} plan)\n{plan}");
                if plan.contains("Seq Scan on resources")
                    || plan.contains("Seq Scan on resource_emails")
                    || plan.contains("Seq Scan on group_members")
                {
                    failures.push(format!("{filter} ({what}, {mode} plan): sequential scan\n{plan}"));
                } else if !plan.contains(index) {
                    failures.push(format!("{filter} ({what}, {mode} plan): does not use {index}\n{plan}"));
                }
            }
        }
    }

    // A page after the first (an identity provider's full read, `startIndex` 1001) carries the
    // count of every match in the same statement, computed once (an `InitPlan`), not for each row
    // the OFFSET skips. (How it counts is the planner's choice: here tenant `a` holds three
    // quarters of the table, and reading the table through is the cheaper plan.)
    let later = ListQuery {
        filter: None,
        sort: None,
        paging: Paging::Index { start_index: 1001 },
        count: 100,
        with_members: false,
        max_bytes: ListQuery::DEFAULT_MAX_BYTES,
    };
    let page = store
        .list_resources(&a.connection_id, ResourceKind::User, &later)
        .await
        .unwrap();
    assert_eq!((page.total, page.resources.len()), (2950, 100));
    let sql = store
        .list_sql(&a.connection_id, ResourceKind::User, &later, None)
        .unwrap();
    assert!(sql.total_inline);
    // The rows its OFFSET skips are found by their keys alone, and only the page's own 100 rows are
    // read whole, by key: skipped in the same scan as the page, each of the thousand rows before
    // it was fetched from the table.
    for (mode, plan) in plans(&mut conn, &sql.page).await {
        println!("--- page 11 ({mode} plan)\n{plan}");
        if !plan.contains("InitPlan") {
            failures.push(format!("page 11 ({mode} plan): the count is not computed once\n{plan}"));
        }
        if !plan.contains("Index Cond: (pk = ANY") {
            failures.push(format!(
                "page 11 ({mode} plan): the page's rows are not read by key\n{plan}"
            ));
        }
    }
    // On a smaller tenant (a quarter of the table) with the visibility map current, as autovacuum
    // keeps it: the count and the keys the OFFSET skips are index-only scans of the connection's
    // live users (`resources_live_users`, one index per kind), not of an index of both kinds.
    sqlx::query("VACUUM ANALYZE resources")
        .execute(store.pool())
        .await
        .unwrap();
    let later_b = ListQuery {
        paging: Paging::Index { start_index: 501 },
        ..later
    };
    let sql = store
        .list_sql(&b.connection_id, ResourceKind::User, &later_b, None)
        .unwrap();
    for (mode, plan) in plans(&mut conn, &sql.page).await {
        println!("--- tenant b, page 6 ({mode} plan)\n{plan}");
        if plan.matches("Index Only Scan using resources_live_users").count() != 2 {
            failures.push(format!(
                "tenant b, page 6 ({mode} plan): the count and the skipped keys are not read from resources_live_users\n{plan}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A connection that was empty when the tables were last analyzed (a new tenant, an initial sync)
/// is estimated at one row, and a lookup by id may then read the whole connection through any index
/// that leads with it. The store analyzes the resource tables itself once the connection has grown
/// (`postgres::statistics`): after 1,000 users the statistics know the connection and the lookup by
/// id uses `resources_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_grows_is_analyzed_by_the_store() {
    let Some((_db, store, _)) = pg_store("a_connection_that_grows_is_analyzed_by_the_store").await else {
        return;
    };
    let old = tenant(&store, "old").await;
    let new = tenant(&store, "new").await;
    seed(&store, &old, "old", 300, false).await;
    // Statistics from before the new connection had any user.
    sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    let known = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE tablename = 'resources' AND attname = 'connection_id'
                            AND $1 = ANY(most_common_vals::text::text[]))",
        )
        .bind(&new.connection_id)
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    assert!(!known().await);
    seed(&store, &new, "new", 1000, false).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !known().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not analyze the resource tables after the connection grew by 1,000 users"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id: String = sqlx::query_scalar("SELECT id FROM resources WHERE connection_id = $1 LIMIT 1")
        .bind(&new.connection_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    let query = ListQuery {
        filter: Some(Filter::parse(&format!("id eq \"{id}\"")).unwrap()),
        sort: None,
        paging: Paging::Index { start_index: 1 },
        count: 100,
        with_members: false,
        max_bytes: ListQuery::DEFAULT_MAX_BYTES,
    };
    let sql = store
        .list_sql(&new.connection_id, ResourceKind::User, &query, None)
        .unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let plan = plan_lines(&mut conn, &sql.page.sql, bind_all::<sqlx::Postgres>(&sql.page.binds)).await;
    assert!(
        plan.contains("resources_id"),
        "the lookup by id does not use resources_id:\n{plan}"
    );
}
