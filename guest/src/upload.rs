//! Uploading the artifact tarball to the daemon's artifact listener, streamed from disk,
//! retried, and checked: the daemon's SHA-256 of what it stored must equal ours.

use crate::artifacts::Tarball;
use crate::config::RetryPolicy;
use crate::daemon::{CallError, with_retries};
use crate::http::{Body, Client, Request, Url};
use crate::journal::Journal;
use agentlab_model::protocol::guest::{ArtifactInfo, DEFAULT_ARTIFACT_NAME, UploadResponse};
use std::fs::File;

/// `POST <endpoint>?path=agentlab-artifacts.tar.gz` with the artifact token.
pub fn upload(
    endpoint: &str,
    token: &str,
    tarball: &Tarball,
    policy: RetryPolicy,
    journal: &mut Journal,
) -> Result<ArtifactInfo, CallError> {
    let url = Url::parse(endpoint)?.with_query("path", DEFAULT_ARTIFACT_NAME);
    journal.say(&format!(
        "uploading {DEFAULT_ARTIFACT_NAME} ({} bytes, sha256 {}) to {url}",
        tarball.size_bytes, tarball.sha256
    ));
    let client = Client::default();
    with_retries(policy, "artifact upload", journal, || {
        let mut file = File::open(&tarball.path).map_err(|e| CallError::Refused {
            status: 0,
            message: format!("cannot open {}: {e}", tarball.path.display()),
        })?;
        let response = client.post(Request {
            url: &url,
            bearer: Some(token),
            content_type: "application/gzip",
            body: Body::Reader { reader: &mut file, len: tarball.size_bytes },
        })?;
        if !response.is_success() {
            // 413 (too large) and other 4xx but 429 are final.
            return Err(CallError::from_response(&response));
        }
        let answer: UploadResponse = serde_json::from_slice(&response.body)
            .map_err(|e| CallError::Transient(format!("unreadable upload answer: {e}")))?;
        if !answer.artifact.sha256.eq_ignore_ascii_case(&tarball.sha256) {
            return Err(CallError::Transient(format!(
                "the daemon stored sha256 {} but the tarball has {}",
                answer.artifact.sha256, tarball.sha256
            )));
        }
        Ok(answer.artifact)
    })
}
