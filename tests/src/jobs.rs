//! A bench for job tests: a simulator whose VMs run the real `agent-runner`, a daemon with
//! its guest listener on loopback, an age key and bundle, and a local git repository.

use crate::{CliOutput, SimProcess, Workspace, bin, eventually};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The secret the bundle carries; no output may contain it.
pub const SECRET: &str = "s3cr3t-VALUE-4f9a1c77";

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds a git repository whose `.agentlab/run.sh` does what each branch says:
/// `main` writes `out.txt` and prints the secret, `fail` exits 3, `sleep` sleeps 60 s,
/// `slow` sleeps 4 s then does what `main` does.
pub fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join(".agentlab")).unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.email=e2e@agentlab.invalid", "-c", "user.name=e2e", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&repo))
    };
    git(&["init", "-q"]);
    let script = |body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = repo.join(".agentlab/run.sh");
        std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let work = "echo \"hello from the agent on task: $AGENTLAB_TASK\"\necho \"the secret is $DEMO_SECRET\"\n\
                mkdir -p \"$AGENTLAB_RUN_DIR/artifacts\"\necho \"agent result\" > \"$AGENTLAB_RUN_DIR/artifacts/out.txt\"\n\
                echo \"copied secret: $DEMO_SECRET\" > \"$AGENTLAB_RUN_DIR/artifacts/notes.txt\"";
    script(work);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "main"]);
    for (branch, body) in [
        ("fail", "echo failing on purpose\nexit 3".to_string()),
        ("sleep", "echo sleeping past the ttl\nsleep 60".to_string()),
        ("slow", format!("echo working slowly\nsleep 4\n{work}")),
        // Workspaces: one job leaves state in the workspace, the next reads it.
        ("ws-write", "echo \"state from $AGENTLAB_JOB_ID\" > \"$AGENTLAB_WORK_DIR/state.txt\"\necho wrote".to_string()),
        ("ws-read", "echo \"read: $(cat \"$AGENTLAB_WORK_DIR/state.txt\")\"".to_string()),
        // Which value the job got, without printing it (a printed secret is redacted).
        ("secret-hash", "echo \"secret sha256: $(printf %s \"$DEMO_SECRET\" | sha256sum | cut -c1-16)\"".to_string()),
        // The seed FAQ's way to read a secret: jq on the bundle file.
        (
            "bundle",
            "echo \"from the bundle: $(jq -r .env.DEMO_SECRET \"$AGENTLAB_SECRETS_BUNDLE\")\"\n\
             echo \"bundle file: $AGENTLAB_SECRETS_BUNDLE\"\nstat -c 'bundle mode %a' \"$AGENTLAB_SECRETS_BUNDLE\""
                .to_string(),
        ),
    ] {
        git(&["checkout", "-q", "-b", branch, "main"]);
        script(&body);
        git(&["commit", "-q", "-am", branch]);
    }
    git(&["checkout", "-q", "main"]);
    repo
}

/// Writes the age key with `age-keygen` and the bundle encrypted by the `age` CLI.
pub fn write_secrets_with_age_cli(ws: &Workspace) {
    let keys = ws.path().join("keys");
    let secrets = ws.path().join("secrets");
    for dir in [&keys, &secrets] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let key = keys.join("age.key");
    run(Command::new("age-keygen").arg("-o").arg(&key));
    let recipient = run(Command::new("age-keygen").arg("-y").arg(&key)).trim().to_string();
    let plain = ws.path().join("bundle.yaml");
    std::fs::write(&plain, format!("version: 1\nenv:\n  DEMO_SECRET: \"{SECRET}\"\n")).unwrap();
    run(Command::new("age").args(["-r", &recipient, "-o"]).arg(secrets.join("default.age")).arg(&plain));
    std::fs::remove_file(&plain).unwrap();
}

/// Everything a job test needs, torn down on drop.
pub struct JobBench {
    pub ws: Workspace,
    pub sim: SimProcess,
    pub repo: PathBuf,
    pub bootstrap_port: u16,
    pub artifact_port: u16,
}

/// What runs inside the simulated VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guest {
    Runner,
    PlayedByTest,
}

impl JobBench {
    /// A bench whose started VMs run the real `agent-runner`.
    pub fn with_runner() -> JobBench {
        JobBench::new(Guest::Runner, "", &[])
    }

    /// A bench whose started VMs run the real `agent-runner` with `guest_env` added to its
    /// environment (`NAME=value`, e.g. fewer retries).
    pub fn with_runner_env(guest_env: &[&str]) -> JobBench {
        JobBench::new(Guest::Runner, "", guest_env)
    }

    /// A bench whose started VMs run the real `agent-runner`, under `extra_config`.
    pub fn with_runner_config(extra_config: &str) -> JobBench {
        JobBench::new(Guest::Runner, extra_config, &[])
    }

    /// A bench whose VMs run nothing: the test plays the guest (with curl), under
    /// `extra_config` daemon settings.
    pub fn test_plays_the_guest(extra_config: &str) -> JobBench {
        JobBench::new(Guest::PlayedByTest, extra_config, &[])
    }

    fn new(guest: Guest, extra_config: &str, guest_env: &[&str]) -> JobBench {
        let runner = guest == Guest::Runner;
        let mut ws = Workspace::new();
        // The guests are local processes: their address (and the listener's) is loopback.
        ws.agent_subnet = "127.0.0.0/8";
        let local = ws.path().join("pve-local").display().to_string();
        let runner_bin = bin("agent-runner").display().to_string();
        let mut args = vec!["--local-storage-path".to_string(), local];
        if runner {
            args.extend(["--guest-command".into(), runner_bin]);
            let defaults = [
                "AGENTLAB_RETRY_BASE_MS=200",
                "AGENTLAB_RUNNER_KILL_GRACE_SECONDS=2",
                "AGENTLAB_RUNNER_LOG_INTERVAL_MS=200",
            ];
            for env in defaults.iter().chain(guest_env) {
                args.extend(["--guest-env".into(), env.to_string()]);
            }
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let sim = SimProcess::start(ws.path(), &arg_refs);
        write_secrets_with_age_cli(&ws);
        let repo = make_repo(ws.path());
        let (bootstrap_port, artifact_port) = (ws.bootstrap_port, ws.artifact_port);
        let config = format!(
            "secrets_dir: {root}/secrets\nsecrets_age_key_path: {root}/keys/age.key\nbootstrap_rate_limit_qps: 0\n\
             artifact_rate_limit_qps: 0\n{extra_config}",
            root = ws.path().display()
        );
        ws.write_sandbox_config(&sim, &config);
        JobBench { ws, sim, repo, bootstrap_port, artifact_port }
    }

    /// `agentlab job run` of the bench's repository on `branch` (task "say hello", the
    /// custom agent), with `extra` arguments such as `--follow`.
    pub fn run_job(&self, branch: &str, ttl: u32, extra: &[&str]) -> CliOutput {
        let (ttl, repo) = (ttl.to_string(), self.repo.display().to_string());
        let mut args = vec!["job", "run", "--repo", &repo, "--ref", branch, "--task", "say hello"];
        args.extend(["--profile", "yolo-ephemeral", "--agent", "custom", "--ttl", &ttl]);
        args.extend_from_slice(extra);
        self.ws.cli(&args)
    }

    /// `job run` (not followed) on `branch`; the job id.
    pub fn start_job(&self, branch: &str, ttl: u32, extra: &[&str]) -> String {
        let out = self.run_job(branch, ttl, extra);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout.trim().to_string()
    }

    pub fn job(&self, id: &str) -> serde_json::Value {
        let out = self.ws.cli(&["--json", "job", "show", id, "--events-tail", "1000"]);
        assert_eq!(out.code, 0, "{out:?}");
        out.json()
    }

    /// Waits until the job reaches a final status; returns it.
    pub fn wait_final(&self, id: &str, limit: Duration) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let done = eventually(limit, || {
            last = self.job(id);
            !matches!(last["status"].as_str(), Some("QUEUED" | "RUNNING"))
        });
        assert!(done, "job {id} did not end: {last}\nguest logs:\n{}", self.guest_logs());
        last
    }

    /// The bootstrap token cloud-init would have written into VM `vmid` (from its snippet).
    pub fn bootstrap_token(&self, vmid: u64) -> String {
        let snippets = self.ws.sim_snippets_dir();
        let prefix = format!("agentlab-{vmid}-");
        let snippet = std::fs::read_dir(&snippets)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
            .unwrap_or_else(|| panic!("no snippet for {vmid} in {}", snippets.display()));
        let text = std::fs::read_to_string(&snippet).unwrap_or_default();
        text.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).unwrap_or_default().to_string()
    }

    /// Every guest's output (runner stderr and agent output), for failure messages.
    pub fn guest_logs(&self) -> String {
        let root = self.ws.path().join("pve-sim/guests");
        let mut out = String::new();
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(entry.path().join("guest.log")).unwrap_or_default();
            out.push_str(&format!("--- guest {}\n{log}\n", entry.file_name().to_string_lossy()));
        }
        out
    }
}
