//! The simulated cluster: nodes, VMs, storages and their volumes, firewall, tasks.
//! Everything lives behind one mutex; handlers never hold it across an await.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Stopped,
    Running,
    /// Suspended to RAM: `status: running`, `qmpstatus: paused`.
    Paused,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotEntry {
    pub name: String,
    pub description: String,
    pub snaptime: u64,
    pub parent: Option<String>,
    /// The config at the time of the snapshot (restored by rollback).
    #[serde(skip)]
    pub config: BTreeMap<String, String>,
    #[serde(skip)]
    pub power: PowerState,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirewallRuleEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    pub enable: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "icmp-type")]
    pub icmp_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "macro")]
    pub macro_name: Option<String>,
    /// Set by verify_rule from the addresses and the protocol (pve-firewall
    /// `src/PVE/Firewall.pm` 1904-1920).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipversion: Option<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vm {
    pub vmid: u32,
    pub node: String,
    /// Config keys as Proxmox stores them (property strings stay text).
    pub config: BTreeMap<String, String>,
    pub template: bool,
    pub power: PowerState,
    pub lock: Option<String>,
    pub snapshots: Vec<SnapshotEntry>,
    pub firewall_options: Map<String, Value>,
    pub firewall_rules: Vec<FirewallRuleEntry>,
    /// Set while running: the guest agent answers from this moment on.
    #[serde(skip)]
    pub agent_ready_at: Option<Instant>,
    #[serde(skip)]
    pub started_at: Option<Instant>,
    /// The address the guest reports once its agent answers.
    pub guest_ip: Option<String>,
    pub pid: Option<u32>,
    /// When the config appeared (ms since simulator start), for `/cluster/resources` lag.
    pub created_ms: u64,
    /// Whether the disk image runs qemu-guest-agent (Ubuntu's cloud images do not): a
    /// property of the disk, so clones inherit it.
    pub image_has_agent: bool,
    /// `[PENDING]`: changes to a running VM that cannot be hot-plugged; applied at its
    /// next start.
    pub pending: BTreeMap<String, String>,
}

impl Vm {
    /// A stopped VM with `config` (no lock, snapshots, firewall or guest yet).
    pub fn new(vmid: u32, node: &str, config: BTreeMap<String, String>, created_ms: u64) -> Vm {
        Vm {
            vmid,
            node: node.to_string(),
            config,
            template: false,
            power: PowerState::Stopped,
            lock: None,
            snapshots: Vec::new(),
            firewall_options: Map::new(),
            firewall_rules: Vec::new(),
            agent_ready_at: None,
            started_at: None,
            guest_ip: None,
            pid: None,
            created_ms,
            image_has_agent: true,
            pending: BTreeMap::new(),
        }
    }

    pub fn name(&self) -> String {
        self.config.get("name").cloned().unwrap_or_else(|| format!("VM {}", self.vmid))
    }

    /// SHA1-like digest of the config (any stable hash serves optimistic concurrency).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for (k, v) in &self.config {
            hasher.update(k.as_bytes());
            hasher.update(b"=");
            hasher.update(v.as_bytes());
            hasher.update(b"\n");
        }
        let bytes = hasher.finalize();
        bytes.iter().take(20).map(|b| format!("{b:02x}")).collect()
    }

    pub fn memory_bytes(&self) -> u64 {
        let mib: u64 = self
            .config
            .get("memory")
            .and_then(|m| m.split(',').next())
            .and_then(|m| m.trim_start_matches("current=").parse().ok())
            .unwrap_or(512);
        mib * 1024 * 1024
    }

    pub fn cores(&self) -> u64 {
        self.config.get("cores").and_then(|c| c.parse().ok()).unwrap_or(1)
    }

    /// Volume ids the config references (disks, unused, cloud-init drive), with their keys.
    pub fn referenced_volumes(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .filter(|(k, _)| is_disk_key(k) || k.starts_with("unused"))
            .filter_map(|(k, v)| {
                let volid = v.split(',').next()?.to_string();
                (volid.contains(':') && volid != "none" && !v.contains("media=cdrom") || volid.ends_with("-cloudinit"))
                    .then(|| (k.clone(), volid))
            })
            .collect()
    }
}

/// The key of the VM's cloud-init drive: a drive whose volume is `vm-<vmid>-cloudinit`
/// (qemu-server `src/PVE/QemuServer/Cloudinit.pm` generate_cloudinit_config, 701-724:
/// only such a drive gets the generated ISO; without one `cicustom` is silently unused).
pub fn cloudinit_drive(config: &BTreeMap<String, String>, vmid: u32) -> Option<String> {
    let name = format!("vm-{vmid}-cloudinit");
    config
        .iter()
        .find(|(k, v)| is_disk_key(k) && v.split(',').next().is_some_and(|f| f.contains(&name)))
        .map(|(k, _)| k.clone())
}

/// The volume ids of a config's disks (no CD-ROM, no `unusedN`, no cloud-init drive).
pub fn disk_volumes(config: &BTreeMap<String, String>) -> Vec<String> {
    config
        .iter()
        .filter(|(k, v)| is_disk_key(k) && !v.contains("media=cdrom"))
        .filter_map(|(_, v)| v.split(',').next())
        .filter(|volid| volid.contains(':') && *volid != "none" && !volid.ends_with("-cloudinit"))
        .map(str::to_string)
        .collect()
}

pub fn is_disk_key(key: &str) -> bool {
    ["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"]
        .iter()
        .any(|p| key.strip_prefix(p).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Dir,
    LvmThin,
    ZfsPool,
    /// Ceph RBD: block storage shared by every node (linked clones like LVM-thin).
    Rbd,
}

impl StorageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Dir => "dir",
            StorageKind::LvmThin => "lvmthin",
            StorageKind::ZfsPool => "zfspool",
            StorageKind::Rbd => "rbd",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VolumeEntry {
    pub volname: String,
    pub owner: Option<u32>,
    pub size: u64,
    pub format: String,
    pub content: String,
    /// The disk image file the volume's content came from (a template's image, an
    /// `import-from` source): what the QEMU runtime boots. Clones inherit it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<PathBuf>,
}

impl VolumeEntry {
    /// An `images` volume with no content of its own.
    pub fn new(volname: &str, owner: Option<u32>, size: u64, format: &str) -> VolumeEntry {
        VolumeEntry {
            volname: volname.to_string(),
            owner,
            size,
            format: format.to_string(),
            content: "images".into(),
            image: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    pub id: String,
    pub kind: StorageKind,
    pub content: Vec<String>,
    /// For directory storages: the mount point (`<path>/snippets/` holds snippets).
    pub path: Option<PathBuf>,
    pub total: u64,
    pub volumes: BTreeMap<String, VolumeEntry>,
    /// The same storage on every node (NFS, Ceph, …); a node-local one (`local`) is a
    /// different directory on each node.
    pub shared: bool,
    /// `nodes` in storage.cfg: where the storage exists (`None`: every node).
    pub nodes: Option<Vec<String>>,
    /// `content-dirs` in storage.cfg: a content type's subdirectory when it is not the
    /// default (`snippets=my-snippets`).
    pub content_dirs: BTreeMap<String, String>,
}

impl Storage {
    /// A storage as storage.cfg has it before any option: every node, node-local, default
    /// subdirectories.
    pub fn new(id: &str, kind: StorageKind, content: Vec<String>, path: Option<PathBuf>, total: u64) -> Storage {
        Storage {
            id: id.to_string(),
            kind,
            content,
            path,
            total,
            volumes: BTreeMap::new(),
            shared: false,
            nodes: None,
            content_dirs: BTreeMap::new(),
        }
    }

    /// Where snippets are read from: `<path>/<content-dirs.snippets // snippets>` (pve-storage
    /// `src/PVE/Storage/Plugin.pm` get_subdir, 853-864, honours `content-dirs`).
    pub fn snippets_dir(&self) -> Option<PathBuf> {
        let sub = self.content_dirs.get("snippets").map_or("snippets", String::as_str);
        self.path.as_ref().map(|p| p.join(sub))
    }

    /// Whether the storage exists on `node`.
    pub fn on_node(&self, node: &str) -> bool {
        self.nodes.as_ref().is_none_or(|nodes| nodes.iter().any(|n| n == node))
    }

    pub fn used(&self) -> u64 {
        self.volumes.values().map(|v| v.size).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityGroupEntry {
    pub comment: Option<String>,
    pub rules: Vec<FirewallRuleEntry>,
}

/// One member of a cluster IP set, as `cluster.fw` keeps it (`[!]<cidr> [# comment]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpSetMember {
    /// Normalised as IPSet.pm create_ip does (host bits cleared, `/32` and `/128` dropped).
    pub cidr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nomatch: bool,
}

/// A cluster IP set (`[IPSET <name>] # comment` in `cluster.fw`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IpSetDef {
    pub comment: Option<String>,
    /// In the order `cluster.fw` is written and read back: sorted by cidr text
    /// (pve-firewall `src/PVE/Firewall.pm` format_ipsets, 3770-3800).
    pub members: Vec<IpSetMember>,
}

/// A node's `host.fw`: its options and rules (`/etc/pve/nodes/<node>/host.fw`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFirewall {
    pub options: Map<String, Value>,
    pub rules: Vec<FirewallRuleEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeEntry {
    pub name: String,
    pub maxmem: u64,
    pub maxcpu: u64,
}

/// A container: only what the cluster-wide views show. VMIDs are one namespace for
/// VMs and containers (pve-cluster's vmlist), so a container's VMID is taken for a VM too.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerEntry {
    pub vmid: u32,
    pub node: String,
    pub name: String,
    pub tags: Option<String>,
    pub running: bool,
}

/// The whole cluster.
#[derive(Debug, Serialize)]
pub struct World {
    pub nodes: Vec<NodeEntry>,
    pub vms: BTreeMap<u32, Vm>,
    pub containers: BTreeMap<u32, ContainerEntry>,
    pub storages: BTreeMap<String, Storage>,
    pub cluster_firewall: Map<String, Value>,
    pub groups: BTreeMap<String, SecurityGroupEntry>,
    /// Cluster IP sets by name (`cluster.fw`; names are lower-cased when it is read back).
    pub ipsets: BTreeMap<String, IpSetDef>,
    /// Host firewall per node (created on first write).
    pub host_firewall: BTreeMap<String, HostFirewall>,
    pub next_pid: u32,
    pub guest_subnet: Ipv4Addr,
    /// Volumes freed since the process runtime last looked: their directories (a data disk
    /// as the guest process sees it) are removed before any guest starts, so a volume
    /// allocated again under the same name starts empty, as a new volume does.
    #[serde(skip)]
    pub freed_volumes: Vec<String>,
}

impl World {
    /// Whether any guest (VM or container) has this VMID.
    pub fn vmid_taken(&self, vmid: u32) -> bool {
        self.vms.contains_key(&vmid) || self.containers.contains_key(&vmid)
    }

    pub fn node_exists(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n.name == node)
    }

    /// The VM `vmid` if it lives on `node` (Proxmox keeps configs per node).
    pub fn vm_on(&self, node: &str, vmid: u32) -> Option<&Vm> {
        self.vms.get(&vmid).filter(|vm| vm.node == node)
    }

    pub fn vm_on_mut(&mut self, node: &str, vmid: u32) -> Option<&mut Vm> {
        self.vms.get_mut(&vmid).filter(|vm| vm.node == node)
    }

    pub fn pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    /// A deterministic guest address in the guest subnet for `vmid`.
    pub fn guest_ip_for(&self, vmid: u32) -> String {
        let [a, b, _, _] = self.guest_subnet.octets();
        let host = vmid % 60_000 + 10;
        Ipv4Addr::new(a, b, (host / 250) as u8, (host % 250 + 2) as u8).to_string()
    }

    /// Splits `storage:volname` and finds the storage.
    pub fn parse_volid<'a>(&self, volid: &'a str) -> Option<(&'a str, &'a str)> {
        volid.split_once(':').filter(|(s, _)| self.storages.contains_key(*s))
    }

    /// The owner VMID encoded in a volume name (`vm-<N>-`, `base-<N>-`, dir `<N>/`).
    pub fn owner_of(volname: &str) -> Option<u32> {
        let last = volname.rsplit('/').next().unwrap_or(volname);
        for prefix in ["vm-", "base-"] {
            if let Some(rest) = last.strip_prefix(prefix) {
                return rest.split('-').next().and_then(|n| n.parse().ok());
            }
        }
        None
    }

    /// Frees a volume (no-op if already gone).
    pub fn free_volume(&mut self, volid: &str) -> bool {
        match volid.split_once(':') {
            Some((storage, volname)) => {
                let freed = self.storages.get_mut(storage).is_some_and(|s| s.volumes.remove(volname).is_some());
                if freed {
                    self.freed_volumes.push(volid.to_string());
                }
                freed
            }
            None => false,
        }
    }

    /// The next free `vm-<vmid>-disk-N` name on a storage.
    pub fn next_disk_name(&self, storage: &str, vmid: u32) -> String {
        let volumes = self.storages.get(storage).map(|s| &s.volumes);
        let dir = self.storages.get(storage).is_some_and(|s| s.kind == StorageKind::Dir);
        (0..)
            .map(|n| if dir { format!("{vmid}/vm-{vmid}-disk-{n}.qcow2") } else { format!("vm-{vmid}-disk-{n}") })
            .find(|name| volumes.is_none_or(|v| !v.contains_key(name)))
            .unwrap_or_default()
    }
}
