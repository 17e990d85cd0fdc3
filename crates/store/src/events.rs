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
/// SCIM asked to deactivate or delete a protected user; the request was refused.
pub const USER_PROTECTION_REFUSED: &str = "user.protected_change_refused";
pub const ROLE_CREATED: &str = "role.created";
pub const ROLE_UPDATED: &str = "role.updated";
pub const ROLE_DELETED: &str = "role.deleted";
pub const ROLE_MAPPING_CREATED: &str = "role_mapping.created";
pub const ROLE_MAPPING_DELETED: &str = "role_mapping.deleted";
pub const CONNECTION_DEFAULT_ROLES_SET: &str = "connection.default_roles_set";
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
pub const ORGANIZATION_CREATED: &str = "organization.created";
pub const ORGANIZATION_UPDATED: &str = "organization.updated";
pub const ORGANIZATION_DELETED: &str = "organization.deleted";
pub const API_KEY_CREATED: &str = "api_key.created";
pub const API_KEY_REVOKED: &str = "api_key.revoked";

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
