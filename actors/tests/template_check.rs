//! The template check on what the simulator serves: the template it starts with (built as
//! scripts/create_template.sh builds one) is accepted with nothing to say; the same
//! template after `qm set 9000 --delete scsi0` is refused, with the command that re-attaches
//! the disk Proxmox left as `unused0`. Read through the real client, as both callers do.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use agentlab_actors::protocol::FindingLevel;
use agentlab_actors::sandbox::template_check::{self, codes};
use agentlab_proxmox::types::ConfigChange;
use agentlab_proxmox::{Pve, PveClient, TaskPolicy};
use agentlab_pve_sim::{InProcessTransport, SimConfig};

const TEMPLATE: u32 = 9000;

async fn report(pve: &dyn Pve, vmid: u32) -> agentlab_actors::protocol::TemplateReport {
    let vms = pve.cluster_vms().await.unwrap();
    match template_check::locate(vmid, &vms) {
        Ok(node) => template_check::check(vmid, Some(&node), &pve.vm_config(&node, vmid).await.unwrap()),
        Err(report) => report,
    }
}

#[tokio::test]
async fn the_simulators_template_passes_and_fails_once_its_boot_disk_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let transport = InProcessTransport::start(SimConfig::for_tests(dir.path().join("sim"))).unwrap();
    let pve = PveClient::new(transport, TaskPolicy::default());

    let fresh = report(&pve, TEMPLATE).await;
    assert!(fresh.accepted && fresh.findings.is_empty(), "{fresh:?}");
    assert_eq!(fresh.node.as_deref(), Some("pve1"));

    let node = fresh.node.clone().unwrap();
    pve.update_config(&node, TEMPLATE, &ConfigChange { delete: vec!["scsi0".into()], ..Default::default() })
        .await
        .unwrap();
    let broken = report(&pve, TEMPLATE).await;
    assert!(!broken.accepted, "{broken:?}");
    let codes_found: Vec<(FindingLevel, &str)> = broken.findings.iter().map(|f| (f.level, f.code.as_str())).collect();
    assert_eq!(codes_found, [(FindingLevel::Error, codes::NO_BOOT_DISK)], "{broken:?}");
    let message = &broken.findings[0].message;
    assert!(message.contains(&format!("qm set {TEMPLATE} --scsi0 local-lvm:base-{TEMPLATE}-disk-0")), "{message}");

    let missing = report(&pve, 9999).await;
    assert_eq!(missing.findings[0].code, codes::NOT_FOUND, "{missing:?}");
}
