//! PATCH: any request body either fails to parse, or applies atomically to a valid User and to a
//! valid Group: never a panic, a failure leaves the document unchanged (down to key order), and a
//! success leaves a document that passes `check_document` with group members only in the delta.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_scim::patch::{PatchRequest, apply_patch};
use rollcall_scim::resource::check_document;
use rollcall_scim::schema::SchemaRegistry;
use serde_json::{Value, json};
use std::sync::OnceLock;

fn fixture() -> &'static (SchemaRegistry, Value, Value) {
    static FIXTURE: OnceLock<(SchemaRegistry, Value, Value)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let user = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223",
            "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
            "userName": "bjensen",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "b@example.com", "type": "work", "primary": true}, {"value": "x@y.org", "type": "home"}],
            "addresses": [{"type": "work", "locality": "Hollywood"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}}
        });
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba",
            "displayName": "Tour Guides"
        });
        (SchemaRegistry::standard(), user, group)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(request) = PatchRequest::from_json(&body) else {
        return;
    };
    let (registry, user, group) = fixture();
    for (rt_name, original) in [("User", user), ("Group", group)] {
        let rt = registry.resource_type(rt_name).expect("standard resource type");
        let mut doc = original.clone();
        match apply_patch(registry, rt, &mut doc, &request) {
            Ok(outcome) => {
                let obj = doc.as_object().expect("still an object");
                if let Err(e) = check_document(registry, rt, obj) {
                    panic!("{body} left an invalid {rt_name}: {e}\n{doc}");
                }
                assert_eq!(outcome.document_changed, &doc != original, "{body}");
                assert!(obj.get("members").is_none(), "members never enter the document");
                assert_eq!(doc["id"], original["id"]);
                if rt_name == "User" {
                    assert!(outcome.members.is_empty());
                }
            }
            Err(_) => assert_eq!(
                serde_json::to_string(&doc).unwrap(),
                serde_json::to_string(original).unwrap(),
                "a failed patch changed the document: {body}"
            ),
        }
    }
});
