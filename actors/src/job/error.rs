//! What can go wrong with a job's sandbox, from the job actor's side.

use crate::root::SpawnError;
use crate::sandbox::allocate::AllocateError;
use crate::store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("Proxmox is unavailable: {0}")]
    ProxmoxUnavailable(String),
    #[error(transparent)]
    Allocate(AllocateError),
    #[error("sandbox {vmid} has no actor")]
    NoActor { vmid: u32 },
    #[error("sandbox {vmid} is {state}: {reason}")]
    SandboxFailed { vmid: u32, state: String, reason: String },
    #[error("sandbox {vmid} was not ready within {wait:?}")]
    NotReady { vmid: u32, wait: Duration },
    #[error("sandbox {vmid} stopped before it was ready")]
    StoppedBeforeReady { vmid: u32 },
    #[error("sandbox {vmid} did not finish destroying within {wait:?}")]
    DestroyTooSlow { vmid: u32, wait: Duration },
    #[error("sandbox {vmid} stopped while {state}")]
    StoppedWhile { vmid: u32, state: String },
    #[error("{0}")]
    DestroyRefused(crate::model::Refusal),
}

impl From<AllocateError> for JobError {
    fn from(e: AllocateError) -> Self {
        match e {
            AllocateError::Proxmox(e) => JobError::ProxmoxUnavailable(e),
            other => JobError::Allocate(other),
        }
    }
}
