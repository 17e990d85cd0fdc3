//! Outbound provisioning ([`crate::outbound`]) stored the same way on both databases: one body,
//! instantiated per backend ([`Backend`]), from the statements of [`OutboundSql`].

use crate::backend::{Backend, Tx};
use crate::model::WriteContext;
use crate::outbound::{
    self as ob, NewTarget, ObjectQuery, OutboundSql as Q, Run, RunCounts, RunKind, RunStatus, Target, TargetBinds,
    TargetObject, TargetRelease, TargetStatus, TargetUpdate,
};
use crate::{ResourceKind, StoreResult, events};
use async_trait::async_trait;
use serde_json::Value;
use sqlx::AssertSqlSafe;

fn org_ctx(by: &WriteContext, org_id: &str) -> WriteContext {
    by.about(org_id, "")
}

/// [`ob::OutboundStore`] for a [`Backend`].
macro_rules! outbound_store {
    ($store:ty) => {
        impl $store {
            /// `sql` ([`Q::UPDATE`], or [`Q::INSERT`] which continues them) with a target's columns bound.
            fn target_query<'q>(
                sql: &'static str,
                t: &'q Target,
                b: &'q TargetBinds,
            ) -> sqlx::query::Query<'q, <$store as Backend>::Db, <<$store as Backend>::Db as sqlx::Database>::Arguments>
            {
                sqlx::query(sql)
                    .bind(&t.name)
                    .bind(&t.base_url)
                    .bind(t.auth_kind.as_str())
                    .bind(&b.auth)
                    .bind(&b.sealed)
                    .bind(&t.profile)
                    .bind(&b.scope)
                    .bind(&b.mapping)
                    .bind(t.deprovision.as_str())
                    .bind(t.status.as_str())
                    .bind(&t.status_reason)
                    .bind(&b.threshold)
                    .bind(&b.rate_limit)
                    .bind(t.approved_us)
                    .bind(t.interval_s)
                    .bind(t.failures)
                    .bind(t.next_attempt_us)
                    .bind(t.updated_us)
                    .bind(&t.org_id)
                    .bind(&t.id)
            }

            /// Target `id` of organization `org_id`, read in `tx`.
            async fn target_in(
                &self,
                tx: &mut <$store as Backend>::Tx,
                org_id: &str,
                id: &str,
            ) -> StoreResult<Option<Target>> {
                let row = sqlx::query(Q::GET)
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
                row.map(|r| ob::target_of(&r, &self.secrets)).transpose()
            }

            /// The organization of target `id`, read in `tx` (none once the target is deleted).
            async fn target_org(tx: &mut <$store as Backend>::Tx, id: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar(Q::TARGET_ORG)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?)
            }

            async fn write_target(tx: &mut <$store as Backend>::Tx, t: &Target, b: &TargetBinds) -> StoreResult<()> {
                Self::target_query(Q::UPDATE, t, b).execute(tx.conn()).await?;
                Ok(())
            }

            async fn name_taken(
                tx: &mut <$store as Backend>::Tx,
                org_id: &str,
                name: &str,
                id: &str,
            ) -> StoreResult<bool> {
                Ok(sqlx::query(Q::NAME_TAKEN)
                    .bind(org_id)
                    .bind(name)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?
                    .is_some())
            }
        }

        #[async_trait]
        impl ob::OutboundStore for $store {
            async fn create_target(&self, by: &WriteContext, new: NewTarget) -> StoreResult<Target> {
                ob::check_new(&new)?;
                let new = &new;
                // Taken before the transaction, which must not wait for it holding a row.
                let ceiling = self.events_ceiling().await?;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    if sqlx::query(Q::ORG_EXISTS)
                        .bind(&new.org_id)
                        .fetch_optional(tx.conn())
                        .await?
                        .is_none()
                    {
                        return Err(ob::not_found(&format!(
                            "no organization with id \"{}\"",
                            new.org_id
                        )));
                    }
                    let high: i64 = sqlx::query_scalar(Q::HIGH_SEQ)
                        .bind(ceiling)
                        .fetch_one(tx.conn())
                        .await?;
                    let t = ob::prepared(&new, high, crate::sqlite::now_us());
                    if Self::name_taken(&mut tx, &t.org_id, &t.name, &t.id).await? {
                        return Err(ob::name_taken(&t.name));
                    }
                    let b = TargetBinds::of(&t, &self.secrets)?;
                    Self::target_query(Q::INSERT, &t, &b)
                        .bind(t.cursor_seq)
                        .bind(t.next_full_us)
                        .bind(t.created_us)
                        .execute(tx.conn())
                        .await?;
                    tx.record(
                        &org_ctx(by, &t.org_id),
                        events::PROVISIONING_TARGET_CREATED,
                        None,
                        ob::target_data(&t),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(t)
                })
                .await
            }

            async fn list_targets(&self, org_id: &str) -> StoreResult<Vec<Target>> {
                let rows = sqlx::query(Q::LIST).bind(org_id).fetch_all(self.reads()).await?;
                rows.iter().map(|r| ob::target_of(r, &self.secrets)).collect()
            }

            async fn get_target(&self, org_id: &str, id: &str) -> StoreResult<Option<Target>> {
                let row = sqlx::query(Q::GET)
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?;
                row.as_ref().map(|r| ob::target_of(r, &self.secrets)).transpose()
            }

            async fn update_target(
                &self,
                by: &WriteContext,
                org_id: &str,
                id: &str,
                update: TargetUpdate,
            ) -> StoreResult<Option<Target>> {
                let update = &update;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(mut t) = self.target_in(&mut tx, org_id, id).await? else {
                        return Ok(None);
                    };
                    let Some((kind, data)) = ob::apply_update(&mut t, update.clone(), crate::sqlite::now_us())? else {
                        return Ok(Some(t));
                    };
                    if Self::name_taken(&mut tx, org_id, &t.name, &t.id).await? {
                        return Err(ob::name_taken(&t.name));
                    }
                    let b = TargetBinds::of(&t, &self.secrets)?;
                    Self::write_target(&mut tx, &t, &b).await?;
                    tx.record(&org_ctx(by, org_id), kind, None, data).await?;
                    tx.commit().await?;
                    Ok(Some(t))
                })
                .await
            }

            async fn delete_target(&self, by: &WriteContext, org_id: &str, id: &str) -> StoreResult<bool> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(t) = self.target_in(&mut tx, org_id, id).await? else {
                        return Ok(false);
                    };
                    sqlx::query(Q::DELETE)
                        .bind(org_id)
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    tx.record(
                        &org_ctx(by, org_id),
                        events::PROVISIONING_TARGET_DELETED,
                        None,
                        ob::target_data(&t),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn approve_target(&self, by: &WriteContext, org_id: &str, id: &str) -> StoreResult<Option<Target>> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let now = crate::sqlite::now_us();
                    let done = sqlx::query(Q::APPROVE)
                        .bind(now)
                        .bind(now)
                        .bind(now)
                        .bind(org_id)
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    if done.rows_affected() == 0 {
                        return Ok(None);
                    }
                    let row = sqlx::query(Q::GET)
                        .bind(org_id)
                        .bind(id)
                        .fetch_one(tx.conn())
                        .await?;
                    let t = ob::target_of(&row, &self.secrets)?;
                    tx.record(
                        &org_ctx(by, org_id),
                        events::PROVISIONING_TARGET_APPROVED,
                        None,
                        ob::target_data(&t),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(Some(t))
                })
                .await
            }

            async fn set_target_status(
                &self,
                by: &WriteContext,
                id: &str,
                status: TargetStatus,
                reason: Option<&str>,
                kind: &'static str,
                data: Value,
            ) -> StoreResult<bool> {
                let data = &data;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(org_id) = Self::target_org(&mut tx, id).await? else {
                        return Ok(false);
                    };
                    sqlx::query(Q::SET_STATUS)
                        .bind(status.as_str())
                        .bind(reason.map(ob::clip_error))
                        .bind(crate::sqlite::now_us())
                        .bind(id)
                        .execute(tx.conn())
                        .await?;
                    tx.record(&org_ctx(by, &org_id), kind, None, data.clone()).await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await
            }

            async fn request_target_sync(&self, org_id: &str, id: &str, now: i64) -> StoreResult<bool> {
                Ok(self
                    .write_one(sqlx::query(Q::REQUEST).bind(now).bind(now).bind(org_id).bind(id))
                    .await?
                    == 1)
            }

            async fn claim_targets(
                &self,
                owner: &str,
                now: i64,
                lease_until_us: i64,
                limit: i64,
            ) -> StoreResult<Vec<Target>> {
                let rows = self
                    .write_rows(
                        sqlx::query(AssertSqlSafe(Q::claim(<$store as Backend>::DIALECT)))
                            .bind(owner)
                            .bind(lease_until_us)
                            .bind(now)
                            .bind(now)
                            .bind(now)
                            .bind(now)
                            .bind(limit),
                    )
                    .await?;
                rows.iter().map(|r| ob::target_of(r, &self.secrets)).collect()
            }

            async fn advance_target(
                &self,
                id: &str,
                owner: &str,
                from_seq: i64,
                to_seq: i64,
                lease_until_us: i64,
            ) -> StoreResult<bool> {
                Ok(self
                    .write_one(
                        sqlx::query(Q::ADVANCE)
                            .bind(to_seq)
                            .bind(lease_until_us)
                            .bind(id)
                            .bind(owner)
                            .bind(from_seq),
                    )
                    .await?
                    == 1)
            }

            async fn release_target(&self, id: &str, owner: &str, r: &TargetRelease) -> StoreResult<bool> {
                Ok(self
                    .write_one(
                        sqlx::query(Q::RELEASE)
                            .bind(r.failures)
                            .bind(r.next_attempt_us)
                            .bind(r.next_full_us)
                            .bind(id)
                            .bind(owner),
                    )
                    .await?
                    == 1)
            }

            async fn target_objects(
                &self,
                org_id: &str,
                target_id: &str,
                q: &ObjectQuery,
            ) -> StoreResult<Vec<TargetObject>> {
                let state = q.state.map(|s| s.as_str());
                let kind = q.kind.map(|k| k.as_str());
                let (after_kind, after_id) = match &q.after {
                    Some((k, id)) => (Some(k.as_str()), Some(id.as_str())),
                    None => (None, None),
                };
                let rows = sqlx::query(Q::OBJECTS)
                    .bind(target_id)
                    .bind(state)
                    .bind(state)
                    .bind(kind)
                    .bind(kind)
                    .bind(after_kind)
                    .bind(after_kind)
                    .bind(after_kind)
                    .bind(after_id)
                    .bind(q.limit)
                    .bind(org_id)
                    .fetch_all(self.reads())
                    .await?;
                rows.iter().map(ob::object_of).collect()
            }

            async fn target_object(
                &self,
                org_id: &str,
                target_id: &str,
                kind: ResourceKind,
                local_id: &str,
            ) -> StoreResult<Option<TargetObject>> {
                let row = sqlx::query(Q::OBJECT)
                    .bind(target_id)
                    .bind(kind.as_str())
                    .bind(local_id)
                    .bind(org_id)
                    .fetch_optional(self.reads())
                    .await?;
                row.as_ref().map(ob::object_of).transpose()
            }

            async fn record_object(
                &self,
                by: &WriteContext,
                o: &TargetObject,
                event: Option<(&'static str, Value)>,
            ) -> StoreResult<()> {
                let event = &event;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(org_id) = Self::target_org(&mut tx, &o.target_id).await? else {
                        return Err(ob::not_found("the provisioning target was deleted"));
                    };
                    sqlx::query(Q::UPSERT_OBJECT)
                        .bind(&o.target_id)
                        .bind(o.kind.as_str())
                        .bind(&o.local_id)
                        .bind(&o.remote_id)
                        .bind(ob::sent_json(o))
                        .bind(o.state.as_str())
                        .bind(o.error.as_deref().map(ob::clip_error))
                        .bind(o.attempts)
                        .bind(o.retry_at_us)
                        .bind(o.updated_us)
                        .bind(&org_id)
                        .execute(tx.conn())
                        .await?;
                    if let Some((kind, data)) = event {
                        tx.record(
                            &org_ctx(by, &org_id),
                            kind,
                            Some((o.kind, &o.local_id)),
                            data.clone(),
                        )
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
                .await
            }

            async fn forget_object(
                &self,
                org_id: &str,
                target_id: &str,
                kind: ResourceKind,
                local_id: &str,
            ) -> StoreResult<bool> {
                Ok(self
                    .write_one(
                        sqlx::query(Q::FORGET_OBJECT)
                            .bind(target_id)
                            .bind(kind.as_str())
                            .bind(local_id)
                            .bind(org_id),
                    )
                    .await?
                    == 1)
            }

            async fn retry_object(
                &self,
                org_id: &str,
                target_id: &str,
                kind: ResourceKind,
                local_id: &str,
            ) -> StoreResult<bool> {
                let now = crate::sqlite::now_us();
                Ok(self
                    .write_one(
                        sqlx::query(Q::RETRY_OBJECT)
                            .bind(now)
                            .bind(now)
                            .bind(target_id)
                            .bind(kind.as_str())
                            .bind(local_id)
                            .bind(org_id),
                    )
                    .await?
                    == 1)
            }

            async fn request_push(
                &self,
                org_id: &str,
                target_id: &str,
                kind: ResourceKind,
                local_id: &str,
                now_us: i64,
            ) -> StoreResult<()> {
                self.write_one(
                    sqlx::query(Q::REQUEST_PUSH)
                        .bind(target_id)
                        .bind(kind.as_str())
                        .bind(local_id)
                        .bind(now_us)
                        .bind(now_us)
                        .bind(org_id),
                )
                .await?;
                Ok(())
            }

            async fn due_objects(
                &self,
                org_id: &str,
                target_id: &str,
                now_us: i64,
                limit: i64,
            ) -> StoreResult<Vec<TargetObject>> {
                let rows = sqlx::query(Q::DUE_OBJECTS)
                    .bind(target_id)
                    .bind(now_us)
                    .bind(limit)
                    .bind(org_id)
                    .fetch_all(self.reads())
                    .await?;
                rows.iter().map(ob::object_of).collect()
            }

            async fn start_run(&self, by: &WriteContext, target_id: &str, kind: RunKind) -> StoreResult<Run> {
                let run = Run {
                    id: uuid::Uuid::now_v7().to_string(),
                    target_id: target_id.to_string(),
                    kind,
                    status: RunStatus::Running,
                    started_us: crate::sqlite::now_us(),
                    finished_us: None,
                    counts: RunCounts::default(),
                    error: None,
                };
                let r = &run;
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(org_id) = Self::target_org(&mut tx, target_id).await? else {
                        return Err(ob::not_found("the provisioning target was deleted"));
                    };
                    sqlx::query(Q::INSERT_RUN)
                        .bind(target_id)
                        .bind(&r.id)
                        .bind(kind.as_str())
                        .bind(r.status.as_str())
                        .bind(r.started_us)
                        .bind(ob::counts_json(&r.counts))
                        .bind(&org_id)
                        .execute(tx.conn())
                        .await?;
                    tx.record(
                        &org_ctx(by, &org_id),
                        events::PROVISIONING_RUN_STARTED,
                        None,
                        ob::run_data(r),
                    )
                    .await?;
                    tx.commit().await
                })
                .await?;
                Ok(run)
            }

            async fn run_progress(
                &self,
                org_id: &str,
                target_id: &str,
                run_id: &str,
                counts: &RunCounts,
            ) -> StoreResult<()> {
                self.write_one(
                    sqlx::query(Q::RUN_PROGRESS)
                        .bind(ob::counts_json(counts))
                        .bind(target_id)
                        .bind(run_id)
                        .bind(org_id),
                )
                .await?;
                Ok(())
            }

            async fn finish_run(&self, by: &WriteContext, run: &Run) -> StoreResult<()> {
                self.writing(move || async move {
                    let mut tx = self.begin().await?;
                    let Some(org_id) = Self::target_org(&mut tx, &run.target_id).await? else {
                        return Ok(());
                    };
                    sqlx::query(Q::FINISH_RUN)
                        .bind(run.status.as_str())
                        .bind(run.finished_us)
                        .bind(ob::counts_json(&run.counts))
                        .bind(run.error.as_deref().map(ob::clip_error))
                        .bind(&run.target_id)
                        .bind(&run.id)
                        .bind(&org_id)
                        .execute(tx.conn())
                        .await?;
                    tx.record(
                        &org_ctx(by, &org_id),
                        events::PROVISIONING_RUN_FINISHED,
                        None,
                        ob::run_data(run),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(())
                })
                .await
            }

            async fn list_runs(
                &self,
                org_id: &str,
                target_id: &str,
                before: Option<&str>,
                limit: i64,
            ) -> StoreResult<Vec<Run>> {
                let rows = sqlx::query(Q::RUNS)
                    .bind(target_id)
                    .bind(before)
                    .bind(before)
                    .bind(limit)
                    .bind(org_id)
                    .fetch_all(self.reads())
                    .await?;
                rows.iter().map(ob::run_of).collect()
            }
        }
    };
}

outbound_store!(crate::sqlite::SqliteStore);
outbound_store!(crate::postgres::PostgresStore);
