//! `/v1/sessions`: create, list, show, stop, resume, fork.

use super::{ApiError, AppState, StrictJson};
use agentlab_actors::protocol::{CreateSessionRequest, ForkSessionRequest, SessionView, SessionsResponse};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

pub async fn create(
    State(app): State<AppState>,
    StrictJson(req): StrictJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    Ok((StatusCode::CREATED, Json(agentlab_actors::session::create(&app.sessions, &req).await?)))
}

pub async fn list(State(app): State<AppState>) -> Result<Json<SessionsResponse>, ApiError> {
    let sessions = app.store.list_sessions()?.iter().map(|s| s.view()).collect();
    Ok(Json(SessionsResponse { sessions }))
}

pub async fn show(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(agentlab_actors::session::find(&app.store, &id)?.view()))
}

pub async fn stop(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(agentlab_actors::session::stop(&app.store, &id).await?))
}

pub async fn resume(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(agentlab_actors::session::resume(&app.store, &id).await?))
}

pub async fn fork(
    State(app): State<AppState>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<ForkSessionRequest>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    Ok((StatusCode::CREATED, Json(agentlab_actors::session::fork(&app.sessions, &id, &req).await?)))
}
