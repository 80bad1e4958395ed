//! Route handlers.

use super::{ApiError, AppState};
use agentlab_actors::model::{ErrorCode, SandboxState, time_format};
use agentlab_actors::protocol::{
    API_SCHEMA_VERSION, ArtifactsStatus, DaemonStatus, DebugActorsResponse, EVENT_SCHEMA_VERSION, EventsResponse,
    HEALTHZ_BODY, ListenerStatus, NetworkStatus, ProfileSummary, ProfilesResponse, ProfilesStatus, ProxmoxStatus,
    SandboxView, SandboxesResponse, SshTarget, StatusResponse,
};
use agentlab_actors::pve::{PVE_ACTOR, PveMsg};
use agentlab_actors::root::RootMsg;
use agentlab_actors::store::EventPage;
use axum::Json;
use axum::extract::{Path, Query, State};
use ractor::{ActorRef, call_t};

const HEALTH_TIMEOUT_MS: u64 = 15_000;
const ACTOR_TIMEOUT_MS: u64 = 5_000;
const EVENTS_DEFAULT_TAIL: u32 = 50;
const EVENTS_MAX: u32 = 1000;

pub async fn healthz() -> &'static str {
    HEALTHZ_BODY
}

pub async fn status(State(app): State<AppState>) -> Result<Json<StatusResponse>, ApiError> {
    let proxmox = proxmox_health().await;
    let network = network_status(&app, &proxmox).await;
    let templates = super::templates::reports(&app, &proxmox).await;
    let profiles = app.profiles.snapshot();
    Ok(Json(StatusResponse {
        api_schema_version: API_SCHEMA_VERSION,
        event_schema_version: EVENT_SCHEMA_VERSION,
        daemon: DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: time_format::format(app.started_at),
            uptime_seconds: app.started.elapsed().as_secs(),
            config_path: app.config.path.display().to_string(),
            db_path: app.config.db_path.display().to_string(),
        },
        proxmox,
        sandboxes: app.store.count_sandboxes_by_state()?,
        profiles: ProfilesStatus {
            count: profiles.profiles.len(),
            dir: profiles.dir.display().to_string(),
            loaded_at: profiles.loaded_at.clone(),
            last_reload_error: app.profiles.last_reload_error(),
            not_served: profiles.skipped.iter().map(ToString::to_string).collect(),
            warnings: profiles.warnings.iter().map(ToString::to_string).collect(),
        },
        listeners: ListenerStatus {
            socket: app.config.socket_path.display().to_string(),
            bootstrap: app.config.bootstrap_listen.to_string(),
            artifact: app.config.artifact_listen.to_string(),
            metrics: app.config.metrics_listen.map(|a| a.to_string()),
        },
        placement: agentlab_actors::sandbox::placement::describe(app.config.proxmox.node.as_deref()),
        recent_failures: app.store.recent_failures(10)?,
        network,
        templates,
        jobs: app.store.count_jobs_by_status()?,
        artifacts: ArtifactsStatus {
            dir: app.config.artifact_dir.display().to_string(),
            bytes: app.store.artifact_total_bytes()?,
            free_bytes: crate::guest::guard::free_bytes(&app.config.artifact_dir),
            min_free_bytes: app.config.min_free_bytes,
        },
    }))
}

async fn network_status(app: &AppState, proxmox: &ProxmoxStatus) -> NetworkStatus {
    use agentlab_actors::net::{Isolation, isolation, layers};
    let host = agentlab_actors::net::table_state(app.sandboxes.host_table.as_ref()).await;
    let datacenter = proxmox.firewall.as_ref().map(|f| f.datacenter_enabled);
    let (kind, warnings) = match datacenter.map(|d| isolation(d, host.as_ref())) {
        Some(Isolation::Both) => ("both", vec![]),
        Some(Isolation::OneLayer(why)) => ("one_layer", vec![why]),
        Some(Isolation::None(why)) => ("none", vec![why]),
        None => ("unknown", vec!["the datacenter firewall's state is unknown until Proxmox answers".to_string()]),
    };
    NetworkStatus {
        host_ruleset: layers::describe(host.as_ref()),
        datacenter_firewall: datacenter,
        isolation: kind.to_string(),
        warnings,
    }
}

/// Asks the gateway; if it cannot answer, says so as the reason Proxmox is not known reachable.
async fn proxmox_health() -> ProxmoxStatus {
    let unknown = |why: String| ProxmoxStatus {
        backend: "unknown".into(),
        endpoint: String::new(),
        reachable: false,
        version: None,
        error: Some(why),
        error_class: Some("gateway".into()),
        checked_at: None,
        token_ok: None,
        nodes: Vec::new(),
        firewall: None,
        privileges: None,
        storages: Vec::new(),
    };
    match ActorRef::<PveMsg>::where_is(PVE_ACTOR) {
        None => unknown("the pve gateway actor is not running (see the daemon log)".into()),
        Some(pve) => match call_t!(pve, PveMsg::Health, HEALTH_TIMEOUT_MS) {
            Ok(status) => status,
            Err(e) => unknown(format!("the pve gateway did not answer: {e}")),
        },
    }
}

/// `GET /v1/pool`.
pub async fn pool_status(State(app): State<AppState>) -> Result<Json<agentlab_actors::protocol::PoolStatus>, ApiError> {
    let limits = crate::daemon::pool_limits(&app.config);
    Ok(Json(agentlab_actors::pool::status(&app.store, &app.profiles, limits)?))
}

pub async fn profiles(State(app): State<AppState>) -> Json<ProfilesResponse> {
    let set = app.profiles.snapshot();
    let profiles = set
        .profiles
        .values()
        .map(|loaded| {
            let p = &loaded.profile;
            ProfileSummary {
                name: p.name.clone(),
                kind: "vm".into(),
                template_vmid: p.template_vmid,
                description: p.description.clone(),
                node: p.node.clone(),
                network_mode: p.network.mode,
                firewall_group: p.network.mode.security_group().to_string(),
                cores: p.resources.cores,
                memory_mb: p.resources.memory_mb,
                ttl_minutes_default: p.behavior.ttl_minutes_default,
                keepalive_default: p.behavior.keepalive_default,
                source: loaded.source.display().to_string(),
            }
        })
        .collect();
    Json(ProfilesResponse { profiles })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxFilter {
    state: Option<String>,
}

pub async fn list_sandboxes(
    State(app): State<AppState>,
    Query(filter): Query<SandboxFilter>,
) -> Result<Json<SandboxesResponse>, ApiError> {
    let state = match filter.state {
        None => None,
        Some(text) => {
            Some(text.parse::<SandboxState>().map_err(|e| ApiError::new(ErrorCode::InvalidValue, e.to_string()))?)
        }
    };
    let sandboxes = app.store.list_sandboxes(state)?.iter().map(|r| r.view()).collect();
    Ok(Json(SandboxesResponse { sandboxes }))
}

fn parse_vmid(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>().ok().filter(|v| *v >= 100).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidValue, format!("invalid vmid `{text}`: expected a number of at least 100"))
    })
}

pub async fn show_sandbox(
    State(app): State<AppState>,
    Path(vmid): Path<String>,
) -> Result<Json<SandboxView>, ApiError> {
    let vmid = parse_vmid(&vmid)?;
    let record = app.store.get_sandbox(vmid)?.ok_or_else(|| not_found(vmid))?;
    let mut view = record.view();
    view.egress_drops = app.store.egress_drops(vmid, None)?;
    Ok(Json(view))
}

/// Where to SSH to; bumps `last_used_at` (an SSH login is use, for idle-stop).
pub async fn ssh_target(State(app): State<AppState>, Path(vmid): Path<String>) -> Result<Json<SshTarget>, ApiError> {
    let vmid = parse_vmid(&vmid)?;
    let record = app.store.get_sandbox(vmid)?.ok_or_else(|| not_found(vmid))?;
    touch(&app, vmid)?;
    Ok(Json(SshTarget {
        vmid,
        state: record.state,
        ip: record.ip,
        user: "agent".into(),
        port: 22,
        identity: app.config.ssh_key_path.display().to_string(),
    }))
}

/// The sandbox was used now (SSH, logs).
fn touch(app: &AppState, vmid: u32) -> Result<(), ApiError> {
    let patch = agentlab_actors::store::SandboxPatch {
        last_used_at: Some(Some(time::OffsetDateTime::now_utc())),
        ..Default::default()
    };
    app.store.patch_sandbox(vmid, &patch, None)?;
    Ok(())
}

fn not_found(vmid: u32) -> ApiError {
    ApiError::new(
        ErrorCode::SandboxNotFound,
        format!("sandbox {vmid} not found; `agentlab sandbox list` shows the known ones"),
    )
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    tail: Option<u32>,
    after: Option<i64>,
    limit: Option<u32>,
    /// With `after`: wait up to this many seconds for a newer event (long poll, for
    /// `logs --follow`); answers as soon as one is committed.
    wait: Option<u64>,
}

const MAX_WAIT_SECONDS: u64 = 60;

pub async fn sandbox_events(
    State(app): State<AppState>,
    Path(vmid): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventsResponse>, ApiError> {
    let vmid = parse_vmid(&vmid)?;
    if app.store.get_sandbox(vmid)?.is_none() {
        return Err(not_found(vmid));
    }
    // Someone reading the sandbox's logs is using it (idle-stop counts it).
    touch(&app, vmid)?;
    events_page(&app, &query, |page| app.store.sandbox_events(vmid, page)).await.map(Json)
}

/// Pages events with `tail` or `after`; with `after` and `wait`, long-polls until one arrives.
pub(super) async fn events_page(
    app: &AppState,
    query: &EventsQuery,
    read: impl Fn(EventPage) -> Result<Vec<agentlab_actors::protocol::EventView>, agentlab_actors::store::StoreError>,
) -> Result<EventsResponse, ApiError> {
    let page = match (query.tail, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(ErrorCode::InvalidValue, "use either tail or after, not both"));
        }
        (Some(tail), None) => EventPage::Tail(tail.min(EVENTS_MAX)),
        (None, Some(after)) => EventPage::After { after, limit: query.limit.unwrap_or(200).min(EVENTS_MAX) },
        (None, None) => EventPage::Tail(EVENTS_DEFAULT_TAIL),
    };
    let mut events = read(page)?;
    if let (true, Some(wait), EventPage::After { .. }) = (events.is_empty(), query.wait, page) {
        let mut watch = app.store.watch_events();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait.min(MAX_WAIT_SECONDS));
        while events.is_empty() {
            // Woken by any committed event; re-read this entity's.
            match tokio::time::timeout_at(deadline, watch.changed()).await {
                Ok(Ok(())) => events = read(page)?,
                _ => break,
            }
        }
    }
    let last_id = events.last().map(|e| e.id).or(query.after).unwrap_or(0);
    Ok(EventsResponse { events, last_id })
}

pub async fn debug_actors(State(app): State<AppState>) -> Result<Json<DebugActorsResponse>, ApiError> {
    let actors = call_t!(app.root, RootMsg::DebugActors, ACTOR_TIMEOUT_MS)
        .map_err(|e| ApiError::new(ErrorCode::ActorUnavailable, format!("the root supervisor did not answer: {e}")))?;
    Ok(Json(DebugActorsResponse { actors }))
}
