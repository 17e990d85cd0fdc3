//! Bearer tokens for SCIM connections: 256 random bits with a recognisable prefix, stored only as
//! a SHA-256 hash and compared in constant time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every SCIM token starts with this, so it is recognisable in logs and secret scanners.
pub const SCIM_TOKEN_PREFIX: &str = "rc_scim_";

/// A newly issued token: the secret (shown once), its hash and a displayable prefix.
pub struct IssuedToken {
    pub secret: String,
    pub hash: [u8; 32],
    pub display_prefix: String,
}

/// Issues a new SCIM token from the operating system's random source.
pub fn issue() -> IssuedToken {
    let mut bytes = [0u8; 32];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{SCIM_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash(&secret);
    let display_prefix = secret[..SCIM_TOKEN_PREFIX.len() + 4].to_string();
    IssuedToken {
        secret,
        hash,
        display_prefix,
    }
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of a presented token's hash with a stored hash.
pub fn matches(presented_hash: &[u8; 32], stored_hash: &[u8; 32]) -> bool {
    presented_hash.ct_eq(stored_hash).into()
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
}
