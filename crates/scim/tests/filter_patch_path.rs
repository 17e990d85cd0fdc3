//! PATCH operation paths (RFC 7644 §3.5.2).

use rollcall_scim::ScimType;
use rollcall_scim::filter::{CompValue, CompareOp, Filter};
use rollcall_scim::path::{AttrPath, PatchPath};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn pp(s: &str) -> PatchPath {
    PatchPath::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn bad(s: &str) -> String {
    let e = PatchPath::parse(s).expect_err(s);
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{s}");
    assert_eq!(e.status, 400);
    e.detail
}

fn type_eq(v: &str) -> Filter {
    Filter::Compare {
        path: AttrPath::new("type"),
        op: CompareOp::Eq,
        value: CompValue::Str(v.into()),
    }
}

#[test]
fn plain_attribute_paths() {
    assert_eq!(
        pp("userName"),
        PatchPath {
            attr: AttrPath::new("userName"),
            filter: None,
            sub_attr: None
        }
    );
    assert_eq!(
        pp("name.givenName"),
        PatchPath {
            attr: AttrPath::with_sub("name", "givenName"),
            filter: None,
            sub_attr: None
        }
    );
    let p = pp(&format!("{ENT}:manager.value"));
    assert_eq!(p.attr.schema.as_deref(), Some(ENT));
    assert_eq!(p.attr.attr, "manager");
    assert_eq!(p.attr.sub_attr.as_deref(), Some("value"));
    assert_eq!(p.filter, None);
    assert_eq!(p.to_string(), format!("{ENT}:manager.value"));
    assert_eq!(pp("members.$ref").attr.sub_attr.as_deref(), Some("$ref"));
    assert_eq!(pp("  title  ").to_string(), "title");
}

#[test]
fn bare_urn_parses_as_schema_and_last_segment() {
    let p = pp(ENT);
    assert_eq!(
        p.attr.schema.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0")
    );
    assert_eq!(p.attr.attr, "User");
    assert_eq!(p.attr.sub_attr, None);
    assert_eq!(p.to_string(), ENT);
}

#[test]
fn value_paths() {
    let p = pp(r#"emails[type eq "work"]"#);
    assert_eq!(p.attr, AttrPath::new("emails"));
    assert_eq!(p.filter, Some(type_eq("work")));
    assert_eq!(p.sub_attr, None);
    assert_eq!(p.to_string(), r#"emails[type eq "work"]"#);

    let p = pp(r#"emails[type eq "work"].value"#);
    assert_eq!(p.attr, AttrPath::new("emails"));
    assert_eq!(p.filter, Some(type_eq("work")));
    assert_eq!(p.sub_attr.as_deref(), Some("value"));
    assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);

    let p = pp(&format!(r#"{ENT}:emails[TYPE EQ "work" AND primary eq TRUE].Value"#));
    assert_eq!(p.attr.schema.as_deref(), Some(ENT));
    assert_eq!(p.attr.attr, "emails");
    assert_eq!(p.sub_attr.as_deref(), Some("Value"));
    assert_eq!(
        p.to_string(),
        format!(r#"{ENT}:emails[TYPE eq "work" and primary eq true].Value"#)
    );

    // RFC 7644 §3.5.2 examples.
    for ex in [
        r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
        r#"addresses[type eq "work"]"#,
        r#"addresses[type eq "work"].streetAddress"#,
        r#"members[value eq "2819c223-7f76-453a-919d-413861904646"].displayName"#,
        r#"emails[type eq "work" and value ew "example.com"]"#,
    ] {
        let p = pp(ex);
        assert_eq!(p.to_string(), ex);
        assert_eq!(pp(&p.to_string()), p);
    }
    // Brackets may contain grouping and `not`.
    let p = pp(r#"emails[not (type eq "work") or (primary pr)]"#);
    assert_eq!(p.to_string(), r#"emails[not (type eq "work") or primary pr]"#);
}

fn col(detail: &str) -> usize {
    let rest = detail
        .strip_prefix("invalid path at column ")
        .unwrap_or_else(|| panic!("no column in {detail:?}"));
    rest[..rest.find(':').unwrap()].parse().unwrap()
}

#[test]
fn errors() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "the path is empty"),
        ("   ", 1, "the path is empty"),
        ("1abc", 1, "not an attribute name"),
        ("name.", 6, "not a sub-attribute name"),
        ("name.given.x", 6, "only one sub-attribute level"),
        ("emails[", 8, "expected an attribute expression"),
        (
            r#"emails[type eq "work""#,
            22,
            "expected \"]\" to close the \"[\" at column 7",
        ),
        (r#"emails[type eq "work"]]"#, 23, "\"]\" has no matching \"[\""),
        (r#"emails[type eq "work"].value.x"#, 24, "not a sub-attribute name"),
        (r#"emails[type eq "work"]x"#, 23, "unexpected \"x\" after the path"),
        (
            r#"emails[type eq "work"].value eq "x""#,
            30,
            "unexpected \"eq\" after the path",
        ),
        ("userName eq \"x\"", 10, "unexpected \"eq\" after the path"),
        ("emails[]", 8, "value filter of \"emails\" is empty"),
        ("emails[type[value pr]]", 12, "value paths cannot be nested"),
        (r#"name.givenName[value pr]"#, 15, "not the sub-attribute path"),
        (r#"emails[type eq "wo"#, 16, "unterminated string"),
        ("(userName)", 1, "expected an attribute path, found \"(\""),
        ("\"userName\"", 1, "expected an attribute path, found the string"),
        ("user name", 6, "unexpected \"name\""),
        ("emails\t", 7, "only spaces"),
    ];
    let mut failures = Vec::new();
    for (input, column, needle) in cases {
        let d = bad(input);
        if col(&d) != *column || !d.contains(needle) {
            failures.push(format!("{input:?}: expected column {column} and {needle:?}, got {d:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Limits apply to the filter inside the brackets.
    let deep = format!("emails[{}type pr{}]", "(".repeat(16), ")".repeat(16));
    assert!(bad(&deep).contains("levels deep"));
    assert!(bad(&"x".repeat(5000)).contains("longer than the limit"));
}
