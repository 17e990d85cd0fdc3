//! The audit side of the store: who made a change ([`Actor`], recorded with every event), queries
//! over the event log ([`EventQuery`]) and the per-connection log of SCIM requests
//! ([`RequestLogEntry`]).

use serde::{Deserialize, Serialize};

/// Who made a change. Stored with each event as a small JSON object, e.g.
/// `{"type":"scim_token","connection_id":"…","token_prefix":"rc_scim_Ab12"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A SCIM client (the identity provider), authenticated with one of the connection's tokens:
    /// the current one or, during a rotation, the next one, told apart by its prefix.
    ScimToken {
        connection_id: String,
        token_prefix: Option<String>,
    },
    /// Rollcall reading a directory connection's directory (Google Workspace), on its schedule or
    /// on demand: the changes it found.
    DirectorySync { connection_id: String },
    /// A management API request authenticated with an operator API key.
    ApiKey { id: String, name: String },
    /// A customer's IT admin on the setup page, signed in through a setup link (`id`: the link's).
    SetupLink { id: String },
    /// The `rollcall` command line, run by an operator with access to the database.
    Cli,
    /// Rollcall itself (first-start bootstrap, background work), and events recorded before actors
    /// were.
    #[default]
    System,
}

impl Actor {
    /// The JSON text stored in the `actor` column.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"system"}"#.to_string())
    }

    /// Reads the `actor` column; NULL (events older than the column) is `system`.
    pub fn from_json(text: Option<&str>) -> Actor {
        match text {
            None => Actor::System,
            Some(t) => serde_json::from_str(t).unwrap_or_else(|e| {
                tracing::warn!(actor = t, error = %e, "unreadable event actor; shown as system");
                Actor::System
            }),
        }
    }
}

/// A page of the event log: events after a sequence number, oldest first, matching every filter
/// given (an empty `types` matches every type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Events with a greater sequence number (0: from the start).
    pub after_seq: i64,
    pub limit: i64,
    /// Exact event types, any of which matches (prefixes are expanded by the caller, see
    /// [`crate::events::expand_type_filter`]).
    pub types: Vec<String>,
    pub org_id: Option<String>,
    pub connection_id: Option<String>,
    /// The resource an event is about, or the member it added to or removed from a group: the audit
    /// log of one user or group.
    pub resource_id: Option<String>,
}

/// One SCIM request as the request log keeps it. Bodies are kept only while debug logging is on for
/// the connection, with passwords and tokens redacted before they reach the store; the
/// `Authorization` header is never kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestLogEntry {
    /// Position in the log, increasing (ignored when appending).
    pub seq: i64,
    pub connection_id: String,
    /// When the request arrived.
    pub at_us: i64,
    pub method: String,
    /// Path and query string, as sent.
    pub path: String,
    pub status: u16,
    /// From arrival to the response being ready, in microseconds.
    pub latency_us: i64,
    /// `scimType` and `detail` of a SCIM error answer.
    pub scim_type: Option<String>,
    pub error_detail: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The prefix of the token that authenticated the request; `None` when none did.
    pub token_prefix: Option<String>,
    /// How the request presented its credentials, classified, never the credentials themselves:
    /// `none` (no `Authorization` header), `empty` (an empty one), `bearer`, `bearer_doubled` (`Bearer Bearer ...`),
    /// `bearer_empty`, `bearer_api_key` (an operator API key), `bearer_other` (not a SCIM token's
    /// shape), `basic`, `bare` (a value without a scheme: a token pasted without `Bearer `), `other`
    /// (another scheme). `None` for entries logged before it was recorded.
    pub auth_scheme: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}
