//! Outbound HTTP for directory connectors, through the one outbound client of Rollcall
//! (`rollcall_outbound::client::Transport`: HTTPS through rustls on ring with the webpki roots,
//! plain HTTP only to loopback addresses, no redirects, answers capped in size), with a deadline per
//! request. The connector's API and token endpoint are configured by the operator, so any address
//! is allowed.

use bytes::Bytes;
use http_body_util::Full;
use rollcall_outbound::client::Transport;
use std::time::Duration;

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
    transport: Transport,
    timeout: Duration,
}

/// Whether `url` may be called: `https://`, or `http://` to a loopback address.
pub fn check_url(url: &str) -> Result<url::Url, String> {
    rollcall_outbound::client::check_scheme(url)
}

impl HttpClient {
    /// `timeout`: the longest one request may take, from connecting to reading the whole answer.
    pub fn new(timeout: Duration) -> HttpClient {
        HttpClient {
            transport: Transport::unrestricted(),
            timeout,
        }
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
        let resp = self
            .transport
            .send(req, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let headers = resp
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Ok(HttpResponse {
            status: resp.status,
            headers,
            body: resp.body.to_vec(),
        })
    }
}

/// The User-Agent of directory reads.
pub const USER_AGENT: &str = concat!("Rollcall-Directory-Sync/", env!("CARGO_PKG_VERSION"));

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
