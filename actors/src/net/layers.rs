//! Which isolation layers are active, and what that means: with neither the Proxmox
//! datacenter firewall on nor the host ruleset loaded, nothing keeps a sandbox off the LAN
//! (review F2), so no sandbox is provisioned; with one of them, `status` says which layer
//! is missing.

use super::TableState;

/// The fixes, in the words every message uses.
pub const ENABLE_DATACENTER: &str = "turn on the Proxmox datacenter firewall (`pvesh set /cluster/firewall/options --enable 1`, or Datacenter → Firewall → Options → Firewall: Yes)";
pub const LOAD_HOST_TABLE: &str = "load the AgentLab host ruleset (`agentlabd net apply`, or `scripts/net/apply.sh --apply`; `host_ruleset: managed` keeps it current)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    Both,
    /// Provisioning goes on; the text says which layer is missing and how to add it.
    OneLayer(String),
    /// Provisioning is refused, with both fixes.
    None(String),
}

/// `datacenter`: `/cluster/firewall/options` `enable`; `host`: the host table's state
/// (`None` when `host_ruleset: off`).
pub fn isolation(datacenter: bool, host: Option<&TableState>) -> Isolation {
    let host_loaded = host == Some(&TableState::Loaded);
    match (datacenter, host_loaded) {
        (true, true) => Isolation::Both,
        (false, true) => Isolation::OneLayer(format!(
            "the Proxmox datacenter firewall is off: only the host ruleset isolates sandboxes; to add the second layer, {ENABLE_DATACENTER}"
        )),
        (true, false) => Isolation::OneLayer(format!(
            "the host ruleset is {}: only Proxmox's firewall isolates sandboxes; to add the second layer, {LOAD_HOST_TABLE}",
            describe(host)
        )),
        (false, false) => Isolation::None(format!(
            "no network isolation is active (the Proxmox datacenter firewall is off and the host ruleset is {}), so a sandbox could reach your LAN; {ENABLE_DATACENTER}, or {LOAD_HOST_TABLE}",
            describe(host)
        )),
    }
}

pub fn describe(host: Option<&TableState>) -> String {
    match host {
        None => "off (host_ruleset: off)".into(),
        Some(TableState::Loaded) => "loaded".into(),
        Some(TableState::Absent) => "not loaded".into(),
        Some(TableState::Unknown(why)) => format!("unknown ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination_of_the_two_layers() {
        let loaded = TableState::Loaded;
        let absent = TableState::Absent;
        let unknown = TableState::Unknown("nft: not found".into());
        let table: [(bool, Option<&TableState>, &str); 8] = [
            (true, Some(&loaded), "both"),
            (false, Some(&loaded), "datacenter"),
            (true, Some(&absent), "host"),
            (true, None, "host"),
            (true, Some(&unknown), "host"),
            (false, Some(&absent), "none"),
            (false, None, "none"),
            (false, Some(&unknown), "none"),
        ];
        for (datacenter, host, want) in table {
            let got = isolation(datacenter, host);
            let kind = match &got {
                Isolation::Both => "both",
                Isolation::OneLayer(text) if text.contains("datacenter firewall is off") => "datacenter",
                Isolation::OneLayer(_) => "host",
                Isolation::None(text) => {
                    assert!(text.contains("pvesh set /cluster/firewall/options --enable 1"), "{text}");
                    assert!(text.contains("agentlabd net apply"), "{text}");
                    "none"
                }
            };
            assert_eq!(kind, want, "datacenter={datacenter} host={host:?}");
        }
    }
}
