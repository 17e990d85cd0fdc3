//! What every page of the console and of the setup page shares: the branding, the chrome around
//! the content (header, navigation, the one-line message carried over a redirect), error pages and
//! the security headers.

use crate::admin::AdminError;
use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

/// The one-line message shown at the top of the next page after a form was sent: what was done,
/// or why nothing was. Carried over the redirect in a short-lived cookie, never holding a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Notice,
    Error,
}

impl Flash {
    pub fn notice(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Notice,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }
    pub fn is_error(&self) -> bool {
        self.kind == FlashKind::Error
    }
    /// The cookie's name under `path` (the console's or the setup page's).
    const COOKIE: &'static str = "rollcall_flash";
    /// Longest message carried, in characters.
    const MAX_CHARS: usize = 600;

    /// A `Set-Cookie` value carrying this message for the next page under `path`.
    fn cookie(&self, path: &str) -> String {
        let text: String = self.text.chars().take(Self::MAX_CHARS).collect();
        let kind = if self.is_error() { "e" } else { "n" };
        let value: String = form_urlencoded::byte_serialize(format!("{kind}{text}").as_bytes()).collect();
        format!(
            "{}={value}; Path={path}; Max-Age=60; HttpOnly; SameSite=Strict",
            Self::COOKIE
        )
    }

    /// The message carried to this request, if any, and the `Set-Cookie` that clears it.
    pub fn take(headers: &HeaderMap, path: &str) -> (Option<Flash>, Option<String>) {
        let Some(raw) = cookie(headers, Self::COOKIE) else {
            return (None, None);
        };
        let clear = format!("{}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict", Self::COOKIE);
        let decoded: String = form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let flash = match decoded.split_at_checked(1) {
            Some(("e", text)) if !text.is_empty() => Some(Flash::error(text)),
            Some(("n", text)) if !text.is_empty() => Some(Flash::notice(text)),
            _ => None,
        };
        (flash, Some(clear))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// A redirect (303, so the browser follows with GET) to `to`, carrying `flash` under `path`.
pub fn redirect_with(to: &str, flash: Flash, path: &str) -> Response {
    let mut resp = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&flash.cookie(path)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Renders a template into an HTML response (500, logged, if the template fails).
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed to render");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown; the server's log says why.",
            )
        }
    }
}

/// Renders a template with a status other than 200.
pub fn render_status<T: Template>(status: StatusCode, t: &T) -> Response {
    let mut resp = render(t);
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = status;
    }
    resp
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    product_name: &'a str,
    title: &'a str,
    message: &'a str,
}

/// A page that says what went wrong, alone (no navigation, no data).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = match status.as_u16() {
        401 | 403 => "Not allowed",
        404 => "Not found",
        410 => "This link no longer works",
        400..=499 => "The request was refused",
        _ => "Something went wrong",
    };
    message_page(status, title, message)
}

/// A page with a title and one message, alone (no navigation, no data).
pub fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        product_name: "Rollcall",
        title,
        message,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".to_string());
    let mut resp = (status, Html(html)).into_response();
    // Also when the page is made outside the console's router (by the HTTP guard).
    add_security_headers(resp.headers_mut());
    resp
}

/// An error of a page handler: shown as an error page.
pub struct PageError(pub AdminError);

impl From<AdminError> for PageError {
    fn from(e: AdminError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error_page(status, &self.0.detail)
    }
}

pub type PageResult = Result<Response, PageError>;

/// 404 for a console or setup path that names no page.
pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no page at this address.")
}

/// The Content-Security-Policy of every page: scripts, styles and images from this server only, no
/// inline script or style, no framing, forms posting only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every answer of the console and the setup page, and keeps pages
/// out of caches (they hold tenant data and, once, secrets).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    add_security_headers(resp.headers_mut());
    resp
}

fn add_security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// A timestamp in microseconds since the epoch, as shown on pages (UTC, to the second).
pub fn when(us: i64) -> String {
    let t = rollcall_webhooks::event::rfc3339(us);
    // 2026-12-04T10:11:12.123456Z -> 2026-12-04 10:11:12 UTC
    match t.split_once('T') {
        Some((date, rest)) => format!("{date} {} UTC", rest.get(..8).unwrap_or(rest)),
        None => t,
    }
}

/// [`when`] of an optional timestamp, or `never`.
pub fn when_or(us: Option<i64>, none: &str) -> String {
    us.map(when).unwrap_or_else(|| none.to_string())
}

/// The name of an identity provider as its vendor writes it.
pub fn idp_name(idp: rollcall_store::IdpKind) -> &'static str {
    use rollcall_store::IdpKind::*;
    match idp {
        Okta => "Okta",
        Entra => "Microsoft Entra ID",
        Google => "Google Workspace",
        Onelogin => "OneLogin",
        Jumpcloud => "JumpCloud",
        Ping => "PingOne",
        Generic => "Other SCIM 2.0 client",
    }
}

/// Who a console page is shown to: the API key's name, and the token its forms send back.
pub struct Signed<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
}

/// What the frame of every signed-in page shows (`base.html`).
pub struct Chrome {
    pub product_name: String,
    pub has_logo: bool,
    pub title: String,
    /// The navigation entry marked current.
    pub section: &'static str,
    /// The API key's name, on console pages; `None` on the setup page.
    pub operator: Option<String>,
    /// The token every form of the page sends back.
    pub csrf: String,
    pub flash: Option<Flash>,
    /// Where the brand in the header leads.
    pub home: &'static str,
}

/// A page ready to send: its frame's `Set-Cookie` (clearing a shown message) goes with it.
pub struct Framed {
    pub chrome: Chrome,
    clear: Option<String>,
}

impl Framed {
    /// The frame of a console page.
    pub fn console(
        app: &crate::state::AppState,
        headers: &HeaderMap,
        op: &Signed,
        title: impl Into<String>,
        section: &'static str,
    ) -> Framed {
        let (flash, clear) = Flash::take(headers, "/console");
        let b = &app.node.settings.branding;
        Framed {
            chrome: Chrome {
                product_name: b.product_name.clone(),
                has_logo: b.logo.is_some(),
                title: title.into(),
                section,
                operator: Some(op.name.to_string()),
                csrf: op.csrf.to_string(),
                flash,
                home: "/console/organizations",
            },
            clear,
        }
    }

    /// The frame of a setup page (no navigation; its own message cookie path).
    pub fn setup(app: &crate::state::AppState, headers: &HeaderMap, csrf: &str, title: impl Into<String>) -> Framed {
        let (flash, clear) = Flash::take(headers, "/setup");
        let b = &app.node.settings.branding;
        Framed {
            chrome: Chrome {
                product_name: b.product_name.clone(),
                has_logo: b.logo.is_some(),
                title: title.into(),
                section: "setup",
                operator: None,
                csrf: csrf.to_string(),
                flash,
                home: "/setup",
            },
            clear,
        }
    }

    /// Splits the frame off for the template; [`send`] takes the rest.
    pub fn take(self) -> (Chrome, Option<String>) {
        (self.chrome, self.clear)
    }
}

/// Renders a page whose frame came from [`Framed::take`].
pub fn send<T: Template>(t: &T, clear: Option<String>) -> Response {
    let mut resp = render(t);
    if let Some(c) = clear
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// After a console form: back to `to` with what was done, or with why nothing was.
pub fn done(to: &str, result: Result<String, String>) -> Response {
    match result {
        Ok(notice) => redirect_with(to, Flash::notice(notice), "/console"),
        Err(error) => redirect_with(to, Flash::error(error), "/console"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_survives_its_cookie_and_is_cleared() {
        let f = Flash::error("no organization named \"a; b=c\" <x>");
        let set = f.cookie("/console");
        let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; rollcall_flash={value}")).unwrap(),
        );
        let (got, clear) = Flash::take(&headers, "/console");
        assert_eq!(got, Some(f));
        assert!(clear.unwrap().contains("Max-Age=0"));
        assert_eq!(Flash::take(&HeaderMap::new(), "/console"), (None, None));
    }

    #[test]
    fn a_forged_flash_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("rollcall_flash=x"));
        assert_eq!(Flash::take(&headers, "/console").0, None);
    }

    #[test]
    fn times_read_as_utc_seconds() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when_or(None, "never"), "never");
    }
}
