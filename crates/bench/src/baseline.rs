//! The trivial baseline: an axum server over one table, on the database the measured Rollcall
//! runs on, configured as Rollcall configures it: on SQLite WAL, `synchronous=FULL`, one writer
//! connection and a read-only reader pool; on PostgreSQL a pool of 16 connections in a database of
//! its own on the same server. It runs in its own process (`baseline-server`), so the load
//! generator competes with it exactly as it competes with Rollcall.

use crate::load::Op;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use rand::Rng;
use rand::rngs::SmallRng;
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the baseline keeps its table: a SQLite file with Rollcall's SQLite settings, or a
/// PostgreSQL database with Rollcall's PostgreSQL pool shape.
#[derive(Clone, Debug)]
pub enum BaselineDb {
    Sqlite(PathBuf),
    Postgres(String),
}

/// The pools the handlers use. Every statement is written once, with `$n` placeholders, which
/// both of sqlx's drivers accept.
#[derive(Clone)]
enum Db {
    Sqlite { reader: SqlitePool, writer: SqlitePool },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool for reads (`read`) or writes (`write`) of `$db`,
/// whatever its database: the statements are the same text on both.
macro_rules! on_pool {
    ($db:expr, read, |$pool:ident| $body:expr) => {
        match &$db {
            Db::Sqlite { reader: $pool, .. } => $body,
            Db::Postgres($pool) => $body,
        }
    };
    ($db:expr, write, |$pool:ident| $body:expr) => {
        match &$db {
            Db::Sqlite { writer: $pool, .. } => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// A document about the size of a seeded SCIM user.
pub fn row_doc(user_name: &str, n: u64) -> Value {
    json!({
        "userName": user_name,
        "externalId": format!("ext-{n}"),
        "name": {"givenName": "Base", "familyName": format!("Line {n}")},
        "displayName": format!("Base Line {n}"),
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true,
    })
}

/// Serves the baseline on 127.0.0.1:`port` with `rows` rows in `db`, until SIGTERM or Ctrl-C.
pub async fn serve(port: u16, db: &BaselineDb, rows: u64) -> Result<(), String> {
    let db = match db {
        BaselineDb::Sqlite(file) => open_sqlite(file).await?,
        BaselineDb::Postgres(url) => open_postgres(url).await?,
    };
    seed(&db, rows).await?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/rows/{id}", get(read_row))
        .route("/rows", post(insert_row).get(page_rows))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string())
}

/// WAL, `synchronous=FULL`, one writer connection and a read-only reader pool, as Rollcall's
/// SQLite store.
async fn open_sqlite(file: &FsPath) -> Result<Db, String> {
    let opts = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-32768")
        .pragma("temp_store", "memory");
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect_with(opts.clone())
        .await
        .map_err(|e| format!("opening {}: {e}", file.display()))?;
    sqlx::query("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL, doc TEXT NOT NULL)")
        .execute(&writer)
        .await
        .map_err(|e| e.to_string())?;
    let readers = std::thread::available_parallelism()
        .map(|n| n.get() as u32 * 2)
        .unwrap_or(4)
        .max(4);
    let reader = SqlitePoolOptions::new()
        .max_connections(readers)
        .min_connections(1)
        .connect_with(opts.read_only(true))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Db::Sqlite { reader, writer })
}

/// One pool of at most 16 connections (Rollcall's PostgreSQL default), the server's default
/// durability (`synchronous_commit = on`), and no ping before each statement (as Rollcall).
async fn open_postgres(url: &str) -> Result<Db, String> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .min_connections(1)
        .test_before_acquire(false)
        .connect(url)
        .await
        .map_err(|e| format!("connecting to the baseline's PostgreSQL database: {e}"))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS rows (id BIGSERIAL PRIMARY KEY, user_name TEXT NOT NULL, doc TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .map_err(|e| e.to_string())?;
    Ok(Db::Postgres(pool))
}

/// Inserts the missing rows up to `rows`, in one transaction.
async fn seed(db: &Db, rows: u64) -> Result<(), String> {
    let have: i64 = on_pool!(db, write, |pool| sqlx::query_scalar("SELECT COUNT(*) FROM rows")
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?);
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut docs = Vec::new();
    for n in have as u64..rows {
        let user_name = format!("row-{n}@baseline.example");
        ids.push((n + 1) as i64);
        docs.push(row_doc(&user_name, n).to_string());
        names.push(user_name);
    }
    on_pool!(db, write, |pool| {
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        for ((id, name), doc) in ids.iter().zip(&names).zip(&docs) {
            sqlx::query("INSERT INTO rows (id, user_name, doc) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(name)
                .bind(doc)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    });
    if let Db::Postgres(pool) = db {
        // The rows were inserted with their ids: new rows continue after them.
        sqlx::query("SELECT setval(pg_get_serial_sequence('rows', 'id'), GREATEST((SELECT MAX(id) FROM rows), 1))")
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("ANALYZE rows")
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

type Answer = Result<(StatusCode, Json<Value>), (StatusCode, String)>;

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn read_row(State(db): State<Db>, Path(id): Path<i64>) -> Answer {
    let row: Option<(i64, String, String)> = on_pool!(db, read, |pool| sqlx::query_as(
        "SELECT id, user_name, doc FROM rows WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(internal)?);
    let (id, user_name, doc) = row.ok_or((StatusCode::NOT_FOUND, "no such row".to_string()))?;
    let doc: Value = serde_json::from_str(&doc).map_err(internal)?;
    Ok((
        StatusCode::OK,
        Json(json!({"id": id, "userName": user_name, "doc": doc})),
    ))
}

/// `GET /rows?offset=R&limit=N`: N rows in id order, each parsed from its stored document
/// and rendered the way `read_row` renders one.
async fn page_rows(State(db): State<Db>, Query(q): Query<HashMap<String, String>>) -> Answer {
    let number = |key: &str, default: i64| match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| (StatusCode::BAD_REQUEST, format!("{key} must be an integer"))),
    };
    let (offset, limit) = (number("offset", 0)?, number("limit", 100)?);
    let rows: Vec<(i64, String, String)> = on_pool!(db, read, |pool| sqlx::query_as(
        "SELECT id, user_name, doc FROM rows ORDER BY id LIMIT $1 OFFSET $2"
    )
    .bind(limit.clamp(0, 1000))
    .bind(offset.max(0))
    .fetch_all(pool)
    .await
    .map_err(internal)?);
    let mut out = Vec::with_capacity(rows.len());
    for (id, user_name, doc) in rows {
        let doc: Value = serde_json::from_str(&doc).map_err(internal)?;
        out.push(json!({"id": id, "userName": user_name, "doc": doc}));
    }
    Ok((StatusCode::OK, Json(Value::Array(out))))
}

async fn insert_row(State(db): State<Db>, Json(body): Json<Value>) -> Answer {
    let user_name = body
        .get("userName")
        .and_then(Value::as_str)
        .ok_or((StatusCode::BAD_REQUEST, "userName is required".to_string()))?
        .to_string();
    let id: i64 = on_pool!(db, write, |pool| {
        let mut tx = pool.begin().await.map_err(internal)?;
        let id: i64 = sqlx::query_scalar("INSERT INTO rows (user_name, doc) VALUES ($1, $2) RETURNING id")
            .bind(&user_name)
            .bind(body.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        id
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "userName": user_name, "doc": body})),
    ))
}

/// `GET /rows/{id}` on a random seeded row.
pub struct ReadRow {
    pub base: String,
    pub rows: u64,
}

impl Op for ReadRow {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder {
        let id = rng.random_range(1..=self.rows.max(1));
        client.get(format!("{}/rows/{id}", self.base))
    }
}

/// `GET /rows?offset=R&limit=100` with a random R over the seeded rows, the baseline of `page`.
pub struct PageRows {
    pub base: String,
    pub rows: u64,
}

impl Op for PageRows {
    fn request(&self, client: &Client, rng: &mut SmallRng) -> RequestBuilder {
        let last = self.rows.saturating_sub(100);
        let offset = rng.random_range(0..=last);
        client.get(format!("{}/rows?offset={offset}&limit=100", self.base))
    }
}

/// `POST /rows` with a new row.
pub struct InsertRow {
    pub base: String,
    pub prefix: String,
    pub counter: AtomicU64,
}

impl Op for InsertRow {
    fn request(&self, client: &Client, _rng: &mut SmallRng) -> RequestBuilder {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let user_name = format!("{}-{n}@baseline.example", self.prefix);
        client
            .post(format!("{}/rows", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(row_doc(&user_name, n).to_string())
    }
}
