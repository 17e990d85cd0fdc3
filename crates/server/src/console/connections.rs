//! A SCIM connection's page: its base URL and tokens (rotation start / complete / cancel, the new
//! token shown once), status, debug logging, policy ("what to sync"), role mappings, default roles
//! its guard against mass deprovisioning (state, held events, release / discard, settings) and its
//! request log; and creating a connection.

use super::page::{Chrome, Framed, PageResult, done, idp_name, send, when, when_or};
use super::session::{Fields, Form, Operator};
use super::views::{ConnectionRow, IdpOption, idp_options};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rollcall_store::{Connection, ConnectionPolicy, ConnectionStatus, ConnectionUpdate, IdpKind, OnDelete, RoleMatch};
use std::collections::BTreeMap;

/// Request log entries shown on the page.
const LOG_ROWS: i64 = 50;
/// Held events shown on the page.
const HELD_ROWS: i64 = 50;

/// The page that shows a new token, once.
#[derive(Template)]
#[template(path = "token.html")]
struct TokenPage {
    chrome: Chrome,
    connection_id: String,
    connection_name: String,
    org_id: String,
    base_url: String,
    token: String,
    /// What was done: created, rotation started, replaced.
    what: String,
}

fn token_page(
    app: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    c: &Connection,
    token: String,
    what: &str,
) -> Response {
    let (chrome, clear) = Framed::console(
        app,
        headers,
        &op.signed(),
        format!("Token for {}", c.name),
        "organizations",
    )
    .take();
    send(
        &TokenPage {
            chrome,
            connection_id: c.id.clone(),
            connection_name: c.name.clone(),
            org_id: c.org_id.clone(),
            base_url: app.admin().scim_base_url(&c.id),
            token,
            what: what.to_string(),
        },
        clear,
    )
}

pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = format!("/console/organizations/{org_id}");
    if let Err(e) = f.only(&["idp", "name"]) {
        return done(&back, Err(e));
    }
    let idp = match f.get("idp").unwrap_or("generic").parse::<IdpKind>() {
        Ok(i) => i,
        Err(e) => return done(&back, Err(e)),
    };
    match app.admin().create_connection(&op.by, &org_id, f.get("name"), idp).await {
        Ok(issued) => token_page(&app, &headers, &op, &issued.connection, issued.token, "created"),
        Err(e) => done(&back, Err(e.detail)),
    }
}

/// `POST /console/organizations/{org_id}/google-workspace-connections`: a Google Workspace
/// connection from the organization page's form (the service account key pasted as JSON,
/// organizational units and groups one per line, the interval in minutes). On success the
/// connection's page, where its first sync shows; otherwise back to the organization with why.
pub async fn create_google_workspace(
    State(app): State<AppState>,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = format!("/console/organizations/{org_id}");
    if let Err(e) = f.only(&[
        "name",
        "admin_email",
        "customer",
        "credentials",
        "org_units",
        "groups",
        "interval_minutes",
    ]) {
        return done(&back, Err(e));
    }
    let text = |k: &str| f.get(k).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let lines = |k: &str| -> Vec<String> {
        f.get(k)
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let interval_s = match text("interval_minutes") {
        None => None,
        Some(m) => match m.parse::<i64>() {
            Ok(m) => Some(m.saturating_mul(60)),
            Err(_) => return done(&back, Err(format!("the interval is a number of minutes, not \"{m}\""))),
        },
    };
    let input = crate::admin::GoogleWorkspaceInput {
        name: text("name"),
        customer: text("customer"),
        admin_email: text("admin_email").unwrap_or_default(),
        credentials: f.get("credentials").unwrap_or("").trim().to_string(),
        scope: rollcall_store::SyncScope {
            org_units: lines("org_units"),
            groups: lines("groups"),
        },
        interval_s,
        ..Default::default()
    };
    match app
        .admin()
        .create_google_workspace_connection(&op.by, &org_id, input)
        .await
    {
        Ok((c, _)) => done(
            &format!("/console/connections/{}", c.id),
            Ok("Google Workspace connection created; its first sync starts now".into()),
        ),
        Err(e) => done(&back, Err(e.detail)),
    }
}

pub struct MappingRow {
    pub id: String,
    pub role_key: String,
    pub kind: &'static str,
    pub value: String,
}

pub struct WorkspaceMappingRow {
    pub id: String,
    pub workspace_key: String,
    pub kind: &'static str,
    pub value: String,
}

pub struct WorkspaceChoice {
    pub key: String,
    pub name: String,
}

pub struct RoleChoice {
    pub key: String,
    pub name: String,
    pub default: bool,
}

pub struct LogRow {
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub ok: bool,
    pub latency_ms: String,
    pub error: String,
    pub user_agent: String,
    /// What went wrong and how to fix it, for a failure.
    pub explanation: Option<(String, String)>,
    /// The run of requests this one is part of (JumpCloud's Test Connection): its name and what
    /// it does.
    pub activity: Option<(&'static str, &'static str)>,
    /// Kept while debug logging is on (redacted).
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

pub struct TokenRow {
    pub label: &'static str,
    pub prefix: String,
    pub issued: String,
    pub last_used: String,
}

/// The guard against mass deprovisioning, as the page shows it.
pub struct GuardPanel {
    /// `armed`, `tripped` or `off`.
    pub status: &'static str,
    pub tripped_at: Option<String>,
    pub held_events: i64,
    pub held_users: i64,
    pub window_deprovisions: i64,
    pub enabled: bool,
    /// Empty: the rule is off.
    pub max_users: String,
    pub max_percent: String,
    pub min_users: u32,
    pub window_minutes: u32,
    pub held: Vec<HeldRow>,
    /// More held events than listed.
    pub more: bool,
}

pub struct HeldRow {
    pub at: String,
    pub kind: String,
    pub user_id: String,
    pub resource: String,
}

pub struct AttributeChoice {
    pub path: &'static str,
    pub label: &'static str,
    pub required: bool,
}

#[derive(Template)]
#[template(path = "connection.html")]
struct ConnectionPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    c: ConnectionRow,
    base_url: String,
    idp_value: &'static str,
    idps: Vec<IdpOption>,
    debug_logging: bool,
    tokens: Vec<TokenRow>,
    mappings: Vec<MappingRow>,
    roles: Vec<RoleChoice>,
    workspace_mappings: Vec<WorkspaceMappingRow>,
    workspaces: Vec<WorkspaceChoice>,
    required: Vec<AttributeChoice>,
    synced: String,
    profile_mapping: String,
    on_delete: &'static str,
    guard: GuardPanel,
    log: Vec<LogRow>,
    /// For a directory connection (Google Workspace): its settings and sync status.
    sync: Option<SyncPanel>,
}

/// A directory connection's sync, as the connection page shows it.
struct SyncPanel {
    customer: String,
    admin_email: String,
    client_email: String,
    client_id: String,
    scope: String,
    every: String,
    running: Option<String>,
    next_run: String,
    last_run: Option<String>,
    last_status: Option<&'static str>,
    last_ok: bool,
    last_error: Option<String>,
    counts: Option<String>,
}

fn counts_text(c: &rollcall_store::SyncCounts) -> String {
    format!(
        "read {} users and {} groups; users: {} created, {} updated, {} deactivated, {} deleted; groups: {} created, \
         {} updated, {} deleted{}",
        c.users_read,
        c.groups_read,
        c.users_created,
        c.users_updated,
        c.users_deactivated,
        c.users_deleted,
        c.groups_created,
        c.groups_updated,
        c.groups_deleted,
        if c.failed > 0 {
            format!("; {} not written", c.failed)
        } else {
            String::new()
        }
    )
}

impl SyncPanel {
    fn of(s: &rollcall_store::DirectorySource) -> SyncPanel {
        let now = rollcall_store::sqlite::now_us();
        let running = s
            .running_since_us
            .filter(|_| s.lease_until_us.is_some_and(|u| u >= now));
        let scope = &s.settings.scope;
        let mut parts = Vec::new();
        if !scope.org_units.is_empty() {
            parts.push(format!("organizational units {}", scope.org_units.join(", ")));
        }
        if !scope.groups.is_empty() {
            parts.push(format!("groups {}", scope.groups.join(", ")));
        }
        SyncPanel {
            customer: s.settings.customer.clone(),
            admin_email: s.settings.admin_email.clone(),
            client_email: s.settings.client_email.clone(),
            client_id: s.settings.client_id.clone().unwrap_or_default(),
            scope: if parts.is_empty() {
                "the whole directory".into()
            } else {
                parts.join("; ")
            },
            every: if s.interval_s % 60 == 0 {
                format!("{} min", s.interval_s / 60)
            } else {
                format!("{} s", s.interval_s)
            },
            running: running.map(|since| {
                let phase = s
                    .progress
                    .as_ref()
                    .map(|p| format!(" — {}: {}", p.phase, counts_text(p)));
                format!("since {}{}", when(since), phase.unwrap_or_default())
            }),
            next_run: when(s.next_run_us),
            last_run: s.last_finished_us.map(when),
            last_status: s.last_status.map(|st| st.as_str()),
            last_ok: s.last_status == Some(rollcall_store::SyncStatus::Succeeded),
            last_error: s.last_error.clone(),
            counts: s.last_counts.as_ref().map(counts_text),
        }
    }
}

/// The attributes the "required" checkboxes offer (the common ones; the API takes any path).
const REQUIRABLE: [(&str, &str); 5] = [
    ("userName", "Username"),
    ("emails", "E-mail"),
    ("name.givenName", "First name"),
    ("name.familyName", "Last name"),
    ("displayName", "Display name"),
];

pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(connection_id): Path<String>,
) -> PageResult {
    let admin = app.admin();
    let c = admin.connection(&connection_id).await?;
    let org = admin.organization(&c.org_id).await?;
    let mappings = admin.list_role_mappings(&c.id).await?;
    let defaults = admin.default_roles(&c.id).await?;
    let roles = admin.list_roles(&c.org_id).await?;
    let workspace_mappings = admin.list_workspace_mappings(&c.id).await?;
    let workspaces = admin.list_workspaces(&c.org_id).await?;
    let (log, _) = admin.request_log(&c.id, None, LOG_ROWS).await?;
    let uses = admin.token_uses(&c.id).await?;
    let token_row = |label, u: crate::admin::TokenUse| TokenRow {
        label,
        prefix: format!("{}…", u.prefix),
        issued: when_or(u.issued_us, "before the events kept"),
        last_used: when_or(u.last_used_us, "not in the request log"),
    };
    let tokens: Vec<TokenRow> = [("Current token", uses.current), ("New token (rotation)", uses.next)]
        .into_iter()
        .filter_map(|(label, u)| u.map(|u| token_row(label, u)))
        .collect();
    let g = admin.deprovision_guard(&c.id).await?;
    let (held, more) = admin.held_events(&c.id, None, HELD_ROWS).await?;
    let guard = GuardPanel {
        status: match (g.tripped_us, g.settings.enabled) {
            (Some(_), _) => "tripped",
            (None, true) => "armed",
            (None, false) => "off",
        },
        tripped_at: g.tripped_us.map(when),
        held_events: g.held_events,
        held_users: g.held_users,
        window_deprovisions: g.window_deprovisions,
        enabled: g.settings.enabled,
        max_users: g.settings.max_users.map(|n| n.to_string()).unwrap_or_default(),
        max_percent: g.settings.max_percent.map(|n| n.to_string()).unwrap_or_default(),
        min_users: g.settings.min_users,
        window_minutes: g.settings.window_minutes,
        held: held
            .into_iter()
            .map(|h| HeldRow {
                at: when(h.event.created_us),
                kind: h.event.kind,
                user_id: h.user_id,
                resource: match (h.event.resource_type, h.event.resource_id) {
                    (Some(t), Some(id)) => format!("{t} {id}"),
                    _ => String::new(),
                },
            })
            .collect(),
        more,
    };
    let policy = &c.policy;
    let sync = if c.kind.is_directory() {
        Some(SyncPanel::of(&admin.directory_source(&c.id).await?.1))
    } else {
        None
    };
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), c.name.clone(), "organizations").take();
    Ok(send(
        &ConnectionPage {
            chrome,
            org_id: org.id,
            org_name: org.name,
            base_url: admin.scim_base_url(&c.id),
            idp_value: c.idp.as_str(),
            idps: idp_options(),
            debug_logging: c.debug_logging,
            tokens,
            mappings: mappings
                .into_iter()
                .map(|m| MappingRow {
                    id: m.id,
                    role_key: m.role_key,
                    kind: match m.matches {
                        RoleMatch::GroupId(_) => "group id",
                        RoleMatch::GroupName(_) => "group name",
                        RoleMatch::AppRole(_) => "app role",
                    },
                    value: m.matches.value().to_string(),
                })
                .collect(),
            roles: roles
                .into_iter()
                .map(|r| RoleChoice {
                    default: defaults.iter().any(|d| d.id == r.id),
                    key: r.key,
                    name: r.name,
                })
                .collect(),
            workspace_mappings: workspace_mappings
                .into_iter()
                .map(|m| WorkspaceMappingRow {
                    id: m.id,
                    workspace_key: m.workspace_key,
                    kind: match m.matches {
                        RoleMatch::GroupId(_) => "group id",
                        _ => "group name",
                    },
                    value: m.matches.value().to_string(),
                })
                .collect(),
            workspaces: workspaces
                .into_iter()
                .map(|w| WorkspaceChoice {
                    key: w.key,
                    name: w.name,
                })
                .collect(),
            required: REQUIRABLE
                .iter()
                .map(|(path, label)| AttributeChoice {
                    path,
                    label,
                    required: policy.required_attributes.iter().any(|p| p == path),
                })
                .collect(),
            synced: policy
                .synced_attributes
                .as_ref()
                .map(|s| s.join("\n"))
                .unwrap_or_default(),
            profile_mapping: policy
                .profile_mapping
                .as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            on_delete: match policy.on_delete {
                OnDelete::Retain => "retain",
                OnDelete::Purge => "purge",
            },
            guard,
            log: crate::explain::activities(&log, c.idp.as_str())
                .into_iter()
                .zip(log)
                .map(|(activity, e)| LogRow {
                    activity: activity.map(|a| (a.name, a.summary)),
                    explanation: crate::explain::explain(&e).map(|x| (x.summary, x.fix)),
                    request_body: e.request_body.clone(),
                    response_body: e.response_body.clone(),
                    at: when(e.at_us),
                    ok: e.status < 400,
                    status: e.status,
                    method: e.method,
                    path: e.path,
                    latency_ms: format!("{:.1}", e.latency_us as f64 / 1000.0),
                    error: match (e.scim_type, e.error_detail) {
                        (Some(t), Some(d)) => format!("{t}: {d}"),
                        (None, Some(d)) => d,
                        (Some(t), None) => t,
                        (None, None) => String::new(),
                    },
                    user_agent: e.user_agent.unwrap_or_default(),
                })
                .collect(),
            c: ConnectionRow::of(&c),
            sync,
        },
        clear,
    ))
}

fn page_of(id: &str) -> String {
    format!("/console/connections/{id}")
}

/// `POST /console/connections/{id}/{action}`: token rotation, status, debug logging, renaming,
/// the identity provider, deletion.
pub async fn act(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = page_of(&id);
    let admin = app.admin();
    let by = &op.by;
    let allowed: &[&str] = match action.as_str() {
        "rename" => &["name"],
        "idp" => &["idp"],
        _ => &[],
    };
    if let Err(e) = f.only(allowed) {
        return done(&back, Err(e));
    }
    let update = |u: ConnectionUpdate| async { admin.update_connection(by, &id, u).await };
    let result: Result<String, crate::admin::AdminError> = match action.as_str() {
        "rotate-start" => {
            return match admin.start_token_rotation(by, &id).await {
                Ok(issued) => token_page(&app, &headers, &op, &issued.connection, issued.token, "rotation"),
                Err(e) => done(&back, Err(e.detail)),
            };
        }
        "sync" => admin
            .request_directory_sync(&id)
            .await
            .map(|_| "Sync asked for: it starts within moments; reload to follow it.".into()),
        "rotate-complete" => admin
            .complete_token_rotation(by, &id)
            .await
            .map(|_| "Rotation complete: only the new token works now.".into()),
        "rotate-cancel" => admin
            .cancel_token_rotation(by, &id)
            .await
            .map(|_| "Rotation cancelled: the new token no longer works; the old one still does.".into()),
        "disable" => update(ConnectionUpdate {
            status: Some(ConnectionStatus::Disabled),
            ..Default::default()
        })
        .await
        .map(|_| "Connection disabled: every SCIM request is refused (401) until it is enabled.".into()),
        "enable" => update(ConnectionUpdate {
            status: Some(ConnectionStatus::Active),
            ..Default::default()
        })
        .await
        .map(|_| "Connection enabled.".into()),
        "debug-on" => update(ConnectionUpdate {
            debug_logging: Some(true),
            ..Default::default()
        })
        .await
        .map(|_| "The request log now keeps request and response bodies (redacted).".into()),
        "debug-off" => update(ConnectionUpdate {
            debug_logging: Some(false),
            ..Default::default()
        })
        .await
        .map(|_| "The request log no longer keeps bodies.".into()),
        "rename" => update(ConnectionUpdate {
            name: Some(f.get("name").unwrap_or("").to_string()),
            ..Default::default()
        })
        .await
        .map(|c| format!("Renamed to \"{}\".", c.name)),
        "idp" => match f.get("idp").unwrap_or("").parse::<IdpKind>() {
            Ok(idp) => update(ConnectionUpdate {
                idp: Some(idp),
                ..Default::default()
            })
            .await
            .map(|c| format!("Identity provider set to {}.", idp_name(c.idp))),
            Err(e) => return done(&back, Err(e)),
        },
        "stage" => admin.stage_connection(by, &id).await.map(|_| {
            "The connection is in staging: the application hears nothing of its users and groups until it is activated."
                .into()
        }),
        "activate" => admin.activate_connection(by, &id).await.map(|(_, s)| {
            format!(
                "The connection is live: the application received {} users, {} groups, {} memberships, the roles \
                 of {} users and the workspaces of {}, and hears its changes from now on.",
                s.users, s.groups, s.memberships, s.users_with_roles, s.users_with_workspaces
            )
        }),
        "guard-release" => admin.resolve_deprovision_guard(by, &id, true).await.map(|r| {
            format!(
                "Released {} held events about {} users to the application; the guard is armed again.",
                r.events, r.users
            )
        }),
        "guard-discard" => admin.resolve_deprovision_guard(by, &id, false).await.map(|r| {
            format!(
                "Discarded {} held events about {} users; the application will not be told of them. The guard is armed again.",
                r.events, r.users
            )
        }),
        "delete" => {
            let org_id = match admin.connection(&id).await {
                Ok(c) => c.org_id,
                Err(e) => return done(&back, Err(e.detail)),
            };
            return match admin.delete_connection(by, &id).await {
                Ok(()) => done(
                    &format!("/console/organizations/{org_id}"),
                    Ok("Connection deleted with its users and groups.".into()),
                ),
                Err(e) => done(&back, Err(e.detail)),
            };
        }
        _ => return super::page::not_found().await.into_response(),
    };
    done(&back, result.map_err(|e| e.detail))
}

/// A change shown with its effect before it is saved: the form again, with `confirm=yes`.
#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    title: String,
    effect: String,
    lines: Vec<super::views::EffectLine>,
    action: String,
    back: String,
    fields: Vec<(String, String)>,
    button: &'static str,
}

/// What a confirmation page asks.
struct Confirm {
    title: String,
    effect: String,
    lines: Vec<super::views::EffectLine>,
    /// Where the form posts (again, with `confirm=yes`).
    action: String,
    fields: Vec<(String, String)>,
    button: &'static str,
}

fn confirm_page(app: &AppState, headers: &HeaderMap, op: &Operator, c: Confirm) -> Response {
    let (chrome, clear) = Framed::console(app, headers, &op.signed(), c.title.clone(), "organizations").take();
    let back = c
        .action
        .rsplit_once('/')
        .map(|(a, _)| a.to_string())
        .unwrap_or_default();
    send(
        &ConfirmPage {
            chrome,
            title: c.title,
            effect: c.effect,
            lines: c.lines,
            back,
            action: c.action,
            fields: c.fields,
            button: c.button,
        },
        clear,
    )
}

/// Maps a group (or app role) to a role: the first post shows what it would change, the second
/// (`confirm=yes`) saves it.
pub async fn create_mapping(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = page_of(&id);
    if let Err(e) = f.only(&["role", "kind", "value", "confirm"]) {
        return done(&back, Err(e));
    }
    let (kind, value, role) = (
        f.get("kind").unwrap_or(""),
        f.get("value").unwrap_or(""),
        f.get("role").unwrap_or(""),
    );
    let Some(matches) = RoleMatch::from_parts(kind, value.to_string()) else {
        return done(
            &back,
            Err("choose what to match: a group name, a group id or an app role".into()),
        );
    };
    let admin = app.admin();
    if f.get("confirm") != Some("yes") {
        return match admin.preview_role_mapping(&id, role, matches).await {
            Ok(effect) => confirm_page(
                &app,
                &headers,
                &op,
                Confirm {
                    title: format!(
                        "Map {} “{value}” to {role}?",
                        match kind {
                            "group_id" => "the group with id",
                            "app_role" => "the app role",
                            _ => "the group",
                        }
                    ),
                    effect: effect.sentence(),
                    lines: super::views::effect_lines(&effect),
                    action: format!("/console/connections/{id}/mappings"),
                    fields: vec![
                        ("kind".into(), kind.into()),
                        ("value".into(), value.into()),
                        ("role".into(), role.into()),
                    ],
                    button: "Save the mapping",
                },
            ),
            Err(e) => done(&back, Err(e.detail)),
        };
    }
    let result = admin.create_role_mapping(&op.by, &id, role, matches).await;
    done(
        &back,
        result
            .map(|m| {
                format!(
                    "Mapping saved: {} \"{}\" grants {}.",
                    m.matches.kind(),
                    m.matches.value(),
                    m.role_key
                )
            })
            .map_err(|e| e.detail),
    )
}

pub async fn delete_mapping(
    State(app): State<AppState>,
    op: Operator,
    Path((id, mapping_id)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = page_of(&id);
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    let result = app.admin().delete_role_mapping(&op.by, &id, &mapping_id).await;
    done(
        &back,
        result.map(|()| "Mapping deleted.".to_string()).map_err(|e| e.detail),
    )
}

/// Maps a group to a workspace: the first post shows what it would change, the second
/// (`confirm=yes`) saves it.
pub async fn create_workspace_mapping(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = page_of(&id);
    if let Err(e) = f.only(&["workspace", "kind", "value", "confirm"]) {
        return done(&back, Err(e));
    }
    let (kind, value, workspace) = (
        f.get("kind").unwrap_or(""),
        f.get("value").unwrap_or(""),
        f.get("workspace").unwrap_or(""),
    );
    let matches = match kind {
        "group_id" => RoleMatch::GroupId(value.to_string()),
        "group_name" => RoleMatch::GroupName(value.to_string()),
        _ => return done(&back, Err("choose what to match: a group name or a group id".into())),
    };
    let admin = app.admin();
    if f.get("confirm") != Some("yes") {
        return match admin.preview_workspace_mapping(&id, workspace, matches).await {
            Ok(effect) => confirm_page(
                &app,
                &headers,
                &op,
                Confirm {
                    title: format!(
                        "Make the members of {} “{value}” members of {workspace}?",
                        if kind == "group_id" {
                            "the group with id"
                        } else {
                            "the group"
                        }
                    ),
                    effect: effect.sentence_of("workspaces"),
                    lines: super::views::effect_lines(&effect),
                    action: format!("/console/connections/{id}/workspace-mappings"),
                    fields: vec![
                        ("kind".into(), kind.into()),
                        ("value".into(), value.into()),
                        ("workspace".into(), workspace.into()),
                    ],
                    button: "Save the mapping",
                },
            ),
            Err(e) => done(&back, Err(e.detail)),
        };
    }
    let result = admin.create_workspace_mapping(&op.by, &id, workspace, matches).await;
    done(
        &back,
        result
            .map(|m| {
                format!(
                    "Mapping saved: {} \"{}\" grants the workspace {}.",
                    m.matches.kind(),
                    m.matches.value(),
                    m.workspace_key
                )
            })
            .map_err(|e| e.detail),
    )
}

pub async fn delete_workspace_mapping(
    State(app): State<AppState>,
    op: Operator,
    Path((id, mapping_id)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = page_of(&id);
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    let result = app.admin().delete_workspace_mapping(&op.by, &id, &mapping_id).await;
    done(
        &back,
        result
            .map(|()| "Workspace mapping deleted.".to_string())
            .map_err(|e| e.detail),
    )
}

/// Replaces the default roles: shown with its effect first, saved with `confirm=yes`.
pub async fn set_default_roles(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = page_of(&id);
    if let Err(e) = f.only(&["role", "confirm"]) {
        return done(&back, Err(e));
    }
    let roles = f.all("role");
    let admin = app.admin();
    if f.get("confirm") != Some("yes") {
        return match admin.preview_default_roles(&id, &roles).await {
            Ok(effect) => confirm_page(
                &app,
                &headers,
                &op,
                Confirm {
                    title: match roles.len() {
                        0 => "Remove every default role?".to_string(),
                        _ => format!("Make {} the default roles?", roles.join(", ")),
                    },
                    effect: effect.sentence(),
                    lines: super::views::effect_lines(&effect),
                    action: format!("/console/connections/{id}/default-roles"),
                    fields: roles.iter().map(|r| ("role".to_string(), r.clone())).collect(),
                    button: "Save the default roles",
                },
            ),
            Err(e) => done(&back, Err(e.detail)),
        };
    }
    let result = admin.set_default_roles(&op.by, &id, &roles).await;
    done(
        &back,
        result
            .map(|r| match r.len() {
                0 => "No default role: users get only the roles their groups map to.".to_string(),
                _ => format!(
                    "Default roles: {}.",
                    r.iter().map(|r| r.key.as_str()).collect::<Vec<_>>().join(", ")
                ),
            })
            .map_err(|e| e.detail),
    )
}

/// The policy the form describes.
fn policy_from(f: &Fields) -> Result<ConnectionPolicy, String> {
    let lines = |name: &str| -> Vec<String> {
        f.get(name)
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let synced = lines("synced");
    let mut profile = BTreeMap::new();
    for line in lines("profile_mapping") {
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "profile mapping line \"{line}\" is not \"key = attribute path\""
            ));
        };
        profile.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(ConnectionPolicy {
        required_attributes: f.all("required"),
        synced_attributes: (!synced.is_empty()).then_some(synced),
        profile_mapping: (!profile.is_empty()).then_some(profile),
        on_delete: match f.get("on_delete").unwrap_or("retain") {
            "retain" => OnDelete::Retain,
            "purge" => OnDelete::Purge,
            other => return Err(format!("unknown deletion policy \"{other}\"")),
        },
    })
}

pub async fn set_policy(State(app): State<AppState>, op: Operator, Path(id): Path<String>, Form(f): Form) -> Response {
    let back = page_of(&id);
    if let Err(e) = f.only(&["required", "synced", "profile_mapping", "on_delete"]) {
        return done(&back, Err(e));
    }
    let policy = match policy_from(&f) {
        Ok(p) => p,
        Err(e) => return done(&back, Err(e)),
    };
    let result = app
        .admin()
        .set_connection_policy(&op.by, &app.scim.registry, &id, policy)
        .await;
    done(&back, result.map(|_| "Policy saved.".to_string()).map_err(|e| e.detail))
}

/// The guard settings the form describes (an empty limit turns its rule off).
fn guard_from(f: &Fields) -> Result<rollcall_store::GuardSettings, String> {
    let number = |name: &str, label: &str| -> Result<Option<u32>, String> {
        match f.get(name).map(str::trim).unwrap_or("") {
            "" => Ok(None),
            v => v
                .parse::<u32>()
                .map(Some)
                .map_err(|_| format!("{label} must be a whole number, not \"{v}\"")),
        }
    };
    let required = |name: &str, label: &str| -> Result<u32, String> {
        number(name, label)?.ok_or_else(|| format!("{label} is required"))
    };
    Ok(rollcall_store::GuardSettings {
        enabled: f.get("enabled") == Some("on"),
        max_users: number("max_users", "Most users")?,
        max_percent: number("max_percent", "Most percent")?,
        min_users: required("min_users", "Percentage applies past")?,
        window_minutes: required("window_minutes", "Window")?,
    })
}

pub async fn set_guard(State(app): State<AppState>, op: Operator, Path(id): Path<String>, Form(f): Form) -> Response {
    let back = format!("{}#guard", page_of(&id));
    if let Err(e) = f.only(&["enabled", "max_users", "max_percent", "min_users", "window_minutes"]) {
        return done(&back, Err(e));
    }
    let settings = match guard_from(&f) {
        Ok(s) => s,
        Err(e) => return done(&back, Err(e)),
    };
    let result = app.admin().set_deprovision_guard(&op.by, &id, settings).await;
    done(
        &back,
        result
            .map(|_| "Guard settings saved.".to_string())
            .map_err(|e| e.detail),
    )
}

/// The match report page: counts and lists, and the CSV upload.
#[derive(Template)]
#[template(path = "match_report.html")]
struct MatchReportPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    c: ConnectionRow,
    r: crate::admin::staging::MatchReport,
    uploaded: String,
}

fn account_text(a: &crate::admin::staging::MatchAccountView) -> String {
    match (&a.email, &a.external_id) {
        (Some(e), Some(x)) => format!("{e} ({x})"),
        (Some(e), None) => e.clone(),
        (None, Some(x)) => x.clone(),
        (None, None) => String::new(),
    }
}

fn user_text(u: &crate::admin::staging::MatchUserView) -> String {
    let name = u.user_name.clone().unwrap_or_else(|| u.id.clone());
    if u.status == "active" {
        name
    } else {
        format!("{name} ({})", u.status)
    }
}

impl MatchReportPage {
    fn account(&self, a: &crate::admin::staging::MatchAccountView) -> String {
        account_text(a)
    }
    fn user(&self, u: &crate::admin::staging::MatchUserView) -> String {
        user_text(u)
    }
    fn accounts(&self, a: &[crate::admin::staging::MatchAccountView]) -> String {
        a.iter().map(account_text).collect::<Vec<_>>().join(", ")
    }
    fn users(&self, u: &[crate::admin::staging::MatchUserView]) -> String {
        u.iter().map(user_text).collect::<Vec<_>>().join(", ")
    }
}

/// `GET /console/connections/{id}/match-report`.
pub async fn match_report(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(connection_id): Path<String>,
) -> PageResult {
    let admin = app.admin();
    let c = admin.connection(&connection_id).await?;
    let org = admin.organization(&c.org_id).await?;
    let r = admin.match_report(&c.id).await?;
    let (chrome, clear) = Framed::console(
        &app,
        &headers,
        &op.signed(),
        format!("Match report · {}", c.name),
        "organizations",
    )
    .take();
    Ok(send(
        &MatchReportPage {
            chrome,
            org_id: org.id,
            org_name: org.name,
            uploaded: r.uploaded_at.clone().unwrap_or_default(),
            c: ConnectionRow::of(&c),
            r,
        },
        clear,
    ))
}

/// `POST /console/connections/{id}/match-report`: the CSV pasted (or read from a file by the
/// page's script) replaces the uploaded accounts; `delete=yes` forgets them.
pub async fn upload_match_report(
    State(app): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Form(f): Form,
) -> Response {
    let back = format!("{}/match-report", page_of(&id));
    if let Err(e) = f.only(&["csv", "delete"]) {
        return done(&back, Err(e));
    }
    let admin = app.admin();
    if f.get("delete") == Some("yes") {
        let r = admin.delete_match_accounts(&op.by, &id).await;
        return done(
            &back,
            r.map(|_| "The uploaded accounts are forgotten.".into())
                .map_err(|e| e.detail),
        );
    }
    let accounts = match crate::admin::staging::parse_accounts_csv(f.get("csv").unwrap_or_default()) {
        Ok(a) if a.is_empty() => return done(&back, Err("The CSV holds no account.".into())),
        Ok(a) => a,
        Err(e) => return done(&back, Err(e)),
    };
    let r = admin.upload_match_accounts(&op.by, &id, accounts).await;
    done(
        &back,
        r.map(|r| format!("{} accounts uploaded; the report below compares them.", r.accounts))
            .map_err(|e| e.detail),
    )
}
