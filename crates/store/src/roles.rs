//! Roles and effective roles.
//!
//! An organization defines roles (key, name, description). A user of one of its SCIM connections
//! has, while it is active and not deleted:
//! - the connection's default roles;
//! - the roles mapped on the connection to a group it is a direct member of, by the group's IdP id
//!   (its `externalId`, or its Rollcall id) or by its `displayName`;
//! - the role `scim:<group displayName>` of every group it is a direct member of, when the
//!   organization defines such a role (no mapping needed);
//! - the roles mapped on the connection to an app role value in its `roles` attribute (Entra ID sends
//!   app role assignments there).
//!
//! Effective roles are stored as rows (`user_roles`) and recomputed inside the transaction of every
//! change that can affect them (user create/update/delete, membership, group rename or delete, role
//! and mapping changes); each user whose set changed gets a `user.roles_changed` event in that same
//! transaction. Comparisons of names and values are case-insensitive.
//!
//! The algorithm lives here once; its statements, once for both databases, in [`crate::grant_rows`].

use crate::StoreResult;
use crate::events;
use crate::index::fold;
use crate::model::ResourceKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// What the engine below computes: effective roles or effective workspaces ([`crate::workspaces`]).
/// Both are granted the same way (defaults, group mappings by id or name); each kind has its own
/// tables and its own change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    Role,
    Workspace,
}

impl GrantKind {
    pub const ALL: [GrantKind; 2] = [GrantKind::Role, GrantKind::Workspace];

    /// The event recorded for a user whose effective set changed.
    pub fn changed_event(self) -> &'static str {
        match self {
            GrantKind::Role => events::USER_ROLES_CHANGED,
            GrantKind::Workspace => events::USER_WORKSPACES_CHANGED,
        }
    }

    /// The table of effective grants and its grant column.
    pub fn held(self) -> (&'static str, &'static str) {
        match self {
            GrantKind::Role => ("user_roles", "role_id"),
            GrantKind::Workspace => ("user_workspaces", "workspace_id"),
        }
    }

    /// The table of mappings (same columns for both, but the grant column).
    pub fn mappings_table(self) -> &'static str {
        match self {
            GrantKind::Role => "role_mappings",
            GrantKind::Workspace => "workspace_mappings",
        }
    }

    /// The statements that load a [`RoleConfig`], with `$n` placeholders, and what each binds: the
    /// organization's grants `(id, key)`; the default grant ids (roles per connection, the default
    /// workspace per organization); the mappings
    /// `(kind, folded value, id)` (a workspace created for a group is mapped to the group by its
    /// Rollcall id).
    pub fn config_sql(self) -> [(&'static str, &'static [ConfigBind]); 3] {
        use ConfigBind::{Connection, Org};
        match self {
            GrantKind::Role => [
                ("SELECT id, key FROM roles WHERE org_id = $1", &[Org]),
                (
                    "SELECT role_id FROM connection_default_roles WHERE connection_id = $1",
                    &[Connection],
                ),
                (
                    "SELECT match_kind, match_value, role_id FROM role_mappings WHERE connection_id = $1",
                    &[Connection],
                ),
            ],
            GrantKind::Workspace => [
                ("SELECT id, key FROM workspaces WHERE org_id = $1", &[Org]),
                (
                    "SELECT default_workspace_id FROM workspace_settings
                     WHERE org_id = $1 AND default_workspace_id IS NOT NULL",
                    &[Org],
                ),
                (
                    "SELECT match_kind, match_value, workspace_id FROM workspace_mappings WHERE connection_id = $1
                     UNION ALL SELECT 'group_id', lower(group_id), id FROM workspaces
                     WHERE org_id = $2 AND group_connection_id = $3 AND group_id IS NOT NULL",
                    &[Connection, Org, Connection],
                ),
            ],
        }
    }
}

/// What a statement of [`GrantKind::config_sql`] binds, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigBind {
    Org,
    Connection,
}

/// The prefix of the role a group grants by name alone.
pub const SCIM_ROLE_PREFIX: &str = "scim:";

/// A role defined by the application for one organization.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Role {
    pub id: String,
    pub org_id: String,
    /// What the application checks (`admin`, `billing:read`, `scim:Engineering`); unique per
    /// organization, ignoring case.
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub created_us: i64,
}

/// What is needed to create a role.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub org_id: String,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
}

/// A change to a role; `None` leaves a field as it is (`Some(None)` clears the description).
#[derive(Debug, Clone, Default)]
pub struct RoleUpdate {
    pub key: Option<String>,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}

/// What grants a mapped role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleMatch {
    /// Membership of the group with this IdP id (`externalId`) or Rollcall id.
    GroupId(String),
    /// Membership of the group with this `displayName`.
    GroupName(String),
    /// This value in the user's `roles` attribute (Entra ID app roles).
    AppRole(String),
}

impl RoleMatch {
    pub fn kind(&self) -> &'static str {
        match self {
            RoleMatch::GroupId(_) => "group_id",
            RoleMatch::GroupName(_) => "group_name",
            RoleMatch::AppRole(_) => "app_role",
        }
    }
    pub fn value(&self) -> &str {
        match self {
            RoleMatch::GroupId(v) | RoleMatch::GroupName(v) | RoleMatch::AppRole(v) => v,
        }
    }
    /// The stored (folded) value.
    pub fn folded(&self) -> String {
        fold(self.value().trim())
    }
    pub fn from_parts(kind: &str, value: String) -> Option<RoleMatch> {
        match kind {
            "group_id" => Some(RoleMatch::GroupId(value)),
            "group_name" => Some(RoleMatch::GroupName(value)),
            "app_role" => Some(RoleMatch::AppRole(value)),
            _ => None,
        }
    }
}

/// A group → role (or app role → role) mapping on one connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoleMapping {
    pub id: String,
    pub connection_id: String,
    pub role_id: String,
    pub role_key: String,
    #[serde(rename = "match")]
    pub matches: RoleMatch,
    pub created_us: i64,
}

/// What is needed to create a mapping.
#[derive(Debug, Clone)]
pub struct NewRoleMapping {
    pub connection_id: String,
    pub role_id: String,
    pub matches: RoleMatch,
}

/// A user SCIM may not deactivate or delete (the break-glass admin), by e-mail address or userName.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProtectedUser {
    pub org_id: String,
    pub email: String,
    pub created_us: i64,
}

/// Everything that grants roles on one connection, loaded once per transaction.
#[derive(Debug, Clone, Default)]
pub struct RoleConfig {
    /// Role id → key, for every role of the organization.
    pub keys: HashMap<String, String>,
    /// Folded group name → role id, for roles named `scim:<group name>`.
    pub scim_roles: HashMap<String, String>,
    pub defaults: Vec<String>,
    /// (kind, folded value, role id).
    pub mappings: Vec<(String, String, String)>,
}

impl RoleConfig {
    /// Builds the configuration from the organization's roles `(id, key)`, the connection's default
    /// role ids and its mappings `(kind, folded value, role id)`.
    pub fn new(
        roles: Vec<(String, String)>,
        defaults: Vec<String>,
        mappings: Vec<(String, String, String)>,
    ) -> RoleConfig {
        let mut scim_roles = HashMap::new();
        for (id, key) in &roles {
            // `get`, not an index: a key may have a multi-byte character where the prefix ends.
            if let Some(name) = key.get(SCIM_ROLE_PREFIX.len()..)
                && !name.is_empty()
                && key[..SCIM_ROLE_PREFIX.len()].eq_ignore_ascii_case(SCIM_ROLE_PREFIX)
            {
                scim_roles.insert(fold(name), id.clone());
            }
        }
        RoleConfig {
            keys: roles.into_iter().collect(),
            scim_roles,
            defaults,
            mappings,
        }
    }

    /// The configuration of `kind`: for workspaces, without the `scim:<group name>` convention of
    /// roles (a workspace for a group is created and mapped to it instead).
    pub fn of_kind(
        kind: GrantKind,
        grants: Vec<(String, String)>,
        defaults: Vec<String>,
        mappings: Vec<(String, String, String)>,
    ) -> RoleConfig {
        match kind {
            GrantKind::Role => RoleConfig::new(grants, defaults, mappings),
            GrantKind::Workspace => RoleConfig {
                keys: grants.into_iter().collect(),
                scim_roles: HashMap::new(),
                defaults,
                mappings,
            },
        }
    }

    /// Without roles in the organization nobody has any: nothing to compute (and, since effective
    /// roles are always kept up to date, nothing stored to remove).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any mapping reads app roles (only then are user documents read).
    pub fn uses_app_roles(&self) -> bool {
        self.mappings.iter().any(|(k, _, _)| k == "app_role")
    }

    /// The effective role ids of a user.
    pub fn effective(&self, user: &UserFacts) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if !user.active {
            return out;
        }
        out.extend(self.defaults.iter().cloned());
        for g in &user.groups {
            if let Some(name) = &g.name_ci
                && let Some(role) = self.scim_roles.get(name)
            {
                out.insert(role.clone());
            }
        }
        for (kind, value, role) in &self.mappings {
            let hit = match kind.as_str() {
                "group_id" => user
                    .groups
                    .iter()
                    .any(|g| fold(&g.id) == *value || g.external_id.as_deref().map(fold).as_deref() == Some(value)),
                "group_name" => user.groups.iter().any(|g| g.name_ci.as_deref() == Some(value)),
                "app_role" => user.app_roles.iter().any(|r| r == value),
                _ => false,
            };
            if hit {
                out.insert(role.clone());
            }
        }
        out
    }

    /// Leaves out everything `role_id` grants (it is about to be deleted); its key stays known so
    /// events can name it.
    pub fn exclude(&mut self, role_id: &str) {
        self.defaults.retain(|r| r != role_id);
        self.mappings.retain(|(_, _, r)| r != role_id);
        self.scim_roles.retain(|_, r| r != role_id);
    }

    /// This configuration with `change` made, as the store makes it: a new mapping added (409 when
    /// the connection has it already), a mapping left out (`removed`: the mapping `RemoveMapping`
    /// names, as stored: kind, folded value, role id), or the default roles replaced. Role ids that
    /// are not roles of the organization are refused (400), as the store refuses them.
    pub fn changed(&self, change: &RoleChange, removed: Option<&(String, String, String)>) -> StoreResult<RoleConfig> {
        let known = |role_id: &str| {
            if self.keys.contains_key(role_id) {
                Ok(())
            } else {
                Err(crate::StoreError::Scim(rollcall_scim::ScimError::invalid_value(
                    format!("role \"{role_id}\" is not a role of this connection's organization"),
                )))
            }
        };
        let mut out = self.clone();
        match change {
            RoleChange::AddMapping { role_id, matches } => {
                known(role_id)?;
                let mapping = (matches.kind().to_string(), matches.folded(), role_id.clone());
                if out.mappings.contains(&mapping) {
                    return Err(crate::StoreError::Scim(rollcall_scim::ScimError::conflict(
                        "this mapping already exists on the connection",
                    )));
                }
                out.mappings.push(mapping);
            }
            RoleChange::RemoveMapping { .. } => {
                if let Some(m) = removed
                    && let Some(i) = out.mappings.iter().position(|x| x == m)
                {
                    out.mappings.remove(i);
                }
            }
            RoleChange::SetDefaults { role_ids } => {
                let mut defaults: Vec<String> = Vec::with_capacity(role_ids.len());
                for r in role_ids {
                    known(r)?;
                    if !defaults.contains(r) {
                        defaults.push(r.clone());
                    }
                }
                out.defaults = defaults;
            }
        }
        Ok(out)
    }

    pub(crate) fn keys_of(&self, ids: &BTreeSet<String>) -> Vec<String> {
        let mut keys: Vec<String> = ids.iter().filter_map(|id| self.keys.get(id).cloned()).collect();
        keys.sort();
        keys
    }
}

/// What role computation needs to know about a user.
#[derive(Debug, Clone, Default)]
pub struct UserFacts {
    pub pk: i64,
    pub id: String,
    pub connection_id: String,
    /// Live and not deactivated (`active` absent counts as active).
    pub active: bool,
    /// Folded `roles[*].value` (read only when a mapping uses app roles).
    pub app_roles: Vec<String>,
    /// The live groups it is a direct member of.
    pub groups: Vec<GroupFacts>,
}

/// A group a user is a member of.
#[derive(Debug, Clone, Default)]
pub struct GroupFacts {
    pub id: String,
    pub external_id: Option<String>,
    pub name_ci: Option<String>,
}

/// The folded app role values of a user document.
pub fn app_roles_of(doc: &Value) -> Vec<String> {
    doc.get("roles")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("value").and_then(Value::as_str))
                .map(|v| fold(v.trim()))
                .collect()
        })
        .unwrap_or_default()
}

/// A proposed change to what grants roles on one connection (roles by id), for a preview of its
/// effect ([`crate::RoleStore::preview_role_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// A new mapping granting `role_id`.
    AddMapping { role_id: String, matches: RoleMatch },
    /// Deleting the connection's mapping with this id.
    RemoveMapping { mapping_id: String },
    /// Replacing the connection's default roles with these.
    SetDefaults { role_ids: Vec<String> },
}

/// A user named in a preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRef {
    pub id: String,
    pub user_name: Option<String>,
    /// The primary e-mail address, else the first.
    pub email: Option<String>,
}

impl UserRef {
    /// The user `id` named from its SCIM document.
    pub fn of(id: String, doc: &Value) -> UserRef {
        let emails = doc.get("emails").and_then(Value::as_array);
        let email = emails
            .and_then(|items| {
                items
                    .iter()
                    .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
                    .or_else(|| items.first())
            })
            .and_then(|e| e.get("value"))
            .and_then(Value::as_str)
            .map(String::from);
        UserRef {
            id,
            user_name: doc.get("userName").and_then(Value::as_str).map(String::from),
            email,
        }
    }
}

/// How the holders of one role would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleDelta {
    pub role_id: String,
    pub role_key: String,
    /// Users who would gain the role, and the first of them (by creation).
    pub gained: i64,
    pub gained_sample: Vec<UserRef>,
    /// Users who would lose it.
    pub lost: i64,
    pub lost_sample: Vec<UserRef>,
}

/// What a change would do to the effective roles of a connection's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RolePreview {
    /// One entry per role that some user would gain or lose, by role key.
    pub changes: Vec<RoleDelta>,
    /// The active users of the connection whose roles were computed (deactivated and deleted users
    /// hold no roles).
    pub users_considered: i64,
}

/// How the holders of one role would change, users as row keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleDiffEntry {
    pub role_id: String,
    pub role_key: String,
    pub gained: i64,
    pub gained_pks: Vec<i64>,
    pub lost: i64,
    pub lost_pks: Vec<i64>,
}

/// A [`RolePreview`] before its sampled users are named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleDiff {
    /// By role key (ignoring case).
    pub roles: Vec<RoleDiffEntry>,
    pub users_considered: i64,
}

impl RoleDiff {
    /// Every sampled user, once.
    pub fn sample_pks(&self) -> Vec<i64> {
        let set: BTreeSet<i64> = self
            .roles
            .iter()
            .flat_map(|e| e.gained_pks.iter().chain(e.lost_pks.iter()).copied())
            .collect();
        set.into_iter().collect()
    }

    /// The preview, sampled users named by `refs` (a user missing there is left out).
    pub fn named(self, refs: &HashMap<i64, UserRef>) -> RolePreview {
        let name = |pks: &[i64]| pks.iter().filter_map(|pk| refs.get(pk).cloned()).collect();
        RolePreview {
            changes: self
                .roles
                .into_iter()
                .map(|e| RoleDelta {
                    gained_sample: name(&e.gained_pks),
                    lost_sample: name(&e.lost_pks),
                    role_id: e.role_id,
                    role_key: e.role_key,
                    gained: e.gained,
                    lost: e.lost,
                })
                .collect(),
            users_considered: self.users_considered,
        }
    }
}

/// Compares the effective roles of `users` under `before` and `after` in one pass, with
/// [`RoleConfig::effective`] (the computation [`crate::grant_rows::recompute`] stores), keeping up to `sample` users
/// per role and direction, the oldest first.
pub fn diff_roles(before: &RoleConfig, after: &RoleConfig, mut users: Vec<UserFacts>, sample: usize) -> RoleDiff {
    users.sort_by_key(|u| u.pk);
    let mut by_role: HashMap<String, RoleDiffEntry> = HashMap::new();
    let mut considered = 0;
    for user in &users {
        if !user.active {
            continue;
        }
        considered += 1;
        let was = before.effective(user);
        let will = after.effective(user);
        if was == will {
            continue;
        }
        for r in will.difference(&was) {
            let e = by_role.entry(r.clone()).or_default();
            e.gained += 1;
            if e.gained_pks.len() < sample {
                e.gained_pks.push(user.pk);
            }
        }
        for r in was.difference(&will) {
            let e = by_role.entry(r.clone()).or_default();
            e.lost += 1;
            if e.lost_pks.len() < sample {
                e.lost_pks.push(user.pk);
            }
        }
    }
    let mut roles: Vec<RoleDiffEntry> = by_role
        .into_iter()
        .map(|(id, mut e)| {
            e.role_key = after
                .keys
                .get(&id)
                .or_else(|| before.keys.get(&id))
                .cloned()
                .unwrap_or_else(|| id.clone());
            e.role_id = id;
            e
        })
        .collect();
    roles.sort_by(|a, b| (fold(&a.role_key), &a.role_id).cmp(&(fold(&b.role_key), &b.role_id)));
    RoleDiff {
        roles,
        users_considered: considered,
    }
}

/// The SCIM answer when SCIM tries to deactivate or delete a protected user: 403, naming why.
pub fn protected_error(email: &str, action: &str) -> rollcall_scim::ScimError {
    rollcall_scim::ScimError::new(
        403,
        None,
        format!(
            "this user is protected by the organization (\"{email}\" is on its protected users list): \
             SCIM may not {action} it; an administrator must remove the protection first"
        ),
    )
}

/// Whose roles to recompute.
#[derive(Debug, Clone)]
pub enum RoleScope {
    /// These users (row keys).
    Users(Vec<i64>),
    /// The direct members of this group (row key).
    MembersOf(i64),
    /// Every user of the connection.
    Connection,
}

impl RoleScope {
    /// Whose effective roles an update of resource `pk` may have changed, from the document before
    /// and after and the members it added or removed: those members; every member when a group's
    /// name or IdP id changed; the user when its status or app roles changed.
    pub fn after_update(kind: ResourceKind, pk: i64, before: &Value, after: &Value, touched: Vec<i64>) -> Option<Self> {
        let changed = |keys: [&str; 2]| keys.iter().any(|k| after.get(k) != before.get(k));
        match kind {
            ResourceKind::Group if changed(["displayName", "externalId"]) => Some(RoleScope::MembersOf(pk)),
            ResourceKind::Group => Some(RoleScope::Users(touched)),
            ResourceKind::User if changed(["active", "roles"]) => Some(RoleScope::Users(vec![pk])),
            ResourceKind::User => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn role_keys_with_multibyte_characters_where_the_prefix_ends_are_not_scim_roles() {
        let roles = [
            "sci\u{e9}x",
            "abc\u{20ac}d",
            "\u{20ac}\u{20ac}",
            "SCIM:\u{c9}quipe",
            "scim:",
        ];
        let roles = roles
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("r{i}"), k.to_string()))
            .collect();
        let config = RoleConfig::new(roles, Vec::new(), Vec::new());
        let expected: HashMap<String, String> = [(fold("\u{c9}quipe"), "r3".to_string())].into();
        assert_eq!(config.scim_roles, expected);
    }

    fn config() -> RoleConfig {
        RoleConfig::new(
            vec![
                ("r-admin".into(), "admin".into()),
                ("r-eng".into(), "scim:Engineering".into()),
                ("r-member".into(), "member".into()),
                ("r-billing".into(), "billing".into()),
            ],
            vec!["r-member".into()],
            vec![
                ("group_id".into(), "00aa-bb".into(), "r-admin".into()),
                ("group_name".into(), "finance".into(), "r-billing".into()),
                ("app_role".into(), "admin".into(), "r-admin".into()),
            ],
        )
    }

    fn user(groups: Vec<GroupFacts>, app_roles: Vec<&str>) -> UserFacts {
        UserFacts {
            pk: 1,
            id: "u".into(),
            connection_id: "c".into(),
            active: true,
            app_roles: app_roles.into_iter().map(String::from).collect(),
            groups,
        }
    }

    fn group(id: &str, external_id: Option<&str>, name: &str) -> GroupFacts {
        GroupFacts {
            id: id.into(),
            external_id: external_id.map(String::from),
            name_ci: Some(fold(name)),
        }
    }

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_apply_to_every_active_user() {
        assert_eq!(config().effective(&user(vec![], vec![])), ids(&["r-member"]));
    }

    #[test]
    fn groups_grant_by_idp_id_rollcall_id_name_and_convention() {
        let c = config();
        let by_external = user(vec![group("g1", Some("00AA-BB"), "Admins")], vec![]);
        assert_eq!(c.effective(&by_external), ids(&["r-member", "r-admin"]));
        let by_rollcall_id = user(vec![group("00aa-bb", None, "x")], vec![]);
        assert!(c.effective(&by_rollcall_id).contains("r-admin"));
        let by_name = user(vec![group("g2", None, "FINANCE")], vec![]);
        assert_eq!(c.effective(&by_name), ids(&["r-member", "r-billing"]));
        let by_convention = user(vec![group("g3", None, "engineering")], vec![]);
        assert_eq!(c.effective(&by_convention), ids(&["r-member", "r-eng"]));
    }

    #[test]
    fn entra_app_roles_map_too() {
        assert!(config().effective(&user(vec![], vec!["admin"])).contains("r-admin"));
        assert_eq!(
            app_roles_of(&json!({"roles": [{"value": "Admin", "primary": true}]})),
            vec!["admin"]
        );
    }

    #[test]
    fn inactive_users_have_no_roles() {
        let mut u = user(vec![group("g", Some("00aa-bb"), "Engineering")], vec!["admin"]);
        u.active = false;
        assert!(config().effective(&u).is_empty());
    }

    #[test]
    fn no_roles_in_the_organization_means_nothing_to_do() {
        assert!(RoleConfig::new(vec![], vec![], vec![]).is_empty());
        assert!(
            RoleConfig::new(vec![("r".into(), "scim:".into())], vec![], vec![])
                .scim_roles
                .is_empty()
        );
    }

    fn facts(pk: i64, groups: Vec<GroupFacts>, app_roles: Vec<&str>) -> UserFacts {
        UserFacts {
            pk,
            id: format!("u{pk}"),
            ..user(groups, app_roles)
        }
    }

    #[test]
    fn a_change_is_made_as_the_store_makes_it() {
        let c = config();
        let added = c
            .changed(
                &RoleChange::AddMapping {
                    role_id: "r-billing".into(),
                    matches: RoleMatch::GroupName(" Sales ".into()),
                },
                None,
            )
            .unwrap();
        assert!(
            added
                .mappings
                .contains(&("group_name".into(), "sales".into(), "r-billing".into()))
        );
        let dup = c.changed(
            &RoleChange::AddMapping {
                role_id: "r-billing".into(),
                matches: RoleMatch::GroupName("FINANCE".into()),
            },
            None,
        );
        assert!(matches!(dup, Err(crate::StoreError::Scim(e)) if e.status == 409));
        let foreign = c.changed(
            &RoleChange::SetDefaults {
                role_ids: vec!["r-admin".into(), "r-elsewhere".into()],
            },
            None,
        );
        assert!(matches!(foreign, Err(crate::StoreError::Scim(e)) if e.status == 400));
        let defaults = c
            .changed(
                &RoleChange::SetDefaults {
                    role_ids: vec!["r-admin".into(), "r-admin".into()],
                },
                None,
            )
            .unwrap();
        assert_eq!(defaults.defaults, vec!["r-admin".to_string()]);
        let m = ("app_role".to_string(), "admin".to_string(), "r-admin".to_string());
        let removed = c
            .changed(&RoleChange::RemoveMapping { mapping_id: "m".into() }, Some(&m))
            .unwrap();
        assert_eq!(removed.mappings.len(), 2);
        assert!(!removed.uses_app_roles());
    }

    #[test]
    fn a_diff_counts_every_user_and_samples_the_oldest() {
        let before = config();
        let after = before
            .changed(
                &RoleChange::SetDefaults {
                    role_ids: vec!["r-billing".into()],
                },
                None,
            )
            .unwrap();
        let finance = || vec![group("g", None, "Finance")];
        let mut users: Vec<UserFacts> = (1..=5).rev().map(|pk| facts(pk, vec![], vec![])).collect();
        users.push(facts(6, finance(), vec![]));
        let mut gone = facts(7, vec![], vec![]);
        gone.active = false;
        users.push(gone);
        let diff = diff_roles(&before, &after, users, 3);
        assert_eq!(diff.users_considered, 6);
        assert_eq!(diff.roles.len(), 2, "{diff:?}");
        let billing = &diff.roles[0];
        assert_eq!(
            (billing.role_key.as_str(), billing.gained, billing.lost),
            ("billing", 5, 0)
        );
        assert_eq!(
            billing.gained_pks,
            vec![1, 2, 3],
            "the oldest first, up to the sample size"
        );
        let member = &diff.roles[1];
        assert_eq!((member.role_key.as_str(), member.gained, member.lost), ("member", 0, 6));
        assert_eq!(diff.sample_pks(), vec![1, 2, 3]);
        let refs: HashMap<i64, UserRef> = [(1, UserRef::of("u1".into(), &json!({"userName": "a"})))].into();
        let named = diff.named(&refs);
        assert_eq!(named.changes[0].gained_sample.len(), 1);
        assert_eq!(named.changes[0].gained_sample[0].user_name.as_deref(), Some("a"));
        assert!(
            diff_roles(&before, &before, vec![facts(1, finance(), vec!["admin"])], 3)
                .roles
                .is_empty()
        );
    }

    #[test]
    fn a_user_is_named_by_user_name_and_primary_email() {
        let r = UserRef::of(
            "x".into(),
            &json!({"userName": "ann", "emails": [{"value": "a@w.example"}, {"value": "a@h.example", "primary": true}]}),
        );
        assert_eq!(r.user_name.as_deref(), Some("ann"));
        assert_eq!(r.email.as_deref(), Some("a@h.example"));
        assert_eq!(
            UserRef::of("x".into(), &json!({"emails": [{"value": "b@x"}]}))
                .email
                .as_deref(),
            Some("b@x")
        );
        assert_eq!(UserRef::of("x".into(), &json!({})).email, None);
    }
}
