//! `agentlabd net render|check|apply|status`: the host ruleset from the command line, for
//! the operator (`scripts/net/apply.sh`) and the boot unit. Reads the daemon's config,
//! profiles and database; the running daemon keeps the same table current afterwards.

use crate::config::Config;
use agentlab_actors::net::{HostNetSettings, HostTable, TableState};
use agentlab_actors::profiles::ProfileRegistry;
use agentlab_actors::store::Store;
use agentlab_netfilter::nft::Nft;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum NetCommand {
    /// Print the ruleset for the sandboxes on record (changes nothing).
    Render,
    /// Ask the kernel whether it would load the ruleset (`nft -c`; changes nothing).
    Check,
    /// Load the ruleset atomically (`nft -f`) and read it back.
    Apply,
    /// Say whether the AgentLab table is loaded.
    Status,
}

pub fn settings(config: &Config) -> Result<HostNetSettings, String> {
    let gateway = match config.bootstrap_listen.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => return Err(format!("bootstrap_listen {ip} is IPv6; the agent bridge's gateway is IPv4")),
    };
    let subnet = match config.agent_subnet {
        ipnet::IpNet::V4(net) => net,
        ipnet::IpNet::V6(net) => return Err(format!("agent_subnet {net} is IPv6; the agent subnet is IPv4")),
    };
    Ok(HostNetSettings {
        agent_bridge: config.agent_bridge.clone(),
        uplink: config.uplink_interface.clone(),
        subnet,
        gateway,
        listener_ports: vec![config.bootstrap_listen.port(), config.artifact_listen.port()],
        dns_server: config.allowlist_dns_server,
        ssh_ingress: config.ssh_ingress_interfaces.clone(),
    })
}

pub fn run(config: &Config, profiles: ProfileRegistry, command: NetCommand) -> ExitCode {
    let table = match settings(config).and_then(|s| {
        // Before the daemon's first start (the boot unit runs first) there is no database
        // yet: it is made as the daemon would make it, and holds no sandboxes.
        if let Some(dir) = config.db_path.parent() {
            crate::socket::create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let store = Store::open(&config.db_path).map_err(|e| e.to_string())?;
        // The running daemon's keeper owns the egress record: the command line only loads.
        Ok(HostTable::new(s, Nft::default(), Arc::new(store), Arc::new(profiles)).without_folding())
    }) {
        Ok(table) => table,
        Err(e) => {
            eprintln!("agentlabd net: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        NetCommand::Render => table.render().map(|text| print!("{text}")),
        NetCommand::Check => table.check().map(|()| eprintln!("agentlabd net: the kernel accepts the ruleset")),
        NetCommand::Apply => table.apply().map(|()| eprintln!("agentlabd net: ruleset loaded and read back")),
        NetCommand::Status => {
            let state = table.state();
            println!(
                "{}",
                match &state {
                    TableState::Loaded => "loaded".to_string(),
                    TableState::Absent => "absent: run `agentlabd net apply` (or scripts/net/apply.sh --apply)".into(),
                    TableState::Unknown(why) => format!("unknown: {why}"),
                }
            );
            return if state == TableState::Loaded { ExitCode::SUCCESS } else { ExitCode::from(3) };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentlabd net: {e}");
            ExitCode::FAILURE
        }
    }
}
