//! Which command runs the agent, inside which sandbox, with which environment.
//!
//! In order: the operator's `AGENTLAB_AGENT_COMMAND` (from the template, run by
//! `/bin/sh -c`), the repository's executable `.agentlab/run.sh`, or the job's agent
//! binary from `PATH` with the task on stdin. The payload never supplies a command line.

use agentlab_model::protocol::guest::{BootstrapPayload, JobSpec, Policy};
use agentlab_model::protocol::{Agent, JobMode};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error(
        "no agent command: job agent is `custom` but AGENTLAB_AGENT_COMMAND is not set and the repository has no executable .agentlab/run.sh"
    )]
    NoCommand,
    #[error("agent `{0}` is not installed (not found in PATH)")]
    NotInstalled(String),
    #[error("policy requires bubblewrap but bwrap is not installed")]
    NoBwrap,
    #[error("unknown inner sandbox `{0}` (expected none or bubblewrap)")]
    UnknownSandbox(String),
}

/// Where things are, for the sandbox binds and the agent's environment.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub repo: PathBuf,
    /// The workspace, when the sandbox has one (the repository is inside it).
    pub work: Option<PathBuf>,
    pub run: PathBuf,
    pub secrets: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub argv: Vec<OsString>,
    /// Give the agent the task file on stdin (the agent binaries read their prompt there).
    pub task_on_stdin: bool,
    /// For the log.
    pub description: String,
}

/// The agent's command line, without the sandbox prefix.
pub fn choose(
    operator_command: Option<&str>,
    job: &JobSpec,
    repo: &Path,
    path_var: Option<&OsStr>,
) -> Result<Launch, AgentError> {
    if let Some(command) = operator_command {
        return Ok(Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
            task_on_stdin: false,
            description: "AGENTLAB_AGENT_COMMAND".into(),
        });
    }
    let script = repo.join(".agentlab").join("run.sh");
    if is_executable(&script) {
        return Ok(Launch { argv: vec![script.into()], task_on_stdin: false, description: ".agentlab/run.sh".into() });
    }
    let dangerous = job.mode == JobMode::Dangerous;
    let (binary, args): (&str, Vec<&str>) = match job.agent {
        // Each reads its prompt from stdin in non-interactive mode.
        Agent::Claude => ("claude", if dangerous { vec!["-p", "--dangerously-skip-permissions"] } else { vec!["-p"] }),
        Agent::Codex => (
            "codex",
            if dangerous { vec!["exec", "--dangerously-bypass-approvals-and-sandbox", "-"] } else { vec!["exec", "-"] },
        ),
        Agent::Opencode => ("opencode", vec!["run"]),
        Agent::Custom => return Err(AgentError::NoCommand),
    };
    let program = find_in_path(binary, path_var).ok_or_else(|| AgentError::NotInstalled(binary.to_string()))?;
    let mut argv = vec![program.into_os_string()];
    argv.extend(args.into_iter().map(OsString::from));
    Ok(Launch { argv, task_on_stdin: true, description: format!("{binary} (task on stdin)") })
}

/// The command prefix that puts the agent in the policy's inner sandbox (empty for none).
pub fn sandbox_prefix(policy: &Policy, dirs: &Dirs, path_var: Option<&OsStr>) -> Result<Vec<OsString>, AgentError> {
    match policy.inner_sandbox.as_str() {
        "" | "none" => Ok(Vec::new()),
        "bubblewrap" => {
            let bwrap = find_in_path("bwrap", path_var).ok_or(AgentError::NoBwrap)?;
            let mut argv: Vec<OsString> = vec![bwrap.into_os_string()];
            let fixed = ["--die-with-parent", "--unshare-all", "--share-net", "--ro-bind", "/", "/", "--proc", "/proc"];
            argv.extend(fixed.into_iter().map(OsString::from));
            argv.extend(
                ["--dev", "/dev", "--bind", "/tmp", "/tmp", "--bind", "/var/tmp", "/var/tmp"].map(OsString::from),
            );
            let writable = std::iter::once(&dirs.run).chain(dirs.work.as_ref()).chain([&dirs.repo]);
            let binds = writable.map(|d| ("--bind", d)).chain([("--ro-bind", &dirs.secrets)]);
            for (how, dir) in binds {
                argv.extend([OsString::from(how), dir.clone().into_os_string(), dir.clone().into_os_string()]);
            }
            argv.extend(policy.inner_sandbox_args.iter().map(OsString::from));
            argv.push("--".into());
            Ok(argv)
        }
        other => Err(AgentError::UnknownSandbox(other.to_string())),
    }
}

/// The files the runner wrote for the agent, named in its environment.
pub struct AgentFiles<'a> {
    pub task: &'a Path,
    /// The bundle's sections as JSON (`AGENTLAB_SECRETS_BUNDLE`).
    pub bundle: &'a Path,
    /// Claude Code's settings (`CLAUDE_SETTINGS_PATH`), when the bundle has some.
    pub claude_settings: Option<&'a Path>,
}

/// Variables set for the agent on top of the runner's own environment.
pub fn environment(
    payload: &BootstrapPayload,
    dirs: &Dirs,
    files: &AgentFiles<'_>,
    git_env: &[(String, String)],
) -> Vec<(String, OsString)> {
    let job = &payload.job;
    let mut env: Vec<(String, OsString)> = git_env.iter().map(|(k, v)| (k.clone(), v.into())).collect();
    env.extend(payload.env.iter().map(|(k, v)| (k.clone(), v.into())));
    let path = |p: &Path| p.as_os_str().to_os_string();
    env.extend([
        ("AGENTLAB_TASK".to_string(), OsString::from(&job.task)),
        ("AGENTLAB_TASK_FILE".to_string(), path(files.task)),
        ("AGENTLAB_SECRETS_BUNDLE".to_string(), path(files.bundle)),
        ("AGENTLAB_JOB_ID".to_string(), OsString::from(&job.id)),
        ("AGENTLAB_JOB_MODE".to_string(), OsString::from(job.mode.as_str())),
        ("AGENTLAB_JOB_PROFILE".to_string(), OsString::from(&job.profile)),
        ("AGENTLAB_REPO_DIR".to_string(), path(&dirs.repo)),
        ("AGENTLAB_RUN_DIR".to_string(), path(&dirs.run)),
    ]);
    if let Some(work) = &dirs.work {
        env.push(("AGENTLAB_WORK_DIR".to_string(), path(work)));
    }
    if let Some(settings) = files.claude_settings {
        env.push(("CLAUDE_SETTINGS_PATH".to_string(), path(settings)));
    }
    env
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable `name` in `path_var`'s directories.
pub fn find_in_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::test_dir;

    fn job(agent: &str) -> JobSpec {
        let agent = agent.parse().unwrap();
        JobSpec {
            id: "job_1".into(),
            repo_url: "/r".into(),
            git_ref: None,
            task: "fix it".into(),
            mode: JobMode::Dangerous,
            profile: "p".into(),
            agent,
            keepalive: false,
            ttl_minutes: 5,
            timeout_seconds: 60,
        }
    }

    fn executable(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_operator_command_wins_then_run_sh_then_the_agent_binary() {
        let dir = test_dir("agent-choose");
        let repo = dir.join("repo");
        let bin = dir.join("bin");
        executable(&bin.join("claude"));
        let path = bin.clone().into_os_string();
        let launch = choose(Some("make agent"), &job("claude"), &repo, Some(&path)).unwrap();
        assert_eq!(launch.argv, ["/bin/sh", "-c", "make agent"].map(OsString::from));

        let launch = choose(None, &job("claude"), &repo, Some(&path)).unwrap();
        assert_eq!(launch.argv[0], bin.join("claude").into_os_string());
        assert_eq!(&launch.argv[1..], ["-p", "--dangerously-skip-permissions"].map(OsString::from));
        assert!(launch.task_on_stdin);
        assert_eq!(choose(None, &job("codex"), &repo, Some(&path)), Err(AgentError::NotInstalled("codex".into())));
        assert_eq!(choose(None, &job("custom"), &repo, Some(&path)), Err(AgentError::NoCommand));
        let unknown = "gpt".parse::<Agent>().map_err(|e| e.to_string());
        assert_eq!(unknown, Err("agent `gpt` is not one of claude, codex, opencode, custom".into()));

        // A run.sh that is not executable does not count.
        let script = repo.join(".agentlab").join("run.sh");
        std::fs::create_dir_all(repo.join(".agentlab")).unwrap();
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(choose(None, &job("custom"), &repo, None), Err(AgentError::NoCommand));
        executable(&script);
        let launch = choose(None, &job("custom"), &repo, None).unwrap();
        assert_eq!((launch.argv, launch.task_on_stdin), (vec![script.into_os_string()], false));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bubblewrap_binds_the_work_dirs_and_is_required_when_asked_for() {
        let dir = test_dir("agent-bwrap");
        let dirs = Dirs {
            repo: "/work/repo".into(),
            work: None,
            run: "/run/agentlab".into(),
            secrets: "/run/agentlab/secrets".into(),
        };
        let mut policy = Policy { mode: JobMode::Dangerous, inner_sandbox: "none".into(), inner_sandbox_args: vec![] };
        assert_eq!(sandbox_prefix(&policy, &dirs, None), Ok(vec![]));
        policy.inner_sandbox = "bubblewrap".into();
        policy.inner_sandbox_args = vec!["--unshare-user".into()];
        assert_eq!(sandbox_prefix(&policy, &dirs, Some(dir.as_os_str())), Err(AgentError::NoBwrap));
        assert_eq!(AgentError::NoBwrap.to_string(), "policy requires bubblewrap but bwrap is not installed");
        executable(&dir.join("bwrap"));
        let argv = sandbox_prefix(&policy, &dirs, Some(dir.as_os_str())).unwrap();
        let text: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = text[1..].join(" ");
        assert!(
            joined.starts_with("--die-with-parent --unshare-all --share-net --ro-bind / / --proc /proc --dev /dev")
        );
        assert!(joined.contains("--bind /run/agentlab /run/agentlab --bind /work/repo /work/repo"), "{joined}");
        assert!(
            joined.ends_with("--ro-bind /run/agentlab/secrets /run/agentlab/secrets --unshare-user --"),
            "{joined}"
        );
        policy.inner_sandbox = "firejail".into();
        assert_eq!(sandbox_prefix(&policy, &dirs, None), Err(AgentError::UnknownSandbox("firejail".into())));
        let _ = std::fs::remove_dir_all(dir);
    }
}
