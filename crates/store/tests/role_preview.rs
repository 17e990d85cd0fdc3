//! Previews of role changes (`Store::preview_role_change`) on both databases: each preview is
//! compared with what the change does once it is made for real, user by user, and writes nothing.

use rollcall_scim::patch::MemberRef;
use rollcall_store::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod harness;
use harness::*;

contract!(
    previews_match_what_the_changes_do,
    previews_refuse_what_the_changes_refuse,
    a_preview_over_thousands_of_users_is_one_quick_pass,
);

const SAMPLE: usize = 4;

/// userName → effective role keys, for every active user of the organization.
type Holdings = BTreeMap<String, BTreeSet<String>>;

async fn holdings(store: &dyn Store, org_id: &str) -> Holdings {
    let users = store
        .directory_users(
            org_id,
            &DirectoryQuery {
                status: Some(UserStatus::Active),
                limit: 100_000,
                ..Default::default()
            },
            false,
        )
        .await
        .expect("directory");
    users
        .into_iter()
        .map(|u| {
            let name = u.doc["userName"].as_str().expect("userName").to_string();
            (name, u.roles.into_iter().collect())
        })
        .collect()
}

/// role key → (userNames gaining it, userNames losing it), from the roles before and after.
fn differences(before: &Holdings, after: &Holdings) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let empty = BTreeSet::new();
    for (user, now) in after {
        let was = before.get(user).unwrap_or(&empty);
        for r in now.difference(was) {
            out.entry(r.clone()).or_default().0.push(user.clone());
        }
        for r in was.difference(now) {
            out.entry(r.clone()).or_default().1.push(user.clone());
        }
    }
    out
}

async fn event_count(store: &dyn Store) -> usize {
    store.events_after(0, 1_000_000).await.expect("events").len()
}

/// Previews `change`, makes it with `apply`, and checks the preview against what happened: the same
/// roles gained and lost by the same number of users, the samples the first of them (userNames are
/// in creation order), each named with its id, userName and e-mail address.
async fn check<F, Fut>(store: &dyn Store, ctx: &WriteContext, change: RoleChange, apply: F) -> RolePreview
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = holdings(store, &ctx.org_id).await;
    let events = event_count(store).await;
    let preview = store
        .preview_role_change(&ctx.connection_id, &change, SAMPLE)
        .await
        .expect("preview")
        .expect("the connection exists");
    assert_eq!(event_count(store).await, events, "a preview writes nothing");
    assert_eq!(holdings(store, &ctx.org_id).await, before, "a preview changes no roles");
    apply().await;
    let after = holdings(store, &ctx.org_id).await;
    let expected = differences(&before, &after);
    let previewed: BTreeMap<String, (i64, i64)> = preview
        .changes
        .iter()
        .map(|c| (c.role_key.clone(), (c.gained, c.lost)))
        .collect();
    let actual: BTreeMap<String, (i64, i64)> = expected
        .iter()
        .map(|(k, (g, l))| (k.clone(), (g.len() as i64, l.len() as i64)))
        .collect();
    assert_eq!(
        previewed, actual,
        "{change:?}: the preview's counts are what the change did"
    );
    for c in &preview.changes {
        let (gained, lost) = &expected[&c.role_key];
        let names = |s: &[UserRef]| s.iter().map(|u| u.user_name.clone().unwrap()).collect::<Vec<_>>();
        let first = |v: &[String]| v.iter().take(SAMPLE).cloned().collect::<Vec<_>>();
        assert_eq!(names(&c.gained_sample), first(gained), "{change:?}: {}", c.role_key);
        assert_eq!(names(&c.lost_sample), first(lost), "{change:?}: {}", c.role_key);
        for u in c.gained_sample.iter().chain(&c.lost_sample) {
            let name = u.user_name.as_deref().unwrap();
            assert_eq!(u.email.as_deref(), Some(format!("{name}@acme.example").as_str()));
            assert!(!u.id.is_empty());
        }
    }
    let active = before.len() as i64;
    assert_eq!(preview.users_considered, active);
    preview
}

fn user_doc(name: &str, app_role: Option<&str>) -> Value {
    let mut doc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "emails": [{"value": format!("{name}@home.example")}, {"value": format!("{name}@acme.example"), "primary": true}],
    });
    if let Some(r) = app_role {
        doc["roles"] = json!([{"value": r}]);
    }
    doc
}

async fn group(store: &dyn Store, ctx: &WriteContext, name: &str, external_id: &str, members: &[String]) {
    store
        .create_resource(
            ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "externalId": external_id}),
            members
                .iter()
                .map(|m| MemberRef {
                    value: m.clone(),
                    kind: None,
                    display: None,
                })
                .collect(),
        )
        .await
        .expect("create group");
}

async fn role(store: &dyn Store, ctx: &WriteContext, key: &str) -> Role {
    store
        .create_role(
            ctx,
            NewRole {
                org_id: ctx.org_id.clone(),
                key: key.into(),
                name: key.into(),
                description: None,
            },
        )
        .await
        .expect("create role")
}

async fn previews_match_what_the_changes_do(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let admin = role(s, &ctx, "admin").await;
    let viewer = role(s, &ctx, "viewer").await;
    let billing = role(s, &ctx, "billing").await;
    role(s, &ctx, "scim:Ops").await;
    // u00..u29 in creation order; every third has the Entra app role "Admin".
    let mut ids = Vec::new();
    for i in 0..30 {
        let app = (i % 3 == 0).then_some("Admin");
        let u = s
            .create_resource(&ctx, ResourceKind::User, user_doc(&format!("u{i:02}"), app), vec![])
            .await
            .expect("user");
        ids.push(u.id);
    }
    // A user of another organization is never counted.
    s.create_resource(&other, ResourceKind::User, user_doc("x00", None), vec![])
        .await
        .unwrap();
    // u28 is deactivated, u29 deleted: neither holds roles.
    let off: Mutation = Arc::new(|doc: &mut Value| {
        doc["active"] = json!(false);
        Ok(vec![])
    });
    s.update_resource(&ctx, ResourceKind::User, &ids[28], None, off)
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.delete_resource(&ctx, ResourceKind::User, &ids[29], None)
            .await
            .unwrap()
    );
    group(s, &ctx, "Engineering", "00aa-eng", &ids[0..25]).await;
    group(s, &ctx, "Finance", "00aa-fin", &ids[20..29]).await;
    group(s, &ctx, "Ops", "00aa-ops", &ids[5..8]).await;
    let conn = ctx.connection_id.clone();
    s.set_default_roles(&ctx, &conn, std::slice::from_ref(&viewer.id))
        .await
        .unwrap();

    // A group mapping by name: Engineering's 25 members gain admin.
    let by_name = RoleMatch::GroupName("engineering".into());
    let mut created = None;
    let p = check(
        s,
        &ctx,
        RoleChange::AddMapping {
            role_id: admin.id.clone(),
            matches: by_name.clone(),
        },
        || async {
            created = Some(
                s.create_role_mapping(
                    &ctx,
                    NewRoleMapping {
                        connection_id: conn.clone(),
                        role_id: admin.id.clone(),
                        matches: by_name.clone(),
                    },
                )
                .await
                .unwrap(),
            );
        },
    )
    .await;
    assert_eq!(p.changes.len(), 1);
    assert_eq!((p.changes[0].gained, p.changes[0].lost), (25, 0));
    assert_eq!(p.users_considered, 28);
    let by_name_id = created.unwrap().id;

    // By IdP id (externalId, any case): Finance overlaps Engineering on u20..u24, who have admin.
    let by_id = RoleMatch::GroupId("00AA-FIN".into());
    let p = check(
        s,
        &ctx,
        RoleChange::AddMapping {
            role_id: admin.id.clone(),
            matches: by_id.clone(),
        },
        || async {
            s.create_role_mapping(
                &ctx,
                NewRoleMapping {
                    connection_id: conn.clone(),
                    role_id: admin.id.clone(),
                    matches: by_id.clone(),
                },
            )
            .await
            .unwrap();
        },
    )
    .await;
    assert_eq!((p.changes[0].gained, p.changes[0].lost), (3, 0), "u25..u27 only");

    // An app-role mapping reads the users' documents.
    let by_app = RoleMatch::AppRole("admin".into());
    let p = check(
        s,
        &ctx,
        RoleChange::AddMapping {
            role_id: billing.id.clone(),
            matches: by_app.clone(),
        },
        || async {
            s.create_role_mapping(
                &ctx,
                NewRoleMapping {
                    connection_id: conn.clone(),
                    role_id: billing.id.clone(),
                    matches: by_app.clone(),
                },
            )
            .await
            .unwrap();
        },
    )
    .await;
    assert_eq!((p.changes[0].role_key.as_str(), p.changes[0].gained), ("billing", 10));

    // New default roles: every active user loses viewer; billing goes to those without the app
    // role; admin, which every active user has through a mapping already, changes for nobody.
    let defaults = vec![billing.id.clone(), admin.id.clone()];
    let p = check(
        s,
        &ctx,
        RoleChange::SetDefaults {
            role_ids: defaults.clone(),
        },
        || async {
            s.set_default_roles(&ctx, &conn, &defaults).await.unwrap().unwrap();
        },
    )
    .await;
    let keys: Vec<(&str, i64, i64)> = p
        .changes
        .iter()
        .map(|c| (c.role_key.as_str(), c.gained, c.lost))
        .collect();
    assert_eq!(keys, vec![("billing", 18, 0), ("viewer", 0, 28)]);

    // Removing the mapping by name: admin stays with those the defaults give it (everyone now).
    let p = check(
        s,
        &ctx,
        RoleChange::RemoveMapping {
            mapping_id: by_name_id.clone(),
        },
        || async {
            assert!(s.delete_role_mapping(&ctx, &conn, &by_name_id).await.unwrap());
        },
    )
    .await;
    assert!(p.changes.is_empty(), "{p:?}");

    // Back to no defaults: those without a mapping lose admin and billing.
    let p = check(s, &ctx, RoleChange::SetDefaults { role_ids: vec![] }, || async {
        s.set_default_roles(&ctx, &conn, &[]).await.unwrap().unwrap();
    })
    .await;
    assert!(!p.changes.is_empty());

    // And a mapping removal that takes roles away.
    let mappings = s.list_role_mappings(&conn).await.unwrap();
    let fin = mappings
        .iter()
        .find(|m| m.matches == RoleMatch::GroupId("00AA-FIN".into()))
        .unwrap()
        .id
        .clone();
    let p = check(
        s,
        &ctx,
        RoleChange::RemoveMapping {
            mapping_id: fin.clone(),
        },
        || async {
            assert!(s.delete_role_mapping(&ctx, &conn, &fin).await.unwrap());
        },
    )
    .await;
    assert_eq!(
        (p.changes[0].role_key.as_str(), p.changes[0].lost),
        ("admin", 8),
        "{p:?}"
    );
    assert_eq!(p.changes[0].lost_sample.len(), SAMPLE);
}

async fn previews_refuse_what_the_changes_refuse(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let admin = role(s, &ctx, "admin").await;
    let foreign = role(s, &other, "admin").await;
    let conn = ctx.connection_id.clone();
    let m = RoleMatch::GroupName("Engineering".into());
    s.create_role_mapping(
        &ctx,
        NewRoleMapping {
            connection_id: conn.clone(),
            role_id: admin.id.clone(),
            matches: m.clone(),
        },
    )
    .await
    .unwrap();
    let status = |r: StoreResult<Option<RolePreview>>| match r {
        Err(StoreError::Scim(e)) => e.status,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // The same mapping again (in any case): 409, as creating it answers.
    let dup = RoleChange::AddMapping {
        role_id: admin.id.clone(),
        matches: RoleMatch::GroupName("ENGINEERING".into()),
    };
    assert_eq!(status(s.preview_role_change(&conn, &dup, 5).await), 409);
    let real = s
        .create_role_mapping(
            &ctx,
            NewRoleMapping {
                connection_id: conn.clone(),
                role_id: admin.id.clone(),
                matches: RoleMatch::GroupName("ENGINEERING".into()),
            },
        )
        .await;
    assert!(matches!(real, Err(StoreError::Scim(e)) if e.status == 409));
    // A role of another organization: 400, as the change answers.
    let cross = RoleChange::SetDefaults {
        role_ids: vec![foreign.id.clone()],
    };
    assert_eq!(status(s.preview_role_change(&conn, &cross, 5).await), 400);
    assert!(
        matches!(s.set_default_roles(&ctx, &conn, std::slice::from_ref(&foreign.id)).await, Err(StoreError::Scim(e)) if e.status == 400)
    );
    let cross = RoleChange::AddMapping {
        role_id: foreign.id.clone(),
        matches: RoleMatch::AppRole("x".into()),
    };
    assert_eq!(status(s.preview_role_change(&conn, &cross, 5).await), 400);
    // An unknown mapping or connection, or a mapping of another connection: none.
    let gone = RoleChange::RemoveMapping {
        mapping_id: "nope".into(),
    };
    assert_eq!(s.preview_role_change(&conn, &gone, 5).await.unwrap(), None);
    let mine = s.list_role_mappings(&conn).await.unwrap()[0].id.clone();
    let elsewhere = RoleChange::RemoveMapping { mapping_id: mine };
    assert_eq!(
        s.preview_role_change(&other.connection_id, &elsewhere, 5)
            .await
            .unwrap(),
        None
    );
    let defaults = RoleChange::SetDefaults { role_ids: vec![] };
    assert_eq!(
        s.preview_role_change("no-such-connection", &defaults, 5).await.unwrap(),
        None
    );
    // No users: nothing changes, nobody considered.
    let p = s
        .preview_role_change(
            &conn,
            &RoleChange::SetDefaults {
                role_ids: vec![admin.id],
            },
            5,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p, RolePreview::default());
}

/// 3,000 users (the directory of a mid-sized customer), every one gaining a default role: one pass
/// over the rows, well under a second on either database even in a debug build.
async fn a_preview_over_thousands_of_users_is_one_quick_pass(store: Arc<dyn Store>) {
    const USERS: usize = 3_000;
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let admin = role(s, &ctx, "admin").await;
    let viewer = role(s, &ctx, "viewer").await;
    let conn = ctx.connection_id.clone();
    let mut ids = Vec::with_capacity(USERS);
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(100) {
        let made = futures::future::join_all(
            chunk
                .iter()
                .map(|i| s.create_resource(&ctx, ResourceKind::User, user_doc(&format!("u{i:05}"), None), vec![])),
        )
        .await;
        ids.extend(made.into_iter().map(|u| u.expect("user").id));
    }
    group(s, &ctx, "Engineering", "00aa-eng", &ids[..USERS / 2]).await;
    s.create_role_mapping(
        &ctx,
        NewRoleMapping {
            connection_id: conn.clone(),
            role_id: admin.id.clone(),
            matches: RoleMatch::GroupName("Engineering".into()),
        },
    )
    .await
    .unwrap();
    let change = RoleChange::SetDefaults {
        role_ids: vec![viewer.id.clone(), admin.id.clone()],
    };
    let started = Instant::now();
    let p = s.preview_role_change(&conn, &change, 20).await.unwrap().unwrap();
    let took = started.elapsed();
    eprintln!("preview over {USERS} users: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(p.users_considered, USERS as i64);
    let keys: Vec<(&str, i64, i64, usize)> = p
        .changes
        .iter()
        .map(|c| (c.role_key.as_str(), c.gained, c.lost, c.gained_sample.len()))
        .collect();
    assert_eq!(
        keys,
        vec![("admin", (USERS / 2) as i64, 0, 20), ("viewer", USERS as i64, 0, 20)]
    );
    // Users were created 100 at a time, so creation order is not name order: the sampled users are
    // those outside the group.
    assert!(
        p.changes[0]
            .gained_sample
            .iter()
            .all(|u| u.user_name.as_deref().unwrap() >= "u01500"),
        "{:?}",
        p.changes[0].gained_sample
    );
}
