//! The store contract for issue #6: actors on events, the Events API's queries and filters, event
//! retention and the per-connection request log. Every test runs on SQLite and, with a PostgreSQL
//! URL, on PostgreSQL (see `harness`).

mod harness;

use harness::*;
use rollcall_scim::patch::{MemberChange, MemberRef};
use rollcall_store::*;
use serde_json::{Value, json};
use std::sync::Arc;

contract!(
    actors_are_recorded,
    management_events_carry_the_callers_context,
    event_queries_and_filters,
    paging_the_feed_reconstructs_every_change,
    deleting_a_user_records_its_membership_removals,
    get_event_by_id,
    retention_prunes_the_oldest_in_batches,
    request_log_appends_trims_and_pages,
    request_log_drops_unknown_connections_and_follows_deletion,
    request_log_large_batches_keep_their_order,
    debug_logging_is_a_connection_setting,
);

// --- helpers ---------------------------------------------------------------------------------------

fn hash_of(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

fn api_key_ctx() -> WriteContext {
    WriteContext {
        user_agent: Some("curl/8".into()),
        request_id: Some("req-api".into()),
        actor: Actor::ApiKey {
            id: "key-1".into(),
            name: "deploy".into(),
        },
        ..Default::default()
    }
}

/// An organization with one connection (created by the command line); the SCIM context to write with.
async fn tenant(store: &dyn Store, name: &str) -> WriteContext {
    let org = store
        .create_organization(&WriteContext::cli(), name)
        .await
        .expect("create org");
    let c = store
        .create_connection(
            &WriteContext::cli(),
            NewConnection {
                org_id: org.id.clone(),
                name: format!("{name} okta"),
                idp: IdpKind::Okta,
                token_hash: hash_of(name),
                token_prefix: format!("rc_scim_{name}"),
            },
        )
        .await
        .expect("create connection");
    WriteContext {
        org_id: org.id,
        connection_id: c.id.clone(),
        user_agent: Some("Okta SCIM Client 1.0.0".into()),
        request_id: Some(format!("req-{name}")),
        actor: Actor::ScimToken {
            connection_id: c.id,
            token_prefix: Some(format!("rc_scim_{name}")),
        },
    }
}

fn user(user_name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true})
}

async fn create_user(store: &dyn Store, ctx: &WriteContext, name: &str) -> StoredResource {
    store
        .create_resource(ctx, ResourceKind::User, user(name), vec![])
        .await
        .expect("create user")
}

async fn create_group(store: &dyn Store, ctx: &WriteContext, name: &str, members: &[&str]) -> StoredResource {
    store
        .create_resource(
            ctx,
            ResourceKind::Group,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}),
            members
                .iter()
                .map(|m| MemberRef {
                    value: m.to_string(),
                    kind: None,
                    display: None,
                })
                .collect(),
        )
        .await
        .expect("create group")
}

fn set(attrs: Value) -> Mutation {
    Arc::new(move |doc: &mut Value| {
        for (k, v) in attrs.as_object().unwrap() {
            doc[k] = v.clone();
        }
        Ok(vec![])
    })
}

fn query() -> EventQuery {
    EventQuery {
        limit: 1000,
        ..Default::default()
    }
}

async fn events(store: &dyn Store, q: EventQuery) -> Vec<Event> {
    store.query_events(&q).await.expect("query events")
}

fn kinds(ev: &[Event]) -> Vec<&str> {
    ev.iter().map(|e| e.kind.as_str()).collect()
}

fn entry(connection_id: &str, path: &str) -> RequestLogEntry {
    RequestLogEntry {
        seq: 0,
        connection_id: connection_id.to_string(),
        at_us: 1_700_000_000_000_000,
        method: "POST".into(),
        path: path.to_string(),
        status: 400,
        latency_us: 1234,
        scim_type: Some("invalidValue".into()),
        error_detail: Some("userName is required".into()),
        user_agent: Some("Okta SCIM Client 1.0.0".into()),
        request_id: Some(format!("req-{path}")),
        token_prefix: Some("rc_scim_abcd".into()),
        auth_scheme: Some("bearer".into()),
        request_body: Some(r#"{"password":"[redacted]"}"#.into()),
        response_body: None,
    }
}

// --- actors -----------------------------------------------------------------------------------------

async fn actors_are_recorded(store: Arc<dyn Store>) {
    let s = &*store;
    let ctx = tenant(s, "acme").await;
    let u = create_user(s, &ctx, "alice").await;
    let ev = events(
        s,
        EventQuery {
            resource_id: Some(u.id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["user.created"]);
    let e = &ev[0];
    assert_eq!(e.actor, ctx.actor);
    assert_eq!(e.user_agent.as_deref(), Some("Okta SCIM Client 1.0.0"));
    assert_eq!(e.request_id.as_deref(), Some("req-acme"));
    assert_eq!(e.org_id.as_deref(), Some(ctx.org_id.as_str()));
    assert_eq!(e.connection_id.as_deref(), Some(ctx.connection_id.as_str()));

    // The next token of a rotation is told apart by its prefix.
    let next = WriteContext {
        actor: Actor::ScimToken {
            connection_id: ctx.connection_id.clone(),
            token_prefix: Some("rc_scim_next".into()),
        },
        ..ctx.clone()
    };
    s.update_resource(&next, ResourceKind::User, &u.id, None, set(json!({"active": false})))
        .await
        .unwrap()
        .unwrap();
    let ev = events(
        s,
        EventQuery {
            resource_id: Some(u.id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["user.created", "user.deactivated"]);
    assert_eq!(ev[1].actor, next.actor);
    assert_eq!(
        ev[1].data,
        json!({"changed": {"active": {"before": true, "after": false}}})
    );

    // The tenant's organization and connection were created by the command line.
    let ev = events(
        s,
        EventQuery {
            types: vec!["organization.created".into(), "connection.created".into()],
            ..query()
        },
    )
    .await;
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.actor == Actor::Cli), "{ev:?}");
    // The actor serialises as the small JSON object the Events API shows.
    assert_eq!(
        serde_json::to_value(&ctx.actor).unwrap(),
        json!({"type": "scim_token", "connection_id": ctx.connection_id, "token_prefix": "rc_scim_acme"})
    );
    assert_eq!(serde_json::to_value(Actor::System).unwrap(), json!({"type": "system"}));
}

async fn management_events_carry_the_callers_context(store: Arc<dyn Store>) {
    let s = &*store;
    let by = api_key_ctx();
    let org = s.create_organization(&by, "acme").await.unwrap();
    let c = s
        .create_connection(
            &by,
            NewConnection {
                org_id: org.id.clone(),
                name: "okta".into(),
                idp: IdpKind::Okta,
                token_hash: hash_of("t1"),
                token_prefix: "rc_scim_t1".into(),
            },
        )
        .await
        .unwrap();
    s.rename_organization(&by, &org.id, "Acme").await.unwrap().unwrap();
    s.update_connection(
        &by,
        &c.id,
        ConnectionUpdate {
            status: Some(ConnectionStatus::Disabled),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    s.start_token_rotation(&by, &c.id, &hash_of("t2"), "rc_scim_t2")
        .await
        .unwrap()
        .unwrap();
    s.complete_token_rotation(&by, &c.id).await.unwrap().unwrap();
    s.start_token_rotation(&by, &c.id, &hash_of("t3"), "rc_scim_t3")
        .await
        .unwrap()
        .unwrap();
    s.cancel_token_rotation(&by, &c.id).await.unwrap().unwrap();
    s.revoke_connection_tokens(&by, &c.id).await.unwrap().unwrap();
    assert!(
        s.set_connection_token(&by, &c.id, &hash_of("t4"), "rc_scim_t4")
            .await
            .unwrap()
    );
    let key = s
        .create_api_key(
            &by,
            NewApiKey {
                name: "ci".into(),
                key_hash: hash_of("k"),
                key_prefix: "rc_key_k".into(),
            },
        )
        .await
        .unwrap();
    s.revoke_api_key(&by, &key.id).await.unwrap().unwrap();
    assert!(s.delete_connection(&by, &c.id).await.unwrap());
    assert!(s.delete_organization(&by, &org.id).await.unwrap());

    let ev = events(s, query()).await;
    assert_eq!(
        kinds(&ev),
        [
            "organization.created",
            "connection.created",
            "organization.updated",
            "connection.disabled",
            "connection.token_rotation_started",
            "connection.token_rotation_completed",
            "connection.token_rotation_started",
            "connection.token_rotation_cancelled",
            "connection.tokens_revoked",
            "connection.token_rotated",
            "api_key.created",
            "api_key.revoked",
            "connection.deleted",
            "organization.deleted",
        ]
    );
    for e in &ev {
        assert_eq!(e.actor, by.actor, "{e:?}");
        assert_eq!(e.user_agent.as_deref(), Some("curl/8"), "{e:?}");
        assert_eq!(e.request_id.as_deref(), Some("req-api"), "{e:?}");
        // The context's own tenant (none) is not what the events name: the object's is.
        if e.kind.starts_with("connection.") {
            assert_eq!(e.connection_id.as_deref(), Some(c.id.as_str()), "{e:?}");
            assert_eq!(e.org_id.as_deref(), Some(org.id.as_str()), "{e:?}");
        }
        if e.kind.starts_with("api_key.") {
            assert_eq!((e.org_id.as_deref(), e.connection_id.as_deref()), (None, None));
        }
    }
}

// --- queries ----------------------------------------------------------------------------------------

async fn event_queries_and_filters(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let alice = create_user(s, &a, "alice").await;
    let bob = create_user(s, &a, "bob").await;
    let carol = create_user(s, &b, "carol").await;
    let g = create_group(s, &a, "Engineering", &[&alice.id]).await;
    s.update_resource(
        &a,
        ResourceKind::User,
        &alice.id,
        None,
        set(json!({"displayName": "Alice"})),
    )
    .await
    .unwrap()
    .unwrap();
    s.delete_resource(&a, ResourceKind::User, &bob.id, None).await.unwrap();

    // By type: several exact types.
    let ev = events(
        s,
        EventQuery {
            types: vec!["user.created".into(), "user.deleted".into()],
            ..query()
        },
    )
    .await;
    assert_eq!(
        kinds(&ev),
        ["user.created", "user.created", "user.created", "user.deleted"]
    );
    // A prefix, expanded to the known types.
    let ev = events(
        s,
        EventQuery {
            types: events::expand_type_filter("group.*")
                .unwrap()
                .into_iter()
                .map(String::from)
                .collect(),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["group.created", "group.member_added"]);

    // By organization and by connection: only that tenant's events.
    let ev = events(
        s,
        EventQuery {
            org_id: Some(b.org_id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(
        kinds(&ev),
        ["organization.created", "connection.created", "user.created"]
    );
    let ev = events(
        s,
        EventQuery {
            connection_id: Some(b.connection_id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["connection.created", "user.created"]);
    assert_eq!(ev[1].resource_id.as_deref(), Some(carol.id.as_str()));

    // By resource: a user's audit log includes the groups it joined.
    let ev = events(
        s,
        EventQuery {
            resource_id: Some(alice.id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["user.created", "group.member_added", "user.updated"]);
    assert_eq!(ev[1].resource_id.as_deref(), Some(g.id.as_str()));
    assert_eq!(ev[1].data, json!({"member": alice.id}));
    let ev = events(
        s,
        EventQuery {
            resource_id: Some(g.id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["group.created", "group.member_added"]);

    // Filters combine (AND).
    let ev = events(
        s,
        EventQuery {
            types: vec!["user.created".into()],
            connection_id: Some(a.connection_id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(ev.len(), 2);
    let ev = events(
        s,
        EventQuery {
            types: vec!["user.created".into()],
            org_id: Some(b.org_id.clone()),
            resource_id: Some(alice.id.clone()),
            ..query()
        },
    )
    .await;
    assert!(ev.is_empty());
    // Nothing matches an unknown id.
    assert!(
        events(
            s,
            EventQuery {
                resource_id: Some("nope".into()),
                ..query()
            }
        )
        .await
        .is_empty()
    );
}

async fn paging_the_feed_reconstructs_every_change(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    for i in 0..7 {
        let u = create_user(s, &a, &format!("u{i}")).await;
        if i % 2 == 0 {
            s.update_resource(&a, ResourceKind::User, &u.id, None, set(json!({"active": false})))
                .await
                .unwrap();
        }
    }
    let all = events(s, query()).await;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = events(
            s,
            EventQuery {
                after_seq: after,
                limit: 3,
                ..Default::default()
            },
        )
        .await;
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        seen.extend(page);
    }
    assert_eq!(
        seen.iter().map(|e| &e.id).collect::<Vec<_>>(),
        all.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(seen.len(), 2 + 7 + 4);
    // Paging with a filter: every page holds only matches, in order, none missed.
    let mut after = 0;
    let mut deactivated = 0;
    loop {
        let page = events(
            s,
            EventQuery {
                after_seq: after,
                limit: 2,
                types: vec!["user.deactivated".into()],
                ..Default::default()
            },
        )
        .await;
        let Some(last) = page.last() else { break };
        after = last.seq;
        assert!(page.iter().all(|e| e.kind == "user.deactivated"));
        deactivated += page.len();
    }
    assert_eq!(deactivated, 4);
}

async fn deleting_a_user_records_its_membership_removals(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    let u = create_user(s, &a, "alice").await;
    let g1 = create_group(s, &a, "G1", &[&u.id]).await;
    let g2 = create_group(s, &a, "G2", &[&u.id]).await;
    let after = events(s, query()).await.last().unwrap().seq;
    assert!(s.delete_resource(&a, ResourceKind::User, &u.id, None).await.unwrap());
    let ev = events(
        s,
        EventQuery {
            after_seq: after,
            ..query()
        },
    )
    .await;
    assert_eq!(
        kinds(&ev),
        ["group.member_removed", "group.member_removed", "user.deleted"]
    );
    let groups: Vec<_> = ev[..2].iter().map(|e| e.resource_id.clone().unwrap()).collect();
    assert_eq!(groups, [g1.id.clone(), g2.id.clone()]);
    assert_eq!(ev[0].data, json!({"member": u.id, "reason": "member_deleted"}));
    assert!(ev.iter().all(|e| e.actor == a.actor));
    // Removing a member the usual way still records it without a reason.
    let u2 = create_user(s, &a, "bob").await;
    s.update_resource(
        &a,
        ResourceKind::Group,
        &g1.id,
        None,
        Arc::new({
            let id = u2.id.clone();
            move |_| {
                Ok(vec![MemberChange::Add(vec![MemberRef {
                    value: id.clone(),
                    kind: None,
                    display: None,
                }])])
            }
        }),
    )
    .await
    .unwrap();
    s.update_resource(
        &a,
        ResourceKind::Group,
        &g1.id,
        None,
        Arc::new({
            let id = u2.id.clone();
            move |_| Ok(vec![MemberChange::Remove(vec![id.clone()])])
        }),
    )
    .await
    .unwrap();
    let ev = events(
        s,
        EventQuery {
            resource_id: Some(u2.id.clone()),
            ..query()
        },
    )
    .await;
    assert_eq!(
        kinds(&ev),
        ["user.created", "group.member_added", "group.member_removed"]
    );
    assert_eq!(ev[2].data, json!({"member": u2.id}));
}

async fn get_event_by_id(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    create_user(s, &a, "alice").await;
    let all = events(s, query()).await;
    for e in &all {
        let got = s.get_event(&e.id).await.unwrap().expect("found");
        assert_eq!(got.seq, e.seq);
        assert_eq!(got.kind, e.kind);
        assert_eq!(got.data, e.data);
        assert_eq!(got.actor, e.actor);
    }
    assert!(
        s.get_event("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.get_event("not an id").await.unwrap().is_none());
}

// --- retention --------------------------------------------------------------------------------------

async fn retention_prunes_the_oldest_in_batches(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    for i in 0..5 {
        create_user(s, &a, &format!("old{i}")).await;
    }
    let old = events(s, query()).await;
    let cutoff = old.last().unwrap().created_us + 1;
    // Wait until the clock has passed the cutoff, so that the next events are newer.
    while rollcall_store::sqlite::now_us() <= cutoff {
        tokio::task::yield_now().await;
    }
    let keep1 = create_user(s, &a, "new1").await;
    let keep2 = create_user(s, &a, "new2").await;
    assert_eq!(old.len(), 7);

    // Nothing is older than the start of time.
    assert_eq!(s.prune_events(0, 100).await.unwrap(), 0);
    // Small batches, oldest first.
    assert_eq!(s.prune_events(cutoff, 3).await.unwrap(), 3);
    let left = events(s, query()).await;
    assert_eq!(left.len(), 4 + 2);
    assert_eq!(left[0].id, old[3].id);
    assert_eq!(s.prune_events(cutoff, 3).await.unwrap(), 3);
    assert_eq!(s.prune_events(cutoff, 3).await.unwrap(), 1);
    assert_eq!(s.prune_events(cutoff, 3).await.unwrap(), 0);
    let left = events(s, query()).await;
    assert_eq!(
        left.iter().map(|e| e.resource_id.clone().unwrap()).collect::<Vec<_>>(),
        [keep1.id.clone(), keep2.id.clone()]
    );
    // Sequence numbers are never reused: a cursor stays valid after pruning.
    let max_before = left.last().unwrap().seq;
    s.prune_events(i64::MAX, 100).await.unwrap();
    assert!(events(s, query()).await.is_empty());
    create_user(s, &a, "later").await;
    let ev = events(
        s,
        EventQuery {
            after_seq: max_before,
            ..query()
        },
    )
    .await;
    assert_eq!(kinds(&ev), ["user.created"]);
    assert!(ev[0].seq > max_before);
}

// --- request log ------------------------------------------------------------------------------------

async fn request_log_appends_trims_and_pages(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let batch: Vec<_> = (0..5)
        .map(|i| entry(&a.connection_id, &format!("/Users/{i}")))
        .collect();
    s.append_request_log(&batch, 3).await.unwrap();
    s.append_request_log(&[entry(&b.connection_id, "/Groups")], 3)
        .await
        .unwrap();

    // Only the newest three are kept, newest first.
    let log = s.request_log(&a.connection_id, None, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["/Users/4", "/Users/3", "/Users/2"]
    );
    let e = &log[0];
    assert_eq!(
        (e.method.as_str(), e.status, e.latency_us, e.scim_type.as_deref()),
        ("POST", 400, 1234, Some("invalidValue"))
    );
    assert_eq!(e.error_detail.as_deref(), Some("userName is required"));
    assert_eq!(e.request_body.as_deref(), Some(r#"{"password":"[redacted]"}"#));
    assert_eq!(e.response_body, None);
    assert_eq!(e.token_prefix.as_deref(), Some("rc_scim_abcd"));
    assert_eq!(e.auth_scheme.as_deref(), Some("bearer"));
    assert_eq!(e.request_id.as_deref(), Some("req-/Users/4"));
    assert!(log.windows(2).all(|w| w[0].seq > w[1].seq));

    // Paging backwards with `before`.
    let first = s.request_log(&a.connection_id, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = s.request_log(&a.connection_id, Some(first[1].seq), 2).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["/Users/2"]);

    // Another connection's log is its own, and trimming one leaves the other alone.
    let other = s.request_log(&b.connection_id, None, 10).await.unwrap();
    assert_eq!(other.len(), 1);
    s.append_request_log(&[entry(&a.connection_id, "/Users/5")], 1)
        .await
        .unwrap();
    assert_eq!(s.request_log(&a.connection_id, None, 10).await.unwrap().len(), 1);
    assert_eq!(s.request_log(&b.connection_id, None, 10).await.unwrap().len(), 1);
    // Appending nothing is fine; keeping nothing is refused.
    s.append_request_log(&[], 3).await.unwrap();
    assert!(s.append_request_log(&[entry(&a.connection_id, "/x")], 0).await.is_err());
    assert_eq!(
        s.request_log(&a.connection_id, None, 10).await.unwrap()[0].path,
        "/Users/5"
    );
}

async fn request_log_drops_unknown_connections_and_follows_deletion(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    // An entry for a connection that does not exist (a request to a made-up base URL) is dropped;
    // the rest of the batch is kept.
    s.append_request_log(
        &[
            entry("01890000-0000-7000-8000-000000000000", "/Users"),
            entry(&a.connection_id, "/Users"),
        ],
        10,
    )
    .await
    .unwrap();
    assert!(
        s.request_log("01890000-0000-7000-8000-000000000000", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.request_log(&a.connection_id, None, 10).await.unwrap().len(), 1);
    // Deleting the connection deletes its log.
    assert!(
        s.delete_connection(&WriteContext::cli(), &a.connection_id)
            .await
            .unwrap()
    );
    assert!(s.request_log(&a.connection_id, None, 10).await.unwrap().is_empty());
}

async fn request_log_large_batches_keep_their_order(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    // More entries than one statement takes, mixed with a connection that does not exist.
    let batch: Vec<_> = (0..450)
        .map(|i| {
            let c = if i % 50 == 7 { "gone" } else { a.connection_id.as_str() };
            entry(c, &format!("/Users/{i}"))
        })
        .collect();
    s.append_request_log(&batch, 400).await.unwrap();
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = s.request_log(&a.connection_id, before, 150).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        all.extend(page);
    }
    let expected: Vec<String> = (0..450)
        .rev()
        .filter(|i| i % 50 != 7)
        .take(400)
        .map(|i| format!("/Users/{i}"))
        .collect();
    assert_eq!(all.iter().map(|e| e.path.clone()).collect::<Vec<_>>(), expected);
}

async fn debug_logging_is_a_connection_setting(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s, "acme").await;
    let c = s.get_connection(&a.connection_id).await.unwrap().unwrap();
    assert!(!c.debug_logging);
    let on = s
        .update_connection(
            &api_key_ctx(),
            &a.connection_id,
            ConnectionUpdate {
                debug_logging: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(on.debug_logging);
    assert!(s.get_connection(&a.connection_id).await.unwrap().unwrap().debug_logging);
    let ev = events(
        s,
        EventQuery {
            types: vec!["connection.updated".into()],
            ..query()
        },
    )
    .await;
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].data,
        json!({"changed": {"debug_logging": {"before": false, "after": true}}})
    );
    assert_eq!(ev[0].actor, api_key_ctx().actor);
    // Setting it to what it is records nothing.
    s.update_connection(
        &api_key_ctx(),
        &a.connection_id,
        ConnectionUpdate {
            debug_logging: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let n = events(
        s,
        EventQuery {
            types: vec!["connection.updated".into()],
            ..query()
        },
    )
    .await
    .len();
    assert_eq!(n, 1);
}
