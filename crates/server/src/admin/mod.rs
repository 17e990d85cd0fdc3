//! Managing tenants, independent of HTTP: organizations, SCIM connections and their tokens,
//! operator API keys, setup links, and the browser sessions of the console and the setup page. The
//! management API (`/api/v1`), the `rollcall` command line and the console all call this, so they
//! validate and behave the same way.
//!
//! Every change that can stop a token from working (rotation, revocation, disabling, deletion)
//! drops the connection from this node's token cache at once; other nodes follow within the cache's
//! lifetime ([`crate::token_cache::TOKEN_CACHE_TTL`]).
//!
//! Every change takes the caller's context (`by`): who makes it (an API key, the command line) with
//! the request's User-Agent and id, recorded with the events the change writes.

mod access;
mod directory;
mod directory_sync;
mod events;
mod guard;
mod outbound;
mod policy;
mod protected;
mod roles;
mod sessions;
mod setup_links;
pub mod staging;
mod token_use;
mod webhooks;
mod workspaces;

pub use access::{Access, UserLookup};
pub use directory::{DirectoryPage, Profiles};
pub use directory_sync::{GoogleWorkspaceChange, GoogleWorkspaceInput};
pub use events::EventPage;
pub use outbound::TargetInput;
pub use policy::attribute_policy;
pub use roles::{PREVIEW_SAMPLE, RoleChangeSummary, RoleEffect};
pub use sessions::{
    ConsoleSession, DEFAULT_SESSION_TTL, IssuedSession, MAX_SESSION_TTL, MIN_SESSION_TTL, NOT_SIGNED_IN, check_csrf,
    csrf_token,
};
pub use setup_links::{
    DEFAULT_SETUP_LINK_TTL, IssuedSetupLink, LINK_EXPIRED, LINK_NOT_FOUND, LINK_REVOKED, MAX_RETURN_URL_CHARS,
    MAX_SETUP_LINK_TTL, MIN_SETUP_LINK_TTL, SetupSession, validate_return_url,
};
pub use token_use::{TokenUse, TokenUses};
pub use webhooks::{
    IssuedWebhook, MAX_DESCRIPTION_CHARS, MAX_EVENT_TYPES, SECRET_OVERLAP_US, WebhookChange, WebhookInput,
};

use crate::token_cache::TokenCache;
use crate::tokens;
use rollcall_store::{
    ApiKey, Connection, ConnectionUpdate, IdpKind, NewApiKey, NewConnection, Organization, Store, StoreError,
    WriteContext,
};
use rollcall_webhooks::{WebhookConfig, Webhooks};
use std::sync::Arc;

/// Longest accepted name (organization, connection, API key), in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Why a management operation failed: an HTTP status and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub status: u16,
    /// A finer kind than the status, when there is one (e.g. `confirmation-required`).
    pub kind: Option<&'static str>,
    pub detail: String,
}

impl AdminError {
    pub fn new(status: u16, detail: impl Into<String>) -> AdminError {
        AdminError {
            status,
            kind: None,
            detail: detail.into(),
        }
    }
    pub fn not_found(detail: impl Into<String>) -> AdminError {
        AdminError::new(404, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> AdminError {
        AdminError::new(422, detail)
    }
    pub fn with_kind(mut self, kind: &'static str) -> AdminError {
        self.kind = Some(kind);
        self
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for AdminError {}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        // Database failures are logged there and answered with a generic detail.
        let e = e.into_scim();
        AdminError::new(e.status, e.detail)
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// Longest role key, description or match value, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Store errors for the management API: the store's SCIM-style 400s are validation failures here.
pub(crate) fn admin_err(e: StoreError) -> AdminError {
    let e = AdminError::from(e);
    if e.status == 400 {
        AdminError::invalid(e.detail)
    } else {
        e
    }
}

/// Trimmed text of 1 to [`MAX_TEXT_CHARS`] characters without control characters.
pub(crate) fn validate_text(what: &str, s: &str) -> AdminResult<String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AdminError::invalid(format!("{what} must not be empty")));
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(AdminError::invalid(format!(
            "{what} is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(AdminError::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(s.to_string())
}

/// The caller's context, for a change in `org_id`.
pub(crate) fn with_org(by: &WriteContext, org_id: &str) -> WriteContext {
    WriteContext {
        org_id: org_id.to_string(),
        ..by.clone()
    }
}

/// A connection with the secret of a token just issued for it (shown once).
pub struct IssuedConnection {
    pub connection: Connection,
    pub token: String,
}

/// An API key with its secret (shown once).
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// The management operations.
#[derive(Clone)]
pub struct Admin {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) token_cache: Arc<TokenCache>,
    public_url: String,
    /// Webhook URL checks (the network policy), redelivery, test messages and the dispatcher's
    /// wake-up: the server's own ([`Admin::with_webhooks`]); without one, a default (the default
    /// network policy) made on first use.
    webhooks: std::sync::OnceLock<Arc<Webhooks>>,
    /// Wakes the node's directory sync scheduler after "sync now" ([`Admin::with_directory_wake`]).
    directory_wake: Option<Arc<tokio::sync::Notify>>,
    /// Outbound provisioning: plans and the worker's wake-up ([`Admin::with_outbound`]); without
    /// one, a default made on first use.
    outbound: std::sync::OnceLock<Arc<rollcall_outbound::Outbound>>,
}

/// A trimmed, non-empty name of at most [`MAX_NAME_CHARS`] characters without control characters.
pub fn validate_name(what: &str, name: &str) -> AdminResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::invalid(format!("{what} must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AdminError::invalid(format!(
            "{what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AdminError::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(name.to_string())
}

fn no_organization(id: &str) -> AdminError {
    AdminError::not_found(format!("no organization with id \"{id}\""))
}

pub(crate) fn no_connection(id: &str) -> AdminError {
    AdminError::not_found(format!("no SCIM connection with id \"{id}\""))
}

fn no_api_key(id: &str) -> AdminError {
    AdminError::not_found(format!("no API key with id \"{id}\""))
}

impl Admin {
    /// `public_url`: the address clients reach the service at, for SCIM base URLs.
    pub fn new(store: Arc<dyn Store>, token_cache: Arc<TokenCache>, public_url: &str) -> Admin {
        Admin {
            store,
            token_cache,
            public_url: public_url.trim_end_matches('/').to_string(),
            webhooks: std::sync::OnceLock::new(),
            directory_wake: None,
            outbound: std::sync::OnceLock::new(),
        }
    }

    /// This Admin with the node's outbound provisioning service.
    pub fn with_outbound(self, outbound: Arc<rollcall_outbound::Outbound>) -> Admin {
        let _ = self.outbound.set(outbound);
        self
    }

    pub(crate) fn outbound(&self) -> &Arc<rollcall_outbound::Outbound> {
        self.outbound.get_or_init(|| {
            rollcall_outbound::Outbound::new(
                self.store.clone(),
                rollcall_outbound::Transport::new(self.webhooks().config.policy.clone()),
                Default::default(),
            )
        })
    }

    /// This Admin with the node's directory sync wake-up.
    pub fn with_directory_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Admin {
        self.directory_wake = Some(wake);
        self
    }

    /// This Admin with the node's webhook service (its network policy and dispatcher).
    pub fn with_webhooks(self, webhooks: Arc<Webhooks>) -> Admin {
        let _ = self.webhooks.set(webhooks);
        self
    }

    fn webhooks(&self) -> &Arc<Webhooks> {
        self.webhooks
            .get_or_init(|| Webhooks::new(self.store.clone(), WebhookConfig::default()))
    }

    /// The SCIM base URL of a connection.
    pub fn scim_base_url(&self, connection_id: &str) -> String {
        format!("{}/scim/v2/{connection_id}", self.public_url)
    }

    /// Records this node's public URL in the database, where the command line and the other
    /// nodes read it ([`Admin::recorded_public_url`]); `rollcall serve` calls it when it starts.
    pub async fn record_public_url(&self) -> AdminResult<()> {
        Ok(self
            .store
            .set_service_setting(rollcall_store::service_settings::PUBLIC_URL, &self.public_url)
            .await?)
    }

    /// The public URL `rollcall serve` last recorded in `store`, if one has.
    pub async fn recorded_public_url(
        store: &Arc<dyn Store>,
    ) -> AdminResult<Option<rollcall_store::service_settings::ServiceSetting>> {
        Ok(store
            .service_setting(rollcall_store::service_settings::PUBLIC_URL)
            .await?)
    }

    // --- organizations -------------------------------------------------------------------------

    pub async fn create_organization(&self, by: &WriteContext, name: &str) -> AdminResult<Organization> {
        let name = validate_name("the organization name", name)?;
        Ok(self.store.create_organization(by, &name).await?)
    }

    /// A page of organizations in creation order, and the cursor of the next page if there is one.
    pub async fn list_organizations(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> AdminResult<(Vec<Organization>, Option<String>)> {
        let mut page = self.store.list_organizations_after(after, limit + 1).await?;
        let next = if page.len() as i64 > limit {
            page.truncate(limit.max(0) as usize);
            page.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    /// A page of the organizations whose name or id contains `text` (ignoring case), in the order
    /// of [`Admin::list_organizations`], and the cursor of the next page. Organizations are few (one per customer of the
    /// application), so the match is made here rather than in the database.
    pub async fn search_organizations(
        &self,
        text: &str,
        after: Option<&str>,
        limit: i64,
    ) -> AdminResult<(Vec<Organization>, Option<String>)> {
        let needle = text.trim().to_lowercase();
        let mut found = self.store.list_organizations().await?;
        // The order of `list_organizations` (ids are time-ordered, so creation order).
        found.sort_by(|a, b| a.id.cmp(&b.id));
        let mut matching = found
            .into_iter()
            .filter(|o| o.name.to_lowercase().contains(&needle) || o.id.to_lowercase().contains(&needle));
        if let Some(after) = after {
            // Skip up to and including the cursor's organization.
            if !matching.by_ref().any(|o| o.id == after) {
                return Ok((Vec::new(), None));
            }
        }
        let mut page: Vec<Organization> = matching.take(limit.max(0) as usize + 1).collect();
        let next = if page.len() as i64 > limit {
            page.truncate(limit.max(0) as usize);
            page.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    /// Every organization (for the command line).
    pub async fn all_organizations(&self) -> AdminResult<Vec<Organization>> {
        Ok(self.store.list_organizations().await?)
    }

    /// An organization by id.
    pub async fn organization(&self, id: &str) -> AdminResult<Organization> {
        self.store
            .get_organization(id)
            .await?
            .filter(|o| o.id == id)
            .ok_or_else(|| no_organization(id))
    }

    /// An organization by id or name (for the command line).
    pub async fn find_organization(&self, id_or_name: &str) -> AdminResult<Organization> {
        self.store
            .get_organization(id_or_name)
            .await?
            .ok_or_else(|| AdminError::not_found(format!("no organization \"{id_or_name}\"")))
    }

    pub async fn rename_organization(&self, by: &WriteContext, id: &str, name: &str) -> AdminResult<Organization> {
        let name = validate_name("the organization name", name)?;
        self.store
            .rename_organization(by, id, &name)
            .await?
            .ok_or_else(|| no_organization(id))
    }

    /// Deletes an organization with everything in it. `confirm` must repeat its name.
    pub async fn delete_organization(&self, by: &WriteContext, id: &str, confirm: Option<&str>) -> AdminResult<()> {
        let org = self.organization(id).await?;
        let connections = self.store.list_connections(Some(&org.id)).await?;
        match confirm {
            Some(c) if c == org.name => {}
            Some(c) => {
                return Err(AdminError::invalid(format!(
                    "confirm=\"{c}\" does not match the organization's name \"{}\"; nothing was deleted",
                    org.name
                ))
                .with_kind("confirmation-required"));
            }
            None => {
                return Err(AdminError::invalid(format!(
                    "deleting organization \"{}\" also deletes its {} SCIM connection(s) with all their users \
                     and groups; to confirm, repeat its name in the query: ?confirm=<organization name>",
                    org.name,
                    connections.len()
                ))
                .with_kind("confirmation-required"));
            }
        }
        let deleted = self.store.delete_organization(by, &org.id).await?;
        for c in &connections {
            self.token_cache.forget_connection(&c.id);
        }
        if deleted { Ok(()) } else { Err(no_organization(id)) }
    }

    // --- connections ---------------------------------------------------------------------------

    /// Creates a connection in an organization (by id) with a new token.
    pub async fn create_connection(
        &self,
        by: &WriteContext,
        org_id: &str,
        name: Option<&str>,
        idp: IdpKind,
    ) -> AdminResult<IssuedConnection> {
        let org = self.organization(org_id).await?;
        let name = match name {
            Some(n) => validate_name("the connection name", n)?,
            None => format!("{idp} connection"),
        };
        let token = tokens::issue();
        let connection = self
            .store
            .create_connection(
                by,
                NewConnection {
                    org_id: org.id,
                    name,
                    idp,
                    token_hash: token.hash,
                    token_prefix: token.display_prefix,
                },
            )
            .await?;
        Ok(IssuedConnection {
            connection,
            token: token.secret,
        })
    }

    /// The connections of an organization (404 when it does not exist), or of all.
    pub async fn list_connections(&self, org_id: Option<&str>) -> AdminResult<Vec<Connection>> {
        if let Some(id) = org_id {
            self.organization(id).await?;
        }
        Ok(self.store.list_connections(org_id).await?)
    }

    pub async fn connection(&self, id: &str) -> AdminResult<Connection> {
        self.store.get_connection(id).await?.ok_or_else(|| no_connection(id))
    }

    /// A connection that takes SCIM requests (tokens are theirs alone): 409 for a directory
    /// connection, which has none.
    async fn scim_connection(&self, id: &str) -> AdminResult<Connection> {
        let c = self.connection(id).await?;
        if c.kind.is_directory() {
            return Err(AdminError::new(
                409,
                format!(
                    "connection \"{id}\" is a {} connection: Rollcall reads its directory, it has no SCIM token",
                    c.kind
                ),
            ));
        }
        Ok(c)
    }

    pub async fn update_connection(
        &self,
        by: &WriteContext,
        id: &str,
        mut update: ConnectionUpdate,
    ) -> AdminResult<Connection> {
        if let Some(name) = &update.name {
            update.name = Some(validate_name("the connection name", name)?);
        }
        let c = self
            .store
            .update_connection(by, id, update)
            .await?
            .ok_or_else(|| no_connection(id))?;
        // A cached entry carries the status (and debug logging): a disabled connection must stop
        // working here at once.
        self.token_cache.forget_connection(id);
        Ok(c)
    }

    /// Deletes a connection with its users and groups.
    pub async fn delete_connection(&self, by: &WriteContext, id: &str) -> AdminResult<()> {
        let deleted = self.store.delete_connection(by, id).await?;
        self.token_cache.forget_connection(id);
        if deleted { Ok(()) } else { Err(no_connection(id)) }
    }

    /// Starts a token rotation: a new token that works beside the current one until the rotation is
    /// completed or cancelled (or at once, as the only token, when the connection has none).
    pub async fn start_token_rotation(&self, by: &WriteContext, id: &str) -> AdminResult<IssuedConnection> {
        self.scim_connection(id).await?;
        let token = tokens::issue();
        let connection = self
            .store
            .start_token_rotation(by, id, &token.hash, &token.display_prefix)
            .await?
            .ok_or_else(|| no_connection(id))?;
        self.token_cache.forget_connection(id);
        Ok(IssuedConnection {
            connection,
            token: token.secret,
        })
    }

    /// The new token becomes the only one; the old one stops working.
    pub async fn complete_token_rotation(&self, by: &WriteContext, id: &str) -> AdminResult<Connection> {
        let c = self
            .store
            .complete_token_rotation(by, id)
            .await?
            .ok_or_else(|| no_connection(id))?;
        self.token_cache.forget_connection(id);
        Ok(c)
    }

    /// The new token stops working; the old one stays.
    pub async fn cancel_token_rotation(&self, by: &WriteContext, id: &str) -> AdminResult<Connection> {
        let c = self
            .store
            .cancel_token_rotation(by, id)
            .await?
            .ok_or_else(|| no_connection(id))?;
        self.token_cache.forget_connection(id);
        Ok(c)
    }

    /// No token works any more, until a new one is issued.
    pub async fn revoke_tokens(&self, by: &WriteContext, id: &str) -> AdminResult<Connection> {
        let c = self
            .store
            .revoke_connection_tokens(by, id)
            .await?
            .ok_or_else(|| no_connection(id))?;
        self.token_cache.forget_connection(id);
        Ok(c)
    }

    /// Replaces every token of a connection with a new one at once (no overlap).
    pub async fn replace_token(&self, by: &WriteContext, id: &str) -> AdminResult<IssuedConnection> {
        self.scim_connection(id).await?;
        let token = tokens::issue();
        if !self
            .store
            .set_connection_token(by, id, &token.hash, &token.display_prefix)
            .await?
        {
            return Err(no_connection(id));
        }
        self.token_cache.forget_connection(id);
        Ok(IssuedConnection {
            connection: self.connection(id).await?,
            token: token.secret,
        })
    }

    // --- API keys ------------------------------------------------------------------------------

    pub async fn create_api_key(&self, by: &WriteContext, name: &str) -> AdminResult<IssuedApiKey> {
        let name = validate_name("the API key name", name)?;
        let issued = tokens::issue_api_key();
        let key = self
            .store
            .create_api_key(
                by,
                NewApiKey {
                    name,
                    key_hash: issued.hash,
                    key_prefix: issued.display_prefix,
                },
            )
            .await?;
        Ok(IssuedApiKey {
            key,
            secret: issued.secret,
        })
    }

    pub async fn list_api_keys(&self) -> AdminResult<Vec<ApiKey>> {
        Ok(self.store.list_api_keys().await?)
    }

    /// Revokes an API key: it stops working at once, and the console sessions signed in with it end
    /// (in the same transaction).
    pub async fn revoke_api_key(&self, by: &WriteContext, id: &str) -> AdminResult<ApiKey> {
        self.store.revoke_api_key(by, id).await?.ok_or_else(|| no_api_key(id))
    }

    /// The live API key a presented secret belongs to; 401 otherwise, saying why.
    pub async fn authenticate_api_key(&self, presented: &str) -> AdminResult<ApiKey> {
        if presented.starts_with(tokens::SCIM_TOKEN_PREFIX) {
            return Err(AdminError::new(
                401,
                "SCIM connection tokens do not work on the management API; use an operator API key \
                 (rc_key_..., created with `rollcall api-key create`)",
            ));
        }
        let hash = tokens::hash(presented);
        let key = self
            .store
            .api_key_by_hash(&hash)
            .await?
            .filter(|k| tokens::matches(&hash, &k.key_hash))
            .ok_or_else(|| AdminError::new(401, "the API key is not valid"))?;
        if let Some(at) = key.revoked_us {
            return Err(AdminError::new(
                401,
                format!("the API key was revoked at {}", rollcall_webhooks::event::rfc3339(at)),
            ));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("n", "  Acme ").unwrap(), "Acme");
        assert_eq!(validate_name("the name", " ").unwrap_err().status, 422);
        assert!(validate_name("n", &"x".repeat(201)).is_err());
        assert!(validate_name("n", &"é".repeat(200)).is_ok());
        assert!(validate_name("n", "a\nb").is_err());
    }
}
