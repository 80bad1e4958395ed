//! The host's own nftables ruleset: what a sandbox may reach however Proxmox's firewall
//! switches are set. `policy` is the input (validated types, so nothing rendered can carry
//! nft syntax), `render` turns it into one ruleset text, `nft` loads it atomically.

mod policy;
mod render;

pub use policy::{Binding, DEFAULT_BLOCKED_V4, HostPolicy, IfName, MacAddr, PolicyError};
pub use render::{ARP_SET, TABLE, render};
