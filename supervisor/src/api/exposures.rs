//! `/v1/exposures`: publish a sandbox's port (`POST`), list (`GET`), remove (`DELETE`).

use super::{ApiError, AppState, StrictJson};
use agentlab_actors::protocol::{CreateExposureRequest, ExposureView, ExposuresResponse};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

pub async fn create(
    State(app): State<AppState>,
    StrictJson(req): StrictJson<CreateExposureRequest>,
) -> Result<(StatusCode, Json<ExposureView>), ApiError> {
    let view = agentlab_actors::exposure::create(&app.exposures, &req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(State(app): State<AppState>) -> Result<Json<ExposuresResponse>, ApiError> {
    let exposures = app
        .store
        .list_exposures(None)?
        .into_iter()
        .map(|e| {
            let ip = app.store.get_sandbox(e.vmid).ok().flatten().and_then(|s| s.ip);
            e.view(ip)
        })
        .collect();
    Ok(Json(ExposuresResponse { exposures }))
}

pub async fn remove(State(app): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    agentlab_actors::exposure::remove(&app.exposures, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
