//! The rows pages show, made from what the management operations return: shared by the pages
//! that show the same things.

use super::page::{idp_name, when, when_or};
use rollcall_store::{Actor, Connection, IdpKind};

pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub idp: &'static str,
    pub detected: Option<&'static str>,
    pub active: bool,
    pub status: &'static str,
    pub last_request: String,
    pub user_agent: String,
    pub token: String,
    pub rotating: Option<String>,
    pub created: String,
    /// In staging (shadow mode, docs/go-live.md): the application hears nothing of it yet.
    pub staging: bool,
}

impl ConnectionRow {
    pub fn of(c: &Connection) -> ConnectionRow {
        ConnectionRow {
            id: c.id.clone(),
            name: c.name.clone(),
            idp: idp_name(c.idp),
            detected: c.detected_idp.filter(|d| *d != c.idp).map(idp_name),
            active: c.status == rollcall_store::ConnectionStatus::Active,
            status: c.status.as_str(),
            last_request: when_or(c.last_request_us, "no request yet"),
            user_agent: c.last_user_agent.clone().unwrap_or_default(),
            token: c
                .token_prefix
                .as_ref()
                .map(|p| format!("{p}…"))
                .unwrap_or_else(|| "no token".into()),
            rotating: c.next_token_prefix.as_ref().map(|p| format!("{p}…")),
            created: when(c.created_us),
            staging: c.staged_us.is_some(),
        }
    }
}

pub struct IdpOption {
    pub value: &'static str,
    pub label: &'static str,
}

/// The identity providers a connection can be made for, as `<option>`s.
pub fn idp_options() -> Vec<IdpOption> {
    IdpKind::ALL
        .iter()
        .map(|k| IdpOption {
            value: k.as_str(),
            label: idp_name(*k),
        })
        .collect()
}

pub struct EventRow {
    pub id: String,
    pub at: String,
    pub kind: String,
    pub actor: String,
}

pub fn event_rows(events: Vec<rollcall_store::Event>) -> Vec<EventRow> {
    events
        .into_iter()
        .map(|e| EventRow {
            at: when(e.created_us),
            actor: actor_text(&e.actor),
            kind: e.kind,
            id: e.id,
        })
        .collect()
}

/// Who made a change, in words.
pub fn actor_text(a: &Actor) -> String {
    match a {
        Actor::ScimToken { token_prefix, .. } => match token_prefix {
            Some(p) => format!("identity provider (token {p}…)"),
            None => "identity provider".into(),
        },
        Actor::DirectorySync { .. } => "directory sync".into(),
        Actor::ApiKey { name, .. } => format!("API key “{name}”"),
        Actor::SetupLink { .. } => "IT admin (setup link)".into(),
        Actor::Cli => "command line".into(),
        Actor::System => "Rollcall".into(),
    }
}

/// Who a previewed role change reaches: one line per role and direction, naming the first users.
pub struct EffectLine {
    pub text: String,
    pub gain: bool,
}

/// The lines of a role preview (after its sentence).
pub fn effect_lines(effect: &crate::admin::RoleEffect) -> Vec<EffectLine> {
    let names = |sample: &[rollcall_store::UserRef], total: i64| {
        let mut shown: Vec<String> = sample
            .iter()
            .map(|u| {
                u.email
                    .clone()
                    .or_else(|| u.user_name.clone())
                    .unwrap_or_else(|| u.id.clone())
            })
            .collect();
        if total > shown.len() as i64 {
            shown.push(format!("and {} more", total - shown.len() as i64));
        }
        shown.join(", ")
    };
    let mut lines = Vec::new();
    for c in &effect.changes {
        if c.gained > 0 {
            lines.push(EffectLine {
                text: format!("Gain {}: {}", c.role_name, names(&c.gained_sample, c.gained)),
                gain: true,
            });
        }
        if c.lost > 0 {
            lines.push(EffectLine {
                text: format!("Lose {}: {}", c.role_name, names(&c.lost_sample, c.lost)),
                gain: false,
            });
        }
    }
    lines
}
