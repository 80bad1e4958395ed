//! The host ruleset enforced for real: namespaces stand in for the Proxmox host, two guests
//! (one on the agent bridge, one behind a Proxmox firewall bridge), a WAN host, a LAN host
//! and a tailnet host. The ruleset is the renderer's, loaded by the applier; DHCP and DNS
//! are dnsmasq's; the allowlist domain is resolved by the crate's resolver. Every check is
//! printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;

use agentlab_netfilter::Mode;
use agentlab_netfilter::allowlist::{AllowEntry, DomainCache};
use agentlab_netfilter::dns;
use agentlab_netfilter::egress;
use agentlab_netfilter::host::{Binding, HostPolicy, render};
use agentlab_netfilter::nft::Nft;
use netns::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn expect(ns: &str, who: &str, addr: SocketAddr, what: &str, reachable: bool) {
    let got = reaches(ns, addr);
    println!("{:<44} {addr:<20} {}", format!("{who} -> {what}"), if got { "reached" } else { "blocked" });
    assert_eq!(got, reachable, "{who} -> {what} ({addr}) should be {}", if reachable { "reached" } else { "blocked" });
}

fn policy(bindings: Vec<Binding>) -> HostPolicy {
    HostPolicy::new(
        "vmbr1".parse().unwrap(),
        "vmbr0".parse().unwrap(),
        "10.77.0.0/16".parse().unwrap(),
        GATEWAY,
        vec![8844],
    )
    .unwrap()
    .with_bindings(bindings)
    .unwrap()
}

fn binding(guest: &Guest, ip: Ipv4Addr, mode: Mode, allow: Vec<ipnet::Ipv4Net>) -> Binding {
    Binding { vmid: guest.vmid, mac: guest.mac.parse().unwrap(), ip: Some(ip), mode, allow }
}

#[test]
fn guests_reach_the_internet_and_the_listener_and_nothing_else() {
    if missing_capability(&["ip", "nft", "dnsmasq", "udhcpc"]).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::build("a", dir.path());
    let h = net.host();
    let g1 = net.add_guest("g1", 101, "bc:24:11:00:01:01", false);
    let g2 = net.add_guest("g2", 102, "bc:24:11:00:01:02", true);
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("{WAN} allowed.test\n")).unwrap();
    net.start_dnsmasq(&hosts);
    let nft = Nft::with_command(vec!["ip".into(), "netns".into(), "exec".into(), h.clone(), "nft".into()]);
    // As the daemon does: the set is read into the record before every reload.
    let record = std::cell::RefCell::new(egress::EgressRecord::default());
    let apply = |policy: &HostPolicy| {
        if nft.loaded().unwrap() {
            record.borrow_mut().fold(&egress::read(&nft).unwrap());
        }
        nft.apply(&render(policy)).expect("apply");
        record.borrow_mut().set_was_reloaded();
    };

    // Before any sandbox is bound, the table already holds: DHCP works, nothing forwards.
    apply(&policy(vec![]));
    assert!(nft.loaded().unwrap());
    let ip1 = net.dhcp(&g1);
    let ip2 = net.dhcp(&g2);
    println!("DHCP: guest 101 (tap on vmbr1) = {ip1}, guest 102 (behind fwbr102i0) = {ip2}");
    let (wan, lan, tsn) = (net.ns("wan"), net.ns("lan"), net.ns("tsn"));
    for (ns, ip, port) in [
        (&wan, WAN, 80),
        (&wan, WAN2, 80),
        (&lan, LAN, 80),
        (&tsn, TAILNET, 80),
        (&h, GATEWAY, 8844),
        (&h, GATEWAY, 2222),
        (&h, HOST_LAN, 2222),
    ] {
        listen(ns, sock(ip, port));
    }
    listen(&g1.ns, sock(ip1, 80));
    listen(&g2.ns, sock(ip2, 80));
    expect(&g1.ns, "unbound guest 101", sock(WAN, 80), "WAN", false);

    // nat mode, both wirings.
    let nat = policy(vec![binding(&g1, ip1, Mode::Nat, vec![]), binding(&g2, ip2, Mode::Nat, vec![])]);
    apply(&HostPolicy { ssh_ingress: vec!["tailscale0".parse().unwrap()], ..nat });
    // DNS through the gateway (bound sandboxes in nat or allowlist mode only), with the
    // crate's resolver, from inside the guest.
    let answers = in_ns(&g1.ns, || dns::resolve_a(sock(GATEWAY, 53), "allowed.test", Duration::from_secs(2)));
    let answers = answers.expect("DNS through the gateway");
    println!("guest 101 resolves allowed.test through 10.77.0.1: {answers:?}");
    assert_eq!(answers[0].addr, WAN);

    for (g, ip_other, who) in [(&g1, ip2, "guest 101 (nat)"), (&g2, ip1, "guest 102 (nat, fwbr)")] {
        expect(&g.ns, who, sock(WAN, 80), "WAN through NAT", true);
        expect(&g.ns, who, sock(GATEWAY, 8844), "guest listener", true);
        expect(&g.ns, who, sock(GATEWAY, 2222), "another host port", false);
        expect(&g.ns, who, sock(HOST_LAN, 2222), "the host's LAN address", false);
        expect(&g.ns, who, sock(LAN, 80), "LAN host", false);
        expect(&g.ns, who, sock(TAILNET, 80), "tailnet host", false);
        expect(&g.ns, who, sock(ip_other, 80), "the other guest", false);
    }

    // SSH may come in from the tailnet (ssh_ingress_interfaces), nothing else from anywhere.
    listen(&g1.ns, sock(ip1, 22));
    expect(&tsn, "tailnet host", sock(ip1, 22), "guest 101's SSH", true);
    expect(&tsn, "tailnet host", sock(ip1, 80), "guest 101's port 80", false);
    expect(&lan, "LAN host", sock(ip1, 22), "guest 101's SSH", false);

    // The operator's smoke test, run inside a guest, agrees.
    let smoke = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/net/smoke_test.sh");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &g2.ns, "bash"])
        .arg(&smoke)
        .args(["--local", "--skip-dns", "--gateway", "10.77.0.1", "--listener", "8844", "--wan", "203.0.113.2:80"])
        .args(["--lan", "192.168.50.2:80", "--tailnet", "100.100.0.2:80", "--host-port", "2222"])
        .output()
        .unwrap();
    print!("scripts/net/smoke_test.sh in guest 102:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // Spoofing: guest 102 takes guest 101's MAC, then its IP.
    sh(&format!("ip -n {} link set eth0 address {}", g2.ns, g1.mac));
    expect(&g2.ns, "guest 102 with 101's MAC", sock(WAN, 80), "WAN", false);
    sh(&format!("ip -n {} link set eth0 address {}", g2.ns, g2.mac));
    sh(&format!(
        "ip -n {g} addr flush dev eth0; ip -n {g} addr add {ip1}/16 dev eth0; ip -n {g} route add default via 10.77.0.1",
        g = g2.ns
    ));
    expect(&g2.ns, "guest 102 with 101's IP", sock(WAN, 80), "WAN", false);
    sh(&format!(
        "ip -n {g} addr flush dev eth0; ip -n {g} addr add {ip2}/16 dev eth0; ip -n {g} route add default via 10.77.0.1",
        g = g2.ns
    ));
    expect(&g2.ns, "guest 102 restored", sock(WAN, 80), "WAN", true);

    // allowlist mode for 101 (a domain entry), off mode for 102.
    let entries = vec!["allowed.test".parse::<AllowEntry>().unwrap()];
    let mut cache = DomainCache::with_min_ttl(1);
    cache.track(["allowed.test"]);
    let host_dns = h.clone();
    let lookup = move |name: &str| {
        let name = name.to_string();
        in_ns(&host_dns, move || dns::resolve_a(sock(GATEWAY, 53), &name, Duration::from_secs(2)))
    };
    let (changed, errors) = cache.refresh(0, &lookup);
    assert!(changed && errors.is_empty(), "{errors:?}");
    let apply_modes = |cache: &DomainCache| {
        apply(&policy(vec![
            binding(&g1, ip1, Mode::Allowlist, cache.networks(&entries)),
            binding(&g2, ip2, Mode::Off, vec![]),
        ]));
    };
    apply_modes(&cache);
    expect(&g1.ns, "guest 101 (allowlist allowed.test)", sock(WAN, 80), "allowed.test = 203.0.113.2", true);
    expect(&g1.ns, "guest 101 (allowlist allowed.test)", sock(WAN2, 80), "unlisted WAN host", false);
    expect(&g1.ns, "guest 101 (allowlist allowed.test)", sock(GATEWAY, 8844), "guest listener", true);
    expect(&g2.ns, "guest 102 (off)", sock(WAN, 80), "WAN", false);
    expect(&g2.ns, "guest 102 (off)", sock(WAN2, 80), "WAN", false);
    expect(&g2.ns, "guest 102 (off)", sock(GATEWAY, 8844), "guest listener", true);
    let off_dns = in_ns(&g2.ns, || dns::resolve_a(sock(GATEWAY, 53), "allowed.test", Duration::from_secs(2)));
    println!(
        "{:<44} {:<20} {}",
        "guest 102 (off) -> DNS",
        "10.77.0.1:53",
        if off_dns.is_ok() { "answered" } else { "blocked" }
    );
    assert!(off_dns.is_err(), "off mode gets no DNS (a channel out through the host's resolvers)");

    // The domain moves; after its TTL the resolver sees the new address and the set follows.
    std::fs::write(&hosts, format!("{WAN2} allowed.test\n")).unwrap();
    net.reload_dnsmasq();
    // dnsmasq reads the hosts file when it gets to the SIGHUP: wait until it answers the new
    // address (CI once looked up first and saw the old one), as a resolver after the TTL does.
    let moved = (0..100).any(|_| {
        let answers = lookup("allowed.test").unwrap_or_default();
        let moved = answers.iter().any(|a| a.addr == WAN2);
        if !moved {
            #[allow(clippy::disallowed_methods, reason = "a bounded poll (100 × 50 ms); this test has no runtime")]
            std::thread::sleep(Duration::from_millis(50));
        }
        moved
    });
    assert!(moved, "dnsmasq did not answer allowed.test's new address within 5 s of its reload");
    let due = cache.next_due().expect("a domain is tracked");
    println!("allowed.test next looked up at t={due}s (TTL 1 s)");
    let (changed, errors) = cache.refresh(due, &lookup);
    assert!(changed && errors.is_empty(), "re-resolved after the TTL: {errors:?}");
    apply_modes(&cache);
    expect(&g1.ns, "guest 101 after re-resolution", sock(WAN2, 80), "allowed.test = 203.0.113.3", true);
    expect(&g1.ns, "guest 101 after re-resolution", sock(WAN, 80), "its old address", false);

    // The egress record: what the ruleset dropped, per source MAC and destination.
    let mut record = record.into_inner();
    record.fold(&egress::read(&nft).unwrap());
    let totals: Vec<_> = record.totals().map(|(k, n)| (k.clone(), n)).collect();
    for ((mac, dest, proto, port), n) in &totals {
        println!("egress record: {mac} -> {dest}:{port}/{proto} x{n}");
    }
    let has = |mac: &str, dest: Ipv4Addr, port: u16| {
        totals.iter().any(|((m, d, _, p), n)| m.to_string() == mac && *d == dest && *p == port && *n > 0)
    };
    assert!(has(&g1.mac, LAN, 80) && has(&g1.mac, TAILNET, 80) && has(&g1.mac, GATEWAY, 2222));
    assert!(has(&g1.mac, WAN2, 80), "the allowlist's refusal is recorded");
    assert!(
        totals.iter().any(|((m, d, proto, _), _)| m.to_string() == g1.mac && *d == ip2 && proto == "arp"),
        "reaching for the other guest is recorded (its ARP request)"
    );
    assert!(has(&g2.mac, WAN, 80), "off mode's refusals are recorded");
    assert!(has(&g2.mac, HOST_LAN, 2222));
}

#[test]
fn a_broken_ruleset_is_refused_and_the_loaded_one_stays() {
    if missing_capability(&["ip", "nft"]).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = Net::build("b", dir.path());
    let nft = Nft::with_command(vec!["ip".into(), "netns".into(), "exec".into(), net.host(), "nft".into()]);
    assert!(!nft.loaded().unwrap(), "a fresh host has no AgentLab table");
    // The golden files are rulesets the kernel accepts.
    for golden in ["empty.nft", "three_modes.nft"] {
        let text = std::fs::read_to_string(format!("{}/tests/golden/{golden}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        nft.check(&text).unwrap_or_else(|e| panic!("{golden}: {e}"));
    }
    let good = render(&policy(vec![]));
    nft.apply(&good).unwrap();
    let err = nft.apply(&good.replace("masquerade", "masqerade")).expect_err("a typo is refused");
    println!("refused: {err}");
    assert!(nft.loaded().unwrap(), "the previous ruleset is still loaded");
    // A figure, not a limit: a host with 500 sandboxes (allowlists included) reloads in one
    // transaction.
    let many: Vec<Binding> = (0..500u32)
        .map(|i| Binding {
            vmid: 1000 + i,
            mac: format!("bc:24:11:00:{:02x}:{:02x}", i / 256, i % 256).parse().unwrap(),
            ip: Some(Ipv4Addr::new(10, 77, (i / 250) as u8 + 1, (i % 250) as u8 + 2)),
            mode: [Mode::Nat, Mode::Off, Mode::Allowlist][(i % 3) as usize],
            allow: vec!["203.0.113.0/24".parse().unwrap()],
        })
        .collect();
    let text = render(&policy(many));
    let started = std::time::SystemTime::now();
    nft.apply(&text).unwrap();
    let took = started.elapsed().unwrap_or_default();
    println!("500 sandboxes: {} lines of ruleset, check + load + read-back in {took:?}", text.lines().count());
    nft.remove().unwrap();
    assert!(!nft.loaded().unwrap());
}

/// Without br_netfilter (the Proxmox firewall off, taps straight on the agent bridge), the
/// bridge table alone keeps guests apart and honest; routing decisions are the inet table's.
#[test]
fn without_br_netfilter_the_bridge_table_still_isolates_guests() {
    if missing_capability(&["ip", "nft", "dnsmasq", "udhcpc"]).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut net = Net::build("c", dir.path());
    let h = net.host();
    sh(&format!("ip netns exec {h} sysctl -qw net.bridge.bridge-nf-call-iptables=0"));
    let g1 = net.add_guest("g1", 201, "bc:24:11:00:02:01", false);
    let g2 = net.add_guest("g2", 202, "bc:24:11:00:02:02", false);
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    net.start_dnsmasq(&hosts);
    let nft = Nft::with_command(vec!["ip".into(), "netns".into(), "exec".into(), h.clone(), "nft".into()]);
    nft.apply(&render(&policy(vec![]))).unwrap();
    let (ip1, ip2) = (net.dhcp(&g1), net.dhcp(&g2));
    nft.apply(&render(&policy(vec![binding(&g1, ip1, Mode::Nat, vec![]), binding(&g2, ip2, Mode::Nat, vec![])])))
        .unwrap();
    let (wan, lan) = (net.ns("wan"), net.ns("lan"));
    listen(&wan, sock(WAN, 80));
    listen(&lan, sock(LAN, 80));
    listen(&g2.ns, sock(ip2, 80));
    // A port no sandbox is bound to (another VM, a second NIC) with a bound sandbox's MAC
    // and an address of its choosing.
    let g3 = net.add_guest("g3", 203, &g1.mac, false);
    sh(&format!("ip -n {g} addr add 10.77.0.250/16 dev eth0; ip -n {g} route add default via 10.77.0.1", g = g3.ns));
    expect(&g3.ns, "unbound port with 201's MAC", sock(WAN, 80), "WAN", false);
    // Bound by MAC, address not pinned yet: nothing but DHCP leaves it.
    nft.apply(&render(&policy(vec![
        Binding { ip: None, ..binding(&g1, ip1, Mode::Nat, vec![]) },
        binding(&g2, ip2, Mode::Nat, vec![]),
    ])))
    .unwrap();
    expect(&g1.ns, "guest 201 before its address is pinned", sock(WAN, 80), "WAN", false);
    nft.apply(&render(&policy(vec![binding(&g1, ip1, Mode::Nat, vec![]), binding(&g2, ip2, Mode::Nat, vec![])])))
        .unwrap();
    expect(&g1.ns, "guest 201 (no br_netfilter)", sock(WAN, 80), "WAN through NAT", true);
    expect(&g1.ns, "guest 201 (no br_netfilter)", sock(LAN, 80), "LAN host", false);
    expect(&g1.ns, "guest 201 (no br_netfilter)", sock(ip2, 80), "the other guest", false);
    sh(&format!("ip -n {} link set eth0 address {}", g1.ns, g2.mac));
    expect(&g1.ns, "guest 201 with 202's MAC", sock(WAN, 80), "WAN", false);
}
