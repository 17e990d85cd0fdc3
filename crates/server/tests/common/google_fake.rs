//! An in-repo fake of Google's token endpoint and Admin SDK Directory API (users, groups, members),
//! built from Google's documented request and response shapes, served by axum on 127.0.0.1 for the
//! directory sync tests.
//!
//! - `POST /token`: the JWT bearer grant (RFC 7523). The assertion's RS256 signature is verified
//!   with the test key's public half; `iss`, `sub` (the admin), `aud`, `scope` and the lifetime are
//!   checked. Answers `{"access_token", "expires_in", "token_type": "Bearer"}` or an OAuth error.
//! - `GET /admin/directory/v1/users?customer=&maxResults=&projection=&pageToken=`,
//!   `GET /admin/directory/v1/groups?customer=&maxResults=&pageToken=`,
//!   `GET /admin/directory/v1/groups/{groupKey}/members?maxResults=&pageToken=`: pages of at most
//!   `min(maxResults, page_size)` with `nextPageToken`; a bearer token it issued is required (401
//!   otherwise, as Google answers an expired one).
//! - Scripted failures ([`FakeGoogle::fail_next`]) answer a request with a status, Google's error body
//!   and `Retry-After`; [`FakeGoogle::expire_tokens_after`] invalidates every issued token after a
//!   number of API requests (a token expiring mid-sync).
#![allow(dead_code)]
// The handlers answer with axum responses, small errors are not worth boxing in a test double.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// A test-only RSA key (generated for these tests; it protects nothing).
pub const TEST_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC4XT1DZk0XQuyg\nIhVyew6g1Ncs08HHTlGdxfjn5nNx/NHljOMbVGCWg6B48TDFCb9qx3y2Qd0vdhSG\niFqrlJtNIKHslF7tXXomAtp6deP+S7Jm7Yn0nQkU7efO1oN936msSbZwSmfMOEob\naJWIPRHqSFk/r8ZWGW4LKWz8gHuLoLbB3yWOu6w3J1c/xEPZMKCbfJtSlBlKrqSn\n0hiBjiawZcqsqNxu1pwQUzD0oQHd4AWr+sDQZffth3PCSDDCggUVwutvNnxccym2\nMXMAeirhvcLrv67UqfwLwBqBU0Ixa6COS+eXQyvjPEmkanXjhp6ABBCsx0+XcHDv\nLqJGPJkfAgMBAAECggEABDEKfYfL5OV+n71mo22szXdJVRmTZEahkGa52/vfUA4h\nb4ieeTaX45Qmh9lj9HbeRT031qT0tGmI2e4rsY71YPGG/Ov6pIbliguyj+oyPsvV\nyIVKB6eyVyl5hbhW0PvOzb33SeJHLdtxw+HC1JAe4ia28L28UqTNXa+ZbLw3EtuQ\nkDMlvKY0Wyur/X12UBz5OmoP8fdl3JHdna8oF2b1H+0Tiy4pcGH2g/hdHaOD/yIc\nfgjDr62T74MS8JJUKkagm6mYO4mU3lPhCwUw2Fs3Fh6kJflfV3wyHJkqdxtdFvUH\nXxtTGfqXTnJQc4bE3fasiRVjDosc5DevOF5ZQ9tzwQKBgQD7ajZHBvVi3RnHpuky\nZV2EqL2aOw/4STL1f/zqpSWDD1XYRnSP8SHGq0xvqLiB/fVFs1DIZqsFyk65rjdf\ncnJpgjO4cq1TFiH45PLL55cA3H5cfOoKAnRMLbMOv00pfb82ARH4qjLPILufK+sf\naZWSd4D1t91iKIDvWeFw3R3oLwKBgQC7ufxhfHHtBjQw5pvgCyRRUK1q7FUU/Agx\nz2N6ZKW2uGTpw7h82TaRtlBymy1JeHezO3Rpu6OlUnfgSBQglgYtkR6CK0z1DzV3\nGxVw4eWqTnyE6OdJRQ9FNRyrfwvngivYJP0TeEjW6WW1fnkVv8ayC546PQuzId1k\nBb2e/ckyEQKBgQCINI19Q17Tlbcuu9VgkRvuD8DQeqj3OSjbaeBqetfsvfUi+2CQ\nzvEegZUidQSooB4uCax9NWn39Bdcbu7ezdEAKiK9DZurBLWY8ug64ZekRtBKaP4e\nOCArWSLFnYw/KznZFxFWZ1apcjFTVWbHGNuIgyehd1//mrPneAkzrQdTzwKBgFsZ\nurykY7Ue2Z0RjHuBbLJ5cG7/GZsBZAioGCKBTVoKyg4XiSQtVSoJS6kSXTvWVmCI\nbcoR4SyNhNc2o23c4EqkriWFVedm5g9S+Wi6d3XaeNsXG4aXGP4A9FTVZrWGmjhe\nWuJj8RU6Vr1pDuHbG1W0BalFjrPzrzinAIpzpnvBAoGAKkVjjKA5ikcLLdIkciC+\n5EYJqUoD0NW6a1QOimp55QDheJ6DVappFrBqMRLniUlOXU1b6bQ5PtVrxcvQXsFu\n5GC8RR/eRzeatKwShrwM9dgNYsxwuPBG7TBEBInGmUjYg/KZX0vM5NDGMg0YjD/z\nCX6KmpiBvImEr5wPlzhcn+w=\n-----END PRIVATE KEY-----\n";
/// Its public half (PKCS#1 RSAPublicKey, DER, base64).
const TEST_PUBLIC_KEY_DER: &str = "MIIBCgKCAQEAuF09Q2ZNF0LsoCIVcnsOoNTXLNPBx05RncX45+ZzcfzR5YzjG1RgloOgePEwxQm/asd8tkHdL3YUhohaq5SbTSCh7JRe7V16JgLaenXj/kuyZu2J9J0JFO3nztaDfd+prEm2cEpnzDhKG2iViD0R6khZP6/GVhluCyls/IB7i6C2wd8ljrusNydXP8RD2TCgm3ybUpQZSq6kp9IYgY4msGXKrKjcbtacEFMw9KEB3eAFq/rA0GX37YdzwkgwwoIFFcLrbzZ8XHMptjFzAHoq4b3C67+u1Kn8C8AagVNCMWugjkvnl0Mr4zxJpGp144aegAQQrMdPl3Bw7y6iRjyZHwIDAQAB";

pub const ADMIN_EMAIL: &str = "it-admin@example.com";
pub const CLIENT_EMAIL: &str = "rollcall-sync@rollcall-test.iam.gserviceaccount.com";
pub const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly https://www.googleapis.com/auth/admin.directory.group.readonly https://www.googleapis.com/auth/admin.directory.group.member.readonly";

/// An answer to give instead of the real one.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Applies to requests whose path contains this.
    pub path_contains: String,
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Failure {
    /// Google's error body (`{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`).
    pub fn google(path_contains: &str, status: u16, reason: &str, retry_after: Option<&str>) -> Failure {
        let message = match reason {
            "rateLimitExceeded" => "Rate Limit Exceeded",
            "userRateLimitExceeded" => "User Rate Limit Exceeded",
            "forbidden" => "Not Authorized to access this resource/api",
            "backendError" => "Backend Error",
            _ => "Error",
        };
        let domain = if reason.contains("RateLimit") || reason.contains("rateLimit") {
            "usageLimits"
        } else {
            "global"
        };
        Failure {
            path_contains: path_contains.into(),
            status,
            body: json!({"error": {"code": status, "message": message,
                "errors": [{"domain": domain, "reason": reason, "message": message}]}}),
            retry_after: retry_after.map(str::to_string),
        }
    }
}

#[derive(Default)]
pub struct FakeState {
    pub users: Vec<Value>,
    pub groups: Vec<Value>,
    pub members: HashMap<String, Vec<Value>>,
    /// The most items one page holds, whatever `maxResults` asks.
    pub page_size: usize,
    pub token_lifetime_s: u64,
    pub tokens: HashSet<String>,
    pub tokens_issued: u32,
    pub failures: VecDeque<Failure>,
    /// After this many more API requests, every issued token stops working.
    pub expire_tokens_after: Option<usize>,
    /// Every API request: path and query.
    pub requests: Vec<(String, HashMap<String, String>)>,
    /// Failed attempts' arrival times, for backoff checks.
    pub failed_at: Vec<std::time::Instant>,
    /// An OAuth error the token endpoint answers with (status, body).
    pub token_error: Option<(u16, Value)>,
    pub assertions_checked: u32,
}

#[derive(Clone)]
pub struct FakeGoogle {
    pub base: String,
    pub state: Arc<Mutex<FakeState>>,
}

/// A Google user as `users.list` with `projection=full` returns it.
pub fn google_user(id: &str, email: &str, given: &str, family: &str) -> Value {
    json!({
        "kind": "admin#directory#user",
        "id": id,
        "etag": format!("\"etag-{id}\""),
        "primaryEmail": email,
        "name": {"givenName": given, "familyName": family, "fullName": format!("{given} {family}")},
        "isAdmin": false,
        "isDelegatedAdmin": false,
        "lastLoginTime": "2026-01-01T00:00:00.000Z",
        "creationTime": "2025-01-01T00:00:00.000Z",
        "agreedToTerms": true,
        "suspended": false,
        "archived": false,
        "changePasswordAtNextLogin": false,
        "ipWhitelisted": false,
        "emails": [{"address": email, "primary": true}],
        "customerId": "C03az79cb",
        "orgUnitPath": "/",
        "isMailboxSetup": true,
        "includeInGlobalAddressList": true
    })
}

/// A Google group as `groups.list` returns it.
pub fn google_group(id: &str, email: &str, name: &str) -> Value {
    json!({
        "kind": "admin#directory#group",
        "id": id,
        "etag": format!("\"etag-{id}\""),
        "email": email,
        "name": name,
        "directMembersCount": "0",
        "description": "",
        "adminCreated": true
    })
}

/// A member as `members.list` returns it (`kind`: USER, GROUP, CUSTOMER).
pub fn google_member(id: &str, email: &str, kind: &str) -> Value {
    json!({
        "kind": "admin#directory#member",
        "etag": format!("\"etag-m-{id}\""),
        "id": id,
        "email": email,
        "role": "MEMBER",
        "type": kind,
        "status": "ACTIVE"
    })
}

/// The service account key file Google Cloud would give, pointing at the fake's token endpoint.
pub fn service_account_key(token_uri: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": "rollcall-test",
        "private_key_id": "0123456789abcdef",
        "private_key": TEST_PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com"
    })
}

fn google_error(status: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": {"code": status, "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}]}})),
    )
        .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Verifies the assertion; `Err` is the OAuth error to answer.
fn check_assertion(jwt: &str, token_url: &str) -> Result<(), Response> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err(oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token",
        ));
    }
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).ok();
    let header: Value = decode(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let claims: Value = decode(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let signature = decode(parts[2]).unwrap_or_default();
    if header["alg"] != "RS256" {
        return Err(oauth_error("invalid_grant", "Invalid JWT Signature."));
    }
    let public = base64::engine::general_purpose::STANDARD
        .decode(TEST_PUBLIC_KEY_DER)
        .unwrap();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public);
    if key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .is_err()
    {
        return Err(oauth_error("invalid_grant", "Invalid JWT Signature."));
    }
    if claims["iss"] != CLIENT_EMAIL {
        return Err(oauth_error("invalid_grant", "Invalid issuer"));
    }
    if claims["aud"] != token_url {
        return Err(oauth_error("invalid_grant", "Invalid JWT: audience"));
    }
    if claims["scope"] != SCOPES {
        return Err(oauth_error(
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        ));
    }
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if exp - iat > 3600 || exp < now || iat > now + 60 {
        return Err(oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        ));
    }
    if claims["sub"] != ADMIN_EMAIL {
        return Err(oauth_error("invalid_grant", "Invalid email or User ID"));
    }
    Ok(())
}

async fn token(State(fake): State<FakeGoogle>, body: String) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    if let Some((status, body)) = fake.state.lock().unwrap().token_error.clone() {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    if let Some(f) = take_failure(&fake, "/token") {
        return failure_response(f);
    }
    let token_url = format!("{}/token", fake.base);
    if let Err(r) = check_assertion(form.get("assertion").map(String::as_str).unwrap_or(""), &token_url) {
        return r;
    }
    let mut s = fake.state.lock().unwrap();
    s.assertions_checked += 1;
    s.tokens_issued += 1;
    let t = format!("ya29.fake-{}-{}", s.tokens_issued, uuid::Uuid::new_v4().simple());
    s.tokens.insert(t.clone());
    let lifetime = s.token_lifetime_s;
    axum::Json(json!({"access_token": t, "expires_in": lifetime, "token_type": "Bearer"})).into_response()
}

fn take_failure(fake: &FakeGoogle, path: &str) -> Option<Failure> {
    let mut s = fake.state.lock().unwrap();
    let i = s.failures.iter().position(|f| path.contains(&f.path_contains))?;
    s.failed_at.push(std::time::Instant::now());
    s.failures.remove(i)
}

fn failure_response(f: Failure) -> Response {
    let mut r = (StatusCode::from_u16(f.status).unwrap(), axum::Json(f.body)).into_response();
    if let Some(ra) = f.retry_after {
        r.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    r
}

/// Checks the bearer token and scripted failures of an API request; `Err` is the answer to give.
fn admit(fake: &FakeGoogle, headers: &HeaderMap, path: &str, query: &HashMap<String, String>) -> Result<(), Response> {
    {
        let mut s = fake.state.lock().unwrap();
        s.requests.push((path.to_string(), query.clone()));
        if let Some(n) = s.expire_tokens_after {
            if n == 0 {
                s.tokens.clear();
                s.expire_tokens_after = None;
            } else {
                s.expire_tokens_after = Some(n - 1);
            }
        }
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !s.tokens.contains(presented) {
            drop(s);
            return Err(google_error(401, "authError", "Invalid Credentials"));
        }
    }
    if let Some(f) = take_failure(fake, path) {
        return Err(failure_response(f));
    }
    Ok(())
}

/// One page of `items` from `pageToken`, at most `min(maxResults, page_size)` long.
fn page(items: &[Value], page_size: usize, query: &HashMap<String, String>, max: usize, field: &str) -> Response {
    let asked: usize = query.get("maxResults").and_then(|m| m.parse().ok()).unwrap_or(100);
    if asked == 0 || asked > max {
        return google_error(400, "invalid", "Invalid Input: maxResults");
    }
    let size = asked.min(page_size.max(1));
    let start: usize = match query.get("pageToken") {
        Some(t) => match t.strip_prefix("tok-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return google_error(400, "invalid", "Invalid Input: pageToken"),
        },
        None => 0,
    };
    let end = (start + size).min(items.len());
    let mut body = json!({"kind": "admin#directory#list", "etag": "\"list\""});
    body[field] = json!(items.get(start..end).unwrap_or(&[]));
    if end < items.len() {
        body["nextPageToken"] = json!(format!("tok-{end}"));
    }
    axum::Json(body).into_response()
}

async fn users(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&fake, &headers, "/admin/directory/v1/users", &q) {
        return r;
    }
    if !q.contains_key("customer") && !q.contains_key("domain") {
        return google_error(400, "badRequest", "Bad Request");
    }
    let s = fake.state.lock().unwrap();
    page(&s.users, s.page_size, &q, 500, "users")
}

async fn groups(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&fake, &headers, "/admin/directory/v1/groups", &q) {
        return r;
    }
    let s = fake.state.lock().unwrap();
    page(&s.groups, s.page_size, &q, 200, "groups")
}

async fn members(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(
        &fake,
        &headers,
        &format!("/admin/directory/v1/groups/{key}/members"),
        &q,
    ) {
        return r;
    }
    let s = fake.state.lock().unwrap();
    let Some(group) = s
        .groups
        .iter()
        .find(|g| g["id"] == key.as_str() || g["email"] == key.as_str())
    else {
        return google_error(404, "notFound", "Resource Not Found: groupKey");
    };
    let items = s
        .members
        .get(group["id"].as_str().unwrap_or(""))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    page(items, s.page_size, &q, 200, "members")
}

impl FakeGoogle {
    pub async fn start() -> FakeGoogle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeGoogle {
            base,
            state: Arc::new(Mutex::new(FakeState {
                page_size: 500,
                token_lifetime_s: 3599,
                ..Default::default()
            })),
        };
        let app = Router::new()
            .route("/token", post(token))
            .route("/admin/directory/v1/users", get(users))
            .route("/admin/directory/v1/groups", get(groups))
            .route("/admin/directory/v1/groups/{key}/members", get(members))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    pub fn key(&self) -> Value {
        service_account_key(&self.token_url())
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn fail_next(&self, f: Failure) {
        self.with(|s| s.failures.push_back(f));
    }

    pub fn expire_tokens_after(&self, requests: usize) {
        self.with(|s| s.expire_tokens_after = Some(requests));
    }

    pub fn add_user(&self, u: Value) {
        self.with(|s| s.users.push(u));
    }

    pub fn user_mut(&self, id: &str, f: impl FnOnce(&mut Value)) {
        self.with(|s| f(s.users.iter_mut().find(|u| u["id"] == id).expect("a fake user")));
    }

    pub fn remove_user(&self, id: &str) {
        self.with(|s| {
            s.users.retain(|u| u["id"] != id);
            for m in s.members.values_mut() {
                m.retain(|m| m["id"] != id);
            }
        });
    }

    pub fn add_group(&self, g: Value, members: Vec<Value>) {
        let id = g["id"].as_str().unwrap().to_string();
        self.with(|s| {
            s.groups.push(g);
            s.members.insert(id, members);
        });
    }
}
