//! Outbound provisioning targets (docs/outbound.md): the "Provisioning targets" section of an
//! organization's page (the targets, and the form adding one), and a target's page — its
//! settings (never its credentials), pausing and resuming, replacing the credentials, deleting,
//! the plan with the approval of the first push, "Sync now", the run history and the objects
//! pushed, with a retry of each failed one. Everything goes through [`crate::admin::Admin`].

use super::page::{Chrome, Framed, PageResult, done, send, when, when_or};
use super::session::{Fields, Form, Operator};
use crate::admin::{Admin, AdminError, AdminResult, TargetInput};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rollcall_outbound::plan::{AttributeChange, Plan, UserAction};
use rollcall_store::outbound::{
    AttributeMapping, AuthKind, AuthSettings, DEFAULT_INTERVAL_S, DeletionThreshold, Deprovision, ObjectState, Run,
    RunCounts, RunStatus, Target, TargetObject, TargetScope, TargetStatus, TargetUpdate,
};
use rollcall_store::{GroupQuery, ResourceKind};
use serde::Deserialize;
use serde_json::Value;

/// Groups offered in the scope of a new target.
const GROUP_CHOICES: i64 = 200;
/// Runs shown on a target's page.
const RUNS: i64 = 20;
/// Objects shown on a target's page (failed ones first).
const OBJECTS: i64 = 100;
/// The longest a page waits for a target to be read for its plan (a target that does not answer
/// is retried with backoff: the page says so instead of hanging).
const PLAN_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// Lines shown per kind of action in a plan.
const PLAN_LINES: usize = 200;

/// The fields of the form adding a target.
const CREATE_FIELDS: &[&str] = &[
    "name",
    "base_url",
    "profile",
    "auth_kind",
    "username",
    "token_url",
    "client_id",
    "oauth_scope",
    "credentials",
    "deprovision",
    "scope_mode",
    "connections",
    "groups",
    "push_groups",
];

pub fn target_url(org_id: &str, id: &str) -> String {
    format!("/console/organizations/{org_id}/provisioning-targets/{id}")
}

fn org_url(org_id: &str) -> String {
    format!("/console/organizations/{org_id}#provisioning-targets")
}

fn status_class(s: TargetStatus) -> &'static str {
    match s {
        TargetStatus::Enabled => "status-ok",
        TargetStatus::Paused => "status-warn",
        TargetStatus::Quarantined => "status-bad",
    }
}

fn run_class(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Succeeded => "status-ok",
        RunStatus::Running | RunStatus::Partial | RunStatus::Paused => "status-warn",
        RunStatus::Failed => "status-bad",
    }
}

fn auth_label(k: AuthKind) -> &'static str {
    match k {
        AuthKind::Bearer => "Bearer token",
        AuthKind::Basic => "HTTP Basic",
        AuthKind::OauthClientCredentials => "OAuth 2.0 client credentials",
    }
}

fn profile_title(admin: &Admin, id: &str) -> String {
    admin
        .target_profiles()
        .iter()
        .find(|p| p.id == id)
        .map(|p| p.title.to_string())
        .unwrap_or_else(|| id.to_string())
}

/// A duration in microseconds, for people.
fn duration(us: i64) -> String {
    let ms = us.max(0) / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A schedule's interval in seconds, for people.
fn interval(s: i64) -> String {
    let plural = |n: i64, one: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    if s > 0 && s % 86_400 == 0 {
        plural(s / 86_400, "day")
    } else if s > 0 && s % 3600 == 0 {
        plural(s / 3600, "hour")
    } else if s > 0 && s % 60 == 0 {
        plural(s / 60, "minute")
    } else {
        plural(s, "second")
    }
}

/// What a run did, in a line: the users in scope, then every count that is not zero.
fn counts_text(c: &RunCounts) -> String {
    let mut parts = vec![format!("{} in scope", c.users_in_scope)];
    for (n, what) in [
        (c.created, "created"),
        (c.linked, "linked"),
        (c.updated, "updated"),
        (c.unchanged, "unchanged"),
        (c.deactivated, "deactivated"),
        (c.deleted, "deleted"),
        (c.groups_created, "groups created"),
        (c.groups_updated, "groups updated"),
        (c.groups_deleted, "groups deleted"),
        (c.read_back, "read back"),
        (c.repaired, "repaired"),
        (c.failed, "failed"),
        (c.requests, "requests"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(" · ")
}

// ---------------------------------------------------------------------------------------------
// The organization page's section.

pub struct TargetRow {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub reason: String,
    pub approved: bool,
    pub last_run: String,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub checked: bool,
}

/// What was typed into the form adding a target, kept when it is refused (never the credentials).
#[derive(Debug, Clone)]
pub struct Draft {
    pub name: String,
    pub base_url: String,
    pub profile: String,
    pub auth_kind: String,
    pub username: String,
    pub token_url: String,
    pub client_id: String,
    pub oauth_scope: String,
    pub deprovision: String,
    pub scope_mode: String,
    pub connections: Vec<String>,
    pub groups: Vec<String>,
    pub push_groups: Vec<String>,
}

impl Default for Draft {
    fn default() -> Self {
        Draft {
            name: String::new(),
            base_url: String::new(),
            profile: rollcall_outbound::profile::GENERIC.into(),
            auth_kind: AuthKind::Bearer.as_str().into(),
            username: String::new(),
            token_url: String::new(),
            client_id: String::new(),
            oauth_scope: String::new(),
            deprovision: Deprovision::Deactivate.as_str().into(),
            scope_mode: "all".into(),
            connections: Vec::new(),
            groups: Vec::new(),
            push_groups: Vec::new(),
        }
    }
}

impl Draft {
    fn of(f: &Fields) -> Draft {
        let text = |n: &str| f.get(n).unwrap_or("").to_string();
        let d = Draft::default();
        Draft {
            name: text("name"),
            base_url: text("base_url"),
            profile: f.get("profile").map_or(d.profile, str::to_string),
            auth_kind: f.get("auth_kind").map_or(d.auth_kind, str::to_string),
            username: text("username"),
            token_url: text("token_url"),
            client_id: text("client_id"),
            oauth_scope: text("oauth_scope"),
            deprovision: f.get("deprovision").map_or(d.deprovision, str::to_string),
            scope_mode: f.get("scope_mode").map_or(d.scope_mode, str::to_string),
            connections: f.all("connections"),
            groups: f.all("groups"),
            push_groups: f.all("push_groups"),
        }
    }

    /// The target to create, or why the form cannot make one.
    fn input(&self, credentials: &str) -> Result<TargetInput, AdminError> {
        let auth_kind: AuthKind = self.auth_kind.parse().map_err(AdminError::invalid)?;
        let deprovision: Deprovision = self.deprovision.parse().map_err(AdminError::invalid)?;
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let auth = match auth_kind {
            AuthKind::Bearer => AuthSettings::default(),
            AuthKind::Basic => AuthSettings {
                username: opt(&self.username),
                ..Default::default()
            },
            AuthKind::OauthClientCredentials => AuthSettings {
                token_url: opt(&self.token_url),
                client_id: opt(&self.client_id),
                scope: opt(&self.oauth_scope),
                ..Default::default()
            },
        };
        let scope = match self.scope_mode.as_str() {
            "all" => TargetScope {
                push_groups: self.push_groups.clone(),
                ..Default::default()
            },
            "chosen" if self.connections.is_empty() && self.groups.is_empty() => {
                return Err(AdminError::invalid(
                    "choose the connections or groups whose users the target receives, or all users",
                ));
            }
            "chosen" => TargetScope {
                connections: self.connections.clone(),
                groups: self.groups.clone(),
                push_groups: self.push_groups.clone(),
            },
            other => return Err(AdminError::invalid(format!("unknown scope \"{other}\""))),
        };
        Ok(TargetInput {
            name: self.name.clone(),
            base_url: self.base_url.clone(),
            profile: self.profile.clone(),
            auth_kind,
            auth,
            credentials: credentials.to_string(),
            scope,
            mapping: AttributeMapping::default(),
            deprovision,
            deletion_threshold: DeletionThreshold::default(),
            rate_limit: None,
            interval_s: DEFAULT_INTERVAL_S,
        })
    }
}

/// The "Provisioning targets" section of an organization's page.
pub struct TargetsSection {
    pub rows: Vec<TargetRow>,
    pub profiles: Vec<Choice>,
    pub auth_kinds: Vec<Choice>,
    pub connections: Vec<Choice>,
    pub groups: Vec<Choice>,
    pub push_groups: Vec<Choice>,
    /// More groups than offered.
    pub more_groups: bool,
    pub draft: Draft,
    /// The form is shown open (it was refused).
    pub open: bool,
}

fn last_run_text(r: Option<&Run>) -> String {
    match r {
        None => "no run yet".into(),
        Some(r) => {
            let at = when(r.finished_us.unwrap_or(r.started_us));
            let mut s = format!("{} {} run, {at}: {}", r.status, r.kind, counts_text(&r.counts));
            if let Some(e) = &r.error {
                s.push_str(&format!(" — {e}"));
            }
            s
        }
    }
}

pub async fn section(admin: &Admin, org_id: &str, draft: Option<Draft>) -> AdminResult<TargetsSection> {
    let targets = admin.list_targets(org_id).await?;
    let mut rows = Vec::with_capacity(targets.len());
    for t in &targets {
        let (runs, _) = admin.target_runs(org_id, &t.id, None, 1).await?;
        rows.push(TargetRow {
            id: t.id.clone(),
            name: t.name.clone(),
            profile: profile_title(admin, &t.profile),
            status: t.status.as_str(),
            status_class: status_class(t.status),
            reason: t.status_reason.clone().unwrap_or_default(),
            approved: t.approved(),
            last_run: last_run_text(runs.first()),
        });
    }
    let open = draft.is_some();
    let draft = draft.unwrap_or_default();
    let connections = admin.list_connections(Some(org_id)).await?;
    let groups = admin
        .directory_groups(
            org_id,
            GroupQuery {
                limit: GROUP_CHOICES,
                include_staging: true,
                ..Default::default()
            },
        )
        .await?;
    let group_choices = |chosen: &[String]| -> Vec<Choice> {
        groups
            .items
            .iter()
            .map(|g| Choice {
                value: g.id.clone(),
                label: g.display_name.clone().unwrap_or_else(|| g.id.clone()),
                checked: chosen.contains(&g.id),
            })
            .collect()
    };
    Ok(TargetsSection {
        rows,
        profiles: admin
            .target_profiles()
            .iter()
            .map(|p| Choice {
                value: p.id.to_string(),
                label: format!("{} ({})", p.title, p.id),
                checked: p.id == draft.profile,
            })
            .collect(),
        auth_kinds: AuthKind::ALL
            .iter()
            .map(|k| Choice {
                value: k.as_str().to_string(),
                label: auth_label(*k).to_string(),
                checked: k.as_str() == draft.auth_kind,
            })
            .collect(),
        connections: connections
            .iter()
            .map(|c| Choice {
                value: c.id.clone(),
                label: c.name.clone(),
                checked: draft.connections.contains(&c.id),
            })
            .collect(),
        groups: group_choices(&draft.groups),
        push_groups: group_choices(&draft.push_groups),
        more_groups: groups.next_after.is_some(),
        draft,
        open,
    })
}

/// `GET /console/organizations/{org}/provisioning-targets` (the address a refused form leaves in
/// the address bar): the organization's page, at its targets.
pub async fn list(Path(org_id): Path<String>, _op: Operator) -> Response {
    axum::response::Redirect::to(&org_url(&org_id)).into_response()
}

/// `POST /console/organizations/{org}/provisioning-targets`: a new target (waiting for approval),
/// or the organization's page again with the form as it was typed (but its credentials) and why
/// nothing was created.
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(org_id): Path<String>,
    Form(f): Form,
) -> Response {
    if let Err(e) = f.only(CREATE_FIELDS) {
        return done(&org_url(&org_id), Err(e));
    }
    let draft = Draft::of(&f);
    let admin = app.admin();
    let result = match draft.input(f.get("credentials").unwrap_or("")) {
        Ok(input) => admin.create_target(&op.by, &org_id, input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(t) => done(
            &target_url(&org_id, &t.id),
            Ok(format!(
                "Provisioning target \"{}\" created. It pushes nothing until you approve its plan below.",
                t.name
            )),
        ),
        Err(e) => super::orgs::refused_target(&app, &headers, &op, &org_id, draft, e.detail).await,
    }
}

// ---------------------------------------------------------------------------------------------
// A target's page.

pub struct ChangeLine {
    pub attribute: String,
    pub before: String,
    pub after: String,
}

pub struct PlanLine {
    pub user: String,
    pub user_id: String,
    pub detail: String,
    pub changes: Vec<ChangeLine>,
}

pub struct PlanSection {
    pub id: &'static str,
    pub title: &'static str,
    pub lines: Vec<PlanLine>,
    /// Lines left out (past [`PLAN_LINES`]).
    pub more: usize,
}

pub struct PlanView {
    /// (id, label, count).
    pub summary: Vec<(&'static str, &'static str, u64)>,
    pub exceeds_threshold: bool,
    pub sections: Vec<PlanSection>,
    pub remote_users_read: u64,
    /// The question asked before approving.
    pub confirm: String,
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn change_lines(changes: &[AttributeChange]) -> Vec<ChangeLine> {
    changes
        .iter()
        .map(|c| ChangeLine {
            attribute: c.attribute.clone(),
            before: json_text(&c.before),
            after: json_text(&c.after),
        })
        .collect()
}

fn plan_view(p: &Plan) -> PlanView {
    let s = &p.summary;
    let mut sections: Vec<PlanSection> = [
        ("plan-create", "Creates"),
        ("plan-link", "Links to users already on the target"),
        (
            "plan-ambiguous",
            "Ambiguous or duplicate matches (nothing is done until they are resolved on the target)",
        ),
        ("plan-update", "Updates"),
        ("plan-reactivate", "Reactivations"),
        ("plan-deactivate", "Deactivations"),
        ("plan-delete", "Deletions"),
    ]
    .into_iter()
    .map(|(id, title)| PlanSection {
        id,
        title,
        lines: Vec::new(),
        more: 0,
    })
    .collect();
    for u in &p.users {
        let (i, detail, changes) = match &u.action {
            UserAction::Unchanged { .. } => continue,
            UserAction::Create { .. } => (0, String::new(), Vec::new()),
            UserAction::Link {
                remote_id,
                matched_by,
                changes,
            } => (
                1,
                format!("found by {} as {remote_id}", matched_by.attribute()),
                change_lines(changes),
            ),
            UserAction::Ambiguous { matched_by, candidates } => (
                2,
                format!(
                    "{} users on the target have the same {}: {}",
                    candidates.len(),
                    matched_by.attribute(),
                    candidates.join(", ")
                ),
                Vec::new(),
            ),
            UserAction::Update { remote_id, changes } => (3, format!("as {remote_id}"), change_lines(changes)),
            UserAction::Reactivate { remote_id, changes } => (4, format!("as {remote_id}"), change_lines(changes)),
            UserAction::Deactivate { remote_id } => (5, format!("as {remote_id}"), Vec::new()),
            UserAction::Delete { remote_id } => (6, format!("as {remote_id}"), Vec::new()),
        };
        let section = &mut sections[i];
        if section.lines.len() >= PLAN_LINES {
            section.more += 1;
            continue;
        }
        section.lines.push(PlanLine {
            user: u.user_name.clone().unwrap_or_else(|| u.user_id.clone()),
            user_id: u.user_id.clone(),
            detail,
            changes,
        });
    }
    sections.retain(|s| !s.lines.is_empty());
    let mut confirm = format!(
        "Approve and start the first push? {} user(s) will be created, {} linked, {} updated",
        s.create, s.link, s.update
    );
    if s.deactivate + s.delete > 0 {
        confirm.push_str(&format!(", {} deactivated, {} deleted", s.deactivate, s.delete));
    }
    confirm.push('.');
    PlanView {
        summary: vec![
            ("in-scope", "users in scope", s.users_in_scope),
            ("create", "create", s.create),
            ("link", "link", s.link),
            ("ambiguous", "ambiguous", s.ambiguous),
            ("update", "update", s.update),
            ("unchanged", "unchanged", s.unchanged),
            ("reactivate", "reactivate", s.reactivate),
            ("deactivate", "deactivate", s.deactivate),
            ("delete", "delete", s.delete),
        ],
        exceeds_threshold: s.exceeds_deletion_threshold,
        sections,
        remote_users_read: p.remote_users_read,
        confirm,
    }
}

pub struct RunRow {
    pub kind: &'static str,
    pub status: &'static str,
    pub status_class: &'static str,
    pub running: bool,
    pub started: String,
    pub duration: String,
    pub counts: String,
    pub error: String,
}

fn run_row(r: &Run) -> RunRow {
    let running = r.status == RunStatus::Running;
    RunRow {
        kind: r.kind.as_str(),
        status: r.status.as_str(),
        status_class: run_class(r.status),
        running,
        started: when(r.started_us),
        duration: match r.finished_us {
            Some(f) => duration(f - r.started_us),
            None => format!(
                "running for {}",
                duration(rollcall_store::sqlite::now_us() - r.started_us)
            ),
        },
        counts: counts_text(&r.counts),
        error: r.error.clone().unwrap_or_default(),
    }
}

pub struct ObjectRow {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub link: String,
    pub remote_id: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub failed: bool,
    pub error: String,
    pub attempts: i64,
    pub retry_at: String,
    pub updated: String,
}

fn object_row(org_id: &str, o: &TargetObject) -> ObjectRow {
    let name = o
        .sent
        .as_ref()
        .and_then(|s| s.get("userName").or_else(|| s.get("displayName")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (kind, link) = match o.kind {
        ResourceKind::User => ("User", format!("/console/organizations/{org_id}/users/{}", o.local_id)),
        ResourceKind::Group => (
            "Group",
            format!("/console/organizations/{org_id}/groups/{}", o.local_id),
        ),
    };
    ObjectRow {
        kind,
        id: o.local_id.clone(),
        name,
        link,
        remote_id: o.remote_id.clone().unwrap_or_default(),
        state: o.state.as_str(),
        state_class: match o.state {
            ObjectState::Synced => "status-ok",
            ObjectState::Failed => "status-bad",
            _ => "status-warn",
        },
        failed: o.state == ObjectState::Failed,
        error: o.error.clone().unwrap_or_default(),
        attempts: o.attempts,
        retry_at: when_or(o.retry_at_us, ""),
        updated: when(o.updated_us),
    }
}

/// Names the users a plan line knows only by id (those deprovisioned) from the directory, where
/// it still has them.
async fn named_plan(admin: &Admin, org_id: &str, mut plan: PlanView) -> PlanView {
    for line in plan.sections.iter_mut().flat_map(|s| s.lines.iter_mut()) {
        if line.user == line.user_id
            && let Ok(u) = admin.directory_user(org_id, &line.user_id).await
            && let Some(n) = u.doc.get("userName").and_then(Value::as_str)
        {
            line.user = n.to_string();
        }
    }
    plan
}

/// Names the users whose row has none (never pushed: nothing was sent yet) from the directory.
async fn named(admin: &Admin, org_id: &str, mut rows: Vec<ObjectRow>) -> Vec<ObjectRow> {
    for r in rows.iter_mut().filter(|r| r.name.is_empty() && r.kind == "User") {
        if let Ok(u) = admin.directory_user(org_id, &r.id).await
            && let Some(n) = u.doc.get("userName").and_then(Value::as_str)
        {
            r.name = n.to_string();
        }
    }
    rows
}

#[derive(Template)]
#[template(path = "target.html")]
struct TargetPage {
    chrome: Chrome,
    org_id: String,
    org_name: String,
    id: String,
    name: String,
    status: &'static str,
    status_class: &'static str,
    reason: String,
    enabled: bool,
    approved: bool,
    approved_at: String,
    running: bool,
    settings: Vec<(&'static str, String)>,
    auth_kind: &'static str,
    /// The plan, computed for this page (always while the target waits for approval).
    plan: Option<PlanView>,
    plan_error: String,
    runs: Vec<RunRow>,
    more_runs: bool,
    objects: Vec<ObjectRow>,
    more_objects: bool,
    states: Vec<Choice>,
    state: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetQuery {
    /// Only objects in this state.
    state: Option<String>,
    /// Show the plan of an approved target (a dry run).
    plan: Option<String>,
}

async fn scope_text(admin: &Admin, t: &Target) -> AdminResult<(String, String)> {
    let connections = admin.list_connections(Some(&t.org_id)).await?;
    let conn_name = |id: &String| {
        connections
            .iter()
            .find(|c| &c.id == id)
            .map_or_else(|| id.clone(), |c| c.name.clone())
    };
    let mut group_names = Vec::new();
    for g in t.scope.groups.iter().chain(&t.scope.push_groups) {
        let name = match admin.directory_group(&t.org_id, g).await {
            Ok(found) => found.display_name.unwrap_or_else(|| g.clone()),
            Err(_) => format!("{g} (gone)"),
        };
        group_names.push((g.clone(), name));
    }
    let name_of = |id: &String| {
        group_names
            .iter()
            .find(|(g, _)| g == id)
            .map_or_else(|| id.clone(), |(_, n)| n.clone())
    };
    let users = if t.scope.is_everyone() {
        "every active user of the organization".to_string()
    } else {
        let mut parts = Vec::new();
        if !t.scope.connections.is_empty() {
            parts.push(format!(
                "the active users of {}",
                t.scope.connections.iter().map(conn_name).collect::<Vec<_>>().join(", ")
            ));
        }
        if !t.scope.groups.is_empty() {
            parts.push(format!(
                "the active members of {}",
                t.scope.groups.iter().map(name_of).collect::<Vec<_>>().join(", ")
            ));
        }
        parts.join("; ")
    };
    let groups = if t.scope.push_groups.is_empty() {
        "none".to_string()
    } else {
        t.scope.push_groups.iter().map(name_of).collect::<Vec<_>>().join(", ")
    };
    Ok((users, groups))
}

pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path((org_id, id)): Path<(String, String)>,
    Query(q): Query<TargetQuery>,
) -> PageResult {
    let admin = app.admin();
    let org = admin.organization(&org_id).await?;
    let t = admin.target(&org.id, &id).await?;
    let state = match q.state.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<ObjectState>().map_err(AdminError::invalid)?),
    };
    let (users, groups) = scope_text(&admin, &t).await?;
    let th = &t.deletion_threshold;
    let threshold = match (th.max_percent, th.max_users) {
        (Some(p), Some(u)) => format!("more than {p} % or more than {u} users in one run pauses the target"),
        (Some(p), None) => format!("more than {p} % in one run pauses the target"),
        (None, Some(u)) => format!("more than {u} users in one run pauses the target"),
        (None, None) => "off".to_string(),
    };
    let now = rollcall_store::sqlite::now_us();
    let mut settings: Vec<(&'static str, String)> = vec![
        ("Base URL", t.base_url.clone()),
        (
            "Profile",
            format!("{} ({})", profile_title(&admin, &t.profile), t.profile),
        ),
        ("Authentication", auth_label(t.auth_kind).to_string()),
    ];
    if let Some(u) = &t.auth.username {
        settings.push(("User name", u.clone()));
    }
    if let Some(u) = &t.auth.token_url {
        settings.push(("Token endpoint", u.clone()));
    }
    if let Some(c) = &t.auth.client_id {
        settings.push(("Client id", c.clone()));
    }
    if let Some(s) = &t.auth.scope {
        settings.push(("OAuth scope", s.clone()));
    }
    settings.extend([
        ("Credentials", "set (never shown)".to_string()),
        ("Users pushed", users),
        ("Groups pushed", groups),
        (
            "Deprovisioning",
            match t.deprovision {
                Deprovision::Deactivate => "deactivate (active: false)".to_string(),
                Deprovision::Delete => "delete".to_string(),
            },
        ),
        ("Deletion threshold", threshold),
        ("Full reconciliation", format!("every {}", interval(t.interval_s))),
        ("Next full reconciliation", when(t.next_full_us)),
    ]);
    if t.failures > 0 {
        settings.push((
            "Failed runs in a row",
            if t.next_attempt_us > now {
                format!("{} (next attempt {})", t.failures, when(t.next_attempt_us))
            } else {
                t.failures.to_string()
            },
        ));
    }
    settings.extend([("Created", when(t.created_us)), ("Id", t.id.clone())]);

    let (plan, plan_error) = if !t.approved() || q.plan.is_some() {
        match tokio::time::timeout(PLAN_WAIT, admin.target_plan(&org.id, &t.id)).await {
            Ok(Ok(p)) => (Some(named_plan(&admin, &org.id, plan_view(&p)).await), String::new()),
            Ok(Err(e)) => (None, e.detail),
            Err(_) => (
                None,
                format!(
                    "the target did not answer within {} s; reload the page to try again, or check its base URL",
                    PLAN_WAIT.as_secs()
                ),
            ),
        }
    } else {
        (None, String::new())
    };
    let (runs, more_runs) = admin.target_runs(&org.id, &t.id, None, RUNS).await?;
    let (objects, more_objects) = match state {
        Some(s) => admin.target_objects(&org.id, &t.id, Some(s), None, OBJECTS).await?,
        None => {
            let (mut failed, more_failed) = admin
                .target_objects(&org.id, &t.id, Some(ObjectState::Failed), None, OBJECTS)
                .await?;
            let (rest, more_rest) = admin.target_objects(&org.id, &t.id, None, None, OBJECTS).await?;
            let room = (OBJECTS as usize).saturating_sub(failed.len());
            let others: Vec<TargetObject> = rest.into_iter().filter(|o| o.state != ObjectState::Failed).collect();
            let more = more_failed || more_rest || others.len() > room;
            failed.extend(others.into_iter().take(room));
            (failed, more)
        }
    };
    let state_text = state.map(|s| s.as_str().to_string()).unwrap_or_default();
    let mut states = vec![Choice {
        value: String::new(),
        label: "every state (failed first)".into(),
        checked: state.is_none(),
    }];
    states.extend(ObjectState::ALL.iter().map(|s| Choice {
        value: s.as_str().to_string(),
        label: s.as_str().to_string(),
        checked: Some(*s) == state,
    }));
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), t.name.clone(), "organizations").take();
    Ok(send(
        &TargetPage {
            chrome,
            org_id: org.id.clone(),
            org_name: org.name,
            id: t.id.clone(),
            name: t.name.clone(),
            status: t.status.as_str(),
            status_class: status_class(t.status),
            reason: t.status_reason.clone().unwrap_or_default(),
            enabled: t.status == TargetStatus::Enabled,
            approved: t.approved(),
            approved_at: when_or(t.approved_us, ""),
            running: t.lease_until_us.is_some_and(|u| u > now),
            settings,
            auth_kind: auth_label(t.auth_kind),
            plan,
            plan_error,
            runs: runs.iter().map(run_row).collect(),
            more_runs,
            objects: named(
                &admin,
                &org.id,
                objects.iter().map(|o| object_row(&org.id, o)).collect(),
            )
            .await,
            more_objects,
            states,
            state: state_text,
        },
        clear,
    ))
}

/// `POST …/provisioning-targets/{target}/{action}`: pause, resume, sync, approve, credentials,
/// delete.
pub async fn act(
    State(app): State<AppState>,
    op: Operator,
    Path((org_id, id, action)): Path<(String, String, String)>,
    Form(f): Form,
) -> Response {
    let back = target_url(&org_id, &id);
    let allowed: &[&str] = match action.as_str() {
        "credentials" => &["credentials"],
        _ => &[],
    };
    if let Err(e) = f.only(allowed) {
        return done(&back, Err(e));
    }
    let admin = app.admin();
    let status = |s: TargetStatus| TargetUpdate {
        status: Some(s),
        ..Default::default()
    };
    let result: Result<String, AdminError> = match action.as_str() {
        "pause" => admin
            .update_target(&op.by, &org_id, &id, status(TargetStatus::Paused))
            .await
            .map(|_| "Target paused: nothing is pushed until it is resumed.".into()),
        "resume" => admin
            .update_target(&op.by, &org_id, &id, status(TargetStatus::Enabled))
            .await
            .map(|_| "Target resumed: it picks up the changes made meanwhile.".into()),
        "sync" => admin
            .sync_target(&org_id, &id)
            .await
            .map(|_| "A full reconciliation starts now; its run appears below.".into()),
        "approve" => admin
            .approve_target(&op.by, &org_id, &id)
            .await
            .map(|_| "Push approved: the first push starts now; its run appears below.".into()),
        "credentials" => admin
            .update_target(
                &op.by,
                &org_id,
                &id,
                TargetUpdate {
                    credentials: Some(f.get("credentials").unwrap_or("").to_string()),
                    ..Default::default()
                },
            )
            .await
            .map(|_| "Credentials replaced; they are used from the next request on.".into()),
        "delete" => {
            return match admin.delete_target(&op.by, &org_id, &id).await {
                Ok(()) => done(
                    &org_url(&org_id),
                    Ok("Provisioning target deleted. What it pushed stays on the target.".into()),
                ),
                Err(e) => done(&back, Err(e.detail)),
            };
        }
        _ => return super::page::not_found().await.into_response(),
    };
    done(&back, result.map_err(|e| e.detail))
}

/// `POST …/provisioning-targets/{target}/objects/{object}/retry`.
pub async fn retry(
    State(app): State<AppState>,
    Path((org_id, id, object)): Path<(String, String, String)>,
    _op: Operator,
    Form(f): Form,
) -> Response {
    let back = format!("{}#objects", target_url(&org_id, &id));
    if let Err(e) = f.only(&[]) {
        return done(&back, Err(e));
    }
    let result = app.admin().retry_target_object(&org_id, &id, &object).await;
    done(
        &back,
        result
            .map(|o| format!("{} {} is pushed again now.", o.kind.as_str(), o.local_id))
            .map_err(|e| e.detail),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_intervals_read_for_people() {
        assert_eq!(duration(850_000), "850 ms");
        assert_eq!(duration(12_300_000), "12.3 s");
        assert_eq!(duration(243_000_000), "4 min 3 s");
        assert_eq!(interval(3600), "1 hour");
        assert_eq!(interval(7200), "2 hours");
        assert_eq!(interval(90), "90 seconds");
        assert_eq!(interval(600), "10 minutes");
        assert_eq!(interval(604_800), "7 days");
    }

    #[test]
    fn run_counts_name_what_happened() {
        let c = RunCounts {
            users_in_scope: 3,
            created: 2,
            failed: 1,
            requests: 5,
            ..Default::default()
        };
        assert_eq!(counts_text(&c), "3 in scope · 2 created · 1 failed · 5 requests");
    }

    #[test]
    fn the_form_makes_a_scope_or_says_why_not() {
        let mut d = Draft {
            name: "t".into(),
            base_url: "https://x.example/scim/v2/".into(),
            ..Default::default()
        };
        let input = d.input("secret").unwrap();
        assert!(input.scope.is_everyone());
        assert_eq!(input.auth_kind, AuthKind::Bearer);
        d.scope_mode = "chosen".into();
        let refused = d.input("secret").err().map(|e| e.detail).unwrap_or_default();
        assert!(refused.contains("choose the connections or groups"), "{refused}");
        d.groups = vec!["g1".into()];
        d.auth_kind = "basic".into();
        d.username = "u".into();
        d.token_url = "https://ignored.example".into();
        let input = d.input("secret").unwrap();
        assert_eq!(input.scope.groups, vec!["g1".to_string()]);
        assert_eq!(input.auth.username.as_deref(), Some("u"));
        assert_eq!(input.auth.token_url, None, "only the fields of the kind chosen");
        d.auth_kind = "kerberos".into();
        assert!(d.input("secret").is_err());
    }
}
