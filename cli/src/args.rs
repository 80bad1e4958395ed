//! Command-line grammar. Only commands that work are here; each later capability adds its own.

use agentlab_actors::model::SandboxState;
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
    /// Deadline of each request to the daemon, e.g. 30s or 2m.
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
    /// Alias of `sandbox list`.
    Ls(ListArgs),
    /// Alias of `sandbox show`.
    Show(ShowArgs),
    /// Events of a sandbox, oldest first.
    Logs(LogsArgs),
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
pub enum SandboxCommand {
    /// List sandboxes.
    List(ListArgs),
    /// Show one sandbox.
    Show(ShowArgs),
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
    #[arg(value_parser = clap::value_parser!(u32).range(100..))]
    pub vmid: u32,
    /// How many of the newest events to show (at most 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub tail: u32,
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
