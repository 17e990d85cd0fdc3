//! Checks a parsed filter against the schemas of a resource type.

use super::{CompareOp, Filter};
use crate::error::{ScimError, ScimResult};
use crate::path::AttrPath;
use crate::schema::{AttributeDef, AttributeType, ResourceType, SchemaRegistry};

impl Filter {
    /// Checks the filter against resource type `rt`: every attribute must exist, and operators must
    /// suit the attribute's type. Fails with `invalidFilter` for:
    /// - unknown attributes (all of them are named in the detail);
    /// - `gt`/`ge`/`lt`/`le` on boolean, binary or complex attributes;
    /// - `co`/`sw`/`ew` on booleans;
    /// - comparing a complex attribute that has no `value` sub-attribute as a whole;
    /// - a value path `attr[...]` whose attribute is unknown or not complex.
    ///
    /// Paths inside a value path are resolved as sub-attributes of the outer attribute.
    ///
    /// ```
    /// use rollcall_scim::filter::Filter;
    /// use rollcall_scim::schema::SchemaRegistry;
    /// let reg = SchemaRegistry::standard();
    /// let user = reg.resource_type("User").unwrap();
    /// assert!(Filter::parse(r#"emails[type eq "work"]"#).unwrap().validate(&reg, user).is_ok());
    /// let err = Filter::parse("active gt true or shoeSize pr").unwrap().validate(&reg, user).unwrap_err();
    /// assert!(err.detail.contains("shoeSize"));
    /// ```
    pub fn validate(&self, registry: &SchemaRegistry, rt: &ResourceType) -> ScimResult<()> {
        let mut v = Validator {
            registry,
            rt,
            unknown: Vec::new(),
            problem: None,
        };
        v.walk(self, None);
        if !v.unknown.is_empty() {
            let names = v
                .unknown
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let (noun, verb) = if v.unknown.len() == 1 {
                ("attribute", "is")
            } else {
                ("attributes", "are")
            };
            return Err(ScimError::invalid_filter(format!(
                "the filter refers to unknown {noun} {names}, which {verb} not defined for {} resources",
                rt.name
            )));
        }
        match v.problem {
            Some(p) => Err(ScimError::invalid_filter(p)),
            None => Ok(()),
        }
    }
}

struct Validator<'a> {
    registry: &'a SchemaRegistry,
    rt: &'a ResourceType,
    /// Unknown attribute paths, in order of appearance, without duplicates.
    unknown: Vec<String>,
    /// The first problem other than an unknown attribute.
    problem: Option<String>,
}

impl Validator<'_> {
    fn unknown(&mut self, name: String) {
        if !self.unknown.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            self.unknown.push(name);
        }
    }

    fn problem(&mut self, p: String) {
        if self.problem.is_none() {
            self.problem = Some(p);
        }
    }

    /// The attribute `path` designates, with its display name; records unknown attributes.
    /// `parent` is the value path being walked, if any.
    fn lookup(&mut self, path: &AttrPath, parent: Option<(&AttrPath, &AttributeDef)>) -> Option<AttributeDef> {
        match parent {
            None => match self.registry.resolve(self.rt, path) {
                Some(r) => Some(r.leaf().clone()),
                None => {
                    self.unknown(path.to_string());
                    None
                }
            },
            Some((ppath, pdef)) => {
                if path.schema.is_some() || path.sub_attr.is_some() {
                    self.problem(format!(
                        "inside \"{ppath}[...]\" attribute paths name sub-attributes of \"{}\" and must be plain names, found \"{path}\"",
                        pdef.name
                    ));
                    return None;
                }
                match pdef.sub_attribute(&path.attr) {
                    Some(d) => Some(d.clone()),
                    None => {
                        self.unknown(format!("{ppath}.{}", path.attr));
                        None
                    }
                }
            }
        }
    }

    fn walk(&mut self, f: &Filter, parent: Option<(&AttrPath, &AttributeDef)>) {
        match f {
            Filter::Present { path } => {
                self.lookup(path, parent);
            }
            Filter::Compare { path, op, .. } => {
                if let Some(def) = self.lookup(path, parent) {
                    self.check_op(path, &def, *op);
                }
            }
            Filter::ValuePath { path, filter } => {
                if let Some((ppath, _)) = parent {
                    self.problem(format!(
                        "value paths cannot be nested: \"{path}[...]\" is inside \"{ppath}[...]\""
                    ));
                    return;
                }
                if path.sub_attr.is_some() {
                    self.problem(format!(
                        "a value filter \"[...]\" must follow an attribute, not the sub-attribute path \"{path}\""
                    ));
                    return;
                }
                let Some(def) = self.lookup(path, None) else { return };
                if def.kind != AttributeType::Complex {
                    self.problem(format!(
                        "\"{path}\" is not a complex attribute, so it cannot take a value filter \"[...]\""
                    ));
                    return;
                }
                self.walk(filter, Some((path, &def)));
            }
            Filter::Not(inner) => self.walk(inner, parent),
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.walk(a, parent);
                self.walk(b, parent);
            }
        }
    }

    fn check_op(&mut self, path: &AttrPath, def: &AttributeDef, op: CompareOp) {
        let o = op.as_str();
        let mut kind = def.kind;
        if kind == AttributeType::Complex {
            if op.is_ordering() {
                self.problem(format!(
                    "\"{path}\" is a complex attribute; \"{o}\" can only compare strings, numbers and dates"
                ));
                return;
            }
            match def.sub_attribute("value") {
                Some(v) => kind = v.kind,
                None => {
                    self.problem(format!(
                        "\"{path}\" is a complex attribute; compare one of its sub-attributes (\"{path}.subAttribute\")"
                    ));
                    return;
                }
            }
        }
        if op.is_ordering() && matches!(kind, AttributeType::Boolean | AttributeType::Binary) {
            self.problem(format!(
                "\"{path}\" is a {} attribute; \"{o}\" can only compare strings, numbers and dates",
                kind.as_str()
            ));
        } else if op.is_substring() && kind == AttributeType::Boolean {
            self.problem(format!(
                "\"{path}\" is a boolean attribute; \"{o}\" only applies to strings (use eq or ne)"
            ));
        }
    }
}
