//! Workspaces on the control API (`/v1/workspaces`).

use serde::{Deserialize, Serialize};

/// A persistent volume: owned by its holder VM (tagged `agentlab-workspace`, protected,
/// never started), attached to at most one sandbox at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceView {
    pub id: String,
    pub name: String,
    pub node: String,
    pub storage: String,
    pub size_gb: u32,
    /// The VM that owns the volume (never a sandbox).
    pub holder_vmid: u32,
    #[serde(default)]
    pub volid: Option<String>,
    /// `creating`, `ready`, `destroying` or `failed`.
    pub state: String,
    #[serde(default)]
    pub attached_vmid: Option<u32>,
    /// An attach or detach in progress (`attach:<vmid>`, `detach:<vmid>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacesResponse {
    pub workspaces: Vec<WorkspaceView>,
}

/// `POST /v1/workspaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRequest {
    pub name: String,
    pub size_gb: u32,
    /// Default: `workspace_storage` of the daemon's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Default: the template's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /v1/workspaces/{id}/attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachWorkspaceRequest {
    pub vmid: u32,
}

/// `POST /v1/workspaces/{id}/snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSnapshotRequest {
    pub name: String,
}

/// A snapshot of a workspace (of its holder VM, so of its volume alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSnapshot {
    pub name: String,
    /// Unix seconds.
    #[serde(default)]
    pub snaptime: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSnapshotsResponse {
    pub workspace: String,
    pub snapshots: Vec<WorkspaceSnapshot>,
}

/// `POST /v1/workspaces/{id}/fork`: a new workspace with a copy of this one's volume (as it
/// is now, or as it was in `from_snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkWorkspaceRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
}

/// One thing `workspace check` found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceFinding {
    /// Stable: `holder_missing`, `holder_not_ours`, `volume_missing`, `volume_not_attached`,
    /// `volume_wrong_slot`, `workspace_multi_attach`, `attached_vmid_stale`,
    /// `intent_pending`, `not_ready`.
    pub code: String,
    /// `error` (the workspace is not where its record says), `warning` or `info`.
    pub severity: String,
    pub message: String,
    pub remediation: String,
}

/// `GET /v1/workspaces/{id}/check`: the record against Proxmox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCheckResponse {
    pub workspace: String,
    /// No finding of severity `error`.
    pub ok: bool,
    pub findings: Vec<WorkspaceFinding>,
}

/// `POST /v1/workspaces/{id}/rebind`: move the workspace to a fresh sandbox of `profile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebindWorkspaceRequest {
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minutes: Option<u32>,
    /// Keep the old sandbox (without the workspace) instead of destroying it.
    #[serde(default)]
    pub keep_old: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebindWorkspaceResponse {
    pub workspace: WorkspaceView,
    /// The new sandbox, READY with the workspace.
    pub vmid: u32,
    #[serde(default)]
    pub old_vmid: Option<u32>,
}
