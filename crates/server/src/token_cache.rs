//! A short-lived cache of authenticated connections, keyed by token hash, so that each SCIM request
//! does not pay a database round trip to check its bearer token.
//!
//! Entries live for [`TOKEN_CACHE_TTL`]: a rotated or deleted token stops working on every node
//! within that time (immediately on the node that rotated it, which drops the entry). Only
//! successful lookups are cached, so random tokens cannot fill it; its size is bounded.

use rollcall_store::Connection;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a verified token is trusted without asking the database again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<[u8; 32], (Connection, Instant)>>,
}

impl TokenCache {
    /// The cached connection for a token hash, if fresh.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Connection> {
        let map = self.entries.read().ok()?;
        let (c, at) = map.get(hash)?;
        (at.elapsed() < TOKEN_CACHE_TTL).then(|| c.clone())
    }

    pub fn put(&self, hash: [u8; 32], connection: Connection) {
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
            }
            map.insert(hash, (connection, Instant::now()));
        }
    }

    /// Forgets every entry of a connection (after its token is rotated or it is deleted).
    pub fn forget_connection(&self, connection_id: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|_, (c, _)| c.id != connection_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall_store::IdpKind;

    fn conn(id: &str) -> Connection {
        Connection {
            id: id.into(),
            org_id: "o".into(),
            name: "n".into(),
            idp: IdpKind::Generic,
            token_prefix: "rc_scim_abcd".into(),
            token_hash: [1; 32],
            created_us: 0,
        }
    }

    #[test]
    fn caches_and_forgets() {
        let c = TokenCache::default();
        assert!(c.get(&[1; 32]).is_none());
        c.put([1; 32], conn("a"));
        assert_eq!(c.get(&[1; 32]).unwrap().id, "a");
        c.forget_connection("a");
        assert!(c.get(&[1; 32]).is_none());
    }
}
