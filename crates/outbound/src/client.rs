//! One HTTP exchange with a target, and the retries around it.
//!
//! - [`Transport`]: HTTPS through rustls on ring with the webpki roots (the stack of the webhook
//!   sender), HTTP/1.1, a connection pool; `http://` only to loopback addresses (test fakes);
//!   every connection to an address the [`NetworkPolicy`] allows (target URLs come from tenants:
//!   loopback, private and link-local addresses are refused unless configuration allows them);
//!   redirects never followed; answers capped at [`MAX_ANSWER_BYTES`].
//! - [`TargetClient`]: a target's base URL, profile and credentials: the profile's headers, its
//!   token buckets ([`RateLimiter`]), a deadline per attempt, retries with exponential backoff and
//!   jitter that wait at least what `Retry-After` says (seconds or an HTTP date), one token
//!   refresh on a 401.
//!
//! Which failures are retried ([`RetryMode`]):
//!
//! | Failure | The target processed it? | Retried when |
//! |---|---|---|
//! | could not connect (DNS, refused, TLS) | no | always |
//! | 429, 503 | no (the target says so) | always; a 429's `Retry-After` pauses every request to the target |
//! | 500, 502, 504 | maybe | the request is idempotent |
//! | timeout, connection lost after sending | maybe | the request is idempotent |
//! | anything else | — | never |
//!
//! GET, PUT and DELETE are idempotent; POST and PATCH are not unless the caller says so (the
//! engine does after searching first). A request that may have been processed but was not
//! retried ends in an error with [`ClientError::may_have_committed`] set, so the caller searches
//! before trying again and a timeout never makes a duplicate.

use crate::auth::{Authenticator, Authorization, Credentials};
use crate::profile::{RateBucket, TargetProfile};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use rollcall_webhooks::ssrf::{GuardedResolver, NetworkPolicy, Refused};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// The limiter's clock is tokio's, so tests can run it on paused time.
use tokio::time::Instant;
use url::Url;

/// The User-Agent of every outbound request (GitHub refuses requests without one).
pub const USER_AGENT: &str = concat!("Rollcall-Outbound/", env!("CARGO_PKG_VERSION"));
/// The largest answer read.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type HttpsClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// The TLS configuration: rustls on ring (the provider sqlx uses), with the webpki roots.
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An answer as it came: status, headers, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why an exchange produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The URL or its address is not allowed; nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// No connection could be made (name, refused, TLS); nothing was sent.
    #[error("could not connect: {0}")]
    Connect(String),
    /// No whole answer within the deadline; the target may have processed the request.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection failed after the request was (perhaps) sent; the target may have processed
    /// it.
    #[error("the connection was lost: {0}")]
    Lost(String),
}

impl TransportError {
    /// Whether the target may have received, and processed, the request.
    pub fn maybe_processed(&self) -> bool {
        matches!(self, TransportError::Timeout(_) | TransportError::Lost(_))
    }
}

/// The HTTP client; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Transport {
    client: HttpsClient,
    policy: Arc<NetworkPolicy>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A client that connects only where `policy` allows.
    pub fn new(policy: NetworkPolicy) -> Transport {
        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy.clone()));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .build(https);
        Transport { client, policy }
    }

    /// A client that may connect to any address: for URLs the operator configures (not tenants),
    /// such as a directory connector's API.
    pub fn unrestricted() -> Transport {
        Transport::new(NetworkPolicy {
            allow_loopback: true,
            allow_private: true,
            allowed_networks: NetworkPolicy::parse_networks("0.0.0.0/0, ::/0").expect("valid networks"),
        })
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// Whether `url` may be called: `https://`, or `http://` to a loopback address
    /// ([`check_scheme`]), with no credentials or fragment, to an address the policy allows (names
    /// are checked again at each connection).
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        check_scheme(url)?;
        self.policy.check_url_form(url)
    }

    /// One exchange: the request, then the whole answer, within `timeout`.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<RawResponse, TransportError> {
        // Addresses written in the URL do not pass through the resolver: check them here.
        self.check_url(&req.uri().to_string())
            .map_err(TransportError::Refused)?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let text = describe(&e);
                if refused_by_policy(&e) {
                    TransportError::Refused(text)
                } else if e.is_connect() {
                    TransportError::Connect(text)
                } else {
                    TransportError::Lost(text)
                }
            })?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| TransportError::Lost(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(RawResponse { status, headers, body })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }
}

/// Whether `url` is a URL Rollcall calls out to: `https://`, or `http://` to a loopback address
/// only (test fakes, a local token endpoint).
pub fn check_scheme(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("\"{url}\" is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(parsed)
            } else {
                Err(format!(
                    "\"{url}\" must use https:// (http:// is accepted for loopback addresses only)"
                ))
            }
        }
        other => Err(format!("\"{url}\" must use https://, not {other}://")),
    }
}

/// Whether the resolver refused the name's addresses (the network policy), somewhere in the
/// error's causes.
fn refused_by_policy(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<Refused>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error with its causes, outermost first.
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Retries: how many, how far apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The pause after the first failure; it doubles with each one (plus jitter).
    pub base: Duration,
    /// The longest backoff pause.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited for; a longer one ends the request with the error (and
    /// its `retry_after`) so the caller can come back later.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1` (`attempt`, 1-based, just failed), without
    /// jitter: `base · 2^(attempt-1)`, at most `max_delay`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay)
    }

    /// The pause before the next attempt: the backoff with "equal jitter" (between half of it and
    /// all of it), or `Retry-After` when that is longer.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(attempt);
        let half = backoff / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=half.as_nanos().min(u128::from(u64::MAX)) as u64))
        };
        let jittered = half + jitter;
        retry_after.map_or(jittered, |r| r.max(jittered))
    }
}

/// Which failures of a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryMode {
    /// The request may be repeated whatever happened (GET, PUT, DELETE; a POST or PATCH the
    /// caller knows to be safe to repeat).
    Idempotent,
    /// Retried only when the target surely did not process it (no connection; 429; 503).
    #[default]
    UnlessProcessed,
    /// Never retried.
    Never,
}

impl RetryMode {
    /// The mode a method gets by default.
    pub fn for_method(method: &Method) -> RetryMode {
        if method == Method::GET || method == Method::PUT || method == Method::DELETE || method == Method::HEAD {
            RetryMode::Idempotent
        } else {
            RetryMode::UnlessProcessed
        }
    }
}

/// The value of a `Retry-After` header (RFC 9110 §10.2.3): seconds, or an HTTP date (then the time
/// from `now` until it; a date in the past is zero).
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &format).ok()?.assume_utc();
    Some(Duration::from_secs((at - now).whole_seconds().max(0) as u64))
}

fn retry_after_of(resp: &RawResponse) -> Option<Duration> {
    resp.header("retry-after")
        .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()))
}

/// Token buckets for one target (see [`RateBucket`]), and a pause everyone waits out after a 429.
pub struct RateLimiter {
    buckets: Vec<RateBucket>,
    state: Mutex<LimiterState>,
}

struct LimiterState {
    tokens: Vec<f64>,
    last: Instant,
    paused_until: Option<Instant>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

/// The share of a bucket's documented rate the limiter refills at, after the burst. The target's
/// bucket starts when the first request arrives, and the client's starts when that request is
/// sent. If a later request reaches the target faster than the first one did, the target's bucket
/// has had less time to refill than the client's. At the full rate, that request was refused with
/// 429; this was seen against Slack's fake on a loaded machine. The headroom also leaves room for
/// other clients that share an organisation's limits.
const PACE: f64 = 0.9;

impl RateLimiter {
    /// A limiter with these buckets, full.
    pub fn new(buckets: &[RateBucket]) -> RateLimiter {
        RateLimiter {
            buckets: buckets.to_vec(),
            state: Mutex::new(LimiterState {
                tokens: buckets.iter().map(|b| f64::from(b.burst.max(1))).collect(),
                last: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// No limit.
    pub fn unlimited() -> RateLimiter {
        RateLimiter::new(&[])
    }

    pub fn buckets(&self) -> &[RateBucket] {
        &self.buckets
    }

    /// Takes a token from every bucket `method` `path` counts against, or says how long until it
    /// can.
    fn try_take(&self, method: &str, path: &str) -> Result<(), Duration> {
        let mut s = self.state.lock().expect("limiter lock");
        let now = Instant::now();
        if let Some(until) = s.paused_until {
            if now < until {
                return Err(until - now);
            }
            s.paused_until = None;
        }
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now;
        let mut wait = Duration::ZERO;
        for (i, b) in self.buckets.iter().enumerate() {
            let cap = f64::from(b.burst.max(1));
            let rate = b.rate_per_second() * PACE;
            s.tokens[i] = (s.tokens[i] + elapsed * rate).min(cap);
            if b.scope.matches(method, path) && s.tokens[i] < 1.0 {
                let need = (1.0 - s.tokens[i]) / rate.max(f64::MIN_POSITIVE);
                wait = wait.max(Duration::from_secs_f64(need.min(86_400.0)));
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (i, b) in self.buckets.iter().enumerate() {
            if b.scope.matches(method, path) {
                s.tokens[i] -= 1.0;
            }
        }
        Ok(())
    }

    /// Waits until the request may be sent, and takes its tokens.
    pub async fn acquire(&self, method: &str, path: &str) {
        loop {
            match self.try_take(method, path) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Holds every request for `d` (a 429's `Retry-After`: the target asked the whole client to
    /// slow down).
    pub fn pause_for(&self, d: Duration) {
        let mut s = self.state.lock().expect("limiter lock");
        let until = Instant::now() + d;
        if s.paused_until.is_none_or(|u| u < until) {
            s.paused_until = Some(until);
        }
    }
}

/// What kind of failure a [`ClientError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The target refused the request (4xx other than 401, 403, 429): the object's problem.
    Rejected,
    /// 401 or 403 from the target (after one token refresh), or the token endpoint refused.
    Unauthorized,
    /// 429 still, after the retries, or a `Retry-After` longer than the policy waits.
    RateLimited,
    /// 5xx.
    ServerError,
    /// A redirect (never followed).
    Redirected,
    /// No whole answer within the deadline.
    Timeout,
    /// No connection could be made.
    Connect,
    /// The connection failed after sending.
    ConnectionLost,
    /// The URL or its address is not allowed.
    Refused,
    /// A success answer that is not the JSON expected.
    InvalidAnswer,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Rejected => "rejected",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Redirected => "redirected",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Refused => "refused",
            ErrorKind::InvalidAnswer => "invalid_answer",
        }
    }
}

/// Why a request to a target failed: what was asked, what came back (status, the SCIM error's
/// `scimType` and `detail`), how many attempts were made, and whether the target may have
/// processed it anyway. The fields ([`ErrorDetails`]) are read through `Deref` (`e.status`); the
/// box keeps `Result`s small.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError(Box<ErrorDetails>);

impl std::ops::Deref for ClientError {
    type Target = ErrorDetails;
    fn deref(&self) -> &ErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for ClientError {
    fn deref_mut(&mut self) -> &mut ErrorDetails {
        &mut self.0
    }
}

/// What a [`ClientError`] says.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDetails {
    pub kind: ErrorKind,
    pub method: String,
    /// The URL, without its query.
    pub url: String,
    pub status: Option<u16>,
    /// The SCIM error's `scimType` (RFC 7644 §3.12).
    pub scim_type: Option<String>,
    /// The SCIM error's `detail`, or the vendor's message, or what went wrong locally.
    pub detail: Option<String>,
    /// What the last `Retry-After` said.
    pub retry_after: Option<Duration>,
    pub attempts: u32,
    /// Whether the target may have processed the request (or an earlier attempt of it): search
    /// before repeating a create.
    pub may_have_committed: bool,
    /// The error answer's body, when it was JSON.
    pub body: Option<Value>,
}

impl ClientError {
    pub(crate) fn new(kind: ErrorKind, method: &str, url: &str, detail: &str) -> ClientError {
        ClientError::from_details(ErrorDetails {
            kind,
            method: method.to_string(),
            url: strip_query(url),
            status: None,
            scim_type: None,
            detail: Some(detail.to_string()),
            retry_after: None,
            attempts: 0,
            may_have_committed: false,
            body: None,
        })
    }

    pub fn from_details(details: ErrorDetails) -> ClientError {
        ClientError(Box::new(details))
    }

    pub fn details(&self) -> &ErrorDetails {
        &self.0
    }

    /// An error from a non-2xx answer.
    pub(crate) fn from_answer(method: &str, url: &str, resp: &RawResponse) -> ClientError {
        let kind = match resp.status {
            401 | 403 => ErrorKind::Unauthorized,
            429 => ErrorKind::RateLimited,
            300..=399 => ErrorKind::Redirected,
            500..=599 => ErrorKind::ServerError,
            _ => ErrorKind::Rejected,
        };
        let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let (scim_type, mut detail) = body.as_ref().map(error_fields).unwrap_or((None, None));
        if detail.is_none() && body.is_none() && !resp.body.is_empty() {
            let text = String::from_utf8_lossy(&resp.body);
            detail = Some(excerpt(text.trim(), 300));
        }
        if kind == ErrorKind::Redirected {
            let to = resp.header("location").unwrap_or("?");
            detail = Some(format!(
                "redirected to {to} (redirects are not followed: use the final URL)"
            ));
        }
        ClientError::from_details(ErrorDetails {
            kind,
            method: method.to_string(),
            url: strip_query(url),
            status: Some(resp.status),
            scim_type,
            detail,
            retry_after: retry_after_of(resp),
            attempts: 0,
            may_have_committed: false,
            body,
        })
    }

    fn from_transport(method: &str, url: &str, e: &TransportError) -> ClientError {
        let kind = match e {
            TransportError::Refused(_) => ErrorKind::Refused,
            TransportError::Connect(_) => ErrorKind::Connect,
            TransportError::Timeout(_) => ErrorKind::Timeout,
            TransportError::Lost(_) => ErrorKind::ConnectionLost,
        };
        let mut err = ClientError::new(kind, method, url, &e.to_string());
        err.may_have_committed = e.maybe_processed();
        err
    }

    /// 404: the resource is not there (a stale mapping: create again).
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// 409: a conflict (on create, ask the profile what it means).
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// Whether the failure says something about the target (down, slow, throttling, refusing
    /// our credentials, misconfigured) rather than about one object: these count towards
    /// quarantining a failing target.
    pub fn counts_against_target(&self) -> bool {
        !matches!(self.kind, ErrorKind::Rejected)
    }

    /// Whether trying again later may succeed without changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited
                | ErrorKind::ServerError
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::ConnectionLost
        )
    }

    /// The same failure, said to be the token endpoint's.
    pub(crate) fn about_token_endpoint(mut self) -> ClientError {
        let what = match (&self.status, self.body.as_ref().and_then(oauth_error)) {
            (_, Some(e)) => e,
            (Some(s), None) => format!("HTTP {s}"),
            (None, None) => self.detail.clone().unwrap_or_default(),
        };
        self.detail = Some(format!("the token endpoint refused: {what}"));
        if matches!(self.kind, ErrorKind::Rejected) {
            self.kind = ErrorKind::Unauthorized;
        }
        self
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.method, self.url)?;
        match self.status {
            Some(s) => write!(f, "HTTP {s}")?,
            None => f.write_str(self.kind.as_str())?,
        }
        if let Some(t) = &self.scim_type {
            write!(f, " ({t})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, "; Retry-After {} s", r.as_secs())?;
        }
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        if self.may_have_committed {
            f.write_str(" (the target may have processed it)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientError {}

/// `scimType` and `detail` of a SCIM error (RFC 7644 §3.12), or the message fields vendors use
/// instead (`message`; SCIM 1.1's `Errors[].description`; OAuth's `error_description`).
fn error_fields(v: &Value) -> (Option<String>, Option<String>) {
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let scim_type = text(&v["scimType"]);
    let detail = text(&v["detail"])
        .or_else(|| text(&v["message"]))
        .or_else(|| text(&v["Errors"][0]["description"]))
        .or_else(|| oauth_error(v))
        .map(|d| excerpt(&d, 1000));
    (scim_type, detail)
}

/// `error: error_description` of an OAuth error answer (RFC 6749 §5.2).
fn oauth_error(v: &Value) -> Option<String> {
    let error = v["error"].as_str()?;
    Some(match v["error_description"].as_str() {
        Some(d) if !d.is_empty() => format!("{error}: {d}"),
        _ => error.to_string(),
    })
}

fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Why one attempt produced no answer: a transport failure (maybe retried), or something that
/// ends the request (the token endpoint failed).
pub(crate) enum AttemptError {
    Transport(TransportError),
    Abort(ClientError),
}

/// The final answer of a request, after any retries.
pub(crate) struct Answer {
    pub raw: RawResponse,
    pub attempts: u32,
    pub earlier_outcome_unknown: bool,
}

/// Whether an answered status is worth another attempt, and whether the target may have
/// processed the request.
fn status_class(status: u16) -> Option<bool> {
    match status {
        // The target says it did not process it.
        429 | 503 => Some(false),
        // Maybe processed.
        500 | 502 | 504 => Some(true),
        _ => None,
    }
}

/// Runs `attempt` until an answer not worth retrying, or attempts run out (then the last answer,
/// or why there was none). A 429's `Retry-After` also pauses `limiter`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    mode: RetryMode,
    method: &str,
    url: &str,
    limiter: Option<&RateLimiter>,
    mut attempt: F,
) -> Result<Answer, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<RawResponse, AttemptError>>,
{
    let mut n = 0u32;
    let mut unknown = false;
    loop {
        n += 1;
        // What to wait for before the next attempt (a `Retry-After`), when one is worth making.
        let retry_after: Option<Duration> = match attempt().await {
            Err(AttemptError::Abort(mut e)) => {
                e.attempts = n;
                e.may_have_committed |= unknown;
                return Err(e);
            }
            Ok(resp) => match status_class(resp.status) {
                None => {
                    return Ok(Answer {
                        raw: resp,
                        attempts: n,
                        earlier_outcome_unknown: unknown,
                    });
                }
                Some(maybe_processed) => {
                    let ra = retry_after_of(&resp);
                    if resp.status == 429
                        && let (Some(l), Some(ra)) = (limiter, ra)
                    {
                        l.pause_for(ra.min(policy.max_retry_after));
                    }
                    let allowed = match mode {
                        RetryMode::Never => false,
                        RetryMode::Idempotent => true,
                        RetryMode::UnlessProcessed => !maybe_processed,
                    };
                    let too_long = ra.is_some_and(|r| r > policy.max_retry_after);
                    if !allowed || too_long || n >= policy.max_attempts {
                        return Ok(Answer {
                            raw: resp,
                            attempts: n,
                            earlier_outcome_unknown: unknown,
                        });
                    }
                    unknown |= maybe_processed;
                    tracing::info!(method, url = %strip_query(url), status = resp.status, attempt = n,
                        "outbound: retrying a request");
                    ra
                }
            },
            Err(AttemptError::Transport(e)) => {
                let allowed = match (&e, mode) {
                    (TransportError::Refused(_), _) | (_, RetryMode::Never) => false,
                    (TransportError::Connect(_), _) | (_, RetryMode::Idempotent) => true,
                    (_, RetryMode::UnlessProcessed) => !e.maybe_processed(),
                };
                if !allowed || n >= policy.max_attempts {
                    let mut err = ClientError::from_transport(method, url, &e);
                    err.attempts = n;
                    err.may_have_committed |= unknown;
                    return Err(err);
                }
                unknown |= e.maybe_processed();
                tracing::info!(method, url = %strip_query(url), error = %e, attempt = n,
                    "outbound: retrying a request");
                None
            }
        };
        tokio::time::sleep(policy.delay(n, retry_after)).await;
    }
}

/// Everything about one target a client needs.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The SCIM base URL (`https://scim.us-east-1.amazonaws.com/{tenant}/scim/v2/`).
    pub base_url: String,
    pub profile: TargetProfile,
    pub credentials: Credentials,
    /// The deadline of one attempt, from connecting to the end of the answer.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Token buckets in place of the profile's (the operator's override).
    pub rate_limits: Option<Vec<RateBucket>>,
}

impl TargetConfig {
    /// A target with the default deadline (30 s) and retry policy, and the profile's rate limits.
    pub fn new(base_url: impl Into<String>, profile: TargetProfile, credentials: Credentials) -> TargetConfig {
        TargetConfig {
            base_url: base_url.into(),
            profile,
            credentials,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limits: None,
        }
    }
}

/// One request to a target, relative to its base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRequest {
    pub method: Method,
    /// The path under the base URL (`Users`, `Users/2819c223`); segments the caller built from
    /// ids should go through [`path_segment`].
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub retry: RetryMode,
    /// This request's deadline per attempt, in place of the target's.
    pub timeout: Option<Duration>,
}

impl ScimRequest {
    pub fn new(method: Method, path: impl Into<String>) -> ScimRequest {
        let retry = RetryMode::for_method(&method);
        ScimRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            retry,
            timeout: None,
        }
    }

    pub fn get(path: impl Into<String>) -> ScimRequest {
        ScimRequest::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>, body: Value) -> ScimRequest {
        ScimRequest::new(Method::POST, path).body(body)
    }

    pub fn put(path: impl Into<String>, body: Value) -> ScimRequest {
        ScimRequest::new(Method::PUT, path).body(body)
    }

    pub fn patch(path: impl Into<String>, body: Value) -> ScimRequest {
        ScimRequest::new(Method::PATCH, path).body(body)
    }

    pub fn delete(path: impl Into<String>) -> ScimRequest {
        ScimRequest::new(Method::DELETE, path)
    }

    pub fn body(mut self, body: Value) -> ScimRequest {
        self.body = Some(body);
        self
    }

    /// Adds a query parameter (encoded when sent).
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> ScimRequest {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn retry(mut self, mode: RetryMode) -> ScimRequest {
        self.retry = mode;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> ScimRequest {
        self.timeout = Some(timeout);
        self
    }
}

/// A success answer.
#[derive(Debug, Clone)]
pub struct ScimResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when empty, as a 204's).
    pub body: Value,
    pub attempts: u32,
    /// An earlier attempt ended without an answer (or with a 5xx) after the request may have
    /// reached the target: a create answered now may not be the first.
    pub earlier_outcome_unknown: bool,
}

impl ScimResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Characters escaped in a path segment or query value: all but RFC 3986's unreserved ones.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// An id made safe to put in a path (`Users/{segment}`).
pub fn path_segment(id: &str) -> String {
    utf8_percent_encode(id, ESCAPED).to_string()
}

struct Inner {
    transport: Transport,
    base_url: String,
    profile: TargetProfile,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Authenticator,
    limiter: RateLimiter,
    timeout: Duration,
    retry: RetryPolicy,
}

/// A client for one target; cheap to clone (clones share the token cache and rate limiter).
#[derive(Clone)]
pub struct TargetClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for TargetClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetClient")
            .field("base_url", &self.inner.base_url)
            .field("profile", &self.inner.profile.id)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl TargetClient {
    /// A client for the target of `config`, sending through `transport`. Fails when the base URL
    /// is not allowed or a profile header is not a valid header.
    pub fn new(transport: Transport, config: TargetConfig) -> Result<TargetClient, ClientError> {
        let mut base = transport
            .check_url(config.base_url.trim())
            .map_err(|e| ClientError::new(ErrorKind::Refused, "", &config.base_url, &e))?
            .to_string();
        if base.contains('?') {
            return Err(ClientError::new(
                ErrorKind::Refused,
                "",
                &config.base_url,
                "the base URL must not have a query",
            ));
        }
        if !base.ends_with('/') {
            base.push('/');
        }
        let mut headers = Vec::new();
        for (name, value) in config.profile.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ClientError::new(ErrorKind::Refused, "", &base, &format!("bad header name {name}")))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| ClientError::new(ErrorKind::Refused, "", &base, &format!("bad value of header {name}")))?;
            headers.push((n, v));
        }
        let limiter = RateLimiter::new(config.rate_limits.as_deref().unwrap_or(config.profile.rate_limits));
        Ok(TargetClient {
            inner: Arc::new(Inner {
                transport,
                base_url: base,
                headers,
                auth: Authenticator::new(config.credentials),
                limiter,
                timeout: config.timeout,
                retry: config.retry,
                profile: config.profile,
            }),
        })
    }

    pub fn profile(&self) -> &TargetProfile {
        &self.inner.profile
    }

    /// The base URL, ending with `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// How many access tokens have been fetched (OAuth client credentials only).
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.auth.tokens_fetched()
    }

    /// The full URL of `path` with `query`.
    pub fn url_for(&self, path: &str, query: &[(String, String)]) -> String {
        let mut url = format!("{}{}", self.inner.base_url, path.trim_start_matches('/'));
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 && !path.contains('?') { '?' } else { '&' });
            url.push_str(&utf8_percent_encode(k, ESCAPED).to_string());
            url.push('=');
            url.push_str(&utf8_percent_encode(v, ESCAPED).to_string());
        }
        url
    }

    /// Sends `req`, retrying as its [`RetryMode`] allows; a 2xx answer is `Ok`, anything else a
    /// [`ClientError`] that says why.
    pub async fn send(&self, req: ScimRequest) -> Result<ScimResponse, ClientError> {
        let inner = &*self.inner;
        let url = self.url_for(&req.path, &req.query);
        let method = req.method.as_str().to_string();
        let timeout = req.timeout.unwrap_or(inner.timeout);
        let body = match &req.body {
            Some(v) => Bytes::from(serde_json::to_vec(v).expect("JSON values serialise")),
            None => Bytes::new(),
        };
        let refreshed = std::sync::atomic::AtomicBool::new(false);
        let attempt = || async {
            inner.limiter.acquire(&method, &req.path).await;
            let auth = self.authorization(timeout).await?;
            let resp = inner
                .transport
                .send(self.build(&req.method, &url, &auth, &body, req.body.is_some()), timeout)
                .await
                .map_err(AttemptError::Transport)?;
            if resp.status == 401
                && inner.auth.refreshable()
                && !refreshed.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                // The token may have been revoked or expired early: one more try with a new one.
                inner.auth.invalidate(&auth).await;
                let auth = self.authorization(timeout).await?;
                return inner
                    .transport
                    .send(self.build(&req.method, &url, &auth, &body, req.body.is_some()), timeout)
                    .await
                    .map_err(AttemptError::Transport);
            }
            Ok(resp)
        };
        let answer = with_retries(&inner.retry, req.retry, &method, &url, Some(&inner.limiter), attempt).await?;
        let raw = answer.raw;
        if !(200..300).contains(&raw.status) {
            let mut e = ClientError::from_answer(&method, &url, &raw);
            e.attempts = answer.attempts;
            e.may_have_committed = answer.earlier_outcome_unknown;
            return Err(e);
        }
        let body = if raw.body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&raw.body).map_err(|e| {
                let mut err = ClientError::new(
                    ErrorKind::InvalidAnswer,
                    &method,
                    &url,
                    &format!("HTTP {} with a body that is not JSON: {e}", raw.status),
                );
                err.status = Some(raw.status);
                err.attempts = answer.attempts;
                err
            })?
        };
        Ok(ScimResponse {
            status: raw.status,
            headers: raw.headers,
            body,
            attempts: answer.attempts,
            earlier_outcome_unknown: answer.earlier_outcome_unknown,
        })
    }

    /// The target's ServiceProviderConfig document, at the profile's path.
    pub async fn service_provider_config(&self) -> Result<Value, ClientError> {
        let path = self.inner.profile.service_provider_config_path;
        Ok(self.send(ScimRequest::get(path)).await?.body)
    }

    async fn authorization(&self, timeout: Duration) -> Result<Authorization, AttemptError> {
        self.inner
            .auth
            .authorization(&self.inner.transport, &self.inner.retry, timeout)
            .await
            .map_err(AttemptError::Abort)
    }

    fn build(
        &self,
        method: &Method,
        url: &str,
        auth: &Authorization,
        body: &Bytes,
        has_body: bool,
    ) -> http::Request<Full<Bytes>> {
        let mut b = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(http::header::AUTHORIZATION, auth.value.clone())
            .header(http::header::ACCEPT, "application/scim+json, application/json")
            .header(http::header::USER_AGENT, USER_AGENT);
        if has_body {
            b = b.header(http::header::CONTENT_TYPE, "application/scim+json");
        }
        let mut req = b.body(Full::new(body.clone())).unwrap_or_else(|_| {
            // A URL that does not parse as a URI: send nothing sensible; the transport refuses it.
            http::Request::new(Full::new(Bytes::new()))
        });
        for (n, v) in &self.inner.headers {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{self, BucketScope};

    #[test]
    fn backoff_doubles_to_a_cap_and_retry_after_is_a_floor() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(5), Duration::from_secs(1));
        assert_eq!(p.backoff(40), Duration::from_secs(1));
        for attempt in 1..8 {
            let d = p.delay(attempt, None);
            assert!(d >= p.backoff(attempt) / 2 && d <= p.backoff(attempt), "{d:?}");
            assert!(p.delay(attempt, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = time::macros::datetime!(1994-11-06 08:49:00 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(37))
        );
        // A date in the past: no wait.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:48:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn methods_get_their_retry_modes() {
        assert_eq!(RetryMode::for_method(&Method::GET), RetryMode::Idempotent);
        assert_eq!(RetryMode::for_method(&Method::PUT), RetryMode::Idempotent);
        assert_eq!(RetryMode::for_method(&Method::DELETE), RetryMode::Idempotent);
        assert_eq!(RetryMode::for_method(&Method::POST), RetryMode::UnlessProcessed);
        assert_eq!(RetryMode::for_method(&Method::PATCH), RetryMode::UnlessProcessed);
        assert_eq!(
            ScimRequest::post("Users", Value::Null).retry,
            RetryMode::UnlessProcessed
        );
        assert_eq!(
            ScimRequest::post("Users", Value::Null)
                .retry(RetryMode::Idempotent)
                .retry,
            RetryMode::Idempotent
        );
    }

    #[test]
    fn only_https_or_loopback_http_and_the_policy() {
        let t = Transport::new(NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        });
        assert!(t.check_url("https://scim.us-east-1.amazonaws.com/x/scim/v2/").is_ok());
        assert!(t.check_url("http://127.0.0.1:9000/scim/v2/").is_ok());
        assert!(t.check_url("http://localhost:9000/").is_ok());
        assert!(t.check_url("http://[::1]:9000/").is_ok());
        assert!(t.check_url("http://example.com/scim").is_err());
        assert!(t.check_url("ftp://example.com").is_err());
        assert!(t.check_url("https://user:pw@example.com").is_err());
        // The policy: private and link-local addresses refused by default.
        assert!(t.check_url("https://10.0.0.5/scim/v2/").is_err());
        assert!(t.check_url("https://169.254.169.254/latest").is_err());
        let strict = Transport::new(NetworkPolicy::default());
        assert!(strict.check_url("http://127.0.0.1:9000/").is_err());
        assert!(Transport::unrestricted().check_url("https://10.0.0.5/").is_ok());
    }

    #[test]
    fn urls_join_the_base_and_encode_queries() {
        let c = TargetClient::new(
            Transport::unrestricted(),
            TargetConfig::new(
                "https://scim.example.com/t1/scim/v2",
                profile::generic().clone(),
                Credentials::bearer("t"),
            ),
        )
        .unwrap();
        assert_eq!(c.base_url(), "https://scim.example.com/t1/scim/v2/");
        assert_eq!(
            c.url_for("/Users", &[("filter".into(), "userName eq \"a b+c@x.com\"".into())]),
            "https://scim.example.com/t1/scim/v2/Users?filter=userName%20eq%20%22a%20b%2Bc%40x.com%22"
        );
        assert_eq!(
            c.url_for(&format!("Users/{}", path_segment("a/b c")), &[]),
            "https://scim.example.com/t1/scim/v2/Users/a%2Fb%20c"
        );
        assert!(
            TargetClient::new(
                Transport::new(NetworkPolicy::default()),
                TargetConfig::new(
                    "http://example.com/scim",
                    profile::generic().clone(),
                    Credentials::bearer("t")
                ),
            )
            .is_err()
        );
    }

    #[test]
    fn errors_read_scim_and_vendor_bodies() {
        let resp = |status: u16, body: &str| RawResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        };
        let e = ClientError::from_answer(
            "POST",
            "https://t/Users?x=1",
            &resp(
                409,
                r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"User exists"}"#,
            ),
        );
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.is_conflict());
        assert_eq!(e.scim_type.as_deref(), Some("uniqueness"));
        assert_eq!(e.detail.as_deref(), Some("User exists"));
        assert_eq!(e.url, "https://t/Users");
        assert!(!e.counts_against_target());
        assert_eq!(
            e.to_string(),
            "POST https://t/Users: HTTP 409 (uniqueness): User exists"
        );
        let e = ClientError::from_answer("GET", "https://t/Users", &resp(400, r#"{"message":"Bad filter"}"#));
        assert_eq!(e.detail.as_deref(), Some("Bad filter"));
        let e = ClientError::from_answer("GET", "https://t/Users", &resp(502, "<html>Bad gateway</html>"));
        assert_eq!(e.kind, ErrorKind::ServerError);
        assert!(e.counts_against_target() && e.is_transient());
        assert_eq!(e.detail.as_deref(), Some("<html>Bad gateway</html>"));
        let e = ClientError::from_answer(
            "GET",
            "https://t/Users",
            &resp(401, r#"{"Errors":[{"description":"Invalid token","code":401}]}"#),
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(e.detail.as_deref(), Some("Invalid token"));
    }

    #[tokio::test(start_paused = true)]
    async fn token_buckets_hold_requests_to_their_rate() {
        let buckets = [RateBucket {
            scope: BucketScope::ALL,
            requests: 2,
            per_seconds: 1,
            burst: 3,
            documented: true,
        }];
        let l = RateLimiter::new(&buckets);
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            l.acquire("GET", "Users").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst passes at once");
        l.acquire("GET", "Users").await;
        let after_fourth = start.elapsed();
        assert!(after_fourth >= Duration::from_millis(499), "{after_fourth:?}");
        l.pause_for(Duration::from_secs(5));
        l.acquire("GET", "Users").await;
        assert!(start.elapsed() >= after_fourth + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_count_only_the_requests_in_their_scope() {
        let slack = profile::profile(profile::SLACK).unwrap();
        let l = RateLimiter::new(slack.rate_limits);
        let start = tokio::time::Instant::now();
        // The create-user bucket allows bursts of 20; reads are not counted against it.
        for _ in 0..20 {
            l.acquire("POST", "Users").await;
        }
        for _ in 0..50 {
            l.acquire("GET", "Users").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        l.acquire("POST", "Users").await;
        // 180 a minute: a token every third of a second.
        assert!(start.elapsed() >= Duration::from_millis(330));
    }
}
