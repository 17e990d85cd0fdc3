//! Workspaces ([`rollcall_store::workspaces`]) on both databases: effective workspaces follow
//! mappings, the default workspace, memberships, status and group renames and deletions, stored in
//! the transaction of each change with one `user.workspaces_changed` event per user whose set
//! changed; a workspace for every group; the directory filter; previews; refusals; roles untouched.

use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_store::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod harness;
use harness::*;

contract!(
    workspaces_follow_mappings_defaults_memberships_and_status,
    a_workspace_for_every_group_follows_the_group,
    a_preview_matches_what_the_mapping_does,
    bad_input_is_refused_and_changes_nothing,
    roles_and_workspaces_are_computed_side_by_side,
    a_held_deprovision_holds_the_workspace_change_with_it,
);

fn user_doc(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "emails": [{"value": format!("{name}@acme.example"), "primary": true}],
    })
}

fn refs(ids: &[&String]) -> Vec<MemberRef> {
    ids.iter()
        .map(|m| MemberRef {
            value: m.to_string(),
            kind: None,
            display: None,
        })
        .collect()
}

async fn user(s: &dyn Store, ctx: &WriteContext, name: &str) -> String {
    s.create_resource(ctx, ResourceKind::User, user_doc(name), vec![])
        .await
        .expect("user")
        .id
}

async fn group(s: &dyn Store, ctx: &WriteContext, name: &str, external_id: &str, members: &[&String]) -> String {
    s.create_resource(
        ctx,
        ResourceKind::Group,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "externalId": external_id}),
        refs(members),
    )
    .await
    .expect("group")
    .id
}

async fn workspace(s: &dyn Store, ctx: &WriteContext, key: &str) -> Workspace {
    s.create_workspace(
        ctx,
        NewWorkspace {
            org_id: ctx.org_id.clone(),
            key: key.into(),
            name: key.to_uppercase(),
        },
    )
    .await
    .expect("workspace")
}

async fn map(s: &dyn Store, ctx: &WriteContext, ws: &Workspace, m: RoleMatch) -> WorkspaceMapping {
    s.create_workspace_mapping(
        ctx,
        NewWorkspaceMapping {
            connection_id: ctx.connection_id.clone(),
            workspace_id: ws.id.clone(),
            matches: m,
        },
    )
    .await
    .expect("mapping")
}

async fn patch(s: &dyn Store, ctx: &WriteContext, kind: ResourceKind, id: &str, f: Mutation) {
    s.update_resource(ctx, kind, id, None, f)
        .await
        .expect("update")
        .expect("found");
}

fn members(change: MemberChange) -> Mutation {
    let change = Arc::new(change);
    Arc::new(move |_doc: &mut Value| {
        Ok(vec![match &*change {
            MemberChange::Add(m) => MemberChange::Add(m.clone()),
            MemberChange::Remove(m) => MemberChange::Remove(m.clone()),
            _ => unreachable!(),
        }])
    })
}

fn set(field: &'static str, value: Value) -> Mutation {
    Arc::new(move |doc: &mut Value| {
        doc[field] = value.clone();
        Ok(vec![])
    })
}

/// userName → workspace keys, for every user of the organization (any status).
async fn memberships(s: &dyn Store, org_id: &str) -> BTreeMap<String, Vec<String>> {
    s.directory_users(
        org_id,
        &DirectoryQuery {
            limit: 1000,
            ..Default::default()
        },
        false,
    )
    .await
    .expect("directory")
    .into_iter()
    .map(|u| (u.doc["userName"].as_str().unwrap_or_default().to_string(), u.workspaces))
    .collect()
}

fn keys(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The `user.workspaces_changed` events after `seq`: (user id, data).
async fn changes_after(s: &dyn Store, seq: i64) -> Vec<(String, Value)> {
    s.events_after(seq, 100_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == "user.workspaces_changed")
        .map(|e| (e.resource_id.unwrap_or_default(), e.data))
        .collect()
}

async fn high(s: &dyn Store) -> i64 {
    s.events_after(0, 1_000_000)
        .await
        .expect("events")
        .last()
        .map_or(0, |e| e.seq)
}

async fn workspaces_follow_mappings_defaults_memberships_and_status(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let ann = user(s, &ctx, "ann").await;
    let bob = user(s, &ctx, "bob").await;
    let cy = user(s, &ctx, "cy").await;
    user(s, &other, "xavier").await;
    let sales_group = group(s, &ctx, "Sales", "00aa-sales", &[&ann, &bob]).await;
    let sales = workspace(s, &ctx, "sales").await;
    let everyone = workspace(s, &ctx, "everyone").await;
    assert!(
        memberships(s, &ctx.org_id).await.values().all(Vec::is_empty),
        "a workspace without a mapping has no members"
    );

    // A mapping by name: the group's members join, each with one event in the same transaction.
    let seq = high(s).await;
    let by_name = map(s, &ctx, &sales, RoleMatch::GroupName("SALES".into())).await;
    let evs = changes_after(s, seq).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(
        evs.iter().map(|(u, _)| u.clone()).collect::<BTreeSet<_>>(),
        BTreeSet::from([ann.clone(), bob.clone()])
    );
    assert_eq!(
        evs[0].1,
        json!({"before": [], "after": ["sales"], "added": ["sales"], "removed": []})
    );

    // The default workspace: every active user of the organization joins it.
    let seq = high(s).await;
    let settings = s
        .set_workspace_settings(
            &ctx,
            &ctx.org_id,
            WorkspaceSettingsUpdate {
                default_workspace_id: Some(Some(everyone.id.clone())),
                auto_create: None,
            },
        )
        .await
        .expect("settings");
    assert_eq!(settings.default_workspace_key.as_deref(), Some("everyone"));
    assert!(!settings.auto_create);
    assert_eq!(changes_after(s, seq).await.len(), 3);
    let m = memberships(s, &ctx.org_id).await;
    assert_eq!(m["ann"], keys(&["everyone", "sales"]));
    assert_eq!(m["cy"], keys(&["everyone"]));
    assert_eq!(
        memberships(s, &other.org_id).await["xavier"],
        Vec::<String>::new(),
        "another organization's users are not touched"
    );
    assert_eq!(s.workspace_settings(&ctx.org_id).await.unwrap(), settings);

    // Membership: cy joins the group and the workspace; bob leaves both.
    let seq = high(s).await;
    patch(
        s,
        &ctx,
        ResourceKind::Group,
        &sales_group,
        members(MemberChange::Add(refs(&[&cy]))),
    )
    .await;
    patch(
        s,
        &ctx,
        ResourceKind::Group,
        &sales_group,
        members(MemberChange::Remove(vec![bob.clone()])),
    )
    .await;
    let evs = changes_after(s, seq).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(evs[0].0, cy);
    assert_eq!(evs[1].0, bob);
    assert_eq!(evs[1].1["removed"], json!(["sales"]));

    // The directory filters by workspace (key, ignoring case).
    let in_sales = s
        .directory_users(
            &ctx.org_id,
            &DirectoryQuery {
                workspace: Some("sales".into()),
                limit: 100,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        in_sales.iter().map(|u| u.id.clone()).collect::<BTreeSet<_>>(),
        BTreeSet::from([ann.clone(), cy.clone()])
    );

    // Deactivating a user takes every workspace; reactivating gives them back.
    let seq = high(s).await;
    patch(s, &ctx, ResourceKind::User, &ann, set("active", json!(false))).await;
    assert_eq!(memberships(s, &ctx.org_id).await["ann"], Vec::<String>::new());
    patch(s, &ctx, ResourceKind::User, &ann, set("active", json!(true))).await;
    assert_eq!(memberships(s, &ctx.org_id).await["ann"], keys(&["everyone", "sales"]));
    assert_eq!(changes_after(s, seq).await.len(), 2);

    // Renaming the group: a mapping by name no longer matches; one by IdP id does.
    map(s, &ctx, &sales, RoleMatch::GroupId("00AA-SALES".into())).await;
    let seq = high(s).await;
    patch(
        s,
        &ctx,
        ResourceKind::Group,
        &sales_group,
        set("displayName", json!("Revenue")),
    )
    .await;
    assert!(changes_after(s, seq).await.is_empty(), "still mapped by id");
    assert!(
        s.delete_workspace_mapping(&ctx, &ctx.connection_id, &by_name.id)
            .await
            .unwrap()
    );
    assert_eq!(s.list_workspace_mappings(&ctx.connection_id).await.unwrap().len(), 1);

    // Deleting the group: its members leave the workspace.
    let seq = high(s).await;
    assert!(
        s.delete_resource(&ctx, ResourceKind::Group, &sales_group, None)
            .await
            .unwrap()
    );
    assert_eq!(changes_after(s, seq).await.len(), 2);
    let m = memberships(s, &ctx.org_id).await;
    assert_eq!(m["ann"], keys(&["everyone"]));

    // Renaming a workspace keeps its members; deleting it takes it from them first, with events.
    let renamed = s
        .update_workspace(
            &ctx,
            &ctx.org_id,
            &everyone.id,
            WorkspaceUpdate {
                key: Some("all".into()),
                name: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.key, "all");
    assert_eq!(memberships(s, &ctx.org_id).await["cy"], keys(&["all"]));
    let seq = high(s).await;
    assert!(s.delete_workspace(&ctx, &ctx.org_id, &everyone.id).await.unwrap());
    let evs = changes_after(s, seq).await;
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert!(evs.iter().all(|(_, d)| d["removed"] == json!(["all"])));
    assert!(memberships(s, &ctx.org_id).await.values().all(Vec::is_empty));
    let settings = s.workspace_settings(&ctx.org_id).await.unwrap();
    assert_eq!(settings.default_workspace_id, None, "the default went with it");
    let kinds: Vec<String> = s
        .events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for k in [
        "workspace.created",
        "workspace.updated",
        "workspace.deleted",
        "workspace_mapping.created",
        "workspace_mapping.deleted",
        "organization.workspace_settings_set",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event");
    }
    assert!(
        !kinds.iter().any(|k| k == "user.roles_changed"),
        "no roles in the organization, no role events"
    );
}

async fn a_workspace_for_every_group_follows_the_group(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let ann = user(s, &ctx, "ann").await;
    let bob = user(s, &ctx, "bob").await;
    let before = group(s, &ctx, "Engineering", "00aa-eng", &[&ann]).await;

    // Turning the setting on gives every live group a workspace, and its members join it.
    let seq = high(s).await;
    let settings = s
        .set_workspace_settings(
            &ctx,
            &ctx.org_id,
            WorkspaceSettingsUpdate {
                default_workspace_id: None,
                auto_create: Some(true),
            },
        )
        .await
        .unwrap();
    assert!(settings.auto_create);
    let eng_key = format!("group:{before}");
    let eng = s.get_workspace(&ctx.org_id, &eng_key).await.unwrap().expect("created");
    assert_eq!(eng.name, "Engineering");
    assert_eq!(eng.group.as_ref().map(|g| g.group_id.as_str()), Some(before.as_str()));
    assert_eq!(changes_after(s, seq).await.len(), 1);
    assert_eq!(memberships(s, &ctx.org_id).await["ann"], vec![eng_key.clone()]);

    // A new group gets one at once, with its first members.
    let seq = high(s).await;
    let ops = group(s, &ctx, "Ops", "00aa-ops", &[&ann, &bob]).await;
    let ops_key = format!("group:{ops}");
    assert_eq!(changes_after(s, seq).await.len(), 2);
    let m = memberships(s, &ctx.org_id).await;
    assert_eq!(
        m["ann"].iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([eng_key.clone(), ops_key.clone()])
    );
    assert_eq!(m["bob"], vec![ops_key.clone()]);

    // A rename renames it (its key stays).
    patch(
        s,
        &ctx,
        ResourceKind::Group,
        &ops,
        set("displayName", json!("Operations")),
    )
    .await;
    let w = s.get_workspace(&ctx.org_id, &ops_key).await.unwrap().unwrap();
    assert_eq!(w.name, "Operations");

    // A membership change follows.
    patch(
        s,
        &ctx,
        ResourceKind::Group,
        &ops,
        members(MemberChange::Remove(vec![bob.clone()])),
    )
    .await;
    assert_eq!(memberships(s, &ctx.org_id).await["bob"], Vec::<String>::new());

    // Deleting the group deletes its workspace, after its members left it (with their events).
    let seq = high(s).await;
    assert!(s.delete_resource(&ctx, ResourceKind::Group, &ops, None).await.unwrap());
    let evs = changes_after(s, seq).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, ann);
    assert!(s.get_workspace(&ctx.org_id, &ops_key).await.unwrap().is_none());
    let deleted: Vec<Event> = s
        .events_after(seq, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "workspace.deleted")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].data["reason"], "group_deleted");

    // Turned off: no more workspaces; those created stay.
    s.set_workspace_settings(
        &ctx,
        &ctx.org_id,
        WorkspaceSettingsUpdate {
            default_workspace_id: None,
            auto_create: Some(false),
        },
    )
    .await
    .unwrap();
    let later = group(s, &ctx, "Later", "00aa-later", &[&bob]).await;
    assert!(
        s.get_workspace(&ctx.org_id, &format!("group:{later}"))
            .await
            .unwrap()
            .is_none()
    );
    let list = s.list_workspaces(&ctx.org_id).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].key, eng_key);
}

async fn a_preview_matches_what_the_mapping_does(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(user(s, &ctx, &format!("u{i}")).await);
    }
    let refs_: Vec<&String> = ids[0..4].iter().collect();
    group(s, &ctx, "Support", "00aa-sup", &refs_).await;
    let support = workspace(s, &ctx, "support").await;
    let seq = high(s).await;
    let m = RoleMatch::GroupName("support".into());
    let preview = s
        .preview_workspace_change(
            &ctx.connection_id,
            &RoleChange::AddMapping {
                role_id: support.id.clone(),
                matches: m.clone(),
            },
            2,
        )
        .await
        .unwrap()
        .expect("connection");
    assert_eq!(high(s).await, seq, "a preview writes nothing");
    assert_eq!(preview.users_considered, 6);
    assert_eq!(preview.changes.len(), 1);
    let c = &preview.changes[0];
    assert_eq!((c.role_key.as_str(), c.gained, c.lost), ("support", 4, 0));
    assert_eq!(
        c.gained_sample.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        ids[0..2].to_vec(),
        "the oldest first"
    );
    let mapping = map(s, &ctx, &support, m).await;
    assert_eq!(changes_after(s, seq).await.len(), 4, "as previewed");
    let removal = s
        .preview_workspace_change(
            &ctx.connection_id,
            &RoleChange::RemoveMapping {
                mapping_id: mapping.id.clone(),
            },
            10,
        )
        .await
        .unwrap()
        .expect("mapping");
    assert_eq!((removal.changes[0].gained, removal.changes[0].lost), (0, 4));
    assert!(
        s.preview_workspace_change(
            &ctx.connection_id,
            &RoleChange::RemoveMapping {
                mapping_id: "nope".into()
            },
            10
        )
        .await
        .unwrap()
        .is_none()
    );
}

fn status(r: StoreResult<impl std::fmt::Debug>) -> u16 {
    match r {
        Err(StoreError::Scim(e)) => e.status,
        other => panic!("expected a SCIM error, got {other:?}"),
    }
}

async fn bad_input_is_refused_and_changes_nothing(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let ann = user(s, &ctx, "ann").await;
    group(s, &ctx, "Sales", "00aa-sales", &[&ann]).await;
    let sales = workspace(s, &ctx, "sales").await;
    let theirs = workspace(s, &other, "theirs").await;
    let seq = high(s).await;
    let dup = s
        .create_workspace(
            &ctx,
            NewWorkspace {
                org_id: ctx.org_id.clone(),
                key: "SALES".into(),
                name: "x".into(),
            },
        )
        .await;
    assert_eq!(status(dup), 409);
    let app_role = s
        .create_workspace_mapping(
            &ctx,
            NewWorkspaceMapping {
                connection_id: ctx.connection_id.clone(),
                workspace_id: sales.id.clone(),
                matches: RoleMatch::AppRole("admin".into()),
            },
        )
        .await;
    assert_eq!(status(app_role), 400);
    let foreign = s
        .create_workspace_mapping(
            &ctx,
            NewWorkspaceMapping {
                connection_id: ctx.connection_id.clone(),
                workspace_id: theirs.id.clone(),
                matches: RoleMatch::GroupName("Sales".into()),
            },
        )
        .await;
    assert_eq!(status(foreign), 400);
    let foreign_default = s
        .set_workspace_settings(
            &ctx,
            &ctx.org_id,
            WorkspaceSettingsUpdate {
                default_workspace_id: Some(Some(theirs.id.clone())),
                auto_create: None,
            },
        )
        .await;
    assert_eq!(status(foreign_default), 400);
    assert_eq!(high(s).await, seq, "nothing was written");
    map(s, &ctx, &sales, RoleMatch::GroupName("Sales".into())).await;
    let again = s
        .create_workspace_mapping(
            &ctx,
            NewWorkspaceMapping {
                connection_id: ctx.connection_id.clone(),
                workspace_id: sales.id.clone(),
                matches: RoleMatch::GroupName(" sales ".into()),
            },
        )
        .await;
    assert_eq!(status(again), 409);
    assert_eq!(memberships(s, &ctx.org_id).await["ann"], keys(&["sales"]));
    assert!(
        s.get_workspace(&other.org_id, &sales.id).await.unwrap().is_none(),
        "workspaces are per organization"
    );
}

async fn roles_and_workspaces_are_computed_side_by_side(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let ann = user(s, &ctx, "ann").await;
    let g = group(s, &ctx, "Sales", "00aa-sales", &[&ann]).await;
    let role = s
        .create_role(
            &ctx,
            NewRole {
                org_id: ctx.org_id.clone(),
                key: "sales".into(),
                name: "Sales".into(),
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
            matches: RoleMatch::GroupName("Sales".into()),
        },
    )
    .await
    .unwrap();
    // A workspace with the same key as a role: one name space each.
    let ws = workspace(s, &ctx, "sales").await;
    map(s, &ctx, &ws, RoleMatch::GroupName("Sales".into())).await;
    let u = &s
        .directory_users(
            &ctx.org_id,
            &DirectoryQuery {
                id: Some(ann.clone()),
                limit: 1,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap()[0];
    assert_eq!(
        (u.roles.clone(), u.workspaces.clone()),
        (keys(&["sales"]), keys(&["sales"]))
    );
    // One membership change: one event of each kind.
    let seq = high(s).await;
    patch(
        s,
        &ctx,
        ResourceKind::Group,
        &g,
        members(MemberChange::Remove(vec![ann.clone()])),
    )
    .await;
    let kinds: Vec<String> = s
        .events_after(seq, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.ends_with("_changed"))
        .collect();
    assert_eq!(kinds, keys(&["user.roles_changed", "user.workspaces_changed"]));
}

async fn a_held_deprovision_holds_the_workspace_change_with_it(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut ids = Vec::new();
    for name in ["ann", "bob", "cy"] {
        ids.push(user(s, &ctx, name).await);
    }
    let everyone = workspace(s, &ctx, "everyone").await;
    s.set_workspace_settings(
        &ctx,
        &ctx.org_id,
        WorkspaceSettingsUpdate {
            default_workspace_id: Some(Some(everyone.id.clone())),
            auto_create: None,
        },
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
    // Two deactivations trip the guard (more than 1): the second one's events are held, its
    // workspace change with its deactivation; the access-facing rows follow at once.
    let seq = high(s).await;
    for id in &ids[..2] {
        patch(s, &ctx, ResourceKind::User, id, set("active", json!(false))).await;
    }
    let held = s.held_events(&ctx.connection_id, 0, 100).await.unwrap();
    let kinds: BTreeSet<(String, String)> = held.iter().map(|h| (h.user_id.clone(), h.event.kind.clone())).collect();
    assert!(
        kinds.contains(&(ids[1].clone(), "user.workspaces_changed".to_string())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&(ids[1].clone(), "user.deactivated".to_string())));
    let logged: Vec<String> = changes_after(s, seq).await.into_iter().map(|(u, _)| u).collect();
    assert!(!logged.contains(&ids[1]), "held, not in the log");
    assert!(
        memberships(s, &ctx.org_id).await["bob"].is_empty(),
        "security does not wait"
    );
}
