//! Request and response bodies of the job routes of the control API (`/v1/jobs…`).
//! Field names follow the Go version's job responses (docs/reference/compatibility.md).

use super::api::EventView;
use super::guest::ArtifactInfo;
use crate::model::JobState;
use serde::{Deserialize, Serialize};

/// The agent a job runs; `custom` runs `AGENTLAB_AGENT_COMMAND` or the repo's
/// `.agentlab/run.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agent {
    Claude,
    Codex,
    Opencode,
    Custom,
}

impl Agent {
    pub const ALL: [Agent; 4] = [Agent::Claude, Agent::Codex, Agent::Opencode, Agent::Custom];
    /// What `job run` uses when no agent is named.
    pub const DEFAULT: Agent = Agent::Claude;

    pub fn as_str(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::Opencode => "opencode",
            Agent::Custom => "custom",
        }
    }
}

/// How much the agent may do inside the VM; `dangerous` gives it every permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    Dangerous,
    Safe,
}

impl JobMode {
    pub const ALL: [JobMode; 2] = [JobMode::Dangerous, JobMode::Safe];
    pub const DEFAULT: JobMode = JobMode::Dangerous;

    pub fn as_str(self) -> &'static str {
        match self {
            JobMode::Dangerous => "dangerous",
            JobMode::Safe => "safe",
        }
    }
}

/// A word that is not one of an enum's spellings; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{given}` is not one of {}", allowed.join(", "))]
pub struct UnknownWord {
    pub what: &'static str,
    pub given: String,
    pub allowed: Vec<&'static str>,
}

macro_rules! text_enum {
    ($ty:ident, $what:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownWord;

            fn from_str(text: &str) -> Result<$ty, UnknownWord> {
                $ty::ALL.into_iter().find(|v| v.as_str() == text).ok_or_else(|| UnknownWord {
                    what: $what,
                    given: text.to_string(),
                    allowed: $ty::ALL.iter().map(|v| v.as_str()).collect(),
                })
            }
        }
    };
}

text_enum!(Agent, "agent");
text_enum!(JobMode, "mode");

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
    /// An existing workspace (id or name), ready and detached: its volume is the guest's
    /// `/work` and the repository goes to `/work/repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// A workspace to create for the job (exclusive with `workspace_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_create: Option<crate::protocol::CreateWorkspaceRequest>,
    /// How long to wait for the workspace to be free when another sandbox has it (default:
    /// refused at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_wait_seconds: Option<u32>,
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
    pub mode: JobMode,
    pub agent: Agent,
    pub ttl_minutes: u32,
    pub keepalive: bool,
    pub status: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// The runner's final report (status, exit code, commit, duration, artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
    /// What the job's sandbox tried to reach since the job began and the host ruleset
    /// dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_drops: Vec<super::api::EgressDrop>,
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
