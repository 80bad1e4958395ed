//! What a clone needs before its guest can bootstrap, added when the template lacks it:
//!
//! - a cloud-init drive: Proxmox builds the ISO (with our `cicustom` snippet) only for a
//!   drive whose volume is `vm-<vmid>-cloudinit` (qemu-server `src/PVE/QemuServer/Cloudinit.pm`
//!   generate_cloudinit_config, 701-724); without one the snippet is silently unused and the
//!   runner never starts. PVE's own template guide adds it by hand (`qm set 9000 --ide2
//!   local-lvm:cloudinit`).
//! - the guest agent: without an `agent` key every agent call fails with "No QEMU guest agent
//!   configured" (qemu-server `src/PVE/QemuServer/Agent.pm` assert_agent_available, 109-113),
//!   and the sandbox's address comes from the agent.
//!
//! The drive goes on a bus that suits the template: IDE on i440fx (what the guide does); on
//! q35 or UEFI templates an IDE CD-ROM may not be seen when cloud-init's generator runs
//! (canonical/cloud-init#3897), so SCSI, then SATA.

use super::vm_volumes::is_drive_key;
use agentlab_proxmox::types::VmConfig;

/// Slots per bus, as qemu-server's drive schema numbers them (`ide0-3`, `sata0-5`, `scsi0-30`);
/// IDE from `ide2`, the slot PVE's guide and most templates use for the CD-ROM.
const IDE: [u32; 4] = [2, 3, 1, 0];
const SATA: std::ops::RangeInclusive<u32> = 0..=5;
const SCSI: std::ops::RangeInclusive<u32> = 0..=30;

/// Config keys to set so the clone gets a cloud-init ISO and an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDevices {
    pub set: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestDeviceError {
    #[error(
        "template VM {template} has no cloud-init drive and no free IDE, SCSI or SATA slot to add one; free a slot on the template (e.g. `qm set {template} --delete ide2`) or add the drive yourself (`qm set {template} --ide2 <storage>:cloudinit`)"
    )]
    NoFreeSlot { template: u32 },
    #[error(
        "template VM {template} has no cloud-init drive and AgentLab cannot tell which storage its disks are on; add one: `qm set {template} --ide2 <storage>:cloudinit`"
    )]
    NoDiskStorage { template: u32 },
}

/// What to add to `config` (a fresh clone of `template` at `vmid`).
pub fn needed(config: &VmConfig, vmid: u32, template: u32) -> Result<GuestDevices, GuestDeviceError> {
    let mut set = Vec::new();
    if !agent_enabled(config.get("agent")) {
        set.push(("agent".to_string(), enable_agent(config.get("agent"))));
    }
    if !has_cloudinit_drive(config, vmid) {
        let storage = disk_storage(config).ok_or(GuestDeviceError::NoDiskStorage { template })?;
        let slot = free_slot(config).ok_or(GuestDeviceError::NoFreeSlot { template })?;
        set.push((slot, format!("{storage}:cloudinit")));
    }
    Ok(GuestDevices { set })
}

fn has_cloudinit_drive(config: &VmConfig, vmid: u32) -> bool {
    let name = format!("vm-{vmid}-cloudinit");
    config.values.iter().any(|(k, v)| is_drive_key(k) && v.split(',').next().is_some_and(|file| file.contains(&name)))
}

/// `agent` is a property string whose first, default key is `enabled` (`1`, `enabled=1`).
pub(crate) fn agent_enabled(value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    value.split(',').any(|part| {
        let flag = part.strip_prefix("enabled=").unwrap_or(if part.contains('=') { "" } else { part });
        matches!(flag, "1" | "on" | "yes" | "true")
    })
}

/// Keeps the agent's other options (`fstrim_cloned_disks`, `type`, …), enabled.
pub(crate) fn enable_agent(value: Option<&str>) -> String {
    let others: Vec<&str> = value
        .unwrap_or_default()
        .split(',')
        .filter(|part| !part.is_empty() && part.contains('=') && !part.starts_with("enabled="))
        .collect();
    std::iter::once("1").chain(others).collect::<Vec<_>>().join(",")
}

/// The storage of the boot disk (or the first disk): where the clone's volumes live.
fn disk_storage(config: &VmConfig) -> Option<String> {
    let boot = config
        .get("boot")
        .and_then(|b| b.strip_prefix("order="))
        .and_then(|order| order.split(';').find(|k| config.get(k).is_some_and(|v| !v.contains("media=cdrom"))))
        .map(str::to_string);
    let first = || {
        config.values.iter().find(|(k, v)| is_drive_key(k) && !v.contains("media=cdrom")).map(|(k, _)| k.to_string())
    };
    let key = boot.or_else(first)?;
    let file = config.get(&key)?.split(',').next()?;
    let (storage, _) = file.split_once(':')?;
    Some(storage.to_string())
}

/// The first free slot on the buses that suit the machine type.
fn free_slot(config: &VmConfig) -> Option<String> {
    let q35_or_uefi =
        config.get("machine").is_some_and(|m| m.contains("q35")) || config.get("bios").is_some_and(|b| b == "ovmf");
    let ide = IDE.map(|n| format!("ide{n}")).to_vec();
    let scsi = SCSI.map(|n| format!("scsi{n}")).collect::<Vec<_>>();
    let sata = SATA.map(|n| format!("sata{n}")).collect::<Vec<_>>();
    let order: Vec<&Vec<String>> = if q35_or_uefi { vec![&scsi, &sata] } else { vec![&ide, &scsi, &sata] };
    order.into_iter().flatten().find(|key| config.get(key).is_none()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> VmConfig {
        VmConfig { values: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), digest: None }
    }

    #[test]
    fn a_template_with_drive_and_agent_needs_nothing() {
        let c = config(&[
            ("agent", "1"),
            ("scsi0", "local-lvm:vm-1001-disk-0,size=8G"),
            ("ide2", "local-lvm:vm-1001-cloudinit,media=cdrom"),
        ]);
        assert_eq!(needed(&c, 1001, 9000), Ok(GuestDevices { set: vec![] }));
    }

    #[test]
    fn the_drive_goes_on_the_boot_disks_storage_and_a_bus_that_suits_the_machine() {
        let i440fx = config(&[("boot", "order=scsi0"), ("scsi0", "local-zfs:base-9000-disk-0/vm-1001-disk-0")]);
        let set = needed(&i440fx, 1001, 9000).map(|d| d.set);
        assert_eq!(set, Ok(vec![("agent".into(), "1".into()), ("ide2".into(), "local-zfs:cloudinit".into())]),);
        let q35 = config(&[
            ("agent", "enabled=1"),
            ("machine", "pc-q35-9.0"),
            ("scsi0", "local-lvm:vm-1001-disk-0"),
            ("ide2", "none,media=cdrom"),
        ]);
        assert_eq!(needed(&q35, 1001, 9000).map(|d| d.set), Ok(vec![("scsi1".into(), "local-lvm:cloudinit".into())]));
        let uefi = config(&[("agent", "1"), ("bios", "ovmf"), ("virtio0", "ceph:vm-1001-disk-0")]);
        assert_eq!(needed(&uefi, 1001, 9000).map(|d| d.set), Ok(vec![("scsi0".into(), "ceph:cloudinit".into())]));
    }

    #[test]
    fn a_disabled_agent_is_enabled_with_its_options_kept() {
        assert!(!agent_enabled(None) && !agent_enabled(Some("0")) && !agent_enabled(Some("enabled=0,type=virtio")));
        assert!(agent_enabled(Some("1")) && agent_enabled(Some("enabled=1,fstrim_cloned_disks=1")));
        assert_eq!(enable_agent(Some("0,fstrim_cloned_disks=1")), "1,fstrim_cloned_disks=1");
        assert_eq!(enable_agent(Some("enabled=0")), "1");
    }

    #[test]
    fn no_free_slot_and_no_disk_are_errors_naming_the_template() {
        let mut pairs: Vec<(String, String)> = vec![("scsi0".into(), "local-lvm:vm-1001-disk-0".into())];
        for key in IDE
            .into_iter()
            .map(|n| format!("ide{n}"))
            .chain(SCSI.skip(1).map(|n| format!("scsi{n}")))
            .chain(SATA.map(|n| format!("sata{n}")))
        {
            pairs.push((key, "none,media=cdrom".into()));
        }
        let full = VmConfig { values: pairs.into_iter().collect(), digest: None };
        let err = needed(&full, 1001, 9000).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("template VM 9000") && err.contains("no free"), "{err}");
        assert_eq!(
            needed(&config(&[("agent", "1")]), 1001, 9000),
            Err(GuestDeviceError::NoDiskStorage { template: 9000 })
        );
    }
}
