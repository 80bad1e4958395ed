//! The VM runtime: a started VM's guest is a real process. Its bootstrap descriptor is the
//! `/etc/agentlab/bootstrap.json` entry of the `write_files` list in the VM's cloud-init
//! user snippet, exactly what cloud-init would have written inside the VM.

use super::GuestRuntime;
use std::path::{Path, PathBuf};

pub const BOOTSTRAP_PATH: &str = "/etc/agentlab/bootstrap.json";

/// The descriptor from a cloud-config snippet, if it has one.
pub fn bootstrap_from_snippet(text: &str) -> Result<Option<String>, String> {
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| format!("snippet is not valid YAML: {e}"))?;
    let files = value.get("write_files").and_then(|f| f.as_array()).cloned().unwrap_or_default();
    Ok(files
        .iter()
        .find(|f| f.get("path").and_then(|p| p.as_str()) == Some(BOOTSTRAP_PATH))
        .and_then(|f| f.get("content").and_then(|c| c.as_str()).map(str::to_string)))
}

/// The snippet file a `cicustom` value's `user=` points at, in its storage's snippets directory.
pub fn user_snippet(cicustom: &str, snippets_dir: impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    let volid = cicustom.split(',').find_map(|p| p.strip_prefix("user="))?;
    let (storage, name) = volid.split_once(':')?;
    let file = name.strip_prefix("snippets/")?;
    Some(snippets_dir(storage)?.join(file))
}

/// The data disk the guest mounts at `/work`: the VM's first disk that is not its boot disk
/// (the boot order's first, else `scsi0`), not a CD-ROM and not the cloud-init drive.
pub fn work_volume(config: &std::collections::BTreeMap<String, String>) -> Option<String> {
    let boot = config
        .get("boot")
        .and_then(|b| b.strip_prefix("order="))
        .and_then(|o| o.split(';').next())
        .unwrap_or("scsi0")
        .to_string();
    config
        .iter()
        .filter(|(k, _)| **k != boot && crate::world::is_disk_key(k))
        .filter_map(|(_, v)| {
            crate::world::disk_volumes(&std::collections::BTreeMap::from([("scsi0".into(), v.clone())])).pop()
        })
        .next()
}

/// Where the process runtime keeps a data volume's content (the volume as a directory).
pub fn volume_dir(runtime: &GuestRuntime, volid: &str) -> PathBuf {
    let name: String =
        volid.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    runtime.root.join("volumes").join(name)
}

/// Where a snapshot of a data volume's content is kept.
fn snapshot_dir(runtime: &GuestRuntime, volid: &str, snapshot: &str) -> PathBuf {
    let volume = volume_dir(runtime, volid);
    let name = volume.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    runtime.root.join("volume-snapshots").join(name).join(snapshot)
}

/// A freed volume's content goes with it, and its snapshots.
pub fn forget_volume(runtime: &GuestRuntime, volid: &str) {
    let _ = std::fs::remove_dir_all(volume_dir(runtime, volid));
    if let Some(parent) = snapshot_dir(runtime, volid, "x").parent() {
        let _ = std::fs::remove_dir_all(parent);
    }
}

/// `cp -a` of a directory's content into a fresh `to` (nothing there: an empty `to`).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    if !from.is_dir() {
        return Ok(());
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("cp -a {} {} failed", from.display(), to.display())) }
}

/// The content side of a VM snapshot (what `qemu-img snapshot` does for the QEMU runtime):
/// each data volume of the VM is copied (`-c`), restored (`-a`) or the copy dropped (`-d`).
pub fn snapshot_volumes(runtime: &GuestRuntime, volids: &[String], flag: &str, snapshot: &str) -> Result<(), String> {
    for volid in volids {
        let (live, saved) = (volume_dir(runtime, volid), snapshot_dir(runtime, volid, snapshot));
        match flag {
            "-c" => copy_tree(&live, &saved)?,
            "-a" => copy_tree(&saved, &live)?,
            _ => {
                let _ = std::fs::remove_dir_all(&saved);
            }
        }
    }
    Ok(())
}

/// A full clone's copy of a data volume (of its state in `snapshot`, if given).
pub fn copy_volume(runtime: &GuestRuntime, from: &str, snapshot: Option<&str>, to: &str) -> Result<(), String> {
    let source = match snapshot {
        Some(s) => snapshot_dir(runtime, from, s),
        None => volume_dir(runtime, from),
    };
    copy_tree(&source, &volume_dir(runtime, to))
}

/// Starts the guest of `vmid`; `Ok(None)` when the snippet carries no descriptor. With a
/// data disk (`work`), the guest's work directory is that volume's directory, and the
/// repository goes there, as `/work/repo` in a VM.
pub fn launch(
    runtime: &GuestRuntime,
    vmid: u32,
    snippet: &Path,
    work: Option<&str>,
) -> Result<Option<tokio::process::Child>, String> {
    let text = std::fs::read_to_string(snippet).map_err(|e| format!("cannot read {}: {e}", snippet.display()))?;
    let Some(descriptor) = bootstrap_from_snippet(&text)? else {
        return Ok(None);
    };
    let home = runtime.root.join(vmid.to_string());
    let dirs = ["etc", "secrets", "repo", "run"].map(|d| home.join(d));
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    set_mode(&dirs[1], 0o700)?;
    let bootstrap = dirs[0].join("bootstrap.json");
    std::fs::write(&bootstrap, descriptor).map_err(|e| format!("cannot write {}: {e}", bootstrap.display()))?;
    set_mode(&bootstrap, 0o600)?;
    let log = std::fs::File::create(home.join("guest.log")).map_err(|e| format!("cannot create the guest log: {e}"))?;
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(&runtime.program);
    command.args(&runtime.args).envs(runtime.env.iter().map(|(k, v)| (k, v)));
    match work {
        Some(volid) => {
            let dir = volume_dir(runtime, volid);
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            command.env("AGENTLAB_WORK_DIR", &dir);
        }
        None => {
            command.env("AGENTLAB_REPO_DIR", &dirs[2]);
        }
    }
    let child = command
        .env("AGENTLAB_BOOTSTRAP", &bootstrap)
        .env("AGENTLAB_SECRETS_DIR", &dirs[1])
        .env("AGENTLAB_RUN_DIR", &dirs[3])
        .env("AGENTLAB_VMID", vmid.to_string())
        .current_dir(&home)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the guest program {}: {e}", runtime.program.display()))?;
    Ok(Some(child))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_is_found_in_write_files() {
        let snippet = "#cloud-config\nusers:\n  - name: agent\nwrite_files:\n  - path: /etc/motd\n    content: hi\n  - path: /etc/agentlab/bootstrap.json\n    permissions: '0600'\n    content: '{\"token\":\"t\",\"controller\":\"http://h\",\"vmid\":1001}'\n";
        assert_eq!(
            bootstrap_from_snippet(snippet),
            Ok(Some(r#"{"token":"t","controller":"http://h","vmid":1001}"#.to_string()))
        );
        assert_eq!(bootstrap_from_snippet("#cloud-config\nusers: []\n"), Ok(None));
        let path = user_snippet("user=local:snippets/a.yaml,network=local:snippets/n.yaml", |s| {
            (s == "local").then(|| PathBuf::from("/var/lib/vz/snippets"))
        });
        assert_eq!(path, Some(PathBuf::from("/var/lib/vz/snippets/a.yaml")));
    }
}
