//! Webhook endpoints and their delivery attempts, as stored, and the changes to an endpoint computed
//! the same way for both stores (like [`crate::connection_ops`]).
//!
//! An endpoint reads the event log through a cursor of its own (`cursor_seq`, the last event it
//! acknowledged or skipped), so delivery is at least once and in `seq` order per endpoint. A
//! dispatcher works on an endpoint only while it holds its lease ([`WebhookStore::claim_webhooks`]);
//! every write a dispatcher makes afterwards names the lease owner and the cursor it started from,
//! so a dispatcher whose lease expired, or whose endpoint was replayed meanwhile, changes nothing.

use crate::backend::{Backend, SqlQuery, Tx, locking, no_organization};
use crate::model::{Event, WriteContext};
use crate::rows::{attempt_of, webhook_of};
use crate::{StoreError, StoreResult, events, secrets};
use rollcall_scim::ScimError;
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
    /// The endpoint's organization (`None` for a service-wide endpoint): attempts are keyed by it.
    pub org_id: Option<String>,
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

/// The webhook endpoints and their attempts; [`crate::Store`] includes it, and the dispatcher
/// needs nothing else.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync {
    /// Creates an endpoint (active, its cursor at the end of the log) and records `webhook.created`.
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook>;
    /// The endpoints of one organization (with `Some`), or every endpoint, oldest first.
    async fn list_webhooks(&self, org_id: Option<&str>) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<Webhook>>;
    /// Changes an endpoint's settings or status. `None` when it does not exist.
    async fn update_webhook(&self, id: &str, update: WebhookUpdate) -> StoreResult<Option<Webhook>>;
    /// Replaces the signing secret; the old one keeps signing beside it until `previous_until_us`.
    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &str,
        previous_until_us: i64,
    ) -> StoreResult<Option<Webhook>>;
    /// Deletes an endpoint with its attempts. Returns false when it does not exist.
    async fn delete_webhook(&self, id: &str) -> StoreResult<bool>;
    /// Moves the cursor back so that delivery starts again at event `from_seq` (400 when that
    /// would move it forward). `None` when the endpoint does not exist.
    async fn replay_webhook(&self, id: &str, from_seq: i64) -> StoreResult<Option<Webhook>>;
    /// Leases up to `limit` active endpoints that are due (`next_attempt_us <= now_us`), whose lease
    /// has expired or was released, and that have events after their cursor, to `owner` until
    /// `lease_until_us`. Concurrent callers never receive the same endpoint.
    async fn claim_webhooks(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> StoreResult<Vec<Webhook>>;
    /// Up to `limit` events after `after_seq` in the scope of an endpoint of `org_id` (`None`: every
    /// event), oldest first. Subscriptions are not applied: see [`Webhook::wants`].
    async fn webhook_events(&self, org_id: Option<&str>, after_seq: i64, limit: i64) -> StoreResult<Vec<Event>>;
    /// One event by id.
    async fn event_by_id(&self, id: &str) -> StoreResult<Option<Event>>;
    /// Advances an endpoint's cursor from `from_seq` to `to_seq` (the events in between were
    /// delivered or skipped), records `attempt` if given, clears the failure state and extends the
    /// lease, in one transaction, and returns the endpoint as it is now (its URL, secrets and
    /// subscription may have changed meanwhile). Changes nothing and returns `None` unless `owner`
    /// holds the lease, the endpoint is active and its cursor is still at `from_seq`.
    async fn webhook_advance(
        &self,
        id: &str,
        owner: &str,
        from_seq: i64,
        to_seq: i64,
        attempt: Option<NewWebhookAttempt>,
        lease_until_us: i64,
    ) -> StoreResult<Option<Webhook>>;
    /// Records a failed attempt and its consequence (retry at `next_attempt_us`, or disabled with a
    /// reason, recording `webhook.disabled`), and releases the lease, in one transaction. Records
    /// nothing and returns false unless `owner` holds the lease and the cursor is at `cursor_seq`.
    async fn webhook_failed(
        &self,
        id: &str,
        owner: &str,
        cursor_seq: i64,
        attempt: NewWebhookAttempt,
        failure: WebhookFailure,
    ) -> StoreResult<bool>;
    /// Gives up the lease (if `owner` holds it) so the endpoint can be claimed again at once.
    async fn release_webhook(&self, id: &str, owner: &str) -> StoreResult<()>;
    /// Records an attempt made outside the dispatcher (redelivery, ping).
    async fn record_webhook_attempt(&self, attempt: NewWebhookAttempt) -> StoreResult<WebhookAttempt>;
    /// Up to `limit` attempts on an endpoint with an id below `before` (all, without it), newest
    /// first. `org_id`: the endpoint's organization (`None` for a service-wide endpoint).
    async fn list_webhook_attempts(
        &self,
        org_id: Option<&str>,
        endpoint_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<WebhookAttempt>>;
    /// Events after each active webhook endpoint's cursor in its scope (its organization's, or
    /// all for a global endpoint), counted up to `cap`: `(endpoint id, count)`, for `/metrics`.
    async fn webhook_backlog(&self, cap: i64) -> StoreResult<Vec<(String, i64)>>;
}

/// The write context of an event about an endpoint.
fn webhook_ctx(w: &Webhook) -> WriteContext {
    WriteContext {
        org_id: w.org_id.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// Writes back the settings and state that [`apply_update`] and [`apply_replay`] change.
const WRITE_BACK: &str = "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, status = $4,
     disabled_reason = $5, cursor_seq = $6, next_attempt_us = $7, failing_since_us = $8, consecutive_failures = $9,
     updated_us = $10
 WHERE id = $11";

/// Records an attempt, numbered per endpoint and event.
const INSERT_ATTEMPT: &str = "INSERT INTO webhook_attempts (org_id, endpoint_id, event_id, event_seq, event_type,
     attempt, origin, succeeded, status_code, latency_us, response_excerpt, error, created_us)
 VALUES ($12, $1, $2, $3, $4,
     (SELECT COUNT(*) + 1 FROM webhook_attempts WHERE org_id = $12 AND endpoint_id = $1 AND event_id = $2),
     $5, $6, $7, $8, $9, $10, $11)
 RETURNING *";

/// [`WebhookStore`] for a [`Backend`]: the same statements and steps on both databases.
macro_rules! webhook_store {
    ($store:ty) => {
        impl $store {
            async fn webhook_in(&self, tx: &mut <$store as Backend>::Tx, id: &str) -> StoreResult<Option<Webhook>> {
                let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1")
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
                row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()
            }

            async fn write_back(tx: &mut <$store as Backend>::Tx, w: &Webhook) -> StoreResult<()> {
                sqlx::query(WRITE_BACK)
                    .bind(&w.url)
                    .bind(&w.description)
                    .bind(serde_json::to_string(&w.event_types).unwrap_or_else(|_| "[]".into()))
                    .bind(w.status.as_str())
                    .bind(&w.disabled_reason)
                    .bind(w.cursor_seq)
                    .bind(w.next_attempt_us)
                    .bind(w.failing_since_us)
                    .bind(w.consecutive_failures)
                    .bind(w.updated_us)
                    .bind(&w.id)
                    .execute(tx.conn())
                    .await?;
                Ok(())
            }

            async fn insert_attempt(
                tx: &mut <$store as Backend>::Tx,
                a: &NewWebhookAttempt,
            ) -> StoreResult<WebhookAttempt> {
                let row = sqlx::query(INSERT_ATTEMPT)
                    .bind(&a.endpoint_id)
                    .bind(&a.event_id)
                    .bind(a.event_seq)
                    .bind(&a.event_type)
                    .bind(a.origin.as_str())
                    .bind(a.succeeded)
                    .bind(a.status_code.map(i64::from))
                    .bind(a.latency_us)
                    .bind(a.response_excerpt.as_deref().map(|s| truncate_utf8(s, MAX_EXCERPT_BYTES)))
                    .bind(a.error.as_deref().map(|s| truncate_utf8(s, MAX_EXCERPT_BYTES)))
                    .bind(a.created_us)
                    .bind(a.org_id.as_deref().unwrap_or(""))
                    .fetch_one(tx.conn())
                    .await?;
                Ok(attempt_of(&row))
            }

            /// An endpoint changed by `change` (settings, replay) with the events it records.
            async fn change_webhook(
                &self,
                id: &str,
                change: impl Fn(&mut Webhook) -> StoreResult<Vec<PendingChange>> + Send + Sync,
            ) -> StoreResult<Option<Webhook>> {
                let change = &change;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut w) = self.webhook_in(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    let changes = change(&mut w)?;
                    if !changes.is_empty() {
                        Self::write_back(&mut tx, &w).await?;
                        for (kind, data) in changes {
                            tx.record(&webhook_ctx(&w), kind, None, data).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(Some(w))
                })
                .await
            }

            /// An endpoint changed by one statement returning its row, and the event it records.
            async fn webhook_statement(
                &self,
                sql: &'static str,
                bind: impl Fn(SqlQuery<$store>) -> SqlQuery<$store> + Send + Sync,
                event: impl Fn(&Webhook) -> Option<PendingChange> + Send + Sync,
                before_event: Option<&NewWebhookAttempt>,
            ) -> StoreResult<Option<Webhook>> {
                let (bind, event) = (&bind, &event);
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let row = bind(sqlx::query(sql)).fetch_optional(tx.conn()).await?;
                    let Some(w) = row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()? else {
                        return Ok(None);
                    };
                    if let Some(a) = before_event {
                        Self::insert_attempt(&mut tx, a).await?;
                    }
                    if let Some((kind, data)) = event(&w) {
                        tx.record(&webhook_ctx(&w), kind, None, data).await?;
                    }
                    tx.commit().await?;
                    Ok(Some(w))
                })
                .await
            }
        }

        #[async_trait::async_trait]
        impl WebhookStore for $store {
            async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
                let now = crate::sqlite::now_us();
                let id = uuid::Uuid::now_v7().to_string();
                let sealed = self.secrets.seal(&new.secret, &secrets::webhook_secret_context(&id))?;
                let (new, id, sealed) = (&new, &id, &sealed);
                // Deliveries start after the events committed so far: below the log's ceiling
                // (taken before the transaction, which must not wait for it holding a row).
                let ceiling = self.events_ceiling().await?;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    if let Some(org) = &new.org_id {
                        let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = $1")
                            .bind(org)
                            .fetch_optional(tx.conn())
                            .await?;
                        if exists.is_none() {
                            return Err(no_organization(org));
                        }
                    }
                    let row = sqlx::query(
                        "INSERT INTO webhook_endpoints (id, org_id, url, description, event_types, secret, status,
                             cursor_seq, next_attempt_us, created_us, updated_us)
                         VALUES ($1, $2, $3, $4, $5, $6, 'active',
                                 COALESCE(CAST($8 AS BIGINT), (SELECT COALESCE(MAX(seq), 0) FROM events)), $7, $7, $7)
                         RETURNING *",
                    )
                    .bind(id)
                    .bind(&new.org_id)
                    .bind(&new.url)
                    .bind(&new.description)
                    .bind(serde_json::to_string(&new.event_types).unwrap_or_else(|_| "[]".into()))
                    .bind(sealed)
                    .bind(now)
                    .bind(ceiling)
                    .fetch_one(tx.conn())
                    .await?;
                    let w = webhook_of(&row, &self.secrets)?;
                    tx.record(&webhook_ctx(&w), WEBHOOK_CREATED, None, created_data(&w)).await?;
                    tx.commit().await?;
                    Ok(w)
                })
                .await
            }

            async fn list_webhooks(&self, org_id: Option<&str>) -> StoreResult<Vec<Webhook>> {
                let rows = sqlx::query(
                    "SELECT * FROM webhook_endpoints WHERE CAST($1 AS TEXT) IS NULL OR org_id = $1 ORDER BY id",
                )
                .bind(org_id)
                .fetch_all(self.reads())
                .await?;
                rows.iter().map(|r| webhook_of(r, &self.secrets)).collect()
            }

            async fn get_webhook(&self, id: &str) -> StoreResult<Option<Webhook>> {
                let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?;
                row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()
            }

            async fn update_webhook(&self, id: &str, update: WebhookUpdate) -> StoreResult<Option<Webhook>> {
                self.change_webhook(id, |w| Ok(apply_update(w, &update, crate::sqlite::now_us())))
                    .await
            }

            async fn rotate_webhook_secret(
                &self,
                id: &str,
                secret: &str,
                previous_until_us: i64,
            ) -> StoreResult<Option<Webhook>> {
                // The previous secret moves to `previous_secret` as it is: both columns have the
                // endpoint's context.
                let sealed = self.secrets.seal(secret, &secrets::webhook_secret_context(id))?;
                self.webhook_statement(
                    "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_us = $1,
                         secret = $2, updated_us = $3
                     WHERE id = $4 RETURNING *",
                    |q| q.bind(previous_until_us).bind(sealed.clone()).bind(crate::sqlite::now_us()).bind(id.to_string()),
                    |_| Some((WEBHOOK_SECRET_ROTATED, json!({ "previous_secret_expires_us": previous_until_us }))),
                    None,
                )
                .await
            }

            async fn delete_webhook(&self, id: &str) -> StoreResult<bool> {
                let deleted = self
                    .webhook_statement(
                        "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING *",
                        |q| q.bind(id.to_string()),
                        |w| Some((WEBHOOK_DELETED, json!({ "url": w.url }))),
                        None,
                    )
                    .await?;
                Ok(deleted.is_some())
            }

            async fn replay_webhook(&self, id: &str, from_seq: i64) -> StoreResult<Option<Webhook>> {
                self.change_webhook(id, |w| {
                    let change = apply_replay(w, from_seq, crate::sqlite::now_us())
                        .map_err(|e| StoreError::Scim(ScimError::new(400, None, e)))?;
                    Ok(vec![change])
                })
                .await
            }

            async fn claim_webhooks(
                &self,
                owner: &str,
                now: i64,
                lease_until_us: i64,
                limit: i64,
            ) -> StoreResult<Vec<Webhook>> {
                // One statement, a write of its own (one round trip on PostgreSQL): each node's
                // dispatcher runs it each round, with or without endpoints; a round starts on its
                // poll or on announced events, at most once every `WAKE_GAP` (5 ms) for the latter.
                let rows = self
                    .writing(move || {
                        let sql = locking!(
                            <$store as Backend>::DIALECT,
                            "UPDATE webhook_endpoints SET lease_owner = $1, lease_expires_us = $2
                             WHERE id IN (
                                 SELECT w.id FROM webhook_endpoints w
                                 WHERE w.status = 'active' AND w.next_attempt_us <= $3
                                   AND (w.lease_expires_us IS NULL OR w.lease_expires_us < $3)
                                   AND (CASE WHEN w.org_id IS NULL
                                        THEN EXISTS (SELECT 1 FROM events e WHERE e.seq > w.cursor_seq)
                                        ELSE EXISTS (SELECT 1 FROM events e WHERE e.org_id = w.org_id AND e.seq > w.cursor_seq)
                                        END)
                                 ORDER BY w.next_attempt_us LIMIT $4",
                            "FOR UPDATE SKIP LOCKED",
                            ")
                               AND (lease_expires_us IS NULL OR lease_expires_us < $3)
                             RETURNING *"
                        );
                        self.write_rows(
                            sqlx::query(sql)
                                .bind(owner.to_owned())
                                .bind(lease_until_us)
                                .bind(now)
                                .bind(limit),
                        )
                    })
                    .await?;
                rows.iter().map(|r| webhook_of(r, &self.secrets)).collect()
            }

            async fn webhook_events(
                &self,
                org_id: Option<&str>,
                after_seq: i64,
                limit: i64,
            ) -> StoreResult<Vec<Event>> {
                // Two statements: each uses its own index (the log's key; organization and sequence).
                let ceiling = crate::backend::or_all(self.events_ceiling().await?);
                let rows = match org_id {
                    Some(org) => {
                        sqlx::query(
                            "SELECT * FROM events WHERE org_id = $1 AND seq > $2 AND seq <= $4 ORDER BY seq LIMIT $3",
                        )
                        .bind(org)
                        .bind(after_seq)
                        .bind(limit)
                        .bind(ceiling)
                        .fetch_all(self.reads())
                        .await?
                    }
                    None => {
                        sqlx::query("SELECT * FROM events WHERE seq > $1 AND seq <= $3 ORDER BY seq LIMIT $2")
                            .bind(after_seq)
                            .bind(limit)
                            .bind(ceiling)
                            .fetch_all(self.reads())
                            .await?
                    }
                };
                Ok(rows.iter().map(<$store as Backend>::event_of).collect())
            }

            async fn event_by_id(&self, id: &str) -> StoreResult<Option<Event>> {
                let row = sqlx::query("SELECT * FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.as_ref().map(<$store as Backend>::event_of))
            }

            async fn webhook_advance(
                &self,
                id: &str,
                owner: &str,
                from_seq: i64,
                to_seq: i64,
                attempt: Option<NewWebhookAttempt>,
                lease_until_us: i64,
            ) -> StoreResult<Option<Webhook>> {
                self.webhook_statement(
                    "UPDATE webhook_endpoints SET cursor_seq = $1, failing_since_us = NULL, consecutive_failures = 0,
                         last_error = NULL, lease_expires_us = $2
                     WHERE id = $3 AND lease_owner = $4 AND cursor_seq = $5 AND status = 'active'
                     RETURNING *",
                    |q| {
                        q.bind(to_seq)
                            .bind(lease_until_us)
                            .bind(id.to_string())
                            .bind(owner.to_string())
                            .bind(from_seq)
                    },
                    |_| None,
                    attempt.as_ref(),
                )
                .await
            }

            async fn webhook_failed(
                &self,
                id: &str,
                owner: &str,
                cursor_seq: i64,
                attempt: NewWebhookAttempt,
                failure: WebhookFailure,
            ) -> StoreResult<bool> {
                let error = attempt
                    .error
                    .clone()
                    .or_else(|| attempt.status_code.map(|s| format!("HTTP {s}")))
                    .map(|s| truncate_utf8(&s, MAX_EXCERPT_BYTES).to_string());
                let now = crate::sqlite::now_us();
                let recorded = self
                    .webhook_statement(
                        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
                             failing_since_us = COALESCE(failing_since_us, CAST($1 AS BIGINT)), last_error = $2,
                             next_attempt_us = $3,
                             status = CASE WHEN CAST($4 AS TEXT) IS NULL THEN status ELSE 'disabled' END,
                             disabled_reason = COALESCE(CAST($4 AS TEXT), disabled_reason),
                             lease_owner = NULL, lease_expires_us = NULL, updated_us = $5
                         WHERE id = $6 AND lease_owner = $7 AND cursor_seq = $8 AND status = 'active'
                         RETURNING *",
                        |q| {
                            q.bind(attempt.created_us)
                                .bind(error.clone())
                                .bind(failure.next_attempt_us)
                                .bind(failure.disable_reason.clone())
                                .bind(now)
                                .bind(id.to_string())
                                .bind(owner.to_string())
                                .bind(cursor_seq)
                        },
                        |w| {
                            let reason = failure.disable_reason.as_ref()?;
                            Some((WEBHOOK_DISABLED, json!({ "reason": reason, "last_sequence": w.cursor_seq })))
                        },
                        Some(&attempt),
                    )
                    .await?;
                Ok(recorded.is_some())
            }

            async fn release_webhook(&self, id: &str, owner: &str) -> StoreResult<()> {
                let q = sqlx::query(
                    "UPDATE webhook_endpoints SET lease_owner = NULL, lease_expires_us = NULL
                     WHERE id = $1 AND lease_owner = $2",
                );
                self.write_one(q.bind(id.to_string()).bind(owner.to_string())).await?;
                Ok(())
            }

            async fn record_webhook_attempt(&self, attempt: NewWebhookAttempt) -> StoreResult<WebhookAttempt> {
                let attempt = &attempt;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let a = Self::insert_attempt(&mut tx, attempt).await?;
                    tx.commit().await?;
                    Ok(a)
                })
                .await
            }

            async fn list_webhook_attempts(
                &self,
                org_id: Option<&str>,
                endpoint_id: &str,
                before: Option<i64>,
                limit: i64,
            ) -> StoreResult<Vec<WebhookAttempt>> {
                let rows = sqlx::query(
                    "SELECT * FROM webhook_attempts WHERE org_id = $4 AND endpoint_id = $1 AND pk < $2 ORDER BY pk DESC LIMIT $3",
                )
                .bind(endpoint_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .bind(org_id.unwrap_or(""))
                .fetch_all(self.reads())
                .await?;
                Ok(rows.iter().map(attempt_of).collect())
            }

            async fn webhook_backlog(&self, cap: i64) -> StoreResult<Vec<(String, i64)>> {
                let endpoints: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT id, org_id, cursor_seq FROM webhook_endpoints WHERE status = 'active' ORDER BY id",
                )
                .fetch_all(self.reads())
                .await?;
                let mut backlog = Vec::with_capacity(endpoints.len());
                for (id, org, cursor) in endpoints {
                    // At most `cap` rows of the events' primary key read: bounded work whatever the backlog.
                    let (n,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM (SELECT 1 FROM events
                             WHERE seq > $1 AND (CAST($2 AS TEXT) IS NULL OR org_id = $2) LIMIT $3) AS behind",
                    )
                    .bind(cursor)
                    .bind(org.as_deref())
                    .bind(cap)
                    .fetch_one(self.reads())
                    .await?;
                    backlog.push((id, n));
                }
                Ok(backlog)
            }
        }
    };
}

webhook_store!(crate::sqlite::SqliteStore);
webhook_store!(crate::postgres::PostgresStore);

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
