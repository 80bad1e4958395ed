//! `/v1/workspaces`: create, list, show, attach to a sandbox, detach, destroy.

use super::{ApiError, AppState, StrictJson};
use agentlab_actors::protocol::{
    AttachWorkspaceRequest, CreateWorkspaceRequest, ForkWorkspaceRequest, RebindWorkspaceRequest,
    RebindWorkspaceResponse, WorkspaceCheckResponse, WorkspaceSnapshotRequest, WorkspaceSnapshotsResponse,
    WorkspaceView, WorkspacesResponse,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

pub async fn create(
    State(app): State<AppState>,
    StrictJson(req): StrictJson<CreateWorkspaceRequest>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    let view = agentlab_actors::workspace::create(&app.workspaces, &req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(State(app): State<AppState>) -> Result<Json<WorkspacesResponse>, ApiError> {
    let workspaces = app.store.list_workspaces()?.iter().map(|w| w.view()).collect();
    Ok(Json(WorkspacesResponse { workspaces }))
}

pub async fn show(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(agentlab_actors::workspace::find(&app.store, &id)?.view()))
}

pub async fn attach(
    State(app): State<AppState>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<AttachWorkspaceRequest>,
) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(agentlab_actors::workspace::attach(&app.store, &id, req.vmid).await?))
}

pub async fn detach(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<WorkspaceView>, ApiError> {
    Ok(Json(agentlab_actors::workspace::detach(&app.store, &id).await?))
}

/// Answers with the workspace as it was, its state `destroyed`.
pub async fn destroy(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<WorkspaceView>, ApiError> {
    let mut view = agentlab_actors::workspace::find(&app.store, &id)?.view();
    agentlab_actors::workspace::destroy(&app.store, &id).await?;
    view.state = "destroyed".into();
    view.volid = None;
    Ok(Json(view))
}

pub async fn snapshots(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceSnapshotsResponse>, ApiError> {
    Ok(Json(agentlab_actors::workspace::snapshots(&app.workspaces, &id).await?))
}

/// Answers with the snapshots after the new one.
pub async fn snapshot_create(
    State(app): State<AppState>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<WorkspaceSnapshotRequest>,
) -> Result<(StatusCode, Json<WorkspaceSnapshotsResponse>), ApiError> {
    let name = super::sandbox_ops::snapshot_name(&req.name)?;
    agentlab_actors::workspace::snapshot(&app.store, &id, &name).await?;
    Ok((StatusCode::CREATED, Json(agentlab_actors::workspace::snapshots(&app.workspaces, &id).await?)))
}

pub async fn snapshot_restore(
    State(app): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let name = super::sandbox_ops::snapshot_name(&name)?;
    agentlab_actors::workspace::restore(&app.store, &id, &name).await?;
    Ok(Json(agentlab_actors::workspace::find(&app.store, &id)?.view()))
}

pub async fn fork(
    State(app): State<AppState>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<ForkWorkspaceRequest>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    if let Some(snapshot) = &req.from_snapshot {
        super::sandbox_ops::snapshot_name(snapshot)?;
    }
    Ok((StatusCode::CREATED, Json(agentlab_actors::workspace::fork(&app.store, &id, &req).await?)))
}

pub async fn check(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceCheckResponse>, ApiError> {
    Ok(Json(agentlab_actors::workspace::check(&app.workspaces, &id).await?))
}

pub async fn rebind(
    State(app): State<AppState>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<RebindWorkspaceRequest>,
) -> Result<Json<RebindWorkspaceResponse>, ApiError> {
    Ok(Json(agentlab_actors::workspace::rebind(&app.sandboxes, &id, &req).await?))
}
