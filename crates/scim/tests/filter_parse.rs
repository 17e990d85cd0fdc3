//! Filter parser and printer: grammar, RFC 7644 §3.4.2.2 examples, dialects, errors and limits.

use rollcall_scim::ScimType;
use rollcall_scim::filter::{CompValue, CompareOp, Filter, FilterLimits};
use rollcall_scim::path::AttrPath;

fn p(s: &str) -> Filter {
    Filter::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// The error detail for an input that must not parse.
fn err(s: &str) -> String {
    let e = Filter::parse(s).expect_err(s);
    assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{s}");
    assert_eq!(e.status, 400);
    e.detail
}

fn path(s: &str) -> AttrPath {
    AttrPath::parse(s).unwrap()
}

fn cmp(a: &str, op: CompareOp, v: CompValue) -> Filter {
    Filter::Compare {
        path: path(a),
        op,
        value: v,
    }
}

fn s(v: &str) -> CompValue {
    CompValue::Str(v.into())
}

/// A filter number as the parser reads it: an integer when it is one that fits 64 bits, else a
/// double (serde_json's own parsing would keep the text: the workspace uses arbitrary precision).
fn num(v: &str) -> CompValue {
    let n = match (v.parse::<u64>(), v.parse::<i64>()) {
        (Ok(u), _) => u.into(),
        (_, Ok(i)) => i.into(),
        _ => serde_json::Number::from_f64(v.parse().unwrap()).unwrap(),
    };
    CompValue::Number(n)
}

fn pr(a: &str) -> Filter {
    Filter::Present { path: path(a) }
}

fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

fn not(a: Filter) -> Filter {
    Filter::Not(Box::new(a))
}

fn vp(a: &str, f: Filter) -> Filter {
    Filter::ValuePath {
        path: path(a),
        filter: Box::new(f),
    }
}

/// Parses, checks the canonical text, and checks the canonical text parses to the same tree.
fn canon(input: &str, expected: &str) -> Filter {
    let f = p(input);
    assert_eq!(f.to_string(), expected, "printing {input:?}");
    assert_eq!(p(expected), f, "re-parsing {expected:?}");
    f
}

#[test]
fn every_comparison_operator() {
    for (w, op) in [
        ("eq", CompareOp::Eq),
        ("ne", CompareOp::Ne),
        ("co", CompareOp::Co),
        ("sw", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("gt", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ] {
        let f = p(&format!("title {w} \"x\""));
        assert_eq!(f, cmp("title", op, s("x")));
        let upper = p(&format!("title {} \"x\"", w.to_uppercase()));
        assert_eq!(upper, f);
        assert_eq!(f.to_string(), format!("title {w} \"x\""));
    }
    assert_eq!(p("title pr"), pr("title"));
    assert_eq!(p("title PR"), pr("title"));
    assert_eq!(p("title Pr").to_string(), "title pr");
}

#[test]
fn literals() {
    assert_eq!(p("active eq true"), cmp("active", CompareOp::Eq, CompValue::Bool(true)));
    assert_eq!(
        p("active eq FALSE"),
        cmp("active", CompareOp::Eq, CompValue::Bool(false))
    );
    assert_eq!(p("active eq True"), cmp("active", CompareOp::Eq, CompValue::Bool(true)));
    assert_eq!(p("title eq null"), cmp("title", CompareOp::Eq, CompValue::Null));
    assert_eq!(p("title ne NULL"), cmp("title", CompareOp::Ne, CompValue::Null));
    for n in [
        "0",
        "42",
        "-7",
        "1.5",
        "-0.25",
        "1e3",
        "2.5E-3",
        "-1E+2",
        "18446744073709551615",
    ] {
        assert_eq!(p(&format!("x gt {n}")), cmp("x", CompareOp::Gt, num(n)), "{n}");
    }
    assert_eq!(p("x eq 1.0").to_string(), "x eq 1.0");
    assert_eq!(p("x eq -3").to_string(), "x eq -3");
    canon("x eq 1e3", "x eq 1000.0");
    canon("ACTIVE eq TRUE", "ACTIVE eq true");
}

#[test]
fn string_escapes() {
    let f = p(r#"displayName eq "a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\u20AC\ud83d\ude00""#);
    assert_eq!(
        f,
        cmp(
            "displayName",
            CompareOp::Eq,
            s("a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti\u{e9}€😀")
        )
    );
    assert_eq!(f.to_string(), r#"displayName eq "a\"b\\c/d\be\ff\ng\rh\tié€😀""#);
    assert_eq!(p(&f.to_string()), f);
    // Non-ASCII text and empty strings pass through.
    canon("name.givenName eq \"Zoë 日本\"", "name.givenName eq \"Zoë 日本\"");
    canon(r#"title eq """#, r#"title eq """#);
    canon(r#"title eq "\u0001""#, r#"title eq "\u0001""#);
    canon("title eq \"(a) [b] and or not\"", "title eq \"(a) [b] and or not\"");
}

#[test]
fn whitespace_runs() {
    canon(
        "  userName   eq    \"x\"   and  title pr  ",
        "userName eq \"x\" and title pr",
    );
    // Spaces are not needed next to parentheses, brackets or quotes.
    canon("not(title pr)", "not (title pr)");
    canon("(title pr)and(userName pr)", "title pr and userName pr");
    canon("emails [type eq \"work\"]", "emails[type eq \"work\"]");
}

#[test]
fn precedence_and_associativity() {
    let a = || cmp("a", CompareOp::Eq, num("1"));
    let b = || cmp("b", CompareOp::Eq, num("2"));
    let c = || cmp("c", CompareOp::Eq, num("3"));
    assert_eq!(p("a eq 1 or b eq 2 and c eq 3"), or(a(), and(b(), c())));
    assert_eq!(p("a eq 1 and b eq 2 or c eq 3"), or(and(a(), b()), c()));
    assert_eq!(p("a eq 1 and b eq 2 and c eq 3"), and(and(a(), b()), c()));
    assert_eq!(p("a eq 1 or b eq 2 or c eq 3"), or(or(a(), b()), c()));
    assert_eq!(p("(a eq 1 or b eq 2) and c eq 3"), and(or(a(), b()), c()));
    assert_eq!(p("a eq 1 and (b eq 2 and c eq 3)"), and(a(), and(b(), c())));
    assert_eq!(p("not (a eq 1) and b eq 2"), and(not(a()), b()));
    assert_eq!(p("not (a eq 1 or b eq 2)"), not(or(a(), b())));
    assert_eq!(p("((((a eq 1))))"), a());
    // The printer adds exactly the parentheses the shape needs.
    canon("a eq 1 or b eq 2 and c eq 3", "a eq 1 or b eq 2 and c eq 3");
    canon("(a eq 1 or b eq 2) and c eq 3", "(a eq 1 or b eq 2) and c eq 3");
    canon("a eq 1 and (b eq 2 or c eq 3)", "a eq 1 and (b eq 2 or c eq 3)");
    canon("a eq 1 and (b eq 2 and c eq 3)", "a eq 1 and (b eq 2 and c eq 3)");
    canon("a eq 1 or (b eq 2 or c eq 3)", "a eq 1 or (b eq 2 or c eq 3)");
    canon("(a eq 1 and b eq 2) or c eq 3", "a eq 1 and b eq 2 or c eq 3");
    canon("(a eq 1 or b eq 2) or c eq 3", "a eq 1 or b eq 2 or c eq 3");
    canon("NOT ( NOT (a eq 1))", "not (not (a eq 1))");
    canon("not (a eq 1) or not (b eq 2)", "not (a eq 1) or not (b eq 2)");
}

#[test]
fn keywords_are_case_insensitive() {
    let f = p(r#"userName EQ "x" AND title PR Or NOT (nickName Sw "y")"#);
    assert_eq!(
        f.to_string(),
        r#"userName eq "x" and title pr or not (nickName sw "y")"#
    );
    assert_eq!(p("a pr anD b pr oR c pr"), or(and(pr("a"), pr("b")), pr("c")));
}

#[test]
fn keywords_as_attribute_names() {
    // Attribute names are never keywords by position, so these all parse.
    assert_eq!(p("not pr"), pr("not"));
    assert_eq!(p("not eq \"x\""), cmp("not", CompareOp::Eq, s("x")));
    assert_eq!(p("and pr and or pr"), and(pr("and"), pr("or")));
    assert_eq!(p("pr pr"), pr("pr"));
    assert_eq!(p("eq eq \"eq\""), cmp("eq", CompareOp::Eq, s("eq")));
    assert_eq!(p("true eq true"), cmp("true", CompareOp::Eq, CompValue::Bool(true)));
    // ...but a keyword is never a bare value.
    assert!(Filter::parse("eq eq eq").is_err());
    canon("not[type pr]", "not[type pr]");
}

#[test]
fn entra_unquoted_values_are_strings() {
    // The forms older Entra ID provisioning and Microsoft's SCIM reference material send.
    assert_eq!(p("externalId eq abc123"), cmp("externalId", CompareOp::Eq, s("abc123")));
    assert_eq!(
        p("id eq 5f1c8a2e-6b1a-4c57-9f0e-0d5d8f7e1a11 and manager eq 7a2b0c3d-1111-4222-8333-944455556666"),
        and(
            cmp("id", CompareOp::Eq, s("5f1c8a2e-6b1a-4c57-9f0e-0d5d8f7e1a11")),
            cmp("manager", CompareOp::Eq, s("7a2b0c3d-1111-4222-8333-944455556666"))
        )
    );
    assert_eq!(
        p("userName eq bjensen@example.com or emails[value eq b@x.org]"),
        or(
            cmp("userName", CompareOp::Eq, s("bjensen@example.com")),
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(cmp("value", CompareOp::Eq, s("b@x.org")))
            }
        )
    );
    assert_eq!(p("(title sw Dr)"), cmp("title", CompareOp::Sw, s("Dr")));
    // Printed in the standard, quoted form.
    canon("externalId eq abc123", r#"externalId eq "abc123""#);
    // Numbers, booleans and null keep their meaning.
    assert_eq!(p("x eq 42"), cmp("x", CompareOp::Eq, num("42")));
    assert_eq!(p("x eq True"), cmp("x", CompareOp::Eq, CompValue::Bool(true)));
    assert_eq!(p("x eq null"), cmp("x", CompareOp::Eq, CompValue::Null));
}

#[test]
fn sub_attributes_and_urns() {
    assert_eq!(
        p("name.familyName co \"O'Malley\""),
        cmp("name.familyName", CompareOp::Co, s("O'Malley"))
    );
    let f = p(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#);
    let Filter::Compare { path, .. } = &f else { panic!() };
    assert_eq!(
        path.schema.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(path.attr, "employeeNumber");
    assert_eq!(path.sub_attr, None);
    let f = p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr");
    let Filter::Present { path } = &f else { panic!() };
    assert_eq!(path.attr, "manager");
    assert_eq!(path.sub_attr.as_deref(), Some("value"));
    canon(
        "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName sw \"J\"",
        "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName sw \"J\"",
    );
    canon(
        "URN:ietf:params:scim:schemas:core:2.0:User:emails[type eq \"work\"]",
        "URN:ietf:params:scim:schemas:core:2.0:User:emails[type eq \"work\"]",
    );
    assert_eq!(p("members.$ref pr"), pr("members.$ref"));
}

#[test]
fn value_paths() {
    let f = p(r#"emails[type eq "work" and value co "@example.com"]"#);
    assert_eq!(
        f,
        vp(
            "emails",
            and(
                cmp("type", CompareOp::Eq, s("work")),
                cmp("value", CompareOp::Co, s("@example.com"))
            )
        )
    );
    canon(
        r#"emails[type eq "work" or (primary eq true and not (value ew ".org"))]"#,
        r#"emails[type eq "work" or primary eq true and not (value ew ".org")]"#,
    );
    canon(
        r#"emails[(type eq "a" or type eq "b") and value pr]"#,
        r#"emails[(type eq "a" or type eq "b") and value pr]"#,
    );
    canon(r#"not (emails[type eq "work"])"#, r#"not (emails[type eq "work"])"#);
    canon(
        r#"emails[type eq "work"] and phoneNumbers[type eq "mobile"] or x509Certificates[value pr]"#,
        r#"emails[type eq "work"] and phoneNumbers[type eq "mobile"] or x509Certificates[value pr]"#,
    );
}

#[test]
fn entra_value_path_dialect() {
    let f = canon(
        r#"emails[type eq "work"].value eq "x@example.com""#,
        r#"emails[type eq "work" and value eq "x@example.com"]"#,
    );
    assert_eq!(
        f,
        vp(
            "emails",
            and(
                cmp("type", CompareOp::Eq, s("work")),
                cmp("value", CompareOp::Eq, s("x@example.com"))
            )
        )
    );
    assert_eq!(
        p(r#"emails[type eq "work"].value pr"#),
        vp("emails", and(cmp("type", CompareOp::Eq, s("work")), pr("value")))
    );
    canon(
        r#"emails[type eq "work" or type eq "home"].value EQ "x" and userName pr"#,
        r#"emails[(type eq "work" or type eq "home") and value eq "x"] and userName pr"#,
    );
    canon(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:addresses[type eq "work"].country eq "NZ""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:addresses[type eq "work" and country eq "NZ"]"#,
    );
    let e = err(r#"emails[type eq "work"].value"#);
    assert!(e.contains("expected a comparison operator"), "{e}");
    let e = err(r#"emails[type eq "work"].1x eq "y""#);
    assert!(e.contains("column 24") && e.contains("not a sub-attribute name"), "{e}");
}

/// Every example filter of RFC 7644 §3.4.2.2 (Figure 2 and the case-insensitivity examples).
#[test]
fn rfc7644_examples() {
    let examples = [
        r#"userName Eq "john""#,
        r#"Username eq "john""#,
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        // §3.4.3 Figure 4.
        r#"displayName sw "smith""#,
    ];
    for ex in examples {
        let f = p(ex);
        assert_eq!(p(&f.to_string()), f, "{ex}");
    }
    // `userName Eq "john"` and `Username eq "john"` differ only in case.
    assert_eq!(p(examples[0]), cmp("userName", CompareOp::Eq, s("john")));
    assert_eq!(p(examples[1]), cmp("Username", CompareOp::Eq, s("john")));
    assert_eq!(
        p(examples[15]),
        and(
            cmp("userType", CompareOp::Ne, s("Employee")),
            not(or(
                cmp("emails", CompareOp::Co, s("example.com")),
                cmp("emails.value", CompareOp::Co, s("example.org"))
            ))
        )
    );
    assert_eq!(
        p(examples[18]).to_string(),
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#
    );
    // Two examples elsewhere in RFC 7644 are not valid under its own ABNF (unquoted and
    // single-quoted strings, §3.4.2.1 and §3.7.1). The unquoted one is read as Entra ID's dialect
    // is (a bare word is a string); the single-quoted one is rejected with a hint.
    assert_eq!(
        p("(meta.resourceType eq User) or (meta.resourceType eq Group)"),
        or(
            cmp("meta.resourceType", CompareOp::Eq, s("User")),
            cmp("meta.resourceType", CompareOp::Eq, s("Group"))
        )
    );
    let e = err("displayName sw 'Group'");
    assert!(e.contains("column 16") && e.contains("double quotes"), "{e}");
}

fn col(detail: &str) -> usize {
    let rest = detail
        .strip_prefix("invalid filter at column ")
        .unwrap_or_else(|| panic!("no column in {detail:?}"));
    rest[..rest.find(':').unwrap()].parse().unwrap()
}

#[test]
fn error_messages_name_the_column_and_reason() {
    let cases: &[(&str, usize, &str)] = &[
        (
            r#"userName foo "x""#,
            10,
            r#"expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after "userName", found "foo""#,
        ),
        ("", 1, "the filter is empty"),
        ("    ", 1, "the filter is empty"),
        (r#"userName eq "abc"#, 13, "unterminated string"),
        (r#"userName eq "ab\"#, 16, "unterminated string"),
        ("userName eq", 12, "expected a value"),
        ("userName eq ", 13, "found the end of the input"),
        ("userName eq and", 13, "strings must be in double quotes"),
        ("userName", 9, "expected a comparison operator"),
        ("userName pr x", 13, "unexpected \"x\" after a complete expression"),
        ("userName pr)", 12, "\")\" has no matching \"(\""),
        ("userName pr]", 12, "\"]\" has no matching \"[\""),
        ("(userName pr", 13, "expected \")\" to close the \"(\" at column 1"),
        ("((a pr) and b pr", 17, "to close the \"(\" at column 1"),
        ("emails[type pr", 15, "expected \"]\" to close the \"[\" at column 7"),
        (
            "emails[type pr)",
            15,
            "expected \"]\" to close the \"[\" at column 7, found \")\"",
        ),
        ("emails[]", 8, "value filter of \"emails\" is empty"),
        ("()", 2, "expected an attribute expression"),
        ("a pr and", 9, "expected an attribute expression"),
        ("a pr or or", 11, "expected a comparison operator"),
        ("not a pr", 5, "expected \"(\" after \"not\""),
        ("not", 4, "expected \"(\" after \"not\""),
        (
            "\"x\" eq \"x\"",
            1,
            "expected an attribute expression, \"not (\" or \"(\", found the string \"x\"",
        ),
        ("1abc eq 1", 1, "not an attribute name"),
        ("name.given.x eq 1", 6, "only one sub-attribute level"),
        ("name. eq 1", 6, "not a sub-attribute name"),
        ("na-me.9 eq 1", 7, "not a sub-attribute name"),
        ("em@ils pr", 1, "not an attribute name"),
        ("urn:foo:bar: pr", 13, "attribute name is missing"),
        ("x eq 01", 6, "not a valid number"),
        ("x eq 1.", 6, "not a valid number"),
        ("x eq -", 6, "not a valid number"),
        ("x eq 1e999", 6, "not a valid number"),
        ("x eq +1", 6, "double quotes"),
        (r#"x eq "\q""#, 7, "invalid escape sequence \"\\q\""),
        (r#"x eq "\u12G4""#, 7, "four hexadecimal digits"),
        (r#"x eq "\ud800""#, 7, "surrogate"),
        (r#"x eq "\udc00\ud800""#, 7, "low surrogate must follow"),
        (r#"x eq "a\u0000""#, 8, "NUL"),
        ("x eq \"a\u{1}\"", 8, "must be escaped"),
        ("x\teq 1", 2, "only spaces may separate"),
        ("x eq 1\n", 7, "only spaces may separate"),
        ("x eq 1\u{0}", 7, "control character"),
        ("emails[type[value eq 1]]", 12, "value paths cannot be nested"),
        (
            "emails[type eq \"a\"] and x[y[z pr]]",
            28,
            "value paths cannot be nested",
        ),
        ("name.givenName[value pr]", 15, "not the sub-attribute path"),
        ("é€ eq 1", 1, "not an attribute name"),
        ("abx eq \"é€\" andd b pr", 13, "unexpected \"andd\""),
        // Unquoted values (the Entra ID dialect) stay strict around the word.
        ("displayName eq John Smith", 21, "after the unquoted value \"John\""),
        (
            "displayName eq John Smith",
            21,
            "a value with spaces must be in double quotes",
        ),
        ("externalId eq abc\"def\"", 18, "write the whole value in double quotes"),
        ("externalId eq abc(x)", 18, "right after the unquoted value"),
        ("emails[value eq a b]", 19, "after the unquoted value \"a\""),
        ("externalId eq or", 15, "strings must be in double quotes"),
        ("externalId eq PR", 15, "strings must be in double quotes"),
        ("externalId eq 'abc'", 15, "not single quotes"),
        ("externalId eq 1.2.3", 15, "not a valid number"),
    ];
    let mut failures = Vec::new();
    for (input, column, needle) in cases {
        let d = err(input);
        if col(&d) != *column || !d.contains(needle) {
            failures.push(format!("{input:?}: expected column {column} and {needle:?}, got {d:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn long_tokens_are_shortened_in_messages() {
    let long = "a".repeat(500);
    let d = err(&format!("{long} foo 1"));
    assert!(d.len() < 300, "{d}");
    assert!(d.contains('…'));
}

#[test]
fn limits_are_enforced() {
    let l = FilterLimits::default();
    assert_eq!((l.max_length, l.max_depth, l.max_terms), (4096, 16, 64));

    // Length, counted in characters.
    let ok = format!("x eq \"{}\"", "é".repeat(4096 - 7));
    assert_eq!(ok.chars().count(), 4096);
    assert!(Filter::parse(&ok).is_ok());
    let long = format!("x eq \"{}\"", "é".repeat(4096 - 6));
    let d = err(&long);
    assert!(d.contains("longer than the limit of 4096 characters"), "{d}");

    // Depth: parentheses, not and brackets each count one level.
    let nest = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
    assert!(Filter::parse(&nest(16)).is_ok());
    let d = err(&nest(17));
    assert!(d.contains("more than 16 levels deep") && col(&d) == 17, "{d}");
    let nots = |n: usize| format!("{}a pr{}", "not (".repeat(n), ")".repeat(n));
    assert!(Filter::parse(&nots(16)).is_ok());
    assert!(err(&nots(17)).contains("levels deep"));
    let bracketed = format!("{}emails[type pr]{}", "(".repeat(15), ")".repeat(15));
    assert!(Filter::parse(&bracketed).is_ok());
    let bracketed = format!("{}emails[type pr]{}", "(".repeat(16), ")".repeat(16));
    assert!(err(&bracketed).contains("levels deep"));
    // Deep nesting far beyond the limit fails fast rather than overflowing the stack.
    let d = err(&"(".repeat(4000));
    assert!(d.contains("levels deep"), "{d}");
    let d = err(&"not (".repeat(800));
    assert!(d.contains("levels deep"), "{d}");

    // Terms.
    let terms = |n: usize| (0..n).map(|i| format!("a{i} pr")).collect::<Vec<_>>().join(" or ");
    assert!(Filter::parse(&terms(64)).is_ok());
    let d = err(&terms(65));
    assert!(d.contains("more than 64 comparisons"), "{d}");
    let entra = (0..32)
        .map(|_| r#"emails[type eq "w"].value pr"#)
        .collect::<Vec<_>>()
        .join(" and ");
    assert!(Filter::parse(&entra).is_ok());
    assert!(err(&format!("{entra} and x pr")).contains("comparisons"));

    // Custom limits.
    let tight = FilterLimits {
        max_length: 20,
        max_depth: 1,
        max_terms: 2,
    };
    assert!(Filter::parse_with("(a pr) and b pr", &tight).is_ok());
    for bad in ["((a pr))", "a pr and b pr and c pr", "userName eq \"0123456789\""] {
        let e = Filter::parse_with(bad, &tight).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{bad}");
    }
    let roomy = FilterLimits {
        max_length: 1 << 20,
        max_depth: 100,
        max_terms: 1000,
    };
    assert!(Filter::parse_with(&terms(1000), &roomy).is_ok());
    assert!(Filter::parse_with(&nest(100), &roomy).is_ok());
}

#[test]
fn hand_built_trees_print_parseably() {
    let f = and(
        or(pr("a"), not(pr("b"))),
        and(
            vp("emails", or(pr("type"), cmp("value", CompareOp::Sw, s("x\"y")))),
            pr("c"),
        ),
    );
    let text = f.to_string();
    assert_eq!(
        text,
        r#"(a pr or not (b pr)) and (emails[type pr or value sw "x\"y"] and c pr)"#
    );
    assert_eq!(p(&text), f);
}
