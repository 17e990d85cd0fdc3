//! Test harness: a fresh store on SQLite (a temporary file) or PostgreSQL (a database of its own,
//! when `ROLLCALL_TEST_DATABASE_URL` or `DATABASE_URL` names a server), and a webhook receiver on a
//! loopback socket that records what arrives and answers as scripted.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rollcall_scim::schema::SchemaRegistry;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{NewWebhook, Store, Webhook};
use rollcall_webhooks::signing;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub use rollcall_testkit::{Backend, TestDatabase, pg_admin_url};

/// Declares `sqlite::NAME` and `postgres::NAME` for each `async fn NAME(Backend)`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::common::pg_admin_url().is_none() {
                        rollcall_testkit::skip_note(stringify!($name));
                        return;
                    }
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// A test database, removed when dropped. `url` opens more stores on the same database.
pub struct Db {
    pub url: String,
    db: TestDatabase,
}

impl Db {
    pub async fn create(backend: Backend) -> Db {
        let db = TestDatabase::create(backend, "rollcall_hooks").await;
        Db {
            url: db.url().to_string(),
            db,
        }
    }

    /// Opens a store (another pool each time) on this database, every one with the same key.
    pub async fn open(&self) -> Arc<dyn Store> {
        let registry = Arc::new(SchemaRegistry::standard());
        match self.db.backend() {
            Backend::Postgres => Arc::new(
                PostgresStore::open(&self.url, registry, PgSettings::default())
                    .await
                    .expect("open PostgreSQL store")
                    .with_secrets(secret_keys()),
            ),
            Backend::Sqlite => Arc::new(
                SqliteStore::open(&self.url, registry)
                    .await
                    .expect("open SQLite store")
                    .with_secrets(secret_keys()),
            ),
        }
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// The last path segment (`/hook/{name}`).
    pub name: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn seq(&self) -> i64 {
        self.json()["data"]["sequence"].as_i64().expect("data.sequence")
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Per name: statuses to answer before answering 200.
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    arrived: Notify,
}

/// A webhook receiver on 127.0.0.1.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let status = state
        .script
        .lock()
        .unwrap()
        .get_mut(&name)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    state.received.lock().unwrap().push(Received {
        name: name.clone(),
        headers,
        body,
        status,
    });
    state.arrived.notify_waiters();
    let code = StatusCode::from_u16(status).unwrap();
    if code.is_redirection() {
        return (code, [("location", "/hook/redirected")], "moved").into_response();
    }
    (code, format!("answer {status} from {name}")).into_response()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/hook/{name}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, state }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/hook/{name}", self.base)
    }

    /// Answers the next requests to `name` with these statuses, then 200.
    pub fn script(&self, name: &str, statuses: &[u16]) {
        self.state
            .script
            .lock()
            .unwrap()
            .insert(name.to_string(), statuses.iter().copied().collect());
    }

    pub fn received(&self, name: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect()
    }

    /// Waits until `name` has received `n` requests that were answered 2xx; panics after a minute.
    pub async fn wait_for(&self, name: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let arrived = self.state.arrived.notified();
            let got = self.received(name);
            if got.iter().filter(|r| (200..300).contains(&r.status)).count() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {} of {n} deliveries arrived",
                got.len()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
        }
    }
}

/// Waits until `cond` holds on the endpoint; panics after a minute.
pub async fn wait_webhook(store: &Arc<dyn Store>, id: &str, what: &str, cond: impl Fn(&Webhook) -> bool) -> Webhook {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let w = store.get_webhook(id).await.unwrap().expect("endpoint");
        if cond(&w) {
            return w;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {w:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An endpoint definition with a fresh secret.
pub fn new_webhook(org_id: Option<&str>, url: &str, event_types: &[&str]) -> NewWebhook {
    NewWebhook {
        org_id: org_id.map(str::to_string),
        url: url.to_string(),
        description: "test".into(),
        event_types: event_types.iter().map(|s| s.to_string()).collect(),
        secret: signing::new_secret(),
    }
}

/// Verifies a delivery with the `standardwebhooks` crate, as a receiver would.
pub fn verify(secret: &str, r: &Received) -> Result<(), String> {
    let hook = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
    hook.verify(&r.body, &r.headers).map_err(|e| e.to_string())
}

/// The key the test stores seal webhook signing secrets with.
pub fn secret_keys() -> rollcall_store::secrets::SecretBox {
    rollcall_store::secrets::SecretBox::new(
        rollcall_store::secrets::SecretKey::parse(&"33".repeat(32)).expect("a test key"),
    )
}
