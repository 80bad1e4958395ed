//! Rules of a profile the schema alone cannot express, each naming its dotted field.

use super::Profile;

/// One rule a parsed profile breaks, with the dotted path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

/// Characters Proxmox accepts in a bridge name and we accept in profile and bundle names.
fn is_simple_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An allowlist entry: an IPv4 address, an IPv4 network, or a domain name with a dot
/// (the same rule as `agentlab_netfilter::allowlist::AllowEntry`, which resolves them).
fn is_allow_entry(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
    if addr.parse::<std::net::Ipv4Addr>().is_ok() {
        return prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= 32));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    prefix.is_none()
        && name.contains('.')
        && name.len() <= 253
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl Profile {
    /// Rules the schema alone cannot express. Empty when the profile is usable.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-')
            && !self.name.contains("--");
        if !name_ok {
            errors.push(field_error(
                "name",
                "must be 1-63 lower-case letters, digits and single dashes (dashes separate modifiers)",
            ));
        }
        if !(100..=999_999_999).contains(&self.template_vmid) {
            errors.push(field_error("template_vmid", "must be a Proxmox VMID (100 to 999999999)"));
        }
        if let Some(node) = &self.node
            && !is_simple_name(node, 63)
        {
            errors.push(field_error("node", "must be a Proxmox node name"));
        }
        // A mode no job accepts would load and then fail every job (security review F20).
        if let Some(mode) = &self.behavior.mode
            && let Err(e) = mode.parse::<crate::protocol::JobMode>()
        {
            errors.push(field_error("behavior.mode", e.to_string()));
        }
        if !is_simple_name(&self.network.bridge, 15) {
            errors.push(field_error("network.bridge", "must be a bridge name such as vmbr1"));
        }
        for (i, entry) in self.network.allowlist.iter().enumerate() {
            if !is_allow_entry(entry) {
                errors.push(field_error(
                    &format!("network.allowlist[{i}]"),
                    format!("`{entry}` is neither an IPv4 address or network (203.0.113.7, 140.82.112.0/20) nor a domain name (github.com)"),
                ));
            }
        }
        if !self.network.allowlist.is_empty() && self.network.mode != super::NetworkMode::Allowlist {
            errors.push(field_error("network.allowlist", "only means something with `mode: allowlist`"));
        }
        if self.network.firewall == Some(false) {
            errors.push(field_error(
                "network.firewall",
                "the Proxmox firewall enforces the network mode, so it cannot be off; remove this line",
            ));
        }
        if let Some(group) = &self.network.firewall_group {
            let expected = self.network.mode.security_group();
            if group != expected {
                let hint = if group == "agent_nat_allowlist" {
                    " (Proxmox caps group names at 18 characters, so the allowlist group is agent_nat_allow)"
                } else {
                    ""
                };
                errors.push(field_error(
                    "network.firewall_group",
                    format!(
                        "mode `{}` is enforced by group `{expected}`, not `{group}`{hint}; remove the line or set it to `{expected}`",
                        self.network.mode.as_str()
                    ),
                ));
            }
        }
        if !(1..=512).contains(&self.resources.cores) {
            errors.push(field_error("resources.cores", "must be 1 to 512"));
        }
        if self.resources.memory_mb < 64 {
            errors.push(field_error("resources.memory_mb", "must be at least 64"));
        }
        if let Some(limit) = self.resources.cpulimit
            && !(0.0..=128.0).contains(&limit)
        {
            errors.push(field_error("resources.cpulimit", "must be 0 to 128"));
        }
        // qemu-server refuses a balloon target above the VM's memory.
        if let Some(super::Balloon::Mib(mib)) = self.resources.balloon
            && mib > self.resources.memory_mb
        {
            errors.push(field_error("resources.balloon", "must not exceed resources.memory_mb"));
        }
        if let Some(list) = &self.resources.cpulist
            && !list.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        {
            errors.push(field_error("resources.cpulist", "must be a CPU list such as 0-3,8"));
        }
        if self.storage.root_size_gb == Some(0) {
            errors.push(field_error("storage.root_size_gb", "must be greater than 0"));
        }
        if !is_simple_name(&self.storage.scsihw, 32) {
            errors.push(field_error("storage.scsihw", "must be a Proxmox SCSI controller type"));
        }
        if self.behavior.ttl_minutes_default == Some(0) {
            errors.push(field_error("behavior.ttl_minutes_default", "must be greater than 0 (omit it for no lease)"));
        }
        if let Some(bundle) = &self.secrets_bundle
            && !is_simple_name(bundle, 64)
        {
            errors.push(field_error("secrets_bundle", "must be a bundle name of letters, digits, `-`, `_`, `.`"));
        }
        if let Some(path) = &self.repo.clone_path
            && (!path.starts_with('/') || path.split('/').any(|part| part == ".."))
        {
            errors.push(field_error("repo.clone_path", "must be an absolute path without `..`"));
        }
        if self.pool.size > super::PoolSpec::MAX_SIZE {
            errors.push(field_error("pool.size", format!("must be 0 to {}", super::PoolSpec::MAX_SIZE)));
        }
        let retention_set =
            [self.artifacts.retention_minutes, self.artifacts.retention_hours, self.artifacts.retention_days]
                .iter()
                .filter(|v| v.is_some())
                .count();
        if retention_set > 1 {
            errors.push(field_error("artifacts", "set only one of retention_minutes, retention_hours, retention_days"));
        }
        errors
    }

    /// Artifact retention in minutes, if the profile sets one.
    pub fn artifact_retention_minutes(&self) -> Option<u64> {
        let a = &self.artifacts;
        a.retention_minutes
            .map(u64::from)
            .or(a.retention_hours.map(|h| u64::from(h) * 60))
            .or(a.retention_days.map(|d| u64::from(d) * 24 * 60))
    }
}

/// Field names that would give a guest access to host paths. They are unknown fields
/// anyway; naming them lets the loader say *why* they are refused.
pub fn is_host_mount_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    const EXACT: [&str; 12] = [
        "host_mount",
        "host_mounts",
        "host_path",
        "host_paths",
        "bind_mount",
        "bind_mounts",
        "binds",
        "mounts",
        "mount_points",
        "mountpoints",
        "virtiofs",
        "virtio_fs",
    ];
    EXACT.contains(&k.as_str())
        || (k.contains("host") && (k.contains("mount") || k.contains("path") || k.contains("bind")))
        || (k.contains("bind") && k.contains("mount"))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn minimal() -> Profile {
        serde_json::from_value(serde_json::json!({"name": "small", "template_vmid": 9000})).unwrap()
    }

    #[test]
    fn defaults_fill_a_minimal_profile() {
        let p = minimal();
        assert_eq!(p.network.bridge, "vmbr1");
        assert_eq!(p.network.mode, NetworkMode::Nat);
        assert_eq!(p.resources.cores, 2);
        assert_eq!(p.storage.scsihw, "virtio-scsi-pci");
        assert!(p.validate().is_empty());
    }

    #[test]
    fn mode_groups_fit_proxmox_18_character_limit() {
        for mode in [NetworkMode::Off, NetworkMode::Nat, NetworkMode::Allowlist] {
            assert!(mode.security_group().len() <= 18, "{}", mode.security_group());
        }
    }

    #[test]
    fn allowlist_entries_are_addresses_networks_or_domains() {
        for good in ["203.0.113.7", "140.82.112.0/20", "github.com", "api.example.org."] {
            assert!(is_allow_entry(good), "{good}");
        }
        for bad in ["", "localhost", "1.2.3", "10.0.0.0/33", "*.github.com", "a b.com", "::1", "x.com/24"] {
            assert!(!is_allow_entry(bad), "{bad}");
        }
    }

    #[test]
    fn the_go_allowlist_group_name_is_refused_with_the_reason() {
        let mut p = minimal();
        p.network.mode = NetworkMode::Allowlist;
        p.network.firewall_group = Some("agent_nat_allowlist".into());
        let errors = p.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "network.firewall_group");
        assert!(errors[0].message.contains("18 characters"));
    }

    #[test]
    fn a_job_mode_no_job_accepts_is_refused_at_load() {
        let mut p = minimal();
        p.behavior.mode = Some("yolo".into());
        let errors = p.validate();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "behavior.mode");
        assert!(errors[0].message.contains("dangerous, safe"), "{}", errors[0].message);
        p.behavior.mode = Some("safe".into());
        assert!(p.validate().is_empty());
    }

    #[test]
    fn inner_sandbox_accepts_go_spellings() {
        for (raw, want) in [
            (serde_json::json!("bwrap"), InnerSandbox::Bubblewrap),
            (serde_json::json!(true), InnerSandbox::Bubblewrap),
            (serde_json::json!(1), InnerSandbox::Bubblewrap),
            (serde_json::json!("off"), InnerSandbox::None),
            (serde_json::json!(false), InnerSandbox::None),
        ] {
            let got: InnerSandbox = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got, want, "{raw}");
        }
        assert!(serde_json::from_value::<InnerSandbox>(serde_json::json!("firejail")).is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut p = minimal();
        p.name = "Bad Name".into();
        p.template_vmid = 5;
        p.resources.cores = 0;
        p.network.firewall = Some(false);
        p.repo.clone_path = Some("relative/path".into());
        let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "template_vmid", "network.firewall", "resources.cores", "repo.clone_path"]);
    }

    #[test]
    fn host_mount_keys_are_recognised() {
        for key in ["host_mounts", "hostPath", "bind_mounts", "virtiofs", "extra_host_bind"] {
            assert!(is_host_mount_key(key), "{key}");
        }
        assert!(!is_host_mount_key("memory_mb"));
    }
}
