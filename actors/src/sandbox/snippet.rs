//! The cloud-init user snippet of a sandbox: its hostname, the `agent` user with the
//! daemon's SSH key, `/etc/agentlab/bootstrap.json` with a fresh one-time token, and a
//! `runcmd` that starts the runner. Proxmox cannot receive snippets through its API, so
//! the daemon writes the file into the snippet storage's directory itself (mode 0600),
//! after recording its path.
//!
//! Why `hostname` and `runcmd`: with a custom user-data file Proxmox's own cloud-init
//! user-data (which sets `hostname`/`fqdn`) is not used at all (qemu-server
//! `PVE/QemuServer/Cloudinit.pm`), so without it every sandbox keeps the image's hostname;
//! and `write_files` runs in cloud-init's init stage, so a runner unit that only waits
//! for the descriptor can race it — `runcmd` (final stage, after the file exists) starts
//! the unit explicitly, `--no-block` so cloud-init itself does not wait for the job.

use crate::tokens::random_hex;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What the guest runner reads; the token is the only copy of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bootstrap<'a> {
    pub token: &'a str,
    pub controller: &'a str,
    pub vmid: u32,
}

/// YAML single-quoted scalar.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The runner's systemd unit in the VM template.
pub const RUNNER_UNIT: &str = "agent-runner.service";

/// The `#cloud-config` document; `hostname` is the VM's (DNS) name.
pub fn render(hostname: &str, ssh_public_key: Option<&str>, bootstrap: &Bootstrap<'_>) -> String {
    let json = serde_json::to_string(bootstrap).unwrap_or_default();
    let mut out = String::from("#cloud-config\n# Written by agentlabd; removed when the sandbox is destroyed.\n");
    out.push_str(&format!("hostname: {}\n", quoted(hostname)));
    out.push_str(
        "users:\n  - name: agent\n    shell: /bin/bash\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    lock_passwd: true\n",
    );
    // One key per line: the daemon's own (for `agentlab ssh`) and the operator's.
    let keys: Vec<&str> = ssh_public_key.unwrap_or_default().lines().map(str::trim).filter(|k| !k.is_empty()).collect();
    if !keys.is_empty() {
        out.push_str("    ssh_authorized_keys:\n");
        for key in keys {
            out.push_str(&format!("      - {}\n", quoted(key)));
        }
    }
    out.push_str(
        "write_files:\n  - path: /etc/agentlab/bootstrap.json\n    owner: root:root\n    permissions: '0600'\n",
    );
    out.push_str(&format!("    content: {}\n", quoted(&json)));
    out.push_str(&format!("runcmd:\n  - [systemctl, start, --no-block, {RUNNER_UNIT}]\n"));
    out
}

/// `<dir>/agentlab-<vmid>-<random>.yaml`: unguessable, so another tenant of the host
/// cannot predict it.
pub fn new_path(dir: &Path, vmid: u32) -> std::io::Result<PathBuf> {
    Ok(dir.join(format!("agentlab-{vmid}-{}.yaml", random_hex(6)?)))
}

/// Writes the snippet atomically with mode 0600.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("yaml.tmp");
    {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Removes a snippet; a missing file is fine (removal is idempotent).
pub fn remove(path: &Path) -> std::io::Result<()> {
    // Also the temporary file of a write a crash interrupted (it holds a token too).
    for file in [path.to_path_buf(), path.with_extension("yaml.tmp")] {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The `cicustom` value for a snippet file on `storage`.
pub fn cicustom(storage: &str, path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    format!("user={storage}:snippets/{file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_cloud_config_with_the_descriptor_and_key() {
        let token = "a".repeat(64);
        let text = render(
            "job-1234",
            Some("ssh-ed25519 AAAA agentlab"),
            &Bootstrap { token: &token, controller: "http://10.77.0.1:8844", vmid: 1001 },
        );
        assert!(text.starts_with("#cloud-config\n"));
        assert!(text.contains("- 'ssh-ed25519 AAAA agentlab'"));
        let two = render(
            "h",
            Some("ssh-ed25519 AAAA daemon\nssh-ed25519 BBBB operator\n"),
            &Bootstrap { token: "t", controller: "c", vmid: 1 },
        );
        assert!(two.contains("      - 'ssh-ed25519 AAAA daemon'\n      - 'ssh-ed25519 BBBB operator'\n"), "{two}");
        let expected =
            format!("content: '{{\"token\":\"{token}\",\"controller\":\"http://10.77.0.1:8844\",\"vmid\":1001}}'");
        assert!(text.contains(&expected), "{text}");
        // The VM gets its own hostname, and the runner is started once the file is there.
        assert!(text.contains("\nhostname: 'job-1234'\n"), "{text}");
        assert!(text.ends_with("runcmd:\n  - [systemctl, start, --no-block, agent-runner.service]\n"), "{text}");
        assert!(
            !render("h", None, &Bootstrap { token: "t", controller: "c", vmid: 1 }).contains("ssh_authorized_keys")
        );
    }

    #[test]
    fn files_are_private_and_removal_is_idempotent() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = new_path(dir.path(), 1001).unwrap();
        assert!(path.file_name().is_some_and(|f| f.to_string_lossy().starts_with("agentlab-1001-")));
        write(&path, "#cloud-config\n").unwrap();
        assert_eq!(std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).ok(), Some(0o600));
        assert_eq!(
            cicustom("local", &path),
            format!(
                "user=local:snippets/{}",
                path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
            )
        );
        remove(&path).unwrap();
        remove(&path).unwrap();
    }
}
