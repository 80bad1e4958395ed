//! The policy the host ruleset is rendered from. Every field that reaches the ruleset text
//! is a parsed type (`IfName`, `MacAddr`, addresses, ports): a config file or a VM config
//! cannot smuggle nft syntax into it.

use crate::Mode;
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Private, shared (CGNAT, which is also the tailnet's range) and link-local IPv4 ranges.
pub const DEFAULT_BLOCKED_V4: [&str; 5] =
    ["10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("`{0}` is not an interface name (1-15 of A-Z a-z 0-9 . _ -)")]
    IfName(String),
    #[error("`{0}` is not a MAC address such as bc:24:11:5e:7a:01")]
    Mac(String),
    #[error("the gateway {gateway} is not inside the agent subnet {subnet}")]
    GatewayOutsideSubnet { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("sandbox {vmid}: its address {ip} is not inside the agent subnet {subnet}")]
    AddressOutsideSubnet { vmid: u32, ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("sandboxes {0} and {1} have the same MAC address")]
    SameMac(u32, u32),
    #[error("sandboxes {0} and {1} have the same address {2}")]
    SameAddress(u32, u32, Ipv4Addr),
    #[error("sandbox {0} has the gateway's address {1}")]
    GatewayAddress(u32, Ipv4Addr),
    #[error("no guest listener port: the guests could not reach the daemon")]
    NoListenerPort,
}

/// A Linux interface name (IFNAMSIZ 16 with the NUL), safe to quote in nft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(String);

impl FromStr for IfName {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let ok = (1..=15).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok { Ok(IfName(s.to_string())) } else { Err(PolicyError::IfName(s.to_string())) }
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::Mac(s.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() { Err(bad()) } else { Ok(MacAddr(bytes)) }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// One sandbox's place on the agent bridge. Its NIC is `net0`, so Proxmox names its tap
/// `tap<vmid>i0` and, with `firewall=1`, the veth end on the agent bridge `fwpr<vmid>p0`
/// (qemu-server `PVE/QemuServer.pm` tap naming; pve-firewall's fwbr wiring, review F16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub vmid: u32,
    pub mac: MacAddr,
    /// Known once the guest has its DHCP lease; until then only the MAC is bound.
    pub ip: Option<Ipv4Addr>,
    pub mode: Mode,
    /// What an allowlist-mode sandbox may reach (resolved addresses); empty otherwise.
    pub allow: Vec<Ipv4Net>,
}

impl Binding {
    pub fn tap(&self) -> String {
        format!("tap{}i0", self.vmid)
    }
    pub fn firewall_port(&self) -> String {
        format!("fwpr{}p0", self.vmid)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    pub agent_bridge: IfName,
    /// Where NAT'd traffic leaves the host (`vmbr0`).
    pub uplink: IfName,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub listener_ports: Vec<u16>,
    /// Never reachable from a sandbox (IPv6 is not forwarded at all: there is no IPv6 NAT).
    pub blocked_v4: Vec<Ipv4Net>,
    pub bindings: Vec<Binding>,
    /// Interfaces new SSH connections to sandboxes may come in on (e.g. `tailscale0`, for
    /// the Tailscale subnet route); nothing else may open a connection to a sandbox.
    pub ssh_ingress: Vec<IfName>,
}

impl HostPolicy {
    /// A policy with the default blocked ranges and no sandboxes.
    pub fn new(
        agent_bridge: IfName,
        uplink: IfName,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        listener_ports: Vec<u16>,
    ) -> Result<HostPolicy, PolicyError> {
        let policy = HostPolicy {
            agent_bridge,
            uplink,
            subnet: subnet.trunc(),
            gateway,
            listener_ports,
            blocked_v4: DEFAULT_BLOCKED_V4.iter().filter_map(|n| n.parse().ok()).collect(),
            bindings: Vec::new(),
            ssh_ingress: Vec::new(),
        };
        policy.validate()?;
        Ok(policy)
    }

    pub fn with_bindings(mut self, mut bindings: Vec<Binding>) -> Result<HostPolicy, PolicyError> {
        bindings.sort_by_key(|b| b.vmid);
        self.bindings = bindings;
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.subnet.contains(&self.gateway) {
            return Err(PolicyError::GatewayOutsideSubnet { gateway: self.gateway, subnet: self.subnet });
        }
        if self.listener_ports.is_empty() {
            return Err(PolicyError::NoListenerPort);
        }
        for (i, b) in self.bindings.iter().enumerate() {
            if let Some(ip) = b.ip.filter(|ip| !self.subnet.contains(ip)) {
                return Err(PolicyError::AddressOutsideSubnet { vmid: b.vmid, ip, subnet: self.subnet });
            }
            if let Some(other) = self.bindings[..i].iter().find(|o| o.mac == b.mac) {
                return Err(PolicyError::SameMac(other.vmid, b.vmid));
            }
            if let Some(ip) = b.ip {
                if ip == self.gateway {
                    return Err(PolicyError::GatewayAddress(b.vmid, ip));
                }
                if let Some(other) = self.bindings[..i].iter().find(|o| o.ip == Some(ip)) {
                    return Err(PolicyError::SameAddress(other.vmid, b.vmid, ip));
                }
            }
        }
        Ok(())
    }

    pub fn binding_for_mac(&self, mac: &MacAddr) -> Option<&Binding> {
        self.bindings.iter().find(|b| &b.mac == mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sandboxes_never_share_an_address_and_none_has_the_gateways() {
        let base = HostPolicy::new(
            "vmbr1".parse().expect("bridge"),
            "vmbr0".parse().expect("uplink"),
            "10.77.0.0/16".parse().expect("net"),
            Ipv4Addr::new(10, 77, 0, 1),
            vec![8844],
        )
        .expect("policy");
        let binding = |vmid, mac: &str, ip: [u8; 4]| Binding {
            vmid,
            mac: mac.parse().expect("mac"),
            ip: Some(Ipv4Addr::from(ip)),
            mode: Mode::Nat,
            allow: vec![],
        };
        let twice = base.clone().with_bindings(vec![
            binding(1, "02:00:00:00:00:01", [10, 77, 0, 9]),
            binding(2, "02:00:00:00:00:02", [10, 77, 0, 9]),
        ]);
        assert_eq!(twice.err(), Some(PolicyError::SameAddress(1, 2, Ipv4Addr::new(10, 77, 0, 9))));
        let gateway = base.with_bindings(vec![binding(3, "02:00:00:00:00:03", [10, 77, 0, 1])]);
        assert_eq!(gateway.err(), Some(PolicyError::GatewayAddress(3, Ipv4Addr::new(10, 77, 0, 1))));
    }

    #[test]
    fn interface_names_and_macs_are_parsed_not_trusted() {
        assert!("vmbr1".parse::<IfName>().is_ok());
        for bad in ["", "a\"b", "vmbr1 accept", "sixteen-chars-xx", "a;b"] {
            assert!(bad.parse::<IfName>().is_err(), "{bad}");
        }
        let mac: MacAddr = "BC:24:11:5E:7A:01".parse().expect("mac");
        assert_eq!(mac.to_string(), "bc:24:11:5e:7a:01");
        for bad in ["bc:24:11:5e:7a", "bc:24:11:5e:7a:01:02", "zz:24:11:5e:7a:01", "bc:24:11:5e:7a:1"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
