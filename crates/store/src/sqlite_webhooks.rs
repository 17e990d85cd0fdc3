//! Webhook endpoints and attempts on SQLite. Writes go through the single writer (`BEGIN
//! IMMEDIATE`), so claims cannot overlap; the lease still matters for several dispatchers on one
//! file (two processes) and for a dispatcher that stalls past its lease.

use crate::model::{Event, WriteContext};
use crate::sqlite::{SqliteStore, insert_event, now_us};
use crate::webhooks::{self, *};
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::json;
use sqlx::SqliteConnection;

use crate::rows::{attempt_of, webhook_of};
use crate::secrets::{self, SecretKeys};
use crate::sqlite_events::event_of;

/// The write context of an event about an endpoint.
fn webhook_ctx(w: &Webhook) -> WriteContext {
    WriteContext {
        org_id: w.org_id.clone().unwrap_or_default(),
        ..Default::default()
    }
}

fn no_organization(org_id: &str) -> StoreError {
    StoreError::Scim(ScimError::new(
        404,
        None,
        format!("no organization with id \"{org_id}\""),
    ))
}

async fn webhook_in(tx: &mut SqliteConnection, keys: &SecretKeys, id: &str) -> StoreResult<Option<Webhook>> {
    let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(|r| webhook_of(r, keys)).transpose()
}

/// Writes back the settings and state that [`webhooks::apply_update`] and
/// [`webhooks::apply_replay`] change.
async fn write_back(tx: &mut SqliteConnection, w: &Webhook) -> StoreResult<()> {
    sqlx::query(
        "UPDATE webhook_endpoints SET url = ?, description = ?, event_types = ?, status = ?, disabled_reason = ?,
             cursor_seq = ?, next_attempt_us = ?, failing_since_us = ?, consecutive_failures = ?, updated_us = ?
         WHERE id = ?",
    )
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
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_attempt(tx: &mut SqliteConnection, a: &NewWebhookAttempt) -> StoreResult<WebhookAttempt> {
    let row = sqlx::query(
        "INSERT INTO webhook_attempts (endpoint_id, event_id, event_seq, event_type, attempt, origin, succeeded,
             status_code, latency_us, response_excerpt, error, created_us)
         VALUES (?, ?, ?, ?,
             (SELECT COUNT(*) + 1 FROM webhook_attempts WHERE endpoint_id = ? AND event_id = ?),
             ?, ?, ?, ?, ?, ?, ?)
         RETURNING *",
    )
    .bind(&a.endpoint_id)
    .bind(&a.event_id)
    .bind(a.event_seq)
    .bind(&a.event_type)
    .bind(&a.endpoint_id)
    .bind(&a.event_id)
    .bind(a.origin.as_str())
    .bind(a.succeeded)
    .bind(a.status_code.map(i64::from))
    .bind(a.latency_us)
    .bind(
        a.response_excerpt
            .as_deref()
            .map(|s| webhooks::truncate_utf8(s, MAX_EXCERPT_BYTES)),
    )
    .bind(
        a.error
            .as_deref()
            .map(|s| webhooks::truncate_utf8(s, MAX_EXCERPT_BYTES)),
    )
    .bind(a.created_us)
    .fetch_one(&mut *tx)
    .await?;
    Ok(attempt_of(&row))
}

impl SqliteStore {
    pub(crate) async fn create_webhook_impl(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let now = now_us();
        let id = uuid::Uuid::now_v7().to_string();
        let sealed = self.secrets.seal(&new.secret, &secrets::webhook_secret_context(&id))?;
        let mut tx = self.begin_write().await?;
        if let Some(org) = &new.org_id {
            let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = ?")
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(no_organization(org));
            }
        }
        let row = sqlx::query(
            "INSERT INTO webhook_endpoints (id, org_id, url, description, event_types, secret, status, cursor_seq,
                 next_attempt_us, created_us, updated_us)
             VALUES (?, ?, ?, ?, ?, ?, 'active', (SELECT COALESCE(MAX(seq), 0) FROM events), ?, ?, ?)
             RETURNING *",
        )
        .bind(&id)
        .bind(&new.org_id)
        .bind(&new.url)
        .bind(&new.description)
        .bind(serde_json::to_string(&new.event_types).unwrap_or_else(|_| "[]".into()))
        .bind(&sealed)
        .bind(now)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let w = webhook_of(&row, &self.secrets)?;
        insert_event(
            &mut tx,
            &webhook_ctx(&w),
            WEBHOOK_CREATED,
            None,
            webhooks::created_data(&w),
        )
        .await?;
        tx.commit().await?;
        Ok(w)
    }

    pub(crate) async fn list_webhooks_impl(&self, org_id: Option<&str>) -> StoreResult<Vec<Webhook>> {
        let rows = match org_id {
            Some(org) => {
                sqlx::query("SELECT * FROM webhook_endpoints WHERE org_id = ? ORDER BY id")
                    .bind(org)
                    .fetch_all(&self.reader)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM webhook_endpoints ORDER BY id")
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        rows.iter().map(|r| webhook_of(r, &self.secrets)).collect()
    }

    pub(crate) async fn get_webhook_impl(&self, id: &str) -> StoreResult<Option<Webhook>> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()
    }

    pub(crate) async fn update_webhook_impl(&self, id: &str, update: WebhookUpdate) -> StoreResult<Option<Webhook>> {
        let mut tx = self.begin_write().await?;
        let Some(mut w) = webhook_in(&mut tx, &self.secrets, id).await? else {
            return Ok(None);
        };
        let changes = webhooks::apply_update(&mut w, &update, now_us());
        if !changes.is_empty() {
            write_back(&mut tx, &w).await?;
            for (kind, data) in changes {
                insert_event(&mut tx, &webhook_ctx(&w), kind, None, data).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(w))
    }

    pub(crate) async fn rotate_webhook_secret_impl(
        &self,
        id: &str,
        secret: &str,
        previous_until_us: i64,
    ) -> StoreResult<Option<Webhook>> {
        // The previous secret moves to `previous_secret` as it is: both columns have the
        // endpoint's context.
        let sealed = self.secrets.seal(secret, &secrets::webhook_secret_context(id))?;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_us = ?, secret = ?,
                 updated_us = ?
             WHERE id = ? RETURNING *",
        )
        .bind(previous_until_us)
        .bind(&sealed)
        .bind(now_us())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(w) = row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()? else {
            return Ok(None);
        };
        insert_event(
            &mut tx,
            &webhook_ctx(&w),
            WEBHOOK_SECRET_ROTATED,
            None,
            json!({ "previous_secret_expires_us": previous_until_us }),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(w))
    }

    pub(crate) async fn delete_webhook_impl(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ? RETURNING *")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(w) = row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()? else {
            return Ok(false);
        };
        insert_event(
            &mut tx,
            &webhook_ctx(&w),
            WEBHOOK_DELETED,
            None,
            json!({ "url": w.url }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn replay_webhook_impl(&self, id: &str, from_seq: i64) -> StoreResult<Option<Webhook>> {
        let mut tx = self.begin_write().await?;
        let Some(mut w) = webhook_in(&mut tx, &self.secrets, id).await? else {
            return Ok(None);
        };
        let (kind, data) = webhooks::apply_replay(&mut w, from_seq, now_us())
            .map_err(|e| StoreError::Scim(ScimError::new(400, None, e)))?;
        write_back(&mut tx, &w).await?;
        insert_event(&mut tx, &webhook_ctx(&w), kind, None, data).await?;
        tx.commit().await?;
        Ok(Some(w))
    }

    pub(crate) async fn claim_webhooks_impl(
        &self,
        owner: &str,
        now: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> StoreResult<Vec<Webhook>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = ?, lease_expires_us = ?
             WHERE id IN (
                 SELECT w.id FROM webhook_endpoints w
                 WHERE w.status = 'active' AND w.next_attempt_us <= ?
                   AND (w.lease_expires_us IS NULL OR w.lease_expires_us < ?)
                   AND (CASE WHEN w.org_id IS NULL
                        THEN EXISTS (SELECT 1 FROM events e WHERE e.seq > w.cursor_seq)
                        ELSE EXISTS (SELECT 1 FROM events e WHERE e.org_id = w.org_id AND e.seq > w.cursor_seq)
                        END)
                 ORDER BY w.next_attempt_us LIMIT ?)
             RETURNING *",
        )
        .bind(owner)
        .bind(lease_until_us)
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(|r| webhook_of(r, &self.secrets)).collect()
    }

    pub(crate) async fn webhook_events_impl(
        &self,
        org_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        let rows = match org_id {
            Some(org) => {
                sqlx::query("SELECT * FROM events WHERE org_id = ? AND seq > ? ORDER BY seq LIMIT ?")
                    .bind(org)
                    .bind(after_seq)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
                    .bind(after_seq)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        Ok(rows.iter().map(event_of).collect())
    }

    pub(crate) async fn event_by_id_impl(&self, id: &str) -> StoreResult<Option<Event>> {
        let row = sqlx::query("SELECT * FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(event_of))
    }

    pub(crate) async fn webhook_advance_impl(
        &self,
        id: &str,
        owner: &str,
        from_seq: i64,
        to_seq: i64,
        attempt: Option<NewWebhookAttempt>,
        lease_until_us: i64,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.begin_write().await?;
        let current = sqlx::query(
            "UPDATE webhook_endpoints SET cursor_seq = ?, failing_since_us = NULL, consecutive_failures = 0,
                 last_error = NULL, lease_expires_us = ?
             WHERE id = ? AND lease_owner = ? AND cursor_seq = ? AND status = 'active'
             RETURNING *",
        )
        .bind(to_seq)
        .bind(lease_until_us)
        .bind(id)
        .bind(owner)
        .bind(from_seq)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(|r| webhook_of(r, &self.secrets))
        .transpose()?;
        if current.is_some()
            && let Some(a) = &attempt
        {
            insert_attempt(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(current)
    }

    pub(crate) async fn webhook_failed_impl(
        &self,
        id: &str,
        owner: &str,
        cursor_seq: i64,
        attempt: NewWebhookAttempt,
        failure: WebhookFailure,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let error = attempt
            .error
            .clone()
            .or_else(|| attempt.status_code.map(|s| format!("HTTP {s}")));
        let row = sqlx::query(
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
                 failing_since_us = COALESCE(failing_since_us, ?), last_error = ?, next_attempt_us = ?,
                 status = CASE WHEN ? IS NULL THEN status ELSE 'disabled' END,
                 disabled_reason = COALESCE(?, disabled_reason),
                 lease_owner = NULL, lease_expires_us = NULL, updated_us = ?
             WHERE id = ? AND lease_owner = ? AND cursor_seq = ? AND status = 'active'
             RETURNING *",
        )
        .bind(attempt.created_us)
        .bind(error.as_deref().map(|s| webhooks::truncate_utf8(s, MAX_EXCERPT_BYTES)))
        .bind(failure.next_attempt_us)
        .bind(&failure.disable_reason)
        .bind(&failure.disable_reason)
        .bind(now_us())
        .bind(id)
        .bind(owner)
        .bind(cursor_seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(w) = row.as_ref().map(|r| webhook_of(r, &self.secrets)).transpose()? else {
            return Ok(false);
        };
        insert_attempt(&mut tx, &attempt).await?;
        if let Some(reason) = &failure.disable_reason {
            insert_event(
                &mut tx,
                &webhook_ctx(&w),
                WEBHOOK_DISABLED,
                None,
                json!({ "reason": reason, "last_sequence": w.cursor_seq }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn webhook_backlog_impl(&self, cap: i64) -> StoreResult<Vec<(String, i64)>> {
        let endpoints: Vec<(String, Option<String>, i64)> =
            sqlx::query_as("SELECT id, org_id, cursor_seq FROM webhook_endpoints WHERE status = 'active' ORDER BY id")
                .fetch_all(&self.reader)
                .await?;
        let mut backlog = Vec::with_capacity(endpoints.len());
        for (id, org, cursor) in endpoints {
            // At most `cap` rows of the events' primary key read: bounded work whatever the backlog.
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE seq > ? AND (? IS NULL OR org_id = ?) LIMIT ?) AS behind",
            )
            .bind(cursor)
            .bind(org.as_deref())
            .bind(org.as_deref())
            .bind(cap)
            .fetch_one(&self.reader)
            .await?;
            backlog.push((id, n));
        }
        Ok(backlog)
    }

    pub(crate) async fn release_webhook_impl(&self, id: &str, owner: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = NULL, lease_expires_us = NULL WHERE id = ? AND lease_owner = ?",
        )
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub(crate) async fn record_webhook_attempt_impl(&self, attempt: NewWebhookAttempt) -> StoreResult<WebhookAttempt> {
        let mut tx = self.begin_write().await?;
        let a = insert_attempt(&mut tx, &attempt).await?;
        tx.commit().await?;
        Ok(a)
    }

    pub(crate) async fn list_webhook_attempts_impl(
        &self,
        endpoint_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<WebhookAttempt>> {
        let rows =
            sqlx::query("SELECT * FROM webhook_attempts WHERE endpoint_id = ? AND pk < ? ORDER BY pk DESC LIMIT ?")
                .bind(endpoint_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.iter().map(attempt_of).collect())
    }
}
