//! `agentlabd`: the AgentLab daemon. See docs/ARCHITECTURE.md.

mod api;
mod config;
mod daemon;
mod guest;
mod metrics_listener;
mod net_command;
mod notify;
mod socket;
mod ssh_key;
mod template_command;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "agentlabd", version, about = "AgentLab daemon: runs AI coding agents in throw-away Proxmox VMs")]
struct Args {
    /// Config file (YAML, not world-readable).
    #[arg(long, global = true, default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Secrets bundles: the daemon's age key and sealed (encrypted) bundles.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The host nftables ruleset that isolates sandboxes: render, check, apply, status.
    #[command(subcommand)]
    Net(net_command::NetCommand),
    /// VM templates: check that a VM can serve as a profile's template.
    #[command(subcommand)]
    Template(template_command::TemplateCommand),
}

#[derive(Debug, clap::Subcommand)]
enum SecretsCommand {
    /// Write a new age identity (mode 0600) for `secrets_age_key_path`; prints its recipient.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Encrypt a plaintext YAML bundle to the identity's recipient (checks it parses first).
    Seal {
        /// The age identity file (`secrets_age_key_path`).
        #[arg(long)]
        key: PathBuf,
        /// The plaintext bundle (YAML).
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the sealed bundle, e.g. /etc/agentlab/secrets/default.age.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a `secrets` subcommand (no daemon, no config needed).
fn secrets_command(command: SecretsCommand) -> ExitCode {
    let result = match command {
        SecretsCommand::Keygen { out } => agentlab_secrets::write_identity(&out).map(|recipient| {
            println!("{recipient}");
            eprintln!("agentlabd: wrote age identity {} (0600); its recipient is printed above", out.display());
        }),
        SecretsCommand::Seal { key, input, out } => agentlab_secrets::seal(&key, &input, &out).map(|sealed| {
            eprintln!(
                "agentlabd: sealed {} to {} for {}; delete the plaintext now",
                input.display(),
                out.display(),
                sealed.recipient
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentlabd: {e} ({})", e.code());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let args = match args.command {
        Some(Command::Secrets(command)) => return secrets_command(command),
        _ => args,
    };
    agentlab_proxmox::install_crypto_provider();
    init_logging();

    let config = match config::Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("agentlabd: {e}");
            // The template check keeps 1 for "refused": a script tells the two apart.
            return match args.command {
                Some(Command::Template(_)) => ExitCode::from(template_command::CANNOT_CHECK),
                _ => ExitCode::FAILURE,
            };
        }
    };
    let command = match args.command {
        // Needs neither the profiles nor the daemon's runtime.
        Some(Command::Template(command)) => return template_command::run(&config, command),
        other => other,
    };
    let rules = agentlab_actors::profiles::ProfileRules {
        api_token: matches!(config.proxmox.backend, crate::config::ProxmoxBackend::Api { .. }),
    };
    let profiles = match agentlab_actors::profiles::ProfileRegistry::load(config.profiles_dir.clone(), rules) {
        Ok(profiles) => profiles,
        Err(errors) => {
            eprintln!("agentlabd: invalid profiles (fix them, then start again):\n{errors}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Net(command)) = command {
        return net_command::run(&config, profiles, command);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agentlabd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(config, profiles)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentlabd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (journald under systemd). `AGENTLAB_LOG` or `RUST_LOG` set the filter.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("AGENTLAB_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    // An actor panic is caught and restarted by its supervisor; one log line is enough
    // (the default hook prints a full backtrace when RUST_BACKTRACE is set).
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        tracing::error!(%location, "panic: {message}");
    }));
}
