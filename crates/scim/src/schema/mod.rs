//! The RFC 7643 schema model: attribute characteristics, schemas, resource types, and the registry
//! that resolves attribute paths case-insensitively and renders `/Schemas` and `/ResourceTypes`.

mod standard;

pub use standard::{
    ENTERPRISE_USER, GROUP, RESOURCE_TYPE, SCHEMA, SERVICE_PROVIDER_CONFIG, USER, common_attributes,
    enterprise_user_schema, group_schema, user_schema,
};

use crate::error::{ScimError, ScimResult};
use crate::path::AttrPath;
use serde_json::{Map, Value, json};

/// `type` of an attribute (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttributeType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Boolean => "boolean",
            AttributeType::Decimal => "decimal",
            AttributeType::Integer => "integer",
            AttributeType::DateTime => "dateTime",
            AttributeType::Binary => "binary",
            AttributeType::Reference => "reference",
            AttributeType::Complex => "complex",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "string" => AttributeType::String,
            "boolean" => AttributeType::Boolean,
            "decimal" => AttributeType::Decimal,
            "integer" => AttributeType::Integer,
            "datetime" => AttributeType::DateTime,
            "binary" => AttributeType::Binary,
            "reference" => AttributeType::Reference,
            "complex" => AttributeType::Complex,
            _ => return None,
        })
    }
    /// Types whose values are JSON strings.
    pub fn is_stringy(self) -> bool {
        matches!(
            self,
            AttributeType::String | AttributeType::DateTime | AttributeType::Binary | AttributeType::Reference
        )
    }
}

/// `mutability` (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "readonly" => Mutability::ReadOnly,
            "readwrite" => Mutability::ReadWrite,
            "immutable" => Mutability::Immutable,
            "writeonly" => Mutability::WriteOnly,
            _ => return None,
        })
    }
}

/// `returned` (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "always" => Returned::Always,
            "never" => Returned::Never,
            "default" => Returned::Default,
            "request" => Returned::Request,
            _ => return None,
        })
    }
}

/// `uniqueness` (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => Uniqueness::None,
            "server" => Uniqueness::Server,
            "global" => Uniqueness::Global,
            _ => return None,
        })
    }
}

/// One attribute and all its characteristics.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDef {
    pub name: String,
    pub kind: AttributeType,
    pub multi_valued: bool,
    pub description: String,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: Vec<String>,
    pub reference_types: Vec<String>,
    pub sub_attributes: Vec<AttributeDef>,
}

impl AttributeDef {
    /// A single-valued, optional, case-insensitive, readWrite string returned by default: the RFC defaults.
    pub fn new(name: &str, kind: AttributeType) -> Self {
        AttributeDef {
            name: name.to_string(),
            kind,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: Vec::new(),
            reference_types: Vec::new(),
            sub_attributes: Vec::new(),
        }
    }

    /// Looks a sub-attribute up by name, ignoring case.
    pub fn sub_attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Renders the attribute as in RFC 7643 §7.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("type".into(), json!(self.kind.as_str()));
        m.insert("multiValued".into(), json!(self.multi_valued));
        m.insert("description".into(), json!(self.description));
        m.insert("required".into(), json!(self.required));
        if self.kind == AttributeType::Complex {
            m.insert(
                "subAttributes".into(),
                Value::Array(self.sub_attributes.iter().map(AttributeDef::to_json).collect()),
            );
        } else {
            m.insert("caseExact".into(), json!(self.case_exact));
        }
        if !self.canonical_values.is_empty() {
            m.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        m.insert("mutability".into(), json!(self.mutability.as_str()));
        m.insert("returned".into(), json!(self.returned.as_str()));
        if self.kind != AttributeType::Complex {
            m.insert("uniqueness".into(), json!(self.uniqueness.as_str()));
        }
        if self.kind == AttributeType::Reference {
            m.insert("referenceTypes".into(), json!(self.reference_types));
        }
        Value::Object(m)
    }

    /// Parses an attribute definition in the RFC 7643 §7 JSON form, applying the RFC's defaults
    /// for characteristics that are left out.
    pub fn from_json(v: &Value) -> ScimResult<AttributeDef> {
        let o = v
            .as_object()
            .ok_or_else(|| ScimError::invalid_value("an attribute definition must be a JSON object"))?;
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_value("an attribute definition needs a string \"name\""))?;
        if !crate::path::is_attr_name(name) {
            return Err(ScimError::invalid_value(format!(
                "\"{name}\" is not a valid attribute name"
            )));
        }
        let enum_field = |key: &str| -> ScimResult<Option<&str>> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "attribute \"{name}\": \"{key}\" must be a string"
                ))),
            }
        };
        let bad = |key: &str, val: &str| {
            ScimError::invalid_value(format!("attribute \"{name}\": \"{val}\" is not a valid {key}"))
        };
        let kind = match enum_field("type")? {
            None => AttributeType::String,
            Some(t) => AttributeType::parse(t).ok_or_else(|| bad("type", t))?,
        };
        let mut a = AttributeDef::new(name, kind);
        let flag = |key: &str| -> ScimResult<Option<bool>> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "attribute \"{name}\": \"{key}\" must be a boolean"
                ))),
            }
        };
        a.multi_valued = flag("multiValued")?.unwrap_or(false);
        a.required = flag("required")?.unwrap_or(false);
        a.case_exact = flag("caseExact")?.unwrap_or(false);
        if let Some(d) = o.get("description").and_then(Value::as_str) {
            a.description = d.to_string();
        }
        if let Some(m) = enum_field("mutability")? {
            a.mutability = Mutability::parse(m).ok_or_else(|| bad("mutability", m))?;
        }
        if let Some(r) = enum_field("returned")? {
            a.returned = Returned::parse(r).ok_or_else(|| bad("returned", r))?;
        }
        if let Some(u) = enum_field("uniqueness")? {
            a.uniqueness = Uniqueness::parse(u).ok_or_else(|| bad("uniqueness", u))?;
        }
        let strings = |key: &str| -> Vec<String> {
            o.get(key)
                .and_then(Value::as_array)
                .map(|arr| arr.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        a.canonical_values = strings("canonicalValues");
        a.reference_types = strings("referenceTypes");
        if let Some(subs) = o.get("subAttributes").and_then(Value::as_array) {
            if kind != AttributeType::Complex {
                return Err(ScimError::invalid_value(format!(
                    "attribute \"{name}\" has subAttributes but is not complex"
                )));
            }
            for s in subs {
                let sub = AttributeDef::from_json(s)?;
                if sub.kind == AttributeType::Complex {
                    return Err(ScimError::invalid_value(format!(
                        "attribute \"{name}\": a sub-attribute may not be complex"
                    )));
                }
                a.sub_attributes.push(sub);
            }
        }
        Ok(a)
    }
}

/// A schema: an id (URN) and its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub id: String,
    pub name: String,
    pub description: String,
    pub attributes: Vec<AttributeDef>,
}

impl Schema {
    /// Looks a top-level attribute up by name, ignoring case.
    pub fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Renders the schema as served by `/Schemas/{id}` (without `meta.location`, which the caller adds).
    pub fn to_json(&self) -> Value {
        json!({
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(AttributeDef::to_json).collect::<Vec<_>>(),
            "meta": { "resourceType": "Schema" },
        })
    }

    /// Parses a schema definition in the RFC 7643 §7 form (as served by `/Schemas`).
    ///
    /// ```
    /// use rollcall_scim::schema::Schema;
    /// let s = Schema::from_json(&serde_json::json!({
    ///     "id": "urn:example:params:scim:schemas:extension:acme:2.0:User",
    ///     "name": "AcmeUser",
    ///     "attributes": [{"name": "badgeNumber", "type": "integer"}]
    /// })).unwrap();
    /// assert!(s.attribute("BADGENUMBER").is_some());
    /// ```
    pub fn from_json(v: &Value) -> ScimResult<Schema> {
        let o = v
            .as_object()
            .ok_or_else(|| ScimError::invalid_value("a schema definition must be a JSON object"))?;
        let id = o
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| s.len() > 4 && s.as_bytes()[..4].eq_ignore_ascii_case(b"urn:"))
            .ok_or_else(|| ScimError::invalid_value("a schema definition needs an \"id\" that is a URN"))?;
        let mut attributes = Vec::new();
        for a in o.get("attributes").and_then(Value::as_array).into_iter().flatten() {
            let def = AttributeDef::from_json(a)?;
            if attributes
                .iter()
                .any(|x: &AttributeDef| x.name.eq_ignore_ascii_case(&def.name))
            {
                return Err(ScimError::invalid_value(format!(
                    "schema {id}: attribute \"{}\" is defined twice",
                    def.name
                )));
            }
            attributes.push(def);
        }
        Ok(Schema {
            id: id.to_string(),
            name: o.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            description: o
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            attributes,
        })
    }
}

/// A schema extension attached to a resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaExtension {
    pub schema: String,
    pub required: bool,
}

/// A resource type (RFC 7643 §6).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub description: String,
    pub schema: String,
    pub schema_extensions: Vec<SchemaExtension>,
}

impl ResourceType {
    pub fn to_json(&self) -> Value {
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema,
            "schemaExtensions": self.schema_extensions.iter().map(|e| json!({
                "schema": e.schema, "required": e.required
            })).collect::<Vec<_>>(),
            "meta": { "resourceType": "ResourceType" },
        })
    }
}

/// What an [`AttrPath`] designates once resolved against a resource type.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedAttr<'a> {
    /// The schema the attribute belongs to (`None` for the common attributes `id`, `externalId`, `meta`).
    pub schema: Option<&'a Schema>,
    /// True when the schema is an extension (its attributes live under the URN key in documents).
    pub in_extension: bool,
    /// The top-level attribute.
    pub attr: &'a AttributeDef,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'a AttributeDef>,
}

impl<'a> ResolvedAttr<'a> {
    /// The attribute the path ends on: the sub-attribute if there is one, else the top-level attribute.
    pub fn leaf(&self) -> &'a AttributeDef {
        self.sub.unwrap_or(self.attr)
    }
    /// The key under which the attribute's schema keeps its values in a document, if it is an extension.
    pub fn extension_urn(&self) -> Option<&'a str> {
        if self.in_extension {
            self.schema.map(|s| s.id.as_str())
        } else {
            None
        }
    }
}

/// The schemas and resource types a service provider knows about.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    schemas: Vec<Schema>,
    resource_types: Vec<ResourceType>,
    common: Vec<AttributeDef>,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::standard()
    }
}

impl SchemaRegistry {
    /// The registry with core `User` (with the Enterprise extension) and `Group`.
    pub fn standard() -> Self {
        SchemaRegistry {
            schemas: vec![user_schema(), group_schema(), enterprise_user_schema()],
            resource_types: vec![
                ResourceType {
                    id: "User".into(),
                    name: "User".into(),
                    endpoint: "/Users".into(),
                    description: "User Account".into(),
                    schema: USER.into(),
                    schema_extensions: vec![SchemaExtension {
                        schema: ENTERPRISE_USER.into(),
                        required: false,
                    }],
                },
                ResourceType {
                    id: "Group".into(),
                    name: "Group".into(),
                    endpoint: "/Groups".into(),
                    description: "Group".into(),
                    schema: GROUP.into(),
                    schema_extensions: vec![],
                },
            ],
            common: common_attributes(),
        }
    }

    /// Registers a custom extension schema from its JSON definition and attaches it to a resource type.
    pub fn register_extension(&mut self, resource_type: &str, definition: &Value, required: bool) -> ScimResult<()> {
        let schema = Schema::from_json(definition)?;
        if self.schema(&schema.id).is_some() {
            return Err(ScimError::uniqueness(format!(
                "schema {} is already registered",
                schema.id
            )));
        }
        let rt = self
            .resource_types
            .iter_mut()
            .find(|r| r.id.eq_ignore_ascii_case(resource_type))
            .ok_or_else(|| ScimError::invalid_value(format!("unknown resource type \"{resource_type}\"")))?;
        rt.schema_extensions.push(SchemaExtension {
            schema: schema.id.clone(),
            required,
        });
        self.schemas.push(schema);
        Ok(())
    }

    pub fn schemas(&self) -> &[Schema] {
        &self.schemas
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    /// A schema by URN, ignoring case.
    pub fn schema(&self, id: &str) -> Option<&Schema> {
        self.schemas.iter().find(|s| s.id.eq_ignore_ascii_case(id))
    }

    /// A resource type by id or name (`User`), ignoring case.
    pub fn resource_type(&self, id: &str) -> Option<&ResourceType> {
        self.resource_types
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(id) || r.name.eq_ignore_ascii_case(id))
    }

    /// The common attributes (`id`, `externalId`, `meta`) of every resource.
    pub fn common_attributes(&self) -> &[AttributeDef] {
        &self.common
    }

    /// The extension schemas of a resource type.
    pub fn extensions<'a>(&'a self, rt: &'a ResourceType) -> impl Iterator<Item = &'a Schema> + 'a {
        rt.schema_extensions.iter().filter_map(|e| self.schema(&e.schema))
    }

    /// True when `urn` is the core schema or one of the extension schemas of `rt`.
    pub fn is_schema_of(&self, rt: &ResourceType, urn: &str) -> bool {
        rt.schema.eq_ignore_ascii_case(urn) || rt.schema_extensions.iter().any(|e| e.schema.eq_ignore_ascii_case(urn))
    }

    /// If `urn` is an extension schema of `rt`, returns it.
    pub fn extension_schema<'a>(&'a self, rt: &ResourceType, urn: &str) -> Option<&'a Schema> {
        rt.schema_extensions
            .iter()
            .find(|e| e.schema.eq_ignore_ascii_case(urn))
            .and_then(|e| self.schema(&e.schema))
    }

    /// Finds a top-level attribute of a resource type. With a URN, only that schema is searched;
    /// without one, the common attributes, the core schema and then the extensions are searched.
    pub fn find_attribute<'a>(&'a self, rt: &ResourceType, urn: Option<&str>, name: &str) -> Option<ResolvedAttr<'a>> {
        let core = self.schema(&rt.schema)?;
        match urn {
            Some(u) if u.eq_ignore_ascii_case(&rt.schema) => {
                if let Some(a) = self.common.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
                    return Some(ResolvedAttr {
                        schema: None,
                        in_extension: false,
                        attr: a,
                        sub: None,
                    });
                }
                core.attribute(name).map(|a| ResolvedAttr {
                    schema: Some(core),
                    in_extension: false,
                    attr: a,
                    sub: None,
                })
            }
            Some(u) => {
                let ext = self.extension_schema(rt, u)?;
                ext.attribute(name).map(|a| ResolvedAttr {
                    schema: Some(ext),
                    in_extension: true,
                    attr: a,
                    sub: None,
                })
            }
            None => {
                if let Some(a) = self.common.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
                    return Some(ResolvedAttr {
                        schema: None,
                        in_extension: false,
                        attr: a,
                        sub: None,
                    });
                }
                if let Some(a) = core.attribute(name) {
                    return Some(ResolvedAttr {
                        schema: Some(core),
                        in_extension: false,
                        attr: a,
                        sub: None,
                    });
                }
                let registry: &'a SchemaRegistry = self;
                rt.schema_extensions
                    .iter()
                    .filter_map(|e| registry.schema(&e.schema))
                    .find_map(|ext| {
                        ext.attribute(name).map(|a| ResolvedAttr {
                            schema: Some(ext),
                            in_extension: true,
                            attr: a,
                            sub: None,
                        })
                    })
            }
        }
    }

    /// Resolves an attribute path against a resource type. Returns `None` for unknown attributes
    /// or sub-attributes.
    pub fn resolve<'a>(&'a self, rt: &ResourceType, path: &AttrPath) -> Option<ResolvedAttr<'a>> {
        let mut r = self.find_attribute(rt, path.schema.as_deref(), &path.attr)?;
        if let Some(sub) = &path.sub_attr {
            r.sub = Some(r.attr.sub_attribute(sub)?);
        }
        Some(r)
    }

    /// Like [`resolve`](Self::resolve), but answers an `invalidPath`/`invalidFilter`-style error naming
    /// the unknown attribute.
    pub fn resolve_or_err<'a>(&'a self, rt: &ResourceType, path: &AttrPath) -> ScimResult<ResolvedAttr<'a>> {
        self.resolve(rt, path)
            .ok_or_else(|| ScimError::invalid_path(format!("\"{path}\" is not an attribute of {}", rt.name)))
    }

    /// `/Schemas` as a list response body.
    pub fn schemas_json(&self) -> Vec<Value> {
        self.schemas.iter().map(Schema::to_json).collect()
    }

    /// `/ResourceTypes` as a list of resources.
    pub fn resource_types_json(&self) -> Vec<Value> {
        self.resource_types.iter().map(ResourceType::to_json).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_case_insensitively_with_and_without_urn() {
        let reg = SchemaRegistry::standard();
        let user = reg.resource_type("user").unwrap();
        let r = reg.resolve(user, &AttrPath::parse("USERNAME").unwrap()).unwrap();
        assert_eq!(r.attr.name, "userName");
        assert!(!r.in_extension);
        let r = reg
            .resolve(
                user,
                &AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.GIVENname").unwrap(),
            )
            .unwrap();
        assert_eq!(r.leaf().name, "givenName");
        let r = reg.resolve(user, &AttrPath::parse("employeeNumber").unwrap()).unwrap();
        assert!(r.in_extension);
        assert_eq!(r.extension_urn(), Some(ENTERPRISE_USER));
        let r = reg
            .resolve(
                user,
                &AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").unwrap(),
            )
            .unwrap();
        assert_eq!(r.leaf().name, "value");
        assert!(
            reg.resolve(user, &AttrPath::parse("meta.lastModified").unwrap())
                .is_some()
        );
        assert!(reg.resolve(user, &AttrPath::parse("nosuch").unwrap()).is_none());
        assert!(reg.resolve(user, &AttrPath::parse("name.nosuch").unwrap()).is_none());
        let group = reg.resource_type("Group").unwrap();
        assert!(reg.resolve(group, &AttrPath::parse("members.value").unwrap()).is_some());
        assert!(reg.resolve(group, &AttrPath::parse("userName").unwrap()).is_none());
    }

    #[test]
    fn schema_json_round_trips() {
        for s in SchemaRegistry::standard().schemas() {
            let back = Schema::from_json(&s.to_json()).unwrap();
            assert_eq!(&back, s);
        }
    }

    #[test]
    fn registers_custom_extension() {
        let mut reg = SchemaRegistry::standard();
        reg.register_extension(
            "User",
            &json!({
                "id": "urn:example:scim:schemas:extension:acme:1.0:User",
                "name": "Acme",
                "attributes": [
                    {"name": "badge", "type": "integer", "required": false},
                    {"name": "site", "type": "complex", "subAttributes": [{"name": "code", "type": "string", "caseExact": true}]}
                ]
            }),
            false,
        )
        .unwrap();
        let user = reg.resource_type("User").unwrap();
        let r = reg.resolve(user, &AttrPath::parse("site.CODE").unwrap()).unwrap();
        assert!(r.leaf().case_exact);
        assert_eq!(
            reg.resource_types_json()[0]["schemaExtensions"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let err = reg
            .register_extension("User", &json!({"id": "not-a-urn", "attributes": []}), false)
            .unwrap_err();
        assert_eq!(err.status, 400);
    }
}
