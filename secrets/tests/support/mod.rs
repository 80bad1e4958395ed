//! What the sops tests share: keys, a bundle with a value of each kind, the directory of the
//! files real sops wrote (shipped in the `rops` crate's package), and a YAML comparison.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::path::{Path, PathBuf};

/// The age identity that opens the files in the rops package's `tests/sops_references`
/// (rops `crates/lib/src/integration/age.rs`, its mock private key); the public test key of
/// those files, not a secret.
pub const REFERENCE_IDENTITY: &str = "AGE-SECRET-KEY-1EQUCGFZH8UZKSZ0Z5N5T234YRNDT4U9H7QNYXWRRNJYDDVXE6FWSCPGNJ7";

/// A bundle with a value of each kind sops types (`str`, `int`, `bool`), an empty string (left
/// unencrypted by sops) and a key sops leaves in plaintext (`_unencrypted`).
pub const BUNDLE: &str = "version: 1\nmetadata:\n  owner_unencrypted: ops\nenv:\n  DEMO_API_KEY: \"sk-demo-4242\"\n  \
                          PORT: 8080\n  FLAG: true\n  EMPTY: \"\"\ngit:\n  username: bot\n  token: \"ghp_tok3n\"\n";

/// A new identity: its `AGE-SECRET-KEY-…` line, and the key loaded from an identity file
/// written in `dir`.
pub fn fresh_identity(dir: &Path) -> (String, agentlab_secrets::AgeKey) {
    let (text, _) = agentlab_secrets::generate_identity();
    let identity = age::secrecy::ExposeSecret::expose_secret(&text)
        .lines()
        .find(|line| line.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let key = agentlab_secrets::AgeKey::load(&identity_file(dir, &identity)).unwrap();
    (identity, key)
}

/// Writes `identity` (an AGE-SECRET-KEY line) as a 0600 identity file in `dir`.
pub fn identity_file(dir: &Path, identity: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("age.key");
    std::fs::write(&path, format!("{identity}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `tests/sops_references` of the `rops` package cargo fetched for this crate's tests.
pub fn sops_references() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        // The host platform only: the others' packages are never downloaded, and offline.
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", host_triple(), "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == "rops"))
        .and_then(|rops| rops["manifest_path"].as_str())
        .expect("the rops package is a dev-dependency");
    let dir = Path::new(manifest).parent().unwrap().join("tests/sops_references");
    assert!(dir.is_dir(), "{} is missing from the rops package", dir.display());
    dir
}

fn host_triple() -> &'static str {
    if cfg!(target_arch = "aarch64") { "aarch64-unknown-linux-gnu" } else { "x86_64-unknown-linux-gnu" }
}

/// A YAML document as a JSON value, to compare documents whatever their layout.
pub fn yaml_value(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}
