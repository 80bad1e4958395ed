//! The Proxmox side of network isolation against `pve-sim`, which refuses what Proxmox
//! refuses (a rule naming a missing IP set: pve-firewall `Firewall.pm` verify_rule): after a
//! sandbox is made in each mode, the groups, their rules, the allowlist IP set, the VM's
//! firewall options and the node's IN rules are what the mode needs; a damaged group is
//! repaired on the next sandbox.

mod support;

use agentlab_actors::sandbox::Settled;
use agentlab_netfilter::{Mode, group_for};
use std::net::Ipv4Addr;
use support::{Harness, Options};

const ALLOWLIST_PROFILE: &str = "name: allow-test
template_vmid: 9000
network:
  mode: allowlist
  allowlist: [140.82.112.0/20, 203.0.113.7]
";

/// A rule as compared here: action, proto, dest, dport.
type RuleShape = (String, Option<String>, Option<String>, Option<String>);

fn wanted_rules(mode: Mode) -> Vec<RuleShape> {
    group_for(mode, Ipv4Addr::new(10, 77, 0, 1).into(), &[8844, 8846])
        .rules
        .iter()
        .map(|r| (r.action.as_str().to_string(), r.proto.map(str::to_string), r.dest.clone(), r.dport.clone()))
        .collect()
}

fn group_rules(h: &Harness, group: &str) -> Vec<RuleShape> {
    let world = h.sim.world();
    let g = world.groups.get(group).unwrap_or_else(|| panic!("group {group} exists"));
    g.rules.iter().map(|r| (r.action.clone(), r.proto.clone(), r.dest.clone(), r.dport.clone())).collect()
}

#[tokio::test(start_paused = true)]
async fn each_mode_gets_its_group_ip_set_vm_options_and_node_rules() {
    let h = Harness::with(Options { extra_profiles: ALLOWLIST_PROFILE, ..Options::default() }).await;
    for (profile, mode, policy_out) in [
        ("yolo-ephemeral", Mode::Nat, "ACCEPT"),
        ("secure", Mode::Off, "DROP"),
        ("allow-test", Mode::Allowlist, "DROP"),
    ] {
        let vmid = h.create_sandbox(profile, None, false).await;
        let settled = h.settled(vmid).await;
        assert!(matches!(settled, Settled::Ready(_)), "{profile}: {settled:?}");
        assert_eq!(group_rules(&h, mode.group_name()), wanted_rules(mode), "{profile}: group rules in order");
        let mac = h.sandbox(vmid).mac.unwrap_or_else(|| panic!("{profile}: the MAC is recorded"));
        {
            let world = h.sim.world();
            let vm = &world.vms[&vmid];
            let options = &vm.firewall_options;
            for (key, value) in [("enable", "1"), ("dhcp", "1"), ("policy_in", "DROP"), ("policy_out", policy_out)] {
                assert_eq!(
                    options.get(key).map(|v| v.to_string().trim_matches('"').to_string()).as_deref(),
                    Some(value),
                    "{profile}: {key}"
                );
            }
            assert!(
                vm.firewall_rules.iter().any(|r| r.kind == "group" && r.action == mode.group_name() && r.enable == 1)
            );
            assert_eq!(
                vm.config.get("nameserver").map(String::as_str),
                Some("10.77.0.1"),
                "{profile}: DNS is the gateway (F8)"
            );
            assert!(vm.config.get("net0").is_some_and(|n| n.contains("firewall=1")));
            // pve-sim gives a clone BC:24:11 and its VMID (handlers/clone.rs); configure keeps it.
            let cloned = format!("bc:24:11:{:02x}:{:02x}:{:02x}", (vmid >> 16) & 0xff, (vmid >> 8) & 0xff, vmid & 0xff);
            assert_eq!(mac, cloned, "{profile}: the recorded MAC is the clone's");
            assert!(vm.config["net0"].to_ascii_lowercase().contains(&cloned), "{profile}: configure kept it");
        }
    }
    {
        let world = h.sim.world();
        let set = world.ipsets.get("agent_allow").expect("the allowlist IP set exists");
        let members: Vec<&str> = set.members.iter().map(|m| m.cidr.as_str()).collect();
        assert_eq!(members, ["140.82.112.0/20", "203.0.113.7"]);
        let host = &world.host_firewall["pve1"];
        let node_rules: Vec<(String, Option<String>)> = host
            .rules
            .iter()
            .filter(|r| r.kind == "in" && r.action == "ACCEPT" && r.enable == 1 && r.iface.as_deref() == Some("vmbr1"))
            .map(|r| (r.proto.clone().unwrap_or_default(), r.dport.clone()))
            .collect();
        for wanted in [("tcp", "8844,8846"), ("udp", "53,67"), ("tcp", "53")] {
            assert!(
                node_rules.iter().any(|(p, d)| p == wanted.0 && d.as_deref() == Some(wanted.1)),
                "node IN rule {wanted:?} on vmbr1 in {node_rules:?}"
            );
        }
        assert_eq!(node_rules.len(), 3, "three sandboxes added the node rules once");
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_damaged_group_is_repaired_and_a_missing_ip_set_is_created_first() {
    let h = Harness::with(Options { extra_profiles: ALLOWLIST_PROFILE, ..Options::default() }).await;
    let first = h.create_sandbox("yolo-ephemeral", None, false).await;
    assert!(matches!(h.settled(first).await, Settled::Ready(_)));
    {
        // An operator (or a half-finished earlier run) leaves the group with its last rule only.
        let mut world = h.sim.world();
        let group = world.groups.get_mut("agent_nat_default").expect("group");
        let kept = group.rules.pop().expect("a rule");
        group.rules = vec![kept];
    }
    let second = h.create_sandbox("yolo-ephemeral", None, false).await;
    assert!(matches!(h.settled(second).await, Settled::Ready(_)));
    assert_eq!(group_rules(&h, "agent_nat_default"), wanted_rules(Mode::Nat), "repaired, not taken as complete");
    {
        // Drift of another kind: a rule edited to reach more (here the listener rule opened
        // to every port), and a foreign rule added on top.
        let mut world = h.sim.world();
        let group = world.groups.get_mut("agent_nat_default").expect("group");
        group.rules[0].dport = None;
        group.rules[0].proto = None;
        let mut foreign = group.rules[0].clone();
        foreign.comment = Some("added by hand".into());
        group.rules.insert(0, foreign);
    }
    let third = h.create_sandbox("yolo-ephemeral", None, false).await;
    assert!(matches!(h.settled(third).await, Settled::Ready(_)));
    assert_eq!(group_rules(&h, "agent_nat_default"), wanted_rules(Mode::Nat), "rebuilt to the wanted rules");

    // A fresh cluster: the allowlist group names +agent_allow, which Proxmox refuses unless
    // the set exists; the step creates it first.
    assert!(!h.sim.world().ipsets.contains_key("agent_allow"));
    let allow = h.create_sandbox("allow-test", None, false).await;
    assert!(matches!(h.settled(allow).await, Settled::Ready(_)), "{:?}", h.sandbox(allow).error);
    assert!(h.sim.world().ipsets.contains_key("agent_allow"));

    // When an allowlist domain moves, the keeper makes the set exactly the new destinations.
    let members = vec!["198.51.100.7".to_string(), "140.82.112.0/20".to_string()];
    agentlab_actors::sandbox::firewall::sync_allowlist_ipset(&h.sandboxes.gateway, members).await.unwrap();
    let now: Vec<String> = h.sim.world().ipsets["agent_allow"].members.iter().map(|m| m.cidr.clone()).collect();
    assert_eq!(now, ["140.82.112.0/20", "198.51.100.7"], "203.0.113.7 went, 198.51.100.7 came");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_the_datacenter_firewall_or_a_host_ruleset_nothing_is_provisioned() {
    let h = Harness::with(Options { datacenter_firewall: false, ..Options::default() }).await;
    let request =
        agentlab_actors::sandbox::allocate::SandboxRequest { profile: "yolo-ephemeral".into(), ..Default::default() };
    let err = agentlab_actors::sandbox::allocate::allocate(&h.sandboxes, &request).await.expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("pvesh set /cluster/firewall/options --enable 1") && text.contains("agentlabd net apply"),
        "{text}"
    );
    assert!(h.sim.world().vms.keys().all(|&v| v == 9000), "no VM was cloned");
    assert!(h.store.list_sandboxes(None).unwrap().is_empty(), "nothing recorded");
    h.stop().await;
}
