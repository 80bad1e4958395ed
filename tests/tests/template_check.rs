//! The template check as the operator sees it, against a `pve-sim` process: `agentlab
//! status` lists each profile template with its verdict, and `agentlabd template check`
//! prints the findings with their fixes and exits 0 (accepted), 1 (refused, or no such VM)
//! or 2 (Proxmox cannot be asked). The template is broken the way an operator would break
//! it, with `qm set` (the simulator's `qm` personality).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use agentlab_e2e::{CliOutput, SimProcess, Workspace, bin};
use std::path::Path;
use std::process::Command;

/// `qm ARGS` against `sim`, through a `qm` symlink to the simulator binary.
fn qm(ws: &Workspace, sim: &SimProcess, args: &[&str]) -> CliOutput {
    let link = ws.path().join("bin/qm");
    if !link.exists() {
        std::fs::create_dir_all(ws.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(bin("pve-sim"), &link).unwrap();
    }
    output(Command::new(&link).args(args).env("PVE_SIM_ADMIN", &sim.admin_url))
}

/// `agentlabd template check ARGS` on the workspace's config.
fn template_check(ws: &Workspace, args: &[&str]) -> CliOutput {
    output(Command::new(bin("agentlabd")).args(["template", "check"]).args(args).arg("--config").arg(ws.config_path()))
}

fn output(command: &mut Command) -> CliOutput {
    CliOutput::from(command.output().expect("spawn"))
}

/// A profile on template `vmid` besides the shipped ones.
fn add_profile(profiles: &Path, vmid: u32) {
    let text = format!(
        "name: other-template\ntemplate_vmid: {vmid}\nnetwork:\n  bridge: vmbr1\n  mode: nat\nresources:\n  cores: 2\n  memory_mb: 2048\n"
    );
    std::fs::write(profiles.join("other.yaml"), text).unwrap();
}

#[test]
fn status_shows_the_shipped_template_accepted_and_a_missing_one_refused() {
    let ws = Workspace::new();
    add_profile(&ws.path().join("profiles"), 9100);
    let sim = SimProcess::start(ws.path(), &[]);
    ws.write_sim_config(&sim, &sim.fingerprint, "");
    let _daemon = ws.start_daemon();
    let status = ws.cli(&["--json", "status"]);
    assert_eq!(status.code, 0, "{status:?}");
    let templates = status.json()["templates"].clone();
    assert_eq!(templates[0], serde_json::json!({"vmid": 9000, "node": "pve1", "accepted": true, "findings": []}));
    assert_eq!(templates[1]["vmid"], 9100, "{templates}");
    assert_eq!(templates[1]["accepted"], false);
    assert_eq!(templates[1]["findings"][0]["code"], "not_found");
    let text = ws.cli(&["status"]).stdout;
    assert!(text.contains("template 9000 (pve1): accepted\n"), "{text}");
    assert!(text.contains("template 9100: refused (1 error)\n           error not_found: no VM 9100"), "{text}");
}

#[test]
fn a_template_without_its_boot_disk_is_refused_by_status_and_the_check() {
    let ws = Workspace::new();
    let sim = SimProcess::start(ws.path(), &[]);
    ws.write_sim_config(&sim, &sim.fingerprint, "");

    let good = template_check(&ws, &["9000"]);
    assert_eq!(good.code, 0, "{good:?}");
    assert_eq!(good.stdout, "template 9000: accepted\n", "{good:?}");

    let deleted = qm(&ws, &sim, &["set", "9000", "--delete", "scsi0"]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let bad = template_check(&ws, &["9000"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    let lines: Vec<&str> = bad.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{bad:?}");
    assert!(lines[0].starts_with("error no_boot_disk: VM 9000 has no disk to boot"), "{bad:?}");
    assert!(lines[0].contains("`qm set 9000 --scsi0 local-lvm:base-9000-disk-0`"), "{bad:?}");
    assert_eq!(lines[1], "template 9000: refused (1 error)");
    let json = template_check(&ws, &["9000", "--json"]);
    assert_eq!(json.code, 1, "{json:?}");
    let report = json.json();
    assert_eq!(report["accepted"], false, "{report}");
    assert_eq!(report["node"], "pve1");
    assert_eq!(report["findings"][0]["level"], "error");
    assert_eq!(report["findings"][0]["code"], "no_boot_disk");

    let _daemon = ws.start_daemon();
    let status = ws.cli(&["--json", "status"]).json();
    assert_eq!(status["templates"][0]["accepted"], false, "{status}");
    assert_eq!(status["templates"][0]["findings"][0]["code"], "no_boot_disk");
    let text = ws.cli(&["status"]).stdout;
    assert!(text.contains("template 9000 (pve1): refused (1 error)\n           error no_boot_disk: "), "{text}");
    sim.assert_all_requests_valid();
}

#[test]
fn the_check_exits_1_for_a_missing_vm_and_2_when_proxmox_cannot_be_asked() {
    let ws = Workspace::new();
    let sim = SimProcess::start(ws.path(), &[]);
    ws.write_sim_config(&sim, &sim.fingerprint, "");
    let missing = template_check(&ws, &["9999"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stdout.starts_with("error not_found: no VM 9999 on the cluster"), "{missing:?}");
    assert!(missing.stdout.ends_with("template 9999: refused (1 error)\n"), "{missing:?}");

    let unreachable = Workspace::new();
    let out = template_check(&unreachable, &["9000"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("cannot list the cluster's VMs"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    let no_config =
        output(Command::new(bin("agentlabd")).args(["template", "check", "9000", "--config", "/nonexistent"]));
    assert_eq!(no_config.code, 2, "{no_config:?}");
    let usage = output(Command::new(bin("agentlabd")).args(["template", "check", "not-a-vmid"]));
    assert_eq!(usage.code, 2, "{usage:?}");
}
