//! Attribute paths: `userName`, `name.givenName`, and URN-qualified forms such as
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.

use crate::error::{ScimError, ScimResult};
use std::fmt;

/// A reference to an attribute, optionally qualified by its schema URN, optionally down to a sub-attribute.
///
/// Names keep the case they were written in; comparisons against the schema are case-insensitive.
///
/// ```
/// use rollcall_scim::path::AttrPath;
/// let p = AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").unwrap();
/// assert_eq!(p.schema.as_deref(), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
/// assert_eq!(p.attr, "manager");
/// assert_eq!(p.sub_attr.as_deref(), Some("value"));
/// assert_eq!(AttrPath::parse("name.givenName").unwrap().to_string(), "name.givenName");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN prefix, when the path was written fully qualified.
    pub schema: Option<String>,
    /// Top-level attribute name.
    pub attr: String,
    /// Sub-attribute of a complex attribute.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path to a top-level attribute with no URN.
    pub fn new(attr: impl Into<String>) -> Self {
        AttrPath {
            schema: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    /// A path to `attr.sub`.
    pub fn with_sub(attr: impl Into<String>, sub: impl Into<String>) -> Self {
        AttrPath {
            schema: None,
            attr: attr.into(),
            sub_attr: Some(sub.into()),
        }
    }

    /// Parses a plain attribute path (no filter brackets). Accepts `attr`, `attr.sub`, and either
    /// prefixed by a schema URN and a colon.
    pub fn parse(input: &str) -> ScimResult<AttrPath> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ScimError::invalid_path("empty attribute path"));
        }
        let (schema, rest) = split_urn(s);
        let mut parts = rest.splitn(2, '.');
        let attr = parts.next().unwrap_or_default();
        let sub = parts.next();
        if !is_attr_name(attr) {
            return Err(ScimError::invalid_path(format!(
                "\"{input}\" is not a valid attribute path: \"{attr}\" is not an attribute name"
            )));
        }
        if let Some(sub) = sub
            && !is_attr_name(sub)
        {
            return Err(ScimError::invalid_path(format!(
                "\"{input}\" is not a valid attribute path: \"{sub}\" is not a sub-attribute name"
            )));
        }
        Ok(AttrPath {
            schema: schema.map(str::to_string),
            attr: attr.to_string(),
            sub_attr: sub.map(str::to_string),
        })
    }

    /// True when `name` matches this path's top-level attribute, ignoring case.
    pub fn is(&self, name: &str) -> bool {
        self.attr.eq_ignore_ascii_case(name)
    }

    /// The path without its sub-attribute.
    pub fn parent(&self) -> AttrPath {
        AttrPath {
            schema: self.schema.clone(),
            attr: self.attr.clone(),
            sub_attr: None,
        }
    }
}

/// Splits a leading schema URN off a path: `urn:a:b:User:name.givenName` → (`urn:a:b:User`, `name.givenName`).
/// The URN ends at the last colon; URNs may contain dots (`2.0`), attribute names may not contain colons.
pub fn split_urn(s: &str) -> (Option<&str>, &str) {
    // Compare bytes, not a `str` slice: `s[..4]` would panic when byte 4 is inside a multi-byte character.
    if s.len() > 4
        && s.as_bytes()[..4].eq_ignore_ascii_case(b"urn:")
        && let Some(i) = s.rfind(':')
    {
        return (Some(&s[..i]), &s[i + 1..]);
    }
    (None, s)
}

/// RFC 7643 §2.1 ATTRNAME: ALPHA *(nameChar) where nameChar = "-" / "_" / DIGIT / ALPHA.
/// `$ref` is also accepted, as the RFC uses it for reference sub-attributes.
pub fn is_attr_name(s: &str) -> bool {
    if s == "$ref" {
        return true;
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.schema {
            write!(f, "{s}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A PATCH operation `path` (RFC 7644 §3.5.2): `attrPath`, or `valuePath` with an optional trailing
/// sub-attribute.
///
/// | written as                              | `attr`               | `filter` | `sub_attr` |
/// |-----------------------------------------|----------------------|----------|------------|
/// | `name.givenName`                        | `name` / `givenName` | `None`   | `None`     |
/// | `emails[type eq "work"]`                | `emails`             | `Some`   | `None`     |
/// | `emails[type eq "work"].value`          | `emails`             | `Some`   | `value`    |
/// | `urn:…:enterprise:2.0:User:manager.value` | `manager` / `value` (schema set) | `None` | `None` |
///
/// A bare schema URN (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`) parses as
/// `AttrPath { schema: "urn:…:2.0", attr: "User" }`; resolving that against the registry is the
/// PATCH code's job. Parsing lives in [`PatchPath::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (for a value path, the multi-valued attribute, with no sub-attribute).
    pub attr: AttrPath,
    /// The value filter selecting elements, for `attr[filter]`.
    pub filter: Option<crate::filter::Filter>,
    /// The sub-attribute after the closing bracket, for `attr[filter].subAttr`.
    pub sub_attr: Option<String>,
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let p = AttrPath::parse("userName").unwrap();
        assert_eq!(p, AttrPath::new("userName"));
        let p = AttrPath::parse("emails.value").unwrap();
        assert_eq!(p, AttrPath::with_sub("emails", "value"));
        let p = AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName").unwrap();
        assert_eq!(p.schema.as_deref(), Some("urn:ietf:params:scim:schemas:core:2.0:User"));
        assert_eq!(p.attr, "name");
        assert_eq!(p.sub_attr.as_deref(), Some("familyName"));
        let p = AttrPath::parse("members.$ref").unwrap();
        assert_eq!(p.sub_attr.as_deref(), Some("$ref"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "1abc", "name.", "a b", "name.given.x", "em@ils"] {
            let e = AttrPath::parse(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::error::ScimType::InvalidPath), "{bad}");
        }
    }
}
