//! A connection's attribute policy for users: which attributes a create must carry, which are kept at
//! all, and how attributes map into the flat profile the application reads.
//!
//! Paths are plain attribute paths ([`AttrPath`]): `userName`, `name.givenName`, or URN-qualified
//! extension attributes such as
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`. On a multi-valued
//! attribute a path reads the `primary` value, or the first one (`emails.value` is the primary e-mail
//! address).

use crate::error::{ScimError, ScimResult};
use crate::path::AttrPath;
use crate::schema::{ResourceType, SchemaRegistry};
use serde_json::{Map, Value};

/// The attributes that are always kept, whatever `synced` says: they identify the user and carry its
/// lifecycle.
const ALWAYS_SYNCED: [&str; 6] = ["schemas", "id", "externalId", "meta", "userName", "active"];

/// The profile a directory entry gets when the connection does not configure one.
pub const DEFAULT_PROFILE: [(&str, &str); 12] = [
    ("user_name", "userName"),
    ("display_name", "displayName"),
    ("given_name", "name.givenName"),
    ("family_name", "name.familyName"),
    ("email", "emails.value"),
    ("phone_number", "phoneNumbers.value"),
    ("title", "title"),
    ("locale", "locale"),
    (
        "department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ),
    (
        "employee_number",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    ),
    (
        "manager_id",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    ),
    (
        "organization",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
    ),
];

/// An attribute path resolved against the schema: canonical names, and where its values live.
#[derive(Debug, Clone, PartialEq)]
pub struct DocPath {
    /// As configured, for messages.
    pub text: String,
    /// The extension URN the attribute lives under, if any.
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl DocPath {
    /// Resolves `text` against `rt`; an unknown attribute is a 400 naming it.
    pub fn resolve(registry: &SchemaRegistry, rt: &ResourceType, text: &str) -> ScimResult<DocPath> {
        let path = AttrPath::parse(text)?;
        let resolved = registry
            .resolve(rt, &path)
            .ok_or_else(|| ScimError::invalid_value(format!("\"{text}\" is not an attribute of {}", rt.name)))?;
        Ok(DocPath {
            text: text.to_string(),
            urn: resolved.extension_urn().map(str::to_string),
            attr: resolved.attr.name.clone(),
            sub: resolved.sub.map(|s| s.name.clone()),
        })
    }

    /// The value the path designates in a stored document (canonical names), if it has one.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let container = match &self.urn {
            Some(urn) => get_ci(doc, urn)?,
            None => doc,
        };
        let mut v = get_ci(container, &self.attr)?;
        if let Value::Array(items) = v {
            v = items
                .iter()
                .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| items.first())?;
        }
        match &self.sub {
            Some(sub) => get_ci(v, sub),
            None => Some(v),
        }
        .filter(|v| is_present(v))
    }
}

fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let m = v.as_object()?;
    m.get(key)
        .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Whether a connection whose `synced_attributes` are `synced` keeps the core attribute `attr` (its
/// `value` at least) of what the identity provider sends: a role mapping by Entra app role reads
/// `roles`, and dropping it would silently stop the mapping.
pub fn synced_keeps(synced: Option<&[String]>, attr: &str) -> bool {
    let Some(list) = synced else {
        return true;
    };
    ALWAYS_SYNCED.iter().any(|a| a.eq_ignore_ascii_case(attr))
        || list.iter().any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case(attr)
                || p.get(..attr.len() + 1).is_some_and(|head| {
                    head.eq_ignore_ascii_case(&format!("{attr}.")) && p[attr.len() + 1..].eq_ignore_ascii_case("value")
                })
        })
}

/// A connection's attribute policy, resolved against the User schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributePolicy {
    /// A user must have each of these (create and replace; a PATCH may not remove one).
    pub required: Vec<DocPath>,
    /// When set, only these attributes (and [`ALWAYS_SYNCED`]) are kept; the rest of what the
    /// identity provider sends is dropped.
    pub synced: Option<Vec<DocPath>>,
    /// Profile key → attribute.
    pub profile: Vec<(String, DocPath)>,
}

impl AttributePolicy {
    /// Builds a policy from configured paths; `profile: None` takes [`DEFAULT_PROFILE`]. Every path
    /// must be an attribute of `rt` (400 naming the first that is not).
    pub fn resolve(
        registry: &SchemaRegistry,
        rt: &ResourceType,
        required: &[String],
        synced: Option<&[String]>,
        profile: Option<&[(String, String)]>,
    ) -> ScimResult<AttributePolicy> {
        let paths = |list: &[String], what: &str| -> ScimResult<Vec<DocPath>> {
            list.iter()
                .map(|p| {
                    DocPath::resolve(registry, rt, p)
                        .map_err(|e| ScimError::invalid_value(format!("{what}: {}", e.detail)))
                })
                .collect()
        };
        let required = paths(required, "required_attributes")?;
        let synced = synced.map(|s| paths(s, "synced_attributes")).transpose()?;
        if let Some(synced) = &synced
            && let Some(r) = required
                .iter()
                .find(|r| !ALWAYS_SYNCED.contains(&r.attr.as_str()) && !covers(synced, r))
        {
            return Err(ScimError::invalid_value(format!(
                "required attribute \"{}\" is not among the synced attributes",
                r.text
            )));
        }
        let explicit_profile = profile.is_some();
        let default: Vec<(String, String)>;
        let profile = match profile {
            Some(p) => p,
            None => {
                default = DEFAULT_PROFILE
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                &default
            }
        };
        let mut out = Vec::with_capacity(profile.len());
        for (key, path) in profile {
            if key.trim().is_empty() {
                return Err(ScimError::invalid_value("profile_mapping: keys cannot be empty"));
            }
            let p = DocPath::resolve(registry, rt, path)
                .map_err(|e| ScimError::invalid_value(format!("profile_mapping.{key}: {}", e.detail)))?;
            // A profile key reading an attribute that is never stored would always be empty.
            if explicit_profile
                && let Some(synced) = &synced
                && !ALWAYS_SYNCED.contains(&p.attr.as_str())
                && !covers(synced, &p)
            {
                return Err(ScimError::invalid_value(format!(
                    "profile_mapping.{key}: \"{}\" is not among the synced attributes, so it would always be empty",
                    p.text
                )));
            }
            out.push((key.clone(), p));
        }
        Ok(AttributePolicy {
            required,
            synced,
            profile: out,
        })
    }

    /// The first required attribute `doc` lacks, as a 400 naming it.
    pub fn check_required(&self, doc: &Value) -> ScimResult<()> {
        match self.required.iter().find(|p| p.get(doc).is_none()) {
            None => Ok(()),
            Some(p) => Err(ScimError::invalid_value(format!(
                "\"{}\" is required by this SCIM connection's attribute policy",
                p.text
            ))),
        }
    }

    /// Like [`check_required`](Self::check_required), but only for attributes `before` had: a PATCH
    /// may not remove a required attribute, yet users created before the policy can still be updated.
    pub fn check_not_removed(&self, before: &Value, after: &Value) -> ScimResult<()> {
        match self
            .required
            .iter()
            .find(|p| p.get(before).is_some() && p.get(after).is_none())
        {
            None => Ok(()),
            Some(p) => Err(ScimError::invalid_value(format!(
                "\"{}\" is required by this SCIM connection's attribute policy and cannot be removed",
                p.text
            ))),
        }
    }

    /// Drops every attribute the policy does not sync (nothing without a `synced` list).
    pub fn keep_synced(&self, doc: &mut Map<String, Value>) {
        let Some(synced) = &self.synced else { return };
        doc.retain(|key, value| {
            if ALWAYS_SYNCED.iter().any(|a| a.eq_ignore_ascii_case(key)) {
                return true;
            }
            if key.contains(':') {
                // An extension: keep the listed attributes inside it.
                let Value::Object(ext) = value else { return false };
                ext.retain(|attr, v| keep_attr(synced, Some(key), attr, v));
                return !ext.is_empty();
            }
            keep_attr(synced, None, key, value)
        });
    }

    /// The flat profile of a user document.
    pub fn profile(&self, doc: &Value) -> Map<String, Value> {
        self.profile
            .iter()
            .map(|(k, p)| (k.clone(), p.get(doc).cloned().unwrap_or(Value::Null)))
            .collect()
    }
}

/// Whether a synced path keeps `path`'s attribute (the whole attribute, or the sub-attribute).
fn covers(synced: &[DocPath], path: &DocPath) -> bool {
    synced.iter().any(|s| {
        s.urn.as_deref().map(str::to_ascii_lowercase) == path.urn.as_deref().map(str::to_ascii_lowercase)
            && s.attr.eq_ignore_ascii_case(&path.attr)
            && (s.sub.is_none()
                || s.sub.as_deref().map(str::to_ascii_lowercase) == path.sub.as_deref().map(str::to_ascii_lowercase))
    })
}

/// Keeps attribute `attr` (under extension `urn`) when a synced path names it; a path naming
/// sub-attributes keeps only those (plus `type` and `primary`, which qualify multi-valued items).
fn keep_attr(synced: &[DocPath], urn: Option<&str>, attr: &str, value: &mut Value) -> bool {
    let matching: Vec<&DocPath> = synced
        .iter()
        .filter(|s| {
            s.urn.as_deref().map(str::to_ascii_lowercase) == urn.map(str::to_ascii_lowercase)
                && s.attr.eq_ignore_ascii_case(attr)
        })
        .collect();
    if matching.is_empty() {
        return false;
    }
    if matching.iter().any(|s| s.sub.is_none()) {
        return true;
    }
    let keep_sub = |k: &str| {
        k == "type"
            || k == "primary"
            || matching
                .iter()
                .any(|s| s.sub.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(k)))
    };
    match value {
        Value::Object(o) => {
            o.retain(|k, _| keep_sub(k));
            !o.is_empty()
        }
        Value::Array(items) => {
            for i in items.iter_mut() {
                if let Value::Object(o) = i {
                    o.retain(|k, _| keep_sub(k));
                }
            }
            items.retain(|i| i.as_object().is_none_or(|o| !o.is_empty()));
            !items.is_empty()
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> SchemaRegistry {
        SchemaRegistry::standard()
    }

    fn policy(required: &[&str], synced: Option<&[&str]>) -> ScimResult<AttributePolicy> {
        let r = registry();
        let rt = r.resource_type("User").unwrap().clone();
        let required: Vec<String> = required.iter().map(|s| s.to_string()).collect();
        let synced: Option<Vec<String>> = synced.map(|s| s.iter().map(|x| x.to_string()).collect());
        AttributePolicy::resolve(&r, &rt, &required, synced.as_deref(), None)
    }

    fn user() -> Value {
        json!({
            "userName": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
            "emails": [{"value": "other@example.com", "type": "home"}, {"value": "ada@example.com", "type": "work", "primary": true}],
            "title": "Engineer",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "costCenter": "42", "manager": {"value": "m-1", "displayName": "Boss"}},
        })
    }

    #[test]
    fn an_explicit_profile_must_read_synced_attributes() {
        let r = registry();
        let rt = r.resource_type("User").unwrap().clone();
        let synced = vec!["emails".to_string(), "name".to_string()];
        let profile = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let ok = AttributePolicy::resolve(&r, &rt, &[], Some(&synced), Some(&profile("first", "name.givenName")));
        assert!(ok.is_ok());
        let e = AttributePolicy::resolve(&r, &rt, &[], Some(&synced), Some(&profile("job", "title"))).unwrap_err();
        assert!(
            e.detail.contains("profile_mapping.job") && e.detail.contains("\"title\""),
            "{}",
            e.detail
        );
        // Always-kept attributes and the default profile are fine.
        assert!(AttributePolicy::resolve(&r, &rt, &[], Some(&synced), Some(&profile("u", "userName"))).is_ok());
        assert!(AttributePolicy::resolve(&r, &rt, &[], Some(&synced), None).is_ok());
    }

    #[test]
    fn synced_keeps_names_and_values() {
        assert!(synced_keeps(None, "roles"));
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!synced_keeps(Some(&list(&["emails"])), "roles"));
        assert!(synced_keeps(Some(&list(&["emails", "Roles"])), "roles"));
        assert!(synced_keeps(Some(&list(&["roles.value"])), "roles"));
        assert!(!synced_keeps(Some(&list(&["roles.display"])), "roles"));
        assert!(!synced_keeps(Some(&list(&["rolesx"])), "roles"));
        assert!(synced_keeps(Some(&list(&[])), "userName"));
    }

    #[test]
    fn required_attributes_are_named_when_missing() {
        let p = policy(&["userName", "name.givenName", "emails"], None).unwrap();
        assert!(p.check_required(&user()).is_ok());
        let mut u = user();
        u["name"].as_object_mut().unwrap().remove("givenName");
        let e = p.check_required(&u).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.detail.contains("name.givenName"), "{}", e.detail);
        u["name"]["givenName"] = json!("  ");
        assert!(p.check_required(&u).is_err(), "blank strings do not count");
    }

    #[test]
    fn unknown_paths_are_refused() {
        let e = policy(&["nickName", "name.middle_name"], None).unwrap_err();
        assert!(e.detail.contains("name.middle_name"), "{}", e.detail);
        let e = policy(&["title"], Some(&["userName"])).unwrap_err();
        assert!(e.detail.contains("not among the synced"), "{}", e.detail);
    }

    #[test]
    fn only_synced_attributes_are_kept() {
        let p = policy(
            &[],
            Some(&[
                "name.givenName",
                "emails.value",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            ]),
        )
        .unwrap();
        let Value::Object(mut doc) = user() else { unreachable!() };
        p.keep_synced(&mut doc);
        assert_eq!(
            Value::Object(doc),
            json!({
                "userName": "ada@example.com",
                "name": {"givenName": "Ada"},
                "emails": [{"value": "other@example.com", "type": "home"}, {"value": "ada@example.com", "type": "work", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            })
        );
    }

    #[test]
    fn default_profile_reads_primary_values_and_extensions() {
        let p = policy(&[], None).unwrap();
        let profile = p.profile(&user());
        assert_eq!(profile["email"], json!("ada@example.com"));
        assert_eq!(profile["given_name"], json!("Ada"));
        assert_eq!(profile["department"], json!("R&D"));
        assert_eq!(profile["manager_id"], json!("m-1"));
        assert_eq!(profile["employee_number"], Value::Null);
    }

    #[test]
    fn a_patch_may_not_remove_a_required_attribute() {
        let p = policy(&["title"], None).unwrap();
        let mut after = user();
        after.as_object_mut().unwrap().remove("title");
        assert!(p.check_not_removed(&user(), &after).is_err());
        // A user that never had it can still be updated.
        assert!(p.check_not_removed(&after, &after).is_ok());
    }
}
