//! The simulator's moving parts: shared state, the task engine (UPIDs, logs, exit status),
//! Proxmox's locks (config flock per VM, storage lock per storage), fault dice and the
//! request log.

use super::SimConfig;
use super::world::World;
use agentlab_proxmox::Upid;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio::time::Instant;

/// An error answer: HTTP status, Proxmox's message, and per-parameter errors for 400s.
#[derive(Debug, Clone, PartialEq)]
pub struct SimError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl SimError {
    /// A handler `die`: HTTP 500 with the message.
    pub fn die(message: impl Into<String>) -> SimError {
        SimError { status: 500, message: message.into(), errors: None }
    }

    /// A parameter error: 400 with `errors.<param>`.
    pub fn param(param: &str, message: impl Into<String>) -> SimError {
        SimError {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(BTreeMap::from([(param.to_string(), message.into())])),
        }
    }

    pub fn params(errors: BTreeMap<String, String>) -> SimError {
        SimError { status: 400, message: "Parameter verification failed.".into(), errors: Some(errors) }
    }

    pub fn status(status: u16, message: impl Into<String>) -> SimError {
        SimError { status, message: message.into(), errors: None }
    }
}

/// Which fault to inject into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 500 `cluster not ready - no quorum?` before anything happens.
    Error,
    /// The VM's config lock could not be taken in time.
    LockTimeout,
    /// The connection is closed without an answer (before anything happens).
    Drop,
}

/// Fault rates (0–1). `slow_task_rate` makes that share of tasks take `slow_task_factor`
/// times longer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub error_rate: f64,
    pub lock_timeout_rate: f64,
    pub drop_rate: f64,
    pub slow_task_rate: f64,
    pub slow_task_factor: f64,
    /// Only mutating requests (POST/PUT/DELETE) get faults when true.
    pub mutating_only: bool,
}

/// One task, as `tasks/{upid}/status` and `/log` show it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEntry {
    pub upid: String,
    pub node: String,
    pub task_type: String,
    pub id: String,
    pub user: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u64,
    pub running: bool,
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
    /// Milliseconds since the simulator started (for concurrency analysis).
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// For clones: the storage whose lock the work held, and when it held it.
    pub storage: Option<String>,
    pub storage_held_ms: Option<(u64, u64)>,
}

/// One request as the simulator saw it, with its validation verdict.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub seq: u64,
    pub at_ms: u64,
    pub source: String,
    pub method: String,
    pub path: String,
    pub endpoint: Option<String>,
    pub params: BTreeMap<String, Vec<String>>,
    /// `ok`, `rejected` (schema), `not_implemented`, `unauthorized`, or `fault:<kind>`.
    pub verdict: String,
    pub errors: Option<BTreeMap<String, String>>,
    pub status: u16,
}

/// Why `Sim::move_vm` did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveError {
    NoNode,
    NoVm,
}

pub struct Sim {
    pub config: SimConfig,
    pub world: Mutex<World>,
    tasks: Mutex<BTreeMap<String, TaskEntry>>,
    requests: Mutex<Vec<RequestRecord>>,
    faults: Mutex<FaultConfig>,
    rng: Mutex<u64>,
    vm_locks: Mutex<HashMap<u32, Arc<RwLock<()>>>>,
    storage_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    pub started: Instant,
    pub fingerprint: String,
    /// Guest processes of running VMs (the VM runtime); dropping one kills it.
    guests: Mutex<HashMap<u32, tokio::process::Child>>,
    /// QEMU processes of running VMs (the QEMU runtime).
    pub machines: crate::qemu::Machines,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Sim {
    pub fn new(config: SimConfig, world: World, fingerprint: String) -> Sim {
        Sim {
            faults: Mutex::new(config.faults.clone()),
            rng: Mutex::new(config.seed.max(1)),
            config,
            world: Mutex::new(world),
            tasks: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
            vm_locks: Mutex::new(HashMap::new()),
            storage_locks: Mutex::new(HashMap::new()),
            started: Instant::now(),
            fingerprint,
            guests: Mutex::new(HashMap::new()),
            machines: crate::qemu::Machines::default(),
        }
    }

    pub fn add_guest(&self, vmid: u32, child: tokio::process::Child) {
        lock(&self.guests).insert(vmid, child);
    }

    /// Kills a VM's guest process (the VM stopped, rolled back or was destroyed).
    pub fn stop_guest(&self, vmid: u32) {
        if let Some(mut child) = lock(&self.guests).remove(&vmid) {
            let _ = child.start_kill();
        }
        self.machines.kill_now(vmid);
    }

    /// The OS pid of a VM's guest process, if it runs one.
    pub fn guest_pid(&self, vmid: u32) -> Option<u32> {
        lock(&self.guests).get(&vmid).and_then(|c| c.id())
    }

    /// Deletes a VM and the volumes it owns, as if someone did it on the host; false if
    /// there was no such VM.
    pub fn vanish_vm(&self, vmid: u32) -> bool {
        self.stop_guest(vmid);
        let mut world = self.world();
        let Some(vm) = world.vms.remove(&vmid) else { return false };
        for (_, volid) in vm.referenced_volumes() {
            world.free_volume(&volid);
        }
        true
    }

    /// Moves a VM to another node, as a migration started outside AgentLab would.
    pub fn move_vm(&self, vmid: u32, node: &str) -> Result<(), MoveError> {
        let mut world = self.world();
        if !world.nodes.iter().any(|n| n.name == node) {
            return Err(MoveError::NoNode);
        }
        let vm = world.vms.get_mut(&vmid).ok_or(MoveError::NoVm)?;
        vm.node = node.to_string();
        Ok(())
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn latency(&self, op: &str) -> Duration {
        self.config.latency.of(op)
    }

    /// xorshift64*: deterministic for a seed.
    pub fn roll(&self) -> f64 {
        let mut state = lock(&self.rng);
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn faults(&self) -> FaultConfig {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        *lock(&self.faults) = faults;
    }

    /// Decides whether this request gets a fault.
    pub fn pick_fault(&self, mutating: bool) -> Option<Fault> {
        let f = self.faults();
        if f.mutating_only && !mutating {
            return None;
        }
        // Config locks are taken by changes only; a read never times out on one.
        let lock_rate = if mutating { f.lock_timeout_rate } else { 0.0 };
        let dice = [(Fault::Drop, f.drop_rate), (Fault::Error, f.error_rate), (Fault::LockTimeout, lock_rate)];
        dice.into_iter().find(|(_, rate)| *rate > 0.0 && self.roll() < *rate).map(|(fault, _)| fault)
    }

    pub fn record(&self, mut record: RequestRecord) {
        let mut requests = lock(&self.requests);
        record.seq = requests.len() as u64 + 1;
        if record.at_ms == 0 {
            record.at_ms = self.now_ms();
        }
        requests.push(record);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.requests).clone()
    }

    /// The requests the contract refused (schema or unknown endpoint), one line each: what
    /// tests assert empty to prove a client sent only what Proxmox accepts.
    pub fn refused_requests(&self) -> Vec<String> {
        lock(&self.requests)
            .iter()
            .filter(|r| r.verdict == "rejected" || r.verdict == "not_implemented")
            .map(|r| format!("{} {} {:?} -> {:?}", r.method, r.path, r.params, r.errors))
            .collect()
    }

    pub fn tasks(&self) -> Vec<TaskEntry> {
        lock(&self.tasks).values().cloned().collect()
    }

    pub fn task(&self, upid: &str) -> Option<TaskEntry> {
        lock(&self.tasks).get(upid).cloned()
    }

    /// The config flock of a VM: shared for linked-clone sources, exclusive otherwise.
    fn vm_lock(&self, vmid: u32) -> Arc<RwLock<()>> {
        Arc::clone(lock(&self.vm_locks).entry(vmid).or_default())
    }

    pub async fn flock_exclusive(&self, vmid: u32, timeout_op: &str) -> Result<OwnedRwLockWriteGuard<()>, String> {
        tokio::time::timeout(self.latency(timeout_op), self.vm_lock(vmid).write_owned())
            .await
            .map_err(|_| format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"))
    }

    pub async fn flock_shared(&self, vmid: u32, timeout_op: &str) -> Result<OwnedRwLockReadGuard<()>, String> {
        tokio::time::timeout(self.latency(timeout_op), self.vm_lock(vmid).read_owned())
            .await
            .map_err(|_| format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"))
    }

    /// The storage lock Proxmox takes for volume alloc/free/clone (10 s wait).
    pub async fn storage_lock(&self, storage: &str) -> Result<OwnedMutexGuard<()>, String> {
        let m = Arc::clone(lock(&self.storage_locks).entry(storage.to_string()).or_default());
        tokio::time::timeout(self.latency("storage_lock_timeout"), m.lock_owned())
            .await
            .map_err(|_| format!("can't lock file '/var/lock/pve-manager/pve-storage-{storage}' - got timeout"))
    }

    /// Starts a task: registers its UPID as running, runs `work` (which sleeps, locks and
    /// changes the world), then records `TASK OK` or `TASK ERROR: <msg>`.
    /// `work` gets the task's UPID (to annotate it) and returns the log lines.
    pub fn spawn_task<W, F>(self: &Arc<Self>, node: &str, task_type: &str, id: &str, user: &str, work: W) -> String
    where
        W: FnOnce(String) -> F,
        F: Future<Output = Result<Vec<String>, String>> + Send + 'static,
    {
        let pid = self.world().pid();
        let starttime =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let upid = Upid {
            node: node.to_string(),
            pid,
            pstart: 0x0127_0000 + u64::from(pid),
            starttime,
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        };
        let text = upid.to_string();
        let entry = TaskEntry {
            upid: text.clone(),
            node: node.to_string(),
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            pid,
            pstart: upid.pstart,
            starttime,
            running: true,
            exitstatus: None,
            log: Vec::new(),
            started_ms: self.now_ms(),
            ended_ms: None,
            storage: None,
            storage_held_ms: None,
        };
        lock(&self.tasks).insert(text.clone(), entry);
        let work = work(text.clone());
        let sim = Arc::clone(self);
        let key = text.clone();
        let slow = {
            let f = self.faults();
            (f.slow_task_rate > 0.0 && self.roll() < f.slow_task_rate).then_some(f.slow_task_factor.max(1.0))
        };
        tokio::spawn(async move {
            if let Some(factor) = slow {
                // A slow host: the task starts late by (factor - 1) linked-clone times.
                tokio::time::sleep(sim.latency("clone_linked").mul_f64(factor - 1.0)).await;
            }
            let outcome = work.await;
            let mut tasks = lock(&sim.tasks);
            if let Some(task) = tasks.get_mut(&key) {
                task.running = false;
                task.ended_ms = Some(sim.started.elapsed().as_millis() as u64);
                match outcome {
                    Ok(lines) => {
                        // A `WARN: ` line is a warning (pve-common RESTEnvironment.pm warn,
                        // 757): the task still succeeds, as `WARNINGS: n` (UPID.pm 70-91).
                        let warnings = lines.iter().filter(|l| l.starts_with("WARN: ")).count();
                        task.log.extend(lines);
                        let status = if warnings == 0 { "OK".to_string() } else { format!("WARNINGS: {warnings}") };
                        task.log.push(format!("TASK {status}"));
                        task.exitstatus = Some(status);
                    }
                    Err(message) => {
                        task.log.push(format!("TASK ERROR: {message}"));
                        task.exitstatus = Some(message.replace('\n', " "));
                    }
                }
            }
        });
        text
    }

    /// Notes on a task which storage lock it held and when (for concurrency checks).
    pub fn note_storage_hold(&self, upid: &str, storage: &str, from_ms: u64, to_ms: u64) {
        if let Some(task) = lock(&self.tasks).get_mut(upid) {
            task.storage = Some(storage.to_string());
            task.storage_held_ms = Some((from_ms, to_ms));
        }
    }

    pub fn snapshot_json(&self) -> Value {
        let world = serde_json::to_value(&*self.world()).unwrap_or(Value::Null);
        serde_json::json!({
            "world": world,
            "tasks": self.tasks(),
            "faults": self.faults(),
            "fingerprint": self.fingerprint,
        })
    }
}
