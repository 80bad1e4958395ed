//! AgentLab network policy, as data and as the commands that enforce it: the Proxmox
//! security groups of each network mode, the host's nftables ruleset (rendered from a
//! policy, loaded atomically), allowlist resolution, the egress record and the conntrack
//! probe idle-stop reads. A leaf crate: no dependency on the rest of AgentLab.

pub mod allowlist;
pub mod conntrack;
pub mod dns;
pub mod egress;
pub mod host;
pub mod nft;
mod program;
pub mod security_groups;

pub use security_groups::{Action, GroupRule, Mode, SecurityGroup, group_for};
