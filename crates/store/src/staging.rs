//! Staging connections: shadow mode before go-live (issue #19).
//!
//! A connection in staging (`scim_connections.staged_us` set) answers its identity provider and
//! stores every change exactly as a live one, but the application hears nothing of it: the events
//! about its users and groups are not written to the log at all (so no path that reads the log,
//! the Events API, webhooks or an export, can leak them), and the directory and the access check
//! leave its users out unless asked ([`crate::DirectoryQuery::include_staging`]). The decision is
//! taken where the events are written, in the write's transaction:
//!
//! - SQLite: [`crate::sqlite`]'s one `insert_events` looks the connection up (the writer is alone);
//! - PostgreSQL: the statement that writes a transaction's events locks the staging connections it
//!   names (`FOR SHARE`, only rows still staged) before it takes the events lock, and leaves their
//!   user and group events out. Going live updates the connection's row first, so a write racing
//!   with it either commits first (its changes are in the snapshot, its events left out) or waits
//!   for it (its changes are after the snapshot, its events in the log). The one-statement fast
//!   paths step aside for a staging connection.
//!
//! Going live ([`activation_events`]) clears `staged_us` and, in the same transaction, writes the
//! connection's current state as ordinary events after a `connection.activated` event: every
//! user (`user.created`), then every group (`group.created`), then every membership
//! (`group.member_added`), then every user's roles (`user.roles_changed` from none), each marked
//! `"reason": "connection_activated"`. A consumer that applies them in order holds the directory as
//! it was at that moment, and the changes after it follow as usual.
//!
//! The match report compares the accounts the application already has ([`MatchAccount`], uploaded
//! per connection) with the connection's users ([`MatchUser`]); the comparison itself is the
//! server's (it is recomputed on every read, so it follows the identity provider).

use crate::StoreResult;
use crate::backend::{Backend, Tx};
use crate::directory::UserStatus;
use crate::events;
use crate::model::{Connection, WriteContext};
use crate::rows::conn_of;
use crate::sql::Dialect;
use crate::sqlite::now_us;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

/// The most accounts one upload may hold.
pub const MAX_MATCH_ACCOUNTS: usize = 10_000;
/// The longest e-mail, external id or role key of an uploaded account.
pub const MAX_FIELD_LEN: usize = 512;
/// The most roles one uploaded account may list.
pub const MAX_ACCOUNT_ROLES: usize = 100;

/// An account the application already has, as uploaded for the match report: an e-mail address,
/// an external id (the identity provider's `externalId`), or both; with its current roles when the
/// application wants them compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `None`: roles not compared for this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

impl MatchAccount {
    /// Trims the fields (empty ones become absent) and checks them; `n` is its place, from 1.
    pub fn normalized(mut self, n: usize) -> Result<MatchAccount, String> {
        let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        self.email = clean(self.email);
        self.external_id = clean(self.external_id);
        if self.email.is_none() && self.external_id.is_none() {
            return Err(format!("account {n} has neither an email nor an external_id"));
        }
        if let Some(e) = &self.email
            && !e.contains('@')
        {
            return Err(format!("account {n}: \"{e}\" is not an e-mail address"));
        }
        for v in [&self.email, &self.external_id].into_iter().flatten() {
            if v.chars().count() > MAX_FIELD_LEN {
                return Err(format!(
                    "account {n}: a field is longer than {MAX_FIELD_LEN} characters"
                ));
            }
        }
        if let Some(roles) = &mut self.roles {
            let mut keys: Vec<String> = roles
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect();
            keys.sort();
            keys.dedup();
            if keys.len() > MAX_ACCOUNT_ROLES {
                return Err(format!("account {n} lists more than {MAX_ACCOUNT_ROLES} roles"));
            }
            if keys.iter().any(|k| k.chars().count() > MAX_FIELD_LEN) {
                return Err(format!("account {n}: a role is longer than {MAX_FIELD_LEN} characters"));
            }
            *roles = keys;
        }
        Ok(self)
    }
}

/// Checks and normalizes an upload ([`MatchAccount::normalized`], at most [`MAX_MATCH_ACCOUNTS`]).
pub fn normalize_accounts(accounts: Vec<MatchAccount>) -> Result<Vec<MatchAccount>, String> {
    if accounts.len() > MAX_MATCH_ACCOUNTS {
        return Err(format!(
            "{} accounts: one upload holds at most {MAX_MATCH_ACCOUNTS}",
            accounts.len()
        ));
    }
    accounts
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.normalized(i + 1))
        .collect()
}

/// The accounts uploaded for a connection's match report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchUpload {
    pub connection_id: String,
    pub accounts: Vec<MatchAccount>,
    pub uploaded_us: i64,
}

/// A user of a connection (not deleted) as the match report compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchUser {
    pub id: String,
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    /// Its e-mail addresses, folded.
    pub emails: Vec<String>,
    pub status: UserStatus,
    /// Effective role keys, sorted.
    pub roles: Vec<String>,
}

/// What went to the application when a connection went live (the data of `connection.activated`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
    /// Users with at least one role (a `user.roles_changed` each).
    pub users_with_roles: u64,
    /// Users in at least one workspace (a `user.workspaces_changed` each).
    pub users_with_workspaces: u64,
}

/// What staging or going live did.
#[derive(Debug, Clone, PartialEq)]
pub enum StagingOutcome {
    /// Done: the connection as it is now, and (going live) what was sent.
    Done(crate::model::Connection, Option<Snapshot>),
    /// Nothing to do: already in staging (when staging) or live (when going live).
    Already(crate::model::Connection),
    /// Staging refused: the deprovisioning guard holds this many events (release or discard first).
    GuardHolds(i64),
}

/// `reason` of the events of a go-live snapshot.
pub const ACTIVATION_REASON: &str = "connection_activated";

/// The snapshot's events, in the order they are written: `(type, resource, data)`.
pub type SnapshotEvent = (&'static str, Option<(crate::model::ResourceKind, String)>, Value);

/// The events of going live, from the connection's current state read in the transaction:
/// `users` and `groups` as (id, stored document), `members` as (group id, member id) by group,
/// `roles` as (user id, role keys sorted).
pub fn activation_events(
    users: Vec<(String, Value)>,
    groups: Vec<(String, Value)>,
    members: Vec<(String, String)>,
    roles: Vec<(String, Vec<String>)>,
    workspaces: Vec<(String, Vec<String>)>,
) -> (Snapshot, Vec<SnapshotEvent>) {
    use crate::model::ResourceKind;
    let snapshot = Snapshot {
        users: users.len() as u64,
        groups: groups.len() as u64,
        memberships: members.len() as u64,
        users_with_roles: roles.len() as u64,
        users_with_workspaces: workspaces.len() as u64,
    };
    let mut out: Vec<SnapshotEvent> =
        Vec::with_capacity(1 + users.len() + groups.len() + members.len() + roles.len() + workspaces.len());
    out.push((events::CONNECTION_ACTIVATED, None, json!(snapshot)));
    for (id, doc) in users {
        out.push((
            events::USER_CREATED,
            Some((ResourceKind::User, id)),
            json!({"attributes": doc, "reason": ACTIVATION_REASON}),
        ));
    }
    for (id, doc) in groups {
        out.push((
            events::GROUP_CREATED,
            Some((ResourceKind::Group, id)),
            json!({"attributes": doc, "reason": ACTIVATION_REASON}),
        ));
    }
    for (group, member) in members {
        out.push((
            events::GROUP_MEMBER_ADDED,
            Some((ResourceKind::Group, group)),
            json!({"member": member, "reason": ACTIVATION_REASON}),
        ));
    }
    for (user, keys) in roles {
        out.push((
            events::USER_ROLES_CHANGED,
            Some((ResourceKind::User, user)),
            json!({"before": [], "after": keys, "added": keys, "removed": [], "reason": ACTIVATION_REASON}),
        ));
    }
    for (user, keys) in workspaces {
        out.push((
            events::USER_WORKSPACES_CHANGED,
            Some((ResourceKind::User, user)),
            json!({"before": [], "after": keys, "added": keys, "removed": [], "reason": ACTIVATION_REASON}),
        ));
    }
    (snapshot, out)
}

/// Groups `(user id, role key)` rows (ordered by user) into one entry per user.
pub fn group_roles(rows: Vec<(String, String)>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (user, key) in rows {
        match out.last_mut() {
            Some((u, keys)) if *u == user => keys.push(key),
            _ => out.push((user, vec![key])),
        }
    }
    for (_, keys) in &mut out {
        keys.sort();
        keys.dedup();
    }
    out
}

/// The data of `connection.staged`.
pub fn staged_data(users: i64, groups: i64) -> Value {
    json!({"users": users, "groups": groups})
}

/// Staging connections and their match reports, on both databases.
#[async_trait::async_trait]
pub trait StagingStore {
    /// Puts a live connection into staging, recording `connection.staged`. `None`: no connection.
    async fn stage_connection(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<Option<StagingOutcome>>;
    /// Takes a staging connection live: clears staging and writes its current state as events
    /// ([`activation_events`]), in one transaction. `None`: no connection.
    async fn activate_connection(&self, ctx: &WriteContext, connection_id: &str)
    -> StoreResult<Option<StagingOutcome>>;
    /// Replaces the accounts uploaded for a connection's match report (normalized by the caller),
    /// recording `connection.match_report_uploaded`. `None`: no connection.
    async fn set_match_accounts(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        accounts: &[MatchAccount],
    ) -> StoreResult<Option<MatchUpload>>;
    /// The accounts uploaded for a connection, if any.
    async fn match_accounts(&self, connection_id: &str) -> StoreResult<Option<MatchUpload>>;
    /// Forgets the uploaded accounts, recording `connection.match_report_deleted`; false when there
    /// were none.
    async fn delete_match_accounts(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<bool>;
    /// The connection's users that are not deleted, with their e-mails and roles, by row key.
    async fn match_users(&self, connection_id: &str) -> StoreResult<Vec<MatchUser>>;
}

/// The statement reading a staging connection's users (`match_users`): row key, id, userName,
/// externalId, active.
fn match_users_sql(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => {
            "SELECT pk, id, doc->>'userName' AS user_name, external_id, active IS NOT false AS active FROM resources
             WHERE connection_id = $1 AND kind = 'User' AND deleted_us IS NULL ORDER BY pk"
        }
        Dialect::Sqlite => {
            "SELECT pk, id, json_extract(doc, '$.userName') AS user_name, external_id, coalesce(active, 1) <> 0 AS active
             FROM resources WHERE connection_id = $1 AND kind = 'User' AND deleted_us IS NULL ORDER BY pk"
        }
    }
}

/// Stores a connection's match report (its accounts: JSON text, `jsonb` on PostgreSQL).
fn put_report_sql(d: Dialect) -> String {
    let accounts = match d {
        Dialect::Postgres => "$2::jsonb",
        Dialect::Sqlite => "$2",
    };
    format!(
        "INSERT INTO match_reports (connection_id, accounts, account_count, uploaded_us) VALUES ($1, {accounts}, $3, $4)
         ON CONFLICT (connection_id) DO UPDATE SET accounts = excluded.accounts,
           account_count = excluded.account_count, uploaded_us = excluded.uploaded_us"
    )
}

fn parse_doc(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// [`StagingStore`] for a [`Backend`]. Staging and going live change the connection's row with an
/// `UPDATE` (on PostgreSQL a row lock that the resource writes' foreign keys do not wait for)
/// before anything else; the statement that writes a transaction's events waits for it when the
/// connection was in staging, so going live sees every write committed before it, and every later
/// write reaches the log.
macro_rules! staging_store {
    ($store:ty) => {
        impl $store {
            async fn connection_plain(tx: &mut <$store as Backend>::Tx, id: &str) -> StoreResult<Option<Connection>> {
                let row = sqlx::query("SELECT * FROM scim_connections WHERE id = $1")
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
                Ok(row.as_ref().map(conn_of))
            }

            /// Sets or clears `staged_us` (`Some`: stage at that time) when it is not so already; the
            /// row as changed, or `None` when nothing changed.
            async fn flip(
                tx: &mut <$store as Backend>::Tx,
                id: &str,
                stage_at: Option<i64>,
            ) -> StoreResult<Option<Connection>> {
                let q = match stage_at {
                    Some(at) => sqlx::query(
                        "UPDATE scim_connections SET staged_us = $1 WHERE id = $2 AND staged_us IS NULL RETURNING *",
                    )
                    .bind(at),
                    None => sqlx::query(
                        "UPDATE scim_connections SET staged_us = NULL WHERE id = $1 AND staged_us IS NOT NULL RETURNING *",
                    ),
                };
                let row = q.bind(id).fetch_optional(tx.conn()).await?;
                Ok(row.as_ref().map(conn_of))
            }

            /// A connection's rows of `(id, text)` read by `sql` in the transaction.
            async fn pairs(
                tx: &mut <$store as Backend>::Tx,
                sql: &'static str,
                id: &str,
            ) -> StoreResult<Vec<(String, String)>> {
                Ok(sqlx::query_as(sql).bind(id).fetch_all(tx.conn()).await?)
            }
        }

        #[async_trait::async_trait]
        impl StagingStore for $store {
            async fn stage_connection(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
            ) -> StoreResult<Option<StagingOutcome>> {
                let id = connection_id;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM held_events WHERE connection_id = $1")
                        .bind(id)
                        .fetch_one(tx.conn())
                        .await?;
                    if held > 0 {
                        return Ok(Self::connection_plain(&mut tx, id)
                            .await?
                            .map(|_| StagingOutcome::GuardHolds(held)));
                    }
                    let Some(conn) = Self::flip(&mut tx, id, Some(now_us())).await? else {
                        return Ok(Self::connection_plain(&mut tx, id).await?.map(StagingOutcome::Already));
                    };
                    let (users, groups): (i64, i64) = sqlx::query_as(
                        "SELECT
                           (SELECT count(*) FROM resources WHERE connection_id = $1 AND kind = 'User' AND deleted_us IS NULL),
                           (SELECT count(*) FROM resources WHERE connection_id = $1 AND kind = 'Group' AND deleted_us IS NULL)",
                    )
                    .bind(id)
                    .fetch_one(tx.conn())
                    .await?;
                    let ctx = ctx.about(&conn.org_id, &conn.id);
                    tx.record(&ctx, events::CONNECTION_STAGED, None, staged_data(users, groups))
                        .await?;
                    tx.commit().await?;
                    Ok(Some(StagingOutcome::Done(conn, None)))
                })
                .await
            }

            async fn activate_connection(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
            ) -> StoreResult<Option<StagingOutcome>> {
                let id = connection_id;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    // The row first: writes of this connection still to record their events wait from here.
                    let Some(conn) = Self::flip(&mut tx, id, None).await? else {
                        return Ok(Self::connection_plain(&mut tx, id).await?.map(StagingOutcome::Already));
                    };
                    let users = Self::pairs(
                        &mut tx,
                        "SELECT id, CAST(doc AS TEXT) FROM resources
                         WHERE connection_id = $1 AND kind = 'User' AND deleted_us IS NULL ORDER BY pk",
                        id,
                    )
                    .await?;
                    let groups = Self::pairs(
                        &mut tx,
                        "SELECT id, CAST(doc AS TEXT) FROM resources
                         WHERE connection_id = $1 AND kind = 'Group' AND deleted_us IS NULL ORDER BY pk",
                        id,
                    )
                    .await?;
                    let members = Self::pairs(
                        &mut tx,
                        "SELECT g.id, m.id FROM resources g
                         JOIN group_members gm ON gm.connection_id = g.connection_id AND gm.group_pk = g.pk JOIN resources m ON m.pk = gm.member_pk
                         WHERE g.connection_id = $1 AND g.kind = 'Group' AND g.deleted_us IS NULL
                           AND m.deleted_us IS NULL
                         ORDER BY g.pk, m.pk",
                        id,
                    )
                    .await?;
                    let roles = Self::pairs(
                        &mut tx,
                        "SELECT r.id, ro.key FROM resources r
                         JOIN user_roles ur ON ur.connection_id = r.connection_id AND ur.user_pk = r.pk JOIN roles ro ON ro.id = ur.role_id
                         WHERE r.connection_id = $1 AND r.kind = 'User' AND r.deleted_us IS NULL ORDER BY r.pk, ro.key",
                        id,
                    )
                    .await?;
                    // The workspaces of the connection's live users, by user, as `(user id, workspace key)`.
                    let workspaces = Self::pairs(
                        &mut tx,
                        "SELECT r.id, w.key FROM resources r
                         JOIN user_workspaces uw ON uw.connection_id = r.connection_id AND uw.user_pk = r.pk JOIN workspaces w ON w.id = uw.workspace_id
                         WHERE r.connection_id = $1 AND r.kind = 'User' AND r.deleted_us IS NULL ORDER BY r.pk, w.key",
                        id,
                    )
                    .await?;
                    let (snapshot, evs) = activation_events(
                        users.into_iter().map(|(id, d)| (id, parse_doc(d))).collect(),
                        groups.into_iter().map(|(id, d)| (id, parse_doc(d))).collect(),
                        members,
                        group_roles(roles),
                        group_roles(workspaces),
                    );
                    tx.record_all(&ctx.about(&conn.org_id, &conn.id), evs).await?;
                    tx.commit().await?;
                    Ok(Some(StagingOutcome::Done(conn, Some(snapshot))))
                })
                .await
            }

            async fn set_match_accounts(
                &self,
                ctx: &WriteContext,
                connection_id: &str,
                accounts: &[MatchAccount],
            ) -> StoreResult<Option<MatchUpload>> {
                let id = connection_id;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(conn) = Self::connection_plain(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    let now = now_us();
                    sqlx::query(AssertSqlSafe(put_report_sql(<$store as Backend>::DIALECT)))
                        .bind(id)
                        .bind(serde_json::to_string(accounts).expect("accounts serialize"))
                        .bind(accounts.len() as i32)
                        .bind(now)
                        .execute(tx.conn())
                        .await?;
                    tx.record(
                        &ctx.about(&conn.org_id, &conn.id),
                        events::CONNECTION_MATCH_REPORT_UPLOADED,
                        None,
                        json!({"accounts": accounts.len()}),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(Some(MatchUpload {
                        connection_id: conn.id,
                        accounts: accounts.to_vec(),
                        uploaded_us: now,
                    }))
                })
                .await
            }

            async fn match_accounts(&self, connection_id: &str) -> StoreResult<Option<MatchUpload>> {
                let row: Option<(String, i64)> = sqlx::query_as(
                    "SELECT CAST(accounts AS TEXT), uploaded_us FROM match_reports WHERE connection_id = $1",
                )
                .bind(connection_id)
                .fetch_optional(self.reads())
                .await?;
                Ok(row.map(|(accounts, uploaded_us)| MatchUpload {
                    connection_id: connection_id.to_string(),
                    accounts: serde_json::from_str(&accounts).unwrap_or_default(),
                    uploaded_us,
                }))
            }

            async fn delete_match_accounts(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<bool> {
                let id = connection_id;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(conn) = Self::connection_plain(&mut tx, id).await? else {
                        return Ok(false);
                    };
                    let deleted = sqlx::query("DELETE FROM match_reports WHERE connection_id = $1")
                        .bind(id)
                        .execute(tx.conn())
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        return Ok(false);
                    }
                    tx.record(
                        &ctx.about(&conn.org_id, &conn.id),
                        events::CONNECTION_MATCH_REPORT_DELETED,
                        None,
                        json!({}),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn match_users(&self, connection_id: &str) -> StoreResult<Vec<MatchUser>> {
                // One snapshot for the three reads.
                let mut rx = self.reads().begin().await?;
                if <$store as Backend>::DIALECT == Dialect::Postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .execute(&mut *rx)
                        .await?;
                }
                let users: Vec<UserRow> = sqlx::query_as(match_users_sql(<$store as Backend>::DIALECT))
                    .bind(connection_id)
                    .fetch_all(&mut *rx)
                    .await?;
                let emails: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT e.resource_pk, e.value_ci FROM resource_emails e
                     JOIN resources r ON r.pk = e.resource_pk
                     WHERE e.connection_id = $1 AND r.kind = 'User' AND r.deleted_us IS NULL ORDER BY e.resource_pk",
                )
                .bind(connection_id)
                .fetch_all(&mut *rx)
                .await?;
                let roles: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT ur.user_pk, ro.key FROM resources r
                     JOIN user_roles ur ON ur.connection_id = r.connection_id AND ur.user_pk = r.pk JOIN roles ro ON ro.id = ur.role_id
                     WHERE r.connection_id = $1 AND r.kind = 'User' AND r.deleted_us IS NULL ORDER BY ur.user_pk, ro.key",
                )
                .bind(connection_id)
                .fetch_all(&mut *rx)
                .await?;
                rx.commit().await?;
                Ok(match_users(users, emails, roles))
            }
        }
    };
}

staging_store!(crate::sqlite::SqliteStore);
staging_store!(crate::postgres::PostgresStore);

/// A row of [`match_users_sql`]: row key, id, userName, externalId, active.
type UserRow = (i64, String, Option<String>, Option<String>, bool);

/// Puts the users, their e-mails and roles (rows by user row key) together.
fn match_users(users: Vec<UserRow>, emails: Vec<(i64, String)>, roles: Vec<(i64, String)>) -> Vec<MatchUser> {
    use std::collections::HashMap;
    let mut by_pk: HashMap<i64, (Vec<String>, Vec<String>)> = HashMap::new();
    for (pk, e) in emails {
        by_pk.entry(pk).or_default().0.push(e);
    }
    for (pk, r) in roles {
        by_pk.entry(pk).or_default().1.push(r);
    }
    users
        .into_iter()
        .map(|(pk, id, user_name, external_id, active)| {
            let (mut emails, mut roles) = by_pk.remove(&pk).unwrap_or_default();
            emails.sort();
            emails.dedup();
            roles.sort();
            roles.dedup();
            MatchUser {
                id,
                user_name,
                external_id,
                emails,
                status: if active {
                    UserStatus::Active
                } else {
                    UserStatus::Deactivated
                },
                roles,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_checked_and_normalized() {
        let a = MatchAccount {
            email: Some("  Ann@Example.com ".into()),
            external_id: Some(" ".into()),
            roles: Some(vec!["b".into(), " a ".into(), "b".into(), "".into()]),
        }
        .normalized(1)
        .unwrap();
        assert_eq!(a.email.as_deref(), Some("Ann@Example.com"));
        assert_eq!(a.external_id, None);
        assert_eq!(a.roles, Some(vec!["a".to_string(), "b".to_string()]));
        let none = MatchAccount {
            email: None,
            external_id: Some("".into()),
            roles: None,
        };
        assert!(none.normalized(7).unwrap_err().contains("account 7"));
        let bad = MatchAccount {
            email: Some("not-an-address".into()),
            external_id: None,
            roles: None,
        };
        assert!(bad.normalized(1).is_err());
        let many = vec![
            MatchAccount {
                email: None,
                external_id: Some("x".into()),
                roles: None
            };
            MAX_MATCH_ACCOUNTS + 1
        ];
        assert!(normalize_accounts(many).is_err());
        assert!(serde_json::from_str::<MatchAccount>(r#"{"mail": "a@b"}"#).is_err());
    }

    #[test]
    fn activation_events_come_in_an_order_a_consumer_can_apply() {
        let (snap, evs) = activation_events(
            vec![
                ("u1".into(), json!({"userName": "a"})),
                ("u2".into(), json!({"userName": "b"})),
            ],
            vec![("g1".into(), json!({"displayName": "Eng"}))],
            vec![("g1".into(), "u2".into())],
            group_roles(vec![("u2".into(), "viewer".into()), ("u2".into(), "admin".into())]),
            group_roles(vec![("u1".into(), "group:g1".into())]),
        );
        assert_eq!(
            snap,
            Snapshot {
                users: 2,
                groups: 1,
                memberships: 1,
                users_with_roles: 1,
                users_with_workspaces: 1,
            }
        );
        let kinds: Vec<&str> = evs.iter().map(|e| e.0).collect();
        assert_eq!(
            kinds,
            [
                events::CONNECTION_ACTIVATED,
                events::USER_CREATED,
                events::USER_CREATED,
                events::GROUP_CREATED,
                events::GROUP_MEMBER_ADDED,
                events::USER_ROLES_CHANGED,
                events::USER_WORKSPACES_CHANGED
            ]
        );
        assert_eq!(evs[5].2["after"], json!(["admin", "viewer"]));
        assert_eq!(evs[4].2["member"], json!("u2"));
        assert!(evs[1..].iter().all(|e| e.2["reason"] == ACTIVATION_REASON));
    }
}
