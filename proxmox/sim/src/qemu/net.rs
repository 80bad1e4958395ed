//! A VM NIC's host side, wired as Proxmox wires it (qemu-server's `pve-bridge` script →
//! pve-common `src/PVE/Network.pm` tap_plug): the tap `tap<vmid>i<n>` straight on the
//! bridge, or, with `firewall=1`, behind the per-VM firewall bridge `fwbr<vmid>i<n>`, which
//! the veth pair `fwln<vmid>i<n>`/`fwpr<vmid>p<n>` links to the bridge (review F16: what
//! the host ruleset sees on the bridge is then `fwpr…`, not the tap).

use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub index: u32,
    pub model: String,
    pub mac: String,
    pub bridge: String,
    pub firewall: bool,
}

impl Nic {
    /// A `netN` value: `virtio=BC:24:…,bridge=vmbr1,firewall=1`.
    pub fn parse(index: u32, value: &str) -> Result<Nic, String> {
        let mut nic = Nic { index, model: String::new(), mac: String::new(), bridge: String::new(), firewall: false };
        for part in value.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "bridge" => nic.bridge = v.to_string(),
                "firewall" => nic.firewall = v == "1",
                "macaddr" => nic.mac = v.to_string(),
                "model" => nic.model = v.to_string(),
                "virtio" | "e1000" | "e1000e" | "rtl8139" | "vmxnet3" if nic.model.is_empty() => {
                    nic.model = k.to_string();
                    nic.mac = v.to_string();
                }
                _ => {}
            }
        }
        if nic.bridge.is_empty() {
            // Proxmox starts such a NIC unconnected (user networking is not a thing there);
            // a sandbox without a bridge cannot reach the daemon: refuse.
            return Err(format!("net{index}: no bridge (pve-sim's QEMU runtime needs bridge=)"));
        }
        if nic.mac.is_empty() {
            return Err(format!("net{index}: no MAC address"));
        }
        Ok(nic)
    }

    pub fn tap(&self, vmid: u32) -> String {
        format!("tap{vmid}i{}", self.index)
    }

    /// QEMU's device model name.
    pub fn device(&self) -> &'static str {
        match self.model.as_str() {
            "e1000" => "e1000",
            "e1000e" => "e1000e",
            "rtl8139" => "rtl8139",
            "vmxnet3" => "vmxnet3",
            _ => "virtio-net-pci",
        }
    }

    /// The interfaces this NIC adds on the host, removed when the VM stops.
    pub fn host_links(&self, vmid: u32) -> Vec<String> {
        let n = self.index;
        if self.firewall {
            vec![self.tap(vmid), format!("fwbr{vmid}i{n}"), format!("fwln{vmid}i{n}")]
        } else {
            vec![self.tap(vmid)]
        }
    }

    /// The `ip` commands that create the tap and plug it in.
    fn plug_commands(&self, vmid: u32) -> Vec<Vec<String>> {
        let tap = self.tap(vmid);
        let n = self.index;
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let mut out = vec![words(&format!("ip tuntap add dev {tap} mode tap"))];
        if self.firewall {
            let (fwbr, fwln, fwpr) = (format!("fwbr{vmid}i{n}"), format!("fwln{vmid}i{n}"), format!("fwpr{vmid}p{n}"));
            out.extend([
                words(&format!("ip link add {fwbr} type bridge")),
                words(&format!("ip link set {fwbr} up")),
                words(&format!("ip link add {fwln} type veth peer name {fwpr}")),
                words(&format!("ip link set {fwpr} master {} up", self.bridge)),
                words(&format!("ip link set {fwln} master {fwbr} up")),
                words(&format!("ip link set {tap} master {fwbr} up")),
            ]);
        } else {
            out.push(words(&format!("ip link set {tap} master {} up", self.bridge)));
        }
        out
    }

    /// Creates the host side. An absent bridge is Proxmox's "bridge 'X' does not exist"
    /// (pve-common Network.pm tap_plug).
    pub fn plug(&self, vmid: u32) -> Result<(), String> {
        if !std::path::Path::new(&format!("/sys/class/net/{}/bridge", self.bridge)).exists() {
            return Err(format!("bridge '{}' does not exist", self.bridge));
        }
        self.unplug(vmid);
        for command in self.plug_commands(vmid) {
            let out = Command::new(&command[0])
                .args(&command[1..])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                self.unplug(vmid);
                return Err(format!("{}: {err}", command.join(" ")));
            }
        }
        Ok(())
    }

    /// Removes what `plug` made (deleting a veth end removes its peer); missing links are fine.
    pub fn unplug(&self, vmid: u32) {
        for link in self.host_links(vmid) {
            let _ = Command::new("ip").args(["link", "del", &link]).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_names_and_wirings() {
        let nic = Nic::parse(0, "virtio=BC:24:11:AA:BB:CC,bridge=vmbr1,firewall=1").unwrap();
        assert_eq!((nic.mac.as_str(), nic.bridge.as_str(), nic.firewall), ("BC:24:11:AA:BB:CC", "vmbr1", true));
        assert_eq!(nic.host_links(1001), ["tap1001i0", "fwbr1001i0", "fwln1001i0"]);
        let plugged: Vec<String> = nic.plug_commands(1001).iter().map(|c| c.join(" ")).collect();
        assert!(plugged.contains(&"ip link set fwpr1001p0 master vmbr1 up".to_string()), "{plugged:?}");
        assert!(plugged.contains(&"ip link set tap1001i0 master fwbr1001i0 up".to_string()), "{plugged:?}");
        let plain = Nic::parse(1, "e1000=BC:24:11:AA:BB:CD,bridge=vmbr1").unwrap();
        assert_eq!(plain.device(), "e1000");
        assert_eq!(
            plain.plug_commands(7).last().map(|c| c.join(" ")),
            Some("ip link set tap7i1 master vmbr1 up".into())
        );
        assert!(Nic::parse(0, "virtio=BC:24:11:AA:BB:CC").unwrap_err().contains("no bridge"));
    }
}
