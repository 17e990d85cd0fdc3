//! The store test harness shared by the contract test files: a fresh database per test, on SQLite
//! (a temporary file) and, when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a PostgreSQL
//! server, on PostgreSQL too (created from the admin URL, dropped afterwards), from
//! `rollcall-testkit`.
#![allow(dead_code)]

use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::secrets::{SecretBox, SecretKey};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{Actor, IdpKind, NewConnection, Store, WriteContext};
#[allow(unused_imports)] // each test file uses a part of the harness
pub use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use std::sync::Arc;

/// A store under test, with its database (removed when this is dropped).
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The database's URL, to open it again.
    pub url: String,
    _db: TestDatabase,
}

/// The key the test stores seal secrets with.
pub fn secret_keys() -> SecretBox {
    SecretBox::new(SecretKey::parse(&"11".repeat(32)).expect("a test key"))
}

pub fn registry() -> Arc<SchemaRegistry> {
    Arc::new(SchemaRegistry::standard())
}

pub async fn sqlite_db() -> TestDb {
    let db = TestDatabase::create(Backend::Sqlite, "rollcall_test").await;
    let url = db.url().to_string();
    let store = SqliteStore::open(&url, registry())
        .await
        .expect("open sqlite")
        .with_secrets(secret_keys());
    TestDb {
        store: Arc::new(store),
        url,
        _db: db,
    }
}

/// The store's migrations for `folder` (`sqlite`, `postgres`) numbered below `first`, copied to
/// `dir` (so their checksums are the ones the store finds when it applies the rest): a database as
/// an earlier release left it, for upgrade tests.
pub fn migrations_before(folder: &str, first: i64, dir: &std::path::Path) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version < first {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
}

/// A fresh PostgreSQL database (`None` without a PostgreSQL URL), not yet opened by a store.
pub async fn pg_database() -> Option<TestDatabase> {
    pg_admin_url()?;
    Some(TestDatabase::create(Backend::Postgres, "rollcall_test").await)
}

pub async fn pg_db_with(settings: PgSettings) -> Option<(TestDb, PostgresStore)> {
    let db = pg_database().await?;
    let url = db.url().to_string();
    let store = PostgresStore::open(&url, registry(), settings)
        .await
        .expect("open postgres")
        .with_secrets(secret_keys());
    Some((
        TestDb {
            store: Arc::new(store.clone()),
            url,
            _db: db,
        },
        store,
    ))
}

pub async fn pg_db() -> Option<TestDb> {
    pg_db_with(PgSettings::default()).await.map(|(db, _)| db)
}

/// Generates `sqlite::NAME` and `postgres::NAME` for each contract test `NAME(Arc<dyn Store>)`.
#[allow(unused_macros)] // a test file may use the harness without the macro
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::harness::sqlite_db().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = $crate::harness::pg_db().await else {
                        $crate::harness::skip_note(stringify!($name));
                        return;
                    };
                    super::$name(db.store.clone()).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use contract;

/// An organization with one connection; the context to write with.
pub async fn tenant(store: &dyn Store, name: &str) -> WriteContext {
    let org = store
        .create_organization(&WriteContext::cli(), name)
        .await
        .expect("create org");
    let c = store
        .create_connection(
            &WriteContext::cli(),
            NewConnection {
                org_id: org.id.clone(),
                name: format!("{name} okta"),
                idp: IdpKind::Okta,
                token_hash: hash_of(name),
                token_prefix: format!("rc_{name}"),
            },
        )
        .await
        .expect("create connection");
    WriteContext {
        org_id: org.id,
        connection_id: c.id.clone(),
        user_agent: Some("contract-test".into()),
        request_id: Some(format!("req-{name}")),
        actor: Actor::ScimToken {
            connection_id: c.id,
            token_prefix: Some(format!("rc_{name}")),
        },
    }
}

/// The SHA-256 of `s`, as stored for tokens.
pub fn hash_of(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}
