//! The end of a job on its sandbox: destroyed, unless the job asked for keepalive and was
//! not canceled (a canceled job's sandbox always goes).

use super::{JobContext, JobError};
use crate::model::{JobState, SandboxState};
use crate::sandbox::SandboxMsg;
use crate::store::JobRecord;
use std::time::Duration;

pub async fn release(ctx: &JobContext, job: &JobRecord) -> Result<(), JobError> {
    let vmid = match job.sandbox_vmid {
        Some(vmid) => vmid,
        None => match ctx.store.sandbox_of_job(&job.id)? {
            Some(vmid) => vmid,
            None => return Ok(()),
        },
    };
    let keep = job.keepalive && matches!(job.status, JobState::Completed | JobState::Failed | JobState::Timeout);
    let Some(record) = ctx.store.get_sandbox(vmid)? else {
        return Ok(());
    };
    if keep || record.state == SandboxState::Destroyed {
        return Ok(());
    }
    let actor = crate::root::ensure_actor::<SandboxMsg>(crate::sandbox::KIND, &vmid.to_string())
        .await?
        .ok_or(JobError::NoActor { vmid })?;
    let wait = ctx.sandboxes.settings.provisioning_timeout + Duration::from_secs(120);
    match actor.call(|reply| SandboxMsg::Destroy { force: true, by: None, reply }, Some(wait)).await {
        Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
        Ok(ractor::rpc::CallResult::Success(Err(refusal))) => Err(JobError::DestroyRefused(refusal)),
        Ok(ractor::rpc::CallResult::Timeout) => Err(JobError::DestroyTooSlow { vmid, wait }),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            // The actor stopped: it stops after DESTROYED, so look at the record.
            match ctx.store.get_sandbox(vmid)? {
                Some(r) if r.state != SandboxState::Destroyed => {
                    Err(JobError::StoppedWhile { vmid, state: r.state.to_string() })
                }
                _ => Ok(()),
            }
        }
    }
}
