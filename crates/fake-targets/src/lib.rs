//! # rollcall-fake-targets
//!
//! In-process fakes of the downstream SCIM targets outbound provisioning pushes to, one per
//! vendor profile, each enforcing that vendor's documented limits and errors ([`rules`]), over a
//! real socket on 127.0.0.1:
//!
//! - AWS IAM Identity Center: `eq` filters (with `and`) on the documented attributes only; groups
//!   read back without members; at most 100 member changes per PATCH; no replace or remove of all
//!   members; one value per multi-valued attribute, the email primary; `displayName`, `givenName`,
//!   `familyName` required; no `groups` on create; cursor paging, at most 100 a page.
//! - GitHub (EMU and organization): `User-Agent` required (403 without); filtered PATCH paths
//!   refused; organization SCIM has no Groups and `active: false` deletes the identity.
//! - Salesforce: OAuth client credentials at `/services/oauth2/token`; `/ServiceProviderConfigs`;
//!   exactly one profile entitlement, else 409 `REQUIRED_FIELD_MISSING`; DELETE deactivates.
//! - Slack: its documented organisation-wide and per-endpoint rate limits (429 with
//!   `Retry-After`); DELETE of a user deactivates it.
//!
//! Faults are switched on by the test ([`FaultRule`]): a status (429 with `Retry-After`, 503), a
//! delay before processing (a timeout), a slow answer after processing, a 409 on create (the
//! resource exists), a 404 on update (the resource is gone), a connection dropped after the target
//! committed the change. [`FakeTarget::set_throttle`] adds a token bucket to any fake (AWS's
//! undocumented throttling).

pub mod rules;
mod scim;

pub use rules::{Limit, PageStyle, Rules, Vendor};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status without processing (429 and 503 with an optional `Retry-After`, given
    /// as the header's text: seconds or an HTTP date).
    Status { status: u16, retry_after: Option<String> },
    /// Wait this long before processing (a client with a shorter deadline times out first).
    Delay(Duration),
    /// Process the request, then wait this long before answering (the change is made even if the
    /// client times out).
    SlowAnswer(Duration),
    /// A create is stored as if it had existed already, and answered 409 `uniqueness`.
    ConflictOnCreate,
    /// The resource is deleted (as if removed at the target), then the request answered 404.
    NotFoundOnUpdate,
    /// Process the request, then close the connection without answering.
    DropAfterCommit,
}

/// When a fault applies: a method, the resource type (`Users`, `Groups`), how many times.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub fault: Fault,
    pub method: Option<String>,
    pub resource: Option<String>,
    /// How many more requests it applies to (`usize::MAX`: always).
    pub times: usize,
}

impl FaultRule {
    /// The fault on the next request, whatever it is.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            method: None,
            resource: None,
            times: 1,
        }
    }

    /// Only requests with `method` to `resource` (`Users`, `Groups`).
    pub fn on(mut self, method: &str, resource: &str) -> FaultRule {
        self.method = Some(method.to_ascii_uppercase());
        self.resource = Some(resource.to_string());
        self
    }

    pub fn times(mut self, n: usize) -> FaultRule {
        self.times = n;
        self
    }

    pub fn always(self) -> FaultRule {
        self.times(usize::MAX)
    }

    fn matches(&self, method: &str, resource: Option<&str>) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| resource.is_some_and(|x| x.eq_ignore_ascii_case(r)))
    }
}

/// A request the fake received, with what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    /// The path under the base path (`Users/abc`), or the full path outside it.
    pub path: String,
    pub query: String,
    pub user_agent: Option<String>,
    pub body: Value,
    /// The status answered (0: the connection was dropped).
    pub status: u16,
}

/// A token bucket.
#[derive(Debug, Clone)]
struct Bucket {
    limit: Limit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(limit: Limit) -> Bucket {
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            last: Instant::now(),
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.limit.per_minute) / 60.0
    }

    /// Refills; the wait until a token is there (zero: there is one).
    fn wait(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate()).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate())
        }
    }
}

pub(crate) struct Inner {
    pub(crate) vendor: Vendor,
    pub(crate) db: scim::Db,
    faults: Vec<FaultRule>,
    recorded: Vec<Recorded>,
    buckets: Vec<Bucket>,
    /// Bearer tokens accepted, with when they stop being accepted.
    tokens: HashMap<String, Option<Instant>>,
    token_lifetime: Duration,
    issued: u64,
    /// Whether requests are recorded (off for long benchmark runs).
    recording: bool,
}

/// A running fake target. Dropping it stops it.
pub struct FakeTarget {
    state: Arc<Mutex<Inner>>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The client id and secret the Salesforce fake's token endpoint accepts.
pub const CLIENT_ID: &str = "rollcall-client";
pub const CLIENT_SECRET: &str = "rollcall-secret";

/// Marks a response after which the connection is closed instead.
#[derive(Clone, Copy)]
struct DropConnection;

impl FakeTarget {
    /// Starts a fake of `vendor` on a free loopback port.
    pub async fn start(vendor: Vendor) -> FakeTarget {
        let rules = vendor.rules();
        let mut tokens = HashMap::new();
        tokens.insert(format!("fake-{}-token", rules.profile_id), None);
        let state = Arc::new(Mutex::new(Inner {
            vendor,
            db: scim::Db::default(),
            faults: Vec::new(),
            recorded: Vec::new(),
            buckets: rules.limits.iter().copied().map(Bucket::new).collect(),
            tokens,
            token_lifetime: Duration::from_secs(3600),
            issued: 0,
            recording: true,
        }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let server = tokio::spawn(serve(listener, app));
        FakeTarget { state, addr, server }
    }

    pub fn vendor(&self) -> Vendor {
        self.state.lock().unwrap().vendor
    }

    /// `http://127.0.0.1:{port}{base path}`, ending with `/`.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.vendor().rules().base_path)
    }

    /// The OAuth token endpoint (served by every fake; required by Salesforce's).
    pub fn token_url(&self) -> String {
        format!("http://{}/services/oauth2/token", self.addr)
    }

    /// A long-lived bearer token every fake accepts (Salesforce's too, as if issued earlier).
    pub fn token(&self) -> String {
        format!("fake-{}-token", self.vendor().profile_id())
    }

    /// Adds a fault.
    pub fn inject(&self, rule: FaultRule) {
        self.state.lock().unwrap().faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// A token bucket on every request (`None`: only the vendor's documented limits).
    pub fn set_throttle(&self, per_minute: Option<(u32, u32)>) {
        let mut s = self.state.lock().unwrap();
        let mut buckets: Vec<Bucket> = s.vendor.rules().limits.iter().copied().map(Bucket::new).collect();
        if let Some((per_minute, burst)) = per_minute {
            buckets.push(Bucket::new(Limit {
                methods: &[],
                resource: None,
                by_id: None,
                per_minute,
                burst,
            }));
        }
        s.buckets = buckets;
    }

    /// How long the tokens the token endpoint issues from now on live (`expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().token_lifetime = lifetime;
    }

    /// Stops accepting every token issued so far (not the long-lived one).
    pub fn revoke_issued_tokens(&self) {
        let mut s = self.state.lock().unwrap();
        let keep = format!("fake-{}-token", s.vendor.profile_id());
        s.tokens.retain(|t, _| *t == keep);
    }

    /// How many tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.state.lock().unwrap().issued
    }

    /// Every user, as stored (deactivated ones too).
    pub fn users(&self) -> Vec<Value> {
        self.state.lock().unwrap().db.users()
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().db.user(id)
    }

    /// Every group, with its members (whatever the vendor answers on GET).
    pub fn groups(&self) -> Vec<Value> {
        self.state.lock().unwrap().db.groups(true)
    }

    /// The user ids in a group.
    pub fn group_members(&self, id: &str) -> Vec<String> {
        self.state.lock().unwrap().db.members_of(id)
    }

    /// Stores a user directly (as if created earlier); returns its id.
    pub fn insert_user(&self, user: Value) -> String {
        let mut s = self.state.lock().unwrap();
        let prefix = s.vendor.rules().user_id_prefix;
        s.db.insert_user(prefix, user)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().recorded.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().recorded.len()
    }

    /// Whether requests are recorded from now on (on at start; a long benchmark turns it off to
    /// keep memory flat).
    pub fn set_recording(&self, on: bool) {
        self.state.lock().unwrap().recording = on;
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().recorded.clear();
    }
}

/// The accept loop: axum's router per connection, and a connection closed without an answer when
/// the router says so (a dropped connection after commit).
async fn serve(listener: TcpListener, app: axum::Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let resp = app.oneshot(req.map(Body::new)).await.unwrap_or_else(|e| match e {});
                    if resp.extensions().get::<DropConnection>().is_some() {
                        return Err(std::io::Error::other("fault: the connection is dropped"));
                    }
                    Ok::<_, std::io::Error>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A SCIM error answer (RFC 7644 §3.12).
pub(crate) fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    scim_json(status, body)
}

pub(crate) fn scim_json(status: u16, body: Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    resp.headers_mut()
        .insert("content-type", "application/scim+json".parse().unwrap());
    resp
}

async fn handle(
    State(state): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let vendor = state.lock().unwrap().vendor;
    let rules = vendor.rules();
    let under_base = path.strip_prefix(rules.base_path).map(str::to_string);
    let rel = under_base.clone().unwrap_or_else(|| path.clone());
    let mut segments = rel.split('/').filter(|s| !s.is_empty());
    let resource = segments.next().map(str::to_string);
    let id = segments
        .next()
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned());

    // Faults first: they stand for the network and the target's own trouble.
    let fault = {
        let mut s = state.lock().unwrap();
        let m = method.as_str();
        let r = resource.as_deref();
        match s.faults.iter_mut().find(|f| f.matches(m, r)) {
            Some(rule) => {
                if rule.times != usize::MAX {
                    rule.times -= 1;
                }
                Some(rule.fault.clone())
            }
            None => None,
        }
    };
    let record = |status: u16| {
        let mut s = state.lock().unwrap();
        if !s.recording {
            return;
        }
        s.recorded.push(Recorded {
            at: Instant::now(),
            method: method.to_string(),
            path: rel.clone(),
            query: query.clone(),
            user_agent: user_agent.clone(),
            body: body_json.clone(),
            status,
        });
    };
    match &fault {
        Some(Fault::Status { status, retry_after }) => {
            record(*status);
            let mut resp = scim_error(*status, None, &format!("fault: HTTP {status}"));
            if let Some(ra) = retry_after {
                resp.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            return resp;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    let resp = if path == "/services/oauth2/token" && method == Method::POST {
        token_endpoint(&state, &headers, &body)
    } else if under_base.is_none() {
        scim_error(404, None, "no such endpoint")
    } else if let Some(denied) = check_access(&state, rules, &headers) {
        denied
    } else if let Some(limited) = rate_limit(&state, method.as_str(), resource.as_deref(), id.is_some()) {
        limited
    } else {
        let mut s = state.lock().unwrap();
        scim::route(
            &mut s,
            rules,
            &method,
            resource.as_deref(),
            id.as_deref(),
            &query,
            &body_json,
            fault.as_ref(),
        )
    };

    match fault {
        Some(Fault::SlowAnswer(d)) => {
            record(resp.status().as_u16());
            tokio::time::sleep(d).await;
            resp
        }
        Some(Fault::DropAfterCommit) => {
            record(0);
            let mut r = Response::new(Body::empty());
            r.extensions_mut().insert(DropConnection);
            r
        }
        _ => {
            record(resp.status().as_u16());
            resp
        }
    }
}

/// GitHub's User-Agent rule and the bearer token.
fn check_access(state: &Arc<Mutex<Inner>>, rules: &Rules, headers: &HeaderMap) -> Option<Response> {
    if rules.user_agent_required && headers.get("user-agent").is_none_or(|v| v.is_empty()) {
        // GitHub answers 403 to requests without a User-Agent.
        return Some(scim_error(
            403,
            None,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        ));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    let s = state.lock().unwrap();
    let ok = s
        .tokens
        .get(token)
        .is_some_and(|until| until.is_none_or(|u| Instant::now() < u));
    if ok {
        None
    } else {
        Some(scim_error(401, None, "Authorization header is invalid or missing"))
    }
}

/// The vendor's documented limits and any throttle: 429 with `Retry-After` (whole seconds).
fn rate_limit(state: &Arc<Mutex<Inner>>, method: &str, resource: Option<&str>, by_id: bool) -> Option<Response> {
    let mut s = state.lock().unwrap();
    let now = Instant::now();
    let mut wait = Duration::ZERO;
    for b in s.buckets.iter_mut() {
        if b.limit.matches(method, resource, by_id) {
            wait = wait.max(b.wait(now));
        }
    }
    if !wait.is_zero() {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = scim_error(429, None, "ThrottlingException: rate limited");
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
        return Some(resp);
    }
    for b in s.buckets.iter_mut() {
        if b.limit.matches(method, resource, by_id) {
            b.tokens -= 1.0;
        }
    }
    None
}

/// The OAuth 2.0 token endpoint (client credentials; client_secret_basic or client_secret_post).
fn token_endpoint(state: &Arc<Mutex<Inner>>, headers: &HeaderMap, body: &[u8]) -> Response {
    use base64::Engine;
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let oauth_error = |status: u16, error: &str, description: &str| {
        let mut r = (
            StatusCode::from_u16(status).unwrap(),
            json!({"error": error, "error_description": description}).to_string(),
        )
            .into_response();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(400, "unsupported_grant_type", "grant type not supported");
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let dec = |x: &str| {
                form_urlencoded::parse(format!("v={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((dec(id)?, dec(secret)?))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if id != CLIENT_ID || secret != CLIENT_SECRET {
        return oauth_error(401, "invalid_client", "invalid client credentials");
    }
    let mut s = state.lock().unwrap();
    s.issued += 1;
    let token = format!("issued-{}", s.issued);
    let lifetime = s.token_lifetime;
    s.tokens.insert(token.clone(), Some(Instant::now() + lifetime));
    let mut r = (
        StatusCode::OK,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime.as_secs(), "instance_url": "https://example.my.salesforce.com"})
            .to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
