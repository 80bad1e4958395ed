//! `agent-runner`: baked into the VM template, it turns a bootstrap descriptor into a run
//! of the agent: fetch the job payload, clone the repository, run the agent under a
//! deadline with its output redacted and streamed to the daemon, upload the artifacts and
//! send the final report. `check` only validates the descriptor, so template builders can
//! verify a template.
//!
//! A plain blocking program: no async runtime, no TLS (plain HTTP on the agent bridge).

mod agent;
mod artifacts;
mod bootstrap;
mod clock;
mod config;
mod daemon;
mod files;
mod git;
mod http;
mod job;
mod journal;
mod logship;
mod run;
mod secrets;
mod supervise;
mod upload;

use std::process::ExitCode;

const USAGE: &str = "usage: agent-runner [command]

commands:
  run         (the default) fetch the job, run the agent, upload the artifacts, report
  check       validate the bootstrap descriptor ($AGENTLAB_BOOTSTRAP, default /etc/agentlab/bootstrap.json)
  --version   print the version
  --help      print this help

environment: AGENTLAB_BOOTSTRAP, AGENTLAB_SECRETS_DIR, AGENTLAB_RUN_DIR, AGENTLAB_REPO_DIR,
  AGENTLAB_AGENT_COMMAND, AGENTLAB_RUNNER_TIMEOUT_SECONDS, AGENTLAB_RUNNER_KILL_GRACE_SECONDS,
  AGENTLAB_RUNNER_LOG_INTERVAL_MS, AGENTLAB_BOOTSTRAP_RETRY_MAX, AGENTLAB_RETRY_MAX,
  AGENTLAB_RETRY_BASE_MS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["run"] => run::run(),
        ["--version" | "-V"] => {
            println!("agent-runner {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["check"] => check(),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn check() -> ExitCode {
    let path = std::env::var_os("AGENTLAB_BOOTSTRAP").unwrap_or_else(|| config::DEFAULT_DESCRIPTOR.into());
    match bootstrap::read_descriptor(std::path::Path::new(&path)) {
        Ok(d) => {
            // Never print the token.
            println!("descriptor {}: ok (vmid {}, controller {})", path.to_string_lossy(), d.vmid, d.controller);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agent-runner: {e}");
            ExitCode::FAILURE
        }
    }
}
