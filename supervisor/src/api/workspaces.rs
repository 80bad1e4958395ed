//! `/v1/workspaces`: create, list, show, attach to a sandbox, detach, destroy.

use super::{ApiError, AppState, StrictJson};
use agentlab_actors::protocol::{AttachWorkspaceRequest, CreateWorkspaceRequest, WorkspaceView, WorkspacesResponse};
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
