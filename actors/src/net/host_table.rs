//! Keeps the host ruleset in step with the sandboxes: renders the policy from the store
//! (each live sandbox's MAC, address, mode and allowlist), loads it, and folds the kernel's
//! dropped-attempt counters into the egress record before every reload. Blocking (it runs
//! `nft`): callers on the runtime use `spawn_blocking`.

use crate::profiles::ProfileRegistry;
use crate::store::{Store, StoreError};
use agentlab_model::model::{NetworkMode, SandboxState};
use agentlab_netfilter::allowlist::{AllowEntry, DomainCache};
use agentlab_netfilter::dns;
use agentlab_netfilter::egress::{self, EgressRecord};
use agentlab_netfilter::host::{Binding, HostPolicy, IfName, PolicyError, render};
use agentlab_netfilter::nft::{Nft, NftError};
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct HostNetSettings {
    pub agent_bridge: IfName,
    pub uplink: IfName,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub listener_ports: Vec<u16>,
    /// Where allowlist domains are resolved (the host's resolver, not the guests').
    pub dns_server: SocketAddr,
    /// Interfaces SSH to sandboxes may come in on (`ssh_ingress_interfaces`).
    pub ssh_ingress: Vec<IfName>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostTableError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `status` says about the host layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum TableState {
    Loaded,
    Absent,
    /// `nft` cannot run here (not installed, not root).
    Unknown(String),
}

pub struct HostTable {
    settings: HostNetSettings,
    nft: Nft,
    store: Arc<Store>,
    profiles: Arc<ProfileRegistry>,
    domains: Mutex<DomainCache>,
    record: Mutex<EgressRecord>,
    /// The origin of the domain cache's clock (seconds since).
    origin: tokio::time::Instant,
    /// One reload at a time: a render that started earlier must not load last (it would
    /// drop a newer binding), and a fold must not interleave with a reload.
    reloading: Mutex<()>,
    /// Whether reloads fold the kernel's counters into the store first (the daemon's
    /// keeper; `agentlabd net apply` next to a running daemon must not count them twice).
    folds: bool,
}

impl HostTable {
    pub fn new(settings: HostNetSettings, nft: Nft, store: Arc<Store>, profiles: Arc<ProfileRegistry>) -> HostTable {
        HostTable {
            settings,
            nft,
            store,
            profiles,
            domains: Mutex::new(DomainCache::default()),
            record: Mutex::new(EgressRecord::default()),
            origin: tokio::time::Instant::now(),
            reloading: Mutex::new(()),
            folds: true,
        }
    }

    /// A table that never folds the egress counters (the command line's: the daemon's
    /// keeper owns the record).
    pub fn without_folding(mut self) -> HostTable {
        self.folds = false;
        self
    }

    fn domains(&self) -> std::sync::MutexGuard<'_, DomainCache> {
        self.domains.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allow_entries(&self, profile: &str) -> Vec<AllowEntry> {
        super::allow_entries(&self.profiles, profile)
    }

    /// The policy for the sandboxes on record now. A sandbox without a MAC yet (before its
    /// VM is configured) is not bound: it has no VM to send anything.
    pub fn policy(&self) -> Result<HostPolicy, HostTableError> {
        self.policy_with(None)
    }

    /// The policy, with `pending` (a sandbox's address not yet on record) bound as well.
    fn policy_with(&self, pending: Option<(u32, Ipv4Addr)>) -> Result<HostPolicy, HostTableError> {
        let s = &self.settings;
        let base =
            HostPolicy::new(s.agent_bridge.clone(), s.uplink.clone(), s.subnet, s.gateway, s.listener_ports.clone())?;
        let mut bindings = Vec::new();
        let domains = self.domains();
        for rec in self.store.list_sandboxes(None)? {
            if rec.state == SandboxState::Destroyed {
                continue;
            }
            let Some(mac) = rec.mac.as_deref().and_then(|m| m.parse().ok()) else { continue };
            let recorded = rec.ip.as_deref().and_then(|ip| ip.parse().ok());
            let ip = pending.filter(|(vmid, _)| *vmid == rec.vmid).map(|(_, ip)| ip).or(recorded);
            let ip = ip.filter(|ip| s.subnet.contains(ip));
            let allow = if rec.network_mode == NetworkMode::Allowlist {
                domains.networks(&self.allow_entries(&rec.profile))
            } else {
                Vec::new()
            };
            bindings.push(Binding { vmid: rec.vmid, mac, ip, mode: super::mode_of(rec.network_mode), allow });
        }
        Ok(base.with_bindings(bindings)?)
    }

    pub fn render(&self) -> Result<String, HostTableError> {
        Ok(render(&self.policy()?))
    }

    pub fn check(&self) -> Result<(), HostTableError> {
        Ok(self.nft.check(&self.render()?)?)
    }

    /// Folds the record, then loads the ruleset for the sandboxes on record now.
    pub fn apply(&self) -> Result<(), HostTableError> {
        self.apply_with(None)
    }

    /// Loads the ruleset with `vmid` bound to `ip` before the address is recorded: a guest
    /// may send from its address only once the host has pinned it (until then only DHCP).
    pub fn apply_with_address(&self, vmid: u32, ip: Ipv4Addr) -> Result<(), HostTableError> {
        self.apply_with(Some((vmid, ip)))
    }

    fn apply_with(&self, pending: Option<(u32, Ipv4Addr)>) -> Result<(), HostTableError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        self.track_domains();
        self.refresh_domains();
        let text = render(&self.policy_with(pending)?);
        // Best effort: a record that cannot be read (a ruleset from an older version without
        // one of the sets, a busy database) must not keep the table from loading.
        if self.folds
            && self.nft.loaded().unwrap_or(false)
            && let Err(e) = self.fold_locked()
        {
            tracing::warn!(error = %e, "egress record not folded before the reload");
        }
        self.nft.apply(&text)?;
        self.record.lock().unwrap_or_else(|p| p.into_inner()).set_was_reloaded();
        Ok(())
    }

    /// Reloads on a blocking thread without waiting (an address or a removal only tightens
    /// or tidies the table: the MAC binding made before boot already holds).
    pub fn apply_in_background(self: &Arc<Self>, why: &'static str) {
        let table = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = table.apply() {
                tracing::warn!(error = %e, why, "cannot reload the host ruleset");
            }
        });
    }

    pub fn state(&self) -> TableState {
        match self.nft.loaded() {
            Ok(true) => TableState::Loaded,
            Ok(false) => TableState::Absent,
            Err(e) => TableState::Unknown(e.to_string()),
        }
    }

    /// Every allowlist domain of every live allowlist sandbox's profile.
    fn track_domains(&self) {
        let mut names = Vec::new();
        if let Ok(records) = self.store.list_sandboxes(None) {
            for rec in records
                .iter()
                .filter(|r| r.network_mode == NetworkMode::Allowlist && r.state != SandboxState::Destroyed)
            {
                for entry in self.allow_entries(&rec.profile) {
                    if let AllowEntry::Domain(d) = entry {
                        names.push(d);
                    }
                }
            }
        }
        self.domains().track(names.iter().map(String::as_str));
    }

    /// Looks up the domains that are due; returns whether an address set changed (the
    /// table, and the Proxmox IP set, must then be brought up to date).
    pub fn refresh_domains(&self) -> bool {
        let now = self.origin.elapsed().as_secs();
        let server = self.settings.dns_server;
        let (changed, errors) =
            self.domains().refresh(now, |name| dns::resolve_a(server, name, Duration::from_secs(3)));
        for e in errors {
            tracing::warn!(error = %e, "allowlist domain lookup failed; its last addresses stay in force");
        }
        changed
    }

    /// Every live allowlist sandbox's destinations, as Proxmox IP set members (a host
    /// without `/32`, as Proxmox stores it): what the cluster's `agent_allow` should hold.
    pub fn allowlist_members(&self) -> Result<Vec<String>, HostTableError> {
        let domains = self.domains();
        let mut out = Vec::new();
        for rec in self.store.list_sandboxes(None)? {
            if rec.network_mode != NetworkMode::Allowlist || rec.state == SandboxState::Destroyed {
                continue;
            }
            for net in domains.networks(&self.allow_entries(&rec.profile)) {
                out.push(super::ipset_member(net));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Reads the kernel's counters into the store's egress record.
    pub fn fold_egress(&self) -> Result<usize, HostTableError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        self.fold_locked()
    }

    fn fold_locked(&self) -> Result<usize, HostTableError> {
        let read = egress::read(&self.nft)?;
        let grown = self.record.lock().unwrap_or_else(|p| p.into_inner()).fold(&read);
        let policy = self.policy()?;
        let now = OffsetDateTime::now_utc();
        let mut stored = 0;
        for ((mac, dest, proto, port), packets) in grown {
            // A MAC no sandbox has (one destroyed since) has no record to join.
            if let Some(b) = policy.binding_for_mac(&mac) {
                self.store.add_egress_drops(b.vmid, &dest.to_string(), &proto, port, packets, now)?;
                stored += 1;
            }
        }
        Ok(stored)
    }
}
