//! The host's side of network isolation: the nftables ruleset kept in step with the
//! sandboxes (`host_table`), and the egress record folded in from it.

mod host_table;
pub mod layers;

pub use host_table::{HostNetSettings, HostTable, HostTableError, TableState};
pub use layers::{Isolation, isolation};

use crate::model::NetworkMode;
use crate::profiles::ProfileRegistry;
use agentlab_netfilter::Mode;
use agentlab_netfilter::allowlist::AllowEntry;
use std::sync::Arc;

/// The model's network mode as the netfilter crate names it.
pub fn mode_of(mode: NetworkMode) -> Mode {
    match mode {
        NetworkMode::Off => Mode::Off,
        NetworkMode::Nat => Mode::Nat,
        NetworkMode::Allowlist => Mode::Allowlist,
    }
}

/// A profile's allowlist entries (validated at load; an unknown profile has none).
pub fn allow_entries(profiles: &ProfileRegistry, profile: &str) -> Vec<AllowEntry> {
    let set = profiles.snapshot();
    let Some(loaded) = set.get(profile) else { return Vec::new() };
    loaded.profile.network.allowlist.iter().filter_map(|e| e.parse().ok()).collect()
}

/// A network as a Proxmox IP set member is stored: a host without its `/32`.
pub fn ipset_member(net: ipnet::Ipv4Net) -> String {
    if net.prefix_len() == 32 { net.addr().to_string() } else { net.to_string() }
}

/// The host table's state, read off the runtime (`nft` is a process); `None` when the
/// daemon does not manage one.
pub async fn table_state(table: Option<&Arc<HostTable>>) -> Option<TableState> {
    let table = Arc::clone(table?);
    Some(
        tokio::task::spawn_blocking(move || table.state()).await.unwrap_or_else(|e| TableState::Unknown(e.to_string())),
    )
}
