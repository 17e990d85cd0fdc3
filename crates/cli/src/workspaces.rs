//! `rollcall workspace`, `rollcall workspace-mapping` and `rollcall workspace-settings`: the
//! shape of the `role` and `role-mapping` commands, on the same [`Admin`] operations as the
//! management API's workspace routes; `--json` prints the API's views.

use crate::ops::{err, json, or_dash, table};
use clap::Subcommand;
use rollcall_server::admin::{Admin, RoleEffect};
use rollcall_server::api::workspaces::{
    WorkspaceEffectView, WorkspaceMappingView, WorkspaceSettingsView, WorkspaceView,
};
use rollcall_store::roles::RoleMatch;
use rollcall_store::{WorkspaceUpdate, WriteContext};

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// List an organization's workspaces.
    List {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// Define a workspace: what the application checks (`key`), with a display name.
    Create {
        #[arg(long)]
        org: String,
        /// Unique in the organization, ignoring case.
        #[arg(long)]
        key: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a workspace's key or name.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["key", "name"])))]
    Update {
        #[arg(long)]
        org: String,
        /// Workspace id or key.
        workspace: String,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a workspace (its mappings go with it and its members leave it; asks first, `--yes`
    /// to skip).
    Delete {
        #[arg(long)]
        org: String,
        /// Workspace id or key.
        workspace: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum WorkspaceMappingCommand {
    /// List a connection's workspace mappings.
    List {
        #[arg(long)]
        connection: String,
        #[arg(long)]
        json: bool,
    },
    /// Make the members of an IdP group (by id or name) members of a workspace.
    #[command(group(clap::ArgGroup::new("match").required(true).args(["group_id", "group_name"])))]
    Create {
        #[arg(long)]
        connection: String,
        /// Workspace id or key.
        #[arg(long)]
        workspace: String,
        /// The group's IdP id (`externalId`) or Rollcall id.
        #[arg(long)]
        group_id: Option<String>,
        /// The group's `displayName`, ignoring case.
        #[arg(long)]
        group_name: Option<String>,
        /// Show which users would join or leave which workspaces, and create nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a workspace mapping (asks first, `--yes` to skip).
    Delete {
        #[arg(long)]
        connection: String,
        mapping: String,
        #[arg(long)]
        yes: bool,
        /// Show which users would leave which workspaces, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// With `--dry-run`: the effect as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Subcommand)]
pub enum WorkspaceSettingsCommand {
    /// An organization's default workspace and whether every pushed group gets a workspace.
    Show {
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// Change them; what is not given stays as it is. Every user's workspaces follow.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["default", "no_default", "auto_create"])))]
    Set {
        #[arg(long)]
        org: String,
        /// The workspace (id or key) every active user is a member of.
        #[arg(long, conflicts_with = "no_default")]
        default: Option<String>,
        /// No default workspace.
        #[arg(long)]
        no_default: bool,
        /// `on`: a workspace for every group the organization's connections push (keyed
        /// `group:<group id>`, named and deleted with the group); `off`: no more of them.
        #[arg(long)]
        auto_create: Option<Switch>,
        #[arg(long)]
        json: bool,
    },
}

/// Prints what a change would do (a dry run), as the role commands do.
fn print_effect(effect: &RoleEffect, as_json: bool) {
    if as_json {
        json(&WorkspaceEffectView::from(effect));
        return;
    }
    println!(
        "Dry run, nothing changed: {} ({} active users considered)",
        effect.sentence_of("workspaces"),
        effect.users_considered
    );
    if effect.is_empty() {
        return;
    }
    table(
        &["WORKSPACE", "NAME", "GAINED", "LOST"],
        effect.changes.iter().map(|c| {
            vec![
                c.role_key.clone(),
                c.role_name.clone(),
                c.gained.to_string(),
                c.lost.to_string(),
            ]
        }),
    );
    println!();
    let mut rows = Vec::new();
    for c in &effect.changes {
        for (change, sample) in [("gains", &c.gained_sample), ("loses", &c.lost_sample)] {
            for u in sample {
                rows.push(vec![
                    change.to_string(),
                    c.role_key.clone(),
                    u.id.clone(),
                    or_dash(u.user_name.as_deref()),
                    or_dash(u.email.as_deref()),
                ]);
            }
        }
    }
    table(&["CHANGE", "WORKSPACE", "USER ID", "USERNAME", "EMAIL"], rows);
}

fn print_workspace(w: &rollcall_store::Workspace, as_json: bool, what: &str) {
    if as_json {
        json(&WorkspaceView::from(w));
    } else {
        println!("workspace {} ({}) {what}: {}", w.key, w.name, w.id);
    }
}

pub async fn workspace(admin: &Admin, by: &WriteContext, cmd: WorkspaceCommand) -> Result<(), String> {
    match cmd {
        WorkspaceCommand::List { org, json: as_json } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let list = admin.list_workspaces(&o.id).await.map_err(err)?;
            if as_json {
                json(&list.iter().map(WorkspaceView::from).collect::<Vec<_>>());
            } else {
                table(
                    &["ID", "KEY", "NAME", "GROUP"],
                    list.iter().map(|w| {
                        vec![
                            w.id.clone(),
                            w.key.clone(),
                            w.name.clone(),
                            or_dash(w.group.as_ref().map(|g| g.group_id.as_str())),
                        ]
                    }),
                );
            }
        }
        WorkspaceCommand::Create {
            org,
            key,
            name,
            json: as_json,
        } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let w = admin
                .create_workspace(by, &o.id, &key, name.as_deref())
                .await
                .map_err(err)?;
            print_workspace(&w, as_json, "created");
        }
        WorkspaceCommand::Update {
            org,
            workspace,
            key,
            name,
            json: as_json,
        } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let w = admin
                .update_workspace(by, &o.id, &workspace, WorkspaceUpdate { key, name })
                .await
                .map_err(err)?;
            print_workspace(&w, as_json, "updated");
        }
        WorkspaceCommand::Delete { org, workspace, yes } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let w = admin.workspace(&o.id, &workspace).await.map_err(err)?;
            crate::confirm(
                yes,
                &format!(
                    "Deleting workspace {} of {}: its mappings go and its members leave it",
                    w.key, o.name
                ),
                &w.key,
            )?;
            admin.delete_workspace(by, &o.id, &w.id).await.map_err(err)?;
            println!("workspace {} deleted", w.key);
        }
    }
    Ok(())
}

pub async fn workspace_mapping(admin: &Admin, by: &WriteContext, cmd: WorkspaceMappingCommand) -> Result<(), String> {
    match cmd {
        WorkspaceMappingCommand::List {
            connection,
            json: as_json,
        } => {
            let list = admin.list_workspace_mappings(&connection).await.map_err(err)?;
            if as_json {
                json(&list.iter().map(WorkspaceMappingView::from).collect::<Vec<_>>());
            } else {
                table(
                    &["ID", "WORKSPACE", "MATCH", "VALUE"],
                    list.iter().map(|m| {
                        vec![
                            m.id.clone(),
                            m.workspace_key.clone(),
                            m.matches.kind().to_string(),
                            m.matches.value().to_string(),
                        ]
                    }),
                );
            }
        }
        WorkspaceMappingCommand::Create {
            connection,
            workspace,
            group_id,
            group_name,
            dry_run,
            json: as_json,
        } => {
            let matches = match (group_id, group_name) {
                (Some(v), None) => RoleMatch::GroupId(v),
                (None, Some(v)) => RoleMatch::GroupName(v),
                _ => return Err("give one of --group-id, --group-name".into()),
            };
            if dry_run {
                let effect = admin
                    .preview_workspace_mapping(&connection, &workspace, matches)
                    .await
                    .map_err(err)?;
                print_effect(&effect, as_json);
                return Ok(());
            }
            let m = admin
                .create_workspace_mapping(by, &connection, &workspace, matches)
                .await
                .map_err(err)?;
            if as_json {
                json(&WorkspaceMappingView::from(&m));
            } else {
                println!(
                    "workspace mapping {} created: {} on connection {}",
                    m.id, m.workspace_key, m.connection_id
                );
            }
        }
        WorkspaceMappingCommand::Delete {
            connection,
            mapping,
            yes,
            dry_run,
            json: as_json,
        } => {
            let effect = admin
                .preview_workspace_mapping_removal(&connection, &mapping)
                .await
                .map_err(err)?;
            if dry_run {
                print_effect(&effect, as_json);
                return Ok(());
            }
            crate::confirm(
                yes,
                &format!(
                    "Deleting workspace mapping {mapping} ({})",
                    effect.sentence_of("workspaces")
                ),
                &mapping,
            )?;
            admin
                .delete_workspace_mapping(by, &connection, &mapping)
                .await
                .map_err(err)?;
            println!("workspace mapping {mapping} deleted");
        }
    }
    Ok(())
}

pub async fn workspace_settings(admin: &Admin, by: &WriteContext, cmd: WorkspaceSettingsCommand) -> Result<(), String> {
    let (org, settings, as_json) = match cmd {
        WorkspaceSettingsCommand::Show { org, json: as_json } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            (o.name, admin.workspace_settings(&o.id).await.map_err(err)?, as_json)
        }
        WorkspaceSettingsCommand::Set {
            org,
            default,
            no_default,
            auto_create,
            json: as_json,
        } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let default = match (default.as_deref(), no_default) {
                (Some(w), _) => Some(Some(w)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let auto_create = auto_create.map(|s| matches!(s, Switch::On));
            let s = admin
                .set_workspace_settings(by, &o.id, default, auto_create)
                .await
                .map_err(err)?;
            (o.name, s, as_json)
        }
    };
    if as_json {
        json(&WorkspaceSettingsView::from(&settings));
    } else {
        println!(
            "{org}: default workspace {}, a workspace for every group {}",
            or_dash(settings.default_workspace_key.as_deref()),
            if settings.auto_create { "on" } else { "off" }
        );
    }
    Ok(())
}
