//! Several `rollcall serve` processes on one PostgreSQL database: three driven concurrently, the
//! load spread over them in turn (uniqueness, membership changes, conditional writes and the event
//! log must hold across nodes exactly as they do within one, and nothing is lost), and two that
//! must hear each other's changes at once.
//!
//! Runs when `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a PostgreSQL server (an admin
//! URL: the test creates a database of its own and drops it afterwards); otherwise it prints a note
//! and passes.

mod serving;

use reqwest::{Method, StatusCode};
use rollcall_testkit::{Backend, TestDatabase, pg_admin_url, skip_note};
use serde_json::{Value, json};
use serving::{cli_json, rollcall};
use sqlx::{Connection as _, PgConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";

/// Phase (a): colliding creates.
const COLLIDING_NAMES: usize = 20;
const ATTEMPTS_PER_NAME: usize = 5;
/// Phase (b): members added to one group, `MEMBERS_PER_PATCH` per request.
const MEMBERS: usize = 200;
const MEMBERS_PER_PATCH: usize = 5;
/// Phase (c): conditional replacements racing for one version.
const CONDITIONAL_WRITERS: usize = 10;

// --- database and processes ----------------------------------------------------------------------

/// A running `rollcall serve`, killed when dropped.
struct Node {
    name: &'static str,
    child: Child,
    /// `http://127.0.0.1:PORT`, as the node reported it.
    origin: String,
}

impl Node {
    /// Starts a node on an ephemeral port; `ready` waits for it.
    fn spawn(name: &'static str, database: &str) -> (Node, mpsc::Receiver<String>) {
        Node::spawn_with(name, database, &[])
    }

    /// [`Node::spawn`] with these environment variables.
    fn spawn_with(name: &'static str, database: &str, env: &[(&str, &str)]) -> (Node, mpsc::Receiver<String>) {
        let mut cmd = rollcall(database);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollcall serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(origin) = line.strip_prefix("Listening on ") {
                    let _ = tx.send(origin.trim().to_string());
                } else {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        (
            Node {
                name,
                child,
                origin: String::new(),
            },
            rx,
        )
    }

    fn ready(&mut self, rx: &mpsc::Receiver<String>, deadline: Instant) {
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(origin) => {
                    self.origin = origin;
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} exited before listening: {:?}", self.name, self.child.try_wait())
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited before listening: {status}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start listening in time",
                self.name
            );
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the test started; fields drop in order: the nodes, then the database.
struct Cluster {
    nodes: Vec<Node>,
    db: TestDatabase,
}

// --- HTTP -----------------------------------------------------------------------------------------

/// A SCIM client for one node and connection.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    node: &'static str,
    base: String,
    token: String,
}

/// A response, read completely.
#[derive(Debug)]
struct Resp {
    node: &'static str,
    status: StatusCode,
    body: Value,
    text: String,
}

impl Resp {
    #[track_caller]
    fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: expected {status}, got {}: {}",
            self.node,
            self.status,
            self.text
        );
        self
    }

    #[track_caller]
    fn not_5xx(&self) {
        assert!(
            !self.status.is_server_error(),
            "{}: server error {}: {}",
            self.node,
            self.status,
            self.text
        );
    }
}

impl Client {
    async fn send(&self, method: Method, path: &str, body: Option<&Value>, if_match: Option<&str>) -> Resp {
        let mut b = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Accept", SCIM_JSON);
        if let Some(body) = body {
            b = b.header("Content-Type", SCIM_JSON).body(body.to_string());
        }
        if let Some(v) = if_match {
            b = b.header("If-Match", v);
        }
        let r = b
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", self.node));
        let status = r.status();
        let text = r.text().await.expect("response body");
        let resp = Resp {
            node: self.node,
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        };
        resp.not_5xx();
        resp
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(body), None).await
    }
}

fn user(user_name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true})
}

fn id_of(doc: &Value) -> String {
    doc["id"].as_str().expect("resource id").to_string()
}

fn version_of(doc: &Value) -> String {
    doc["meta"]["version"].as_str().expect("meta.version").to_string()
}

fn total_of(r: &Resp) -> i64 {
    r.body["totalResults"].as_i64().expect("totalResults")
}

/// Runs every future of `jobs` concurrently and returns their outputs in order.
async fn all<T: Send + 'static>(jobs: Vec<impl Future<Output = T> + Send + 'static>) -> Vec<T> {
    let mut set = JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        set.spawn(async move { (i, job.await) });
    }
    let mut out: Vec<Option<T>> = (0..set.len()).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, v) = r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        out[i] = Some(v);
    }
    out.into_iter().map(|v| v.expect("every job finished")).collect()
}

// --- the test ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_database() {
    if pg_admin_url().is_none() {
        skip_note("three_nodes_share_one_database");
        return;
    }
    let started = Instant::now();
    let db = TestDatabase::create(Backend::Postgres, "rollcall_three_nodes").await;

    // The nodes start at once on the empty database (their migrations race), then the tenant is
    // created with the CLI while they run.
    let (nodes, rxs): (Vec<Node>, Vec<_>) = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|name| Node::spawn(name, db.url()))
        .unzip();
    let mut cluster = Cluster { nodes, db };
    let deadline = Instant::now() + Duration::from_secs(30);
    for (n, rx) in cluster.nodes.iter_mut().zip(&rxs) {
        n.ready(rx, deadline);
    }
    let origins: BTreeSet<&str> = cluster.nodes.iter().map(|n| n.origin.as_str()).collect();
    assert_eq!(
        origins.len(),
        cluster.nodes.len(),
        "each node has an address of its own"
    );

    let url = cluster.db.url().to_string();
    let org = cli_json(&url, &["--create", "org", "create", "--name", "three-nodes", "--json"]);
    assert_eq!(org["name"], "three-nodes", "{org}");
    let conn = cli_json(
        &url,
        &[
            "connection",
            "create",
            "--org",
            "three-nodes",
            "--idp",
            "okta",
            "--public-url",
            &cluster.nodes[0].origin,
            "--json",
        ],
    );
    let conn_id = conn["id"].as_str().expect("connection id").to_string();
    let token = conn["token"].as_str().expect("connection token").to_string();
    assert_eq!(
        conn["scim_base_url"].as_str(),
        Some(format!("{}/scim/v2/{conn_id}", cluster.nodes[0].origin).as_str())
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(32)
        .build()
        .expect("reqwest client");
    let clients: Vec<Client> = cluster
        .nodes
        .iter()
        .map(|n| Client {
            http: http.clone(),
            node: n.name,
            base: format!("{}/scim/v2/{conn_id}", n.origin),
            token: token.clone(),
        })
        .collect();
    let node = |i: usize| clients[i % clients.len()].clone();
    let mut created: BTreeSet<String> = BTreeSet::new();

    // (a) Colliding creates, alternating nodes, in differing case: one 201 per userName.
    let mut jobs = Vec::new();
    for attempt in 0..ATTEMPTS_PER_NAME {
        for n in 0..COLLIDING_NAMES {
            let c = node(n + attempt);
            let name = if attempt % 2 == 0 {
                format!("collide-{n}")
            } else {
                format!("Collide-{n}").to_uppercase()
            };
            jobs.push(async move { (n, c.post("/Users", &user(&name)).await) });
        }
    }
    let mut winners: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (n, r) in all(jobs).await {
        match r.status.as_u16() {
            201 => winners.entry(n).or_default().push(id_of(&r.body)),
            409 => assert_eq!(r.body["scimType"], "uniqueness", "{}: {}", r.node, r.text),
            s => panic!("{}: collide-{n}: unexpected {s}: {}", r.node, r.text),
        }
    }
    for n in 0..COLLIDING_NAMES {
        let ids = winners.get(&n).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "collide-{n}: {} creates succeeded", ids.len());
        created.extend(ids);
    }
    eprintln!("(a) {COLLIDING_NAMES} userNames x {ATTEMPTS_PER_NAME} attempts: one 201 each, the rest 409");

    // (b) Members added to one group through every node at once: none lost.
    let jobs: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let c = node(i);
            async move {
                c.post("/Users", &user(&format!("member-{i:03}")))
                    .await
                    .expect(201)
                    .body
            }
        })
        .collect();
    let members: Vec<String> = all(jobs).await.iter().map(id_of).collect();
    created.extend(members.iter().cloned());
    let group = clients[0]
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "everyone", "members": []}),
        )
        .await
        .expect(201)
        .body;
    let group_path = format!("/Groups/{}", id_of(&group));
    let jobs: Vec<_> = members
        .chunks(MEMBERS_PER_PATCH)
        .enumerate()
        .map(|(i, batch)| {
            let c = node(i);
            let path = group_path.clone();
            let value: Vec<Value> = batch.iter().map(|m| json!({"value": m})).collect();
            let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": value}]});
            async move { c.send(Method::PATCH, &path, Some(&body), None).await }
        })
        .collect();
    for r in all(jobs).await {
        assert!(
            matches!(r.status.as_u16(), 200 | 204),
            "{}: member add: {} {}",
            r.node,
            r.status,
            r.text
        );
    }
    let want: BTreeSet<String> = members.iter().cloned().collect();
    for c in &clients {
        let got = c.get(&group_path).await.expect(200).body;
        let got: BTreeSet<String> = got["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got.len(), MEMBERS, "{}: members of the group", c.node);
        assert_eq!(got, want, "{}: members of the group", c.node);
    }
    eprintln!("(b) {MEMBERS} members added in batches of {MEMBERS_PER_PATCH} through every node: all kept");

    // (c) Conditional replacements of one version through every node: exactly one wins.
    let u = clients[0].post("/Users", &user("contended")).await.expect(201).body;
    created.insert(id_of(&u));
    let path = format!("/Users/{}", id_of(&u));
    let v0 = version_of(&u);
    let jobs: Vec<_> = (0..CONDITIONAL_WRITERS)
        .map(|i| {
            let c = node(i);
            let (path, v0) = (path.clone(), v0.clone());
            let body = json!({"schemas": [USER_SCHEMA], "userName": "contended", "title": format!("writer {i}")});
            async move { c.send(Method::PUT, &path, Some(&body), Some(&v0)).await }
        })
        .collect();
    let results = all(jobs).await;
    let won: Vec<&Resp> = results.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        results.iter().map(|r| (r.node, r.status)).collect::<Vec<_>>()
    );
    for r in results.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}: {}", r.node, r.text);
    }
    let v1 = version_of(&won[0].body);
    assert_ne!(v0, v1);
    for c in &clients {
        let now = c.get(&path).await.expect(200).body;
        assert_eq!(now["title"], won[0].body["title"], "{}", c.node);
        assert_eq!(version_of(&now), v1, "{}", c.node);
        let stale = json!({"schemas": [USER_SCHEMA], "userName": "contended", "title": "stale"});
        c.send(Method::PUT, &path, Some(&stale), Some(&v0)).await.expect(412);
    }
    eprintln!(
        "(c) {CONDITIONAL_WRITERS} PUTs with one If-Match: one 200, the rest 412; stale If-Match 412 on every node"
    );

    // (d) Totals agree on every node and with the event log.
    for c in &clients {
        let r = c.get("/Users?count=1").await.expect(200);
        assert_eq!(total_of(&r), created.len() as i64, "{}: totalResults of /Users", c.node);
        let r = c.get("/Groups?count=1").await.expect(200);
        assert_eq!(total_of(&r), 1, "{}: totalResults of /Groups", c.node);
    }
    let mut pg = PgConnection::connect(cluster.db.url())
        .await
        .expect("connect to the test database");
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT resource_id, count(*) FROM events WHERE type = 'user.created' AND connection_id = $1 GROUP BY resource_id",
    )
    .bind(&conn_id)
    .fetch_all(&mut pg)
    .await
    .expect("read events");
    let _ = pg.close().await;
    let duplicated: Vec<_> = rows.iter().filter(|(_, n)| *n != 1).collect();
    assert!(duplicated.is_empty(), "user.created more than once: {duplicated:?}");
    let with_event: BTreeSet<String> = rows.into_iter().filter_map(|(id, _)| id).collect();
    assert_eq!(with_event, created, "one user.created event per created user");
    eprintln!(
        "(d) {} users: totalResults and user.created events agree on every node ({:.1?} in all)",
        created.len(),
        started.elapsed()
    );

    // Every node is still serving (nothing crashed under the load).
    for n in &mut cluster.nodes {
        assert!(matches!(n.child.try_wait(), Ok(None)), "{} exited", n.name);
    }
}

/// Nodes hear each other (PostgreSQL `LISTEN/NOTIFY`): a change made through node A reaches node B
/// at once. A runs no webhook dispatcher and B polls only once a minute, so B delivers a user
/// created through A promptly only if A's write woke it; a token revoked through A is refused by
/// B, which had just cached it, well before its cache entry would expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_hears_the_other_nodes_changes_at_once() {
    if pg_admin_url().is_none() {
        skip_note("a_node_hears_the_other_nodes_changes_at_once");
        return;
    }
    let db = TestDatabase::create(Backend::Postgres, "rollcall_nodes_hear").await;
    let url = db.url().to_string();
    let key = cli_json(&url, &["--create", "api-key", "create", "--name", "hear", "--json"])["secret"]
        .as_str()
        .expect("API key")
        .to_string();
    cli_json(&url, &["org", "create", "--name", "hear", "--json"]);
    let conn = cli_json(&url, &["connection", "create", "--org", "hear", "--json"]);
    let conn_id = conn["id"].as_str().expect("connection id").to_string();
    let token = conn["token"].as_str().expect("token").to_string();

    let slow_poll = [
        ("ROLLCALL_WEBHOOK_POLL_INTERVAL_MS", "60000"),
        ("ROLLCALL_WEBHOOK_ALLOW_LOOPBACK", "true"),
    ];
    let (a, rx_a) = Node::spawn_with(
        "node-a",
        &url,
        &[slow_poll[0], slow_poll[1], ("ROLLCALL_WEBHOOK_DISPATCHER", "false")],
    );
    let (b, rx_b) = Node::spawn_with("node-b", &url, &slow_poll);
    let mut cluster = Cluster { nodes: vec![a, b], db };
    let deadline = Instant::now() + Duration::from_secs(20);
    cluster.nodes[0].ready(&rx_a, deadline);
    cluster.nodes[1].ready(&rx_b, deadline);
    let (a, b) = (cluster.nodes[0].origin.clone(), cluster.nodes[1].origin.clone());
    let http = reqwest::Client::builder().no_proxy().build().expect("client");

    // A receiver recording the event types it is sent.
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen_tx.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let _ = seen.send(v["type"].as_str().unwrap_or_default().to_string());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let created = http
        .post(format!("{a}/api/v1/webhooks"))
        .bearer_auth(&key)
        .json(&json!({"url": hook_url}))
        .send()
        .await
        .expect("create webhook");
    assert_eq!(created.status().as_u16(), 201, "{:?}", created.text().await);
    // B's dispatcher has claimed nothing yet to deliver; let it settle after the webhook's event.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (1) A write on A, delivered by B.
    let scim = |origin: &str| format!("{origin}/scim/v2/{conn_id}");
    let written = Instant::now();
    let r = http
        .post(format!("{}/Users", scim(&a)))
        .bearer_auth(&token)
        .header("Content-Type", SCIM_JSON)
        .body(user("heard@example.com").to_string())
        .send()
        .await
        .expect("POST /Users on A");
    assert_eq!(r.status().as_u16(), 201);
    let mut seen_rx = seen_rx;
    let delivered = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(t) = seen_rx.recv().await {
            if t == "user.created" {
                return;
            }
        }
    })
    .await;
    assert!(delivered.is_ok(), "B did not deliver user.created within 10 s");
    let after = written.elapsed();
    assert!(
        after < Duration::from_secs(3),
        "B delivered {after:?} after the write on A: it waited for its poll"
    );
    eprintln!("user.created written on A, delivered by B after {after:?}");

    // (2) A token B has just cached, revoked through A: B refuses it at once.
    let get_b = || {
        http.get(format!("{}/Users?count=1", scim(&b)))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(get_b().await.expect("GET on B").status().as_u16(), 200);
    let r = http
        .post(format!("{a}/api/v1/connections/{conn_id}/revoke-tokens"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("revoke on A");
    assert!(r.status().is_success(), "revoke: {} {:?}", r.status(), r.text().await);
    let revoked = Instant::now();
    loop {
        let status = get_b().await.expect("GET on B").status().as_u16();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_millis(400),
            "B still accepts the revoked token {:?} after the revocation (its cache keeps it for 1 s)",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("token revoked on A, refused by B after {:?}", revoked.elapsed());
}
