//! The dispatcher against real stores (SQLite, and PostgreSQL when configured) and a real receiver
//! on a loopback socket: signatures that the `standardwebhooks` crate verifies, order, retries,
//! disabling, filters, redirects, the address guard at delivery, replay, redelivery, pings, secret
//! rotation, and two dispatchers sharing one database.

mod common;

use common::*;
use rollcall_store::sqlite::now_us;
use rollcall_store::{AttemptOrigin, IdpKind, NewConnection, Store, WebhookStatus, WebhookUpdate, WriteContext};
use rollcall_webhooks::{Dispatcher, NetworkPolicy, WebhookConfig, Webhooks};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

fn config() -> WebhookConfig {
    WebhookConfig {
        policy: NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        },
        timeout: Duration::from_secs(5),
        retry_base: Duration::from_millis(20),
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

/// A dispatcher running until the returned sender is dropped.
fn dispatch(store: &Arc<dyn Store>, config: WebhookConfig, node: &str) -> (Arc<Webhooks>, oneshot::Sender<()>) {
    let hooks = Webhooks::new(store.clone(), config);
    let (tx, rx) = oneshot::channel::<()>();
    let d = Dispatcher::new(hooks.clone(), node);
    tokio::spawn(d.run(async {
        let _ = rx.await;
    }));
    (hooks, tx)
}

async fn org(store: &Arc<dyn Store>, name: &str) -> String {
    store.create_organization(&WriteContext::cli(), name).await.unwrap().id
}

async fn deliveries_verify_with_standard_webhooks_and_keep_order(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    let w = store
        .create_webhook(new_webhook(None, &rx.url("a"), &["organization.*"]))
        .await
        .unwrap();
    let (_hooks, _stop) = dispatch(&store, config(), "n1");
    for i in 0..20 {
        org(&store, &format!("org-{i}")).await;
    }
    let got = rx.wait_for("a", 20).await;
    assert_eq!(got.len(), 20, "every event once, no retries");
    let events = store.events_after(w.cursor_seq, 1000).await.unwrap();
    let expected: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "organization.created")
        .map(|e| e.id.clone())
        .collect();
    let ids: Vec<String> = got.iter().map(Received::id).collect();
    assert_eq!(ids, expected, "in seq order, webhook-id = event id");
    for r in &got {
        verify(&w.secret, r).unwrap_or_else(|e| panic!("standardwebhooks refused a delivery: {e}"));
        assert!(verify(&rollcall_webhooks::signing::new_secret(), r).is_err());
        let body = r.json();
        assert_eq!(body["type"], "organization.created");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["data"]["id"], r.id());
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let done = wait_webhook(&store, &w.id, "cursor at the end", |w| {
        w.cursor_seq == events.last().unwrap().seq && w.lease_owner.is_none()
    })
    .await;
    assert_eq!(done.consecutive_failures, 0);
    let attempts = store
        .list_webhook_attempts(w.org_id.as_deref(), &w.id, None, 100)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 20);
    assert!(
        attempts
            .iter()
            .all(|a| a.succeeded && a.status_code == Some(200) && a.attempt == 1)
    );
    assert_eq!(attempts[0].response_excerpt.as_deref(), Some("answer 200 from a"));
}

async fn failures_are_retried_with_backoff_and_recorded(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    rx.script("b", &[500, 503, 404]);
    let w = store
        .create_webhook(new_webhook(None, &rx.url("b"), &["organization.created"]))
        .await
        .unwrap();
    let (_hooks, _stop) = dispatch(&store, config(), "n1");
    org(&store, "first").await;
    org(&store, "second").await;
    let got = rx.wait_for("b", 2).await;
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 503, 404, 200, 200]);
    let first = got[0].id();
    assert!(
        got[..4].iter().all(|r| r.id() == first),
        "the same event is retried with the same id"
    );
    assert_ne!(got[4].id(), first, "the second event waits for the first");
    let w = wait_webhook(&store, &w.id, "the second event acknowledged", |x| {
        x.cursor_seq >= got[4].seq()
    })
    .await;
    assert_eq!(
        (w.failing_since_us, w.last_error.clone(), w.consecutive_failures),
        (None, None, 0)
    );
    let mut attempts = store
        .list_webhook_attempts(w.org_id.as_deref(), &w.id, None, 100)
        .await
        .unwrap();
    attempts.reverse();
    let numbers: Vec<(i64, bool, Option<u16>)> = attempts
        .iter()
        .map(|a| (a.attempt, a.succeeded, a.status_code))
        .collect();
    assert_eq!(
        numbers,
        vec![
            (1, false, Some(500)),
            (2, false, Some(503)),
            (3, false, Some(404)),
            (4, true, Some(200)),
            (1, true, Some(200))
        ]
    );
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts[0].response_excerpt.as_deref(), Some("answer 500 from b"));
}

async fn endpoints_failing_past_the_horizon_are_disabled_and_resume_when_enabled(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    rx.script("c", &[500]);
    let w = store
        .create_webhook(new_webhook(None, &rx.url("c"), &["organization.created"]))
        .await
        .unwrap();
    let (hooks, _stop) = dispatch(
        &store,
        WebhookConfig {
            retry_horizon: Duration::ZERO,
            ..config()
        },
        "n1",
    );
    let doomed = store.create_organization(&WriteContext::cli(), "doomed").await.unwrap();
    let disabled = wait_webhook(&store, &w.id, "disabled", |w| w.status == WebhookStatus::Disabled).await;
    let reason = disabled.disabled_reason.clone().unwrap();
    assert!(
        reason.contains("failing since") && reason.contains("HTTP 500"),
        "{reason}"
    );
    let doomed_seq = store
        .webhook_events(Some(&doomed.id), 0, 10)
        .await
        .unwrap()
        .first()
        .unwrap()
        .seq;
    assert!(
        disabled.cursor_seq < doomed_seq,
        "the failed event was not acknowledged"
    );
    let log = store.events_after(w.cursor_seq, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == "webhook.disabled" && e.data["reason"] == reason.as_str()),
        "the disabling is in the event log"
    );
    org(&store, "while disabled").await;
    // Enabling resumes from the cursor: both events arrive, in order.
    store
        .update_webhook(
            &w.id,
            WebhookUpdate {
                status: Some(WebhookStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    hooks.wake();
    let got = rx.wait_for("c", 2).await;
    let names: Vec<String> = got
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["data"]["data"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["doomed", "while disabled"]);
}

async fn organization_scope_and_subscriptions_select_events(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    let acme = org(&store, "acme").await;
    let other = org(&store, "other").await;
    let w = store
        .create_webhook(new_webhook(Some(&acme), &rx.url("d"), &["connection.*"]))
        .await
        .unwrap();
    let (_hooks, _stop) = dispatch(&store, config(), "n1");
    for (i, o) in [&other, &acme, &other, &acme].into_iter().enumerate() {
        store
            .create_connection(
                &WriteContext::cli(),
                NewConnection {
                    org_id: o.clone(),
                    name: format!("c{i}"),
                    idp: IdpKind::Okta,
                    token_hash: [i as u8; 32],
                    token_prefix: format!("p{i}"),
                },
            )
            .await
            .unwrap();
        store
            .rename_organization(&WriteContext::cli(), o, &format!("{i}-renamed"))
            .await
            .unwrap();
    }
    let got = rx.wait_for("d", 2).await;
    let names: Vec<String> = got
        .iter()
        .map(|r| {
            let b = r.json();
            assert_eq!(b["type"], "connection.created");
            assert_eq!(b["data"]["org_id"], acme.as_str());
            b["data"]["data"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(names, vec!["c1", "c3"]);
    // The cursor passes what the endpoint does not take.
    let last_acme = store
        .webhook_events(Some(&acme), 0, 1000)
        .await
        .unwrap()
        .last()
        .unwrap()
        .seq;
    wait_webhook(&store, &w.id, "cursor past the organization's events", |w| {
        w.cursor_seq == last_acme
    })
    .await;
}

async fn redirects_are_not_followed(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    rx.script("e", &[302]);
    let w = store
        .create_webhook(new_webhook(None, &rx.url("e"), &["organization.created"]))
        .await
        .unwrap();
    let (_hooks, _stop) = dispatch(&store, config(), "n1");
    org(&store, "x").await;
    rx.wait_for("e", 1).await;
    assert!(rx.received("redirected").is_empty(), "the redirect was not followed");
    let attempts = store
        .list_webhook_attempts(w.org_id.as_deref(), &w.id, None, 10)
        .await
        .unwrap();
    let first = attempts.last().unwrap();
    assert_eq!(first.status_code, Some(302));
    assert!(!first.succeeded);
    assert!(first.error.as_deref().unwrap().contains("redirects are not followed"));
}

async fn refused_addresses_are_checked_again_at_delivery(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    // Endpoints accepted earlier (say, when the name resolved to a public address); now the name
    // resolves to loopback, which this dispatcher's policy refuses.
    let port = rx.base.rsplit(':').next().unwrap().to_string();
    let by_name = store
        .create_webhook(new_webhook(
            None,
            &format!("http://localhost:{port}/hook/f"),
            &["organization.created"],
        ))
        .await
        .unwrap();
    let by_address = store
        .create_webhook(new_webhook(None, &rx.url("g"), &["organization.created"]))
        .await
        .unwrap();
    let strict = WebhookConfig {
        policy: NetworkPolicy::default(),
        ..config()
    };
    let (_hooks, _stop) = dispatch(&store, strict, "n1");
    org(&store, "x").await;
    for w in [&by_name, &by_address] {
        let failed = wait_webhook(&store, &w.id, "a failed attempt", |w| w.consecutive_failures > 0).await;
        let error = failed.last_error.unwrap();
        assert!(error.contains("loopback"), "{error}");
    }
    assert!(
        rx.received("f").is_empty() && rx.received("g").is_empty(),
        "nothing reached the receiver"
    );
}

async fn replay_redelivery_and_ping(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    let w = store
        .create_webhook(new_webhook(None, &rx.url("h"), &["organization.created"]))
        .await
        .unwrap();
    let (hooks, _stop) = dispatch(&store, config(), "n1");
    for i in 0..3 {
        org(&store, &format!("o{i}")).await;
    }
    let first = rx.wait_for("h", 3).await;
    let seqs: Vec<i64> = first.iter().map(Received::seq).collect();
    wait_webhook(&store, &w.id, "all delivered", |x| x.cursor_seq >= seqs[2]).await;
    // Replay from the second event: it and the third go out again, same ids.
    let replayed = store.replay_webhook(&w.id, seqs[1]).await.unwrap().unwrap();
    assert_eq!(replayed.cursor_seq, seqs[1] - 1);
    hooks.wake();
    let all = rx.wait_for("h", 5).await;
    assert_eq!(all[3].id(), first[1].id());
    assert_eq!(all[4].id(), first[2].id());
    // Replay never moves forward.
    let current = wait_webhook(&store, &w.id, "replay done", |x| x.cursor_seq >= seqs[2]).await;
    assert!(store.replay_webhook(&w.id, current.cursor_seq + 5).await.is_err());
    // Redelivery of one event, now.
    let event = store.event_by_id(&first[0].id()).await.unwrap().unwrap();
    let a = hooks.redeliver(&current, &event).await.unwrap();
    assert_eq!((a.origin, a.succeeded, a.attempt), (AttemptOrigin::Redeliver, true, 2));
    assert_eq!(rx.received("h").last().unwrap().id(), event.id);
    // A ping, signed like the rest.
    let p = hooks.ping(&current).await.unwrap();
    assert_eq!((p.origin, p.succeeded, p.event_seq), (AttemptOrigin::Ping, true, None));
    let last = rx.received("h").last().unwrap().clone();
    assert_eq!(last.json()["type"], "webhook.ping");
    verify(&w.secret, &last).unwrap();
}

async fn a_rotated_secret_signs_beside_the_new_one(backend: Backend) {
    let db = Db::create(backend).await;
    let store = db.open().await;
    let rx = Receiver::start().await;
    let w = store
        .create_webhook(new_webhook(None, &rx.url("i"), &["organization.created"]))
        .await
        .unwrap();
    let new_secret = rollcall_webhooks::signing::new_secret();
    let rotated = store
        .rotate_webhook_secret(&w.id, &new_secret, now_us() + 3_600_000_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, new_secret);
    let (_hooks, _stop) = dispatch(&store, config(), "n1");
    org(&store, "x").await;
    let got = rx.wait_for("i", 1).await;
    assert_eq!(
        got[0].headers["webhook-signature"].to_str().unwrap().split(' ').count(),
        2
    );
    verify(&new_secret, &got[0]).expect("the new secret verifies");
    verify(&w.secret, &got[0]).expect("the old secret still verifies during the overlap");
    // After the overlap, only the new secret signs.
    store
        .rotate_webhook_secret(&w.id, &rollcall_webhooks::signing::new_secret(), now_us() - 1)
        .await
        .unwrap();
    org(&store, "y").await;
    let got = rx.wait_for("i", 2).await;
    assert_eq!(
        got[1].headers["webhook-signature"].to_str().unwrap().split(' ').count(),
        1
    );
    assert!(verify(&new_secret, &got[1]).is_err());
}

async fn claims_are_exclusive(backend: Backend) {
    let db = Db::create(backend).await;
    let a = db.open().await;
    let b = db.open().await;
    let mut ids = HashSet::new();
    for i in 0..3 {
        ids.insert(
            a.create_webhook(new_webhook(None, &format!("https://example.com/{i}"), &[]))
                .await
                .unwrap()
                .id,
        );
    }
    // Nothing to deliver yet: no claim.
    let now = now_us();
    assert!(
        a.claim_webhooks("a", now, now + 60_000_000, 10).await.unwrap().len() == 3,
        "the webhook.created events are pending"
    );
    assert!(
        b.claim_webhooks("b", now, now + 60_000_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased by a"
    );
    // A dispatcher whose lease expired loses it to another; its writes are refused afterwards.
    let later = now + 61_000_000;
    let taken = b.claim_webhooks("b", later, later + 60_000_000, 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    let w = &taken[0];
    let advance = |s: &Arc<dyn Store>, owner: &'static str| {
        let (s, id, from) = (s.clone(), w.id.clone(), w.cursor_seq);
        async move {
            s.webhook_advance(&id, owner, from, from + 1, None, later)
                .await
                .unwrap()
        }
    };
    assert!(advance(&a, "a").await.is_none(), "a lost its lease");
    assert_eq!(advance(&b, "b").await.unwrap().cursor_seq, w.cursor_seq + 1);
    assert!(advance(&b, "b").await.is_none(), "the cursor moved");
    let rest = a.claim_webhooks("a", later, later + 60_000_000, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|r| r.id != w.id));
    // Concurrent claims on two pools: every endpoint goes to exactly one claimant.
    for id in &ids {
        a.release_webhook(id, "a").await.unwrap();
        b.release_webhook(id, "b").await.unwrap();
    }
    let t = later + 1;
    let (x, y) = tokio::join!(
        a.claim_webhooks("x", t, t + 60_000_000, 10),
        b.claim_webhooks("y", t, t + 60_000_000, 10)
    );
    let mut all: Vec<String> = x.unwrap().into_iter().chain(y.unwrap()).map(|w| w.id).collect();
    all.sort();
    let mut expected: Vec<String> = ids.into_iter().collect();
    expected.sort();
    assert_eq!(all, expected);
}

async fn two_dispatchers_share_the_work_without_delivering_twice(backend: Backend) {
    const ENDPOINTS: usize = 6;
    const ORGS: usize = 60;
    let db = Db::create(backend).await;
    let store_a = db.open().await;
    let store_b = db.open().await;
    let rx = Receiver::start().await;
    let mut endpoints = Vec::new();
    for i in 0..ENDPOINTS {
        endpoints.push(
            store_a
                .create_webhook(new_webhook(None, &rx.url(&format!("m{i}")), &["organization.created"]))
                .await
                .unwrap(),
        );
    }
    let (_ha, _sa) = dispatch(&store_a, config(), "node-a");
    let (_hb, _sb) = dispatch(&store_b, config(), "node-b");
    let writers: Vec<_> = (0..2)
        .map(|k| {
            let s = if k == 0 { store_a.clone() } else { store_b.clone() };
            tokio::spawn(async move {
                for i in 0..ORGS / 2 {
                    s.create_organization(&WriteContext::cli(), &format!("w{k}-{i}"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for i in 0..ENDPOINTS {
        let got = rx.wait_for(&format!("m{i}"), ORGS).await;
        let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
        for r in &got {
            *per_id.entry(r.id()).or_default() += 1;
        }
        assert_eq!(per_id.len(), ORGS);
        assert!(
            per_id.values().all(|n| *n == 1),
            "endpoint m{i} got an event twice: {per_id:?}"
        );
        let seqs: Vec<i64> = got.iter().map(Received::seq).collect();
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "endpoint m{i} out of order: {seqs:?}"
        );
    }
}

backend_tests!(
    deliveries_verify_with_standard_webhooks_and_keep_order,
    failures_are_retried_with_backoff_and_recorded,
    endpoints_failing_past_the_horizon_are_disabled_and_resume_when_enabled,
    organization_scope_and_subscriptions_select_events,
    redirects_are_not_followed,
    refused_addresses_are_checked_again_at_delivery,
    replay_redelivery_and_ping,
    a_rotated_secret_signs_beside_the_new_one,
    claims_are_exclusive,
    two_dispatchers_share_the_work_without_delivering_twice,
);
