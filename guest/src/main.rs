//! `agent-runner`: baked into the VM template, it turns a bootstrap descriptor into a run
//! of the agent. This first slice checks the descriptor cloud-init wrote, so template
//! builders can verify a template; fetching and running jobs come with the jobs capability.

use agentlab_actors::protocol::guest::BootstrapDescriptor;
use std::process::ExitCode;

const DEFAULT_DESCRIPTOR: &str = "/etc/agentlab/bootstrap.json";

const USAGE: &str = "usage: agent-runner <command>

commands:
  check       validate the bootstrap descriptor ($AGENTLAB_BOOTSTRAP, default /etc/agentlab/bootstrap.json)
  --version   print the version
  --help      print this help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
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
    let path = std::env::var("AGENTLAB_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_DESCRIPTOR.to_string());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!(
                "agent-runner: cannot read bootstrap descriptor {path}: {e}; cloud-init writes it from the sandbox's snippet"
            );
            return ExitCode::FAILURE;
        }
    };
    match BootstrapDescriptor::parse(&text) {
        Ok(d) => {
            // Never print the token.
            println!("descriptor {path}: ok (vmid {}, controller {})", d.vmid, d.controller);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agent-runner: bad bootstrap descriptor {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
