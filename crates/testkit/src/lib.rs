//! # rollcall-testkit (tests only)
//!
//! Every test suite of the workspace runs its tests on SQLite (a temporary file) and, when
//! `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a PostgreSQL server, on PostgreSQL too, in
//! a database of its own created from that admin URL and dropped afterwards. This crate is that
//! one fixture:
//!
//! - [`TestDatabase`]: a fresh database on a [`Backend`], removed when dropped (also while
//!   unwinding from a failed assertion);
//! - [`backend_tests!`]: declares test bodies once per backend (`sqlite::NAME`, `postgres::NAME`),
//!   with [`current_backend`] telling a body which one it runs on; the PostgreSQL run prints a note
//!   and passes when no PostgreSQL URL is set;
//! - [`pg_admin_url`], [`with_database`]: the URL helpers the suites used to copy.

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use std::future::Future;
use std::path::{Path, PathBuf};

/// Environment variables naming a PostgreSQL server to run the tests against as well (the first one
/// holding a `postgres://` URL wins). The URL is an admin URL: every test creates a database of its
/// own from it and drops it afterwards.
pub const DATABASE_URL_ENVS: [&str; 2] = ["ROLLCALL_TEST_DATABASE_URL", "DATABASE_URL"];

/// The database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The PostgreSQL admin URL from the environment, if any. A `ROLLCALL_TEST_DATABASE_URL` that is
/// neither PostgreSQL nor SQLite is a mistake, not a reason to skip: it panics.
pub fn pg_admin_url() -> Option<String> {
    if let Ok(url) = std::env::var(DATABASE_URL_ENVS[0])
        && !url.is_empty()
        && !url.starts_with("sqlite:")
        && !is_postgres(&url)
    {
        panic!("{}={url}: unsupported database URL", DATABASE_URL_ENVS[0]);
    }
    DATABASE_URL_ENVS
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| is_postgres(u))
}

/// The note a PostgreSQL run prints when it is skipped for want of a URL.
pub fn skip_note(name: &str) {
    eprintln!(
        "skipped postgres::{name}: set {} (or {}) to a postgres:// URL",
        DATABASE_URL_ENVS[0], DATABASE_URL_ENVS[1]
    );
}

/// `url` with its database name replaced by `db` (query parameters kept).
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

tokio::task_local! {
    /// The backend of the running test, set by [`run_on`].
    static BACKEND: Backend;
}

/// Runs one test body with [`current_backend`] set to `backend`. Without a PostgreSQL URL the
/// PostgreSQL run prints a note and passes.
pub async fn run_on<F: Future<Output = ()>>(backend: Backend, name: &str, test: impl FnOnce() -> F) {
    if backend == Backend::Postgres && pg_admin_url().is_none() {
        skip_note(name);
        return;
    }
    BACKEND.scope(backend, test()).await
}

/// The backend of the running test; panics outside [`backend_tests!`] / [`run_on`].
pub fn current_backend() -> Backend {
    BACKEND
        .try_with(|b| *b)
        .expect("declare the test with backend_tests! so that it runs on a known backend")
}

/// Declares test bodies (`async fn NAME()`, defined in the same file) as tests, once per backend:
/// `sqlite::NAME` and `postgres::NAME`. Tests listed under `multi_thread` run on a two-worker
/// runtime, the others on the default current-thread runtime. A body asks
/// [`current_backend`] (or opens a [`TestDatabase`] on it) for its database.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)? $(; multi_thread: $($mt:ident),* $(,)?)?) => {
        $crate::backend_tests!(@mod sqlite, Sqlite; $($name),*; $($($mt),*)?);
        $crate::backend_tests!(@mod postgres, Postgres; $($name),*; $($($mt),*)?);
    };
    (@mod $module:ident, $backend:ident; $($name:ident),*; $($mt:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::run_on($crate::Backend::$backend, stringify!($name), super::$name).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $mt() {
                    $crate::run_on($crate::Backend::$backend, stringify!($mt), super::$mt).await;
                }
            )*
        }
    };
}

/// A database of the test's own: a SQLite file in a temporary directory, or a PostgreSQL database
/// created from the admin URL. Dropping it removes it (PostgreSQL: `DROP DATABASE … WITH (FORCE)`,
/// which also ends the connections still open to it).
pub struct TestDatabase {
    url: String,
    place: Place,
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A fresh database on `backend`, its name starting with `prefix` on PostgreSQL. On PostgreSQL
    /// the database's default collation is ICU `en-US` where the server has ICU, so that results
    /// cannot depend on the server's locale. Panics on PostgreSQL without a URL (tests declared
    /// with [`backend_tests!`] are skipped before that).
    pub async fn create(backend: Backend, prefix: &str) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("t.db").display());
                TestDatabase {
                    url,
                    place: Place::Sqlite(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = pg_admin_url().expect("a PostgreSQL URL in ROLLCALL_TEST_DATABASE_URL");
                let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
                let mut c = PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to the PostgreSQL admin URL: {e}"));
                let icu = format!(
                    "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                );
                if sqlx::query(AssertSqlSafe(icu)).execute(&mut c).await.is_err() {
                    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                        .execute(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                }
                let _ = c.close().await;
                TestDatabase {
                    url: with_database(&admin_url, &name),
                    place: Place::Postgres { admin_url, name },
                }
            }
        }
    }

    /// The database's URL (`sqlite://…/t.db` or `postgres://…/<name>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        match self.place {
            Place::Sqlite(_) => Backend::Sqlite,
            Place::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The SQLite database's file (`None` on PostgreSQL).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match &self.place {
            Place::Sqlite(dir) => Some(dir.path().join("t.db")),
            Place::Postgres { .. } => None,
        }
    }

    /// The temporary directory holding the SQLite file, for files a test keeps beside it (`None`
    /// on PostgreSQL).
    pub fn dir(&self) -> Option<&Path> {
        match &self.place {
            Place::Sqlite(dir) => Some(dir.path()),
            Place::Postgres { .. } => None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Place::Postgres { admin_url, name } = &self.place {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime (or while unwinding): use a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut c).await {
                            eprintln!("dropping test database {name}: {e}");
                        }
                        let _ = c.close().await;
                    }
                });
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_replaces_the_admin_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "t_1"),
            "postgres://u:p@h:5432/t_1"
        );
        assert_eq!(
            with_database("postgres://h/postgres?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[tokio::test]
    async fn a_sqlite_database_lives_in_its_own_directory_until_dropped() {
        let db = TestDatabase::create(Backend::Sqlite, "t").await;
        let dir = db.dir().expect("a directory").to_path_buf();
        assert!(dir.is_dir());
        assert_eq!(db.url(), format!("sqlite://{}", dir.join("t.db").display()));
        drop(db);
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn a_postgres_database_exists_until_dropped() {
        let Some(admin) = pg_admin_url() else {
            skip_note("a_postgres_database_exists_until_dropped");
            return;
        };
        let db = TestDatabase::create(Backend::Postgres, "rollcall_testkit").await;
        let name = db.url().rsplit('/').next().unwrap().to_string();
        let exists = |name: String, admin: String| async move {
            let mut c = PgConnection::connect(&admin).await.expect("connect");
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_one(&mut c)
                .await
                .expect("count");
            n == 1
        };
        let mut open = PgConnection::connect(db.url()).await.expect("the database opens");
        assert!(exists(name.clone(), admin.clone()).await);
        drop(db); // with a connection still open: FORCE ends it
        assert!(!exists(name, admin).await);
        let _ = sqlx::query("SELECT 1").execute(&mut open).await;
    }
}
