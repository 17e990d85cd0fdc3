//! In-memory evaluation of filters against resource documents (RFC 7644 §3.4.2.2).
//!
//! Semantics, in brief:
//! - Attribute names and document keys match case-insensitively.
//! - Strings compare by the attribute's `caseExact` (unknown attributes: case-insensitive strings);
//!   case-insensitive comparison lowercases both sides with Unicode `to_lowercase`.
//! - `dateTime` values compare as instants when both sides parse as RFC 3339, else as strings.
//! - Numbers compare numerically; booleans support only `eq`/`ne`.
//! - A multi-valued attribute matches when any of its values does. A complex attribute compared
//!   without a sub-attribute (`emails eq "x"`) compares its elements' `value` sub-attribute.
//! - `pr`: present, not null, and not an empty string, array or object.
//! - `eq null` is true when the attribute is absent or null; `ne null` when it has a value.
//! - `ne` is true for an absent attribute, and for a multi-valued one when any value differs.

use super::{CompValue, CompareOp, Filter};
use crate::path::AttrPath;
use crate::schema::{AttributeDef, AttributeType, ResolvedAttr, ResourceType, SchemaRegistry};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

impl Filter {
    /// Evaluates the filter against a whole resource document of resource type `rt`.
    ///
    /// ```
    /// use rollcall_scim::filter::Filter;
    /// use rollcall_scim::schema::SchemaRegistry;
    /// let reg = SchemaRegistry::standard();
    /// let user = reg.resource_type("User").unwrap();
    /// let doc = serde_json::json!({"userName": "BJensen", "emails": [{"value": "b@x.com", "type": "work"}]});
    /// assert!(Filter::parse(r#"username eq "bjensen" and emails[type eq "work"]"#).unwrap().matches(&reg, user, &doc));
    /// ```
    pub fn matches(&self, registry: &SchemaRegistry, rt: &ResourceType, doc: &Value) -> bool {
        eval(self, &DocScope { registry, rt, doc })
    }

    /// Evaluates a value-path inner filter against one element of the multi-valued attribute
    /// `parent`: paths in `self` are sub-attribute names of `parent`. A nested value path never
    /// matches (the parser rejects them).
    ///
    /// ```
    /// use rollcall_scim::filter::Filter;
    /// use rollcall_scim::schema::user_schema;
    /// let emails = user_schema().attribute("emails").unwrap().clone();
    /// let f = Filter::parse(r#"type eq "WORK" and primary eq true"#).unwrap();
    /// assert!(f.matches_element(&emails, &serde_json::json!({"type": "work", "primary": true})));
    /// ```
    pub fn matches_element(&self, parent: &AttributeDef, element: &Value) -> bool {
        eval(self, &ElementScope { parent, element })
    }
}

/// Looks up `key` in a JSON object, ignoring ASCII case (attribute names and URNs are ASCII).
pub(crate) fn get_ci<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn get_ci_value<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_object().and_then(|o| get_ci(o, key))
}

/// How leaf values of a path compare.
#[derive(Clone, Copy)]
struct Leaf {
    kind: AttributeType,
    case_exact: bool,
}

impl Leaf {
    const UNKNOWN: Leaf = Leaf {
        kind: AttributeType::String,
        case_exact: false,
    };

    /// The comparison rules of `def`; a complex attribute compares by its `value` sub-attribute.
    fn of(def: &AttributeDef) -> Leaf {
        let def = if def.kind == AttributeType::Complex {
            match def.sub_attribute("value") {
                Some(v) => v,
                None => return Leaf::UNKNOWN,
            }
        } else {
            def
        };
        Leaf {
            kind: def.kind,
            case_exact: def.case_exact,
        }
    }
}

/// What a path designates in the current scope: the value found at the top-level attribute, the
/// sub-attribute to descend into, and how leaves compare.
struct Located<'v, 'p> {
    top: Option<&'v Value>,
    sub: Option<&'p str>,
    leaf: Leaf,
}

trait Scope<'v> {
    fn locate<'p>(&self, path: &'p AttrPath) -> Located<'v, 'p>;
    fn value_path(&self, path: &AttrPath, filter: &Filter) -> bool;
}

struct DocScope<'a, 'v> {
    registry: &'a SchemaRegistry,
    rt: &'a ResourceType,
    doc: &'v Value,
}

impl<'v> DocScope<'_, 'v> {
    /// The object holding `path`'s top-level attribute: the document, or an extension's object.
    fn container(&self, resolved: Option<&ResolvedAttr<'_>>, path: &AttrPath) -> Option<&'v Value> {
        match (resolved, &path.schema) {
            (Some(r), _) => match r.extension_urn() {
                Some(urn) => get_ci_value(self.doc, urn),
                None => Some(self.doc),
            },
            (None, Some(urn)) if !urn.eq_ignore_ascii_case(&self.rt.schema) => get_ci_value(self.doc, urn),
            (None, _) => Some(self.doc),
        }
    }
}

impl<'v> Scope<'v> for DocScope<'_, 'v> {
    fn locate<'p>(&self, path: &'p AttrPath) -> Located<'v, 'p> {
        let resolved = self.registry.resolve(self.rt, path);
        let leaf = match &resolved {
            Some(r) => Leaf::of(r.leaf()),
            None => Leaf::UNKNOWN,
        };
        Located {
            top: self
                .container(resolved.as_ref(), path)
                .and_then(|c| get_ci_value(c, &path.attr)),
            sub: path.sub_attr.as_deref(),
            leaf,
        }
    }

    fn value_path(&self, path: &AttrPath, filter: &Filter) -> bool {
        // The parser never puts a sub-attribute on a value path; ignore one in a hand-built tree.
        let resolved = self
            .registry
            .find_attribute(self.rt, path.schema.as_deref(), &path.attr);
        let top = self
            .container(resolved.as_ref(), path)
            .and_then(|c| get_ci_value(c, &path.attr));
        let fallback;
        let parent = match &resolved {
            Some(r) => r.attr,
            None => {
                fallback = AttributeDef::new(&path.attr, AttributeType::Complex);
                &fallback
            }
        };
        let elements: &[Value] = match top {
            Some(Value::Array(items)) => items,
            Some(v) => std::slice::from_ref(v),
            None => &[],
        };
        elements.iter().any(|e| filter.matches_element(parent, e))
    }
}

struct ElementScope<'a, 'v> {
    parent: &'a AttributeDef,
    element: &'v Value,
}

impl<'v> Scope<'v> for ElementScope<'_, 'v> {
    fn locate<'p>(&self, path: &'p AttrPath) -> Located<'v, 'p> {
        let top = match self.element {
            Value::Object(o) => get_ci(o, &path.attr),
            // An element of a multi-valued attribute of simple type is its own `value`.
            Value::Null => None,
            other if path.attr.eq_ignore_ascii_case("value") => Some(other),
            _ => None,
        };
        let leaf = match self.parent.sub_attribute(&path.attr) {
            Some(def) if path.sub_attr.is_none() => Leaf::of(def),
            None if self.parent.kind != AttributeType::Complex && path.attr.eq_ignore_ascii_case("value") => {
                Leaf::of(self.parent)
            }
            _ => Leaf::UNKNOWN,
        };
        Located {
            top,
            sub: path.sub_attr.as_deref(),
            leaf,
        }
    }

    fn value_path(&self, _path: &AttrPath, _filter: &Filter) -> bool {
        false
    }
}

fn eval<'v>(f: &Filter, scope: &impl Scope<'v>) -> bool {
    match f {
        Filter::Compare { path, op, value } => {
            let loc = scope.locate(path);
            compare_located(&loc, *op, value)
        }
        Filter::Present { path } => {
            let loc = scope.locate(path);
            // No `value` descent: `emails pr` asks whether there are any emails at all.
            any_leaf(loc.top, loc.sub, false, &mut |v| is_present(v))
        }
        Filter::ValuePath { path, filter } => scope.value_path(path, filter),
        Filter::Not(inner) => !eval(inner, scope),
        Filter::And(a, b) => eval(a, scope) && eval(b, scope),
        Filter::Or(a, b) => eval(a, scope) || eval(b, scope),
    }
}

fn compare_located(loc: &Located<'_, '_>, op: CompareOp, value: &CompValue) -> bool {
    let any = |f: &mut dyn FnMut(&Value) -> bool| any_leaf(loc.top, loc.sub, true, f);
    match (op, value) {
        (CompareOp::Eq, CompValue::Null) => !any(&mut |_| true),
        (CompareOp::Ne, CompValue::Null) => any(&mut |_| true),
        (_, CompValue::Null) => false,
        (CompareOp::Ne, _) => {
            let mut seen = false;
            let differs = any(&mut |v| {
                seen = true;
                !test(v, CompareOp::Eq, value, loc.leaf)
            });
            differs || !seen
        }
        _ => any(&mut |v| test(v, op, value, loc.leaf)),
    }
}

/// Calls `f` on each non-null value the path designates (each element of a multi-valued
/// attribute, descending into `sub` when given, or into `value` for a complex attribute compared
/// as a whole when `value_of_complex`); true as soon as `f` is.
fn any_leaf(top: Option<&Value>, sub: Option<&str>, value_of_complex: bool, f: &mut dyn FnMut(&Value) -> bool) -> bool {
    let Some(top) = top else { return false };
    let mut leaf = |v: &Value| -> bool {
        let target = match (sub, v) {
            (Some(s), Value::Object(o)) => get_ci(o, s),
            (Some(_), _) => None,
            (None, Value::Object(o)) if value_of_complex => get_ci(o, "value"),
            (None, v) => Some(v),
        };
        match target {
            None | Some(Value::Null) => false,
            // A sub-attribute holding an array: any of its elements.
            Some(Value::Array(items)) if sub.is_some() => items.iter().any(|x| !x.is_null() && f(x)),
            Some(t) => f(t),
        }
    };
    match top {
        Value::Null => false,
        Value::Array(items) => items.iter().any(|x| !x.is_null() && leaf(x)),
        v => leaf(v),
    }
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Applies `op` (never `ne`, which the caller derives from `eq`) to a non-null document value.
fn test(v: &Value, op: CompareOp, cv: &CompValue, leaf: Leaf) -> bool {
    match (v, cv) {
        (Value::String(s), CompValue::Str(t)) => string_op(s, op, t, leaf),
        (Value::Bool(b), CompValue::Bool(c)) => bool_op(*b, op, *c),
        (Value::Number(n), CompValue::Number(m)) => number_op(n, op, m),
        // Lenient coercions for clients that quote typed values (`active eq "true"`).
        (Value::Bool(b), CompValue::Str(t)) if leaf.kind == AttributeType::Boolean => {
            if t.eq_ignore_ascii_case("true") {
                bool_op(*b, op, true)
            } else if t.eq_ignore_ascii_case("false") {
                bool_op(*b, op, false)
            } else {
                false
            }
        }
        (Value::Number(n), CompValue::Str(t))
            if matches!(leaf.kind, AttributeType::Integer | AttributeType::Decimal) =>
        {
            t.trim().parse::<Number>().is_ok_and(|m| number_op(n, op, &m))
        }
        _ => false,
    }
}

fn bool_op(a: bool, op: CompareOp, b: bool) -> bool {
    match op {
        CompareOp::Eq => a == b,
        CompareOp::Ne => a != b,
        _ => false,
    }
}

fn number_op(a: &Number, op: CompareOp, b: &Number) -> bool {
    if op.is_substring() {
        return false;
    }
    match number_cmp(a, b) {
        Some(o) => ordering_op(o, op),
        None => false,
    }
}

fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    // One side is a u64 above i64::MAX and the other a negative i64.
    if a.is_u64() && b.is_i64() {
        return Some(Ordering::Greater);
    }
    if a.is_i64() && b.is_u64() {
        return Some(Ordering::Less);
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn ordering_op(o: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn fold(s: &str, case_exact: bool) -> Cow<'_, str> {
    if case_exact || s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

fn string_op(s: &str, op: CompareOp, t: &str, leaf: Leaf) -> bool {
    match leaf.kind {
        AttributeType::Boolean if op.is_substring() || op.is_ordering() => return false,
        AttributeType::DateTime if !op.is_substring() => {
            if let (Ok(a), Ok(b)) = (OffsetDateTime::parse(s, &Rfc3339), OffsetDateTime::parse(t, &Rfc3339)) {
                return ordering_op(a.cmp(&b), op);
            }
        }
        _ => {}
    }
    let a = fold(s, leaf.case_exact);
    let b = fold(t, leaf.case_exact);
    let (a, b) = (a.as_ref(), b.as_ref());
    match op {
        CompareOp::Eq => a == b,
        CompareOp::Ne => a != b,
        CompareOp::Co => a.contains(b),
        CompareOp::Sw => a.starts_with(b),
        CompareOp::Ew => a.ends_with(b),
        CompareOp::Gt => a > b,
        CompareOp::Ge => a >= b,
        CompareOp::Lt => a < b,
        CompareOp::Le => a <= b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert!(matches!(fold("abc", false), Cow::Borrowed(_)));
        assert_eq!(fold("ÀBC", false), "àbc");
        assert_eq!(fold("ÀBC", true), "ÀBC");
        assert_eq!(fold("straße", false), "straße");
    }

    #[test]
    fn numbers() {
        let n = |s: &str| s.parse::<Number>().unwrap();
        assert_eq!(number_cmp(&n("1"), &n("1.0")), Some(Ordering::Equal));
        assert_eq!(number_cmp(&n("-1"), &n("18446744073709551615")), Some(Ordering::Less));
        assert_eq!(
            number_cmp(&n("18446744073709551615"), &n("-1")),
            Some(Ordering::Greater)
        );
        assert_eq!(number_cmp(&n("2.5"), &n("2")), Some(Ordering::Greater));
    }
}
