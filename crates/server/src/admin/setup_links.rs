//! Setup links: an operator creates a link for one organization (`{public_url}/setup/rc_setup_...`,
//! shown once, stored hashed) and gives it to the customer's IT admin, who opens it without an
//! account and sets up SCIM for that organization only. A link expires (7 days by default), can be
//! revoked, and remembers the connection created through it. Opening a link that expired or was
//! revoked is told apart from one that never existed, so the page can say what happened.

use super::sessions::{IssuedSession, not_signed_in, session_hash, session_ttl_us};
use super::{Admin, AdminError, AdminResult};
use crate::tokens;
use rollcall_store::sqlite::now_us;
use rollcall_store::{
    Actor, NewBrowserSession, NewSetupLink, SessionKind, SetupLink, SetupLinkStatus, StoreError, WriteContext,
};
use std::time::Duration;

/// How long a link works when no expiry is given.
pub const DEFAULT_SETUP_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest expiry allowed.
pub const MIN_SETUP_LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// The longest expiry allowed.
pub const MAX_SETUP_LINK_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The longest return URL, in characters.
pub const MAX_RETURN_URL_CHARS: usize = 2000;
/// The `kind` of the 404 for a link that does not exist.
pub const LINK_NOT_FOUND: &str = "link-not-found";
/// The `kind` of the 410 for a link past its expiry.
pub const LINK_EXPIRED: &str = "link-expired";
/// The `kind` of the 410 for a revoked link.
pub const LINK_REVOKED: &str = "link-revoked";

/// A link just created, with its token and URL: shown once, give them to the IT admin now.
#[derive(Debug, Clone)]
pub struct IssuedSetupLink {
    pub link: SetupLink,
    /// `{public_url}/setup/{token}`.
    pub url: String,
    /// `rc_setup_...`, 256 random bits.
    pub token: String,
}

/// A signed-in setup page: the IT admin of one organization, through one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupSession {
    /// The link the session was opened from (live: not revoked, not expired).
    pub link: SetupLink,
    /// The one organization the session may see and change (the link's).
    pub org_id: String,
    pub org_name: String,
    pub created_us: i64,
    /// Never after the link's expiry.
    pub expires_us: i64,
    /// When the session was last used (recorded at most about once a minute).
    pub last_seen_us: i64,
}

impl SetupSession {
    /// The context of a change made on the setup page: in the link's organization, recorded as made
    /// through the link (actor `setup_link`), with the request's User-Agent and id.
    pub fn write_context(&self, user_agent: Option<&str>, request_id: Option<&str>) -> WriteContext {
        WriteContext {
            org_id: self.org_id.clone(),
            user_agent: user_agent.map(|u| u.chars().take(256).collect()),
            request_id: request_id.map(str::to_string),
            actor: Actor::SetupLink {
                id: self.link.id.clone(),
            },
            ..WriteContext::default()
        }
    }
}

fn no_setup_link(id: &str) -> AdminError {
    AdminError::not_found(format!("no setup link with id \"{id}\" in this organization"))
}

/// A link's expiry from now, within [`MIN_SETUP_LINK_TTL`]..=[`MAX_SETUP_LINK_TTL`]; 422 otherwise.
fn link_ttl_us(expires_in: Option<Duration>) -> AdminResult<i64> {
    let ttl = expires_in.unwrap_or(DEFAULT_SETUP_LINK_TTL);
    if ttl < MIN_SETUP_LINK_TTL || ttl > MAX_SETUP_LINK_TTL {
        return Err(AdminError::invalid(format!(
            "expires_in: a setup link expires from {} seconds (5 minutes) to {} seconds (90 days) after it is \
             created, not {} seconds",
            MIN_SETUP_LINK_TTL.as_secs(),
            MAX_SETUP_LINK_TTL.as_secs(),
            ttl.as_secs()
        )));
    }
    Ok(ttl.as_micros() as i64)
}

/// An absolute `http://` or `https://` URL with a host and no credentials, of at most
/// [`MAX_RETURN_URL_CHARS`] characters; returned normalised (percent-encoded where needed).
pub fn validate_return_url(raw: &str) -> AdminResult<String> {
    let invalid = |why: &str| AdminError::invalid(format!("return_url: {why}"));
    let s = raw.trim();
    if s.is_empty() {
        return Err(invalid("must not be empty (leave it out for none)"));
    }
    if s.chars().count() > MAX_RETURN_URL_CHARS {
        return Err(invalid(&format!("longer than {MAX_RETURN_URL_CHARS} characters")));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("must not contain spaces or control characters"));
    }
    let lower = s.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(invalid("must be an absolute URL starting with https:// or http://"));
    }
    let url = url::Url::parse(s).map_err(|e| invalid(&format!("\"{s}\" is not a valid URL: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain a user name or password"));
    }
    let normalised = url.to_string();
    if normalised.chars().count() > MAX_RETURN_URL_CHARS {
        return Err(invalid(&format!(
            "longer than {MAX_RETURN_URL_CHARS} characters once encoded"
        )));
    }
    Ok(normalised)
}

/// The 410 for a link that no longer works, or `None` for a live one.
fn gone(link: &SetupLink, now: i64) -> Option<AdminError> {
    match link.status(now) {
        SetupLinkStatus::Active => None,
        SetupLinkStatus::Expired => Some(
            AdminError::new(
                410,
                format!(
                    "this setup link expired at {}; ask for a new one",
                    rollcall_webhooks::event::rfc3339(link.expires_us)
                ),
            )
            .with_kind(LINK_EXPIRED),
        ),
        SetupLinkStatus::Revoked => {
            Some(AdminError::new(410, "this setup link was revoked; ask for a new one").with_kind(LINK_REVOKED))
        }
    }
}

impl Admin {
    /// The URL of a setup link's token: `{public_url}/setup/{token}`.
    pub fn setup_link_url(&self, token: &str) -> String {
        format!("{}/setup/{token}", self.public_url)
    }

    /// Creates a setup link for an organization (404 when it does not exist): it works for
    /// `expires_in` ([`DEFAULT_SETUP_LINK_TTL`] when `None`; 5 minutes to 90 days, else 422), and
    /// the setup page offers `return_url` when done (validated by [`validate_return_url`], else 422).
    /// Records `setup_link.created`. The token and URL are in the answer only.
    pub async fn create_setup_link(
        &self,
        by: &WriteContext,
        org_id: &str,
        expires_in: Option<Duration>,
        return_url: Option<&str>,
    ) -> AdminResult<IssuedSetupLink> {
        let ttl_us = link_ttl_us(expires_in)?;
        let return_url = return_url.map(validate_return_url).transpose()?;
        let org = self.organization(org_id).await?;
        let issued = tokens::issue_setup_link();
        let link = self
            .store
            .create_setup_link(
                by,
                NewSetupLink {
                    org_id: org.id,
                    token_hash: issued.hash,
                    token_prefix: issued.display_prefix,
                    return_url,
                    expires_us: now_us().saturating_add(ttl_us),
                },
            )
            .await?;
        Ok(IssuedSetupLink {
            url: self.setup_link_url(&issued.secret),
            token: issued.secret,
            link,
        })
    }

    /// An organization's setup links (404 when it does not exist), revoked and expired ones
    /// included, newest first.
    pub async fn list_setup_links(&self, org_id: &str) -> AdminResult<Vec<SetupLink>> {
        self.organization(org_id).await?;
        Ok(self.store.list_setup_links(org_id).await?)
    }

    /// One setup link of an organization; 404 when it has none with that id.
    pub async fn setup_link(&self, org_id: &str, id: &str) -> AdminResult<SetupLink> {
        self.organization(org_id).await?;
        self.store
            .get_setup_link(id)
            .await?
            .filter(|l| l.org_id == org_id)
            .ok_or_else(|| no_setup_link(id))
    }

    /// Revokes a setup link of an organization (404 when it has none with that id): it stops
    /// working at once and the setup pages opened from it are signed out, in one transaction that
    /// records `setup_link.revoked`. Revoking a revoked link changes nothing.
    pub async fn revoke_setup_link(&self, by: &WriteContext, org_id: &str, id: &str) -> AdminResult<SetupLink> {
        self.setup_link(org_id, id).await?;
        self.store
            .revoke_setup_link(by, id)
            .await?
            .ok_or_else(|| no_setup_link(id))
    }

    /// The link a presented token (the last segment of its URL) belongs to, if it works: 404 (kind
    /// [`LINK_NOT_FOUND`]) when there is none, 410 (kind [`LINK_EXPIRED`] or [`LINK_REVOKED`]) when
    /// it no longer works. Read only: the page shows the organization and offers to continue
    /// ([`Admin::setup_sign_in`]).
    pub async fn open_setup_link(&self, token: &str) -> AdminResult<SetupLink> {
        let not_found = || {
            AdminError::not_found(
                "this setup link does not exist: check that the whole link was copied, or ask for a new one",
            )
            .with_kind(LINK_NOT_FOUND)
        };
        let t = token.trim();
        if !t.starts_with(tokens::SETUP_TOKEN_PREFIX) || t.len() > 128 {
            return Err(not_found());
        }
        let hash = tokens::hash(t);
        let link = self
            .store
            .setup_link_by_hash(&hash)
            .await?
            .filter(|l| tokens::matches(&hash, &l.token_hash))
            .ok_or_else(not_found)?;
        match gone(&link, now_us()) {
            Some(e) => Err(e),
            None => Ok(link),
        }
    }

    /// Opens a setup page session from a link's token (the errors of [`Admin::open_setup_link`]):
    /// a session of `ttl` (see [`super::DEFAULT_SESSION_TTL`]; 1 minute to 7 days, else 422), never
    /// longer than the link works. Records when the link was used.
    pub async fn setup_sign_in(&self, token: &str, ttl: Duration) -> AdminResult<IssuedSession<SetupSession>> {
        let ttl_us = session_ttl_us(ttl)?;
        let link = self.open_setup_link(token).await?;
        let org = self.organization(&link.org_id).await?;
        let issued = tokens::issue_session();
        let session = self
            .store
            .create_browser_session(NewBrowserSession {
                token_hash: issued.hash,
                kind: SessionKind::Setup,
                subject_id: link.id.clone(),
                org_id: Some(link.org_id.clone()),
                expires_us: now_us().saturating_add(ttl_us).min(link.expires_us),
            })
            .await?;
        Ok(IssuedSession {
            token: issued.secret,
            session: SetupSession {
                link: SetupLink {
                    last_used_us: Some(session.created_us),
                    ..link
                },
                org_id: org.id,
                org_name: org.name,
                created_us: session.created_us,
                expires_us: session.expires_us,
                last_seen_us: session.last_seen_us,
            },
        })
    }

    /// The setup session of a session token (the cookie's value), in one query: 401 (kind
    /// [`super::NOT_SIGNED_IN`]) when there is none (unknown, expired, signed out, its link revoked
    /// or its organization deleted), 410 (kind [`LINK_REVOKED`] or [`LINK_EXPIRED`]) for a session
    /// whose link stopped working while it was being read.
    pub async fn setup_session(&self, token: &str) -> AdminResult<SetupSession> {
        let hash = session_hash(token).ok_or_else(|| not_signed_in("not signed in"))?;
        let now = now_us();
        let row = self
            .store
            .setup_session(&hash, now)
            .await?
            .filter(|r| tokens::matches(&hash, &r.session.token_hash))
            .ok_or_else(|| not_signed_in("not signed in, or the session has ended: open your setup link again"))?;
        if let Some(e) = gone(&row.link, now) {
            return Err(e);
        }
        self.touch_session(&row.session, now).await;
        Ok(SetupSession {
            org_id: row.link.org_id.clone(),
            org_name: row.org_name,
            created_us: row.session.created_us,
            expires_us: row.session.expires_us,
            last_seen_us: row.session.last_seen_us,
            link: row.link,
        })
    }

    /// Records the connection the IT admin created through a link (shown in its view, and for
    /// coming back later). 404 when the link does not exist, 422 when the connection is not one of
    /// the link's organization.
    pub async fn attach_setup_connection(&self, link_id: &str, connection_id: &str) -> AdminResult<SetupLink> {
        self.store
            .set_setup_link_connection(link_id, connection_id)
            .await
            .map_err(|e| match e {
                StoreError::Scim(s) if s.status == 400 => AdminError::invalid(format!("connection_id: {}", s.detail)),
                other => other.into(),
            })?
            .ok_or_else(|| AdminError::not_found(format!("no setup link with id \"{link_id}\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_are_checked() {
        assert_eq!(
            validate_return_url(" https://app.example.com/settings/sso?tab=scim ").unwrap(),
            "https://app.example.com/settings/sso?tab=scim"
        );
        assert_eq!(
            validate_return_url("HTTP://Example.com").unwrap(),
            "http://example.com/"
        );
        assert_eq!(
            validate_return_url("https://app.example.com/a b").unwrap_err().status,
            422
        );
        for bad in [
            "",
            "/relative/path",
            "//example.com/x",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://example.com/",
            "https:example.com",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://",
            "https://exa mple.com/",
            "https://example.com/a\tb",
        ] {
            let e = validate_return_url(bad).unwrap_err();
            assert_eq!(e.status, 422, "{bad:?}");
            assert!(e.detail.starts_with("return_url: "), "{e:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_RETURN_URL_CHARS));
        assert!(validate_return_url(&long).is_err());
        let fits = format!("https://example.com/{}", "a".repeat(MAX_RETURN_URL_CHARS - 20));
        assert!(validate_return_url(&fits).is_ok());
    }

    #[test]
    fn link_expiry_is_bounded() {
        assert_eq!(link_ttl_us(None).unwrap(), 7 * 24 * 3600 * 1_000_000);
        assert!(link_ttl_us(Some(MIN_SETUP_LINK_TTL)).is_ok());
        assert!(link_ttl_us(Some(MAX_SETUP_LINK_TTL)).is_ok());
        assert_eq!(link_ttl_us(Some(Duration::from_secs(299))).unwrap_err().status, 422);
        assert_eq!(
            link_ttl_us(Some(MAX_SETUP_LINK_TTL + Duration::from_secs(1)))
                .unwrap_err()
                .status,
            422
        );
    }

    #[test]
    fn gone_links_say_why() {
        let mut l = SetupLink {
            id: "l".into(),
            org_id: "o".into(),
            token_hash: [0; 32],
            token_prefix: "rc_setup_abcd".into(),
            return_url: None,
            created_by: Actor::Cli,
            connection_id: None,
            created_us: 0,
            expires_us: 100,
            revoked_us: None,
            last_used_us: None,
        };
        assert!(gone(&l, 50).is_none());
        let e = gone(&l, 100).unwrap();
        assert_eq!((e.status, e.kind), (410, Some(LINK_EXPIRED)));
        l.revoked_us = Some(10);
        let e = gone(&l, 50).unwrap();
        assert_eq!((e.status, e.kind), (410, Some(LINK_REVOKED)));
    }
}
