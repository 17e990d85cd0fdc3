//! Reading rows into the model, once for both backends: the queries of the two stores name the same
//! columns with the same meaning, and [`Cols`] reads them from a SQLite or a PostgreSQL row alike.

use crate::StoreError;
use crate::audit::{Actor, RequestLogEntry};
use crate::directory::{self, DirectoryGroup, DirectoryUser};
use crate::index::fold;
use crate::model::{Connection, ConnectionPolicy, ConnectionStatus, IdpKind};
use crate::roles::{Role, RoleMapping, RoleMatch};
use crate::secrets::{self, SecretKeys};
use crate::webhooks::{AttemptOrigin, Webhook, WebhookAttempt, WebhookStatus};
use rollcall_scim::ScimError;
use serde_json::Value;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// Typed column reads by name.
pub(crate) trait Cols {
    fn text(&self, col: &str) -> String;
    fn opt_text(&self, col: &str) -> Option<String>;
    fn int(&self, col: &str) -> i64;
    fn opt_int(&self, col: &str) -> Option<i64>;
    /// A 32-bit integer column (`integer` on PostgreSQL).
    fn int4(&self, col: &str) -> i32;
    fn flag(&self, col: &str) -> bool;
    fn bytes(&self, col: &str) -> Vec<u8>;
    fn opt_bytes(&self, col: &str) -> Option<Vec<u8>>;
    /// A nullable integer column the row may not have (`None` then).
    fn maybe_int(&self, col: &str) -> Option<i64>;
}

impl<R> Cols for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> String {
        self.get(col)
    }
    fn opt_text(&self, col: &str) -> Option<String> {
        self.get(col)
    }
    fn int(&self, col: &str) -> i64 {
        self.get(col)
    }
    fn opt_int(&self, col: &str) -> Option<i64> {
        self.get(col)
    }
    fn int4(&self, col: &str) -> i32 {
        self.get(col)
    }
    fn flag(&self, col: &str) -> bool {
        self.get(col)
    }
    fn bytes(&self, col: &str) -> Vec<u8> {
        self.get(col)
    }
    fn opt_bytes(&self, col: &str) -> Option<Vec<u8>> {
        self.get(col)
    }
    fn maybe_int(&self, col: &str) -> Option<i64> {
        self.try_get(col).unwrap_or(None)
    }
}

/// A 32-byte hash column (NULL or malformed: `None`).
pub(crate) fn hash_col(row: &impl Cols, col: &str) -> Option<[u8; 32]> {
    row.opt_bytes(col).and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
}

/// A row of `scim_connections`.
pub(crate) fn conn_of(row: &impl Cols) -> Connection {
    Connection {
        id: row.text("id"),
        org_id: row.text("org_id"),
        name: row.text("name"),
        idp: row.text("idp").parse().unwrap_or(IdpKind::Generic),
        kind: row.opt_text("kind").and_then(|k| k.parse().ok()).unwrap_or_default(),
        status: row.text("status").parse().unwrap_or(ConnectionStatus::Disabled),
        token_prefix: row.opt_text("token_prefix"),
        token_hash: hash_col(row, "token_hash"),
        next_token_prefix: row.opt_text("next_token_prefix"),
        next_token_hash: hash_col(row, "next_token_hash"),
        rotation_started_us: row.opt_int("rotation_started_us"),
        created_us: row.int("created_us"),
        last_request_us: row.opt_int("last_request_us"),
        last_user_agent: row.opt_text("last_user_agent"),
        detected_idp: row.opt_text("detected_idp").and_then(|s| s.parse().ok()),
        detected_idp_first_seen_us: row.opt_int("detected_idp_first_seen_us"),
        detected_idp_last_seen_us: row.opt_int("detected_idp_last_seen_us"),
        policy: ConnectionPolicy::from_stored(row.opt_text("policy").as_deref()),
        debug_logging: row.flag("debug_logging"),
        staged_us: row.maybe_int("staged_us"),
    }
}

/// A row of `webhook_endpoints`, its signing secrets opened with `keys`.
pub(crate) fn webhook_of(row: &impl Cols, keys: &SecretKeys) -> Result<Webhook, StoreError> {
    let id = row.text("id");
    let context = secrets::webhook_secret_context(&id);
    let secret = keys.open(&row.text("secret"), &context)?;
    let previous_secret = match row.opt_text("previous_secret") {
        Some(p) => Some(keys.open(&p, &context)?),
        None => None,
    };
    Ok(Webhook {
        id,
        org_id: row.opt_text("org_id"),
        url: row.text("url"),
        description: row.text("description"),
        event_types: serde_json::from_str(&row.text("event_types")).unwrap_or_default(),
        secret,
        previous_secret,
        previous_secret_expires_us: row.opt_int("previous_secret_expires_us"),
        status: row.text("status").parse().unwrap_or(WebhookStatus::Disabled),
        disabled_reason: row.opt_text("disabled_reason"),
        cursor_seq: row.int("cursor_seq"),
        next_attempt_us: row.int("next_attempt_us"),
        failing_since_us: row.opt_int("failing_since_us"),
        consecutive_failures: row.int("consecutive_failures"),
        last_error: row.opt_text("last_error"),
        lease_owner: row.opt_text("lease_owner"),
        lease_expires_us: row.opt_int("lease_expires_us"),
        created_us: row.int("created_us"),
        updated_us: row.int("updated_us"),
    })
}

/// A row of `webhook_attempts`.
pub(crate) fn attempt_of(row: &impl Cols) -> WebhookAttempt {
    WebhookAttempt {
        id: row.int("pk"),
        endpoint_id: row.text("endpoint_id"),
        event_id: row.text("event_id"),
        event_seq: row.opt_int("event_seq"),
        event_type: row.text("event_type"),
        attempt: row.int("attempt"),
        origin: AttemptOrigin::parse(&row.text("origin")),
        succeeded: row.flag("succeeded"),
        status_code: row.opt_int("status_code").and_then(|s| u16::try_from(s).ok()),
        latency_us: row.int("latency_us"),
        response_excerpt: row.opt_text("response_excerpt"),
        error: row.opt_text("error"),
        created_us: row.int("created_us"),
    }
}

pub(crate) fn role_of(row: &impl Cols) -> Role {
    Role {
        id: row.text("id"),
        org_id: row.text("org_id"),
        key: row.text("key"),
        name: row.text("name"),
        description: row.opt_text("description"),
        created_us: row.int("created_us"),
    }
}

pub(crate) fn mapping_of(row: &impl Cols) -> RoleMapping {
    let kind = row.text("match_kind");
    RoleMapping {
        id: row.text("id"),
        connection_id: row.text("connection_id"),
        role_id: row.text("role_id"),
        role_key: row.text("role_key"),
        matches: RoleMatch::from_parts(&kind, row.text("match_display")).unwrap_or(RoleMatch::GroupName(String::new())),
        created_us: row.int("created_us"),
    }
}

/// Columns `pk, id, connection_id, external_id, status, doc, roles, created_us, modified_us,
/// deleted_us` of [`directory::users_sql`].
pub(crate) fn directory_user_of(row: &impl Cols) -> DirectoryUser {
    DirectoryUser {
        pk: row.int("pk"),
        id: row.text("id"),
        connection_id: row.text("connection_id"),
        external_id: row.opt_text("external_id"),
        status: directory::parse_status(&row.text("status")),
        doc: serde_json::from_str(&row.text("doc")).unwrap_or(Value::Null),
        roles: directory::parse_roles(row.opt_text("roles").as_deref()),
        workspaces: directory::parse_roles(row.opt_text("workspaces").as_deref()),
        groups: None,
        created_us: row.int("created_us"),
        modified_us: row.int("modified_us"),
        deleted_us: row.opt_int("deleted_us"),
    }
}

/// Columns of [`directory::groups_sql`].
pub(crate) fn directory_group_of(row: &impl Cols) -> DirectoryGroup {
    DirectoryGroup {
        pk: row.int("pk"),
        id: row.text("id"),
        connection_id: row.text("connection_id"),
        external_id: row.opt_text("external_id"),
        display_name: row.opt_text("display_name"),
        member_count: row.int("member_count"),
        created_us: row.int("created_us"),
        modified_us: row.int("modified_us"),
    }
}

/// Columns of [`directory::members_sql`].
pub(crate) fn directory_member_of(row: &impl Cols) -> directory::DirectoryMember {
    directory::DirectoryMember {
        pk: row.int("pk"),
        id: row.text("id"),
        kind: row.text("kind"),
        name: row.opt_text("name"),
        status: row.opt_text("status").as_deref().map(directory::parse_status),
    }
}

/// A unique-index violation as the 409 to answer (`detail` says what is taken), else the error.
pub(crate) fn taken(e: sqlx::Error, detail: impl FnOnce() -> String) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Scim(ScimError::conflict(detail())),
        _ => StoreError::Database(e),
    }
}

/// A role (`what`: "role") or workspace key taken in the organization: 409.
pub(crate) fn key_taken(e: sqlx::Error, what: &str, key: &str) -> StoreError {
    taken(e, || {
        format!("a {what} with key \"{key}\" already exists in this organization")
    })
}

/// A duplicate role or workspace mapping: 409.
pub(crate) fn mapping_taken(e: sqlx::Error) -> StoreError {
    taken(e, || "this mapping already exists on the connection".into())
}

/// Whether a role key follows the `scim:<group name>` convention.
pub(crate) fn is_scim_role(key: &str) -> bool {
    fold(key).starts_with(crate::roles::SCIM_ROLE_PREFIX)
}

/// The protected e-mail address lookup's userName, folded.
pub(crate) fn folded_user_name(doc: &Value) -> String {
    doc.get("userName")
        .and_then(Value::as_str)
        .map(fold)
        .unwrap_or_default()
}

/// An `events` row, with its `data` and `actor` as each database stores JSON.
pub(crate) fn event_of(row: &impl Cols, data: Value, actor: Option<String>) -> crate::model::Event {
    crate::model::Event {
        seq: row.int("seq"),
        id: row.text("id"),
        kind: row.text("type"),
        org_id: row.opt_text("org_id"),
        connection_id: row.opt_text("connection_id"),
        resource_type: row.opt_text("resource_type"),
        resource_id: row.opt_text("resource_id"),
        data,
        created_us: row.int("created_us"),
        actor: Actor::from_json(actor.as_deref()),
        user_agent: row.opt_text("user_agent"),
        request_id: row.opt_text("request_id"),
    }
}

/// A `request_log` row.
pub(crate) fn request_log_of(row: &impl Cols) -> RequestLogEntry {
    RequestLogEntry {
        seq: row.int("seq"),
        connection_id: row.text("connection_id"),
        at_us: row.int("at_us"),
        method: row.text("method"),
        path: row.text("path"),
        status: u16::try_from(row.int4("status")).unwrap_or(0),
        latency_us: row.int("latency_us"),
        scim_type: row.opt_text("scim_type"),
        error_detail: row.opt_text("error_detail"),
        user_agent: row.opt_text("user_agent"),
        request_id: row.opt_text("request_id"),
        token_prefix: row.opt_text("token_prefix"),
        auth_scheme: row.opt_text("auth_scheme"),
        request_body: row.opt_text("request_body"),
        response_body: row.opt_text("response_body"),
    }
}
