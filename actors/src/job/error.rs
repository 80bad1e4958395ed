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

impl JobError {
    /// The API code a caller of the job's sandbox operations gets.
    pub fn code(&self) -> crate::model::ErrorCode {
        use crate::model::ErrorCode;
        match self {
            JobError::Store(_) => ErrorCode::StoreFailed,
            JobError::Spawn(_) | JobError::NoActor { .. } | JobError::StoppedBeforeReady { .. } => {
                ErrorCode::ActorUnavailable
            }
            JobError::ProxmoxUnavailable(_) => ErrorCode::ProxmoxUnavailable,
            JobError::Allocate(AllocateError::UnknownProfile(_)) => ErrorCode::UnknownProfile,
            JobError::Allocate(AllocateError::Conflict(_)) => ErrorCode::Conflict,
            JobError::Allocate(AllocateError::NoIsolation(_)) => ErrorCode::NoIsolation,
            JobError::Allocate(_) => ErrorCode::Internal,
            JobError::SandboxFailed { .. } | JobError::NotReady { .. } => ErrorCode::ProvisionFailed,
            JobError::DestroyTooSlow { .. } | JobError::StoppedWhile { .. } => ErrorCode::Internal,
            JobError::DestroyRefused(refusal) => refusal.code,
        }
    }
}

impl From<AllocateError> for JobError {
    fn from(e: AllocateError) -> Self {
        match e {
            AllocateError::Proxmox(e) => JobError::ProxmoxUnavailable(e),
            other => JobError::Allocate(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorCode, Refusal};

    #[test]
    fn each_cause_has_its_code() {
        let cases = [
            (JobError::ProxmoxUnavailable("down".into()), ErrorCode::ProxmoxUnavailable),
            (
                JobError::SandboxFailed { vmid: 1, state: "FAILED".into(), reason: "x".into() },
                ErrorCode::ProvisionFailed,
            ),
            (JobError::NoActor { vmid: 1 }, ErrorCode::ActorUnavailable),
            (JobError::DestroyRefused(Refusal::new(ErrorCode::Conflict, "not ours")), ErrorCode::Conflict),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
        let allocate: JobError = AllocateError::Proxmox("unreachable".into()).into();
        assert_eq!(allocate.to_string(), "Proxmox is unavailable: unreachable");
    }
}
