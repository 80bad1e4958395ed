//! The real-VM tier: sandboxes are QEMU virtual machines booting the Debian template image
//! that `scripts/template/build_debian_image.sh` builds (real kernel, cloud-init,
//! qemu-guest-agent, systemd, agent-runner), on `pve-sim --vm-runtime qemu`. The host is a
//! network namespace with the agent bridge, dnsmasq (the configuration
//! `scripts/net/setup_vmbr1.sh` writes) and the host ruleset agentlabd loads; a git
//! repository is served from a "WAN" namespace. One VM at a time (2 cores, software
//! emulation): a second sandbox first, then the job, whose `run.sh` probes the network, then
//! the same job on a sandbox the warm pool booted ahead of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

#[path = "../../netfilter/tests/netns/mod.rs"]
mod topology;

use agentlab_e2e::jobs::{SECRET, run, write_secrets_with_age_cli};
use agentlab_e2e::{Workspace, bin, eventually, vm};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

const TOKEN: &str = "root@pam!agentlab=11111111-2222-3333-4444-555555555555";
const GIT_PORT: u16 = 9418;
const LAN_PORT: u16 = 8080;
const HOST_PORT: u16 = 2222;

/// A process in a namespace, killed on drop.
struct InNs(Child);

impl Drop for InNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &str, program: &Path, args: &[String], log: &Path) -> InNs {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn in namespace");
    InNs(child)
}

/// The profile the VMs use: small enough for two TCG guests in a row on 2 cores.
const PROFILE: &str = "name: vm-test\ntemplate_vmid: 9000\nnetwork:\n  bridge: vmbr1\n  mode: nat\n\
resources:\n  cores: 2\n  memory_mb: 1536\nstorage:\n  root_size_gb: 8\n  workspace: none\n\
behavior:\n  keepalive_default: false\n  ttl_minutes_default: 30\n  mode: dangerous\n";

/// A repository (served from the WAN namespace by `git daemon`) whose `run.sh` prints the
/// secret and probes the LAN host, the host's other port, the second sandbox and the WAN.
fn publish_repo(dir: &Path, second_sandbox: &str) -> PathBuf {
    let work = dir.join("work");
    let bare = dir.join("git/repo.git");
    std::fs::create_dir_all(work.join(".agentlab")).unwrap();
    let git = |cwd: &Path, args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.email=vm@agentlab.invalid", "-c", "user.name=vm", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(cwd))
    };
    git(&work, &["init", "-q"]);
    let script = format!(
        "#!/bin/bash\nset -u\necho \"agent on $(hostname): $AGENTLAB_TASK\"\necho \"the secret is $DEMO_SECRET\"\n\
         probe() {{ if timeout 4 bash -c \"exec 3<>/dev/tcp/$2/$3\" 2>/dev/null; then echo \"$1 reachable\"; else echo \"$1 unreachable\"; fi; }}\n\
         mkdir -p \"$AGENTLAB_RUN_DIR/artifacts\"\n\
         {{ probe lan {lan} {LAN_PORT}; probe host-port 10.77.0.1 {HOST_PORT}; probe second-sandbox {second_sandbox} 22; probe wan {wan} {GIT_PORT}; }} | tee \"$AGENTLAB_RUN_DIR/artifacts/reach.txt\"\n\
         echo \"copied secret: $DEMO_SECRET\" > \"$AGENTLAB_RUN_DIR/artifacts/notes.txt\"\n\
         echo \"bundle.json: $(stat -c '%h mode %a' /run/agentlab/secrets/bundle.json 2>&1)\"\n\
         echo \"from the bundle: $(jq -r .env.DEMO_SECRET /run/agentlab/secrets/bundle.json)\"\n",
        lan = topology::LAN,
        wan = topology::WAN,
    );
    let path = work.join(".agentlab/run.sh");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "probe the network"]);
    // The workspace pair: one job leaves state in /work (and says how /work is mounted),
    // the next, in another VM, reads it.
    for (branch, body) in [
        (
            "ws-write",
            "echo \"work: $(findmnt -n -o FSTYPE /work) $(lsblk -no LABEL \"$(findmnt -n -o SOURCE /work)\")\"\n\
             echo \"repo in $(pwd)\"\necho \"state from $AGENTLAB_JOB_ID\" > /work/state.txt\n",
        ),
        ("ws-read", "echo \"read: $(cat /work/state.txt)\"\n"),
    ] {
        git(&work, &["checkout", "-q", "-b", branch, "main"]);
        std::fs::write(&path, format!("#!/bin/bash\nset -eu\n{body}")).unwrap();
        git(&work, &["commit", "-q", "-am", branch]);
    }
    git(&work, &["checkout", "-q", "main"]);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    run(Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare));
    bare
}

fn seconds_since(t: SystemTime) -> f64 {
    t.elapsed().map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// "Up 67.83 seconds" of cloud-init's final line in a VM's console log.
fn cloud_init_finished(console: &Path) -> Option<String> {
    let text = std::fs::read_to_string(console).ok()?;
    let line = text.lines().find(|l| l.contains("Cloud-init v.") && l.contains("finished at"))?;
    line.split("Up ").nth(1).map(|s| s.trim().to_string())
}

#[test]
fn a_job_completes_in_a_real_vm_that_cannot_reach_the_lan() {
    if vm::missing().is_some() {
        return;
    }
    let image = vm::template_image();
    let ws = Workspace::new();
    let dir = ws.path().to_path_buf();
    let mut net = topology::Net::build("vm", &dir);
    let (h, wan, lan) = (net.host(), net.ns("wan"), net.ns("lan"));
    let hosts = dir.join("dns-hosts");
    std::fs::write(&hosts, format!("{} git.wan.test\n", topology::WAN)).unwrap();
    net.start_dnsmasq(&hosts);
    topology::listen(&lan, SocketAddr::from((topology::LAN, LAN_PORT)));
    topology::listen(&h, SocketAddr::from(([10, 77, 0, 1], HOST_PORT)));

    // The simulator runs in the host namespace: its VMs' taps go on that vmbr1.
    let sim_dir = dir.join("pve-sim");
    let ready = dir.join("pve-sim.ready");
    let sim_args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--token",
        TOKEN,
        "--datacenter-firewall",
        "--latency-factor",
        "0.01",
        "--vm-runtime",
        "qemu",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--vm-image".into(),
        format!("9000={}", image.join("rootfs.img").display()),
        "--state-dir".into(),
        sim_dir.display().to_string(),
        "--local-storage-path".into(),
        dir.join("pve-local").display().to_string(),
        "--ready-file".into(),
        ready.display().to_string(),
    ])
    .collect();
    let _sim = spawn_in(&h, &bin("pve-sim"), &sim_args, &dir.join("pve-sim.log"));
    assert!(eventually(Duration::from_secs(20), || ready.exists()), "pve-sim did not start");
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();

    write_secrets_with_age_cli(&ws);
    std::fs::write(dir.join("profiles/vm.yaml"), PROFILE).unwrap();
    let root = dir.display();
    ws.write_raw_config(&format!(
        "profiles_dir: {root}/profiles\ndata_dir: {root}/data\nrun_dir: {root}/run\n\
         proxmox_api_url: {api}\nproxmox_api_token: {TOKEN}\nproxmox_tls_fingerprint: {fp}\nproxmox_command_timeout: 30s\n\
         host_node: pve1\nsnippets_dir: {root}/pve-local/snippets\nprovisioning_timeout: 300s\n\
         agent_subnet: 10.77.0.0/16\nbootstrap_listen: 10.77.0.1:8844\nartifact_listen: 10.77.0.1:8846\n\
         agent_bridge: vmbr1\nuplink_interface: vmbr0\nhost_ruleset: managed\n\
         secrets_dir: {root}/secrets\nsecrets_age_key_path: {root}/keys/age.key\n",
        api = info["api"].as_str().unwrap(),
        fp = info["fingerprint"].as_str().unwrap(),
    ));
    let config = ws.config_path().display().to_string();
    let daemon = spawn_in(&h, &bin("agentlabd"), &["--config".into(), config], &dir.join("agentlabd.log"));
    let daemon_log = || std::fs::read_to_string(dir.join("agentlabd.log")).unwrap_or_default();
    let sim_log = || std::fs::read_to_string(dir.join("pve-sim.log")).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || std::os::unix::net::UnixStream::connect(ws.socket()).is_ok()),
        "agentlabd did not come up:\n{}",
        daemon_log()
    );
    let consoles = || -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(sim_dir.join("qemu")).into_iter().flatten().flatten() {
            let tail: String = std::fs::read_to_string(entry.path().join("console.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            out.push_str(&format!("--- console of VM {}\n{tail}\n", entry.file_name().to_string_lossy()));
        }
        out
    };

    // The template passes the daemon's template check.
    let status = ws.cli(&["status"]);
    eprintln!("{}", status.stdout);

    // A second sandbox, the first VM.
    let started = SystemTime::now();
    let second = ws.cli(&["--json", "sandbox", "new", "--profile", "vm-test"]);
    assert_eq!(second.code, 0, "{second:?}\n{}\n{}\n{}", daemon_log(), sim_log(), consoles());
    let second = second.json();
    assert_eq!(second["state"], "READY", "{second}");
    let second_ip = second["ip"].as_str().unwrap_or_default().to_string();
    assert!(second_ip.starts_with("10.77."), "the address comes from dnsmasq through the guest agent: {second}");
    let second_vmid = second["vmid"].as_u64().unwrap().to_string();
    eprintln!("second sandbox {second_vmid} READY at {second_ip} in {:.0} s", seconds_since(started));

    // The job, in its own VM, cloning from the WAN.
    let bare = publish_repo(&dir, &second_ip);
    let _git = spawn_in(
        &wan,
        Path::new("git"),
        &[
            "daemon".into(),
            "--reuseaddr".into(),
            "--export-all".into(),
            format!("--base-path={}", bare.parent().unwrap().display()),
            format!("--listen={}", topology::WAN),
            format!("--port={GIT_PORT}"),
        ],
        &dir.join("git-daemon.log"),
    );
    let repo = format!("git://{}/repo.git", topology::WAN);
    let started = SystemTime::now();
    let out = ws.cli(&[
        "job",
        "run",
        "--repo",
        &repo,
        "--ref",
        "main",
        "--task",
        "probe the network",
        "--profile",
        "vm-test",
        "--agent",
        "custom",
        "--ttl",
        "6",
        "--follow",
    ]);
    let job_secs = seconds_since(started);
    assert_eq!(out.code, 0, "{out:?}\n{}\n{}", daemon_log(), consoles());
    let id = out.stderr.split_whitespace().find(|w| w.starts_with("job_")).unwrap_or_default().to_string();
    let job = ws.cli(&["--json", "job", "show", &id, "--events-tail", "1000"]).json();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    let vmid = job["sandbox_vmid"].as_u64().unwrap_or(0);

    // Figures: boot, READY, the phase timeline.
    eprintln!("\njob {id} in VM {vmid}: COMPLETED in {job_secs:.0} s");
    for console in
        [sim_dir.join(format!("qemu/{second_vmid}/console.log")), sim_dir.join(format!("qemu/{vmid}/console.log"))]
    {
        eprintln!(
            "  cloud-init finished {} ({})",
            cloud_init_finished(&console).unwrap_or("?".into()),
            console.display()
        );
    }
    for phase in job["timeline"].as_array().into_iter().flatten() {
        eprintln!("  {:<20} {}", phase["phase"].as_str().unwrap_or(""), phase["at"].as_str().unwrap_or(""));
    }

    // What the VM could reach.
    assert!(out.stdout.contains("the secret is [REDACTED]"), "{out:?}");
    // The seed FAQ's bundle file, at its path, private, its value redacted from the log.
    assert!(out.stdout.contains("bundle.json: 1 mode 600"), "{out:?}");
    // The FAQ's own line: `jq -r .env.KEY /run/agentlab/secrets/bundle.json`.
    assert!(out.stdout.contains("from the bundle: [REDACTED]\n"), "{out:?}");
    for (what, expected) in
        [("lan", "unreachable"), ("host-port", "unreachable"), ("second-sandbox", "unreachable"), ("wan", "reachable")]
    {
        assert!(out.stdout.contains(&format!("{what} {expected}\n")), "{what} should be {expected}:\n{}", out.stdout);
    }

    // The bundle: downloaded, its SHA-256 as listed, the secret redacted in it.
    let listing = ws.cli(&["--json", "job", "artifacts", &id]).json();
    let sha = listing["artifacts"][0]["sha256"].as_str().unwrap_or_default().to_string();
    let dest = dir.join("bundle.tar.gz");
    let got = ws.cli(&["job", "artifacts", "download", &id, "--bundle", "--out", &dest.display().to_string()]);
    assert_eq!(got.code, 0, "{got:?}");
    assert!(got.stdout.contains(&sha) && got.stdout.contains("verified"), "{got:?}");
    let sum = run(Command::new("sha256sum").arg(&dest));
    assert!(sum.starts_with(&sha), "{sum} vs {sha}");
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar").arg("-xzf").arg(&dest).arg("-C").arg(&unpacked));
    let reach = std::fs::read_to_string(unpacked.join("reach.txt")).unwrap_or_default();
    assert!(reach.contains("wan reachable") && reach.contains("lan unreachable"), "{reach}");
    assert_eq!(std::fs::read_to_string(unpacked.join("notes.txt")).unwrap_or_default(), "copied secret: [REDACTED]\n");

    // The job's VM is destroyed after the job (no keepalive), its disk with it.
    let vmid_text = vmid.to_string();
    let gone = eventually(Duration::from_secs(60), || {
        let shown = ws.cli(&["--json", "sandbox", "show", &vmid_text]);
        shown.code != 0 || shown.json()["state"] == "DESTROYED"
    });
    assert!(gone, "the job's sandbox was not destroyed");
    let destroyed = ws.cli(&["sandbox", "destroy", &second_vmid]);
    assert_eq!(destroyed.code, 0, "{destroyed:?}");

    // The warm pool: a profile with `pool.size: 1` boots a VM ahead of any request; a job
    // then claims it and runs without a boot, as isolated as the cold one.
    let pooled_profile = dir.join("profiles/vm-pooled.yaml");
    std::fs::write(&pooled_profile, format!("{}pool:\n  size: 1\n", PROFILE.replace("vm-test", "vm-pooled"))).unwrap();
    let hup =
        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.0.id() as i32), nix::sys::signal::Signal::SIGHUP);
    hup().unwrap();
    let started = SystemTime::now();
    let pool_vmid = || {
        let status = ws.cli(&["--json", "pool", "status"]).json();
        let pool = status["profiles"].as_array().and_then(|p| p.iter().find(|p| p["profile"] == "vm-pooled").cloned());
        pool.filter(|p| p["ready"] == 1).and_then(|p| p["vmids"][0].as_u64())
    };
    assert!(eventually(Duration::from_secs(300), || pool_vmid().is_some()), "the pool did not fill\n{}", consoles());
    let pooled = pool_vmid().unwrap();
    eprintln!("pooled sandbox {pooled} READY in {:.0} s", seconds_since(started));
    let started = SystemTime::now();
    let out = ws.cli(&[
        "job",
        "run",
        "--repo",
        &repo,
        "--ref",
        "main",
        "--task",
        "probe the network",
        "--profile",
        "vm-pooled",
        "--agent",
        "custom",
        "--ttl",
        "6",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let pooled_job = out.stdout.trim().to_string();
    let claimed = eventually(Duration::from_secs(30), || {
        ws.cli(&["--json", "job", "show", &pooled_job]).json()["sandbox_vmid"].as_u64() == Some(pooled)
    });
    assert!(claimed, "the job did not claim the pooled sandbox {pooled}");
    // No refill: the rest of the test has one VM at a time.
    std::fs::remove_file(&pooled_profile).unwrap();
    hup().unwrap();
    let ended = eventually(Duration::from_secs(300), || {
        !matches!(ws.cli(&["--json", "job", "show", &pooled_job]).json()["status"].as_str(), Some("QUEUED" | "RUNNING"))
    });
    assert!(ended, "the pooled job did not end\n{}\n{}", daemon_log(), consoles());
    let shown = ws.cli(&["--json", "job", "show", &pooled_job, "--events-tail", "1000"]).json();
    assert_eq!(shown["status"], "COMPLETED", "{shown}\n{}", consoles());
    eprintln!(
        "job {pooled_job} on the pooled VM {pooled}: COMPLETED in {:.0} s (cold: {job_secs:.0} s)",
        seconds_since(started)
    );
    let log = ws.cli(&["logs", &pooled_job, "--tail", "1000"]).stdout;
    for (what, expected) in [("lan", "unreachable"), ("host-port", "unreachable"), ("wan", "reachable")] {
        assert!(log.contains(&format!("{what} {expected}")), "pooled: {what} should be {expected}:\n{log}");
    }
    let pooled_text = pooled.to_string();
    let gone = eventually(Duration::from_secs(60), || {
        let shown = ws.cli(&["--json", "sandbox", "show", &pooled_text]);
        shown.code != 0 || shown.json()["state"] == "DESTROYED"
    });
    assert!(gone, "the pooled job's sandbox was not destroyed after its job");
    assert!(eventually(Duration::from_secs(120), || ws.cli(&["--json", "pool", "status"]).json()["total"] == 0));

    // A workspace: the first job's guest formats the blank disk and mounts it at /work; the
    // second job, in a new VM, reads what the first wrote.
    let job_on = |branch: &str, workspace: &[&str]| {
        let mut args = vec!["job", "run", "--repo", &repo, "--ref", branch, "--task", "workspace", "--profile"];
        args.extend(["vm-test", "--agent", "custom", "--ttl", "6", "--follow", "--workspace-wait", "120"]);
        args.extend_from_slice(workspace);
        let started = SystemTime::now();
        let out = ws.cli(&args);
        assert_eq!(out.code, 0, "{out:?}\n{}\n{}", daemon_log(), consoles());
        eprintln!("job on {branch} with a workspace: COMPLETED in {:.0} s", seconds_since(started));
        let id = out.stderr.split_whitespace().find(|w| w.starts_with("job_")).unwrap_or_default().to_string();
        (id, out.stdout)
    };
    let (writer, written) = job_on("ws-write", &["--workspace", "new:vmws", "--workspace-size", "1G"]);
    assert!(written.contains("work: ext4 AGENTLAB_WORK"), "the guest formatted and mounted it: {written}");
    assert!(written.contains("repo in /work/repo"), "{written}");
    let workspace = ws.cli(&["--json", "workspace", "show", "vmws"]).json();
    let (holder, volid) =
        (workspace["holder_vmid"].clone(), workspace["volid"].as_str().unwrap_or_default().to_string());
    let (_, read) = job_on("ws-read", &["--workspace", "vmws"]);
    assert!(read.contains(&format!("read: state from {writer}")), "{read}");
    assert!(volid.starts_with(&format!("local-lvm:vm-{holder}-")), "owned by the holder: {workspace}");
    let detached = eventually(Duration::from_secs(60), || {
        ws.cli(&["--json", "workspace", "show", "vmws"]).json()["attached_vmid"].is_null()
    });
    assert!(detached, "the reader's sandbox let go of the workspace");
    let gone = ws.cli(&["workspace", "destroy", "vmws"]);
    assert_eq!(gone.code, 0, "{gone:?}");

    // The secret is nowhere on the host side: the database, logs, artifacts, snippets,
    // the simulator's state (disks, cloud-init ISOs).
    let logs = ws.cli(&["logs", &id, "--tail", "1000"]);
    assert!(!logs.stdout.contains(SECRET) && !job.to_string().contains(SECRET), "{logs:?}");
    let grep = Command::new("grep").args(["-rl", SECRET]).arg(&dir).stdout(Stdio::piped()).output().unwrap();
    let hits: Vec<String> = String::from_utf8_lossy(&grep.stdout).lines().map(str::to_string).collect();
    assert!(hits.is_empty(), "the secret leaked into {hits:?}");
    drop(net);
}
