//! The job routes: create, list, show (with its timeline), cancel, events, artifacts and
//! their download; and `secrets validate`, which opens a bundle with the daemon's key.

use super::routes::{EventsQuery, events_page};
use super::{ApiError, AppState, Peer, StrictJson};
use agentlab_actors::job::{self, JobMsg};
use agentlab_actors::model::{ErrorCode, JobState, time_format};
use agentlab_actors::protocol::{
    ArtifactsResponse, CreateJobRequest, EventsResponse, JobView, JobsResponse, TimelineEntry,
};
use agentlab_actors::store::{EventPage, JobRecord};
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use ractor::ActorRef;
use std::time::Duration;

const ACTOR_TIMEOUT: Duration = Duration::from_secs(30);
const EVENTS_TAIL_DEFAULT: u32 = 50;
const EVENTS_TAIL_MAX: u32 = 1000;

fn job_id_of(text: &str) -> Result<String, ApiError> {
    if job::valid_job_id(text) {
        Ok(text.to_string())
    } else {
        Err(ApiError::new(ErrorCode::InvalidValue, format!("invalid job id `{text}`: expected job_<16 hex digits>")))
    }
}

fn load(app: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    app.store.get_job(id)?.ok_or_else(|| {
        ApiError::new(ErrorCode::JobNotFound, format!("job {id} not found; `agentlab job list` shows the known ones"))
    })
}

/// The API view: the record, its phases as a timeline, and its newest events.
fn view(app: &AppState, job: JobRecord, events_tail: u32) -> Result<JobView, ApiError> {
    let timeline = app
        .store
        .job_phases(&job.id)?
        .into_iter()
        .map(|(phase, at)| TimelineEntry { phase: phase.as_str().into(), label: phase.label().into(), at })
        .collect();
    let events =
        if events_tail == 0 { Vec::new() } else { app.store.job_events(&job.id, EventPage::Tail(events_tail))? };
    let since = time_format::format(job.created_at);
    let egress_drops = match job.sandbox_vmid {
        Some(vmid) => app.store.egress_drops(vmid, Some(&since))?,
        None => Vec::new(),
    };
    Ok(JobView {
        id: job.id,
        repo_url: job.repo_url,
        git_ref: job.git_ref,
        profile: job.profile,
        task: job.task,
        mode: job.mode,
        agent: job.agent,
        ttl_minutes: job.ttl_minutes,
        keepalive: job.keepalive,
        status: job.status,
        sandbox_vmid: job.sandbox_vmid,
        workspace_id: job.workspace_id,
        result: job.result,
        error: job.error,
        timeline,
        events,
        egress_drops,
        created_at: time_format::format(job.created_at),
        updated_at: time_format::format(job.updated_at),
    })
}

/// The job's actor, spawned from its record if it has none.
pub(crate) async fn job_actor(id: &str) -> Result<ActorRef<JobMsg>, ApiError> {
    agentlab_actors::root::ensure_actor::<JobMsg>(job::KIND, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ActorUnavailable, format!("job {id} has no actor; retry")))
}

pub async fn create(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    StrictJson(mut req): StrictJson<CreateJobRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    // `--workspace new:NAME`: the workspace is made first, then the job names it.
    if let Some(create) = req.workspace_create.take() {
        if req.workspace_id.is_some() {
            return Err(ApiError::new(ErrorCode::InvalidValue, "give workspace_id or workspace_create, not both"));
        }
        let created = agentlab_actors::workspace::create(&app.workspaces, &create).await?;
        req.workspace_id = Some(created.id.clone());
        let job = job::create::create(&app.jobs, &req, peer.uid).await;
        if job.is_err() {
            // A refused job leaves nothing behind, not even the workspace made for it.
            let _ = agentlab_actors::workspace::destroy(&app.store, &created.id).await;
        }
        return started(&app, job.map_err(ApiError::from)?).await;
    }
    let job = job::create::create(&app.jobs, &req, peer.uid).await.map_err(ApiError::from)?;
    started(&app, job).await
}

/// Starts the recorded job's actor and answers with the job.
async fn started(app: &AppState, job: JobRecord) -> Result<(StatusCode, Json<JobView>), ApiError> {
    job_actor(&job.id).await?;
    Ok((StatusCode::CREATED, Json(view(app, job, 0)?)))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

pub async fn list(State(app): State<AppState>, Query(query): Query<ListQuery>) -> Result<Json<JobsResponse>, ApiError> {
    let status = match query.status.as_deref() {
        Some(s) => Some(s.parse::<JobState>().map_err(|e| ApiError::new(ErrorCode::InvalidValue, e.to_string()))?),
        None => None,
    };
    let jobs = app.store.list_jobs(status, query.limit.unwrap_or(200).min(1000))?;
    let jobs = jobs.into_iter().map(|j| view(&app, j, 0)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(JobsResponse { jobs }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    events_tail: Option<u32>,
}

pub async fn show(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Json<JobView>, ApiError> {
    let job = load(&app, &job_id_of(&id)?)?;
    Ok(Json(view(&app, job, query.events_tail.unwrap_or(EVENTS_TAIL_DEFAULT).min(EVENTS_TAIL_MAX))?))
}

pub async fn cancel(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id_of(&id)?;
    let job = load(&app, &id)?;
    if job.status.is_final() {
        return Err(ApiError::new(
            ErrorCode::JobFinalized,
            format!("job {id} already ended {}; nothing to cancel", job.status),
        ));
    }
    let actor = job_actor(&id).await?;
    let job = super::sandbox_ops::ask(&actor, &format!("job {id}"), ACTOR_TIMEOUT, |reply| JobMsg::Cancel {
        by: peer.uid,
        reply,
    })
    .await?
    .map_err(ApiError::from)?;
    Ok(Json(view(&app, job, 0)?))
}

pub async fn events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventsResponse>, ApiError> {
    let id = job_id_of(&id)?;
    load(&app, &id)?;
    events_page(&app, &query, |page| app.store.job_events(&id, page)).await.map(Json)
}

pub async fn artifacts(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ArtifactsResponse>, ApiError> {
    let id = job_id_of(&id)?;
    load(&app, &id)?;
    let artifacts = app.store.list_artifacts(&id)?;
    Ok(Json(ArtifactsResponse { job_id: id, artifacts }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    name: Option<String>,
    path: Option<String>,
}

/// Streams one artifact: by `name`, by `path`, or the newest.
pub async fn download(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let id = job_id_of(&id)?;
    load(&app, &id)?;
    let artifacts = app.store.list_artifacts(&id)?;
    let chosen = match (&query.name, &query.path) {
        (Some(_), Some(_)) => return Err(ApiError::new(ErrorCode::InvalidValue, "use either name or path, not both")),
        (Some(name), None) => artifacts.iter().find(|a| &a.info.name == name),
        (None, Some(path)) => artifacts.iter().find(|a| &a.info.path == path),
        (None, None) => artifacts.first(),
    }
    .ok_or_else(|| {
        ApiError::new(
            ErrorCode::ArtifactNotFound,
            format!("job {id} has no such artifact; `agentlab job artifacts {id}` lists them"),
        )
    })?;
    // The stored path was checked at upload; check again before touching the disk.
    let relative = crate::guest::artifact_path::checked(&chosen.info.path)
        .map_err(|e| ApiError::new(ErrorCode::InvalidPath, e))?;
    let file_path = app.config.artifact_dir.join(&id).join(relative);
    let file = tokio::fs::File::open(&file_path).await.map_err(|e| {
        ApiError::new(ErrorCode::ArtifactNotFound, format!("artifact file missing ({}): {e}", file_path.display()))
    })?;
    // 256 KiB reads: the default 4 KiB made a 1 GiB download a quarter of a million frames.
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
    let disposition = format!("attachment; filename=\"{}\"", chosen.info.name.replace(['"', '\\'], "_"));
    Response::builder()
        .header(header::CONTENT_TYPE, &chosen.info.mime)
        .header(header::CONTENT_LENGTH, chosen.info.size_bytes)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("X-Artifact-Sha256", &chosen.info.sha256)
        .body(body)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot build the response: {e}")))
}
