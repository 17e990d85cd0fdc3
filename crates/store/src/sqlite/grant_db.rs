//! SQLite: the grant engine ([`crate::grant_rows`]) on the writer's handle through rusqlite,
//! synchronously: inside a resource write of the group commit, inside a sqlx-side write through
//! [`group_commit::on_connection`], or in a read of the inline reader for a preview.

use super::*;
use crate::grant_rows::{self, Arg, Cell, GrantBackend, GrantDb, GrantJob};
use crate::roles::{GrantKind, RoleChange, RolePreview};
use futures::FutureExt;
use rusqlite::types::ValueRef;
use std::future::Future;

/// The connection of the grant engine and of the resource writes ([`crate::resource_rows`]): a
/// rusqlite handle. Its statements never wait, so their futures complete in one poll ([`block`]).
pub(super) struct Inline<'a>(pub &'a rusqlite::Connection);

/// Runs a future of the grant engine or a resource write on an [`Inline`] connection to its end.
pub(super) fn block<T>(f: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    f.now_or_never().unwrap_or_else(|| {
        Err(StoreError::Scim(ScimError::internal(
            "a write on the writer's handle waited",
        )))
    })
}

/// Binds `args` to `$n` parameters by number (SQLite numbers named parameters in order of
/// appearance, which need not be theirs).
fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Arg<'_>]) -> StoreResult<()> {
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|p| p.get(1..))
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(i);
        let arg = n
            .checked_sub(1)
            .and_then(|n| args.get(n))
            .ok_or_else(|| StoreError::Scim(ScimError::internal("a statement parameter has no value")))?;
        match arg {
            Arg::Int(v) => stmt.raw_bind_parameter(i, v),
            Arg::Real(v) => stmt.raw_bind_parameter(i, v),
            Arg::Text(s) => stmt.raw_bind_parameter(i, s),
            Arg::OptText(s) => stmt.raw_bind_parameter(i, s),
            Arg::OptBool(v) => stmt.raw_bind_parameter(i, v),
            Arg::Ints(v) => stmt.raw_bind_parameter(i, serde_json::to_string(v).expect("integers serialize")),
            Arg::Texts(v) => stmt.raw_bind_parameter(i, serde_json::to_string(v).expect("strings serialize")),
            Arg::OptTexts(v) => stmt.raw_bind_parameter(i, serde_json::to_string(v).expect("strings serialize")),
        }?;
    }
    Ok(())
}

impl GrantDb for Inline<'_> {
    const DIALECT: Dialect = Dialect::Sqlite;

    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Vec<Cell>>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        let n = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Int(v as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                });
            }
            out.push(cells);
        }
        Ok(out)
    }

    async fn run(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<()> {
        let mut stmt = self.0.prepare_cached(sql)?;
        bind(&mut stmt, args)?;
        stmt.raw_execute()?;
        Ok(())
    }

    async fn record_events(
        &mut self,
        ctx: &WriteContext,
        kind: &'static str,
        resource: Option<(ResourceKind, &str)>,
        data: Vec<Value>,
    ) -> StoreResult<()> {
        event_rows::insert_events(self.0, ctx, kind, resource, &data)
    }

    async fn events_mark(&mut self) -> StoreResult<i64> {
        guard_ops::events_high(self.0)
    }

    async fn guard(&mut self, ctx: &WriteContext, mark: i64) -> StoreResult<()> {
        guard_ops::after_write(self.0, ctx, mark)
    }
}

impl GrantBackend for SqliteStore {
    async fn grant_job(tx: &mut group_commit::WriteTx, ctx: &WriteContext, job: GrantJob<'_>) -> StoreResult<()> {
        group_commit::on_connection(tx, |c| block(grant_rows::run_job(&mut Inline(c), ctx, job))).await
    }

    async fn preview_grants(
        &self,
        kind: GrantKind,
        connection_id: &str,
        change: &RoleChange,
        sample: usize,
    ) -> StoreResult<Option<RolePreview>> {
        let (connection_id, change) = (connection_id.to_string(), change.clone());
        self.inline
            .read(move |c| {
                block(grant_rows::preview(
                    &mut Inline(c),
                    kind,
                    &connection_id,
                    &change,
                    sample,
                ))
            })
            .await
    }
}
