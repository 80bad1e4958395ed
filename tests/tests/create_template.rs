//! scripts/create_template.sh against a `pve-sim` process, with the simulator's `qm`
//! personality and the real `agentlabd` first on PATH: the `--dry-run` plan is commands
//! only, and running it with bash makes a template the check accepts; a real run does the
//! same; a VMID that exists is refused before anything is made. The guest layer needs
//! virt-customize and a real image, so these runs import a small raw file as it is
//! (`--skip-customize`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use agentlab_e2e::{CliOutput, SimProcess, Workspace, bin, repo_root};
use std::path::PathBuf;
use std::process::Command;

/// The workspace, a simulator for it, and a `bin/` with `qm` (the simulator) and
/// `agentlabd`.
struct Host {
    ws: Workspace,
    sim: SimProcess,
    image: PathBuf,
}

impl Host {
    fn new() -> Host {
        let ws = Workspace::new();
        let sim = SimProcess::start(ws.path(), &[]);
        ws.write_sim_config(&sim, &sim.fingerprint, "");
        let dir = ws.path().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(bin("pve-sim"), dir.join("qm")).unwrap();
        std::os::unix::fs::symlink(bin("agentlabd"), dir.join("agentlabd")).unwrap();
        let image = ws.path().join("disk.raw");
        std::fs::write(&image, vec![0u8; 1024 * 1024]).unwrap();
        Host { ws, sim, image }
    }

    /// `program ARGS` with this host's PATH and simulator.
    fn command(&self, program: &str) -> Command {
        let path = format!("{}:{}", self.ws.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(program);
        command.env("PATH", path).env("PVE_SIM_ADMIN", &self.sim.admin_url).current_dir(self.ws.path());
        command
    }

    /// create_template.sh with the test's image and storage, then `args`.
    fn script(&self, args: &[&str]) -> CliOutput {
        let script = repo_root().join("scripts/create_template.sh");
        let mut command = self.command("bash");
        command.arg(script).args(["--skip-customize", "--storage", "local-lvm", "--image"]).arg(&self.image);
        command.arg("--config").arg(self.ws.config_path()).args(args);
        output(&mut command)
    }

    fn check(&self, vmid: &str) -> CliOutput {
        let config = self.ws.config_path();
        output(self.command("agentlabd").args(["template", "check", vmid, "--config"]).arg(config))
    }
}

fn output(command: &mut Command) -> CliOutput {
    CliOutput::from(command.output().expect("spawn"))
}

#[test]
fn the_dry_run_plan_and_a_real_run_both_make_an_accepted_template() {
    let host = Host::new();
    let plan = host.script(&["--dry-run", "--vmid", "9100"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let lines: Vec<&str> = plan.stdout.lines().collect();
    let image = host.image.display().to_string();
    let expected_starts = [
        "qm create 9100 --name agentlab-ubuntu-2404 --memory 4096 --cores 2 --net0 virtio\\,bridge=vmbr1 --scsihw virtio-scsi-pci --ostype l26 --agent enabled=1 --serial0 socket --vga serial0",
        &format!("qm set 9100 --scsi0 local-lvm:0\\,import-from={image}\\,discard=on"),
        "qm set 9100 --ide2 local-lvm:cloudinit",
        "qm set 9100 --boot order=scsi0 --ipconfig0 ip=dhcp",
        "qm resize 9100 scsi0 40G",
        "qm template 9100",
        "agentlabd template check 9100 --config ",
    ];
    assert_eq!(lines.len(), expected_starts.len(), "{plan:?}");
    for (line, start) in lines.iter().zip(expected_starts) {
        assert!(line.starts_with(start), "`{line}` does not start with `{start}`");
    }
    assert!(host.sim.vm(9100).is_none(), "a dry run makes nothing");

    let plan_file = host.ws.path().join("plan.sh");
    std::fs::write(&plan_file, &plan.stdout).unwrap();
    let ran = output(host.command("bash").arg("-e").arg(&plan_file));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("template 9100: accepted"), "{ran:?}");
    let vm = host.sim.vm(9100).expect("VM 9100 made");
    assert_eq!(vm["template"], true, "{vm}");
    let check = host.check("9100");
    assert_eq!((check.code, check.stdout.as_str()), (0, "template 9100: accepted\n"), "{check:?}");

    let real = host.script(&["--vmid", "9101"]);
    assert_eq!(real.code, 0, "{real:?}");
    assert!(real.stdout.contains("template 9101: accepted"), "{real:?}");
    assert!(real.stderr.contains("+ qm template 9101"), "each command is shown as it runs: {real:?}");
    assert!(real.stderr.contains("template 9101 (agentlab-ubuntu-2404) is ready"), "{real:?}");
    let check = host.check("9101");
    assert_eq!((check.code, check.stdout.as_str()), (0, "template 9101: accepted\n"), "{check:?}");
    host.sim.assert_all_requests_valid();
}

#[test]
fn an_existing_vmid_is_refused_and_q35_puts_the_cloud_init_drive_on_scsi() {
    let host = Host::new();
    for dry_run in [true, false] {
        let args: &[&str] = if dry_run { &["--dry-run", "--vmid", "9000"] } else { &["--vmid", "9000"] };
        let out = host.script(args);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(out.stderr.contains("VM 9000 already exists (qm status 9000)"), "{out:?}");
        assert!(out.stderr.contains("choose another --vmid"), "{out:?}");
    }
    let config = host.sim.vm(9000).expect("the template is still there")["config"].clone();
    assert_eq!(config["name"], "agentlab-template-9000", "untouched: {config}");

    let plan = host.script(&["--dry-run", "--vmid", "9102", "--machine", "q35", "--no-check"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let lines: Vec<&str> = plan.stdout.lines().collect();
    assert!(lines[0].ends_with(" --machine q35"), "{plan:?}");
    assert!(lines.contains(&"qm set 9102 --scsi1 local-lvm:cloudinit"), "{plan:?}");
    assert!(!plan.stdout.contains("ide2") && !plan.stdout.contains("agentlabd"), "{plan:?}");

    let usage = host.script(&["--vmid", "12"]);
    assert_eq!(usage.code, 1, "{usage:?}");
    assert!(usage.stderr.contains("--vmid 12: expected a number of at least 100"), "{usage:?}");
}
