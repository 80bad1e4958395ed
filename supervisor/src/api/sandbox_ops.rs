//! Operations on one sandbox: destroy, lease renewal, start/stop/pause/resume, revert,
//! snapshots, update. Each is one message to one `sandbox:<vmid>` actor.

use super::{ApiError, AppState, Peer, StrictJson};
use agentlab_actors::model::{ErrorCode, SandboxState};
use agentlab_actors::protocol::{
    DestroySandboxRequest, RenewLeaseRequest, RenewLeaseResponse, RevertRequest, SandboxView, SnapshotRequest,
    UpdateRequest,
};
use agentlab_actors::sandbox::{SandboxMsg, SandboxOp};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use ractor::ActorRef;
use std::time::Duration;

const ACTOR_TIMEOUT_MS: u64 = 10_000;

/// One request-reply to an actor, with the API's errors for "gone" and "too slow".
pub(super) async fn ask<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    what: &str,
    timeout: Duration,
    build: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
) -> Result<T, ApiError> {
    match actor.call(build, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
        Ok(ractor::rpc::CallResult::Timeout) => {
            Err(ApiError::new(ErrorCode::ActorUnavailable, format!("{what} did not answer within {timeout:?}")))
        }
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            Err(ApiError::new(ErrorCode::ActorUnavailable, format!("{what} stopped before answering; retry")))
        }
    }
}

/// The sandbox's actor, spawned from its record if it has none.
pub(super) async fn sandbox_actor(vmid: u32) -> Result<ActorRef<SandboxMsg>, ApiError> {
    agentlab_actors::root::ensure_actor::<SandboxMsg>(agentlab_actors::sandbox::KIND, &vmid.to_string())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ActorUnavailable, format!("sandbox {vmid} has no actor")))
}

fn vmid_of(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>().ok().filter(|v| *v >= 100).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidValue, format!("invalid vmid `{text}`: expected a number of at least 100"))
    })
}

/// The actor of a live sandbox; a record whose actor is gone gets one again.
pub(super) async fn live_actor(
    app: &AppState,
    vmid: u32,
) -> Result<Result<ActorRef<SandboxMsg>, SandboxView>, ApiError> {
    let record = app.store.get_sandbox(vmid)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::SandboxNotFound,
            format!("sandbox {vmid} not found; AgentLab only manages sandboxes it created (`agentlab sandbox list`)"),
        )
    })?;
    if record.state == SandboxState::Destroyed {
        return Ok(Err(record.view()));
    }
    sandbox_actor(vmid).await.map(Ok)
}

pub async fn destroy(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    body: Bytes,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let req: DestroySandboxRequest = optional_body(&body)?;
    let actor = match live_actor(&app, vmid).await? {
        Ok(actor) => actor,
        // Destroying a destroyed sandbox is done.
        Err(view) => return Ok(Json(view)),
    };
    let wait_ms = (app.config.proxmox.command_timeout * 4 + Duration::from_secs(30)).as_millis() as u64;
    let answer = ask(&actor, &format!("sandbox {vmid}"), Duration::from_millis(wait_ms), |reply| SandboxMsg::Destroy {
        force: req.force,
        by: peer.uid,
        reply,
    })
    .await?;
    answer.map(Json).map_err(ApiError::from)
}

pub async fn renew_lease(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    StrictJson(req): StrictJson<RenewLeaseRequest>,
) -> Result<Json<RenewLeaseResponse>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    app.sandboxes.settings.check_ttl(req.ttl_minutes, "ttl_minutes")?;
    let actor = live_actor(&app, vmid).await?.map_err(|view| {
        ApiError::new(ErrorCode::InvalidState, format!("sandbox {vmid} is {}; its lease cannot be renewed", view.state))
    })?;
    let length = app.config.lease_length(req.ttl_minutes);
    let until = app.sandboxes.settings.clock.now() + length;
    let view = ask(&actor, &format!("sandbox {vmid}"), Duration::from_millis(ACTOR_TIMEOUT_MS), |reply| {
        SandboxMsg::RenewLease { until, by: peer.uid, reply }
    })
    .await?
    .map_err(ApiError::from)?;
    Ok(Json(RenewLeaseResponse { vmid, lease_expires_at: view.lease_expires_at }))
}

/// Debug builds only: makes a sandbox actor panic, to test crash isolation.
#[cfg(debug_assertions)]
pub async fn debug_panic(Path(vmid): Path<String>) -> Result<StatusCode, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let actor = agentlab_actors::sandbox::actor_of(vmid)
        .ok_or_else(|| ApiError::new(ErrorCode::SandboxNotFound, format!("sandbox {vmid} has no live actor")))?;
    actor.send_message(SandboxMsg::Panic).map_err(|e| ApiError::new(ErrorCode::ActorUnavailable, e.to_string()))?;
    Ok(StatusCode::ACCEPTED)
}

/// Sends an operation to a sandbox's actor and maps its answer.
pub(super) async fn run_op(
    app: &AppState,
    peer: Peer,
    vmid: u32,
    op: SandboxOp,
    force: bool,
) -> Result<SandboxView, ApiError> {
    let actor = live_actor(app, vmid).await?.map_err(|view| {
        ApiError::new(ErrorCode::InvalidState, format!("sandbox {vmid} is {}; nothing can be done with it", view.state))
    })?;
    let wait = app.config.provisioning_timeout + app.config.proxmox.command_timeout * 4;
    ask(&actor, &format!("sandbox {vmid}"), wait, |reply| SandboxMsg::Operate { op, force, by: peer.uid, reply })
        .await?
        .map_err(ApiError::from)
}

pub(super) fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidValue, format!("invalid request: {e}")))
    }
}

/// `POST /v1/sandboxes/{vmid}/{start|stop|pause|resume}`.
pub async fn simple_op(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path((vmid, action)): Path<(String, String)>,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let op = match action.as_str() {
        "start" => SandboxOp::Start,
        "stop" => SandboxOp::Stop,
        "pause" => SandboxOp::Pause,
        "resume" => SandboxOp::Resume,
        other => return Err(ApiError::new(ErrorCode::RouteNotFound, format!("no sandbox operation `{other}`"))),
    };
    run_op(&app, peer, vmid, op, false).await.map(Json)
}

pub async fn revert(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    body: Bytes,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let req: RevertRequest = optional_body(&body)?;
    run_op(&app, peer, vmid, SandboxOp::Revert { restart: req.restart }, req.force).await.map(Json)
}

pub(super) fn snapshot_name(name: &str) -> Result<String, ApiError> {
    let ok = name.len() <= 40
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() >= 2
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(name, "current" | "pending");
    if ok {
        Ok(name.to_string())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidValue,
            format!(
                "invalid snapshot name `{name}`: 2-40 letters, digits, `_`, `-`, starting with a letter (not `current` or `pending`)"
            ),
        ))
    }
}

pub async fn snapshot_save(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<SandboxView>), ApiError> {
    let vmid = vmid_of(&vmid)?;
    let req: SnapshotRequest = optional_body(&body)?;
    let name = snapshot_name(&req.name)?;
    run_op(&app, peer, vmid, SandboxOp::SnapshotSave { name }, req.force).await.map(|v| (StatusCode::CREATED, Json(v)))
}

pub async fn snapshot_restore(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path((vmid, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let req: SnapshotRequest = optional_body(&body)?;
    let name = snapshot_name(&name)?;
    run_op(&app, peer, vmid, SandboxOp::SnapshotRestore { name }, req.force).await.map(Json)
}

pub async fn snapshot_list(
    State(app): State<AppState>,
    Path(vmid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let record = app
        .store
        .get_sandbox(vmid)?
        .ok_or_else(|| ApiError::new(ErrorCode::SandboxNotFound, format!("sandbox {vmid} not found")))?;
    let node =
        record.node.ok_or_else(|| ApiError::new(ErrorCode::InvalidState, format!("sandbox {vmid} has no VM yet")))?;
    let snapshots = app
        .gateway
        .snapshots(&node, vmid)
        .await
        .map_err(|e| ApiError::new(ErrorCode::ProxmoxUnavailable, e.to_string()))?;
    let list: Vec<serde_json::Value> = snapshots
        .iter()
        .map(
            |s| serde_json::json!({"vmid": vmid, "name": s.name, "description": s.description, "snaptime": s.snaptime}),
        )
        .collect();
    Ok(Json(serde_json::json!({"snapshots": list})))
}

pub async fn update(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    StrictJson(req): StrictJson<UpdateRequest>,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    if req.cores.is_none() && req.memory_mb.is_none() && req.tags.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidValue, "nothing to update: give cores, memory_mb or tags"));
    }
    if req.cores == Some(0) || req.memory_mb.is_some_and(|m| m < 64) {
        return Err(ApiError::new(ErrorCode::InvalidValue, "cores must be at least 1 and memory_mb at least 64"));
    }
    let tags = match &req.tags {
        Some(tags) => Some(
            agentlab_actors::model::tags::normalize(tags)
                .map_err(|e| ApiError::new(ErrorCode::InvalidValue, e.to_string()))?,
        ),
        None => None,
    };
    let op = SandboxOp::Update { cores: req.cores, memory_mb: req.memory_mb, tags };
    run_op(&app, peer, vmid, op, false).await.map(Json)
}
