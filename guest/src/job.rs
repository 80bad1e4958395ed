//! One job, once the payload is known: repository, agent, artifacts, final report.
//!
//! Failures before the agent runs (clone, no agent command, missing bwrap) still end with
//! an upload of what there is and a FAILED final report; the runner then exits 1.

use crate::agent::{self, Dirs};
use crate::artifacts::{self, RunSummary};
use crate::clock::Stopwatch;
use crate::config::{Config, RetryPolicy};
use crate::daemon::{CallError, Reporter};
use crate::git::{self, Git};
use crate::http::Url;
use crate::journal::Journal;
use crate::logship::LogShipper;
use crate::secrets::{BUNDLE_FILE, SecretsDir, bundle_json};
use crate::supervise::{self, Limits, Watcher};
use crate::upload;
use agentlab_model::protocol::guest::{
    BootstrapDescriptor, BootstrapPayload, DEFAULT_ARTIFACT_NAME, JobPhase, ReportStatus,
};
use std::fs::File;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// How the job ended, before the artifacts and the final report.
struct Outcome {
    status: ReportStatus,
    exit_code: Option<i32>,
    message: String,
    /// The runner failed (not the agent): exit 1 even if the report is delivered.
    runner_error: bool,
}

impl Outcome {
    fn runner_failure(message: String) -> Outcome {
        Outcome { status: ReportStatus::Failed, exit_code: None, message, runner_error: true }
    }

    /// The daemon already finished the job (cancelled it): do not start the agent.
    fn closed_by_daemon() -> Outcome {
        let message = "the daemon closed the job before the agent started".to_string();
        Outcome { status: ReportStatus::Failed, exit_code: None, message, runner_error: false }
    }
}

pub struct Job<'a> {
    config: &'a Config,
    payload: &'a BootstrapPayload,
    secrets: &'a SecretsDir,
    journal: Journal,
    reporter: Reporter,
    shipper: LogShipper,
    started: Stopwatch,
}

impl<'a> Job<'a> {
    pub fn new(
        config: &'a Config,
        descriptor: &BootstrapDescriptor,
        controller: &Url,
        payload: &'a BootstrapPayload,
        secrets: &'a SecretsDir,
        journal: Journal,
        started: Stopwatch,
    ) -> Job<'a> {
        let reporter = Reporter::new(
            controller,
            payload.runner_token.clone(),
            payload.job.id.clone(),
            descriptor.vmid,
            journal.redactor().clone(),
        );
        let shipper = LogShipper::new(config.log_interval);
        Job { config, payload, secrets, journal, reporter, shipper, started }
    }

    pub fn execute(mut self) -> ExitCode {
        let outcome = self.work();
        self.finish(outcome)
    }

    fn dirs(&self) -> Dirs {
        Dirs {
            repo: self.config.repo_dir.clone(),
            work: self.config.work_dir.clone(),
            run: self.config.run_dir.clone(),
            secrets: self.secrets.path().to_path_buf(),
        }
    }

    fn work(&mut self) -> Outcome {
        let config = self.config;
        let job = &self.payload.job;
        if let Err(e) = std::fs::create_dir_all(config.artifacts_dir()) {
            return Outcome::runner_failure(format!("cannot create {}: {e}", config.artifacts_dir().display()));
        }
        if let Err(e) = self.journal.open_log(&config.log_path()) {
            self.journal.say(&format!("cannot open {}: {e}; logging to stderr only", config.log_path().display()));
        }
        self.journal.say(&format!(
            "job {}: agent {}, mode {}, profile {}, repository {}",
            job.id, job.agent, job.mode, job.profile, job.repo_url
        ));

        let git = match git::credentials_env(&self.payload.git, self.secrets) {
            Ok(env) => Git::new(env),
            Err(e) => return Outcome::runner_failure(e.to_string()),
        };
        match git::prepare(&git, &job.repo_url, job.git_ref.as_deref(), &config.repo_dir) {
            Ok(done) => self.journal.say(&done),
            Err(e) => return Outcome::runner_failure(format!("cannot prepare the repository: {e}")),
        }
        if !self.phase(JobPhase::RepoReady, None) {
            return Outcome::closed_by_daemon();
        }

        let dirs = self.dirs();
        let path_var = std::env::var_os("PATH");
        let launch = match agent::choose(config.agent_command.as_deref(), job, &dirs.repo, path_var.as_deref()) {
            Ok(launch) => launch,
            Err(e) => return Outcome::runner_failure(e.to_string()),
        };
        let prefix = match agent::sandbox_prefix(&self.payload.policy, &dirs, path_var.as_deref()) {
            Ok(prefix) => prefix,
            Err(e) => return Outcome::runner_failure(e.to_string()),
        };
        let argv = prefix.into_iter().chain(launch.argv.clone()).collect();
        let command = match self.agent_command(&dirs, argv, launch.task_on_stdin, &git) {
            Ok(command) => command,
            Err(e) => return Outcome::runner_failure(format!("cannot prepare the agent's files: {e}")),
        };
        let timeout = config.timeout_override.unwrap_or(Duration::from_secs(job.timeout_seconds));
        let limits = Limits {
            timeout: Some(timeout).filter(|t| !t.is_zero()),
            kill_grace: config.kill_grace,
            tick: config.log_interval,
        };
        if !self.phase(JobPhase::AgentStarted, None) {
            return Outcome::closed_by_daemon();
        }
        self.journal.say(&format!("starting the agent: {} (timeout {} s)", launch.description, timeout.as_secs()));
        let mut watch = AgentWatch { journal: &mut self.journal, shipper: &mut self.shipper, reporter: &self.reporter };
        let finished = supervise::run(command, &limits, &mut watch);
        self.journal.finish_agent_output();
        let finished = match finished {
            Ok(finished) => finished,
            Err(e) => return Outcome::runner_failure(format!("cannot start the agent: {e}")),
        };
        let code = finished.exit_code;
        let message = match (finished.timed_out, code) {
            (true, _) => format!("agent timed out after {} s", timeout.as_secs()),
            (false, 0) => "agent finished".to_string(),
            (false, code) => format!("agent exited with code {code}"),
        };
        self.journal.say(&format!("{message} ({:.1} s)", finished.elapsed.as_secs_f64()));
        // The job's end lets the host destroy the sandbox: what the agent left in the
        // workspace is on its disk first.
        if self.config.work_dir.is_some() {
            nix::unistd::sync();
        }
        self.phase(JobPhase::AgentFinished, Some(code));
        Outcome { status: ReportStatus::from_exit_code(code), exit_code: Some(code), message, runner_error: false }
    }

    /// The agent's command: argv, working directory, environment, stdin.
    fn agent_command(
        &mut self,
        dirs: &Dirs,
        argv: Vec<std::ffi::OsString>,
        task_on_stdin: bool,
        git: &Git,
    ) -> std::io::Result<Command> {
        let task_file = dirs.run.join("task.txt");
        crate::files::write_new(&task_file, self.payload.job.task.as_bytes(), 0o600)?;
        let settings = match &self.payload.claude_settings_json {
            Some(json) => Some(self.secrets.write("claude-settings.json", json.as_bytes())?),
            None => None,
        };
        let bundle = self.secrets.write(BUNDLE_FILE, &bundle_json(self.payload))?;
        let files = agent::AgentFiles { task: &task_file, bundle: &bundle, claude_settings: settings.as_deref() };
        let env = agent::environment(self.payload, dirs, &files, git.env());
        let (program, args) = argv.split_first().ok_or_else(|| std::io::Error::other("empty agent command"))?;
        let mut command = Command::new(program);
        command.args(args).current_dir(&dirs.repo).envs(env);
        command.stdin(if task_on_stdin { Stdio::from(File::open(&task_file)?) } else { Stdio::null() });
        Ok(command)
    }

    /// A RUNNING report for `phase` (a few quick retries; not fatal). False when the daemon
    /// says the job is already final.
    fn phase(&mut self, phase: JobPhase, exit_code: Option<i32>) -> bool {
        let mut report = self.reporter.blank(ReportStatus::Running);
        report.phase = Some(phase);
        report.exit_code = exit_code;
        let policy = RetryPolicy { attempts: self.config.retry.attempts.min(3), ..self.config.retry };
        match self.reporter.send_with_retries(&report, policy, &mut self.journal) {
            Ok(()) => true,
            Err(CallError::AlreadyFinal(why)) => {
                self.journal.say(&format!("{} report: {why}", phase.as_str()));
                false
            }
            Err(e) => {
                self.journal.say(&format!("{} report not delivered (going on): {e}", phase.as_str()));
                true
            }
        }
    }

    /// report.json, the tarball, the upload, the final report, the exit code.
    fn finish(mut self, mut outcome: Outcome) -> ExitCode {
        let config = self.config;
        let commit = git::head_commit(&Git::new(Vec::new()), &config.repo_dir);
        let duration = self.started.elapsed().as_secs_f64();
        let summary = RunSummary {
            status: outcome.status,
            exit_code: outcome.exit_code,
            duration_seconds: duration,
            commit: commit.clone(),
            mode: self.payload.job.mode,
        };
        self.journal.say(&format!(
            "job {}: {} ({})",
            self.payload.job.id,
            status_word(outcome.status),
            outcome.message
        ));
        let log = self.journal.log_path().map(std::path::Path::to_path_buf);
        let packed = artifacts::write_summary(&summary, &config.run_dir, &config.artifacts_dir(), log.as_deref())
            .and_then(|()| {
                artifacts::pack(
                    &config.artifacts_dir(),
                    &config.run_dir.join(DEFAULT_ARTIFACT_NAME),
                    self.journal.redactor(),
                )
            });
        let mut uploaded = Vec::new();
        let upload_error = match packed {
            Err(e) => Some(format!("cannot pack the artifacts: {e}")),
            Ok(tarball) => {
                let artifact = &self.payload.artifact;
                match upload::upload(&artifact.endpoint, &artifact.token, &tarball, config.retry, &mut self.journal) {
                    Ok(info) => {
                        self.journal.say(&format!("uploaded {} ({} bytes)", info.name, info.size_bytes));
                        uploaded.push(info);
                        None
                    }
                    Err(e) => Some(format!("artifact upload failed: {e}")),
                }
            }
        };
        if let Some(error) = upload_error {
            self.journal.say(&error);
            outcome.message = format!("{}; {error}", outcome.message);
            outcome.runner_error = true;
        }
        self.shipper.flush(&mut self.journal, &self.reporter, config.retry);
        // The secrets go before the job is reported done, not after: whoever acts on the
        // final state (a keepalive sandbox's SSH user, a test) finds none. The report needs
        // only the runner token, held in memory.
        if let Err(e) = self.secrets.wipe() {
            self.journal.say(&format!("could not wipe the secrets directory: {e}"));
        }

        let mut report = self.reporter.blank(outcome.status);
        report.exit_code = outcome.exit_code;
        report.duration_seconds = Some(duration);
        report.commit = commit;
        report.message = Some(outcome.message);
        report.artifacts = uploaded;
        let delivered = match self.reporter.send_with_retries(&report, config.retry, &mut self.journal) {
            Ok(()) => {
                self.journal.say("final report delivered");
                true
            }
            Err(CallError::AlreadyFinal(why)) => {
                // Someone (a cancel, the daemon's own timeout) already closed the job.
                self.journal.say(&format!("not reporting again: {why}"));
                true
            }
            Err(e) => {
                self.journal.say(&format!("final report not delivered: {e}"));
                false
            }
        };
        if delivered && !outcome.runner_error { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}

fn status_word(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Running => "RUNNING",
        ReportStatus::Completed => "COMPLETED",
        ReportStatus::Failed => "FAILED",
        ReportStatus::Timeout => "TIMEOUT",
    }
}

/// Agent output to the journal, log streaming on each tick.
struct AgentWatch<'j> {
    journal: &'j mut Journal,
    shipper: &'j mut LogShipper,
    reporter: &'j Reporter,
}

impl Watcher for AgentWatch<'_> {
    fn output(&mut self, chunk: &[u8]) {
        self.journal.agent_output(chunk);
    }

    fn tick(&mut self) {
        self.shipper.tick(self.journal, self.reporter);
    }
}
