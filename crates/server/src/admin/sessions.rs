//! Browser sessions, for the operator console and the setup page: signing in turns a credential
//! (an operator API key, or a setup link) into a session token for an HttpOnly cookie; every
//! request then reads the session with one query, which also checks its subject (a revoked API key
//! or setup link ends its sessions). The token is 256 random bits (`rc_ses_...`), stored only as its
//! SHA-256. Forms carry a CSRF token derived from the session token ([`csrf_token`]).

use super::{Admin, AdminError, AdminResult};
use crate::tokens;
use rollcall_store::sqlite::now_us;
use rollcall_store::{Actor, BrowserSession, NewBrowserSession, SessionKind, WriteContext};
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a session lasts when the caller has no reason to choose otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The shortest session allowed.
pub const MIN_SESSION_TTL: Duration = Duration::from_secs(60);
/// The longest session allowed.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A session's `last_seen` is written at most this often (microseconds), so that reading a session
/// is a read.
const TOUCH_EVERY_US: i64 = 60 * 1_000_000;
/// Domain separation of CSRF tokens from every other use of a session token.
const CSRF_CONTEXT: &[u8] = b"rollcall csrf v1\0";
/// The `kind` of the 401 for a missing, unknown, expired or ended session.
pub const NOT_SIGNED_IN: &str = "not-signed-in";

/// A session just created, with its token: set it as the cookie's value; it is not shown again.
#[derive(Debug, Clone)]
pub struct IssuedSession<S> {
    /// `rc_ses_...`, 256 random bits.
    pub token: String,
    pub session: S,
}

/// A signed-in operator console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The API key the operator signed in with.
    pub api_key_id: String,
    pub api_key_name: String,
    pub created_us: i64,
    pub expires_us: i64,
    /// When the session was last used (recorded at most about once a minute).
    pub last_seen_us: i64,
}

impl ConsoleSession {
    /// The context of a change made in this session: recorded as made by its API key, as the
    /// management API records it, with the request's User-Agent and id.
    pub fn write_context(&self, user_agent: Option<&str>, request_id: Option<&str>) -> WriteContext {
        WriteContext {
            user_agent: user_agent.map(|u| u.chars().take(256).collect()),
            request_id: request_id.map(str::to_string),
            actor: Actor::ApiKey {
                id: self.api_key_id.clone(),
                name: self.api_key_name.clone(),
            },
            ..WriteContext::default()
        }
    }
}

/// The 401 for a session that does not (or no longer) work.
pub(crate) fn not_signed_in(detail: impl Into<String>) -> AdminError {
    AdminError::new(401, detail).with_kind(NOT_SIGNED_IN)
}

/// `ttl` in microseconds, within [`MIN_SESSION_TTL`]..=[`MAX_SESSION_TTL`]; 422 otherwise.
pub(crate) fn session_ttl_us(ttl: Duration) -> AdminResult<i64> {
    if ttl < MIN_SESSION_TTL || ttl > MAX_SESSION_TTL {
        return Err(AdminError::invalid(format!(
            "a session lasts from {} seconds to {} seconds, not {} seconds",
            MIN_SESSION_TTL.as_secs(),
            MAX_SESSION_TTL.as_secs(),
            ttl.as_secs()
        )));
    }
    Ok(ttl.as_micros() as i64)
}

/// The hash of a presented session token, or `None` when it cannot be one (so no query is made).
pub(crate) fn session_hash(token: &str) -> Option<[u8; 32]> {
    let t = token.trim();
    (t.starts_with(tokens::SESSION_TOKEN_PREFIX) && t.len() <= 128).then(|| tokens::hash(t))
}

/// The CSRF token of a session: the hex SHA-256 of a fixed context and the session token. Put it in
/// every form (a hidden field) and check it with [`check_csrf`]; it cannot be turned back into the
/// session token.
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(CSRF_CONTEXT);
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `presented` is the CSRF token of the session (compared in constant time).
pub fn check_csrf(session_token: &str, presented: &str) -> bool {
    let expected = csrf_token(session_token);
    expected.as_bytes().ct_eq(presented.trim().as_bytes()).into()
}

impl Admin {
    /// Records that a session was used, at most about once a minute; a failure is logged, not
    /// returned (the session itself was read).
    pub(crate) async fn touch_session(&self, s: &BrowserSession, now: i64) {
        if now - s.last_seen_us >= TOUCH_EVERY_US
            && let Err(e) = self.store.touch_browser_session(&s.token_hash, now).await
        {
            tracing::warn!(error = %e, kind = %s.kind, "recording a session's last use failed");
        }
    }

    /// Signs an operator in to the console with an operator API key (`rc_key_...`): a session of
    /// `ttl` ([`DEFAULT_SESSION_TTL`] by default; 1 minute to 7 days). 401 when the key is not valid
    /// or revoked (the detail says which), 422 for a `ttl` out of range.
    pub async fn console_sign_in(
        &self,
        presented_api_key: &str,
        ttl: Duration,
    ) -> AdminResult<IssuedSession<ConsoleSession>> {
        let ttl_us = session_ttl_us(ttl)?;
        let key = self.authenticate_api_key(presented_api_key.trim()).await?;
        let issued = tokens::issue_session();
        let session = self
            .store
            .create_browser_session(NewBrowserSession {
                token_hash: issued.hash,
                kind: SessionKind::Console,
                subject_id: key.id.clone(),
                org_id: None,
                expires_us: now_us().saturating_add(ttl_us),
            })
            .await?;
        Ok(IssuedSession {
            token: issued.secret,
            session: ConsoleSession {
                api_key_id: key.id,
                api_key_name: key.name,
                created_us: session.created_us,
                expires_us: session.expires_us,
                last_seen_us: session.last_seen_us,
            },
        })
    }

    /// The console session of a session token (the cookie's value), in one query. 401 (kind
    /// [`NOT_SIGNED_IN`]) when there is none: unknown, expired, signed out, or its API key revoked.
    pub async fn console_session(&self, token: &str) -> AdminResult<ConsoleSession> {
        let hash = session_hash(token).ok_or_else(|| not_signed_in("not signed in"))?;
        let now = now_us();
        let row = self
            .store
            .console_session(&hash, now)
            .await?
            .filter(|r| tokens::matches(&hash, &r.session.token_hash))
            .ok_or_else(|| not_signed_in("not signed in, or the session has expired: sign in again"))?;
        if let Some(at) = row.api_key.revoked_us {
            return Err(not_signed_in(format!(
                "the API key this session signed in with was revoked at {}: sign in with another key",
                rollcall_webhooks::event::rfc3339(at)
            )));
        }
        self.touch_session(&row.session, now).await;
        Ok(ConsoleSession {
            api_key_id: row.api_key.id,
            api_key_name: row.api_key.name,
            created_us: row.session.created_us,
            expires_us: row.session.expires_us,
            last_seen_us: row.session.last_seen_us,
        })
    }

    /// Ends a session (sign-out), of the console or the setup page. Ending one that does not exist
    /// (already ended, expired and pruned, never issued) succeeds too.
    pub async fn end_session(&self, token: &str) -> AdminResult<()> {
        if let Some(hash) = session_hash(token) {
            self.store.delete_browser_session(&hash).await?;
        }
        Ok(())
    }

    /// Deletes up to `batch` sessions that have expired; returns how many (background pruning).
    pub async fn prune_sessions(&self, batch: i64) -> AdminResult<u64> {
        Ok(self.store.prune_browser_sessions(now_us(), batch).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_derived_and_checked() {
        let a = tokens::issue_session().secret;
        let b = tokens::issue_session().secret;
        let ta = csrf_token(&a);
        assert_eq!(ta.len(), 64);
        assert!(ta.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(ta, csrf_token(&a), "stable for a session");
        assert_ne!(ta, csrf_token(&b), "each session has its own");
        assert!(!ta.contains(&a[tokens::SESSION_TOKEN_PREFIX.len()..]));
        // Not the plain hash of the token (which is what the database holds).
        assert_ne!(ta, hex::encode(tokens::hash(&a)));
        assert!(check_csrf(&a, &ta));
        assert!(check_csrf(&a, &format!(" {ta}\n")));
        assert!(!check_csrf(&b, &ta));
        assert!(!check_csrf(&a, ""));
        assert!(!check_csrf(&a, &ta[..63]));
        assert!(!check_csrf(&a, &format!("{ta}0")));
        assert!(!check_csrf(&a, &ta.to_uppercase()));
    }

    #[test]
    fn session_ttls_are_bounded() {
        assert_eq!(session_ttl_us(DEFAULT_SESSION_TTL).unwrap(), 12 * 3600 * 1_000_000);
        assert!(session_ttl_us(MIN_SESSION_TTL).is_ok());
        assert!(session_ttl_us(MAX_SESSION_TTL).is_ok());
        assert_eq!(session_ttl_us(Duration::from_secs(59)).unwrap_err().status, 422);
        assert_eq!(
            session_ttl_us(MAX_SESSION_TTL + Duration::from_secs(1))
                .unwrap_err()
                .status,
            422
        );
    }

    #[test]
    fn only_session_tokens_are_looked_up() {
        let t = tokens::issue_session().secret;
        assert_eq!(session_hash(&t), Some(tokens::hash(&t)));
        assert_eq!(session_hash(""), None);
        assert_eq!(session_hash("rc_key_abc"), None);
        assert_eq!(session_hash(&format!("rc_ses_{}", "a".repeat(200))), None);
    }
}
