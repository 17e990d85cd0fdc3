//! The engine against the in-repo vendor fakes, with faults injected: what a target that fails
//! does to a run, and that nothing the event log asked for is lost or made twice.
//!
//! - A target failing call after call stops the run before its cursor moves; the next run (after
//!   the backoff) pushes what the failed one had not, and every user is on the target once.
//! - An object that failed is pushed again on its own (no new change needed), with a backoff that
//!   grows with its attempts, up to the last automatic attempt; then only a retry asked for.
//! - Every vendor fake (generic, AWS, GitHub, Salesforce, Slack) takes the users the engine
//!   pushes, their changes and their deprovisioning under its documented rules.
//!
//! Every test runs on SQLite and on PostgreSQL.

#[path = "../../store/tests/harness/mod.rs"]
mod harness;

use harness::*;
use rollcall_fake_targets::{FakeTarget, Fault, FaultRule, Vendor};
use rollcall_outbound::client::{RetryPolicy, Transport};
use rollcall_outbound::engine::{EngineConfig, MAX_OBJECT_ATTEMPTS, Outbound};
use rollcall_store::outbound::*;
use rollcall_store::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": "Example"},
        "emails": [{"value": name, "primary": true}],
        "title": "Engineer",
        "active": true,
    })
}

async fn add_users(store: &dyn Store, ctx: &WriteContext, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}@acme.test");
        out.push(
            store
                .create_resource(ctx, ResourceKind::User, user(&name), vec![])
                .await
                .unwrap()
                .id,
        );
    }
    out
}

async fn set(store: &dyn Store, ctx: &WriteContext, id: &str, attr: &'static str, value: Value) {
    let m: Mutation = Arc::new(move |doc: &mut Value| {
        doc[attr] = value.clone();
        Ok(vec![])
    });
    store
        .update_resource(ctx, ResourceKind::User, id, None, m)
        .await
        .unwrap()
        .unwrap();
}

/// An engine that retries nothing inside one request (each failure is the object's) and backs
/// off for milliseconds, not seconds.
fn engine(store: &Arc<dyn Store>) -> Arc<Outbound> {
    Outbound::new(
        store.clone(),
        Transport::unrestricted(),
        EngineConfig {
            retry_base: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            rate_limits: Some(vec![]),
            request_retry: RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            },
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
}

async fn approved_target(store: &dyn Store, org_id: &str, fake: &FakeTarget) -> Target {
    let ob = store.outbound();
    let mut mapping = AttributeMapping::default();
    if fake.vendor() == Vendor::Salesforce {
        // Every Salesforce user needs exactly one profile: a constant of the mapping.
        mapping = mapping.constant("entitlements", json!([{"value": "00e000000000001"}]));
    }
    let t = ob
        .create_target(
            &WriteContext::cli(),
            NewTarget {
                org_id: org_id.into(),
                name: "Downstream".into(),
                base_url: fake.base_url(),
                auth_kind: AuthKind::Bearer,
                auth: AuthSettings::default(),
                credentials: fake.token(),
                profile: fake.vendor().profile_id().into(),
                scope: TargetScope::default(),
                mapping,
                deprovision: Deprovision::Deactivate,
                deletion_threshold: DeletionThreshold {
                    max_percent: None,
                    max_users: None,
                },
                rate_limit: None,
                interval_s: 3600,
                approved: false,
            },
        )
        .await
        .unwrap();
    ob.approve_target(&WriteContext::cli(), org_id, &t.id)
        .await
        .unwrap()
        .unwrap()
}

async fn objects(store: &dyn Store, t: &Target) -> Vec<TargetObject> {
    store
        .outbound()
        .target_objects(
            &t.org_id,
            &t.id,
            &ObjectQuery {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// The fake's users by externalId (Rollcall's id), each with how many there are.
fn remote_by_external(fake: &FakeTarget) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for u in fake.users() {
        if let Some(x) = u["externalId"].as_str() {
            out.entry(x.to_string()).or_default().push(u.clone());
        }
    }
    out
}

/// Runs the worker's step until nothing is due (a bounded number of times).
async fn run_until_idle(ob: &Outbound) {
    for _ in 0..200 {
        if ob.run_once("node-a").await.unwrap() == 0 {
            // Something may be waiting for its backoff: look again after it.
            tokio::time::sleep(Duration::from_millis(120)).await;
            if ob.run_once("node-a").await.unwrap() == 0 {
                return;
            }
        }
    }
    panic!("the engine never went idle");
}

async fn a_failing_target_stops_the_run_and_loses_nothing(store: Arc<dyn Store>) {
    let fake = FakeTarget::start(Vendor::Generic).await;
    let ctx = tenant(&*store, "acme").await;
    let mut ids = add_users(&*store, &ctx, "first", 3).await;
    let ob = engine(&store);
    let t = approved_target(&*store, &ctx.org_id, &fake).await;
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    assert_eq!(fake.users().len(), 3);

    // Forty users arrive; the target then fails its next 25 creates.
    ids.extend(add_users(&*store, &ctx, "more", 40).await);
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 503,
            retry_after: None,
        })
        .on("POST", "Users")
        .times(25),
    );
    let cursor_before = store
        .outbound()
        .get_target(&ctx.org_id, &t.id)
        .await
        .unwrap()
        .unwrap()
        .cursor_seq;
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    let runs = store.outbound().list_runs(&t.org_id, &t.id, None, 10).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed, "{:?}", runs[0]);
    assert!(
        runs[0].error.as_deref().unwrap_or("").contains("in a row failed"),
        "{:?}",
        runs[0].error
    );
    let after = store.outbound().get_target(&ctx.org_id, &t.id).await.unwrap().unwrap();
    assert_eq!(after.cursor_seq, cursor_before, "a stopped run leaves the cursor");
    assert_eq!(after.failures, 1, "and the target backs off");
    assert!(fake.users().len() < 43);

    // Once the target recovers, everything arrives, once each, with nothing left failed.
    run_until_idle(&ob).await;
    let remote = remote_by_external(&fake);
    for id in &ids {
        assert_eq!(remote.get(id).map(Vec::len), Some(1), "user {id} on the target once");
    }
    assert_eq!(fake.users().len(), 43);
    let objs = objects(&*store, &t).await;
    assert_eq!(objs.len(), 43);
    assert!(
        objs.iter()
            .all(|o| o.state == ObjectState::Synced && o.retry_at_us.is_none()),
        "{objs:?}"
    );
    let status = store.outbound().get_target(&ctx.org_id, &t.id).await.unwrap().unwrap();
    assert_eq!((status.status, status.failures), (TargetStatus::Enabled, 0));
}

async fn failed_objects_are_pushed_again_on_their_own(store: Arc<dyn Store>) {
    let fake = FakeTarget::start(Vendor::Generic).await;
    let ctx = tenant(&*store, "acme").await;
    let ob = engine(&store);
    let t = approved_target(&*store, &ctx.org_id, &fake).await;
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1, "the first (empty) full run");

    // One create refused once (the object's failure, not the target's): the user is failed,
    // due again, and pushed without any new change to it.
    let ids = add_users(&*store, &ctx, "u", 2).await;
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 400,
            retry_after: None,
        })
        .on("POST", "Users"),
    );
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    let failed: Vec<TargetObject> = objects(&*store, &t)
        .await
        .into_iter()
        .filter(|o| o.state == ObjectState::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 1);
    assert!(failed[0].retry_at_us.is_some(), "due again");
    let runs = store.outbound().list_runs(&t.org_id, &t.id, None, 10).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Partial);
    run_until_idle(&ob).await;
    let remote = remote_by_external(&fake);
    for id in &ids {
        assert_eq!(remote.get(id).map(Vec::len), Some(1));
    }
    assert!(
        objects(&*store, &t)
            .await
            .iter()
            .all(|o| o.state == ObjectState::Synced && o.retry_at_us.is_none())
    );

    // An object the target refuses every time: tried MAX_OBJECT_ATTEMPTS times, each after a
    // longer pause, then left failed (shown, not retried in a loop) until a retry is asked for.
    let stubborn = add_users(&*store, &ctx, "stubborn", 1).await.remove(0);
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 400,
            retry_after: None,
        })
        .on("POST", "Users")
        .always(),
    );
    run_until_idle(&ob).await;
    let o = store
        .outbound()
        .target_object(&t.org_id, &t.id, ResourceKind::User, &stubborn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, ObjectState::Failed);
    assert_eq!(o.attempts, MAX_OBJECT_ATTEMPTS);
    assert_eq!(o.retry_at_us, None, "no more automatic attempts");
    assert_eq!(ob.run_once("node-a").await.unwrap(), 0, "nothing due: the target rests");
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == 400)
        .count();
    assert_eq!(posts as i64, 1 + MAX_OBJECT_ATTEMPTS, "each attempt one request");

    // The operator fixes the cause and asks for a retry: pushed at once.
    fake.clear_faults();
    assert!(
        store
            .outbound()
            .retry_object(&t.org_id, &t.id, ResourceKind::User, &stubborn)
            .await
            .unwrap()
    );
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    let o = store
        .outbound()
        .target_object(&t.org_id, &t.id, ResourceKind::User, &stubborn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.state, o.attempts), (ObjectState::Synced, 0));
    assert_eq!(remote_by_external(&fake).get(&stubborn).map(Vec::len), Some(1));

    // A user that failed and then left the scope before it ever reached the target is forgotten,
    // not retried for nothing.
    let gone = add_users(&*store, &ctx, "gone", 1).await.remove(0);
    fake.inject(
        FaultRule::new(Fault::Status {
            status: 400,
            retry_after: None,
        })
        .on("POST", "Users"),
    );
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    set(&*store, &ctx, &gone, "active", json!(false)).await;
    run_until_idle(&ob).await;
    assert!(
        store
            .outbound()
            .target_object(&t.org_id, &t.id, ResourceKind::User, &gone)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!remote_by_external(&fake).contains_key(&gone));
}

/// Users pushed to each vendor's fake, changed, and deprovisioned: every call within the vendor's
/// documented rules (a refused one would leave a failed object).
async fn every_vendor_takes_creates_changes_and_deprovisioning(store: Arc<dyn Store>) {
    for vendor in Vendor::ALL {
        let fake = FakeTarget::start(vendor).await;
        let ctx = tenant(&*store, &format!("org-{}", vendor.profile_id())).await;
        let ids = add_users(&*store, &ctx, vendor.profile_id(), 3).await;
        let ob = engine(&store);
        let t = approved_target(&*store, &ctx.org_id, &fake).await;
        run_until_idle(&ob).await;
        let remote = remote_by_external(&fake);
        for id in &ids {
            assert_eq!(
                remote.get(id).map(Vec::len),
                Some(1),
                "{vendor:?}: user {id} on the target once"
            );
        }
        set(&*store, &ctx, &ids[0], "title", json!("Manager")).await;
        set(&*store, &ctx, &ids[1], "active", json!(false)).await;
        run_until_idle(&ob).await;
        let remote = remote_by_external(&fake);
        let one = |id: &String| remote.get(id).and_then(|v| v.first()).cloned();
        assert_eq!(
            one(&ids[0]).map(|u| u["title"].clone()),
            Some(json!("Manager")),
            "{vendor:?}"
        );
        // Where `active: false` removes the user (GitHub organization SCIM), it is gone; else it
        // stays, inactive.
        let expected = (!vendor.rules().inactive_removes).then(|| json!(false));
        assert_eq!(
            one(&ids[1]).map(|u| u["active"].clone()),
            expected,
            "{vendor:?}: deactivated ({:?})",
            fake.users()
        );
        let objs = objects(&*store, &t).await;
        let failed: Vec<&TargetObject> = objs.iter().filter(|o| o.state == ObjectState::Failed).collect();
        assert!(failed.is_empty(), "{vendor:?}: {failed:?}");
        ob.store
            .outbound()
            .delete_target(&WriteContext::cli(), &ctx.org_id, &t.id)
            .await
            .unwrap();
    }
}

/// A target's own rate limit is what the engine keeps to (in place of the profile's): six creates
/// at 600 a minute with a burst of 1 (and the run's reads) are a tenth of a second apart.
async fn a_target_rate_limit_is_kept(store: Arc<dyn Store>) {
    let fake = FakeTarget::start(Vendor::Generic).await;
    let ctx = tenant(&*store, "acme").await;
    let ob = Outbound::new(
        store.clone(),
        Transport::unrestricted(),
        EngineConfig {
            // No node-wide override: the target's limit applies.
            rate_limits: None,
            ..Default::default()
        },
    );
    let t = approved_target(&*store, &ctx.org_id, &fake).await;
    let t = store
        .outbound()
        .update_target(
            &WriteContext::cli(),
            &ctx.org_id,
            &t.id,
            TargetUpdate {
                rate_limit: Some(Some(RateLimit {
                    per_minute: 600,
                    burst: Some(1),
                })),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.rate_limit.map(|r| r.burst()), Some(1));
    add_users(&*store, &ctx, "r", 6).await;
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    let posts: Vec<std::time::Instant> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.at)
        .collect();
    assert_eq!(posts.len(), 6);
    let requests = fake.requests();
    let span = requests.last().unwrap().at - requests[0].at;
    assert!(
        // 100 ms a request at 600 a minute; 80 leaves room for when each was seen.
        span >= Duration::from_millis(80) * (requests.len() as u32 - 1),
        "{} requests in {span:?}",
        requests.len()
    );
}

contract!(
    a_target_rate_limit_is_kept,
    a_failing_target_stops_the_run_and_loses_nothing,
    failed_objects_are_pushed_again_on_their_own,
    every_vendor_takes_creates_changes_and_deprovisioning
);
