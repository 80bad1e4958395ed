//! Whole-fleet operations: reconcile (orphans and drift), prune (expired sandboxes), stop_all.

use super::sandbox_ops::{ask, live_actor, optional_body, run_op};
use super::{ApiError, AppState, Peer};
use agentlab_actors::model::SandboxState;
use agentlab_actors::protocol::ReconcileRequest;
use agentlab_actors::sandbox::{SandboxMsg, SandboxOp};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use std::time::Duration;

/// `POST /v1/sandboxes/reconcile`: orphans and drift; dry run unless `apply`.
pub async fn reconcile(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Json<agentlab_actors::sandbox::reconcile::ReconcileReport>, ApiError> {
    let req: ReconcileRequest = optional_body(&body)?;
    tracing::info!(apply = req.apply, uid = ?peer.uid, "reconcile");
    let report = agentlab_actors::sandbox::reconcile::reconcile(
        &app.sandboxes,
        &app.sandboxes.orphans,
        req.apply,
        app.config.orphan_grace_period,
    )
    .await
    .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
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
