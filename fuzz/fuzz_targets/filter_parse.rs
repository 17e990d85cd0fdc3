//! Filter parser: never panics; whatever parses prints to canonical text that parses back to the
//! same tree; validation and evaluation of parsed filters never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_scim::filter::{Filter, FilterLimits};
use rollcall_scim::schema::SchemaRegistry;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// Printing can lengthen a filter (`1e3` prints as `1000.0`, `not(` as `not (`) and adds one level
/// of parentheses for the Entra form `attr[a or b].sub eq x`, so the re-parse gets more room, still
/// bounded so that the stack stays safe.
const REPARSE: FilterLimits = FilterLimits {
    max_length: usize::MAX,
    max_depth: 64,
    max_terms: 4096,
};

fn fixture() -> &'static (SchemaRegistry, Value) {
    static FIXTURE: OnceLock<(SchemaRegistry, Value)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let doc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "userName": "bjensen",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "b@example.com", "type": "work", "primary": true}, {"value": "x@y.org"}],
            "roles": ["admin"],
            "meta": {"lastModified": "2011-05-13T04:42:34Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}},
            "count": 3
        });
        (SchemaRegistry::standard(), doc)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Filter::parse(input) else {
        return;
    };
    let printed = filter.to_string();
    let again = match Filter::parse_with(&printed, &REPARSE) {
        Ok(f) => f,
        Err(e) => panic!("{input:?} printed as {printed:?}, which does not parse: {e}"),
    };
    assert_eq!(again, filter, "{input:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed, "printing is not stable for {input:?}");

    let (registry, doc) = fixture();
    for rt in registry.resource_types() {
        let _ = filter.validate(registry, rt);
        let _ = filter.matches(registry, rt, doc);
    }
    if let Some(emails) = registry
        .schema("urn:ietf:params:scim:schemas:core:2.0:User")
        .and_then(|s| s.attribute("emails"))
    {
        for e in doc["emails"].as_array().into_iter().flatten() {
            let _ = filter.matches_element(emails, e);
        }
    }
});
