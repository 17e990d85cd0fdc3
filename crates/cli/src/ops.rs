//! The operator's everyday commands beyond creating things: renaming and deleting organizations,
//! disabling and enabling connections, roles and role mappings, webhook endpoints (list, attempts,
//! redelivery, test message), setup links, and the lists. Each is a thin call
//! of the same [`Admin`] operation the management API uses; `--json` prints what the API answers
//! for the same thing (the API's views), the text form a table with a header.

use clap::Subcommand;
use rollcall_server::admin::{Admin, AdminError, RoleEffect};
use rollcall_server::api::api_keys::ApiKeyView;
use rollcall_server::api::roles::{RoleEffectView, RoleMappingView, RoleView};
use rollcall_server::api::schemas::{ConnectionView, OrganizationView};
use rollcall_server::api::setup_links::SetupLinkView;
use rollcall_server::api::webhooks::{AttemptView, WebhookView};
use rollcall_store::roles::RoleMatch;
use rollcall_store::{ConnectionStatus, ConnectionUpdate, WebhookAttempt, WriteContext};
use serde::Serialize;

pub(crate) fn err(e: AdminError) -> String {
    e.to_string()
}

/// Prints `rows` under `header`, columns separated by tabs (one row a line, for `cut` and `awk`).
pub(crate) fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    println!("{}", header.join("\t"));
    for r in rows {
        println!("{}", r.join("\t"));
    }
}

pub(crate) fn json(v: &impl Serialize) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

pub(crate) fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// List an organization's roles.
    List {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// Define a role: what the application checks (`key`), with a display name.
    Create {
        #[arg(long)]
        org: String,
        /// Unique in the organization, ignoring case; `scim:<group name>` is granted to that IdP
        /// group's members without a mapping.
        #[arg(long)]
        key: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a role (its mappings and grants go with it; asks first, `--yes` to skip).
    Delete {
        #[arg(long)]
        org: String,
        /// Role id or key.
        role: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum RoleMappingCommand {
    /// List a connection's role mappings.
    List {
        #[arg(long)]
        connection: String,
        #[arg(long)]
        json: bool,
    },
    /// Grant a role for membership of an IdP group (by id or name) or for an Entra app role.
    #[command(group(clap::ArgGroup::new("match").required(true).args(["group_id", "group_name", "app_role"])))]
    Create {
        #[arg(long)]
        connection: String,
        /// Role id or key.
        #[arg(long)]
        role: String,
        /// The group's IdP id (`externalId`) or Rollcall id.
        #[arg(long)]
        group_id: Option<String>,
        /// The group's `displayName`, ignoring case.
        #[arg(long)]
        group_name: Option<String>,
        /// A value of the user's `roles` attribute (how Entra ID sends app role assignments).
        #[arg(long)]
        app_role: Option<String>,
        /// Show which users would gain or lose which roles, and create nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a role mapping (asks first, `--yes` to skip).
    Delete {
        #[arg(long)]
        connection: String,
        mapping: String,
        #[arg(long)]
        yes: bool,
        /// Show which users would lose which roles, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// With `--dry-run`: the effect as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum DefaultRolesCommand {
    /// A connection's default roles.
    Show {
        #[arg(long)]
        connection: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace a connection's default roles; every user's effective roles follow.
    #[command(group(clap::ArgGroup::new("roles").required(true).args(["role", "none"])))]
    Set {
        #[arg(long)]
        connection: String,
        /// A role (id or key); repeat for several.
        #[arg(long)]
        role: Vec<String>,
        /// No default roles.
        #[arg(long)]
        none: bool,
        /// Show which users would gain or lose which roles, and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Prints what a change would do (a dry run): the sentence, the counts per role, then the first
/// users of each role and direction; `--json`: the management API's preview answer.
fn print_effect(effect: &RoleEffect, as_json: bool) {
    if as_json {
        json(&RoleEffectView::from(effect));
        return;
    }
    println!(
        "Dry run, nothing changed: {} ({} active users considered)",
        effect.sentence(),
        effect.users_considered
    );
    if effect.is_empty() {
        return;
    }
    table(
        &["ROLE", "NAME", "GAINED", "LOST"],
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
    table(&["CHANGE", "ROLE", "USER ID", "USERNAME", "EMAIL"], rows);
    let more: i64 = effect
        .changes
        .iter()
        .map(|c| c.gained - c.gained_sample.len() as i64 + c.lost - c.lost_sample.len() as i64)
        .sum();
    if more > 0 {
        println!("(and {more} more, not listed)");
    }
}

pub async fn default_roles(admin: &Admin, by: &WriteContext, cmd: DefaultRolesCommand) -> Result<(), String> {
    let print = |roles: &[rollcall_store::Role], as_json: bool| {
        if as_json {
            json(&roles.iter().map(RoleView::from).collect::<Vec<_>>());
        } else {
            table(
                &["ID", "KEY", "NAME"],
                roles.iter().map(|r| vec![r.id.clone(), r.key.clone(), r.name.clone()]),
            );
        }
    };
    match cmd {
        DefaultRolesCommand::Show {
            connection,
            json: as_json,
        } => {
            let roles = admin.default_roles(&connection).await.map_err(err)?;
            print(&roles, as_json);
        }
        DefaultRolesCommand::Set {
            connection,
            role,
            none: _,
            dry_run,
            json: as_json,
        } => {
            if dry_run {
                let effect = admin.preview_default_roles(&connection, &role).await.map_err(err)?;
                print_effect(&effect, as_json);
            } else {
                let roles = admin.set_default_roles(by, &connection, &role).await.map_err(err)?;
                print(&roles, as_json);
            }
        }
    }
    Ok(())
}

pub async fn org_list(admin: &Admin, as_json: bool) -> Result<(), String> {
    let orgs = admin.all_organizations().await.map_err(err)?;
    if as_json {
        json(&orgs.iter().map(OrganizationView::from).collect::<Vec<_>>());
    } else {
        table(
            &["ID", "NAME", "CREATED"],
            orgs.iter()
                .map(|o| vec![o.id.clone(), o.name.clone(), OrganizationView::from(o).created_at]),
        );
    }
    Ok(())
}

pub async fn org_rename(admin: &Admin, by: &WriteContext, org: &str, name: &str, as_json: bool) -> Result<(), String> {
    let o = admin.find_organization(org).await.map_err(err)?;
    let o = admin.rename_organization(by, &o.id, name).await.map_err(err)?;
    if as_json {
        json(&OrganizationView::from(&o));
    } else {
        println!("organization {} renamed to {}", o.id, o.name);
    }
    Ok(())
}

pub async fn org_delete(admin: &Admin, by: &WriteContext, org: &str, yes: bool) -> Result<(), String> {
    let o = admin.find_organization(org).await.map_err(err)?;
    crate::confirm(
        yes,
        &format!(
            "Deleting organization {} ({}) with its connections, users and groups",
            o.name, o.id
        ),
        &o.name,
    )?;
    admin.delete_organization(by, &o.id, Some(&o.name)).await.map_err(err)?;
    println!("organization {} ({}) deleted", o.name, o.id);
    Ok(())
}

/// A connection as the API shows it; `scim_base_url` is `null` when the public URL is unknown here.
fn connection_json(admin: &Admin, c: &rollcall_store::Connection, url_known: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(ConnectionView::new(admin, c)).unwrap_or_default();
    if !url_known {
        v["scim_base_url"] = serde_json::Value::Null;
    }
    v
}

pub async fn connection_list(admin: &Admin, org: Option<&str>, url_known: bool, as_json: bool) -> Result<(), String> {
    let org_id = match org {
        Some(o) => Some(admin.find_organization(o).await.map_err(err)?.id),
        None => None,
    };
    let list = admin.list_connections(org_id.as_deref()).await.map_err(err)?;
    if as_json {
        json(
            &list
                .iter()
                .map(|c| connection_json(admin, c, url_known))
                .collect::<Vec<_>>(),
        );
        return Ok(());
    }
    table(
        &[
            "ID",
            "ORGANIZATION",
            "IDP",
            "DETECTED IDP",
            "STATUS",
            "NAME",
            "TOKEN",
            "LAST REQUEST",
        ],
        list.iter().map(|c| {
            let token = match (&c.token_prefix, &c.next_token_prefix) {
                (Some(t), Some(n)) => format!("{t}… (rotating to {n}…)"),
                (Some(t), None) => format!("{t}…"),
                (None, _) if c.kind.is_directory() => format!("(reads {})", c.kind),
                (None, _) => "(no token)".to_string(),
            };
            let view = ConnectionView::new(admin, c);
            vec![
                c.id.clone(),
                c.org_id.clone(),
                c.idp.to_string(),
                detected_idp_cell(c.idp, c.detected_idp),
                c.status.to_string(),
                c.name.clone(),
                token,
                or_dash(view.last_request_at.as_deref()),
            ]
        }),
    );
    Ok(())
}

/// The `DETECTED IDP` column: the identity provider recognised from the connection's requests,
/// flagged when it is not the configured one.
fn detected_idp_cell(configured: rollcall_store::IdpKind, detected: Option<rollcall_store::IdpKind>) -> String {
    match detected {
        None => "-".to_string(),
        Some(d) if d == configured => d.to_string(),
        Some(d) => format!("{d} (configured: {configured})"),
    }
}

/// Disables (every SCIM request refused with 401, tokens kept) or enables a connection.
pub async fn connection_set_status(
    admin: &Admin,
    by: &WriteContext,
    id: &str,
    status: ConnectionStatus,
    url_known: bool,
    as_json: bool,
) -> Result<(), String> {
    let update = ConnectionUpdate {
        status: Some(status),
        ..ConnectionUpdate::default()
    };
    let c = admin.update_connection(by, id, update).await.map_err(err)?;
    if as_json {
        json(&connection_json(admin, &c, url_known));
    } else {
        println!("connection {} is {}", c.id, c.status);
    }
    Ok(())
}

pub async fn api_key_list(admin: &Admin, as_json: bool) -> Result<(), String> {
    let keys = admin.list_api_keys().await.map_err(err)?;
    if as_json {
        json(&keys.iter().map(ApiKeyView::from).collect::<Vec<_>>());
        return Ok(());
    }
    table(
        &["ID", "NAME", "PREFIX", "CREATED", "REVOKED"],
        keys.iter().map(|k| {
            let v = ApiKeyView::from(k);
            vec![
                v.id,
                v.name,
                format!("{}…", v.key_prefix),
                v.created_at,
                or_dash(v.revoked_at.as_deref()),
            ]
        }),
    );
    Ok(())
}

pub async fn role(admin: &Admin, by: &WriteContext, cmd: RoleCommand) -> Result<(), String> {
    match cmd {
        RoleCommand::List { org, json: as_json } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let roles = admin.list_roles(&o.id).await.map_err(err)?;
            if as_json {
                json(&roles.iter().map(RoleView::from).collect::<Vec<_>>());
            } else {
                table(
                    &["ID", "KEY", "NAME", "DESCRIPTION"],
                    roles.iter().map(|r| {
                        vec![
                            r.id.clone(),
                            r.key.clone(),
                            r.name.clone(),
                            or_dash(r.description.as_deref()),
                        ]
                    }),
                );
            }
        }
        RoleCommand::Create {
            org,
            key,
            name,
            description,
            json: as_json,
        } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let r = admin
                .create_role(by, &o.id, &key, name.as_deref(), description.as_deref())
                .await
                .map_err(err)?;
            if as_json {
                json(&RoleView::from(&r));
            } else {
                println!("role {} ({}) created: {}", r.key, r.name, r.id);
            }
        }
        RoleCommand::Delete { org, role, yes } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let r = admin.role(&o.id, &role).await.map_err(err)?;
            crate::confirm(
                yes,
                &format!("Deleting role {} of {} with its mappings and grants", r.key, o.name),
                &r.key,
            )?;
            admin.delete_role(by, &o.id, &r.id).await.map_err(err)?;
            println!("role {} deleted", r.key);
        }
    }
    Ok(())
}

pub async fn role_mapping(admin: &Admin, by: &WriteContext, cmd: RoleMappingCommand) -> Result<(), String> {
    match cmd {
        RoleMappingCommand::List {
            connection,
            json: as_json,
        } => {
            let list = admin.list_role_mappings(&connection).await.map_err(err)?;
            if as_json {
                json(&list.iter().map(RoleMappingView::from).collect::<Vec<_>>());
            } else {
                table(
                    &["ID", "ROLE", "MATCH", "VALUE"],
                    list.iter().map(|m| {
                        let (kind, value) = match &m.matches {
                            RoleMatch::GroupId(v) => ("group_id", v),
                            RoleMatch::GroupName(v) => ("group_name", v),
                            RoleMatch::AppRole(v) => ("app_role", v),
                        };
                        vec![m.id.clone(), m.role_key.clone(), kind.to_string(), value.clone()]
                    }),
                );
            }
        }
        RoleMappingCommand::Create {
            connection,
            role,
            group_id,
            group_name,
            app_role,
            dry_run,
            json: as_json,
        } => {
            let matches = match (group_id, group_name, app_role) {
                (Some(v), None, None) => RoleMatch::GroupId(v),
                (None, Some(v), None) => RoleMatch::GroupName(v),
                (None, None, Some(v)) => RoleMatch::AppRole(v),
                _ => return Err("give one of --group-id, --group-name, --app-role".into()),
            };
            if dry_run {
                let effect = admin
                    .preview_role_mapping(&connection, &role, matches)
                    .await
                    .map_err(err)?;
                print_effect(&effect, as_json);
                return Ok(());
            }
            let m = admin
                .create_role_mapping(by, &connection, &role, matches)
                .await
                .map_err(err)?;
            if as_json {
                json(&RoleMappingView::from(&m));
            } else {
                println!(
                    "role mapping {} created: {} on connection {}",
                    m.id, m.role_key, m.connection_id
                );
            }
        }
        RoleMappingCommand::Delete {
            connection,
            mapping,
            yes,
            dry_run,
            json: as_json,
        } => {
            let effect = admin
                .preview_role_mapping_removal(&connection, &mapping)
                .await
                .map_err(err)?;
            if dry_run {
                print_effect(&effect, as_json);
                return Ok(());
            }
            crate::confirm(
                yes,
                &format!("Deleting role mapping {mapping} ({})", effect.sentence()),
                &mapping,
            )?;
            admin
                .delete_role_mapping(by, &connection, &mapping)
                .await
                .map_err(err)?;
            println!("role mapping {mapping} deleted");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// List webhook endpoints with their delivery state.
    List {
        /// Only this organization's endpoints (id or name).
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// An endpoint's delivery attempts, newest first.
    Attempts {
        /// Webhook endpoint id.
        webhook: String,
        /// Most attempts shown, 1 to 1000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Send one event to an endpoint again, now (its cursor does not move); prints the attempt.
    Redeliver {
        /// Webhook endpoint id.
        webhook: String,
        /// The event's id (a delivery's `webhook-id`).
        #[arg(long)]
        event: String,
        #[arg(long)]
        json: bool,
    },
    /// Send a test message (`webhook.ping`) to an endpoint now; prints the attempt.
    Ping {
        /// Webhook endpoint id.
        webhook: String,
        #[arg(long)]
        json: bool,
    },
}

fn attempt_row(a: &AttemptView) -> Vec<String> {
    vec![
        a.id.to_string(),
        a.created_at.clone(),
        a.event_type.clone(),
        a.event_sequence.map_or("-".into(), |s| s.to_string()),
        a.attempt.to_string(),
        serde_json::to_value(a.origin)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        if a.succeeded { "ok" } else { "failed" }.to_string(),
        a.status_code.map_or("-".into(), |s| s.to_string()),
        format!("{:.1}", a.latency_ms),
        or_dash(a.error.as_deref()),
    ]
}

const ATTEMPT_HEADER: [&str; 10] = [
    "ID",
    "AT",
    "EVENT_TYPE",
    "SEQUENCE",
    "ATTEMPT",
    "ORIGIN",
    "RESULT",
    "STATUS",
    "LATENCY_MS",
    "ERROR",
];

/// Prints one attempt; fails (exit status 1) when it did not succeed, so scripts can tell.
fn attempt_outcome(a: &WebhookAttempt, as_json: bool) -> Result<(), String> {
    let view = AttemptView::from(a);
    if as_json {
        json(&view);
    } else {
        table(&ATTEMPT_HEADER, [attempt_row(&view)]);
    }
    if a.succeeded {
        Ok(())
    } else {
        Err(format!(
            "the endpoint did not accept it: {}",
            a.error
                .clone()
                .or(a.status_code.map(|s| format!("HTTP {s}")))
                .unwrap_or_default()
        ))
    }
}

pub async fn webhook(admin: &Admin, cmd: WebhookCommand) -> Result<(), String> {
    match cmd {
        WebhookCommand::List { org, json: as_json } => {
            let org_id = match org {
                Some(o) => Some(admin.find_organization(&o).await.map_err(err)?.id),
                None => None,
            };
            let list = admin.list_webhooks(org_id.as_deref()).await.map_err(err)?;
            let views: Vec<WebhookView> = list.iter().map(WebhookView::from).collect();
            if as_json {
                json(&views);
            } else {
                table(
                    &[
                        "ID",
                        "ORG_ID",
                        "URL",
                        "STATUS",
                        "LAST_SEQUENCE",
                        "FAILING_SINCE",
                        "EVENT_TYPES",
                    ],
                    views.iter().map(|w| {
                        vec![
                            w.id.clone(),
                            or_dash(w.org_id.as_deref()),
                            w.url.clone(),
                            serde_json::to_value(w.status)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            w.last_sequence.to_string(),
                            or_dash(w.failing_since.as_deref()),
                            if w.event_types.is_empty() {
                                "*".to_string()
                            } else {
                                w.event_types.join(",")
                            },
                        ]
                    }),
                );
            }
        }
        WebhookCommand::Attempts {
            webhook,
            limit,
            json: as_json,
        } => {
            let (attempts, _) = admin.webhook_attempts(&webhook, None, limit).await.map_err(err)?;
            let views: Vec<AttemptView> = attempts.iter().map(AttemptView::from).collect();
            if as_json {
                json(&views);
            } else {
                table(&ATTEMPT_HEADER, views.iter().map(attempt_row));
            }
        }
        WebhookCommand::Redeliver {
            webhook,
            event,
            json: as_json,
        } => {
            let a = admin.redeliver_webhook(&webhook, &event).await.map_err(err)?;
            attempt_outcome(&a, as_json)?;
        }
        WebhookCommand::Ping { webhook, json: as_json } => {
            let a = admin.ping_webhook(&webhook).await.map_err(err)?;
            attempt_outcome(&a, as_json)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod detected_idp_tests {
    use super::detected_idp_cell;
    use rollcall_store::IdpKind;

    #[test]
    fn detected_idp_column() {
        assert_eq!(detected_idp_cell(IdpKind::Okta, None), "-");
        assert_eq!(detected_idp_cell(IdpKind::Okta, Some(IdpKind::Okta)), "okta");
        assert_eq!(
            detected_idp_cell(IdpKind::Okta, Some(IdpKind::Entra)),
            "entra (configured: okta)"
        );
    }
}

#[derive(Subcommand)]
pub enum SetupLinkCommand {
    /// Create a link for an organization's IT admin to set up SCIM on the setup page, without an
    /// account; prints its URL (shown once).
    Create {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        /// How long the link works: 5m to 90d (`30m`, `12h`, `7d`, `2w`, or seconds); default 7d.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Where the setup page sends the IT admin when done (an https:// or http:// URL).
        #[arg(long)]
        return_url: Option<String>,
        /// Public base URL the service is reached at, to print the link's URL.
        #[arg(long, env = "ROLLCALL_PUBLIC_URL")]
        public_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List an organization's setup links (newest first; never their URLs).
    List {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a setup link: it stops working at once, and setup pages opened from it are signed out.
    Revoke {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        /// Setup link id.
        id: String,
    },
}

/// A duration as the command line takes it: a number with a unit (`s`, `m`, `h`, `d`, `w`), or
/// seconds without one.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration: use a number with s, m, h, d or w (e.g. 30m, 7d)"))?;
    let per: u64 = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "\"{s}\": unknown unit \"{other}\"; use s, m, h, d or w (e.g. 30m, 7d)"
            ));
        }
    };
    n.checked_mul(per)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("\"{s}\" is too long"))
}

/// `rollcall setup-link ...`. `url_known`: whether `admin` has the public URL identity providers
/// and IT admins reach the service at (given, configured, or recorded by `serve`).
pub async fn setup_link(
    admin: &Admin,
    by: &WriteContext,
    cmd: SetupLinkCommand,
    url_known: bool,
) -> Result<(), String> {
    match cmd {
        SetupLinkCommand::Create {
            org,
            expires_in,
            return_url,
            public_url: _,
            json: as_json,
        } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let issued = admin
                .create_setup_link(by, &o.id, expires_in, return_url.as_deref())
                .await
                .map_err(err)?;
            let path = format!("/setup/{}", issued.token);
            let view = SetupLinkView::from(&issued.link);
            if as_json {
                // What POST /api/v1/organizations/{id}/setup-links answers, with the path for when
                // the public URL is not known here (`url: null`).
                json(&serde_json::json!({
                    "setup_link": view,
                    "url": url_known.then_some(&issued.url),
                    "path": path,
                    "token": issued.token,
                }));
            } else {
                println!(
                    "setup link {} created for {}; it works until {}.",
                    issued.link.id, o.name, view.expires_at
                );
                if url_known {
                    println!(
                        "Setup URL: {}   (shown once; give it to the organization's IT admin)",
                        issued.url
                    );
                } else {
                    println!(
                        "Setup URL: unknown here: no --public-url, no public_url setting, and no `rollcall serve` has \
                         recorded one in this database; it is the URL the service is reached at followed by {path}   \
                         (shown once)"
                    );
                }
            }
        }
        SetupLinkCommand::List { org, json: as_json } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let links = admin.list_setup_links(&o.id).await.map_err(err)?;
            let views: Vec<SetupLinkView> = links.iter().map(SetupLinkView::from).collect();
            if as_json {
                json(&views);
            } else {
                table(
                    &[
                        "ID",
                        "TOKEN",
                        "STATUS",
                        "EXPIRES",
                        "LAST_USED",
                        "CONNECTION",
                        "RETURN_URL",
                    ],
                    views.iter().map(|v| {
                        vec![
                            v.id.clone(),
                            format!("{}...", v.token_prefix),
                            serde_json::to_value(v.status)
                                .ok()
                                .and_then(|s| s.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            v.expires_at.clone(),
                            or_dash(v.last_used_at.as_deref()),
                            or_dash(v.connection_id.as_deref()),
                            or_dash(v.return_url.as_deref()),
                        ]
                    }),
                );
            }
        }
        SetupLinkCommand::Revoke { org, id } => {
            let o = admin.find_organization(&org).await.map_err(err)?;
            let link = admin.revoke_setup_link(by, &o.id, &id).await.map_err(err)?;
            println!(
                "setup link {} of {} revoked; setup pages opened from it are signed out",
                link.id, o.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_duration("600").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration(" 90s ").unwrap(), Duration::from_secs(90));
        for bad in ["", "d", "7x", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}

/// A rule's limit as the command line takes it: a number, or `off` (`None`).
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<u32>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    match s.trim() {
        "off" | "none" => Ok(Limit(None)),
        n => n
            .parse::<u32>()
            .map(|n| Limit(Some(n)))
            .map_err(|_| format!("\"{n}\" is not a number or \"off\"")),
    }
}

#[derive(Subcommand)]
pub enum GuardCommand {
    /// Show a connection's guard against mass deprovisioning: settings, state, counts.
    Show {
        /// Connection id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change the guard's settings; those not given keep their value.
    Set {
        /// Connection id.
        id: String,
        /// Turn the guard on or off.
        #[arg(long)]
        enabled: Option<bool>,
        /// Trip when more than this many users are deprovisioned within the window (`off`: no
        /// absolute rule).
        #[arg(long, value_parser = parse_limit)]
        max_users: Option<Limit>,
        /// Trip when more than this percentage of the active users is (`off`: no percentage rule).
        #[arg(long, value_parser = parse_limit)]
        max_percent: Option<Limit>,
        /// The percentage rule applies only past this many users.
        #[arg(long)]
        min_users: Option<u32>,
        /// The sliding window, in minutes (1 to 10080).
        #[arg(long)]
        window_minutes: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// List the events the guard holds, oldest first.
    Held {
        /// Connection id.
        id: String,
        /// Largest number of events to list.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Release what the guard holds into the event log (and webhooks); re-arms it (asks first;
    /// `--yes` to skip).
    #[command(alias = "approve")]
    Release {
        id: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Discard what the guard holds: the application is never told of it; re-arms it (asks
    /// first; `--yes` to skip).
    #[command(alias = "reject")]
    Discard {
        id: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

fn guard_text(g: &rollcall_server::api::guard::GuardView) {
    let s = &g.settings;
    let users = s
        .max_users
        .map_or("no absolute limit".to_string(), |n| format!("more than {n} users"));
    let percent = s.max_percent.map_or("no percentage limit".to_string(), |n| {
        format!("more than {n} % of active users (past {} users)", s.min_users)
    });
    println!("connection:  {}", g.connection_id);
    println!(
        "status:      {}{}",
        serde_json::to_value(g.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        g.tripped_at
            .as_ref()
            .map(|t| format!(" (tripped at {t})"))
            .unwrap_or_default()
    );
    println!("held:        {} events about {} users", g.held_events, g.held_users);
    println!(
        "window:      {} users deprovisioned in the last {} minutes",
        g.window_deprovisions, s.window_minutes
    );
    println!("trips at:    {users}; {percent}");
}

pub async fn guard(admin: &Admin, by: &WriteContext, cmd: GuardCommand) -> Result<(), String> {
    use rollcall_server::api::guard::{GuardView, HeldEventView};
    match cmd {
        GuardCommand::Show { id, json: as_json } => {
            let g = GuardView::from(&admin.deprovision_guard(&id).await.map_err(err)?);
            if as_json { json(&g) } else { guard_text(&g) }
        }
        GuardCommand::Set {
            id,
            enabled,
            max_users,
            max_percent,
            min_users,
            window_minutes,
            json: as_json,
        } => {
            let mut s = admin.deprovision_guard(&id).await.map_err(err)?.settings;
            if let Some(v) = enabled {
                s.enabled = v;
            }
            if let Some(Limit(v)) = max_users {
                s.max_users = v;
            }
            if let Some(Limit(v)) = max_percent {
                s.max_percent = v;
            }
            if let Some(v) = min_users {
                s.min_users = v;
            }
            if let Some(v) = window_minutes {
                s.window_minutes = v;
            }
            let g = GuardView::from(&admin.set_deprovision_guard(by, &id, s).await.map_err(err)?);
            if as_json { json(&g) } else { guard_text(&g) }
        }
        GuardCommand::Held {
            id,
            limit,
            json: as_json,
        } => {
            let (found, more) = admin.held_events(&id, None, limit.clamp(1, 1000)).await.map_err(err)?;
            let views: Vec<HeldEventView> = found.iter().map(HeldEventView::from).collect();
            if as_json {
                json(&views);
            } else {
                table(
                    &["OCCURRED_AT", "TYPE", "USER_ID", "RESOURCE_TYPE", "RESOURCE_ID"],
                    views.iter().map(|h| {
                        vec![
                            h.occurred_at.clone(),
                            h.kind.clone(),
                            h.user_id.clone(),
                            or_dash(h.resource_type.as_deref()),
                            or_dash(h.resource_id.as_deref()),
                        ]
                    }),
                );
                if more {
                    eprintln!("(more held events than listed: --limit to see more)");
                }
            }
        }
        GuardCommand::Release { id, yes, json: as_json } => resolve_guard(admin, by, &id, true, yes, as_json).await?,
        GuardCommand::Discard { id, yes, json: as_json } => resolve_guard(admin, by, &id, false, yes, as_json).await?,
    }
    Ok(())
}

async fn resolve_guard(
    admin: &Admin,
    by: &WriteContext,
    id: &str,
    release: bool,
    yes: bool,
    as_json: bool,
) -> Result<(), String> {
    use rollcall_server::api::guard::{GuardResolutionView, GuardView};
    let g = admin.deprovision_guard(id).await.map_err(err)?;
    let what = if release {
        format!(
            "Releasing {} held events about {} users of connection {id} to the application",
            g.held_events, g.held_users
        )
    } else {
        format!(
            "Discarding {} held events about {} users of connection {id} (the application will never be told)",
            g.held_events, g.held_users
        )
    };
    // Nothing to decide: let the operation answer why, without asking first.
    if g.tripped_us.is_some() || g.held_events > 0 {
        crate::confirm(yes, &what, id)?;
    }
    let r = admin.resolve_deprovision_guard(by, id, release).await.map_err(err)?;
    let now = admin.deprovision_guard(id).await.map_err(err)?;
    let view = GuardResolutionView {
        events: r.events,
        users: r.users,
        tripped_at: r.tripped_us.map(rollcall_server::service::rfc3339),
        guard: GuardView::from(&now),
    };
    if as_json {
        json(&view);
    } else {
        println!(
            "{} {} held events about {} users; the guard is armed again",
            if release { "released" } else { "discarded" },
            view.events,
            view.users
        );
    }
    Ok(())
}

/// What `connection create --kind google-workspace` prints: the connection, and what the Google
/// admin must grant.
pub fn google_workspace_created(c: &rollcall_store::Connection, s: &rollcall_store::DirectorySource, as_json: bool) {
    let view = rollcall_server::api::directory_sync::DirectorySyncView::new(s);
    if as_json {
        json(&serde_json::json!({"id": c.id, "org_id": c.org_id, "kind": c.kind, "idp": c.idp, "sync": view}));
        return;
    }
    println!("Google Workspace connection {} created ({}).", c.id, c.name);
    println!("Service account: {}", s.settings.client_email);
    println!(
        "The Google admin authorises its client id {} in Admin console › Security › Access and data control › API \
         controls › Domain-wide delegation, with the scopes:",
        s.settings
            .client_id
            .as_deref()
            .unwrap_or("(see the key file's client_id)")
    );
    println!("  {}", rollcall_server::directory_sync::google::SCOPES.join(","));
    println!(
        "A serving node syncs it within moments, then every {} s; `rollcall connection sync {}` syncs it now.",
        s.interval_s, c.id
    );
}

/// What `connection sync` prints: the outcome of the run.
pub fn sync_report(s: &rollcall_store::DirectorySource, as_json: bool) -> Result<(), String> {
    let view = rollcall_server::api::directory_sync::DirectorySyncView::new(s);
    if as_json {
        json(&view);
    } else {
        let c = s.last_counts.clone().unwrap_or_default();
        println!(
            "sync {}: read {} users and {} groups; users: {} created, {} updated, {} deactivated, {} deleted; groups: \
             {} created, {} updated, {} deleted",
            s.last_status.map_or("unknown", |st| st.as_str()),
            c.users_read,
            c.groups_read,
            c.users_created,
            c.users_updated,
            c.users_deactivated,
            c.users_deleted,
            c.groups_created,
            c.groups_updated,
            c.groups_deleted
        );
        if let Some(e) = &s.last_error {
            println!("error: {e}");
        }
    }
    match s.last_status {
        Some(rollcall_store::SyncStatus::Failed) => {
            Err(s.last_error.clone().unwrap_or_else(|| "the sync failed".into()))
        }
        _ => Ok(()),
    }
}

#[derive(Subcommand)]
pub enum MatchReportCommand {
    /// Show the match report of a connection, computed now: the uploaded accounts against what
    /// the identity provider pushed.
    Show {
        /// Connection id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Upload the application's accounts from a CSV file (columns `email`, `external_id`, `roles`
    /// with roles separated by `;`; a header line naming them, or those columns in that order),
    /// replacing any earlier upload, and show the report. `-` reads standard input.
    Upload {
        /// Connection id.
        id: String,
        /// The CSV file.
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Forget the uploaded accounts.
    Delete {
        /// Connection id.
        id: String,
    },
}

fn match_report_text(r: &rollcall_server::admin::staging::MatchReport) {
    let c = &r.counts;
    println!(
        "connection:        {} ({})",
        r.connection_id,
        if r.staging { "staging" } else { "live" }
    );
    match &r.uploaded_at {
        Some(at) => println!("accounts uploaded: {} at {at}", r.accounts),
        None => println!("accounts uploaded: none (`rollcall connection match-report upload ID FILE.csv`)"),
    }
    println!("identity provider: {} users", r.idp_users);
    println!("matched:           {}", c.matched);
    println!("in the IdP only:   {} (would be new accounts)", c.idp_only);
    println!("in the app only:   {} (would lose access)", c.app_only);
    println!("ambiguous:         {}", c.ambiguous);
    println!("role differences:  {}", c.role_differences);
    let who = |a: &rollcall_server::admin::staging::MatchAccountView| {
        a.email.clone().or_else(|| a.external_id.clone()).unwrap_or_default()
    };
    for a in &r.app_only {
        println!("  app only   {}", who(a));
    }
    for u in &r.idp_only {
        println!("  IdP only   {}", u.user_name.clone().unwrap_or_else(|| u.id.clone()));
    }
    for a in &r.ambiguous {
        let accounts: Vec<String> = a.accounts.iter().map(who).collect();
        let users: Vec<String> = a
            .users
            .iter()
            .map(|u| u.user_name.clone().unwrap_or_else(|| u.id.clone()))
            .collect();
        println!("  ambiguous  {} ~ {}", accounts.join(", "), users.join(", "));
    }
    for d in &r.role_differences {
        println!(
            "  roles      {}: gains [{}], loses [{}]",
            who(&d.account),
            d.would_gain.join(", "),
            d.would_lose.join(", ")
        );
    }
    if r.truncated {
        println!(
            "(lists cut at {} items; --json for the same)",
            rollcall_server::admin::staging::REPORT_LIST_LIMIT
        );
    }
}

pub async fn match_report(admin: &Admin, by: &WriteContext, cmd: MatchReportCommand) -> Result<(), String> {
    use rollcall_server::admin::staging::parse_accounts_csv;
    match cmd {
        MatchReportCommand::Show { id, json: as_json } => {
            let r = admin.match_report(&id).await.map_err(err)?;
            if as_json { json(&r) } else { match_report_text(&r) }
        }
        MatchReportCommand::Upload {
            id,
            file,
            json: as_json,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read standard input: {e}"))?
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
            };
            let accounts = parse_accounts_csv(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let r = admin.upload_match_accounts(by, &id, accounts).await.map_err(err)?;
            if as_json { json(&r) } else { match_report_text(&r) }
        }
        MatchReportCommand::Delete { id } => {
            admin.delete_match_accounts(by, &id).await.map_err(err)?;
            println!("the uploaded accounts of connection {id} are forgotten");
        }
    }
    Ok(())
}

/// `connection stage`: puts a live connection into staging.
pub async fn stage(admin: &Admin, by: &WriteContext, id: &str, as_json: bool) -> Result<(), String> {
    let c = admin.stage_connection(by, id).await.map_err(err)?;
    if as_json {
        json(&rollcall_server::api::schemas::ConnectionView::new(admin, &c));
    } else {
        println!(
            "connection {id} is in staging: its identity provider is answered as usual, the application hears \
             nothing of its users and groups until `rollcall connection activate {id}`"
        );
    }
    Ok(())
}

/// `connection activate`: takes a staging connection live (asks first).
pub async fn activate(admin: &Admin, by: &WriteContext, id: &str, yes: bool, as_json: bool) -> Result<(), String> {
    let c = admin.connection(id).await.map_err(err)?;
    if c.staged_us.is_some() {
        let r = admin.match_report(id).await.map_err(err)?;
        let what = format!(
            "Taking connection {id} live: the application receives its {} users (and their groups and roles) now{}",
            r.idp_users,
            if r.uploaded_at.is_some() {
                format!(
                    "; the match report counts {} accounts that would lose access and {} ambiguous",
                    r.counts.app_only, r.counts.ambiguous
                )
            } else {
                String::new()
            }
        );
        crate::confirm(yes, &what, id)?;
    }
    let (c, snapshot) = admin.activate_connection(by, id).await.map_err(err)?;
    if as_json {
        json(&rollcall_server::api::staging::Activation {
            connection: rollcall_server::api::schemas::ConnectionView::new(admin, &c),
            snapshot: (&snapshot).into(),
        });
    } else {
        println!(
            "connection {id} is live: sent {} users, {} groups, {} memberships, the roles of {} users and the \
             workspaces of {}",
            snapshot.users,
            snapshot.groups,
            snapshot.memberships,
            snapshot.users_with_roles,
            snapshot.users_with_workspaces
        );
    }
    Ok(())
}
