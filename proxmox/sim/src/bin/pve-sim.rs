//! `pve-sim`: the Proxmox VE simulator. Run as `pve-sim` it serves the API; run as `pvesh`,
//! `qm` or `pvesm` (a symlink) it acts on a running simulator, found through
//! `PVE_SIM_ADMIN`, like the real commands act on the host.

use agentlab_pve_sim::{FaultConfig, LatencyModel, SimConfig, cli};

use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "pve-sim", version, about = "Proxmox VE API simulator for AgentLab tests and demos")]
struct Args {
    /// API listener (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8006")]
    listen: SocketAddr,
    /// Admin listener (plain HTTP; keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8007")]
    admin_listen: SocketAddr,
    /// Where the TLS certificate (and the `local` storage, unless set) live.
    #[arg(long, default_value = "/var/lib/pve-sim")]
    state_dir: PathBuf,
    /// Path of the `local` directory storage (snippets in `<path>/snippets/`).
    #[arg(long)]
    local_storage_path: Option<PathBuf>,
    /// Number of nodes (`pve1` … `pveN`).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Template VMIDs, `VMID` (first node) or `VMID@NODE`; repeatable.
    #[arg(long = "template", default_value = "9000")]
    templates: Vec<String>,
    /// Accepted API tokens, `USER@REALM!TOKENID=SECRET`; repeatable.
    #[arg(long = "token", required_unless_present = "print_fingerprint")]
    tokens: Vec<String>,
    /// Make a token privilege-separated with only these privileges on `/`:
    /// `USER@REALM!TOKENID=VM.Audit,VM.Allocate,…`; repeatable. Other tokens may do anything.
    #[arg(long = "token-privs")]
    token_privs: Vec<String>,
    /// Guest addresses come from this /16.
    #[arg(long, default_value = "10.77.0.0")]
    guest_subnet: Ipv4Addr,
    /// Error bodies without `message` (Proxmox before 8.3): text only in the reason phrase.
    #[arg(long)]
    legacy_errors: bool,
    /// Start with the datacenter firewall on (a fresh Proxmox has it off).
    #[arg(long)]
    datacenter_firewall: bool,
    /// Multiply every simulated duration (and Proxmox's lock timeouts) by this.
    #[arg(long, default_value_t = 1.0)]
    latency_factor: f64,
    /// Override one operation's base duration, `OP=SECONDS`; repeatable.
    #[arg(long = "latency")]
    latencies: Vec<String>,
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    lock_timeout_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    slow_task_rate: f64,
    #[arg(long, default_value_t = 10.0)]
    slow_task_factor: f64,
    /// Faults only on POST/PUT/DELETE.
    #[arg(long)]
    faults_mutating_only: bool,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the certificate's SHA-256 fingerprint (generating it if needed) and exit.
    #[arg(long)]
    print_fingerprint: bool,
    /// Write `{"api","admin","fingerprint"}` here once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Run this program as the guest of every started VM (e.g. agent-runner).
    #[arg(long)]
    guest_command: Option<PathBuf>,
    /// An argument for the guest program; repeatable.
    #[arg(long = "guest-arg", allow_hyphen_values = true)]
    guest_args: Vec<String>,
    /// Environment for the guest program, `KEY=VALUE`; repeatable.
    #[arg(long = "guest-env")]
    guest_env: Vec<String>,
    /// The address guests report (they run on loopback).
    #[arg(long, default_value = "127.0.0.1")]
    guest_address: String,
    /// How a started VM runs: `process` (the --guest-command as a local process, the
    /// default) or `qemu` (a real QEMU VM booting its template's image; needs root for the
    /// taps, qemu-system-x86_64, qemu-img and genisoimage).
    #[arg(long, default_value = "process", value_parser = ["process", "qemu"])]
    vm_runtime: String,
    /// For `--vm-runtime qemu`: the image template VMID's boot disk holds, `VMID=PATH`
    /// (e.g. rootfs.img from scripts/template/build_debian_image.sh); repeatable.
    #[arg(long = "vm-image")]
    vm_images: Vec<String>,
    /// For `--vm-runtime qemu`: `auto` (KVM if it really runs a guest here, else TCG), `kvm`, `tcg`.
    #[arg(long, default_value = "auto")]
    vm_accel: agentlab_pve_sim::qemu::AccelChoice,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
}

fn main() -> ExitCode {
    let program = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&program).file_name().and_then(|n| n.to_str()).unwrap_or("pve-sim").to_string();
    if let Some(personality) = cli::Personality::from_program(&name) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return ExitCode::from(cli::run(personality, &args));
    }
    let args = Args::parse();
    agentlab_proxmox::install_crypto_provider();
    if args.print_fingerprint {
        return match agentlab_pve_sim::tls::load_or_create(&args.state_dir) {
            Ok(identity) => {
                println!("{}", identity.fingerprint);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pve-sim: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match build_config(&args) {
        Ok(config) => run(config, args.ready_file),
        Err(e) => {
            eprintln!("pve-sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn build_config(args: &Args) -> Result<SimConfig, String> {
    let nodes: Vec<String> = (1..=args.nodes.max(1)).map(|i| format!("pve{i}")).collect();
    let mut latency = LatencyModel::scaled(args.latency_factor);
    for spec in &args.latencies {
        latency.set(spec)?;
    }
    let mut templates = Vec::new();
    let mut placed = Vec::new();
    for spec in &args.templates {
        match spec.split_once('@') {
            Some((vmid, node)) => {
                let vmid: u32 = vmid.parse().map_err(|_| format!("`{spec}` is not VMID@NODE"))?;
                if !nodes.contains(&node.to_string()) {
                    return Err(format!("template {vmid}: no node `{node}` (nodes: {})", nodes.join(", ")));
                }
                placed.push((vmid, node.to_string()));
            }
            None => templates.push(spec.parse().map_err(|_| format!("`{spec}` is not a VMID"))?),
        }
    }
    for token in &args.tokens {
        agentlab_proxmox::api::validate_token(token).map_err(|e| format!("--token {e}"))?;
    }
    let qemu = match args.vm_runtime.as_str() {
        "qemu" => {
            if args.guest_command.is_some() {
                return Err(
                    "--guest-command is for the process runtime; a QEMU VM runs its image's agent-runner".into()
                );
            }
            let mut images = std::collections::BTreeMap::new();
            for spec in &args.vm_images {
                let (vmid, path) =
                    spec.split_once('=').ok_or_else(|| format!("--vm-image `{spec}` is not VMID=PATH"))?;
                let vmid: u32 = vmid.parse().map_err(|_| format!("--vm-image `{spec}`: `{vmid}` is not a VMID"))?;
                let path = std::fs::canonicalize(path).map_err(|e| format!("--vm-image {path}: {e}"))?;
                images.insert(vmid, path);
            }
            Some(agentlab_pve_sim::qemu::QemuRuntime {
                qemu: args.qemu.clone(),
                accel: args.vm_accel,
                images,
                root: args.state_dir.join("qemu"),
            })
        }
        _ if !args.vm_images.is_empty() => return Err("--vm-image needs --vm-runtime qemu".into()),
        _ => None,
    };
    Ok(SimConfig {
        qemu,
        listen: args.listen,
        admin_listen: args.admin_listen,
        local_storage_path: args.local_storage_path.clone().unwrap_or_else(|| args.state_dir.join("local")),
        state_dir: args.state_dir.clone(),
        nodes,
        templates,
        placed_templates: placed,
        tokens: args.tokens.clone(),
        token_privileges: args
            .token_privs
            .iter()
            .map(|spec| {
                let (id, privs) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--token-privs `{spec}`: expected USER@REALM!TOKENID=PRIV,PRIV"))?;
                Ok((id.to_string(), privs.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect()))
            })
            .collect::<Result<_, String>>()?,
        guest_subnet: args.guest_subnet,
        legacy_errors: args.legacy_errors,
        datacenter_firewall: args.datacenter_firewall,
        latency,
        faults: FaultConfig {
            error_rate: args.error_rate,
            lock_timeout_rate: args.lock_timeout_rate,
            drop_rate: args.drop_rate,
            slow_task_rate: args.slow_task_rate,
            slow_task_factor: args.slow_task_factor,
            mutating_only: args.faults_mutating_only,
        },
        seed: args.seed,
        guest: match &args.guest_command {
            None => None,
            Some(program) => Some(agentlab_pve_sim::GuestRuntime {
                program: program.clone(),
                args: args.guest_args.clone(),
                root: args.state_dir.join("guests"),
                address: args.guest_address.clone(),
                env: args
                    .guest_env
                    .iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .ok_or_else(|| format!("--guest-env `{kv}` is not KEY=VALUE"))
                    })
                    .collect::<Result<_, _>>()?,
            }),
        },
    })
}

fn run(config: SimConfig, ready_file: Option<PathBuf>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pve-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let handle = match agentlab_pve_sim::start(config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("pve-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        let ready = serde_json::json!({"api": handle.api_url(), "admin": handle.admin_url(), "fingerprint": handle.fingerprint});
        eprintln!("pve-sim: API {} (fingerprint {}), admin {}", handle.api_url(), handle.fingerprint, handle.admin_url());
        if let Some(path) = ready_file {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, ready.to_string()).and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
                eprintln!("pve-sim: cannot write {}", path.display());
                return ExitCode::FAILURE;
            }
        }
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        drop(handle);
        ExitCode::SUCCESS
    })
}
