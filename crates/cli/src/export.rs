//! `rollcall export --org ORG`: one organization as one JSON document, for support and audits: the
//! organization, its connections (token prefixes, never token hashes) with their policies, default
//! roles and role and workspace mappings, its roles, workspaces (and their settings) and protected
//! users, every user (with full SCIM attributes, status, profile, effective roles and workspaces),
//! every group with its members, its webhook endpoints (never their secrets) and every retained
//! event. Each part is what the management API answers for it.
//! Users, members and events are read a page at a time and written as they come, so the size of an
//! organization does not decide the memory used.

use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::admin::Admin;
use rollcall_server::api::directory::{GroupView, MemberView, UserView};
use rollcall_server::api::roles::{PolicyView, ProtectedUserView, RoleMappingView, RoleView};
use rollcall_server::api::schemas::{ConnectionView, OrganizationView};
use rollcall_server::api::webhooks::WebhookView;
use rollcall_server::api::workspaces::{WorkspaceMappingView, WorkspaceSettingsView, WorkspaceView};
use rollcall_store::{DirectoryQuery, EventQuery, GroupQuery};
use rollcall_webhooks::EventView;
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;

/// The format of the document, for whoever reads it later.
pub const FORMAT: &str = "rollcall-export/1";

const PAGE: i64 = 500;

/// Counts of what was written.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub connections: usize,
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
    pub events: usize,
    pub webhooks: usize,
}

fn io(e: std::io::Error) -> String {
    format!("writing the export: {e}")
}

fn value(v: &impl Serialize) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}

/// Writes `items` into a JSON array being written (`first`: nothing written in it yet).
fn items<T: Serialize>(
    out: &mut dyn Write,
    first: &mut bool,
    items: impl IntoIterator<Item = T>,
) -> Result<usize, String> {
    let mut n = 0;
    for item in items {
        if !*first {
            out.write_all(b",").map_err(io)?;
        }
        *first = false;
        out.write_all(value(&item)?.as_bytes()).map_err(io)?;
        n += 1;
    }
    Ok(n)
}

/// Writes the organization `org` (id or name) to `out`.
pub async fn export(
    admin: &Admin,
    registry: Arc<SchemaRegistry>,
    org: &str,
    out: &mut dyn Write,
) -> Result<Summary, String> {
    let err = |e: rollcall_server::admin::AdminError| e.to_string();
    let org = admin.find_organization(org).await.map_err(err)?;
    let mut summary = Summary::default();
    let (connections, mut profiles) = admin.profiles(registry, &org.id).await.map_err(err)?;
    let mut conns = Vec::new();
    for c in &connections {
        let mappings = admin.list_role_mappings(&c.id).await.map_err(err)?;
        let defaults = admin.default_roles(&c.id).await.map_err(err)?;
        let workspace_mappings = admin.list_workspace_mappings(&c.id).await.map_err(err)?;
        conns.push(json!({
            "connection": ConnectionView::new(admin, c),
            "policy": PolicyView::from(&c.policy),
            "default_roles": defaults.iter().map(RoleView::from).collect::<Vec<_>>(),
            "role_mappings": mappings.iter().map(RoleMappingView::from).collect::<Vec<_>>(),
            "workspace_mappings": workspace_mappings.iter().map(WorkspaceMappingView::from).collect::<Vec<_>>(),
        }));
    }
    summary.connections = conns.len();
    let roles = admin.list_roles(&org.id).await.map_err(err)?;
    let workspaces = admin.list_workspaces(&org.id).await.map_err(err)?;
    let workspace_settings = admin.workspace_settings(&org.id).await.map_err(err)?;
    let protected = admin.list_protected_users(&org.id).await.map_err(err)?;
    let webhooks = admin.list_webhooks(Some(&org.id)).await.map_err(err)?;
    summary.webhooks = webhooks.len();
    let head = json!({
        "format": FORMAT,
        "exported_at": rollcall_webhooks::payload::rfc3339(rollcall_store::sqlite::now_us()),
        "organization": OrganizationView::from(&org),
        "connections": conns,
        "roles": roles.iter().map(RoleView::from).collect::<Vec<_>>(),
        "workspaces": workspaces.iter().map(WorkspaceView::from).collect::<Vec<_>>(),
        "workspace_settings": WorkspaceSettingsView::from(&workspace_settings),
        "protected_users": protected.iter().map(ProtectedUserView::from).collect::<Vec<_>>(),
        "webhooks": webhooks.iter().map(WebhookView::from).collect::<Vec<_>>(),
    });
    // The small parts first, then the large ones streamed into the same object.
    let head = value(&head)?;
    out.write_all(&head.as_bytes()[..head.len() - 1]).map_err(io)?;

    out.write_all(b",\"users\":[").map_err(io)?;
    let (mut after, mut first) = (0, true);
    loop {
        let query = DirectoryQuery {
            after_pk: after,
            limit: PAGE,
            include_staging: true,
            ..Default::default()
        };
        let page = admin.directory_users(&org.id, query).await.map_err(err)?;
        let views = page
            .items
            .iter()
            .map(|u| UserView::new(u, &mut profiles, &connections, true))
            .collect::<Vec<_>>();
        summary.users += items(out, &mut first, views)?;
        match page.next_after {
            Some(pk) => after = pk,
            None => break,
        }
    }
    out.write_all(b"]").map_err(io)?;

    out.write_all(b",\"groups\":[").map_err(io)?;
    let (mut after, mut first_group) = (0, true);
    loop {
        let query = GroupQuery {
            after_pk: after,
            limit: PAGE,
            include_staging: true,
            ..Default::default()
        };
        let page = admin.directory_groups(&org.id, query).await.map_err(err)?;
        for g in &page.items {
            if !first_group {
                out.write_all(b",").map_err(io)?;
            }
            first_group = false;
            // The group's view with its members added as a last field.
            let view = value(&GroupView::from(g))?;
            out.write_all(&view.as_bytes()[..view.len() - 1]).map_err(io)?;
            out.write_all(b",\"members\":[").map_err(io)?;
            let (mut member_after, mut first) = (0, true);
            loop {
                let members = admin
                    .directory_group_members(&org.id, &g.id, member_after, PAGE)
                    .await
                    .map_err(err)?;
                summary.memberships += items(out, &mut first, members.items.iter().map(MemberView::from))?;
                match members.next_after {
                    Some(pk) => member_after = pk,
                    None => break,
                }
            }
            out.write_all(b"]}").map_err(io)?;
            summary.groups += 1;
        }
        match page.next_after {
            Some(pk) => after = pk,
            None => break,
        }
    }
    out.write_all(b"]").map_err(io)?;

    out.write_all(b",\"events\":[").map_err(io)?;
    let (mut after_seq, mut first) = (0, true);
    loop {
        let q = EventQuery {
            after_seq,
            limit: PAGE,
            org_id: Some(org.id.clone()),
            ..Default::default()
        };
        let page = admin.events(&q).await.map_err(err)?;
        summary.events += items(out, &mut first, page.events.iter().map(EventView::from))?;
        match (page.has_more, page.events.last()) {
            (true, Some(e)) => after_seq = e.seq,
            _ => break,
        }
    }
    out.write_all(b"]").map_err(io)?;
    out.write_all(b"}\n").map_err(io)?;
    out.flush().map_err(io)?;
    Ok(summary)
}
