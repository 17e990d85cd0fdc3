//! # rollcall-store
//!
//! Everything Rollcall keeps, behind one trait ([`Store`]): organizations, SCIM connections (with
//! hashed bearer tokens), SCIM resources, group membership as rows, and the event log written in the
//! same transaction as each change. [`sqlite::SqliteStore`] is the embedded default.
//!
//! Resources are kept as their canonical SCIM document plus indexed columns derived from it
//! (`userName`, `externalId`, `displayName`, `active`, timestamps, e-mail addresses) and a
//! search copy of the document whose case-insensitive strings are folded in Rust (SQLite's `lower()`
//! only folds ASCII). SCIM filters compile to SQL over those ([`sql`]).

pub mod audit;
mod backend;
mod connection_ops;
pub mod cursor;
pub mod directory;
pub mod directory_sync;
mod directory_sync_stores;
mod event_log;
pub mod events;
mod grant_rows;
pub mod guard;
pub mod index;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod outbound;
mod outbound_stores;
pub mod postgres;
mod resource_doc;
pub mod roles;
mod roles_stores;
mod rows;
pub mod schema;
pub mod secrets;
mod secrets_stores;
pub mod service_settings;
pub mod sessions;
pub mod sql;
pub mod sqlite;
/// The Events API's statement on SQLite, with its arguments (public for the EXPLAIN tests).
pub mod sqlite_events {
    pub fn query_events_sql(q: &crate::EventQuery) -> (String, sqlx::sqlite::SqliteArguments) {
        crate::event_log::query_events_statement::<crate::sqlite::SqliteStore>(q)
    }
}
/// The Events API's statement on PostgreSQL, with its arguments (public for the EXPLAIN tests).
pub mod postgres_events {
    pub fn query_events_sql(q: &crate::EventQuery) -> (String, sqlx::postgres::PgArguments) {
        crate::event_log::query_events_statement::<crate::postgres::PostgresStore>(q)
    }
}
pub mod staging;
mod update;
pub mod webhooks;
pub mod workspaces;

pub use audit::{Actor, EventQuery, RequestLogEntry};
pub use directory::{DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, GroupRef, UserStatus};
pub use directory_sync::{
    ConnectionKind, DirectorySettings, DirectorySource, DirectorySourceUpdate, NewDirectoryConnection, SyncCounts,
    SyncOutcome, SyncScope, SyncStatus,
};
pub use guard::{GuardResolution, GuardSettings, GuardState, GuardStore, HeldEvent};
pub use model::*;
pub use roles::{
    NewRole, NewRoleMapping, ProtectedUser, Role, RoleChange, RoleDelta, RoleMapping, RoleMatch, RolePreview,
    RoleUpdate, UserRef,
};
pub use sessions::{
    BrowserSession, ConsoleSessionRow, NewBrowserSession, NewSetupLink, SessionKind, SessionStore, SetupLink,
    SetupLinkStatus, SetupSessionRow,
};
pub use staging::{MatchAccount, MatchUpload, MatchUser, Snapshot, StagingOutcome, StagingStore};
pub use webhooks::{
    AttemptOrigin, NewWebhook, NewWebhookAttempt, Webhook, WebhookAttempt, WebhookFailure, WebhookStatus, WebhookStore,
    WebhookUpdate,
};
pub use workspaces::{
    NewWorkspace, NewWorkspaceMapping, Workspace, WorkspaceGroup, WorkspaceMapping, WorkspaceSettings,
    WorkspaceSettingsUpdate, WorkspaceStore, WorkspaceUpdate,
};

use async_trait::async_trait;
use rollcall_scim::ScimError;
use rollcall_scim::filter::Filter;
use rollcall_scim::patch::MemberChange;
use serde_json::Value;

/// Errors from the store: a SCIM error to answer as-is, or a database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Scim(#[from] ScimError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A failure on SQLite through rusqlite: the inline readers (`sqlite/inline_read.rs`) and the
    /// writes run on the writer's handle (`sqlite/group_commit.rs`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A secret could not be sealed or opened ([`secrets`]): no key, the wrong key, or a value
    /// altered in the database.
    #[error("secrets: {0}")]
    Secrets(#[from] secrets::SecretError),
    /// A SQLite database another process has to itself, or that one cannot have to itself while
    /// others have it open ([`sqlite::lock`]).
    #[error("{0}")]
    Locked(String),
}

impl StoreError {
    /// The SCIM error to answer with. Database failures become 500 with a generic detail
    /// (the cause is logged, not sent), except lock timeouts, which become 503.
    pub fn into_scim(self) -> ScimError {
        match self {
            StoreError::Scim(e) => e,
            StoreError::Database(e) => {
                let busy = e
                    .as_database_error()
                    .is_some_and(|d| d.message().contains("locked") || d.message().contains("busy"));
                tracing::error!(error = %e, "database error");
                if busy {
                    ScimError::new(503, None, "the service is busy; retry shortly")
                } else {
                    ScimError::internal("internal storage error")
                }
            }
            StoreError::Migrate(e) => {
                tracing::error!(error = %e, "migration error");
                ScimError::internal("internal storage error")
            }
            StoreError::Locked(e) => {
                tracing::error!(error = %e, "database locked");
                ScimError::new(503, None, "the database is not available; retry shortly")
            }
            StoreError::Secrets(e) => {
                tracing::error!(error = %e, "cannot seal or open a stored secret");
                ScimError::internal("a stored secret cannot be read or written: see the server's log")
            }
            StoreError::Sqlite(e) => {
                tracing::error!(error = %e, "database error");
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) {
                    ScimError::new(503, None, "the service is busy; retry shortly")
                } else {
                    ScimError::internal("internal storage error")
                }
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The 400 for a list cursor naming a resource the list cannot start after: one of this
/// connection's that was erased since (`erased`: its events say it was here), or one it never had.
pub(crate) fn cursor_not_found(kind: ResourceKind, erased: bool) -> StoreError {
    let detail = if erased {
        format!(
            "the {} this cursor continues after has been deleted and erased since the page was read; list again from the first page",
            kind.as_str()
        )
    } else {
        format!(
            "the cursor does not belong to this {} list; list again from the first page",
            kind.as_str()
        )
    };
    StoreError::Scim(ScimError::invalid_cursor(detail))
}

/// A change computed from the current document: given the document (with `id`, without `meta`
/// and members), it edits it in place and returns the membership changes to apply as rows.
///
/// It runs outside any write transaction ([`update`]): the store reads the resource, runs the
/// mutation, then writes the result in a transaction that checks the document has not changed
/// since it was read; if it has, the store reads it again and runs the mutation again. So a
/// mutation must be a pure function of the document it is given (membership changes are deltas
/// applied to the rows in the transaction, not read from the document).
pub type Mutation = std::sync::Arc<dyn Fn(&mut Value) -> Result<Vec<MemberChange>, ScimError> + Send + Sync>;

/// The one storage interface; SQLite and PostgreSQL implement it with the same behaviour.
#[async_trait]
pub trait Store:
    staging::StagingStore
    + WorkspaceStore
    + webhooks::WebhookStore
    + sessions::SessionStore
    + guard::GuardStore
    + Send
    + Sync
    + 'static
{
    // --- tenancy -----------------------------------------------------------------------------
    // The writes below take the caller's context (`by`) for the actor, User-Agent and request id of
    // the events they record; the events name the organization and connection of the object.
    /// Creates an organization; 409 when the name is taken.
    async fn create_organization(&self, by: &WriteContext, name: &str) -> StoreResult<Organization>;
    async fn list_organizations(&self) -> StoreResult<Vec<Organization>>;
    /// Up to `limit` organizations with an id greater than `after` (all, without it), by id: ids are
    /// UUIDv7, so this is creation order.
    async fn list_organizations_after(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<Organization>>;
    async fn get_organization(&self, id_or_name: &str) -> StoreResult<Option<Organization>>;
    async fn count_organizations(&self) -> StoreResult<i64>;
    /// Renames an organization; `None` when it does not exist, 409 when the name is taken.
    async fn rename_organization(&self, by: &WriteContext, id: &str, name: &str) -> StoreResult<Option<Organization>>;
    /// Deletes an organization with its connections, their users, groups and membership. Returns
    /// false when it does not exist.
    async fn delete_organization(&self, by: &WriteContext, id: &str) -> StoreResult<bool>;

    /// Creates a connection whose bearer token hashes to `token_hash`.
    async fn create_connection(&self, by: &WriteContext, new: NewConnection) -> StoreResult<Connection>;
    async fn list_connections(&self, org_id: Option<&str>) -> StoreResult<Vec<Connection>>;
    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>>;
    /// The connection one of whose tokens (current, or next during a rotation) hashes to
    /// `token_hash`, whatever its status: the caller refuses disabled connections.
    async fn connection_by_token_hash(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Connection>>;
    /// Replaces every token of a connection (and ends a rotation in progress) with this one.
    /// Returns false when the connection does not exist.
    async fn set_connection_token(
        &self,
        by: &WriteContext,
        id: &str,
        token_hash: &[u8; 32],
        token_prefix: &str,
    ) -> StoreResult<bool>;
    /// Deletes a connection with all its users, groups and membership.
    async fn delete_connection(&self, by: &WriteContext, id: &str) -> StoreResult<bool>;
    /// Changes a connection's name, identity provider or status. `None` when it does not exist.
    async fn update_connection(
        &self,
        by: &WriteContext,
        id: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Option<Connection>>;
    /// Starts a token rotation: `next_hash` works beside the current token until the rotation is
    /// completed or cancelled. A connection without a token (after [`Store::revoke_connection_tokens`])
    /// takes it as its token at once. 409 when a rotation is already in progress.
    async fn start_token_rotation(
        &self,
        by: &WriteContext,
        id: &str,
        next_hash: &[u8; 32],
        next_prefix: &str,
    ) -> StoreResult<Option<Connection>>;
    /// Ends a rotation: the next token becomes the only one. 409 when no rotation is in progress.
    async fn complete_token_rotation(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>>;
    /// Abandons a rotation: the next token stops working. 409 when no rotation is in progress.
    async fn cancel_token_rotation(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>>;
    /// Removes every token of a connection at once; it keeps its users and groups, and no request
    /// is accepted until a new token is issued.
    async fn revoke_connection_tokens(&self, by: &WriteContext, id: &str) -> StoreResult<Option<Connection>>;
    /// Records that a SCIM request authenticated on the connection, and the identity provider
    /// recognised from it (`detected`, if any). Activity raises no event; a recognised identity
    /// provider other than the one recorded, and other than the configured one, raises
    /// `connection.idp_detected` once. Callers throttle it.
    async fn record_connection_request(
        &self,
        id: &str,
        at_us: i64,
        user_agent: Option<&str>,
        detected: Option<IdpKind>,
    ) -> StoreResult<()>;

    // --- directory connections ([`directory_sync`], issue #17) ----------------------------------
    /// Creates a directory connection (no token) with its settings and sealed credentials, due to
    /// sync at once, recording `connection.created`; 404 when the organization does not exist.
    async fn create_directory_connection(
        &self,
        by: &WriteContext,
        new: NewDirectoryConnection,
    ) -> StoreResult<(Connection, DirectorySource)>;
    /// A directory connection's settings and sync state; `None` for a SCIM connection or none.
    async fn directory_source(&self, connection_id: &str) -> StoreResult<Option<DirectorySource>>;
    /// Changes a directory connection's settings, credentials or interval, recording
    /// `connection.updated` (never with the credentials); `None` when it is not one.
    async fn update_directory_source(
        &self,
        by: &WriteContext,
        connection_id: &str,
        update: DirectorySourceUpdate,
    ) -> StoreResult<Option<DirectorySource>>;
    /// Makes a directory connection's next run due at `now_us` (or earlier, as it was); a run in
    /// progress is followed by another at its end. False when it is not a directory connection.
    async fn request_directory_sync(&self, connection_id: &str, now_us: i64) -> StoreResult<bool>;
    /// Leases to `owner` until `lease_until_us` up to `limit` directory connections of active
    /// connections that are due at `now_us` (with `only`: that one, due or not) and whose lease has
    /// expired or was released, marking them running. Concurrent callers never receive the same one.
    async fn claim_directory_syncs(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
        only: Option<&str>,
    ) -> StoreResult<Vec<DirectorySource>>;
    /// Records a run's progress and extends its lease; false unless `owner` holds the lease.
    async fn directory_sync_progress(
        &self,
        connection_id: &str,
        owner: &str,
        progress: &SyncCounts,
        lease_until_us: i64,
    ) -> StoreResult<bool>;
    /// Records how a run ended and releases the lease; the next run is due one interval later
    /// (or when asked for during the run). False unless `owner` holds the lease.
    async fn finish_directory_sync(&self, connection_id: &str, owner: &str, outcome: &SyncOutcome)
    -> StoreResult<bool>;

    // --- settings of the service ---------------------------------------------------------------
    /// A setting of the service ([`service_settings`]), `None` when never written.
    async fn service_setting(&self, key: &str) -> StoreResult<Option<service_settings::ServiceSetting>>;
    /// Writes a setting of the service (no event: it is configuration a node reports, not a change
    /// of the directory).
    async fn set_service_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    // --- operator API keys ---------------------------------------------------------------------
    async fn create_api_key(&self, by: &WriteContext, new: NewApiKey) -> StoreResult<ApiKey>;
    /// The key whose hash is `key_hash`, revoked or not.
    async fn api_key_by_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKey>>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a key (a no-op for a revoked one) and ends its console sessions, in one transaction.
    /// `None` when it does not exist.
    async fn revoke_api_key(&self, by: &WriteContext, id: &str) -> StoreResult<Option<ApiKey>>;

    // --- SCIM resources ------------------------------------------------------------------------
    /// Inserts a resource (document without `id`/`meta`), with initial members for a group.
    /// Fails with 409 `uniqueness` when `userName` (users) or `displayName` (groups) is taken, and
    /// 400 when a member id is unknown.
    async fn create_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        doc: Value,
        members: Vec<rollcall_scim::patch::MemberRef>,
    ) -> StoreResult<StoredResource>;

    /// Reads one live resource. `with_members`: whether to read group membership / a user's groups.
    async fn get_resource(
        &self,
        connection_id: &str,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> StoreResult<Option<StoredResource>>;

    /// Applies `mutation` to the current document: computed outside the write transaction, written
    /// in one that checks `if_match` (a version number) against the current version and that the
    /// document has not changed since the mutation read it (else it is read and computed again, a
    /// bounded number of times; then 503). Returns `None` when the resource does not exist.
    async fn update_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
        mutation: Mutation,
    ) -> StoreResult<Option<StoredResource>>;

    /// Soft-deletes a resource: it leaves the SCIM view and its membership, and the deletion is
    /// recorded. Returns false when it does not exist.
    async fn delete_resource(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        id: &str,
        if_match: Option<i64>,
    ) -> StoreResult<bool>;

    /// Lists live resources matching a filter, compiled to SQL.
    async fn list_resources(&self, connection_id: &str, kind: ResourceKind, query: &ListQuery) -> StoreResult<Page>;

    /// Events recorded after `after` (sequence number), oldest first.
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Event>>;

    // --- roles, mappings, protected users and policy ([`roles`]) --------------------------------
    // Every change here recomputes the effective roles it affects in the same transaction.
    /// Creates a role; 409 when its key is taken in the organization (ignoring case).
    async fn create_role(&self, ctx: &WriteContext, new: NewRole) -> StoreResult<Role>;
    async fn list_roles(&self, org_id: &str) -> StoreResult<Vec<Role>>;
    /// A role of the organization by id or key (ignoring case).
    async fn get_role(&self, org_id: &str, id_or_key: &str) -> StoreResult<Option<Role>>;
    async fn update_role(
        &self,
        ctx: &WriteContext,
        org_id: &str,
        id: &str,
        update: RoleUpdate,
    ) -> StoreResult<Option<Role>>;
    /// Deletes a role with its mappings; users who had it lose it (with their events).
    async fn delete_role(&self, ctx: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool>;
    /// Maps a group or app role to a role on a connection; 404 for an unknown connection, 400 for a
    /// role of another organization, 409 for a duplicate.
    async fn create_role_mapping(&self, ctx: &WriteContext, new: NewRoleMapping) -> StoreResult<RoleMapping>;
    async fn list_role_mappings(&self, connection_id: &str) -> StoreResult<Vec<RoleMapping>>;
    async fn delete_role_mapping(&self, ctx: &WriteContext, connection_id: &str, id: &str) -> StoreResult<bool>;
    async fn default_roles(&self, connection_id: &str) -> StoreResult<Vec<Role>>;
    /// What `change` would do to the effective roles of the connection's users, computed from one
    /// consistent read with the same rules as the change itself, writing nothing: per role, the
    /// users who would gain and lose it (counts, and the first `sample` of each by creation).
    /// `None` when the connection, or the mapping to remove, does not exist; 400 for a role of
    /// another organization and 409 for a mapping the connection has, as the change would answer.
    async fn preview_role_change(
        &self,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>>;
    /// Replaces a connection's default roles. `None` when the connection does not exist; 400 for a
    /// role of another organization.
    async fn set_default_roles(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        role_ids: &[String],
    ) -> StoreResult<Option<Vec<Role>>>;
    /// Replaces a connection's attribute and lifecycle policy (validated by the caller).
    async fn set_connection_policy(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        policy: &ConnectionPolicy,
    ) -> StoreResult<Option<Connection>>;
    /// Protects a user (by e-mail address or userName) from deactivation and deletion by SCIM; 409
    /// when it already is.
    async fn add_protected_user(&self, ctx: &WriteContext, org_id: &str, email: &str) -> StoreResult<ProtectedUser>;
    async fn list_protected_users(&self, org_id: &str) -> StoreResult<Vec<ProtectedUser>>;
    async fn remove_protected_user(&self, ctx: &WriteContext, org_id: &str, email: &str) -> StoreResult<bool>;

    // --- the directory ([`directory`]) ----------------------------------------------------------
    /// Users of an organization (all its connections) matching `query`, by row key, with their
    /// effective roles (and groups, when asked).
    async fn directory_users(
        &self,
        org_id: &str,
        query: &DirectoryQuery,
        with_groups: bool,
    ) -> StoreResult<Vec<DirectoryUser>>;
    /// Live groups of an organization matching `query`, with member counts.
    async fn directory_groups(&self, org_id: &str, query: &GroupQuery) -> StoreResult<Vec<DirectoryGroup>>;
    /// Members of a group (by its row key, from [`Store::directory_groups`]) after `after_pk`.
    async fn directory_group_members(
        &self,
        group_pk: i64,
        after_pk: i64,
        limit: i64,
    ) -> StoreResult<Vec<DirectoryMember>>;
    // --- the Events API, event retention and the request log (issue #6) ------------------------
    /// Events matching `query`, oldest first (each filter is served by an index).
    async fn query_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>>;
    /// One event by its id.
    async fn get_event(&self, id: &str) -> StoreResult<Option<Event>>;
    /// Deletes up to `batch` of the oldest events recorded before `before_us`; returns how many.
    /// Safe to run on several nodes at once (PostgreSQL: rows another node is deleting are skipped).
    async fn prune_events(&self, before_us: i64, batch: i64) -> StoreResult<u64>;
    /// Appends request log entries in one transaction (entries of connections that do not exist
    /// are dropped), then trims each connection written to down to its newest `keep` entries.
    async fn append_request_log(&self, entries: &[RequestLogEntry], keep: i64) -> StoreResult<()>;
    /// A connection's request log, newest first: up to `limit` entries with `seq` below `before`
    /// (from the newest, without it).
    async fn request_log(
        &self,
        connection_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<RequestLogEntry>>;
    /// The database pools' connections, for `/metrics`.
    fn pool_stats(&self) -> Vec<metrics::PoolStats> {
        Vec::new()
    }

    // --- secrets at rest ([`secrets`]) ---------------------------------------------------------
    /// Sets the keys secrets are sealed and opened with, once: `false` when they were set already
    /// (they stay as they were). Until then the store reads secrets stored in clear and refuses to
    /// write any.
    fn set_secret_keys(&self, keys: secrets::SecretBox) -> bool;
    /// What secrets the database holds (every column of [`secrets::COLUMNS`]), without opening any.
    async fn secret_inventory(&self) -> StoreResult<secrets::SecretInventory>;
    /// Rewrites, in one transaction, the stored secrets `which` selects: each is opened with this
    /// store's keys (clear text as it is) and sealed under `to`'s primary key. Returns how many
    /// were rewritten; on any error nothing is.
    async fn reseal_secrets(&self, to: &secrets::SecretBox, which: secrets::Reseal) -> StoreResult<u64>;

    // --- outbound provisioning ([`outbound`], issue #15) --------------------------------------
    /// Provisioning targets, their mapping tables and runs.
    fn outbound(&self) -> &dyn outbound::OutboundStore;
}

/// Re-exported so callers can name filters without depending on the core directly.
pub type ScimFilter = Filter;
