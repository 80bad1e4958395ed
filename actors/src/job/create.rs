//! Creating a job (validate the request, check its secrets open, record it QUEUED, start its
//! actor) and provisioning its sandbox (record or find it, start its actor, wait for READY).

use super::JobError;
use super::{DEADLINE_GRACE_MINUTES, JobContext, SANDBOX_LEASE_GRACE_MINUTES, new_job_id};
use crate::model::Refusal;
use crate::model::{ErrorCode, JobState};
use crate::protocol::{Agent, CreateJobRequest, JobMode};
use crate::sandbox::allocate::{SandboxRequest, allocate};
use crate::sandbox::{SandboxMsg, Settled};
use crate::store::JobRecord;
use std::time::Duration;

/// The default agent when a request names none.
/// A job's TTL when neither the request nor the profile gives one.
pub const DEFAULT_TTL_MINUTES: u32 = 60;
const MAX_TASK_BYTES: usize = 64 * 1024;

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal { code: ErrorCode::InvalidValue, message: message.into() }
}

/// A repository the runner can clone; never something git would read as an option.
fn check_repo_url(url: &str) -> Result<(), Refusal> {
    let url = url.trim();
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    let scp_like = url.split_once(':').is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
    if url.is_empty() || url.len() > 2048 || url.starts_with('-') || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(format!("repo_url `{url}` is not a repository URL")));
    }
    if !(schemes.iter().any(|s| url.starts_with(s)) || scp_like || url.starts_with('/')) {
        return Err(invalid(format!(
            "repo_url `{url}` is not a repository URL: use https://, ssh://, git@host:path, file:// or an absolute path"
        )));
    }
    Ok(())
}

fn check_ref(git_ref: &str) -> Result<(), Refusal> {
    let ok = !git_ref.is_empty()
        && git_ref.len() <= 255
        && !git_ref.starts_with('-')
        && !git_ref.contains("..")
        && git_ref.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    if ok { Ok(()) } else { Err(invalid(format!("ref `{git_ref}` is not a branch, tag or commit name"))) }
}

/// Validates `req`, checks the job's secrets bundle opens, and records the job QUEUED.
/// The caller starts its actor.
pub async fn create(ctx: &JobContext, req: &CreateJobRequest, peer_uid: Option<u32>) -> Result<JobRecord, Refusal> {
    let profiles = ctx.profiles.snapshot();
    let profile = profiles.resolve(&req.profile)?.profile.clone();
    let profile_name = profile.name.clone();
    check_repo_url(&req.repo_url)?;
    if let Some(r) = &req.git_ref {
        check_ref(r)?;
    }
    if req.task.trim().is_empty() {
        return Err(invalid("task must not be empty: say what the agent should do"));
    }
    if req.task.len() > MAX_TASK_BYTES {
        return Err(invalid(format!("task is {} bytes; the limit is {MAX_TASK_BYTES}", req.task.len())));
    }
    let mode = match req.mode.as_deref().or(profile.behavior.mode.as_deref()) {
        Some(text) => text.parse::<JobMode>().map_err(|e| invalid(e.to_string()))?,
        None => JobMode::DEFAULT,
    };
    let agent = match req.agent.as_deref() {
        Some(text) => text.parse::<Agent>().map_err(|e| invalid(e.to_string()))?,
        None => Agent::DEFAULT,
    };
    let ttl = req.ttl_minutes.or(profile.behavior.ttl_minutes_default).unwrap_or(DEFAULT_TTL_MINUTES);
    let what = if req.ttl_minutes.is_some() { "ttl_minutes" } else { "the profile's ttl_minutes_default" };
    ctx.sandboxes.settings.check_ttl(ttl, what)?;
    // Decrypting is CPU work on a blocking thread; an unusable bundle fails the request now,
    // not the guest later.
    let check = {
        let profile = profile_name.clone();
        let (settings, profiles) = (ctx.settings.secrets.clone(), std::sync::Arc::clone(&ctx.profiles));
        tokio::task::spawn_blocking(move || super::secrets::check(&settings, &profiles, &profile))
    };
    match check.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(Refusal {
                code: ErrorCode::SecretsInvalid,
                message: format!("the job's secrets bundle cannot be used: {e} ({})", e.code()),
            });
        }
        Err(e) => return Err(Refusal { code: ErrorCode::Internal, message: format!("secrets check failed: {e}") }),
    }
    let workspace_id = match &req.workspace_id {
        Some(id) => Some(claim_workspace(ctx, id, req.workspace_wait_seconds.unwrap_or(0)).await?),
        None => None,
    };
    let id = new_job_id().map_err(|e| Refusal { code: ErrorCode::Internal, message: format!("no randomness: {e}") })?;
    let now = ctx.sandboxes.settings.clock.now();
    let deadline = now + ctx.minute() * (ttl + DEADLINE_GRACE_MINUTES) + ctx.sandboxes.settings.provisioning_timeout;
    let job = JobRecord {
        id,
        repo_url: req.repo_url.trim().to_string(),
        git_ref: req.git_ref.clone(),
        profile: profile_name,
        task: req.task.clone(),
        mode,
        agent,
        ttl_minutes: ttl,
        keepalive: req.keepalive.unwrap_or(profile.behavior.keepalive_default),
        status: JobState::Queued,
        sandbox_vmid: None,
        workspace_id,
        log_bytes: 0,
        result: None,
        error: None,
        deadline_at: deadline,
        sandbox_released: false,
        created_at: now,
        updated_at: now,
    };
    ctx.store
        .insert_job(&job, peer_uid)
        .map_err(|e| Refusal { code: ErrorCode::StoreFailed, message: e.to_string() })?;
    Ok(job)
}

/// The workspace's id once it is ready and detached, polled (250 ms, doubling to 5 s) for up
/// to `wait_seconds` while another sandbox has it.
async fn claim_workspace(ctx: &JobContext, id: &str, wait_seconds: u32) -> Result<String, Refusal> {
    let clock = ctx.clock();
    let until = clock.now() + time::Duration::seconds(i64::from(wait_seconds));
    let mut delay = Duration::from_millis(250);
    loop {
        match crate::workspace::claimable(&ctx.store, id) {
            Ok(rec) => return Ok(rec.id),
            Err(refusal) if refusal.code == ErrorCode::WorkspaceAttached && clock.now() < until => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(refusal) => return Err(refusal),
        }
    }
}

/// Finds or records the job's sandbox, starts its actor and waits until it is READY.
/// Returns the VMID, or why the sandbox could not be had.
pub async fn provision_sandbox(ctx: &JobContext, job: &JobRecord) -> Result<u32, JobError> {
    let known = match job.sandbox_vmid {
        Some(vmid) => Some(vmid),
        None => ctx.store.sandbox_of_job(&job.id)?,
    };
    let vmid = match known {
        Some(vmid) => vmid,
        None => {
            let request = SandboxRequest {
                name: Some(format!("job-{}", job.id.trim_start_matches("job_"))),
                profile: job.profile.clone(),
                ttl_minutes: Some(job.ttl_minutes + SANDBOX_LEASE_GRACE_MINUTES),
                keepalive: Some(job.keepalive),
                tags: vec!["job".into()],
                vmid: None,
                job_id: Some(job.id.clone()),
                workspace_id: job.workspace_id.clone(),
                peer_uid: None,
                pool: None,
            };
            allocate(&ctx.sandboxes, &request).await?.vmid
        }
    };
    if job.sandbox_vmid != Some(vmid) {
        ctx.store.set_job_sandbox(&job.id, vmid)?;
    }
    let actor = crate::root::ensure_actor::<SandboxMsg>(crate::sandbox::KIND, &vmid.to_string())
        .await?
        .ok_or(JobError::NoActor { vmid })?;
    let wait = ctx.sandboxes.settings.provisioning_timeout + Duration::from_secs(60);
    match actor.call(SandboxMsg::WaitSettled, Some(wait)).await {
        Ok(ractor::rpc::CallResult::Success(Settled::Ready(_))) => Ok(vmid),
        Ok(ractor::rpc::CallResult::Success(Settled::Failed(view))) => Err(JobError::SandboxFailed {
            vmid,
            state: view.state.to_string(),
            reason: view.error.unwrap_or_else(|| "provisioning failed".into()),
        }),
        Ok(ractor::rpc::CallResult::Timeout) => Err(JobError::NotReady { vmid, wait }),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(JobError::StoppedBeforeReady { vmid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_and_refs_that_git_would_misread_are_refused() {
        for good in ["https://github.com/o/r.git", "git@github.com:o/r.git", "/srv/git/r", "file:///srv/r", "ssh://h/r"]
        {
            assert!(check_repo_url(good).is_ok(), "{good}");
        }
        for bad in ["", "--upload-pack=touch /tmp/x", "r", "https://h/a b", "relative/path"] {
            assert!(check_repo_url(bad).is_err(), "{bad}");
        }
        for good in ["main", "v1.2.3", "feature/x", "0123abcd"] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in ["-f", "a..b", "a b", "x:y", ""] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }
}
