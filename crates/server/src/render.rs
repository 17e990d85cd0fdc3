//! The SCIM representation of stored resources and of ListResponses.
//!
//! A resource is its stored attributes with `id`, its members (a group) or groups (a user) and
//! `meta`, in canonical key order, then projected (`attributes`, `excludedAttributes`). With the
//! default projection, a document read as text is written into the response without being parsed
//! ([`rollcall_scim::json_text`]); otherwise it is rendered as a [`Value`] and projected.

use crate::service::{LIST_RESPONSE, ListPosition, Scim, endpoint_of};
use rollcall_scim::json_text::{ObjectWriter, write_stored_members};
use rollcall_scim::projection::Projection;
use rollcall_store::{MemberView, ResourceKind, StoredResource};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A resource's `meta`. Its values are written as they are serialized, without a string each.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    resource_type: &'a str,
    created: Stamp,
    last_modified: Stamp,
    location: Location<'a>,
    version: ETag,
}

/// A resource's address: `{public URL}/scim/v2/{connection}/{Users|Groups}/{id}`
/// ([`Scim::location`]).
struct Location<'a> {
    public_url: &'a str,
    connection_id: &'a str,
    kind: ResourceKind,
    id: &'a str,
}

impl Serialize for Location<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!(
            "{}/scim/v2/{}/{}/{}",
            self.public_url,
            self.connection_id,
            endpoint_of(self.kind),
            self.id
        ))
    }
}

/// A time in microseconds since the epoch, as RFC 3339 ([`crate::service::rfc3339`]).
struct Stamp(i64);

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        let len = {
            let mut w = &mut buf[..];
            let written = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
                .ok()
                .and_then(|t| {
                    t.format_into(&mut w, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            // What the writer took (`format_into`'s count was seen short of it).
            if written.is_some() { 64 - w.len() } else { 0 }
        };
        s.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default())
    }
}

/// A version as its weak entity tag ([`crate::response::etag`]).
struct ETag(i64);

impl Serialize for ETag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("W/\"{}\"", self.0))
    }
}

/// One of a group's `members` or a user's `groups`.
#[derive(Serialize)]
struct RelatedItem<'a> {
    value: &'a str,
    #[serde(rename = "$ref")]
    reference: Location<'a>,
    #[serde(rename = "type")]
    item_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

/// The parts of a rendered resource that are not its stored attributes.
struct Parts<'a> {
    /// `members` (a group) or `groups` (a user).
    key: &'static str,
    /// The members or groups, when they were read.
    related: Option<Vec<RelatedItem<'a>>>,
    meta: Meta<'a>,
}

impl Parts<'_> {
    /// The stored member the related resources replace, when they were read.
    fn replaced(&self) -> &[&'static str] {
        match self.related {
            Some(_) => std::slice::from_ref(&self.key),
            None => &[],
        }
    }

    /// The related resources to show: a user in no group has no `groups`; a group always has
    /// `members`, if only `[]`.
    fn shown(&self) -> Option<&Vec<RelatedItem<'_>>> {
        self.related
            .as_ref()
            .filter(|items| !items.is_empty() || self.key == "members")
    }
}

impl Scim {
    fn parts<'a>(&'a self, connection_id: &'a str, res: &'a StoredResource) -> Parts<'a> {
        let location = |kind, id| Location {
            public_url: &self.config.public_url,
            connection_id,
            kind,
            id,
        };
        let related = res.related.as_ref().map(|related| {
            related
                .iter()
                .map(|r: &MemberView| RelatedItem {
                    value: &r.id,
                    reference: location(r.kind, &r.id),
                    item_type: match res.kind {
                        ResourceKind::User => "direct",
                        ResourceKind::Group => r.kind.as_str(),
                    },
                    display: r.display.as_deref(),
                })
                .collect::<Vec<_>>()
        });
        Parts {
            key: match res.kind {
                ResourceKind::Group => "members",
                ResourceKind::User => "groups",
            },
            related,
            meta: Meta {
                resource_type: res.kind.as_str(),
                created: Stamp(res.created_us),
                last_modified: Stamp(res.modified_us),
                location: location(res.kind, &res.id),
                version: ETag(res.version),
            },
        }
    }

    /// Whether the default projection leaves a rendered resource of this kind as it is.
    fn default_projection_is_identity(&self, kind: ResourceKind, proj: &Projection) -> bool {
        proj.is_default()
            && self.default_projection_is_identity[match kind {
                ResourceKind::User => 0,
                ResourceKind::Group => 1,
            }]
    }

    /// The full SCIM representation of a stored resource, projected: `schemas`, `id` and `externalId`
    /// first, then the stored attributes in their order, the members (groups) or groups (users), and
    /// `meta` last.
    pub fn render(&self, connection_id: &str, res: StoredResource, proj: &Projection) -> Value {
        let kind = res.kind;
        let (key, replaced, shown, meta) = {
            let parts = self.parts(connection_id, &res);
            (
                parts.key,
                !parts.replaced().is_empty(),
                parts
                    .shown()
                    .map(|r| serde_json::to_value(r).expect("members serialize")),
                serde_json::to_value(&parts.meta).expect("meta serializes"),
            )
        };
        let stored = match res.doc.into_value() {
            Value::Object(m) => m,
            other => return other,
        };
        // Documents read from SQLite are in canonical order already; others are reordered once.
        let mut m = rollcall_scim::resource::canonical_key_order(stored);
        m.shift_remove("meta");
        if replaced {
            m.shift_remove(key);
        }
        if let Some(related) = shown {
            m.insert(key.into(), related);
        }
        m.insert("meta".into(), meta);
        let doc = Value::Object(m);
        if self.default_projection_is_identity(kind, proj) {
            // Stored documents are canonical and hold no writeOnly values: nothing to project.
            return doc;
        }
        canonical_order(proj.apply(&self.registry, self.rt(kind), &doc))
    }

    /// Writes what [`Scim::render`] returns, as JSON, at the end of `out`. A document read as text
    /// and shown with the default projection is written from its text.
    pub fn write_resource(&self, out: &mut Vec<u8>, connection_id: &str, res: StoredResource, proj: &Projection) {
        if self.default_projection_is_identity(res.kind, proj)
            && let Some(text) = res.doc.stored_text()
        {
            let start = out.len();
            let parts = self.parts(connection_id, &res);
            let mut w = ObjectWriter::new(out);
            let written = write_stored_members(&mut w, text, &res.id, parts.replaced()).and_then(|()| {
                if let Some(related) = parts.shown() {
                    w.member(parts.key, related)?;
                }
                w.member("meta", &parts.meta)
            });
            if written.is_ok() {
                w.finish();
                return;
            }
            // Stored text that is JSON but not an object: rendered like any other document.
            out.truncate(start);
        }
        let doc = self.render(connection_id, res, proj);
        serde_json::to_writer(out, &doc).expect("a JSON value serializes");
    }

    /// A ListResponse of `resources` (already the page) as JSON.
    pub fn list_response(
        &self,
        connection_id: &str,
        total: i64,
        position: ListPosition,
        resources: Vec<StoredResource>,
        proj: &Projection,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024 + resources.len() * 1024);
        let mut w = ObjectWriter::new(&mut out);
        let fields = (|| {
            w.member("schemas", &[LIST_RESPONSE])?;
            w.member("totalResults", &total)?;
            w.member("itemsPerPage", &resources.len())?;
            match &position {
                ListPosition::StartIndex(i) => w.member("startIndex", i)?,
                ListPosition::NextCursor(Some(c)) => w.member("nextCursor", c)?,
                ListPosition::NextCursor(None) => {}
            }
            Ok::<(), serde_json::Error>(())
        })();
        fields.expect("numbers and strings serialize");
        let items = w.key("Resources");
        items.push(b'[');
        for (i, res) in resources.into_iter().enumerate() {
            if i > 0 {
                items.push(b',');
            }
            self.write_resource(items, connection_id, res, proj);
        }
        items.push(b']');
        w.finish();
        out
    }
}

/// Puts `schemas`, `id` and `externalId` first and `meta` last, as the RFC's examples do.
fn canonical_order(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(rollcall_scim::resource::canonical_key_order(m)),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_values_serialize_as_the_strings_they_stand_for() {
        for us in [
            0,
            1,
            999_999,
            1_000_000,
            1_765_000_000_123_456,
            1_765_000_000_000_000,
            -1,
            i64::MAX,
            i64::MIN,
        ] {
            let written = serde_json::to_value(Stamp(us)).unwrap();
            assert_eq!(written, Value::String(crate::service::rfc3339(us)), "{us}");
        }
        for v in [0, 1, 42, i64::MAX] {
            assert_eq!(
                serde_json::to_value(ETag(v)).unwrap(),
                Value::String(crate::response::etag(v))
            );
        }
        let at = Location {
            public_url: "https://scim.example.com",
            connection_id: "c1",
            kind: ResourceKind::Group,
            id: "g\"1",
        };
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            r#""https://scim.example.com/scim/v2/c1/Groups/g\"1""#
        );
    }
}
