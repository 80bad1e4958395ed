//! Interoperability with the real `age` and `age-keygen` tools, which operators use to encrypt
//! bundles: what they write we must read, and what we write they must read.
//!
//! Without the tools the tests print a loud SKIPPED line and pass, unless
//! AGENTLAB_REQUIRE_AGE_CLI=1 makes a missing tool a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a broken fixture should fail the test at once, with its cause"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use agentlab_secrets::{AgeKey, SecretsBundle, load_bundle, seal, write_identity};

const BUNDLE: &str = "version: 1\ngit:\n  token: ghp_INTEROP\nenv:\n  API_KEY: sk-INTEROP\n  PORT: 8080\n";

/// Paths of `age` and `age-keygen`, or `None` (after saying so) when either is missing.
fn age_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
    };
    match (find("age"), find("age-keygen")) {
        (Some(age), Some(keygen)) => Some((age, keygen)),
        _ => {
            if std::env::var("AGENTLAB_REQUIRE_AGE_CLI").is_ok_and(|v| v == "1") {
                panic!("age CLI not installed but AGENTLAB_REQUIRE_AGE_CLI=1 (apt-get install age)");
            }
            // Straight to fd 2: libtest captures eprintln! output of passing tests.
            let _ = writeln!(std::io::stderr(), "SKIPPED: age CLI not installed (apt-get install age)");
            None
        }
    }
}

/// Runs a tool and returns its stdout, failing the test with its stderr on a non-zero exit.
fn run(program: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("non-UTF-8 temp path {}", path.display()))
}

fn expected() -> SecretsBundle {
    SecretsBundle::parse_yaml(BUNDLE, "expected").unwrap()
}

#[test]
fn bundles_encrypted_by_age_cli_load_binary_and_armored() {
    let Some((age, keygen)) = age_tools() else { return };
    let keys = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.txt");
    run(&keygen, &["-o", text(&key)]);
    let recipient = String::from_utf8(run(&keygen, &["-y", text(&key)])).unwrap();
    let recipient = recipient.trim();
    assert_eq!(AgeKey::load(&key).unwrap().recipient(), recipient);

    let plain = keys.path().join("plain.yaml");
    std::fs::write(&plain, BUNDLE).unwrap();
    let binary = secrets.path().join("binary.age");
    let armored = secrets.path().join("armored.age");
    run(&age, &["-r", recipient, "-o", text(&binary), text(&plain)]);
    run(&age, &["-r", recipient, "-a", "-o", text(&armored), text(&plain)]);
    let binary_bytes = std::fs::read(&binary).unwrap();
    assert!(binary_bytes.starts_with(b"age-encryption.org/v1"), "age did not write a binary file");
    let armored_text = std::fs::read_to_string(&armored).unwrap();
    assert!(armored_text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{armored_text}");

    for name in ["binary", "armored"] {
        let loaded = load_bundle(secrets.path(), name, &key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.bundle, expected(), "{name}");
        assert_eq!(loaded.bundle.env.get("PORT").map(String::as_str), Some("8080"));
    }
}

#[test]
fn sealed_bundles_decrypt_with_age_cli() {
    let Some((age, keygen)) = age_tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    run(&keygen, &["-o", text(&key)]);
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, BUNDLE).unwrap();
    let sealed = dir.path().join("prod.age");
    seal(&key, &plain, &sealed).unwrap();

    let decrypted = run(&age, &["-d", "-i", text(&key), text(&sealed)]);
    assert_eq!(String::from_utf8_lossy(&decrypted), BUNDLE);
}

#[test]
fn identities_we_write_are_read_by_age_cli() {
    let Some((age, keygen)) = age_tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("daemon-key.txt");
    let recipient = write_identity(&key).unwrap();
    let derived = String::from_utf8(run(&keygen, &["-y", text(&key)])).unwrap();
    assert_eq!(derived.trim(), recipient);

    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, BUNDLE).unwrap();
    let sealed = dir.path().join("prod.age");
    seal(&key, &plain, &sealed).unwrap();
    let decrypted = run(&age, &["-d", "-i", text(&key), text(&sealed)]);
    assert_eq!(String::from_utf8_lossy(&decrypted), BUNDLE);
}
