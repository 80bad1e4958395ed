//! The daemon's host-table keeper on a real kernel: the ruleset rendered from the store
//! (a READY sandbox's MAC, address and mode), loaded with nft in a namespace standing in for
//! the Proxmox host, and what the guest tried and was refused folded into the sandbox's
//! egress record (what `sandbox show` lists). `agentlabd net render` prints the same
//! ruleset from a config and database.

use agentlab_actors::model::{NetworkMode, SandboxState};
use agentlab_actors::net::{HostNetSettings, HostTable, TableState};
use agentlab_actors::profiles::{ProfileRegistry, ProfileRules};
use agentlab_actors::store::{SandboxRecord, Store};
use agentlab_e2e::netns::{missing, sh};
use agentlab_e2e::{Workspace, bin, repo_root};
use agentlab_netfilter::nft::Nft;
use std::process::Command;
use std::sync::Arc;

struct Namespaces(Vec<String>);

struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A TCP connection attempt from `ns`; true if it completed.
fn attempt(ns: &str, ip: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "2", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_keeper_loads_the_ruleset_for_the_store_and_records_what_it_dropped() {
    if missing(&["ip", "nft", "bash", "timeout", "busybox"]).is_some() {
        return;
    }
    let id = std::process::id() % 100_000;
    let (h, g, lan) = (format!("alkh{id}"), format!("alkg{id}"), format!("alkl{id}"));
    let _cleanup = Namespaces(vec![h.clone(), g.clone(), lan.clone()]);
    sh(&format!(
        "for n in {h} {g} {lan}; do ip netns add $n; ip -n $n link set lo up; done
         ip -n {h} link add vmbr1 type bridge; ip -n {h} addr add 10.77.0.1/16 dev vmbr1; ip -n {h} link set vmbr1 up
         ip link add vmbr0 netns {h} type veth peer name eth0 netns {lan}
         ip -n {h} addr add 192.168.50.1/24 dev vmbr0; ip -n {h} link set vmbr0 up
         ip -n {lan} addr add 192.168.50.2/24 dev eth0; ip -n {lan} link set eth0 up
         ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1
         ip link add tap5000i0 netns {h} type veth peer name eth0 netns {g}
         ip -n {h} link set tap5000i0 master vmbr1 up
         ip -n {g} link set eth0 address bc:24:11:00:13:88 up
         ip -n {g} addr add 10.77.0.50/16 dev eth0; ip -n {g} route add default via 10.77.0.1
         ip -n {lan} route add 10.77.0.0/16 via 192.168.50.1"
    ));
    // Listeners on the LAN host and on a host port that is not the guest listener.
    let mut listeners = Vec::new();
    for (ns, addr) in [(lan.clone(), "192.168.50.2:80"), (h.clone(), "10.77.0.1:2222")] {
        listeners.push(
            Command::new("ip")
                .args(["netns", "exec", &ns, "busybox", "nc", "-ll", "-p", addr.rsplit(':').next().unwrap_or("0")])
                .args(["-e", "/bin/true"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let _listeners = Children(listeners);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agentlab.db")).unwrap());
    let mut rec = SandboxRecord::sample(5000, SandboxState::Ready);
    rec.mac = Some("bc:24:11:00:13:88".into());
    rec.ip = Some("10.77.0.50".into());
    rec.network_mode = NetworkMode::Nat;
    store.insert_sandbox(&rec, None).unwrap();
    let profiles_dir = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles_dir).unwrap();
    std::fs::copy(repo_root().join("profiles/defaults.yaml"), profiles_dir.join("defaults.yaml")).unwrap();
    let profiles = Arc::new(ProfileRegistry::load(profiles_dir, ProfileRules { api_token: true }).unwrap());
    let settings = HostNetSettings {
        agent_bridge: "vmbr1".parse().unwrap(),
        uplink: "vmbr0".parse().unwrap(),
        subnet: "10.77.0.0/16".parse().unwrap(),
        gateway: "10.77.0.1".parse().unwrap(),
        listener_ports: vec![8844, 8846],
        dns_server: "127.0.0.1:53".parse().unwrap(),
        ssh_ingress: Vec::new(),
    };
    let nft = Nft::with_command(vec!["ip".into(), "netns".into(), "exec".into(), h.clone(), "nft".into()]);
    let nft_again = nft.clone();
    let table = HostTable::new(settings, nft, Arc::clone(&store), profiles);
    assert_eq!(table.state(), TableState::Absent);
    table.apply().expect("the keeper loads the ruleset");
    assert_eq!(table.state(), TableState::Loaded);
    let text = table.render().unwrap();
    assert!(text.contains("bc:24:11:00:13:88 : jump mode_nat"), "the sandbox is bound by its MAC:\n{text}");
    assert!(text.contains("ip saddr != { 0.0.0.0, 10.77.0.50 } drop"), "and its address:\n{text}");

    assert!(!attempt(&g, "192.168.50.2", 80), "the LAN is dropped");
    assert!(!attempt(&g, "10.77.0.1", 2222), "so is a host port that is not the listener");
    let folded = table.fold_egress().unwrap();
    assert!(folded >= 2, "{folded}");
    // Both answer without the ruleset: the drops above are the ruleset's.
    nft_again.remove().unwrap();
    assert!(attempt(&g, "192.168.50.2", 80), "the LAN host answers when nothing filters");
    assert!(attempt(&g, "10.77.0.1", 2222), "and so does the host port");
    table.apply().unwrap();
    // A reload (a sandbox came or went) keeps what was recorded.
    table.apply().unwrap();
    let record = store.egress_drops(5000, None).unwrap();
    println!("egress record of 5000: {record:?}");
    assert!(record.iter().any(|d| d.destination == "192.168.50.2" && d.port == 80 && d.protocol == "tcp"));
    assert!(record.iter().any(|d| d.destination == "10.77.0.1" && d.port == 2222));
}

#[allow(clippy::expect_used, reason = "a test helper: a failed spawn fails the test")]
fn render(ws: &Workspace) -> std::process::Output {
    Command::new(bin("agentlabd"))
        .arg("--config")
        .arg(ws.config_path())
        .args(["net", "render"])
        .output()
        .expect("run agentlabd")
}

#[test]
fn agentlabd_net_render_prints_the_ruleset_of_the_config_and_database() {
    let ws = Workspace::new();
    let base = std::fs::read_to_string(ws.config_path()).unwrap();
    // The listener on the agent bridge's gateway, as on a host (the tests' loopback setup
    // turns the host ruleset off).
    let config: String = base
        .lines()
        .filter(|l| {
            !l.starts_with("bootstrap_listen") && !l.starts_with("artifact_listen") && !l.starts_with("host_ruleset")
        })
        .filter(|l| !l.starts_with("agent_subnet"))
        .map(|l| format!("{l}\n"))
        .collect();
    ws.write_raw_config(&format!(
        "{config}agent_subnet: 10.77.0.0/16\nbootstrap_listen: 10.77.0.1:8844\nartifact_listen: 10.77.0.1:8846\n\
         uplink_interface: eno1\n"
    ));
    let out = render(&ws);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("table inet agentlab {") && text.contains("oifname \"eno1\" masquerade"), "{text}");
    assert!(text.contains("ip daddr 10.77.0.1 tcp dport { 8844, 8846 } accept"), "{text}");

    // A bridge name that is not an interface name is refused at load, naming the key.
    ws.write_raw_config(&format!("{config}agent_subnet: 10.77.0.0/16\nbootstrap_listen: 10.77.0.1:8844\nartifact_listen: 10.77.0.1:8846\nagent_bridge: 'vmbr1; drop'\n"));
    let out = render(&ws);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent_bridge"), "{}", String::from_utf8_lossy(&out.stderr));
}
