//! Staging connections (`rollcall_store::staging`) on both databases: a staging connection's user
//! and group events never reach the log, its users are out of the directory unless asked for, and
//! going live writes its state as events in an order a consumer can apply; the match report's
//! accounts are kept per connection.

use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_store::*;
use serde_json::{Value, json};
use std::sync::Arc;

mod harness;
use harness::*;

contract!(
    a_staging_connection_is_silent_until_it_goes_live_with_its_state,
    staging_again_silences_it_and_is_refused_while_the_guard_holds,
    match_accounts_are_kept_per_connection,
    writes_racing_with_go_live_are_in_the_snapshot_or_after_it,
);

fn user_doc(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "emails": [{"value": format!("{name}@example.com"), "primary": true}],
    })
}

fn member(id: &str) -> MemberRef {
    MemberRef {
        value: id.to_string(),
        kind: None,
        display: None,
    }
}

fn rename(name: &'static str) -> Mutation {
    Arc::new(move |doc: &mut Value| {
        doc["userName"] = json!(name);
        Ok(vec![])
    })
}

/// Every event of the log about connection `c`.
async fn log_of(s: &dyn Store, c: &str) -> Vec<Event> {
    s.events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.connection_id.as_deref() == Some(c))
        .collect()
}

fn kinds(evs: &[Event]) -> Vec<&str> {
    evs.iter().map(|e| e.kind.as_str()).collect()
}

async fn listed(s: &dyn Store, org: &str, include_staging: bool) -> Vec<String> {
    let q = DirectoryQuery {
        include_staging,
        limit: 100,
        ..Default::default()
    };
    s.directory_users(org, &q, false)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.doc["userName"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn a_staging_connection_is_silent_until_it_goes_live_with_its_state(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let c = ctx.connection_id.as_str();
    let staged = s.stage_connection(&WriteContext::cli(), c).await.unwrap().unwrap();
    let StagingOutcome::Done(conn, None) = staged else {
        panic!("staged: {staged:?}")
    };
    assert!(conn.staged_us.is_some());
    assert!(s.get_connection(c).await.unwrap().unwrap().staged_us.is_some());
    // Users and a group with members, while the organization has no roles (the one-statement
    // writes of PostgreSQL), then with a role mapped to the group (the transactional writes).
    let mut ids = Vec::new();
    for n in ["ann", "bob", "cat"] {
        ids.push(
            s.create_resource(&ctx, ResourceKind::User, user_doc(n), vec![])
                .await
                .unwrap()
                .id,
        );
    }
    let group = s
        .create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff"}),
            vec![],
        )
        .await
        .unwrap();
    let add: Mutation = {
        let (a, b) = (ids[0].clone(), ids[1].clone());
        Arc::new(move |_doc: &mut Value| Ok(vec![MemberChange::Add(vec![member(&a), member(&b)])]))
    };
    s.update_resource(&ctx, ResourceKind::Group, &group.id, None, add)
        .await
        .unwrap()
        .unwrap();
    let role = s
        .create_role(
            &WriteContext::cli(),
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
        &WriteContext::cli(),
        NewRoleMapping {
            connection_id: c.to_string(),
            role_id: role.id.clone(),
            matches: RoleMatch::GroupName("Staff".into()),
        },
    )
    .await
    .unwrap();
    s.update_resource(&ctx, ResourceKind::User, &ids[0], None, rename("ann.lee"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.delete_resource(&ctx, ResourceKind::User, &ids[2], None)
            .await
            .unwrap()
    );
    // The live connection beside it is heard as always.
    s.create_resource(&other, ResourceKind::User, user_doc("gus"), vec![])
        .await
        .unwrap();
    assert_eq!(
        kinds(&log_of(s, &other.connection_id).await),
        ["connection.created", "user.created"]
    );

    // Stored and answered as always (the SCIM view and the roles), but nothing in the log.
    assert_eq!(
        kinds(&log_of(s, c).await),
        ["connection.created", "connection.staged", "role_mapping.created"],
        "only the operator's changes are logged while staging"
    );
    assert!(
        s.get_resource(c, ResourceKind::User, &ids[0], false)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        listed(s, &ctx.org_id, false).await.is_empty(),
        "the directory leaves staging out"
    );
    // (The directory lists deleted users too, with their status.)
    assert_eq!(listed(s, &ctx.org_id, true).await, ["ann.lee", "bob", "cat"]);
    let users = s.match_users(c).await.unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].emails, ["ann@example.com"]);
    assert_eq!(users[0].roles, ["member"]);
    assert_eq!(users[0].user_name.as_deref(), Some("ann.lee"));

    // A default workspace: the staging users are in it, silently until go-live.
    let everyone = s
        .create_workspace(
            &WriteContext::cli(),
            NewWorkspace {
                org_id: ctx.org_id.clone(),
                key: "everyone".into(),
                name: "Everyone".into(),
            },
        )
        .await
        .unwrap();
    s.set_workspace_settings(
        &WriteContext::cli(),
        &ctx.org_id,
        WorkspaceSettingsUpdate {
            default_workspace_id: Some(Some(everyone.id.clone())),
            auto_create: None,
        },
    )
    .await
    .unwrap();
    assert!(
        !kinds(&log_of(s, c).await).contains(&"user.workspaces_changed"),
        "staging users' workspaces are not heard"
    );

    // Go-live: the state as events, in order, then changes as usual.
    let before = s.events_after(0, 100_000).await.unwrap().last().unwrap().seq;
    let live = s.activate_connection(&WriteContext::cli(), c).await.unwrap().unwrap();
    let StagingOutcome::Done(conn, Some(snapshot)) = live else {
        panic!("activated: {live:?}")
    };
    assert_eq!(conn.staged_us, None);
    assert_eq!(
        snapshot,
        Snapshot {
            users: 2,
            groups: 1,
            memberships: 2,
            users_with_roles: 2,
            users_with_workspaces: 2,
        }
    );
    let sent: Vec<Event> = log_of(s, c).await.into_iter().filter(|e| e.seq > before).collect();
    assert_eq!(
        kinds(&sent),
        [
            "connection.activated",
            "user.created",
            "user.created",
            "group.created",
            "group.member_added",
            "group.member_added",
            "user.roles_changed",
            "user.roles_changed",
            "user.workspaces_changed",
            "user.workspaces_changed"
        ]
    );
    assert_eq!(sent[9].data["after"], json!(["everyone"]));
    assert_eq!(sent[0].data["users"], json!(2));
    assert_eq!(sent[1].resource_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(sent[1].data["attributes"]["userName"], json!("ann.lee"));
    assert_eq!(sent[3].data["attributes"]["displayName"], json!("Staff"));
    assert_eq!(sent[4].data["member"], json!(ids[0]));
    assert_eq!(sent[6].data["after"], json!(["member"]));
    assert!(
        sent[1..]
            .iter()
            .all(|e| e.data["reason"] == json!("connection_activated"))
    );
    assert_eq!(listed(s, &ctx.org_id, false).await, ["ann.lee", "bob", "cat"]);
    s.update_resource(&ctx, ResourceKind::User, &ids[1], None, rename("bob.roe"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log_of(s, c).await.last().unwrap().kind, "user.updated");
    let again = s.activate_connection(&WriteContext::cli(), c).await.unwrap().unwrap();
    assert!(matches!(again, StagingOutcome::Already(_)));
    assert!(
        s.activate_connection(&WriteContext::cli(), "nope")
            .await
            .unwrap()
            .is_none()
    );
}

async fn staging_again_silences_it_and_is_refused_while_the_guard_holds(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let c = ctx.connection_id.as_str();
    let id = s
        .create_resource(&ctx, ResourceKind::User, user_doc("ann"), vec![])
        .await
        .unwrap()
        .id;
    let staged = s.stage_connection(&WriteContext::cli(), c).await.unwrap().unwrap();
    assert!(matches!(staged, StagingOutcome::Done(_, None)));
    let log = log_of(s, c).await;
    assert_eq!(log.last().unwrap().kind, "connection.staged");
    assert_eq!(log.last().unwrap().data, json!({"users": 1, "groups": 0}));
    assert!(matches!(
        s.stage_connection(&WriteContext::cli(), c).await.unwrap().unwrap(),
        StagingOutcome::Already(_)
    ));
    s.update_resource(&ctx, ResourceKind::User, &id, None, rename("ann.lee"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log_of(s, c).await.last().unwrap().kind, "connection.staged");
    assert!(listed(s, &ctx.org_id, false).await.is_empty());
    s.activate_connection(&WriteContext::cli(), c).await.unwrap().unwrap();

    // A guard holding deprovisions: staging would hide what it holds; refused until resolved.
    s.set_deprovision_guard(
        &WriteContext::cli(),
        c,
        &GuardSettings {
            max_users: Some(0),
            ..GuardSettings::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    s.delete_resource(&ctx, ResourceKind::User, &id, None).await.unwrap();
    let held = s.stage_connection(&WriteContext::cli(), c).await.unwrap().unwrap();
    assert!(matches!(held, StagingOutcome::GuardHolds(n) if n > 0), "{held:?}");
    assert!(s.get_connection(c).await.unwrap().unwrap().staged_us.is_none());
    s.resolve_deprovision_guard(&WriteContext::cli(), c, false)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        s.stage_connection(&WriteContext::cli(), c).await.unwrap().unwrap(),
        StagingOutcome::Done(..)
    ));
}

async fn match_accounts_are_kept_per_connection(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let c = ctx.connection_id.as_str();
    assert_eq!(s.match_accounts(c).await.unwrap(), None);
    assert!(!s.delete_match_accounts(&WriteContext::cli(), c).await.unwrap());
    let accounts = vec![
        MatchAccount {
            email: Some("ann@example.com".into()),
            external_id: None,
            roles: Some(vec!["admin".into()]),
        },
        MatchAccount {
            email: None,
            external_id: Some("00u1".into()),
            roles: None,
        },
    ];
    let up = s
        .set_match_accounts(&WriteContext::cli(), c, &accounts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.accounts, accounts);
    let read = s.match_accounts(c).await.unwrap().unwrap();
    assert_eq!((read.accounts, read.uploaded_us), (accounts.clone(), up.uploaded_us));
    assert_eq!(s.match_accounts(&other.connection_id).await.unwrap(), None);
    // Replaced, not added to.
    s.set_match_accounts(&WriteContext::cli(), c, &accounts[1..])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.match_accounts(c).await.unwrap().unwrap().accounts, accounts[1..]);
    assert!(
        s.set_match_accounts(&WriteContext::cli(), "nope", &accounts)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.delete_match_accounts(&WriteContext::cli(), c).await.unwrap());
    assert_eq!(s.match_accounts(c).await.unwrap(), None);
    let log = log_of(s, c).await;
    assert_eq!(
        kinds(&log)[1..],
        [
            "connection.match_report_uploaded",
            "connection.match_report_uploaded",
            "connection.match_report_deleted"
        ]
    );
    assert_eq!(log[1].data, json!({"accounts": 2}));
    // Deleting the connection deletes its upload.
    s.set_match_accounts(&WriteContext::cli(), c, &accounts)
        .await
        .unwrap()
        .unwrap();
    assert!(s.delete_connection(&WriteContext::cli(), c).await.unwrap());
    assert_eq!(s.match_accounts(c).await.unwrap(), None);
}

/// Identity provider writes running while the connection goes live: each is either in the
/// snapshot (its events left out) or after it (its events in the log), never lost nor doubled, so
/// a consumer that starts at `connection.activated` ends with the connection's users.
async fn writes_racing_with_go_live_are_in_the_snapshot_or_after_it(store: Arc<dyn Store>) {
    use std::collections::BTreeMap;
    let ctx = tenant(&*store, "acme").await;
    let c = ctx.connection_id.clone();
    store.stage_connection(&WriteContext::cli(), &c).await.unwrap().unwrap();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (store, ctx) = (store.clone(), ctx.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..12 {
                let name = format!("w{w}-{i}");
                let id = store
                    .create_resource(&ctx, ResourceKind::User, user_doc(&name), vec![])
                    .await
                    .unwrap()
                    .id;
                let renamed: Mutation = Arc::new(move |doc: &mut Value| {
                    doc["userName"] = json!(format!("{}-renamed", doc["userName"].as_str().unwrap_or_default()));
                    Ok(vec![])
                });
                store
                    .update_resource(&ctx, ResourceKind::User, &id, None, renamed)
                    .await
                    .unwrap()
                    .unwrap();
            }
        }));
    }
    // Going live while they write: once some of their users exist, most still to come.
    while store.match_users(&c).await.unwrap().len() < 12 {
        tokio::task::yield_now().await;
    }
    let live = store
        .activate_connection(&WriteContext::cli(), &c)
        .await
        .unwrap()
        .unwrap();
    let StagingOutcome::Done(_, Some(snapshot)) = live else {
        panic!("{live:?}")
    };
    assert!(snapshot.users >= 12, "{snapshot:?}");
    for w in writers {
        w.await.unwrap();
    }
    let log = log_of(&*store, &c).await;
    let start = log
        .iter()
        .position(|e| e.kind == "connection.activated")
        .expect("connection.activated");
    let mut mirror: BTreeMap<String, String> = BTreeMap::new();
    for e in &log[start + 1..] {
        let id = e.resource_id.clone().unwrap_or_default();
        match e.kind.as_str() {
            "user.created" => {
                let name = e.data["attributes"]["userName"].as_str().unwrap().to_string();
                assert!(mirror.insert(id, name).is_none(), "created twice");
            }
            "user.updated" => {
                let name = e.data["changed"]["userName"]["after"].as_str().unwrap().to_string();
                *mirror.get_mut(&id).expect("an update of a user the consumer has") = name;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let directory: BTreeMap<String, String> = store
        .directory_users(
            &ctx.org_id,
            &DirectoryQuery {
                limit: 1000,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id, u.doc["userName"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(directory.len(), 48);
    assert!(directory.values().all(|n| n.ends_with("-renamed")));
    assert_eq!(mirror, directory);
}
