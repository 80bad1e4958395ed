//! Raw values → checked ones: defaults, derived paths, validation, each error naming the
//! key and its line.

use super::raw::RawConfig;
use super::{Config, ConfigError, HostRuleset, IdleStopConfig, PoolConfig, ProxmoxBackend, ProxmoxConfig, line_of};
use agentlab_proxmox::api::{Fingerprint, TlsTrust, validate_token};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `max_ttl_minutes` unset: a week.
pub const DEFAULT_MAX_TTL_MINUTES: u32 = 7 * 24 * 60;
/// The largest `max_ttl_minutes` accepted: a year keeps every deadline far inside the
/// range of a timestamp.
pub const MAX_TTL_CEILING_MINUTES: u32 = 365 * 24 * 60;

/// Turns raw values into checked ones, naming the key and line on any error.
pub(super) struct Resolver<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Resolver<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.into(),
            line: line_of(self.text, key),
            key: key.into(),
            message: message.into(),
        }
    }

    fn abs_path(&self, key: &str, value: Option<String>, default: PathBuf) -> Result<PathBuf, ConfigError> {
        let path = value.map(PathBuf::from).unwrap_or(default);
        if path.is_absolute() { Ok(path) } else { Err(self.invalid(key, "must be an absolute path")) }
    }

    fn at_least_one(&self, key: &str, value: Option<u32>, default: u32) -> Result<u32, ConfigError> {
        match value.unwrap_or(default) {
            0 => Err(self.invalid(key, "must be at least 1")),
            v => Ok(v),
        }
    }

    fn duration(&self, key: &str, value: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text.trim())
                .map_err(|e| self.invalid(key, format!("`{text}` is not a duration like 30s, 2m or 1h ({e})"))),
        }
    }

    fn socket_addr(&self, key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
        let text = value.unwrap_or_else(|| default.to_string());
        text.parse().map_err(|_| self.invalid(key, format!("`{text}` is not an IP:port address")))
    }

    fn url(&self, key: &str, value: Option<String>, default: String) -> Result<String, ConfigError> {
        let url = value.unwrap_or(default);
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(url),
            _ => Err(self.invalid(key, format!("`{url}` must be an http:// or https:// URL with a host"))),
        }
    }

    pub fn resolve(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let data_dir = self.abs_path("data_dir", raw.data_dir, "/var/lib/agentlab".into())?;
        let run_dir = self.abs_path("run_dir", raw.run_dir, "/run/agentlab".into())?;
        let bootstrap_listen = self.socket_addr("bootstrap_listen", raw.bootstrap_listen, "10.77.0.1:8844")?;
        let artifact_listen = self.socket_addr("artifact_listen", raw.artifact_listen, "10.77.0.1:8846")?;
        let agent_subnet = match raw.agent_subnet {
            Some(text) => text
                .parse::<IpNet>()
                .map_err(|_| self.invalid("agent_subnet", format!("`{text}` is not a CIDR such as 10.77.0.0/16")))?,
            None => derived_subnet(bootstrap_listen.ip()),
        };
        // The guest listener is the one door from untrusted VMs to the host: it must sit on
        // the agent bridge, not on every address, and only the agent subnet may use it
        // (security review F13).
        for (key, addr) in [("bootstrap_listen", bootstrap_listen), ("artifact_listen", artifact_listen)] {
            if addr.ip().is_unspecified() {
                return Err(self.invalid(
                    key,
                    format!(
                        "`{addr}` listens on every address; give the agent bridge's address (e.g. 10.77.0.1:{})",
                        addr.port()
                    ),
                ));
            }
        }
        if agent_subnet.prefix_len() == 0 {
            return Err(self.invalid(
                "agent_subnet",
                format!("`{agent_subnet}` is the whole internet; give the agent bridge's subnet (e.g. 10.77.0.0/16)"),
            ));
        }
        let metrics_listen = match raw.metrics_listen.filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text
                    .parse()
                    .map_err(|_| self.invalid("metrics_listen", format!("`{text}` is not an IP:port address")))?;
                if !addr.ip().is_loopback() {
                    return Err(
                        self.invalid("metrics_listen", "must be a loopback address (metrics are not for the network)")
                    );
                }
                Some(addr)
            }
        };
        let snippet_storage = raw.snippet_storage.unwrap_or_else(|| "local".into());
        if !is_storage_id(&snippet_storage) {
            return Err(self.invalid("snippet_storage", "must be a Proxmox storage id ([A-Za-z0-9._-], at most 64)"));
        }
        let workspace_storage = raw.workspace_storage.unwrap_or_else(|| "local-lvm".into());
        if !is_storage_id(&workspace_storage) {
            return Err(self.invalid("workspace_storage", "must be a Proxmox storage id ([A-Za-z0-9._-], at most 64)"));
        }
        let host_node = raw.host_node.filter(|n| !n.trim().is_empty());
        if let Some(node) = &host_node
            && (node.len() > 63 || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(self.invalid("host_node", "must be a Proxmox node name (letters, digits, `-`)"));
        }
        let secrets_bundle = raw.secrets_bundle.unwrap_or_else(|| "default".into());
        if secrets_bundle.is_empty()
            || !secrets_bundle.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(self.invalid("secrets_bundle", "must be a bundle name of letters, digits, `.`, `_`, `-`"));
        }
        let ssh_public_key_path = match raw.ssh_public_key_path {
            None => None,
            Some(p) => Some(self.abs_path("ssh_public_key_path", Some(p), PathBuf::new())?),
        };
        let ssh_key_path =
            self.abs_path("ssh_key_path", raw.ssh_key_path, data_dir.join("keys/agentlab_id_ed25519"))?;
        let mut proxmox = self.proxmox(
            &raw.proxmox_backend,
            raw.proxmox_api_url,
            raw.proxmox_api_token,
            raw.proxmox_tls_fingerprint,
            raw.proxmox_tls_ca_path,
            raw.proxmox_tls_insecure,
            raw.proxmox_node,
            raw.proxmox_command_timeout,
        )?;
        proxmox.rate_limit_rps = self.at_least_one("proxmox_rate_limit_rps", raw.proxmox_rate_limit_rps, 20)?;
        proxmox.max_concurrent_tasks =
            self.at_least_one("proxmox_max_concurrent_tasks", raw.proxmox_max_concurrent_tasks, 8)?;
        proxmox.clone_concurrency = self.at_least_one("proxmox_clone_concurrency", raw.proxmox_clone_concurrency, 2)?;
        let provisioning_timeout =
            self.duration("provisioning_timeout", raw.provisioning_timeout, Duration::from_secs(600))?;
        if provisioning_timeout.is_zero() {
            return Err(self.invalid("provisioning_timeout", "must be greater than 0"));
        }
        let guest_agent_timeout =
            self.duration("guest_agent_timeout", raw.guest_agent_timeout, Duration::from_secs(180))?;
        if guest_agent_timeout.is_zero() {
            return Err(self.invalid("guest_agent_timeout", "must be greater than 0"));
        }
        let artifact_max_bytes = raw.artifact_max_bytes.unwrap_or(256 * 1024 * 1024);
        if artifact_max_bytes == 0 {
            return Err(self.invalid("artifact_max_bytes", "must be greater than 0"));
        }
        let max_ttl_minutes = raw.max_ttl_minutes.unwrap_or(DEFAULT_MAX_TTL_MINUTES);
        if !(1..=MAX_TTL_CEILING_MINUTES).contains(&max_ttl_minutes) {
            return Err(
                self.invalid("max_ttl_minutes", format!("must be between 1 and {MAX_TTL_CEILING_MINUTES} (a year)"))
            );
        }
        let artifact_token_minutes = raw.artifact_token_ttl_minutes.unwrap_or(1440);
        if artifact_token_minutes == 0 {
            return Err(self.invalid("artifact_token_ttl_minutes", "must be greater than 0"));
        }
        let bootstrap_rate_limit = self.rate_limit(
            "bootstrap_rate_limit_qps",
            raw.bootstrap_rate_limit_qps,
            raw.bootstrap_rate_limit_burst,
            (1.0, 3),
        )?;
        let artifact_rate_limit = self.rate_limit(
            "artifact_rate_limit_qps",
            raw.artifact_rate_limit_qps,
            raw.artifact_rate_limit_burst,
            (5.0, 10),
        )?;
        // A runner reports about once a second while its agent writes (and once per 64 KiB).
        let report_rate_limit = self.rate_limit(
            "report_rate_limit_qps",
            raw.report_rate_limit_qps,
            raw.report_rate_limit_burst,
            (10.0, 40),
        )?;
        let job_log_max_bytes = raw.job_log_max_bytes.unwrap_or(64 * 1024 * 1024);
        if job_log_max_bytes == 0 {
            return Err(self.invalid("job_log_max_bytes", "must be greater than 0"));
        }
        let artifact_max_total_bytes = raw.artifact_max_total_bytes.unwrap_or(1024 * 1024 * 1024);
        if artifact_max_total_bytes < artifact_max_bytes {
            return Err(self.invalid(
                "artifact_max_total_bytes",
                format!("must be at least artifact_max_bytes ({artifact_max_bytes})"),
            ));
        }
        let min_free_bytes = raw.min_free_bytes.unwrap_or(1024 * 1024 * 1024);
        let interface = |key: &str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_string());
            text.parse::<agentlab_netfilter::host::IfName>()
                .map_err(|e| self.invalid(key, format!("{e}; e.g. {default}")))
        };
        let agent_bridge = interface("agent_bridge", raw.agent_bridge, "vmbr1")?;
        let uplink_interface = interface("uplink_interface", raw.uplink_interface, "vmbr0")?;
        let ssh_ingress_interfaces = raw
            .ssh_ingress_interfaces
            .unwrap_or_default()
            .into_iter()
            .map(|i| interface("ssh_ingress_interfaces", Some(i), "tailscale0"))
            .collect::<Result<Vec<_>, _>>()?;
        use super::raw::TextOrBool;
        let host_ruleset = match raw.host_ruleset.unwrap_or(TextOrBool::Bool(true)) {
            TextOrBool::Bool(true) => HostRuleset::Managed,
            TextOrBool::Bool(false) => HostRuleset::Off,
            TextOrBool::Text(t) if t == "managed" => HostRuleset::Managed,
            TextOrBool::Text(t) if t == "off" => HostRuleset::Off,
            TextOrBool::Text(other) => {
                return Err(self.invalid(
                    "host_ruleset",
                    format!("`{other}` is not `managed` (the daemon keeps its nftables table current) or `off`"),
                ));
            }
        };
        if host_ruleset == HostRuleset::Managed {
            let gateway = bootstrap_listen.ip();
            let inside = match (agent_subnet, gateway) {
                (IpNet::V4(net), IpAddr::V4(ip)) => net.contains(&ip),
                _ => false,
            };
            if !inside {
                return Err(self.invalid(
                    "host_ruleset",
                    format!(
                        "`managed` (the default) builds the host ruleset around the agent bridge's gateway, but bootstrap_listen {gateway} is not an IPv4 address inside agent_subnet {agent_subnet}; listen on the gateway (e.g. 10.77.0.1:8844 in 10.77.0.0/16), or set `host_ruleset: off` to leave nftables alone"
                    ),
                ));
            }
        }
        let allowlist_dns_server = match raw.allowlist_dns_server {
            Some(text) => {
                let with_port = if text.parse::<std::net::IpAddr>().is_ok() { format!("{text}:53") } else { text };
                with_port.parse::<SocketAddr>().map_err(|_| {
                    self.invalid(
                        "allowlist_dns_server",
                        format!("`{with_port}` is not an address such as 1.1.1.1 or 1.1.1.1:53"),
                    )
                })?
            }
            None => system_nameserver(),
        };
        let exposure_port_min = raw.exposure_port_min.unwrap_or(10000);
        let exposure_port_max = raw.exposure_port_max.unwrap_or(10999);
        if exposure_port_min == 0 || exposure_port_min > exposure_port_max {
            return Err(self.invalid(
                "exposure_port_min",
                format!("{exposure_port_min}-{exposure_port_max} is not a port range (1 ≤ min ≤ max ≤ 65535)"),
            ));
        }
        let artifact_retention_interval =
            self.duration("artifact_retention_interval", raw.artifact_retention_interval, Duration::from_secs(600))?;
        if artifact_retention_interval < Duration::from_secs(1) {
            return Err(self.invalid("artifact_retention_interval", "must be at least 1s"));
        }
        // 0 or unset: no total cap (a profile's retention still applies).
        let artifact_retention_max_total_bytes = raw.artifact_retention_max_total_bytes.filter(|b| *b > 0);
        let exposure_health_interval =
            self.duration("exposure_health_interval", raw.exposure_health_interval, Duration::from_secs(60))?;
        if exposure_health_interval.is_zero() {
            return Err(self.invalid("exposure_health_interval", "must be greater than 0"));
        }
        let tailscale_command = raw.tailscale_command.unwrap_or_else(|| "tailscale".into());
        let idle_stop = IdleStopConfig {
            enabled: raw.idle_stop_enabled.unwrap_or(true),
            interval: self.duration("idle_stop_interval", raw.idle_stop_interval, Duration::from_secs(60))?,
            minutes_default: raw.idle_stop_minutes_default.unwrap_or(30),
            cpu_threshold: raw.idle_stop_cpu_threshold.unwrap_or(0.05),
        };
        if idle_stop.enabled && idle_stop.interval.is_zero() {
            return Err(self.invalid("idle_stop_interval", "must be greater than 0 when idle_stop_enabled is true"));
        }
        if !(0.0..=1.0).contains(&idle_stop.cpu_threshold) {
            return Err(self.invalid("idle_stop_cpu_threshold", "must be between 0 and 1 (a fraction of one core)"));
        }
        let vmid_min = raw.vmid_min.unwrap_or(1000);
        let vmid_max = raw.vmid_max.unwrap_or(8999);
        if vmid_min < 100 {
            return Err(self.invalid("vmid_min", "must be at least 100 (Proxmox reserves lower VMIDs)"));
        }
        if vmid_max > 999_999_999 {
            return Err(self.invalid("vmid_max", "must be at most 999999999"));
        }
        if vmid_min > vmid_max {
            return Err(self.invalid("vmid_max", format!("must not be below vmid_min ({vmid_min})")));
        }
        let sandbox_probe_interval =
            self.duration("sandbox_probe_interval", raw.sandbox_probe_interval, Duration::from_secs(30))?;
        if sandbox_probe_interval.is_zero() {
            return Err(self.invalid("sandbox_probe_interval", "must be greater than 0"));
        }
        let test_time_scale = raw.test_time_scale.unwrap_or(1.0);
        if !(test_time_scale > 0.0 && test_time_scale <= 1.0) {
            return Err(self.invalid("test_time_scale", "must be in (0, 1]; leave it unset in production"));
        }
        // Twice the provisioning timeout, within [5 min, 2 h] (the Go version's default, docs/reference/compatibility.md).
        let default_grace = (provisioning_timeout * 2).clamp(Duration::from_secs(300), Duration::from_secs(7200));
        let orphan_grace_period = self.duration("orphan_grace_period", raw.orphan_grace_period, default_grace)?;
        let pool = PoolConfig {
            max_total: raw.pool_max_total.unwrap_or(10),
            refill_concurrency: self.at_least_one("pool_refill_concurrency", raw.pool_refill_concurrency, 1)?,
            check_interval: self.duration("pool_check_interval", raw.pool_check_interval, Duration::from_secs(30))?,
        };
        if pool.max_total > 1000 {
            return Err(self.invalid("pool_max_total", "must be at most 1000"));
        }
        if pool.check_interval.is_zero() {
            return Err(self.invalid("pool_check_interval", "must be greater than 0"));
        }
        Ok(Config {
            pool,
            orphan_grace_period,
            sandbox_probe_interval,
            test_time_scale,
            path: self.path.to_path_buf(),
            profiles_dir: self.abs_path("profiles_dir", raw.profiles_dir, "/etc/agentlab/profiles".into())?,
            socket_path: self.abs_path("socket_path", raw.socket_path, run_dir.join("agentlabd.sock"))?,
            db_path: self.abs_path("db_path", raw.db_path, data_dir.join("agentlab.db"))?,
            artifact_dir: self.abs_path("artifact_dir", raw.artifact_dir, data_dir.join("artifacts"))?,
            snippets_dir: match raw.snippets_dir {
                Some(dir) => Some(self.abs_path("snippets_dir", Some(dir), PathBuf::new())?),
                None => None,
            },
            host_node,
            snippet_storage,
            workspace_storage,
            controller_url: self.url("controller_url", raw.controller_url, format!("http://{bootstrap_listen}"))?,
            artifact_upload_url: self.url(
                "artifact_upload_url",
                raw.artifact_upload_url,
                format!("http://{artifact_listen}/upload"),
            )?,
            bootstrap_listen,
            artifact_listen,
            agent_subnet,
            metrics_listen,
            secrets_dir: self.abs_path("secrets_dir", raw.secrets_dir, "/etc/agentlab/secrets".into())?,
            secrets_bundle,
            secrets_age_key_path: self.abs_path(
                "secrets_age_key_path",
                raw.secrets_age_key_path,
                "/etc/agentlab/keys/age.key".into(),
            )?,
            ssh_public_key_path,
            ssh_key_path,
            proxmox,
            provisioning_timeout,
            guest_agent_timeout,
            artifact_max_bytes,
            artifact_token_ttl: Duration::from_secs(u64::from(artifact_token_minutes) * 60),
            max_ttl_minutes,
            bootstrap_rate_limit,
            artifact_rate_limit,
            report_rate_limit,
            job_log_max_bytes,
            artifact_max_total_bytes,
            artifact_retention_interval,
            artifact_retention_max_total_bytes,
            min_free_bytes,
            idle_stop,
            agent_bridge,
            uplink_interface,
            host_ruleset,
            allowlist_dns_server,
            ssh_ingress_interfaces,
            tailscale_command,
            exposure_port_min,
            exposure_port_max,
            exposure_health_interval,
            vmid_min,
            vmid_max,
            data_dir,
            run_dir,
        })
    }

    fn rate_limit(
        &self,
        key: &str,
        qps: Option<f64>,
        burst: Option<u32>,
        default: (f64, u32),
    ) -> Result<super::RateLimit, ConfigError> {
        let qps = qps.unwrap_or(default.0);
        if !qps.is_finite() || qps < 0.0 {
            return Err(self.invalid(key, "must be 0 (no limit) or a positive number of requests per second"));
        }
        Ok(super::RateLimit { qps, burst: burst.unwrap_or(default.1).max(1) })
    }

    #[allow(clippy::too_many_arguments)]
    fn proxmox(
        &self,
        backend: &Option<String>,
        url: Option<String>,
        token: Option<String>,
        fingerprint: Option<String>,
        ca_path: Option<String>,
        insecure: Option<bool>,
        node: Option<String>,
        timeout: Option<String>,
    ) -> Result<ProxmoxConfig, ConfigError> {
        let command_timeout = self.duration("proxmox_command_timeout", timeout, Duration::from_secs(120))?;
        if command_timeout.is_zero() {
            return Err(self.invalid("proxmox_command_timeout", "must be greater than 0"));
        }
        let node = node.filter(|n| !n.trim().is_empty());
        let backend = match backend.as_deref().unwrap_or("api") {
            "shell" => ProxmoxBackend::Shell,
            "api" => {
                let url = self.url("proxmox_api_url", url, "https://localhost:8006".into())?;
                let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                    self.invalid(
                        "proxmox_api_token",
                        "is required with proxmox_backend: api; create one with `pveum user token add root@pam agentlab --privsep=0` and set USER@REALM!TOKENID=SECRET",
                    )
                })?;
                validate_token(&token).map_err(|e| self.invalid("proxmox_api_token", e))?;
                let insecure = insecure.unwrap_or(false);
                let chosen = [fingerprint.is_some(), ca_path.is_some(), insecure].iter().filter(|b| **b).count();
                if chosen > 1 {
                    return Err(self.invalid(
                        "proxmox_tls_fingerprint",
                        "set only one of proxmox_tls_fingerprint, proxmox_tls_ca_path and proxmox_tls_insecure",
                    ));
                }
                let trust = if let Some(fp) = fingerprint {
                    TlsTrust::Fingerprint(
                        Fingerprint::parse(&fp).map_err(|e| self.invalid("proxmox_tls_fingerprint", e))?,
                    )
                } else if let Some(ca) = ca_path {
                    TlsTrust::CaFile(self.abs_path("proxmox_tls_ca_path", Some(ca), PathBuf::new())?)
                } else if insecure {
                    TlsTrust::Insecure
                } else {
                    TlsTrust::System
                };
                ProxmoxBackend::Api { url, token, trust }
            }
            other => {
                return Err(
                    self.invalid("proxmox_backend", format!("`{other}` is not a backend; use `api` or `shell`"))
                );
            }
        };
        Ok(ProxmoxConfig {
            backend,
            node,
            command_timeout,
            rate_limit_rps: 20,
            max_concurrent_tasks: 8,
            clone_concurrency: 2,
        })
    }
}

/// The agent subnet is the bootstrap address's /16 (/64 for IPv6), as docs/reference/compatibility.md keeps it.
fn derived_subnet(ip: IpAddr) -> IpNet {
    let prefix = if ip.is_ipv4() { 16 } else { 64 };
    IpNet::new(ip, prefix).map(|n| n.trunc()).unwrap_or_else(|_| IpNet::from(ip))
}

/// The host's first IPv4 resolver (`/etc/resolv.conf`), or 127.0.0.1:53.
fn system_nameserver() -> SocketAddr {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::Ipv4Addr>().ok())
        .map(|a| SocketAddr::from((a, 53)))
        .next()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
}

/// A Proxmox storage id: `[A-Za-z0-9._-]`, 1-64 characters.
fn is_storage_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
