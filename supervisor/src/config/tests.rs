//! Config parsing: defaults, derivations, and errors that name file, line and key.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/agentlab/config.yaml"), text)
}

const TOKEN: &str = "proxmox_api_token: root@pam!agentlab=0d08f8bc-0a12-4072-8f18-264a33793bb9\n";

#[test]
fn defaults_and_derived_paths() {
    let config = parse(&format!("data_dir: /srv/agentlab\nrun_dir: /tmp/run\n{TOKEN}")).unwrap();
    assert_eq!(config.db_path, PathBuf::from("/srv/agentlab/agentlab.db"));
    assert_eq!(config.artifact_dir, PathBuf::from("/srv/agentlab/artifacts"));
    assert_eq!(config.socket_path, PathBuf::from("/tmp/run/agentlabd.sock"));
    assert_eq!(config.profiles_dir, PathBuf::from("/etc/agentlab/profiles"));
    assert_eq!(config.agent_subnet.to_string(), "10.77.0.0/16");
    assert_eq!(config.controller_url, "http://10.77.0.1:8844");
    assert_eq!(config.artifact_upload_url, "http://10.77.0.1:8846/upload");
    assert_eq!(config.proxmox.command_timeout, Duration::from_secs(120));
    assert_eq!(config.provisioning_timeout, Duration::from_secs(600));
    assert_eq!((config.vmid_min, config.vmid_max), (1000, 8999));
    assert_eq!(config.artifact_max_bytes, 268_435_456);
    assert_eq!(
        (config.proxmox.rate_limit_rps, config.proxmox.max_concurrent_tasks, config.proxmox.clone_concurrency),
        (20, 8, 2)
    );
    assert!(matches!(config.proxmox.backend, ProxmoxBackend::Api { trust: TlsTrust::System, .. }));
}

#[test]
fn every_key_is_known_to_the_raw_struct() {
    // A config setting every key must parse (guards KEYS and RawConfig drifting apart).
    let mut text = String::new();
    for key in KEYS {
        let value = match *key {
            "proxmox_tls_insecure" | "idle_stop_enabled" => "false",
            "artifact_max_bytes" | "idle_stop_minutes_default" | "proxmox_rate_limit_rps" => "10",
            "artifact_token_ttl_minutes"
            | "max_ttl_minutes"
            | "bootstrap_rate_limit_burst"
            | "artifact_rate_limit_burst"
            | "report_rate_limit_burst" => "5",
            "bootstrap_rate_limit_qps" | "artifact_rate_limit_qps" | "report_rate_limit_qps" => "2.5",
            "job_log_max_bytes" | "min_free_bytes" => "1000000",
            "artifact_max_total_bytes" | "artifact_retention_max_total_bytes" => "1000000000000",
            "artifact_retention_interval" => "5m",
            "proxmox_max_concurrent_tasks" | "proxmox_clone_concurrency" => "3",
            "pool_max_total" | "pool_refill_concurrency" => "4",
            "pool_check_interval" => "10s",
            "vmid_min" => "1000",
            "vmid_max" => "2000",
            "exposure_port_min" => "10000",
            "exposure_port_max" => "10100",
            "exposure_health_interval" => "30s",
            "host_ruleset" => "managed",
            "ssh_ingress_interfaces" => "[tailscale0]",
            "agent_bridge" | "uplink_interface" => "vmbr9",
            "allowlist_dns_server" => "1.1.1.1",
            "tailscale_command" => "/usr/bin/tailscale",
            "idle_stop_cpu_threshold" => "0.1",
            "proxmox_command_timeout" | "provisioning_timeout" | "idle_stop_interval" | "sandbox_probe_interval" => {
                "1m"
            }
            "test_time_scale" => "0.5",
            "bootstrap_listen" | "artifact_listen" => "10.77.0.1:8844",
            "metrics_listen" => "127.0.0.1:8847",
            "controller_url" | "artifact_upload_url" | "proxmox_api_url" => "https://pve.example:8006",
            "agent_subnet" => "10.77.0.0/16",
            "proxmox_backend" => "api",
            "proxmox_api_token" => "root@pam!agentlab=secret",
            "proxmox_tls_fingerprint" => {
                "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
            }
            "snippet_storage" | "secrets_bundle" | "proxmox_node" | "host_node" => "local",
            "workspace_storage" => "local-lvm",
            _ => "/abs/path",
        };
        text.push_str(&format!("{key}: {value}\n"));
    }
    let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let raw: RawConfig = serde_json::from_value(value).expect("KEYS and RawConfig disagree");
    assert_eq!(raw.proxmox_node.as_deref(), Some("local"));
    // Validation then refuses the three TLS choices together, naming the key.
    let err = parse(&text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("set only one of proxmox_tls_fingerprint"), "{err}");
}

#[test]
fn a_misspelled_key_names_file_line_and_nearest_key() {
    let err = parse(&format!("{TOKEN}data_dir: /srv\nprofiles_dri: /etc/agentlab/profiles\n")).err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        text,
        "config /etc/agentlab/config.yaml, line 3: unknown key `profiles_dri`; did you mean `profiles_dir`?"
    );
}

#[test]
fn wrong_types_and_values_name_their_key_and_line() {
    let cases = [
        (format!("{TOKEN}vmid_min: lots\n"), "line 2: `vmid_min`"),
        (format!("{TOKEN}provisioning_timeout: soon\n"), "line 2: `provisioning_timeout`: `soon` is not a duration"),
        (format!("{TOKEN}data_dir: relative\n"), "line 2: `data_dir`: must be an absolute path"),
        (format!("{TOKEN}vmid_min: 5000\nvmid_max: 4000\n"), "line 3: `vmid_max`: must not be below vmid_min"),
        (format!("{TOKEN}metrics_listen: 0.0.0.0:9000\n"), "`metrics_listen`: must be a loopback address"),
        (format!("{TOKEN}proxmox_backend: docker\n"), "`proxmox_backend`: `docker` is not a backend"),
        ("proxmox_api_token: nonsense\n".to_string(), "line 1: `proxmox_api_token`: must be USER@REALM!TOKENID=SECRET"),
        (String::new(), "`proxmox_api_token`: is required with proxmox_backend: api"),
        (format!("{TOKEN}proxmox_tls_insecure: true\nproxmox_tls_fingerprint: AB:CD\n"), "set only one of"),
        (format!("{TOKEN}proxmox_tls_fingerprint: AB:CD\n"), "not a SHA-256 fingerprint"),
        (
            format!("{TOKEN}bootstrap_listen: 0.0.0.0:8844\n"),
            "`bootstrap_listen`: `0.0.0.0:8844` listens on every address",
        ),
        (format!("{TOKEN}artifact_listen: '[::]:8846'\n"), "`artifact_listen`: `[::]:8846` listens on every address"),
        (format!("{TOKEN}agent_subnet: 0.0.0.0/0\n"), "`agent_subnet`: `0.0.0.0/0` is the whole internet"),
        (format!("{TOKEN}job_log_max_bytes: 0\n"), "`job_log_max_bytes`: must be greater than 0"),
        (format!("{TOKEN}artifact_max_total_bytes: 10\n"), "must be at least artifact_max_bytes"),
    ];
    for (config, expected) in cases {
        let text = parse(&config).err().map(|e| e.to_string()).unwrap_or_else(|| "parsed".into());
        assert!(text.contains(expected), "config {config:?}\n  got: {text}\n  want: {expected}");
    }
}

#[test]
fn the_shell_backend_needs_no_token() {
    let config = parse("proxmox_backend: shell\n").unwrap();
    assert_eq!(config.proxmox.backend, ProxmoxBackend::Shell);
}

#[test]
fn non_mapping_and_bad_yaml_are_refused() {
    assert!(matches!(parse("- a\n- b\n"), Err(ConfigError::NotMapping { .. })));
    assert!(matches!(parse("data_dir: [unclosed\n"), Err(ConfigError::Yaml { .. })));
}

#[test]
fn a_world_readable_file_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, TOKEN).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = Config::load(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("readable by every user"), "{text}");
    assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(Config::load(&path).is_ok());
}

#[test]
fn guest_rate_limits_and_token_ttl_are_checked() {
    let config = parse(&format!("bootstrap_rate_limit_qps: 0\nartifact_rate_limit_burst: 20\n{TOKEN}")).unwrap();
    assert_eq!(config.bootstrap_rate_limit.qps, 0.0, "0 disables the limit");
    assert_eq!((config.artifact_rate_limit.qps, config.artifact_rate_limit.burst), (5.0, 20));
    assert_eq!(config.artifact_token_ttl, std::time::Duration::from_secs(1440 * 60));
    let err = parse(&format!("bootstrap_rate_limit_qps: -1\n{TOKEN}")).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("bootstrap_rate_limit_qps"), "{err}");
    let err =
        parse(&format!("artifact_token_ttl_minutes: 0\n{TOKEN}")).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("artifact_token_ttl_minutes"), "{err}");
}

#[test]
fn max_ttl_defaults_to_a_week_and_is_bounded() {
    assert_eq!(parse(TOKEN).unwrap().max_ttl_minutes, 7 * 24 * 60);
    assert_eq!(parse(&format!("max_ttl_minutes: 90\n{TOKEN}")).unwrap().max_ttl_minutes, 90);
    for bad in ["0", "600000"] {
        let err = parse(&format!("max_ttl_minutes: {bad}\n{TOKEN}")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("max_ttl_minutes") && err.contains("525600"), "{bad}: {err}");
    }
}

/// The keys in the first column of docs/reference/configuration.md's table. A cell may name
/// two keys, `a` / `b`; a second key written as a suffix (`_burst`) replaces the first key's
/// last `_word` (`report_rate_limit_qps` / `_burst` is `report_rate_limit_burst`).
fn documented_keys(markdown: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut in_key_table = None;
    for line in markdown.lines().map(str::trim) {
        if !line.starts_with('|') {
            in_key_table = None;
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("").trim();
        match in_key_table {
            None => in_key_table = Some(first == "key"),
            Some(true) if !first.starts_with("---") => {
                let spans: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
                let Some(head) = spans.first() else { continue };
                for span in &spans {
                    keys.push(match span.strip_prefix('_') {
                        Some(suffix) => format!("{}_{suffix}", head.rsplit_once('_').map_or(*head, |(stem, _)| stem)),
                        None => span.to_string(),
                    });
                }
            }
            Some(_) => {}
        }
    }
    keys
}

#[test]
fn the_configuration_reference_documents_every_key_and_no_other() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(
        documented_keys("| key | default |\n|---|---|\n| `a_qps` / `_burst` | x |\n| `m_min` / `m_max` | y |"),
        ["a_qps", "a_burst", "m_min", "m_max"]
    );
    let documented = documented_keys(&text);
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<&String> = documented.iter().filter(|k| !seen.insert(k.as_str())).collect();
    let missing: Vec<&&str> = KEYS.iter().filter(|k| !seen.contains(**k)).collect();
    let unknown: Vec<&&str> = seen.iter().filter(|k| !KEYS.contains(k)).collect();
    assert!(
        twice.is_empty() && missing.is_empty() && unknown.is_empty(),
        "docs/reference/configuration.md is out of date with KEYS (supervisor/src/config/raw.rs):\n  \
         undocumented: {missing:?}\n  documented but not a key: {unknown:?}\n  documented twice: {twice:?}"
    );
}
