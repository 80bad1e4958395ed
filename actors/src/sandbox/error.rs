//! What can go wrong in a sandbox's work, one variant per cause a caller tells apart.
//!
//! Proxmox errors keep their class (`PveError`), so retrying and reporting never read
//! message text; `code()` is the API code an operator's request gets.

use crate::model::{ErrorCode, Step};
use crate::store::StoreError;
use agentlab_proxmox::PveError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The VM at this VMID is not AgentLab's: nothing was touched.
    #[error(
        "VM {vmid} is not tagged `agentlab`: AgentLab never changes or destroys a VM it does not own; remove it by hand if it is yours"
    )]
    NotOurs { vmid: u32 },
    #[error("{what}: {source}")]
    Proxmox {
        what: &'static str,
        #[source]
        source: PveError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("profile `{0}` is no longer loaded; restore it in profiles_dir and `systemctl reload agentlabd`")]
    ProfileGone(String),
    #[error(
        "template VM {template} (profile `{profile}`) is not in the Proxmox cluster; create the template or fix the profile's template_vmid"
    )]
    TemplateMissing { template: u32, profile: String },
    #[error("the sandbox has no node recorded")]
    NoNode,
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("provisioning did not finish within provisioning_timeout ({0:?})")]
    ProvisioningTimeout(std::time::Duration),
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    GuestDevices(#[from] super::guest_devices::GuestDeviceError),
    #[error(transparent)]
    SnippetStorage(#[from] super::snippet_storage::SnippetStorageError),
    #[error(transparent)]
    Placement(#[from] super::placement::PlacementError),
    #[error(
        "VM {vmid}'s disks are on ZFS storage `{storage}`, which rolls back only to the newest snapshot, and {} newer than `{snapshot}`: {}; delete them first, or pass --force to delete them and roll back",
        if .newer.len() == 1 { "one snapshot is" } else { "these snapshots are" },
        .newer.join(", ")
    )]
    NewerSnapshots { vmid: u32, snapshot: String, newer: Vec<String>, storage: String },
    #[error(
        "VM {vmid}'s destroy was interrupted: its config is only `lock: destroyed`, which only root@pam may remove (an API token cannot); on node `{node}` run `qm unlock {vmid} && qm destroy {vmid} --purge 1` — AgentLab retries and finishes the cleanup once it is gone"
    )]
    InterruptedDestroy { vmid: u32, node: String },
    /// Proxmox says the VM has no `agent` key although configure set it.
    #[error(
        "VM {vmid} has no guest agent configured (Proxmox: No QEMU guest agent configured); something removed `agent` from its config — check template VM {template} and any hookscript, then create the sandbox again"
    )]
    AgentNotConfigured { vmid: u32, template: u32 },
    #[error(
        "the guest agent of VM {vmid} did not answer within {waited:?} of boot (guest_agent_timeout): the image of template VM {template} must run qemu-guest-agent — install it in the template (`apt install qemu-guest-agent`, `systemctl enable qemu-guest-agent`) or raise guest_agent_timeout for slow guests"
    )]
    GuestAgentSilent { vmid: u32, template: u32, waited: std::time::Duration },
    #[error("cannot load the host nftables ruleset: {0}; check with `agentlabd net check`")]
    HostTable(String),
    /// The sandbox's workspace could not be attached or detached.
    #[error("workspace: {}", .0.message)]
    Workspace(crate::model::Refusal),
}

impl SandboxError {
    /// Wraps a Proxmox error with what was being done.
    pub fn pve(what: &'static str) -> impl FnOnce(PveError) -> SandboxError {
        move |source| SandboxError::Proxmox { what, source }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            SandboxError::NotOurs { .. } | SandboxError::InterruptedDestroy { .. } => ErrorCode::Conflict,
            SandboxError::Proxmox { .. } => ErrorCode::ProxmoxUnavailable,
            SandboxError::Store(_) => ErrorCode::StoreFailed,
            SandboxError::ProfileGone(_) => ErrorCode::UnknownProfile,
            SandboxError::TemplateMissing { .. } => ErrorCode::ProvisionFailed,
            SandboxError::NoNode | SandboxError::NotAllowed(_) | SandboxError::NewerSnapshots { .. } => {
                ErrorCode::InvalidState
            }
            SandboxError::File { .. }
            | SandboxError::ProvisioningTimeout(_)
            | SandboxError::GuestDevices(_)
            | SandboxError::SnippetStorage(_)
            | SandboxError::Placement(_)
            | SandboxError::AgentNotConfigured { .. }
            | SandboxError::GuestAgentSilent { .. }
            | SandboxError::HostTable(_) => ErrorCode::ProvisionFailed,
            SandboxError::Workspace(refusal) => refusal.code,
        }
    }
}

/// Why provisioning stopped: the step, and what went wrong in it.
#[derive(Debug, thiserror::Error)]
#[error("provisioning failed at step {step}: {error}")]
pub struct ProvisionFailure {
    pub step: Step,
    #[source]
    pub error: SandboxError,
}
