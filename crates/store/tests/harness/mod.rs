//! The store test harness shared by the contract test files: a fresh database per test, on SQLite
//! (a temporary file) and, when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a PostgreSQL
//! server, on PostgreSQL too (created from the admin URL, dropped afterwards).
#![allow(dead_code)]

use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::secrets::{SecretBox, SecretKey};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{Actor, IdpKind, NewConnection, Store, WriteContext};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use std::sync::Arc;

/// A store under test, with what must be cleaned up after it.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The database's URL, to open it again.
    pub url: String,
    _guard: Guard,
}

pub enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime (or while unwinding): use a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                        let _ = c.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// The key the test stores seal secrets with.
pub fn secret_keys() -> SecretBox {
    SecretBox::new(SecretKey::parse(&"11".repeat(32)).expect("a test key"))
}

pub fn registry() -> Arc<SchemaRegistry> {
    Arc::new(SchemaRegistry::standard())
}

pub async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = SqliteStore::open(&url, registry())
        .await
        .expect("open sqlite")
        .with_secrets(secret_keys());
    TestDb {
        store: Arc::new(store),
        url,
        _guard: Guard::Sqlite(dir),
    }
}

/// The PostgreSQL admin URL from the environment, if any.
pub fn pg_admin_url() -> Option<String> {
    ["ROLLCALL_TEST_DATABASE_URL", "DATABASE_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Creates a fresh database; with ICU available, one whose default collation is not byte order, so
/// that the store's results cannot depend on the server's locale.
pub async fn create_pg_database(admin_url: &str) -> (String, String) {
    let name = format!("rollcall_test_{}", uuid::Uuid::new_v4().simple());
    let mut c = PgConnection::connect(admin_url)
        .await
        .expect("connect to the admin URL");
    let icu = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    );
    if sqlx::query(AssertSqlSafe(icu)).execute(&mut c).await.is_err() {
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await
            .expect("create database");
    }
    let _ = c.close().await;
    (with_database(admin_url, &name), name)
}

pub async fn pg_db_with(settings: PgSettings) -> Option<(TestDb, PostgresStore)> {
    let admin_url = pg_admin_url()?;
    let (url, name) = create_pg_database(&admin_url).await;
    let guard = Guard::Postgres { admin_url, name };
    let store = PostgresStore::open(&url, registry(), settings)
        .await
        .expect("open postgres")
        .with_secrets(secret_keys());
    Some((
        TestDb {
            store: Arc::new(store.clone()),
            url,
            _guard: guard,
        },
        store,
    ))
}

pub async fn pg_db() -> Option<TestDb> {
    pg_db_with(PgSettings::default()).await.map(|(db, _)| db)
}

pub fn skip_note(test: &str) {
    eprintln!("skipped postgres::{test}: set ROLLCALL_TEST_DATABASE_URL (or DATABASE_URL) to a postgres:// URL");
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
