//! The HTTP layer's limits over a real socket: NUL and control characters in paths, queries and
//! management API bodies; every refusal in the route's error form (SCIM error or problem details),
//! those of the HTTP layer too (408, 413, 414, 415, 405, 431); fair shares (the per-connection
//! rate limit and cap on requests in progress: 429; the node's cap: 503), all with `Retry-After`.

mod common;

use common::*;
use reqwest::Method;
use rollcall_server::HttpLimits;
use rollcall_server::admin::Admin;
use rollcall_server::limits::MAX_RATE_DELAYED;
use rollcall_server::node::NodeSettings;
use rollcall_store::{IdpKind, WriteContext};
use serde_json::{Value, json};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBLEM: &str = "application/problem+json";

async fn api_key(srv: &TestServer) -> String {
    Admin::new(srv.store.clone(), Arc::default(), &srv.base)
        .create_api_key(&WriteContext::cli(), "tests")
        .await
        .expect("create API key")
        .secret
}

/// A request with `key` as bearer token and, with a body, `content_type`.
async fn call(srv: &TestServer, key: &str, method: Method, path: &str, body: Option<(&str, &str)>) -> Resp {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut b = http
        .request(method, format!("{}{path}", srv.base))
        .header("Authorization", format!("Bearer {key}"));
    if let Some((content_type, body)) = body {
        b = b.header("Content-Type", content_type).body(body.to_string());
    }
    let r = b.send().await.expect("request sent");
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
        text,
    }
}

async fn api(srv: &TestServer, key: &str, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let body = body.map(|b| b.to_string());
    call(srv, key, method, path, body.as_deref().map(|b| ("application/json", b))).await
}

/// Asserts problem details with `status`; returns the detail.
#[track_caller]
fn problem(r: &Resp, status: u16) -> String {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert!(
        r.header("content-type").is_some_and(|c| c.starts_with(PROBLEM)),
        "content type {:?}: {}",
        r.header("content-type"),
        r.text
    );
    assert_eq!(r.body["status"], json!(status), "{}", r.text);
    assert!(
        r.body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:rollcall:problem:")),
        "{}",
        r.text
    );
    r.body["detail"].as_str().unwrap_or_default().to_string()
}

/// A raw HTTP/1.1 request on a fresh socket: `head` (without the final blank line) and the start of
/// a body that never completes. The socket is returned, so the request stays in progress.
async fn stalled_post(srv: &TestServer, path: &str, token: &str) -> TcpStream {
    stalled_post_of(srv, path, token, 1000).await
}

/// [`stalled_post`] announcing a body of `length` bytes.
async fn stalled_post_of(srv: &TestServer, path: &str, token: &str, length: usize) -> TcpStream {
    let addr = srv.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{{\"a\""
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s
}

/// Reads what the server answers on `s` until it closes the connection (at most `limit`).
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the server did not close the connection within {limit:?}");
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `probe` until it answers `status` (the requests it waits for are on other sockets).
async fn until_status(status: u16, probe: impl AsyncFnMut() -> Resp) -> Resp {
    until_status_within(status, Duration::from_secs(10), probe).await
}

/// Whether the server has answered (or closed) the request held on `s`.
fn answered(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// [`until_status`] giving up after `limit`.
async fn until_status_within(status: u16, limit: Duration, mut probe: impl AsyncFnMut() -> Resp) -> Resp {
    let deadline = Instant::now() + limit;
    loop {
        let r = probe().await;
        if r.status.as_u16() == status || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- NUL and control characters ------------------------------------------------------------------

/// Every management API path (and SCIM ones) with `%00` in an identifier or a query parameter is
/// refused with 400 in the route's form, before it reaches the database.
async fn nul_in_paths_and_queries() {
    let srv = TestServer::start().await;
    let key = api_key(&srv).await;
    let conn = srv.conn().clone();
    let (o, c) = (conn.org_id.as_str(), conn.id.as_str());
    let api_paths = [
        "/api/v1/organizations/%00".to_string(),
        format!("/api/v1/organizations/{o}%00"),
        "/api/v1/organizations?cursor=%00".to_string(),
        "/api/v1/organizations?limit=1%00".to_string(),
        format!("/api/v1/organizations/{o}/connections%00"),
        "/api/v1/connections/%00".to_string(),
        format!("/api/v1/connections/{c}/requests?cursor=%00"),
        "/api/v1/connections/%00/token-rotation".to_string(),
        "/api/v1/connections/%00/revoke-tokens".to_string(),
        format!("/api/v1/organizations/{o}/roles/%00"),
        format!("/api/v1/organizations/{o}/roles?cursor=%00"),
        "/api/v1/connections/%00/role-mappings".to_string(),
        format!("/api/v1/connections/{c}/role-mappings/%00"),
        "/api/v1/connections/%00/default-roles".to_string(),
        "/api/v1/connections/%00/policy".to_string(),
        format!("/api/v1/organizations/{o}/protected-users/a%00b@example.com"),
        format!("/api/v1/organizations/{o}/users?email=a%00b"),
        format!("/api/v1/organizations/{o}/users?status=%00"),
        format!("/api/v1/organizations/{o}/users?user_name=%00&role=x"),
        format!("/api/v1/organizations/{o}/users?external_id=%00"),
        format!("/api/v1/organizations/{o}/users?group_id=%00"),
        format!("/api/v1/organizations/{o}/users?connection_id=%00"),
        format!("/api/v1/organizations/{o}/users/%00"),
        format!("/api/v1/organizations/{o}/groups?display_name=%00"),
        format!("/api/v1/organizations/{o}/groups/%00/members"),
        format!("/api/v1/organizations/{o}/access?email=%00"),
        format!("/api/v1/organizations/{o}/access?user_id=%00"),
        "/api/v1/api-keys/%00".to_string(),
        "/api/v1/events?type=%00".to_string(),
        "/api/v1/events?after=%00".to_string(),
        format!("/api/v1/events?org_id={o}%00"),
        "/api/v1/events/%00".to_string(),
        "/api/v1/webhooks?org_id=%00".to_string(),
        "/api/v1/webhooks/%00/attempts?cursor=%00".to_string(),
        "/api/v1/webhooks/%00".to_string(),
        // Other control characters, percent-encoded.
        format!("/api/v1/organizations/{o}%0A"),
        "/api/v1/events?type=user.%1F".to_string(),
    ];
    for path in &api_paths {
        for method in [Method::GET, Method::DELETE, Method::POST] {
            let r = api(&srv, &key, method.clone(), path, None).await;
            let detail = problem(&r, 400);
            assert!(
                detail.contains("control character") || detail.contains("NUL"),
                "{method} {path}: {detail}"
            );
        }
    }
    let scim = srv.client();
    for path in [
        "/Users/%00",
        "/Users?filter=userName%20eq%20%22a%00%22",
        "/Users?startIndex=%00",
        "/Groups/%00",
        "/Groups?attributes=members%00",
        "/Schemas/%00",
        "/ResourceTypes/User%7F",
    ] {
        let r = scim.get(path).await;
        let detail = r.expect_error(400, None);
        assert!(
            detail.contains("control character") || detail.contains("NUL"),
            "{path}: {detail}"
        );
    }
    // A SCIM path whose connection id holds one: still a SCIM error.
    let r = srv.client().get(&format!("{}/scim/v2/%00/Users", srv.base)).await;
    r.expect_error(400, None);
    // Nothing reached the store: the request log of the connection is empty.
    let log = api(
        &srv,
        &key,
        Method::GET,
        &format!("/api/v1/connections/{c}/requests"),
        None,
    )
    .await;
    assert_eq!(log.status.as_u16(), 200, "{}", log.text);
}

/// A string holding U+0000 in any field of a management API body is refused with 400 problem
/// details, and nothing is created or changed.
async fn nul_in_management_bodies() {
    let srv = TestServer::start().await;
    let key = api_key(&srv).await;
    let conn = srv.conn().clone();
    let (o, c) = (conn.org_id.as_str(), conn.id.as_str());
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/api/v1/organizations".into(),
            json!({"name": "Ac\u{0}me"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/organizations/{o}"),
            json!({"name": "x\u{0}"}),
        ),
        (
            Method::POST,
            format!("/api/v1/organizations/{o}/connections"),
            json!({"name": "\u{0}", "idp": "okta"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/connections/{c}"),
            json!({"name": "a\u{0}b"}),
        ),
        (
            Method::POST,
            format!("/api/v1/organizations/{o}/roles"),
            json!({"key": "admin", "name": "Admin\u{0}"}),
        ),
        (
            Method::POST,
            format!("/api/v1/organizations/{o}/roles"),
            json!({"key": "ad\u{0}min", "name": "Admin"}),
        ),
        (
            Method::POST,
            format!("/api/v1/organizations/{o}/protected-users"),
            json!({"email": "a\u{0}@example.com"}),
        ),
        (
            Method::POST,
            format!("/api/v1/connections/{c}/role-mappings"),
            json!({"role": "admin", "match": {"group_name": "x\u{0}"}}),
        ),
        (
            Method::PUT,
            format!("/api/v1/connections/{c}/default-roles"),
            json!({"roles": ["a\u{0}"]}),
        ),
        (
            Method::PUT,
            format!("/api/v1/connections/{c}/policy"),
            json!({"required_attributes": ["emails\u{0}"]}),
        ),
        (Method::POST, "/api/v1/api-keys".into(), json!({"name": "deploy\u{0}"})),
        (
            Method::POST,
            "/api/v1/webhooks".into(),
            json!({"url": "https://hooks.example.com/x", "description": "CRM\u{0}sync"}),
        ),
        (
            Method::POST,
            "/api/v1/organizations".into(),
            json!({"na\u{0}me": "Acme"}),
        ),
    ];
    for (method, path, body) in &cases {
        let r = api(&srv, &key, method.clone(), path, Some(body)).await;
        let detail = problem(&r, 400);
        assert!(detail.contains("U+0000"), "{method} {path}: {detail}");
    }
    // Nothing was created or renamed.
    let orgs = api(&srv, &key, Method::GET, "/api/v1/organizations", None).await;
    let names: Vec<&str> = orgs.body["data"]
        .as_array()
        .expect("organizations")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, ["acme"], "{}", orgs.text);
    let roles = api(
        &srv,
        &key,
        Method::GET,
        &format!("/api/v1/organizations/{o}/roles"),
        None,
    )
    .await;
    assert_eq!(roles.body["data"], json!([]), "{}", roles.text);
    let keys = api(&srv, &key, Method::GET, "/api/v1/api-keys", None).await;
    assert_eq!(keys.body["data"].as_array().map(Vec::len), Some(1), "{}", keys.text);
    let hooks = api(&srv, &key, Method::GET, "/api/v1/webhooks", None).await;
    assert_eq!(hooks.body["data"], json!([]), "{}", hooks.text);
    // The same bodies without the NUL go through (the check is not a blanket refusal).
    let ok = api(
        &srv,
        &key,
        Method::POST,
        "/api/v1/organizations",
        Some(&json!({"name": "Acme 2"})),
    )
    .await;
    assert_eq!(ok.status.as_u16(), 201, "{}", ok.text);
}

// --- error forms ---------------------------------------------------------------------------------

fn short_body_timeout() -> Setup {
    Setup {
        limits: HttpLimits {
            body_read_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        },
        ..Setup::default()
    }
}

/// Refusals of the HTTP layer come with a SCIM error body on SCIM routes and problem details on
/// the management API.
async fn http_layer_errors_in_the_route_form() {
    let srv = TestServer::start_with(short_body_timeout()).await;
    let key = api_key(&srv).await;
    let scim = srv.client();
    let token = srv.conn().token.clone();

    // 414: a URI over the limit (under hyper's own).
    let long = "a".repeat(HttpLimits::default().max_uri_bytes);
    let d = scim.get(&format!("/Users?filter={long}")).await.expect_error(414, None);
    assert!(d.contains("16384"), "{d}");
    let r = api(
        &srv,
        &key,
        Method::GET,
        &format!("/api/v1/organizations?cursor={long}"),
        None,
    )
    .await;
    problem(&r, 414);

    // 431: headers over the limit.
    let big = "b".repeat(HttpLimits::default().max_header_bytes);
    scim.get_with("/Users", &[("x-padding", &big)])
        .await
        .expect_error(431, None);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/api/v1/organizations", srv.base))
        .header("Authorization", format!("Bearer {key}"))
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with(PROBLEM));

    // 413: a declared length over the route's limit, refused before the body is read.
    let addr = srv.base.trim_start_matches("http://").to_string();
    for (path, auth, form) in [
        (format!("/scim/v2/{}/Users", srv.conn().id), token.clone(), "scim+json"),
        ("/api/v1/organizations".to_string(), key.clone(), "problem+json"),
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\n\
             Content-Length: 99999999999\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains(form) && answer.contains("99999999999"), "{answer}");
    }

    // 408: a body that stalls, on both kinds of route.
    let mut s = stalled_post(&srv, &format!("/scim/v2/{}/Users", srv.conn().id), &token).await;
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/scim+json") && answer.contains("did not arrive"),
        "{answer}"
    );
    let mut s = stalled_post(&srv, "/api/v1/organizations", &key).await;
    let answer = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(PROBLEM) && answer.contains("request-timeout"),
        "{answer}"
    );
    // The organization was not created.
    let orgs = api(&srv, &key, Method::GET, "/api/v1/organizations", None).await;
    assert_eq!(orgs.body["data"].as_array().map(Vec::len), Some(1), "{}", orgs.text);

    // 415 and 405.
    let r = scim
        .send(
            scim.bare(Method::POST, "/Users")
                .header("Content-Type", "text/plain")
                .body("hello"),
        )
        .await;
    r.expect_error(415, None);
    let r = call(
        &srv,
        &key,
        Method::POST,
        "/api/v1/organizations",
        Some(("text/plain", "x")),
    )
    .await;
    problem(&r, 415);
    scim.send(scim.request(Method::DELETE, "/Users"))
        .await
        .expect_error(405, None);
    let r = api(&srv, &key, Method::PUT, "/api/v1/organizations", Some(&json!({}))).await;
    problem(&r, 405);
    assert!(r.header("allow").is_some(), "405 keeps Allow: {:?}", r.headers);

    // A rejection of the router's own (a path that is not UTF-8) is put in SCIM form too.
    let r = scim.get("/Users/%FF%FE").await;
    assert!(r.status.is_client_error(), "{}", r.text);
    r.expect_error_status(r.status.as_u16());

    // Health checks stay plain.
    let r = http.get(format!("{}/healthz", srv.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

// --- fair shares ---------------------------------------------------------------------------------

/// Over its cap on requests in progress, a SCIM connection gets 429 with `Retry-After` and a SCIM
/// error naming the cap; another connection is not affected; the slots come back.
async fn per_connection_in_flight_cap() {
    let srv = TestServer::start_with(Setup {
        connections: vec![("acme".into(), IdpKind::Okta), ("acme".into(), IdpKind::Entra)],
        limits: HttpLimits {
            max_in_flight_per_connection: 2,
            // Both stalled requests execute (a probe let in before the second one arrives is
            // answered at once instead of waiting for a turn behind a stalled body).
            max_active_per_connection: 2,
            ..HttpLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let busy = srv.conns[0].clone();
    let path = format!("/scim/v2/{}/Users", busy.id);
    let scim = srv.client_for(&busy);
    // Two stalled requests hold the connection's slots. On a loaded machine the database can refuse
    // a stalled request's token lookup (answered at once, holding nothing): such a request is sent
    // again.
    let mut held = Vec::new();
    let mut r = None;
    for _ in 0..5 {
        held.retain_mut(|s: &mut TcpStream| !answered(s));
        while held.len() < 2 {
            held.push(stalled_post(&srv, &path, &busy.token).await);
        }
        let probe = until_status_within(429, Duration::from_secs(3), async || scim.get("/Users").await).await;
        if probe.status.as_u16() == 429 {
            r = Some(probe);
            break;
        }
    }
    let r = r.expect("the connection's cap answered 429 while two requests were held");
    let detail = r.expect_error(429, None);
    assert!(detail.contains("at most 2"), "{detail}");
    assert_eq!(r.header("retry-after"), Some("1"));
    // The other connection of the same organization is served.
    srv.client_for(&srv.conns[1]).get("/Users").await.expect(200);
    // Once the stalled requests end, the connection is served again.
    drop(held);
    until_status(200, async || scim.get("/Users").await).await.expect(200);
    // The refusals are in the connection's request log (written within a moment).
    let key = api_key(&srv).await;
    let log_path = format!("/api/v1/connections/{}/requests", busy.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = api(&srv, &key, Method::GET, &log_path, None).await;
        let refused = log.body["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["status"] == json!(429)));
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "no 429 in the request log: {}", log.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A SCIM connection executes at most `max_active_per_connection` reads and large writes at once;
/// its others wait their turn (not refused) while its small writes and another connection are
/// served, and the turn passes on when the request holding it ends. A request waiting for its turn
/// is not on its body's clock.
async fn per_connection_turns() {
    let srv = TestServer::start_with(Setup {
        connections: vec![("acme".into(), IdpKind::Okta), ("other".into(), IdpKind::Okta)],
        limits: HttpLimits {
            max_active_per_connection: 1,
            body_read_timeout: Duration::from_millis(1500),
            ..HttpLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let busy = srv.conns[0].clone();
    let path = format!("/scim/v2/{}/Users", busy.id);
    // A large write holds the connection's only turn: its body never completes.
    let large = rollcall_server::limits::TURN_FREE_WRITE_BYTES as usize;
    let mut held = stalled_post_of(&srv, &path, &busy.token, large).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let scim = srv.client_for(&busy);
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let r = scim.get("/Users").await;
        (r, started.elapsed())
    });
    // Meanwhile another tenant is served, and so is a small write of the same connection.
    srv.client_for(&srv.conns[1]).get("/Users").await.expect(200);
    srv.client_for(&busy)
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "small@example.com"}),
        )
        .await
        .expect(201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second request did not wait for its turn");
    // The held request's body times out (408): the turn passes to the waiting one.
    let answer = read_to_close(&mut held, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (r, waited) = waiting.await.unwrap();
    r.expect(200);
    assert!(waited >= Duration::from_millis(500), "answered after {waited:?}");
    // A large POST whose body is slow and that waits its turn still has the whole body timeout once
    // its turn comes: the rest of its body, sent 500 ms after the turn passed (2 s after its head,
    // more than the timeout), is read and the user created.
    let mut held = stalled_post_of(&srv, &path, &busy.token, large).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let long = "x".repeat(16 * 1024);
    let body =
        json!({"schemas": [USER_SCHEMA], "userName": "turn@example.com", "nickName": long, "title": long}).to_string();
    assert!(body.len() >= large);
    let (first, rest) = body.split_at(10);
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/scim+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{first}",
        busy.token,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut held, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.write_all(rest.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// Over the node's cap on requests in progress, every route but the health checks answers 503
/// with `Retry-After`, in its own error form; requests go through again once the cap has room.
async fn node_in_flight_cap() {
    let srv = TestServer::start_with(Setup {
        limits: HttpLimits {
            max_in_flight: 2,
            max_active_per_connection: 2,
            ..HttpLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let key = api_key(&srv).await;
    let conn = srv.conn().clone();
    let path = format!("/scim/v2/{}/Users", conn.id);
    let held = [
        stalled_post(&srv, &path, &conn.token).await,
        stalled_post(&srv, &path, &conn.token).await,
    ];
    let scim = srv.client();
    let r = until_status(503, async || scim.get("/Users").await).await;
    let detail = r.expect_error(503, None);
    assert!(detail.contains("maximum of 2"), "{detail}");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = api(&srv, &key, Method::GET, "/api/v1/organizations", None).await;
    problem(&r, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for health in ["/healthz", "/readyz"] {
        let r = http.get(format!("{}{health}", srv.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{health} is not counted");
    }
    drop(held);
    until_status(200, async || scim.get("/Users").await).await.expect(200);
    let r = api(&srv, &key, Method::GET, "/api/v1/organizations", None).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
}

/// The rate limit answers 429 with `Retry-After` and a SCIM error naming it, per connection.
async fn rate_limit_per_connection() {
    let srv = TestServer::start_with(Setup {
        connections: vec![("acme".into(), IdpKind::Okta), ("other".into(), IdpKind::Okta)],
        node: NodeSettings {
            rate_limit: Some((NonZeroU32::new(2).unwrap(), NonZeroU32::new(3).unwrap())),
            ..NodeSettings::default()
        },
        ..Setup::default()
    })
    .await;
    // A client that waits for each answer is paced, not refused: 7 requests, the burst of 3 at
    // once and the next 4 at 2 per second, all answered 200 after about 2 s.
    let scim = srv.client();
    let started = Instant::now();
    for i in 0..7 {
        let r = scim.get("/Users").await;
        assert_eq!(r.status.as_u16(), 200, "request {i}: {}", r.text);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "not paced: {took:?}");
    // Many at once: a few are held back, the others refused with 429, Retry-After and a SCIM
    // error naming the limit.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let scim = srv.client();
        tasks.spawn(async move { scim.get("/Users").await });
    }
    let answers = tasks.join_all().await;
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status.as_u16() == 429).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
    assert!(refused.len() >= 12 - MAX_RATE_DELAYED - 3, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let r = refused[0];
    let detail = r.expect_error(429, None);
    assert!(
        detail.contains("2 requests per second") && detail.contains("bursts of 3"),
        "{detail}"
    );
    let wait: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    srv.client_for(&srv.conns[1]).get("/Users").await.expect(200);
}

backend_tests!(
    nul_in_paths_and_queries,
    nul_in_management_bodies,
    http_layer_errors_in_the_route_form,
    per_connection_in_flight_cap,
    per_connection_turns,
    node_in_flight_cap,
    rate_limit_per_connection,
    early_answers_close_the_connection,
);

// --- keep-alive -------------------------------------------------------------------------------------

/// An answer given before the request's body was read to its end (here: refused for its API key)
/// says `Connection: close`, since the server closes that connection rather than read the rest; a
/// client that reused it would see its next request dropped without an answer. An answer to a
/// request whose body was read keeps the connection open for the next request.
async fn early_answers_close_the_connection() {
    let srv = TestServer::start().await;
    let key = api_key(&srv).await;
    // The body is announced but only its first bytes are sent: 401 comes before it is read.
    let mut s = stalled_post(&srv, "/api/v1/organizations", "not-a-key").await;
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{answer}"
    );

    // Two requests with bodies on one connection, both read: both answered, the connection kept.
    let addr = srv.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for name in ["ka-1", "ka-2"] {
        let body = json!({"name": name}).to_string();
        let req = format!(
            "POST /api/v1/organizations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 201"), "{head}");
        assert!(!head.contains("\r\nconnection: close\r\n"), "{head}");
    }
}
