//! sops files this crate seals, opened by a third implementation written apart from both
//! sops and this crate: the `sops-age` npm package (TypeScript), run by Node.js. It checks no
//! MAC (its source leaves that branch empty), so this proves the values and the data key
//! only; rops and real sops's own files prove the MAC (tests/sops_rops.rs, tests/sops.rs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use agentlab_secrets::{SopsLayout, encrypt_sops};
use support::{BUNDLE, fresh_identity, yaml_value};

const SOPS_AGE: &str = "sops-age@4.0.2";

/// The package installed under the target directory (once), or why it cannot be.
fn sops_age_js() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sops-age-js");
    if dir.join("node_modules/sops-age/package.json").is_file() {
        return Ok(dir);
    }
    for tool in ["node", "npm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("{tool} is not installed (apt install nodejs npm)"));
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(&dir)
        .arg(SOPS_AGE)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("npm install {SOPS_AGE} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(dir)
}

#[test]
fn sops_age_for_node_opens_what_this_crate_seals() {
    let js = match sops_age_js() {
        Ok(dir) => dir,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED sops_age_for_node_opens_what_this_crate_seals: {why}");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let (identity, key) = fresh_identity(dir.path());
    let sealed = dir.path().join("bundle.sops.yaml");
    std::fs::write(&sealed, encrypt_sops(&SopsLayout::new(key.recipients()), BUNDLE.as_bytes()).unwrap()).unwrap();

    // The key through the environment (sops's SOPS_AGE_KEY, which sops-age reads), not argv.
    let script = "import { decryptSops } from 'sops-age';\n\
                  const value = await decryptSops({ path: process.env.SOPS_FILE, secretKey: process.env.SOPS_AGE_KEY });\n\
                  process.stdout.write(JSON.stringify(value));\n";
    let out = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .current_dir(&js)
        .env("SOPS_FILE", &sealed)
        .env("SOPS_AGE_KEY", &identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "sops-age: {}", String::from_utf8_lossy(&out.stderr));
    let opened: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(opened, yaml_value(BUNDLE));
}
