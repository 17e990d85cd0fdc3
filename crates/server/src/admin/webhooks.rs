//! Webhook endpoints: create (with a signing secret shown once), list, change, delete, rotate the
//! secret, read the delivery attempts, redeliver one event, replay from a sequence number, send a
//! test message. URLs are checked against the server's network policy here, for every caller.

use super::{Admin, AdminError, AdminResult};
use rollcall_store::webhooks::check_event_type;
use rollcall_store::{NewWebhook, StoreError, Webhook, WebhookAttempt, WebhookStatus, WebhookUpdate};
use rollcall_webhooks::signing;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most entries in `event_types`.
pub const MAX_EVENT_TYPES: usize = 100;
/// How long the secret before a rotation keeps signing deliveries beside the new one.
pub const SECRET_OVERLAP_US: i64 = 24 * 3600 * 1_000_000;

/// A webhook endpoint to create.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    /// `None`: a global endpoint.
    pub org_id: Option<String>,
    pub url: String,
    pub description: Option<String>,
    /// Types and `prefix.*` patterns; empty: every event.
    pub event_types: Vec<String>,
}

/// A change to a webhook endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub status: Option<WebhookStatus>,
}

/// An endpoint with a signing secret just issued (shown once).
pub struct IssuedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

/// "`field`: detail", 422.
fn invalid(field: &str, detail: impl std::fmt::Display) -> AdminError {
    AdminError::invalid(format!("{field}: {detail}"))
}

fn no_webhook(id: &str) -> AdminError {
    AdminError::not_found(format!("no webhook endpoint with id \"{id}\""))
}

fn check_event_types(types: Vec<String>) -> AdminResult<Vec<String>> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(invalid("event_types", format!("at most {MAX_EVENT_TYPES} entries")));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for (i, t) in types.into_iter().enumerate() {
        let t = t.trim().to_string();
        check_event_type(&t).map_err(|e| invalid(&format!("event_types[{i}]"), e))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn check_description(d: String) -> AdminResult<String> {
    let d = d.trim().to_string();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(
            "description",
            format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if d.chars().any(char::is_control) {
        return Err(invalid("description", "must not contain control characters"));
    }
    Ok(d)
}

impl Admin {
    async fn check_url(&self, url: &str) -> AdminResult<String> {
        self.webhooks().check_url(url).await.map_err(|e| invalid("url", e))
    }

    /// Creates an endpoint; it receives the events recorded from now on.
    pub async fn create_webhook(&self, new: WebhookInput) -> AdminResult<IssuedWebhook> {
        let event_types = check_event_types(new.event_types)?;
        let description = check_description(new.description.unwrap_or_default())?;
        if let Some(org) = &new.org_id {
            let found = self.store.get_organization(org).await?;
            if found.is_none_or(|o| o.id != *org) {
                return Err(invalid("org_id", format!("no organization with id \"{org}\"")));
            }
        }
        let url = self.check_url(&new.url).await?;
        let secret = signing::new_secret();
        let webhook = self
            .store
            .create_webhook(NewWebhook {
                org_id: new.org_id,
                url,
                description,
                event_types,
                secret: secret.clone(),
            })
            .await?;
        Ok(IssuedWebhook { webhook, secret })
    }

    /// The endpoints (of one organization, or all), oldest first.
    pub async fn list_webhooks(&self, org_id: Option<&str>) -> AdminResult<Vec<Webhook>> {
        Ok(self.store.list_webhooks(org_id).await?)
    }

    /// One endpoint with its delivery state.
    pub async fn webhook(&self, id: &str) -> AdminResult<Webhook> {
        self.store.get_webhook(id).await?.ok_or_else(|| no_webhook(id))
    }

    /// Changes an endpoint. Enabling a disabled one resumes delivery from its cursor.
    pub async fn update_webhook(&self, id: &str, change: WebhookChange) -> AdminResult<Webhook> {
        self.webhook(id).await?;
        let event_types = change.event_types.map(check_event_types).transpose()?;
        let description = change.description.map(check_description).transpose()?;
        let url = match &change.url {
            Some(u) => Some(self.check_url(u).await?),
            None => None,
        };
        let w = self
            .store
            .update_webhook(
                id,
                WebhookUpdate {
                    url,
                    description,
                    event_types,
                    status: change.status,
                },
            )
            .await?
            .ok_or_else(|| no_webhook(id))?;
        self.webhooks().wake();
        Ok(w)
    }

    /// Deletes an endpoint with its attempts.
    pub async fn delete_webhook(&self, id: &str) -> AdminResult<()> {
        if self.store.delete_webhook(id).await? {
            Ok(())
        } else {
            Err(no_webhook(id))
        }
    }

    /// Issues a new signing secret; the previous one keeps signing beside it for
    /// [`SECRET_OVERLAP_US`].
    pub async fn rotate_webhook_secret(&self, id: &str) -> AdminResult<IssuedWebhook> {
        let secret = signing::new_secret();
        let until = rollcall_store::sqlite::now_us() + SECRET_OVERLAP_US;
        let webhook = self
            .store
            .rotate_webhook_secret(id, &secret, until)
            .await?
            .ok_or_else(|| no_webhook(id))?;
        Ok(IssuedWebhook { webhook, secret })
    }

    /// A page of an endpoint's attempts, newest first, older than the attempt `before`: at most
    /// `limit`, and whether there are more.
    pub async fn webhook_attempts(
        &self,
        id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> AdminResult<(Vec<WebhookAttempt>, bool)> {
        let w = self.webhook(id).await?;
        let mut attempts = self
            .store
            .list_webhook_attempts(w.org_id.as_deref(), &w.id, before, limit + 1)
            .await?;
        let more = attempts.len() as i64 > limit;
        attempts.truncate(limit.max(0) as usize);
        Ok((attempts, more))
    }

    /// Sends one event to the endpoint again, now, whatever its status and cursor (which does not
    /// move); the attempt is recorded and returned.
    pub async fn redeliver_webhook(&self, id: &str, event_id: &str) -> AdminResult<WebhookAttempt> {
        let w = self.webhook(id).await?;
        let event = self
            .store
            .event_by_id(event_id.trim())
            .await?
            .ok_or_else(|| invalid("event_id", format!("no event with id \"{event_id}\"")))?;
        if !w.wants(&event) {
            return Err(invalid(
                "event_id",
                "the event is outside this endpoint's organization or subscription",
            ));
        }
        Ok(self.webhooks().redeliver(&w, &event).await?)
    }

    /// Moves the endpoint's cursor back so that every event from `from_sequence` on is delivered
    /// again, in order.
    pub async fn replay_webhook(&self, id: &str, from_sequence: i64) -> AdminResult<Webhook> {
        self.webhook(id).await?;
        let w = self
            .store
            .replay_webhook(id, from_sequence)
            .await
            .map_err(|e| match e {
                StoreError::Scim(s) if s.status == 400 => invalid("from_sequence", s.detail),
                other => other.into(),
            })?
            .ok_or_else(|| no_webhook(id))?;
        self.webhooks().wake();
        Ok(w)
    }

    /// Sends a test message (`webhook.ping`) to the endpoint now.
    pub async fn ping_webhook(&self, id: &str) -> AdminResult<WebhookAttempt> {
        let w = self.webhook(id).await?;
        Ok(self.webhooks().ping(&w).await?)
    }
}
