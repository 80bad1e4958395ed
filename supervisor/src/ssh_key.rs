//! The daemon's SSH key pair: made once with `ssh-keygen` (ed25519, no passphrase, 0600),
//! its public half put into every sandbox next to the operator's key, so `agentlab ssh`
//! works for whoever may read the private half (root, or `--identity` with the operator's
//! own key).

use anyhow::Context;
use std::path::Path;
use std::process::Command;

/// Creates the pair if the private key is missing; returns the public key line.
pub fn ensure(path: &Path) -> anyhow::Result<String> {
    let public = path.with_extension("pub");
    if !path.exists() {
        if let Some(dir) = path.parent() {
            crate::socket::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "agentlab-daemon", "-f"])
            .arg(path)
            .output()
            .context("cannot run ssh-keygen to make the daemon's SSH key (install openssh-client)")?;
        if !out.status.success() {
            anyhow::bail!(
                "ssh-keygen could not write {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        tracing::info!(path = %path.display(), "created the daemon's SSH key pair");
    }
    let line = std::fs::read_to_string(&public)
        .with_context(|| format!("cannot read {} (the public half of ssh_key_path)", public.display()))?;
    let line = line.trim().to_string();
    if line.lines().count() != 1 || !line.starts_with("ssh-") {
        anyhow::bail!("{} is not one OpenSSH public key line", public.display());
    }
    Ok(line)
}
