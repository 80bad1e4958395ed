//! `POST /upload?path=<name>` with `Authorization: Bearer <artifact token>`: the body is
//! streamed to a temporary file under `<artifact_dir>/<job>/`, capped at
//! `artifact_max_bytes` while it streams (413, nothing kept), hashed with SHA-256, synced
//! and renamed into place, then recorded.

use super::GuestState;
use super::artifact_path::{checked, mime_for};
use super::guard::bearer;
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

pub async fn upload(
    State(state): State<GuestState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    if !state.artifact_limiter.allow(source.ip()) {
        return Err(ApiError::new(ErrorCode::RateLimited, "rate limit exceeded"));
    }
    let token = bearer(&headers).ok_or_else(|| ApiError::new(ErrorCode::MissingBearerToken, "missing bearer token"))?;
    let grant = state
        .jobs
        .store
        .artifact_grant(&token_hash(token))?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "invalid or expired artifact token"))?;
    let name = query.path.unwrap_or_else(|| DEFAULT_ARTIFACT_NAME.to_string());
    let relative = checked(&name).map_err(|e| ApiError::new(ErrorCode::InvalidPath, e))?;
    let cap = state.config.artifact_max_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large(cap));
    }
    let job_dir = state.config.artifact_dir.join(&grant.job_id);
    let target = job_dir.join(&relative);
    let parent = target.parent().unwrap_or(&job_dir).to_path_buf();
    create_private_dirs(&parent).await?;
    let suffix = random_hex(8).map_err(|e| ApiError::new(ErrorCode::Internal, format!("no randomness: {e}")))?;
    let temp_path = job_dir.join(format!(".upload-{suffix}.tmp"));
    let mut temp = TempFile(Some(temp_path.clone()));
    let (size, sha256) = stream_to(&temp_path, body, cap).await?;
    if size == 0 {
        return Err(ApiError::new(ErrorCode::InvalidValue, "empty artifact body"));
    }
    tokio::fs::rename(&temp_path, &target)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot store the artifact: {e}")))?;
    temp.0 = None;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let path_text = relative.to_string_lossy().into_owned();
    let info = ArtifactInfo {
        name: relative.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| path_text.clone()),
        mime: mime_for(&relative, content_type),
        path: path_text,
        size_bytes: size,
        sha256,
    };
    state.jobs.store.insert_artifact(&grant.job_id, &info)?;
    tracing::info!(job = %grant.job_id, vmid = grant.vmid, name = %info.name, size, "artifact stored");
    Ok((StatusCode::CREATED, Json(UploadResponse { job_id: grant.job_id, artifact: info })))
}

async fn create_private_dirs(dir: &Path) -> Result<(), ApiError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot create {}: {e}", dir.display())))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).await;
    Ok(())
}

/// Writes the body to `path` (0640), stopping at `cap`; returns (size, sha256 hex).
async fn stream_to(path: &Path, body: Body, cap: u64) -> Result<(u64, String), ApiError> {
    let io = |e: std::io::Error| ApiError::new(ErrorCode::Internal, format!("cannot write the artifact: {e}"));
    let mut file =
        tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > cap {
            return Err(too_large(cap));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, sha))
}
