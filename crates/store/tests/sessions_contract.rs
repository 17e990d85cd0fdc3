//! Browser sessions (operator console, setup page) and setup links (issue #14), on SQLite and, when
//! `ROLLCALL_TEST_DATABASE_URL` names a PostgreSQL server, on PostgreSQL: the same behaviour on
//! both.

use rollcall_store::sqlite::now_us;
use rollcall_store::*;
use serde_json::json;
use std::sync::Arc;

mod harness;
use harness::*;

contract!(
    console_sessions,
    session_lifecycle_and_pruning,
    setup_links_and_their_sessions,
    setup_links_follow_their_organization_and_connection,
);

const HOUR_US: i64 = 3600 * 1_000_000;

async fn api_key(s: &dyn Store, name: &str) -> ApiKey {
    s.create_api_key(
        &WriteContext::cli(),
        NewApiKey {
            name: name.into(),
            key_hash: hash_of(&format!("key-{name}")),
            key_prefix: format!("rc_key_{name}"),
        },
    )
    .await
    .expect("create API key")
}

async fn session(s: &dyn Store, token: &str, kind: SessionKind, subject: &str, org: Option<&str>, expires_us: i64) {
    let created = s
        .create_browser_session(NewBrowserSession {
            token_hash: hash_of(token),
            kind,
            subject_id: subject.into(),
            org_id: org.map(str::to_string),
            expires_us,
        })
        .await
        .expect("create session");
    assert_eq!(created.token_hash, hash_of(token));
    assert_eq!(created.expires_us, expires_us);
    assert_eq!(created.last_seen_us, created.created_us);
}

async fn new_link(s: &dyn Store, org_id: &str, token: &str, expires_us: i64) -> SetupLink {
    s.create_setup_link(
        &WriteContext::cli(),
        NewSetupLink {
            org_id: org_id.into(),
            token_hash: hash_of(token),
            token_prefix: token.chars().take(13).collect(),
            return_url: Some("https://app.example.com/settings/sso".into()),
            expires_us,
        },
    )
    .await
    .expect("create setup link")
}

async fn console_sessions(store: Arc<dyn Store>) {
    let s = &*store;
    let now = now_us();
    let ops = api_key(s, "ops").await;
    let ci = api_key(s, "ci").await;
    session(s, "ses-a", SessionKind::Console, &ops.id, None, now + HOUR_US).await;
    session(s, "ses-b", SessionKind::Console, &ops.id, None, now + HOUR_US).await;
    session(s, "ses-c", SessionKind::Console, &ci.id, None, now + HOUR_US).await;

    let found = s.console_session(&hash_of("ses-a"), now).await.unwrap().expect("found");
    assert_eq!(found.session.kind, SessionKind::Console);
    assert_eq!(found.session.subject_id, ops.id);
    assert_eq!(found.session.org_id, None);
    assert_eq!(found.api_key, ops);
    // Unknown tokens, and a console token asked for as a setup session, find nothing.
    assert!(s.console_session(&hash_of("nope"), now).await.unwrap().is_none());
    assert!(s.setup_session(&hash_of("ses-a"), now).await.unwrap().is_none());
    // Past its expiry it is not found.
    assert!(
        s.console_session(&hash_of("ses-a"), now + 2 * HOUR_US)
            .await
            .unwrap()
            .is_none()
    );

    // Revoking the key ends its sessions in the same transaction; the other key's stay.
    s.revoke_api_key(&WriteContext::cli(), &ops.id).await.unwrap().unwrap();
    assert!(s.console_session(&hash_of("ses-a"), now).await.unwrap().is_none());
    assert!(s.console_session(&hash_of("ses-b"), now).await.unwrap().is_none());
    assert!(
        !s.delete_browser_session(&hash_of("ses-b")).await.unwrap(),
        "already gone"
    );
    assert!(s.console_session(&hash_of("ses-c"), now).await.unwrap().is_some());

    // A session created for a key revoked meanwhile is found with the key marked revoked (the
    // caller refuses it).
    session(s, "ses-late", SessionKind::Console, &ops.id, None, now + HOUR_US).await;
    let late = s.console_session(&hash_of("ses-late"), now).await.unwrap().unwrap();
    assert!(late.api_key.revoked_us.is_some());
    // Revoking again ends it too.
    s.revoke_api_key(&WriteContext::cli(), &ops.id).await.unwrap().unwrap();
    assert!(s.console_session(&hash_of("ses-late"), now).await.unwrap().is_none());
}

async fn session_lifecycle_and_pruning(store: Arc<dyn Store>) {
    let s = &*store;
    let now = now_us();
    let key = api_key(s, "ops").await;
    let ci = api_key(s, "ci").await;
    session(s, "live", SessionKind::Console, &key.id, None, now + HOUR_US).await;
    session(s, "old-1", SessionKind::Console, &key.id, None, now - HOUR_US).await;
    session(s, "old-2", SessionKind::Console, &key.id, None, now - 1).await;
    session(s, "other", SessionKind::Console, &ci.id, None, now + HOUR_US).await;

    // Touching moves last_seen forward only.
    let before = s.console_session(&hash_of("live"), now).await.unwrap().unwrap().session;
    s.touch_browser_session(&hash_of("live"), before.last_seen_us + 5_000_000)
        .await
        .unwrap();
    s.touch_browser_session(&hash_of("live"), before.last_seen_us + 1)
        .await
        .unwrap();
    let after = s.console_session(&hash_of("live"), now).await.unwrap().unwrap().session;
    assert_eq!(after.last_seen_us, before.last_seen_us + 5_000_000);
    assert_eq!(after.created_us, before.created_us);

    // Pruning deletes the expired ones only, in batches.
    assert_eq!(s.prune_browser_sessions(now, 1).await.unwrap(), 1);
    assert_eq!(s.prune_browser_sessions(now, 100).await.unwrap(), 1);
    assert_eq!(s.prune_browser_sessions(now, 100).await.unwrap(), 0);
    assert!(s.console_session(&hash_of("live"), now).await.unwrap().is_some());

    // Every session of one subject, of that kind only.
    assert_eq!(
        s.delete_subject_sessions(SessionKind::Setup, &key.id).await.unwrap(),
        0,
        "the kind must match"
    );
    assert_eq!(
        s.delete_subject_sessions(SessionKind::Console, &key.id).await.unwrap(),
        1
    );
    assert!(s.console_session(&hash_of("live"), now).await.unwrap().is_none());
    assert!(s.console_session(&hash_of("other"), now).await.unwrap().is_some());

    // Sign-out.
    assert!(s.delete_browser_session(&hash_of("other")).await.unwrap());
    assert!(!s.delete_browser_session(&hash_of("other")).await.unwrap());
}

async fn setup_links_and_their_sessions(store: Arc<dyn Store>) {
    let s = &*store;
    let now = now_us();
    let ctx = tenant(s, "acme").await;
    let other = tenant(s, "globex").await;
    let by = WriteContext {
        actor: Actor::ApiKey {
            id: "k1".into(),
            name: "ops".into(),
        },
        request_id: Some("req-1".into()),
        ..WriteContext::default()
    };
    let first = s
        .create_setup_link(
            &by,
            NewSetupLink {
                org_id: ctx.org_id.clone(),
                token_hash: hash_of("rc_setup_first"),
                token_prefix: "rc_setup_firs".into(),
                return_url: None,
                expires_us: now + HOUR_US,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.created_by, by.actor);
    assert_eq!(first.status(now), SetupLinkStatus::Active);
    assert_eq!(first.return_url, None);
    let second = new_link(s, &ctx.org_id, "rc_setup_second", now + 2 * HOUR_US).await;
    let theirs = new_link(s, &other.org_id, "rc_setup_theirs", now + HOUR_US).await;
    assert_eq!(
        second.return_url.as_deref(),
        Some("https://app.example.com/settings/sso")
    );

    // An unknown organization is a 404, and nothing is recorded.
    let e = s
        .create_setup_link(
            &by,
            NewSetupLink {
                org_id: "missing".into(),
                token_hash: hash_of("x"),
                token_prefix: "x".into(),
                return_url: None,
                expires_us: now + HOUR_US,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.into_scim().status, 404);

    // Listed newest first, per organization; found by id and by token hash.
    let listed = s.list_setup_links(&ctx.org_id).await.unwrap();
    assert_eq!(listed, vec![second.clone(), first.clone()]);
    assert_eq!(s.list_setup_links(&other.org_id).await.unwrap(), vec![theirs.clone()]);
    assert_eq!(s.get_setup_link(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.get_setup_link("missing").await.unwrap(), None);
    assert_eq!(
        s.setup_link_by_hash(&hash_of("rc_setup_first")).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.setup_link_by_hash(&hash_of("nope")).await.unwrap(), None);

    // A setup session reads its link and organization in one go, and marks the link used.
    session(
        s,
        "setup-ses",
        SessionKind::Setup,
        &first.id,
        Some(&ctx.org_id),
        now + HOUR_US,
    )
    .await;
    session(
        s,
        "setup-ses-2",
        SessionKind::Setup,
        &first.id,
        Some(&ctx.org_id),
        now + HOUR_US,
    )
    .await;
    let found = s
        .setup_session(&hash_of("setup-ses"), now)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.session.kind, SessionKind::Setup);
    assert_eq!(found.session.org_id.as_deref(), Some(ctx.org_id.as_str()));
    assert_eq!(found.link.id, first.id);
    assert_eq!(found.org_name, "acme");
    assert!(found.link.last_used_us.is_some());
    assert!(s.console_session(&hash_of("setup-ses"), now).await.unwrap().is_none());

    // Attaching a connection: only one of the link's organization.
    let attached = s
        .set_setup_link_connection(&first.id, &ctx.connection_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attached.connection_id.as_deref(), Some(ctx.connection_id.as_str()));
    assert_eq!(
        s.get_setup_link(&first.id).await.unwrap().unwrap().connection_id,
        Some(ctx.connection_id.clone())
    );
    let e = s
        .set_setup_link_connection(&first.id, &other.connection_id)
        .await
        .unwrap_err();
    assert_eq!(e.into_scim().status, 400);
    let e = s.set_setup_link_connection(&first.id, "missing").await.unwrap_err();
    assert_eq!(e.into_scim().status, 400);
    assert_eq!(
        s.set_setup_link_connection("missing", &ctx.connection_id)
            .await
            .unwrap(),
        None
    );

    // Revoking ends the link's sessions in the same transaction; revoking again records nothing.
    let revoked = s.revoke_setup_link(&by, &first.id).await.unwrap().unwrap();
    let at = revoked.revoked_us.expect("revoked");
    assert_eq!(revoked.status(now), SetupLinkStatus::Revoked);
    assert!(s.setup_session(&hash_of("setup-ses"), now).await.unwrap().is_none());
    assert!(s.setup_session(&hash_of("setup-ses-2"), now).await.unwrap().is_none());
    let again = s.revoke_setup_link(&by, &first.id).await.unwrap().unwrap();
    assert_eq!(again.revoked_us, Some(at));
    assert_eq!(s.revoke_setup_link(&by, "missing").await.unwrap(), None);
    // A session made for the link after it was revoked is found with the revoked link (the caller
    // refuses it).
    session(
        s,
        "late",
        SessionKind::Setup,
        &first.id,
        Some(&ctx.org_id),
        now + HOUR_US,
    )
    .await;
    let late = s.setup_session(&hash_of("late"), now).await.unwrap().unwrap();
    assert_eq!(late.link.status(now), SetupLinkStatus::Revoked);

    // Events: created and revoked once each, in the organization, never with the token.
    let ev = s.events_after(0, 10_000).await.unwrap();
    let created: Vec<&Event> = ev.iter().filter(|e| e.kind == "setup_link.created").collect();
    assert_eq!(created.len(), 3);
    assert_eq!(created[0].org_id.as_deref(), Some(ctx.org_id.as_str()));
    assert_eq!(created[0].actor, by.actor);
    assert_eq!(created[0].request_id.as_deref(), Some("req-1"));
    assert_eq!(created[0].data["setup_link_id"], json!(first.id));
    assert_eq!(created[0].data["token_prefix"], json!("rc_setup_firs"));
    assert!(created[0].data["expires_at"].as_str().unwrap().ends_with('Z'));
    let revokes: Vec<&Event> = ev.iter().filter(|e| e.kind == "setup_link.revoked").collect();
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].data["setup_link_id"], json!(first.id));
    for e in created.iter().chain(revokes.iter()) {
        let text = e.data.to_string();
        assert!(!text.contains("rc_setup_first"), "{text}");
        assert!(!text.contains("hash"), "{text}");
    }
}

async fn setup_links_follow_their_organization_and_connection(store: Arc<dyn Store>) {
    let s = &*store;
    let now = now_us();
    let ctx = tenant(s, "acme").await;
    let link = new_link(s, &ctx.org_id, "rc_setup_one", now + HOUR_US).await;
    s.set_setup_link_connection(&link.id, &ctx.connection_id)
        .await
        .unwrap()
        .unwrap();
    session(s, "ses", SessionKind::Setup, &link.id, Some(&ctx.org_id), now + HOUR_US).await;

    // Deleting the connection keeps the link, without it.
    assert!(
        s.delete_connection(&WriteContext::cli(), &ctx.connection_id)
            .await
            .unwrap()
    );
    let kept = s.get_setup_link(&link.id).await.unwrap().unwrap();
    assert_eq!(kept.connection_id, None);
    assert!(s.setup_session(&hash_of("ses"), now).await.unwrap().is_some());

    // Deleting the organization deletes its links and their sessions.
    assert!(s.delete_organization(&WriteContext::cli(), &ctx.org_id).await.unwrap());
    assert_eq!(s.get_setup_link(&link.id).await.unwrap(), None);
    assert!(s.setup_session(&hash_of("ses"), now).await.unwrap().is_none());
    assert!(!s.delete_browser_session(&hash_of("ses")).await.unwrap());
}
