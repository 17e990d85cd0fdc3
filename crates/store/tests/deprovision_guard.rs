//! The guard against mass deprovisioning (`rollcall_store::guard`) on both databases: the
//! deprovisions past the threshold are applied to the SCIM view but their events are held, until
//! released into the log or discarded; a reactivation drops what was held for the user.

use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_store::*;
use serde_json::{Value, json};
use std::sync::Arc;

mod harness;
use harness::*;

contract!(
    a_mass_deactivation_trips_the_guard_and_a_release_delivers_it,
    a_discard_drops_what_was_held_and_settings_are_kept,
    removals_from_mapped_groups_count_and_are_held_together,
);

fn user_doc(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
    })
}

fn set_active(active: bool) -> Mutation {
    Arc::new(move |doc: &mut Value| {
        doc["active"] = json!(active);
        Ok(vec![])
    })
}

async fn users(s: &dyn Store, ctx: &WriteContext, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let u = s
            .create_resource(ctx, ResourceKind::User, user_doc(&format!("u{i:02}")), vec![])
            .await
            .expect("user");
        ids.push(u.id);
    }
    ids
}

async fn deactivate(s: &dyn Store, ctx: &WriteContext, id: &str) {
    s.update_resource(ctx, ResourceKind::User, id, None, set_active(false))
        .await
        .expect("deactivate")
        .expect("exists");
}

/// The connection's events of `kind` (in the log: what the application sees).
async fn logged(s: &dyn Store, ctx: &WriteContext, kind: &str) -> Vec<Event> {
    s.events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == kind && e.connection_id.as_deref() == Some(ctx.connection_id.as_str()))
        .collect()
}

async fn state(s: &dyn Store, ctx: &WriteContext) -> GuardState {
    s.deprovision_guard(&ctx.connection_id)
        .await
        .expect("guard")
        .expect("connection")
}

async fn a_mass_deactivation_trips_the_guard_and_a_release_delivers_it(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let ids = users(s, &ctx, 40).await;
    let fresh = state(s, &ctx).await;
    assert_eq!(fresh.settings, GuardSettings::default());
    assert_eq!(
        (fresh.tripped_us, fresh.held_events, fresh.window_deprovisions),
        (None, 0, 0)
    );

    // 40 active users, default policy: the 11th deactivation is more than 10 % (and more than 10).
    for id in &ids[..10] {
        deactivate(s, &ctx, id).await;
    }
    assert_eq!(logged(s, &ctx, events::USER_DEACTIVATED).await.len(), 10);
    assert!(
        logged(s, &ctx, events::CONNECTION_DEPROVISION_GUARD_TRIPPED)
            .await
            .is_empty()
    );
    assert_eq!(state(s, &ctx).await.window_deprovisions, 10);
    for id in &ids[10..16] {
        deactivate(s, &ctx, id).await;
    }
    // The SCIM view follows the identity provider at once.
    for id in &ids[..16] {
        let u = s
            .get_resource(&ctx.connection_id, ResourceKind::User, id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.doc.get("active"), Some(&json!(false)), "{id} is inactive");
    }
    // ...but the application heard only of the first ten, and of the trip, once.
    assert_eq!(logged(s, &ctx, events::USER_DEACTIVATED).await.len(), 10);
    let tripped = logged(s, &ctx, events::CONNECTION_DEPROVISION_GUARD_TRIPPED).await;
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0].data["rule"], "max_percent");
    assert_eq!(tripped[0].data["deprovisioned_users"], 11);
    assert_eq!(tripped[0].data["active_users"], 40);
    let st = state(s, &ctx).await;
    assert!(st.tripped_us.is_some());
    assert_eq!((st.held_users, st.held_events), (6, 6));
    let held = s.held_events(&ctx.connection_id, 0, 100).await.unwrap();
    let held_users: Vec<&str> = held.iter().map(|h| h.user_id.as_str()).collect();
    assert_eq!(held_users, ids[10..16].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        held.iter()
            .all(|h| h.event.kind == events::USER_DEACTIVATED && h.event.seq == 0)
    );
    // Paging by position.
    let page = s.held_events(&ctx.connection_id, held[1].seq, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|h| h.seq).collect::<Vec<_>>(),
        [held[2].seq, held[3].seq]
    );

    // Other changes keep flowing: a creation, a profile update.
    let newcomer = s
        .create_resource(&ctx, ResourceKind::User, user_doc("newcomer"), vec![])
        .await
        .unwrap();
    let rename: Mutation = Arc::new(|doc: &mut Value| {
        doc["displayName"] = json!("Renamed");
        Ok(vec![])
    });
    s.update_resource(&ctx, ResourceKind::User, &ids[30], None, rename)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged(s, &ctx, events::USER_UPDATED).await.len(), 1);
    assert!(
        logged(s, &ctx, events::USER_CREATED)
            .await
            .iter()
            .any(|e| e.resource_id.as_deref() == Some(newcomer.id.as_str()))
    );

    // A deletion while tripped is held too; a user reactivated while held produces no deactivation.
    assert!(
        s.delete_resource(&ctx, ResourceKind::User, &ids[31], None)
            .await
            .unwrap()
    );
    assert!(logged(s, &ctx, events::USER_DELETED).await.is_empty());
    s.update_resource(&ctx, ResourceKind::User, &ids[12], None, set_active(true))
        .await
        .unwrap()
        .unwrap();
    let st = state(s, &ctx).await;
    assert_eq!((st.held_users, st.held_events), (6, 6), "u12 left, u31 came");
    assert!(
        s.held_events(&ctx.connection_id, 0, 100)
            .await
            .unwrap()
            .iter()
            .all(|h| h.user_id != ids[12])
    );

    // Release: one event naming the counts, then the held events in order, with their ids.
    let before = s.events_after(0, 100_000).await.unwrap().last().unwrap().seq;
    let operator = WriteContext {
        actor: Actor::ApiKey {
            id: "k1".into(),
            name: "ops".into(),
        },
        ..WriteContext::default()
    };
    let r = s
        .resolve_deprovision_guard(&operator, &ctx.connection_id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.events, r.users), (6, 6));
    assert_eq!(r.tripped_us, st.tripped_us);
    let after: Vec<Event> = s.events_after(before, 100).await.unwrap();
    assert_eq!(after.len(), 7);
    assert_eq!(after[0].kind, events::CONNECTION_DEPROVISION_GUARD_RELEASED);
    assert_eq!(after[0].data["events"], 6);
    assert_eq!(after[0].connection_id.as_deref(), Some(ctx.connection_id.as_str()));
    assert!(matches!(&after[0].actor, Actor::ApiKey { name, .. } if name == "ops"));
    let released: Vec<(&str, &str)> = after[1..]
        .iter()
        .map(|e| (e.kind.as_str(), e.resource_id.as_deref().unwrap()))
        .collect();
    let mut expected: Vec<(&str, &str)> = [10, 11, 13, 14, 15]
        .iter()
        .map(|i| (events::USER_DEACTIVATED, ids[*i].as_str()))
        .collect();
    expected.push((events::USER_DELETED, ids[31].as_str()));
    assert_eq!(released, expected);
    assert!(
        matches!(&after[1].actor, Actor::ScimToken { .. }),
        "the identity provider's change, as it was"
    );
    assert_eq!(after[1].id, held[0].event.id);
    // Re-armed with an empty window: the next deactivation flows.
    let st = state(s, &ctx).await;
    assert_eq!((st.tripped_us, st.held_events, st.window_deprovisions), (None, 0, 0));
    deactivate(s, &ctx, &ids[32]).await;
    assert_eq!(s.held_events(&ctx.connection_id, 0, 10).await.unwrap().len(), 0);
    // Nothing to resolve: nothing written.
    let last = s.events_after(0, 100_000).await.unwrap().last().unwrap().seq;
    let none = s
        .resolve_deprovision_guard(&operator, &ctx.connection_id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((none.events, none.tripped_us), (0, None));
    assert_eq!(s.events_after(last, 10).await.unwrap().len(), 0);
    assert!(s.deprovision_guard("nope").await.unwrap().is_none());
    assert!(
        s.resolve_deprovision_guard(&operator, "nope", true)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_discard_drops_what_was_held_and_settings_are_kept(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let ids = users(s, &ctx, 8).await;
    let theirs = users(s, &other, 8).await;
    let strict = GuardSettings {
        max_users: Some(2),
        max_percent: None,
        ..GuardSettings::default()
    };
    let st = s
        .set_deprovision_guard(&WriteContext::cli(), &ctx.connection_id, &strict)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.settings, strict);
    let set = logged(s, &ctx, events::CONNECTION_DEPROVISION_GUARD_SET).await;
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].data["after"]["max_users"], 2);
    assert_eq!(set[0].data["before"]["max_users"], 25);
    // Three deletions: the third trips (more than 2).
    for id in &ids[..3] {
        assert!(s.delete_resource(&ctx, ResourceKind::User, id, None).await.unwrap());
    }
    assert_eq!(logged(s, &ctx, events::USER_DELETED).await.len(), 2);
    assert_eq!(state(s, &ctx).await.held_events, 1);
    // Another connection is not affected by this one's guard (its default allows 3 of 8).
    for id in &theirs[..3] {
        deactivate(s, &other, id).await;
    }
    assert_eq!(logged(s, &other, events::USER_DEACTIVATED).await.len(), 3);
    assert_eq!(state(s, &other).await.tripped_us, None);

    let before = s.events_after(0, 100_000).await.unwrap().last().unwrap().seq;
    let r = s
        .resolve_deprovision_guard(&WriteContext::cli(), &ctx.connection_id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.events, r.users), (1, 1));
    let after = s.events_after(before, 100).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].kind, events::CONNECTION_DEPROVISION_GUARD_DISCARDED);
    assert_eq!(after[0].data["users"], 1);
    assert!(after[0].data["tripped_at"].is_string());
    let st = state(s, &ctx).await;
    assert_eq!((st.tripped_us, st.held_events), (None, 0));
    assert_eq!(st.settings, strict, "settings survive a discard");
    // The SCIM view still follows the identity provider.
    assert!(
        s.get_resource(&ctx.connection_id, ResourceKind::User, &ids[2], false)
            .await
            .unwrap()
            .is_none()
    );

    // Off: nothing is held however many.
    let off = GuardSettings {
        enabled: false,
        ..strict
    };
    s.set_deprovision_guard(&WriteContext::cli(), &ctx.connection_id, &off)
        .await
        .unwrap()
        .unwrap();
    for id in &ids[3..8] {
        deactivate(s, &ctx, id).await;
    }
    assert_eq!(logged(s, &ctx, events::USER_DEACTIVATED).await.len(), 5);
    let st = state(s, &ctx).await;
    assert_eq!((st.tripped_us, st.held_events), (None, 0));
    assert!(
        s.set_deprovision_guard(&WriteContext::cli(), "nope", &off)
            .await
            .unwrap()
            .is_none()
    );
}

async fn removals_from_mapped_groups_count_and_are_held_together(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let role = s
        .create_role(
            &ctx,
            NewRole {
                org_id: ctx.org_id.clone(),
                key: "member".into(),
                name: "Member".into(),
                description: None,
            },
        )
        .await
        .unwrap();
    s.create_role_mapping(
        &ctx,
        NewRoleMapping {
            connection_id: ctx.connection_id.clone(),
            role_id: role.id.clone(),
            matches: RoleMatch::GroupName("Staff".into()),
        },
    )
    .await
    .unwrap();
    let ids = users(s, &ctx, 6).await;
    let members: Vec<MemberRef> = ids
        .iter()
        .map(|id| MemberRef {
            value: id.clone(),
            kind: None,
            display: None,
        })
        .collect();
    let group = s
        .create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff"}),
            members,
        )
        .await
        .unwrap();
    s.set_deprovision_guard(
        &WriteContext::cli(),
        &ctx.connection_id,
        &GuardSettings {
            max_users: Some(1),
            ..GuardSettings::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    // One PATCH removes three members: they lose their only role, so the write deprovisions three
    // (more than 1): all three are held, each with its removal and its role change.
    let remove: Vec<String> = ids[..3].to_vec();
    let patch: Mutation = Arc::new(move |_doc: &mut Value| Ok(vec![MemberChange::Remove(remove.clone())]));
    s.update_resource(&ctx, ResourceKind::Group, &group.id, None, patch)
        .await
        .unwrap()
        .unwrap();
    assert!(logged(s, &ctx, events::GROUP_MEMBER_REMOVED).await.is_empty());
    assert!(
        logged(s, &ctx, events::USER_ROLES_CHANGED)
            .await
            .iter()
            .all(|e| e.data["after"] != json!([])),
        "no role loss reached the log"
    );
    let held = s.held_events(&ctx.connection_id, 0, 100).await.unwrap();
    assert_eq!(held.len(), 6);
    let mut kinds: Vec<&str> = held.iter().map(|h| h.event.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds.iter().filter(|k| **k == events::GROUP_MEMBER_REMOVED).count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == events::USER_ROLES_CHANGED).count(), 3);
    // Added back: the user's held removal and role loss are dropped; the addition flows.
    let back = ids[0].clone();
    let patch: Mutation = Arc::new(move |_doc: &mut Value| {
        Ok(vec![MemberChange::Add(vec![MemberRef {
            value: back.clone(),
            kind: None,
            display: None,
        }])])
    });
    s.update_resource(&ctx, ResourceKind::Group, &group.id, None, patch)
        .await
        .unwrap()
        .unwrap();
    let st = state(s, &ctx).await;
    assert_eq!((st.held_users, st.held_events), (2, 4));
    // Deleting the group deprovisions the rest of its members; held as well.
    assert!(
        s.delete_resource(&ctx, ResourceKind::Group, &group.id, None)
            .await
            .unwrap()
    );
    let st = state(s, &ctx).await;
    assert_eq!(st.held_users, 6);
    assert_eq!(
        logged(s, &ctx, events::GROUP_DELETED).await.len(),
        1,
        "the group's own deletion flows"
    );
}
