//! The provisioning step that puts a sandbox behind both network layers.
//!
//! Proxmox (through the gateway): the allowlist IP set exists and holds the profile's
//! entries before any rule names it (a rule naming a missing set is refused, review F3);
//! the mode's security group holds exactly the wanted rules, repaired when it differs (a
//! half-built group is not "exists"); node IN rules admit the guest listener, DHCP and DNS
//! on the agent bridge, so enabling the datacenter firewall does not cut guests off (F2);
//! the VM's firewall options are explicit; the group is attached to the VM.
//! Host: the sandbox's MAC is recorded and bound in the host ruleset before first boot.

use super::SandboxContext;
use super::error::SandboxError;
use crate::store::{SandboxPatch, SandboxRecord};
use agentlab_netfilter::allowlist::AllowEntry;
use agentlab_netfilter::security_groups::{ALLOWLIST_IPSET, GroupRule};
use agentlab_netfilter::{Mode, SecurityGroup, dns};
use agentlab_proxmox::types::FirewallRule;
use agentlab_proxmox::{Pve, PveError};
use std::time::Duration;

/// `net0`'s MAC: the value of its first `model=MAC` item.
pub fn net0_mac(net0: &str) -> Option<String> {
    let first = net0.split(',').next()?;
    let (_, mac) = first.split_once('=')?;
    mac.parse::<agentlab_netfilter::host::MacAddr>().ok().map(|m| m.to_string())
}

pub(super) async fn firewall(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let node = rec.node.clone().ok_or(SandboxError::NoNode)?;
    // The host ruleset is this host's alone: on another node only Proxmox's firewall acts.
    if node != ctx.settings.host_node {
        let options = ctx
            .gateway
            .cluster_firewall_options()
            .await
            .map_err(SandboxError::pve("reading the datacenter firewall options"))?;
        if !crate::pve::datacenter_enabled(&options) {
            return Err(SandboxError::NotAllowed(format!(
                "sandbox {} is placed on node `{node}`, where AgentLab's host ruleset does not run, and the Proxmox datacenter firewall is off, so nothing would isolate it; {}, or pin sandboxes to `{}` (proxmox_node)",
                rec.vmid,
                crate::net::layers::ENABLE_DATACENTER,
                ctx.settings.host_node
            )));
        }
    }
    bind_on_host(ctx, rec, &node).await?;
    let mode = crate::net::mode_of(rec.network_mode);
    if mode == Mode::Allowlist {
        let nets = allowlist_addresses(ctx, rec).await;
        ctx.gateway
            .run(crate::pve::OpSpec::change("security_group", 0), move |pve, _| {
                let nets = nets.clone();
                Box::pin(async move { ensure_ipset(pve.as_ref(), &nets).await })
            })
            .await
            .map_err(SandboxError::pve("filling the allowlist IP set"))?;
    }
    let group = agentlab_netfilter::group_for(mode, ctx.settings.gateway_ip, &ctx.settings.listener_ports);
    let name = group.name;
    ctx.gateway
        .run(crate::pve::OpSpec::change("security_group", 0), move |pve, _| {
            let group = group.clone();
            Box::pin(async move { ensure_group(pve.as_ref(), &group).await })
        })
        .await
        .map_err(SandboxError::pve("creating the network mode's security group"))?;
    let wanted_in = node_rules(ctx);
    let bridge = ctx.settings.agent_bridge.clone();
    ctx.gateway
        .run(crate::pve::OpSpec::change("node_firewall", 0), {
            let node = node.clone();
            move |pve, _| {
                let (node, wanted, bridge) = (node.clone(), wanted_in.clone(), bridge.clone());
                Box::pin(async move { ensure_node_rules(pve.as_ref(), &node, &bridge, &wanted).await })
            }
        })
        .await
        .map_err(SandboxError::pve("admitting the guest listener, DHCP and DNS in the node's firewall"))?;
    let vmid = rec.vmid;
    let options = vm_options(mode);
    ctx.gateway
        .run(crate::pve::OpSpec::change("vm_firewall", vmid), move |pve, _| {
            let (node, options) = (node.clone(), options.clone());
            Box::pin(async move {
                pve.set_vm_firewall(&node, vmid, &options).await?;
                let rules = pve.vm_firewall_rules(&node, vmid).await?;
                if !rules.iter().any(|r| r.kind == "group" && r.action == name) {
                    let rule = [("type", "group".to_string()), ("action", name.to_string()), ("enable", "1".into())];
                    pve.add_vm_firewall_rule(&node, vmid, &rule).await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(SandboxError::pve("attaching the security group to the VM"))
}

/// The VM firewall's options, explicit so nothing rests on Proxmox's defaults: `dhcp` on
/// (the guest gets its address from the agent bridge), nothing comes in, and out is the
/// mode's (the group decides; its last rule is the mode's verdict too).
pub fn vm_options(mode: Mode) -> Vec<(&'static str, String)> {
    let out = if mode == Mode::Nat { "ACCEPT" } else { "DROP" };
    vec![("enable", "1".into()), ("dhcp", "1".into()), ("policy_in", "DROP".into()), ("policy_out", out.into())]
}

/// Records `net0`'s MAC and (when the daemon manages the host ruleset) reloads it with the
/// sandbox bound, before the VM first boots.
async fn bind_on_host(ctx: &SandboxContext, rec: &SandboxRecord, node: &str) -> Result<(), SandboxError> {
    let config = ctx.gateway.vm_config(node, rec.vmid).await.map_err(SandboxError::pve("reading the VM's config"))?;
    let mac = config.get("net0").and_then(net0_mac);
    if mac.is_some() && mac != rec.mac {
        ctx.store.patch_sandbox(rec.vmid, &SandboxPatch { mac: Some(mac), ..Default::default() }, None)?;
    }
    sync_host_table(ctx).await
}

/// Reloads the host ruleset for the sandboxes on record, when the daemon manages it.
pub async fn sync_host_table(ctx: &SandboxContext) -> Result<(), SandboxError> {
    let Some(table) = ctx.host_table.clone() else { return Ok(()) };
    match tokio::task::spawn_blocking(move || table.apply()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SandboxError::HostTable(e.to_string())),
        Err(e) => Err(SandboxError::HostTable(e.to_string())),
    }
}

/// The profile's allowlist as IP set members: networks as they are, domains resolved now.
async fn allowlist_addresses(ctx: &SandboxContext, rec: &SandboxRecord) -> Vec<String> {
    let entries = crate::net::allow_entries(&ctx.profiles, &rec.profile);
    let server = ctx.settings.allowlist_dns_server;
    let mut out = Vec::new();
    for entry in entries {
        match entry {
            AllowEntry::Net(net) => out.push(crate::net::ipset_member(net)),
            AllowEntry::Domain(name) => {
                let lookup = name.clone();
                let answers =
                    tokio::task::spawn_blocking(move || dns::resolve_a(server, &lookup, Duration::from_secs(3))).await;
                match answers {
                    // The same rule as the host's allowlists: a domain opens no private place.
                    Ok(Ok(answers)) => out.extend(
                        answers
                            .iter()
                            .map(|a| a.addr)
                            .filter(agentlab_netfilter::allowlist::is_public)
                            .map(|a| a.to_string()),
                    ),
                    Ok(Err(e)) => tracing::warn!(vmid = rec.vmid, error = %e, "allowlist domain not resolved"),
                    Err(e) => tracing::warn!(vmid = rec.vmid, error = %e, "allowlist lookup task failed"),
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The cluster IP set exists and holds `members` (members other profiles added stay: the
/// set is shared by every allowlist sandbox).
async fn ensure_ipset(pve: &dyn Pve, members: &[String]) -> Result<(), PveError> {
    if !pve.ipsets().await?.iter().any(|s| s.name == ALLOWLIST_IPSET) {
        match pve.create_ipset(ALLOWLIST_IPSET, Some("AgentLab allowlist destinations")).await {
            Err(e) if e.is_already_there() => {}
            other => other?,
        }
    }
    let present = pve.ipset_entries(ALLOWLIST_IPSET).await?;
    let stored = |m: &String| agentlab_proxmox::types::ipset_cidr(m);
    for member in members.iter().filter(|m| !present.iter().any(|p| p.cidr == stored(m))) {
        match pve.add_ipset_entry(ALLOWLIST_IPSET, member, None).await {
            Err(e) if e.is_already_there() => {}
            other => other?,
        }
    }
    Ok(())
}

/// Makes the cluster IP set hold exactly `members` (the host-table keeper calls this when an
/// allowlist domain moved, so the Proxmox layer follows the host layer).
pub async fn sync_allowlist_ipset(gateway: &crate::pve::Gateway, members: Vec<String>) -> Result<(), PveError> {
    gateway
        .run(crate::pve::OpSpec::change("security_group", 0), move |pve, _| {
            let members = members.clone();
            Box::pin(async move {
                ensure_ipset(pve.as_ref(), &members).await?;
                let stored: Vec<String> = members.iter().map(|m| agentlab_proxmox::types::ipset_cidr(m)).collect();
                for extra in pve.ipset_entries(ALLOWLIST_IPSET).await?.iter().filter(|e| !stored.contains(&e.cidr)) {
                    pve.delete_ipset_entry(ALLOWLIST_IPSET, &extra.cidr).await?;
                }
                Ok(())
            })
        })
        .await
}

/// Whether a rule Proxmox holds is the wanted one (the fields we set; Proxmox adds others).
fn same_rule(have: &FirewallRule, want: &GroupRule) -> bool {
    have.kind == "out"
        && have.action == want.action.as_str()
        && have.enable
        && have.proto.as_deref() == want.proto
        && have.dest == want.dest
        && have.dport == want.dport
        && have.comment.as_deref() == Some(want.comment)
}

/// The group exists with exactly its rules, in order; otherwise its rules are replaced.
pub async fn ensure_group(pve: &dyn Pve, group: &SecurityGroup) -> Result<(), PveError> {
    if !pve.security_groups().await?.iter().any(|g| g.group == group.name) {
        match pve.create_security_group(group.name, group.comment).await {
            // Another sandbox created it meanwhile.
            Err(e) if e.is_already_there() => {}
            other => other?,
        }
    }
    let mut have = pve.group_rules(group.name).await?;
    have.sort_by_key(|r| r.pos);
    let wanted = &group.rules;
    // Rules are added last-first at position 0, so an interrupted build (a lock timeout, a
    // crash) leaves the wanted list's tail: only the rest is added, and each retry makes
    // progress. Anything else is not ours to keep: emptied, then rebuilt.
    let tail = have.len() <= wanted.len()
        && have.iter().zip(&wanted[wanted.len() - have.len()..]).all(|(h, w)| same_rule(h, w));
    let present = if tail {
        have.len()
    } else {
        tracing::warn!(
            group = group.name,
            found = have.len(),
            wanted = wanted.len(),
            "security group differs; rebuilding it"
        );
        // Highest position first, so the positions still to delete do not move.
        for rule in have.iter().rev() {
            pve.delete_group_rule(group.name, rule.pos).await?;
        }
        0
    };
    for request in group.rule_requests().into_iter().skip(present) {
        let params: Vec<(&str, String)> = request.iter().map(|(k, v)| (*k, v.clone())).collect();
        pve.add_group_rule(group.name, &params).await?;
    }
    Ok(())
}

/// A node IN rule the guests need on the agent bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRule {
    pub proto: &'static str,
    pub dport: String,
    pub comment: String,
}

pub fn node_rules(ctx: &SandboxContext) -> Vec<NodeRule> {
    let ports = ctx.settings.listener_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    vec![
        NodeRule { proto: "tcp", dport: ports, comment: "AgentLab: guest listener".into() },
        NodeRule { proto: "udp", dport: "53,67".into(), comment: "AgentLab: DNS and DHCP for guests".into() },
        NodeRule { proto: "tcp", dport: "53".into(), comment: "AgentLab: DNS over TCP for guests".into() },
    ]
}

/// Adds the node IN rules that are missing (matched by comment; a rule with our comment
/// but other fields is replaced).
pub async fn ensure_node_rules(pve: &dyn Pve, node: &str, bridge: &str, wanted: &[NodeRule]) -> Result<(), PveError> {
    let have = pve.node_firewall_rules(node).await?;
    let good = |r: &FirewallRule, want: &NodeRule| {
        r.kind == "in"
            && r.action == "ACCEPT"
            && r.enable
            && r.iface.as_deref() == Some(bridge)
            && r.proto.as_deref() == Some(want.proto)
            && r.dport.as_deref() == Some(want.dport.as_str())
    };
    let missing: Vec<&NodeRule> = wanted
        .iter()
        .filter(|w| !have.iter().any(|r| r.comment.as_deref() == Some(&w.comment) && good(r, w)))
        .collect();
    // Our comment on a rule that is not the wanted one: stale (a changed port), removed
    // highest position first so the others keep theirs.
    let mut stale: Vec<u64> = have
        .iter()
        .filter(|r| missing.iter().any(|w| r.comment.as_deref() == Some(&w.comment)))
        .map(|r| r.pos)
        .collect();
    stale.sort_unstable_by(|a, b| b.cmp(a));
    for pos in stale {
        pve.delete_node_firewall_rule(node, pos).await?;
    }
    for want in missing {
        let params = [
            ("type", "in".to_string()),
            ("action", "ACCEPT".to_string()),
            ("enable", "1".to_string()),
            ("iface", bridge.to_string()),
            ("proto", want.proto.to_string()),
            ("dport", want.dport.clone()),
            ("comment", want.comment.clone()),
        ];
        pve.add_node_firewall_rule(node, &params).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mac_is_the_model_value_of_net0() {
        assert_eq!(
            super::net0_mac("virtio=BC:24:11:00:03:E9,bridge=vmbr1,firewall=1").as_deref(),
            Some("bc:24:11:00:03:e9")
        );
        assert_eq!(super::net0_mac("virtio,bridge=vmbr1"), None);
        assert_eq!(super::net0_mac("virtio=junk,bridge=vmbr1"), None);
    }
}
