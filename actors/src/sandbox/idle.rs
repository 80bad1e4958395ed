//! Idle-stop: a READY sandbox nobody uses is stopped after its idle window.
//!
//! Every `idle_stop_interval` the actor gathers evidence — established connections opened
//! to the guest (SSH, exposures) in the host's conntrack table, the VM's CPU from
//! `status/current` (scaled to cores) — and reads the
//! recorded activity (`last_used_at`, bumped by `ssh` and `logs`; `updated_at`, moved by
//! jobs and operations). An SSH flow or CPU above the threshold is activity. Idle for the
//! window → an `sandbox.idle_stop` event with the evidence, then the ordinary stop. A probe
//! that cannot tell never stops a sandbox: it counts as activity, and its reason is
//! recorded once (until a probe succeeds again). RUNNING (a job in progress) is never
//! probed: the Go version's RUNNING, "in use", is READY here.

use super::actor::{SandboxActor, SandboxActorState};
use super::msg::SandboxMsg;
use super::operate::SandboxOp;
use crate::model::{EventKind, SandboxState};
use crate::store::{NewEvent, SandboxRecord, Stage, StoreError};
use ractor::ActorRef;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub struct IdleSettings {
    pub enabled: bool,
    pub interval: Duration,
    /// Minutes; a profile's `behavior.idle_stop_minutes_default` overrides; 0 disables.
    pub minutes_default: u32,
    /// A fraction of one core (`status/current` `cpu`).
    pub cpu_threshold: f64,
}

/// Where sessions to a guest are seen: the host's conntrack table. Every established
/// connection opened towards the guest counts (SSH, an exposure in use), not only port 22.
pub trait SshSessions: Send + Sync {
    fn established(&self, ip: Ipv4Addr) -> Result<usize, String>;
}

impl SshSessions for agentlab_netfilter::conntrack::Conntrack {
    fn established(&self, ip: Ipv4Addr) -> Result<usize, String> {
        self.established_inbound(ip).map_err(|e| e.to_string())
    }
}

/// One probe's findings; an `Err` says why that part could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub ssh_flows: Result<usize, String>,
    pub cpu: Result<f64, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IdleVerdict {
    Active(&'static str),
    /// The probe could not tell: counted as activity, never a stop.
    Unknown(String),
    Idle {
        idle_for: Duration,
    },
    Stop {
        idle_for: Duration,
    },
}

pub fn judge(
    evidence: &Evidence,
    last_active: OffsetDateTime,
    now: OffsetDateTime,
    window: Duration,
    threshold: f64,
) -> IdleVerdict {
    match (&evidence.ssh_flows, &evidence.cpu) {
        (Err(why), _) | (_, Err(why)) => IdleVerdict::Unknown(why.clone()),
        (Ok(flows), _) if *flows > 0 => IdleVerdict::Active("an SSH session is open"),
        (_, Ok(cpu)) if *cpu > threshold => IdleVerdict::Active("CPU above the idle threshold"),
        _ => {
            let idle_for = Duration::try_from(now - last_active).unwrap_or(Duration::ZERO);
            if idle_for >= window { IdleVerdict::Stop { idle_for } } else { IdleVerdict::Idle { idle_for } }
        }
    }
}

impl SandboxActor {
    /// The sandbox's idle window, if idle-stop applies to it.
    fn idle_window(&self, rec: &SandboxRecord) -> Option<Duration> {
        let idle = &self.ctx.settings.idle;
        // A pooled sandbox is idle by design: the pool, not idle-stop, decides its fate.
        if !idle.enabled || rec.state != SandboxState::Ready || rec.pool.is_some() {
            return None;
        }
        let profiles = self.ctx.profiles.snapshot();
        let minutes = profiles
            .get(&rec.profile)
            .and_then(|p| p.profile.behavior.idle_stop_minutes_default)
            .unwrap_or(idle.minutes_default);
        (minutes > 0).then(|| self.ctx.settings.lease_minute * minutes)
    }

    /// Arms the next idle check while the sandbox is READY (called with the other timers).
    pub(super) fn arm_idle_check(&self, me: &ActorRef<SandboxMsg>, state: &mut SandboxActorState, rec: &SandboxRecord) {
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        if self.idle_window(rec).is_some() {
            if state.idle_active_at.is_none() {
                state.idle_active_at = Some(self.ctx.settings.clock.now());
            }
            state.idle_timer = Some(me.send_after(self.ctx.settings.idle.interval, || SandboxMsg::IdleCheck));
        } else {
            state.idle_active_at = None;
        }
    }

    pub(super) fn on_idle_check(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
    ) -> Result<(), StoreError> {
        state.idle_timer = None;
        let rec = self.load(state.vmid)?;
        if self.idle_window(&rec).is_none() {
            return Ok(());
        }
        if state.busy() {
            self.arm_idle_check(me, state, &rec);
            return Ok(());
        }
        let (ctx, me, generation) = (Arc::clone(&self.ctx), me.clone(), state.generation.current());
        tokio::spawn(async move {
            let cpu = match rec.node.as_deref() {
                // Proxmox's `cpu` is a fraction of all the VM's vCPUs; the threshold is of
                // one core.
                Some(node) => match ctx.gateway.vm_status(node, rec.vmid).await {
                    Ok(status) => status
                        .cpu
                        .map(|c| c * f64::from(rec.cores.max(1)))
                        .ok_or_else(|| "Proxmox gave no CPU figure".to_string()),
                    Err(e) => Err(format!("cannot read the VM's status: {e}")),
                },
                None => Err("the sandbox has no node recorded".into()),
            };
            let ssh_flows = match rec.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) {
                Some(ip) => {
                    let sessions = Arc::clone(&ctx.ssh_sessions);
                    tokio::task::spawn_blocking(move || sessions.established(ip))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                }
                None => Err("the sandbox has no IPv4 guest address".into()),
            };
            let _ = me.send_message(SandboxMsg::IdleProbed { evidence: Evidence { ssh_flows, cpu }, generation });
        });
        Ok(())
    }

    pub(super) fn on_idle_probed(
        &self,
        me: &ActorRef<SandboxMsg>,
        state: &mut SandboxActorState,
        evidence: Evidence,
        generation: u64,
    ) -> Result<(), StoreError> {
        let rec = self.load(state.vmid)?;
        let Some(window) = self.idle_window(&rec) else { return Ok(()) };
        if state.busy() || !state.generation.is_current(generation) {
            self.arm_idle_check(me, state, &rec);
            return Ok(());
        }
        let now = self.ctx.settings.clock.now();
        let recorded = [Some(rec.updated_at), rec.last_used_at, state.idle_active_at].into_iter().flatten().max();
        let last_active = recorded.unwrap_or(now);
        let threshold = self.ctx.settings.idle.cpu_threshold;
        match judge(&evidence, last_active, now, window, threshold) {
            IdleVerdict::Active(_) => {
                state.idle_active_at = Some(now);
                state.idle_failure_recorded = false;
            }
            IdleVerdict::Unknown(why) => {
                state.idle_active_at = Some(now);
                if !state.idle_failure_recorded {
                    state.idle_failure_recorded = true;
                    tracing::warn!(vmid = rec.vmid, reason = %why, "idle-stop cannot tell whether the sandbox is in use; it is not stopped");
                    let message =
                        format!("idle-stop cannot tell whether the sandbox is in use, so it is not stopped: {why}");
                    self.ctx.store.append_event(
                        &NewEvent::sandbox(rec.vmid, EventKind::IdleProbeFailed, Stage::Lifecycle, message)
                            .payload(serde_json::json!({"reason": why})),
                    )?;
                }
            }
            IdleVerdict::Idle { .. } => state.idle_failure_recorded = false,
            IdleVerdict::Stop { idle_for } => {
                let minutes = window.as_secs_f64() / self.ctx.settings.lease_minute.as_secs_f64().max(f64::EPSILON);
                let idle_minutes =
                    idle_for.as_secs_f64() / self.ctx.settings.lease_minute.as_secs_f64().max(f64::EPSILON);
                let payload = serde_json::json!({
                    "idle_minutes": minutes.round() as u64,
                    "idle_for_minutes": idle_minutes.floor() as u64,
                    "last_active_at": crate::model::time_format::format(last_active),
                    "cpu_usage": evidence.cpu.as_ref().ok(),
                    "cpu_threshold": threshold,
                    "ssh_active": false,
                    "ssh_flows": evidence.ssh_flows.as_ref().ok(),
                });
                let message = format!(
                    "idle for {} minutes (no SSH session, CPU under {threshold}): stopping",
                    idle_minutes.floor()
                );
                self.ctx.store.append_event(
                    &NewEvent::sandbox(rec.vmid, EventKind::IdleStop, Stage::Lifecycle, message).payload(payload),
                )?;
                let (reply, _) = ractor::concurrency::oneshot();
                return self.on_operate(me, state, SandboxOp::Stop, false, None, reply.into());
            }
        }
        self.arm_idle_check(me, state, &rec);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute)
    }

    #[test]
    fn the_verdict_for_every_kind_of_evidence() {
        let window = Duration::from_secs(30 * 60);
        let quiet = Evidence { ssh_flows: Ok(0), cpu: Ok(0.01) };
        assert_eq!(
            judge(&quiet, at(0), at(10), window, 0.05),
            IdleVerdict::Idle { idle_for: Duration::from_secs(600) }
        );
        assert!(matches!(judge(&quiet, at(0), at(30), window, 0.05), IdleVerdict::Stop { .. }));
        let ssh = Evidence { ssh_flows: Ok(1), cpu: Ok(0.0) };
        assert!(matches!(judge(&ssh, at(0), at(90), window, 0.05), IdleVerdict::Active(_)));
        let busy = Evidence { ssh_flows: Ok(0), cpu: Ok(0.5) };
        assert!(matches!(judge(&busy, at(0), at(90), window, 0.05), IdleVerdict::Active(_)));
        let blind = Evidence { ssh_flows: Err("conntrack: not found".into()), cpu: Ok(0.0) };
        assert!(matches!(judge(&blind, at(0), at(90), window, 0.05), IdleVerdict::Unknown(_)), "never a stop");
        let no_cpu = Evidence { ssh_flows: Ok(0), cpu: Err("timeout".into()) };
        assert!(matches!(judge(&no_cpu, at(0), at(90), window, 0.05), IdleVerdict::Unknown(_)));
        assert!(
            matches!(judge(&quiet, at(5), at(0), window, 0.05), IdleVerdict::Idle { idle_for } if idle_for.is_zero())
        );
    }
}
