//! How Rollcall authenticates to a target: a bearer token, HTTP Basic, or an access token from an
//! OAuth 2.0 token endpoint with the client credentials grant (RFC 6749 §4.4).
//!
//! - Secrets arrive as strings (the store seals them at rest) and live in [`Secret`], whose
//!   `Debug` says `"[redacted]"` and whose memory is wiped on drop. Nothing here logs a secret.
//! - The client authenticates to the token endpoint with `client_secret_basic` (RFC 6749 §2.3.1:
//!   the id and secret form-urlencoded, then Basic) or `client_secret_post` (both in the body).
//! - An access token is kept until shortly before `expires_in` runs out (a tenth of its lifetime,
//!   at most a minute, early), fetched once for all requests waiting at that moment, and fetched
//!   again once after a 401 from the target (a token revoked or expired early).

use crate::client::{AttemptError, ClientError, ErrorKind, RetryMode, RetryPolicy, Transport, with_retries};
use crate::profile::AuthKind;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A secret string: a token, a password, a client secret. Never printed, wiped from memory when
/// dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

/// How the client proves itself to the token endpoint (RFC 6749 §2.3.1; the names are those of
/// RFC 8414's `token_endpoint_auth_methods_supported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

/// OAuth 2.0 client credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClientCredentials {
    /// The token endpoint (`https://`, or `http://` to a loopback address).
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Space-separated scopes, when the token endpoint wants them.
    pub scope: Option<String>,
    pub client_auth: ClientAuthMethod,
}

/// How requests to a target are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// `Authorization: Basic ...`.
    Basic { username: String, password: Secret },
    /// A token from the token endpoint, sent as a bearer token.
    OAuthClientCredentials(OAuthClientCredentials),
}

impl Credentials {
    pub fn bearer(token: impl Into<String>) -> Credentials {
        Credentials::Bearer {
            token: Secret::new(token),
        }
    }

    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// The profile's name for this kind of authentication.
    pub fn kind(&self) -> AuthKind {
        match self {
            Credentials::Bearer { .. } => AuthKind::Bearer,
            Credentials::Basic { .. } => AuthKind::Basic,
            Credentials::OAuthClientCredentials(_) => AuthKind::OauthClientCredentials,
        }
    }
}

/// A token kept for reuse.
struct CachedToken {
    header: HeaderValue,
    /// When it is fetched again (before it expires); `None`: until a 401.
    refresh_at: Option<Instant>,
    generation: u64,
}

/// The `Authorization` header for one request, and which token it carries.
#[derive(Clone)]
pub struct Authorization {
    pub(crate) value: HeaderValue,
    pub(crate) generation: u64,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("value", &"[redacted]")
            .field("generation", &self.generation)
            .finish()
    }
}

/// Produces `Authorization` headers from credentials; keeps OAuth tokens until they expire.
pub struct Authenticator {
    credentials: Credentials,
    cached: tokio::sync::Mutex<Option<CachedToken>>,
    generation: AtomicU64,
    /// How many tokens the token endpoint has issued to this authenticator.
    fetched: AtomicU64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
}

/// The longest a token is used before it runs out: it is fetched again this much early (or a
/// tenth of its lifetime, whichever is less).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

impl Authenticator {
    pub fn new(credentials: Credentials) -> Authenticator {
        Authenticator {
            credentials,
            cached: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Whether a 401 is worth one more try with a fresh token.
    pub fn refreshable(&self) -> bool {
        matches!(self.credentials, Credentials::OAuthClientCredentials(_))
    }

    /// How many access tokens have been fetched so far (OAuth only).
    pub fn tokens_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The `Authorization` header for the next request.
    pub async fn authorization(
        &self,
        transport: &Transport,
        retry: &RetryPolicy,
        timeout: Duration,
    ) -> Result<Authorization, ClientError> {
        match &self.credentials {
            Credentials::Bearer { token } => Ok(Authorization {
                value: sensitive(&format!("Bearer {}", token.expose()))?,
                generation: 0,
            }),
            Credentials::Basic { username, password } => {
                let raw = Zeroizing::new(format!("{username}:{}", password.expose()));
                Ok(Authorization {
                    value: sensitive(&format!("Basic {}", STANDARD.encode(raw.as_bytes())))?,
                    generation: 0,
                })
            }
            Credentials::OAuthClientCredentials(oauth) => {
                let mut cached = self.cached.lock().await;
                if let Some(t) = cached.as_ref()
                    && t.refresh_at.is_none_or(|at| Instant::now() < at)
                {
                    return Ok(Authorization {
                        value: t.header.clone(),
                        generation: t.generation,
                    });
                }
                *cached = None;
                let (header, lifetime) = fetch_token(oauth, transport, retry, timeout).await?;
                self.fetched.fetch_add(1, Ordering::Relaxed);
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let refresh_at = lifetime.map(|l| Instant::now() + l.saturating_sub(REFRESH_MARGIN.min(l / 10)));
                *cached = Some(CachedToken {
                    header: header.clone(),
                    refresh_at,
                    generation,
                });
                Ok(Authorization {
                    value: header,
                    generation,
                })
            }
        }
    }

    /// Forgets the token of `used` (the target answered 401 to it), unless a newer one has been
    /// fetched meanwhile.
    pub async fn invalidate(&self, used: &Authorization) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| t.generation == used.generation) {
            *cached = None;
        }
    }
}

/// A header value marked sensitive (hyper leaves it out of its own debug output).
fn sensitive(v: &str) -> Result<HeaderValue, ClientError> {
    let mut h = HeaderValue::from_str(v).map_err(|_| {
        ClientError::new(
            ErrorKind::Unauthorized,
            "",
            "",
            "the credentials contain characters that cannot go in an HTTP header",
        )
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
fn form_encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// One client credentials grant at the token endpoint: the header to send and how long the token
/// lives (when the endpoint says).
async fn fetch_token(
    oauth: &OAuthClientCredentials,
    transport: &Transport,
    retry: &RetryPolicy,
    timeout: Duration,
) -> Result<(HeaderValue, Option<Duration>), ClientError> {
    let url = transport.check_url(&oauth.token_url).map_err(|e| {
        ClientError::new(
            ErrorKind::Refused,
            "POST",
            &oauth.token_url,
            &format!("the token endpoint: {e}"),
        )
    })?;
    // In a block: the serializer is not `Send` and must not live across the awaits below.
    let (body, basic) = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = oauth.scope.as_deref().filter(|s| !s.trim().is_empty()) {
            form.append_pair("scope", scope.trim());
        }
        let basic = match oauth.client_auth {
            ClientAuthMethod::ClientSecretPost => {
                form.append_pair("client_id", &oauth.client_id);
                form.append_pair("client_secret", oauth.client_secret.expose());
                None
            }
            ClientAuthMethod::ClientSecretBasic => {
                let raw = Zeroizing::new(format!(
                    "{}:{}",
                    form_encode(&oauth.client_id),
                    form_encode(oauth.client_secret.expose())
                ));
                Some(sensitive(&format!("Basic {}", STANDARD.encode(raw.as_bytes())))?)
            }
        };
        let body = Bytes::from(Zeroizing::new(form.finish()).as_bytes().to_vec());
        (body, basic)
    };
    let build = || {
        let mut b = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, crate::client::USER_AGENT);
        if let Some(h) = &basic {
            b = b.header(http::header::AUTHORIZATION, h.clone());
        }
        b.body(Full::new(body.clone())).expect("a request of valid parts")
    };
    // A token request changes nothing at the endpoint: it may be repeated after any failure.
    let answer = with_retries(retry, RetryMode::Idempotent, "POST", url.as_str(), None, || async {
        transport.send(build(), timeout).await.map_err(AttemptError::Transport)
    })
    .await
    .map_err(|e| e.about_token_endpoint())?;
    if !(200..300).contains(&answer.raw.status) {
        let mut e = ClientError::from_answer("POST", url.as_str(), &answer.raw).about_token_endpoint();
        e.attempts = answer.attempts;
        return Err(e);
    }
    let resp = answer;
    let answer: TokenAnswer = serde_json::from_slice(&resp.raw.body).map_err(|e| {
        ClientError::new(
            ErrorKind::Unauthorized,
            "POST",
            url.as_str(),
            &format!("the token endpoint's answer is not a token (RFC 6749 §5.1): {e}"),
        )
    })?;
    if let Some(t) = &answer.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(ClientError::new(
            ErrorKind::Unauthorized,
            "POST",
            url.as_str(),
            &format!("the token endpoint issued a \"{t}\" token; only bearer tokens can be used"),
        ));
    }
    let token = Secret::new(answer.access_token);
    if token.is_empty() {
        return Err(ClientError::new(
            ErrorKind::Unauthorized,
            "POST",
            url.as_str(),
            "the token endpoint issued an empty access token",
        ));
    }
    let lifetime = answer.expires_in.as_ref().and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Duration::from_secs)
    });
    Ok((sensitive(&format!("Bearer {}", token.expose()))?, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Credentials::OAuthClientCredentials(OAuthClientCredentials {
            token_url: "https://login.example.com/token".into(),
            client_id: "rollcall".into(),
            client_secret: Secret::new("s3cr3t-value"),
            scope: None,
            client_auth: ClientAuthMethod::ClientSecretBasic,
        });
        let shown = format!(
            "{c:?} {:?} {:?}",
            Credentials::bearer("tok-123"),
            Credentials::basic("u", "pw-456")
        );
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains("tok-123"), "{shown}");
        assert!(!shown.contains("pw-456"), "{shown}");
        assert!(shown.contains("rollcall"));
        let a = Authenticator::new(c);
        assert!(!format!("{a:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn kinds_and_names() {
        assert_eq!(Credentials::bearer("t").kind(), AuthKind::Bearer);
        assert_eq!(Credentials::basic("u", "p").kind(), AuthKind::Basic);
        assert_eq!(ClientAuthMethod::default().as_str(), "client_secret_basic");
        assert_eq!(
            serde_json::to_value(ClientAuthMethod::ClientSecretPost).unwrap(),
            "client_secret_post"
        );
    }

    #[tokio::test]
    async fn static_credentials_make_their_headers() {
        let transport = Transport::new(Default::default());
        let retry = RetryPolicy::default();
        let t = Duration::from_secs(1);
        let a = Authenticator::new(Credentials::bearer("abc"));
        let h = a.authorization(&transport, &retry, t).await.unwrap();
        assert_eq!(h.value.to_str().unwrap(), "Bearer abc");
        assert!(h.value.is_sensitive());
        assert!(!format!("{h:?}").contains("abc"));
        let a = Authenticator::new(Credentials::basic("Aladdin", "open sesame"));
        let h = a.authorization(&transport, &retry, t).await.unwrap();
        // RFC 7617's example.
        assert_eq!(h.value.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(!a.refreshable());
        assert!(
            Authenticator::new(Credentials::bearer("x\n"))
                .authorization(&transport, &retry, t)
                .await
                .is_err()
        );
    }

    #[test]
    fn client_secret_basic_form_encodes_first() {
        // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic.
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
