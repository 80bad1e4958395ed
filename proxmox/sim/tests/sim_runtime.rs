//! The simulator's VM runtime and CLI personalities: a started VM runs a real guest process
//! with the bootstrap descriptor from its cloud-init snippet; `qm` and `pvesm` act on the
//! running simulator's state.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use agentlab_proxmox::Pve;
use agentlab_proxmox::types::{CloneSpec, ConfigChange, VmAction};
use agentlab_pve_sim::GuestRuntime;
use std::time::Duration;

const SNIPPET: &str = "#cloud-config\nwrite_files:\n  - path: /etc/agentlab/bootstrap.json\n    permissions: '0600'\n    content: '{\"token\":\"tok\",\"controller\":\"http://127.0.0.1:8844\",\"vmid\":1001}'\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_vm_runs_its_guest_with_the_bootstrap_descriptor() {
    let guests = tempfile::tempdir().unwrap();
    let root = guests.path().to_path_buf();
    let script = "cp \"$AGENTLAB_BOOTSTRAP\" \"$AGENTLAB_RUN_DIR/seen.json\"; env | grep '^AGENTLAB_' | sort > \"$AGENTLAB_RUN_DIR/env.txt\"; echo $$ > \"$AGENTLAB_RUN_DIR/pid\"; exec sleep 60";
    let env = support::sim_with(|c| {
        c.guest = Some(GuestRuntime {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            root: root.clone(),
            address: "127.0.0.1".into(),
            env: vec![("EXTRA".into(), "1".into())],
        })
    })
    .await;
    let pve = env.api();
    std::fs::write(env.snippets_dir().join("agentlab-1001-x.yaml"), SNIPPET).unwrap();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1001, ..Default::default() }).await.unwrap();
    pve.update_config(
        "pve1",
        1001,
        &ConfigChange::default().set("cicustom", "user=local:snippets/agentlab-1001-x.yaml"),
    )
    .await
    .unwrap();
    pve.vm_action("pve1", 1001, VmAction::Start).await.unwrap();

    let run = root.join("1001/run");
    let seen = support::eventually(Duration::from_secs(10), || async { run.join("pid").exists() }).await;
    assert!(seen, "the guest never ran");
    let descriptor = std::fs::read_to_string(run.join("seen.json")).unwrap_or_default();
    assert_eq!(descriptor, r#"{"token":"tok","controller":"http://127.0.0.1:8844","vmid":1001}"#);
    let vars = std::fs::read_to_string(run.join("env.txt")).unwrap_or_default();
    for var in [
        "AGENTLAB_BOOTSTRAP=",
        "AGENTLAB_SECRETS_DIR=",
        "AGENTLAB_REPO_DIR=",
        "AGENTLAB_RUN_DIR=",
        "AGENTLAB_VMID=1001",
    ] {
        assert!(vars.contains(var), "{var} missing from {vars}");
    }
    let ready =
        support::eventually(Duration::from_secs(10), || async { pve.agent_ping("pve1", 1001).await.is_ok() }).await;
    assert!(ready);
    let interfaces = pve.agent_interfaces("pve1", 1001).await.unwrap_or_default();
    assert!(
        interfaces
            .iter()
            .flat_map(|i| &i.ip_addresses)
            .any(|a| a.ip_address == "127.0.0.1" && a.ip_address_type == "ipv4")
    );

    let pid: i32 = std::fs::read_to_string(run.join("pid")).unwrap_or_default().trim().parse().unwrap_or(0);
    assert!(pid > 0);
    pve.vm_action("pve1", 1001, VmAction::Stop).await.unwrap();
    let gone = support::eventually(Duration::from_secs(10), || async {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
    .await;
    assert!(gone, "stopping the VM kills its guest");
}

fn run_personality(env: &support::Env, name: &str, args: &[&str]) -> (i32, String, String) {
    run_as(env, name, args, &[])
}

/// Runs the simulator binary as `name` (`qm`, `pvesh`, `pvesm`) against `env`'s simulator.
fn run_as(env: &support::Env, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let link = env.dir.path().join(format!("bin/{name}"));
    if !link.exists() {
        std::fs::create_dir_all(env.dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pve-sim"), &link).unwrap();
    }
    let out = std::process::Command::new(&link)
        .args(args)
        .env("PVE_SIM_ADMIN", env.sim.admin_url())
        .envs(extra_env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qm_and_pvesm_act_on_the_simulator_state() {
    let env = support::sim().await;
    let (code, out, err) = run_personality(&env, "qm", &["clone", "9000", "1001", "--name", "sbx-1001"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("create linked clone of drive scsi0 (local-lvm:base-9000-disk-0)"), "{out}");
    let (code, out, _) = run_personality(&env, "qm", &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains("sbx-1001") && out.contains("stopped"), "{out}");
    let (code, out, _) = run_personality(&env, "qm", &["config", "1001"]);
    assert_eq!(code, 0);
    assert!(out.contains("name: sbx-1001"), "{out}");
    // A task failure: exit 255 with the error on stderr.
    let (code, _, err) = run_personality(&env, "qm", &["start", "9000"]);
    assert_eq!(code, 255);
    assert!(err.contains("you can't start a vm if it's a template"), "{err}");
    // A parameter error prints Proxmox's 400 lines.
    let (code, _, err) = run_personality(&env, "qm", &["set", "1001", "--bogus", "1"]);
    assert_eq!(code, 255);
    assert!(err.starts_with("400 Parameter verification failed.\nbogus: property is not defined"), "{err}");

    let (code, out, err) = run_personality(&env, "pvesm", &["alloc", "local-lvm", "9100", "vm-9100-disk-0", "1G"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("successfully created 'local-lvm:vm-9100-disk-0'"), "{out}");
    let (code, _, err) = run_personality(&env, "pvesm", &["alloc", "local-lvm", "9100", "bad-name", "1G"]);
    assert_eq!(code, 255);
    assert!(err.contains("illegal name 'bad-name' - should be 'vm-9100-*'"), "{err}");
    let (_, out, _) = run_personality(&env, "pvesm", &["list", "local-lvm"]);
    assert!(out.contains("local-lvm:vm-9100-disk-0"), "{out}");
    let (_, out, _) = run_personality(&env, "pvesm", &["path", "local:snippets/a.yaml"]);
    assert!(out.trim().ends_with("/local/snippets/a.yaml"), "{out}");
    let (code, _, _) = run_personality(&env, "pvesm", &["free", "local-lvm:vm-9100-disk-0"]);
    assert_eq!(code, 0);
    assert!(!env.sim.sim.world().storages["local-lvm"].volumes.contains_key("vm-9100-disk-0"));
    // pvesh without a simulator says so, like pvesh without pmxcfs.
    let out =
        std::process::Command::new(env.dir.path().join("bin/pvesm")).arg("status").env_remove("PVE_SIM_ADMIN").output();
    let stderr = out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
    assert!(stderr.contains("ipcc_send_rec"), "{stderr}");
}

fn run_pvesh_on(env: &support::Env, node: &str, args: &[&str]) -> (i32, String, String) {
    run_as(env, "pvesh", args, &[("PVE_SIM_NODE", node)])
}

/// pve-manager `PVE/CLI/pvesh.pm` call_api_method (398-460) passes its path to find_handler
/// undecoded: a percent-encoded UPID is not a UPID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvesh_takes_its_path_raw_and_runs_tasks_in_the_foreground() {
    let env = support::sim().await;
    let (code, out, err) = run_pvesh_on(
        &env,
        "pve1",
        &["create", "/nodes/pve1/qemu/9000/clone", "--newid", "1001", "--output-format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let upid: String = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(out.contains("create linked clone of drive scsi0"), "the task log comes first: {out}");
    let encoded = agentlab_proxmox::transport::segment(&upid);
    let (code, _, err) = run_pvesh_on(&env, "pve1", &["get", &format!("/nodes/pve1/tasks/{encoded}/status")]);
    assert_ne!(code, 0);
    assert!(err.contains("unable to parse worker upid"), "{err}");
    let (code, out, err) =
        run_pvesh_on(&env, "pve1", &["get", &format!("/nodes/pve1/tasks/{upid}/status"), "--output-format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"exitstatus\":\"OK\""), "{out}");
    // A failed task: exit 0, the UPID on stdout, the error on stderr (RESTEnvironment.pm 493-497).
    let (code, out, err) =
        run_pvesh_on(&env, "pve1", &["create", "/nodes/pve1/qemu/9000/status/start", "--output-format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().last().is_some_and(|l| l.starts_with("\"UPID:pve1:")), "{out}");
    assert!(err.contains("you can't start a vm if it's a template"), "{err}");
}

/// Another node's path is proxied over SSH and its whole output comes back as one string
/// (pve-manager `PVE/CLI/pvesh.pm` proxy_handler, 111-143): the UPID is not a line of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvesh_on_another_node_returns_the_task_log_and_upid_as_one_string() {
    let env = support::sim_with(|c| {
        c.nodes = vec!["pve1".into(), "pve2".into()];
    })
    .await;
    let (code, out, err) = run_pvesh_on(
        &env,
        "pve2",
        &["create", "/nodes/pve1/qemu/9000/clone", "--newid", "1001", "--output-format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let blob: String = serde_json::from_str(lines[0]).unwrap();
    assert!(blob.contains("create linked clone") && blob.contains("UPID:pve1:"), "{blob}");
    assert!(agentlab_proxmox::Upid::parse(&blob).is_err());
}

/// A template as PVE's own cloud-init guide makes it, and as Ubuntu's cloud images are:
/// no cloud-init drive, no `agent` key, no agent in the image.
fn strip_template(env: &support::Env, keep_agent_in_image: bool) {
    let mut world = env.sim.sim.world();
    let template = world.vms.get_mut(&9000).unwrap();
    template.config.remove("ide2");
    template.config.remove("agent");
    template.image_has_agent = keep_agent_in_image;
}

/// qemu-server Cloudinit.pm generate_cloudinit_config (701-724): without a
/// `vm-<vmid>-cloudinit` drive the snippet is never used, so no guest gets its descriptor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_without_a_cloud_init_drive_never_sees_its_snippet() {
    let guests = tempfile::tempdir().unwrap();
    let root = guests.path().to_path_buf();
    let env = support::sim_with(|c| {
        c.guest = Some(GuestRuntime {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo $$ > \"$AGENTLAB_RUN_DIR/pid\"; exec sleep 60".into()],
            root: root.clone(),
            address: "127.0.0.1".into(),
            env: Vec::new(),
        })
    })
    .await;
    strip_template(&env, true);
    let pve = env.api();
    std::fs::write(env.snippets_dir().join("agentlab-1001-x.yaml"), SNIPPET).unwrap();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1001, ..Default::default() }).await.unwrap();
    pve.update_config(
        "pve1",
        1001,
        &ConfigChange::default().set("cicustom", "user=local:snippets/agentlab-1001-x.yaml"),
    )
    .await
    .unwrap();
    let task = pve.vm_action("pve1", 1001, VmAction::Start).await.unwrap();
    let log = pve.task_log("pve1", &task.upid).await.unwrap_or_default();
    assert!(!log.iter().any(|l| l.contains("cloud-init")), "{log:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!root.join("1001/run/pid").exists(), "no cloud-init drive, no guest bootstrap");
    // No agent key: "not configured", which no wait can change.
    let err = pve.agent_ping("pve1", 1001).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("No QEMU guest agent configured"), "{err}");
}

/// qemu-server API2/Qemu.pm create_disks (478-513): `STORAGE:cloudinit` makes the drive,
/// once; and an image without qemu-guest-agent never answers, whatever `agent` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_init_drive_is_added_once_and_an_image_without_agent_never_answers() {
    let env = support::sim().await;
    strip_template(&env, false);
    let pve = env.api();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1002, ..Default::default() }).await.unwrap();
    pve.update_config("pve1", 1002, &ConfigChange::default().set("ide2", "local-lvm:cloudinit").set("agent", "1"))
        .await
        .unwrap();
    let config = pve.vm_config("pve1", 1002).await.unwrap();
    assert_eq!(config.get("ide2"), Some("local-lvm:vm-1002-cloudinit,media=cdrom"));
    let again = pve.update_config("pve1", 1002, &ConfigChange::default().set("sata0", "local-lvm:cloudinit")).await;
    let text = again.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("sata0 - cloud-init drive is already attached at 'ide2'"), "{text}");
    pve.vm_action("pve1", 1002, VmAction::Start).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = pve.agent_ping("pve1", 1002).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("QEMU guest agent is not running"), "{err}");
}
