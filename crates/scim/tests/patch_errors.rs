//! PATCH: request syntax, path errors, mutability, required attributes, and atomicity.

use rollcall_scim::patch::{PATCH_OP, PatchOpKind, PatchOperation, PatchRequest, apply_patch};
use rollcall_scim::schema::{ENTERPRISE_USER, SchemaRegistry, USER};
use rollcall_scim::{ScimError, ScimType};
use serde_json::{Value, json};

const ACME: &str = "urn:example:params:scim:schemas:extension:acme:1.0:User";

fn user() -> Value {
    json!({
        "schemas": [USER],
        "id": "2819c223",
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "groups": [{"value": "g1", "display": "Eng", "type": "direct"}]
    })
}

/// The standard registry plus an extension with an immutable and a required-by-schema attribute.
fn acme_registry() -> SchemaRegistry {
    let mut reg = SchemaRegistry::standard();
    reg.register_extension(
        "User",
        &json!({
            "id": ACME,
            "name": "Acme",
            "attributes": [
                {"name": "badge", "type": "string", "mutability": "immutable"},
                {"name": "site", "type": "complex", "subAttributes": [
                    {"name": "code", "type": "string", "mutability": "immutable"},
                    {"name": "label", "type": "string"}
                ]},
                {"name": "clearance", "type": "integer"}
            ]
        }),
        false,
    )
    .unwrap();
    reg
}

fn run_with(reg: &SchemaRegistry, doc: &Value, ops: Value) -> Result<Value, ScimError> {
    let rt = reg.resource_type("User").unwrap();
    let req = PatchRequest::from_json(&json!({"schemas": [PATCH_OP], "Operations": ops}))?;
    let mut d = doc.clone();
    let r = apply_patch(reg, rt, &mut d, &req);
    if r.is_err() {
        assert_eq!(&d, doc, "a failed patch leaves the document unchanged");
    }
    r.map(|_| d)
}

fn run(doc: &Value, ops: Value) -> Result<Value, ScimError> {
    run_with(&SchemaRegistry::standard(), doc, ops)
}

fn err(doc: &Value, ops: Value) -> ScimError {
    run(doc, ops).expect_err("patch should fail")
}

// ---------- request syntax ----------

#[test]
fn body_shape_errors() {
    let e = PatchRequest::from_json(&json!([1])).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e = PatchRequest::from_json(&json!({"schemas": ["urn:nope"], "Operations": []})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    assert!(e.detail.contains(PATCH_OP));
    let e = PatchRequest::from_json(&json!({"schemas": PATCH_OP, "Operations": []})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e = PatchRequest::from_json(&json!({"schemas": [PATCH_OP]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    assert!(e.detail.contains("Operations"));
    let e = PatchRequest::from_json(&json!({"Operations": {"op": "add"}})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e = PatchRequest::from_json(&json!({"Operations": ["add"]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    assert!(e.detail.starts_with("operation 1"));
    let e = PatchRequest::from_json(&json!({"Operations": [{"path": "x", "value": 1}]})).unwrap_err();
    assert!(e.detail.contains("\"op\""));
    let e = PatchRequest::from_json(&json!({"Operations": [{"op": "add", "path": 7, "value": 1}]})).unwrap_err();
    assert!(e.detail.contains("\"path\""));
}

#[test]
fn names_are_case_insensitive_and_schemas_optional() {
    let req = PatchRequest::from_json(&json!({
        "SCHEMAS": [PATCH_OP.to_uppercase()],
        "operations": [
            {"OP": "ADD", "Path": "title", "Value": "x"},
            {"op": "Replace", "value": {"title": "y"}},
            {"op": "rEmOvE", "path": "title"}
        ]
    }))
    .unwrap();
    assert_eq!(
        req.operations,
        vec![
            PatchOperation {
                op: PatchOpKind::Add,
                path: Some("title".into()),
                value: Some(json!("x"))
            },
            PatchOperation {
                op: PatchOpKind::Replace,
                path: None,
                value: Some(json!({"title": "y"}))
            },
            PatchOperation {
                op: PatchOpKind::Remove,
                path: Some("title".into()),
                value: None
            },
        ]
    );
    assert!(
        PatchRequest::from_json(&json!({"Operations": []}))
            .unwrap()
            .operations
            .is_empty()
    );
}

#[test]
fn unknown_op_is_named() {
    let e = PatchRequest::from_json(&json!({"Operations": [
        {"op": "add", "path": "title", "value": "x"},
        {"op": "copy", "path": "title"}
    ]}))
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    assert!(e.detail.contains("operation 2") && e.detail.contains("\"copy\""), "{e}");
}

#[test]
fn add_and_replace_need_a_value_remove_needs_a_path() {
    for op in ["add", "replace"] {
        let e = PatchRequest::from_json(&json!({"Operations": [{"op": op, "path": "title"}]})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax), "{op}");
        assert!(e.detail.contains("\"value\""));
    }
    // An explicit null is a value (it unassigns).
    assert!(
        PatchRequest::from_json(&json!({"Operations": [{"op": "replace", "path": "title", "value": null}]})).is_ok()
    );
    let e = PatchRequest::from_json(&json!({"Operations": [{"op": "remove"}]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
    let e = PatchRequest::from_json(&json!({"Operations": [{"op": "remove", "path": "  "}]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
    // The same rules hold for requests built in code.
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let mut d = user();
    for (op, path) in [
        (PatchOpKind::Remove, None),
        (PatchOpKind::Add, Some("title".to_string())),
    ] {
        let req = PatchRequest {
            operations: vec![PatchOperation { op, path, value: None }],
        };
        assert!(apply_patch(&reg, rt, &mut d, &req).is_err());
    }
    assert_eq!(d, user());
}

#[test]
fn path_less_value_must_be_an_object() {
    let e = err(&user(), json!([{"op": "replace", "value": "x"}]));
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e = err(&user(), json!([{"op": "add", "path": ENTERPRISE_USER, "value": "x"}]));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

// ---------- paths ----------

#[test]
fn unknown_attributes_are_invalid_paths_naming_them() {
    for (path, named) in [
        ("nosuch", "nosuch"),
        ("name.nosuch", "nosuch"),
        ("userName.value", "userName"),
        ("emails[nosuch eq \"x\"].value", "nosuch"),
        ("emails[type eq \"work\"].nosuch", "nosuch"),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:nosuch",
            "nosuch",
        ),
        (
            "urn:example:unknown:1.0:User:department",
            "urn:example:unknown:1.0:User",
        ),
        ("members", "members"),
        ("emails[type eq \"work\"", "path"),
        ("", "path"),
    ] {
        let r = run(&user(), json!([{"op": "replace", "path": path, "value": "x"}]));
        if path.is_empty() {
            // An empty path is no path; a string value for no path is a syntax error.
            assert_eq!(r.unwrap_err().scim_type, Some(ScimType::InvalidSyntax));
            continue;
        }
        let e = r.unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{path}: {e}");
        assert!(e.detail.contains(named), "{path}: {e}");
    }
    let e = err(
        &user(),
        json!([{"op": "replace", "value": {"title": "ok", "bogus": 1}}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    assert!(e.detail.contains("bogus"));
}

#[test]
fn value_filters_only_on_multi_valued_attributes() {
    let e = err(
        &user(),
        json!([{"op": "replace", "path": "name[givenName eq \"x\"].familyName", "value": "y"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    assert!(e.detail.contains("single-valued"), "{e}");
}

#[test]
fn unmatched_filter_that_cannot_describe_an_element_is_no_target() {
    let e = err(
        &user(),
        json!([{"op": "replace", "path": "emails[type co \"oth\"].value", "value": "x@y.z"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
    let e = err(
        &user(),
        json!([{"op": "add", "path": "emails[type eq \"home\" or type eq \"other\"].value", "value": "x@y.z"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn error_details_name_the_operation() {
    let e = err(
        &user(),
        json!([
            {"op": "add", "path": "title", "value": "x"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": 12.5},
            {"op": "remove", "path": "nosuch"}
        ]),
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    assert!(e.detail.starts_with("operation 3 (remove \"nosuch\"): "), "{e}");
    let e = err(
        &user(),
        json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": "perhaps"}]),
    );
    assert!(
        e.detail
            .starts_with("operation 1 (replace \"emails[type eq \"work\"].primary\"): "),
        "{e}"
    );
    let e = err(&user(), json!([{"op": "replace", "value": {"nosuch": 1}}]));
    assert!(e.detail.starts_with("operation 1 (replace, no path): "), "{e}");
}

// ---------- mutability ----------

#[test]
fn read_only_attributes_with_a_path_are_mutability_errors() {
    for path in [
        "id",
        "meta",
        "meta.lastModified",
        "groups",
        "groups[value eq \"g1\"]",
        "manager.displayName",
    ] {
        for op in [
            json!({"op": "replace", "path": path, "value": "x"}),
            json!({"op": "remove", "path": path}),
        ] {
            let e = err(&user(), json!([op]));
            assert_eq!(e.scim_type, Some(ScimType::Mutability), "{path}: {e}");
            assert!(e.detail.contains("readOnly"), "{e}");
        }
    }
}

#[test]
fn read_only_attributes_in_a_path_less_value_are_ignored() {
    let d = run(
        &user(),
        json!([{"op": "replace", "value": {
            "schemas": ["whatever"],
            "id": "other-id",
            "meta": {"version": "W/\"1\""},
            "groups": [],
            "active": false,
            ENTERPRISE_USER: {"manager": {"value": "m", "displayName": "Boss"}}
        }}]),
    )
    .unwrap();
    assert_eq!(d["id"], "2819c223");
    assert_eq!(d["meta"], user()["meta"]);
    assert_eq!(d["groups"], user()["groups"]);
    assert_eq!(d["active"], false);
    assert_eq!(d["schemas"], json!([USER, ENTERPRISE_USER]));
    assert_eq!(
        d[ENTERPRISE_USER],
        json!({"manager": {"value": "m"}}),
        "readOnly sub-attributes are dropped"
    );
}

#[test]
fn write_only_attributes_may_be_set() {
    let d = run(
        &user(),
        json!([{"op": "replace", "path": "password", "value": "t1meMa$heen"}]),
    )
    .unwrap();
    assert_eq!(d["password"], "t1meMa$heen");
}

#[test]
fn immutable_attributes_may_only_be_set_while_unset() {
    let reg = acme_registry();
    let d = run_with(&reg, &user(), json!([{"op": "add", "path": "badge", "value": "B-7"}])).unwrap();
    assert_eq!(d[ACME], json!({"badge": "B-7"}));
    assert_eq!(d["schemas"], json!([USER, ACME]));
    // Same value again: allowed, no change.
    let same = run_with(&reg, &d, json!([{"op": "replace", "path": "badge", "value": "B-7"}])).unwrap();
    assert_eq!(same, d);
    for ops in [
        json!([{"op": "replace", "path": "badge", "value": "B-8"}]),
        json!([{"op": "remove", "path": "badge"}]),
        json!([{"op": "replace", "path": format!("{ACME}:badge"), "value": null}]),
        json!([{"op": "replace", "value": {format!("{ACME}:badge"): "B-9"}}]),
        json!([{"op": "remove", "path": ACME}]),
    ] {
        let e = run_with(&reg, &d, ops.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::Mutability), "{ops}: {e}");
        assert!(e.detail.contains("immutable"), "{e}");
    }
}

#[test]
fn immutable_sub_attributes() {
    let reg = acme_registry();
    let d = run_with(
        &reg,
        &user(),
        json!([{"op": "add", "path": "site", "value": {"code": "LA", "label": "Lot"}}]),
    )
    .unwrap();
    let d = run_with(
        &reg,
        &d,
        json!([{"op": "replace", "path": "site.label", "value": "Back lot"}]),
    )
    .unwrap();
    assert_eq!(d[ACME]["site"], json!({"code": "LA", "label": "Back lot"}));
    let e = run_with(
        &reg,
        &d,
        json!([{"op": "replace", "path": "site", "value": {"code": "SF"}}]),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    let e = run_with(&reg, &d, json!([{"op": "remove", "path": "site.code"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
}

#[test]
fn removing_a_required_attribute_is_a_mutability_error() {
    for ops in [
        json!([{"op": "remove", "path": "userName"}]),
        json!([{"op": "replace", "path": "userName", "value": ""}]),
        json!([{"op": "replace", "path": "userName", "value": null}]),
        json!([{"op": "replace", "value": {"userName": null}}]),
        json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName"}]),
    ] {
        let e = err(&user(), ops.clone());
        assert_eq!(e.scim_type, Some(ScimType::Mutability), "{ops}: {e}");
        assert!(e.detail.contains("userName") && e.detail.contains("required"), "{e}");
    }
}

#[test]
fn required_extension_cannot_be_removed() {
    let mut reg = SchemaRegistry::standard();
    reg.register_extension(
        "User",
        &json!({"id": ACME, "name": "Acme", "attributes": [{"name": "badge", "type": "string"}]}),
        true,
    )
    .unwrap();
    let mut u = user();
    u[ACME] = json!({"badge": "b"});
    u["schemas"] = json!([USER, ACME]);
    let e = run_with(&reg, &u, json!([{"op": "remove", "path": ACME}])).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    // Removing its last attribute leaves the document invalid: caught by the final check.
    let e = run_with(&reg, &u, json!([{"op": "remove", "path": "badge"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

// ---------- atomicity ----------

#[test]
fn a_failing_third_operation_leaves_the_document_unchanged() {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let original = user();
    let mut doc = original.clone();
    let req = PatchRequest::from_json(&json!({"Operations": [
        {"op": "replace", "path": "userName", "value": "changed"},
        {"op": "add", "path": "emails", "value": [{"value": "x@example.com"}]},
        {"op": "replace", "path": "id", "value": "hijack"}
    ]}))
    .unwrap();
    let e = apply_patch(&reg, rt, &mut doc, &req).unwrap_err();
    assert!(e.detail.starts_with("operation 3"), "{e}");
    assert_eq!(doc, original);
}

#[test]
fn an_invalid_result_is_rejected_and_the_document_kept() {
    // Two primaries in a wholesale replace are the client's error, caught by the final check.
    let e = err(
        &user(),
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a@example.com", "primary": true},
            {"value": "b@example.com", "primary": true}
        ]}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    assert!(e.detail.contains("primary"), "{e}");
}

#[test]
fn document_that_is_not_an_object_is_refused() {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let mut doc = json!([1, 2]);
    let req = PatchRequest::from_json(&json!({"Operations": []})).unwrap();
    assert!(apply_patch(&reg, rt, &mut doc, &req).is_err());
    assert_eq!(doc, json!([1, 2]));
}
