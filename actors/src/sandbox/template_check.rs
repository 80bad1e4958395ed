//! Whether a VM can serve as a profile's template, from its config alone: one pure check
//! shared by `agentlabd template check` and `agentlab status`, so the operator learns what a
//! clone would trip over before the first sandbox fails at `clone`, `configure` or `wait_ip`.
//!
//! Errors are what no clone of it survives: not a template (Proxmox refuses a linked clone
//! of a plain VM), no disk to boot, no NIC, no cloud-init drive when AgentLab cannot add one
//! (`guest_devices::needed`, the very rule `configure` applies). Warnings are what
//! `configure` repairs on each clone, or what only the image can provide.

use super::guest_devices;
use super::vm_volumes::is_drive_key;
use crate::protocol::{FindingLevel, TemplateFinding, TemplateReport};
use agentlab_proxmox::types::{ClusterVm, VmConfig};

/// The stable codes of the findings.
pub mod codes {
    pub const NOT_A_TEMPLATE: &str = "not_a_template";
    pub const NO_BOOT_DISK: &str = "no_boot_disk";
    pub const NO_NETWORK: &str = "no_network";
    pub const NO_CLOUDINIT_DRIVE: &str = "no_cloudinit_drive";
    pub const CLOUDINIT_DRIVE_ADDED_ON_CLONE: &str = "cloudinit_drive_added_on_clone";
    pub const AGENT_DISABLED: &str = "agent_disabled";
    /// No QEMU VM with that VMID on the cluster.
    pub const NOT_FOUND: &str = "not_found";
    /// Proxmox could not be asked (the report says why).
    pub const UNREADABLE: &str = "unreadable";
}

/// The buses whose disks count as bootable when `boot` gives no order.
const DISK_BUSES: [&str; 4] = ["scsi", "virtio", "sata", "ide"];

/// The report for template `vmid` on `node` with this config.
pub fn check(vmid: u32, node: Option<&str>, config: &VmConfig) -> TemplateReport {
    let mut findings = Vec::new();
    let mut error = |code: &str, message: String| findings.push(finding(FindingLevel::Error, code, message));
    if config.get("template") != Some("1") {
        error(
            codes::NOT_A_TEMPLATE,
            format!(
                "VM {vmid} is not a template (sandboxes are linked clones of one); convert it, once it is shut down: `qm template {vmid}`"
            ),
        );
    }
    if let Err(why) = boot_disk(config) {
        error(codes::NO_BOOT_DISK, format!("VM {vmid} has no disk to boot: {why}; {}", boot_disk_fix(vmid, config)));
    }
    // `configure` gives every clone a NIC on its profile's bridge; a template without one
    // was not built the way Proxmox's cloud-init guide builds one, and is refused as such.
    if config.get("net0").is_none() {
        error(
            codes::NO_NETWORK,
            format!("VM {vmid} has no network device; add one: `qm set {vmid} --net0 virtio,bridge=vmbr1`"),
        );
    }
    // A clone of a template is checked by `configure` under the clone's VMID, whose
    // cloud-init volume Proxmox names after the clone; the template's own is named after it.
    let devices = guest_devices::needed(config, vmid, vmid);
    if let Err(e) = &devices {
        error(codes::NO_CLOUDINIT_DRIVE, e.to_string());
    }
    let mut warning = |code: &str, message: String| findings.push(finding(FindingLevel::Warning, code, message));
    for (key, value) in devices.iter().flat_map(|d| &d.set).filter(|(key, _)| key != "agent") {
        warning(
            codes::CLOUDINIT_DRIVE_ADDED_ON_CLONE,
            format!(
                "VM {vmid} has no cloud-init drive; AgentLab adds one to every clone ({key}: {value}); to have it on the template: `qm set {vmid} --{key} {value}`"
            ),
        );
    }
    if !guest_devices::agent_enabled(config.get("agent")) {
        warning(
            codes::AGENT_DISABLED,
            format!(
                "VM {vmid} has the QEMU guest agent off; AgentLab turns it on for every clone, but the image must run qemu-guest-agent (the sandbox's address comes from it); on the template: `qm set {vmid} --agent {}`",
                guest_devices::enable_agent(config.get("agent"))
            ),
        );
    }
    TemplateReport::new(vmid, node.map(str::to_string), findings)
}

/// The node of QEMU VM `vmid` in a `/cluster/resources` listing, or the report saying
/// there is none.
pub fn locate(vmid: u32, vms: &[ClusterVm]) -> Result<String, TemplateReport> {
    let mut same = vms.iter().filter(|v| v.vmid == u64::from(vmid));
    let found = same.clone().find(|v| v.is_qemu());
    match (found, same.next()) {
        (Some(vm), _) => Ok(vm.node.clone()),
        (None, Some(other)) => Err(TemplateReport::new(
            vmid,
            Some(other.node.clone()),
            vec![finding(
                FindingLevel::Error,
                codes::NOT_FOUND,
                format!(
                    "{vmid} on {} is a {} container, not a QEMU VM; build the template under a free VMID (scripts/create_template.sh --vmid N) and set the profiles' template_vmid to it",
                    other.node, other.kind
                ),
            )],
        )),
        (None, None) => Err(not_found(vmid)),
    }
}

/// The report for a VMID no VM has.
pub fn not_found(vmid: u32) -> TemplateReport {
    let message = format!(
        "no VM {vmid} on the cluster; build it (scripts/create_template.sh --vmid {vmid}) or set the profiles' template_vmid to an existing template"
    );
    TemplateReport::new(vmid, None, vec![finding(FindingLevel::Error, codes::NOT_FOUND, message)])
}

/// The report for a template Proxmox could not be asked about (`why` says what failed).
pub fn unreadable(vmid: u32, node: Option<&str>, why: &str) -> TemplateReport {
    let message = format!("VM {vmid} could not be checked: {why}");
    TemplateReport::new(vmid, node.map(str::to_string), vec![finding(FindingLevel::Error, codes::UNREADABLE, message)])
}

fn finding(level: FindingLevel, code: &str, message: String) -> TemplateFinding {
    TemplateFinding { level, code: code.to_string(), message }
}

/// A drive that holds a disk (not a CD-ROM, not the empty `none`).
fn is_disk(value: &str) -> bool {
    !value.contains("media=cdrom") && value.split(',').next().is_some_and(|file| file != "none")
}

/// The boot disk's key: the first drive of `boot: order=…` (it must be a disk), or without
/// an order any disk on the buses a BIOS boots from. Err: why there is none.
fn boot_disk(config: &VmConfig) -> Result<String, String> {
    let order = config.get("boot").and_then(|b| b.split(',').find_map(|part| part.strip_prefix("order=")));
    let Some(order) = order else {
        return first_disk(config).ok_or_else(|| "it has no disk and no boot order".to_string());
    };
    let Some(key) = order.split(';').find(|device| is_drive_key(device)) else {
        return Err(format!("its boot order `{order}` names no disk"));
    };
    match config.get(key) {
        None => Err(format!("its boot order starts with {key}, which is not set")),
        Some(value) if !is_disk(value) => Err(format!("its boot order starts with {key}, a CD-ROM")),
        Some(_) => Ok(key.to_string()),
    }
}

fn first_disk(config: &VmConfig) -> Option<String> {
    config
        .values
        .iter()
        .find(|(key, value)| is_drive_key(key) && DISK_BUSES.iter().any(|bus| key.starts_with(bus)) && is_disk(value))
        .map(|(key, _)| key.clone())
}

/// What to run: boot from a disk it has, re-attach a detached one, or import the image.
fn boot_disk_fix(vmid: u32, config: &VmConfig) -> String {
    if let Some(disk) = first_disk(config) {
        return format!("boot from {disk}: `qm set {vmid} --boot order={disk}`");
    }
    let ordered = config
        .get("boot")
        .and_then(|b| b.split(',').find_map(|part| part.strip_prefix("order=")))
        .and_then(|order| order.split(';').find(|device| is_drive_key(device)));
    let wanted = ordered.unwrap_or("scsi0");
    // The boot order only needs changing when it does not already start with that slot.
    let and_boot =
        if ordered == Some(wanted) { String::new() } else { format!(" and `qm set {vmid} --boot order={wanted}`") };
    let detached = config.values.iter().find(|(key, _)| key.starts_with("unused")).map(|(_, volume)| volume);
    match detached {
        Some(volume) => format!("re-attach its detached disk: `qm set {vmid} --{wanted} {volume}`{and_boot}"),
        None => format!(
            "import the cloud image as its disk: `qm set {vmid} --{wanted} <storage>:0,import-from=<image>`{and_boot}, or rebuild it with scripts/create_template.sh"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> VmConfig {
        VmConfig { values: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), digest: None }
    }

    /// What `pve-sim`'s `add_template` builds (proxmox/sim/src/server.rs), which is what
    /// scripts/create_template.sh makes on a real host.
    const SIM_TEMPLATE: [(&str, &str); 12] = [
        ("name", "agentlab-template-9000"),
        ("cores", "2"),
        ("memory", "2048"),
        ("ostype", "l26"),
        ("agent", "1"),
        ("boot", "order=scsi0"),
        ("scsihw", "virtio-scsi-single"),
        ("scsi0", "local-lvm:base-9000-disk-0,discard=on,size=8G"),
        ("ide2", "local-lvm:vm-9000-cloudinit,media=cdrom"),
        ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr1"),
        ("ipconfig0", "ip=dhcp"),
        ("template", "1"),
    ];

    /// Keys to set (`Some`) or remove (`None`).
    type Changes<'a> = Vec<(&'a str, Option<&'a str>)>;
    /// The findings' levels and codes, in order.
    type Found<'a> = Vec<(FindingLevel, &'a str)>;

    /// The template with `changes` applied.
    fn sim_template_with(changes: &[(&str, Option<&str>)]) -> VmConfig {
        let mut c = config(&SIM_TEMPLATE);
        for (key, value) in changes {
            match value {
                Some(v) => c.values.insert(key.to_string(), v.to_string()),
                None => c.values.remove(*key),
            };
        }
        c
    }

    fn codes_of(report: &TemplateReport) -> Found<'_> {
        report.findings.iter().map(|f| (f.level, f.code.as_str())).collect()
    }

    #[test]
    fn the_simulators_template_is_accepted_with_nothing_to_say() {
        let report = check(9000, Some("pve1"), &config(&SIM_TEMPLATE));
        assert_eq!(report, TemplateReport { vmid: 9000, node: Some("pve1".into()), accepted: true, findings: vec![] });
    }

    #[test]
    fn every_finding_has_its_level_code_and_fix() {
        use FindingLevel::{Error, Warning};
        let full_buses: Vec<(String, Option<&str>)> = (0..=3)
            .map(|n| format!("ide{n}"))
            .chain((1..=30).map(|n| format!("scsi{n}")))
            .chain((0..=5).map(|n| format!("sata{n}")))
            .map(|k| (k, Some("none,media=cdrom")))
            .collect();
        let full: Changes = full_buses.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let table: Vec<(&str, Changes, Found, &str)> = vec![
            ("plain VM", vec![("template", None)], vec![(Error, codes::NOT_A_TEMPLATE)], "`qm template 9000`"),
            ("template 0", vec![("template", Some("0"))], vec![(Error, codes::NOT_A_TEMPLATE)], "`qm template 9000`"),
            (
                "boot disk deleted",
                vec![("scsi0", None), ("unused0", Some("local-lvm:base-9000-disk-0"))],
                // Nor can AgentLab tell which storage a clone's cloud-init drive would go on.
                vec![(Error, codes::NO_BOOT_DISK)],
                "re-attach its detached disk: `qm set 9000 --scsi0 local-lvm:base-9000-disk-0`",
            ),
            (
                "boot order on a CD-ROM",
                vec![("boot", Some("order=ide2;scsi0"))],
                vec![(Error, codes::NO_BOOT_DISK)],
                "`qm set 9000 --boot order=scsi0`",
            ),
            (
                "boot order names another slot",
                vec![("boot", Some("order=virtio0;net0"))],
                vec![(Error, codes::NO_BOOT_DISK)],
                "virtio0, which is not set; boot from scsi0: `qm set 9000 --boot order=scsi0`",
            ),
            (
                "boot order without a disk",
                vec![("boot", Some("order=net0"))],
                vec![(Error, codes::NO_BOOT_DISK)],
                "names no disk",
            ),
            (
                "no disk at all",
                vec![("boot", None), ("scsi0", None), ("ide2", None)],
                vec![(Error, codes::NO_BOOT_DISK), (Error, codes::NO_CLOUDINIT_DRIVE)],
                "`qm set 9000 --scsi0 <storage>:0,import-from=<image>` and `qm set 9000 --boot order=scsi0`",
            ),
            (
                "no NIC",
                vec![("net0", None)],
                vec![(Error, codes::NO_NETWORK)],
                "`qm set 9000 --net0 virtio,bridge=vmbr1`",
            ),
            (
                "no cloud-init drive, one can be added",
                vec![("ide2", None)],
                vec![(Warning, codes::CLOUDINIT_DRIVE_ADDED_ON_CLONE)],
                "`qm set 9000 --ide2 local-lvm:cloudinit`",
            ),
            (
                "no cloud-init drive on q35",
                vec![("ide2", None), ("machine", Some("q35"))],
                vec![(Warning, codes::CLOUDINIT_DRIVE_ADDED_ON_CLONE)],
                "`qm set 9000 --scsi1 local-lvm:cloudinit`",
            ),
            (
                "no cloud-init drive, no slot for one",
                [vec![("ide2", None)], full.clone()].concat(),
                vec![(Error, codes::NO_CLOUDINIT_DRIVE)],
                "no free IDE, SCSI or SATA slot",
            ),
            (
                "agent key missing",
                vec![("agent", None)],
                vec![(Warning, codes::AGENT_DISABLED)],
                "`qm set 9000 --agent 1`",
            ),
            (
                "agent off, options kept",
                vec![("agent", Some("0,fstrim_cloned_disks=1"))],
                vec![(Warning, codes::AGENT_DISABLED)],
                "`qm set 9000 --agent 1,fstrim_cloned_disks=1`",
            ),
        ];
        for (case, changes, expected, fix) in table {
            let report = check(9000, None, &sim_template_with(&changes));
            assert_eq!(codes_of(&report), expected, "{case}: {report:?}");
            assert_eq!(report.accepted, !expected.iter().any(|(l, _)| *l == Error), "{case}");
            let text: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
            assert!(text.iter().any(|m| m.contains(fix)), "{case}: no `{fix}` in {text:?}");
        }
    }

    #[test]
    fn without_a_boot_order_any_disk_boots() {
        let report = check(9000, None, &sim_template_with(&[("boot", None)]));
        assert!(report.accepted && report.findings.is_empty(), "{report:?}");
        let legacy = check(9000, None, &sim_template_with(&[("boot", Some("cdn"))]));
        assert!(legacy.accepted, "{legacy:?}");
    }

    #[test]
    fn a_missing_vmid_or_a_container_is_not_found() {
        let vm = |vmid: u64, kind: &str, node: &str| ClusterVm {
            vmid,
            kind: kind.into(),
            node: node.into(),
            name: None,
            status: String::new(),
            template: false,
            tags: None,
            lock: None,
        };
        let vms = [vm(9000, "qemu", "pve2"), vm(9001, "lxc", "pve1")];
        assert_eq!(locate(9000, &vms), Ok("pve2".to_string()));
        let container = locate(9001, &vms).err().unwrap_or_else(|| TemplateReport::new(0, None, vec![]));
        assert_eq!(codes_of(&container), [(FindingLevel::Error, codes::NOT_FOUND)]);
        assert!(container.findings[0].message.contains("container"), "{container:?}");
        let missing = locate(9002, &vms).err().unwrap_or_else(|| TemplateReport::new(0, None, vec![]));
        assert!(!missing.accepted && missing.node.is_none());
        assert!(missing.findings[0].message.contains("scripts/create_template.sh --vmid 9002"), "{missing:?}");
        let unread = unreadable(9000, Some("pve1"), "Proxmox is unreachable");
        assert_eq!(codes_of(&unread), [(FindingLevel::Error, codes::UNREADABLE)]);
    }
}
