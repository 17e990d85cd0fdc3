//! An event as applications receive it: the same object in the Events API (`GET /api/v1/events`)
//! and as the `data` of a webhook delivery, so a consumer parses one shape from both.

use rollcall_store::{Actor, Event, cursor};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// RFC 3339 time of microseconds since the Unix epoch.
pub fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The kind prefix of event cursors.
pub const EVENTS_CURSOR: &str = "ev1:";

/// Who made a change.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActorView {
    /// The identity provider, through a SCIM connection's token (its prefix tells the current token
    /// from the next one during a rotation).
    ScimToken {
        connection_id: String,
        #[schema(required = true)]
        token_prefix: Option<String>,
    },
    /// Rollcall reading a directory connection's directory (Google Workspace): the changes it found.
    DirectorySync { connection_id: String },
    /// A management API request with an operator API key.
    ApiKey { id: String, name: String },
    /// A customer's IT admin on the setup page, signed in through the setup link `id`.
    SetupLink { id: String },
    /// The `rollcall` command line.
    Cli,
    /// Rollcall itself (first-start bootstrap, background work), or a change recorded before actors
    /// were.
    System,
}

impl From<&Actor> for ActorView {
    fn from(a: &Actor) -> Self {
        match a.clone() {
            Actor::ScimToken {
                connection_id,
                token_prefix,
            } => ActorView::ScimToken {
                connection_id,
                token_prefix,
            },
            Actor::DirectorySync { connection_id } => ActorView::DirectorySync { connection_id },
            Actor::ApiKey { id, name } => ActorView::ApiKey { id, name },
            Actor::SetupLink { id } => ActorView::SetupLink { id },
            Actor::Cli => ActorView::Cli,
            Actor::System => ActorView::System,
        }
    }
}

/// One recorded change. See docs/events.md for every type and its `data`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Unique, stable id (UUIDv7); a delivery's `webhook-id` too.
    pub id: String,
    /// Position in the log: increasing in commit order, never reused.
    pub sequence: i64,
    #[serde(rename = "type")]
    #[schema(example = "user.created")]
    pub kind: String,
    /// When the change was made (RFC 3339).
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// The organization the change belongs to; `null` where it has none (API keys, global
    /// webhook endpoints).
    #[schema(required = true)]
    pub org_id: Option<String>,
    #[schema(required = true)]
    pub connection_id: Option<String>,
    /// `User` or `Group` for SCIM resources; `null` for other events.
    #[schema(required = true)]
    pub resource_type: Option<String>,
    #[schema(required = true)]
    pub resource_id: Option<String>,
    pub actor: ActorView,
    /// The client's User-Agent (the identity provider's, for SCIM changes).
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// The `X-Request-Id` of the request that made the change.
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// What changed: `attributes` for a creation, `changed` (`{attr: {before, after}}`) for an
    /// update, `member` for membership, and so on.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Pass as `after` to the Events API to read the events after this one.
    pub cursor: String,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            id: e.id.clone(),
            sequence: e.seq,
            kind: e.kind.clone(),
            occurred_at: rfc3339(e.created_us),
            org_id: e.org_id.clone(),
            connection_id: e.connection_id.clone(),
            resource_type: e.resource_type.clone(),
            resource_id: e.resource_id.clone(),
            actor: (&e.actor).into(),
            user_agent: e.user_agent.clone(),
            request_id: e.request_id.clone(),
            data: e.data.clone(),
            cursor: cursor::encode_number(EVENTS_CURSOR, e.seq),
        }
    }
}
