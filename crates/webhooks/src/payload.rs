//! The body of a delivery, in the Standard Webhooks shape: `{"type", "timestamp", "data"}`. The
//! body of an event is the same at every attempt.

use rollcall_store::Event;
use serde_json::{Value, json};

/// The event type of a test message.
pub const PING: &str = "webhook.ping";

/// RFC 3339 time of microseconds since the Unix epoch.
pub fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The payload of an event: `data` holds its identity (`id`, the `webhook-id` too, and `seq`), what
/// it is about, who made it (`actor`, `user_agent`, `request_id`) and `details`, the event's own data
/// (for updates, what changed).
pub fn payload(event: &Event) -> Value {
    json!({
        "type": event.kind,
        "timestamp": rfc3339(event.created_us),
        "data": {
            "id": event.id,
            "seq": event.seq,
            "org_id": event.org_id,
            "connection_id": event.connection_id,
            "resource_type": event.resource_type,
            "resource_id": event.resource_id,
            "actor": event.actor,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "details": event.data,
        }
    })
}

/// The serialized payload.
pub fn body(event: &Event) -> Vec<u8> {
    serde_json::to_vec(&payload(event)).unwrap_or_default()
}

/// The body of a test message to an endpoint.
pub fn ping_body(endpoint_id: &str, message_id: &str, now_us: i64) -> Vec<u8> {
    let v = json!({
        "type": PING,
        "timestamp": rfc3339(now_us),
        "data": { "id": message_id, "endpoint_id": endpoint_id, "message": "a test message from Rollcall" }
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p["data"]["seq"], 7);
        assert_eq!(p["data"]["details"]["userName"], "a");
        assert_eq!(p["data"]["user_agent"], "Okta SCIM Client 1.0.0");
        assert!(p["data"]["actor"].is_object() || p["data"]["actor"].is_string());
        assert_eq!(body(&e), body(&e));
    }
}
