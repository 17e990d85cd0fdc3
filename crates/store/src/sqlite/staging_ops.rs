//! SQLite: staging connections and their match reports ([`crate::staging`]).

use super::*;
use crate::staging::{
    self, MatchAccount, MatchUpload, MatchUser, StagingOutcome, StagingSql, StagingStore, activation_events,
    group_roles,
};

/// Whether connection `id` is in staging, read in the writer's transaction (the writer is alone,
/// so this is the state the write commits with).
pub(super) fn is_staged(c: &rusqlite::Connection, id: &str) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT staged_us IS NOT NULL FROM scim_connections WHERE id = ?")?
            .query_row([id], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false),
    )
}

fn parse_doc(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[async_trait]
impl StagingStore for SqliteStore {
    async fn stage_connection(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<Option<StagingOutcome>> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(None);
        };
        if conn.staged_us.is_some() {
            return Ok(Some(StagingOutcome::Already(conn)));
        }
        let held: i64 = sqlx::query_scalar(StagingSql::HELD)
            .bind(connection_id)
            .fetch_one(&mut *tx)
            .await?;
        if held > 0 {
            return Ok(Some(StagingOutcome::GuardHolds(held)));
        }
        let now = now_us();
        sqlx::query(StagingSql::STAGE)
            .bind(now)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        let (users, groups): (i64, i64) = sqlx::query_as(StagingSql::COUNTS)
            .bind(connection_id)
            .bind(connection_id)
            .fetch_one(&mut *tx)
            .await?;
        let ctx = ctx.about(&conn.org_id, &conn.id);
        insert_event(
            &mut tx,
            &ctx,
            events::CONNECTION_STAGED,
            None,
            staging::staged_data(users, groups),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(StagingOutcome::Done(
            Connection {
                staged_us: Some(now),
                ..conn
            },
            None,
        )))
    }

    async fn activate_connection(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
    ) -> StoreResult<Option<StagingOutcome>> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(None);
        };
        if conn.staged_us.is_none() {
            return Ok(Some(StagingOutcome::Already(conn)));
        }
        sqlx::query(StagingSql::ACTIVATE)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        let read = |kind: &str| staging::resources_sql(false, kind);
        let users: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(read("User")))
            .bind(connection_id)
            .fetch_all(&mut *tx)
            .await?;
        let groups: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(read("Group")))
            .bind(connection_id)
            .fetch_all(&mut *tx)
            .await?;
        let members: Vec<(String, String)> = sqlx::query_as(StagingSql::MEMBERS)
            .bind(connection_id)
            .fetch_all(&mut *tx)
            .await?;
        let roles: Vec<(String, String)> = sqlx::query_as(StagingSql::ROLES)
            .bind(connection_id)
            .fetch_all(&mut *tx)
            .await?;
        let workspaces: Vec<(String, String)> = sqlx::query_as(StagingSql::WORKSPACES)
            .bind(connection_id)
            .fetch_all(&mut *tx)
            .await?;
        let (snapshot, evs) = activation_events(
            users.into_iter().map(|(id, d)| (id, parse_doc(d))).collect(),
            groups.into_iter().map(|(id, d)| (id, parse_doc(d))).collect(),
            members,
            group_roles(roles),
            group_roles(workspaces),
        );
        let ctx = ctx.about(&conn.org_id, &conn.id);
        group_commit::on_connection(&mut tx, |c| {
            for (kind, resource, data) in &evs {
                resource_writes::insert_events(
                    c,
                    &ctx,
                    kind,
                    resource.as_ref().map(|(k, id)| (*k, id.as_str())),
                    std::slice::from_ref(data),
                )?;
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(Some(StagingOutcome::Done(
            Connection {
                staged_us: None,
                ..conn
            },
            Some(snapshot),
        )))
    }

    async fn set_match_accounts(
        &self,
        ctx: &WriteContext,
        connection_id: &str,
        accounts: &[MatchAccount],
    ) -> StoreResult<Option<MatchUpload>> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(None);
        };
        let now = now_us();
        sqlx::query(StagingSql::PUT_REPORT_SQLITE)
            .bind(connection_id)
            .bind(serde_json::to_string(accounts).expect("accounts serialize"))
            .bind(accounts.len() as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        insert_event(
            &mut tx,
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
    }

    async fn match_accounts(&self, connection_id: &str) -> StoreResult<Option<MatchUpload>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT accounts, uploaded_us FROM match_reports WHERE connection_id = ?")
                .bind(connection_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(accounts, uploaded_us)| MatchUpload {
            connection_id: connection_id.to_string(),
            accounts: serde_json::from_str(&accounts).unwrap_or_default(),
            uploaded_us,
        }))
    }

    async fn delete_match_accounts(&self, ctx: &WriteContext, connection_id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(conn) = connection_in(&mut tx, connection_id).await? else {
            return Ok(false);
        };
        let deleted = sqlx::query(StagingSql::DELETE_REPORT)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        insert_event(
            &mut tx,
            &ctx.about(&conn.org_id, &conn.id),
            events::CONNECTION_MATCH_REPORT_DELETED,
            None,
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn match_users(&self, connection_id: &str) -> StoreResult<Vec<MatchUser>> {
        // One read transaction, so the three reads agree.
        let mut rx = self.reader.begin().await?;
        let users: Vec<staging::UserRow> = sqlx::query_as(AssertSqlSafe(staging::match_users_sql(false)))
            .bind(connection_id)
            .fetch_all(&mut *rx)
            .await?;
        let emails: Vec<(i64, String)> = sqlx::query_as(StagingSql::EMAILS)
            .bind(connection_id)
            .fetch_all(&mut *rx)
            .await?;
        let roles: Vec<(i64, String)> = sqlx::query_as(StagingSql::ROLES_BY_PK)
            .bind(connection_id)
            .fetch_all(&mut *rx)
            .await?;
        rx.commit().await?;
        Ok(staging::match_users(users, emails, roles))
    }
}
