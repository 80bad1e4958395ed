//! `agent-runner run`: from the descriptor to the payload, then hands over to [`Job`].
//!
//! Exit codes: 0 once the final report was delivered (whatever the job's status) or when
//! the sandbox has no job; 1 when the runner itself failed or the final report could not
//! be delivered.

use crate::bootstrap::{self, Obtained};
use crate::clock::Stopwatch;
use crate::config::Config;
use crate::http::Url;
use crate::job::Job;
use crate::journal::Journal;
use crate::secrets::{SecretsDir, WipeOnDrop};
use agentlab_model::model::redact::Redactor;
use nix::sys::stat::{Mode, umask};
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let started = Stopwatch::start();
    // Everything the runner writes is private: payload cache, keys, log, report.
    umask(Mode::from_bits_truncate(0o077));
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("agent-runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    let descriptor = match bootstrap::read_descriptor(&config.descriptor) {
        Ok(descriptor) => descriptor,
        Err(e) => {
            eprintln!("agent-runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut journal = Journal::new(Redactor::new([&descriptor.token]));
    let controller = match Url::parse(&descriptor.controller) {
        Ok(url) => url,
        Err(e) => {
            journal.say(&format!("bad controller in {}: {e}", config.descriptor.display()));
            return ExitCode::FAILURE;
        }
    };
    let secrets = match SecretsDir::open(&config.secrets_dir) {
        Ok(secrets) => secrets,
        Err(e) => {
            journal.say(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    // From here on the payload may be on disk: wipe the secrets on every way out.
    let _wipe = WipeOnDrop(&secrets);
    let payload = match bootstrap::obtain(&descriptor, &controller, &secrets, config.fetch_retry, &mut journal) {
        Ok(Obtained::Payload(payload)) => payload,
        Ok(Obtained::NoJob) => {
            journal.say("no job assigned to this sandbox");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            journal.say(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    journal.set_redactor(Redactor::new(bootstrap::secret_values(&descriptor, &payload)));
    Job::new(&config, &descriptor, &controller, &payload, &secrets, journal, started).execute()
}
