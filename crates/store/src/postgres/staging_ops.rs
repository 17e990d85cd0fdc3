//! PostgreSQL: staging connections and their match reports ([`crate::staging`]).
//!
//! Staging and going live change the connection's row with an `UPDATE` (a row lock that the
//! resource writes' foreign keys do not wait for) before anything else; the statement that writes a
//! transaction's events waits for it when the connection was in staging (see [`WriteTx::commit`]),
//! so going live sees every write committed before it, and every later write reaches the log.

use super::*;
use crate::directory_sync::DirectorySql;
use crate::staging::{
    self, MatchAccount, MatchUpload, MatchUser, StagingOutcome, StagingSql, StagingStore, activation_events,
    group_roles,
};

fn parse_doc(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn connection_plain(tx: &mut WriteTx, id: &str) -> StoreResult<Option<Connection>> {
    let row = sqlx::query("SELECT * FROM scim_connections WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(row.as_ref().map(conn_of))
}

/// Sets or clears `staged_us` (`Some`: stage at that time) when it is not so already; the row as
/// changed, or `None` when nothing changed.
async fn flip(tx: &mut WriteTx, id: &str, stage_at: Option<i64>) -> StoreResult<Option<Connection>> {
    let row = match stage_at {
        Some(at) => {
            sqlx::query("UPDATE scim_connections SET staged_us = $1 WHERE id = $2 AND staged_us IS NULL RETURNING *")
                .bind(at)
                .bind(id)
                .fetch_optional(tx.conn())
                .await?
        }
        None => {
            sqlx::query(
                "UPDATE scim_connections SET staged_us = NULL WHERE id = $1 AND staged_us IS NOT NULL RETURNING *",
            )
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
        }
    };
    Ok(row.as_ref().map(conn_of))
}

impl PostgresStore {
    async fn stage_once(&self, ctx: &WriteContext, id: &str) -> StoreResult<Option<StagingOutcome>> {
        let mut tx = self.begin_write().await?;
        let held: i64 = sqlx::query_scalar(AssertSqlSafe(DirectorySql::pg(StagingSql::HELD)))
            .bind(id)
            .fetch_one(tx.conn())
            .await?;
        if held > 0 {
            return Ok(connection_plain(&mut tx, id)
                .await?
                .map(|_| StagingOutcome::GuardHolds(held)));
        }
        let Some(conn) = flip(&mut tx, id, Some(now_us())).await? else {
            return Ok(connection_plain(&mut tx, id).await?.map(StagingOutcome::Already));
        };
        let (users, groups): (i64, i64) = sqlx::query_as(AssertSqlSafe(DirectorySql::pg(StagingSql::COUNTS)))
            .bind(id)
            .bind(id)
            .fetch_one(tx.conn())
            .await?;
        tx.event(
            &ctx.about(&conn.org_id, &conn.id),
            events::CONNECTION_STAGED,
            None,
            staging::staged_data(users, groups),
        );
        tx.commit().await?;
        Ok(Some(StagingOutcome::Done(conn, None)))
    }

    async fn activate_once(&self, ctx: &WriteContext, id: &str) -> StoreResult<Option<StagingOutcome>> {
        let mut tx = self.begin_write().await?;
        // The row first: writes of this connection still to record their events wait from here.
        let Some(conn) = flip(&mut tx, id, None).await? else {
            return Ok(connection_plain(&mut tx, id).await?.map(StagingOutcome::Already));
        };
        let users: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(staging::resources_sql(true, "User")))
            .bind(id)
            .fetch_all(tx.conn())
            .await?;
        let groups: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(staging::resources_sql(true, "Group")))
            .bind(id)
            .fetch_all(tx.conn())
            .await?;
        let members: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(DirectorySql::pg(StagingSql::MEMBERS)))
            .bind(id)
            .fetch_all(tx.conn())
            .await?;
        let roles: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(DirectorySql::pg(StagingSql::ROLES)))
            .bind(id)
            .fetch_all(tx.conn())
            .await?;
        let workspaces: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(DirectorySql::pg(StagingSql::WORKSPACES)))
            .bind(id)
            .fetch_all(tx.conn())
            .await?;
        let (snapshot, evs) = activation_events(
            users.into_iter().map(|(id, d)| (id, parse_doc(d))).collect(),
            groups.into_iter().map(|(id, d)| (id, parse_doc(d))).collect(),
            members,
            group_roles(roles),
            group_roles(workspaces),
        );
        let ctx = ctx.about(&conn.org_id, &conn.id);
        for (kind, resource, data) in evs {
            tx.event(&ctx, kind, resource.as_ref().map(|(k, id)| (*k, id.as_str())), data);
        }
        tx.commit().await?;
        Ok(Some(StagingOutcome::Done(conn, Some(snapshot))))
    }

    async fn set_match_accounts_once(
        &self,
        ctx: &WriteContext,
        id: &str,
        accounts: &[MatchAccount],
    ) -> StoreResult<Option<MatchUpload>> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_plain(&mut tx, id).await? else {
            return Ok(None);
        };
        let now = now_us();
        sqlx::query(StagingSql::PUT_REPORT_POSTGRES)
            .bind(id)
            .bind(serde_json::to_string(accounts).expect("accounts serialize"))
            .bind(accounts.len() as i32)
            .bind(now)
            .execute(tx.conn())
            .await?;
        tx.event(
            &ctx.about(&conn.org_id, &conn.id),
            events::CONNECTION_MATCH_REPORT_UPLOADED,
            None,
            json!({"accounts": accounts.len()}),
        );
        tx.commit().await?;
        Ok(Some(MatchUpload {
            connection_id: conn.id,
            accounts: accounts.to_vec(),
            uploaded_us: now,
        }))
    }

    async fn delete_match_accounts_once(&self, ctx: &WriteContext, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_plain(&mut tx, id).await? else {
            return Ok(false);
        };
        let deleted = sqlx::query(AssertSqlSafe(DirectorySql::pg(StagingSql::DELETE_REPORT)))
            .bind(id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        tx.event(
            &ctx.about(&conn.org_id, &conn.id),
            events::CONNECTION_MATCH_REPORT_DELETED,
            None,
            json!({}),
        );
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl StagingStore for PostgresStore {
    async fn stage_connection(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<Option<StagingOutcome>> {
        self.retrying(|| self.stage_once(ctx, connection_id)).await
    }

    async fn activate_connection(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
    ) -> StoreResult<Option<StagingOutcome>> {
        self.retrying(|| self.activate_once(ctx, connection_id)).await
    }

    async fn set_match_accounts(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        accounts: &[MatchAccount],
    ) -> StoreResult<Option<MatchUpload>> {
        self.retrying(|| self.set_match_accounts_once(ctx, connection_id, accounts))
            .await
    }

    async fn match_accounts(&self, connection_id: &str) -> StoreResult<Option<MatchUpload>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT accounts::text, uploaded_us FROM match_reports WHERE connection_id = $1")
                .bind(connection_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(accounts, uploaded_us)| MatchUpload {
            connection_id: connection_id.to_string(),
            accounts: serde_json::from_str(&accounts).unwrap_or_default(),
            uploaded_us,
        }))
    }

    async fn delete_match_accounts(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<bool> {
        self.retrying(|| self.delete_match_accounts_once(ctx, connection_id))
            .await
    }

    async fn match_users(&self, connection_id: &str) -> StoreResult<Vec<MatchUser>> {
        // One snapshot for the three reads.
        let mut rx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *rx)
            .await?;
        let users: Vec<staging::UserRow> = sqlx::query_as(AssertSqlSafe(staging::match_users_sql(true)))
            .bind(connection_id)
            .fetch_all(&mut *rx)
            .await?;
        let emails: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(DirectorySql::pg(StagingSql::EMAILS)))
            .bind(connection_id)
            .fetch_all(&mut *rx)
            .await?;
        let roles: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(DirectorySql::pg(StagingSql::ROLES_BY_PK)))
            .bind(connection_id)
            .fetch_all(&mut *rx)
            .await?;
        rx.commit().await?;
        Ok(staging::match_users(users, emails, roles))
    }
}
