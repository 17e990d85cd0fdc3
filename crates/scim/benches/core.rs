//! Benchmarks of the SCIM core. One function per group; add a group by writing `fn <name>_benches`
//! and listing it in `criterion_group!` below.
//!
//! Run: `cargo bench -p rollcall-scim --bench core -- --warm-up-time 1 --measurement-time 3`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rollcall_scim::filter::Filter;
use rollcall_scim::schema::SchemaRegistry;
use serde_json::json;
use std::hint::black_box;

const SIMPLE: &str = r#"userName eq "x""#;
const COMPLEX: &str = r#"userType eq "Employee" and (emails[type eq "work" and value co "@example.com"] or urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber sw "70") and not (meta.lastModified lt "2011-05-13T04:42:34Z") and active eq true"#;

/// `filter`: parsing and in-memory evaluation.
fn filter_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter");
    g.bench_function("parse_simple", |b| b.iter(|| Filter::parse(black_box(SIMPLE))));
    g.bench_function("parse_complex", |b| b.iter(|| Filter::parse(black_box(COMPLEX))));

    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap().clone();
    let doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen",
        "userType": "Employee",
        "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"}
    });
    let complex = Filter::parse(COMPLEX).unwrap();
    assert!(complex.matches(&reg, &rt, &doc));
    g.bench_function("eval_complex", |b| {
        b.iter(|| black_box(&complex).matches(&reg, &rt, black_box(&doc)))
    });
    let simple = Filter::parse(SIMPLE).unwrap();
    g.bench_function("eval_simple", |b| {
        b.iter(|| black_box(&simple).matches(&reg, &rt, black_box(&doc)))
    });
    g.finish();
}

/// `patch`: a typical Entra ID PATCH of a user (three operations: a value-path replace, a
/// sub-attribute replace, and a URN-qualified enterprise attribute), parse and apply.
fn patch_benches(c: &mut Criterion) {
    use rollcall_scim::patch::{PatchRequest, apply_patch};

    let mut g = c.benchmark_group("patch");
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap().clone();
    let doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "bjensen@example.com",
        "active": true,
        "displayName": "Barbara Jensen",
        "name": {"formatted": "Barbara Jensen", "givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "department": "Tour Operations"}
    });
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "barbara.jensen@example.com"},
            {"op": "Replace", "path": "name.familyName", "value": "Jensen-Smith"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"}
        ]
    });
    let req = PatchRequest::from_json(&body).unwrap();
    let mut check = doc.clone();
    assert!(apply_patch(&reg, &rt, &mut check, &req).unwrap().document_changed);

    g.bench_function("entra_user_3_ops", |b| {
        b.iter_batched_ref(
            || doc.clone(),
            |d| apply_patch(&reg, &rt, d, black_box(&req)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("entra_user_3_ops_with_parse", |b| {
        b.iter_batched_ref(
            || doc.clone(),
            |d| {
                let req = PatchRequest::from_json(black_box(&body)).unwrap();
                apply_patch(&reg, &rt, d, &req).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, filter_benches, patch_benches);
criterion_main!(benches);
