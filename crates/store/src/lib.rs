//! # rollcall-store
//!
//! Everything Rollcall keeps, behind [`Store`], the sum of one trait per concern: tenancy and keys
//! ([`TenancyStore`]: organizations, SCIM connections with hashed bearer tokens, API keys),
//! resources ([`ResourceStore`]: users, groups, membership as rows), roles and the directory
//! ([`RoleStore`]), the event log ([`EventStore`]), webhooks ([`WebhookStore`]), directory
//! connections, staging, workspaces, sessions, the deprovisioning guard, and outbound provisioning
//! ([`outbound::OutboundStore`]). Every change's events are written in the same transaction as the
//! change. A consumer takes the trait it needs (the webhook dispatcher takes [`WebhookStore`]).
//! Each concern but resources is written once for both databases (on `backend.rs`'s `Backend`, one
//! macro per concern); [`sqlite::SqliteStore`] is the embedded default.
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
mod resource_rows;
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
        crate::event_log::query_events_statement::<crate::sqlite::SqliteStore>(q, None)
    }
}
/// The Events API's statement on PostgreSQL, with its arguments (public for the EXPLAIN tests); its
/// ceiling (`Backend::events_ceiling`) is left at the largest number.
pub mod postgres_events {
    pub fn query_events_sql(q: &crate::EventQuery) -> (String, sqlx::postgres::PgArguments) {
        crate::event_log::query_events_statement::<crate::postgres::PostgresStore>(q, Some(i64::MAX))
    }
}
pub mod staging;
pub mod tenancy;
mod update;
pub mod webhooks;
pub mod workspaces;

pub use audit::{Actor, EventQuery, RequestLogEntry};
pub use directory::{DirectoryGroup, DirectoryMember, DirectoryQuery, DirectoryUser, GroupQuery, GroupRef, UserStatus};
pub use directory_sync::{
    ConnectionKind, DirectorySettings, DirectorySource, DirectorySourceUpdate, NewDirectoryConnection, SyncCounts,
    SyncOutcome, SyncScope, SyncStatus,
};
pub use directory_sync_stores::DirectorySyncStore;
pub use event_log::EventStore;
pub use guard::{GuardResolution, GuardSettings, GuardState, GuardStore, HeldEvent};
pub use model::*;
pub use roles::{
    NewRole, NewRoleMapping, ProtectedUser, Role, RoleChange, RoleDelta, RoleMapping, RoleMatch, RolePreview,
    RoleUpdate, UserRef,
};
pub use roles_stores::RoleStore;
pub use sessions::{
    BrowserSession, ConsoleSessionRow, NewBrowserSession, NewSetupLink, SessionKind, SessionStore, SetupLink,
    SetupLinkStatus, SetupSessionRow,
};
pub use staging::{MatchAccount, MatchUpload, MatchUser, Snapshot, StagingOutcome, StagingStore};
pub use tenancy::TenancyStore;
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

/// SCIM users and groups of a connection: their documents, membership and lists. The one concern
/// each database implements on its own (SQLite's inline reads and group-committed writer,
/// PostgreSQL's few-round-trip statements), behind the same contract tests.
#[async_trait]
pub trait ResourceStore: Send + Sync {
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

    /// Inserts several resources of one kind in one transaction, all or none, as that many
    /// [`ResourceStore::create_resource`]s would one after the other (the creates of a `/Bulk`
    /// request). On an error nothing is written: the caller can then create them one at a time to
    /// learn which of them failed and why.
    async fn create_resources(
        &self,
        ctx: &WriteContext,
        kind: ResourceKind,
        items: Vec<(Value, Vec<rollcall_scim::patch::MemberRef>)>,
    ) -> StoreResult<Vec<StoredResource>>;

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
}

/// The one storage interface; SQLite and PostgreSQL implement it with the same behaviour.
#[async_trait]
pub trait Store:
    tenancy::TenancyStore
    + ResourceStore
    + RoleStore
    + EventStore
    + DirectorySyncStore
    + staging::StagingStore
    + WorkspaceStore
    + webhooks::WebhookStore
    + sessions::SessionStore
    + guard::GuardStore
    + Send
    + Sync
    + 'static
{
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
