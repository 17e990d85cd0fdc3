//! Event types and payloads, shared by the store implementations.

use crate::model::ResourceKind;
use serde_json::{Map, Value, json};

pub const USER_CREATED: &str = "user.created";
pub const USER_UPDATED: &str = "user.updated";
pub const USER_DEACTIVATED: &str = "user.deactivated";
pub const USER_REACTIVATED: &str = "user.reactivated";
pub const USER_DELETED: &str = "user.deleted";
/// A user's effective roles changed (membership, mappings, the user's status or app roles).
pub const USER_ROLES_CHANGED: &str = "user.roles_changed";
/// A user's effective workspaces changed (membership, workspace mappings, the default workspace,
/// a workspace created for a group, the user's status); same data shape as `user.roles_changed`.
pub const USER_WORKSPACES_CHANGED: &str = "user.workspaces_changed";
/// SCIM asked to deactivate or delete a protected user; the request was refused.
pub const USER_PROTECTION_REFUSED: &str = "user.protected_change_refused";
pub const ROLE_CREATED: &str = "role.created";
pub const ROLE_UPDATED: &str = "role.updated";
pub const ROLE_DELETED: &str = "role.deleted";
pub const ROLE_MAPPING_CREATED: &str = "role_mapping.created";
pub const ROLE_MAPPING_DELETED: &str = "role_mapping.deleted";
pub const CONNECTION_DEFAULT_ROLES_SET: &str = "connection.default_roles_set";
pub const WORKSPACE_CREATED: &str = "workspace.created";
pub const WORKSPACE_UPDATED: &str = "workspace.updated";
pub const WORKSPACE_DELETED: &str = "workspace.deleted";
pub const WORKSPACE_MAPPING_CREATED: &str = "workspace_mapping.created";
pub const WORKSPACE_MAPPING_DELETED: &str = "workspace_mapping.deleted";
/// The organization's default workspace or its "a workspace for every group" setting changed.
pub const ORGANIZATION_WORKSPACE_SETTINGS_SET: &str = "organization.workspace_settings_set";
pub const CONNECTION_POLICY_SET: &str = "connection.policy_set";
pub const PROTECTED_USER_ADDED: &str = "protected_user.added";
pub const PROTECTED_USER_REMOVED: &str = "protected_user.removed";
pub const GROUP_CREATED: &str = "group.created";
pub const GROUP_UPDATED: &str = "group.updated";
pub const GROUP_DELETED: &str = "group.deleted";
pub const GROUP_MEMBER_ADDED: &str = "group.member_added";
pub const GROUP_MEMBER_REMOVED: &str = "group.member_removed";
pub const CONNECTION_CREATED: &str = "connection.created";
pub const CONNECTION_DELETED: &str = "connection.deleted";
pub const CONNECTION_UPDATED: &str = "connection.updated";
pub const CONNECTION_DISABLED: &str = "connection.disabled";
pub const CONNECTION_ENABLED: &str = "connection.enabled";
/// A new token replaced every token at once (`rollcall connection rotate-token`).
pub const CONNECTION_TOKEN_ROTATED: &str = "connection.token_rotated";
pub const CONNECTION_TOKEN_ROTATION_STARTED: &str = "connection.token_rotation_started";
pub const CONNECTION_TOKEN_ROTATION_COMPLETED: &str = "connection.token_rotation_completed";
pub const CONNECTION_TOKEN_ROTATION_CANCELLED: &str = "connection.token_rotation_cancelled";
pub const CONNECTION_TOKENS_REVOKED: &str = "connection.tokens_revoked";
/// The identity provider recognised from a connection's requests became one other than the
/// configured one (once per change, not per request).
pub const CONNECTION_IDP_DETECTED: &str = "connection.idp_detected";
/// A Google Workspace connection's directory sync ended `failed` or `partial` (data: `status`,
/// `error`, `counts`, `previous_status`).
pub const CONNECTION_DIRECTORY_SYNC_FAILED: &str = "connection.directory_sync_failed";
/// A directory sync succeeded after one that had not (data as for the failure).
pub const CONNECTION_DIRECTORY_SYNC_RECOVERED: &str = "connection.directory_sync_recovered";
/// The guard against mass deprovisioning ([`crate::guard`]) tripped: the deprovisions past its
/// threshold are held (recorded at once, in the transaction of the write that tripped it).
pub const CONNECTION_DEPROVISION_GUARD_TRIPPED: &str = "connection.deprovision_guard_tripped";
/// An operator released the held events: they follow this event in the log.
pub const CONNECTION_DEPROVISION_GUARD_RELEASED: &str = "connection.deprovision_guard_released";
/// An operator discarded the held events: the application is never told of them.
pub const CONNECTION_DEPROVISION_GUARD_DISCARDED: &str = "connection.deprovision_guard_discarded";
/// An operator changed the guard's settings.
pub const CONNECTION_DEPROVISION_GUARD_SET: &str = "connection.deprovision_guard_set";
/// A connection was put into staging ([`crate::staging`]): from now on the application hears
/// nothing of its users and groups.
pub const CONNECTION_STAGED: &str = "connection.staged";
/// A staging connection went live: its current state follows this event in the log.
pub const CONNECTION_ACTIVATED: &str = "connection.activated";
/// The application's accounts were uploaded for a connection's match report.
pub const CONNECTION_MATCH_REPORT_UPLOADED: &str = "connection.match_report_uploaded";
pub const CONNECTION_MATCH_REPORT_DELETED: &str = "connection.match_report_deleted";
pub const ORGANIZATION_CREATED: &str = "organization.created";
pub const ORGANIZATION_UPDATED: &str = "organization.updated";
pub const ORGANIZATION_DELETED: &str = "organization.deleted";
pub const API_KEY_CREATED: &str = "api_key.created";
pub const API_KEY_REVOKED: &str = "api_key.revoked";
/// An operator created a setup link for an organization's IT admin (never with its token).
pub const SETUP_LINK_CREATED: &str = "setup_link.created";
pub const SETUP_LINK_REVOKED: &str = "setup_link.revoked";

pub const WEBHOOK_CREATED: &str = "webhook.created";
pub const WEBHOOK_UPDATED: &str = "webhook.updated";
pub const WEBHOOK_DELETED: &str = "webhook.deleted";
pub const WEBHOOK_ENABLED: &str = "webhook.enabled";
/// Disabled by an operator, or by the dispatcher after failing for the whole retry horizon.
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
pub const WEBHOOK_SECRET_ROTATED: &str = "webhook.secret_rotated";
pub const WEBHOOK_REPLAYED: &str = "webhook.replayed";
/// Outbound provisioning (#15): a provisioning target was created, changed, deleted, approved.
pub const PROVISIONING_TARGET_CREATED: &str = "provisioning.target_created";
pub const PROVISIONING_TARGET_UPDATED: &str = "provisioning.target_updated";
pub const PROVISIONING_TARGET_DELETED: &str = "provisioning.target_deleted";
pub const PROVISIONING_TARGET_APPROVED: &str = "provisioning.target_approved";
/// Paused by an operator, or by the deletion threshold of a run.
pub const PROVISIONING_TARGET_PAUSED: &str = "provisioning.target_paused";
/// Most calls of a run failed: retried on a longer schedule.
pub const PROVISIONING_TARGET_QUARANTINED: &str = "provisioning.target_quarantined";
/// Enabled again, by an operator or by a run that succeeded after a quarantine.
pub const PROVISIONING_TARGET_RESUMED: &str = "provisioning.target_resumed";
pub const PROVISIONING_RUN_STARTED: &str = "provisioning.run_started";
pub const PROVISIONING_RUN_FINISHED: &str = "provisioning.run_finished";
/// A user or group created, linked, updated, deactivated or deleted on a target.
pub const PROVISIONING_OBJECT_PUSHED: &str = "provisioning.object_pushed";
pub const PROVISIONING_OBJECT_FAILED: &str = "provisioning.object_failed";

/// Every event type. A type filter of the Events API must name one of these, or a prefix of some
/// (`user.*`): add new types here.
pub const ALL: &[&str] = &[
    USER_CREATED,
    USER_UPDATED,
    USER_DEACTIVATED,
    USER_REACTIVATED,
    USER_DELETED,
    USER_ROLES_CHANGED,
    USER_WORKSPACES_CHANGED,
    USER_PROTECTION_REFUSED,
    GROUP_CREATED,
    GROUP_UPDATED,
    GROUP_DELETED,
    GROUP_MEMBER_ADDED,
    GROUP_MEMBER_REMOVED,
    CONNECTION_CREATED,
    CONNECTION_UPDATED,
    CONNECTION_DISABLED,
    CONNECTION_ENABLED,
    CONNECTION_DELETED,
    CONNECTION_TOKEN_ROTATED,
    CONNECTION_TOKEN_ROTATION_STARTED,
    CONNECTION_TOKEN_ROTATION_COMPLETED,
    CONNECTION_TOKEN_ROTATION_CANCELLED,
    CONNECTION_TOKENS_REVOKED,
    CONNECTION_IDP_DETECTED,
    CONNECTION_DIRECTORY_SYNC_FAILED,
    CONNECTION_DIRECTORY_SYNC_RECOVERED,
    CONNECTION_DEPROVISION_GUARD_TRIPPED,
    CONNECTION_DEPROVISION_GUARD_RELEASED,
    CONNECTION_DEPROVISION_GUARD_DISCARDED,
    CONNECTION_DEPROVISION_GUARD_SET,
    CONNECTION_STAGED,
    CONNECTION_ACTIVATED,
    CONNECTION_MATCH_REPORT_UPLOADED,
    CONNECTION_MATCH_REPORT_DELETED,
    ORGANIZATION_CREATED,
    ORGANIZATION_UPDATED,
    ORGANIZATION_DELETED,
    API_KEY_CREATED,
    API_KEY_REVOKED,
    SETUP_LINK_CREATED,
    SETUP_LINK_REVOKED,
    ROLE_CREATED,
    ROLE_UPDATED,
    ROLE_DELETED,
    ROLE_MAPPING_CREATED,
    ROLE_MAPPING_DELETED,
    CONNECTION_DEFAULT_ROLES_SET,
    WORKSPACE_CREATED,
    WORKSPACE_UPDATED,
    WORKSPACE_DELETED,
    WORKSPACE_MAPPING_CREATED,
    WORKSPACE_MAPPING_DELETED,
    ORGANIZATION_WORKSPACE_SETTINGS_SET,
    CONNECTION_POLICY_SET,
    PROTECTED_USER_ADDED,
    PROTECTED_USER_REMOVED,
    WEBHOOK_CREATED,
    WEBHOOK_UPDATED,
    WEBHOOK_DELETED,
    WEBHOOK_ENABLED,
    WEBHOOK_DISABLED,
    WEBHOOK_SECRET_ROTATED,
    WEBHOOK_REPLAYED,
    PROVISIONING_TARGET_CREATED,
    PROVISIONING_TARGET_UPDATED,
    PROVISIONING_TARGET_DELETED,
    PROVISIONING_TARGET_APPROVED,
    PROVISIONING_TARGET_PAUSED,
    PROVISIONING_TARGET_QUARANTINED,
    PROVISIONING_TARGET_RESUMED,
    PROVISIONING_RUN_STARTED,
    PROVISIONING_RUN_FINISHED,
    PROVISIONING_OBJECT_PUSHED,
    PROVISIONING_OBJECT_FAILED,
];

/// The event types one filter term names: an exact type (`user.created`) or every type under a
/// prefix (`user.*`, `connection.token_*`). Unknown types and prefixes that match nothing are
/// refused with a message naming what exists, so that a typo does not read as "no events".
pub fn expand_type_filter(term: &str) -> Result<Vec<&'static str>, String> {
    let term = term.trim();
    let valid = !term.is_empty()
        && term.chars().enumerate().all(|(i, c)| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' || (c == '*' && i == term.len() - 1)
        });
    if !valid {
        return Err(format!(
            "\"{term}\" is not an event type: use a type such as \"user.created\" or a prefix ending in \"*\" such as \"user.*\""
        ));
    }
    let matched: Vec<&'static str> = match term.strip_suffix('*') {
        Some("") => {
            return Err("\"*\" alone is not a type filter: leave `type` out to get every type".to_string());
        }
        Some(prefix) => ALL.iter().copied().filter(|t| t.starts_with(prefix)).collect(),
        None => ALL.iter().copied().filter(|t| *t == term).collect(),
    };
    if matched.is_empty() {
        return Err(format!(
            "no event type matches \"{term}\"; the types are: {}",
            ALL.join(", ")
        ));
    }
    Ok(matched)
}

/// The member a membership event is about (kept in its own indexed column, so that the audit log of
/// a user shows the groups it joined and left).
pub fn member_of<'a>(kind: &str, data: &'a Value) -> Option<&'a str> {
    if kind == GROUP_MEMBER_ADDED || kind == GROUP_MEMBER_REMOVED {
        data.get("member").and_then(Value::as_str)
    } else {
        None
    }
}

pub fn created(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => USER_CREATED,
        ResourceKind::Group => GROUP_CREATED,
    }
}

pub fn deleted(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => USER_DELETED,
        ResourceKind::Group => GROUP_DELETED,
    }
}

/// The event type of an update: deactivation and reactivation are told apart from other changes.
pub fn updated(kind: ResourceKind, before: &Value, after: &Value) -> &'static str {
    match kind {
        ResourceKind::Group => GROUP_UPDATED,
        ResourceKind::User => {
            let was = before.get("active").and_then(Value::as_bool).unwrap_or(true);
            let is = after.get("active").and_then(Value::as_bool).unwrap_or(true);
            match (was, is) {
                (true, false) => USER_DEACTIVATED,
                (false, true) => USER_REACTIVATED,
                _ => USER_UPDATED,
            }
        }
    }
}

/// The top-level attributes that changed, each with its value before and after.
pub fn diff(before: &Value, after: &Value) -> Value {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut changed = Map::new();
    for (k, v) in a {
        if b.get(k) != Some(v) {
            changed.insert(
                k.clone(),
                json!({"before": b.get(k).cloned().unwrap_or(Value::Null), "after": v}),
            );
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            changed.insert(k.clone(), json!({"before": v, "after": Value::Null}));
        }
    }
    json!({ "changed": changed })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event reference (docs/events.md) and the webhook guide (docs/webhooks.md) name every
    /// event type, spelled out, so that a new type cannot ship undocumented.
    #[test]
    fn every_type_is_documented() {
        for doc in ["events.md", "webhooks.md"] {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/").to_string() + doc;
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let missing: Vec<&str> = ALL
                .iter()
                .copied()
                .filter(|t| !text.contains(&format!("`{t}`")))
                .collect();
            assert!(missing.is_empty(), "docs/{doc} does not name {missing:?}");
        }
    }

    #[test]
    fn type_filters_expand_to_known_types() {
        assert_eq!(expand_type_filter("user.created").unwrap(), vec![USER_CREATED]);
        let users = expand_type_filter("user.*").unwrap();
        assert!(users.contains(&USER_DELETED) && users.contains(&USER_ROLES_CHANGED));
        assert!(users.iter().all(|t| t.starts_with("user.")));
        assert_eq!(expand_type_filter("connection.token_rotation_*").unwrap().len(), 3);
        assert!(expand_type_filter("user.create").unwrap_err().contains("user.created"));
        assert!(expand_type_filter("*").is_err());
        assert!(expand_type_filter("").is_err());
        assert!(expand_type_filter("user.*.x").is_err());
        assert!(expand_type_filter("User.created").is_err());
        assert!(expand_type_filter("nothing.*").is_err());
        let mut sorted = ALL.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ALL.len(), "ALL lists each type once");
    }

    #[test]
    fn deactivation_is_its_own_event() {
        let a = json!({"userName": "x", "active": true});
        let b = json!({"userName": "x", "active": false});
        assert_eq!(updated(ResourceKind::User, &a, &b), USER_DEACTIVATED);
        assert_eq!(updated(ResourceKind::User, &b, &a), USER_REACTIVATED);
        assert_eq!(updated(ResourceKind::User, &a, &a), USER_UPDATED);
        assert_eq!(
            diff(&a, &b)["changed"]["active"],
            json!({"before": true, "after": false})
        );
    }
}
