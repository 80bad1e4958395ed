//! How long simulated operations take: a base duration per operation (assumptions from
//! `proxmox/contract/behaviors.md` §7, not measurements) times one global factor, so tests run the
//! real timeouts scaled down together.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    pub factor: f64,
    /// Seconds per operation before scaling.
    pub base: BTreeMap<String, f64>,
}

const DEFAULTS: &[(&str, f64)] = &[
    ("api", 0.005),
    ("clone_linked", 1.5),
    ("clone_full", 5.0),
    ("config", 0.2),
    ("start", 1.5),
    ("stop", 0.5),
    ("shutdown", 3.0),
    ("suspend", 0.5),
    ("resume", 0.5),
    ("snapshot", 1.0),
    ("rollback", 1.0),
    ("delsnapshot", 1.0),
    ("destroy", 1.5),
    ("resize", 0.5),
    ("move_disk", 1.0),
    ("template", 1.0),
    ("imgdel", 0.3),
    ("agent_ready", 20.0),
    // Proxmox's own lock waits, scaled with everything else.
    ("storage_lock_timeout", 10.0),
    ("config_lock_timeout", 10.0),
    ("clone_flock_timeout", 1.0),
    ("auth_failure_delay", 3.0),
    ("resources_lag", 10.0),
];

impl LatencyModel {
    pub fn scaled(factor: f64) -> LatencyModel {
        LatencyModel { factor, base: DEFAULTS.iter().map(|(k, v)| (k.to_string(), *v)).collect() }
    }

    /// The scaled duration of `op` (unknown operations take no time).
    pub fn of(&self, op: &str) -> Duration {
        let seconds = self.base.get(op).copied().unwrap_or(0.0) * self.factor;
        Duration::from_secs_f64(seconds.max(0.0))
    }

    /// `op=seconds` overrides from the command line.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (op, secs) = spec.split_once('=').ok_or_else(|| format!("`{spec}` is not OP=SECONDS"))?;
        if !self.base.contains_key(op) {
            let known: Vec<&str> = self.base.keys().map(String::as_str).collect();
            return Err(format!("unknown operation `{op}`; known: {}", known.join(", ")));
        }
        let secs: f64 = secs.parse().map_err(|_| format!("`{secs}` is not a number of seconds"))?;
        self.base.insert(op.to_string(), secs);
        Ok(())
    }
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel::scaled(1.0)
    }
}
