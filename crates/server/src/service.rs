//! The SCIM operations, independent of HTTP: the handlers and `/Bulk` both call these.

use crate::response::{ApiError, ApiResult};
use rollcall_scim::dialect::Dialect;
use rollcall_scim::filter::{Filter, FilterLimits};
use rollcall_scim::limits::{Excess, ResourceLimits};
use rollcall_scim::patch::{MemberChange, MemberRef, PatchRequest, apply_patch_as};
use rollcall_scim::policy::AttributePolicy;
use rollcall_scim::projection::Projection;
use rollcall_scim::redact::SecretAttributes;
use rollcall_scim::resource::{prepare, strip_write_only};
use rollcall_scim::schema::{ResourceType, SchemaRegistry};
use rollcall_scim::sort::SortOrder;
use rollcall_scim::{ScimError, ScimResult};
use rollcall_store::index::IndexFields;
use rollcall_store::{
    ConnectionPolicy, ListQuery, Page, Paging, ResourceKind, Sort, Store, StoredResource, WriteContext,
};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A page of resources found by a list or search, with how to show them.
pub struct Listed {
    pub total: i64,
    pub position: ListPosition,
    pub resources: Vec<StoredResource>,
    pub projection: Projection,
}

/// How a ListResponse says where its page is: `startIndex`, or the cursor of the next page.
pub enum ListPosition {
    StartIndex(i64),
    NextCursor(Option<String>),
}

/// The endpoint of a resource type under a connection's base URL.
pub fn endpoint_of(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "Users",
        ResourceKind::Group => "Groups",
    }
}

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Limits and addresses of the SCIM API.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// Public base URL of the service, without a trailing slash (e.g. `https://id.example.com`).
    pub public_url: String,
    pub default_page_size: i64,
    pub max_page_size: i64,
    pub max_body_bytes: usize,
    pub bulk_max_operations: usize,
    pub filter_limits: FilterLimits,
    /// Bounds on one resource and one PATCH (values per attribute, string and document bytes,
    /// operations per PATCH), checked on every create, replace and patch.
    pub resource_limits: ResourceLimits,
    /// The most bytes of stored documents one list page reads (`ListQuery::max_bytes`): a page
    /// that would be larger ends early, with fewer resources than `count` asked for.
    pub max_list_bytes: usize,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            public_url: "http://127.0.0.1:8080".into(),
            default_page_size: 100,
            max_page_size: 1000,
            max_body_bytes: 1024 * 1024,
            bulk_max_operations: 1000,
            filter_limits: FilterLimits::default(),
            resource_limits: ResourceLimits::default(),
            max_list_bytes: ListQuery::DEFAULT_MAX_BYTES,
        }
    }
}

/// The SCIM service: store, schemas and configuration. Cheap to clone (one reference count): axum
/// clones it for every request, for each handler that takes it as state. It holds no state of the
/// node that serves it (caches, rate limits, the request log's buffer: [`crate::node::Node`]).
#[derive(Clone)]
pub struct Scim(Arc<ScimParts>);

/// What a [`Scim`] holds; its fields are read through `Scim` (`scim.store`, `scim.config`, …).
#[derive(Clone)]
pub struct ScimParts {
    pub store: Arc<dyn Store>,
    pub registry: Arc<SchemaRegistry>,
    pub config: Arc<ScimConfig>,
    /// Per resource type (User, Group): whether the default projection leaves stored documents as
    /// they are (no `returned: never/request` attributes that are kept in storage), so rendering can
    /// skip it.
    pub(crate) default_projection_is_identity: [bool; 2],
    /// Attributes never returned (such as `password`): their values are kept out of error details
    /// and the request log.
    pub secrets: Arc<SecretAttributes>,
}

impl Scim {
    /// Assembles the service.
    pub fn new(store: Arc<dyn Store>, registry: Arc<SchemaRegistry>, config: ScimConfig) -> Scim {
        let identity = |kind: ResourceKind| {
            let rt = registry
                .resource_type(kind.as_str())
                .expect("standard resource types are registered");
            registry
                .schema(&rt.schema)
                .into_iter()
                .chain(registry.extensions(rt))
                .flat_map(|s| s.attributes.iter())
                .all(|a| {
                    a.mutability == rollcall_scim::schema::Mutability::WriteOnly
                        || !matches!(
                            a.returned,
                            rollcall_scim::schema::Returned::Never | rollcall_scim::schema::Returned::Request
                        )
                })
        };
        let default_projection_is_identity = [identity(ResourceKind::User), identity(ResourceKind::Group)];
        let secrets = Arc::new(SecretAttributes::of(&registry));
        Scim(Arc::new(ScimParts {
            store,
            registry,
            config: Arc::new(config),
            default_projection_is_identity,
            secrets,
        }))
    }
}

impl std::ops::Deref for Scim {
    type Target = ScimParts;
    fn deref(&self) -> &ScimParts {
        &self.0
    }
}

/// List parameters as they arrive (query string or `/.search` body).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    pub cursor: Option<String>,
}

impl ListParams {
    /// From decoded query pairs; parameter names are matched case-insensitively.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> ListParams {
        let mut p = ListParams::default();
        for (k, v) in pairs {
            let slot = match k.to_ascii_lowercase().as_str() {
                "filter" => &mut p.filter,
                "sortby" => &mut p.sort_by,
                "sortorder" => &mut p.sort_order,
                "startindex" => &mut p.start_index,
                "count" => &mut p.count,
                "attributes" => &mut p.attributes,
                "excludedattributes" => &mut p.excluded_attributes,
                "cursor" => &mut p.cursor,
                _ => continue,
            };
            *slot = Some(v);
        }
        p
    }

    /// From a `POST /.search` body (RFC 7644 §3.4.3).
    pub fn from_search_body(body: &Value) -> ScimResult<ListParams> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("the search request must be a JSON object"))?;
        let mut p = ListParams::default();
        for (k, v) in obj {
            let text = |v: &Value| -> Option<String> {
                match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
                    _ => None,
                }
            };
            let slot = match k.to_ascii_lowercase().as_str() {
                "filter" => &mut p.filter,
                "sortby" => &mut p.sort_by,
                "sortorder" => &mut p.sort_order,
                "startindex" => &mut p.start_index,
                "count" => &mut p.count,
                "attributes" => &mut p.attributes,
                "excludedattributes" => &mut p.excluded_attributes,
                "cursor" => &mut p.cursor,
                _ => continue,
            };
            *slot = text(v);
        }
        Ok(p)
    }

    pub fn projection(&self) -> ScimResult<Projection> {
        Projection::parse(self.attributes.as_deref(), self.excluded_attributes.as_deref())
    }
}

/// RFC 3339 time of microseconds since the Unix epoch (the one formatter, shared with the events).
pub use rollcall_webhooks::event::rfc3339;

/// Cursors name the last resource of their page by its id, which the tenant already has: nothing
/// about other tenants (no row number, no count of writes) is in them. The store finds that resource
/// within the connection and resource type listed, so a cursor of another list is refused.
const CURSOR_PREFIX: &str = "c2.";

fn encode_cursor(after_id: &str) -> String {
    use base64::Engine;
    // Resource ids are UUIDs: 16 bytes in the cursor.
    let bytes =
        uuid::Uuid::parse_str(after_id).map_or_else(|_| after_id.as_bytes().to_vec(), |u| u.as_bytes().to_vec());
    format!(
        "{CURSOR_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn decode_cursor(c: &str) -> ScimResult<String> {
    use base64::Engine;
    c.strip_prefix(CURSOR_PREFIX)
        .and_then(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b).ok())
        .and_then(|bytes| uuid::Uuid::from_slice(&bytes).ok())
        .map(|u| u.to_string())
        .ok_or_else(|| ScimError::invalid_cursor(format!("\"{c}\" is not a cursor this service issued")))
}

fn parse_int(name: &str, v: Option<&str>) -> ScimResult<Option<i64>> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not \"{s}\""))),
    }
}

/// Takes the `members` out of a prepared group document as member references.
fn take_members(doc: &mut Map<String, Value>) -> Vec<MemberRef> {
    let Some(Value::Array(items)) = doc.remove("members") else {
        return Vec::new();
    };
    let mut out: Vec<MemberRef> = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for i in items {
        let Some(value) = i.get("value").and_then(Value::as_str) else {
            continue;
        };
        if !seen.insert(value.to_string()) {
            continue;
        }
        out.push(MemberRef {
            value: value.to_string(),
            kind: i.get("type").and_then(Value::as_str).map(str::to_string),
            display: i.get("display").and_then(Value::as_str).map(str::to_string),
        });
    }
    out
}

impl Scim {
    pub fn rt(&self, kind: ResourceKind) -> &ResourceType {
        self.registry
            .resource_type(kind.as_str())
            .expect("standard resource types are registered")
    }

    /// The SCIM base URL of a connection.
    pub fn base_url(&self, connection_id: &str) -> String {
        format!("{}/scim/v2/{connection_id}", self.config.public_url)
    }

    pub fn location(&self, connection_id: &str, kind: ResourceKind, id: &str) -> String {
        format!("{}/{}/{id}", self.base_url(connection_id), endpoint_of(kind))
    }

    /// Whether the projection needs membership read (group members, or a user's groups).
    pub fn wants_related(&self, kind: ResourceKind, proj: &Projection) -> bool {
        let attr = match kind {
            ResourceKind::Group => "members",
            ResourceKind::User => "groups",
        };
        proj.wants(&self.registry, self.rt(kind), attr)
    }

    /// The connection's attribute policy for user writes; `None` when it has none.
    fn write_policy(&self, kind: ResourceKind, policy: &ConnectionPolicy) -> ScimResult<Option<Arc<AttributePolicy>>> {
        if kind != ResourceKind::User || (policy.required_attributes.is_empty() && policy.synced_attributes.is_none()) {
            return Ok(None);
        }
        crate::admin::attribute_policy(&self.registry, policy)
            .map(|p| Some(Arc::new(p)))
            .map_err(|e| ScimError::internal(format!("the connection's attribute policy is not valid: {e}")))
    }

    /// The document a create of `body` would store (without `id`, and for groups without
    /// members), to compare with a stored one: directory syncs write only what differs.
    pub fn canonical(&self, kind: ResourceKind, policy: &ConnectionPolicy, body: &Value) -> ApiResult<Value> {
        let rt = self.rt(kind);
        let mut doc = prepare(&self.registry, rt, body, None)?;
        doc.remove("members");
        strip_write_only(&self.registry, rt, &mut doc);
        if let Some(p) = self.write_policy(kind, policy)? {
            p.keep_synced(&mut doc);
        }
        Ok(Value::Object(doc))
    }

    /// What a create of `body` stores: the document (checked against the schema, the
    /// connection's attribute policy and the limits) and a group's initial members.
    fn prepare_create(
        &self,
        policy: &ConnectionPolicy,
        kind: ResourceKind,
        body: &Value,
    ) -> ApiResult<(Value, Vec<MemberRef>)> {
        let rt = self.rt(kind);
        let mut doc = prepare(&self.registry, rt, body, None)?;
        let members = if kind == ResourceKind::Group {
            take_members(&mut doc)
        } else {
            Vec::new()
        };
        strip_write_only(&self.registry, rt, &mut doc);
        if let Some(p) = self.write_policy(kind, policy)? {
            p.keep_synced(&mut doc);
            p.check_required(&Value::Object(doc.clone()))?;
        }
        let doc = Value::Object(doc);
        self.config.resource_limits.check_resource(&doc, &Excess::default())?;
        IndexFields::of(kind, &doc).check_lengths()?;
        Ok((doc, members))
    }

    pub async fn create(
        &self,
        ctx: &WriteContext,
        policy: &ConnectionPolicy,
        kind: ResourceKind,
        body: &Value,
    ) -> ApiResult<StoredResource> {
        let (doc, members) = self.prepare_create(policy, kind, body)?;
        let mut res = self.store.create_resource(ctx, kind, doc, members).await?;
        if kind == ResourceKind::Group {
            res = self
                .store
                .get_resource(&ctx.connection_id, kind, &res.id, true)
                .await?
                .unwrap_or(res);
        }
        Ok(res)
    }

    /// Creates resources of one kind in one transaction (the creates of a `/Bulk` request), each
    /// checked as [`Scim::create`] checks it. Every body gets its own answer, in order: when they
    /// are all valid they are written together, all or none; when that fails (a `userName` taken,
    /// say) they are written one at a time, so that each failure is that body's own.
    pub async fn create_many(
        &self,
        ctx: &WriteContext,
        policy: &ConnectionPolicy,
        kind: ResourceKind,
        bodies: &[Value],
    ) -> Vec<ApiResult<StoredResource>> {
        let prepared: Vec<ApiResult<(Value, Vec<MemberRef>)>> =
            bodies.iter().map(|b| self.prepare_create(policy, kind, b)).collect();
        let valid: Vec<(Value, Vec<MemberRef>)> = prepared.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        if bodies.len() > 1
            && valid.len() == bodies.len()
            && let Ok(created) = self.store.create_resources(ctx, kind, valid).await
        {
            return created.into_iter().map(Ok).collect();
        }
        let mut out = Vec::with_capacity(bodies.len());
        for p in prepared {
            out.push(match p {
                Ok((doc, members)) => self
                    .store
                    .create_resource(ctx, kind, doc, members)
                    .await
                    .map_err(Into::into),
                Err(e) => Err(e),
            });
        }
        out
    }

    pub async fn get(
        &self,
        connection_id: &str,
        kind: ResourceKind,
        id: &str,
        with_related: bool,
    ) -> ApiResult<StoredResource> {
        self.store
            .get_resource(connection_id, kind, id, with_related)
            .await?
            .ok_or_else(|| not_found(kind, id))
    }

    pub async fn replace(
        &self,
        ctx: &WriteContext,
        policy: &ConnectionPolicy,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<i64>,
    ) -> ApiResult<StoredResource> {
        let registry = self.registry.clone();
        let body = body.clone();
        let policy = self.write_policy(kind, policy)?;
        let limits = self.config.resource_limits;
        let mutation: rollcall_store::Mutation = Arc::new(move |doc: &mut Value| -> ScimResult<Vec<MemberChange>> {
            let rt = registry.resource_type(kind.as_str()).expect("registered");
            let tolerated = limits.excess_of(doc);
            let existing = doc.as_object().cloned().unwrap_or_default();
            let mut new = prepare(&registry, rt, &body, Some(&existing))?;
            let changes = if kind == ResourceKind::Group {
                vec![MemberChange::ReplaceAll(take_members(&mut new))]
            } else {
                Vec::new()
            };
            strip_write_only(&registry, rt, &mut new);
            if let Some(p) = &policy {
                p.keep_synced(&mut new);
            }
            *doc = Value::Object(new);
            if let Some(p) = &policy {
                p.check_required(doc)?;
            }
            limits.check_resource(doc, &tolerated)?;
            IndexFields::of(kind, doc).check_lengths()?;
            Ok(changes)
        });
        self.store
            .update_resource(ctx, kind, id, if_match, mutation)
            .await?
            .ok_or_else(|| not_found(kind, id))
    }

    /// PATCH: the operations applied atomically, with `dialect` choosing the reading of requests
    /// identity providers and the RFC read differently (see `Caller::dialect`).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        ctx: &WriteContext,
        policy: &ConnectionPolicy,
        dialect: Dialect,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<i64>,
    ) -> ApiResult<StoredResource> {
        self.patch_unscrubbed(ctx, policy, dialect, kind, id, body, if_match)
            .await
            .map_err(|e| {
                // Error details quote paths; values in paths on secret attributes are removed.
                let paths = body
                    .get("Operations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|op| op.as_object())
                    .flat_map(|op| op.iter().filter(|(k, _)| k.eq_ignore_ascii_case("path")))
                    .filter_map(|(_, p)| p.as_str());
                self.scrub_error(e, paths)
            })
    }

    /// An error whose detail no longer holds the values that `texts` (filters or PATCH paths)
    /// compare against secret attributes.
    pub fn scrub_error<'t>(&self, e: ApiError, texts: impl IntoIterator<Item = &'t str>) -> ApiError {
        let literals: Vec<String> = texts.into_iter().flat_map(|t| self.secrets.literals(t)).collect();
        if literals.is_empty() {
            return e;
        }
        let mut e = e.0;
        e.detail = SecretAttributes::scrub(&e.detail, &literals).into_owned();
        ApiError(e)
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch_unscrubbed(
        &self,
        ctx: &WriteContext,
        policy: &ConnectionPolicy,
        dialect: Dialect,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<i64>,
    ) -> ApiResult<StoredResource> {
        let limits = self.config.resource_limits;
        let request = PatchRequest::parse_with(body, limits.max_patch_operations)?;
        let registry = self.registry.clone();
        let policy = self.write_policy(kind, policy)?;
        let mutation: rollcall_store::Mutation = Arc::new(move |doc: &mut Value| -> ScimResult<Vec<MemberChange>> {
            let rt = registry.resource_type(kind.as_str()).expect("registered");
            let before = policy.as_ref().map(|_| doc.clone());
            let tolerated = limits.excess_of(doc);
            let outcome = apply_patch_as(&registry, rt, doc, &request, limits.max_values_per_attribute, dialect)?;
            if let Value::Object(m) = doc {
                strip_write_only(&registry, rt, m);
                if let Some(p) = &policy {
                    p.keep_synced(m);
                }
            }
            if let (Some(p), Some(before)) = (&policy, &before) {
                p.check_not_removed(before, doc)?;
            }
            if outcome.document_changed {
                limits.check_resource(doc, &tolerated)?;
            }
            IndexFields::of(kind, doc).check_lengths()?;
            Ok(outcome.members)
        });
        self.store
            .update_resource(ctx, kind, id, if_match, mutation)
            .await?
            .ok_or_else(|| not_found(kind, id))
    }

    pub async fn delete(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> ApiResult<()> {
        if self.store.delete_resource(ctx, kind, id, if_match).await? {
            Ok(())
        } else {
            Err(not_found(kind, id))
        }
    }

    /// Runs a list/search and renders the ListResponse.
    pub async fn list(&self, connection_id: &str, kind: ResourceKind, params: &ListParams) -> ApiResult<Listed> {
        self.list_unscrubbed(connection_id, kind, params)
            .await
            .map_err(|e| self.scrub_error(e, params.filter.as_deref()))
    }

    async fn list_unscrubbed(&self, connection_id: &str, kind: ResourceKind, params: &ListParams) -> ApiResult<Listed> {
        let rt = self.rt(kind);
        let proj = params.projection()?;
        let filter = match params.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(f) => {
                let f = Filter::parse_with(f, &self.config.filter_limits)?;
                f.validate(&self.registry, rt).map_err(|e| {
                    if e.scim_type == Some(rollcall_scim::ScimType::InvalidFilter) {
                        e
                    } else {
                        ScimError::invalid_filter(e.detail)
                    }
                })?;
                Some(f)
            }
        };
        let sort = match params.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => {
                let path = rollcall_scim::path::AttrPath::parse(s)
                    .map_err(|e| ScimError::invalid_value(format!("sortBy: {}", e.detail)))?;
                if self.registry.resolve(rt, &path).is_none() {
                    return Err(ScimError::invalid_value(format!(
                        "sortBy: \"{s}\" is not an attribute of {}",
                        rt.name
                    ))
                    .into());
                }
                let order = match params.sort_order.as_deref() {
                    None | Some("") => SortOrder::Ascending,
                    Some(o) => SortOrder::parse(o).ok_or_else(|| {
                        ScimError::invalid_value(format!(
                            "sortOrder must be \"ascending\" or \"descending\", not \"{o}\""
                        ))
                    })?,
                };
                Some(Sort { path, order })
            }
        };
        let count = parse_int("count", params.count.as_deref())?
            .unwrap_or(self.config.default_page_size)
            .clamp(0, self.config.max_page_size);
        let start_index = parse_int("startIndex", params.start_index.as_deref())?
            .unwrap_or(1)
            .max(1);
        let paging = match &params.cursor {
            Some(c) => {
                if sort.is_some() {
                    return Err(ScimError::invalid_value("cursor paging cannot be combined with sortBy").into());
                }
                let after = if c.trim().is_empty() {
                    None
                } else {
                    Some(decode_cursor(c.trim())?)
                };
                Paging::Cursor { after }
            }
            None => Paging::Index { start_index },
        };
        let query = ListQuery {
            filter,
            sort,
            paging: paging.clone(),
            count,
            with_members: self.wants_related(kind, &proj),
            max_bytes: self.config.max_list_bytes,
        };
        let Page {
            total,
            resources,
            next_after,
        } = self.store.list_resources(connection_id, kind, &query).await?;
        let position = match paging {
            Paging::Index { start_index } => ListPosition::StartIndex(start_index),
            Paging::Cursor { .. } => ListPosition::NextCursor(next_after.as_deref().map(encode_cursor)),
        };
        Ok(Listed {
            total,
            position,
            resources,
            projection: proj,
        })
    }
}

pub fn not_found(kind: ResourceKind, id: &str) -> ApiError {
    ApiError(ScimError::not_found(format!("{} \"{id}\" not found", kind.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let id = uuid::Uuid::new_v4().to_string();
        let cursor = encode_cursor(&id);
        assert_eq!(decode_cursor(&cursor).unwrap(), id);
        assert!(!cursor.contains(&id), "the cursor is opaque: {cursor}");
        assert_eq!(
            decode_cursor("nope").unwrap_err().scim_type,
            Some(rollcall_scim::ScimType::InvalidCursor)
        );
        // The old form (a row number) is refused.
        assert!(decode_cursor("c1.3039").is_err());
        assert!(decode_cursor("c2.-5").is_err());
        assert!(decode_cursor("c2.AAAA").is_err());
    }

    #[test]
    fn list_params_are_case_insensitive() {
        let p = ListParams::from_pairs(vec![
            ("STARTINDEX".into(), "3".into()),
            ("Filter".into(), "userName eq \"a b\"".into()),
        ]);
        assert_eq!(p.start_index.as_deref(), Some("3"));
        assert_eq!(p.filter.as_deref(), Some("userName eq \"a b\""));
    }
}
