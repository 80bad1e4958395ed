//! The gateway's policy, applied to every Proxmox operation:
//! - one mutating operation at a time per VMID, in arrival order (a chain of completions
//!   handed out by the actor as requests arrive);
//! - at most `clone_concurrency` clones per storage (Proxmox serialises them on a storage
//!   lock with a 10 s timeout, so more would fail with `got timeout`);
//! - clones of a template never run with maintenance of that template (shared/exclusive);
//! - at most `max_concurrent_tasks` Proxmox tasks at once;
//! - retries with full-jitter back-off for locks, lock timeouts, transient errors and
//!   timeouts, until the deadline; nothing else is retried.
//!
//! The requests themselves are rate limited by the transport (`rate_limit`).

use super::retry::{RetryPolicy, is_retryable};
use super::stats::Stats;
use agentlab_proxmox::{Pve, PveError};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, OwnedSemaphorePermit, RwLock, Semaphore, oneshot};
use tokio::time::Instant;

/// What the gateway must know about an operation to schedule it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSpec {
    pub name: &'static str,
    /// The VM the operation changes (serialised per VMID); None for reads.
    pub vmid: Option<u32>,
    /// Starts a Proxmox task (counts against the task cap).
    pub task: bool,
    /// A clone of `(node, source)`.
    pub clone_of: Option<(String, u32)>,
}

impl OpSpec {
    pub fn read(name: &'static str) -> OpSpec {
        OpSpec { name, vmid: None, task: false, clone_of: None }
    }

    pub fn change(name: &'static str, vmid: u32) -> OpSpec {
        OpSpec { name, vmid: Some(vmid), task: false, clone_of: None }
    }

    pub fn task(name: &'static str, vmid: u32) -> OpSpec {
        OpSpec { name, vmid: Some(vmid), task: true, clone_of: None }
    }
}

/// Limits, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLimits {
    pub max_concurrent_tasks: usize,
    pub clone_concurrency: usize,
    pub retry: RetryPolicy,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits { max_concurrent_tasks: 8, clone_concurrency: 2, retry: RetryPolicy::default() }
    }
}

/// State shared by the gateway's jobs (never awaited by the actor itself).
pub struct Shared {
    pub pve: Arc<dyn Pve>,
    pub limits: GatewayLimits,
    pub tasks: Arc<Semaphore>,
    pub stats: Arc<Stats>,
    clone_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    templates: Mutex<HashMap<u32, Arc<RwLock<()>>>>,
    source_storage: Mutex<HashMap<u32, String>>,
}

use crate::sync::lock as locked;

impl Shared {
    pub fn new(pve: Arc<dyn Pve>, limits: GatewayLimits) -> Shared {
        Shared {
            tasks: Arc::new(Semaphore::new(limits.max_concurrent_tasks.max(1))),
            pve,
            limits,
            stats: Arc::new(Stats::default()),
            clone_slots: Mutex::new(HashMap::new()),
            templates: Mutex::new(HashMap::new()),
            source_storage: Mutex::new(HashMap::new()),
        }
    }

    fn clone_slot(&self, storage: &str) -> Arc<Semaphore> {
        let cap = self.limits.clone_concurrency.max(1);
        Arc::clone(
            locked(&self.clone_slots).entry(storage.to_string()).or_insert_with(|| Arc::new(Semaphore::new(cap))),
        )
    }

    fn template_lock(&self, vmid: u32, create: bool) -> Option<Arc<RwLock<()>>> {
        let mut map = locked(&self.templates);
        if create { Some(Arc::clone(map.entry(vmid).or_default())) } else { map.get(&vmid).cloned() }
    }

    /// The storage of a clone source's first disk (cached: templates do not move).
    async fn storage_of(&self, node: &str, source: u32) -> Result<String, PveError> {
        if let Some(s) = locked(&self.source_storage).get(&source) {
            return Ok(s.clone());
        }
        let config = self.pve.vm_config(node, source).await?;
        let storage = config
            .values
            .iter()
            .filter(|(k, v)| is_disk(k) && !v.contains("media=cdrom") && !v.contains("-cloudinit"))
            .find_map(|(_, v)| v.split(':').next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        locked(&self.source_storage).insert(source, storage.clone());
        Ok(storage)
    }
}

fn is_disk(key: &str) -> bool {
    ["scsi", "virtio", "sata", "ide"]
        .iter()
        .any(|p| key.strip_prefix(p).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
}

/// Holds what an admitted operation must keep until it ends.
#[derive(Default)]
struct Held {
    _clone: Option<OwnedSemaphorePermit>,
    _template_read: Option<OwnedRwLockReadGuard<()>>,
    _template_write: Option<OwnedRwLockWriteGuard<()>>,
    _task: Option<OwnedSemaphorePermit>,
}

/// An operation handed to the actor: it decides the order, then the job runs on its own task.
pub struct PveCall {
    pub spec: OpSpec,
    pub run: Box<dyn FnOnce(Turn) -> BoxFuture<'static, ()> + Send>,
}

/// What the actor gives a job: its place in its VM's queue and the shared state.
pub struct Turn {
    pub shared: Arc<Shared>,
    pub after: Option<oneshot::Receiver<()>>,
    pub done: Option<oneshot::Sender<()>>,
}

/// An attempt: `(pve, attempt number from 0)`.
pub type Attempt<T> = dyn Fn(Arc<dyn Pve>, u32) -> BoxFuture<'static, Result<T, PveError>> + Send + Sync;

impl Turn {
    async fn execute<T>(mut self, spec: &OpSpec, attempt: &Attempt<T>) -> Result<T, PveError> {
        let queued = crate::metrics::Queued::enter(&crate::metrics::metrics().gateway_queue_depth);
        if let Some(after) = self.after.take() {
            // Err: the previous operation's job vanished; its turn is over either way.
            let _ = after.await;
        }
        let started = Instant::now();
        let result = self.admitted(spec, attempt, queued).await;
        let (outcome, attempts) = match &result {
            Ok((_, n)) => ("ok".to_string(), *n),
            Err((e, n)) => (e.class().as_str().to_string(), *n),
        };
        self.shared.stats.record(spec.name, &outcome, started.elapsed(), attempts);
        crate::metrics::metrics().proxmox_call(spec.name, &outcome, started.elapsed());
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        result.map(|(v, _)| v).map_err(|(e, _)| e)
    }

    /// Waits for the slots `spec` needs (`queued` counts the wait), then runs it.
    async fn admitted<T>(
        &self,
        spec: &OpSpec,
        attempt: &Attempt<T>,
        queued: crate::metrics::Queued,
    ) -> Result<(T, u32), (PveError, u32)> {
        let shared = &self.shared;
        let mut held = Held::default();
        if let Some((node, source)) = &spec.clone_of {
            let storage = retrying(shared.limits.retry, spec.name, |_| shared.storage_of(node, *source)).await?.0;
            held._clone = shared.clone_slot(&storage).acquire_owned().await.ok();
            if let Some(lock) = shared.template_lock(*source, true) {
                held._template_read = Some(lock.read_owned().await);
            }
        } else if let Some(vmid) = spec.vmid
            && let Some(lock) = shared.template_lock(vmid, false)
        {
            held._template_write = Some(lock.write_owned().await);
        }
        if spec.task {
            held._task = Arc::clone(&shared.tasks).acquire_owned().await.ok();
        }
        drop(queued);
        retrying(shared.limits.retry, spec.name, |n| attempt(Arc::clone(&shared.pve), n)).await
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the deadline passes; the result
/// with the number of attempts made.
async fn retrying<T, F, Fut>(policy: RetryPolicy, op: &str, mut attempt: F) -> Result<(T, u32), (PveError, u32)>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, PveError>>,
{
    let first = Instant::now();
    let mut n = 0u32;
    loop {
        match attempt(n).await {
            Ok(v) => return Ok((v, n + 1)),
            Err(e) if is_retryable(&e) && first.elapsed() < policy.deadline => {
                tracing::debug!(op, attempt = n + 1, error = %e, "retrying proxmox operation");
                tokio::time::sleep(policy.delay(n)).await;
                n += 1;
            }
            Err(e) => return Err((e, n + 1)),
        }
    }
}

/// The typed front of the gateway, used by every actor that needs Proxmox.
#[derive(Clone)]
pub struct Gateway {
    submit: Arc<dyn Fn(PveCall) -> Result<(), PveError> + Send + Sync>,
}

impl Gateway {
    /// A gateway that sends jobs to the `pve` actor.
    pub fn new(submit: impl Fn(PveCall) -> Result<(), PveError> + Send + Sync + 'static) -> Gateway {
        Gateway { submit: Arc::new(submit) }
    }

    /// Runs `attempt` under the gateway's policy; its result.
    pub async fn run<T: Send + 'static>(
        &self,
        spec: OpSpec,
        attempt: impl Fn(Arc<dyn Pve>, u32) -> BoxFuture<'static, Result<T, PveError>> + Send + Sync + 'static,
    ) -> Result<T, PveError> {
        let (tx, rx) = oneshot::channel();
        let job_spec = spec.clone();
        let job = PveCall {
            spec,
            run: Box::new(move |turn: Turn| {
                Box::pin(async move {
                    let result = turn.execute(&job_spec, &attempt).await;
                    let _ = tx.send(result);
                })
            }),
        };
        (self.submit)(job)?;
        rx.await.map_err(|_| PveError::Transient("the pve gateway stopped before answering".into()))?
    }
}
