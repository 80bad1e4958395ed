//! `agentlabd template check VMID [--json]`: the template check from the command line, for
//! the operator and `scripts/create_template.sh`, over the Proxmox backend of the daemon's
//! config. Exit 0 accepted, 1 refused (or no such VM), 2 usage, config or Proxmox problems.

use crate::config::Config;
use agentlab_actors::protocol::TemplateReport;
use agentlab_actors::sandbox::template_check;
use agentlab_proxmox::{ErrorClass, Pve};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Check that a VM can serve as a profile's template.
    ///
    /// Prints one line per finding (`error no_boot_disk: …`, `warning agent_disabled: …`),
    /// each with the `qm` command that fixes it, then the verdict (`template 9000: accepted`
    /// or `template 9000: refused (N errors)`). Exit 0 accepted, 1 refused or no such VM, 2
    /// usage, config or Proxmox problems.
    Check {
        /// The template's VMID.
        vmid: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The exit code for usage, config and connection problems (clap's usage errors exit 2 too).
pub const CANNOT_CHECK: u8 = 2;

pub fn run(config: &Config, command: TemplateCommand) -> ExitCode {
    let TemplateCommand::Check { vmid, json } = command;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return cannot_check(&format!("cannot start the async runtime: {e}")),
    };
    let report = runtime.block_on(async {
        let pve = crate::daemon::build_pve(config).map_err(|e| format!("{e:#}"))?;
        inspect(pve.as_ref(), vmid).await
    });
    let report = match report {
        Ok(report) => report,
        Err(why) => return cannot_check(&why),
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => return cannot_check(&format!("cannot encode the report: {e}")),
        }
    } else {
        for finding in &report.findings {
            println!("{}", finding.line());
        }
        println!("{}", report.verdict());
    }
    if report.accepted { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn cannot_check(why: &str) -> ExitCode {
    eprintln!("agentlabd template: {why}");
    ExitCode::from(CANNOT_CHECK)
}

/// Locates the VM on the cluster, reads its config and checks it. Err: Proxmox could not
/// be asked (a VM that does not exist is a report, not an error).
async fn inspect(pve: &dyn Pve, vmid: u32) -> Result<TemplateReport, String> {
    let asking = || format!("Proxmox ({} backend, {})", pve.backend(), pve.endpoint());
    let vms =
        pve.cluster_vms().await.map_err(|e| format!("cannot list the cluster's VMs through {}: {e}", asking()))?;
    let node = match template_check::locate(vmid, &vms) {
        Ok(node) => node,
        Err(report) => return Ok(report),
    };
    match pve.vm_config(&node, vmid).await {
        Ok(config) => Ok(template_check::check(vmid, Some(&node), &config)),
        // Destroyed between the two reads.
        Err(e) if e.class() == ErrorClass::NotFound => Ok(template_check::not_found(vmid)),
        Err(e) => Err(format!("cannot read VM {vmid}'s config on {node} through {}: {e}", asking())),
    }
}
