//! The cloud-init drive's content, as Proxmox generates it for the default `nocloud` type
//! (qemu-server `src/PVE/QemuServer/Cloudinit.pm` generate_nocloud, 610-640): `user-data`,
//! `network-config`, `meta-data` and `vendor-data`, each from its `cicustom` snippet when
//! one is given, otherwise generated from the VM's cloud-init settings. Written as an ISO
//! 9660 image labelled `cidata` (commit_cloudinit_disk), which NoCloud finds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The four files of the ISO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCloud {
    pub user: String,
    pub network: String,
    pub meta: String,
    pub vendor: String,
}

/// `cicustom` parts (`user=`, `network=`, `meta=`, `vendor=`) already read from their snippet
/// files; the rest comes from `config`.
pub fn build(config: &BTreeMap<String, String>, vmid: u32, custom: &BTreeMap<String, String>) -> NoCloud {
    let user = custom.get("user").cloned().unwrap_or_else(|| userdata(config, vmid));
    let network = custom.get("network").cloned().unwrap_or_else(|| network(config));
    let meta = custom.get("meta").cloned().unwrap_or_else(|| metadata(&user, &network));
    NoCloud { user, network, meta, vendor: custom.get("vendor").cloned().unwrap_or_default() }
}

/// cloudinit_userdata (145-200), the parts AgentLab's templates meet: hostname, fqdn, the
/// user and its keys.
fn userdata(config: &BTreeMap<String, String>, vmid: u32) -> String {
    let name = config.get("name").cloned().unwrap_or_else(|| format!("VM{vmid}"));
    let host = name.split('.').next().unwrap_or(&name).to_string();
    let mut out = format!("#cloud-config\nhostname: {host}\nmanage_etc_hosts: true\nfqdn: {name}\n");
    if let Some(user) = config.get("ciuser") {
        out.push_str(&format!("user: {user}\n"));
    }
    if let Some(keys) = config.get("sshkeys") {
        out.push_str("ssh_authorized_keys:\n");
        for key in percent_decode(keys).lines().filter(|k| !k.trim().is_empty()) {
            out.push_str(&format!("  - {key}\n"));
        }
    }
    out.push_str("chpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n");
    out
}

/// nocloud_network (527-592): version 1, one `physical` entry per `netN` that has an
/// `ipconfigN`, matched by MAC and named `ethN`; then the nameservers.
pub fn network(config: &BTreeMap<String, String>) -> String {
    let mut out = String::from("version: 1\nconfig:\n");
    let mut ifaces: Vec<(&String, &String)> = config.iter().filter(|(k, _)| is_net_key(k)).collect();
    ifaces.sort();
    for (key, value) in ifaces {
        let id = &key[3..];
        let Some(ipconfig) = config.get(&format!("ipconfig{id}")) else { continue };
        let Some(mac) = mac_of(value) else { continue };
        out.push_str(&format!(
            "    - type: physical\n      name: eth{id}\n      mac_address: '{}'\n      subnets:\n",
            mac.to_lowercase()
        ));
        let opts: BTreeMap<&str, &str> = ipconfig.split(',').filter_map(|p| p.split_once('=')).collect();
        match opts.get("ip") {
            Some(&"dhcp") => out.push_str("      - type: dhcp4\n"),
            Some(ip) => {
                let (addr, bits) = ip.split_once('/').unwrap_or((ip, "32"));
                out.push_str(&format!(
                    "      - type: static\n        address: '{addr}'\n        netmask: '{}'\n",
                    netmask(bits)
                ));
                if let Some(gw) = opts.get("gw") {
                    out.push_str(&format!("        gateway: '{gw}'\n"));
                }
            }
            None => {}
        }
        match opts.get("ip6") {
            Some(&"dhcp") => out.push_str("      - type: dhcp6\n"),
            Some(&"auto") => out.push_str("      - type: ipv6_slaac\n"),
            Some(ip) => out.push_str(&format!("      - type: static6\n        address: '{ip}'\n")),
            None => {}
        }
    }
    // get_dns_conf (127-143): the VM's nameserver, else the host's resolv.conf; the
    // simulated host has none.
    let nameservers: Vec<&str> = config.get("nameserver").map(|n| n.split_whitespace().collect()).unwrap_or_default();
    let search: Vec<&str> = config.get("searchdomain").map(|n| n.split_whitespace().collect()).unwrap_or_default();
    // Like Proxmox, the entry is there whenever the lists are (even empty ones).
    out.push_str("    - type: nameserver\n");
    if !nameservers.is_empty() {
        out.push_str("      address:\n");
        for ns in nameservers {
            out.push_str(&format!("      - '{ns}'\n"));
        }
    }
    if !search.is_empty() {
        out.push_str("      search:\n");
        for s in search {
            out.push_str(&format!("      - '{s}'\n"));
        }
    }
    out
}

/// nocloud_gen_metadata (603-608): the instance id is the SHA-1 of user-data and
/// network-config, so any change makes cloud-init treat the VM as a new instance. (A
/// SHA-256 prefix here: the same property, without a second hash crate.)
fn metadata(user: &str, network: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{user}{network}").as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("instance-id: {hex}\n")
}

fn is_net_key(key: &str) -> bool {
    key.strip_prefix("net").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The MAC of a `netN` value (`virtio=BC:24:…,bridge=…` or `macaddr=…`).
pub fn mac_of(net: &str) -> Option<String> {
    net.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k == "macaddr" || v.matches(':').count() == 5).then(|| v.to_string())
    })
}

fn netmask(bits: &str) -> String {
    let bits: u32 = bits.parse().unwrap_or(32).min(32);
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    std::net::Ipv4Addr::from(mask).to_string()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes the ISO (`genisoimage`, what cloud-image-utils' `cloud-localds` runs) at `iso`.
/// Proxmox refuses a drive whose files exceed 3 MiB; so does this.
pub fn write_iso(files: &NoCloud, dir: &Path, iso: &Path) -> Result<(), String> {
    let sum = files.user.len() + files.network.len() + files.meta.len() + files.vendor.len();
    if sum > 3 * 1024 * 1024 {
        return Err("Cloud-Init sum of snippets too big (> 3 MiB)".into());
    }
    let staging: PathBuf = dir.join("cidata");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    for (name, text) in [
        ("user-data", &files.user),
        ("network-config", &files.network),
        ("meta-data", &files.meta),
        ("vendor-data", &files.vendor),
    ] {
        std::fs::write(staging.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))?;
    }
    let out = std::process::Command::new("genisoimage")
        .args(["-quiet", "-input-charset", "utf-8", "-volid", "cidata", "-joliet", "-rock", "-output"])
        .arg(iso)
        .arg(&staging)
        .output()
        .map_err(|e| format!("cannot run genisoimage (install cloud-image-utils or genisoimage): {e}"))?;
    let _ = std::fs::remove_dir_all(&staging);
    if !out.status.success() {
        return Err(format!("genisoimage failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn network_config_is_proxmoxs_version_1() {
        let c = config(&[
            ("net0", "virtio=BC:24:11:AA:BB:CC,bridge=vmbr1,firewall=1"),
            ("ipconfig0", "ip=dhcp"),
            ("net1", "virtio=BC:24:11:AA:BB:CD,bridge=vmbr2"),
            ("nameserver", "10.77.0.1"),
        ]);
        assert_eq!(
            network(&c),
            "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: 'bc:24:11:aa:bb:cc'\n      subnets:\n      - type: dhcp4\n    - type: nameserver\n      address:\n      - '10.77.0.1'\n"
        );
        let s = network(&config(&[("net0", "virtio=BC:24:11:AA:BB:CC"), ("ipconfig0", "ip=10.0.0.5/24,gw=10.0.0.1")]));
        assert!(s.contains("type: static\n        address: '10.0.0.5'\n        netmask: '255.255.255.0'\n        gateway: '10.0.0.1'\n"), "{s}");
    }

    #[test]
    fn snippets_win_and_the_instance_id_follows_the_content() {
        let c = config(&[("name", "job-1"), ("net0", "virtio=BC:24:11:AA:BB:CC"), ("ipconfig0", "ip=dhcp")]);
        let custom: BTreeMap<String, String> =
            [("user".to_string(), "#cloud-config\nhostname: x\n".to_string())].into();
        let a = build(&c, 1001, &custom);
        assert_eq!(a.user, "#cloud-config\nhostname: x\n");
        assert!(a.meta.starts_with("instance-id: ") && a.meta.len() == "instance-id: \n".len() + 40);
        let b = build(&c, 1001, &BTreeMap::new());
        assert!(b.user.contains("hostname: job-1\n"), "{}", b.user);
        assert_ne!(a.meta, b.meta);
    }
}
