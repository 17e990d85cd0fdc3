//! Bounds on the work and storage one SCIM request may cause, and the request-wide input checks
//! (no NUL characters).
//!
//! [`ResourceLimits`] bounds a resource document as it is stored — values per multi-valued
//! attribute, bytes per string, bytes of the whole document — and the operations of one PATCH.
//! The server checks every created, replaced and patched document with
//! [`ResourceLimits::check_resource`] before it is written, and the operation count with
//! [`crate::patch::PatchRequest::parse_with`] before any operation runs. Each check is one pass over
//! the document (linear in its size, no allocation unless it fails).
//!
//! Values stored before a bound was lowered do not block other changes: the excess a document
//! already had ([`ResourceLimits::excess_of`]) is tolerated as long as a change does not make it
//! larger (an array with no more values than before, the same over-long string, a document no
//! larger than before).

use crate::error::{ScimError, ScimResult};
use serde_json::Value;
use std::fmt::Write as _;

/// The bounds one SCIM resource (and one PATCH) must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Values of one multi-valued attribute (`emails`, `roles`, `x509Certificates`, …). Group
    /// `members` are not part of the document (they are stored as rows) and are not counted here.
    pub max_values_per_attribute: usize,
    /// Bytes (UTF-8) of one string value anywhere in the document, sub-attributes and extensions
    /// included.
    pub max_string_bytes: usize,
    /// Bytes of the document as stored (compact JSON, without `id` and `meta`).
    pub max_resource_bytes: usize,
    /// Operations in one PATCH request.
    pub max_patch_operations: usize,
}

impl Default for ResourceLimits {
    /// 100 values per attribute, 16 KiB per string, 128 KiB per document, 1000 PATCH operations.
    ///
    /// Real identity providers send a handful of emails, phone numbers and addresses, a few app
    /// roles, and at most a few certificates; an X.509 certificate in base64 is 1–3 KB (a 4096-bit
    /// key with extensions stays under 8 KB), a `photos` data URL is not sent by any of them. A full
    /// Entra ID or Okta user with the enterprise extension is 1–4 KB. Entra ID and Okta batch group
    /// membership changes into PATCH requests of a few hundred operations at most.
    fn default() -> Self {
        ResourceLimits {
            max_values_per_attribute: 100,
            max_string_bytes: 16 * 1024,
            max_resource_bytes: 128 * 1024,
            max_patch_operations: 1000,
        }
    }
}

/// One of the bounds, with the setting that raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    ValuesPerAttribute,
    StringBytes,
    ResourceBytes,
    PatchOperations,
}

impl Bound {
    /// The configuration key (TOML, and `ROLLCALL_` + upper case for the environment).
    pub fn setting(self) -> &'static str {
        match self {
            Bound::ValuesPerAttribute => "max_values_per_attribute",
            Bound::StringBytes => "max_string_bytes",
            Bound::ResourceBytes => "max_resource_bytes",
            Bound::PatchOperations => "patch_max_operations",
        }
    }

    /// How the setting is named in an error detail: `max_string_bytes (ROLLCALL_MAX_STRING_BYTES)`.
    pub fn setting_names(self) -> String {
        let key = self.setting();
        format!("{key} (ROLLCALL_{})", key.to_ascii_uppercase())
    }
}

/// What a stored document already exceeds, tolerated while a change does not make it worse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Excess {
    /// Multi-valued attributes (by key path) with more values than allowed, and their count.
    arrays: Vec<(String, usize)>,
    /// Strings longer than allowed.
    strings: Vec<String>,
    /// The document's size, when it is over the bound.
    bytes: Option<usize>,
}

impl Excess {
    /// True when the document was within every bound.
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty() && self.strings.is_empty() && self.bytes.is_none()
    }
}

/// The error for a multi-valued attribute (`path`) with `n` values, over the bound `max`.
pub fn too_many_values(path: &str, n: usize, max: usize) -> ScimError {
    ScimError::invalid_value(format!(
        "\"{path}\" has {n} values, more than the {max} allowed for a multi-valued attribute; \
         the bound is the setting {}",
        Bound::ValuesPerAttribute.setting_names()
    ))
}

/// A `Write` that only counts bytes: the size of a serialization without building it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes of `v` serialized as compact JSON, as it is stored.
pub fn serialized_len(v: &Value) -> usize {
    let mut count = ByteCount(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// Keys at the top of a document that are not attributes of the resource's values: `schemas` is
/// a list of URNs, not a multi-valued attribute.
fn is_schemas_key(depth: usize, key: &str) -> bool {
    depth == 0 && key == "schemas"
}

/// A walk over a document, in key order, stopping at the first violation not tolerated.
struct Walk<'a> {
    limits: &'a ResourceLimits,
    tolerated: &'a Excess,
    /// Collects the excess instead of failing (for [`ResourceLimits::excess_of`]).
    collect: Option<Excess>,
    /// Object keys from the root to the value being visited.
    keys: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    fn key_path(&self) -> String {
        let mut out = String::new();
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                // Extension attributes read as `urn:…:User:employeeNumber`, others as `name.givenName`.
                out.push(if self.keys[i - 1].starts_with("urn:") { ':' } else { '.' });
            }
            out.push_str(k);
        }
        out
    }

    fn visit(&mut self, v: &'a Value, depth: usize) -> ScimResult<()> {
        match v {
            Value::String(s) if s.len() > self.limits.max_string_bytes => {
                if let Some(c) = &mut self.collect {
                    c.strings.push(s.clone());
                    return Ok(());
                }
                if self.tolerated.strings.iter().any(|t| t == s) {
                    return Ok(());
                }
                Err(ScimError::invalid_value(format!(
                    "a value of \"{}\" is {} bytes long, more than the {} bytes allowed for a string; \
                     the bound is the setting {}",
                    self.key_path(),
                    s.len(),
                    self.limits.max_string_bytes,
                    Bound::StringBytes.setting_names()
                )))
            }
            Value::Array(items) => {
                if items.len() > self.limits.max_values_per_attribute && depth > 0 {
                    let path = self.key_path();
                    if let Some(c) = &mut self.collect {
                        c.arrays.push((path, items.len()));
                    } else if !self
                        .tolerated
                        .arrays
                        .iter()
                        .any(|(p, n)| *p == path && items.len() <= *n)
                    {
                        return Err(too_many_values(
                            &path,
                            items.len(),
                            self.limits.max_values_per_attribute,
                        ));
                    }
                }
                for item in items {
                    self.visit(item, depth + 1)?;
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, item) in map {
                    if is_schemas_key(depth, k) {
                        continue;
                    }
                    self.keys.push(k);
                    let r = self.visit(item, depth + 1);
                    self.keys.pop();
                    r?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl ResourceLimits {
    /// What `doc` (a stored document) already exceeds; empty for a document within every bound.
    /// One pass over the document.
    pub fn excess_of(&self, doc: &Value) -> Excess {
        let none = Excess::default();
        let mut walk = Walk {
            limits: self,
            tolerated: &none,
            collect: Some(Excess::default()),
            keys: Vec::new(),
        };
        let _ = walk.visit(doc, 0);
        let mut excess = walk.collect.unwrap_or_default();
        let bytes = serialized_len(doc);
        if bytes > self.max_resource_bytes {
            excess.bytes = Some(bytes);
        }
        excess
    }

    /// Checks a document about to be stored (without `id` and `meta`): every multi-valued
    /// attribute within [`max_values_per_attribute`](Self::max_values_per_attribute), every string
    /// within [`max_string_bytes`](Self::max_string_bytes), the whole within
    /// [`max_resource_bytes`](Self::max_resource_bytes). `tolerated` is what the document had
    /// before the change ([`excess_of`](Self::excess_of); `&Excess::default()` on create).
    ///
    /// The error is `invalidValue` naming the bound, its value and the setting that raises it.
    ///
    /// ```
    /// use rollcall_scim::limits::{Excess, ResourceLimits};
    /// use serde_json::json;
    /// let limits = ResourceLimits { max_values_per_attribute: 2, ..ResourceLimits::default() };
    /// let ok = json!({"userName": "a", "emails": [{"value": "a@x"}, {"value": "b@x"}]});
    /// assert!(limits.check_resource(&ok, &Excess::default()).is_ok());
    /// let over = json!({"userName": "a", "emails": [{"value": "a@x"}, {"value": "b@x"}, {"value": "c@x"}]});
    /// let e = limits.check_resource(&over, &Excess::default()).unwrap_err();
    /// assert!(e.detail.contains("\"emails\" has 3 values") && e.detail.contains("max_values_per_attribute"));
    /// ```
    pub fn check_resource(&self, doc: &Value, tolerated: &Excess) -> ScimResult<()> {
        let mut walk = Walk {
            limits: self,
            tolerated,
            collect: None,
            keys: Vec::new(),
        };
        walk.visit(doc, 0)?;
        let bytes = serialized_len(doc);
        if bytes > self.max_resource_bytes && tolerated.bytes.is_none_or(|before| bytes > before) {
            return Err(ScimError::invalid_value(format!(
                "the resource would be {bytes} bytes as stored, more than the {} bytes allowed for a resource; \
                 the bound is the setting {}",
                self.max_resource_bytes,
                Bound::ResourceBytes.setting_names()
            )));
        }
        Ok(())
    }

    /// Checks the number of operations of a PATCH request, before any is read: 413, as for a Bulk
    /// request with too many operations (RFC 7644 §3.7.4).
    pub fn check_patch_operations(&self, count: usize) -> ScimResult<()> {
        if count > self.max_patch_operations {
            return Err(ScimError::payload_too_large(format!(
                "the PATCH request has {count} operations, more than the {} allowed in one request; \
                 the bound is the setting {}",
                self.max_patch_operations,
                Bound::PatchOperations.setting_names()
            )));
        }
        Ok(())
    }
}

/// Refuses a request body with a NUL character (U+0000) in any string or member name: no SCIM
/// value has a use for one, and PostgreSQL text cannot hold it. `invalidValue`, naming where.
///
/// ```
/// use rollcall_scim::limits::refuse_nul;
/// use serde_json::json;
/// assert!(refuse_nul(&json!({"userName": "bjensen"})).is_ok());
/// let e = refuse_nul(&json!({"name": {"givenName": "a\u{0}b"}})).unwrap_err();
/// assert!(e.detail.contains("name.givenName") && e.detail.contains("U+0000"));
/// ```
pub fn refuse_nul(body: &Value) -> ScimResult<()> {
    fn find<'v>(v: &'v Value, path: &mut Vec<&'v str>) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(|i| find(i, path)),
            Value::Object(map) => map.iter().any(|(k, i)| {
                path.push(k);
                if k.contains('\0') || find(i, path) {
                    return true;
                }
                path.pop();
                false
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    if !find(body, &mut path) {
        return Ok(());
    }
    let mut at = String::new();
    for (i, k) in path.iter().enumerate() {
        if i > 0 {
            at.push('.');
        }
        // A member name with a NUL is shown with the NUL spelled out.
        let _ = write!(at, "{}", k.replace('\0', "\\u0000"));
    }
    let where_ = if at.is_empty() {
        String::new()
    } else {
        format!(" (in \"{at}\")")
    };
    Err(ScimError::invalid_value(format!(
        "the request contains a NUL character (U+0000){where_}; NUL is not allowed in SCIM values"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScimType;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn small() -> ResourceLimits {
        ResourceLimits {
            max_values_per_attribute: 3,
            max_string_bytes: 10,
            max_resource_bytes: 400,
            max_patch_operations: 2,
        }
    }

    fn emails(n: usize) -> Value {
        Value::Array((0..n).map(|i| json!({"value": format!("{i}@x")})).collect())
    }

    fn check(doc: &Value) -> ScimResult<()> {
        small().check_resource(doc, &Excess::default())
    }

    #[test]
    fn values_per_attribute_at_the_limit_and_one_over() {
        assert!(check(&json!({"userName": "a", "emails": emails(3)})).is_ok());
        let e = check(&json!({"userName": "a", "emails": emails(4)})).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
        assert!(
            e.detail.contains("\"emails\" has 4 values, more than the 3 allowed"),
            "{e}"
        );
        assert!(
            e.detail
                .contains("max_values_per_attribute (ROLLCALL_MAX_VALUES_PER_ATTRIBUTE)"),
            "{e}"
        );
        // In an extension too, named with its URN.
        let e = check(&json!({"userName": "a", ENT: {"roles": ["a", "b", "c", "d"]}})).unwrap_err();
        assert!(e.detail.contains(&format!("\"{ENT}:roles\" has 4 values")), "{e}");
        // `schemas` is not an attribute.
        assert!(check(&json!({"schemas": ["a", "b", "c", "d"], "userName": "a"})).is_ok());
    }

    #[test]
    fn string_length_at_the_limit_and_one_over_anywhere() {
        let at = "x".repeat(10);
        let over = "x".repeat(11);
        assert!(check(&json!({"userName": at})).is_ok());
        for (doc, path) in [
            (json!({"userName": over}), "userName"),
            (json!({"userName": "a", "name": {"givenName": over}}), "name.givenName"),
            (json!({"userName": "a", "emails": [{"value": over}]}), "emails.value"),
            (json!({"userName": "a", ENT: {"department": over}}), "department"),
        ] {
            let e = check(&doc).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
            assert!(
                e.detail.contains(path) && e.detail.contains("11 bytes long, more than the 10 bytes"),
                "{e}"
            );
            assert!(e.detail.contains("max_string_bytes (ROLLCALL_MAX_STRING_BYTES)"), "{e}");
        }
        // Bytes, not characters: five two-byte characters are ten bytes.
        assert!(check(&json!({"userName": "ééééé"})).is_ok());
        assert!(check(&json!({"userName": "éééééé"})).is_err());
    }

    #[test]
    fn resource_size_at_the_limit_and_one_over() {
        let limits = small();
        let doc_of = |n: usize| json!({"a": "x".repeat(n)});
        // {"a":"…"} is 8 bytes around the string; strings here are longer than 10 bytes, so the
        // string bound is raised for this test.
        let limits = ResourceLimits {
            max_string_bytes: 1000,
            ..limits
        };
        assert_eq!(serialized_len(&doc_of(392)), 400);
        assert!(limits.check_resource(&doc_of(392), &Excess::default()).is_ok());
        let e = limits.check_resource(&doc_of(393), &Excess::default()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("401 bytes as stored, more than the 400 bytes"), "{e}");
        assert!(
            e.detail.contains("max_resource_bytes (ROLLCALL_MAX_RESOURCE_BYTES)"),
            "{e}"
        );
    }

    #[test]
    fn patch_operations_at_the_limit_and_one_over() {
        assert!(small().check_patch_operations(2).is_ok());
        let e = small().check_patch_operations(3).unwrap_err();
        assert_eq!(e.status, 413);
        assert!(e.detail.contains("3 operations, more than the 2 allowed"), "{e}");
        assert!(
            e.detail
                .contains("patch_max_operations (ROLLCALL_PATCH_MAX_OPERATIONS)"),
            "{e}"
        );
    }

    #[test]
    fn excess_stored_before_is_tolerated_while_it_does_not_grow() {
        let limits = ResourceLimits {
            max_resource_bytes: 100_000,
            ..small()
        };
        let long = "y".repeat(50);
        let before = json!({"userName": "a", "emails": emails(5), "title": long});
        let excess = limits.excess_of(&before);
        assert!(!excess.is_empty());
        assert!(limits.excess_of(&json!({"userName": "a"})).is_empty());
        // Another attribute changes: fine.
        let after = json!({"userName": "a", "emails": emails(5), "title": long, "active": false});
        assert!(limits.check_resource(&after, &excess).is_ok());
        // Fewer values: fine; more: refused.
        assert!(
            limits
                .check_resource(&json!({"emails": emails(4), "title": long}), &excess)
                .is_ok()
        );
        assert!(
            limits
                .check_resource(&json!({"emails": emails(6), "title": long}), &excess)
                .is_err()
        );
        // A different over-long string: refused.
        let other = "z".repeat(50);
        assert!(
            limits
                .check_resource(&json!({"emails": emails(5), "title": other}), &excess)
                .is_err()
        );
        // Size: no larger than before.
        let size = ResourceLimits {
            max_resource_bytes: 20,
            max_string_bytes: 1000,
            ..small()
        };
        let big = json!({"title": "x".repeat(30)});
        let excess = size.excess_of(&big);
        assert!(size.check_resource(&json!({"title": "x".repeat(29)}), &excess).is_ok());
        assert!(size.check_resource(&json!({"title": "x".repeat(31)}), &excess).is_err());
    }

    #[test]
    fn nul_is_refused_in_values_and_names() {
        assert!(refuse_nul(&json!({"a": ["b", {"c": "d"}], "n": 1})).is_ok());
        for body in [
            json!({"userName": "a\u{0}"}),
            json!({"emails": [{"value": "\u{0}"}]}),
            json!({"Operations": [{"op": "add", "path": "title", "value": "x\u{0}y"}]}),
            json!({"a\u{0}": 1}),
            json!("\u{0}"),
        ] {
            let e = refuse_nul(&body).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{body}");
            assert!(e.detail.contains("U+0000"), "{e}");
        }
        let e = refuse_nul(&json!({"emails": [{"value": "\u{0}"}]})).unwrap_err();
        assert!(e.detail.contains("\"emails.value\""), "{e}");
    }
}
