//! Store contract (both backends, as `contract.rs`): updates are computed outside the write
//! transaction yet lose nothing; list pages stop at their byte budget; list cursors belong to their
//! connection and list.

use rollcall_scim::filter::Filter;
use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_scim::path::AttrPath;
use rollcall_scim::sort::SortOrder;
use rollcall_scim::{ScimError, ScimType};
use rollcall_store::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod harness;
use harness::*;

contract!(
    concurrent_patches_of_one_user_all_apply,
    member_only_updates_are_computed_once,
    a_failing_mutation_changes_nothing,
    mutations_run_outside_the_writer,
    if_match_is_checked_when_writing,
    index_pages_end_at_the_byte_budget,
    cursor_pages_end_at_the_byte_budget,
    users_on_a_later_page_carry_their_own_groups,
    a_cursor_belongs_to_its_connection_and_list,
    a_cursor_naming_an_erased_resource_is_refused,
);

// --- helpers ---------------------------------------------------------------------------------------

fn user(user_name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true})
}

async fn create_user(store: &dyn Store, ctx: &WriteContext, doc: Value) -> StoredResource {
    store
        .create_resource(ctx, ResourceKind::User, doc, vec![])
        .await
        .expect("create user")
}

async fn get(store: &dyn Store, ctx: &WriteContext, kind: ResourceKind, id: &str) -> StoredResource {
    store
        .get_resource(&ctx.connection_id, kind, id, true)
        .await
        .unwrap()
        .expect("the resource exists")
}

fn set(attrs: Value) -> Mutation {
    Arc::new(move |doc: &mut Value| {
        for (k, v) in attrs.as_object().expect("object") {
            doc[k] = v.clone();
        }
        Ok(vec![])
    })
}

fn scim(e: StoreError) -> ScimError {
    match e {
        StoreError::Scim(s) => s,
        other => panic!("expected a SCIM error, got {other}"),
    }
}

fn list(count: i64, paging: Paging, max_bytes: usize) -> ListQuery {
    ListQuery {
        filter: None,
        sort: None,
        paging,
        count,
        with_members: false,
        max_bytes,
    }
}

async fn event_count(store: &dyn Store) -> usize {
    store.events_after(0, 100_000).await.unwrap().len()
}

// --- updates ---------------------------------------------------------------------------------------

/// Twenty tasks each add an e-mail address to the same user at once: every one is in the result
/// (a read-modify-write that lost a concurrent one would show fewer).
async fn concurrent_patches_of_one_user_all_apply(store: Arc<dyn Store>) {
    let ctx = Arc::new(tenant(&*store, "acme").await);
    let u = create_user(&*store, &ctx, user("alice")).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, ctx, id, barrier) = (store.clone(), ctx.clone(), u.id.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let add_email: Mutation = Arc::new(move |d: &mut Value| {
                let emails = d.as_object_mut().unwrap().entry("emails").or_insert_with(|| json!([]));
                emails
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"value": format!("a{i}@example.com"), "type": "work"}));
                Ok(vec![])
            });
            barrier.wait().await;
            store
                .update_resource(&ctx, ResourceKind::User, &id, None, add_email)
                .await
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("every update applies")
            .expect("the user exists");
    }
    let got = get(&*store, &ctx, ResourceKind::User, &u.id).await;
    let emails: HashSet<&str> = got.doc["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("a{i}@example.com")).collect();
    assert_eq!(emails, expected.iter().map(String::as_str).collect::<HashSet<_>>());
    assert_eq!(got.doc["emails"].as_array().unwrap().len(), 20, "each address once");
    assert_eq!(got.version, 21);
    let updated = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "user.updated")
        .count();
    assert_eq!(updated, 20, "one event per update");
    // The e-mail index rows follow the document: each address finds the user.
    for e in &expected {
        let f = Filter::parse(&format!("emails.value eq \"{e}\"")).unwrap();
        let mut q = list(10, Paging::Index { start_index: 1 }, ListQuery::DEFAULT_MAX_BYTES);
        q.filter = Some(f);
        let p = store
            .list_resources(&ctx.connection_id, ResourceKind::User, &q)
            .await
            .unwrap();
        assert_eq!(p.total, 1, "{e}");
    }
}

/// Membership changes bump a group's version without changing its document, and the mutation is a
/// function of the document: sixteen concurrent member additions each run their mutation once,
/// none is computed again because another moved the version.
async fn member_only_updates_are_computed_once(store: Arc<dyn Store>) {
    let ctx = Arc::new(tenant(&*store, "acme").await);
    let mut users = Vec::new();
    for i in 0..16 {
        users.push(create_user(&*store, &ctx, user(&format!("m{i}"))).await.id);
    }
    let g = store
        .create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"}),
            vec![],
        )
        .await
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for member in users.clone() {
        let (store, ctx, gid, runs, barrier) =
            (store.clone(), ctx.clone(), g.id.clone(), runs.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let add: Mutation = Arc::new(move |_d: &mut Value| {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(vec![MemberChange::Add(vec![MemberRef {
                    value: member.clone(),
                    kind: None,
                    display: None,
                }])])
            });
            barrier.wait().await;
            store.update_resource(&ctx, ResourceKind::Group, &gid, None, add).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap().unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        16,
        "no member-only update was computed twice"
    );
    let got = get(&*store, &ctx, ResourceKind::Group, &g.id).await;
    let mut members: Vec<String> = got.related.unwrap().into_iter().map(|m| m.id).collect();
    members.sort();
    users.sort();
    assert_eq!(members, users);
    assert_eq!(got.version, 17);
}

/// A mutation that fails (an error, or a panic) leaves the resource, its membership and the event
/// log as they were, and the store goes on.
async fn a_failing_mutation_changes_nothing(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let u = create_user(s, &ctx, user("alice")).await;
    let member = create_user(s, &ctx, user("bob")).await;
    let g = s
        .create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"}),
            vec![],
        )
        .await
        .unwrap();
    let events = event_count(s).await;
    let failing: Mutation = Arc::new(|d: &mut Value| {
        d["title"] = json!("changed");
        d["displayName"] = json!("changed");
        Err(ScimError::invalid_value("no such thing"))
    });
    for (kind, id) in [(ResourceKind::User, &u.id), (ResourceKind::Group, &g.id)] {
        let e = scim(
            s.update_resource(&ctx, kind, id, None, failing.clone())
                .await
                .unwrap_err(),
        );
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
    }
    let bid = member.id.clone();
    let panicking: Mutation = Arc::new(move |d: &mut Value| {
        d["displayName"] = json!("changed");
        if d["displayName"] == "changed" {
            panic!("a bug in a mutation");
        }
        Ok(vec![MemberChange::Add(vec![MemberRef {
            value: bid.clone(),
            kind: None,
            display: None,
        }])])
    });
    let e = scim(
        s.update_resource(&ctx, ResourceKind::Group, &g.id, None, panicking)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 500);
    let got = get(s, &ctx, ResourceKind::User, &u.id).await;
    assert_eq!((got.version, got.doc.get("title")), (1, None));
    let got = get(s, &ctx, ResourceKind::Group, &g.id).await;
    assert_eq!((got.version, &got.doc["displayName"]), (1, &json!("G")));
    assert_eq!(got.related.unwrap(), vec![]);
    assert_eq!(event_count(s).await, events, "no event was recorded");
    // The store goes on.
    let r = s
        .update_resource(&ctx, ResourceKind::User, &u.id, None, set(json!({"title": "ok"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 2);
}

/// The mutation is computed outside the write transaction: while one blocks (until the writes
/// below have committed), another tenant's write and even a write of the same user commit. The
/// blocked update then finds the user changed, computes again from the new document, and keeps
/// both changes. Were the mutation run inside the transaction (holding SQLite's writer or the
/// PostgreSQL row lock), the writes below would wait for it and it for them, until its timeout.
async fn mutations_run_outside_the_writer(store: Arc<dyn Store>) {
    let a = tenant(&*store, "a").await;
    let b = tenant(&*store, "b").await;
    let alice = create_user(&*store, &a, user("alice")).await;
    let bob = create_user(&*store, &b, user("bob")).await;
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let runs = Arc::new(AtomicUsize::new(0));
    let slow: Mutation = {
        let runs = runs.clone();
        Arc::new(move |d: &mut Value| {
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = started_tx.send(());
                let go = tokio::task::block_in_place(|| go_rx.lock().unwrap().recv_timeout(Duration::from_secs(60)));
                if go.is_err() {
                    return Err(ScimError::internal(
                        "the other writes did not commit while this mutation was running",
                    ));
                }
            }
            d["title"] = json!("slow");
            Ok(vec![])
        })
    };
    let slow_update = {
        let (store, a, id) = (store.clone(), a.clone(), alice.id.clone());
        tokio::spawn(async move { store.update_resource(&a, ResourceKind::User, &id, None, slow).await })
    };
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the mutation started");
    tokio::time::timeout(Duration::from_secs(30), async {
        store
            .update_resource(&b, ResourceKind::User, &bob.id, None, set(json!({"title": "quick"})))
            .await
            .unwrap()
            .unwrap();
        store
            .update_resource(&a, ResourceKind::User, &alice.id, None, set(json!({"nickName": "al"})))
            .await
            .unwrap()
            .unwrap();
    })
    .await
    .expect("writes commit while a mutation is being computed");
    go_tx.send(()).unwrap();
    let r = slow_update.await.unwrap().expect("the slow update succeeds").unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "computed again on the changed document");
    assert_eq!((&r.doc["title"], &r.doc["nickName"]), (&json!("slow"), &json!("al")));
    assert_eq!(r.version, 3);
    let got = get(&*store, &a, ResourceKind::User, &alice.id).await;
    assert_eq!(
        (&got.doc["title"], &got.doc["nickName"], got.version),
        (&json!("slow"), &json!("al"), 3)
    );
    assert_eq!(
        get(&*store, &b, ResourceKind::User, &bob.id).await.doc["title"],
        "quick"
    );
}

/// `If-Match` is checked against the version current when the update is written, not only when it
/// was read: a membership change committed while the mutation ran makes it fail with 412 (where
/// without `If-Match` the update would be written, the document being unchanged).
async fn if_match_is_checked_when_writing(store: Arc<dyn Store>) {
    let ctx = Arc::new(tenant(&*store, "acme").await);
    let m = create_user(&*store, &ctx, user("m")).await;
    let g = store
        .create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G"}),
            vec![],
        )
        .await
        .unwrap();
    // The mutation adds the member itself, through the store, while it runs (once).
    let (inner_store, inner_ctx, gid, mid) = (store.clone(), ctx.clone(), g.id.clone(), m.id.clone());
    let once = Arc::new(AtomicUsize::new(0));
    let rename: Mutation = Arc::new(move |d: &mut Value| {
        if once.fetch_add(1, Ordering::SeqCst) == 0 {
            let (s, c, gid, mid) = (inner_store.clone(), inner_ctx.clone(), gid.clone(), mid.clone());
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    let add: Mutation = Arc::new(move |_d: &mut Value| {
                        Ok(vec![MemberChange::Add(vec![MemberRef {
                            value: mid.clone(),
                            kind: None,
                            display: None,
                        }])])
                    });
                    s.update_resource(&c, ResourceKind::Group, &gid, None, add)
                        .await
                        .unwrap()
                        .unwrap();
                })
            });
        }
        d["displayName"] = json!("renamed");
        Ok(vec![])
    });
    let e = scim(
        store
            .update_resource(&ctx, ResourceKind::Group, &g.id, Some(1), rename)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 412, "{e}");
    let got = get(&*store, &ctx, ResourceKind::Group, &g.id).await;
    assert_eq!((got.version, &got.doc["displayName"]), (2, &json!("G")));
    assert_eq!(got.related.unwrap().len(), 1);
}

// --- lists: the byte budget ------------------------------------------------------------------------

/// 30 users of about 40 KB each (and 5 small ones): pages asking for 1000 stop near the budget,
/// `totalResults` stays the number of matches, and paging on by what was returned reads every
/// user exactly once, in the list's order.
async fn index_pages_end_at_the_byte_budget(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut all = Vec::new();
    for i in 0..30 {
        let mut doc = user(&format!("big-{i:02}"));
        doc["title"] = json!(format!("{i:02}").repeat(20_000));
        all.push(create_user(s, &ctx, doc).await.id);
    }
    for i in 0..5 {
        all.push(create_user(s, &ctx, user(&format!("small-{i}"))).await.id);
    }
    let budget = 150_000;
    for (filter, sort, expected_total) in [
        (None, None, 35),
        (Some("userName sw \"big-\""), None, 30),
        (None, Some(SortOrder::Descending), 35),
    ] {
        let mut seen: Vec<String> = Vec::new();
        let mut start = 1;
        let mut pages = 0;
        loop {
            let mut q = list(1000, Paging::Index { start_index: start }, budget);
            q.filter = filter.map(|f| Filter::parse(f).unwrap());
            q.sort = sort.map(|order| Sort {
                path: AttrPath::parse("userName").unwrap(),
                order,
            });
            let p = s
                .list_resources(&ctx.connection_id, ResourceKind::User, &q)
                .await
                .unwrap();
            pages += 1;
            assert_eq!(p.total, expected_total, "{filter:?}: totalResults is every match");
            if start > p.total {
                assert!(p.resources.is_empty());
                break;
            }
            assert!(!p.resources.is_empty(), "a page has at least one resource");
            // A page of big users holds 3 or 4 of them (about 40 KB each, the budget 150 KB).
            let bytes: usize = p.resources.iter().map(|r| r.doc.to_string().len()).sum();
            assert!(bytes < budget + 50_000, "{bytes} bytes on one page");
            seen.extend(p.resources.iter().map(|r| r.id.clone()));
            start += p.resources.len() as i64;
            assert!(pages < 40);
        }
        assert!(pages >= 8, "{filter:?}: {pages} pages");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{filter:?}: a user came twice");
        assert_eq!(seen.len() as i64, expected_total, "{filter:?}");
        if sort.is_none() {
            assert_eq!(seen, all[..expected_total as usize], "{filter:?}: in list order");
        }
    }
    // However small the budget, a page has one resource.
    let p = s
        .list_resources(
            &ctx.connection_id,
            ResourceKind::User,
            &list(1000, Paging::Index { start_index: 1 }, 1),
        )
        .await
        .unwrap();
    assert_eq!((p.total, p.resources.len()), (35, 1));
    // Small documents fill the page as asked.
    let mut q = list(1000, Paging::Index { start_index: 1 }, budget);
    q.filter = Some(Filter::parse("userName sw \"small-\"").unwrap());
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &q)
        .await
        .unwrap();
    assert_eq!((p.total, p.resources.len()), (5, 5));
}

/// The same with cursors: each page ends at the budget and the next cursor follows its last
/// resource; groups with their members count their membership too.
async fn cursor_pages_end_at_the_byte_budget(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut all = Vec::new();
    for i in 0..20 {
        let mut doc = user(&format!("big-{i:02}"));
        doc["nickName"] = json!("n".repeat(30_000));
        all.push(create_user(s, &ctx, doc).await.id);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let p = s
            .list_resources(
                &ctx.connection_id,
                ResourceKind::User,
                &list(1000, Paging::Cursor { after: after.clone() }, 100_000),
            )
            .await
            .unwrap();
        pages += 1;
        assert!((1..=4).contains(&p.resources.len()), "{} on a page", p.resources.len());
        if pages == 1 {
            assert_eq!(p.total, 20);
        }
        seen.extend(p.resources.iter().map(|r| r.id.clone()));
        match p.next_after {
            Some(n) => {
                assert_eq!(Some(&n), seen.last());
                after = Some(n);
            }
            None => break,
        }
        assert!(pages < 30);
    }
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(seen, all, "every user once, in order");
    // Groups: the members read beside each group count towards the budget.
    let members: Vec<MemberRef> = all
        .iter()
        .map(|id| MemberRef {
            value: id.clone(),
            kind: None,
            display: Some("d".repeat(2_000)),
        })
        .collect();
    for name in ["G1", "G2", "G3"] {
        s.create_resource(
            &ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}),
            members.clone(),
        )
        .await
        .unwrap();
    }
    let mut q = list(10, Paging::Cursor { after: None }, 30_000);
    q.with_members = true;
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::Group, &q)
        .await
        .unwrap();
    assert_eq!(p.resources.len(), 1, "one group's members (40 KB) fill the page");
    assert_eq!(p.resources[0].related.as_ref().unwrap().len(), 20);
    assert_eq!(p.next_after.as_deref(), Some(p.resources[0].id.as_str()));
    // An index page after the first (PostgreSQL reads its members apart from the page) too.
    let mut q = list(10, Paging::Index { start_index: 2 }, 30_000);
    q.with_members = true;
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::Group, &q)
        .await
        .unwrap();
    assert_eq!(
        (p.total, p.resources.len()),
        (3, 1),
        "one group's members fill the page"
    );
    assert_eq!(p.resources[0].doc["displayName"], "G2");
    assert_eq!(p.resources[0].related.as_ref().unwrap().len(), 20);
    q.max_bytes = ListQuery::DEFAULT_MAX_BYTES;
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::Group, &q)
        .await
        .unwrap();
    assert_eq!(p.resources.len(), 2);
    assert!(p.resources.iter().all(|g| g.related.as_ref().unwrap().len() == 20));
}

/// A page of users after the first (which PostgreSQL reads its groups for apart from the page)
/// gives each user its own groups, in the page's order, and leaves a deleted group out; so does a
/// later page sorted by userName, which holds the users at its place in that order.
async fn users_on_a_later_page_carry_their_own_groups(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let mut users = Vec::new();
    for i in 0..9 {
        users.push(create_user(s, &ctx, user(&format!("u{i}"))).await.id);
    }
    let member = |id: &String| MemberRef {
        value: id.clone(),
        kind: None,
        display: None,
    };
    // "even" holds u0, u2, …; "low" holds u0-u4; "gone" holds every user and is deleted.
    let mut groups = Vec::new();
    for (name, members) in [
        ("even", users.iter().step_by(2).map(member).collect::<Vec<_>>()),
        ("low", users[..5].iter().map(member).collect()),
        ("gone", users.iter().map(member).collect()),
    ] {
        let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name});
        groups.push(
            s.create_resource(&ctx, ResourceKind::Group, doc, members)
                .await
                .unwrap()
                .id,
        );
    }
    s.delete_resource(&ctx, ResourceKind::Group, &groups[2], None)
        .await
        .unwrap();
    let expected = |i: usize| {
        let mut g = Vec::new();
        if i.is_multiple_of(2) {
            g.push(groups[0].clone());
        }
        if i < 5 {
            g.push(groups[1].clone());
        }
        g.sort();
        g
    };
    let groups_of = |r: &StoredResource| {
        let mut got: Vec<String> = r.related.as_ref().unwrap().iter().map(|m| m.id.clone()).collect();
        got.sort();
        got
    };
    let page = |start: i64, sort: Option<SortOrder>| {
        let mut q = list(4, Paging::Index { start_index: start }, ListQuery::DEFAULT_MAX_BYTES);
        q.with_members = true;
        q.sort = sort.map(|order| Sort {
            path: AttrPath::parse("userName").unwrap(),
            order,
        });
        q
    };
    let p = s
        .list_resources(&ctx.connection_id, ResourceKind::User, &page(4, None))
        .await
        .unwrap();
    assert_eq!(p.total, 9);
    assert_eq!(
        p.resources.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        users[3..7]
    );
    for (r, i) in p.resources.iter().zip(3..) {
        assert_eq!(groups_of(r), expected(i), "the groups of u{i}");
    }
    // Descending by userName, from the fifth: u4 to u1.
    let p = s
        .list_resources(
            &ctx.connection_id,
            ResourceKind::User,
            &page(5, Some(SortOrder::Descending)),
        )
        .await
        .unwrap();
    let names: Vec<&str> = p
        .resources
        .iter()
        .map(|r| r.doc["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["u4", "u3", "u2", "u1"]);
    for r in &p.resources {
        let i: usize = r.doc["userName"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(groups_of(r), expected(i), "the groups of u{i}");
    }
}

// --- lists: cursors --------------------------------------------------------------------------------

/// A cursor names a resource of the list it came from: another connection's list (even of the
/// same organization's tenant next door) or another resource type refuses it; a user deleted but
/// kept (the default policy) still anchors it.
async fn a_cursor_belongs_to_its_connection_and_list(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "a").await;
    let b = tenant(s, "b").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(create_user(s, &a, user(&format!("a{i}"))).await.id);
        create_user(s, &b, user(&format!("b{i}"))).await;
    }
    let first = s
        .list_resources(
            &a.connection_id,
            ResourceKind::User,
            &list(2, Paging::Cursor { after: None }, ListQuery::DEFAULT_MAX_BYTES),
        )
        .await
        .unwrap();
    let cursor = first.next_after.clone().expect("a next page");
    assert_eq!(cursor, ids[1]);
    let next = Paging::Cursor {
        after: Some(cursor.clone()),
    };
    for (ctx, kind) in [(&b, ResourceKind::User), (&a, ResourceKind::Group)] {
        let e = scim(
            s.list_resources(
                &ctx.connection_id,
                kind,
                &list(2, next.clone(), ListQuery::DEFAULT_MAX_BYTES),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidCursor)), "{e}");
        assert!(e.detail.contains("does not belong"), "{}", e.detail);
    }
    // Deleted (kept, not erased): the cursor still finds its place.
    assert!(s.delete_resource(&a, ResourceKind::User, &cursor, None).await.unwrap());
    let p = s
        .list_resources(
            &a.connection_id,
            ResourceKind::User,
            &list(2, next, ListQuery::DEFAULT_MAX_BYTES),
        )
        .await
        .unwrap();
    assert_eq!(p.resources.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(p.next_after, None);
}

/// With the `purge` policy a deleted user is erased: a cursor naming it is refused with a detail
/// that says so.
async fn a_cursor_naming_an_erased_resource_is_refused(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "a").await;
    s.set_connection_policy(
        &a,
        &a.connection_id,
        &ConnectionPolicy {
            on_delete: OnDelete::Purge,
            ..ConnectionPolicy::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    for i in 0..3 {
        create_user(s, &a, user(&format!("a{i}"))).await;
    }
    let first = s
        .list_resources(
            &a.connection_id,
            ResourceKind::User,
            &list(1, Paging::Cursor { after: None }, ListQuery::DEFAULT_MAX_BYTES),
        )
        .await
        .unwrap();
    let cursor = first.next_after.expect("a next page");
    assert!(s.delete_resource(&a, ResourceKind::User, &cursor, None).await.unwrap());
    let e = scim(
        s.list_resources(
            &a.connection_id,
            ResourceKind::User,
            &list(1, Paging::Cursor { after: Some(cursor) }, ListQuery::DEFAULT_MAX_BYTES),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidCursor)));
    assert!(e.detail.contains("erased"), "{}", e.detail);
}

// --- SQLite: deleted secrets leave the file ---------------------------------------------------------

/// Webhook signing secrets are stored sealed (`rollcall_store::secrets`), never in clear; once an
/// endpoint is deleted and the WAL checkpointed, even its sealed secret is in neither the database
/// file nor the WAL: SQLite's `secure_delete` zeroes deleted content, including on overflow pages (a
/// long description puts the secret there) and pages that end up on the free list, which
/// `secure_delete = FAST` leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_deleted_webhook_secrets_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.db");
    let store = rollcall_store::sqlite::SqliteStore::open(&format!("sqlite://{}", path.display()), registry())
        .await
        .unwrap()
        .with_secrets(secret_keys());
    let mut hooks = Vec::new();
    for i in 0..40 {
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let w = store
            .create_webhook(NewWebhook {
                org_id: None,
                url: format!("https://hooks.example.com/{i}"),
                description: if i % 2 == 0 { "d".repeat(6_000) } else { String::new() },
                event_types: vec![],
                secret: secret.clone(),
            })
            .await
            .unwrap();
        hooks.push((w.id, secret));
    }
    // The values as stored (sealed), to look for them too.
    let raw = rusqlite::Connection::open(&path).unwrap();
    let sealed = |id: &str| -> String {
        raw.query_row("SELECT secret FROM webhook_endpoints WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };
    let hooks: Vec<(String, String, String)> = hooks
        .into_iter()
        .map(|(id, secret)| {
            let stored = sealed(&id);
            (id, secret, stored)
        })
        .collect();
    drop(raw);
    let (deleted, kept) = hooks.split_at(30);
    for (id, _, _) in deleted {
        assert!(store.delete_webhook(id).await.unwrap());
    }
    let checkpoint = rusqlite::Connection::open(&path).unwrap();
    let (busy, _, _): (i64, i64, i64) = checkpoint
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "the checkpoint completed");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(dir.path().join("secrets.db-wal")).unwrap_or_default());
    let contains = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    for (id, secret, stored) in kept {
        assert!(stored.starts_with("enc:v1:"), "{stored}");
        assert!(
            contains(stored),
            "kept endpoint {id}: its sealed secret is stored (the search works)"
        );
        assert!(
            !contains(secret),
            "kept endpoint {id}: its secret is in the file in clear"
        );
    }
    for (id, secret, stored) in deleted {
        assert!(
            !contains(secret) && !contains(stored),
            "deleted endpoint {id}: its secret is still in the file"
        );
    }
}
