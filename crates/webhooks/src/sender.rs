//! One delivery: a signed POST to an endpoint, with a deadline, no redirects, and connections only
//! to addresses the [`NetworkPolicy`] allows.

use crate::signing;
use crate::ssrf::{GuardedResolver, NetworkPolicy};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rollcall_store::webhooks::{MAX_EXCERPT_BYTES, truncate_utf8};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of a response body is read (the excerpt keeps the first [`MAX_EXCERPT_BYTES`]).
const MAX_RESPONSE_READ: usize = 16 * 1024;

/// The message to send.
pub struct Message<'a> {
    /// `webhook-id`: the same for every attempt at one event (the event id), so receivers can
    /// drop duplicates.
    pub id: &'a str,
    pub body: &'a [u8],
    /// Signing secrets (`whsec_...`): one signature each.
    pub secrets: &'a [&'a str],
}

/// What came of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// A 2xx answer.
    pub succeeded: bool,
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub response_excerpt: Option<String>,
    /// Why the attempt failed when there was no answer, or what was wrong with it.
    pub error: Option<String>,
}

type HttpsClient = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Sends deliveries; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Sender {
    client: HttpsClient,
    policy: Arc<NetworkPolicy>,
    timeout: Duration,
}

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

impl Sender {
    /// `timeout`: the longest an attempt may take, from connecting to reading the answer.
    pub fn new(policy: Arc<NetworkPolicy>, timeout: Duration) -> Sender {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy.clone()));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .build(https);
        Sender {
            client,
            policy,
            timeout,
        }
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// Sends `msg` to `url` once. A 2xx answer is success; anything else (redirects included: they
    /// are not followed) is a failure to retry.
    pub async fn send(&self, url: &str, msg: &Message<'_>) -> Outcome {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.exchange(url, msg)).await;
        let latency = started.elapsed();
        match result {
            Err(_) => Outcome {
                succeeded: false,
                status_code: None,
                latency,
                response_excerpt: None,
                error: Some(format!("no answer within {} ms", self.timeout.as_millis())),
            },
            Ok(Err(error)) => Outcome {
                succeeded: false,
                status_code: None,
                latency,
                response_excerpt: None,
                error: Some(error),
            },
            Ok(Ok((status, excerpt))) => {
                let succeeded = (200..300).contains(&status);
                let error = match status {
                    _ if succeeded => None,
                    300..=399 => Some(format!("HTTP {status}: redirects are not followed")),
                    _ => Some(format!("HTTP {status}")),
                };
                Outcome {
                    succeeded,
                    status_code: Some(status),
                    latency,
                    response_excerpt: excerpt,
                    error,
                }
            }
        }
    }

    async fn exchange(&self, url: &str, msg: &Message<'_>) -> Result<(u16, Option<String>), String> {
        // Addresses written in the URL do not pass through the resolver: check them here.
        let parsed = self.policy.check_url_form(url)?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = signing::signature_header(msg.secrets, msg.id, timestamp, msg.body);
        let req = http::Request::post(parsed.as_str())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("Rollcall-Webhooks/", env!("CARGO_PKG_VERSION"))),
            )
            .header("webhook-id", msg.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::copy_from_slice(msg.body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let resp = self.client.request(req).await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        // The answer is read (up to a limit) so the connection can be reused; a body that fails
        // or is too long still leaves its status.
        let excerpt = match Limited::new(resp.into_body(), MAX_RESPONSE_READ).collect().await {
            Ok(body) => {
                let bytes = body.to_bytes();
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_EXCERPT_BYTES + 4)]).into_owned();
                Some(truncate_utf8(&text, MAX_EXCERPT_BYTES).to_string()).filter(|s| !s.is_empty())
            }
            Err(_) => None,
        };
        Ok((status, excerpt))
    }
}

/// An error with its causes, outermost first ("client error (Connect): ...: refused address").
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn loopback_sender() -> Sender {
        let policy = NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        Sender::new(Arc::new(policy), Duration::from_secs(5))
    }

    /// `https://` goes through rustls (on ring, with no process-wide provider installed): a peer that
    /// does not speak TLS fails the handshake, reported as the attempt's error, with no answer.
    #[tokio::test]
    async fn https_targets_go_through_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        let out = loopback_sender()
            .send(
                &format!("https://127.0.0.1:{port}/hook"),
                &Message {
                    id: "m",
                    body: b"{}",
                    secrets: &[],
                },
            )
            .await;
        assert!(!out.succeeded);
        assert_eq!(out.status_code, None);
        let error = out.error.unwrap();
        assert!(
            error.to_lowercase().contains("corrupt") || error.contains("tls"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn refused_and_unreachable_addresses_are_errors_not_answers() {
        let out = Sender::new(Arc::new(NetworkPolicy::default()), Duration::from_secs(5))
            .send(
                "http://127.0.0.1:9/",
                &Message {
                    id: "m",
                    body: b"{}",
                    secrets: &[],
                },
            )
            .await;
        assert!(out.error.unwrap().contains("loopback"));
        // Nothing listens on port 9 (discard) here: the connection is refused.
        let out = loopback_sender()
            .send(
                "http://127.0.0.1:9/",
                &Message {
                    id: "m",
                    body: b"{}",
                    secrets: &[],
                },
            )
            .await;
        assert!(!out.succeeded && out.status_code.is_none() && out.error.is_some());
    }
}
