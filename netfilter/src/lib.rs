//! AgentLab network policy, as data: the Proxmox security groups that enforce each network
//! mode. (The host nftables ruleset and conntrack probes join this crate with the network
//! capability.) A leaf crate: no dependency on the rest of AgentLab.

pub mod security_groups;

pub use security_groups::{Action, GroupRule, Mode, SecurityGroup, group_for};
