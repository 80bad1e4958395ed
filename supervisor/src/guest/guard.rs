//! What every guest request passes before a handler sees it: the source must be inside the
//! agent subnet, and each source address gets a token bucket per route family.

use crate::config::RateLimit;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Buckets idle this long are forgotten (a finished sandbox's address is reused later).
const IDLE_EVICTION: Duration = Duration::from_secs(600);

pub fn source_allowed(subnet: &IpNet, ip: IpAddr) -> bool {
    // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    subnet.contains(&ip)
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-source token buckets; `qps == 0` lets everything through.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `ip`; false when the source is over its limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit.qps <= 0.0 {
            return true;
        }
        let mut buckets = agentlab_actors::sync::lock(&self.buckets);
        buckets.retain(|_, b| now.duration_since(b.last) < IDLE_EVICTION);
        let burst = f64::from(self.limit.burst);
        let bucket = buckets.entry(ip).or_insert(Bucket { tokens: burst, last: now });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.limit.qps;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agent_subnet_may_call() {
        let subnet: IpNet = "10.77.0.0/16".parse().unwrap();
        assert!(source_allowed(&subnet, "10.77.1.5".parse().unwrap()));
        assert!(source_allowed(&subnet, "::ffff:10.77.1.5".parse().unwrap()));
        assert!(!source_allowed(&subnet, "192.168.1.5".parse().unwrap()));
    }

    #[test]
    fn buckets_refill_per_source_and_zero_disables() {
        let limiter = RateLimiter::new(RateLimit { qps: 1.0, burst: 3 });
        let (a, b): (IpAddr, IpAddr) =
            ("10.77.0.2".parse().unwrap_or(IpAddr::from([0; 4])), IpAddr::from([10, 77, 0, 3]));
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow_at(a, t0)));
        assert!(!limiter.allow_at(a, t0), "burst spent");
        assert!(limiter.allow_at(b, t0), "another source has its own bucket");
        assert!(limiter.allow_at(a, t0 + Duration::from_millis(1100)), "refilled");
        let open = RateLimiter::new(RateLimit { qps: 0.0, burst: 1 });
        assert!((0..100).all(|_| open.allow_at(a, t0)));
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(axum::http::header::AUTHORIZATION, axum::http::HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(axum::http::header::AUTHORIZATION, axum::http::HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
