//! `rollcall target …`: outbound provisioning targets (docs/outbound.md). Each command is a thin
//! call of the same [`Admin`] operation the management API uses; `--json` prints the API's views.
//! Credentials are read from a file or an environment variable, never from the command line.

use clap::Subcommand;
use rollcall_server::admin::{Admin, AdminError, TargetInput};
use rollcall_server::api::outbound::{ObjectView, RunView, TargetView};
use rollcall_store::WriteContext;
use rollcall_store::outbound::{
    AttributeMapping, AuthKind, AuthSettings, DeletionThreshold, Deprovision, ObjectState, RateLimit, TargetScope,
    TargetStatus, TargetUpdate,
};
use serde::Serialize;
use std::path::PathBuf;

fn err(e: AdminError) -> String {
    e.to_string()
}

fn json(v: &impl Serialize) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum TargetCommand {
    /// List an organization's provisioning targets.
    List {
        /// Organization (id or name).
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a provisioning target. It pushes nothing until approved (`target plan`, then
    /// `target approve`).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// The target's SCIM base URL.
        #[arg(long)]
        url: String,
        /// generic, aws-iam-identity-center, github-emu, github-organization, salesforce, slack.
        #[arg(long, default_value = "generic")]
        profile: String,
        /// bearer, basic or oauth_client_credentials.
        #[arg(long, default_value = "bearer")]
        auth: AuthKind,
        /// A file holding the secret (token, password or client secret).
        #[arg(long, conflicts_with = "credentials_env")]
        credentials_file: Option<PathBuf>,
        /// An environment variable holding the secret.
        #[arg(long)]
        credentials_env: Option<String>,
        /// Basic: the user name.
        #[arg(long)]
        username: Option<String>,
        /// OAuth 2.0: the token endpoint, client id and scope.
        #[arg(long)]
        token_url: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        oauth_scope: Option<String>,
        /// Push the active users of this connection (repeatable).
        #[arg(long = "connection")]
        connections: Vec<String>,
        /// Push the active members of this group (Rollcall id; repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Push this group as a group (Rollcall id; repeatable).
        #[arg(long = "push-group")]
        push_groups: Vec<String>,
        /// deactivate (default) or delete.
        #[arg(long, default_value = "deactivate")]
        deprovision: Deprovision,
        /// Seconds between full reconciliations.
        #[arg(long, default_value_t = 3600)]
        interval: i64,
        /// The target's own rate limit, requests a minute (default: its profile's, from the
        /// vendor's published limits).
        #[arg(long)]
        rate_limit: Option<u32>,
        /// With --rate-limit: requests at once after a pause (default: a tenth of it).
        #[arg(long, requires = "rate_limit")]
        burst: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// A target (never its credentials).
    Show {
        #[arg(long)]
        org: String,
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// What a push would do now, writing nothing.
    Plan {
        #[arg(long)]
        org: String,
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve the push (after reading the plan): a full run starts.
    Approve {
        #[arg(long)]
        org: String,
        target: String,
    },
    /// Ask for a full reconciliation now (run by `rollcall serve`).
    Sync {
        #[arg(long)]
        org: String,
        target: String,
    },
    /// Pause a target (nothing is pushed until it is resumed).
    Pause {
        #[arg(long)]
        org: String,
        target: String,
    },
    /// Resume a paused or quarantined target.
    Resume {
        #[arg(long)]
        org: String,
        target: String,
    },
    /// A target's runs, newest first.
    Runs {
        #[arg(long)]
        org: String,
        target: String,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// A target's mapping table (`--state failed`: the errors).
    Objects {
        #[arg(long)]
        org: String,
        target: String,
        #[arg(long)]
        state: Option<ObjectState>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Push one object again at the next run.
    Retry {
        #[arg(long)]
        org: String,
        target: String,
        /// Rollcall id of the user or group.
        object: String,
    },
    /// Delete a target (what it pushed stays on the target).
    Delete {
        #[arg(long)]
        org: String,
        target: String,
    },
}

fn credentials(file: Option<PathBuf>, env: Option<String>) -> Result<String, String> {
    match (file, env) {
        (Some(f), _) => std::fs::read_to_string(&f)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", f.display())),
        (None, Some(v)) => std::env::var(&v).map_err(|_| format!("the environment variable {v} is not set")),
        (None, None) => Err("give the secret with --credentials-file or --credentials-env".into()),
    }
}

fn status(
    admin: &Admin,
    by: &WriteContext,
    org: &str,
    target: &str,
    s: TargetStatus,
) -> impl Future<Output = Result<(), String>> {
    let (admin, by, org, target) = (admin.clone(), by.clone(), org.to_string(), target.to_string());
    async move {
        let t = admin
            .update_target(
                &by,
                &org,
                &target,
                TargetUpdate {
                    status: Some(s),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        println!("{} is {}", t.name, t.status);
        Ok(())
    }
}

pub async fn target(admin: &Admin, by: &WriteContext, cmd: TargetCommand) -> Result<(), String> {
    match cmd {
        TargetCommand::List { org, json: as_json } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let list = admin.list_targets(&org_id).await.map_err(err)?;
            let views: Vec<TargetView> = list.iter().map(TargetView::from).collect();
            if as_json {
                json(&views);
            } else {
                println!("ID\tNAME\tPROFILE\tSTATUS\tAPPROVED\tBASE_URL");
                for t in &views {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t.id, t.name, t.profile, t.status, t.approved, t.base_url
                    );
                }
            }
        }
        TargetCommand::Create {
            org,
            name,
            url,
            profile,
            auth,
            credentials_file,
            credentials_env,
            username,
            token_url,
            client_id,
            oauth_scope,
            connections,
            groups,
            push_groups,
            deprovision,
            interval,
            rate_limit,
            burst,
            json: as_json,
        } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let secret = credentials(credentials_file, credentials_env)?;
            let t = admin
                .create_target(
                    by,
                    &org_id,
                    TargetInput {
                        name,
                        base_url: url,
                        profile,
                        auth_kind: auth,
                        auth: AuthSettings {
                            username,
                            token_url,
                            client_id,
                            scope: oauth_scope,
                        },
                        credentials: secret,
                        scope: TargetScope {
                            connections,
                            groups,
                            push_groups,
                        },
                        mapping: AttributeMapping::default(),
                        deprovision,
                        deletion_threshold: DeletionThreshold::default(),
                        rate_limit: rate_limit.map(|per_minute| RateLimit { per_minute, burst }),
                        interval_s: interval,
                    },
                )
                .await
                .map_err(err)?;
            if as_json {
                json(&TargetView::from(&t));
            } else {
                println!("Created provisioning target {} ({})", t.name, t.id);
                println!(
                    "It pushes nothing until approved: `rollcall target plan --org {org} {}`, then `rollcall target approve --org {org} {}`",
                    t.id, t.id
                );
            }
        }
        TargetCommand::Show {
            org,
            target,
            json: as_json,
        } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let t = admin.target(&org_id, &target).await.map_err(err)?;
            let v = TargetView::from(&t);
            if as_json {
                json(&v);
            } else {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
        }
        TargetCommand::Plan {
            org,
            target,
            json: as_json,
        } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let p = admin.target_plan(&org_id, &target).await.map_err(err)?;
            if as_json {
                json(&p);
            } else {
                let s = &p.summary;
                println!(
                    "in scope {}; create {}, link {}, ambiguous {}, update {}, unchanged {}, deactivate {}, delete {}, reactivate {}",
                    s.users_in_scope,
                    s.create,
                    s.link,
                    s.ambiguous,
                    s.update,
                    s.unchanged,
                    s.deactivate,
                    s.delete,
                    s.reactivate
                );
                if s.exceeds_deletion_threshold {
                    println!(
                        "the deprovisions are more than the deletion threshold allows: a push would pause the target"
                    );
                }
                println!("USER_ID\tUSER_NAME\tACTION\tDETAIL");
                for u in &p.users {
                    let detail = match &u.action {
                        rollcall_outbound::plan::UserAction::Link {
                            matched_by, remote_id, ..
                        } => {
                            format!("{remote_id} by {}", matched_by.attribute())
                        }
                        rollcall_outbound::plan::UserAction::Ambiguous { candidates, .. } => candidates.join(","),
                        rollcall_outbound::plan::UserAction::Update { changes, .. }
                        | rollcall_outbound::plan::UserAction::Reactivate { changes, .. } => changes
                            .iter()
                            .map(|c| c.attribute.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        _ => String::new(),
                    };
                    println!(
                        "{}\t{}\t{}\t{}",
                        u.user_id,
                        u.user_name.as_deref().unwrap_or("-"),
                        u.action.name(),
                        detail
                    );
                }
            }
        }
        TargetCommand::Approve { org, target } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let t = admin.approve_target(by, &org_id, &target).await.map_err(err)?;
            println!("Approved {}: `rollcall serve` pushes it now", t.name);
        }
        TargetCommand::Sync { org, target } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let t = admin.sync_target(&org_id, &target).await.map_err(err)?;
            println!(
                "A full reconciliation of {} is due now (`rollcall serve` runs it)",
                t.name
            );
        }
        TargetCommand::Pause { org, target } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            status(admin, by, &org_id, &target, TargetStatus::Paused).await?;
        }
        TargetCommand::Resume { org, target } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            status(admin, by, &org_id, &target, TargetStatus::Enabled).await?;
        }
        TargetCommand::Runs {
            org,
            target,
            limit,
            json: as_json,
        } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let (runs, _) = admin.target_runs(&org_id, &target, None, limit).await.map_err(err)?;
            let views: Vec<RunView> = runs.iter().map(RunView::from).collect();
            if as_json {
                json(&views);
            } else {
                println!(
                    "ID\tKIND\tSTATUS\tSTARTED\tDURATION_MS\tCREATED\tLINKED\tUPDATED\tDEACTIVATED\tDELETED\tFAILED\tERROR"
                );
                for r in &views {
                    let c = &r.counts;
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.id,
                        r.kind,
                        r.status,
                        r.started_at,
                        r.duration_ms.map_or("-".into(), |d| d.to_string()),
                        c.created,
                        c.linked,
                        c.updated,
                        c.deactivated,
                        c.deleted,
                        c.failed,
                        r.error.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        TargetCommand::Objects {
            org,
            target,
            state,
            limit,
            json: as_json,
        } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            let (objs, _) = admin
                .target_objects(&org_id, &target, state, None, limit)
                .await
                .map_err(err)?;
            let views: Vec<ObjectView> = objs.iter().map(ObjectView::from).collect();
            if as_json {
                json(&views);
            } else {
                println!("ID\tTYPE\tREMOTE_ID\tSTATE\tATTEMPTS\tERROR");
                for o in &views {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        o.id,
                        o.kind,
                        o.remote_id.as_deref().unwrap_or("-"),
                        o.state,
                        o.attempts,
                        o.error.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        TargetCommand::Retry { org, target, object } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            admin
                .retry_target_object(&org_id, &target, &object)
                .await
                .map_err(err)?;
            println!("{object} is pushed again at the next run");
        }
        TargetCommand::Delete { org, target } => {
            let org_id = admin.find_organization(&org).await.map_err(err)?.id;
            admin.delete_target(by, &org_id, &target).await.map_err(err)?;
            println!("Deleted provisioning target {target}");
        }
    }
    Ok(())
}
