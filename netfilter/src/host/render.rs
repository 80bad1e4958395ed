//! `HostPolicy` → one nftables ruleset text, loaded by `nft -f` as one transaction.
//!
//! Three tables, all named `agentlab` so they are ours to replace whole:
//! - `inet`: the routing decisions. Input from the agent bridge admits only DHCP, DNS, ICMP
//!   echo and the guest listener on the gateway; forward from it goes through the sandbox's
//!   mode chain, chosen by its MAC (bound before first boot, so a guest is never unfiltered
//!   while its address is unknown; an unknown MAC gets nothing). Dropped attempts are
//!   counted in the `egress_drops` set (the egress record). Masquerade out of the uplink.
//! - `bridge`: no frame between two guests' ports; each guest port may only send with its
//!   own MAC (and IP, once leased).
//! - `arp`: the host does not answer ARP on Proxmox's per-VM firewall bridges, so a guest
//!   never routes through `fwbr*` (review F16); `fwbr*` is still filtered like the agent
//!   bridge, and its traffic gets its own conntrack zone, as Proxmox documents for NAT
//!   with its firewall.
//!
//! The kernel here refuses `meta ibrname`, bridge-family `ct` and `reject` (review F16), so
//! none is used; nft 1.0.6 has no `destroy`, so each table is created then deleted then
//! defined, which loads on a host with or without the table.

use super::policy::{Binding, HostPolicy};
use crate::Mode;
use std::fmt::Write;

pub const TABLE: &str = "agentlab";

/// How long a dropped attempt stays in the egress record set before the daemon must have
/// read it; the set is bounded so a guest cannot grow it without limit.
const EGRESS_TIMEOUT: &str = "1h";
const EGRESS_SIZE: u32 = 65536;
/// The bridge table's record of ARP requests from one guest for another's address.
pub const ARP_SET: &str = "guest_arp";

pub fn render(policy: &HostPolicy) -> String {
    let mut out = String::new();
    out.push_str("# AgentLab host ruleset, rendered by `agentlabd net render`. Do not edit: re-render.\n");
    inet(&mut out, policy);
    bridge(&mut out, policy);
    arp(&mut out);
    out
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn quoted(items: impl IntoIterator<Item = String>) -> String {
    list(items.into_iter().map(|i| format!("\"{i}\"")))
}

fn fresh_table(out: &mut String, family: &str) {
    let _ = writeln!(out, "\ntable {family} {TABLE}\ndelete table {family} {TABLE}\ntable {family} {TABLE} {{");
}

fn inet(out: &mut String, p: &HostPolicy) {
    let bridge = &p.agent_bridge;
    let gw = p.gateway;
    fresh_table(out, "inet");
    let _ = writeln!(out, "  set blocked_v4 {{\n    type ipv4_addr; flags interval;");
    if !p.blocked_v4.is_empty() {
        let _ = writeln!(out, "    elements = {{ {} }}", list(&p.blocked_v4));
    }
    out.push_str("  }\n");
    // DNS is forwarded to the host's resolvers: a channel out, so `off` sandboxes (and MACs
    // that are no sandbox's) do not get it.
    let _ = writeln!(out, "  set dns_ok {{\n    type ether_addr;");
    let dns_ok: Vec<String> = p.bindings.iter().filter(|b| b.mode != Mode::Off).map(|b| b.mac.to_string()).collect();
    if !dns_ok.is_empty() {
        let _ = writeln!(out, "    elements = {{ {} }}", dns_ok.join(", "));
    }
    out.push_str("  }\n");
    for b in p.bindings.iter().filter(|b| b.mode == Mode::Allowlist && !b.allow.is_empty()) {
        let _ = writeln!(
            out,
            "  set allow_{} {{\n    type ipv4_addr; flags interval;\n    elements = {{ {} }}\n  }}",
            b.vmid,
            list(&b.allow)
        );
    }
    let _ = writeln!(
        out,
        "  set egress_drops {{\n    type ether_addr . ipv4_addr . inet_proto . inet_service;\n    \
         size {EGRESS_SIZE}; flags dynamic, timeout; timeout {EGRESS_TIMEOUT}; counter;\n  }}"
    );
    let _ = writeln!(
        out,
        "\n  chain conntrack_zone {{\n    type filter hook prerouting priority raw; policy accept;\n    \
         iifname \"fwbr*\" ct zone set 1\n  }}"
    );
    let _ = writeln!(
        out,
        "\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
         iifname \"{bridge}\" jump guest_to_host\n    iifname \"fwbr*\" jump guest_to_host\n  }}"
    );
    let _ = writeln!(
        out,
        "\n  chain guest_to_host {{\n    ct state established,related accept\n    \
         udp dport 67 accept\n    meta l4proto {{ tcp, udp }} th dport 53 ether saddr != @dns_ok jump record_drop\n    \
         ip daddr {gw} udp dport 53 accept\n    ip daddr {gw} tcp dport 53 accept\n    \
         ip daddr {gw} tcp dport {{ {} }} accept\n    ip daddr {gw} icmp type echo-request accept\n    \
         icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept\n    \
         jump record_drop\n  }}",
        list(&p.listener_ports)
    );
    let ssh_in = if p.ssh_ingress.is_empty() {
        String::new()
    } else {
        let ifaces = quoted(p.ssh_ingress.iter().map(|i| i.to_string()));
        format!("    iifname {{ {ifaces} }} oifname \"{bridge}\" tcp dport 22 ct state new accept\n")
    };
    // A bridged hop inside one firewall bridge (tap ↔ fwln) is the guest's own path to the
    // agent bridge, where the real decision is taken; br_netfilter shows it to this hook.
    let _ = writeln!(
        out,
        "\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
         iifname \"fwbr*\" oifname \"fwbr*\" accept\n    \
         iifname \"{bridge}\" oifname \"{bridge}\" jump record_drop\n    \
         iifname \"{bridge}\" jump guest_out\n    iifname \"fwbr*\" jump guest_out\n    \
         oifname \"{bridge}\" ct state established,related accept\n{ssh_in}    oifname \"{bridge}\" drop\n    \
         oifname \"fwbr*\" ct state established,related accept\n    oifname \"fwbr*\" drop\n  }}"
    );
    let _ = write!(
        out,
        "\n  chain guest_out {{\n    ct state established,related accept\n    meta nfproto ipv6 drop\n    \
         ip saddr != {} jump record_drop\n",
        p.subnet
    );
    if !p.bindings.is_empty() {
        let arms = list(p.bindings.iter().map(|b| format!("{} : jump {}", b.mac, mode_chain(b))));
        let _ = writeln!(out, "    ether saddr vmap {{ {arms} }}");
    }
    out.push_str("    jump record_drop\n  }\n");
    let _ = writeln!(
        out,
        "\n  chain mode_nat {{\n    ip daddr @blocked_v4 jump record_drop\n    oifname \"{}\" accept\n    \
         jump record_drop\n  }}",
        p.uplink
    );
    let _ = writeln!(out, "\n  chain mode_off {{\n    jump record_drop\n  }}");
    for b in p.bindings.iter().filter(|b| b.mode == Mode::Allowlist) {
        let _ = write!(out, "\n  chain {} {{\n", mode_chain(b));
        if !b.allow.is_empty() {
            let _ = writeln!(out, "    ip daddr @allow_{} oifname \"{}\" accept", b.vmid, p.uplink);
        }
        out.push_str("    jump record_drop\n  }\n");
    }
    out.push_str(
        "\n  chain record_drop {\n    \
         meta l4proto { tcp, udp } update @egress_drops { ether saddr . ip daddr . meta l4proto . th dport }\n    \
         meta nfproto ipv4 meta l4proto != { tcp, udp } update @egress_drops { ether saddr . ip daddr . meta l4proto . 0 }\n    \
         drop\n  }\n",
    );
    let _ = writeln!(
        out,
        "\n  chain nat_out {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         ip saddr {} oifname \"{}\" masquerade\n  }}\n}}",
        p.subnet, p.uplink
    );
}

fn mode_chain(b: &Binding) -> String {
    match b.mode {
        Mode::Nat => "mode_nat".into(),
        Mode::Off => "mode_off".into(),
        Mode::Allowlist => format!("mode_allow_{}", b.vmid),
    }
}

fn bridge(out: &mut String, p: &HostPolicy) {
    fresh_table(out, "bridge");
    // A guest reaching for another never gets as far as an IP packet: its ARP request is
    // what is dropped between guest ports, so that is what the record counts (the gateway's
    // address excepted: every guest asks for it, and the host answers).
    let _ = writeln!(
        out,
        "  set {ARP_SET} {{\n    type ether_addr . ipv4_addr;\n    \
         size {EGRESS_SIZE}; flags dynamic, timeout; timeout {EGRESS_TIMEOUT}; counter;\n  }}\n"
    );
    // Spoofing first: nothing a guest sends with another's MAC is counted as its attempt.
    let _ = writeln!(
        out,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    jump spoofing\n    \
         iifname {{ \"tap*\", \"fwpr*\" }} oifname {{ \"tap*\", \"fwpr*\" }} ether type arp arp operation request \
         arp daddr ip != {} update @{ARP_SET} {{ ether saddr . arp daddr ip }}\n    \
         iifname {{ \"tap*\", \"fwpr*\" }} oifname {{ \"tap*\", \"fwpr*\" }} drop\n  }}",
        p.gateway
    );
    out.push_str(
        "\n  chain input {\n    type filter hook input priority filter; policy accept;\n    jump spoofing\n  }\n",
    );
    // Each bound port sends only with its MAC, and with its address once the host pinned
    // it; before that only DHCP's 0.0.0.0 (so a guest cannot claim an address by using it).
    // Any other guest port (an unbound VM, a second NIC) may not use a bound MAC.
    out.push_str("\n  chain spoofing {\n");
    for b in &p.bindings {
        let ports = quoted([b.tap(), b.firewall_port()]);
        let _ = writeln!(out, "    iifname {{ {ports} }} ether saddr != {} drop", b.mac);
        let allowed = match b.ip {
            Some(ip) => format!("{{ 0.0.0.0, {ip} }}"),
            None => "0.0.0.0".to_string(),
        };
        let _ = writeln!(out, "    iifname {{ {ports} }} ether type ip ip saddr != {allowed} drop");
        let _ = writeln!(out, "    iifname {{ {ports} }} ether type arp arp saddr ip != {allowed} drop");
    }
    if !p.bindings.is_empty() {
        let ports = quoted(p.bindings.iter().flat_map(|b| [b.tap(), b.firewall_port()]));
        let macs = list(p.bindings.iter().map(|b| b.mac));
        let _ = writeln!(
            out,
            "    iifname {{ \"tap*\", \"fwpr*\" }} iifname != {{ {ports} }} ether saddr {{ {macs} }} drop"
        );
    }
    out.push_str("  }\n}\n");
}

fn arp(out: &mut String) {
    fresh_table(out, "arp");
    out.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n    iifname \"fwbr*\" drop\n  }\n}\n");
}

#[cfg(test)]
mod tests;
