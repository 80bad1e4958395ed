//! Asking a sandbox's actor from outside (sessions, workspace rebind): wait until it is
//! READY, destroy it.

use super::{SandboxMsg, Settled};
use crate::model::{ErrorCode, Refusal, SandboxState};
use crate::store::Store;
use std::time::Duration;

async fn actor(vmid: u32) -> Result<ractor::ActorRef<SandboxMsg>, Refusal> {
    crate::root::ensure_actor::<SandboxMsg>(super::KIND, &vmid.to_string())
        .await
        .map_err(|e| Refusal::new(ErrorCode::ActorUnavailable, e.to_string()))?
        .ok_or_else(|| Refusal::new(ErrorCode::ActorUnavailable, format!("sandbox {vmid} has no actor")))
}

/// Waits (up to `wait`) until sandbox `vmid` is READY.
pub async fn wait_ready(vmid: u32, wait: Duration) -> Result<(), Refusal> {
    match actor(vmid).await?.call(SandboxMsg::WaitSettled, Some(wait)).await {
        Ok(ractor::rpc::CallResult::Success(Settled::Ready(_))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Settled::Failed(view))) => Err(Refusal::new(
            ErrorCode::ProvisionFailed,
            format!("sandbox {vmid} {}: {}", view.state, view.error.unwrap_or_else(|| "provisioning failed".into())),
        )),
        _ => Err(Refusal::new(ErrorCode::ActorUnavailable, format!("sandbox {vmid} did not become READY"))),
    }
}

/// Destroys sandbox `vmid` (its teardown shuts it down and detaches its workspace); one
/// that is gone already is done.
pub async fn destroy(store: &Store, vmid: u32) -> Result<(), Refusal> {
    let record = store.get_sandbox(vmid).map_err(|e| Refusal::new(ErrorCode::StoreFailed, e.to_string()))?;
    if record.is_none_or(|r| r.state == SandboxState::Destroyed) {
        return Ok(());
    }
    let wait = Duration::from_secs(600);
    match actor(vmid).await?.call(|reply| SandboxMsg::Destroy { force: true, by: None, reply }, Some(wait)).await {
        Ok(ractor::rpc::CallResult::Success(answer)) => answer.map(|_| ()),
        _ => Err(Refusal::new(ErrorCode::ActorUnavailable, format!("sandbox {vmid} did not answer the destroy"))),
    }
}
