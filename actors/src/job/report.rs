//! A runner report: checked against the job, its log stored (de-duplicated, redacted as
//! one stream, capped), its phase recorded, and a final report ending the job — with the
//! result's guest strings redacted and a missing result bundle said.

use super::actor::{JobActor, JobActorState, JobMsg};
use crate::model::job_state::JobEvent;
use crate::model::{ErrorCode, EventKind, JobState, Refusal, SandboxEvent, time_format};
use crate::protocol::guest::{DEFAULT_ARTIFACT_NAME, ReportResponse, ReportStatus, RunnerReport};
use crate::store::{NewEvent, Stage};
use ractor::{ActorProcessingErr, ActorRef};

impl JobActor {
    pub(super) fn on_report(
        &self,
        me: &ActorRef<JobMsg>,
        state: &mut JobActorState,
        report: RunnerReport,
    ) -> Result<Result<ReportResponse, Refusal>, ActorProcessingErr> {
        let job = self.load(&state.id)?;
        if job.status.is_final() {
            return Ok(Err(Refusal {
                code: ErrorCode::JobFinalized,
                message: format!("job already finalized ({})", job.status),
            }));
        }
        if job.sandbox_vmid != Some(report.vmid) || report.job_id != job.id {
            return Ok(Err(Refusal { code: ErrorCode::InvalidToken, message: "job sandbox mismatch".into() }));
        }
        self.ensure_redactor(state, &job);
        let message = report.message.as_deref().map(|m| state.redact(m));
        if let Some(log) = report.log.as_deref().filter(|l| !l.is_empty()) {
            let (fresh, raw_end) = crate::store::fresh_log(job.log_bytes, report.log_offset, log);
            if !fresh.is_empty() {
                let safe = state.redact_log(fresh);
                self.ctx.store.append_job_log(&job.id, raw_end, &safe, self.ctx.settings.log_max_bytes)?;
            }
        }
        if let Some(phase) = report.phase.filter(|p| p.reported_by_runner()) {
            self.ctx.store.record_job_phase(&job.id, phase)?;
        }
        let job = if job.status == JobState::Queued {
            // Any report means the runner is at work.
            match self.apply(state, JobEvent::RunnerStarted, None, None, None)? {
                Some(job) => {
                    self.tell_sandbox(&job, SandboxEvent::JobStarted);
                    job
                }
                None => job,
            }
        } else {
            job
        };
        let job = match report.status {
            ReportStatus::Running => job,
            status => {
                // Every guest string that is stored and shown passes the redactor (F9).
                let commit = report.commit.as_deref().map(|c| state.redact(c));
                let artifacts: Vec<_> = report
                    .artifacts
                    .iter()
                    .map(|a| {
                        let mut a = a.clone();
                        a.name = state.redact(&a.name);
                        a.path = state.redact(&a.path);
                        a.mime = state.redact(&a.mime);
                        a
                    })
                    .collect();
                let result = serde_json::json!({
                    "status": status,
                    "exit_code": report.exit_code,
                    "commit": commit,
                    "duration_seconds": report.duration_seconds,
                    "message": message,
                    "artifacts": artifacts,
                    "reported_at": time_format::now(),
                });
                // A job that completed without its result bundle says so (security review F10):
                // it stays COMPLETED — the agent succeeded — with the reason as its error.
                let bundle_missing = status == ReportStatus::Completed
                    && self.ctx.store.artifact_at(&job.id, DEFAULT_ARTIFACT_NAME)?.is_none();
                if bundle_missing {
                    let why = message.as_deref().unwrap_or("the runner reported no upload");
                    let event = NewEvent::job(
                        &job.id,
                        EventKind::JobBundleMissing,
                        Stage::Artifact,
                        format!("the result bundle was not uploaded: {why}"),
                    );
                    self.ctx.store.append_event(&event)?;
                }
                let missing_error = bundle_missing.then(|| {
                    format!("the result bundle was not uploaded: {}", message.as_deref().unwrap_or("no reason given"))
                });
                let (event, error) = match status {
                    ReportStatus::Completed => (JobEvent::Succeeded, missing_error.as_deref()),
                    ReportStatus::Timeout => (JobEvent::TimedOut, Some("the agent ran past the job's TTL")),
                    _ => (JobEvent::Failed, Some(message.as_deref().unwrap_or("the agent failed"))),
                };
                let error = match (error, report.exit_code) {
                    (Some(e), Some(code)) if event != JobEvent::TimedOut => Some(format!("{e} (exit code {code})")),
                    (e, _) => e.map(str::to_string),
                };
                self.finish(me, state, event, error.as_deref(), Some(&result), None)?.unwrap_or(job)
            }
        };
        let sandbox_status = job
            .sandbox_vmid
            .and_then(|vmid| self.ctx.store.get_sandbox(vmid).ok().flatten())
            .map(|s| s.state.to_string());
        Ok(Ok(ReportResponse { job_status: job.status.to_string(), sandbox_status }))
    }
}
