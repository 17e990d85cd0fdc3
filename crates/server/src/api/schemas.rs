//! The management API's request and response bodies.

use crate::admin::Admin;
use crate::service::rfc3339;
use rollcall_store::{Connection, ConnectionStatus, IdpKind, Organization};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The identity provider behind a SCIM connection; it selects the provider-specific leniencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Idp {
    Okta,
    Entra,
    Google,
    Onelogin,
    Jumpcloud,
    Ping,
    Generic,
}

impl From<IdpKind> for Idp {
    fn from(k: IdpKind) -> Self {
        match k {
            IdpKind::Okta => Idp::Okta,
            IdpKind::Entra => Idp::Entra,
            IdpKind::Google => Idp::Google,
            IdpKind::Onelogin => Idp::Onelogin,
            IdpKind::Jumpcloud => Idp::Jumpcloud,
            IdpKind::Ping => Idp::Ping,
            IdpKind::Generic => Idp::Generic,
        }
    }
}

impl From<Idp> for IdpKind {
    fn from(k: Idp) -> Self {
        match k {
            Idp::Okta => IdpKind::Okta,
            Idp::Entra => IdpKind::Entra,
            Idp::Google => IdpKind::Google,
            Idp::Onelogin => IdpKind::Onelogin,
            Idp::Jumpcloud => IdpKind::Jumpcloud,
            Idp::Ping => IdpKind::Ping,
            Idp::Generic => IdpKind::Generic,
        }
    }
}

/// How a connection gets its users and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKindView {
    /// The identity provider pushes over SCIM.
    Scim,
    /// Rollcall reads Google Workspace through its Directory API.
    GoogleWorkspace,
}

impl From<rollcall_store::ConnectionKind> for ConnectionKindView {
    fn from(k: rollcall_store::ConnectionKind) -> Self {
        match k {
            rollcall_store::ConnectionKind::Scim => ConnectionKindView::Scim,
            rollcall_store::ConnectionKind::GoogleWorkspace => ConnectionKindView::GoogleWorkspace,
        }
    }
}

/// Whether a connection accepts SCIM requests. A disabled connection keeps its tokens and data, but
/// every SCIM request gets 401 until it is active again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Disabled,
}

impl From<ConnectionStatus> for Status {
    fn from(s: ConnectionStatus) -> Self {
        match s {
            ConnectionStatus::Active => Status::Active,
            ConnectionStatus::Disabled => Status::Disabled,
        }
    }
}

impl From<Status> for ConnectionStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => ConnectionStatus::Active,
            Status::Disabled => ConnectionStatus::Disabled,
        }
    }
}

/// An organization: a customer of the application, with its SCIM connections.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: String,
    /// Unique among organizations.
    #[schema(example = "Acme")]
    pub name: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Organization> for OrganizationView {
    fn from(o: &Organization) -> Self {
        OrganizationView {
            id: o.id.clone(),
            name: o.name.clone(),
            created_at: rfc3339(o.created_us),
        }
    }
}

/// A page of organizations, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganizationList {
    pub data: Vec<OrganizationView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// 1 to 200 characters, unique among organizations.
    #[schema(example = "Acme")]
    pub name: String,
}

/// The fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    /// 1 to 200 characters, unique among organizations.
    #[schema(example = "Acme Corp")]
    pub name: Option<String>,
}

/// Paging of a list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Largest number of items on the page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// Confirmation of a deletion.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteOrganizationParams {
    /// The organization's name, repeated to confirm that it is to be deleted with everything in it.
    pub confirm: Option<String>,
}

/// A SCIM connection: one identity provider pushing users and groups into one organization. Token
/// secrets are never shown here, only their first characters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub org_id: String,
    #[schema(example = "Okta production")]
    pub name: String,
    pub idp: Idp,
    /// `scim`: the identity provider pushes to `scim_base_url` with the connection's token;
    /// `google_workspace`: Rollcall reads the directory (no token; see `GET /connections/{id}/sync`).
    pub kind: ConnectionKindView,
    pub status: Status,
    /// The base URL to configure in the identity provider (SCIM connections).
    #[schema(example = "https://scim.example.com/scim/v2/0190c7d2-5b7e-7000-8000-000000000001")]
    pub scim_base_url: String,
    /// The first characters of the current token; `null` after the tokens were revoked.
    #[schema(required = true, example = "rc_scim_Q2x9")]
    pub token_prefix: Option<String>,
    /// The first characters of the next token while a rotation is in progress, else `null`.
    #[schema(required = true)]
    pub next_token_prefix: Option<String>,
    /// When the rotation in progress started (RFC 3339), else `null`.
    #[schema(required = true, format = DateTime)]
    pub token_rotation_started_at: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The last authenticated SCIM request (RFC 3339), recorded at most about once a minute; `null`
    /// before the first one.
    #[schema(required = true, format = DateTime)]
    pub last_request_at: Option<String>,
    /// The User-Agent of that request.
    #[schema(required = true)]
    pub last_user_agent: Option<String>,
    /// The identity provider recognised from the requests' User-Agent, which may differ from `idp`
    /// (an "okta" connection called by Entra ID); `null` until a request from a recognised client.
    /// When it becomes one other than `idp`, the event `connection.idp_detected` is raised once.
    #[schema(required = true)]
    pub detected_idp: Option<Idp>,
    /// When `detected_idp` was first recognised (RFC 3339), else `null`.
    #[schema(required = true, format = DateTime)]
    pub detected_idp_first_seen_at: Option<String>,
    /// When `detected_idp` was last seen (RFC 3339), recorded at most about once a minute; else
    /// `null`.
    #[schema(required = true, format = DateTime)]
    pub detected_idp_last_seen_at: Option<String>,
    /// Whether the request log keeps the (redacted) bodies of this connection's SCIM requests and
    /// responses (`GET /connections/{id}/requests`).
    pub debug_logging: bool,
    /// `true` while the connection is in staging (shadow mode, docs/go-live.md): the identity
    /// provider is answered and its changes stored, but the application hears nothing of them
    /// until `POST /connections/{id}/activate`.
    pub staging: bool,
    /// When it was put into staging; `null` while live.
    #[schema(required = true, format = DateTime)]
    pub staged_at: Option<String>,
}

impl ConnectionView {
    pub fn new(admin: &Admin, c: &Connection) -> ConnectionView {
        ConnectionView {
            id: c.id.clone(),
            org_id: c.org_id.clone(),
            name: c.name.clone(),
            idp: c.idp.into(),
            kind: c.kind.into(),
            status: c.status.into(),
            scim_base_url: admin.scim_base_url(&c.id),
            token_prefix: c.token_prefix.clone(),
            next_token_prefix: c.next_token_prefix.clone(),
            token_rotation_started_at: c.rotation_started_us.map(rfc3339),
            created_at: rfc3339(c.created_us),
            last_request_at: c.last_request_us.map(rfc3339),
            last_user_agent: c.last_user_agent.clone(),
            detected_idp: c.detected_idp.map(Into::into),
            detected_idp_first_seen_at: c.detected_idp_first_seen_us.map(rfc3339),
            detected_idp_last_seen_at: c.detected_idp_last_seen_us.map(rfc3339),
            debug_logging: c.debug_logging,
            staging: c.staged_us.is_some(),
            staged_at: c.staged_us.map(rfc3339),
        }
    }
}

/// The connections of an organization, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionList {
    pub data: Vec<ConnectionView>,
}

/// A connection with a token just issued for it. The token is shown only here, once: store it now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionWithToken {
    pub connection: ConnectionView,
    /// The bearer token to configure in the identity provider.
    #[schema(example = "rc_scim_Q2x9...")]
    pub token: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// 1 to 200 characters; defaults to "<idp> connection".
    #[schema(example = "Okta production")]
    pub name: Option<String>,
    /// Defaults to `generic`.
    pub idp: Option<Idp>,
    /// `true` creates it in staging (docs/go-live.md): nothing reaches the application until it
    /// is activated. Default `false`.
    pub staging: Option<bool>,
}

/// The fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// 1 to 200 characters.
    pub name: Option<String>,
    pub idp: Option<Idp>,
    /// `disabled` refuses every SCIM request (401) until set back to `active`.
    pub status: Option<Status>,
    /// `true` keeps the bodies of SCIM requests and responses in the request log, with passwords
    /// and tokens redacted; switch it off when done diagnosing.
    pub debug_logging: Option<bool>,
}
