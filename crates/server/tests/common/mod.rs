//! Test harness: runs the real Rollcall HTTP application on a loopback socket, backed by a fresh
//! database, and talks to it with reqwest the way an identity provider would.
//!
//! Every test runs on SQLite (a temporary file) and, when `ROLLCALL_TEST_DATABASE_URL` (or
//! `DATABASE_URL`) names a PostgreSQL server, on PostgreSQL too, in a database of its own: test files
//! write each test as a plain `async fn` and declare them with [`backend_tests!`].
//!
//! Every test file includes this module with `mod common;`, so not every helper is used by every
//! file.
#![allow(dead_code)]

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::node::{Node, NodeSettings};
use rollcall_server::service::{Scim, ScimConfig};
use rollcall_server::state::AppState;
use rollcall_server::tokens;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{Connection, IdpKind, NewConnection, Store, WriteContext};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use std::sync::Arc;
use tokio::sync::oneshot;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const SCIM_JSON: &str = "application/scim+json";

/// Declares test bodies once per backend (`sqlite::NAME`, `postgres::NAME`): see `rollcall-testkit`.
pub(crate) use rollcall_testkit::backend_tests;
#[allow(unused_imports)] // each test file uses a part of the harness
pub use rollcall_testkit::{
    Backend, DATABASE_URL_ENVS, TestDatabase, current_backend, pg_admin_url, run_on, with_database,
};

/// What a test's database leaves to clean up (the SQLite file's directory, or the PostgreSQL
/// database, dropped with its connections terminated, also while unwinding from a failed assertion).
pub type DbGuard = TestDatabase;

/// The key the test stores seal secrets (webhook signing secrets) with.
pub fn secret_keys() -> rollcall_store::secrets::SecretBox {
    rollcall_store::secrets::SecretBox::new(
        rollcall_store::secrets::SecretKey::parse(&"22".repeat(32)).expect("a test key"),
    )
}

/// Opens a fresh store on `backend`, with the guard that cleans it up.
pub async fn open_store(backend: Backend, registry: Arc<SchemaRegistry>) -> (Arc<dyn Store>, DbGuard) {
    // The guard exists before the store opens, so a failing open still drops the database.
    let db = TestDatabase::create(backend, "rollcall_http").await;
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(
            SqliteStore::open(db.url(), registry)
                .await
                .unwrap_or_else(|e| panic!("opening {}: {e}", db.url()))
                .with_secrets(secret_keys()),
        ),
        Backend::Postgres => Arc::new(
            PostgresStore::open(db.url(), registry, PgSettings::default())
                .await
                .unwrap_or_else(|e| panic!("opening the test database: {e}"))
                .with_secrets(secret_keys()),
        ),
    };
    (store, db)
}

/// A connection the harness created: its id, organization and bearer token.
#[derive(Clone, Debug)]
pub struct Conn {
    pub id: String,
    pub org_id: String,
    pub token: String,
}

/// What to create before the server starts.
pub struct Setup {
    /// One entry per connection: (organization name, identity provider). Connections naming the
    /// same organization share it.
    pub connections: Vec<(String, IdpKind)>,
    pub config: ScimConfig,
    /// The node's settings (rate limit, request log, event retention, metrics).
    pub node: NodeSettings,
    /// The HTTP layer's limits (timeouts, connection and in-flight caps).
    pub limits: rollcall_server::HttpLimits,
    /// Run the outbound provisioning worker, allowed to push to loopback targets (the fakes).
    pub outbound_loopback: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            connections: vec![("acme".into(), IdpKind::Generic)],
            config: ScimConfig::default(),
            node: NodeSettings::default(),
            limits: rollcall_server::HttpLimits::default(),
            outbound_loopback: false,
        }
    }
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub conns: Vec<Conn>,
    pub config: ScimConfig,
    pub backend: Backend,
    /// The SCIM service and node the server runs (for background work a test starts itself, such
    /// as directory syncs).
    pub scim: Scim,
    pub node: Node,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    /// The request log flusher and event retention; they stop when this is dropped.
    _background: rollcall_server::background::Background,
    /// Stops the outbound provisioning worker ([`Setup::outbound_loopback`]) when dropped.
    _outbound: Option<oneshot::Sender<()>>,
    // Last field: dropped after the shutdown signal is sent.
    _db: DbGuard,
}

impl TestServer {
    /// One organization with one generic connection.
    pub async fn start() -> TestServer {
        Self::start_with(Setup::default()).await
    }

    /// One organization with one connection for the given identity provider.
    pub async fn start_for(idp: IdpKind) -> TestServer {
        Self::start_with(Setup {
            connections: vec![("acme".into(), idp)],
            ..Setup::default()
        })
        .await
    }

    pub async fn start_with(setup: Setup) -> TestServer {
        let backend = current_backend();
        let registry = Arc::new(SchemaRegistry::standard());
        let (store, db) = open_store(backend, registry.clone()).await;

        let mut orgs: Vec<(String, String)> = Vec::new();
        let mut conns = Vec::new();
        for (i, (org_name, idp)) in setup.connections.iter().enumerate() {
            let org_id = match orgs.iter().find(|(n, _)| n == org_name) {
                Some((_, id)) => id.clone(),
                None => {
                    let org = store
                        .create_organization(&WriteContext::cli(), org_name)
                        .await
                        .expect("create org");
                    orgs.push((org_name.clone(), org.id.clone()));
                    org.id
                }
            };
            let token = tokens::issue();
            let c: Connection = store
                .create_connection(
                    &WriteContext::cli(),
                    NewConnection {
                        org_id: org_id.clone(),
                        name: format!("{idp} connection {i}"),
                        idp: *idp,
                        token_hash: token.hash,
                        token_prefix: token.display_prefix.clone(),
                    },
                )
                .await
                .expect("create connection");
            conns.push(Conn {
                id: c.id,
                org_id,
                token: token.secret,
            });
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        let config = ScimConfig {
            public_url: base.clone(),
            ..setup.config
        };
        let mut node = Node::new(store.clone(), setup.node);
        let mut outbound_stop = None;
        if setup.outbound_loopback {
            let outbound = rollcall_outbound::Outbound::new(
                store.clone(),
                rollcall_outbound::Transport::new(rollcall_webhooks::NetworkPolicy {
                    allow_loopback: true,
                    ..Default::default()
                }),
                rollcall_outbound::EngineConfig {
                    poll_interval: std::time::Duration::from_millis(100),
                    ..Default::default()
                },
            );
            node = node.with_outbound(outbound.clone());
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(outbound.run_worker("test-node".into(), async {
                let _ = stopped.await;
            }));
            outbound_stop = Some(stop);
        }
        let background = rollcall_server::background::start(&store, &node);
        let scim = Scim::new(store.clone(), registry, config.clone());
        let state = AppState::new(scim.clone(), node.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let app = rollcall_server::app_with(state, setup.limits);
        tokio::spawn(rollcall_server::serve_with(listener, app, setup.limits, async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build().expect("reqwest client");
        TestServer {
            base,
            store,
            conns,
            config,
            backend,
            scim,
            node,
            http,
            shutdown: Some(tx),
            _background: background,
            _outbound: outbound_stop,
            _db: db,
        }
    }

    /// Runs SQL statements on the server's database directly, behind the store's back: to set up
    /// data as an older version left it, say.
    pub async fn execute_sql(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self._db.backend() {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(self._db.url())
                    .await
                    .expect("connect to SQLite");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("run SQL on SQLite");
                let _ = c.close().await;
            }
            Backend::Postgres => {
                let mut c = PgConnection::connect(self._db.url())
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("run SQL on PostgreSQL");
                let _ = c.close().await;
            }
        }
    }

    /// The first connection.
    pub fn conn(&self) -> &Conn {
        &self.conns[0]
    }

    /// The SCIM base URL of a connection.
    pub fn base_url(&self, conn: &Conn) -> String {
        format!("{}/scim/v2/{}", self.base, conn.id)
    }

    pub fn token(&self, conn: &Conn) -> String {
        conn.token.clone()
    }

    /// A client for the first connection.
    pub fn client(&self) -> Client {
        self.client_for(self.conn())
    }

    /// A client that talks to `conn`'s base URL with `conn`'s token.
    pub fn client_for(&self, conn: &Conn) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base_url(conn),
            token: Some(conn.token.clone()),
            user_agent: None,
        }
    }

    /// A client for `conn`'s base URL presenting any token (or none).
    pub fn client_with_token(&self, conn: &Conn, token: Option<&str>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base_url(conn),
            token: token.map(str::to_string),
            user_agent: None,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A SCIM client bound to one base URL and token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
    /// The `User-Agent` every request sends, if set (reqwest sends none by default).
    user_agent: Option<String>,
}

impl Client {
    /// The same client, sending `ua` as its `User-Agent`, as an identity provider does.
    pub fn with_user_agent(&self, ua: &str) -> Client {
        Client {
            user_agent: Some(ua.to_string()),
            ..self.clone()
        }
    }

    /// `path` is relative to the base URL (`/Users?x=y`), or an absolute URL.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// A request with the bearer token and SCIM content type set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.bare(method, path)
            .header("Content-Type", SCIM_JSON)
            .header("Accept", SCIM_JSON)
    }

    /// A request with only the bearer token set (no content type, no accept).
    pub fn bare(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self.http.request(method, self.url(path));
        if let Some(ua) = &self.user_agent {
            b = b.header("User-Agent", ua);
        }
        match &self.token {
            Some(t) => b.header("Authorization", format!("Bearer {t}")),
            None => b,
        }
    }

    pub async fn send(&self, b: reqwest::RequestBuilder) -> Resp {
        Resp::from(b.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::POST, path).body(body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::PUT, path).body(body.to_string())).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::PATCH, path).body(body.to_string()))
            .await
    }

    /// Sends raw bytes as the body.
    pub async fn raw(&self, method: Method, path: &str, body: impl Into<reqwest::Body>) -> Resp {
        self.send(self.request(method, path).body(body)).await
    }

    /// GET with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut b = self.request(Method::GET, path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b).await
    }

    /// Any method with a JSON body and extra headers.
    pub async fn send_with(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
        let mut b = self.request(method, path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(body) = body {
            b = b.body(body.to_string());
        }
        self.send(b).await
    }

    /// Creates a user and returns its document (asserting 201).
    pub async fn create_user(&self, body: &Value) -> Value {
        self.post("/Users", body).await.expect(201).body
    }

    /// Creates a minimal user named `user_name`.
    pub async fn user(&self, user_name: &str) -> Value {
        self.create_user(&serde_json::json!({
            "schemas": [USER_SCHEMA],
            "userName": user_name,
            "active": true,
        }))
        .await
    }

    /// Creates a group with the given member ids.
    pub async fn group(&self, display_name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
        self.post(
            "/Groups",
            &serde_json::json!({"schemas": [GROUP_SCHEMA], "displayName": display_name, "members": members}),
        )
        .await
        .expect(201)
        .body
    }

    /// `totalResults` of a list.
    pub async fn total(&self, path: &str) -> i64 {
        self.get(path).await.expect(200).body["totalResults"]
            .as_i64()
            .expect("totalResults")
    }

    /// Runs a GET and returns the resource document, asserting 200.
    pub async fn fetch(&self, path: &str) -> Value {
        self.get(path).await.expect(200).body
    }
}

/// A response, read completely.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON, or `Null` when empty or not JSON.
    pub body: Value,
}

impl Resp {
    async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text
        );
        self
    }

    /// Asserts a SCIM error response (RFC 7644 §3.12): status, body schema, `status` string and,
    /// when given, `scimType`. Returns the `detail`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, scim_type: Option<&str>) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status} ({scim_type:?}), got {}: {}",
            self.status,
            self.text
        );
        assert!(
            self.header("content-type").is_some_and(|c| c.starts_with(SCIM_JSON)),
            "error content type: {:?}",
            self.header("content-type")
        );
        assert_eq!(
            self.body["schemas"],
            serde_json::json!([ERROR]),
            "error body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status.to_string(), "error body: {}", self.text);
        match scim_type {
            Some(t) => assert_eq!(self.body["scimType"], t, "error body: {}", self.text),
            None => assert!(
                self.body.get("scimType").is_none(),
                "unexpected scimType: {}",
                self.text
            ),
        }
        self.body["detail"].as_str().unwrap_or_default().to_string()
    }

    /// Asserts a SCIM error with the status only (any or no scimType).
    #[track_caller]
    pub fn expect_error_status(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "got {}: {}", self.status, self.text);
        assert_eq!(
            self.body["schemas"],
            serde_json::json!([ERROR]),
            "error body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status.to_string(), "error body: {}", self.text);
    }

    /// The `Resources` of a list response.
    pub fn resources(&self) -> Vec<Value> {
        self.body["Resources"].as_array().cloned().unwrap_or_default()
    }

    /// The ids of a list response's resources, in order.
    pub fn ids(&self) -> Vec<String> {
        self.resources()
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// A percent-encoded query value (spaces as `%20`; every byte outside the unreserved set escaped).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?filter=<encoded>`.
pub fn filter(f: &str) -> String {
    format!("filter={}", enc(f))
}

/// The `value`s of a group's `members` (sorted).
pub fn member_ids(group: &Value) -> Vec<String> {
    let mut v: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The `value`s of a user's `groups` (sorted).
pub fn group_ids(user: &Value) -> Vec<String> {
    let mut v: Vec<String> = user["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A sorted copy of string ids.
pub fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The `id` of a resource document.
pub fn id(doc: &Value) -> String {
    doc["id"].as_str().expect("resource id").to_string()
}

/// A document without `meta` (to compare state before and after a rejected request).
pub fn without_meta(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Value::Object(m) = &mut d {
        m.remove("meta");
    }
    d
}
