//! The daemon's Prometheus metrics (served on `metrics_listen`, see docs/reference/metrics.md).
//!
//! One process-wide set: counters are bumped where the thing happens (the gateway, the
//! root supervisor, the guest listener, the store), gauges that mirror the database are set
//! from it just before each scrape (`Snapshot`). Names follow the seed where it had one
//! (`agentlab_sandboxes_total{state}`, `agentlab_jobs_total{status}`,
//! `agentlab_sandboxes_created_total`, `agentlab_sandboxes_destroyed_total`,
//! `agentlab_jobs_duration_seconds`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationErrorLabel {
    pub operation: String,
    /// The error class (`not_found`, `lock`, `timeout`, …; `agentlab_proxmox::ErrorClass`).
    pub class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

type HistogramMaker = fn() -> Histogram;

/// Proxmox calls take from milliseconds (reads) to minutes (clones of big disks).
fn proxmox_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.5, 12))
}

pub struct Metrics {
    registry: Registry,
    sandboxes: Family<StateLabel, Gauge>,
    jobs: Family<StatusLabel, Gauge>,
    artifact_disk_bytes: Gauge,
    free_bytes: Family<PathLabel, Gauge>,
    pub sandboxes_created: Counter,
    pub sandboxes_destroyed: Counter,
    pub job_duration: Histogram,
    pub proxmox_duration: Family<OperationLabel, Histogram, HistogramMaker>,
    pub proxmox_errors: Family<OperationErrorLabel, Counter>,
    pub gateway_queue_depth: Gauge,
    pub actor_restarts: Family<KindLabel, Counter>,
    pub bootstrap_fetches: Family<OutcomeLabel, Counter>,
    pub guest_refusals: Family<ReasonLabel, Counter>,
    pub artifact_uploaded_bytes: Counter,
    pub artifacts_expired: Counter,
    pub artifact_expired_bytes: Counter,
    pub pool_claims: Counter,
}

/// What the database and the disks say at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub sandboxes_by_state: BTreeMap<String, u64>,
    pub jobs_by_status: BTreeMap<String, u64>,
    pub artifact_disk_bytes: u64,
    /// Free bytes of each directory the daemon writes to (`data_dir`, `artifact_dir`).
    pub free_bytes: Vec<(String, u64)>,
}

impl Metrics {
    fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("agentlab"),
            sandboxes: Family::default(),
            jobs: Family::default(),
            artifact_disk_bytes: Gauge::default(),
            free_bytes: Family::default(),
            sandboxes_created: Counter::default(),
            sandboxes_destroyed: Counter::default(),
            // A job runs from seconds (a failing clone) to days (a long lease).
            job_duration: Histogram::new(exponential_buckets(1.0, 3.0, 14)),
            proxmox_duration: Family::new_with_constructor(proxmox_latency),
            proxmox_errors: Family::default(),
            gateway_queue_depth: Gauge::default(),
            actor_restarts: Family::default(),
            bootstrap_fetches: Family::default(),
            guest_refusals: Family::default(),
            artifact_uploaded_bytes: Counter::default(),
            artifacts_expired: Counter::default(),
            artifact_expired_bytes: Counter::default(),
            pool_claims: Counter::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        // `*_total` gauges: the seed's names, kept for the dashboards built on them.
        r.register("sandboxes_total", "Sandboxes by state, from the database", self.sandboxes.clone());
        r.register("jobs_total", "Jobs by status, from the database", self.jobs.clone());
        r.register("sandboxes_created", "Sandboxes created since the daemon started", self.sandboxes_created.clone());
        r.register(
            "sandboxes_destroyed",
            "Sandboxes that reached DESTROYED since the daemon started",
            self.sandboxes_destroyed.clone(),
        );
        r.register_with_unit(
            "jobs_duration",
            "Wall time of jobs that ended, from creation to their final status",
            Unit::Seconds,
            self.job_duration.clone(),
        );
        r.register_with_unit(
            "proxmox_request_duration",
            "Proxmox operations by name: time from admission to the answer, retries included",
            Unit::Seconds,
            self.proxmox_duration.clone(),
        );
        r.register(
            "proxmox_request_errors",
            "Proxmox operations that failed for good, by name and error class",
            self.proxmox_errors.clone(),
        );
        r.register(
            "gateway_queue_depth",
            "Proxmox operations waiting for their turn (per-VM order, task and clone slots)",
            self.gateway_queue_depth.clone(),
        );
        r.register("actor_restarts", "Actor restarts after a failure, by kind", self.actor_restarts.clone());
        r.register(
            "bootstrap_fetches",
            "Guest bootstrap fetches by outcome (ok, refused, rate_limited, …)",
            self.bootstrap_fetches.clone(),
        );
        r.register(
            "guest_refusals",
            "Guest listener requests refused before any handler ran, by reason",
            self.guest_refusals.clone(),
        );
        r.register_with_unit(
            "artifact_uploaded",
            "Artifact bytes stored from guest uploads",
            Unit::Bytes,
            self.artifact_uploaded_bytes.clone(),
        );
        r.register_with_unit(
            "artifact_disk",
            "Bytes of the artifacts on disk, from the database",
            Unit::Bytes,
            self.artifact_disk_bytes.clone(),
        );
        r.register("artifacts_expired", "Artifacts deleted by the retention sweep", self.artifacts_expired.clone());
        r.register_with_unit(
            "artifact_expired",
            "Artifact bytes deleted by the retention sweep",
            Unit::Bytes,
            self.artifact_expired_bytes.clone(),
        );
        r.register("pool_claims", "Sandboxes handed out from the warm pool", self.pool_claims.clone());
        r.register_with_unit(
            "free",
            "Free bytes of the file systems the daemon writes to, by directory",
            Unit::Bytes,
            self.free_bytes.clone(),
        );
        self
    }

    /// One Proxmox operation, as the gateway saw it: `outcome` is `ok` or an error class.
    pub fn proxmox_call(&self, operation: &str, outcome: &str, elapsed: Duration) {
        let op = OperationLabel { operation: operation.to_string() };
        self.proxmox_duration.get_or_create(&op).observe(elapsed.as_secs_f64());
        if outcome != "ok" {
            let label = OperationErrorLabel { operation: operation.to_string(), class: outcome.to_string() };
            self.proxmox_errors.get_or_create(&label).inc();
        }
    }

    pub fn actor_restarted(&self, kind: &str) {
        self.actor_restarts.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }

    pub fn bootstrap_fetch(&self, outcome: &str) {
        self.bootstrap_fetches.get_or_create(&OutcomeLabel { outcome: outcome.to_string() }).inc();
    }

    pub fn guest_refused(&self, reason: &str) {
        self.guest_refusals.get_or_create(&ReasonLabel { reason: reason.to_string() }).inc();
    }

    /// The OpenMetrics text of every metric, after setting the gauges from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
        set_family(&self.sandboxes, &snapshot.sandboxes_by_state, |state| StateLabel { state });
        set_family(&self.jobs, &snapshot.jobs_by_status, |status| StatusLabel { status });
        self.artifact_disk_bytes.set(saturating_i64(snapshot.artifact_disk_bytes));
        self.free_bytes.clear();
        for (path, free) in &snapshot.free_bytes {
            self.free_bytes.get_or_create(&PathLabel { path: path.clone() }).set(saturating_i64(*free));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Replaces a gauge family's series with `values` (a state no row has any more goes away).
fn set_family<L>(family: &Family<L, Gauge>, values: &BTreeMap<String, u64>, label: impl Fn(String) -> L)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    family.clear();
    for (key, count) in values {
        family.get_or_create(&label(key.clone())).set(saturating_i64(*count));
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts a waiting operation on `gauge` while it lives (cancelled futures included).
pub struct Queued(Gauge);

impl Queued {
    pub fn enter(gauge: &Gauge) -> Queued {
        gauge.inc();
        Queued(gauge.clone())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_seed_names_and_the_gauges_follow_the_snapshot() {
        let m = Metrics::new();
        m.proxmox_call("clone", "ok", Duration::from_millis(40));
        m.proxmox_call("clone", "lock", Duration::from_secs(3));
        m.sandboxes_created.inc();
        let mut snapshot = Snapshot::default();
        snapshot.sandboxes_by_state.insert("READY".into(), 2);
        snapshot.jobs_by_status.insert("COMPLETED".into(), 5);
        let text = m.render(&snapshot).unwrap();
        assert!(text.contains("agentlab_sandboxes_total{state=\"READY\"} 2"), "{text}");
        assert!(text.contains("agentlab_jobs_total{status=\"COMPLETED\"} 5"), "{text}");
        assert!(text.contains("agentlab_sandboxes_created_total 1"), "{text}");
        assert!(text.contains("agentlab_proxmox_request_duration_seconds_count{operation=\"clone\"} 2"), "{text}");
        assert!(text.contains("agentlab_proxmox_request_errors_total{operation=\"clone\",class=\"lock\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");

        snapshot.sandboxes_by_state.clear();
        snapshot.sandboxes_by_state.insert("DESTROYED".into(), 2);
        let text = m.render(&snapshot).unwrap();
        assert!(!text.contains("state=\"READY\""), "a state with no sandbox left disappears: {text}");
    }

    #[test]
    fn a_queued_operation_counts_until_dropped() {
        let m = Metrics::new();
        let queued = Queued::enter(&m.gateway_queue_depth);
        assert_eq!(m.gateway_queue_depth.get(), 1);
        drop(queued);
        assert_eq!(m.gateway_queue_depth.get(), 0);
    }
}
