//! Signing in to the console and the checks every page makes: the session cookie, the operator it
//! belongs to, and the CSRF token every form must carry.
//!
//! An operator signs in with an API key (`rollcall api-key create`); the key is exchanged for a
//! session token ([`crate::admin::Admin::console_sign_in`]) kept in an HttpOnly, SameSite=Strict
//! cookie scoped to `/console` (Secure when the public URL is https). The store keeps only the
//! token's hash; the session ends at sign-out, at its expiry, or when its API key is revoked.

use super::page::{self, Flash, PageError, cookie, redirect_with, render};
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rollcall_store::WriteContext;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The console session's cookie.
pub const SESSION_COOKIE: &str = "rollcall_console";
/// The sign-in form's own CSRF cookie (double submit: before a session exists, the form's hidden
/// field must equal this cookie, so another site cannot sign a browser in to its own key).
const SIGN_IN_COOKIE: &str = "rollcall_sign_in";
/// Longest form body accepted by a page, in bytes.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// Whether two tokens are equal, compared in constant time.
pub(crate) fn same(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.trim().as_bytes()))
}

/// A form's CSRF token, put in the request by the extractor that authenticated it
/// ([`Operator`], or the setup page's visitor) and checked by [`Form`].
#[derive(Clone)]
pub struct CsrfToken(pub String);

/// The operator a console request is made by: a live session.
#[derive(Clone)]
pub struct Operator {
    pub key_id: String,
    pub key_name: String,
    /// The token every form of the page must send back (field `csrf`).
    pub csrf: String,
    /// The context changes are made in: the API key behind the session, with the request's
    /// User-Agent and id (recorded with the events).
    pub by: WriteContext,
}

impl Operator {
    /// What the page frame shows of the operator.
    pub fn signed(&self) -> super::page::Signed<'_> {
        super::page::Signed {
            name: &self.key_name,
            csrf: &self.csrf,
        }
    }
}

/// `Set-Cookie` attributes: `Secure` when the service is reached over https.
fn secure(app: &AppState) -> &'static str {
    if app.scim.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// Where to go back to after signing in: a console page, never another site.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console/") && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/console/organizations".to_string(),
    }
}

fn to_sign_in(parts: &Parts) -> Response {
    // The router is nested under /console: the address as the browser asked for it.
    let uri = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map(|o| &o.0)
        .unwrap_or(&parts.uri);
    let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console");
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Redirect::to(&format!("/console/sign-in?next={next}")).into_response()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in(parts));
        };
        let admin = app.admin();
        let session = match admin.console_session(&token).await {
            Ok(s) => s,
            Err(e) if matches!(e.status, 401 | 404 | 410) => return Err(to_sign_in(parts)),
            Err(e) => return Err(PageError(e).into_response()),
        };
        let csrf = crate::admin::csrf_token(&token);
        parts.extensions.insert(CsrfToken(csrf.clone()));
        Ok(Operator {
            by: session.write_context(
                header_text(&parts.headers, "user-agent").as_deref(),
                header_text(&parts.headers, "x-request-id").as_deref(),
            ),
            key_id: session.api_key_id,
            key_name: session.api_key_name,
            csrf,
        })
    }
}

/// The fields of a form sent by a page, after its CSRF token was checked.
pub struct Form(pub Fields);

/// A form's fields in order (a field may repeat: checkboxes, multiple selects).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
    /// Every non-blank value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
    /// The value of a field the form requires.
    pub fn required(&self, name: &str, label: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{label} is required"))
    }
    /// Refuses fields the form does not have.
    pub fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("the form sent an unknown field \"{k}\"")),
            None => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Response> {
        let Some(CsrfToken(expected)) = req.extensions().get::<CsrfToken>().cloned() else {
            tracing::error!("a page form was read without an authenticated visitor");
            return Err(page::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The form could not be checked.",
            ));
        };
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(page::error_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "This address takes forms sent by the console's pages.",
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| page::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
        let presented = pairs
            .iter()
            .position(|(k, _)| k == "csrf")
            .map(|i| pairs.remove(i).1)
            .unwrap_or_default();
        if !same(&expected, &presented) {
            return Err(page::error_page(
                StatusCode::FORBIDDEN,
                "The form is out of date or was not sent by this page. Reload the page and try again.",
            ));
        }
        Ok(Form(Fields(pairs)))
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    product_name: String,
    has_logo: bool,
    csrf: String,
    next: String,
    flash: Option<Flash>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInQuery {
    next: Option<String>,
}

/// The sign-in page: one field, the API key.
pub async fn sign_in_page(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<SignInQuery>) -> Response {
    let (flash, clear) = Flash::take(&headers, "/console");
    let csrf = crate::tokens::random_token();
    let branding = &app.node.settings.branding;
    let mut resp = render(&SignInPage {
        product_name: branding.product_name.clone(),
        has_logo: branding.logo.is_some(),
        csrf: csrf.clone(),
        next: local_next(q.next.as_deref()),
        flash,
    });
    let set = format!(
        "{SIGN_IN_COOKIE}={csrf}; Path=/console/sign-in; Max-Age=3600; HttpOnly; SameSite=Strict{}",
        secure(&app)
    );
    for c in [Some(set), clear].into_iter().flatten() {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Exchanges an API key for a session.
pub async fn sign_in(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&expected, &field("csrf")) {
        return redirect_with(
            "/console/sign-in",
            Flash::error("The sign-in form was out of date; please sign in again."),
            "/console",
        );
    }
    let next = local_next(Some(&field("next")));
    let key = field("api_key");
    if key.is_empty() {
        return redirect_with(
            &format!(
                "/console/sign-in?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ),
            Flash::error("Enter an operator API key (rc_key_...)."),
            "/console",
        );
    }
    match app
        .admin()
        .console_sign_in(&key, crate::admin::DEFAULT_SESSION_TTL)
        .await
    {
        Ok(session) => {
            let mut resp = Redirect::to(&next).into_response();
            let max_age = (session.session.expires_us - rollcall_store::sqlite::now_us()).max(0) / 1_000_000;
            let set = format!(
                "{SESSION_COOKIE}={}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
                session.token,
                secure(&app)
            );
            let clear = format!("{SIGN_IN_COOKIE}=; Path=/console/sign-in; Max-Age=0; HttpOnly; SameSite=Strict");
            for c in [set, clear] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        }
        Err(e) if matches!(e.status, 401 | 403 | 404) => redirect_with(
            "/console/sign-in",
            Flash::error("That API key is not valid (unknown or revoked). Create one with `rollcall api-key create`."),
            "/console",
        ),
        Err(e) => PageError(e).into_response(),
    }
}

/// Ends the session.
pub async fn sign_out(State(app): State<AppState>, headers: HeaderMap, _op: Operator, _form: Form) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = app.admin().end_session(&token).await
    {
        return PageError(e).into_response();
    }
    let mut resp = redirect_with("/console/sign-in", Flash::notice("Signed out."), "/console");
    let clear = format!("{SESSION_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(local_next(Some("/console/events?type=a")), "/console/events?type=a");
        assert_eq!(local_next(Some("https://evil.example/")), "/console/organizations");
        assert_eq!(local_next(Some("//evil.example/console/")), "/console/organizations");
        assert_eq!(local_next(Some("/console/\\evil")), "/console/organizations");
        assert_eq!(local_next(None), "/console/organizations");
    }

    #[test]
    fn fields() {
        let f = Fields(vec![
            ("name".into(), "  a  ".into()),
            ("role".into(), "x".into()),
            ("role".into(), "".into()),
            ("role".into(), "y".into()),
        ]);
        assert_eq!(f.get("name"), Some("a"));
        assert_eq!(f.all("role"), vec!["x", "y"]);
        assert!(
            f.required("missing", "A name")
                .unwrap_err()
                .contains("A name is required")
        );
        assert!(f.only(&["name", "role"]).is_ok());
        assert!(f.only(&["name"]).unwrap_err().contains("\"role\""));
    }
}
