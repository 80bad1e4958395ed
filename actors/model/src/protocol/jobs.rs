//! Request and response bodies of the job routes of the control API (`/v1/jobs…`).
//! Field names follow the Go version's `V1JobResponse` (inventory §2.3).

use super::api::EventView;
use super::guest::ArtifactInfo;
use crate::model::JobState;
use serde::{Deserialize, Serialize};

/// The agents a job can run; `custom` runs `AGENTLAB_AGENT_COMMAND` or the repo's
/// `.agentlab/run.sh`.
pub const AGENTS: [&str; 4] = ["claude", "codex", "opencode", "custom"];
/// The job modes; `dangerous` gives the agent every permission inside the VM.
pub const MODES: [&str; 2] = ["dangerous", "safe"];

/// A job id as the API accepts it, `job_<16 hex>` (ids end up in paths: strictly checked).
pub fn valid_job_id(id: &str) -> bool {
    id.strip_prefix("job_").is_some_and(|hex| hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    pub repo_url: String,
    /// Branch, tag or commit; unset = the remote's default branch.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    pub profile: String,
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<bool>,
}

/// One milestone of a job and when it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub phase: String,
    pub label: String,
    pub at: String,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub repo_url: String,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    pub profile: String,
    pub task: String,
    pub mode: String,
    pub agent: String,
    pub ttl_minutes: u32,
    pub keepalive: bool,
    pub status: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_vmid: Option<u32>,
    /// The runner's final report (status, exit code, commit, duration, artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsResponse {
    pub jobs: Vec<JobView>,
}

/// An artifact stored for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactView {
    #[serde(flatten)]
    pub info: ArtifactInfo,
    pub created_at: String,
}

/// `GET /v1/jobs/{id}/artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactsResponse {
    pub job_id: String,
    pub artifacts: Vec<ArtifactView>,
}

/// `POST /v1/secrets/validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSecretsRequest {
    /// Unset: the daemon's `secrets_bundle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

/// What `secrets validate` learned; never a secret value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateSecretsResponse {
    pub bundle: String,
    pub path: String,
    pub ok: bool,
    /// Section and variable names only.
    pub summary: serde_json::Value,
}
