//! The contract suite: every operation AgentLab uses, every error class, task waits and
//! timeouts, run against both backends (HTTPS API and `pvesh`) over `pve-sim`. Each test
//! ends by checking that the simulator accepted every request the client sent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use agentlab_proxmox::types::{CloneSpec, ConfigChange, DestroyOptions, VmAction};
use agentlab_proxmox::{ErrorClass, Pve, PveError};
use std::time::Duration;
use support::{Env, eventually};

/// Runs one scenario against each backend, each on its own simulator.
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn api() {
                let env = support::sim().await;
                let client = env.api();
                super::$name(&env, &client).await;
                env.assert_all_requests_valid();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shell() {
                let env = support::sim().await;
                let client = env.shell();
                super::$name(&env, &client).await;
                env.assert_all_requests_valid();
            }
        }
    };
}

fn class<T: std::fmt::Debug>(result: Result<T, PveError>) -> ErrorClass {
    result.err().map(|e| e.class()).unwrap_or_else(|| panic!("expected an error"))
}

async fn linked_clone(pve: &dyn Pve, newid: u32, name: &str) {
    let spec = CloneSpec {
        newid,
        name: Some(name.into()),
        description: Some("agentlab sandbox".into()),
        ..Default::default()
    };
    let task = pve.clone_vm("pve1", 9000, &spec).await.expect("clone");
    assert!(task.succeeded());
}

both_backends!(cluster_reads);
async fn cluster_reads(_env: &Env, pve: &dyn Pve) {
    let version = pve.version().await.unwrap();
    assert_eq!(version.release, "9.1");
    let nodes = pve.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["pve1"]);
    assert_eq!(pve.next_vmid(Some(1000)).await.ok(), Some(1000));
    assert_eq!(class(pve.next_vmid(Some(9000)).await), ErrorClass::AlreadyExists);
    assert_eq!(pve.next_vmid(None).await.ok(), Some(100));
    let vms = pve.cluster_vms().await.unwrap();
    assert!(vms.iter().any(|v| v.vmid == 9000 && v.template));
    let storages = pve.storages("pve1").await.unwrap();
    assert!(storages.iter().any(|s| s.storage == "local" && s.content.contains("snippets") && s.path.is_some()));
}

both_backends!(clone_configure_start_stop_destroy);
async fn clone_configure_start_stop_destroy(env: &Env, pve: &dyn Pve) {
    linked_clone(pve, 1001, "sbx-1001").await;
    let config = pve.vm_config("pve1", 1001).await.unwrap();
    assert_eq!(config.get("name"), Some("sbx-1001"));
    assert!(config.get("scsi0").is_some_and(|d| d.starts_with("local-lvm:vm-1001-disk-0")), "{config:?}");
    assert!(config.get("net0").is_some_and(|n| !n.contains("BC:24:11:00:00:01")), "clone regenerates the MAC");

    std::fs::write(env.snippets_dir().join("agentlab-1001-a.yaml"), "#cloud-config\n").unwrap();
    let change = ConfigChange::default()
        .set("cores", "4")
        .set("memory", "4096")
        .set("tags", "Job-42,agentlab")
        .set("net0", "virtio,bridge=vmbr1,firewall=1")
        .set("cicustom", "user=local:snippets/agentlab-1001-a.yaml");
    pve.update_config("pve1", 1001, &change).await.expect("config");
    let config = pve.vm_config("pve1", 1001).await.unwrap();
    assert_eq!(config.get("tags"), Some("agentlab;job-42"), "tags are normalised");
    assert_eq!(config.tags(), ["agentlab", "job-42"]);

    // An outdated digest is refused.
    let stale = ConfigChange { digest: Some("0000".into()), ..ConfigChange::default().set("cores", "2") };
    let err = pve.update_config("pve1", 1001, &stale).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("checksum mismatch"), "{err}");

    pve.resize_disk("pve1", 1001, "scsi0", "+2G").await.expect("resize");
    let shrink = pve.resize_disk("pve1", 1001, "scsi0", "1G").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(shrink.contains("shrinking disks is not supported"), "{shrink}");

    pve.vm_action("pve1", 1001, VmAction::Start).await.expect("start");
    assert!(pve.vm_status("pve1", 1001).await.is_ok_and(|s| s.is_running()));
    let again = pve.vm_action("pve1", 1001, VmAction::Start).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(again.contains("VM 1001 already running"), "{again}");

    // The guest agent answers only once the guest has booted.
    let early = pve.agent_ping("pve1", 1001).await;
    if let Err(e) = &early {
        assert_eq!(e.class(), ErrorClass::AgentNotRunning, "{e}");
    }
    let ready = eventually(Duration::from_secs(10), || async { pve.agent_ping("pve1", 1001).await.is_ok() }).await;
    assert!(ready, "agent never answered");
    let interfaces = pve.agent_interfaces("pve1", 1001).await.unwrap();
    let eth0 = interfaces.iter().find(|i| i.name == "eth0").unwrap_or_else(|| panic!("{interfaces:?}"));
    assert!(eth0.ip_addresses.iter().any(|a| a.ip_address_type == "ipv4" && a.ip_address.starts_with("10.77.")));

    pve.vm_action("pve1", 1001, VmAction::Suspend).await.expect("suspend");
    assert!(pve.vm_status("pve1", 1001).await.is_ok_and(|s| s.is_paused()));
    pve.vm_action("pve1", 1001, VmAction::Resume).await.expect("resume");

    let running_destroy =
        pve.destroy_vm("pve1", 1001, DestroyOptions::default()).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(running_destroy.contains("VM 1001 is running - destroy failed"), "{running_destroy}");
    pve.vm_action("pve1", 1001, VmAction::Stop).await.expect("stop");
    pve.vm_action("pve1", 1001, VmAction::Stop).await.expect("stop of a stopped VM is OK");
    let not_running =
        pve.vm_action("pve1", 1001, VmAction::Suspend).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(not_running.contains("VM 1001 not running"), "{not_running}");

    pve.destroy_vm("pve1", 1001, DestroyOptions { purge: true, destroy_unreferenced_disks: true, skiplock: false })
        .await
        .expect("destroy");
    assert_eq!(class(pve.vm_status("pve1", 1001).await), ErrorClass::NotFound);
    let volumes = pve.storage_content("pve1", "local-lvm", None).await.unwrap_or_default();
    assert!(volumes.iter().all(|v| !v.volid.contains("vm-1001-")), "destroy frees the VM's volumes: {volumes:?}");
}

both_backends!(start_fails_when_the_snippet_is_missing);
async fn start_fails_when_the_snippet_is_missing(_env: &Env, pve: &dyn Pve) {
    linked_clone(pve, 1002, "sbx-1002").await;
    let change = ConfigChange::default().set("cicustom", "user=local:snippets/agentlab-1002-missing.yaml");
    pve.update_config("pve1", 1002, &change).await.unwrap();
    let err = pve.vm_action("pve1", 1002, VmAction::Start).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("volume 'local:snippets/agentlab-1002-missing.yaml' does not exist"), "{err}");
}

both_backends!(linked_clone_only_from_templates);
async fn linked_clone_only_from_templates(_env: &Env, pve: &dyn Pve) {
    linked_clone(pve, 1003, "sbx-1003").await;
    let spec = CloneSpec { newid: 1004, full: Some(false), ..Default::default() };
    let err = pve.clone_vm("pve1", 1003, &spec).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("Linked clone feature is not supported for 'local-lvm:vm-1003-disk-0' (scsi0)"), "{err}");
    let taken =
        pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1003, ..Default::default() }).await.err().map(|e| e.to_string());
    assert!(taken.unwrap_or_default().contains("unable to create VM 1003: config file already exists"));
    let full = CloneSpec { newid: 1005, full: Some(true), storage: Some("local-lvm".into()), ..Default::default() };
    pve.clone_vm("pve1", 1003, &full).await.expect("a full clone of a VM works");
    let missing = pve.clone_vm("pve1", 4242, &CloneSpec { newid: 1006, ..Default::default() }).await;
    assert_eq!(class(missing), ErrorClass::NotFound);
}

both_backends!(snapshots_are_waited_on);
async fn snapshots_are_waited_on(_env: &Env, pve: &dyn Pve) {
    linked_clone(pve, 1010, "sbx-1010").await;
    pve.create_snapshot("pve1", 1010, "clean", Some("before any workspace")).await.unwrap();
    let dup = pve.create_snapshot("pve1", 1010, "clean", None).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(dup.contains("snapshot name 'clean' already used"), "{dup}");
    pve.update_config("pve1", 1010, &ConfigChange::default().set("cores", "8")).await.unwrap();
    pve.rollback_snapshot("pve1", 1010, "clean").await.unwrap();
    let config = pve.vm_config("pve1", 1010).await.unwrap_or_default();
    assert_ne!(config.get("cores"), Some("8"), "rollback restored the config");
    let names: Vec<String> =
        pve.snapshots("pve1", 1010).await.unwrap_or_default().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["clean"], "the `current` pseudo entry is hidden");
    let missing = pve.rollback_snapshot("pve1", 1010, "nope").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(missing.contains("snapshot 'nope' does not exist"), "{missing}");
    pve.delete_snapshot("pve1", 1010, "clean").await.unwrap();
    assert!(pve.snapshots("pve1", 1010).await.unwrap_or_default().is_empty());
}

both_backends!(storage_volumes_and_reassign);
async fn storage_volumes_and_reassign(_env: &Env, pve: &dyn Pve) {
    let err = pve
        .alloc_volume("pve1", "local-lvm", 9100, "workspace-a", "1G")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("illegal name 'workspace-a' - should be 'vm-9100-*'"), "{err}");
    let volid = pve.alloc_volume("pve1", "local-lvm", 9100, "vm-9100-disk-0", "1G").await.unwrap();
    assert_eq!(volid, "local-lvm:vm-9100-disk-0");
    let listed = pve.storage_content("pve1", "local-lvm", Some("images")).await.unwrap_or_default();
    assert!(listed.iter().any(|v| v.volid == volid && v.vmid == Some(9100)));

    linked_clone(pve, 1020, "a").await;
    linked_clone(pve, 1021, "b").await;
    pve.update_config("pve1", 1020, &ConfigChange::default().set("scsi1", "local-lvm:1")).await.unwrap();
    pve.reassign_disk("pve1", 1020, "scsi1", 1021, "scsi1").await.expect("reassign");
    let target = pve.vm_config("pve1", 1021).await.unwrap_or_default();
    assert!(
        target.get("scsi1").is_some_and(|d| d.starts_with("local-lvm:vm-1021-disk-")),
        "renamed to its new owner: {target:?}"
    );
    assert!(pve.vm_config("pve1", 1020).await.unwrap_or_default().get("scsi1").is_none());

    pve.unlink_disks("pve1", 1021, &["scsi1".to_string()], false).await.unwrap();
    let after = pve.vm_config("pve1", 1021).await.unwrap_or_default();
    assert!(after.get("unused0").is_some_and(|u| u.starts_with("local-lvm:vm-1021-disk-")), "{after:?}");

    pve.free_volume("pve1", "local-lvm", &volid).await.unwrap();
    let gone = pve.storage_content("pve1", "local-lvm", None).await.unwrap_or_default();
    assert!(gone.iter().all(|v| v.volid != volid));
}

both_backends!(firewall_groups_and_switches);
async fn firewall_groups_and_switches(_env: &Env, pve: &dyn Pve) {
    let options = pve.cluster_firewall_options().await.unwrap_or_default();
    assert_eq!(options.get("enable").and_then(|v| v.as_u64()), Some(0));
    pve.set_cluster_firewall(&[("enable", "1".into())]).await.unwrap();
    assert_eq!(
        pve.cluster_firewall_options().await.unwrap_or_default().get("enable").and_then(|v| v.as_u64()),
        Some(1)
    );

    pve.create_security_group("agent_nat_default", "AgentLab nat").await.unwrap();
    let dup =
        pve.create_security_group("agent_nat_default", "again").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(dup.contains("Security group 'agent_nat_default' already exists"), "{dup}");
    let group = agentlab_netfilter_free_group();
    for params in &group {
        let pairs: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.clone())).collect();
        pve.add_group_rule("agent_nat_default", &pairs).await.unwrap();
    }
    let rules = pve.group_rules("agent_nat_default").await.unwrap_or_default();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r.enable));
    assert_eq!(rules[0].comment.as_deref(), Some("first"), "inserting at position 0 in reverse keeps the order");
    let groups = pve.security_groups().await.unwrap_or_default();
    assert!(groups.iter().any(|g| g.group == "agent_nat_default"));

    linked_clone(pve, 1030, "fw").await;
    pve.set_vm_firewall("pve1", 1030, &[("enable", "1".into())]).await.unwrap();
    pve.add_vm_firewall_rule(
        "pve1",
        1030,
        &[("type", "group".into()), ("action", "agent_nat_default".into()), ("enable", "1".into())],
    )
    .await
    .unwrap();
    let vm_rules = pve.vm_firewall_rules("pve1", 1030).await.unwrap_or_default();
    assert_eq!(vm_rules.first().map(|r| (r.kind.as_str(), r.action.as_str())), Some(("group", "agent_nat_default")));
    assert_eq!(
        pve.vm_firewall_options("pve1", 1030).await.unwrap_or_default().get("enable").and_then(|v| v.as_u64()),
        Some(1)
    );
}

/// Two rules sent last-first with pos=0, as `agentlab-netfilter` renders them.
fn agentlab_netfilter_free_group() -> Vec<Vec<(&'static str, String)>> {
    ["second", "first"]
        .iter()
        .map(|c| {
            vec![
                ("type", "out".to_string()),
                ("action", "DROP".to_string()),
                ("enable", "1".to_string()),
                ("pos", "0".to_string()),
                ("comment", c.to_string()),
            ]
        })
        .collect()
}

both_backends!(errors_are_classified);
async fn errors_are_classified(_env: &Env, pve: &dyn Pve) {
    assert_eq!(class(pve.vm_config("pve1", 4242).await), ErrorClass::NotFound);
    let unknown_node = pve.vm_status("nonode", 9000).await.err().map(|e| e.to_string()).unwrap_or_default();
    // The API answers for a node that does not exist; the shell backend asks pvesh about
    // its own node only.
    assert!(
        unknown_node.contains("hostname lookup 'nonode' failed")
            || unknown_node.contains("cannot act on node `nonode`"),
        "{unknown_node}"
    );
    // A template cannot start; the task says so.
    let template = pve.vm_action("pve1", 9000, VmAction::Start).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(template.contains("you can't start a vm if it's a template"), "{template}");
    // A clone in progress locks its target.
    let spec = CloneSpec { newid: 1040, ..Default::default() };
    let (cloned, locked) = tokio::join!(pve.clone_vm("pve1", 9000, &spec), async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut seen = None;
        for _ in 0..200 {
            match pve.update_config("pve1", 1040, &ConfigChange::default().set("cores", "2")).await {
                Err(e) if e.class() == ErrorClass::Locked => {
                    seen = Some(e);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        seen
    });
    assert!(cloned.is_ok());
    if let Some(e) = locked {
        assert_eq!(e.to_string(), "proxmox: VM is locked (clone)");
    }
}

both_backends!(task_status_and_log);
async fn task_status_and_log(_env: &Env, pve: &dyn Pve) {
    let task = pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1050, ..Default::default() }).await.unwrap();
    let upid = agentlab_proxmox::Upid::parse(&task.upid).unwrap();
    assert_eq!((upid.node.as_str(), upid.task_type.as_str(), upid.id.as_str()), ("pve1", "qmclone", "9000"));
    let status = pve.task_status("pve1", &task.upid).await.unwrap();
    assert_eq!((status.status.as_str(), status.exitstatus.as_deref()), ("stopped", Some("OK")));
    let log = pve.task_log("pve1", &task.upid).await.unwrap_or_default();
    assert_eq!(log.last().map(String::as_str), Some("TASK OK"));
    assert!(log.iter().any(|l| l.contains("create linked clone of drive scsi0")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_wrong_token_is_an_auth_error() {
    let env = support::sim().await;
    let client = env.api_with("root@pam!agentlab=wrong-secret", Duration::from_secs(10));
    assert_eq!(class(client.version().await), ErrorClass::Auth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_call_timeout_is_a_timeout_error() {
    let env = support::sim_with(|c| {
        c.latency.factor = 1.0;
        let _ = c.latency.set("api=2");
    })
    .await;
    let client = env.api_with(support_token(), Duration::from_millis(300));
    assert_eq!(class(client.version().await), ErrorClass::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_call_timeout_is_a_timeout_error() {
    let env = support::sim_with(|c| {
        c.latency.factor = 1.0;
        let _ = c.latency.set("api=3");
    })
    .await;
    let client = env.shell_with(Duration::from_millis(500));
    assert_eq!(class(client.version().await), ErrorClass::Timeout);
}

/// A pvesh that runs a task in the foreground is not killed at the call timeout: its worker
/// would die of SIGPIPE before its cleanup (review F10). Reads keep the short timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_tasks_may_outlast_the_call_timeout() {
    let env = support::sim_with(|c| {
        c.latency.factor = 1.0;
        let _ = c.latency.set("clone_linked=1.2");
    })
    .await;
    let transport = agentlab_proxmox::shell::ShellTransport::new(agentlab_proxmox::shell::ShellConfig {
        pvesh: env.pvesh(),
        timeout: Duration::from_millis(600),
        task_deadline: Duration::from_secs(20),
        local_node: "pve1".into(),
        env: vec![("PVE_SIM_ADMIN".into(), env.sim.admin_url())],
    });
    let client = agentlab_proxmox::PveClient::new(transport, support::policy());
    let task = client.clone_vm("pve1", 9000, &CloneSpec { newid: 1060, ..Default::default() }).await;
    assert!(task.as_ref().is_ok_and(|t| t.succeeded()), "{task:?}");
    assert!(client.vm_config("pve1", 1060).await.is_ok());
    env.assert_all_requests_valid();
}

/// pvesh proxies another node's path over SSH and hands back the task log and UPID as one
/// string (review F10): the shell backend refuses other nodes, saying what to use instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_refuses_a_node_other_than_its_own() {
    let env = support::sim_with(|c| c.nodes = vec!["pve1".into(), "pve2".into()]).await;
    let client = env.shell();
    let err = client.clone_vm("pve2", 9000, &CloneSpec { newid: 1070, ..Default::default() }).await.err();
    let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("cannot act on node `pve2`") && text.contains("proxmox_backend: api"), "{text}");
    assert_eq!(err.map(|e| e.class()), Some(ErrorClass::Other));
    assert!(env.sim.sim.requests().iter().all(|r| !r.path.contains("pve2")), "nothing was sent for pve2");
    // Cluster-wide reads and the local node still work.
    assert!(client.cluster_vms().await.is_ok());
    linked_clone(&client, 1071, "sbx-1071").await;
}

/// An interrupted destroy leaves `lock: destroyed` alone (qemu-server API2/Qemu.pm
/// destroy_vm, 2863-2887); only root@pam may skip the lock (2822-2824): the shell backend
/// (pvesh runs as root@pam) can remove it, an API token cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_at_pam_clears_an_interrupted_destroy() {
    let env = support::sim().await;
    let (api, shell) = (env.api(), env.shell());
    linked_clone(&api, 1080, "sbx-1080").await;
    {
        let mut world = env.sim.sim.world();
        let vm = world.vms.get_mut(&1080).unwrap();
        vm.config.clear();
        vm.lock = Some("destroyed".into());
    }
    let plain = DestroyOptions { purge: true, destroy_unreferenced_disks: true, skiplock: false };
    let locked = api.destroy_vm("pve1", 1080, plain).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(locked.contains("VM is locked (destroyed)"), "{locked}");
    let skiplock = DestroyOptions { skiplock: true, ..plain };
    match api.destroy_vm("pve1", 1080, skiplock).await {
        Err(PveError::Validation { param, message }) => {
            assert_eq!((param.as_str(), message.as_str()), ("skiplock", "Only root may use this option."))
        }
        other => panic!("a token may not skip the lock: {other:?}"),
    }
    shell.destroy_vm("pve1", 1080, skiplock).await.unwrap();
    assert!(!env.sim.sim.world().vms.contains_key(&1080));
}

fn support_token() -> &'static str {
    agentlab_pve_sim::TEST_TOKEN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reads_the_error_from_the_reason_phrase_on_older_hosts() {
    let env = support::sim_with(|c| c.legacy_errors = true).await;
    let client = env.api();
    let err = client.vm_config("pve1", 4242).await.err().unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("Configuration file 'nodes/pve1/qemu-server/4242.conf' does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_wrong_fingerprint_names_both_fingerprints() {
    use agentlab_proxmox::api::{ApiConfig, ApiTransport, Fingerprint, TlsTrust};
    let env = support::sim().await;
    let wrong = Fingerprint([0xAB; 32]);
    let transport = ApiTransport::new(ApiConfig {
        url: env.sim.api_url(),
        token: support_token().into(),
        trust: TlsTrust::Fingerprint(wrong),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let client = agentlab_proxmox::PveClient::new(transport, support::policy());
    let err = client.version().await.err().unwrap_or_else(|| panic!("a wrong pin must fail"));
    assert_eq!(err.class(), ErrorClass::Tls);
    let text = err.to_string();
    assert!(text.contains(&wrong.to_string()) && text.contains(&env.sim.fingerprint), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_without_a_pin_refuses_the_self_signed_certificate_with_a_hint() {
    use agentlab_proxmox::api::{ApiConfig, ApiTransport, TlsTrust};
    let env = support::sim().await;
    let transport = ApiTransport::new(ApiConfig {
        url: env.sim.api_url(),
        token: support_token().into(),
        trust: TlsTrust::System,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let client = agentlab_proxmox::PveClient::new(transport, support::policy());
    let err = client.version().await.err().unwrap_or_else(|| panic!("a self-signed certificate must not pass"));
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert!(err.to_string().contains("proxmox_tls_fingerprint"), "{err}");
}

both_backends!(ipsets_round_trip);
/// The allowlist's IP set (review F3): created, filled, listed, referenced by a group rule,
/// emptied; members are stored and listed as Proxmox normalises them (IPSet.pm create_ip,
/// 210-237; Firewall.pm format_ipsets, 3770-3800), and a CIDR with `/` is deleted through
/// both backends (the set's path takes the rest of the path, IPSet.pm 763-768).
async fn ipsets_round_trip(_env: &Env, pve: &dyn Pve) {
    pve.create_security_group("agent_allow_grp", "allowlist").await.unwrap();
    let refused = pve
        .add_group_rule(
            "agent_allow_grp",
            &[("type", "out".into()), ("action", "ACCEPT".into()), ("dest", "+agent_allow".into())],
        )
        .await;
    match refused {
        Err(PveError::Validation { param, message }) => {
            assert_eq!((param.as_str(), message.as_str()), ("dest", "no such ipset 'agent_allow'"))
        }
        other => panic!("a rule naming a missing IP set must be refused: {other:?}"),
    }

    pve.create_ipset("agent_allow", Some("AgentLab allowlist")).await.unwrap();
    let dup = pve.create_ipset("agent_allow", None).await.err().unwrap_or_else(|| panic!("duplicate accepted"));
    assert!(dup.is_already_there(), "{dup}");
    assert_eq!(dup.to_string(), "proxmox rejected parameter `name`: IPSet 'agent_allow' already exists");
    let sets = pve.ipsets().await.unwrap();
    assert_eq!(
        sets.iter().map(|s| (s.name.as_str(), s.comment.as_deref())).collect::<Vec<_>>(),
        [("agent_allow", Some("AgentLab allowlist"))]
    );

    pve.add_ipset_entry("agent_allow", "192.168.1.7/32", Some("a host")).await.unwrap();
    pve.add_ipset_entry("agent_allow", "10.1.2.3/16", None).await.unwrap();
    pve.add_ipset_entry("agent_allow", "10.0.0.0/8", None).await.unwrap();
    let again = pve.add_ipset_entry("agent_allow", "192.168.1.7", None).await.err();
    let again = again.unwrap_or_else(|| panic!("a member already there was added again"));
    assert!(again.is_already_there(), "{again}");
    assert!(again.to_string().contains("address '192.168.1.7' already exists"), "{again}");
    let entries = pve.ipset_entries("agent_allow").await.unwrap();
    assert_eq!(
        entries.iter().map(|e| (e.cidr.as_str(), e.comment.as_deref(), e.nomatch)).collect::<Vec<_>>(),
        [("10.0.0.0/8", None, false), ("10.1.0.0/16", None, false), ("192.168.1.7", Some("a host"), false)],
        "host bits cleared, /32 dropped, sorted by text"
    );

    pve.add_group_rule(
        "agent_allow_grp",
        &[("type", "out".into()), ("action", "ACCEPT".into()), ("dest", "+agent_allow".into()), ("enable", "1".into())],
    )
    .await
    .expect("the IP set exists now");
    let rules = pve.group_rules("agent_allow_grp").await.unwrap();
    assert_eq!(rules.first().and_then(|r| r.dest.as_deref()), Some("+agent_allow"));

    // `/32` or not, and a `/` in the CIDR: the member is found on both backends.
    pve.delete_ipset_entry("agent_allow", "192.168.1.7/32").await.unwrap();
    pve.delete_ipset_entry("agent_allow", "10.1.0.0/16").await.unwrap();
    pve.delete_ipset_entry("agent_allow", "172.16.0.0/12").await.expect("an absent member is no error");
    let left: Vec<String> = pve.ipset_entries("agent_allow").await.unwrap().into_iter().map(|e| e.cidr).collect();
    assert_eq!(left, ["10.0.0.0/8"]);
    pve.delete_ipset_entry("agent_allow", "10.0.0.0/8").await.unwrap();
    assert!(pve.ipset_entries("agent_allow").await.unwrap().is_empty());

    let missing = pve.ipset_entries("nope").await.err().map(|e| (e.class(), e.to_string()));
    assert_eq!(missing, Some((ErrorClass::NotFound, "proxmox: no such IPSet 'nope'".to_string())));
}

both_backends!(group_rules_and_groups_are_deleted);
/// Group rules and groups are removed one by one; a group with rules is not removed
/// (Rules.pm delete_security_group, 545-563).
async fn group_rules_and_groups_are_deleted(_env: &Env, pve: &dyn Pve) {
    pve.create_security_group("agent_tmp", "temporary").await.unwrap();
    for comment in ["b", "a"] {
        pve.add_group_rule(
            "agent_tmp",
            &[("type", "in".into()), ("action", "DROP".into()), ("comment", comment.into()), ("pos", "5".into())],
        )
        .await
        .unwrap();
    }
    let rules = pve.group_rules("agent_tmp").await.unwrap();
    assert_eq!(
        rules.iter().map(|r| (r.pos, r.comment.as_deref(), r.enable)).collect::<Vec<_>>(),
        [(0, Some("a"), false), (1, Some("b"), false)],
        "inserted at 0 whatever pos says (Rules.pm 308), disabled without enable (306)"
    );
    let busy = pve.delete_security_group("agent_tmp").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(busy.contains("Security group 'agent_tmp' is not empty"), "{busy}");
    pve.delete_group_rule("agent_tmp", 1).await.unwrap();
    let rules = pve.group_rules("agent_tmp").await.unwrap();
    assert_eq!(rules.iter().map(|r| r.comment.as_deref()).collect::<Vec<_>>(), [Some("a")]);
    let gone = pve.delete_group_rule("agent_tmp", 3).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(gone.contains("no rule at position 3"), "{gone}");
    pve.delete_group_rule("agent_tmp", 0).await.unwrap();
    pve.delete_security_group("agent_tmp").await.unwrap();
    assert!(pve.security_groups().await.unwrap().iter().all(|g| g.group != "agent_tmp"));
}

both_backends!(node_firewall_rules_round_trip);
/// Host rules for the agent bridge (review F2): `iface` is kept, every property Proxmox
/// stores comes back, absent ones stay absent (Rules.pm HostRules, 605-644; Host.pm).
async fn node_firewall_rules_round_trip(_env: &Env, pve: &dyn Pve) {
    assert!(pve.node_firewall_rules("pve1").await.unwrap().is_empty());
    let options = pve.node_firewall_options("pve1").await.unwrap();
    assert!(options.contains_key("digest") && !options.contains_key("enable"), "{options:?}");

    pve.add_node_firewall_rule(
        "pve1",
        &[
            ("type", "in".into()),
            ("action", "ACCEPT".into()),
            ("iface", "vmbr1".into()),
            ("proto", "udp".into()),
            ("dport", "53,67".into()),
            ("enable", "1".into()),
            ("comment", "agentlab: DNS and DHCP".into()),
        ],
    )
    .await
    .unwrap();
    pve.add_node_firewall_rule(
        "pve1",
        &[
            ("type", "in".into()),
            ("action", "ACCEPT".into()),
            ("iface", "vmbr1".into()),
            ("source", "10.77.0.0/16".into()),
            ("proto", "tcp".into()),
            ("sport", "1024:65535".into()),
            ("dport", "8844".into()),
            ("log", "nolog".into()),
            ("enable", "1".into()),
        ],
    )
    .await
    .unwrap();
    // A macro is matched case-insensitively and stored under its own name (Firewall.pm
    // 1847-1853).
    pve.add_node_firewall_rule(
        "pve1",
        &[("type", "out".into()), ("action", "ACCEPT".into()), ("macro", "dns".into()), ("iface", "vmbr0".into())],
    )
    .await
    .unwrap();
    let rules = pve.node_firewall_rules("pve1").await.unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(
        (rules[0].kind.as_str(), rules[0].macro_name.as_deref(), rules[0].iface.as_deref(), rules[0].enable),
        ("out", Some("DNS"), Some("vmbr0"), false)
    );
    let listener = &rules[1];
    assert_eq!(
        (
            listener.kind.as_str(),
            listener.iface.as_deref(),
            listener.source.as_deref(),
            listener.sport.as_deref(),
            listener.dport.as_deref(),
            listener.log.as_deref(),
        ),
        ("in", Some("vmbr1"), Some("10.77.0.0/16"), Some("1024:65535"), Some("8844"), Some("nolog")),
        "{listener:?}"
    );
    assert!(listener.comment.is_none() && listener.macro_name.is_none(), "{listener:?}");
    let dns = &rules[2];
    assert!(dns.enable && dns.source.is_none() && dns.sport.is_none() && dns.macro_name.is_none(), "{dns:?}");
    assert_eq!((dns.proto.as_deref(), dns.dport.as_deref()), (Some("udp"), Some("53,67")));

    let unknown = pve
        .add_node_firewall_rule(
            "pve1",
            &[("type", "in".into()), ("action", "ACCEPT".into()), ("source", "+agent_mgmt".into())],
        )
        .await;
    match unknown {
        Err(PveError::Validation { param, message }) => {
            assert_eq!((param.as_str(), message.as_str()), ("source", "no such ipset 'agent_mgmt'"))
        }
        other => panic!("{other:?}"),
    }

    pve.delete_node_firewall_rule("pve1", 1).await.unwrap();
    pve.delete_node_firewall_rule("pve1", 0).await.unwrap();
    let rules = pve.node_firewall_rules("pve1").await.unwrap();
    assert_eq!(rules.iter().map(|r| r.comment.as_deref()).collect::<Vec<_>>(), [Some("agentlab: DNS and DHCP")]);
}
