//! A test network built from namespaces: a Proxmox-like host with the agent bridge and an
//! uplink, guests wired as Proxmox wires them (tap straight on the bridge, or behind a
//! per-VM firewall bridge), a WAN host, a LAN host and a tailnet-range host. Sockets are
//! opened from threads that have entered a namespace (`setns` moves only the calling
//! thread), programs run under `ip netns exec`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Why this machine cannot run the namespace tests, if it cannot. With
/// `AGENTLAB_REQUIRE_NETNS=1` (CI) a missing capability fails the test instead.
pub fn missing_capability(tools: &[&str]) -> Option<String> {
    let reason = if !nix_is_root() {
        Some("not root".to_string())
    } else {
        tools
            .iter()
            .find(|t| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .output()
                    .map(|o| !o.status.success())
                    .unwrap_or(true)
            })
            .map(|t| format!("`{t}` is not installed"))
    };
    let reason = reason.or_else(|| {
        static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = format!("alprobe{}-{n}", std::process::id());
        let ok = run_ok(&["ip", "netns", "add", &probe]);
        let _ = run_ok(&["ip", "netns", "del", &probe]);
        (!ok).then(|| "cannot create network namespaces".to_string())
    });
    if let Some(reason) = &reason {
        if std::env::var_os("AGENTLAB_REQUIRE_NETNS").is_some() {
            panic!("namespace test cannot run here: {reason} (AGENTLAB_REQUIRE_NETNS is set)");
        }
        eprintln!("\n*** SKIPPED: namespace test needs root, ip, nft, dnsmasq, udhcpc: {reason} ***\n");
    }
    reason
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn sh(script: &str) {
    let out = Command::new("sh").args(["-ec", script]).output().expect("run sh");
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in namespace")
}

/// Whether a TCP connection from `ns` to `addr` completes within a second.
pub fn reaches(ns: &str, addr: SocketAddr) -> bool {
    in_ns(ns, move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// A TCP listener in `ns` on `addr` that accepts and closes, for as long as the test runs.
pub fn listen(ns: &str, addr: SocketAddr) {
    let listener = in_ns(ns, move || TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
}

pub struct Guest {
    pub ns: String,
    pub vmid: u32,
    pub mac: String,
    pub behind_firewall_bridge: bool,
}

/// The namespaces of one test, removed on drop.
pub struct Net {
    pub prefix: String,
    pub dir: PathBuf,
    children: Vec<Child>,
    dnsmasq: Option<u32>,
}

pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const WAN2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
pub const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
pub const HOST_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub const TAILNET: Ipv4Addr = Ipv4Addr::new(100, 100, 0, 2);

impl Net {
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    pub fn host(&self) -> String {
        self.ns("h")
    }

    /// Host, WAN (two addresses), LAN and tailnet namespaces.
    pub fn build(tag: &str, dir: &Path) -> Net {
        let prefix = format!("al{}{tag}", std::process::id() % 100000);
        let net = Net { prefix: prefix.clone(), dir: dir.to_path_buf(), children: Vec::new(), dnsmasq: None };
        let h = net.host();
        for n in ["h", "wan", "lan", "tsn"] {
            let ns = net.ns(n);
            sh(&format!("ip netns add {ns}; ip -n {ns} link set lo up"));
        }
        let (wan, lan, tsn) = (net.ns("wan"), net.ns("lan"), net.ns("tsn"));
        sh(&format!(
            "ip -n {h} link add vmbr1 type bridge; ip -n {h} addr add 10.77.0.1/16 dev vmbr1; ip -n {h} link set vmbr1 up
             ip link add vmbr0 netns {h} type veth peer name eth0 netns {wan}
             ip -n {h} addr add 203.0.113.1/24 dev vmbr0; ip -n {h} link set vmbr0 up
             ip -n {wan} addr add 203.0.113.2/24 dev eth0; ip -n {wan} addr add 203.0.113.3/24 dev eth0
             ip -n {wan} link set eth0 up; ip -n {wan} route add default via 203.0.113.1
             ip link add lan0 netns {h} type veth peer name eth0 netns {lan}
             ip -n {h} addr add 192.168.50.1/24 dev lan0; ip -n {h} link set lan0 up
             ip -n {lan} addr add 192.168.50.2/24 dev eth0; ip -n {lan} link set eth0 up; ip -n {lan} route add default via 192.168.50.1
             ip link add tailscale0 netns {h} type veth peer name eth0 netns {tsn}
             ip -n {h} addr add 100.100.0.1/24 dev tailscale0; ip -n {h} link set tailscale0 up
             ip -n {tsn} addr add 100.100.0.2/24 dev eth0; ip -n {tsn} link set eth0 up; ip -n {tsn} route add default via 100.100.0.1
             ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1"
        ));
        net
    }

    /// A guest namespace wired as Proxmox wires VM `vmid`'s `net0`: its tap on the agent
    /// bridge, or (the Proxmox firewall's wiring, review F16) on `fwbr<vmid>i0`, linked to
    /// the agent bridge by the veth pair `fwln<vmid>i0`/`fwpr<vmid>p0`.
    pub fn add_guest(&self, name: &str, vmid: u32, mac: &str, behind_firewall_bridge: bool) -> Guest {
        let (h, g) = (self.host(), self.ns(name));
        sh(&format!("ip netns add {g}; ip -n {g} link set lo up"));
        sh(&format!("ip link add tap{vmid}i0 netns {h} type veth peer name eth0 netns {g}"));
        if behind_firewall_bridge {
            sh(&format!(
                "ip -n {h} link add fwbr{vmid}i0 type bridge; ip -n {h} link set fwbr{vmid}i0 up
                 ip -n {h} link set tap{vmid}i0 master fwbr{vmid}i0 up
                 ip -n {h} link add fwln{vmid}i0 type veth peer name fwpr{vmid}p0
                 ip -n {h} link set fwln{vmid}i0 master fwbr{vmid}i0 up
                 ip -n {h} link set fwpr{vmid}p0 master vmbr1 up"
            ));
        } else {
            sh(&format!("ip -n {h} link set tap{vmid}i0 master vmbr1 up"));
        }
        sh(&format!("ip -n {g} link set eth0 address {mac} up"));
        Guest { ns: g, vmid, mac: mac.to_string(), behind_firewall_bridge }
    }

    /// dnsmasq on the agent bridge with the configuration `scripts/net/setup_vmbr1.sh`
    /// writes (DHCP for the subnet, the gateway as router and DNS), plus, for the test, DNS
    /// answers from `hosts` (re-read on SIGHUP) with a 1-second TTL and no upstream.
    pub fn start_dnsmasq(&mut self, hosts: &Path) {
        let h = self.host();
        let root = self.dir.join("root");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/net/setup_vmbr1.sh");
        sh(&format!("bash {} --root {} --apply --no-activate >/dev/null", script.display(), root.display()));
        let conf = root.join("etc/agentlab/dnsmasq-vmbr1.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &h, "dnsmasq", "--no-daemon"])
            .arg(format!("--conf-file={}", conf.display()))
            .args(["--no-resolv", "--local-ttl=1"])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdout(Stdio::null())
            .stderr(File::create(self.dir.join("dnsmasq.log")).expect("log"))
            .spawn()
            .expect("dnsmasq");
        self.dnsmasq = Some(child.id());
        self.children.push(child);
    }

    pub fn reload_dnsmasq(&self) {
        // `ip netns exec` execs its command, so the child's pid is dnsmasq's.
        let pid = self.dnsmasq.expect("dnsmasq started");
        sh(&format!("kill -HUP {pid}"));
    }

    /// DHCP in the guest with busybox's udhcpc; returns the leased address.
    pub fn dhcp(&self, guest: &Guest) -> Ipv4Addr {
        let script = self.dir.join("udhcpc.script");
        std::fs::write(
            &script,
            "#!/bin/sh\ncase $1 in bound|renew)\n  ip addr flush dev $interface\n  ip addr add $ip/16 dev $interface\n  \
             ip route replace default via ${router%% *} dev $interface\n  echo \"$ip $dns\" > \"$LEASE_OUT\"\n;; esac\n",
        )
        .expect("script");
        sh(&format!("chmod +x {}", script.display()));
        let out = self.dir.join(format!("lease.{}", guest.vmid));
        let status = Command::new("ip")
            .args(["netns", "exec", &guest.ns, "udhcpc", "-i", "eth0", "-q", "-n", "-t", "8", "-T", "1", "-s"])
            .arg(&script)
            .env("LEASE_OUT", &out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("udhcpc");
        assert!(status.success(), "guest {} got no DHCP lease", guest.vmid);
        let lease = std::fs::read_to_string(&out).expect("lease file");
        let mut parts = lease.split_whitespace();
        let ip = parts.next().and_then(|p| p.parse().ok()).expect("leased address");
        assert_eq!(parts.next(), Some("10.77.0.1"), "DHCP names the gateway as the DNS server");
        ip
    }

    pub fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let list = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
        for line in String::from_utf8_lossy(&list).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&self.prefix) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}
