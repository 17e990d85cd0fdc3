//! Limits of the HTTP layer: what one client, one SCIM connection, or everyone together may ask of
//! a node before it sheds load instead of queueing without bound.
//!
//! - Per TCP connection ([`mod@crate::serve`]): how long the request line and headers may take, how
//!   long a keep-alive connection may sit idle, how many connections are open at once (accept
//!   pauses at the cap).
//! - Per request ([`guard`], around every route): the longest URI and header section, no control
//!   character (`%00` above all, which PostgreSQL text cannot hold) in the path or query, a
//!   `Content-Length` under the route's body limit, a deadline for the whole body, and a cap on the
//!   requests in flight on the whole node (503 with `Retry-After` beyond it).
//! - Per SCIM connection ([`fair_share`], after authentication): a rate limit and a cap on its
//!   requests in flight at once (429 with `Retry-After` beyond either; a request just over the rate
//!   is first held back until the next token, up to [`MAX_RATE_DELAY`], a few at a time), and a cap on its reads and
//!   large writes *executing* at once: the others wait their turn in arrival order, so one tenant's
//!   heavy but allowed requests (the largest PATCH, a full page of the largest users, the longest
//!   filter) cannot take every core from the other tenants. Small writes do not wait for a turn:
//!   they spend their time waiting for the database's writer, not on a core, and the store commits
//!   concurrent writes together, so a full sync's creates keep their speed.
//!
//! Every refusal is answered in the route's error form: a SCIM error (RFC 7644 §3.12) under
//! `/scim/v2`, problem details (RFC 9457) under `/api/v1`; [`guard`] also rewrites any other error
//! response of ours that is not in that form (an extractor's plain-text rejection). A client that
//! hits a limit is named in a warning, at most once per [`WARN_INTERVAL`] per client and limit, with
//! the count of the ones not logged.

use crate::api::problem::{ApiProblem, PROBLEM_CONTENT_TYPE};
use crate::auth::Caller;
use crate::deadline::DeadlineBody;
use crate::ratelimit::ConnectionRateLimiter;
use crate::response::{SCIM_CONTENT_TYPE, error_response};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rollcall_scim::ScimError;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Settings of the HTTP layer's limits. Defaults: see the `DEFAULT_*` constants and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The request line and headers must arrive within this time of their first byte.
    pub header_read_timeout: Duration,
    /// The whole request body must arrive within this time of its reading starting (for a SCIM
    /// request, when its turn to execute comes; otherwise just after its headers).
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed (from its opening too, so
    /// a socket that never sends a byte is closed after it).
    pub idle_timeout: Duration,
    /// Open connections at most; at the cap, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Longest path and query, in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest header section, in bytes, counting each field as `name: value\r\n` (431 beyond).
    pub max_header_bytes: usize,
    /// Requests in progress on the node at once (503 beyond); health checks are not counted.
    pub max_in_flight: usize,
    /// SCIM requests of one SCIM connection in progress at once (429 beyond).
    pub max_in_flight_per_connection: usize,
    /// SCIM reads and large writes (a body of [`TURN_FREE_WRITE_BYTES`] or more, or of unknown
    /// length) of one SCIM connection executing at once; its others wait their turn, in arrival
    /// order, before their body is read.
    pub max_active_per_connection: usize,
}

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Room for a 4096-character filter percent-encoded (three bytes a character) and the rest.
pub const DEFAULT_MAX_URI_BYTES: usize = 16 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
pub const DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION: usize = 32;

/// A write with a smaller body (by its `Content-Length`) does not wait for a turn.
pub const TURN_FREE_WRITE_BYTES: u64 = 32 * 1024;

/// Half the cores, at least one: one SCIM connection can keep half the machine busy, never all of
/// it.
pub fn default_max_active_per_connection() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_connection: DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
            max_active_per_connection: default_max_active_per_connection(),
        }
    }
}

impl HttpLimits {
    /// Checks the settings, naming the first one out of range.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("header_read_timeout_ms", self.header_read_timeout.is_zero()),
            ("body_read_timeout_ms", self.body_read_timeout.is_zero()),
            ("idle_timeout_ms", self.idle_timeout.is_zero()),
            ("max_connections", self.max_connections == 0),
            ("max_in_flight", self.max_in_flight == 0),
            ("max_in_flight_per_connection", self.max_in_flight_per_connection == 0),
            ("max_active_per_connection", self.max_active_per_connection == 0),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(format!("{name} must be more than 0"));
        }
        if !(256..=MAX_HEAD_SETTING).contains(&self.max_uri_bytes) {
            return Err(format!(
                "max_uri_bytes must be from 256 to {MAX_HEAD_SETTING}, not {}",
                self.max_uri_bytes
            ));
        }
        if !(1024..=MAX_HEAD_SETTING).contains(&self.max_header_bytes) {
            return Err(format!(
                "max_header_bytes must be from 1024 to {MAX_HEAD_SETTING}, not {}",
                self.max_header_bytes
            ));
        }
        Ok(())
    }

    /// The limit given to hyper for the whole request head. Ours ([`guard`]) are below it, so that
    /// a head over ours but under this one is answered by us, with an error body; hyper answers a
    /// bare 431 beyond it.
    pub fn hyper_max_head_bytes(&self) -> usize {
        (self.max_uri_bytes + self.max_header_bytes) * 2 + 16 * 1024
    }
}

/// Largest `max_uri_bytes` or `max_header_bytes`: hyper refuses URIs of 65,535 bytes and more by
/// itself, with an empty 414.
const MAX_HEAD_SETTING: usize = 60 * 1024;

/// How often, at most, a warning names one client hitting one limit.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Remembers when each (limit, client) pair was last logged, so that a flood of refusals writes one
/// line per [`WARN_INTERVAL`] with the count of the others.
#[derive(Default)]
pub struct LimitWarnings {
    /// (limit, client) → (when last logged, refusals not logged since).
    seen: Mutex<HashMap<WarningKey, (Instant, u64)>>,
}

type WarningKey = (&'static str, String);

/// Pairs remembered before the old ones are forgotten.
const MAX_WARNING_KEYS: usize = 4096;

impl LimitWarnings {
    /// `Some(n)` when a warning should be written now, `n` being the refusals not logged since
    /// the last one; `None` when this one is only counted.
    pub fn due(&self, limit: &'static str, client: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().ok()?;
        if seen.len() >= MAX_WARNING_KEYS {
            seen.retain(|_, (at, _)| now.saturating_duration_since(*at) < WARN_INTERVAL);
        }
        match seen.get_mut(&(limit, client.to_string())) {
            Some((at, suppressed)) if now.saturating_duration_since(*at) < WARN_INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                seen.insert((limit, client.to_string()), (now, 0));
                Some(0)
            }
        }
    }
}

/// The error form of a path's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorForm {
    /// SCIM errors: `/scim/v2/...` and every path outside the management API.
    Scim,
    /// Problem details: `/api/v1/...`.
    Problem,
    /// Health checks: plain text, left alone.
    Health,
    /// The console and the setup page: an HTML page.
    Page,
}

impl ErrorForm {
    pub fn of(path: &str) -> ErrorForm {
        // `/metrics` is for operators' tools, as the management API is.
        if path == crate::api::BASE_PATH || path.starts_with("/api/v1/") || path == "/metrics" {
            ErrorForm::Problem
        } else if path == "/healthz" || path == "/readyz" {
            ErrorForm::Health
        } else if is_page(path) {
            ErrorForm::Page
        } else {
            ErrorForm::Scim
        }
    }

    /// An error response in this form.
    pub fn error(self, status: StatusCode, detail: impl Into<String>) -> Response {
        match self {
            ErrorForm::Problem => ApiProblem::new(status.as_u16(), detail).into_response(),
            ErrorForm::Page => crate::console::page::error_page(status, &detail.into()),
            ErrorForm::Scim | ErrorForm::Health => error_response(&ScimError::new(status.as_u16(), None, detail)),
        }
    }
}

/// Whether `path` is a page of the console or of the setup page.
fn is_page(path: &str) -> bool {
    [crate::console::BASE_PATH, "/setup"]
        .iter()
        .any(|base| path == *base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/')))
}

/// `resp` with a `Retry-After` of `secs` seconds.
pub fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Where a path or query holds a control character (U+0000 to U+001F, U+007F), raw or
/// percent-encoded: `Some((offset, byte))`.
pub fn control_character(s: &str) -> Option<(usize, u8)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x20 || b == 0x7f {
            return Some((i, b));
        }
        if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let v = h * 16 + l;
            if v < 0x20 || v == 0x7f {
                return Some((i, v));
            }
            i += 3;
            continue;
        }
        i += 1;
    }
    None
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The HTTP guard's shared state; built once per application by [`Guard::new`].
#[derive(Clone)]
pub struct Guard(Arc<GuardParts>);

struct GuardParts {
    limits: HttpLimits,
    /// Largest body of a SCIM request (the management API has its own, smaller one).
    scim_max_body: usize,
    in_flight: Arc<Semaphore>,
    warnings: LimitWarnings,
}

impl Guard {
    pub fn new(limits: HttpLimits, scim_max_body: usize) -> Guard {
        Guard(Arc::new(GuardParts {
            limits,
            scim_max_body,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            warnings: LimitWarnings::default(),
        }))
    }
}

/// The connection id named by a SCIM path, for warnings (not authenticated: only a hint).
fn scim_connection_hint(path: &str) -> Option<&str> {
    path.strip_prefix("/scim/v2/")?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

/// Middleware around every route: the request limits, the node's in-flight cap and the body
/// deadline, then the error form of the answer.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let limits = &g.0.limits;
    let form = ErrorForm::of(req.uri().path());
    let target = req.uri().path_and_query().map_or(req.uri().path(), |p| p.as_str());
    if target.len() > limits.max_uri_bytes {
        return form.error(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request's path and query are {} bytes, more than the limit of {} bytes; send a long filter in \
                 the body of a POST to .search instead",
                target.len(),
                limits.max_uri_bytes
            ),
        );
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > limits.max_header_bytes {
        return form.error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's headers are {header_bytes} bytes, more than the limit of {} bytes",
                limits.max_header_bytes
            ),
        );
    }
    if let Some((at, byte)) = control_character(target) {
        let what = if byte == 0 {
            "a NUL character (%00)".to_string()
        } else {
            format!("the control character %{byte:02X}")
        };
        let part = if target[..at].contains('?') { "query" } else { "path" };
        return form.error(
            StatusCode::BAD_REQUEST,
            format!("the request's {part} contains {what}, which no identifier or parameter may contain"),
        );
    }
    if let Some(v) = req.headers().get(header::CONTENT_LENGTH) {
        let max_body = match form {
            ErrorForm::Problem => crate::api::extract::max_body_bytes(req.uri().path()),
            _ => g.0.scim_max_body,
        };
        match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            None => {
                return form.error(
                    StatusCode::BAD_REQUEST,
                    "the Content-Length header is not a number of bytes",
                );
            }
            Some(n) if n > max_body as u64 => {
                return form.error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body ({n} bytes) is larger than the limit of {max_body} bytes"),
                );
            }
            Some(_) => {}
        }
    }
    let _permit: Option<OwnedSemaphorePermit> = if form == ErrorForm::Health {
        None
    } else {
        match g.0.in_flight.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let path = req.uri().path();
                if let Some(suppressed) = g.0.warnings.due("node_in_flight", "", Instant::now()) {
                    tracing::warn!(
                        limit = limits.max_in_flight,
                        suppressed,
                        path = %crate::tokens::redact_path(path),
                        scim_connection = scim_connection_hint(path).unwrap_or("-"),
                        "the node's cap on requests in progress was reached: answering 503 with Retry-After"
                    );
                }
                crate::metrics::shed("node_in_flight", StatusCode::SERVICE_UNAVAILABLE);
                return with_retry_after(
                    form.error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "the server is handling its maximum of {} requests at once; retry after 1 s",
                            limits.max_in_flight
                        ),
                    ),
                    1,
                );
            }
        }
    };
    let (req, body_read) = if http_body::Body::is_end_stream(req.body()) {
        (req, None)
    } else {
        let timeout = limits.body_read_timeout;
        let (parts, body) = req.into_parts();
        let body = DeadlineBody::new(body, timeout);
        let finished = body.finished();
        (Request::from_parts(parts, Body::new(body)), Some(finished))
    };
    let mut resp = ensure_error_form(form, next.run(req).await).await;
    // Answered before its body was read to the end (refused early): the server closes the
    // connection after this answer rather than read the rest, so it says so, and the client does
    // not send its next request on a connection about to close.
    if body_read.is_some_and(|f| !f.load(Ordering::Relaxed)) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Longest error body read back to be put in the route's error form.
const MAX_REWRITTEN_BODY: usize = 4096;

/// An error response of ours that is not in the route's error form (an extractor's plain-text
/// rejection, say), rewritten in it with its status and headers; its text becomes the detail.
pub async fn ensure_error_form(form: ErrorForm, resp: Response) -> Response {
    let status = resp.status();
    if form == ErrorForm::Health || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let expected = match form {
        ErrorForm::Problem => PROBLEM_CONTENT_TYPE,
        ErrorForm::Page => "text/html",
        _ => SCIM_CONTENT_TYPE,
    };
    if content_type.starts_with(expected) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = if content_type.starts_with("text/plain") {
        axum::body::to_bytes(body, MAX_REWRITTEN_BODY)
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|t| !t.is_empty())
    } else {
        None
    };
    let detail = text.unwrap_or_else(|| {
        format!(
            "the request failed: {}",
            status.canonical_reason().unwrap_or("error").to_lowercase()
        )
    });
    let mut fresh = form.error(status, detail);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (k, v) in parts.headers.drain().filter_map(|(k, v)| k.map(|k| (k, v))) {
        fresh.headers_mut().entry(k).or_insert(v);
    }
    fresh
}

/// Per-SCIM-connection shares: the rate limit, the cap on requests in progress at once and the
/// cap on requests executing at once.
#[derive(Clone)]
pub struct FairShare(Arc<FairShareParts>);

struct FairShareParts {
    rate: Option<ConnectionRateLimiter>,
    /// Requests of each connection waiting for the rate limit's next token.
    delayed: Mutex<HashMap<String, usize>>,
    max_in_flight: usize,
    max_active: usize,
    /// Connections with requests in progress: how many, and the turns of those executing.
    connections: Mutex<HashMap<String, ConnectionShare>>,
    warnings: LimitWarnings,
}

struct ConnectionShare {
    in_flight: usize,
    /// `max_active` permits; tokio's semaphore hands them out in the order they were asked for.
    turns: Arc<Semaphore>,
}

impl FairShare {
    pub fn new(
        rate: Option<ConnectionRateLimiter>,
        max_in_flight_per_connection: usize,
        max_active_per_connection: usize,
    ) -> FairShare {
        FairShare(Arc::new(FairShareParts {
            rate,
            delayed: Mutex::default(),
            max_in_flight: max_in_flight_per_connection.max(1),
            max_active: max_active_per_connection.max(1),
            connections: Mutex::default(),
            warnings: LimitWarnings::default(),
        }))
    }

    /// A place for one request of `connection_id`, or `None` when it has its maximum in progress.
    fn enter(&self, connection_id: &str) -> Option<Slot> {
        let mut map = self.0.connections.lock().ok()?;
        let c = map.entry(connection_id.to_string()).or_insert_with(|| ConnectionShare {
            in_flight: 0,
            turns: Arc::new(Semaphore::new(self.0.max_active)),
        });
        if c.in_flight >= self.0.max_in_flight {
            return None;
        }
        c.in_flight += 1;
        Some(Slot {
            share: self.clone(),
            connection_id: connection_id.to_string(),
            turns: c.turns.clone(),
        })
    }

    /// Waits until the connection's rate limit lets its request through, when that is within
    /// [`MAX_RATE_DELAY`] and fewer than [`MAX_RATE_DELAYED`] of its requests are waiting already;
    /// otherwise `Err` with the wait.
    async fn paced(&self, limiter: &ConnectionRateLimiter, connection_id: &str) -> Result<(), Duration> {
        let mut waited = Duration::ZERO;
        loop {
            let wait = match limiter.check(connection_id) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if waited + wait > MAX_RATE_DELAY {
                return Err(wait);
            }
            let Some(_delay) = self.delay(connection_id) else {
                return Err(wait);
            };
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// A place among the connection's requests waiting for a token, if there is one.
    fn delay(&self, connection_id: &str) -> Option<Delayed> {
        let mut map = self.0.delayed.lock().ok()?;
        let n = map.entry(connection_id.to_string()).or_insert(0);
        if *n >= MAX_RATE_DELAYED {
            return None;
        }
        *n += 1;
        Some(Delayed {
            share: self.clone(),
            connection_id: connection_id.to_string(),
        })
    }

    fn warn(&self, limit: &'static str, caller: &Caller, detail: &str) {
        let c = &caller.connection;
        if let Some(suppressed) = self.0.warnings.due(limit, &c.id, Instant::now()) {
            tracing::warn!(
                scim_connection = %c.id,
                organization = %c.org_id,
                limit,
                suppressed,
                "{detail}"
            );
        }
    }
}

/// Longest a request is held back for the rate limit's next token before it is refused instead.
pub const MAX_RATE_DELAY: Duration = Duration::from_secs(1);
/// Requests of one connection held back for the rate limit at once; more are refused at once.
pub const MAX_RATE_DELAYED: usize = 4;

/// A request waiting for its connection's next token; gives its place back when dropped.
struct Delayed {
    share: FairShare,
    connection_id: String,
}

impl Drop for Delayed {
    fn drop(&mut self) {
        if let Ok(mut map) = self.share.0.delayed.lock()
            && let Some(n) = map.get_mut(&self.connection_id)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.connection_id);
            }
        }
    }
}

/// One request in progress of a SCIM connection; gives its place back when dropped.
struct Slot {
    share: FairShare,
    connection_id: String,
    turns: Arc<Semaphore>,
}

impl Slot {
    /// Waits for the request's turn to execute: one of the connection's `max_active` permits.
    async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        self.turns.clone().acquire_owned().await.ok()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.share.0.connections.lock()
            && let Some(c) = map.get_mut(&self.connection_id)
        {
            c.in_flight -= 1;
            if c.in_flight == 0 {
                map.remove(&self.connection_id);
            }
        }
    }
}

/// Whether a request waits for one of its connection's turns: reads (`.search` included) and
/// writes with a large body or one of unknown length; not small writes (see the module doc).
fn needs_turn(req: &Request) -> bool {
    let read = req.method() == axum::http::Method::GET || req.uri().path().ends_with("/.search");
    if read {
        return true;
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) => n >= TURN_FREE_WRITE_BYTES,
        // DELETE and other requests without a body.
        None => req.headers().contains_key(header::TRANSFER_ENCODING),
    }
}

/// Middleware inside SCIM authentication: the connection's rate limit (a request over it is held
/// back until the next token when that comes within [`MAX_RATE_DELAY`] and few of the connection's
/// requests are held back already, so a client that waits for each answer is paced, not refused),
/// then its cap on requests in progress (429 with `Retry-After` and a SCIM error naming the limit
/// beyond either), then, for a read or a large write, its turn to execute. A request waiting for its turn has not read its body
/// yet: the body deadline ([`DeadlineBody`]) starts when the handler reads it.
pub async fn fair_share(State(share): State<FairShare>, req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    if let Some(limiter) = &share.0.rate
        && let Err(wait) = share.paced(limiter, caller.connection_id()).await
    {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let (per_second, burst) = limiter.quota();
        crate::metrics::shed("rate_limit", StatusCode::TOO_MANY_REQUESTS);
        share.warn(
            "rate_limit",
            &caller,
            &format!("SCIM connection over its rate limit ({per_second} requests/s, burst {burst}): answering 429"),
        );
        return with_retry_after(
            error_response(&ScimError::too_many_requests(format!(
                "too many requests for this SCIM connection: the rate limit is {per_second} requests per second \
                 (bursts of {burst}); retry in {secs} s"
            ))),
            secs,
        );
    }
    let Some(slot) = share.enter(caller.connection_id()) else {
        let max = share.0.max_in_flight;
        crate::metrics::shed("in_flight_per_connection", StatusCode::TOO_MANY_REQUESTS);
        share.warn(
            "in_flight_per_connection",
            &caller,
            &format!("SCIM connection over its cap of {max} requests in progress at once: answering 429"),
        );
        return with_retry_after(
            error_response(&ScimError::too_many_requests(format!(
                "too many requests in progress for this SCIM connection: at most {max} at once; retry in 1 s"
            ))),
            1,
        );
    };
    let _turn = if needs_turn(&req) { slot.turn().await } else { None };
    let resp = next.run(req).await;
    drop(slot);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_raw_or_encoded() {
        assert_eq!(control_character("/api/v1/organizations/abc"), None);
        assert_eq!(
            control_character("/scim/v2/x/Users?filter=userName%20eq%20%22a%22"),
            None
        );
        assert_eq!(control_character("/a/%00"), Some((3, 0)));
        assert_eq!(control_character("/a?x=1%0a"), Some((6, 0x0a)));
        assert_eq!(control_character("/a?x=%7F"), Some((5, 0x7f)));
        assert_eq!(control_character("/a/\u{1}"), Some((3, 1)));
        // Not an escape: left to the route.
        assert_eq!(control_character("/a/%0"), None);
        assert_eq!(control_character("/a/%zz%41"), None);
        assert_eq!(control_character("/a/%%00"), Some((4, 0)));
    }

    #[test]
    fn error_forms_by_path() {
        assert_eq!(ErrorForm::of("/api/v1/organizations"), ErrorForm::Problem);
        assert_eq!(ErrorForm::of("/api/v1"), ErrorForm::Problem);
        assert_eq!(ErrorForm::of("/api/v10"), ErrorForm::Scim);
        assert_eq!(ErrorForm::of("/scim/v2/x/Users"), ErrorForm::Scim);
        assert_eq!(ErrorForm::of("/healthz"), ErrorForm::Health);
        assert_eq!(ErrorForm::of("/metrics"), ErrorForm::Problem);
        assert_eq!(ErrorForm::of("/elsewhere"), ErrorForm::Scim);
    }

    #[test]
    fn warnings_are_throttled_per_client_and_limit() {
        let w = LimitWarnings::default();
        let t0 = Instant::now();
        assert_eq!(w.due("rate", "a", t0), Some(0));
        assert_eq!(w.due("rate", "a", t0 + Duration::from_secs(1)), None);
        assert_eq!(w.due("rate", "a", t0 + Duration::from_secs(2)), None);
        assert_eq!(
            w.due("rate", "b", t0 + Duration::from_secs(2)),
            Some(0),
            "another client"
        );
        assert_eq!(w.due("cap", "a", t0 + Duration::from_secs(2)), Some(0), "another limit");
        assert_eq!(w.due("rate", "a", t0 + WARN_INTERVAL), Some(2), "the two not logged");
        assert_eq!(w.due("rate", "a", t0 + WARN_INTERVAL), None);
    }

    #[test]
    fn validation_names_the_setting() {
        assert!(HttpLimits::default().validate().is_ok());
        let l = HttpLimits {
            max_in_flight: 0,
            ..HttpLimits::default()
        };
        assert!(l.validate().unwrap_err().contains("max_in_flight"));
        let l = HttpLimits {
            max_uri_bytes: 70_000,
            ..HttpLimits::default()
        };
        assert!(l.validate().unwrap_err().contains("max_uri_bytes"));
        assert!(HttpLimits::default().hyper_max_head_bytes() > DEFAULT_MAX_URI_BYTES + DEFAULT_MAX_HEADER_BYTES);
    }

    #[test]
    fn which_requests_wait_for_a_turn() {
        let req = |method: &str, path: &str, headers: &[(&str, &str)]| {
            let mut b = axum::http::Request::builder().method(method).uri(path);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(Body::empty()).unwrap()
        };
        assert!(needs_turn(&req("GET", "/scim/v2/c/Users", &[])));
        assert!(needs_turn(&req("GET", "/scim/v2/c/Users/1", &[])));
        assert!(needs_turn(&req(
            "POST",
            "/scim/v2/c/Users/.search",
            &[("content-length", "40")]
        )));
        assert!(!needs_turn(&req(
            "POST",
            "/scim/v2/c/Users",
            &[("content-length", "400")]
        )));
        assert!(!needs_turn(&req(
            "PATCH",
            "/scim/v2/c/Users/1",
            &[("content-length", "32767")]
        )));
        assert!(needs_turn(&req(
            "PATCH",
            "/scim/v2/c/Users/1",
            &[("content-length", "32768")]
        )));
        assert!(needs_turn(&req(
            "POST",
            "/scim/v2/c/Bulk",
            &[("transfer-encoding", "chunked")]
        )));
        assert!(!needs_turn(&req("DELETE", "/scim/v2/c/Users/1", &[])));
    }

    #[test]
    fn slots_are_given_back() {
        let share = FairShare::new(None, 2, 1);
        let a = share.enter("c").unwrap();
        let _b = share.enter("c").unwrap();
        assert!(share.enter("c").is_none());
        assert!(share.enter("d").is_some(), "another connection has its own cap");
        drop(a);
        assert!(share.enter("c").is_some());
    }
}
