//! `POST /v1/bootstrap/fetch`: trade a sandbox's one-time bootstrap token for its job's
//! payload. The payload (secrets decrypted in memory) is built first, then the token is
//! consumed and the job's runner and artifact tokens stored in one transaction: a guest
//! either gets a payload whose tokens work, or its token stays unused.
//!
//! The runner of a pooled sandbox (`pool`) fetches before any job is assigned: the fetch is
//! held until a claim (at most `pooled_hold`) and answered "wait" if none came, so the
//! runner asks again and a claimed sandbox starts its job without a reboot.

use super::JobContext;
use crate::model::Refusal;
use crate::model::{ErrorCode, time_format};
use crate::protocol::guest::{
    ArtifactEndpoint, BootstrapPayload, FetchRequest, GitCredentials, JobSpec, NO_JOB_ERROR, Policy,
};
use crate::store::{JobRecord, MintedTokens};
use crate::tokens::{random_token, token_hash};
use std::sync::Arc;

fn refused(message: impl Into<String>) -> Refusal {
    Refusal { code: ErrorCode::InvalidToken, message: message.into() }
}

fn internal(message: impl Into<String>) -> Refusal {
    Refusal { code: ErrorCode::Internal, message: message.into() }
}

/// How long a pooled guest's fetch is held waiting for a claim before it is told to ask
/// again: a third of a (scaled) minute, 20 s in production (well under the runner's 60 s
/// request timeout and the listener's), at least 1 s.
fn pooled_hold(ctx: &JobContext) -> std::time::Duration {
    (ctx.minute() / 3).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(20))
}

/// What a fetch gets.
#[derive(Debug)]
pub enum Fetched {
    Payload(Box<BootstrapPayload>),
    /// The sandbox is in the warm pool and nobody claimed it yet: ask again.
    Wait,
}

/// Answers a fetch; the errors carry the codes the guest listener maps to 404/403/500.
pub async fn fetch(ctx: &Arc<JobContext>, req: &FetchRequest, source: std::net::IpAddr) -> Result<Fetched, Refusal> {
    if req.token.is_empty() || req.vmid == 0 {
        return Err(Refusal { code: ErrorCode::InvalidValue, message: "token and vmid are required".into() });
    }
    let store = &ctx.store;
    // Every refusal looks the same to the guest — no address, no job's existence, no state
    // (security review F15) —; the reason goes to the daemon's log.
    let deny = |reason: String| {
        tracing::warn!(vmid = req.vmid, %source, %reason, "bootstrap fetch refused");
        refused("invalid or expired bootstrap token")
    };
    let hash = token_hash(&req.token);
    let claimed = ctx.sandboxes.claims.waiter();
    let mut sandbox = store.get_sandbox(req.vmid).map_err(|e| internal(e.to_string()))?;
    if sandbox.as_ref().is_some_and(|s| s.pool.is_some()) {
        // A pooled guest holds its unused token (expired or not: it counts from the claim).
        if !store.bootstrap_token_unused(&hash, req.vmid).map_err(|e| internal(e.to_string()))? {
            return Err(deny("not this pooled sandbox's unused token".into()));
        }
        check_source(sandbox.as_ref(), source).map_err(deny)?;
        if !claimed.wait(pooled_hold(ctx)).await {
            return Ok(Fetched::Wait);
        }
        sandbox = store.get_sandbox(req.vmid).map_err(|e| internal(e.to_string()))?;
        if sandbox.as_ref().is_some_and(|s| s.pool.is_some()) {
            return Ok(Fetched::Wait);
        }
    }
    if !store.bootstrap_token_valid(&hash, req.vmid).map_err(|e| internal(e.to_string()))? {
        // The runner of an interactive sandbox starting again (a reboot) holds its spent
        // token: it is told there is no job, and idles.
        let has_job = sandbox.as_ref().is_some_and(|s| s.job_id.is_some());
        if !has_job && store.bootstrap_token_known(&hash, req.vmid).map_err(|e| internal(e.to_string()))? {
            return Err(Refusal { code: ErrorCode::JobNotFound, message: NO_JOB_ERROR.into() });
        }
        return Err(deny("no unused, unexpired token for this VMID".into()));
    }
    check_source(sandbox.as_ref(), source).map_err(deny)?;
    // Only the holder of this VMID's token learns that its sandbox has no job (the runner
    // of an interactive sandbox then idles).
    let job_id = sandbox
        .and_then(|s| s.job_id)
        .ok_or_else(|| Refusal { code: ErrorCode::JobNotFound, message: NO_JOB_ERROR.into() })?;
    let job = store
        .get_job(&job_id)
        .map_err(|e| internal(e.to_string()))?
        .filter(|j| j.sandbox_vmid == Some(req.vmid))
        .ok_or_else(|| Refusal { code: ErrorCode::JobNotFound, message: NO_JOB_ERROR.into() })?;
    if job.status.is_final() {
        return Err(deny(format!("job {} already ended {}", job.id, job.status)));
    }
    let payload = {
        let ctx = Arc::clone(ctx);
        let job = job.clone();
        tokio::task::spawn_blocking(move || build(&ctx, &job))
            .await
            .map_err(|e| internal(format!("payload build failed: {e}")))??
    };
    let expires = time::OffsetDateTime::now_utc() + ctx.settings.artifact_token_ttl;
    let minted = MintedTokens {
        runner_token_hash: token_hash(&payload.runner_token),
        artifact_token_hash: token_hash(&payload.artifact.token),
        artifact_expires_at: time_format::format(expires),
    };
    if !store.exchange_bootstrap_token(&hash, req.vmid, &job.id, &minted).map_err(|e| internal(e.to_string()))? {
        return Err(refused("invalid or expired bootstrap token"));
    }
    tracing::info!(job = %job.id, vmid = req.vmid, "bootstrap payload delivered");
    Ok(Fetched::Payload(Box::new(payload)))
}

/// Once the guest's address is known, its token only works from it.
fn check_source(sandbox: Option<&crate::store::SandboxRecord>, source: std::net::IpAddr) -> Result<(), String> {
    match sandbox.and_then(|s| s.ip.as_deref()).and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(ip) if ip != source => {
            Err(format!("sandbox {} has address {ip}, not {source}", sandbox.map_or(0, |s| s.vmid)))
        }
        _ => Ok(()),
    }
}

/// The payload, with fresh runner and artifact tokens (their hashes are stored by the caller).
fn build(ctx: &JobContext, job: &JobRecord) -> Result<BootstrapPayload, Refusal> {
    let bundle = super::secrets::load(&ctx.settings.secrets, &ctx.profiles, &job.profile)
        .map_err(|e| internal(format!("the job's secrets bundle cannot be opened: {e}")))?
        .unwrap_or_default();
    let profile = ctx.profiles.snapshot().get(&job.profile).map(|p| p.profile.clone());
    let behavior = profile.map(|p| p.behavior).unwrap_or_default();
    let inner = serde_json::to_value(behavior.inner_sandbox)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "none".into());
    let mint = || random_token().map_err(|e| internal(format!("cannot read random bytes: {e}")));
    let git = bundle.git.clone().unwrap_or_default();
    let timeout = ctx.minute() * job.ttl_minutes;
    Ok(BootstrapPayload {
        job: JobSpec {
            id: job.id.clone(),
            repo_url: job.repo_url.clone(),
            git_ref: job.git_ref.clone(),
            task: job.task.clone(),
            mode: job.mode,
            profile: job.profile.clone(),
            agent: job.agent,
            keepalive: job.keepalive,
            ttl_minutes: job.ttl_minutes,
            timeout_seconds: timeout.as_secs().max(1),
        },
        git: GitCredentials {
            username: git.username,
            token: git.token,
            ssh_private_key: git.ssh_private_key,
            ssh_public_key: git.ssh_public_key,
            known_hosts: git.known_hosts,
        },
        env: bundle.env.clone(),
        claude_settings_json: bundle.claude_settings_json(),
        artifact: ArtifactEndpoint { endpoint: ctx.settings.artifact_upload_url.clone(), token: mint()? },
        runner_token: mint()?,
        policy: Policy { mode: job.mode, inner_sandbox: inner, inner_sandbox_args: behavior.inner_sandbox_args },
    })
}
