//! What real identity providers send that the RFCs do not quite allow, in one place.
//!
//! Rollcall accepts each of these and always answers in the RFC's form. Every tolerance below is
//! implemented here (or, for grammar-level forms, in the module named) so that the rest of the core
//! stays RFC-shaped.
//!
//! | Sent by | What arrives | How it is read | Where |
//! |---|---|---|---|
//! | Entra ID | booleans as strings: `"active": "False"`, `roles[primary eq "True"]` | [`lenient_bool`] | here |
//! | Entra ID | enterprise `manager` as a bare id string (`"manager": "26118915-..."`) | [`complex_from_bare_string`]: `{"value": ...}` | here |
//! | Entra ID | PATCH ops capitalised: `"op": "Replace"` | case-insensitive op names | `patch` |
//! | Entra ID | PATCH without `path` whose `value` keys are dotted or URN-qualified paths (`"name.givenName"`, `"urn:...:enterprise:2.0:User:department"`) | each key treated as a path | `patch` |
//! | Entra ID | `replace` on `emails[type eq "work"].value` when no work email exists yet | creates the element | `patch` |
//! | Entra ID | filter `emails[type eq "work"].value eq "x"` (value path followed by a sub-attribute) | rewritten to `emails[type eq "work" and value eq "x"]` | `filter` |
//! | Entra ID | the `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group` schema URN beside the core one | unknown `schemas` URNs are ignored | [`known_schemas`] |
//! | Okta, Entra | `remove` on `members` with a `value` list of members | removes only those members | `patch` |
//! | Okta | a placeholder `password` on create | accepted; passwords are validated then discarded, never stored | `resource` |
//! | Okta | `"groups": []` on create | readOnly attributes on input are ignored | `resource` |
//! | Okta, Entra | `id`/`meta` echoed back in PUT bodies and PATCH values | readOnly attributes on input are ignored | `resource`, `patch` |
//! | Okta, Google | `"$ref": null` in member values | ignored | `patch`, `resource` |
//! | scim2-tester, some SDKs | a `schemas` key repeated inside an extension object | ignored | `resource`, `patch` |
//! | several | a single object where a multi-valued attribute expects an array | wrapped into a one-element array | [`as_multi_valued`] |
//! | several | numbers for string attributes (`"employeeNumber": 701984`) | the number's text, as sent, whatever its size (`18446744073709551616` stays `"18446744073709551616"`) | [`number_as_string`] |

use crate::schema::AttributeDef;
use serde_json::{Map, Value};

/// Reads a boolean the way Entra ID sends it: a JSON boolean, or the strings `"True"`/`"False"` in any case.
///
/// ```
/// use rollcall_scim::dialect::lenient_bool;
/// use serde_json::json;
/// assert_eq!(lenient_bool(&json!("False")), Some(false));
/// assert_eq!(lenient_bool(&json!(true)), Some(true));
/// assert_eq!(lenient_bool(&json!("yes")), None);
/// ```
pub fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A complex attribute given as a bare string, as Entra ID sends the enterprise `manager`: when the
/// attribute has a `value` sub-attribute, the string becomes `{"value": s}`.
pub fn complex_from_bare_string(attr: &AttributeDef, s: &str) -> Option<Value> {
    let value_sub = attr.sub_attribute("value")?;
    let mut m = Map::new();
    m.insert(value_sub.name.clone(), Value::String(s.to_string()));
    Some(Value::Object(m))
}

/// A multi-valued attribute given a single value instead of an array: wrapped into a one-element array.
pub fn as_multi_valued(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A number given for a string attribute (`"employeeNumber": 701984`): the number's text as it was
/// sent. The workspace builds serde_json with arbitrary precision, so an integer beyond 64 bits
/// keeps its digits instead of becoming a rounded double.
///
/// ```
/// use rollcall_scim::dialect::number_as_string;
/// let n: serde_json::Number = serde_json::from_str("18446744073709551616").unwrap();
/// assert_eq!(number_as_string(&n), "18446744073709551616");
/// ```
pub fn number_as_string(n: &serde_json::Number) -> String {
    n.to_string()
}

/// The `schemas` URNs of an input document that this resource type knows; unknown URNs (such as the
/// Microsoft ADSCIM schema Entra ID adds to groups) are dropped, not rejected.
pub fn known_schemas<'a>(
    registry: &crate::schema::SchemaRegistry,
    rt: &crate::schema::ResourceType,
    schemas: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    schemas
        .into_iter()
        .filter(|s| registry.is_schema_of(rt, s))
        .map(str::to_string)
        .collect()
}
