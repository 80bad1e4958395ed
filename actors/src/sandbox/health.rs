//! The health probe: how the VM really is (vanished, migrated, stopped or paused outside
//! AgentLab, a changed guest address) and the record following it.

use super::actor::{SandboxActor, SandboxActorState};
use super::census::Seen;
use super::decide::{self, CensusVerdict, ProbeFinding};
use super::error::SandboxError;
use super::msg::SandboxMsg;
use super::teardown;
use crate::model::EventKind;
use crate::model::{SandboxEvent, SandboxNotice};
use crate::store::{NewEvent, SandboxPatch, Stage, StoreError};
use agentlab_proxmox::PveError;
use agentlab_proxmox::types::VmStatus;
use ractor::ActorRef;
use std::sync::Arc;

impl SandboxActor {
    /// The census's entry for this VM: probe only when it disagrees with the record, or
    /// when the guest address is due a re-read.
    pub(super) fn on_census(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        seen: Option<Seen>,
        refresh_address: bool,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        let address_due = refresh_address && rec.state.has_guest_address();
        if decide::on_census(&rec, seen.as_ref()) == CensusVerdict::Check || address_due {
            self.on_probe(me, state)?;
        }
        Ok(())
    }

    pub(super) fn on_probe(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        if state.probing || state.busy() || !rec.state.is_probed() {
            return Ok(());
        }
        let Some(node) = rec.node.clone() else { return Ok(()) };
        state.probing = true;
        let (ctx, me, vmid) = (Arc::clone(&self.ctx), me.clone(), rec.vmid);
        let ask_ip = rec.state.has_guest_address();
        // A probe starts no work: it is tagged with the work in force, and dropped if work
        // starts before it answers.
        let generation = state.generation.current();
        tokio::spawn(async move {
            let (mut node, mut moved_to) = (node, None);
            let mut result = ctx.gateway.vm_status(&node, vmid).await;
            if matches!(result, Err(PveError::NotFound(_))) {
                // Migrated outside AgentLab, the VM is gone from its node but not from the
                // cluster (VMIDs are cluster-wide): follow it instead of declaring it vanished.
                match ctx.gateway.cluster_vms().await {
                    Ok(vms) => {
                        if let Some(vm) =
                            vms.iter().find(|v| v.is_qemu() && v.vmid == u64::from(vmid) && v.node != node)
                        {
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
                    .and_then(|ifaces| super::guest_ip(&ifaces, &ctx.settings.agent_subnet)),
                _ => None,
            };
            let _ = me.send_message(SandboxMsg::Probed { result, ip, moved_to, generation });
        });
        Ok(())
    }

    pub(super) fn on_probed(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        result: Result<VmStatus, PveError>,
        ip: Option<String>,
        moved_to: Option<String>,
        generation: u64,
    ) -> Result<(), SandboxError> {
        state.probing = false;
        if !self.is_current(state, generation) || state.busy() {
            return Ok(());
        }
        if let Some(node) = moved_to {
            let rec = self.load(state.vmid)?;
            let msg = format!("VM {} moved from node {} to {node}", rec.vmid, rec.node.as_deref().unwrap_or("-"));
            let event = NewEvent::sandbox(rec.vmid, EventKind::Moved, Stage::Recovery, msg)
                .payload(serde_json::json!({"node": node}));
            let patch = SandboxPatch { node: Some(Some(node)), ..Default::default() };
            self.ctx.store.patch_sandbox(rec.vmid, &patch, Some(&event))?;
        }
        let rec = self.load(state.vmid)?;
        let moved = |event, why: &str| -> Result<(), StoreError> {
            if let Some(rec) = self.move_by(state.vmid, event, Some(why))? {
                self.publish(state, &rec);
            }
            Ok(())
        };
        match decide::on_probed(&rec, &result, ip.as_deref()) {
            ProbeFinding::Vanished => {
                let msg = format!("VM {} vanished from Proxmox (deleted outside AgentLab)", rec.vmid);
                self.ctx.store.append_event(&NewEvent::sandbox(
                    rec.vmid,
                    EventKind::Vanished,
                    Stage::Recovery,
                    msg.clone(),
                ))?;
                // Before DESTROYED: a failure restarts the actor, whose probe finds the VM
                // gone again and retries (a DESTROYED record gets no actor any more).
                teardown::remove_local(&self.ctx, &rec)?;
                moved(SandboxEvent::Destroy, &msg)?;
                super::notify_job(&rec, SandboxNotice::Vanished);
                if let Some(table) = &self.ctx.host_table {
                    table.apply_in_background("a sandbox's VM vanished: unbind it");
                }
                crate::exposure::sandbox_gone(&self.ctx.store, rec.vmid);
                me.stop(Some("VM vanished".into()));
            }
            ProbeFinding::StoppedOutside => moved(SandboxEvent::Stop, "VM stopped outside AgentLab")?,
            // Paused without the record knowing (a crash right after a pause).
            ProbeFinding::FoundPaused => moved(SandboxEvent::Suspend, "VM found paused")?,
            ProbeFinding::FoundResumed => moved(SandboxEvent::Resume, "VM found running")?,
            ProbeFinding::AddressChanged(ip) => {
                // The guest agent's word is a claim (`refused_address_claim`).
                if let Some(why) = super::refused_address_claim(&self.ctx, rec.vmid, &ip)? {
                    tracing::warn!(vmid = rec.vmid, reason = %why, "kept the recorded address");
                    return Ok(());
                }
                let msg = format!("guest address {} -> {ip}", rec.ip.as_deref().unwrap_or("-"));
                let event = NewEvent::sandbox(rec.vmid, EventKind::AddressChanged, Stage::Network, msg)
                    .payload(serde_json::json!({"ip": ip}));
                let patch = SandboxPatch { ip: Some(Some(ip)), ..Default::default() };
                self.ctx.store.patch_sandbox(rec.vmid, &patch, Some(&event))?;
                if let Some(table) = &self.ctx.host_table {
                    table.apply_in_background("a guest's address changed: pin the new one");
                }
            }
            ProbeFinding::Nothing => {}
        }
        Ok(())
    }
}
