//! From a VM's config to QEMU's command line: the devices Proxmox would give it (disks on
//! the bus their key names, the cloud-init ISO where the cloud-init drive is, NICs on taps,
//! the guest-agent channel only when `agent` is enabled) and, for images that bring their
//! own kernel, a direct kernel boot.

use super::net::Nic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// One drive as QEMU opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// The config key: `scsi0`, `virtio1`, `sata2`, `ide2`.
    pub key: String,
    pub file: PathBuf,
    pub format: &'static str,
    pub cdrom: bool,
}

/// An image's own kernel: `vmlinuz`, `initrd.img` and `cmdline` beside it (what
/// scripts/template/build_debian_image.sh writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

impl Kernel {
    pub fn beside(image: &Path) -> Option<Kernel> {
        let dir = image.parent()?;
        let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd.img"));
        let cmdline = std::fs::read_to_string(dir.join("cmdline")).ok()?;
        (kernel.is_file() && initrd.is_file()).then(|| Kernel { kernel, initrd, cmdline: cmdline.trim().to_string() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub vmid: u32,
    pub accel: Accel,
    pub q35: bool,
    pub memory_mib: u64,
    pub vcpus: u64,
    pub drives: Vec<Drive>,
    pub nics: Vec<Nic>,
    pub agent: bool,
    pub kernel: Option<Kernel>,
    /// `boot: order=scsi0;net0`: the boot index of each key.
    pub boot_order: Vec<String>,
    /// Sockets, console log.
    pub dir: PathBuf,
}

impl Plan {
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The argument vector (without the program).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let machine = if self.q35 { "q35" } else { "pc" };
        let (accel, cpu) = match self.accel {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg", "max"),
        };
        push(&["-name", &format!("vm{}", self.vmid), "-nodefaults", "-display", "none"]);
        push(&["-machine", machine, "-accel", accel, "-cpu", cpu]);
        push(&["-m", &self.memory_mib.to_string(), "-smp", &self.vcpus.to_string()]);
        push(&["-serial", &format!("file:{}", self.console_log().display())]);
        push(&["-qmp", &format!("unix:{},server=on,wait=off", self.qmp_socket().display())]);
        if let Some(k) = &self.kernel {
            push(&[
                "-kernel",
                &k.kernel.to_string_lossy(),
                "-initrd",
                &k.initrd.to_string_lossy(),
                "-append",
                &k.cmdline,
            ]);
        }
        if self.drives.iter().any(|d| d.key.starts_with("scsi")) {
            push(&["-device", "virtio-scsi-pci,id=scsihw0"]);
        }
        if self.drives.iter().any(|d| d.key.starts_with("sata")) {
            push(&["-device", "ahci,id=ahci0"]);
        }
        for drive in &self.drives {
            let id = format!("drive-{}", drive.key);
            let media = if drive.cdrom { ",media=cdrom,readonly=on" } else { ",discard=unmap" };
            push(&["-drive", &format!("file={},if=none,id={id},format={}{media}", drive.file.display(), drive.format)]);
            push(&["-device", &self.device_for(drive, &id)]);
        }
        for nic in &self.nics {
            let id = format!("net{}", nic.index);
            push(&["-netdev", &format!("tap,id={id},ifname={},script=no,downscript=no", nic.tap(self.vmid))]);
            let boot = self.boot_index(&id);
            push(&["-device", &format!("{},mac={},netdev={id},id={id}{boot}", nic.device(), nic.mac)]);
        }
        if self.agent {
            // qemu-server QemuServer.pm config_to_command: the agent's virtio-serial port
            // exists only when `agent` is enabled.
            push(&["-chardev", &format!("socket,path={},server=on,wait=off,id=qga0", self.agent_socket().display())]);
            push(&[
                "-device",
                "virtio-serial,id=qga-serial",
                "-device",
                "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            ]);
        }
        a
    }

    fn boot_index(&self, key: &str) -> String {
        self.boot_order.iter().position(|k| k == key).map_or(String::new(), |i| format!(",bootindex={}", i + 100))
    }

    fn device_for(&self, drive: &Drive, id: &str) -> String {
        let n: u32 = drive.key.trim_start_matches(|c: char| c.is_ascii_alphabetic()).parse().unwrap_or(0);
        let boot = self.boot_index(&drive.key);
        let (kind_hd, kind_cd) =
            if drive.key.starts_with("scsi") { ("scsi-hd", "scsi-cd") } else { ("ide-hd", "ide-cd") };
        let kind = if drive.cdrom { kind_cd } else { kind_hd };
        let key = &drive.key;
        if key.starts_with("scsi") {
            format!("{kind},bus=scsihw0.0,scsi-id={n},drive={id},id={key}{boot}")
        } else if key.starts_with("virtio") {
            format!("virtio-blk-pci,drive={id},id={key}{boot}")
        } else if key.starts_with("sata") {
            format!("{kind},bus=ahci0.{n},drive={id},id={key}{boot}")
        } else if self.q35 {
            // q35's ICH9 AHCI: six ports `ide.0`…`ide.5`, one unit each.
            format!("{kind},bus=ide.{n},drive={id},id={key}{boot}")
        } else {
            format!("{kind},bus=ide.{},unit={},drive={id},id={key}{boot}", n / 2, n % 2)
        }
    }
}

/// `boot: order=scsi0;ide2;net0` → the keys in order (legacy `boot: cdn` gives none).
pub fn boot_order(config: &BTreeMap<String, String>) -> Vec<String> {
    config
        .get("boot")
        .and_then(|b| b.split(',').find_map(|p| p.strip_prefix("order=")))
        .map(|o| o.split(';').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Cores × sockets (`vcpus` caps it, as in Proxmox).
pub fn vcpus(config: &BTreeMap<String, String>) -> u64 {
    let get = |k: &str, d: u64| config.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(d);
    let total = get("cores", 1) * get("sockets", 1);
    config.get("vcpus").and_then(|v| v.parse::<u64>().ok()).map_or(total, |v| v.min(total)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            vmid: 1001,
            accel: Accel::Tcg,
            q35: false,
            memory_mib: 2048,
            vcpus: 2,
            drives: vec![
                Drive { key: "scsi0".into(), file: "/v/d0.qcow2".into(), format: "qcow2", cdrom: false },
                Drive { key: "ide2".into(), file: "/v/seed.iso".into(), format: "raw", cdrom: true },
            ],
            nics: vec![Nic::parse(0, "virtio=BC:24:11:AA:BB:CC,bridge=vmbr1").unwrap()],
            agent: true,
            kernel: None,
            boot_order: vec!["scsi0".into()],
            dir: "/s/1001".into(),
        }
    }

    #[test]
    fn devices_follow_the_config() {
        let args = plan().args().join(" ");
        for expected in [
            "-accel tcg -cpu max",
            "-m 2048 -smp 2",
            "scsi-hd,bus=scsihw0.0,scsi-id=0,drive=drive-scsi0,id=scsi0,bootindex=100",
            "ide-cd,bus=ide.1,unit=0,drive=drive-ide2,id=ide2",
            "tap,id=net0,ifname=tap1001i0,script=no,downscript=no",
            "virtio-net-pci,mac=BC:24:11:AA:BB:CC,netdev=net0,id=net0",
            "name=org.qemu.guest_agent.0",
            "-qmp unix:/s/1001/qmp.sock,server=on,wait=off",
        ] {
            assert!(args.contains(expected), "missing {expected} in {args}");
        }
        let no_agent = Plan { agent: false, ..plan() }.args().join(" ");
        assert!(!no_agent.contains("guest_agent"), "{no_agent}");
    }

    #[test]
    fn cpus_and_boot_order() {
        let c: BTreeMap<String, String> =
            [("cores", "4"), ("sockets", "2"), ("vcpus", "6"), ("boot", "order=scsi0;ide2;net0")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(vcpus(&c), 6);
        assert_eq!(boot_order(&c), ["scsi0", "ide2", "net0"]);
    }
}
