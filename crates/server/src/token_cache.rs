//! A short-lived cache of authenticated connections, keyed by token hash, so that each SCIM request
//! does not pay a database round trip to check its bearer token.
//!
//! Entries live for [`TOKEN_CACHE_TTL`]: a rotated, revoked or deleted token, or a disabled
//! connection, stops working on every node within that time; immediately on the node that made the
//! change, which drops the connection's entries, and on PostgreSQL on every node, which hear of the
//! change (`rollcall_store::postgres::notify`) and drop them too. Only successful lookups are cached, so random
//! tokens cannot fill it; its size is bounded.
//!
//! Beside it, [`ActivityThrottle`] decides when a node records a connection's last request, so that
//! recording it is not a database write per request.

use rollcall_store::Connection;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a verified token is trusted without asking the database again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
const MAX_ENTRIES: usize = 10_000;

/// A verified connection and when it was read from the store.
type CachedConnection = (Arc<Connection>, Instant);

#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<[u8; 32], CachedConnection>>,
    /// Counts the forgets: a lookup that started before one may have read what it forgot, and is
    /// not cached ([`TokenCache::put_unless_forgotten`]).
    forgets: AtomicU64,
}

impl TokenCache {
    /// The cached connection for a token hash, if fresh.
    /// Shared, not copied: a connection holds its policy and a dozen strings, and this runs on
    /// every SCIM request.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<Connection>> {
        let map = self.entries.read().ok()?;
        let (c, at) = map.get(hash)?;
        (at.elapsed() < TOKEN_CACHE_TTL).then(|| c.clone())
    }

    /// The forget count to give [`TokenCache::put_unless_forgotten`], taken before a lookup.
    pub fn generation(&self) -> u64 {
        self.forgets.load(Ordering::Acquire)
    }

    /// Caches what a lookup that started at `generation` read, unless something was forgotten
    /// meanwhile (the lookup may have read a connection as it was before the change).
    pub fn put_unless_forgotten(&self, hash: [u8; 32], connection: Arc<Connection>, generation: u64) {
        if let Ok(mut map) = self.entries.write()
            && self.forgets.load(Ordering::Acquire) == generation
        {
            Self::insert(&mut map, hash, connection);
        }
    }

    pub fn put(&self, hash: [u8; 32], connection: Arc<Connection>) {
        if let Ok(mut map) = self.entries.write() {
            Self::insert(&mut map, hash, connection);
        }
    }

    fn insert(map: &mut HashMap<[u8; 32], CachedConnection>, hash: [u8; 32], connection: Arc<Connection>) {
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(hash, (connection, Instant::now()));
    }

    /// Forgets every entry of a connection (after its token is rotated or it is deleted).
    pub fn forget_connection(&self, connection_id: &str) {
        if let Ok(mut map) = self.entries.write() {
            self.forgets.fetch_add(1, Ordering::AcqRel);
            map.retain(|_, (c, _)| c.id != connection_id);
        }
    }

    /// Forgets everything (when changes may have been missed).
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.write() {
            self.forgets.fetch_add(1, Ordering::AcqRel);
            map.clear();
        }
    }
}

/// How often a node records each connection's last request, at most.
pub const ACTIVITY_INTERVAL: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 100_000;

/// When this node last recorded each connection's activity.
#[derive(Default)]
pub struct ActivityThrottle {
    last: std::sync::Mutex<HashMap<String, Instant>>,
}

impl ActivityThrottle {
    /// Whether a request on `connection_id` now should be recorded: true for the first one, then at
    /// most once per [`ACTIVITY_INTERVAL`]. Answering true counts as recording.
    pub fn due(&self, connection_id: &str) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.last.lock() else {
            return false;
        };
        if let Some(at) = map.get(connection_id)
            && now.duration_since(*at) < ACTIVITY_INTERVAL
        {
            return false;
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, at| now.duration_since(*at) < ACTIVITY_INTERVAL);
        }
        map.insert(connection_id.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcall_store::{ConnectionStatus, IdpKind};

    fn conn(id: &str) -> Connection {
        Connection {
            id: id.into(),
            org_id: "o".into(),
            name: "n".into(),
            idp: IdpKind::Generic,
            kind: Default::default(),
            status: ConnectionStatus::Active,
            token_prefix: Some("rc_scim_abcd".into()),
            token_hash: Some([1; 32]),
            next_token_prefix: None,
            next_token_hash: None,
            rotation_started_us: None,
            created_us: 0,
            last_request_us: None,
            last_user_agent: None,
            detected_idp: None,
            detected_idp_first_seen_us: None,
            detected_idp_last_seen_us: None,
            policy: Default::default(),
            debug_logging: false,
            staged_us: None,
        }
    }

    #[test]
    fn activity_is_recorded_once_per_interval() {
        let t = ActivityThrottle::default();
        assert!(t.due("a"));
        assert!(!t.due("a"));
        assert!(t.due("b"));
        assert!(!t.due("b"));
    }

    #[test]
    fn caches_and_forgets() {
        let c = TokenCache::default();
        assert!(c.get(&[1; 32]).is_none());
        c.put([1; 32], Arc::new(conn("a")));
        assert_eq!(c.get(&[1; 32]).unwrap().id, "a");
        c.forget_connection("a");
        assert!(c.get(&[1; 32]).is_none());
        // A lookup that started before a forget is not cached; one that started after is.
        let before = c.generation();
        c.forget_connection("b");
        c.put_unless_forgotten([1; 32], Arc::new(conn("a")), before);
        assert!(c.get(&[1; 32]).is_none());
        c.put_unless_forgotten([1; 32], Arc::new(conn("a")), c.generation());
        assert!(c.get(&[1; 32]).is_some());
        c.clear();
        assert!(c.get(&[1; 32]).is_none());
    }
}
