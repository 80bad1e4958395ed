//! The host's side of network isolation: the nftables ruleset kept in step with the
//! sandboxes (`host_table`), and the egress record folded in from it.

mod host_table;
pub mod layers;

pub use host_table::{HostNetSettings, HostTable, HostTableError, TableState};
pub use layers::{Isolation, isolation};
