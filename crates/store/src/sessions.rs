//! Browser sessions (the operator console and the setup page) and setup links (issue #14), shared
//! by the two stores: [`SessionStore`], written once for both.
//!
//! Both keep only the SHA-256 of their tokens. A session belongs to a subject: the API key it signed
//! in with (`console`) or the setup link it was opened from (`setup`); revoking the subject ends its
//! sessions in the same transaction, and reading a session checks its subject again.

use crate::StoreResult;
use crate::audit::Actor;
use crate::backend::{Backend, Tx, locking, no_organization};
use crate::events::{SETUP_LINK_CREATED, SETUP_LINK_REVOKED};
use crate::model::WriteContext;
use crate::rows::Cols;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::str::FromStr;

/// What a browser session is signed in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// The operator console (`/console`), signed in with an operator API key.
    Console,
    /// The setup page of a customer's IT admin (`/setup/...`), opened from a setup link.
    Setup,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Console => "console",
            SessionKind::Setup => "setup",
        }
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "console" => Ok(SessionKind::Console),
            "setup" => Ok(SessionKind::Setup),
            other => Err(format!("unknown session kind \"{other}\"")),
        }
    }
}

/// A signed-in browser. Only the hash of its token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrowserSession {
    #[serde(skip)]
    pub token_hash: [u8; 32],
    pub kind: SessionKind,
    /// The API key's id (`console`) or the setup link's id (`setup`).
    pub subject_id: String,
    /// The organization a `setup` session is limited to; `None` for the console.
    pub org_id: Option<String>,
    pub created_us: i64,
    pub expires_us: i64,
    /// When the session was last used (recorded at most about once a minute).
    pub last_seen_us: i64,
}

/// A session to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBrowserSession {
    pub token_hash: [u8; 32],
    pub kind: SessionKind,
    pub subject_id: String,
    pub org_id: Option<String>,
    pub expires_us: i64,
}

/// Where a setup link stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetupLinkStatus {
    Active,
    Expired,
    Revoked,
}

impl SetupLinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SetupLinkStatus::Active => "active",
            SetupLinkStatus::Expired => "expired",
            SetupLinkStatus::Revoked => "revoked",
        }
    }
}

impl fmt::Display for SetupLinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link an operator gives a customer's IT admin to set up SCIM for one organization, without an
/// account. Only the hash of its token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupLink {
    pub id: String,
    pub org_id: String,
    #[serde(skip)]
    pub token_hash: [u8; 32],
    /// The first characters of the token, to recognise it (never enough to use it).
    pub token_prefix: String,
    /// Where the setup page sends the admin when done.
    pub return_url: Option<String>,
    /// Who created it.
    pub created_by: Actor,
    /// The connection the admin created through the link, if any (`None` again if it was deleted).
    pub connection_id: Option<String>,
    pub created_us: i64,
    pub expires_us: i64,
    pub revoked_us: Option<i64>,
    /// When the link was last opened to sign in.
    pub last_used_us: Option<i64>,
}

impl SetupLink {
    /// Revoked (whenever), else expired at `now_us`, else active.
    pub fn status(&self, now_us: i64) -> SetupLinkStatus {
        if self.revoked_us.is_some() {
            SetupLinkStatus::Revoked
        } else if self.expires_us <= now_us {
            SetupLinkStatus::Expired
        } else {
            SetupLinkStatus::Active
        }
    }
}

/// A setup link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSetupLink {
    pub org_id: String,
    pub token_hash: [u8; 32],
    pub token_prefix: String,
    pub return_url: Option<String>,
    pub expires_us: i64,
}

/// A live console session with the API key it signed in with (revoked or not: the caller checks).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleSessionRow {
    pub session: BrowserSession,
    pub api_key: crate::ApiKey,
}

/// A live setup session with its link (revoked or expired or not: the caller checks) and the name of
/// its organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupSessionRow {
    pub session: BrowserSession,
    pub link: SetupLink,
    pub org_name: String,
}

/// The `data` of `setup_link.created` and `setup_link.revoked`: never the token.
pub(crate) fn event_data(link: &SetupLink) -> Value {
    json!({
        "setup_link_id": link.id,
        "token_prefix": link.token_prefix,
        "expires_at": rfc3339(link.expires_us),
    })
}

/// The 400 for attaching a connection of another organization (or none) to a setup link.
pub(crate) fn connection_not_in_org(connection_id: &str) -> crate::StoreError {
    crate::StoreError::Scim(rollcall_scim::ScimError::new(
        400,
        None,
        format!("no SCIM connection with id \"{connection_id}\" in the setup link's organization"),
    ))
}

/// RFC 3339 time of microseconds since the Unix epoch (as the Events API writes times).
pub(crate) fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// A 32-byte hash column (malformed: zeros, which no token hashes to).
fn hash32(v: Vec<u8>) -> [u8; 32] {
    <[u8; 32]>::try_from(v.as_slice()).unwrap_or_default()
}

/// A row of `browser_sessions` (columns prefixed with `prefix`, e.g. `s_`, in joins).
pub(crate) fn session_of(row: &impl Cols, prefix: &str) -> BrowserSession {
    let col = |c: &str| format!("{prefix}{c}");
    BrowserSession {
        token_hash: hash32(row.bytes(&col("token_hash"))),
        kind: row.text(&col("kind")).parse().unwrap_or(SessionKind::Setup),
        subject_id: row.text(&col("subject_id")),
        org_id: row.opt_text(&col("org_id")),
        created_us: row.int(&col("created_us")),
        expires_us: row.int(&col("expires_us")),
        last_seen_us: row.int(&col("last_seen_us")),
    }
}

/// A row of `setup_links` (columns prefixed with `prefix` in joins).
pub(crate) fn setup_link_of(row: &impl Cols, prefix: &str) -> SetupLink {
    let col = |c: &str| format!("{prefix}{c}");
    SetupLink {
        id: row.text(&col("id")),
        org_id: row.text(&col("org_id")),
        token_hash: hash32(row.bytes(&col("token_hash"))),
        token_prefix: row.text(&col("token_prefix")),
        return_url: row.opt_text(&col("return_url")),
        created_by: Actor::from_json(Some(&row.text(&col("created_by")))),
        connection_id: row.opt_text(&col("connection_id")),
        created_us: row.int(&col("created_us")),
        expires_us: row.int(&col("expires_us")),
        revoked_us: row.opt_int(&col("revoked_us")),
        last_used_us: row.opt_int(&col("last_used_us")),
    }
}

/// A row of `api_keys` (columns prefixed with `prefix` in joins).
pub(crate) fn api_key_of(row: &impl Cols, prefix: &str) -> crate::ApiKey {
    let col = |c: &str| format!("{prefix}{c}");
    crate::ApiKey {
        id: row.text(&col("id")),
        name: row.text(&col("name")),
        key_prefix: row.text(&col("key_prefix")),
        key_hash: hash32(row.bytes(&col("key_hash"))),
        created_us: row.int(&col("created_us")),
        revoked_us: row.opt_int(&col("revoked_us")),
    }
}

/// The columns of a session joined with its API key: `s_*` and `k_*`.
pub(crate) const CONSOLE_SESSION_COLUMNS: &str = "s.token_hash AS s_token_hash, s.kind AS s_kind, \
     s.subject_id AS s_subject_id, s.org_id AS s_org_id, s.created_us AS s_created_us, \
     s.expires_us AS s_expires_us, s.last_seen_us AS s_last_seen_us, \
     k.id AS k_id, k.name AS k_name, k.key_prefix AS k_key_prefix, k.key_hash AS k_key_hash, \
     k.created_us AS k_created_us, k.revoked_us AS k_revoked_us";

/// The columns of a session joined with its setup link and organization: `s_*`, `l_*`, `org_name`.
pub(crate) const SETUP_SESSION_COLUMNS: &str = "s.token_hash AS s_token_hash, s.kind AS s_kind, \
     s.subject_id AS s_subject_id, s.org_id AS s_org_id, s.created_us AS s_created_us, \
     s.expires_us AS s_expires_us, s.last_seen_us AS s_last_seen_us, \
     l.id AS l_id, l.org_id AS l_org_id, l.token_hash AS l_token_hash, l.token_prefix AS l_token_prefix, \
     l.return_url AS l_return_url, l.created_by AS l_created_by, l.connection_id AS l_connection_id, \
     l.created_us AS l_created_us, l.expires_us AS l_expires_us, l.revoked_us AS l_revoked_us, \
     l.last_used_us AS l_last_used_us, o.name AS org_name";

/// Browser sessions and setup links; [`crate::Store`] includes it.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a signed-in browser; for a `setup` session, also when its link was last used.
    async fn create_browser_session(&self, new: NewBrowserSession) -> StoreResult<BrowserSession>;
    /// The `console` session whose token hashes to `token_hash`, unexpired at `now_us`, with the API
    /// key it signed in with, revoked or not (the caller refuses a revoked one). One query.
    async fn console_session(&self, token_hash: &[u8; 32], now_us: i64) -> StoreResult<Option<ConsoleSessionRow>>;
    /// The `setup` session whose token hashes to `token_hash`, unexpired at `now_us`, with its setup
    /// link, revoked or expired or not (the caller refuses those), and its organization's name. One query.
    async fn setup_session(&self, token_hash: &[u8; 32], now_us: i64) -> StoreResult<Option<SetupSessionRow>>;
    /// Records that a session was used at `at_us` (never moves back). Callers throttle it.
    async fn touch_browser_session(&self, token_hash: &[u8; 32], at_us: i64) -> StoreResult<()>;
    /// Ends a session (sign-out); false when there was none.
    async fn delete_browser_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool>;
    /// Ends every session of a subject (an API key's console sessions, a setup link's sessions);
    /// returns how many.
    async fn delete_subject_sessions(&self, kind: SessionKind, subject_id: &str) -> StoreResult<u64>;
    /// Deletes up to `batch` sessions expired at `now_us`; returns how many. Safe on several nodes.
    async fn prune_browser_sessions(&self, now_us: i64, batch: i64) -> StoreResult<u64>;
    /// Creates a setup link and records `setup_link.created`; 404 when the organization does not exist.
    async fn create_setup_link(&self, by: &WriteContext, new: NewSetupLink) -> StoreResult<SetupLink>;
    /// An organization's setup links, revoked and expired ones included, newest first.
    async fn list_setup_links(&self, org_id: &str) -> StoreResult<Vec<SetupLink>>;
    async fn get_setup_link(&self, id: &str) -> StoreResult<Option<SetupLink>>;
    /// The link whose token hashes to `token_hash`, whatever its status.
    async fn setup_link_by_hash(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SetupLink>>;
    /// Revokes a link (recording `setup_link.revoked`; a no-op for a revoked one) and ends its
    /// sessions, in one transaction. `None` when it does not exist.
    async fn revoke_setup_link(&self, by: &WriteContext, id: &str) -> StoreResult<Option<SetupLink>>;
    /// Records the connection created through a link; 400 when it is not a connection of the link's
    /// organization. `None` when the link does not exist.
    async fn set_setup_link_connection(&self, id: &str, connection_id: &str) -> StoreResult<Option<SetupLink>>;
}

/// [`SessionStore`] for a [`Backend`]: the same statements and steps on both databases.
macro_rules! session_store {
    ($store:ty) => {
        impl $store {
            /// The link `id`, locked until the transaction ends (PostgreSQL; SQLite writes one at a time).
            async fn setup_link_for_update(
                tx: &mut <$store as Backend>::Tx,
                id: &str,
            ) -> StoreResult<Option<SetupLink>> {
                let sql = locking!(<$store as Backend>::DIALECT, "SELECT * FROM setup_links WHERE id = $1", "FOR UPDATE");
                let row = sqlx::query(sql).bind(id).fetch_optional(tx.conn()).await?;
                Ok(row.map(|r| setup_link_of(&r, "")))
            }
        }

        #[async_trait::async_trait]
        impl SessionStore for $store {
            async fn create_browser_session(&self, new: NewBrowserSession) -> StoreResult<BrowserSession> {
                let now = crate::sqlite::now_us();
                let session = BrowserSession {
                    token_hash: new.token_hash,
                    kind: new.kind,
                    subject_id: new.subject_id,
                    org_id: new.org_id,
                    created_us: now,
                    expires_us: new.expires_us,
                    last_seen_us: now,
                };
                let s = &session;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    sqlx::query(
                        "INSERT INTO browser_sessions (token_hash, kind, subject_id, org_id, created_us, expires_us,
                             last_seen_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(s.token_hash.as_slice())
                    .bind(s.kind.as_str())
                    .bind(&s.subject_id)
                    .bind(&s.org_id)
                    .bind(s.created_us)
                    .bind(s.expires_us)
                    .bind(s.last_seen_us)
                    .execute(tx.conn())
                    .await?;
                    if s.kind == SessionKind::Setup {
                        sqlx::query(
                            "UPDATE setup_links SET last_used_us = $1
                             WHERE id = $2 AND (last_used_us IS NULL OR last_used_us < $1)",
                        )
                        .bind(s.created_us)
                        .bind(&s.subject_id)
                        .execute(tx.conn())
                        .await?;
                    }
                    tx.commit().await
                })
                .await?;
                Ok(session)
            }

            async fn console_session(
                &self,
                token_hash: &[u8; 32],
                now_us: i64,
            ) -> StoreResult<Option<ConsoleSessionRow>> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CONSOLE_SESSION_COLUMNS} FROM browser_sessions s JOIN api_keys k ON k.id = s.subject_id
                     WHERE s.token_hash = $1 AND s.kind = 'console' AND s.expires_us > $2"
                )))
                .bind(token_hash.as_slice())
                .bind(now_us)
                .fetch_optional(self.reads())
                .await?;
                Ok(row.map(|r| ConsoleSessionRow {
                    session: session_of(&r, "s_"),
                    api_key: api_key_of(&r, "k_"),
                }))
            }

            async fn setup_session(&self, token_hash: &[u8; 32], now_us: i64) -> StoreResult<Option<SetupSessionRow>> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SETUP_SESSION_COLUMNS} FROM browser_sessions s JOIN setup_links l ON l.id = s.subject_id
                       JOIN organizations o ON o.id = l.org_id
                     WHERE s.token_hash = $1 AND s.kind = 'setup' AND s.expires_us > $2"
                )))
                .bind(token_hash.as_slice())
                .bind(now_us)
                .fetch_optional(self.reads())
                .await?;
                Ok(row.map(|r| SetupSessionRow {
                    session: session_of(&r, "s_"),
                    link: setup_link_of(&r, "l_"),
                    org_name: r.text("org_name"),
                }))
            }

            async fn touch_browser_session(&self, token_hash: &[u8; 32], at_us: i64) -> StoreResult<()> {
                let q = sqlx::query(
                    "UPDATE browser_sessions SET last_seen_us = $1 WHERE token_hash = $2 AND last_seen_us < $1",
                );
                self.write_one(q.bind(at_us).bind(token_hash.as_slice())).await?;
                Ok(())
            }

            async fn delete_browser_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool> {
                let q = sqlx::query("DELETE FROM browser_sessions WHERE token_hash = $1");
                Ok(self.write_one(q.bind(token_hash.as_slice())).await? > 0)
            }

            async fn delete_subject_sessions(&self, kind: SessionKind, subject_id: &str) -> StoreResult<u64> {
                let q = sqlx::query("DELETE FROM browser_sessions WHERE kind = $1 AND subject_id = $2");
                self.write_one(q.bind(kind.as_str()).bind(subject_id)).await
            }

            async fn prune_browser_sessions(&self, now_us: i64, batch: i64) -> StoreResult<u64> {
                // Rows another node is deleting are skipped.
                let sql = locking!(
                    <$store as Backend>::DIALECT,
                    "DELETE FROM browser_sessions WHERE token_hash IN
                       (SELECT token_hash FROM browser_sessions WHERE expires_us <= $1 LIMIT $2",
                    "FOR UPDATE SKIP LOCKED",
                    ")"
                );
                self.write_one(sqlx::query(sql).bind(now_us).bind(batch.max(0))).await
            }

            async fn create_setup_link(&self, by: &WriteContext, new: NewSetupLink) -> StoreResult<SetupLink> {
                let link = SetupLink {
                    id: uuid::Uuid::now_v7().to_string(),
                    org_id: new.org_id,
                    token_hash: new.token_hash,
                    token_prefix: new.token_prefix,
                    return_url: new.return_url,
                    created_by: by.actor.clone(),
                    connection_id: None,
                    created_us: crate::sqlite::now_us(),
                    expires_us: new.expires_us,
                    revoked_us: None,
                    last_used_us: None,
                };
                let l = &link;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    // Locks the organization against a concurrent delete until the link is in.
                    let sql = locking!(<$store as Backend>::DIALECT, "SELECT 1 FROM organizations WHERE id = $1", "FOR SHARE");
                    let exists = sqlx::query(sql).bind(&l.org_id).fetch_optional(tx.conn()).await?;
                    if exists.is_none() {
                        return Err(no_organization(&l.org_id));
                    }
                    sqlx::query(
                        "INSERT INTO setup_links (id, org_id, token_hash, token_prefix, return_url, created_by,
                             created_us, expires_us)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&l.id)
                    .bind(&l.org_id)
                    .bind(l.token_hash.as_slice())
                    .bind(&l.token_prefix)
                    .bind(&l.return_url)
                    .bind(l.created_by.to_json())
                    .bind(l.created_us)
                    .bind(l.expires_us)
                    .execute(tx.conn())
                    .await?;
                    tx.record(&by.about(&l.org_id, ""), SETUP_LINK_CREATED, None, event_data(l)).await?;
                    tx.commit().await
                })
                .await?;
                Ok(link)
            }

            async fn list_setup_links(&self, org_id: &str) -> StoreResult<Vec<SetupLink>> {
                let rows = sqlx::query("SELECT * FROM setup_links WHERE org_id = $1 ORDER BY created_us DESC, id DESC")
                    .bind(org_id)
                    .fetch_all(self.reads())
                    .await?;
                Ok(rows.iter().map(|r| setup_link_of(r, "")).collect())
            }

            async fn get_setup_link(&self, id: &str) -> StoreResult<Option<SetupLink>> {
                let row = sqlx::query("SELECT * FROM setup_links WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.map(|r| setup_link_of(&r, "")))
            }

            async fn setup_link_by_hash(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SetupLink>> {
                let row = sqlx::query("SELECT * FROM setup_links WHERE token_hash = $1")
                    .bind(token_hash.as_slice())
                    .fetch_optional(self.reads())
                    .await?;
                Ok(row.map(|r| setup_link_of(&r, "")))
            }

            async fn revoke_setup_link(&self, by: &WriteContext, id: &str) -> StoreResult<Option<SetupLink>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut link) = Self::setup_link_for_update(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    if link.revoked_us.is_none() {
                        let now = crate::sqlite::now_us();
                        sqlx::query("UPDATE setup_links SET revoked_us = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(tx.conn())
                            .await?;
                        link.revoked_us = Some(now);
                        tx.record(&by.about(&link.org_id, ""), SETUP_LINK_REVOKED, None, event_data(&link))
                            .await?;
                    }
                    // Also for a link revoked before: no session of it may outlive this call.
                    sqlx::query("DELETE FROM browser_sessions WHERE kind = 'setup' AND subject_id = $1")
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await?;
                    Ok(Some(link))
                })
                .await
            }

            async fn set_setup_link_connection(&self, id: &str, connection_id: &str) -> StoreResult<Option<SetupLink>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut link) = Self::setup_link_for_update(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    let sql = locking!(
                        <$store as Backend>::DIALECT,
                        "SELECT org_id FROM scim_connections WHERE id = $1",
                        "FOR SHARE"
                    );
                    let org: Option<String> =
                        sqlx::query_scalar(sql).bind(connection_id).fetch_optional(tx.conn()).await?;
                    if org.as_deref() != Some(link.org_id.as_str()) {
                        return Err(connection_not_in_org(connection_id));
                    }
                    sqlx::query("UPDATE setup_links SET connection_id = $1 WHERE id = $2")
                        .bind(connection_id)
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await?;
                    link.connection_id = Some(connection_id.to_string());
                    Ok(Some(link))
                })
                .await
            }
        }
    };
}

session_store!(crate::sqlite::SqliteStore);
session_store!(crate::postgres::PostgresStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_status() {
        let mut l = SetupLink {
            id: "l".into(),
            org_id: "o".into(),
            token_hash: [0; 32],
            token_prefix: "rc_setup_abcd".into(),
            return_url: None,
            created_by: Actor::Cli,
            connection_id: None,
            created_us: 0,
            expires_us: 100,
            revoked_us: None,
            last_used_us: None,
        };
        assert_eq!(l.status(99), SetupLinkStatus::Active);
        assert_eq!(l.status(100), SetupLinkStatus::Expired);
        l.revoked_us = Some(50);
        assert_eq!(l.status(10), SetupLinkStatus::Revoked);
        assert_eq!(l.status(1000), SetupLinkStatus::Revoked);
        let data = event_data(&l);
        assert_eq!(data["setup_link_id"], "l");
        assert_eq!(data["expires_at"], "1970-01-01T00:00:00.0001Z");
        assert!(!data.to_string().contains("token_hash"));
    }

    #[test]
    fn kinds_round_trip() {
        for k in [SessionKind::Console, SessionKind::Setup] {
            assert_eq!(k.as_str().parse::<SessionKind>().unwrap(), k);
        }
        assert!("other".parse::<SessionKind>().is_err());
    }
}
