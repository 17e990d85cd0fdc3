//! Property tests: print/parse round trips on generated trees, and no panics on arbitrary input.

use proptest::prelude::*;
use rollcall_scim::filter::{CompValue, CompareOp, Filter, FilterLimits};
use rollcall_scim::path::{AttrPath, PatchPath};
use rollcall_scim::schema::SchemaRegistry;

/// Generated trees can be deeper and larger than the defaults allow, and printing can add
/// parentheses (for example around an `or` inside `and`), so round trips use generous limits.
const ROOMY: FilterLimits = FilterLimits {
    max_length: 1 << 20,
    max_depth: 256,
    max_terms: 4096,
};

const URNS: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "URN:example:a.b-c:1.0:Thing",
];

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z][a-zA-Z0-9_-]{0,10}",
        // Keywords are legal attribute names and must survive printing.
        1 => prop::sample::select(vec!["not", "and", "or", "pr", "eq", "true", "null", "NOT", "Or", "$ref"])
            .prop_map(str::to_string),
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::weighted(0.2, prop::sample::select(URNS)),
        attr_name(),
        prop::option::weighted(0.3, attr_name()),
    )
        .prop_map(|(schema, attr, sub_attr)| AttrPath {
            schema: schema.map(str::to_string),
            attr,
            sub_attr,
        })
}

/// A value-path attribute: never a sub-attribute.
fn parent_path() -> impl Strategy<Value = AttrPath> {
    (prop::option::weighted(0.2, prop::sample::select(URNS)), attr_name()).prop_map(|(schema, attr)| AttrPath {
        schema: schema.map(str::to_string),
        attr,
        sub_attr: None,
    })
}

fn number() -> impl Strategy<Value = serde_json::Number> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Number::from),
        any::<u64>().prop_map(serde_json::Number::from),
        any::<f64>().prop_filter_map("finite", serde_json::Number::from_f64),
        (-1000i32..1000, 0u32..4).prop_filter_map("finite", |(m, e)| {
            serde_json::Number::from_f64(f64::from(m) / 10f64.powi(e as i32))
        }),
    ]
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        number().prop_map(CompValue::Number),
        // Any string but NUL, which the filter grammar refuses (`\u0000`).
        any::<String>().prop_map(|s| CompValue::Str(s.replace('\0', ""))),
        "[ -~]{0,12}".prop_map(CompValue::Str),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ])
}

fn leaf(path: BoxedStrategy<AttrPath>) -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => (path.clone(), op(), comp_value()).prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
        1 => path.prop_map(|path| Filter::Present { path }),
    ]
}

fn logic(leaves: BoxedStrategy<Filter>, depth: u32, size: u32) -> BoxedStrategy<Filter> {
    leaves
        .prop_recursive(depth, size, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            ]
        })
        .boxed()
}

/// Inner filters of value paths: plain sub-attribute names, no nested value paths.
fn inner_filter() -> BoxedStrategy<Filter> {
    let plain = attr_name().prop_map(AttrPath::new).boxed();
    logic(leaf(plain).boxed(), 3, 8)
}

fn filter() -> BoxedStrategy<Filter> {
    let value_path = (parent_path(), inner_filter()).prop_map(|(path, f)| Filter::ValuePath {
        path,
        filter: Box::new(f),
    });
    let leaves = prop_oneof![3 => leaf(attr_path().boxed()), 1 => value_path].boxed();
    logic(leaves, 5, 32)
}

fn patch_path() -> impl Strategy<Value = PatchPath> {
    prop_oneof![
        attr_path().prop_map(|attr| PatchPath {
            attr,
            filter: None,
            sub_attr: None
        }),
        (parent_path(), inner_filter(), prop::option::of(attr_name())).prop_map(|(attr, f, sub_attr)| PatchPath {
            attr,
            filter: Some(f),
            sub_attr,
        }),
    ]
}

/// Fragments that exercise the tokeniser and parser's corners.
fn filterish() -> impl Strategy<Value = String> {
    let tokens = vec![
        "userName",
        "emails",
        "name.givenName",
        "members.$ref",
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:",
        ":",
        ".",
        ".value",
        "eq",
        "EQ",
        "ne",
        "co",
        "gt",
        "pr",
        "and",
        "or",
        "not",
        "Not",
        "(",
        ")",
        "[",
        "]",
        "\"x\"",
        "\"",
        "\\",
        "\\u",
        "\\ud83d",
        "\\udc00",
        "\"\\u00e9\"",
        "1",
        "-1.5e3",
        "1e999",
        "01",
        "true",
        "null",
        "é",
        "€",
        "😀",
        "\t",
        "\n",
        "\0",
        " ",
        "  ",
        "$ref",
    ];
    prop::collection::vec((prop::sample::select(tokens), prop::bool::ANY), 0..40).prop_map(|parts| {
        let mut s = String::new();
        for (t, space) in parts {
            s.push_str(t);
            if space {
                s.push(' ');
            }
        }
        s
    })
}

fn check_no_panic(input: &str) -> Result<(), TestCaseError> {
    let reg = SchemaRegistry::standard();
    let user = reg.resource_type("User").unwrap();
    let doc = serde_json::json!({
        "userName": "x", "name": {"givenName": "y"}, "emails": [{"value": "a@b", "type": "work"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "1"}
    });
    if let Ok(f) = Filter::parse(input) {
        // Whatever parses prints to text that parses back to the same tree...
        let again = Filter::parse_with(&f.to_string(), &ROOMY);
        prop_assert_eq!(
            again.as_ref().ok(),
            Some(&f),
            "{:?} printed as {:?}",
            input,
            f.to_string()
        );
        // ...and can be validated and evaluated.
        let _ = f.validate(&reg, user);
        let _ = f.matches(&reg, user, &doc);
    }
    if let Ok(p) = PatchPath::parse(input) {
        let again = PatchPath::parse(&p.to_string());
        prop_assert_eq!(
            again.as_ref().ok(),
            Some(&p),
            "{:?} printed as {:?}",
            input,
            p.to_string()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_filters_parse_back(f in filter()) {
        let text = f.to_string();
        let parsed = Filter::parse_with(&text, &ROOMY);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&f), "text: {}, error: {:?}", text, parsed.as_ref().err());
    }

    #[test]
    fn printed_patch_paths_parse_back(p in patch_path()) {
        let text = p.to_string();
        // Patch paths use the default limits; keep generated ones inside them.
        prop_assume!(text.chars().count() <= 4096);
        if let Ok(parsed) = PatchPath::parse(&text) {
            prop_assert_eq!(parsed, p);
        } else {
            // Only limit violations may fail.
            let e = PatchPath::parse(&text).unwrap_err();
            prop_assert!(e.detail.contains("levels deep") || e.detail.contains("comparisons"), "{}: {}", text, e);
        }
    }

    /// The Entra ID dialect: an unquoted value that cannot be a number, `true`, `false`, `null` or a
    /// keyword reads exactly as its double-quoted form, alone or inside a larger filter.
    #[test]
    fn unquoted_values_read_as_quoted_strings(
        path in attr_path(),
        op in op(),
        word in "[A-Za-z0-9][A-Za-z0-9@._:+/=-]{0,24}",
        rest in prop::option::of(filter()),
    ) {
        use rollcall_scim::dialect::{BareValue, bare_filter_value};
        prop_assume!(bare_filter_value(&word) == BareValue::Str);
        prop_assume!(!["true", "false", "null"].iter().any(|k| word.eq_ignore_ascii_case(k)));
        let quoted = serde_json::to_string(&word).unwrap();
        let (bare, json) = match &rest {
            Some(f) => (format!("{path} {} {word} and ({f})", op.as_str()), format!("{path} {} {quoted} and ({f})", op.as_str())),
            None => (format!("{path} {} {word}", op.as_str()), format!("{path} {} {quoted}", op.as_str())),
        };
        let a = Filter::parse_with(&bare, &ROOMY);
        let b = Filter::parse_with(&json, &ROOMY);
        prop_assert!(b.is_ok(), "{}: {:?}", json, b);
        prop_assert_eq!(a.ok(), b.ok(), "{}", bare);
    }

    /// Anything but `and`, `or`, a closing bracket or the end right after an unquoted value fails
    /// with an error that names the value.
    #[test]
    fn unquoted_value_followed_by_garbage_fails(
        word in "[A-Za-z][A-Za-z0-9_-]{0,12}",
        junk in r#"[A-Za-z0-9"(\[][A-Za-z0-9"]{0,6}"#,
    ) {
        use rollcall_scim::dialect::{BareValue, bare_filter_value};
        prop_assume!(bare_filter_value(&word) == BareValue::Str);
        prop_assume!(!["true", "false", "null"].iter().any(|k| word.eq_ignore_ascii_case(k)));
        // Junk that begins with a logical operator as a word of its own (`or`, `oR""`, `and(`) is
        // read as that operator: what fails then is what follows it, not the value.
        let lead: String = junk.chars().take_while(char::is_ascii_alphanumeric).collect();
        prop_assume!(!["and", "or"].iter().any(|k| lead.eq_ignore_ascii_case(k)));
        for text in [format!("externalId eq {word} {junk}"), format!("externalId eq {word}{junk}")] {
            if text == format!("externalId eq {word}{junk}") && !junk.starts_with(['"', '(', '[']) {
                // Glued letters just make a longer word.
                continue;
            }
            let e = Filter::parse(&text).expect_err(&text);
            prop_assert_eq!(e.scim_type, Some(rollcall_scim::ScimType::InvalidFilter));
            prop_assert!(e.detail.contains("unquoted value") || e.detail.contains("unterminated string"), "{}: {}", text, e.detail);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        check_no_panic(&s)?;
    }

    #[test]
    fn filterish_strings_never_panic(s in filterish()) {
        check_no_panic(&s)?;
    }

    #[test]
    fn mutated_valid_filters_never_panic(f in filter(), cut in any::<prop::sample::Index>(), junk in "[\\[\\]()\" .\\\\a-z]{0,3}") {
        // Splice junk into a valid filter's text at a character boundary.
        let text = f.to_string();
        let chars: Vec<char> = text.chars().collect();
        let at = cut.index(chars.len() + 1);
        let mutated: String = chars[..at].iter().chain(junk.chars().collect::<Vec<_>>().iter()).chain(chars[at..].iter()).collect();
        check_no_panic(&mutated)?;
    }
}
