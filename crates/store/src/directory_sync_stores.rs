//! Directory connections ([`crate::directory_sync`]) on both databases, written once ([`Backend`]).

use crate::StoreResult;
use crate::backend::{Backend, Tx, locking, no_organization};
use crate::directory_sync::{
    self, DirectorySource, DirectorySourceUpdate, NewDirectoryConnection, SyncCounts, SyncOutcome,
};
use crate::events;
use crate::model::{Connection, WriteContext};
use crate::sqlite::now_us;
use serde_json::{Value, json};
use sqlx::Row;

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

/// Directory connections: their settings, credentials and sync runs.
#[async_trait::async_trait]
pub trait DirectorySyncStore: Send + Sync {
    // --- directory connections ([`directory_sync`], issue #17) ----------------------------------
    /// Creates a directory connection (no token) with its settings and sealed credentials, due to
    /// sync at once, recording `connection.created`; 404 when the organization does not exist.
    async fn create_directory_connection(
        &self,
        by: &WriteContext,
        new: NewDirectoryConnection,
    ) -> StoreResult<(Connection, DirectorySource)>;
    /// A directory connection's settings and sync state; `None` for a SCIM connection or none.
    async fn directory_source(&self, connection_id: &str) -> StoreResult<Option<DirectorySource>>;
    /// Changes a directory connection's settings, credentials or interval, recording
    /// `connection.updated` (never with the credentials); `None` when it is not one.
    async fn update_directory_source(
        &self,
        by: &WriteContext,
        connection_id: &str,
        update: DirectorySourceUpdate,
    ) -> StoreResult<Option<DirectorySource>>;
    /// Makes a directory connection's next run due at `now_us` (or earlier, as it was); a run in
    /// progress is followed by another at its end. False when it is not a directory connection.
    async fn request_directory_sync(&self, connection_id: &str, now_us: i64) -> StoreResult<bool>;
    /// Leases to `owner` until `lease_until_us` up to `limit` directory connections of active
    /// connections that are due at `now_us` (with `only`: that one, due or not) and whose lease has
    /// expired or was released, marking them running. Concurrent callers never receive the same one.
    async fn claim_directory_syncs(
        &self,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
        only: Option<&str>,
    ) -> StoreResult<Vec<DirectorySource>>;
    /// Records a run's progress and extends its lease; false unless `owner` holds the lease.
    async fn directory_sync_progress(
        &self,
        connection_id: &str,
        owner: &str,
        progress: &SyncCounts,
        lease_until_us: i64,
    ) -> StoreResult<bool>;
    /// Records how a run ended and releases the lease; the next run is due one interval later
    /// (or when asked for during the run). False unless `owner` holds the lease.
    async fn finish_directory_sync(&self, connection_id: &str, owner: &str, outcome: &SyncOutcome)
    -> StoreResult<bool>;
}

/// The directory connections of a [`Backend`].
macro_rules! directory_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl DirectorySyncStore for $store {
            async fn create_directory_connection(
                &self,
                by: &WriteContext,
                new: NewDirectoryConnection,
            ) -> StoreResult<(Connection, DirectorySource)> {
                let (c, s) = prepared(&new)?;
                let sealed = directory_sync::sealed_credentials(&self.secrets, &c.id, &s.credentials)?;
                let (conn, source, sealed) = (&c, &s, &sealed);
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = $1")
                        .bind(&conn.org_id)
                        .fetch_optional(tx.conn())
                        .await?;
                    if exists.is_none() {
                        return Err(no_organization(&conn.org_id));
                    }
                    sqlx::query(
                        "INSERT INTO scim_connections (id, org_id, name, idp, kind, status, created_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&conn.id)
                    .bind(&conn.org_id)
                    .bind(&conn.name)
                    .bind(conn.idp.as_str())
                    .bind(conn.kind.as_str())
                    .bind(conn.status.as_str())
                    .bind(conn.created_us)
                    .execute(tx.conn())
                    .await?;
                    sqlx::query(
                        "INSERT INTO directory_sources (connection_id, provider, settings, credentials, interval_s,
                           next_run_us, created_us, updated_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&conn.id)
                    .bind(source.kind.as_str())
                    .bind(settings_json(&source.settings))
                    .bind(sealed)
                    .bind(source.interval_s)
                    .bind(source.next_run_us)
                    .bind(source.created_us)
                    .bind(source.updated_us)
                    .execute(tx.conn())
                    .await?;
                    let ctx = by.about(&conn.org_id, &conn.id);
                    tx.record(&ctx, events::CONNECTION_CREATED, None, created_data(conn, source))
                        .await?;
                    tx.commit().await
                })
                .await?;
                Ok((c, s))
            }

            async fn directory_source(
                &self,
                connection_id: &str,
            ) -> StoreResult<Option<DirectorySource>> {
                let row = sqlx::query("SELECT * FROM directory_sources WHERE connection_id = $1")
                    .bind(connection_id)
                    .fetch_optional(self.reads())
                    .await?;
                row.as_ref()
                    .map(|r| directory_sync::source_of(r, &self.secrets))
                    .transpose()
            }

            async fn update_directory_source(
                &self,
                by: &WriteContext,
                connection_id: &str,
                update: DirectorySourceUpdate,
            ) -> StoreResult<Option<DirectorySource>> {
                let update = &update;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let sql = locking!(
                        <$store as Backend>::DIALECT,
                        "SELECT * FROM directory_sources WHERE connection_id = $1",
                        "FOR UPDATE"
                    );
                    let Some(row) = sqlx::query(sql).bind(connection_id).fetch_optional(tx.conn()).await? else {
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
                    sqlx::query(
                        "UPDATE directory_sources SET settings = $1, credentials = $2, interval_s = $3,
                           next_run_us = $4, updated_us = $5 WHERE connection_id = $6",
                    )
                    .bind(settings_json(&s.settings))
                    .bind(&sealed)
                    .bind(s.interval_s)
                    .bind(s.next_run_us)
                    .bind(s.updated_us)
                    .bind(connection_id)
                    .execute(tx.conn())
                    .await?;
                    tx.record(&by.about(&org_id, connection_id), events::CONNECTION_UPDATED, None, data)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(s))
                })
                .await
            }

            async fn request_directory_sync(&self, connection_id: &str, now: i64) -> StoreResult<bool> {
                let q = sqlx::query(
                    "UPDATE directory_sources
                     SET next_run_us = CASE WHEN next_run_us < $1 THEN next_run_us ELSE $1 END
                     WHERE connection_id = $2",
                );
                Ok(self.write_one(q.bind(now).bind(connection_id)).await? == 1)
            }

            /// Leases the connections due (or `only`), up to `limit`: the next run is set one interval
            /// later, so that a "sync now" during the run is seen at its end. PostgreSQL locks the
            /// rows it picks (`SKIP LOCKED`).
            async fn claim_directory_syncs(
                &self,
                owner: &str,
                now: i64,
                lease_until_us: i64,
                limit: i64,
                only: Option<&str>,
            ) -> StoreResult<Vec<DirectorySource>> {
                let sql = locking!(
                    <$store as Backend>::DIALECT,
                    "UPDATE directory_sources SET lease_owner = $1, lease_until_us = $2, running_since_us = $3,
                         next_run_us = $3 + interval_s * 1000000, progress = NULL
                     WHERE connection_id IN (
                         SELECT d.connection_id FROM directory_sources d
                         JOIN scim_connections c ON c.id = d.connection_id
                         WHERE c.status = 'active' AND (d.lease_until_us IS NULL OR d.lease_until_us < $3)
                           AND ((CAST($4 AS TEXT) IS NULL AND d.next_run_us <= $3) OR d.connection_id = CAST($4 AS TEXT))
                         ORDER BY d.next_run_us LIMIT $5",
                    "FOR UPDATE OF d SKIP LOCKED",
                    ") RETURNING *"
                );
                let q = sqlx::query(sql).bind(owner).bind(lease_until_us).bind(now).bind(only).bind(limit);
                self.write_rows(q)
                    .await?
                    .iter()
                    .map(|r| directory_sync::source_of(r, &self.secrets))
                    .collect()
            }

            async fn directory_sync_progress(
                &self,
                connection_id: &str,
                owner: &str,
                progress: &SyncCounts,
                lease_until_us: i64,
            ) -> StoreResult<bool> {
                let q = sqlx::query(
                    "UPDATE directory_sources SET progress = $1, lease_until_us = $2
                     WHERE connection_id = $3 AND lease_owner = $4",
                )
                .bind(counts_json(progress))
                .bind(lease_until_us)
                .bind(connection_id)
                .bind(owner);
                Ok(self.write_one(q).await? == 1)
            }

            /// Ends a run: the next comes one interval after, unless one was asked for meanwhile
            /// (`next_run_us` moved before the one the claim set); the run's end may raise an event
            /// ([`directory_sync::run_event`]).
            async fn finish_directory_sync(
                &self,
                connection_id: &str,
                owner: &str,
                outcome: &SyncOutcome,
            ) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let before = sqlx::query(
                        "SELECT c.org_id, d.last_status FROM directory_sources d
                         JOIN scim_connections c ON c.id = d.connection_id
                         WHERE d.connection_id = $1 AND d.lease_owner = $2",
                    )
                    .bind(connection_id)
                    .bind(owner)
                    .fetch_optional(tx.conn())
                    .await?;
                    let done = sqlx::query(
                        "UPDATE directory_sources SET last_started_us = running_since_us, last_finished_us = $1,
                           last_status = $2, last_error = $3, last_counts = $4,
                           next_run_us = CASE WHEN next_run_us < running_since_us + interval_s * 1000000
                             THEN next_run_us ELSE $1 + interval_s * 1000000 END,
                           lease_owner = NULL, lease_until_us = NULL, running_since_us = NULL, progress = NULL
                         WHERE connection_id = $5 AND lease_owner = $6",
                    )
                    .bind(outcome.finished_us)
                    .bind(outcome.status.as_str())
                    .bind(outcome.error.as_deref().map(directory_sync::clip_error))
                    .bind(counts_json(&outcome.counts))
                    .bind(connection_id)
                    .bind(owner)
                    .execute(tx.conn())
                    .await?;
                    let finished = done.rows_affected() == 1;
                    if finished && let Some(row) = before {
                        let previous: Option<String> = row.try_get("last_status")?;
                        if let Some((kind, data)) = directory_sync::run_event(previous.as_deref(), outcome) {
                            let org_id: String = row.try_get("org_id")?;
                            let ctx = directory_sync::run_event_context(&org_id, connection_id);
                            tx.record(&ctx, kind, None, data).await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(finished)
                })
                .await
            }
        }
    };
}

directory_store!(crate::sqlite::SqliteStore);
directory_store!(crate::postgres::PostgresStore);
