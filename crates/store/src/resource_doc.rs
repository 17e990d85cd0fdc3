//! A stored resource's document, parsed only when something needs its values.

use serde_json::Value;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

/// The SCIM document of a [`crate::StoredResource`], with its `id` and without `meta`.
///
/// A resource read from either database comes with the JSON text of its document, without `id`
/// and `meta`: SQLite's exactly as stored (canonical key order), PostgreSQL's as `jsonb` writes it
/// (its own key order, made compact). A GET or a list with the default projection writes that
/// text into the response member by member, the leading keys first
/// ([`rollcall_scim::json_text::write_stored_members`]), so it is never parsed into a tree.
/// Everything else reads the document as a [`Value`] through `Deref`, which parses it on first use
/// and puts the `id` in (after `schemas` when that comes first). The text is checked to be JSON
/// when it is read. A document that was just written is a `Value` from the start.
#[derive(Clone)]
pub struct ResourceDoc {
    stored: Option<StoredText>,
    value: OnceLock<Value>,
}

#[derive(Clone)]
struct StoredText {
    json: Box<str>,
    id: Box<str>,
}

impl ResourceDoc {
    /// A document from its stored JSON text and the resource's id. Fails if the text is not JSON.
    pub fn from_stored_text(json: String, id: &str) -> Result<ResourceDoc, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&json)?;
        Ok(ResourceDoc::from_checked_text(json, id))
    }

    /// A document from text already known to be JSON (PostgreSQL checked it when it stored it):
    /// not checked again.
    pub(crate) fn from_checked_text(json: String, id: &str) -> ResourceDoc {
        ResourceDoc {
            stored: Some(StoredText {
                json: json.into_boxed_str(),
                id: id.into(),
            }),
            value: OnceLock::new(),
        }
    }

    /// The stored JSON text (without `id` and `meta`), when the document was read as text.
    pub fn stored_text(&self) -> Option<&str> {
        self.stored.as_ref().map(|s| &*s.json)
    }

    /// The document as a value, parsed now if it was not yet.
    pub fn into_value(mut self) -> Value {
        self.value.take().unwrap_or_else(|| match &self.stored {
            Some(s) => parse(s),
            None => Value::Null,
        })
    }
}

fn parse(s: &StoredText) -> Value {
    // The text was checked to be JSON in `from_stored_text`; a `Value` can still refuse what that
    // check accepts (a number out of `f64` range), which only a row written outside Rollcall could
    // hold. Such a document reads as null, logged, rather than taking the request down.
    match serde_json::from_str::<Value>(&s.json) {
        Ok(mut doc) => {
            put_id(&mut doc, &s.id);
            doc
        }
        Err(e) => {
            tracing::error!(id = %s.id, error = %e, "stored document cannot be read as a JSON value");
            Value::Null
        }
    }
}

/// Puts `id` into a document right after `schemas`, where the canonical key order has it.
pub(crate) fn put_id(doc: &mut Value, id: &str) {
    if let Value::Object(m) = doc {
        m.shift_remove("id");
        let at = usize::from(m.keys().next().is_some_and(|k| k == "schemas"));
        m.shift_insert(at, "id".into(), Value::String(id.to_string()));
    }
}

impl Deref for ResourceDoc {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value.get_or_init(|| match &self.stored {
            Some(s) => parse(s),
            None => Value::Null,
        })
    }
}

impl From<Value> for ResourceDoc {
    fn from(value: Value) -> ResourceDoc {
        ResourceDoc {
            stored: None,
            value: OnceLock::from(value),
        }
    }
}

impl PartialEq for ResourceDoc {
    fn eq(&self, other: &ResourceDoc) -> bool {
        **self == **other
    }
}

impl fmt::Debug for ResourceDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_text_is_parsed_on_first_use_with_the_id_after_schemas() {
        let doc = ResourceDoc::from_stored_text(r#"{"schemas":["s"],"userName":"a"}"#.into(), "u1").unwrap();
        assert_eq!(doc.stored_text(), Some(r#"{"schemas":["s"],"userName":"a"}"#));
        assert_eq!(doc["userName"], "a");
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["schemas", "id", "userName"]);
        assert_eq!(
            doc.clone().into_value(),
            json!({"schemas": ["s"], "id": "u1", "userName": "a"})
        );
        assert_eq!(
            doc,
            ResourceDoc::from(json!({"schemas": ["s"], "id": "u1", "userName": "a"}))
        );
    }

    #[test]
    fn text_that_is_not_json_is_refused_when_read() {
        assert!(ResourceDoc::from_stored_text("{\"a\":".into(), "x").is_err());
    }

    #[test]
    fn numbers_keep_their_text() {
        // serde_json's arbitrary precision: a number beyond a double reads as it was written
        // (serde_json spells out the exponent's sign).
        let doc = ResourceDoc::from_stored_text(r#"{"n":1e400,"m":18446744073709551616}"#.into(), "x").unwrap();
        assert_eq!(doc["n"].to_string(), "1e+400");
        assert_eq!(doc["m"].to_string(), "18446744073709551616");
    }

    #[test]
    fn a_value_stays_a_value() {
        let doc = ResourceDoc::from(json!({"id": "1"}));
        assert_eq!(doc.stored_text(), None);
        assert_eq!(doc.into_value(), json!({"id": "1"}));
    }
}
