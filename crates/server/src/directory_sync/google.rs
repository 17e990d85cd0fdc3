//! The Google Admin SDK Directory API, read-only, as a service account with domain-wide delegation.
//!
//! - Authorization: the OAuth 2.0 JWT bearer grant (RFC 7523) at the key's token endpoint: a JWT
//!   signed with the service account's RSA key (RS256), `iss` the service account, `sub` the admin
//!   it acts as, `scope` the three read-only directory scopes ([`SCOPES`]), `aud` the token
//!   endpoint, valid for an hour. The access token is kept until a minute before it expires, and
//!   fetched again once after a 401 (a token revoked or expired early).
//! - Reads: `users`, `groups` and `groups/{key}/members`, page by page (`pageToken` /
//!   `nextPageToken`).
//! - Retries: 429, 5xx and the 403s Google uses for quotas ([`RETRYABLE_403_REASONS`]) are retried
//!   with exponential backoff, waiting at least what `Retry-After` says; anything else fails the
//!   run with Google's message, and the token endpoint's errors come with what to fix
//!   ([`TOKEN_ERROR_HINTS`]).

use super::http::{HttpClient, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Google's Directory API.
pub const DEFAULT_API_BASE_URL: &str = "https://admin.googleapis.com";
/// Google's token endpoint (the `token_uri` of every service account key).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The grant type of RFC 7523.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The read-only directory scopes the Google admin delegates to the service account.
pub const SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
];
/// Users per page (the API's maximum).
pub const USERS_PAGE_SIZE: u32 = 500;
/// Groups and members per page (the API's maximum).
pub const GROUPS_PAGE_SIZE: u32 = 200;
/// The JWT's lifetime (Google accepts at most an hour).
const ASSERTION_LIFETIME_S: i64 = 3600;
/// An access token is fetched again this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The `reason`s of 403 answers that mean "too many requests" (usage limits), retried like a 429.
/// Other 403s (`forbidden`, `insufficientPermissions`, `domainCannotUseApis`, …) are the
/// configuration's fault and fail the run.
pub const RETRYABLE_403_REASONS: &[&str] = &[
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "quotaExceeded",
    "dailyLimitExceeded",
    "backendError",
];

/// What the token endpoint's `error` (and a phrase of its `error_description`) means for the
/// operator: the usual mistakes in setting up domain-wide delegation.
pub const TOKEN_ERROR_HINTS: &[(&str, &str, &str)] = &[
    (
        "unauthorized_client",
        "",
        "the service account is not authorised for these scopes: in the Google Admin console, Security › Access and \
         data control › API controls › Domain-wide delegation, add its client id with the three read-only directory \
         scopes",
    ),
    (
        "invalid_grant",
        "Invalid email or User ID",
        "the admin e-mail address is not a user of this Google Workspace: give an administrator's address",
    ),
    (
        "invalid_grant",
        "Invalid JWT Signature",
        "the service account key was deleted or replaced in Google Cloud: upload a current key",
    ),
    (
        "invalid_grant",
        "account not found",
        "the service account does not exist any more: upload a key of an existing service account",
    ),
    (
        "invalid_grant",
        "Invalid JWT",
        "Google refused the signed request: check the clock of this server (it must be within a minute of the true \
         time)",
    ),
];

/// The retry policy for the Directory API and the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The pause after the first failure; it doubles with each one.
    pub base: Duration,
    /// The longest pause of the backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured (a longer one fails the request).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 7,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(64),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (1-based `attempt` just failed): the backoff, or
    /// `Retry-After` when that is longer.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        retry_after.map_or(backoff, |r| r.max(backoff))
    }
}

/// A failure of the directory read, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleError(pub String);

impl std::fmt::Display for GoogleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GoogleError {}

pub type GoogleResult<T> = Result<T, GoogleError>;

/// The fields of a service account key (the JSON file Google Cloud gives) that are used.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub client_email: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub private_key: String,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Reads and checks a key: a service account's, with an RSA private key that signs.
    pub fn parse(json: &str) -> Result<ServiceAccountKey, String> {
        let key: ServiceAccountKey = serde_json::from_str(json).map_err(|e| {
            format!(
                "the credentials are not a Google service account key (JSON with client_email and private_key): {e}"
            )
        })?;
        if let Some(kind) = &key.kind
            && kind != "service_account"
        {
            return Err(format!(
                "the credentials are of type \"{kind}\", not a service account key (\"service_account\")"
            ));
        }
        if !key.client_email.contains('@') {
            return Err("the credentials' client_email is not an e-mail address".into());
        }
        signer(&key.private_key)?;
        Ok(key)
    }
}

/// The RSA key of a PEM block (`PRIVATE KEY`: PKCS#8, as Google issues; `RSA PRIVATE KEY`: PKCS#1).
fn signer(pem: &str) -> Result<ring::signature::RsaKeyPair, String> {
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let body: String = pem.lines().map(str::trim).filter(|l| !l.starts_with("-----")).collect();
    let body = Zeroizing::new(body);
    let der = Zeroizing::new(
        STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "the credentials' private_key is not a PEM-encoded key".to_string())?,
    );
    if pkcs1 {
        ring::signature::RsaKeyPair::from_der(&der)
    } else {
        ring::signature::RsaKeyPair::from_pkcs8(&der)
    }
    .map_err(|e| format!("the credentials' private_key is not a usable RSA key: {e}"))
}

/// The signed JWT (RS256) of the bearer grant: the service account `iss` acting as `sub`.
pub fn assertion(key: &ServiceAccountKey, subject: &str, audience: &str, now_s: i64) -> GoogleResult<String> {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": key.client_email,
        "sub": subject,
        "scope": SCOPES.join(" "),
        "aud": audience,
        "iat": now_s,
        "exp": now_s + ASSERTION_LIFETIME_S,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pair = signer(&key.private_key).map_err(GoogleError)?;
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| GoogleError("the service account key could not sign the token request".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Where and as whom to read.
#[derive(Debug, Clone)]
pub struct GoogleTarget {
    pub api_base_url: String,
    pub token_url: String,
    pub customer: String,
    pub admin_email: String,
}

/// An access token and when to stop using it.
struct AccessToken {
    value: String,
    refresh_at: Instant,
}

/// A reader of one Google Workspace directory.
pub struct GoogleDirectory {
    http: HttpClient,
    key: ServiceAccountKey,
    target: GoogleTarget,
    retry: RetryPolicy,
    token: Option<AccessToken>,
    /// Access tokens fetched (for tests and the log).
    pub tokens_fetched: u32,
    /// Requests retried after a 429, 403 (quota) or 5xx.
    pub retries: u32,
}

/// One page of a list.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// A Google user, as `users.list` with `projection=full` returns it (the fields mapped).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GoogleUser {
    pub id: String,
    pub primary_email: String,
    pub name: Option<GoogleName>,
    pub suspended: bool,
    pub archived: bool,
    pub org_unit_path: Option<String>,
    /// The multi-valued fields are typed `any` by the API (a list of objects in practice).
    pub emails: Option<Value>,
    pub phones: Option<Value>,
    pub organizations: Option<Value>,
    pub external_ids: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GoogleName {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub full_name: Option<String>,
}

/// A Google group (`groups.list`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GoogleGroup {
    pub id: String,
    pub email: String,
    pub name: String,
    pub description: Option<String>,
}

/// A member of a group (`members.list`): a user, a group, or the whole customer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GoogleMember {
    pub id: String,
    pub email: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    #[serde(default)]
    users: Vec<GoogleUser>,
    #[serde(default)]
    groups: Vec<GoogleGroup>,
    #[serde(default)]
    members: Vec<GoogleMember>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// Seconds in a `Retry-After` header (a number of seconds, or an HTTP date).
fn retry_after(resp: &HttpResponse) -> Option<Duration> {
    let v = resp.header("retry-after")?;
    if let Ok(s) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate(v)?;
    let now = time::OffsetDateTime::now_utc();
    Some(Duration::from_secs((at - now).whole_seconds().max(0) as u64))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate(v: &str) -> Option<time::OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v.trim(), &format)
        .ok()
        .map(|p| p.assume_utc())
}

/// Google's error answer: `{"error": {"code", "message", "errors": [{"reason", ...}]}}`.
fn api_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let message = e["message"].as_str().map(str::to_string);
    let reason = e["errors"][0]["reason"]
        .as_str()
        .or_else(|| e["details"][0]["reason"].as_str())
        .map(str::to_string);
    (message, reason)
}

/// Whether an answer is worth another attempt.
fn retryable(resp: &HttpResponse) -> bool {
    match resp.status {
        429 | 500 | 502 | 503 | 504 => true,
        403 => api_error(&resp.body)
            .1
            .is_some_and(|r| RETRYABLE_403_REASONS.contains(&r.as_str())),
        _ => false,
    }
}

/// The token endpoint's refusal, with what to fix.
fn token_error(status: u16, body: &[u8]) -> GoogleError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = v["error"].as_str().unwrap_or("");
    let description = v["error_description"].as_str().unwrap_or("");
    let hint = TOKEN_ERROR_HINTS
        .iter()
        .find(|(e, phrase, _)| *e == error && description.contains(phrase))
        .map(|(_, _, hint)| *hint);
    let said = if error.is_empty() {
        format!("HTTP {status}")
    } else if description.is_empty() {
        error.to_string()
    } else {
        format!("{error}: {description}")
    };
    GoogleError(match hint {
        Some(h) => format!("Google refused the service account's token request ({said}): {h}"),
        None => format!("Google refused the service account's token request ({said})"),
    })
}

impl GoogleDirectory {
    pub fn new(http: HttpClient, key: ServiceAccountKey, target: GoogleTarget, retry: RetryPolicy) -> GoogleDirectory {
        GoogleDirectory {
            http,
            key,
            target,
            retry,
            token: None,
            tokens_fetched: 0,
            retries: 0,
        }
    }

    /// An access token, fetched when there is none or it is about to expire.
    async fn access_token(&mut self) -> GoogleResult<String> {
        if let Some(t) = &self.token
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        self.token = None;
        let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
        let jwt = assertion(&self.key, &self.target.admin_email, &self.target.token_url, now_s)?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER_GRANT)
            .append_pair("assertion", &jwt)
            .finish();
        let (resp, retries) = with_retries(&self.retry, "the token endpoint", || {
            self.http.post_form(&self.target.token_url, form.clone())
        })
        .await;
        self.retries += retries;
        let resp = resp?;
        if resp.status != 200 {
            return Err(token_error(resp.status, &resp.body));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&resp.body)
            .map_err(|e| GoogleError(format!("the token endpoint's answer is not a token: {e}")))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        self.token = Some(AccessToken {
            value: answer.access_token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        self.tokens_fetched += 1;
        Ok(answer.access_token)
    }

    /// GET a Directory API path (with its query), as the admin; a 401 fetches a new token once.
    async fn get(&mut self, path_and_query: &str) -> GoogleResult<Vec<u8>> {
        let url = format!("{}{path_and_query}", self.target.api_base_url.trim_end_matches('/'));
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            let (resp, retries) = with_retries(&self.retry, "the Directory API", || {
                self.http.get_bearer(&url, token.clone())
            })
            .await;
            self.retries += retries;
            let resp = resp?;
            match resp.status {
                200 => return Ok(resp.body),
                401 if !refreshed => {
                    // Expired or revoked before its time: a new one, once.
                    refreshed = true;
                    self.token = None;
                }
                status => {
                    let (message, reason) = api_error(&resp.body);
                    let mut said = format!("the Directory API answered {status}");
                    if let Some(r) = reason {
                        said.push_str(&format!(" ({r})"));
                    }
                    if let Some(m) = message {
                        said.push_str(&format!(": {m}"));
                    }
                    if status == 403 {
                        said.push_str(
                            " — check that the admin e-mail is an administrator's and that the three read-only scopes \
                             are delegated to the service account",
                        );
                    }
                    return Err(GoogleError(said));
                }
            }
        }
    }

    fn query(&self, pairs: &[(&str, &str)], page_token: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(t) = page_token {
            q.append_pair("pageToken", t);
        }
        q.finish()
    }

    async fn list(&mut self, path: &str, pairs: &[(&str, &str)], page_token: Option<&str>) -> GoogleResult<ListAnswer> {
        let url = format!("/admin/directory/v1/{path}?{}", self.query(pairs, page_token));
        let body = self.get(&url).await?;
        serde_json::from_slice(&body)
            .map_err(|e| GoogleError(format!("the Directory API's answer to {path} is not readable: {e}")))
    }

    /// One page of the customer's users.
    pub async fn users(&mut self, page_token: Option<&str>) -> GoogleResult<Page<GoogleUser>> {
        let customer = self.target.customer.clone();
        let size = USERS_PAGE_SIZE.to_string();
        let a = self
            .list(
                "users",
                &[("customer", &customer), ("maxResults", &size), ("projection", "full")],
                page_token,
            )
            .await?;
        Ok(Page {
            items: a.users,
            next_page_token: a.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// One page of the customer's groups.
    pub async fn groups(&mut self, page_token: Option<&str>) -> GoogleResult<Page<GoogleGroup>> {
        let customer = self.target.customer.clone();
        let size = GROUPS_PAGE_SIZE.to_string();
        let a = self
            .list("groups", &[("customer", &customer), ("maxResults", &size)], page_token)
            .await?;
        Ok(Page {
            items: a.groups,
            next_page_token: a.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// One page of a group's direct members (`group_key`: its id or e-mail address).
    pub async fn members(&mut self, group_key: &str, page_token: Option<&str>) -> GoogleResult<Page<GoogleMember>> {
        let key: String =
            percent_encoding::utf8_percent_encode(group_key, percent_encoding::NON_ALPHANUMERIC).to_string();
        let size = GROUPS_PAGE_SIZE.to_string();
        let a = self
            .list(&format!("groups/{key}/members"), &[("maxResults", &size)], page_token)
            .await?;
        Ok(Page {
            items: a.members,
            next_page_token: a.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}

/// Runs `send` until it gets an answer that is not worth retrying, or attempts run out; returns
/// the last answer (or why there is none) and how many times it retried.
async fn with_retries<F, Fut>(policy: &RetryPolicy, what: &str, send: F) -> (GoogleResult<HttpResponse>, u32)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, String>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (wait_hint, failure) = match send().await {
            Ok(resp) if retryable(&resp) => {
                let (message, reason) = api_error(&resp.body);
                let said = [Some(format!("HTTP {}", resp.status)), reason, message]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                (retry_after(&resp), said)
            }
            Ok(resp) => return (Ok(resp), attempt - 1),
            Err(e) => (None, e),
        };
        if attempt >= policy.max_attempts {
            return (
                Err(GoogleError(format!(
                    "{what} kept failing after {attempt} attempts: {failure}"
                ))),
                attempt - 1,
            );
        }
        if let Some(w) = wait_hint
            && w > policy.max_retry_after
        {
            return (
                Err(GoogleError(format!(
                    "{what} asked to wait {} s (Retry-After), longer than the {} s allowed: {failure}",
                    w.as_secs(),
                    policy.max_retry_after.as_secs()
                ))),
                attempt - 1,
            );
        }
        let pause = policy.delay(attempt, wait_hint);
        tracing::info!(what, attempt, pause_ms = pause.as_millis() as u64, failure = %failure,
            "directory sync: retrying a Google request");
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(10),
        };
        assert_eq!(p.delay(1, None), Duration::from_millis(100));
        assert_eq!(p.delay(2, None), Duration::from_millis(200));
        assert_eq!(p.delay(3, None), Duration::from_millis(400));
        assert_eq!(p.delay(4, None), Duration::from_millis(500));
        assert_eq!(p.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(p.delay(3, Some(Duration::ZERO)), Duration::from_millis(400));
    }

    #[test]
    fn quota_403s_are_retried_and_permission_403s_are_not() {
        let resp = |status: u16, reason: &str| HttpResponse {
            status,
            headers: vec![],
            body: serde_json::to_vec(&json!({"error": {"code": status, "message": "m",
                "errors": [{"domain": "usageLimits", "reason": reason, "message": "m"}]}}))
            .unwrap(),
        };
        assert!(retryable(&resp(403, "rateLimitExceeded")));
        assert!(retryable(&resp(403, "userRateLimitExceeded")));
        assert!(!retryable(&resp(403, "forbidden")));
        assert!(!retryable(&resp(403, "insufficientPermissions")));
        assert!(retryable(&resp(429, "rateLimitExceeded")));
        assert!(retryable(&resp(503, "backendError")));
        assert!(!retryable(&resp(404, "notFound")));
    }

    #[test]
    fn token_errors_say_what_to_fix() {
        let e = token_error(
            401,
            br#"{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}"#,
        );
        assert!(e.0.contains("Domain-wide delegation"), "{e}");
        let e = token_error(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid email or User ID"}"#,
        );
        assert!(e.0.contains("admin e-mail"), "{e}");
        let e = token_error(500, b"oops");
        assert!(e.0.contains("HTTP 500"), "{e}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let resp = |v: &str| HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), v.into())],
            body: vec![],
        };
        assert_eq!(retry_after(&resp("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&resp("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&resp("soon")), None);
    }

    #[test]
    fn keys_that_are_not_service_account_keys_are_refused() {
        assert!(ServiceAccountKey::parse("{}").is_err());
        let e = ServiceAccountKey::parse(r#"{"type":"authorized_user","client_email":"a@b","private_key":"x"}"#)
            .unwrap_err();
        assert!(e.contains("authorized_user"), "{e}");
        let e = ServiceAccountKey::parse(
            r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#,
        )
        .unwrap_err();
        assert!(e.contains("not a usable RSA key"), "{e}");
    }
}
