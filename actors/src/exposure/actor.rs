//! One actor per exposure (`exposure:<name>`): publishes the sandbox's port (the address
//! always read from the sandbox record), checks every `health_interval` that the rule is
//! still there and still points at the sandbox, publishes it again when it is not, and
//! removes it (rule, record, actor) when asked or when its sandbox is gone.

use super::ExposureContext;
use crate::model::{EventKind, SandboxState};
use crate::protocol::ExposureView;
use crate::store::{ExposureRecord, NewEvent, Stage, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

/// How long one `tailscale` command may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

pub enum ExposureMsg {
    /// Publish if the rule is missing or points elsewhere; answer with the exposure.
    Publish(Option<RpcReplyPort<ExposureView>>),
    HealthCheck,
    /// Unpublish, delete the record, stop.
    Remove(Option<RpcReplyPort<Result<(), String>>>),
}

pub struct ExposureActor {
    pub ctx: Arc<ExposureContext>,
}

pub struct ExposureState {
    name: String,
    timer: Option<ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<ExposureMsg>>>>,
}

/// Where the exposure should point now, or why it cannot.
enum Target {
    At(SocketAddrV4),
    /// The sandbox exists but has no address now (stopped): try again at the next check.
    NotNow(String),
    /// The sandbox is gone: the exposure goes too.
    Gone,
}

impl ExposureActor {
    fn target(&self, rec: &ExposureRecord) -> Result<Target, StoreError> {
        let Some(sandbox) = self.ctx.store.get_sandbox(rec.vmid)? else { return Ok(Target::Gone) };
        if sandbox.state == SandboxState::Destroyed {
            return Ok(Target::Gone);
        }
        let ip = sandbox.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        match (sandbox.state, ip) {
            (SandboxState::Ready | SandboxState::Running, Some(ip))
                if !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast() =>
            {
                Ok(Target::At(SocketAddrV4::new(ip, rec.guest_port)))
            }
            (state, _) => {
                Ok(Target::NotNow(format!("sandbox {} is {state} and has no address to forward to", rec.vmid)))
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<dyn super::Publisher>) -> Result<T, super::PublishError> + Send + 'static,
    ) -> Result<T, String> {
        let publisher = Arc::clone(&self.ctx.publisher);
        match tokio::time::timeout(PUBLISH_TIMEOUT, tokio::task::spawn_blocking(move || f(publisher))).await {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the publisher did not answer within {PUBLISH_TIMEOUT:?}")),
        }
    }

    fn event(
        &self,
        rec: &ExposureRecord,
        kind: EventKind,
        msg: String,
        target: Option<&str>,
    ) -> Result<(), StoreError> {
        let payload = serde_json::json!({
            "name": rec.name, "vmid": rec.vmid, "port": rec.guest_port, "host_port": rec.host_port, "target": target,
        });
        self.ctx.store.append_event(&NewEvent::sandbox(rec.vmid, kind, Stage::Exposure, msg).payload(payload))?;
        Ok(())
    }

    fn view(&self, rec: &ExposureRecord) -> ExposureView {
        let ip = self.ctx.store.get_sandbox(rec.vmid).ok().flatten().and_then(|s| s.ip);
        rec.view(ip)
    }

    /// Publishes when needed; records the outcome.
    async fn publish(&self, state: &mut ExposureState) -> Result<Option<ExposureView>, StoreError> {
        let Some(rec) = self.ctx.store.get_exposure(&state.name)? else { return Ok(None) };
        let now = time::OffsetDateTime::now_utc();
        let target = match self.target(&rec)? {
            Target::Gone => {
                // Removed: the actor stops. Not removed (the publisher failed, recorded):
                // it stays and tries again at the next check.
                return match self.remove(&rec, "its sandbox is gone").await? {
                    Ok(()) => Ok(None),
                    Err(_) => Ok(Some(self.view(&rec))),
                };
            }
            Target::NotNow(why) => {
                // A stopped sandbox's address may be handed to another: nothing stays
                // published towards it until it is back.
                if rec.state == "serving" {
                    let port = rec.host_port;
                    if let Err(e) = self.blocking(move |p| p.unpublish(port)).await {
                        self.event(
                            &rec,
                            EventKind::ExposureFailed,
                            format!("exposure {} not withdrawn: {e}", rec.name),
                            None,
                        )?;
                    }
                }
                self.ctx.store.set_exposure_state(&rec.name, "requested", None, None, Some(&why), now)?;
                return Ok(self.ctx.store.get_exposure(&rec.name)?.map(|r| self.view(&r)));
            }
            Target::At(target) => target,
        };
        let port = rec.host_port;
        let published = self.blocking(move |p| p.is_published(port, target)).await;
        if rec.state == "serving" && rec.target.as_deref() == Some(&target.to_string()) && published == Ok(true) {
            return Ok(Some(self.view(&rec)));
        }
        let first = rec.state != "serving";
        match self.blocking(move |p| p.publish(port, target)).await {
            Ok(url) => {
                let target_text = target.to_string();
                self.ctx.store.set_exposure_state(&rec.name, "serving", Some(&url), Some(&target_text), None, now)?;
                let (kind, what) = if first {
                    (EventKind::ExposureCreated, "published")
                } else {
                    (EventKind::ExposureRepublished, "was lost (or its sandbox moved) and is published again")
                };
                let msg = format!("exposure {} {what}: {url} -> {target_text}", rec.name);
                self.event(&rec, kind, msg, Some(&target_text))?;
            }
            Err(why) => {
                self.ctx.store.set_exposure_state(&rec.name, "failed", None, None, Some(&why), now)?;
                self.event(
                    &rec,
                    EventKind::ExposureFailed,
                    format!("exposure {} not published: {why}", rec.name),
                    None,
                )?;
            }
        }
        Ok(self.ctx.store.get_exposure(&rec.name)?.map(|r| self.view(&r)))
    }

    async fn remove(&self, rec: &ExposureRecord, why: &str) -> Result<Result<(), String>, StoreError> {
        let port = rec.host_port;
        if let Err(e) = self.blocking(move |p| p.unpublish(port)).await {
            // The record stays, so a later remove (or the next start) tries again.
            let msg = format!("exposure {} not removed: {e}", rec.name);
            self.event(rec, EventKind::ExposureFailed, msg, None)?;
            return Ok(Err(e));
        }
        self.ctx.store.delete_exposure(&rec.name)?;
        self.event(rec, EventKind::ExposureDeleted, format!("exposure {} removed: {why}", rec.name), None)?;
        Ok(Ok(()))
    }

    fn arm(&self, me: &ActorRef<ExposureMsg>, state: &mut ExposureState) {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        state.timer = Some(me.send_after(self.ctx.health_interval, || ExposureMsg::HealthCheck));
    }
}

impl Actor for ExposureActor {
    type Msg = ExposureMsg;
    type State = ExposureState;
    type Arguments = String;

    async fn pre_start(&self, me: ActorRef<ExposureMsg>, name: String) -> Result<ExposureState, ActorProcessingErr> {
        me.send_message(ExposureMsg::Publish(None))?;
        Ok(ExposureState { name, timer: None })
    }

    async fn post_stop(&self, _me: ActorRef<ExposureMsg>, state: &mut ExposureState) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<ExposureMsg>,
        msg: ExposureMsg,
        state: &mut ExposureState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ExposureMsg::Publish(reply) => {
                let view = self.publish(state).await?;
                match (view, reply) {
                    (Some(view), Some(reply)) => {
                        let _ = reply.send(view);
                    }
                    (None, _) => {
                        me.stop(Some("exposure removed".into()));
                        return Ok(());
                    }
                    _ => {}
                }
                self.arm(&me, state);
            }
            ExposureMsg::HealthCheck => {
                if self.publish(state).await?.is_none() {
                    me.stop(Some("exposure removed".into()));
                    return Ok(());
                }
                self.arm(&me, state);
            }
            ExposureMsg::Remove(reply) => {
                let outcome = match self.ctx.store.get_exposure(&state.name)? {
                    Some(rec) => self.remove(&rec, "unexposed").await?,
                    None => Ok(()),
                };
                let removed = outcome.is_ok();
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
                if removed {
                    me.stop(Some("exposure removed".into()));
                }
            }
        }
        Ok(())
    }
}
