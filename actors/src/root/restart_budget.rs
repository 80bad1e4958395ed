//! Restart back-off per actor name, and the limit after which an entity is given up on
//! (5 failures in 10 minutes mark it FAILED).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first restart; doubles with each failure inside the window.
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub window: Duration,
    /// The failure (counted inside `window`) at which the entity is given up on.
    pub max_failures: usize,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            window: Duration::from_secs(600),
            max_failures: 5,
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    RestartAfter(Duration),
    GiveUp { failures: usize },
}

#[derive(Debug, Default)]
pub struct RestartBudget {
    policy: RestartPolicy,
    failures: HashMap<String, VecDeque<Instant>>,
    total_restarts: HashMap<String, u32>,
}

impl RestartBudget {
    pub fn new(policy: RestartPolicy) -> Self {
        RestartBudget { policy, failures: HashMap::new(), total_restarts: HashMap::new() }
    }

    /// Records one failure of `name` at `now` and decides.
    pub fn record_failure(&mut self, name: &str, now: Instant) -> Verdict {
        let window = self.policy.window;
        let recent = self.failures.entry(name.to_string()).or_default();
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.duration_since(*t) > window) {
            recent.pop_front();
        }
        let count = recent.len();
        if count >= self.policy.max_failures {
            self.failures.remove(name);
            return Verdict::GiveUp { failures: count };
        }
        *self.total_restarts.entry(name.to_string()).or_default() += 1;
        let factor = 1u32 << (count - 1).min(16);
        Verdict::RestartAfter(self.policy.base_delay.saturating_mul(factor).min(self.policy.max_delay))
    }

    /// How many times `name` has been restarted since the daemon started.
    pub fn restarts(&self, name: &str) -> u32 {
        self.total_restarts.get(name).copied().unwrap_or(0)
    }

    /// Forgets `name` (its entity ended normally).
    pub fn forget(&mut self, name: &str) {
        self.failures.remove(name);
        self.total_restarts.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_and_gives_up_at_the_fifth_failure_in_the_window() {
        let mut budget = RestartBudget::new(RestartPolicy::default());
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> =
            (0..5).map(|i| budget.record_failure("sandbox:1", t0 + Duration::from_secs(i))).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::RestartAfter(Duration::from_millis(500)),
                Verdict::RestartAfter(Duration::from_secs(1)),
                Verdict::RestartAfter(Duration::from_secs(2)),
                Verdict::RestartAfter(Duration::from_secs(4)),
                Verdict::GiveUp { failures: 5 },
            ]
        );
        assert_eq!(budget.restarts("sandbox:1"), 4);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let mut budget = RestartBudget::new(RestartPolicy::default());
        let t0 = Instant::now();
        for i in 0..4 {
            budget.record_failure("job:a", t0 + Duration::from_secs(i));
        }
        let later = t0 + Duration::from_secs(11 * 60);
        assert_eq!(budget.record_failure("job:a", later), Verdict::RestartAfter(Duration::from_millis(500)));
        // Other names are independent.
        assert_eq!(budget.record_failure("job:b", later), Verdict::RestartAfter(Duration::from_millis(500)));
    }
}
