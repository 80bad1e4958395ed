//! The job actor. Like the sandbox actor, it decides (transition table), records (store),
//! then starts side effects on tasks whose outcome comes back as a message.

use super::{JobContext, JobError, release};
use crate::model::EventKind;
use crate::model::Refusal;
use crate::model::job_state::{self, JobEvent};
use crate::model::redact::{Redactor, StreamRedactor};
use crate::model::{ErrorCode, JobState, SandboxEvent, SandboxNotice, job_links};
use crate::protocol::guest::{JobPhase, ReportResponse, RunnerReport};
use crate::sandbox::SandboxMsg;
use crate::store::{JobRecord, NewEvent, Stage};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::sync::Arc;

pub enum JobMsg {
    /// First message after (re)start: converge from the record.
    Reconcile,
    /// The job's sandbox finished provisioning (or failed to).
    SandboxSettled(Result<u32, JobError>),
    /// A report from the runner, already authenticated by its runner token.
    Report {
        report: RunnerReport,
        reply: RpcReplyPort<Result<ReportResponse, Refusal>>,
    },
    Cancel {
        by: Option<u32>,
        reply: RpcReplyPort<Result<JobRecord, Refusal>>,
    },
    /// The host-side deadline passed without a final report.
    DeadlinePassed,
    /// The job's sandbox ended under it (lease expired, VM vanished, destroyed).
    SandboxEnded {
        vmid: u32,
        notice: SandboxNotice,
    },
    /// The sandbox release finished (or failed and will be retried).
    Released(Result<(), JobError>),
}

pub struct JobActor {
    pub ctx: Arc<JobContext>,
}

pub struct JobActorState {
    pub(super) id: String,
    name: String,
    deadline: Option<JoinHandle<Result<(), MessagingErr<JobMsg>>>>,
    /// Built from the job's secrets on first need; never persisted.
    redactor: Option<Redactor>,
    /// The job's log redacted as one stream: a secret split across two reports is caught
    /// (security review F9). Holds back at most a secret's length until the next piece or
    /// the job's end.
    log_stream: Option<StreamRedactor>,
    provisioning: Option<tokio::task::JoinHandle<()>>,
    releasing: bool,
}

impl JobActorState {
    /// `text` without the job's secret values (unchanged until the redactor is built).
    pub(super) fn redact(&self, text: &str) -> String {
        self.redactor.as_ref().map_or_else(|| text.to_string(), |r| r.redact(text))
    }

    /// The next piece of the log, redacted as part of the whole stream: what is safe to
    /// store now.
    pub(super) fn redact_log(&mut self, piece: &str) -> String {
        let Some(redactor) = &self.redactor else { return piece.to_string() };
        let stream = self.log_stream.get_or_insert_with(|| StreamRedactor::new(redactor.clone()));
        String::from_utf8_lossy(&stream.push(piece.as_bytes())).into_owned()
    }

    /// What the log stream still holds back (at the job's end).
    pub(super) fn flush_log(&mut self) -> String {
        self.log_stream.as_mut().map(|s| String::from_utf8_lossy(&s.finish()).into_owned()).unwrap_or_default()
    }
}

impl JobActor {
    pub(super) fn load(&self, id: &str) -> Result<JobRecord, ActorProcessingErr> {
        Ok(self.ctx.store.get_job(id)?.ok_or_else(|| format!("job {id} has no record"))?)
    }

    pub(super) fn publish(&self, state: &JobActorState, job: &JobRecord) {
        self.ctx.directory.set_state(&state.name, job.status.as_str());
        self.ctx.directory.set_lease(&state.name, Some(job.deadline_at));
    }

    /// Applies `event` if the table allows it; the record after, or None if refused.
    pub(super) fn apply(
        &self,
        state: &JobActorState,
        event: JobEvent,
        error: Option<&str>,
        result: Option<&serde_json::Value>,
        by: Option<u32>,
    ) -> Result<Option<JobRecord>, ActorProcessingErr> {
        let job = self.load(&state.id)?;
        let Ok(to) = job_state::transition(job.status, event) else {
            return Ok(None);
        };
        let error = error.map(|e| state.redact(e));
        let job = self.ctx.store.transition_job(&state.id, job.status, to, error.as_deref(), result, by)?;
        self.publish(state, &job);
        Ok(Some(job))
    }

    pub(super) fn ensure_redactor(&self, state: &mut JobActorState, job: &JobRecord) {
        if state.redactor.is_none() {
            state.redactor =
                Some(super::secrets::redactor_for(&self.ctx.settings.secrets, &self.ctx.profiles, &job.profile));
        }
    }

    fn arm_deadline(&self, me: &ActorRef<JobMsg>, state: &mut JobActorState, job: &JobRecord) {
        if let Some(timer) = state.deadline.take() {
            timer.abort();
        }
        let left = self.ctx.clock().until(job.deadline_at);
        state.deadline = Some(me.send_after(left, || JobMsg::DeadlinePassed));
    }

    /// Tells the sandbox actor what the job did (RUNNING, COMPLETED, FAILED).
    pub(super) fn tell_sandbox(&self, job: &JobRecord, event: SandboxEvent) {
        if let Some(actor) = job.sandbox_vmid.and_then(crate::sandbox::actor_of) {
            let _ = actor.send_message(SandboxMsg::JobChanged(event));
        }
    }

    /// Ends the job with `event` and releases its sandbox; `None` if it had already ended.
    pub(super) fn finish(
        &self,
        me: &ActorRef<JobMsg>,
        state: &mut JobActorState,
        event: JobEvent,
        error: Option<&str>,
        result: Option<&serde_json::Value>,
        by: Option<u32>,
    ) -> Result<Option<JobRecord>, ActorProcessingErr> {
        // The held-back end of the log goes in before the job is final.
        let tail = state.flush_log();
        if !tail.is_empty() {
            let job = self.load(&state.id)?;
            self.ctx.store.append_job_log(&state.id, job.log_bytes, &tail, self.ctx.settings.log_max_bytes)?;
        }
        let Some(job) = self.apply(state, event, error, result, by)? else {
            return Ok(None);
        };
        if let Some(work) = state.provisioning.take() {
            work.abort();
        }
        if let Some(timer) = state.deadline.take() {
            timer.abort();
        }
        if let Some(e) = job_links::sandbox_event_for(job.status) {
            self.tell_sandbox(&job, e);
        }
        self.start_release(me, state, &job);
        Ok(Some(job))
    }

    fn start_release(&self, me: &ActorRef<JobMsg>, state: &mut JobActorState, job: &JobRecord) {
        if state.releasing {
            return;
        }
        state.releasing = true;
        let (ctx, me, job) = (Arc::clone(&self.ctx), me.clone(), job.clone());
        tokio::spawn(async move {
            let result = release::release(&ctx, &job).await;
            let _ = me.send_message(JobMsg::Released(result));
        });
    }

    fn reconcile(&self, me: &ActorRef<JobMsg>, state: &mut JobActorState) -> Result<(), ActorProcessingErr> {
        let job = self.load(&state.id)?;
        self.publish(state, &job);
        if job.status.is_final() {
            if job.sandbox_released {
                me.stop(Some("job ended".into()));
            } else {
                self.start_release(me, state, &job);
            }
            return Ok(());
        }
        self.arm_deadline(me, state, &job);
        let (ctx, me) = (Arc::clone(&self.ctx), me.clone());
        state.provisioning = Some(tokio::spawn(async move {
            let outcome = super::create::provision_sandbox(&ctx, &job).await;
            let _ = me.send_message(JobMsg::SandboxSettled(outcome));
        }));
        Ok(())
    }
}

impl Actor for JobActor {
    type Msg = JobMsg;
    type State = JobActorState;
    type Arguments = String;

    async fn pre_start(&self, myself: ActorRef<JobMsg>, id: String) -> Result<JobActorState, ActorProcessingErr> {
        let job = self.load(&id)?;
        let state = JobActorState {
            name: format!("{}:{id}", super::KIND),
            id,
            deadline: None,
            redactor: None,
            log_stream: None,
            provisioning: None,
            releasing: false,
        };
        self.publish(&state, &job);
        myself.send_message(JobMsg::Reconcile)?;
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<JobMsg>, state: &mut JobActorState) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.deadline.take() {
            timer.abort();
        }
        if let Some(work) = state.provisioning.take() {
            work.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<JobMsg>,
        msg: JobMsg,
        state: &mut JobActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            JobMsg::Reconcile => self.reconcile(&myself, state)?,
            JobMsg::SandboxSettled(outcome) => {
                state.provisioning = None;
                let job = self.load(&state.id)?;
                if job.status.is_final() {
                    return Ok(());
                }
                match outcome {
                    Ok(_) => {
                        self.ctx.store.record_job_phase(&state.id, JobPhase::SandboxReady)?;
                        // The runner can report before the sandbox is READY (it fetches as soon
                        // as the guest boots); the sandbox refused `JobStarted` then, so say it again.
                        if job.status == JobState::Running {
                            self.tell_sandbox(&job, SandboxEvent::JobStarted);
                        }
                    }
                    Err(error) => {
                        self.finish(&myself, state, JobEvent::Failed, Some(&error.to_string()), None, None)?;
                    }
                }
            }
            JobMsg::Report { report, reply } => {
                let answer = self.on_report(&myself, state, report)?;
                let _ = reply.send(answer);
            }
            JobMsg::Cancel { by, reply } => {
                let job = self.load(&state.id)?;
                let answer = match self.finish(
                    &myself,
                    state,
                    JobEvent::Canceled,
                    Some("canceled by the operator"),
                    None,
                    by,
                )? {
                    Some(job) => Ok(job),
                    None => Err(Refusal {
                        code: ErrorCode::JobFinalized,
                        message: format!("job {} already ended {}; nothing to cancel", job.id, job.status),
                    }),
                };
                let _ = reply.send(answer);
            }
            JobMsg::DeadlinePassed => {
                let job = self.load(&state.id)?;
                let now = self.ctx.clock().now();
                match job.deadline_at {
                    deadline if deadline > now => self.arm_deadline(&myself, state, &job),
                    _ => {
                        let why = "no final report from the guest before the job's deadline (TTL plus grace): the guest went silent";
                        self.finish(&myself, state, JobEvent::TimedOut, Some(why), None, None)?;
                    }
                }
            }
            JobMsg::SandboxEnded { vmid, notice } => {
                let job = self.load(&state.id)?;
                // Only the job's own sandbox counts (a stale notice from one it no longer has does not).
                if job.sandbox_vmid == Some(vmid) {
                    self.finish(&myself, state, notice.job_event(), Some(&notice.reason(vmid)), None, None)?;
                }
            }
            JobMsg::Released(result) => {
                state.releasing = false;
                match result {
                    Ok(()) => {
                        self.ctx.store.mark_job_released(&state.id)?;
                        myself.stop(Some("job ended".into()));
                    }
                    Err(error) => {
                        tracing::warn!(job = %state.id, %error, "sandbox release failed; retrying");
                        let event = NewEvent::job(
                            &state.id,
                            EventKind::JobReleaseFailed,
                            Stage::Recovery,
                            format!("could not release the job's sandbox: {error}; retrying"),
                        )
                        .payload(serde_json::json!({"code": error.code().as_str()}));
                        self.ctx.store.append_event(&event)?;
                        myself.send_after(self.ctx.settings.release_retry, || JobMsg::Reconcile);
                    }
                }
            }
        }
        Ok(())
    }
}
