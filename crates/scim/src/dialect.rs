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
//! | Entra ID (the provisioning service before the `aadOptscim062020` fixes) | PATCH `add`/`replace` of the enterprise `manager` as a one-element array: `"value": [{"value": "7a2b..."}]` | [`single_from_array`]: the one element (two or more: `invalidValue`); for every single-valued complex attribute, with or without `path` | `patch` |
//! | Entra ID | PATCH ops capitalised: `"op": "Replace"` | case-insensitive op names | `patch` |
//! | Entra ID | PATCH without `path` whose `value` keys are dotted or URN-qualified paths (`"name.givenName"`, `"urn:...:enterprise:2.0:User:department"`) | each key treated as a path | `patch` |
//! | Entra ID | `replace` on `emails[type eq "work"].value` when no work email exists yet | creates the element | `patch` |
//! | Entra ID | filter `emails[type eq "work"].value eq "x"` (value path followed by a sub-attribute) | rewritten to `emails[type eq "work" and value eq "x"]` | `filter` |
//! | Entra ID (the provisioning service before its 2020 SCIM fixes; Microsoft's SCIM reference code and samples) | filter values without quotes: `externalId eq abc123`, `id eq 5f1c... and manager eq 7a2b...` | [`bare_filter_value`]: a bare word that cannot be a number, `true`, `false` or `null` is a string | `filter` |
//! | OneLogin (the customer-written SCIM JSON template, <https://developers.onelogin.com/scim/define-user-schema>) | a POST/PUT body whose `schemas` lacks the core URN: `["urn:scim:schemas:core:1.0"]` (SCIM 1.1 URNs, as OneLogin's own template), or custom URNs | [`schemas_without_core`]: read as the endpoint's resource type when its attributes fit; an error names the unknown URNs and the attribute that does not belong | `resource` |
//! | Entra ID | the `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group` schema URN beside the core one | unknown `schemas` URNs are ignored | [`known_schemas`] |
//! | Entra ID (without `aadOptscim062020`), JumpCloud | `remove` on `members` with a `value` list of members | removes only those members, for the providers [`READINGS`] names (the RFC reads it otherwise: see below) | `patch` |
//! | PingOne / PingFederate (its documented user filter expression, <https://docs.pingidentity.com/pingone/integrations/p1_scim_filter_expressions.html>) | `username Eq "jsmith"`, `email Co "..."`: attribute names and operators in another case | names and operators are case-insensitive (RFC 7644 §3.4.2.2) | `filter` |
//! | JumpCloud (Test Connection) | a test user and a test group created, then deleted (or the user deactivated) | accepted like any provisioning; the request log names the run ([`CONNECTION_TESTS`]) | server |
//! | Okta | a placeholder `password` on create | accepted; passwords are validated then discarded, never stored | `resource` |
//! | Okta | `"groups": []` on create | readOnly attributes on input are ignored | `resource` |
//! | Okta, Entra | `id`/`meta` echoed back in PUT bodies and PATCH values | readOnly attributes on input are ignored | `resource`, `patch` |
//! | Okta, Google | `"$ref": null` in member values | ignored | `patch`, `resource` |
//! | scim2-tester, some SDKs | a `schemas` key repeated inside an extension object | ignored | `resource`, `patch` |
//! | several | a single object where a multi-valued attribute expects an array | wrapped into a one-element array | [`as_multi_valued`] |
//! | several | numbers for string attributes (`"employeeNumber": 701984`) | the number's text, as sent, whatever its size (`18446744073709551616` stays `"18446744073709551616"`) | [`number_as_string`] |

//!
//! Every row above is read the same way for every client: the RFC gives those requests no other
//! meaning, so tolerating them changes the meaning of no valid request. Two requests are different:
//! an identity provider documents them with a meaning the RFC contradicts, so the same bytes mean
//! one thing from that provider and another from an RFC-following client. For those, the
//! connection's identity provider chooses the reading, from one table, [`READINGS`] (see
//! [`Dialect`]):
//!
//! | Request | The RFC's reading | The vendor reading, and who documents it | Read the vendor's way for |
//! |---|---|---|---|
//! | `remove` of a multi-valued attribute with a `value` list and no filter: `{"op": "Remove", "path": "members", "value": [{"value": "u1"}]}` | RFC 7644 §3.5.2.2: without a filter "the attribute and all values are removed"; `value` has no meaning on `remove`. Rollcall does not empty the attribute on that reading: it refuses the request (`invalidValue`), since a client that lists values never means "all" | only the listed values go: Entra ID without `aadOptscim062020` (the "Requests made to remove a group member" sample of Microsoft's SCIM known-issues page); JumpCloud sends the same form | `entra`, `jumpcloud`, `onelogin`, `ping`, `generic` |
//! | `replace` through a value filter that matches no value: `{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x"}` for a user without a work e-mail | RFC 7644 §3.5.2.3: 400 `noTarget` | the element the filter describes is created: Entra ID, both PATCH generations (the "Requests to replace multiple attributes" samples), maps its `mail` to `emails[type eq "work"].value` | `entra`, `generic` |
//!
//! Okta (which documents `members[value eq "..."]` for removals and PUT for profile changes) and
//! Google get the RFC's reading of both; OneLogin, JumpCloud and PingOne, which update users with
//! PUT, get the RFC's reading of the second. A `generic` connection keeps the vendor readings, as
//! Rollcall always read them, because an unrecognised client is more likely one that needs them.
//!
//! Beside these readings, [`CLIENT_SIGNATURES`] recognises which identity provider is calling from
//! its `User-Agent`; the server records it on the connection (`detected_idp`).

use crate::schema::AttributeDef;

/// Which identity provider a SCIM client is, from the `User-Agent` it sends: a case-insensitive
/// fragment, the provider (named as Rollcall's connection `idp` values are: `okta`, `entra`,
/// `google`, `onelogin`, `jumpcloud`, `ping`), and where the fragment is documented or seen. The
/// first matching row wins, so more specific fragments come first.
pub const CLIENT_SIGNATURES: &[(&str, &str, &str)] = &[
    // Okta's SCIM reference shows `User-Agent: Okta SCIM Client 1.0.0` on every request.
    (
        "okta scim client",
        "okta",
        "Okta SCIM reference (developer.okta.com/docs/reference/scim)",
    ),
    ("okta", "okta", "Okta provisioning agents and OIN templates"),
    // Microsoft Entra ID's provisioning service (formerly Azure AD).
    (
        "azure ad scim client",
        "entra",
        "Microsoft Entra ID provisioning service",
    ),
    (
        "azure active directory",
        "entra",
        "Microsoft Entra ID provisioning service, older builds",
    ),
    ("microsoft azure", "entra", "Microsoft Entra ID provisioning service"),
    ("microsoft entra", "entra", "Microsoft Entra ID provisioning service"),
    ("onelogin", "onelogin", "OneLogin SCIM provisioning"),
    ("jumpcloud", "jumpcloud", "JumpCloud identity management"),
    ("pingone", "ping", "PingOne provisioning"),
    ("pingidentity", "ping", "PingFederate / PingOne provisioning connectors"),
    (
        "ping identity",
        "ping",
        "PingFederate / PingOne provisioning connectors",
    ),
    ("google", "google", "Google Workspace auto-provisioning"),
];

/// A "Test Connection" an identity provider runs by writing: the requests that together are the
/// test, so that the request log can show them as such rather than as a user and a group that came
/// and went.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTest {
    /// The provider, as a connection's `idp` names it.
    pub idp: &'static str,
    /// What the request log calls the run of requests.
    pub name: &'static str,
    /// What it does, in a sentence.
    pub summary: &'static str,
    /// The requests, each as (methods, resource endpoint, whether a resource id follows it), in the
    /// order they are sent; all within [`ConnectionTest::within_seconds`] of the first.
    pub steps: &'static [(&'static [&'static str], &'static str, bool)],
    pub within_seconds: i64,
    /// Where the behaviour is documented.
    pub source: &'static str,
}

/// The connection tests Rollcall recognises in a connection's request log.
pub const CONNECTION_TESTS: &[ConnectionTest] = &[ConnectionTest {
    idp: "jumpcloud",
    name: "JumpCloud's Test Connection",
    summary: "JumpCloud's Test Connection: it creates a test user (the Test User Email) and a test group, then deletes both (or deactivates the user where DELETE is not supported)",
    steps: &[
        (&["POST"], "Users", false),
        (&["POST"], "Groups", false),
        (&["DELETE"], "Groups", true),
        (&["DELETE", "PATCH", "PUT"], "Users", true),
    ],
    within_seconds: 120,
    source: "jumpcloud.com/support/provision-and-manage-users-and-groups-in-apps-using-custom-scim-identity-management-integration: \
             \"A test user and test group are created to test the integration. Both will be deleted if the DELETE method \
             is supported by the service provider\"",
}];

/// The identity provider a `User-Agent` names, by [`CLIENT_SIGNATURES`]; `None` for a client this
/// table does not know (curl, an SDK, a test tool).
///
/// ```
/// use rollcall_scim::dialect::detect_client;
/// assert_eq!(detect_client("Okta SCIM Client 1.0.0"), Some("okta"));
/// assert_eq!(detect_client("Azure AD SCIM Client"), Some("entra"));
/// assert_eq!(detect_client("curl/8.5.0"), None);
/// ```
pub fn detect_client(user_agent: &str) -> Option<&'static str> {
    let ua = user_agent.to_ascii_lowercase();
    CLIENT_SIGNATURES
        .iter()
        .find(|(fragment, _, _)| ua.contains(fragment))
        .map(|(_, idp, _)| *idp)
}

/// A request whose meaning an identity provider documents differently from the RFC (see the second
/// table of this module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// `remove` on a multi-valued attribute (a Group's `members` or any other) with a `value` list
    /// and no value filter.
    RemoveWithValue,
    /// `replace` through a value filter (`emails[type eq "work"].value`) that matches no value.
    ReplaceUnmatchedFilter,
}

/// Which meaning a [`Conflict`] request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The RFC's: for [`Conflict::RemoveWithValue`] the request is refused with `invalidValue`
    /// (the RFC would empty the attribute, which no client listing values means); for
    /// [`Conflict::ReplaceUnmatchedFilter`], 400 `noTarget`.
    Rfc,
    /// The identity provider's documented meaning: only the listed values are removed; the
    /// element the filter describes is created.
    Vendor,
}

/// One conflicting request: the connection `idp` values that read it the vendor's way, every other
/// one reading it the RFC's way, and where the vendor reading is documented.
#[derive(Debug, Clone, Copy)]
pub struct ReadingRow {
    pub conflict: Conflict,
    pub vendor_reading_for: &'static [&'static str],
    pub source: &'static str,
}

/// The readings of the conflicting requests, by the connection's identity provider (its `idp`
/// values: `okta`, `entra`, `google`, `onelogin`, `jumpcloud`, `ping`, `generic`).
pub const READINGS: &[ReadingRow] = &[
    ReadingRow {
        conflict: Conflict::RemoveWithValue,
        vendor_reading_for: &["entra", "jumpcloud", "onelogin", "ping", "generic"],
        source: "Microsoft Entra ID without aadOptscim062020: \"Requests made to remove a group member\" \
                 (learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility); \
                 JumpCloud sends the same form; OneLogin and PingOne document no member removal form, so nothing \
                 they send is refused; Okta documents members[value eq \"id\"] (developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20)",
    },
    ReadingRow {
        conflict: Conflict::ReplaceUnmatchedFilter,
        vendor_reading_for: &["entra", "generic"],
        source: "Microsoft Entra ID, both PATCH generations: \"Requests to replace multiple attributes\" replace \
                 emails[type eq \"work\"].value, which Entra maps from mail whether or not the user has one yet",
    },
];

/// The reading of each [`Conflict`] for one request: chosen by the identity provider calling.
///
/// ```
/// use rollcall_scim::dialect::{Conflict, Dialect, Reading};
/// let entra = Dialect::of("entra");
/// assert_eq!(entra.reading(Conflict::RemoveWithValue), Reading::Vendor);
/// let okta = Dialect::of("okta");
/// assert_eq!(okta.reading(Conflict::RemoveWithValue), Reading::Rfc);
/// assert_eq!(okta.reading(Conflict::ReplaceUnmatchedFilter), Reading::Rfc);
/// // An unknown provider reads as a generic connection does.
/// assert_eq!(Dialect::of("acme").reading(Conflict::ReplaceUnmatchedFilter), Reading::Vendor);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    idp: &'static str,
}

impl Default for Dialect {
    /// A `generic` connection's.
    fn default() -> Self {
        Dialect { idp: "generic" }
    }
}

impl Dialect {
    /// The readings of the identity provider named as a connection's `idp` is (`okta`, `entra`,
    /// ...); an unknown name reads as `generic`.
    pub fn of(idp: &str) -> Dialect {
        const KNOWN: [&str; 7] = ["okta", "entra", "google", "onelogin", "jumpcloud", "ping", "generic"];
        Dialect {
            idp: KNOWN
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(idp))
                .unwrap_or("generic"),
        }
    }

    /// The readings for one request: the identity provider its `User-Agent` names (the client is
    /// what it is, even on a connection configured for another), else the connection's configured
    /// `idp`, else, for a `generic` connection, the provider recognised on it before
    /// (`detected_idp`).
    ///
    /// ```
    /// use rollcall_scim::dialect::Dialect;
    /// assert_eq!(Dialect::for_request(Some("Azure AD SCIM Client"), "okta", None), Dialect::of("entra"));
    /// assert_eq!(Dialect::for_request(Some("curl/8"), "okta", Some("entra")), Dialect::of("okta"));
    /// assert_eq!(Dialect::for_request(None, "generic", Some("okta")), Dialect::of("okta"));
    /// ```
    pub fn for_request(user_agent: Option<&str>, configured: &str, detected: Option<&str>) -> Dialect {
        if let Some(idp) = user_agent.and_then(detect_client) {
            return Dialect::of(idp);
        }
        match Dialect::of(configured) {
            d if d.idp != "generic" => d,
            d => detected.map(Dialect::of).unwrap_or(d),
        }
    }

    /// The identity provider whose readings these are.
    pub fn idp(self) -> &'static str {
        self.idp
    }

    /// How this identity provider's requests of kind `conflict` are read, by [`READINGS`].
    pub fn reading(self, conflict: Conflict) -> Reading {
        match READINGS.iter().find(|r| r.conflict == conflict) {
            Some(row) if !row.vendor_reading_for.contains(&self.idp) => Reading::Rfc,
            _ => Reading::Vendor,
        }
    }
}

/// How the filter parser reads a comparison value written without quotes (other than `true`,
/// `false` and `null`, which it reads first). See [`bare_filter_value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareValue {
    /// Looks like a number: read as a JSON number, and an error when it is not a valid one (`01`,
    /// `1.`, `1e999`), since the sender meant a number.
    Number,
    /// An unquoted string: `abc123`, `5f1c8a2e-…` (a GUID, which starts with a digit but is no number).
    Str,
    /// Not readable as a value, with the reason.
    Refused(&'static str),
}

/// Reads a filter value sent without double quotes, as older Microsoft Entra ID provisioning and
/// Microsoft's SCIM reference material send it (`externalId eq abc123`,
/// `id eq 5f1c8a2e-0000-4000-8000-000000000001 and manager eq 7a2b...`).
///
/// This is always on rather than chosen per connection: a bare word in value position had no
/// meaning before (RFC 7644 §3.4.2.2 requires quotes, and the parser answered `invalidFilter`), so
/// reading it as a string changes the meaning of no valid filter. RFC 7644 itself writes
/// `meta.resourceType eq User` in §3.4.2.1. What stays refused is what could mean something else:
///
/// - a word made of number characters (`01`, `-`, `1e999`, `+1`): a malformed number;
/// - a single-quoted word (`'Group'`): JSON strings use double quotes;
/// - the keywords `and`, `or`, `not`, `pr` and the comparison operators (`userName eq and`), which
///   signal a missing value rather than a value.
///
/// A bare word ends at the first space, bracket, parenthesis or quote; the parser refuses anything
/// but `and`, `or`, `]`, `)` or the end right after one, so `displayName eq John Smith` fails.
///
/// ```
/// use rollcall_scim::dialect::{BareValue, bare_filter_value};
/// assert_eq!(bare_filter_value("abc123"), BareValue::Str);
/// assert_eq!(bare_filter_value("5f1c8a2e-6b1a-4c57-9f0e-0d5d8f7e1a11"), BareValue::Str);
/// assert_eq!(bare_filter_value("42"), BareValue::Number);
/// assert_eq!(bare_filter_value("1e5"), BareValue::Number);
/// assert!(matches!(bare_filter_value("'x'"), BareValue::Refused(_)));
/// assert!(matches!(bare_filter_value("and"), BareValue::Refused(_)));
/// ```
pub fn bare_filter_value(w: &str) -> BareValue {
    if looks_like_number(w) {
        return BareValue::Number;
    }
    let first = w.chars().next().unwrap_or(' ');
    if first == '\'' || first == '\u{2018}' || first == '\u{2019}' {
        return BareValue::Refused("strings must be in double quotes, not single quotes");
    }
    const KEYWORDS: [&str; 13] = [
        "and", "or", "not", "pr", "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le",
    ];
    if KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) {
        return BareValue::Refused("strings must be in double quotes");
    }
    BareValue::Str
}

/// The shape of a number, valid or not: an optional sign, digits and dots, then optionally `e` or
/// `E`, an optional sign and digits (`42`, `-1.5`, `01`, `1.`, `+1`, `1e999`, `-`). A GUID
/// (`5f1c...`), a date (`2024-01-02`) or an id like `123-45` does not have it.
fn looks_like_number(w: &str) -> bool {
    let b = w.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let mantissa = i;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i == b.len() {
        return true;
    }
    if i == mantissa || !matches!(b[i], b'e' | b'E') {
        return false;
    }
    i += 1;
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    b[i..].iter().all(u8::is_ascii_digit)
}

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

/// A single-valued complex attribute given as a one-element array in a PATCH `add` or `replace`,
/// as older Entra ID provisioning sends the enterprise `manager`
/// (`{"op": "Replace", "path": "...:manager", "value": [{"value": "7a2b..."}]}`): read as that
/// element. An empty array unassigns the attribute (RFC 7643 §2.5), which reads as `null`. Two or
/// more elements are an `invalidValue` error: there is no way to know which one was meant. Any other
/// value, or a multi-valued attribute, is returned unchanged.
///
/// ```
/// use rollcall_scim::dialect::single_from_array;
/// use rollcall_scim::schema::{AttributeDef, AttributeType};
/// use serde_json::json;
/// let manager = AttributeDef::new("manager", AttributeType::Complex);
/// let v = json!([{"value": "7a2b"}]);
/// assert_eq!(single_from_array(&manager, &v).unwrap(), &json!({"value": "7a2b"}));
/// assert!(single_from_array(&manager, &json!([{"value": "a"}, {"value": "b"}])).is_err());
/// ```
pub fn single_from_array<'v>(attr: &AttributeDef, v: &'v Value) -> crate::ScimResult<&'v Value> {
    static NULL: Value = Value::Null;
    match v {
        Value::Array(a) if !attr.multi_valued && attr.kind == crate::schema::AttributeType::Complex => {
            match a.as_slice() {
                [] => Ok(&NULL),
                [one] => Ok(one),
                more => Err(crate::ScimError::invalid_value(format!(
                    "attribute \"{}\" is single-valued: a one-element array is read as its element, but this array has {} elements",
                    attr.name,
                    more.len()
                ))),
            }
        }
        other => Ok(other),
    }
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

/// Checks the `schemas` of a POST or PUT body for the resource type `rt` of the endpoint it was sent
/// to. RFC 7643 §3 wants the core schema URN listed, but OneLogin's SCIM JSON template is written
/// by the customer, and real templates list SCIM 1.1 URNs (`urn:scim:schemas:core:1.0`, as
/// OneLogin's own documented template does) or custom ones instead. The endpoint already says what
/// the body is, so such a body is read as `rt` when its attributes fit.
///
/// Returns `Ok(None)` when the core URN is listed; `Ok(Some(note))` when it is not, with a sentence
/// naming the URNs this resource type does not know, for the caller to add to any error about an
/// attribute that does not fit; and an `invalidValue` error when a URN is the core schema of another
/// resource type (a Group body sent to /Users), which is a misdirected request, not a dialect.
pub fn schemas_without_core<'a>(
    registry: &crate::schema::SchemaRegistry,
    rt: &crate::schema::ResourceType,
    schemas: impl IntoIterator<Item = &'a str>,
) -> crate::ScimResult<Option<String>> {
    let schemas: Vec<&str> = schemas.into_iter().collect();
    if schemas.iter().any(|s| s.eq_ignore_ascii_case(&rt.schema)) {
        return Ok(None);
    }
    if let Some((urn, other)) = schemas.iter().find_map(|s| {
        registry
            .resource_types()
            .iter()
            .find(|o| o.name != rt.name && o.schema.eq_ignore_ascii_case(s))
            .map(|o| (*s, o))
    }) {
        return Err(crate::ScimError::invalid_value(format!(
            "\"schemas\" must include {} for a {}: it lists {urn}, the schema of a {}, and this endpoint creates and replaces {} resources",
            rt.schema, rt.name, other.name, rt.name
        )));
    }
    let known = known_schemas(registry, rt, schemas.iter().copied());
    let unknown: Vec<&str> = schemas
        .iter()
        .copied()
        .filter(|s| !known.iter().any(|k| k == s))
        .collect();
    let listed = match unknown.as_slice() {
        [] => String::from("\"schemas\" does not list it"),
        [one] => format!("{one} is not a schema of {}", rt.name),
        many => format!("{} are not schemas of {}", many.join(", "), rt.name),
    };
    Ok(Some(format!(
        "the body was read as a {} because of the endpoint, since \"schemas\" does not include {} ({listed})",
        rt.name, rt.schema
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_recognised_by_user_agent() {
        for (ua, idp) in [
            ("Okta SCIM Client 1.0.0", Some("okta")),
            ("OKTA SCIM CLIENT 2.0", Some("okta")),
            ("Azure AD SCIM Client", Some("entra")),
            ("Microsoft Azure AD SCIM Client/1.0", Some("entra")),
            ("OneLogin SCIM", Some("onelogin")),
            ("JumpCloud SCIM Client", Some("jumpcloud")),
            ("PingOne/1.0", Some("ping")),
            ("Google-Workspace-SCIM", Some("google")),
            ("curl/8.5.0", None),
            ("", None),
        ] {
            assert_eq!(detect_client(ua), idp, "{ua}");
        }
        // Every row names a provider the connection `idp` values know.
        for (_, idp, _) in CLIENT_SIGNATURES {
            assert!(["okta", "entra", "google", "onelogin", "jumpcloud", "ping"].contains(idp));
        }
    }

    #[test]
    fn readings_by_identity_provider() {
        use Conflict::*;
        use Reading::*;
        for (idp, remove, replace) in [
            ("entra", Vendor, Vendor),
            ("generic", Vendor, Vendor),
            ("jumpcloud", Vendor, Rfc),
            ("onelogin", Vendor, Rfc),
            ("ping", Vendor, Rfc),
            ("okta", Rfc, Rfc),
            ("google", Rfc, Rfc),
            ("ENTRA", Vendor, Vendor),
            ("nobody", Vendor, Vendor),
        ] {
            let d = Dialect::of(idp);
            assert_eq!(d.reading(RemoveWithValue), remove, "{idp}");
            assert_eq!(d.reading(ReplaceUnmatchedFilter), replace, "{idp}");
        }
        // Each conflict has exactly one row, and every row names known providers.
        for c in [RemoveWithValue, ReplaceUnmatchedFilter] {
            assert_eq!(READINGS.iter().filter(|r| r.conflict == c).count(), 1);
        }
        for row in READINGS {
            for idp in row.vendor_reading_for {
                assert_eq!(Dialect::of(idp).idp(), *idp);
            }
        }
    }

    #[test]
    fn the_request_names_its_dialect_before_the_connection() {
        let d = |ua: Option<&str>, configured: &str, detected: Option<&str>| {
            Dialect::for_request(ua, configured, detected).idp()
        };
        assert_eq!(d(Some("Azure AD SCIM Client"), "okta", None), "entra");
        assert_eq!(d(Some("Okta SCIM Client 1.0.0"), "entra", Some("entra")), "okta");
        assert_eq!(d(None, "jumpcloud", Some("okta")), "jumpcloud");
        assert_eq!(d(Some("python-httpx/0.27"), "generic", None), "generic");
        assert_eq!(d(None, "generic", Some("entra")), "entra");
        assert_eq!(d(None, "generic", Some("okta")), "okta");
    }

    #[test]
    fn bare_filter_values() {
        for n in [
            "0", "42", "-1.5", "2e10", "1E-3", "01", "1.", "+1", "-", ".5", "1e999", "1e",
        ] {
            assert_eq!(bare_filter_value(n), BareValue::Number, "{n}");
        }
        for s in [
            "abc123",
            "User",
            "5f1c8a2e-6b1a-4c57-9f0e-0d5d8f7e1a11",
            "12345678-1234-1234-1234-123456789012",
            "2024-01-02",
            "123-45",
            "12ab",
            "e5",
            "bjensen@example.com",
            "Test_User_ab6490ee",
            "andy",
            "prefix",
        ] {
            assert_eq!(bare_filter_value(s), BareValue::Str, "{s}");
        }
        for r in ["and", "OR", "not", "pr", "eq", "Le", "'x'", "'", "\u{2018}x\u{2019}"] {
            assert!(matches!(bare_filter_value(r), BareValue::Refused(_)), "{r}");
        }
    }
}
