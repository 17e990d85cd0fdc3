//! Validation and normalisation of resources on create and replace (RFC 7643 §2, §7; RFC 7644 §3.3, §3.5.1).
//!
//! [`prepare`] turns what a client sent into the canonical document Rollcall stores: attribute names in
//! the schema's case, extension attributes under their URN, IdP dialects read (see [`crate::dialect`]),
//! readOnly attributes dropped, writeOnly attributes checked then discarded, required attributes and
//! `primary` uniqueness enforced, and — on replace — immutable attributes kept unchanged.

use crate::dialect;
use crate::error::{ScimError, ScimResult};
use crate::path::split_urn;
use crate::schema::{AttributeDef, AttributeType, Mutability, ResourceType, SchemaRegistry};
use serde_json::{Map, Value};

/// Keys every resource has that clients may not set.
const SERVER_KEYS: [&str; 3] = ["schemas", "id", "meta"];

/// Normalises one attribute value: reads IdP dialects, checks the type, and puts sub-attribute names
/// in the schema's case. `Value::Null` passes through (it means "unassigned"). A multi-valued attribute
/// accepts an array or a single element and always yields an array.
///
/// ```
/// use rollcall_scim::resource::coerce_value;
/// use rollcall_scim::schema::{SchemaRegistry, AttributeType, AttributeDef};
/// use serde_json::json;
/// let active = AttributeDef::new("active", AttributeType::Boolean);
/// assert_eq!(coerce_value(&active, json!("False")).unwrap(), json!(false));
/// assert!(coerce_value(&active, json!("maybe")).is_err());
/// ```
pub fn coerce_value(attr: &AttributeDef, value: Value) -> ScimResult<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if attr.multi_valued {
        let mut out = Vec::new();
        for v in dialect::as_multi_valued(value) {
            let v = coerce_single(attr, v, &attr.name)?;
            if !v.is_null() {
                out.push(v);
            }
        }
        return Ok(Value::Array(out));
    }
    coerce_single(attr, value, &attr.name)
}

fn type_error(name: &str, attr: &AttributeDef, got: &Value) -> ScimError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ScimError::invalid_value(format!(
        "attribute \"{name}\" must be {}{}, not {kind}",
        match attr.kind {
            AttributeType::Integer => "an ",
            _ => "a ",
        },
        attr.kind.as_str()
    ))
}

fn coerce_single(attr: &AttributeDef, value: Value, name: &str) -> ScimResult<Value> {
    match attr.kind {
        AttributeType::String | AttributeType::Reference | AttributeType::Binary => match value {
            Value::String(_) | Value::Null => Ok(value),
            Value::Number(n) if attr.kind == AttributeType::String => Ok(Value::String(dialect::number_as_string(&n))),
            other => Err(type_error(name, attr, &other)),
        },
        AttributeType::DateTime => match value {
            Value::String(s) => {
                if time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).is_err() {
                    return Err(ScimError::invalid_value(format!(
                        "attribute \"{name}\" must be an RFC 3339 dateTime such as 2008-01-23T04:56:22Z, not \"{s}\""
                    )));
                }
                Ok(Value::String(s))
            }
            other => Err(type_error(name, attr, &other)),
        },
        AttributeType::Boolean => match dialect::lenient_bool(&value) {
            Some(b) => Ok(Value::Bool(b)),
            None => Err(type_error(name, attr, &value)),
        },
        AttributeType::Integer => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                Ok(Value::from(s.trim().parse::<i64>().unwrap_or(0)))
            }
            _ => Err(type_error(name, attr, &value)),
        },
        AttributeType::Decimal => match &value {
            // Numbers keep their text (serde_json's arbitrary precision); a decimal must still be
            // one a double can hold, as the RFC's JSON numbers are read by most clients.
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(value),
            Value::Number(n) => Err(ScimError::invalid_value(format!(
                "attribute \"{name}\" must be a decimal a double-precision number can hold, not {n}"
            ))),
            _ => Err(type_error(name, attr, &value)),
        },
        AttributeType::Complex => match value {
            Value::Object(obj) => {
                let mut out = Map::new();
                for (k, v) in obj {
                    let Some(sub) = attr.sub_attribute(&k) else {
                        return Err(ScimError::invalid_value(format!(
                            "\"{k}\" is not a sub-attribute of \"{name}\""
                        )));
                    };
                    if v.is_null() {
                        continue;
                    }
                    let sub_name = format!("{name}.{}", sub.name);
                    let v = coerce_single(sub, v, &sub_name)?;
                    if !v.is_null() {
                        out.insert(sub.name.clone(), v);
                    }
                }
                Ok(Value::Object(out))
            }
            Value::String(s) => dialect::complex_from_bare_string(attr, &s)
                .ok_or_else(|| type_error(name, attr, &Value::String(s.clone()))),
            other => Err(type_error(name, attr, &other)),
        },
    }
}

/// Whether a value counts as unassigned (RFC 7643 §2.5: null, empty array, and — for our purposes —
/// an empty complex value).
pub fn is_unassigned(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Creating or replacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    Create,
    Replace,
}

/// Validates and normalises a client's resource for create (`existing = None`) or replace
/// (`existing = Some(current document)`), returning the canonical document without `id` or `meta`.
///
/// On replace, immutable attributes that already have a value must be given unchanged (or left out,
/// which keeps them), else `mutability`.
///
/// ```
/// use rollcall_scim::{resource::prepare, schema::SchemaRegistry};
/// use serde_json::json;
/// let reg = SchemaRegistry::standard();
/// let rt = reg.resource_type("User").unwrap();
/// let doc = prepare(&reg, rt, &json!({
///     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
///     "USERNAME": "bjensen", "active": "True", "id": "ignored", "groups": [],
///     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": "boss-id"}
/// }), None).unwrap();
/// assert_eq!(doc["userName"], "bjensen");
/// assert_eq!(doc["active"], true);
/// assert!(doc.get("id").is_none() && doc.get("groups").is_none());
/// assert_eq!(doc["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"], "boss-id");
/// ```
pub fn prepare(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    input: &Value,
    existing: Option<&Map<String, Value>>,
) -> ScimResult<Map<String, Value>> {
    let obj = input
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the request body must be a JSON object"))?;
    let mut schemas_note = None;
    if let Some(schemas) = obj.get("schemas") {
        let list = schemas
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| ScimError::invalid_syntax("\"schemas\" must be an array of URN strings"))?;
        schemas_note = dialect::schemas_without_core(registry, rt, list.iter().filter_map(Value::as_str))?;
    }
    // A body that did not say it is a User (OneLogin templates): an error says so beside what did
    // not fit.
    let with_note = |e: ScimError| match &schemas_note {
        Some(note) => ScimError {
            detail: format!("{}; {note}", e.detail),
            ..e
        },
        None => e,
    };
    let mut out = read_attributes(registry, rt, obj).map_err(with_note)?;
    if let Some(existing) = existing {
        enforce_immutable(registry, rt, existing, &mut out)?;
    }
    set_schemas(registry, rt, &mut out);
    check_document(registry, rt, &out).map_err(with_note)?;
    Ok(out)
}

/// The attributes of an input body, as a document of the resource type (before immutability and
/// the document checks).
fn read_attributes(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    obj: &Map<String, Value>,
) -> ScimResult<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in obj {
        if SERVER_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            continue;
        }
        if let Some(ext) = registry.extension_schema(rt, key) {
            let Value::Object(ext_obj) = value else {
                if value.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_value(format!(
                    "\"{key}\" must be an object of {} attributes",
                    ext.name
                )));
            };
            for (k, v) in ext_obj {
                // Some clients repeat `schemas` inside the extension object (see `dialect`).
                if k.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let r = registry.find_attribute(rt, Some(&ext.id), k).ok_or_else(|| {
                    ScimError::invalid_value(format!("\"{k}\" is not an attribute of the {} schema", ext.id))
                })?;
                put_attribute(&mut out, Some(&ext.id), r.attr, v.clone())?;
            }
            continue;
        }
        let (urn, name) = split_urn(key);
        if urn.is_some_and(|u| !registry.is_schema_of(rt, u)) {
            // An extension this service does not know (a URN-keyed container or a URN-qualified
            // attribute of it): tolerated and dropped, see `dialect`.
            continue;
        }
        let Some(r) = registry.find_attribute(rt, urn, name) else {
            return Err(ScimError::invalid_value(format!(
                "\"{key}\" is not an attribute of {}",
                rt.name
            )));
        };
        put_attribute(&mut out, r.extension_urn(), r.attr, value.clone())?;
    }
    Ok(out)
}

/// Writes one top-level attribute into a document under construction, skipping readOnly attributes
/// and unassigned values, and discarding writeOnly ones after checking them.
fn put_attribute(out: &mut Map<String, Value>, urn: Option<&str>, attr: &AttributeDef, value: Value) -> ScimResult<()> {
    if attr.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    let value = coerce_value(attr, value)?;
    if attr.mutability == Mutability::WriteOnly || is_unassigned(&value) {
        return Ok(());
    }
    let target = match urn {
        Some(u) => out
            .entry(u.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("extension container is an object"),
        None => out,
    };
    target.insert(attr.name.clone(), value);
    Ok(())
}

/// On replace, immutable attributes keep their existing value; a different value is a `mutability` error.
fn enforce_immutable(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    existing: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> ScimResult<()> {
    let core = registry.schema(&rt.schema).into_iter().map(|s| (None, s));
    let exts = registry.extensions(rt).map(|s| (Some(s.id.as_str()), s));
    for (urn, schema) in core.chain(exts) {
        for attr in schema
            .attributes
            .iter()
            .filter(|a| a.mutability == Mutability::Immutable)
        {
            let old = container(existing, urn).and_then(|c| c.get(&attr.name));
            let new = container(out, urn).and_then(|c| c.get(&attr.name));
            match (old, new) {
                (Some(o), Some(n)) if o != n => {
                    return Err(ScimError::mutability(format!(
                        "attribute \"{}\" is immutable and cannot be changed",
                        attr.name
                    )));
                }
                (Some(o), None) => {
                    let o = o.clone();
                    match urn {
                        Some(u) => {
                            out.entry(u.to_string())
                                .or_insert_with(|| Value::Object(Map::new()))
                                .as_object_mut()
                                .expect("extension container is an object")
                                .insert(attr.name.clone(), o);
                        }
                        None => {
                            out.insert(attr.name.clone(), o);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn container<'a>(doc: &'a Map<String, Value>, urn: Option<&str>) -> Option<&'a Map<String, Value>> {
    match urn {
        None => Some(doc),
        Some(u) => doc.get(u).and_then(Value::as_object),
    }
}

/// Sets `schemas` to the core schema plus every extension the document has attributes for,
/// and drops empty extension containers.
pub fn set_schemas(registry: &SchemaRegistry, rt: &ResourceType, doc: &mut Map<String, Value>) {
    let mut schemas = vec![Value::String(rt.schema.clone())];
    for ext in &rt.schema_extensions {
        let has = doc.get(&ext.schema).map(|v| !is_unassigned(v)).unwrap_or(false);
        if has {
            schemas.push(Value::String(ext.schema.clone()));
        } else {
            doc.remove(&ext.schema);
        }
    }
    let _ = registry;
    doc.insert("schemas".into(), Value::Array(schemas));
}

/// Checks a canonical document: every attribute known and of the right type, required attributes
/// present, required extensions present, and at most one `primary: true` per multi-valued attribute.
/// Server-maintained keys (`schemas`, `id`, `meta`) are not checked.
pub fn check_document(registry: &SchemaRegistry, rt: &ResourceType, doc: &Map<String, Value>) -> ScimResult<()> {
    for (key, value) in doc {
        if SERVER_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            continue;
        }
        if let Some(ext) = registry.extension_schema(rt, key) {
            let obj = value
                .as_object()
                .ok_or_else(|| ScimError::invalid_value(format!("\"{key}\" must be an object")))?;
            for (k, v) in obj {
                let attr = ext
                    .attribute(k)
                    .ok_or_else(|| ScimError::invalid_value(format!("\"{k}\" is not an attribute of {}", ext.id)))?;
                check_value(attr, v)?;
            }
            continue;
        }
        let r = registry
            .find_attribute(rt, None, key)
            .filter(|r| !r.in_extension)
            .ok_or_else(|| ScimError::invalid_value(format!("\"{key}\" is not an attribute of {}", rt.name)))?;
        check_value(r.attr, value)?;
    }
    let required = registry
        .schema(&rt.schema)
        .into_iter()
        .map(|s| (None, s))
        .chain(registry.extensions(rt).map(|s| (Some(s.id.as_str()), s)));
    for (urn, schema) in required {
        for attr in schema.attributes.iter().filter(|a| a.required) {
            let present = container(doc, urn)
                .and_then(|c| c.get(&attr.name))
                .map(|v| !is_unassigned(v) && v.as_str().is_none_or(|s| !s.trim().is_empty()))
                .unwrap_or(false);
            if !present {
                return Err(ScimError::invalid_value(format!(
                    "attribute \"{}\" is required",
                    attr.name
                )));
            }
        }
    }
    for ext in rt.schema_extensions.iter().filter(|e| e.required) {
        if doc.get(&ext.schema).is_none_or(is_unassigned) {
            return Err(ScimError::invalid_value(format!(
                "the extension {} is required",
                ext.schema
            )));
        }
    }
    Ok(())
}

fn check_value(attr: &AttributeDef, v: &Value) -> ScimResult<()> {
    let coerced = coerce_value(attr, v.clone())?;
    if &coerced != v && !v.is_null() {
        return Err(ScimError::invalid_value(format!(
            "attribute \"{}\" is not in canonical form",
            attr.name
        )));
    }
    if attr.multi_valued
        && let Value::Array(items) = v
    {
        let primaries = items
            .iter()
            .filter(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
            .count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!(
                "at most one value of \"{}\" may have \"primary\": true",
                attr.name
            )));
        }
    }
    Ok(())
}

/// Removes writeOnly attributes (such as `password`) from a document before it is stored: Rollcall is
/// not an authentication source, so such values are validated and then discarded.
pub fn strip_write_only(registry: &SchemaRegistry, rt: &ResourceType, doc: &mut Map<String, Value>) {
    if let Some(core) = registry.schema(&rt.schema) {
        for a in core.attributes.iter().filter(|a| a.mutability == Mutability::WriteOnly) {
            doc.remove(&a.name);
        }
    }
    for ext in registry.extensions(rt) {
        if let Some(Value::Object(c)) = doc.get_mut(&ext.id) {
            for a in ext.attributes.iter().filter(|a| a.mutability == Mutability::WriteOnly) {
                c.remove(&a.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ENTERPRISE_USER;
    use serde_json::json;

    fn reg() -> SchemaRegistry {
        SchemaRegistry::standard()
    }

    fn user(body: Value) -> ScimResult<Map<String, Value>> {
        let r = reg();
        let rt = r.resource_type("User").unwrap().clone();
        prepare(&r, &rt, &body, None)
    }

    #[test]
    fn okta_create_is_accepted() {
        let doc = user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "isaac.brock@example.com",
            "name": {"givenName": "Isaac", "familyName": "Brock"},
            "emails": [{"primary": true, "value": "isaac.brock@example.com", "type": "work"}],
            "displayName": "Isaac Brock", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [], "password": "1mz050nq", "active": true
        }))
        .unwrap();
        assert_eq!(doc["userName"], "isaac.brock@example.com");
        assert!(doc.get("groups").is_none());
        assert!(doc.get("password").is_none(), "writeOnly values are never kept");
        assert_eq!(doc["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
    }

    #[test]
    fn entra_create_with_string_booleans_and_manager() {
        let doc = user(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
            "active": "True",
            "emails": [{"primary": "true", "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
            ENTERPRISE_USER: {"employeeNumber": 701984, "department": "Tour Operations", "manager": "123"}
        }))
        .unwrap();
        assert_eq!(doc["active"], true);
        assert_eq!(doc["emails"][0]["primary"], true);
        assert!(doc.get("meta").is_none() && doc.get("roles").is_none());
        assert_eq!(doc[ENTERPRISE_USER]["employeeNumber"], "701984");
        assert_eq!(doc[ENTERPRISE_USER]["manager"], json!({"value": "123"}));
        assert_eq!(doc["schemas"][1], ENTERPRISE_USER);
    }

    #[test]
    fn unknown_schema_urns_are_tolerated_for_groups() {
        let r = reg();
        let rt = r.resource_type("Group").unwrap();
        let doc = prepare(
            &r,
            rt,
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "displayName",
                "meta": {"resourceType": "Group"}
            }),
            None,
        )
        .unwrap();
        assert_eq!(doc["displayName"], "displayName");
        assert_eq!(doc["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:Group"]));
    }

    #[test]
    fn errors_are_specific() {
        let e = user(json!({"name": {"givenName": "x"}})).unwrap_err();
        assert!(e.detail.contains("userName") && e.detail.contains("required"), "{e}");
        let e = user(json!({"userName": "a", "active": "maybe"})).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue));
        assert!(e.detail.contains("active"));
        let e = user(json!({"userName": "a", "nosuch": 1})).unwrap_err();
        assert!(e.detail.contains("nosuch"));
        let e = user(json!({"userName": "a", "name": {"bogus": "x"}})).unwrap_err();
        assert!(e.detail.contains("bogus"));
        let e = user(
            json!({"userName": "a", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}),
        )
        .unwrap_err();
        assert!(e.detail.contains("primary"));
        let e = user(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "a"})).unwrap_err();
        assert!(e.detail.contains("schemas"));
        let e = user(json!(["not", "an", "object"])).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidSyntax));
        let e = user(json!({"userName": 12.5e300, "x": 1})).unwrap_err();
        assert_eq!(e.status, 400);
        let e = user(json!({"userName": "  "})).unwrap_err();
        assert!(e.detail.contains("required"));
    }

    /// OneLogin's documented Enterprise User template: SCIM 1.1 URNs, no core 2.0 URN.
    #[test]
    fn onelogin_template_without_the_core_urn_is_read_as_a_user() {
        let doc = user(json!({
            "schemas": ["urn:scim:schemas:core:1.0", "urn:scim:schemas:extension:enterprise:1.0"],
            "userName": "jdoe@example.com",
            "name": {"familyName": "Doe", "givenName": "Jane", "formatted": "Jane Doe"},
            "emails": {"value": "jdoe@example.com", "type": "work", "primary": true},
            "title": "Engineer",
            "urn:scim:schemas:extension:enterprise:1.0": {"department": "R&D"}
        }))
        .unwrap();
        assert_eq!(doc["userName"], "jdoe@example.com");
        assert_eq!(
            doc["emails"],
            json!([{"value": "jdoe@example.com", "type": "work", "primary": true}])
        );
        assert_eq!(doc["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
        // A custom URN only.
        let doc = user(json!({"schemas": ["urn:acme:scim:user"], "userName": "a"})).unwrap();
        assert_eq!(doc["userName"], "a");
        // An attribute that does not belong: the error names it and the URN.
        let e = user(json!({"schemas": ["urn:acme:scim:user"], "userName": "a", "badgeId": "7"})).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue));
        assert!(e.detail.contains("\"badgeId\" is not an attribute of User"), "{e}");
        assert!(e.detail.contains("urn:acme:scim:user is not a schema of User"), "{e}");
        assert!(
            e.detail
                .contains("does not include urn:ietf:params:scim:schemas:core:2.0:User"),
            "{e}"
        );
        // A required attribute missing, likewise.
        let e = user(json!({"schemas": ["urn:a", "urn:b"], "displayName": "x"})).unwrap_err();
        assert!(
            e.detail.contains("userName") && e.detail.contains("urn:a, urn:b are not schemas of User"),
            "{e}"
        );
        // With the core URN listed, errors stay as they were.
        let e =
            user(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", "badgeId": "7"}))
                .unwrap_err();
        assert_eq!(e.detail, "\"badgeId\" is not an attribute of User");
        // Another resource type's core schema is a misdirected request.
        let e =
            user(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"})).unwrap_err();
        assert!(e.detail.contains("the schema of a Group"), "{e}");
    }

    #[test]
    fn null_means_unassigned_and_single_value_wraps() {
        let doc = user(json!({"userName": "a", "title": null, "emails": {"value": "a@b.c"}})).unwrap();
        assert!(doc.get("title").is_none());
        assert_eq!(doc["emails"], json!([{"value": "a@b.c"}]));
    }

    #[test]
    fn replace_keeps_immutable_and_rejects_changes() {
        let r = reg();
        let rt = r.resource_type("Group").unwrap();
        let existing = prepare(&r, rt, &json!({"displayName": "g"}), None).unwrap();
        let doc = prepare(&r, rt, &json!({"displayName": "g2", "id": "whatever"}), Some(&existing)).unwrap();
        assert_eq!(doc["displayName"], "g2");
    }
}

/// The keys that lead a resource's representation, in this order (as in RFC 7643's examples);
/// `meta` comes last, and every other attribute keeps its place in between.
pub const LEADING_KEYS: [&str; 3] = ["schemas", "id", "externalId"];

/// Whether `doc` is already in [`canonical_key_order`]: the [`LEADING_KEYS`] it has come first and
/// in order, and `meta`, if present, is last. Cheaper than reordering (a few lookups).
pub fn has_canonical_key_order(doc: &Map<String, Value>) -> bool {
    let leading = LEADING_KEYS.iter().filter(|k| doc.contains_key(**k));
    if !doc.keys().zip(leading).all(|(k, want)| k == want) {
        return false;
    }
    !doc.contains_key("meta") || doc.keys().next_back().is_some_and(|k| k == "meta")
}

/// Puts the [`LEADING_KEYS`] first and `meta` last, keeping the order of the other keys. Returns
/// `doc` untouched when it is in that order already.
pub fn canonical_key_order(mut doc: Map<String, Value>) -> Map<String, Value> {
    if has_canonical_key_order(&doc) {
        return doc;
    }
    let mut out = Map::with_capacity(doc.len());
    for k in LEADING_KEYS {
        if let Some(x) = doc.shift_remove(k) {
            out.insert(k.to_string(), x);
        }
    }
    let meta = doc.shift_remove("meta");
    out.extend(doc);
    if let Some(meta) = meta {
        out.insert("meta".into(), meta);
    }
    out
}

#[cfg(test)]
mod key_order_tests {
    use super::*;
    use serde_json::json;

    fn keys(m: &Map<String, Value>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn leading_keys_first_meta_last_others_in_place() {
        let Value::Object(m) =
            json!({"userName": "a", "meta": {}, "externalId": "x", "active": true, "schemas": [], "id": "1"})
        else {
            unreachable!()
        };
        assert!(!has_canonical_key_order(&m));
        let m = canonical_key_order(m);
        assert_eq!(keys(&m), ["schemas", "id", "externalId", "userName", "active", "meta"]);
        assert!(has_canonical_key_order(&m));
    }

    #[test]
    fn documents_without_some_leading_keys() {
        for (doc, canonical) in [
            (json!({"schemas": [], "userName": "a"}), true),
            (json!({"id": "1", "userName": "a"}), true),
            (json!({"userName": "a", "id": "1"}), false),
            (json!({"schemas": [], "externalId": "x", "id": "1"}), false),
            (json!({"schemas": [], "id": "1", "meta": {}, "userName": "a"}), false),
            (json!({}), true),
        ] {
            let Value::Object(m) = doc else { unreachable!() };
            assert_eq!(has_canonical_key_order(&m), canonical, "{m:?}");
            assert!(has_canonical_key_order(&canonical_key_order(m)));
        }
    }
}
