//! Outbound HTTP for directory connectors: HTTPS through rustls on ring with the webpki roots (as
//! the webhook sender), plain HTTP only to loopback addresses (test fakes), a deadline per request,
//! a cap on the answer's size, and no redirects.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

/// The largest answer read (a page of 500 users with every field is well under 10 MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// An answer: status, headers (names in lower case) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Whether `url` may be called: `https://`, or `http://` to a loopback address.
pub fn check_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("\"{url}\" is not a URL: {e}"))?;
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

impl HttpClient {
    /// `timeout`: the longest one request may take, from connecting to reading the whole answer.
    pub fn new(timeout: Duration) -> HttpClient {
        let mut http = HttpConnector::new();
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
            .pool_max_idle_per_host(4)
            .build(https);
        HttpClient { client, timeout }
    }

    /// `GET url` with a bearer token.
    pub async fn get_bearer(&self, url: &str, token: String) -> Result<HttpResponse, String> {
        let req = axum::http::Request::get(check_url(url)?.as_str())
            .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(axum::http::header::ACCEPT, "application/json")
            .header(axum::http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("building the request: {e}"))?;
        self.send(req).await
    }

    /// `POST url` with a form body.
    pub async fn post_form(&self, url: &str, form: String) -> Result<HttpResponse, String> {
        let req = axum::http::Request::post(check_url(url)?.as_str())
            .header(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(axum::http::header::ACCEPT, "application/json")
            .header(axum::http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| format!("building the request: {e}"))?;
        self.send(req).await
    }

    async fn send(&self, req: axum::http::Request<Full<Bytes>>) -> Result<HttpResponse, String> {
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| describe(&e))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes()
                .to_vec();
            Ok(HttpResponse { status, headers, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }
}

/// The User-Agent of directory reads.
pub const USER_AGENT: &str = concat!("Rollcall-Directory-Sync/", env!("CARGO_PKG_VERSION"));

/// An error with its causes.
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

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://admin.googleapis.com").is_ok());
        assert!(check_url("http://127.0.0.1:9000/token").is_ok());
        assert!(check_url("http://localhost:9000").is_ok());
        assert!(check_url("http://[::1]:9000").is_ok());
        assert!(check_url("http://example.com").is_err());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("not a url").is_err());
    }
}
