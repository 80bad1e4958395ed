//! The gateway's health probe: what `agentlab status` says of Proxmox (reachability and
//! the token, version, nodes, the firewall switches, the token's privileges against the
//! role AgentLab needs, every node's storages with their free space).

use crate::model::{pve_role, time_format};
use crate::protocol::{FirewallStatus, PrivilegeCheck, ProxmoxStatus, StorageStatus};
use agentlab_proxmox::{ErrorClass, Pve};

/// `/cluster/firewall/options` `enable` (an integer; unset means off, pve-firewall
/// `Firewall.pm` 1283-1290 `default => 0`).
pub fn datacenter_enabled(options: &serde_json::Map<String, serde_json::Value>) -> bool {
    options.get("enable").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))) == Some(1)
}

/// Version (reachability and token), nodes, datacenter firewall, security groups,
/// privileges, storages. A part that cannot be read is said in `error`; the rest stands.
pub(super) async fn probe(pve: &dyn Pve, mut status: ProxmoxStatus) -> ProxmoxStatus {
    status.checked_at = Some(time_format::now());
    match pve.version().await {
        Err(error) => {
            status.reachable = error.class() == ErrorClass::Auth;
            status.token_ok = (error.class() == ErrorClass::Auth).then_some(false);
            status.error = Some(error.to_string());
            status.error_class = Some(error.class().as_str().to_string());
            status.version = None;
            return status;
        }
        Ok(version) => {
            status.reachable = true;
            status.token_ok = Some(true);
            status.version = Some(format!("{} (release {})", version.version, version.release));
            status.error = None;
            status.error_class = None;
        }
    }
    match pve.nodes().await {
        Ok(nodes) => status.nodes = nodes.into_iter().map(|n| n.node).collect(),
        Err(e) => status.error = Some(format!("cannot list nodes: {e}")),
    }
    let datacenter = pve.cluster_firewall_options().await.map(|o| datacenter_enabled(&o));
    let groups = pve.security_groups().await.map(|g| g.into_iter().map(|g| g.group).collect::<Vec<_>>());
    match (datacenter, groups) {
        (Ok(enabled), Ok(groups)) => {
            status.firewall = Some(FirewallStatus {
                datacenter_enabled: enabled,
                groups: crate::model::NetworkMode::ALL
                    .iter()
                    .map(|m| m.security_group())
                    .map(|g| (g.to_string(), groups.iter().any(|x| x == g)))
                    .collect(),
            })
        }
        (Err(e), _) | (_, Err(e)) => status.error = Some(format!("cannot read the firewall configuration: {e}")),
    }
    match pve.permissions().await {
        Ok(tree) => status.privileges = Some(privilege_check(&tree)),
        Err(e) => status.error = Some(format!("cannot read the token's permissions: {e}")),
    }
    let mut storages = Vec::new();
    for node in &status.nodes {
        match pve.storages(node).await {
            Ok(list) => storages.extend(list.into_iter().map(|s| StorageStatus {
                node: node.clone(),
                storage: s.storage,
                kind: s.kind,
                content: s.content,
                active: s.active,
                shared: s.shared,
                avail_bytes: s.avail,
                total_bytes: s.total,
            })),
            Err(e) => status.error = Some(format!("cannot list the storages of node {node}: {e}")),
        }
    }
    status.storages = storages;
    status
}

/// The union of the token's privileges over every path, against the role.
fn privilege_check(
    tree: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>,
) -> PrivilegeCheck {
    let anywhere = |p: &str| tree.values().any(|privs| privs.contains_key(p));
    let on_root = |p: &str| tree.get("/").is_some_and(|privs| privs.contains_key(p));
    PrivilegeCheck {
        missing: pve_role::missing(anywhere).into_iter().map(str::to_string).collect(),
        all_on_root: pve_role::missing(on_root).is_empty(),
        role_command: pve_role::role_add_command(),
    }
}
