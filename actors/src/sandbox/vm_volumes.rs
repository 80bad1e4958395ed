//! Reading a VM config's volumes: which keys are drives, and which storages they are on.

use agentlab_proxmox::types::VmConfig;

/// `ide0`, `scsi3`, `virtio0`, `sata1`, `efidisk0`, `tpmstate0`: a key that holds a volume.
pub fn is_drive_key(key: &str) -> bool {
    ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"]
        .iter()
        .any(|bus| key.strip_prefix(bus).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
}

/// The storages the config's volumes are on, each once, sorted; with `disks_only`, CD-ROMs
/// (the cloud-init drive among them) do not count.
pub fn volume_storages(config: &VmConfig, disks_only: bool) -> Vec<String> {
    let mut storages: Vec<String> = config
        .values
        .iter()
        .filter(|(k, v)| is_drive_key(k) && !(disks_only && v.contains("media=cdrom")))
        .filter_map(|(_, v)| v.split(',').next()?.split_once(':').map(|(s, _)| s.to_string()))
        .collect();
    storages.sort();
    storages.dedup();
    storages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_and_their_storages() {
        assert!(is_drive_key("scsi0") && is_drive_key("efidisk0") && !is_drive_key("scsihw") && !is_drive_key("ide"));
        let values = [
            ("scsi0", "ceph:vm-1-disk-0,size=8G"),
            ("ide2", "local-lvm:vm-1-cloudinit,media=cdrom"),
            ("virtio1", "ceph:vm-1-disk-1"),
            ("net0", "virtio=AA,bridge=vmbr1"),
        ];
        let config =
            VmConfig { values: values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), digest: None };
        assert_eq!(volume_storages(&config, false), ["ceph", "local-lvm"]);
        assert_eq!(volume_storages(&config, true), ["ceph"]);
    }
}
