//! SCIM PATCH (RFC 7644 §3.5.2): parsing a `PatchOp` request and applying it to a resource document.
//!
//! [`PatchRequest::from_json`] reads the request body; [`apply_patch`] applies every operation to a
//! working copy of the document, checks the result with [`check_document`], and only then swaps it in,
//! so a request either applies completely or not at all.
//!
//! Group membership is not part of the documents Rollcall stores (members are rows), so operations on
//! a Group's `members` never touch the document: they come back as [`MemberChange`]s, in operation
//! order, for the store to apply in the same transaction.
//!
//! Besides the RFC, the dialects real identity providers send are accepted (see [`crate::dialect`]):
//! capitalised op names (`"Replace"`), path-less values whose keys are dotted or URN-qualified paths,
//! `replace` on a value path that matches nothing (the element is created), `remove` on `members`
//! with a `value` list, `"$ref": null` in members, echoed `id`/`meta`, and `"True"`/`"False"` strings.
//!
//! Error details name the 1-based operation number and what it was, e.g.
//! `operation 2 (replace "emails[type eq "work"].value"): ...`.

use crate::dialect::{Conflict, Dialect, Reading};
use crate::error::{ScimError, ScimResult};
use crate::filter::{CompValue, CompareOp, Filter};
use crate::limits::{ResourceLimits, too_many_values};
use crate::path::{AttrPath, PatchPath};
use crate::resource::{check_document, coerce_value, is_unassigned};
use crate::schema::{AttributeDef, AttributeType, GROUP, Mutability, ResourceType, Schema, SchemaRegistry};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The URN every PATCH request body carries in `schemas`.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    Add,
    Replace,
    Remove,
}

impl PatchOpKind {
    /// The op name as the RFC writes it (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Replace => "replace",
            PatchOpKind::Remove => "remove",
        }
    }

    /// Parses an op name, ignoring case (Entra ID sends `"Add"`, `"Replace"`, `"Remove"`).
    pub fn parse(s: &str) -> Option<PatchOpKind> {
        [PatchOpKind::Add, PatchOpKind::Replace, PatchOpKind::Remove]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: PatchOpKind,
    /// The target path, as written; `None` targets the resource itself.
    pub path: Option<String>,
    /// The value; `Some(Value::Null)` when the client sent an explicit `null`.
    pub value: Option<Value>,
}

/// A parsed PATCH request body.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Reads a `PatchOp` request body.
    ///
    /// Member names (`schemas`, `Operations`, `op`, `path`, `value`) and op names are matched
    /// ignoring case. `schemas`, when present, must contain [`PATCH_OP`]. `add` and `replace` need a
    /// `value` (`invalidSyntax`); `remove` needs a `path` (`noTarget`). An empty `Operations` array is
    /// a valid request that changes nothing.
    ///
    /// ```
    /// use rollcall_scim::patch::{PatchOpKind, PatchRequest};
    /// use serde_json::json;
    /// let req = PatchRequest::from_json(&json!({
    ///     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    ///     "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
    /// })).unwrap();
    /// assert_eq!(req.operations[0].op, PatchOpKind::Replace);
    /// let err = PatchRequest::from_json(&json!({"Operations": [{"op": "move", "path": "x"}]})).unwrap_err();
    /// assert!(err.detail.contains("\"move\""));
    /// ```
    pub fn from_json(body: &Value) -> ScimResult<PatchRequest> {
        Self::parse_with(body, usize::MAX)
    }

    /// [`from_json`](Self::from_json), refusing more than `max_operations` operations (413, see
    /// [`ResourceLimits::check_patch_operations`]) before any operation is read.
    pub fn parse_with(body: &Value, max_operations: usize) -> ScimResult<PatchRequest> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a PATCH request body must be a JSON object"))?;
        if let Some(schemas) = get_ci(obj, "schemas") {
            let ok = schemas.as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP)))
            });
            if !ok {
                return Err(ScimError::invalid_syntax(format!(
                    "\"schemas\" of a PATCH request must be an array containing \"{PATCH_OP}\""
                )));
            }
        }
        let ops = get_ci(obj, "Operations")
            .ok_or_else(|| ScimError::invalid_syntax("a PATCH request body needs an \"Operations\" array"))?
            .as_array()
            .ok_or_else(|| ScimError::invalid_syntax("\"Operations\" must be an array of operations"))?;
        ResourceLimits {
            max_patch_operations: max_operations,
            ..ResourceLimits::default()
        }
        .check_patch_operations(ops.len())?;
        let mut operations = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            operations.push(parse_operation(i + 1, op)?);
        }
        Ok(PatchRequest { operations })
    }
}

fn parse_operation(n: usize, op: &Value) -> ScimResult<PatchOperation> {
    let o = op
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax(format!("operation {n}: an operation must be a JSON object")))?;
    let name = match get_ci(o, "op") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {n}: \"op\" must be a string"
            )));
        }
        None => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {n}: \"op\" is missing; it must be add, replace or remove"
            )));
        }
    };
    let kind = PatchOpKind::parse(name).ok_or_else(|| {
        ScimError::invalid_syntax(format!(
            "operation {n}: unknown op \"{name}\"; it must be add, replace or remove"
        ))
    })?;
    let path = match get_ci(o, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {n} ({}): \"path\" must be a string",
                kind.as_str()
            )));
        }
    };
    let value = get_ci(o, "value").cloned();
    let parsed = PatchOperation { op: kind, path, value };
    match kind {
        PatchOpKind::Add | PatchOpKind::Replace if parsed.value.is_none() => Err(ScimError::invalid_syntax(format!(
            "{}: \"value\" is required for {}",
            op_label(n, &parsed),
            kind.as_str()
        ))),
        PatchOpKind::Remove if parsed.path.is_none() => Err(ScimError::no_target(format!(
            "{}: remove needs a \"path\" naming what to remove",
            op_label(n, &parsed)
        ))),
        _ => Ok(parsed),
    }
}

/// A reference to a group member, as given in an `add` or `replace` of `members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    /// The member's `id`.
    pub value: String,
    /// `"User"` or `"Group"`, from the member's `type`, when given.
    pub kind: Option<String>,
    /// The member's `display`, when given.
    pub display: Option<String>,
}

/// A change to a Group's membership, produced instead of editing the document.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    /// Add these members (adding an existing member is a no-op for the store).
    Add(Vec<MemberRef>),
    /// Remove the members with these ids.
    Remove(Vec<String>),
    /// Remove the members an element filter matches, when it is not just `value eq "id"` terms
    /// joined by `or`; paths in the filter are relative to a member (`type eq "Group"`).
    RemoveWhere(Filter),
    /// Replace the whole membership; `ReplaceAll(vec![])` empties the group.
    ReplaceAll(Vec<MemberRef>),
}

/// What a PATCH did besides editing the document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchOutcome {
    /// Membership changes, in operation order (Groups only).
    pub members: Vec<MemberChange>,
    /// True when the document differs from what it was before the patch.
    pub document_changed: bool,
}

/// Applies all operations atomically: on any error `doc` is left exactly as it was.
///
/// `doc` is the stored document (canonical attribute names, extension attributes under their URN,
/// and for Groups no `members`). Every value written is normalised with [`coerce_value`], the result
/// is checked with [`check_document`], and `schemas` is kept in step with the extensions the
/// document has attributes of.
///
/// Mutability: a readOnly attribute named by an explicit `path` is a `mutability` error, while
/// readOnly attributes inside a path-less `value` (such as an echoed `id`) are ignored. An immutable
/// attribute may be given a value only while it has none. Removing a required attribute (or
/// clearing it with `null` or `""`) is a `mutability` error: the operation is incompatible with the
/// attribute's characteristics (RFC 7644 §3.5.2), and reporting it on the operation that did it is
/// clearer than the `invalidValue` the final document check would give.
///
/// ```
/// use rollcall_scim::patch::{apply_patch, PatchRequest};
/// use rollcall_scim::schema::SchemaRegistry;
/// use serde_json::json;
///
/// let reg = SchemaRegistry::standard();
/// let rt = reg.resource_type("User").unwrap();
/// let mut doc = json!({
///     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
///     "id": "2819c223", "userName": "bjensen", "active": true
/// });
/// let req = PatchRequest::from_json(&json!({
///     "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
///     "Operations": [
///         {"op": "Replace", "path": "active", "value": "False"},
///         {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "bjensen@example.com"},
///         {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
///          "value": "boss-id"}
///     ]
/// })).unwrap();
/// let outcome = apply_patch(&reg, rt, &mut doc, &req).unwrap();
/// assert!(outcome.document_changed);
/// assert_eq!(doc["active"], false);
/// assert_eq!(doc["emails"], json!([{"type": "work", "value": "bjensen@example.com"}]));
/// let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// assert_eq!(doc[ent]["manager"], json!({"value": "boss-id"}));
/// assert_eq!(doc["schemas"][1], ent);
///
/// // A failing operation leaves the document untouched.
/// let before = doc.clone();
/// let bad = PatchRequest::from_json(&json!({"Operations": [
///     {"op": "replace", "path": "displayName", "value": "Babs"},
///     {"op": "remove", "path": "userName"}
/// ]})).unwrap();
/// let err = apply_patch(&reg, rt, &mut doc, &bad).unwrap_err();
/// assert!(err.detail.starts_with("operation 2 (remove \"userName\")"));
/// assert_eq!(doc, before);
/// ```
pub fn apply_patch(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    doc: &mut Value,
    request: &PatchRequest,
) -> ScimResult<PatchOutcome> {
    apply_patch_with(registry, rt, doc, request, usize::MAX)
}

/// [`apply_patch`], refusing at once an operation that grows a multi-valued attribute beyond
/// `max_values` values (the bound [`ResourceLimits::max_values_per_attribute`]), so that later
/// operations never work on an attribute larger than the bound allows. An attribute already
/// larger (stored before the bound was lowered) may stay so, or shrink.
///
/// The work of one operation is proportional to its value and to the attribute it designates,
/// never to the whole document.
pub fn apply_patch_with(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    doc: &mut Value,
    request: &PatchRequest,
    max_values: usize,
) -> ScimResult<PatchOutcome> {
    apply_patch_as(registry, rt, doc, request, max_values, Dialect::default())
}

/// [`apply_patch_with`], reading the requests whose meaning identity providers and the RFC disagree
/// on ([`crate::dialect::Conflict`]) as `dialect` chooses: the calling identity provider's.
///
/// ```
/// use rollcall_scim::dialect::Dialect;
/// use rollcall_scim::patch::{apply_patch_as, PatchRequest};
/// use rollcall_scim::schema::SchemaRegistry;
/// use serde_json::json;
/// let reg = SchemaRegistry::standard();
/// let rt = reg.resource_type("User").unwrap();
/// let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "b"});
/// let req = PatchRequest::from_json(&json!({"Operations": [
///     {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@example.com"}
/// ]})).unwrap();
/// // Entra ID means "create the work e-mail"; the RFC answers noTarget, as Okta's connection does.
/// let mut d = doc.clone();
/// apply_patch_as(&reg, rt, &mut d, &req, usize::MAX, Dialect::of("entra")).unwrap();
/// assert_eq!(d["emails"][0]["value"], "b@example.com");
/// let mut d = doc.clone();
/// let e = apply_patch_as(&reg, rt, &mut d, &req, usize::MAX, Dialect::of("okta")).unwrap_err();
/// assert_eq!(e.scim_type, Some(rollcall_scim::ScimType::NoTarget));
/// assert_eq!(d, doc);
/// ```
pub fn apply_patch_as(
    registry: &SchemaRegistry,
    rt: &ResourceType,
    doc: &mut Value,
    request: &PatchRequest,
    max_values: usize,
    dialect: Dialect,
) -> ScimResult<PatchOutcome> {
    let work = doc
        .as_object_mut()
        .ok_or_else(|| ScimError::internal("the stored resource document is not a JSON object"))?;
    let mut ctx = Ctx {
        registry,
        rt,
        is_group: rt.schema.eq_ignore_ascii_case(GROUP),
        touched: Vec::new(),
        members: Vec::new(),
        saved: Vec::new(),
        max_values,
        dialect,
    };
    // The operations edit `doc` in place; `ctx.saved` holds the original value of every top-level
    // key before its first edit, so a failure restores exactly what was there (see `Ctx::save`).
    let original_order: Vec<String> = work.keys().cloned().collect();
    match ctx.run(work, request) {
        Ok(false) => {
            // Nothing changed in value, but a remove-then-add may have moved keys: put back the
            // original exactly, so an unchanged document is also unchanged as text.
            ctx.roll_back(work);
            let mut rebuilt = Map::with_capacity(work.len());
            for k in original_order {
                if let Some(v) = work.remove(&k) {
                    rebuilt.insert(k, v);
                }
            }
            rebuilt.append(work);
            *work = rebuilt;
            Ok(PatchOutcome {
                members: ctx.members,
                document_changed: false,
            })
        }
        Ok(document_changed) => {
            ctx.commit(work);
            Ok(PatchOutcome {
                members: ctx.members,
                document_changed,
            })
        }
        Err(e) => {
            ctx.roll_back(work);
            Err(e)
        }
    }
}

/// `operation 2 (replace "emails[type eq "work"].value")`, or `operation 1 (replace, no path)`.
fn op_label(n: usize, op: &PatchOperation) -> String {
    match &op.path {
        Some(p) => format!("operation {n} ({} \"{p}\")", op.op.as_str()),
        None => format!("operation {n} ({}, no path)", op.op.as_str()),
    }
}

fn in_operation(e: ScimError, n: usize, op: &PatchOperation) -> ScimError {
    ScimError {
        detail: format!("{}: {}", op_label(n, op), e.detail),
        ..e
    }
}

/// A member looked up ignoring the case of its name (SCIM names are case-insensitive).
fn get_ci<'v>(o: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    o.get(key)
        .or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// What one operation (or one key of a path-less value) designates.
struct Target<'r> {
    attr: &'r AttributeDef,
    /// The extension URN the attribute lives under, if any.
    ext: Option<&'r str>,
    filter: Option<Filter>,
    sub: Option<&'r AttributeDef>,
}

impl Target<'_> {
    fn name(&self) -> String {
        match self.sub {
            Some(s) => format!("{}.{}", self.attr.name, s.name),
            None => self.attr.name.clone(),
        }
    }
}

struct Ctx<'r> {
    registry: &'r SchemaRegistry,
    rt: &'r ResourceType,
    is_group: bool,
    /// Extension URNs whose attributes were written or removed: their `schemas` entry is re-derived.
    touched: Vec<&'r str>,
    members: Vec<MemberChange>,
    /// Undo log: each top-level key edited so far and its value before the first edit (`None` when
    /// it was absent).
    saved: Vec<(&'r str, Option<Value>)>,
    /// Most values an operation may leave in a multi-valued attribute it grew.
    max_values: usize,
    /// How requests that identity providers and the RFC read differently are read.
    dialect: Dialect,
}

/// `null`, or the empty string Entra ID sends to clear an attribute.
fn is_clear(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

fn required_error(name: &str) -> ScimError {
    ScimError::mutability(format!("attribute \"{name}\" is required and cannot be removed"))
}

fn immutable_error(name: &str) -> ScimError {
    ScimError::mutability(format!(
        "attribute \"{name}\" is immutable and already has a value, so it cannot be changed or removed"
    ))
}

impl<'r> Ctx<'r> {
    /// Applies the operations, re-derives `schemas` and checks the result. Answers whether the
    /// document changed.
    fn run(&mut self, work: &mut Map<String, Value>, request: &PatchRequest) -> ScimResult<bool> {
        for (i, op) in request.operations.iter().enumerate() {
            self.apply(work, op).map_err(|e| in_operation(e, i + 1, op))?;
        }
        self.sync_schemas(work);
        let changed = self.saved.iter().any(|(key, before)| {
            let now = work.get(*key).filter(|v| !is_unassigned(v));
            now != before.as_ref()
        });
        if changed {
            check_document(self.registry, self.rt, work).map_err(|e| ScimError {
                detail: format!("the patched resource would be invalid: {}", e.detail),
                ..e
            })?;
        }
        Ok(changed)
    }

    /// Records `key`'s current value before its first edit.
    ///
    /// Top-level keys are never removed while operations run: unassigning one leaves a placeholder
    /// (`null`, or `{}` for an extension container) that [`commit`](Self::commit) removes, so that
    /// [`roll_back`](Self::roll_back) can put every value back in its original position.
    fn save(&mut self, work: &Map<String, Value>, key: &'r str) {
        if !self.saved.iter().any(|(k, _)| *k == key) {
            self.saved.push((key, work.get(key).cloned()));
        }
    }

    fn commit(&mut self, work: &mut Map<String, Value>) {
        for (key, _) in self.saved.drain(..) {
            if work.get(key).is_some_and(is_unassigned) {
                work.shift_remove(key);
            }
        }
    }

    fn roll_back(&mut self, work: &mut Map<String, Value>) {
        for (key, before) in self.saved.drain(..).rev() {
            match before {
                Some(v) => {
                    work.insert(key.to_string(), v);
                }
                None => {
                    work.shift_remove(key);
                }
            }
        }
    }

    fn touch(&mut self, urn: &'r str) {
        if !self.touched.contains(&urn) {
            self.touched.push(urn);
        }
    }

    fn apply(&mut self, work: &mut Map<String, Value>, op: &PatchOperation) -> ScimResult<()> {
        let path = op.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
        let Some(path) = path else {
            if op.op == PatchOpKind::Remove {
                return Err(ScimError::no_target("remove needs a \"path\" naming what to remove"));
            }
            let value = op
                .value
                .as_ref()
                .ok_or_else(|| ScimError::invalid_syntax(format!("\"value\" is required for {}", op.op.as_str())))?;
            let obj = value.as_object().ok_or_else(|| {
                ScimError::invalid_syntax("without a \"path\", \"value\" must be an object of the attributes to set")
            })?;
            return self.apply_object(work, op.op, obj);
        };
        if op.op != PatchOpKind::Remove && op.value.is_none() {
            return Err(ScimError::invalid_syntax(format!(
                "\"value\" is required for {}",
                op.op.as_str()
            )));
        }
        let value = op.value.as_ref();
        // A bare extension URN designates the whole extension object. Checked before parsing,
        // because the path grammar would read the URN's last segment as an attribute name.
        if let Some(ext) = self.registry.extension_schema(self.rt, path) {
            return self.apply_extension(work, op.op, ext, value);
        }
        if path.eq_ignore_ascii_case(&self.rt.schema) {
            return match (op.op, value.and_then(Value::as_object)) {
                (PatchOpKind::Remove, _) => Err(ScimError::invalid_path(format!(
                    "\"{path}\" is the core schema of {}; it cannot be removed",
                    self.rt.name
                ))),
                (_, Some(obj)) => self.apply_object(work, op.op, obj),
                (_, None) => Err(ScimError::invalid_value(format!(
                    "the value for \"{path}\" must be an object of its attributes"
                ))),
            };
        }
        let parsed = PatchPath::parse(path).map_err(|e| ScimError::invalid_path(e.detail))?;
        let target = self.resolve(parsed.attr, parsed.filter, parsed.sub_attr)?;
        if self.is_members(&target) {
            return self.member_op(op.op, target, value);
        }
        self.apply_target(work, op.op, &target, value, false)
    }

    /// Applies each key of a path-less value (or of the core schema's URN) as if it were an
    /// operation of its own with that key as its path. readOnly attributes are ignored here.
    fn apply_object(
        &mut self,
        work: &mut Map<String, Value>,
        kind: PatchOpKind,
        obj: &Map<String, Value>,
    ) -> ScimResult<()> {
        for (key, value) in obj {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            if let Some(ext) = self.registry.extension_schema(self.rt, key) {
                self.apply_extension(work, kind, ext, Some(value))?;
                continue;
            }
            if key.eq_ignore_ascii_case(&self.rt.schema)
                && let Some(inner) = value.as_object()
            {
                self.apply_object(work, kind, inner)?;
                continue;
            }
            let path = AttrPath::parse(key)?;
            let target = self.resolve(path, None, None)?;
            if self.is_members(&target) {
                self.member_op(kind, target, Some(value))?;
                continue;
            }
            self.apply_target(work, kind, &target, Some(value), true)?;
        }
        Ok(())
    }

    fn resolve(
        &self,
        path: AttrPath,
        filter: Option<Filter>,
        sub_after_filter: Option<String>,
    ) -> ScimResult<Target<'r>> {
        let registry: &'r SchemaRegistry = self.registry;
        let rt = self.rt;
        if let Some(urn) = &path.schema
            && !registry.is_schema_of(rt, urn)
        {
            return Err(ScimError::invalid_path(format!(
                "\"{urn}\" is not a schema of {} (in path \"{path}\")",
                rt.name
            )));
        }
        let found = registry
            .find_attribute(rt, path.schema.as_deref(), &path.attr)
            .ok_or_else(|| match &path.schema {
                Some(urn) => ScimError::invalid_path(format!("\"{}\" is not an attribute of {urn}", path.attr)),
                None => ScimError::invalid_path(format!("\"{}\" is not an attribute of {}", path.attr, rt.name)),
            })?;
        let attr = found.attr;
        if path.sub_attr.is_some() && (filter.is_some() || sub_after_filter.is_some()) {
            return Err(ScimError::invalid_path(format!(
                "a value filter \"[...]\" must follow the attribute name, not its sub-attribute (\"{path}\")"
            )));
        }
        let sub = match path.sub_attr.or(sub_after_filter) {
            None => None,
            Some(s) => Some(attr.sub_attribute(&s).ok_or_else(|| {
                if attr.kind == AttributeType::Complex {
                    ScimError::invalid_path(format!("\"{s}\" is not a sub-attribute of \"{}\"", attr.name))
                } else {
                    ScimError::invalid_path(format!(
                        "\"{}\" has no sub-attributes, so \"{}.{s}\" is not a valid path",
                        attr.name, attr.name
                    ))
                }
            })?),
        };
        if let Some(f) = &filter {
            if !attr.multi_valued {
                return Err(ScimError::invalid_path(format!(
                    "a value filter \"[...]\" applies only to multi-valued attributes, and \"{}\" is single-valued",
                    attr.name
                )));
            }
            validate_element_filter(attr, f)?;
        }
        Ok(Target {
            attr,
            ext: found.extension_urn(),
            filter,
            sub,
        })
    }

    fn is_members(&self, t: &Target<'_>) -> bool {
        self.is_group && t.ext.is_none() && t.attr.name == "members"
    }

    /// `add`/`replace`/`remove` on a bare extension URN: the extension's attributes as a whole.
    /// `replace` sets the attributes given and leaves the others, as for a complex attribute.
    fn apply_extension(
        &mut self,
        work: &mut Map<String, Value>,
        kind: PatchOpKind,
        ext: &'r Schema,
        value: Option<&Value>,
    ) -> ScimResult<()> {
        let urn: &'r str = &ext.id;
        self.touch(urn);
        self.save(work, urn);
        let value = match value {
            Some(v) if kind != PatchOpKind::Remove && !is_clear(v) => v,
            _ => {
                if self
                    .rt
                    .schema_extensions
                    .iter()
                    .any(|e| e.required && e.schema.eq_ignore_ascii_case(urn))
                {
                    return Err(ScimError::mutability(format!(
                        "the extension {urn} is required for {} and cannot be removed",
                        self.rt.name
                    )));
                }
                if let Some(Value::Object(c)) = work.get(urn) {
                    for (k, v) in c {
                        let Some(a) = ext.attribute(k) else { continue };
                        if a.required {
                            return Err(required_error(&a.name));
                        }
                        if a.mutability == Mutability::Immutable && !is_unassigned(v) {
                            return Err(immutable_error(&a.name));
                        }
                    }
                }
                if let Some(c) = work.get_mut(urn) {
                    *c = Value::Object(Map::new());
                }
                return Ok(());
            }
        };
        let obj = value.as_object().ok_or_else(|| {
            ScimError::invalid_value(format!("the value for {urn} must be an object of its attributes"))
        })?;
        for (key, v) in obj {
            // Some clients repeat `schemas` inside the extension object (see `dialect`).
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            let mut path = AttrPath::parse(key)?;
            if path.schema.is_none() {
                path.schema = Some(urn.to_string());
            }
            let target = self.resolve(path, None, None)?;
            self.apply_target(work, kind, &target, Some(v), true)?;
        }
        Ok(())
    }

    /// One operation on one (non-member) attribute. `implicit` is true for keys of a path-less
    /// value, where readOnly attributes are skipped rather than refused.
    fn apply_target(
        &mut self,
        work: &mut Map<String, Value>,
        kind: PatchOpKind,
        t: &Target<'r>,
        value: Option<&Value>,
        implicit: bool,
    ) -> ScimResult<()> {
        let attr = t.attr;
        if attr.mutability == Mutability::ReadOnly || t.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly) {
            if implicit {
                return Ok(());
            }
            return Err(ScimError::mutability(format!(
                "attribute \"{}\" is readOnly and cannot be modified",
                t.name()
            )));
        }
        if let Some(urn) = t.ext {
            self.touch(urn);
        }
        self.save(work, t.ext.unwrap_or(attr.name.as_str()));
        let values = |work: &Map<String, Value>| {
            container(work, t.ext)
                .and_then(|c| c.get(&attr.name))
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        let values_before = if attr.multi_valued { values(work) } else { 0 };
        let before = if attr.mutability == Mutability::Immutable {
            container(work, t.ext)
                .and_then(|c| c.get(&attr.name))
                .filter(|v| !is_unassigned(v))
                .cloned()
        } else {
            None
        };
        match (kind, value) {
            (PatchOpKind::Remove, _) => remove(work, t, value, self.dialect)?,
            (_, Some(v)) => write(work, kind, t, v, self.dialect)?,
            (_, None) => {
                return Err(ScimError::invalid_syntax(format!(
                    "\"value\" is required for {}",
                    kind.as_str()
                )));
            }
        }
        if let Some(before) = before
            && container(work, t.ext).and_then(|c| c.get(&attr.name)) != Some(&before)
        {
            return Err(immutable_error(&attr.name));
        }
        if attr.multi_valued {
            let now = values(work);
            if now > self.max_values && now > values_before {
                let name = match t.ext {
                    Some(urn) => format!("{urn}:{}", attr.name),
                    None => attr.name.clone(),
                };
                return Err(too_many_values(&name, now, self.max_values));
            }
        }
        Ok(())
    }

    /// Operations on a Group's `members`: recorded as [`MemberChange`]s, the document is untouched.
    fn member_op(&mut self, kind: PatchOpKind, t: Target<'r>, value: Option<&Value>) -> ScimResult<()> {
        if let Some(sub) = t.sub {
            return Err(ScimError::invalid_path(format!(
                "member sub-attributes such as \"members.{}\" cannot be patched; add or remove whole members by \"value\"",
                sub.name
            )));
        }
        let value = value.filter(|v| !v.is_null());
        match kind {
            PatchOpKind::Add | PatchOpKind::Replace if t.filter.is_some() => Err(ScimError::invalid_path(format!(
                "{} on members takes the path \"members\" without a filter; to change members, remove them and add them again",
                kind.as_str()
            ))),
            PatchOpKind::Add => {
                let refs = value.map(parse_members).transpose()?.unwrap_or_default();
                if !refs.is_empty() {
                    self.members.push(MemberChange::Add(refs));
                }
                Ok(())
            }
            PatchOpKind::Replace => {
                let refs = value.map(parse_members).transpose()?.unwrap_or_default();
                self.members.push(MemberChange::ReplaceAll(refs));
                Ok(())
            }
            PatchOpKind::Remove => {
                if let Some(f) = t.filter {
                    let mut ids = Vec::new();
                    if member_ids_in_filter(&f, &mut ids) {
                        dedup_strings(&mut ids);
                        self.members.push(MemberChange::Remove(ids));
                    } else {
                        self.members.push(MemberChange::RemoveWhere(f));
                    }
                } else if let Some(v) = value {
                    // Entra ID: `remove` on `members` with a value list removes only those (see
                    // `dialect::READINGS`).
                    refuse_remove_with_value(self.dialect, "members")?;
                    let ids: Vec<String> = parse_members(v)?.into_iter().map(|m| m.value).collect();
                    if !ids.is_empty() {
                        self.members.push(MemberChange::Remove(ids));
                    }
                } else {
                    self.members.push(MemberChange::ReplaceAll(Vec::new()));
                }
                Ok(())
            }
        }
    }

    /// Keeps the extension URNs in `schemas` in step with the extension containers that were
    /// touched, dropping containers left empty.
    fn sync_schemas(&mut self, work: &mut Map<String, Value>) {
        for i in 0..self.touched.len() {
            let urn = self.touched[i];
            let present = work.get(urn).is_some_and(|v| !is_unassigned(v));
            let listed = match work.get("schemas") {
                Some(Value::Array(a)) => Some(
                    a.iter()
                        .position(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn))),
                ),
                _ => None,
            };
            match (present, listed) {
                (true, Some(Some(_))) | (false, Some(None)) | (false, None) => continue,
                _ => {}
            }
            self.save(work, "schemas");
            match listed {
                None => {
                    let list = vec![Value::String(self.rt.schema.clone()), Value::String(urn.to_string())];
                    work.insert("schemas".into(), Value::Array(list));
                }
                Some(None) => {
                    if let Some(Value::Array(a)) = work.get_mut("schemas") {
                        a.push(Value::String(urn.to_string()));
                    }
                }
                Some(Some(pos)) => {
                    if let Some(Value::Array(a)) = work.get_mut("schemas") {
                        a.remove(pos);
                    }
                }
            }
        }
    }
}

/// Checks that a value filter's paths name sub-attributes of the attribute it filters (`value` for
/// a multi-valued attribute of simple values).
fn validate_element_filter(attr: &AttributeDef, f: &Filter) -> ScimResult<()> {
    match f {
        Filter::Compare { path, .. } | Filter::Present { path } => {
            let known = path.schema.is_none()
                && path.sub_attr.is_none()
                && if attr.kind == AttributeType::Complex {
                    attr.sub_attribute(&path.attr).is_some()
                } else {
                    path.is("value")
                };
            if known {
                Ok(())
            } else {
                Err(ScimError::invalid_path(format!(
                    "\"{path}\" in the filter is not a sub-attribute of \"{}\"",
                    attr.name
                )))
            }
        }
        Filter::ValuePath { path, .. } => Err(ScimError::invalid_path(format!(
            "\"{path}[...]\" cannot be nested inside the value filter of \"{}\"",
            attr.name
        ))),
        Filter::Not(inner) => validate_element_filter(attr, inner),
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate_element_filter(attr, a)?;
            validate_element_filter(attr, b)
        }
    }
}

/// Collects the ids of a members filter made only of `value eq "id"` terms joined by `or`.
fn member_ids_in_filter(f: &Filter, ids: &mut Vec<String>) -> bool {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(id),
        } if path.is("value") && path.sub_attr.is_none() => {
            ids.push(id.clone());
            true
        }
        Filter::Or(a, b) => member_ids_in_filter(a, ids) && member_ids_in_filter(b, ids),
        _ => false,
    }
}

fn dedup_strings(v: &mut Vec<String>) {
    let mut seen = HashSet::with_capacity(v.len());
    v.retain(|s| seen.insert(s.clone()));
}

/// Reads member values: an array of (or a single) `{"value": "id", "type"?, "display"?, "$ref"?}`.
/// `$ref` (often `null`) is ignored; duplicates by `value` are collapsed, keeping the first.
fn parse_members(v: &Value) -> ScimResult<Vec<MemberRef>> {
    let items: &[Value] = match v {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    };
    let mut out: Vec<MemberRef> = Vec::with_capacity(items.len());
    let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
    for item in items {
        let Value::Object(o) = item else {
            return Err(ScimError::invalid_value(
                "each member must be an object such as {\"value\": \"<member id>\"}",
            ));
        };
        let mut member = MemberRef {
            value: String::new(),
            kind: None,
            display: None,
        };
        let mut has_value = false;
        for (k, x) in o {
            let text = |what: &str| -> ScimResult<Option<String>> {
                match x {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone())),
                    _ => Err(ScimError::invalid_value(format!(
                        "a member's \"{what}\" must be a string"
                    ))),
                }
            };
            if k.eq_ignore_ascii_case("value") {
                match text("value")? {
                    Some(s) if !s.trim().is_empty() => {
                        member.value = s;
                        has_value = true;
                    }
                    _ => {
                        return Err(ScimError::invalid_value(
                            "a member's \"value\" must be a non-empty id string",
                        ));
                    }
                }
            } else if k.eq_ignore_ascii_case("type") {
                member.kind = match text("type")? {
                    Some(s) if s.eq_ignore_ascii_case("user") => Some("User".into()),
                    Some(s) if s.eq_ignore_ascii_case("group") => Some("Group".into()),
                    Some(s) => {
                        return Err(ScimError::invalid_value(format!(
                            "a member's \"type\" must be \"User\" or \"Group\", not \"{s}\""
                        )));
                    }
                    None => None,
                };
            } else if k.eq_ignore_ascii_case("display") {
                member.display = text("display")?;
            } else if k.eq_ignore_ascii_case("$ref") {
                // Okta and Google send `"$ref": null`; the reference is derived from the id anyway.
            } else {
                return Err(ScimError::invalid_value(format!(
                    "\"{k}\" is not a sub-attribute of \"members\""
                )));
            }
        }
        if !has_value {
            return Err(ScimError::invalid_value(
                "each member needs a \"value\" holding the member's id",
            ));
        }
        if seen.insert(member.value.clone()) {
            out.push(member);
        }
    }
    Ok(out)
}

fn container<'m>(work: &'m Map<String, Value>, ext: Option<&str>) -> Option<&'m Map<String, Value>> {
    match ext {
        None => Some(work),
        Some(u) => work.get(u).and_then(Value::as_object),
    }
}

fn container_mut<'m>(work: &'m mut Map<String, Value>, ext: Option<&str>) -> &'m mut Map<String, Value> {
    match ext {
        None => work,
        Some(u) => object_entry(work, u),
    }
}

/// The object under `key`, created (or, if it held something else, reset) as needed.
fn object_entry<'m>(c: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = c.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// The array under `key`, created (or, if it held something else, reset) as needed.
fn array_entry<'m>(c: &'m mut Map<String, Value>, key: &str) -> &'m mut Vec<Value> {
    let slot = c.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

/// Unassigns `key` in `c`. At the top level of the document (`top`) the key stays, holding `null`,
/// until the patch commits (see `Ctx::save`).
fn unset(c: &mut Map<String, Value>, key: &str, top: bool) {
    if top {
        if let Some(v) = c.get_mut(key) {
            *v = Value::Null;
        }
    } else {
        c.shift_remove(key);
    }
}

/// Unassigns `key` when its value is unassigned (null, `[]`, `{}`).
fn drop_if_unassigned(c: &mut Map<String, Value>, key: &str, top: bool) {
    if c.get(key).is_some_and(is_unassigned) {
        unset(c, key, top);
    }
}

/// Coerces one element of a multi-valued attribute (or the value of a single-valued one).
fn coerce_one(attr: &AttributeDef, value: Value) -> ScimResult<Value> {
    match coerce_value(attr, value)? {
        Value::Array(mut a) if attr.multi_valued => match a.len() {
            0 => Ok(Value::Null),
            1 => Ok(a.pop().unwrap_or(Value::Null)),
            _ => Err(ScimError::invalid_value(format!(
                "expected a single value of \"{}\" here, not an array",
                attr.name
            ))),
        },
        v => Ok(v),
    }
}

/// Drops readOnly sub-attributes from a complex value (they are the server's to maintain).
fn strip_read_only(attr: &AttributeDef, v: &mut Value) {
    if let Value::Object(o) = v
        && attr.sub_attributes.iter().any(|s| s.mutability == Mutability::ReadOnly)
    {
        o.retain(|k, _| {
            attr.sub_attribute(k)
                .is_none_or(|s| s.mutability != Mutability::ReadOnly)
        });
    }
}

/// The coerced elements of a value for a multi-valued attribute, readOnly sub-attributes and empty
/// elements dropped.
fn coerce_items(attr: &AttributeDef, value: &Value) -> ScimResult<Vec<Value>> {
    let mut items = match coerce_value(attr, value.clone())? {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    for it in &mut items {
        strip_read_only(attr, it);
    }
    items.retain(|it| !is_unassigned(it));
    Ok(items)
}

/// Merges a complex value into an existing complex value, sub-attribute by sub-attribute. Sub-values
/// that are `null` or `""` clear that sub-attribute; readOnly sub-attributes are ignored; immutable
/// ones may only be set while unset.
fn merge_into(attr: &AttributeDef, target: &mut Map<String, Value>, value: &Value) -> ScimResult<()> {
    let mut clears: Vec<&AttributeDef> = Vec::new();
    let incoming = match value {
        Value::Object(o) => {
            let mut keep = Map::new();
            for (k, v) in o {
                if is_clear(v) {
                    let sub = attr.sub_attribute(k).ok_or_else(|| {
                        ScimError::invalid_value(format!("\"{k}\" is not a sub-attribute of \"{}\"", attr.name))
                    })?;
                    clears.push(sub);
                } else {
                    keep.insert(k.clone(), v.clone());
                }
            }
            Value::Object(keep)
        }
        other => other.clone(),
    };
    let coerced = coerce_one(attr, incoming)?;
    if let Value::Object(o) = coerced {
        for (k, v) in o {
            let Some(sub) = attr.sub_attribute(&k) else { continue };
            match sub.mutability {
                Mutability::ReadOnly => continue,
                Mutability::Immutable if target.get(&sub.name).is_some_and(|old| !old.is_null() && old != &v) => {
                    return Err(immutable_error(&format!("{}.{}", attr.name, sub.name)));
                }
                _ => {}
            }
            target.insert(sub.name.clone(), v);
        }
    }
    for sub in clears {
        clear_sub(attr, sub, target)?;
    }
    Ok(())
}

fn clear_sub(attr: &AttributeDef, sub: &AttributeDef, target: &mut Map<String, Value>) -> ScimResult<()> {
    if sub.mutability == Mutability::ReadOnly || !target.contains_key(&sub.name) {
        return Ok(());
    }
    if sub.required {
        return Err(required_error(&format!("{}.{}", attr.name, sub.name)));
    }
    if sub.mutability == Mutability::Immutable && target.get(&sub.name).is_some_and(|v| !v.is_null()) {
        return Err(immutable_error(&format!("{}.{}", attr.name, sub.name)));
    }
    target.shift_remove(&sub.name);
    Ok(())
}

/// RFC 7644 §3.5.2: setting a value's `primary` to true makes every other value non-primary.
/// `touched` are the elements this operation wrote, in ascending order.
fn fix_primary(items: &mut [Value], touched: &[usize]) {
    let is_primary = |v: &Value| v.get("primary") == Some(&Value::Bool(true));
    if !touched.iter().any(|&i| items.get(i).is_some_and(is_primary)) {
        return;
    }
    debug_assert!(touched.is_sorted());
    for (i, el) in items.iter_mut().enumerate() {
        if touched.binary_search(&i).is_err()
            && is_primary(el)
            && let Value::Object(o) = el
        {
            o.insert("primary".into(), Value::Bool(false));
        }
    }
}

/// Builds `{"type": "work"}` from `type eq "work"` (terms joined by `and`). False when the filter
/// does not fully describe an element (other operators, `or`, `not`, contradictions).
fn element_from_filter(attr: &AttributeDef, f: &Filter, out: &mut Map<String, Value>) -> bool {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } => {
            let Some(sub) = attr.sub_attribute(&path.attr) else {
                return false;
            };
            let v = match value {
                CompValue::Null => return false,
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Str(s) => Value::String(s.clone()),
            };
            match out.get(&sub.name) {
                Some(existing) => existing == &v,
                None => {
                    out.insert(sub.name.clone(), v);
                    true
                }
            }
        }
        Filter::And(a, b) => element_from_filter(attr, a, out) && element_from_filter(attr, b, out),
        _ => false,
    }
}

/// The RFC's reading of a `remove` with a `value` list and no filter ([`Conflict::RemoveWithValue`]):
/// refused, since the RFC would remove every value while the client listed the ones it meant.
fn refuse_remove_with_value(dialect: Dialect, name: &str) -> ScimResult<()> {
    if dialect.reading(Conflict::RemoveWithValue) == Reading::Vendor {
        return Ok(());
    }
    Err(ScimError::invalid_value(format!(
        "remove takes no \"value\": RFC 7644 §3.5.2.2 would remove every value of \"{name}\" here, while \
         the values listed say only those were meant (the form older Microsoft Entra ID sends). Nothing was \
         changed: name the values in a filter, as in \"{name}[value eq \\\"<id>\\\"]\", or set the \
         connection's identity provider to entra if Entra ID sends this ({} connections read it the RFC's way)",
        dialect.idp()
    )))
}

/// `add` and `replace` on one attribute.
fn write(
    work: &mut Map<String, Value>,
    kind: PatchOpKind,
    t: &Target<'_>,
    value: &Value,
    dialect: Dialect,
) -> ScimResult<()> {
    let attr = t.attr;
    let name = attr.name.as_str();
    let top = t.ext.is_none();
    let c = container_mut(work, t.ext);
    if attr.multi_valued && (t.filter.is_some() || t.sub.is_some()) {
        return write_elements(c, kind, t, value, dialect);
    }
    if attr.multi_valued {
        if value.is_null() {
            // `add` of nothing adds nothing; `replace` with null unassigns.
            if kind == PatchOpKind::Replace && c.contains_key(name) {
                if attr.required {
                    return Err(required_error(name));
                }
                unset(c, name, top);
            }
            return Ok(());
        }
        let items = coerce_items(attr, value)?;
        match kind {
            PatchOpKind::Replace => {
                if items.is_empty() {
                    if attr.required && c.contains_key(name) {
                        return Err(required_error(name));
                    }
                    unset(c, name, top);
                } else {
                    c.insert(name.to_string(), Value::Array(items));
                }
            }
            _ => {
                let arr = array_entry(c, name);
                let start = arr.len();
                // RFC 7644 §3.5.2.1: a value already present is not added again. Values are
                // indexed by a hash that ignores member order (as `==` does), so adding n values to
                // m takes O(n + m), not O(n × m).
                let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(arr.len() + items.len());
                for (i, el) in arr.iter().enumerate() {
                    index.entry(value_hash(el)).or_default().push(i);
                }
                for it in items {
                    let h = value_hash(&it);
                    let same = index.entry(h).or_default();
                    if !same.iter().any(|&i| arr[i] == it) {
                        same.push(arr.len());
                        arr.push(it);
                    }
                }
                let touched: Vec<usize> = (start..arr.len()).collect();
                fix_primary(arr, &touched);
                drop_if_unassigned(c, name, top);
            }
        }
        return Ok(());
    }
    if attr.kind == AttributeType::Complex {
        // RFC 7644 §3.5.2.1/§3.5.2.3: add and replace on a complex attribute both set the
        // sub-attributes given and leave the others unchanged.
        let sub_value;
        let value = match t.sub {
            Some(sub) => {
                let mut m = Map::new();
                m.insert(sub.name.clone(), value.clone());
                sub_value = Value::Object(m);
                &sub_value
            }
            // Older Entra ID: `"manager": [{"value": "..."}]`.
            None if is_clear(crate::dialect::single_from_array(attr, value)?) => {
                if c.contains_key(name) {
                    if attr.required {
                        return Err(required_error(name));
                    }
                    unset(c, name, top);
                }
                return Ok(());
            }
            None => crate::dialect::single_from_array(attr, value)?,
        };
        let target = object_entry(c, name);
        merge_into(attr, target, value)?;
        drop_if_unassigned(c, name, top);
        return Ok(());
    }
    if is_clear(value) {
        if c.contains_key(name) {
            if attr.required {
                return Err(required_error(name));
            }
            unset(c, name, top);
        }
        return Ok(());
    }
    let v = coerce_value(attr, value.clone())?;
    c.insert(name.to_string(), v);
    Ok(())
}

/// `add` and `replace` on elements of a multi-valued attribute: `emails[type eq "work"]`,
/// `emails[type eq "work"].value`, or `emails.value` (every element).
/// `add` and `replace` behave the same here: both set what the path designates.
fn write_elements(
    c: &mut Map<String, Value>,
    kind: PatchOpKind,
    t: &Target<'_>,
    value: &Value,
    dialect: Dialect,
) -> ScimResult<()> {
    let attr = t.attr;
    let name = attr.name.as_str();
    let top = t.ext.is_none();
    let clear = is_clear(value);
    let items = array_entry(c, name);
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, el)| t.filter.as_ref().is_none_or(|f| f.matches_element(attr, el)))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        if kind == PatchOpKind::Replace
            && t.filter.is_some()
            && dialect.reading(Conflict::ReplaceUnmatchedFilter) == Reading::Rfc
        {
            drop_if_unassigned(c, name, top);
            return Err(ScimError::no_target(format!(
                "no value of \"{name}\" matches the filter, and replace changes only values that exist \
                 (RFC 7644 §3.5.2.3); use add to create one. Rollcall creates the value instead for \
                 clients documented to expect it (Microsoft Entra ID), not for {} connections",
                dialect.idp()
            )));
        }
        if !clear {
            // IdP dialect: Entra ID sends `replace` (and `add`) on `emails[type eq "work"].value`
            // or `addresses[type eq "work"].streetAddress` for a user who has no such element yet.
            // The element the filter describes is created, so later operations on the same filter
            // land in it; for `replace`, only where `dialect::READINGS` says so.
            let el = new_element(attr, t, value)?;
            if !is_unassigned(&el) {
                items.push(el);
                let last = items.len() - 1;
                fix_primary(items, &[last]);
            }
        }
        drop_if_unassigned(c, name, top);
        return Ok(());
    }
    if clear && t.sub.is_none() {
        // Replacing the matched values with nothing removes them (`matched` is in ascending order).
        let mut i = 0;
        items.retain(|_| {
            let keep = matched.binary_search(&i).is_err();
            i += 1;
            keep
        });
    } else {
        for &i in &matched {
            let el = &mut items[i];
            match t.sub {
                Some(sub) => {
                    let mut m = Map::new();
                    m.insert(sub.name.clone(), value.clone());
                    let target = as_object(el);
                    merge_into(attr, target, &Value::Object(m))?;
                }
                None if attr.kind == AttributeType::Complex => merge_into(attr, as_object(el), value)?,
                None => *el = coerce_one(attr, value.clone())?,
            }
        }
        fix_primary(items, &matched);
    }
    items.retain(|el| !is_unassigned(el));
    drop_if_unassigned(c, name, top);
    Ok(())
}

fn as_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// The element a value path describes, for `add`/`replace` when nothing matches it.
fn new_element(attr: &AttributeDef, t: &Target<'_>, value: &Value) -> ScimResult<Value> {
    if attr.kind != AttributeType::Complex {
        return coerce_one(attr, value.clone());
    }
    let mut el = Map::new();
    if let Some(f) = &t.filter
        && !element_from_filter(attr, f, &mut el)
    {
        return Err(ScimError::no_target(format!(
            "no value of \"{}\" matches the filter, and a new one cannot be made from it \
             (only \"eq\" comparisons joined by \"and\" describe a value)",
            attr.name
        )));
    }
    match t.sub {
        Some(sub) => {
            el.insert(sub.name.clone(), value.clone());
        }
        None => {
            if let Value::Object(given) = coerce_one(attr, value.clone())? {
                for (k, v) in given {
                    el.insert(k, v);
                }
            }
        }
    }
    let mut el = coerce_one(attr, Value::Object(el))?;
    strip_read_only(attr, &mut el);
    Ok(el)
}

/// `remove` on one attribute.
fn remove(work: &mut Map<String, Value>, t: &Target<'_>, value: Option<&Value>, dialect: Dialect) -> ScimResult<()> {
    let attr = t.attr;
    let name = attr.name.as_str();
    let top = t.ext.is_none();
    if t.filter.is_none() && t.sub.is_none() && attr.required {
        return Err(required_error(name));
    }
    let c = match t.ext {
        None => work,
        Some(u) => match work.get_mut(u) {
            Some(Value::Object(c)) => c,
            _ => return Ok(()),
        },
    };
    if !c.contains_key(name) {
        return Ok(());
    }
    if !attr.multi_valued {
        match t.sub {
            None => {
                unset(c, name, top);
            }
            Some(sub) => {
                if let Some(Value::Object(o)) = c.get_mut(name) {
                    clear_sub(attr, sub, o)?;
                }
                drop_if_unassigned(c, name, top);
            }
        }
        return Ok(());
    }
    let listed = value.filter(|v| !v.is_null());
    if t.filter.is_none() && t.sub.is_none() && listed.is_none() {
        unset(c, name, top);
        return Ok(());
    }
    let Some(Value::Array(items)) = c.get_mut(name) else {
        unset(c, name, top);
        return Ok(());
    };
    match (&t.filter, t.sub, listed) {
        (None, None, Some(listed)) => {
            // Entra ID sends `remove` with a `value` list: only the listed values go (for the
            // clients `dialect::READINGS` names).
            refuse_remove_with_value(dialect, name)?;
            // Listed values that give a `value` (all that IdPs send) are looked up by it, so the
            // work is O(listed + values), not O(listed × values).
            let listed = coerce_items(attr, listed)?;
            let mut by_value: HashMap<u64, Vec<&Value>> = HashMap::new();
            let mut others: Vec<&Value> = Vec::new();
            for l in &listed {
                match l.get("value") {
                    Some(v) => by_value.entry(value_hash(v)).or_default().push(l),
                    None => others.push(l),
                }
            }
            items.retain(|el| {
                let keyed = el
                    .get("value")
                    .and_then(|v| by_value.get(&value_hash(v)))
                    .is_some_and(|ls| ls.iter().any(|l| element_covers(l, el)));
                !keyed && !others.iter().any(|l| element_covers(l, el))
            });
        }
        (filter, sub, _) => {
            let matched: Vec<bool> = items
                .iter()
                .map(|el| filter.as_ref().is_none_or(|f| f.matches_element(attr, el)))
                .collect();
            match sub {
                None => {
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !matched[i];
                        i += 1;
                        keep
                    });
                }
                Some(sub) => {
                    for (el, _) in items.iter_mut().zip(&matched).filter(|(_, m)| **m) {
                        if let Value::Object(o) = el {
                            clear_sub(attr, sub, o)?;
                        }
                    }
                }
            }
        }
    }
    items.retain(|el| !is_unassigned(el));
    drop_if_unassigned(c, name, top);
    Ok(())
}

/// A hash of a JSON value consistent with `==`: object members are combined in an order-independent
/// way (two objects with the same members in another order are equal).
fn value_hash(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                for i in a {
                    feed(i, h);
                }
            }
            Value::Object(o) => {
                // Sum of the members' own hashes: independent of their order.
                let mut sum = 0u64;
                for (k, i) in o {
                    let mut m = std::collections::hash_map::DefaultHasher::new();
                    k.hash(&mut m);
                    feed(i, &mut m);
                    sum = sum.wrapping_add(m.finish());
                }
                (5u8, o.len(), sum).hash(h);
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(v, &mut h);
    h.finish()
}

/// True when every sub-attribute given in `listed` has the same value in `el` (or, for simple
/// values, when they are equal): `{"value": "a@x"}` identifies the email whatever its `type`.
fn element_covers(listed: &Value, el: &Value) -> bool {
    match (listed, el) {
        (Value::Object(l), Value::Object(e)) => !l.is_empty() && l.iter().all(|(k, v)| e.get(k) == Some(v)),
        (l, e) => l == e,
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::ScimType;
    use serde_json::json;

    fn user(emails: usize) -> Value {
        let emails: Vec<Value> = (0..emails)
            .map(|i| json!({"value": format!("{i}@x"), "type": "work"}))
            .collect();
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "u", "emails": emails})
    }

    fn patch(doc: &mut Value, ops: Value, max_values: usize) -> ScimResult<PatchOutcome> {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("User").unwrap().clone();
        let req = PatchRequest::from_json(&json!({"Operations": ops}))?;
        apply_patch_with(&reg, &rt, doc, &req, max_values)
    }

    #[test]
    fn operations_per_request_at_the_limit_and_one_over() {
        let op = json!({"op": "replace", "path": "title", "value": "x"});
        let body = |n: usize| json!({"Operations": vec![op.clone(); n]});
        assert_eq!(PatchRequest::parse_with(&body(3), 3).unwrap().operations.len(), 3);
        let e = PatchRequest::parse_with(&body(4), 3).unwrap_err();
        assert_eq!(e.status, 413);
        assert!(e.detail.contains("4 operations, more than the 3 allowed"), "{e}");
        assert!(e.detail.contains("patch_max_operations"), "{e}");
        // Refused before any operation is read: the fourth is not even valid.
        let mut ops = vec![op.clone(); 3];
        ops.push(json!("not an operation"));
        assert_eq!(
            PatchRequest::parse_with(&json!({"Operations": ops}), 3)
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn an_operation_growing_an_attribute_past_the_bound_is_refused_at_once() {
        let mut doc = user(2);
        let before = doc.clone();
        patch(
            &mut doc,
            json!([{"op": "add", "path": "emails", "value": [{"value": "2@x"}]}]),
            3,
        )
        .unwrap();
        assert_eq!(doc["emails"].as_array().unwrap().len(), 3);
        let mut doc = before.clone();
        let e = patch(
            &mut doc,
            json!([
                {"op": "add", "path": "emails", "value": [{"value": "2@x"}, {"value": "3@x"}]},
                {"op": "remove", "path": "emails[value eq \"0@x\"]"}
            ]),
            3,
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.starts_with("operation 1 (add \"emails\")"), "{e}");
        assert!(
            e.detail.contains("\"emails\" has 4 values, more than the 3 allowed"),
            "{e}"
        );
        assert_eq!(doc, before, "nothing changed");
        // Creating an element through a value path counts too.
        let mut doc = user(3);
        let e = patch(
            &mut doc,
            json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "h@x"}]),
            3,
        )
        .unwrap_err();
        assert!(e.detail.contains("has 4 values"), "{e}");
    }

    #[test]
    fn an_attribute_stored_over_the_bound_may_stay_or_shrink() {
        let mut doc = user(5);
        patch(
            &mut doc,
            json!([{"op": "replace", "path": "emails[value eq \"1@x\"].type", "value": "home"}]),
            3,
        )
        .unwrap();
        assert_eq!(doc["emails"][1]["type"], "home");
        patch(
            &mut doc,
            json!([{"op": "remove", "path": "emails[value eq \"1@x\"]"}]),
            3,
        )
        .unwrap();
        assert_eq!(doc["emails"].as_array().unwrap().len(), 4);
        let e = patch(
            &mut doc,
            json!([{"op": "add", "path": "emails", "value": {"value": "new@x"}}]),
            3,
        )
        .unwrap_err();
        assert!(e.detail.contains("has 5 values"), "{e}");
    }

    #[test]
    fn add_skips_values_present_whatever_their_member_order() {
        let mut doc = user(2);
        patch(
            &mut doc,
            json!([{"op": "add", "path": "emails", "value": [
                {"type": "work", "value": "1@x"}, {"value": "9@x"}, {"value": "9@x"}
            ]}]),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(
            doc["emails"],
            json!([
                {"value": "0@x", "type": "work"}, {"value": "1@x", "type": "work"}, {"value": "9@x"}
            ])
        );
        assert_eq!(
            value_hash(&json!({"a": 1, "b": [true, null]})),
            value_hash(&json!({"b": [true, null], "a": 1}))
        );
        assert_ne!(value_hash(&json!({"a": 1})), value_hash(&json!({"a": 1.0})));
        assert_ne!(value_hash(&json!(["a", "b"])), value_hash(&json!(["b", "a"])));
    }

    #[test]
    fn remove_by_value_list_removes_exactly_the_listed_values() {
        let mut doc = user(4);
        patch(
            &mut doc,
            json!([{"op": "remove", "path": "emails", "value": [
                {"value": "1@x"}, {"value": "3@x", "type": "home"}, {"type": "nothing"}
            ]}]),
            usize::MAX,
        )
        .unwrap();
        // 3@x is listed with another type, so it is not covered and stays.
        assert_eq!(
            doc["emails"],
            json!([{"value": "0@x", "type": "work"}, {"value": "2@x", "type": "work"}, {"value": "3@x", "type": "work"}])
        );
        patch(
            &mut doc,
            json!([{"op": "remove", "path": "emails", "value": [{"type": "work"}]}]),
            usize::MAX,
        )
        .unwrap();
        assert!(doc.get("emails").is_none());
    }

    #[test]
    fn clearing_and_primary_on_many_matches() {
        let mut doc = user(6);
        patch(
            &mut doc,
            json!([{"op": "replace", "path": "emails[value eq \"4@x\"].primary", "value": true},
                   {"op": "replace", "path": "emails[value eq \"2@x\"].primary", "value": true}]),
            usize::MAX,
        )
        .unwrap();
        let primaries: Vec<bool> = doc["emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.get("primary") == Some(&json!(true)))
            .collect();
        assert_eq!(primaries, [false, false, true, false, false, false]);
        patch(
            &mut doc,
            json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": null}]),
            usize::MAX,
        )
        .unwrap();
        assert!(doc.get("emails").is_none());
    }
}
