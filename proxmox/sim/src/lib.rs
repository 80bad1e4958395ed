//! `pve-sim`: a Proxmox VE API simulator that behaves as `contract/` says Proxmox does.
//!
//! Every request is validated against `endpoints.json` (Proxmox's 400 shape on failure);
//! answers use the `{"data": …}` envelope; async calls return real-format UPIDs whose task
//! moves from `running` to `stopped` with `OK` or Proxmox's error text; config locks,
//! template-only linked clones, the storage lock and its timeout, snippets read at start,
//! a guest agent that answers only some time after start, several nodes, a latency model
//! and fault injection. An admin listener (plain HTTP, loopback) dumps state and the
//! request log with each request's validation verdict, changes faults, and serves the
//! `pvesh`/`qm`/`pvesm` personalities so the shell backend runs against the same state.
//!
//! `contract` holds Proxmox's API schema (`proxmox/contract/endpoints.json`, embedded) and
//! validates requests with Proxmox's exact 400 texts. Architecture invariant: `agentlabd`
//! never links this crate; the product talks to it only over HTTP or as `pvesh`.

pub mod admin;
pub mod cli;
pub mod contract;
mod engine;
mod guest;
mod handlers;
pub mod http;
mod in_process;
pub mod latency;
pub mod permissions;
pub mod qemu;
pub mod server;
pub mod tls;
mod world;

pub use engine::{Fault, FaultConfig, MoveError, RequestRecord, Sim, SimError, TaskEntry};
pub use in_process::InProcessTransport;
pub use latency::LatencyModel;
pub use server::{SimHandle, start};
pub use world::{PowerState, Storage, StorageKind, Vm, World};

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Everything `pve-sim` can be told at start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// API listener (TLS).
    pub listen: SocketAddr,
    /// Admin listener (plain HTTP; keep it on loopback).
    pub admin_listen: SocketAddr,
    /// Where the TLS key and certificate live (generated on first use).
    pub state_dir: PathBuf,
    /// Node names (`pve1`, `pve2`, …).
    pub nodes: Vec<String>,
    /// Template VMIDs created on the first node at start (`agentlab-template-<id>`).
    pub templates: Vec<u32>,
    /// Templates on a given node (`VMID@NODE`).
    pub placed_templates: Vec<(u32, String)>,
    /// Accepted API tokens, `USER@REALM!TOKENID=SECRET`.
    pub tokens: Vec<String>,
    /// Privilege-separated tokens (`user@realm!token` → the privileges granted to it on
    /// `/`); a token not listed may do anything (see `permissions`).
    pub token_privileges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// The `local` directory storage's path: snippets live in `<path>/snippets/`.
    pub local_storage_path: PathBuf,
    /// Guest addresses are handed out from this /16.
    pub guest_subnet: Ipv4Addr,
    /// Error bodies without `message` (PVE before libpve-http-server-perl 5.2.0): the text
    /// is only in the HTTP reason phrase.
    pub legacy_errors: bool,
    /// The datacenter firewall switch at start. Off on a fresh Proxmox (pve-firewall
    /// `src/PVE/Firewall.pm` 1283-1290, cluster `enable` `default => 0`); an operator turns
    /// it on, so test fixtures that stand for a set-up host do too.
    pub datacenter_firewall: bool,
    pub latency: LatencyModel,
    pub faults: FaultConfig,
    /// Seed of the fault dice (same seed, same faults).
    pub seed: u64,
    /// Run a real guest program for each started VM.
    pub guest: Option<GuestRuntime>,
    /// Run each started VM as a real QEMU virtual machine (exclusive with `guest`).
    pub qemu: Option<qemu::QemuRuntime>,
}

/// The "VM runtime": when a VM starts, the simulator runs `program` as its guest, with the
/// bootstrap descriptor that cloud-init would have written (taken from the VM's `cicustom`
/// user snippet). Guests run on loopback and report `address` through the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRuntime {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
    /// Per-VM directories (`<root>/<vmid>/{etc,secrets,repo,run}`) and the guest's log.
    pub root: PathBuf,
    pub address: String,
    /// Extra environment for every guest.
    pub env: Vec<(String, String)>,
}

impl SimConfig {
    /// A simulator on ephemeral loopback ports with one node and template 9000.
    pub fn for_tests(state_dir: PathBuf) -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            local_storage_path: state_dir.join("local"),
            state_dir,
            nodes: vec!["pve1".into()],
            templates: vec![9000],
            placed_templates: Vec::new(),
            tokens: vec![TEST_TOKEN.into()],
            guest_subnet: Ipv4Addr::new(10, 77, 0, 0),
            legacy_errors: false,
            datacenter_firewall: false,
            latency: LatencyModel::scaled(0.01),
            token_privileges: Default::default(),
            faults: FaultConfig::default(),
            seed: 7,
            guest: None,
            qemu: None,
        }
    }
}

/// The token `SimConfig::for_tests` accepts.
pub const TEST_TOKEN: &str = "root@pam!agentlab=11111111-2222-3333-4444-555555555555";
