//! Browser sessions and setup links on PostgreSQL ([`crate::sessions`]). Changes that record an
//! event run in a `WriteTx` (events numbered in commit order) and are retried after a serialization
//! failure, like every other write.

use crate::events::{SETUP_LINK_CREATED, SETUP_LINK_REVOKED};
use crate::model::WriteContext;
use crate::postgres::PostgresStore;
use crate::sessions::{self, *};
use crate::sqlite::now_us;
use crate::{StoreError, StoreResult};
use rollcall_scim::ScimError;

fn no_organization(org_id: &str) -> StoreError {
    StoreError::Scim(ScimError::new(
        404,
        None,
        format!("no organization with id \"{org_id}\""),
    ))
}

impl PostgresStore {
    async fn create_browser_session_once(&self, session: &BrowserSession) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO browser_sessions (token_hash, kind, subject_id, org_id, created_us, expires_us, last_seen_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(session.token_hash.as_slice())
        .bind(session.kind.as_str())
        .bind(&session.subject_id)
        .bind(&session.org_id)
        .bind(session.created_us)
        .bind(session.expires_us)
        .bind(session.last_seen_us)
        .execute(tx.conn())
        .await?;
        if session.kind == SessionKind::Setup {
            sqlx::query("UPDATE setup_links SET last_used_us = GREATEST(COALESCE(last_used_us, 0), $1) WHERE id = $2")
                .bind(session.created_us)
                .bind(&session.subject_id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    pub(crate) async fn create_browser_session_impl(&self, new: NewBrowserSession) -> StoreResult<BrowserSession> {
        let now = now_us();
        let session = BrowserSession {
            token_hash: new.token_hash,
            kind: new.kind,
            subject_id: new.subject_id,
            org_id: new.org_id,
            created_us: now,
            expires_us: new.expires_us,
            last_seen_us: now,
        };
        self.retrying(|| self.create_browser_session_once(&session)).await?;
        Ok(session)
    }

    pub(crate) async fn console_session_impl(
        &self,
        token_hash: &[u8; 32],
        now_us: i64,
    ) -> StoreResult<Option<ConsoleSessionRow>> {
        let sql = format!(
            "SELECT {} FROM browser_sessions s JOIN api_keys k ON k.id = s.subject_id
             WHERE s.token_hash = $1 AND s.kind = 'console' AND s.expires_us > $2",
            sessions::CONSOLE_SESSION_COLUMNS
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash.as_slice())
            .bind(now_us)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| ConsoleSessionRow {
            session: sessions::session_of(&r, "s_"),
            api_key: sessions::api_key_of(&r, "k_"),
        }))
    }

    pub(crate) async fn setup_session_impl(
        &self,
        token_hash: &[u8; 32],
        now_us: i64,
    ) -> StoreResult<Option<SetupSessionRow>> {
        let sql = format!(
            "SELECT {} FROM browser_sessions s JOIN setup_links l ON l.id = s.subject_id
               JOIN organizations o ON o.id = l.org_id
             WHERE s.token_hash = $1 AND s.kind = 'setup' AND s.expires_us > $2",
            sessions::SETUP_SESSION_COLUMNS
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash.as_slice())
            .bind(now_us)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| SetupSessionRow {
            session: sessions::session_of(&r, "s_"),
            link: sessions::setup_link_of(&r, "l_"),
            org_name: sqlx::Row::get(&r, "org_name"),
        }))
    }

    pub(crate) async fn touch_browser_session_impl(&self, token_hash: &[u8; 32], at_us: i64) -> StoreResult<()> {
        sqlx::query("UPDATE browser_sessions SET last_seen_us = $1 WHERE token_hash = $2 AND last_seen_us < $1")
            .bind(at_us)
            .bind(token_hash.as_slice())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_browser_session_impl(&self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM browser_sessions WHERE token_hash = $1")
            .bind(token_hash.as_slice())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub(crate) async fn delete_subject_sessions_impl(&self, kind: SessionKind, subject_id: &str) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM browser_sessions WHERE kind = $1 AND subject_id = $2")
                .bind(kind.as_str())
                .bind(subject_id)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub(crate) async fn prune_browser_sessions_impl(&self, now_us: i64, batch: i64) -> StoreResult<u64> {
        // Rows another node is deleting are skipped.
        Ok(sqlx::query(
            "DELETE FROM browser_sessions WHERE token_hash IN
               (SELECT token_hash FROM browser_sessions WHERE expires_us <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(now_us)
        .bind(batch.max(0))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn create_setup_link_once(&self, by: &WriteContext, link: &SetupLink) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Locks the organization against a concurrent delete until the link is in.
        let exists = sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR SHARE")
            .bind(&link.org_id)
            .fetch_optional(tx.conn())
            .await?;
        if exists.is_none() {
            return Err(no_organization(&link.org_id));
        }
        sqlx::query(
            "INSERT INTO setup_links (id, org_id, token_hash, token_prefix, return_url, created_by, created_us, expires_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&link.id)
        .bind(&link.org_id)
        .bind(link.token_hash.as_slice())
        .bind(&link.token_prefix)
        .bind(&link.return_url)
        .bind(link.created_by.to_json())
        .bind(link.created_us)
        .bind(link.expires_us)
        .execute(tx.conn())
        .await?;
        tx.event(
            &by.about(&link.org_id, ""),
            SETUP_LINK_CREATED,
            None,
            sessions::event_data(link),
        );
        tx.commit().await
    }

    pub(crate) async fn create_setup_link_impl(&self, by: &WriteContext, new: NewSetupLink) -> StoreResult<SetupLink> {
        let link = SetupLink {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: new.org_id,
            token_hash: new.token_hash,
            token_prefix: new.token_prefix,
            return_url: new.return_url,
            created_by: by.actor.clone(),
            connection_id: None,
            created_us: now_us(),
            expires_us: new.expires_us,
            revoked_us: None,
            last_used_us: None,
        };
        self.retrying(|| self.create_setup_link_once(by, &link)).await?;
        Ok(link)
    }

    pub(crate) async fn list_setup_links_impl(&self, org_id: &str) -> StoreResult<Vec<SetupLink>> {
        let rows = sqlx::query("SELECT * FROM setup_links WHERE org_id = $1 ORDER BY created_us DESC, id DESC")
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| sessions::setup_link_of(r, "")).collect())
    }

    pub(crate) async fn get_setup_link_impl(&self, id: &str) -> StoreResult<Option<SetupLink>> {
        let row = sqlx::query("SELECT * FROM setup_links WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| sessions::setup_link_of(&r, "")))
    }

    pub(crate) async fn setup_link_by_hash_impl(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SetupLink>> {
        let row = sqlx::query("SELECT * FROM setup_links WHERE token_hash = $1")
            .bind(token_hash.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| sessions::setup_link_of(&r, "")))
    }

    async fn revoke_setup_link_once(&self, by: &WriteContext, id: &str) -> StoreResult<Option<SetupLink>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM setup_links WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        let Some(mut link) = row.map(|r| sessions::setup_link_of(&r, "")) else {
            return Ok(None);
        };
        if link.revoked_us.is_none() {
            let now = now_us();
            sqlx::query("UPDATE setup_links SET revoked_us = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(tx.conn())
                .await?;
            link.revoked_us = Some(now);
            tx.event(
                &by.about(&link.org_id, ""),
                SETUP_LINK_REVOKED,
                None,
                sessions::event_data(&link),
            );
        }
        // Also for a link revoked before: no session of it may outlive this call.
        sqlx::query("DELETE FROM browser_sessions WHERE kind = 'setup' AND subject_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(Some(link))
    }

    pub(crate) async fn revoke_setup_link_impl(&self, by: &WriteContext, id: &str) -> StoreResult<Option<SetupLink>> {
        self.retrying(|| self.revoke_setup_link_once(by, id)).await
    }

    async fn set_setup_link_connection_once(&self, id: &str, connection_id: &str) -> StoreResult<Option<SetupLink>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM setup_links WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        let Some(mut link) = row.map(|r| sessions::setup_link_of(&r, "")) else {
            return Ok(None);
        };
        let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM scim_connections WHERE id = $1 FOR SHARE")
            .bind(connection_id)
            .fetch_optional(tx.conn())
            .await?;
        if org.as_deref() != Some(link.org_id.as_str()) {
            return Err(sessions::connection_not_in_org(connection_id));
        }
        sqlx::query("UPDATE setup_links SET connection_id = $1 WHERE id = $2")
            .bind(connection_id)
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        link.connection_id = Some(connection_id.to_string());
        Ok(Some(link))
    }

    pub(crate) async fn set_setup_link_connection_impl(
        &self,
        id: &str,
        connection_id: &str,
    ) -> StoreResult<Option<SetupLink>> {
        self.retrying(|| self.set_setup_link_connection_once(id, connection_id))
            .await
    }
}
