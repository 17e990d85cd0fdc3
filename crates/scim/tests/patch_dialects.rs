//! The PATCH requests identity providers and the RFC read differently, read as the calling
//! provider chooses (`dialect::READINGS`), and Microsoft Entra ID's two PATCH generations: the
//! samples of Microsoft's "Known issues and resolutions with SCIM 2.0 protocol compliance" page
//! (learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility),
//! without and with the `aadOptscim062020` flag, reach the same result.

use proptest::prelude::*;
use rollcall_scim::dialect::{Conflict, Dialect, Reading};
use rollcall_scim::patch::{MemberChange, PatchOpKind, PatchOperation, PatchOutcome, PatchRequest, apply_patch_as};
use rollcall_scim::schema::{ENTERPRISE_USER, GROUP, SchemaRegistry, USER};
use rollcall_scim::{ScimError, ScimType};
use serde_json::{Value, json};

const IDPS: [&str; 7] = ["okta", "entra", "google", "onelogin", "jumpcloud", "ping", "generic"];

fn user() -> Value {
    json!({
        "schemas": [USER],
        "id": "2819c223",
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
        "userName": "Test_User_00aa00aa",
        "externalId": "0a21f0f2",
        "displayName": "Before",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [{"value": "home@example.com", "type": "home"}]
    })
}

fn group() -> Value {
    json!({
        "schemas": [GROUP],
        "id": "e9e30dba",
        "meta": {"resourceType": "Group", "created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
        "displayName": "Tour Guides"
    })
}

fn run(rt: &str, doc: &Value, body: Value, dialect: Dialect) -> Result<(Value, PatchOutcome), ScimError> {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type(rt).unwrap();
    let req = PatchRequest::from_json(&body)?;
    let mut d = doc.clone();
    let r = apply_patch_as(&reg, rt, &mut d, &req, usize::MAX, dialect);
    if r.is_err() {
        assert_eq!(&d, doc, "a refused request changes nothing");
    }
    r.map(|o| (d, o))
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fn without_meta(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("meta");
    v
}

#[test]
fn entra_without_the_flag_removes_only_the_listed_member() {
    // "Requests made to remove a group member", without the feature flag.
    let legacy = patch(json!([{"op": "Remove", "path": "members", "value": [{"value": "u1091"}]}]));
    for idp in ["entra", "jumpcloud", "onelogin", "ping", "generic"] {
        let (d, out) = run("Group", &group(), legacy.clone(), Dialect::of(idp)).unwrap();
        assert_eq!(d, group());
        assert_eq!(out.members, vec![MemberChange::Remove(vec!["u1091".into()])], "{idp}");
    }
    // With the flag, the RFC form: the same change, for every provider.
    let flagged =
        patch(json!([{"op": "remove", "path": "members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]));
    for idp in IDPS {
        let (_, out) = run("Group", &group(), flagged.clone(), Dialect::of(idp)).unwrap();
        assert_eq!(
            out.members,
            vec![MemberChange::Remove(vec![
                "7f4bc1a3-285e-48ae-8202-5accb43efb0e".into()
            ])]
        );
    }
}

#[test]
fn providers_documenting_filter_removes_refuse_a_value_list_instead_of_emptying() {
    let legacy = patch(json!([{"op": "Remove", "path": "members", "value": [{"value": "u1091"}]}]));
    for idp in ["okta", "google"] {
        let e = run("Group", &group(), legacy.clone(), Dialect::of(idp)).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{e}");
        assert!(e.detail.contains("members[value eq"), "{e}");
        assert!(e.detail.contains(idp), "names whose reading it is: {e}");
    }
    // The same for any multi-valued attribute: a value list never empties it.
    let mut u = user();
    u["emails"] = json!([{"value": "a@example.com", "type": "work"}, {"value": "b@example.com", "type": "home"}]);
    let req = patch(json!([{"op": "remove", "path": "emails", "value": [{"value": "a@example.com", "type": "work"}]}]));
    let e = run("User", &u, req.clone(), Dialect::of("okta")).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    let (d, _) = run("User", &u, req, Dialect::of("entra")).unwrap();
    assert_eq!(d["emails"], json!([{"value": "b@example.com", "type": "home"}]));
    // A remove without a value empties the attribute for everyone (RFC 7644 §3.5.2.2).
    for idp in IDPS {
        let (_, out) = run(
            "Group",
            &group(),
            patch(json!([{"op": "remove", "path": "members"}])),
            Dialect::of(idp),
        )
        .unwrap();
        assert_eq!(out.members, vec![MemberChange::ReplaceAll(vec![])]);
    }
}

#[test]
fn replace_through_an_unmatched_filter_creates_for_entra_and_is_no_target_by_the_rfc() {
    let req = patch(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "work@example.com"}]));
    for idp in IDPS {
        let d = Dialect::of(idp);
        match (
            d.reading(Conflict::ReplaceUnmatchedFilter),
            run("User", &user(), req.clone(), d),
        ) {
            (Reading::Vendor, Ok((doc, out))) => {
                assert!(out.document_changed);
                assert!(
                    doc["emails"]
                        .as_array()
                        .unwrap()
                        .contains(&json!({"type": "work", "value": "work@example.com"}))
                );
            }
            (Reading::Rfc, Err(e)) => {
                assert_eq!(e.scim_type, Some(ScimType::NoTarget), "{idp}: {e}");
                assert!(e.detail.starts_with("operation 1 (replace"), "{e}");
            }
            (reading, r) => panic!("{idp}: {reading:?} but {r:?}"),
        }
    }
    // Where the filter matches, every provider replaces.
    let matched =
        patch(json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "new@example.com"}]));
    for idp in IDPS {
        let (doc, _) = run("User", &user(), matched.clone(), Dialect::of(idp)).unwrap();
        assert_eq!(doc["emails"], json!([{"value": "new@example.com", "type": "home"}]));
    }
    // And `add` through an unmatched filter creates the value for everyone: the RFC gives it no
    // other meaning.
    let add = patch(json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "work@example.com"}]));
    for idp in IDPS {
        let (doc, _) = run("User", &user(), add.clone(), Dialect::of(idp)).unwrap();
        assert_eq!(doc["emails"].as_array().unwrap().len(), 2, "{idp}");
    }
}

/// Each pair of samples on Microsoft's page: what the provisioning service sends without the flag,
/// and with it. Read on an Entra connection, both reach the same document.
#[test]
fn entra_samples_without_and_with_the_flag_reach_the_same_result() {
    let pairs = [
        // Requests made to disable users.
        (
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            json!([{"op": "replace", "path": "active", "value": false}]),
        ),
        // Requests made to add a single-value string attribute.
        (
            json!([{"op": "Add", "path": "nickName", "value": "Babs"}]),
            json!([{"op": "add", "path": "nickName", "value": "Babs"}]),
        ),
        // Requests to replace multiple attributes (the same values in both, which the page's
        // samples generate at random).
        (
            json!([
                {"op": "Replace", "path": "displayName", "value": "Pvlo"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "TestBcwqnm@test.microsoft.com"},
                {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
                {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
                {"op": "Replace", "path": "externalId", "value": "Eqpj"},
                {"op": "Replace", "path": format!("{ENTERPRISE_USER}:employeeNumber"), "value": "Eqpj"}
            ]),
            json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "TestBcwqnm@test.microsoft.com"},
                {"op": "replace", "value": {
                    "displayName": "Pvlo",
                    "name.givenName": "Gtfd",
                    "name.familyName": "Pkqf",
                    "externalId": "Eqpj",
                    format!("{ENTERPRISE_USER}:employeeNumber"): "Eqpj"
                }}
            ]),
        ),
    ];
    let entra = Dialect::of("entra");
    for (without, with) in pairs {
        let (a, _) = run("User", &user(), patch(without.clone()), entra).unwrap();
        let (b, _) = run("User", &user(), patch(with.clone()), entra).unwrap();
        let (a, b) = (without_meta(a), without_meta(b));
        // The key order of the emails may differ; compare as values.
        assert_eq!(a, b, "{without} / {with}");
    }
    // The disable request: a boolean either way.
    let (a, _) = run(
        "User",
        &user(),
        patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        entra,
    )
    .unwrap();
    assert_eq!(a["active"], false);
    // The group member removal pair: the same member change (different ids on the page).
    let (_, a) = run(
        "Group",
        &group(),
        patch(json!([{"op": "Remove", "path": "members", "value": [{"value": "u1091"}]}])),
        entra,
    )
    .unwrap();
    let (_, b) = run(
        "Group",
        &group(),
        patch(json!([{"op": "remove", "path": "members[value eq \"u1091\"]"}])),
        entra,
    )
    .unwrap();
    assert_eq!(a.members, b.members);
}

// --- property: the readings differ only on the conflicting requests ------------------------------

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{1,6}".prop_map(Value::String),
        Just(json!({"value": "home@example.com", "type": "home"})),
        Just(json!([{"value": "home@example.com"}])),
        Just(json!([{"value": "x@example.com", "type": "work"}])),
        Just(json!("False")),
        Just(Value::Null),
    ]
}

fn operation() -> impl Strategy<Value = PatchOperation> {
    let kind = prop_oneof![
        Just(PatchOpKind::Add),
        Just(PatchOpKind::Replace),
        Just(PatchOpKind::Remove)
    ];
    let path = prop_oneof![
        Just("emails"),
        Just("emails[type eq \"work\"].value"),
        Just("emails[type eq \"home\"].value"),
        Just("emails[type eq \"work\"]"),
        Just("emails.value"),
        Just("phoneNumbers[type eq \"mobile\"].value"),
        Just("roles"),
        Just("displayName"),
        Just("active"),
        Just("name.givenName"),
    ];
    (kind, path, prop::option::of(value())).prop_map(|(op, p, v)| PatchOperation {
        op,
        path: Some(p.to_string()),
        value: match op {
            PatchOpKind::Remove => v,
            _ => Some(v.unwrap_or(Value::Null)),
        },
    })
}

/// Whether an operation has a shape of a [`Conflict`] (the reading then depends on the provider).
fn conflicting(op: &PatchOperation) -> bool {
    let path = op.path.as_deref().unwrap_or("");
    let filtered = path.contains('[');
    match op.op {
        PatchOpKind::Remove => !filtered && op.value.as_ref().is_some_and(|v| !v.is_null()),
        PatchOpKind::Replace => filtered,
        PatchOpKind::Add => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Every provider's reading agrees with the generic one, except that the RFC's reading may
    /// refuse a request holding a conflicting operation (with `noTarget` or `invalidValue`,
    /// changing nothing); no reading ever turns a refused request into an accepted one.
    #[test]
    fn readings_differ_only_by_refusing_conflicting_requests(ops in prop::collection::vec(operation(), 0..5)) {
        let body = json!({"Operations": ops.iter().map(|o| {
            let mut m = serde_json::Map::new();
            m.insert("op".into(), json!(o.op.as_str()));
            if let Some(p) = &o.path { m.insert("path".into(), json!(p)); }
            if let Some(v) = &o.value { m.insert("value".into(), v.clone()); }
            Value::Object(m)
        }).collect::<Vec<_>>()});
        let generic = run("User", &user(), body.clone(), Dialect::default());
        for idp in IDPS {
            let r = run("User", &user(), body.clone(), Dialect::of(idp));
            match (&generic, &r) {
                (Ok((g, go)), Ok((d, dout))) => {
                    prop_assert_eq!(g, d);
                    prop_assert_eq!(go, dout);
                }
                (Ok(_), Err(e)) => {
                    prop_assert!(ops.iter().any(conflicting), "{idp} refused a request without conflicts: {e}");
                    prop_assert!(matches!(e.scim_type, Some(ScimType::NoTarget | ScimType::InvalidValue)), "{}", e);
                }
                (Err(_), Ok(_)) => prop_assert!(false, "{idp} accepted what the generic reading refuses"),
                (Err(_), Err(_)) => {}
            }
        }
    }
}
