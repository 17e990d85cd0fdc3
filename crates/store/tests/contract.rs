//! The store contract: every test runs against SQLite (a temporary file) and, when
//! `ROLLCALL_TEST_DATABASE_URL` (or `DATABASE_URL`) names a PostgreSQL server, against PostgreSQL too,
//! each test in a database of its own (created from the admin URL, dropped afterwards), so the tests
//! run in parallel. Without a PostgreSQL URL the `postgres::*` tests print a note and pass.

use rollcall_scim::filter::Filter;
use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_scim::path::AttrPath;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_scim::sort::SortOrder;
use rollcall_scim::{ScimError, ScimType};
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod harness;
use harness::*;

contract!(
    organizations_and_connections,
    token_lookup_and_rotation,
    service_settings_round_trip,
    delete_connection_removes_its_resources,
    create_get_update_delete,
    uniqueness_is_case_insensitive,
    group_display_name_uniqueness,
    filters_on_indexed_columns,
    filter_operators,
    filter_substrings_with_wildcard_characters,
    filter_value_paths_and_urns,
    filter_logic,
    filter_presence_and_null,
    filter_last_modified,
    filter_groups,
    sort_ascending_and_descending,
    index_paging,
    cursor_paging,
    membership_changes,
    unknown_member_is_rejected,
    user_groups_are_derived,
    soft_delete_and_recreate,
    events_per_change,
    if_match,
    concurrent_creates_same_user_name,
    concurrent_creates_each_answered_for_itself,
    concurrent_member_adds,
    concurrent_member_patches_of_one_group,
    creates_in_one_transaction,
    crossing_updates_both_succeed,
    api_keys,
    organization_paging,
    rename_and_delete_organization,
    connection_update_and_status,
    token_rotation_overlap,
    token_revocation,
    connection_activity,
    concurrent_writes_with_failures_and_cancellations,
);

/// Many concurrent writes (on SQLite they share transactions: group commit): those answered Ok are
/// stored with exactly one event each, those that failed (conflicts) or were cancelled mid-way leave
/// nothing behind, and the store keeps working.
async fn concurrent_writes_with_failures_and_cancellations(store: Arc<dyn Store>) {
    let ctx = tenant(&*store, "group").await;
    let mut tasks = Vec::new();
    for i in 0..240 {
        let (store, ctx) = (store.clone(), ctx.clone());
        // Every fourth write reuses a userName: one of each pair succeeds, the other gets 409.
        let name = if i % 4 == 3 {
            format!("u{}", i - 1)
        } else {
            format!("u{i}")
        };
        tasks.push(tokio::spawn(async move {
            store
                .create_resource(&ctx, ResourceKind::User, user(&name), vec![])
                .await
        }));
    }
    // Cancel some writes while they run.
    for (i, t) in tasks.iter().enumerate() {
        if i % 7 == 0 {
            t.abort();
        }
    }
    let mut ok = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => ok.push(r.id),
            Ok(Err(StoreError::Scim(e))) => {
                assert_eq!(e.status, 409, "{e}");
                conflicts += 1;
            }
            Ok(Err(e)) => panic!("unexpected error: {e}"),
            Err(_) => {} // cancelled: may or may not have been stored, but not acknowledged
        }
    }
    assert!(ok.len() >= 150, "{} writes succeeded", ok.len());
    assert!(conflicts > 0);
    for id in &ok {
        assert!(
            store
                .get_resource(&ctx.connection_id, ResourceKind::User, id, false)
                .await
                .unwrap()
                .is_some(),
            "acknowledged user {id} is stored"
        );
    }
    let events = store.events_after(0, 100_000).await.unwrap();
    let created: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "user.created")
        .filter_map(|e| e.resource_id.as_deref())
        .collect();
    let stored = store
        .list_resources(
            &ctx.connection_id,
            ResourceKind::User,
            &ListQuery {
                filter: None,
                sort: None,
                paging: Paging::Index { start_index: 1 },
                count: 1000,
                with_members: false,
                max_bytes: ListQuery::DEFAULT_MAX_BYTES,
            },
        )
        .await
        .unwrap();
    assert_eq!(created.len() as i64, stored.total, "exactly one event per stored user");
    for id in &ok {
        assert_eq!(created.iter().filter(|c| *c == id).count(), 1);
    }
    // Still writable, and a failed write inside a busy period left nothing half-done.
    let after = store
        .create_resource(&ctx, ResourceKind::User, user("after"), vec![])
        .await;
    assert!(after.is_ok());
}

// --- helpers ---------------------------------------------------------------------------------------

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user(user_name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true})
}

fn group(name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name})
}

async fn create_user(store: &dyn Store, ctx: &WriteContext, doc: Value) -> StoredResource {
    store
        .create_resource(ctx, ResourceKind::User, doc, vec![])
        .await
        .expect("create user")
}

async fn create_group(store: &dyn Store, ctx: &WriteContext, name: &str, members: &[&str]) -> StoredResource {
    store
        .create_resource(
            ctx,
            ResourceKind::Group,
            group(name),
            members.iter().map(|m| mref(m)).collect(),
        )
        .await
        .expect("create group")
}

fn mref(id: &str) -> MemberRef {
    MemberRef {
        value: id.to_string(),
        kind: None,
        display: None,
    }
}

fn scim(e: StoreError) -> ScimError {
    match e {
        StoreError::Scim(s) => s,
        other => panic!("expected a SCIM error, got {other}"),
    }
}

/// Sets (or removes, with null) top-level attributes.
fn set(attrs: Value) -> Mutation {
    Arc::new(move |doc: &mut Value| {
        for (k, v) in attrs.as_object().expect("object") {
            if v.is_null() {
                doc.as_object_mut().unwrap().remove(k);
            } else {
                doc[k] = v.clone();
            }
        }
        Ok(vec![])
    })
}

fn members(changes: Vec<MemberChange>) -> Mutation {
    Arc::new(move |_doc: &mut Value| Ok(changes.clone()))
}

fn query(filter: Option<&str>, kind: ResourceKind) -> ListQuery {
    let filter = filter.map(|f| {
        let f = Filter::parse(f).unwrap_or_else(|e| panic!("parse {f}: {e:?}"));
        let reg = SchemaRegistry::standard();
        f.validate(&reg, reg.resource_type(kind.as_str()).unwrap())
            .unwrap_or_else(|e| panic!("validate: {e:?}"));
        f
    });
    ListQuery {
        filter,
        sort: None,
        paging: Paging::Index { start_index: 1 },
        count: 10_000,
        with_members: false,
        max_bytes: ListQuery::DEFAULT_MAX_BYTES,
    }
}

/// The names (userName or displayName) of the resources matching `filter`, sorted.
async fn names(store: &dyn Store, ctx: &WriteContext, kind: ResourceKind, filter: &str) -> Vec<String> {
    let page = store
        .list_resources(&ctx.connection_id, kind, &query(Some(filter), kind))
        .await
        .unwrap_or_else(|e| panic!("filter {filter}: {e}"));
    assert_eq!(page.total as usize, page.resources.len(), "{filter}");
    let mut out: Vec<String> = page.resources.iter().map(name_of).collect();
    out.sort();
    out
}

fn name_of(r: &StoredResource) -> String {
    r.doc
        .get("userName")
        .or_else(|| r.doc.get("displayName"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn v(names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

async fn all_events(store: &dyn Store) -> Vec<Event> {
    store.events_after(0, 100_000).await.expect("events")
}

/// A small directory of users for the filter tests.
async fn seed_people(store: &dyn Store, ctx: &WriteContext) -> HashMap<String, String> {
    let docs = vec![
        json!({"userName": "bjensen", "externalId": "ext-B", "title": "Tour Guide", "active": true,
               "name": {"givenName": "Barbara", "familyName": "Jensen"}, "displayName": "Babs Jensen",
               "emails": [{"value": "BJensen@Example.com", "type": "work", "primary": true},
                          {"value": "babs@jensen.org", "type": "home"}],
               ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations", "manager": {"value": "m-1"}}}),
        json!({"userName": "ÅSA.Öberg", "externalId": "ext-a", "title": "Engineer", "active": false,
               "name": {"givenName": "Åsa", "familyName": "ÖBERG"},
               "emails": [{"value": "asa@example.se", "type": "work", "primary": true}],
               ENTERPRISE: {"employeeNumber": "42", "department": "R&D"}}),
        json!({"userName": "mike", "title": "engineer", "active": true,
               "name": {"givenName": "Mike", "familyName": "O'Malley"},
               "emails": [{"value": "mike@x.com", "type": "work"}]}),
        json!({"userName": "nobody"}),
    ];
    let mut ids = HashMap::new();
    for d in docs {
        let r = create_user(store, ctx, d).await;
        ids.insert(name_of(&r), r.id);
    }
    ids
}

// --- tenancy -------------------------------------------------------------------------------------

async fn organizations_and_connections(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(s.count_organizations().await.unwrap(), 0);
    let acme = s.create_organization(&WriteContext::cli(), "Acme").await.unwrap();
    let beta = s.create_organization(&WriteContext::cli(), "Beta").await.unwrap();
    let e = scim(s.create_organization(&WriteContext::cli(), "Acme").await.unwrap_err());
    assert_eq!(e.status, 409);
    assert_eq!(s.count_organizations().await.unwrap(), 2);
    let all = s.list_organizations().await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["Acme", "Beta"]
    );
    assert_eq!(s.get_organization(&acme.id).await.unwrap(), Some(acme.clone()));
    assert_eq!(s.get_organization("Beta").await.unwrap(), Some(beta.clone()));
    assert_eq!(s.get_organization("nope").await.unwrap(), None);

    let mk = |org: &Organization, n: &str, idp| NewConnection {
        org_id: org.id.clone(),
        name: n.into(),
        idp,
        token_hash: hash_of(n),
        token_prefix: format!("rc_{n}"),
    };
    let c1 = s
        .create_connection(&WriteContext::cli(), mk(&acme, "one", IdpKind::Entra))
        .await
        .unwrap();
    let c2 = s
        .create_connection(&WriteContext::cli(), mk(&acme, "two", IdpKind::Google))
        .await
        .unwrap();
    let c3 = s
        .create_connection(&WriteContext::cli(), mk(&beta, "three", IdpKind::Generic))
        .await
        .unwrap();
    assert_eq!(
        s.list_connections(None).await.unwrap(),
        vec![c1.clone(), c2.clone(), c3.clone()]
    );
    assert_eq!(
        s.list_connections(Some(&acme.id)).await.unwrap(),
        vec![c1.clone(), c2.clone()]
    );
    assert_eq!(s.list_connections(Some("none")).await.unwrap(), vec![]);
    let got = s.get_connection(&c2.id).await.unwrap().unwrap();
    assert_eq!(got, c2);
    assert_eq!(got.idp, IdpKind::Google);
    assert_eq!(got.token_hash, Some(hash_of("two")));
    assert_eq!(s.get_connection("missing").await.unwrap(), None);
}

/// A setting of the service is absent until written, then read back, and overwritten in place.
async fn service_settings_round_trip(store: Arc<dyn Store>) {
    use rollcall_store::service_settings::PUBLIC_URL;
    let s = &*store;
    assert_eq!(s.service_setting(PUBLIC_URL).await.unwrap(), None);
    s.set_service_setting(PUBLIC_URL, "https://scim.example.com")
        .await
        .unwrap();
    let first = s.service_setting(PUBLIC_URL).await.unwrap().unwrap();
    assert_eq!(first.value, "https://scim.example.com");
    assert!(first.updated_us > 0);
    s.set_service_setting(PUBLIC_URL, "https://idp.example.org/rollcall")
        .await
        .unwrap();
    let second = s.service_setting(PUBLIC_URL).await.unwrap().unwrap();
    assert_eq!(second.value, "https://idp.example.org/rollcall");
    assert!(second.updated_us >= first.updated_us);
    assert_eq!(s.service_setting("another").await.unwrap(), None);
}

async fn token_lookup_and_rotation(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let c = s.connection_by_token_hash(&hash_of("acme")).await.unwrap().unwrap();
    assert_eq!(c.id, ctx.connection_id);
    assert_eq!(s.connection_by_token_hash(&hash_of("other")).await.unwrap(), None);
    assert!(
        s.set_connection_token(&WriteContext::cli(), &c.id, &hash_of("new"), "rc_new")
            .await
            .unwrap()
    );
    assert_eq!(s.connection_by_token_hash(&hash_of("acme")).await.unwrap(), None);
    let c = s.connection_by_token_hash(&hash_of("new")).await.unwrap().unwrap();
    assert_eq!(c.token_prefix.as_deref(), Some("rc_new"));
    assert!(
        !s.set_connection_token(&WriteContext::cli(), "missing", &hash_of("x"), "rc_x")
            .await
            .unwrap()
    );
    let ev = all_events(s).await;
    let rotated: Vec<&Event> = ev.iter().filter(|e| e.kind == "connection.token_rotated").collect();
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].connection_id.as_deref(), Some(ctx.connection_id.as_str()));
    assert_eq!(rotated[0].data, json!({"token_prefix": "rc_new"}));
}

async fn delete_connection_removes_its_resources(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let ua = create_user(s, &a, user("same")).await;
    let ub = create_user(s, &b, user("same")).await;
    create_group(s, &a, "g", &[&ua.id]).await;
    assert!(
        s.delete_connection(&WriteContext::cli(), &a.connection_id)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_connection(&WriteContext::cli(), &a.connection_id)
            .await
            .unwrap()
    );
    assert_eq!(s.get_connection(&a.connection_id).await.unwrap(), None);
    assert!(
        s.get_resource(&a.connection_id, ResourceKind::User, &ua.id, false)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_resource(&b.connection_id, ResourceKind::User, &ub.id, false)
            .await
            .unwrap()
            .is_some()
    );
    let ev = all_events(s).await;
    assert_eq!(ev.last().unwrap().kind, "connection.deleted");
}

// --- management -----------------------------------------------------------------------------------

fn events_of<'a>(ev: &'a [Event], kind: &str) -> Vec<&'a Event> {
    ev.iter().filter(|e| e.kind == kind).collect()
}

async fn api_keys(store: Arc<dyn Store>) {
    let s = &*store;
    assert!(s.list_api_keys().await.unwrap().is_empty());
    let new = |name: &str| NewApiKey {
        name: name.into(),
        key_hash: hash_of(name),
        key_prefix: format!("rc_key_{name}"),
    };
    let a = s.create_api_key(&WriteContext::cli(), new("deploy")).await.unwrap();
    let b = s.create_api_key(&WriteContext::cli(), new("ci")).await.unwrap();
    assert_eq!(a.revoked_us, None);
    assert_eq!(s.api_key_by_hash(&hash_of("deploy")).await.unwrap(), Some(a.clone()));
    assert_eq!(s.api_key_by_hash(&hash_of("nope")).await.unwrap(), None);
    assert_eq!(s.list_api_keys().await.unwrap(), vec![a.clone(), b.clone()]);

    let revoked = s.revoke_api_key(&WriteContext::cli(), &a.id).await.unwrap().unwrap();
    let at = revoked.revoked_us.expect("revoked");
    // Revoking again changes nothing.
    assert_eq!(
        s.revoke_api_key(&WriteContext::cli(), &a.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_us,
        Some(at)
    );
    assert_eq!(s.revoke_api_key(&WriteContext::cli(), "missing").await.unwrap(), None);
    // A revoked key is still found (so that callers can say it was revoked), marked as such.
    let found = s.api_key_by_hash(&hash_of("deploy")).await.unwrap().unwrap();
    assert_eq!(found.revoked_us, Some(at));
    assert_eq!(
        s.api_key_by_hash(&hash_of("ci")).await.unwrap().unwrap().revoked_us,
        None
    );
    let listed = s.list_api_keys().await.unwrap();
    assert_eq!(listed[0].revoked_us, Some(at));
    assert_eq!(listed[1], b);

    let ev = all_events(s).await;
    let created = events_of(&ev, "api_key.created");
    assert_eq!(created.len(), 2);
    assert_eq!(
        created[0].data,
        json!({"api_key_id": a.id, "name": "deploy", "key_prefix": "rc_key_deploy"})
    );
    assert_eq!(events_of(&ev, "api_key.revoked").len(), 1);
}

async fn organization_paging(store: Arc<dyn Store>) {
    let s = &*store;
    assert!(s.list_organizations_after(None, 10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.create_organization(&WriteContext::cli(), &format!("org-{i}"))
                .await
                .unwrap()
                .id,
        );
    }
    ids.sort();
    let page = |after: Option<String>, limit| async move {
        s.list_organizations_after(after.as_deref(), limit)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, ids[..2]);
    assert_eq!(page(Some(ids[1].clone()), 2).await, ids[2..4]);
    assert_eq!(page(Some(ids[3].clone()), 2).await, ids[4..]);
    assert!(page(Some(ids[4].clone()), 2).await.is_empty());
    assert_eq!(page(None, 100).await, ids);
    assert!(page(None, 0).await.is_empty());
    // A cursor that is not an id still pages by order.
    assert_eq!(page(Some(String::new()), 100).await, ids);
}

async fn rename_and_delete_organization(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let renamed = s
        .rename_organization(&WriteContext::cli(), &a.org_id, "alpha")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "alpha");
    assert_eq!(s.get_organization("alpha").await.unwrap().unwrap().id, a.org_id);
    assert_eq!(s.get_organization("a").await.unwrap(), None);
    let e = scim(
        s.rename_organization(&WriteContext::cli(), &a.org_id, "b")
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 409);
    assert!(e.detail.contains("\"b\""), "{}", e.detail);
    assert_eq!(
        s.rename_organization(&WriteContext::cli(), "missing", "x")
            .await
            .unwrap(),
        None
    );
    // Same name: no change, no event.
    s.rename_organization(&WriteContext::cli(), &a.org_id, "alpha")
        .await
        .unwrap()
        .unwrap();
    let ev = all_events(s).await;
    let updated = events_of(&ev, "organization.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0].data,
        json!({"changed": {"name": {"before": "a", "after": "alpha"}}})
    );

    // A second connection in the organization, users, a group with members.
    let second = s
        .create_connection(
            &WriteContext::cli(),
            NewConnection {
                org_id: a.org_id.clone(),
                name: "second".into(),
                idp: IdpKind::Entra,
                token_hash: hash_of("second"),
                token_prefix: "rc_second".into(),
            },
        )
        .await
        .unwrap();
    let u1 = create_user(s, &a, user("one")).await;
    let u2 = create_user(s, &a, user("two")).await;
    let g = create_group(s, &a, "g", &[&u1.id, &u2.id]).await;
    let ub = create_user(s, &b, user("one")).await;
    let gb = create_group(s, &b, "g", &[&ub.id]).await;

    assert!(s.delete_organization(&WriteContext::cli(), &a.org_id).await.unwrap());
    assert!(!s.delete_organization(&WriteContext::cli(), &a.org_id).await.unwrap());
    assert_eq!(s.get_organization(&a.org_id).await.unwrap(), None);
    assert_eq!(s.get_connection(&a.connection_id).await.unwrap(), None);
    assert_eq!(s.get_connection(&second.id).await.unwrap(), None);
    assert_eq!(s.connection_by_token_hash(&hash_of("a")).await.unwrap(), None);
    assert_eq!(s.connection_by_token_hash(&hash_of("second")).await.unwrap(), None);
    for (kind, id) in [
        (ResourceKind::User, &u1.id),
        (ResourceKind::User, &u2.id),
        (ResourceKind::Group, &g.id),
    ] {
        assert!(
            s.get_resource(&a.connection_id, kind, id, true)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert!(s.list_connections(Some(&a.org_id)).await.unwrap().is_empty());
    // The other organization is untouched.
    assert_eq!(s.list_connections(Some(&b.org_id)).await.unwrap().len(), 1);
    let gb = s
        .get_resource(&b.connection_id, ResourceKind::Group, &gb.id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gb.related.unwrap().len(), 1);
    assert_eq!(s.count_organizations().await.unwrap(), 1);

    let ev = all_events(s).await;
    let n = ev.len();
    assert_eq!(ev[n - 1].kind, "organization.deleted");
    assert_eq!(ev[n - 1].org_id.as_deref(), Some(a.org_id.as_str()));
    assert_eq!(ev[n - 1].data, json!({"name": "alpha"}));
    let mut deleted: Vec<String> = ev[n - 3..n - 1]
        .iter()
        .map(|e| {
            assert_eq!(e.kind, "connection.deleted");
            e.connection_id.clone().unwrap()
        })
        .collect();
    deleted.sort();
    let mut expected = vec![a.connection_id.clone(), second.id.clone()];
    expected.sort();
    assert_eq!(deleted, expected);
}

async fn connection_update_and_status(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let before = s.get_connection(&ctx.connection_id).await.unwrap().unwrap();
    assert_eq!(before.status, ConnectionStatus::Active);
    // Nothing to change: no event.
    let same = s
        .update_connection(&WriteContext::cli(), &ctx.connection_id, ConnectionUpdate::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, before);
    let c = s
        .update_connection(
            &WriteContext::cli(),
            &ctx.connection_id,
            ConnectionUpdate {
                name: Some("Okta production".into()),
                idp: Some(IdpKind::Entra),
                status: Some(ConnectionStatus::Disabled),
                debug_logging: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.name.as_str(), c.idp, c.status),
        ("Okta production", IdpKind::Entra, ConnectionStatus::Disabled)
    );
    assert_eq!(s.get_connection(&c.id).await.unwrap(), Some(c.clone()));
    // A disabled connection is still found by its token, with its status, so auth can say why it
    // refuses.
    let found = s.connection_by_token_hash(&hash_of("acme")).await.unwrap().unwrap();
    assert_eq!(found.status, ConnectionStatus::Disabled);
    let c = s
        .update_connection(
            &WriteContext::cli(),
            &ctx.connection_id,
            ConnectionUpdate {
                status: Some(ConnectionStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, ConnectionStatus::Active);
    assert_eq!(c.name, "Okta production");
    assert_eq!(
        s.update_connection(&WriteContext::cli(), "missing", ConnectionUpdate::default())
            .await
            .unwrap(),
        None
    );
    let ev = all_events(s).await;
    let kinds: Vec<&str> = ev
        .iter()
        .filter(|e| e.kind.starts_with("connection.") && e.kind != "connection.created")
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["connection.updated", "connection.disabled", "connection.enabled"]
    );
    assert_eq!(
        events_of(&ev, "connection.updated")[0].data,
        json!({"changed": {"name": {"before": "acme okta", "after": "Okta production"},
                           "idp": {"before": "okta", "after": "entra"}}})
    );
}

async fn token_rotation_overlap(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let id = ctx.connection_id.as_str();
    let by = |t: &'static str| async move { s.connection_by_token_hash(&hash_of(t)).await.unwrap().map(|c| c.id) };
    // Nothing to complete or cancel yet.
    assert_eq!(
        scim(s.complete_token_rotation(&WriteContext::cli(), id).await.unwrap_err()).status,
        409
    );
    assert_eq!(
        scim(s.cancel_token_rotation(&WriteContext::cli(), id).await.unwrap_err()).status,
        409
    );

    let c = s
        .start_token_rotation(&WriteContext::cli(), id, &hash_of("next"), "rc_next")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.token_prefix.as_deref(), Some("rc_acme"));
    assert_eq!(c.next_token_prefix.as_deref(), Some("rc_next"));
    assert!(c.rotation_started_us.is_some());
    assert_eq!(s.get_connection(id).await.unwrap(), Some(c.clone()));
    // Both tokens work during the rotation.
    assert_eq!(by("acme").await.as_deref(), Some(id));
    assert_eq!(by("next").await.as_deref(), Some(id));
    assert!(c.token_matches(&hash_of("acme")) && c.token_matches(&hash_of("next")));
    let e = scim(
        s.start_token_rotation(&WriteContext::cli(), id, &hash_of("third"), "rc_third")
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 409);
    assert_eq!(by("third").await, None);

    let c = s
        .complete_token_rotation(&WriteContext::cli(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.token_prefix.as_deref(), Some("rc_next"));
    assert_eq!((c.next_token_prefix.as_deref(), c.rotation_started_us), (None, None));
    assert_eq!(by("acme").await, None);
    assert_eq!(by("next").await.as_deref(), Some(id));
    assert_eq!(
        scim(s.complete_token_rotation(&WriteContext::cli(), id).await.unwrap_err()).status,
        409
    );

    // Cancelled: only the current token works.
    s.start_token_rotation(&WriteContext::cli(), id, &hash_of("dropped"), "rc_dropped")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by("dropped").await.as_deref(), Some(id));
    let c = s
        .cancel_token_rotation(&WriteContext::cli(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.token_prefix.as_deref(), Some("rc_next"));
    assert_eq!(c.next_token_prefix, None);
    assert_eq!(by("dropped").await, None);
    assert_eq!(by("next").await.as_deref(), Some(id));

    // Replacing the token outright ends a rotation in progress.
    s.start_token_rotation(&WriteContext::cli(), id, &hash_of("pending"), "rc_pending")
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.set_connection_token(&WriteContext::cli(), id, &hash_of("direct"), "rc_direct")
            .await
            .unwrap()
    );
    assert_eq!(by("pending").await, None);
    assert_eq!(by("next").await, None);
    assert_eq!(by("direct").await.as_deref(), Some(id));
    assert_eq!(s.get_connection(id).await.unwrap().unwrap().next_token_prefix, None);

    for missing in [
        s.start_token_rotation(&WriteContext::cli(), "missing", &hash_of("m"), "rc_m")
            .await
            .unwrap(),
        s.complete_token_rotation(&WriteContext::cli(), "missing")
            .await
            .unwrap(),
        s.cancel_token_rotation(&WriteContext::cli(), "missing").await.unwrap(),
    ] {
        assert_eq!(missing, None);
    }
    let ev = all_events(s).await;
    let kinds: Vec<&str> = ev
        .iter()
        .filter(|e| e.kind.starts_with("connection.token"))
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "connection.token_rotation_started",
            "connection.token_rotation_completed",
            "connection.token_rotation_started",
            "connection.token_rotation_cancelled",
            "connection.token_rotation_started",
            "connection.token_rotated",
        ]
    );
    let started = events_of(&ev, "connection.token_rotation_started");
    assert_eq!(started[0].data, json!({"next_token_prefix": "rc_next"}));
    assert_eq!(started[0].connection_id.as_deref(), Some(id));
}

async fn token_revocation(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let id = ctx.connection_id.as_str();
    let user = create_user(s, &ctx, user("kept")).await;
    s.start_token_rotation(&WriteContext::cli(), id, &hash_of("next"), "rc_next")
        .await
        .unwrap()
        .unwrap();
    let c = s
        .revoke_connection_tokens(&WriteContext::cli(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.token_prefix.as_deref(), c.next_token_prefix.as_deref()),
        (None, None)
    );
    assert_eq!((c.token_hash, c.next_token_hash), (None, None));
    assert_eq!(s.get_connection(id).await.unwrap(), Some(c.clone()));
    assert_eq!(s.connection_by_token_hash(&hash_of("acme")).await.unwrap(), None);
    assert_eq!(s.connection_by_token_hash(&hash_of("next")).await.unwrap(), None);
    // The connection keeps its data.
    assert!(
        s.get_resource(id, ResourceKind::User, &user.id, false)
            .await
            .unwrap()
            .is_some()
    );
    // Revoking again is harmless; two connections without a token can coexist.
    s.revoke_connection_tokens(&WriteContext::cli(), id)
        .await
        .unwrap()
        .unwrap();
    let other = tenant(s, "other").await;
    s.revoke_connection_tokens(&WriteContext::cli(), &other.connection_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.revoke_connection_tokens(&WriteContext::cli(), "missing")
            .await
            .unwrap(),
        None
    );
    // Nothing to rotate from: a new token becomes the token at once.
    let c = s
        .start_token_rotation(&WriteContext::cli(), id, &hash_of("fresh"), "rc_fresh")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.token_prefix.as_deref(), Some("rc_fresh"));
    assert_eq!(c.next_token_prefix, None);
    assert_eq!(
        s.connection_by_token_hash(&hash_of("fresh"))
            .await
            .unwrap()
            .map(|c| c.id)
            .as_deref(),
        Some(id)
    );
    let ev = all_events(s).await;
    let revoked = events_of(&ev, "connection.tokens_revoked");
    assert_eq!(revoked.len(), 3);
    assert_eq!(
        revoked[0].data,
        json!({"revoked_token_prefixes": ["rc_acme", "rc_next"]})
    );
    assert_eq!(revoked[1].data, json!({"revoked_token_prefixes": []}));
}

async fn connection_activity(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let id = ctx.connection_id.as_str();
    let events_before = all_events(s).await.len();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!((c.last_request_us, c.last_user_agent.as_deref()), (None, None));
    s.record_connection_request(id, 1_000, Some("Okta SCIM Client 1.0"), None)
        .await
        .unwrap();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!(
        (c.last_request_us, c.last_user_agent.as_deref()),
        (Some(1_000), Some("Okta SCIM Client 1.0"))
    );
    // An older report (another node, late) does not move it back.
    s.record_connection_request(id, 500, Some("late"), None).await.unwrap();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!(c.last_request_us, Some(1_000));
    s.record_connection_request(id, 2_000, None, None).await.unwrap();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!((c.last_request_us, c.last_user_agent.as_deref()), (Some(2_000), None));
    s.record_connection_request("missing", 1, None, None).await.unwrap();
    s.record_connection_request("missing", 1, None, Some(IdpKind::Entra))
        .await
        .unwrap();
    // Activity is not an event.
    assert_eq!(all_events(s).await.len(), events_before);

    // The connection is configured as Okta. Okta recognised: recorded, no event.
    assert_eq!(c.idp, IdpKind::Okta);
    assert_eq!(c.detected_idp, None);
    s.record_connection_request(id, 3_000, Some("Okta SCIM Client 1.0"), Some(IdpKind::Okta))
        .await
        .unwrap();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!(
        (
            c.detected_idp,
            c.detected_idp_first_seen_us,
            c.detected_idp_last_seen_us
        ),
        (Some(IdpKind::Okta), Some(3_000), Some(3_000))
    );
    assert_eq!(all_events(s).await.len(), events_before);
    // Entra calling it: one event, with who was detected and who is configured.
    s.record_connection_request(id, 4_000, Some("Azure AD SCIM Client"), Some(IdpKind::Entra))
        .await
        .unwrap();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!(
        (
            c.detected_idp,
            c.detected_idp_first_seen_us,
            c.detected_idp_last_seen_us
        ),
        (Some(IdpKind::Entra), Some(4_000), Some(4_000))
    );
    assert_eq!(
        (c.last_request_us, c.last_user_agent.as_deref()),
        (Some(4_000), Some("Azure AD SCIM Client"))
    );
    let events = all_events(s).await;
    assert_eq!(events.len(), events_before + 1);
    let e = events.last().unwrap();
    assert_eq!(e.kind, "connection.idp_detected");
    assert_eq!(e.connection_id.as_deref(), Some(id));
    assert_eq!(
        e.data,
        json!({"detected_idp": "entra", "configured_idp": "okta", "previous_detected_idp": "okta",
               "user_agent": "Azure AD SCIM Client"})
    );
    // Entra again, and a late report from another node: no event, last seen moves forward only.
    s.record_connection_request(id, 5_000, Some("Azure AD SCIM Client"), Some(IdpKind::Entra))
        .await
        .unwrap();
    s.record_connection_request(id, 4_500, Some("Azure AD SCIM Client"), Some(IdpKind::Entra))
        .await
        .unwrap();
    let c = s.get_connection(id).await.unwrap().unwrap();
    assert_eq!(
        (
            c.detected_idp_first_seen_us,
            c.detected_idp_last_seen_us,
            c.last_request_us
        ),
        (Some(4_000), Some(5_000), Some(5_000))
    );
    assert_eq!(all_events(s).await.len(), events_before + 1);
}

// --- resources -----------------------------------------------------------------------------------

async fn create_get_update_delete(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut doc = user("bjensen");
    doc["id"] = json!("client-chosen");
    doc["meta"] = json!({"version": "W/\"9\""});
    doc["name"] = json!({"givenName": "Barbara", "familyName": "Jensen"});
    let created = create_user(s, &ctx, doc).await;
    assert_ne!(created.id, "client-chosen");
    assert_eq!(created.version, 1);
    assert_eq!(created.doc["id"], json!(created.id));
    assert!(created.doc.get("meta").is_none());
    assert_eq!(created.created_us, created.modified_us);

    let got = s
        .get_resource(&ctx.connection_id, ResourceKind::User, &created.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, created);
    // The kind must match.
    assert!(
        s.get_resource(&ctx.connection_id, ResourceKind::Group, &created.id, false)
            .await
            .unwrap()
            .is_none()
    );
    // Another connection does not see it.
    let other = tenant(s, "other").await;
    assert!(
        s.get_resource(&other.connection_id, ResourceKind::User, &created.id, false)
            .await
            .unwrap()
            .is_none()
    );

    let updated = s
        .update_resource(
            &ctx,
            ResourceKind::User,
            &created.id,
            None,
            set(json!({"title": "Boss"})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.doc["title"], "Boss");
    assert_eq!(updated.doc["id"], json!(created.id));
    assert!(updated.modified_us >= created.modified_us);
    let got = s
        .get_resource(&ctx.connection_id, ResourceKind::User, &created.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.doc, updated.doc);
    assert_eq!(got.version, 2);
    assert_eq!(got.created_us, created.created_us);

    // An update that changes nothing keeps the version.
    let same = s
        .update_resource(
            &ctx,
            ResourceKind::User,
            &created.id,
            None,
            set(json!({"title": "Boss"})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.version, 2);

    // The indexed columns follow the document.
    let renamed = s
        .update_resource(
            &ctx,
            ResourceKind::User,
            &created.id,
            None,
            set(json!({"userName": "Barbara", "emails": [{"value": "B@X.com"}]})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.version, 3);
    assert_eq!(
        names(s, &ctx, ResourceKind::User, "userName eq \"barbara\"").await,
        ["Barbara"]
    );
    assert!(
        names(s, &ctx, ResourceKind::User, "userName eq \"bjensen\"")
            .await
            .is_empty()
    );
    assert_eq!(
        names(s, &ctx, ResourceKind::User, "emails.value eq \"b@x.com\"").await,
        ["Barbara"]
    );

    // A mutation error is answered as-is and changes nothing.
    let err = s
        .update_resource(
            &ctx,
            ResourceKind::User,
            &created.id,
            None,
            Arc::new(|_d: &mut Value| Err(ScimError::mutability("nope"))),
        )
        .await
        .unwrap_err();
    assert_eq!(scim(err).status, 400);

    assert!(
        s.update_resource(&ctx, ResourceKind::User, "missing", None, set(json!({"title": "x"})))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.delete_resource(&ctx, ResourceKind::User, &created.id, None)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_resource(&ctx, ResourceKind::User, &created.id, None)
            .await
            .unwrap()
    );
    assert!(
        s.get_resource(&ctx.connection_id, ResourceKind::User, &created.id, false)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.update_resource(&ctx, ResourceKind::User, &created.id, None, set(json!({"title": "x"})))
            .await
            .unwrap()
            .is_none()
    );
}

async fn uniqueness_is_case_insensitive(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let first = create_user(s, &ctx, user("ÅSA")).await;
    for taken in ["åsa", "ÅSA", "Åsa"] {
        let e = scim(
            s.create_resource(&ctx, ResourceKind::User, user(taken), vec![])
                .await
                .unwrap_err(),
        );
        assert_eq!(e.status, 409, "{taken}");
        assert_eq!(e.scim_type, Some(ScimType::Uniqueness), "{taken}");
    }
    // Not the same name: "asa" has no ring.
    create_user(s, &ctx, user("asa")).await;
    // Another connection has its own names.
    let other = tenant(s, "other").await;
    create_user(s, &other, user("åsa")).await;
    // Renaming onto a taken name is a conflict too, and leaves the resource as it was.
    let b = create_user(s, &ctx, user("bob")).await;
    let e = scim(
        s.update_resource(&ctx, ResourceKind::User, &b.id, None, set(json!({"userName": "åSA"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 409);
    assert_eq!(e.scim_type, Some(ScimType::Uniqueness));
    let got = s
        .get_resource(&ctx.connection_id, ResourceKind::User, &b.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.version, 1);
    // A user's own name in another case is fine.
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::User,
            &first.id,
            None,
            set(json!({"userName": "åsa"})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.doc["userName"], "åsa");
    // A user and a group may share a name.
    create_group(s, &ctx, "bob", &[]).await;
}

async fn group_display_name_uniqueness(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    create_group(s, &ctx, "Ärzte", &[]).await;
    let e = scim(
        s.create_resource(&ctx, ResourceKind::Group, group("ärzte"), vec![])
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 409);
    assert_eq!(e.scim_type, Some(ScimType::Uniqueness));
    // Users' displayName is not unique.
    let mut a = user("a");
    a["displayName"] = json!("Same");
    let mut b = user("b");
    b["displayName"] = json!("same");
    create_user(s, &ctx, a).await;
    create_user(s, &ctx, b).await;
}

// --- filters -------------------------------------------------------------------------------------

async fn filters_on_indexed_columns(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let ids = seed_people(s, &ctx).await;
    let u = ResourceKind::User;
    assert_eq!(names(s, &ctx, u, "userName eq \"BJENSEN\"").await, ["bjensen"]);
    assert_eq!(names(s, &ctx, u, "userName eq \"åsa.öberg\"").await, ["ÅSA.Öberg"]);
    assert_eq!(names(s, &ctx, u, "externalId eq \"ext-B\"").await, ["bjensen"]);
    // externalId is case-exact.
    assert!(names(s, &ctx, u, "externalId eq \"EXT-B\"").await.is_empty());
    let id = &ids["mike"];
    assert_eq!(names(s, &ctx, u, &format!("id eq \"{id}\"")).await, ["mike"]);
    assert_eq!(names(s, &ctx, u, "displayName eq \"babs jensen\"").await, ["bjensen"]);
    assert_eq!(
        names(s, &ctx, u, "emails.value eq \"bjensen@example.COM\"").await,
        ["bjensen"]
    );
    assert_eq!(names(s, &ctx, u, "emails eq \"babs@jensen.org\"").await, ["bjensen"]);
    assert_eq!(names(s, &ctx, u, "active eq true").await, ["bjensen", "mike"]);
    assert_eq!(names(s, &ctx, u, "active eq false").await, ["ÅSA.Öberg"]);
    assert_eq!(names(s, &ctx, u, "active ne true").await, v(&["nobody", "ÅSA.Öberg"]));
    // Other connections' users never match.
    let other = tenant(s, "other").await;
    assert!(names(s, &other, u, "userName eq \"bjensen\"").await.is_empty());
}

async fn filter_operators(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    seed_people(s, &ctx).await;
    let u = ResourceKind::User;
    let cases: &[(&str, &[&str])] = &[
        ("title eq \"ENGINEER\"", &["ÅSA.Öberg", "mike"]),
        ("title ne \"engineer\"", &["bjensen", "nobody"]),
        ("title co \"GIN\"", &["ÅSA.Öberg", "mike"]),
        ("title sw \"tour\"", &["bjensen"]),
        ("title ew \"GUIDE\"", &["bjensen"]),
        ("userName co \"Öb\"", &["ÅSA.Öberg"]),
        ("userName sw \"å\"", &["ÅSA.Öberg"]),
        ("userName ew \"ERG\"", &["ÅSA.Öberg"]),
        ("userName gt \"m\"", &["mike", "nobody", "ÅSA.Öberg"]),
        ("userName ge \"mike\"", &["mike", "nobody", "ÅSA.Öberg"]),
        ("userName lt \"mike\"", &["bjensen"]),
        ("userName le \"mike\"", &["bjensen", "mike"]),
        // Code point order: "å" (U+00E5) sorts after "z".
        ("userName gt \"z\"", &["ÅSA.Öberg"]),
        ("name.familyName eq \"öberg\"", &["ÅSA.Öberg"]),
        ("name.familyName co \"'\"", &["mike"]),
        ("name.familyName gt \"m\"", &["mike", "ÅSA.Öberg"]),
        ("name.familyName lt \"k\"", &["bjensen"]),
        ("name.familyName gt \"z\"", &["ÅSA.Öberg"]),
        ("emails.value co \"EXAMPLE\"", &["bjensen", "ÅSA.Öberg"]),
        ("emails.value sw \"babs\"", &["bjensen"]),
        ("emails.value ew \".se\"", &["ÅSA.Öberg"]),
        ("emails.value ne \"mike@x.com\"", &["bjensen", "nobody", "ÅSA.Öberg"]),
        ("emails.type eq \"home\"", &["bjensen"]),
        ("emails.primary eq true", &["bjensen", "ÅSA.Öberg"]),
        ("emails.primary eq \"True\"", &["bjensen", "ÅSA.Öberg"]),
        ("title co \"\"", &["bjensen", "mike", "ÅSA.Öberg"]),
    ];
    for (f, want) in cases {
        assert_eq!(names(s, &ctx, u, f).await, v(want), "{f}");
    }
}

async fn filter_substrings_with_wildcard_characters(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    for n in ["a%b", "a_b", "axb", "a\\b", "100%", "x_", "xy"] {
        let mut d = user(n);
        d["title"] = json!(format!("T{n}"));
        create_user(s, &ctx, d).await;
    }
    let u = ResourceKind::User;
    let cases: &[(&str, &[&str])] = &[
        ("userName co \"%\"", &["a%b", "100%"]),
        ("userName co \"_\"", &["a_b", "x_"]),
        ("userName sw \"a%\"", &["a%b"]),
        ("userName sw \"a_\"", &["a_b"]),
        ("userName ew \"%\"", &["100%"]),
        ("userName ew \"_\"", &["x_"]),
        ("userName co \"\\\\\"", &["a\\b"]),
        ("title co \"%\"", &["a%b", "100%"]),
        ("title sw \"ta_\"", &["a_b"]),
        ("title ew \"_\"", &["x_"]),
    ];
    for (f, want) in cases {
        assert_eq!(names(s, &ctx, u, f).await, v(want), "{f}");
    }
}

async fn filter_value_paths_and_urns(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    seed_people(s, &ctx).await;
    let u = ResourceKind::User;
    let cases: &[(&str, &[&str])] = &[
        (
            "emails[type eq \"work\" and value co \"example\"]",
            &["bjensen", "ÅSA.Öberg"],
        ),
        ("emails[type eq \"home\" and value ew \".com\"]", &[]),
        (
            "emails[type eq \"WORK\" and primary eq true]",
            &["bjensen", "ÅSA.Öberg"],
        ),
        ("emails[not (type eq \"work\")]", &["bjensen"]),
        ("emails[value pr]", &["bjensen", "mike", "ÅSA.Öberg"]),
        ("name[givenName sw \"å\"]", &["ÅSA.Öberg"]),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"701984\"",
            &["bjensen"],
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department co \"&\"",
            &["ÅSA.Öberg"],
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"m-1\"",
            &["bjensen"],
        ),
        ("employeeNumber eq \"42\"", &["ÅSA.Öberg"]),
        (
            "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"MIKE\"",
            &["mike"],
        ),
        (
            "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName sw \"o'\"",
            &["mike"],
        ),
    ];
    for (f, want) in cases {
        assert_eq!(names(s, &ctx, u, f).await, v(want), "{f}");
    }
}

async fn filter_logic(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    seed_people(s, &ctx).await;
    let u = ResourceKind::User;
    let cases: &[(&str, &[&str])] = &[
        ("title eq \"engineer\" and active eq true", &["mike"]),
        ("userName eq \"mike\" or userName eq \"bjensen\"", &["bjensen", "mike"]),
        ("not (title eq \"engineer\")", &["bjensen", "nobody"]),
        // `not` of an unknown comparison (no title) is true: SQL NULLs do not leak.
        ("not (title sw \"t\")", &["mike", "nobody", "ÅSA.Öberg"]),
        (
            "(title eq \"engineer\" or title sw \"tour\") and not (emails.value ew \".se\")",
            &["bjensen", "mike"],
        ),
        (
            "userName eq \"nobody\" or (active eq false and title pr)",
            &["nobody", "ÅSA.Öberg"],
        ),
        ("not (not (userName eq \"mike\"))", &["mike"]),
    ];
    for (f, want) in cases {
        assert_eq!(names(s, &ctx, u, f).await, v(want), "{f}");
    }
}

async fn filter_presence_and_null(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    seed_people(s, &ctx).await;
    let mut empty = user("empty-title");
    empty["title"] = json!("");
    create_user(s, &ctx, empty).await;
    let u = ResourceKind::User;
    let cases: &[(&str, &[&str])] = &[
        ("title pr", &["bjensen", "mike", "ÅSA.Öberg"]),
        ("not (title pr)", &["nobody", "empty-title"]),
        ("externalId pr", &["bjensen", "ÅSA.Öberg"]),
        ("emails pr", &["bjensen", "mike", "ÅSA.Öberg"]),
        ("name.givenName pr", &["bjensen", "mike", "ÅSA.Öberg"]),
        ("active pr", &["bjensen", "mike", "ÅSA.Öberg", "empty-title"]),
        ("title eq null", &["nobody"]),
        ("title ne null", &["bjensen", "mike", "ÅSA.Öberg", "empty-title"]),
        ("externalId eq null", &["mike", "nobody", "empty-title"]),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber pr",
            &["bjensen", "ÅSA.Öberg"],
        ),
    ];
    for (f, want) in cases {
        assert_eq!(names(s, &ctx, u, f).await, v(want), "{f}");
    }
}

fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn filter_last_modified(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let ids = seed_people(s, &ctx).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mark = rollcall_store::sqlite::now_us();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::User,
            &ids["mike"],
            None,
            set(json!({"title": "CTO"})),
        )
        .await
        .unwrap()
        .unwrap();
    let u = ResourceKind::User;
    let at = rfc3339(mark);
    assert_eq!(
        names(s, &ctx, u, &format!("meta.lastModified gt \"{at}\"")).await,
        ["mike"]
    );
    assert_eq!(
        names(s, &ctx, u, &format!("meta.lastModified ge \"{at}\"")).await,
        ["mike"]
    );
    assert_eq!(
        names(s, &ctx, u, &format!("meta.lastModified lt \"{at}\"")).await.len(),
        3
    );
    assert_eq!(names(s, &ctx, u, &format!("meta.created gt \"{at}\"")).await.len(), 0);
    let exact = rfc3339(r.modified_us);
    assert_eq!(
        names(s, &ctx, u, &format!("meta.lastModified eq \"{exact}\"")).await,
        ["mike"]
    );
    assert_eq!(
        names(s, &ctx, u, "meta.lastModified gt \"2000-01-01T00:00:00Z\"")
            .await
            .len(),
        4
    );
    // A bad dateTime is the client's error.
    let mut bad = query(None, u);
    bad.filter = Some(Filter::parse("meta.lastModified gt \"yesterday\"").unwrap());
    let err = s.list_resources(&ctx.connection_id, u, &bad).await.unwrap_err();
    assert_eq!(scim(err).status, 400);
}

async fn filter_groups(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let a = create_user(s, &ctx, user("alice")).await;
    let b = create_user(s, &ctx, user("bob")).await;
    let admins = create_group(s, &ctx, "Admins", &[&a.id]).await;
    create_group(s, &ctx, "Everyone", &[&a.id, &b.id, &admins.id]).await;
    create_group(s, &ctx, "Ünïcode Team", &[]).await;
    let g = ResourceKind::Group;
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("displayName eq \"admins\"".into(), vec!["Admins"]),
        ("displayName eq \"ünïcode team\"".into(), vec!["Ünïcode Team"]),
        ("displayName sw \"Ü\"".into(), vec!["Ünïcode Team"]),
        ("displayName co \"ONE\"".into(), vec!["Everyone"]),
        (format!("members.value eq \"{}\"", b.id), vec!["Everyone"]),
        (format!("members eq \"{}\"", a.id), vec!["Admins", "Everyone"]),
        (format!("members[value eq \"{}\"]", admins.id), vec!["Everyone"]),
        ("members[type eq \"Group\"]".into(), vec!["Everyone"]),
        ("members pr".into(), vec!["Admins", "Everyone"]),
        ("not (members pr)".into(), vec!["Ünïcode Team"]),
        (format!("id eq \"{}\"", admins.id), vec!["Admins"]),
    ];
    for (f, want) in cases {
        assert_eq!(names(s, &ctx, g, &f).await, v(&want), "{f}");
    }
}

// --- sorting and paging --------------------------------------------------------------------------

async fn sorted(store: &dyn Store, ctx: &WriteContext, by: &str, order: SortOrder) -> Vec<String> {
    let mut q = query(None, ResourceKind::User);
    q.sort = Some(Sort {
        path: AttrPath::parse(by).unwrap(),
        order,
    });
    let page = store
        .list_resources(&ctx.connection_id, ResourceKind::User, &q)
        .await
        .unwrap_or_else(|e| panic!("sortBy {by}: {e}"));
    page.resources.iter().map(name_of).collect()
}

async fn sort_ascending_and_descending(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    // userNames folded: "ab", "a-c", "b", "é", "Z"→"z"; byte order: a-c < ab < b < z < é.
    for (n, family, email) in [
        ("b", Some("Ab"), Some("z@x")),
        ("ab", Some("a-c"), None),
        ("é", None, Some("a@x")),
        ("Z", Some("zz"), Some("m@x")),
        ("a-c", Some("É"), None),
    ] {
        let mut d = user(n);
        if let Some(f) = family {
            d["name"] = json!({"familyName": f});
        }
        if let Some(e) = email {
            d["emails"] = json!([{"value": "other@x"}, {"value": e, "primary": true}]);
        }
        create_user(s, &ctx, d).await;
    }
    let asc = SortOrder::Ascending;
    let desc = SortOrder::Descending;
    assert_eq!(sorted(s, &ctx, "userName", asc).await, ["a-c", "ab", "b", "Z", "é"]);
    assert_eq!(sorted(s, &ctx, "userName", desc).await, ["é", "Z", "b", "ab", "a-c"]);
    // Missing values sort last ascending, first descending.
    assert_eq!(
        sorted(s, &ctx, "name.familyName", asc).await,
        ["ab", "b", "Z", "a-c", "é"]
    );
    assert_eq!(
        sorted(s, &ctx, "name.familyName", desc).await,
        ["é", "a-c", "Z", "b", "ab"]
    );
    // Multi-valued: the primary value.
    assert_eq!(sorted(s, &ctx, "emails.value", asc).await, ["é", "Z", "b", "ab", "a-c"]);
    assert_eq!(sorted(s, &ctx, "emails", desc).await, ["a-c", "ab", "b", "Z", "é"]);
    // Ties break on creation order.
    assert_eq!(sorted(s, &ctx, "active", asc).await, ["b", "ab", "é", "Z", "a-c"]);
    assert_eq!(
        sorted(s, &ctx, "meta.created", desc).await,
        ["a-c", "Z", "é", "ab", "b"]
    );
}

async fn index_paging(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    for i in 0..7 {
        create_user(s, &ctx, user(&format!("u{i}"))).await;
    }
    create_user(s, &ctx, user("other")).await;
    let page = |start: i64, count: i64| {
        let mut q = query(Some("userName sw \"u\""), ResourceKind::User);
        q.paging = Paging::Index { start_index: start };
        q.count = count;
        q.sort = Some(Sort {
            path: AttrPath::parse("userName").unwrap(),
            order: SortOrder::Descending,
        });
        q
    };
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &page(1, 3))
        .await
        .unwrap();
    assert_eq!(p.total, 7);
    assert_eq!(p.resources.iter().map(name_of).collect::<Vec<_>>(), ["u6", "u5", "u4"]);
    assert_eq!(p.next_after, None);
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &page(6, 3))
        .await
        .unwrap();
    assert_eq!(p.resources.iter().map(name_of).collect::<Vec<_>>(), ["u1", "u0"]);
    assert_eq!(p.total, 7, "a page after the first counts every match (not \"other\")");
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &page(4, 3))
        .await
        .unwrap();
    assert_eq!(p.resources.iter().map(name_of).collect::<Vec<_>>(), ["u3", "u2", "u1"]);
    assert_eq!(p.total, 7);
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &page(20, 3))
        .await
        .unwrap();
    assert_eq!((p.total, p.resources.len()), (7, 0));
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &page(1, 0))
        .await
        .unwrap();
    assert_eq!((p.total, p.resources.len()), (7, 0));
}

async fn cursor_paging(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(create_user(s, &ctx, user(&format!("u{i}"))).await.id);
    }
    create_user(s, &ctx, user("other")).await;
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut q = query(Some("userName sw \"u\""), ResourceKind::User);
        q.paging = Paging::Cursor { after: after.clone() };
        q.count = 3;
        let p = s
            .list_resources(&ctx.connection_id, ResourceKind::User, &q)
            .await
            .unwrap();
        pages += 1;
        assert!(p.resources.len() <= 3);
        seen.extend(p.resources.iter().map(|r| r.id.clone()));
        assert_eq!(p.total, 7, "every page counts every match (not \"other\")");
        match p.next_after {
            Some(n) => {
                assert_eq!(
                    Some(&n),
                    seen.last(),
                    "the next page starts after the last resource returned"
                );
                after = Some(n);
            }
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
}

// --- membership ----------------------------------------------------------------------------------

async fn member_ids(store: &dyn Store, ctx: &WriteContext, group_id: &str) -> Vec<String> {
    let g = store
        .get_resource(&ctx.connection_id, ResourceKind::Group, group_id, true)
        .await
        .unwrap()
        .unwrap();
    let mut ids: Vec<String> = g.related.unwrap().into_iter().map(|m| m.id).collect();
    ids.sort();
    ids
}

fn sorted_ids(ids: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

async fn membership_changes(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut alice = user("alice");
    alice["displayName"] = json!("Alice Liddell");
    let a = create_user(s, &ctx, alice).await;
    let b = create_user(s, &ctx, user("bob")).await;
    let c = create_user(s, &ctx, user("carol")).await;
    let sub = create_group(s, &ctx, "Sub", &[]).await;
    let g = create_group(s, &ctx, "G", &[&a.id, &a.id]).await;
    assert_eq!(member_ids(s, &ctx, &g.id).await, std::slice::from_ref(&a.id));

    // Add: existing members are a no-op; the group's version moves only when something changed.
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            members(vec![MemberChange::Add(vec![
                mref(&a.id),
                mref(&b.id),
                MemberRef {
                    value: sub.id.clone(),
                    kind: Some("Group".into()),
                    display: Some("Sub team".into()),
                },
            ])]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(member_ids(s, &ctx, &g.id).await, sorted_ids(&[&a.id, &b.id, &sub.id]));
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            members(vec![MemberChange::Add(vec![mref(&a.id)])]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 2);

    // The members read back carry their kind and the display the client sent (none: None); adding
    // an existing member with a display keeps the new display without a new version.
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            members(vec![MemberChange::Add(vec![MemberRef {
                value: b.id.clone(),
                kind: None,
                display: Some("Bobby".into()),
            }])]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 2);
    let full = s
        .get_resource(&ctx.connection_id, ResourceKind::Group, &g.id, true)
        .await
        .unwrap()
        .unwrap();
    let rel = full.related.unwrap();
    let view = |id: &str| {
        let m = rel.iter().find(|m| m.id == id).unwrap();
        (m.kind, m.display.clone())
    };
    assert_eq!(view(&sub.id), (ResourceKind::Group, Some("Sub team".to_string())));
    assert_eq!(view(&a.id), (ResourceKind::User, None));
    assert_eq!(view(&b.id), (ResourceKind::User, Some("Bobby".to_string())));

    // Remove (unknown ids are ignored).
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            members(vec![MemberChange::Remove(vec![b.id.clone(), "nope".into()])]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 3);
    assert_eq!(member_ids(s, &ctx, &g.id).await, sorted_ids(&[&a.id, &sub.id]));

    // Remove where: a filter over members.
    s.update_resource(
        &ctx,
        ResourceKind::Group,
        &g.id,
        None,
        members(vec![MemberChange::RemoveWhere(
            Filter::parse("type eq \"Group\"").unwrap(),
        )]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(member_ids(s, &ctx, &g.id).await, std::slice::from_ref(&a.id));

    // Replace all.
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            members(vec![MemberChange::ReplaceAll(vec![mref(&b.id), mref(&c.id)])]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 5);
    assert_eq!(member_ids(s, &ctx, &g.id).await, sorted_ids(&[&b.id, &c.id]));
    s.update_resource(
        &ctx,
        ResourceKind::Group,
        &g.id,
        None,
        members(vec![MemberChange::RemoveWhere(
            Filter::parse("value eq \"nothing\"").unwrap(),
        )]),
    )
    .await
    .unwrap()
    .unwrap();
    s.update_resource(
        &ctx,
        ResourceKind::Group,
        &g.id,
        None,
        members(vec![MemberChange::ReplaceAll(vec![])]),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(member_ids(s, &ctx, &g.id).await.is_empty());

    // A document change and a member change in one update.
    let r = s
        .update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            Arc::new({
                let a = a.id.clone();
                move |d: &mut Value| {
                    d["displayName"] = json!("G2");
                    Ok(vec![MemberChange::Add(vec![mref(&a)])])
                }
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 7);
    assert_eq!(r.doc["displayName"], "G2");
    assert_eq!(member_ids(s, &ctx, &g.id).await, std::slice::from_ref(&a.id));

    // Removing a member by a `display` filter.
    s.update_resource(
        &ctx,
        ResourceKind::Group,
        &g.id,
        None,
        members(vec![MemberChange::RemoveWhere(
            Filter::parse("display sw \"ALI\"").unwrap(),
        )]),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(member_ids(s, &ctx, &g.id).await.is_empty());
}

async fn unknown_member_is_rejected(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "other").await;
    let a = create_user(s, &ctx, user("alice")).await;
    let foreign = create_user(s, &other, user("zed")).await;
    let gone = create_user(s, &ctx, user("gone")).await;
    s.delete_resource(&ctx, ResourceKind::User, &gone.id, None)
        .await
        .unwrap();
    for bad in ["no-such-id", foreign.id.as_str(), gone.id.as_str()] {
        let e = scim(
            s.create_resource(&ctx, ResourceKind::Group, group("G"), vec![mref(&a.id), mref(bad)])
                .await
                .unwrap_err(),
        );
        assert_eq!(e.status, 400, "{bad}");
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{bad}");
    }
    // Nothing was kept of the failed creates.
    assert!(
        names(s, &ctx, ResourceKind::Group, "displayName eq \"G\"")
            .await
            .is_empty()
    );
    let g = create_group(s, &ctx, "G", &[&a.id]).await;
    let e = scim(
        s.update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            Arc::new(|d: &mut Value| {
                d["displayName"] = json!("renamed");
                Ok(vec![MemberChange::ReplaceAll(vec![mref("no-such-id")])])
            }),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.status, 400);
    let got = s
        .get_resource(&ctx.connection_id, ResourceKind::Group, &g.id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.version, 1);
    assert_eq!(got.doc["displayName"], "G");
    assert_eq!(got.related.unwrap().len(), 1);
    // A group cannot contain itself.
    let e = scim(
        s.update_resource(
            &ctx,
            ResourceKind::Group,
            &g.id,
            None,
            members(vec![MemberChange::Add(vec![mref(&g.id)])]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.status, 400);
}

async fn user_groups_are_derived(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let a = create_user(s, &ctx, user("alice")).await;
    let b = create_user(s, &ctx, user("bob")).await;
    let g1 = create_group(s, &ctx, "One", &[&a.id]).await;
    let g2 = create_group(s, &ctx, "Two", &[&a.id, &b.id]).await;
    let groups_of = |id: String| {
        let store = store.clone();
        let conn = ctx.connection_id.clone();
        async move {
            let u = store
                .get_resource(&conn, ResourceKind::User, &id, true)
                .await
                .unwrap()
                .unwrap();
            u.related
                .unwrap()
                .into_iter()
                .map(|m| (m.id, m.kind, m.display))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        groups_of(a.id.clone()).await,
        vec![
            (g1.id.clone(), ResourceKind::Group, Some("One".to_string())),
            (g2.id.clone(), ResourceKind::Group, Some("Two".to_string())),
        ]
    );
    // Without members asked for, there are none.
    let plain = s
        .get_resource(&ctx.connection_id, ResourceKind::User, &a.id, false)
        .await
        .unwrap()
        .unwrap();
    assert!(plain.related.is_none());
    // In lists too.
    let mut q = query(Some("userName eq \"bob\""), ResourceKind::User);
    q.with_members = true;
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &q)
        .await
        .unwrap();
    assert_eq!(p.resources[0].related.as_ref().unwrap().len(), 1);
    // A group renamed shows under its new name; a deleted group disappears, and its members
    // leave it.
    s.update_resource(
        &ctx,
        ResourceKind::Group,
        &g2.id,
        None,
        set(json!({"displayName": "Deux"})),
    )
    .await
    .unwrap();
    assert_eq!(groups_of(b.id.clone()).await[0].2.as_deref(), Some("Deux"));
    s.delete_resource(&ctx, ResourceKind::Group, &g1.id, None)
        .await
        .unwrap();
    assert_eq!(groups_of(a.id.clone()).await.len(), 1);
    // Deleting a user takes it out of its groups and moves their version.
    let before = s
        .get_resource(&ctx.connection_id, ResourceKind::Group, &g2.id, false)
        .await
        .unwrap()
        .unwrap()
        .version;
    s.delete_resource(&ctx, ResourceKind::User, &b.id, None).await.unwrap();
    let after = s
        .get_resource(&ctx.connection_id, ResourceKind::Group, &g2.id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.version, before + 1);
    assert_eq!(
        after.related.unwrap().into_iter().map(|m| m.id).collect::<Vec<_>>(),
        std::slice::from_ref(&a.id)
    );
}

async fn soft_delete_and_recreate(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let old = create_user(s, &ctx, user("Bob")).await;
    let g = create_group(s, &ctx, "Team", &[&old.id]).await;
    assert!(
        s.delete_resource(&ctx, ResourceKind::User, &old.id, None)
            .await
            .unwrap()
    );
    let new = create_user(s, &ctx, user("bob")).await;
    assert_ne!(new.id, old.id);
    assert_eq!(new.version, 1);
    assert!(
        s.get_resource(&ctx.connection_id, ResourceKind::User, &old.id, false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(names(s, &ctx, ResourceKind::User, "userName eq \"BOB\"").await, ["bob"]);
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &query(None, ResourceKind::User))
        .await
        .unwrap();
    assert_eq!(p.total, 1);
    assert_eq!(p.resources[0].id, new.id);
    // The old member is gone from the group; the new one is not in it.
    assert!(member_ids(s, &ctx, &g.id).await.is_empty());
    // Groups can be deleted and re-created as well.
    assert!(s.delete_resource(&ctx, ResourceKind::Group, &g.id, None).await.unwrap());
    let g2 = create_group(s, &ctx, "TEAM", &[&new.id]).await;
    assert_ne!(g2.id, g.id);
    assert_eq!(
        names(s, &ctx, ResourceKind::Group, "displayName eq \"team\"").await,
        ["TEAM"]
    );
    let ev = all_events(s).await;
    let created: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == "user.created")
        .map(|e| e.resource_id.clone().unwrap())
        .collect();
    assert_eq!(created, [old.id.clone(), new.id.clone()]);
}

async fn events_per_change(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let start = all_events(s).await;
    assert_eq!(
        start.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["organization.created", "connection.created"]
    );
    assert_eq!(start[0].data, json!({"name": "acme"}));
    assert_eq!(start[1].data, json!({"name": "acme okta", "idp": "okta"}));
    let after = start.last().unwrap().seq;

    let a = create_user(s, &ctx, user("alice")).await;
    s.update_resource(&ctx, ResourceKind::User, &a.id, None, set(json!({"title": "CEO"})))
        .await
        .unwrap();
    s.update_resource(&ctx, ResourceKind::User, &a.id, None, set(json!({"active": false})))
        .await
        .unwrap();
    s.update_resource(&ctx, ResourceKind::User, &a.id, None, set(json!({"active": true})))
        .await
        .unwrap();
    // No change, no event.
    s.update_resource(&ctx, ResourceKind::User, &a.id, None, set(json!({"active": true})))
        .await
        .unwrap();
    let b = create_user(s, &ctx, user("bob")).await;
    let g = create_group(s, &ctx, "G", &[&a.id, &b.id]).await;
    s.update_resource(
        &ctx,
        ResourceKind::Group,
        &g.id,
        None,
        members(vec![MemberChange::Remove(vec![b.id.clone()])]),
    )
    .await
    .unwrap();
    s.update_resource(&ctx, ResourceKind::Group, &g.id, None, set(json!({"displayName": "H"})))
        .await
        .unwrap();
    s.delete_resource(&ctx, ResourceKind::User, &a.id, None).await.unwrap();
    s.delete_resource(&ctx, ResourceKind::Group, &g.id, None).await.unwrap();

    let ev = s.events_after(after, 1000).await.unwrap();
    let kinds: Vec<(&str, Option<&str>)> = ev.iter().map(|e| (e.kind.as_str(), e.resource_id.as_deref())).collect();
    let (ai, bi, gi) = (Some(a.id.as_str()), Some(b.id.as_str()), Some(g.id.as_str()));
    assert_eq!(
        kinds,
        [
            ("user.created", ai),
            ("user.updated", ai),
            ("user.deactivated", ai),
            ("user.reactivated", ai),
            ("user.created", bi),
            ("group.created", gi),
            ("group.member_added", gi),
            ("group.member_added", gi),
            ("group.member_removed", gi),
            ("group.updated", gi),
            ("group.member_removed", gi),
            ("user.deleted", ai),
            ("group.deleted", gi),
        ]
    );
    for w in ev.windows(2) {
        assert!(w[0].seq < w[1].seq);
    }
    for e in &ev {
        assert_eq!(e.org_id.as_deref(), Some(ctx.org_id.as_str()));
        assert_eq!(e.connection_id.as_deref(), Some(ctx.connection_id.as_str()));
        assert!(e.created_us > 0);
        assert!(!e.id.is_empty());
    }
    assert_eq!(ev[0].resource_type.as_deref(), Some("User"));
    assert_eq!(ev[5].resource_type.as_deref(), Some("Group"));
    assert_eq!(ev[0].data["attributes"]["userName"], "alice");
    assert_eq!(
        ev[1].data,
        json!({"changed": {"title": {"before": null, "after": "CEO"}}})
    );
    assert_eq!(ev[2].data["changed"]["active"], json!({"before": true, "after": false}));
    assert_eq!(ev[6].data, json!({"member": a.id}));
    assert_eq!(ev[8].data, json!({"member": b.id}));
    // Paging through the log.
    let first = s.events_after(after, 5).await.unwrap();
    assert_eq!(first.len(), 5);
    let rest = s.events_after(first[4].seq, 1000).await.unwrap();
    assert_eq!(rest.len(), ev.len() - 5);
    assert_eq!(rest[0].seq, ev[5].seq);
    assert!(s.events_after(ev.last().unwrap().seq, 10).await.unwrap().is_empty());
}

async fn if_match(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let a = create_user(s, &ctx, user("alice")).await;
    let e = scim(
        s.update_resource(&ctx, ResourceKind::User, &a.id, Some(7), set(json!({"title": "x"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 412);
    let r = s
        .update_resource(&ctx, ResourceKind::User, &a.id, Some(1), set(json!({"title": "x"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 2);
    let e = scim(
        s.update_resource(&ctx, ResourceKind::User, &a.id, Some(1), set(json!({"title": "y"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 412);
    let e = scim(
        s.delete_resource(&ctx, ResourceKind::User, &a.id, Some(1))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 412);
    assert!(
        s.delete_resource(&ctx, ResourceKind::User, &a.id, Some(2))
            .await
            .unwrap()
    );
    // A missing resource is "not found", whatever the version.
    assert!(
        !s.delete_resource(&ctx, ResourceKind::User, &a.id, Some(3))
            .await
            .unwrap()
    );
}

// --- concurrency ---------------------------------------------------------------------------------

async fn concurrent_creates_same_user_name(store: Arc<dyn Store>) {
    let ctx = Arc::new(tenant(&*store, "acme").await);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (store, ctx) = (store.clone(), ctx.clone());
        // Different cases, one folded name.
        let name = if i % 2 == 0 { "Race.Åsa" } else { "race.åsa" };
        tasks.push(tokio::spawn(async move {
            store
                .create_resource(&ctx, ResourceKind::User, user(name), vec![])
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                let e = scim(e);
                assert_eq!((e.status, e.scim_type), (409, Some(ScimType::Uniqueness)));
            }
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        names(&*store, &ctx, ResourceKind::User, "userName eq \"RACE.ÅSA\"")
            .await
            .len(),
        1
    );
    let created = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.kind == "user.created")
        .count();
    assert_eq!(created, 1);
}

/// Many creates at once, of new users, of users that exist and of the same new user twice (on
/// PostgreSQL those that arrive while a create statement runs are written together by the next
/// one; on SQLite they share transactions): each is answered for itself, a conflict with 409
/// `uniqueness` and nothing written, and each create stored is read back as it was answered, with
/// one event carrying its own request's context.
async fn concurrent_creates_each_answered_for_itself(store: Arc<dyn Store>) {
    let base = tenant(&*store, "acme").await;
    for n in 0..4 {
        create_user(&*store, &base, user(&format!("taken{n}"))).await;
    }
    let mut tasks = Vec::new();
    for i in 0..48 {
        let store = store.clone();
        let ctx = WriteContext {
            request_id: Some(format!("req-{i}")),
            user_agent: Some(format!("agent-{i}")),
            ..base.clone()
        };
        // Every sixth a user that exists; "twin" twice; the rest new.
        let name = match i {
            _ if i % 6 == 0 => format!("taken{}", i / 6 % 4),
            7 | 8 => "twin".to_string(),
            _ => format!("new{i}"),
        };
        tasks.push(tokio::spawn(async move {
            let r = store
                .create_resource(&ctx, ResourceKind::User, user(&name), vec![])
                .await;
            (i, name, r)
        }));
    }
    let mut created = HashMap::new();
    let mut twins = 0;
    for t in tasks {
        let (i, name, r) = t.await.unwrap();
        match r {
            Ok(u) => {
                assert!(!name.starts_with("taken"), "{name} was created twice");
                twins += usize::from(name == "twin");
                created.insert(u.id.clone(), (i, name, u));
            }
            Err(e) => {
                let e = scim(e);
                assert_eq!((e.status, e.scim_type), (409, Some(ScimType::Uniqueness)), "{name}");
                assert!(name.starts_with("taken") || name == "twin", "{name} refused");
            }
        }
    }
    assert_eq!(twins, 1, "one of the twins is created");
    assert_eq!(created.len(), 48 - 8 - 1);
    for (id, (_, name, answered)) in &created {
        let stored = store
            .get_resource(&base.connection_id, ResourceKind::User, id, false)
            .await
            .unwrap()
            .expect("an answered create is stored");
        assert_eq!(stored.doc.into_value()["userName"], json!(name));
        assert_eq!(
            (stored.created_us, stored.modified_us, stored.version),
            (answered.created_us, answered.created_us, 1)
        );
    }
    let events: Vec<Event> = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.kind == "user.created" && e.request_id != base.request_id)
        .collect();
    assert_eq!(events.len(), created.len(), "one event per create");
    for e in events {
        let (i, _, _) = &created[e.resource_id.as_deref().unwrap()];
        assert_eq!(e.request_id, Some(format!("req-{i}")));
        assert_eq!(e.user_agent, Some(format!("agent-{i}")));
    }
}

async fn concurrent_member_adds(store: Arc<dyn Store>) {
    let ctx = Arc::new(tenant(&*store, "acme").await);
    let a = create_user(&*store, &ctx, user("alice")).await;
    let b = create_user(&*store, &ctx, user("bob")).await;
    let g = create_group(&*store, &ctx, "G", &[]).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (store, ctx, gid) = (store.clone(), ctx.clone(), g.id.clone());
        let who = if i % 2 == 0 { a.id.clone() } else { b.id.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .update_resource(
                    &ctx,
                    ResourceKind::Group,
                    &gid,
                    None,
                    members(vec![MemberChange::Add(vec![mref(&who)])]),
                )
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(member_ids(&*store, &ctx, &g.id).await, sorted_ids(&[&a.id, &b.id]));
    let added = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.kind == "group.member_added")
        .count();
    assert_eq!(added, 2);
    let got = store
        .get_resource(&ctx.connection_id, ResourceKind::Group, &g.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.version, 3);
}

/// Many member PATCHes of one group at once (on PostgreSQL those waiting are written together by
/// one statement): every PATCH is applied once, in some order, with its own events and request
/// context, and each answers with a version of its own, the group's last one the highest.
async fn concurrent_member_patches_of_one_group(store: Arc<dyn Store>) {
    let ctx = tenant(&*store, "acme").await;
    let mut users = Vec::new();
    for i in 0..24 {
        users.push(create_user(&*store, &ctx, user(&format!("u{i}"))).await.id);
    }
    // The first eight start in the group.
    let g = create_group(
        &*store,
        &ctx,
        "G",
        &users[..8].iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let before = all_events(&*store).await.len();
    let mut tasks = Vec::new();
    for (i, id) in users.iter().enumerate() {
        let (store, gid, id) = (store.clone(), g.id.clone(), id.clone());
        let ctx = WriteContext {
            request_id: Some(format!("req-{i}")),
            ..ctx.clone()
        };
        // Members 0..8 are removed then added again (two events each); 8..16 are added with a
        // display (one event each); 16..24 are removed though they are not members (no event).
        let change = match i {
            0..8 => vec![
                MemberChange::Remove(vec![id.clone()]),
                MemberChange::Add(vec![mref(&id)]),
            ],
            8..16 => vec![MemberChange::Add(vec![MemberRef {
                display: Some(format!("U{i}")),
                ..mref(&id)
            }])],
            _ => vec![MemberChange::Remove(vec![id.clone()])],
        };
        tasks.push(tokio::spawn(async move {
            store
                .update_resource(&ctx, ResourceKind::Group, &gid, None, members(change))
                .await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap().expect("the group exists").version);
    }
    assert_eq!(
        member_ids(&*store, &ctx, &g.id).await,
        sorted_ids(&users[..16].iter().map(String::as_str).collect::<Vec<_>>())
    );
    let events: Vec<Event> = all_events(&*store).await.into_iter().skip(before).collect();
    let of = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(of("group.member_removed"), 8);
    assert_eq!(of("group.member_added"), 16);
    assert_eq!(events.len(), 24);
    // Each event carries the request that caused it, and names its member.
    for e in &events {
        let member = e.data["member"].as_str().unwrap();
        let i = users.iter().position(|u| u == member).unwrap();
        assert_eq!(e.request_id.as_deref(), Some(format!("req-{i}").as_str()), "{e:?}");
    }
    // A member removed then added: its removal is logged before its addition.
    for u in &users[..8] {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e.data["member"] == json!(u))
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(kinds, ["group.member_removed", "group.member_added"]);
    }
    let got = store
        .get_resource(&ctx.connection_id, ResourceKind::Group, &g.id, true)
        .await
        .unwrap()
        .unwrap();
    // Sixteen PATCHes changed the group: sixteen versions more, each PATCH's own.
    assert_eq!(got.version, g.version + 16);
    let mut changing: Vec<i64> = versions[..16].to_vec();
    changing.sort_unstable();
    changing.dedup();
    assert_eq!(changing.len(), 16, "{versions:?}");
    assert_eq!(*changing.last().unwrap(), got.version);
    assert!(
        versions[16..].iter().all(|v| *v >= g.version && *v <= got.version),
        "{versions:?}"
    );
    let displays: HashMap<String, Option<String>> =
        got.related.unwrap().into_iter().map(|m| (m.id, m.display)).collect();
    for (i, u) in users[8..16].iter().enumerate() {
        assert_eq!(displays[u].as_deref(), Some(format!("U{}", i + 8).as_str()));
    }
}

/// Several creates in one transaction (a `/Bulk` request's): all written, each with its event,
/// or, when one of them fails, none.
async fn creates_in_one_transaction(store: Arc<dyn Store>) {
    let ctx = tenant(&*store, "acme").await;
    create_user(&*store, &ctx, user("taken")).await;
    let before = all_events(&*store).await.len();
    let docs = |names: &[&str]| names.iter().map(|n| (user(n), vec![])).collect::<Vec<_>>();
    let created = store
        .create_resources(&ctx, ResourceKind::User, docs(&["a", "b", "c"]))
        .await
        .unwrap();
    assert_eq!(created.iter().map(name_of).collect::<Vec<_>>(), v(&["a", "b", "c"]));
    for r in &created {
        let got = store
            .get_resource(&ctx.connection_id, ResourceKind::User, &r.id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(name_of(&got), name_of(r));
    }
    let events = all_events(&*store).await;
    assert_eq!(events.len(), before + 3);
    assert!(events[before..].iter().all(|e| e.kind == "user.created"));
    // One name taken (by an earlier user, or twice in the batch): nothing written.
    for names in [&["d", "TAKEN", "e"][..], &["f", "g", "F"][..]] {
        let e = store
            .create_resources(&ctx, ResourceKind::User, docs(names))
            .await
            .unwrap_err();
        assert_eq!(scim(e).scim_type, Some(ScimType::Uniqueness));
    }
    assert_eq!(all_events(&*store).await.len(), before + 3);
    assert_eq!(
        names(&*store, &ctx, ResourceKind::User, "userName pr").await,
        v(&["a", "b", "c", "taken"])
    );
    // Groups with members take the transactional way: still one transaction.
    let groups = store
        .create_resources(
            &ctx,
            ResourceKind::Group,
            vec![(group("G1"), vec![mref(&created[0].id)]), (group("G2"), vec![])],
        )
        .await
        .unwrap();
    assert_eq!(
        member_ids(&*store, &ctx, &groups[0].id).await,
        vec![created[0].id.clone()]
    );
    let e = store
        .create_resources(
            &ctx,
            ResourceKind::Group,
            vec![(group("G3"), vec![]), (group("G4"), vec![mref("no-such-user")])],
        )
        .await
        .unwrap_err();
    assert_eq!(scim(e).status, 400);
    assert_eq!(
        names(&*store, &ctx, ResourceKind::Group, "displayName pr").await,
        v(&["G1", "G2"])
    );
}

/// Two updates that lock their own group, then (to add it as a member) the other's: on PostgreSQL
/// they deadlock, one is chosen as the victim and run again. Both must succeed, and each mutation
/// must run exactly once.
async fn crossing_updates_both_succeed(store: Arc<dyn Store>) {
    let ctx = Arc::new(tenant(&*store, "acme").await);
    let g1 = create_group(&*store, &ctx, "G1", &[]).await;
    let g2 = create_group(&*store, &ctx, "G2", &[]).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (mine, theirs) in [(g1.id.clone(), g2.id.clone()), (g2.id.clone(), g1.id.clone())] {
        let (store, ctx, runs) = (store.clone(), ctx.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            let mutation: Mutation = Arc::new(move |d: &mut Value| {
                runs.fetch_add(1, Ordering::SeqCst);
                // Hold the row lock long enough for the other update to take its own.
                tokio::task::block_in_place(|| std::thread::sleep(std::time::Duration::from_millis(300)));
                d["description"] = json!("crossed");
                Ok(vec![MemberChange::Add(vec![mref(&theirs)])])
            });
            store
                .update_resource(&ctx, ResourceKind::Group, &mine, None, mutation)
                .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().expect("both updates succeed").unwrap();
        assert_eq!(r.version, 2);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(member_ids(&*store, &ctx, &g1.id).await, std::slice::from_ref(&g2.id));
    assert_eq!(member_ids(&*store, &ctx, &g2.id).await, std::slice::from_ref(&g1.id));
}

// --- PostgreSQL only -----------------------------------------------------------------------------

/// Several nodes starting at once on an empty database: the migrations run once, every node opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_start_migrates_once() {
    let Some(db) = pg_database().await else {
        skip_note("postgres_concurrent_start_migrates_once");
        return;
    };
    let url = db.url().to_string();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            PostgresStore::open(&url, registry(), PgSettings::default()).await
        }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().expect("every node opens"));
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    // Each migration once.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "sql"))
        })
        .count();
    assert_eq!(applied, files as i64);
    let ctx = tenant(&stores[1], "acme").await;
    assert!(stores[5].get_connection(&ctx.connection_id).await.unwrap().is_some());
}

/// The settings reach the connections: statement timeout per connection, pool size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_settings_apply() {
    let settings = PgSettings {
        max_connections: 3,
        statement_timeout_ms: 1234,
        serialization_retries: 0,
        ..PgSettings::default()
    };
    let Some((_db, store)) = pg_db_with(settings).await else {
        skip_note("postgres_settings_apply");
        return;
    };
    let t: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(t, "1234ms");
    assert_eq!(store.pool().options().get_max_connections(), 3);
    // A statement that outlasts the timeout is cancelled, not left running.
    let e = sqlx::query("SELECT pg_sleep(3)")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert_eq!(e.as_database_error().and_then(|d| d.code()).as_deref(), Some("57014"));
}

/// Strings PostgreSQL cannot store are the client's error, not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nul_character_is_invalid_value() {
    let Some(db) = pg_db().await else {
        skip_note("postgres_nul_character_is_invalid_value");
        return;
    };
    let s = &*db.store;
    let ctx = tenant(s, "acme").await;
    let mut d = user("nul");
    d["title"] = json!("a\u{0}b");
    let e = scim(
        s.create_resource(&ctx, ResourceKind::User, d, vec![])
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 400);
    let e = scim(
        s.create_resource(&ctx, ResourceKind::User, user("a\u{0}b"), vec![])
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 400);
}
