//! In-memory filter evaluation (RFC 7644 §3.4.2.2 semantics) and schema validation.

use rollcall_scim::ScimType;
use rollcall_scim::filter::Filter;
use rollcall_scim::schema::{SchemaRegistry, user_schema};
use serde_json::{Value, json};

fn user() -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "BJ-701984",
        "userName": "BJensen",
        "name": {"givenName": "Barbara", "familyName": "O'Malley", "middleName": null},
        "displayName": "Babs Jensen",
        "nickName": "",
        "title": "Tour Guide",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [],
        "ims": [{"value": "babs@xmpp.example", "type": "xmpp"}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJ"}],
        "roles": ["admin", "Auditor"],
        "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": "W/\"3694e05e9dff591\""
        },
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "costCenter": "4130",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
        },
        "urn:example:custom:1.0:User": {"shoeSize": 42, "ratio": 0.75, "Lucky": [3, 7, 11]},
        "loginCount": 17,
        "score": -2.5,
        "bigNumber": 18446744073709551615u64
    })
}

/// Asserts each filter's outcome against [`user`].
fn check(cases: &[(&str, bool)]) {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let doc = user();
    let mut wrong = Vec::new();
    for (f, expected) in cases {
        let filter = Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        if filter.matches(&reg, rt, &doc) != *expected {
            wrong.push(format!("{f:?} should be {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn strings_case_insensitive() {
    check(&[
        (r#"userName eq "bjensen""#, true),
        (r#"USERNAME EQ "BJENSEN""#, true),
        (r#"userName ne "bjensen""#, false),
        (r#"userName ne "someone""#, true),
        (r#"userName co "jen""#, true),
        (r#"userName co "JEN""#, true),
        (r#"userName co "xyz""#, false),
        (r#"userName sw "bj""#, true),
        (r#"userName sw "jensen""#, false),
        (r#"userName ew "SEN""#, true),
        (r#"userName ew "bj""#, false),
        (r#"userName gt "bjensem""#, true),
        (r#"userName gt "bjensen""#, false),
        (r#"userName ge "BJENSEN""#, true),
        (r#"userName lt "c""#, true),
        (r#"userName lt "a""#, false),
        (r#"userName le "bjensen""#, true),
        (r#"name.familyName co "o'malley""#, true),
        (r#"name.givenName eq "barbara""#, true),
        (r#"title eq "tour guide""#, true),
    ]);
}

#[test]
fn strings_case_exact() {
    // `id`, `externalId` and `meta.version` are caseExact.
    check(&[
        (r#"externalId eq "BJ-701984""#, true),
        (r#"externalId eq "bj-701984""#, false),
        (r#"externalId ne "bj-701984""#, true),
        (r#"externalId sw "BJ""#, true),
        (r#"externalId sw "bj""#, false),
        (r#"externalId co "J-7""#, true),
        (r#"externalId ew "984""#, true),
        (r#"externalId gt "BJ-7""#, true),
        (r#"externalId gt "bj""#, false),
        (r#"id eq "2819C223-7F76-453A-919D-413861904646""#, false),
        (r#"id eq "2819c223-7f76-453a-919d-413861904646""#, true),
        (r#"meta.version eq "W/\"3694e05e9dff591\"""#, true),
    ]);
}

#[test]
fn unicode_case_folding() {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let doc = json!({"displayName": "ÉMILE Ünal", "externalId": "Ä"});
    let m = |f: &str| Filter::parse(f).unwrap().matches(&reg, rt, &doc);
    assert!(m(r#"displayName eq "émile ünal""#));
    assert!(m(r#"displayName sw "É""#));
    assert!(!m(r#"externalId eq "ä""#));
    assert!(m(r#"externalId eq "Ä""#));
}

#[test]
fn booleans() {
    check(&[
        ("active eq true", true),
        ("active eq TRUE", true),
        ("active eq false", false),
        ("active ne false", true),
        ("active ne true", false),
        // Ordering and substring operators never match booleans (and fail validation).
        ("active gt false", false),
        ("active co true", false),
        // Lenient: a quoted boolean compared with a boolean attribute.
        (r#"active eq "True""#, true),
        (r#"active eq "false""#, false),
        (r#"active eq "yes""#, false),
        ("emails.primary eq true", true),
        ("emails.primary eq false", false),
    ]);
}

#[test]
fn numbers() {
    // Unknown attributes (not in any schema) are still found in the document and compared by
    // their JSON type.
    check(&[
        ("loginCount eq 17", true),
        ("loginCount eq 17.0", true),
        ("loginCount ne 17", false),
        ("loginCount gt 16", true),
        ("loginCount gt 17", false),
        ("loginCount ge 17", true),
        ("loginCount lt 1.7e1", false),
        ("loginCount le 17", true),
        ("loginCount lt 100", true),
        ("loginCount co 1", false),
        ("score lt -2", true),
        ("score eq -2.5", true),
        ("score gt -2.51", true),
        ("bigNumber gt -1", true),
        ("bigNumber eq 18446744073709551615", true),
        ("bigNumber gt 9223372036854775807", true),
        (r#"loginCount eq "17""#, false),
        ("urn:example:custom:1.0:User:shoeSize eq 42", true),
        ("urn:example:custom:1.0:User:ratio lt 1", true),
        ("urn:example:custom:1.0:User:lucky eq 7", true),
        ("urn:example:custom:1.0:User:lucky gt 10", true),
        ("urn:example:custom:1.0:User:lucky gt 11", false),
        ("shoeSize eq 42", false),
    ]);
}

#[test]
fn registered_numeric_extension() {
    let mut reg = SchemaRegistry::standard();
    reg.register_extension(
        "User",
        &json!({
            "id": "urn:example:custom:1.0:User",
            "name": "Custom",
            "attributes": [
                {"name": "shoeSize", "type": "integer"},
                {"name": "ratio", "type": "decimal"},
                {"name": "hired", "type": "dateTime"},
                {"name": "badge", "type": "string", "caseExact": true}
            ]
        }),
        false,
    )
    .unwrap();
    let rt = reg.resource_type("User").unwrap();
    let doc = json!({
        "userName": "x",
        "URN:EXAMPLE:CUSTOM:1.0:USER": {"shoeSize": 42, "ratio": 0.75, "hired": "2020-02-29T12:00:00+13:00", "badge": "AbC"}
    });
    let m = |f: &str| Filter::parse(f).unwrap().matches(&reg, rt, &doc);
    // Without a URN, extension attributes resolve through the registry, under the URN key.
    assert!(m("shoeSize eq 42"));
    assert!(m("shoesize ge 42.0"));
    assert!(
        m(r#"shoeSize eq "42""#),
        "quoted number compared with an integer attribute"
    );
    assert!(m("ratio gt 0.5 and ratio lt 1"));
    assert!(m(r#"hired eq "2020-02-28T23:00:00Z""#));
    assert!(m(r#"hired lt "2020-02-29T00:00:00Z""#));
    assert!(m(r#"badge eq "AbC""#));
    assert!(!m(r#"badge eq "abc""#));
    assert!(m("urn:example:custom:1.0:User:badge pr"));
}

#[test]
fn date_times() {
    check(&[
        (r#"meta.lastModified gt "2011-05-13T04:42:33Z""#, true),
        (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
        (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
        (r#"meta.lastModified lt "2011-05-13T04:42:35Z""#, true),
        (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true),
        (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
        // Instants, not text: the same moment in another offset, with fractional seconds.
        (r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#, true),
        (r#"meta.lastModified eq "2011-05-13T04:42:34.000Z""#, true),
        (r#"meta.lastModified ne "2011-05-13T06:42:34+02:00""#, false),
        (r#"meta.lastModified gt "2011-05-13T05:42:33+01:00""#, true),
        (r#"meta.created lt "2011-01-01T00:00:00Z""#, true),
        // Unparsable: falls back to string comparison.
        (r#"meta.lastModified gt "2011""#, true),
        (r#"meta.lastModified sw "2011-05""#, true),
        (r#"meta.lastModified eq "yesterday""#, false),
    ]);
}

#[test]
fn null_and_presence() {
    check(&[
        ("title pr", true),
        ("nickName pr", false),        // empty string
        ("phoneNumbers pr", false),    // empty array
        ("name.middleName pr", false), // null
        ("locale pr", false),          // absent
        ("name pr", true),
        ("emails pr", true),
        ("emails.type pr", true),
        ("ims.primary pr", false),
        ("title eq null", false),
        ("title ne null", true),
        ("locale eq null", true),
        ("locale ne null", false),
        ("name.middleName eq null", true),
        ("name.middleName ne null", false),
        ("nosuchattr pr", false),
        ("nosuchattr eq null", true),
        (r#"nosuchattr eq "x""#, false),
        (r#"nosuchattr ne "x""#, true),
        (r#"locale ne "en""#, true),
        (r#"locale eq "en""#, false),
        (r#"locale gt "a""#, false),
        (r#"title gt null"#, false),
    ]);
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("User").unwrap();
    let m = |f: &str, doc: Value| Filter::parse(f).unwrap().matches(&reg, rt, &doc);
    assert!(!m("name pr", json!({"name": {}})));
    assert!(!m("name pr", json!({"name": {"givenName": null, "familyName": ""}})));
    assert!(!m("emails pr", json!({"emails": [null, {}]})));
    assert!(m("emails pr", json!({"emails": [{"value": "a@b"}]})));
    assert!(!m("title pr", json!({"title": null})));
}

#[test]
fn multi_valued() {
    check(&[
        (r#"emails.value eq "babs@jensen.org""#, true),
        (r#"emails.type eq "HOME""#, true),
        (r#"emails.type eq "other""#, false),
        // `emails` without a sub-attribute compares each element's `value`.
        (r#"emails eq "bjensen@example.com""#, true),
        (r#"emails co "example.com""#, true),
        (r#"emails co "example.org""#, false),
        (r#"emails ew ".ORG""#, true),
        // `ne`: any value that differs.
        (r#"emails.type ne "work""#, true),
        (r#"ims.type ne "xmpp""#, false),
        (r#"phoneNumbers.value ne "1""#, true),
        // Multi-valued strings.
        (r#"roles eq "auditor""#, true),
        (r#"roles sw "adm""#, true),
        (r#"roles eq "owner""#, false),
        (r#"x509Certificates.value sw "MIID""#, true),
    ]);
}

#[test]
fn extension_and_common_attributes() {
    check(&[
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
            true,
        ),
        (r#"employeeNumber eq "701984""#, true),
        (r#"employeeNumber eq "1""#, false),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value sw "26118915""#,
            true,
        ),
        (r#"manager.displayName eq "john smith""#, true),
        (r#"manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#, true),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B""#, true),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:employeeNumber pr"#, false),
        (r#"meta.resourceType eq "User""#, true),
        (r#"meta.resourceType eq "user""#, false),
        (r#"id pr and externalId pr and meta pr"#, true),
        (
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            true,
        ),
    ]);
}

#[test]
fn logical_operators() {
    check(&[
        (r#"userName eq "bjensen" and active eq true"#, true),
        (r#"userName eq "bjensen" and active eq false"#, false),
        (r#"userName eq "nobody" or active eq true"#, true),
        (r#"userName eq "nobody" or active eq false"#, false),
        (r#"not (userName eq "nobody")"#, true),
        (r#"not (userName eq "bjensen")"#, false),
        (r#"userName eq "x" or title pr and active eq true"#, true),
        (r#"(userName eq "x" or title pr) and active eq false"#, false),
        (r#"not (not (title pr))"#, true),
        (
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            false,
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            false,
        ),
        (r#"userType ne "Employee" and not (emails co "example.net")"#, true),
    ]);
}

#[test]
fn value_paths() {
    check(&[
        (r#"emails[type eq "work"]"#, true),
        (r#"emails[type eq "work" and value co "@example.com"]"#, true),
        // Both conditions must hold for the same element.
        (r#"emails[type eq "home" and value co "@example.com"]"#, false),
        (r#"emails[type eq "home" or primary eq true]"#, true),
        (r#"emails[not (type eq "work")]"#, true),
        (r#"emails[primary pr]"#, true),
        (r#"ims[primary pr]"#, false),
        (r#"emails[type eq "work"].value eq "bjensen@example.com""#, true),
        (r#"emails[type eq "home"].value eq "bjensen@example.com""#, false),
        (r#"phoneNumbers[type eq "work"]"#, false),
        (r#"addresses[type pr]"#, false),
        (
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
            true,
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value pr]"#,
            true,
        ),
        (r#"name[givenName sw "bar"]"#, true),
        (r#"roles[value eq "ADMIN"]"#, true),
        (r#"nosuch[value pr]"#, false),
    ]);
}

#[test]
fn matches_element_for_patch() {
    let schema = user_schema();
    let emails = schema.attribute("emails").unwrap();
    let work = json!({"value": "B@Example.com", "type": "work", "primary": true});
    let home = json!({"value": "b@home.org", "type": "home"});
    let m = |f: &str, e: &Value| Filter::parse(f).unwrap().matches_element(emails, e);
    assert!(m(r#"type eq "work""#, &work));
    assert!(!m(r#"type eq "work""#, &home));
    assert!(m(r#"TYPE eq "WORK" and value ew "example.COM""#, &work));
    assert!(m(r#"type eq "home" or primary eq true"#, &work));
    assert!(m("primary eq true", &work));
    assert!(!m("primary eq true", &home));
    assert!(m("primary eq null", &home));
    assert!(m("not (primary pr)", &home));
    assert!(!m(r#"display pr"#, &home));
    assert!(!m(r#"nosuch eq "x""#, &home));
    // A nested value path never matches an element.
    let nested = Filter::ValuePath {
        path: rollcall_scim::path::AttrPath::new("type"),
        filter: Box::new(Filter::parse("value pr").unwrap()),
    };
    assert!(!nested.matches_element(emails, &work));
}

#[test]
fn group_members() {
    let reg = SchemaRegistry::standard();
    let rt = reg.resource_type("Group").unwrap();
    let doc = json!({
        "displayName": "Tour Guides",
        "members": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "$ref": "https://example.com/v2/Users/2819c223", "type": "User"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "type": "Group"}
        ]
    });
    let m = |f: &str| Filter::parse(f).unwrap().matches(&reg, rt, &doc);
    assert!(m(r#"members[value eq "902c246b-6245-4190-8e05-00816be7344a"]"#));
    // `members.value` is not caseExact in RFC 7643's Group schema.
    assert!(m(r#"members[value eq "902C246B-6245-4190-8E05-00816BE7344A"]"#));
    assert!(m(r#"members[type eq "group" and not (value sw "2819")]"#));
    assert!(m(r#"members.$ref co "/Users/""#));
    assert!(m(r#"displayName eq "tour guides""#));
    assert!(!m(r#"userName pr"#));
}

#[test]
fn validation() {
    let reg = SchemaRegistry::standard();
    let user = reg.resource_type("User").unwrap();
    let group = reg.resource_type("Group").unwrap();
    let ok = |f: &str| {
        Filter::parse(f)
            .unwrap()
            .validate(&reg, user)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    let bad = |f: &str, rt| {
        let e = Filter::parse(f).unwrap().validate(&reg, rt).expect_err(f);
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{f}");
        e.detail
    };
    for f in [
        r#"userName eq "x""#,
        r#"USERNAME sw "x" and name.FAMILYNAME co "y""#,
        "meta.lastModified gt \"2011-05-13T04:42:34Z\"",
        "active eq true and not (active ne false)",
        r#"emails[type eq "work" and value co "@x"] or ims[TYPE eq "xmpp"]"#,
        r#"emails eq "x" and emails co "y""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"employeeNumber gt "1" and manager.value pr and manager eq "x""#,
        "id pr and externalId pr and meta.version pr",
        "name pr and x509Certificates pr",
        r#"name[givenName eq "x"]"#,
    ] {
        ok(f);
    }
    let d = bad(r#"shoeSize eq 1 and userName pr or hatSize gt 2 or SHOESIZE pr"#, user);
    assert!(d.contains(r#""shoeSize", "hatSize""#) && d.contains("User"), "{d}");
    let d = bad("name.nosuch pr", user);
    assert!(d.contains("\"name.nosuch\""), "{d}");
    let d = bad(r#"emails[kind eq "work"]"#, user);
    assert!(d.contains("\"emails.kind\""), "{d}");
    let d = bad(
        r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "x""#,
        user,
    );
    assert!(d.contains("unknown attribute"), "{d}");
    assert!(bad(r#"userName eq "x""#, group).contains("Group"));

    for (f, needle) in [
        ("active gt true", "boolean"),
        ("active le false", "boolean"),
        (r#"active co "t""#, "boolean"),
        (r#"active sw "t""#, "boolean"),
        (r#"active ew "e""#, "boolean"),
        (r#"emails.primary sw "t""#, "boolean"),
        (r#"x509Certificates.value gt "a""#, "binary"),
        (r#"x509Certificates ge "a""#, "complex"),
        (r#"name gt "a""#, "complex"),
        (r#"emails lt "a""#, "complex"),
        (r#"name eq "a""#, "complex"),
        (r#"userName[value eq "x"]"#, "not a complex attribute"),
        (r#"nosuch[value eq "x"]"#, "unknown attribute \"nosuch\""),
        (r#"emails[type.x eq "work"]"#, "plain names"),
    ] {
        let d = bad(f, user);
        assert!(d.contains(needle), "{f}: {d}");
    }
    // Hand-built trees the parser would refuse are refused here too.
    let nested = Filter::ValuePath {
        path: rollcall_scim::path::AttrPath::new("emails"),
        filter: Box::new(Filter::ValuePath {
            path: rollcall_scim::path::AttrPath::new("type"),
            filter: Box::new(Filter::parse("value pr").unwrap()),
        }),
    };
    assert!(nested.validate(&reg, user).unwrap_err().detail.contains("nested"));
}
