//! The things Rollcall stores.

use rollcall_scim::filter::Filter;
use rollcall_scim::path::AttrPath;
use rollcall_scim::sort::SortOrder;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// An organization: a customer of the application that runs Rollcall.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_us: i64,
}

/// The identity provider behind a SCIM connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdpKind {
    Okta,
    Entra,
    Google,
    Onelogin,
    Jumpcloud,
    Ping,
    Generic,
}

impl IdpKind {
    pub const ALL: [IdpKind; 7] = [
        IdpKind::Okta,
        IdpKind::Entra,
        IdpKind::Google,
        IdpKind::Onelogin,
        IdpKind::Jumpcloud,
        IdpKind::Ping,
        IdpKind::Generic,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            IdpKind::Okta => "okta",
            IdpKind::Entra => "entra",
            IdpKind::Google => "google",
            IdpKind::Onelogin => "onelogin",
            IdpKind::Jumpcloud => "jumpcloud",
            IdpKind::Ping => "ping",
            IdpKind::Generic => "generic",
        }
    }
}

impl fmt::Display for IdpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        let s = match s.as_str() {
            "azure" | "azuread" | "entraid" | "microsoft" => "entra",
            "google-workspace" | "workspace" => "google",
            "pingfederate" | "pingone" => "ping",
            other => other,
        };
        IdpKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "unknown identity provider \"{s}\"; expected one of: {}",
                IdpKind::ALL.map(|k| k.as_str()).join(", ")
            )
        })
    }
}

/// A SCIM connection: one identity provider pushing into one organization, with its own base URL
/// and bearer token.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Connection {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub idp: IdpKind,
    /// The first characters of the token, to recognise it in lists (never enough to use it).
    pub token_prefix: String,
    #[serde(skip)]
    pub token_hash: [u8; 32],
    pub created_us: i64,
}

/// What is needed to create a connection.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub org_id: String,
    pub name: String,
    pub idp: IdpKind,
    pub token_hash: [u8; 32],
    pub token_prefix: String,
}

/// User or Group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    pub fn parse(s: &str) -> Option<ResourceKind> {
        if s.eq_ignore_ascii_case("User") {
            Some(ResourceKind::User)
        } else if s.eq_ignore_ascii_case("Group") {
            Some(ResourceKind::Group)
        } else {
            None
        }
    }
}

/// A member of a group, as read back (with the member's current display name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub id: String,
    pub kind: ResourceKind,
    pub display: Option<String>,
}

/// A resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub id: String,
    pub kind: ResourceKind,
    /// Canonical document without `meta` (and, for groups, without `members`).
    pub doc: Value,
    pub version: i64,
    pub created_us: i64,
    pub modified_us: i64,
    /// Group members, or a user's groups, when asked for.
    pub related: Option<Vec<MemberView>>,
}

/// Who is writing, recorded with each event.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    pub org_id: String,
    pub connection_id: String,
    /// The client's User-Agent, if any.
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Sorting for a list.
#[derive(Debug, Clone)]
pub struct Sort {
    pub path: AttrPath,
    pub order: SortOrder,
}

/// Paging: RFC 7644 index paging or RFC 9865 cursor paging.
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    /// 1-based `startIndex`.
    Index { start_index: i64 },
    /// `cursor`: empty for the first page.
    Cursor { after_pk: i64 },
}

/// A list request, validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort: Option<Sort>,
    pub paging: Paging,
    pub count: i64,
    /// Whether group members / user groups are wanted in the results.
    pub with_members: bool,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    pub total: i64,
    pub resources: Vec<StoredResource>,
    /// For cursor paging: the cursor of the next page, if there is one.
    pub next_after_pk: Option<i64>,
}

/// A recorded change.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub org_id: Option<String>,
    pub connection_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub data: Value,
    pub created_us: i64,
}
