//! Which Proxmox errors are worth retrying, and how long to wait between attempts
//! (exponential back-off with full jitter, until a deadline).

use agentlab_proxmox::{ErrorClass, PveError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Give up retrying once this much time has passed since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            deadline: Duration::from_secs(120),
        }
    }
}

/// Locks, lock timeouts, transient failures and timeouts clear up on their own; a bad
/// parameter, a refused token or a missing VM do not.
pub fn is_retryable(error: &PveError) -> bool {
    matches!(error.class(), ErrorClass::Locked | ErrorClass::LockTimeout | ErrorClass::Transient | ErrorClass::Timeout)
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(cap, base·2^attempt)].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.min(20)).min(self.cap);
        ceiling.mul_f64(random_unit())
    }
}

/// A uniform number in [0, 1) from a process-wide xorshift (seeded from the clock).
fn random_unit() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(88172645463325252)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_conditions_are_retried() {
        assert!(is_retryable(&PveError::LockTimeout("got timeout".into())));
        assert!(is_retryable(&PveError::Locked("VM is locked (clone)".into())));
        assert!(is_retryable(&PveError::Transient("503".into())));
        assert!(is_retryable(&PveError::Timeout(Duration::from_secs(1))));
        assert!(!is_retryable(&PveError::Validation { param: "full".into(), message: "type check".into() }));
        assert!(!is_retryable(&PveError::Auth("no".into())));
        assert!(!is_retryable(&PveError::NotFound("gone".into())));
    }

    #[test]
    fn delays_stay_under_the_growing_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 0..10 {
            let ceiling = policy.base.saturating_mul(1 << attempt).min(policy.cap);
            for _ in 0..50 {
                assert!(policy.delay(attempt) <= ceiling);
            }
        }
    }
}
