//! Google Workspace users and groups as SCIM documents. Google's peculiarities are tables here, not
//! conditions spread through the sync:
//!
//! - [`INACTIVE_FLAGS`]: which user flags make a user inactive (`suspended`, `archived`);
//! - [`EMAIL_TYPES`] and [`PHONE_TYPES`]: Google's `type` of an address or number as SCIM's;
//! - [`MEMBER_TYPES`]: which members of a group become SCIM members (users and groups; the whole
//!   customer and external addresses do not);
//! - [`EMPLOYEE_ID_TYPES`]: which `externalIds` entry is the employee number;
//! - group names: Google's are not unique, SCIM's `displayName` is within a connection, so colliding
//!   names get the group's address appended ([`group_display_names`]).

use super::google::{GoogleGroup, GoogleMember, GoogleUser};
use rollcall_store::SyncScope;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A flag of a Google user.
pub type UserFlag = fn(&GoogleUser) -> bool;

/// The user flags that make a Google user inactive in Rollcall: suspended (by an admin, or for abuse)
/// and archived (an Archived User licence: no sign-in).
pub const INACTIVE_FLAGS: &[(&str, UserFlag)] = &[("suspended", |u| u.suspended), ("archived", |u| u.archived)];

/// Google `emails[].type` → SCIM `emails[].type` (anything else: `other`).
pub const EMAIL_TYPES: &[(&str, &str)] = &[("work", "work"), ("home", "home"), ("other", "other")];

/// Google `phones[].type` → SCIM `phoneNumbers[].type` (anything else: `other`).
pub const PHONE_TYPES: &[(&str, &str)] = &[
    ("work", "work"),
    ("home", "home"),
    ("mobile", "mobile"),
    ("work_mobile", "mobile"),
    ("work_fax", "fax"),
    ("home_fax", "fax"),
    ("other_fax", "fax"),
    ("pager", "pager"),
    ("work_pager", "pager"),
    ("main", "work"),
    ("company_main", "work"),
];

/// Google member `type` → the SCIM member type (`None`: not a member in Rollcall).
pub const MEMBER_TYPES: &[(&str, Option<&str>)] = &[
    ("USER", Some("User")),
    ("GROUP", Some("Group")),
    // "All users in the organization": not a member of its own.
    ("CUSTOMER", None),
    // An address outside the customer: not a user of this directory.
    ("EXTERNAL", None),
];

/// `externalIds[].type` values whose `value` is the employee number.
pub const EMPLOYEE_ID_TYPES: &[&str] = &["organization"];

fn table<'a>(t: &'a [(&str, &'a str)], key: &str) -> &'a str {
    t.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map_or("other", |(_, v)| v)
}

/// The SCIM member type of a Google member, if it is one.
pub fn member_type(m: &GoogleMember) -> Option<&'static str> {
    MEMBER_TYPES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&m.kind))
        .and_then(|(_, v)| *v)
}

/// Whether a user is active in Rollcall.
pub fn is_active(u: &GoogleUser) -> bool {
    !INACTIVE_FLAGS.iter().any(|(_, flag)| flag(u))
}

fn objects(v: &Option<Value>) -> impl Iterator<Item = &Map<String, Value>> {
    v.as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn text<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A Google user as a SCIM User document (`userName` the primary address, `externalId` Google's
/// id).
pub fn user_document(u: &GoogleUser) -> Value {
    let mut doc = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    doc.insert("userName".into(), json!(u.primary_email));
    doc.insert("externalId".into(), json!(u.id));
    if let Some(n) = &u.name {
        let mut name = Map::new();
        if let Some(g) = n.given_name.as_deref().filter(|s| !s.is_empty()) {
            name.insert("givenName".into(), json!(g));
        }
        if let Some(f) = n.family_name.as_deref().filter(|s| !s.is_empty()) {
            name.insert("familyName".into(), json!(f));
        }
        if let Some(full) = n.full_name.as_deref().filter(|s| !s.is_empty()) {
            name.insert("formatted".into(), json!(full));
            doc.insert("displayName".into(), json!(full));
        }
        if !name.is_empty() {
            doc.insert("name".into(), Value::Object(name));
        }
    }
    doc.insert("active".into(), json!(is_active(u)));
    // The primary address first and primary; the others once each.
    let mut seen = HashSet::new();
    let mut emails = Vec::new();
    if !u.primary_email.is_empty() {
        seen.insert(u.primary_email.to_lowercase());
        emails.push(json!({"value": u.primary_email, "type": "work", "primary": true}));
    }
    for e in objects(&u.emails) {
        let Some(address) = text(e, "address") else { continue };
        if !seen.insert(address.to_lowercase()) {
            continue;
        }
        let kind = table(EMAIL_TYPES, text(e, "type").unwrap_or("other"));
        emails.push(json!({"value": address, "type": kind}));
    }
    if !emails.is_empty() {
        doc.insert("emails".into(), Value::Array(emails));
    }
    let mut phones = Vec::new();
    let mut primary_phone = false;
    for p in objects(&u.phones) {
        let Some(value) = text(p, "value") else { continue };
        let mut phone = json!({"value": value, "type": table(PHONE_TYPES, text(p, "type").unwrap_or("other"))});
        if p.get("primary").and_then(Value::as_bool) == Some(true) && !primary_phone {
            primary_phone = true;
            phone["primary"] = json!(true);
        }
        phones.push(phone);
    }
    if !phones.is_empty() {
        doc.insert("phoneNumbers".into(), Value::Array(phones));
    }
    // The primary organization (or the first): title, department, cost centre.
    let orgs: Vec<_> = objects(&u.organizations).collect();
    let org = orgs
        .iter()
        .find(|o| o.get("primary").and_then(Value::as_bool) == Some(true))
        .or(orgs.first());
    let mut enterprise = Map::new();
    if let Some(o) = org {
        if let Some(t) = text(o, "title") {
            doc.insert("title".into(), json!(t));
        }
        if let Some(d) = text(o, "department") {
            enterprise.insert("department".into(), json!(d));
        }
        if let Some(c) = text(o, "costCenter") {
            enterprise.insert("costCenter".into(), json!(c));
        }
        if let Some(n) = text(o, "name") {
            enterprise.insert("organization".into(), json!(n));
        }
    }
    if let Some(id) = objects(&u.external_ids)
        .find(|x| text(x, "type").is_some_and(|t| EMPLOYEE_ID_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t))))
        && let Some(v) = text(id, "value")
    {
        enterprise.insert("employeeNumber".into(), json!(v));
    }
    if !enterprise.is_empty() {
        schemas.push(json!(ENTERPRISE_SCHEMA));
        doc.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    Value::Object(doc)
}

/// A Google group as a SCIM Group document, without members.
pub fn group_document(g: &GoogleGroup, display_name: &str) -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": display_name,
        "externalId": g.id,
    })
}

/// The `displayName` of each group (by Google id): its name, or, when several groups share a name
/// (Google allows it; a connection's group names are unique), `name (address)`. A group without a
/// name is named by its address.
pub fn group_display_names(groups: &[GoogleGroup]) -> HashMap<String, String> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for g in groups {
        *count.entry(g.name.trim().to_lowercase()).or_default() += 1;
    }
    groups
        .iter()
        .map(|g| {
            let name = g.name.trim();
            let shown = if name.is_empty() {
                g.email.clone()
            } else if count[&name.to_lowercase()] > 1 {
                format!("{name} ({})", g.email)
            } else {
                name.to_string()
            };
            (g.id.clone(), shown)
        })
        .collect()
}

/// Whether an organizational unit path is `unit` or below it (`/Eng` holds `/Eng/Web`, not
/// `/Engineering`). Google's paths compare without regard to case.
pub fn in_org_unit(path: &str, unit: &str) -> bool {
    let unit = unit.trim_end_matches('/');
    if unit.is_empty() {
        return true;
    }
    let (p, u) = (path.to_lowercase(), unit.to_lowercase());
    p == u || p.starts_with(&format!("{u}/"))
}

/// Which users and groups a scope keeps: users in its units or members (directly, or through groups
/// inside) of its groups; its groups (all groups without any).
pub struct Scoped {
    pub user_ids: HashSet<String>,
    pub group_ids: HashSet<String>,
}

pub fn apply_scope(
    scope: &SyncScope,
    users: &[GoogleUser],
    groups: &[GoogleGroup],
    members: &HashMap<String, Vec<GoogleMember>>,
) -> Scoped {
    let group_ids: HashSet<String> = if scope.groups.is_empty() {
        groups.iter().map(|g| g.id.clone()).collect()
    } else {
        groups
            .iter()
            .filter(|g| scope.groups.iter().any(|s| s.eq_ignore_ascii_case(&g.email)))
            .map(|g| g.id.clone())
            .collect()
    };
    if scope.is_everything() {
        return Scoped {
            user_ids: users.iter().map(|u| u.id.clone()).collect(),
            group_ids,
        };
    }
    let mut user_ids: HashSet<String> = users
        .iter()
        .filter(|u| {
            let path = u.org_unit_path.as_deref().unwrap_or("/");
            scope.org_units.iter().any(|unit| in_org_unit(path, unit))
        })
        .map(|u| u.id.clone())
        .collect();
    // Members of the chosen groups, through nested groups too (each group visited once).
    let mut todo: Vec<&String> = if scope.groups.is_empty() {
        Vec::new()
    } else {
        group_ids.iter().collect()
    };
    let mut visited = HashSet::new();
    while let Some(g) = todo.pop() {
        if !visited.insert(g.clone()) {
            continue;
        }
        for m in members.get(g).into_iter().flatten() {
            match member_type(m) {
                Some("User") => {
                    user_ids.insert(m.id.clone());
                }
                Some("Group") => todo.push(&m.id),
                _ => {}
            }
        }
    }
    Scoped { user_ids, group_ids }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory_sync::google::GoogleName;

    fn user() -> GoogleUser {
        serde_json::from_value(json!({
            "kind": "admin#directory#user",
            "id": "104",
            "primaryEmail": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace", "fullName": "Ada Lovelace"},
            "isAdmin": false,
            "suspended": false,
            "archived": false,
            "orgUnitPath": "/Engineering/Web",
            "emails": [
                {"address": "ada@example.com", "primary": true},
                {"address": "ada@home.example", "type": "home"},
                {"address": "ada@alias.example", "type": "custom", "customType": "alias"}
            ],
            "phones": [{"value": "+1 555 0100", "type": "work", "primary": true},
                       {"value": "+1 555 0101", "type": "work_fax"}],
            "organizations": [{"title": "Engineer", "department": "R&D", "costCenter": "42", "primary": true}],
            "externalIds": [{"value": "E-7", "type": "organization"}, {"value": "x", "type": "custom"}]
        }))
        .unwrap()
    }

    #[test]
    fn a_google_user_as_scim() {
        let doc = user_document(&user());
        assert_eq!(doc["userName"], "ada@example.com");
        assert_eq!(doc["externalId"], "104");
        assert_eq!(doc["displayName"], "Ada Lovelace");
        assert_eq!(doc["name"]["givenName"], "Ada");
        assert_eq!(doc["name"]["familyName"], "Lovelace");
        assert_eq!(doc["active"], true);
        let emails = doc["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 3, "the primary address once: {emails:?}");
        assert_eq!(
            emails[0],
            json!({"value": "ada@example.com", "type": "work", "primary": true})
        );
        assert_eq!(emails[1]["type"], "home");
        assert_eq!(emails[2]["type"], "other");
        assert_eq!(doc["phoneNumbers"][1]["type"], "fax");
        assert_eq!(doc["title"], "Engineer");
        assert_eq!(doc[ENTERPRISE_SCHEMA]["department"], "R&D");
        assert_eq!(doc[ENTERPRISE_SCHEMA]["employeeNumber"], "E-7");
        assert_eq!(doc["schemas"][1], ENTERPRISE_SCHEMA);
    }

    #[test]
    fn suspended_and_archived_users_are_inactive() {
        let mut u = user();
        u.suspended = true;
        assert_eq!(user_document(&u)["active"], false);
        u.suspended = false;
        u.archived = true;
        assert_eq!(user_document(&u)["active"], false);
        // A user without optional fields.
        let bare = GoogleUser {
            id: "1".into(),
            primary_email: "b@example.com".into(),
            name: Some(GoogleName::default()),
            ..Default::default()
        };
        let doc = user_document(&bare);
        assert!(doc.get("name").is_none() && doc.get("displayName").is_none());
        assert_eq!(doc["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn colliding_group_names_get_their_address() {
        let g = |id: &str, name: &str, email: &str| GoogleGroup {
            id: id.into(),
            name: name.into(),
            email: email.into(),
            description: None,
        };
        let names = group_display_names(&[
            g("1", "Team", "team-a@example.com"),
            g("2", "team", "team-b@example.com"),
            g("3", "Sales", "sales@example.com"),
            g("4", "", "noname@example.com"),
        ]);
        assert_eq!(names["1"], "Team (team-a@example.com)");
        assert_eq!(names["2"], "team (team-b@example.com)");
        assert_eq!(names["3"], "Sales");
        assert_eq!(names["4"], "noname@example.com");
    }

    #[test]
    fn org_units_hold_the_units_below() {
        assert!(in_org_unit("/Engineering", "/Engineering"));
        assert!(in_org_unit("/Engineering/Web", "/engineering/"));
        assert!(!in_org_unit("/EngineeringOps", "/Engineering"));
        assert!(in_org_unit("/Sales", "/"));
    }

    #[test]
    fn scope_by_unit_and_by_group_through_nested_groups() {
        let u = |id: &str, ou: &str| GoogleUser {
            id: id.into(),
            primary_email: format!("{id}@example.com"),
            org_unit_path: Some(ou.into()),
            ..Default::default()
        };
        let users = vec![u("a", "/Eng"), u("b", "/Sales"), u("c", "/Sales"), u("d", "/Ops")];
        let groups = vec![
            GoogleGroup {
                id: "g1".into(),
                email: "eng@example.com".into(),
                name: "Eng".into(),
                description: None,
            },
            GoogleGroup {
                id: "g2".into(),
                email: "inner@example.com".into(),
                name: "Inner".into(),
                description: None,
            },
        ];
        let m = |id: &str, kind: &str| GoogleMember {
            id: id.into(),
            kind: kind.into(),
            ..Default::default()
        };
        let members = HashMap::from([
            (
                "g1".to_string(),
                vec![m("b", "USER"), m("g2", "GROUP"), m("C01", "CUSTOMER")],
            ),
            ("g2".to_string(), vec![m("c", "USER"), m("g1", "GROUP")]),
        ]);
        let scope = SyncScope {
            org_units: vec!["/Eng".into()],
            groups: vec!["ENG@example.com".into()],
        };
        let s = apply_scope(&scope, &users, &groups, &members);
        let mut ids: Vec<_> = s.user_ids.into_iter().collect();
        ids.sort();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(s.group_ids, HashSet::from(["g1".to_string()]));
        let all = apply_scope(&SyncScope::default(), &users, &groups, &members);
        assert_eq!(all.user_ids.len(), 4);
        assert_eq!(all.group_ids.len(), 2);
    }
}
