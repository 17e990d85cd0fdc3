//! The things Rollcall stores.

pub use crate::resource_doc::ResourceDoc;
use rollcall_scim::filter::Filter;
use rollcall_scim::path::AttrPath;
use rollcall_scim::sort::SortOrder;
use serde::{Deserialize, Serialize};
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

/// Whether a connection accepts SCIM requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    Active,
    /// Its tokens are kept but every SCIM request is refused (401) until it is enabled again.
    Disabled,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(ConnectionStatus::Active),
            "disabled" => Ok(ConnectionStatus::Disabled),
            other => Err(format!(
                "unknown connection status \"{other}\"; expected \"active\" or \"disabled\""
            )),
        }
    }
}

/// A SCIM connection: one identity provider pushing into one organization, with its own base URL
/// and bearer token.
///
/// During a token rotation it has two tokens, the current one and the next one, and both work; after
/// its tokens are revoked it has none until a new one is issued.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Connection {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub idp: IdpKind,
    /// Whether the identity provider pushes over SCIM, or Rollcall reads its directory
    /// ([`crate::directory_sync`]); a directory connection has no token.
    pub kind: crate::directory_sync::ConnectionKind,
    pub status: ConnectionStatus,
    /// The first characters of the token, to recognise it in lists (never enough to use it);
    /// `None` when the connection has no token.
    pub token_prefix: Option<String>,
    #[serde(skip)]
    pub token_hash: Option<[u8; 32]>,
    /// The token issued by a rotation in progress.
    pub next_token_prefix: Option<String>,
    #[serde(skip)]
    pub next_token_hash: Option<[u8; 32]>,
    /// When the rotation in progress started.
    pub rotation_started_us: Option<i64>,
    pub created_us: i64,
    /// When a SCIM request last authenticated on this connection (recorded at most about once a
    /// minute per node), and with which User-Agent.
    pub last_request_us: Option<i64>,
    pub last_user_agent: Option<String>,
    /// The identity provider recognised from the requests (their User-Agent), which may differ from
    /// the configured `idp`; when it was first recognised, and last seen (recorded with the last
    /// request, so at most about once a minute per node).
    pub detected_idp: Option<IdpKind>,
    pub detected_idp_first_seen_us: Option<i64>,
    pub detected_idp_last_seen_us: Option<i64>,
    /// Its attribute and lifecycle policy.
    pub policy: ConnectionPolicy,
    /// Whether the request log keeps the bodies of this connection's SCIM requests and responses
    /// (redacted): switched on by an operator while diagnosing an identity provider.
    pub debug_logging: bool,
    /// When the connection was put into staging ([`crate::staging`]); `None` while it is live.
    /// While staging, the identity provider is answered and its changes stored as always, but
    /// the application hears nothing of its users and groups.
    pub staged_us: Option<i64>,
}

/// What happens to a user the identity provider deletes (`DELETE /Users/{id}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// The user leaves SCIM (404 from then on) but the directory keeps its record with status
    /// `deleted` and no roles, so the application can still tell who it was.
    #[default]
    Retain,
    /// The user's record, attributes and membership are erased; only its events remain.
    Purge,
}

/// A connection's attribute and lifecycle policy for users (see `rollcall_scim::policy`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPolicy {
    /// Attribute paths a user must carry (a create or replace without one is a 400 naming it).
    #[serde(default)]
    pub required_attributes: Vec<String>,
    /// When set, only these attributes (plus `userName`, `active`, `externalId`) are stored.
    #[serde(default)]
    pub synced_attributes: Option<Vec<String>>,
    /// Profile key → attribute path for the directory's flat profile; `None`: the default profile.
    #[serde(default)]
    pub profile_mapping: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub on_delete: OnDelete,
}

impl ConnectionPolicy {
    /// From the stored JSON (`NULL` or unreadable: the default policy).
    pub fn from_stored(text: Option<&str>) -> ConnectionPolicy {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }
}

impl Connection {
    /// Whether `hash` is the hash of one of this connection's tokens (compared in constant time).
    pub fn token_matches(&self, hash: &[u8; 32]) -> bool {
        use subtle::ConstantTimeEq;
        let eq = |stored: &Option<[u8; 32]>| stored.as_ref().is_some_and(|s| bool::from(s.ct_eq(hash)));
        // Both are compared, whatever the first answers.
        let current = eq(&self.token_hash);
        let next = eq(&self.next_token_hash);
        current | next
    }

    /// The prefix of the token that hashes to `hash`: the current one or, during a rotation, the
    /// next one (compared in constant time); `None` when neither matches.
    pub fn matching_token_prefix(&self, hash: &[u8; 32]) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let eq = |stored: &Option<[u8; 32]>| stored.as_ref().is_some_and(|s| bool::from(s.ct_eq(hash)));
        let current = eq(&self.token_hash);
        let next = eq(&self.next_token_hash);
        if current {
            self.token_prefix.as_deref()
        } else if next {
            self.next_token_prefix.as_deref()
        } else {
            None
        }
    }
}

/// What is needed to create a connection (created active, with one token).
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub org_id: String,
    pub name: String,
    pub idp: IdpKind,
    pub token_hash: [u8; 32],
    pub token_prefix: String,
}

/// A change to a connection's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub name: Option<String>,
    pub idp: Option<IdpKind>,
    pub status: Option<ConnectionStatus>,
    /// Whether the request log keeps (redacted) request and response bodies.
    pub debug_logging: Option<bool>,
}

/// An operator API key for the management API. Only its hash is stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the key, to recognise it in lists.
    pub key_prefix: String,
    #[serde(skip)]
    pub key_hash: [u8; 32],
    pub created_us: i64,
    /// When it was revoked; a revoked key no longer authenticates.
    pub revoked_us: Option<i64>,
}

/// What is needed to create an API key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub key_hash: [u8; 32],
    pub key_prefix: String,
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

impl MemberView {
    /// From `(id, kind, display)` as the stores read them back in one JSON array.
    pub fn from_rows(rows: Vec<(String, String, Option<String>)>) -> Vec<MemberView> {
        rows.into_iter()
            .map(|(id, kind, display)| MemberView {
                id,
                kind: ResourceKind::parse(&kind).unwrap_or(ResourceKind::User),
                display,
            })
            .collect()
    }
}

/// A resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub id: String,
    pub kind: ResourceKind,
    /// Canonical document with `id`, without `meta` (and, for groups, without `members`).
    pub doc: ResourceDoc,
    pub version: i64,
    pub created_us: i64,
    pub modified_us: i64,
    /// Group members, or a user's groups, when asked for.
    pub related: Option<Vec<MemberView>>,
}

impl StoredResource {
    /// A resource as its create stored it (`doc` with its `id`): version 1, created and modified
    /// at `now`.
    pub(crate) fn created(id: String, kind: ResourceKind, doc: Value, now: i64) -> StoredResource {
        StoredResource {
            id,
            kind,
            doc: doc.into(),
            version: 1,
            created_us: now,
            modified_us: now,
            related: None,
        }
    }

    /// A resource read from its stored columns, `times` being `[version, created_us, modified_us]`.
    /// The document stays the text it was read as until something reads its values
    /// ([`ResourceDoc`]): a response with the default projection is written
    /// from that text.
    pub(crate) fn read(
        id: String,
        kind: ResourceKind,
        doc: String,
        times: [i64; 3],
    ) -> crate::StoreResult<StoredResource> {
        let doc = ResourceDoc::from_stored_text(doc, &id)
            .map_err(|e| rollcall_scim::ScimError::internal(format!("stored document is not JSON: {e}")))?;
        Ok(StoredResource::with_doc(id, kind, doc, times))
    }

    /// [`StoredResource::read`] with the document already read.
    pub(crate) fn with_doc(id: String, kind: ResourceKind, doc: ResourceDoc, times: [i64; 3]) -> StoredResource {
        let [version, created_us, modified_us] = times;
        StoredResource {
            id,
            kind,
            doc,
            version,
            created_us,
            modified_us,
            related: None,
        }
    }
}

/// Who is writing, recorded with each event.
///
/// For SCIM writes `org_id` and `connection_id` name the tenant the resource belongs to. The
/// management methods of [`crate::Store`] (organizations, connections, tokens, API keys) take a
/// context too, for its actor, User-Agent and request id only: their events name the organization
/// and connection of the object changed.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    pub org_id: String,
    pub connection_id: String,
    /// The client's User-Agent, if any.
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// Who made the change: recorded with each event.
    pub actor: crate::audit::Actor,
}

impl WriteContext {
    /// A change made by the `rollcall` command line.
    pub fn cli() -> WriteContext {
        WriteContext {
            actor: crate::audit::Actor::Cli,
            ..Default::default()
        }
    }

    /// A change made by Rollcall itself (first-start bootstrap, background work).
    pub fn system() -> WriteContext {
        WriteContext::default()
    }

    /// The same actor, User-Agent and request id, about another organization and connection
    /// (empty: none).
    pub fn about(&self, org_id: &str, connection_id: &str) -> WriteContext {
        WriteContext {
            org_id: org_id.to_string(),
            connection_id: connection_id.to_string(),
            ..self.clone()
        }
    }
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
    /// `cursor`: the id of the last resource of the previous page (`None`: the first page). The id
    /// is the tenant's own; the store finds it within the same connection and resource type, and
    /// refuses (400 `invalidCursor`) an id it does not find there.
    Cursor { after: Option<String> },
}

impl Paging {
    /// Whether `got` rows, asked for with `limit`, are every match: a first page that is not full.
    /// Then the list needs no `COUNT` (the common case of identity providers' existence checks,
    /// `userName eq "..."`).
    pub fn holds_every_match(&self, got: usize, limit: i64) -> bool {
        let first = match self {
            Paging::Index { start_index } => *start_index <= 1,
            Paging::Cursor { after } => after.is_none(),
        };
        first && (got as i64) < limit
    }
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
    /// The most bytes of stored documents (and membership read beside them) one page reads: once
    /// the resources read reach it, the page ends there, with fewer resources than `count` (at
    /// least one), as RFC 7644 §3.4.2.4 allows. `total` is unchanged; the next index page starts
    /// after the last one returned, and so does the next cursor.
    pub max_bytes: usize,
}

impl ListQuery {
    /// The default of [`ListQuery::max_bytes`]: 8 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 8 << 20;
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    pub total: i64,
    pub resources: Vec<StoredResource>,
    /// For cursor paging, when there are more: the id of the last resource returned, after which
    /// the next page starts.
    pub next_after: Option<String>,
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
    /// Who made the change (absent on events recorded before actors were: read as `system`).
    pub actor: crate::audit::Actor,
    /// The client's User-Agent (the identity provider's, for SCIM changes).
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}
