//! PATCH on Groups: `members` operations become `MemberChange`s and never touch the document.

use rollcall_scim::filter::Filter;
use rollcall_scim::patch::{MemberChange, MemberRef, PatchOutcome, PatchRequest, apply_patch};
use rollcall_scim::schema::{GROUP, SchemaRegistry, USER};
use rollcall_scim::{ScimError, ScimType};
use serde_json::{Value, json};

fn group() -> Value {
    json!({
        "schemas": [GROUP],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "meta": {"resourceType": "Group", "created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
        "displayName": "Tour Guides"
    })
}

fn run_rt(rt_name: &str, doc: &Value, ops: Value) -> Result<(Value, PatchOutcome), ScimError> {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type(rt_name).unwrap();
    let req = PatchRequest::from_json(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops
    }))?;
    let mut d = doc.clone();
    let r = apply_patch(&reg, rt, &mut d, &req);
    if r.is_err() {
        assert_eq!(&d, doc);
    }
    r.map(|o| (d, o))
}

fn run(ops: Value) -> Result<(Value, PatchOutcome), ScimError> {
    run_rt("Group", &group(), ops)
}

/// Runs member-only operations, checking the document is untouched, and returns the changes.
fn changes(ops: Value) -> Vec<MemberChange> {
    let (d, out) = run(ops).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d, group(), "members never touch the document");
    assert!(!out.document_changed);
    out.members
}

fn m(id: &str) -> MemberRef {
    MemberRef {
        value: id.into(),
        kind: None,
        display: None,
    }
}

#[test]
fn entra_add_and_remove_members_with_null_ref() {
    assert_eq!(
        changes(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]}])),
        vec![MemberChange::Add(vec![m("f648f8d5ea4e4cd38e9c")])]
    );
    assert_eq!(
        changes(
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]}])
        ),
        vec![MemberChange::Remove(vec!["f648f8d5ea4e4cd38e9c".into()])]
    );
}

#[test]
fn okta_add_members_keeps_display_and_type() {
    assert_eq!(
        changes(json!([{"op": "add", "path": "members", "value": [
            {"value": "00u1", "display": "test.user@okta.local"},
            {"value": "00g2", "type": "group", "$ref": "https://example.com/Groups/00g2"},
            {"value": "00u1", "display": "duplicate collapsed"}
        ]}])),
        vec![MemberChange::Add(vec![
            MemberRef {
                value: "00u1".into(),
                kind: None,
                display: Some("test.user@okta.local".into())
            },
            MemberRef {
                value: "00g2".into(),
                kind: Some("Group".into()),
                display: None
            },
        ])]
    );
}

#[test]
fn okta_remove_member_by_value_filter() {
    assert_eq!(
        changes(json!([{"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"}])),
        vec![MemberChange::Remove(vec![
            "89bb1940-b905-4575-9e7f-6f887cfb368e".into()
        ])]
    );
    assert_eq!(
        changes(json!([{"op": "remove", "path": "members[value eq \"a\" or value eq \"b\" or VALUE eq \"a\"]"}])),
        vec![MemberChange::Remove(vec!["a".into(), "b".into()])]
    );
}

#[test]
fn other_member_filters_are_remove_where() {
    assert_eq!(
        changes(json!([{"op": "remove", "path": "members[type eq \"Group\"]"}])),
        vec![MemberChange::RemoveWhere(Filter::parse("type eq \"Group\"").unwrap())]
    );
    assert_eq!(
        changes(json!([{"op": "remove", "path": "members[value eq \"a\" and type eq \"User\"]"}])),
        vec![MemberChange::RemoveWhere(
            Filter::parse("value eq \"a\" and type eq \"User\"").unwrap()
        )]
    );
}

#[test]
fn remove_all_and_replace_members() {
    assert_eq!(
        changes(json!([{"op": "remove", "path": "members"}])),
        vec![MemberChange::ReplaceAll(vec![])]
    );
    assert_eq!(
        changes(json!([{"op": "replace", "path": "members", "value": []}])),
        vec![MemberChange::ReplaceAll(vec![])]
    );
    assert_eq!(
        changes(json!([{"op": "replace", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}])),
        vec![MemberChange::ReplaceAll(vec![m("u1"), m("u2")])]
    );
    assert_eq!(
        changes(json!([{"op": "replace", "path": "members", "value": null}])),
        vec![MemberChange::ReplaceAll(vec![])]
    );
}

#[test]
fn path_less_values_with_members() {
    let (d, out) = run(json!([
        {"op": "replace", "value": {"id": "e9e30dba-f08f-4109-8486-d5c6a331660a", "displayName": "Guides", "members": [{"value": "u9"}]}},
        {"op": "add", "value": {"members": [{"value": "u10"}]}}
    ]))
    .unwrap();
    assert_eq!(d["displayName"], "Guides");
    assert!(d.get("members").is_none());
    assert!(out.document_changed);
    assert_eq!(
        out.members,
        vec![
            MemberChange::ReplaceAll(vec![m("u9")]),
            MemberChange::Add(vec![m("u10")])
        ]
    );
}

#[test]
fn changes_come_back_in_operation_order() {
    let (d, out) = run(json!([
        {"op": "Replace", "path": "displayName", "value": "1879db59updatedDisplayName"},
        {"op": "add", "path": "members", "value": [{"value": "a"}]},
        {"op": "remove", "path": "members[value eq \"b\"]"},
        {"op": "add", "path": "members", "value": {"value": "c"}},
        {"op": "remove", "path": "members", "value": []}
    ]))
    .unwrap();
    assert_eq!(d["displayName"], "1879db59updatedDisplayName");
    assert_eq!(
        out.members,
        vec![
            MemberChange::Add(vec![m("a")]),
            MemberChange::Remove(vec!["b".into()]),
            MemberChange::Add(vec![m("c")]),
        ]
    );
}

#[test]
fn bad_member_values_are_invalid_value() {
    for value in [
        json!([{"display": "no value"}]),
        json!(["u1"]),
        json!([{"value": 17}]),
        json!([{"value": ""}]),
        json!([{"value": "u1", "type": "Robot"}]),
        json!([{"value": "u1", "operation": "delete"}]),
    ] {
        let e = run(json!([{"op": "add", "path": "members", "value": value.clone()}])).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{value}: {e}");
    }
}

#[test]
fn member_sub_attributes_are_invalid_paths() {
    for path in ["members[value eq \"x\"].display", "members.value", "members.display"] {
        let e = run(json!([{"op": "replace", "path": path, "value": "x"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{path}: {e}");
        assert!(e.detail.contains("member"), "{e}");
    }
    let e = run(json!([{"op": "add", "path": "members[value eq \"x\"]", "value": {"value": "x"}}])).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
}

#[test]
fn a_failing_operation_discards_member_changes_and_document_edits() {
    let e = run(json!([
        {"op": "replace", "path": "displayName", "value": "x"},
        {"op": "add", "path": "members", "value": [{"value": "a"}]},
        {"op": "remove", "path": "displayName"}
    ]))
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    assert!(e.detail.starts_with("operation 3"), "{e}");
}

#[test]
fn users_have_no_members() {
    let user = json!({"schemas": [USER], "id": "u", "userName": "bjensen"});
    let e = run_rt(
        "User",
        &user,
        json!([{"op": "add", "path": "members", "value": [{"value": "a"}]}]),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    assert!(e.detail.contains("members"));
}
