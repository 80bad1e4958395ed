//! `POST /upload?path=<name>` with `Authorization: Bearer <artifact token>`: the body is
//! streamed to a temporary file under `<artifact_dir>/<job>/`, capped while it streams at
//! `artifact_max_bytes` and at what is left of the job's quota (413, nothing kept), hashed
//! with SHA-256, synced and linked into place, then recorded. One upload per job at a time;
//! a stored artifact is never replaced; the token stops working when the job ends or its
//! sandbox is destroyed; below `min_free_bytes` free, 507.

use super::GuestState;
use super::artifact_path::{checked, mime_for};
use super::guard::{self, bearer};
use crate::api::ApiError;
use agentlab_actors::model::ErrorCode;
use agentlab_actors::protocol::guest::{ArtifactInfo, DEFAULT_ARTIFACT_NAME, UploadResponse};
use agentlab_actors::tokens::{random_hex, token_hash};
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    path: Option<String>,
}

/// Removes the temporary file unless the upload completed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn too_large(cap: u64) -> ApiError {
    ApiError::new(ErrorCode::ArtifactTooLarge, format!("artifact larger than artifact_max_bytes ({cap} bytes)"))
}

/// Claims the job's upload slot; released on drop.
struct UploadSlot {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    job: String,
}

impl UploadSlot {
    fn claim(state: &GuestState, job: &str) -> Result<UploadSlot, ApiError> {
        let mut set = agentlab_actors::sync::lock(&state.uploading);
        if !set.insert(job.to_string()) {
            // 429: the runner retries it (a retry may race its own first attempt).
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "another upload of this job is in progress; send one at a time",
            ));
        }
        Ok(UploadSlot { set: std::sync::Arc::clone(&state.uploading), job: job.to_string() })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        agentlab_actors::sync::lock(&self.set).remove(&self.job);
    }
}

pub async fn upload(
    State(state): State<GuestState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    if !state.artifact_limiter.allow(source.ip()) {
        return Err(ApiError::new(ErrorCode::RateLimited, "rate limit exceeded"));
    }
    let token = bearer(&headers).ok_or_else(|| ApiError::new(ErrorCode::MissingBearerToken, "missing bearer token"))?;
    // Refused once the job ended or its sandbox was destroyed, not only when expired.
    let grant = state
        .jobs
        .store
        .artifact_grant(&token_hash(token))?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "invalid or expired artifact token"))?;
    // A bad query (an unknown key, `path` twice) gets the JSON envelope like every refusal.
    let Query(query) = query.map_err(|_| ApiError::new(ErrorCode::BadRequest, "the query takes one `path` only"))?;
    let name = query.path.unwrap_or_else(|| DEFAULT_ARTIFACT_NAME.to_string());
    let relative = checked(&name).map_err(|e| ApiError::new(ErrorCode::InvalidPath, e))?;
    let path_text = relative.to_string_lossy().into_owned();
    let _slot = UploadSlot::claim(&state, &grant.job_id)?;
    // A name carrying one of the job's secrets would be stored, listed and logged as it is
    // (security review F9): refused instead, without saying which.
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if holds_a_secret(&state, &grant.job_id, &[&path_text, content_type])? {
        return Err(ApiError::new(
            ErrorCode::InvalidPath,
            "artifact refused: its name or type contains a secret value",
        ));
    }
    guard::free_space_floor(&state.config.artifact_dir, state.config.min_free_bytes)?;
    let existing = state.jobs.store.artifact_at(&grant.job_id, &path_text)?;
    // What this upload may add: the per-upload cap, and what is left of the job's quota.
    let (used, _) = state.jobs.store.artifact_usage(&grant.job_id)?;
    let quota = job_quota(&state, &grant.job_id)?;
    let left = quota.saturating_sub(used);
    let cap = state.config.artifact_max_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large(cap));
    }
    if existing.is_none() && declared.is_some_and(|n| n > left) {
        return Err(over_quota(quota, used));
    }
    let job_dir = state.config.artifact_dir.join(&grant.job_id);
    let target = job_dir.join(&relative);
    let parent = target.parent().unwrap_or(&job_dir).to_path_buf();
    create_private_dirs(&parent).await?;
    let suffix = random_hex(8).map_err(|e| ApiError::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    let temp_path = job_dir.join(format!(".upload-{suffix}.tmp"));
    let temp = TempFile(Some(temp_path.clone()));
    // A retry of a stored artifact is exactly its size; anything longer is refused early.
    let limit = match &existing {
        Some(stored) => stored.size_bytes,
        None => cap.min(left),
    };
    let (size, sha256) = stream_to(&temp_path, body, limit).await.map_err(|e| match e {
        StreamError::OverLimit if existing.is_some() => {
            ApiError::new(ErrorCode::ArtifactExists, "the artifact is already stored and is never replaced")
        }
        StreamError::OverLimit if limit < cap => over_quota(quota, used),
        StreamError::OverLimit => too_large(cap),
        StreamError::Api(e) => e,
    })?;
    if size == 0 {
        return Err(ApiError::new(ErrorCode::InvalidValue, "empty artifact body"));
    }
    if let Some(existing) = existing {
        // An artifact is never replaced; the same bytes again (a retry whose answer was
        // lost) are answered as stored.
        if existing.sha256.eq_ignore_ascii_case(&sha256) {
            return Ok((StatusCode::OK, Json(UploadResponse { job_id: grant.job_id, artifact: existing })));
        }
        return Err(ApiError::new(
            ErrorCode::ArtifactExists,
            format!("artifact `{path_text}` is already stored and is never replaced"),
        ));
    }
    // The job may have ended while the body streamed in: a finished job's artifacts are
    // fixed (security review F2).
    if state.jobs.store.get_job(&grant.job_id)?.is_none_or(|j| j.status.is_final()) {
        return Err(ApiError::new(ErrorCode::InvalidToken, "invalid or expired artifact token"));
    }
    // No record: a file at the target is a crash's leftover, not an artifact. Linking
    // instead of renaming never replaces a file another writer put there meanwhile.
    let _ = tokio::fs::remove_file(&target).await;
    if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
        return Err(path_conflict());
    }
    tokio::fs::hard_link(&temp_path, &target).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::IsADirectory => path_conflict(),
        _ => {
            tracing::error!(target = %target.display(), error = %e, "cannot store an artifact");
            ApiError::new(ErrorCode::Internal, "cannot store the artifact")
        }
    })?;
    drop(temp);
    let content_type = Some(content_type).filter(|c| !c.is_empty());
    let info = ArtifactInfo {
        name: relative.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| path_text.clone()),
        mime: mime_for(&relative, content_type),
        path: path_text,
        size_bytes: size,
        sha256,
    };
    state.jobs.store.insert_artifact(&grant.job_id, &info)?;
    agentlab_actors::metrics::metrics().artifact_uploaded_bytes.inc_by(size);
    tracing::info!(job = %grant.job_id, vmid = grant.vmid, name = %info.name, size, "artifact stored");
    Ok((StatusCode::CREATED, Json(UploadResponse { job_id: grant.job_id, artifact: info })))
}

/// Whether any of `texts` (the name, the MIME type: both are stored and shown) carries one
/// of the job's secrets.
fn holds_a_secret(state: &GuestState, job_id: &str, texts: &[&str]) -> Result<bool, ApiError> {
    let Some(job) = state.jobs.store.get_job(job_id)? else { return Ok(false) };
    let redactor =
        agentlab_actors::job::secrets::redactor_for(&state.jobs.settings.secrets, &state.jobs.profiles, &job.profile);
    Ok(texts.iter().any(|t| redactor.redact(t) != *t))
}

/// The job's artifact quota: its profile's `artifacts.max_total_bytes`, within the daemon's
/// `artifact_max_total_bytes`.
fn job_quota(state: &GuestState, job_id: &str) -> Result<u64, ApiError> {
    let ceiling = state.config.artifact_max_total_bytes;
    let profile = state.jobs.store.get_job(job_id)?.map(|j| j.profile);
    let asked =
        profile.and_then(|p| state.jobs.profiles.snapshot().get(&p).and_then(|l| l.profile.artifacts.max_total_bytes));
    Ok(asked.map_or(ceiling, |a| a.min(ceiling)))
}

fn over_quota(quota: u64, used: u64) -> ApiError {
    ApiError::new(
        ErrorCode::QuotaExceeded,
        format!("the job's artifacts would exceed its quota ({quota} bytes; {used} stored)"),
    )
}

/// A name whose directory part is a stored file (`a` then `a/b`), or whose file is a
/// directory: 409 with no host path in the answer (security review F17).
fn path_conflict() -> ApiError {
    ApiError::new(ErrorCode::ArtifactPathConflict, "the artifact path conflicts with a stored artifact or directory")
}

async fn create_private_dirs(dir: &Path) -> Result<(), ApiError> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => path_conflict(),
        _ => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create an artifact directory");
            ApiError::new(ErrorCode::Internal, "cannot store the artifact")
        }
    })?;
    use std::os::unix::fs::PermissionsExt;
    let _ = tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).await;
    Ok(())
}

/// Why streaming stopped.
enum StreamError {
    /// More than the limit arrived (nothing is kept).
    OverLimit,
    Api(ApiError),
}

/// Bytes gathered before each write of an upload (per upload in flight, bounded by the
/// listener's connection caps).
const UPLOAD_WRITE_BUFFER: usize = 1024 * 1024;

/// How long an upload may send nothing before it is dropped (security review F4).
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes the body to `path` (0640), stopping past `limit`; returns (size, sha256 hex).
async fn stream_to(path: &Path, body: Body, limit: u64) -> Result<(u64, String), StreamError> {
    let io = |_: std::io::Error| StreamError::Api(ApiError::new(ErrorCode::Internal, "cannot write the artifact"));
    let file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(path).await.map_err(io)?;
    // Body frames are a few KiB and each tokio file write is a trip to a blocking thread:
    // written in 1 MiB pieces the upload runs about twice as fast (`agentlab-bench artifacts`).
    let mut file = tokio::io::BufWriter::with_capacity(UPLOAD_WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    loop {
        let next = tokio::time::timeout(BODY_IDLE, stream.next())
            .await
            .map_err(|_| StreamError::Api(ApiError::new(ErrorCode::BadRequest, "upload idle for too long; dropped")))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| StreamError::Api(ApiError::new(ErrorCode::BadRequest, "upload interrupted")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(StreamError::OverLimit);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.get_ref().sync_all().await.map_err(io)?;
    let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, sha))
}
