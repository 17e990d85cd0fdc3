//! PATCH requests shaped the way Microsoft Entra ID and Okta send them (per their published SCIM
//! provisioning documentation), asserting the resulting documents.

use rollcall_scim::patch::{PatchOutcome, PatchRequest, apply_patch};
use rollcall_scim::resource::check_document;
use rollcall_scim::schema::{ENTERPRISE_USER, SchemaRegistry, USER};
use serde_json::{Value, json};

fn entra_user() -> Value {
    json!({
        "schemas": [USER, ENTERPRISE_USER],
        "id": "5171a35d82074e068ce2",
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee@contoso.example",
        "active": true,
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "emails": [{"value": "Test_User_fd0ea19b@contoso.example", "type": "work", "primary": true}],
        ENTERPRISE_USER: {"employeeNumber": "701984", "department": "Tour Operations"}
    })
}

fn apply(doc: &Value, body: Value) -> (Value, PatchOutcome) {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let req = PatchRequest::from_json(&body).unwrap();
    let mut d = doc.clone();
    let out = apply_patch(&reg, rt, &mut d, &req).unwrap_or_else(|e| panic!("{e}"));
    check_document(&reg, rt, d.as_object().unwrap()).unwrap();
    (d, out)
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[test]
fn entra_replace_multi_valued_and_sub_attribute() {
    let (d, out) = apply(
        &entra_user(),
        patch_body(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@contoso.example"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
        ])),
    );
    assert!(out.document_changed);
    assert_eq!(
        d["emails"],
        json!([{"value": "updatedEmail@contoso.example", "type": "work", "primary": true}])
    );
    assert_eq!(d["name"]["familyName"], "updatedFamilyName");
    assert_eq!(d["name"]["givenName"], "givenName");
}

#[test]
fn entra_replace_single_valued_and_disable_with_string_boolean() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([
            {"op": "Replace", "path": "userName", "value": "5b50642d@contoso.example"},
            {"op": "Replace", "path": "active", "value": "False"}
        ])),
    );
    assert_eq!(d["userName"], "5b50642d@contoso.example");
    assert_eq!(d["active"], false);
}

#[test]
fn entra_replace_without_path_with_dotted_and_urn_qualified_keys() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([{"op": "replace", "value": {
            "displayName": "Barbara Jensen",
            "name.givenName": "Barbara",
            "name.familyName": "Jensen",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "EMP-7",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": "26118915-6090-4610-87a4-28a1d5fd3d77",
            "active": "True"
        }}])),
    );
    assert_eq!(d["displayName"], "Barbara Jensen");
    assert_eq!(
        d["name"],
        json!({"formatted": "givenName familyName", "familyName": "Jensen", "givenName": "Barbara"})
    );
    assert_eq!(
        d[ENTERPRISE_USER],
        json!({
            "employeeNumber": "EMP-7",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87a4-28a1d5fd3d77"}
        })
    );
    assert_eq!(d["active"], true);
}

#[test]
fn entra_adds_work_address_parts_to_a_user_without_one() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([
            {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Redmond"},
            {"op": "Add", "path": "addresses[type eq \"work\"].postalCode", "value": "98052"},
            {"op": "Add", "path": "addresses[type eq \"work\"].country", "value": "US"}
        ])),
    );
    // All four land in the one element the first operation created.
    assert_eq!(
        d["addresses"],
        json!([{"type": "work", "streetAddress": "1 Main St", "locality": "Redmond", "postalCode": "98052", "country": "US"}])
    );
}

#[test]
fn entra_replace_work_email_on_a_user_without_one() {
    let mut u = entra_user();
    u.as_object_mut().unwrap().remove("emails");
    let (d, _) = apply(
        &u,
        patch_body(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@contoso.example"},
            {"op": "Replace", "path": "emails[type eq \"work\"].primary", "value": "True"}
        ])),
    );
    assert_eq!(
        d["emails"],
        json!([{"type": "work", "value": "new@contoso.example", "primary": true}])
    );
}

#[test]
fn entra_manager_as_a_bare_string() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([{
            "op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": "2819c223-7f76-453a-919d-413861904646"
        }])),
    );
    assert_eq!(
        d[ENTERPRISE_USER]["manager"],
        json!({"value": "2819c223-7f76-453a-919d-413861904646"})
    );
    // And cleared again.
    let (d, _) = apply(
        &d,
        patch_body(
            json!([{"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
        ),
    );
    assert!(d[ENTERPRISE_USER].get("manager").is_none());
    let (d, _) = apply(
        &d,
        patch_body(
            json!([{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-2"}]),
        ),
    );
    let (d, _) = apply(
        &d,
        patch_body(
            json!([{"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": ""}]),
        ),
    );
    assert!(
        d[ENTERPRISE_USER].get("manager").is_none(),
        "Entra clears with an empty string"
    );
}

/// Older Entra ID sends the manager as a one-element array of `{"value": ...}` objects, with a
/// path, in a path-less value keyed by the attribute's URN path, and inside the extension object.
#[test]
fn entra_manager_as_a_one_element_array() {
    let mgr = |id: &str| json!({"value": id});
    let with_path = |op: &str, v: Value| {
        patch_body(json!([{
            "op": op,
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": v
        }]))
    };
    let (d, _) = apply(&entra_user(), with_path("Add", json!([{"value": "m-1"}])));
    assert_eq!(d[ENTERPRISE_USER]["manager"], mgr("m-1"));
    let (d, _) = apply(&d, with_path("replace", json!([{"value": "m-2"}])));
    assert_eq!(d[ENTERPRISE_USER]["manager"], mgr("m-2"));
    assert_eq!(d[ENTERPRISE_USER]["department"], "Tour Operations", "siblings kept");
    // Path-less, keyed by the URN-qualified attribute path.
    let (d, _) = apply(
        &d,
        patch_body(json!([{"op": "Replace", "value": {
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager": [{"value": "m-3"}]
        }}])),
    );
    assert_eq!(d[ENTERPRISE_USER]["manager"], mgr("m-3"));
    // Path-less, inside the extension object.
    let (d, _) = apply(
        &d,
        patch_body(json!([{"op": "Add", "value": {
            ENTERPRISE_USER: {"manager": [{"value": "m-4"}]}
        }}])),
    );
    assert_eq!(d[ENTERPRISE_USER]["manager"], mgr("m-4"));
    // The path is the extension itself.
    let (d, _) = apply(
        &d,
        patch_body(json!([{"op": "Replace", "path": ENTERPRISE_USER, "value": {"manager": [{"value": "m-5"}]}}])),
    );
    assert_eq!(d[ENTERPRISE_USER]["manager"], mgr("m-5"));
    // An element that is a bare id string, too.
    let (d, _) = apply(&d, with_path("Replace", json!(["m-6"])));
    assert_eq!(d[ENTERPRISE_USER]["manager"], mgr("m-6"));
    // The same for a core single-valued complex attribute.
    let (d, _) = apply(
        &d,
        patch_body(json!([{"op": "replace", "path": "name", "value": [{"givenName": "Ada"}]}])),
    );
    assert_eq!(d["name"]["givenName"], "Ada");
    assert_eq!(d["name"]["familyName"], "familyName");
    // An empty array unassigns.
    let (d, _) = apply(&d, with_path("Replace", json!([])));
    assert!(d[ENTERPRISE_USER].get("manager").is_none(), "{d}");
}

#[test]
fn two_managers_are_refused() {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    for body in [
        patch_body(json!([{
            "op": "Replace",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": [{"value": "m-1"}, {"value": "m-2"}]
        }])),
        patch_body(
            json!([{"op": "Add", "value": {ENTERPRISE_USER: {"manager": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}}}]),
        ),
    ] {
        let req = PatchRequest::from_json(&body).unwrap();
        let mut d = entra_user();
        let e = apply_patch(&reg, rt, &mut d, &req).expect_err("two managers");
        assert_eq!(e.scim_type, Some(rollcall_scim::ScimType::InvalidValue), "{e}");
        assert!(
            e.detail.contains("\"manager\" is single-valued") && e.detail.contains("elements"),
            "{}",
            e.detail
        );
        assert_eq!(d, entra_user(), "nothing applied");
    }
}

#[test]
fn entra_clears_an_attribute_with_an_empty_string() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": ""},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": ""}
        ])),
    );
    assert!(d.get(ENTERPRISE_USER).is_none());
    assert_eq!(d["schemas"], json!([USER]));
}

#[test]
fn okta_deactivate_with_id_echoed() {
    let (d, out) = apply(
        &entra_user(),
        patch_body(json!([{"op": "replace", "value": {"id": "5171a35d82074e068ce2", "active": false}}])),
    );
    assert!(out.document_changed);
    assert_eq!(d["active"], false);
    assert_eq!(d["id"], "5171a35d82074e068ce2");
    // Okta's plain form, and a repeat that changes nothing.
    let (d2, out) = apply(&d, patch_body(json!([{"op": "replace", "value": {"active": false}}])));
    assert!(!out.document_changed);
    assert_eq!(d2, d);
}

#[test]
fn okta_password_change() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([{"op": "replace", "value": {"password": "t1meMa$heen"}}])),
    );
    assert_eq!(d["password"], "t1meMa$heen");
}

#[test]
fn okta_profile_update_with_full_values() {
    let (d, _) = apply(
        &entra_user(),
        patch_body(json!([{"op": "replace", "value": {
            "name": {"givenName": "Isaac", "familyName": "Brock"},
            "emails": [{"primary": true, "value": "isaac.brock@example.com", "type": "work"}],
            "displayName": "Isaac Brock",
            "locale": "en-US"
        }}])),
    );
    assert_eq!(d["name"]["givenName"], "Isaac");
    assert_eq!(
        d["emails"],
        json!([{"primary": true, "value": "isaac.brock@example.com", "type": "work"}])
    );
    assert_eq!(d["locale"], "en-US");
}
