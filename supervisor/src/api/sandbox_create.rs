//! `POST /v1/sandboxes`: validate, record the sandbox (reserving its VMID, checked with
//! Proxmox's own `nextid`), spawn its actor, and wait until it is READY or failed (or, with
//! `?wait=false`, answer 202 at once).

use super::sandbox_ops::{ask, sandbox_actor};
use super::{ApiError, AppState, Peer, StrictJson};
use agentlab_actors::model::ErrorCode;
use agentlab_actors::protocol::{CreateSandboxRequest, CreateSandboxResponse, PhaseTiming};
use agentlab_actors::sandbox::allocate::{AllocateError, SandboxRequest, allocate};
use agentlab_actors::sandbox::{SandboxMsg, Settled};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use std::time::Duration;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// false: answer 202 as soon as the sandbox is recorded and follow its events instead.
    wait: Option<bool>,
}

pub async fn create(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    axum::extract::Query(query): axum::extract::Query<CreateQuery>,
    StrictJson(req): StrictJson<CreateSandboxRequest>,
) -> Result<(StatusCode, Json<CreateSandboxResponse>), ApiError> {
    let profiles = app.profiles.snapshot();
    let profile = &profiles.resolve(&req.profile)?.profile;
    let profile_name = profile.name.clone();
    let workspace = match &req.workspace_id {
        Some(id) => Some(agentlab_actors::workspace::claimable(&app.store, id)?.id),
        None => None,
    };
    if req.job_id.is_some() {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "binding a sandbox to a job is not available in this version yet; use `agentlab job run` once jobs land",
        ));
    }
    if req.ttl_minutes == Some(0) {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            "ttl_minutes must be greater than 0 (omit it for the profile's default)",
        ));
    }
    if let Some(ttl) = req.ttl_minutes.or(profile.behavior.ttl_minutes_default) {
        let what = if req.ttl_minutes.is_some() { "ttl_minutes" } else { "the profile's ttl_minutes_default" };
        app.sandboxes.settings.check_ttl(ttl, what)?;
    }
    let tags = agentlab_actors::model::tags::normalize(&req.tags)
        .map_err(|e| ApiError::new(ErrorCode::InvalidValue, e.to_string()))?;
    if let Some(vmid) = req.vmid
        && !(100..=999_999_999).contains(&vmid)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            format!("vmid {vmid} is not a Proxmox VMID (100 to 999999999)"),
        ));
    }
    let request = SandboxRequest {
        name: req.name.clone(),
        profile: profile_name.clone(),
        ttl_minutes: req.ttl_minutes,
        keepalive: req.keepalive,
        tags,
        vmid: req.vmid,
        job_id: None,
        workspace_id: workspace,
        peer_uid: peer.uid,
        pool: None,
    };
    let record = allocate(&app.sandboxes, &request).await.map_err(|e| match e {
        AllocateError::Store(e) => e.into(),
        other => ApiError::new(other.code(), other.to_string()),
    })?;
    let vmid = record.vmid;
    let sandbox = sandbox_actor(vmid).await?;
    if query.wait == Some(false) {
        return Ok((StatusCode::ACCEPTED, Json(CreateSandboxResponse { timings: Vec::new(), sandbox: record.view() })));
    }
    let wait_ms = (app.config.provisioning_timeout + Duration::from_secs(30)).as_millis() as u64;
    let settled =
        ask(&sandbox, &format!("sandbox {vmid}"), Duration::from_millis(wait_ms), SandboxMsg::WaitSettled).await?;
    match settled {
        Settled::Ready(view) => {
            Ok((StatusCode::CREATED, Json(CreateSandboxResponse { timings: timings(&app, vmid), sandbox: view })))
        }
        Settled::Failed(view) => Err(ApiError::new(
            ErrorCode::ProvisionFailed,
            format!(
                "sandbox {vmid} {}: {}",
                view.state,
                view.error.clone().unwrap_or_else(|| "provisioning failed".into())
            ),
        )
        .with_details(serde_json::json!({"vmid": vmid, "state": view.state, "timings": timings(&app, vmid)}))),
    }
}

fn timings(app: &AppState, vmid: u32) -> Vec<PhaseTiming> {
    app.store.provision_timings(vmid).unwrap_or_default()
}
