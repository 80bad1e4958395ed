//! Test support for end-to-end tests: start a real `agentlabd` on a temp config and socket,
//! run the real `agentlab` against it. Binaries come from the same target directory as the
//! test executable (cargo builds every workspace binary before running tests).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a broken fixture should fail the test at once, with its cause"
)]

pub mod bench;
pub mod jobs;
pub mod netns;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Path of a workspace binary next to the running test (or the running benchmark).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>; a binary is in target/<profile>.
    let parent = exe.parent().unwrap_or_else(|| panic!("unexpected test path {}", exe.display()));
    let dir = if parent.ends_with("deps") { parent.parent().unwrap_or(parent) } else { parent };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not built: run the tests with `cargo nextest run --workspace` (or cargo test --workspace)",
        path.display()
    );
    path
}

/// The repository root (for the shipped profiles).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Polls `check` every 20 ms until it is true or about `limit` has passed.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    const STEP: Duration = Duration::from_millis(20);
    let rounds = limit.as_millis() / STEP.as_millis();
    for _ in 0..=rounds {
        if check() {
            return true;
        }
        // The one sanctioned wait: a bounded poll, never a timing assumption.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(STEP);
    }
    false
}

/// Waits `d` (for tests that need a moment to pass, such as a random kill time).
/// Every file under `dir` whose bytes contain `needle` (a secret that must not be there).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

pub fn pause(d: Duration) {
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(d);
}

/// A small deterministic random source for tests (xorshift).
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed.max(1))
    }

    /// Seeded from `AGENTLAB_TEST_SEED` when set (to replay a failure), else from the
    /// process id; the seed is printed either way.
    pub fn from_env(what: &str) -> Dice {
        let seed = std::env::var("AGENTLAB_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(std::process::id() as u64 * 2_654_435_761);
        println!("{what} seed {seed} (replay with AGENTLAB_TEST_SEED={seed})");
        Dice::new(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A temp directory with a config, the shipped profiles and room for data and the socket.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// The guest listener's ports on loopback (the agent bridge does not exist in tests).
    pub bootstrap_port: u16,
    pub artifact_port: u16,
    /// `agent_subnet`: the simulator's guest addresses, or loopback when guests are real
    /// processes that call the daemon.
    pub agent_subnet: &'static str,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let profiles = dir.path().join("profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        std::fs::copy(repo_root().join("profiles/defaults.yaml"), profiles.join("defaults.yaml"))
            .expect("copy shipped profiles");
        let ws = Workspace {
            dir,
            bootstrap_port: jobs::free_port(),
            artifact_port: jobs::free_port(),
            agent_subnet: "10.77.0.0/16",
        };
        ws.write_config("");
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run/agentlabd.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.yaml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path().join("data/agentlab.db")
    }

    /// Writes the base config (Proxmox on a closed local port) plus `extra` lines, mode 0600.
    pub fn write_config(&self, extra: &str) {
        let base = format!(
            "profiles_dir: {root}/profiles\ndata_dir: {root}/data\nrun_dir: {root}/run\n\
             proxmox_api_url: https://127.0.0.1:9\nproxmox_api_token: root@pam!agentlab=00000000-0000-0000-0000-000000000000\n\
             proxmox_tls_insecure: true\nproxmox_command_timeout: 5s\n{listeners}",
            root = self.path().display(),
            listeners = self.listener_config(),
        );
        self.write_raw_config(&format!("{base}{extra}"));
    }

    /// Where the simulator's `local` storage keeps snippets (pass `--local-storage-path`
    /// `<workspace>/pve-local` to the simulator).
    pub fn sim_snippets_dir(&self) -> PathBuf {
        self.path().join("pve-local/snippets")
    }

    /// A config for sandboxes against `sim`: snippets in its `local` storage, leases and
    /// probes scaled down by 100.
    pub fn write_sandbox_config(&self, sim: &SimProcess, extra: &str) {
        let defaults = format!(
            "snippets_dir: {}\nhost_node: pve1\ntest_time_scale: 0.01\nprovisioning_timeout: 60s\nsandbox_probe_interval: 100s\nproxmox_rate_limit_rps: 200\n",
            self.sim_snippets_dir().display()
        );
        // A key given in `extra` replaces the default (duplicate keys are config errors).
        let overridden = |line: &&str| {
            line.split(':').next().is_some_and(|k| extra.lines().any(|e| e.starts_with(&format!("{k}:"))))
        };
        let mut kept: String = defaults.lines().filter(|l| !overridden(l)).map(|l| format!("{l}\n")).collect();
        kept.push_str(extra);
        let extra = kept;
        self.write_sim_config(sim, &sim.fingerprint, &extra);
    }

    /// A config whose Proxmox is `sim`, with `fingerprint` pinned.
    pub fn write_sim_config(&self, sim: &SimProcess, fingerprint: &str, extra: &str) {
        let text = format!(
            "profiles_dir: {root}/profiles\ndata_dir: {root}/data\nrun_dir: {root}/run\n\
             proxmox_api_url: {url}\nproxmox_api_token: {SIM_TOKEN}\nproxmox_tls_fingerprint: {fingerprint}\n\
             proxmox_command_timeout: 10s\n{listeners}{extra}",
            root = self.path().display(),
            url = sim.api_url,
            listeners = self.listener_config(),
        );
        self.write_raw_config(&text);
    }

    /// The guest listener on this workspace's loopback ports, loopback as the agent subnet.
    fn listener_config(&self) -> String {
        format!(
            "agent_subnet: {}\nbootstrap_listen: 127.0.0.1:{}\nartifact_listen: 127.0.0.1:{}\nhost_ruleset: off\n",
            self.agent_subnet, self.bootstrap_port, self.artifact_port
        )
    }

    pub fn write_raw_config(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.config_path();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Runs `agentlabd` to completion (for start-up failures).
    pub fn run_daemon_to_exit(&self) -> Output {
        let mut child = Command::new(bin("agentlabd"))
            .arg("--config")
            .arg(self.config_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentlabd");
        let exited = eventually(Duration::from_secs(20), || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
            panic!("agentlabd did not exit although it was expected to fail");
        }
        child.wait_with_output().unwrap()
    }

    /// Starts `agentlabd` and waits until its socket answers.
    pub fn start_daemon(&self) -> Daemon {
        let daemon = self.spawn_daemon(&[]);
        self.wait_up(daemon)
    }

    /// Starts `agentlabd` with `env` added, without waiting for it.
    pub fn spawn_daemon(&self, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::File::create(self.path().join("agentlabd.log")).unwrap();
        let child = Command::new(bin("agentlabd"))
            .arg("--config")
            .arg(self.config_path())
            .env("AGENTLAB_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agentlabd");
        Daemon { child: Some(child), socket: self.socket(), log: self.path().join("agentlabd.log") }
    }

    fn wait_up(&self, mut daemon: Daemon) -> Daemon {
        let up = eventually(Duration::from_secs(20), || {
            daemon.exited().is_none() && std::os::unix::net::UnixStream::connect(&daemon.socket).is_ok()
        });
        assert!(up, "agentlabd did not come up; log:\n{}", daemon.log());
        daemon
    }

    /// `agentlab` against this workspace's socket, not yet started.
    fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("agentlab"));
        command.arg("--socket").arg(self.socket()).args(args).env_remove("AGENTLAB_SOCKET");
        command
    }

    /// Starts the CLI in the background (stdout and stderr discarded).
    pub fn cli_background(&self, args: &[&str]) -> Child {
        self.cli_command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn agentlab")
    }

    /// Starts the CLI with stdin, stdout and stderr piped (a test writes stdin when it likes).
    pub fn cli_piped(&self, args: &[&str]) -> Child {
        let mut command = self.cli_command(args);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().expect("spawn agentlab")
    }

    /// Runs the CLI with `input` on its stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> CliOutput {
        use std::io::Write;
        let mut child = self.cli_piped(args);
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("write the CLI's stdin");
        }
        CliOutput::from(child.wait_with_output().expect("wait for agentlab"))
    }

    /// Runs the CLI against this workspace's socket.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        CliOutput::from(self.cli_command(args).output().expect("spawn agentlab"))
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CliOutput {
    fn from(output: Output) -> CliOutput {
        CliOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl CliOutput {
    /// stdout as JSON, or a panic showing everything.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// The token the test simulators accept.
pub const SIM_TOKEN: &str = "root@pam!agentlab=11111111-2222-3333-4444-555555555555";

/// A `pve-sim` process on ephemeral loopback ports; killed when dropped.
pub struct SimProcess {
    child: Child,
    pub api_url: String,
    pub admin_url: String,
    pub fingerprint: String,
}

impl SimProcess {
    /// Starts `pve-sim` as a set-up host (datacenter firewall on), state in `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> SimProcess {
        let mut args = vec!["--datacenter-firewall"];
        args.extend_from_slice(extra);
        SimProcess::start_bare(dir, &args)
    }

    /// Starts `pve-sim` as Proxmox comes (datacenter firewall off).
    pub fn start_bare(dir: &Path, extra: &[&str]) -> SimProcess {
        SimProcess::start_scaled(dir, 0.01, extra)
    }

    /// Starts `pve-sim` with its latency model scaled by `factor` (`extra` may set
    /// per-operation bases with `--latency op=seconds`).
    pub fn start_scaled(dir: &Path, factor: f64, extra: &[&str]) -> SimProcess {
        let factor = factor.to_string();
        let ready = dir.join("pve-sim.ready");
        let log = std::fs::File::create(dir.join("pve-sim.log")).unwrap();
        let child = Command::new(bin("pve-sim"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--token",
                SIM_TOKEN,
                "--latency-factor",
                &factor,
            ])
            .arg("--state-dir")
            .arg(dir.join("pve-sim"))
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pve-sim");
        let mut sim =
            SimProcess { child, api_url: String::new(), admin_url: String::new(), fingerprint: String::new() };
        let up = eventually(Duration::from_secs(20), || ready.exists());
        assert!(up, "pve-sim did not start: {}", std::fs::read_to_string(dir.join("pve-sim.log")).unwrap_or_default());
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ready).unwrap_or_default()).unwrap_or_default();
        sim.api_url = info["api"].as_str().unwrap_or_default().to_string();
        sim.admin_url = info["admin"].as_str().unwrap_or_default().to_string();
        sim.fingerprint = info["fingerprint"].as_str().unwrap_or_default().to_string();
        sim
    }
}

impl SimProcess {
    /// `GET <admin>/<path>` as JSON.
    pub fn admin_get(&self, path: &str) -> serde_json::Value {
        let out = Command::new("curl").args(["-s", &format!("{}{path}", self.admin_url)]).output();
        match out {
            Ok(o) => serde_json::from_slice(&o.stdout).unwrap_or_default(),
            Err(e) => panic!("curl: {e}"),
        }
    }

    /// A VM of the simulator's state, if it exists.
    pub fn vm(&self, vmid: u32) -> Option<serde_json::Value> {
        let state = self.admin_get("/admin/state");
        let vm = state["world"]["vms"][vmid.to_string()].clone();
        (!vm.is_null()).then_some(vm)
    }

    /// Creates a VM behind AgentLab's back.
    pub fn admin_post(&self, path: &str, body: &serde_json::Value) -> bool {
        Command::new("curl")
            .args(["-s", "-f", "-X", "POST", "-H", "content-type: application/json", "-d", &body.to_string()])
            .arg(format!("{}{path}", self.admin_url))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Deletes a VM (and its volumes) behind AgentLab's back, as someone on the host would.
    pub fn vanish(&self, vmid: impl std::fmt::Display) -> bool {
        Command::new("curl")
            .args(["-s", "-f", "-X", "DELETE", &format!("{}/admin/vms/{vmid}", self.admin_url)])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Every request the product sent passed the simulator's schema validation.
    pub fn assert_all_requests_valid(&self) {
        let out = Command::new("curl").args(["-s", &format!("{}/admin/requests", self.admin_url)]).output();
        let requests: Vec<serde_json::Value> = match out {
            Ok(o) => serde_json::from_slice(&o.stdout).unwrap_or_default(),
            Err(e) => panic!("curl: {e}"),
        };
        assert!(!requests.is_empty(), "the simulator saw no request");
        let rejected: Vec<&serde_json::Value> =
            requests.iter().filter(|r| r["verdict"] == "rejected" || r["verdict"] == "not_implemented").collect();
        assert!(rejected.is_empty(), "requests the simulator rejected: {rejected:?}");
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running daemon, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM and wait; the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let done = eventually(Duration::from_secs(30), || self.exited().is_some());
        assert!(done, "agentlabd did not stop on SIGTERM; log:\n{}", self.log());
        let status = self.exited().unwrap_or_else(|| panic!("no status"));
        self.child = None;
        status
    }

    /// SIGKILL: a crash, leaving whatever it left.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if !eventually(Duration::from_secs(10), || matches!(child.try_wait(), Ok(Some(_)))) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// `curl -X POST` to a guest route, as a guest would; (HTTP status, body).
pub fn guest_post(url: &str, bearer: Option<&str>, body: &[u8], content_type: &str) -> (u16, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&input, body).expect("write the body");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o"]).arg(&output).args(["-w", "%{http_code}", "-X", "POST", "-H"]);
    cmd.arg(format!("Content-Type: {content_type}"));
    if let Some(token) = bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    cmd.arg("--data-binary").arg(format!("@{}", input.display())).arg(url);
    let out = cmd.output().expect("curl");
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (code, std::fs::read_to_string(&output).unwrap_or_default())
}
