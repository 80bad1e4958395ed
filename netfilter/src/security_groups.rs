//! The three Proxmox security groups, one per network mode, and the exact API parameters
//! that create their rules.
//!
//! Facts of Proxmox that shape this (`proxmox/contract/behaviors.md`, Firewall): group names are at
//! most 18 characters and match `[A-Za-z][A-Za-z0-9\-\_]+`; a new rule is inserted at
//! position 0 and is *disabled* unless `enable=1` is sent; an address list must not mix
//! IPv4 and IPv6.

use std::net::IpAddr;

/// A network mode as this crate sees it (the profile's `network.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Off,
    Nat,
    Allowlist,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Off, Mode::Nat, Mode::Allowlist];

    pub fn group_name(self) -> &'static str {
        match self {
            Mode::Off => "agent_nat_off",
            Mode::Nat => "agent_nat_default",
            Mode::Allowlist => "agent_nat_allow",
        }
    }
}

/// The IP set an allowlist-mode sandbox may reach (filled from the profile's allowlist).
pub const ALLOWLIST_IPSET: &str = "agent_allow";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Drop => "DROP",
        }
    }
}

/// One outbound rule of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    pub action: Action,
    pub proto: Option<&'static str>,
    pub dest: Option<String>,
    pub dport: Option<String>,
    pub comment: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub name: &'static str,
    pub comment: &'static str,
    /// In evaluation order: the first match wins.
    pub rules: Vec<GroupRule>,
}

/// Private, shared and link-local ranges no sandbox may reach, per address family.
const BLOCKED_V4: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,169.254.0.0/16";
const BLOCKED_V6: &str = "fc00::/7,fe80::/10";

fn rule(
    action: Action,
    proto: Option<&'static str>,
    dest: Option<String>,
    dport: Option<String>,
    comment: &'static str,
) -> GroupRule {
    GroupRule { action, proto, dest, dport, comment }
}

/// The group for `mode`. `gateway` is the agent bridge address where the guest listener
/// runs on `listener_ports`; it is the one private address every mode may reach.
pub fn group_for(mode: Mode, gateway: IpAddr, listener_ports: &[u16]) -> SecurityGroup {
    let ports = listener_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let mut rules = vec![
        rule(Action::Accept, Some("tcp"), Some(gateway.to_string()), Some(ports), "AgentLab guest listener"),
        rule(Action::Accept, Some("udp"), None, Some("67".into()), "DHCP on the agent bridge"),
    ];
    // DNS is forwarded to the host's resolvers, a channel out: not for `off`.
    if mode != Mode::Off {
        for proto in ["udp", "tcp"] {
            rules.push(rule(
                Action::Accept,
                Some(proto),
                Some(gateway.to_string()),
                Some("53".into()),
                "DNS on the gateway",
            ));
        }
    }
    let comment = match mode {
        Mode::Off => {
            rules.push(rule(Action::Drop, None, None, None, "no other traffic"));
            "AgentLab network mode off: only the guest listener"
        }
        Mode::Nat => {
            rules.push(rule(Action::Drop, None, Some(BLOCKED_V4.into()), None, "no LAN, tailnet or link-local (IPv4)"));
            rules.push(rule(Action::Drop, None, Some(BLOCKED_V6.into()), None, "no ULA or link-local (IPv6)"));
            rules.push(rule(Action::Accept, None, None, None, "the Internet through NAT"));
            "AgentLab network mode nat: Internet only"
        }
        Mode::Allowlist => {
            rules.push(rule(
                Action::Accept,
                None,
                Some(format!("+{ALLOWLIST_IPSET}")),
                None,
                "allowlisted destinations",
            ));
            rules.push(rule(Action::Drop, None, None, None, "nothing else"));
            "AgentLab network mode allowlist: listed destinations only"
        }
    };
    SecurityGroup { name: mode.group_name(), comment, rules }
}

impl SecurityGroup {
    /// Form parameters of `POST /cluster/firewall/groups/{group}`, one request per rule,
    /// in the order to send them: each lands at position 0, so the last rule goes first.
    pub fn rule_requests(&self) -> Vec<Vec<(&'static str, String)>> {
        self.rules
            .iter()
            .rev()
            .map(|r| {
                let mut params = vec![
                    ("type", "out".to_string()),
                    ("action", r.action.as_str().to_string()),
                    ("enable", "1".to_string()),
                    ("pos", "0".to_string()),
                    ("comment", r.comment.to_string()),
                ];
                if let Some(proto) = r.proto {
                    params.push(("proto", proto.to_string()));
                }
                if let Some(dest) = &r.dest {
                    params.push(("dest", dest.clone()));
                }
                if let Some(dport) = &r.dport {
                    params.push(("dport", dport.clone()));
                }
                params
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn gateway() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))
    }

    #[test]
    fn names_fit_proxmox_rules() {
        for mode in Mode::ALL {
            let name = mode.group_name();
            assert!(name.len() <= 18, "{name}");
            let mut chars = name.chars();
            assert!(chars.next().is_some_and(|c| c.is_ascii_alphabetic()));
            assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{name}");
        }
    }

    #[test]
    fn every_mode_reaches_the_listener_first_and_nat_blocks_private_ranges_before_accepting() {
        for mode in Mode::ALL {
            let group = group_for(mode, gateway(), &[8844, 8846]);
            assert_eq!(group.rules[0].dest.as_deref(), Some("10.77.0.1"));
            assert_eq!(group.rules[0].dport.as_deref(), Some("8844,8846"));
            let last = group.rules.last().map(|r| r.action);
            let expected = if mode == Mode::Nat { Action::Accept } else { Action::Drop };
            assert_eq!(last, Some(expected), "{mode:?}");
        }
        let nat = group_for(Mode::Nat, gateway(), &[8844]);
        let drops: Vec<&str> =
            nat.rules.iter().filter(|r| r.action == Action::Drop).filter_map(|r| r.dest.as_deref()).collect();
        assert_eq!(drops, [BLOCKED_V4, BLOCKED_V6], "address lists never mix families");
    }

    #[test]
    fn requests_are_enabled_and_reversed_so_position_0_inserts_keep_the_order() {
        let group = group_for(Mode::Off, gateway(), &[8844]);
        let requests = group.rule_requests();
        assert_eq!(requests.len(), group.rules.len());
        assert!(requests.iter().all(|r| r.contains(&("enable", "1".to_string()))));
        let first_sent_comment = requests[0].iter().find(|(k, _)| *k == "comment").map(|(_, v)| v.clone());
        assert_eq!(first_sent_comment.as_deref(), group.rules.last().map(|r| r.comment));
    }
}
