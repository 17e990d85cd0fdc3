//! Directory connections ([`crate::directory_sync`]) on both databases, from the statements of
//! [`DirectorySql`].

use crate::directory_sync::{
    self, DirectorySource, DirectorySourceUpdate, DirectorySql, NewDirectoryConnection, SyncCounts, SyncOutcome,
};
use crate::events;
use crate::model::{Connection, WriteContext};
use crate::postgres::PostgresStore;
use crate::sqlite::{SqliteStore, insert_event, now_us};
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Row};

fn no_organization(org_id: &str) -> StoreError {
    StoreError::Scim(ScimError::new(
        404,
        None,
        format!("no organization with id \"{org_id}\""),
    ))
}

fn settings_json(s: &directory_sync::DirectorySettings) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

fn counts_json(c: &SyncCounts) -> String {
    serde_json::to_string(c).unwrap_or_else(|_| "{}".into())
}

/// The data of `connection.created` for a directory connection.
fn created_data(c: &Connection, s: &DirectorySource) -> Value {
    json!({
        "name": c.name,
        "idp": c.idp,
        "kind": c.kind,
        "customer": s.settings.customer,
        "admin_email": s.settings.admin_email,
        "client_email": s.settings.client_email,
        "interval_s": s.interval_s,
    })
}

/// Applies `update` to `s`; returns what changed for `connection.updated` (credentials: only that
/// they changed), or `None`.
fn apply_update(s: &mut DirectorySource, update: DirectorySourceUpdate) -> StoreResult<Option<Value>> {
    let mut changed = serde_json::Map::new();
    if let Some(settings) = update.settings
        && settings != s.settings
    {
        changed.insert(
            "directory_settings".into(),
            json!({"before": s.settings, "after": settings}),
        );
        s.settings = settings;
    }
    if let Some(credentials) = update.credentials
        && credentials != s.credentials
    {
        changed.insert("credentials".into(), json!({"replaced": true}));
        s.credentials = credentials;
    }
    if let Some(interval) = update.interval_s
        && interval != s.interval_s
    {
        directory_sync::check_interval(interval)?;
        changed.insert("interval_s".into(), json!({"before": s.interval_s, "after": interval}));
        // The next run keeps its place relative to the last one.
        s.next_run_us = s.next_run_us - s.interval_s * 1_000_000 + interval * 1_000_000;
        s.interval_s = interval;
    }
    Ok((!changed.is_empty()).then(|| json!({ "changed": changed })))
}

fn prepared(new: &NewDirectoryConnection) -> StoreResult<(Connection, DirectorySource)> {
    directory_sync::check_interval(new.interval_s)?;
    let now = now_us();
    let c = directory_sync::new_connection(new, uuid::Uuid::now_v7().to_string(), now);
    let s = DirectorySource {
        connection_id: c.id.clone(),
        kind: new.kind,
        settings: new.settings.clone(),
        credentials: new.credentials.clone(),
        interval_s: new.interval_s,
        next_run_us: now,
        lease_owner: None,
        lease_until_us: None,
        running_since_us: None,
        progress: None,
        last_started_us: None,
        last_finished_us: None,
        last_status: None,
        last_error: None,
        last_counts: None,
        created_us: now,
        updated_us: now,
    };
    Ok((c, s))
}

impl SqliteStore {
    pub(crate) async fn create_directory_connection_impl(
        &self,
        by: &WriteContext,
        new: NewDirectoryConnection,
    ) -> StoreResult<(Connection, DirectorySource)> {
        let (c, s) = prepared(&new)?;
        let sealed = directory_sync::sealed_credentials(&self.secrets, &c.id, &s.credentials)?;
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = ?")
            .bind(&c.org_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(no_organization(&c.org_id));
        }
        sqlx::query(
            "INSERT INTO scim_connections (id, org_id, name, idp, kind, status, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.org_id)
        .bind(&c.name)
        .bind(c.idp.as_str())
        .bind(c.kind.as_str())
        .bind(c.status.as_str())
        .bind(c.created_us)
        .execute(&mut *tx)
        .await?;
        sqlx::query(DirectorySql::INSERT)
            .bind(&c.id)
            .bind(s.kind.as_str())
            .bind(settings_json(&s.settings))
            .bind(&sealed)
            .bind(s.interval_s)
            .bind(s.next_run_us)
            .bind(s.created_us)
            .bind(s.updated_us)
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
            &by.about(&c.org_id, &c.id),
            events::CONNECTION_CREATED,
            None,
            created_data(&c, &s),
        )
        .await?;
        tx.commit().await?;
        Ok((c, s))
    }

    pub(crate) async fn directory_source_impl(&self, connection_id: &str) -> StoreResult<Option<DirectorySource>> {
        let row = sqlx::query(DirectorySql::GET)
            .bind(connection_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref()
            .map(|r| directory_sync::source_of(r, &self.secrets))
            .transpose()
    }

    pub(crate) async fn update_directory_source_impl(
        &self,
        by: &WriteContext,
        connection_id: &str,
        update: DirectorySourceUpdate,
    ) -> StoreResult<Option<DirectorySource>> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(DirectorySql::GET)
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut s = directory_sync::source_of(&row, &self.secrets)?;
        let org_id: String = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = ?")
            .bind(connection_id)
            .fetch_one(&mut *tx)
            .await?;
        let Some(data) = apply_update(&mut s, update)? else {
            return Ok(Some(s));
        };
        s.updated_us = now_us();
        let sealed = directory_sync::sealed_credentials(&self.secrets, connection_id, &s.credentials)?;
        sqlx::query(DirectorySql::UPDATE)
            .bind(settings_json(&s.settings))
            .bind(&sealed)
            .bind(s.interval_s)
            .bind(s.next_run_us)
            .bind(s.updated_us)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
            &by.about(&org_id, connection_id),
            events::CONNECTION_UPDATED,
            None,
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(s))
    }

    pub(crate) async fn request_directory_sync_impl(&self, connection_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(DirectorySql::REQUEST)
            .bind(now)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn claim_directory_syncs_impl(
        &self,
        owner: &str,
        now: i64,
        lease_until_us: i64,
        limit: i64,
        only: Option<&str>,
    ) -> StoreResult<Vec<DirectorySource>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(AssertSqlSafe(DirectorySql::claim(false)))
            .bind(owner)
            .bind(lease_until_us)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(only)
            .bind(now)
            .bind(only)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| directory_sync::source_of(r, &self.secrets))
            .collect()
    }

    pub(crate) async fn directory_sync_progress_impl(
        &self,
        connection_id: &str,
        owner: &str,
        progress: &SyncCounts,
        lease_until_us: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(DirectorySql::PROGRESS)
            .bind(counts_json(progress))
            .bind(lease_until_us)
            .bind(connection_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn finish_directory_sync_impl(
        &self,
        connection_id: &str,
        owner: &str,
        outcome: &SyncOutcome,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let before = sqlx::query(DirectorySql::FINISH_CONTEXT)
            .bind(connection_id)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
        let done = sqlx::query(DirectorySql::FINISH)
            .bind(outcome.finished_us)
            .bind(outcome.status.as_str())
            .bind(outcome.error.as_deref().map(directory_sync::clip_error))
            .bind(counts_json(&outcome.counts))
            .bind(outcome.finished_us)
            .bind(connection_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let finished = done.rows_affected() == 1;
        if finished && let Some(row) = before {
            let previous: Option<String> = row.try_get("last_status")?;
            if let Some((kind, data)) = directory_sync::run_event(previous.as_deref(), outcome) {
                let org_id: String = row.try_get("org_id")?;
                let ctx = directory_sync::run_event_context(&org_id, connection_id);
                insert_event(&mut tx, &ctx, kind, None, data).await?;
            }
        }
        tx.commit().await?;
        Ok(finished)
    }
}

impl PostgresStore {
    pub(crate) async fn create_directory_connection_impl(
        &self,
        by: &WriteContext,
        new: NewDirectoryConnection,
    ) -> StoreResult<(Connection, DirectorySource)> {
        let (c, s) = prepared(&new)?;
        let sealed = directory_sync::sealed_credentials(&self.secrets, &c.id, &s.credentials)?;
        self.retrying(|| async {
            let mut tx = self.begin_write().await?;
            let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = $1")
                .bind(&c.org_id)
                .fetch_optional(tx.conn())
                .await?;
            if exists.is_none() {
                return Err(no_organization(&c.org_id));
            }
            sqlx::query(
                "INSERT INTO scim_connections (id, org_id, name, idp, kind, status, created_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&c.id)
            .bind(&c.org_id)
            .bind(&c.name)
            .bind(c.idp.as_str())
            .bind(c.kind.as_str())
            .bind(c.status.as_str())
            .bind(c.created_us)
            .execute(tx.conn())
            .await?;
            sqlx::query(AssertSqlSafe(DirectorySql::pg(DirectorySql::INSERT)))
                .bind(&c.id)
                .bind(s.kind.as_str())
                .bind(settings_json(&s.settings))
                .bind(&sealed)
                .bind(s.interval_s)
                .bind(s.next_run_us)
                .bind(s.created_us)
                .bind(s.updated_us)
                .execute(tx.conn())
                .await?;
            tx.event(
                &by.about(&c.org_id, &c.id),
                events::CONNECTION_CREATED,
                None,
                created_data(&c, &s),
            );
            tx.commit().await
        })
        .await?;
        Ok((c, s))
    }

    pub(crate) async fn directory_source_impl(&self, connection_id: &str) -> StoreResult<Option<DirectorySource>> {
        let row = sqlx::query(AssertSqlSafe(DirectorySql::pg(DirectorySql::GET)))
            .bind(connection_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(|r| directory_sync::source_of(r, &self.secrets))
            .transpose()
    }

    pub(crate) async fn update_directory_source_impl(
        &self,
        by: &WriteContext,
        connection_id: &str,
        update: DirectorySourceUpdate,
    ) -> StoreResult<Option<DirectorySource>> {
        self.retrying(|| async {
            let mut tx = self.begin_write().await?;
            let Some(row) = sqlx::query(AssertSqlSafe(format!(
                "{} FOR UPDATE",
                DirectorySql::pg(DirectorySql::GET)
            )))
            .bind(connection_id)
            .fetch_optional(tx.conn())
            .await?
            else {
                return Ok(None);
            };
            let mut s = directory_sync::source_of(&row, &self.secrets)?;
            let org_id: String = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = $1")
                .bind(connection_id)
                .fetch_one(tx.conn())
                .await?;
            let Some(data) = apply_update(&mut s, update.clone())? else {
                return Ok(Some(s));
            };
            s.updated_us = now_us();
            let sealed = directory_sync::sealed_credentials(&self.secrets, connection_id, &s.credentials)?;
            sqlx::query(AssertSqlSafe(DirectorySql::pg(DirectorySql::UPDATE)))
                .bind(settings_json(&s.settings))
                .bind(&sealed)
                .bind(s.interval_s)
                .bind(s.next_run_us)
                .bind(s.updated_us)
                .bind(connection_id)
                .execute(tx.conn())
                .await?;
            tx.event(
                &by.about(&org_id, connection_id),
                events::CONNECTION_UPDATED,
                None,
                data,
            );
            tx.commit().await?;
            Ok(Some(s))
        })
        .await
    }

    pub(crate) async fn request_directory_sync_impl(&self, connection_id: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(DirectorySql::REQUEST_PG)
            .bind(now)
            .bind(connection_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn claim_directory_syncs_impl(
        &self,
        owner: &str,
        now: i64,
        lease_until_us: i64,
        limit: i64,
        only: Option<&str>,
    ) -> StoreResult<Vec<DirectorySource>> {
        let rows = sqlx::query(AssertSqlSafe(DirectorySql::claim(true)))
            .bind(owner)
            .bind(lease_until_us)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(only)
            .bind(now)
            .bind(only)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| directory_sync::source_of(r, &self.secrets))
            .collect()
    }

    pub(crate) async fn directory_sync_progress_impl(
        &self,
        connection_id: &str,
        owner: &str,
        progress: &SyncCounts,
        lease_until_us: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(AssertSqlSafe(DirectorySql::pg(DirectorySql::PROGRESS)))
            .bind(counts_json(progress))
            .bind(lease_until_us)
            .bind(connection_id)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn finish_directory_sync_impl(
        &self,
        connection_id: &str,
        owner: &str,
        outcome: &SyncOutcome,
    ) -> StoreResult<bool> {
        self.retrying(|| async {
            let mut tx = self.begin_write().await?;
            let before = sqlx::query(AssertSqlSafe(DirectorySql::pg(DirectorySql::FINISH_CONTEXT)))
                .bind(connection_id)
                .bind(owner)
                .fetch_optional(tx.conn())
                .await?;
            let done = sqlx::query(AssertSqlSafe(DirectorySql::pg(DirectorySql::FINISH)))
                .bind(outcome.finished_us)
                .bind(outcome.status.as_str())
                .bind(outcome.error.as_deref().map(directory_sync::clip_error))
                .bind(counts_json(&outcome.counts))
                .bind(outcome.finished_us)
                .bind(connection_id)
                .bind(owner)
                .execute(tx.conn())
                .await?;
            let finished = done.rows_affected() == 1;
            if finished && let Some(row) = before {
                let previous: Option<String> = row.try_get("last_status")?;
                if let Some((kind, data)) = directory_sync::run_event(previous.as_deref(), outcome) {
                    let org_id: String = row.try_get("org_id")?;
                    tx.event(
                        &directory_sync::run_event_context(&org_id, connection_id),
                        kind,
                        None,
                        data,
                    );
                }
            }
            tx.commit().await?;
            Ok(finished)
        })
        .await
    }
}
