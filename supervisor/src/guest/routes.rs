//! `POST /v1/bootstrap/fetch` and `POST /v1/runner/report`.

use super::GuestState;
use super::guard::{self, bearer};
use crate::api::{ApiError, StrictJson};
use agentlab_actors::job::{self, JobMsg};
use agentlab_actors::model::ErrorCode;
use agentlab_actors::protocol::guest::{
    FetchRequest, MAX_REPORT_LOG_BYTES, MAX_REPORT_LOG_TEXT_BYTES, ReportResponse, RunnerReport,
};
use agentlab_actors::tokens::token_hash;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use std::net::SocketAddr;
use std::time::Duration;

const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn fetch(
    State(state): State<GuestState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    StrictJson(req): StrictJson<FetchRequest>,
) -> Result<axum::response::Response, ApiError> {
    let metrics = agentlab_actors::metrics::metrics();
    if !state.bootstrap_limiter.allow(source.ip()) {
        metrics.bootstrap_fetch(ErrorCode::RateLimited.as_str());
        return Err(ApiError::new(ErrorCode::RateLimited, "rate limit exceeded"));
    }
    match job::bootstrap::fetch(&state.jobs, &req, source.ip()).await {
        Ok(job::bootstrap::Fetched::Payload(payload)) => {
            metrics.bootstrap_fetch("ok");
            Ok(Json(*payload).into_response())
        }
        // A pooled sandbox nobody claimed yet: 204, and the runner asks again.
        Ok(job::bootstrap::Fetched::Wait) => {
            metrics.bootstrap_fetch("pooled_wait");
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => {
            tracing::warn!(vmid = req.vmid, source = %source.ip(), error = %e.message, "bootstrap fetch refused");
            metrics.bootstrap_fetch(e.code.as_str());
            Err(ApiError::from(e))
        }
    }
}

/// How far past the stored log a report's `log_offset` may point (the runner sends the log
/// in order; a bigger jump is not the runner's).
const MAX_LOG_GAP: u64 = 16 * MAX_REPORT_LOG_BYTES as u64;

pub async fn report(
    State(state): State<GuestState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    StrictJson(report): StrictJson<RunnerReport>,
) -> Result<Json<ReportResponse>, ApiError> {
    if !state.report_source_limiter.allow(source.ip()) {
        return Err(ApiError::new(ErrorCode::RateLimited, "rate limit exceeded"));
    }
    let token = bearer(&headers).ok_or_else(|| ApiError::new(ErrorCode::MissingBearerToken, "missing bearer token"))?;
    let job = state
        .jobs
        .store
        .job_by_runner_token(&token_hash(token))?
        .filter(|j| j.id == report.job_id)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "invalid runner token"))?;
    if job.status.is_final() {
        return Err(ApiError::new(ErrorCode::JobFinalized, format!("job already finalized ({})", job.status)));
    }
    if !state.report_job_limiter.allow(job.id.clone()) {
        return Err(ApiError::new(ErrorCode::RateLimited, "rate limit exceeded for this job"));
    }
    let log_len = report.log.as_deref().map_or(0, str::len);
    if log_len > MAX_REPORT_LOG_TEXT_BYTES {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("a report carries at most {MAX_REPORT_LOG_TEXT_BYTES} bytes of log text"),
        ));
    }
    if report.log_offset.is_some_and(|o| o > job.log_bytes.saturating_add(MAX_LOG_GAP)) {
        return Err(ApiError::new(ErrorCode::InvalidValue, "log_offset is past the log sent so far"));
    }
    if log_len > 0 {
        guard::free_space_floor(&state.config.data_dir, state.config.min_free_bytes)?;
    }
    let actor = crate::api::jobs::job_actor(&job.id).await?;
    match actor.call(|reply| JobMsg::Report { report, reply }, Some(REPORT_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(Ok(answer))) => Ok(Json(answer)),
        Ok(ractor::rpc::CallResult::Success(Err(e))) => Err(ApiError::from(e)),
        _ => Err(ApiError::new(ErrorCode::ActorUnavailable, format!("job {} did not take the report; retry", job.id))),
    }
}
