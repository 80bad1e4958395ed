//! Sandboxes: one actor per sandbox (`sandbox:<vmid>`) owning its state machine, its
//! provisioning pipeline, its lease timer and its health probe. The store record is the
//! source of truth; the actor re-reads it before every decision, so a restarted actor
//! continues exactly where the record says.

mod actor;
pub mod allocate;
pub mod census;
mod decide;
mod error;
pub mod firewall;
mod generation;
mod guest_devices;
mod health;
pub mod idle;
mod lease;
mod lifecycle;
mod msg;
mod operate;
mod pipeline;
pub mod placement;
pub mod reconcile;
pub mod remote;
mod rollback;
pub mod snippet;
pub mod snippet_storage;
mod teardown;
pub mod template_check;
mod vm_volumes;

pub use actor::SandboxActor;
pub use error::{ProvisionFailure, SandboxError};
pub use msg::{AfterTeardown, OpReply, SandboxMsg, Settled};
pub use operate::SandboxOp;
pub(crate) use teardown::stop_with_workspace;

use crate::profiles::ProfileRegistry;
use crate::pve::Gateway;
use crate::root::{ActorDirectory, EntityError, EntityFactory, SpawnFuture};
use crate::store::Store;
use ipnet::IpNet;
use ractor::{Actor, ActorCell, SpawnErr};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The daemon settings sandboxes depend on.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// `proxmox_node`: used when the profile names no node (the rule is on `Profile::node`).
    pub node: Option<String>,
    /// `snippets_dir` as configured; unset: the snippet storage's own directory.
    pub snippets_dir: Option<PathBuf>,
    pub snippet_storage: String,
    /// The Proxmox node this daemon runs on: where the snippets it writes are seen when
    /// the snippet storage is node-local.
    pub host_node: String,
    /// Proxmox sees the daemon as root@pam (the shell backend): root-only options such as
    /// `skiplock` are available. Never true for an API token.
    pub proxmox_is_root: bool,
    pub ssh_public_key: Option<String>,
    pub controller_url: String,
    pub agent_subnet: IpNet,
    /// The guest listener's address and ports (the one private destination guests may reach).
    pub gateway_ip: IpAddr,
    pub listener_ports: Vec<u16>,
    /// The agent bridge (node firewall rules name it).
    pub agent_bridge: String,
    /// Where allowlist domains are resolved.
    pub allowlist_dns_server: std::net::SocketAddr,
    pub provisioning_timeout: Duration,
    /// How long `wait_ip` accepts "QEMU guest agent is not running" after the VM started
    /// before it fails with a hint (an image without qemu-guest-agent never answers).
    pub guest_agent_timeout: Duration,
    pub probe_interval: Duration,
    /// One minute of lease (60 s; shorter under `test_time_scale`).
    pub lease_minute: Duration,
    /// How often the guest agent is asked for the address while booting.
    pub ip_poll_interval: Duration,
    /// `vmid_min..=vmid_max`.
    pub vmid_range: std::ops::RangeInclusive<u32>,
    /// "Now" for leases and deadlines (tokio's clock in tests).
    pub clock: crate::clock::Clock,
    /// `max_ttl_minutes`: the longest TTL anything may ask for.
    pub max_ttl_minutes: u32,
    pub idle: idle::IdleSettings,
}

impl SandboxSettings {
    /// A TTL of `minutes` (`what` says where it came from) is positive and within
    /// `max_ttl_minutes`.
    pub fn check_ttl(&self, minutes: u32, what: &str) -> Result<(), crate::model::Refusal> {
        let refuse = |why: String| Err(crate::model::Refusal::new(crate::model::ErrorCode::InvalidValue, why));
        if minutes == 0 {
            return refuse(format!("{what} must be greater than 0"));
        }
        if minutes > self.max_ttl_minutes {
            return refuse(format!(
                "{what} is {minutes} minutes; the limit is max_ttl_minutes ({}) in the daemon's config",
                self.max_ttl_minutes
            ));
        }
        Ok(())
    }
}

/// Everything a sandbox actor uses.
pub struct SandboxContext {
    pub store: Arc<Store>,
    pub profiles: Arc<ProfileRegistry>,
    pub gateway: Gateway,
    pub settings: SandboxSettings,
    pub directory: ActorDirectory,
    pub orphans: reconcile::OrphanLedger,
    /// The host ruleset, when the daemon manages it (`host_ruleset: managed`).
    pub host_table: Option<Arc<crate::net::HostTable>>,
    /// Where idle-stop sees SSH sessions (the host's conntrack).
    pub ssh_sessions: Arc<dyn idle::SshSessions>,
    /// Wakes the held bootstrap fetches of pooled guests at each claim.
    pub claims: crate::pool::ClaimSignal,
}

pub const KIND: &str = "sandbox";

/// The `sandbox` entity kind for the root supervisor.
pub struct SandboxFactory {
    pub ctx: Arc<SandboxContext>,
}

impl EntityFactory for SandboxFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn live_ids(&self) -> Result<Vec<String>, EntityError> {
        let vmids = self.ctx.store.live_sandbox_vmids()?;
        Ok(vmids.into_iter().map(|v| v.to_string()).collect())
    }

    fn spawn(&self, id: String, name: String, supervisor: ActorCell) -> SpawnFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let vmid: u32 = id.parse().map_err(|_| SpawnErr::StartupFailed(format!("bad sandbox id {id}").into()))?;
            let (actor, _) = Actor::spawn_linked(Some(name), SandboxActor { ctx }, vmid, supervisor).await?;
            Ok(actor.get_cell())
        })
    }

    fn background(&self) -> Option<crate::root::Background> {
        Some(Box::pin(census::run(Arc::clone(&self.ctx))))
    }

    fn give_up(&self, id: &str, reason: &str) -> Result<(), EntityError> {
        let vmid: u32 = id.parse().map_err(|_| EntityError::BadId { kind: KIND, id: id.to_string() })?;
        let record = self
            .ctx
            .store
            .get_sandbox(vmid)?
            .ok_or_else(|| EntityError::NoRecord { kind: KIND, id: id.to_string() })?;
        match crate::model::sandbox_state::transition(record.state, crate::model::SandboxEvent::Fail) {
            Ok(to) => Ok(self.ctx.store.transition_sandbox(vmid, record.state, to, Some(reason), None)?),
            // Already past failing (stopped, timed out…): keep the state, say why.
            Err(_) => self
                .ctx
                .store
                .patch_sandbox(
                    vmid,
                    &crate::store::SandboxPatch { error: Some(Some(reason.to_string())), ..Default::default() },
                    None,
                )
                .map_err(EntityError::from),
        }
    }
}

/// Tells the sandbox's job (if it has a live one) what happened to the sandbox; the job
/// ends at once (see `model::job_links` for the list and what each means).
pub(crate) fn notify_job(rec: &crate::store::SandboxRecord, notice: crate::model::SandboxNotice) {
    if let Some(job) = rec.job_id.as_deref().and_then(crate::job::actor_of) {
        let _ = job.send_message(crate::job::JobMsg::SandboxEnded { vmid: rec.vmid, notice });
    }
}

/// The live actor of a sandbox, if it has one.
pub fn actor_of(vmid: u32) -> Option<ractor::ActorRef<SandboxMsg>> {
    ractor::ActorRef::<SandboxMsg>::where_is(format!("{KIND}:{vmid}"))
}

/// The `agentlab` tag: the daemon never changes or destroys a VM without it.
pub const OWNER_TAG: &str = "agentlab";

/// The snapshot taken at the end of provisioning, which `revert` returns to.
pub const CLEAN_SNAPSHOT: &str = "clean";

/// The description marker written at clone time (before the tag can be set).
pub fn description_marker(vmid: u32) -> String {
    format!("agentlab-sandbox:{vmid}")
}

/// Whether the VM with this config is AgentLab's: tagged `agentlab`, or carrying the
/// description marker a clone of ours gets before it can be tagged.
pub fn is_ours(config: &agentlab_proxmox::types::VmConfig, vmid: u32) -> bool {
    config.tags().iter().any(|t| t.eq_ignore_ascii_case(OWNER_TAG))
        || config.get("description").is_some_and(|d| d.contains(&description_marker(vmid)))
}

/// Why a guest's claim of `ip` is refused, if it is: the guest agent runs inside the VM, so
/// the gateway's address and a live neighbour's are not its to take (the host would pin it
/// there and answer ARP for it). Loopback addresses are the test harness's shared guests.
pub(crate) fn refused_address_claim(
    ctx: &SandboxContext,
    vmid: u32,
    ip: &str,
) -> Result<Option<String>, crate::store::StoreError> {
    let parsed: Option<std::net::IpAddr> = ip.parse().ok();
    if parsed.is_some_and(|a| a.is_loopback()) {
        return Ok(None);
    }
    if parsed == Some(ctx.settings.gateway_ip) {
        return Ok(Some(format!("the guest of VM {vmid} claims the gateway's address {ip}; it is not accepted")));
    }
    let holder =
        ctx.store.list_sandboxes(None)?.into_iter().find(|o| {
            o.vmid != vmid && o.state != crate::model::SandboxState::Destroyed && o.ip.as_deref() == Some(ip)
        });
    Ok(holder.map(|h| {
        format!(
            "the guest of VM {vmid} claims {ip}, the address of sandbox {}; it is not accepted (check the DHCP service on the agent bridge)",
            h.vmid
        )
    }))
}

/// The guest's first IPv4 address inside the agent subnet, as the guest agent reports it.
pub fn guest_ip(interfaces: &[agentlab_proxmox::types::GuestInterface], subnet: &IpNet) -> Option<String> {
    interfaces
        .iter()
        .flat_map(|i| &i.ip_addresses)
        .filter(|a| a.ip_address_type == "ipv4")
        .filter_map(|a| a.ip_address.parse::<IpAddr>().ok())
        .find(|ip| subnet.contains(ip))
        .map(|ip| ip.to_string())
}
