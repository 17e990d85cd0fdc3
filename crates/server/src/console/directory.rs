//! The directory of an organization, read-only: users with status and effective roles (filters,
//! pages), a user's page (its SCIM attributes as JSON, groups, roles and its own audit history),
//! groups with member counts, and a group's members a page at a time.

use super::page::{Chrome, Framed, PageResult, send, when};
use super::session::Operator;
use super::views::{EventRow, event_rows};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use rollcall_store::{DirectoryQuery, EventQuery, GroupQuery, UserStatus};
use serde::Deserialize;

/// Rows per page.
const PAGE: i64 = 50;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub struct UserRow {
    pub id: String,
    pub user_name: String,
    pub display: String,
    pub status: &'static str,
    pub active: bool,
    pub roles: String,
    pub workspaces: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    filter_text: String,
    filter_field: String,
    status: String,
    users: Vec<UserRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// `email`, `user_name`, `role`, `workspace` or `external_id`.
    field: Option<String>,
    q: Option<String>,
    status: Option<String>,
    after: Option<i64>,
}

fn display_of(doc: &serde_json::Value) -> String {
    doc.get("displayName")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| {
            let name = doc.get("name")?;
            let given = name.get("givenName").and_then(|v| v.as_str()).unwrap_or("");
            let family = name.get("familyName").and_then(|v| v.as_str()).unwrap_or("");
            let full = format!("{given} {family}").trim().to_string();
            (!full.is_empty()).then_some(full)
        })
        .unwrap_or_default()
}

fn user_name_of(doc: &serde_json::Value) -> String {
    doc.get("userName").and_then(|v| v.as_str()).unwrap_or("").to_string()
}

pub async fn users(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
    Query(uq): Query<UsersQuery>,
) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(&org_id).await?;
    let field = uq.field.unwrap_or_else(|| "email".into());
    let text = uq.q.unwrap_or_default();
    let status_text = uq.status.unwrap_or_default();
    let mut query = DirectoryQuery {
        after_pk: uq.after.unwrap_or(0),
        limit: PAGE,
        include_staging: true,
        ..Default::default()
    };
    if !status_text.is_empty() {
        query.status = Some(
            status_text
                .parse::<UserStatus>()
                .map_err(|_| crate::admin::AdminError::new(400, format!("unknown status \"{status_text}\"")))?,
        );
    }
    if !text.trim().is_empty() {
        let t = Some(text.trim().to_string());
        match field.as_str() {
            "email" => query.email = t,
            "user_name" => query.user_name = t,
            "role" => query.role = t,
            "workspace" => query.workspace = t,
            "external_id" => query.external_id = t,
            other => {
                return Err(crate::admin::AdminError::new(400, format!("unknown filter field \"{other}\"")).into());
            }
        }
    }
    let page = admin.directory_users(&org.id, query).await?;
    let (chrome, clear) = Framed::console(
        &app,
        &headers,
        &op.signed(),
        format!("Users of {}", org.name),
        "organizations",
    )
    .take();
    Ok(send(
        &UsersPage {
            chrome,
            next: page.next_after.map(|pk| {
                format!(
                    "/console/organizations/{}/users?field={}&q={}&status={}&after={pk}",
                    org.id,
                    enc(&field),
                    enc(&text),
                    enc(&status_text)
                )
            }),
            users: page
                .items
                .into_iter()
                .map(|u| UserRow {
                    user_name: user_name_of(&u.doc),
                    display: display_of(&u.doc),
                    active: u.status == UserStatus::Active,
                    status: u.status.as_str(),
                    roles: u.roles.join(", "),
                    workspaces: u.workspaces.join(", "),
                    id: u.id,
                })
                .collect(),
            org_id: org.id,
            org_name: org.name,
            filter_text: text,
            filter_field: field,
            status: status_text,
        },
        clear,
    ))
}

pub struct GroupRef {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    id: String,
    user_name: String,
    display: String,
    status: &'static str,
    active: bool,
    connection_id: String,
    external_id: String,
    roles: Vec<String>,
    workspaces: Vec<String>,
    groups: Vec<GroupRef>,
    json: String,
    created: String,
    modified: String,
    history: Vec<EventRow>,
}

pub async fn user(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path((org_id, user_id)): Path<(String, String)>,
) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(&org_id).await?;
    let u = admin.directory_user(&org.id, &user_id).await?;
    let history = admin
        .events(&EventQuery {
            limit: 100,
            org_id: Some(org.id.clone()),
            resource_id: Some(u.id.clone()),
            ..Default::default()
        })
        .await?;
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), user_name_of(&u.doc), "organizations").take();
    Ok(send(
        &UserPage {
            chrome,
            user_name: user_name_of(&u.doc),
            display: display_of(&u.doc),
            status: u.status.as_str(),
            active: u.status == UserStatus::Active,
            connection_id: u.connection_id.clone(),
            external_id: u.external_id.clone().unwrap_or_default(),
            roles: u.roles.clone(),
            workspaces: u.workspaces.clone(),
            groups: u
                .groups
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|g| GroupRef {
                    id: g.id,
                    name: g.display_name.unwrap_or_default(),
                })
                .collect(),
            json: serde_json::to_string_pretty(&u.doc).unwrap_or_default(),
            created: when(u.created_us),
            modified: when(u.modified_us),
            history: event_rows(history.events),
            id: u.id,
            org_id: org.id,
            org_name: org.name,
        },
        clear,
    ))
}

pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub members: i64,
    pub external_id: String,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    q: String,
    groups: Vec<GroupRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsQuery {
    q: Option<String>,
    after: Option<i64>,
}

pub async fn groups(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
    Query(gq): Query<GroupsQuery>,
) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(&org_id).await?;
    let q = gq.q.unwrap_or_default();
    let page = admin
        .directory_groups(
            &org.id,
            GroupQuery {
                display_name: (!q.trim().is_empty()).then(|| q.trim().to_string()),
                after_pk: gq.after.unwrap_or(0),
                limit: PAGE,
                include_staging: true,
                ..Default::default()
            },
        )
        .await?;
    let (chrome, clear) = Framed::console(
        &app,
        &headers,
        &op.signed(),
        format!("Groups of {}", org.name),
        "organizations",
    )
    .take();
    Ok(send(
        &GroupsPage {
            chrome,
            next: page
                .next_after
                .map(|pk| format!("/console/organizations/{}/groups?q={}&after={pk}", org.id, enc(&q))),
            groups: page
                .items
                .into_iter()
                .map(|g| GroupRow {
                    id: g.id,
                    name: g.display_name.unwrap_or_default(),
                    members: g.member_count,
                    external_id: g.external_id.unwrap_or_default(),
                })
                .collect(),
            org_id: org.id,
            org_name: org.name,
            q,
        },
        clear,
    ))
}

pub struct MemberRow {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    id: String,
    name: String,
    external_id: String,
    member_count: i64,
    members: Vec<MemberRow>,
    next: Option<String>,
    history: Vec<EventRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    after: Option<i64>,
}

pub async fn group(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path((org_id, group_id)): Path<(String, String)>,
    Query(mq): Query<MembersQuery>,
) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(&org_id).await?;
    let g = admin.directory_group(&org.id, &group_id).await?;
    let members = admin
        .directory_group_members(&org.id, &g.id, mq.after.unwrap_or(0), PAGE)
        .await?;
    let history = admin
        .events(&EventQuery {
            limit: 100,
            org_id: Some(org.id.clone()),
            resource_id: Some(g.id.clone()),
            ..Default::default()
        })
        .await?;
    let name = g.display_name.clone().unwrap_or_default();
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), name.clone(), "organizations").take();
    Ok(send(
        &GroupPage {
            chrome,
            next: members
                .next_after
                .map(|pk| format!("/console/organizations/{}/groups/{}?after={pk}", org.id, g.id)),
            members: members
                .items
                .into_iter()
                .map(|m| MemberRow {
                    id: m.id,
                    kind: m.kind,
                    name: m.name.unwrap_or_default(),
                    status: m.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
                })
                .collect(),
            history: event_rows(history.events),
            external_id: g.external_id.unwrap_or_default(),
            member_count: g.member_count,
            id: g.id,
            name,
            org_id: org.id,
            org_name: org.name,
        },
        clear,
    ))
}
