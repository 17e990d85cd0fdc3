//! The setup page's screens and forms.

use super::guides::{self, Guide, Value};
use crate::admin::AdminError;
use crate::console::page::{
    self, Chrome, Flash, Framed, PageError, PageResult, cookie, idp_name, redirect_with, send, when_or,
};
use crate::console::session::{CsrfToken, Form};
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rollcall_store::{Connection, DirectoryQuery, GroupQuery, IdpKind, RoleMatch, WriteContext};

/// The setup session's cookie.
pub const SETUP_COOKIE: &str = "rollcall_setup";

/// The IT admin on the setup page: a live setup session, for one organization.
#[derive(Clone)]
pub struct Visitor {
    pub link_id: String,
    pub org_id: String,
    pub return_url: Option<String>,
    /// The connection made through this link, if one was.
    pub connection_id: Option<String>,
    pub csrf: String,
    /// Changes are recorded as made by the setup link, with the browser's User-Agent.
    pub by: WriteContext,
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
}

/// The page a visitor without a working session sees: no data, what to do.
fn no_session(e: &AdminError) -> Response {
    let message = if e.status == 401 || e.status == 404 {
        "This setup session has ended (it expired, or its link was revoked). Ask the person who sent you the setup link for a new one."
            .to_string()
    } else {
        e.detail.clone()
    };
    page::error_page(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED),
        &message,
    )
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SETUP_COOKIE) else {
            return Err(page::error_page(
                StatusCode::UNAUTHORIZED,
                "Open the setup link you were sent to start. (This browser has no setup session: cookies may be blocked.)",
            ));
        };
        let session = app.admin().setup_session(&token).await.map_err(|e| no_session(&e))?;
        let csrf = crate::admin::csrf_token(&token);
        parts.extensions.insert(CsrfToken(csrf.clone()));
        Ok(Visitor {
            by: session.write_context(
                header_text(&parts.headers, "user-agent").as_deref(),
                header_text(&parts.headers, "x-request-id").as_deref(),
            ),
            link_id: session.link.id,
            org_id: session.link.org_id,
            return_url: session.link.return_url,
            connection_id: session.link.connection_id,
            csrf,
        })
    }
}

impl Visitor {
    /// A connection of the visitor's organization; 404 for any other.
    async fn connection(&self, app: &AppState, id: &str) -> Result<Connection, PageError> {
        let c = app.admin().connection(id).await?;
        if c.org_id != self.org_id {
            return Err(AdminError::not_found(format!("no SCIM connection with id \"{id}\"")).into());
        }
        Ok(c)
    }
}

fn done(to: &str, result: Result<String, String>) -> Response {
    match result {
        Ok(n) => redirect_with(to, Flash::notice(n), "/setup"),
        Err(e) => redirect_with(to, Flash::error(e), "/setup"),
    }
}

/// `GET /setup/{token}`: opens a setup link. The token leaves the address bar at once: the session
/// cookie takes its place and the browser is sent to `/setup`.
pub async fn open(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    let admin = app.admin();
    let issued = match admin.setup_sign_in(&token, crate::admin::DEFAULT_SESSION_TTL).await {
        Ok(s) => s,
        Err(e) => {
            let message = match (e.status, e.kind) {
                (410, _) => format!("{} Ask the person who sent it for a new link.", e.detail),
                (404, _) | (401, _) => {
                    "This setup link is not valid. Check that it was copied whole, or ask the person who sent it for a new one."
                        .to_string()
                }
                _ => e.detail.clone(),
            };
            return page::error_page(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::NOT_FOUND),
                &message,
            );
        }
    };
    let max_age = (issued.session.expires_us - rollcall_store::sqlite::now_us()).max(0) / 1_000_000;
    let secure = if app.scim.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Lax, not Strict: the link is opened from an e-mail or a chat, a cross-site navigation after
    // which a Strict cookie would not be sent on the redirect. Forms are protected by their token.
    let set = format!(
        "{SETUP_COOKIE}={}; Path=/setup; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        issued.token
    );
    let mut resp = Redirect::to("/setup").into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub struct GuideChoice {
    pub value: &'static str,
    pub label: &'static str,
}

pub struct ExistingConnection {
    pub id: String,
    /// Made through the link this session was opened with.
    pub this_link: bool,
    pub name: String,
    pub idp: &'static str,
    pub active: bool,
    pub status: &'static str,
    pub last_request: String,
}

#[derive(Template)]
#[template(path = "setup_home.html")]
struct HomePage {
    chrome: Chrome,
    org_name: String,
    choices: Vec<GuideChoice>,
    existing: Vec<ExistingConnection>,
    has_return: bool,
}

/// `GET /setup`: step 1, picking the identity provider (and the organization's connections, to
/// come back to).
pub async fn home(State(app): State<AppState>, headers: HeaderMap, v: Visitor) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(&v.org_id).await?;
    let connections = admin.list_connections(Some(&org.id)).await?;
    let (chrome, clear) = Framed::setup(&app, &headers, &v.csrf, format!("Connect {}", org.name)).take();
    Ok(send(
        &HomePage {
            chrome,
            org_name: org.name,
            choices: guides::GUIDES
                .iter()
                .map(|g| GuideChoice {
                    value: g.idp.as_str(),
                    label: idp_name(g.idp),
                })
                .collect(),
            existing: connections
                .iter()
                .map(|c| ExistingConnection {
                    this_link: v.connection_id.as_deref() == Some(c.id.as_str()),
                    id: c.id.clone(),
                    name: c.name.clone(),
                    idp: idp_name(c.idp),
                    active: c.status == rollcall_store::ConnectionStatus::Active,
                    status: c.status.as_str(),
                    last_request: when_or(c.last_request_us, "no request yet"),
                })
                .collect(),
            has_return: v.return_url.is_some(),
        },
        clear,
    ))
}

#[derive(Template)]
#[template(path = "setup_token.html")]
struct TokenPage {
    chrome: Chrome,
    connection_id: String,
    idp: &'static str,
    base_url: String,
    token: String,
    rotation: bool,
}

fn token_page(
    app: &AppState,
    headers: &HeaderMap,
    v: &Visitor,
    c: &Connection,
    token: String,
    rotation: bool,
) -> Response {
    let (chrome, clear) = Framed::setup(app, headers, &v.csrf, "Your base URL and token").take();
    send(
        &TokenPage {
            chrome,
            connection_id: c.id.clone(),
            idp: idp_name(c.idp),
            base_url: app.admin().scim_base_url(&c.id),
            token,
            rotation,
        },
        clear,
    )
}

#[derive(Template)]
#[template(path = "setup_unsupported.html")]
struct UnsupportedPage {
    chrome: Chrome,
    idp: &'static str,
    intro: &'static str,
    instead: &'static str,
}

/// `POST /setup/connections`: step 2, a connection for the chosen identity provider, its token
/// shown once.
pub async fn create_connection(State(app): State<AppState>, headers: HeaderMap, v: Visitor, Form(f): Form) -> Response {
    if let Err(e) = f.only(&["idp"]) {
        return done("/setup", Err(e));
    }
    let idp = match f.get("idp").map(str::parse::<IdpKind>) {
        Some(Ok(idp)) => idp,
        _ => return done("/setup", Err("Choose your identity provider.".into())),
    };
    let g = guides::guide(idp);
    if !g.supported {
        // Nothing to create: the guide says what to do instead.
        let (chrome, clear) = Framed::setup(&app, &headers, &v.csrf, idp_name(idp)).take();
        return send(
            &UnsupportedPage {
                chrome,
                idp: idp_name(idp),
                intro: g.intro,
                instead: g.instead.unwrap_or_default(),
            },
            clear,
        );
    }
    let admin = app.admin();
    let issued = match admin
        .create_connection(
            &v.by,
            &v.org_id,
            Some(&format!("{} (set up by IT)", idp_name(idp))),
            idp,
        )
        .await
    {
        Ok(i) => i,
        Err(e) => return done("/setup", Err(e.detail)),
    };
    if let Err(e) = admin.attach_setup_connection(&v.link_id, &issued.connection.id).await {
        tracing::warn!(error = %e, "recording the setup link's connection failed");
    }
    token_page(&app, &headers, &v, &issued.connection, issued.token, false)
}

pub struct GuideStep {
    pub text: &'static str,
    pub fields: Vec<GuideField>,
}

pub struct GuideField {
    pub label: &'static str,
    /// The value to copy; empty for the token (shown once, on the previous page).
    pub value: String,
    pub is_token: bool,
    pub id: String,
}

fn steps_of(g: &Guide, base_url: &str) -> Vec<GuideStep> {
    g.steps
        .iter()
        .enumerate()
        .map(|(i, s)| GuideStep {
            text: s.text,
            fields: s
                .fields
                .iter()
                .enumerate()
                .map(|(j, f)| GuideField {
                    label: f.label,
                    is_token: f.value == Value::Token,
                    value: match f.value {
                        Value::BaseUrl => base_url.to_string(),
                        Value::Token => String::new(),
                        Value::Text(t) => t.to_string(),
                    },
                    id: format!("field-{i}-{j}"),
                })
                .collect(),
        })
        .collect()
}

pub struct ArrivedUser {
    pub user_name: String,
    pub status: &'static str,
    pub active: bool,
    pub profile: Vec<(String, String)>,
    pub roles: String,
}

pub struct ArrivedGroup {
    pub name: String,
    pub members: i64,
    pub mapped_to: String,
}

pub struct RoleOption {
    pub key: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "setup_connection.html")]
struct ConnectionPage {
    chrome: Chrome,
    id: String,
    idp: &'static str,
    intro: &'static str,
    cadence: &'static str,
    steps: Vec<GuideStep>,
    base_url: String,
    active: bool,
    status: &'static str,
    token: String,
    rotating: Option<String>,
    last_request: String,
    users: Vec<ArrivedUser>,
    more_users: bool,
    groups: Vec<ArrivedGroup>,
    roles: Vec<RoleOption>,
}

/// Users and groups shown as they arrive.
const ARRIVALS: i64 = 5;

/// `GET /setup/connections/{id}`: steps 3 to 6 for one connection.
pub async fn connection(
    State(app): State<AppState>,
    headers: HeaderMap,
    v: Visitor,
    Path(id): Path<String>,
) -> PageResult {
    let c = v.connection(&app, &id).await?;
    let admin = app.admin();
    let g = guides::guide(c.idp);
    let base_url = admin.scim_base_url(&c.id);
    let users = admin
        .directory_users(
            &c.org_id,
            DirectoryQuery {
                connection_id: Some(c.id.clone()),
                limit: ARRIVALS,
                include_staging: true,
                ..Default::default()
            },
        )
        .await?;
    let (connections, mut profiles) = admin.profiles(app.scim.registry.clone(), &c.org_id).await?;
    let groups = admin
        .directory_groups(
            &c.org_id,
            GroupQuery {
                connection_id: Some(c.id.clone()),
                limit: 50,
                include_staging: true,
                ..Default::default()
            },
        )
        .await?;
    let mappings = admin.list_role_mappings(&c.id).await?;
    let roles = admin.list_roles(&c.org_id).await?;
    let (chrome, clear) = Framed::setup(&app, &headers, &v.csrf, format!("Set up {}", idp_name(c.idp))).take();
    Ok(send(
        &ConnectionPage {
            chrome,
            idp: idp_name(c.idp),
            intro: g.intro,
            cadence: g.cadence,
            steps: steps_of(g, &base_url),
            base_url,
            active: c.status == rollcall_store::ConnectionStatus::Active,
            status: c.status.as_str(),
            token: c
                .token_prefix
                .as_ref()
                .map(|p| format!("{p}…"))
                .unwrap_or_else(|| "none".into()),
            rotating: c.next_token_prefix.as_ref().map(|p| format!("{p}…")),
            last_request: when_or(c.last_request_us, "no request yet"),
            more_users: users.next_after.is_some(),
            users: users
                .items
                .iter()
                .map(|u| ArrivedUser {
                    user_name: u.doc.get("userName").and_then(|v| v.as_str()).unwrap_or("").to_string(),
                    status: u.status.as_str(),
                    active: u.status == rollcall_store::UserStatus::Active,
                    profile: profiles
                        .profile(&connections, u)
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                        .collect(),
                    roles: if u.roles.is_empty() {
                        "none yet".into()
                    } else {
                        u.roles.join(", ")
                    },
                })
                .collect(),
            groups: groups
                .items
                .into_iter()
                .map(|gr| {
                    let name = gr.display_name.clone().unwrap_or_default();
                    let mapped: Vec<String> = mappings
                        .iter()
                        .filter(|m| match &m.matches {
                            RoleMatch::GroupName(n) => n.eq_ignore_ascii_case(&name),
                            RoleMatch::GroupId(i) => *i == gr.id || Some(i) == gr.external_id.as_ref(),
                            RoleMatch::AppRole(_) => false,
                        })
                        .map(|m| m.role_key.clone())
                        .collect();
                    ArrivedGroup {
                        name,
                        members: gr.member_count,
                        mapped_to: mapped.join(", "),
                    }
                })
                .collect(),
            roles: roles
                .into_iter()
                .map(|r| RoleOption {
                    key: r.key,
                    name: r.name,
                })
                .collect(),
            id: c.id,
        },
        clear,
    ))
}

/// `POST /setup/connections/{id}/rotate`: a new token beside the current one, shown once.
pub async fn rotate(
    State(app): State<AppState>,
    headers: HeaderMap,
    v: Visitor,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = format!("/setup/connections/{id}");
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    if let Err(e) = v.connection(&app, &id).await {
        return e.into_response();
    }
    match app.admin().start_token_rotation(&v.by, &id).await {
        Ok(issued) => token_page(&app, &headers, &v, &issued.connection, issued.token, true),
        Err(e) => done(&back, Err(e.detail)),
    }
}

/// `POST /setup/connections/{id}/rotate-complete`: only the new token works from now on.
pub async fn rotate_complete(
    State(app): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = format!("/setup/connections/{id}");
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    if let Err(e) = v.connection(&app, &id).await {
        return e.into_response();
    }
    let result = app.admin().complete_token_rotation(&v.by, &id).await;
    done(
        &back,
        result
            .map(|_| "Rotation complete: only the new token works now.".to_string())
            .map_err(|e| e.detail),
    )
}

#[derive(Template)]
#[template(path = "setup_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    connection_id: String,
    group: String,
    role: String,
    effect: String,
    lines: Vec<crate::console::views::EffectLine>,
}

/// `POST /setup/connections/{id}/mappings`: maps a group that arrived to a role. The first post
/// shows what the mapping would change; the second (`confirm=yes`) saves it.
pub async fn map_group(
    State(app): State<AppState>,
    headers: HeaderMap,
    v: Visitor,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = format!("/setup/connections/{id}#groups");
    if let Err(e) = f.only(&["group", "role", "confirm"]) {
        return done(&back, Err(e));
    }
    let c = match v.connection(&app, &id).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (Some(group), Some(role)) = (f.get("group"), f.get("role")) else {
        return done(&back, Err("Choose a role for the group.".into()));
    };
    let matches = RoleMatch::GroupName(group.to_string());
    let admin = app.admin();
    if f.get("confirm") != Some("yes") {
        let (effect, lines) = match admin.preview_role_mapping(&c.id, role, matches).await {
            Ok(e) => (e.sentence(), crate::console::views::effect_lines(&e)),
            Err(e) => return done(&back, Err(e.detail)),
        };
        let (chrome, clear) = Framed::setup(&app, &headers, &v.csrf, "Confirm the mapping").take();
        return send(
            &ConfirmPage {
                chrome,
                connection_id: c.id,
                group: group.to_string(),
                role: role.to_string(),
                effect,
                lines,
            },
            clear,
        );
    }
    let result = admin.create_role_mapping(&v.by, &c.id, role, matches).await;
    done(
        &back,
        result
            .map(|m| format!("Members of \"{group}\" now get the role {}.", m.role_key))
            .map_err(|e| e.detail),
    )
}

/// `POST /setup/done`: ends the session and goes back to the application (the link's return
/// URL), or to a last page.
pub async fn finish(State(app): State<AppState>, headers: HeaderMap, v: Visitor, Form(f): Form) -> Response {
    if let Err(e) = f.only(&[]) {
        return done("/setup", Err(e));
    }
    if let Some(token) = cookie(&headers, SETUP_COOKIE)
        && let Err(e) = app.admin().end_session(&token).await
    {
        return PageError(e).into_response();
    }
    let mut resp = match &v.return_url {
        Some(url) => Redirect::to(url).into_response(),
        None => page::message_page(
            StatusCode::OK,
            "Setup is finished",
            "This session has ended. You can close this page; open a new setup link to come back.",
        ),
    };
    let clear = format!("{SETUP_COOKIE}=; Path=/setup; Max-Age=0; HttpOnly; SameSite=Lax");
    if let Ok(h) = HeaderValue::from_str(&clear) {
        resp.headers_mut().append(header::SET_COOKIE, h);
    }
    resp
}
