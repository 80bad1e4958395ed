//! The real-VM tier: the Debian template image `scripts/template/build_debian_image.sh`
//! builds (cached under `target/vm-template/`, keyed by the scripts and the runner binary
//! that go into it), and whether this machine can boot it.

use crate::netns::on_path;
use crate::{bin, repo_root};
use std::path::PathBuf;
use std::process::Command;

const TOOLS: [&str; 10] =
    ["qemu-system-x86_64", "qemu-img", "mmdebstrap", "genisoimage", "mkfs.ext4", "dnsmasq", "nft", "ip", "git", "age"];

/// Why the real-VM tests cannot run here, printed loudly; with `AGENTLAB_REQUIRE_VM` set
/// (CI) a panic instead.
pub fn missing() -> Option<String> {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not root (taps, bridges and namespaces need it)".to_string())
    } else {
        TOOLS.iter().find(|t| !on_path(t)).map(|t| format!("`{t}` is not installed"))
    };
    if let Some(reason) = &reason {
        if std::env::var_os("AGENTLAB_REQUIRE_VM").is_some() {
            panic!("the real-VM test cannot run here: {reason} (AGENTLAB_REQUIRE_VM is set)");
        }
        eprintln!(
            "\n*** SKIPPED: the real-VM test needs root and {}: {reason} (.ci/run installs them) ***\n",
            TOOLS.join(", ")
        );
    }
    reason
}

fn sha256_of(paths: &[PathBuf]) -> String {
    let out = Command::new("sha256sum").args(paths).output().expect("sha256sum");
    let all = String::from_utf8_lossy(&out.stdout).split_whitespace().step_by(2).collect::<Vec<_>>().join("");
    let out = Command::new("sh").args(["-c", &format!("printf %s {all} | sha256sum")]).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).chars().take(16).collect()
}

/// The directory holding `rootfs.img`, `vmlinuz`, `initrd.img` and `cmdline`, built if needed.
pub fn template_image() -> PathBuf {
    let root = repo_root();
    let scripts = root.join("scripts/template");
    let inputs = [scripts.join("guest_layer.sh"), scripts.join("build_debian_image.sh"), bin("agent-runner")];
    let base = root.join("target/vm-template");
    let dir = base.join(sha256_of(&inputs));
    if dir.join("manifest.txt").exists() {
        eprintln!("template image: {} (cached)", dir.display());
        return dir;
    }
    // Older images (another runner build) go: each holds a root filesystem.
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        if entry.file_name() != "cache" {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let partial = base.join("partial");
    let started = std::time::SystemTime::now();
    let out = Command::new("bash")
        .arg(scripts.join("build_debian_image.sh"))
        .arg("--out")
        .arg(&partial)
        .arg("--runner")
        .arg(bin("agent-runner"))
        .arg("--cache")
        .arg(base.join("cache"))
        // A fixed epoch: the cached root filesystem stays valid across commits.
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .output()
        .expect("run build_debian_image.sh");
    assert!(
        out.status.success(),
        "build_debian_image.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &dir).expect("move the image into place");
    let secs = started.elapsed().map(|d| d.as_secs()).unwrap_or_default();
    eprintln!("template image: built in {secs} s at {}", dir.display());
    dir
}
