//! The control API on the Unix socket. A handler decodes, asks one actor or the store,
//! and maps the answer to HTTP; it holds no logic of its own.

mod endpoint;
mod error;
mod exposures;
pub(crate) mod jobs;
mod json;
mod peer;
mod routes;
mod sandbox_create;
mod sandbox_fleet;
mod sandbox_ops;
mod secrets;
mod secrets_compat;
mod sessions;
mod templates;
mod workspaces;

pub use endpoint::Routes;
pub use error::ApiError;
pub use json::{MAX_BODY_BYTES, StrictJson};
pub use peer::Peer;

use crate::config::Config;
use agentlab_actors::model::ErrorCode;
use agentlab_actors::profiles::ProfileRegistry;
use agentlab_actors::root::RootMsg;
use agentlab_actors::store::Store;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

use ractor::ActorRef;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::time::Instant;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub profiles: Arc<ProfileRegistry>,
    pub root: ActorRef<RootMsg>,
    pub gateway: agentlab_actors::pve::Gateway,
    pub sandboxes: Arc<agentlab_actors::sandbox::SandboxContext>,
    pub jobs: Arc<agentlab_actors::job::JobContext>,
    pub exposures: Arc<agentlab_actors::exposure::ExposureContext>,
    pub workspaces: Arc<agentlab_actors::workspace::WorkspaceContext>,
    pub sessions: Arc<agentlab_actors::session::SessionContext>,
    pub started_at: OffsetDateTime,
    pub started: Instant,
    /// `status`'s template reports, reused for a while (`templates::REPORTS_TTL`).
    pub template_reports: Arc<templates::ReportCache>,
}

/// The control API's routes, each with the methods it answers: one list that both builds
/// the router and is checked against the OpenAPI document (`openapi.json`).
pub fn routes() -> Routes {
    use endpoint::{delete, get, post, put};
    Routes::default()
        .route("/healthz", get(routes::healthz))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/status", get(routes::status))
        .route("/v1/profiles", get(routes::profiles))
        .route("/v1/pool", get(routes::pool_status))
        .route("/v1/sandboxes", get(routes::list_sandboxes).post(sandbox_create::create))
        .route("/v1/sandboxes/reconcile", post(sandbox_fleet::reconcile))
        .route("/v1/sandboxes/prune", post(sandbox_fleet::prune))
        .route("/v1/sandboxes/stop_all", post(sandbox_fleet::stop_all))
        .route("/v1/sandboxes/{vmid}/revert", post(sandbox_ops::revert))
        .route("/v1/sandboxes/{vmid}/update", post(sandbox_ops::update))
        .route("/v1/sandboxes/{vmid}/snapshots", get(sandbox_ops::snapshot_list).post(sandbox_ops::snapshot_save))
        .route("/v1/sandboxes/{vmid}/snapshots/{name}/restore", post(sandbox_ops::snapshot_restore))
        .route("/v1/sandboxes/{vmid}", get(routes::show_sandbox))
        .route("/v1/sandboxes/{vmid}/destroy", post(sandbox_ops::destroy))
        .route("/v1/sandboxes/{vmid}/ssh", post(routes::ssh_target))
        .route("/v1/sandboxes/{vmid}/lease/renew", post(sandbox_ops::renew_lease))
        .route("/v1/sandboxes/{vmid}/{action}", post(sandbox_ops::simple_op))
        .route("/v1/sandboxes/{vmid}/events", get(routes::sandbox_events))
        .route("/v1/exposures", get(exposures::list).post(exposures::create))
        .route("/v1/exposures/{name}", delete(exposures::remove))
        .route("/v1/workspaces", get(workspaces::list).post(workspaces::create))
        .route("/v1/workspaces/{id}", get(workspaces::show))
        .route("/v1/workspaces/{id}/attach", post(workspaces::attach))
        .route("/v1/workspaces/{id}/detach", post(workspaces::detach))
        .route("/v1/workspaces/{id}/destroy", post(workspaces::destroy))
        .route("/v1/workspaces/{id}/snapshots", get(workspaces::snapshots).post(workspaces::snapshot_create))
        .route("/v1/workspaces/{id}/snapshots/{name}/restore", post(workspaces::snapshot_restore))
        .route("/v1/workspaces/{id}/fork", post(workspaces::fork))
        .route("/v1/workspaces/{id}/check", get(workspaces::check))
        .route("/v1/workspaces/{id}/rebind", post(workspaces::rebind))
        .route("/v1/sessions", get(sessions::list).post(sessions::create))
        .route("/v1/sessions/{id}", get(sessions::show))
        .route("/v1/sessions/{id}/stop", post(sessions::stop))
        .route("/v1/sessions/{id}/resume", post(sessions::resume))
        .route("/v1/sessions/{id}/fork", post(sessions::fork))
        .route("/v1/jobs", get(jobs::list).post(jobs::create))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/artifacts", get(jobs::artifacts))
        .route("/v1/jobs/{id}/artifacts/download", get(jobs::download))
        .route("/v1/secrets", get(secrets_compat::view))
        .route("/v1/secrets/env", put(secrets_compat::set_env))
        .route("/v1/secrets/env/{key}", delete(secrets_compat::unset_env))
        .route("/v1/secrets/git", put(secrets_compat::set_git))
        .route("/v1/secrets/ssh-keys", post(secrets_compat::add_ssh_key))
        .route("/v1/secrets/ssh-keys/{name}", delete(secrets_compat::remove_ssh_key))
        .route("/v1/secrets/bundles", get(secrets::list))
        .route("/v1/secrets/validate", post(secrets::validate))
        .route("/v1/secrets/show", post(secrets::show))
        .route("/v1/secrets/edit", post(secrets::edit))
        .route("/v1/secrets/rotate-key", post(secrets::rotate_key))
        .route("/v1/debug/actors", get(routes::debug_actors))
}

/// The OpenAPI 3 document of the routes above (`GET /v1/openapi.json`); a test keeps the
/// two equal.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

pub fn router(state: AppState) -> Router {
    let router = routes().router;
    // Debug builds only (tests that crash an actor on purpose); not part of the API.
    #[cfg(debug_assertions)]
    let router = router.route("/v1/debug/sandboxes/{vmid}/panic", axum::routing::post(sandbox_ops::debug_panic));
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!(
            "no route {} {}: this daemon may be older than the CLI; compare `agentlab version` with `agentlabd --version`",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("method {} not allowed on {}", request.method(), request.uri().path()),
    )
}

/// One line per request with the peer's uid: the audit trail of who drove the daemon.
async fn log_request(request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0).unwrap_or_default();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if method == axum::http::Method::GET {
        tracing::debug!(%method, %path, status, uid = ?peer.uid, pid = ?peer.pid, "request");
    } else {
        tracing::info!(%method, %path, status, uid = ?peer.uid, pid = ?peer.pid, "request");
    }
    response
}
