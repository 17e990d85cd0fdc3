//! Per-connection rate limiting (on by default: [`DEFAULT_PER_SECOND`], bursts of
//! [`DEFAULT_BURST`]): a request over the limit gets 429 with `Retry-After` and a SCIM error body,
//! which Entra ID and Okta honour by backing off. Checked by [`crate::limits::fair_share`].
//!
//! The default rate is four times what Microsoft documents for an Entra ID provisioning job (about
//! 25 requests per second), so that an identity provider's normal traffic stays well under it while
//! a runaway client or a loop is held to a few times that.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Requests per second allowed to one SCIM connection by default.
pub const DEFAULT_PER_SECOND: u32 = 100;
/// Burst allowed by default: two seconds' worth.
pub const DEFAULT_BURST: u32 = 2 * DEFAULT_PER_SECOND;

/// A keyed limiter: one token bucket per SCIM connection.
#[derive(Clone)]
pub struct ConnectionRateLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    per_second: NonZeroU32,
    burst: NonZeroU32,
}

impl ConnectionRateLimiter {
    /// `per_second` sustained requests with bursts of `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let limiter = Arc::new(DefaultKeyedRateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        // Forget idle connections now and then so the map does not grow without bound.
        let weak = Arc::downgrade(&limiter);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    match weak.upgrade() {
                        Some(l) => l.retain_recent(),
                        None => break,
                    }
                }
            });
        }
        ConnectionRateLimiter {
            limiter,
            per_second,
            burst,
        }
    }

    /// The rate (requests per second) and burst.
    pub fn quota(&self) -> (NonZeroU32, NonZeroU32) {
        (self.per_second, self.burst)
    }

    /// `Ok(())` when the request may go ahead, else how long to wait.
    pub fn check(&self, connection_id: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&connection_id.to_string())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_each_connection_separately() {
        let l = ConnectionRateLimiter::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(2).unwrap());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(l.check("b").is_ok(), "another connection has its own bucket");
    }
}
