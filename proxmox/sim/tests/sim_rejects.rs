//! The simulator refuses what Proxmox refuses, with Proxmox's texts, so that a client
//! mistake (the Go version's D1–D5, docs/reference/compatibility.md) fails in our tests instead of on a real host.

mod support;

use agentlab_proxmox::transport::Method;
use agentlab_proxmox::{ErrorClass, PveError};
use serde_json::Value;

async fn call(env: &support::Env, method: Method, path: &str, params: &[(&str, &str)]) -> Result<Value, PveError> {
    let client = env.api();
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    agentlab_proxmox::Pve::transport(&client).call(method, path.to_string(), params).await
}

fn validation(result: Result<Value, PveError>) -> (String, String) {
    match result {
        Err(PveError::Validation { param, message }) => (param, message),
        other => panic!("expected a 400 parameter error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_and_true_for_booleans_are_400s() {
    let env = support::sim().await;
    let (param, message) = validation(
        call(&env, Method::Post, "/nodes/pve1/qemu/9000/clone", &[("newid", "1001"), ("linked", "1")]).await,
    );
    assert_eq!(
        (param.as_str(), message.as_str()),
        ("linked", "property is not defined in schema and the schema does not allow additional properties")
    );
    let (param, message) = validation(
        call(&env, Method::Post, "/nodes/pve1/qemu/9000/clone", &[("newid", "1001"), ("full", "true")]).await,
    );
    assert_eq!((param.as_str(), message.as_str()), ("full", "type check ('boolean') failed - got 'true'"));
    let requests = env.sim.sim.requests();
    assert!(requests.iter().all(|r| r.verdict == "rejected"), "both were logged as rejected");
    assert!(!env.sim.sim.world().vms.contains_key(&1001), "a rejected request changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fwgroup_on_net0_is_refused() {
    let env = support::sim().await;
    let (param, message) = validation(
        call(
            &env,
            Method::Put,
            "/nodes/pve1/qemu/9000/config",
            &[("net0", "virtio,bridge=vmbr1,firewall=1,fwgroup=agent_nat_default")],
        )
        .await,
    );
    assert_eq!(param, "net0");
    assert!(message.contains("net0.fwgroup: property is not defined in schema"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snippets_cannot_be_uploaded_through_the_api() {
    let env = support::sim().await;
    let (param, message) = validation(
        call(
            &env,
            Method::Post,
            "/nodes/pve1/storage/local/upload",
            &[("content", "snippets"), ("filename", "a.yaml")],
        )
        .await,
    );
    assert_eq!(param, "content");
    assert_eq!(message, "value 'snippets' does not have a value in the enumeration 'iso, vztmpl, import'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_19_character_group_name_is_refused() {
    let env = support::sim().await;
    let (param, message) =
        validation(call(&env, Method::Post, "/cluster/firewall/groups", &[("group", "agent_nat_allowlist")]).await);
    assert_eq!((param.as_str(), message.as_str()), ("group", "value may only be 18 characters long"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvm_thin_volumes_must_be_named_after_their_vmid() {
    let env = support::sim().await;
    let err = call(
        &env,
        Method::Post,
        "/nodes/pve1/storage/local-lvm/content",
        &[("vmid", "9100"), ("filename", "workspace-1"), ("size", "1G")],
    )
    .await;
    let text = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("illegal name 'workspace-1' - should be 'vm-9100-*'"), "{text}");
    // vmid=0, as the Go version sent, is not even a valid parameter.
    let (param, _) = validation(
        call(
            &env,
            Method::Post,
            "/nodes/pve1/storage/local-lvm/content",
            &[("vmid", "0"), ("filename", "vm-0-disk-0"), ("size", "1G")],
        )
        .await,
    );
    assert_eq!(param, "vmid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_clone_of_a_non_template_is_refused() {
    let env = support::sim().await;
    let pve = env.api();
    let spec = agentlab_proxmox::types::CloneSpec { newid: 1001, full: Some(true), ..Default::default() };
    agentlab_proxmox::Pve::clone_vm(&pve, "pve1", 9000, &spec).await.unwrap();
    let err = call(&env, Method::Post, "/nodes/pve1/qemu/1001/clone", &[("newid", "1002"), ("full", "0")]).await.err();
    let err = err.unwrap_or_else(|| panic!("must fail"));
    assert_eq!(err.class(), ErrorClass::Other);
    assert!(
        err.to_string().contains("Linked clone feature is not supported for 'local-lvm:vm-1001-disk-0' (scsi0)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_content_sub_paths_that_do_not_exist_are_501() {
    let env = support::sim().await;
    let err =
        call(&env, Method::Post, "/nodes/pve1/storage/local-lvm/content/vm-9000-disk-0/snapshot", &[]).await.err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("not implemented"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_inherit_protection_and_a_protected_vm_is_not_destroyed() {
    let env = support::sim().await;
    env.sim.sim.world().vms.get_mut(&9000).unwrap().config.insert("protection".into(), "1".into());
    let upid = call(&env, Method::Post, "/nodes/pve1/qemu/9000/clone", &[("newid", "1001")]).await.unwrap();
    let client = env.api();
    agentlab_proxmox::Pve::wait_task(&client, "pve1", upid.as_str().unwrap()).await.unwrap();
    assert_eq!(env.sim.sim.world().vms[&1001].config.get("protection").map(String::as_str), Some("1"));
    let refused = call(&env, Method::Delete, "/nodes/pve1/qemu/1001", &[]).await.err();
    assert_eq!(
        refused.as_ref().map(|e| e.to_string()),
        Some("proxmox: can't remove VM 1001 - protection mode enabled".to_string()),
        "{refused:?}"
    );
    assert!(env.sim.sim.world().vms.contains_key(&1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balloon_above_the_memory_is_refused() {
    let env = support::sim().await;
    let refused = call(&env, Method::Put, "/nodes/pve1/qemu/9000/config", &[("memory", "1024"), ("balloon", "2048")])
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(refused.as_deref(), Some("proxmox: balloon value too large (must be smaller than assigned memory)"));
    assert!(
        call(&env, Method::Put, "/nodes/pve1/qemu/9000/config", &[("memory", "4096"), ("balloon", "2048")])
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_at_pam_sets_affinity_and_a_token_never_is_root_at_pam() {
    let env = support::sim().await;
    let refused = call(&env, Method::Put, "/nodes/pve1/qemu/9000/config", &[("affinity", "0-1")]).await.err();
    assert_eq!(refused.map(|e| e.to_string()).as_deref(), Some("proxmox: only root can set 'affinity' config"));
    // pvesh on the host is root@pam.
    let out = std::process::Command::new(env.pvesh())
        .args(["set", "/nodes/pve1/qemu/9000/config", "--affinity", "0-1"])
        .env("PVE_SIM_ADMIN", env.sim.admin_url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.sim.sim.world().vms[&9000].config.get("affinity").map(String::as_str), Some("0-1"));
}

/// qemu-server API2/Qemu.pm clone_vm (4436-4500): the template's config is read on the node
/// in the path, and `target` needs every volume on shared storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_run_on_the_templates_node_and_go_elsewhere_only_from_shared_storage() {
    use agentlab_proxmox::Pve;
    use agentlab_proxmox::types::CloneSpec;
    let env = support::sim_with(|c| c.nodes = vec!["pve1".into(), "pve2".into()]).await;
    let pve = env.api();
    let elsewhere = pve.clone_vm("pve2", 9000, &CloneSpec { newid: 1001, ..Default::default() }).await;
    let text = elsewhere.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("Configuration file 'nodes/pve2/qemu-server/9000.conf' does not exist"), "{text}");
    let local = CloneSpec { newid: 1002, target_node: Some("pve2".into()), ..Default::default() };
    let text = pve.clone_vm("pve1", 9000, &local).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("can't clone VM to node 'pve2' (VM uses local storage)"), "{text}");
    // The same template with its volumes on a shared storage.
    {
        let mut world = env.sim.sim.world();
        world.storages.get_mut("local-lvm").unwrap().shared = true;
    }
    let shared = CloneSpec { newid: 1003, target_node: Some("pve2".into()), ..Default::default() };
    assert!(pve.clone_vm("pve1", 9000, &shared).await.is_ok());
    assert_eq!(env.sim.sim.world().vms[&1003].node, "pve2");
    assert!(pve.vm_config("pve2", 1003).await.is_ok());
}

/// pve-storage ZFSPoolPlugin.pm volume_rollback_is_possible (588-614): ZFS rolls back only
/// to a volume's newest snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zfs_rolls_back_only_to_the_newest_snapshot() {
    use agentlab_proxmox::Pve;
    use agentlab_proxmox::types::CloneSpec;
    use agentlab_pve_sim::{Storage, StorageKind};
    let env = support::sim().await;
    {
        let mut world = env.sim.sim.world();
        let mut zfs = Storage::new("local-zfs", StorageKind::ZfsPool, vec!["images".into()], None, 1 << 40);
        let lvm = world.storages.get_mut("local-lvm").unwrap();
        for name in ["base-9000-disk-0", "vm-9000-cloudinit"] {
            let volume = lvm.volumes.remove(name).unwrap();
            zfs.volumes.insert(name.into(), volume);
        }
        world.storages.insert("local-zfs".into(), zfs);
        for value in world.vms.get_mut(&9000).unwrap().config.values_mut() {
            *value = value.replace("local-lvm:", "local-zfs:");
        }
    }
    let pve = env.api();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1001, ..Default::default() }).await.unwrap();
    pve.create_snapshot("pve1", 1001, "snap_a", None).await.unwrap();
    pve.create_snapshot("pve1", 1001, "snap_b", None).await.unwrap();
    let text = pve.rollback_snapshot("pve1", 1001, "snap_a").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("can't rollback, 'snap_a' is not most recent snapshot on 'local-zfs:"), "{text}");
    pve.rollback_snapshot("pve1", 1001, "snap_b").await.unwrap();
    pve.delete_snapshot("pve1", 1001, "snap_b").await.unwrap();
    pve.rollback_snapshot("pve1", 1001, "snap_a").await.unwrap();
}

/// pve-firewall `src/PVE/Firewall.pm` verify_rule, 1770-1785: a rule's `+name` must be an
/// existing IP set, named as it is stored; a malformed name passes the schema (only its
/// length is checked there, parse_address_list 1072-1077) and is refused by the rule check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_naming_an_unknown_ip_set_is_refused() {
    let env = support::sim().await;
    call(&env, Method::Post, "/cluster/firewall/groups", &[("group", "agent_allow_g")]).await.unwrap();
    let rule = |dest: &'static str| [("type", "out"), ("action", "ACCEPT"), ("dest", dest)];
    let (param, message) =
        validation(call(&env, Method::Post, "/cluster/firewall/groups/agent_allow_g", &rule("+agent_allow")).await);
    assert_eq!((param.as_str(), message.as_str()), ("dest", "no such ipset 'agent_allow'"));
    let (param, message) =
        validation(call(&env, Method::Post, "/cluster/firewall/groups/agent_allow_g", &rule("+dc/agent_allow")).await);
    assert_eq!((param.as_str(), message.as_str()), ("dest", "no such ipset 'agent_allow'"));
    let (param, message) =
        validation(call(&env, Method::Post, "/cluster/firewall/groups/agent_allow_g", &rule("+bad!name")).await);
    assert_eq!((param.as_str(), message.as_str()), ("dest", "invalid ipset name '+bad!name'"));
    assert!(env.sim.sim.world().groups["agent_allow_g"].rules.is_empty(), "nothing was added");

    // Names are stored lower-cased (Firewall.pm 3499-3501) and looked up as written.
    call(&env, Method::Post, "/cluster/firewall/ipset", &[("name", "Agent_Allow")]).await.unwrap();
    let sets = call(&env, Method::Get, "/cluster/firewall/ipset", &[]).await.unwrap();
    assert_eq!(sets[0]["name"], "agent_allow");
    assert!(sets[0]["digest"].is_string() && sets[0].get("comment").is_none(), "{sets}");
    let (_, message) =
        validation(call(&env, Method::Post, "/cluster/firewall/groups/agent_allow_g", &rule("+Agent_Allow")).await);
    assert_eq!(message, "no such ipset 'Agent_Allow'");
    call(&env, Method::Post, "/cluster/firewall/groups/agent_allow_g", &rule("+agent_allow")).await.unwrap();

    // VM and node rules too, and an alias (pve-sim defines none) likewise.
    let vm = call(
        &env,
        Method::Post,
        "/nodes/pve1/qemu/9000/firewall/rules",
        &[("type", "in"), ("action", "ACCEPT"), ("source", "+nope")],
    )
    .await;
    assert_eq!(validation(vm), ("source".to_string(), "no such ipset 'nope'".to_string()));
    let node = call(
        &env,
        Method::Post,
        "/nodes/pve1/firewall/rules",
        &[("type", "in"), ("action", "ACCEPT"), ("dest", "+nope")],
    )
    .await;
    assert_eq!(validation(node), ("dest".to_string(), "no such ipset 'nope'".to_string()));
    let alias = call(
        &env,
        Method::Post,
        "/nodes/pve1/firewall/rules",
        &[("type", "in"), ("action", "ACCEPT"), ("source", "office")],
    )
    .await;
    assert_eq!(validation(alias), ("source".to_string(), "no such alias 'office'".to_string()));
}

/// IPSet.pm: names by the `ipset-name` option (Firewall.pm 116-125: pattern, 2-64
/// characters), duplicates and zero prefixes refused, a set with members kept unless
/// `force` (delete_ipset, 163-168), entries read and updated by their stored text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_sets_refuse_what_proxmox_refuses() {
    let env = support::sim().await;
    let long = "a".repeat(65);
    let (param, message) = validation(call(&env, Method::Post, "/cluster/firewall/ipset", &[("name", &long)]).await);
    assert_eq!((param.as_str(), message.as_str()), ("name", "value may only be 64 characters long"));
    let (_, message) = validation(call(&env, Method::Post, "/cluster/firewall/ipset", &[("name", "1st")]).await);
    assert_eq!(message, "value does not match the regex pattern");
    call(&env, Method::Post, "/cluster/firewall/ipset", &[("name", "agent_allow"), ("comment", "allow")])
        .await
        .unwrap();
    let (param, message) =
        validation(call(&env, Method::Post, "/cluster/firewall/ipset", &[("name", "agent_allow")]).await);
    assert_eq!((param.as_str(), message.as_str()), ("name", "IPSet 'agent_allow' already exists"));

    let e = &env;
    let add = |cidr: &'static str| async move {
        call(e, Method::Post, "/cluster/firewall/ipset/agent_allow", &[("cidr", cidr), ("nomatch", "1")]).await
    };
    add("10.9.8.7/24").await.unwrap();
    let (param, message) = validation(add("10.9.8.0/24").await);
    assert_eq!((param.as_str(), message.as_str()), ("cidr", "address '10.9.8.0/24' already exists"));
    let (_, message) = validation(add("0.0.0.0/0").await);
    assert_eq!(message, "a zero prefix is not allowed in ipset entries");
    let (_, message) = validation(add("10.0.0.0/33").await);
    assert!(message.contains("value does not look like a valid IP address or CIDR network"), "{message}");
    let alias = add("office").await.err().map(|e| e.to_string());
    assert_eq!(alias.as_deref(), Some("proxmox: no such alias 'office'"));

    let members = call(&env, Method::Get, "/cluster/firewall/ipset/agent_allow", &[]).await.unwrap();
    assert_eq!(members[0]["cidr"], "10.9.8.0/24");
    assert_eq!(members[0]["nomatch"], 1);
    assert!(members[0].get("comment").is_none() && members[0]["digest"].is_string(), "{members}");
    // One member by its stored text, the `/` raw in the path as pvesh sends it, or encoded.
    let one = call(&env, Method::Get, "/cluster/firewall/ipset/agent_allow/10.9.8.0/24", &[]).await.unwrap();
    assert_eq!(one["cidr"], "10.9.8.0/24");
    let (param, message) =
        validation(call(&env, Method::Get, "/cluster/firewall/ipset/agent_allow/10.9.8.7%2F24", &[]).await);
    assert_eq!((param.as_str(), message.as_str()), ("cidr", "no such IP/Network"));
    // PUT sets nomatch and comment to what is sent (IPSet.pm 321-327).
    call(&env, Method::Put, "/cluster/firewall/ipset/agent_allow/10.9.8.0%2F24", &[("comment", "lab")]).await.unwrap();
    let one = call(&env, Method::Get, "/cluster/firewall/ipset/agent_allow/10.9.8.0%2F24", &[]).await.unwrap();
    assert_eq!((one["comment"].as_str(), one.get("nomatch")), (Some("lab"), None));
    let stale =
        call(&env, Method::Delete, "/cluster/firewall/ipset/agent_allow/10.9.8.0%2F24", &[("digest", "0000")]).await;
    assert_eq!(
        stale.err().map(|e| e.to_string()).as_deref(),
        Some("proxmox: detected modified configuration - file changed by other user? Try again.")
    );

    let busy = call(&env, Method::Delete, "/cluster/firewall/ipset/agent_allow", &[]).await.err();
    assert_eq!(busy.map(|e| e.to_string()).as_deref(), Some("proxmox: IPSet 'agent_allow' is not empty"));
    call(&env, Method::Delete, "/cluster/firewall/ipset/agent_allow", &[("force", "1")]).await.unwrap();
    assert!(env.sim.sim.world().ipsets.is_empty());
    let gone = call(&env, Method::Delete, "/cluster/firewall/ipset/agent_allow", &[]).await.err();
    assert_eq!(gone.map(|e| e.to_string()).as_deref(), Some("proxmox: no such IPSet 'agent_allow'"));

    // VM-level IP sets are not simulated: there are none, and none can be made.
    let vm_sets = call(&env, Method::Get, "/nodes/pve1/qemu/9000/firewall/ipset", &[]).await.unwrap();
    assert_eq!(vm_sets, serde_json::json!([]));
    let vm_set = call(&env, Method::Post, "/nodes/pve1/qemu/9000/firewall/ipset", &[("name", "x1")]).await.err();
    assert!(vm_set.is_some_and(|e| e.to_string().contains("not simulated")));
}

/// verify_rule's `rule_env` tables (Firewall.pm 1721-1738, 1813-1844): a group has no
/// `group` rules and no `iface`, a VM's `iface` is `net<n>` and it has no `forward` rules,
/// a node's rules take any interface name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_types_and_interfaces_follow_the_rule_env() {
    let env = support::sim().await;
    call(&env, Method::Post, "/cluster/firewall/groups", &[("group", "g1")]).await.unwrap();
    let e = &env;
    let group = |params: &'static [(&'static str, &'static str)]| async move {
        validation(call(e, Method::Post, "/cluster/firewall/groups/g1", params).await)
    };
    assert_eq!(
        group(&[("type", "group"), ("action", "g1")]).await,
        ("type".into(), "invalid rule type 'group' for rule_env 'group'".into())
    );
    assert_eq!(
        group(&[("type", "in"), ("action", "ACCEPT"), ("iface", "net0")]).await,
        ("type".into(), "parameter -i not allowed for this rule type".into())
    );
    assert_eq!(
        group(&[("type", "forward"), ("action", "REJECT")]).await,
        ("action".into(), "cannot define REJECT rules on forward chain".into())
    );
    assert_eq!(
        group(&[("type", "in"), ("action", "ACCEPT"), ("dport", "22")]).await,
        ("proto".into(), "missing property - 'dport' requires this property".into())
    );
    assert_eq!(
        group(&[("type", "in"), ("action", "ACCEPT"), ("proto", "icmp"), ("sport", "22")]).await,
        ("sport".into(), "protocol 'icmp' does not support ports".into())
    );
    assert_eq!(
        group(&[("type", "in"), ("action", "ACCEPT"), ("macro", "NoSuchMacro")]).await,
        ("macro".into(), "unknown macro 'NoSuchMacro'".into())
    );
    let vm = |params: &'static [(&'static str, &'static str)]| async move {
        validation(call(e, Method::Post, "/nodes/pve1/qemu/9000/firewall/rules", params).await)
    };
    assert_eq!(
        vm(&[("type", "in"), ("action", "ACCEPT"), ("iface", "vmbr1")]).await,
        ("iface".into(), "value does not match the regex pattern 'net\\d+'".into())
    );
    assert_eq!(
        vm(&[("type", "forward"), ("action", "ACCEPT")]).await,
        ("type".into(), "invalid rule type 'forward' for rule_env 'vm'".into())
    );
    for params in [
        &[("type", "in"), ("action", "ACCEPT"), ("iface", "vmbr1")][..],
        &[("type", "forward"), ("action", "DROP"), ("iface", "fwbr1001i0")][..],
        &[("type", "group"), ("action", "g1"), ("iface", "vmbr1")][..],
    ] {
        call(&env, Method::Post, "/nodes/pve1/firewall/rules", params).await.unwrap();
    }
    let rules = call(&env, Method::Get, "/nodes/pve1/firewall/rules", &[]).await.unwrap();
    assert_eq!(rules.as_array().map(Vec::len), Some(3));
    assert_eq!((rules[0]["type"].as_str(), rules[0]["action"].as_str()), (Some("group"), Some("g1")));
    assert_eq!(rules[2]["iface"], "vmbr1");
    // A node that does not exist is the proxy's error (Rules.pm HostRules proxyto node).
    let text = call(&env, Method::Get, "/nodes/nonode/firewall/rules", &[]).await.err().map(|e| e.to_string());
    assert!(text.unwrap_or_default().contains("hostname lookup 'nonode' failed"));
    // Options: `delete` is refused only for what is not a host option (Host.pm 131-137).
    call(&env, Method::Put, "/nodes/pve1/firewall/options", &[("enable", "1"), ("delete", "nosmurfs")]).await.unwrap();
    let (param, message) =
        validation(call(&env, Method::Put, "/nodes/pve1/firewall/options", &[("delete", "policy_in")]).await);
    assert_eq!((param.as_str(), message.as_str()), ("delete", "no such option 'policy_in'"));
    let options = call(&env, Method::Get, "/nodes/pve1/firewall/options", &[]).await.unwrap();
    assert_eq!(options["enable"], 1);
}

/// `qm create` and `--scsi0 STORAGE:0,import-from=/path` (what create_template.sh runs):
/// an absolute path is root@pam's alone (pve-storage Storage.pm check_volume_access
/// 650-652), a VMID in use is refused before any task (pve-cluster check_vmid_unused), and
/// `qm template` leaves the cloud-init CD-ROM alone (qemu-server QemuServer.pm
/// template_create, 7896).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_vms_import_images_only_as_root_and_become_templates_with_their_cdrom() {
    let env = support::sim().await;
    let image = tempfile::NamedTempFile::new().unwrap();
    image.as_file().set_len(3 << 30).unwrap();
    let import = format!("local-lvm:0,import-from={},discard=on", image.path().display());
    let taken = call(&env, Method::Post, "/nodes/pve1/qemu", &[("vmid", "9000"), ("name", "again")]).await;
    let text = taken.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("unable to create VM 9000 - VM 9000 already exists on node 'pve1'"), "{text}");
    let token = call(&env, Method::Post, "/nodes/pve1/qemu", &[("vmid", "9100"), ("scsi0", &import)]).await;
    let text = token.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("Only root can pass arbitrary filesystem paths."), "{text}");
    let (param, message) = validation(
        call(&env, Method::Post, "/nodes/pve1/qemu", &[("vmid", "9100"), ("scsi0", "local-lvm:4,import-from=/x")])
            .await,
    );
    assert_eq!(
        (param.as_str(), message.as_str()),
        ("scsi0", "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>")
    );
    assert!(!env.sim.sim.world().vms.contains_key(&9100), "refused before anything was created");

    let qm = |args: &[&str]| {
        let out =
            std::process::Command::new(env.qm()).args(args).env("PVE_SIM_ADMIN", env.sim.admin_url()).output().unwrap();
        assert!(out.status.success(), "qm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    qm(&["create", "9100", "--name", "tpl", "--net0", "virtio,bridge=vmbr1", "--agent", "enabled=1"]);
    qm(&["set", "9100", "--scsi0", &import]);
    qm(&["set", "9100", "--ide2", "local-lvm:cloudinit", "--boot", "order=scsi0"]);
    qm(&["template", "9100"]);
    let world = env.sim.sim.world();
    let vm = &world.vms[&9100];
    assert!(vm.template);
    assert_eq!(vm.config["scsi0"], "local-lvm:base-9100-disk-0,discard=on,size=3G");
    assert_eq!(vm.config["ide2"], "local-lvm:vm-9100-cloudinit,media=cdrom");
    assert!(vm.config["net0"].starts_with("virtio=BC:24:11:"), "{}", vm.config["net0"]);
    let volume = &world.storages["local-lvm"].volumes["base-9100-disk-0"];
    assert_eq!((volume.size, volume.image.as_deref()), (3 << 30, Some(image.path())));
}

/// F12: a disk image another VMID owns, attached by volume id. Rolling back to a snapshot
/// taken before the attach leaves it as `unusedN` (qemu-server QemuConfig.pm
/// __snapshot_rollback_get_unused); destroying the VM, even with
/// `destroy-unreferenced-disks`, frees only the VM's own volumes (QemuServer.pm destroy_vm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_volume_survives_rollback_and_destroy() {
    use agentlab_proxmox::Pve;
    use agentlab_proxmox::types::{CloneSpec, ConfigChange, DestroyOptions};
    let env = support::sim().await;
    let pve = env.api();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1001, full: Some(true), ..Default::default() }).await.unwrap();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1002, full: Some(true), ..Default::default() }).await.unwrap();
    let volid = pve.alloc_volume("pve1", "local-lvm", 1002, "vm-1002-disk-5", "1G").await.unwrap();
    pve.create_snapshot("pve1", 1001, "clean", None).await.unwrap();
    let missing =
        pve.update_config("pve1", 1001, &ConfigChange::default().set("scsi1", "local-lvm:vm-1002-disk-9")).await;
    let text = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("volume local-lvm:vm-1002-disk-9 does not exist"), "{text}");
    pve.update_config("pve1", 1001, &ConfigChange::default().set("scsi1", volid.clone())).await.unwrap();
    let config = env.sim.sim.world().vms[&1001].config.clone();
    assert_eq!(config.get("scsi1").map(String::as_str), Some("local-lvm:vm-1002-disk-5,size=1G"));
    pve.rollback_snapshot("pve1", 1001, "clean").await.unwrap();
    let config = env.sim.sim.world().vms[&1001].config.clone();
    assert_eq!((config.get("scsi1"), config.get("unused0").map(String::as_str)), (None, Some(volid.as_str())));
    let options = DestroyOptions { purge: true, destroy_unreferenced_disks: true, skiplock: false };
    pve.destroy_vm("pve1", 1001, options).await.unwrap();
    let world = env.sim.sim.world();
    assert!(world.storages["local-lvm"].volumes.contains_key("vm-1002-disk-5"), "the foreign volume is kept");
    assert!(!world.storages["local-lvm"].volumes.contains_key("vm-1001-disk-0"), "the VM's own disk is freed");
}

/// pve-storage Storage.pm check_volume_access (630-649): another VMID's image needs
/// Datastore.Audit on the storage and VM.Config.Disk on its owner (or Datastore.Allocate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_another_vms_volume_needs_config_disk_on_the_owner() {
    use agentlab_proxmox::Pve;
    use agentlab_proxmox::types::{CloneSpec, ConfigChange};
    let token = agentlab_pve_sim::TEST_TOKEN.split('=').next().unwrap().to_string();
    let env = support::sim_with(|config| {
        let privs = ["VM.Audit", "VM.Clone", "VM.Allocate", "VM.Config.Disk", "Datastore.AllocateSpace"];
        config.token_privileges.insert(token, privs.iter().map(|p| p.to_string()).collect());
    })
    .await;
    let pve = env.api();
    pve.clone_vm("pve1", 9000, &CloneSpec { newid: 1001, full: Some(true), ..Default::default() }).await.unwrap();
    let volid = pve.alloc_volume("pve1", "local-lvm", 1002, "vm-1002-disk-0", "1G").await.unwrap();
    let refused = pve.update_config("pve1", 1001, &ConfigChange::default().set("scsi1", volid)).await;
    let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("Permission check failed (/storage/local-lvm, Datastore.Audit)"), "{text}");
}

/// qemu-server API2/Qemu.pm move_vm_disk (5049-5051): a disk a snapshot references does not
/// move to another VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_in_a_snapshot_does_not_move_to_another_vm() {
    use agentlab_proxmox::Pve;
    use agentlab_proxmox::types::CloneSpec;
    let env = support::sim().await;
    let pve = env.api();
    for newid in [1001, 1002] {
        pve.clone_vm("pve1", 9000, &CloneSpec { newid, full: Some(true), ..Default::default() }).await.unwrap();
    }
    pve.create_snapshot("pve1", 1001, "s1", None).await.unwrap();
    let refused = call(
        &env,
        Method::Post,
        "/nodes/pve1/qemu/1001/move_disk",
        &[("disk", "scsi0"), ("target-vmid", "1002"), ("target-disk", "scsi1")],
    )
    .await;
    let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("Can't move disk used by a snapshot to another VM"), "{text}");
}
