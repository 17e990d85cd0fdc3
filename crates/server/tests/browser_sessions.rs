//! Browser sessions of the operator console through the application layer (`Admin`), on SQLite and
//! PostgreSQL: signing in with an API key, reading the session, signing out, expiry, and a revoked
//! key ending its sessions.

mod common;

use common::*;
use rollcall_server::admin::{self, Admin, DEFAULT_SESSION_TTL, NOT_SIGNED_IN};
use rollcall_server::tokens;
use rollcall_store::sqlite::now_us;
use rollcall_store::{NewBrowserSession, SessionKind, WriteContext};
use std::sync::Arc;
use std::time::Duration;

backend_tests!(console_sign_in_and_out, revoked_keys_and_expired_sessions_end);

async fn admin_for(srv: &TestServer) -> Admin {
    Admin::new(srv.store.clone(), Arc::default(), &srv.base)
}

#[track_caller]
fn not_signed_in(e: admin::AdminError) {
    assert_eq!(e.status, 401, "{e:?}");
    assert_eq!(e.kind, Some(NOT_SIGNED_IN), "{e:?}");
}

async fn console_sign_in_and_out() {
    let srv = TestServer::start().await;
    let admin = admin_for(&srv).await;
    let key = admin.create_api_key(&WriteContext::cli(), "ops").await.unwrap();

    // Wrong credentials say why, and create nothing.
    let e = admin
        .console_sign_in("rc_key_wrong", DEFAULT_SESSION_TTL)
        .await
        .unwrap_err();
    assert_eq!(e.status, 401);
    let e = admin
        .console_sign_in(&srv.conn().token, DEFAULT_SESSION_TTL)
        .await
        .unwrap_err();
    assert_eq!(e.status, 401);
    assert!(e.detail.contains("SCIM connection tokens"), "{e:?}");
    let e = admin
        .console_sign_in(&key.secret, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.status, 422);

    let before = now_us();
    let issued = admin
        .console_sign_in(&format!(" {}\n", key.secret), DEFAULT_SESSION_TTL)
        .await
        .unwrap();
    assert!(issued.token.starts_with(tokens::SESSION_TOKEN_PREFIX));
    assert_eq!(issued.session.api_key_id, key.key.id);
    assert_eq!(issued.session.api_key_name, "ops");
    // Expires 12 hours after signing in (the expiry is computed a moment before the row is written).
    let ttl = issued.session.expires_us - before;
    let default = DEFAULT_SESSION_TTL.as_micros() as i64;
    assert!((default..default + 5_000_000).contains(&ttl), "{ttl}");
    assert!(issued.session.created_us >= before);

    let s = admin.console_session(&issued.token).await.unwrap();
    assert_eq!(s, issued.session);
    let ctx = s.write_context(Some("Firefox"), Some("req-7"));
    assert_eq!(
        ctx.actor,
        rollcall_store::Actor::ApiKey {
            id: key.key.id.clone(),
            name: "ops".into()
        }
    );
    assert_eq!(ctx.user_agent.as_deref(), Some("Firefox"));
    assert_eq!(ctx.org_id, "");

    // Only a session token is looked up; the API key itself is not a session.
    for bad in ["", "garbage", key.secret.as_str(), "rc_ses_unknown"] {
        not_signed_in(admin.console_session(bad).await.unwrap_err());
    }

    // Two sessions of one key are independent; signing out ends one.
    let other = admin.console_sign_in(&key.secret, DEFAULT_SESSION_TTL).await.unwrap();
    assert_ne!(other.token, issued.token);
    admin.end_session(&issued.token).await.unwrap();
    not_signed_in(admin.console_session(&issued.token).await.unwrap_err());
    admin.console_session(&other.token).await.unwrap();
    // Signing out twice, or with anything, is fine.
    admin.end_session(&issued.token).await.unwrap();
    admin.end_session("nonsense").await.unwrap();

    // The session token is stored only as its hash.
    let row = srv
        .store
        .console_session(&tokens::hash(&other.token), now_us())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.session.token_hash, tokens::hash(&other.token));
    assert_eq!(row.session.kind, SessionKind::Console);

    // The CSRF token of a session is checked against that session only.
    let csrf = admin::csrf_token(&other.token);
    assert!(admin::check_csrf(&other.token, &csrf));
    assert!(!admin::check_csrf(&issued.token, &csrf));
}

async fn revoked_keys_and_expired_sessions_end() {
    let srv = TestServer::start().await;
    let admin = admin_for(&srv).await;
    let ops = admin.create_api_key(&WriteContext::cli(), "ops").await.unwrap();
    let ci = admin.create_api_key(&WriteContext::cli(), "ci").await.unwrap();
    let a = admin.console_sign_in(&ops.secret, DEFAULT_SESSION_TTL).await.unwrap();
    let b = admin.console_sign_in(&ops.secret, DEFAULT_SESSION_TTL).await.unwrap();
    let c = admin.console_sign_in(&ci.secret, DEFAULT_SESSION_TTL).await.unwrap();

    // Revoking a key ends every console session signed in with it, and it cannot sign in again.
    admin.revoke_api_key(&WriteContext::cli(), &ops.key.id).await.unwrap();
    not_signed_in(admin.console_session(&a.token).await.unwrap_err());
    not_signed_in(admin.console_session(&b.token).await.unwrap_err());
    admin.console_session(&c.token).await.unwrap();
    let e = admin
        .console_sign_in(&ops.secret, DEFAULT_SESSION_TTL)
        .await
        .unwrap_err();
    assert_eq!(e.status, 401);
    assert!(e.detail.contains("revoked"), "{e:?}");

    // A session past its expiry does not work, and pruning removes it (not the live one).
    let expired = tokens::issue_session();
    srv.store
        .create_browser_session(NewBrowserSession {
            token_hash: expired.hash,
            kind: SessionKind::Console,
            subject_id: ci.key.id.clone(),
            org_id: None,
            expires_us: now_us() - 1,
        })
        .await
        .unwrap();
    not_signed_in(admin.console_session(&expired.secret).await.unwrap_err());
    assert_eq!(admin.prune_sessions(1000).await.unwrap(), 1);
    assert_eq!(admin.prune_sessions(1000).await.unwrap(), 0);
    admin.console_session(&c.token).await.unwrap();
}
