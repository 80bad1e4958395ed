//! Counts and latency histograms of Proxmox operations by outcome, for `status` and the
//! metrics endpoint.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in milliseconds.
pub const BUCKETS_MS: [u64; 10] = [10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpStat {
    pub count: u64,
    pub total_ms: u64,
    /// Cumulative counts per bucket of `BUCKETS_MS`, then +Inf.
    pub buckets: Vec<u64>,
    /// Attempts beyond the first (retries).
    pub retries: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<(String, String), OpStat>>,
}

impl Stats {
    pub fn record(&self, op: &str, outcome: &str, elapsed: Duration, attempts: u32) {
        let ms = elapsed.as_millis() as u64;
        let mut ops = crate::sync::lock(&self.ops);
        let stat = ops
            .entry((op.to_string(), outcome.to_string()))
            .or_insert_with(|| OpStat { buckets: vec![0; BUCKETS_MS.len() + 1], ..OpStat::default() });
        stat.count += 1;
        stat.total_ms += ms;
        stat.retries += u64::from(attempts.saturating_sub(1));
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            if ms <= *bound {
                stat.buckets[i] += 1;
            }
        }
        if let Some(inf) = stat.buckets.last_mut() {
            *inf += 1;
        }
    }

    /// `(operation, outcome) → stat`.
    pub fn snapshot(&self) -> BTreeMap<(String, String), OpStat> {
        crate::sync::lock(&self.ops).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let stats = Stats::default();
        stats.record("clone", "ok", Duration::from_millis(75), 1);
        stats.record("clone", "ok", Duration::from_millis(700), 3);
        let snap = stats.snapshot();
        let s = &snap[&("clone".to_string(), "ok".to_string())];
        assert_eq!((s.count, s.retries), (2, 2));
        assert_eq!(s.buckets[1], 0);
        assert_eq!(s.buckets[2], 1, "75 ms is within 100 ms");
        assert_eq!(s.buckets[5], 2, "both within 1 s");
        assert_eq!(*s.buckets.last().unwrap_or(&0), 2);
    }
}
