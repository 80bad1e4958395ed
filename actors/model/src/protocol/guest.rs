//! The guest side of the protocol: what cloud-init writes into the VM for `agent-runner`,
//! and the three guest routes (bootstrap fetch, runner report, artifact upload).
//!
//! Everything a guest sends is untrusted: the daemon parses these bodies strictly and
//! never uses a field as a path or a shell word.

use super::jobs::{Agent, JobMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST` on the guest listener (`bootstrap_listen`).
pub const FETCH_PATH: &str = "/v1/bootstrap/fetch";
/// `POST` on the guest listener, `Authorization: Bearer <runner token>`.
pub const REPORT_PATH: &str = "/v1/runner/report";
/// `POST` on the artifact listener (`artifact_listen`), `Authorization: Bearer <artifact token>`,
/// optional `?path=<relative name>` (default [`DEFAULT_ARTIFACT_NAME`]).
pub const UPLOAD_PATH: &str = "/upload";
pub const DEFAULT_ARTIFACT_NAME: &str = "agentlab-artifacts.tar.gz";
/// The error text of a 404 on fetch for a sandbox that has no job: the runner exits 0.
pub const NO_JOB_ERROR: &str = "job not found";
/// The most raw log one report carries: the runner reads its log in pieces of this size.
pub const MAX_REPORT_LOG_BYTES: usize = 64 * 1024;
/// The longest `log` text the daemon takes in one report (413 beyond): a raw piece after the
/// runner's redaction, whose `[REDACTED]` markers can be longer than short secrets.
pub const MAX_REPORT_LOG_TEXT_BYTES: usize = 4 * MAX_REPORT_LOG_BYTES;

/// `/etc/agentlab/bootstrap.json`: enough to fetch the one-time job payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapDescriptor {
    /// One-time bootstrap token (the daemon keeps only its hash).
    pub token: String,
    /// Base URL of the daemon's guest listener, e.g. `http://10.77.0.1:8844`.
    pub controller: String,
    pub vmid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("not valid JSON of the form {{\"token\",\"controller\",\"vmid\"}}: {0}")]
    Json(String),
    #[error("`token` must be at least 43 characters (256 random bits)")]
    ShortToken,
    #[error("`controller` must be an http:// or https:// URL with a host, got `{0}`")]
    Controller(String),
    #[error("`vmid` must be a Proxmox VMID (100 or more), got {0}")]
    Vmid(u32),
}

impl BootstrapDescriptor {
    pub fn parse(text: &str) -> Result<BootstrapDescriptor, DescriptorError> {
        let d: BootstrapDescriptor = serde_json::from_str(text).map_err(|e| DescriptorError::Json(e.to_string()))?;
        if d.token.trim().len() < 43 {
            return Err(DescriptorError::ShortToken);
        }
        let host = d.controller.strip_prefix("http://").or_else(|| d.controller.strip_prefix("https://"));
        if !host.is_some_and(|h| !h.is_empty() && !h.starts_with('/')) {
            return Err(DescriptorError::Controller(d.controller.clone()));
        }
        if d.vmid < 100 {
            return Err(DescriptorError::Vmid(d.vmid));
        }
        Ok(d)
    }
}

/// `POST /v1/bootstrap/fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    pub token: String,
    pub vmid: u32,
}

/// The one-time job payload. Secrets inside: the runner keeps it only under its secrets
/// directory (0600) and wipes it at exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapPayload {
    pub job: JobSpec,
    #[serde(default)]
    pub git: GitCredentials,
    /// Exported into the agent's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Written to `claude-settings.json`; `CLAUDE_SETTINGS_PATH` points at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_settings_json: Option<String>,
    pub artifact: ArtifactEndpoint,
    /// Bearer token for `POST /v1/runner/report` (the report URL is the descriptor's
    /// `controller` + [`REPORT_PATH`]).
    pub runner_token: String,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub id: String,
    pub repo_url: String,
    /// Branch, tag or commit; unset = the remote's default branch.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    pub task: String,
    /// `dangerous` (the default) lets the agent do anything inside the VM.
    pub mode: JobMode,
    pub profile: String,
    /// `claude`, `codex`, `opencode` or `custom` (run `AGENTLAB_AGENT_COMMAND` or the repo's
    /// `.agentlab/run.sh`).
    pub agent: Agent,
    pub keepalive: bool,
    pub ttl_minutes: u32,
    /// The agent is killed after this many seconds (exit 124, status TIMEOUT): the job's
    /// TTL (shorter under the daemon's `test_time_scale`).
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactEndpoint {
    /// Full URL of the upload route, e.g. `http://10.77.0.1:8846/upload`.
    pub endpoint: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub mode: JobMode,
    /// `bubblewrap` wraps the agent in bwrap; `none` runs it directly.
    pub inner_sandbox: String,
    #[serde(default)]
    pub inner_sandbox_args: Vec<String>,
}

/// What the runner says about its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportStatus {
    Running,
    Completed,
    Failed,
    Timeout,
}

impl ReportStatus {
    pub fn is_final(self) -> bool {
        self != ReportStatus::Running
    }

    /// Exit 0 → COMPLETED, 124 (`timeout`'s code) → TIMEOUT, anything else → FAILED.
    pub fn from_exit_code(code: i32) -> ReportStatus {
        match code {
            0 => ReportStatus::Completed,
            124 => ReportStatus::Timeout,
            _ => ReportStatus::Failed,
        }
    }
}

/// The milestones of a job, in order: the daemon records the first, second, third and last;
/// the runner reports the others. `job show` prints them as a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    Queued,
    SandboxReady,
    BootstrapFetched,
    RepoReady,
    AgentStarted,
    AgentFinished,
    ArtifactsUploaded,
}

impl JobPhase {
    pub const ALL: [JobPhase; 7] = [
        JobPhase::Queued,
        JobPhase::SandboxReady,
        JobPhase::BootstrapFetched,
        JobPhase::RepoReady,
        JobPhase::AgentStarted,
        JobPhase::AgentFinished,
        JobPhase::ArtifactsUploaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Queued => "queued",
            JobPhase::SandboxReady => "sandbox_ready",
            JobPhase::BootstrapFetched => "bootstrap_fetched",
            JobPhase::RepoReady => "repo_ready",
            JobPhase::AgentStarted => "agent_started",
            JobPhase::AgentFinished => "agent_finished",
            JobPhase::ArtifactsUploaded => "artifacts_uploaded",
        }
    }

    /// Human words for timelines.
    pub fn label(self) -> &'static str {
        match self {
            JobPhase::Queued => "queued",
            JobPhase::SandboxReady => "sandbox ready",
            JobPhase::BootstrapFetched => "bootstrap fetched",
            JobPhase::RepoReady => "repo ready",
            JobPhase::AgentStarted => "agent started",
            JobPhase::AgentFinished => "agent finished",
            JobPhase::ArtifactsUploaded => "artifacts uploaded",
        }
    }

    pub fn parse(text: &str) -> Option<JobPhase> {
        JobPhase::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// Phases a runner may report (the others are the daemon's to record).
    pub fn reported_by_runner(self) -> bool {
        matches!(self, JobPhase::RepoReady | JobPhase::AgentStarted | JobPhase::AgentFinished)
    }
}

/// `POST /v1/runner/report`. Log text must already be redacted by the runner; the daemon
/// redacts it again with the secrets it knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerReport {
    pub job_id: String,
    pub vmid: u32,
    pub status: ReportStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A chunk of the agent's (redacted) output ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// ... starting at this byte offset of the whole log, so a retried report is not
    /// stored twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// What the runner uploaded (the daemon trusts its own record of uploads, not this).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactInfo>,
}

/// The answer to a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResponse {
    pub job_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub mime: String,
}

/// `201` answer to an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub job_id: String,
    pub artifact: ArtifactInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_descriptor_parses_and_bad_ones_say_why() {
        let token = "a".repeat(64);
        let good = format!(r#"{{"token":"{token}","controller":"http://10.77.0.1:8844","vmid":1001}}"#);
        assert!(BootstrapDescriptor::parse(&good).is_ok());
        let cases = [
            (r#"{"token":"x","controller":"http://h","vmid":1001}"#.to_string(), DescriptorError::ShortToken),
            (
                format!(r#"{{"token":"{token}","controller":"ftp://h","vmid":1001}}"#),
                DescriptorError::Controller("ftp://h".into()),
            ),
            (format!(r#"{{"token":"{token}","controller":"http://h","vmid":5}}"#), DescriptorError::Vmid(5)),
        ];
        for (text, want) in cases {
            assert_eq!(BootstrapDescriptor::parse(&text), Err(want));
        }
        assert!(matches!(BootstrapDescriptor::parse("{}"), Err(DescriptorError::Json(_))));
    }

    #[test]
    fn exit_codes_map_to_statuses_and_phases_parse_back() {
        assert_eq!(ReportStatus::from_exit_code(0), ReportStatus::Completed);
        assert_eq!(ReportStatus::from_exit_code(124), ReportStatus::Timeout);
        assert_eq!(ReportStatus::from_exit_code(3), ReportStatus::Failed);
        for phase in JobPhase::ALL {
            assert_eq!(JobPhase::parse(phase.as_str()), Some(phase));
        }
        let report: RunnerReport =
            serde_json::from_str(r#"{"job_id":"job_1","vmid":1001,"status":"RUNNING","phase":"repo_ready"}"#).unwrap();
        assert_eq!(report.phase, Some(JobPhase::RepoReady));
        assert!(serde_json::from_str::<RunnerReport>(r#"{"job_id":"j","vmid":1,"status":"DONE"}"#).is_err());
        assert!(serde_json::from_str::<FetchRequest>(r#"{"token":"t","vmid":1,"x":1}"#).is_err());
    }
}
