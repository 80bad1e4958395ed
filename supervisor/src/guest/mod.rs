//! The guest listener: the only daemon routes a sandbox can reach. `bootstrap_listen`
//! serves the bootstrap fetch and the runner reports, `artifact_listen` the artifact upload
//! (one listener serves both when the addresses are equal). Sources outside `agent_subnet`
//! get 403, every route has a body cap, and each source IP has a token bucket.

pub mod artifact_path;
pub(crate) mod guard;
mod listener;
mod routes;
mod upload;

use crate::api::ApiError;
use crate::config::Config;
use agentlab_actors::job::JobContext;
use agentlab_actors::model::ErrorCode;
use agentlab_actors::protocol::guest::{FETCH_PATH, REPORT_PATH, UPLOAD_PATH};
use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guard::RateLimiter;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Fetch and report bodies are small JSON documents: a report carries at most
/// `MAX_REPORT_LOG_TEXT_BYTES` of log, which JSON escaping can make six times longer.
const MAX_GUEST_JSON_BYTES: usize = 6 * agentlab_actors::protocol::guest::MAX_REPORT_LOG_TEXT_BYTES + 64 * 1024;

#[derive(Clone)]
pub struct GuestState {
    pub config: Arc<Config>,
    pub jobs: Arc<JobContext>,
    bootstrap_limiter: Arc<RateLimiter>,
    artifact_limiter: Arc<RateLimiter>,
    report_source_limiter: Arc<RateLimiter>,
    report_job_limiter: Arc<RateLimiter<String>>,
    /// Jobs with an upload in flight: one writer per job, so its quota and its paths are
    /// checked against what is really stored (security review F8).
    uploading: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

fn bootstrap_routes() -> Router<GuestState> {
    Router::new()
        .route(FETCH_PATH, post(routes::fetch))
        .route(REPORT_PATH, post(routes::report))
        .layer(DefaultBodyLimit::max(MAX_GUEST_JSON_BYTES))
        .layer(middleware::from_fn(within_request_timeout))
}

/// A fetch or report — a slow body included — has `REQUEST_TIMEOUT` (security review F4).
async fn within_request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(listener::REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(ErrorCode::ClientTimeout, "request took too long").into_response(),
    }
}

fn artifact_routes() -> Router<GuestState> {
    // The upload caps itself while streaming (artifact_max_bytes).
    Router::new().route(UPLOAD_PATH, post(upload::upload)).layer(DefaultBodyLimit::disable())
}

fn finish(router: Router<GuestState>, state: GuestState) -> Router {
    router
        .route("/healthz", get(|| async { agentlab_actors::protocol::HEALTHZ_BODY }))
        .fallback(|| async { ApiError::new(ErrorCode::RouteNotFound, "no such guest route") })
        .layer(middleware::from_fn_with_state(state.clone(), only_agent_subnet))
        .layer(middleware::from_fn(count_refusals))
        .with_state(state)
}

/// Every guest request answered with an error counts as a refusal, by its error code.
async fn count_refusals(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        agentlab_actors::metrics::metrics().guest_refused(code.as_str());
    }
    response
}

/// 403 for any source outside the agent subnet, before routing.
async fn only_agent_subnet(State(state): State<GuestState>, request: Request, next: Next) -> Response {
    let source = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match source {
        Some(ip) if guard::source_allowed(&state.config.agent_subnet, ip) => next.run(request).await,
        other => {
            tracing::warn!(source = ?other, path = %request.uri().path(), "guest request from outside the agent subnet refused");
            ApiError::new(ErrorCode::RemoteAddressDenied, "remote address not allowed").into_response()
        }
    }
}

/// Binds the guest listeners and serves them until `shutdown`.
pub async fn serve(
    config: Arc<Config>,
    jobs: Arc<JobContext>,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let state = GuestState {
        bootstrap_limiter: Arc::new(RateLimiter::new(config.bootstrap_rate_limit)),
        artifact_limiter: Arc::new(RateLimiter::new(config.artifact_rate_limit)),
        report_source_limiter: Arc::new(RateLimiter::new(config.report_rate_limit)),
        report_job_limiter: Arc::new(RateLimiter::new(config.report_rate_limit)),
        uploading: Default::default(),
        config: Arc::clone(&config),
        jobs,
    };
    let plan: Vec<(SocketAddr, Router)> = if config.bootstrap_listen == config.artifact_listen {
        vec![(config.bootstrap_listen, finish(bootstrap_routes().merge(artifact_routes()), state))]
    } else {
        vec![
            (config.bootstrap_listen, finish(bootstrap_routes(), state.clone())),
            (config.artifact_listen, finish(artifact_routes(), state)),
        ]
    };
    let mut tasks = Vec::new();
    for (addr, router) in plan {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for guests: is the agent bridge up (scripts/net/setup_vmbr1.sh) and the port free?")
        })?;
        tracing::info!(%addr, "guest listener ready");
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(listener::serve(listener, router, config.agent_subnet, shutdown)));
    }
    Ok(tasks)
}
