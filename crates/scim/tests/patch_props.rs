//! Property: random sequences of plausibly-shaped PATCH operations on a valid User never panic;
//! when they succeed the result passes `check_document`, and when they fail the document is unchanged.

use proptest::prelude::*;
use rollcall_scim::patch::{PatchOpKind, PatchOperation, PatchRequest, apply_patch};
use rollcall_scim::resource::check_document;
use rollcall_scim::schema::{ENTERPRISE_USER, SchemaRegistry, USER};
use serde_json::{Value, json};

fn base_user() -> Value {
    json!({
        "schemas": [USER, ENTERPRISE_USER],
        "id": "2819c223",
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@home.example", "type": "home"}
        ],
        "phoneNumbers": [{"value": "555-1234", "type": "mobile"}],
        ENTERPRISE_USER: {"employeeNumber": "701984", "manager": {"value": "m-1"}}
    })
}

fn word() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(Value::String),
        Just(json!("x@example.com")),
        Just(json!("work")),
    ]
}

/// A string, or one of the ways clients clear a value.
fn text() -> impl Strategy<Value = Value> {
    prop_oneof![4 => word(), 1 => Just(Value::Null), 1 => Just(json!(""))]
}

fn boolish() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        Just(json!("True")),
        Just(json!("False"))
    ]
}

fn email() -> impl Strategy<Value = Value> {
    (
        word(),
        prop::option::of(prop_oneof![Just("work"), Just("home"), Just("other")]),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(v, t, p)| {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), v);
            if let Some(t) = t {
                m.insert("type".into(), json!(t));
            }
            if let Some(p) = p {
                m.insert("primary".into(), json!(p));
            }
            Value::Object(m)
        })
}

/// Anything at all, to hit type errors.
fn junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(1.5)),
        Just(json!([1, 2])),
        Just(json!({"nosuch": 1})),
        Just(json!({"value": {"deep": true}})),
        word(),
        boolish(),
    ]
}

/// A path and a value of roughly the right shape for it.
fn path_and_value() -> impl Strategy<Value = (&'static str, Value)> {
    fn p<S: Strategy<Value = Value> + 'static>(path: &'static str, v: S) -> BoxedStrategy<(&'static str, Value)> {
        v.prop_map(move |v| (path, v)).boxed()
    }
    prop_oneof![
        p("userName", word()),
        p("displayName", text()),
        p("nickName", text()),
        p("title", text()),
        p("active", boolish()),
        p("password", word()),
        p(
            "name",
            (text(), text()).prop_map(|(g, f)| json!({"givenName": g, "familyName": f}))
        ),
        p("name.givenName", text()),
        p("NAME.familyname", text()),
        p("emails", prop::collection::vec(email(), 0..3).prop_map(Value::Array)),
        p("emails", email()),
        p("emails.value", word()),
        p("emails.primary", boolish()),
        p("emails[type eq \"work\"]", email()),
        p("emails[type eq \"work\"].value", text()),
        p("emails[type eq \"home\"].primary", boolish()),
        p("emails[type eq \"other\" and primary eq false].display", text()),
        p("emails[value co \"example\"]", email()),
        p("emails[type eq \"home\" or type eq \"work\"].type", word()),
        p("phoneNumbers[type eq \"mobile\"].value", text()),
        p("addresses[type eq \"work\"].streetAddress", text()),
        p(
            "addresses",
            word().prop_map(|s| json!([{"streetAddress": s, "type": "work"}]))
        ),
        p("roles", word().prop_map(|s| json!([{"value": s, "primary": true}]))),
        p("urn:ietf:params:scim:schemas:core:2.0:User:userName", word()),
        p(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            text()
        ),
        p(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            text()
        ),
        p(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            text()
        ),
        p(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            (text(), text()).prop_map(|(d, m)| json!({"department": d, "manager": m}))
        ),
        p("employeeNumber", prop_oneof![text(), Just(json!(701984))]),
        p("id", word()),
        p("meta.lastModified", word()),
        p("groups", word()),
        p("members", word()),
        p("nosuch", word()),
        p("emails[type eq", word()),
        p("userName", junk()),
        p("emails", junk()),
        p("name", junk()),
        p("emails[type eq \"work\"].value", junk()),
    ]
}

fn path_less_value() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        prop_oneof![
            8 => path_and_value(),
            1 => word().prop_map(|v| ("id", v)),
            1 => Just(("meta", json!({"version": "W/\"1\""}))),
            1 => Just(("schemas", json!(["urn:x"]))),
        ],
        0..4,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn operation() -> impl Strategy<Value = PatchOperation> {
    let kind = prop_oneof![
        Just(PatchOpKind::Add),
        Just(PatchOpKind::Replace),
        Just(PatchOpKind::Remove)
    ];
    prop_oneof![
        6 => (kind.clone(), path_and_value(), 0..10u8).prop_map(|(op, (p, v), r)| {
            // Mostly well-formed: remove without a value, add/replace with one; sometimes not.
            let value = match (op, r) {
                (_, 0) => None,
                (PatchOpKind::Remove, 1) => Some(v),
                (PatchOpKind::Remove, _) => None,
                _ => Some(v),
            };
            PatchOperation { op, path: Some(p.to_string()), value }
        }),
        2 => (prop_oneof![Just(PatchOpKind::Add), Just(PatchOpKind::Replace)], path_less_value())
            .prop_map(|(op, v)| PatchOperation { op, path: None, value: Some(v) }),
        1 => (kind, path_less_value()).prop_map(|(op, v)| PatchOperation { op, path: None, value: Some(v) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_patches_are_atomic_and_leave_valid_documents(ops in prop::collection::vec(operation(), 0..6)) {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("User").unwrap();
        let original = base_user();
        check_document(&reg, rt, original.as_object().unwrap()).unwrap();
        let mut doc = original.clone();
        let req = PatchRequest { operations: ops };
        match apply_patch(&reg, rt, &mut doc, &req) {
            Ok(out) => {
                let obj = doc.as_object().expect("still an object");
                prop_assert!(check_document(&reg, rt, obj).is_ok(), "invalid result {}", doc);
                prop_assert_eq!(out.document_changed, doc != original);
                if !out.document_changed {
                    prop_assert_eq!(serde_json::to_string(&doc).unwrap(), serde_json::to_string(&original).unwrap());
                }
                prop_assert!(out.members.is_empty());
                prop_assert_eq!(&doc["id"], &original["id"]);
                prop_assert_eq!(&doc["meta"], &original["meta"]);
                // `schemas` lists the enterprise URN exactly when the extension has attributes.
                let has_ext = obj.get(ENTERPRISE_USER).is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()));
                let listed = doc["schemas"].as_array().unwrap().iter().any(|s| s == ENTERPRISE_USER);
                prop_assert_eq!(has_ext, listed);
            }
            Err(e) => {
                // Unchanged down to the order of the keys.
                prop_assert_eq!(serde_json::to_string(&doc).unwrap(), serde_json::to_string(&original).unwrap());
                prop_assert_eq!(e.status, 400);
                prop_assert!(e.detail.starts_with("operation ") || e.detail.starts_with("the patched resource"), "{}", e);
            }
        }
    }

    #[test]
    fn request_parsing_never_panics(body in prop::collection::vec((prop::option::of(prop_oneof![
        Just("add"), Just("Replace"), Just("REMOVE"), Just("move")
    ]), prop::option::of(path_and_value()), any::<bool>()), 0..4)) {
        let ops: Vec<Value> = body
            .into_iter()
            .map(|(op, path_value, with_path)| {
                let mut m = serde_json::Map::new();
                if let Some(op) = op { m.insert("op".into(), json!(op)); }
                if let Some((p, v)) = path_value {
                    if with_path { m.insert("path".into(), json!(p)); }
                    m.insert("value".into(), v);
                }
                Value::Object(m)
            })
            .collect();
        let _ = PatchRequest::from_json(&json!({"Operations": ops}));
    }
}
