//! Organizations: the list (search, pages), creating, renaming and deleting one, and an
//! organization's page (its connections, roles, workspaces, protected users and setup links).

use super::page::{Chrome, Flash, Framed, PageError, PageResult, done, send, when};
use super::session::{Form, Operator};
use super::targets::{Draft, TargetsSection};
use super::views::{ConnectionRow, IdpOption, idp_options};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Organizations per page.
const PAGE: i64 = 50;

pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "orgs.html")]
struct OrgsPage {
    chrome: Chrome,
    q: String,
    orgs: Vec<OrgRow>,
    next: Option<String>,
    first_page: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    q: Option<String>,
    after: Option<String>,
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let admin = app.admin();
    let q = query.q.unwrap_or_default();
    let after = query.after.filter(|a| !a.is_empty());
    let (orgs, next) = if q.trim().is_empty() {
        admin.list_organizations(after.as_deref(), PAGE).await?
    } else {
        admin.search_organizations(&q, after.as_deref(), PAGE).await?
    };
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), "Organizations", "organizations").take();
    Ok(send(
        &OrgsPage {
            chrome,
            next: next.map(|id| format!("/console/organizations?q={}&after={}", url_encode(&q), url_encode(&id))),
            first_page: after.is_none(),
            q,
            orgs: orgs
                .into_iter()
                .map(|o| OrgRow {
                    created: when(o.created_us),
                    id: o.id,
                    name: o.name,
                })
                .collect(),
        },
        clear,
    ))
}

pub async fn create(State(app): State<AppState>, op: Operator, Form(f): Form) -> Response {
    if let Err(e) = f.only(&["name"]) {
        return done("/console/organizations", Err(e));
    }
    match app
        .admin()
        .create_organization(&op.by, f.get("name").unwrap_or(""))
        .await
    {
        Ok(org) => done(
            &format!("/console/organizations/{}", org.id),
            Ok(format!("Organization \"{}\" created.", org.name)),
        ),
        Err(e) => done("/console/organizations", Err(e.detail)),
    }
}

pub struct RoleRow {
    pub id: String,
    pub key: String,
    pub name: String,
    pub description: String,
}

pub struct WorkspaceRow {
    pub id: String,
    pub key: String,
    pub name: String,
    /// The group it was created for, or empty.
    pub group: String,
    pub default: bool,
}

#[derive(Template)]
#[template(path = "org.html")]
struct OrgPage {
    chrome: Chrome,
    id: String,
    name: String,
    created: String,
    connections: Vec<ConnectionRow>,
    roles: Vec<RoleRow>,
    workspaces: Vec<WorkspaceRow>,
    auto_create: bool,
    protected: Vec<String>,
    idps: Vec<IdpOption>,
    targets: TargetsSection,
}

pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
) -> PageResult {
    org_page_with(&app, &headers, &op, &org_id, None).await
}

/// The organization's page again after the form adding a provisioning target was refused: what
/// was typed (but the credentials), and why nothing was created (422).
pub async fn refused_target(
    app: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    org_id: &str,
    draft: Draft,
    why: String,
) -> Response {
    match org_page_with(app, headers, op, org_id, Some((draft, why))).await {
        Ok(mut resp) => {
            if resp.status() == StatusCode::OK {
                *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn org_page_with(
    app: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    org_id: &str,
    refused: Option<(Draft, String)>,
) -> Result<Response, PageError> {
    let admin = app.admin();
    let org = admin.organization(org_id).await?;
    let connections = admin.list_connections(Some(&org.id)).await?;
    let roles = admin.list_roles(&org.id).await?;
    let workspaces = admin.list_workspaces(&org.id).await?;
    let ws_settings = admin.workspace_settings(&org.id).await?;
    let protected = admin.list_protected_users(&org.id).await?;
    let (draft, why) = match refused {
        Some((d, w)) => (Some(d), Some(w)),
        None => (None, None),
    };
    let targets = super::targets::section(&admin, &org.id, draft).await?;
    let (mut chrome, clear) = Framed::console(app, headers, &op.signed(), org.name.clone(), "organizations").take();
    if let Some(why) = why {
        chrome.flash = Some(Flash::error(why));
    }
    Ok(send(
        &OrgPage {
            chrome,
            created: when(org.created_us),
            id: org.id,
            name: org.name,
            connections: connections.iter().map(ConnectionRow::of).collect(),
            roles: roles
                .into_iter()
                .map(|r| RoleRow {
                    id: r.id,
                    key: r.key,
                    name: r.name,
                    description: r.description.unwrap_or_default(),
                })
                .collect(),
            workspaces: workspaces
                .into_iter()
                .map(|w| WorkspaceRow {
                    default: ws_settings.default_workspace_id.as_deref() == Some(w.id.as_str()),
                    group: w.group.map(|g| g.group_id).unwrap_or_default(),
                    id: w.id,
                    key: w.key,
                    name: w.name,
                })
                .collect(),
            auto_create: ws_settings.auto_create,
            protected: protected.into_iter().map(|p| p.email).collect(),
            idps: idp_options(),
            targets,
        },
        clear,
    ))
}

fn org_page(org_id: &str) -> String {
    format!("/console/organizations/{org_id}")
}

pub async fn rename(State(app): State<AppState>, op: Operator, Path(org_id): Path<String>, Form(f): Form) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["name"]) {
        return done(&back, Err(e));
    }
    let result = app
        .admin()
        .rename_organization(&op.by, &org_id, f.get("name").unwrap_or(""))
        .await;
    done(
        &back,
        result
            .map(|o| format!("Renamed to \"{}\".", o.name))
            .map_err(|e| e.detail),
    )
}

pub async fn delete(State(app): State<AppState>, op: Operator, Path(org_id): Path<String>, Form(f): Form) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["confirm"]) {
        return done(&back, Err(e));
    }
    let Some(confirm) = f.get("confirm") else {
        return done(&back, Err("Type the organization's name to confirm.".into()));
    };
    match app.admin().delete_organization(&op.by, &org_id, Some(confirm)).await {
        Ok(()) => done(
            "/console/organizations",
            Ok(format!("Organization \"{confirm}\" and everything in it deleted.")),
        ),
        Err(e) => done(&back, Err(e.detail)),
    }
}

pub async fn create_role(
    State(app): State<AppState>,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["key", "name", "description"]) {
        return done(&back, Err(e));
    }
    let result = app
        .admin()
        .create_role(
            &op.by,
            &org_id,
            f.get("key").unwrap_or(""),
            f.get("name"),
            f.get("description"),
        )
        .await;
    done(
        &back,
        result
            .map(|r| format!("Role \"{}\" created.", r.key))
            .map_err(|e| e.detail),
    )
}

pub async fn delete_role(
    State(app): State<AppState>,
    op: Operator,
    Path((org_id, role_id)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    let result = app.admin().delete_role(&op.by, &org_id, &role_id).await;
    done(
        &back,
        result.map(|()| "Role deleted.".to_string()).map_err(|e| e.detail),
    )
}

pub async fn create_workspace(
    State(app): State<AppState>,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["key", "name"]) {
        return done(&back, Err(e));
    }
    let result = app
        .admin()
        .create_workspace(&op.by, &org_id, f.get("key").unwrap_or(""), f.get("name"))
        .await;
    done(
        &back,
        result
            .map(|w| format!("Workspace \"{}\" created.", w.key))
            .map_err(|e| e.detail),
    )
}

pub async fn delete_workspace(
    State(app): State<AppState>,
    op: Operator,
    Path((org_id, workspace_id)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    let result = app.admin().delete_workspace(&op.by, &org_id, &workspace_id).await;
    done(
        &back,
        result.map(|()| "Workspace deleted.".to_string()).map_err(|e| e.detail),
    )
}

/// The default workspace (empty: none) and whether every group gets a workspace.
pub async fn set_workspace_settings(
    State(app): State<AppState>,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["default_workspace", "auto_create"]) {
        return done(&back, Err(e));
    }
    let default = f.get("default_workspace").filter(|d| !d.is_empty());
    let auto_create = f.get("auto_create") == Some("on");
    let result = app
        .admin()
        .set_workspace_settings(&op.by, &org_id, Some(default), Some(auto_create))
        .await;
    done(
        &back,
        result
            .map(|s| {
                format!(
                    "Default workspace: {}; a workspace for every group: {}.",
                    s.default_workspace_key.as_deref().unwrap_or("none"),
                    if s.auto_create { "on" } else { "off" }
                )
            })
            .map_err(|e| e.detail),
    )
}

pub async fn add_protected(
    State(app): State<AppState>,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["email"]) {
        return done(&back, Err(e));
    }
    let result = app
        .admin()
        .add_protected_user(&op.by, &org_id, f.get("email").unwrap_or(""))
        .await;
    done(
        &back,
        result
            .map(|p| format!("{} is protected: SCIM cannot deactivate or delete it.", p.email))
            .map_err(|e| e.detail),
    )
}

pub async fn remove_protected(
    State(app): State<AppState>,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = org_page(&org_id);
    if let Err(e) = f.only(&["email"]) {
        return done(&back, Err(e));
    }
    let email = f.get("email").unwrap_or("").to_string();
    let result = app.admin().remove_protected_user(&op.by, &org_id, &email).await;
    done(
        &back,
        result
            .map(|()| format!("{email} is no longer protected."))
            .map_err(|e| e.detail),
    )
}
