//! Outbound provisioning (#15) on both databases: targets with sealed credentials and their
//! events, approval withdrawn by a scope change, one lease per target, the cursor, the mapping
//! table and run history.

use rollcall_store::outbound::*;
use rollcall_store::postgres::PgSettings;
use rollcall_store::*;
use serde_json::json;
use std::sync::Arc;

mod harness;
use harness::*;

const TOKEN: &str = "scim-target-token-0123456789";

fn new_target(org_id: &str, name: &str) -> NewTarget {
    NewTarget {
        org_id: org_id.into(),
        name: name.into(),
        base_url: "https://apps.example.com/scim/v2".into(),
        auth_kind: AuthKind::Bearer,
        auth: AuthSettings::default(),
        credentials: TOKEN.into(),
        profile: "generic".into(),
        scope: TargetScope::default(),
        mapping: AttributeMapping::default(),
        deprovision: Deprovision::Deactivate,
        deletion_threshold: DeletionThreshold::default(),
        rate_limit: None,
        interval_s: 3600,
        approved: false,
    }
}

async fn events_of(store: &dyn Store, prefix: &str) -> Vec<Event> {
    store
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.starts_with(prefix))
        .collect()
}

async fn targets_sealed_with_events(store: Arc<dyn Store>) {
    let ctx = tenant(&*store, "acme").await;
    let ob = store.outbound();
    let t = ob
        .create_target(&WriteContext::cli(), new_target(&ctx.org_id, "Slack"))
        .await
        .unwrap();
    assert_eq!(t.status, TargetStatus::Enabled);
    assert!(!t.approved(), "a new target waits for approval");
    assert!(!format!("{t:?}").contains(TOKEN), "Debug hides the credentials");
    let read = ob.get_target(&ctx.org_id, &t.id).await.unwrap().unwrap();
    assert_eq!(read.credentials, TOKEN);
    assert_eq!(read, t);
    // Another organization does not see it.
    let other = tenant(&*store, "other").await;
    assert!(ob.get_target(&other.org_id, &t.id).await.unwrap().is_none());
    assert!(ob.list_targets(&other.org_id).await.unwrap().is_empty());
    // Sealed at rest, counted by the inventory under its column.
    let inv = store.secret_inventory().await.unwrap();
    assert_eq!(inv.clear, 0);
    assert_eq!(inv.by_column.get("provisioning_targets.credentials"), Some(&1));
    // Name taken: 409, nothing written.
    let dup = ob
        .create_target(&WriteContext::cli(), new_target(&ctx.org_id, "Slack"))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Scim(ref e)) if e.status == 409),
        "{dup:?}"
    );
    let missing = ob.create_target(&WriteContext::cli(), new_target("nope", "X")).await;
    assert!(
        matches!(missing, Err(StoreError::Scim(ref e)) if e.status == 404),
        "{missing:?}"
    );
    let mut bad = new_target(&ctx.org_id, "Basic without user");
    bad.auth_kind = AuthKind::Basic;
    assert!(ob.create_target(&WriteContext::cli(), bad).await.is_err());
    assert_eq!(ob.list_targets(&ctx.org_id).await.unwrap().len(), 1);
    let created = events_of(&*store, "provisioning.").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].kind, events::PROVISIONING_TARGET_CREATED);
    assert_eq!(created[0].org_id.as_deref(), Some(ctx.org_id.as_str()));
    assert!(
        !created[0].data.to_string().contains(TOKEN),
        "events never carry credentials"
    );

    // Approve, then a scope change withdraws the approval; new credentials are sealed, not shown.
    let approved = ob
        .approve_target(&WriteContext::cli(), &ctx.org_id, &t.id)
        .await
        .unwrap()
        .unwrap();
    assert!(approved.approved());
    let updated = ob
        .update_target(
            &WriteContext::cli(),
            &ctx.org_id,
            &t.id,
            TargetUpdate {
                scope: Some(TargetScope {
                    connections: vec![ctx.connection_id.clone()],
                    ..Default::default()
                }),
                credentials: Some("new-token".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!updated.approved(), "a new scope waits for approval again");
    assert_eq!(
        ob.get_target(&ctx.org_id, &t.id).await.unwrap().unwrap().credentials,
        "new-token"
    );
    // A rename only: approval stays withdrawn, nothing else moves; no change: no event.
    let before = events_of(&*store, "provisioning.").await.len();
    ob.update_target(&WriteContext::cli(), &ctx.org_id, &t.id, TargetUpdate::default())
        .await
        .unwrap();
    assert_eq!(events_of(&*store, "provisioning.").await.len(), before);
    let paused = ob
        .update_target(
            &WriteContext::cli(),
            &ctx.org_id,
            &t.id,
            TargetUpdate {
                status: Some(TargetStatus::Paused),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paused.status, TargetStatus::Paused);
    assert!(
        ob.update_target(
            &WriteContext::cli(),
            &ctx.org_id,
            &t.id,
            TargetUpdate {
                status: Some(TargetStatus::Quarantined),
                ..Default::default()
            },
        )
        .await
        .is_err()
    );
    let kinds: Vec<String> = events_of(&*store, "provisioning.")
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "provisioning.target_created",
            "provisioning.target_approved",
            "provisioning.target_updated",
            "provisioning.target_paused"
        ]
    );
    let upd = &events_of(&*store, "provisioning.target_updated").await[0];
    assert_eq!(upd.data["changed"]["credentials"], json!({"replaced": true}));
    assert_eq!(upd.data["changed"]["approval"], json!({"withdrawn": true}));
    assert!(!upd.data.to_string().contains("new-token"));

    assert!(
        ob.delete_target(&WriteContext::cli(), &ctx.org_id, &t.id)
            .await
            .unwrap()
    );
    assert!(
        !ob.delete_target(&WriteContext::cli(), &ctx.org_id, &t.id)
            .await
            .unwrap()
    );
    assert_eq!(events_of(&*store, "provisioning.target_deleted").await.len(), 1);
    // Key rotation re-encrypts the credentials of the targets there are.
    ob.create_target(&WriteContext::cli(), new_target(&ctx.org_id, "AWS"))
        .await
        .unwrap();
    let next =
        rollcall_store::secrets::SecretBox::new(rollcall_store::secrets::SecretKey::parse(&"22".repeat(32)).unwrap());
    assert_eq!(
        store
            .reseal_secrets(&next, rollcall_store::secrets::Reseal::NotUnderPrimary)
            .await
            .unwrap(),
        1
    );
}

async fn one_lease_and_the_cursor(store: Arc<dyn Store>) {
    let ctx = tenant(&*store, "acme").await;
    let ob = store.outbound();
    let mut new = new_target(&ctx.org_id, "Slack");
    new.approved = true;
    let t = ob.create_target(&WriteContext::cli(), new).await.unwrap();
    let unapproved = ob
        .create_target(&WriteContext::cli(), new_target(&ctx.org_id, "AWS"))
        .await
        .unwrap();
    let now = rollcall_store::sqlite::now_us();
    // Due (its first full run): one owner gets it, the other nothing.
    let a = ob.claim_targets("node-a", now, now + 30_000_000, 10).await.unwrap();
    assert_eq!(
        a.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [t.id.as_str()],
        "the unapproved one waits"
    );
    assert!(
        ob.claim_targets("node-b", now, now + 30_000_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The cursor moves only for the owner, from where it is.
    let cursor = a[0].cursor_seq;
    assert!(
        !ob.advance_target(&t.id, "node-b", cursor, cursor + 5, now)
            .await
            .unwrap()
    );
    assert!(
        ob.advance_target(&t.id, "node-a", cursor, cursor + 5, now + 30_000_000)
            .await
            .unwrap()
    );
    assert!(
        !ob.advance_target(&t.id, "node-a", cursor, cursor + 9, now)
            .await
            .unwrap()
    );
    assert!(
        !ob.release_target(&t.id, "node-b", &TargetRelease::default())
            .await
            .unwrap(),
        "not the owner"
    );
    assert!(
        ob.release_target(
            &t.id,
            "node-a",
            &TargetRelease {
                next_full_us: Some(now + 3_600_000_000),
                ..Default::default()
            }
        )
        .await
        .unwrap()
    );
    let read = ob.get_target(&ctx.org_id, &t.id).await.unwrap().unwrap();
    assert_eq!(read.cursor_seq, cursor + 5);
    assert!(read.lease_owner.is_none());
    // Nothing to do now: the events written so far are behind the cursor only if it reached them.
    let high = store
        .events_after(0, 10_000)
        .await
        .unwrap()
        .last()
        .map(|e| e.seq)
        .unwrap();
    let claimed = ob.claim_targets("node-b", now, now + 1, 10).await.unwrap();
    if read.cursor_seq >= high {
        assert!(claimed.is_empty());
    } else {
        assert_eq!(claimed.len(), 1, "events after the cursor are work");
        ob.release_target(&t.id, "node-b", &TargetRelease::default())
            .await
            .unwrap();
        let c = ob.get_target(&ctx.org_id, &t.id).await.unwrap().unwrap().cursor_seq;
        let now2 = rollcall_store::sqlite::now_us();
        assert!(ob.claim_targets("node-b", now2, now2 + 1, 10).await.unwrap().len() == 1);
        assert!(ob.advance_target(&t.id, "node-b", c, high, now2 + 1).await.unwrap());
        ob.release_target(&t.id, "node-b", &TargetRelease::default())
            .await
            .unwrap();
        assert!(ob.claim_targets("node-b", now2, now2 + 1, 10).await.unwrap().is_empty());
    }
    // A failure backs off: not claimed before next_attempt_us.
    let now3 = rollcall_store::sqlite::now_us();
    assert!(ob.request_target_sync(&ctx.org_id, &t.id, now3).await.unwrap());
    let got = ob.claim_targets("n", now3, now3 + 10, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    ob.release_target(
        &t.id,
        "n",
        &TargetRelease {
            failures: 1,
            next_attempt_us: now3 + 60_000_000,
            next_full_us: None,
        },
    )
    .await
    .unwrap();
    assert!(ob.claim_targets("n", now3 + 1, now3 + 10, 10).await.unwrap().is_empty());
    assert_eq!(
        ob.claim_targets("n", now3 + 60_000_001, now3 + 60_000_010, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A paused target is never claimed.
    ob.release_target(&t.id, "n", &TargetRelease::default()).await.unwrap();
    assert!(
        ob.set_target_status(
            &WriteContext::system(),
            &t.id,
            TargetStatus::Paused,
            Some("deletion threshold"),
            events::PROVISIONING_TARGET_PAUSED,
            json!({"target": t.id})
        )
        .await
        .unwrap()
    );
    assert!(ob.request_target_sync(&ctx.org_id, &t.id, now3).await.unwrap());
    assert!(
        ob.claim_targets("n", now3 + 60_000_001, now3 + 60_000_010, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let read = ob.get_target(&ctx.org_id, &t.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.status_reason.as_deref()),
        (TargetStatus::Paused, Some("deletion threshold"))
    );
    let _ = unapproved;
}

async fn mapping_table_and_runs(store: Arc<dyn Store>) {
    let ctx = tenant(&*store, "acme").await;
    let ob = store.outbound();
    let t = ob
        .create_target(&WriteContext::cli(), new_target(&ctx.org_id, "Slack"))
        .await
        .unwrap();
    let now = rollcall_store::sqlite::now_us();
    let obj = |local: &str, state: ObjectState| TargetObject {
        target_id: t.id.clone(),
        kind: ResourceKind::User,
        local_id: local.into(),
        remote_id: Some(format!("r-{local}")),
        sent: Some(json!({"userName": local})),
        state,
        error: None,
        attempts: 0,
        retry_at_us: None,
        updated_us: now,
    };
    ob.record_object(
        &WriteContext::system(),
        &obj("u1", ObjectState::Synced),
        Some((
            events::PROVISIONING_OBJECT_PUSHED,
            json!({"target": t.id, "action": "created"}),
        )),
    )
    .await
    .unwrap();
    let mut failed = obj("u2", ObjectState::Failed);
    failed.remote_id = None;
    failed.error = Some("x".repeat(5000));
    failed.attempts = 1;
    failed.retry_at_us = Some(now + 60_000_000);
    ob.record_object(&WriteContext::system(), &failed, None).await.unwrap();
    // A failed object is due again at its retry time, not before.
    assert!(ob.due_objects(&t.org_id, &t.id, now, 10).await.unwrap().is_empty());
    let due = ob.due_objects(&t.org_id, &t.id, now + 60_000_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|o| o.local_id.as_str()).collect::<Vec<_>>(), ["u2"]);
    // Replacing keeps one row per object.
    ob.record_object(&WriteContext::system(), &obj("u1", ObjectState::Synced), None)
        .await
        .unwrap();
    let all = ob
        .target_objects(
            &t.org_id,
            &t.id,
            &ObjectQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], obj("u1", ObjectState::Synced));
    assert_eq!(
        all[1].error.as_ref().unwrap().len(),
        MAX_ERROR_BYTES,
        "errors are clipped"
    );
    let failing = ob
        .target_objects(
            &t.org_id,
            &t.id,
            &ObjectQuery {
                state: Some(ObjectState::Failed),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(failing.iter().map(|o| o.local_id.as_str()).collect::<Vec<_>>(), ["u2"]);
    let page = ob
        .target_objects(
            &t.org_id,
            &t.id,
            &ObjectQuery {
                after: Some((ResourceKind::User, "u1".into())),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    // The pushed event names the user.
    let pushed = events_of(&*store, "provisioning.object_pushed").await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].resource_id.as_deref(), Some("u1"));
    assert_eq!(pushed[0].resource_type.as_deref(), Some("User"));
    // Retry: pending and due at once.
    assert!(
        ob.retry_object(&t.org_id, &t.id, ResourceKind::User, "u2")
            .await
            .unwrap()
    );
    assert!(
        !ob.retry_object(&t.org_id, &t.id, ResourceKind::User, "nobody")
            .await
            .unwrap()
    );
    let o = ob
        .target_object(&t.org_id, &t.id, ResourceKind::User, "u2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, ObjectState::Pending);
    let now2 = rollcall_store::sqlite::now_us();
    assert!(o.retry_at_us.is_some_and(|at| at <= now2));
    let due = ob.due_objects(&t.org_id, &t.id, now2, 10).await.unwrap();
    assert_eq!(due.iter().map(|o| o.local_id.as_str()).collect::<Vec<_>>(), ["u2"]);
    // An object due again is work on its own: with the full run done and the log read, the target
    // is claimed for it, and not once it is gone.
    ob.approve_target(&WriteContext::cli(), &ctx.org_id, &t.id)
        .await
        .unwrap()
        .unwrap();
    let high = store.events_after(0, 10_000).await.unwrap().last().map_or(0, |e| e.seq);
    let at = rollcall_store::sqlite::now_us();
    let claimed = ob.claim_targets("n", at, at + 10, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the first full run is due");
    assert!(
        ob.advance_target(&t.id, "n", claimed[0].cursor_seq, high, at + 10)
            .await
            .unwrap()
    );
    let done = TargetRelease {
        next_full_us: Some(at + 3_600_000_000),
        ..Default::default()
    };
    ob.release_target(&t.id, "n", &done).await.unwrap();
    assert_eq!(ob.claim_targets("n", at + 20, at + 30, 10).await.unwrap().len(), 1);
    ob.release_target(&t.id, "n", &done).await.unwrap();
    assert!(
        ob.forget_object(&t.org_id, &t.id, ResourceKind::User, "u2")
            .await
            .unwrap()
    );
    assert!(ob.claim_targets("n", at + 40, at + 50, 10).await.unwrap().is_empty());
    assert!(
        ob.target_object(&t.org_id, &t.id, ResourceKind::User, "u2")
            .await
            .unwrap()
            .is_none()
    );

    // Runs, newest first, with their events.
    let mut r1 = ob
        .start_run(&WriteContext::system(), &t.id, RunKind::Full)
        .await
        .unwrap();
    r1.counts.created = 3;
    ob.run_progress(&t.org_id, &t.id, &r1.id, &r1.counts).await.unwrap();
    r1.status = RunStatus::Succeeded;
    r1.finished_us = Some(r1.started_us + 1500);
    ob.finish_run(&WriteContext::system(), &r1).await.unwrap();
    let r2 = ob
        .start_run(&WriteContext::system(), &t.id, RunKind::Events)
        .await
        .unwrap();
    let runs = ob.list_runs(&t.org_id, &t.id, None, 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [r2.id.as_str(), r1.id.as_str()]
    );
    assert_eq!(runs[1], r1);
    assert_eq!(runs[0].status, RunStatus::Running);
    assert_eq!(ob.list_runs(&t.org_id, &t.id, Some(&r2.id), 10).await.unwrap().len(), 1);
    let finished = events_of(&*store, "provisioning.run_finished").await;
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].data["counts"]["created"], json!(3));
    assert_eq!(events_of(&*store, "provisioning.run_started").await.len(), 2);
    // Deleting the target deletes its mapping table and runs.
    assert!(
        ob.delete_target(&WriteContext::cli(), &ctx.org_id, &t.id)
            .await
            .unwrap()
    );
    assert!(
        ob.target_objects(
            &t.org_id,
            &t.id,
            &ObjectQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert!(ob.list_runs(&t.org_id, &t.id, None, 10).await.unwrap().is_empty());
}

contract!(
    targets_sealed_with_events,
    one_lease_and_the_cursor,
    mapping_table_and_runs
);

/// A target write held up past the statement timeout (another session holds the target's row)
/// answers 503, busy, as every other write of the store does, not a raw database error; once the
/// row is free the same write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_contended_target_write_is_busy() {
    let settings = PgSettings {
        statement_timeout_ms: 300,
        ..PgSettings::default()
    };
    let Some((_db, store)) = pg_db_with(settings).await else {
        skip_note("postgres_contended_target_write_is_busy");
        return;
    };
    let ctx = tenant(&store, "acme").await;
    let ob = store.outbound();
    let t = ob
        .create_target(&WriteContext::cli(), new_target(&ctx.org_id, "Slack"))
        .await
        .unwrap();
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM provisioning_targets WHERE id = $1 FOR UPDATE")
        .bind(&t.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let busy = ob.delete_target(&WriteContext::cli(), &ctx.org_id, &t.id).await;
    assert!(
        matches!(busy, Err(StoreError::Scim(ref e)) if e.status == 503),
        "{busy:?}"
    );
    holder.rollback().await.unwrap();
    assert!(
        ob.delete_target(&WriteContext::cli(), &ctx.org_id, &t.id)
            .await
            .unwrap()
    );
}
