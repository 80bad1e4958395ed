//! The QEMU VM runtime (`pve-sim --vm-runtime qemu`): a started VM is a real QEMU process.
//! Its disks are qcow2 overlays on the image its volumes came from (a template's image, an
//! `import-from` source) — the linked clone — and blank qcow2 files for new volumes; its
//! cloud-init drive is the NoCloud ISO Proxmox would generate (`seed`); each NIC is a tap
//! wired as Proxmox wires it (`net`); the guest agent and the monitor are Unix sockets
//! (`monitor`). Stop, shutdown, suspend, resume and reset go through QMP; a VM whose QEMU
//! exits (the guest powered off) is stopped, as on Proxmox.

mod disks;
mod monitor;
mod net;
pub mod plan;
mod seed;

use crate::engine::Sim;
use net::Nic;
use plan::{Accel, Drive, Kernel, Plan};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How VMs run, from `pve-sim`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuRuntime {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    pub accel: AccelChoice,
    /// Template VMID → the image file its boot disk holds (`--vm-image VMID=PATH`).
    pub images: BTreeMap<u32, PathBuf>,
    /// Per-VM directories (sockets, console log, seed ISO) and the volumes' overlays.
    pub root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if it really runs a guest here, else TCG (software emulation).
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<AccelChoice, String> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            other => Err(format!("`{other}` is not auto, kvm or tcg")),
        }
    }
}

/// The running VMs.
#[derive(Default)]
pub struct Machines {
    running: Mutex<HashMap<u32, Machine>>,
    accel: OnceLock<Accel>,
    /// One guest-agent exchange at a time per VM: the port is a single byte stream.
    agent_turns: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

struct Machine {
    pid: u32,
    plan: Plan,
    kill: mpsc::Sender<()>,
    exited: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Machines {
    pub fn pid(&self, vmid: u32) -> Option<u32> {
        lock(&self.running).get(&vmid).map(|m| m.pid)
    }

    fn sockets(&self, vmid: u32) -> Option<(PathBuf, PathBuf)> {
        lock(&self.running).get(&vmid).map(|m| (m.plan.qmp_socket(), m.plan.agent_socket()))
    }

    /// SIGKILL without waiting (a VM removed behind Proxmox's back, a rollback).
    pub fn kill_now(&self, vmid: u32) {
        if let Some(m) = lock(&self.running).get(&vmid) {
            let _ = m.kill.try_send(());
        }
    }

    fn exited(&self, vmid: u32) -> Option<watch::Receiver<bool>> {
        lock(&self.running).get(&vmid).map(|m| m.exited.clone())
    }
}

/// Starts VM `vmid`'s QEMU; its pid. Runs inside the `qmstart` task, under the config flock.
pub async fn start(sim: &Arc<Sim>, runtime: &QemuRuntime, vmid: u32) -> Result<u32, String> {
    let setup = gather(sim, runtime, vmid)?;
    let accel = resolve_accel(sim, runtime, setup.kernel.as_ref()).await;
    let dir = runtime.root.join(vmid.to_string());
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for stale in ["qmp.sock", "qga.sock"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let mut drives = Vec::new();
    for disk in &setup.disks {
        drives.push(disks::prepare(runtime, disk)?);
    }
    if let Some((key, files)) = &setup.seed {
        let iso = dir.join("cloudinit.iso");
        seed::write_iso(files, &dir, &iso)?;
        drives.push(Drive { key: key.clone(), file: iso, format: "raw", cdrom: true });
    }
    let plan = Plan {
        vmid,
        accel,
        q35: setup.config.get("machine").is_some_and(|m| m.contains("q35")),
        memory_mib: setup
            .config
            .get("memory")
            .and_then(|m| m.split(',').next()?.trim_start_matches("current=").parse().ok())
            .unwrap_or(512),
        vcpus: plan::vcpus(&setup.config),
        drives,
        nics: setup.nics.clone(),
        agent: setup.agent,
        kernel: setup.kernel.clone(),
        boot_order: plan::boot_order(&setup.config),
        dir: dir.clone(),
    };
    for nic in &plan.nics {
        if let Err(e) = nic.plug(vmid) {
            plan.nics.iter().for_each(|n| n.unplug(vmid));
            return Err(e);
        }
    }
    let spawned = spawn(runtime, &plan).await;
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            plan.nics.iter().for_each(|n| n.unplug(vmid));
            return Err(e);
        }
    };
    let pid = child.id().unwrap_or(0);
    let (kill, kill_rx) = mpsc::channel(1);
    let (exited_tx, exited) = watch::channel(false);
    lock(&sim.machines.running).insert(vmid, Machine { pid, plan: plan.clone(), kill, exited });
    tokio::spawn(watch_exit(Arc::clone(sim), vmid, pid, child, kill_rx, exited_tx, plan.nics));
    Ok(pid)
}

/// What `start` reads from the world in one go.
struct Setup {
    config: BTreeMap<String, String>,
    disks: Vec<disks::Disk>,
    seed: Option<(String, seed::NoCloud)>,
    nics: Vec<Nic>,
    agent: bool,
    kernel: Option<Kernel>,
}

fn gather(sim: &Sim, runtime: &QemuRuntime, vmid: u32) -> Result<Setup, String> {
    let world = sim.world();
    let vm = world.vms.get(&vmid).ok_or_else(|| format!("VM {vmid} vanished"))?;
    let mut config = vm.config.clone();
    config.extend(vm.pending.clone());
    let cloudinit = crate::world::cloudinit_drive(&config, vmid);
    let mut disks = Vec::new();
    for (key, value) in config.iter().filter(|(k, _)| crate::world::is_disk_key(k)) {
        if Some(key) == cloudinit.as_ref() || value.contains("media=cdrom") {
            continue;
        }
        let volid = value.split(',').next().unwrap_or_default();
        let Some((storage, volname)) = world.parse_volid(volid) else { continue };
        let volume = world
            .storages
            .get(storage)
            .and_then(|s| s.volumes.get(volname))
            .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
        disks.push(disks::Disk {
            key: key.clone(),
            overlay: disks::overlay_path(runtime, storage, volname),
            size: volume.size,
            image: volume.image.clone(),
        });
    }
    let seed = match &cloudinit {
        None => None,
        Some(key) => {
            let mut custom = BTreeMap::new();
            for part in config.get("cicustom").map(|c| c.split(',').collect::<Vec<_>>()).unwrap_or_default() {
                let Some((kind, volid)) = part.split_once('=') else { continue };
                let file = volid.split_once(':').and_then(|(storage, name)| {
                    let dir = world.storages.get(storage)?.snippets_dir()?;
                    Some(dir.join(name.strip_prefix("snippets/")?))
                });
                let file = file.ok_or_else(|| format!("volume '{volid}' does not exist"))?;
                let text =
                    std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                custom.insert(kind.to_string(), text);
            }
            Some((key.clone(), seed::build(&config, vmid, &custom)))
        }
    };
    let mut nics = Vec::new();
    for (key, value) in &config {
        if let Some(n) = key.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) {
            nics.push(Nic::parse(n, value)?);
        }
    }
    let agent = config.get("agent").is_some_and(|a| a.starts_with('1') || a.contains("enabled=1"));
    // The boot disk's image decides a direct kernel boot.
    let boot_key = plan::boot_order(&config).into_iter().find(|k| disks.iter().any(|d| &d.key == k));
    let boot_disk = disks.iter().find(|d| Some(&d.key) == boot_key.as_ref()).or(disks.first());
    let kernel = boot_disk.and_then(|d| d.image.as_deref()).and_then(Kernel::beside);
    Ok(Setup { config, disks, seed, nics, agent, kernel })
}

async fn spawn(runtime: &QemuRuntime, plan: &Plan) -> Result<tokio::process::Child, String> {
    let log = plan.dir.join("qemu.log");
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(&runtime.qemu)
        .args(plan.args())
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", runtime.qemu.display()))?;
    // QEMU is up once its monitor answers.
    for _ in 0..150 {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("start failed: QEMU exited with {status}: {}", text.trim()));
        }
        if monitor::qmp(&plan.qmp_socket(), "query-status", None, Duration::from_secs(2)).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    Err("start failed: QEMU's monitor did not answer within 15 s".into())
}

/// Waits for QEMU to exit (or to be killed); then the VM is stopped and its taps gone.
async fn watch_exit(
    sim: Arc<Sim>,
    vmid: u32,
    pid: u32,
    mut child: tokio::process::Child,
    mut kill: mpsc::Receiver<()>,
    exited: watch::Sender<bool>,
    nics: Vec<Nic>,
) {
    tokio::select! {
        _ = child.wait() => {}
        _ = kill.recv() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    nics.iter().for_each(|n| n.unplug(vmid));
    {
        let mut running = lock(&sim.machines.running);
        if running.get(&vmid).is_some_and(|m| m.pid == pid) {
            running.remove(&vmid);
        }
    }
    {
        let mut world = sim.world();
        if let Some(vm) = world.vms.get_mut(&vmid).filter(|vm| vm.pid == Some(pid)) {
            vm.power = crate::world::PowerState::Stopped;
            vm.started_at = None;
            vm.agent_ready_at = None;
            vm.pid = None;
        }
    }
    let _ = exited.send(true);
}

/// How a VM is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `qm stop`: QMP `quit`, then SIGKILL (qemu-server vm_stop).
    Kill,
    /// `qm shutdown`: ACPI power button; after `timeout` killed if `force`, else an error.
    Powerdown { timeout: Duration, force: bool },
}

pub async fn stop(sim: &Arc<Sim>, vmid: u32, mode: StopMode) -> Result<(), String> {
    let (Some((qmp, _)), Some(mut exited)) = (sim.machines.sockets(vmid), sim.machines.exited(vmid)) else {
        return Ok(());
    };
    let (command, wait) = match mode {
        StopMode::Kill => ("quit", Duration::from_secs(10)),
        StopMode::Powerdown { timeout, .. } => ("system_powerdown", timeout),
    };
    let _ = monitor::qmp(&qmp, command, None, Duration::from_secs(5)).await;
    let done = tokio::time::timeout(wait, exited.wait_for(|e| *e)).await.is_ok();
    if done {
        return Ok(());
    }
    if matches!(mode, StopMode::Powerdown { force: false, .. }) {
        return Err("VM quit/powerdown failed - got timeout".into());
    }
    kill(sim, vmid).await;
    Ok(())
}

/// SIGKILL, and wait for the watcher to see it.
pub async fn kill(sim: &Arc<Sim>, vmid: u32) {
    let sender = lock(&sim.machines.running).get(&vmid).map(|m| m.kill.clone());
    if let (Some(sender), Some(mut exited)) = (sender, sim.machines.exited(vmid)) {
        let _ = sender.send(()).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), exited.wait_for(|e| *e)).await;
    }
}

/// A QMP command for a running VM (`stop`, `cont`, `system_reset`).
pub async fn monitor_command(sim: &Sim, vmid: u32, command: &str) -> Result<(), String> {
    let (qmp, _) = sim.machines.sockets(vmid).ok_or_else(|| format!("VM {vmid} not running"))?;
    monitor::qmp(&qmp, command, None, Duration::from_secs(10)).await.map(|_| ())
}

/// A guest-agent command; a silent agent is Proxmox's "QEMU guest agent is not running"
/// (qemu-server `src/PVE/QemuServer/Agent.pm` assert_agent_available / qga_check_running).
pub async fn agent(sim: &Sim, vmid: u32, command: &str, arguments: Option<Value>) -> Result<Value, String> {
    let (_, socket) = sim.machines.sockets(vmid).ok_or("QEMU guest agent is not running")?;
    let turn = Arc::clone(lock(&sim.machines.agent_turns).entry(vmid).or_default());
    let _turn = turn.lock().await;
    match monitor::guest_agent(&socket, command, arguments, Duration::from_secs(5)).await {
        Ok(value) => Ok(value),
        Err(e) if e.contains("no answer") || e.contains(&socket.display().to_string()) => {
            Err("QEMU guest agent is not running".into())
        }
        Err(e) => Err(format!("Agent error: {e}")),
    }
}

/// Internal snapshots of VM `vmid`'s overlays: `-c` (create), `-a` (apply: rollback), `-d`
/// (delete). QEMU holds a running VM's overlays locked, so only a stopped VM is snapshotted
/// here (Proxmox can snapshot a running one; pve-sim says so instead of faking it).
/// `qemu-img snapshot <flag> <name>` on the overlays of the disks of `config`: the VM's
/// current config to take a snapshot, the snapshot's own to roll back to or delete it (a
/// disk attached after the snapshot is not in it, and is left alone, as on Proxmox).
pub async fn snapshot_disks(
    sim: &Arc<Sim>,
    runtime: &QemuRuntime,
    vmid: u32,
    flag: &str,
    name: &str,
    config: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    if flag == "-a" {
        kill(sim, vmid).await;
    } else if sim.machines.pid(vmid).is_some() {
        return Err(format!(
            "pve-sim's QEMU runtime takes snapshots of stopped VMs only (qemu-img); stop VM {vmid} first"
        ));
    }
    let overlays: Vec<PathBuf> = crate::world::disk_volumes(config)
        .into_iter()
        .filter_map(|volid| volid.split_once(':').map(|(s, v)| disks::overlay_path(runtime, s, v)))
        .collect();
    let (flag, name) = (flag.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || disks::snapshot(&overlays, &flag, &name)).await.map_err(|e| e.to_string())?
}

/// The virtual size of an image file (qcow2 header, else the file's length).
pub fn image_size(path: &std::path::Path) -> std::io::Result<u64> {
    disks::virtual_size(path)
}

/// Removes the overlays of destroyed volumes and the VM's directory.
pub fn forget(runtime: &QemuRuntime, vmid: u32, volids: &[String]) {
    for volid in volids {
        if let Some((storage, volname)) = volid.split_once(':') {
            disks::remove(&disks::overlay_path(runtime, storage, volname));
        }
    }
    let _ = std::fs::remove_dir_all(runtime.root.join(vmid.to_string()));
}

/// KVM only where it really runs a guest: here `/dev/kvm` can exist, run the firmware and
/// still hang every kernel (a paravirtual KVM whose guest sits "running" and prints nothing),
/// so staying up proves nothing. The probe boots the image's kernel under KVM with no root
/// disk: a working KVM takes it to its "no root" panic, and `-no-reboot` makes QEMU exit with
/// that panic on the serial line. Anything else — no kernel to try, a hang, no panic — is TCG.
async fn resolve_accel(sim: &Sim, runtime: &QemuRuntime, kernel: Option<&Kernel>) -> Accel {
    if let Some(accel) = sim.machines.accel.get() {
        return *accel;
    }
    let (accel, why) = match runtime.accel {
        AccelChoice::Kvm => (Accel::Kvm, "asked for"),
        AccelChoice::Tcg => (Accel::Tcg, "asked for"),
        AccelChoice::Auto => probe_kvm(&runtime.qemu, kernel).await,
    };
    let name = if accel == Accel::Kvm { "KVM" } else { "TCG (software emulation)" };
    eprintln!("pve-sim: QEMU runtime uses {name}: {why}");
    *sim.machines.accel.get_or_init(|| accel)
}

async fn probe_kvm(qemu: &std::path::Path, kernel: Option<&Kernel>) -> (Accel, &'static str) {
    if !std::path::Path::new("/dev/kvm").exists() {
        return (Accel::Tcg, "no /dev/kvm");
    }
    let Some(kernel) = kernel else {
        return (Accel::Tcg, "no kernel beside the image to prove KVM boots one");
    };
    let mut command = tokio::process::Command::new(qemu);
    command
        .args(["-accel", "kvm", "-cpu", "host", "-nodefaults", "-display", "none", "-m", "256", "-no-reboot"])
        .args(["-serial", "stdio", "-kernel"])
        .arg(&kernel.kernel)
        .args(["-append", "console=ttyS0 panic=-1"]);
    let Ok(child) = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    else {
        return (Accel::Tcg, "QEMU would not start with -accel kvm");
    };
    // A working KVM panics in about a second; TCG takes this kernel there in under three.
    match tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await {
        Ok(Ok(output)) if String::from_utf8_lossy(&output.stdout).contains("Kernel panic") => {
            (Accel::Kvm, "a kernel booted under KVM")
        }
        Ok(_) => (Accel::Tcg, "a kernel under KVM stopped before it could panic"),
        Err(_) => (Accel::Tcg, "a kernel under KVM hung (no panic within 10 s)"),
    }
}
