//! The dispatcher: delivers the event log to every active endpoint, in `seq` order per endpoint, at
//! least once.
//!
//! Each round it leases the endpoints that are due and have events after their cursor
//! ([`Store::claim_webhooks`]; several nodes never get the same endpoint), and works on each in a
//! task of its own: events are sent one at a time, and the cursor moves past an event only after a
//! 2xx answer (or when the endpoint is not subscribed to it). A failure records the attempt, gives up
//! the lease and makes the endpoint due again after a backoff with jitter; an endpoint that has been
//! failing for the whole retry horizon is disabled with the reason. A crash loses nothing: the
//! lease expires and the events after the cursor go out again, with the same `webhook-id`.
//!
//! Rounds start when a write on this node calls [`Webhooks::wake`] (at most one every [`WAKE_GAP`]),
//! when a task finishes, and at least every poll interval (which is how events written by other
//! nodes are seen).

use crate::{Webhooks, payload};
use rollcall_store::sqlite::now_us;
use rollcall_store::{AttemptOrigin, Event, NewWebhookAttempt, Webhook, WebhookFailure, WebhookStatus, WebhookStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Events read per query while working on an endpoint.
const BATCH: i64 = 100;

/// The shortest time between the start of a round and the next round started by a wake-up. Every
/// write on this node wakes the dispatcher, and every round is a claim statement: under a thousand
/// writes a second, the wake-ups that come within this time after a round start one round when it
/// has passed, instead of a claim each. A wake-up after a quiet moment starts a round at once.
pub const WAKE_GAP: Duration = Duration::from_millis(5);

/// The longest pause between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// The pause before retry number `failures` (1 after the first failure): `base` (5 s by default)
/// doubling up to one hour, each drawn uniformly between half and all of that so that endpoints
/// failing together do not retry together.
pub fn retry_delay(failures: i64, base: Duration) -> Duration {
    let exp = (failures.clamp(1, 30) - 1) as u32;
    let nominal = base.saturating_mul(1u32 << exp.min(20)).min(MAX_RETRY_DELAY);
    let nominal_us = nominal.as_micros() as u64;
    Duration::from_micros(rand::random_range(nominal_us / 2..=nominal_us))
}

/// A dispatcher for one node.
pub struct Dispatcher {
    hooks: Arc<Webhooks>,
    node: String,
}

impl Dispatcher {
    /// `node`: this dispatcher's name in leases (unique per process).
    pub fn new(hooks: Arc<Webhooks>, node: impl Into<String>) -> Dispatcher {
        Dispatcher {
            hooks,
            node: node.into(),
        }
    }

    /// Runs until `shutdown` completes. Deliveries in flight then are abandoned: their leases
    /// expire and the events go out again from the cursor.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let config = self.hooks.config.clone();
        let store = self.hooks.store.clone();
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(node = %self.node, "webhook dispatcher running");
        loop {
            let round = tokio::time::Instant::now();
            let free = config.concurrency.saturating_sub(tasks.len());
            if free > 0 {
                let now = now_us();
                match store
                    .claim_webhooks(&self.node, now, now + config.lease_us(), free as i64)
                    .await
                {
                    Ok(claimed) => {
                        for w in claimed {
                            let worker = Worker {
                                hooks: self.hooks.clone(),
                                node: self.node.clone(),
                            };
                            tasks.spawn(async move { worker.work(w).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook endpoints failed"),
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.hooks.wake.notified() => tokio::time::sleep_until(round + WAKE_GAP).await,
                _ = tokio::time::sleep(config.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
        tracing::info!(node = %self.node, "webhook dispatcher stopped");
    }
}

/// Works on one leased endpoint.
struct Worker {
    hooks: Arc<Webhooks>,
    node: String,
}

impl Worker {
    async fn work(self, w: Webhook) {
        let id = w.id.clone();
        if let Err(e) = self.deliver_pending(w).await {
            tracing::warn!(webhook = %id, error = %e, "webhook delivery interrupted");
        }
        // Whatever happened, the endpoint can be claimed again at once (a no-op when the lease was
        // already given up or lost).
        if let Err(e) = self.hooks.store.release_webhook(&id, &self.node).await {
            tracing::warn!(webhook = %id, error = %e, "releasing a webhook lease failed");
        }
    }

    fn store(&self) -> &Arc<dyn WebhookStore> {
        &self.hooks.store
    }

    /// Sends the events after the cursor in order until none is left, one fails, or the endpoint
    /// changed under the lease (replayed, disabled, lease lost). The endpoint is read again after
    /// each batch of events is fetched and after each event, so a new URL, secret or subscription
    /// applies to every event recorded after the change.
    async fn deliver_pending(&self, mut w: Webhook) -> Result<(), rollcall_store::StoreError> {
        let lease_us = self.hooks.config.lease_us();
        loop {
            let events = self
                .store()
                .webhook_events(w.org_id.as_deref(), w.cursor_seq, BATCH)
                .await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            // Read the endpoint after the events: a change committed before them (a new secret, URL
            // or subscription) applies to them. A replay or a lost lease ends this round.
            match self.store().get_webhook(&w.id).await? {
                Some(current)
                    if current.cursor_seq == w.cursor_seq
                        && current.status == WebhookStatus::Active
                        && current.lease_owner.as_deref() == Some(self.node.as_str()) =>
                {
                    w = current
                }
                _ => return Ok(()),
            }
            for event in &events {
                if !w.wants(event) {
                    // Skipped: the cursor passes it with the next delivered event (or the batch end).
                    continue;
                }
                let attempt = self.attempt(&w, event).await;
                if !attempt.succeeded {
                    let failure = self.failure(&w, &attempt);
                    // What an operator needs to find it: the endpoint, the event, the answer, and
                    // when it is tried again (`GET /api/v1/webhooks/{id}/attempts` has the rest).
                    tracing::warn!(
                        webhook = %w.id,
                        organization = w.org_id.as_deref().unwrap_or("-"),
                        event = %event.id,
                        event_sequence = event.seq,
                        event_type = %event.kind,
                        consecutive_failures = w.consecutive_failures + 1,
                        status = attempt.status_code.map(i64::from).unwrap_or(-1),
                        error = attempt.error.as_deref().unwrap_or("-"),
                        next_attempt_at = %crate::payload::rfc3339(failure.next_attempt_us),
                        "webhook delivery failed"
                    );
                    if let Some(reason) = &failure.disable_reason {
                        tracing::warn!(webhook = %w.id, url = %w.url, %reason, "webhook endpoint disabled");
                    }
                    self.store()
                        .webhook_failed(&w.id, &self.node, w.cursor_seq, attempt, failure)
                        .await?;
                    return Ok(());
                }
                match self
                    .store()
                    .webhook_advance(
                        &w.id,
                        &self.node,
                        w.cursor_seq,
                        event.seq,
                        Some(attempt),
                        now_us() + lease_us,
                    )
                    .await?
                {
                    Some(current) => w = current,
                    None => return Ok(()),
                }
            }
            if w.cursor_seq < last {
                match self
                    .store()
                    .webhook_advance(&w.id, &self.node, w.cursor_seq, last, None, now_us() + lease_us)
                    .await?
                {
                    Some(current) => w = current,
                    None => return Ok(()),
                }
            }
        }
    }

    async fn attempt(&self, w: &Webhook, event: &Event) -> NewWebhookAttempt {
        let body = payload::body(event);
        let now = now_us();
        let secrets = w.signing_secrets(now);
        let outcome = self.hooks.send(&w.url, &event.id, &body, &secrets).await;
        record_delivery(outcome.succeeded, outcome.status_code.is_some(), outcome.latency);
        NewWebhookAttempt {
            org_id: w.org_id.clone(),
            endpoint_id: w.id.clone(),
            event_id: event.id.clone(),
            event_seq: Some(event.seq),
            event_type: event.kind.clone(),
            origin: AttemptOrigin::Dispatch,
            succeeded: outcome.succeeded,
            status_code: outcome.status_code,
            latency_us: outcome.latency.as_micros() as i64,
            response_excerpt: outcome.response_excerpt,
            error: outcome.error,
            created_us: now,
        }
    }

    /// When to try again, or why to give up: after failing continuously for the retry horizon.
    fn failure(&self, w: &Webhook, attempt: &NewWebhookAttempt) -> WebhookFailure {
        let failures = w.consecutive_failures + 1;
        let since = w.failing_since_us.unwrap_or(attempt.created_us);
        let horizon_us = self.hooks.config.retry_horizon.as_micros() as i64;
        let last_error = attempt.error.clone().unwrap_or_else(|| "failed".into());
        let disable_reason = (attempt.created_us - since >= horizon_us).then(|| {
            format!(
                "failing since {} ({failures} attempts in a row, over the retry horizon of {} hours); last error: {last_error}",
                payload::rfc3339(since),
                horizon_us / 3_600_000_000,
            )
        });
        WebhookFailure {
            next_attempt_us: attempt.created_us
                + retry_delay(failures, self.hooks.config.retry_base).as_micros() as i64,
            disable_reason,
        }
    }
}

/// Delivery attempts by the dispatcher, by outcome: `success` (a 2xx answer), `http_error` (any
/// other answer), `error` (no answer: refused address, connection, TLS, timeout).
pub const DELIVERIES: &str = "rollcall_webhook_deliveries_total";
/// Time of a delivery attempt, from the request's start to the answer (or the error), by outcome.
pub const DELIVERY_DURATION: &str = "rollcall_webhook_delivery_duration_seconds";

fn record_delivery(succeeded: bool, answered: bool, latency: Duration) {
    let outcome = match (succeeded, answered) {
        (true, _) => "success",
        (false, true) => "http_error",
        (false, false) => "error",
    };
    metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
    metrics::histogram!(DELIVERY_DURATION, "outcome" => outcome).record(latency.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_up_to_an_hour() {
        let base = Duration::from_secs(5);
        for failures in 1..=40u32 {
            let nominal = (5_000u64 << (failures - 1).min(20)).min(3_600_000);
            for _ in 0..20 {
                let d = retry_delay(failures as i64, base).as_millis() as u64;
                assert!(d >= nominal / 2 && d <= nominal, "{failures}: {d} ms");
            }
        }
        assert!(retry_delay(1, base) <= Duration::from_secs(5));
        assert!(retry_delay(100, base) >= Duration::from_secs(1800));
        // Three days of retries are about 80 attempts, not thousands.
        let mut total = Duration::ZERO;
        let mut n = 0;
        while total < Duration::from_secs(3 * 86_400) {
            n += 1;
            total += retry_delay(n, base);
        }
        assert!((70..=160).contains(&n), "{n} attempts");
    }
}
