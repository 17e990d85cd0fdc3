//! PATCH: every operation against every path form, asserting the resulting document.

use rollcall_scim::patch::{PatchOutcome, PatchRequest, apply_patch};
use rollcall_scim::resource::check_document;
use rollcall_scim::schema::{ENTERPRISE_USER, SchemaRegistry, USER};
use rollcall_scim::{ScimError, ScimType};
use serde_json::{Value, json};

fn user() -> Value {
    json!({
        "schemas": [USER],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "nickName": "Babs",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@home.example", "type": "home"}
        ]
    })
}

fn enterprise_user() -> Value {
    let mut u = user();
    u["schemas"] = json!([USER, ENTERPRISE_USER]);
    u[ENTERPRISE_USER] = json!({"employeeNumber": "701984", "department": "Tour Operations"});
    u
}

fn run(doc: &Value, ops: Value) -> Result<(Value, PatchOutcome), ScimError> {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let req = PatchRequest::from_json(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops
    }))?;
    let mut d = doc.clone();
    match apply_patch(&reg, rt, &mut d, &req) {
        Ok(out) => {
            check_document(&reg, rt, d.as_object().unwrap()).expect("a successful patch leaves a valid document");
            assert_eq!(out.document_changed, &d != doc);
            assert!(out.members.is_empty());
            Ok((d, out))
        }
        Err(e) => {
            assert_eq!(&d, doc, "a failed patch leaves the document unchanged");
            Err(e)
        }
    }
}

fn ok(doc: &Value, ops: Value) -> Value {
    run(doc, ops).unwrap_or_else(|e| panic!("patch failed: {e}")).0
}

fn err(doc: &Value, ops: Value) -> ScimError {
    match run(doc, ops) {
        Ok((d, _)) => panic!("patch unexpectedly succeeded: {d}"),
        Err(e) => e,
    }
}

// ---------- add ----------

#[test]
fn add_single_valued_attribute_sets_or_overwrites() {
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "displayName", "value": "Babs Jensen"}]),
    );
    assert_eq!(d["displayName"], "Babs Jensen");
    let d = ok(&user(), json!([{"op": "add", "path": "nickName", "value": "BJ"}]));
    assert_eq!(d["nickName"], "BJ");
}

#[test]
fn add_sub_attribute_of_complex() {
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "name.middleName", "value": "Jane"}]),
    );
    assert_eq!(
        d["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen", "middleName": "Jane"})
    );
    let mut u = user();
    u.as_object_mut().unwrap().remove("name");
    let d = ok(&u, json!([{"op": "add", "path": "NAME.GIVENNAME", "value": "Barbara"}]));
    assert_eq!(
        d["name"],
        json!({"givenName": "Barbara"}),
        "canonical names are written"
    );
}

#[test]
fn add_complex_merges_sub_attributes() {
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "name", "value": {"familyName": "Jensen-Smith", "honorificPrefix": "Ms."}}]),
    );
    assert_eq!(
        d["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen-Smith", "honorificPrefix": "Ms."})
    );
}

#[test]
fn add_multi_valued_appends_without_duplicates() {
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "emails", "value": [
            {"value": "babs@home.example", "type": "home"},
            {"value": "bj@other.example", "type": "other"},
            {"value": "bj@other.example", "type": "other"}
        ]}]),
    );
    assert_eq!(d["emails"].as_array().unwrap().len(), 3);
    assert_eq!(d["emails"][2], json!({"value": "bj@other.example", "type": "other"}));
    // A single object for a multi-valued attribute is one element; adding to an absent attribute creates it.
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "phoneNumbers", "value": {"value": "555-1234", "type": "work"}}]),
    );
    assert_eq!(d["phoneNumbers"], json!([{"value": "555-1234", "type": "work"}]));
    // Adding only existing values changes nothing.
    let (_, out) = run(
        &user(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "babs@home.example", "type": "home"}]}]),
    )
    .unwrap();
    assert!(!out.document_changed);
}

#[test]
fn add_primary_value_demotes_the_old_primary() {
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "type": "other", "primary": true}]}]),
    );
    assert_eq!(d["emails"][0]["primary"], false);
    assert_eq!(d["emails"][2]["primary"], true);
}

#[test]
fn add_value_path_with_sub_attribute() {
    // Matches: the sub-attribute is set on the matching element.
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "emails[type eq \"work\"].display", "value": "Work"}]),
    );
    assert_eq!(
        d["emails"][0],
        json!({"value": "bjensen@example.com", "type": "work", "primary": true, "display": "Work"})
    );
    // No match: an element is built from the filter's equality terms.
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "emails[type eq \"other\"].value", "value": "o@example.com"}]),
    );
    assert_eq!(d["emails"][2], json!({"type": "other", "value": "o@example.com"}));
}

#[test]
fn add_value_path_without_sub_attribute() {
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]),
    );
    assert_eq!(
        d["emails"][1],
        json!({"value": "babs@home.example", "type": "home", "display": "Home"})
    );
    let d = ok(
        &user(),
        json!([{"op": "add", "path": "phoneNumbers[type eq \"mobile\"]", "value": {"value": "555-0000"}}]),
    );
    assert_eq!(d["phoneNumbers"], json!([{"type": "mobile", "value": "555-0000"}]));
}

#[test]
fn add_urn_qualified_core_and_extension_attributes() {
    let d = ok(
        &user(),
        json!([
            {"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "Tour Guide"},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m-1"}
        ]),
    );
    assert_eq!(d["title"], "Tour Guide");
    assert_eq!(
        d[ENTERPRISE_USER],
        json!({"department": "Sales", "manager": {"value": "m-1"}})
    );
    assert_eq!(d["schemas"], json!([USER, ENTERPRISE_USER]));
}

#[test]
fn add_bare_extension_urn_sets_extension_attributes() {
    let d = ok(
        &enterprise_user(),
        json!([{"op": "add", "path": ENTERPRISE_USER, "value": {"costCenter": "4130", "manager": "boss"}}]),
    );
    assert_eq!(
        d[ENTERPRISE_USER],
        json!({"employeeNumber": "701984", "department": "Tour Operations", "costCenter": "4130", "manager": {"value": "boss"}})
    );
}

#[test]
fn add_without_path_applies_each_key() {
    let d = ok(
        &user(),
        json!([{"op": "add", "value": {
            "title": "Guide",
            "name.honorificSuffix": "III",
            "emails": [{"value": "x@example.com", "type": "other"}],
            ENTERPRISE_USER: {"division": "North"}
        }}]),
    );
    assert_eq!(d["title"], "Guide");
    assert_eq!(d["name"]["honorificSuffix"], "III");
    assert_eq!(d["emails"].as_array().unwrap().len(), 3);
    assert_eq!(d[ENTERPRISE_USER]["division"], "North");
    assert_eq!(d["schemas"], json!([USER, ENTERPRISE_USER]));
}

// ---------- replace ----------

#[test]
fn replace_single_valued_attribute() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "userName", "value": "barbara"}]),
    );
    assert_eq!(d["userName"], "barbara");
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "title", "value": "absent before"}]),
    );
    assert_eq!(d["title"], "absent before", "replace of an absent attribute adds it");
}

#[test]
fn replace_complex_keeps_unmentioned_sub_attributes() {
    // RFC 7644 §3.5.2.3: sub-attributes not given are left unchanged.
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs"}}]),
    );
    assert_eq!(d["name"], json!({"givenName": "Babs", "familyName": "Jensen"}));
}

#[test]
fn replace_sub_attribute() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "name.familyName", "value": "Smith"}]),
    );
    assert_eq!(d["name"], json!({"givenName": "Barbara", "familyName": "Smith"}));
}

#[test]
fn replace_multi_valued_replaces_all_values() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "emails", "value": [{"value": "only@example.com", "type": "work"}]}]),
    );
    assert_eq!(d["emails"], json!([{"value": "only@example.com", "type": "work"}]));
    let d = ok(&user(), json!([{"op": "replace", "path": "emails", "value": []}]));
    assert!(
        d.get("emails").is_none(),
        "an emptied multi-valued attribute is dropped"
    );
}

#[test]
fn replace_value_path_without_sub_attribute_merges_matches() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "new@home.example"}}]),
    );
    assert_eq!(d["emails"][1], json!({"value": "new@home.example", "type": "home"}));
    assert_eq!(d["emails"][0]["value"], "bjensen@example.com");
}

#[test]
fn replace_value_path_with_sub_attribute() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b.jensen@example.com"}]),
    );
    assert_eq!(
        d["emails"][0],
        json!({"value": "b.jensen@example.com", "type": "work", "primary": true})
    );
    // Filters compare case-insensitively for caseExact=false sub-attributes.
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "emails[TYPE eq \"HOME\"].primary", "value": true}]),
    );
    assert_eq!(d["emails"][1]["primary"], true);
    assert_eq!(d["emails"][0]["primary"], false, "the previous primary is demoted");
}

#[test]
fn replace_sub_attribute_of_every_element_without_filter() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "emails.display", "value": "x"}]),
    );
    assert!(d["emails"].as_array().unwrap().iter().all(|e| e["display"] == "x"));
}

#[test]
fn replace_value_path_with_no_match_creates_the_element() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "addresses[type eq \"work\"].locality", "value": "Hollywood"}]),
    );
    assert_eq!(d["addresses"], json!([{"type": "work", "locality": "Hollywood"}]));
}

#[test]
fn replace_with_null_or_empty_removes_single_valued_attributes() {
    let d = ok(&user(), json!([{"op": "replace", "path": "nickName", "value": null}]));
    assert!(d.get("nickName").is_none());
    let d = ok(&user(), json!([{"op": "replace", "path": "nickName", "value": ""}]));
    assert!(d.get("nickName").is_none());
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": "name.givenName", "value": ""}]),
    );
    assert_eq!(d["name"], json!({"familyName": "Jensen"}));
    let d = ok(&user(), json!([{"op": "replace", "path": "name", "value": null}]));
    assert!(d.get("name").is_none());
    let d = ok(
        &user(),
        json!([{"op": "replace", "value": {"nickName": null, "name": {"familyName": ""}}}]),
    );
    assert!(d.get("nickName").is_none());
    assert_eq!(d["name"], json!({"givenName": "Barbara"}));
}

#[test]
fn replace_urn_qualified_extension_attributes() {
    let d = ok(
        &enterprise_user(),
        json!([
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName", "value": "babs"}
        ]),
    );
    assert_eq!(d[ENTERPRISE_USER]["department"], "Sales");
    assert_eq!(d["userName"], "babs");
    // Unqualified extension attribute names resolve too.
    let d = ok(
        &enterprise_user(),
        json!([{"op": "replace", "path": "costCenter", "value": "42"}]),
    );
    assert_eq!(d[ENTERPRISE_USER]["costCenter"], "42");
}

#[test]
fn replace_bare_extension_urn() {
    let d = ok(
        &enterprise_user(),
        json!([{"op": "replace", "path": ENTERPRISE_USER, "value": {"department": "Sales", "organization": "Universal"}}]),
    );
    assert_eq!(
        d[ENTERPRISE_USER],
        json!({"employeeNumber": "701984", "department": "Sales", "organization": "Universal"})
    );
    let d = ok(
        &enterprise_user(),
        json!([{"op": "replace", "path": ENTERPRISE_USER, "value": null}]),
    );
    assert!(d.get(ENTERPRISE_USER).is_none());
    assert_eq!(d["schemas"], json!([USER]));
}

#[test]
fn replace_without_path() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "value": {
            "nickName": "B",
            "active": false,
            "emails": [{"value": "a@example.com", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "1"
        }}]),
    );
    assert_eq!(d["nickName"], "B");
    assert_eq!(d["active"], false);
    assert_eq!(d["emails"], json!([{"value": "a@example.com", "type": "work"}]));
    assert_eq!(d[ENTERPRISE_USER], json!({"employeeNumber": "1"}));
    assert_eq!(d["schemas"], json!([USER, ENTERPRISE_USER]));
}

#[test]
fn replace_core_schema_urn_as_path_is_like_no_path() {
    let d = ok(
        &user(),
        json!([{"op": "replace", "path": USER, "value": {"title": "Lead"}}]),
    );
    assert_eq!(d["title"], "Lead");
}

// ---------- remove ----------

#[test]
fn remove_single_valued_attribute() {
    let d = ok(&user(), json!([{"op": "remove", "path": "nickName"}]));
    assert!(d.get("nickName").is_none());
    let (_, out) = run(&user(), json!([{"op": "remove", "path": "title"}])).unwrap();
    assert!(!out.document_changed, "removing an absent attribute is a no-op");
}

#[test]
fn remove_sub_attribute_and_drop_empty_complex() {
    let d = ok(&user(), json!([{"op": "remove", "path": "name.givenName"}]));
    assert_eq!(d["name"], json!({"familyName": "Jensen"}));
    let d = ok(
        &user(),
        json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "name.familyName"}]),
    );
    assert!(d.get("name").is_none());
}

#[test]
fn remove_multi_valued_attribute() {
    let d = ok(&user(), json!([{"op": "remove", "path": "emails"}]));
    assert!(d.get("emails").is_none());
}

#[test]
fn remove_value_path_deletes_matching_elements() {
    let d = ok(&user(), json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]));
    assert_eq!(
        d["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
    let d = ok(
        &user(),
        json!([{"op": "remove", "path": "emails[type eq \"home\" or primary eq true]"}]),
    );
    assert!(
        d.get("emails").is_none(),
        "the last element removed drops the attribute"
    );
    let (_, out) = run(&user(), json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])).unwrap();
    assert!(!out.document_changed, "no match is a no-op");
}

#[test]
fn remove_value_path_sub_attribute() {
    let d = ok(
        &user(),
        json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
    );
    assert_eq!(d["emails"][0], json!({"value": "bjensen@example.com", "type": "work"}));
    // Elements left empty disappear.
    let mut u = user();
    u["phoneNumbers"] = json!([{"value": "555"}, {"value": "556", "type": "work"}]);
    let d = ok(&u, json!([{"op": "remove", "path": "phoneNumbers.value"}]));
    assert_eq!(d["phoneNumbers"], json!([{"type": "work"}]));
}

#[test]
fn remove_multi_valued_with_value_list() {
    let d = ok(
        &user(),
        json!([{"op": "remove", "path": "emails", "value": [{"value": "babs@home.example"}]}]),
    );
    assert_eq!(d["emails"].as_array().unwrap().len(), 1);
    assert_eq!(d["emails"][0]["type"], "work");
}

#[test]
fn remove_extension_attributes_maintains_schemas() {
    let d = ok(
        &enterprise_user(),
        json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
    );
    assert_eq!(d[ENTERPRISE_USER], json!({"employeeNumber": "701984"}));
    assert_eq!(d["schemas"], json!([USER, ENTERPRISE_USER]));
    let d = ok(
        &enterprise_user(),
        json!([
            {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
            {"op": "remove", "path": "employeeNumber"}
        ]),
    );
    assert!(d.get(ENTERPRISE_USER).is_none());
    assert_eq!(d["schemas"], json!([USER]));
}

#[test]
fn remove_bare_extension_urn() {
    let d = ok(&enterprise_user(), json!([{"op": "remove", "path": ENTERPRISE_USER}]));
    assert!(d.get(ENTERPRISE_USER).is_none());
    assert_eq!(d["schemas"], json!([USER]));
}

#[test]
fn schemas_gain_and_lose_extension_urns_within_one_request() {
    let d = ok(
        &user(),
        json!([
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division", "value": "N"},
            {"op": "remove", "path": "division"},
            {"op": "add", "path": "organization", "value": "Universal"}
        ]),
    );
    assert_eq!(d[ENTERPRISE_USER], json!({"organization": "Universal"}));
    assert_eq!(d["schemas"], json!([USER, ENTERPRISE_USER]));
}

#[test]
fn empty_operations_change_nothing() {
    let (d, out) = run(&user(), json!([])).unwrap();
    assert_eq!(d, user());
    assert!(!out.document_changed);
}

#[test]
fn replace_with_the_same_value_is_not_a_change() {
    let (_, out) = run(
        &user(),
        json!([{"op": "replace", "path": "userName", "value": "bjensen"}]),
    )
    .unwrap();
    assert!(!out.document_changed);
}

#[test]
fn values_are_coerced() {
    let d = ok(
        &user(),
        json!([
            {"op": "replace", "path": "active", "value": "False"},
            {"op": "add", "path": "emails[type eq \"home\"].primary", "value": "True"},
            {"op": "add", "path": "employeeNumber", "value": 42}
        ]),
    );
    assert_eq!(d["active"], false);
    assert_eq!(d["emails"][1]["primary"], true);
    assert_eq!(d["emails"][0]["primary"], false);
    assert_eq!(d[ENTERPRISE_USER]["employeeNumber"], "42");
    let e = err(&user(), json!([{"op": "replace", "path": "active", "value": "maybe"}]));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    assert!(e.detail.contains("active"), "{e}");
}
