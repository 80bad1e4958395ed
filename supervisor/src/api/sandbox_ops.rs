//! Sandbox operations: create (waits until READY or failed), destroy, lease renewal. Each
//! is one message to one `sandbox:<vmid>` actor; creation first records the sandbox (the
//! VMID is reserved from that moment) and asks the root to spawn its actor.

use super::{ApiError, AppState, Peer, StrictJson};
use agentlab_actors::model::{ErrorCode, SandboxState, modifiers, time_format};
use agentlab_actors::protocol::{
    CreateSandboxRequest, CreateSandboxResponse, DestroySandboxRequest, PhaseTiming, RenewLeaseRequest,
    RenewLeaseResponse, SandboxView,
};
use agentlab_actors::root::RootMsg;
use agentlab_actors::sandbox::{SandboxMsg, SandboxOp, Settled};
use agentlab_actors::store::{EventPage, SandboxRecord};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use ractor::ActorRef;
use std::collections::HashSet;
use std::time::Duration;

const ACTOR_TIMEOUT_MS: u64 = 10_000;

/// One request-reply to an actor, with the API's errors for "gone" and "too slow".
async fn ask<M: ractor::Message, T: Send + 'static>(
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

async fn spawn_actor(app: &AppState, vmid: u32) -> Result<(), ApiError> {
    let kind = agentlab_actors::sandbox::KIND.to_string();
    ask(&app.root, "the root supervisor", Duration::from_millis(ACTOR_TIMEOUT_MS), |reply| RootMsg::SpawnEntity {
        kind,
        id: vmid.to_string(),
        reply,
    })
    .await?
    .map_err(|e| ApiError::new(ErrorCode::ActorUnavailable, e))
}

fn actor(vmid: u32) -> Option<ActorRef<SandboxMsg>> {
    ActorRef::<SandboxMsg>::where_is(format!("{}:{vmid}", agentlab_actors::sandbox::KIND))
}

fn tag_ok(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
}

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
    let names = profiles.names();
    let profile_name = modifiers::resolve_profile_name(&req.profile, &names).ok_or_else(|| {
        let near = modifiers::suggest_profiles(&req.profile, &names);
        let hint = if near.is_empty() { String::new() } else { format!(" (did you mean {}?)", near.join(", ")) };
        ApiError::new(
            ErrorCode::UnknownProfile,
            format!("unknown profile `{}`{hint}; `agentlab profile list` shows them", req.profile),
        )
    })?;
    let loaded =
        profiles.get(&profile_name).ok_or_else(|| ApiError::new(ErrorCode::UnknownProfile, "profile vanished"))?;
    let profile = &loaded.profile;
    if req.workspace_id.is_some() {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "workspaces are not available in this version of agentlabd yet; create the sandbox without --workspace",
        ));
    }
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
    if let Some(bad) = req.tags.iter().find(|t| !tag_ok(t)) {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            format!("invalid tag `{bad}`: letters, digits, `_`, `-`, `+`, `.`"),
        ));
    }
    if let Some(vmid) = req.vmid
        && !(100..=999_999_999).contains(&vmid)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            format!("vmid {vmid} is not a Proxmox VMID (100 to 999999999)"),
        ));
    }
    let cluster = app.gateway.cluster_vms().await.map_err(|e| {
        ApiError::new(
            ErrorCode::ProxmoxUnavailable,
            format!("cannot list the cluster's VMs: {e}; `agentlab status` shows why"),
        )
    })?;
    let taken: HashSet<u32> = cluster.iter().map(|v| v.vmid as u32).collect();
    if let Some(vmid) = req.vmid
        && taken.contains(&vmid)
    {
        return Err(ApiError::new(ErrorCode::Conflict, format!("VMID {vmid} is already used in the Proxmox cluster")));
    }
    let ttl = req.ttl_minutes.or(profile.behavior.ttl_minutes_default);
    let now = time::OffsetDateTime::now_utc();
    let lease = ttl.map(|m| {
        let length = Duration::from_secs(u64::from(m) * 60).mul_f64(app.config.test_time_scale);
        time_format::format(now + length)
    });
    let record = SandboxRecord {
        vmid: 0,
        name: req.name.clone().unwrap_or_default(),
        profile: profile_name.clone(),
        state: SandboxState::Requested,
        ip: None,
        node: None,
        tags: req.tags.clone(),
        keepalive: req.keepalive.unwrap_or(profile.behavior.keepalive_default),
        lease_expires_at: lease,
        last_used_at: None,
        network_mode: profile.network.mode,
        cores: profile.resources.cores,
        memory_mb: profile.resources.memory_mb,
        job_id: None,
        workspace_id: None,
        provision_step: None,
        snippet_path: None,
        error: None,
        ttl_minutes: ttl,
        description: profile.description.clone(),
        created_at: time_format::format(now),
        updated_at: time_format::format(now),
    };
    let range = app.config.vmid_min..=app.config.vmid_max;
    let mut taken = taken;
    // `/cluster/resources` can lag; `/cluster/nextid?vmid=N` is Proxmox's own check. A VMID
    // it refuses is given up (its record ends DESTROYED) and another one is chosen.
    let mut attempts = 0;
    let record = loop {
        let candidate = app.store.create_sandbox(record.clone(), req.vmid, range.clone(), &taken, peer.uid)?;
        match app.gateway.next_vmid(Some(candidate.vmid)).await {
            Ok(_) => break candidate,
            Err(e) => {
                let why = format!("VMID {} is not free in the cluster: {e}", candidate.vmid);
                app.store.transition_sandbox(
                    candidate.vmid,
                    SandboxState::Requested,
                    SandboxState::Destroyed,
                    Some(&why),
                    peer.uid,
                )?;
                attempts += 1;
                if req.vmid.is_some() || attempts >= 5 {
                    return Err(ApiError::new(ErrorCode::Conflict, why));
                }
                taken.insert(candidate.vmid);
            }
        }
    };
    let vmid = record.vmid;
    spawn_actor(&app, vmid).await?;
    if query.wait == Some(false) {
        return Ok((StatusCode::ACCEPTED, Json(CreateSandboxResponse { timings: Vec::new(), sandbox: record.view() })));
    }
    let sandbox = actor(vmid)
        .ok_or_else(|| ApiError::new(ErrorCode::ActorUnavailable, format!("sandbox {vmid} has no actor")))?;
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

/// Milliseconds between successive provisioning events (step starts, boot, ready).
fn timings(app: &AppState, vmid: u32) -> Vec<PhaseTiming> {
    let events = app.store.sandbox_events(vmid, EventPage::Tail(200)).unwrap_or_default();
    let marks: Vec<(String, time::OffsetDateTime)> = events
        .iter()
        .filter_map(|e| {
            let phase = match e.kind.as_str() {
                "sandbox.provision.step" => e.json["step"].as_str().map(str::to_string),
                "sandbox.state" if e.json["to_state"] == "READY" => Some("ready".to_string()),
                _ => None,
            }?;
            time_format::parse(&e.ts).ok().map(|t| (phase, t))
        })
        .collect();
    marks
        .windows(2)
        .map(|w| PhaseTiming { phase: w[0].0.clone(), ms: (w[1].1 - w[0].1).whole_milliseconds().max(0) as u64 })
        .collect()
}

fn vmid_of(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>().ok().filter(|v| *v >= 100).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidValue, format!("invalid vmid `{text}`: expected a number of at least 100"))
    })
}

/// The actor of a live sandbox; a record whose actor is gone gets one again.
async fn live_actor(app: &AppState, vmid: u32) -> Result<Result<ActorRef<SandboxMsg>, SandboxView>, ApiError> {
    let record = app.store.get_sandbox(vmid)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::SandboxNotFound,
            format!("sandbox {vmid} not found; AgentLab only manages sandboxes it created (`agentlab sandbox list`)"),
        )
    })?;
    if record.state == SandboxState::Destroyed {
        return Ok(Err(record.view()));
    }
    if let Some(actor) = actor(vmid) {
        return Ok(Ok(actor));
    }
    spawn_actor(app, vmid).await?;
    actor(vmid)
        .map(Ok)
        .ok_or_else(|| ApiError::new(ErrorCode::ActorUnavailable, format!("sandbox {vmid} has no actor")))
}

pub async fn destroy(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    body: Bytes,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let req: DestroySandboxRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DestroySandboxRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidValue, format!("invalid request: {e}")))?
    };
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
    answer.map(Json).map_err(|e| ApiError::new(e.code, e.message))
}

pub async fn renew_lease(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(vmid): Path<String>,
    StrictJson(req): StrictJson<RenewLeaseRequest>,
) -> Result<Json<RenewLeaseResponse>, ApiError> {
    let vmid = vmid_of(&vmid)?;
    if req.ttl_minutes == 0 {
        return Err(ApiError::new(ErrorCode::InvalidValue, "ttl_minutes must be greater than 0"));
    }
    let actor = live_actor(&app, vmid).await?.map_err(|view| {
        ApiError::new(ErrorCode::InvalidState, format!("sandbox {vmid} is {}; its lease cannot be renewed", view.state))
    })?;
    let length = Duration::from_secs(u64::from(req.ttl_minutes) * 60).mul_f64(app.config.test_time_scale);
    let until = time_format::format(time::OffsetDateTime::now_utc() + length);
    let view = ask(&actor, &format!("sandbox {vmid}"), Duration::from_millis(ACTOR_TIMEOUT_MS), |reply| {
        SandboxMsg::RenewLease { until, by: peer.uid, reply }
    })
    .await?
    .map_err(|e| ApiError::new(e.code, e.message))?;
    Ok(Json(RenewLeaseResponse { vmid, lease_expires_at: view.lease_expires_at }))
}

/// Debug builds only: makes a sandbox actor panic, to test crash isolation.
#[cfg(debug_assertions)]
pub async fn debug_panic(Path(vmid): Path<String>) -> Result<StatusCode, ApiError> {
    let vmid = vmid_of(&vmid)?;
    let actor = actor(vmid)
        .ok_or_else(|| ApiError::new(ErrorCode::SandboxNotFound, format!("sandbox {vmid} has no live actor")))?;
    actor.send_message(SandboxMsg::Panic).map_err(|e| ApiError::new(ErrorCode::ActorUnavailable, e.to_string()))?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    #[serde(default)]
    apply: bool,
}

/// `POST /v1/sandboxes/reconcile`: orphans and drift; dry run unless `apply`.
pub async fn reconcile(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Json<agentlab_actors::sandbox::reconcile::ReconcileReport>, ApiError> {
    let req: ReconcileRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReconcileRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidValue, format!("invalid request: {e}")))?
    };
    tracing::info!(apply = req.apply, uid = ?peer.uid, "reconcile");
    let report = agentlab_actors::sandbox::reconcile::reconcile(
        &app.sandboxes,
        &app.sandboxes.orphans,
        req.apply,
        app.config.orphan_grace_period,
    )
    .await
    .map_err(|e| ApiError::new(ErrorCode::ProxmoxUnavailable, e))?;
    Ok(Json(report))
}

#[derive(Debug, serde::Serialize)]
pub struct PruneResponse {
    count: usize,
    vmids: Vec<u32>,
}

/// `POST /v1/sandboxes/prune`: destroys every sandbox in TIMEOUT.
pub async fn prune(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<PruneResponse>, ApiError> {
    let timed_out = app.store.list_sandboxes(Some(SandboxState::Timeout))?;
    let mut vmids = Vec::new();
    for record in timed_out {
        let actor = match live_actor(&app, record.vmid).await? {
            Ok(actor) => actor,
            Err(_) => continue,
        };
        let wait = app.config.proxmox.command_timeout * 4 + Duration::from_secs(30);
        let answer = ask(&actor, &format!("sandbox {}", record.vmid), wait, |reply| SandboxMsg::Destroy {
            force: true,
            by: peer.uid,
            reply,
        })
        .await?;
        if answer.is_ok() {
            vmids.push(record.vmid);
        }
    }
    Ok(Json(PruneResponse { count: vmids.len(), vmids }))
}

/// Sends an operation to a sandbox's actor and maps its answer.
async fn run_op(app: &AppState, peer: Peer, vmid: u32, op: SandboxOp, force: bool) -> Result<SandboxView, ApiError> {
    let actor = live_actor(app, vmid).await?.map_err(|view| {
        ApiError::new(ErrorCode::InvalidState, format!("sandbox {vmid} is {}; nothing can be done with it", view.state))
    })?;
    let wait = app.config.provisioning_timeout + app.config.proxmox.command_timeout * 4;
    ask(&actor, &format!("sandbox {vmid}"), wait, |reply| SandboxMsg::Run { op, force, by: peer.uid, reply })
        .await?
        .map_err(|e| ApiError::new(e.code, e.message))
}

fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
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

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    restart: Option<bool>,
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

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    force: bool,
}

fn snapshot_name(name: &str) -> Result<String, ApiError> {
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

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default)]
    cores: Option<u32>,
    #[serde(default)]
    memory_mb: Option<u32>,
    #[serde(default)]
    tags: Option<Vec<String>>,
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
    if let Some(bad) = req.tags.iter().flatten().find(|t| !tag_ok(t)) {
        return Err(ApiError::new(ErrorCode::InvalidValue, format!("invalid tag `{bad}`")));
    }
    let op = SandboxOp::Update { cores: req.cores, memory_mb: req.memory_mb, tags: req.tags };
    run_op(&app, peer, vmid, op, false).await.map(Json)
}

#[derive(Debug, serde::Serialize)]
pub struct StopAllResult {
    vmid: u32,
    result: String,
}

/// `POST /v1/sandboxes/stop_all`: stops every READY or RUNNING sandbox.
pub async fn stop_all(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let records = app.store.list_sandboxes(None)?;
    let mut results = Vec::new();
    for record in records.into_iter().filter(|r| matches!(r.state, SandboxState::Ready | SandboxState::Running)) {
        let outcome = run_op(&app, peer, record.vmid, SandboxOp::Stop, false).await;
        results.push(StopAllResult {
            vmid: record.vmid,
            result: outcome.map(|v| v.state.to_string()).unwrap_or_else(|e| e.envelope.message),
        });
    }
    let stopped = results.iter().filter(|r| r.result == "STOPPED").count();
    Ok(Json(
        serde_json::json!({"total": results.len(), "stopped": stopped, "failed": results.len() - stopped, "results": results}),
    ))
}
