//! `agentlabd --config PATH`: read → check permissions → parse strictly → resolve
//! defaults and derived paths → validate, into one `Config` the rest of the daemon trusts.
//! Every error names the file, and where it can, the line and the key.

mod raw;
mod resolve;
#[cfg(test)]
mod tests;

use agentlab_actors::model::suggest;
use agentlab_proxmox::api::TlsTrust;
use ipnet::IpNet;
use raw::{KEYS, RawConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/agentlab/config.yaml";

/// `host_ruleset`: `managed` (the default) loads and re-loads the table as sandboxes come
/// and go; `off` leaves nftables alone (the Proxmox firewall must then be on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRuleset {
    Managed,
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub profiles_dir: PathBuf,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub socket_path: PathBuf,
    pub db_path: PathBuf,
    pub artifact_dir: PathBuf,
    /// Unset: the directory of `snippet_storage` as Proxmox defines it (`GET /storage/{id}`).
    pub snippets_dir: Option<PathBuf>,
    /// This host's Proxmox node name; unset: its short hostname (what Proxmox uses).
    pub host_node: Option<String>,
    pub snippet_storage: String,
    /// Where workspace volumes go when `workspace create` names no storage.
    pub workspace_storage: String,
    pub bootstrap_listen: SocketAddr,
    pub artifact_listen: SocketAddr,
    pub controller_url: String,
    pub artifact_upload_url: String,
    pub agent_subnet: IpNet,
    pub metrics_listen: Option<SocketAddr>,
    pub secrets_dir: PathBuf,
    pub secrets_bundle: String,
    pub secrets_age_key_path: PathBuf,
    pub ssh_public_key_path: Option<PathBuf>,
    /// The daemon's own SSH key pair (`.pub` beside it), created at first start: its public
    /// key goes into every sandbox for `agentlab ssh`.
    pub ssh_key_path: PathBuf,
    pub proxmox: ProxmoxConfig,
    pub provisioning_timeout: Duration,
    /// How long a booted VM's guest agent may stay silent before provisioning fails.
    pub guest_agent_timeout: Duration,
    pub artifact_max_bytes: u64,
    /// How long a job's artifact token stays valid.
    pub artifact_token_ttl: Duration,
    /// The longest TTL a sandbox or job may be given (or renewed to), in minutes.
    pub max_ttl_minutes: u32,
    /// Per-source limits on the guest listener (0 qps disables one).
    pub bootstrap_rate_limit: RateLimit,
    pub artifact_rate_limit: RateLimit,
    /// Runner reports, per source address and per job.
    pub report_rate_limit: RateLimit,
    /// Log bytes stored per job; beyond, the log is cut with a marker and the job runs on.
    pub job_log_max_bytes: u64,
    /// The most one job may store in artifacts (a profile's `artifacts.max_total_bytes` may
    /// ask for less).
    pub artifact_max_total_bytes: u64,
    /// How often the retention sweep deletes expired artifacts and dead token rows.
    pub artifact_retention_interval: Duration,
    /// The most all artifacts together may take before the oldest ended jobs' go.
    pub artifact_retention_max_total_bytes: Option<u64>,
    /// Below this much free space on `data_dir` or `artifact_dir`, guest writes are refused
    /// (507) so the host's disk and the daemon's database keep room.
    pub min_free_bytes: u64,
    pub idle_stop: IdleStopConfig,
    /// The bridge sandboxes sit on, and the interface NAT'd traffic leaves by.
    pub agent_bridge: agentlab_netfilter::host::IfName,
    pub uplink_interface: agentlab_netfilter::host::IfName,
    /// Whether the daemon keeps its nftables table in step with the sandboxes.
    pub host_ruleset: HostRuleset,
    /// Where allowlist domain entries are resolved.
    pub allowlist_dns_server: SocketAddr,
    /// Interfaces new SSH connections to sandboxes may come in on (e.g. `tailscale0`).
    pub ssh_ingress_interfaces: Vec<agentlab_netfilter::host::IfName>,
    /// The `tailscale` binary exposures are published with.
    pub tailscale_command: String,
    /// Host (tailnet) ports handed to exposures, one each.
    pub exposure_port_min: u16,
    pub exposure_port_max: u16,
    /// How often each exposure checks its serve rule is still there.
    pub exposure_health_interval: Duration,
    pub vmid_min: u32,
    pub vmid_max: u32,
    pub sandbox_probe_interval: Duration,
    /// How long an orphan VM is kept before `reconcile --apply` destroys it.
    pub orphan_grace_period: Duration,
    /// Tests and demos only: multiplies lease lengths and the probe interval (1 in production).
    pub test_time_scale: f64,
    /// The warm pool: every profile's `pool.size` together is capped at `max_total`.
    pub pool: PoolConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub max_total: u32,
    /// Pooled sandboxes provisioning at once (user requests keep the other clone slots).
    pub refill_concurrency: u32,
    /// How often the pool looks again without a claim or a reload to wake it.
    pub check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxmoxConfig {
    pub backend: ProxmoxBackend,
    /// The node sandboxes are cloned on when their profile names none; unset: the node that
    /// holds the template (the rule is on `Profile::node`).
    pub node: Option<String>,
    pub command_timeout: Duration,
    /// Requests per second the gateway sends at most.
    pub rate_limit_rps: u32,
    pub max_concurrent_tasks: u32,
    /// Concurrent clones per storage (Proxmox serialises them on a 10 s storage lock).
    pub clone_concurrency: u32,
}

impl ProxmoxConfig {
    pub fn gateway_limits(&self) -> agentlab_actors::pve::GatewayLimits {
        agentlab_actors::pve::GatewayLimits {
            max_concurrent_tasks: self.max_concurrent_tasks as usize,
            clone_concurrency: self.clone_concurrency as usize,
            retry: agentlab_actors::pve::RetryPolicy { deadline: self.command_timeout, ..Default::default() },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProxmoxBackend {
    Api { url: String, token: String, trust: TlsTrust },
    Shell,
}

/// A per-source token bucket: `qps` refill, `burst` capacity; `qps == 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub qps: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdleStopConfig {
    pub enabled: bool,
    pub interval: Duration,
    pub minutes_default: u32,
    pub cpu_threshold: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}; pass --config PATH or create it", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config {} is {what} (mode {mode:o}) and holds the Proxmox API token: run `chmod 600 {}` (or 640 with group agentlab)",
        path.display(), path.display()
    )]
    Permissions { path: PathBuf, mode: u32, what: &'static str },
    #[error("config {}: not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("config {}: must be a mapping of `key: value` lines", path.display())]
    NotMapping { path: PathBuf },
    #[error("config {}{}: unknown key `{key}`{}", path.display(), line_label(*line), nearest_label(nearest))]
    UnknownKey { path: PathBuf, line: Option<usize>, key: String, nearest: Option<String> },
    #[error("config {}{}: `{key}`: {message}", path.display(), line_label(*line))]
    Invalid { path: PathBuf, line: Option<usize>, key: String, message: String },
}

fn line_label(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

fn nearest_label(nearest: &Option<String>) -> String {
    match nearest {
        Some(n) => format!("; did you mean `{n}`?"),
        None => "; see docs/reference/configuration.md for the valid keys".to_string(),
    }
}

/// The 1-based line where top-level `key` is set, for error messages.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':'))
                || l.strip_prefix(&format!("\"{key}\"")).is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

impl Config {
    /// How long a lease of `minutes` lasts (shortened by `test_time_scale` in tests).
    pub fn lease_length(&self, minutes: u32) -> Duration {
        Duration::from_secs(u64::from(minutes) * 60).mul_f64(self.test_time_scale)
    }

    /// Reads, checks and validates the config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let metadata = std::fs::metadata(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        check_permissions(path, &metadata)?;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text (`path` is only used in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml {
                path: path.into(),
                message: e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "),
            })?
        };
        let value = if value.is_null() { serde_json::Value::Object(Default::default()) } else { value };
        let Some(map) = value.as_object() else {
            return Err(ConfigError::NotMapping { path: path.into() });
        };
        for key in map.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(ConfigError::UnknownKey {
                    path: path.into(),
                    line: line_of(text, key),
                    key: key.clone(),
                    nearest: suggest::nearest(key, KEYS.iter().copied()).map(str::to_string),
                });
            }
        }
        let raw: RawConfig = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid { path: path.into(), line: line_of(text, &key), key, message: e.inner().to_string() }
        })?;
        resolve::Resolver { path, text }.resolve(raw)
    }
}

fn check_permissions(path: &Path, metadata: &std::fs::Metadata) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    let what = if mode & 0o004 != 0 {
        Some("readable by every user")
    } else if mode & 0o022 != 0 {
        Some("writable by others than its owner")
    } else {
        None
    };
    match what {
        Some(what) => Err(ConfigError::Permissions { path: path.into(), mode, what }),
        None => Ok(()),
    }
}
