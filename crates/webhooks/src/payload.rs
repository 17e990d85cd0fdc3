//! The body of a delivery, in the Standard Webhooks shape: `{"type", "timestamp", "data"}`. The
//! body of an event is the same at every attempt.

use crate::event::EventView;
use rollcall_store::Event;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The event type of a test message.
pub const PING: &str = "webhook.ping";

pub use crate::event::rfc3339;

/// A delivery of an event: `type` and `timestamp` (when the change was made) as Standard Webhooks
/// has them, and `data`, the event exactly as the Events API gives it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// The event's type (`user.created`...), as `data.type`.
    #[serde(rename = "type")]
    #[schema(example = "user.created")]
    pub kind: String,
    /// When the change was made (RFC 3339), as `data.occurred_at`.
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub data: EventView,
}

/// A test message, sent by `POST /api/v1/webhooks/{id}/ping`; its `webhook-id` starts with
/// `ping_`. Not an event: it is not in the Events API and not retried.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ping {
    /// Always `webhook.ping`.
    #[serde(rename = "type")]
    #[schema(example = "webhook.ping")]
    pub kind: String,
    /// When it was sent (RFC 3339).
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub data: PingData,
}

/// What a test message says.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PingData {
    /// The message id, also its `webhook-id`.
    pub id: String,
    /// The endpoint it was sent to.
    pub endpoint_id: String,
    pub message: String,
}

/// The payload of an event.
pub fn payload(event: &Event) -> Value {
    serde_json::to_value(Delivery {
        kind: event.kind.clone(),
        timestamp: rfc3339(event.created_us),
        data: EventView::from(event),
    })
    .unwrap_or_default()
}

/// The serialized payload.
pub fn body(event: &Event) -> Vec<u8> {
    serde_json::to_vec(&payload(event)).unwrap_or_default()
}

/// The body of a test message to an endpoint.
pub fn ping_body(endpoint_id: &str, message_id: &str, now_us: i64) -> Vec<u8> {
    let ping = Ping {
        kind: PING.to_string(),
        timestamp: rfc3339(now_us),
        data: PingData {
            id: message_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
            message: "a test message from Rollcall".to_string(),
        },
    };
    serde_json::to_vec(&ping).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_shape() {
        let e = Event {
            seq: 7,
            id: "0190".into(),
            kind: "user.created".into(),
            org_id: Some("o".into()),
            connection_id: Some("c".into()),
            resource_type: Some("User".into()),
            resource_id: Some("u".into()),
            data: json!({"userName": "a"}),
            created_us: 1_700_000_000_123_456,
            actor: rollcall_store::Actor::System,
            user_agent: Some("Okta SCIM Client 1.0.0".into()),
            request_id: Some("r-1".into()),
        };
        let p = payload(&e);
        assert_eq!(p["type"], "user.created");
        assert_eq!(p["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(p["data"]["sequence"], 7);
        assert_eq!(p["data"]["type"], "user.created");
        assert_eq!(p["data"]["occurred_at"], p["timestamp"]);
        assert_eq!(p["data"]["org_id"], "o");
        assert_eq!(p["data"]["actor"], json!({"type": "system"}));
        assert_eq!(p["data"]["data"]["userName"], "a");
        assert_eq!(p["data"]["user_agent"], "Okta SCIM Client 1.0.0");
        assert!(p["data"]["actor"].is_object() || p["data"]["actor"].is_string());
        assert_eq!(body(&e), body(&e));
    }
}
