//! The provisioning steps, each idempotent: it first checks Proxmox and does only what is
//! missing, so a step interrupted by a crash simply runs again. The actor records each step
//! before starting it and every transition around it; a step writes only its own
//! write-ahead facts (the node chosen, the snippet path) before acting on them.

use super::error::SandboxError;
use super::placement::{self, Placement};
use super::{SandboxContext, description_marker, guest_devices, is_ours, snippet, snippet_storage};
use crate::model::{Profile, Step, time_format};
use crate::store::{SandboxPatch, SandboxRecord};
use agentlab_proxmox::types::{CloneSpec, ConfigChange, VmAction};
use agentlab_proxmox::{ErrorClass, PveError};
use std::path::PathBuf;
use std::sync::Arc;

/// What a finished step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Done,
    /// `wait_ip`: the guest's address in the agent subnet.
    GuestAddress(String),
}

/// Runs one step against the record as it is now.
pub async fn run_step(ctx: Arc<SandboxContext>, rec: SandboxRecord, step: Step) -> Result<StepOutcome, SandboxError> {
    let done = |r: Result<(), SandboxError>| r.map(|()| StepOutcome::Done);
    match step {
        Step::Clone => done(clone(&ctx, &rec).await),
        Step::Configure => done(configure(&ctx, &rec).await),
        Step::Firewall => done(super::firewall::firewall(&ctx, &rec).await),
        Step::Snippet => done(write_snippet(&ctx, &rec).await),
        Step::Snapshot => done(snapshot(&ctx, &rec).await),
        Step::Boot => done(boot(&ctx, &rec).await),
        Step::WaitIp => wait_ip(&ctx, &rec).await.map(StepOutcome::GuestAddress),
    }
}

fn profile_of(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<Profile, SandboxError> {
    let profiles = ctx.profiles.snapshot();
    let loaded = profiles.get(&rec.profile).ok_or_else(|| SandboxError::ProfileGone(rec.profile.clone()))?;
    Ok(loaded.profile.clone())
}

fn node_of(rec: &SandboxRecord) -> Result<String, SandboxError> {
    rec.node.clone().ok_or(SandboxError::NoNode)
}

async fn clone(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let profile = profile_of(ctx, rec)?;
    let placement = match &rec.node {
        Some(node) => Placement { clone_on: placement::template_node(ctx, &profile).await?, node: node.clone() },
        None => {
            let placement = placement::place(ctx, &profile).await?;
            ctx.store.patch_sandbox(
                rec.vmid,
                &SandboxPatch { node: Some(Some(placement.node.clone())), ..Default::default() },
                None,
            )?;
            placement
        }
    };
    let node = placement.node.clone();
    // Adopt a VM an earlier attempt cloned (it carries our marker); refuse anyone else's.
    match ctx.gateway.config_after_clone(&node, rec.vmid, ctx.settings.ip_poll_interval).await {
        Ok(config) if is_ours(&config, rec.vmid) => return Ok(()),
        Ok(_) => return Err(SandboxError::NotOurs { vmid: rec.vmid }),
        Err(PveError::NotFound(_)) => {}
        Err(e) => return Err(SandboxError::pve("reading the VM's config")(e)),
    }
    let spec = CloneSpec {
        newid: rec.vmid,
        name: Some(dns_name(&rec.name, rec.vmid)),
        description: Some(description(rec)),
        full: None,
        target_node: placement.target(),
        ..Default::default()
    };
    ctx.gateway
        .clone_vm(&placement.clone_on, profile.template_vmid, spec)
        .await
        .map(|_| ())
        .map_err(SandboxError::pve("cloning the template"))
}

/// Proxmox VM names must be DNS names (pve-common JSONSchema.pm `dns-name`: labels of
/// letters, digits and inner `-`). Cut to 63 characters first, then trimmed, so the cut
/// cannot leave a trailing `-`.
fn dns_name(name: &str, vmid: u32) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(63).collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() { format!("sandbox-{vmid}") } else { trimmed.to_string() }
}

/// `net0` on the profile's bridge with the firewall on, keeping the MAC the clone got
/// (without one Proxmox would draw a new one, and the host ruleset binds the MAC).
fn net0(profile: &Profile, cloned: Option<&str>) -> String {
    let model = profile.network.model.as_str();
    let mac = cloned.and_then(super::firewall::net0_mac).map(|m| m.to_ascii_uppercase());
    let nic = match mac {
        Some(mac) => format!("{model}={mac}"),
        None => model.to_string(),
    };
    format!("{nic},bridge={},firewall=1", profile.network.bridge)
}

fn description(rec: &SandboxRecord) -> String {
    let mut text =
        format!("{} (profile {}) — managed by AgentLab; do not edit", description_marker(rec.vmid), rec.profile);
    if let Some(d) = &rec.description {
        text.push('\n');
        text.push_str(d);
    }
    text
}

async fn configure(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let profile = profile_of(ctx, rec)?;
    let node = node_of(rec)?;
    // A clone copies every non-disk key of its template (qemu-server API2/Qemu.pm clone_vm,
    // "copy everything else"), including options that break a sandbox's life.
    let cloned = ctx.gateway.vm_config(&node, rec.vmid).await.map_err(SandboxError::pve("reading the VM's config"))?;
    let mut tags = vec![super::OWNER_TAG.to_string()];
    tags.extend(rec.tags.iter().cloned());
    let mut change = ConfigChange::default()
        .set("tags", tags.join(";"))
        .set("cores", rec.cores.to_string())
        .set("memory", rec.memory_mb.to_string())
        .set("net0", net0(&profile, cloned.get("net0")))
        .set("ipconfig0", "ip=dhcp")
        // Otherwise Proxmox writes the host's resolvers into the guest's network-config
        // (qemu-server Cloudinit.pm get_dns_conf), LAN addresses the modes block (review F8).
        .set("nameserver", ctx.settings.gateway_ip.to_string())
        .set("scsihw", profile.storage.scsihw.clone());
    if let Some(limit) = profile.resources.cpulimit {
        change = change.set("cpulimit", limit.to_string());
    }
    if let Some(list) = &profile.resources.cpulist {
        change = change.set("affinity", list.clone());
    }
    change = without_inherited_options(change, &cloned, rec.memory_mb);
    // The profile's ballooning, never above the sandbox's memory (Proxmox refuses that).
    match profile.resources.balloon {
        Some(crate::model::profile::Balloon::Mib(mib)) => {
            change = change.set("balloon", mib.min(rec.memory_mb).to_string())
        }
        Some(other) => {
            if let Some(value) = other.config_value() {
                change = change.set("balloon", value);
            }
        }
        None => {}
    }
    for (key, value) in guest_devices::needed(&cloned, rec.vmid, profile.template_vmid)?.set {
        change = change.set(&key, value);
    }
    ctx.gateway.update_config(&node, rec.vmid, change).await.map_err(SandboxError::pve("configuring the VM"))?;
    if let Some(gb) = profile.storage.root_size_gb {
        match ctx.gateway.resize_disk(&node, rec.vmid, "scsi0", &format!("{gb}G")).await {
            // Never shrink: a template disk already larger than asked is fine.
            Ok(()) | Err(PveError::WouldShrink(_)) => {}
            Err(e) => return Err(SandboxError::pve("growing the root disk")(e)),
        }
    }
    Ok(())
}

/// Undoes what a sandbox must not inherit from its template: `protection` (destroy would
/// be refused), `onboot` and `startup` (the host would boot sandboxes behind the state
/// machine), a `hookscript`, and a balloon target above the sandbox's memory (Proxmox
/// refuses the memory change then).
fn without_inherited_options(
    mut change: ConfigChange,
    cloned: &agentlab_proxmox::types::VmConfig,
    memory_mb: u32,
) -> ConfigChange {
    for key in ["protection", "onboot"] {
        if cloned.get(key).is_some_and(|v| v != "0") {
            change = change.set(key, "0");
        }
    }
    for key in ["startup", "hookscript"] {
        if cloned.get(key).is_some() {
            change = change.delete(key);
        }
    }
    // A template's other NICs would put the sandbox on bridges no rule of ours covers.
    for key in
        cloned.values.keys().filter(|k| k.strip_prefix("net").is_some_and(|n| n != "0" && n.parse::<u8>().is_ok()))
    {
        change = change.delete(key);
    }
    let balloon = cloned.get("balloon").and_then(|b| b.parse::<u32>().ok());
    if balloon.is_some_and(|b| b > memory_mb) {
        change = change.set("balloon", memory_mb.to_string());
    }
    change
}

/// The snippet storage's directory, checked against `snippets_dir` and against the node
/// the VM is on (`snippet_storage.rs`).
async fn snippet_dir_for(ctx: &SandboxContext, node: &str) -> Result<PathBuf, SandboxError> {
    let storage = ctx
        .gateway
        .storage_config(&ctx.settings.snippet_storage)
        .await
        .map_err(SandboxError::pve("reading snippet_storage's definition"))?;
    let dir = snippet_storage::snippets_dir(&storage, ctx.settings.snippets_dir.as_deref())?;
    snippet_storage::check_node(&storage, node, &ctx.settings.host_node)?;
    std::fs::create_dir_all(&dir).map_err(|source| SandboxError::File {
        what: "cannot create the snippet directory",
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}

/// Mints a token, records the snippet path, writes the file, then points `cicustom` at it.
/// Also run by a revert: the snapshot predates the first boot, so the next start runs
/// cloud-init again, and the token it would present was spent (review F15).
pub(super) async fn write_snippet(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let node = node_of(rec)?;
    let path = match &rec.snippet_path {
        Some(p) => PathBuf::from(p),
        None => {
            let dir = snippet_dir_for(ctx, &node).await?;
            let path = snippet::new_path(&dir, rec.vmid).map_err(|source| SandboxError::File {
                what: "cannot choose a snippet file in",
                path: dir.display().to_string(),
                source,
            })?;
            let patch = SandboxPatch { snippet_path: Some(Some(path.display().to_string())), ..Default::default() };
            ctx.store.patch_sandbox(rec.vmid, &patch, None)?;
            path
        }
    };
    // A token from an interrupted earlier attempt is never delivered: replace it.
    ctx.store.delete_bootstrap_tokens(rec.vmid)?;
    let token = crate::tokens::random_token().map_err(|source| SandboxError::File {
        what: "cannot read random bytes from",
        path: "/dev/urandom".into(),
        source,
    })?;
    let expires = ctx.settings.clock.now() + ctx.settings.provisioning_timeout;
    ctx.store.insert_bootstrap_token(&crate::tokens::token_hash(&token), rec.vmid, &time_format::format(expires))?;
    let text = snippet::render(
        &dns_name(&rec.name, rec.vmid),
        ctx.settings.ssh_public_key.as_deref(),
        &snippet::Bootstrap { token: &token, controller: &ctx.settings.controller_url, vmid: rec.vmid },
    );
    snippet::write(&path, &text).map_err(|source| SandboxError::File {
        what: "cannot write snippet",
        path: path.display().to_string(),
        source,
    })?;
    let change = ConfigChange::default().set("cicustom", snippet::cicustom(&ctx.settings.snippet_storage, &path));
    ctx.gateway.update_config(&node, rec.vmid, change).await.map_err(SandboxError::pve("setting cicustom"))
}

/// The `clean` snapshot revert returns to, taken before any workspace disk is attached.
async fn snapshot(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let node = node_of(rec)?;
    let snapshots = ctx.gateway.snapshots(&node, rec.vmid).await.map_err(SandboxError::pve("listing snapshots"))?;
    if snapshots.iter().any(|s| s.name == super::CLEAN_SNAPSHOT) {
        return Ok(());
    }
    ctx.gateway
        .create_snapshot(&node, rec.vmid, super::CLEAN_SNAPSHOT, Some("AgentLab clean state"))
        .await
        .map_err(SandboxError::pve("taking the clean snapshot"))
}

/// Starts the VM unless it runs (the actor recorded BOOTING first).
/// Attaches the sandbox's workspace (after `clean`, which must not hold it: a revert would
/// roll the workspace back) and starts the VM.
async fn boot(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<(), SandboxError> {
    let node = node_of(rec)?;
    if let Some(workspace) = &rec.workspace_id {
        crate::workspace::attach(&ctx.store, workspace, rec.vmid).await.map_err(SandboxError::Workspace)?;
    }
    let status = ctx.gateway.vm_status(&node, rec.vmid).await.map_err(SandboxError::pve("reading the VM's status"))?;
    if status.is_running() {
        return Ok(());
    }
    ctx.gateway
        .vm_action(&node, rec.vmid, VmAction::Start)
        .await
        .map(|_| ())
        .map_err(SandboxError::pve("starting the VM"))
}

/// Polls the guest agent until the guest reports an IPv4 address in the agent subnet. An
/// agent that is not configured fails at once; one that does not answer fails after
/// `guest_agent_timeout`, each with what to fix, long before `provisioning_timeout`.
async fn wait_ip(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<String, SandboxError> {
    let node = node_of(rec)?;
    let template = profile_of(ctx, rec).map(|p| p.template_vmid).unwrap_or_default();
    let started = tokio::time::Instant::now();
    // Polls start short and back off (a sixteenth of the time waited, at most
    // `ip_poll_interval`): a guest is seen within ~6% of its boot, and a booting sandbox
    // costs about one agent call a second, not a flood on the rate limit.
    let first = (ctx.settings.ip_poll_interval / 20).max(std::time::Duration::from_millis(50));
    let next_poll = |waited: std::time::Duration| (waited / 16).clamp(first, ctx.settings.ip_poll_interval.max(first));
    loop {
        match ctx.gateway.agent_interfaces(&node, rec.vmid).await {
            Ok(interfaces) => {
                if let Some(ip) = super::guest_ip(&interfaces, &ctx.settings.agent_subnet) {
                    return claim_address(ctx, rec, ip).await;
                }
            }
            Err(e) if e.class() == ErrorClass::AgentNotConfigured => {
                return Err(SandboxError::AgentNotConfigured { vmid: rec.vmid, template });
            }
            // The agent is not up yet (or answers oddly while the guest boots).
            Err(e) if matches!(e.class(), ErrorClass::AgentNotRunning | ErrorClass::Other) => {
                let waited = started.elapsed();
                if waited >= ctx.settings.guest_agent_timeout {
                    return Err(SandboxError::GuestAgentSilent { vmid: rec.vmid, template, waited });
                }
            }
            Err(e) => return Err(SandboxError::pve("asking the guest agent for the address")(e)),
        }
        tokio::time::sleep(next_poll(started.elapsed())).await;
    }
}

/// The guest agent runs inside the untrusted VM, so the address it reports is a claim: it
/// must not be the gateway's or another live sandbox's (a guest claiming a neighbour's
/// address would have the host pin it to that address and answer ARP for it). Once
/// accepted, the host ruleset pins it before the sandbox is READY (until then the guest's
/// port may only do DHCP). Loopback addresses are the test harness's shared guests.
async fn claim_address(ctx: &SandboxContext, rec: &SandboxRecord, ip: String) -> Result<String, SandboxError> {
    if let Some(why) = super::refused_address_claim(ctx, rec.vmid, &ip)? {
        return Err(SandboxError::NotAllowed(why));
    }
    let parsed: Option<std::net::IpAddr> = ip.parse().ok();
    if let (Some(table), Some(std::net::IpAddr::V4(v4))) = (ctx.host_table.clone(), parsed) {
        let vmid = rec.vmid;
        tokio::task::spawn_blocking(move || table.apply_with_address(vmid, v4))
            .await
            .map_err(|e| SandboxError::HostTable(e.to_string()))?
            .map_err(|e| SandboxError::HostTable(e.to_string()))?;
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names_are_dns_names() {
        assert_eq!(dns_name("my sandbox!", 1001), "my-sandbox");
        assert_eq!(dns_name("???", 1001), "sandbox-1001");
        assert_eq!(dns_name(&"a".repeat(100), 1001).len(), 63);
        // A cut at 63 that lands on a `-` must not end the name with it.
        let cut = dns_name(&format!("{}-bb", "a".repeat(62)), 1001);
        assert_eq!(cut, "a".repeat(62));
    }
}
