//! Typed results and requests of the `Pve` operations. Decoding is lenient where Proxmox
//! is (integers as numbers or strings, booleans as 0/1 or true/false).

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Accepts `123` and `"123"` (Perl's JSON encoder emits whichever it last used).
pub fn lenient_u64<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Float(f64),
        Text(String),
    }
    match N::deserialize(de)? {
        N::Num(n) => Ok(n),
        N::Float(f) => Ok(f as u64),
        N::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

pub fn lenient_opt_u64<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "lenient_u64")] u64);
    Ok(Option::<Wrap>::deserialize(de)?.map(|w| w.0))
}

/// Accepts 0/1, "0"/"1" and true/false.
pub fn lenient_bool<'de, D: Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Num(i64),
        Text(String),
    }
    Ok(match Option::<B>::deserialize(de)? {
        None => false,
        Some(B::Bool(b)) => b,
        Some(B::Num(n)) => n != 0,
        Some(B::Text(s)) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub maxmem: u64,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub mem: u64,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub maxcpu: u64,
}

/// One VM of `GET /cluster/resources?type=vm` (may lag 10 s: decide from `status/current`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterVm {
    #[serde(deserialize_with = "lenient_u64")]
    pub vmid: u64,
    /// `qemu` or `lxc`: `type=vm` lists both (their VMIDs share one namespace).
    #[serde(rename = "type", default)]
    pub kind: String,
    pub node: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub template: bool,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
}

impl ClusterVm {
    /// A QEMU VM (not a container).
    pub fn is_qemu(&self) -> bool {
        self.kind == "qemu"
    }
}

/// `GET .../status/current` (and items of `GET /nodes/{node}/qemu`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStatus {
    #[serde(deserialize_with = "lenient_u64")]
    pub vmid: u64,
    #[serde(default)]
    pub name: Option<String>,
    /// `running` or `stopped` (a paused VM is `running` with `qmpstatus: paused`).
    pub status: String,
    #[serde(default)]
    pub qmpstatus: Option<String>,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub template: bool,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub uptime: Option<u64>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default)]
    pub cpu: Option<f64>,
}

impl VmStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    pub fn is_paused(&self) -> bool {
        matches!(self.qmpstatus.as_deref(), Some("paused" | "suspended"))
    }

    /// Tags as Proxmox stores them (`;`-joined).
    pub fn tag_list(&self) -> Vec<String> {
        split_tags(self.tags.as_deref())
    }
}

pub fn split_tags(tags: Option<&str>) -> Vec<String> {
    tags.unwrap_or_default().split([';', ',', ' ']).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// A VM config: every key as text (property strings stay strings), plus the digest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmConfig {
    pub values: BTreeMap<String, String>,
    pub digest: Option<String>,
}

impl VmConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn tags(&self) -> Vec<String> {
        split_tags(self.get("tags"))
    }
}

/// `POST .../clone`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloneSpec {
    pub newid: u32,
    pub name: Option<String>,
    pub description: Option<String>,
    /// None: Proxmox's default (linked for templates).
    pub full: Option<bool>,
    pub target_node: Option<String>,
    /// Only for full clones.
    pub storage: Option<String>,
    pub pool: Option<String>,
    /// Clone the VM as it was in this snapshot (full clones).
    pub snapname: Option<String>,
}

/// `PUT .../config`: keys to set and keys to delete.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigChange {
    pub set: BTreeMap<String, String>,
    pub delete: Vec<String>,
    /// Optimistic concurrency: refuse if the config changed since this digest.
    pub digest: Option<String>,
}

impl ConfigChange {
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set.insert(key.to_string(), value.into());
        self
    }

    pub fn delete(mut self, key: &str) -> Self {
        self.delete.push(key.to_string());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    Start,
    Stop,
    Shutdown,
    /// Suspend to RAM (`qmpause`).
    Suspend,
    Resume,
}

impl VmAction {
    pub fn path(self) -> &'static str {
        match self {
            VmAction::Start => "start",
            VmAction::Stop => "stop",
            VmAction::Shutdown => "shutdown",
            VmAction::Suspend => "suspend",
            VmAction::Resume => "resume",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestroyOptions {
    pub purge: bool,
    pub destroy_unreferenced_disks: bool,
    /// Ignore the VM's lock (root@pam only: the shell backend, never an API token).
    pub skiplock: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub snaptime: Option<u64>,
}

/// One network interface reported by the guest agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestInterface {
    pub name: String,
    #[serde(rename = "hardware-address", default)]
    pub hardware_address: Option<String>,
    #[serde(rename = "ip-addresses", default)]
    pub ip_addresses: Vec<GuestAddress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestAddress {
    #[serde(rename = "ip-address")]
    pub ip_address: String,
    #[serde(rename = "ip-address-type")]
    pub ip_address_type: String,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub prefix: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageInfo {
    pub storage: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub active: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub shared: bool,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub total: Option<u64>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub avail: Option<u64>,
    #[serde(default)]
    pub path: Option<String>,
}

/// A storage's definition in storage.cfg (`GET /storage/{storage}`): what a storage is,
/// as opposed to its state on one node (`StorageInfo`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct StorageConfig {
    pub storage: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub path: Option<String>,
    /// `snippets=subdir,…`: content subdirectories that are not the default.
    #[serde(rename = "content-dirs", default)]
    pub content_dirs: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub shared: bool,
    /// The nodes it exists on (`None`: every node).
    #[serde(default)]
    pub nodes: Option<String>,
}

impl StorageConfig {
    pub fn has_content(&self, kind: &str) -> bool {
        self.content.split(',').any(|c| c.trim() == kind)
    }

    /// The subdirectory of `path` that holds `kind` (pve-storage Plugin.pm get_subdir).
    pub fn content_dir(&self, kind: &str) -> String {
        self.content_dirs
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .find_map(|pair| pair.split_once('=').filter(|(k, _)| k.trim() == kind).map(|(_, d)| d.trim().to_string()))
            .unwrap_or_else(|| kind.to_string())
    }

    pub fn on_node(&self, node: &str) -> bool {
        self.nodes.as_deref().is_none_or(|nodes| nodes.split(',').any(|n| n.trim() == node))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub volid: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size: u64,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub vmid: Option<u64>,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub upid: String,
    /// `running` or `stopped`.
    pub status: String,
    #[serde(default)]
    pub exitstatus: Option<String>,
    #[serde(rename = "type", default)]
    pub task_type: Option<String>,
}

impl TaskStatus {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    /// `OK` or `WARNINGS: n` (pve-common: status_is_error is the negation).
    pub fn succeeded(&self) -> bool {
        match self.exitstatus.as_deref() {
            Some("OK") => true,
            Some(s) => {
                s.strip_prefix("WARNINGS: ").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            }
            None => false,
        }
    }
}

/// A firewall rule as listed by Proxmox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallRule {
    #[serde(deserialize_with = "lenient_u64")]
    pub pos: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub enable: bool,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub dest: Option<String>,
    #[serde(default)]
    pub sport: Option<String>,
    #[serde(default)]
    pub dport: Option<String>,
    #[serde(default)]
    pub proto: Option<String>,
    /// The interface: a bridge for node rules, `net<n>` for VM rules (groups have none).
    #[serde(default)]
    pub iface: Option<String>,
    #[serde(default, rename = "macro")]
    pub macro_name: Option<String>,
    /// Log level (`nolog`, `info`, …).
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub group: String,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A cluster IP set (`GET /cluster/firewall/ipset`); rules name it as `+<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpSet {
    pub name: String,
    #[serde(default)]
    pub comment: Option<String>,
}

/// One member of an IP set (`GET /cluster/firewall/ipset/{name}`). Proxmox lists members
/// sorted by their text, as it stores them: host bits cleared, `/32` (IPv4) and `/128`
/// (IPv6) dropped (see `ipset_cidr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpSetEntry {
    pub cidr: String,
    #[serde(default)]
    pub comment: Option<String>,
    /// A `nomatch` member excludes its addresses from the set.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub nomatch: bool,
}

/// The text Proxmox stores for an IP set member given as `cidr` (pve-firewall
/// `src/PVE/API2/Firewall/IPSet.pm` create_ip, 216-219: `clean_cidr` then
/// `parse_ip_or_cidr`, `src/PVE/Firewall.pm` 102-114 and 3393-3409): the host bits of a
/// network cleared (`10.1.2.3/8` → `10.0.0.0/8`, IPv6 compressed), a host's `/32` or `/128`
/// dropped (`10.0.0.5/32` → `10.0.0.5`). Reading or deleting a member matches this text
/// exactly, so callers address members by it. Anything that is not an address (an alias
/// name) is returned as it is.
pub fn ipset_cidr(cidr: &str) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let cleaned = match cidr.split_once('/') {
        // `return $cidr if !$len`: Perl's false strings are "" and "0".
        Some((ip, text)) if !matches!(text, "" | "0") => match (ip.parse::<IpAddr>(), text.parse::<u32>()) {
            (Ok(IpAddr::V4(ip)), Ok(len)) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                format!("{}/{text}", Ipv4Addr::from(u32::from(ip) & mask))
            }
            (Ok(IpAddr::V6(ip)), Ok(len)) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                format!("{}/{text}", Ipv6Addr::from(u128::from(ip) & mask))
            }
            _ => cidr.to_string(),
        },
        _ => cidr.to_string(),
    };
    let v6 = cleaned.split('/').next().is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
    let host = if v6 { "/128" } else { "/32" };
    cleaned.strip_suffix(host).map(str::to_string).unwrap_or(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_booleans_decode_in_every_shape_proxmox_sends() {
        let a: VmStatus = serde_json::from_value(
            serde_json::json!({"vmid": "101", "status": "running", "template": "1", "uptime": 5}),
        )
        .unwrap();
        assert_eq!((a.vmid, a.template, a.uptime), (101, true, Some(5)));
        let b: VmStatus =
            serde_json::from_value(serde_json::json!({"vmid": 101, "status": "stopped", "template": true})).unwrap();
        assert!(b.template && !b.is_running());
    }

    #[test]
    fn ipset_members_are_named_as_proxmox_stores_them() {
        assert_eq!(ipset_cidr("10.0.0.5/32"), "10.0.0.5");
        assert_eq!(ipset_cidr("10.1.2.3/16"), "10.1.0.0/16");
        assert_eq!(ipset_cidr("2001:db8::1/128"), "2001:db8::1");
        assert_eq!(ipset_cidr("office"), "office", "an alias stays as it is");
        let rule: FirewallRule = serde_json::from_value(serde_json::json!({
            "pos": 0, "type": "in", "action": "ACCEPT", "enable": 1, "iface": "vmbr1",
            "macro": "DNS", "log": "nolog", "digest": "ab", "ipversion": 4
        }))
        .unwrap();
        assert_eq!((rule.iface.as_deref(), rule.macro_name.as_deref()), (Some("vmbr1"), Some("DNS")));
    }

    #[test]
    fn task_success_is_ok_or_warnings() {
        let status = |exit: &str| TaskStatus {
            upid: String::new(),
            status: "stopped".into(),
            exitstatus: Some(exit.into()),
            task_type: None,
        };
        assert!(status("OK").succeeded());
        assert!(status("WARNINGS: 2").succeeded());
        assert!(!status("WARNINGS: x").succeeded());
        assert!(!status("clone failed: can't lock file").succeeded());
    }
}
