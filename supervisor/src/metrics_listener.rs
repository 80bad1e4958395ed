//! `metrics_listen`: Prometheus scrapes `GET /metrics` here (loopback only, checked by the
//! config). The counters live in `agentlab_actors::metrics`; the gauges that mirror the
//! database and the disks are read at each scrape.

use crate::config::Config;
use agentlab_actors::metrics::{Snapshot, metrics};
use agentlab_actors::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// OpenMetrics 1.0 text, what prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct MetricsState {
    config: Arc<Config>,
    store: Arc<Store>,
}

/// Binds `metrics_listen` (when set) and serves it until `shutdown`; the bind happens
/// before this returns, so readiness is only announced with the port open.
pub async fn serve(
    config: Arc<Config>,
    store: Arc<Store>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = config.metrics_listen else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on metrics_listen {addr} (in use? unset it to turn metrics off)"))?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    let app = Router::new().route("/metrics", get(scrape)).with_state(MetricsState { config, store });
    Ok(Some(tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    })))
}

async fn scrape(State(state): State<MetricsState>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let snapshot = snapshot(&state.config, &state.store)?;
        metrics().render(&snapshot).map_err(|e| anyhow::anyhow!("cannot encode metrics: {e}"))
    })
    .await;
    match rendered {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics task failed: {e}\n")).into_response(),
    }
}

fn snapshot(config: &Config, store: &Store) -> anyhow::Result<Snapshot> {
    let mut free_bytes = Vec::new();
    for dir in [&config.data_dir, &config.artifact_dir] {
        if let Some(free) = crate::guest::guard::free_bytes(dir) {
            free_bytes.push((dir.display().to_string(), free));
        }
    }
    Ok(Snapshot {
        sandboxes_by_state: store.count_sandboxes_by_state()?,
        jobs_by_status: store.count_jobs_by_status()?,
        artifact_disk_bytes: store.artifact_total_bytes()?,
        free_bytes,
    })
}
