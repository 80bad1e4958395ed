//! Command-line grammar. Only commands that work are here; each later capability adds its own.

use agentlab_model::model::{JobState, SandboxState};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "agentlab",
    version,
    about = "Operate AgentLab sandboxes and jobs through agentlabd",
    propagate_version = true
)]
pub struct Cli {
    /// agentlabd's control socket.
    #[arg(long, global = true, env = "AGENTLAB_SOCKET", default_value = "/run/agentlab/agentlabd.sock")]
    pub socket: PathBuf,
    /// Print JSON (errors too, on stdout, as {"error","code","message"}).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long the daemon may stay silent during a request (each read and write), e.g. 30s
    /// or 2m. A request that waits for a sandbox (`sandbox new`, `start`) is silent until it is up.
    #[arg(long, global = true, default_value = "10m")]
    pub timeout: humantime::Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon, Proxmox and sandbox overview.
    Status,
    /// Profiles loaded by the daemon.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Sandboxes (one VM each).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// The warm pool: booted sandboxes that `sandbox new` and `job run` take at once.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Alias of `sandbox new`.
    New(NewArgs),
    /// Alias of `sandbox list`.
    Ls(ListArgs),
    /// Alias of `sandbox show`.
    Show(ShowArgs),
    /// Alias of `sandbox destroy`.
    Rm(DestroyArgs),
    /// Alias of `sandbox start`.
    Start(VmidArg),
    /// Alias of `sandbox stop`.
    Stop(StopArgs),
    /// Jobs: an agent run on a repository in a fresh sandbox.
    #[command(subcommand)]
    Job(JobCommand),
    /// Workspaces: volumes that outlive sandboxes, attached to one at a time.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Sessions: a workspace and a profile that outlive sandboxes (stop, resume, fork).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Secrets bundles (opened by the daemon with its age key).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Events of a sandbox or a job (with the job's redacted log), oldest first.
    Logs(LogsArgs),
    /// SSH into a sandbox (started first if STOPPED): prints the ssh command, or runs it
    /// with --exec.
    Ssh(SshArgs),
    /// Daemon internals.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Print the CLI version.
    Version,
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List the loaded profiles.
    List,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Each pooled profile: its size, and its READY, provisioning and draining sandboxes.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and wait until it is READY (a VM cloned from the profile's template).
    New(NewArgs),
    /// List sandboxes.
    List(ListArgs),
    /// Show one sandbox.
    Show(ShowArgs),
    /// Destroy a sandbox's VM and snippet (idempotent).
    Destroy(DestroyArgs),
    /// Start a STOPPED sandbox and wait until it is READY.
    Start(VmidArg),
    /// Stop a sandbox's VM (kept, restartable), or every READY/RUNNING one with --all.
    Stop(StopArgs),
    /// Suspend a sandbox's VM to RAM.
    Pause(VmidArg),
    /// Resume a paused sandbox.
    Resume(VmidArg),
    /// Roll the VM back to its `clean` snapshot.
    Revert(RevertArgs),
    /// Named snapshots of a sandbox's VM.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Change cores, memory or tags.
    Update(UpdateArgs),
    /// The sandbox lease.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Compare records with Proxmox: orphan VMs (tagged agentlab, no record) and drift.
    Reconcile {
        /// Destroy orphans older than orphan_grace_period and fix drift (default: report only).
        #[arg(long)]
        apply: bool,
    },
    /// Destroy every sandbox whose lease has expired (TIMEOUT).
    Prune,
    /// Publish a sandbox's port on this host's tailnet (`tailscale serve`), on a host port
    /// of its own.
    Expose {
        #[arg(value_parser = clap::value_parser!(u32).range(100..))]
        vmid: u32,
        /// The guest port, `:8080` or `8080`.
        #[arg(value_parser = parse_port)]
        port: u16,
        /// Default `sbx-<vmid>-<port>`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List exposures.
    Exposed,
    /// Remove an exposure.
    Unexpose { name: String },
}

fn parse_port(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix(':').unwrap_or(text);
    match digits.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("`{text}` is not a port (1-65535, e.g. :8080)")),
    }
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Profile name (or give `+modifiers` instead).
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Lease: minutes, or a duration such as 90m or 2h (rounded up to minutes).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<u32>,
    /// Stop and keep the VM when the lease ends instead of destroying it.
    #[arg(long)]
    pub keepalive: bool,
    /// A workspace (id or name) to attach before the first boot; it must be ready and detached.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Use this VMID instead of allocating one.
    #[arg(long, value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: Option<u32>,
    /// A Proxmox tag for the VM (repeatable); `agentlab` is always added.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// `+small +secure` → the profile `secure-small`.
    #[arg(value_name = "+MODIFIER")]
    pub modifiers: Vec<String>,
    /// Print a line per provisioning phase as it happens (default on a terminal).
    #[arg(long, hide = true)]
    pub progress: bool,
    /// Once READY, SSH into it (`agentlab ssh VMID --exec --wait`; needs a terminal).
    #[arg(long)]
    pub and_ssh: bool,
}

#[derive(Debug, clap::Args)]
pub struct SshArgs {
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
    /// The guest user (default: `agent`, the user the daemon's snippet creates).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long, short = 'p')]
    pub port: Option<u16>,
    /// Private key (default: AGENTLAB_SSH_IDENTITY, else the daemon's key if readable).
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// Run ssh instead of printing the command; with a value, run that command remotely.
    #[arg(long, short = 'e', num_args = 0..=1, default_missing_value = "")]
    pub exec: Option<String>,
    /// Wait (up to 3 minutes) until the guest accepts SSH connections.
    #[arg(long)]
    pub wait: bool,
    /// Fail instead of starting a STOPPED sandbox.
    #[arg(long)]
    pub no_start: bool,
    /// A remote command after `--` (implies --exec).
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl SshArgs {
    /// `agentlab ssh VMID --exec --wait`: an interactive session once SSH answers.
    pub fn interactive(vmid: u32) -> SshArgs {
        SshArgs {
            vmid,
            user: None,
            port: None,
            identity: None,
            exec: Some(String::new()),
            wait: true,
            no_start: false,
            command: Vec::new(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct VmidArg {
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Stop every READY or RUNNING sandbox.
    #[arg(long, conflicts_with = "vmid")]
    pub all: bool,
    /// With --all: do not ask for confirmation.
    #[arg(long, requires = "all")]
    pub force: bool,
    #[arg(value_parser = clap::value_parser!(u32).range(100..), required_unless_present = "all")]
    pub vmid: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct RevertArgs {
    /// Revert even if the state would not allow it; on ZFS, delete snapshots newer than
    /// `clean` first (ZFS rolls back only to the newest).
    #[arg(long)]
    pub force: bool,
    /// Start the VM after the rollback (default: if it was running).
    #[arg(long, conflicts_with = "no_restart")]
    pub restart: bool,
    /// Leave the VM stopped after the rollback.
    #[arg(long)]
    pub no_restart: bool,
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a named snapshot (STOPPED sandboxes, unless --force).
    Save {
        #[arg(long)]
        force: bool,
        #[arg(value_parser = clap::value_parser!(u32).range(100..))]
        vmid: u32,
        name: String,
    },
    /// List a sandbox's snapshots.
    List {
        #[arg(value_parser = clap::value_parser!(u32).range(100..))]
        vmid: u32,
    },
    /// Roll back to a named snapshot (STOPPED sandboxes, unless --force; on ZFS --force also
    /// deletes newer snapshots first).
    Restore {
        #[arg(long)]
        force: bool,
        #[arg(value_parser = clap::value_parser!(u32).range(100..))]
        vmid: u32,
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub cores: Option<u32>,
    /// MiB: 8192, 8192MiB, 8GiB, 8G, 8GB, 8M.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u32>,
    /// Replace the tags (repeatable); `agentlab` is always kept.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
}

fn parse_memory(text: &str) -> Result<u32, String> {
    let upper = text.trim().to_ascii_uppercase();
    let (number, factor) = [("GIB", 1024), ("GB", 1024), ("G", 1024), ("MIB", 1), ("MB", 1), ("M", 1)]
        .iter()
        .find_map(|(suffix, f)| upper.strip_suffix(suffix).map(|n| (n.to_string(), *f)))
        .unwrap_or((upper.clone(), 1));
    let n: u32 = number.trim().parse().map_err(|_| format!("`{text}` is not a size like 8192, 8GiB or 512M"))?;
    n.checked_mul(factor).filter(|m| *m >= 64).ok_or_else(|| format!("`{text}` must be at least 64 MiB"))
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    /// Destroy even while provisioning.
    #[arg(long)]
    pub force: bool,
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Extend the lease of a READY or RUNNING sandbox.
    Renew {
        /// New lease from now: minutes, or a duration such as 30m.
        #[arg(long, value_parser = parse_ttl)]
        ttl: u32,
        #[arg(value_parser = clap::value_parser!(u32).range(100..))]
        vmid: u32,
    },
}

/// Minutes, or a duration rounded up to whole minutes; must be positive.
fn parse_ttl(text: &str) -> Result<u32, String> {
    let minutes = match text.parse::<u64>() {
        Ok(m) => m,
        Err(_) => {
            let d = humantime::parse_duration(text)
                .map_err(|e| format!("`{text}` is not minutes or a duration like 30m ({e})"))?;
            d.as_secs().div_ceil(60)
        }
    };
    match u32::try_from(minutes) {
        Ok(0) | Err(_) => Err(format!("`{text}` must be a positive number of minutes")),
        Ok(m) => Ok(m),
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only sandboxes matching, e.g. `state=RUNNING`.
    #[arg(long, value_parser = parse_filter)]
    pub filter: Option<SandboxState>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The sandbox's VMID.
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A sandbox VMID or a job id (job_…).
    #[arg(value_parser = parse_log_target)]
    pub target: LogTarget,
    /// Keep printing new events as they happen (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// How many of the newest events to show (at most 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub tail: u32,
}

/// Whose events `logs` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Sandbox(u32),
    Job(String),
}

impl LogTarget {
    pub fn events_path(&self) -> String {
        match self {
            LogTarget::Sandbox(vmid) => format!("/v1/sandboxes/{vmid}/events"),
            LogTarget::Job(id) => format!("/v1/jobs/{id}/events"),
        }
    }
}

fn parse_log_target(text: &str) -> Result<LogTarget, String> {
    if text.starts_with("job_") {
        return Ok(LogTarget::Job(text.to_string()));
    }
    match text.parse::<u32>() {
        Ok(vmid) if vmid >= 100 => Ok(LogTarget::Sandbox(vmid)),
        _ => Err(format!("`{text}` is neither a VMID (100 or more) nor a job id (job_…)")),
    }
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run an agent on a repository in a fresh sandbox (prints the job id, or follows it).
    Run(JobRunArgs),
    /// Show a job with its phase timeline and newest events.
    Show {
        id: String,
        /// How many of the newest events to include (0: none).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
        events_tail: u32,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs in one status: status=RUNNING.
        #[arg(long, value_parser = parse_job_filter)]
        filter: Option<JobState>,
    },
    /// Cancel a QUEUED or RUNNING job; its sandbox is destroyed.
    Cancel { id: String },
    /// List a job's artifacts, or download one.
    Artifacts(ArtifactsArgs),
}

#[derive(Debug, clap::Args)]
pub struct JobRunArgs {
    /// The repository to clone (https://, ssh://, git@host:path, file:// or an absolute path).
    #[arg(long)]
    pub repo: String,
    /// What the agent should do.
    #[arg(long)]
    pub task: String,
    #[arg(long)]
    pub profile: String,
    /// Branch, tag or commit (default: the remote's default branch).
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// How long the agent may run: minutes, or a duration like 30m or 2h (default: the
    /// profile's ttl_minutes_default, else 60).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<u32>,
    /// Keep the sandbox after the job ends (a canceled job's sandbox is destroyed anyway).
    #[arg(long)]
    pub keepalive: bool,
    /// `dangerous` (default) or `safe`.
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long, value_parser = ["claude", "codex", "opencode", "custom"])]
    pub agent: Option<String>,
    /// Stream the job's redacted log and phases until it ends; exit 0 only if it COMPLETED.
    #[arg(long)]
    pub follow: bool,
    /// A workspace for `/work` (the repository goes to /work/repo): its id or name, or
    /// `new:NAME` to create one (with --workspace-size).
    #[arg(long)]
    pub workspace: Option<String>,
    /// Size of a `new:` workspace, in GiB (`10`, `10G`).
    #[arg(long, value_parser = parse_size_gb, requires = "workspace")]
    pub workspace_size: Option<u32>,
    /// Storage of a `new:` workspace (default: the daemon's workspace_storage).
    #[arg(long, requires = "workspace")]
    pub workspace_storage: Option<String>,
    /// Wait this long (seconds, or a duration like 2m) for the workspace to be free when
    /// another sandbox has it, instead of being refused at once.
    #[arg(long, value_parser = parse_seconds, requires = "workspace")]
    pub workspace_wait: Option<u32>,
}

/// Whole seconds, or a duration rounded up to seconds.
fn parse_seconds(text: &str) -> Result<u32, String> {
    let seconds = match text.parse::<u64>() {
        Ok(s) => s,
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not seconds or a duration like 2m ({e})"))?
            .as_millis()
            .div_ceil(1000) as u64,
    };
    u32::try_from(seconds).map_err(|_| format!("`{text}` is too long"))
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub action: Option<ArtifactsAction>,
    /// The job whose artifacts to list.
    pub id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsAction {
    /// Download an artifact and verify its SHA-256.
    Download(DownloadArgs),
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    pub id: String,
    /// Where to write it: a file, or a directory (existing, or given with a trailing `/`) to
    /// write the artifact into under its own name. Default: its name in the current directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a file that is already there.
    #[arg(long)]
    pub force: bool,
    /// The artifact's name.
    #[arg(long, conflicts_with_all = ["bundle", "latest"])]
    pub name: Option<String>,
    /// The runner's bundle, agentlab-artifacts.tar.gz (the default).
    #[arg(long, conflicts_with = "latest")]
    pub bundle: bool,
    /// The newest artifact.
    #[arg(long)]
    pub latest: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Check that a bundle decrypts with the daemon's key and parses (no values are printed).
    Validate {
        /// Bundle name (default: the daemon's secrets_bundle).
        #[arg(long)]
        bundle: Option<String>,
    },
    /// Every bundle (age or sops), whether it opens, its names; the key and recent secrets events.
    List,
    /// One bundle's sections and names; its values only with --reveal (recorded as an event).
    Show {
        /// Bundle name (default: the daemon's secrets_bundle).
        bundle: Option<String>,
        /// Print the decrypted bundle. Recorded (who, which bundle) in the daemon's events.
        #[arg(long)]
        reveal: bool,
    },
    /// Set env.NAME; the value is read from stdin (or asked for, unechoed), never from the command line.
    SetEnv { bundle: String, name: String },
    /// Remove env.NAME.
    UnsetEnv { bundle: String, name: String },
    /// Set git.FIELD (username, token, ssh_private_key, ssh_public_key, known_hosts) from stdin.
    SetGit { bundle: String, field: String },
    /// Add ssh.keys.NAME: an SSH public key (one `TYPE BASE64 [COMMENT]` line) read from stdin.
    AddSshKey {
        bundle: String,
        name: String,
        /// The key's type (default: the key's own, e.g. ssh-ed25519).
        #[arg(long = "type")]
        key_type: Option<String>,
        /// The key's comment (default: the key's own).
        #[arg(long)]
        comment: Option<String>,
    },
    /// Remove ssh.keys.NAME.
    RemoveSshKey { bundle: String, name: String },
    /// Make a new age key and re-seal every bundle to it; the old key is dropped only when all are.
    RotateKey {
        /// Rotate without asking (the old key stops opening anything).
        #[arg(long)]
        yes: bool,
    },
}

fn parse_job_filter(text: &str) -> Result<JobState, String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE; use status=RUNNING"))?;
    match key.trim() {
        "status" => value.parse::<JobState>().map_err(|e| e.to_string()),
        other => Err(format!("cannot filter on `{other}`; the filter is status=STATUS")),
    }
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// The live actor tree: name, kind, state, uptime, restarts.
    Actors,
}

fn parse_filter(text: &str) -> Result<SandboxState, String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE; use state=RUNNING"))?;
    match key.trim() {
        "state" => value.parse::<SandboxState>().map_err(|e| e.to_string()),
        other => Err(format!("cannot filter on `{other}`; the filter is state=STATE")),
    }
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace: a volume owned by a holder VM of its own (tagged
    /// agentlab-workspace, protected, never started), so no sandbox's destroy frees it.
    Create {
        #[arg(long)]
        name: String,
        /// Size in GiB: `10`, `10G` or `10GB`.
        #[arg(long, value_parser = parse_size_gb)]
        size: u32,
        /// Proxmox storage for the volume (default: the daemon's workspace_storage).
        #[arg(long)]
        storage: Option<String>,
        /// Proxmox node (default: proxmox_node, else the first online node).
        #[arg(long)]
        node: Option<String>,
    },
    /// List workspaces.
    List,
    /// Show one workspace (by id or name).
    Show { workspace: String },
    /// Attach a workspace to a sandbox (its scsi1); refused while attached elsewhere.
    Attach {
        workspace: String,
        #[arg(value_parser = clap::value_parser!(u32).range(100..))]
        vmid: u32,
    },
    /// Detach a workspace from its sandbox.
    Detach { workspace: String },
    /// Destroy a detached workspace: its holder VM and its volume, for good.
    Destroy { workspace: String },
    /// Move the workspace to a fresh sandbox of a profile: the old sandbox is shut down,
    /// the workspace detached, the new sandbox made with it, the old one destroyed.
    Rebind {
        workspace: String,
        #[arg(long)]
        profile: String,
        /// The new sandbox's TTL: minutes, or a duration like 2h.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u32>,
        /// Keep the old sandbox (without the workspace).
        #[arg(long)]
        keep_old: bool,
    },
    /// Compare the workspace's record with Proxmox: each finding with its fix (exit 1 if
    /// any is an error).
    Check { workspace: String },
    /// Snapshots of a workspace's volume (taken and restored only while detached).
    #[command(subcommand)]
    Snapshot(WorkspaceSnapshotCommand),
    /// A new workspace with a copy of a detached one's volume.
    Fork {
        workspace: String,
        #[arg(long)]
        name: String,
        /// Copy the volume as it was in this snapshot.
        #[arg(long)]
        from_snapshot: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceSnapshotCommand {
    /// Take a snapshot of a detached workspace.
    Create { workspace: String, name: String },
    /// List a workspace's snapshots.
    List { workspace: String },
    /// Roll a detached workspace back to a snapshot (what was written since is lost).
    Restore { workspace: String, name: String },
}

/// `10`, `10G`, `10GB` (GiB).
pub fn parse_size_gb(text: &str) -> Result<u32, String> {
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper.strip_suffix("GB").or_else(|| upper.strip_suffix('G')).unwrap_or(&upper);
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a size in GiB (e.g. 10, 10G or 10GB)")),
    }
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session and its first sandbox, with the workspace attached.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        profile: String,
        /// The workspace: its id or name, or `new:NAME` to create one (with --workspace-size).
        #[arg(long)]
        workspace: String,
        /// Size of a `new:` workspace, in GiB (`10`, `10G`).
        #[arg(long, value_parser = parse_size_gb)]
        workspace_size: Option<u32>,
        /// Storage of a `new:` workspace (default: the daemon's workspace_storage).
        #[arg(long)]
        workspace_storage: Option<String>,
    },
    /// List sessions.
    List,
    /// Show one session (by id or name).
    Show { session: String },
    /// A fresh sandbox for the session, its workspace attached (the old sandbox destroyed).
    Resume { session: String },
    /// Destroy the session's sandbox; the workspace is kept for the next resume.
    Stop { session: String },
    /// A new session on a copy of this (stopped) session's workspace, or on --workspace.
    Fork {
        session: String,
        #[arg(long)]
        name: String,
        /// Another existing workspace instead of a copy.
        #[arg(long)]
        workspace: Option<String>,
        /// Another profile (default: the session's).
        #[arg(long)]
        profile: Option<String>,
    },
}
