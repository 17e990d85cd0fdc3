//! Directory connections (issue #17): a connection that *reads* a directory on a schedule instead
//! of receiving SCIM requests. Google Workspace is the first: its service account key is kept
//! sealed ([`crate::secrets`], context `directory_credentials:<connection id>`), never returned.
//!
//! One row per directory connection holds what to read ([`DirectorySettings`]), how often, and
//! the state of its synchronisation: a lease (`lease_owner` until `lease_until_us`) taken by the
//! node that runs it, so that with several nodes on one PostgreSQL database one connection is
//! synced by one node at a time, the progress of the run in progress, and the last run's outcome.
//!
//! The statements are written once for both databases ([`crate::directory_sync_stores`]).

use crate::model::{Connection, IdpKind, WriteContext};
use crate::secrets::SecretKeys;
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// The purpose of directory credentials in the sealed values' associated data.
pub const DIRECTORY_CREDENTIALS: &str = "directory_credentials";

/// The context of a connection's directory credentials.
pub fn credentials_context(connection_id: &str) -> String {
    format!("{DIRECTORY_CREDENTIALS}:{connection_id}")
}

/// The default time between two syncs: ten minutes.
pub const DEFAULT_INTERVAL_S: i64 = 600;
/// The shortest accepted interval.
pub const MIN_INTERVAL_S: i64 = 60;
/// The longest accepted interval: a week.
pub const MAX_INTERVAL_S: i64 = 7 * 24 * 3600;

/// How a connection gets its users and groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// The identity provider pushes over SCIM with the connection's bearer token.
    #[default]
    Scim,
    /// Rollcall reads Google Workspace through the Admin SDK Directory API.
    GoogleWorkspace,
}

impl ConnectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Scim => "scim",
            ConnectionKind::GoogleWorkspace => "google_workspace",
        }
    }

    /// Whether connections of this kind read a directory (and have no SCIM token).
    pub fn is_directory(self) -> bool {
        self != ConnectionKind::Scim
    }

    /// The identity provider of a connection of this kind, when the kind decides it.
    pub fn idp(self) -> Option<IdpKind> {
        match self {
            ConnectionKind::Scim => None,
            ConnectionKind::GoogleWorkspace => Some(IdpKind::Google),
        }
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "scim" => Ok(ConnectionKind::Scim),
            "google_workspace" | "google" => Ok(ConnectionKind::GoogleWorkspace),
            other => Err(format!(
                "unknown connection kind \"{other}\"; expected \"scim\" or \"google_workspace\""
            )),
        }
    }
}

/// Which part of the directory is read. Empty lists: all of it. A user is read when it is in one
/// of `org_units` (or below) or a member of one of `groups`; only `groups` are read as groups when
/// any are given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncScope {
    /// Organizational unit paths, e.g. `/Engineering` (a unit includes the units below it).
    #[serde(default)]
    pub org_units: Vec<String>,
    /// Group e-mail addresses.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl SyncScope {
    pub fn is_everything(&self) -> bool {
        self.org_units.is_empty() && self.groups.is_empty()
    }
}

/// What a Google Workspace connection reads, and where (stored as JSON). The key is not here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySettings {
    /// The Google customer id (`C0abc123`), or `my_customer`: the admin's own.
    pub customer: String,
    /// The administrator the service account acts as (domain-wide delegation).
    pub admin_email: String,
    /// The service account's address (`client_email` of its key), shown to operators.
    pub client_email: String,
    /// The service account's OAuth client id (`client_id` of its key): what the Google admin
    /// authorises for domain-wide delegation.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scope: SyncScope,
    /// The Directory API's base URL; `None`: Google's (`https://admin.googleapis.com`). For tests.
    #[serde(default)]
    pub api_base_url: Option<String>,
    /// The token endpoint; `None`: the key's `token_uri`. For tests.
    #[serde(default)]
    pub token_url: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Everything read was written.
    Succeeded,
    /// The directory was read, but some users or groups could not be written (see the error).
    Partial,
    /// The directory could not be read (or the run was abandoned); nothing was deleted.
    Failed,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Succeeded => "succeeded",
            SyncStatus::Partial => "partial",
            SyncStatus::Failed => "failed",
        }
    }
}

impl FromStr for SyncStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "succeeded" => Ok(SyncStatus::Succeeded),
            "partial" => Ok(SyncStatus::Partial),
            "failed" => Ok(SyncStatus::Failed),
            other => Err(format!("unknown sync status \"{other}\"")),
        }
    }
}

/// What a run did, and (while it runs) how far it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncCounts {
    /// The step a run in progress is at (`token`, `users`, `groups`, `members`, `apply`, `done`).
    pub phase: String,
    pub users_read: u64,
    pub groups_read: u64,
    pub users_created: u64,
    pub users_updated: u64,
    pub users_deactivated: u64,
    pub users_deleted: u64,
    pub groups_created: u64,
    pub groups_updated: u64,
    pub groups_deleted: u64,
    /// Users or groups that could not be written (e.g. a protected user Google deleted).
    pub failed: u64,
}

/// A directory connection's settings and sync state.
#[derive(Clone, PartialEq)]
pub struct DirectorySource {
    pub connection_id: String,
    pub kind: ConnectionKind,
    pub settings: DirectorySettings,
    /// The service account key (JSON), opened. Never serialized, never printed.
    pub credentials: String,
    pub interval_s: i64,
    /// When the next run is due.
    pub next_run_us: i64,
    pub lease_owner: Option<String>,
    pub lease_until_us: Option<i64>,
    /// When the run in progress started (`None`: none is).
    pub running_since_us: Option<i64>,
    /// The run in progress's counts.
    pub progress: Option<SyncCounts>,
    pub last_started_us: Option<i64>,
    pub last_finished_us: Option<i64>,
    pub last_status: Option<SyncStatus>,
    pub last_error: Option<String>,
    pub last_counts: Option<SyncCounts>,
    pub created_us: i64,
    pub updated_us: i64,
}

impl fmt::Debug for DirectorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectorySource")
            .field("connection_id", &self.connection_id)
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("credentials", &"<redacted>")
            .field("interval_s", &self.interval_s)
            .field("next_run_us", &self.next_run_us)
            .field("lease_owner", &self.lease_owner)
            .field("running_since_us", &self.running_since_us)
            .field("last_status", &self.last_status)
            .finish_non_exhaustive()
    }
}

/// What is needed to create a directory connection (created active, without a token).
#[derive(Clone)]
pub struct NewDirectoryConnection {
    pub org_id: String,
    pub name: String,
    pub kind: ConnectionKind,
    pub settings: DirectorySettings,
    /// The key, in clear: sealed before it is written.
    pub credentials: String,
    pub interval_s: i64,
}

/// A change to a directory connection's settings; `None` leaves a field as it is.
#[derive(Clone, Default)]
pub struct DirectorySourceUpdate {
    pub settings: Option<DirectorySettings>,
    pub credentials: Option<String>,
    pub interval_s: Option<i64>,
}

/// How a run ended, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    pub finished_us: i64,
    pub status: SyncStatus,
    pub error: Option<String>,
    pub counts: SyncCounts,
}

/// The longest error kept with a run.
pub const MAX_ERROR_BYTES: usize = 2000;

pub(crate) fn invalid(detail: impl Into<String>) -> StoreError {
    StoreError::Scim(ScimError::invalid_value(detail.into()))
}

/// Reads a row of `directory_sources`, opening the credentials.
pub(crate) fn source_of<R: sqlx::Row>(row: &R, keys: &SecretKeys) -> StoreResult<DirectorySource>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let connection_id: String = row.try_get("connection_id")?;
    let provider: String = row.try_get("provider")?;
    let settings: String = row.try_get("settings")?;
    let sealed: String = row.try_get("credentials")?;
    let json = |col: &str| -> StoreResult<Option<SyncCounts>> {
        let text: Option<String> = row.try_get(col)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    };
    Ok(DirectorySource {
        credentials: keys.open(&sealed, &credentials_context(&connection_id))?,
        kind: provider.parse().unwrap_or(ConnectionKind::GoogleWorkspace),
        settings: serde_json::from_str(&settings).map_err(|e| {
            invalid(format!(
                "the stored settings of connection {connection_id} are unreadable: {e}"
            ))
        })?,
        interval_s: row.try_get("interval_s")?,
        next_run_us: row.try_get("next_run_us")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until_us: row.try_get("lease_until_us")?,
        running_since_us: row.try_get("running_since_us")?,
        progress: json("progress")?,
        last_started_us: row.try_get("last_started_us")?,
        last_finished_us: row.try_get("last_finished_us")?,
        last_status: row
            .try_get::<Option<String>, _>("last_status")?
            .and_then(|s| s.parse().ok()),
        last_error: row.try_get("last_error")?,
        last_counts: json("last_counts")?,
        created_us: row.try_get("created_us")?,
        updated_us: row.try_get("updated_us")?,
        connection_id,
    })
}

/// The event a run's end raises, if any: `connection.directory_sync_failed` when it ended `failed`
/// or `partial`, `connection.directory_sync_recovered` when it succeeded after one that had not.
/// A run that succeeds like the one before raises none, so routine runs stay quiet.
pub(crate) fn run_event(previous: Option<&str>, outcome: &SyncOutcome) -> Option<(&'static str, Value)> {
    let kind = match outcome.status {
        SyncStatus::Failed | SyncStatus::Partial => crate::events::CONNECTION_DIRECTORY_SYNC_FAILED,
        SyncStatus::Succeeded if previous.is_some_and(|p| p != SyncStatus::Succeeded.as_str()) => {
            crate::events::CONNECTION_DIRECTORY_SYNC_RECOVERED
        }
        SyncStatus::Succeeded => return None,
    };
    Some((
        kind,
        serde_json::json!({
            "status": outcome.status.as_str(),
            "error": outcome.error.as_deref().map(clip_error),
            "counts": outcome.counts,
            "previous_status": previous,
        }),
    ))
}

/// The write context of a run's event: the connection's organization, the `directory_sync` actor.
pub(crate) fn run_event_context(org_id: &str, connection_id: &str) -> WriteContext {
    WriteContext {
        org_id: org_id.to_string(),
        connection_id: connection_id.to_string(),
        user_agent: None,
        request_id: None,
        actor: crate::Actor::DirectorySync {
            connection_id: connection_id.to_string(),
        },
    }
}

/// Checks a new source's settings (the caller validates them in detail) and seals its key.
pub(crate) fn sealed_credentials(keys: &SecretKeys, connection_id: &str, credentials: &str) -> StoreResult<String> {
    Ok(keys.seal(credentials, &credentials_context(connection_id))?)
}

pub(crate) fn check_interval(interval_s: i64) -> StoreResult<()> {
    if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&interval_s) {
        return Err(invalid(format!(
            "the sync interval must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} seconds, not {interval_s}"
        )));
    }
    Ok(())
}

/// The error text kept with a run: at most [`MAX_ERROR_BYTES`].
pub fn clip_error(e: &str) -> String {
    crate::webhooks::truncate_utf8(e, MAX_ERROR_BYTES).to_string()
}

/// A connection with the fields a new directory connection starts with.
pub(crate) fn new_connection(new: &NewDirectoryConnection, id: String, now: i64) -> Connection {
    Connection {
        id,
        org_id: new.org_id.clone(),
        name: new.name.clone(),
        idp: new.kind.idp().unwrap_or(IdpKind::Generic),
        kind: new.kind,
        status: crate::model::ConnectionStatus::Active,
        token_prefix: None,
        token_hash: None,
        next_token_prefix: None,
        next_token_hash: None,
        rotation_started_us: None,
        created_us: now,
        last_request_us: None,
        last_user_agent: None,
        detected_idp: None,
        detected_idp_first_seen_us: None,
        detected_idp_last_seen_us: None,
        policy: Default::default(),
        debug_logging: false,
        staged_us: None,
    }
}
