//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) honouring each attribute's
//! `returned` characteristic (RFC 7643 §7).

use crate::error::ScimResult;
use crate::path::AttrPath;
use crate::schema::{AttributeDef, ResourceType, Returned, SchemaRegistry};
use serde_json::{Map, Value};

/// Which attributes a response carries.
///
/// ```
/// use rollcall_scim::{projection::Projection, schema::SchemaRegistry};
/// use serde_json::json;
/// let reg = SchemaRegistry::standard();
/// let rt = reg.resource_type("User").unwrap();
/// let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1",
///                  "userName": "b", "name": {"givenName": "B", "familyName": "J"}, "title": "Boss"});
/// let p = Projection::parse(Some("name.givenName"), None).unwrap();
/// assert_eq!(p.apply(&reg, rt, &doc), json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
///                                            "id": "1", "name": {"givenName": "B"}}));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// When not empty, only these (and `returned: always` attributes) are returned.
    pub attributes: Vec<AttrPath>,
    /// Attributes to leave out (ignored for `returned: always`).
    pub excluded: Vec<AttrPath>,
}

fn parse_list(s: Option<&str>) -> ScimResult<Vec<AttrPath>> {
    let mut out = Vec::new();
    for part in s.unwrap_or_default().split(',') {
        let part = part.trim();
        if !part.is_empty() {
            out.push(AttrPath::parse(part)?);
        }
    }
    Ok(out)
}

/// How much of a top-level attribute to return.
enum Keep<'p> {
    None,
    All,
    /// Only these sub-attributes (plus `returned: always` ones).
    Subs(Vec<&'p str>),
    /// All but these sub-attributes.
    AllBut(Vec<&'p str>),
}

impl Projection {
    /// Parses the comma-separated query parameters.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> ScimResult<Projection> {
        Ok(Projection {
            attributes: parse_list(attributes)?,
            excluded: parse_list(excluded)?,
        })
    }

    /// True when neither list is set.
    pub fn is_default(&self) -> bool {
        self.attributes.is_empty() && self.excluded.is_empty()
    }

    /// Whether the top-level attribute `name` of the core schema would appear in the response — lets
    /// the store skip work, e.g. reading group membership when `members` is excluded.
    pub fn wants(&self, registry: &SchemaRegistry, rt: &ResourceType, name: &str) -> bool {
        let Some(r) = registry.find_attribute(rt, None, name) else {
            return false;
        };
        let schema = r.schema.map(|s| s.id.as_str()).unwrap_or(&rt.schema);
        !matches!(self.keep(rt, schema, r.attr), Keep::None)
    }

    fn matches(rt: &ResourceType, p: &AttrPath, schema: &str, attr: &AttributeDef) -> bool {
        let schema_ok = match &p.schema {
            None => true,
            Some(s) => s.eq_ignore_ascii_case(schema) || (s.eq_ignore_ascii_case(&rt.schema) && schema == rt.schema),
        };
        if schema_ok && p.attr.eq_ignore_ascii_case(&attr.name) {
            return true;
        }
        // The whole extension, written as its URN.
        p.sub_attr.is_none()
            && p.schema
                .as_ref()
                .is_some_and(|s| format!("{s}:{}", p.attr).eq_ignore_ascii_case(schema))
    }

    fn keep<'p>(&'p self, rt: &ResourceType, schema: &str, attr: &AttributeDef) -> Keep<'p> {
        match attr.returned {
            Returned::Never => return Keep::None,
            Returned::Always => return Keep::All,
            _ => {}
        }
        if !self.attributes.is_empty() {
            let mut subs = Vec::new();
            for p in self.attributes.iter().filter(|p| Self::matches(rt, p, schema, attr)) {
                match &p.sub_attr {
                    None => return Keep::All,
                    Some(s) => subs.push(s.as_str()),
                }
            }
            return if subs.is_empty() { Keep::None } else { Keep::Subs(subs) };
        }
        if attr.returned == Returned::Request {
            return Keep::None;
        }
        let mut but = Vec::new();
        for p in self.excluded.iter().filter(|p| Self::matches(rt, p, schema, attr)) {
            match &p.sub_attr {
                None => return Keep::None,
                Some(s) => but.push(s.as_str()),
            }
        }
        if but.is_empty() { Keep::All } else { Keep::AllBut(but) }
    }

    /// Applies the projection to a full resource document.
    pub fn apply(&self, registry: &SchemaRegistry, rt: &ResourceType, doc: &Value) -> Value {
        let Some(obj) = doc.as_object() else {
            return doc.clone();
        };
        let mut out = Map::new();
        for (key, value) in obj {
            if key == "schemas" {
                out.insert(key.clone(), value.clone());
                continue;
            }
            if let Some(ext) = registry.extension_schema(rt, key) {
                let Some(inner) = value.as_object() else { continue };
                let mut kept = Map::new();
                for (k, v) in inner {
                    if let Some(attr) = ext.attribute(k)
                        && let Some(v) = self.project_attr(rt, &ext.id, attr, v)
                    {
                        kept.insert(k.clone(), v);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Object(kept));
                }
                continue;
            }
            let Some(r) = registry.find_attribute(rt, None, key).filter(|r| !r.in_extension) else {
                continue;
            };
            let schema = r.schema.map(|s| s.id.as_str()).unwrap_or(&rt.schema);
            if let Some(v) = self.project_attr(rt, schema, r.attr, value) {
                out.insert(key.clone(), v);
            }
        }
        Value::Object(out)
    }

    fn project_attr(&self, rt: &ResourceType, schema: &str, attr: &AttributeDef, v: &Value) -> Option<Value> {
        let keep = self.keep(rt, schema, attr);
        if matches!(keep, Keep::None) {
            return None;
        }
        if attr.sub_attributes.is_empty() {
            return Some(v.clone());
        }
        let filter_obj = |o: &Map<String, Value>| -> Map<String, Value> {
            o.iter()
                .filter(|(k, _)| {
                    let Some(sub) = attr.sub_attribute(k) else { return false };
                    match sub.returned {
                        Returned::Never => return false,
                        Returned::Always => return true,
                        _ => {}
                    }
                    match &keep {
                        Keep::All => sub.returned != Returned::Request,
                        Keep::Subs(list) => list.iter().any(|s| s.eq_ignore_ascii_case(k)),
                        Keep::AllBut(list) => {
                            sub.returned != Returned::Request && !list.iter().any(|s| s.eq_ignore_ascii_case(k))
                        }
                        Keep::None => false,
                    }
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        match v {
            Value::Object(o) => {
                let m = filter_obj(o);
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(items) => {
                let kept: Vec<Value> = items
                    .iter()
                    .filter_map(|i| match i {
                        Value::Object(o) => {
                            let m = filter_obj(o);
                            (!m.is_empty()).then_some(Value::Object(m))
                        }
                        other => Some(other.clone()),
                    })
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            other => Some(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ENTERPRISE_USER;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
            "id": "42",
            "externalId": "ext",
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "b@x.com", "type": "work", "primary": true}, {"value": "b@home", "type": "home"}],
            "password": "secret",
            "meta": {"resourceType": "User", "version": "W/\"1\""},
            ENTERPRISE_USER: {"employeeNumber": "7", "department": "Ops"}
        })
    }

    fn apply(attrs: Option<&str>, excl: Option<&str>) -> Value {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("User").unwrap();
        Projection::parse(attrs, excl).unwrap().apply(&reg, rt, &doc())
    }

    #[test]
    fn default_drops_never_returned() {
        let v = apply(None, None);
        assert!(v.get("password").is_none());
        assert_eq!(v["userName"], "bjensen");
        assert_eq!(v[ENTERPRISE_USER]["department"], "Ops");
    }

    #[test]
    fn attributes_keep_always_and_listed() {
        let v = apply(Some("userName,emails.value"), None);
        assert_eq!(
            v,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER], "id": "42",
                   "userName": "bjensen", "emails": [{"value": "b@x.com"}, {"value": "b@home"}]})
        );
        let v = apply(
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            None,
        );
        assert_eq!(v[ENTERPRISE_USER], json!({"department": "Ops"}));
        let v = apply(Some(ENTERPRISE_USER), None);
        assert_eq!(v[ENTERPRISE_USER]["employeeNumber"], "7");
        let v = apply(Some("USERNAME,password"), None);
        assert!(v.get("password").is_none());
        assert_eq!(v["userName"], "bjensen");
    }

    #[test]
    fn excluded_attributes() {
        let v = apply(None, Some("emails,name.familyName,id,meta"));
        assert!(v.get("emails").is_none());
        assert_eq!(v["name"], json!({"givenName": "Barbara"}));
        assert_eq!(v["id"], "42", "id is returned always");
        assert!(v.get("meta").is_none());
        let v = apply(None, Some(ENTERPRISE_USER));
        assert!(v.get(ENTERPRISE_USER).is_none());
    }

    #[test]
    fn wants_members() {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("Group").unwrap();
        assert!(Projection::default().wants(&reg, rt, "members"));
        assert!(
            !Projection::parse(None, Some("members"))
                .unwrap()
                .wants(&reg, rt, "members")
        );
        assert!(
            !Projection::parse(Some("displayName"), None)
                .unwrap()
                .wants(&reg, rt, "members")
        );
        assert!(
            Projection::parse(Some("members.value"), None)
                .unwrap()
                .wants(&reg, rt, "members")
        );
    }
}
