//! Bearer secrets: SCIM connection tokens and operator API keys. Each is 256 random bits with a
//! recognisable prefix, stored only as a SHA-256 hash and compared in constant time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every SCIM token starts with this, so it is recognisable in logs and secret scanners.
pub const SCIM_TOKEN_PREFIX: &str = "rc_scim_";
/// Every operator API key (management API) starts with this.
pub const API_KEY_PREFIX: &str = "rc_key_";
/// Every browser session token (the console's and the setup page's cookie) starts with this.
pub const SESSION_TOKEN_PREFIX: &str = "rc_ses_";
/// Every setup link's token (the last segment of its URL) starts with this.
pub const SETUP_TOKEN_PREFIX: &str = "rc_setup_";

/// How many characters after the prefix are kept for display (never enough to use the secret).
const DISPLAY_CHARS: usize = 4;

/// A newly issued secret: the secret (shown once), its hash and a displayable prefix.
pub struct IssuedToken {
    pub secret: String,
    pub hash: [u8; 32],
    pub display_prefix: String,
}

/// Issues a new SCIM token from the operating system's random source.
pub fn issue() -> IssuedToken {
    issue_with_prefix(SCIM_TOKEN_PREFIX)
}

/// Issues a new operator API key.
pub fn issue_api_key() -> IssuedToken {
    issue_with_prefix(API_KEY_PREFIX)
}

/// Issues a new browser session token.
pub fn issue_session() -> IssuedToken {
    issue_with_prefix(SESSION_TOKEN_PREFIX)
}

/// Issues a new setup link token.
pub fn issue_setup_link() -> IssuedToken {
    issue_with_prefix(SETUP_TOKEN_PREFIX)
}

/// `path` with every segment that is a setup link token (`rc_setup_...`) replaced by
/// `rc_setup_[redacted]`, for logs: a setup link's token is in its URL.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(SETUP_TOKEN_PREFIX) {
        return std::borrow::Cow::Borrowed(path);
    }
    let redacted: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if seg.starts_with(SETUP_TOKEN_PREFIX) {
                "rc_setup_[redacted]"
            } else {
                seg
            }
        })
        .collect();
    std::borrow::Cow::Owned(redacted.join("/"))
}

/// `prefix` followed by 32 random bytes in unpadded base64url (43 characters).
fn issue_with_prefix(prefix: &str) -> IssuedToken {
    let mut bytes = [0u8; 32];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash(&secret);
    let display_prefix = secret[..prefix.len() + DISPLAY_CHARS].to_string();
    IssuedToken {
        secret,
        hash,
        display_prefix,
    }
}

/// 32 random bytes in unpadded base64url: a one-off value such as a form's anti-forgery token.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of a presented token's hash with a stored hash.
pub fn matches(presented_hash: &[u8; 32], stored_hash: &[u8; 32]) -> bool {
    presented_hash.ct_eq(stored_hash).into()
}

/// The bearer credential of an `Authorization: Bearer <secret>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = issue();
        let b = issue();
        assert!(a.secret.starts_with(SCIM_TOKEN_PREFIX));
        assert_eq!(a.secret.len(), SCIM_TOKEN_PREFIX.len() + 43);
        assert_ne!(a.secret, b.secret);
        assert!(matches(&hash(&a.secret), &a.hash));
        assert!(!matches(&hash(&b.secret), &a.hash));
        assert!(a.secret.starts_with(&a.display_prefix));
    }

    #[test]
    fn api_keys_have_their_own_prefix() {
        let k = issue_api_key();
        assert!(k.secret.starts_with(API_KEY_PREFIX));
        assert_eq!(k.secret.len(), API_KEY_PREFIX.len() + 43);
        assert_eq!(k.display_prefix.len(), API_KEY_PREFIX.len() + 4);
        assert!(
            k.secret[API_KEY_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(matches(&hash(&k.secret), &k.hash));
    }

    #[test]
    fn session_and_setup_tokens() {
        for (t, prefix) in [
            (issue_session(), SESSION_TOKEN_PREFIX),
            (issue_setup_link(), SETUP_TOKEN_PREFIX),
        ] {
            assert!(t.secret.starts_with(prefix));
            assert_eq!(t.secret.len(), prefix.len() + 43);
            assert_eq!(t.display_prefix.len(), prefix.len() + 4);
            assert!(matches(&hash(&t.secret), &t.hash));
        }
        assert_ne!(issue_session().secret, issue_session().secret);
    }

    #[test]
    fn setup_tokens_are_redacted_from_paths() {
        let t = issue_setup_link().secret;
        let p = format!("/setup/{t}/idp");
        assert_eq!(redact_path(&p), "/setup/rc_setup_[redacted]/idp");
        assert_eq!(redact_path("/setup/x"), "/setup/x");
        assert_eq!(redact_path(&format!("/setup/{t}")), "/setup/rc_setup_[redacted]");
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
