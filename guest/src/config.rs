//! The runner's settings, from `AGENTLAB_*` environment variables (set by the template's
//! systemd unit or by tests), with the defaults the VM template expects.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_DESCRIPTOR: &str = "/etc/agentlab/bootstrap.json";
const DEFAULT_SECRETS_DIR: &str = "/run/agentlab/secrets";
const DEFAULT_RUN_DIR: &str = "/run/agentlab";
/// Back-off delays double from the base up to this.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} must be a whole number, got `{value}`")]
pub struct ConfigError {
    name: &'static str,
    value: String,
}

/// How often and how patiently a call to the daemon is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    pub base_delay: Duration,
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed attempt: base, 2×base, 4×base … capped.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(MAX_RETRY_DELAY)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub descriptor: PathBuf,
    pub secrets_dir: PathBuf,
    pub run_dir: PathBuf,
    pub repo_dir: PathBuf,
    /// The workspace (`AGENTLAB_WORK_DIR`, else `/work` when it is a writable directory):
    /// what persists between sandboxes. The agent gets it as `AGENTLAB_WORK_DIR`.
    pub work_dir: Option<PathBuf>,
    /// For the one-time bootstrap fetch (`AGENTLAB_BOOTSTRAP_RETRY_MAX`, default 10).
    pub fetch_retry: RetryPolicy,
    /// For reports and the upload (`AGENTLAB_RETRY_MAX`, default 6).
    pub retry: RetryPolicy,
    /// The operator's agent command from the template (`AGENTLAB_AGENT_COMMAND`).
    pub agent_command: Option<String>,
    /// Overrides the job's timeout (`AGENTLAB_RUNNER_TIMEOUT_SECONDS`).
    pub timeout_override: Option<Duration>,
    pub kill_grace: Duration,
    pub log_interval: Duration,
}

impl Config {
    /// Reads the settings through `var` (`std::env::var` in the binary, a map in tests).
    /// `work_writable` decides the default repository directory.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        work_writable: impl Fn() -> bool,
    ) -> Result<Config, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(value) => value.trim().parse().map_err(|_| ConfigError { name, value }),
            }
        };
        let path = |name: &str, default: &str| PathBuf::from(var(name).unwrap_or_else(|| default.to_string()));
        let base_delay = Duration::from_millis(number("AGENTLAB_RETRY_BASE_MS", 2000)?);
        let attempts = |name: &'static str, default: u64| -> Result<u32, ConfigError> {
            Ok(u32::try_from(number(name, default)?).unwrap_or(u32::MAX).max(1))
        };
        let work_dir = match var("AGENTLAB_WORK_DIR") {
            Some(dir) => Some(PathBuf::from(dir)),
            None if work_writable() => Some(PathBuf::from("/work")),
            None => None,
        };
        let repo_dir = match (var("AGENTLAB_REPO_DIR"), &work_dir) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(work)) => work.join("repo"),
            (None, None) => PathBuf::from("/tmp/repo"),
        };
        Ok(Config {
            descriptor: path("AGENTLAB_BOOTSTRAP", DEFAULT_DESCRIPTOR),
            secrets_dir: path("AGENTLAB_SECRETS_DIR", DEFAULT_SECRETS_DIR),
            run_dir: path("AGENTLAB_RUN_DIR", DEFAULT_RUN_DIR),
            repo_dir,
            work_dir,
            fetch_retry: RetryPolicy { attempts: attempts("AGENTLAB_BOOTSTRAP_RETRY_MAX", 10)?, base_delay },
            retry: RetryPolicy { attempts: attempts("AGENTLAB_RETRY_MAX", 6)?, base_delay },
            agent_command: var("AGENTLAB_AGENT_COMMAND"),
            timeout_override: match var("AGENTLAB_RUNNER_TIMEOUT_SECONDS") {
                None => None,
                Some(_) => Some(Duration::from_secs(number("AGENTLAB_RUNNER_TIMEOUT_SECONDS", 0)?)),
            },
            kill_grace: Duration::from_secs(number("AGENTLAB_RUNNER_KILL_GRACE_SECONDS", 30)?),
            log_interval: Duration::from_millis(number("AGENTLAB_RUNNER_LOG_INTERVAL_MS", 1000)?),
        })
    }

    /// From the process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(|name| std::env::var(name).ok(), || is_writable_dir(Path::new("/work")))
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.run_dir.join("artifacts")
    }

    pub fn log_path(&self) -> PathBuf {
        self.run_dir.join("agent-runner.log")
    }
}

fn is_writable_dir(path: &Path) -> bool {
    path.is_dir() && nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)], work_writable: bool) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_env(|name| map.get(name).cloned(), || work_writable)
    }

    #[test]
    fn defaults_match_the_template() {
        let c = config(&[], true).unwrap();
        assert_eq!(c.descriptor, PathBuf::from("/etc/agentlab/bootstrap.json"));
        assert_eq!(c.secrets_dir, PathBuf::from("/run/agentlab/secrets"));
        assert_eq!(c.run_dir, PathBuf::from("/run/agentlab"));
        assert_eq!(c.repo_dir, PathBuf::from("/work/repo"));
        assert_eq!(c.fetch_retry, RetryPolicy { attempts: 10, base_delay: Duration::from_secs(2) });
        assert_eq!(c.retry.attempts, 6);
        assert_eq!((c.timeout_override, c.kill_grace), (None, Duration::from_secs(30)));
        assert_eq!(c.log_interval, Duration::from_secs(1));
        assert_eq!(c.agent_command, None);
        assert_eq!(config(&[], false).map(|c| c.repo_dir).ok(), Some(PathBuf::from("/tmp/repo")));
        assert_eq!(c.work_dir, Some(PathBuf::from("/work")));
        assert_eq!(config(&[], false).map(|c| c.work_dir).ok(), Some(None));
    }

    #[test]
    fn a_workspace_directory_holds_the_repository() {
        let c = config(&[("AGENTLAB_WORK_DIR", "/srv/ws")], false).unwrap();
        assert_eq!((c.work_dir, c.repo_dir), (Some(PathBuf::from("/srv/ws")), PathBuf::from("/srv/ws/repo")));
    }

    #[test]
    fn variables_override_and_bad_numbers_are_named() {
        let c = config(
            &[
                ("AGENTLAB_RETRY_MAX", "0"),
                ("AGENTLAB_RETRY_BASE_MS", "50"),
                ("AGENTLAB_RUNNER_TIMEOUT_SECONDS", "1"),
                ("AGENTLAB_AGENT_COMMAND", "make agent"),
                ("AGENTLAB_REPO_DIR", "/src"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(c.retry, RetryPolicy { attempts: 1, base_delay: Duration::from_millis(50) });
        assert_eq!(c.timeout_override, Some(Duration::from_secs(1)));
        assert_eq!(c.agent_command.as_deref(), Some("make agent"));
        assert_eq!(c.repo_dir, PathBuf::from("/src"));
        let err = config(&[("AGENTLAB_RUNNER_KILL_GRACE_SECONDS", "soon")], true).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("AGENTLAB_RUNNER_KILL_GRACE_SECONDS must be a whole number, got `soon`"));
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let policy = RetryPolicy { attempts: 10, base_delay: Duration::from_secs(2) };
        let delays: Vec<u64> = (1..=7).map(|n| policy.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(policy.delay_after(200), MAX_RETRY_DELAY);
        // The default report policy waits at least a minute in all before giving up.
        let report = RetryPolicy { attempts: 6, base_delay: Duration::from_secs(2) };
        let total: Duration = (1..report.attempts).map(|n| report.delay_after(n)).sum();
        assert!(total >= Duration::from_secs(60), "{total:?}");
    }
}
