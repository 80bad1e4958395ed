//! The shipped systemd units (scripts/systemd/) as systemd reads them: each one, rendered
//! with the real built `agentlabd` and a config path the way install_host.sh renders it,
//! passes `systemd-analyze verify` with nothing to say, the API-only drop-in too; a
//! misspelled directive, a bad value or a misspelled drop-in line is caught (so a pass
//! means something); and the drop-in lowers `systemd-analyze security`'s exposure score.
//! Without systemd-analyze the tests say loudly why they skip, and fail instead under
//! `AGENTLAB_REQUIRE_SYSTEMD=1` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use agentlab_e2e::{bin, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `systemd-analyze`, or why the test cannot run here (printed; a panic under
/// `AGENTLAB_REQUIRE_SYSTEMD`).
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("systemd-analyze")).find(|p| p.is_file()));
    if found.is_none() {
        let reason = "systemd-analyze is not installed (apt-get install systemd)";
        if std::env::var_os("AGENTLAB_REQUIRE_SYSTEMD").is_some() {
            panic!("the systemd unit tests cannot run here: {reason} (AGENTLAB_REQUIRE_SYSTEMD is set)");
        }
        eprintln!("\n*** SKIPPED: the systemd unit tests need systemd-analyze: {reason} ***\n");
    }
    found
}

/// The unit sources: every `*.service` of scripts/systemd.
fn shipped_units() -> Vec<PathBuf> {
    let mut units: Vec<PathBuf> = std::fs::read_dir(repo_root().join("scripts/systemd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    assert!(units.len() >= 2, "expected agentlabd.service and agentlab-net.service, found {units:?}");
    units
}

/// A unit's text as install_host.sh writes it, with the built daemon's path.
fn render(source: &Path, config: &Path) -> String {
    let text = std::fs::read_to_string(source).unwrap();
    let rendered = text
        .replace("@AGENTLABD@", &bin("agentlabd").display().to_string())
        .replace("@CONFIG@", &config.display().to_string())
        .replace("@SHARE@", &repo_root().display().to_string());
    // Placeholders are `@UPPER@`; `@system-service` (a syscall group) is not one.
    let placeholder = rendered
        .split('@')
        .skip(1)
        .step_by(2)
        .any(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    assert!(!placeholder, "{}: a placeholder is left after rendering:\n{rendered}", source.display());
    rendered
}

/// `systemd-analyze verify` on `units`: `Err(what it said)` unless it exits 0 silently.
/// systemd reports unknown keys and unparsable values on stderr but still exits 0, so any
/// output counts as a failure.
fn verify(analyze: &Path, units: &[PathBuf]) -> Result<(), String> {
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(units)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() { Ok(()) } else { Err(format!("{}: {said}", out.status)) }
}

/// Renders every shipped unit into `dir`, the API drop-in beside agentlabd.service.
fn render_all(dir: &Path, with_dropin: bool) -> Vec<PathBuf> {
    let config = dir.join("config.yaml");
    let mut paths = Vec::new();
    for source in shipped_units() {
        let path = dir.join(source.file_name().unwrap());
        std::fs::write(&path, render(&source, &config)).unwrap();
        paths.push(path);
    }
    if with_dropin {
        let dropins = dir.join("agentlabd.service.d");
        std::fs::create_dir_all(&dropins).unwrap();
        std::fs::copy(
            repo_root().join("scripts/systemd/agentlabd-api-hardening.conf"),
            dropins.join("api-hardening.conf"),
        )
        .unwrap();
    }
    paths
}

#[test]
fn every_shipped_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else { return };
    for with_dropin in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let units = render_all(dir.path(), with_dropin);
        for unit in &units {
            if let Err(said) = verify(&analyze, std::slice::from_ref(unit)) {
                panic!("{} (API drop-in: {with_dropin}) does not verify: {said}", unit.display());
            }
        }
        println!("verified {} units (API drop-in: {with_dropin})", units.len());
    }
}

#[test]
fn the_daemon_unit_says_what_install_host_and_the_daemon_rely_on() {
    let text = std::fs::read_to_string(repo_root().join("scripts/systemd/agentlabd.service")).unwrap();
    let directives: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for wanted in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=@AGENTLABD@ --config @CONFIG@",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RuntimeDirectory=agentlab",
        "StateDirectory=agentlab",
        "After=agentlab-net.service",
        // pmxcfs accepts IPC from gid 0 (or www-data) only: never Group=agentlab.
        "Group=root",
    ] {
        assert!(directives.contains(&wanted), "agentlabd.service lacks `{wanted}`");
    }
    // What the shell backend's kvm (our grandchild) cannot live with stays in the drop-in.
    for shell_breaker in
        ["PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes", "MemoryDenyWriteExecute=yes"]
    {
        assert!(!directives.contains(&shell_breaker), "agentlabd.service must not set {shell_breaker}");
    }
}

#[test]
fn a_misspelled_directive_a_bad_value_and_a_bad_dropin_line_are_caught() {
    let Some(analyze) = systemd_analyze() else { return };
    let dir = tempfile::tempdir().unwrap();
    let units = render_all(dir.path(), false);
    let daemon = units.iter().find(|p| p.ends_with("agentlabd.service")).unwrap().clone();
    let good = std::fs::read_to_string(&daemon).unwrap();
    assert!(verify(&analyze, std::slice::from_ref(&daemon)).is_ok());

    let broken = [
        ("a misspelled directive", good.replace("ProtectSystem=full", "ProtectSytem=full")),
        ("a value systemd cannot parse", good.replace("ProtectSystem=full", "ProtectSystem=fulll")),
        ("an unknown section", format!("{good}\n[Servcie]\nType=simple\n")),
        ("a missing ExecStart binary", good.replace(&bin("agentlabd").display().to_string(), "/nonexistent/agentlabd")),
    ];
    for (what, text) in broken {
        std::fs::write(&daemon, text).unwrap();
        let said = verify(&analyze, std::slice::from_ref(&daemon)).expect_err(what);
        println!("{what}: caught ({})", said.trim());
    }

    // The drop-in is read from agentlabd.service.d beside the unit: a typo there is caught too.
    std::fs::write(&daemon, &good).unwrap();
    let dropins = dir.path().join("agentlabd.service.d");
    std::fs::create_dir_all(&dropins).unwrap();
    let dropin = std::fs::read_to_string(repo_root().join("scripts/systemd/agentlabd-api-hardening.conf")).unwrap();
    std::fs::write(dropins.join("api-hardening.conf"), dropin.replace("PrivateDevices=yes", "PrivateDevice=yes"))
        .unwrap();
    let said = verify(&analyze, &[daemon]).expect_err("a misspelled drop-in line");
    assert!(said.contains("PrivateDevice"), "{said}");
}

/// `systemd-analyze security --offline`'s overall exposure (0 best, 10 worst).
fn exposure(analyze: &Path, unit: &Path) -> Option<f64> {
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--man=no", "--no-pager"])
        .arg(unit)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level"))?;
    line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_api_dropin_lowers_the_exposure_score() {
    let Some(analyze) = systemd_analyze() else { return };
    let base_dir = tempfile::tempdir().unwrap();
    let api_dir = tempfile::tempdir().unwrap();
    let base = render_all(base_dir.path(), false);
    let api = render_all(api_dir.path(), true);
    let daemon = |units: &[PathBuf]| units.iter().find(|p| p.ends_with("agentlabd.service")).unwrap().clone();
    let net = |units: &[PathBuf]| units.iter().find(|p| p.ends_with("agentlab-net.service")).unwrap().clone();
    let Some(both_backends) = exposure(&analyze, &daemon(&base)) else {
        eprintln!("\n*** SKIPPED: this systemd-analyze has no `security --offline` (systemd < 250) ***\n");
        return;
    };
    let api_only = exposure(&analyze, &daemon(&api)).unwrap();
    let boot = exposure(&analyze, &net(&base)).unwrap();
    println!(
        "exposure: agentlabd.service {both_backends}, with the API drop-in {api_only}, agentlab-net.service {boot}"
    );
    assert!(api_only < both_backends - 2.0, "the drop-in should tighten the unit a lot: {api_only} vs {both_backends}");
    assert!(api_only < 5.0 && boot < 5.0, "systemd calls 5.0 and above MEDIUM: {api_only}, {boot}");
    assert!(both_backends < 9.0, "the unit for both backends is no longer hardened at all: {both_backends}");
}
