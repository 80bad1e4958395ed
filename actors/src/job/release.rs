//! The end of a job on its sandbox: destroyed, unless the job asked for keepalive and was
//! not canceled (a canceled job's sandbox always goes).

use super::JobContext;
use crate::model::{JobState, SandboxState};
use crate::sandbox::SandboxMsg;
use crate::store::JobRecord;
use std::time::Duration;

pub async fn release(ctx: &JobContext, job: &JobRecord) -> Result<(), String> {
    let vmid = match job.sandbox_vmid {
        Some(vmid) => vmid,
        None => match ctx.store.sandbox_of_job(&job.id).map_err(|e| e.to_string())? {
            Some(vmid) => vmid,
            None => return Ok(()),
        },
    };
    let keep = job.keepalive && matches!(job.status, JobState::Completed | JobState::Failed | JobState::Timeout);
    let Some(record) = ctx.store.get_sandbox(vmid).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    if keep || record.state == SandboxState::Destroyed {
        return Ok(());
    }
    let actor = match crate::sandbox::actor_of(vmid) {
        Some(actor) => actor,
        None => {
            crate::root::request_spawn(crate::sandbox::KIND, &vmid.to_string()).await?;
            crate::sandbox::actor_of(vmid).ok_or_else(|| format!("sandbox {vmid} has no actor"))?
        }
    };
    let wait = ctx.sandboxes.settings.provisioning_timeout + Duration::from_secs(120);
    match actor.call(|reply| SandboxMsg::Destroy { force: true, by: None, reply }, Some(wait)).await {
        Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(e.message),
        Ok(ractor::rpc::CallResult::Timeout) => {
            Err(format!("sandbox {vmid} did not finish destroying within {wait:?}"))
        }
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            // The actor stopped: it stops after DESTROYED, so look at the record.
            match ctx.store.get_sandbox(vmid).map_err(|e| e.to_string())? {
                Some(r) if r.state != SandboxState::Destroyed => {
                    Err(format!("sandbox {vmid} stopped while {}", r.state))
                }
                _ => Ok(()),
            }
        }
    }
}
