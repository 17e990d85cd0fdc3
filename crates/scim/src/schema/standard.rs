//! The standard schemas of RFC 7643 §4 and §8.7.1: core User, Group and the Enterprise User extension,
//! plus the common attributes of §3.1.

use super::{AttributeDef, AttributeType as T, Mutability, Returned, Schema, Uniqueness};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// A small builder so the RFC's attribute tables read as tables.
struct A(AttributeDef);

fn a(name: &str, kind: T) -> A {
    A(AttributeDef::new(name, kind))
}
fn s(name: &str) -> A {
    a(name, T::String)
}

impl A {
    fn desc(mut self, d: &str) -> Self {
        self.0.description = d.to_string();
        self
    }
    fn multi(mut self) -> Self {
        self.0.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.0.required = true;
        self
    }
    fn exact(mut self) -> Self {
        self.0.case_exact = true;
        self
    }
    fn read_only(mut self) -> Self {
        self.0.mutability = Mutability::ReadOnly;
        self
    }
    fn immutable(mut self) -> Self {
        self.0.mutability = Mutability::Immutable;
        self
    }
    fn write_only(mut self) -> Self {
        self.0.mutability = Mutability::WriteOnly;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.0.returned = r;
        self
    }
    fn unique(mut self, u: Uniqueness) -> Self {
        self.0.uniqueness = u;
        self
    }
    fn canonical(mut self, values: &[&str]) -> Self {
        self.0.canonical_values = values.iter().map(|v| v.to_string()).collect();
        self
    }
    fn refs(mut self, types: &[&str]) -> Self {
        self.0.kind = T::Reference;
        self.0.reference_types = types.iter().map(|v| v.to_string()).collect();
        self
    }
    fn subs(mut self, subs: Vec<A>) -> Self {
        self.0.kind = T::Complex;
        self.0.sub_attributes = subs.into_iter().map(|a| a.0).collect();
        self
    }
    fn done(self) -> AttributeDef {
        self.0
    }
}

/// The sub-attributes shared by most multi-valued attributes: value, display, type, primary.
fn multi_valued_subs(value: A, types: &[&str]) -> Vec<A> {
    vec![
        value,
        s("display").desc("A human-readable name, primarily used for display purposes."),
        s("type")
            .canonical(types)
            .desc("A label indicating the attribute's function."),
        a("primary", T::Boolean).desc("A Boolean value indicating the 'primary' or preferred attribute value."),
    ]
}

/// `id`, `externalId` and `meta` (RFC 7643 §3.1), which every resource has.
pub fn common_attributes() -> Vec<AttributeDef> {
    vec![
        s("id")
            .exact()
            .read_only()
            .returned(Returned::Always)
            .unique(Uniqueness::Server)
            .desc("Unique identifier for the SCIM resource as defined by the Service Provider.")
            .done(),
        s("externalId")
            .exact()
            .desc("A String that is an identifier for the resource as defined by the provisioning client.")
            .done(),
        s("meta")
            .read_only()
            .desc("A complex attribute containing resource metadata.")
            .subs(vec![
                s("resourceType").exact().read_only(),
                a("created", T::DateTime).read_only(),
                a("lastModified", T::DateTime).read_only(),
                s("location").refs(&["uri"]).exact().read_only(),
                s("version").exact().read_only(),
            ])
            .done(),
    ]
}

/// The core User schema (RFC 7643 §4.1, §8.7.1).
pub fn user_schema() -> Schema {
    let attributes = vec![
        s("userName")
            .required()
            .unique(Uniqueness::Server)
            .desc("Unique identifier for the User, typically used by the user to directly authenticate to the service provider.")
            .done(),
        s("name")
            .desc("The components of the user's real name.")
            .subs(vec![
                s("formatted"),
                s("familyName"),
                s("givenName"),
                s("middleName"),
                s("honorificPrefix"),
                s("honorificSuffix"),
            ])
            .done(),
        s("displayName").desc("The name of the User, suitable for display to end-users.").done(),
        s("nickName").desc("The casual way to address the user in real life.").done(),
        s("profileUrl").refs(&["external"]).desc("A fully qualified URL pointing to a page representing the User's online profile.").done(),
        s("title").desc("The user's title, such as \"Vice President\".").done(),
        s("userType").desc("Used to identify the relationship between the organization and the user.").done(),
        s("preferredLanguage").desc("Indicates the User's preferred written or spoken language.").done(),
        s("locale").desc("Used to indicate the User's default location for purposes of localizing items.").done(),
        s("timezone").desc("The User's time zone in the 'Olson' time zone database format.").done(),
        a("active", T::Boolean).desc("A Boolean value indicating the User's administrative status.").done(),
        s("password")
            .write_only()
            .returned(Returned::Never)
            .desc("The User's cleartext password, used to set or compare a password. Never returned.")
            .done(),
        s("emails")
            .multi()
            .desc("Email addresses for the user.")
            .subs(multi_valued_subs(s("value").desc("Email addresses for the user."), &["work", "home", "other"]))
            .done(),
        s("phoneNumbers")
            .multi()
            .desc("Phone numbers for the User.")
            .subs(multi_valued_subs(s("value"), &["work", "home", "mobile", "fax", "pager", "other"]))
            .done(),
        s("ims")
            .multi()
            .desc("Instant messaging addresses for the User.")
            .subs(multi_valued_subs(
                s("value"),
                &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
            ))
            .done(),
        s("photos")
            .multi()
            .desc("URLs of photos of the User.")
            .subs(multi_valued_subs(s("value").refs(&["external"]), &["photo", "thumbnail"]))
            .done(),
        s("addresses")
            .multi()
            .desc("A physical mailing address for this User.")
            .subs(vec![
                s("formatted"),
                s("streetAddress"),
                s("locality"),
                s("region"),
                s("postalCode"),
                s("country"),
                s("type").canonical(&["work", "home", "other"]),
                a("primary", T::Boolean),
            ])
            .done(),
        s("groups")
            .multi()
            .read_only()
            .desc("A list of groups to which the user belongs, either through direct membership, through nested groups, or dynamically calculated.")
            .subs(vec![
                s("value").read_only(),
                s("$ref").refs(&["User", "Group"]).read_only(),
                s("display").read_only(),
                s("type").canonical(&["direct", "indirect"]).read_only(),
            ])
            .done(),
        s("entitlements")
            .multi()
            .desc("A list of entitlements for the User that represent a thing the User has.")
            .subs(multi_valued_subs(s("value"), &[]))
            .done(),
        s("roles")
            .multi()
            .desc("A list of roles for the User that collectively represent who the User is.")
            .subs(multi_valued_subs(s("value"), &[]))
            .done(),
        s("x509Certificates")
            .multi()
            .desc("A list of certificates issued to the User.")
            .subs(multi_valued_subs(a("value", T::Binary), &[]))
            .done(),
    ];
    Schema {
        id: USER.into(),
        name: "User".into(),
        description: "User Account".into(),
        attributes,
    }
}

/// The core Group schema (RFC 7643 §4.2).
pub fn group_schema() -> Schema {
    Schema {
        id: GROUP.into(),
        name: "Group".into(),
        description: "Group".into(),
        attributes: vec![
            s("displayName")
                .required()
                .desc("A human-readable name for the Group.")
                .done(),
            s("members")
                .multi()
                .desc("A list of members of the Group.")
                .subs(vec![
                    s("value").immutable(),
                    s("$ref").refs(&["User", "Group"]).immutable(),
                    s("display").read_only(),
                    s("type").canonical(&["User", "Group"]).immutable(),
                ])
                .done(),
        ],
    }
}

/// The Enterprise User extension (RFC 7643 §4.3).
pub fn enterprise_user_schema() -> Schema {
    Schema {
        id: ENTERPRISE_USER.into(),
        name: "EnterpriseUser".into(),
        description: "Enterprise User".into(),
        attributes: vec![
            s("employeeNumber")
                .desc("Numeric or alphanumeric identifier assigned to a person.")
                .done(),
            s("costCenter").desc("Identifies the name of a cost center.").done(),
            s("organization").desc("Identifies the name of an organization.").done(),
            s("division").desc("Identifies the name of a division.").done(),
            s("department").desc("Identifies the name of a department.").done(),
            s("manager")
                .desc("The User's manager.")
                .subs(vec![
                    s("value").desc("The id of the SCIM resource representing the User's manager."),
                    s("$ref").refs(&["User"]),
                    s("displayName").read_only(),
                ])
                .done(),
        ],
    }
}
