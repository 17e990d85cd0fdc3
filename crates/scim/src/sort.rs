//! `sortBy` / `sortOrder` (RFC 7644 §3.4.2.3): a comparator that follows each attribute's type and caseExact.

use crate::path::AttrPath;
use crate::schema::{AttributeDef, AttributeType, ResourceType, SchemaRegistry};
use serde_json::Value;
use std::cmp::Ordering;

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

impl SortOrder {
    /// Parses `ascending` / `descending` (any case); anything else is `None`.
    pub fn parse(s: &str) -> Option<SortOrder> {
        if s.eq_ignore_ascii_case("ascending") {
            Some(SortOrder::Ascending)
        } else if s.eq_ignore_ascii_case("descending") {
            Some(SortOrder::Descending)
        } else {
            None
        }
    }
}

/// The value a resource sorts by: for a multi-valued attribute, the primary element's (or else the
/// first element's) `value` or named sub-attribute.
pub fn sort_value<'a>(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    doc: &'a Value,
    path: &AttrPath,
) -> Option<&'a Value> {
    let r = registry.resolve(rt, path)?;
    let container = match r.extension_urn() {
        Some(u) => get_ci(doc, u)?,
        None => doc,
    };
    let v = get_ci(container, &r.attr.name)?;
    let v = match v {
        Value::Array(items) => items
            .iter()
            .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| items.first())?,
        other => other,
    };
    let sub = r
        .sub
        .map(|s| s.name.as_str())
        .or(if r.attr.multi_valued { Some("value") } else { None });
    match sub {
        Some(s) => get_ci(v, s),
        None => Some(v),
    }
    .filter(|v| !v.is_null())
}

fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(key)
        .or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// Compares two sort values of the attribute `leaf`. Missing values sort after present ones in
/// ascending order (and so before them in descending order).
pub fn compare(leaf: &AttributeDef, a: Option<&Value>, b: Option<&Value>, order: SortOrder) -> Ordering {
    let ord = match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_present(leaf, x, y),
    };
    match order {
        SortOrder::Ascending => ord,
        SortOrder::Descending => ord.reverse(),
    }
}

fn compare_present(leaf: &AttributeDef, x: &Value, y: &Value) -> Ordering {
    match (leaf.kind, x, y) {
        (AttributeType::Integer | AttributeType::Decimal, Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
        (AttributeType::Boolean, Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (AttributeType::DateTime, Value::String(a), Value::String(b)) => {
            let f = &time::format_description::well_known::Rfc3339;
            match (time::OffsetDateTime::parse(a, f), time::OffsetDateTime::parse(b, f)) {
                (Ok(a), Ok(b)) => a.cmp(&b),
                _ => a.cmp(b),
            }
        }
        (_, Value::String(a), Value::String(b)) => {
            if leaf.case_exact {
                a.cmp(b)
            } else {
                a.to_lowercase().cmp(&b.to_lowercase())
            }
        }
        _ => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_by_type_and_case() {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("User").unwrap();
        let mut docs = [
            json!({"userName": "bob", "emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}]}),
            json!({"userName": "Alice", "emails": [{"value": "m@x"}]}),
            json!({"userName": "carol"}),
        ];
        let p = AttrPath::parse("userName").unwrap();
        let leaf = reg.resolve(rt, &p).unwrap().leaf().clone();
        docs.sort_by(|a, b| {
            compare(
                &leaf,
                sort_value(&reg, rt, a, &p),
                sort_value(&reg, rt, b, &p),
                SortOrder::Ascending,
            )
        });
        assert_eq!(
            docs.iter().map(|d| d["userName"].as_str().unwrap()).collect::<Vec<_>>(),
            ["Alice", "bob", "carol"]
        );
        let p = AttrPath::parse("emails").unwrap();
        let leaf = reg
            .resolve(rt, &AttrPath::parse("emails.value").unwrap())
            .unwrap()
            .leaf()
            .clone();
        docs.sort_by(|a, b| {
            compare(
                &leaf,
                sort_value(&reg, rt, a, &p),
                sort_value(&reg, rt, b, &p),
                SortOrder::Ascending,
            )
        });
        assert_eq!(
            docs.iter().map(|d| d["userName"].as_str().unwrap()).collect::<Vec<_>>(),
            ["bob", "Alice", "carol"]
        );
        docs.sort_by(|a, b| {
            compare(
                &leaf,
                sort_value(&reg, rt, a, &p),
                sort_value(&reg, rt, b, &p),
                SortOrder::Descending,
            )
        });
        assert_eq!(docs[0]["userName"], "carol");
        assert_eq!(SortOrder::parse("DESCENDING"), Some(SortOrder::Descending));
    }
}
