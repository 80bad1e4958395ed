//! The sandbox actor's timers: lease expiry (destroy, or stop and keep with keepalive) and
//! the health probe (vanished or migrated VM, stopped outside AgentLab, changed guest address).

use super::actor::{SandboxActor, SandboxActorState};
use super::{SandboxMsg, teardown};
use crate::model::{SandboxEvent, SandboxNotice, SandboxState, time_format};
use crate::store::{NewEvent, SandboxPatch, Stage};
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::VmAction;
use ractor::{ActorProcessingErr, ActorRef};
use std::sync::Arc;

impl SandboxActor {
    pub(super) fn on_lease_expired(
        &self,
        myself: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
    ) -> Result<(), ActorProcessingErr> {
        let rec = self.load(state.vmid)?;
        let expired = rec
            .lease_expires_at
            .as_deref()
            .and_then(|t| time_format::parse(t).ok())
            .is_none_or(|t| t <= self.ctx.settings.clock.now());
        if !expired && rec.state != SandboxState::Timeout {
            self.arm_timers(myself, state, &rec);
            return Ok(());
        }
        if rec.provision_step.as_deref() == Some("destroy") {
            // Already being destroyed: let that finish.
            return Ok(());
        }
        super::notify_job(&rec, SandboxNotice::LeaseExpired);
        let rec = match self.move_by(state.vmid, SandboxEvent::LeaseExpired, Some("lease expired"))? {
            Some(rec) => {
                self.ctx.store.append_event(&NewEvent::sandbox(
                    rec.vmid,
                    "sandbox.lease.expired",
                    Stage::Lease,
                    "lease expired",
                ))?;
                rec
            }
            None => rec,
        };
        self.publish(state, &rec);
        if rec.keepalive {
            if rec.state == SandboxState::Timeout {
                // Keepalive: stop and keep the VM instead of destroying it.
                if let Some(work) = state.work.take() {
                    work.abort();
                }
                let (ctx, me, vmid, node) = (Arc::clone(&self.ctx), myself.clone(), rec.vmid, rec.node.clone());
                let generation = state.generation.advance();
                state.work = Some(tokio::spawn(async move {
                    let result = match node {
                        Some(node) => match ctx.gateway.vm_action(&node, vmid, VmAction::Stop).await {
                            Ok(_) | Err(PveError::NotFound(_)) => Ok(()),
                            Err(e) => Err(e.to_string()),
                        },
                        None => Ok(()),
                    };
                    let _ = me.send_message(SandboxMsg::StopDone { result, generation });
                }));
            }
        } else if rec.state != SandboxState::Destroyed && rec.provision_step.as_deref() != Some("destroy") {
            self.begin_destroy(myself, state, rec, None)?;
        }
        self.settle(state, &self.load(state.vmid)?);
        Ok(())
    }

    pub(super) fn on_stop_done(
        &self,
        state: &mut SandboxActorState,
        result: Result<(), String>,
    ) -> Result<(), ActorProcessingErr> {
        state.work = None;
        match result {
            Ok(()) => {
                if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Stop, None)? {
                    self.publish(state, &rec);
                }
            }
            Err(e) => {
                self.ctx.store.append_event(&NewEvent::sandbox(
                    state.vmid,
                    "sandbox.stop.failed",
                    Stage::Lifecycle,
                    e,
                ))?;
            }
        }
        Ok(())
    }

    pub(super) fn on_probe(
        &self,
        myself: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
    ) -> Result<(), ActorProcessingErr> {
        let rec = self.load(state.vmid)?;
        let probe_states = [SandboxState::Ready, SandboxState::Running, SandboxState::Suspended, SandboxState::Stopped];
        if state.probing || Self::busy(state) || !probe_states.contains(&rec.state) {
            return Ok(());
        }
        let Some(node) = rec.node.clone() else { return Ok(()) };
        state.probing = true;
        let (ctx, me, vmid) = (Arc::clone(&self.ctx), myself.clone(), rec.vmid);
        let ask_ip = matches!(rec.state, SandboxState::Ready | SandboxState::Running);
        let generation = state.generation.current();
        tokio::spawn(async move {
            let (mut node, mut moved_to) = (node, None);
            let mut result = ctx.gateway.vm_status(&node, vmid).await;
            if matches!(result, Err(PveError::NotFound(_))) {
                // Migrated outside AgentLab, the VM is gone from its node but not from the
                // cluster (VMIDs are cluster-wide): follow it instead of declaring it vanished.
                match ctx.gateway.cluster_vms().await {
                    Ok(vms) => {
                        if let Some(vm) = vms.iter().find(|v| v.vmid == u64::from(vmid) && v.node != node) {
                            node = vm.node.clone();
                            moved_to = Some(node.clone());
                            result = ctx.gateway.vm_status(&node, vmid).await;
                        }
                    }
                    Err(e) => result = Err(e),
                }
            }
            let ip = match (&result, ask_ip) {
                (Ok(status), true) if status.is_running() => ctx
                    .gateway
                    .agent_interfaces(&node, vmid)
                    .await
                    .ok()
                    .and_then(|ifaces| {
                        ifaces
                            .iter()
                            .flat_map(|i| &i.ip_addresses)
                            .filter(|a| a.ip_address_type == "ipv4")
                            .filter_map(|a| a.ip_address.parse::<std::net::IpAddr>().ok())
                            .find(|ip| ctx.settings.agent_subnet.contains(ip))
                    })
                    .map(|ip| ip.to_string()),
                _ => None,
            };
            let _ = me.send_message(SandboxMsg::Probed { result, ip, moved_to, generation });
        });
        Ok(())
    }

    pub(super) fn on_probed(
        &self,
        myself: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        result: Result<agentlab_proxmox::types::VmStatus, PveError>,
        ip: Option<String>,
        moved_to: Option<String>,
    ) -> Result<(), ActorProcessingErr> {
        if Self::busy(state) {
            return Ok(());
        }
        if let Some(node) = moved_to {
            let rec = self.load(state.vmid)?;
            let msg = format!("VM {} moved from node {} to {node}", rec.vmid, rec.node.as_deref().unwrap_or("-"));
            let event = NewEvent::sandbox(rec.vmid, "sandbox.moved", Stage::Recovery, msg)
                .payload(serde_json::json!({"node": node}));
            let patch = SandboxPatch { node: Some(Some(node)), ..Default::default() };
            self.ctx.store.patch_sandbox(rec.vmid, &patch, Some(&event))?;
        }
        let rec = self.load(state.vmid)?;
        match result {
            Err(PveError::NotFound(_)) => {
                let msg = format!("VM {} vanished from Proxmox (deleted outside AgentLab)", rec.vmid);
                self.ctx.store.append_event(&NewEvent::sandbox(
                    rec.vmid,
                    "sandbox.vanished",
                    Stage::Recovery,
                    msg.clone(),
                ))?;
                teardown::remove_local(&self.ctx, &rec)?;
                if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Destroy, Some(&msg))? {
                    self.publish(state, &rec);
                }
                super::notify_job(&rec, SandboxNotice::Vanished);
                myself.stop(Some("VM vanished".into()));
            }
            Ok(status)
                if !status.is_running()
                    && matches!(rec.state, SandboxState::Ready | SandboxState::Running | SandboxState::Suspended) =>
            {
                let msg = "VM stopped outside AgentLab";
                if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Stop, Some(msg))? {
                    self.publish(state, &rec);
                }
            }
            Ok(status) if status.is_paused() && matches!(rec.state, SandboxState::Ready | SandboxState::Running) => {
                // Paused without the record knowing (a crash right after a pause).
                if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Suspend, Some("VM found paused"))? {
                    self.publish(state, &rec);
                }
            }
            Ok(status) if !status.is_paused() && rec.state == SandboxState::Suspended => {
                if let Some(rec) = self.move_by(state.vmid, SandboxEvent::Resume, Some("VM found running"))? {
                    self.publish(state, &rec);
                }
            }
            Ok(_) => {
                if let Some(ip) = ip.filter(|ip| rec.ip.as_deref() != Some(ip.as_str())) {
                    let msg = format!("guest address {} -> {ip}", rec.ip.as_deref().unwrap_or("-"));
                    let event = NewEvent::sandbox(rec.vmid, "sandbox.ip_changed", Stage::Network, msg)
                        .payload(serde_json::json!({"ip": ip}));
                    let patch = SandboxPatch { ip: Some(Some(ip)), ..Default::default() };
                    self.ctx.store.patch_sandbox(rec.vmid, &patch, Some(&event))?;
                }
            }
            Err(_) => {}
        }
        Ok(())
    }
}
