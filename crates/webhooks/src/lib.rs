//! # rollcall-webhooks
//!
//! Signed webhooks from the event log, delivered at least once:
//!
//! - [`signing`]: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64 HMAC-SHA256>`), so receivers verify with any Standard Webhooks
//!   library;
//! - [`ssrf`]: which addresses deliveries may go to, checked when a URL is given and again on the
//!   resolved addresses at every delivery;
//! - [`sender`]: one delivery (HTTPS through rustls on ring, a deadline, no redirects);
//! - [`dispatcher`]: the loop that leases endpoints and delivers their events in order, with retries,
//!   backoff and disabling after the retry horizon.
//!
//! [`Webhooks`] ties them together for the server (API checks, redelivery, test pings, wake-ups)
//! and the dispatcher.

pub mod dispatcher;
pub mod event;
pub mod payload;
pub mod sender;
pub mod signing;
pub mod ssrf;

pub use dispatcher::Dispatcher;
pub use event::{ActorView, EventView};
pub use ssrf::NetworkPolicy;

use rollcall_store::sqlite::now_us;
use rollcall_store::{AttemptOrigin, Event, NewWebhookAttempt, Webhook, WebhookStore};
use sender::{Message, Outcome, Sender};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Webhook settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Where deliveries may go.
    pub policy: NetworkPolicy,
    /// The longest one attempt may take (connecting, sending, reading the answer).
    pub timeout: Duration,
    /// An endpoint failing continuously for this long is disabled.
    pub retry_horizon: Duration,
    /// The pause after a first failure; it doubles with each failure, up to an hour.
    pub retry_base: Duration,
    /// How often the dispatcher looks for work when nothing woke it (events from other nodes or
    /// processes, retries coming due).
    pub poll_interval: Duration,
    /// Endpoints a dispatcher works on at once.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            policy: NetworkPolicy::default(),
            timeout: Duration::from_secs(10),
            retry_horizon: Duration::from_secs(3 * 24 * 3600),
            retry_base: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            concurrency: 16,
        }
    }
}

impl WebhookConfig {
    /// How long a claim lasts: long enough for a slow attempt and its bookkeeping, short enough
    /// that another node takes over soon after a crash. Every delivered event extends it.
    pub fn lease_us(&self) -> i64 {
        (self.timeout.as_micros() as i64 * 3).max(30_000_000)
    }
}

/// Webhook services shared by the management API and the dispatcher.
pub struct Webhooks {
    pub store: Arc<dyn WebhookStore>,
    pub config: WebhookConfig,
    sender: Sender,
    wake: Notify,
}

impl Webhooks {
    pub fn new(store: Arc<dyn WebhookStore>, config: WebhookConfig) -> Arc<Webhooks> {
        let sender = Sender::new(Arc::new(config.policy.clone()), config.timeout);
        Arc::new(Webhooks {
            store,
            config,
            sender,
            wake: Notify::new(),
        })
    }

    /// Tells the dispatcher that events may have been written (a wake-up is kept until it is
    /// taken, so none is lost between two rounds).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Checks an endpoint URL against the network policy, resolving its host now.
    pub async fn check_url(&self, url: &str) -> Result<String, String> {
        self.config.policy.check_url(url).await.map(|u| u.to_string())
    }

    /// Sends one message now.
    pub async fn send(&self, url: &str, id: &str, body: &[u8], secrets: &[&str]) -> Outcome {
        self.sender.send(url, &Message { id, body, secrets }).await
    }

    /// Sends one event to an endpoint again, now (whatever its cursor and status), and records the
    /// attempt.
    pub async fn redeliver(
        &self,
        w: &Webhook,
        event: &Event,
    ) -> rollcall_store::StoreResult<rollcall_store::WebhookAttempt> {
        let now = now_us();
        let outcome = self
            .send(&w.url, &event.id, &payload::body(event), &w.signing_secrets(now))
            .await;
        self.store
            .record_webhook_attempt(attempt(
                w,
                &event.id,
                Some(event.seq),
                &event.kind,
                AttemptOrigin::Redeliver,
                now,
                outcome,
            ))
            .await
    }

    /// Sends a test message (`webhook.ping`) to an endpoint and records the attempt.
    pub async fn ping(&self, w: &Webhook) -> rollcall_store::StoreResult<rollcall_store::WebhookAttempt> {
        let now = now_us();
        let id = format!("ping_{}", uuid::Uuid::now_v7().simple());
        let body = payload::ping_body(&w.id, &id, now);
        let outcome = self.send(&w.url, &id, &body, &w.signing_secrets(now)).await;
        self.store
            .record_webhook_attempt(attempt(w, &id, None, payload::PING, AttemptOrigin::Ping, now, outcome))
            .await
    }
}

fn attempt(
    w: &Webhook,
    event_id: &str,
    event_seq: Option<i64>,
    event_type: &str,
    origin: AttemptOrigin,
    now: i64,
    outcome: Outcome,
) -> NewWebhookAttempt {
    NewWebhookAttempt {
        org_id: w.org_id.clone(),
        endpoint_id: w.id.clone(),
        event_id: event_id.to_string(),
        event_seq,
        event_type: event_type.to_string(),
        origin,
        succeeded: outcome.succeeded,
        status_code: outcome.status_code,
        latency_us: outcome.latency.as_micros() as i64,
        response_excerpt: outcome.response_excerpt,
        error: outcome.error,
        created_us: now,
    }
}
