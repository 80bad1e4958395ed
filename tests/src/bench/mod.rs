//! `agentlab-bench`: the control plane measured against the simulator's own time. Each
//! scenario starts `pve-sim` with a realistic latency model (one factor scales it all) and
//! a real `agentlabd`, and returns one JSON object: its figures, the ideal the simulator's
//! model implies, and the target from issue 16 next to each figure (reported, not asserted).

#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a benchmark measures real processes on the wall clock: std's Instant and sleep are the point"
)]

pub mod artifacts;
pub mod pool;
pub mod sandboxes;
pub mod scale;

use crate::{Daemon, SimProcess, Workspace};
use std::time::{Duration, Instant};

/// Seconds per operation before scaling: clone 2 s, start 2 s, guest agent 15 s, destroy
/// 2 s, storage lock 10 s (a Proxmox host with local LVM-thin, from issue 16).
pub const MODEL: &[(&str, f64)] =
    &[("clone_linked", 2.0), ("start", 2.0), ("agent_ready", 15.0), ("destroy", 2.0), ("storage_lock_timeout", 10.0)];

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// `--quick`: small counts (CI).
    pub quick: bool,
    /// The latency factor applied to `MODEL` and the simulator's other operations.
    pub factor: f64,
}

impl Run {
    /// `full` in a full run, `quick` with `--quick`.
    pub fn count(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }

    /// The scaled base of one operation of the simulator's model, in seconds.
    pub fn model(&self, op: &str) -> f64 {
        let base = MODEL.iter().find(|(o, _)| *o == op).map(|(_, s)| *s).unwrap_or_else(|| sim_default(op));
        base * self.factor
    }
}

/// The simulator's own defaults for the operations `MODEL` does not set
/// (`proxmox/sim/src/latency.rs`).
fn sim_default(op: &str) -> f64 {
    match op {
        "api" => 0.005,
        "config" => 0.2,
        "resize" => 0.5,
        "snapshot" => 1.0,
        _ => 0.0,
    }
}

/// A simulator and a daemon for one scenario (torn down on drop).
pub struct Rig {
    pub ws: Workspace,
    pub sim: SimProcess,
    pub daemon: Option<Daemon>,
}

/// A profile for the benchmark's sandboxes: the simulator's template, nothing to resize.
pub const PROFILE: &str = "name: bench\ntemplate_vmid: 9000\nresources:\n  cores: 1\n  memory_mb: 512\n\
                           behavior:\n  ttl_minutes_default: 600\n";

impl Rig {
    /// `pve-sim` with `MODEL` × the run's factor, and a daemon under production timings
    /// (`test_time_scale` 1, 20 Proxmox requests/s) plus `extra_config`; `profiles` are added to the shipped ones.
    pub fn start(run: Run, extra_config: &str, profiles: &str) -> Rig {
        let ws = Workspace::new();
        let local = ws.path().join("pve-local").display().to_string();
        let mut args: Vec<String> = vec!["--datacenter-firewall".into(), "--local-storage-path".into(), local];
        for (op, secs) in MODEL {
            args.extend(["--latency".into(), format!("{op}={secs}")]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let sim = SimProcess::start_scaled(ws.path(), run.factor, &refs);
        std::fs::write(ws.path().join("profiles/bench.yaml"), format!("{PROFILE}---\n{profiles}")).unwrap();
        let config = format!(
            "test_time_scale: 1\nprovisioning_timeout: 10m\nsandbox_probe_interval: 30s\nidle_stop_enabled: false\n\
             proxmox_rate_limit_rps: 20\n{extra_config}"
        );
        ws.write_sandbox_config(&sim, &config);
        let daemon = Some(ws.spawn_daemon(&[("AGENTLAB_LOG", "info")]));
        let rig = Rig { ws, sim, daemon };
        rig.wait_socket();
        rig
    }

    pub fn wait_socket(&self) {
        let up = crate::eventually(Duration::from_secs(120), || {
            std::os::unix::net::UnixStream::connect(self.ws.socket()).is_ok()
        });
        assert!(up, "agentlabd did not come up:\n{}", self.daemon.as_ref().map(Daemon::log).unwrap_or_default());
    }

    pub fn daemon_pid(&self) -> i32 {
        self.daemon.as_ref().map_or(0, Daemon::pid)
    }

    /// How many requests the simulator has logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.sim.admin_get("/admin/requests").as_array().cloned().unwrap_or_default()
    }
}

/// Runs `f` and returns its result and how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// The median and 95th percentile of `xs` (sorted in place).
pub fn median_p95(xs: &mut [f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| xs[((xs.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95))
}

/// A process's resident set and its peak, in MiB (`/proc/<pid>/status`).
pub fn rss_mib(pid: i32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Rounds for the printed figures.
pub fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// A figure against its target, for the JSON.
pub fn against(value: f64, target: &str, met: bool) -> serde_json::Value {
    serde_json::json!({"value": value, "target": target, "met": met})
}
