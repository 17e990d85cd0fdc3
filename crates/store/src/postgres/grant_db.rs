//! PostgreSQL: the grant engine ([`crate::grant_rows`]) on a write transaction.

use super::*;
use crate::grant_rows::{self, Arg, Cell, GrantBackend, GrantDb, GrantJob};
use crate::roles::{GrantKind, RoleChange, RolePreview};

fn args_of(args: &[Arg<'_>]) -> PgArguments {
    let mut out = PgArguments::default();
    for a in args {
        match *a {
            Arg::Int(v) => out.add(v),
            Arg::Real(v) => out.add(v),
            Arg::Text(s) => out.add(s),
            Arg::OptText(s) => out.add(s),
            Arg::OptBool(v) => out.add(v),
            Arg::Ints(v) => out.add(v),
            Arg::Texts(v) => out.add(v),
            Arg::OptTexts(v) => out.add(v),
        }
        .expect("binding a plain value cannot fail");
    }
    out
}

/// A column as a [`Cell`] (a boolean as 0 or 1).
fn cell(row: &PgRow, i: usize) -> Cell {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or(Cell::Null, Cell::Int);
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map_or(Cell::Null, |b| Cell::Int(b.into()));
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return v.map_or(Cell::Null, |v| Cell::Int(v.into()));
    }
    row.try_get::<Option<String>, _>(i)
        .ok()
        .flatten()
        .map_or(Cell::Null, Cell::Text)
}

impl GrantDb for WriteTx {
    const DIALECT: Dialect = Dialect::Postgres;

    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Vec<Cell>>> {
        let rows = sqlx::query_with(AssertSqlSafe(sql.to_string()), args_of(args))
            .fetch_all(self.conn())
            .await?;
        Ok(rows
            .iter()
            .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
            .collect())
    }

    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<()> {
        sqlx::query_with(AssertSqlSafe(sql.to_string()), args_of(args))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn record_events(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Vec<Value>,
    ) -> StoreResult<()> {
        for d in data {
            self.event(ctx, kind, resource, d);
        }
        Ok(())
    }

    /// The guard reads the transaction's events, still in memory: every one is after the mark.
    async fn events_mark(&mut self) -> StoreResult<i64> {
        Ok(0)
    }

    async fn guard(&mut self, ctx: &WriteContext, _mark: i64) -> StoreResult<()> {
        guard_ops::after_write(self, ctx).await
    }
}

impl GrantBackend for PostgresStore {
    async fn grant_job(tx: &mut WriteTx, ctx: &WriteContext, job: GrantJob<'_>) -> StoreResult<()> {
        grant_rows::run_job(tx, ctx, job).await
    }

    async fn preview_grants(
        &self,
        kind: GrantKind,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        let preview = async {
            let mut tx = self.begin_write().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(tx.conn())
                .await?;
            // Nothing is written: the transaction ends with a rollback when dropped.
            grant_rows::preview(&mut tx, kind, connection_id, change, sample).await
        };
        preview.await.map_err(finish_error)
    }
}
