//! SCIM filters and `sortBy` compiled to SQL, for SQLite and PostgreSQL.
//!
//! The hot attributes of the identity providers' flows (`id`, `externalId`, `userName`,
//! `displayName`, `active`, `meta.created`, `meta.lastModified`, `emails.value`, `members.value`)
//! compile to indexed columns and side tables. Everything else compiles to JSON expressions over the
//! search copy of the document (`doc_ci`), whose case-insensitive strings are already folded, so a
//! folded literal compares correctly for all of Unicode. The resources table is aliased `r`.

use crate::index::fold;
use crate::model::ResourceKind;
use rollcall_scim::dialect::lenient_bool;
use rollcall_scim::filter::{CompValue, CompareOp, Filter};
use rollcall_scim::path::AttrPath;
use rollcall_scim::schema::{AttributeDef, AttributeType, ResourceType, SchemaRegistry};
use rollcall_scim::sort::SortOrder;
use rollcall_scim::{ScimError, ScimResult};

/// The SQL dialect to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

/// SQL text with its parameters, numbered for the dialect.
#[derive(Debug, Clone)]
pub struct SqlBuilder {
    pub dialect: Dialect,
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// The arguments of a built statement's binds, for either database.
pub fn bind_all<DB: sqlx::Database>(binds: &[Bind]) -> DB::Arguments
where
    for<'t> &'t str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> f64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> bool: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    use sqlx::Arguments;
    let mut args = DB::Arguments::default();
    for b in binds {
        let r = match b {
            Bind::Text(s) => args.add(s.as_str()),
            Bind::Int(i) => args.add(*i),
            Bind::Real(f) => args.add(*f),
            Bind::Bool(v) => args.add(*v),
        };
        r.expect("binding a plain value cannot fail");
    }
    args
}

impl SqlBuilder {
    pub fn new(dialect: Dialect) -> Self {
        SqlBuilder {
            dialect,
            sql: String::new(),
            binds: Vec::new(),
        }
    }
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }
    /// Appends a placeholder for `b`.
    pub fn bind(&mut self, b: Bind) -> &mut Self {
        self.binds.push(b);
        match self.dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => {
                let n = self.binds.len();
                self.sql.push_str(&format!("${n}"));
                // Postgres needs to know the type of parameters compared with `->>` text or casts.
                match self.binds[n - 1] {
                    Bind::Text(_) => self.sql.push_str("::text"),
                    Bind::Int(_) => self.sql.push_str("::bigint"),
                    Bind::Real(_) => self.sql.push_str("::float8"),
                    Bind::Bool(_) => self.sql.push_str("::boolean"),
                }
            }
        }
        self
    }
    pub fn text(&mut self, s: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(s.into()))
    }
    fn falsy(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "0",
            Dialect::Postgres => "false",
        }
    }
}

/// Keys are inlined into JSON path expressions; they come from the schema registry, but are checked
/// all the same so nothing a tenant registers can break out of the literal.
fn safe_key(k: &str) -> ScimResult<&str> {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '_' | '$'))
    {
        Ok(k)
    } else {
        Err(ScimError::invalid_filter(format!(
            "attribute name \"{k}\" cannot be searched"
        )))
    }
}

/// A JSON expression for `keys` under `base` (a JSON column or element), as text/number.
fn json_path(d: Dialect, base: &str, keys: &[&str]) -> ScimResult<String> {
    for k in keys {
        safe_key(k)?;
    }
    Ok(match d {
        Dialect::Sqlite => {
            let path: String = keys.iter().map(|k| format!(".\"{k}\"")).collect();
            format!("json_extract({base}, '${path}')")
        }
        Dialect::Postgres => {
            if keys.len() == 1 {
                format!("({base} ->> '{}')", keys[0])
            } else {
                format!(
                    "({base} #>> '{{{}}}')",
                    keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(",")
                )
            }
        }
    })
}

/// A `FROM` item that iterates the elements of the JSON array at `keys`, aliased `alias`, and the
/// expression for one element.
fn json_elements(d: Dialect, base: &str, keys: &[&str], alias: &str) -> ScimResult<(String, String)> {
    for k in keys {
        safe_key(k)?;
    }
    Ok(match d {
        Dialect::Sqlite => {
            let path: String = keys.iter().map(|k| format!(".\"{k}\"")).collect();
            (
                format!("json_each({base}, '${path}') {alias}"),
                format!("{alias}.value"),
            )
        }
        Dialect::Postgres => {
            let path = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(",");
            (
                format!(
                    "jsonb_array_elements(CASE WHEN jsonb_typeof({base} #> '{{{path}}}') = 'array' THEN {base} #> '{{{path}}}' ELSE '[]'::jsonb END) {alias}(v)"
                ),
                format!("{alias}.v"),
            )
        }
    })
}

/// Where paths resolve while compiling.
#[derive(Clone)]
enum Scope<'a> {
    /// The resource row `r`.
    Resource,
    /// One element of a multi-valued attribute (or the value of a complex attribute): `expr` is its
    /// JSON, `parent` the attribute.
    Element { expr: String, parent: &'a AttributeDef },
    /// One membership row `m` of the resource: for a group, a member `u` (`members[...]`); for a
    /// user, a group `u` the user is in (`groups[...]`).
    Related { user_side: bool },
}

/// Compiles `filter` (already validated against the registry) into a boolean SQL expression over
/// the resources `r` of the connection `connection_id` (which the e-mail lookup names: its index
/// leads with the tenant).
pub fn compile_filter(
    b: &mut SqlBuilder,
    registry: &SchemaRegistry,
    rt: &ResourceType,
    kind: ResourceKind,
    connection_id: &str,
    filter: &Filter,
) -> ScimResult<()> {
    let mut c = Compiler {
        registry,
        rt,
        kind,
        connection_id: Some(connection_id),
        depth: 0,
    };
    c.filter(b, filter, &Scope::Resource)
}

/// Compiles a filter over one member of a group (`value`, `display`, `type`), the member's row
/// being aliased `u`: used for PATCH `remove` on `members[...]`.
pub fn compile_member_filter(
    b: &mut SqlBuilder,
    registry: &SchemaRegistry,
    rt: &ResourceType,
    filter: &Filter,
) -> ScimResult<()> {
    let mut c = Compiler {
        registry,
        rt,
        kind: ResourceKind::Group,
        connection_id: None,
        depth: 0,
    };
    c.filter(b, filter, &Scope::Related { user_side: false })
}

struct Compiler<'a> {
    registry: &'a SchemaRegistry,
    rt: &'a ResourceType,
    kind: ResourceKind,
    /// The connection of the resources filtered (none for a group's members).
    connection_id: Option<&'a str>,
    depth: usize,
}

/// How a comparison's left-hand side is stored.
enum Lhs<'a> {
    /// A scalar SQL expression of the attribute `leaf`; `folded` when values are stored folded.
    Scalar {
        expr: String,
        leaf: &'a AttributeDef,
        folded: bool,
        micros: bool,
    },
    /// Any of the elements yielded by `from` (a FROM item), each compared through `expr`.
    Any {
        from: String,
        /// Ties the FROM item to the row `r` ([`EMAILS`] means: use the indexed `IN` form).
        correlate: String,
        expr: String,
        leaf: &'a AttributeDef,
        folded: bool,
    },
}

impl<'a> Compiler<'a> {
    fn filter(&mut self, b: &mut SqlBuilder, f: &Filter, scope: &Scope<'a>) -> ScimResult<()> {
        match f {
            Filter::And(l, r) | Filter::Or(l, r) => {
                let op = if matches!(f, Filter::And(..)) { " AND " } else { " OR " };
                b.push("(");
                self.filter(b, l, scope)?;
                b.push(op);
                self.filter(b, r, scope)?;
                b.push(")");
            }
            Filter::Not(inner) => {
                b.push("(NOT COALESCE((");
                self.filter(b, inner, scope)?;
                let falsy = b.falsy();
                b.push(&format!("), {falsy}))"));
            }
            Filter::Compare { path, op, value } => {
                let lhs = self.lhs(b.dialect, path, scope)?;
                self.compare(b, lhs, *op, Some(value))?;
            }
            Filter::Present { path } => {
                let lhs = self.lhs(b.dialect, path, scope)?;
                self.compare(b, lhs, CompareOp::Eq, None)?;
            }
            Filter::ValuePath { path, filter } => self.value_path(b, path, filter, scope)?,
        }
        Ok(())
    }

    fn resolve_in_scope(
        &self,
        path: &AttrPath,
        scope: &Scope<'a>,
    ) -> ScimResult<(&'a AttributeDef, Option<&'a AttributeDef>, Option<&'a str>)> {
        match scope {
            Scope::Resource => {
                let r = self.registry.resolve(self.rt, path).ok_or_else(|| {
                    ScimError::invalid_filter(format!("\"{path}\" is not an attribute of {}", self.rt.name))
                })?;
                Ok((r.attr, r.sub, r.extension_urn()))
            }
            Scope::Element { parent, .. } => {
                let sub = parent.sub_attribute(&path.attr).ok_or_else(|| {
                    ScimError::invalid_filter(format!(
                        "\"{}\" is not a sub-attribute of \"{}\"",
                        path.attr, parent.name
                    ))
                })?;
                Ok((sub, None, None))
            }
            Scope::Related { user_side } => {
                let name = if *user_side { "groups" } else { "members" };
                let related = self
                    .registry
                    .find_attribute(self.rt, None, name)
                    .ok_or_else(|| ScimError::invalid_filter(format!("{name} cannot be searched here")))?;
                let sub = related.attr.sub_attribute(&path.attr).ok_or_else(|| {
                    ScimError::invalid_filter(format!("\"{}\" is not a sub-attribute of \"{name}\"", path.attr))
                })?;
                Ok((sub, None, None))
            }
        }
    }

    fn lhs(&self, d: Dialect, path: &AttrPath, scope: &Scope<'a>) -> ScimResult<Lhs<'a>> {
        let (attr, sub, urn) = self.resolve_in_scope(path, scope)?;
        let leaf = sub.unwrap_or(attr);
        match scope {
            Scope::Element { expr, .. } => {
                return Ok(Lhs::Scalar {
                    expr: json_path(d, expr, &[&attr.name])?,
                    leaf,
                    folded: true,
                    micros: false,
                });
            }
            Scope::Related { user_side } => {
                let (expr, folded) = related_column(&attr.name, *user_side)?;
                return Ok(Lhs::Scalar {
                    expr: expr.to_string(),
                    leaf,
                    folded,
                    micros: false,
                });
            }
            Scope::Resource => {}
        }
        // Indexed columns.
        if urn.is_none() {
            let col = match (attr.name.as_str(), sub.map(|s| s.name.as_str()), self.kind) {
                ("id", None, _) => Some(("r.id", false, false)),
                ("externalId", None, _) => Some(("r.external_id", false, false)),
                ("userName", None, ResourceKind::User) => Some(("r.user_name_ci", true, false)),
                ("displayName", None, _) => Some(("r.display_name_ci", true, false)),
                ("active", None, ResourceKind::User) => Some(("r.active", false, false)),
                ("meta", Some("created"), _) => Some(("r.created_us", false, true)),
                ("meta", Some("lastModified"), _) => Some(("r.modified_us", false, true)),
                ("meta", Some("resourceType"), _) => Some(("r.kind", false, false)),
                _ => None,
            };
            if let Some((expr, folded, micros)) = col {
                return Ok(Lhs::Scalar {
                    expr: expr.to_string(),
                    leaf,
                    folded,
                    micros,
                });
            }
            if self.kind == ResourceKind::User && attr.name == "emails" && sub.is_none_or(|s| s.name == "value") {
                return Ok(Lhs::Any {
                    from: "resource_emails x".into(),
                    correlate: EMAILS.into(),
                    expr: "x.value_ci".into(),
                    leaf: attr.sub_attribute("value").unwrap_or(leaf),
                    folded: true,
                });
            }
            let related = match (self.kind, attr.name.as_str()) {
                (ResourceKind::Group, "members") => Some(false),
                (ResourceKind::User, "groups") => Some(true),
                _ => None,
            };
            if let Some(user_side) = related {
                let leaf = sub.unwrap_or(attr.sub_attribute("value").unwrap_or(leaf));
                let (expr, folded) = related_column(&leaf.name, user_side)?;
                let (from, correlate) = related_from(user_side);
                return Ok(Lhs::Any {
                    from: from.into(),
                    correlate: correlate.into(),
                    expr: expr.into(),
                    leaf,
                    folded,
                });
            }
            if attr.name == "meta" {
                return Err(ScimError::invalid_filter(format!(
                    "\"{path}\" cannot be used in a filter"
                )));
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        if let Some(u) = urn {
            keys.push(u);
        }
        keys.push(&attr.name);
        if attr.multi_valued {
            let (from, elem) = json_elements(d, "r.doc_ci", &keys, "e")?;
            let (expr, leaf) = match (sub, attr.kind) {
                (Some(s), _) => (json_path(d, &elem, &[&s.name])?, s),
                (None, AttributeType::Complex) => match attr.sub_attribute("value") {
                    Some(v) => (json_path(d, &elem, &[&v.name])?, v),
                    None => return Err(ScimError::invalid_filter(format!("\"{path}\" needs a sub-attribute"))),
                },
                (None, _) => (
                    match d {
                        Dialect::Sqlite => elem.clone(),
                        Dialect::Postgres => format!("({elem} #>> '{{}}')"),
                    },
                    attr,
                ),
            };
            return Ok(Lhs::Any {
                from,
                correlate: "1 = 1".into(),
                expr,
                leaf,
                folded: true,
            });
        }
        if let Some(s) = sub {
            keys.push(&s.name);
        }
        Ok(Lhs::Scalar {
            expr: json_path(d, "r.doc_ci", &keys)?,
            leaf,
            folded: true,
            micros: false,
        })
    }

    /// `value == None` means `pr`.
    fn compare(&self, b: &mut SqlBuilder, lhs: Lhs<'a>, op: CompareOp, value: Option<&CompValue>) -> ScimResult<()> {
        match lhs {
            Lhs::Scalar {
                expr,
                leaf,
                folded,
                micros,
            } => scalar_compare(b, &expr, leaf, folded, micros, op, value),
            Lhs::Any {
                from,
                correlate,
                expr,
                leaf,
                folded,
            } => {
                // `ne` on a multi-valued attribute: no element equals the value.
                let (negate, op) = if op == CompareOp::Ne && value.is_some_and(|v| *v != CompValue::Null) {
                    (true, CompareOp::Eq)
                } else {
                    (false, op)
                };
                if correlate == EMAILS {
                    // Uncorrelated, so the e-mail index drives the lookup.
                    let not = if negate { "NOT " } else { "" };
                    b.push(&format!("r.pk {not}IN (SELECT x.resource_pk FROM {from} WHERE "));
                    if let Some(c) = self.connection_id {
                        b.push("x.connection_id = ");
                        b.text(c);
                        b.push(" AND ");
                    }
                } else {
                    let not = if negate { "NOT " } else { "" };
                    b.push(&format!("{not}EXISTS (SELECT 1 FROM {from} WHERE {correlate} AND "));
                }
                scalar_compare(b, &expr, leaf, folded, false, op, value)?;
                b.push(")");
                Ok(())
            }
        }
    }

    fn value_path(&mut self, b: &mut SqlBuilder, path: &AttrPath, inner: &Filter, scope: &Scope<'a>) -> ScimResult<()> {
        if !matches!(scope, Scope::Resource) {
            return Err(ScimError::invalid_filter("value paths cannot be nested"));
        }
        self.depth += 1;
        let r = self
            .registry
            .resolve(self.rt, path)
            .ok_or_else(|| ScimError::invalid_filter(format!("\"{path}\" is not an attribute of {}", self.rt.name)))?;
        if r.attr.kind != AttributeType::Complex {
            return Err(ScimError::invalid_filter(format!(
                "\"{path}\" is not a complex attribute"
            )));
        }
        let related = matches!(
            (self.kind, r.attr.name.as_str(), r.extension_urn()),
            (ResourceKind::Group, "members", None) | (ResourceKind::User, "groups", None)
        );
        if related {
            let (from, correlate) = related_from(self.kind == ResourceKind::User);
            b.push(&format!("EXISTS (SELECT 1 FROM {from} WHERE {correlate} AND "));
            self.filter(
                b,
                inner,
                &Scope::Related {
                    user_side: self.kind == ResourceKind::User,
                },
            )?;
            b.push(")");
            return Ok(());
        }
        let mut keys: Vec<&str> = Vec::new();
        if let Some(u) = r.extension_urn() {
            keys.push(u);
        }
        keys.push(&r.attr.name);
        if r.attr.multi_valued {
            let alias = format!("e{}", self.depth);
            let (from, elem) = json_elements(b.dialect, "r.doc_ci", &keys, &alias)?;
            b.push(&format!("EXISTS (SELECT 1 FROM {from} WHERE "));
            self.filter(
                b,
                inner,
                &Scope::Element {
                    expr: elem,
                    parent: r.attr,
                },
            )?;
            b.push(")");
        } else {
            let obj = match b.dialect {
                Dialect::Sqlite => format!(
                    "json_extract(r.doc_ci, '${}')",
                    keys.iter().map(|k| format!(".\"{k}\"")).collect::<String>()
                ),
                Dialect::Postgres => format!(
                    "(r.doc_ci #> '{{{}}}')",
                    keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(",")
                ),
            };
            for k in &keys {
                safe_key(k)?;
            }
            b.push("(");
            self.filter(
                b,
                inner,
                &Scope::Element {
                    expr: obj,
                    parent: r.attr,
                },
            )?;
            b.push(")");
        }
        Ok(())
    }
}

/// Marks the e-mail side table in [`Lhs::Any`].
const EMAILS: &str = "emails";

/// The membership rows of the resource `r` and the related resource `u`: a group's members, or
/// (`user_side`) the live groups a user is in.
fn related_from(user_side: bool) -> (&'static str, &'static str) {
    if user_side {
        (
            "group_members m JOIN resources u ON u.pk = m.group_pk",
            "m.connection_id = r.connection_id AND m.member_pk = r.pk AND u.deleted_us IS NULL",
        )
    } else {
        (
            "group_members m JOIN resources u ON u.pk = m.member_pk",
            "m.connection_id = r.connection_id AND m.group_pk = r.pk",
        )
    }
}

/// The column a sub-attribute of `members` / `groups` compares with, and whether it is folded.
fn related_column(sub: &str, user_side: bool) -> ScimResult<(&'static str, bool)> {
    Ok(match (sub, user_side) {
        ("value", _) => ("u.id", false),
        ("type", false) => ("u.kind", false),
        // The related resource's own displayName (folded), for both directions.
        ("display", _) => ("u.display_name_ci", true),
        ("type", true) => ("'direct'", false),
        (other, _) => {
            return Err(ScimError::invalid_filter(format!(
                "{} cannot be filtered by \"{other}\"",
                if user_side { "groups" } else { "members" }
            )));
        }
    })
}

/// Parses an RFC 3339 literal to microseconds since the epoch.
pub fn micros_of(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

fn scalar_compare(
    b: &mut SqlBuilder,
    expr: &str,
    leaf: &AttributeDef,
    folded: bool,
    micros: bool,
    op: CompareOp,
    value: Option<&CompValue>,
) -> ScimResult<()> {
    let d = b.dialect;
    let Some(value) = value else {
        // pr
        if leaf.kind.is_stringy() && !micros {
            b.push(&format!("({expr} IS NOT NULL AND {expr} <> '')"));
        } else {
            b.push(&format!("({expr} IS NOT NULL)"));
        }
        return Ok(());
    };
    let sql_op = match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "<>",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        _ => "",
    };
    let wrap_ne = |b: &mut SqlBuilder, f: &dyn Fn(&mut SqlBuilder)| {
        if op == CompareOp::Ne {
            b.push(&format!("({expr} IS NULL OR "));
            f(b);
            b.push(")");
        } else {
            f(b);
        }
    };
    match value {
        CompValue::Null => match op {
            CompareOp::Eq => {
                b.push(&format!("({expr} IS NULL)"));
            }
            CompareOp::Ne => {
                b.push(&format!("({expr} IS NOT NULL)"));
            }
            _ => {
                return Err(ScimError::invalid_filter(format!(
                    "\"{}\" cannot be compared with null",
                    op.as_str()
                )));
            }
        },
        CompValue::Bool(v) => {
            if op != CompareOp::Eq && op != CompareOp::Ne {
                return Err(ScimError::invalid_filter(format!(
                    "booleans can only be compared with eq or ne, not {}",
                    op.as_str()
                )));
            }
            // Postgres: a JSON boolean reads as the text 'true'/'false'; comparing that text (not
            // casting it) cannot fail on a stored value that is not a boolean.
            let (lhs, bind) = match d {
                Dialect::Sqlite => (expr.to_string(), Bind::Int(*v as i64)),
                Dialect::Postgres if expr.starts_with("r.") => (expr.to_string(), Bind::Bool(*v)),
                Dialect::Postgres => (expr.to_string(), Bind::Text(v.to_string())),
            };
            wrap_ne(b, &|b: &mut SqlBuilder| {
                b.push(&format!("{lhs} {sql_op} "));
                b.bind(bind.clone());
            });
        }
        CompValue::Number(n) => {
            if op.is_substring() {
                return Err(ScimError::invalid_filter(format!(
                    "\"{}\" needs a string value",
                    op.as_str()
                )));
            }
            let lhs = match d {
                Dialect::Sqlite => expr.to_string(),
                // Only text that is a JSON number is cast: anything else would fail the statement.
                Dialect::Postgres => format!(
                    "(CASE WHEN ({expr}) ~ '^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$' THEN ({expr})::float8 END)"
                ),
            };
            let bind = match n.as_i64() {
                Some(i) if d == Dialect::Sqlite => Bind::Int(i),
                _ => Bind::Real(n.as_f64().unwrap_or(0.0)),
            };
            wrap_ne(b, &|b: &mut SqlBuilder| {
                b.push(&format!("{lhs} {sql_op} "));
                b.bind(bind.clone());
            });
        }
        CompValue::Str(s) => {
            if leaf.kind == AttributeType::Boolean {
                // Entra ID writes booleans as strings in filters too: `roles[primary eq "True"]`.
                let v = lenient_bool(&serde_json::Value::String(s.clone())).ok_or_else(|| {
                    ScimError::invalid_filter(format!(
                        "\"{}\" is a boolean attribute; \"{s}\" is not a boolean",
                        leaf.name
                    ))
                })?;
                return scalar_compare(b, expr, leaf, folded, micros, op, Some(&CompValue::Bool(v)));
            }
            if micros {
                let us = micros_of(s).ok_or_else(|| {
                    ScimError::invalid_filter(format!(
                        "\"{s}\" is not an RFC 3339 dateTime such as 2011-05-13T04:42:34Z"
                    ))
                })?;
                if op.is_substring() {
                    return Err(ScimError::invalid_filter(format!(
                        "\"{}\" cannot be used on a dateTime",
                        op.as_str()
                    )));
                }
                wrap_ne(b, &|b: &mut SqlBuilder| {
                    b.push(&format!("{expr} {sql_op} "));
                    b.bind(Bind::Int(us));
                });
                return Ok(());
            }
            let lit = if folded && !leaf.case_exact { fold(s) } else { s.clone() };
            match op {
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew if lit.is_empty() => {
                    b.push(&format!("({expr} IS NOT NULL)"));
                }
                CompareOp::Co => {
                    match d {
                        Dialect::Sqlite => b.push(&format!("instr({expr}, ")),
                        Dialect::Postgres => b.push(&format!("strpos({expr}, ")),
                    };
                    b.text(lit).push(") > 0");
                }
                CompareOp::Sw => match d {
                    Dialect::Sqlite => {
                        // A range keeps the column's index usable; U+10FFFF sorts after every character.
                        let upper = format!("{lit}\u{10FFFF}");
                        b.push(&format!("({expr} >= "));
                        b.text(lit).push(&format!(" AND {expr} < "));
                        b.text(upper).push(")");
                    }
                    Dialect::Postgres => {
                        b.push(&format!("starts_with({expr}, "));
                        b.text(lit).push(")");
                    }
                },
                CompareOp::Ew => {
                    let n = lit.chars().count() as i64;
                    match d {
                        Dialect::Sqlite => {
                            b.push(&format!("substr({expr}, "));
                            b.bind(Bind::Int(-n)).push(") = ");
                        }
                        Dialect::Postgres => {
                            b.push(&format!("right({expr}, "));
                            b.bind(Bind::Int(n)).push("::int) = ");
                        }
                    }
                    b.text(lit);
                }
                _ => {
                    // Postgres: order text by code point, as SQLite does, whatever the database's
                    // collation (the indexed text columns are COLLATE "C" already).
                    let lhs = match d {
                        Dialect::Postgres if op.is_ordering() => format!("({expr}) COLLATE \"C\""),
                        _ => expr.to_string(),
                    };
                    wrap_ne(b, &|b: &mut SqlBuilder| {
                        b.push(&format!("{lhs} {sql_op} "));
                        b.text(lit.clone());
                    });
                }
            }
        }
    }
    Ok(())
}

/// Postgres: JSON text sorts by code point, as on SQLite and like the COLLATE "C" columns.
fn code_point_order(d: Dialect, expr: String) -> String {
    match d {
        Dialect::Sqlite => expr,
        Dialect::Postgres => format!("({expr}) COLLATE \"C\""),
    }
}

/// What a list request reads, the same on both databases ([`list_plan`]).
pub(crate) struct ListPlan {
    /// The matches: the connection's live resources of the kind that pass the filter (`r`).
    pub matches: SqlBuilder,
    /// The matches after the cursor's row key, when there is one; `ORDER BY` and the rest follow.
    pub page: SqlBuilder,
    /// Where the cursor's row key is among the page's binds.
    pub after_at: Option<usize>,
    /// The connection's placeholder in `matches` and `page` (PostgreSQL's `$n` can be named again).
    pub connection: String,
    pub order: String,
    pub limit: i64,
    pub offset: i64,
}

/// The statement parts of a list request. `after_pk`: a cursor page's row key of the resource its
/// cursor names. The kind is a literal ([`live_kind`]).
pub(crate) fn list_plan(
    d: Dialect,
    registry: &SchemaRegistry,
    rt: &ResourceType,
    kind: ResourceKind,
    connection_id: &str,
    query: &crate::model::ListQuery,
    after_pk: Option<i64>,
) -> ScimResult<ListPlan> {
    let mut matches = SqlBuilder::new(d);
    matches.push("r.connection_id = ").text(connection_id);
    let connection = matches.sql["r.connection_id = ".len()..].to_string();
    matches.push(live_kind(kind));
    if let Some(f) = &query.filter {
        matches.push(" AND (");
        compile_filter(&mut matches, registry, rt, kind, connection_id, f)?;
        matches.push(")");
    }
    let mut page = matches.clone();
    let mut after_at = None;
    let (order, limit, offset) = match &query.paging {
        crate::model::Paging::Cursor { .. } => {
            if let Some(pk) = after_pk {
                after_at = Some(page.binds.len());
                page.push(" AND r.pk > ").bind(Bind::Int(pk));
            }
            ("r.pk ASC".to_string(), query.count + 1, 0)
        }
        crate::model::Paging::Index { start_index } => {
            let order = match &query.sort {
                Some(s) => order_by(d, registry, rt, kind, &s.path, s.order)?,
                None => "r.pk ASC".to_string(),
            };
            (order, query.count, start_index.saturating_sub(1).max(0))
        }
    };
    Ok(ListPlan {
        matches,
        page,
        after_at,
        connection,
        order,
        limit,
        offset,
    })
}

/// ` AND` the resource `r` is a live one of `kind`. The kind is a literal, not bound: only then can
/// the planners see that the partial indexes (`WHERE kind = 'User' AND deleted_us IS NULL`, the
/// unique `userName` and group `displayName`) apply, even with a generic plan.
pub(crate) fn live_kind(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => " AND r.kind = 'User' AND r.deleted_us IS NULL",
        ResourceKind::Group => " AND r.kind = 'Group' AND r.deleted_us IS NULL",
    }
}

/// The `ORDER BY` clause for `sortBy`, ending with the primary key so pages are stable.
pub fn order_by(
    d: Dialect,
    registry: &SchemaRegistry,
    rt: &ResourceType,
    kind: ResourceKind,
    path: &AttrPath,
    order: SortOrder,
) -> ScimResult<String> {
    let r = registry
        .resolve(rt, path)
        .ok_or_else(|| ScimError::invalid_value(format!("sortBy: \"{path}\" is not an attribute of {}", rt.name)))?;
    let sub = r.sub.map(|s| s.name.as_str());
    let col = match (r.extension_urn(), r.attr.name.as_str(), sub, kind) {
        (None, "id", None, _) => Some("r.id"),
        (None, "externalId", None, _) => Some("r.external_id"),
        (None, "userName", None, ResourceKind::User) => Some("r.user_name_ci"),
        (None, "displayName", None, _) => Some("r.display_name_ci"),
        (None, "active", None, ResourceKind::User) => Some("r.active"),
        (None, "meta", Some("created"), _) => Some("r.created_us"),
        (None, "meta", Some("lastModified"), _) => Some("r.modified_us"),
        (None, "meta", _, _) => Some("r.pk"),
        _ => None,
    };
    let expr = match col {
        Some(c) => c.to_string(),
        None => {
            let mut keys: Vec<&str> = Vec::new();
            if let Some(u) = r.extension_urn() {
                keys.push(u);
            }
            keys.push(&r.attr.name);
            if r.attr.multi_valued {
                let leaf = match (sub, r.attr.kind) {
                    (Some(s), _) => Some(s),
                    (None, AttributeType::Complex) => Some("value"),
                    _ => None,
                };
                let (from, elem) = json_elements(d, "r.doc_ci", &keys, "s")?;
                let val = match (leaf, d) {
                    (Some(l), _) => json_path(d, &elem, &[l])?,
                    (None, Dialect::Sqlite) => elem.clone(),
                    (None, Dialect::Postgres) => format!("({elem} #>> '{{}}')"),
                };
                let primary = match d {
                    Dialect::Sqlite => json_path(d, &elem, &["primary"])? + " = 1",
                    Dialect::Postgres => format!("({elem} ->> 'primary') = 'true'"),
                };
                let e = format!(
                    "COALESCE((SELECT {val} FROM {from} WHERE {primary} LIMIT 1), (SELECT {val} FROM {from} LIMIT 1))"
                );
                code_point_order(d, e)
            } else {
                if let Some(s) = sub {
                    keys.push(s);
                }
                code_point_order(d, json_path(d, "r.doc_ci", &keys)?)
            }
        }
    };
    Ok(match order {
        SortOrder::Ascending => format!("({expr}) IS NULL, {expr} ASC, r.pk ASC"),
        SortOrder::Descending => format!("({expr}) IS NOT NULL, {expr} DESC, r.pk DESC"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(d: Dialect, kind: ResourceKind, f: &str) -> SqlBuilder {
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type(kind.as_str()).unwrap().clone();
        let filter = Filter::parse(f).unwrap();
        let mut b = SqlBuilder::new(d);
        compile_filter(&mut b, &reg, &rt, kind, "c1", &filter).unwrap();
        b
    }

    #[test]
    fn hot_attributes_use_columns() {
        let b = compile(Dialect::Sqlite, ResourceKind::User, "userName eq \"ÅSA\"");
        assert_eq!(b.sql, "r.user_name_ci = ?");
        assert_eq!(b.binds, vec![Bind::Text("åsa".into())]);
        let b = compile(Dialect::Sqlite, ResourceKind::User, "externalId eq \"AbC\"");
        assert_eq!(b.sql, "r.external_id = ?");
        assert_eq!(b.binds, vec![Bind::Text("AbC".into())]);
        let b = compile(Dialect::Sqlite, ResourceKind::User, "emails.value eq \"A@B.C\"");
        assert!(b.sql.contains("resource_emails"), "{}", b.sql);
        // The lookup names the connection: the e-mail index leads with it.
        assert!(b.sql.contains("x.connection_id = ? AND x.value_ci = ?"), "{}", b.sql);
        assert_eq!(b.binds[0], Bind::Text("c1".into()));
        let b = compile(
            Dialect::Postgres,
            ResourceKind::Group,
            "displayName eq \"x\" and id eq \"y\"",
        );
        assert_eq!(b.sql, "(r.display_name_ci = $1::text AND r.id = $2::text)");
    }

    #[test]
    fn generic_attributes_use_json() {
        let b = compile(Dialect::Sqlite, ResourceKind::User, "name.familyName co \"O'Malley\"");
        assert_eq!(
            b.sql,
            "instr(json_extract(r.doc_ci, '$.\"name\".\"familyName\"'), ?) > 0"
        );
        let b = compile(
            Dialect::Sqlite,
            ResourceKind::User,
            "emails[type eq \"work\" and value ew \"@x.com\"]",
        );
        assert!(
            b.sql
                .starts_with("EXISTS (SELECT 1 FROM json_each(r.doc_ci, '$.\"emails\"') e1 WHERE"),
            "{}",
            b.sql
        );
        let b = compile(
            Dialect::Sqlite,
            ResourceKind::User,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"701984\"",
        );
        assert!(
            b.sql
                .contains("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
            "{}",
            b.sql
        );
        let b = compile(Dialect::Sqlite, ResourceKind::User, "not (title pr)");
        assert!(b.sql.starts_with("(NOT COALESCE(("), "{}", b.sql);
    }

    #[test]
    fn postgres_orders_text_by_code_point() {
        let b = compile(Dialect::Postgres, ResourceKind::User, "name.familyName gt \"m\"");
        assert_eq!(
            b.sql,
            "((r.doc_ci #>> '{\"name\",\"familyName\"}')) COLLATE \"C\" > $1::text"
        );
        let b = compile(Dialect::Sqlite, ResourceKind::User, "name.familyName gt \"m\"");
        assert_eq!(b.sql, "json_extract(r.doc_ci, '$.\"name\".\"familyName\"') > ?");
        let reg = SchemaRegistry::standard();
        let rt = reg.resource_type("User").unwrap();
        let path = AttrPath::parse("name.familyName").unwrap();
        let o = order_by(
            Dialect::Postgres,
            &reg,
            rt,
            ResourceKind::User,
            &path,
            SortOrder::Ascending,
        )
        .unwrap();
        assert!(o.contains("COLLATE \"C\""), "{o}");
        let path = AttrPath::parse("userName").unwrap();
        let o = order_by(
            Dialect::Postgres,
            &reg,
            rt,
            ResourceKind::User,
            &path,
            SortOrder::Descending,
        )
        .unwrap();
        assert_eq!(o, "(r.user_name_ci) IS NOT NULL, r.user_name_ci DESC, r.pk DESC");
    }

    #[test]
    fn postgres_json_booleans_compare_as_text() {
        let b = compile(Dialect::Postgres, ResourceKind::User, "emails[primary eq true]");
        assert!(b.sql.ends_with("WHERE (e1.v ->> 'primary') = $1::text)"), "{}", b.sql);
        assert_eq!(b.binds, vec![Bind::Text("true".into())]);
        let b = compile(Dialect::Postgres, ResourceKind::User, "active eq false");
        assert_eq!(b.sql, "r.active = $1::boolean");
    }
}
