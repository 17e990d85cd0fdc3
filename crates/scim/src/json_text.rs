//! Writing SCIM JSON as text, straight from stored JSON text.
//!
//! A resource is stored as the JSON text of its attributes. Answering a read by parsing that text
//! into a [`Value`], adding `id` and `meta`, and serializing the result again cost more CPU than
//! reading it from the database. When nothing in the document needs to change (no `attributes`
//! or `excludedAttributes`), [`write_stored_members`] instead splits the stored object into its
//! top-level members, each kept as raw text, and writes them out again in [canonical key
//! order](crate::resource::canonical_key_order) with the `id`: one scan of the text, no tree, and
//! no string escaped twice. [`ObjectWriter`] writes the rest of an object (`meta`, `groups`, a
//! ListResponse's envelope) from anything [`Serialize`].

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

use crate::resource::LEADING_KEYS;

/// Writes one JSON object member by member into a byte buffer.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> ObjectWriter<'a> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> ObjectWriter<'a> {
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    /// Writes `"key":` (after a comma if a member came before) and returns the buffer, for the
    /// caller to write exactly one JSON value into.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// Writes `"key":value`, the value serialized.
    pub fn member<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), serde_json::Error> {
        serde_json::to_writer(&mut *self.key(key), value)
    }

    /// Writes `"key":raw`, where `raw` is JSON text already.
    fn raw_member(&mut self, key: &str, raw: &RawValue) {
        self.key(key).extend_from_slice(raw.get().as_bytes());
    }

    /// Ends the object.
    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Writes `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    serde_json::to_writer(&mut *out, s).expect("a string serializes");
}

/// Writes the members of a stored resource document and its `id` into `w`: `schemas`, `id` and
/// `externalId` first, then the other members in their stored order. Members named `id`, `meta`
/// or in `skip` are left out (the caller writes those after). The result is what
/// [`canonical_key_order`](crate::resource::canonical_key_order) makes of the parsed document
/// with `id` put in.
///
/// Fails, writing nothing, if `stored` is not a JSON object.
pub fn write_stored_members(
    w: &mut ObjectWriter<'_>,
    stored: &str,
    id: &str,
    skip: &[&str],
) -> Result<(), serde_json::Error> {
    let TopLevel(members) = serde_json::from_str(stored)?;
    let find = |key: &str| members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v);
    for key in LEADING_KEYS {
        if key == "id" {
            w.member("id", id)?;
        } else if let Some(v) = find(key) {
            w.raw_member(key, v);
        }
    }
    for (i, (k, v)) in members.iter().enumerate() {
        let k: &str = k;
        let later_duplicate = members[i + 1..].iter().any(|(other, _)| other == k);
        if LEADING_KEYS.contains(&k) || k == "meta" || skip.contains(&k) || later_duplicate {
            continue;
        }
        w.raw_member(k, v);
    }
    Ok(())
}

/// The members of a JSON object, in order, each value as its raw text.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(k)) = map.next_key()? {
                    members.push((k, map.next_value()?));
                }
                Ok(TopLevel(members))
            }
        }
        d.deserialize_map(Members)
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::canonical_key_order;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    /// What the `Value` path makes: parse, put `id` in, drop `meta` and `skip`, canonical order.
    fn through_value(stored: &str, id: &str, skip: &[&str]) -> Value {
        let Value::Object(mut m) = serde_json::from_str::<Value>(stored).unwrap() else {
            panic!("not an object")
        };
        m.insert("id".into(), json!(id));
        m.shift_remove("meta");
        for k in skip {
            m.shift_remove(*k);
        }
        Value::Object(canonical_key_order(m))
    }

    fn through_text(stored: &str, id: &str, skip: &[&str]) -> String {
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        write_stored_members(&mut w, stored, id, skip).unwrap();
        w.finish();
        String::from_utf8(out).unwrap()
    }

    fn key_order(text: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(text).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_id_goes_after_schemas_and_the_rest_keeps_its_order() {
        let stored = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"externalId":"e1","userName":"a\"b","name":{"givenName":"A"},"active":true}"#;
        let text = through_text(stored, "u-1", &[]);
        assert_eq!(
            text,
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u-1","externalId":"e1","userName":"a\"b","name":{"givenName":"A"},"active":true}"#
        );
    }

    #[test]
    fn meta_a_stored_id_and_skipped_keys_are_left_out_and_the_caller_appends() {
        let stored = r#"{"userName":"x","meta":{"version":"W/\"1\""},"id":"old","groups":[1],"schemas":["s"]}"#;
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        write_stored_members(&mut w, stored, "new", &["groups"]).unwrap();
        w.member("groups", &json!([])).unwrap();
        w.member("meta", &json!({"resourceType": "User"})).unwrap();
        w.finish();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"schemas":["s"],"id":"new","userName":"x","groups":[],"meta":{"resourceType":"User"}}"#
        );
    }

    #[test]
    fn not_an_object_is_an_error() {
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        assert!(write_stored_members(&mut w, "[1,2]", "i", &[]).is_err());
        assert!(write_stored_members(&mut w, r#"{"a":"#, "i", &[]).is_err());
        assert!(write_stored_members(&mut w, r#"{"a":1} x"#, "i", &[]).is_err());
    }

    #[test]
    fn escaped_keys_are_written_escaped() {
        let stored = r#"{"a\"b":1,"\u00e5":2}"#;
        assert_eq!(through_text(stored, "i", &[]), r#"{"id":"i","a\"b":1,"å":2}"#);
    }

    #[test]
    fn a_duplicate_key_keeps_its_last_value_as_parsing_does() {
        let stored = r#"{"a":1,"externalId":"x","a":2,"externalId":"y"}"#;
        let text = through_text(stored, "i", &[]);
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"id": "i", "externalId": "y", "a": 2})
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((".{0,6}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("schemas".to_string()),
            Just("id".to_string()),
            Just("externalId".to_string()),
            Just("meta".to_string()),
            Just("groups".to_string()),
            Just("userName".to_string()),
            "[a-zA-Z\"\\\\é]{1,6}",
        ]
    }

    proptest! {
        /// For any stored object, the text path writes exactly what the `Value` path renders,
        /// key order included.
        #[test]
        fn text_and_value_paths_agree(members in prop::collection::vec((arb_key(), arb_json()), 0..10), id in ".{0,10}") {
            let stored = Value::Object(members.into_iter().collect::<Map<_, _>>()).to_string();
            let want = through_value(&stored, &id, &["groups"]);
            let got = through_text(&stored, &id, &["groups"]);
            prop_assert_eq!(key_order(&got), want.as_object().unwrap().keys().cloned().collect::<Vec<_>>());
            prop_assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), want);
        }
    }
}
