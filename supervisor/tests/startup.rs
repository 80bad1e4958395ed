//! The `agentlabd` binary on its own: version, and start-up refusals that say what to do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use std::process::Command;

fn agentlabd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentlabd")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn version_is_printed() {
    let (code, stdout, _) = agentlabd(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), format!("agentlabd {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_missing_config_says_how_to_point_at_one() {
    let (code, _, stderr) = agentlabd(&["--config", "/nonexistent/agentlab/config.yaml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read config /nonexistent/agentlab/config.yaml"), "{stderr}");
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn a_missing_profiles_dir_is_refused_with_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("profiles_dir: {}/nope\nproxmox_backend: shell\n", dir.path().display())).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = agentlabd(&["--config", &config.display().to_string()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read profiles directory"), "{stderr}");
    assert!(stderr.contains("set profiles_dir"), "{stderr}");
}
