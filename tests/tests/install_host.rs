//! scripts/install_host.sh into a temp tree (`--prefix`) with the built binaries: the
//! modes and owners that matter (0750 root:agentlab /etc/agentlab, 0640 config, 0700 key
//! directories, 0600 private keys, 0755 binaries), a second run that changes nothing (every
//! path's type, mode, owner, content and mtime compared), a preview that creates nothing,
//! an edited config kept with the shipped one beside it as `.dist`, `--uninstall` keeping
//! config, keys and data and `--purge` removing them. And the shipped commented config:
//! every key of the daemon's `KEYS` is in it, uncommented it is a config the daemon
//! accepts (`agentlabd net render`), as shipped it asks for the Proxmox token.
//!
//! Giving files to group `agentlab` needs root: without it the install tests say so loudly,
//! and fail instead under `AGENTLAB_REQUIRE_NETNS` (CI runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use agentlab_e2e::{bin, repo_root};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Why the install tests cannot run here (not root), printed loudly; a panic under
/// `AGENTLAB_REQUIRE_NETNS` (set by CI, which runs as root).
fn not_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    if std::env::var_os("AGENTLAB_REQUIRE_NETNS").is_some() {
        panic!("install_host.sh tests cannot run here: not root (AGENTLAB_REQUIRE_NETNS is set)");
    }
    eprintln!("\n*** SKIPPED: install_host.sh --apply needs root (files go to group agentlab) ***\n");
    true
}

/// Parallel tests would race to create the group: it is made once here (an existing one
/// is fine), so the scripts find it.
fn ensure_group() {
    let _ = Command::new("groupadd").args(["--system", "agentlab"]).output();
    let found = Command::new("getent").args(["group", "agentlab"]).output().unwrap();
    assert!(found.status.success(), "cannot create group agentlab");
}

fn agentlab_gid() -> u32 {
    let out = Command::new("getent").args(["group", "agentlab"]).output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).and_then(|g| g.trim().parse().ok()).unwrap_or_else(|| panic!("no gid in {line:?}"))
}

/// install_host.sh with the built binaries into `root`, then `args`.
fn install(root: &Path, args: &[&str]) -> Output {
    let bin_dir = bin("agentlabd").parent().unwrap().to_path_buf();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/install_host.sh"))
        .arg("--prefix")
        .arg(root)
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(args)
        .output()
        .expect("run install_host.sh");
    assert!(
        out.status.success(),
        "install_host.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `root`: type, mode, owner, content hash or link target, mtime.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                "dir".to_string()
            } else {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut hasher);
                format!("file {:016x}", hasher.finish())
            };
            let line = format!(
                "{what} mode {:o} {}:{} mtime {}.{:09}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.mtime(),
                meta.mtime_nsec()
            );
            out.insert(path.strip_prefix(root).unwrap().to_path_buf(), line);
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// (mode, uid, gid) of `path` inside `root`.
fn attrs(root: &Path, path: &str) -> (u32, u32, u32) {
    let meta =
        std::fs::symlink_metadata(root.join(path.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{path}: {e}"));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

#[test]
fn apply_installs_with_the_modes_that_matter_and_a_second_run_changes_nothing() {
    if not_root() {
        return;
    }
    ensure_group();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = stdout(&install(root, &["--apply"]));
    assert!(first.contains("done:   install /etc/agentlab/config.yaml"), "{first}");
    let gid = agentlab_gid();
    for (path, want) in [
        ("/etc/agentlab", (0o750, 0, gid)),
        ("/etc/agentlab/config.yaml", (0o640, 0, gid)),
        ("/etc/agentlab/profiles", (0o750, 0, gid)),
        ("/etc/agentlab/profiles/defaults.yaml", (0o640, 0, gid)),
        ("/etc/agentlab/secrets", (0o750, 0, gid)),
        ("/etc/agentlab/keys", (0o700, 0, 0)),
        ("/etc/agentlab/keys/age.key", (0o600, 0, 0)),
        ("/var/lib/agentlab", (0o750, 0, 0)),
        ("/var/lib/agentlab/keys", (0o700, 0, 0)),
        ("/var/lib/agentlab/keys/agentlab_id_ed25519", (0o600, 0, 0)),
        ("/usr/local/bin/agentlabd", (0o755, 0, 0)),
        ("/usr/local/bin/agentlab", (0o755, 0, 0)),
        ("/usr/local/bin/agent-runner", (0o755, 0, 0)),
        ("/etc/systemd/system/agentlabd.service", (0o644, 0, 0)),
        ("/etc/systemd/system/agentlab-net.service", (0o644, 0, 0)),
    ] {
        let (mode, uid, gid) = attrs(root, path);
        assert_eq!(
            (mode, uid, gid),
            want,
            "{path}: mode {mode:o} {uid}:{gid}, want {:o} {}:{}",
            want.0,
            want.1,
            want.2
        );
    }
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert!(read("etc/agentlab/keys/age.key").contains("AGE-SECRET-KEY-"), "not an age identity");
    assert!(read("var/lib/agentlab/keys/agentlab_id_ed25519.pub").starts_with("ssh-ed25519 "));
    assert_eq!(
        read("etc/agentlab/config.yaml"),
        std::fs::read_to_string(repo_root().join("scripts/install/config.yaml")).unwrap()
    );
    let unit = read("etc/systemd/system/agentlabd.service");
    assert!(unit.contains("\nExecStart=/usr/local/bin/agentlabd --config /etc/agentlab/config.yaml\n"), "{unit}");
    assert!(!unit.contains('@'), "a placeholder is left in the installed unit:\n{unit}");
    assert!(std::fs::read(root.join("usr/local/bin/agentlabd")).unwrap() == std::fs::read(bin("agentlabd")).unwrap());
    assert!(root.join("usr/local/share/agentlab/scripts/install_host.sh").is_file());
    assert!(!root.join("etc/systemd/system/agentlabd.service.d").exists(), "the API drop-in only with --api-hardening");

    let before = snapshot(root);
    let second = stdout(&install(root, &["--apply"]));
    assert!(!second.contains("done:"), "a second run changed something:\n{second}");
    let after = snapshot(root);
    assert_eq!(before, after, "the second run changed the tree");
    // A preview of an installed tree has nothing to do either.
    let preview = stdout(&install(root, &[]));
    assert!(!preview.contains("would:"), "{preview}");
    assert_eq!(snapshot(root), before);

    // The drop-in comes with --api-hardening, and only it changes.
    let hardened = stdout(&install(root, &["--apply", "--api-hardening"]));
    let done: Vec<&str> = hardened.lines().filter(|l| l.starts_with("done:")).collect();
    assert_eq!(done.len(), 2, "the drop-in directory and file only:\n{hardened}");
    assert!(root.join("etc/systemd/system/agentlabd.service.d/api-hardening.conf").is_file());
}

#[test]
fn a_preview_of_a_fresh_tree_creates_nothing_and_lists_every_action() {
    // No --apply: no root needed, and nothing may appear under the prefix.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = stdout(&install(&root, &[]));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "a preview created files:\n{out}");
    for action in [
        "would:  create /etc/agentlab (0750 root:agentlab)",
        "would:  install /etc/agentlab/config.yaml (0640 root:agentlab)",
        "would:  create /etc/agentlab/keys (0700 root:root)",
        "would:  make the age identity /etc/agentlab/keys/age.key",
        "would:  make the daemon's SSH key pair /var/lib/agentlab/keys/agentlab_id_ed25519",
        "would:  install /usr/local/bin/agentlabd (0755 root:root)",
        "would:  install /etc/systemd/system/agentlabd.service (0644 root:root)",
    ] {
        assert!(out.contains(action), "the preview does not say `{action}`:\n{out}");
    }
    assert!(!out.contains("done:"), "{out}");
}

#[test]
fn an_edited_config_survives_a_rerun_and_the_shipped_one_lands_beside_it() {
    if not_root() {
        return;
    }
    ensure_group();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root, &["--apply"]);
    let config = root.join("etc/agentlab/config.yaml");
    let edited = "proxmox_backend: shell\n";
    std::fs::write(&config, edited).unwrap();
    let profile = root.join("etc/agentlab/profiles/defaults.yaml");
    let mut profile_text = std::fs::read_to_string(&profile).unwrap();
    profile_text.push_str("# edited by the operator\n");
    std::fs::write(&profile, &profile_text).unwrap();

    let out = stdout(&install(root, &["--apply"]));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited, "the edited config was overwritten");
    assert_eq!(std::fs::read_to_string(&profile).unwrap(), profile_text, "the edited profile was overwritten");
    let shipped = std::fs::read_to_string(repo_root().join("scripts/install/config.yaml")).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("etc/agentlab/config.yaml.dist")).unwrap(), shipped);
    assert!(root.join("etc/agentlab/profiles/defaults.yaml.dist").is_file());
    assert!(out.contains("keep the edited /etc/agentlab/config.yaml"), "{out}");
    // The .dist is not a profile the daemon loads (it reads *.yaml and *.yml only).
    assert!(!profile.with_extension("yaml.dist").extension().is_some_and(|e| e == "yaml" || e == "yml"));

    let before = snapshot(root);
    let again = stdout(&install(root, &["--apply"]));
    assert!(!again.contains("done:"), "{again}");
    assert!(again.contains("edited, kept"), "{again}");
    assert_eq!(snapshot(root), before);
}

#[test]
fn uninstall_keeps_config_keys_and_data_and_purge_removes_them() {
    if not_root() {
        return;
    }
    ensure_group();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root, &["--apply", "--api-hardening"]);
    let kept = [
        "etc/agentlab/config.yaml",
        "etc/agentlab/profiles/defaults.yaml",
        "etc/agentlab/keys/age.key",
        "var/lib/agentlab/keys/agentlab_id_ed25519",
    ];
    let gone = [
        "usr/local/bin/agentlabd",
        "usr/local/bin/agentlab",
        "usr/local/bin/agent-runner",
        "etc/systemd/system/agentlabd.service",
        "etc/systemd/system/agentlab-net.service",
        "etc/systemd/system/agentlabd.service.d",
        "usr/local/share/agentlab",
    ];
    // A preview of the uninstall removes nothing.
    let before = snapshot(root);
    let preview = stdout(&install(root, &["--uninstall"]));
    assert!(preview.contains("would:  remove /usr/local/bin/agentlabd"), "{preview}");
    assert_eq!(snapshot(root), before);

    install(root, &["--uninstall", "--apply"]);
    for path in kept {
        assert!(root.join(path).is_file(), "--uninstall removed {path}");
    }
    for path in gone {
        assert!(!root.join(path).exists(), "--uninstall left {path}");
    }
    install(root, &["--uninstall", "--purge", "--apply"]);
    for path in ["etc/agentlab", "var/lib/agentlab"] {
        assert!(!root.join(path).exists(), "--purge left {path}");
    }
}

/// The daemon's config keys, read from its source (`KEYS` is private to the binary crate).
fn daemon_keys() -> Vec<String> {
    let source = std::fs::read_to_string(repo_root().join("supervisor/src/config/raw.rs")).unwrap();
    let start = source.find("pub const KEYS: &[&str] = &[").expect("KEYS in raw.rs");
    let list = &source[start..];
    let list = &list[..list.find("];").expect("the end of KEYS")];
    let keys: Vec<String> = list.split('"').skip(1).step_by(2).map(str::to_string).collect();
    assert!(keys.len() > 50, "too few keys read from raw.rs: {keys:?}");
    keys
}

/// `# key: value` (or `# key:`) lines of the shipped config: (key, value).
fn commented_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter_map(|rest| {
            let (key, value) = rest.split_once(':')?;
            let is_key =
                !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            is_key.then(|| (key.to_string(), value.trim().to_string()))
        })
        .collect()
}

fn net_render(config: &Path) -> Output {
    Command::new(bin("agentlabd")).arg("--config").arg(config).args(["net", "render"]).output().expect("run agentlabd")
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn the_shipped_config_lists_every_key_and_uncommented_is_accepted_by_the_daemon() {
    let shipped = std::fs::read_to_string(repo_root().join("scripts/install/config.yaml")).unwrap();
    let settings = commented_settings(&shipped);
    let listed: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
    let keys = daemon_keys();
    let missing: Vec<&String> = keys.iter().filter(|k| !listed.contains(&k.as_str())).collect();
    assert!(missing.is_empty(), "scripts/install/config.yaml lacks these keys of KEYS: {missing:?}");
    let unknown: Vec<&&str> = listed.iter().filter(|k| !keys.iter().any(|key| key == *k)).collect();
    assert!(unknown.is_empty(), "scripts/install/config.yaml lists keys the daemon does not have: {unknown:?}");
    let mut seen = listed.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), listed.len(), "a key is listed twice");

    // Every line uncommented, the paths moved into a temp tree, a token filled in: the
    // daemon's own loader (strict: unknown keys refused) takes it.
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path();
    let profiles = tree.join("etc/agentlab/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::copy(repo_root().join("profiles/defaults.yaml"), profiles.join("defaults.yaml")).unwrap();
    let mut config = String::new();
    for (key, value) in &settings {
        let value = match (key.as_str(), value.as_str()) {
            ("proxmox_api_token", _) => "root@pam!agentlab=00000000-0000-0000-0000-000000000000".to_string(),
            (_, v) if v.starts_with('/') => format!("{}{v}", tree.display()),
            (_, v) => v.to_string(),
        };
        config.push_str(&format!("{key}: {value}\n"));
    }
    let path = tree.join("config.yaml");
    write_private(&path, &config);
    let out = net_render(&path);
    assert!(
        out.status.success(),
        "the uncommented shipped config is refused:\n{}\n{config}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("table inet agentlab {"));

    // As shipped (all commented out), the one thing it asks for is the token.
    let as_is = tree.join("as-is.yaml");
    write_private(&as_is, &shipped);
    let out = net_render(&as_is);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("proxmox_api_token"), "{said}");
}
