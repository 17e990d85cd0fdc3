//! The per-connection request log: what each SCIM request was and how it was answered (time,
//! method, path and query, status, latency, the `scimType` and `detail` of an error, User-Agent,
//! request id, which token), the first thing to read when an identity provider reports that
//! provisioning failed.
//!
//! It stays off the SCIM hot path: [`capture`] hands each entry to a bounded in-memory buffer
//! ([`RequestLog::record`], which never waits: when the buffer is full the entry is dropped, counted
//! and logged), and a background task ([`run_flusher`]) writes the buffer to the store in batches,
//! trimming each connection's log to its newest entries. Request and response bodies are kept only
//! while debug logging is on for the connection, with passwords and tokens redacted ([`redact_body`]);
//! the `Authorization` header is never kept.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rollcall_scim::redact::SecretAttributes;
use rollcall_store::{EventStore, RequestLogEntry};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Most entries written in one transaction (a commit costs a disk flush: few large ones are cheaper
/// than many small ones).
const BATCH: usize = 2000;
/// How long the flusher lets entries gather between two writes when it is not falling behind.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Longest body kept (after redaction), in bytes; longer ones are cut with a note.
pub const MAX_KEPT_BODY_BYTES: usize = 16 * 1024;
/// Bodies waiting in the buffer, in bytes, at most; past it, entries are buffered without bodies.
const MAX_PENDING_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Longest error detail or User-Agent kept, in characters.
const MAX_TEXT_CHARS: usize = 1024;
/// How often, at most, dropped entries are reported in the log.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Settings of the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLogSettings {
    /// Entries kept per connection (0 switches the request log off).
    pub keep_per_connection: u32,
    /// Entries the in-memory buffer holds before new ones are dropped.
    pub buffer: usize,
}

impl Default for RequestLogSettings {
    fn default() -> Self {
        RequestLogSettings {
            keep_per_connection: 1000,
            buffer: 10_000,
        }
    }
}

/// The buffer between SCIM requests and the store.
pub struct RequestLog {
    settings: RequestLogSettings,
    tx: mpsc::Sender<RequestLogEntry>,
    /// Taken by the flusher when the background tasks start.
    rx: Mutex<Option<mpsc::Receiver<RequestLogEntry>>>,
    /// Body bytes in the buffer.
    pending_body_bytes: Arc<AtomicUsize>,
    dropped: AtomicU64,
    last_drop_report: Mutex<Option<Instant>>,
}

impl RequestLog {
    pub fn new(settings: RequestLogSettings) -> RequestLog {
        let (tx, rx) = mpsc::channel(settings.buffer.max(1));
        RequestLog {
            settings,
            tx,
            rx: Mutex::new(Some(rx)),
            pending_body_bytes: Arc::default(),
            dropped: AtomicU64::new(0),
            last_drop_report: Mutex::new(None),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.keep_per_connection > 0
    }

    pub fn settings(&self) -> RequestLogSettings {
        self.settings
    }

    /// Entries dropped so far (buffer full, or a batch the store refused).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Buffers an entry without waiting; drops it (counted, reported at most every ten seconds) when
    /// the buffer is full.
    pub fn record(&self, mut entry: RequestLogEntry) {
        let body_bytes = body_len(&entry);
        if body_bytes > 0 {
            let before = self.pending_body_bytes.fetch_add(body_bytes, Ordering::Relaxed);
            if before + body_bytes > MAX_PENDING_BODY_BYTES {
                self.pending_body_bytes.fetch_sub(body_bytes, Ordering::Relaxed);
                let note = Some("[not kept: the request log's buffer of bodies is full]".to_string());
                entry.request_body = entry.request_body.and(note.clone());
                entry.response_body = entry.response_body.and(note);
                self.pending_body_bytes.fetch_add(body_len(&entry), Ordering::Relaxed);
            }
        }
        let len = body_len(&entry);
        if self.tx.try_send(entry).is_err() {
            self.pending_body_bytes.fetch_sub(len, Ordering::Relaxed);
            self.count_dropped(1, "the request log's buffer is full");
        }
    }

    fn count_dropped(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let Ok(mut last) = self.last_drop_report.lock() else {
            return;
        };
        if last.is_none_or(|at| at.elapsed() >= DROP_REPORT_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(dropped_total = total, reason = why, "request log entries dropped");
        }
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<RequestLogEntry>> {
        self.rx.lock().ok()?.take()
    }
}

fn body_len(e: &RequestLogEntry) -> usize {
    e.request_body.as_ref().map_or(0, String::len) + e.response_body.as_ref().map_or(0, String::len)
}

/// Writes buffered entries to the store in batches until `shutdown` turns true, then writes what is
/// left and returns. Does nothing when the flusher already runs.
pub async fn run_flusher(store: Arc<dyn EventStore>, log: Arc<RequestLog>, mut shutdown: watch::Receiver<bool>) {
    let Some(mut rx) = log.take_receiver() else {
        tracing::warn!("the request log flusher is already running");
        return;
    };
    let keep = i64::from(log.settings.keep_per_connection.max(1));
    let mut batch = Vec::with_capacity(BATCH);
    // Set by whichever wait sees the shutdown first: a change seen while pausing between two
    // writes is not seen again by the next wait, so it must be remembered.
    let mut stopping = *shutdown.borrow_and_update();
    loop {
        if !stopping {
            stopping = tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n == 0,
                _ = shutdown.changed() => true,
            };
        }
        if stopping {
            // Everything buffered (at most the configured buffer) is written before returning.
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
        }
        for chunk in batch.chunks(BATCH) {
            flush(&*store, &log, chunk, keep).await;
        }
        let full = batch.len() >= BATCH;
        batch.clear();
        if stopping {
            return;
        }
        if !full {
            // Not falling behind: let the next entries gather so that a busy node writes one batch
            // per interval instead of one small transaction per request.
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = shutdown.changed() => stopping = true,
            }
        }
    }
}

async fn flush(store: &dyn EventStore, log: &RequestLog, chunk: &[RequestLogEntry], keep: i64) {
    let bytes: usize = chunk.iter().map(body_len).sum();
    let written = store.append_request_log(chunk, keep).await;
    crate::metrics::background_run("request_log_flush", written.is_ok());
    if let Err(e) = written {
        tracing::warn!(error = %e, entries = chunk.len(), "writing the request log failed");
        log.count_dropped(chunk.len() as u64, "the store refused a batch");
    }
    log.pending_body_bytes.fetch_sub(bytes, Ordering::Relaxed);
}

/// What the authentication middleware learnt about a SCIM request, passed back to [`capture`] in
/// the response's extensions.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The prefix of the token that authenticated the request.
    pub token_prefix: Option<String>,
    /// The request body, when debug logging is on for the connection.
    pub request_body: Option<Bytes>,
}

/// The connection id in a `/scim/v2/{connection_id}/...` path, if it is one (connection ids are
/// UUIDs; anything else cannot name a connection and is not logged).
fn connection_in_path(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/scim/v2/")?.split('/').next()?;
    uuid::Uuid::parse_str(id).is_ok().then_some(id)
}

/// A server error is ours to look at (503, load shed on purpose, is warned about where it is
/// decided, at most once per interval): a WARN naming what finds it in the request log.
fn warn_server_error(
    status: StatusCode,
    connection_id: &str,
    request_id: Option<&str>,
    method: &str,
    path: &str,
    detail: Option<&str>,
) {
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(
            scim_connection = %connection_id,
            request_id = request_id.unwrap_or("-"),
            %method,
            path = %path,
            status = status.as_u16(),
            detail = detail.unwrap_or("-"),
            "SCIM request failed with a server error"
        );
    }
}

/// With the request log off, server errors are still logged at WARN: the request's ids, method,
/// redacted path and the error's detail (read back from the answer only when it is one).
async fn warn_on_server_error(secrets: &SecretAttributes, req: Request, next: Next) -> Response {
    let uri = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    let connection_id = connection_in_path(uri.path()).unwrap_or("-").to_string();
    let request_id = header_text(&req, header::HeaderName::from_static("x-request-id"));
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE {
        return resp;
    }
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let path = redact_query(path_and_query, secrets);
    let filter_literals = query_filter_literals(path_and_query, secrets);
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let (_, detail) = error_fields(&bytes);
    let detail = detail.map(|d| rollcall_scim::redact::SecretAttributes::scrub(&d, &filter_literals).into_owned());
    warn_server_error(
        status,
        &connection_id,
        request_id.as_deref(),
        &method,
        &path,
        detail.as_deref(),
    );
    Response::from_parts(parts, Body::from(bytes))
}

/// What [`capture`] works with: this node's buffer, and the attributes whose values are kept out of
/// what it records.
#[derive(Clone)]
pub struct Capture {
    log: Arc<RequestLog>,
    secrets: Arc<SecretAttributes>,
}

impl Capture {
    pub fn new(log: Arc<RequestLog>, secrets: Arc<SecretAttributes>) -> Capture {
        Capture { log, secrets }
    }
}

/// Middleware around the SCIM routes (outside authentication, so that refused requests are logged
/// too): times the request and records it in the request log.
pub async fn capture(State(Capture { log, secrets }): State<Capture>, req: Request, next: Next) -> Response {
    if !log.enabled() {
        return warn_on_server_error(&secrets, req, next).await;
    }
    let started = Instant::now();
    let at_us = rollcall_store::sqlite::now_us();
    let uri = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    let Some(connection_id) = connection_in_path(uri.path()).map(str::to_string) else {
        return next.run(req).await;
    };
    let user_agent = header_text(&req, header::USER_AGENT);
    let request_id = header_text(&req, header::HeaderName::from_static("x-request-id"));
    let auth_scheme = auth_scheme(req.headers().get(header::AUTHORIZATION));
    let method = req.method().to_string();
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let path = redact_query(path_and_query, &secrets);
    // The values a filter in the query compares against secret attributes: kept out of the error
    // detail too (the SCIM service removes them from its errors already; this covers every error).
    let filter_literals = query_filter_literals(path_and_query, &secrets);

    let mut resp = next.run(req).await;

    let auth = resp.extensions_mut().remove::<Authenticated>();
    let debug = auth.as_ref().is_some_and(|a| a.request_body.is_some());
    let status = resp.status();
    let is_scim_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    // Responses are built in memory, so reading one back costs a copy, and only errors (small) and
    // debug-logged answers are read.
    let mut response_bytes = None;
    if (status.is_client_error() || status.is_server_error() || debug) && is_scim_json {
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                response_bytes = Some(bytes.clone());
                resp = Response::from_parts(parts, Body::from(bytes));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading a response for the request log failed");
                resp = Response::from_parts(parts, Body::empty());
            }
        }
    }
    let (scim_type, error_detail) = match (&response_bytes, status.as_u16() >= 400) {
        (Some(bytes), true) => error_fields(bytes),
        _ => (None, None),
    };
    let error_detail =
        error_detail.map(|d| rollcall_scim::redact::SecretAttributes::scrub(&d, &filter_literals).into_owned());
    warn_server_error(
        status,
        &connection_id,
        request_id.as_deref(),
        &method,
        &path,
        error_detail.as_deref(),
    );
    let request_body = auth
        .as_ref()
        .and_then(|a| a.request_body.as_ref())
        .filter(|b| !b.is_empty())
        .map(|b| redact_body_with(b, &secrets));
    let response_body = if debug {
        response_bytes
            .as_ref()
            .filter(|b| !b.is_empty())
            .map(|b| redact_body_with(b, &secrets))
    } else {
        None
    };
    log.record(RequestLogEntry {
        seq: 0,
        connection_id,
        at_us,
        method,
        path,
        status: status.as_u16(),
        latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
        scim_type,
        error_detail,
        user_agent,
        request_id,
        token_prefix: auth.and_then(|a| a.token_prefix),
        auth_scheme: Some(auth_scheme.to_string()),
        request_body,
        response_body,
    });
    resp
}

/// How a request presents its credentials, as [`RequestLogEntry::auth_scheme`] records it: a word of
/// a fixed vocabulary, never any part of the credentials (an unknown scheme's name could be a
/// pasted secret too, so it is `other`).
pub fn auth_scheme(authorization: Option<&header::HeaderValue>) -> &'static str {
    let Some(value) = authorization else {
        return "none";
    };
    let value = String::from_utf8_lossy(value.as_bytes());
    let value = value.trim();
    let (scheme, rest) = match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) => (scheme, rest.trim()),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        let first = rest.split(char::is_whitespace).next().unwrap_or("");
        if rest.is_empty() {
            "bearer_empty"
        } else if first.eq_ignore_ascii_case("bearer") || first.eq_ignore_ascii_case("bearer:") {
            "bearer_doubled"
        } else if rest.starts_with(crate::tokens::API_KEY_PREFIX) {
            "bearer_api_key"
        } else if rest.starts_with(crate::tokens::SCIM_TOKEN_PREFIX) {
            "bearer"
        } else {
            "bearer_other"
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        "basic"
    } else if value.is_empty() {
        "empty"
    } else if rest.is_empty() {
        // One word: credentials without a scheme.
        "bare"
    } else {
        "other"
    }
}

fn header_text(req: &Request, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| clean(v, MAX_TEXT_CHARS))
}

/// `scimType` and `detail` of a SCIM error body.
fn error_fields(bytes: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return (None, None);
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(|s| clean(s, MAX_TEXT_CHARS));
    (text("scimType"), text("detail"))
}

/// At most `max` characters, without NUL (which PostgreSQL text cannot hold).
fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| *c != '\0').take(max).collect()
}

/// Whether a JSON key or query parameter names a secret.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "authorization",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Replaces, in place, the values of secret attributes: any key naming a secret (`password`,
/// `client_secret`, `access_token`, …, in any case and at any depth, so also inside a Bulk
/// operation's `data` or a PATCH `value` object), and the `value` of a PATCH operation whose `path`
/// names one (`"path": "password"`).
pub fn redact_value(v: &mut Value) {
    redact_value_with(v, &SecretAttributes::default());
}

/// [`redact_value`], and also the values that filters and PATCH paths (`"filter"`, `"path"`)
/// compare against the schema's secret attributes (`password[value eq "..."]`).
pub fn redact_value_with(v: &mut Value, secrets: &SecretAttributes) {
    match v {
        Value::Object(map) => {
            let patch_of_secret = map.get("path").and_then(Value::as_str).is_some_and(is_secret_name);
            for (k, item) in map.iter_mut() {
                if is_secret_name(k) || (patch_of_secret && k.eq_ignore_ascii_case("value")) {
                    if !item.is_null() {
                        *item = Value::String(REDACTED.to_string());
                    }
                } else if (k.eq_ignore_ascii_case("path") || k.eq_ignore_ascii_case("filter"))
                    && let Value::String(text) = item
                {
                    if let std::borrow::Cow::Owned(r) = secrets.redact(text) {
                        *text = r;
                    }
                } else {
                    redact_value_with(item, secrets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value_with(i, secrets)),
        _ => {}
    }
}

/// A body as the request log keeps it: JSON with its secrets redacted, cut at
/// [`MAX_KEPT_BODY_BYTES`]. A body that is not JSON is kept as text only when it mentions no
/// secret-like word (so a malformed body can still be read); otherwise only its size is.
pub fn redact_body(bytes: &[u8]) -> String {
    redact_body_with(bytes, &SecretAttributes::default())
}

/// [`redact_body`], with filters and PATCH paths redacted as [`redact_value_with`] does.
pub fn redact_body_with(bytes: &[u8], secrets: &SecretAttributes) -> String {
    let text = match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            redact_value_with(&mut v, secrets);
            v.to_string()
        }
        Err(_) => {
            let raw = String::from_utf8_lossy(bytes);
            let lower = raw.to_ascii_lowercase();
            if ["password", "secret", "token", "credential", "bearer"]
                .iter()
                .any(|w| lower.contains(w))
            {
                return format!(
                    "[{} bytes, not JSON; not kept because it may hold a secret]",
                    bytes.len()
                );
            }
            raw.into_owned()
        }
    };
    let text = clean(&text, usize::MAX);
    if text.len() <= MAX_KEPT_BODY_BYTES {
        return text;
    }
    let mut cut = MAX_KEPT_BODY_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &text[..cut], text.len())
}

/// A path and query with the values of secret-named query parameters redacted, and in a `filter`
/// parameter the values compared against secret attributes (`password eq "..."`).
fn redact_query(path_and_query: &str, secrets: &SecretAttributes) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return clean(path_and_query, 4096);
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_name(&percent_decode(k)) => format!("{k}={REDACTED}"),
            Some((k, v)) if percent_decode(k).eq_ignore_ascii_case("filter") => {
                match secrets.redact(&percent_decode(v)) {
                    std::borrow::Cow::Owned(r) => {
                        format!(
                            "{k}={}",
                            form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
                        )
                    }
                    std::borrow::Cow::Borrowed(_) => pair.to_string(),
                }
            }
            _ => pair.to_string(),
        })
        .collect();
    clean(&format!("{path}?{}", query.join("&")), 4096)
}

/// The values that `filter` parameters of a query compare against secret attributes.
fn query_filter_literals(path_and_query: &str, secrets: &SecretAttributes) -> Vec<String> {
    let Some((_, query)) = path_and_query.split_once('?') else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("filter"))
        .flat_map(|(_, v)| secrets.literals(&v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("k={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passwords_and_tokens_are_redacted_at_any_depth() {
        let mut v = json!({
            "userName": "bjensen",
            "password": "t1meMach1ne",
            "Password": "x",
            "emails": [{"value": "b@example.com"}],
            "Operations": [
                {"op": "replace", "path": "password", "value": "n3w"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": "n3w"},
                {"op": "replace", "value": {"password": "n3w", "active": true}},
                {"op": "add", "path": "emails", "value": [{"value": "c@example.com"}]},
                {"method": "POST", "data": {"userName": "x", "password": "p"}}
            ],
            "client_secret": "s",
            "access_token": "t",
            "nothing": null,
            "password2": null
        });
        redact_value(&mut v);
        let text = v.to_string();
        let mut w = json!({"Operations": [{"op": "remove", "path": "password[value eq \"n3w\"]"}],
                           "filter": "password eq \"n3w\""});
        redact_value_with(
            &mut w,
            &SecretAttributes::of(&rollcall_scim::schema::SchemaRegistry::standard()),
        );
        assert!(!w.to_string().contains("n3w"), "{w}");
        for secret in ["t1meMach1ne", "n3w", "\"p\"", "\"s\"", "\"t\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(v["password"], REDACTED);
        assert_eq!(v["Operations"][0]["value"], REDACTED);
        assert_eq!(v["Operations"][1]["value"], REDACTED);
        assert_eq!(v["Operations"][2]["value"]["active"], true);
        assert_eq!(v["Operations"][3]["value"][0]["value"], "c@example.com");
        assert_eq!(v["Operations"][4]["data"]["userName"], "x");
        assert_eq!(v["emails"][0]["value"], "b@example.com");
        assert_eq!(v["nothing"], Value::Null);
        assert_eq!(v["password2"], Value::Null);
    }

    #[test]
    fn bodies_that_are_not_json() {
        assert_eq!(redact_body(b"{not json"), "{not json");
        let kept = redact_body(b"password=hunter2");
        assert!(!kept.contains("hunter2") && kept.contains("16 bytes"), "{kept}");
        assert!(!redact_body(b"{\"a\": \"Bearer rc_scim_x\"").contains("rc_scim_x"));
        assert_eq!(redact_body(b"ab\0c"), "abc");
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = json!({"displayName": "é".repeat(MAX_KEPT_BODY_BYTES)}).to_string();
        let kept = redact_body(long.as_bytes());
        assert!(kept.len() < MAX_KEPT_BODY_BYTES + 100);
        assert!(
            kept.ends_with(&format!("[cut: {} bytes in all]", long.len())),
            "{}",
            &kept[kept.len() - 60..]
        );
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        let none = SecretAttributes::default();
        assert_eq!(
            redact_query(
                "/scim/v2/x/Users?filter=userName+eq+%22a%22&access_token=abc&count=2",
                &none
            ),
            "/scim/v2/x/Users?filter=userName+eq+%22a%22&access_token=[redacted]&count=2"
        );
        assert_eq!(redact_query("/scim/v2/x/Users", &none), "/scim/v2/x/Users");
        let secrets = SecretAttributes::of(&rollcall_scim::schema::SchemaRegistry::standard());
        let q = "/scim/v2/x/Users?Filter=userName+eq+%22a%22+and+password+eq+%22hunter2%22&count=2";
        let kept = redact_query(q, &secrets);
        assert!(!kept.contains("hunter2"), "{kept}");
        assert_eq!(
            percent_decode(kept.split_once("Filter=").unwrap().1.split('&').next().unwrap()),
            "userName eq \"a\" and password eq \"[redacted]\""
        );
        assert!(kept.ends_with("&count=2"));
        assert_eq!(
            query_filter_literals(q, &secrets),
            ["hunter2", "hunter2", "\"hunter2\""]
        );
    }

    #[test]
    fn only_connection_ids_are_logged() {
        let id = "0190c7d2-5b7e-7000-8000-000000000001";
        assert_eq!(connection_in_path(&format!("/scim/v2/{id}/Users")), Some(id));
        assert_eq!(connection_in_path("/scim/v2/not-a-connection/Users"), None);
        assert_eq!(connection_in_path("/api/v1/x"), None);
    }

    fn entry(body: Option<&str>) -> RequestLogEntry {
        RequestLogEntry {
            seq: 0,
            connection_id: "c".into(),
            at_us: 0,
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            latency_us: 1,
            scim_type: None,
            error_detail: None,
            user_agent: None,
            request_id: None,
            token_prefix: None,
            auth_scheme: None,
            request_body: body.map(str::to_string),
            response_body: None,
        }
    }

    #[test]
    fn a_full_buffer_drops_and_counts_without_waiting() {
        let log = RequestLog::new(RequestLogSettings {
            keep_per_connection: 10,
            buffer: 2,
        });
        for _ in 0..5 {
            log.record(entry(Some("{}")));
        }
        assert_eq!(log.dropped(), 3);
        // The bodies of dropped entries are not counted as pending.
        assert_eq!(log.pending_body_bytes.load(Ordering::Relaxed), 4);
        let mut rx = log.take_receiver().unwrap();
        assert!(log.take_receiver().is_none());
        assert_eq!(rx.try_recv().unwrap().request_body.as_deref(), Some("{}"));
    }

    #[test]
    fn auth_schemes_are_classified_without_the_credentials() {
        let scheme = |v: &str| auth_scheme(Some(&header::HeaderValue::from_str(v).unwrap()));
        assert_eq!(auth_scheme(None), "none");
        assert_eq!(scheme(""), "empty");
        assert_eq!(scheme("Bearer rc_scim_abc"), "bearer");
        assert_eq!(scheme("bearer   rc_scim_abc "), "bearer");
        assert_eq!(scheme("Bearer"), "bearer_empty");
        assert_eq!(scheme("Bearer Bearer rc_scim_abc"), "bearer_doubled");
        assert_eq!(scheme("Bearer rc_key_abc"), "bearer_api_key");
        assert_eq!(scheme("Bearer eyJhbGciOi.x.y"), "bearer_other");
        assert_eq!(scheme("Basic dXNlcjpwYXNz"), "basic");
        assert_eq!(scheme("rc_scim_abc"), "bare");
        // An unknown scheme's name is not kept: it could be a secret pasted with a space in it.
        assert_eq!(scheme("SSWS 00abc"), "other");
        assert_eq!(scheme("s3cr3t-part-one s3cr3t-part-two"), "other");
    }
}
