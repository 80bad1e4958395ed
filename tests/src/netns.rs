//! A guest network namespace reached from the test's own namespace by a veth pair, with a
//! real `sshd` in it: what a sandbox's SSH looks like from the Proxmox host, for `agentlab
//! ssh` and for idle-stop's conntrack probe. Everything is removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Why the namespace tests cannot run here (not root, a tool missing), printed loudly;
/// with `AGENTLAB_REQUIRE_NETNS` set (CI) a panic instead.
pub fn missing(tools: &[&str]) -> Option<String> {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not root".to_string())
    } else {
        tools.iter().find(|t| !on_path(t)).map(|t| format!("`{t}` is not installed"))
    };
    if let Some(reason) = &reason {
        if std::env::var_os("AGENTLAB_REQUIRE_NETNS").is_some() {
            panic!("namespace test cannot run here: {reason} (AGENTLAB_REQUIRE_NETNS is set)");
        }
        eprintln!("\n*** SKIPPED: this test needs root and {}: {reason} ***\n", tools.join(", "));
    }
    reason
}

/// Whether `tool` is on PATH.
pub fn on_path(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

pub fn sh(script: &str) {
    let out = Command::new("sh").args(["-ec", script]).output().expect("sh");
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
}

pub struct GuestNs {
    pub name: String,
    pub host_if: String,
    pub guest_ip: String,
    /// The ct-using table that turns connection tracking on in the test's namespace (the
    /// kernel tracks only where a ruleset asks for it; on a host, AgentLab's ruleset does).
    ct_table: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl GuestNs {
    /// `10.<b>.4.0/24`: the host side `.1`, the guest `guest_host` (the simulator's address
    /// for the sandbox's VMID).
    pub fn new(tag: &str, b: u8, guest_ip: &str, dir: &Path) -> GuestNs {
        let id = std::process::id() % 100_000;
        let name = format!("alg{id}{tag}");
        let host_if = format!("alh{}{tag}", id % 10_000);
        let ct_table = format!("alct{id}{tag}");
        sh(&format!(
            "ip netns add {name}; ip -n {name} link set lo up
             ip link add {host_if} type veth peer name eth0 netns {name}
             ip addr add 10.{b}.4.1/24 dev {host_if}; ip link set {host_if} up
             ip -n {name} addr add {guest_ip}/24 dev eth0; ip -n {name} link set eth0 up
             nft add table inet {ct_table}
             nft add chain inet {ct_table} out '{{ type filter hook output priority 0; policy accept; }}'
             nft add rule inet {ct_table} out ct state established accept"
        ));
        GuestNs { name, host_if, guest_ip: guest_ip.into(), ct_table, children: Vec::new(), dir: dir.to_path_buf() }
    }

    /// A real sshd on the guest's port 22 accepting `authorized_key` for any user.
    pub fn start_sshd(&mut self, authorized_key: &str) {
        let dir = self.dir.join(format!("sshd-{}", self.name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("host_key");
        sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {}", host_key.display()));
        std::fs::write(dir.join("authorized_keys"), format!("{authorized_key}\n")).unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port 22\nListenAddress {ip}\nHostKey {key}\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n\
                 PidFile {dir}/sshd.pid\n",
                ip = self.guest_ip,
                key = host_key.display(),
                dir = dir.display()
            ),
        )
        .unwrap();
        let sshd = Command::new("sh").args(["-c", "command -v sshd || echo /usr/sbin/sshd"]).output().unwrap();
        let sshd = String::from_utf8_lossy(&sshd.stdout).trim().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, &sshd, "-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd");
        self.children.push(child);
        let addr: std::net::SocketAddr = format!("{}:22", self.guest_ip).parse().unwrap();
        let up = crate::eventually(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)).is_ok()
        });
        assert!(up, "sshd did not listen: {}", std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default());
    }
}

impl Drop for GuestNs {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).stderr(Stdio::null()).status();
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.ct_table]).status();
    }
}
