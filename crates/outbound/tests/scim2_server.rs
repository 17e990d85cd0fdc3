//! The engine against a real SCIM 2.0 server: the PyPI `scim2-server` (pinned), installed into a
//! virtual environment under the target directory when missing and started on a free port for
//! each test. Every test runs on SQLite and on PostgreSQL.
//!
//! What it shows: a plan before the first push, which writes nothing; nothing is pushed until
//! the target is approved; the push creates, links what exists (no duplicates, also after a
//! create whose answer was lost), and a second run sends nothing; changes from the event log reach
//! the target; a stale mapping (the remote user deleted behind Rollcall's back) is created again;
//! a full reconciliation repairs drift; the deletion threshold pauses the target before any
//! deprovision; groups are pushed with their members from the mapping table.

mod downstream;
#[path = "../../store/tests/harness/mod.rs"]
mod harness;

use downstream::{Downstream, TOKEN};
use harness::*;
use rollcall_outbound::client::Transport;
use rollcall_outbound::engine::{EngineConfig, Outbound};
use rollcall_outbound::plan::UserAction;
use rollcall_scim::patch::MemberRef;
use rollcall_store::outbound::*;
use rollcall_store::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn user(name: &str, given: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": given, "familyName": "Example"},
        "emails": [{"value": name, "primary": true}],
        "title": "Engineer",
        "active": true,
    })
}

async fn add_user(store: &dyn Store, ctx: &WriteContext, name: &str) -> String {
    store
        .create_resource(ctx, ResourceKind::User, user(name, "Given"), vec![])
        .await
        .unwrap()
        .id
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

fn engine(store: &Arc<dyn Store>) -> Arc<Outbound> {
    Outbound::new(
        store.clone(),
        Transport::unrestricted(),
        EngineConfig {
            retry_base: Duration::from_millis(10),
            ..Default::default()
        },
    )
}

async fn target(store: &dyn Store, org_id: &str, url: &str, scope: TargetScope) -> Target {
    store
        .outbound()
        .create_target(
            &WriteContext::cli(),
            NewTarget {
                org_id: org_id.into(),
                name: "Downstream".into(),
                base_url: url.into(),
                auth_kind: AuthKind::Bearer,
                auth: AuthSettings::default(),
                credentials: TOKEN.into(),
                profile: "generic".into(),
                scope,
                mapping: AttributeMapping::default(),
                deprovision: Deprovision::Deactivate,
                deletion_threshold: DeletionThreshold::default(),
                rate_limit: None,
                interval_s: 3600,
                approved: false,
            },
        )
        .await
        .unwrap()
}

async fn reread(store: &dyn Store, t: &Target) -> Target {
    store.outbound().get_target(&t.org_id, &t.id).await.unwrap().unwrap()
}

async fn objects(store: &dyn Store, t: &Target) -> Vec<TargetObject> {
    store
        .outbound()
        .target_objects(
            &t.org_id,
            &t.id,
            &ObjectQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn provisioning_events(store: &dyn Store, kind: &str) -> Vec<Event> {
    store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

async fn plan_approve_push_and_sync(store: Arc<dyn Store>) {
    let down = Downstream::start().await;
    let ctx = tenant(&*store, "acme").await;
    let ids: Vec<String> = futures_ids(&*store, &ctx, &["ann@acme.test", "bob@acme.test", "cy@acme.test"]).await;
    // bob already exists downstream (made by hand, no externalId): it is linked, not duplicated.
    down.post("Users", user("Bob@acme.test", "Robert")).await;
    let ob = engine(&store);
    let t = target(&*store, &ctx.org_id, &down.url, TargetScope::default()).await;

    // The plan: two creates and a link, written nowhere.
    let plan = ob.plan(&t).await.unwrap();
    assert_eq!(plan.summary.users_in_scope, 3);
    assert_eq!((plan.summary.create, plan.summary.link), (2, 1), "{plan:?}");
    assert_eq!(plan.remote_users_read, 1);
    let bob = plan.users.iter().find(|u| u.user_id == ids[1]).unwrap();
    assert!(
        matches!(&bob.action, UserAction::Link { changes, .. } if changes.iter().any(|c| c.attribute == "externalId"))
    );
    assert_eq!(down.users().await.len(), 1, "a plan writes nothing");
    assert!(objects(&*store, &t).await.is_empty());

    // Not approved: nothing runs.
    assert_eq!(ob.run_once("node-a").await.unwrap(), 0);
    assert_eq!(down.users().await.len(), 1);

    // Approved: the first push does what the plan said.
    store
        .outbound()
        .approve_target(&WriteContext::cli(), &ctx.org_id, &t.id)
        .await
        .unwrap();
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    let remote = down.users().await;
    assert_eq!(remote.len(), 3, "{remote:?}");
    for name in ["ann@acme.test", "bob@acme.test", "cy@acme.test"] {
        assert_eq!(down.user_named(name).await.len(), 1, "one {name}");
    }
    let linked_bob = &down.user_named("bob@acme.test").await[0];
    assert_eq!(linked_bob["externalId"], json!(ids[1]), "linked and updated");
    let objs = objects(&*store, &t).await;
    assert_eq!(objs.len(), 3);
    assert!(
        objs.iter()
            .all(|o| o.state == ObjectState::Synced && o.remote_id.is_some())
    );
    let runs = store.outbound().list_runs(&t.org_id, &t.id, None, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].kind, RunKind::Full);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!((runs[0].counts.created, runs[0].counts.linked), (2, 1));
    assert_eq!(
        provisioning_events(&*store, events::PROVISIONING_OBJECT_PUSHED)
            .await
            .len(),
        3
    );
    let finished = provisioning_events(&*store, events::PROVISIONING_RUN_FINISHED).await;
    assert_eq!(finished[0].data["counts"]["created"], json!(2));

    // Its own events only move the cursor: no run, no request.
    ob.run_once("node-a").await.unwrap();
    assert_eq!(
        store
            .outbound()
            .list_runs(&t.org_id, &t.id, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // A change in Rollcall reaches the target from the event log, the mapping table saying where.
    set(&*store, &ctx, &ids[0], "title", json!("Manager")).await;
    assert_eq!(ob.run_once("node-a").await.unwrap(), 1);
    let ann = &down.user_named("ann@acme.test").await[0];
    assert_eq!(ann["title"], json!("Manager"));
    let runs = store.outbound().list_runs(&t.org_id, &t.id, None, 10).await.unwrap();
    assert_eq!(runs[0].kind, RunKind::Events);
    assert_eq!(runs[0].counts.updated, 1);
    assert_eq!(
        runs[0].counts.requests, 1,
        "one PATCH: no read-back, and the ServiceProviderConfig read by the full run is kept"
    );

    // Deactivated in Rollcall: deactivated downstream (one of three is more than 10 %: lower the
    // threshold's percentage rule out of the way first).
    store
        .outbound()
        .update_target(
            &WriteContext::cli(),
            &ctx.org_id,
            &t.id,
            TargetUpdate {
                deletion_threshold: Some(DeletionThreshold {
                    max_percent: None,
                    max_users: Some(50),
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    set(&*store, &ctx, &ids[2], "active", json!(false)).await;
    ob.run_once("node-a").await.unwrap();
    let cy = &down.user_named("cy@acme.test").await[0];
    assert_eq!(cy["active"], json!(false));
    let o = store
        .outbound()
        .target_object(&t.org_id, &t.id, ResourceKind::User, &ids[2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.state, ObjectState::Deactivated);

    // A full reconciliation on demand: nothing to create, drift repaired.
    let ann_id = ann["id"].as_str().unwrap().to_string();
    down.patch(
        &format!("Users/{ann_id}"),
        json!([{"op": "replace", "path": "title", "value": "Changed behind our back"}]),
    )
    .await;
    store
        .outbound()
        .request_target_sync(&ctx.org_id, &t.id, rollcall_store::sqlite::now_us())
        .await
        .unwrap();
    ob.run_once("node-a").await.unwrap();
    let runs = store.outbound().list_runs(&t.org_id, &t.id, None, 10).await.unwrap();
    assert_eq!(runs[0].kind, RunKind::Full);
    assert_eq!(
        (runs[0].counts.created, runs[0].counts.repaired),
        (0, 1),
        "{:?}",
        runs[0]
    );
    assert_eq!(down.get(&format!("Users/{ann_id}")).await["title"], json!("Manager"));
    assert_eq!(down.users().await.len(), 3, "never a duplicate");
}

async fn futures_ids(store: &dyn Store, ctx: &WriteContext, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        out.push(add_user(store, ctx, n).await);
    }
    out
}

async fn stale_mappings_and_lost_answers(store: Arc<dyn Store>) {
    let down = Downstream::start().await;
    let ctx = tenant(&*store, "acme").await;
    let ids = futures_ids(&*store, &ctx, &["ann@acme.test", "bob@acme.test"]).await;
    let ob = engine(&store);
    let t = target(&*store, &ctx.org_id, &down.url, TargetScope::default()).await;
    store
        .outbound()
        .approve_target(&WriteContext::cli(), &ctx.org_id, &t.id)
        .await
        .unwrap();
    ob.run_once("n").await.unwrap();
    assert_eq!(down.users().await.len(), 2);

    // Someone deletes ann downstream; a change in Rollcall finds the mapping stale (404) and
    // creates her again.
    let ann = down.user_named("ann@acme.test").await.remove(0);
    down.delete(&format!("Users/{}", ann["id"].as_str().unwrap())).await;
    set(&*store, &ctx, &ids[0], "title", json!("Lead")).await;
    ob.run_once("n").await.unwrap();
    let again = down.user_named("ann@acme.test").await;
    assert_eq!(again.len(), 1);
    assert_ne!(again[0]["id"], ann["id"]);
    assert_eq!(again[0]["title"], json!("Lead"));
    let o = store
        .outbound()
        .target_object(&t.org_id, &t.id, ResourceKind::User, &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.remote_id.as_deref(), again[0]["id"].as_str());

    // A create whose answer was lost: the target made the user (with Rollcall's id as its
    // externalId), Rollcall never recorded it. The next push finds it by externalId and links.
    let cy = add_user(&*store, &ctx, "cy@acme.test").await;
    let mut made = user("cy@acme.test", "Given");
    made["externalId"] = json!(cy);
    down.post("Users", made).await;
    ob.run_once("n").await.unwrap();
    assert_eq!(
        down.user_named("cy@acme.test").await.len(),
        1,
        "no duplicate after a lost answer"
    );
    let runs = store.outbound().list_runs(&t.org_id, &t.id, None, 1).await.unwrap();
    assert_eq!((runs[0].counts.linked, runs[0].counts.created), (1, 0), "{:?}", runs[0]);
    let pushed = provisioning_events(&*store, events::PROVISIONING_OBJECT_PUSHED).await;
    let last = pushed.last().unwrap();
    assert_eq!(last.data["action"], json!("linked"));
    assert_eq!(last.data["matched_by"], json!("externalId"));
    assert_eq!(last.resource_id.as_deref(), Some(cy.as_str()));
    let _ = ids;
}

async fn deletion_threshold_pauses_before_deprovisioning(store: Arc<dyn Store>) {
    let down = Downstream::start().await;
    let ctx = tenant(&*store, "acme").await;
    let names: Vec<String> = (0..12).map(|i| format!("u{i:02}@acme.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = futures_ids(&*store, &ctx, &refs).await;
    let ob = engine(&store);
    let t = target(&*store, &ctx.org_id, &down.url, TargetScope::default()).await;
    store
        .outbound()
        .approve_target(&WriteContext::cli(), &ctx.org_id, &t.id)
        .await
        .unwrap();
    ob.run_once("n").await.unwrap();
    assert_eq!(down.users().await.len(), 12);
    // Two of twelve deactivated in one run: more than 10 %.
    set(&*store, &ctx, &ids[0], "active", json!(false)).await;
    set(&*store, &ctx, &ids[1], "active", json!(false)).await;
    // The plan says so.
    let plan = ob.plan(&reread(&*store, &t).await).await.unwrap();
    assert_eq!(plan.summary.deactivate, 2);
    assert!(plan.summary.exceeds_deletion_threshold);
    ob.run_once("n").await.unwrap();
    let t2 = reread(&*store, &t).await;
    assert_eq!(t2.status, TargetStatus::Paused);
    assert!(t2.status_reason.as_deref().unwrap().contains("deletion threshold"));
    assert!(
        down.users().await.iter().all(|u| u["active"] == json!(true)),
        "nobody deactivated"
    );
    let paused = provisioning_events(&*store, events::PROVISIONING_TARGET_PAUSED).await;
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].data["removals"], json!(2));
    // Paused: nothing runs.
    set(&*store, &ctx, &ids[2], "title", json!("x")).await;
    assert_eq!(ob.run_once("n").await.unwrap(), 0);
}

async fn groups_pushed_with_members(store: Arc<dyn Store>) {
    let down = Downstream::start().await;
    let ctx = tenant(&*store, "acme").await;
    let ids = futures_ids(&*store, &ctx, &["ann@acme.test", "bob@acme.test", "cy@acme.test"]).await;
    let member = |id: &str| MemberRef {
        value: id.to_string(),
        kind: Some("User".into()),
        display: None,
    };
    let g = store
        .create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"}),
            vec![member(&ids[0]), member(&ids[1])],
        )
        .await
        .unwrap();
    let ob = engine(&store);
    let t = target(
        &*store,
        &ctx.org_id,
        &down.url,
        TargetScope {
            groups: vec![g.id.clone()],
            push_groups: vec![g.id.clone()],
            ..Default::default()
        },
    )
    .await;
    let plan = ob.plan(&t).await.unwrap();
    assert_eq!(plan.summary.users_in_scope, 2, "members of the group only");
    store
        .outbound()
        .approve_target(&WriteContext::cli(), &ctx.org_id, &t.id)
        .await
        .unwrap();
    ob.run_once("n").await.unwrap();
    assert_eq!(down.users().await.len(), 2);
    let groups = down.get("Groups").await["Resources"].as_array().cloned().unwrap();
    assert_eq!(groups.len(), 1);
    let members: Vec<&str> = groups[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    // cy joins the group: pushed as a user, then added as a member.
    let add: Mutation = Arc::new({
        let cy = ids[2].clone();
        move |_doc: &mut Value| {
            Ok(vec![rollcall_scim::patch::MemberChange::Add(vec![MemberRef {
                value: cy.clone(),
                kind: Some("User".into()),
                display: None,
            }])])
        }
    });
    store
        .update_resource(&ctx, ResourceKind::Group, &g.id, None, add)
        .await
        .unwrap();
    ob.run_once("n").await.unwrap();
    assert_eq!(down.users().await.len(), 3);
    let group = down.get(&format!("Groups/{}", groups[0]["id"].as_str().unwrap())).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 3, "{group}");
}

contract!(
    plan_approve_push_and_sync,
    stale_mappings_and_lost_answers,
    deletion_threshold_pauses_before_deprovisioning,
    groups_pushed_with_members
);
