//! Plans: the diff between what should be on a target and what is, computed without writing.
//!
//! What *should* be there comes from Rollcall's directory: the users in the target's scope, each
//! shaped into the document the target receives ([`shape_user`]: the default attributes, the
//! target's attribute mapping, its profile's rules). What *is* there comes from the mapping table
//! (what was last sent) and, for users Rollcall has not linked yet, from the target itself (found
//! by externalId, then userName, then email: [`RemoteIndex`]).
//!
//! A [`Plan`] lists every action a push would take — creates, links (with ambiguous and duplicate
//! matches), updates with the attributes that change, deactivations, deletions — and is both what
//! an operator approves before the first push and the dry-run mode. The engine takes the same
//! decisions object by object ([`decide_user`]), so a plan is what the push does.

use crate::profile::TargetProfile;
use rollcall_store::outbound::{AttributeMapping, Deprovision, MappingSource, ObjectState, TargetObject};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// The SCIM core user schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The attributes every target receives unless its mapping says otherwise: target path → source
/// path in the user's SCIM document (`id`: Rollcall's id of the user).
pub const DEFAULT_MAPPING: &[(&str, &str)] = &[
    ("userName", "userName"),
    ("externalId", "id"),
    ("name.givenName", "name.givenName"),
    ("name.familyName", "name.familyName"),
    ("name.formatted", "name.formatted"),
    ("displayName", "displayName"),
    ("emails", "emails"),
    ("title", "title"),
    ("preferredLanguage", "preferredLanguage"),
    ("locale", "locale"),
    ("timezone", "timezone"),
];

/// The mapping in force: the defaults, then the target's own entries (added, replaced, or — with
/// no source — removed).
pub fn effective_mapping(mapping: &AttributeMapping) -> BTreeMap<String, MappingSource> {
    let mut out: BTreeMap<String, MappingSource> = DEFAULT_MAPPING
        .iter()
        .map(|(t, s)| (t.to_string(), MappingSource::Path(s.to_string())))
        .collect();
    for (target, source) in &mapping.0 {
        match source {
            Some(s) => out.insert(target.clone(), s.clone()),
            None => out.remove(target),
        };
    }
    out
}

/// Longest constant of a mapping, as JSON.
pub const MAX_CONSTANT_BYTES: usize = 4096;

/// Checks a target's mapping: paths of letters, digits and dots, never `id` as a target path;
/// constants not null and at most [`MAX_CONSTANT_BYTES`].
pub fn validate_mapping(mapping: &AttributeMapping) -> Result<(), String> {
    let ok = |p: &str| {
        !p.is_empty()
            && p.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-')
            })
    };
    for (target, source) in &mapping.0 {
        if !ok(target) {
            return Err(format!("\"{target}\" is not an attribute path"));
        }
        if matches!(target.as_str(), "id" | "meta" | "schemas" | "active" | "groups") {
            return Err(format!("\"{target}\" is set by Rollcall and cannot be mapped"));
        }
        match source {
            Some(MappingSource::Path(s)) if !ok(s) => {
                return Err(format!("\"{s}\" (the source of \"{target}\") is not an attribute path"));
            }
            Some(MappingSource::Constant(c)) if c.value.is_null() => {
                return Err(format!(
                    "the constant of \"{target}\" is null; map it to null to send nothing"
                ));
            }
            Some(MappingSource::Constant(c)) if c.value.to_string().len() > MAX_CONSTANT_BYTES => {
                return Err(format!(
                    "the constant of \"{target}\" is longer than {MAX_CONSTANT_BYTES} bytes"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The value at `path` of a document (case-insensitive keys, as SCIM attribute names are). On a
/// multi-valued attribute, a sub-attribute is read from its primary value (or its first).
pub fn source_value<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = doc;
    for seg in path.split('.') {
        if let Value::Array(items) = at {
            at = items
                .iter()
                .find(|v| v.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| items.first())?;
        }
        let obj = at.as_object()?;
        at = obj
            .get(seg)
            .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(seg)).map(|(_, v)| v))?;
    }
    (!at.is_null()).then_some(at)
}

fn set_path(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut segs = path.split('.').peekable();
    let mut at = doc;
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            at.insert(seg.to_string(), value);
            return;
        }
        let next = at.entry(seg.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        at = next.as_object_mut().expect("made an object");
    }
}

/// The document a target receives for a user: `doc` (its SCIM document in Rollcall, `id` its
/// Rollcall id) through the mapping, shaped by the profile (one value per multi-valued attribute
/// with the email marked primary where the target wants that, unsupported attributes left out, a
/// display name where one is required). `active` is always `true`: deprovisioning is its own step.
pub fn shape_user(doc: &Value, local_id: &str, mapping: &AttributeMapping, profile: &TargetProfile) -> Value {
    let mut out = Map::new();
    for (target, source) in effective_mapping(mapping) {
        if profile
            .users
            .unsupported
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&target))
        {
            continue;
        }
        let value = match &source {
            MappingSource::Constant(c) => Some(c.value.clone()),
            MappingSource::Path(p) if p == "id" => Some(Value::String(local_id.to_string())),
            MappingSource::Path(p) => source_value(doc, p).cloned(),
        };
        let Some(mut value) = value else { continue };
        if let Value::Array(items) = &mut value {
            // Only the parts of a multi-valued attribute a target keeps, the primary first.
            items.retain(|v| !v.is_null());
            items.sort_by_key(|v| v.get("primary").and_then(Value::as_bool) != Some(true));
            for item in items.iter_mut() {
                if let Some(o) = item.as_object_mut() {
                    o.remove("display");
                    o.remove("$ref");
                }
            }
            if profile.users.one_value_per_multi_valued || target == "emails" {
                items.truncate(1);
            }
            if let Some(first) = items.first_mut().and_then(Value::as_object_mut) {
                first.insert("primary".into(), Value::Bool(true));
            }
            if items.is_empty() {
                continue;
            }
        }
        set_path(&mut out, &target, value);
    }
    // A display name where the target requires one (AWS): the formatted name, the given and
    // family names, or the userName.
    if !out.contains_key("displayName") && profile.users.required_on_create.contains(&"displayName") {
        let formatted = source_value(doc, "name.formatted")
            .and_then(Value::as_str)
            .map(str::to_string);
        let joined = [
            source_value(doc, "name.givenName"),
            source_value(doc, "name.familyName"),
        ]
        .iter()
        .filter_map(|v| v.and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ");
        let name = formatted
            .or_else(|| (!joined.is_empty()).then_some(joined))
            .or_else(|| {
                source_value(doc, "userName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if let Some(n) = name {
            out.insert("displayName".into(), Value::String(n));
        }
    }
    out.insert("active".into(), Value::Bool(true));
    out.insert("schemas".into(), json!([USER_SCHEMA]));
    Value::Object(out)
}

/// The attributes of `desired` that a `sent` document does not carry as they are (top-level
/// attributes; `schemas` ignored).
pub fn changed_attributes(sent: Option<&Value>, desired: &Value) -> Vec<AttributeChange> {
    let empty = Map::new();
    let before = sent.and_then(Value::as_object).unwrap_or(&empty);
    let after = desired.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    for (k, v) in after {
        if k == "schemas" {
            continue;
        }
        if before.get(k) != Some(v) {
            out.push(AttributeChange {
                attribute: k.clone(),
                before: before.get(k).cloned().unwrap_or(Value::Null),
                after: v.clone(),
            });
        }
    }
    for (k, v) in before {
        if k != "schemas" && !after.contains_key(k) {
            out.push(AttributeChange {
                attribute: k.clone(),
                before: v.clone(),
                after: Value::Null,
            });
        }
    }
    out
}

/// Whether a document read back from a target has every value of `desired` (what Rollcall
/// sends): sub-attributes it does not send and attributes the target adds are ignored; strings
/// of `userName` and e-mail values compare ignoring case.
pub fn covers(remote: &Value, desired: &Value) -> bool {
    covers_at(remote, desired, "")
}

fn covers_at(remote: &Value, desired: &Value, key: &str) -> bool {
    match (remote, desired) {
        (_, Value::Null) => true,
        (Value::Object(r), Value::Object(d)) => d.iter().all(|(k, v)| {
            if k == "schemas" {
                return true;
            }
            let rv = r
                .get(k)
                .or_else(|| r.iter().find(|(rk, _)| rk.eq_ignore_ascii_case(k)).map(|(_, v)| v));
            match rv {
                Some(rv) => covers_at(rv, v, k),
                None => false,
            }
        }),
        (Value::Array(r), Value::Array(d)) => d.iter().all(|dv| r.iter().any(|rv| covers_at(rv, dv, key))),
        (Value::String(r), Value::String(d)) if key == "userName" || key == "value" => r.eq_ignore_ascii_case(d),
        (r, d) => r == d,
    }
}

/// One attribute a push changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeChange {
    pub attribute: String,
    pub before: Value,
    pub after: Value,
}

/// How a user not yet linked was found on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchedBy {
    ExternalId,
    UserName,
    Email,
}

impl MatchedBy {
    /// The SCIM filter attribute.
    pub fn attribute(self) -> &'static str {
        match self {
            MatchedBy::ExternalId => "externalId",
            MatchedBy::UserName => "userName",
            MatchedBy::Email => "emails.value",
        }
    }
}

/// The keys a user is looked up by, in order: externalId, userName, primary email.
pub fn match_keys(desired: &Value) -> Vec<(MatchedBy, String)> {
    let mut keys = Vec::new();
    if let Some(x) = desired.get("externalId").and_then(Value::as_str) {
        keys.push((MatchedBy::ExternalId, x.to_string()));
    }
    if let Some(u) = desired.get("userName").and_then(Value::as_str) {
        keys.push((MatchedBy::UserName, u.to_string()));
    }
    if let Some(e) = source_value(desired, "emails.value").and_then(Value::as_str) {
        keys.push((MatchedBy::Email, e.to_string()));
    }
    keys
}

/// A remote user, as far as matching needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteUser {
    pub id: String,
    pub doc: Value,
}

/// Remote users found for one key: none, one, or several (ambiguous).
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    None,
    One(RemoteUser),
    Many(Vec<String>),
}

/// Every user of a target, read once and indexed by the match keys (plans of a target that can
/// be listed: one listing instead of a search per user).
#[derive(Debug, Default)]
pub struct RemoteIndex {
    users: Vec<RemoteUser>,
    by: HashMap<(MatchedBy, String), Vec<usize>>,
}

impl RemoteIndex {
    pub fn new(users: Vec<RemoteUser>) -> RemoteIndex {
        let mut by: HashMap<(MatchedBy, String), Vec<usize>> = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            if let Some(x) = u.doc.get("externalId").and_then(Value::as_str) {
                by.entry((MatchedBy::ExternalId, x.to_string())).or_default().push(i);
            }
            if let Some(n) = u.doc.get("userName").and_then(Value::as_str) {
                by.entry((MatchedBy::UserName, n.to_lowercase())).or_default().push(i);
            }
            if let Some(emails) = u.doc.get("emails").and_then(Value::as_array) {
                for e in emails.iter().filter_map(|e| e.get("value").and_then(Value::as_str)) {
                    let list = by.entry((MatchedBy::Email, e.to_lowercase())).or_default();
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
            }
        }
        RemoteIndex { users, by }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn users(&self) -> &[RemoteUser] {
        &self.users
    }

    pub fn get(&self, id: &str) -> Option<&RemoteUser> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The users matching one key.
    pub fn find(&self, by: MatchedBy, value: &str) -> Found {
        let key = match by {
            MatchedBy::ExternalId => value.to_string(),
            _ => value.to_lowercase(),
        };
        found(
            self.by
                .get(&(by, key))
                .map(|ix| ix.iter().map(|&i| self.users[i].clone()).collect()),
        )
    }
}

/// The outcome of a search from its results.
pub fn found(users: Option<Vec<RemoteUser>>) -> Found {
    match users {
        None => Found::None,
        Some(mut u) if u.len() == 1 => Found::One(u.remove(0)),
        Some(u) if u.is_empty() => Found::None,
        Some(u) => Found::Many(u.into_iter().map(|u| u.id).collect()),
    }
}

/// What a push does with one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UserAction {
    /// Nothing: the target has what Rollcall would send.
    Unchanged {
        remote_id: String,
    },
    Create {
        document: Value,
    },
    /// An existing remote user found by a key, linked (and updated where it differs).
    Link {
        remote_id: String,
        matched_by: MatchedBy,
        changes: Vec<AttributeChange>,
    },
    /// Several remote users match: nothing is done until an operator resolves it.
    Ambiguous {
        matched_by: MatchedBy,
        candidates: Vec<String>,
    },
    Update {
        remote_id: String,
        changes: Vec<AttributeChange>,
    },
    /// Deprovisioned: left the scope, deactivated or deleted in Rollcall.
    Deactivate {
        remote_id: String,
    },
    Delete {
        remote_id: String,
    },
    /// Reactivated: was deprovisioned, is in scope again.
    Reactivate {
        remote_id: String,
        changes: Vec<AttributeChange>,
    },
}

impl UserAction {
    pub fn name(&self) -> &'static str {
        match self {
            UserAction::Unchanged { .. } => "unchanged",
            UserAction::Create { .. } => "create",
            UserAction::Link { .. } => "link",
            UserAction::Ambiguous { .. } => "ambiguous",
            UserAction::Update { .. } => "update",
            UserAction::Deactivate { .. } => "deactivate",
            UserAction::Delete { .. } => "delete",
            UserAction::Reactivate { .. } => "reactivate",
        }
    }

    /// Whether it deprovisions (counted by the deletion threshold).
    pub fn removes(&self) -> bool {
        matches!(self, UserAction::Deactivate { .. } | UserAction::Delete { .. })
    }
}

/// Looks a not-yet-linked user up by its keys in order; the first key with any match decides.
pub fn lookup(
    keys: &[(MatchedBy, String)],
    mut find: impl FnMut(MatchedBy, &str) -> Found,
) -> (Found, Option<MatchedBy>) {
    for (by, value) in keys {
        match find(*by, value) {
            Found::None => continue,
            other => return (other, Some(*by)),
        }
    }
    (Found::None, None)
}

/// The decision for one user from what Rollcall knows: `desired` (`None`: out of scope, or no
/// longer active) and its row of the mapping table. `lookup` is asked only for a user in scope
/// that is not linked.
pub fn decide_user(
    desired: Option<&Value>,
    row: Option<&TargetObject>,
    deprovision: Deprovision,
    lookup_fn: impl FnOnce(&Value) -> (Found, Option<MatchedBy>),
) -> Option<UserAction> {
    let linked = row.and_then(|r| r.remote_id.clone().map(|id| (r, id)));
    match (desired, linked) {
        (None, None) => None,
        (None, Some((r, remote_id))) => match (r.state, deprovision) {
            (ObjectState::Deleted, _) => None,
            (ObjectState::Deactivated, Deprovision::Deactivate) => None,
            (_, Deprovision::Deactivate) => Some(UserAction::Deactivate { remote_id }),
            (_, Deprovision::Delete) => Some(UserAction::Delete { remote_id }),
        },
        (Some(d), Some((r, remote_id))) => {
            let changes = changed_attributes(r.sent.as_ref(), d);
            match r.state {
                ObjectState::Deactivated | ObjectState::Deleted => Some(UserAction::Reactivate { remote_id, changes }),
                ObjectState::Synced if changes.is_empty() => Some(UserAction::Unchanged { remote_id }),
                _ if changes.is_empty() => Some(UserAction::Update {
                    remote_id,
                    changes: changed_attributes(None, d),
                }),
                _ => Some(UserAction::Update { remote_id, changes }),
            }
        }
        (Some(d), None) => Some(match lookup_fn(d) {
            (Found::None, _) | (_, None) => UserAction::Create { document: d.clone() },
            (Found::One(u), Some(by)) => UserAction::Link {
                remote_id: u.id,
                matched_by: by,
                changes: if covers(&u.doc, d) {
                    Vec::new()
                } else {
                    changed_attributes(Some(&u.doc), d)
                        .into_iter()
                        .filter(|c| c.attribute != "meta" && c.attribute != "id" && !c.after.is_null())
                        .collect()
                },
            },
            (Found::Many(candidates), Some(by)) => UserAction::Ambiguous {
                matched_by: by,
                candidates,
            },
        }),
    }
}

/// One user's line in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedUser {
    /// Rollcall's id of the user.
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(flatten)]
    pub action: UserAction,
}

/// Counts of a plan by action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub users_in_scope: u64,
    pub create: u64,
    pub link: u64,
    pub ambiguous: u64,
    pub update: u64,
    pub unchanged: u64,
    pub deactivate: u64,
    pub delete: u64,
    pub reactivate: u64,
    /// Users that would be deactivated or deleted, and whether that is more than the target's
    /// deletion threshold allows in one run (the push would pause the target).
    pub exceeds_deletion_threshold: bool,
}

/// The full diff of a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub summary: PlanSummary,
    /// Every user with something to do (unchanged ones are only counted).
    pub users: Vec<PlannedUser>,
    /// Remote users read to match (0 when the target was searched user by user).
    pub remote_users_read: u64,
}

impl Plan {
    pub fn new(users_in_scope: u64, remote_users_read: u64) -> Plan {
        Plan {
            summary: PlanSummary {
                users_in_scope,
                ..Default::default()
            },
            users: Vec::new(),
            remote_users_read,
        }
    }

    pub fn add(&mut self, user_id: &str, user_name: Option<String>, action: UserAction) {
        let s = &mut self.summary;
        match &action {
            UserAction::Unchanged { .. } => {
                s.unchanged += 1;
                return;
            }
            UserAction::Create { .. } => s.create += 1,
            UserAction::Link { .. } => s.link += 1,
            UserAction::Ambiguous { .. } => s.ambiguous += 1,
            UserAction::Update { .. } => s.update += 1,
            UserAction::Deactivate { .. } => s.deactivate += 1,
            UserAction::Delete { .. } => s.delete += 1,
            UserAction::Reactivate { .. } => s.reactivate += 1,
        }
        self.users.push(PlannedUser {
            user_id: user_id.to_string(),
            user_name,
            action,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;
    use rollcall_store::ResourceKind;

    fn alice() -> Value {
        json!({
            "userName": "alice@example.com",
            "externalId": "okta-1",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@work.example.com", "type": "work"}, {"value": "alice@example.com", "primary": true}],
            "title": "Engineer",
            "nickName": "al",
        })
    }

    #[test]
    fn users_are_shaped_by_mapping_and_profile() {
        let generic = profile::generic();
        let doc = shape_user(&alice(), "u1", &AttributeMapping::default(), generic);
        assert_eq!(
            doc["externalId"],
            json!("u1"),
            "Rollcall's id identifies the user downstream"
        );
        assert_eq!(doc["userName"], json!("alice@example.com"));
        assert_eq!(doc["emails"], json!([{"value": "alice@example.com", "primary": true}]));
        assert_eq!(doc["active"], json!(true));
        assert!(doc.get("nickName").is_none(), "not mapped by default");
        assert!(doc.get("displayName").is_none(), "none in the source, none required");
        // The mapping adds, renames and removes.
        let mut m = AttributeMapping::default();
        m.0.insert("nickName".into(), Some("nickName".into()));
        m.0.insert("title".into(), None);
        m.0.insert("externalId".into(), Some("externalId".into()));
        let doc = shape_user(&alice(), "u1", &m, generic);
        assert_eq!(doc["nickName"], json!("al"));
        assert!(doc.get("title").is_none());
        assert_eq!(doc["externalId"], json!("okta-1"));
        // AWS: a display name is required.
        let aws = profile::profile(profile::AWS_IAM_IDENTITY_CENTER).unwrap();
        let doc = shape_user(&alice(), "u1", &AttributeMapping::default(), aws);
        assert_eq!(doc["displayName"], json!("Alice Liddell"));
        assert!(validate_mapping(&m).is_ok());
        let mut bad = AttributeMapping::default();
        bad.0.insert("id".into(), Some("userName".into()));
        assert!(validate_mapping(&bad).is_err());
        let mut bad = AttributeMapping::default();
        bad.0.insert("a b".into(), None);
        assert!(validate_mapping(&bad).is_err());
    }

    #[test]
    fn a_constant_is_sent_for_every_user() {
        // Salesforce: one profile entitlement for every user, whatever the IdP sent.
        let sf = profile::profile("salesforce").unwrap();
        let m = AttributeMapping::default().constant("entitlements", json!([{"value": "00e5g000001AbCd"}]));
        assert!(validate_mapping(&m).is_ok());
        let doc = shape_user(&alice(), "u1", &m, sf);
        assert_eq!(
            doc["entitlements"],
            json!([{"value": "00e5g000001AbCd", "primary": true}])
        );
        // It overrides what the user has, and is stored and read as JSON the same way.
        let m = AttributeMapping::default().constant("title", json!("Contractor"));
        assert_eq!(
            shape_user(&alice(), "u1", &m, profile::generic())["title"],
            json!("Contractor")
        );
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"title":{"value":"Contractor"}}"#);
        assert_eq!(serde_json::from_str::<AttributeMapping>(&text).unwrap(), m);
        // A null constant, an unknown key beside `value`, a constant too long: refused.
        let null = AttributeMapping::default().constant("title", Value::Null);
        assert!(validate_mapping(&null).is_err());
        assert!(serde_json::from_str::<AttributeMapping>(r#"{"title":{"value":"x","extra":1}}"#).is_err());
        let long = AttributeMapping::default().constant("title", json!("x".repeat(MAX_CONSTANT_BYTES)));
        assert!(validate_mapping(&long).is_err());
    }

    #[test]
    fn read_back_covers_what_was_sent() {
        let sent = shape_user(&alice(), "u1", &AttributeMapping::default(), profile::generic());
        let mut remote = sent.clone();
        remote["id"] = json!("r1");
        remote["meta"] = json!({"resourceType": "User"});
        remote["userName"] = json!("ALICE@example.com");
        remote["emails"] = json!([{"value": "alice@example.com", "primary": true, "type": "work"}]);
        assert!(covers(&remote, &sent));
        remote["name"]["familyName"] = json!("Changed");
        assert!(!covers(&remote, &sent), "drift");
        let changes = changed_attributes(Some(&remote), &sent);
        assert!(changes.iter().any(|c| c.attribute == "name"));
    }

    fn row(remote: Option<&str>, sent: Option<Value>, state: ObjectState) -> TargetObject {
        TargetObject {
            target_id: "t".into(),
            kind: ResourceKind::User,
            local_id: "u1".into(),
            remote_id: remote.map(str::to_string),
            sent,
            state,
            error: None,
            attempts: 0,
            retry_at_us: None,
            updated_us: 0,
        }
    }

    #[test]
    fn decisions() {
        let d = shape_user(&alice(), "u1", &AttributeMapping::default(), profile::generic());
        let none = |_: &Value| (Found::None, None);
        // Not linked, nothing found: create.
        assert!(matches!(
            decide_user(Some(&d), None, Deprovision::Deactivate, none),
            Some(UserAction::Create { .. })
        ));
        // Found once by userName: link, no change when the remote has it all.
        let remote = RemoteUser {
            id: "r1".into(),
            doc: d.clone(),
        };
        let index = RemoteIndex::new(vec![remote.clone()]);
        let keys = match_keys(&d);
        let a = decide_user(Some(&d), None, Deprovision::Deactivate, |_| {
            lookup(&keys, |by, v| index.find(by, v))
        });
        assert_eq!(
            a,
            Some(UserAction::Link {
                remote_id: "r1".into(),
                matched_by: MatchedBy::ExternalId,
                changes: vec![]
            })
        );
        // Two remote users with the same email, no externalId or userName match: ambiguous.
        let dup = |id: &str| RemoteUser {
            id: id.into(),
            doc: json!({"userName": id, "emails": [{"value": "Alice@Example.com"}]}),
        };
        let index = RemoteIndex::new(vec![dup("x"), dup("y")]);
        let a = decide_user(Some(&d), None, Deprovision::Deactivate, |_| {
            lookup(&keys, |by, v| index.find(by, v))
        });
        assert_eq!(
            a,
            Some(UserAction::Ambiguous {
                matched_by: MatchedBy::Email,
                candidates: vec!["x".into(), "y".into()]
            })
        );
        // Linked and unchanged: nothing; changed: the attributes that change.
        let synced = row(Some("r1"), Some(d.clone()), ObjectState::Synced);
        assert_eq!(
            decide_user(Some(&d), Some(&synced), Deprovision::Deactivate, none),
            Some(UserAction::Unchanged { remote_id: "r1".into() })
        );
        let mut d2 = d.clone();
        d2["title"] = json!("Manager");
        match decide_user(Some(&d2), Some(&synced), Deprovision::Deactivate, none) {
            Some(UserAction::Update { changes, .. }) => {
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].attribute, "title");
            }
            other => panic!("{other:?}"),
        }
        // Out of scope: deactivate (once), or delete.
        assert_eq!(
            decide_user(None, Some(&synced), Deprovision::Deactivate, none),
            Some(UserAction::Deactivate { remote_id: "r1".into() })
        );
        let gone = row(Some("r1"), Some(d.clone()), ObjectState::Deactivated);
        assert_eq!(decide_user(None, Some(&gone), Deprovision::Deactivate, none), None);
        assert_eq!(
            decide_user(None, Some(&gone), Deprovision::Delete, none),
            Some(UserAction::Delete { remote_id: "r1".into() })
        );
        assert!(matches!(
            decide_user(Some(&d), Some(&gone), Deprovision::Deactivate, none),
            Some(UserAction::Reactivate { .. })
        ));
        // A failed row is pushed again even when the attributes did not change.
        let failed = row(Some("r1"), Some(d.clone()), ObjectState::Failed);
        assert!(matches!(
            decide_user(Some(&d), Some(&failed), Deprovision::Deactivate, none),
            Some(UserAction::Update { .. })
        ));
        assert_eq!(decide_user(None, None, Deprovision::Deactivate, none), None);
    }
}
