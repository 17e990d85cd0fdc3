//! The target client and OAuth client credentials against local servers over real sockets.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use rollcall_outbound::auth::{ClientAuthMethod, Credentials, OAuthClientCredentials, Secret};
use rollcall_outbound::client::{
    ErrorKind, RetryMode, RetryPolicy, ScimRequest, TargetClient, TargetConfig, Transport,
};
use rollcall_outbound::profile;
use rollcall_webhooks::ssrf::NetworkPolicy;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn loopback() -> Transport {
    Transport::new(NetworkPolicy {
        allow_loopback: true,
        ..Default::default()
    })
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(10),
    }
}

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/scim/v2/")
}

/// One scripted answer: status, headers, delay before answering.
type Answer = (u16, Vec<(&'static str, String)>, Option<Duration>);

/// What the scripted target answers, in order (then 200 `{}`), and what it saw.
#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
}

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    method: String,
    authorization: Option<String>,
    headers: HeaderMap,
}

type Shared = Arc<Mutex<Script>>;

async fn scripted(State(s): State<Shared>, method: axum::http::Method, headers: HeaderMap) -> Response {
    let next = {
        let mut s = s.lock().unwrap();
        s.seen.push(Seen {
            at: Instant::now(),
            method: method.to_string(),
            authorization: headers.get("authorization").map(|v| v.to_str().unwrap().to_string()),
            headers: headers.clone(),
        });
        s.answers.pop_front()
    };
    let (status, hdrs, delay) = next.unwrap_or((200, vec![], None));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = if status == 200 {
        (StatusCode::OK, axum::Json(json!({"id": "u1"}))).into_response()
    } else {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.to_string(),
            "detail": format!("scripted {status}"),
        });
        (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
    };
    for (n, v) in hdrs {
        resp.headers_mut().insert(n, v.parse().unwrap());
    }
    resp
}

async fn scripted_target(answers: Vec<Answer>) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Script {
        answers: answers.into(),
        seen: vec![],
    }));
    let app = Router::new()
        .route("/scim/v2/{*rest}", any(scripted))
        .with_state(state.clone());
    (serve(app).await, state)
}

fn client(base: &str, credentials: Credentials) -> TargetClient {
    let mut config = TargetConfig::new(base, profile::generic().clone(), credentials);
    config.retry = fast_retries();
    config.timeout = Duration::from_secs(5);
    TargetClient::new(loopback(), config).unwrap()
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let (base, state) = scripted_target(vec![(429, vec![("retry-after", "1".into())], None)]).await;
    let c = client(&base, Credentials::bearer("tok"));
    let resp = c
        .send(ScimRequest::post("Users", json!({"userName": "a"})))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.attempts, 2);
    // A 429 is a refusal: the POST was not processed, so even a POST is retried, and not counted
    // as an unknown outcome.
    assert!(!resp.earlier_outcome_unknown);
    let seen = state.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "{:?}",
        seen[1].at - seen[0].at
    );
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok"));
}

#[tokio::test]
async fn a_503_with_an_http_date_is_waited_out() {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let date = at
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap();
    let (base, state) = scripted_target(vec![(503, vec![("retry-after", date)], None)]).await;
    let c = client(&base, Credentials::bearer("tok"));
    let resp = c.send(ScimRequest::get("Users")).await.unwrap();
    assert_eq!(resp.attempts, 2);
    let seen = state.lock().unwrap().seen.clone();
    // The date has a one-second resolution: at least one second passed.
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_ends_the_request_with_it() {
    let (base, state) = scripted_target(vec![(429, vec![("retry-after", "3600".into())], None)]).await;
    let c = client(&base, Credentials::bearer("tok"));
    let e = c.send(ScimRequest::get("Users")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    assert_eq!(e.attempts, 1);
    assert!(e.counts_against_target() && e.is_transient());
    assert_eq!(state.lock().unwrap().seen.len(), 1);
}

#[tokio::test]
async fn a_500_is_retried_for_a_get_but_not_for_a_post() {
    let (base, state) = scripted_target(vec![(500, vec![], None), (500, vec![], None)]).await;
    let c = client(&base, Credentials::bearer("tok"));
    let e = c.send(ScimRequest::post("Users", json!({}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServerError);
    assert_eq!(e.status, Some(500));
    assert_eq!(e.detail.as_deref(), Some("scripted 500"));
    assert_eq!(
        state.lock().unwrap().seen.len(),
        1,
        "a POST that may have been processed is not repeated"
    );
    let resp = c.send(ScimRequest::get("Users/u1")).await.unwrap();
    assert_eq!(resp.attempts, 2);
    assert!(resp.earlier_outcome_unknown);
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt() {
    let (base, state) = scripted_target(vec![(503, vec![], None); 10]).await;
    let c = client(&base, Credentials::bearer("tok"));
    let e = c.send(ScimRequest::get("Users")).await.unwrap_err();
    assert_eq!(e.status, Some(503));
    assert_eq!(e.attempts, 4);
    assert_eq!(state.lock().unwrap().seen.len(), 4);
    let never = c
        .send(ScimRequest::get("Users").retry(RetryMode::Never))
        .await
        .unwrap_err();
    assert_eq!(never.attempts, 1);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_an_idempotent_request_is_retried() {
    let (base, state) = scripted_target(vec![(200, vec![], Some(Duration::from_secs(3)))]).await;
    let c = client(&base, Credentials::bearer("tok"));
    let resp = c
        .send(ScimRequest::get("Users/u1").timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(resp.attempts, 2);
    assert!(resp.earlier_outcome_unknown);
    assert_eq!(state.lock().unwrap().seen.len(), 2);

    // A POST that timed out may have been processed: not repeated, and the error says so.
    state
        .lock()
        .unwrap()
        .answers
        .push_back((200, vec![], Some(Duration::from_secs(3))));
    let e = c
        .send(ScimRequest::post("Users", json!({})).timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.may_have_committed);
    assert_eq!(e.attempts, 1);
    assert_eq!(state.lock().unwrap().seen.len(), 3);
}

/// A target that reads each request, counts it, and closes the connection without answering
/// the first `drops` times (as if it crashed after committing); then answers 201.
async fn dropping_target(drops: usize) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0usize));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let n = {
                    let mut c = c.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n <= drops {
                    drop(sock);
                    return;
                }
                let body = r#"{"id":"u1"}"#;
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 201 Created\r\ncontent-type: application/scim+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (format!("http://{addr}/scim/v2/"), count)
}

#[tokio::test]
async fn a_dropped_connection_after_a_post_is_not_retried_unless_the_caller_says_so() {
    let (base, count) = dropping_target(1).await;
    let c = client(&base, Credentials::bearer("tok"));
    let e = c
        .send(ScimRequest::post("Users", json!({"userName": "a"})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConnectionLost);
    assert!(e.may_have_committed);
    assert_eq!(*count.lock().unwrap(), 1);

    let (base, count) = dropping_target(1).await;
    let c = client(&base, Credentials::bearer("tok"));
    let resp = c
        .send(ScimRequest::post("Users", json!({"userName": "a"})).retry(RetryMode::Idempotent))
        .await
        .unwrap();
    assert_eq!(resp.status, 201);
    assert!(
        resp.earlier_outcome_unknown,
        "the caller learns the first attempt may have created it"
    );
    assert_eq!(*count.lock().unwrap(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_post() {
    // A port nobody listens on: bind, learn it, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(&format!("http://127.0.0.1:{port}/scim/v2/"), Credentials::bearer("tok"));
    let e = c.send(ScimRequest::post("Users", json!({}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connect);
    assert_eq!(e.attempts, 4, "nothing reached the target, so every attempt was made");
    assert!(!e.may_have_committed);
}

#[tokio::test]
async fn the_network_policy_refuses_before_sending() {
    let (base, state) = scripted_target(vec![]).await;
    let strict = Transport::new(NetworkPolicy::default());
    let mut config = TargetConfig::new(&base, profile::generic().clone(), Credentials::bearer("t"));
    config.retry = fast_retries();
    let e = TargetClient::new(strict, config).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert!(state.lock().unwrap().seen.is_empty());
}

#[tokio::test]
async fn the_profile_headers_go_with_every_request() {
    let (base, state) = scripted_target(vec![]).await;
    let mut config = TargetConfig::new(
        &base,
        profile::profile(profile::GITHUB_EMU).unwrap().clone(),
        Credentials::bearer("t"),
    );
    config.retry = fast_retries();
    let c = TargetClient::new(loopback(), config).unwrap();
    c.send(ScimRequest::patch("Users/u1", json!({"Operations": []})))
        .await
        .unwrap();
    let seen = state.lock().unwrap().seen.clone();
    let h = &seen[0].headers;
    assert!(h["user-agent"].to_str().unwrap().starts_with("Rollcall-Outbound/"));
    assert_eq!(h["x-github-api-version"], "2022-11-28");
    assert_eq!(h["content-type"], "application/scim+json");
    assert_eq!(seen[0].method, "PATCH");
}

#[tokio::test]
async fn errors_carry_scim_type_and_detail() {
    let state: Shared = Arc::new(Mutex::new(Script::default()));
    let app = Router::new()
        .route(
            "/scim/v2/Users",
            post(|| async {
                (
                    StatusCode::CONFLICT,
                    axum::Json(json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                        "status": "409", "scimType": "uniqueness", "detail": "userName taken"
                    })),
                )
            }),
        )
        .with_state(state);
    let base = serve(app).await;
    let c = client(&base, Credentials::bearer("t"));
    let e = c.send(ScimRequest::post("Users", json!({}))).await.unwrap_err();
    assert!(e.is_conflict());
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert_eq!(e.scim_type.as_deref(), Some("uniqueness"));
    assert_eq!(e.detail.as_deref(), Some("userName taken"));
    assert!(!e.counts_against_target());
    assert!(e.to_string().contains("HTTP 409 (uniqueness): userName taken"), "{e}");
}

// --- OAuth 2.0 client credentials against a local token endpoint ---

#[derive(Default)]
struct Issuer {
    /// `expires_in` of the next tokens.
    expires_in: i64,
    issued: Vec<String>,
    /// Tokens the target refuses (revoked).
    revoked: Vec<String>,
    /// Every token request's client authentication, as seen.
    client_auth: Vec<(Option<String>, HashMap<String, String>)>,
    /// The target refuses every token.
    refuse_all: bool,
}

type IssuerState = Arc<Mutex<Issuer>>;

async fn token_endpoint(
    State(s): State<IssuerState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut s = s.lock().unwrap();
    s.client_auth.push((
        headers.get("authorization").map(|v| v.to_str().unwrap().to_string()),
        form.clone(),
    ));
    let basic_ok =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic cm9sbGNhbGw6cyUzQWNyZXQrMQ==");
    let post_ok = form.get("client_id").map(String::as_str) == Some("rollcall")
        && form.get("client_secret").map(String::as_str) == Some("s:cret 1");
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    if !basic_ok && !post_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "unknown client"})),
        )
            .into_response();
    }
    let token = format!("at-{}", s.issued.len() + 1);
    s.issued.push(token.clone());
    axum::Json(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": s.expires_in, "scope": form.get("scope")}),
    )
    .into_response()
}

async fn protected(State(s): State<IssuerState>, headers: HeaderMap) -> Response {
    let s = s.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if s.refuse_all || !s.issued.iter().any(|t| t == token) || s.revoked.iter().any(|t| t == token) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "invalid token", "status": "401"})),
        )
            .into_response();
    }
    axum::Json(json!({"Resources": [], "totalResults": 0, "token": token})).into_response()
}

async fn oauth_setup(expires_in: i64, method: ClientAuthMethod, secret: &str) -> (TargetClient, IssuerState) {
    let state: IssuerState = Arc::new(Mutex::new(Issuer {
        expires_in,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/oauth2/token", post(token_endpoint))
        .route("/scim/v2/{*rest}", any(protected))
        .with_state(state.clone());
    let base = serve(app).await;
    let token_url = base.replace("/scim/v2/", "/oauth2/token");
    let creds = Credentials::OAuthClientCredentials(OAuthClientCredentials {
        token_url,
        client_id: "rollcall".into(),
        client_secret: Secret::new(secret),
        scope: Some("scim.write".into()),
        client_auth: method,
    });
    let mut config = TargetConfig::new(&base, profile::profile(profile::SALESFORCE).unwrap().clone(), creds);
    config.retry = fast_retries();
    (TargetClient::new(loopback(), config).unwrap(), state)
}

#[tokio::test]
async fn a_token_is_fetched_once_and_reused_until_it_expires() {
    let (c, state) = oauth_setup(3600, ClientAuthMethod::ClientSecretBasic, "s:cret 1").await;
    for _ in 0..3 {
        let r = c.send(ScimRequest::get("Users")).await.unwrap();
        assert_eq!(r.body["token"], "at-1");
    }
    assert_eq!(c.tokens_fetched(), 1);
    let s = state.lock().unwrap();
    assert_eq!(s.issued.len(), 1);
    // client_secret_basic: the form-urlencoded id and secret in Basic, nothing in the body.
    let (auth, form) = &s.client_auth[0];
    assert_eq!(auth.as_deref(), Some("Basic cm9sbGNhbGw6cyUzQWNyZXQrMQ=="));
    assert!(!form.contains_key("client_secret"));
    assert_eq!(form.get("scope").map(String::as_str), Some("scim.write"));
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_body() {
    let (c, state) = oauth_setup(3600, ClientAuthMethod::ClientSecretPost, "s:cret 1").await;
    c.send(ScimRequest::get("Users")).await.unwrap();
    let s = state.lock().unwrap();
    let (auth, form) = &s.client_auth[0];
    assert!(auth.is_none());
    assert_eq!(form.get("client_id").map(String::as_str), Some("rollcall"));
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_the_next_request() {
    // expires_in 0: expired as soon as issued.
    let (c, state) = oauth_setup(0, ClientAuthMethod::ClientSecretBasic, "s:cret 1").await;
    let a = c.send(ScimRequest::get("Users")).await.unwrap();
    let b = c.send(ScimRequest::get("Users")).await.unwrap();
    assert_eq!(a.body["token"], "at-1");
    assert_eq!(b.body["token"], "at-2");
    assert_eq!(state.lock().unwrap().issued.len(), 2);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once() {
    let (c, state) = oauth_setup(3600, ClientAuthMethod::ClientSecretBasic, "s:cret 1").await;
    c.send(ScimRequest::get("Users")).await.unwrap();
    // The target revokes the cached token: the next request gets a 401, fetches a new token and
    // succeeds with it.
    state.lock().unwrap().revoked.push("at-1".into());
    let r = c.send(ScimRequest::get("Users")).await.unwrap();
    assert_eq!(r.body["token"], "at-2");
    assert_eq!(c.tokens_fetched(), 2);

    // A target that refuses every token: one refresh, then the 401 is the answer.
    state.lock().unwrap().refuse_all = true;
    let e = c.send(ScimRequest::get("Users")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.status, Some(401));
    assert_eq!(c.tokens_fetched(), 3, "exactly one refresh");
    assert!(e.counts_against_target());
}

#[tokio::test]
async fn a_refused_client_is_an_unauthorized_error_naming_the_token_endpoint() {
    let (c, state) = oauth_setup(3600, ClientAuthMethod::ClientSecretBasic, "wrong").await;
    let e = c.send(ScimRequest::get("Users")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    let text = e.to_string();
    assert!(
        text.contains("token endpoint refused: invalid_client: unknown client"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "the secret is not in the error: {text}");
    assert!(state.lock().unwrap().issued.is_empty());
}

#[tokio::test]
async fn the_service_provider_config_is_read_at_the_profile_path() {
    let state: Shared = Arc::new(Mutex::new(Script::default()));
    let app = Router::new()
        .route(
            "/services/scim/v2/ServiceProviderConfigs",
            axum::routing::get(|| async {
                axum::Json(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                    "patch": {"supported": true},
                    "filter": {"supported": true, "maxResults": 200}
                }))
            }),
        )
        .with_state(state);
    let base = serve(app).await.replace("/scim/v2/", "/services/scim/v2/");
    let mut config = TargetConfig::new(
        &base,
        profile::profile(profile::SALESFORCE).unwrap().clone(),
        Credentials::bearer("t"),
    );
    config.retry = fast_retries();
    let c = TargetClient::new(loopback(), config).unwrap();
    let spc: Value = c.service_provider_config().await.unwrap();
    let p = profile::TargetProfile::from_service_provider_config(&spc).unwrap();
    assert_eq!(
        p.paging,
        profile::Paging::Index {
            max_page_size: Some(200)
        }
    );
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_is_refused_at_connection_and_not_retried() {
    let (base, state) = scripted_target(vec![]).await;
    // `localhost` passes the URL check (a name), then resolves to 127.0.0.1, which the default
    // policy refuses: the resolver says no at connection time (as after DNS rebinding).
    let base = base.replace("127.0.0.1", "localhost");
    let mut config = TargetConfig::new(&base, profile::generic().clone(), Credentials::bearer("t"));
    config.retry = fast_retries();
    let c = TargetClient::new(Transport::new(NetworkPolicy::default()), config).unwrap();
    let e = c.send(ScimRequest::get("Users")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused, "{e}");
    assert_eq!(e.attempts, 1);
    assert!(!e.may_have_committed);
    assert!(state.lock().unwrap().seen.is_empty());
}
