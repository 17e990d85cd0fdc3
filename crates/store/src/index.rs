//! Values derived from a canonical document for indexing and searching.

use crate::model::ResourceKind;
use rollcall_scim::schema::{AttributeDef, ResourceType, SchemaRegistry};
use serde_json::{Map, Value};

/// Case folding for case-insensitive attributes, done in Rust so that it is right for all of
/// Unicode on both databases.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The longest value, in UTF-8 bytes, of an indexed attribute (`userName`, `externalId`,
/// `displayName`, `emails.value`). B-tree index entries are bounded (PostgreSQL refuses rows over
/// about 2.7 kB), so longer values are refused up front with a clear error on every backend.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// The indexed columns of a resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexFields {
    pub user_name_ci: Option<String>,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub display_name_ci: Option<String>,
    pub active: Option<bool>,
    /// Folded `emails[*].value`.
    pub emails_ci: Vec<String>,
}

impl IndexFields {
    /// Refuses indexed values longer than [`MAX_INDEXED_BYTES`] with 400 `invalidValue`.
    pub fn check_lengths(&self) -> Result<(), rollcall_scim::ScimError> {
        let fields = [
            ("userName", self.user_name_ci.as_deref()),
            ("externalId", self.external_id.as_deref()),
            ("displayName", self.display_name.as_deref()),
        ];
        let emails = self.emails_ci.iter().map(|e| ("emails.value", Some(e.as_str())));
        for (name, value) in fields.into_iter().chain(emails) {
            if let Some(v) = value
                && v.len() > MAX_INDEXED_BYTES
            {
                return Err(rollcall_scim::ScimError::invalid_value(format!(
                    "{name} is {} bytes long; the longest accepted is {MAX_INDEXED_BYTES}",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    pub fn of(kind: ResourceKind, doc: &Value) -> IndexFields {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
        let display_name = s("displayName");
        IndexFields {
            user_name_ci: if kind == ResourceKind::User {
                s("userName").map(|v| fold(&v))
            } else {
                None
            },
            external_id: s("externalId"),
            display_name_ci: display_name.as_deref().map(fold),
            display_name,
            active: doc.get("active").and_then(Value::as_bool),
            emails_ci: doc
                .get("emails")
                .and_then(Value::as_array)
                .map(|a| {
                    let mut v: Vec<String> = a
                        .iter()
                        .filter_map(|e| e.get("value").and_then(Value::as_str))
                        .map(fold)
                        .collect();
                    v.sort();
                    v.dedup();
                    v
                })
                .unwrap_or_default(),
        }
    }
}

/// The search copy of a document: every string of a case-insensitive attribute folded, so SQL can
/// compare it with a folded literal. Attributes the schema does not know are folded too.
pub fn search_doc(registry: &SchemaRegistry, rt: &ResourceType, doc: &Value) -> Value {
    let Some(obj) = doc.as_object() else { return doc.clone() };
    let mut out = Map::new();
    for (k, v) in obj {
        if let Some(ext) = registry.extension_schema(rt, k) {
            let folded = match v {
                Value::Object(inner) => Value::Object(
                    inner
                        .iter()
                        .map(|(ik, iv)| (ik.clone(), fold_attr(ext.attribute(ik), iv)))
                        .collect(),
                ),
                other => other.clone(),
            };
            out.insert(k.clone(), folded);
            continue;
        }
        let attr = registry.find_attribute(rt, None, k).map(|r| r.attr);
        out.insert(k.clone(), fold_attr(attr, v));
    }
    Value::Object(out)
}

fn fold_attr(attr: Option<&AttributeDef>, v: &Value) -> Value {
    match v {
        Value::String(s) => {
            if attr.is_some_and(|a| a.case_exact) {
                v.clone()
            } else {
                Value::String(fold(s))
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| fold_attr(attr, i)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, iv)| {
                    let sub = attr.and_then(|a| a.sub_attribute(k));
                    // A sub-attribute unknown to the schema is folded like any unknown string.
                    (k.clone(), fold_attr(sub, iv))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn folds_unicode_and_respects_case_exact() {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("User").unwrap();
        let doc = json!({"userName": "ÅSA.Öberg", "externalId": "AbC", "name": {"familyName": "ÖBERG"},
                         "emails": [{"value": "ÅSA@Example.com", "type": "Work"}]});
        let s = search_doc(&reg, rt, &doc);
        assert_eq!(s["userName"], "åsa.öberg");
        assert_eq!(s["externalId"], "AbC");
        assert_eq!(s["name"]["familyName"], "öberg");
        assert_eq!(s["emails"][0]["type"], "work");
        let f = IndexFields::of(ResourceKind::User, &doc);
        assert_eq!(f.user_name_ci.as_deref(), Some("åsa.öberg"));
        assert_eq!(f.emails_ci, vec!["åsa@example.com".to_string()]);
    }
}
