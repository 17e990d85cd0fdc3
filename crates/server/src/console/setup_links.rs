//! An organization's setup links: create one (shown once), list them, revoke one.

use super::page::{Chrome, Framed, PageResult, done, send, when, when_or};
use super::session::{Form, Operator};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use std::time::Duration;

pub struct LinkRow {
    pub id: String,
    pub token: String,
    pub status: String,
    pub usable: bool,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub connection_id: String,
    pub return_url: String,
}

#[derive(Template)]
#[template(path = "setup_links.html")]
struct LinksPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    links: Vec<LinkRow>,
    /// A link just created (shown once).
    created: Option<String>,
}

async fn page(app: &AppState, headers: &HeaderMap, op: &Operator, org_id: &str, created: Option<String>) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(org_id).await?;
    let links = admin.list_setup_links(&org.id).await?;
    let now = rollcall_store::sqlite::now_us();
    let (chrome, clear) = Framed::console(
        app,
        headers,
        &op.signed(),
        format!("Setup links of {}", org.name),
        "organizations",
    )
    .take();
    Ok(send(
        &LinksPage {
            chrome,
            links: links
                .into_iter()
                .map(|l| LinkRow {
                    status: l.status(now).as_str().to_string(),
                    usable: l.status(now) == rollcall_store::SetupLinkStatus::Active,
                    token: format!("{}…", l.token_prefix),
                    created: when(l.created_us),
                    expires: when(l.expires_us),
                    last_used: when_or(l.last_used_us, "not opened yet"),
                    connection_id: l.connection_id.unwrap_or_default(),
                    return_url: l.return_url.unwrap_or_default(),
                    id: l.id,
                })
                .collect(),
            org_id: org.id,
            org_name: org.name,
            created,
        },
        clear,
    ))
}

pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
) -> PageResult {
    page(&app, &headers, &op, &org_id, None).await
}

pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Result<Response, super::page::PageError> {
    let back = format!("/console/organizations/{org_id}/setup-links");
    if let Err(e) = f.only(&["expires_in_days", "return_url"]) {
        return Ok(done(&back, Err(e)));
    }
    let expires_in = match f.get("expires_in_days").map(str::parse::<u64>) {
        None => None,
        Some(Ok(days)) => Some(Duration::from_secs(days * 24 * 3600)),
        Some(Err(_)) => return Ok(done(&back, Err("the expiry is a whole number of days".into()))),
    };
    let issued = match app
        .admin()
        .create_setup_link(&op.by, &org_id, expires_in, f.get("return_url"))
        .await
    {
        Ok(i) => i,
        Err(e) => return Ok(done(&back, Err(e.detail))),
    };
    page(&app, &headers, &op, &org_id, Some(issued.url)).await
}

pub async fn revoke(
    State(app): State<AppState>,
    op: Operator,
    Path((org_id, link_id)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = format!("/console/organizations/{org_id}/setup-links");
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    let result = app.admin().revoke_setup_link(&op.by, &org_id, &link_id).await;
    done(
        &back,
        result
            .map(|_| "Link revoked: it no longer opens, and sessions started with it have ended.".to_string())
            .map_err(|e| e.detail),
    )
}
