//! `agentlab`: the AgentLab operator CLI. It talks to `agentlabd` over its Unix socket.
//!
//! Exit codes: 0 success, 1 a request failed, 2 bad usage. With `--json`, errors are
//! printed on stdout as the daemon's envelope `{"error","code","message"}`.

mod client;
mod commands;
mod follow;
mod jobs;
mod render;
mod render_status;
mod secrets;
mod sessions;
mod ssh;
mod terminal;
mod workspaces;

use agentlab_cli::args::{self, Cli, Command};
use clap::{CommandFactory, Parser};
use client::{ClientError, DaemonClient};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = &cli.command {
        clap_complete::generate(*shell, &mut Cli::command(), "agentlab", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Version = &cli.command {
        return commands::version(cli.json);
    }
    let client = DaemonClient::new(cli.socket.clone(), cli.timeout.into());
    match commands::run(&client, &cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error, cli.json);
            if matches!(error, ClientError::Usage(_)) { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

fn report(error: &ClientError, json: bool) {
    if json && matches!(error, ClientError::Reported(_)) {
        return;
    }
    if json {
        let envelope = error.envelope();
        println!("{}", serde_json::to_string(&envelope).unwrap_or_else(|_| envelope.message.clone()));
    } else {
        eprintln!("error: {}", terminal::escape(&error.message()));
        if let ClientError::Api { status, envelope } = error {
            eprintln!("  code: {} (HTTP {status})", envelope.code);
        }
    }
}
