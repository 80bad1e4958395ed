//! Provisioning, one idempotent step at a time. Each step's name is recorded before the step
//! runs (write-ahead intent), so a restarted actor resumes from the recorded step; each step
//! first checks Proxmox and does only what is missing.

use super::{OWNER_TAG, SandboxContext, description_marker, snippet};
use crate::model::{SandboxEvent, SandboxState, sandbox_state, time_format};
use crate::pve::OpSpec;
use crate::store::{NewEvent, SandboxPatch, SandboxRecord, Stage};
use agentlab_proxmox::types::{CloneSpec, ConfigChange, VmAction};
use agentlab_proxmox::{Pve, PveError};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Clone,
    Configure,
    Firewall,
    Snippet,
    Snapshot,
    Boot,
    WaitIp,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::Clone, Step::Configure, Step::Firewall, Step::Snippet, Step::Snapshot, Step::Boot, Step::WaitIp];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Clone => "clone",
            Step::Configure => "configure",
            Step::Firewall => "firewall",
            Step::Snippet => "snippet",
            Step::Snapshot => "snapshot",
            Step::Boot => "boot",
            Step::WaitIp => "wait_ip",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.as_str() == text)
    }

    fn next(self) -> Option<Step> {
        Step::ALL.iter().position(|s| *s == self).and_then(|i| Step::ALL.get(i + 1)).copied()
    }
}

/// Why provisioning stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub step: String,
    pub error: String,
}

fn fail(step: Step, error: impl std::fmt::Display) -> Failure {
    Failure { step: step.as_str().into(), error: error.to_string() }
}

fn load(ctx: &SandboxContext, vmid: u32) -> Result<SandboxRecord, Failure> {
    ctx.store
        .get_sandbox(vmid)
        .map_err(|e| Failure { step: "load".into(), error: e.to_string() })?
        .ok_or_else(|| Failure { step: "load".into(), error: "record vanished".into() })
}

fn record_step(ctx: &SandboxContext, vmid: u32, step: Step) -> Result<(), Failure> {
    let event =
        NewEvent::sandbox(vmid, "sandbox.provision.step", Stage::Lifecycle, format!("provisioning: {}", step.as_str()))
            .payload(serde_json::json!({"step": step.as_str()}));
    ctx.store
        .patch_sandbox(
            vmid,
            &SandboxPatch { provision_step: Some(Some(step.as_str().into())), ..Default::default() },
            Some(&event),
        )
        .map_err(|e| fail(step, e))
}

fn transition(ctx: &SandboxContext, rec: &SandboxRecord, event: SandboxEvent) -> Result<SandboxState, String> {
    let to = sandbox_state::transition(rec.state, event).map_err(|e| e.to_string())?;
    ctx.store.transition_sandbox(rec.vmid, rec.state, to, None, None).map_err(|e| e.to_string())?;
    Ok(to)
}

/// Runs provisioning from wherever the record is to READY.
pub async fn provision(ctx: Arc<SandboxContext>, vmid: u32) -> Result<(), Failure> {
    loop {
        let rec = load(&ctx, vmid)?;
        let step = match rec.state {
            SandboxState::Requested => {
                record_step(&ctx, vmid, Step::Clone)?;
                transition(&ctx, &load(&ctx, vmid)?, SandboxEvent::BeginProvisioning)
                    .map_err(|e| fail(Step::Clone, e))?;
                continue;
            }
            SandboxState::Provisioning => rec.provision_step.as_deref().and_then(Step::parse).unwrap_or(Step::Clone),
            SandboxState::Booting => match rec.provision_step.as_deref().and_then(Step::parse) {
                Some(Step::WaitIp) => Step::WaitIp,
                _ => Step::Boot,
            },
            SandboxState::Ready => return Ok(()),
            other => {
                return Err(Failure {
                    step: "provision".into(),
                    error: format!("sandbox is {other}, not provisioning"),
                });
            }
        };
        run(&ctx, &rec, step).await.map_err(|e| fail(step, e))?;
        match step.next() {
            Some(next) => record_step(&ctx, vmid, next)?,
            None => {
                let done = SandboxPatch { provision_step: Some(None), ..Default::default() };
                ctx.store.patch_sandbox(vmid, &done, None).map_err(|e| fail(step, e))?;
            }
        }
    }
}

async fn run(ctx: &Arc<SandboxContext>, rec: &SandboxRecord, step: Step) -> Result<(), String> {
    match step {
        Step::Clone => clone(ctx, rec).await,
        Step::Configure => configure(ctx, rec).await,
        Step::Firewall => firewall(ctx, rec).await,
        Step::Snippet => write_snippet(ctx, rec).await,
        Step::Snapshot => snapshot(ctx, rec).await,
        Step::Boot => boot(ctx, rec).await,
        Step::WaitIp => wait_ip(ctx, rec).await,
    }
}

fn profile_of(ctx: &SandboxContext, rec: &SandboxRecord) -> Result<crate::model::Profile, String> {
    ctx.profiles
        .snapshot()
        .get(&rec.profile)
        .map(|p| p.profile.clone())
        .ok_or_else(|| format!("profile `{}` is no longer loaded", rec.profile))
}

/// The node: the record's, else config or profile, else the node that holds the template.
/// A clone runs on the template's node (its disks are there), so "the node with the most
/// free memory" would fail on any cluster whose template is not on every node.
async fn choose_node(ctx: &SandboxContext, profile: &crate::model::Profile) -> Result<String, String> {
    if let Some(node) = profile.node.clone().or_else(|| ctx.settings.node.clone()) {
        return Ok(node);
    }
    let template = u64::from(profile.template_vmid);
    let vms = ctx.gateway.cluster_vms().await.map_err(|e| e.to_string())?;
    vms.into_iter().find(|v| v.vmid == template).map(|v| v.node).ok_or_else(|| {
        format!(
            "template VM {template} (profile `{}`) is not in the Proxmox cluster; create the template or fix the profile's template_vmid",
            profile.name
        )
    })
}

fn node_of(rec: &SandboxRecord) -> Result<String, String> {
    rec.node.clone().ok_or_else(|| "no node recorded".into())
}

async fn clone(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let profile = profile_of(ctx, rec)?;
    let node = match &rec.node {
        Some(node) => node.clone(),
        None => {
            let node = choose_node(ctx, &profile).await?;
            ctx.store
                .patch_sandbox(rec.vmid, &SandboxPatch { node: Some(Some(node.clone())), ..Default::default() }, None)
                .map_err(|e| e.to_string())?;
            node
        }
    };
    // Adopt a VM an earlier attempt cloned (it carries our marker); refuse anyone else's.
    // A clone still running (the daemon died during it) has a temporary config locked
    // `clone` and no description yet: wait for it to finish before judging.
    let mut config = ctx.gateway.vm_config(&node, rec.vmid).await;
    for _ in 0..600 {
        match &config {
            Ok(c) if c.get("lock") == Some("clone") => {
                tokio::time::sleep(ctx.settings.ip_poll_interval).await;
                config = ctx.gateway.vm_config(&node, rec.vmid).await;
            }
            _ => break,
        }
    }
    match config {
        Ok(config) => {
            let ours = config.get("description").is_some_and(|d| d.contains(&description_marker(rec.vmid)))
                || config.tags().iter().any(|t| t == OWNER_TAG);
            return if ours {
                Ok(())
            } else {
                Err(format!("VMID {} is taken by a VM AgentLab does not own", rec.vmid))
            };
        }
        Err(PveError::NotFound(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let spec = CloneSpec {
        newid: rec.vmid,
        name: Some(dns_name(&rec.name, rec.vmid)),
        description: Some(description(rec)),
        full: None,
        ..Default::default()
    };
    ctx.gateway.clone_vm(&node, profile.template_vmid, spec).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Proxmox VM names must be DNS names.
fn dns_name(name: &str, vmid: u32) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() { format!("sandbox-{vmid}") } else { trimmed.chars().take(63).collect() }
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

async fn configure(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let profile = profile_of(ctx, rec)?;
    let node = node_of(rec)?;
    let mut tags = vec![OWNER_TAG.to_string()];
    tags.extend(rec.tags.iter().cloned());
    let model = serde_json::to_value(profile.network.model)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "virtio".into());
    let mut change = ConfigChange::default()
        .set("tags", tags.join(";"))
        .set("cores", rec.cores.to_string())
        .set("memory", rec.memory_mb.to_string())
        .set("net0", format!("{model},bridge={},firewall=1", profile.network.bridge))
        .set("ipconfig0", "ip=dhcp")
        .set("scsihw", profile.storage.scsihw.clone());
    if let Some(limit) = profile.resources.cpulimit {
        change = change.set("cpulimit", limit.to_string());
    }
    if let Some(list) = &profile.resources.cpulist {
        change = change.set("affinity", list.clone());
    }
    ctx.gateway.update_config(&node, rec.vmid, change).await.map_err(|e| e.to_string())?;
    if let Some(gb) = profile.storage.root_size_gb {
        let vmid = rec.vmid;
        let size = format!("{gb}G");
        let result = ctx
            .gateway
            .run(OpSpec::task("resize", vmid), move |pve, _| {
                let (node, size) = (node.clone(), size.clone());
                Box::pin(async move { pve.resize_disk(&node, vmid, "scsi0", &size).await })
            })
            .await;
        match result {
            // Never shrink: a template disk already larger than asked is fine.
            Err(e) if e.to_string().contains("shrinking disks is not supported") => {}
            other => {
                other.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// The mode's security group (created with its rules if missing), the VM firewall on, and
/// the group attached to the VM.
async fn firewall(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let node = node_of(rec)?;
    let mode = match rec.network_mode {
        crate::model::NetworkMode::Off => agentlab_netfilter::Mode::Off,
        crate::model::NetworkMode::Nat => agentlab_netfilter::Mode::Nat,
        crate::model::NetworkMode::Allowlist => agentlab_netfilter::Mode::Allowlist,
    };
    let group = agentlab_netfilter::group_for(mode, ctx.settings.gateway_ip, &ctx.settings.listener_ports);
    let name = group.name;
    let vmid = rec.vmid;
    ctx.gateway
        .run(OpSpec::change("security_group", 0), move |pve, _| {
            let group = group.clone();
            Box::pin(async move { ensure_group(pve.as_ref(), &group).await })
        })
        .await
        .map_err(|e| e.to_string())?;
    ctx.gateway
        .run(OpSpec::change("vm_firewall", vmid), move |pve, _| {
            let node = node.clone();
            Box::pin(async move {
                pve.set_vm_firewall(&node, vmid, &[("enable", "1".into())]).await?;
                let rules = pve.vm_firewall_rules(&node, vmid).await?;
                if !rules.iter().any(|r| r.kind == "group" && r.action == name) {
                    let rule = [("type", "group".to_string()), ("action", name.to_string()), ("enable", "1".into())];
                    pve.add_vm_firewall_rule(&node, vmid, &rule).await?;
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| e.to_string())
}

async fn ensure_group(pve: &dyn Pve, group: &agentlab_netfilter::SecurityGroup) -> Result<(), PveError> {
    if pve.security_groups().await?.iter().any(|g| g.group == group.name) {
        return Ok(());
    }
    match pve.create_security_group(group.name, group.comment).await {
        Err(e) if e.to_string().contains("already exists") => return Ok(()),
        other => other?,
    }
    for request in group.rule_requests() {
        let params: Vec<(&str, String)> = request.iter().map(|(k, v)| (*k, v.clone())).collect();
        pve.add_group_rule(group.name, &params).await?;
    }
    Ok(())
}

/// Mints a token, records the snippet path, writes the file, then points `cicustom` at it.
async fn write_snippet(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let node = node_of(rec)?;
    let path = match &rec.snippet_path {
        Some(p) => PathBuf::from(p),
        None => {
            let path = snippet::new_path(&ctx.settings.snippets_dir, rec.vmid).map_err(|e| e.to_string())?;
            let patch = SandboxPatch { snippet_path: Some(Some(path.display().to_string())), ..Default::default() };
            ctx.store.patch_sandbox(rec.vmid, &patch, None).map_err(|e| e.to_string())?;
            path
        }
    };
    // A token from an interrupted earlier attempt is never delivered: replace it.
    ctx.store.delete_bootstrap_tokens(rec.vmid).map_err(|e| e.to_string())?;
    let token = snippet::random_token().map_err(|e| format!("cannot read random bytes: {e}"))?;
    let expires = time::OffsetDateTime::now_utc() + ctx.settings.provisioning_timeout;
    ctx.store
        .insert_bootstrap_token(&snippet::token_hash(&token), rec.vmid, &time_format::format(expires))
        .map_err(|e| e.to_string())?;
    let text = snippet::render(
        ctx.settings.ssh_public_key.as_deref(),
        &snippet::Bootstrap { token: &token, controller: &ctx.settings.controller_url, vmid: rec.vmid },
    );
    snippet::write(&path, &text).map_err(|e| format!("cannot write snippet {}: {e}", path.display()))?;
    let change = ConfigChange::default().set("cicustom", snippet::cicustom(&ctx.settings.snippet_storage, &path));
    ctx.gateway.update_config(&node, rec.vmid, change).await.map_err(|e| e.to_string())
}

/// The `clean` snapshot revert returns to, taken before any workspace disk is attached.
async fn snapshot(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let node = node_of(rec)?;
    let snapshots = ctx.gateway.snapshots(&node, rec.vmid).await.map_err(|e| e.to_string())?;
    if snapshots.iter().any(|s| s.name == "clean") {
        return Ok(());
    }
    let vmid = rec.vmid;
    ctx.gateway
        .run(OpSpec::task("snapshot", vmid), move |pve, attempt| {
            let node = node.clone();
            Box::pin(async move {
                match pve.create_snapshot(&node, vmid, "clean", Some("AgentLab clean state")).await {
                    Err(e) if attempt > 0 && e.to_string().contains("already used") => Ok(()),
                    other => other.map(|_| ()),
                }
            })
        })
        .await
        .map_err(|e| e.to_string())
}

/// BOOTING is recorded before the start is asked for.
async fn boot(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let node = node_of(rec)?;
    if rec.state == SandboxState::Provisioning {
        transition(ctx, rec, SandboxEvent::Boot)?;
    }
    match ctx.gateway.vm_status(&node, rec.vmid).await {
        Ok(status) if status.is_running() => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    ctx.gateway.vm_action(&node, rec.vmid, VmAction::Start).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Polls the guest agent until the guest reports an IPv4 address in the agent subnet.
async fn wait_ip(ctx: &Arc<SandboxContext>, rec: &SandboxRecord) -> Result<(), String> {
    let node = node_of(rec)?;
    loop {
        match ctx.gateway.agent_interfaces(&node, rec.vmid).await {
            Ok(interfaces) => {
                let ip = interfaces
                    .iter()
                    .flat_map(|i| &i.ip_addresses)
                    .filter(|a| a.ip_address_type == "ipv4")
                    .filter_map(|a| a.ip_address.parse::<std::net::IpAddr>().ok())
                    .find(|ip| ctx.settings.agent_subnet.contains(ip));
                if let Some(ip) = ip {
                    let current = load(ctx, rec.vmid).map_err(|f| f.error)?;
                    let event =
                        NewEvent::sandbox(rec.vmid, "sandbox.slo.ready", Stage::Slo, format!("guest address {ip}"))
                            .payload(serde_json::json!({"ip": ip.to_string()}));
                    ctx.store
                        .patch_sandbox(
                            rec.vmid,
                            &SandboxPatch { ip: Some(Some(ip.to_string())), ..Default::default() },
                            Some(&event),
                        )
                        .map_err(|e| e.to_string())?;
                    transition(ctx, &current, SandboxEvent::GuestReady)?;
                    return Ok(());
                }
            }
            Err(e)
                if matches!(
                    e.class(),
                    agentlab_proxmox::ErrorClass::AgentNotRunning | agentlab_proxmox::ErrorClass::Other
                ) => {}
            Err(e) => return Err(e.to_string()),
        }
        tokio::time::sleep(ctx.settings.ip_poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_back_and_run_in_order() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert_eq!(Step::Clone.next(), Some(Step::Configure));
        assert_eq!(Step::WaitIp.next(), None);
        assert_eq!(dns_name("my sandbox!", 1001), "my-sandbox");
        assert_eq!(dns_name("???", 1001), "sandbox-1001");
    }
}
