//! What every guest request passes before a handler sees it: the source must be inside the
//! agent subnet, and each source address (and, for reports, each job) gets a token bucket
//! per route family; guest writes also need free space on the host.

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

/// Token buckets per key (a source address, a job id); `qps == 0` lets everything through.
pub struct RateLimiter<K = IpAddr> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    pub fn new(limit: RateLimit) -> RateLimiter<K> {
        RateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`; false when it is over its limit.
    pub fn allow(&self, key: K) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: K, now: Instant) -> bool {
        if self.limit.qps <= 0.0 {
            return true;
        }
        let mut buckets = agentlab_actors::sync::lock(&self.buckets);
        buckets.retain(|_, b| now.duration_since(b.last) < IDLE_EVICTION);
        let burst = f64::from(self.limit.burst);
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: burst, last: now });
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

/// Bytes available to an unprivileged writer on the filesystem of `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// 507 when `path`'s filesystem has less than `floor` bytes free (security review F1, F3:
/// one guest filled the host's disk through reports and uploads).
pub fn free_space_floor(path: &std::path::Path, floor: u64) -> Result<(), crate::api::ApiError> {
    match free_bytes(path) {
        Some(free) if free < floor => Err(crate::api::ApiError::new(
            agentlab_actors::model::ErrorCode::InsufficientStorage,
            "the host is short of disk space; try again later",
        )),
        _ => Ok(()),
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
