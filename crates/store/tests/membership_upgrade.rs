//! Upgrading a database written before memberships and effective grants carried their connection
//! (PostgreSQL migration 0016, SQLite 0017; docs/scaling.md): every row is kept and given the
//! connection of the resources it names, the store reads them as before, and from then on the
//! database refuses a membership that joins two connections. Run on both databases.

mod harness;

use harness::{Backend, TestDatabase, registry};
use rollcall_store::ResourceKind;
use rollcall_store::Store;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::sqlite::SqliteStore;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, PgPool, Row, SqlitePool};

/// The first migration that adds the connection to these tables, per database.
fn upgrade(backend: Backend) -> (&'static str, i64) {
    match backend {
        Backend::Sqlite => ("sqlite", 17),
        Backend::Postgres => ("postgres", 16),
    }
}

/// Two connections of one organization: in `c-a` two users and a group holding both (one with a
/// display), the first user with a role and a workspace; in `c-b` one user.
const SEED: &[&str] = &[
    "INSERT INTO organizations (id, name, created_us) VALUES ('o', 'Org', 1)",
    "INSERT INTO scim_connections (id, org_id, name, idp, created_us) VALUES ('c-a', 'o', 'A', 'generic', 1)",
    "INSERT INTO scim_connections (id, org_id, name, idp, created_us) VALUES ('c-b', 'o', 'B', 'generic', 1)",
    "INSERT INTO resources (pk, connection_id, kind, id, user_name_ci, version, created_us, modified_us, doc, doc_ci)
     VALUES (1, 'c-a', 'User', 'u1', 'ann', 1, 1, 1, '{\"userName\":\"ann\"}', '{}'),
            (2, 'c-a', 'User', 'u2', 'bob', 1, 1, 1, '{\"userName\":\"bob\"}', '{}'),
            (4, 'c-b', 'User', 'u4', 'cat', 1, 1, 1, '{\"userName\":\"cat\"}', '{}')",
    "INSERT INTO resources (pk, connection_id, kind, id, display_name_ci, version, created_us, modified_us, doc, doc_ci)
     VALUES (3, 'c-a', 'Group', 'g3', 'staff', 1, 1, 1, '{\"displayName\":\"Staff\"}', '{}')",
    "INSERT INTO group_members (group_pk, member_pk, display) VALUES (3, 1, 'Ann'), (3, 2, NULL)",
    "INSERT INTO roles (id, org_id, key, key_ci, name, created_us) VALUES ('r', 'o', 'admin', 'admin', 'Admin', 1)",
    "INSERT INTO user_roles (user_pk, role_id) VALUES (1, 'r')",
    "INSERT INTO workspaces (id, org_id, key, key_ci, name, created_us) VALUES ('w', 'o', 'main', 'main', 'Main', 1)",
    "INSERT INTO user_workspaces (user_pk, workspace_id) VALUES (1, 'w')",
];

/// The test on one database: `$pool` is its pool type.
macro_rules! upgrade_test {
    ($name:ident, $backend:expr, $pool:ty, $options:ty) => {
        #[tokio::test]
        async fn $name() {
            let backend = $backend;
            if backend == Backend::Postgres && harness::pg_admin_url().is_none() {
                harness::skip_note(stringify!($name));
                return;
            }
            let db = TestDatabase::create(backend, "rollcall_upgrade").await;
            let options: $options = db.url().parse().unwrap();
            let pool = <$pool>::connect_with(options.create_if_missing_for_test())
                .await
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (folder, first) = upgrade(backend);
            harness::migrations_before(folder, first, dir.path());
            Migrator::new(dir.path()).await.unwrap().run(&pool).await.unwrap();
            for sql in SEED {
                sqlx::query(AssertSqlSafe(*sql)).execute(&pool).await.unwrap();
            }
            let rows = async |sql: &str| -> Vec<String> {
                sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match r.try_get::<Option<String>, _>(i) {
                                Ok(Some(t)) => t,
                                Ok(None) => "NULL".into(),
                                Err(_) => r.get::<i64, _>(i).to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect()
            };

            // Opening the store applies the rest.
            let store: Box<dyn Store> = match backend {
                Backend::Sqlite => Box::new(SqliteStore::open(db.url(), registry()).await.unwrap()),
                Backend::Postgres => Box::new(
                    PostgresStore::open(db.url(), registry(), PgSettings::default())
                        .await
                        .unwrap(),
                ),
            };
            assert_eq!(
                rows("SELECT connection_id, group_pk, member_pk, display FROM group_members ORDER BY member_pk").await,
                ["c-a 3 1 Ann", "c-a 3 2 NULL"]
            );
            assert_eq!(
                rows("SELECT connection_id, user_pk, role_id FROM user_roles").await,
                ["c-a 1 r"]
            );
            assert_eq!(
                rows("SELECT connection_id, user_pk, workspace_id FROM user_workspaces").await,
                ["c-a 1 w"]
            );
            // The store reads them as before.
            let group = store
                .get_resource("c-a", ResourceKind::Group, "g3", true)
                .await
                .unwrap()
                .expect("the group");
            let members: Vec<(String, Option<String>)> = group
                .related
                .expect("members read")
                .into_iter()
                .map(|m| (m.id, m.display))
                .collect();
            assert_eq!(
                members,
                [
                    ("u1".to_string(), Some("Ann".to_string())),
                    ("u2".to_string(), None)
                ]
            );

            // A membership or a grant joining two connections is refused, whichever it names.
            for sql in [
                "INSERT INTO group_members (connection_id, group_pk, member_pk) VALUES ('c-a', 3, 4)",
                "INSERT INTO group_members (connection_id, group_pk, member_pk) VALUES ('c-b', 3, 4)",
                "INSERT INTO user_roles (connection_id, user_pk, role_id) VALUES ('c-a', 4, 'r')",
            ] {
                let refused = sqlx::query(AssertSqlSafe(sql)).execute(&pool).await;
                assert!(refused.is_err(), "{sql} was accepted");
            }
            // The cascade still takes a removed resource's rows.
            sqlx::query("DELETE FROM resources WHERE pk = 1")
                .execute(&pool)
                .await
                .unwrap();
            assert_eq!(rows("SELECT member_pk FROM group_members").await, ["2"]);
            assert!(rows("SELECT user_pk FROM user_roles").await.is_empty());
            assert!(rows("SELECT user_pk FROM user_workspaces").await.is_empty());
            pool.close().await;
        }
    };
}

/// Connect options that create a missing SQLite file (PostgreSQL's database exists).
trait CreateIfMissing {
    fn create_if_missing_for_test(self) -> Self;
}

impl CreateIfMissing for SqliteConnectOptions {
    fn create_if_missing_for_test(self) -> Self {
        self.create_if_missing(true)
    }
}

impl CreateIfMissing for PgConnectOptions {
    fn create_if_missing_for_test(self) -> Self {
        self
    }
}

upgrade_test!(
    sqlite_upgrade_keeps_every_membership_and_grant,
    Backend::Sqlite,
    SqlitePool,
    SqliteConnectOptions
);
upgrade_test!(
    postgres_upgrade_keeps_every_membership_and_grant,
    Backend::Postgres,
    PgPool,
    PgConnectOptions
);
