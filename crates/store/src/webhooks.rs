//! Webhook endpoints and their delivery attempts, as stored, and the changes to an endpoint computed
//! the same way for both stores (like [`crate::connection_ops`]).
//!
//! An endpoint reads the event log through a cursor of its own (`cursor_seq`, the last event it
//! acknowledged or skipped), so delivery is at least once and in `seq` order per endpoint. A
//! dispatcher works on an endpoint only while it holds its lease ([`crate::Store::claim_webhooks`]);
//! every write a dispatcher makes afterwards names the lease owner and the cursor it started from,
//! so a dispatcher whose lease expired, or whose endpoint was replayed meanwhile, changes nothing.

use crate::events;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::str::FromStr;

/// The webhook event types, defined with every other type in [`crate::events`].
pub use crate::events::{
    WEBHOOK_CREATED, WEBHOOK_DELETED, WEBHOOK_DISABLED, WEBHOOK_ENABLED, WEBHOOK_REPLAYED, WEBHOOK_SECRET_ROTATED,
    WEBHOOK_UPDATED,
};

/// Every event type the log records, for validating subscriptions.
pub const EVENT_TYPES: &[&str] = events::ALL;

/// Whether an event of type `kind` goes to an endpoint subscribed to `filter` (exact types and
/// `prefix.*` patterns; an empty filter takes every event).
pub fn subscribed(filter: &[String], kind: &str) -> bool {
    filter.is_empty()
        || filter.iter().any(|f| match f.strip_suffix(".*") {
            Some(prefix) => kind.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
            None => f == kind,
        })
}

/// Checks one entry of a subscription: a known event type, or `prefix.*` where some known type
/// starts with `prefix.`.
pub fn check_event_type(entry: &str) -> Result<(), String> {
    let known = match entry.strip_suffix(".*") {
        Some(prefix) => EVENT_TYPES
            .iter()
            .any(|t| t.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))),
        None => EVENT_TYPES.contains(&entry),
    };
    if known {
        Ok(())
    } else {
        Err(format!(
            "unknown event type \"{entry}\"; expected one of {} or a prefix such as \"user.*\"",
            EVENT_TYPES.join(", ")
        ))
    }
}

/// Whether the dispatcher delivers to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    Active,
    /// Nothing is delivered; the cursor stays where it is, so enabling resumes from there.
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for WebhookStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(WebhookStatus::Active),
            "disabled" => Ok(WebhookStatus::Disabled),
            other => Err(format!(
                "unknown webhook status \"{other}\"; expected \"active\" or \"disabled\""
            )),
        }
    }
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    pub id: String,
    /// `None`: a global endpoint (every organization's events, and those of none).
    pub org_id: Option<String>,
    pub url: String,
    pub description: String,
    /// Subscribed event types and `prefix.*` patterns; empty: every event.
    pub event_types: Vec<String>,
    /// The signing secret, `whsec_<base64>`.
    #[serde(skip)]
    pub secret: String,
    /// The secret before the last rotation, still signing (beside the new one) until it expires.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    pub previous_secret_expires_us: Option<i64>,
    pub status: WebhookStatus,
    /// Why the endpoint is disabled (by an operator, or after failing for the retry horizon).
    pub disabled_reason: Option<String>,
    /// The last event delivered (or skipped as not subscribed).
    pub cursor_seq: i64,
    pub next_attempt_us: i64,
    /// When the current run of failures began; `None` while deliveries succeed.
    pub failing_since_us: Option<i64>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_us: Option<i64>,
    pub created_us: i64,
    pub updated_us: i64,
}

impl Webhook {
    /// The secrets to sign a delivery made at `now_us` with: the current one, and the previous one
    /// while it has not expired.
    pub fn signing_secrets(&self, now_us: i64) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_expires_us)
            && until > now_us
        {
            out.push(prev.as_str());
        }
        out
    }

    /// Whether an event belongs to this endpoint's scope and subscription.
    pub fn wants(&self, event: &crate::Event) -> bool {
        let in_scope = match &self.org_id {
            None => true,
            Some(org) => event.org_id.as_deref() == Some(org.as_str()),
        };
        in_scope && subscribed(&self.event_types, &event.kind)
    }
}

/// What is needed to create an endpoint (created active, its cursor at the end of the log: it
/// receives the events recorded after it).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub org_id: Option<String>,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: String,
}

/// A change to an endpoint's settings; `None` leaves a field as it is. Enabling clears the failure
/// state and makes the endpoint due at once; it resumes from its cursor.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub status: Option<WebhookStatus>,
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOrigin {
    /// The dispatcher, in order from the endpoint's cursor.
    Dispatch,
    /// An operator asked for one event to be sent again.
    Redeliver,
    /// A test message.
    Ping,
}

impl AttemptOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOrigin::Dispatch => "dispatch",
            AttemptOrigin::Redeliver => "redeliver",
            AttemptOrigin::Ping => "ping",
        }
    }
    pub fn parse(s: &str) -> AttemptOrigin {
        match s {
            "redeliver" => AttemptOrigin::Redeliver,
            "ping" => AttemptOrigin::Ping,
            _ => AttemptOrigin::Dispatch,
        }
    }
}

/// A delivery attempt to record. The attempt number is counted by the store (per endpoint and
/// event).
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookAttempt {
    pub endpoint_id: String,
    pub event_id: String,
    pub event_seq: Option<i64>,
    pub event_type: String,
    pub origin: AttemptOrigin,
    pub succeeded: bool,
    pub status_code: Option<u16>,
    pub latency_us: i64,
    /// At most [`MAX_EXCERPT_BYTES`] bytes of the response body.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub created_us: i64,
}

/// Longest response excerpt kept with an attempt, in bytes.
pub const MAX_EXCERPT_BYTES: usize = 1024;

/// A recorded delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookAttempt {
    /// Increasing: newer attempts have larger ids.
    pub id: i64,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_seq: Option<i64>,
    pub event_type: String,
    /// 1 for the first attempt at this event on this endpoint.
    pub attempt: i64,
    pub origin: AttemptOrigin,
    pub succeeded: bool,
    pub status_code: Option<u16>,
    pub latency_us: i64,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub created_us: i64,
}

/// The end of a failed dispatch: when to try again, or the reason to disable the endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookFailure {
    pub next_attempt_us: i64,
    pub disable_reason: Option<String>,
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An event to record about an endpoint: its type and data.
pub(crate) type PendingChange = (&'static str, Value);

/// Applies `update` to `w` at `now_us`; returns the events to record (none when nothing changed).
pub(crate) fn apply_update(w: &mut Webhook, update: &WebhookUpdate, now_us: i64) -> Vec<PendingChange> {
    let mut out = Vec::new();
    let mut changed = serde_json::Map::new();
    if let Some(url) = &update.url
        && *url != w.url
    {
        changed.insert("url".into(), json!({"before": w.url, "after": url}));
        w.url = url.clone();
    }
    if let Some(d) = &update.description
        && *d != w.description
    {
        changed.insert("description".into(), json!({"before": w.description, "after": d}));
        w.description = d.clone();
    }
    if let Some(t) = &update.event_types
        && *t != w.event_types
    {
        changed.insert("event_types".into(), json!({"before": w.event_types, "after": t}));
        w.event_types = t.clone();
    }
    if !changed.is_empty() {
        out.push((WEBHOOK_UPDATED, json!({ "changed": changed })));
    }
    if let Some(status) = update.status
        && status != w.status
    {
        w.status = status;
        match status {
            WebhookStatus::Active => {
                w.disabled_reason = None;
                w.failing_since_us = None;
                w.consecutive_failures = 0;
                w.next_attempt_us = now_us;
                out.push((WEBHOOK_ENABLED, json!({ "last_sequence": w.cursor_seq })));
            }
            WebhookStatus::Disabled => {
                let reason = "disabled through the management API".to_string();
                out.push((WEBHOOK_DISABLED, json!({ "reason": reason })));
                w.disabled_reason = Some(reason);
            }
        }
    }
    if !out.is_empty() {
        w.updated_us = now_us;
    }
    out
}

/// Moves `w`'s cursor back so that delivery starts again at `from_seq`; only backwards.
pub(crate) fn apply_replay(w: &mut Webhook, from_seq: i64, now_us: i64) -> Result<PendingChange, String> {
    if from_seq < 1 {
        return Err("from_sequence must be 1 or more".into());
    }
    let cursor = from_seq - 1;
    if cursor > w.cursor_seq {
        return Err(format!(
            "replay moves the cursor back only: the endpoint has delivered up to event {} (from_sequence at most {})",
            w.cursor_seq,
            w.cursor_seq + 1
        ));
    }
    let before = w.cursor_seq;
    w.cursor_seq = cursor;
    w.next_attempt_us = now_us;
    w.updated_us = now_us;
    Ok((
        WEBHOOK_REPLAYED,
        json!({ "from_sequence": from_seq, "last_sequence_before": before }),
    ))
}

/// The data of the event recording an endpoint's creation.
pub(crate) fn created_data(w: &Webhook) -> Value {
    json!({ "url": w.url, "event_types": w.event_types })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_matching() {
        let f = vec!["user.*".to_string(), "group.created".to_string()];
        assert!(subscribed(&f, "user.created"));
        assert!(subscribed(&f, "user.deactivated"));
        assert!(subscribed(&f, "group.created"));
        assert!(!subscribed(&f, "group.updated"));
        assert!(!subscribed(&f, "users.created"));
        assert!(subscribed(&[], "anything"));
    }

    #[test]
    fn event_type_checks() {
        assert!(check_event_type("user.created").is_ok());
        assert!(check_event_type("group.*").is_ok());
        assert!(check_event_type("webhook.disabled").is_ok());
        assert!(check_event_type("user").is_err());
        assert!(check_event_type("nope.*").is_err());
        assert!(check_event_type("*").is_err());
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }

    fn endpoint() -> Webhook {
        Webhook {
            id: "w".into(),
            org_id: None,
            url: "https://a.example/h".into(),
            description: String::new(),
            event_types: vec![],
            secret: "whsec_x".into(),
            previous_secret: Some("whsec_old".into()),
            previous_secret_expires_us: Some(100),
            status: WebhookStatus::Disabled,
            disabled_reason: Some("failing".into()),
            cursor_seq: 10,
            next_attempt_us: 0,
            failing_since_us: Some(1),
            consecutive_failures: 7,
            last_error: None,
            lease_owner: None,
            lease_expires_us: None,
            created_us: 0,
            updated_us: 0,
        }
    }

    #[test]
    fn enabling_clears_failures_and_replay_only_goes_back() {
        let mut w = endpoint();
        let changes = apply_update(
            &mut w,
            &WebhookUpdate {
                status: Some(WebhookStatus::Active),
                ..Default::default()
            },
            50,
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, WEBHOOK_ENABLED);
        assert_eq!(
            (w.consecutive_failures, w.failing_since_us, w.next_attempt_us),
            (0, None, 50)
        );
        assert!(apply_replay(&mut w, 12, 60).is_err());
        assert!(apply_replay(&mut w, 0, 60).is_err());
        apply_replay(&mut w, 4, 60).unwrap();
        assert_eq!(w.cursor_seq, 3);
        assert_eq!(w.signing_secrets(99), vec!["whsec_x", "whsec_old"]);
        assert_eq!(w.signing_secrets(100), vec!["whsec_x"]);
    }
}
