//! The profile schema: what a sandbox is cloned from and how it is configured.
//!
//! The schema is the Go version's (docs/reference/compatibility.md) without its defects: unknown fields are
//! errors (not silently ignored), `type` is `vm` only (an `lxc` profile, which the Go loader
//! accepted and nothing provisioned, is reported and not served; `profiles/loader.rs`), CPU
//! time caps are `cpulimit` (not the CPU *type*, D9; `cpu_over_commit` loads with a
//! no-effect warning), the allowlist group is `agent_nat_allow` (Proxmox caps group names at
//! 18 characters), and `secrets_bundle` is honoured per profile.

use serde::{Deserialize, Deserializer, Serialize};

mod validate;
pub use validate::{FieldError, is_host_mount_key};

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
    /// The node sandboxes of this profile are cloned on. The rule, in order: this, else
    /// the daemon's `proxmox_node`, else the node that holds the template (a linked
    /// clone runs where the template's disks are).
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
    /// The warm pool: sandboxes of this profile kept booted and unassigned, for `sandbox
    /// new` and `job run` to claim.
    #[serde(default, skip_serializing_if = "PoolSpec::is_empty")]
    pub pool: PoolSpec,
}

/// How many sandboxes of a profile the warm pool keeps READY and unassigned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// 0 (the default): no pool.
    #[serde(default)]
    pub size: u32,
}

impl PoolSpec {
    /// The most one profile may keep warm (the daemon's `pool_max_total` caps all pools).
    pub const MAX_SIZE: u32 = 100;

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
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
    /// What `mode: allowlist` may reach: IPv4 addresses or networks, and domain names
    /// (resolved by the daemon, again when their TTL runs out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<String>,
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
            allowlist: Vec::new(),
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

impl NicModel {
    /// The model as Proxmox's `net0` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::Rtl8139 => "rtl8139",
            NicModel::Vmxnet3 => "vmxnet3",
        }
    }
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
    pub const ALL: [NetworkMode; 3] = [NetworkMode::Off, NetworkMode::Nat, NetworkMode::Allowlist];

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
    /// Memory ballooning, as the seed documents wrote it (`balloon: false`), or the
    /// balloon target in MiB (Proxmox `balloon`). Unset: the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balloon: Option<Balloon>,
}

impl Default for ResourceSpec {
    fn default() -> Self {
        ResourceSpec {
            cores: default_cores(),
            memory_mb: default_memory_mb(),
            cpulist: None,
            cpulimit: None,
            balloon: None,
        }
    }
}

/// `resources.balloon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Balloon {
    /// `false`: no balloon device (Proxmox `balloon: 0`), the VM keeps all its memory.
    Off,
    /// `true`: Proxmox's default (ballooning down to `memory_mb` at most, i.e. none until
    /// a lower target is set).
    On,
    /// A target in MiB the host may reclaim down to.
    Mib(u32),
}

impl Balloon {
    /// The `balloon` config value to set, if any.
    pub fn config_value(self) -> Option<String> {
        match self {
            Balloon::Off => Some("0".into()),
            Balloon::On => None,
            Balloon::Mib(mib) => Some(mib.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Balloon {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Number(u32),
        }
        match Raw::deserialize(de)
            .map_err(|_| serde::de::Error::custom("must be `true`, `false` or a balloon target in MiB"))?
        {
            Raw::Flag(false) | Raw::Number(0) => Ok(Balloon::Off),
            Raw::Flag(true) => Ok(Balloon::On),
            Raw::Number(mib) => Ok(Balloon::Mib(mib)),
        }
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
            other => {
                Err(serde::de::Error::custom(format!("unknown inner_sandbox `{other}`: use `bubblewrap` or `none`")))
            }
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
    /// The most a job of this profile stores in artifacts (the daemon's
    /// `artifact_max_total_bytes` is the ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}
