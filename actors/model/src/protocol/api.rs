//! Request and response bodies of the control API (the Unix socket).
//!
//! Field names follow the Go version's wire (docs/reference/compatibility.md) so that scripts written for
//! it keep working; timestamps are RFC 3339 in UTC.

use crate::model::{NetworkMode, SandboxState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_SCHEMA_VERSION: u32 = 1;
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub api_schema_version: u32,
    pub event_schema_version: u32,
    pub daemon: DaemonStatus,
    pub proxmox: ProxmoxStatus,
    /// Sandbox count by state (every state present, zeros included).
    pub sandboxes: BTreeMap<String, u64>,
    pub profiles: ProfilesStatus,
    pub listeners: ListenerStatus,
    /// How the node of a new sandbox is chosen, in words.
    #[serde(default)]
    pub placement: String,
    /// The last failure events, newest first.
    pub recent_failures: Vec<EventView>,
    /// The two isolation layers (Proxmox's datacenter firewall, the host ruleset).
    #[serde(default)]
    pub network: NetworkStatus,
    /// The check of each distinct `template_vmid` of the loaded profiles (absent from older
    /// daemons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<super::TemplateReport>,
    /// Job count by status (absent from older daemons).
    #[serde(default)]
    pub jobs: BTreeMap<String, u64>,
    #[serde(default)]
    pub artifacts: ArtifactsStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// `loaded`, `not loaded`, `off (host_ruleset: off)` or `unknown (why)`.
    pub host_ruleset: String,
    /// Absent when Proxmox could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter_firewall: Option<bool>,
    /// `both`, `one_layer`, `none` (no sandbox is provisioned) or `unknown`.
    pub isolation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub config_path: String,
    pub db_path: String,
}

/// What the daemon last learned about Proxmox. `reachable: false` comes with `error`, which
/// says why in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxmoxStatus {
    pub backend: String,
    pub endpoint: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Stable class of the error (`transient`, `tls`, `auth`, `timeout`, …; `ErrorClass::as_str`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// When this was last checked; absent before the first probe finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// Whether the API token was accepted (absent when Proxmox could not be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The firewall switches AgentLab's network modes depend on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallStatus>,
    /// The token's privileges against the role AgentLab needs (`model::pve_role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<PrivilegeCheck>,
    /// Every storage of every node, with its free space.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storages: Vec<StorageStatus>,
}

/// `GET /access/permissions` compared with `REQUIRED_PRIVILEGES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivilegeCheck {
    /// Required privileges the token has on no path.
    pub missing: Vec<String>,
    /// Whether everything needed is granted on `/` (narrower grants work for the VMs and
    /// storages they cover only).
    pub all_on_root: bool,
    /// The `pveum` command that creates the role.
    pub role_command: String,
}

/// One storage as `GET /nodes/{node}/storage` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    pub node: String,
    pub storage: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    pub active: bool,
    pub shared: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avail_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

/// A Proxmox firewall rule acts only when the datacenter firewall, the VM's firewall option
/// and `firewall=1` on the NIC are all on; the daemon sets the last two per VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallStatus {
    /// `/cluster/firewall/options` `enable`.
    pub datacenter_enabled: bool,
    /// Whether each mode's security group exists.
    pub groups: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilesStatus {
    pub count: usize,
    pub dir: String,
    pub loaded_at: String,
    /// Why the last reload was refused, if it was (the previous set stays in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
    /// Profiles this daemon cannot serve, each with file, document, field and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_served: Vec<String>,
    /// Keys accepted for compatibility that have no effect here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerStatus {
    pub socket: String,
    /// The guest listeners (`bootstrap_listen`, `artifact_listen`; one address when equal).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bootstrap: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact: String,
    /// `metrics_listen`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

/// What the stored artifacts take, and the room left where they are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactsStatus {
    pub dir: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// Below this much free space guest uploads and reports are refused (`min_free_bytes`).
    pub min_free_bytes: u64,
}

/// `GET /v1/profiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilesResponse {
    pub profiles: Vec<ProfileSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub template_vmid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub network_mode: NetworkMode,
    pub firewall_group: String,
    pub cores: u32,
    pub memory_mb: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minutes_default: Option<u32>,
    pub keepalive_default: bool,
    /// File the profile was loaded from.
    pub source: String,
}

/// `GET /v1/sandboxes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxesResponse {
    pub sandboxes: Vec<SandboxView>,
}

/// One sandbox, as `GET /v1/sandboxes/{vmid}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxView {
    pub vmid: u32,
    pub name: String,
    pub profile: String,
    pub state: SandboxState,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    pub tags: Vec<String>,
    pub keepalive: bool,
    #[serde(default)]
    pub lease_expires_at: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<String>,
    pub network: SandboxNetwork,
    pub resources: SandboxResources,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Why the sandbox failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// In the answer to an update of a running VM: the config keys that apply only at the
    /// VM's next start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_changes: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `sandbox show`: what the host ruleset dropped (the egress record), most attempts first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_drops: Vec<EgressDrop>,
    /// Waiting in the warm pool, unassigned (`sandbox new` and `job run` claim it).
    #[serde(default)]
    pub pooled: bool,
}

/// `POST /v1/sandboxes/{vmid}/ssh`: where to SSH to (and the sandbox counts as used now,
/// for idle-stop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    pub vmid: u32,
    pub state: SandboxState,
    #[serde(default)]
    pub ip: Option<String>,
    /// The user the daemon's snippet creates.
    pub user: String,
    pub port: u16,
    /// The daemon's private key (readable by root; pass `--identity` otherwise).
    pub identity: String,
}

/// A guest port published on the host (`tailscale serve`), `GET /v1/exposures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureView {
    pub name: String,
    pub vmid: u32,
    /// The guest port.
    pub port: u16,
    /// The host (tailnet) port it is published on; distinct for every exposure.
    pub host_port: u16,
    /// The sandbox's address now (always taken from its record).
    #[serde(default)]
    pub target_ip: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    /// `requested`, `serving` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposuresResponse {
    pub exposures: Vec<ExposureView>,
}

/// `POST /v1/exposures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExposureRequest {
    pub vmid: u32,
    pub port: u16,
    /// Default `sbx-<vmid>-<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Connection attempts from a sandbox that the host ruleset dropped, per destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressDrop {
    pub destination: String,
    pub protocol: String,
    /// 0 for protocols without ports.
    pub port: u16,
    pub packets: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxNetwork {
    pub mode: NetworkMode,
    pub firewall: bool,
    pub firewall_group: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxResources {
    pub cores: u32,
    pub memory_mb: u32,
}

/// One event as the API shows it (`json` is the kind's payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: i64,
    pub ts: String,
    pub kind: String,
    pub schema_version: u32,
    pub stage: String,
    #[serde(default)]
    pub sandbox_vmid: Option<u32>,
    #[serde(default)]
    pub job_id: Option<String>,
    pub msg: String,
    #[serde(default)]
    pub json: serde_json::Value,
}

/// `GET /v1/sandboxes/{vmid}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsResponse {
    pub events: Vec<EventView>,
    /// Id of the newest event returned (or the `after` given, when none is newer): pass it
    /// back as `after` to get only what came since.
    pub last_id: i64,
}

/// `GET /v1/debug/actors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebugActorsResponse {
    pub actors: Vec<ActorView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorView {
    /// Registry name: `root`, `pve`, `events`, or `<kind>:<id>` for an entity.
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub parent: Option<String>,
    /// The entity's state as its actor last published it (`-` for service actors).
    pub state: String,
    /// ractor's view: `running`, `stopping`, …
    pub status: String,
    pub uptime_seconds: u64,
    pub restarts: u32,
    /// Sandboxes: when the lease ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// ractor 0.16 does not expose queue depth; kept for clients that read it.
    #[serde(default)]
    pub mailbox: Option<u64>,
}

/// `GET /healthz` body.
pub const HEALTHZ_BODY: &str = "ok";

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The created sandbox, with how long each provisioning phase took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSandboxResponse {
    #[serde(flatten)]
    pub sandbox: SandboxView,
    pub timings: Vec<PhaseTiming>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub phase: String,
    pub ms: u64,
}

/// `POST /v1/sandboxes/{vmid}/destroy` (the body may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestroySandboxRequest {
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/sandboxes/{vmid}/lease/renew`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewLeaseRequest {
    pub ttl_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenewLeaseResponse {
    pub vmid: u32,
    pub lease_expires_at: Option<String>,
}

/// The body of an operation that takes no arguments (`start`, `stop`, `pause`, `resume`,
/// `stop_all`, `prune`, job `cancel`): `{}`, or empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

/// `POST /v1/sandboxes/{vmid}/revert` (the body may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    #[serde(default)]
    pub force: bool,
    /// Start the VM after the rollback; unset: start it if it was running.
    #[serde(default)]
    pub restart: Option<bool>,
}

/// `POST /v1/sandboxes/{vmid}/snapshots` (save: `name` required) and
/// `POST …/snapshots/{name}/restore` (the name is in the path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/sandboxes/{vmid}/update`: at least one field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `POST /v1/sandboxes/reconcile` (the body may be empty): a dry run unless `apply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    #[serde(default)]
    pub apply: bool,
}
