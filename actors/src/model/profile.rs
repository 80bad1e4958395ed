//! The profile schema: what a sandbox is cloned from and how it is configured.
//!
//! The schema is the Go version's (inventory §3.2) without its defects: unknown fields are
//! errors (not silently ignored), `type` is `vm` only (the Go loader accepted `lxc` that
//! nothing provisioned), CPU over-commit maps to `cpulimit` (not to the CPU *type*: D9),
//! the allowlist group is `agent_nat_allow` (Proxmox caps group names at 18 characters),
//! and `secrets_bundle` is honoured per profile.

use serde::{Deserialize, Deserializer, Serialize};

/// One profile, as written in a profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: ProfileKind,
    pub template_vmid: u32,
    /// The node to place sandboxes on; unset = chosen by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub resources: ResourceSpec,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub behavior: BehaviorSpec,
    /// The secrets bundle for jobs of this profile; unset = the daemon's `secrets_bundle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_bundle: Option<String>,
    #[serde(default)]
    pub repo: RepoSpec,
    #[serde(default)]
    pub artifacts: ArtifactSpec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    #[default]
    Vm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub model: NicModel,
    #[serde(default)]
    pub mode: NetworkMode,
    /// Accepted for compatibility; the firewall is what enforces the mode, so it must be on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<bool>,
    /// Accepted for compatibility; must name the mode's group when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_group: Option<String>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            bridge: default_bridge(),
            model: NicModel::default(),
            mode: NetworkMode::default(),
            firewall: None,
            firewall_group: None,
        }
    }
}

fn default_bridge() -> String {
    "vmbr1".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    #[default]
    Virtio,
    E1000,
    Rtl8139,
    Vmxnet3,
}

/// What a sandbox may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No network beyond the guest listener.
    Off,
    /// Internet through NAT; LAN, tailnet and host blocked.
    #[default]
    Nat,
    /// Only the allowlisted destinations.
    Allowlist,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Off => "off",
            NetworkMode::Nat => "nat",
            NetworkMode::Allowlist => "allowlist",
        }
    }

    /// The Proxmox security group that enforces this mode (names ≤ 18 characters).
    pub fn security_group(self) -> &'static str {
        match self {
            NetworkMode::Off => "agent_nat_off",
            NetworkMode::Nat => "agent_nat_default",
            NetworkMode::Allowlist => "agent_nat_allow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default = "default_cores")]
    pub cores: u32,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Host CPUs the VM may run on (Proxmox `affinity`), e.g. `0-3,8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpulist: Option<String>,
    /// CPU time cap in cores (Proxmox `cpulimit`, 0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpulimit: Option<f64>,
}

impl Default for ResourceSpec {
    fn default() -> Self {
        ResourceSpec { cores: default_cores(), memory_mb: default_memory_mb(), cpulist: None, cpulimit: None }
    }
}

fn default_cores() -> u32 {
    2
}
fn default_memory_mb() -> u32 {
    4096
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// Grow the root disk to this size (never shrinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_size_gb: Option<u32>,
    #[serde(default = "default_scsihw")]
    pub scsihw: String,
    #[serde(default)]
    pub workspace: WorkspacePolicy,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec { root_size_gb: None, scsihw: default_scsihw(), workspace: WorkspacePolicy::default() }
    }
}

fn default_scsihw() -> String {
    "virtio-scsi-pci".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspacePolicy {
    #[default]
    None,
    Attach,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorSpec {
    #[serde(default)]
    pub keepalive_default: bool,
    /// Lease length for sandboxes of this profile; unset = no lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minutes_default: Option<u32>,
    /// Idle minutes before idle-stop; 0 disables; unset = the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop_minutes_default: Option<u32>,
    #[serde(default)]
    pub inner_sandbox: InnerSandbox,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner_sandbox_args: Vec<String>,
    /// Default job mode (`dangerous` runs the agent with every permission it asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Whether the guest runner wraps the agent in bubblewrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InnerSandbox {
    #[default]
    None,
    Bubblewrap,
}

impl<'de> Deserialize<'de> for InnerSandbox {
    /// Accepts the Go version's spellings: `bubblewrap|bwrap|true|yes|1` and
    /// `none|off|false|no|0|disabled`, as strings, booleans or numbers.
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Number(i64),
            Word(String),
        }
        let word = match Raw::deserialize(de)? {
            Raw::Flag(b) => b.to_string(),
            Raw::Number(n) => n.to_string(),
            Raw::Word(w) => w.trim().to_ascii_lowercase(),
        };
        match word.as_str() {
            "bubblewrap" | "bwrap" | "true" | "yes" | "1" => Ok(InnerSandbox::Bubblewrap),
            "none" | "off" | "false" | "no" | "0" | "disabled" | "" => Ok(InnerSandbox::None),
            other => Err(serde::de::Error::custom(format!(
                "unknown inner_sandbox `{other}`: use `bubblewrap` or `none`"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSpec {
    /// Where the guest clones the repository (absolute path inside the guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

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
    !s.is_empty()
        && s.len() <= max
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
        if !is_simple_name(&self.network.bridge, 15) {
            errors.push(field_error("network.bridge", "must be a bridge name such as vmbr1"));
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
        let retention_set = [
            self.artifacts.retention_minutes,
            self.artifacts.retention_hours,
            self.artifacts.retention_days,
        ]
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
        "host_mount", "host_mounts", "host_path", "host_paths", "bind_mount", "bind_mounts", "binds",
        "mounts", "mount_points", "mountpoints", "virtiofs", "virtio_fs",
    ];
    EXACT.contains(&k.as_str())
        || (k.contains("host") && (k.contains("mount") || k.contains("path") || k.contains("bind")))
        || (k.contains("bind") && k.contains("mount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Profile {
        serde_json::from_value(serde_json::json!({"name": "small", "template_vmid": 9000})).unwrap_or_else(|e| panic!("{e}"))
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
