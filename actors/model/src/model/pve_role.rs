//! The Proxmox privileges AgentLab's daemon needs, as one role: what `agentlab status`
//! checks the API token against, and the `pveum` line the docs give.
//!
//! Each privilege, and the endpoint that needs it (the `permissions.check` of
//! `proxmox/contract/endpoints.json`, from Proxmox 9.1's sources):
//! - `VM.Clone` (clone, on the template), `VM.Allocate` (clone target, destroy, template);
//! - `VM.Config.{Disk,CPU,Memory,Network,Options,Cloudinit,HWType}` (config of the clone,
//!   resize, its firewall options and rules), `VM.Config.CDROM` with `VM.Config.Cloudinit`
//!   (adding a cloud-init drive: qemu-server `API2/Qemu.pm` `$check_drive_perms` 2273-2289),
//!   `VM.Audit` (config, status, snapshots);
//! - `VM.PowerMgmt` (start, stop, shutdown, suspend, resume);
//! - `VM.Snapshot`, `VM.Snapshot.Rollback` (the `clean` snapshot, revert, save/restore);
//! - `VM.GuestAgent.Audit` (agent ping and network interfaces; PVE 8 had `VM.Monitor`);
//! - `Datastore.AllocateSpace` (the clone's disks), `Datastore.Audit` (storage status and
//!   definitions, read from the index: `GET /storage/{storage}` would need
//!   `Datastore.Allocate`, which may create and remove storages);
//! - `SDN.Use` (a NIC on the agent bridge);
//! - `Sys.Audit` (datacenter firewall options, security groups, IP sets, node rules);
//! - `Sys.Modify` (security groups, the allowlist IP set, the node's IN rules).

/// Privileges of the `AgentLab` role, sorted.
pub const REQUIRED_PRIVILEGES: &[&str] = &[
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "SDN.Use",
    "Sys.Audit",
    "Sys.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.GuestAgent.Audit",
    "VM.PowerMgmt",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// Privileges that stand in for a required one on older Proxmox (PVE 8's `VM.Monitor`
/// covered the guest agent calls).
pub const ALTERNATIVES: &[(&str, &str)] = &[("VM.GuestAgent.Audit", "VM.Monitor")];

/// The role name the docs use.
pub const ROLE_NAME: &str = "AgentLab";

/// `pveum role add AgentLab --privs "…"`: the command that creates the role.
pub fn role_add_command() -> String {
    format!("pveum role add {ROLE_NAME} --privs \"{}\"", REQUIRED_PRIVILEGES.join(","))
}

/// Which required privileges `granted` (the union over the token's paths) lacks.
pub fn missing(granted: impl Fn(&str) -> bool) -> Vec<&'static str> {
    REQUIRED_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| !granted(p) && !ALTERNATIVES.iter().any(|(needed, alt)| needed == p && granted(alt)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_sorted_and_alternatives_count() {
        let mut sorted = REQUIRED_PRIVILEGES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, REQUIRED_PRIVILEGES);
        let all_but = |skip: &'static str| move |p: &str| REQUIRED_PRIVILEGES.contains(&p) && p != skip;
        assert!(missing(|p| REQUIRED_PRIVILEGES.contains(&p)).is_empty());
        assert_eq!(missing(all_but("VM.Clone")), ["VM.Clone"]);
        assert_eq!(missing(all_but("VM.GuestAgent.Audit")), ["VM.GuestAgent.Audit"]);
        let pve8 = |p: &str| p == "VM.Monitor" || all_but("VM.GuestAgent.Audit")(p);
        assert!(missing(pve8).is_empty(), "PVE 8's VM.Monitor stands in for VM.GuestAgent.Audit");
        assert!(role_add_command().starts_with("pveum role add AgentLab --privs \"Datastore.AllocateSpace,"));
    }
}
